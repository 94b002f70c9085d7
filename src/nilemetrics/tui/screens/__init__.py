"""Dashboard screens: the live view, and the detail, help and sessions screens over it."""
