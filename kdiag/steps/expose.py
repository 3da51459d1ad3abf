"""``expose``: a port of this machine as a Service in the cluster (see :mod:`kdiag.expose`).

``expose: {port: 8080, service: checkout-preview, local: 127.0.0.1:3000}`` creates the pod and
the Service in the runbook target's namespace (or ``namespace``), waits until a connection to
the Service reaches the local server, and keeps it up in the background (or for a
``duration``); stopping it deletes both. Needs no target pod: the Kubernetes target, if any,
gives the namespace, context, kubeconfig and manager image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kdiag.steps.base import (
    StepContext,
    StepFailed,
    StepOutcome,
    StepType,
    keep_up,
    kubernetes_target,
    require_background_or_duration,
)

if TYPE_CHECKING:
    from kdiag.expose.exposure import Exposure
    from kdiag.lifeline import Lifeline


def parse_local(value: Any) -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` (on 127.0.0.1); ValueError for anything else."""
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"local {text!r}: use HOST:PORT or PORT (1-65535)")
    return host, int(port)


@dataclass
class _Exposed:
    """An exposure kept up; stopping it deletes the Service and the pod."""

    exposure: Exposure
    ctx: StepContext

    @property
    def lifeline(self) -> Lifeline:
        return self.exposure.lifeline

    def stop(self) -> None:
        for problem in self.exposure.stop():
            self.ctx.note(problem)
        stats = self.exposure.traffic.stats
        self.ctx.output(f"stopped: {stats['connections']} connection(s) carried, "
                        f"{stats['rejected']} refused here; service and pod deleted\n", "expose")


class ExposeStep(StepType):
    kind = "expose"
    summary = ("Expose a port of this machine as a Service in the cluster: a small pod and a "
               "Service carry each connection to the local address.")
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["port", "service", "local"],
        "properties": {
            "service": {"type": "string", "description": "The Service to create (it must not "
                        "exist): other pods call it by this name."},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535,
                     "description": "The Service's port (and the pod's)."},
            "local": {"type": ["string", "integer"], "description": "Where connections go on "
                      "this machine: HOST:PORT, or PORT on 127.0.0.1."},
            "namespace": {"type": "string", "description": "Default: the Kubernetes target's, "
                          "else the kubeconfig context's."},
            "timeout": {"$ref": "#/$defs/duration", "description": "How long the pod may take "
                        "to be Ready (default 60s)."},
            "duration": {"$ref": "#/$defs/duration",
                         "description": "Without background: keep it up this long."},
        },
    }
    example = ("expose: {port: 8080, service: checkout-preview, local: 127.0.0.1:3000}\n"
               "background: true")
    can_background = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        from kdiag.expose.exposure import Traffic, Wanted, start
        from kdiag.expose.objects import check_name
        from kdiag.kube.inject import ManagerImage
        from kdiag.language.durations import parse_duration

        require_background_or_duration(self.kind, body, ctx)
        try:
            local = parse_local(body["local"])
            service = check_name(str(body["service"]))
        except ValueError as exc:
            raise StepFailed(str(exc)) from None
        target = kubernetes_target(ctx)

        def pick(name: str) -> str | None:
            value = body.get(name) or target.get(name)
            return str(value) if value else None

        image = ManagerImage(str(target.get("image") or ""),
                             str(target.get("image_pull_policy") or ""))
        wanted = Wanted(service, int(body["port"]), local, pick("namespace"), pick("kubeconfig"),
                        pick("context"), image)
        traffic = Traffic(lambda line: ctx.output(line, "expose"), ctx.progress)
        exposure = start(wanted, traffic, parse_duration(body.get("timeout", 60)))
        summary = exposure.summary()
        ctx.output(f"service {summary['namespace']}/{service}:{wanted.port} -> "
                   f"{local[0]}:{local[1]} (pod {exposure.pod}, ready in "
                   f"{summary['ready_seconds']:.2f}s)\n", "expose")
        return keep_up(_Exposed(exposure, ctx), body, ctx, summary)

    def describe(self, body: Any) -> str:
        if not isinstance(body, dict):
            return ""
        return f"service {body.get('service')}:{body.get('port')} -> {body.get('local')}"


STEP = ExposeStep()
