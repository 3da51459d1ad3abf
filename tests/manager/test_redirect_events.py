"""The Redirect control stream's events: `closed` ones batched for clients that take batches."""

from __future__ import annotations

import time

from kdiag_manager import redirect, redirectevents
from kdiag_manager.connections import ConnectionRegistry
from kdiag_manager.iptables import Iptables
from kdiag_manager.redirectspec import RedirectOptions
from kdiag_manager.wire.api.v1 import manager_pb2 as pb


def _session() -> redirect.RedirectSession:
    options = RedirectOptions(incoming=True, ports=(80,), session="test")
    return redirect.RedirectSession(options, Iptables(), ConnectionRegistry())


def _closed(n: int) -> pb.RedirectEvent:
    return pb.RedirectEvent(closed=pb.ConnectionClosed(connection_id=n, route="operator"))


def _announced(n: int) -> pb.RedirectEvent:
    return pb.RedirectEvent(connection=pb.NewConnection(connection_id=n))


def _describe(events: list[pb.RedirectEvent]) -> list[tuple[str, list[int]]]:
    out = []
    for ev in events:
        kind = ev.WhichOneof("msg")
        if kind == "closed_batch":
            out.append((kind, [c.connection_id for c in ev.closed_batch.closed]))
        else:
            out.append((kind, [getattr(ev, kind).connection_id]))
    return out


def test_closed_events_go_together_and_announcements_go_at_once() -> None:
    session = _session()
    for event in (_closed(1), _closed(2), _closed(3), _announced(4), _closed(5), None):
        session.events.put(event)
    assert _describe(list(session.outgoing_events(batch_closed=True))) == [
        ("closed_batch", [1, 2, 3]), ("connection", [4]), ("closed", [5])]


def test_without_batches_every_event_goes_as_it_came() -> None:
    session = _session()
    for event in (_closed(1), _closed(2), _announced(3), None):
        session.events.put(event)
    assert _describe(list(session.outgoing_events(batch_closed=False))) == [
        ("closed", [1]), ("closed", [2]), ("connection", [3])]


def test_a_batch_waits_no_longer_than_its_window() -> None:
    session = _session()
    events = session.outgoing_events(batch_closed=True)
    session.events.put(_closed(1))
    session.events.put(_closed(2))
    started = time.monotonic()
    assert _describe([next(events)]) == [("closed_batch", [1, 2])]
    waited = time.monotonic() - started
    assert redirectevents.CLOSED_BATCH_WINDOW * 0.5 <= waited < 1.0
    session.events.put(None)
    assert list(events) == []


def test_a_full_batch_goes_at_once() -> None:
    session = _session()
    for n in range(redirectevents.CLOSED_BATCH_MAX + 1):
        session.events.put(_closed(n))
    events = session.outgoing_events(batch_closed=True)
    (kind, ids), = _describe([next(events)])
    assert kind == "closed_batch" and ids == list(range(redirectevents.CLOSED_BATCH_MAX))
    session.events.put(None)
    assert _describe(list(events)) == [("closed", [redirectevents.CLOSED_BATCH_MAX])]
