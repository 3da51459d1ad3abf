"""The logic of ``from_target`` (issue 19): the spec, what is secret, the environment chosen,
the cluster names and addresses, folder copies with symlinks (a stand-in manager serving a
real folder), and masking many secrets fast and exactly as before."""

from __future__ import annotations

import os
import random
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kdiag.connect import hosts
from kdiag.connect.services import find, parse_wanted
from kdiag.context.environment import point_at, secret_values, select
from kdiag.context.files import Cancelled, copy_paths
from kdiag.context.folder import PrivateFolder
from kdiag.context.secrets import file_secrets, public_file, public_variable, service_discovery
from kdiag.context.spec import DEFAULT_EXCLUDE, parse
from kdiag.engine import masking
from kdiag.engine.masking import Masker
from kdiag.errors import ManagerError, TargetError
from kdiag.ownedfolders import OWNERS, is_stale
from kdiag.session.results import RemoteEntry, RemoteFile
from kdiag.steps.base import StepFailed
from kdiag.steps.fromtarget import read_context


def test_spec_defaults_and_shapes() -> None:
    spec = parse({"env": True, "files": ["/etc/api/", "/var//run/./secrets/app"]},
                 {"LOG": "debug"})
    assert spec.env and spec.include == ("*",) and spec.exclude == DEFAULT_EXCLUDE
    assert spec.files == ("/etc/api/", "/var/run/secrets/app")
    assert not spec.names and spec.overrides == {"LOG": "debug"} and spec.view == "auto"
    spec = parse({"env": {"include": ["APP_*"]}, "names": ["db", "cache.shared"],
                  "max_bytes": "1MiB"})
    assert spec.env and spec.include == ("APP_*",) and spec.exclude == DEFAULT_EXCLUDE
    assert spec.names and spec.services == ("db", "cache.shared") and spec.max_bytes == 1 << 20
    assert parse({"env": {"exclude": []}}).exclude == ()
    assert not parse({"env": False, "names": []}).anything
    for bad, message in (("etc/api", "not an absolute path"), ("/etc/../root", "'..'"),
                         ("/", "whole root")):
        with pytest.raises(ValueError, match=message):
            parse({"files": [bad]})


def test_environment_selection_and_what_is_secret() -> None:
    found = [("PATH", "/bin"), ("APP_TOKEN", "t0ken-value"), ("APP_TOKEN", "second"),
             ("LOG_LEVEL", "debug"), ("FLAG", "true"), ("API_SERVICE_HOST", "10.96.0.12"),
             ("API_PORT", "tcp://10.96.0.12:80"), ("HOME", "/root")]
    env = select(found, ("*",), DEFAULT_EXCLUDE)
    assert list(env) == ["APP_TOKEN", "LOG_LEVEL", "FLAG", "API_SERVICE_HOST", "API_PORT"]
    assert env["APP_TOKEN"] == "t0ken-value"  # the first, as getenv finds it
    assert select(found, ("APP_*", "PATH"), ()) == {"PATH": "/bin", "APP_TOKEN": "t0ken-value"}
    assert secret_values(env, ("LOG_*",)) == ["t0ken-value"]
    assert secret_values(env, ()) == ["t0ken-value", "debug"]
    pointed = point_at(env, {"10.96.0.12": "127.77.0.1"})
    assert pointed["API_SERVICE_HOST"] == "127.77.0.1"
    assert pointed["API_PORT"] == "tcp://127.77.0.1:80" and pointed["APP_TOKEN"] == "t0ken-value"


def test_service_discovery_variables_are_public_only_in_their_shape() -> None:
    assert service_discovery("API_PORT_80_TCP_ADDR", "10.96.0.12")
    assert service_discovery("API_PORT_80_TCP_PROTO", "tcp")
    assert service_discovery("API_SERVICE_PORT_HTTP", "80")
    assert not service_discovery("API_SERVICE_HOST", "hunter2")
    assert not service_discovery("DB_PASSWORD", "10.0.0.1")
    assert public_variable("FEATURE_X", "on-ish", ("FEATURE_*",))
    assert not public_variable("FEATURE_X", "on-ish", ("/etc/",))


def test_file_secrets_and_public_files() -> None:
    text = ('password = "hunter2-x"\nuser: admin-user\n  "token": "abc.def.ghi",\n'
            "debug=true\nexport KEY='k3y-value'\n# a comment line\n")
    values, whole = file_secrets(text)
    assert whole and values == [text, "hunter2-x", "admin-user", "abc.def.ghi", "k3y-value"]
    big, whole = file_secrets("x=" + "a" * (2 << 20) + "\nkey=value-1\n")
    assert not whole and big[-1] == "value-1"
    assert public_file("/etc/api/app.conf", ("/etc/api/",))
    assert public_file("/etc/api/app.conf", ("/etc/api/*.conf",))
    assert not public_file("/etc/api/app.conf", ("/etc/ap/", "APP_*"))


