"""Checking a runbook's templates and expressions before it runs: syntax, undefined names,
unknown params and steps, regular expressions written as literals; each problem reported at
its ``file:line:col`` (through :class:`Checker`). Parsing counts against the file's template
token budget (:data:`~kdiag.language.limits.Limits.template_tokens`)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kdiag.errors import Location, Problem
from kdiag.language import templateparse
from kdiag.language.catalog import StepCatalog
from kdiag.language.limits import ENV, Limits, clip
from kdiag.language.model import StepSpec
from kdiag.language.templateparse import RegexUse, TemplateBudgetExceeded, TokenBudget
from kdiag.language.yamlsource import Path as DocPath
from kdiag.language.yamlsource import SourceMap

# Names a template can always read, besides registered results.
GLOBAL_NAMES = frozenset({"params", "target", "env", "run", "steps"})
JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace",
                           "true", "false", "none", "True", "False", "None"})
RESERVED = GLOBAL_NAMES | JINJA_GLOBALS | {"result", "outputs"}


@dataclass
class Checker:
    """Collects the problems of one runbook file."""

    source: SourceMap
    catalog: StepCatalog
    problems: list[Problem] = field(default_factory=list)
    tokens: TokenBudget | None = None
    """What is left of the file's template token budget (None: unbounded)."""
    exhausted: bool = False

    @classmethod
    def bounded(cls, source: SourceMap, catalog: StepCatalog, limits: Limits) -> Checker:
        """A checker whose template parsing stops at ``limits.template_tokens``."""
        return cls(source, catalog, tokens=TokenBudget(limits.template_tokens,
                                                       limits.template_tokens))

    def add(self, message: str, path: DocPath, *, key: bool = False) -> None:
        self.problems.append(Problem(clip(message), self.source.locate(path, key=key)))

    def add_at(self, message: str, location: Location) -> None:
        self.problems.append(Problem(clip(message), location))


def strings(value: Any, path: DocPath) -> Iterator[tuple[DocPath, str]]:
    """Every string inside ``value``, with its path in the document."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, (*path, index))


def _hint(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass
class Scope:
    """What names templates may use at a point of the runbook."""

    params: frozenset[str]
    registered: set[str]
    steps: set[str] = field(default_factory=set)
    """Steps that run before this point (``steps['NAME']``)."""

    def check(self, names: set[str] | frozenset[str], extra: frozenset[str] = frozenset()) -> str | None:
        for name in sorted(names):
            if name in GLOBAL_NAMES or name in JINJA_GLOBALS or name in self.registered \
                    or name in extra:
                continue
            known = GLOBAL_NAMES | self.registered | extra
            return f"undefined variable {name!r}{_hint(name, known)}"
        return None


def _regex_problem(use: RegexUse) -> str | None:
    """Why a regular expression written in a template cannot work at run time, if it cannot."""
    try:
        compiled = re.compile(use.pattern)
    except re.error as exc:
        return f"invalid regular expression {use.pattern!r} in {use.where}: {exc}"
    except (OverflowError, RecursionError, MemoryError):  # absurd repeat counts or nesting
        return f"invalid regular expression in {use.where}: too large"
    group = use.group
    if isinstance(group, int) and not isinstance(group, bool) and not 0 <= group <= compiled.groups:
        return (f"{use.where} asks for group {group} of {use.pattern!r}, which has "
                f"{compiled.groups} group(s)")
    if isinstance(group, str) and group not in compiled.groupindex:
        return f"{use.where} asks for group {group!r}, which {use.pattern!r} does not name"
    return None


def check_text(checker: Checker, scope: Scope, path: DocPath, text: str, *,
               expression: bool, extra: frozenset[str] = frozenset(),
               own_step: str | None = None) -> None:
    """Check one template (or, with ``expression``, one bare expression) at ``path``."""
    if checker.exhausted or (not expression and not templateparse.is_template(text)):
        return
    try:
        with templateparse.budget(checker.tokens):
            analysis = templateparse.analyse(text, expression=expression)
    except TemplateBudgetExceeded as exc:
        checker.exhausted = True
        checker.add(f"the templates of this file hold more than {exc.args[0]} tokens (names, "
                    f"operators, literals), the limit that keeps checking bounded "
                    f"({ENV['template_tokens']})", path)
        return
    if analysis.problem is not None:
        what = "expression" if expression else "template"
        checker.add_at(f"{what} {analysis.problem.kind}: {analysis.problem.message}",
                       checker.source.locate_line(path, analysis.problem.line))
        return
    message = scope.check(analysis.names, extra)
    if message:
        checker.add(message, path)
        return
    for name in sorted(analysis.params - scope.params):
        checker.add(f"unknown param {name!r}{_hint(name, scope.params)}", path)
    for name in sorted(set(analysis.step_names)):
        if name not in scope.steps and name != own_step:
            checker.add(f"steps[{name!r}]: no step of that name runs before this point"
                        f"{_hint(name, scope.steps)}", path)
    for use in analysis.regexes:
        problem = _regex_problem(use)
        if problem:
            checker.add(problem, path)


def check_step(checker: Checker, scope: Scope, step: StepSpec) -> None:
    step_type = checker.catalog[step.kind]
    path = step.doc_path
    own = frozenset({"result", *([step.register] if step.register else [])})
    if isinstance(step.when, str):
        check_text(checker, scope, (*path, "when"), step.when, expression=True)
    for key in ("timeout", "retries", "delay", "parallel"):
        value = getattr(step, key)
        if isinstance(value, str):
            check_text(checker, scope, (*path, key), value, expression=False)
    if step.until:
        check_text(checker, scope, (*path, "until"), step.until, expression=True, extra=own,
                   own_step=step.name)
    assert_key = step.kind if step.kind == "assert" else "assert"
    expressions = step.body if step.kind == "assert" else step.asserts
    if isinstance(expressions, str):
        expressions = [expressions]
    for index, expression in enumerate(expressions):
        item_path = (*path, assert_key) if isinstance(step.body, str) and step.kind == "assert" \
            else (*path, assert_key, index)
        check_text(checker, scope, item_path, expression, expression=True, extra=own,
                   own_step=step.name)
    for index, expression in enumerate(step.secret if isinstance(step.secret, tuple) else ()):
        check_text(checker, scope, (*path, "secret", index), expression, expression=True,
                   extra=own, own_step=step.name)
    if step.kind != "assert":
        body_path = (*path, step.kind)
        for sub_path, text in strings(step.body, body_path):
            field_name = sub_path[len(body_path)] if len(sub_path) > len(body_path) else None
            if field_name is not None and field_name == step_type.children_field:
                continue  # nested steps are checked as steps below
            is_expression = field_name in step_type.expression_fields
            check_text(checker, scope, sub_path, text, expression=is_expression)
    for child in step.children:
        check_step(checker, scope, child)
    if step.background and not step_type.can_background:
        checker.add(f"a {step.kind!r} step cannot run in the background", (*path, "background"),
                    key=True)
    if step.register:
        if step.register in RESERVED:
            checker.add(f"{step.register!r} is a reserved name; register under another name",
                        (*path, "register"))
        scope.registered.add(step.register)
    scope.steps.add(step.name)
