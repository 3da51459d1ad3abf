"""The sandbox templates render in: Jinja's immutable sandbox, bounded in size and time.

Jinja's sandbox keeps templates away from Python internals, not from building a 1 GB string
(``' ' * 10**9``, ``'x' | center(10**9)``, ``'%0999999999d' % 1``) or looping for hours
(nested ``range`` loops). Here, within :mod:`~kdiag.language.limits`:

- *size*: no value a template builds (an operator's, a call's or a filter's result, a list or
  dict written in it) and no rendered output may be larger than ``output`` characters.
  Operations that could allocate more than that are refused *before* they run (repetition,
  powers, padding widths, printf and ``format`` widths, ``join``, ``replace``...); every other
  result is measured after. Lists and dicts count what they hold, so nested ones built from
  the same parts cannot grow exponentially behind a small measure.
- *work*: loop turns and calls count against ``iterations``; the clock against ``seconds``.

The compiled code is changed so that loops, output, ``~`` and list/dict literals pass through
the checks (see :class:`_Bounding`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, ValuesView
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

import jinja2
import jinja2.nodes as nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace, _PassArg

from kdiag.language.filters import FILTERS, TESTS
from kdiag.language.limits import ENV, Limits, size_text


class LimitExceeded(Exception):
    """A template went over a limit (the message names it)."""


@dataclass
class _Budget:
    """One render's work so far."""

    limits: Limits
    deadline: float
    turns: int = 0
    emitted: int = 0
    sizes: dict[int, tuple[Any, int]] = field(default_factory=dict)


_local = threading.local()


def _budget() -> _Budget | None:
    return getattr(_local, "budget", None)


class bounded:
    """Context manager: the renders inside it share one budget (see the module docstring)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def __enter__(self) -> None:
        self.saved = _budget()
        _local.budget = _Budget(self.limits, time.monotonic() + self.limits.seconds)

    def __exit__(self, *exc: object) -> None:
        _local.budget = self.saved


def _turn(budget: _Budget | None) -> None:
    if budget is None:
        return
    budget.turns += 1
    if budget.turns > budget.limits.iterations:
        raise LimitExceeded(f"more than {budget.limits.iterations} loop turns and calls "
                            f"({ENV['iterations']})")
    if budget.turns % 256 == 0 and time.monotonic() > budget.deadline:
        raise LimitExceeded(f"rendering took more than {budget.limits.seconds:g} s "
                            f"({ENV['seconds']})")


def _too_big(what: str, limits: Limits) -> LimitExceeded:
    return LimitExceeded(f"{what} would be larger than {size_text(limits.output)} "
                         f"({ENV['output']})")


# -- sizes ------------------------------------------------------------------------------------

def measure(value: Any, cap: int, memo: dict[int, tuple[Any, int]] | None = None) -> int:
    """Roughly how many characters ``value`` takes as text; stops counting past ``cap``.

    Containers count what they hold (a list holding one big list twice counts it twice);
    ``memo`` keeps the size of lists and dicts already measured in this render."""
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 1
    if isinstance(value, range):
        return len(value) * 8
    if isinstance(value, Namespace | Cycler | Joiner | KeysView | ValuesView | ItemsView):
        held = value if isinstance(value, KeysView | ValuesView | ItemsView) \
            else object.__getattribute__(value, "__dict__")  # (Namespace hides its __dict__)
        return measure(list(held.items() if isinstance(held, dict) else held), cap, memo)
    if not isinstance(value, list | tuple | dict | set | frozenset):
        return 8
    memo = {} if memo is None else memo
    known = memo.get(id(value))
    if known is not None and known[0] is value:
        return known[1]
    total = 2
    for item in (value.items() if isinstance(value, dict) else value):
        total += measure(item, cap, memo) + 2
        if total > cap:
            break
    if not isinstance(value, tuple) or len(value) > 2:  # (dict items are made anew each time)
        memo[id(value)] = (value, total)
    return total


def _check_size(value: Any, what: str, limits: Limits) -> Any:
    budget = _budget()
    memo = budget.sizes if budget is not None else None
    if measure(value, limits.output, memo) > limits.output:
        raise _too_big(what, limits)
    return value


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")


def _format_widths(fmt: str, args: Iterable[Any]) -> int:
    """The widest field a printf-style or ``format`` string asks for (``*`` and nested
    ``{}`` widths come from the arguments, so the largest integer among them counts)."""
    widest = 0
    for match in _PRINTF.finditer(fmt):
        widest = max([widest, *(int(g) for g in match.groups() if g and g != "*")])
    for spec in _FORMAT_SPEC.findall(fmt):
        widest = max([widest, *(int(d) for d in re.findall(r"\d+", spec))])
    if "*" in fmt or "{" in fmt:
        widest = max([widest, *(_int(a) for a in args)])
    return widest


def _replace_size(text: Any, old: Any, new: Any, count: Any = -1) -> int:
    if not isinstance(text, str | bytes) or not isinstance(old, str | bytes) \
            or not isinstance(new, str | bytes):
        return 0
    found = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * max(0, len(new) - len(old))


def _join_size(separator: Any, items: list[Any], cap: int) -> int:
    total = len(separator) * max(0, len(items) - 1) if isinstance(separator, str | bytes) else 0
    for item in items:
        total += measure(item, cap)
        if total > cap:
            break
    return total


def _text_method_size(text: str | bytes, name: str, args: tuple[Any, ...], cap: int) -> int:
    """How large a ``str``/``bytes`` method's result could be (0: not an amplifying one)."""
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        return _int(first)
    if name == "expandtabs":
        return len(text) + _int(first if args else 8) * text.count(b"\t" if isinstance(
            text, bytes) else "\t")  # type: ignore[arg-type]
    if name == "replace" and len(args) >= 2:
        return _replace_size(text, *args[:3])
    if name == "join" and args:
        return _join_size(text, list(first), cap)  # type: ignore[arg-type]
    if name in ("format", "format_map") and isinstance(text, str):
        return _format_widths(text, (*args, *(first.values() if isinstance(first, dict)
                                              else ())))
    if name == "translate" and isinstance(first, dict):
        longest = max((measure(v, cap) for v in first.values()), default=1)
        return len(text) * max(1, longest)
    return 0


