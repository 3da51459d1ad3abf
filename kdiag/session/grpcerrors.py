"""gRPC failures of manager calls as kdiag's errors: a step failed (exit 1) or the manager
cannot be reached (exit 3)."""

from __future__ import annotations

import grpc

from kdiag.errors import ManagerError, ManagerUnavailable


def convert(exc: grpc.RpcError, what: str) -> ManagerError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    msg = f"{what}: {details}"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.DEADLINE_EXCEEDED):
        return ManagerUnavailable(f"manager unreachable ({code.name}): {msg}", code.name)
    return ManagerError(msg, code.name)