def test_cluster_names_and_addresses() -> None:
    assert hosts.address(0) == "127.77.0.1" and hosts.address(254) == "127.77.1.1"
    conf = "nameserver 10.96.0.10\nsearch shop.svc.corp.example svc.corp.example corp.example\n"
    assert hosts.cluster_domain(conf) == "corp.example"
    assert hosts.cluster_domain("nameserver 1.1.1.1\n") == "cluster.local"
    service = SimpleNamespace(name="db", namespace="shop")
    assert hosts.names(service, "shop", "cluster.local") == [  # type: ignore[arg-type]
        "db", "db.shop", "db.shop.svc", "db.shop.svc.cluster.local"]
    assert "db" not in hosts.names(service, "other", "cluster.local")  # type: ignore[arg-type]
    assert hosts.hosts_file("127.0.0.1 localhost\n", [("127.77.0.1", ["db", "db.shop"])]) == (
        "127.0.0.1 localhost\n# kdiag: cluster Services for this process\n"
        "127.77.0.1 db db.shop\n")
    assert parse_wanted("db", "shop") == ("db", "shop")
    assert parse_wanted("db.other.svc.cluster.local", "shop") == ("db", "other")


def _obj(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(**fields)


class _Core:
    """Services and pods as the API returns them (a stand-in for CoreV1Api)."""

    def __init__(self) -> None:
        pod = _obj(metadata=_obj(name="db-0", namespace="shop", deletion_timestamp=None,
                                 creation_timestamp=None),
                   status=_obj(phase="Running"),
                   spec=_obj(containers=[_obj(ports=[_obj(name="pg", container_port=5432)])]))
        port = _obj(port=5432, target_port="pg", protocol="TCP", name="pg")
        self.services = {
            "db": _obj(metadata=_obj(name="db", namespace="shop"),
                       spec=_obj(selector={"app": "db"}, ports=[port], cluster_ip="10.96.0.5")),
            "ext": _obj(metadata=_obj(name="ext", namespace="shop"),
                        spec=_obj(selector=None, ports=[port], cluster_ip="")),
            "dns": _obj(metadata=_obj(name="dns", namespace="shop"),
                        spec=_obj(selector={"app": "db"}, cluster_ip="10.96.0.9",
                                  ports=[_obj(port=53, target_port=53, protocol="UDP", name="")])),
        }
        self.pods = [pod]

    def read_namespaced_service(self, name: str, namespace: str, **_: Any) -> Any:
        return self.services[name]

    def list_namespaced_service(self, namespace: str, **_: Any) -> Any:
        return _obj(items=list(self.services.values()))

    def list_namespaced_pod(self, namespace: str, label_selector: str, **_: Any) -> Any:
        return _obj(items=self.pods if label_selector == "app=db" else [])


def test_services_found_by_name_or_all_with_reasons() -> None:
    core = _Core()
    found = find(core, "shop", ())
    assert [(s.name, s.pod, [(p.port, p.pod_port) for p in s.ports]) for s in found.services] \
        == [("db", "db-0", [(5432, 5432)])]
    assert found.skipped == ["shop/dns: it has no TCP port",
                             "shop/ext: it has no selector (no pods behind it to forward to)"]
    with pytest.raises(TargetError, match=r"^names: service shop/ext: it has no selector"):
        find(core, "shop", ("ext",))
    core.pods = []
    with pytest.raises(TargetError, match="no running pod matches app=db"):
        find(core, "shop", ("db.shop",))


class _Manager:
    """Serves a real folder as the target's root, through ListDir/ReadFile semantics (lstat
    listings; reads resolve symlinks inside the root) — a stand-in for the manager."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.reads = 0

    def _path(self, path: str) -> Path:
        here = self.root
        for part in [p for p in path.split("/") if p]:
            here = here / part
            while here.is_symlink():
                link = os.readlink(here)
                here = (self.root / link.lstrip("/")) if link.startswith("/") \
                    else here.parent / link
        return here

    def copy_from(self, remote: str, local: Path, *, max_bytes: int = 0) -> RemoteFile:
        path = self._path(remote)
        if path.is_dir():
            raise ManagerError(f"copy from {remote}: {remote}: is a directory",
                               "INVALID_ARGUMENT")
        if not path.exists():
            raise ManagerError(f"copy from {remote}: {remote}: No such file", "NOT_FOUND")
        self.reads += 1
        shutil.copyfile(path, local)
        return RemoteFile(remote, path.stat().st_size, 0o644, 0, 0, 0.0)

    def list_dir(self, remote: str, *, max_entries: int = 0) -> tuple[list[RemoteEntry], bool]:
        top = self._path(remote)
        entries = []
        for here, dirs, files in os.walk(top):
            for name in sorted(dirs) + sorted(files):
                path = Path(here) / name
                kind = "symlink" if path.is_symlink() else "dir" if path.is_dir() else "file"
                size = path.lstat().st_size
                entries.append(RemoteEntry(str(path.relative_to(top)), kind,
                                           RemoteFile("", size, 0o644, 0, 0, 0.0),
                                           os.readlink(path) if kind == "symlink" else ""))
            dirs[:] = [d for d in dirs if not (Path(here) / d).is_symlink()]
        entries.sort(key=lambda e: e.path)
        return entries, False


def _configmap(root: Path) -> None:
    data = root / "etc" / "cm"
    (data / "..2026_12_01").mkdir(parents=True)
    (data / "..2026_12_01" / "app.yaml").write_text("mode: x\n")
    (data / "..data").symlink_to("..2026_12_01")
    (data / "app.yaml").symlink_to("..data/app.yaml")
    (data / "abs-inside").symlink_to("/etc/cm/..data/app.yaml")
    (root / "shared").mkdir()
    (root / "shared" / "ca.pem").write_text("ca\n")
    (data / "ca.pem").symlink_to("/shared/ca.pem")
    (data / "up").symlink_to("../../shared")
    (root / "etc" / "single.conf").write_text("single\n")


def _stream_of(manager: _Manager, path: str, *, max_entries: int = 0,
               max_bytes: int = 0) -> Any:
    """ReadTree's stream, from the stand-in (entries, a file's bytes after it)."""
    entries, _ = manager.list_dir(path)
    for entry in entries:
        yield entry
        if entry.kind == "file":
            data = (manager._path(path) / entry.path).read_bytes()
            yield data[:3]
            yield data[3:]


@pytest.fixture(params=["stream", "file by file"])
def tree_reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Folders in one ReadTree stream, or (a manager without it) listed and read per file."""
    from kdiag.session import treeread

    def unimplemented(*args: Any, **kwargs: Any) -> Any:
        raise ManagerError("read: unimplemented", "UNIMPLEMENTED")
        yield

    monkeypatch.setattr(treeread, "read_tree", _stream_of if request.param == "stream"
                        else unimplemented)
    return str(request.param)


