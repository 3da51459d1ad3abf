"""``run: {from_target: ...}`` and ``kdiag exec`` against a node target (issue 19): a local
program gets the target process's environment and files — which exist only there — while
nothing of them reaches the console, a report or an artifact; the private folder goes away."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from demo.lab import Lab
from kdiag.context.folder import PREFIX, base
from kdiag.ownedfolders import OWNERS

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """\
import json, os, sys
token = os.environ.get("LAB_API_TOKEN", "")
conf = open(sys.argv[2]).read() if len(sys.argv) > 2 else ""
print("token:", token)
print("token upper:", token.upper())
print("token base64:", __import__("base64").b64encode(token.encode()).decode())
print("config:", conf)
print("level:", os.environ.get("LAB_LEVEL"))
sys.stderr.write("stderr token " + token + "\\n")
with open(sys.argv[1], "w") as f:
    json.dump({"token": token, "conf": conf, "level": os.environ.get("LAB_LEVEL"),
               "path": os.environ.get("PATH"), "root": os.environ.get("KDIAG_TARGET_ROOT"),
               "override": os.environ.get("LAB_OVERRIDDEN")}, f)
"""


def kdiag(args: list[str], tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kdiag", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "NO_COLOR": "1"})


def run_runbook(runbook: str, tmp_path: Path, *extra: str
                ) -> tuple[subprocess.CompletedProcess[str], dict]:
    path = tmp_path / "rb.yaml"
    path.write_text(textwrap.dedent(runbook))
    reports = [f"json={tmp_path / 'report.json'}", f"junit={tmp_path / 'report.xml'}",
               f"md={tmp_path / 'report.md'}", f"md-text={tmp_path / 'report.txt.md'}",
               f"html={tmp_path / 'report.html'}"]
    done = kdiag(["run", str(path), *[a for r in reports for a in ("--report", r)],
                  "--artifacts", str(tmp_path / "artifacts"), *extra], tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    return done, {s["name"]: s for s in data["runs"][0]["steps"]}


def secret_target(lab: Lab, app_binary: Path) -> dict[str, str]:
    """The app with an environment and a config file that exist only in it."""
    token = "tok-" + os.urandom(12).hex()
    password = "pw-" + os.urandom(10).hex()
    conf = f"password = {password}\nendpoint = http://db.internal:5432/orders\n"
    (lab.root / "etc" / "labapp").mkdir(parents=True)
    (lab.root / "etc" / "labapp" / "app.conf").write_text(conf)
    lab.start_app(app_binary, 8080, env={"LAB_API_TOKEN": token, "LAB_LEVEL": "verbose-mode",
                                         "LAB_OVERRIDDEN": "from-the-target"})
    assert not Path("/etc/labapp").exists() and "LAB_API_TOKEN" not in os.environ
    return {"token": token, "password": password, "conf": conf}


def leaked(values: list[str], places: list[Path], text: str = "") -> list[str]:
    """Every place (file, or the console) holding one of ``values`` or a common form of it."""
    forms = set()
    for value in values:
        forms |= {value, value.upper(), base64.b64encode(value.encode()).decode()}
    found = [f"console: {f}" for f in forms if f in text]
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        for path in files:
            data = path.read_bytes()
            found += [f"{path}: {f}" for f in forms if f.encode() in data]
    return found


def test_a_local_program_runs_with_the_targets_env_and_files_and_nothing_leaks(
        lab: Lab, app_binary: Path, tmp_path: Path) -> None:
    secret = secret_target(lab, app_binary)
    (tmp_path / "program.py").write_text(PROGRAM)
    proof = tmp_path / "proof.json"
    done, steps = run_runbook(f"""
        target: {{node: {{pid: {lab.app_pid}}}}}
        steps:
          - name: local build
            run:
              argv: [{sys.executable}, {tmp_path / 'program.py'}, {proof},
                     /etc/labapp/app.conf]
              env: {{LAB_OVERRIDDEN: local-value}}
              from_target: {{env: true, files: [/etc/labapp/], public: [LAB_LEVEL]}}
            register: build
    """, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    got = json.loads(proof.read_text())
    # The program had the target's values — read from its process and its root — ...
    assert got["token"] == secret["token"] and got["conf"] == secret["conf"]
    assert got["level"] == "verbose-mode" and got["override"] == "local-value"
    assert got["path"] == os.environ["PATH"]  # PATH is the container's: left out by default
    # ... and none of them is anywhere kdiag wrote or printed.
    places = [tmp_path / "artifacts", tmp_path / "report.json", tmp_path / "report.xml",
              tmp_path / "report.md", tmp_path / "report.txt.md", tmp_path / "report.html"]
    assert all(p.exists() for p in places), [p for p in places if not p.exists()]
    html = (tmp_path / "report.html").read_text()
    # Its output, masked (seen missing once under load: the end of the page says how).
    output_at = html.find("<h4>Output")
    assert "token: ***" in html, (html[output_at:][:3000] if output_at >= 0 else html[-3000:],
                                  done.stdout[-3000:])
    values = [secret["token"], secret["password"], secret["conf"].strip(),
              "http://db.internal:5432/orders"]
    assert leaked(values, places, done.stdout + done.stderr) == []
    stdout = next((tmp_path / "artifacts").rglob("stdout")).read_text()
    assert "token: ***" in stdout and "level: verbose-mode" in stdout  # public: shown
    result = steps["local build"]["result"]["from_target"]
    assert result["env"] == ["LAB_API_TOKEN", "LAB_LEVEL", "LAB_OVERRIDDEN"]
    assert result["files"][0]["path"] == "/etc/labapp" and result["files"][0]["files"] == 1
    assert result["view"] == "namespace"
    assert not Path(result["root"]).exists()  # the private folder is gone
    assert not Path("/etc/labapp").exists()  # and this machine's files never changed


def test_files_land_at_their_paths_read_only_also_where_no_folder_exists_here(
        lab: Lab, app_binary: Path, tmp_path: Path) -> None:
    """A path under / that does not exist here (a new root), one under an existing folder
    (a shadow of it), a Kubernetes-style ConfigMap folder of symlinks, and a link that leaves
    the folder (its file is copied in its place)."""
    data = lab.root / "labdata"
    (data / "..2026_12_01_00_00_00.1").mkdir(parents=True)
    (data / "..2026_12_01_00_00_00.1" / "app.yaml").write_text("mode: cm-value-1234\n")
    (data / "..data").symlink_to("..2026_12_01_00_00_00.1")
    (data / "app.yaml").symlink_to("..data/app.yaml")
    (lab.root / "shared").mkdir()
    (lab.root / "shared" / "ca.pem").write_text("-----CA-from-target-----\n")
    (data / "ca.pem").symlink_to("/shared/ca.pem")
    (lab.root / "etc" / "ssl" / "lab").mkdir(parents=True)
    (lab.root / "etc" / "ssl" / "lab" / "key.pem").write_text("key-from-target\n")
    lab.start_app(app_binary, 8080, env={})
    assert not Path("/labdata").exists() and not Path("/etc/ssl/lab").exists()
    done, steps = run_runbook(f"""
        target: {{node: {{pid: {lab.app_pid}}}}}
        steps:
          - name: look
            run:
              script: |
                cat /labdata/app.yaml /labdata/ca.pem /etc/ssl/lab/key.pem > {tmp_path}/seen
                ls /etc/ssl/certs > /dev/null && echo "etc/ssl kept" >> {tmp_path}/seen
                touch /labdata/new 2>> {tmp_path}/seen || echo "read-only" >> {tmp_path}/seen
              from_target: {{files: [/labdata, /etc/ssl/lab/key.pem], public: [/labdata/]}}
            register: look
    """, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = (tmp_path / "seen").read_text()
    assert seen.startswith("mode: cm-value-1234\n-----CA-from-target-----\nkey-from-target\n")
    assert "etc/ssl kept" in seen and "read-only" in seen
    copied = {f["path"]: f for f in steps["look"]["result"]["from_target"]["files"]}
    assert copied["/labdata"]["links"] == 2 and copied["/labdata"]["files"] == 2
    assert copied["/etc/ssl/lab/key.pem"]["kind"] == "file"
    report = (tmp_path / "report.json").read_text()
    assert "key-from-target" not in report and not Path("/labdata").exists()


def test_remap_view_names_the_folder_and_an_unknown_path_fails_clearly(
        lab: Lab, app_binary: Path, tmp_path: Path) -> None:
    secret = secret_target(lab, app_binary)
    done, steps = run_runbook(f"""
        target: {{node: {{pid: {lab.app_pid}}}}}
        steps:
          - name: remapped
            run:
              script: cat "$KDIAG_TARGET_ROOT/etc/labapp/app.conf" > {tmp_path}/seen
              from_target: {{files: [/etc/labapp/app.conf], view: remap}}
          - name: missing
            run:
              argv: ["true"]
              from_target: {{files: [/etc/no-such-file]}}
            continue_on_error: true
          - name: names on a node
            run:
              argv: ["true"]
              from_target: {{names: true}}
    """, tmp_path)
    assert done.returncode == 1
    assert (tmp_path / "seen").read_text() == secret["conf"]
    assert steps["remapped"]["status"] == "passed"
    assert steps["missing"]["status"] == "ignored"
    assert "/etc/no-such-file" in steps["missing"]["message"]
    assert steps["names on a node"]["message"] == ("from_target: names: a node target has "
                                                   "no cluster (names needs a Kubernetes "
                                                   "target)")


def _folders() -> set[str]:
    return {p.name for p in Path(base()).glob(PREFIX + "*")}


def test_ctrl_c_removes_the_private_folder_and_a_stale_one_goes_next_time(
        lab: Lab, app_binary: Path, tmp_path: Path) -> None:
    secret_target(lab, app_binary)
    stale = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base()))
    (stale / OWNERS).write_text(json.dumps([[2**22 + 7, "1"]]))  # a dead owner
    before = _folders() - {stale.name}
    (tmp_path / "rb.yaml").write_text(textwrap.dedent(f"""
        target: {{node: {{pid: {lab.app_pid}}}}}
        steps:
          - name: long
            run:
              script: echo started > {tmp_path}/started; sleep 60
              from_target: {{env: true, files: [/etc/labapp/]}}
    """))
    process = subprocess.Popen([sys.executable, "-m", "kdiag", "run", str(tmp_path / "rb.yaml"),
                                "-q"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "started").exists()
    assert not stale.exists()  # removed by this run, as its owner is gone
    during = _folders() - before
    assert len(during) == 1
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 130
    assert _folders() - before == set()


def test_a_background_command_keeps_its_folder_until_the_run_ends(
        lab: Lab, app_binary: Path, tmp_path: Path) -> None:
    secret = secret_target(lab, app_binary)
    done, steps = run_runbook(f"""
        target: {{node: {{pid: {lab.app_pid}}}}}
        steps:
          - name: server
            run:
              script: >-
                while :; do cat /etc/labapp/app.conf > {tmp_path}/seen.new;
                mv {tmp_path}/seen.new {tmp_path}/seen; sleep 0.1; done
              from_target: {{files: [/etc/labapp/]}}
            background: true
            register: server
          - name: still there
            wait: {{seconds: 0.5}}
            assert: ["server.from_target.root is defined"]
    """, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # Each read replaces `seen` whole (a kill between the shell's truncation and cat's write
    # must not look like an empty read); a read after the folder went would leave it empty.
    assert (tmp_path / "seen").read_text() == secret["conf"]
    assert not Path(steps["server"]["result"]["from_target"]["root"]).exists()


def test_env_bytes_arrive_exactly(lab: Lab, app_binary: Path, tmp_path: Path) -> None:
    """Values that are not UTF-8 reach the command byte for byte."""
    raw = b"caf\xe9-\xff\x00"[:-1]  # (no NUL: it ends an environment entry)
    env = {"LAB_RAW": os.fsdecode(raw), "LAB_EMPTY": ""}
    lab.start_app(app_binary, 8080, env=env)
    proof = tmp_path / "proof"
    done = kdiag(["exec", "--pid", str(lab.app_pid), "--env", "--", sys.executable, "-c",
                  f"import os; open({str(proof)!r}, 'wb').write(os.environb[b'LAB_RAW'] + "
                  "b'|' + str(b'LAB_EMPTY' in os.environb).encode()); print(os.environ['LAB_RAW'])"
                  ], tmp_path)
    assert done.returncode == 0, done.stderr
    assert proof.read_bytes() == raw + b"|True"
    assert done.stdout == "***\n"  # masked, although it is no UTF-8


def test_kdiag_exec_masks_what_it_read_and_passes_the_exit_code(
        lab: Lab, app_binary: Path, tmp_path: Path) -> None:
    secret = secret_target(lab, app_binary)
    script = 'echo "t=$LAB_API_TOKEN"; cat /etc/labapp/app.conf >&2; exit 7'
    done = kdiag(["exec", "--pid", str(lab.app_pid), "--env", "--file", "/etc/labapp/app.conf",
                  "--", "sh", "-c", script], tmp_path)
    assert done.returncode == 7
    assert done.stdout == "t=***\n"
    assert secret["password"] not in done.stderr and "***" in done.stderr
    shown = kdiag(["exec", "--pid", str(lab.app_pid), "--env", "--no-mask", "--", "sh", "-c",
                   'echo "t=$LAB_API_TOKEN"'], tmp_path)
    assert shown.stdout == f"t={secret['token']}\n"
    usage = kdiag(["exec", "--pid", str(lab.app_pid), "--", "true"], tmp_path)
    assert usage.returncode == 2
    assert usage.stderr.strip().splitlines()[-1] == ("kdiag: error: say what to take from the "
                                                     "target: --env, --file PATH, --names")


@pytest.mark.parametrize("files", [100])
def test_a_folder_of_many_files_is_copied_whole(lab: Lab, app_binary: Path, tmp_path: Path,
                                                files: int) -> None:
    folder = lab.root / "etc" / "many"
    folder.mkdir(parents=True)
    digest = hashlib.sha256()
    for index in range(files):
        body = os.urandom(256).hex()
        (folder / f"f{index:03d}.conf").write_text(body)
        digest.update(body.encode())
    lab.start_app(app_binary, 8080, env={})
    done, steps = run_runbook(f"""
        target: {{node: {{pid: {lab.app_pid}}}}}
        steps:
          - name: many
            run:
              script: cat /etc/many/* | sha256sum | cut -d' ' -f1 > {tmp_path}/sum
              from_target: {{files: [/etc/many/]}}
    """, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "sum").read_text().strip() == digest.hexdigest()
    assert steps["many"]["result"]["from_target"]["files"][0]["files"] == files
