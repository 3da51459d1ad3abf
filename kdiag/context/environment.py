"""The target's environment for a local command: which variables, and what in them is secret."""

from __future__ import annotations

import fnmatch
import re

from .secrets import NO_SECRET_WORDS, public_variable, service_discovery


def select(variables: list[tuple[str, str]], include: tuple[str, ...],
           exclude: tuple[str, ...]) -> dict[str, str]:
    """The variables matching an ``include`` pattern and no ``exclude`` one, in order (of a
    name given twice, the first: the one ``getenv`` returns)."""
    chosen: dict[str, str] = {}
    for name, value in variables:
        if name in chosen:
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in include) \
                and not any(fnmatch.fnmatchcase(name, p) for p in exclude):
            chosen[name] = value
    return chosen


def point_at(env: dict[str, str], addresses: dict[str, str]) -> dict[str, str]:
    """Service-discovery variables (``API_SERVICE_HOST=10.96.0.12``) naming a Service's
    cluster IP, pointed at its local address instead (``addresses``: cluster IP → local)."""
    if not addresses:
        return env
    pattern = re.compile("|".join(re.escape(ip) for ip in sorted(addresses, key=len,
                                                                  reverse=True)))
    changed = dict(env)
    for name, value in env.items():
        if service_discovery(name, value):
            changed[name] = pattern.sub(lambda m: addresses[m.group(0)], value)
    return changed


def secret_values(env: dict[str, str], public: tuple[str, ...],
                  shown: frozenset[str] = frozenset()) -> list[str]:
    """The values to mask: all but the public ones, those carrying no secret and those equal
    to something kdiag shows anyway (``shown``: the pod's name, namespace...)."""
    return [value for name, value in env.items()
            if not public_variable(name, value, public) and value not in shown
            and value.strip().lower() not in NO_SECRET_WORDS]
