#!/usr/bin/env python3
"""Build container images without Docker: OCI image-layout archives for containerd.

Three commands (standard library only):

  rootfs      pack a root filesystem directory into an image archive
  dockerfile  build an image by running a Dockerfile's instructions on this host
              (FROM → a debootstrap'ed Debian root, RUN → chroot in private mount
              and PID namespaces, COPY/ENV/WORKDIR/... → files and image config);
              for this machine's platform, or another with --platform linux/arm64:
              a Debian root of that architecture whose programs run under qemu
              (binfmt_misc; Debian's qemu-user-static registers it)
  import      import archives into containerd (`ctr -n k8s.io images import`)

The Dockerfile interpreter supports only the instructions and options that kdiag's
own Dockerfile uses (multi-stage builds included: `FROM ... AS NAME`, `FROM scratch`,
`COPY --from=NAME`), and stops with an error on anything else, BuildKit-only syntax
such as `RUN --mount` too: the real Dockerfile is the source of truth, it must build
with a plain `docker build`/`podman build`, and this builder refuses to silently
diverge from it.

An archive holds one uncompressed layer (the whole root filesystem), its config, a
manifest and an index.json whose manifest carries the `io.containerd.image.name`
annotation, so `ctr images import` names the image without any registry.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Paths whose contents never go into an image (they are mounted at run time).
SKIP_CONTENTS = {"proc", "sys", "dev", "run", "tmp"}
# OCI architecture names of the machines this builder runs on (it builds for its own by
# default, and for another through emulation: see Platform).
OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


class BuildError(Exception):
    pass


def oci_architecture() -> str:
    machine = platform.machine()
    if machine not in OCI_ARCH:
        raise BuildError(f"unsupported machine {machine!r} (known: {sorted(OCI_ARCH)})")
    return OCI_ARCH[machine]


@dataclass(frozen=True)
class Platform:
    """A target platform: its OCI architecture (also Debian's name for it, for the two we
    know) and the machine name qemu and binfmt_misc use for it."""

    arch: str  # amd64, arm64
    machine: str  # x86_64, aarch64

    def __str__(self) -> str:
        return f"linux/{self.arch}"


PLATFORMS = {p.arch: p for p in (Platform("amd64", "x86_64"), Platform("arm64", "aarch64"))}


def host_platform() -> Platform:
    return PLATFORMS[oci_architecture()]


def parse_platform(text: str) -> Platform:
    """``linux/arm64`` (also ``linux/arm64/v8`` and a bare ``arm64``) → Platform."""
    parts = text.strip().split("/")
    if len(parts) > 1 and parts[0] != "linux":
        raise BuildError(f"platform {text!r}: only linux images are built")
    arch = parts[1] if len(parts) > 1 else parts[0]
    if arch not in PLATFORMS or len(parts) > 3 or (len(parts) == 3 and parts[2] != "v8"):
        raise BuildError(f"platform {text!r} is not supported (known: "
                         f"{', '.join(str(p) for p in PLATFORMS.values())})")
    return PLATFORMS[arch]


def check_emulation(target: Platform, binfmt: Path | None = None) -> None:
    """Raise a BuildError unless this host can run ``target``'s programs: natively, or
    through a qemu handler registered in binfmt_misc with the F flag (the kernel opens the
    interpreter when it is registered, so it runs inside a chroot that lacks it)."""
    host = host_platform()
    if target == host:
        return
    binfmt = binfmt or BINFMT_MISC
    does = " (`make image-arm64` does)" if target.arch == "arm64" else ""
    hint = (f"building for {target} on this {host} machine runs {target.arch} programs "
            f"through qemu: install qemu-user-static{does}, which registers "
            f"{binfmt}/qemu-{target.machine}")
    if not (binfmt / "register").exists():
        raise BuildError(f"{hint}; binfmt_misc is not mounted "
                         f"(mount -t binfmt_misc binfmt_misc {binfmt})")
    handler = binfmt / f"qemu-{target.machine}"
    if not handler.exists():
        raise BuildError(f"{hint}; no such handler is registered "
                         f"(register it: cat /usr/lib/binfmt.d/qemu-{target.machine}.conf > "
                         f"{binfmt}/register)")
    lines = handler.read_text().splitlines()
    flags = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("flags:")), "")
    if not lines or lines[0] != "enabled":
        raise BuildError(f"{hint}; {handler} is disabled (echo 1 > {handler})")
    if "F" not in flags:
        raise BuildError(f"{hint}; {handler} lacks the F flag (flags: {flags or 'none'}), so a "
                         "chroot cannot reach its interpreter: re-register it with F")


def log(msg: str) -> None:
    print(f"[ocibuild {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- OCI archive


@dataclass
class ImageConfig:
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: dict[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    workdir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)

    def to_oci(self) -> dict:
        cfg: dict = {"Env": [f"{k}={v}" for k, v in self.env.items()]}
        if self.entrypoint is not None:
            cfg["Entrypoint"] = self.entrypoint
        if self.cmd is not None:
            cfg["Cmd"] = self.cmd
        if self.workdir:
            cfg["WorkingDir"] = self.workdir
        if self.user:
            cfg["User"] = self.user
        if self.labels:
            cfg["Labels"] = self.labels
        if self.exposed_ports:
            cfg["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        return cfg


def _layer_filter(root: Path):
    def keep(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = ti.name.split("/")
        # ti.name is "./x/y"; skip what lies inside the run-time mount points.
        if len(parts) > 2 and parts[1] in SKIP_CONTENTS:
            return None
        ti.uname = ti.gname = ""
        return ti

    return keep


def write_layer(rootfs: Path, out: Path) -> str:
    """Write rootfs as an uncompressed tar to out; return its sha256 hex digest."""
    with open(out, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(rootfs)):
            tar.add(rootfs / entry, arcname=f"./{entry}", filter=_layer_filter(rootfs))
    h = hashlib.sha256()
    with open(out, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    tar.addfile(ti, io.BytesIO(data))


def write_archive(rootfs: Path, name: str | list[str], config: ImageConfig, out: Path,
                  architecture: str | None = None) -> str:
    """Write an OCI image-layout tar for rootfs, under one name or several (the same image
    tagged twice), for ``architecture`` (default: this machine's); return the manifest
    digest."""
    names = [name] if isinstance(name, str) else list(name)
    arch = architecture or oci_architecture()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".layer-") as tmp:
        layer_path = Path(tmp) / "layer.tar"
        layer_digest = write_layer(rootfs, layer_path)
        layer_size = layer_path.stat().st_size
        config_blob = json.dumps(
            {
                "created": "1970-01-01T00:00:00Z",
                "architecture": arch,
                "os": "linux",
                "config": config.to_oci(),
                "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
                "history": [{"created_by": "kdiag cluster/images/ocibuild.py"}],
            },
            sort_keys=True,
        ).encode()
        config_digest = hashlib.sha256(config_blob).hexdigest()
        manifest_blob = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": f"sha256:{config_digest}",
                    "size": len(config_blob),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": f"sha256:{layer_digest}",
                        "size": layer_size,
                    }
                ],
            },
            sort_keys=True,
        ).encode()
        manifest_digest = hashlib.sha256(manifest_blob).hexdigest()
        index_blob = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": f"sha256:{manifest_digest}",
                        "size": len(manifest_blob),
                        "platform": {"architecture": arch, "os": "linux"},
                        "annotations": {
                            "io.containerd.image.name": each,
                            "org.opencontainers.image.ref.name": each.rsplit(":", 1)[-1],
                        },
                    }
                    for each in names
                ],
            },
            sort_keys=True,
        ).encode()
        tmp_out = out.with_name(out.name + ".tmp")
        with tarfile.open(tmp_out, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(tar, "index.json", index_blob)
            _add_bytes(tar, f"blobs/sha256/{config_digest}", config_blob)
            _add_bytes(tar, f"blobs/sha256/{manifest_digest}", manifest_blob)
            tar.add(layer_path, arcname=f"blobs/sha256/{layer_digest}")
        tmp_out.replace(out)
    log(f"wrote {out} ({', '.join(names)}, linux/{arch}, {layer_size // 1024} KiB layer)")
    return f"sha256:{manifest_digest}"


# --------------------------------------------------------------------------- Dockerfile


@dataclass
class Instruction:
    cmd: str  # upper case
    args: str  # raw text after the keyword, continuation lines joined
    lineno: int

    def where(self, path: Path) -> str:
        return f"{path}:{self.lineno}: {self.cmd}"


def parse_dockerfile(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    buf = ""
    start = 0
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue  # comments and parser directives (e.g. `# syntax=`) carry no meaning here
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped, as Docker does
        if not buf:
            start = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        keyword, _, rest = buf.strip().partition(" ")
        out.append(Instruction(keyword.upper(), rest.strip(), start))
        buf = ""
    if buf:
        raise BuildError(f"line {start}: instruction continues past the end of the file")
    return out


def _json_or_shell(args: str) -> tuple[list[str], bool]:
    """Exec form (JSON array) or shell form; returns (argv, is_exec_form)."""
    if args.startswith("["):
        try:
            argv = json.loads(args)
        except json.JSONDecodeError:
            argv = None
        if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
            return argv, True
    return ["/bin/sh", "-c", args], False


_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _expand(value: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _split_options(args: str) -> tuple[dict[str, str], str]:
    opts: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        key, _, val = word[2:].partition("=")
        if key in opts:
            raise BuildError(f"option --{key} given twice")
        opts[key] = val
        rest = rest.lstrip()
    return opts, rest


def _parse_env(args: str, env: dict[str, str]) -> dict[str, str]:
    words = shlex.split(args, posix=True)
    if words and "=" not in words[0]:  # legacy form: ENV KEY value with spaces
        key, _, value = args.partition(" ")
        return {key: _expand(value.strip(), env)}
    pairs: dict[str, str] = {}
    for w in words:
        if "=" not in w:
            raise BuildError(f"expected KEY=VALUE, got {w!r}")
        k, _, v = w.partition("=")
        pairs[k] = _expand(v, {**env, **pairs})
    return pairs


class DockerIgnore:
    """The subset of .dockerignore we need: glob patterns with `**`, no `!` exceptions."""

    def __init__(self, context: Path):
        self.patterns: list[re.Pattern[str]] = []
        path = context / ".dockerignore"
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("!"):
                raise BuildError(".dockerignore: `!` exceptions are not supported by ocibuild")
            line = line.strip("/")
            rx = ""
            i = 0
            while i < len(line):
                if line.startswith("**/", i):
                    rx += "(?:.*/)?"
                    i += 3
                elif line.startswith("**", i):
                    rx += ".*"
                    i += 2
                else:
                    rx += fnmatch.translate(line[i]).removeprefix("(?s:").removesuffix(")\\Z")
                    i += 1
            self.patterns.append(re.compile(rx + r"\Z", re.S))

    def ignored(self, rel: str) -> bool:
        parts = rel.split("/")
        return any(
            p.match("/".join(parts[: i + 1])) for p in self.patterns for i in range(len(parts))
        )


def _context_files(context: Path, src: str, ignore: DockerIgnore) -> list[tuple[Path, str]]:
    """(absolute path, path relative to the source) for everything COPY takes from src."""
    srcpath = (context / src).resolve()
    if context.resolve() not in (srcpath, *srcpath.parents):
        raise BuildError(f"COPY source {src!r} is outside the build context")
    if not srcpath.exists() and not srcpath.is_symlink():
        raise BuildError(f"COPY source {src!r} does not exist in the build context {context}")
    rel_src = os.path.relpath(srcpath, context.resolve())
    if rel_src != "." and ignore.ignored(rel_src):
        raise BuildError(f"COPY source {src!r} is excluded by .dockerignore")
    if not srcpath.is_dir():
        return [(srcpath, ".")]
    files: list[tuple[Path, str]] = [(srcpath, ".")]
    for dirpath, dirnames, filenames in os.walk(srcpath):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = os.path.relpath(p, context.resolve())
            if ignore.ignored(rel):
                if name in dirnames:
                    dirnames.remove(name)
                continue
            files.append((p, os.path.relpath(p, srcpath)))
    return files


def _stage_files(root: Path, src: str) -> list[tuple[Path, str]]:
    """Like _context_files, for ``COPY --from=STAGE``: ``src`` is a path in the stage's root."""
    srcpath = _inside(root, src)
    if not srcpath.exists() and not srcpath.is_symlink():
        raise BuildError(f"COPY --from source {src!r} does not exist in that stage")
    files: list[tuple[Path, str]] = [(srcpath, ".")]
    if srcpath.is_dir() and not srcpath.is_symlink():
        for dirpath, dirnames, filenames in os.walk(srcpath):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                p = Path(dirpath) / name
                files.append((p, os.path.relpath(p, srcpath)))
    return files


def copy_destination(dest: str, top: Path, rel: str) -> str:
    """Where COPY puts ``rel`` (relative to the source ``top``) in the image, as Docker does:
    a folder's contents go into ``dest``; a file becomes ``dest`` itself, or ``dest/NAME``
    when ``dest`` ends with a slash."""
    if not top.is_dir() and dest.endswith("/"):
        dest = os.path.join(dest, top.name)
    return os.path.normpath(os.path.join(dest, rel))


def _hash_files(files: list[tuple[Path, str]]) -> str:
    h = hashlib.sha256()
    for path, rel in files:
        st = path.lstat()
        h.update(f"{rel}\0{st.st_mode:o}\0".encode())
        if path.is_symlink():
            h.update(os.readlink(path).encode())
        elif path.is_file():
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def _host_apt_sources() -> tuple[str, str | None]:
    """The Debian mirror (and security mirror) this host's apt uses: (main, security)."""
    stanzas: list[dict[str, str]] = []
    for p in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for block in re.split(r"\n\s*\n", p.read_text()):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            if fields.get("enabled", "yes") != "no" and "deb" in fields.get("types", "").split():
                stanzas.append(fields)
    lists = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    for p in lists:
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()  # type: ignore[assignment]
            if len(line) >= 3 and line[0] == "deb":
                stanzas.append({"uris": line[1], "suites": line[2]})
    main = security = None
    for s in stanzas:
        suites = s.get("suites", "").split()
        for uri in s.get("uris", "").split():
            if "bookworm" in suites and main is None:
                main = uri
            if "bookworm-security" in suites and security is None:
                security = uri
    if main is None:
        raise BuildError("no Debian bookworm mirror found in /etc/apt/sources.list*")
    return main, security


RUN_SCRIPT = r"""
set -e
root="$1"; shift
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=755,nosuid tmpfs "$root/dev"
for d in null zero full random urandom tty; do
  touch "$root/dev/$d"; mount --bind "/dev/$d" "$root/dev/$d"
done
mkdir -p "$root/dev/pts" "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
mount -t sysfs -o ro sysfs "$root/sys" 2>/dev/null || true
mkdir -p "$root/run" "$root/tmp"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
touch "$root/etc/resolv.conf"
mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
if [ -f "$HOST_CA" ]; then
  # The host's trusted CAs, for this RUN only (never stored in the image).
  mkdir -p "$root/run/ocibuild"; touch "$root/run/ocibuild/ca.crt"
  mount --bind "$HOST_CA" "$root/run/ocibuild/ca.crt"
fi
exec chroot "$root" /usr/bin/env -i "$@"
"""


HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def _build_only_env() -> dict[str, str]:
    """Environment every RUN gets but the image does not keep, like Docker's predefined
    proxy ARGs: this host's proxy settings, and its CA bundle (a network that inspects
    TLS has its own CA, which a fresh Debian root does not trust)."""
    env = {k: os.environ[k] for k in PROXY_VARS if k in os.environ}
    if os.path.isfile(HOST_CA):
        ca = "/run/ocibuild/ca.crt"
        env.update(SSL_CERT_FILE=ca, PIP_CERT=ca, REQUESTS_CA_BUNDLE=ca, CURL_CA_BUNDLE=ca)
    return env


@dataclass
class Stage:
    """A finished build stage: its cache key, root filesystem and image config."""

    key: str
    root: Path | None
    config: ImageConfig


class DockerfileBuilder:
    # Base images we know how to make, and how.
    BASES = {"debian:bookworm-slim": "bookworm", "debian:bookworm": "bookworm"}

    def __init__(self, dockerfile: Path, context: Path, cache: Path, check_only: bool = False,
                 platform: Platform | None = None):
        self.dockerfile = dockerfile
        self.platform = platform or host_platform()
        self.context = context
        self.cache = cache
        self.check_only = check_only  # validate every instruction, build nothing
        self.ignore = DockerIgnore(context)
        self.config = ImageConfig()
        self.stages: dict[str, Stage] = {}  # by `AS` name and by index, as Docker names them
        self._stage_names: list[str] = []  # the names of the stage being built

    # -- cache layout: cache/steps/<key>/ is a complete root filesystem after a step
    def _step_dir(self, key: str) -> Path:
        return self.cache / "steps" / key

    def _new_step(self, prev: Path | None, key: str) -> Path:
        d = self._step_dir(key)
        tmp = d.with_name(d.name + ".tmp")
        if tmp.exists():
            _rmtree(tmp)
        if prev is None:
            tmp.mkdir(parents=True)
        else:
            subprocess.run(["cp", "-a", "--reflink=auto", str(prev), str(tmp)], check=True)
        return tmp

    def check(self) -> ImageConfig:
        """Check that the builder supports every instruction and option; build nothing."""
        self.check_only = True
        self._steps()
        return self.config

    def _steps(self) -> tuple[str, Path | None, list[str]]:
        if not self.dockerfile.is_file():
            raise BuildError(f"{self.dockerfile} does not exist")
        instructions = parse_dockerfile(self.dockerfile.read_text())
        if not instructions or instructions[0].cmd != "FROM":
            raise BuildError(f"{self.dockerfile}: the first instruction must be FROM")
        key = ""
        current: Path | None = None
        used: list[str] = []
        for ins in instructions:
            handler = getattr(self, f"_do_{ins.cmd.lower()}", None)
            if handler is None:
                raise BuildError(
                    f"{ins.where(self.dockerfile)} is not supported by cluster/images/ocibuild.py; "
                    "teach the builder this instruction (or keep the Dockerfile to the supported "
                    "subset: FROM, RUN, COPY, ENV, WORKDIR, ENTRYPOINT, CMD, LABEL, EXPOSE, USER)"
                )
            if ins.cmd == "FROM" and self._stage_names:
                self._end_stage(key, current)
            try:
                key, current = handler(ins, key, current)
            except BuildError as e:
                raise BuildError(f"{ins.where(self.dockerfile)}: {e}") from None
            if current is not None:
                used.append(current.name)
        return key, current, used

    def _end_stage(self, key: str, current: Path | None) -> None:
        stage = Stage(key, current, self.config)
        for name in self._stage_names:
            self.stages[name] = stage

    def build(self, name: str | list[str], out: Path) -> None:
        start = time.monotonic()
        key, current, used = self._steps()
        assert current is not None
        names = [name] if isinstance(name, str) else name
        # The archive is reused while the steps, the image config and the names are unchanged.
        final = self._chain(key, *names, json.dumps(self.config.to_oci(), sort_keys=True))
        stamp = out.with_name(out.name + ".key")
        if out.exists() and stamp.exists() and stamp.read_text() == final:
            log(f"cached: {out}")
        else:
            stamp.unlink(missing_ok=True)
            write_archive(current, names, self.config, out, self.platform.arch)
            stamp.write_text(final)
        # Keep only the steps this build used; older ones are stale.
        steps = self.cache / "steps"
        for d in steps.iterdir():
            if d.name not in used:
                _rmtree(d)
        log(f"built {', '.join(names)} from {self.dockerfile} in {time.monotonic() - start:.0f} s")

    def _foreign(self) -> tuple[str, ...]:
        """What a base's cache key adds for a foreign platform (nothing for the host's own,
        so the keys of native builds stay what they were)."""
        return () if self.platform == host_platform() else (str(self.platform),)

    def _chain(self, key: str, *parts: str) -> str:
        h = hashlib.sha256(key.encode())
        for p in parts:
            h.update(b"\0" + p.encode())
        return h.hexdigest()[:24]

    def _cached(self, key: str, desc: str) -> Path | None:
        d = self._step_dir(key)
        if self.check_only:
            return d  # pretend it is there: nothing runs in a check
        if d.is_dir():
            log(f"cached: {desc}")
            return d
        log(f"running: {desc}")
        return None

    # -- instructions
    def _do_from(self, ins: Instruction, key: str, current: Path | None):
        words = ins.args.split()
        if len(words) == 3 and words[1].lower() == "as":
            alias: str | None = words[2].lower()
        elif len(words) == 1:
            alias = None
        else:
            raise BuildError("expected FROM IMAGE [AS NAME] (FROM options are not supported)")
        base = words[0]
        self._stage_names = [str(len({id(s) for s in self.stages.values()}))]
        if alias:
            if alias in self.stages:
                raise BuildError(f"stage name {alias!r} is used twice")
            self._stage_names.append(alias)
        self.config = ImageConfig()  # each stage starts from its base's config
        if base.lower() in self.stages:
            stage = self.stages[base.lower()]
            self.config = ImageConfig(**{**stage.config.__dict__,
                                         "env": dict(stage.config.env),
                                         "labels": dict(stage.config.labels),
                                         "exposed_ports": list(stage.config.exposed_ports)})
            return stage.key, stage.root
        if base == "scratch":
            key = self._chain("", "FROM", "scratch", *self._foreign())
            d = self._cached(key, "FROM scratch")
            if d is None:
                tmp = self._new_step(None, key)
                d = self._step_dir(key)
                tmp.rename(d)
            return key, d
        if base not in self.BASES:
            raise BuildError(f"base image {base!r} unknown; supported: scratch, "
                             f"{', '.join(sorted(self.BASES))} and earlier stages")
        suite = self.BASES[base]
        mirror, security = ("", None) if self.check_only else _host_apt_sources()
        key = self._chain("", "FROM", base, mirror, security or "", *self._foreign())
        d = self._cached(key, f"FROM {base} (debootstrap --variant=minbase {suite}, {self.platform})")
        if d is None:
            tmp = self._new_step(None, key)
            _debootstrap(tmp, suite, mirror, security, self.platform)
            d = self._step_dir(key)
            tmp.rename(d)
        return key, d

    def _do_run(self, ins: Instruction, key: str, current: Path | None):
        opts, rest = _split_options(ins.args)
        for k in opts:
            raise BuildError(f"RUN --{k} is BuildKit-only: a plain docker build or podman build "
                             "does not support it")
        argv, _ = _json_or_shell(rest)
        key = self._chain(key, "RUN", ins.args, json.dumps(self.config.env, sort_keys=True))
        d = self._cached(key, f"RUN {rest[:100]}")
        if d is None:
            tmp = self._new_step(current, key)
            env = {"HOME": "/root", **self.config.env, **_build_only_env()}
            cmd = [*(f"{k}={v}" for k, v in env.items())]
            if self.config.workdir:
                argv = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', self.config.workdir, *argv]
            r = subprocess.run(
                env={**os.environ, "HOST_CA": HOST_CA},
                args=["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c",
                 RUN_SCRIPT, "run", str(tmp), *cmd, *argv],
            )
            if r.returncode != 0:
                _rmtree(tmp)
                raise BuildError(f"command failed with exit code {r.returncode}: {rest}")
            d = self._step_dir(key)
            tmp.rename(d)
        return key, d

    def _do_copy(self, ins: Instruction, key: str, current: Path | None):
        opts, rest = _split_options(ins.args)
        for k in opts:
            if k not in ("chmod", "from"):
                raise BuildError(f"COPY option --{k} is not supported")
        stage = None
        if "from" in opts:
            stage = self.stages.get(opts["from"].lower())
            if stage is None:
                raise BuildError(f"COPY --from={opts['from']}: no earlier stage has that name "
                                 "(images are not pulled: name a stage)")
        words, exec_form = _json_or_shell(rest)
        if not exec_form:
            words = shlex.split(rest)
        words = [_expand(w, self.config.env) for w in words]
        if len(words) < 2:
            raise BuildError("COPY needs a source and a destination")
        *srcs, dest = words
        if any(c in s for s in srcs for c in "*?["):
            raise BuildError("wildcards in COPY sources are not supported")
        if not dest.startswith("/"):
            dest = os.path.join(self.config.workdir or "/", dest)
        if len(srcs) > 1 and not dest.endswith("/"):
            raise BuildError("with several sources the destination must end with /")
        if self.check_only:  # build outputs such as scratch-shell/build/ may not exist yet
            for src in srcs:
                _inside(self.context, src)
            return self._chain(key, "COPY", ins.args), self._cached(key, "")
        if stage is not None:
            # A stage's files are determined by its key: no need to hash them.
            assert stage.root is not None
            sets = [_stage_files(stage.root, s) for s in srcs]
            digest = stage.key
        else:
            sets = [_context_files(self.context, s, self.ignore) for s in srcs]
            digest = _hash_files([f for s in sets for f in s])
        key = self._chain(key, "COPY", ins.args, digest)
        d = self._cached(key, f"COPY {rest}")
        if d is None:
            tmp = self._new_step(current, key)
            mode = int(opts["chmod"], 8) if "chmod" in opts else None
            for src, files in zip(srcs, sets, strict=True):
                top, _ = files[0]
                for path, rel in files:
                    t = _inside(tmp, copy_destination(dest, top, rel))
                    if path.is_dir() and not path.is_symlink():
                        t.mkdir(parents=True, exist_ok=True)
                        shutil.copystat(path, t)  # modes such as /tmp's 1777 stay
                        continue
                    t.parent.mkdir(parents=True, exist_ok=True)
                    if t.exists() or t.is_symlink():
                        t.unlink()
                    if path.is_symlink():
                        os.symlink(os.readlink(path), t)
                    else:
                        shutil.copy2(path, t)
                        if stage is None:
                            os.chown(t, 0, 0)
                        if mode is not None:
                            os.chmod(t, mode)
                del src
            d = self._step_dir(key)
            tmp.rename(d)
        return key, d

    def _do_workdir(self, ins: Instruction, key: str, current: Path | None):
        path = _expand(ins.args.strip(), self.config.env)
        self.config.workdir = os.path.join(self.config.workdir or "/", path)
        key = self._chain(key, "WORKDIR", self.config.workdir)
        d = self._cached(key, f"WORKDIR {self.config.workdir}")
        if d is None:
            tmp = self._new_step(current, key)
            _inside(tmp, self.config.workdir).mkdir(parents=True, exist_ok=True)
            d = self._step_dir(key)
            tmp.rename(d)
        return key, d

    def _do_env(self, ins: Instruction, key: str, current: Path | None):
        self.config.env.update(_parse_env(ins.args, self.config.env))
        return self._chain(key, "ENV", ins.args), current

    def _do_entrypoint(self, ins: Instruction, key: str, current: Path | None):
        self.config.entrypoint, _ = _json_or_shell(ins.args)
        self.config.cmd = None  # Docker resets CMD when ENTRYPOINT is set
        return key, current

    def _do_cmd(self, ins: Instruction, key: str, current: Path | None):
        self.config.cmd, _ = _json_or_shell(ins.args)
        return key, current

    def _do_label(self, ins: Instruction, key: str, current: Path | None):
        self.config.labels.update(_parse_env(ins.args, {}))
        return key, current

    def _do_expose(self, ins: Instruction, key: str, current: Path | None):
        for p in ins.args.split():
            self.config.exposed_ports.append(p if "/" in p else f"{p}/tcp")
        return key, current

    def _do_user(self, ins: Instruction, key: str, current: Path | None):
        self.config.user = ins.args.strip()
        return key, current


def _inside(root: Path, path: str) -> Path:
    p = root / os.path.normpath(path).lstrip("/")
    if os.path.commonpath([root, p]) != str(root):
        raise BuildError(f"path {path!r} escapes the root filesystem")
    return p


def _rmtree(path: Path) -> None:
    # Refuse to delete through a mount that a crashed RUN might have left (it cannot with
    # the private mount namespace, but be careful anyway).
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if mp == str(path) or mp.startswith(str(path) + "/"):
                raise BuildError(f"{mp} is still mounted; unmount it before rebuilding")
    shutil.rmtree(path)


def _debootstrap(root: Path, suite: str, mirror: str, security: str | None,
                 target: Platform) -> None:
    if not shutil.which("debootstrap"):
        raise BuildError("debootstrap is not installed (apt-get install debootstrap)")
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    # A foreign --arch needs no --foreign/second stage by hand: debootstrap chroots into the
    # new root for its second stage, and binfmt_misc (F flag) runs those programs under qemu.
    arch = [] if target == host_platform() else [f"--arch={target.arch}"]
    cmd = ["debootstrap", "--variant=minbase", *arch, f"--keyring={keyring}", suite, str(root),
           mirror]
    log(" ".join(cmd))
    # In a mount namespace of its own: a debootstrap that fails leaves the root's /proc
    # mounted, which would stop every later build from removing the half-made root.
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", *cmd],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:])
        raise BuildError(f"debootstrap failed with exit code {r.returncode}")
    # Make the root look like Docker's debian:<suite>-slim: deb822 sources with updates
    # and security, no services started by maintainer scripts, no docs/man/locales.
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    sources = (
        f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    if security:
        sources += (
            f"\nTypes: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
    (root / "etc/apt/sources.list.d/debian.sources").write_text(sources)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/man/*\npath-exclude /usr/share/groff/*\n"
        "path-exclude /usr/share/info/*\npath-exclude /usr/share/lintian/*\n"
        "path-exclude /usr/share/linda/*\npath-exclude /usr/share/locale/*\n"
    )
    (root / "etc/apt/apt.conf.d/docker-clean").write_text(
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n'
    )
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (root / sub).glob("*"):
            if p.is_file():
                p.unlink()
    # Device nodes made by debootstrap would end up in the layer; the runtime makes /dev.
    for p in (root / "dev").iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


# --------------------------------------------------------------------------- import


def import_archives(address: str, archives: list[Path], namespace: str) -> None:
    for a in archives:
        # `ctr images import` unpacks into the default snapshotter (overlayfs), which the
        # CRI plugin needs before it can start a container from the image.
        cmd = ["ctr", "-n", namespace, "-a", address, "images", "import", str(a)]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise BuildError(f"importing {a} failed: {r.stdout.strip()}")
        log(f"imported {a.name}: {r.stdout.strip()}")


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("rootfs", help="pack a root filesystem directory")
    r.add_argument("rootfs", type=Path)
    r.add_argument("--name", required=True, help="image reference, e.g. kdiag.local/pause:dev")
    r.add_argument("--out", required=True, type=Path)
    r.add_argument("--entrypoint", help="JSON array")
    r.add_argument("--cmd", help="JSON array")
    r.add_argument("--env", action="append", default=[], help="KEY=VALUE")
    r.add_argument("--workdir", default="")

    d = sub.add_parser("dockerfile", help="build from a Dockerfile")
    d.add_argument("--file", type=Path, default=Path("Dockerfile"))
    d.add_argument("--context", type=Path, default=Path("."))
    d.add_argument("--name", action="append", help="image reference (repeat: several tags)")
    d.add_argument("--out", type=Path)
    d.add_argument("--cache", type=Path, help="directory for cached steps (required to build)")
    d.add_argument("--platform", help="target platform, e.g. linux/arm64 (default: this "
                   "machine's; another one runs the RUN steps under qemu through binfmt_misc)")
    d.add_argument("--check", action="store_true",
                   help="only check that every instruction is supported; build nothing")

    i = sub.add_parser("import", help="import archives into containerd")
    i.add_argument("archives", nargs="+", type=Path)
    i.add_argument("--address", required=True, help="containerd socket")
    i.add_argument("--namespace", default="k8s.io")

    args = ap.parse_args(argv)
    try:
        if args.command == "rootfs":
            cfg = ImageConfig()
            if args.entrypoint:
                cfg.entrypoint = json.loads(args.entrypoint)
            if args.cmd:
                cfg.cmd = json.loads(args.cmd)
            for kv in args.env:
                k, _, v = kv.partition("=")
                cfg.env[k] = v
            cfg.workdir = args.workdir
            write_archive(args.rootfs.resolve(), args.name, cfg, args.out)
        elif args.command == "dockerfile" and args.check:
            cfg = DockerfileBuilder(args.file, args.context.resolve(), Path("/nonexistent")).check()
            log(f"{args.file}: every instruction is supported; entrypoint {cfg.entrypoint}")
        elif args.command == "dockerfile":
            if not (args.name and args.out and args.cache):
                raise BuildError("building needs --name, --out and --cache")
            if os.geteuid() != 0:
                raise BuildError("building from a Dockerfile needs root (debootstrap, chroot)")
            target = parse_platform(args.platform) if args.platform else host_platform()
            check_emulation(target)
            DockerfileBuilder(args.file, args.context.resolve(), args.cache.resolve(),
                              platform=target).build(args.name, args.out)
        else:
            import_archives(args.address, args.archives, args.namespace)
    except BuildError as e:
        print(f"ocibuild: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
