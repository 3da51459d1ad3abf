"""Masking secret values in everything that leaves the engine.

A secret is masked as written and in the forms a runbook (or a tool it runs) commonly turns it
into (:func:`forms`): upper, lower and title case, reversed, base64 (standard and URL-safe, with
or without padding, also as part of a longer encoded text such as ``user:secret``), URL
quoting, JSON, HTML and shell escaping, hex, Python's repr; the secret without surrounding
whitespace, and each line of a multi-line secret as written. A secret shorter than
:data:`MIN_LENGTH` characters is masked only where a whole value equals it: masking ``a`` or
``42`` inside all text would wreck every report (``kdiag run`` warns about such params).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import shlex
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_LENGTH = 4
"""Secrets (and derived forms) shorter than this are not masked inside text."""
INDEXED_TAIL_FORMS = 64
"""With more forms than this, :meth:`Masker.split` finds a cut secret by its first characters."""


def _by_heads_is_cheaper(forms: int, length: int) -> bool:
    """Whether looking up a text's ``length`` runs of MIN_LENGTH characters beats searching
    it for each of ``forms`` (measured: ≈ 400 ns a run against ≈ 60 ns + 0.27 ns a
    character per form searched)."""
    return length >= MIN_LENGTH and 400 * length < forms * (60 + length * 27 // 100)


def _longest_first(form: str) -> tuple[int, str]:
    return -len(form), form


def _base64_cores(data: bytes) -> list[str]:
    """The base64 characters that encode only ``data``'s bits, for each of the three byte
    alignments ``data`` can have inside a longer encoded text (standard and URL-safe)."""
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode()
        first = -(-8 * shift // 6)  # the first character without bits of the padding bytes
        last = 8 * (shift + len(data)) // 6  # past the last one made of data bits only
        core = encoded[first:last]
        cores += [core, core.replace("+", "-").replace("/", "_")]
    return cores


def _utf8(text: str) -> bytes:
    """The bytes ``text`` stands for: bytes that are not UTF-8 come back as they were read
    (``surrogateescape``, as output and environments are decoded); other lone surrogates as
    UTF-8 would write them."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def forms(secret: str) -> set[str]:
    """``secret`` and what it becomes through common transformations (see the module's
    docstring); forms shorter than :data:`MIN_LENGTH` are left out."""
    found = {secret, secret.strip()}
    for text in list(found):
        data = _utf8(text)
        found.update({
            text.upper(), text.lower(), text.title(), text.capitalize(), text[::-1],
            quote(data, safe=""), quote(data), quote_plus(data),
            json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1],
            html.escape(text), text.replace("'", "'\"'\"'"), shlex.quote(text),
            data.hex(), data.hex().upper(), repr(text)[1:-1],
            *_base64_cores(data),
        })
    lines = [line.strip() for line in secret.splitlines()]  # as written, without the rest
    found.update(lines if len(lines) > 1 else ())
    # Without the whitespace around them: a form starting with a newline (a file's contents
    # reversed) would hold back the end of every output line as the possible start of a
    # secret; the stripped form masks all of it that is not whitespace.
    stripped = (form.strip() for form in found)
    return {form for form in stripped if len(form) >= MIN_LENGTH}


_Index = tuple[dict[str, list[str]], frozenset[str], int]


def _index(found: list[str]) -> _Index:
    """For :meth:`Masker.split` with many forms: the forms by their first MIN_LENGTH
    characters, every shorter start of a form, and the longest form's length."""
    by_head: dict[str, list[str]] = {}
    for form in found:
        by_head.setdefault(form[:MIN_LENGTH], []).append(form)
    short = frozenset(form[:k] for form in found for k in range(1, MIN_LENGTH))
    return by_head, short, max(map(len, found), default=0)


