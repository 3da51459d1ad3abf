"""Which Service ports a connected command gets, and how it ends: ports below the unprivileged
ones are left out with a note (refused for a Service asked for by name) when kdiag is not
root; a lost cluster forward stops the command (one line naming it), a command that ignores
SIGTERM is killed, and the exit code of a command killed by a signal is 128+N."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from kdiag.cli.adhoc import exec as adhoc_exec
from kdiag.connect import forwards
from kdiag.connect.services import Found, Port, Service
from kdiag.errors import EnvironmentProblem, TargetError
from kdiag.launch.view import View
from kdiag.lifeline import Lifeline


def found() -> Found:
    return Found([Service("web", "shop", "10.0.0.1", "web-0", [Port(80, 8080), Port(8443, 8443)]),
                  Service("db", "data", "10.0.0.2", "db-0", [Port(443, 5432)]),
                  Service("cache", "shop", "10.0.0.3", "cache-0", [Port(6379, 6379)])])


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forwards.os, "geteuid", lambda: 1000)


def test_as_root_every_port_is_kept() -> None:
    made, notes = forwards.routes(found(), "shop", "cluster.local", strict=False)
    assert notes == []
    assert [(r.service.name, r.address, [p.port for p in r.service.ports]) for r in made] == [
        ("web", "127.77.0.1", [80, 8443]), ("db", "127.77.0.2", [443]),
        ("cache", "127.77.0.3", [6379])]
    assert made[0].names == ["web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local"]
    assert made[1].names == ["db.data", "db.data.svc", "db.data.svc.cluster.local"]


def test_without_root_low_ports_are_left_out_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    lowest = 1000
    monkeypatch.setattr(forwards, "lowest_unprivileged_port", lambda: lowest)
    made, notes = forwards.routes(found(), "shop", "c.example", strict=False)
    assert [(r.service.name, [p.port for p in r.service.ports]) for r in made] == [
        ("web", [8443]), ("cache", [6379])]
    assert [r.address for r in made] == ["127.77.0.1", "127.77.0.3"]
    assert notes == [
        f"names: service shop/web port 80: listening below {lowest} needs root (or sysctl "
        "net.ipv4.ip_unprivileged_port_start); left out",
        f"names: service data/db port 443: listening below {lowest} needs root (or sysctl "
        "net.ipv4.ip_unprivileged_port_start); left out"]
    with pytest.raises(TargetError, match=r"^names: service shop/web port 80: listening below"):
        forwards.routes(found(), "shop", "c.example", strict=True)


def test_the_unprivileged_start_is_read_from_proc_else_1024(not_root,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path) -> None:
    import builtins

    real_open = builtins.open
    answer = tmp_path / "start"

    def fake_open(path, *args, **kwargs):
        if path == "/proc/sys/net/ipv4/ip_unprivileged_port_start":
            return real_open(answer, *args, **kwargs)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    answer.write_text("600\n")
    assert forwards.lowest_unprivileged_port() == 600
    answer.write_text("not a number\n")
    assert forwards.lowest_unprivileged_port() == 1024
    answer.unlink()
    assert forwards.lowest_unprivileged_port() == 1024


def test_a_lost_forward_stops_the_command_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adhoc_exec, "STOP_GRACE", 0.5)
    process = subprocess.Popen(["sleep", "30"])
    lifeline = Lifeline()
    lifeline.fail("port-forward to pod shop/web-0 failed: 403")
    with pytest.raises(EnvironmentProblem) as caught:
        adhoc_exec.wait_command(process, lifeline, "connect")
    assert str(caught.value) == ("connect ended: cluster names: port-forward to pod shop/web-0 "
                                 "failed: 403")
    assert process.returncode == -15  # SIGTERM'd (after the grace), not left running


def test_a_command_ignoring_sigterm_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adhoc_exec, "STOP_GRACE", 0.5)
    process = subprocess.Popen(["sh", "-c", "trap '' TERM; echo ready; sleep 30"],
                               stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    lifeline = Lifeline()
    lifeline.fail("gone")
    with pytest.raises(EnvironmentProblem, match="exec ended: cluster names: gone"):
        adhoc_exec.wait_command(process, lifeline, "exec")
    assert process.returncode == -9
    process.stdout.close()


def test_the_exit_code_of_a_signalled_command_is_128_plus_n() -> None:
    process = subprocess.Popen(["sh", "-c", "kill -USR1 $$"])
    assert adhoc_exec.wait_command(process, None, "exec") == 128 + 10
    process = subprocess.Popen(["sh", "-c", "exit 7"])
    assert adhoc_exec.wait_command(process, Lifeline(), "exec") == 7


class Connection:
    def __init__(self) -> None:
        self.closed = 0
        self.lifeline = Lifeline()

    def summary(self) -> list[dict[str, object]]:
        return [{"service": "db", "address": "127.77.0.1"}]

    def stop(self) -> None:
        self.closed += 1


def test_open_connection_names_the_services_in_a_hosts_file_the_command_alone_sees(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import stat

    import kdiag.kube.config as config
    from kdiag.connect import command
    from kdiag.connect.setup import Connected

    asked: list[object] = []
    connection = Connection()
    def load(options: object) -> object:
        asked.append(options)
        return NS(namespace="shop")

    monkeypatch.setattr(config, "load", load)

    def connect(kube: object, namespace: str, wanted: tuple[str, ...], domain: str) -> Connected:
        asked.append((namespace, wanted, domain))
        return Connected(connection, "127.0.0.1 localhost\n127.77.0.1 db db.shop\n",  # type: ignore[arg-type]
                         ["names: shop/legacy: it has no selector (left out)"])

    monkeypatch.setattr(command, "connect", connect)
    prepared = command.open_connection(command.Wanted("shop", ("db",), "/k", "c1", "c.example"),
                                       {"A": "1"})
    try:
        (hosts, where), = prepared.binds
        assert where == "/etc/hosts"
        assert Path(hosts).read_text() == "127.0.0.1 localhost\n127.77.0.1 db db.shop\n"
        assert stat.S_IMODE(os.stat(hosts).st_mode) == 0o444
        assert prepared.result == {"namespace": "shop",
                                   "services": [{"service": "db", "address": "127.77.0.1"}]}
        assert prepared.notes == ["names: shop/legacy: it has no selector (left out)"]
        assert prepared.env == {"A": "1"} and prepared.view == View("namespace")
        assert asked[1] == ("shop", ("db",), "c.example")
        assert (asked[0].kubeconfig, asked[0].context) == ("/k", "c1")  # type: ignore[attr-defined]
    finally:
        prepared.close()
    assert connection.closed == 1 and not Path(hosts).exists()


def test_open_connection_without_root_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import kdiag.kube.config as config
    from kdiag.connect import command

    monkeypatch.setattr(command.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(config, "load", lambda options: pytest.fail("the kubeconfig was read"))
    with pytest.raises(EnvironmentProblem, match=r"^connect needs root .* kdiag forward -n shop "
                       r"svc/db-main PORT:LOCALPORT, then e\.g\. DB_MAIN_URL="):
        command.open_connection(command.Wanted("shop", ("db-main.shop",)), {})
