"""Client side of the manager protocol: typed calls, redirect tunnels, results as dataclasses.

Kept light on purpose (the CLI's startup time matters): grpc and the generated stubs are only
imported when :mod:`kdiag.session.client` is. Names are re-exported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import (
        CaptureResult,
        ExecResult,
        ManagerClient,
        ManagerError,
        ManagerUnavailable,
        NetInfo,
        ProbeResult,
        ProcessInfo,
        RedirectHandle,
        RedirectSpec,
        RemoteFile,
        VersionInfo,
    )

__all__ = [
    "CaptureResult",
    "ExecResult",
    "ManagerClient",
    "ManagerError",
    "ManagerUnavailable",
    "NetInfo",
    "ProbeResult",
    "ProcessInfo",
    "RedirectHandle",
    "RedirectSpec",
    "RemoteFile",
    "VersionInfo",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import client

        return getattr(client, name)
    raise AttributeError(name)
