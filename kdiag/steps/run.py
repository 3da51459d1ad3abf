"""``run``: a local command on the operator's machine (argv or script)."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from kdiag.connect.command import SCHEMA as CONNECT_SCHEMA
from kdiag.context.spec import SCHEMA as FROM_TARGET_SCHEMA
from kdiag.lifeline import Lifeline, Loss, exit_status
from kdiag.steps.base import (
    MAX_OUTPUT_SCHEMA,
    StepContext,
    StepFailed,
    StepOutcome,
    StepType,
    command_text,
)

if TYPE_CHECKING:  # subprocess is imported when a command runs: it slows start-up
    import subprocess

    from kdiag.context.prepare import Prepared
    from kdiag.steps.streams import CommandOutput

STOP_GRACE = 3.0


@dataclass
class _Pump:
    """Reads one pipe of a process in a thread and hands each chunk to the step's output."""

    name: str
    pipe: IO[bytes]
    output: CommandOutput
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._pump, name=f"run-{self.name}", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        # Chunks as they come (not lines), so output without a newline still shows promptly.
        while chunk := self.pipe.read1(65536):  # type: ignore[attr-defined]
            self.output.add(self.name, chunk)
        self.pipe.close()

    def join(self) -> None:
        if self.thread:
            self.thread.join()


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


class _BackgroundProcess:
    """A process kept up for later steps; exiting before it is stopped fails its lifeline
    (with an error status), or is noted (exit code 0)."""

    def __init__(self, process: subprocess.Popen[bytes], pumps: list[_Pump],
                 output: CommandOutput, ctx: StepContext, result: dict[str, Any],
                 context: Prepared | None = None) -> None:
        self.process = process
        self.pumps = pumps
        self.output = output
        self.result = result
        self.context = context
        self.lifeline = Lifeline()
        self._stopping = threading.Event()
        self._ended = threading.Event()
        if context is not None and context.lifeline is not None:  # a cluster name's forward
            context.lifeline.listen(self._names_lost)
        threading.Thread(target=self._watch, args=(ctx,), daemon=True,
                         name=f"run-watch-{process.pid}").start()

    def _names_lost(self, loss: Loss) -> None:
        self.lifeline.fail(f"cluster names: {loss.cause}", environmental=loss.environmental)

    def _watch(self, ctx: StepContext) -> None:
        code = self.process.wait()
        for pump in self.pumps:
            pump.join()
        self.output.close()
        if self.context is not None:  # the step's process ended: its context goes with it
            self.context.close()
        self.result.update(rc=code, **self.output.fields())
        self._ended.set()
        if self._stopping.is_set():
            return
        if code == 0:
            ctx.note("the background process exited with code 0 before the run ended")
        else:
            self.lifeline.fail(f"the background process {exit_status(code)}",
                               environmental=False)

    def stop(self) -> None:
        self._stopping.set()
        _stop(self.process)
        self._ended.wait(STOP_GRACE)


def _command(body: dict[str, Any]) -> list[str]:
    if "argv" in body:
        return [str(a) for a in body["argv"]]
    return [str(body.get("shell", "/bin/sh")), "-c", str(body["script"])]


def _base_environment(body: dict[str, Any]) -> dict[str, str]:
    return dict(os.environ) if body.get("inherit_env", True) else {"PATH": os.defpath}


def _environment(body: dict[str, Any]) -> dict[str, str]:
    env = _base_environment(body)
    env.update({str(k): "" if v is None else str(v) for k, v in (body.get("env") or {}).items()})
    return env


def _start(body: dict[str, Any], ctx: StepContext, context: Prepared | None
           ) -> subprocess.Popen[bytes]:
    from kdiag.launch.launcher import Launch, LaunchError, start

    argv = _command(body)
    cwd = body.get("cwd")
    if cwd is not None and not os.path.isabs(str(cwd)):
        cwd = str(ctx.runbook_dir / str(cwd))
    launch = context.launch(argv, cwd) if context is not None \
        else Launch(argv, _environment(body), cwd)
    import subprocess

    try:
        return start(launch, stdin=subprocess.PIPE if "stdin" in body else subprocess.DEVNULL,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except LaunchError as exc:
        raise StepFailed(str(exc)) from None


def _wait(process: subprocess.Popen[bytes], ctx: StepContext, context: Prepared | None) -> str:
    """Wait for the process; stop it when the step is cancelled or a cluster name's forward
    is lost (then say so)."""
    lifeline = context.lifeline if context is not None else None
    while process.poll() is None:
        if ctx.cancelled.wait(0.05):
            _stop(process)
            break
        if lifeline is not None and lifeline.loss is not None:
            _stop(process)
            return f"cluster names: {lifeline.loss.cause}"
    return ""


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
            "max_output": MAX_OUTPUT_SCHEMA,
            "from_target": FROM_TARGET_SCHEMA,
            "connect": CONNECT_SCHEMA,
        },
        "oneOf": [{"required": ["argv"]}, {"required": ["script"]}],
    }
    example = "run:\n  script: curl -s localhost:9000/health | grep ok\n  env: {LANG: C}"
    can_background = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        started = time.monotonic()
        from kdiag.steps.fromtarget import read_connect, read_context
        from kdiag.steps.streams import CommandOutput, output_limit

        connected = read_connect(body, ctx, _environment(body))
        context = connected or read_context(body, ctx, _base_environment(body))
        try:
            output = CommandOutput(ctx, output_limit(body, ctx))
            try:
                process = _start(body, ctx, context)
            except StepFailed:
                output.close()
                raise
        except BaseException:
            if context is not None:
                context.close()
            raise
        extra = {} if context is None else {"connect" if connected else "from_target":
                                             context.result}
        assert process.stdout is not None and process.stderr is not None
        pumps = [_Pump("stdout", process.stdout, output), _Pump("stderr", process.stderr, output)]
        for pump in pumps:
            pump.start()
        if "stdin" in body:
            threading.Thread(target=_feed, args=(process, body["stdin"]), daemon=True).start()
        if ctx.background:
            result: dict[str, Any] = {"pid": process.pid, **extra}
            return StepOutcome(result=result, background=_BackgroundProcess(
                process, pumps, output, ctx, result, context))
        try:
            lost = _wait(process, ctx, context)
        finally:
            if context is not None:
                context.close()
        for pump in pumps:
            pump.join()
        output.close()
        rc = process.wait()
        result = {"rc": rc, **output.fields(), "duration": round(time.monotonic() - started, 3),
                  **extra}
        if lost:
            return StepOutcome(ok=False, result=result, message=lost)
        if ctx.cancelled.is_set():
            return StepOutcome(ok=False, result=result, message="the command was stopped")
        if rc != 0 and body.get("check", True):
            return StepOutcome(ok=False, result=result, message=f"exit code {rc}")
        return StepOutcome(result=result)

    def describe(self, body: Any, whole: bool = False) -> str:
        if not isinstance(body, dict):
            return ""
        line = command_text(body, whole)
        if isinstance(body.get("connect"), dict):
            line += " (with cluster Service names)"
        wanted = body.get("from_target")
        if isinstance(wanted, dict):
            parts = [part for part in ("env", "files", "names") if wanted.get(part)]
            if parts:
                line += f" (with the target's {', '.join(parts)})"
        return line

    def plan_text(self, body: Any) -> str:
        return self.describe(body, whole=True)


STEP = RunStep()
