"""Ctrl-C ends a wait on the main thread at once, even when the kernel hands SIGINT to another
thread (which cannot run Python's handler and does not wake a main thread blocked on a lock)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from kdiag.waiting import wait_event


def _sigint_from_another_thread(after: float, release: threading.Event) -> threading.Thread:
    """A thread that sends SIGINT to itself after ``after`` s, then sets ``release`` 20 s
    later (so that a wait that misses the signal ends anyway, and the test can tell)."""
    def run() -> None:
        time.sleep(after)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        time.sleep(20)
        release.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("timeout", [None, 60.0])
def test_a_sigint_delivered_to_another_thread_interrupts_the_wait(timeout: float | None) -> None:
    never = threading.Event()
    _sigint_from_another_thread(0.2, never)
    with pytest.raises(KeyboardInterrupt):
        wait_event(never, timeout)
    assert not never.is_set(), "the interrupt came only once the wait ended by itself"


def test_wait_event_returns_as_event_wait_does() -> None:
    event = threading.Event()
    assert wait_event(event, 0.05) is False
    threading.Timer(0.05, event.set).start()
    assert wait_event(event, 30) is True
    assert wait_event(event) is True
