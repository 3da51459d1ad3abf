"""The ad-hoc commands that need a cluster, in-process with stand-ins for it: what each prints
and its exit code — ``gc``, ``doctor`` (the target it checks, from flags over a runbook),
``ps``/``shell`` with ``--all`` (each pod's lines prefixed, the first failing pod's code), and
the target flags (``--context``, ``--kubeconfig``, ``--image``, ``--privileged``) reaching the
target that is opened."""

from __future__ import annotations

import io
from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.cli.adhoc.ps import HEADER
from kdiag.cli.main import main
from kdiag.errors import TargetError
from kdiag.preflight.checks import Check
from kdiag.session.results import ExecResult, Listening, ProcessInfo


def test_gc_lists_or_deletes_the_objects_of_dead_runs(monkeypatch: pytest.MonkeyPatch,
                                                      capsys) -> None:
    import kdiag.kube.config as config
    import kdiag.kube.owned as owned

    loaded: list[Any] = []
    asked: list[tuple[Any, bool]] = []
    def load(options: Any) -> Any:
        loaded.append(options)
        return NS(namespace=options.namespace or "default")

    monkeypatch.setattr(config, "load", load)

    def collect(kube: Any, namespaces: Any, dry_run: bool) -> list[Any]:
        asked.append((namespaces, dry_run))
        return [NS(describe=lambda: "pod shop/kdiag-copy-1 (run r-1)"),
                NS(describe=lambda: "lease shop/kdiag-r-1")]

    monkeypatch.setattr(owned, "collect", collect)
    assert main(["gc", "-n", "shop", "--dry-run", "--context", "c1",
                 "--kubeconfig", "/k"]) == 0
    assert capsys.readouterr().out == (
        "would delete pod shop/kdiag-copy-1 (run r-1)\nwould delete lease shop/kdiag-r-1\n"
        "2 object(s) of dead kdiag runs in namespace shop (dry run: nothing deleted)\n")
    assert (loaded[0].kubeconfig, loaded[0].context, loaded[0].namespace) == ("/k", "c1", "shop")
    assert main(["gc", "-A"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "2 object(s) of dead kdiag runs in all namespaces")
    assert asked == [(["shop"], True), (None, False)]
    assert main(["gc", "-A", "-n", "shop"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert len(asked) == 2


@pytest.fixture
def examined(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    import kdiag.preflight.examine as examine

    seen: list[Any] = []

    def fake(demand: Any, full: bool) -> list[Check]:
        seen.append(demand)
        return [Check("rbac: create pods/ephemeralcontainers", "fail", "forbidden",
                      "ask for the kdiag role")] if demand.kind == "kubernetes" else [
            Check("node: pid exists", "ok")]

    monkeypatch.setattr(examine, "examine", fake)
    return seen


RUNBOOK = """
target:
  kubernetes: {namespace: shop, selector: app=api, container: api, context: prod}
steps:
  - shell: {argv: ["true"]}
"""


def test_doctor_checks_the_runbooks_target_with_the_flags_over_it(examined, write,
                                                                  capsys) -> None:
    path = write(RUNBOOK)
    assert main(["doctor", "-f", str(path), "--pod", "api-0", "--context", "staging",
                 "--image", "reg/m:1", "--privileged"]) == 3
    assert examined[-1].target == {"kubernetes": {
        "namespace": "shop", "context": "staging", "pod": "api-0", "image": "reg/m:1",
        "privileged": True}}
    assert "rbac: create pods/ephemeralcontainers" in capsys.readouterr().out
    assert main(["doctor", "-f", str(path), "--pid", "1", "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["exit_code"], report["target"]) == (True, 0, {"node": {"pid": 1}})
    assert examined[-1].steps and examined[-1].runbook


def test_doctor_without_a_runbook_checks_what_the_flags_name(examined, capsys) -> None:
    assert main(["doctor", "-n", "shop", "-l", "app=api", "--kubeconfig", "/k"]) == 3
    assert (examined[-1].target, examined[-1].steps) == (
        {"kubernetes": {"namespace": "shop", "selector": "app=api", "kubeconfig": "/k"}}, None)
    assert main(["doctor", "--pid", "7"]) == 0
    assert examined[-1].target == {"node": {"pid": 7}}
    assert main(["doctor", "--pid", "7", "--pod", "x"]) == 2
    assert "--pid cannot be combined" in capsys.readouterr().err
    assert len(examined) == 2


class Manager:
    """A pod's manager: ps answers ``processes``; exec prints and exits as told."""

    def __init__(self, name: str, code: int = 0) -> None:
        self.name, self.code = name, code
        self.execs: list[tuple[Any, ...]] = []

    def ps(self, all_processes: bool = False) -> list[ProcessInfo]:
        return [ProcessInfo(1, 0, 0, "root", ["app"], "app",
                            [Listening("tcp", "0.0.0.0", 8080)], True),
                ProcessInfo(9, 1, 1000, "somebody-long-name", ["sh"], "sh", [], False,
                            pod_uid="u-1")][: 2 if all_processes else 1]

    def exec(self, argv: Any = None, *, stdin: Any = None, on_output: Any, capture: bool,
             script: str | None = None) -> ExecResult:
        self.execs.append((argv, stdin, script))
        on_output("stdout", f"out of {self.name}\npartial".encode())
        on_output("stderr", b"warn\n")
        return ExecResult(self.code)


class Fleet:
    def __init__(self, pods: dict[str, Any]) -> None:
        self.pods = pods

    def replicas(self) -> list[Any]:
        return [NS(name=name, gone="") for name in self.pods]

    def open(self, replica: Any) -> Any:
        found = self.pods[replica.name]
        if isinstance(found, Exception):
            raise found
        return NS(manager=found)


class Session:
    def __init__(self, manager: Manager | None = None, fleet: Fleet | None = None,
                 way: str = "ephemeral") -> None:
        self.manager, self._fleet, self.info = manager, fleet, {"way": way}

    def fleet(self) -> Fleet | None:
        return self._fleet

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_: Any) -> None:
        pass


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``open_target`` records the spec and returns ``opened[0]`` (set by the test)."""
    import kdiag.targets.factory as factory

    specs: list[Any] = []

    def open_target(spec: Any) -> Any:
        specs.append(spec)
        return specs[0]

    monkeypatch.setattr(factory, "open_target", open_target)
    return specs


class Bytes(io.StringIO):
    """A text stream with the ``buffer`` the commands write bytes to."""

    def __init__(self, data: bytes = b"") -> None:
        super().__init__()
        self.bytes = io.BytesIO(data)

    @property
    def buffer(self) -> Any:
        return self.bytes

    def fileno(self) -> int:
        return -1  # (os.isatty is replaced: not a terminal)


def test_ps_prints_a_row_per_process_and_the_flags_reach_the_target(opened, capsys) -> None:
    opened.append(Session(Manager("api-0"), way="node"))
    assert main(["ps", "deploy/api", "-n", "shop", "--context", "c1", "--kubeconfig", "/k",
                 "--image", "reg/m:1", "--image-pull-policy", "Never", "--privileged",
                 "--all-processes"]) == 0
    spec = opened[1]
    assert spec == {"kubernetes": {"namespace": "shop", "pod": "deploy/api", "context": "c1",
                                   "kubeconfig": "/k", "image": "reg/m:1",
                                   "image_pull_policy": "Never", "privileged": True}}
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["PID", "PPID", "USER", "LISTEN", "COMMAND"]
    assert rows[1].split() == ["1", "0", "root", "tcp:8080", "*app"]
    assert rows[2].split() == ["9", "1", "somebody-l", "-", "sh", "[pod", "uid", "u-1]"]


def test_ps_all_prefixes_each_pods_rows_and_a_pod_not_reached_is_exit_3(opened,
                                                                       capsys) -> None:
    opened.append(Session(fleet=Fleet({"api-0": Manager("api-0"),
                                       "api-long-1": TargetError("pod api-long-1 is gone")})))
    assert main(["ps", "deploy/api", "--all"]) == 3
    assert opened[1]["kubernetes"]["pick"] == "all"
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{'POD':<13}{HEADER}"
    assert out[1].split() == ["[api-0]", "1", "0", "root", "tcp:8080", "*app"]
    assert out[2] == "[api-long-1] kdiag: error: pod api-long-1 is gone"


def test_shell_all_runs_on_every_pod_lines_prefixed_first_failing_code(
        opened, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import sys

    first, second = Manager("api-0"), Manager("api-1", code=4)
    opened.append(Session(fleet=Fleet({"api-0": first, "api-1": second,
                                       "api-2": TargetError("gone")})))
    out, err = Bytes(), Bytes()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdin", Bytes(b""))
    monkeypatch.setattr("os.isatty", lambda fd: False)
    assert main(["shell", "deploy/api", "--all", "--", "ls", "/"]) == 4
    assert first.execs == [(["ls", "/"], None, None)]
    printed = out.bytes.getvalue().decode().splitlines()
    assert sorted(printed) == ["[api-0] out of api-0", "[api-0] partial", "[api-1] out of api-1",
                               "[api-1] partial"]
    assert printed.index("[api-0] out of api-0") < printed.index("[api-0] partial")
    errors = err.bytes.getvalue().decode().splitlines()
    assert sorted(errors) == ["[api-0] warn", "[api-1] kdiag: exit code 4", "[api-1] warn",
                              "[api-2] kdiag: error: gone"]


def test_shell_all_takes_a_script_on_stdin_and_refuses_nothing_to_run(
        opened, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import sys

    pod = Manager("api-0")
    opened.append(Session(fleet=Fleet({"api-0": pod})))
    monkeypatch.setattr("os.isatty", lambda fd: False)
    monkeypatch.setattr(sys, "stdout", Bytes())
    monkeypatch.setattr(sys, "stdin", Bytes(b"echo hi\n"))
    assert main(["shell", "deploy/api", "--all"]) == 0
    assert pod.execs == [(None, None, "echo hi\n")]
    monkeypatch.setattr(sys, "stdin", Bytes(b"  \n"))
    err = Bytes()
    monkeypatch.setattr(sys, "stderr", err)
    assert main(["shell", "deploy/api", "--all"]) == 2
    assert "nothing to run" in err.getvalue()


@pytest.mark.parametrize(("flags", "options"), [
    (["node/worker-1", "-n", "ops", "--node-namespace", "privileged", "--start-timeout", "90s",
      "--image", "reg/m:2"],
     {"namespace": "ops", "node": "worker-1", "image": "reg/m:2", "timeout": "90s",
      "node_namespace": "privileged"}),
    (["api-0", "--copy", "--copy-image", "busybox:1", "--keep-copy", "-c", "app"],
     {"pod": "api-0", "container": "app", "copy": {"image": "busybox:1"}, "keep_copy": True}),
    (["-l", "app=api", "--copy", "--via", "auto"],
     {"selector": "app=api", "copy": True, "via": "auto"}),
])
def test_target_flags_make_the_target_opened(opened, capsys, flags: list[str],
                                              options: dict[str, Any]) -> None:
    opened.append(Session(Manager("x")))
    assert main(["ps", *flags]) == 0, capsys.readouterr().err
    assert opened[1] == {"kubernetes": options}


@pytest.mark.parametrize(("flags", "message"), [
    (["node/worker-1", "-c", "app"], "node/NAME names a node: no -l, --all, -c"),
    (["node/"], "node/NAME names a node"),
    (["--pod", "api-0", "-l", "app=api"], "name the target once"),
    (["--pid", "1", "--all"], "--all needs a pod target"),
    (["--pid", "1", "-l", "a=b"], "--pid cannot be combined"),
    ([], "name the target: POD or TYPE/NAME"),
    (["nosuchkind/api"], "nosuchkind"),
])
def test_target_flag_mistakes_exit_2_before_anything_opens(opened, capsys, flags: list[str],
                                                           message: str) -> None:
    assert main(["ps", *flags]) == 2
    assert message in capsys.readouterr().err
    assert opened == []


@pytest.mark.parametrize(("flags", "wanted"), [
    (["--env", "--include", "DB_*", "--exclude", "DB_PASSWORD", "--set-env", "DEBUG=1"],
     {"env": True, "include": ("DB_*",), "exclude": ("DB_PASSWORD",), "names": False,
      "overrides": {"DEBUG": "1"}}),
    (["--name", "db", "--name", "cache.data", "--file", "/etc/app/", "--public", "/etc/app/a",
      "--view", "remap"],
     {"env": False, "names": True, "services": ("db", "cache.data"), "files": ("/etc/app/",),
      "public": ("/etc/app/a",), "view": "remap"}),
    (["--names", "--include", "X"], {"env": True, "include": ("X",), "names": True,
                                     "services": ()}),
])
def test_exec_flags_say_what_is_taken_from_the_target(opened, monkeypatch: pytest.MonkeyPatch,
                                                      flags: list[str],
                                                      wanted: dict[str, Any]) -> None:
    import kdiag.context.prepare as prepare

    seen: list[Any] = []

    def fake(spec: Any, session: Any, env: Any) -> Any:
        seen.append(spec)
        raise ValueError("stop here")

    monkeypatch.setattr(prepare, "prepare", fake)
    opened.append(Session(Manager("x")))
    assert main(["exec", "api-0", *flags, "--", "env"]) == 2
    (spec,) = seen
    assert {name: getattr(spec, name) for name in wanted} == wanted


@pytest.mark.parametrize(("flags", "message"), [
    (["--env", "--set-env", "NOEQUALS"], "--set-env 'NOEQUALS': use NAME=VALUE"),
    (["--env", "--set-env", "=v"], "use NAME=VALUE"),
    (["--file", "etc/app"], "is not an absolute path"),
    ([], "say what to take from the target"),
])
def test_exec_flag_mistakes_exit_2(opened, capsys, flags: list[str], message: str) -> None:
    assert main(["exec", "api-0", *flags, "--", "env"]) == 2
    assert message in capsys.readouterr().err
    assert opened == []
