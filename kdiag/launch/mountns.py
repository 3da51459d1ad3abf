"""The helper that makes a command's private view of the files, then becomes the command.

Run as a script, with nothing of kdiag imported (``python3 -I -S mountns.py PLAN_FD ERR_FD``):
it reads its plan (JSON: ``argv``, ``env``, ``binds``, ``userns``, ``uid``, ``gid``,
``newroot``) from ``PLAN_FD``, enters a new mount namespace (in a new user namespace when it is
not root), makes every mount private, shows each bind's source read-only at its target, and
execs the command with the plan's environment as the same user kdiag runs as. Any failure is
one line on ``ERR_FD`` and exit 127; a successful exec closes ``ERR_FD`` (close-on-exec), which
is how the caller knows the command started.

A target that does not exist here is made without touching this machine's files: its nearest
existing folder is *shadowed* — a tmpfs over it holding bind mounts of everything it held
(reached through a descriptor opened before it was covered), and the missing folders or file
beside them. When that folder is ``/`` itself, a tmpfs elsewhere gets bind mounts of every
entry of ``/`` and becomes the root (``pivot_root``). Outside the namespace nothing changes.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import stat
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME = 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
"""The pivot_root(2) system call's number (glibc has no wrapper)."""
LOCKED_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
                (os.ST_RELATIME, MS_RELATIME))
"""statvfs flags a read-only remount must keep (in a user namespace, dropping one is EPERM)."""

_libc = ctypes.CDLL(None, use_errno=True)


