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
