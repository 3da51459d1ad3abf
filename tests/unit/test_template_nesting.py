"""Templates that nest deeper than Python can compile are refused by ``validate`` (issue 11).

Jinja compiles a template to Python source, and CPython refuses source nested past its own
limits (measured on 3.11 with kdiag's sandbox, with no caller stack: a chain of ``+``, ``.attr``
or ``| filter`` fails from 198 terms, nested brackets from 66, nested ``{% for %}`` from 21,
nested ``{% if %}``/``{% macro %}``/``{% call %}`` from 99; fewer when the caller is already
deep). ``validate`` only parses, so it holds each construct to a bound well under that
(:data:`~kdiag.language.limits.NESTING`). For each construct: at the bound it renders through
``kdiag run``, and still compiles with 300 more frames of caller stack than ``run`` has; one
past it, ``validate`` and ``run`` refuse it at its ``FILE:LINE:COL``, exit 2, before any step.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kdiag.language.limits import NESTING
from tests.unit.capped import Worker, run_kdiag

PARAMS = "params: {n: {default: 1, type: integer}}\n"
CALLER = "{% macro m() %}{{ caller() }}{% endmacro %}"


def nest(opening: str, closing: str, n: int, inner: str = "x") -> str:
    return opening * n + inner + closing * n


def chain(first: str, link: str, n: int) -> str:
    """``first`` and ``n - 1`` links: an expression ``n`` levels deep."""
    return "x{{ " + first + link * (n - 1) + " }}"


def brackets(n: int) -> str:
    """``n`` brackets inside one another, each a level of ``~`` (three Python parentheses)."""
    return "x{{ " + nest("(params.n ~ ", ")", n - 1, "(params.n)") + " }}"


def worst(n: int) -> str:
    """Everything at once, every bound met: tags with a body (the loops among them) around
    an expression whose brackets and depth are both at their bounds; ``n`` unused."""
    loops = NESTING.loops
    calls = NESTING.blocks - loops
    inner = nest("(params.n ~ ", ")", NESTING.brackets, "params.n" + " | string" *
                 (NESTING.expression - NESTING.brackets - 2))
    return CALLER + nest("{% for i in [1] %}", "{% endfor %}", loops,
                         nest("{% call m() %}", "{% endcall %}", calls, "{{ " + inner + " }}"))


# name -> (the template nested n deep, the bound it meets, what it renders to at the bound)
CONSTRUCTS: dict[str, tuple[Callable[[int], str], int, str]] = {
    "+ chain": (lambda n: chain("params.n", " + params.n", n - 1), NESTING.expression,
                f"x{NESTING.expression - 1}"),
    ".attr chain": (lambda n: chain("params.n", ".real", n - 1), NESTING.expression, "x1"),
    "[index] chain": (lambda n: chain("'y'", "[0]", n), NESTING.expression, "xy"),
    "| filter chain": (lambda n: chain("params.n", " | abs", n - 1), NESTING.expression, "x1"),
    "and chain": (lambda n: chain("params.n", " and params.n", n - 1), NESTING.expression,
                  "x1"),
    "not chain": (lambda n: chain("not params.n", "", 1).replace("not", "not " * (n - 2), 1),
                  NESTING.expression, "xTrue"),
    "if-else chain": (lambda n: chain("params.n", " if params.n else params.n", n - 1),
                      NESTING.expression, "x1"),
    "brackets": (brackets, NESTING.brackets, "x" + "1" * NESTING.brackets),
    "lists": (lambda n: "x{{ " + nest("[", "]", n, "1") + " | length }}", NESTING.brackets,
              "x1"),
    "{% for %}": (lambda n: nest("{% for i in [1] %}", "{% endfor %}", n), NESTING.loops, "x"),
    "{% if %}": (lambda n: nest("{% if params.n %}", "{% endif %}", n), NESTING.blocks, "x"),
    "{% elif %}": (lambda n: nest("{% if params.n %}", "{% endif %}", n - 1,
                                  "{% if not params.n %}a{% elif params.n %}x{% endif %}"),
                   NESTING.blocks, "x"),
    "{% macro %}": (lambda n: "x" + nest("{% macro m() %}", "{% endmacro %}", n, ""),
                    NESTING.blocks, "x"),
    "{% call %}": (lambda n: CALLER + nest("{% call m() %}", "{% endcall %}", n),
                   NESTING.blocks, "x"),
    "{% with %}": (lambda n: nest("{% with v = 1 %}", "{% endwith %}", n), NESTING.blocks, "x"),
    "{% filter %}": (lambda n: nest("{% filter upper %}", "{% endfilter %}", n),
                     NESTING.blocks, "X"),
    "{% set %} block": (lambda n: "x" + nest("{% set v %}", "{% endset %}", n),
                        NESTING.blocks, "x"),
}


def depth_of(name: str, n: int) -> str:
    """The template of ``name`` nested ``n`` deep (``params.n`` is two levels: a name and
    an attribute)."""
    return CONSTRUCTS[name][0](n)


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    started = Worker()
    yield started
    started.close()


def runbook(tmp_path: Path, name: str, template: str) -> Path:
    """A runbook whose template is the value at 4:11."""
    path = tmp_path / f"{re.sub(r'[^a-z]+', '-', name).strip('-') or 'x'}.yaml"
    quoted = json.dumps(template)
    path.write_text(f"{PARAMS}steps:\n  - note: ok\n  - note: {quoted}\n")
    return path


def cli(worker: Worker, *argv: str) -> tuple[int, str, str]:
    done = worker.ask({"op": "cli", "argv": list(argv)})
    assert "raised" not in done.reply, done.reply
    assert done.cpu <= 2.0, f"{argv[0]} took {done.cpu:.2f} s of CPU"
    return done["code"], done["stdout"], done["stderr"]


def messages_of(report: Path) -> dict[str, str]:
    """Each step's rendered note, by step name, from a JSON report."""
    steps = json.loads(report.read_text())["runs"][0]["steps"]
    return {step["name"]: step["result"]["message"] for step in steps}


