"""The manager image is built from the repository's Dockerfile by cluster/images/ocibuild.py.
These checks (no cluster, no root) fail when the Dockerfile uses something that builder does
not support, so the image the tests run and the Dockerfile cannot drift apart."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _ocibuild():
    spec = importlib.util.spec_from_file_location(
        "kdiag_ocibuild", REPO / "cluster" / "images" / "ocibuild.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ocibuild = _ocibuild()


def check(dockerfile: Path, context: Path):
    return ocibuild.DockerfileBuilder(dockerfile, context, Path("/nonexistent")).check()


def test_repository_dockerfile_is_supported_by_the_local_builder() -> None:
    config = check(REPO / "Dockerfile", REPO)
    assert config.entrypoint and config.entrypoint[-2:] == ["-m", "kdiag_manager"]


@pytest.mark.parametrize(
    "line",
    [
        "ADD manager /opt/manager",
        "COPY --from=nosuchstage /x /y",
        "RUN --network=none true",
        "RUN --mount=type=bind,source=.,target=/src true",
        "RUN --mount=type=cache,target=/root/.cache/pip true",
        "HEALTHCHECK CMD true",
        "ONBUILD RUN true",
        "SHELL [\"/bin/bash\", \"-c\"]",
        "FROM --platform=linux/arm64 debian:bookworm-slim",
        "ARG TARGETARCH",
    ],
)
def test_unsupported_instructions_fail_loudly(tmp_path: Path, line: str) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM debian:bookworm-slim\nRUN true\n{line}\n")
    with pytest.raises(ocibuild.BuildError, match=r"Dockerfile:3"):
        check(dockerfile, tmp_path)


def test_buildkit_only_syntax_is_refused(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian:bookworm-slim\nRUN --mount=type=cache,target=/x true\n")
    with pytest.raises(ocibuild.BuildError, match="BuildKit-only"):
        check(dockerfile, tmp_path)


def test_multi_stage_check(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian:bookworm-slim AS build\nENV A=1\nENTRYPOINT [\"/a\"]\n"
                          "FROM scratch\nCOPY --from=build /rootfs/ /\nENTRYPOINT [\"/b\"]\n")
    config = check(dockerfile, tmp_path)
    assert config.entrypoint == ["/b"] and "A" not in config.env  # the last stage's own


@pytest.mark.skipif(os.geteuid() != 0, reason="COPY gives files to root")
def test_multi_stage_build_from_scratch(tmp_path: Path) -> None:
    """Stages from scratch, COPY --from an earlier stage (modes and symlinks kept), and only the
    last stage in the image."""
    context = tmp_path / "context"
    (context / "root" / "tmp").mkdir(parents=True)
    (context / "root" / "tmp").chmod(0o1777)
    (context / "root" / "usr" / "bin").mkdir(parents=True)
    (context / "root" / "usr" / "bin" / "tool").write_bytes(b"#!/bin/true\n")
    (context / "root" / "bin").symlink_to("usr/bin")
    (context / "other").write_text("not copied")
    (context / "Dockerfile").write_text(
        "FROM scratch AS build\nCOPY root /rootfs\nCOPY other /other\n"
        "FROM scratch\nCOPY --from=build /rootfs/ /\nENTRYPOINT [\"/bin/tool\"]\n")
    builder = ocibuild.DockerfileBuilder(context / "Dockerfile", context, tmp_path / "cache")
    out = tmp_path / "image.tar"
    builder.build("kdiag.local/multi:test", out)
    with tarfile.open(out) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(tar.extractfile(  # type: ignore[union-attr]
            f"blobs/sha256/{index['manifests'][0]['digest'][7:]}").read())
        layer = tar.extractfile(f"blobs/sha256/{manifest['layers'][0]['digest'][7:]}")
        with tarfile.open(fileobj=io.BytesIO(layer.read())) as files:  # type: ignore[union-attr]
            members = {m.name: m for m in files.getmembers()}
    assert "./usr/bin/tool" in members and members["./bin"].issym()
    assert members["./bin"].linkname == "usr/bin"
    assert members["./tmp"].mode & 0o7777 == 0o1777
    assert not any("other" in name or "rootfs" in name for name in members), sorted(members)


def test_unknown_base_image_fails(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM alpine:3.20\n")
    with pytest.raises(ocibuild.BuildError, match="base image"):
        check(dockerfile, tmp_path)


def test_parser_joins_continuations_and_skips_comments() -> None:
    instructions = ocibuild.parse_dockerfile(
        "# syntax=docker/dockerfile:1\nFROM debian:bookworm-slim\n"
        "RUN a \\\n# a comment inside\n  && b\nENV A=1 B=\"two words\"\n"
    )
    assert [i.cmd for i in instructions] == ["FROM", "RUN", "ENV"]
    assert instructions[1].args.split() == ["a", "&&", "b"]
    assert ocibuild._parse_env(instructions[2].args, {}) == {"A": "1", "B": "two words"}


def test_dockerignore_patterns(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("**/__pycache__\n*.egg-info\n.git\n")
    ignore = ocibuild.DockerIgnore(tmp_path)
    assert ignore.ignored("manager/kdiag_manager/__pycache__/x.pyc")
    assert ignore.ignored("kdiag.egg-info/PKG-INFO")
    assert ignore.ignored(".git/config")
    assert not ignore.ignored("manager/kdiag_manager/server.py")


def test_oci_archive_layout(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "app").write_bytes(b"#!/bin/true\n")
    (root / "proc").mkdir()
    config = ocibuild.ImageConfig(entrypoint=["/bin/app"])
    out = tmp_path / "image.tar"
    ocibuild.write_archive(root, "kdiag.local/example:dev", config, out)

    with tarfile.open(out) as tar:
        blobs = {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }
    assert json.loads(blobs["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in blobs.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    index = json.loads(blobs["index.json"])
    (desc,) = index["manifests"]
    assert desc["annotations"]["io.containerd.image.name"] == "kdiag.local/example:dev"
    manifest = json.loads(blobs[f"blobs/sha256/{desc['digest'].split(':')[1]}"])
    cfg = json.loads(blobs[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
    assert cfg["config"]["Entrypoint"] == ["/bin/app"]
    assert cfg["os"] == "linux" and cfg["architecture"] == "amd64"
    (layer,) = manifest["layers"]
    assert cfg["rootfs"]["diff_ids"] == [layer["digest"]]
    layer_blob = blobs[f"blobs/sha256/{layer['digest'][7:]}"]
    with tarfile.open(fileobj=io.BytesIO(layer_blob)) as t:
        names = t.getnames()
    assert "./bin/app" in names and "./proc" in names


def test_copy_destinations_follow_docker(tmp_path: Path) -> None:
    folder = tmp_path / "build"
    folder.mkdir()
    file = folder / "enter"
    file.write_bytes(b"x")
    assert ocibuild.copy_destination("/usr/lib/kdiag/enter", file, ".") == "/usr/lib/kdiag/enter"
    assert ocibuild.copy_destination("/usr/lib/kdiag/", file, ".") == "/usr/lib/kdiag/enter"
    assert ocibuild.copy_destination("/opt/src", folder, ".") == "/opt/src"
    assert ocibuild.copy_destination("/opt/src", folder, "enter") == "/opt/src/enter"


def test_platforms_parse_and_unknown_ones_fail() -> None:
    arm64 = ocibuild.parse_platform("linux/arm64")
    assert (arm64.arch, arm64.machine, str(arm64)) == ("arm64", "aarch64", "linux/arm64")
    assert ocibuild.parse_platform("arm64") == ocibuild.parse_platform("linux/arm64/v8") == arm64
    assert ocibuild.parse_platform("linux/amd64").machine == "x86_64"
    for bad in ("linux/riscv64", "windows/amd64", "linux/arm64/v7", "linux/arm/v7"):
        with pytest.raises(ocibuild.BuildError, match="platform"):
            ocibuild.parse_platform(bad)


def _binfmt(tmp_path: Path, machine: str, status: str = "enabled", flags: str = "POF") -> Path:
    (tmp_path / "register").touch()
    (tmp_path / f"qemu-{machine}").write_text(
        f"{status}\ninterpreter /usr/libexec/qemu-binfmt/{machine}-binfmt-P\nflags: {flags}\n"
        "offset 0\nmagic 7f454c46\nmask ffffffff\n")
    return tmp_path


def test_emulation_check_names_what_is_missing(tmp_path: Path) -> None:
    host = ocibuild.host_platform()
    other = next(p for p in ocibuild.PLATFORMS.values() if p != host)
    ocibuild.check_emulation(host, tmp_path / "absent")  # the host's own: nothing needed
    with pytest.raises(ocibuild.BuildError, match=r"install qemu-user-static.*not mounted"):
        ocibuild.check_emulation(other, tmp_path / "absent")
    (tmp_path / "register").touch()
    with pytest.raises(ocibuild.BuildError, match=f"qemu-{other.machine}; no such handler"):
        ocibuild.check_emulation(other, tmp_path)
    with pytest.raises(ocibuild.BuildError, match="is disabled"):
        ocibuild.check_emulation(other, _binfmt(tmp_path, other.machine, status="disabled"))
    with pytest.raises(ocibuild.BuildError, match="lacks the F flag"):
        ocibuild.check_emulation(other, _binfmt(tmp_path, other.machine, flags="PO"))
    ocibuild.check_emulation(other, _binfmt(tmp_path, other.machine))


def test_building_for_another_platform_without_emulation_fails_clearly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    host = ocibuild.host_platform()
    other = next(p for p in ocibuild.PLATFORMS.values() if p != host)
    monkeypatch.setattr(ocibuild, "BINFMT_MISC", tmp_path)
    monkeypatch.setattr(ocibuild.os, "geteuid", lambda: 0)
    code = ocibuild.main(["dockerfile", "--file", str(REPO / "Dockerfile"), "--context", str(REPO),
                          "--platform", str(other), "--name", "x:y", "--out", str(tmp_path / "o.tar"),
                          "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert f"ocibuild: error: building for {other} on this {host} machine" in err
    assert "install qemu-user-static" in err and not (tmp_path / "cache").exists()


def test_a_foreign_platform_has_its_own_cache_keys_and_image_config(tmp_path: Path) -> None:
    """The host's build keeps the keys it always had (the local cluster's cache stays valid);
    another platform's steps never reuse them; the archive names the platform's architecture."""
    host = ocibuild.host_platform()
    other = next(p for p in ocibuild.PLATFORMS.values() if p != host)
    context = tmp_path / "context"
    (context / "app").mkdir(parents=True)
    (context / "app" / "tool").write_text("#!/bin/true\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY app /app\n")

    def build(platform, name: str) -> tuple[set[str], dict]:
        cache = tmp_path / f"cache-{name}"
        builder = ocibuild.DockerfileBuilder(context / "Dockerfile", context, cache,
                                             platform=platform)
        builder.build(f"kdiag.local/x:{name}", tmp_path / f"{name}.tar")
        with tarfile.open(tmp_path / f"{name}.tar") as tar:
            index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        return {d.name for d in (cache / "steps").iterdir()}, index["manifests"][0]["platform"]

    default_keys, default_platform = build(None, "default")
    host_keys, _ = build(host, "host")
    other_keys, other_platform = build(other, "other")
    assert default_keys == host_keys and not default_keys & other_keys
    assert default_platform == {"architecture": host.arch, "os": "linux"}
    assert other_platform == {"architecture": other.arch, "os": "linux"}
    scratch_key = ocibuild.DockerfileBuilder(context / "Dockerfile", context, tmp_path)._chain(
        "", "FROM", "scratch")
    assert scratch_key in default_keys  # the key a native build had before platforms existed
