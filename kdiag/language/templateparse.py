"""Parsing templates and expressions for static checks, without running any of them.

Checking uses its own Jinja environment (cheaper to import than the sandbox, and it never
computes anything): Jinja folds constant parts of a template while compiling, so checking
``{{ ' ' * 10**9 }}`` or ``{{ 'x' | center(10**9) }}`` with a plain environment builds the
string. Here every operator counts as intercepted and every filter and test is a stub that
refuses to run, so nothing is folded. What a template reads is found by walking its tree;
only templates that bind names themselves (``for``, ``set``, macros) go through Jinja's own
analysis. The tokens parsed are counted against a per-file budget (``template_tokens``), and
how deeply a template nests is held to fixed bounds (:mod:`~kdiag.language.templatedepth`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jinja2
import jinja2.ext
import jinja2.meta
import jinja2.nodes

from kdiag.language.filters import FILTERS, TESTS
from kdiag.language.templatedepth import TooDeep, bracketed, too_deep

_ALL_BINOPS = frozenset({"*", "/", "//", "**", "%", "+", "-"})
_ALL_UNOPS = frozenset({"not", "+", "-"})
# Nodes after which a name in a template may be one the template itself binds.
_BINDING = (jinja2.nodes.For, jinja2.nodes.Macro, jinja2.nodes.CallBlock, jinja2.nodes.With,
            jinja2.nodes.Assign, jinja2.nodes.AssignBlock, jinja2.nodes.Block,
            jinja2.nodes.Import, jinja2.nodes.FromImport, jinja2.nodes.Include,
            jinja2.nodes.Extends, jinja2.nodes.Scope, jinja2.nodes.OverlayScope)


_MARKERS = ("{{", "{%")


def is_template(value: object) -> bool:
    """Whether a value is a string holding template syntax."""
    return isinstance(value, str) and any(m in value for m in _MARKERS)


class TemplateBudgetExceeded(Exception):
    """A file's templates hold more tokens than its budget allows."""


@dataclass
class TokenBudget:
    """Template tokens one file may still parse."""

    left: int
    limit: int


_local = threading.local()


class _CountTokens(jinja2.ext.Extension):
    """Counts every token parsed against the budget of the check under way (if any), and
    how deeply brackets nest; keeps the line of the last one (where parsing stopped)."""

    def filter_stream(self, stream: Any) -> Iterator[Any]:
        budget: TokenBudget | None = getattr(_local, "budget", None)
        for token in bracketed(stream):
            _local.line = token.lineno
            if budget is not None:
                budget.left -= 1
                if budget.left < 0:
                    raise TemplateBudgetExceeded(budget.limit)
            yield token


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("not run while checking")


class _CheckingEnvironment(jinja2.Environment):
    """Parses and analyses; computes nothing (see the module's docstring)."""

    sandboxed = True
    intercepted_binops = _ALL_BINOPS
    intercepted_unops = _ALL_UNOPS


_env: jinja2.Environment | None = None


def checking_env() -> jinja2.Environment:
    """The environment static checks parse with (filter and test names known, none runnable)."""
    global _env
    if _env is None:
        env = _CheckingEnvironment(undefined=jinja2.StrictUndefined, extensions=[_CountTokens])
        env.filters = dict.fromkeys([*env.filters, *FILTERS], _refuse)
        env.tests = dict.fromkeys([*env.tests, *TESTS], _refuse)
        _env = env
    return _env


def budget(tokens: TokenBudget | None) -> Any:
    """Context manager: parses inside it count against ``tokens``."""
    return _BudgetScope(tokens)


TEMPLATE_COST = 10
"""Tokens each template costs besides its own: parsing one has a fixed cost too."""


class _BudgetScope:
    def __init__(self, tokens: TokenBudget | None) -> None:
        self.tokens = tokens

    def __enter__(self) -> None:
        if self.tokens is not None:
            self.tokens.left -= TEMPLATE_COST
            if self.tokens.left < 0:
                raise TemplateBudgetExceeded(self.tokens.limit)
        self.saved = getattr(_local, "budget", None)
        _local.budget = self.tokens

    def __exit__(self, *exc: object) -> None:
        _local.budget = self.saved