def _check_call(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limits: Limits) -> None:
    """Refuse calls of amplifying ``str``/``bytes``/``int`` methods that would go too big."""
    target = getattr(func, "__wrapped__", func)  # the sandbox wraps str.format
    owner = getattr(target, "__self__", None)
    name = getattr(target, "__name__", "")
    size = 0
    if isinstance(owner, str | bytes):
        size = _text_method_size(owner, name, (*args, *kwargs.values()), limits.output)
    elif isinstance(owner, int) and name == "to_bytes":
        size = _int(args[0] if args else kwargs.get("length", 1))
    elif name == "generate_lorem_ipsum":
        size = _int(args[0] if args else kwargs.get("n", 5)) * 1000
    if size > limits.output:
        raise _too_big(f"the result of {name}()", limits)


# -- filters ----------------------------------------------------------------------------------

_SMALL_RESULTS = frozenset({"length", "count", "first", "last", "random", "sum", "min", "max",
                            "int", "float", "abs", "round", "bool", "wordcount", "default",
                            "d", "filesizeformat", "regex_search", "attr", "truncate"})
"""Filters whose input may be larger than the limit: their result is small (or the input)."""


def _filter_size(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 cap: int) -> int:
    """How large a filter's result could be, known before it runs (0: nothing to fear)."""
    def arg(index: int, key: str, default: Any = None) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    text_size = len(value) if isinstance(value, str) else 0
    if name == "center":
        return max(text_size, _int(arg(0, "width", 80)))
    if name == "indent":
        width = arg(0, "width", 4)
        pad = len(width) if isinstance(width, str) else _int(width)
        return text_size + pad * (value.count("\n") + 1 if isinstance(value, str) else 1)
    if name == "wordwrap":
        wrap = arg(3, "wrapstring", "") or ""
        lines = text_size // max(1, _int(arg(0, "width", 79)) or 1) + text_size + 1
        return text_size + len(wrap) * lines if isinstance(wrap, str) else 0
    if name == "format" and isinstance(value, str):
        return _format_widths(value, (*args, *kwargs.values()))
    if name == "join":
        return _join_size(arg(0, "d", ""), list(value), cap) if isinstance(
            value, Iterable) and not isinstance(value, str) else 0
    if name == "replace":
        return _replace_size(value, arg(0, "old"), arg(1, "new"), arg(2, "count", -1))
    if name in ("batch", "slice"):
        return _int(arg(0, "linecount" if name == "batch" else "slices"))
    return 0


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    passes = _PassArg.from_obj(func) is not None

    @wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        limits = budget.limits if budget is not None else Limits()
        _turn(budget)
        at = 1 if passes else 0
        value, rest = args[at], args[at + 1:]
        if name == "join" and isinstance(value, Iterator):  # measured, then joined: keep it
            value = list(value)
            args = (*args[:at], value, *rest)
        if name not in _SMALL_RESULTS:
            _check_size(value, f"the input of the {name!r} filter", limits)
        if _filter_size(name, value, rest, kwargs, limits.output) > limits.output:
            raise _too_big(f"the result of the {name!r} filter", limits)
        result = func(*args, **kwargs)
        if result is not value and not isinstance(result, Iterator):
            _check_size(result, f"the result of the {name!r} filter", limits)
        return result

    return run


