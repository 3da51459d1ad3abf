"""The user's settings file: ``~/.config/kdiag/config.yaml`` (``$XDG_CONFIG_HOME/kdiag/``).

```yaml
manager_image: registry.example/platform/kdiag-manager   # a repository (kdiag's version is
                                                         # the tag) or a full reference
manager_pull_policy: IfNotPresent                        # Always, IfNotPresent or Never
```

Flags, the runbook and the environment win over it (see :mod:`kdiag.kube.imageref`). A missing
file is no settings; a broken one is a usage error naming the file (exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kdiag.errors import UsageError

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
SETTINGS = {
    "manager_image": "the manager image: a repository (kdiag's version is the tag) or a "
                     "full reference",
    "manager_pull_policy": f"the manager's image pull policy ({', '.join(PULL_POLICIES)})",
}
"""Every setting the file may hold, with what it means."""


def config_path() -> Path:
    """Where the settings file is (it may not exist)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "kdiag" / "config.yaml"


def load() -> dict[str, str]:
    """The settings in the file ({} when there is none); UsageError if it is broken."""
    path = config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    import yaml

    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UsageError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return _checked(path, data)


def _checked(path: Path, data: dict[Any, Any]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for key, value in data.items():
        if key not in SETTINGS:
            raise UsageError(f"{path}: unknown setting {key!r} (known: {', '.join(SETTINGS)})")
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"{path}: {key} must be a non-empty string")
        settings[key] = value.strip()
    policy = settings.get("manager_pull_policy")
    if policy is not None and policy not in PULL_POLICIES:
        raise UsageError(f"{path}: manager_pull_policy must be one of {', '.join(PULL_POLICIES)}"
                         f", not {policy!r}")
    return settings
