"""`kdiag validate` catches what it can know before running (issue 11): regular expressions
written as literals, ``stop`` targets, ``steps[...]`` names, include params' values, the target's
templates; and with ``--set``/``--values`` it checks the params exactly as ``kdiag run`` does."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdiag.cli.main import main


def validate(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["validate", str(path), *extra])
    return code, capsys.readouterr().err


CASES = {
    "bad regex in match": ("steps:\n  - note: x\n    when: \"'a' is match('(ab')\"\n", "3:11",
                           "invalid regular expression '(ab' in the 'match' test: missing ), "
                           "unterminated subpattern at position 0"),
    "bad regex in search": ("steps:\n  - {note: x, register: r}\n  - assert: ['r.message is "
                            "search(\"[z-a]\")']\n", "3:14", "bad character range z-a"),
    "bad regex in regex_search": ("steps:\n  - note: \"{{ 'abc' | regex_search('*a') }}\"\n",
                                  "2:11", "in the 'regex_search' filter: nothing to repeat"),
    "regex_search group out of range": ("steps:\n  - note: \"{{ 'abc' | regex_search('(a)', 2) "
                                        "}}\"\n", "2:11", "asks for group 2 of '(a)', which has "
                                        "1 group(s)"),
    "regex_search unknown named group": ("steps:\n  - note: \"{{ 'abc' | regex_search('(?P<x>a)'"
                                         ", 'y') }}\"\n", "2:11", "asks for group 'y'"),
    "stop a step that is not in the background": (
        "steps:\n  - {name: srv, run: {argv: [sleep, '1']}}\n  - stop: srv\n", "3:11",
        "stop: step 'srv' does not run in the background"),
    "stop an unknown step": ("steps:\n  - {name: srv, run: {argv: [sleep, '1']}, background: "
                             "true}\n  - stop: svr\n", "3:11",
                             "stop: no step named 'svr' before this one (did you mean 'srv'?)"),
    "stop a later step": ("steps:\n  - stop: srv\n  - {name: srv, run: {argv: [sleep, '1']}, "
                          "background: true}\n", "2:11", "stop: step 'srv' runs after this one"),
    "stop a step of another list": (
        "steps:\n  - group:\n      steps:\n        - {name: srv, run: {argv: [sleep, '1']}, "
        "background: true}\n  - stop: srv\n", "5:11", "step 'srv' is in another step list"),
    "steps[] of an unknown step": ("steps:\n  - {name: call, note: x}\n  - note: \"{{ steps["
                                   "'cal'].ok }}\"\n", "3:11", "steps['cal']: no step of that "
                                   "name runs before this point (did you mean 'call'?)"),
    "steps. of a later step": ("steps:\n  - note: \"{{ steps.later.ok }}\"\n  - {name: later, "
                               "note: x}\n", "2:11", "steps['later']: no step of that name"),
    "include param of the wrong type": (
        "steps:\n  - include: {file: lib.yaml, params: {port: eighty}}\n", "2:46",
        "lib.yaml: param 'port': expected an integer, got a string 'eighty'"),
    "include param not a choice": (
        "steps:\n  - include: {file: lib.yaml, params: {port: 1, mode: slow}}\n", "2:55",
        "param 'mode': 'slow' is not one of 'fast'"),
    "unknown param in the target": ("target:\n  node: {pid: '{{ params.pidd }}'}\nsteps: []\n",
                                    "2:15", "unknown param 'pidd'"),
}
LIBRARY = ("params:\n  port: {type: integer}\n  mode: {type: string, default: fast, "
           "choices: [fast]}\nsteps: []\n")


@pytest.mark.parametrize("name", list(CASES))
def test_validate_catches_it_at_its_place(name: str, write, capsys) -> None:
    text, where, message = CASES[name]
    write(LIBRARY, "lib.yaml")
    path = write(text)
    code, err = validate(path, capsys)
    assert code == 2, err
    assert f"error: {path}:{where}: " in err, err
    assert message in err, err


def test_what_validate_accepts_still_passes(write, capsys) -> None:
    write(LIBRARY, "lib.yaml")
    path = write("""
        steps:
          - {name: srv, run: {argv: [sleep, '1']}, background: true}
          - name: check
            note: "{{ 'abc' | regex_search('(?P<x>b)', 'x') }} {{ steps['srv'].ok }}"
            until: "steps['check'].ok and result.message is match('b')"
          - stop: srv
          - stop: "{{ 'srv' }}"
          - include: {file: lib.yaml, params: {port: "{{ 80 }}", mode: fast}}
          - group:
              steps:
                - {name: inner, run: {argv: [sleep, '1']}, background: true}
                - stop: inner
        finally:
          - note: "{{ steps.srv.ok }} {{ 'x' is search('[a-z]+') }}"
    """)
    code, err = validate(path, capsys)
    assert code == 0, err


def test_validate_with_values_checks_exactly_what_run_checks(write, capsys) -> None:
    path = write("""
        params:
          pid: {type: string}
          mode: {type: string, default: a, choices: [a, b]}
        target:
          node: {pid: "{{ params.pid }}"}
        steps:
          - note: hi
    """)
    code, err = validate(path, capsys)
    assert code == 0, err  # a library runbook: required params are not asked for
    for flags, expected in [
        (["--set", "mode=b"], f"{path}:3:3: param 'pid' is required"),
        (["--set", "pid=1", "--set", "mode=c"], f"{path}:4:3: param 'mode': 'c' is not one of"),
        (["--set", "pid=abc"], f"{path}:6:15: target: pid must be a number, got 'abc'"),
    ]:
        code, err = validate(path, capsys, *flags)
        assert code == 2 and expected in err, err
        assert main(["run", str(path), *flags, "--dry-run"]) == 2
        assert expected in capsys.readouterr().err
    code, err = validate(path, capsys, "--set", "pid=12")
    assert code == 0, err


def test_a_message_quoting_a_huge_value_is_cut(write, capsys) -> None:
    path = write("steps:\n  - note: y\n    ? " + "b" * 50_000 + "\n    : 1\n")
    code, err = validate(path, capsys)
    assert code == 2 and f"{path}:3:7: unknown field 'bbbb" in err, err[:300]
    assert len(err) < 600 and "characters) ..." in err, err
