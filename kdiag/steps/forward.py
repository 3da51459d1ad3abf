"""``forward``: a pod's port on a local port, as ``kubectl port-forward`` does.

Each local connection gets its own port-forward through the API server (the protocol carries
one connection per forward). Kept up in the background for later steps, or for a ``duration``.
Needs no manager: the pod defaults to the runbook's kubernetes target.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kdiag.language.ports import PORT_SCHEMA
from kdiag.steps.base import (
    StepContext,
    StepOutcome,
    StepType,
    keep_up,
    require_background_or_duration,
)

if TYPE_CHECKING:
    from kdiag.kube.podguard import PodGuard
    from kdiag.kube.portforward import PortForwarder
    from kdiag.lifeline import Lifeline



@dataclass
class _Forwarding:
    """A forward kept up; its lifeline fails when the pod is lost or a connection's
    port-forward cannot be opened even after retries."""

    forwarder: PortForwarder
    guard: PodGuard

    @property
    def lifeline(self) -> Lifeline:
        return self.forwarder.lifeline

    def stop(self) -> None:
        self.guard.stop()
        self.forwarder.close()


class ForwardStep(StepType):
    kind = "forward"
    summary = "Forward a local port to a pod's port through the API server (kubectl port-forward)."
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["port"],
        "properties": {
            "port": {**PORT_SCHEMA, "description": "The pod's port (with a Service target, "
                     "the Service's port: its targetPort)."},
            "local_port": {"type": "integer", "minimum": 0, "maximum": 65535,
                           "description": "The local port (default 0: any free port)."},
            "address": {"type": "string", "description": "Local address to listen on "
                        "(default 127.0.0.1)."},
            "pod": {"type": "string", "description": "A pod name or TYPE/NAME (its newest "
                    "running pod); default: the runbook target's pod."},
            "selector": {"type": "string", "description": "A label selector (newest pod)."},
            "namespace": {"type": "string"},
            "duration": {"$ref": "#/$defs/duration",
                         "description": "Without background: keep it up this long."},
        },
    }
    example = ("forward: {port: 8080}\nbackground: true\nregister: api\n"
               "# later: http: {url: \"{{ api.url }}/health\"}")
    can_background = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        from kdiag.kube.podguard import PodGuard
        from kdiag.kube.portforward import PortForwarder
        from kdiag.lifeline import Lifeline
        from kdiag.targets.kubernetes import pods_for_step

        require_background_or_duration(self.kind, body, ctx)
        from kdiag.kube.workloads import map_port

        kube, selection = pods_for_step(ctx.evaluate("target"), body)
        pod = selection.pods[0]
        port = map_port(body["port"], pod.named_ports, selection.workload)
        errors: list[str] = []
        lock = threading.Lock()

        def on_error(message: str) -> None:
            with lock:
                errors.append(message)
            ctx.output(f"forward error: {message}\n", "forward")

        lifeline = Lifeline()
        forwarder = PortForwarder(kube.stream_core, pod.namespace, pod.name, port,
                                  int(body.get("local_port", 0)),
                                  str(body.get("address", "127.0.0.1")), kube.server,
                                  on_error=on_error, lifeline=lifeline)
        guard = PodGuard(kube.core(), pod, lifeline, server=kube.server, watch_container=False)
        guard.start()
        host = forwarder.host
        url_host = f"[{host}]" if ":" in host else host
        result = {"pod": pod.name, "namespace": pod.namespace, "port": port,
                  "local_port": forwarder.local_port, "address": host,
                  "url": f"http://{url_host}:{forwarder.local_port}", "errors": errors}
        ctx.output(f"{host}:{forwarder.local_port} -> pod {pod.namespace}/{pod.name}:"
                   f"{port}\n", "forward")
        outcome = keep_up(_Forwarding(forwarder, guard), body, ctx, result)
        if not ctx.background:
            result["connections"] = forwarder.connections
        return outcome

    def describe(self, body: Any) -> str:
        if not isinstance(body, dict):
            return ""
        where = body.get("pod") or body.get("selector") or "the target pod"
        return f"localhost:{body.get('local_port', 0) or 'any'} -> {where}:{body.get('port')}"


STEP = ForwardStep()
