"""Masking secret values in everything that leaves the engine."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

MASK = "***"


class Masker:
    """Replaces every known secret value with ``***`` in text and in nested values."""

    def __init__(self, secrets: tuple[str, ...] | list[str] = ()) -> None:
        self._secrets: list[str] = []
        self._lock = threading.Lock()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Mask ``secret`` from now on (longest secrets are replaced first)."""
        if secret and secret not in self._secrets:
            with self._lock:
                self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    @property
    def active(self) -> bool:
        """Whether there is anything to mask."""
        return bool(self._secrets)

    def text(self, text: str) -> str:
        """``text`` with the secrets masked."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def split(self, text: str) -> tuple[str, str]:
        """Mask ``text`` and split off a tail that may be the start of a secret.

        Streamed output arrives in chunks that can cut a secret in two; the caller emits the
        first part now and prepends the tail to the next chunk (or flushes it at the end).
        """
        masked = self.text(text)
        longest = len(self._secrets[0]) if self._secrets else 0
        for size in range(min(longest - 1, len(masked)), 0, -1):
            tail = masked[-size:]
            if any(secret.startswith(tail) for secret in self._secrets):
                return masked[:-size], tail
        return masked, ""

    def value(self, value: Any) -> Any:
        """A copy of ``value`` (str, mapping, sequence, dataclass) with secrets masked."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {f.name: self.value(getattr(value, f.name)) for f in dataclasses.fields(value)}
            return dataclasses.replace(value, **changes)
        return value
