"""The ``from_target`` mapping: which parts of the target's context a local command gets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_EXCLUDE = ("PATH", "HOME", "HOSTNAME", "PWD", "OLDPWD", "SHLVL", "TERM", "_")
"""Variables describing the container rather than the app: left out unless ``exclude`` is
given (which replaces this list)."""
DEFAULT_MAX_BYTES = 64 << 20
"""The most bytes of files copied for one command, all files together."""
MAX_ENTRIES = 10_000
"""The most entries a copied folder may hold."""

_PATTERNS = {"type": "array", "items": {"type": "string", "minLength": 1}}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Start the command with the target container's context (each part opt-in).",
    "properties": {
        "env": {"anyOf": [
            {"type": "boolean"},
            {"type": "object", "additionalProperties": False, "properties": {
                "include": {**_PATTERNS, "description": "Only variables matching one of these "
                            "names or shell patterns (default all)."},
                "exclude": {**_PATTERNS, "description": "Leave these out (default: "
                            + ", ".join(DEFAULT_EXCLUDE) + ")."},
            }},
        ], "description": "The environment of the target's main process as it was started "
                          "(true, or include/exclude patterns); the step's env wins."},
        "files": {**_PATTERNS, "description": "Files and folders of the target's root, copied "
                  "read-only and shown at their original paths."},
        "names": {"anyOf": [{"type": "boolean"}, _PATTERNS],
                  "description": "Cluster Service names (true: every Service of the target's "
                                 "namespace; or a list: NAME or NAME.NAMESPACE) resolve to local "
                                 "forwards to them, for this command only."},
        "public": {**_PATTERNS, "description": "Variable names (or patterns) and file paths "
                   "(a folder ending in /) whose values are not secret."},
        "view": {"enum": ["auto", "namespace", "remap"], "description": "How the command sees "
                 "the files: a private mount namespace, or in $KDIAG_TARGET_ROOT (remap); "
                 "default auto."},
        "max_bytes": {"type": ["integer", "string"], "description": "Most bytes of files "
                      "copied, all together (default 64MiB)."},
    },
}


@dataclass(frozen=True)
class FromTarget:
    """A parsed ``from_target`` mapping."""

    env: bool = False
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    files: tuple[str, ...] = ()
    names: bool = False
    services: tuple[str, ...] = ()
    """Named Services (empty with ``names``: every Service of the target's namespace)."""
    public: tuple[str, ...] = ()
    view: str = "auto"
    max_bytes: int = DEFAULT_MAX_BYTES
    overrides: dict[str, str] = field(default_factory=dict)
    """Local values that win over the target's (the step's ``env``)."""

    @property
    def anything(self) -> bool:
        """Whether any part is asked for."""
        return self.env or bool(self.files) or self.names

    def needs_view(self) -> bool:
        """Whether the command needs its own view of the files (files or names)."""
        return bool(self.files) or self.names


def parse(body: dict[str, Any], overrides: dict[str, str] | None = None) -> FromTarget:
    """``from_target``'s rendered, schema-checked mapping (ValueError for a bad value)."""
    from kdiag.session.output import parse_size

    env, names = body.get("env", False), body.get("names", False)
    patterns = env if isinstance(env, dict) else {}
    return FromTarget(
        env=env is True or isinstance(env, dict),
        include=tuple(patterns.get("include") or ("*",)),
        exclude=tuple(patterns.get("exclude", DEFAULT_EXCLUDE)),
        files=tuple(_absolute(str(p)) for p in body.get("files") or ()),
        names=names is True or bool(isinstance(names, list) and names),
        services=tuple(str(n) for n in names) if isinstance(names, list) else (),
        public=tuple(str(p) for p in body.get("public") or ()),
        view=str(body.get("view") or "auto"),
        max_bytes=DEFAULT_MAX_BYTES if body.get("max_bytes") is None
        else parse_size(body["max_bytes"]),
        overrides=dict(overrides or {}))


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"files: {path!r} is not an absolute path in the target")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"files: {path!r} has '..' in it")
    if not parts:
        raise ValueError("files: '/' is the whole root: name files or folders in it")
    return "/" + "/".join(parts) + ("/" if path.endswith("/") else "")
