"""Fuzzing ``kdiag validate`` (issue 11) with runbooks mutated from ``runbooks/*.yaml``, YAML and
Jinja token soup, hostile snippets (alias bombs, huge templates, deep nesting, bad bytes) and
random text. Every case runs in the capped worker (``capped.Worker``: a 1 GiB address-space
cap) and must end with exit 0 or 2, no traceback and no internal error, every exit-2 line
``error: FILE:LINE:COL: ...``, in under 2 s of CPU and 200 MB of RSS.

``KDIAG_FUZZ_EXAMPLES`` sets how many cases (default 2000, split over the strategies below);
``make fuzz`` runs many more. The figures (cases, time, the slowest and largest case) are
printed at the end of the module and written to ``.fuzz/results.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.capped import ROOT, Worker

EXAMPLES = int(os.environ.get("KDIAG_FUZZ_EXAMPLES", "2000"))
MAX_CPU = 2.0
MAX_RSS_KB = 200 * 1024
WALL_TIMEOUT = 30.0

BASES = [p.read_bytes() for p in sorted((ROOT / "runbooks").rglob("*.yaml"))]
VALID = b"""\
params:
  port: {type: integer, default: 8080}
  token: {type: string, default: x, secret: true}
steps:
  - name: call
    http: {url: "http://localhost:{{ params.port }}/"}
    register: resp
    retries: 2
    until: resp.status == 200
    assert: [resp.status == 200, "resp.text is search('ok')"]
  - run:
      script: |
        echo {{ resp.text | quote }}
    when: resp.ok
  - {name: srv, run: {argv: [sleep, '9']}, background: true}
  - wait: {until: "steps['call'].ok", timeout: 1s}
  - stop: srv
finally:
  - note: "done {{ run.id }}"
