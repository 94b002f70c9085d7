"""The tracking server: ingestion API, live state and WebSocket push."""
