"""What read from a target is secret: everything, unless the runbook calls it ``public``.

``public`` holds variable names or shell patterns (``LOG_LEVEL``, ``FEATURE_*``) and file
paths (a file, or a folder ending in ``/`` for all it holds). Also public: the service-discovery
variables Kubernetes adds to every container (``API_SERVICE_HOST=10.96.0.12``,
``API_PORT=tcp://10.96.0.12:80``, ...), when their value has exactly that shape — anyone who
can list the namespace's Services knows them, and masking every cluster IP would wreck reports.
"""

from __future__ import annotations

import fnmatch
import re

NO_SECRET_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "none", ""})
"""Values that carry no secret: masking them would mask every ``true`` in every report."""
WHOLE_FILE_LIMIT = 1 << 20
"""Files up to this size are masked as a whole (and line by line); larger ones only by the
values of their ``key = value`` lines (masking a huge text costs much and finds little)."""
MAX_FILE_VALUES = 10_000
"""Values of ``key = value`` lines taken from one file, at most."""
_KEY_VALUE = re.compile(r"""\s*(?:export\s+)?["']?[\w.-]+["']?\s*[:=]\s*(.*?)\s*,?\s*""")

_ADDRESS = r"[0-9a-fA-F:.]+"
_DISCOVERY = (
    (re.compile(r"[A-Z0-9_]+_SERVICE_HOST"), re.compile(_ADDRESS)),
    (re.compile(r"[A-Z0-9_]+_SERVICE_PORT(_[A-Z0-9_]+)?"), re.compile(r"[0-9]{1,5}")),
    (re.compile(r"[A-Z0-9_]+_PORT"), re.compile(rf"(tcp|udp|sctp)://\[?{_ADDRESS}\]?:[0-9]+")),
    (re.compile(r"[A-Z0-9_]+_PORT_[0-9]+_(TCP|UDP|SCTP)"),
     re.compile(rf"(tcp|udp|sctp)://\[?{_ADDRESS}\]?:[0-9]+")),
    (re.compile(r"[A-Z0-9_]+_PORT_[0-9]+_(TCP|UDP|SCTP)_PROTO"), re.compile(r"tcp|udp|sctp")),
    (re.compile(r"[A-Z0-9_]+_PORT_[0-9]+_(TCP|UDP|SCTP)_PORT"), re.compile(r"[0-9]{1,5}")),
    (re.compile(r"[A-Z0-9_]+_PORT_[0-9]+_(TCP|UDP|SCTP)_ADDR"), re.compile(_ADDRESS)),
)


def service_discovery(name: str, value: str) -> bool:
    """Whether ``name=value`` is a service-discovery variable Kubernetes adds."""
    return any(n.fullmatch(name) and v.fullmatch(value) for n, v in _DISCOVERY)


def public_variable(name: str, value: str, public: tuple[str, ...]) -> bool:
    """Whether the variable's value may be shown."""
    return service_discovery(name, value) or any(
        fnmatch.fnmatchcase(name, pattern) for pattern in public if not pattern.startswith("/"))


def public_file(path: str, public: tuple[str, ...]) -> bool:
    """Whether the contents of the target's file ``path`` may be shown."""
    for entry in public:
        if not entry.startswith("/"):
            continue
        if entry.endswith("/") and path.startswith(entry):
            return True
        if fnmatch.fnmatchcase(path, entry):
            return True
    return False


def file_secrets(text: str) -> tuple[list[str], bool]:
    """What to mask of a file's contents: the whole of it (masked as written and line by line)
    when it is not too large, and the value of each ``key = value``, ``key: value`` or
    ``"key": "value",`` line (quotes taken off); and whether all of it is masked whole."""
    whole = len(text) <= WHOLE_FILE_LIMIT
    found = [text] if whole else []
    for line in text.splitlines():
        match = _KEY_VALUE.fullmatch(line)
        if match is None:
            continue
        value = match.group(1).strip().strip("'\"")
        if value.lower() not in NO_SECRET_WORDS and value not in ("{", "[", "|", ">"):
            found.append(value)
            if len(found) > MAX_FILE_VALUES:
                break
    return found, whole
