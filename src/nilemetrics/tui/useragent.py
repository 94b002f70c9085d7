"""Moved to :mod:`nilemetrics.useragent` (the server's journeys use it too)."""

from nilemetrics.useragent import describe_user_agent, device_kind

__all__ = ["describe_user_agent", "device_kind"]
