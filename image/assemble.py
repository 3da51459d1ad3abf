#!/usr/bin/env python3
"""Assemble the manager image's root filesystem: only what the manager runs, nothing else.

Runs in the Dockerfile's build stage (Debian with python3, iptables, tcpdump and busybox-static
installed, the manager and its Python dependencies in a venv, ``enter`` compiled):

    python3 image/assemble.py --venv VENV --enter build/enter --out /rootfs [--check]

The root it writes holds
- the python3 interpreter and the part of its standard library that the manager and its
  dependencies import (found by ``modulefinder`` in their code, so a new import is picked up by
  the next build), as bytecode only;
- the packages of the venv (bytecode; the manager's own sources are kept, for readable
  tracebacks), minus pip and setuptools;
- ``xtables-nft-multi`` under its iptables/ip6tables(-save/-restore) names with every xtables
  extension, ``tcpdump``, Debian's ``busybox-static`` (with a link per applet, ``/bin/sh``
  included) and ``enter``;
- every shared library these load (``ldd``), at the paths the loader looks for them, with the
  build stage's symlinks on the way (a usr-merged ``/lib``, ``/etc/alternatives``).

Nothing names an architecture: paths come from the build stage itself (``sysconfig``, ``ldd``,
the packages' files), so the same Dockerfile builds amd64 and arm64 images. ``--check`` runs the
result in a chroot (imports every manager module and its dependencies, runs each tool) and fails
the build when anything is missing. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import modulefinder
import os
import py_compile
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

# Packages of the venv the manager never uses at run time.
SKIP_DISTRIBUTIONS = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "wheel")
# Imported by name at run time, invisible to modulefinder (with every codec, below).
ALWAYS = ("encodings", "site")
# Where modulefinder would go but the manager never does (tests, GUIs, installers, docs):
# leaving them out keeps their own imports out too.
NEVER = ("test", "tkinter", "turtle", "turtledemo", "idlelib", "ensurepip", "lib2to3",
         "pydoc_data", "pydoc", "doctest", "distutils", "venv", "pip",
         "setuptools", "_distutils_hack", "pkg_resources", "curses", "dbm",
         "xmlrpc", "tomllib", "zipapp", "pdb", "bdb", "cProfile", "profile", "pstats",
         "trace", "tabnanny", "webbrowser", "mailbox", "imaplib", "nntplib", "poplib",
         "smtplib", "ftplib", "telnetlib", "cgi", "cgitb", "wsgiref", "xml.dom", "xml.sax",
         "lzma", "bz2", "_lzma", "_bz2", "readline", "rlcompleter")
TOOLS = ("iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-restore",
         "ip6tables-restore")
ETC_FILES = ("etc/protocols", "etc/services", "etc/nsswitch.conf", "etc/ethertypes")
MANAGER_PACKAGE = "kdiag_manager"


def log(message: str) -> None:
    print(f"assemble: {message}", file=sys.stderr, flush=True)


class Root:
    """The root filesystem being written: copies paths of this system into it as they are."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.seen: set[str] = set()

    def dest(self, path: str) -> Path:
        return self.out / os.path.normpath(path).lstrip("/")

    def add(self, path: str) -> str:
        """Copy ``path`` (absolute, on this system) to the same path in the root, recreating
        every symlink met on the way; returns the real file's path on this system."""
        path = os.path.normpath(path)
        if path in self.seen:
            return os.path.realpath(path)
        self.seen.add(path)
        parts = Path(path).parts[1:]
        current = "/"
        for i, part in enumerate(parts):
            current = os.path.join(current, part)
            dest = self.dest(current)
            if os.path.islink(current):
                target = os.readlink(current)
                if not os.path.lexists(dest):
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(target, dest)
                rest = os.path.join(*parts[i + 1:]) if i + 1 < len(parts) else ""
                followed = os.path.normpath(os.path.join(os.path.dirname(current), target, rest))
                return self.add(followed)
            if i + 1 < len(parts) or os.path.isdir(current):
                if not dest.is_dir():
                    dest.mkdir()
                    shutil.copystat(current, dest)
                continue
            shutil.copy2(current, dest)
        return path

    def add_elf(self, path: str) -> None:
        """A binary or library and every shared library it needs."""
        real = self.add(path)
        for lib in shared_libraries(real):
            self.add(lib)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        dest = self.dest(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        dest.chmod(mode)

    def link(self, path: str, target: str) -> None:
        """A symlink at ``path`` (its folder resolved as on this system: usr-merged or not)."""
        folder = os.path.realpath(os.path.dirname(path))
        self.add(folder)
        dest = self.dest(os.path.join(folder, os.path.basename(path)))
        if not os.path.lexists(dest):
            os.symlink(target, dest)


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


_LDD_LINE = re.compile(r"^\s*(?:(\S+)\s+=>\s+)?(\S+)\s+\(0x[0-9a-f]+\)\s*$")


def shared_libraries(path: str) -> list[str]:
    """What the dynamic loader loads for ``path`` (none for a static binary)."""
    proc = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        if "not a dynamic executable" in proc.stdout + proc.stderr:
            return []
        raise SystemExit(f"assemble: ldd {path}: {proc.stderr.strip() or proc.stdout.strip()}")
    libs = []
    for line in proc.stdout.splitlines():
        if "not found" in line:
            raise SystemExit(f"assemble: {path} needs a library this system lacks: {line.strip()}")
        m = _LDD_LINE.match(line)
        if m and m.group(2).startswith("/"):
            libs.append(m.group(2))
    return libs


# --------------------------------------------------------------------------- Python


def stdlib_dirs() -> tuple[Path, Path]:
    """(the standard library, its extension modules' folder)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = Path(sysconfig.get_config_var("DESTSHARED") or stdlib / "lib-dynload")
    return stdlib, dynload


def _never(name: str) -> bool:
    return any(name == n or name.startswith(n + ".") for n in NEVER)


class Finder(modulefinder.ModuleFinder):
    """modulefinder that does not descend into the modules the manager never needs."""

    def import_hook(self, name: str, caller: Any = None, fromlist: Any = None,
                    level: int = -1) -> Any:
        if _never(name):
            return None
        return super().import_hook(name, caller, fromlist, level)

    def import_module(self, partname: str, fqname: str, parent: Any) -> Any:
        if _never(fqname):
            return None
        if fqname not in self.modules:
            # modulefinder fails on namespace packages (google.*): add those by hand.
            import importlib.machinery

            path = parent.__path__ if parent else self.path
            spec = importlib.machinery.PathFinder.find_spec(partname, path)
            if spec is not None and spec.loader is None and spec.submodule_search_locations:
                module: Any = self.add_module(fqname)
                module.__path__ = list(spec.submodule_search_locations)
                if parent:
                    setattr(parent, partname, module)
                return module
        return super().import_module(partname, fqname, parent)


def shipped(rel: Path) -> bool:
    """Whether a file of site-packages (``rel``, relative to it) goes into the image."""
    top = rel.parts[0]
    if top.split("-")[0].split(".")[0] in SKIP_DISTRIBUTIONS or "__pycache__" in rel.parts:
        return False
    if top.endswith((".pth", ".data", ".egg-info")) or rel.suffix == ".pyi" or rel.name == "py.typed":
        return False
    return not top.endswith(".dist-info") or rel.name in ("METADATA", "top_level.txt")


def python_files(site: Path) -> list[Path]:
    """The ``.py`` files of the packages shipped from ``site``."""
    return [p for p in sorted(site.rglob("*.py")) if shipped(p.relative_to(site))]


def needed_stdlib(site: Path) -> set[Path]:
    """Files of the standard library (sources and extension modules) the code in ``site``
    imports, directly or through other modules."""
    stdlib, dynload = stdlib_dirs()
    finder = Finder(path=[str(site), str(stdlib), str(dynload)])
    # Codecs are looked up by their encoding's name at run time: all of them, with what they
    # import (idna needs stringprep).
    codecs = [f"encodings.{p.stem}" for p in sorted((stdlib / "encodings").glob("*.py"))]
    for name in (*ALWAYS, *codecs):
        with contextlib.suppress(ImportError):
            finder.import_hook(name)
    for path in python_files(site):
        parts = path.relative_to(site).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        try:
            finder.import_hook(name)
        except (ImportError, SyntaxError) as exc:  # e.g. an optional backend's module
            log(f"not followed: {name}: {exc}")
    found: set[Path] = set()
    modules: dict[str, Any] = finder.modules
    for module in modules.values():
        file = getattr(module, "__file__", None)
        if not file:
            continue
        p = Path(file)
        if p.is_relative_to(stdlib) and not p.is_relative_to(site):
            found.add(p)
            if module.__path__:  # a package: its __init__ is the file; keep the folder too
                found.add(p.parent)
    if any(p.name == "sysconfig.py" for p in found):
        found.update(stdlib.glob("_sysconfigdata_*.py"))
    return found


def venv_site(venv: Path) -> Path:
    """The venv's site-packages folder (asked of its python: no version in a path here)."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True,
                         text=True, check=True).stdout.strip()
    return Path(out).resolve()


