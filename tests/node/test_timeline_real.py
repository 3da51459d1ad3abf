"""The run as a picture (issue 20) from a real run: the real manager redirecting the app's port
in the background while connections come from the client namespace, a step that passes on its
second attempt, and a failed assertion. The Markdown reports (Mermaid and text) draw what
happened: one bar per step that ran, the redirect up until it was stopped, the retried step's
attempts, the failure marked, and the connections per interval adding up to the redirect's own
count; the secret param is masked in every report.

``tests/unit/test_timeline.py`` holds the exact expected charts (fixed times); this test holds
the picture to a run whose times and counters come from the real parts."""

from __future__ import annotations

import re
from pathlib import Path

from demo.lab import Lab
from tests.node.test_redirect_stats import wget
from tests.node.test_steps import free_port, kdiag_run

SECRET = "tok-Zq81-secret"
RAN = ["operator server", "operator is up", "second try passes", "intercept", "call 1",
       "call 2", "all closed", "stop it", "say the token", "check"]


def _between(text: str, start: str, end: str) -> str:
    at = text.index(start) + len(start)
    return text[at:text.index(end, at)]


def _tasks(chart: str) -> dict[int, str]:
    """The ``section Steps`` tasks of a Mermaid chart by step number."""
    steps = _between(chart, "section Steps\n", "    section ")
    return {int(line.split(".")[0]): line.strip() for line in steps.split("\n    ") if line}


def _times(task: str) -> tuple[int, int]:
    start, end = task.rsplit(",", 2)[-2:]
    return int(start), int(end)


def test_the_timeline_of_a_real_run(app: Lab, tmp_path: Path) -> None:
    local, flag = free_port(), tmp_path / "tried-once"
    md, text = tmp_path / "r.md", tmp_path / "t.md"
    code, output, steps = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        params:
          token: {{type: string, default: {SECRET}, secret: true}}
        steps:
          - name: operator server
            run: {{argv: [python3, -m, http.server, "{local}", --bind, 127.0.0.1,
                         --directory, {tmp_path}]}}
            background: true
          - name: operator is up
            http: {{url: "http://127.0.0.1:{local}/"}}
            retries: 30
            delay: 100ms
            until: result.status == 200
          - name: second try passes
            run: {{script: "test -e {flag} || {{ touch {flag}; exit 3; }}"}}
            retries: 2
            delay: 100ms
          - name: intercept
            redirect: {{ports: ["8080:{local}"]}}
            background: true
            register: r
          - {{name: call 1, {wget(app, "")}}}
          - {{name: call 2, {wget(app, "")}}}
          - name: all closed
            wait: {{until: "r.stats.closed >= 2 and r.stats.open == 0", timeout: 10s,
                    interval: 100ms}}
          - {{name: stop it, stop: intercept}}
          - name: say the token
            run: {{script: "echo token={{{{ params.token }}}}"}}
            register: said
          - name: check
            assert: ["said.stdout == 'something else'"]
          - name: never runs
            note: after the failure
    """, tmp_path, "--report", f"md={md}", "--report", f"md-text={text}")
    assert code == 1, output
    assert "stopped: 2 to the operator, 0 to the app" in output
    assert steps["intercept"]["progress"][-1]["counts"]["to_operator"] == 2

    markdown = md.read_text()
    chart = _between(markdown, "```mermaid\n", "```")
    tasks = _tasks(chart)
    assert sorted(tasks) == list(range(1, 11))  # one bar per step that ran, none for step 11
    for number, name in enumerate(RAN, 1):
        assert tasks[number].startswith(f"{number}. {name}"), tasks[number]
    assert tasks[3].startswith("3. second try passes (2 attempts, 1 failed) :done, ")
    assert tasks[4].startswith("4. intercept (background) :active, ")
    assert _times(tasks[4])[1] >= _times(tasks[8])[0]  # the redirect's bar lasts to its stop
    assert _times(tasks[4])[1] <= _times(tasks[9])[0]  # and no longer
    assert tasks[10].startswith("10. check ✘ :crit, ")
    events = _between(chart, "section Events\n", "    section ")
    ratio = "\u2236"  # Mermaid's text holds a look-alike where a colon would end the name
    assert re.search(rf"✘ check{ratio} assertion failed{ratio} .* :milestone, crit, \d+, \d+",
                     events), events
    counted = chart[chart.index("section per "):]
    assert counted.startswith("section per ") and "· 4. intercept\n" in counted
    assert sum(int(n) for n in re.findall(r"(\d+) to operator", counted)) == 2, counted

    chart_text = text.read_text()
    rows = {line.split()[0]: line for line in chart_text.splitlines()
            if re.match(r"\s+\d+ \S", line)}
    assert "▒" in rows["3"] and "█" in rows["3"]  # its failed attempt, then the one that passed
    assert "░" in rows["4"] and rows["4"].rstrip().endswith("passed")
    assert rows["10"].rstrip().endswith("failed") and "✘" in rows["10"]
    assert rows["11"].rstrip().endswith("not run") and "█" not in rows["11"]
    step_4 = re.findall(r"step 4: (\d+) to operator", chart_text)
    assert sum(map(int, step_4)) == 2, chart_text

    for report in (markdown, chart_text, output):
        assert SECRET not in report
    assert "token=***" in markdown and "token=***" in output
