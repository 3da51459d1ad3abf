"""The manager's configuration: the target, helper binaries, limits."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .auth import TokenHash

_PACKAGE = Path(__file__).resolve().parent


@dataclass
class Config:
    """Settings every feature reads."""

    target_pid: int | None
    enter_path: str
    busybox_path: str
    session: str
    node_mode: bool = False
    tcpdump_path: str = "tcpdump"
    max_file_bytes: int = 1 << 30
    max_capture_bytes: int = 100 << 20
    host_target: bool = False
    """A node target: ``target_pid`` is only some host process standing for the host, and is
    picked again when it has ended (where PID 1 is closed to us it may be short-lived)."""

    def target(self) -> int | None:
        """The target process now: ``target_pid``, or for a node target whose stand-in ended,
        another host process."""
        if self.host_target and (self.target_pid is None
                                 or not _stands_for_host(self.target_pid)):
            self.target_pid = host_target_pid()
        return self.target_pid


def _first_existing(candidates: list[str | Path | None]) -> str | None:
    for c in candidates:
        if c and os.access(c, os.X_OK) and not os.path.isdir(c):
            return str(c)
    return None


def _on_path(*names: str) -> list[str]:
    """``names`` in each folder of $PATH, in order (what ``shutil.which`` would look at; not
    imported: shutil pulls in bz2 and lzma, 0.6 MB of the manager's idle RSS)."""
    return [os.path.join(folder, name) for name in names for folder in os.get_exec_path()]


def find_enter(explicit: str | None = None) -> str:
    """Path of ``enter``: flag, $KDIAG_ENTER, beside the package (image), the dev build, PATH."""
    found = _first_existing([
        explicit,
        os.environ.get("KDIAG_ENTER"),
        _PACKAGE / "bin" / "enter",
        "/usr/local/lib/kdiag/enter",
        _PACKAGE.parent.parent / "scratch-shell" / "build" / "enter",
        *_on_path("kdiag-enter", "enter"),
    ])
    return found or str(explicit or "enter")


def find_busybox(explicit: str | None = None) -> str:
    """Path of a static busybox: flag, $KDIAG_BUSYBOX, beside the package, /bin/busybox."""
    found = _first_existing([
        explicit,
        os.environ.get("KDIAG_BUSYBOX"),
        _PACKAGE / "bin" / "busybox",
        "/usr/local/lib/kdiag/busybox",
        "/bin/busybox",
        "/usr/bin/busybox",
    ])
    return found or str(explicit or "/bin/busybox")


def default_target_pid(container_id: str = "") -> int | None:
    """The target process, seen from a container that shares its PID namespace.

    That is PID 1, except in a pod whose containers all share one PID namespace
    (``shareProcessNamespace``): there PID 1 is the pod's pause process, and the target is the
    oldest process in the cgroup of the target container (``container_id``, its runtime ID).
    """
    if os.getpid() == 1 or not os.path.exists("/proc/1"):
        return None
    if container_id and not _in_container(1, container_id):
        found = _oldest_first(pid for pid in _pids() if _in_container(pid, container_id))
        if found:
            return found[0]
    return 1


def host_target_pid() -> int | None:
    """The host's process to act as (a node target, the manager in a pod with the host's PID
    namespace): PID 1, or where its namespaces are closed to us (a sandboxed init), the
    oldest user-space process in no pod whose namespaces we can open."""
    return next((pid for pid in _oldest_first(_pids()) if _stands_for_host(pid)), None)


def _oldest_first(pids: Iterable[int]) -> list[int]:
    """``pids`` that still run, the longest-running first. By age, not by PID: PIDs wrap (32768
    on these machines), and a low PID may be a process that just started."""
    by_age = sorted((started, pid) for pid in pids if (started := _start_time(pid)) is not None)
    return [pid for _, pid in by_age]


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _stands_for_host(pid: int) -> bool:
    """Whether ``pid`` is a live user-space process in no pod whose root and namespaces we can
    open (an ended process, a zombie, a kernel thread or a reused PID in a pod is not)."""
    from .ps import kube_container

    try:
        os.readlink(f"/proc/{pid}/ns/mnt")
        os.readlink(f"/proc/{pid}/ns/cgroup")
        os.stat(f"/proc/{pid}/root")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if not f.read(1):
                return False  # a kernel thread (or a zombie)
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            return not kube_container(f.read())[0]
    except OSError:
        return False


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _in_container(pid: int, container_id: str) -> bool:
    """Whether ``pid``'s cgroup paths name the container (cgroup v1 and v2, any driver:
    the runtime ID is part of the container's cgroup directory name)."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            return container_id in f.read()
    except OSError:
        return False


def take_token() -> str | TokenHash | None:
    """The session token from ``$KDIAG_TOKEN``, else its hash from ``$KDIAG_TOKEN_SHA256``;
    both variables are scrubbed from the environment (ValueError for a malformed hash)."""
    from .sysutil import take_secret_env

    token = take_secret_env("KDIAG_TOKEN")
    digest = take_secret_env("KDIAG_TOKEN_SHA256")
    if token:
        return token
    if digest:
        return TokenHash(digest.strip().lower())
    return None
