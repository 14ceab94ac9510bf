"""``python -m bitvert`` runs the command line."""

from bitvert.cli import main

main()
