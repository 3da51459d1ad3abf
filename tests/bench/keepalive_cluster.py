"""Keep-alive requests through a header-filtered redirect on the local cluster.

The bench pod runs the node benchmark's HTTP/1.1 app (``manager_peers`` ``httpapp``) on two
ports in a container of its own. This machine (the node) sends GETs over one keep-alive
connection to the pod's IP: on one port under a header-filtered incoming redirect (requests
without the header: the manager's router sends each to the app), on the other port straight
to the app; rounds take turns and the best of each side counts, as in node mode
(``manager.header_filter_keepalive_ratio``). The node's own connections are redirected here
(no ``skip_sources``), as ``probes: redirect`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.bench.manager_peers import PEER, keepalive_best

FILTERED_PORT, PLAIN_PORT = 9310, 9311
REQUESTS = 400
ROUNDS = 5
HEADER = ("X-Kdiag-Session", "bench")
FIGURES = ("cluster.header_filter_keepalive_rps", "cluster.header_filter_keepalive_ratio")


def container(image: str) -> dict[str, Any]:
    """The bench pod's container with the keep-alive app on both ports (stdin open: the app
    runs until it ends)."""
    return {"name": "http", "image": image, "imagePullPolicy": "Never", "stdin": True,
            "command": ["python3", "-c", PEER, "httpapp", f"0.0.0.0:{FILTERED_PORT}",
                        f"0.0.0.0:{PLAIN_PORT}"]}


def run(record: Callable[..., None], session: Any, pod_ip: str) -> None:
    """Record the requests/s through the filtered port and its ratio to the plain port."""
    from kdiag.session.results import RedirectSpec

    handle = session.manager.redirect(
        RedirectSpec("incoming", [FILTERED_PORT], header=HEADER), ("127.0.0.1", 1))
    try:
        direct, via = keepalive_best(None, pod_ip, PLAIN_PORT, FILTERED_PORT, REQUESTS, ROUNDS)
    finally:
        handle.close()
    record("cluster.header_filter_keepalive_rps", via, "req/s", "", direct)
    record("cluster.header_filter_keepalive_ratio", via / direct, "x", ">= 0.5", direct,
           sides=(f"requests/s of {REQUESTS} GETs over one keep-alive connection (http.client) "
                  "from the node to a pod's app port under a header-filtered incoming redirect, "
                  "without the header (the manager's router sends them to the app) ÷ the same "
                  f"to another port of the same app without a redirect; best of {ROUNDS} "
                  "rounds each, taking turns"))
