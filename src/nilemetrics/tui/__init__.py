"""The terminal dashboard (`nilemetrics watch`); speaks only the wire protocol."""