def compile_to(source: Path, dest: Path, shown_as: str, keep_source: bool) -> None:
    """Bytecode for ``source`` at ``dest`` (the module's .py path in the root): beside it as a
    sourceless ``.pyc``, or in ``__pycache__`` with the source kept. Hash-based and unchecked:
    the files' times in an image mean nothing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
    if keep_source:
        shutil.copy2(source, dest)
        import importlib.util

        cfile = importlib.util.cache_from_source(str(dest))
    else:
        cfile = str(dest.with_suffix(".pyc"))
    py_compile.compile(str(source), cfile=cfile, dfile=shown_as, doraise=True,
                       invalidation_mode=mode)


def add_python(root: Root, site: Path) -> None:
    """The interpreter, the standard library it needs, and the packages of ``site``."""
    executable = os.path.realpath(sys.executable)
    root.add_elf(executable)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    root.link(f"/usr/bin/{version}", os.path.basename(executable))
    root.link("/usr/bin/python3", version)
    extensions: list[Path] = []
    for path in sorted(needed_stdlib(site)):
        if path.is_dir():
            root.dest(str(path)).mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".py":
            compile_to(path, root.dest(str(path)), str(path), keep_source=False)
        else:
            extensions.append(path)
    for ext in extensions:
        root.add_elf(str(ext))
    # Packages go where this python's site module looks for them.
    target = Path(sysconfig.get_paths()["purelib"])
    for path in sorted(site.rglob("*")):
        rel = path.relative_to(site)
        if path.is_dir() or not shipped(rel):
            continue
        dest = root.dest(str(target / rel))
        if path.suffix == ".py":
            compile_to(path, dest, str(target / rel), keep_source=rel.parts[0] == MANAGER_PACKAGE)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
            if is_elf(str(path)):
                for lib in shared_libraries(str(path)):
                    root.add(lib)
    log(f"python: {executable}, packages in {target}")


# --------------------------------------------------------------------------- tools


def xtables_extensions(binary: str) -> list[str]:
    """Every xtables extension module the iptables binary can load (found beside the
    libxtables it links, in its ``xtables`` folder)."""
    for lib in shared_libraries(binary):
        if os.path.basename(lib).startswith("libxtables.so"):
            folder = Path(os.path.realpath(lib)).parent / "xtables"
            if folder.is_dir():
                return [str(p) for p in sorted(folder.glob("*.so"))]
    raise SystemExit(f"assemble: no xtables extension folder found for {binary}")


def which(name: str) -> str:
    path = shutil.which(name, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if not path:
        raise SystemExit(f"assemble: {name} is not installed in the build stage")
    return path


def add_tools(root: Root, enter: Path) -> None:
    """iptables (nft backend) under every name the manager runs, tcpdump, busybox, enter."""
    multi = os.path.realpath(which("iptables-nft"))
    root.add_elf(multi)
    for ext in xtables_extensions(multi):
        root.add_elf(ext)
    for tool in TOOLS:
        nft = which(f"{tool.replace('tables', 'tables-nft', 1)}")
        root.add(nft)
        root.link(f"/usr/sbin/{tool}", os.path.basename(nft))
    root.add_elf(which("tcpdump"))
    busybox = which("busybox")
    if shared_libraries(busybox):
        raise SystemExit(f"assemble: {busybox} is not static (install busybox-static)")
    root.add(busybox)
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    real_busybox = os.path.realpath(busybox)
    for applet in applets:
        path = "/" + applet
        if not os.path.lexists(root.dest(os.path.realpath(os.path.dirname(path)))
                               / os.path.basename(path)):
            root.link(path, real_busybox)
    root.dest("/usr/local/lib/kdiag").mkdir(parents=True, exist_ok=True)
    shutil.copy2(enter, root.dest("/usr/local/lib/kdiag/enter"))
    root.dest("/usr/local/lib/kdiag/enter").chmod(0o755)


def add_system(root: Root) -> None:
    """Mount points, /tmp, users, and the few /etc files tools read."""
    for folder, mode in (("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("run", 0o755),
                         ("tmp", 0o1777), ("root", 0o700), ("etc", 0o755)):
        root.dest(folder).mkdir(exist_ok=True)
        root.dest(folder).chmod(mode)
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        if os.path.islink("/" + top):  # usr-merged: /bin -> usr/bin, as in the build stage
            root.add("/" + top)
    root.write("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                             "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    root.write("etc/group", "root:x:0:\nnogroup:x:65534:\n")
    for name in ETC_FILES:
        if os.path.isfile("/" + name):
            root.add("/" + name)
    if not root.dest("etc/nsswitch.conf").exists():
        root.write("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n")


# --------------------------------------------------------------------------- check


CHECK_SCRIPT = """
import importlib, pkgutil, sys
import kdiag_manager
names = [m.name for m in pkgutil.walk_packages(kdiag_manager.__path__, "kdiag_manager.")]
for name in names:
    importlib.import_module(name)
