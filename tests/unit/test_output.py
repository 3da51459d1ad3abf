"""Command output: whole in the step's artifact files (bytes exact, secrets masked), a head and
a tail in memory with ``truncated`` and a note when cut; reporters bounded on long lines; lost
background work in every report."""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import pytest

from kdiag.engine.artifacts import MaskedFile
from kdiag.engine.events import (
    BackgroundFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    StepOutput,
    StepRef,
    StepStarted,
)
from kdiag.engine.masking import Masker
from kdiag.reports.console import ConsoleReporter
from kdiag.reports.json_report import JsonReporter
from kdiag.reports.junit import JunitReporter
from kdiag.reports.markdown import MarkdownReporter
from kdiag.session.output import HeadTail, human_size, parse_size


def test_head_tail_keeps_both_ends_and_counts_the_cut() -> None:
    kept = HeadTail(10)
    for chunk in (b"abc", b"defgh", b"ijklmnopqrstuvwxyz"):
        kept.add(chunk)
    assert (kept.size, kept.cut, kept.truncated) == (26, 16, True)
    assert kept.value() == b"abcde" + b"vwxyz"
    assert kept.text("|cut|") == "abcde|cut|vwxyz"
    small = HeadTail(10)
    small.add(b"0123456789")
    assert not small.truncated and small.text("|cut|") == "0123456789"
    nothing = HeadTail(0)
    nothing.add(b"x" * 100)
    assert nothing.value() == b"" and nothing.cut == 100


def test_sizes() -> None:
    assert parse_size(1048576) == parse_size("1MiB") == parse_size("1 mib") == 1048576
    assert parse_size("512KiB") == 524288 and parse_size("2MB") == 2_000_000
    for bad in ("lots", "-1", "5 parsecs", True, -3):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert human_size(512) == "512 B" and human_size(200 * 1024 * 1024) == "200.0 MiB"


def test_masked_file_keeps_bytes_exact_and_masks_secrets_across_chunks(tmp_path: Path) -> None:
    binary = bytes(range(256)) * 4 + "é€".encode() + b"\xff\xfe"
    plain = tmp_path / "plain"
    f = MaskedFile(plain, Masker())
    for i in range(0, len(binary), 7):
        f.write(binary[i:i + 7])
    f.close()
    assert plain.read_bytes() == binary
    masked = tmp_path / "masked"
    payload = b"\x00\x01 token=s3cr3t-v\xc3\xa9lue; end \xff" + binary
    f = MaskedFile(masked, Masker(["s3cr3t-vélue"]))
    for i in range(0, len(payload), 3):  # the secret and its two-byte character cut apart
        f.write(payload[i:i + 3])
    f.close()
    assert masked.read_bytes() == payload.replace("s3cr3t-vélue".encode(), b"***")


def test_run_step_output_whole_in_files_bounded_in_memory(run_runbook, tmp_path: Path) -> None:
    out = tmp_path / "payload"
    out.write_bytes(bytes(range(256)) * 20_000)  # 5 MiB, every byte value, no line ends
    outcome = run_runbook(f"""
        steps:
          - name: big
            run: {{argv: [cat, {out}], max_output: 64KiB}}
            register: big
          - name: check
            assert:
              - big.truncated
              - big.stdout_bytes == 5120000
              - "'not kept in memory' in big.stdout"
              - big.stdout | length < 70000
              - not big.stderr and big.stderr_bytes == 0
    """)
    assert outcome.exit_code == 0, outcome.recorder.finished()
    result = outcome.recorder.finished()["big"].result
    artifact = Path(result["stdout_file"])
    assert artifact.parent.parent == tmp_path / "artifacts"
    assert hashlib.sha256(artifact.read_bytes()).digest() == \
        hashlib.sha256(out.read_bytes()).digest()
    notes = [e.message for e in outcome.recorder.events if type(e).__name__ == "StepNote"]
    assert any(n.startswith("stdout truncated in memory: 4.9 MiB; the first 32.0 KiB and the "
                            "last 32.0 KiB are kept") and str(artifact) in n for n in notes)


