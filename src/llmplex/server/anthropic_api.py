"""Anthropic's Messages API on the server: ``POST /v1/messages`` and
``POST /v1/messages/count_tokens``, for Claude Code and the ``anthropic`` SDK.

A request in Anthropic's shape is translated onto llmplex's typed request
(:func:`chat_arguments`, the arguments of ``chat.completions.create``) and served by any
provider; the answer is sent back in Anthropic's shape (:func:`message_for`), streamed
as Anthropic's event sequence (:class:`MessageStream`). Errors have Anthropic's body
(:func:`anthropic_error`).

Translation (every route):

- ``system`` (a string or text blocks) -> a system message; ``messages``: ``text`` ->
  text parts, ``image`` (``base64`` or ``url`` source) -> ``image_url`` parts (a ``data:``
  URL), assistant ``tool_use`` -> ``tool_calls``, ``tool_result`` -> ``tool`` messages
  (text or text blocks; ``is_error: true`` puts ``Error:`` before the text, the only way
  to say it in OpenAI's shape).
- ``tools`` (custom tools with ``input_schema``) -> function tools; server tools
  (``web_search``, ``code_execution``...) are refused by name: their answers have no
  place in llmplex's stream. ``tool_choice`` ``auto`` / ``any`` / ``tool`` / ``none`` ->
  ``auto`` / ``required`` / the named function / ``none``, ``disable_parallel_tool_use``
  -> ``parallel_tool_calls: false``.
- ``stop_sequences`` -> ``stop``; ``temperature``, ``top_p``, ``max_tokens`` as they are;
  ``top_k`` the provider option of that name (refused by providers without it);
  ``metadata.user_id`` -> ``user``; ``thinking`` (enabled) -> ``reasoning_effort`` from
  its budget (up to 2048 ``low``, up to 8192 ``medium``, else ``high``).
- Accepted without effect on other services: ``cache_control`` (a caching hint of
  Anthropic's, on blocks, tools or the whole request), the thinking blocks of earlier turns (Anthropic drops them from the
  context too), the ``anthropic-version`` and ``anthropic-beta`` headers.

Pass-through: when every route a request may take is the
:class:`~llmplex.providers.anthropic.Anthropic` provider (a ``claude-...`` model), the
request body reaches it as the caller sent it (the provider's ``anthropic_body`` option,
with ``anthropic-beta`` as a header): system blocks, ``cache_control``, thinking blocks
and their signatures, ``is_error``, ``service_tier``, any field Anthropic adds later.
The translation still runs, to route and to check the request.

What the answer cannot carry: thinking *signatures* (llmplex's stream events have no
place for them; thinking blocks are sent with ``"signature": ""``) and which stop
sequence matched (``stop_reason`` is ``end_turn``, ``stop_sequence`` null).

Usage: ``input_tokens`` is the upstream's prompt count without cached and cache-written
tokens, which are ``cache_read_input_tokens`` / ``cache_creation_input_tokens`` when it
reports them. A stream's ``message_start`` carries an estimate of the input
(:func:`llmplex.limits.estimate_tokens`, one token per 4 bytes of the request's text);
``message_delta`` the counts the upstream reported. ``count_tokens`` answers that
estimate: no upstream is asked.

Auth: with server API keys, ``x-api-key: <key>`` or ``Authorization: Bearer <key>``.
Cancellation, back-pressure and cleanup are those of ``/v1/chat/completions``
(:mod:`llmplex.server.streaming`): a client leaving mid-stream closes the upstream.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from ..client import AsyncClient
from ..errors import InvalidRequestError, RateLimitError
from ..limits import estimate_tokens
from .errors import APIError, error_for
from .handlers import log_error
from .streaming import (
    CLIENT_STALL_TIMEOUT,
    ClientGone,
    EventStream,
    Pump,
    disconnected,
    unless_gone,
)

__all__ = ["PING_SECONDS", "MessageStream", "anthropic_error", "anthropic_router",
           "chat_arguments", "message_for"]

log = logging.getLogger("llmplex.server")

#: seconds without anything to send after which a stream gets a ``ping`` event
PING_SECONDS = 10.0

#: HTTP status -> Anthropic's error type
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}
#: finish reason -> stop_reason
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}

_FIELDS = frozenset({"model", "messages", "max_tokens", "system", "stream", "temperature",
                     "top_p", "top_k", "stop_sequences", "tools", "tool_choice", "metadata",
                     "thinking", "cache_control"})
#: tool types whose calls come back as ordinary tool_use blocks (run by the client)
_CLIENT_TOOLS = ("bash_", "text_editor_", "computer_")


class _Invalid(APIError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(400, f"{param}: {message}", code="invalid_value", param=param)


# -- errors ------------------------------------------------------------------------------

def anthropic_error(exc: BaseException) -> tuple[APIError, dict[str, Any]]:
    """The server's error for ``exc`` (:func:`~llmplex.server.errors.error_for`, whose
    statuses are kept) and its body in Anthropic's shape. An upstream's 529 stays a 529
    ``overloaded_error``."""
    if isinstance(exc, RateLimitError) and exc.status == 529:
        error = APIError(529, str(exc), "overloaded_error", "overloaded",
                         headers=error_for(exc).headers)
    else:
        error = error_for(exc)
    kind = ERROR_TYPES.get(error.status, "api_error" if error.status >= 500
                           else "invalid_request_error")
    return error, {"type": "error", "error": {"type": kind, "message": error.message}}


def _error_response(exc: BaseException) -> Response:
    error, body = anthropic_error(exc)
    log_error(error, exc)
    headers = {**error.all_headers(), "request-id": "req_" + os.urandom(12).hex()}
    return JSONResponse(body, status_code=error.status, headers=headers)


class _AnthropicRoute(APIRoute):
    """A route whose every error leaves in Anthropic's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - every error gets Anthropic's body
                return _error_response(exc)

        return route


