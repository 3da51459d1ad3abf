"""Kubernetes support: kubeconfig loading, pod resolution, manager injection, port-forward, logs.

Everything here imports the ``kubernetes`` client lazily (it costs ~200 ms): importing this
package, or any of its modules, must stay cheap for ``kdiag --help`` and node-mode runs.
"""
