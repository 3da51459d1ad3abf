"""A pod's log as text, the same whatever the kubernetes client's version.

The API server answers ``pods/log`` with ``text/plain``, but the client's OpenAPI code types it
as ``str`` and "deserializes" it: client 35 (and the versions before it) first tries
``json.loads`` on the body, so a log that is one JSON document (a manager's first line alone,
an app that logged one JSON object) comes back as ``str()`` of the parsed Python value —
``{'a': 1}``, ``True`` for ``true``, ``None`` for ``null``. Taking the raw bytes
(``_preload_content=False``) and decoding them here gives the bytes the container wrote, with
every client. Follow-mode readers (:mod:`kdiag.kube.logs`, the injector's first line) stream
the raw response already.
"""

from __future__ import annotations

from typing import Any


def read_pod_log(core: Any, pod: str, namespace: str, **kwargs: Any) -> str:
    """The log of one container as the container wrote it (UTF-8, bad bytes replaced).

    ``kwargs`` are those of ``CoreV1Api.read_namespaced_pod_log`` (``container``,
    ``tail_lines``, ``timestamps``, ``since_seconds``, ``_request_timeout``...), never
    ``follow``: the whole answer is read before returning.
    """
    resp = core.read_namespaced_pod_log(pod, namespace, _preload_content=False, **kwargs)
    try:
        data: bytes = resp.data
    finally:
        resp.release_conn()
    return data.decode("utf-8", errors="replace")
