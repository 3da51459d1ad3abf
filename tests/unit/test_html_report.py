"""``--report html=PATH`` opened in a real browser (headless Chromium, from Debian): the
timeline is drawn with one bar per step that ran, nothing is fetched from anywhere, nothing is
logged to the console, and no secret is in the file or on the page.

The run is real: a local server kept up in the background, a step retried until the server
answers, a step printing the secret param, and a failed assertion.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.browser import Browser, chromium

SECRET = "tok-Zq81-secret"

pytestmark = pytest.mark.skipif(
    chromium() is None, reason="chromium is not installed (scripts/system-deps.sh installs it)")

RUNBOOK = """\
name: picture
params:
  token: {{type: string, default: {secret}, secret: true}}
steps:
  - name: server
    run: {{argv: [python3, -m, http.server, "{port}", --bind, 127.0.0.1]}}
    background: true
  - name: server is up
    http: {{url: "http://127.0.0.1:{port}/", timeout: 1s}}
    retries: 50
    delay: 100ms
    until: result.status == 200
  - name: say the token
    run: {{script: "echo token={{{{ params.token }}}}"}}
    register: said
  - name: check what it said
    assert: ["said.stdout == 'something else'"]
  - name: never runs
    note: after the failure
"""

BARS = "document.querySelectorAll('svg.timeline rect.bar').length"
ROWS = "document.querySelectorAll('svg.timeline g.row').length"
STEPS = "document.querySelectorAll('details.step').length"
TEXT = "document.body.innerText"
FAILED_OPEN = "document.querySelector('details.step.failed').open"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module's pages (it is slow to start on a busy machine)."""
    with Browser() as started:
        yield started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_html_report_in_a_browser(tmp_path: Path, browser: Browser) -> None:
    runbook = tmp_path / "picture.yaml"
    runbook.write_text(RUNBOOK.format(secret=SECRET, port=free_port()))
    report = tmp_path / "out" / "report.html"
    result = subprocess.run(
        [sys.executable, "-m", "kdiag", "run", str(runbook), "--report", f"html={report}",
         "--artifacts", str(tmp_path / "artifacts")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 1, result.stdout + result.stderr
    html = report.read_text()
    assert SECRET not in html and "token=***" in html

    page = browser.load(report, {"bars": BARS, "rows": ROWS, "steps": STEPS, "text": TEXT,
                                 "failed_open": FAILED_OPEN})
    assert page.console == []
    assert page.requests == [report.resolve().as_uri()]  # the page itself, nothing else
    assert page.values["bars"] == 4  # the four steps that ran; "never runs" did not
    assert page.values["rows"] == page.values["steps"] == 5
    assert page.values["failed_open"] is True  # the failure is unfolded, the rest folded
    text = page.values["text"]
    assert SECRET not in text and "FAILED" in text and "said.stdout == 'something else'" in text


def test_artifact_links_are_relative_to_the_report(tmp_path: Path, browser: Browser) -> None:
    runbook = tmp_path / "rb.yaml"
    runbook.write_text("steps:\n  - {name: hello, run: {script: echo hi}}\n")
    report = tmp_path / "reports" / "r.html"
    result = subprocess.run(
        [sys.executable, "-m", "kdiag", "run", str(runbook), "--report", f"html={report}",
         "--artifacts", str(tmp_path / "artifacts")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    page = browser.load(report, {"links": "[...document.querySelectorAll('a')].map(a => a.href)"})
    links = page.values["links"]
    assert links and all(link.startswith((tmp_path / "artifacts").as_uri()) for link in links)
    assert all(Path(link.removeprefix("file://")).exists() for link in links), links
    assert 'href="../artifacts/' in report.read_text()
