"""`python -m clusterdns` runs the command line."""

import sys

from clusterdns.cli import main

sys.exit(main())