import grpc, google.protobuf, ssl, ctypes, json, hashlib
from pyroute2 import IPRoute
assert "b\u00fccher.example".encode("idna") == b"xn--bcher-kva.example"
ssl.create_default_context()
print(len(names), "manager modules imported with", sys.version.split()[0])
"""


NETLINK_NETFILTER = 12  # linux/netlink.h (the socket module does not name it)
# What iptables-nft says when the kernel refuses it netfilter's netlink socket.
NFT_REFUSED = "Failed to initialize nft: Protocol not supported"


def netfilter_netlink_refused() -> bool:
    """Whether this machine refuses netfilter's netlink socket (EPROTONOSUPPORT): the case in
    an arm64 build on an amd64 host, where qemu-user (binfmt_misc, as `docker buildx` uses it
    too) runs the build stage and implements no NETLINK_NETFILTER."""
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER).close()
    except OSError as e:
        return e.errno == errno.EPROTONOSUPPORT
    return False


def check(out: Path) -> None:
    """Run the root's python and tools in a chroot; SystemExit naming what does not work.

    Where netfilter's netlink socket is refused (under qemu-user), ``iptables --version``
    cannot get past its nf_tables set-up: its refusal there (the program started, its libraries
    loaded) is all that can be checked, and is said so."""
    refused = netfilter_netlink_refused()
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LC_ALL": "C.UTF-8"}
    commands = [
        ["/usr/bin/python3", "-c", CHECK_SCRIPT],
        ["/usr/bin/python3", "-m", MANAGER_PACKAGE, "--help"],
        *([tool, "--version"] for tool in TOOLS if "save" not in tool and "restore" not in tool),
        ["iptables-save", "--version"], ["iptables-restore", "--version"],
        ["tcpdump", "--version"],
        ["/bin/sh", "-c", "busybox | head -1"],
        # enter without arguments prints its usage and exits 2: it runs.
        ["/bin/sh", "-c", "/usr/local/lib/kdiag/enter 2>&1; test $? = 2"],
    ]
    for argv in commands:
        proc = subprocess.run(["chroot", str(out), *argv], env=env, capture_output=True,
                              text=True, check=False)
        said = (proc.stdout + proc.stderr).strip().splitlines()
        if proc.returncode != 0 and refused and said == [f"{argv[0]}: {NFT_REFUSED}"]:
            log(f"check: {argv[0]}: started; netfilter's netlink socket is refused here "
                "(qemu-user has none), so not checked further")
            continue
        if proc.returncode != 0:
            raise SystemExit(f"assemble: check failed: {' '.join(argv)} exited with "
                             f"{proc.returncode}: {' | '.join(said[-5:])}")
        log(f"check: {argv[0]}: {said[0] if said else '(no output)'}")


def tree_size(out: Path) -> int:
    return sum(p.lstat().st_size for p in out.rglob("*") if not p.is_dir())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, required=True,
                    help="a venv of this python3 holding the manager and its dependencies")
    ap.add_argument("--enter", type=Path, required=True, help="the compiled enter helper")
    ap.add_argument("--out", type=Path, required=True, help="the root to write (must not exist)")
    ap.add_argument("--check", action="store_true", help="then run it in a chroot")
    args = ap.parse_args(argv)
    if sys.prefix != sys.base_prefix:
        raise SystemExit("assemble: run it with the python3 the image ships, not a venv's")
    if args.out.exists():
        raise SystemExit(f"assemble: {args.out} exists")
    args.out.mkdir(parents=True)
    root = Root(args.out.resolve())
    add_system(root)
    add_tools(root, args.enter)
    add_python(root, venv_site(args.venv))
    log(f"{args.out}: {tree_size(args.out) / 1e6:.1f} MB")
    if args.check:
        check(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
