"""`python -m conductor_server ...` runs `conductor server ...` (the package conductor_cli)."""

import sys

from conductor_cli.main import main

sys.exit(main(["server", *sys.argv[1:]]))
