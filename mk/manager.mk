# Manager: generated gRPC code, the scratch-shell helper (`enter`), and their checks.
# Included by the root Makefile.

# grpcio-tools is pinned so the generated code is byte-for-byte reproducible (CI diffs it).
GRPC_TOOLS_VERSION := 1.85.1
PROTO_SRC := protos/kdiag/manager/v1
PROTO_PKG := kdiag_manager/wire/api/v1
PROTO_OUT := manager

.PHONY: generate generate-check scratch-shell grpc-tools-pinned

grpc-tools-pinned: install
	@$(PY) -c 'import importlib.metadata as m,sys; sys.exit(m.version("grpcio-tools") != "$(GRPC_TOOLS_VERSION)")' \
	  || $(PY) -m pip install -q "grpcio-tools==$(GRPC_TOOLS_VERSION)"

# Virtual path mapping: the .proto is compiled as if it lived at kdiag_manager/wire/api/v1/, so
# the generated modules import each other as `kdiag_manager.wire.api.v1.*`.
define run_protoc
	$(PY) -m grpc_tools.protoc -I$(PROTO_PKG)=$(PROTO_SRC) \
	  --python_out=$(1) --grpc_python_out=$(1) --pyi_out=$(1) $(PROTO_PKG)/manager.proto
endef

generate: grpc-tools-pinned
	$(call run_protoc,$(PROTO_OUT))

generate-check: grpc-tools-pinned
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(call run_protoc,$$tmp) && \
	for f in manager_pb2.py manager_pb2.pyi manager_pb2_grpc.py; do \
	  diff -u "$(PROTO_OUT)/$(PROTO_PKG)/$$f" "$$tmp/$(PROTO_PKG)/$$f" >/dev/null || { \
	    echo "generate-check: $(PROTO_PKG)/$$f is stale; run 'make generate' and commit" >&2; exit 1; }; \
	done && echo "generate-check: generated code is up to date"

scratch-shell:
	$(MAKE) --no-print-directory -C scratch-shell
