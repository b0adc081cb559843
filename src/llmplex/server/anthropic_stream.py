"""The answer in Anthropic's shape: a completion stream's chunks as the Messages API's
events (:class:`MessageBuilder`), written as SSE (:class:`MessageStream`, an
:class:`~llmplex.server.streaming.EventStream`: the same pump, back-pressure,
disconnect and stall handling as ``/v1/chat/completions``) or gathered into one message
(:func:`message_for`). Errors in Anthropic's shape: :func:`anthropic_error`."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from ..errors import RateLimitError
from .errors import APIError, error_for
from .handlers import log_error
from .streaming import EventStream, Pump

__all__ = [
    "ERROR_TYPES",
    "PING_SECONDS",
    "STOP_REASONS",
    "MessageBuilder",
    "MessageStream",
    "anthropic_error",
    "event",
    "message_for",
]

#: seconds without anything to send after which a stream gets a ``ping`` event
PING_SECONDS = 10.0

#: HTTP status -> Anthropic's error type
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
#: finish reason -> stop_reason
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def anthropic_error(exc: BaseException) -> tuple[APIError, dict[str, Any]]:
    """The server's error for ``exc`` (:func:`~llmplex.server.errors.error_for`, whose
    statuses are kept) and its body in Anthropic's shape. An upstream's 529 stays a 529
    ``overloaded_error``."""
    if isinstance(exc, RateLimitError) and exc.status == 529:
        error = APIError(
            529, str(exc), "overloaded_error", "overloaded", headers=error_for(exc).headers
        )
    else:
        error = error_for(exc)
    kind = ERROR_TYPES.get(
        error.status, "api_error" if error.status >= 500 else "invalid_request_error"
    )
    return error, {"type": "error", "error": {"type": kind, "message": error.message}}


# -- the answer in Anthropic's shape -----------------------------------------------------


def _usage(usage: Any) -> dict[str, Any]:
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    details = usage.prompt_tokens_details
    read = (details.cached_tokens or 0) if details is not None else 0
    written = (details.cache_write_tokens or 0) if details is not None else 0
    out: dict[str, Any] = {
        "input_tokens": max(0, usage.prompt_tokens - read - written),
        "output_tokens": usage.completion_tokens,
    }
    if details is not None and (
        details.cached_tokens is not None or details.cache_write_tokens is not None
    ):
        out["cache_creation_input_tokens"] = written
        out["cache_read_input_tokens"] = read
    return out


def _message_id(completion_id: str) -> str:
    return "msg_" + completion_id.split("-", 1)[-1]


def _stop_reason(finish: str | None) -> str:
    return STOP_REASONS.get(finish or "stop", "end_turn")


class MessageBuilder:
    """Turns the chunks of a completion stream into the Messages API's stream events
    (:meth:`feed`, :meth:`finish`) and gathers the whole message (:meth:`message`):
    a content block per kind of delta (``thinking`` with its signature, ``text``, one
    ``tool_use`` per call), the stop reason and the usage."""

    def __init__(self, input_estimate: int = 0) -> None:
        self.input_estimate = input_estimate
        self.id = ""
        self.model = ""
        self.content: list[dict[str, Any]] = []
        self.open: tuple[str, int] | None = None  # the block being written: kind, tool
        self.tools: dict[int, int] = {}  # tool-call index -> its block's index
        self.arguments: dict[int, list[str]] = {}  # block index -> argument pieces
        self.finish: str | None = None
        self.usage: Any = None

    def _block(
        self,
        out: list[tuple[str, dict[str, Any]]],
        kind: str,
        block: dict[str, Any],
        tool: int = -1,
    ) -> int:
        self._close(out)
        index = len(self.content)
        self.content.append(dict(block))
        self.open = (kind, tool)
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        return index

    def _close(self, out: list[tuple[str, dict[str, Any]]]) -> None:
        if self.open is not None:
            self.open = None
            out.append(
                (
                    "content_block_stop",
                    {"type": "content_block_stop", "index": len(self.content) - 1},
                )
            )

    @staticmethod
    def _delta(out: list[tuple[str, dict[str, Any]]], index: int, delta: dict[str, Any]) -> None:
        out.append(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        )

    def feed(self, chunk: Any) -> list[tuple[str, dict[str, Any]]]:
        """The events of one chunk (``message_start`` first, on the first one)."""
        out: list[tuple[str, dict[str, Any]]] = []
        if not self.id:
            self.id, self.model = _message_id(chunk.id), chunk.model
            out.append(
                (
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {
                            "id": self.id,
                            "type": "message",
                            "role": "assistant",
                            "model": self.model,
                            "content": [],
                            "stop_reason": None,
                            "stop_sequence": None,
                            "usage": {"input_tokens": self.input_estimate, "output_tokens": 1},
                        },
                    },
                )
            )
        if chunk.usage is not None:
            self.usage = chunk.usage
        if not chunk.choices or chunk.choices[0].index != 0:
            return out  # a Messages answer has one choice
        choice = chunk.choices[0]
        delta = choice.delta
        if delta.reasoning_content or delta.reasoning_signature:
            if self.open is None or self.open[0] != "thinking":
                self._block(out, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
            block = self.content[-1]
            index = len(self.content) - 1
            if delta.reasoning_content:
                block["thinking"] += delta.reasoning_content
                self._delta(
                    out, index, {"type": "thinking_delta", "thinking": delta.reasoning_content}
                )
            if delta.reasoning_signature:
                block["signature"] = delta.reasoning_signature
                self._delta(
                    out, index, {"type": "signature_delta", "signature": delta.reasoning_signature}
                )
        text = (delta.content or "") + (delta.refusal or "")
        if text:
            if self.open is None or self.open[0] != "text":
                self._block(out, "text", {"type": "text", "text": ""})
            self.content[-1]["text"] += text
            self._delta(out, len(self.content) - 1, {"type": "text_delta", "text": text})
        for call in delta.tool_calls or ():
            function = call.function
            if call.index not in self.tools:
                index = self._block(
                    out,
                    "tool_use",
                    {
                        "type": "tool_use",
                        "id": call.id or "toolu_" + os.urandom(12).hex(),
                        "name": (function.name if function else None) or "",
                        "input": {},
                    },
                    call.index,
                )
                self.tools[call.index] = index
                self.arguments[index] = []
            arguments = function.arguments if function else None
            if arguments:
                index = self.tools[call.index]
                self.arguments[index].append(arguments)
                self._delta(out, index, {"type": "input_json_delta", "partial_json": arguments})
        if choice.finish_reason:
            self.finish = choice.finish_reason
        return out

    def finish_events(self) -> list[tuple[str, dict[str, Any]]]:
        """The events ending the message: the last block's stop, ``message_delta`` (stop
        reason, usage) and ``message_stop``."""
        out: list[tuple[str, dict[str, Any]]] = []
        self._close(out)
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _stop_reason(self.finish), "stop_sequence": None},
                    "usage": _usage(self.usage),
                },
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def message(self) -> dict[str, Any]:
        """The whole message (after the last chunk)."""
        content = []
        for index, block in enumerate(self.content):
            if block["type"] == "tool_use":
                block = {**block, "input": _input("".join(self.arguments[index]), block["name"])}
            content.append(block)
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": _stop_reason(self.finish),
            "stop_sequence": None,
            "usage": _usage(self.usage),
        }


def _input(arguments: str, name: str) -> Any:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        raise APIError(
            502,
            f"the upstream's call of tool {name!r} has arguments that are not JSON",
            "upstream_error",
            "upstream_error",
        ) from None
    return value if isinstance(value, dict) else {"value": value}


async def message_for(stream: Any, input_estimate: int = 0) -> dict[str, Any]:
    """The Messages API ``message`` of a completion stream, read to its end."""
    builder = MessageBuilder(input_estimate)
    async with stream as chunks:
        async for chunk in chunks:
            builder.feed(chunk)
    return builder.message()


def event(name: str, data: dict[str, Any]) -> bytes:
    """One SSE event as Anthropic writes it: named, compact JSON."""
    return (
        b"event: "
        + name.encode()
        + b"\ndata: "
        + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        + b"\n\n"
    )


_PING = b'event: ping\ndata: {"type": "ping"}\n\n'


class MessageStream(EventStream):
    """The SSE response of a streamed ``/v1/messages``: the :class:`MessageBuilder`'s
    events, a ``ping`` after ``message_start`` and every ``ping_interval`` seconds
    while the upstream is silent, an ``error`` event when the upstream fails after the
    stream began."""

    def __init__(
        self,
        first: tuple[str, Any],
        pump: Pump,
        watcher: asyncio.Future[None],
        stall_timeout: float,
        input_estimate: int,
        ping_interval: float = PING_SECONDS,
    ) -> None:
        super().__init__(first, pump, watcher, False, stall_timeout)
        self.keepalive = ping_interval
        self.builder = MessageBuilder(input_estimate)

    def _render(self, chunk: Any) -> bytes:
        started = bool(self.builder.id)
        out = b"".join(event(name, data) for name, data in self.builder.feed(chunk))
        return out if started else out.replace(b"\n\n", b"\n\n" + _PING, 1)

    def _end(self) -> bytes:
        return b"".join(event(name, data) for name, data in self.builder.finish_events())

    def _error(self, exc: BaseException) -> bytes:
        error, body = anthropic_error(exc)
        log_error(error, exc, streaming=True)
        return event("error", body)

    def _idle(self) -> bytes:
        return _PING
