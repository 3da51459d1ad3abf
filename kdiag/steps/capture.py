"""``capture``: packets from the target's network namespace into a pcap file in the artifacts.

When it ends it says what the file holds, by direction, protocol and port (see
:mod:`kdiag.steps.pcapsummary`); the packets themselves stay in the file.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdiag.errors import EXIT_ENVIRONMENT
from kdiag.language.durations import parse_duration
from kdiag.lifeline import Lifeline
from kdiag.steps.base import StepContext, StepFailed, StepOutcome, StepType

DEFAULT_DURATION = 10.0
STOP_WAIT = 10.0
START_WAIT = 10.0
"""How long a background capture may take to start listening before the step fails."""


@dataclass
class _Capturing:
    """A capture running in the background until the run ends (or a limit is reached); its
    lifeline fails when the capture's stream breaks."""

    stop_event: threading.Event
    thread: threading.Thread
    result: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    lifeline: Lifeline = field(default_factory=Lifeline)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(STOP_WAIT)
        if self.errors:
            raise StepFailed(self.errors[0])


class CaptureStep(StepType):
    kind = "capture"
    summary = "Capture packets in the target's network namespace to a pcap (tcpdump filter)."
    schema = {
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "filter": {"type": "string", "description": "A tcpdump filter, e.g. tcp port 8080."},
            "interface": {"type": "string", "description": "Default: any."},
            "file": {"type": "string", "description": "File name in the artifacts "
                     "(default capture.pcap)."},
            "max_packets": {"type": "integer", "minimum": 0},
            "max_bytes": {"type": "integer", "minimum": 0},
            "duration": {"$ref": "#/$defs/duration",
                         "description": "Stop after this long (default 10s unless background)."},
            "snaplen": {"type": "integer", "minimum": 0},
        },
    }
    example = ("capture:\n  filter: tcp port 8080\n  max_packets: 1000\nbackground: true\n"
               "register: pcap")
    needs_target = True
    can_background = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        spec = body or {}
        path = ctx.artifact_path(str(spec.get("file", "capture.pcap")))
        duration = spec.get("duration")
        seconds = parse_duration(duration) if duration is not None else (
            0.0 if ctx.background else DEFAULT_DURATION)
        manager = ctx.target().manager
        stop, started = threading.Event(), threading.Event()
        result: dict[str, Any] = {"file": str(path), "packets": 0, "bytes": 0, "reason": "",
                                  "summary": []}

        def capture() -> None:
            done = manager.capture(path, str(spec.get("filter", "")),
                                   interface=str(spec.get("interface", "")),
                                   max_packets=int(spec.get("max_packets", 0)),
                                   max_bytes=int(spec.get("max_bytes", 0)),
                                   duration=seconds, snaplen=int(spec.get("snaplen", 0)),
                                   stop=stop, started=started)
            result.update(packets=done.packets, bytes=done.bytes, reason=done.reason)
            ctx.output(_account(path, result), "capture")

        if ctx.background:
            running = _Capturing(stop, threading.Thread(target=lambda: _guard(capture, running),
                                                        daemon=True), result)
            running.thread.start()
            # Later steps expect their packets in the file: return once tcpdump listens.
            deadline = time.monotonic() + START_WAIT
            while not started.wait(0.05):
                if not running.thread.is_alive() or time.monotonic() > deadline:
                    stop.set()
                    running.thread.join(STOP_WAIT)
                    raise StepFailed(running.errors[0] if running.errors
                                     else "the capture did not start")
            return StepOutcome(result=result, background=running, artifacts=[str(path)])
        def stop_when_cancelled() -> None:
            ctx.cancelled.wait()
            stop.set()

        threading.Thread(target=stop_when_cancelled, daemon=True).start()
        capture()
        return StepOutcome(result=result, artifacts=[str(path)])

    def describe(self, body: Any) -> str:
        return str((body or {}).get("filter", "all packets"))


def _account(path: Path, result: dict[str, Any]) -> str:
    """``captured 27 packets (stopped) to capture.pcap:`` and a line per direction and port
    (also put in ``result["summary"]``)."""
    from kdiag.steps.pcapsummary import summarise

    packets = result["packets"]
    head = f"captured {packets} packet{'' if packets == 1 else 's'} ({result['reason']}) " \
           f"to {path.name}"
    account = summarise(path)
    result["summary"] = [row.to_dict() for row in account.sorted_rows()]
    if not account.packets and not account.error:
        return head + "\n"
    return head + ":\n" + "".join(f"  {line}\n" for line in account.lines())


def _guard(work: Any, running: _Capturing) -> None:
    try:
        work()
    except Exception as exc:  # reported at once (the lifeline) and when it is stopped
        running.errors.append(f"capture failed: {exc}")
        if not running.stop_event.is_set():
            running.lifeline.fail(running.errors[-1],
                                  environmental=getattr(exc, "exit_code", 0) == EXIT_ENVIRONMENT)


STEP = CaptureStep()