def test_each_construct_at_its_bound_runs(tmp_path: Path, worker: Worker) -> None:
    steps = "".join(f"  - name: {json.dumps(name)}\n    note: {json.dumps(depth_of(name, bound))}\n"
                    for name, (_, bound, _) in CONSTRUCTS.items())
    path = tmp_path / "at-bounds.yaml"
    path.write_text(f"{PARAMS}steps:\n{steps}  - name: worst\n    note: {json.dumps(worst(0))}\n")
    report = tmp_path / "report.json"
    code, out, err = cli(worker, "run", str(path), "--report", f"json={report}", "--quiet")
    assert code == 0, out + err
    messages = messages_of(report)
    for name, (_, _, rendered) in CONSTRUCTS.items():
        assert messages[name] == rendered, name
    assert messages["worst"] == "1" * (NESTING.brackets + 1)


@pytest.mark.parametrize("name", CONSTRUCTS)
def test_one_past_its_bound_validate_refuses_it_at_its_place(tmp_path: Path, worker: Worker,
                                                             name: str) -> None:
    path = runbook(tmp_path, name, depth_of(name, CONSTRUCTS[name][1] + 1))
    code, _, err = cli(worker, "validate", str(path))
    assert code == 2, err
    assert re.match(rf"error: {re.escape(str(path))}:4:11: template nests too deeply: ", err), err
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(err.splitlines()) == 1, err
    code, out, err = cli(worker, "run", str(path))
    assert code == 2 and "nests too deeply" in err, out + err
    assert "ok" not in out, out  # no step ran


def _compiles_deep(text: str, frames: int) -> None:
    from kdiag.language.templating import Renderer

    if frames:
        return _compiles_deep(text, frames - 1)
    Renderer().env.from_string(text)
    return None


EXTRA_FRAMES = 300
"""Caller stack on top of what ``run`` uses (about 25 frames where it renders; a group in a
group adds about 4): compiling must still succeed at every bound."""


@pytest.mark.parametrize("name", [*CONSTRUCTS, "worst"])
def test_at_its_bound_it_compiles_with_stack_to_spare(name: str) -> None:
    text = worst(0) if name == "worst" else depth_of(name, CONSTRUCTS[name][1])
    limit = sys.getrecursionlimit()
    assert limit == 1000, "the margins were measured with Python's default recursion limit"
    _compiles_deep(text, EXTRA_FRAMES)


