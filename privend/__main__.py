"""`python -m privend` runs the CLI."""

from privend.cli import main

main()
