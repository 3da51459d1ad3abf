"""Pod Security admission: a namespace's levels (its ``pod-security.kubernetes.io/*`` labels)
against the security context kdiag gives the manager.

The Pod Security Standards (https://kubernetes.io/docs/concepts/security/pod-security-standards/):
``baseline`` refuses ``privileged`` and any added capability outside a short list, so it refuses
the manager's NET_ADMIN, NET_RAW, SYS_PTRACE and SYS_ADMIN; ``restricted`` allows adding only
NET_BIND_SERVICE and also wants non-root, no privilege escalation, all capabilities dropped and
a seccomp profile. The manager can only run where the level is ``privileged``. The admission
plugin checks ephemeral containers too, so a refusal comes when kdiag injects the manager.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("privileged", "baseline", "restricted")
LABEL = "pod-security.kubernetes.io/"
MODES = ("enforce", "warn", "audit")
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
RESTRICTED_ALSO = ("a root user (restricted wants runAsNonRoot, allowPrivilegeEscalation: "
                   "false, capabilities dropped to ALL and a seccomp profile)")
"""What ``restricted`` refuses in the manager besides its capabilities: it runs as root, to
enter the target's namespaces."""


@dataclass(frozen=True)
class Namespace:
    """A namespace's Pod Security levels by mode (absent: the cluster's default applies)."""

    name: str
    levels: dict[str, str]

    @classmethod
    def from_labels(cls, name: str, labels: dict[str, str] | None) -> Namespace:
        """From the namespace's labels (unknown level values count as ``restricted``, as the
        admission plugin treats them)."""
        levels = {}
        for mode in MODES:
            value = (labels or {}).get(LABEL + mode)
            if value is not None:
                levels[mode] = value if value in LEVELS else "restricted"
        return cls(name, levels)


def violations(level: str, capabilities: tuple[str, ...], privileged: bool) -> list[str]:
    """What ``level`` refuses in a container with that security context ([] when it fits)."""
    if level == "privileged":
        return []
    allowed = BASELINE_CAPABILITIES if level == "baseline" else RESTRICTED_CAPABILITIES
    found = ["privileged: true"] if privileged else []
    extra = [c for c in capabilities if c not in allowed]
    if extra and not privileged:
        found.append(f"added capabilities {', '.join(extra)}")
    if level == "restricted":
        found.append(RESTRICTED_ALSO)
    return found


def fitting_level(capabilities: tuple[str, ...], privileged: bool) -> str:
    """The strictest level that admits such a container."""
    for level in reversed(LEVELS):
        if not violations(level, capabilities, privileged):
            return level
    return "privileged"
