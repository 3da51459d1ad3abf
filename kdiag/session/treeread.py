"""Reading a folder of the target and its files' contents in one stream (``ReadTree``)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from kdiag_manager.wire.api.v1 import manager_pb2 as pb
from kdiag_manager.wire.api.v1 import manager_pb2_grpc as pb_grpc

from kdiag.errors import ManagerError

from .client import ManagerClient
from .grpcerrors import convert
from .results import RemoteEntry, RemoteFile


def read_tree(manager: ManagerClient, remote_path: str, *, max_entries: int = 0,
              max_bytes: int = 0) -> Iterator[RemoteEntry | bytes]:
    """Each entry of the folder (as :meth:`ManagerClient.list_dir` gives them, each folder
    before what it holds), a file's bytes right after its entry. ManagerError with code
    UNIMPLEMENTED from a manager without the call (then list the folder and read each file);
    ManagerError too when the stream ends before the whole folder was sent."""
    stub = pb_grpc.ManagerStub(manager.channel)
    request = pb.ReadTreeRequest(path=remote_path, max_entries=max_entries, max_bytes=max_bytes)
    try:
        for batch in stub.ReadTree(request, metadata=manager.metadata, timeout=None):
            for chunk in batch.chunks:
                kind = chunk.WhichOneof("msg")
                if kind == "data":
                    yield chunk.data
                elif kind == "entry":
                    e = chunk.entry
                    yield RemoteEntry(e.path, e.kind, RemoteFile(
                        e.info.path, e.info.size, e.info.mode, e.info.uid, e.info.gid,
                        e.info.mtime), e.link)
                else:
                    return
    except grpc.RpcError as exc:
        raise convert(exc, f"read {remote_path}") from None
    raise ManagerError(f"read {remote_path}: the stream ended before the whole folder")