def test_folder_copy_keeps_links_inside_and_reads_through_the_others(
        tmp_path: Path, tree_reading: str) -> None:
    _configmap(tmp_path / "target")
    folder = PrivateFolder(tmp_path / "private")
    folder.root.mkdir(parents=True)
    manager = _Manager(tmp_path / "target")
    done = copy_paths(manager, ("/etc/cm", "/etc/cm/app.yaml", "/etc/single.conf"), folder,
                      1 << 20)
    # One ReadFile for the single file, one through the link that leaves the folder (and,
    # file by file, one per file): the folder itself came in one stream.
    assert manager.reads == (2 if tree_reading == "stream" else 3)
    cm, single = done.paths
    assert (cm.path, cm.kind, single.path, single.kind) == ("/etc/cm", "dir", "/etc/single.conf",
                                                            "file")
    local = folder.local("/etc/cm")
    assert os.readlink(local / "app.yaml") == "..data/app.yaml"
    assert os.readlink(local / "abs-inside") == "..data/app.yaml"  # made relative
    assert (local / "app.yaml").read_text() == "mode: x\n"
    assert not (local / "ca.pem").is_symlink() and (local / "ca.pem").read_text() == "ca\n"
    assert cm.links == 3 and sorted(cm.files) == ["/etc/cm/..2026_12_01/app.yaml",
                                                  "/etc/cm/ca.pem"]
    assert [n["path"] for n in cm.not_copied] == ["up"]  # a folder outside: not copied
    assert not os.access(local / "app.yaml", os.W_OK) or os.geteuid() == 0
    assert oct(os.stat(local).st_mode & 0o777) == "0o555"
    folder.remove()
    assert not folder.path.exists()


