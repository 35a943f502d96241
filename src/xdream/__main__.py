"""``python -m xdream`` runs the command line."""

import sys

from xdream.cli import main

sys.exit(main())
