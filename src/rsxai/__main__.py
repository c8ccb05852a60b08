"""``python -m rsxai``: the command line."""

import sys

from rsxai.cli import main

if __name__ == "__main__":
    sys.exit(main())
