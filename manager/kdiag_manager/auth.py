"""Token authentication for every call, as a gRPC server interceptor.

Clients send ``authorization: Bearer <token>`` metadata. Anything else gets UNAUTHENTICATED,
before the method's handler runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

try:  # hmac.compare_digest without importing hmac/hashlib (idle RSS)
    from _operator import _compare_digest as compare_digest
except ImportError:  # pragma: no cover - other interpreters
    from hmac import compare_digest  # type: ignore[no-redef]

METADATA_KEY = "authorization"


def bearer(token: str) -> tuple[str, str]:
    """The metadata pair a client sends."""
    return (METADATA_KEY, f"Bearer {token}")


def _token_ok(metadata: Any, expected: bytes) -> bool:
    for key, value in metadata or ():
        if key == METADATA_KEY and isinstance(value, str) and value.startswith("Bearer "):
            return compare_digest(value[7:].encode(), expected)
    return False


def _deny(request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid kdiag session token")


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses every call that does not carry the session token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("empty token")
        self._expected = token.encode()

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or _token_ok(handler_call_details.invocation_metadata, self._expected):
            return handler
        # Answer with a handler of the same kind, so streaming calls fail at once too.
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(_deny)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(_deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(_deny)
        return grpc.unary_unary_rpc_method_handler(_deny)