class Masker:
    """Replaces every known secret (and its derived forms) with ``***`` in text and in nested
    values; thread-safe."""

    def __init__(self, secrets: tuple[str, ...] | list[str] = ()) -> None:
        self._forms: list[str] = []  # longest first
        self._known: frozenset[str] = frozenset()  # the same, as a set
        self._index: _Index = ({}, frozenset(), 0)  # for split (see _index)
        self._whole: set[str] = set()  # every secret: a whole value equal to one is masked
        self._lock = threading.Lock()
        self.add_all(secrets)

    @staticmethod
    def too_short(secret: str) -> bool:
        """Whether ``secret`` is masked only where a whole value equals it."""
        return len(secret.strip()) < MIN_LENGTH

    def add(self, secret: str) -> None:
        """Mask ``secret`` (and its forms) from now on."""
        self.add_all((secret,))

    def add_all(self, secrets: Iterable[str]) -> None:
        """Mask each of ``secrets`` (and their forms) from now on (many at once: one sort)."""
        new: set[str] = set()
        whole: set[str] = set()
        for secret in secrets:
            if secret:
                new |= forms(secret)
                whole.update((secret, secret.strip()) if secret.strip() else (secret,))
        if not whole:
            return
        with self._lock:
            self._whole = self._whole | whole
            if not new <= self._known:
                self._known = self._known | new
                self._forms = sorted(self._known, key=_longest_first)
                self._index = _index(self._forms)

    @property
    def active(self) -> bool:
        """Whether there is anything to mask."""
        return bool(self._forms or self._whole)

    def text(self, text: str) -> str:
        """``text`` with the secrets masked."""
        found = self._forms
        if _by_heads_is_cheaper(len(found), len(text)):
            # Many secrets (a target's environment and files): look up the forms starting
            # with each MIN_LENGTH characters of the text instead of searching for every form.
            by_head = self._index[0]
            grams = {text[i:i + MIN_LENGTH] for i in range(len(text) - MIN_LENGTH + 1)}
            found = sorted((form for gram in grams.intersection(by_head) for form in
                            by_head[gram]), key=_longest_first)
        for form in found:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def split(self, text: str) -> tuple[str, str]:
        """Mask ``text`` and split off a tail that may be the start of a secret.

        Streamed output arrives in chunks that can cut a secret in two; the caller emits the
        first part now and prepends the tail to the next chunk (or flushes it at the end).
        """
        masked = self.text(text)
        if len(self._forms) > INDEXED_TAIL_FORMS:
            cut = self._tail_start(masked)
            return masked[:cut], masked[cut:]
        cut = len(masked)
        for form in self._forms:
            # The earliest place from which the rest of the text starts this form.
            start = masked.find(form[0], max(0, len(masked) - len(form) + 1))
            while 0 <= start < cut:
                if form.startswith(masked[start:]):
                    cut = start
                    break
                start = masked.find(form[0], start + 1)
        return masked[:cut], masked[cut:]

    def _tail_start(self, masked: str) -> int:
        """Where the earliest suffix of ``masked`` that some form begins with starts (the
        length: none), looked up by the suffix's first characters rather than form by form."""
        by_head, short_heads, longest = self._index
        n = len(masked)
        for start in range(max(0, n - longest + 1), n):
            if n - start < MIN_LENGTH:
                if masked[start:] in short_heads:
                    return start
                continue
            for form in by_head.get(masked[start:start + MIN_LENGTH], ()):
                if len(form) > n - start and form.startswith(masked[start:]):
                    return start
        return n

    def value(self, value: Any) -> Any:
        """A copy of ``value`` (str, mapping, sequence, dataclass) with secrets masked."""
        if not self.active:
            return value
        if isinstance(value, str):
            return MASK if value in self._whole else self.text(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return MASK if str(value) in self._whole else value
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {f.name: self.value(getattr(value, f.name)) for f in dataclasses.fields(value)}
            return dataclasses.replace(value, **changes)
        return value


COMMON_FIELDS = frozenset({"ok", "failed", "skipped", "message", "duration", "attempts",
                           "artifacts"})
"""Fields the engine adds to every result: not secret, even in a step marked ``secret: true``."""


def _texts(value: Any, numbers: bool) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif numbers and isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item, numbers)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item, numbers)


def mask_step_values(masker: Masker, secret: bool | tuple[str, ...], result: dict[str, Any],
                     evaluate: Callable[[str], Any]) -> None:
    """Mask from now on what a step marked ``secret`` read: with ``true`` every string in its
    result (but the common fields, numbers and strings shorter than :data:`MIN_LENGTH`), with
    a list the values of those expressions, strings and numbers (``evaluate`` raises when one
    cannot be evaluated)."""
    if secret is True:  # (its short strings and numbers would mask every 0 and "ok")
        for text in _texts([v for k, v in result.items() if k not in COMMON_FIELDS], False):
            if not Masker.too_short(text):
                masker.add(text)
        return
    for text in _texts([evaluate(expression) for expression in secret or ()], True):
        masker.add(text)
