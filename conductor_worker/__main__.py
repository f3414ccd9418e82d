"""`python -m conductor_worker ...` is the `conductor` command (the package conductor_cli)."""

import sys

from conductor_cli.main import main

sys.exit(main())
