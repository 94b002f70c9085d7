"""nilemetrics: live customer-activity tracking for online shops."""

__version__ = "0.1.0"
