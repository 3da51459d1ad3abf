"""``copy``: files and folders out of, or into, the target's root filesystem (no tar or shell
needed). A folder is copied file by file (symlinks and special files are listed as not copied)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdiag.steps.base import StepContext, StepFailed, StepOutcome, StepType

if TYPE_CHECKING:  # gRPC loads only when a copy runs (validate's start-up stays small)
    from kdiag.session.trees import TreeCopy

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class CopyStep(StepType):
    kind = "copy"
    summary = ("Download a file or folder from the target into the artifacts, or upload one "
               "into the target; sizes and permissions kept.")
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "download": {"type": "string", "description": "A file or folder in the target to "
                         "fetch."},
            "upload": {"type": "string", "description": "A local file or folder to send "
                       "(relative: to the runbook)."},
            "to": {"type": "string", "description": "download: a local path (default: the "
                   "artifacts; on every pod of a pick: all target, DIR/POD/NAME for DIR/NAME); "
                   "upload: the path in the target (required)."},
            "mode": {"type": "string", "pattern": "^0?[0-7]{3,4}$", "title": "an octal mode",
                     "description": "upload: the file mode, e.g. 0644 (default: the local one)."},
            "make_parents": {"type": "boolean", "description": "upload: create missing folders."},
            "max_bytes": {"type": "integer", "minimum": 1,
                          "description": "Refuse larger files, or folders holding more "
                          "(default 256 MiB)."},
        },
        "oneOf": [{"required": ["download"]}, {"required": ["upload"]}],
    }
    example = "copy:\n  download: /etc/app/config.yaml\nregister: config"
    needs_target = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        from kdiag.errors import ManagerError
        from kdiag.session.trees import download_tree, upload_tree

        manager = ctx.target().manager
        limit = int(body.get("max_bytes", DEFAULT_MAX_BYTES))
        if "download" in body:
            remote = str(body["download"])
            local = Path(body["to"]) if body.get("to") else ctx.artifact_path(Path(remote).name
                                                                               or "file")
            if not local.is_absolute() and body.get("to"):
                local = ctx.runbook_dir / local
            pod = getattr(ctx, "replica", "")
            if pod and body.get("to"):  # on every pod at once: each its own, TO/../POD/NAME
                local = local.parent / pod / local.name
            local.parent.mkdir(parents=True, exist_ok=True)  # `to` in a folder not made yet
            try:
                info = manager.copy_from(remote, local, max_bytes=limit)
            except ManagerError as exc:
                if "is a directory" not in str(exc):
                    raise
                return _folder(download_tree(manager, remote, local, max_file_bytes=limit,
                                             max_total_bytes=limit), remote, local, ctx)
            ctx.output(f"{remote} -> {local} ({info.size} bytes, mode {info.mode & 0o7777:o})\n")
            return StepOutcome(result=_file_result(info, local), artifacts=[str(local)])
        if not body.get("to"):
            raise StepFailed("upload needs 'to': the path in the target")
        source = Path(str(body["upload"]))
        if not source.is_absolute():
            source = ctx.runbook_dir / source
        if source.is_dir():
            tree = upload_tree(manager, source, str(body["to"]), max_total_bytes=limit)
            return _folder(tree, str(body["to"]), source, ctx)
        if not source.is_file():
            raise StepFailed(f"no such local file or folder: {source}")
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


def _folder(tree: TreeCopy, remote: str, local: Path, ctx: StepContext) -> StepOutcome:
    left = f", {len(tree.not_copied)} not copied" if tree.not_copied else ""
    ctx.output(f"folder {remote} <-> {local}: {len(tree.files)} files, {tree.size} bytes{left}\n")
    return StepOutcome(result={"path": remote, "local": str(local), **tree.result()},
                       artifacts=[str(local)])


def _file_result(info: Any, local: Path) -> dict[str, Any]:
    return {"path": info.path, "local": str(local), "size": info.size,
            "mode": f"{info.mode & 0o7777:04o}", "uid": info.uid, "gid": info.gid}


STEP = CopyStep()