def test_folder_copy_limits_and_cancel(tmp_path: Path, tree_reading: str) -> None:
    _configmap(tmp_path / "target")
    folder = PrivateFolder(tmp_path / "private")
    folder.root.mkdir(parents=True)
    with pytest.raises(ManagerError, match="over max_bytes"):
        copy_paths(_Manager(tmp_path / "target"), ("/etc/cm/",), folder, 3)
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Cancelled):
        copy_paths(_Manager(tmp_path / "target"), ("/etc/cm/",), folder, 1 << 20, cancelled)


def test_private_folder_is_private_and_stale_ones_go(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from kdiag.context import folder as module

    monkeypatch.setattr(module, "base", lambda: str(tmp_path))
    dead = tmp_path / "kdiag-target-dead"
    dead.mkdir()
    (dead / OWNERS).write_text("[[4194311, \"1\"]]")
    assert is_stale(dead)
    folder = PrivateFolder.make()
    assert not dead.exists() and folder.path.parent == tmp_path
    assert oct(folder.path.stat().st_mode & 0o777) == "0o700" and not is_stale(folder.path)
    folder.remove()
    monkeypatch.undo()
    assert module.base() in ("/dev/shm", os.environ.get("XDG_RUNTIME_DIR"))  # memory, here


@dataclass
class _Ctx:
    target_spec: dict[str, Any]
    cancelled: threading.Event = field(default_factory=threading.Event)

    def evaluate(self, expression: str) -> Any:
        return {"target": self.target_spec}[expression]  # (as the run's scope: a name it has)

    def target(self) -> Any:
        raise AssertionError("the target must not be opened")


def test_pick_all_is_refused_before_the_target_is_opened() -> None:
    ctx = _Ctx({"kind": "kubernetes", "selector": "app=api", "pick": "all"})
    with pytest.raises(StepFailed, match=r"picks all pods.*one pod's context"):
        read_context({"argv": ["x"], "from_target": {"env": True}}, ctx, {})  # type: ignore
    assert read_context({"argv": ["x"], "from_target": {}}, ctx, {}) is None  # type: ignore


def test_many_secrets_mask_as_before_only_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookups by first characters (used with many secrets) give exactly what searching
    for every form gives, split points included."""
    rng = random.Random(19)
    alphabet = "ab-1"
    masker = Masker()
    masker.add_all(["".join(rng.choice(alphabet) for _ in range(rng.randint(4, 9)))
                    for _ in range(60)])
    for _ in range(2000):
        text = "".join(rng.choice(alphabet + "xyz") for _ in range(rng.randint(0, 40)))
        monkeypatch.setattr(masking, "_by_heads_is_cheaper", lambda forms, length: False)
        monkeypatch.setattr(masking, "INDEXED_TAIL_FORMS", 10**9)
        plain = masker.text(text), masker.split(text)
        monkeypatch.setattr(masking, "_by_heads_is_cheaper", lambda forms, length: length >= 4)
        monkeypatch.setattr(masking, "INDEXED_TAIL_FORMS", 0)
        assert (masker.text(text), masker.split(text)) == plain, text


def test_a_thousand_secrets_are_added_at_once() -> None:
    values = [f"value-{os.urandom(8).hex()}" for _ in range(1000)]
    masker = Masker()
    masker.add_all(values)
    text = "log line with " + values[500] + " and " + values[7].upper() + " in it"
    assert masker.text(text) == "log line with *** and *** in it"
    head, tail = masker.split("start " + values[3][:9])
    assert (head, tail) == ("start ", values[3][:9])


def test_a_run_with_the_targets_context_needs_the_manager_and_names_need_services() -> None:
    from types import SimpleNamespace

    from kdiag.preflight.demand import Demand, step_uses
    from kdiag.preflight.needs import needs

    def spec(name: str, body: object) -> object:
        return SimpleNamespace(name=name, kind="run", body=body, children=())

    uses = step_uses([spec("plain", {"argv": ["x"]}),  # type: ignore[list-item]
                      spec("env", {"argv": ["x"], "from_target": {"env": True}}),
                      spec("names", {"argv": ["x"], "from_target": {"names": ["db"]}})])
    assert [u.key for u in uses] == ["run", "run:from_target", "run:names"]
    target = {"kubernetes": {"namespace": "shop", "pod": "api"}}
    found = {str(n.access): n.reasons for n in needs(Demand(target, uses[:1]))}
    assert found == {}  # a plain local command needs nothing of the cluster
    found = {str(n.access): n.reasons for n in needs(Demand(target, uses))}
    assert found["patch pods/ephemeralcontainers"] == ["run 'env'", "run 'names'"]
    assert found["list services"] == ["run 'names'"] and "get services" in found
