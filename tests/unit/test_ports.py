"""PORT[:LOCALPORT], as the redirect step and the ad-hoc commands read it."""

from __future__ import annotations

import pytest

from kdiag.cli.adhoc.targeting import parse_port_mappings
from kdiag.errors import UsageError
from kdiag.language.ports import parse_port_mapping
from kdiag.steps.base import StepFailed
from kdiag.steps.redirect import parse_ports


@pytest.mark.parametrize(("text", "expected"), [
    ("8080", (8080, None)), ("8080:9000", (8080, 9000)), ("1:65535", (1, 65535)),
])
def test_good(text: str, expected: tuple[int, int | None]) -> None:
    assert parse_port_mapping(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("http", "bad port 'http': use PORT or PORT:LOCALPORT"), ("80:x", "bad port"),
    ("0", "port out of range: 0"), ("65536", "out of range"), ("80:0", "out of range"),
    ("80:70000", "out of range"), ("80:", "bad port"),
])
def test_bad(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_port_mapping(text)


def test_local_zero_only_where_asked_for() -> None:
    assert parse_port_mapping("80:0", local_may_be_zero=True) == (80, 0)


def test_cli_and_step_readings() -> None:
    assert parse_port_mappings(["8080", "53:0"]) == [(8080, 8080), (53, 0)]
    with pytest.raises(UsageError, match="bad port 'x'"):
        parse_port_mappings(["x"])
    assert parse_ports([8080, "9090:7000"], "127.0.0.1", 5000) == {
        8080: ("127.0.0.1", 5000), 9090: ("127.0.0.1", 7000)}
    assert parse_ports([8080], "h", None) == {8080: ("h", 8080)}
    with pytest.raises(StepFailed, match="out of range"):
        parse_ports(["80:0"], "h", None)
