"""``kdiag run --step``, driven for real through a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

RUNBOOK = """
steps:
  - {name: first, run: {script: "echo first-ran"}}
  - {name: flaky, run: {script: "echo attempt >> %(log)s; exit 1"}}
  - {name: third, run: {script: "echo third-ran"}}
  - {name: look, pause: "check the logs now"}
finally:
  - {name: cleanup, run: {script: "touch %(cleaned)s"}}
"""


class Terminal:
    """A kdiag process on a pseudo-terminal; ``expect`` reads until a text shows up."""

    def __init__(self, *args: str) -> None:
        leader, follower = pty.openpty()
        self.fd = leader
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kdiag", "run", *args], stdin=follower, stdout=follower,
            stderr=follower, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"},
            close_fds=True)
        os.close(follower)
        self.seen = ""

    def expect(self, text: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"did not see {text!r}; got:\n{self.seen}"
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096).decode(errors="replace")
                except OSError:
                    chunk = ""
                assert chunk or text in self.seen, f"EOF before {text!r}; got:\n{self.seen}"
                self.seen += chunk
        before, _, self.seen = self.seen.partition(text)
        return before

    def send(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())

    def finish(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([self.fd], [], [], 0.5)
                if ready:
                    try:
                        chunk = os.read(self.fd, 4096)
                    except OSError:  # EIO: the other end closed
                        break
                    if not chunk:
                        break
                    self.seen += chunk.decode(errors="replace")  # kept for the asserts after
                elif self.process.poll() is not None:
                    break
            return self.process.wait(1)
        finally:
            os.close(self.fd)


def _runbook(tmp_path: Path) -> tuple[Path, Path, Path]:
    log, cleaned = tmp_path / "attempts.log", tmp_path / "cleaned"
    path = tmp_path / "rb.yaml"
    path.write_text(textwrap.dedent(RUNBOOK % {"log": log, "cleaned": cleaned}))
    return path, log, cleaned


def test_yes_retry_skip_no_pause_continue(tmp_path: Path) -> None:
    path, log, cleaned = _runbook(tmp_path)
    term = Terminal(str(path), "--step")
    term.expect("first (run) — echo first-ran")
    term.expect("[q]uit: ")
    term.send("y")
    term.expect("flaky (run)")
    term.expect("[q]uit: ")
    term.send("y")
    term.expect("[r]etry / [s]kip / [a]bort: ")
    term.send("r")
    term.expect("[r]etry / [s]kip / [a]bort: ")
    term.send("s")
    term.expect("third (run)")
    term.expect("[q]uit: ")
    term.send("n")
    term.expect("look (pause)")
    term.expect("[q]uit: ")
    term.send("maybe")
    term.expect("please answer y, n, c or q")
    term.expect("[q]uit: ")
    term.send("y")
    term.expect("check the logs now")
    term.expect("press Enter to continue: ")
    term.send("")
    term.expect("cleanup (run)")
    term.expect("[q]uit: ")
    term.send("c")
    assert term.finish() == 0
    assert log.read_text() == "attempt\nattempt\n"
    assert cleaned.exists()


def test_abort_after_failure_exits_1_and_runs_finally(tmp_path: Path) -> None:
    path, _log, cleaned = _runbook(tmp_path)
    term = Terminal(str(path), "--step")
    term.expect("[q]uit: ")
    term.send("c")  # continue without asking: failures still ask
    term.expect("[r]etry / [s]kip / [a]bort: ")
    term.send("a")
    assert term.finish() == 1
    assert cleaned.exists()
    # finish() keeps what it read: the verdicts after the abort are there, the output of a
    # step that ran would be too.
    assert "so these steps did not run:\r\n[SKIP] third\r\n" in term.seen
    assert "third-ran" not in term.seen


def test_quit_exits_130_and_runs_finally_without_asking(tmp_path: Path) -> None:
    path, _log, cleaned = _runbook(tmp_path)
    term = Terminal(str(path), "--step")
    term.expect("[q]uit: ")
    term.send("q")
    assert term.finish() == 130
    assert cleaned.exists()


def test_start_at_with_step_mode(tmp_path: Path) -> None:
    path, log, _cleaned = _runbook(tmp_path)
    term = Terminal(str(path), "--step", "--start-at", "third")
    term.expect("third (run)")
    term.expect("[q]uit: ")
    term.send("c")  # no more questions, but a pause step still waits for the user
    term.expect("press Enter to continue: ")
    term.send("")
    assert term.finish() == 0
    assert not log.exists()


def test_step_mode_without_a_terminal_is_a_usage_error(tmp_path: Path) -> None:
    path, _log, _cleaned = _runbook(tmp_path)
    result = subprocess.run([sys.executable, "-m", "kdiag", "run", str(path), "--step"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert result.returncode == 2
    assert "--step needs a terminal" in result.stderr
