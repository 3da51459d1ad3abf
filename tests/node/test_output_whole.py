"""No silent loss (node mode, the real manager, ``kdiag run`` as a user runs it): a ``shell``
step printing 200 MB puts every byte in its artifact file (SHA-256 equal) while the CLI's
memory stays bounded, with the console and with ``-q``; binary output arrives byte-exact;
what memory keeps says ``truncated``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from demo.lab import Lab

from .conftest import ENTER

LINE = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
SIZE = 200_000_000
CLI_MAX_RSS_MB = 150


def _expected(size: int) -> str:
    """SHA-256 of ``yes LINE | head -c size``, without holding it in memory."""
    digest = hashlib.sha256()
    block = LINE * (1 << 14)
    for _ in range(size // len(block)):
        digest.update(block)
    digest.update(block[:size % len(block)])
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            digest.update(data)
    return digest.hexdigest()


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _run(app: Lab, tmp_path: Path, step: str, *args: str) -> tuple[int, str, dict, float, float]:
    """``kdiag run`` of one step (console to /dev/null unless -q); exit code, stderr, the
    step's JSON record, the CLI's peak RSS (MB) and the run's seconds."""
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(f"target: {{node: {{pid: {app.app_pid}}}}}\nsteps:\n"
                       + textwrap.indent(textwrap.dedent(step), "  "))
    report = tmp_path / "report.json"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "kdiag", "run", str(runbook), "--artifacts",
         str(tmp_path / "artifacts"), "--report", f"json={report}", *args],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NO_COLOR": "1", "KDIAG_ENTER": str(ENTER)})
    peak = 0.0
    try:
        while process.poll() is None:
            with contextlib.suppress(OSError):  # VmHWM only grows: the last reading is the peak
                peak = max(peak, _peak_rss_mb(process.pid))
            time.sleep(0.05)
        seconds = time.monotonic() - started
        err = process.stderr.read() if process.stderr else ""
    finally:
        process.kill()
        process.wait()
    steps = json.loads(report.read_text())["runs"][0]["steps"]
    return process.returncode, err, steps[0], peak, seconds


@pytest.mark.parametrize("console", [True, False], ids=["console", "quiet"])
def test_200_mb_of_output_arrive_whole_with_bounded_cli_memory(app: Lab, tmp_path: Path,
                                                               console: bool) -> None:
    code, err, step, peak, seconds = _run(app, tmp_path, f"""
        - name: big
          shell: {{script: "yes {LINE.decode().strip()} | head -c {SIZE}"}}
    """, *([] if console else ["-q"]))
    print(f"200 MB {'console' if console else '-q'}: {seconds:.1f}s, CLI peak RSS {peak:.0f} MB")
    assert code == 0, err
    result = step["result"]
    artifact = Path(result["stdout_file"])
    assert artifact.stat().st_size == SIZE
    assert _sha256(artifact) == _expected(SIZE)
    assert result["stdout_bytes"] == SIZE and result["truncated"] is True
    assert len(result["stdout"]) < 2 * 1024 * 1024 + 200  # a head, a tail and the marker
    assert any(n.startswith("stdout truncated in memory: 190.7 MiB") for n in step["notes"])
    assert peak <= CLI_MAX_RSS_MB, f"CLI peak RSS {peak:.0f} MB"


def test_binary_output_arrives_byte_exact(app: Lab, tmp_path: Path) -> None:
    # Every byte value (NUL and invalid UTF-8 included), 4096 times: 1 MiB.
    script = ('p=""; i=0; while [ $i -lt 256 ]; do p="$p\\\\$(printf %o $i)"; i=$((i+1)); '
              'done; n=4096; while [ $n -gt 0 ]; do printf "$p"; n=$((n-1)); done')
    code, err, step, _peak, _seconds = _run(app, tmp_path, f"""
        - name: binary
          shell: {{script: '{script}', max_output: 64KiB}}
    """, "-q")
    assert code == 0, err
    result = step["result"]
    got = Path(result["stdout_file"]).read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(bytes(range(256)) * 4096).digest()
    assert result["truncated"] is True and result["stdout_bytes"] == 1 << 20
