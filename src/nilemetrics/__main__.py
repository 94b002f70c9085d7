"""`python -m nilemetrics` behaves exactly like the `nilemetrics` command."""

from nilemetrics.cli.main import main

if __name__ == "__main__":
    main()
