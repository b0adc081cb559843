"""Streaming answers as Server-Sent Events, and noticing clients that go away or stop
reading.

:class:`EventStream` writes the answer's chunks as SSE, read from one of two sources. A
chat completion stream is read by the response's own task (:class:`Direct`): the next
chunk is read once the last one is written. Streams that send keep-alive events while
the upstream is silent (Anthropic's ``ping``) run the upstream in a task of their own
(:class:`Pump`) feeding a small bounded queue (:data:`QUEUE_CHUNKS`); chunks it queued
while the last write was under way go out together in the next one (never waiting for
more). Either way back-pressure runs end to end: when the client reads slowly,
uvicorn's ``send`` waits for the connection's write buffer to drain, the upstream is read
no faster than the client reads (its own socket buffers fill and the upstream waits
too), and memory per stream is bounded by the queue and the socket buffers, however fast
the upstream and however slow the client.

A client that reads nothing for ``stall_timeout`` seconds (``create_app``'s
``client_stall_timeout``, :data:`CLIENT_STALL_TIMEOUT` by default) is dropped: one write
of the answer waited that long (uvicorn lets a write through once its buffer is below
its low-water mark, so a client reading less than ~48 KiB in that time counts as
stalled). The response ends unfinished, the connection is closed and the upstream stream
is closed with the provider's cleanup, as for a disconnect.

A watcher on the ASGI ``receive`` channel notices the client leaving at any point — also
while the upstream is still silent — and cancels the task reading the upstream (the
pump's, or the response's own), whose provider cleanup then runs before the request
ends.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
from collections.abc import Awaitable
from contextlib import aclosing
from typing import Any, TypeVar

from fastapi.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ..objects import ChatCompletionChunk, ChoiceDelta, ChunkChoice
from .errors import error_for
from .handlers import log_error

__all__ = [
    "CLIENT_STALL_TIMEOUT",
    "QUEUE_CHUNKS",
    "ChunkRenderer",
    "ClientGone",
    "Direct",
    "EventStream",
    "Pump",
    "disconnected",
    "public",
    "render_chunk",
    "started",
    "unless_gone",
]

log = logging.getLogger("llmplex.server")

#: chunks the pump reads ahead of the client at most (then it waits for the client)
QUEUE_CHUNKS = 16
#: seconds a client may read nothing before it is dropped (``client_stall_timeout``)
CLIENT_STALL_TIMEOUT = 60.0

T = TypeVar("T")


def public(data: dict[str, Any]) -> dict[str, Any]:
    """A completion or chunk (``model_dump()``) in the official API's shape: llmplex-only
    fields that are empty (``conversation_id``, ``emulated`` without one) dropped; in
    messages ``content`` and ``refusal`` always present, ``tool_calls``/``reasoning_content``
    only when there are any; in stream deltas only what the delta carries (``role`` on a
    choice's first chunk only); usage details only when the upstream reported them."""
    for extra in ("conversation_id", "emulated"):
        if data.get(extra) is None:
            data.pop(extra, None)
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
            {
                **{k: v for k, v in call.items() if v is not None and k != "function"},
                "function": {
                    k: v for k, v in (call.get("function") or {}).items() if v is not None
                },
            }
            for call in calls
        ]
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
    runs before this returns) and raise :class:`ClientGone`.

    The work runs in the calling task (no task of its own, no ``asyncio.wait``): the
    watcher finishing cancels this task, and that one cancellation becomes
    :class:`ClientGone` once the work has unwound. Any other cancellation (the server
    shutting down) stays a cancellation."""
    task = asyncio.current_task()
    assert task is not None
    waiting = True  # the callback may run after the work is done: then it must not cancel
    cancelled = False

    def gone(_: object) -> None:
        nonlocal cancelled
        if waiting and not cancelled:
            cancelled = True
            task.cancel()

    if watcher.done():
        close = getattr(work, "close", None)  # a coroutine never started: no warning
        if close is not None:
            close()
        raise ClientGone()
    watcher.add_done_callback(gone)
    try:
        result = await work
    except asyncio.CancelledError:
        if cancelled and task.uncancel() == 0:
            raise ClientGone() from None
        raise
    finally:
        waiting = False
        watcher.remove_done_callback(gone)
    if cancelled:  # the work swallowed the cancellation: the client is gone all the same
        task.uncancel()
        raise ClientGone()
    return result


async def started(watcher: asyncio.Future[None], pump: Pump | Direct) -> tuple[str, Any]:
    """The pump's first item, once the answer has started: an error before any chunk is
    raised (the route answers it as an HTTP error), and the pump is closed, its upstream
    cleaned up, on every failure (also :class:`ClientGone`)."""
    try:
        first = await unless_gone(watcher, pump.get())
        if first[0] == "error":
            raise first[1]
    except BaseException:
        await pump.close()
        raise
    return first


class Pump:
    """Runs the completion stream in one task, from creation to cleanup, and hands its
    chunks over through a bounded queue: ``("chunk", c)``, then ``("end", None)`` or
    ``("error", exc)``. Cancelling the task closes the stream (provider cleanup runs).

    The queue holds at most ``maxsize`` chunks: when the consumer (the client) falls
    behind, the task waits to put the next one, and so reads the upstream no faster than
    the client takes the answer. Cancelled while it waits (the client left or stalled),
    it closes the stream as at any other point."""

    def __init__(self, opening: Awaitable[Any], maxsize: int = QUEUE_CHUNKS) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize)
        self.task = asyncio.ensure_future(self._run(opening))

    async def _run(self, opening: Awaitable[Any]) -> None:
        put = self.queue.put
        try:
            stream = await opening
            async with aclosing(stream) as chunks:
                async for chunk in chunks:
                    await put(("chunk", chunk))
        except Exception as exc:  # every failure goes to the client
            await put(("error", exc))
        except BaseException:  # cancelled (the stream is closed by now)
            self._end()
            raise
        else:
            await put(("end", None))

    def _end(self) -> None:
        """Say the end to a consumer waiting for the next chunk. A full queue has no
        consumer waiting: it finds the end through :meth:`get` once the queue is read."""
        try:
            self.queue.put_nowait(("end", None))
        except asyncio.QueueFull:
            pass

    async def get(self) -> tuple[str, Any]:
        if self.queue.empty() and self.task.done():
            return ("end", None)  # cancelled with a full queue: nothing more comes
        return await self.queue.get()

    def ready(self) -> tuple[str, Any] | None:
        """The next item if it is already queued (None: it is not)."""
        queue = self.queue
        return None if queue.empty() else queue.get_nowait()

    async def close(self) -> None:
        """Stop the stream if it still runs, and wait for its cleanup."""
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class Direct:
    """The stream read by the task writing the response itself: no pump task and no
    queue, so a chunk costs one wake-up of one task instead of two (the pump's, then the
    writer's). For responses without keep-alive events (:attr:`EventStream.keepalive`),
    which never wait for the upstream with a timeout. Back-pressure is the same (the next
    chunk is read once the last write is done); the client leaving cancels the writing
    task (:class:`EventStream`), and the cancellation unwinds the stream with the
    provider's cleanup, as a cancelled pump does. Same interface as :class:`Pump`."""

    __slots__ = ("_done", "_stream")

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._done = False

    @property
    def task(self) -> None:
        return None  # (no task of its own: the writer's is cancelled)

    def ready(self) -> tuple[str, Any] | None:
        return None  # nothing is read ahead

    async def get(self) -> tuple[str, Any]:
        if self._done:
            return ("end", None)
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            self._done = True
            return ("end", None)
        except Exception as exc:  # every failure goes to the client
            self._done = True
            return ("error", exc)
        return ("chunk", chunk)

    async def close(self) -> None:
        """Close the stream (its cleanup; nothing when it ended)."""
        self._done = True
        await self._stream.aclose()


class Stalled(Exception):
    """The client read nothing for longer than the stall timeout."""


class _StallWatch:
    """Cancels the task writing a stream when one write has been waiting for longer than
    ``seconds`` (the client stopped reading).

    One timer per stream, armed lazily: a write marks when it began (:meth:`begin`) and
    clears it when done (:meth:`end`), which costs next to nothing per chunk; the timer
    fires at the earliest moment a write could be overdue and then checks the write
    pending now, re-arming itself for it or not at all."""

    def __init__(self, seconds: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.seconds = seconds
        self.since: float | None = None  # when the pending write began
        self.fired = False
        self._timer: asyncio.TimerHandle | None = None

    def begin(self) -> None:
        self.since = now = self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_at(now + self.seconds, self._check)

    def end(self) -> None:
        self.since = None

    def _check(self) -> None:
        self._timer = None
        since = self.since
        if since is None or self.task is None:
            return
        due = since + self.seconds
        if self.loop.time() < due:
            self._timer = self.loop.call_at(due, self._check)
            return
        self.fired = True
        self.task.cancel()

    def stalled(self) -> bool:
        """After a ``CancelledError`` out of a write: whether it was this watch (and no
        other cancellation is pending), so the write should end as :class:`Stalled`."""
        return self.fired and self.task is not None and self.task.uncancel() == 0

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def sse(data: dict[str, Any]) -> bytes:
    return (
        b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
    )


def render_chunk(chunk: ChatCompletionChunk, include_usage: bool) -> bytes:
    """A chunk as OpenAI's SSE: its ``data:`` line, and with ``include_usage`` ``usage``
    null on it and the usage (if it has one) in a chunk of its own after it."""
    data = public(chunk.model_dump())
    usage = data.pop("usage", None)
    if include_usage:
        data["usage"] = None  # OpenAI: null on every chunk but the usage one
    out = sse(data)
    if usage is not None and include_usage:
        out += sse({**data, "choices": [], "usage": usage})
    return out


#: stands for the text in a rendered template (its JSON found once, else no template)
_SENTINEL = "\ue000llmplex-text\ue000"
_SENTINEL_JSON = json.dumps(_SENTINEL, ensure_ascii=False).encode()
_encode_text = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses


class ChunkRenderer:
    """:func:`render_chunk` for one stream, with a fast path for the chunks that make
    most of a stream: text only (one choice at index 0, ``content`` and nothing else:
    no role, finish reason, logprobs, usage...), with the same stream-level fields (id,
    created, model, provider...) as the chunk before. Those are rendered from a template
    made once per stream (by :func:`render_chunk` itself, with a sentinel for the text),
    so their bytes are :func:`render_chunk`'s, without dumping objects to dicts and
    dicts to JSON for every chunk; any other chunk goes through :func:`render_chunk`."""

    __slots__ = ("_head", "_key", "_tail", "include_usage")

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self._key: tuple[Any, ...] | None = None
        self._head = b""
        self._tail = b""

    def __call__(self, chunk: ChatCompletionChunk) -> bytes:
        choices = chunk.choices
        if len(choices) == 1 and chunk.usage is None:
            choice = choices[0]
            delta = choice.delta
            text = delta.content
            if (
                type(text) is str
                and choice.index == 0
                and choice.finish_reason is None
                and choice.logprobs is None
                and delta.role is None
                and delta.refusal is None
                and delta.tool_calls is None
                and delta.reasoning_content is None
                and delta.reasoning_signature is None
            ):
                key = (
                    chunk.id,
                    chunk.created,
                    chunk.model,
                    chunk.provider,
                    chunk.system_fingerprint,
                    chunk.service_tier,
                    chunk.conversation_id,
                    chunk.emulated,
                )
                if key != self._key and not self._template(chunk, key):
                    return render_chunk(chunk, self.include_usage)
                return self._head + _encode_text(text).encode() + self._tail
        return render_chunk(chunk, self.include_usage)

    def _template(self, chunk: ChatCompletionChunk, key: tuple[Any, ...]) -> bool:
        model = copy.copy(chunk)
        model.choices = [ChunkChoice(ChoiceDelta(_SENTINEL))]
        rendered = render_chunk(model, self.include_usage)
        head, found, tail = rendered.partition(_SENTINEL_JSON)
        if not found or _SENTINEL_JSON in tail:  # (a field held the sentinel too)
            self._key = None
            return False
        self._key, self._head, self._tail = key, head, tail
        return True


DONE = b"data: [DONE]\n\n"


class EventStream(Response):
    """The SSE response: writes the pump's chunks, watching for the client leaving, and
    drops a client none of whose writes completes within ``stall_timeout`` seconds."""

    media_type = "text/event-stream"

    def __init__(
        self,
        first: tuple[str, Any],
        pump: Pump | Direct,
        watcher: asyncio.Future[None],
        include_usage: bool,
        stall_timeout: float = CLIENT_STALL_TIMEOUT,
    ) -> None:
        # Not Response.__init__: it would add a Content-Length for the empty body.
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self.first = first
        self.pump = pump
        self.watcher = watcher
        self.include_usage = include_usage
        self.renderer = ChunkRenderer(include_usage)
        self.stall_timeout = stall_timeout

    #: seconds without a chunk after which :meth:`_idle` is written (None: never)
    keepalive: float | None = None

    def _error(self, exc: BaseException) -> bytes:
        """The bytes ending a stream that failed after it started."""
        error = error_for(exc)
        log_error(error, exc, streaming=True)
        return b"event: error\n" + sse(error.body()) + DONE

    def _end(self) -> bytes:
        """The bytes ending a stream that completed."""
        return DONE

    def _idle(self) -> bytes:
        """The bytes written after :attr:`keepalive` seconds without a chunk."""
        return b""

    async def _next(self, write: Any) -> tuple[str, Any]:
        if self.keepalive is None:
            return await self.pump.get()
        while True:
            try:
                # A queue's get() is safe to cancel: a timeout loses no chunk.
                return await asyncio.wait_for(self.pump.get(), self.keepalive)
            except TimeoutError:
                if self.watcher.done():
                    return ("end", None)
                await write({"type": "http.response.body", "body": self._idle(), "more_body": True})

    def _render(self, chunk: ChatCompletionChunk) -> bytes:
        return self.renderer(chunk)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump, watcher = self.pump, self.watcher
        if self.keepalive is not None and pump.task is None:
            raise TypeError("a stream with keep-alive events needs a Pump (a Direct has none)")
        # The client leaving ends the upstream at once, even while it is silent: the
        # pump's task is cancelled, or (a Direct stream) this one, once.
        task = asyncio.current_task()
        writing = True
        gone = False

        def leave(_: object) -> None:
            nonlocal gone
            if pump.task is not None:
                pump.task.cancel()
            elif writing and not gone and task is not None:
                gone = True
                task.cancel()

        watcher.add_done_callback(leave)
        watch = _StallWatch(self.stall_timeout)

        async def write(message: Message) -> None:
            # uvicorn's send waits while the connection's write buffer is full
            watch.begin()
            try:
                await send(message)
            except asyncio.CancelledError:
                if watch.stalled():
                    raise Stalled() from None
                raise
            finally:
                watch.end()

        # without keep-alives the next item is the source's own (one call less per chunk)
        following = pump.get if self.keepalive is None else functools.partial(self._next, write)
        try:
            await write({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            item = self.first
            # (a Direct source never has anything queued; a renderer not overridden is
            # called as it is: each a Python call less per chunk)
            ready = pump.ready if pump.task is not None else None
            render = self.renderer if type(self)._render is EventStream._render else self._render
            while True:
                kind, value = item
                if kind == "chunk":
                    body = render(value)
                    # What the pump has queued meanwhile goes out in the same write (one
                    # send, one wake-up of the client): only what is already there, so no
                    # chunk waits for another.
                    while ready is not None and kind == "chunk":
                        queued = ready()
                        if queued is None:
                            break
                        kind, value = queued
                        if kind == "chunk":
                            body += render(value)
                        elif kind == "error":
                            body += self._error(value)
                        else:
                            body += self._end()
                elif kind == "error":
                    body = self._error(value)
                else:
                    body = self._end()
                if watcher.done():
                    log.info("client went away mid-stream; upstream request cancelled")
                    break
                await write({"type": "http.response.body", "body": body, "more_body": True})
                if kind != "chunk":
                    break
                item = await following()
            await write({"type": "http.response.body", "body": b"", "more_body": False})
        except Stalled:
            # The response stays unfinished: the server closes the connection (with what
            # it buffered; no more is written), the upstream is closed below.
            log.warning(
                "client read nothing for %g s; dropped, upstream request cancelled",
                self.stall_timeout,
            )
        except OSError:
            pass  # the connection broke while writing: same as a disconnect
        except asyncio.CancelledError:
            if not (gone and task is not None and task.uncancel() == 0):
                raise  # (not the client leaving: the server shutting down)
            log.info("client went away mid-stream; upstream request cancelled")
        finally:
            writing = False
            watch.close()
            watcher.cancel()
            await pump.close()
