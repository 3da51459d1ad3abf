"""Copy: read files from and write files into the target's root filesystem, and list folders.

Paths are resolved with openat2(RESOLVE_IN_ROOT) against /proc/PID/root, so absolute symlinks
and ".." inside the target resolve within the target's root, never the manager's. No tar or
shell is needed in the target. Writes go to a temporary file renamed into place, with the mode
(and optionally the owner) given by the client, regardless of umask. A listing walks a folder
through directory fds opened with O_NOFOLLOW (symlinks are listed, never followed); the client
copies a folder file by file from it.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Iterator

import grpc

from .config import Config
from .sysutil import openat2_in_root
from .wire.api.v1 import manager_pb2 as pb

CHUNK = 64 * 1024
MAX_ENTRIES = 10_000


class CopyError(Exception):
    """A copy failed; ``code`` is the gRPC status to answer with."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION):
        super().__init__(message)
        self.code = code


def _root_fd(config: Config) -> int:
    pid = config.target() or os.getpid()
    try:
        return os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise CopyError(f"cannot reach the root of PID {pid}: {exc.strerror}") from None


def _os_error(path: str, exc: OSError) -> CopyError:
    code = grpc.StatusCode.NOT_FOUND if exc.errno == 2 else grpc.StatusCode.FAILED_PRECONDITION
    return CopyError(f"{path}: {os.strerror(exc.errno or 0)}", code)


def _info(path: str, st: os.stat_result) -> pb.FileInfo:
    return pb.FileInfo(path=path, size=st.st_size, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid,
                       gid=st.st_gid, mtime=st.st_mtime)


def open_in_target(config: Config, path: str, flags: int) -> int:
    """``path`` opened inside the target's root (CopyError naming the path if it cannot be)."""
    root = _root_fd(config)
    try:
        return openat2_in_root(root, path, flags)
    except OSError as exc:
        raise _os_error(path, exc) from None
    finally:
        os.close(root)


def read_file(req: pb.ReadFileRequest, config: Config) -> Iterator[pb.FileChunk]:
    """Stream ``req.path``: its info, then its bytes. Refuses non-regular and too-large files."""
    limit = req.max_bytes or config.max_file_bytes
    fd = open_in_target(config, req.path, os.O_RDONLY | os.O_NOCTTY)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # (before fdopen, which refuses folders itself)
        os.close(fd)
        what = "is a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise CopyError(f"{req.path}: {what}", grpc.StatusCode.INVALID_ARGUMENT)
    with os.fdopen(fd, "rb") as f:
        if st.st_size > limit:
            raise CopyError(f"{req.path}: {st.st_size} bytes is over the limit of {limit}",
                            grpc.StatusCode.RESOURCE_EXHAUSTED)
        yield pb.FileChunk(info=_info(req.path, st))
        sent = 0
        while data := f.read(min(CHUNK, limit - sent + 1)):
            sent += len(data)
            if sent > limit:  # grew while we read it
                raise CopyError(f"{req.path}: grew over the limit of {limit} bytes",
                                grpc.StatusCode.RESOURCE_EXHAUSTED)
            yield pb.FileChunk(data=data)


def list_dir(req: pb.ListDirRequest, config: Config) -> pb.ListDirResponse:
    """Everything under ``req.path`` (lstat of each entry), each folder before its contents."""
    limit = req.max_entries or MAX_ENTRIES
    top = open_in_target(config, req.path, os.O_RDONLY | os.O_DIRECTORY)
    resp = pb.ListDirResponse()
    pending = [(top, "")]
    try:
        while pending and not resp.truncated:
            fd, rel = pending.pop()
            try:
                _list_one(fd, rel, req.path, resp, pending, limit)
            finally:
                os.close(fd)
    except OSError as exc:
        raise _os_error(req.path, exc) from None
    finally:
        for fd, _ in pending:
            os.close(fd)
    return resp


def _list_one(fd: int, rel: str, top: str, resp: pb.ListDirResponse,
              pending: list[tuple[int, str]], limit: int) -> None:
    with os.scandir(fd) as found:
        entries = sorted(found, key=lambda e: e.name)
    for entry in entries:
        if len(resp.entries) >= limit:
            resp.truncated = True
            return
        st = entry.stat(follow_symlinks=False)
        path = f"{rel}/{entry.name}" if rel else entry.name
        item = pb.DirEntry(path=path, kind=_kind(st.st_mode),
                           info=_info(posixpath.join(top, path), st))
        if item.kind == "symlink":
            item.link = os.readlink(entry.name, dir_fd=fd)
        resp.entries.append(item)
        if item.kind == "dir":
            sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            pending.append((sub, path))


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "symlink" if stat.S_ISLNK(mode) else "other"


