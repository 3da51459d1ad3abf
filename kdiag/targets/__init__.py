"""Target backends: where the manager runs and how kdiag talks to it.

``base`` defines the interface; ``node`` runs the manager beside a host process. Import the
backends directly (they are not imported here, to keep the CLI's startup light).
"""

from kdiag.errors import TargetError

from .base import Target, TargetSession

__all__ = ["Target", "TargetError", "TargetSession"]
