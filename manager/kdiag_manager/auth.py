"""Token authentication for every call, as a gRPC server interceptor.

Clients send ``authorization: Bearer <token>`` metadata. Anything else gets UNAUTHENTICATED,
before the method's handler runs. The manager knows either the token itself
(``$KDIAG_TOKEN``, node mode) or only its SHA-256 (``$KDIAG_TOKEN_SHA256``, in a pod: the pod
spec is readable by anyone who can read pods, so the token must not be in it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

try:  # hmac.compare_digest without importing hmac/hashlib (idle RSS)
    from _operator import _compare_digest as compare_digest
except ImportError:  # pragma: no cover - other interpreters
    from hmac import compare_digest  # type: ignore[no-redef]

METADATA_KEY = "authorization"


@dataclass(frozen=True)
class TokenHash:
    """The hex SHA-256 of the session token: a presented token is hashed and compared."""

    hex: str

    def __post_init__(self) -> None:
        if len(self.hex) != 64 or any(c not in "0123456789abcdef" for c in self.hex):
            raise ValueError("KDIAG_TOKEN_SHA256 must be 64 lowercase hex digits")


def bearer(token: str) -> tuple[str, str]:
    """The metadata pair a client sends."""
    return (METADATA_KEY, f"Bearer {token}")


def _token_ok(metadata: Any, expected: bytes, hashed: bool) -> bool:
    for key, value in metadata or ():
        if key == METADATA_KEY and isinstance(value, str) and value.startswith("Bearer "):
            presented = value[7:].encode()
            if hashed:
                import hashlib  # only in pods (hash mode): keeps node-mode idle RSS down

                presented = hashlib.sha256(presented).hexdigest().encode()
            return compare_digest(presented, expected)
    return False


def _deny(request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid kdiag session token")


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses every call that does not carry the session token."""

    def __init__(self, token: str | TokenHash) -> None:
        if not token:
            raise ValueError("empty token")
        self._hashed = isinstance(token, TokenHash)
        self._expected = (token.hex if isinstance(token, TokenHash) else token).encode()

    def accepts(self, token: str) -> bool:
        """Is ``token`` the session token (for the lane, which has no gRPC metadata)?"""
        return _token_ok([bearer(token)], self._expected, self._hashed)

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or _token_ok(handler_call_details.invocation_metadata, self._expected,
                                              self._hashed):
            return handler
        # Answer with a handler of the same kind, so streaming calls fail at once too.
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(_deny)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(_deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(_deny)
        return grpc.unary_unary_rpc_method_handler(_deny)
