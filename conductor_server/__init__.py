"""The Conductor coordinator: gRPC server, Postgres store, dispatcher and scheduler."""