def _make_dir(root: int, info: pb.FileInfo) -> pb.WriteFileResponse:
    """``info.directory``: make the folder (or keep it), with the mode given."""
    path = info.path.rstrip("/") or "/"
    parent = _open_parent(root, path, info.make_parents)
    try:
        name = os.path.basename(path)
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = openat2_in_root(parent, name, os.O_RDONLY | os.O_DIRECTORY)
    finally:
        os.close(parent)
    try:
        os.fchmod(fd, info.mode & 0o7777 if info.mode else 0o755)
        if info.keep_owner:
            os.fchown(fd, info.uid, info.gid)
        return pb.WriteFileResponse(info=_info(path, os.fstat(fd)))
    finally:
        os.close(fd)


def _open_parent(root: int, path: str, make_parents: bool) -> int:
    parent = os.path.dirname(path.rstrip("/")) or "/"
    try:
        return openat2_in_root(root, parent, os.O_PATH | os.O_DIRECTORY)
    except FileNotFoundError:
        if not make_parents:
            raise
    fd = os.dup(root)
    for part in [p for p in parent.split("/") if p]:
        try:
            nxt = openat2_in_root(fd, part, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            os.mkdir(part, 0o755, dir_fd=fd)
            nxt = openat2_in_root(fd, part, os.O_PATH | os.O_DIRECTORY)
        os.close(fd)
        fd = nxt
    return fd


def write_file(chunks: Iterator[pb.FileChunk], config: Config) -> pb.WriteFileResponse:
    """Write the file described by the first chunk (``info``) with the data chunks after it."""
    first = next(chunks, None)
    if first is None or first.WhichOneof("msg") != "info":
        raise CopyError("the first message must be info", grpc.StatusCode.INVALID_ARGUMENT)
    info = first.info
    if info.directory and info.path.startswith("/"):
        root = _root_fd(config)
        try:
            return _make_dir(root, info)
        except OSError as exc:
            raise _os_error(info.path, exc) from None
        finally:
            os.close(root)
    if not info.path.startswith("/") or info.path.endswith("/"):
        raise CopyError(f"{info.path!r}: give an absolute file path",
                        grpc.StatusCode.INVALID_ARGUMENT)
    if info.size > config.max_file_bytes:
        raise CopyError(f"{info.size} bytes is over the limit of {config.max_file_bytes}",
                        grpc.StatusCode.RESOURCE_EXHAUSTED)
    name = os.path.basename(info.path)
    root = _root_fd(config)
    try:
        try:
            parent = _open_parent(root, info.path, info.make_parents)
        except OSError as exc:
            raise _os_error(os.path.dirname(info.path), exc) from None
        tmp = f".{name}.kdiag-{os.urandom(4).hex()}"
        # The parent was opened with O_PATH; reopen it as a real directory fd for *at calls.
        pdir = os.open(f"/proc/self/fd/{parent}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        os.close(parent)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=pdir)
            written = 0
            try:
                with os.fdopen(fd, "wb") as f:
                    for chunk in chunks:
                        if chunk.WhichOneof("msg") != "data":
                            continue
                        written += len(chunk.data)
                        if written > config.max_file_bytes:
                            raise CopyError("file is over the size limit",
                                            grpc.StatusCode.RESOURCE_EXHAUSTED)
                        f.write(chunk.data)
                    f.flush()
                    os.fchmod(f.fileno(), info.mode & 0o7777 if info.mode else 0o644)
                    if info.keep_owner:
                        os.fchown(f.fileno(), info.uid, info.gid)
                    if info.mtime:
                        os.utime(f.fileno(), (info.mtime, info.mtime))
                    st = os.fstat(f.fileno())
                os.rename(tmp, name, src_dir_fd=pdir, dst_dir_fd=pdir)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=pdir)
                raise
        except OSError as exc:
            raise _os_error(info.path, exc) from None
        finally:
            os.close(pdir)
    finally:
        os.close(root)
    return pb.WriteFileResponse(bytes=written, info=_info(info.path, st))
