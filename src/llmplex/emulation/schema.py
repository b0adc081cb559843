"""JSON Schema validation: the subset tool parameters and OpenAI's strict mode use.

:func:`validate` returns readable errors with a JSONPath-like location
(``$.unit: 'kelvin' is not one of 'celsius', 'fahrenheit'``). Keywords it does not know
(``description``, ``title``, ``format``, ``default``, ...) are ignored, so an answer is
never refused for a rule this module cannot check. No dependencies; bounded in depth and
in the number of errors, so a hostile value cannot exhaust the stack.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_ERRORS", "json_type", "validate"]

#: values nested deeper than this are refused rather than walked
MAX_DEPTH = 64
#: at most this many errors are reported
MAX_ERRORS = 20
#: schema applications ($ref, allOf, ...) at one place of the value before it is a cycle
_MAX_HOPS = 16
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def validate(schema: Mapping[str, Any] | bool, value: Any) -> list[str]:
    """The ways ``value`` breaks ``schema`` (an empty list: it is valid)."""
    if _depth_exceeds(value, MAX_DEPTH):
        return [f"$: nested deeper than {MAX_DEPTH} levels"]
    errors: list[str] = []
    try:
        _check(schema, value, "$", schema, errors, 0)
    except RecursionError:  # a pathologically nested schema; the value depth is bounded
        errors.append("$: the schema is nested too deeply to check")
    return errors[:MAX_ERRORS]


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= limit:
                return True
            stack.extend(
                (child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)
            )
    return False


def json_type(value: Any) -> str:
    """The JSON name of a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return json_type(value) == kind