def _call(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    """mount(2)."""
    def enc(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    _call(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
          f"mount {source or fstype or ''} on {target}")


def unshare(flags: int, what: str) -> None:
    """unshare(2)."""
    _call(_libc.unshare(flags), f"cannot make {what}")


def pivot_root(folder: str) -> None:
    """Make ``folder`` (a mount point) this mount namespace's root and drop the old one. Not
    chroot: a user namespace cannot be made from inside a chroot, and one is made later."""
    number = PIVOT_ROOT.get(platform.machine())
    os.chdir(folder)
    if number is None:  # an architecture not listed: chroot (then no way back to our uid)
        os.chroot(".")
    else:
        _call(_libc.syscall(number, b".", b"."), f"pivot_root to {folder}")
        _call(_libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def map_user(inside: int, outside: int, gid_inside: int, gid_outside: int) -> None:
    """Map one user and group of the enclosing user namespace into the new one."""
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{inside} {outside} 1")
    _write("/proc/self/gid_map", f"{gid_inside} {gid_outside} 1")


class View:
    """Bind mounts into this (new, private) mount namespace; see the module's docstring."""

    def __init__(self, newroot: str, userns: bool) -> None:
        self.newroot = newroot
        self.userns = userns
        self.ours: set[str] = set()  # tmpfs shadows and what we made in them: writable
        self.mirrored: set[str] = set()  # shadow entries bound from what they cover
        self.held: list[int] = []  # descriptors on covered folders

    def bind(self, source: str, target: str) -> None:
        """Show ``source`` (a file or folder) read-only at ``target``."""
        is_dir = stat.S_ISDIR(os.lstat(source).st_mode)
        self._make_point(os.path.normpath(target), is_dir)
        mount(source, target, None, MS_BIND)
        flags = os.statvfs(target).f_flag
        kept = sum(ms for st, ms in LOCKED_FLAGS if flags & st)
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)

    def _make_point(self, target: str, is_dir: bool) -> None:
        """Make ``target`` exist as a folder (``is_dir``) or a file to mount on."""
        if os.path.exists(target) and os.path.isdir(target) == is_dir:
            return
        parts = [p for p in target.split("/") if p]
        parent = "/"
        for depth, name in enumerate(parts):
            here = os.path.join(parent, name)
            if depth < len(parts) - 1 and os.path.isdir(here):
                parent = here
                continue
            break
        parent = os.path.realpath(parent)
        missing = parts[depth:]
        if parent not in self.ours:
            self._shadow(parent)
        first = os.path.join(parent, missing[0])
        if os.path.lexists(first):  # something of the wrong type is in the way
            if first in self.mirrored:
                _call(_libc.umount2(os.fsencode(first), MNT_DETACH), f"unmount {first}")
                self.mirrored.discard(first)
            if os.path.isdir(first) and not os.path.islink(first):
                os.rmdir(first)
            else:
                os.unlink(first)
        here = parent
        for depth, name in enumerate(missing):
            here = os.path.join(here, name)
            if depth < len(missing) - 1 or is_dir:
                os.mkdir(here, 0o755)
            else:
                os.close(os.open(here, os.O_CREAT | os.O_WRONLY, 0o444))
            self.ours.add(here)

    def _shadow(self, folder: str) -> None:
        """Cover ``folder`` with a tmpfs that mirrors what it held (``/``: a new root)."""
        top = self.newroot if folder == "/" else folder
        fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
        self.held.append(fd)
        st = os.fstat(fd)
        options = f"mode={stat.S_IMODE(st.st_mode):o}"
        if not self.userns:  # (in a user namespace its owner is unmapped: keep ours)
            options += f",uid={st.st_uid},gid={st.st_gid}"
        mount("tmpfs", top, "tmpfs", 0, options)
        original = f"/proc/self/fd/{fd}"
        for name in sorted(os.listdir(original)):
            source, entry = f"{original}/{name}", os.path.join(top, name)
            mode = os.lstat(source).st_mode
            if stat.S_ISLNK(mode):
                os.symlink(os.readlink(source), entry)
                continue
            if stat.S_ISDIR(mode):
                os.mkdir(entry)
            else:
                os.close(os.open(entry, os.O_CREAT | os.O_WRONLY, 0o600))
            mount(source, entry, None, MS_BIND | MS_REC)
            self.mirrored.add(os.path.join(folder, name))
        if folder == "/":
            pivot_root(top)
        self.ours.add(folder)


def run(plan: dict[str, object], err_fd: int) -> None:
    """Make the view and exec the command (raises on any failure before the exec)."""
    cwd = os.getcwd()
    userns = bool(plan.get("userns"))
    uid, gid = int(plan["uid"]), int(plan["gid"])  # type: ignore[call-overload]
    if userns:
        unshare(CLONE_NEWUSER | CLONE_NEWNS, "a user and mount namespace")
        map_user(0, uid, 0, gid)
    else:
        unshare(CLONE_NEWNS, "a mount namespace")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    view = View(str(plan["newroot"]), userns)
    for source, target in plan["binds"]:  # type: ignore[attr-defined]
        view.bind(source, target)
    for fd in view.held:
        os.close(fd)
    if userns:  # back to our own user id (the mounts stay, locked, in the namespace)
        unshare(CLONE_NEWUSER, "a user namespace")
        map_user(uid, 0, gid, 0)
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")
    if plan.get("probe"):
        os._exit(0)
    argv = [str(a) for a in plan["argv"]]  # type: ignore[attr-defined]
    os.set_inheritable(err_fd, False)
    try:
        os.execvpe(argv[0], argv, dict(plan["env"]))  # type: ignore[call-overload]
    except FileNotFoundError:
        raise OSError(2, f"command not found: {argv[0]}") from None
    except PermissionError as exc:
        raise OSError(exc.errno, f"cannot run {argv[0]}: {exc.strerror}") from None


def main() -> None:
    """``mountns.py PLAN_FD ERR_FD``."""
    plan_fd, err_fd = int(sys.argv[1]), int(sys.argv[2])
    try:
        with os.fdopen(plan_fd, "rb") as f:
            plan = json.load(f)
        run(plan, err_fd)
    except Exception as exc:  # one line for the caller, whatever it was
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        os.write(err_fd, (message or type(exc).__name__).encode(errors="replace"))
        os._exit(127)


if __name__ == "__main__":
    main()
