"""`python -m mgrb`: the same command line as `mgrb`."""

import sys

from mgrb.cli import main

if __name__ == "__main__":
    sys.exit(main())
