"""``kdiag redirect --all`` prints each pod's lines from threads of its own: every line comes out
whole, never cut by another pod's (CI once saw two pods' "redirecting" lines run together)."""

from __future__ import annotations

import sys
import threading
from types import SimpleNamespace

import pytest

from kdiag.cli.adhoc import redirect


def test_lines_of_many_pods_at_once_stay_whole(capsys: pytest.CaptureFixture[str]) -> None:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        def pod(n: int) -> None:
            on_event = redirect._printer(f"[pod-{n}] ")
            for i in range(300):
                on_event(SimpleNamespace(kind="closed", connection_id=i, bytes_in=1,
                                         bytes_out=2, error=""))

        threads = [threading.Thread(target=pod, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 * 300
    bad = [line for line in lines
           if not (line.startswith("[pod-") and line.endswith(" closed: 1 bytes in, 2 out")
                   and line.count("[pod-") == 1)]
    assert not bad, bad[:3]
