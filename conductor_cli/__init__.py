"""The `conductor` command, one module per command group (wired together in `main`).

The one package that uses both the coordinator (`conductor_server`, imported only by the
commands that run one) and the SDK (`conductor_worker`); neither of those imports the other.
"""

import os

# gRPC's fork handlers (set before grpc is imported, which reads it once): nothing this command
# forks uses gRPC in the child (pool processes are spawned, PostgreSQL's programs exec), and
# with them every fork during a call logs "Other threads are currently calling into gRPC,
# skipping fork() handlers" and children may log epoll errors. A value already set is kept.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