@dataclass(frozen=True)
class TemplateSyntaxProblem:
    """A syntax error in a template: the message and the line within the template (1-based)."""

    message: str
    line: int
    kind: str = "syntax error"
    """What is wrong, as messages name it: a ``syntax error``, or ``nests too deeply``."""


def parse(text: str, *, expression: bool = False) -> jinja2.nodes.Node:
    """Parse a template, or a bare expression, without compiling it (TemplateSyntaxError)."""
    env = checking_env()
    _local.line = 1
    if not expression:
        return env.parse(text)
    from jinja2.parser import Parser

    parser = Parser(env, text, state="variable")
    node = parser.parse_expression()
    if not parser.stream.eos:
        token = parser.stream.current
        raise jinja2.TemplateSyntaxError(f"unexpected {token.value!r} after the expression",
                                         token.lineno)
    return node


@dataclass(frozen=True)
class RegexUse:
    """A regular expression written as a literal (``x is match('...')``, ``regex_search``)."""

    where: str
    pattern: str
    group: int | str | None = None


@dataclass(frozen=True)
class Analysis:
    """What static checks learn from one parse: a syntax error, or the tree and its facts."""

    problem: TemplateSyntaxProblem | None
    tree: jinja2.nodes.Node | None = None
    names: frozenset[str] = frozenset()
    regexes: tuple[RegexUse, ...] = ()
    step_names: tuple[str, ...] = ()
    """Steps read as ``steps['NAME']`` or ``steps.NAME``."""
    params: frozenset[str] = field(default_factory=frozenset)
    """Params read as ``params.NAME`` or ``params['NAME']``."""


def analyse(text: str, *, expression: bool = False) -> Analysis:
    """Parse once for every static check (unknown filters and tests count as syntax errors).

    Raises :class:`TemplateBudgetExceeded` when the file's token budget runs out."""
    if expression and text.lstrip().startswith("{{"):
        return Analysis(TemplateSyntaxProblem("write expressions without {{ }}", 1))
    try:
        tree = parse(text, expression=expression)
        deep = too_deep(tree)
        if deep is not None:
            raise deep
        found = _collect(tree)
        unknown = _unknown_filter_or_test(found)
        if unknown:
            return Analysis(TemplateSyntaxProblem(unknown[0], unknown[1]))
        names = _variables(tree, found)
    except jinja2.TemplateSyntaxError as exc:  # includes TemplateAssertionError
        return Analysis(TemplateSyntaxProblem(exc.message or "template syntax error",
                                              exc.lineno or 1))
    except TooDeep as exc:
        return Analysis(TemplateSyntaxProblem(exc.message, exc.line, _TOO_DEEP))
    except RecursionError:  # (nested tags: the parser recurses before the tree is counted)
        return Analysis(TemplateSyntaxProblem("too deep for the parser's stack", _local.line,
                                              _TOO_DEEP))
    rebinds = {node.name for node in found.get(jinja2.nodes.Name, ()) if node.ctx != "load"}
    return Analysis(None, tree, frozenset(names), tuple(_regexes(found)),
                    () if "steps" in rebinds else tuple(_subscripts(found, "steps")),
                    frozenset() if "params" in rebinds else frozenset(_subscripts(found, "params")))


_TOO_DEEP = "nests too deeply"

_Found = dict[type, list[Any]]


def _collect(tree: jinja2.nodes.Node) -> _Found:
    """Every node of a tree (its root included), by class: one walk serves every check."""
    found: _Found = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        found.setdefault(type(node), []).append(node)
        for name in node.fields:
            child = getattr(node, name, None)
            if isinstance(child, jinja2.nodes.Node):
                stack.append(child)
            elif isinstance(child, list):
                stack.extend(c for c in child if isinstance(c, jinja2.nodes.Node))
    return found


def _of(found: _Found, kinds: Any) -> Iterator[Any]:
    for kind, nodes in found.items():
        if issubclass(kind, kinds):
            yield from nodes


