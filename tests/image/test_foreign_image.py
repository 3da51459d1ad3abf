"""The manager image built for another platform (``make image-arm64``: linux/arm64 on this
amd64 machine, its RUN steps under qemu), proven by running it: the archive is unpacked, every
ELF file in it must be built for the platform, and the image's own programs run from its root
under qemu-user (binfmt_misc) — python with the manager and its native extensions, iptables,
tcpdump, busybox, ``enter`` — and the manager serves a real client: version, net (netlink), ps,
exec through ``enter``, and a redirect.

qemu-user (Debian bookworm's 7.2) implements no NETLINK_NETFILTER socket: there iptables-nft and
the redirect's rules cannot work, and the tests assert exactly that refusal (the program started,
the manager answered with its clear error) — they take the full path on an arm64 machine.

Slow to build (an emulated apt, pip and gcc), so never part of ``make test``: the ``image``
marker is selected only by ``make image-arm64-test``. ``KDIAG_IMAGE_ARCHIVE`` names the
archive (default build/manager-arm64.tar), ``KDIAG_IMAGE_ARCH`` its architecture (arm64)."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdiag.errors import ManagerError
from kdiag.session.client import ManagerClient
from kdiag.session.results import RedirectSpec

pytestmark = [
    pytest.mark.image,
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot and namespaces need root"),
]

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = Path(os.environ.get("KDIAG_IMAGE_ARCHIVE", REPO / "build" / "manager-arm64.tar"))
ARCH = os.environ.get("KDIAG_IMAGE_ARCH", "arm64")
# ELF e_machine of each architecture (EM_X86_64, EM_AARCH64) and uname -m under it.
E_MACHINE = {"amd64": 62, "arm64": 183}
UNAME = {"amd64": "x86_64", "arm64": "aarch64"}
TOKEN = "foreign-image-token"

# Run ARGV from the image's root in private mount and network namespaces, as a runtime would:
# /proc, a minimal /dev, loopback up. The root's /tmp stays the host-visible folder (the
# manager's socket is there).
RUN_IN_ROOT = r"""
set -e
root="$1"; shift
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=755 tmpfs "$root/dev"
for d in null zero random urandom; do touch "$root/dev/$d"; mount --bind "/dev/$d" "$root/dev/$d"; done
ip link set lo up
exec chroot "$root" "$@"
"""


@dataclass
class Image:
    root: Path
    config: dict


def _blob(tar: tarfile.TarFile, digest: str) -> bytes:
    f = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
    assert f is not None, digest
    return f.read()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    if not ARCHIVE.is_file():
        pytest.fail(f"{ARCHIVE} does not exist: build it first (make image-arm64)")
    root = tmp_path_factory.mktemp("root")
    with tarfile.open(ARCHIVE) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(_blob(tar, index["manifests"][0]["digest"]))
        config = json.loads(_blob(tar, manifest["config"]["digest"]))
        (layer,) = manifest["layers"]
        # tar(1), not tarfile: owners, modes and absolute symlinks exactly as a runtime has them.
        subprocess.run(["tar", "-x", "--numeric-owner", "-C", str(root)],
                       input=_blob(tar, layer["digest"]), check=True)
    assert index["manifests"][0]["platform"] == {"architecture": ARCH, "os": "linux"}
    return Image(root, config)


def in_root(image: Image, argv: list[str], script: str = RUN_IN_ROOT) -> list[str]:
    """The command line running ``argv`` from the image's root with its environment only."""
    return ["unshare", "--mount", "--net", "--fork", "--propagation", "private", "sh", "-c",
            script, "sh", str(image.root), "/usr/bin/env", "-i", *image.config["config"]["Env"],
            *argv]


