"""kdiag's manager: a small gRPC agent injected next to a debugging target.

Run as ``python -m kdiag_manager``. It never imports ``kubernetes`` or the kdiag CLI.
"""

from .wire import grpccore  # noqa: F401  (before anything imports grpc)

__version__ = "0.1.0"
