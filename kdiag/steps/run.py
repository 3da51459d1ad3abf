"""``run``: a local command on the operator's machine (argv or script)."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from kdiag.steps.base import StepContext, StepFailed, StepOutcome, StepType

if TYPE_CHECKING:  # subprocess is imported when a command runs: it slows start-up
    import subprocess

MAX_CAPTURE = 4 * 1024 * 1024
"""Bytes of each stream kept for ``register`` and reports; output beyond is still streamed."""
STOP_GRACE = 3.0


@dataclass
class _Stream:
    """Collects one pipe of a process in a thread, forwarding chunks as they come."""

    name: str
    pipe: IO[bytes]
    ctx: StepContext
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._pump, name=f"run-{self.name}", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        import codecs

        # Chunks as they come (not lines), so output without a newline still shows promptly;
        # the incremental decoder keeps multi-byte characters whole across chunks.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while chunk := self.pipe.read1(65536):  # type: ignore[attr-defined]
            if self.size < MAX_CAPTURE:
                self.chunks.append(chunk)
                self.size += len(chunk)
            self.ctx.output(decoder.decode(chunk), self.name)
        self.ctx.output(decoder.decode(b"", final=True), self.name)
        self.pipe.close()

    def text(self) -> str:
        if self.thread:
            self.thread.join()
        return b"".join(self.chunks)[:MAX_CAPTURE].decode("utf-8", "replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the whole process group, then kill it if it does not go."""
    import subprocess

    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue


@dataclass
class _BackgroundProcess:
    process: subprocess.Popen[bytes]
    streams: list[_Stream]

    def stop(self) -> None:
        _stop(self.process)
        for stream in self.streams:
            stream.text()


def _command(body: dict[str, Any]) -> list[str]:
    if "argv" in body:
        return [str(a) for a in body["argv"]]
    return [str(body.get("shell", "/bin/sh")), "-c", str(body["script"])]


def _environment(body: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ) if body.get("inherit_env", True) else {"PATH": os.defpath}
    env.update({str(k): "" if v is None else str(v) for k, v in (body.get("env") or {}).items()})
    return env


def _start(body: dict[str, Any], ctx: StepContext) -> subprocess.Popen[bytes]:
    import subprocess

    argv = _command(body)
    cwd = body.get("cwd")
    if cwd is not None and not os.path.isabs(str(cwd)):
        cwd = str(ctx.runbook_dir / str(cwd))
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=_environment(body),
            stdin=subprocess.PIPE if "stdin" in body else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so a timeout kills all of it
        )
    except FileNotFoundError:
        raise StepFailed(f"command not found: {argv[0]}") from None
    except NotADirectoryError:
        raise StepFailed(f"cwd is not a directory: {cwd}") from None
    except PermissionError as exc:
        raise StepFailed(f"cannot run {argv[0]}: {exc.strerror}") from None


def _feed(process: subprocess.Popen[bytes], text: Any) -> None:
    assert process.stdin is not None
    try:
        process.stdin.write(str(text).encode())
        process.stdin.close()
    except BrokenPipeError:
        pass  # the command did not read all of its input; that is its business


class RunStep(StepType):
    kind = "run"
    summary = "Run a local command (argv or shell script) on the operator's machine."
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                     "description": "The program and its arguments (no shell)."},
            "script": {"type": "string", "description": "A script for the shell."},
            "shell": {"type": "string", "description": "The shell for script (default /bin/sh)."},
            "env": {"type": "object", "additionalProperties": {"type": ["string", "number",
                                                                        "boolean", "null"]}},
            "inherit_env": {"type": "boolean", "description": "Start from kdiag's environment "
                            "(default true)."},
            "cwd": {"type": "string", "description": "Working folder (relative: to the runbook)."},
            "stdin": {"type": "string", "description": "Text sent to the command's input."},
            "check": {"type": "boolean", "description": "Fail the step on a non-zero exit code "
                      "(default true)."},
        },
        "oneOf": [{"required": ["argv"]}, {"required": ["script"]}],
    }
    example = "run:\n  script: curl -s localhost:9000/health | grep ok\n  env: {LANG: C}"
    can_background = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        started = time.monotonic()
        process = _start(body, ctx)
        assert process.stdout is not None and process.stderr is not None
        streams = [_Stream("stdout", process.stdout, ctx), _Stream("stderr", process.stderr, ctx)]
        for stream in streams:
            stream.start()
        if "stdin" in body:
            threading.Thread(target=_feed, args=(process, body["stdin"]), daemon=True).start()
        if ctx.background:
            return StepOutcome(result={"pid": process.pid},
                               background=_BackgroundProcess(process, streams))
        while process.poll() is None:
            if ctx.cancelled.wait(0.05):
                _stop(process)
                break
        stdout, stderr = (s.text() for s in streams)
        rc = process.wait()
        result = {"rc": rc, "stdout": stdout, "stderr": stderr,
                  "duration": round(time.monotonic() - started, 3)}
        if ctx.cancelled.is_set():
            return StepOutcome(ok=False, result=result, message="the command was stopped")
        if rc != 0 and body.get("check", True):
            return StepOutcome(ok=False, result=result, message=f"exit code {rc}")
        return StepOutcome(result=result)

    def describe(self, body: Any) -> str:
        if not isinstance(body, dict):
            return ""
        if "argv" in body:
            return " ".join(str(a) for a in body["argv"]) if isinstance(body["argv"], list) else ""
        return str(body.get("script", "")).strip().splitlines()[0] if body.get("script") else ""


STEP = RunStep()
