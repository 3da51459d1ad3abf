"""Cluster Service names for one local process (kubefwd, scoped to a process).

Each Service asked for (a list, or every Service of a namespace: :mod:`.services`) gets a
loopback address of its own, ``127.77.x.y``, and a hosts file names it there as ``svc``,
``svc.ns``, ``svc.ns.svc`` and ``svc.ns.svc.<cluster domain>`` (:mod:`.hosts`); on that address
each of the Service's TCP ports is forwarded to a running pod behind it through the API server
(:mod:`.forwards`, on :class:`kdiag.kube.portforward.PortForwarder`). The process sees that
hosts file at ``/etc/hosts`` in its own mount namespace (:mod:`kdiag.launch`): nothing else on
this machine resolves the names or changes. ``run: {from_target: {names: ...}}`` uses it;
``kdiag connect -- COMMAND`` and a ``run`` step's ``connect:`` use it without a target
(:mod:`.command`).
"""
