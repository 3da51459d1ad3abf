"""A redirect's counters from its connection events, in the orders they can come (the
connection's own event after its rejection, a connection offered but never taken), and the
line a stopped redirect prints. The real manager's events: tests/node/test_redirect_stats.py."""

from __future__ import annotations

from kdiag.session.results import RedirectEventInfo as Info
from kdiag.steps.redirect import STAT_NAMES, _tracker, stats_line


class Context:
    """What the tracker uses of a step's context: output and progress."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.progress_sent: list[dict[str, int]] = []

    def output(self, text: str, stream: str = "stdout") -> None:
        self.lines.append(text)

    def progress(self, counts: dict[str, int]) -> None:
        self.progress_sent.append(dict(counts))


def track(*events: Info) -> tuple[dict[str, int], Context]:
    stats = dict.fromkeys(STAT_NAMES, 0)
    ctx = Context()
    on_event = _tracker(ctx, stats)  # type: ignore[arg-type]
    for event in events:
        on_event(event)
    return stats, ctx


def counts(stats: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in stats.items() if v and not k.startswith("bytes")}


def test_to_the_operator_then_closed() -> None:
    stats, ctx = track(Info("connection", 1, ("10.0.0.1", 80), ("10.0.0.2", 5000)))
    assert counts(stats) == {"to_operator": 1, "open": 1}
    stats, ctx = track(Info("connection", 1, ("10.0.0.1", 80), ("10.0.0.2", 5000)),
                       Info("tunnel-closed", 1, route="operator"),
                       Info("closed", 1, route="operator", bytes_in=10, bytes_out=20))
    assert counts(stats) == {"to_operator": 1, "closed": 1}
    assert stats["bytes_in"] == 10 and stats["bytes_out"] == 20
    assert ctx.lines[0] == "connection 1: 10.0.0.2:5000 -> 10.0.0.1:80\n"
    assert len(ctx.progress_sent) == 2  # (tunnel-closed changes nothing)


def test_rejected_ones_go_to_the_app_whatever_the_order() -> None:
    offered = Info("connection", 7, ("10.0.0.1", 80), ("10.0.0.2", 5000))
    rejected = Info("rejected", 7, error="operator side 127.0.0.1:9: refused")
    to_app = Info("closed", 7, route="original")
    for order in ([offered, rejected, to_app], [rejected, offered, to_app]):
        stats, _ = track(*order[:2])
        assert counts(stats) == {"rejected": 1}, order  # never open, never to the operator
        stats, _ = track(*order)
        assert counts(stats) == {"rejected": 1, "to_app": 1, "closed": 1}, order


def test_offered_but_never_taken_and_dropped() -> None:
    stats, _ = track(Info("connection", 1), Info("closed", 1, route="original"),
                     Info("connection", 2), Info("closed", 2, route="dropped"))
    assert counts(stats) == {"to_app": 1, "dropped": 1, "closed": 2}


def test_header_filter_counts_requests_to_the_operator_and_connections_to_the_app() -> None:
    events = [Info("connection", n) for n in (2, 4)]  # each matching request: its own
    events += [Info("closed", n, route="operator") for n in (2, 4)]
    events += [Info("closed", n, route="original") for n in (1, 3, 5)]  # the clients' own
    stats, _ = track(*events)
    assert counts(stats) == {"to_operator": 2, "to_app": 3, "closed": 5}
    assert stats_line(stats) == "2 to the operator, 3 to the app"
    stats["open"], stats["rejected"] = 1, 4
    assert stats_line(stats) == "2 to the operator (1 open), 3 to the app, 4 rejected"


def test_a_reset_is_counted_and_says_why_and_a_flood_of_them_is_not_all_printed() -> None:
    from kdiag.steps.redirect import SHOWN_RESETS

    stats, ctx = track(Info("connection", 1, ("10.0.0.1", 80), ("10.0.0.2", 5000)),
                       Info("closed", 1, route="operator", error="connection reset: peer"),
                       Info("closed", 2, route="original", error="reset by the app"),
                       Info("closed", 3, route="dropped", error="no operator side"))
    assert counts(stats) == {"to_operator": 1, "to_app": 1, "dropped": 1, "reset": 2,
                             "closed": 3}
    assert "connection 1 reset: connection reset: peer\n" in ctx.lines
    assert "connection 2 reset: reset by the app\n" in ctx.lines
    assert stats_line(stats) == "1 to the operator, 1 to the app, 1 dropped, 2 reset"
    many = [Info("closed", n, route="operator", error="cut") for n in range(SHOWN_RESETS + 30)]
    stats, ctx = track(*many)
    assert stats["reset"] == SHOWN_RESETS + 30
    assert sum("reset: cut" in line for line in ctx.lines) == SHOWN_RESETS
    assert ctx.lines[-1] == "(further resets are counted, not shown)\n"