@jinja2.pass_context
def _loop(context: Any, iterable: Any) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        _turn(budget)
        yield item


@jinja2.pass_context
def _emit(context: Any, value: Any) -> Any:
    """Every piece of output (a ``{{ }}`` or text, into the output, a macro or a ``set``
    block) counts against the render's output size."""
    budget = _budget()
    if budget is not None:
        budget.emitted += measure(value, budget.limits.output, budget.sizes)
        if budget.emitted > budget.limits.output:
            raise LimitExceeded(f"the template renders to more than "
                                f"{size_text(budget.limits.output)} ({ENV['output']})")
    return value


def _sized(what: str) -> Callable[..., Any]:
    """A hook that lets a value through when it is within the size limit."""
    @jinja2.pass_context
    def check(context: Any, value: Any) -> Any:
        budget = _budget()
        if budget is not None:
            _check_size(value, what, budget.limits)
        return value
    return check


_HOOKS = {"_kdiag_loop": _loop, "_kdiag_emit": _emit,
          "_kdiag_piece": _sized("a part joined with ~"),
          "_kdiag_literal": _sized("a list or mapping")}


def _hook(name: str, node: nodes.Node) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class _Bounding(CodeGenerator):
    """Compiles templates with every loop, output, ``~`` part and list/dict/tuple literal
    passed through the budget's hooks (an unforeseen node is compiled as Jinja would)."""

    def visit_Template(self, node: nodes.Template, frame: Any = None) -> None:
        _rewrite(node)
        node.set_environment(self.environment)
        super().visit_Template(node, frame)


def _rewrite(node: nodes.Node) -> None:
    for name in node.fields:
        child = getattr(node, name, None)
        if isinstance(child, list):
            setattr(node, name, [_rewritten(node, name, item) for item in child])
        elif isinstance(child, nodes.Node):
            setattr(node, name, _rewritten(node, name, child))


def _rewritten(parent: nodes.Node, field_name: str, child: Any) -> Any:
    if not isinstance(child, nodes.Node):
        return child
    _rewrite(child)
    if isinstance(parent, nodes.For) and field_name == "iter":
        return _hook("_kdiag_loop", child)
    if isinstance(parent, nodes.Output) and isinstance(child, nodes.Expr | nodes.TemplateData):
        if isinstance(child, nodes.TemplateData):
            child = nodes.Const(child.data, lineno=child.lineno)
        return _hook("_kdiag_emit", child)
    if isinstance(parent, nodes.Concat):
        return _hook("_kdiag_piece", child)
    if isinstance(child, nodes.List | nodes.Dict) or (
            isinstance(child, nodes.Tuple) and child.ctx == "load"):
        return _hook("_kdiag_literal", child)
    return child


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with kdiag's filters and tests, within ``limits``."""

    code_generator_class = _Bounding
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, limits: Limits, **options: Any) -> None:
        super().__init__(**options)
        self.limits = limits
        self.filters.update(FILTERS)
        self.tests.update(TESTS)
        self.filters = {name: _bounded_filter(name, func) for name, func in self.filters.items()}
        self.filters.update(_HOOKS)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limits = self.limits
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int) and \
                        measure(seq, limits.output) * max(0, times) > limits.output:
                    raise _too_big(f"{type(seq).__name__} * {times}", limits)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and \
                abs(left) > 1 and right * max(1, abs(left).bit_length()) > limits.output * 3:
            raise _too_big(f"{left} ** {right}", limits)
        elif operator == "%" and isinstance(left, str) and _format_widths(
                left, right if isinstance(right, tuple) else (right,)) > limits.output:
            raise _too_big("the formatted string", limits)
        elif operator == "+" and isinstance(left, str | bytes | list | tuple) and \
                isinstance(right, str | bytes | list | tuple) and \
                measure(left, limits.output) + measure(right, limits.output) > limits.output:
            raise _too_big("the sum", limits)
        result = super().call_binop(context, operator, left, right)
        return _check_size(result, "the result", limits) if operator in ("*", "+") else result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        limits = __self.limits
        _turn(_budget())
        if getattr(__obj, "__name__", "") == "join" and args and isinstance(args[0], Iterator):
            args = (list(args[0]), *args[1:])  # measured, then joined: keep it
        _check_call(__obj, args, kwargs, limits)
        result = super().call(__context, __obj, *args, **kwargs)
        if all(result is not a for a in args) and not isinstance(result, Iterator):
            _check_size(result, "the result of a call", limits)
        return result
