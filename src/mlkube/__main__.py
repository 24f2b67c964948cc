"""``python -m mlkube`` runs the command line."""

from mlkube.cli import main

main()
