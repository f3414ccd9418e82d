"""`python -m conductor_server` runs `conductor server`."""

import sys

from conductor_worker.cli import main

sys.exit(main(["server", *sys.argv[1:]]))
