"""The `nilemetrics` command line: one module per command group."""
