"""``probe``: HTTP, TCP or DNS from inside the target's network namespace.

An HTTP probe registers the same shape as an ``http`` step (status, headers, text, json,
elapsed), so runbooks can compare what the operator and the pod see.
"""

from __future__ import annotations

from typing import Any

from kdiag.language.durations import parse_duration
from kdiag.steps.base import StepContext, StepFailed, StepOutcome, StepType
from kdiag.steps.http import HTTP_REQUEST_SCHEMA, check_status, request_body, response_result

_HTTP_FIELDS = {k: v for k, v in HTTP_REQUEST_SCHEMA["properties"].items()
                if k not in ("verify", "follow_redirects")}
_HTTP_FIELDS["verify"] = {"type": "boolean", "description": "HTTPS: check the certificate "
                          "with the target's own CA bundle, as the app would (default false)."}


class ProbeStep(StepType):
    kind = "probe"
    summary = "Send an HTTP request, open a TCP connection or resolve a name from inside the target."
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **_HTTP_FIELDS,
            "url": {"type": "string", "description": "HTTP probe: the URL."},
            "tcp": {"description": "TCP probe: connect to HOST:PORT.", "anyOf": [
                {"type": "string", "pattern": r"^.+:[0-9]{1,5}$", "title": "HOST:PORT"},
                {"$ref": "#/$defs/template"}]},
            "send": {"type": "string", "description": "TCP probe: text sent once connected "
                     "(e.g. \"PING\\r\\n\")."},
            "expect": {"type": "string", "description": "TCP probe: read the reply until it "
                       "holds this text; fail if it never does (result: text)."},
            "dns": {"type": "string", "description": "DNS probe: resolve this name."},
            "bypass_redirect": {"type": "boolean", "description": "Not caught by this "
                                "session's outgoing redirects (default false)."},
        },
        "oneOf": [{"required": ["url"]}, {"required": ["tcp"]}, {"required": ["dns"]}],
        "dependentRequired": {"send": ["tcp"], "expect": ["tcp"]},
    }
    example = "probe:\n  url: http://payments:8080/health\nregister: from_pod"
    needs_target = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        manager = ctx.target().manager
        timeout = parse_duration(body.get("timeout", 5))
        bypass = bool(body.get("bypass_redirect", False))
        if "url" in body:
            data, headers = request_body(body)
            probe = manager.probe_http(str(body["url"]), method=str(body.get("method", "GET")),
                                       headers=headers, body=data or b"", timeout=timeout,
                                       bypass_redirect=bypass,
                                       verify=bool(body.get("verify", False)))
            if probe.error:
                raise StepFailed(f"probe {body['url']}: {probe.error}")
            result = response_result(probe.status, probe.headers, probe.body, probe.elapsed,
                                     str(body["url"]))
            ctx.output(f"{body.get('method', 'GET')} {body['url']} -> {probe.status}\n", "probe")
            return check_status(result, body.get("expect_status"))
        if "tcp" in body:
            host, _, port = str(body["tcp"]).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise StepFailed(f"probe tcp: {body['tcp']!r} is not HOST:PORT")
            probe = manager.probe_tcp(host, int(port), timeout=timeout, bypass_redirect=bypass,
                                      send=str(body.get("send", "")).encode(),
                                      expect=str(body.get("expect", "")).encode())
        else:
            probe = manager.probe_dns(str(body["dns"]), timeout=timeout)
        result = {"ok": probe.ok, "error": probe.error, "elapsed": probe.elapsed,
                  "addresses": probe.addresses, "text": probe.text}
        what = body.get("tcp") or body.get("dns")
        ctx.output(f"{what}: {'ok' if probe.ok else probe.error}"
                   + (f" {', '.join(probe.addresses)}" if probe.addresses else "") + "\n", "probe")
        if not probe.ok:
            return StepOutcome(ok=False, result=result, message=f"probe {what}: {probe.error}")
        return StepOutcome(result=result)

    def describe(self, body: Any) -> str:
        if not isinstance(body, dict):
            return ""
        if "url" in body:
            return f"{str(body.get('method', 'GET')).upper()} {body['url']}"
        return f"tcp {body['tcp']}" if "tcp" in body else f"dns {body.get('dns', '')}"


STEP = ProbeStep()
