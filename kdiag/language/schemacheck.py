"""A small validator for the subset of JSON Schema that kdiag's own runbook schema uses.

Why not ``jsonschema``: importing it costs about 40 ms, more than half of what ``kdiag validate``
may take in all, and its messages for ``oneOf``/``anyOf`` are hard to read. Our schema sticks to
the keywords in :data:`SUPPORTED`; a unit test checks that the schema uses no other keyword and
that this validator and ``jsonschema`` agree on every example runbook and on generated documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kdiag.language.yamlsource import Path

SUPPORTED = frozenset({
    "$schema", "$id", "$defs", "$ref", "$comment", "title", "description", "markdownDescription",
    "default", "examples", "type", "enum", "const", "properties", "required",
    "additionalProperties", "items", "minItems", "minimum", "maximum", "minLength", "pattern",
    "anyOf", "oneOf", "propertyNames", "minProperties", "maxProperties", "dependentRequired",
})

Schema = dict[str, Any]
TEMPLATE_REF = "#/$defs/template"


@dataclass(frozen=True)
class SchemaViolation:
    """One violation: where (``path``), what, and whether it is about a key rather than a value."""

    path: Path
    message: str
    at_key: bool = False


def _type_ok(name: str, value: Any) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    checker = _TYPES.get(name)
    return checker(value) if checker else False


_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def describe(value: Any) -> str:
    """A short description of a value's YAML type for messages ("a string 'abc'")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def expected(schema: Schema, root: Schema) -> str:
    """Words for what a schema accepts ("an integer or a template"), for error messages."""
    schema = _deref(schema, root)
    if "title" in schema:
        return str(schema["title"])
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema.get("oneOf") or []
        return " or ".join(dict.fromkeys(expected(o, root) for o in options))
    kind = schema.get("type")
    names = kind if isinstance(kind, list) else [kind] if kind else []
    words = {"string": "a string", "integer": "an integer", "number": "a number",
             "boolean": "true or false", "object": "a mapping", "array": "a list", "null": "null"}
    return " or ".join(words.get(str(n), str(n)) for n in names) or "a value"


def deref(schema: Schema, root: Schema) -> Schema:
    """Follow ``$ref`` (to ``#/$defs/...``) until a schema without one."""
    return _deref(schema, root)


def _deref(schema: Schema, root: Schema) -> Schema:
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"unsupported $ref {ref}")
        schema = root["$defs"][ref[len("#/$defs/"):]]
    return schema


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def validate(value: Any, schema: Schema, root: Schema | None = None,
             path: Path = ()) -> list[SchemaViolation]:
    """All violations of ``schema`` by ``value`` (an empty list when it conforms)."""
    return list(_check(value, schema, root if root is not None else schema, path))


