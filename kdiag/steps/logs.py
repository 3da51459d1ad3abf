"""``logs``: follow the logs of many pods and containers at once.

Around nested ``steps`` (followed while they run, then for ``drain`` longer), for a
``duration``, in the ``background`` until the run ends, or — with none of these — the lines
already there (``since``). Each line goes to the console prefixed with ``pod/container``, to a
log file per pod/container in the artifacts, and into the result for assertions. With a
selector, pods that start running under it while the step follows are followed too.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from kdiag.language.durations import parse_duration
from kdiag.steps.base import StepContext, StepFailed, StepOutcome, StepType

if TYPE_CHECKING:
    from kdiag.kube.logs import LogFollower, LogLine, LogSource
    from kdiag.lifeline import Lifeline

DEFAULT_DRAIN = 2.0
MAX_KEPT_LINES = 20_000
"""Lines kept in the result (the artifacts keep all of them)."""


@dataclass
class _Collector:
    """Where lines go: console, per-source files, the result."""

    ctx: StepContext
    files: dict[str, IO[str]] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)
    lines: list[dict[str, str]] = field(default_factory=list)
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def open(self, sources: list[LogSource]) -> None:
        with self.lock:
            for source in sources:
                if self.closed or source.label in self.files:
                    continue
                path = self.ctx.artifact_path(f"{source.pod}.{source.container}.log")
                self.files[source.label] = open(path, "w", encoding="utf-8")  # noqa: SIM115
                self.paths.append(str(path))

    def started_later(self, source: LogSource) -> None:
        """A pod that started while we follow: its file, and a word on the console."""
        self.open([source])
        self.ctx.output(f"following {source.label} (started later)\n", "logs")

    def add(self, line: LogLine) -> None:
        label = line.source.label
        with self.lock:
            self.count += 1
            if len(self.lines) < MAX_KEPT_LINES:
                self.lines.append(line.to_dict())
            f = self.files.get(label)
            if f is not None:
                f.write(f"{line.time} {line.text}\n" if line.time else f"{line.text}\n")
                f.flush()
        self.ctx.output(line.text + "\n", label)

    def result(self) -> dict[str, Any]:
        """``lines`` and ``text`` hold the first :data:`MAX_KEPT_LINES`; ``count`` is every line
        that came, ``omitted`` how many of them the result does not hold (the files do)."""
        with self.lock:
            lines, count = list(self.lines), self.count
        return {"lines": lines, "count": count, "omitted": count - len(lines),
                "text": "\n".join(f"{x['pod']}/{x['container']}: {x['text']}" for x in lines),
                "files": list(self.paths)}

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for f in self.files.values():
                f.close()
            self.files.clear()
            omitted = self.count - len(self.lines)
        if omitted:
            self.ctx.output(f"the result holds the first {len(self.lines)} of {self.count} "
                            "lines; the files hold all\n", "logs")


@dataclass
class _Following:
    """A follower kept up in the background; its registered result fills as lines come."""

    follower: LogFollower
    collector: _Collector
    result: dict[str, Any]

    @property
    def lifeline(self) -> Lifeline:
        """Fails when a log stream breaks."""
        return self.follower.lifeline

    def stop(self) -> None:
        self.follower.stop()
        self.collector.close()
        self.result.update(self.collector.result())


class LogsStep(StepType):
    kind = "logs"
    summary = ("Follow the logs of pods and containers (selector, all containers, since) "
               "around nested steps, for a duration or in the background.")
    schema = {
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "pod": {"type": "string", "description": "Default: the runbook target's pod(s)."},
            "selector": {"type": "string", "description": "A label selector: every running "
                         "pod it matches."},
            "namespace": {"type": "string"},
            "container": {"type": "string", "description": "A container name, or all "
                          "(default: each pod's default container)."},
            "since": {"$ref": "#/$defs/duration", "description": "Also the lines of this "
                      "long before (default: only new lines)."},
            "duration": {"$ref": "#/$defs/duration", "description": "Follow this long."},
            "drain": {"$ref": "#/$defs/duration", "description": "After the nested steps, "
                      "keep following this long for late lines (default 2s)."},
            "steps": {"$ref": "#/$defs/steps"},
        },
    }
    example = ("logs:\n  selector: app=shop\n  container: all\n  steps:\n"
               "    - http: {url: \"http://localhost:8080/order\"}\nregister: shop_logs\n"
               "assert: [\"shop_logs.lines | selectattr('text', 'search', 'order') | list\"]")
    can_background = True
    inline = True
    children_field = "steps"

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        from kdiag.kube.logs import LogFollower, NewPods, sources_for
        from kdiag.kube.pods import select
        from kdiag.targets.kubernetes import selection_for_step

        spec = body or {}
        has_steps = bool(spec.get("steps"))
        modes = sum([has_steps, "duration" in spec, ctx.background])
        if modes > 1:
            raise StepFailed("logs: use one of steps, duration or background: true")
        # The container is chosen per pod below (a name, all, or each pod's default).
        where = {k: v for k, v in spec.items() if k not in ("container", "steps")}
        kube, want = selection_for_step(ctx.evaluate("target"), where, pick="all")
        selection = select(kube.core(), want, kube.server, ready=False)
        pods = selection.pods
        sources = sources_for(pods, spec.get("container"))
        since = spec.get("since")
        since_seconds = int(parse_duration(since) + 0.999) if since is not None else None
        collector = _Collector(ctx)
        collector.open(sources)
        if modes == 0:  # the lines already there, like `kubectl logs`
            return self._snapshot(kube, sources, since_seconds, collector)
        new_pods = None
        if selection.selector:  # a selector or TYPE/NAME: pods that start later too
            new_pods = NewPods(want.namespace, selection.selector, spec.get("container"),
                               frozenset(p.uid for p in pods), collector.started_later)
        follower = LogFollower(kube.core(), sources, collector.add, since_seconds, kube.server,
                               new_pods)
        ctx.output(f"following {', '.join(s.label for s in sources)}\n", "logs")
        try:
            follower.start()
        except Exception:
            collector.close()
            raise
        if ctx.background:
            result = collector.result()
            return StepOutcome(result=result, background=_Following(follower, collector, result),
                               artifacts=list(collector.paths))
        ok = True
        try:
            if has_steps:
                ok = ctx.run_children()
                ctx.cancelled.wait(parse_duration(spec.get("drain", DEFAULT_DRAIN)))
            else:
                ctx.cancelled.wait(parse_duration(spec["duration"]))
        finally:
            follower.stop()
            collector.close()
        result = collector.result()
        result["errors"] = follower.errors
        if not ok:
            return StepOutcome(ok=False, result=result, message="a nested step failed",
                               artifacts=list(collector.paths))
        return StepOutcome(result=result, artifacts=list(collector.paths))

    @staticmethod
    def _snapshot(kube: Any, sources: list[LogSource], since_seconds: int | None,
                  collector: _Collector) -> StepOutcome:
        from kdiag.kube.errors import Call, api_call
        from kdiag.kube.logs import LogLine
        from kdiag.kube.podlog import read_pod_log

        core = kube.core()
        try:
            for source in sources:
                kwargs: dict[str, Any] = {"container": source.container, "timestamps": True}
                if since_seconds is not None:
                    kwargs["since_seconds"] = max(1, since_seconds)
                with api_call(Call("get", "pods/log", source.namespace, source.pod, kube.server)):
                    text = read_pod_log(core, source.pod, source.namespace, **kwargs)
                for raw in text.splitlines():
                    stamp, sep, rest = raw.partition(" ")
                    timed = bool(sep) and stamp[:4].isdigit() and "T" in stamp
                    collector.add(LogLine(source, rest if timed else raw, stamp if timed else ""))
        finally:
            collector.close()
        return StepOutcome(result=collector.result(), artifacts=list(collector.paths))

    def describe(self, body: Any) -> str:
        if not isinstance(body, dict):
            return "the target's logs"
        where = body.get("pod") or body.get("selector") or "the target"
        container = body.get("container")
        return f"{where}{f' ({container})' if container else ''}"



STEP = LogsStep()
