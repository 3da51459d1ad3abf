"""Step mode (``--step``): asking the user before each step and after a failed one."""

from __future__ import annotations

from typing import Literal, Protocol, TextIO

from kdiag.engine.events import StepRef

BeforeChoice = Literal["yes", "no", "continue", "quit"]
FailureChoice = Literal["retry", "skip", "abort"]

_BEFORE: dict[str, BeforeChoice] = {"y": "yes", "yes": "yes", "": "yes", "n": "no", "no": "no",
                                    "c": "continue", "continue": "continue", "q": "quit",
                                    "quit": "quit"}
_FAILURE: dict[str, FailureChoice] = {"r": "retry", "retry": "retry", "s": "skip",
                                      "skip": "skip", "a": "abort", "abort": "abort"}


class Interaction(Protocol):
    """How the engine asks the user; only present in step mode."""

    def before_step(self, step: StepRef, description: str) -> BeforeChoice: ...

    def after_failure(self, step: StepRef, message: str) -> FailureChoice: ...

    def pause(self, step: StepRef, message: str) -> None: ...


class TerminalInteraction:
    """Asks on a terminal. End of input means quit (before a step) or abort (after a failure)."""

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.asking = True

    def _ask(self, prompt: str) -> str | None:
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            return None
        return line.strip().lower()

    def before_step(self, step: StepRef, description: str) -> BeforeChoice:
        if not self.asking:
            return "yes"
        what = f" — {description}" if description else ""
        while True:
            answer = self._ask(f"\n▶ {step.qualified_name} ({step.kind}){what}\n"
                               "  run it? [y]es / [n]o (skip) / [c]ontinue without asking / "
                               "[q]uit: ")
            if answer is None:
                return "quit"
            choice = _BEFORE.get(answer)
            if choice == "continue":
                self.asking = False
            if choice:
                return choice
            self.stdout.write("  please answer y, n, c or q\n")

    def after_failure(self, step: StepRef, message: str) -> FailureChoice:
        while True:
            answer = self._ask(f"✗ {step.qualified_name} failed: {message}\n"
                               "  [r]etry / [s]kip / [a]bort: ")
            if answer is None:
                return "abort"
            choice = _FAILURE.get(answer)
            if choice:
                return choice
            self.stdout.write("  please answer r, s or a\n")

    def pause(self, step: StepRef, message: str) -> None:
        self._ask(f"⏸ {message}\n  press Enter to continue: ")
