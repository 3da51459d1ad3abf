"""Reading a target's context and getting a local command ready to start with it.

:func:`prepare` reads what ``from_target`` asks for — the environment (one ``Environ`` call),
the files (``ReadFile``/``ListDir`` into a private folder), the cluster names (forwards and a
hosts file) — and returns a :class:`Prepared`: the command's environment and binds, the values
to mask (everything read but what is public), plain data for the step's result (names, paths,
sizes and timings, never a value), and :meth:`Prepared.close`, which stops the forwards and
removes the folder.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kdiag.engine.masking import MIN_LENGTH
from kdiag.errors import ManagerError
from kdiag.launch.launcher import Launch
from kdiag.launch.view import View, choose

from .environment import point_at, secret_values, select
from .files import FileCopy, copy_paths
from .folder import PrivateFolder
from .secrets import file_secrets, public_file
from .spec import FromTarget

if TYPE_CHECKING:
    from kdiag.connect.forwards import Connection
    from kdiag.lifeline import Lifeline
    from kdiag.targets.base import TargetSession

ROOT_VARIABLE = "KDIAG_TARGET_ROOT"
"""Names the folder holding the target's files at their paths (always set when files are
copied; with the ``remap`` view the only way to them)."""


@dataclass
class Prepared:
    """A command's context, ready (see the module's docstring)."""

    env: dict[str, str]
    view: View | None = None
    folder: PrivateFolder | None = None
    binds: list[tuple[str, str]] = field(default_factory=list)
    connection: Connection | None = None
    secrets: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def launch(self, argv: list[str], cwd: str | None) -> Launch:
        """What to start: ``argv`` with this context."""
        return Launch(argv=argv, env=self.env, cwd=cwd, binds=self.binds,
                      userns=bool(self.view and self.view.userns),
                      newroot=str(self.folder.newroot) if self.folder else "")

    @property
    def lifeline(self) -> Lifeline | None:
        """Fails when a cluster name's forward is lost (None without names)."""
        return self.connection.lifeline if self.connection else None

    def close(self) -> None:
        """Stop the forwards, remove the private folder. Idempotent."""
        if self.connection is not None:
            self.connection.stop()
            self.connection = None
        if self.folder is not None:
            self.folder.remove()
            self.folder = None


def prepare(spec: FromTarget, session: TargetSession, base_env: dict[str, str],
            cancelled: threading.Event | None = None) -> Prepared:
    """Read the target's context for a command (ValueError for what cannot be done here,
    ManagerError/TargetError when the target cannot give it, Cancelled when ``cancelled``
    is set while files are copied)."""
    kind = str(session.info.get("kind", ""))
    if spec.names and kind != "kubernetes":
        raise ValueError("names: a node target has no cluster (names needs a Kubernetes "
                         "target)")
    view = choose(spec.view) if spec.needs_view() else None
    if spec.names and view is not None and view.kind != "namespace":
        raise ValueError(f"names: needs a private mount namespace, and there is none here: "
                         f"{view.reason}")
    prepared = Prepared(env={}, view=view)
    try:
        _read(spec, session, base_env, prepared, cancelled)
    except BaseException:
        prepared.close()
        raise
    return prepared


