"""``kdiag exec TARGET -- COMMAND``: run a command on this machine with the target's context —
its main process's environment (``--env``), files of its root at their paths (``--file``),
cluster Service names (``--names``) — the ad-hoc form of ``run: {from_target: ...}``.

Everything read is secret: the command's output goes through the same masking as a run's
(``--no-mask`` hands it the terminal instead); the private folder is removed when it ends.
"""

from __future__ import annotations

import argparse
import codecs
import os
import select
import subprocess
import sys
import threading
from typing import IO, TYPE_CHECKING

from kdiag.cli.adhoc.targeting import open_session
from kdiag.cli.interrupts import interrupt_on_sigterm
from kdiag.errors import EXIT_INTERRUPTED, EnvironmentProblem, UsageError

if TYPE_CHECKING:
    from kdiag.engine.masking import Masker

IDLE_FLUSH = 0.2
"""Seconds of quiet after which output held back (it may begin a secret) is shown."""
STOP_GRACE = 3.0


def _spec_body(args: argparse.Namespace) -> dict[str, object]:
    body: dict[str, object] = {}
    if args.env or args.include or args.exclude:
        env: dict[str, object] = {}
        if args.include:
            env["include"] = args.include
        if args.exclude:
            env["exclude"] = args.exclude
        body["env"] = env or True
    if args.file:
        body["files"] = args.file
    if args.name:
        body["names"] = args.name
    elif args.names:
        body["names"] = True
    if args.public:
        body["public"] = args.public
    body["view"] = args.view
    return body


def _overrides(items: list[str]) -> dict[str, str]:
    found = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--set-env {item!r}: use NAME=VALUE")
        found[name] = value
    return found


class _MaskedPump:
    """Copies a pipe to our own output with the secrets masked (a secret cut between two
    reads is held back until the next one, or until the output is quiet)."""

    def __init__(self, pipe: IO[bytes], out: IO[bytes], masker: Masker) -> None:
        self.pipe, self.out, self.masker = pipe, out, masker
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.thread = threading.Thread(target=self._run, daemon=True, name="exec-output")
        self.thread.start()

    def _write(self, text: str) -> None:
        self.out.write(text.encode("utf-8", "surrogateescape"))
        self.out.flush()

    def _run(self) -> None:
        held = ""
        fd = self.pipe.fileno()
        while True:
            ready, _, _ = select.select([fd], [], [], IDLE_FLUSH if held else None)
            if not ready:  # quiet: show what was held back
                self._write(self.masker.text(held))
                held = ""
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            shown, held = self.masker.split(held + self.decoder.decode(data))
            self._write(shown)
        self._write(self.masker.text(held + self.decoder.decode(b"", final=True)))
        self.pipe.close()


def command(args: argparse.Namespace) -> int:
    """Read the target's context, run the command with it; its exit code."""
    from kdiag.context.files import Cancelled
    from kdiag.context.prepare import prepare
    from kdiag.context.spec import parse
    from kdiag.engine.masking import Masker
    from kdiag.launch.launcher import LaunchError, start

    if getattr(args, "all_pods", False):
        raise UsageError("--all: a command runs with one pod's context (its environment and "
                         "files): name the pod, or leave --all out for the newest pod")
    argv = list(args.cmd or [])
    if not argv:
        raise UsageError("name the command to run: kdiag exec TARGET [--env] [--file PATH] "
                         "[--names] -- COMMAND...")
    try:
        spec = parse(_spec_body(args), _overrides(args.set_env))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not spec.anything:
        raise UsageError("say what to take from the target: --env, --file PATH, --names")
    interrupt_on_sigterm()
    with open_session(args) as session:
        try:
            prepared = prepare(spec, session, dict(os.environ))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except Cancelled:
            return EXIT_INTERRUPTED
        try:
            masker = Masker()
            masker.add_all(prepared.secrets)
            for note in prepared.notes:
                print(f"kdiag: {note}", file=sys.stderr, flush=True)
            piped = subprocess.PIPE if not args.no_mask else None
            try:
                process = start(prepared.launch(argv, None), stdout=piped, stderr=piped,
                                new_session=False)
            except LaunchError as exc:
                raise UsageError(str(exc)) from None
            pumps = [] if args.no_mask else [
                _MaskedPump(process.stdout, sys.stdout.buffer, masker),  # type: ignore[arg-type]
                _MaskedPump(process.stderr, sys.stderr.buffer, masker)]  # type: ignore[arg-type]
            code = wait_command(process, prepared.lifeline, "exec")
            for pump in pumps:
                pump.thread.join()
            return code
        finally:
            prepared.close()


def wait_command(process: subprocess.Popen[bytes], lifeline: object, what: str) -> int:
    """The command's exit code (128+N for a signal); 130 after Ctrl-C; a lost forward of
    the cluster names stops it (EnvironmentProblem: ``WHAT ended: ...``)."""
    from kdiag.lifeline import Lifeline

    try:
        while True:
            try:
                code = process.wait(0.1)
                return 128 - code if code < 0 else code
            except subprocess.TimeoutExpired:
                pass
            if isinstance(lifeline, Lifeline) and lifeline.loss is not None:
                _stop(process)
                raise EnvironmentProblem(f"{what} ended: cluster names: {lifeline.loss.cause}")
    except KeyboardInterrupt:  # the command got the terminal's SIGINT too: let it end
        _stop(process)
        return EXIT_INTERRUPTED


def _stop(process: subprocess.Popen[bytes]) -> None:
    for stop in (process.terminate, process.kill):
        try:
            process.wait(STOP_GRACE)
            return
        except subprocess.TimeoutExpired:
            stop()
    process.wait()
