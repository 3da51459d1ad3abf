"""The console reporter: what a person watching ``kdiag run`` sees.

Three modes, picked from the output stream unless forced:

- ``live`` (a terminal, no ``NO_COLOR``, not step mode): a rich live region with one line per
  running step (spinner, name, elapsed); finished steps, notes and output are printed above it.
- ``lines`` (a terminal in step mode): the same coloured lines without the live region, because
  prompts and a live display do not mix.
- ``plain`` (not a terminal, ``NO_COLOR`` set, ``TERM=dumb``): plain text lines, no ANSI codes at
  all, made to be read in CI logs and grepped (``[ ok ] name (0.12s)``, ``[FAIL] name: why``).

Step output is shown as it arrives, prefixed ``  │ `` (output of a step other than the one
running in the foreground, e.g. a background log capture, also names that step and its source).
When a step fails, its failed assertions are printed with their values, and the last lines of
its captured output if they were not already shown. Steps that did not run because of what
stopped the run are listed after one line naming the cause (said once). The run ends with a
summary table (:mod:`.console_summary`: the same columns in every mode, plus a one-line
timeline bar per step on a terminal) and a one-line verdict.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, TextIO

from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from kdiag.engine.events import (
    BackgroundFailed,
    Event,
    RunFinished,
    RunStarted,
    StepFinished,
    StepNote,
    StepOutput,
    StepRef,
    StepStarted,
)
from kdiag.reports.console_summary import Layout, table
from kdiag.reports.console_view import (
    INFO,
    LOST_TAG,
    PLAIN_STREAMS,
    PLAIN_TAG,
    STYLE,
    SYMBOL,
    LiveView,
    Mode,
    Running,
    Segment,
    can_encode,
    pick_mode,
    plural,
    sanitize,
    shorten,
    source_colour,
    verdict,
)
from kdiag.reports.record import RunLog, RunRecord
from kdiag.reports.steprecord import StepRecord
from kdiag.reports.text import (
    first_line,
    format_duration,
    has_controls,
    indent_rest,
    tail_lines,
    terminal_line,
    value_text,
)

EARLIER_FAILED = "an earlier step failed"
"""The engine's reason for steps after a failure: the failure was shown just before them."""
MAX_PARTIAL_LINE = 64 * 1024
"""Characters of a line still without its end kept back; beyond, it is shown as it is."""


