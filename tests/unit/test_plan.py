"""``kdiag run --dry-run``: the plan as a reader sees it (issue 18), compared to the expected
text: a multi-line script inside an argv keeps the plan's layout, the steps nested in a ``logs``
step (and in a group inside it) are listed under it, secrets are masked, and params not given
are named (the run would refuse them: exit 2, the same message as ``kdiag run``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUNBOOK = """\
name: plan-example
params:
  port: {type: integer, default: 9000}
  pid: {type: integer, description: The app's PID.}
  token: {type: string, default: tok-Zq81-secret, secret: true}
target:
  node: {pid: "{{ params.pid }}"}
steps:
  - name: stand-in server
    run:
      argv:
        - python3
        - -c
        - |
          import http.server, sys
          http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])),
                                 http.server.SimpleHTTPRequestHandler).serve_forever()
        - "{{ params.port }}"
    background: true
  - name: logs around a call
    logs:
      pod: api-0
      steps:
        - name: call
          http: {url: "http://127.0.0.1:{{ params.port }}/?t={{ params.token }}"}
          register: call
          retries: 3
          until: result.status == 200
        - name: inner group
          group:
            steps:
              - note: "got {{ call.status }}"
    register: around
    assert:
      - "'GET /' in around.text"
      - around.count > 0
finally:
  - name: done
    note: bye
"""

EXPECTED = """\
plan for plan-example ({path})
params:
  port = 9000
  pid = 42
  token = "***"
target: node (pid=42)
   1. stand-in server [run]
       python3 -c import http.server, sys
       http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])),
                              http.server.SimpleHTTPRequestHandler).serve_forever()
        9000
       background: true
   2. logs around a call [logs]
       api-0
       register: around
       assert:
         - 'GET /' in around.text
         - around.count > 0
     2.1. call [http]
          GET http://127.0.0.1:9000/?t=***
          register: call
          retries: 3
          until: result.status == 200
     2.2. inner group [group]
          1 step
        2.2.1. note #1 [note]
               got {{{{ call.status }}}}
  f1. done [note]
       bye
"""


def kdiag(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kdiag", *args], capture_output=True,
                          text=True, timeout=60)


def test_the_plan_reads_as_expected(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(RUNBOOK)
    result = kdiag("run", str(path), "--dry-run", "--set", "pid=42")
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED.format(path=path)
    assert "tok-Zq81-secret" not in result.stdout


def test_a_plan_without_a_required_param_shows_where_it_goes_and_says_what_to_add(
        tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(RUNBOOK)
    result = kdiag("run", str(path), "--dry-run")
    assert result.returncode == 2  # as the run itself would
    lines = result.stdout.splitlines()
    assert "  pid = (not given: --set pid=VALUE)" in lines
    assert "target: node (pid={{ params.pid }})" in lines
    assert "   2. logs around a call [logs]" in lines  # the whole plan is there
    assert result.stderr.strip() == (
        f"kdiag: error: {path}:4:3: param 'pid' is required: pass --set pid=VALUE or a "
        "--values file \N{EM DASH} The app's PID")


SCRIPTS = """\
name: scripts
steps:
  - name: long local script
    run:
      script: |
{long}
    register: found
  - name: look around
    shell:
      script: |
        echo one
        echo two
        echo "three: {{{{ run.runbook }}}}"
        kill {{{{ found.pids | select('gt', 1) | first }}}}
"""

SCRIPTS_EXPECTED = """\
plan for scripts ({path})
   1. long local script [run]
{shown}
       ... (5 more lines)
       register: found
   2. look around [shell]
       echo one
       echo two
       echo "three: {{{{ run.runbook }}}}"
       kill {{{{ found.pids | select('gt', 1) | first }}}}
"""


def test_a_script_is_shown_whole_up_to_its_last_lines(tmp_path: Path) -> None:
    """A ``script:`` (shell and run steps) is shown line by line, not cut after its first
    line; past the plan's limit it says how many lines are left out. A script holding a
    template whose value comes from a filter of a run-time value shows as written (not with
    ``{{ None }}`` in its place)."""
    lines = [f"echo line {n}" for n in range(1, 26)]
    path = tmp_path / "scripts.yaml"
    path.write_text(SCRIPTS.format(long="\n".join(f"        {line}" for line in lines)))
    result = kdiag("run", str(path), "--dry-run")
    assert result.returncode == 0, result.stderr
    shown = "\n".join(f"       {line}" for line in lines[:20])
    assert result.stdout == SCRIPTS_EXPECTED.format(path=path, shown=shown)
