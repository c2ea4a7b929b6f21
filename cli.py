"""Run the lfm2-nas command line from a checkout: ``python cli.py variants list``."""

from lfm2_nas.cli import main

if __name__ == "__main__":
    main()
