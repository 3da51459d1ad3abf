"""The ``kdiag`` (and ``kubectl kdiag``) entry point.

Only argparse is imported up front so that ``kdiag --help`` starts fast; each command's module
is imported when that command runs.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from kdiag import __version__
from kdiag.cli import traffic_commands as traffic
from kdiag.errors import EXIT_INTERRUPTED, EXIT_INVALID, KdiagError

EPILOG = """\
exit codes:
  0    all steps and assertions passed
  1    a step or assertion failed (also a background step's own work, e.g. its process)
  2    invalid runbook or usage (the message names file:line:col)
  3    environment error (not root, cluster unreachable, RBAC denied, pod gone, manager
       gone, ...), also under background work
  130  interrupted

examples:
  kdiag validate runbooks/*.yaml
  kdiag run runbooks/demo.yaml --set pid=1234 --report junit=report.xml
  kdiag run runbooks/redirect-api.yaml --step
  kdiag schema > runbook.schema.json
  kdiag doctor -n shop -f runbooks/redirect-api.yaml   # RBAC, Pod Security, image, ...
  kdiag shell -n shop deploy/api                 # a shell in a pod, even a distroless one
  kdiag shell -n shop deploy/api --all -- cat /etc/hostname   # on every ready pod
  kdiag exec -n shop --pod api-0 --env --file /etc/api/ -- ./api   # run as the pod would
  sudo kdiag connect -n shop --service api -- curl -s http://api:8080/   # Services by name
  kdiag expose -n shop checkout-preview 8080 --to 127.0.0.1:3000   # a local port as a Service
  kdiag redirect -n shop deploy/api --all 8080:9000   # every replica's 8080 to localhost:9000
  kdiag logs -n shop -l app=shop -c all -- curl -s localhost:8080/order
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _runbook_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="set a param (repeatable)")
    parser.add_argument("--values", action="append", default=[], metavar="FILE",
                        help="a YAML file of param values (repeatable; --set wins)")
    parser.add_argument("--path", action="append", default=[], metavar="DIR",
                        help="a folder of runbooks for include (repeatable; also KDIAG_PATH)")


def _run(run: argparse.ArgumentParser) -> None:
    run.description = "Run a runbook step by step and report the results."
    run.epilog = ("examples:\n  kdiag run rb.yaml --set port=8080 --report junit=out.xml\n"
                  "  kdiag run rb.yaml --step --start-at 'call the api'\n"
                  "  kdiag run rb.yaml --dry-run")
    run.add_argument("file", help="the runbook (YAML)")
    _runbook_inputs(run)
    run.add_argument("--report", action="append", default=[], metavar="KIND=PATH",
                     help="also write a report: json=PATH, junit=PATH, md=PATH (Markdown, a "
                          "Mermaid timeline), md-text=PATH (a text timeline) or html=PATH "
                          "(repeatable)")
    run.add_argument("--artifacts", metavar="DIR",
                     help="keep every step's output (and captures, copies) in DIR")
    run.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    run.add_argument("--step", action="store_true",
                     help="ask before each step (needs a terminal)")
    run.add_argument("--start-at", metavar="STEP", help="skip the steps before STEP")
    run.add_argument("--timeout", metavar="DURATION",
                     help="default timeout of each step (e.g. 5m)")
    run.add_argument("--pid", type=int, help="target this host process (node mode)")
    run.add_argument("--via", choices=["ephemeral", "node", "auto"],
                     help="how the manager reaches the runbook's pod: an ephemeral container, "
                          "a privileged pod on its node, or auto (the node when the ephemeral "
                          "container is refused); overrides the target's via")
    run.add_argument("--node-namespace", metavar="NS",
                     help="where the pod on the node goes (a namespace that allows privileged "
                          "pods); overrides the target's node_namespace")
    run.add_argument("--max-output", metavar="SIZE",
                     help="bytes of each command output stream kept in memory for register "
                          "and reports, half from its start, half from its end (default 2MiB; "
                          "the whole output is in the artifacts)")
    run.add_argument("--quiet", "-q", action="store_true", help="no console report")
    run.set_defaults(handler="kdiag.cli.run")


def _validate(validate: argparse.ArgumentParser) -> None:
    validate.description = ("Check runbooks: YAML, fields, types, step types, names, "
                            "templates, includes. With --set/--values, also the params.")
    validate.epilog = "example:\n  kdiag validate runbooks/*.yaml"
    validate.add_argument("files", nargs="+", metavar="FILE")
    _runbook_inputs(validate)
    validate.set_defaults(handler="kdiag.cli.validate")


def _schema(schema: argparse.ArgumentParser) -> None:
    schema.description = ("Print the runbook JSON Schema (Draft 2020-12). Editors use it "
                          "with\n  # yaml-language-server: $schema=path/to/runbook.schema.json")
    schema.epilog = "example:\n  kdiag schema > runbook.schema.json"
    schema.set_defaults(handler="kdiag.cli.schema")


def _shell(shell: argparse.ArgumentParser) -> None:
    from kdiag.cli.adhoc.targeting import TARGET_HELP, add_target_flags

    shell.description = ("An interactive busybox shell in the target's namespaces and root, "
                         "also when its image has no shell. With -- COMMAND, run that instead; "
                         "without a terminal, a script is read from standard input.")
    shell.epilog = ("examples:\n  kdiag shell -n shop api-0\n"
                    "  kdiag shell -l app=api -- cat /etc/resolv.conf\n"
                    "  kdiag shell deploy/api --all -- cat /etc/hostname   # each ready pod\n"
                    "  kdiag shell --pid 1234                 # a process on this host")
    shell.usage = "%(prog)s [TARGET] [options] [-- COMMAND...]"
    add_target_flags(shell)
    shell.add_argument("words", nargs="*", metavar="TARGET", help=TARGET_HELP)
    shell.set_defaults(cmd=[])
    shell.set_defaults(handler="kdiag.cli.adhoc.shell")


def _exec(exec_: argparse.ArgumentParser) -> None:
    from kdiag.cli.adhoc.targeting import TARGET_HELP, add_target_flags
    from kdiag.context.spec import DEFAULT_EXCLUDE

    exec_.description = ("Run a command on this machine with the target's context: the "
                         "environment of its main process (--env), files and folders of its "
                         "root, read-only at their paths (--file), cluster Service names "
                         "(--names). What is read is secret: the command's output is masked.")
    exec_.epilog = ("examples:\n  kdiag exec -n shop api-0 --env --file /etc/api/ -- ./api\n"
                    "  kdiag exec deploy/api -n shop --env --names -- python3 -m app\n"
                    "  kdiag exec --pid 1234 --env --exclude 'AWS_*' -- env")
    exec_.usage = "%(prog)s [TARGET] [options] -- COMMAND..."
    add_target_flags(exec_, all_pods=False)
    # Not offered, but refused with its reason (one pod's context) rather than "unrecognized".
    exec_.add_argument("--all", dest="all_pods", action="store_true", help=argparse.SUPPRESS)
    group = exec_.add_argument_group("context")
    group.add_argument("--env", action="store_true",
                       help="the environment of the target's main process")
    group.add_argument("--include", action="append", default=[], metavar="PATTERN",
                       help="only variables matching (repeatable; implies --env)")
    group.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                       help="leave these variables out (repeatable; implies --env; default "
                            + " ".join(DEFAULT_EXCLUDE) + ")")
    group.add_argument("--set-env", action="append", default=[], metavar="NAME=VALUE",
                       help="a local value that wins over the target's (repeatable)")
    group.add_argument("--file", action="append", default=[], metavar="PATH",
                       help="a file or folder of the target's root (repeatable)")
    group.add_argument("--names", action="store_true",
                       help="every Service of the target's namespace by name")
    group.add_argument("--name", action="append", default=[], metavar="SERVICE",
                       help="this Service by name: NAME or NAME.NAMESPACE (repeatable)")
    group.add_argument("--public", action="append", default=[], metavar="NAME|PATH",
                       help="a variable (pattern) or file whose value is not secret")
    group.add_argument("--view", choices=["auto", "namespace", "remap"], default="auto",
                       help="files at their paths in a private mount namespace, or in "
                            "$KDIAG_TARGET_ROOT (remap); default auto")
    group.add_argument("--no-mask", action="store_true",
                       help="give the command the terminal (its output is not masked)")
    exec_.add_argument("words", nargs="*", metavar="TARGET", help=TARGET_HELP)
    exec_.set_defaults(cmd=[], handler="kdiag.cli.adhoc.exec")


def _connect(connect: argparse.ArgumentParser) -> None:
    from kdiag.cli.adhoc.connect import add_arguments

    add_arguments(connect)


def _expose(expose: argparse.ArgumentParser) -> None:
    from kdiag.cli.adhoc.expose import add_arguments

    add_arguments(expose)


def _ps(ps: argparse.ArgumentParser) -> None:
    from kdiag.cli.adhoc.targeting import TARGET_HELP, add_target_flags

    ps.description = ("List the target's processes and their listening ports (the target "
                      "process is marked *).")
    ps.epilog = ("examples:\n  kdiag ps -n shop deploy/api\n  kdiag ps -n shop svc/api --all"
                 "     # each ready pod behind the Service\n  kdiag ps --pid 1234")
    add_target_flags(ps)
    ps.add_argument("words", nargs="*", metavar="TARGET", help=TARGET_HELP)
    ps.add_argument("-A", "--all-processes", action="store_true",
                    help="every process the manager sees, not only the target's")
    ps.set_defaults(handler="kdiag.cli.adhoc.ps")


def _logs(logs: argparse.ArgumentParser) -> None:
    from kdiag.cli.adhoc.targeting import TARGET_HELP, add_target_flags

    logs.description = ("Follow the logs of every pod a selector matches (or one pod), each "
                        "line prefixed with pod/container, until Ctrl-C; or around a local "
                        "command, then exit with its exit code.")
    logs.epilog = ("examples:\n  kdiag logs -n shop -l app=shop -c all\n"
                   "  kdiag logs -n shop deploy/api        # every pod of it, and new ones\n"
                   "  kdiag logs -l app=shop --since 5m -- curl -s localhost:8080/order")
    logs.usage = "%(prog)s [TARGET] [options] [-- COMMAND...]"
    add_target_flags(logs, container_help="a container name, or all (default: each pod's "
                                          "default container)", all_pods=False)
    logs.add_argument("words", nargs="*", metavar="TARGET", help=TARGET_HELP)
    logs.add_argument("--since", metavar="DURATION", help="also the lines of this long before")
    logs.add_argument("--drain", metavar="DURATION", default="2s",
                      help="after the command, keep following this long (default 2s)")
    logs.set_defaults(handler="kdiag.cli.adhoc.logs", cmd=[])


def _doctor(doctor: argparse.ArgumentParser) -> None:
    from kdiag.cli.adhoc.targeting import TARGET_HELP, add_target_flags

    doctor.description = ("Check, before anything is changed, everything a run will need: the "
                          "cluster and its version, each RBAC verb (SelfSubjectAccessReview), "
                          "ephemeral containers, the namespace's Pod Security level, the manager "
                          "image; in node mode root, iptables and the kernel. Exit 0: nothing "
                          "stops a run; 3: something does (the FAIL lines say what to do).")
    doctor.epilog = ("examples:\n  kdiag doctor -n shop                      # what kdiag may "
                     "use in namespace shop\n  kdiag doctor -f runbooks/redirect-api.yaml "
                     "--set namespace=shop\n  kdiag doctor -n shop -l app=api --json   # for CI")
    add_target_flags(doctor, all_pods=False)
    doctor.add_argument("words", nargs="*", metavar="TARGET", help=TARGET_HELP)
    doctor.add_argument("-f", "--file", metavar="RUNBOOK",
                        help="check what this runbook's steps need, for its target")
    _runbook_inputs(doctor)
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.set_defaults(handler="kdiag.cli.doctor")


def _gc(gc_: argparse.ArgumentParser) -> None:
    gc_.description = ("Remove what dead kdiag runs left (pod copies, node pods, expose pods "
                       "and Services): objects labelled app.kubernetes.io/managed-by=kdiag whose "
                       "run's Lease expired (30 s after its last renewal). A live run's objects "
                       "are left alone.")
    gc_.epilog = "examples:\n  kdiag gc -n shop --dry-run\n  kdiag gc -A"
    gc_.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    gc_.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    gc_.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    gc_.add_argument("--kubeconfig", help="a kubeconfig file (default: $KUBECONFIG, "
                     "~/.kube/config, else in-cluster)")
    gc_.add_argument("--context", help="the kubeconfig context")
    gc_.set_defaults(handler="kdiag.cli.gc")


def _completion(completion: argparse.ArgumentParser) -> None:
    completion.description = ("Print a shell completion script: commands, flags, runbook files, "
                              "pod names, namespaces and contexts.")
    completion.epilog = ("install:\n  bash: source <(kdiag completion bash)\n"
                         "  zsh:  kdiag completion zsh > \"${fpath[1]}/_kdiag\"\n"
                         "  fish: kdiag completion fish > ~/.config/fish/completions/kdiag.fish\n"
                         "  kubectl kdiag, installed by krew (pip installs it itself):\n"
                         "        kubectl kdiag completion kubectl > "
                         "~/.krew/bin/kubectl_complete-kdiag\n"
                         "        chmod +x ~/.krew/bin/kubectl_complete-kdiag")
    completion.add_argument("shell", choices=["bash", "zsh", "fish", "kubectl"])
    completion.set_defaults(handler="kdiag.cli.completion")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "run": ("run a runbook", _run),
    "validate": ("check runbooks without running them", _validate),
    "schema": ("print the runbook JSON Schema", _schema),
    "shell": ("a shell (or one command) inside the target", _shell),
    "exec": ("a local command with the target's environment, files and names", _exec),
    "connect": ("a local command that reaches cluster Services by name", _connect),
    "expose": ("a port of this machine as a Service in the cluster", _expose),
    "ps": ("the target's processes and listening ports", _ps),
    "redirect": ("send the target's connections to this machine", traffic.redirect_arguments),
    "mirror": ("copy the target's incoming traffic to this machine (the app still serves)",
               traffic.mirror_arguments),
    "capture": ("the target's packets as a live pcap stream (-w - | tcpdump -r -)",
                traffic.capture_arguments),
    "forward": ("pod ports on local ports (kubectl port-forward)", traffic.forward_arguments),
    "logs": ("follow many pods' and containers' logs", _logs),
    "doctor": ("check that a run can work here, before changing anything", _doctor),
    "gc": ("remove what dead kdiag runs left in the cluster", _gc),
    "completion": ("print a shell completion script (bash, zsh, fish; kubectl for krew)",
                   _completion),
}
"""Every command: its one-line help and the function that adds its arguments."""


def build_parser(prog: str = "kdiag", only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. With ``only``, just that command's arguments are built (the others
    are still listed for --help): building all of them is a measurable part of start-up."""
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=_Formatter, epilog=EPILOG,
        description="Declarative Kubernetes debugging: run YAML runbooks against a pod or a "
                    "host process through an injected gRPC manager, and get a report.")
    parser.add_argument("--version", action="version", version=f"kdiag {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (summary, add_arguments) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, formatter_class=_Formatter)
        if only is None or only == name:
            add_arguments(sub)
    return parser


POSITIONAL_TARGET: dict[str, tuple[str, str]] = {
    "shell": ("words", "cmd"), "logs": ("words", "cmd"), "ps": ("words", ""),
    "doctor": ("words", ""), "exec": ("words", "cmd"), "redirect": ("ports", ""),
    "mirror": ("ports", ""),
    "capture": ("words", ""), "forward": ("ports", "")}
"""Commands whose first positional word may name the target (kubectl's way): the field the
words go to, and where words after the target go (a command after ``--``)."""


def _parse(parser: argparse.ArgumentParser, words: list[str], command: str
           ) -> argparse.Namespace:
    """The command line's arguments. A command taking a target: the words after ``--`` are its
    command, the rest may mix options and positional words (``deploy/api -n shop 8080``)."""
    if command not in POSITIONAL_TARGET:
        return parser.parse_args(words)
    from kdiag.cli.adhoc.targeting import take_target

    field, rest = POSITIONAL_TARGET[command]
    cut = words.index("--") if "--" in words else len(words)
    before, after = words[:cut], words[cut + 1:]
    at = before.index(command)
    if any(w in ("-h", "--help", "--version") for w in before[:at]):
        return parser.parse_args(before)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    args = sub.choices[command].parse_intermixed_args(before[at + 1:])
    args.command = command
    if rest:
        args.cmd = after
    elif after:
        parser.error(f"{command} takes no command after --")
    take_target(args, field, rest=rest)
    return args


def _command_in(argv: Sequence[str]) -> str:
    """The command named on the command line ("" when none is)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else ""
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    prog = "kubectl kdiag" if os.path.basename(sys.argv[0]).startswith("kubectl-") else "kdiag"
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["__complete"]:  # the completion scripts ask here (not in --help)
        from kdiag.cli.completion import complete_main

        return complete_main(words[1:], build_parser(prog))
    if words[:1] == ["__complete_kubectl"]:  # `kdiag completion kubectl`'s script asks here
        return kubectl_complete(words[1:])
    command = _command_in(words)
    parser = build_parser(prog, only=command)
    try:
        args = _parse(parser, words, command)
    except KdiagError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_INVALID
    try:
        module = importlib.import_module(args.handler)
        return int(module.command(args))
    except KdiagError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("KDIAG_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {exc} "
              "(set KDIAG_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1
    finally:
        if argv is None:  # the process's own command, about to exit: spare the exit a
            # collection of the ~100k objects the Kubernetes and gRPC clients made (0.3-2 s
            # on a busy machine, while a user or CI waits for the exit code)
            gc.disable()
            gc.freeze()


def kubectl_complete(argv: Sequence[str] | None = None) -> int:
    """``kubectl_complete-kdiag``: kubectl asks it to complete ``kubectl kdiag ...``."""
    from kdiag.cli.completion import cobra_main

    return cobra_main(list(sys.argv[1:] if argv is None else argv), build_parser("kubectl kdiag"))


if __name__ == "__main__":
    sys.exit(main())
