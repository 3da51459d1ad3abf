"""``copy``: files out of, or into, the target's root filesystem (no tar or shell needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdiag.steps.base import StepContext, StepFailed, StepOutcome, StepType

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class CopyStep(StepType):
    kind = "copy"
    summary = ("Download a file from the target into the artifacts, or upload one into the "
               "target; sizes and permissions kept.")
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "download": {"type": "string", "description": "A path in the target to fetch."},
            "upload": {"type": "string", "description": "A local file to send (relative: to "
                       "the runbook)."},
            "to": {"type": "string", "description": "download: a local path (default: the "
                   "artifacts); upload: the path in the target (required)."},
            "mode": {"type": "string", "pattern": "^0?[0-7]{3,4}$", "title": "an octal mode",
                     "description": "upload: the file mode, e.g. 0644 (default: the local one)."},
            "make_parents": {"type": "boolean", "description": "upload: create missing folders."},
            "max_bytes": {"type": "integer", "minimum": 1,
                          "description": "Refuse larger files (default 256 MiB)."},
        },
        "oneOf": [{"required": ["download"]}, {"required": ["upload"]}],
    }
    example = "copy:\n  download: /etc/app/config.yaml\nregister: config"
    needs_target = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        manager = ctx.target().manager
        limit = int(body.get("max_bytes", DEFAULT_MAX_BYTES))
        if "download" in body:
            remote = str(body["download"])
            local = Path(body["to"]) if body.get("to") else ctx.artifact_path(Path(remote).name
                                                                               or "file")
            if not local.is_absolute() and body.get("to"):
                local = ctx.runbook_dir / local
            info = manager.copy_from(remote, local, max_bytes=limit)
            ctx.output(f"{remote} -> {local} ({info.size} bytes, mode {info.mode & 0o7777:o})\n")
            return StepOutcome(result=_file_result(info, local), artifacts=[str(local)])
        if not body.get("to"):
            raise StepFailed("upload needs 'to': the path in the target")
        source = Path(str(body["upload"]))
        if not source.is_absolute():
            source = ctx.runbook_dir / source
        if not source.is_file():
            raise StepFailed(f"no such local file: {source}")
        if source.stat().st_size > limit:
            raise StepFailed(f"{source} is {source.stat().st_size} bytes, over max_bytes {limit}")
        mode = int(str(body["mode"]), 8) if "mode" in body else None
        info = manager.copy_to(source, str(body["to"]), mode=mode,
                               make_parents=bool(body.get("make_parents", False)))
        ctx.output(f"{source} -> {info.path} ({info.size} bytes, mode {info.mode & 0o7777:o})\n")
        return StepOutcome(result=_file_result(info, source))

    def describe(self, body: Any) -> str:
        if not isinstance(body, dict):
            return ""
        if "download" in body:
            return f"download {body['download']}"
        return f"upload {body.get('upload')} -> {body.get('to')}"


def _file_result(info: Any, local: Path) -> dict[str, Any]:
    return {"path": info.path, "local": str(local), "size": info.size,
            "mode": f"{info.mode & 0o7777:04o}", "uid": info.uid, "gid": info.gid}


STEP = CopyStep()