def _unknown_filter_or_test(found: _Found) -> tuple[str, int] | None:
    env = checking_env()
    for node in _of(found, (jinja2.nodes.Filter, jinja2.nodes.Test)):
        table, what = (env.filters, "filter") if isinstance(node, jinja2.nodes.Filter) \
            else (env.tests, "test")
        if node.name not in table:
            return f"No {what} named {node.name!r}", node.lineno
    return None


def _variables(tree: jinja2.nodes.Node, found: _Found) -> set[str]:
    if not any(True for _ in _of(found, _BINDING)):
        return {node.name for node in found.get(jinja2.nodes.Name, ()) if node.ctx == "load"}
    if not isinstance(tree, jinja2.nodes.Template):
        tree = jinja2.nodes.Template([jinja2.nodes.Output([tree])], lineno=1)
        tree.set_environment(checking_env())
    return set(jinja2.meta.find_undeclared_variables(tree))


def variables_of(tree: jinja2.nodes.Node) -> set[str]:
    """The top-level names a parsed template or expression reads."""
    return _variables(tree, _collect(tree))


def variables(text: str, *, expression: bool = False) -> set[str]:
    """The top-level names a template or expression reads (assumes valid syntax)."""
    return variables_of(parse(text, expression=expression))


def _subscripts(found: _Found, base: str) -> Iterator[str]:
    """Names used as ``BASE.NAME`` or ``BASE['NAME']``."""
    for node in _of(found, (jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
        parent = node.node
        if not (isinstance(parent, jinja2.nodes.Name) and parent.name == base):
            continue
        if isinstance(node, jinja2.nodes.Getattr):
            yield node.attr
        elif isinstance(node.arg, jinja2.nodes.Const) and isinstance(node.arg.value, str):
            yield node.arg.value


def _const(node: jinja2.nodes.Node | None) -> Any:
    return node.value if isinstance(node, jinja2.nodes.Const) else None


def _argument(node: Any, index: int, name: str) -> jinja2.nodes.Node | None:
    if len(node.args) > index:
        return node.args[index]
    return next((k.value for k in node.kwargs if k.key == name), None)


_REGEX_ARGUMENTS: dict[tuple[type, str], Callable[[Any], tuple[Any, Any]]] = {
    (jinja2.nodes.Test, "match"): lambda n: (_argument(n, 0, "pattern"), None),
    (jinja2.nodes.Test, "search"): lambda n: (_argument(n, 0, "pattern"), None),
    (jinja2.nodes.Filter, "regex_search"): lambda n: (_argument(n, 0, "pattern"),
                                                      _argument(n, 1, "group")),
}


def _regexes(found: _Found) -> Iterator[RegexUse]:
    for node in _of(found, (jinja2.nodes.Test, jinja2.nodes.Filter)):
        arguments = _REGEX_ARGUMENTS.get((type(node), node.name))
        if arguments is None:
            continue
        pattern, group = arguments(node)
        if isinstance(_const(pattern), str):
            kind = "test" if isinstance(node, jinja2.nodes.Test) else "filter"
            yield RegexUse(f"the {node.name!r} {kind}", _const(pattern), _const(group))


def attribute_chains(expression: str) -> list[str]:
    """The variable references in an expression (``resp.status``, ``x['a']``), outermost
    first, for showing their values when an assertion fails."""
    node = checking_env().parse(f"{{{{ {expression} }}}}")
    found: list[str] = []
    for ref in node.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem, jinja2.nodes.Name)):
        text = _chain_text(ref)
        if text and not any(other.startswith(text) for other in found):
            found.append(text)
    return found


def _chain_text(node: jinja2.nodes.Node) -> str | None:
    if isinstance(node, jinja2.nodes.Name):
        return str(node.name)
    if isinstance(node, jinja2.nodes.Getattr):
        base = _chain_text(node.node)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, jinja2.nodes.Getitem) and isinstance(node.arg, jinja2.nodes.Const):
        base = _chain_text(node.node)
        return f"{base}[{node.arg.value!r}]" if base else None
    return None
