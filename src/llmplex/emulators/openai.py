"""Emulator of the OpenAI Chat Completions API (PROTOCOLS.md §5), served under ``/v1``.

- ``POST /v1/chat/completions``: with ``stream: true`` an SSE stream of compact
  ``chat.completion.chunk`` objects (``data: {...}\\n\\n``): a first chunk carrying
  ``delta.role``, one chunk per scripted piece, a chunk with ``finish_reason``, then, when
  ``stream_options.include_usage`` is set, a chunk with empty ``choices`` and ``usage``
  (every other chunk then has ``"usage":null``), and ``data: [DONE]\\n\\n``. Without
  ``stream`` one ``chat.completion`` object (pretty-printed, as OpenAI sends it).
- ``GET /v1/models`` and ``GET /v1/models/{id}``.
- ``POST /v1/embeddings``: deterministic unit vectors (float lists, or base64 with
  ``encoding_format: "base64"``), ``dimensions`` for ``text-embedding-3`` models, OpenAI's
  400s (:mod:`llmplex.emulators.openai_embeddings`); ``Fault.http_status(..., step="embeddings")``
  makes it fail.
- Errors are OpenAI's: ``{"error": {"message", "type", "param", "code"}}`` with the status.

Token counts are deterministic stand-ins: a token is a whitespace-separated word.
``prompt_tokens`` counts the words of every message's text, ``completion_tokens`` the
words sent in every choice (content, reasoning, refusal, and each tool call's name and
arguments); ``max_tokens`` (or ``max_completion_tokens``) cuts each choice's text after
that many words with ``finish_reason: "length"``, and ``stop`` cuts it before the first
stop sequence.

What a :class:`~llmplex.emulators.script.Script` makes the answer carry:

- ``tool_calls=[{"name", "arguments", "id"?}]``: ``message.tool_calls`` (``{"id", "type":
  "function", "function": {"name", "arguments"}}``; ``arguments`` a string, a dict is
  dumped as compact JSON; ids default to ``call_`` + 24 letters and digits from the
  emulator's seeded random). ``message.content`` is null unless the script also set a
  text (``text`` or ``chunks``), which is then sent as well, before the calls. Streamed
  as OpenAI does, per call: ``{"tool_calls": [{"index": i, "id", "type": "function",
  "function": {"name", "arguments": ""}}]}`` (for a calls-only answer the first one
  rides on the role chunk: ``{"role": "assistant", "content": null, "tool_calls": [...],
  "refusal": null}``), then the arguments in fragments of 2 to 5 characters,
  ``{"tool_calls": [{"index": i, "function": {"arguments": "..."}}]}``. The request steers
  the calls: ``tool_choice: "none"`` answers the text instead (the scripted one, else the
  default); ``tool_choice: {"type": "function", "function": {"name": N}}`` makes exactly
  one call to N (the scripted call's arguments if one has that name, else ``"{}"``);
  ``"required"`` with no scripted calls calls the request's first tool with ``"{}"``;
  ``parallel_tool_calls: false`` keeps the first call only. The calls are made whether or
  not the request defines tools (the script decides).
- The finish reason: the script's ``finish_reason``, or ``"length"`` / ``"stop"`` when
  ``max_tokens`` / ``stop`` cut the text; an answer with tool calls whose finish reason
  would be ``"stop"`` reports ``"tool_calls"`` instead (any other scripted reason, e.g.
  ``"length"`` or ``"content_filter"``, is kept).
- ``reasoning``: streamed before the content as ``{"content": null, "reasoning_content":
  "..."}`` deltas (DeepSeek, vLLM, Groq), non-streamed ``message.reasoning_content``;
  ``Script(extra={"reasoning_field": "reasoning"})`` names the field ``reasoning``
  (OpenRouter) instead. ``usage.completion_tokens_details.reasoning_tokens`` counts its
  words, which ``completion_tokens`` includes.
- ``refusal``: sent instead of the content (and of any tool call): ``delta.refusal``
  pieces after a role chunk ``{"role": "assistant", "content": null, "refusal": ""}``,
  non-streamed ``message.refusal`` with ``content`` null; finish reason ``"stop"``.
- ``alternatives``: with request ``n`` (1..128), the texts of choices 1..n-1; choices
  without one repeat the main text (reasoning, refusal and tool calls, with their own
  ids, apply to every choice). Streamed chunks carry one choice each, interleaved
  round-robin (every choice's role chunk, then their pieces in turn, each choice's
  finish chunk right after its last piece).
- ``cached_tokens``: ``usage.prompt_tokens_details.cached_tokens``.
- ``extra={"model": "gpt-4o-mini-2024-07-18"}``: the ``model`` the answer names (else
  the request's).

What the request makes it carry: ``logprobs: true`` gives every content (or refusal)
piece ``{"token", "logprob", "bytes", "top_logprobs"}`` with ``top_logprobs`` (0..20)
alternatives, values derived from the token (deterministic), in each content chunk's
``choice.logprobs`` (``{"content": [...], "refusal": null}``; the role chunk has an
empty list) and, non-streamed, ``choice.logprobs.content`` for the whole text.
``response_format: {"type": "json_schema", "json_schema": {"schema": S}}`` with the
default text answers a minimal valid instance of S as compact JSON (all ``required``
properties, else all; ``""`` / ``0`` / ``false`` / one-item arrays; the first ``enum``
value or ``const``; ``$ref`` into ``$defs`` resolved; the first branch of ``anyOf`` /
``oneOf``; ``allOf`` merged), so ``client.chat.completions.parse(response_format=Model)``
works; ``{"type": "json_object"}`` with the default text answers ``{"answer": "<default
text>"}``; a scripted text is sent as is. ``service_tier`` is echoed (``"auto"`` runs
as ``"default"``); ``system_fingerprint`` is always there.

In strict mode (the default) the emulator answers the 400s OpenAI answers for: unknown
body fields; a ``tool`` message without ``tool_call_id``, or not answering a preceding
assistant message's ``tool_calls``; an assistant message with ``tool_calls`` not followed
by a tool message for each id; malformed assistant ``tool_calls``; an assistant message
with neither ``content`` nor ``tool_calls``; content parts of a type the role does not
take, text parts without ``text``, ``image_url`` parts whose url is neither http(s) nor a
``data:`` URI; ``tools`` entries that are not ``{"type": "function", "function": {"name":
...}}`` (``custom`` tools pass validation but are never called); ``tool_choice`` other than
``none`` / ``auto`` / ``required`` / a named function of ``tools``, or without ``tools``;
``logprobs`` not a boolean, ``top_logprobs`` outside 0..20 or without ``logprobs: true``;
``n`` outside 1..128; an unknown ``service_tier`` or ``response_format`` type. Where
OpenAI's own message is known it is used verbatim (with its ``param`` and ``code``, which
OpenAI leaves null for its older tool-message checks); others are close equivalents.
``strict=False`` skips these checks (a compatible server): ``n`` and ``top_logprobs``
are then clamped into range.

Behaviour of other compatible servers, per script (``Script(extra={...})``) or for every
answer (constructor flags): ``"stream": False`` answers a streaming request with one JSON
body (as some local servers do); ``"usage": False`` ignores ``stream_options``;
``"done": False`` omits ``data: [DONE]`` (``"done": "disconnect"`` cuts the connection
there instead); ``"finish": False`` ends the stream cleanly after the text, with neither
``finish_reason`` nor ``[DONE]``.

Stream faults (``Fault.error_event`` / ``disconnect`` / ``malformed`` / ``stall`` with
``after=k``) strike after the first k chunks that follow the (first) role chunk: for a
text answer, after k text pieces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import re
import string
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from ..emulation.schema import json_type
from .emulator import Emulator, StreamOutcome
from .script import Fault, Script, split_tokens

__all__ = ["CREATED", "DEFAULT_CREATED", "DEFAULT_MODELS", "KNOWN_PARAMETERS", "OpenAIEmulator"]

DEFAULT_MODELS: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-3.5-turbo")
#: the ``created`` times ``/v1/models`` gives the default models (OpenAI's own)
DEFAULT_CREATED: dict[str, int] = {
    "gpt-4o-mini": 1721172741,
    "gpt-4o": 1715367049,
    "gpt-4.1-mini": 1744318173,
    "gpt-3.5-turbo": 1677610602,
}
#: the ``created`` time of any other model the emulator lists
CREATED = 1686935002

#: top-level body fields the real API accepts; anything else is a 400 in strict mode
KNOWN_PARAMETERS = frozenset(
    {
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "messages",
        "metadata",
        "modalities",
        "model",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
_ROLES = ("system", "assistant", "user", "function", "tool", "developer")

#: status -> (type, code, message) of the bodies OpenAI sends for it
_STATUS_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
}
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an "
    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you "
    "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
    "but what was sent was not valid JSON.)"
)
_WORD = re.compile(r"\S+")
_FINGERPRINT = "fp_0ba0d124f1"
_FRAGMENT_SIZES = (3, 5, 2, 4)
_REASONING_FIELDS = ("reasoning_content", "reasoning")
_SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority")
_RESPONSE_FORMATS = ("text", "json_object", "json_schema")
_TOOL_CHOICES = ("none", "auto", "required")
#: the content part types each role takes
_PART_TYPES: dict[str, tuple[str, ...]] = {
    "user": ("text", "image_url", "input_audio", "file"),
    "system": ("text",),
    "developer": ("text",),
    "tool": ("text",),
    "assistant": ("text", "refusal"),
}
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
#: the tokens top_logprobs offers besides the one chosen
_ALTERNATIVE_TOKENS = (
    " the",
    " a",
    ",",
    ".",
    " and",
    " to",
    " of",
    " I",
    " is",
    " in",
    " it",
    " you",
    " that",
    "!",
    " for",
    " on",
    " with",
    " as",
    " be",
    " this",
    " we",
)
_STRING_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
    "duration": "P0D",
}
_DEEP_SCHEMA, _MAX_SCHEMA_DEPTH = 12, 64
_TOOL_NOT_ANSWERED = (
    "An assistant message with 'tool_calls' must be followed by tool "
    "messages responding to each 'tool_call_id'. The following tool_call_ids"
    " did not have response messages: "
)
_TOOL_NOT_PRECEDED = (
    "Invalid parameter: messages with role 'tool' must be a response to a "
    "preceeding message with 'tool_calls'."
)


def error_body(
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> str:
    """OpenAI's error JSON, spaced as the API sends it (4-space indent, final newline)."""
    return (
        json.dumps(
            {"error": {"message": message, "type": type_, "param": param, "code": code}},
            indent=4,
            ensure_ascii=False,
        )
        + "\n"
    )


