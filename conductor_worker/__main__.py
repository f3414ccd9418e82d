"""`python -m conductor_worker ...` is the `conductor` command."""

import sys

from .cli import main

sys.exit(main())
