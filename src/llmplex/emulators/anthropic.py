"""Emulator of Anthropic's Messages API, served at ``/v1/messages``.

- ``POST /v1/messages``: with ``"stream": true`` Anthropic's named SSE events, compact
  JSON (``event: message_start\\ndata: {...}\\n\\n``): ``message_start`` (the message
  with empty ``content`` and the input usage), a ``ping``, then per content block
  ``content_block_start`` / ``content_block_delta`` / ``content_block_stop``,
  ``message_delta`` (``stop_reason``, ``stop_sequence``, output usage) and
  ``message_stop``. Without ``stream`` one ``message`` object.
- ``POST /v1/messages/count_tokens``: ``{"input_tokens": n}``.
- ``GET /v1/models``: Anthropic's model list.
- Errors are Anthropic's: ``{"type": "error", "error": {"type", "message"},
  "request_id"}`` with the status (400 ``invalid_request_error``, 401
  ``authentication_error``, 404 ``not_found_error``, 429 ``rate_limit_error``, 500
  ``api_error``, 529 ``overloaded_error``), and a ``request-id`` header.

Requests need ``x-api-key`` or ``Authorization: Bearer`` (as newer SDKs send it): any
non-empty key, or one of ``api_keys`` when given; and
``anthropic-version``; bodies are checked as the API does: ``model``, ``max_tokens`` and
``messages`` required, unknown top-level fields refused, roles ``user`` / ``assistant``,
block types known, each ``tool_result`` answering a ``tool_use`` of the turn before,
each ``thinking`` block sent back carrying a signature this emulator gave,
``thinking.budget_tokens`` at least 1024 and below ``max_tokens``, ``temperature`` 0..1.

Tokens are words (whitespace-separated): ``input_tokens`` counts the words of the system
and of every text block; ``output_tokens`` those sent. ``max_tokens`` cuts the text after
that many words (``stop_reason: "max_tokens"``), ``stop_sequences`` before the first one
found (``"stop_sequence"``, with ``stop_sequence`` set).

What a :class:`~llmplex.emulators.script.Script` makes the answer carry: ``reasoning``, a
``thinking`` block first (its text in ``thinking_delta`` pieces, then a
``signature_delta``); the text (unless the script has only ``tool_calls``); each of
``tool_calls`` a ``tool_use`` block (``toolu_`` ids) whose input streams as
``input_json_delta`` fragments (the first one empty, as Anthropic sends it), with
``stop_reason: "tool_use"``; ``finish_reason`` ``"length"`` is ``max_tokens``;
``cached_tokens`` is ``cache_read_input_tokens``, ``extra={"cache_creation_input_tokens":
n}`` the written ones. Faults: ``Fault.http_status`` answers Anthropic's error body (529
``overloaded_error``...), stream faults strike after ``after`` text pieces (an
``error`` event is ``overloaded_error`` unless ``reason`` names another type).
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from .emulator import Emulator, StreamOutcome
from .script import Fault, Script, split_tokens

__all__ = ["ERROR_TYPES", "AnthropicEmulator"]

#: status -> the error type Anthropic names in its body
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_MESSAGES = {
    400: "Invalid request",
    401: "invalid x-api-key",
    403: "permission denied",
    404: "Not found",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of request tokens has exceeded your rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}
_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "cache_control",
        "output_config",
    }
)
_BLOCKS = {
    "user": ("text", "image", "tool_result", "document", "search_result"),
    "assistant": ("text", "tool_use", "thinking", "redacted_thinking"),
}
_MODELS = ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805")


class _Invalid(Exception):
    pass


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One event as Anthropic writes it: named, compact JSON."""
    return (
        f"event: {event}\ndata: ".encode()
        + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n\n"
    )


def _words(text: str) -> int:
    return len(text.split())


