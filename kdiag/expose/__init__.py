"""A port of this machine as a Service in the cluster (kt-connect's *preview*, kubectl-tunnel's
*expose*): kdiag creates a small pod running the manager and a Service of the chosen name in
front of it (:mod:`.objects`), both labelled and kept alive as :mod:`kdiag.kube.owned` says, and
carries each connection the pod takes on its port to the local address over the session's one
port-forward (a redirect of the pod's own port: :mod:`.exposure`). The objects are deleted when
the exposure stops, and by ``kdiag gc`` (or the next run's collection) when the laptop vanished;
the pod also ends by itself once no redirect has run for a few seconds, so a Service left
behind has no endpoint: connections to it are refused, never left hanging.
"""
