"""What manager calls return, as plain dataclasses (and the redirect's spec and events)."""

from __future__ import annotations

import json as _json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kdiag_manager.wire.api.v1 import manager_pb2 as pb


@dataclass(frozen=True)
class VersionInfo:
    """What the manager says about itself."""

    version: str
    pid: int
    target_pid: int
    node_mode: bool
    session: str
    features: list[str]


@dataclass(frozen=True)
class Listening:
    """A socket a process listens on."""

    protocol: str
    address: str
    port: int


@dataclass(frozen=True)
class ProcessInfo:
    """One process of the target."""

    pid: int
    ppid: int
    uid: int
    user: str
    argv: list[str]
    comm: str
    listening: list[Listening]
    is_target: bool
    pod_uid: str = ""
    """The pod it runs in (from its cgroup; seen from a node pod), '' if none."""
    container_id: str = ""
    pod: str = ""
    """``namespace/name`` of that pod, when the session could name it (a node target)."""
    container: str = ""

    @property
    def command(self) -> str:
        """The command line as one string."""
        return " ".join(self.argv) or f"[{self.comm}]"


@dataclass
class ExecResult:
    """How a command ended and what it printed (when captured)."""

    exit_code: int
    signal: int = 0
    timed_out: bool = False
    duration: float = 0.0
    stdout: bytes = b""
    stderr: bytes = b""
    truncated: bool = False
    """Some output was not kept (see ``capture_limit``)."""

    @property
    def ok(self) -> bool:
        """Exit code 0 and no timeout."""
        return self.exit_code == 0 and not self.timed_out

    @property
    def stdout_text(self) -> str:
        """stdout decoded as UTF-8 (invalid bytes replaced)."""
        return self.stdout.decode(errors="replace")

    @property
    def stderr_text(self) -> str:
        """stderr decoded as UTF-8 (invalid bytes replaced)."""
        return self.stderr.decode(errors="replace")


@dataclass(frozen=True)
class RedirectSpec:
    """What to redirect. ``header`` = (name, value) redirects only matching HTTP/1.1 requests
    (decided per request, also on keep-alive connections); the rest reaches the app.
    ``skip_sources`` (incoming): connections from these IPs or CIDRs are not redirected (the
    kubelet's probes come from the node's addresses)."""

    direction: Literal["incoming", "outgoing"]
    ports: tuple[int, ...] | list[int]
    destination: str | None = None
    fail_open: bool = True
    fail_open_timeout: float = 3.0
    header: tuple[str, str] | None = None
    session: str | None = None
    skip_sources: tuple[str, ...] = ()
    mirror: bool = False
    """Incoming: the app still serves every connection; a copy goes to the operator side."""

    def to_pb(self) -> pb.RedirectSpec:
        """The protobuf message."""
        spec = pb.RedirectSpec(
            direction=pb.INCOMING if self.direction == "incoming" else pb.OUTGOING,
            ports=list(self.ports), destination=self.destination or "",
            fail_open=self.fail_open, fail_open_timeout_seconds=self.fail_open_timeout,
            session=self.session or "", batch_closed=True, skip_sources=list(self.skip_sources),
            mirror=self.mirror)
        if self.header:
            spec.header_filter.name, spec.header_filter.value = self.header
        return spec


@dataclass(frozen=True)
class RedirectEventInfo:
    """A connection opened or closed on a redirect (for reporting)."""

    kind: Literal["connection", "closed", "rejected", "tunnel-closed"]
    connection_id: int
    original: tuple[str, int] | None = None
    peer: tuple[str, int] | None = None
    route: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    error: str = ""


ForwardTo = tuple[str, int] | dict[int, tuple[str, int]] | Callable[[tuple[str, int]], tuple[str, int]]


@dataclass(frozen=True)
class CaptureResult:
    """A finished capture."""

    path: str
    packets: int
    bytes: int
    reason: str
    error: str = ""


@dataclass(frozen=True)
class RemoteFile:
    """A file in the target's root."""

    path: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float


@dataclass
class RemoteEntry:
    """One entry of a folder listing: ``path`` relative to the folder listed."""

    path: str
    kind: str  # file, dir, symlink, other
    file: RemoteFile
    link: str = ""


@dataclass
class NetInfo:
    """The target's network namespace, as plain data."""

    interfaces: list[dict[str, Any]]
    addresses: list[dict[str, Any]]
    routes: list[dict[str, Any]]
    neighbours: list[dict[str, Any]]
    resolv_conf: str
    hosts: str


@dataclass
class ProbeResult:
    """Same shape as an ``http`` step's result: status, headers, text, json, elapsed."""

    ok: bool
    status: int = 0
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    elapsed: float = 0.0  # seconds
    error: str = ""
    addresses: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode(errors="replace")

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return _json.loads(self.body)
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for templates and reports."""
        return {"ok": self.ok, "status": self.status, "reason": self.reason,
                "headers": self.headers, "text": self.text, "json": self.json,
                "elapsed": self.elapsed, "elapsed_ms": self.elapsed * 1000,
                "error": self.error, "addresses": self.addresses}