class AnthropicEmulator(Emulator):
    """Anthropic's Messages API (see the module docstring)."""

    name = "anthropic"
    provider = "Anthropic"

    def __init__(self, script: Script | None = None, *, api_keys: Sequence[str] = ()) -> None:
        super().__init__(script)
        self.api_keys = tuple(api_keys)
        self._random = random.Random(1337)
        #: the thinking signatures it gave: a thinking block sent back must carry one
        self.signatures: set[str] = set()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/messages", self.messages),
            web.post("/v1/messages/count_tokens", self.count_tokens),
            web.get("/v1/models", self.list_models),
        ]

    # -- helpers ------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        alphabet = string.ascii_letters + string.digits
        return prefix + "".join(self._random.choice(alphabet) for _ in range(24))

    def error(
        self, status: int, message: str = "", kind: str = "", headers: dict[str, str] | None = None
    ) -> web.Response:
        request_id = self._id("req_")
        body = {
            "type": "error",
            "error": {
                "type": kind or ERROR_TYPES.get(status, "api_error"),
                "message": message or _MESSAGES.get(status, "Error"),
            },
            "request_id": request_id,
        }
        return web.json_response(
            body, status=status, headers={"request-id": request_id, **(headers or {})}
        )

    def _auth(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-api-key", "")
        bearer = request.headers.get("Authorization", "")
        if not key and bearer[:7].lower() == "bearer ":
            key = bearer[7:].strip()  # newer SDKs send the key as a bearer token
        if not key:
            return self.error(401, "x-api-key header is required")
        if self.api_keys and key not in self.api_keys:
            return self.error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self.error(400, "anthropic-version: header is required")
        return None

    async def _body(self, request: web.Request) -> tuple[Any, web.Response | None]:
        record = await self.record(request)
        refused = self._auth(request)
        if refused is not None:
            return None, refused
        if not isinstance(record.json, dict):
            return None, self.error(
                400, "There was an issue with your request body: it must be a JSON object"
            )
        return record.json, None

    def _check_signatures(self, body: dict[str, Any]) -> None:
        for i, message in enumerate(body["messages"]):
            content = message.get("content")
            for j, block in enumerate(content if isinstance(content, list) else ()):
                if (
                    block.get("type") == "thinking"
                    and block.get("signature") not in self.signatures
                ):
                    raise _Invalid(
                        f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                    )

    def signature(self) -> str:
        """A new opaque signature (remembered: see :attr:`signatures`)."""
        value = "Eq" + self._id("")
        self.signatures.add(value)
        return value

    # -- routes -------------------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        await self.record(request)
        refused = self._auth(request)
        if refused is not None:
            return refused
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in _MODELS
        ]
        return web.json_response(
            {"data": data, "has_more": False, "first_id": _MODELS[0], "last_id": _MODELS[-1]}
        )

    async def count_tokens(self, request: web.Request) -> web.Response:
        body, refused = await self._body(request)
        if refused is not None:
            return refused
        try:
            _check(body, count_only=True)
        except _Invalid as exc:
            return self.error(400, str(exc))
        return web.json_response({"input_tokens": _input_tokens(body)})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._body(request)
        if refused is not None:
            return refused
        script = self.next_script()
        fault = script.fault_at("status")
        if fault is not None:
            headers = {"retry-after": str(fault.retry_after)} if fault.retry_after else None
            return self.error(fault.status, fault.message, fault.reason, headers)
        try:
            _check(body)
            self._check_signatures(body)
        except _Invalid as exc:
            return self.error(400, str(exc))
        answer = _Answer(self, body, script)
        if not body.get("stream"):
            return web.json_response(answer.message())
        return await answer.stream(request)


