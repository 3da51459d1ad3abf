"""``kdiag capture -w -``: the "capturing on" line is said before the first byte of the stream
goes out, from the thread that writes it (a reader that takes a few bytes and leaves may end
the capture at once: CI saw the capture end, exit 0, before the line was ever printed)."""

from __future__ import annotations

import argparse
import io
import threading
from typing import Any

import pytest

from kdiag.cli.adhoc import capture as adhoc_capture


class _Manager:
    """Says it listens, writes one packet's bytes, ends (as the session's capture does)."""

    def __init__(self, order: list[str]) -> None:
        self.order = order

    def capture(self, out: io.BytesIO, flt: str, *, started: threading.Event, **_: Any) -> None:
        started.set()
        out.write(b"\xd4\xc3\xb2\xa1")
        self.order.append("bytes")


def test_the_line_comes_before_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    monkeypatch.setattr(adhoc_capture, "_note", lambda text: order.append(text))
    args = argparse.Namespace(filter="tcp port 8080", interface="", count=0, max_bytes=0,
                              duration=0, snaplen=0, write="-")
    run = adhoc_capture._Capture(_Manager(order), io.BytesIO(), args)
    run.run()
    assert order[:2] == ["capturing on any (tcp port 8080); Ctrl-C to stop", "bytes"], order
    run.started.set()  # said once
    assert order.count("capturing on any (tcp port 8080); Ctrl-C to stop") == 1
