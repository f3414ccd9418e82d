"""`python -m conductor_worker ...` is the `conductor` command (the package conductor_cli)."""

import os
import sys

if "GRPC_ENABLE_FORK_SUPPORT" not in os.environ:
    # This package imported grpc before the command could set up gRPC's fork handling (see
    # conductor_cli/__init__.py): start over as `python -m conductor_cli`, same process id.
    os.execv(sys.executable, [sys.executable, "-m", "conductor_cli", *sys.argv[1:]])

from conductor_cli.main import main

sys.exit(main())