# -- Anthropic's request -> chat.completions.create arguments ---------------------------

def _text(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(param, "expected a string")
    return value


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    if not isinstance(system, list):
        raise _Invalid("system", "expected a string or a list of text blocks")
    parts = []
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _Invalid(f"system.{i}.type", "system blocks are text blocks")
        parts.append({"type": "text", "text": _text(block.get("text"), f"system.{i}.text")})
    return [{"role": "system", "content": parts}] if parts else []


def _image(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        media = _text(source.get("media_type"), f"{param}.source.media_type")  # type: ignore[union-attr]
        data = _text(source.get("data"), f"{param}.source.data")  # type: ignore[union-attr]
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url":
        url = _text(source.get("url"), f"{param}.source.url")  # type: ignore[union-attr]
        return {"type": "image_url", "image_url": {"url": url}}
    raise _Invalid(f"{param}.source.type", f"expected 'base64' or 'url', got {kind!r}")


def _tool_result(block: Mapping[str, Any], param: str, lenient: bool) -> dict[str, Any]:
    call_id = _text(block.get("tool_use_id"), f"{param}.tool_use_id")
    content = block.get("content", "")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        pieces = []
        for k, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                pieces.append(_text(part.get("text"), f"{param}.content.{k}.text"))
            elif not lenient:
                raise _Invalid(f"{param}.content.{k}.type", f"a {kind!r} block in a tool "
                               "result can only go to Anthropic; other services take text")
        text = "\n".join(pieces)
    else:
        raise _Invalid(f"{param}.content", "expected a string or a list of blocks")
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _messages(messages: Any, lenient: bool) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _Invalid("messages", "expected a non-empty list of messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise _Invalid(f"{where}.role", "expected 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise _Invalid(f"{where}.content", "expected a string or a list of blocks")
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for j, block in enumerate(content):
            param = f"{where}.content.{j}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": _text(block.get("text"), f"{param}.text")})
            elif kind == "image" and role == "user":
                parts.append(_image(block, param))
            elif kind == "tool_use" and role == "assistant":
                arguments = block.get("input", {})
                if not isinstance(arguments, dict):
                    raise _Invalid(f"{param}.input", "expected an object")
                calls.append({"id": _text(block.get("id"), f"{param}.id"), "type": "function",
                              "function": {"name": _text(block.get("name"), f"{param}.name"),
                                           "arguments": json.dumps(arguments,
                                                                   ensure_ascii=False)}})
            elif kind == "tool_result" and role == "user":
                results.append(_tool_result(block, param, lenient))
            elif kind in ("thinking", "redacted_thinking") and role == "assistant":
                continue  # earlier turns' thinking: see the module docstring
            elif lenient:
                continue  # the Anthropic provider gets the block itself (pass-through)
            else:
                raise _Invalid(f"{param}.type", f"a {kind!r} block in a {role} message "
                               "is not supported here")
        # OpenAI's shape: tool results are messages of their own, before the user's words
        out.extend(results)
        if role == "assistant":
            if parts or calls:
                out.append({"role": "assistant", "content": parts or None,
                            **({"tool_calls": calls} if calls else {})})
        elif parts:
            out.append({"role": "user", "content": parts})
    return out


def _tools(tools: Any, lenient: bool) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _Invalid("tools", "expected a list of tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _Invalid(f"tools.{i}", "expected an object")
        kind = tool.get("type")
        name = _text(tool.get("name"), f"tools.{i}.name")
        if kind not in (None, "custom"):
            if not (lenient and str(kind).startswith(_CLIENT_TOOLS)):
                raise _Invalid(f"tools.{i}.type", f"the tool type {kind!r} ({name}) is not "
                               "supported: only custom tools (name, description, "
                               "input_schema) are served here")
            out.append({"type": "function", "function": {"name": name}})
            continue
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _Invalid(f"tools.{i}.input_schema", "expected a JSON Schema object")
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if tool.get("description") is not None:
            function["description"] = _text(tool["description"], f"tools.{i}.description")
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, arguments: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        raise _Invalid("tool_choice", "expected an object with a type")
    kind = choice.get("type")
    if kind == "auto":
        arguments["tool_choice"] = "auto"
    elif kind == "any":
        arguments["tool_choice"] = "required"
    elif kind == "none":
        arguments["tool_choice"] = "none"
    elif kind == "tool":
        name = _text(choice.get("name"), "tool_choice.name")
        arguments["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise _Invalid("tool_choice.type", f"expected auto, any, tool or none, got {kind!r}")
    if choice.get("disable_parallel_tool_use") and kind != "none":
        arguments["parallel_tool_calls"] = False


def _thinking(thinking: Any, arguments: dict[str, Any], native: bool) -> None:
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
        raise _Invalid("thinking.type", "expected 'enabled' or 'disabled'")
    if thinking["type"] == "disabled":
        return
    budget = thinking.get("budget_tokens")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024:
        raise _Invalid("thinking.budget_tokens", "expected an integer of at least 1024")
    if native:
        arguments["thinking"] = dict(thinking)
    else:
        arguments["reasoning_effort"] = ("low" if budget <= 2048 else
                                         "medium" if budget <= 8192 else "high")


def chat_arguments(body: Any, *, count_only: bool = False,
                   native: bool = False) -> dict[str, Any]:
    """``chat.completions.create`` keyword arguments for a Messages API body (see the
    module docstring). ``native``: every route is the Anthropic provider, which also
    gets the body itself; what only it takes is then not refused here."""
    if not isinstance(body, dict):
        raise _Invalid("body", "expected a JSON object")
    unknown = [name for name in body if name not in _FIELDS]
    if unknown and not native:
        raise _Invalid(unknown[0], "Extra inputs are not permitted")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _Invalid("model", "Field required (a model name)")
    messages = _system(body.get("system")) + _messages(body.get("messages"), native)
    if not messages:
        raise _Invalid("messages", "no content to answer")
    arguments: dict[str, Any] = {"model": model, "messages": messages}
    max_tokens = body.get("max_tokens")
    if not count_only or max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise _Invalid("max_tokens", "Field required (an integer of at least 1)")
        arguments["max_tokens"] = max_tokens
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0 <= value <= 1):
                raise _Invalid(name, "expected a number from 0 to 1")
            arguments[name] = value
    if body.get("top_k") is not None:
        top_k = body["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise _Invalid("top_k", "expected a non-negative integer")
        arguments["top_k"] = top_k
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _Invalid("stop_sequences", "expected a list of strings")
        if len(stops) > 4 and not native:
            raise _Invalid("stop_sequences", "at most 4 stop sequences (besides on Anthropic)")
        if stops and len(stops) <= 4:
            arguments["stop"] = stops
    if body.get("tools"):
        arguments["tools"] = _tools(body["tools"], native)
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], arguments)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _Invalid("metadata", "expected an object")
        for key, value in metadata.items():
            if key != "user_id":
                raise _Invalid(f"metadata.{key}", "Extra inputs are not permitted")
            if value is not None:
                arguments["user"] = _text(value, "metadata.user_id")
    if body.get("thinking") is not None:
        _thinking(body["thinking"], arguments, native)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _Invalid("stream", "expected a boolean")
    return arguments


#: llmplex's parameter names -> Anthropic's, for errors about a translated field
_PARAMS = {"stop": "stop_sequences", "reasoning_effort": "thinking", "user": "metadata.user_id",
           "parallel_tool_calls": "tool_choice.disable_parallel_tool_use"}


def _anthropic_param(exc: InvalidRequestError) -> InvalidRequestError:
    name = _PARAMS.get(exc.param or "")
    if name is None:
        return exc
    return InvalidRequestError(f"{name}: {exc.message}", param=name, provider=exc.provider)


def _native(client: AsyncClient, model: str) -> bool:
    """Whether every route for ``model`` is the Anthropic provider (pass-through)."""
    routes = client.router.resolve(model)
    return bool(routes) and all(r.provider.get_name() == "Anthropic" for r in routes)


def estimate_input(body: Mapping[str, Any]) -> int:
    """An estimate of a request's input tokens (:func:`llmplex.limits.estimate_tokens` of
    its text): the system's and the messages' text, tool inputs and results, the tool
    definitions as JSON, and about 1,600 tokens per image (what Anthropic bills a
    mid-sized one)."""
    pieces: list[str] = []
    images = 0

    def walk(value: Any) -> None:
        nonlocal images
        if isinstance(value, str):
            pieces.append(value)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            if value.get("type") == "image":
                images += 1
                return
            for key in ("text", "thinking", "content", "input"):
                if key in value:
                    item = value[key]
                    walk(json.dumps(item) if key == "input" else item)

    walk(body.get("system"))
    walk(body.get("messages"))
    if body.get("tools"):
        pieces.append(json.dumps(body["tools"], ensure_ascii=False))
    return estimate_tokens("".join(pieces)) + 1600 * images


# -- the answer in Anthropic's shape -----------------------------------------------------

def _usage(usage: Any) -> dict[str, Any]:
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    details = usage.prompt_tokens_details
    read = (details.cached_tokens or 0) if details is not None else 0
    written = (details.cache_write_tokens or 0) if details is not None else 0
    out: dict[str, Any] = {"input_tokens": max(0, usage.prompt_tokens - read - written),
                           "output_tokens": usage.completion_tokens}
    if details is not None and (details.cached_tokens is not None
                                or details.cache_write_tokens is not None):
        out["cache_creation_input_tokens"] = written
        out["cache_read_input_tokens"] = read
    return out


def _message_id(completion_id: str) -> str:
    return "msg_" + completion_id.split("-", 1)[-1]


def _input(arguments: str | None, name: str) -> Any:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        raise APIError(502, f"the upstream's call of tool {name!r} has arguments that are "
                       "not JSON", "upstream_error", "upstream_error") from None
    return value if isinstance(value, dict) else {"value": value}


def message_for(completion: Any) -> dict[str, Any]:
    """A Messages API ``message`` for a ``ChatCompletion``."""
    choice = completion.choices[0]
    message = choice.message
    content: list[dict[str, Any]] = []
    if message.reasoning_content:
        content.append({"type": "thinking", "thinking": message.reasoning_content,
                        "signature": ""})
    text = (message.content or "") + (message.refusal or "")
    if text:
        content.append({"type": "text", "text": text})
    for call in message.tool_calls or ():
        content.append({"type": "tool_use", "id": call.id, "name": call.function.name,
                        "input": _input(call.function.arguments, call.function.name)})
    return {"id": _message_id(completion.id), "type": "message", "role": "assistant",
            "model": completion.model, "content": content,
            "stop_reason": STOP_REASONS.get(choice.finish_reason or "stop", "end_turn"),
            "stop_sequence": None, "usage": _usage(completion.usage)}


def event(name: str, data: dict[str, Any]) -> bytes:
    """One SSE event as Anthropic writes it: named, compact JSON."""
    return (b"event: " + name.encode() + b"\ndata: "
            + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n")


_PING = b'event: ping\ndata: {"type": "ping"}\n\n'


class MessageStream(EventStream):
    """The SSE response of a streamed ``/v1/messages``: ``message_start`` and a ``ping``
    on the first chunk, a content block per kind of delta (``thinking``, ``text``, one
    ``tool_use`` per call), ``message_delta`` and ``message_stop`` at the end, ``ping``
    every :data:`PING_SECONDS` while the upstream is silent, an ``error`` event when the
    upstream fails after the stream began."""

    def __init__(self, first: tuple[str, Any], pump: Pump, watcher: asyncio.Future[None],
                 stall_timeout: float, input_estimate: int,
                 ping_interval: float = PING_SECONDS) -> None:
        super().__init__(first, pump, watcher, False, stall_timeout)
        self.keepalive = ping_interval
        self.input_estimate = input_estimate
        self.started = False
        self.index = -1  # the block being written
        self.open: tuple[str, int] | None = None  # its kind ("text"...) and tool index
        self.tools: dict[int, int] = {}  # tool-call index -> its block's index
        self.finish: str | None = None
        self.usage: Any = None

    def _block(self, kind: str, block: dict[str, Any], tool: int = -1) -> bytes:
        out = self._close()
        self.index += 1
        self.open = (kind, tool)
        return out + event("content_block_start", {"type": "content_block_start",
                                                   "index": self.index, "content_block": block})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return event("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"type": "content_block_delta", "index": index,
                                             "delta": delta})

    def _render(self, chunk: Any) -> bytes:
        out = b""
        if not self.started:
            self.started = True
            out = event("message_start", {"type": "message_start", "message": {
                "id": _message_id(chunk.id), "type": "message", "role": "assistant",
                "model": chunk.model, "content": [], "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": self.input_estimate, "output_tokens": 1}}}) + _PING
        if chunk.usage is not None:
            self.usage = chunk.usage
        if not chunk.choices:
            return out
        choice = chunk.choices[0]
        if choice.index != 0:
            return out  # a Messages answer has one choice
        delta = choice.delta
        if delta.reasoning_content:
            if self.open is None or self.open[0] != "thinking":
                out += self._block("thinking", {"type": "thinking", "thinking": "",
                                                "signature": ""})
            out += self._delta(self.index, {"type": "thinking_delta",
                                            "thinking": delta.reasoning_content})
        text = (delta.content or "") + (delta.refusal or "")
        if text:
            if self.open is None or self.open[0] != "text":
                out += self._block("text", {"type": "text", "text": ""})
            out += self._delta(self.index, {"type": "text_delta", "text": text})
        for call in delta.tool_calls or ():
            function = call.function
            if call.index not in self.tools:
                out += self._block("tool_use", {
                    "type": "tool_use", "id": call.id or "toolu_" + os.urandom(12).hex(),
                    "name": (function.name if function else None) or "", "input": {}},
                    call.index)
                self.tools[call.index] = self.index
            arguments = function.arguments if function else None
            if arguments:
                out += self._delta(self.tools[call.index], {"type": "input_json_delta",
                                                            "partial_json": arguments})
        if choice.finish_reason:
            self.finish = choice.finish_reason
        return out

    def _end(self) -> bytes:
        usage = _usage(self.usage)
        return self._close() + event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": STOP_REASONS.get(self.finish or "stop", "end_turn"),
                      "stop_sequence": None},
            "usage": usage}) + event("message_stop", {"type": "message_stop"})

    def _error(self, exc: BaseException) -> bytes:
        error, body = anthropic_error(exc)
        log_error(error, exc, streaming=True)
        return event("error", body)

    def _idle(self) -> bytes:
        return _PING