def run_in(image: Image, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(in_root(image, argv), capture_output=True, text=True, timeout=timeout)


def elf_machine(path: Path) -> int | None:
    """An ELF file's e_machine; None for anything else."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def resolve_in(root: Path, path: str) -> Path:
    """``path`` inside ``root`` with its symbolic links followed as the image sees them
    (absolute ones relative to ``root``)."""
    parts = list(Path(path).parts)
    here = root
    for _ in range(40):
        if not parts:
            return here
        step = here / parts.pop(0)
        if step.is_symlink():
            target = os.readlink(step)
            parts = list(Path(target).parts) + parts
            if target.startswith("/"):
                here, parts = root, parts[1:]
        else:
            here = step
    raise AssertionError(f"{path}: too many symbolic links")


def test_config_names_the_platform_and_the_manager(image: Image) -> None:
    assert image.config["architecture"] == ARCH and image.config["os"] == "linux"
    assert image.config["config"]["Entrypoint"] == ["/usr/bin/python3", "-m", "kdiag_manager"]


def test_every_elf_file_is_built_for_the_platform(image: Image) -> None:
    machines: dict[int, list[str]] = {}
    for dirpath, _, filenames in os.walk(image.root):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            machine = elf_machine(path)
            if machine is not None:
                machines.setdefault(machine, []).append(str(path.relative_to(image.root)))
    assert set(machines) == {E_MACHINE[ARCH]}, {m: paths[:5] for m, paths in machines.items()}
    for program in ("usr/bin/python3", "bin/busybox", "sbin/iptables", "usr/bin/tcpdump",
                    "usr/local/lib/kdiag/enter"):
        assert elf_machine(resolve_in(image.root, program)) == E_MACHINE[ARCH], program
    assert len(machines[E_MACHINE[ARCH]]) > 20, machines  # python's extensions, the libraries


@pytest.mark.parametrize(("argv", "expected"), [
    (["/usr/bin/python3", "-m", "kdiag_manager", "--help"], ["usage:", "--listen"]),
    (["/usr/bin/python3", "-c", "import platform, ssl, grpc, kdiag_manager.server; "
      "print(platform.machine(), ssl.OPENSSL_VERSION, grpc.__version__)"],
     [UNAME[ARCH], "OpenSSL"]),
    (["iptables-save", "-V"], ["iptables-save v1.", "(nf_tables)"]),
    (["ip6tables-restore", "-V"], ["ip6tables-restore v1."]),
    (["tcpdump", "--version"], ["tcpdump version", "libpcap"]),
    (["busybox", "uname", "-m"], [UNAME[ARCH]]),
    (["/usr/local/lib/kdiag/enter", "--", "/bin/busybox", "echo", "entered"], ["entered"]),
], ids=["manager-help", "python-imports", "iptables-save", "ip6tables-restore", "tcpdump",
        "busybox", "enter"])
def test_programs_run(image: Image, argv: list[str], expected: list[str]) -> None:
    r = run_in(image, argv)
    said = r.stdout + r.stderr
    assert r.returncode == 0, said
    for text in expected:
        assert text in said, said


@pytest.fixture(scope="module")
def netfilter_refused(image: Image) -> bool:
    """Whether netfilter's netlink socket is refused to the image's programs here: so under
    qemu-user (it implements no NETLINK_NETFILTER), never on a machine of the image's own
    architecture with nf_tables."""
    r = run_in(image, ["/usr/bin/python3", "-c",
                       "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)"])
    assert r.returncode == 0 or "[Errno 93] Protocol not supported" in r.stderr, r.stderr
    return r.returncode != 0


def test_iptables_starts(image: Image, netfilter_refused: bool) -> None:
    """iptables-nft sets up nf_tables before it even prints its version: where netfilter's
    netlink socket is refused, its own message for that is the proof it started (the binary
    and all its libraries loaded) — and all that can be shown here."""
    r = run_in(image, ["iptables", "-V"])
    if netfilter_refused:
        assert (r.returncode, r.stderr) == (1, "iptables: Failed to initialize nft: "
                                            "Protocol not supported\n"), r
    else:
        assert r.returncode == 0 and r.stdout.startswith("iptables v1."), r


@dataclass
class Served:
    client: ManagerClient
    pid: int  # the manager's, on this host
    parent: int  # the process that started it (unshare)


def ruleset(pid: int) -> str:
    """`nft list ruleset` in the network namespace of process ``pid`` (the host's nft)."""
    return subprocess.run(["nsenter", "-t", str(pid), "-n", "nft", "list", "ruleset"],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture
def manager(image: Image) -> Iterator[Served]:
    sock = image.root / "tmp" / "manager.sock"
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(
        # Its target is itself ($$: the shell exec's into it), as a pod's process would be
        # (this host's PID 1 is no process to enter).
        in_root(image, [f"KDIAG_TOKEN={TOKEN}", *image.config["config"]["Entrypoint"],
                        "--listen", "unix:/tmp/manager.sock", "--exit-on-stdin-eof"],
                RUN_IN_ROOT.rstrip() + ' --target-pid "$$"'),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        first = proc.stdout.readline()  # the manager's announcement: it is serving
        assert first, proc.communicate(timeout=30)[1]
        announced = json.loads(first)["kdiag_manager"]
        assert announced["address"] == "unix:/tmp/manager.sock", announced
        client = ManagerClient.connect(f"unix:{sock}", TOKEN, timeout=60)
        try:
            yield Served(client, int(announced["pid"]), proc.pid)
        finally:
            client.close()
        proc.stdin.close()  # --exit-on-stdin-eof: it ends, cleaning up after itself
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_emulated_manager_serves_a_client(manager: Served, netfilter_refused: bool) -> None:
    from kdiag import __version__

    client = manager.client
    assert client.version().version == __version__
    net = client.net()  # pyroute2's netlink through qemu
    assert [i["name"] for i in net.interfaces] == ["lo"], net.interfaces
    processes = {p.pid: p.argv for p in client.ps(all_processes=True)}  # not itself: its parent
    assert processes.get(manager.parent, [""])[0] == "unshare", processes.get(manager.parent)
    result = client.exec(["uname", "-m"])  # through `enter`, the image's busybox applet
    assert (result.exit_code, result.stdout.decode()) == (0, UNAME[ARCH] + "\n"), result
    # A redirect puts its rules in the manager's network namespace (netlink from the emulated
    # manager), and takes them away when it ends; where netfilter's netlink socket is refused
    # (qemu-user), it fails with the manager's clear error instead, leaving nothing behind.
    assert "8080" not in ruleset(manager.pid)
    spec = RedirectSpec("incoming", (8080,), fail_open=False)
    if netfilter_refused:
        with pytest.raises(ManagerError, match=r"cannot install redirect: iptables .*--dport 8080"
                                               r".*Protocol not supported"):
            client.redirect(spec, ("127.0.0.1", 9))
        assert "8080" not in ruleset(manager.pid)
        return
    handle = client.redirect(spec, ("127.0.0.1", 9))
    try:
        assert "dport 8080" in ruleset(manager.pid), ruleset(manager.pid)
    finally:
        handle.close(timeout=30)  # emulated: slower than the 5 s a native manager gets
    deadline = time.monotonic() + 30
    while "8080" in ruleset(manager.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "8080" not in ruleset(manager.pid), ruleset(manager.pid)
