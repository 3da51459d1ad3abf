"""README promises of the manager step types and `kdiag run --pid`, each checked for its effect
against a node target (the shell-less app in its own namespaces): the `shell` step's `env`,
`inherit_env`, `stdin` and `workdir`; the `capture` step's `interface` and `snaplen`."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from demo.lab import Lab

from .test_steps import kdiag_run


def test_shell_env_stdin_and_workdir_reach_the_command_in_the_target(app: Lab,
                                                                    tmp_path: Path) -> None:
    (app.root / "srv" / "data").mkdir(parents=True)
    (app.root / "srv" / "data" / "here.txt").write_text("x")
    code, output, steps = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: env
            shell: {{script: 'echo "[$GREETING] [$N]"', env: {{GREETING: hi there, N: 3}}}}
            register: with_env
            assert: ["with_env.stdout == '[hi there] [3]\\\\n'"]
          - name: stdin
            shell: {{argv: [wc, -c], stdin: "sixteen bytes!!\\n"}}
            register: stdin
            assert: ["stdin.stdout | trim == '16'"]
          - name: workdir
            shell: {{script: "pwd; ls", workdir: /srv/data}}
            register: wd
            assert: ["wd.stdout == '/srv/data\\\\nhere.txt\\\\n'"]
          - name: default workdir
            shell: {{script: "pwd"}}
            register: root
            assert: ["root.stdout != '/srv/data\\\\n'"]
    """, tmp_path)
    assert code == 0, output
    assert all(s["status"] == "passed" for s in steps.values()), steps


def test_shell_inherit_env_false_starts_from_an_empty_environment(app: Lab,
                                                                 tmp_path: Path) -> None:
    # The app was started by the test (pytest names the test in its environment): a shell
    # step starts from the app's environment, unless inherit_env is false.
    code, output, _ = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: inherited
            shell: {{script: 'echo "[$PYTEST_CURRENT_TEST]"'}}
            register: inherited
            assert: ["'test_shell_inherit_env_false' in inherited.stdout"]
          - name: clean
            shell: {{script: 'echo "[$PYTEST_CURRENT_TEST] [$ONLY]"', inherit_env: false,
                     env: {{ONLY: me}}}}
            register: clean
            assert: ["clean.stdout == '[] [me]\\n'"]
    """, tmp_path)
    assert code == 0, output


def _pcap_records(path: Path) -> list[tuple[int, int]]:
    """(captured length, original length) of each packet of a classic pcap file."""
    data = path.read_bytes()
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    records, offset = [], 24
    while offset + 16 <= len(data):
        _, _, incl, orig = struct.unpack(order + "IIII", data[offset:offset + 16])
        records.append((incl, orig))
        offset += 16 + incl
    assert offset == len(data), "a truncated pcap"
    return records


def test_capture_interface_and_snaplen(app: Lab, tmp_path: Path) -> None:
    """``interface: lo`` sees what the target sends itself and not what comes over its veth;
    ``snaplen`` keeps at most that many bytes of each packet (the original length is kept)."""
    big = "x" * 1200
    code, output, steps = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: loopback only
            capture: {{filter: "tcp port 8080", interface: lo, file: lo.pcap}}
            background: true
            register: lo
          - name: short packets
            capture: {{filter: "tcp port 8080", snaplen: 64, file: short.pcap}}
            background: true
            register: short
          - name: over the veth
            run: {{argv: [ip, netns, exec, {app.client_ns}, busybox, wget, -qO-,
                         --post-data, "{big}", "http://{app.app_ip}:8080/"]}}
          - name: inside, over loopback
            probe: {{url: "http://127.0.0.1:8080/"}}
          - wait: 500ms
          - stop: loopback only
          - stop: short packets
          - name: counted
            assert: ["short.packets > 4", "short.reason == 'stopped'"]
    """, tmp_path)
    assert code == 0, output
    lo, short = Path(steps["loopback only"]["result"]["file"]), \
        Path(steps["short packets"]["result"]["file"])
    on_lo = subprocess.run(["tcpdump", "-nr", str(lo)], capture_output=True, text=True,
                           check=True).stdout
    assert "127.0.0.1.8080" in on_lo
    assert app.app_ip not in on_lo  # the veth's traffic was not captured on lo
    records = _pcap_records(short)
    assert len(records) > 4
    assert all(incl <= 64 for incl, _ in records), records
    assert any(orig > 1200 for _, orig in records), records  # the big one, cut to 64 bytes


def test_run_pid_targets_the_process_whatever_the_runbook_names(app: Lab,
                                                                tmp_path: Path) -> None:
    code, output, steps = kdiag_run("""
        target:
          kubernetes: {namespace: nowhere, pod: no-such-pod}
        steps:
          - name: look
            ps: {}
            register: procs
            assert: ["target.kind == 'node'", "8080 in procs.ports"]
    """, tmp_path, "--pid", str(app.app_pid))
    assert code == 0, output
    assert steps["look"]["status"] == "passed"
    assert any(p["pid"] == app.app_pid and p["is_target"]
               for p in steps["look"]["result"]["processes"])
