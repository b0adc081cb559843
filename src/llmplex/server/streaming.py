"""Streaming answers as Server-Sent Events, and noticing clients that go away.

The upstream stream runs in one task (:class:`Pump`) feeding a queue; :class:`EventStream`
writes the queue as SSE. A watcher on the ASGI ``receive`` channel notices the client
leaving at any point — also while the upstream is still silent — and cancels the upstream
task, whose provider cleanup then runs before the request ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from contextlib import aclosing
from typing import Any, TypeVar

from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from ..objects import ChatCompletionChunk
from .errors import error_for
from .handlers import log_error

__all__ = ["ClientGone", "disconnected", "unless_gone", "Pump", "EventStream", "public"]

log = logging.getLogger("llmplex.server")

T = TypeVar("T")


def public(data: dict[str, Any]) -> dict[str, Any]:
    """A completion or chunk (``model_dump()``) in the official API's shape: llmplex-only
    fields that are empty (``conversation_id`` without one) dropped; in messages ``content``
    and ``refusal`` always present, ``tool_calls``/``reasoning_content`` only when there
    are any; in stream deltas only what the delta carries (``role`` on a choice's first
    chunk only); usage details only when the upstream reported them."""
    if data.get("conversation_id") is None:
        data.pop("conversation_id", None)
    for choice in data.get("choices") or ():
        message = choice.get("message")
        if message is not None:
            for key in ("tool_calls", "reasoning_content"):
                if message.get(key) is None:
                    message.pop(key, None)
        delta = choice.get("delta")
        if delta is not None:
            choice["delta"] = _present(delta)
    usage = data.get("usage")
    if usage:
        for key in ("prompt_tokens_details", "completion_tokens_details"):
            if usage.get(key) is None:
                usage.pop(key, None)
    return data


def _present(delta: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in delta.items() if v is not None}
    calls = out.get("tool_calls")
    if calls:
        out["tool_calls"] = [
            {**{k: v for k, v in call.items() if v is not None and k != "function"},
             "function": {k: v for k, v in (call.get("function") or {}).items() if v is not None}}
            for call in calls]
    return out


class ClientGone(Exception):
    """The HTTP client disconnected."""


async def disconnected(receive: Receive) -> None:
    """Return once the client has disconnected (the body was already read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def unless_gone(watcher: asyncio.Future[None], work: Awaitable[T]) -> T:
    """``await work``, unless the client disconnects first: then cancel it (its cleanup
    runs before this returns) and raise :class:`ClientGone`."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this request itself was cancelled (server shutdown)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientGone()


class Pump:
    """Runs the completion stream in one task, from creation to cleanup, and hands its
    chunks over through a queue: ``("chunk", c)``, then ``("end", None)`` or
    ``("error", exc)``. Cancelling the task closes the stream (provider cleanup runs).

    The queue is unbounded: answers are small, and the writer side notices a
    disconnect by itself, so nothing piles up for long."""

    def __init__(self, opening: Awaitable[Any]) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._run(opening))

    async def _run(self, opening: Awaitable[Any]) -> None:
        put = self.queue.put_nowait
        try:
            stream = await opening
            async with aclosing(stream) as chunks:
                async for chunk in chunks:
                    put(("chunk", chunk))
        except asyncio.CancelledError:
            put(("end", None))
            raise
        except Exception as exc:
            put(("error", exc))
        else:
            put(("end", None))

    async def get(self) -> tuple[str, Any]:
        return await self.queue.get()

    async def close(self) -> None:
        """Stop the stream if it still runs, and wait for its cleanup."""
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


class EventStream(Response):
    """The SSE response: writes the pump's chunks, watching for the client leaving."""

    media_type = "text/event-stream"

    def __init__(self, first: tuple[str, Any], pump: Pump, watcher: asyncio.Future[None],
                 include_usage: bool) -> None:
        # Not Response.__init__: it would add a Content-Length for the empty body.
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"),
                            (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        self.first = first
        self.pump = pump
        self.watcher = watcher
        self.include_usage = include_usage

    def _render(self, chunk: ChatCompletionChunk) -> bytes:
        data = public(chunk.model_dump())
        usage = data.pop("usage", None)
        if self.include_usage:
            data["usage"] = None  # OpenAI: null on every chunk but the usage one
        out = sse(data)
        if usage is not None and self.include_usage:
            out += sse({**data, "choices": [], "usage": usage})
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump, watcher = self.pump, self.watcher
        # The client leaving ends the upstream at once, even while it is silent.
        watcher.add_done_callback(lambda _: pump.task.cancel())
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": self.raw_headers})
            item = self.first
            while True:
                kind, value = item
                if kind == "chunk":
                    body = self._render(value)
                elif kind == "error":
                    error = error_for(value)
                    log_error(error, value, streaming=True)
                    body = b"event: error\n" + sse(error.body()) + DONE
                else:
                    body = DONE
                if watcher.done():
                    log.info("client went away mid-stream; upstream request cancelled")
                    break
                await send({"type": "http.response.body", "body": body, "more_body": True})
                if kind != "chunk":
                    break
                item = await pump.get()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the connection broke while writing: same as a disconnect
        finally:
            watcher.cancel()
            await pump.close()