def _check(value: Any, schema: Schema, root: Schema, path: Path) -> Iterator[SchemaViolation]:
    schema = _deref(schema, root)
    if "anyOf" in schema or "oneOf" in schema:
        problems = list(_check_alternatives(value, schema, root, path))
        if problems:
            yield from problems
            return
    kind = schema.get("type")
    if kind is not None:
        names = kind if isinstance(kind, list) else [kind]
        if not any(_type_ok(n, value) for n in names):
            yield SchemaViolation(path, f"expected {expected(schema, root)}, got {describe(value)}")
            return
    if "const" in schema and value != schema["const"]:
        yield SchemaViolation(path, f"expected {schema['const']!r}, got {describe(value)}")
    if "enum" in schema and value not in schema["enum"]:
        yield SchemaViolation(path, f"expected {expected(schema, root)}, got {describe(value)}")
    if isinstance(value, dict):
        yield from _check_object(value, schema, root, path)
    elif isinstance(value, list):
        yield from _check_array(value, schema, root, path)
    elif isinstance(value, str):
        yield from _check_string(value, schema, path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            yield SchemaViolation(path, f"must be at least {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            yield SchemaViolation(path, f"must be at most {schema['maximum']}, got {value}")


def _check_alternatives(value: Any, schema: Schema, root: Schema, path: Path) -> Iterator[SchemaViolation]:
    options = schema.get("anyOf") or schema.get("oneOf") or []
    results = [validate(value, option, root, path) for option in options]
    passing = sum(1 for r in results if not r)
    required_only = all(set(o) == {"required"} for o in options)
    if required_only and isinstance(value, dict) and passing != 1:
        names = ", ".join(n for o in options for n in o["required"])
        amount = "only one" if passing else "one"
        yield SchemaViolation(path, f"needs {amount} of: {names}")
        return
    if "oneOf" in schema and passing > 1:
        yield SchemaViolation(path, f"matches more than one of: {expected(schema, root)}")
    if passing:
        return
    # Prefer the explanation of an alternative whose type matched: it says what is really wrong.
    typed = [r for r, o in zip(results, options, strict=True)
             if o.get("$ref") != TEMPLATE_REF and _types_match(value, o, root)]
    if len(typed) == 1:
        yield from typed[0]
        return
    yield SchemaViolation(path, f"expected {expected(schema, root)}, got {describe(value)}")


def _types_match(value: Any, schema: Schema, root: Schema) -> bool:
    schema = _deref(schema, root)
    kind = schema.get("type")
    if kind is None:
        return False
    names = kind if isinstance(kind, list) else [kind]
    return any(_type_ok(n, value) for n in names)


def _check_object(value: dict[str, Any], schema: Schema, root: Schema,
                  path: Path) -> Iterator[SchemaViolation]:
    properties: dict[str, Schema] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            yield SchemaViolation(path, f"missing required field {name!r}")
    for name, needed in schema.get("dependentRequired", {}).items():
        for other in needed:
            if name in value and other not in value:
                yield SchemaViolation((*path, name), f"{name!r} needs {other!r} beside it", True)
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        yield SchemaViolation(path, f"needs at least {schema['minProperties']} entries")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        yield SchemaViolation(path, f"allows at most {schema['maxProperties']} entries")
    extra = schema.get("additionalProperties", True)
    names_schema = schema.get("propertyNames")
    for key, item in value.items():
        if names_schema is not None:
            for violation in _check(key, names_schema, root, (*path, key)):
                yield SchemaViolation(violation.path, f"invalid name {key!r}: {violation.message}", True)
        if key in properties:
            yield from _check(item, properties[key], root, (*path, key))
        elif extra is False:
            allowed = ", ".join(sorted(properties)) or "none"
            yield SchemaViolation((*path, key), f"unknown field {key!r} (allowed: {allowed})", True)
        elif isinstance(extra, dict):
            yield from _check(item, extra, root, (*path, key))


def _check_array(value: list[Any], schema: Schema, root: Schema, path: Path) -> Iterator[SchemaViolation]:
    if "minItems" in schema and len(value) < schema["minItems"]:
        yield SchemaViolation(path, f"needs at least {schema['minItems']} item(s)")
    if "items" in schema:
        for index, item in enumerate(value):
            yield from _check(item, schema["items"], root, (*path, index))


def _check_string(value: str, schema: Schema, path: Path) -> Iterator[SchemaViolation]:
    if "minLength" in schema and len(value) < schema["minLength"]:
        yield SchemaViolation(path, "must not be empty" if schema["minLength"] == 1
                              else f"must be at least {schema['minLength']} characters")
    if "pattern" in schema and not _regex(schema["pattern"]).search(value):
        title = schema.get("title") or f"the pattern {schema['pattern']}"
        yield SchemaViolation(path, f"{value!r} is not {title}")


def _scalar_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def coerce_strings(value: Any, schema: Schema, root: Schema) -> Any:
    """Turn rendered numbers and booleans into strings where the schema wants a string.

    A lone ``{{ expr }}`` keeps its native type (so ``retries: "{{ n }}"`` is an integer);
    where a string is expected (an argv item, a header) the number becomes its text.
    """
    schema = _deref(schema, root)
    options = schema.get("anyOf") or schema.get("oneOf") or []
    typed = [o for o in options if "type" in _deref(o, root) or "$ref" in o]
    if typed:
        fitting = [o for o in typed if _types_match(value, o, root)]
        if fitting:
            return coerce_strings(value, fitting[0], root)
        if isinstance(value, int | float) and any(_types_match("", o, root) for o in typed):
            return _scalar_text(value)
        return value
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: coerce_strings(v, properties[k], root) if k in properties
                else coerce_strings(v, extra, root) if isinstance(extra, dict) else v
                for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce_strings(v, schema["items"], root) for v in value]
    if isinstance(value, int | float) and "type" in schema and not _types_match(value, schema, root) \
            and _types_match("", schema, root):
        return _scalar_text(value)
    return value