def test_the_issue_repro_exits_2_before_any_step(tmp_path: Path) -> None:
    """``note: "x{{ 1 + 1 + ... }}"`` (300 terms) failed at run time, exit 1 after steps ran."""
    path = tmp_path / "repro.yaml"
    path.write_text('steps:\n  - note: first\n  - note: "x{{ ' + " + ".join(["1"] * 300) + ' }}"\n')
    for command in ("validate", "run"):
        done = run_kdiag(command, str(path))
        assert done.code == 2, done.stderr
        assert re.search(rf"{re.escape(str(path))}:3:11: template nests too deeply: an "
                         rf"expression nests more than {NESTING.expression} levels deep",
                         done.stderr), done.stderr
        assert "Traceback" not in done.stderr and "first" not in done.stdout, done.stdout
        assert done.cpu <= 2.0, f"{command}: {done.cpu:.2f} s of CPU"


def block_scalar(template: str) -> str:
    """``template`` as a ``note: |`` block scalar of a step."""
    return "  - note: |\n" + "".join(f"      {line}\n" for line in template.split("\n"))


def test_the_place_is_the_line_that_crosses_the_bound(tmp_path: Path, worker: Worker) -> None:
    deep_for = nest("{% for i in [1] %}\n", "{% endfor %}", NESTING.loops + 1)
    deep_brackets = "{{ " + "(" * NESTING.brackets + "\n(1" + ")" * (NESTING.brackets + 1) + " }}"
    path = tmp_path / "lines.yaml"
    path.write_text("steps:\n" + block_scalar("a\n" + deep_for) + block_scalar("b\n" +
                                                                               deep_brackets))
    code, _, err = cli(worker, "validate", str(path))
    assert code == 2, err
    lines = err.splitlines()
    # The template starts on line 3; its line 1 is "a", so the 16th {% for %} is on file line
    # 3 + 16. The second starts on line 3 + 18 (its "b"); the 26th ( is on its line 3.
    for_line = 3 + NESTING.loops + 1
    assert re.match(rf"error: {re.escape(str(path))}:{for_line}:1: template nests too deeply: "
                    rf"more than {NESTING.loops} {{% for %}} loops", lines[0]), err
    assert re.match(rf"error: {re.escape(str(path))}:{for_line + 5}:1: template nests too deeply: "
                    rf"brackets", lines[1]), err


def test_elif_chains_and_far_apart_tags_are_not_nesting(tmp_path: Path, worker: Worker) -> None:
    """``{% elif %}`` is written beside its ``{% if %}`` (Python's elif), and tags one after
    another do not nest: neither counts toward the bounds, however many."""
    elifs = "{% if params.n == 0 %}a" + "".join(f"{{% elif params.n == {i} %}}{i}"
                                                   for i in range(2, 200)) + "{% else %}z{% endif %}"
    loops = "{% for i in [1] %}y{% endfor %}" * 200
    path = tmp_path / "flat.yaml"
    path.write_text(f"{PARAMS}steps:\n  - name: elifs\n    note: {json.dumps(elifs)}\n"
                    f"  - name: loops\n    note: {json.dumps(loops)}\n")
    report = tmp_path / "report.json"
    code, out, err = cli(worker, "run", str(path), "--report", f"json={report}", "--quiet")
    assert code == 0, out + err
    assert messages_of(report) == {"elifs": "z", "loops": "y" * 200}


def test_tags_nested_past_the_parsers_stack_are_refused_with_a_line(tmp_path: Path,
                                                                   worker: Worker) -> None:
    """300 nested tags: Jinja's parser runs out of stack before the tree can be counted."""
    path = runbook(tmp_path, "parser", nest("{% if params.n %}", "{% endif %}", 300))
    code, _, err = cli(worker, "validate", str(path))
    assert code == 2, err
    assert re.match(rf"error: {re.escape(str(path))}:4:11: template nests too deeply: ", err), err
