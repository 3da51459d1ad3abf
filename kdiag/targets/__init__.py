"""Target backends: where the manager runs and how kdiag talks to it.

``base`` defines the interface; ``node`` runs the manager beside a host process. Import the
backends directly (they are not imported here, to keep the CLI's startup light).
"""

from .base import Target, TargetError, TargetSession

__all__ = ["Target", "TargetError", "TargetSession"]