def _read(spec: FromTarget, session: TargetSession, base_env: dict[str, str],
          prepared: Prepared, cancelled: threading.Event | None) -> None:
    seconds: dict[str, float] = {}
    started = time.monotonic()
    target_env: dict[str, str] = {}
    if spec.env:
        target_env = select(session.manager.environ(), spec.include, spec.exclude)
        seconds["env"] = round(time.monotonic() - started, 3)
        prepared.secrets += secret_values(target_env, spec.public, _shown(session))
        short = sorted(n for n, v in target_env.items() if v in prepared.secrets
                       and len(v.strip()) < MIN_LENGTH)
        if short:
            prepared.notes.append(f"the values of {', '.join(short)} are shorter than "
                                  f"{MIN_LENGTH} characters: masked only where a whole value "
                                  "equals one, not inside text")
    folder = prepared.folder = PrivateFolder.make() if spec.needs_view() else None
    files: FileCopy | None = None
    if spec.files and folder is not None:
        files = copy_paths(session.manager, spec.files, folder, spec.max_bytes, cancelled)
        seconds["files"] = round(files.seconds, 3)
        prepared.secrets += _file_secrets(files, folder, spec.public, prepared.notes)
        if prepared.view is not None and prepared.view.kind == "namespace":
            prepared.binds += [(str(p.local), p.path) for p in files.paths]
    command_env = target_env
    if spec.names and folder is not None:
        began = time.monotonic()
        command_env = _connect(session, spec, folder, prepared, target_env)
        seconds["names"] = round(time.monotonic() - began, 3)
    prepared.env = {**base_env, **command_env, **spec.overrides}
    if files is not None and folder is not None:
        prepared.env[ROOT_VARIABLE] = str(folder.root)
    prepared.result = {
        "view": prepared.view.kind if prepared.view else "",
        "root": str(folder.root) if files is not None and folder is not None else "",
        "env": sorted(target_env), "files": [p.summary() for p in files.paths] if files else [],
        "size": files.size if files else 0,
        "names": prepared.connection.summary() if prepared.connection else [],
        "masked": len(prepared.secrets), "seconds": seconds}
    if prepared.view is not None and prepared.view.kind == "remap" and files is not None:
        prepared.notes.append(f"files are in ${ROOT_VARIABLE} (no private mount namespace: "
                              f"{prepared.view.reason})")


def _shown(session: TargetSession) -> frozenset[str]:
    """What kdiag shows of the target anyway (its pod's name, namespace, node, IP): a value
    equal to one of them (the downward API's) is no secret."""
    return frozenset(str(session.info[k]) for k in ("namespace", "pod", "node", "ip",
                                                     "container") if session.info.get(k))


def _file_secrets(files: FileCopy, folder: PrivateFolder, public: tuple[str, ...],
                  notes: list[str]) -> list[str]:
    found: list[str] = []
    for copied in files.paths:
        for path in copied.files:
            if public_file(path, public):
                continue
            data = folder.local(path).read_bytes()
            values, whole = file_secrets(data.decode("utf-8", "surrogateescape"))
            found += values
            if not whole:
                notes.append(f"{path} ({len(data)} bytes) is masked by the values of its "
                             "key = value lines only, not as a whole")
    return found


def _connect(session: TargetSession, spec: FromTarget, folder: PrivateFolder,
             prepared: Prepared, target_env: dict[str, str]) -> dict[str, str]:
    """Forward the cluster names; the hosts file shown at /etc/hosts; the environment with
    service-discovery variables pointing at the forwards."""
    from kdiag.connect.hosts import cluster_domain
    from kdiag.connect.setup import connect

    kube = getattr(session, "kube", None)
    ref = getattr(session, "ref", None)
    if kube is None or ref is None:
        raise ValueError("names: the target has no cluster")
    resolv = folder.path / "resolv.conf"
    try:
        session.manager.copy_from("/etc/resolv.conf", resolv, max_bytes=1 << 20)
        resolv_conf = resolv.read_text(errors="replace")
    except (ManagerError, OSError):  # none in the target: the default cluster domain
        resolv_conf = ""
    connected = connect(kube, ref.namespace, spec.services, cluster_domain(resolv_conf))
    prepared.connection = connected.connection
    prepared.notes += connected.notes
    hosts = folder.path / "hosts"
    hosts.write_text(connected.hosts_file)
    os.chmod(hosts, 0o444)
    prepared.binds.append((str(hosts), "/etc/hosts"))
    addresses = {r.service.cluster_ip: r.address for r in connected.connection.routes
                 if r.service.cluster_ip and r.service.cluster_ip != "None"}
    return point_at(target_env, addresses)