"""
TOKENS = [t.encode() for t in [
    "{", "}", "[", "]", ":", "- ", "\n", "  ", "'", '"', "{{", "}}", "{%", "%}", "&a ", "*a",
    "!!binary ", "!!python/object ", "<<: ", "---", "\t", "#", "|", ">", "? ", ",", "%YAML 1.1",
    "steps", "note", "run", "assert", "params", "type", "1e400", "~", "stop: srv", "when: ",
    "{{ steps['nope'].ok }}", "{{ params.nope }}", "is match('(')", "| regex_search('[', 3)",
    "{{ x | nosuch }}", "register: params", "background: true", "include: {file: nope.yaml}",
]] + [b"\x00", b"\xff", b"\xc3", b"\xef\xbb\xbf", b"\r", b"\x85", b"\xe2\x80\xa8"]
HOSTILE = [
    b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
    b"m0: &m0 {x: 1}\nm1: &m1 {<<: [*m0, *m0], y: 1}\nm2: {<<: [*m1, *m1, *m1]}\n",
    b"  - note: \"{{ ' ' * 10**9 }}\"\n", b"  - note: \"{{ 'x' | center(10**9) }}\"\n",
    b"  - note: \"{% for i in range(10**6) %}{% for j in range(10**6) %}x{% endfor %}{% endfor %}\"\n",
    b"  - note: '" + b"{{ a.b + c[1] | upper }} " * 3000 + b"'\n",
    b"x: " + b"[" * 3000 + b"]" * 3000 + b"\n", b"x: " + b"{a: " * 80 + b"1" + b"}" * 80 + b"\n",
    b"x: " + b"9" * 6000 + b"\n", b"x: !!int 0x" + b"f" * 5000 + b"\n",
    b"x: [" + b",".join([b"1"] * 60_000) + b"]\n", b"  - note: '" + b"{" * 100_000 + b"'\n",
    b"x: 'unclosed\n", b'x: "unclosed\n', b"x: [a, b\n", b"x: {a: b\n", b"x: |\n  a\n b\n",
    bytes(range(256)), b"\xff\xfe\x00s\x00t\x00e\x00p\x00s\x00",
]


def _lines(data: bytearray) -> list[bytes]:
    return bytes(data).split(b"\n")


@st.composite
def mutated(draw: Any) -> bytes:
    """A runbook with 1 to 6 mutations: bytes, tokens or hostile snippets inserted, spans
    deleted or replaced, lines duplicated, dropped, swapped or re-indented, a cut."""
    data = bytearray(draw(st.sampled_from([*BASES, VALID])))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["token", "bytes", "hostile", "delete", "replace", "dup",
                                     "drop", "swap", "indent", "cut"]))
        at = draw(st.integers(0, len(data)))
        if kind == "token":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif kind == "bytes":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "hostile":
            line_start = data.rfind(b"\n", 0, at) + 1
            data[line_start:line_start] = draw(st.sampled_from(HOSTILE))
        elif kind in ("delete", "replace"):
            end = min(len(data), at + draw(st.integers(1, 60)))
            data[at:end] = draw(st.sampled_from(TOKENS)) if kind == "replace" else b""
        elif kind == "cut":
            del data[at:]
        else:
            lines = _lines(data)
            i, j = (draw(st.integers(0, len(lines) - 1)) for _ in range(2))
            if kind == "dup":
                lines.insert(i, lines[i])
            elif kind == "drop":
                del lines[i]
            elif kind == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                shift = draw(st.integers(-4, 4))
                lines[i] = b" " * shift + lines[i] if shift > 0 else lines[i][-shift:]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


token_soup = st.lists(st.sampled_from(TOKENS) | st.binary(max_size=5), max_size=80).map(b"".join)
random_text = st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass"))

LINE = re.compile(r"^error: (?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+): \S")


class Fuzz:
    """The worker, the case file (in a copy of ``runbooks/``, so includes resolve) and figures."""

    def __init__(self, folder: Path) -> None:
        shutil.copytree(ROOT / "runbooks", folder / "runbooks")
        self.path = folder / "runbooks" / "fuzz-case.yaml"
        self.worker = Worker()
        self.figures: dict[str, Any] = {"cases": 0, "exit_0": 0, "exit_2": 0, "max_cpu_s": 0.0,
                                        "max_wall_s": 0.0, "max_rss_mb": 0.0}
        self.started = time.monotonic()

    def check(self, data: bytes) -> None:
        self.path.write_bytes(data)
        done = self.worker.ask({"op": "cli", "argv": ["validate", str(self.path)]},
                               timeout=WALL_TIMEOUT)
        case = f"case {data[:300]!r}...: {done.reply}"
        assert "raised" not in done.reply, case
        code, err = done["code"], done["stderr"]
        assert code in (0, 2), case
        assert "Traceback" not in err and "internal error" not in err, case
        if code == 2:
            lines = err.splitlines()
            assert lines, case
            for line in lines:
                match = LINE.match(line)
                assert match and match["file"] == str(self.path), f"{line!r} in {case}"
                assert len(line) <= len(str(self.path)) + 500, f"a long line in {case}"
        else:
            assert err == "", case
        assert done.cpu <= MAX_CPU, f"{done.cpu:.2f} s of CPU: {case}"
        assert done.rss_kb <= MAX_RSS_KB, f"{done.rss_kb // 1024} MB: {case}"
        figures = self.figures
        figures["cases"] += 1
        figures[f"exit_{code}"] += 1
        figures["max_cpu_s"] = max(figures["max_cpu_s"], round(done.cpu, 3))
        figures["max_wall_s"] = max(figures["max_wall_s"], round(done.wall, 3))
        figures["max_rss_mb"] = max(figures["max_rss_mb"], round(done.rss_kb / 1024, 1))


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Fuzz]:
    started = Fuzz(tmp_path_factory.mktemp("fuzz"))
    yield started
    started.worker.close()
    figures = {**started.figures, "seconds": round(time.monotonic() - started.started, 1)}
    out = ROOT / ".fuzz"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(figures, indent=2) + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"fuzz: {json.dumps(figures)}")


def _settings(share: float) -> Any:
    return settings(max_examples=max(1, int(EXAMPLES * share)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@_settings(0.7)
@given(mutated())
def test_mutated_runbooks(fuzz: Fuzz, data: bytes) -> None:
    fuzz.check(data)


@_settings(0.15)
@given(token_soup)
def test_token_soup(fuzz: Fuzz, data: bytes) -> None:
    fuzz.check(data)


@_settings(0.15)
@given(random_text)
def test_random_text(fuzz: Fuzz, data: bytes) -> None:
    fuzz.check(data)


def test_every_hostile_snippet_alone_and_in_a_runbook(fuzz: Fuzz) -> None:
    for snippet in HOSTILE:
        fuzz.check(snippet)
        fuzz.check(b"steps:\n  - note: x\n" + snippet)
    fuzz.check(VALID)
