"""Hostile runbooks, by name (issue 11): each ends in one clear ``FILE:LINE:COL:`` message (or
a pass) in bounded time and memory. Every case runs the real ``kdiag`` under a memory cap
(``capped.run_kdiag``) or in the capped worker; CPU time is what is bounded (wall time moves
with the machine's load, CPU time hardly does)."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.capped import Worker, run_kdiag

MAX_CPU = 2.0
MAX_RSS_KB = 200 * 1024


def validate(path: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = run_kdiag("validate", str(path), *extra, env=env)
    assert done.cpu <= MAX_CPU, f"validate took {done.cpu:.2f} s of CPU"
    assert done.rss_kb <= MAX_RSS_KB, f"validate grew to {done.rss_kb // 1024} MB"
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    return done.code, done.stderr


def expect_error(path: Path, where: str, text: str, *extra: str) -> str:
    code, err = validate(path, *extra)
    assert code == 2, err
    first = err.splitlines()[0]
    assert re.match(rf"error: {re.escape(str(path))}:{where}: ", first), err
    assert text in first, err
    return err


def write_bytes(tmp_path: Path, data: bytes, name: str = "hostile.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def alias_bomb(levels: int = 9) -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]")
    return "\n".join([*lines, "steps: []"]) + "\n"


def test_an_alias_bomb_stops_at_the_alias_that_crosses_the_limit(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, alias_bomb().encode())
    # Keys count too: a, b, c and d hold 12 + 112 + 1112 + 11112 values; in e each *d adds
    # 11111, and the fourth one (column 20) goes past 50000.
    expect_error(path, "5:20", "alias *d expands the document past 50000 values")


def test_merge_keys_cannot_bomb_either(tmp_path: Path) -> None:
    lines = ["a0: &a0 {x: 1, y: 2}"]
    lines += [f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], k{i}: 1}}" for i in range(1, 40)]
    path = write_bytes(tmp_path, ("\n".join(lines) + "\nsteps: []\n").encode())
    expect_error(path, "13:17", "alias *a11 expands the document past 50000 values")


def test_merge_keys_still_merge(tmp_path: Path) -> None:
    text = ("base: &base {note: hi, when: 'true'}\nsteps:\n  - <<: *base\n    name: one\n"
            "  - <<: *base\n    name: two\n    note: override\n")
    code, err = validate(write_bytes(tmp_path, text.encode(), "ok.yaml"))
    assert code == 2 and "unknown field 'base'" in err  # the anchors' holder is not a field
    code, err = validate(write_bytes(tmp_path, text.replace("base: &base", "x-base: &base")
                                     .encode(), "ok2.yaml"))
    assert "unknown field 'x-base'" in err and "duplicate key" not in err, err


def test_a_file_over_the_size_limit_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"steps:\n  - note: '" + b"x" * (10 << 20) + b"'\n")
    done = run_kdiag("validate", str(path))
    assert done.code == 2
    assert done.stderr.startswith(f"error: {path}:1:1: the file is larger than 5 MiB"), done.stderr
    assert "KDIAG_MAX_FILE_SIZE" in done.stderr
    assert done.cpu < 1.0 and done.rss_kb < 100 * 1024


def test_the_size_limit_is_settable(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"steps:\n  - note: '" + b"x" * 3000 + b"'\n")
    done = run_kdiag("validate", str(path), env={"KDIAG_MAX_FILE_SIZE": "2k"})
    assert done.code == 2 and "larger than 2 KiB" in done.stderr, done.stderr
    assert run_kdiag("validate", str(path), env={"KDIAG_MAX_FILE_SIZE": "1m"}).code == 0
    bad = run_kdiag("validate", str(path), env={"KDIAG_MAX_FILE_SIZE": "lots"})
    assert bad.code == 2 and "KDIAG_MAX_FILE_SIZE='lots': expected a positive number" in bad.stderr


def test_a_file_just_under_the_limit_validates_within_bounds(tmp_path: Path) -> None:
    big = b"steps:\n  - run:\n      script: |\n" + b"".join(
        b"        echo line %d {{ params.x }}\n" % i for i in range(120_000))
    path = write_bytes(tmp_path, b"params: {x: {default: a}}\n" + big[: (5 << 20) - 200])
    code, err = validate(path)
    assert code == 2 and "the templates of this file hold more than" in err, err


def test_too_many_values_name_the_first_value_over_the_limit(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, ("steps: []\nx: [" + ",".join(["1"] * 60_000) + "]\n").encode())
    # 5 values before the list's items (the mapping, two keys, two lists): item 49996 is over.
    expect_error(path, "2:99995", "the document holds more than 50000 values")


def test_deep_nesting_is_refused_at_the_value_too_deep(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"steps: " + b"[" * 70 + b"]" * 70 + b"\n")
    expect_error(path, "1:72", "the document nests more than 64 levels deep")
    path = write_bytes(tmp_path, b"steps: " + b"[" * 200_000 + b"]" * 200_000, "deeper.yaml")
    code, err = validate(path)
    assert code == 2 and re.match(rf"error: {re.escape(str(path))}:1:\d+: ", err), err


def test_huge_template_arithmetic_is_not_computed_by_validate(tmp_path: Path) -> None:
    for i, text in enumerate(["{{ ' ' * 10**9 }}", "{{ 'x' | center(10**9) }}",
                              "{% for i in range(10) %}{{ ' ' * 10**9 }}{% endfor %}",
                              "{{ '%0999999999d' % 1 }}", "{{ 2 ** (10 ** 10) }}"]):
        path = write_bytes(tmp_path, f"steps:\n  - note: \"{text}\"\n".encode(), f"t{i}.yaml")
        code, err = validate(path)
        assert code == 0, err


def test_too_much_template_code_is_refused_at_the_template_that_crosses_it(tmp_path: Path) -> None:
    steps = "".join(f"  - note: '{{{{ {' + '.join(['params.a'] * 40)} }}}}'\n" for _ in range(400))
    path = write_bytes(tmp_path, f"params: {{a: {{default: 1, type: integer}}}}\nsteps:\n{steps}"
                       .encode())
    err = expect_error(path, r"\d+:11", "the templates of this file hold more than 60000 tokens")
    assert "KDIAG_MAX_TEMPLATE_TOKENS" in err


def test_not_utf8_names_the_line_and_column_of_the_first_bad_byte(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"steps:\n  - note: h\xc3\xa9llo \xff\n")  # (columns in characters)
    expect_error(path, "2:17", "not UTF-8 text: invalid start byte (byte 0xff)")
    path = write_bytes(tmp_path, b"steps:\n  - note: ok\n  - note: a\xc3(\n", "cont.yaml")
    expect_error(path, "3:12", "invalid continuation byte")


def test_binary_garbage_gets_a_place(tmp_path: Path) -> None:
    rng = random.Random(11)
    for i in range(5):
        data = bytes(rng.randrange(256) for _ in range(4096))
        code, err = validate(write_bytes(tmp_path, data, f"garbage{i}.bin"))
        assert code == 2 and re.match(rf"error: .*garbage{i}\.bin:\d+:\d+: ", err), err
    path = write_bytes(tmp_path, b"steps:\n  - note: \x00\x01\x02\n", "controls.yaml")
    expect_error(path, "2:11", "control characters are not allowed")


def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b'steps:\n  - note: "abc\n  - note: x\n  - note: y\n')
    expect_error(path, "2:11", "this quoted string is never closed (the file ends at 5:1)")
    path = write_bytes(tmp_path, b"steps:\n  - note: 'abc\n", "single.yaml")
    expect_error(path, "2:11", "this quoted string is never closed")
    path = write_bytes(tmp_path, b"steps:\n  - run: {argv: [ls, -l\n", "bracket.yaml")
    expect_error(path, "2:17", "this [ list is never closed")


def test_unknown_tags_and_unreadable_scalars_are_errors_at_their_place(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"steps:\n  - note: !!python/object:os.system x\n")
    expect_error(path, "2:11", "unknown tag")
    path = write_bytes(tmp_path, b"steps:\n  - note: x\n    retries: " + b"9" * 5000 + b"\n", "n.yaml")
    expect_error(path, "3:14", "cannot read")


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    started = Worker()
    yield started
    started.close()


RUNTIME_CASES = {
    "repetition": "{{ ' ' * 10**9 }}",
    "repetition in text": "x {{ [1, 2] * 10**8 }}",
    "power": "{{ 7 ** (10 ** 9) }}",
    "printf width": "{{ '%0999999999d' % 1 }}",
    "format width": "{{ '{:>999999999}'.format(1) }}",
    "center filter": "{{ 'x' | center(10**9) }}",
    "center method": "{{ 'x'.center(10**9) }}",
    "indent": "{{ 'x' | indent(10**9) }}",
    "join": "{{ range(100000) | join('-' * 10000) }}",
    "replace": "{{ ('a' * 4000) | replace('a', 'b' * 10000) }}",
    "batch fill": "{{ [1] | batch(10**9, 'x') | list | length }}",
    "to_bytes": "{{ (1).to_bytes(10**9, 'big') | length }}",
    "lipsum": "{{ lipsum(10**6) }}",
    "doubling with ~": "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    "nested lists": "{% set ns = namespace(l=[1]) %}{% for i in range(80) %}"
                    "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l | string | length }}",
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                    "{% endfor %}",
    "output in a loop": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "set block": "{% set x %}{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}"
                 "{% endset %}{{ x | length }}",
    "exponential macro": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                         "{% endmacro %}{{ f(60) }}",
}


@pytest.mark.parametrize("name", RUNTIME_CASES)
def test_rendering_is_bounded(worker: Worker, name: str) -> None:
    done = worker.ask({"op": "render", "text": RUNTIME_CASES[name]})
    assert "raised" not in done.reply, done.reply
    assert "error" in done.reply, done.reply
    assert re.search(r"KDIAG_MAX_TEMPLATE_(OUTPUT|ITERATIONS|SECONDS)", done["error"]), done.reply
    assert done.rss_kb <= MAX_RSS_KB, f"{name}: {done.rss_kb // 1024} MB"
    assert done.cpu <= 12, f"{name}: {done.cpu:.1f} s"


def test_ordinary_templates_still_render(worker: Worker) -> None:
    cases = {
        "{{ [1, 2, 3] | map('string') | join(',') }}": "1,2,3",
        "{% for x in range(3) %}{{ loop.index }}{{ loop.cycle('a', 'b') }}{% endfor %}": "1a2b3a",
        "{{ '%05d' % 42 }} {{ '{:>4}'.format('ab') }} {{ 'ab' * 3 }} {{ 2 ** 10 }}":
            "00042   ab ababab 1024",
        "{% set ns = namespace(n=0) %}{% for i in range(1000) %}{% set ns.n = ns.n + i %}"
        "{% endfor %}{{ ns.n }}": "499500",
        "{{ {'a': [1, {'b': 2}]} | to_json }}": '{"a": [1, {"b": 2}]}',
        "x{{ ('x' * 1000000) | length }}": "x1000000",
    }
    for text, expected in cases.items():
        done = worker.ask({"op": "render", "text": text})
        assert done.reply.get("value") == expected, (text, done.reply)
