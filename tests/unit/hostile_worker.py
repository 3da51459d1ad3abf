"""The process :class:`tests.unit.capped.Worker` starts: runs cases from standard input (one
JSON request a line) and answers each with its result and what it cost (CPU, wall, peak RSS).

Requests: ``{"op": "cli", "argv": [...]}`` runs ``kdiag`` in this process (its exit code and
output); ``{"op": "render", "text": ..., "scope": {...}, "expression": bool}`` renders with
kdiag's sandbox. Any exception is answered (``raised``), a MemoryError included.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from typing import Any


def _reset_peak() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM, the peak resident size


def _peak_kb() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _cli(argv: list[str]) -> dict[str, Any]:
    from kdiag.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def _render(text: str, scope: dict[str, Any], expression: bool) -> dict[str, Any]:
    from kdiag.language.templating import Renderer, TemplateError

    renderer = Renderer()
    try:
        value = renderer.evaluate(text, scope) if expression else renderer.render_text(text, scope)
    except TemplateError as exc:
        return {"error": str(exc)}
    return {"value": value if isinstance(value, bool | int | float | type(None))
            else str(value)[:10_000], "length": len(str(value))}


def handle(request: dict[str, Any]) -> dict[str, Any]:
    if request["op"] == "cli":
        return _cli(request["argv"])
    return _render(request["text"], request.get("scope", {}), request.get("expression", False))


def main() -> None:
    # Imported once here, not inside the first case's measures.
    import kdiag.cli.validate
    import kdiag.language.sandbox  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        _reset_peak()
        cpu, wall = time.process_time(), time.monotonic()
        try:
            reply = handle(request)
        except BaseException as exc:
            reply = {"raised": f"{type(exc).__name__}: {exc}"[:2000]}
        reply.update(_cpu=time.process_time() - cpu, _wall=time.monotonic() - wall,
                     _rss_kb=_peak_kb())
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
