"""Stale pooled connections (issue 10, item 8).

A hostile OpenAI-compatible upstream of the test's own (raw asyncio in a thread, not the
faithful emulator) closes its connection right after an error answer — without
``Connection: close`` — or after every answer. Falling back to a second provider on the same
host:port inside one pool used to reuse the connection the peer had closed (0 of 20
fallbacks succeeded here); a connection whose answer was an error is never handed out
again, and a request that fails on a reused connection before any byte of its answer is
sent once more on a new one.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Self

import pytest

from llmplex.errors import ProviderConnectionError, ResponseStatusError, StreamError
from llmplex.http import ConnectionPool
from llmplex.providers import OpenAICompatible

ROUNDS = 20


class First(OpenAICompatible):
    """The provider that fails (two names on one upstream, as in a fallback chain)."""


class Second(OpenAICompatible):
    """The provider the call falls back to."""


def _chunked(*events: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"


class Upstream:
    """``/v1/chat/completions`` on 127.0.0.1. Model ``fail-stream``: a 200 SSE error stream;
    ``fail-status``: a 500; ``drop``: the connection closed without an answer; anything
    else: ``ok``. ``close_after``: the models after whose (complete) answer the connection
    is closed, ``close_delay`` seconds later — never announced with ``Connection: close``."""

    def __init__(self, close_after: set[str], close_delay: float = 0.0) -> None:
        self.close_after = close_after
        self.close_delay = close_delay
        self.connections = 0
        self.requests: list[tuple[int, str]] = []  # (connection number, model)
        self._ready = threading.Event()

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the upstream did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (
                        line.partition(":") for line in head.split("\r\n")[1:] if line
                    )
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                model = json.loads(body or b"{}").get("model", "")
                self.requests.append((number, model))
                if model == "drop":
                    return
                if model == "fail-status":
                    text = b'{"error": {"message": "upstream exploded"}}'
                    writer.write(
                        b"HTTP/1.1 500 Internal Server Error\r\n"
                        b"Content-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(text), text)
                    )
                else:
                    if model == "fail-stream":
                        events = [b'data: {"error": {"message": "upstream exploded"}}\n\n']
                    else:
                        chunk = {
                            "choices": [
                                {"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}
                            ]
                        }
                        events = [b"data: " + json.dumps(chunk).encode() + b"\n\n"]
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n"
                        + _chunked(*events, b"data: [DONE]\n\n")
                    )
                await writer.drain()
                if model in self.close_after:
                    await asyncio.sleep(self.close_delay)
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _fallback_rounds(upstream: Upstream, failing_model: str, error: type) -> int:
    """How many of ROUNDS "First fails, fall back to Second" turns got Second's answer."""
    succeeded = 0
    for _ in range(ROUNDS):
        async with ConnectionPool():
            assert await Second.create_async("warm", "Hi", base_url=upstream.base_url) == "ok"
            with pytest.raises(error):
                await First.create_async(failing_model, "Hi", base_url=upstream.base_url)
            try:
                text = await Second.create_async("ok", "Hi", base_url=upstream.base_url)
            except ProviderConnectionError:
                continue
            succeeded += text == "ok"
    return succeeded


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.02])
async def test_fallback_after_an_error_stream_and_a_close_succeeds_every_time(delay):
    # Measured before the fix: 0 of 20 for each delay (the stream is read to its end, so
    # its connection went back to the pool before the error event was seen).
    with Upstream({"fail-stream"}, delay) as upstream:
        assert await _fallback_rounds(upstream, "fail-stream", StreamError) == ROUNDS
    # the failed stream's connection was not reused: every fallback came on another one
    fallbacks = [n for n, model in upstream.requests if model == "ok"]
    failed = {n for n, model in upstream.requests if model == "fail-stream"}
    assert len(fallbacks) == ROUNDS and not failed & set(fallbacks)


async def test_fallback_after_an_error_status_and_a_close_succeeds_every_time():
    with Upstream({"fail-status"}) as upstream:
        assert await _fallback_rounds(upstream, "fail-status", ResponseStatusError) == ROUNDS


async def test_an_error_answer_is_never_followed_by_a_request_on_its_connection():
    # The upstream keeps the connection open here: still, nothing is sent on it again.
    with Upstream(set()) as upstream:
        async with ConnectionPool():
            for model in ("fail-stream", "fail-status"):
                with pytest.raises((StreamError, ResponseStatusError)):
                    await First.create_async(model, "Hi", base_url=upstream.base_url)
                assert await Second.create_async("ok", "Hi", base_url=upstream.base_url) == "ok"
            assert await Second.create_async("ok", "Hi", base_url=upstream.base_url) == "ok"
    # after each error answer a new connection; a good answer's connection is kept alive
    assert upstream.requests == [
        (1, "fail-stream"),
        (2, "ok"),
        (2, "fail-status"),
        (3, "ok"),
        (3, "ok"),
    ]


async def test_a_request_on_a_connection_the_peer_closed_is_sent_again_on_a_new_one():
    # Every good answer is followed by a close: the retry is what saves the next request
    # (the connection went back to the pool with a good answer, so it is not marked).
    with Upstream({"ok"}, close_delay=0.001) as upstream:
        async with ConnectionPool():
            texts = [
                await Second.create_async("ok", "Hi", base_url=upstream.base_url)
                for _ in range(ROUNDS)
            ]
    assert texts == ["ok"] * ROUNDS
    assert len(upstream.requests) == ROUNDS  # no request was answered twice
    assert upstream.connections >= ROUNDS


async def test_a_new_connection_that_fails_is_not_retried():
    # A request is sent again only on a reused connection: a fresh one that drops the
    # request is the upstream's answer, and the POST is not repeated.
    with Upstream(set()) as upstream:
        async with ConnectionPool():
            with pytest.raises(ProviderConnectionError):
                await First.create_async("drop", "Hi", base_url=upstream.base_url)
    assert upstream.requests == [(1, "drop")]
