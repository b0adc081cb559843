"""``response_format`` by prompt: the instruction, and the JSON taken from the answer.

Models asked for JSON only still wrap it in prose or a code fence now and then, so
:func:`extract` looks for it in that order: the whole answer, a fenced block, the first
balanced object (then array) in the prose that parses. :func:`check` validates it against
the requested format; the caller retries with :func:`correction` or reports the problems.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .schema import validate

__all__ = ["check", "correction", "extract", "instruction"]

_FENCED = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_DECODER = json.JSONDecoder(parse_constant=lambda name: _refuse(name))
#: how many places in the prose are tried as the start of the JSON (bounds the work)
_MAX_STARTS = 200


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _kind(response_format: Mapping[str, Any]) -> str:
    kind = response_format.get("type")
    if kind not in ("json_object", "json_schema"):
        raise ValueError(f"response_format type {kind!r} needs no emulation")
    return str(kind)


def instruction(response_format: Mapping[str, Any]) -> str:
    """The system-prompt text asking for the JSON ``response_format`` describes."""
    lines = []
    if _kind(response_format) == "json_schema":
        spec = response_format.get("json_schema") or {}
        lines.append(
            f"Answer with JSON that matches the JSON Schema {spec.get('name')!r}"
            + (f" ({spec['description']})" if spec.get("description") else "")
            + ":"
        )
        lines.append(
            json.dumps(spec.get("schema") or {}, ensure_ascii=False, separators=(",", ":"))
        )
        if spec.get("strict"):
            lines.append("Follow the schema exactly: every required property, no others.")
        lines.append(
            "Write only that JSON value: no prose before or after it, no code fence "
            "(```), no comments."
        )
    else:
        lines.append(
            "Answer with one JSON object only: no prose before or after it, no code "
            "fence (```), no comments."
        )
    return "\n".join(lines)


def extract(text: str) -> tuple[Any, str]:
    """The JSON value in an answer and the slice of the answer it came from.

    Tried in order: the whole answer (trimmed), each fenced block (also one left open at
    the end), the first balanced ``{...}`` that parses, then the first ``[...]``. Raises
    :class:`ValueError` when none is found."""
    trimmed = text.strip()
    try:
        return _DECODER.decode(trimmed), trimmed
    except ValueError:
        pass
    for match in _FENCED.finditer(text):
        body = match.group(2).strip()
        try:
            return _DECODER.decode(body), body
        except ValueError:
            continue
    for opener in "{[":
        start = text.find(opener)
        tries = 0
        while start >= 0 and tries < _MAX_STARTS:
            try:
                value, end = _DECODER.raw_decode(text, start)
                return value, text[start:end]
            except ValueError:
                tries += 1
                start = text.find(opener, start + 1)
    shown = trimmed if len(trimmed) <= 80 else trimmed[:77] + "..."
    raise ValueError(f"no JSON value found in the answer: {shown!r}")


def check(response_format: Mapping[str, Any], text: str) -> tuple[str | None, list[str]]:
    """The JSON to deliver (compact) and the answer's problems against
    ``response_format`` (an empty list: it is valid). The JSON is None when the answer
    holds none."""
    kind = _kind(response_format)
    try:
        value, _ = extract(text)
    except ValueError as exc:
        return None, [str(exc)]
    output = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if kind == "json_object":
        if not isinstance(value, dict):
            kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
            what = kinds.get(type(value), "a number")
            return output, [f"the answer must be a JSON object, not {what}"]
        return output, []
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    return output, validate(schema, value)


def correction(errors: Sequence[str], response_format: Mapping[str, Any]) -> str:
    """The user message asking, once, for corrected JSON."""
    lines = [
        "Your previous answer was not the JSON requested:",
        *(f"- {e}" for e in errors or ["it holds no JSON"]),
        "",
    ]
    lines.append("Answer again. " + instruction(response_format))
    return "\n".join(lines)
