"""`python -m conductor_cli ...` is the `conductor` command."""

import sys

from .main import main

sys.exit(main())