def error_response(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        text=error_body(message, type_, param, code),
        content_type="application/json",
        headers=headers,
    )


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    """The text of a message's content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _cut(pieces: Sequence[str], limit: int) -> list[str]:
    """The pieces holding the first ``limit`` characters, keeping their chunking."""
    out: list[str] = []
    for piece in pieces:
        if limit <= 0:
            break
        out.append(piece[:limit])
        limit -= len(piece)
    return [p for p in out if p]


def _quoted(values: Sequence[str]) -> str:
    """``'a'``, ``'a' and 'b'``, ``'a', 'b', and 'c'``: OpenAI's lists of allowed values."""
    items = [f"'{v}'" for v in values]
    if len(items) < 3:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def _invalid_value(value: Any, allowed: Sequence[str], param: str) -> web.Response:
    return error_response(
        400,
        f"Invalid value: {value!r}. Supported values are: {_quoted(allowed)}.",
        param=param,
        code="invalid_value",
    )


def _missing(param: str) -> web.Response:
    return error_response(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def _invalid_type(param: str, expected: str, value: Any) -> web.Response:
    return error_response(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {json_type(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _integer_range(name: str, value: Any, low: int, high: int) -> web.Response | None:
    """OpenAI's 400 for an integer parameter outside ``low..high``, or None."""
    if not isinstance(value, int) or isinstance(value, bool):
        return _invalid_type(name, "an integer", value)
    if value < low:
        return error_response(
            400,
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, "
            f"but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    if value > high:
        return error_response(
            400,
            f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, "
            f"but got {value} instead.",
            param=name,
            code="integer_above_max_value",
        )
    return None


def _fragments(text: str) -> list[str]:
    """``text`` in fragments of 2 to 5 characters (as tool arguments and JSON stream)."""
    out, at, step = [], 0, 0
    while at < len(text):
        size = _FRAGMENT_SIZES[step % len(_FRAGMENT_SIZES)]
        out.append(text[at : at + size])
        at, step = at + size, step + 1
    return out


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _arguments(value: Any) -> str:
    """A scripted call's ``arguments``: a string as is, anything else as compact JSON."""
    if value is None:
        return "{}"
    return value if isinstance(value, str) else _compact(value)


def _logprob(token: str, top: int) -> dict[str, Any]:
    """A token's logprob entry, deterministic: the values derive from the token's bytes."""
    raw = token.encode("utf-8")
    value = -round((zlib.crc32(raw) % 100_000) / 100_000 * 0.75, 6)  # in (-0.75, 0]
    alternatives = [{"token": token, "logprob": value, "bytes": list(raw)}]
    rank = 1
    for other in _ALTERNATIVE_TOKENS:
        if len(alternatives) >= top:
            break
        if other == token:
            continue
        alternatives.append(
            {
                "token": other,
                "logprob": round(value - 2.0 * rank - 0.125, 6),
                "bytes": list(other.encode("utf-8")),
            }
        )
        rank += 1
    return {
        "token": token,
        "logprob": value,
        "bytes": list(raw),
        "top_logprobs": alternatives[:top],
    }


def _resolve(root: Any, ref: str) -> Any:
    """The schema a local ``$ref`` (``#/$defs/Name``, a JSON pointer) points to."""
    if not ref.startswith("#"):
        return {}
    node = root
    for token in ref[1:].split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return {}
    return node


def _instance(schema: Any, root: Any, depth: int = 0) -> Any:
    """A minimal JSON value valid against ``schema`` (the subset structured outputs use)."""
    if not isinstance(schema, dict) or depth > _MAX_SCHEMA_DEPTH:
        return None
    deep = depth > _DEEP_SCHEMA  # past this, recursive schemas end as soon as they may
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _instance(_resolve(root, ref), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            if deep and any(isinstance(b, dict) and b.get("type") == "null" for b in branches):
                return None
            return _instance(branches[0], root, depth + 1)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        parts = [_instance(b, root, depth + 1) for b in all_of]
        if not all(isinstance(p, dict) for p in parts):
            return parts[0]
        merged: dict[str, Any] = {}
        for part in parts:
            merged.update(part)
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        own = _instance(rest, root, depth + 1) if "properties" in rest else {}
        return {**merged, **own} if isinstance(own, dict) else merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        if "properties" in schema or "required" in schema:
            kind = "object"
        elif "items" in schema or "prefixItems" in schema:
            kind = "array"
    if kind == "object":
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        names = (
            [n for n in required if isinstance(n, str)]
            if isinstance(required, list)
            else list(properties)
        )
        extra = schema.get("additionalProperties")
        return {
            name: _instance(
                properties.get(name, extra if isinstance(extra, dict) else {}), root, depth + 1
            )
            for name in names
        }
    if kind == "array":
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            return [_instance(item, root, depth + 1) for item in prefix]
        min_items, max_items = schema.get("minItems"), schema.get("maxItems")
        fewest = min_items if isinstance(min_items, int) else 0
        count = fewest if deep or max_items == 0 else max(1, fewest)
        return [_instance(schema.get("items", {}), root, depth + 1) for _ in range(count)]
    if kind == "string":
        text = _STRING_FORMATS.get(str(schema.get("format")), "")
        min_length = schema.get("minLength")
        return text.ljust(min_length, "a") if isinstance(min_length, int) else text
    if kind in ("integer", "number"):
        number: float = 0
        minimum, exclusive = schema.get("minimum"), schema.get("exclusiveMinimum")
        maximum = schema.get("maximum")
        if isinstance(minimum, (int, float)) and minimum > number:
            number = minimum
        if isinstance(exclusive, (int, float)) and exclusive >= number:
            number = exclusive + 1
        if isinstance(maximum, (int, float)) and maximum < number:
            number = maximum
        step = schema.get("multipleOf")
        if isinstance(step, (int, float)) and step > 0 and number % step:
            number = math.ceil(number / step) * step
        return math.ceil(number) if kind == "integer" else number
    if kind == "boolean":
        return False
    return None


def _limited(pieces: list[str], body: dict[str, Any], finish: str) -> tuple[list[str], str]:
    """The pieces left after the request's ``stop`` sequences and token limit, and the
    finish reason they imply."""
    reply = "".join(pieces)
    end = len(reply)
    stops = body.get("stop")
    for stop in [stops] if isinstance(stops, str) else stops or ():
        at = reply.find(stop) if isinstance(stop, str) and stop else -1
        if 0 <= at < end:
            end, finish = at, "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0:
        words = list(_WORD.finditer(reply))
        if len(words) > limit and words[limit - 1].end() < end:
            end, finish = words[limit - 1].end(), "length"
    return _cut(pieces, end), finish


def _check_parts(parts: list[Any], role: str, i: int) -> web.Response | None:
    """OpenAI's 400 for a message's content parts, or None."""
    allowed = _PART_TYPES.get(role, ("text",))
    for j, part in enumerate(parts):
        at = f"messages[{i}].content[{j}]"
        if not isinstance(part, dict):
            return _invalid_type(at, "an object", part)
        if "type" not in part:
            return _missing(f"{at}.type")
        kind = part["type"]
        if kind not in allowed:
            return _invalid_value(kind, allowed, f"{at}.type")
        if kind == "text" and not isinstance(part.get("text"), str):
            return (
                _missing(f"{at}.text")
                if "text" not in part
                else _invalid_type(f"{at}.text", "a string", part["text"])
            )
        if kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or "url" not in image:
                return _missing(
                    f"{at}.image_url" if not isinstance(image, dict) else f"{at}.image_url.url"
                )
            url = image["url"]
            if not isinstance(url, str):
                return _invalid_type(f"{at}.image_url.url", "a string", url)
            if not _image_url_ok(url):
                return error_response(
                    400,
                    f"Invalid image URL: '{at}.image_url.url'. Expected a valid URL, but got"
                    " a value with an invalid format.",
                    param=f"{at}.image_url.url",
                    code="invalid_value",
                )
    return None


def _image_url_ok(url: str) -> bool:
    """An http(s) URL with a host, or a ``data:`` URI."""
    from urllib.parse import urlsplit

    if url[:5].lower() == "data:":
        return "," in url
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


@dataclasses.dataclass
class _Choice:
    """What one choice of an answer carries."""

    index: int
    content: list[str] | None  # None: ``content`` is null
    reasoning: list[str]
    refusal: list[str] | None  # None: no refusal
    calls: list[dict[str, str]]  # {"id", "name", "arguments"}
    finish: str

    def tokens(self) -> int:
        return (
            _words("".join(self.content or ()))
            + _words("".join(self.reasoning))
            + _words("".join(self.refusal or ()))
            + sum(_words(c["name"]) + _words(c["arguments"]) for c in self.calls)
        )


class OpenAIEmulator(Emulator):
    """OpenAI's ``/v1/chat/completions``, ``/v1/embeddings`` and ``/v1/models``.

    ``api_keys``: ``None`` accepts any request (with or without a key); a collection
    requires ``Authorization: Bearer <one of them>`` (else 401, as OpenAI answers).
    ``models``: the list ``/v1/models`` shows (ids, or a mapping of ids to their
    ``created`` times); when given, other model names are a 404 ``model_not_found`` (by
    default any name is served). ``strict``: reject body fields
    the real API does not know (400 ``Unrecognized request argument supplied``); compatible
    servers such as vLLM accept extras, so ``strict=False`` does too.
    """

    name = "openai"
    provider = "OpenAICompatible"

    def __init__(
        self,
        script: Script | None = None,
        *,
        api_keys: Iterable[str] | None = None,
        models: Sequence[str] | Mapping[str, int] | None = None,
        strict: bool = True,
        honor_stream: bool = True,
        honor_stream_options: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(script)
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.models = list(models) if models is not None else list(DEFAULT_MODELS)
        self.created = {**DEFAULT_CREATED, **(models if isinstance(models, Mapping) else {})}
        self.enforce_models = models is not None
        self.strict = strict
        self.honor_stream = honor_stream
        self.honor_stream_options = honor_stream_options
        self._random = random.Random(seed)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/v1/embeddings", self.create_embeddings),
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{model:.+}", self.get_model),
            web.route("*", "/{tail:.*}", self.not_found),
        ]

    # -- helpers ---------------------------------------------------------------------------

    def _id(self, prefix: str, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
        return prefix + "".join(self._random.choice(alphabet) for _ in range(n))

    def _headers(self) -> dict[str, str]:
        return {
            "x-request-id": self._id("req_", 32, "0123456789abcdef"),
            "openai-version": "2020-10-01",
            "openai-processing-ms": "42",
        }

    def _auth(self, request: web.Request) -> web.Response | None:
        if self.api_keys is None:
            return None
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            return error_response(401, _NO_KEY)
        key = header[7:].strip()
        if key in self.api_keys:
            return None
        shown = f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}" if len(key) > 10 else "***"
        return error_response(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    def _fault_response(self, fault: Fault) -> web.Response:
        type_, code, message = _STATUS_ERRORS.get(
            fault.status,
            (
                "server_error" if fault.status >= 500 else "invalid_request_error",
                None,
                "request failed",
            ),
        )
        headers = self._headers()
        if fault.status == 429 and fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        return error_response(
            fault.status, fault.message or message, type_, code=code, headers=headers
        )

    def _validate(self, body: Any) -> web.Response | None:
        """The 400 OpenAI answers for a bad body, or None."""
        if not isinstance(body, dict):
            return error_response(400, _BAD_JSON)
        if self.strict:
            unknown = sorted(k for k in body if k not in KNOWN_PARAMETERS)
            if unknown:
                plural = "s" if len(unknown) > 1 else ""
                return error_response(
                    400, f"Unrecognized request argument{plural} supplied: {', '.join(unknown)}"
                )
        if "messages" not in body:
            return error_response(
                400,
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        if "model" not in body:
            return error_response(400, "you must provide a model parameter")
        if not isinstance(body["model"], str):
            return error_response(
                400,
                "Invalid type for 'model': expected a string.",
                param="model",
                code="invalid_type",
            )
        messages = body["messages"]
        if not isinstance(messages, list):
            return error_response(
                400,
                "Invalid type for 'messages': expected an array.",
                param="messages",
                code="invalid_type",
            )
        if not messages:
            return error_response(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1,"
                " but got an empty array instead.",
                param="messages",
                code="empty_array",
            )
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in _ROLES:
                return error_response(
                    400,
                    f"Invalid value: {role!r}. Supported values are: 'system', 'assistant',"
                    " 'user', 'function', 'tool', and 'developer'.",
                    param=f"messages[{i}].role",
                    code="invalid_value",
                )
            if role != "assistant" and not isinstance(message.get("content"), (str, list)):
                return error_response(
                    400,
                    f"Missing required parameter: 'messages[{i}].content'.",
                    param=f"messages[{i}].content",
                    code="missing_required_parameter",
                )
        if "stream" in body and not isinstance(body["stream"], bool):
            return error_response(
                400,
                "Invalid type for 'stream': expected a boolean.",
                param="stream",
                code="invalid_type",
            )
        if body.get("stream_options") is not None and not body.get("stream"):
            return error_response(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        for name, low, high in (
            ("temperature", 0, 2),
            ("top_p", 0, 1),
            ("presence_penalty", -2, 2),
            ("frequency_penalty", -2, 2),
        ):
            value = body.get(name)
            if value is not None and (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not low <= value <= high
            ):
                return error_response(
                    400,
                    f"Invalid '{name}': expected a number between {low} and {high}, "
                    f"but got {value!r} instead.",
                    param=name,
                    code="invalid_value",
                )
        for name in ("max_tokens", "max_completion_tokens"):
            value = body.get(name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                return error_response(
                    400,
                    f"Invalid '{name}': integer below minimum value. Expected a value >= 1,"
                    f" but got {value!r} instead.",
                    param=name,
                    code="integer_below_min_value",
                )
        stop = body.get("stop")
        if (
            stop is not None
            and not isinstance(stop, str)
            and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
        ):
            return error_response(
                400,
                "Invalid type for 'stop': expected a string or an array of strings.",
                param="stop",
                code="invalid_type",
            )
        if isinstance(stop, list) and len(stop) > 4:
            return error_response(
                400,
                "Invalid 'stop': array too long. Expected an array with maximum length 4, "
                f"but got an array with length {len(stop)} instead.",
                param="stop",
                code="array_above_max_length",
            )
        if self.strict:
            invalid = self._validate_strict(body)
            if invalid is not None:
                return invalid
        if self.enforce_models and body["model"] not in self.models:
            return error_response(
                404,
                f"The model `{body['model']}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return None

    def _validate_strict(self, body: dict[str, Any]) -> web.Response | None:
        """The 400s of the real API for tools, tool messages, content parts, logprobs,
        ``n``, ``service_tier`` and ``response_format`` (strict mode only)."""
        return (
            self._check_messages(body["messages"])
            or self._check_tools(body)
            or self._check_options(body)
        )

    @staticmethod
    def _check_messages(messages: list[dict[str, Any]]) -> web.Response | None:
        for i, message in enumerate(messages):
            role, content = message["role"], message.get("content")
            if role == "tool" and not isinstance(message.get("tool_call_id"), str):
                return error_response(
                    400,
                    "Missing parameter 'tool_call_id': messages with role 'tool' must "
                    "have a 'tool_call_id'.",
                    param=f"messages.[{i}].tool_call_id",
                )
            calls = message.get("tool_calls")
            if role == "assistant" and calls is not None:
                where = f"messages[{i}].tool_calls"
                if not isinstance(calls, list):
                    return _invalid_type(where, "an array", calls)
                if not calls:
                    return error_response(
                        400,
                        f"Invalid '{where}': empty array. Expected an array with minimum "
                        "length 1, but got an empty array instead.",
                        param=where,
                        code="empty_array",
                    )
                for j, call in enumerate(calls):
                    at = f"{where}[{j}]"
                    if not isinstance(call, dict):
                        return _invalid_type(at, "an object", call)
                    for key in ("id", "type", "function"):
                        if key not in call:
                            return _missing(f"{at}.{key}")
                    if call["type"] != "function":
                        return _invalid_value(call["type"], ("function",), f"{at}.type")
                    function = call["function"]
                    if not isinstance(function, dict):
                        return _invalid_type(f"{at}.function", "an object", function)
                    for key in ("name", "arguments"):
                        if key not in function:
                            return _missing(f"{at}.function.{key}")
                        if not isinstance(function[key], str):
                            return _invalid_type(f"{at}.function.{key}", "a string", function[key])
            if (
                role == "assistant"
                and content is None
                and not calls
                and not any(message.get(k) for k in ("function_call", "audio", "refusal"))
            ):
                return error_response(
                    400,
                    "Invalid value for 'content': expected a string, got null.",
                    param=f"messages.[{i}].content",
                )
            if isinstance(content, list):
                invalid = _check_parts(content, role, i)
                if invalid is not None:
                    return invalid
        # Every assistant message with tool_calls is followed by one tool message per id.
        pending: list[str] | None = None  # the ids the current tool messages answer
        answered: set[str] = set()
        opened = 0
        for i, message in enumerate(messages):
            if message["role"] == "tool":
                if pending is None or message["tool_call_id"] not in pending:
                    return error_response(400, _TOOL_NOT_PRECEDED, param=f"messages.[{i}].role")
                answered.add(message["tool_call_id"])
                continue
            if pending is not None:
                missing = [c for c in pending if c not in answered]
                if missing:
                    return error_response(
                        400, _TOOL_NOT_ANSWERED + ", ".join(missing), param=f"messages.[{i}].role"
                    )
                pending = None
            if message["role"] == "assistant" and message.get("tool_calls"):
                pending = [c["id"] for c in message["tool_calls"]]
                answered, opened = set(), i
        if pending is not None:
            missing = [c for c in pending if c not in answered]
            if missing:
                return error_response(
                    400, _TOOL_NOT_ANSWERED + ", ".join(missing), param=f"messages.[{opened}].role"
                )
        return None

    @staticmethod
    def _check_tools(body: dict[str, Any]) -> web.Response | None:
        tools = body.get("tools")
        names: list[str] = []
        if tools is not None:
            if not isinstance(tools, list):
                return _invalid_type("tools", "an array", tools)
            if not tools:
                return error_response(
                    400,
                    "Invalid 'tools': empty array. Expected an array with minimum length 1,"
                    " but got an empty array instead.",
                    param="tools",
                    code="empty_array",
                )
            for i, tool in enumerate(tools):
                if not isinstance(tool, dict):
                    return _invalid_type(f"tools[{i}]", "an object", tool)
                if "type" not in tool:
                    return _missing(f"tools[{i}].type")
                kind = tool["type"]
                if kind not in ("function", "custom"):
                    return _invalid_value(kind, ("function", "custom"), f"tools[{i}].type")
                spec = tool.get(kind)
                if spec is None:
                    return _missing(f"tools[{i}].{kind}")
                if not isinstance(spec, dict):
                    return _invalid_type(f"tools[{i}].{kind}", "an object", spec)
                name = spec.get("name")
                if name is None:
                    return _missing(f"tools[{i}].{kind}.name")
                if not isinstance(name, str):
                    return _invalid_type(f"tools[{i}].{kind}.name", "a string", name)
                if not _FUNCTION_NAME.match(name):
                    return error_response(
                        400,
                        f"Invalid 'tools[{i}].{kind}.name': string does not match pattern."
                        " Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                        param=f"tools[{i}].{kind}.name",
                        code="invalid_value",
                    )
                if kind == "function":
                    names.append(name)
        choice = body.get("tool_choice")
        if choice is None:
            return None
        if not tools:
            return error_response(
                400,
                "Invalid value for 'tool_choice': 'tool_choice' is only "
                "allowed when 'tools' are specified.",
                param="tool_choice",
            )
        if isinstance(choice, str):
            if choice not in _TOOL_CHOICES:
                return _invalid_value(choice, _TOOL_CHOICES, "tool_choice")
            return None
        if not isinstance(choice, dict):
            return _invalid_type("tool_choice", "a string or an object", choice)
        if "type" not in choice:
            return _missing("tool_choice.type")
        if choice["type"] != "function":
            return _invalid_value(choice["type"], ("function",), "tool_choice.type")
        function = choice.get("function")
        if not isinstance(function, dict) or "name" not in function:
            return _missing(
                "tool_choice.function"
                if not isinstance(function, dict)
                else "tool_choice.function.name"
            )
        if function["name"] not in names:
            return error_response(
                400,
                f"Invalid value for 'tool_choice': function {function['name']!r} is not "
                "one of the functions in 'tools'.",
                param="tool_choice.function.name",
                code="invalid_value",
            )
        return None

    @staticmethod
    def _check_options(body: dict[str, Any]) -> web.Response | None:
        logprobs = body.get("logprobs")
        if logprobs is not None and not isinstance(logprobs, bool):
            return _invalid_type("logprobs", "a boolean", logprobs)
        top = body.get("top_logprobs")
        if top is not None:
            invalid = _integer_range("top_logprobs", top, 0, 20)
            if invalid is not None:
                return invalid
            if logprobs is not True:
                return error_response(
                    400,
                    "The 'top_logprobs' parameter is only allowed when 'logprobs' is enabled.",
                    param="top_logprobs",
                )
        if body.get("n") is not None:
            invalid = _integer_range("n", body["n"], 1, 128)
            if invalid is not None:
                return invalid
        tier = body.get("service_tier")
        if tier is not None and tier not in _SERVICE_TIERS:
            return _invalid_value(tier, _SERVICE_TIERS, "service_tier")
        fmt = body.get("response_format")
        if fmt is not None:
            if not isinstance(fmt, dict):
                return _invalid_type("response_format", "an object", fmt)
            if "type" not in fmt:
                return _missing("response_format.type")
            if fmt["type"] not in _RESPONSE_FORMATS:
                return _invalid_value(fmt["type"], _RESPONSE_FORMATS, "response_format.type")
            if fmt["type"] == "json_schema":
                spec = fmt.get("json_schema")
                if not isinstance(spec, dict):
                    return _missing("response_format.json_schema")
                if "name" not in spec:
                    return _missing("response_format.json_schema.name")
        return None

    # -- handlers --------------------------------------------------------------------------

    async def not_found(self, request: web.Request) -> web.Response:
        await self.record(request)
        return error_response(404, f"Invalid URL ({request.method} {request.path})")

    async def list_models(self, request: web.Request) -> web.Response:
        await self.record(request)
        denied = self._auth(request)
        if denied is not None:
            return denied
        script = self._queue[0] if self._queue else self.script
        fault = script.fault
        if fault is not None and fault.kind == "status" and fault.step == "models":
            if self._queue:
                self._queue.popleft()
            return self._fault_response(fault)
        data = [
            {
                "id": m,
                "object": "model",
                "created": self.created.get(m, CREATED),
                "owned_by": "system",
            }
            for m in self.models
        ]
        return web.Response(
            text=json.dumps({"object": "list", "data": data}, indent=2),
            content_type="application/json",
            headers=self._headers(),
        )

    async def get_model(self, request: web.Request) -> web.Response:
        await self.record(request)
        denied = self._auth(request)
        if denied is not None:
            return denied
        model = request.match_info["model"]
        if model not in self.models:
            return error_response(
                404, f"The model '{model}' does not exist", param="model", code="model_not_found"
            )
        return web.Response(
            text=json.dumps(
                {
                    "id": model,
                    "object": "model",
                    "created": self.created.get(model, CREATED),
                    "owned_by": "system",
                },
                indent=2,
            ),
            content_type="application/json",
            headers=self._headers(),
        )

    async def create_embeddings(self, request: web.Request) -> web.Response:
        """``POST /v1/embeddings`` (:mod:`llmplex.emulators.openai_embeddings`)."""
        from . import openai_embeddings

        record = await self.record(request)
        denied = self._auth(request)
        if denied is not None:
            return denied
        script = self._queue[0] if self._queue else self.script
        fault = script.fault
        if fault is not None and fault.kind == "status" and fault.step == "embeddings":
            if self._queue:
                self._queue.popleft()
            return self._fault_response(fault)
        try:
            body = json.loads(record.body)
        except ValueError:
            return error_response(400, _BAD_JSON)
        problem = openai_embeddings.check(body, self.strict)
        if problem is not None:
            return error_response(400, problem[0], param=problem[1], code=problem[2])
        if self.enforce_models and body["model"] not in self.models:
            return error_response(
                404,
                f"The model '{body['model']}' does not exist",
                param="model",
                code="model_not_found",
            )
        return web.Response(
            text=json.dumps(openai_embeddings.embeddings(body)),
            content_type="application/json",
            headers=self._headers(),
        )

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        denied = self._auth(request)
        if denied is not None:
            return denied
        try:
            body = json.loads(record.body)
        except ValueError:
            body = None
        invalid = self._validate(body)
        if invalid is not None:
            return invalid
        script = self.next_script()
        fault = script.fault_at("status", "chat")
        if fault is not None:
            return self._fault_response(fault)

        choices = self._choices(script, body)
        prompt_tokens = sum(_words(_text_of(m.get("content"))) for m in body["messages"])
        completion_tokens = sum(c.tokens() for c in choices)
        reasoning_tokens = sum(_words("".join(c.reasoning)) for c in choices)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": script.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        tier = body.get("service_tier")
        top = body.get("top_logprobs")
        meta = {
            "id": self._id("chatcmpl-", 29),
            "created": int(time.time()),
            "model": script.extra.get("model") or body["model"],
            "service_tier": tier if isinstance(tier, str) and tier != "auto" else "default",
            "logprobs": body.get("logprobs") is True,
            "top": min(max(top, 0), 20) if isinstance(top, int) else 0,
            "reasoning_field": script.extra.get("reasoning_field", _REASONING_FIELDS[0]),
        }
        flag = script.extra.get
        if body.get("stream") and flag("stream", self.honor_stream):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and flag(
                "usage", self.honor_stream_options
            )
            return await self._stream(
                request, script, choices, meta, usage if include_usage else None
            )
        return await self._complete(request, script, choices, meta, usage)

    def _choices(self, script: Script, body: dict[str, Any]) -> list[_Choice]:
        """What each of the request's ``n`` choices answers (see the module docstring)."""
        n = body.get("n")
        n = min(max(n, 1), 128) if isinstance(n, int) and not isinstance(n, bool) else 1
        calls = self._planned_calls(script, body)
        if script.text_scripted:
            main: list[str] | None = script.pieces()
        elif calls:
            main = None
        else:
            main = self._default_pieces(script, body)
        alternatives = list(script.alternatives or ())
        choices = []
        for index in range(n):
            pieces = main
            if index and index <= len(alternatives):
                pieces = split_tokens(alternatives[index - 1])
            finish = script.finish_reason
            refusal = None
            if script.refusal is not None:
                pieces, refusal = None, split_tokens(script.refusal)
            elif pieces is not None:
                pieces, finish = _limited(list(pieces), body, finish)
            made = (
                []
                if refusal is not None
                else [
                    {"id": call_id or self._id("call_", 24), "name": name, "arguments": arguments}
                    for name, arguments, call_id in calls
                ]
            )
            if made and finish == "stop":
                finish = "tool_calls"
            choices.append(
                _Choice(index, pieces, split_tokens(script.reasoning or ""), refusal, made, finish)
            )
        return choices

    @staticmethod
    def _planned_calls(script: Script, body: dict[str, Any]) -> list[tuple[str, str, str | None]]:
        """``(name, arguments, id or None)`` of the calls the answer makes."""
        scripted = [
            (str(c.get("name", "")), _arguments(c.get("arguments")), c.get("id"))
            for c in script.tool_calls or ()
        ]
        choice = body.get("tool_choice")
        if choice == "none":
            return []
        if (
            isinstance(choice, dict)
            and isinstance(choice.get("function"), dict)
            and isinstance(choice["function"].get("name"), str)
        ):
            name = choice["function"]["name"]
            return [next((c for c in scripted if c[0] == name), (name, "{}", None))]
        if choice == "required" and not scripted:
            for tool in body.get("tools") or ():
                if (
                    isinstance(tool, dict)
                    and tool.get("type") == "function"
                    and isinstance(tool.get("function"), dict)
                    and tool["function"].get("name")
                ):
                    return [(str(tool["function"]["name"]), "{}", None)]
        if body.get("parallel_tool_calls") is False:
            return scripted[:1]
        return scripted

    @staticmethod
    def _default_pieces(script: Script, body: dict[str, Any]) -> list[str]:
        """The answer when the test scripted no text: the default text, or in JSON mode a
        document of the requested shape."""
        fmt = body.get("response_format")
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "json_schema":
            spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
            schema = spec.get("schema") if isinstance(spec, dict) else None
            schema = schema if isinstance(schema, dict) else {"type": "object"}
            return _fragments(_compact(_instance(schema, schema)))
        if kind == "json_object":
            return _fragments(json.dumps({"answer": str(script.text)}, ensure_ascii=False))
        return script.pieces()

    @staticmethod
    def _logprobs(pieces: list[str], meta: dict[str, Any]) -> list[dict[str, Any]]:
        return [_logprob(piece, meta["top"]) for piece in pieces]

    async def _complete(
        self,
        request: web.Request,
        script: Script,
        choices: list[_Choice],
        meta: dict[str, Any],
        usage: dict[str, Any],
    ) -> web.StreamResponse:
        """A non-streamed answer, with the script's faults in their non-stream form."""
        fault = script.fault
        if script.delay:
            await asyncio.sleep(script.delay * len(choices[0].content or ()))
        if fault is not None and fault.kind == "stall":
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind == "error_event":
            return error_response(500, fault.message, "server_error", code=fault.reason or None)
        rendered = []
        for choice in choices:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None if choice.content is None else "".join(choice.content),
            }
            if choice.reasoning:
                message[meta["reasoning_field"]] = "".join(choice.reasoning)
            if choice.calls:
                message["tool_calls"] = [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in choice.calls
                ]
            message["refusal"] = None if choice.refusal is None else "".join(choice.refusal)
            message["annotations"] = []
            logprobs = None
            if meta["logprobs"]:
                logprobs = {
                    "content": None
                    if choice.content is None
                    else self._logprobs(choice.content, meta),
                    "refusal": None
                    if choice.refusal is None
                    else self._logprobs(choice.refusal, meta),
                }
            rendered.append(
                {
                    "index": choice.index,
                    "message": message,
                    "logprobs": logprobs,
                    "finish_reason": choice.finish,
                }
            )
        completion = {
            "id": meta["id"],
            "object": "chat.completion",
            "created": meta["created"],
            "model": meta["model"],
            "choices": rendered,
            "usage": usage,
            "service_tier": meta["service_tier"],
            "system_fingerprint": _FINGERPRINT,
        }
        raw = json.dumps(completion, indent=2, ensure_ascii=False).encode()
        if fault is not None and fault.kind == "malformed":
            raw = b"{this is not json"
        response = web.StreamResponse(
            headers={
                **self._headers(),
                "Content-Type": "application/json",
                "Content-Length": str(len(raw)),
            }
        )
        await response.prepare(request)
        if fault is not None and fault.kind == "disconnect":
            await response.write(raw[: len(raw) // 2])
            if request.transport is not None:
                request.transport.abort()  # the client sees a body cut short
            return response
        await response.write(raw)
        await response.write_eof()
        return response

    def _frames(
        self, choice: _Choice, meta: dict[str, Any], chunk: Callable[..., bytes]
    ) -> list[tuple[bool, bytes]]:
        """One choice's stream chunks, in order: ``(is_finish_chunk, bytes)``."""
        want = meta["logprobs"]

        def frame(
            delta: dict[str, Any], logprobs: Any = None, finish: str | None = None
        ) -> tuple[bool, bytes]:
            return finish is not None, chunk(
                [
                    {
                        "index": choice.index,
                        "delta": delta,
                        "logprobs": logprobs,
                        "finish_reason": finish,
                    }
                ]
            )

        def header(k: int, call: dict[str, str]) -> dict[str, Any]:
            return {
                "index": k,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }

        role: dict[str, Any] = {
            "role": "assistant",
            "content": None if choice.content is None else "",
        }
        riding = (
            bool(choice.calls)
            and choice.content is None
            and choice.refusal is None
            and not choice.reasoning
        )  # a calls-only answer: the first call rides on it
        if riding:
            role["tool_calls"] = [header(0, choice.calls[0])]
        role["refusal"] = None if choice.refusal is None else ""
        role_logprobs: dict[str, Any] | None = None
        if want and choice.refusal is not None:
            role_logprobs = {"content": None, "refusal": []}
        elif want and choice.content is not None:
            role_logprobs = {"content": [], "refusal": None}
        frames = [frame(role, role_logprobs)]
        field = meta["reasoning_field"]
        frames += [frame({"content": None, field: piece}) for piece in choice.reasoning]
        for piece in choice.content or ():
            frames.append(
                frame(
                    {"content": piece},
                    {"content": [_logprob(piece, meta["top"])], "refusal": None} if want else None,
                )
            )
        for piece in choice.refusal or ():
            frames.append(
                frame(
                    {"refusal": piece},
                    {"content": None, "refusal": [_logprob(piece, meta["top"])]} if want else None,
                )
            )
        for k, call in enumerate(choice.calls):
            if not (riding and k == 0):
                frames.append(frame({"tool_calls": [header(k, call)]}))
            frames += [
                frame({"tool_calls": [{"index": k, "function": {"arguments": part}}]})
                for part in _fragments(call["arguments"])
            ]
        frames.append(frame({}, None, choice.finish))
        return frames

    async def _stream(
        self,
        request: web.Request,
        script: Script,
        choices: list[_Choice],
        meta: dict[str, Any],
        usage: dict[str, Any] | None,
    ) -> web.StreamResponse:
        extra = {"usage": None} if usage is not None else {}

        def chunk(choices: list[dict[str, Any]], **more: Any) -> bytes:
            data = {
                "id": meta["id"],
                "object": "chat.completion.chunk",
                "created": meta["created"],
                "model": meta["model"],
                "service_tier": meta["service_tier"],
                "system_fingerprint": _FINGERPRINT,
                "choices": choices,
                **extra,
                **more,
            }
            return (
                b"data: "
                + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
                + b"\n\n"
            )

        def error(fault: Fault) -> bytes:
            return (
                b"data: "
                + json.dumps(
                    {
                        "error": {
                            "message": fault.message,
                            "type": "server_error",
                            "param": None,
                            "code": fault.reason or None,
                        }
                    },
                    separators=(",", ":"),
                    ensure_ascii=False,
                ).encode()
                + b"\n\n"
            )

        # The choices' chunks interleaved round-robin; then split into the first (role)
        # chunk, the body the script's stream faults count in, and the final finish chunks.
        per_choice = [self._frames(c, meta, chunk) for c in choices]
        frames = [
            f[step]
            for step in range(max(map(len, per_choice)))
            for f in per_choice
            if step < len(f)
        ]
        finish = script.extra.get("finish", True)
        if not finish:
            frames = [f for f in frames if not f[0]]
        tail = len(frames)
        while tail > 1 and frames[tail - 1][0]:
            tail -= 1
        head, body, ending = frames[0][1], [f[1] for f in frames[1:tail]], frames[tail:]

        response = web.StreamResponse(
            headers={
                **self._headers(),
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(request)
        try:
            await response.write(head)
        except (ConnectionError, RuntimeError):
            return response
        outcome = await self.play(
            request,
            response,
            dataclasses.replace(script, chunks=[""] * len(body)),
            lambda _, index: body[index],
            error=error,
            malformed=b"data: {this is not json\n\n",
        )
        if outcome == StreamOutcome.ABORTED:
            return response
        try:
            if outcome == StreamOutcome.COMPLETE and finish:
                for _, data in ending:
                    await response.write(data)
                if usage is not None:
                    await response.write(chunk([], usage=usage))
                done = script.extra.get("done", True)
                if done == "disconnect":  # the connection drops where [DONE] was due
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                if done:
                    await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away after the last chunk
        return response
