"""``http``: an HTTP request from the operator's machine."""

from __future__ import annotations

import json
import time
from typing import Any

from kdiag.language.durations import parse_duration
from kdiag.steps.base import StepContext, StepFailed, StepOutcome, StepType

MAX_BODY = 8 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0

HTTP_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url"],
    "properties": {
        "url": {"type": "string", "description": "The URL, e.g. http://localhost:8080/health."},
        "method": {"type": "string", "description": "GET (default), POST, ..."},
        "headers": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
        "body": {"type": "string", "description": "The request body as text."},
        "json": {"description": "A request body sent as JSON."},
        "timeout": {"$ref": "#/$defs/duration", "description": "Default 30s."},
        "verify": {"type": "boolean", "description": "Verify TLS certificates (default true)."},
        "follow_redirects": {"type": "boolean", "description": "Default true."},
        "expect_status": {
            "anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}],
            "description": "Fail the step unless the status is (one of) this.",
        },
    },
}
"""The request fields, shared by ``http`` and the in-target ``probe``."""


def response_result(status: int, headers: dict[str, str], raw: bytes, elapsed: float,
                    url: str) -> dict[str, Any]:
    """The registered shape of an HTTP response (also used by ``probe``)."""
    text = raw.decode("utf-8", "replace")
    parsed: Any = None
    if text.strip()[:1] in ("{", "["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    return {"status": status, "headers": {k.lower(): v for k, v in headers.items()},
            "text": text, "json": parsed, "elapsed": round(elapsed, 4), "url": url}


def check_status(result: dict[str, Any], expect: Any) -> StepOutcome:
    """Fail the outcome when ``expect_status`` is set and the status is not in it."""
    if expect is None:
        return StepOutcome(result=result)
    allowed = expect if isinstance(expect, list) else [expect]
    if result["status"] in allowed:
        return StepOutcome(result=result)
    want = " or ".join(str(a) for a in allowed)
    return StepOutcome(ok=False, result=result, message=f"status {result['status']}, expected {want}")


def request_body(body: dict[str, Any]) -> tuple[bytes | None, dict[str, str]]:
    """The encoded body and headers of a request spec (JSON bodies get a content type)."""
    headers = {str(k): str(v) for k, v in (body.get("headers") or {}).items()}
    if "json" in body:
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(body["json"]).encode(), headers
    if "body" in body:
        return str(body["body"]).encode(), headers
    return None, headers


class HttpStep(StepType):
    kind = "http"
    summary = "Send an HTTP request from the operator's machine."
    schema = HTTP_REQUEST_SCHEMA
    example = ("http:\n  url: http://localhost:8080/api/orders\n  method: POST\n"
               "  json: {item: 42}\nregister: resp\nassert: [resp.status == 201]")

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        import ssl
        import urllib.error
        import urllib.request

        data, headers = request_body(body)
        method = str(body.get("method", "GET")).upper()
        url = str(body["url"])
        timeout = parse_duration(body.get("timeout", DEFAULT_TIMEOUT))
        remaining = ctx.remaining()
        if remaining is not None:
            timeout = min(timeout, max(remaining, 0.001))
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        handlers: list[Any] = []
        if not body.get("verify", True):
            handlers.append(urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
        if not body.get("follow_redirects", True):
            handlers.append(_no_redirect_handler())
        opener = urllib.request.build_opener(*handlers)
        started = time.monotonic()
        try:
            with opener.open(request, timeout=timeout) as response:
                raw = response.read(MAX_BODY)
                status, response_headers = response.status, dict(response.headers.items())
        except urllib.error.HTTPError as exc:  # a status >= 400 is still a response
            raw, status, response_headers = exc.read(MAX_BODY), exc.code, dict(exc.headers.items())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StepFailed(f"{method} {url}: {reason}") from None
        result = response_result(status, response_headers, raw, time.monotonic() - started, url)
        ctx.output(f"{method} {url} -> {status} ({len(raw)} bytes)\n", "http")
        return check_status(result, body.get("expect_status"))

    def describe(self, body: Any) -> str:
        if not isinstance(body, dict):
            return ""
        return f"{str(body.get('method', 'GET')).upper()} {body.get('url', '')}"


def _no_redirect_handler() -> Any:
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return NoRedirect()


STEP = HttpStep()
