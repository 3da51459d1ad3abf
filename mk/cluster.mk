# Local single-node Kubernetes for the cluster end-to-end tests (see cluster/README.md).
# Included by the root Makefile. Everything it makes lives in the git-ignored .cluster/.
# Needs root (containers, mounts, bridge networking); installs its Debian packages itself.

.PHONY: cluster-build cluster-images cluster-up cluster-down cluster-status cluster-check-clean e2e

# kube-apiserver, kubelet, kube-controller-manager, kube-scheduler, kube-proxy and kubectl in
# one binary (cluster/go.mod), and CoreDNS (cluster/coredns/go.mod), built once and cached in
# .cluster/bin/ (rebuilt only when their inputs change).
cluster-build:
	@bash cluster/build.sh

# OCI image archives in .cluster/images/ (pause, busybox, testapp, and the manager from the
# Dockerfile), each cached by the hash of its inputs.
cluster-images:
	@bash cluster/images/build.sh

# Build what is missing, start etcd, the control plane, kube-proxy, CoreDNS, containerd and
# the kubelet, import the images, and wait until the node is Ready, cluster DNS answers and a
# test pod runs and reaches a Service by name. Leaves a running
# cluster alone (re-imports changed images); a half-started one is torn down first.
cluster-up:
	@bash cluster/up.sh

# Stop everything and remove its processes, mounts, network, iptables rules, cgroups and
# state; then check that nothing is left (keeps the build cache and .cluster/logs/).
cluster-down:
	@bash cluster/down.sh

cluster-status:
	@python3 cluster/ready.py --quick

cluster-check-clean:
	@bash cluster/check-clean.sh

# Cluster end-to-end tests: start the cluster if needed, then run the `cluster` tests.
# The cluster stays up afterwards (re-runs are fast); `make cluster-down` stops it.
e2e: install cluster-up
	$(VENV)/bin/pytest -m cluster tests/cluster
