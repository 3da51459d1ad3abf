"""kdiag: declarative Kubernetes debugging (CLI, runbook language, engine, steps, targets)."""

import kdiag_manager.wire.grpccore  # noqa: F401  (tunes gRPC's core before anything imports grpc)

__version__ = "0.1.0"
