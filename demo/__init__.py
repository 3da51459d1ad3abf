"""The demo: a sample app in its own network namespace, debugged by ``runbooks/demo.yaml``."""
