# kdiag manager image: the in-pod agent (manager/, `python -m kdiag_manager`), the `enter`
# helper (scratch-shell/) and the tools the manager drives (iptables, tcpdump, busybox).
#
# Build context: the repository root, after `make -C scratch-shell` (the image takes the
# compiled, static scratch-shell/build/enter):
#     make -C scratch-shell && docker build -t kdiag.local/manager:dev .
#
# The local test cluster builds this same file without Docker (cluster/images/ocibuild.py).
# That builder supports only FROM debian:bookworm(-slim), RUN (optionally with
# --mount=type=cache), COPY (optionally --chmod), ENV, WORKDIR, ENTRYPOINT, CMD, LABEL,
# EXPOSE and USER, and fails on anything else — keep to that subset, or teach it.
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv iptables tcpdump busybox-static \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN python3 -m venv /opt/kdiag/venv

COPY scratch-shell/build/enter /usr/local/lib/kdiag/enter
COPY manager /opt/kdiag/src/manager
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/kdiag/venv/bin/pip install --disable-pip-version-check /opt/kdiag/src/manager \
 && rm -rf /opt/kdiag/src

LABEL org.opencontainers.image.title="kdiag manager"
ENTRYPOINT ["/opt/kdiag/venv/bin/python", "-m", "kdiag_manager"]