# -- the routes --------------------------------------------------------------------------

def _authorize(request: Request, keys: Sequence[bytes]) -> None:
    if not keys:
        return
    given = request.headers.get("x-api-key", "")
    bearer = request.headers.get("authorization", "")
    if not given and bearer[:7].lower() == "bearer ":
        given = bearer[7:].strip()
    if not given:
        raise APIError(401, "x-api-key header is required (one of this server's API keys; "
                       "Authorization: Bearer also works)", code="invalid_api_key")
    matched = False
    for key in keys:  # every key compared (no early exit): timing tells nothing
        matched |= hmac.compare_digest(given.encode(), key)
    if not matched:
        raise APIError(401, "invalid x-api-key", code="invalid_api_key")


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise APIError(400, f"There was an issue with your request body: invalid JSON "
                       f"({exc})", code="invalid_json") from None


def anthropic_router(client: AsyncClient, *, api_keys: Sequence[bytes] = (),
                     client_stall_timeout: float = CLIENT_STALL_TIMEOUT,
                     ping_interval: float = PING_SECONDS) -> APIRouter:
    """The ``/v1/messages`` routes over ``client``; ``api_keys`` (UTF-8 bytes) and
    ``client_stall_timeout`` as ``create_app``'s; ``ping_interval``: seconds of upstream
    silence after which a stream gets a ``ping``."""
    router = APIRouter(prefix="/v1", route_class=_AnthropicRoute, tags=["anthropic"])
    keys = tuple(api_keys)

    def arguments(body: Any, count_only: bool = False) -> tuple[dict[str, Any], bool]:
        model = body.get("model") if isinstance(body, dict) else None
        native = isinstance(model, str) and bool(model) and _native(client, model)
        return chat_arguments(body, count_only=count_only, native=native), native

    @router.post("/messages")
    async def messages(request: Request) -> Response:
        """Anthropic's Messages API: create a message; with ``"stream": true`` Anthropic's
        SSE event sequence (see :mod:`llmplex.server.anthropic_api`)."""
        _authorize(request, keys)
        body = await _json(request)
        kwargs, native = arguments(body)
        if native:
            kwargs["anthropic_body"] = {k: v for k, v in body.items()
                                        if k not in ("model", "stream")}
            beta = request.headers.get("anthropic-beta")
            if beta:
                kwargs["anthropic_beta"] = beta
        streamed = bool(body.get("stream"))
        watcher = asyncio.ensure_future(disconnected(request.receive))
        owned = True
        try:
            if not streamed:
                completion = await unless_gone(watcher, client.chat.completions.create(**kwargs))
                return JSONResponse(message_for(completion))
            pump = Pump(client.chat.completions.create(**kwargs, stream=True))
            try:
                first = await unless_gone(watcher, pump.get())
                if first[0] == "error":
                    raise first[1]
            except BaseException:
                await pump.close()
                raise
            stream = MessageStream(first, pump, watcher, client_stall_timeout,
                                   estimate_input(body), ping_interval)
            owned = False  # the stream owns the watcher now
            return stream
        except ClientGone:
            log.info("client went away before the answer started; upstream request cancelled")
            return Response(status_code=499)
        except InvalidRequestError as exc:
            raise _anthropic_param(exc) from None
        finally:
            if owned:
                watcher.cancel()

    @router.post("/messages/count_tokens")
    async def count_tokens(request: Request) -> dict[str, Any]:
        """An estimate of a request's input tokens (no upstream is asked): one token per
        4 bytes of its text, tool definitions included (:func:`estimate_input`)."""
        _authorize(request, keys)
        body = await _json(request)
        kwargs, _ = arguments(body, count_only=True)
        client.router.resolve(kwargs["model"])  # an unknown model is a 404, as upstream
        return {"input_tokens": estimate_input(body)}

    return router
