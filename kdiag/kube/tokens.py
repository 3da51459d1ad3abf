"""A local cache of manager tokens, so a later kdiag run can reuse a running manager.

The token itself never goes into the pod spec (only its SHA-256 does), so the only place a
running manager's token lives is here: ``$XDG_CACHE_HOME/kdiag/managers.json`` (or
``~/.cache/kdiag/``), mode 0600, keyed by cluster server, pod UID and container name. Entries
older than :data:`MAX_AGE` are dropped. Never print, log or report what this file holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_AGE = 7 * 24 * 3600.0


def new_token() -> str:
    """A fresh random session token (256 bits)."""
    return secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    """The hex SHA-256 the manager compares a presented token against."""
    return hashlib.sha256(token.encode()).hexdigest()


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/kdiag`` or ``~/.cache/kdiag``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kdiag"


def _key(server: str, pod_uid: str, container: str) -> str:
    return f"{server} {pod_uid} {container}"


class TokenCache:
    """Tokens of injected managers, in a private file shared by concurrent kdiag runs."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or cache_dir()
        self.path = self.directory / "managers.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            os.fchmod(f.fileno(), 0o600)  # an older file may have looser bits
            try:
                data = json.loads(f.read() or "{}")
            except ValueError:
                data = {}
            if not isinstance(data, dict):
                data = {}
            before = json.dumps(data, sort_keys=True)
            yield data
            now = time.time()
            fresh = {k: v for k, v in data.items()
                     if isinstance(v, dict) and now - float(v.get("created", 0)) < MAX_AGE}
            if json.dumps(fresh, sort_keys=True) != before:
                f.seek(0)
                f.truncate()
                f.write(json.dumps(fresh))

    def get(self, server: str, pod_uid: str, container: str) -> str | None:
        """The token of that manager, if this machine injected it."""
        try:
            with self._locked() as data:
                entry = data.get(_key(server, pod_uid, container))
        except OSError:
            return None
        return str(entry["token"]) if isinstance(entry, dict) and "token" in entry else None

    def put(self, server: str, pod_uid: str, container: str, token: str) -> None:
        """Remember a new manager's token (best effort: without it, the next run injects)."""
        with contextlib.suppress(OSError), self._locked() as data:
            data[_key(server, pod_uid, container)] = {"token": token, "created": time.time()}

    def forget(self, server: str, pod_uid: str, container: str) -> None:
        """Drop an entry that no longer works."""
        with contextlib.suppress(OSError), self._locked() as data:
            data.pop(_key(server, pod_uid, container), None)
