"""Thin wrappers over Linux system calls the standard library lacks (via ctypes).

setns (Python 3.12+ has os.setns; we support 3.11), prctl, openat2, scrubbing a secret from
the process's original environment block, and the socket options of redirected connections.
(Waiting for sockets with poll(2) is ``wire.sockets.readable``: the CLI uses it too.)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
SO_MARK = 36
SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80
SYS_OPENAT2 = 437  # same number on x86_64, arm64 and the other modern ABIs
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

# The fwmark kdiag puts on its own sockets; redirect rules skip marked packets so the manager's
# fail-open and outgoing connections are never redirected back to itself.
KDIAG_MARK = 0x4B444941  # "KDIA"

# The C library already loaded into the interpreter (no ctypes.util: it costs ~1 MB of RSS).
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def setns_path(path: str, nstype: int = 0) -> None:
    """Move the calling thread into the namespace at ``path`` (e.g. /proc/PID/ns/net).

    Call it before any other thread exists so that every later thread inherits it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, nstype), f"setns {path}")
    finally:
        os.close(fd)


def set_dumpable(dumpable: bool) -> None:
    """prctl(PR_SET_DUMPABLE): non-dumpable processes' memory and /proc files are not readable
    by other unprivileged processes (e.g. other containers of the pod)."""
    _check(_libc.prctl(PR_SET_DUMPABLE, int(dumpable), 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def set_parent_death_signal(sig: int) -> None:
    """prctl(PR_SET_PDEATHSIG): get ``sig`` when the parent (thread) dies."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def take_secret_env(name: str) -> str | None:
    """Return and remove environment variable ``name``, zeroing it in the original environment
    block too (os.environ.pop alone leaves it readable in /proc/self/environ)."""
    value = os.environ.get(name)
    if value is None:
        return None
    getenv = _libc.getenv
    getenv.restype = ctypes.c_void_p
    getenv.argtypes = [ctypes.c_char_p]
    ptr = getenv(name.encode())
    if ptr:
        length = len(ctypes.string_at(ptr))
        ctypes.memset(ptr, 0, length)
    os.environ.pop(name, None)
    return value


def release_free_memory() -> None:
    """malloc_trim(0): give freed heap pages back to the kernel."""
    with contextlib.suppress(AttributeError):  # not glibc
        _libc.malloc_trim(0)


M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int) -> None:
    """mallopt(M_ARENA_MAX): at most ``arenas`` glibc malloc arenas (no-op without glibc)."""
    with contextlib.suppress(AttributeError):
        _libc.mallopt(M_ARENA_MAX, arenas)


def mark_socket(sock: socket.socket) -> None:
    """Put kdiag's fwmark on ``sock`` so kdiag's redirect rules ignore its packets."""
    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, KDIAG_MARK)


def plain_address(address: str) -> str:
    """An IPv4 address as such, also when a dual-stack socket gives it IPv4-mapped."""
    return address[len("::ffff:"):] if address.startswith("::ffff:") and "." in address \
        else address


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """Where a REDIRECTed/DNATed connection was originally going (SO_ORIGINAL_DST; IPv4
    connections on a dual-stack socket ask conntrack's IPv4 side)."""
    peer = sock.getpeername()[0]
    if sock.family == socket.AF_INET6 and plain_address(peer) == peer:  # not IPv4-mapped
        raw = sock.getsockopt(41, IP6T_SO_ORIGINAL_DST, 28)  # SOL_IPV6
        port = struct.unpack("!H", raw[2:4])[0]
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack("!H", raw[2:4])[0]
    return socket.inet_ntoa(raw[4:8]), port


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2_in_root(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """Open ``path`` as if ``root_fd`` were "/": absolute symlinks and ".." cannot escape it.

    This is how files in the target's root are reached through /proc/PID/root safely.
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    syscall = _libc.syscall
    syscall.restype = ctypes.c_long
    fd = syscall(
        ctypes.c_long(SYS_OPENAT2),
        ctypes.c_int(root_fd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    return _check(int(fd), f"open {path}")


def read_in_root(pid: int | None, path: str, limit: int = 1 << 20) -> str:
    """Text of ``path`` inside the root of ``pid`` ("" when missing), resolved safely."""
    try:
        root = os.open(f"/proc/{pid}/root" if pid else "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        fd = openat2_in_root(root, path, os.O_RDONLY)
    except OSError:
        return ""
    finally:
        os.close(root)
    with os.fdopen(fd, "rb") as f:
        return f.read(limit).decode(errors="replace")


def remove_tree(path: str) -> None:
    """Remove a folder and everything in it, ignoring errors (no shutil: importing it costs
    the manager ~0.6 MB of RSS, see config._on_path)."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        entries = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            remove_tree(entry.path)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
    with contextlib.suppress(OSError):
        os.rmdir(path)
