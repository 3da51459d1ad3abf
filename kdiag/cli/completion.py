"""Shell completion: ``kdiag completion bash|zsh|fish`` prints a script; the script asks
``kdiag __complete WORD... CURRENT`` (hidden) what fits, and so does kubectl for ``kubectl
kdiag`` through ``kubectl_complete-kdiag``.

What completes: commands, each command's flags, the values of flags with choices, runbook files
(``*.yaml``/``*.yml``) where a runbook goes, files and folders where those go, and pod names,
namespaces and kubeconfig contexts from the cluster the line names (``-n``, ``--context``,
``--kubeconfig``), each asked with a short timeout (:data:`CLUSTER_TIMEOUT`) so a slow cluster
never hangs the shell.

``__complete`` answers a kind on its first line (``words``, ``yaml``, ``files`` or ``dirs``),
then the words for ``words``; the shell completes files itself for the others.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

CLUSTER_TIMEOUT = 2.0
"""Seconds a completion waits for the API server."""
SHELLS = ("bash", "zsh", "fish")
YAML_DESTS = frozenset({"file", "files"})
FILE_DESTS = frozenset({"values", "kubeconfig"})
DIR_DESTS = frozenset({"path", "artifacts"})
DOCTOR_RUNBOOK = "-f"


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's commands and their own parsers."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def _takes_value(action: argparse.Action) -> bool:
    return bool(action.option_strings) and action.nargs != 0


def _value_kind(action: argparse.Action, words: Sequence[str], current: str
                ) -> tuple[str, list[str]]:
    """What fits as the value of ``action``."""
    if action.choices:
        return "words", [str(c) for c in action.choices]
    dest = action.dest
    if dest in YAML_DESTS:
        return "yaml", []
    if dest in FILE_DESTS:
        return "files", []
    if dest in DIR_DESTS:
        return "dirs", []
    if dest in ("pod", "namespace", "context"):
        return "words", cluster_names(dest, words)
    return "words", []


def candidates(program: argparse.ArgumentParser, words: Sequence[str], current: str
               ) -> tuple[str, list[str]]:
    """(kind, words) completing ``current`` after ``words`` (the command line without the
    program's name), for the commands of ``program``."""
    commands = _commands(program)
    command = next((w for w in words if not w.startswith("-")), "")
    if command not in commands:
        if current.startswith("-"):
            return "words", _matching(["--help", "--version"], current)
        return "words", _matching(list(commands), current)
    parser = commands[command]
    options = {s: a for a in parser._actions for s in a.option_strings}
    previous = words[-1] if words else ""
    if previous in options and _takes_value(options[previous]):
        kind, found = _value_kind(options[previous], words, current)
        return kind, _matching(found, current)
    if current.startswith("-"):
        flags = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
        return "words", _matching(sorted(set(flags)), current)
    if "--" in words:
        return "files", []
    positional = [a for a in parser._actions if not a.option_strings
                  and not isinstance(a, argparse._SubParsersAction)]
    if positional and positional[0].choices:
        return "words", _matching([str(c) for c in positional[0].choices], current)
    if positional and positional[0].dest in YAML_DESTS:
        return "yaml", []
    return "words", []


def _matching(found: list[str], current: str) -> list[str]:
    return [w for w in found if w.startswith(current)]


def _flag_value(words: Sequence[str], *names: str) -> str | None:
    value = None
    for i, word in enumerate(words[:-1]):
        if word in names:
            value = words[i + 1]
    for word in words:
        for name in names:
            if name.startswith("--") and word.startswith(name + "="):
                value = word.split("=", 1)[1]
    return value


def cluster_names(what: str, words: Sequence[str]) -> list[str]:
    """Pod names (in the namespace the line names), namespaces, or kubeconfig contexts; []
    when the cluster does not answer within :data:`CLUSTER_TIMEOUT`."""
    from kdiag.kube.config import KubeOptions, load

    options = KubeOptions(kubeconfig=_flag_value(words, "--kubeconfig"),
                          context=_flag_value(words, "--context"),
                          namespace=_flag_value(words, "-n", "--namespace"))
    try:
        if what == "context":
            return _contexts(options.kubeconfig)
        kube = load(options)
        core: Any = kube.core()
        if what == "namespace":
            items = core.list_namespace(_request_timeout=CLUSTER_TIMEOUT).items
        else:
            items = core.list_namespaced_pod(kube.namespace,
                                             _request_timeout=CLUSTER_TIMEOUT).items
        return sorted(str(i.metadata.name) for i in items)
    except Exception:  # completion never fails the shell: no cluster, no names
        return []


def _contexts(kubeconfig: str | None) -> list[str]:
    from kubernetes import config

    contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
    return sorted(str(c["name"]) for c in contexts or [])


def complete_main(args: Sequence[str], program: argparse.ArgumentParser) -> int:
    """``kdiag __complete WORD... CURRENT``: the kind, then the words, one per line."""
    words, current = list(args[:-1]), (args[-1] if args else "")
    kind, found = candidates(program, words, current)
    sys.stdout.write("".join(f"{line}\n" for line in [kind, *found]))
    return 0


COBRA_DIRECTIVE = {"words": 4, "files": 0, "yaml": 8, "dirs": 16}
"""kubectl's plugin completion (cobra): 4 no file completion, 0 files, 8 filter by the
extensions given, 16 folders only."""


def cobra_main(args: Sequence[str], program: argparse.ArgumentParser) -> int:
    """``kubectl_complete-kdiag WORD... CURRENT``, called by kubectl for ``kubectl kdiag``:
    the words, then cobra's directive."""
    kind, found = candidates(program, list(args[:-1]), args[-1] if args else "")
    lines = ["yaml", "yml"] if kind == "yaml" else found
    sys.stdout.write("".join(f"{line}\n" for line in lines) + f":{COBRA_DIRECTIVE[kind]}\n")
    return 0


def command(args: argparse.Namespace) -> int:
    """Print the completion script for ``args.shell``."""
    from kdiag.cli.completion_scripts import script

    print(script(args.shell), end="")
    return 0
