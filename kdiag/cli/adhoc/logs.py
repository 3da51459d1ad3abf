"""``kdiag logs``: follow many pods and containers at once (lines prefixed with
``pod/container``), until Ctrl-C — or around a local command: ``kdiag logs -l app=shop -- curl
...`` follows while the command runs, then drains and exits with the command's exit code."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable

from kdiag.cli.adhoc.lost import lost, wait_until_lost
from kdiag.cli.interrupts import interrupt_on_sigterm
from kdiag.errors import EXIT_INTERRUPTED, UsageError
from kdiag.language.durations import parse_duration

COLOURS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)


def _prefixer(use_colour: bool) -> Callable[[str], str]:
    """``[pod/container] ``, coloured per source on a terminal."""

    def prefix(label: str) -> str:
        if not use_colour:
            return f"[{label}] "
        colour = COLOURS[zlib.crc32(label.encode()) % len(COLOURS)]
        return f"\x1b[{colour}m[{label}]\x1b[0m "

    return prefix


def command(args: argparse.Namespace) -> int:
    """Follow the logs; with a command, around it."""
    from kdiag.kube.logs import LogFollower, LogLine, LogSource, NewPods, sources_for
    from kdiag.kube.podguard import PodGuard
    from kdiag.kube.pods import select
    from kdiag.lifeline import Lifeline
    from kdiag.targets.kubernetes import selection_for_step

    if args.pid is not None:
        raise UsageError("logs works on pods only (no --pid)")
    argv = list(args.cmd or [])
    try:
        since = int(parse_duration(args.since) + 0.999) if args.since else None
        drain = parse_duration(args.drain)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    container = args.container if args.container and args.container != "all" else None
    kube, want = selection_for_step({}, {"namespace": args.namespace, "pod": args.pod,
                                         "selector": args.selector, "container": container,
                                         "kubeconfig": args.kubeconfig,
                                         "context": args.context}, pick="all")
    selection = select(kube.core(), want, kube.server, ready=False)
    pods = selection.pods
    sources = sources_for(pods, args.container)
    use_colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    prefix = _prefixer(use_colour)
    lock = threading.Lock()

    def on_line(line: LogLine) -> None:
        with lock:
            sys.stdout.write(f"{prefix(line.source.label)}{line.text}\n")
            sys.stdout.flush()

    def started_later(source: LogSource) -> None:
        print(f"following {source.label} (started later)", file=sys.stderr, flush=True)

    new_pods = None
    if selection.selector:  # a selector or TYPE/NAME: pods come and go
        new_pods = NewPods(want.namespace, selection.selector, args.container,
                           frozenset(p.uid for p in pods), started_later)
    follower = LogFollower(kube.core(), sources, on_line, since, kube.server, new_pods)
    # One named pod: its deletion ends the command (with a selector, pods come and go).
    guard = PodGuard(kube.core(), pods[0], Lifeline(), server=kube.server,
                     watch_container=False) if not selection.selector else None
    interrupt_on_sigterm()
    follower.start()
    print(f"following {', '.join(s.label for s in sources)}", file=sys.stderr, flush=True)
    target = guard.lifeline if guard is not None else None
    try:
        if guard is not None:
            guard.start()
        if not argv:
            raise lost("logs", wait_until_lost(follower.lifeline, target=target))
        code = subprocess.call(argv)
        time.sleep(drain)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as exc:
        raise UsageError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    finally:
        if guard is not None:
            guard.stop()
        follower.stop()
    loss = follower.lifeline.loss or (target.loss if target is not None else None)
    if loss is not None:  # the lines shown may be incomplete: say so rather than exit 0
        raise lost("logs", loss)
    return code

