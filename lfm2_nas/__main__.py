"""``python -m lfm2_nas`` runs the command line."""

from lfm2_nas.cli import main

main()
