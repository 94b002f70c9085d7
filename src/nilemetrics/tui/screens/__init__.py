"""Dashboard screens: error detail and help."""
