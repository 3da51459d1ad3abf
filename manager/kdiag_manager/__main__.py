"""Entry point: ``python -m kdiag_manager`` (also the manager image's entrypoint).

Startup order matters:
1. join the target's network namespace (node mode) before any thread exists, so that every
   thread — including gRPC's — lives there;
2. take the token from $KDIAG_TOKEN (or its hash from $KDIAG_TOKEN_SHA256), scrub it from
   the environment, become non-dumpable;
3. remove stale tagged rules; start the server; print ONE machine-readable first line:
   ``{"kdiag_manager": {"version": ..., "address": "127.0.0.1:PORT" | "unix:/path", "pid": N}}``
4. run until SIGTERM/SIGINT, stdin EOF (``--exit-on-stdin-eof``), parent death or, with
   ``--exit-when-idle``, that long without a redirect; then remove every rule this manager
   installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time

from . import __version__, sysutil

EXIT_USAGE = 2
EXIT_ENV = 3


def _lane_address(lane: str, listen: str) -> str:
    """Where the lane listens ('' for none): ``auto`` is beside the gRPC address (the same
    host, a port of its own; a unix socket ``<path>.lane``)."""
    if lane == "off":
        return ""
    if lane != "auto":
        return lane
    if listen.startswith("unix:"):
        return f"{listen}.lane"
    return f"{listen.rsplit(':', 1)[0]}:0"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(prog="kdiag_manager", description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:0",
                   help="HOST:PORT (port 0: random) or unix:/path (default: %(default)s)")
    p.add_argument("--lane", default="auto",
                   help="where the lane for redirected connections listens: HOST:PORT, "
                        "unix:/path, auto (beside --listen) or off (default: %(default)s)")
    p.add_argument("--target-pid", type=int, default=None,
                   help="the target process (default: PID 1 when it is not the manager)")
    p.add_argument("--join-netns", action="store_true",
                   help="join the target's network namespace first (node mode)")
    p.add_argument("--node-mode", action="store_true", help="running beside a host process")
    p.add_argument("--session", default=None, help="default rule tag session id (random)")
    p.add_argument("--enter", default=None, help="path of the enter helper ($KDIAG_ENTER)")
    p.add_argument("--busybox", default=None, help="path of a static busybox ($KDIAG_BUSYBOX)")
    p.add_argument("--exit-on-stdin-eof", action="store_true",
                   help="exit (removing rules) when stdin reaches EOF: the parent is gone")
    p.add_argument("--parent-death-signal", action="store_true",
                   help="get SIGTERM when the parent process dies (prctl PR_SET_PDEATHSIG)")
    p.add_argument("--remove-on-exit", default=None, metavar="DIR",
                   help="a folder to remove when the manager exits (node mode: the folder of "
                        "its socket, which the CLI cannot remove if it was killed)")
    p.add_argument("--exit-when-idle", type=float, default=0, metavar="SECONDS",
                   help="exit once no redirect has run for SECONDS, counted from the start "
                        "too (an expose pod whose client is gone ends by itself); 0: never")
    p.add_argument("--cleanup-only", action="store_true",
                   help="remove stale rules (and those of --session) and exit")
    p.add_argument("--log-level", default=os.environ.get("KDIAG_MANAGER_LOG", "WARNING"))
    return p.parse_args(argv)


def _fail(code: int, message: str) -> int:
    # The first line is machine-readable in failures too, so the CLI can show the cause.
    print(json.dumps({"kdiag_manager": {"version": __version__, "error": message}}), flush=True)
    print(f"kdiag_manager: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the manager; returns the process exit status."""
    args = parse_args(argv)
    from . import memory

    memory.tune()  # before any thread allocates
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="kdiag_manager %(levelname)s %(name)s: %(message)s")
    from .config import Config, default_target_pid, find_busybox, find_enter, host_target_pid

    host_target = args.target_pid is None and os.environ.get("KDIAG_TARGET") == "host"
    if args.target_pid is not None:
        target_pid: int | None = args.target_pid
    elif host_target:  # a node target: the host itself
        target_pid = host_target_pid()
    else:
        target_pid = default_target_pid(os.environ.get("KDIAG_TARGET_CONTAINER_ID", ""))
    if args.join_netns:
        if target_pid is None:
            return _fail(EXIT_USAGE, "--join-netns needs --target-pid")
        try:
            sysutil.setns_path(f"/proc/{target_pid}/ns/net", sysutil.CLONE_NEWNET)
        except OSError as exc:
            return _fail(EXIT_ENV, f"cannot join the network namespace of PID {target_pid}: "
                                   f"{exc.strerror or exc}")
    session = args.session or os.urandom(6).hex()

    from .iptables import Iptables, IptablesError
    from .liveness import remove_stale_rules

    iptables = Iptables()
    try:
        removed = remove_stale_rules(iptables)
        if args.cleanup_only and args.session:
            removed += iptables.remove_sessions({args.session})
    except IptablesError as exc:
        removed = []
        logging.getLogger("kdiag_manager").warning("cannot check for stale rules: %s", exc)
    if args.cleanup_only:
        print(json.dumps({"kdiag_manager": {"version": __version__, "removed":
                                            [r.save_line() for r in removed]}}), flush=True)
        return 0

    from .config import take_token

    try:
        token = take_token()
    except ValueError as exc:
        return _fail(EXIT_USAGE, str(exc))
    if not token:
        return _fail(EXIT_USAGE, "KDIAG_TOKEN (or KDIAG_TOKEN_SHA256) is not set: refusing to "
                                 "run without a session token")
    try:
        sysutil.set_dumpable(False)
        if args.parent_death_signal:
            sysutil.set_parent_death_signal(signal.SIGTERM)
    except OSError as exc:
        return _fail(EXIT_ENV, str(exc))

    from . import redirect
    from .server import build_server

    config = Config(target_pid=target_pid, enter_path=find_enter(args.enter),
                    busybox_path=find_busybox(args.busybox), session=session,
                    node_mode=args.node_mode or args.join_netns, host_target=host_target)
    listen = args.listen
    if listen.startswith("unix:"):
        path = listen[5:]
        if os.path.exists(path):
            os.unlink(path)
    try:
        built = build_server(config, token, listen, iptables, _lane_address(args.lane, listen))
        server, address = built.server, built.address
        server.start()
    except (OSError, RuntimeError) as exc:
        return _fail(EXIT_ENV, f"cannot listen on {listen}: {exc}")
    if listen.startswith("unix:"):
        os.chmod(listen[5:], 0o600)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    if args.exit_on_stdin_eof:
        def watch_stdin() -> None:
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True, name="stdin-watch").start()

    print(json.dumps({"kdiag_manager": {"version": __version__, "address": address,
                                        "lane": built.lane_address, "pid": os.getpid(),
                                        "session": session, "target_pid": target_pid}}),
          flush=True)
    # Many pump threads: hand the GIL over sooner than the default 5 ms, so that a thread woken
    # by the network does not wait behind a busy one (connection setup latency).
    sys.setswitchinterval(0.0005)
    sysutil.release_free_memory()  # startup garbage back to the OS: idle RSS matters in pods
    idle_since = time.monotonic()
    try:
        while not stop.wait(0.5):
            if redirect.running():
                idle_since = time.monotonic()
            elif args.exit_when_idle and time.monotonic() - idle_since >= args.exit_when_idle:
                logging.getLogger("kdiag_manager").warning(
                    "no redirect for %gs: exiting", args.exit_when_idle)
                break
    finally:
        redirect.stop_all()  # rules first (all of them): the target's traffic must not wait
        built.stop(grace=1)
        for path in (listen, built.lane_address):
            if path.startswith("unix:"):
                with contextlib.suppress(OSError):
                    os.unlink(path[5:])
        if args.remove_on_exit:
            sysutil.remove_tree(args.remove_on_exit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