def test_small_output_is_not_truncated_and_bad_sizes_fail_the_step(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: small, run: {script: "echo hi; echo err >&2"}, register: s}
          - {name: check, assert: ["s.stdout == 'hi\\\\n'", "s.stderr == 'err\\\\n'",
                                   "not s.truncated"]}
          - {name: bad, run: {argv: ["true"], max_output: lots}}
    """)
    finished = outcome.recorder.finished()
    assert finished["check"].status == "passed"
    assert finished["bad"].status == "failed"
    assert finished["bad"].message.startswith("max_output: not a size: 'lots'")


def _ref(name: str = "big", kind: str = "shell") -> StepRef:
    return StepRef(0, name, kind, seq=1)


def test_console_shows_a_line_without_end_before_it_grows_without_bound() -> None:
    out = io.StringIO()
    console = ConsoleReporter(out, mode="plain")
    ref = _ref()
    console.handle(RunStarted("rb", "rb.yaml", {}, None, 1, time.time()))
    console.handle(StepStarted(ref, 1, time.time()))
    for _ in range(40):  # 40 x 16 KiB, no newline
        console.handle(StepOutput(ref, "stdout", "x" * 16384))
    shown = out.getvalue().count("x")
    assert shown >= 600_000  # kept back: at most one chunk past the limit
    assert sum(len(v) for v in console._partial.values()) < 70_000


def _lost_background_events() -> list:
    server, wait = _ref("api", "redirect"), StepRef(1, "long wait", "wait", seq=2)
    at = time.time()
    return [
        RunStarted("rb", "rb.yaml", {}, "pod shop/api", 2, at),
        StepStarted(server, 1, at),
        StepFinished(server, "passed", 0.1, 1),
        StepStarted(wait, 1, at),
        BackgroundFailed(server, "manager gone (container kdiag-x terminated: OOMKilled, "
                                 "exit code 137)", at + 1, True),
        StepFinished(wait, "error", 1.0, 1, "stopped: redirect 'api': manager gone (...)"),
        BackgroundFailed(StepRef(0, "target", "target"), "pod shop/api deleted", at + 2, True),
        RunFinished("error", 3, 2.0, {"error": 2}, "redirect 'api': manager gone (...)"),
    ]


def test_every_report_says_which_background_work_failed_when_and_why(tmp_path: Path) -> None:
    reporters = [JsonReporter(str(tmp_path / "r.json")), JunitReporter(str(tmp_path / "r.xml")),
                 MarkdownReporter(str(tmp_path / "r.md"))]
    console_out = io.StringIO()
    reporters.append(ConsoleReporter(console_out, mode="plain"))  # type: ignore[arg-type]
    for event in _lost_background_events():
        for reporter in reporters:
            reporter.handle(event)
    for reporter in reporters:
        reporter.close()
    run = json.loads((tmp_path / "r.json").read_text())["runs"][0]
    api = next(s for s in run["steps"] if s["name"] == "api")
    assert api["status"] == "error"
    assert api["background_failure"]["cause"].startswith("manager gone (container kdiag-x")
    assert api["message"].startswith("failed in the background at ")
    assert [f["step"] for f in run["background_failures"]] == ["api", "target"]
    junit = (tmp_path / "r.xml").read_text()
    assert "OOMKilled" in junit and 'errors="2"' in junit
    markdown = (tmp_path / "r.md").read_text()
    assert "OOMKilled" in markdown and "pod shop/api deleted" in markdown
    console = console_out.getvalue()
    assert "[LOST] api: background redirect failed at " in console
    assert "[LOST] target lost at " in console and "pod shop/api deleted" in console


def test_console_block_of_plain_lines_looks_as_line_by_line() -> None:
    lines = "".join(f"line {i}\twith a tab\n" for i in range(50))
    ref, other = _ref(), StepRef(1, "logs bg", "logs", seq=2)
    shown = []
    for chunk in (lines, lines.replace("line 7", "line \x1b[31m7")):  # fast path, slow path
        out = io.StringIO()
        console = ConsoleReporter(out, mode="plain")
        console.handle(RunStarted("rb", "rb.yaml", {}, None, 1, time.time()))
        console.handle(StepStarted(ref, 1, time.time()))
        console.handle(StepOutput(ref, "stdout", chunk))
        console.handle(StepOutput(other, "api-0/app", chunk))
        shown.append(out.getvalue())
    assert shown[0] == shown[1]
    assert "  | [logs bg:api-0/app] line 3\twith a tab\n" in shown[0].replace("│", "|")


def test_max_output_flag_sets_the_default_and_is_checked(tmp_path: Path) -> None:
    import subprocess
    import sys

    runbook = tmp_path / "rb.yaml"
    runbook.write_text("steps:\n  - {name: some, run: {script: 'seq 1 3000'}, register: s}\n"
                       "  - {name: check, assert: [s.truncated, 's.stdout_bytes == 13893']}\n")

    def kdiag(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kdiag", "run", str(runbook), *args],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60)

    assert kdiag("--max-output", "1KiB", "-q").returncode == 0
    assert kdiag("-q").returncode == 1  # 13893 bytes fit in the default: not truncated
    bad = kdiag("--max-output", "lots")
    assert bad.returncode == 2 and "--max-output: not a size: 'lots'" in bad.stderr


def test_runs_started_in_the_same_second_get_their_own_artifacts_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kdiag.engine.bus import EventBus
    from kdiag.engine.runner import Run
    from kdiag.language.runbook import Loader
    from kdiag.steps import catalog

    monkeypatch.chdir(tmp_path)
    runs = [Run(EventBus([]), Loader(catalog())) for _ in range(3)]
    for run in runs:
        run._run_id = "20261203-040506"  # the same second
    folders = {run.artifacts_root() for run in runs}
    assert folders == {Path("kdiag-artifacts") / name for name in
                       ("20261203-040506", "20261203-040506-2", "20261203-040506-3")}
