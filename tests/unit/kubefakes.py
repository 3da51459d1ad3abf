"""A stand-in for the Kubernetes client's ApiException, for unit tests of kdiag's own handling
of API errors (installed where kdiag imports it from)."""

from __future__ import annotations

import json
from typing import Any

import pytest


class FakeApiException(Exception):
    """An HTTP error answer: ``status``, the Status object ``body`` (JSON), ``reason``."""

    def __init__(self, status: int, body: dict[str, Any] | None = None,
                 reason: str = "") -> None:
        super().__init__(reason or f"HTTP {status}")
        self.status = status
        self.reason = reason or f"HTTP {status}"
        self.body = json.dumps(body) if body is not None else None


def install(monkeypatch: pytest.MonkeyPatch) -> type[FakeApiException]:
    """Make ``kubernetes.client.exceptions.ApiException`` the fake for this test."""
    import kubernetes.client.exceptions as exceptions

    monkeypatch.setattr(exceptions, "ApiException", FakeApiException)
    return FakeApiException