class ConsoleReporter:
    """Reports a run on a terminal or a plain stream (see the module docstring for the modes).

    ``file`` defaults to ``sys.stdout``; pass ``console`` to use a prepared rich console (its
    file is then used). ``stream_output=False`` shows no output while steps run, only the tail
    of a failed step's output. ``output_tail`` is how many lines of a failed step's output are
    shown. ``env`` replaces ``os.environ`` when looking up ``NO_COLOR``, ``clock`` the wall clock
    used for the duration of a run cut off without ``RunFinished`` (both for tests).
    """

    def __init__(
        self,
        file: TextIO | None = None,
        *,
        console: Console | None = None,
        interactive: bool = False,
        mode: Mode = "auto",
        stream_output: bool = True,
        output_tail: int = 50,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        env = os.environ if env is None else env
        no_color = bool(env.get("NO_COLOR"))
        if console is None:
            console = Console(
                file=file if file is not None else sys.stdout,
                highlight=False,
                no_color=no_color,
            )
        self.console = console
        self.mode: Mode = mode if mode != "auto" else pick_mode(console, no_color, interactive)
        self.stream_output = stream_output
        self.output_tail = output_tail
        self.log = RunLog(clock=clock)
        self._out: IO[str] = console.file
        self._unicode = can_encode(self._out, "│✔✘…—")
        self._bar = "│" if self._unicode else "|"
        self._lock = threading.RLock()
        self._view = LiveView()
        self._live: Live | None = None
        self._running: dict[StepRef, Running] = {}
        self._foreground: StepRef | None = None
        self._partial: dict[tuple[StepRef, str], str] = {}
        self._shown_output: set[StepRef] = set()
        self._summarised: set[int] = set()  # id() of runs whose summary was printed
        self._said: set[str] = set()  # failures shown: a skip because of one only points up
        self._skipping: str | None = None  # the cause of the skipped steps being listed
        self._closed = False

    # -- Reporter protocol ----------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Show ``event``."""
        with self._lock:
            run, step = self.log.handle(event)
            if isinstance(event, RunStarted):
                self._run_started(event)
            elif isinstance(event, StepStarted):
                self._step_started(event)
            elif isinstance(event, StepOutput):
                self._step_output(event)
            elif isinstance(event, StepNote):
                self._note(event)
            elif isinstance(event, StepFinished) and step is not None:
                self._step_finished(event, step)
            elif isinstance(event, BackgroundFailed):
                self._background_failed(event)
            elif isinstance(event, RunFinished):
                self._finish_run(run)

    def close(self) -> None:
        """Stop the live region and, if the run never finished, print its summary (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._flush_partial(None)
            self._stop_live()
            self.log.close()
            for run in self.log.runs:
                if id(run) not in self._summarised:
                    self._summary(run)

    # -- events ---------------------------------------------------------------------------

    def _run_started(self, event: RunStarted) -> None:
        head = f"kdiag: {event.runbook or event.file}"
        details = []
        if event.file and event.file != event.runbook:
            details.append(event.file)
        if event.target:
            details.append(f"target {event.target}")
        details.append(plural(event.step_count, "step"))
        if event.dry_run:
            details.append("dry run")
        self._line([(head, "bold"), (f" ({', '.join(details)})", "dim")])
        if event.params:
            shown = ", ".join(f"{k}={shorten(value_text(v), 60)}" for k, v in event.params.items())
            self._line([("params: ", "dim"), (shown, "")])

    def _step_started(self, event: StepStarted) -> None:
        ref = event.step
        self._foreground = ref
        if self.mode == "live":
            spinner = Spinner("dots", style="cyan")
            self._running[ref] = Running(ref, event.attempt, time.monotonic(), spinner)
            self._view.entries = tuple(self._running.values())
            self._start_live()
            return
        attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
        if self.mode == "plain":
            self._line([(f"[....] {ref.qualified_name}{attempt}", "")])
        else:
            self._line(
                [("▶ " if self._unicode else "> ", "cyan"), (ref.qualified_name, "bold"), (attempt, "yellow")]
            )
        if event.description:
            self._line([(f"       {event.description}", "dim")])

    def _step_output(self, event: StepOutput) -> None:
        if not self.stream_output:
            return
        key = (event.step, event.stream)
        text = self._partial.pop(key, "") + event.text
        *lines, rest = text.split("\n")
        if len(rest) > MAX_PARTIAL_LINE:  # a line without end (binary output): show it now
            lines.append(rest)
        elif rest:
            self._partial[key] = rest
        if self.mode == "plain" and len(lines) > 1 and not has_controls("".join(lines)):
            self._plain_block(event.step, event.stream, lines)  # fast: megabytes of output
            return
        for line in lines:
            self._output_line(event.step, event.stream, line)

    def _plain_block(self, ref: StepRef, stream: str, lines: list[str]) -> None:
        """Lines holding nothing to clean, written at once, as :meth:`_output_line` would."""
        self._shown_output.add(ref)
        label = [ref.qualified_name] if ref != self._foreground else []
        if stream not in PLAIN_STREAMS:
            label.append(stream)
        prefix = sanitize(f"  {self._bar} " + (f"[{':'.join(label)}] " if label else ""))
        self._write("".join(f"{prefix}{line}\n" for line in lines))

    def _output_line(self, ref: StepRef, stream: str, line: str) -> None:
        self._shown_output.add(ref)
        label = []
        if ref != self._foreground:
            label.append(ref.qualified_name)
        if stream not in PLAIN_STREAMS:
            label.append(stream)
        prefix = f"  {self._bar} "
        segments: list[Segment] = [(prefix, "dim")]
        if label:
            segments.append((f"[{':'.join(label)}] ", source_colour(stream)))
        segments.append((terminal_line(line), "red" if stream == "stderr" else ""))
        self._line(segments)

    def _background_failed(self, event: BackgroundFailed) -> None:
        """One line: which background work died, when, why (and whether it was ignored)."""
        self._said.add(event.line)  # the steps it stops from running point up to it
        status = "ignored" if event.ignored else ("error" if event.environmental else "failed")
        when = time.strftime("%H:%M:%S", time.localtime(event.at))
        if event.step.kind == "target":
            what = f"target lost at {when}: {event.cause}"
        else:
            what = f"{event.step.qualified_name}: background {event.step.kind} failed at {when}: " \
                   f"{event.cause}"
        if event.ignored:
            what += " (continue_on_error: the run goes on)"
        # Its own tag: this line announces an event; the verdict (and its one [ERR ]/[FAIL]
        # line) belongs to the step it stopped, or to the background step in the summary.
        if self.mode == "plain":
            self._line([(f"{LOST_TAG} {what}", "")])
        else:
            self._line([(f"{SYMBOL[status]} ", STYLE[status]), (what, STYLE[status])])

    def _note(self, event: StepNote) -> None:
        tag = "[note]" if self.mode == "plain" else (INFO if self._unicode else "i")
        body = indent_rest(event.message, 7)
        self._line([(tag + " ", "bold cyan"), (event.step.qualified_name, "cyan"), (": " + body, "")])

    def _step_finished(self, event: StepFinished, step: StepRecord) -> None:
        ref = event.step
        self._flush_partial(ref)
        if self._running.pop(ref, None) is not None:
            self._view.entries = tuple(self._running.values())
        if self._foreground == ref:
            self._foreground = None
        status = step.status
        timing = [format_duration(step.duration)] if status != "skipped" else []
        if step.attempts > 1:
            timing.append(f"{step.attempts} attempts")
        if status == "skipped":
            message = self._not_run(step.summary_message())
        else:
            message, self._skipping = step.summary_message(), None
            self._said.add(message)
        if self.mode == "plain":
            segments: list[Segment] = [(f"{PLAIN_TAG[status]} {ref.qualified_name}", "")]
        else:
            segments = [(f"{SYMBOL[status]} ", STYLE.get(status, "")), (ref.qualified_name, "bold")]
        if message:
            segments.append((": " + first_line(message, 500), STYLE.get(status, "")))
        if timing:
            segments.append((f" ({', '.join(timing)})", "dim"))
        self._line(segments)
        for line in step.pod_lines:  # a step that ran on every pod: one line each
            self._line([("    " + line, "dim" if ": passed" in line else "")])
        if step.has_problem:
            self._problem_details(step)
        for path in step.artifacts:
            self._line([("    artifact: ", "dim"), (path, "")])

    def _not_run(self, message: str) -> str:
        """A skipped step's message; steps not run for one cause share one line naming it,
        printed before the first of them (``so these steps did not run:`` when the cause was
        just shown as a step's failure)."""
        cause = message.removeprefix("not run: ")
        if cause == message:  # skipped for its own reason (when, --start-at, the user)
            self._skipping = None
            return message
        if cause != self._skipping:
            self._skipping = cause
            said = cause in self._said or (cause == EARLIER_FAILED and bool(self._said))
            self._line([("       " + ("so these steps did not run:" if said
                                      else f"these steps did not run: {cause}"), "dim")])
        return ""

    def _problem_details(self, step: StepRecord) -> None:
        """Message continuation, failed assertions with values, and unseen output."""
        lines = step.summary_message().strip().split("\n")
        for line in lines[1:]:  # the first line went on the step's own line
            self._line([("    " + line, "")])
        cross = "✘" if self._unicode else "x"
        for a in step.failed_assertions:
            self._line([(f"    {cross} ", "red"), (a.expression, "bold")])
            if a.message:
                self._line([("        " + indent_rest(a.message, 8), "")])
            for name, value in a.values.items():
                self._line([(f"        {name} = ", "dim"), (indent_rest(value, 8), "")])
        if step.ref in self._shown_output and self.stream_output:
            return
        lines, cut = tail_lines(step.output, self.output_tail)
        if not lines:
            return
        count = len(lines)
        shown = f"last {count} of {count + cut} lines" if cut else plural(count, "line")
        self._line([(f"    output ({shown}):", "dim")])
        for line in lines:
            self._line([(f"  {self._bar} ", "dim"), (terminal_line(line), "")])

    def _finish_run(self, run: RunRecord) -> None:
        self._flush_partial(None)
        self._stop_live()  # restarted by the next step if another run follows
        self._summary(run)

    # -- summary --------------------------------------------------------------------------

    def _summary(self, run: RunRecord) -> None:
        self._summarised.add(id(run))
        self._skipping = None
        if run.steps:
            width = None if self.mode == "plain" else self.console.width
            self._line([("", "")])
            for line in table(run, Layout(width, self._unicode)):
                self._line(line, crop=width is not None)
        self._line(verdict(run))

    # -- output plumbing ------------------------------------------------------------------

    def _line(self, segments: list[Segment], crop: bool = False) -> None:
        """Print one line (which may hold newlines) in the reporter's mode; ``crop``: cut
        it at the terminal's width rather than wrap it (a table's row)."""
        # Text from events may hold escape sequences or control characters: they must not
        # reach a CI log (plain mode) nor move the cursor under the live region.
        clean = [(sanitize(text), style) for text, style in segments]
        if self.mode == "plain":
            self._write("".join(text for text, _ in clean) + "\n")
        elif crop:
            self.console.print(Text.assemble(*clean), highlight=False, no_wrap=True,
                               overflow="ellipsis")
        else:
            self.console.print(Text.assemble(*clean), highlight=False)

    def _write(self, text: str) -> None:
        try:
            self._out.write(text)
        except UnicodeEncodeError:
            # A stream that cannot carry some character (LANG=C): replace it, never crash.
            enc = getattr(self._out, "encoding", None) or "ascii"
            self._out.write(text.encode(enc, errors="replace").decode(enc))
        self._out.flush()

    def _flush_partial(self, ref: StepRef | None) -> None:
        """Print buffered incomplete lines (of ``ref``, or of every step)."""
        for key in [k for k in self._partial if ref is None or k[0] == ref]:
            self._output_line(key[0], key[1], self._partial.pop(key))

    def _start_live(self) -> None:
        if self._live is None:
            self._live = Live(
                self._view,
                console=self.console,
                refresh_per_second=8,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def _stop_live(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            self._running.clear()
            self._view.entries = ()
            live.stop()
