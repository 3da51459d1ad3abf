"""Which manager image kdiag injects, and where that choice came from.

First match wins: ``--image`` or the runbook target's ``image``; ``$KDIAG_MANAGER_IMAGE``;
``manager_image`` in the settings file (:mod:`kdiag.userconfig`); else the default,
``kdiag.local/manager:<kdiag's version>`` — a name no public registry serves, so nothing is
pulled from a stranger by accident: build the image (the repository's ``Dockerfile``), push it
to a registry the cluster can pull from, and point kdiag at it. A reference without a tag or
digest (a repository) gets kdiag's version as its tag, so a settings file naming the team's
repository stays right across kdiag upgrades. The pull policy follows the same order
(``--image-pull-policy``/``image_pull_policy``, ``$KDIAG_MANAGER_PULL_POLICY``,
``manager_pull_policy``, else ``IfNotPresent``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from kdiag import __version__

DEFAULT_REPOSITORY = "kdiag.local/manager"
DEFAULT_PULL_POLICY = "IfNotPresent"
IMAGE_ENV = "KDIAG_MANAGER_IMAGE"
PULL_POLICY_ENV = "KDIAG_MANAGER_PULL_POLICY"


@dataclass(frozen=True)
class Chosen:
    """A resolved setting and where it came from (for doctor's report)."""

    value: str
    source: str


def version_tag() -> str:
    """kdiag's version as an image tag (tags allow ``[A-Za-z0-9_.-]``)."""
    return "".join(c if c.isalnum() or c in "_.-" else "-" for c in __version__)[:128]


def default_image() -> str:
    """``kdiag.local/manager:<version>``."""
    return f"{DEFAULT_REPOSITORY}:{version_tag()}"


def with_tag(reference: str) -> str:
    """The reference, with kdiag's version as tag when it names only a repository."""
    if "@" in reference:
        return reference
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last else f"{reference}:{version_tag()}"


def manager_image(explicit: str | None = None) -> Chosen:
    """The image to inject (``explicit``: the flag or the runbook's ``image``)."""
    from kdiag import userconfig

    if explicit:
        return Chosen(with_tag(explicit), "--image / the runbook's target image")
    if os.environ.get(IMAGE_ENV):
        return Chosen(with_tag(os.environ[IMAGE_ENV]), f"${IMAGE_ENV}")
    configured = userconfig.load().get("manager_image")
    if configured:
        return Chosen(with_tag(configured), f"manager_image in {userconfig.config_path()}")
    return Chosen(default_image(), "the default")


def pull_policy(explicit: str | None = None) -> Chosen:
    """The manager's image pull policy."""
    from kdiag import userconfig

    if explicit:
        return Chosen(explicit, "--image-pull-policy / the runbook's image_pull_policy")
    if os.environ.get(PULL_POLICY_ENV):
        return Chosen(os.environ[PULL_POLICY_ENV], f"${PULL_POLICY_ENV}")
    configured = userconfig.load().get("manager_pull_policy")
    if configured:
        return Chosen(configured, f"manager_pull_policy in {userconfig.config_path()}")
    return Chosen(DEFAULT_PULL_POLICY, "the default")


def normalized(reference: str) -> str:
    """The reference as a container runtime lists it (``docker.io/library/x:latest`` for
    ``x``), to compare with a node's image names."""
    name, at, digest = reference.partition("@")
    first, slash, _ = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name if slash else 'library/' + name}"
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return f"{name}{at}{digest}"
