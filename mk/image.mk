# The manager image for another platform: `make image-arm64` builds build/manager-arm64.tar
# (an OCI archive of linux/arm64, named kdiag.local/manager:arm64) on this amd64 machine from
# the repository's Dockerfile, with cluster/images/ocibuild.py running its RUN steps under qemu
# (scripts/emulation-deps.sh installs qemu-user-static and registers it in binfmt_misc). Slow
# when cold (an emulated apt, pip and gcc; README, "Manager image"); every step is cached in
# build/cache/. `make image-arm64-test` unpacks it and runs the image's own programs and the
# manager under qemu (tests/image/, the `image` marker: never part of `make test`).
# Included by the root Makefile.

IMAGE_ARM64 := build/manager-arm64.tar

.PHONY: image-arm64 image-arm64-test

image-arm64:
	@bash scripts/emulation-deps.sh aarch64
	python3 cluster/images/ocibuild.py dockerfile --platform linux/arm64 --file Dockerfile \
	  --context . --name kdiag.local/manager:arm64 --cache build/cache/manager-arm64 \
	  --out $(IMAGE_ARM64)
	@stat -c %s $(IMAGE_ARM64) | awk '{printf "$(IMAGE_ARM64): %.1f MiB\n", $$1 / 1048576}'

image-arm64-test: install image-arm64
	KDIAG_IMAGE_ARCHIVE=$(CURDIR)/$(IMAGE_ARM64) KDIAG_IMAGE_ARCH=arm64 \
	  $(VENV)/bin/pytest -q -m image tests/image
