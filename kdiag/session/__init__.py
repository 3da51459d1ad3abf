"""Client side of the manager protocol, one room per concept:

- :mod:`.client`: :class:`ManagerClient`, the typed calls over one gRPC channel;
- :mod:`.results`: what the calls return (dataclasses), the redirect's spec and events;
- :mod:`.redirect`: :class:`RedirectHandle`, a running redirect with its pooled tunnels;
- :mod:`.tunnel`: one tunnelled connection (claimed or pooled);
- :mod:`.lane`: Tunnel calls on the manager's lane instead of gRPC;
- :mod:`.terminal`: the interactive shell; :mod:`.trees`: copying folders file by file;
- :mod:`.grpcerrors`: gRPC failures as kdiag's errors.

Kept light on purpose (the CLI's startup time matters): grpc and the generated stubs are only
imported when a module using them is. Names are re-exported lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdiag.errors import ManagerError, ManagerUnavailable

    from .client import ManagerClient
    from .redirect import RedirectHandle
    from .results import (
        CaptureResult,
        ExecResult,
        NetInfo,
        ProbeResult,
        ProcessInfo,
        RedirectSpec,
        RemoteFile,
        VersionInfo,
    )

_HOMES = {
    "CaptureResult": ".results",
    "ExecResult": ".results",
    "ManagerClient": ".client",
    "ManagerError": "kdiag.errors",
    "ManagerUnavailable": "kdiag.errors",
    "NetInfo": ".results",
    "ProbeResult": ".results",
    "ProcessInfo": ".results",
    "RedirectHandle": ".redirect",
    "RedirectSpec": ".results",
    "RemoteFile": ".results",
    "VersionInfo": ".results",
}
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
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(name)
