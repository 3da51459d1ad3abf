"""Checking, before anything changes, that a run can work: ``kdiag doctor`` and the check
``kdiag run`` makes first.

- :mod:`.needs` — the one table of what each target, way in and step type needs of the cluster
  (RBAC verbs), used by both, so they can never disagree;
- :mod:`.demand` — what a runbook (or the command line) asks for: its target and its steps;
- :mod:`.access` — SelfSubjectAccessReviews for those verbs;
- :mod:`.podsecurity` — a namespace's Pod Security level against the manager's security context;
- :mod:`.cluster` — the cluster checks (reachable and its version, ephemeral containers, RBAC,
  Pod Security, the manager image); :mod:`.host` — node mode's (root, iptables, the kernel);
- :mod:`.checks` — one check's result; :mod:`.table` — a table or JSON of them;
- :mod:`.gate` — the check before ``kdiag run``.
"""