def _check(body: dict[str, Any], count_only: bool = False) -> None:
    for name in body:
        if name not in _FIELDS:
            raise _Invalid(f"{name}: Extra inputs are not permitted")
    required = ("model", "messages") if count_only else ("model", "max_tokens", "messages")
    for name in required:
        if name not in body:
            raise _Invalid(f"{name}: Field required")
    if not count_only:
        limit = body["max_tokens"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _Invalid("max_tokens: Input should be a valid integer greater than 0")
    temperature = body.get("temperature")
    if temperature is not None and not (
        isinstance(temperature, (int, float)) and 0 <= temperature <= 1
    ):
        raise _Invalid("temperature: Input should be less than or equal to 1")
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise _Invalid(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if not count_only and budget >= body["max_tokens"]:
            raise _Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise _Invalid("messages: at least one message is required")
    tool_ids: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _BLOCKS:
            raise _Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            tool_ids = set()
            continue
        if not isinstance(content, list):
            raise _Invalid(f"messages.{i}.content: Input should be a valid list")
        answered = tool_ids
        tool_ids = set()
        for j, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in _BLOCKS[role]:
                raise _Invalid(
                    f"messages.{i}.content.{j}.type: Input tag {kind!r} found using "
                    f"'type' does not match any of the expected tags for {role}"
                )
            if kind == "tool_use":
                tool_ids.add(str(block.get("id")))
            elif kind == "tool_result" and block.get("tool_use_id") not in answered:
                raise _Invalid(
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                    "`tool_result` blocks: each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message."
                )
            elif kind == "image":
                source = block.get("source") or {}
                if source.get("type") not in ("base64", "url"):
                    raise _Invalid(
                        f"messages.{i}.content.{j}.image.source: Input tag "
                        f"{source.get('type')!r} does not match 'base64' or 'url'"
                    )


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    out: list[str] = []
    if isinstance(value, list):
        for block in value:
            if isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    out.append(block["text"])
                if "content" in block:
                    out.extend(_texts(block["content"]))
    return out


def _input_tokens(body: dict[str, Any]) -> int:
    words = sum(_words(t) for t in _texts(body.get("system")))
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            words += sum(_words(t) for t in _texts(message.get("content")))
    return words


class _Answer:
    """One answer: its blocks and usage, sent whole or streamed."""

    def __init__(self, emulator: AnthropicEmulator, body: dict[str, Any], script: Script) -> None:
        self.emulator = emulator
        self.body = body
        self.script = script
        self.id = emulator._id("msg_")
        self.model = str(script.extra.get("model") or body["model"])
        self.calls = [
            {
                "id": c.get("id") or emulator._id("toolu_"),
                "name": c["name"],
                "input": c["arguments"]
                if isinstance(c["arguments"], dict)
                else json.loads(c["arguments"] or "{}"),
            }
            for c in script.tool_calls or ()
        ]
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "none":
            self.calls = []
        elif choice.get("disable_parallel_tool_use"):
            self.calls = self.calls[:1]
        thinking = body.get("thinking") or {}
        self.thinking = (
            script.reasoning if script.reasoning and thinking.get("type") == "enabled" else None
        )
        pieces = script.pieces() if (script.text_scripted or not self.calls) else []
        self.stop_reason = (
            "tool_use"
            if self.calls
            else ("max_tokens" if script.finish_reason == "length" else "end_turn")
        )
        self.stop_sequence: str | None = None
        self.pieces = self._limit(pieces)
        self.usage = {
            "input_tokens": _input_tokens(body),
            "cache_creation_input_tokens": int(script.extra.get("cache_creation_input_tokens", 0)),
            "cache_read_input_tokens": script.cached_tokens,
        }

    def _limit(self, pieces: list[str]) -> list[str]:
        text = "".join(pieces)
        for stop in self.body.get("stop_sequences") or ():
            at = text.find(stop)
            if stop and at >= 0:
                text = text[:at]
                self.stop_reason, self.stop_sequence = "stop_sequence", stop
                self.calls = []
        limit = self.body["max_tokens"]
        if _words(text) > limit:
            text = "".join(split_tokens(text)[:limit])
            self.stop_reason, self.stop_sequence = "max_tokens", None
            self.calls = []
        if text == "".join(pieces):
            return pieces
        return split_tokens(text)

    def _output_tokens(self) -> int:
        words = _words("".join(self.pieces)) + _words(self.thinking or "")
        return words + sum(1 + _words(json.dumps(c["input"])) for c in self.calls)

    def message(self) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if self.thinking:
            content.append(
                {
                    "type": "thinking",
                    "thinking": self.thinking,
                    "signature": self.emulator.signature(),
                }
            )
        if self.pieces:
            content.append({"type": "text", "text": "".join(self.pieces)})
        for call in self.calls:
            content.append({"type": "tool_use", **call})
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "usage": {**self.usage, "output_tokens": self._output_tokens()},
        }

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "request-id": self.emulator._id("req_"),
            }
        )
        await response.prepare(request)
        start: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**self.usage, "output_tokens": 1},
        }
        write = response.write
        await write(sse("message_start", {"type": "message_start", "message": start}))
        await write(b'event: ping\ndata: {"type": "ping"}\n\n')
        index = 0
        if self.thinking:
            await write(
                sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    },
                )
            )
            for piece in split_tokens(self.thinking):
                await write(
                    sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "thinking_delta", "thinking": piece},
                        },
                    )
                )
            await write(
                sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {
                            "type": "signature_delta",
                            "signature": self.emulator.signature(),
                        },
                    },
                )
            )
            await write(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
            index = 1
        script = self.script
        if self.pieces:
            await write(
                sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
        text_index = index

        def render(piece: str, _: int) -> bytes:
            return sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": text_index,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )

        def error(fault: Fault) -> bytes:
            return sse(
                "error",
                {
                    "type": "error",
                    "error": {
                        "type": fault.reason or "overloaded_error",
                        "message": fault.message or "Overloaded",
                    },
                },
            )

        played = dataclass_replace(script, self.pieces)
        outcome = await self.emulator.play(
            request,
            response,
            played,
            render,
            error=error,
            malformed=b"event: content_block_delta\ndata: {this is not json\n\n",
        )
        if outcome != StreamOutcome.COMPLETE:
            return response
        try:
            if self.pieces:
                await write(
                    sse("content_block_stop", {"type": "content_block_stop", "index": index})
                )
                index += 1
            for call in self.calls:
                await write(
                    sse(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": index,
                            "content_block": {
                                "type": "tool_use",
                                "id": call["id"],
                                "name": call["name"],
                                "input": {},
                            },
                        },
                    )
                )
                arguments = json.dumps(call["input"], separators=(",", ":"))
                fragments = [""] + [arguments[i : i + 7] for i in range(0, len(arguments), 7)]
                for fragment in fragments:
                    await write(
                        sse(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": fragment},
                            },
                        )
                    )
                await write(
                    sse("content_block_stop", {"type": "content_block_stop", "index": index})
                )
                index += 1
            await write(
                sse(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {
                            "stop_reason": self.stop_reason,
                            "stop_sequence": self.stop_sequence,
                        },
                        "usage": {**self.usage, "output_tokens": self._output_tokens()},
                    },
                )
            )
            await write(sse("message_stop", {"type": "message_stop"}))
            await response.write_eof()
        except (ConnectionError, OSError):
            pass
        return response


def dataclass_replace(script: Script, pieces: list[str]) -> Script:
    """The script with its text pieces fixed to ``pieces`` (after limits)."""
    import dataclasses

    return dataclasses.replace(script, chunks=pieces)
