"""`kdiag validate`: every kind of runbook error is caught before running, with file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdiag.cli.main import main
from kdiag.errors import RunbookError
from kdiag.language.runbook import Loader
from kdiag.steps import catalog


def validate(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["validate", str(path), *extra])
    return code, capsys.readouterr().err


CASES = {
    "yaml syntax": ("steps:\n  - run: {argv: [a, b}\n", "2:22", "YAML syntax error"),
    "unknown top-level key": ("steps: []\nstpes: []\n", "2:1", "unknown field 'stpes'"),
    "unknown control": ("steps:\n  - note: hi\n    retry: 3\n", "3:5", "unknown field 'retry'"),
    "unknown body field": ("steps:\n  - run:\n      argv: [ls]\n      cmd: x\n", "4:7",
                           "unknown field 'cmd'"),
    "wrong type": ("steps:\n  - note: hi\n    retries: many\n", "3:14", "expected an integer"),
    "wrong type in body": ("steps:\n  - run:\n      argv: ls\n", "3:13", "expected a list"),
    "missing field": ("steps:\n  - http: {method: GET}\n", "2:11", "missing required field 'url'"),
    "missing steps": ("name: x\n", "1:1", "missing required field 'steps'"),
    "unknown step type": ("steps:\n  - shel: {script: ls}\n", "2:5",
                          "unknown step type 'shel'"),
    "two step types": ("steps:\n  - note: a\n    pause: b\n", "2:5", "exactly one type"),
    "duplicate step names": ("steps:\n  - {name: a, note: x}\n  - {name: a, note: y}\n", "3:12",
                             "duplicate step name 'a' (first used at"),
    "duplicate key": ("steps:\n  - note: a\n    note: b\n", "3:5", "duplicate key 'note'"),
    "template syntax": ("steps:\n  - note: 'hi {{ x + }}'\n", "2:11", "template syntax error"),
    "template syntax in block": ("steps:\n  - run:\n      script: |\n        echo ok\n"
                                 "        echo {{ oops(}}\n", "5:1", "template syntax error"),
    "expression syntax": ("steps:\n  - note: a\n    when: 'x =='\n", "3:11",
                          "expression syntax error"),
    "braces in expression": ("steps:\n  - note: a\n    when: '{{ x }}'\n", "3:11",
                             "without {{ }}"),
    "undefined variable": ("steps:\n  - {note: x, register: resp}\n  - note: '{{ rsp.x }}'\n",
                           "3:11", "undefined variable 'rsp' (did you mean 'resp'?)"),
    "register used before": ("steps:\n  - note: '{{ later }}'\n  - {note: x, register: later}\n",
                             "2:11", "undefined variable 'later'"),
    "unknown param": ("params:\n  port: {type: integer, default: 1}\nsteps:\n"
                      "  - note: '{{ params.prot }}'\n", "4:11",
                      "unknown param 'prot' (did you mean 'port'?)"),
    "bad param type": ("params:\n  port: {type: int}\nsteps: []\n", "2:16", "expected one of"),
    "bad default": ("params:\n  port: {type: integer, default: x}\nsteps: []\n", "2:34",
                    "default of param 'port' is not an integer"),
    "reserved register": ("steps:\n  - {note: x, register: params}\n", "2:25", "reserved name"),
    "background not allowed": ("steps:\n  - {note: x, background: true}\n", "2:15",
                               "cannot run in the background"),
    "bad duration": ("steps:\n  - {note: x, timeout: 5 minutes}\n", "2:24", "is not a duration like 30s"),
    "step not a mapping": ("steps:\n  - just text\n", "2:5", "a step must be a mapping"),
    "not a mapping": ("- a\n- b\n", "1:1", "a runbook must be a mapping"),
    "empty file": ("", "1:1", "the file is empty"),
    "shell without script or argv": ("steps:\n  - shell: {env: {A: b}}\n", "2:12",
                                     "needs one of: script, argv"),
    "ps bad field": ("steps:\n  - ps: {every: true}\n", "2:10", "unknown field 'every'"),
    "net takes no fields": ("steps:\n  - net: {iface: eth0}\n", "2:11", "unknown field 'iface'"),
    "redirect bad port": ("steps:\n  - redirect: {ports: [web_port]}\n", "2:24",
                          "PORT or PORT:LOCALPORT or NAME or NAME:LOCALPORT (a named port), "
                          "got a string 'web_port'"),
    "redirect bad direction": ("steps:\n  - redirect: {ports: [80], direction: sideways}\n",
                               "2:40", "expected one of 'incoming', 'outgoing'"),
    "capture negative limit": ("steps:\n  - capture: {max_packets: -1}\n", "2:28",
                               "must be at least 0"),
    "copy both ways": ("steps:\n  - copy: {download: /a, upload: b}\n", "2:11",
                       "needs only one of: download, upload"),
    "copy bad mode": ("steps:\n  - copy: {upload: a, to: /b, mode: '999'}\n", "2:37",
                      "is not an octal mode"),
    "probe bad tcp": ("steps:\n  - probe: {tcp: nohost}\n", "2:18", "is not HOST:PORT"),
    "probe send without tcp": ("steps:\n  - probe: {url: 'http://x/', send: hi}\n", "2:31",
                               "'send' needs 'tcp' beside it"),
    "stop empty": ("steps:\n  - stop: ''\n", "2:11", "must not be empty"),
    "group without steps": ("steps:\n  - group: {}\n", "2:12", "missing required field 'steps'"),
    "two targets": ("target:\n  node: {pid: 1}\n  kubernetes: {pod: x}\nsteps: []\n", "2:3",
                    "allows at most 1 entries"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_error_kind_has_exit_2_and_location(name: str, write, capsys) -> None:
    text, where, message = CASES[name]
    path = write(text)
    code, err = validate(path, capsys)
    assert code == 2
    assert f"{path}:{where}: " in err, err
    assert message in err, err


def test_every_problem_is_reported_at_once(write, capsys) -> None:
    path = write("steps:\n  - note: a\n    retry: 1\n  - run: {argv: x}\nextra: 1\n")
    code, err = validate(path, capsys)
    assert code == 2
    assert err.count("error: ") == 3, err


def test_valid_runbook_passes(write, capsys) -> None:
    path = write("""
        params:
          port: {type: integer, default: 8080}
        steps:
          - name: call
            http: {url: "http://localhost:{{ params.port }}/"}
            register: resp
            retries: 3
            until: resp.status == 200
            assert: [resp.status == 200, "'ok' in resp.text"]
          - note: "{{ resp.status }} {{ steps['call'].ok }} {{ params.port | quote }}"
        finally:
          - run: {script: "echo {{ run.id }}"}
    """)
    assert main(["validate", str(path)]) == 0
    assert "ok (2 steps, 1 finally step)" in capsys.readouterr().out


def test_missing_required_param_is_an_error_with_set(write, capsys) -> None:
    path = write("params:\n  pid: {type: integer}\n  x: {type: string, default: a}\nsteps: []\n")
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()
    code, err = validate(path, capsys, "--set", "x=b")
    assert code == 2
    assert f"{path}:2:3: param 'pid' is required" in err


def test_values_file_errors_name_the_values_file(write, capsys) -> None:
    path = write("params:\n  port: {type: integer, default: 1}\nsteps: []\n")
    values = write("port: 80\nprot: 81\n", "values.yaml")
    code, err = validate(path, capsys, "--values", str(values))
    assert code == 2
    assert f"{values}:2:7: unknown param 'prot' (did you mean 'port'?)" in err


def test_include_problems(write, capsys) -> None:
    write("params:\n  x: {type: integer}\nsteps:\n  - note: 'x={{ params.x }}'\n", "lib/inc.yaml")
    good = write("steps:\n  - include: {file: lib/inc.yaml, params: {x: 1}}\n", "good.yaml")
    assert main(["validate", str(good)]) == 0
    missing = write("steps:\n  - include: {file: lib/nope.yaml}\n", "missing.yaml")
    code, err = validate(missing, capsys)
    assert code == 2 and f"{missing}:2:21: included runbook 'lib/nope.yaml' not found" in err
    no_param = write("steps:\n  - include: {file: lib/inc.yaml, params: {y: 1}}\n", "np.yaml")
    code, err = validate(no_param, capsys)
    assert code == 2
    assert "has no param 'y'" in err and "needs param 'x'" in err


def test_include_cycle_is_an_error(write, capsys) -> None:
    a = write("steps:\n  - include: {file: b.yaml}\n", "a.yaml")
    write("steps:\n  - include: {file: a.yaml}\n", "b.yaml")
    code, err = validate(a, capsys)
    assert code == 2
    assert "include cycle: a.yaml -> b.yaml -> a.yaml" in err


def test_include_found_on_search_path(write, tmp_path, capsys, monkeypatch) -> None:
    write("steps:\n  - note: shared\n", "team/lib/check.yaml")
    caller = write("steps:\n  - include: {file: check.yaml}\n", "app/caller.yaml")
    assert validate(caller, capsys)[0] == 2
    assert main(["validate", str(caller), "--path", str(tmp_path / "team/lib")]) == 0
    monkeypatch.setenv("KDIAG_PATH", str(tmp_path / "team/lib"))
    assert main(["validate", str(caller)]) == 0


def test_yaml_keys_stay_strings(write) -> None:
    path = write("steps:\n  - run: {argv: [echo], env: {on: 'yes'}}\n")
    runbook = Loader(catalog()).load(str(path))
    assert runbook.steps[0].body["env"] == {"on": "yes"}


def test_loader_raises_runbook_error_for_missing_file(tmp_path) -> None:
    with pytest.raises(RunbookError, match="no such file"):
        Loader(catalog()).load(str(tmp_path / "nope.yaml"))


def test_unknown_filter_is_a_template_error(write, capsys) -> None:
    path = write("steps:\n  - note: '{{ x | nosuchfilter }}'\n")
    code, err = validate(path, capsys)
    assert code == 2
    assert f"{path}:2:11: template syntax error: No filter named 'nosuchfilter'" in err


def test_nested_steps_are_validated_with_their_location(write, capsys) -> None:
    path = write("steps:\n  - group:\n      steps:\n        - {name: a, note: x}\n"
                 "        - {name: a, nope: 1}\n")
    code, err = validate(path, capsys)
    assert code == 2
    assert f"{path}:5:21: unknown step type 'nope'" in err
    path = write("steps:\n  - group:\n      steps:\n        - {name: a, note: '{{ zz }}'}\n")
    code, err = validate(path, capsys)
    assert f"{path}:4:27: undefined variable 'zz'" in err
