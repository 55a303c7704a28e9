"""`python -m trackbook` runs the same CLI as the `trackbook` script."""

from trackbook.cli import main

main()