def _freeze(value: Any) -> Any:
    """A hashable form with JSON's equality: 1 == 1.0, but True is not 1."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, dict):
        return ("o", frozenset((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("a", tuple(_freeze(v) for v in value))
    return ("v", value)


@functools.lru_cache(maxsize=256)
def _pattern(source: str) -> re.Pattern[str] | None:
    try:
        return re.compile(source)
    except (re.error, TypeError):
        return None  # an invalid pattern is the schema's mistake, not the answer's


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    key = str(key)
    return f"{path}.{key}" if _IDENT.match(key) else f"{path}[{json.dumps(key)}]"


def _resolve(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        return None
    node = root
    for part in ref[1:].split("/")[1:] if ref != "#" else ():
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            return None
    return node


def _check(schema: Any, value: Any, path: str, root: Any, errors: list[str], hops: int) -> None:
    if len(errors) >= MAX_ERRORS or schema is True:
        return
    if schema is False:
        errors.append(f"{path}: no value is allowed here")
        return
    if not isinstance(schema, Mapping):
        return  # not a schema: nothing to check against
    if value is None and schema.get("nullable") is True:
        return
    if hops > _MAX_HOPS:
        errors.append(f"{path}: the schema refers to itself without end")
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _resolve(ref, root)
        if target is None:
            errors.append(f"{path}: cannot resolve $ref {ref!r}")
        else:
            _check(target, value, path, root, errors, hops + 1)
    kinds = schema.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is(value, k) for k in names):
            errors.append(f"{path}: expected {' or '.join(names)}, got {json_type(value)}")
            return  # the other keywords would only repeat the mismatch
    if "const" in schema and _freeze(schema["const"]) != _freeze(value):
        errors.append(f"{path}: expected {_show(schema['const'])}, got {_show(value)}")
    enum = schema.get("enum")
    if isinstance(enum, list) and _freeze(value) not in {_freeze(e) for e in enum}:
        errors.append(f"{path}: {_show(value)} is not one of {', '.join(_show(e) for e in enum)}")
    for sub in schema.get("allOf") or ():
        _check(sub, value, path, root, errors, hops + 1)
    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if isinstance(options, list) and options:
            _check_choice(keyword, options, value, path, root, errors, hops)
    if "not" in schema:
        trial: list[str] = []
        _check(schema["not"], value, path, root, trial, hops + 1)
        if not trial:
            errors.append(f"{path}: must not match the schema in 'not'")
    if isinstance(value, str):
        _check_string(schema, value, path, errors)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(schema, value, path, errors)
    elif isinstance(value, list):
        _check_array(schema, value, path, root, errors)
    elif isinstance(value, dict):
        _check_object(schema, value, path, root, errors)


def _check_choice(
    keyword: str, options: list[Any], value: Any, path: str, root: Any, errors: list[str], hops: int
) -> None:
    failures = []
    for option in options:
        trial: list[str] = []
        _check(option, value, path, root, trial, hops + 1)
        failures.append(trial)
    matched = sum(not f for f in failures)
    if keyword == "oneOf" and matched > 1:
        errors.append(f"{path}: matches {matched} of the oneOf schemas, not exactly one")
    elif not matched:
        best = min(failures, key=len)  # the nearest option explains the problem best
        errors.append(
            f"{path}: matches none of the {keyword} schemas (nearest: {'; '.join(best[:3])})"
        )


def _check_size(
    schema: Mapping[str, Any],
    keyword: str,
    size: int,
    path: str,
    errors: list[str],
    fewer: str,
    more: str,
) -> None:
    """``min<keyword>`` / ``max<keyword>`` (Length, Items, Properties) against ``size``."""
    low, high = schema.get("min" + keyword), schema.get("max" + keyword)
    if isinstance(low, int) and size < low:
        errors.append(f"{path}: {fewer.format(low)}")
    if isinstance(high, int) and size > high:
        errors.append(f"{path}: {more.format(high)}")


def _check_string(schema: Mapping[str, Any], value: str, path: str, errors: list[str]) -> None:
    _check_size(
        schema,
        "Length",
        len(value),
        path,
        errors,
        "shorter than {} characters",
        "longer than {} characters",
    )
    source = schema.get("pattern")
    pattern = _pattern(source) if isinstance(source, str) else None
    if pattern is not None and not pattern.search(value):
        errors.append(f"{path}: {_show(value)} does not match the pattern {source!r}")


def _check_number(schema: Mapping[str, Any], value: float, path: str, errors: list[str]) -> None:
    tests: tuple[tuple[str, Callable[[float], bool], str], ...] = (
        ("minimum", lambda b: value < b, "less than"),
        ("maximum", lambda b: value > b, "greater than"),
        ("exclusiveMinimum", lambda b: value <= b, "at most"),
        ("exclusiveMaximum", lambda b: value >= b, "at least"),
    )
    for keyword, fails, words in tests:
        bound = schema.get(keyword)
        if isinstance(bound, (int, float)) and not isinstance(bound, bool) and fails(bound):
            errors.append(f"{path}: {_show(value)} is {words} {keyword} {_show(bound)}")


def _check_array(
    schema: Mapping[str, Any], value: list[Any], path: str, root: Any, errors: list[str]
) -> None:
    _check_size(
        schema, "Items", len(value), path, errors, "fewer than {} items", "more than {} items"
    )
    if schema.get("uniqueItems") is True:
        seen = set()
        for i, item in enumerate(value):
            key = _freeze(item)
            if key in seen:
                errors.append(f"{_child(path, i)}: repeats an earlier item")
                break
            seen.add(key)
    prefix, items = schema.get("prefixItems"), schema.get("items")
    if isinstance(items, list):  # the older tuple form of items
        prefix, items = items, schema.get("additionalItems")
    prefix = prefix if isinstance(prefix, list) else []
    for i, item in enumerate(value):
        sub = prefix[i] if i < len(prefix) else items
        if sub is False:
            errors.append(f"{_child(path, i)}: no item is allowed here")
        elif sub is not None:
            _check(sub, item, _child(path, i), root, errors, 0)
        if len(errors) >= MAX_ERRORS:
            return


def _check_object(
    schema: Mapping[str, Any], value: dict[str, Any], path: str, root: Any, errors: list[str]
) -> None:
    for name in schema.get("required") or ():
        if name not in value:
            errors.append(f"{path}: missing required property {name!r}")
    _check_size(
        schema,
        "Properties",
        len(value),
        path,
        errors,
        "fewer than {} properties",
        "more than {} properties",
    )
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    patterns = schema.get("patternProperties")
    patterns = patterns if isinstance(patterns, Mapping) else {}
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        where = _child(path, key)
        matched = key in properties
        if matched:
            _check(properties[key], item, where, root, errors, 0)
        for source, sub in patterns.items():
            pattern = _pattern(source)
            if pattern is not None and pattern.search(key):
                matched = True
                _check(sub, item, where, root, errors, 0)
        if not matched:
            if extra is False:
                errors.append(f"{path}: unexpected property {key!r}")
            elif isinstance(extra, Mapping):
                _check(extra, item, where, root, errors, 0)
        if len(errors) >= MAX_ERRORS:
            return
