"""What the server does on its own, beside answering requests: cleanup, live numbers."""
