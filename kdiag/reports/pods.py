"""The per-pod lines of a step that ran on every pod of a ``pick: all`` target (a fan-out,
see :mod:`kdiag.engine.fanout`): one line per pod, for every reporter."""

from __future__ import annotations

from typing import Any

_DETAILS = (("rc", "exit code {}"), ("status", "HTTP {}"), ("packets", "{} packets"))


def pod_lines(result: dict[str, Any]) -> list[str]:
    """``api-7d9-x: passed (exit code 0)``, ``api-7d9-y: failed: exit code 1``, ``api-7d9-z:
    gone (pod shop/api-7d9-z deleted)`` — empty for a step that did not fan out."""
    pods = result.get("pods")
    if not isinstance(pods, dict) or "all_ok" not in result:
        return []
    lines = []
    for name, entry in pods.items():
        if not isinstance(entry, dict):
            continue
        if entry.get("gone"):
            lines.append(f"{name}: gone ({entry.get('gone_reason') or 'went away'})")
            continue
        details = [text.format(entry[key]) for key, text in _DETAILS
                   if entry.get(key) not in (None, "")]
        stats = entry.get("stats")
        if isinstance(stats, dict) and "to_operator" in stats:
            details.append(f"{stats['to_operator']} connections to the operator")
        shown = f" ({', '.join(details)})" if details else ""
        if entry.get("ok"):
            lines.append(f"{name}: passed{shown}")
        else:
            status = "error" if entry.get("error") else "failed"
            lines.append(f"{name}: {status}: {entry.get('message') or status}{shown}")
    return lines
