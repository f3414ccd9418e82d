"""The `conductor` command, one module per command group (wired together in `main`).

The one package that uses both the coordinator (`conductor_server`, imported only by the
commands that run one) and the SDK (`conductor_worker`); neither of those imports the other.
"""
