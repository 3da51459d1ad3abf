# kdiag manager image: the in-pod agent (manager/, `python -m kdiag_manager`), the `enter`
# helper (scratch-shell/) and the tools the manager drives (iptables/ip6tables, tcpdump,
# busybox) — and nothing else: the final stage starts FROM scratch and holds only the files
# image/assemble.py picks (python3 with the part of its standard library the manager imports,
# the manager's packages, the tools and the shared libraries they load).
#
# Build context: the repository root. Plain `docker build` (no BuildKit features needed),
# `podman build` and `buildah bud` work; so does a multi-platform build, as nothing here names
# an architecture (the build stage compiles `enter` and finds every path itself):
#     docker build -t registry.example/kdiag/manager:0.1.0 .
#     docker buildx build --platform linux/amd64,linux/arm64 -t ... --push .
#
# The local test cluster builds this same file without Docker (cluster/images/ocibuild.py).
# That builder supports FROM (debian:bookworm(-slim), scratch or an earlier stage, `AS
# NAME`), RUN, COPY (--chmod, --from=STAGE), ENV, WORKDIR, ENTRYPOINT, CMD, LABEL, EXPOSE and
# USER, and fails on anything else — keep to that subset, or teach it.

FROM debian:bookworm-slim AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv iptables tcpdump busybox-static gcc libc6-dev make \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1

# A venv with the manager's dependencies (and what builds it) first, read from its
# pyproject.toml: this layer stays cached while only the manager's code changes.
COPY manager/pyproject.toml /src/manager/pyproject.toml
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -c "import tomllib; p = tomllib.load(open('/src/manager/pyproject.toml', 'rb')); print('\n'.join(p['project']['dependencies'] + p['build-system']['requires']))" \
      > /tmp/requirements.txt \
 && /opt/venv/bin/pip install -q -r /tmp/requirements.txt

COPY image/assemble.py /src/image/assemble.py
COPY scratch-shell /src/scratch-shell
RUN make -s -C /src/scratch-shell

# The manager's own code last, in one step with the assembly: a change to manager/ re-runs only
# this (the layers above stay cached).
COPY manager /src/manager
RUN /opt/venv/bin/pip install -q --no-deps --no-build-isolation /src/manager \
 && python3 /src/image/assemble.py --venv /opt/venv --enter /src/scratch-shell/build/enter \
      --out /rootfs --check

FROM scratch
COPY --from=build /rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title="kdiag manager" \
      org.opencontainers.image.description="kdiag's in-pod agent: redirect, exec, ps, net, copy, capture, probe"
ENTRYPOINT ["/usr/bin/python3", "-m", "kdiag_manager"]
