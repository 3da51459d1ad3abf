"""The command line: ``kdiag run|validate|schema`` and the ad-hoc commands."""
