"""Environ: the environment the target process was started with, read from /proc/PID/environ.

That is what its runtime handed it, after every source was resolved (a pod's ``env`` and
``envFrom``, Secret and ConfigMap references, the downward API) — what a copy of the process
elsewhere needs to behave the same. Changes the process later made to its own environment
(``setenv``) live in its memory only and are not seen. Names and values are kept as bytes:
nothing guarantees they are UTF-8.
"""

from __future__ import annotations

import grpc

from .config import Config
from .wire.api.v1 import manager_pb2 as pb


class EnvironError(Exception):
    """The environment cannot be read; ``code`` is the gRPC status to answer with."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION):
        super().__init__(message)
        self.code = code


def read_environ(pid: int) -> list[tuple[bytes, bytes]]:
    """``(name, value)`` of every variable of ``pid``, in order (OSError if unreadable)."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        raw = f.read()
    found = []
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep and name:
            found.append((name, value))
    return found


def environ(config: Config) -> pb.EnvironResponse:
    """The target's environment (EnvironError when there is no target or it is unreadable)."""
    pid = config.target()
    if pid is None:
        raise EnvironError("no target process (start the manager with --target-pid)")
    try:
        found = read_environ(pid)
    except OSError as exc:
        code = grpc.StatusCode.NOT_FOUND if exc.errno == 2 else \
            grpc.StatusCode.FAILED_PRECONDITION
        raise EnvironError(f"cannot read the environment of PID {pid}: {exc.strerror}",
                           code) from None
    return pb.EnvironResponse(vars=[pb.EnvVar(name=n, value=v) for n, v in found], pid=pid)
