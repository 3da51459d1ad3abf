"""Ad-hoc commands (``kdiag shell|ps|redirect|forward|logs``): one-off work on a pod or a host
process without writing a runbook. They use the same targets and manager client as the steps.
"""
