"""A hostile OpenAI-compatible upstream, for testing what llmplex (or code built on it) does
when a service misbehaves: raw asyncio (no aiohttp, nothing shared with the faithful
emulators), counting its own connections and streams.

The model name of each request picks the behaviour (:data:`BEHAVIOURS`)::

    with hostile() as upstream:
        await OpenAICompatible.create_async("keepalive", "Hi", base_url=upstream.url + "/v1",
                                            ...)
        upstream.open_connections  # 0 once the client let go
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["HostileUpstream", "hostile", "BEHAVIOURS", "HUGE_BYTES"]

#: size of the huge line and the huge body, above llmplex's default limits (16 MiB)
HUGE_BYTES = 20 * 1024 * 1024

BEHAVIOURS = {
    "ok": "a normal streamed answer, 'hello world'",
    "keepalive": "200, then only SSE comments, forever",
    "trickle": "200, then a text chunk every 0.1 s, forever",
    "flood": "200, then text chunks as fast as the socket takes them, forever",
    "cut": "200, one chunk, then the connection closes (no finish, no [DONE])",
    "split-emoji": "an emoji's two JSON surrogate escapes in two events",
    "huge-line": f"200, then one SSE line of {HUGE_BYTES} bytes",
    "huge-json": f"a JSON answer (no stream) of {HUGE_BYTES} bytes",
    "retry-inf": "429 with Retry-After: inf",
    "echo": "500 whose body echoes the request's headers (keys included)",
    "silent": "reads the request, never answers",
}


def _chunk(text: str) -> bytes:
    data = {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "hostile",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


_END = (
    b'data: {"id":"c","object":"chat.completion.chunk","model":"hostile","choices":'
    b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)
_SSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)


def _response(status: str, body: bytes, headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{headers}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


class HostileUpstream:
    """The upstream's state: what it saw, what is open now."""

    def __init__(self) -> None:
        self.url = ""
        self.connections = 0  # accepted, in all
        self.open_connections = 0
        self.open_streams = 0  # streaming answers being written now
        self.requests: list[dict[str, Any]] = []  # method, path, headers, json
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            data = json.loads(body or b"{}")
            self.requests.append({"method": method, "path": path, "headers": headers, "json": data})
            await self._answer(str(data.get("model", "ok")), headers, reader, writer)
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            pass
        finally:
            self.open_connections -= 1
            writer.close()

    async def _answer(
        self,
        behaviour: str,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if behaviour == "retry-inf":
            body = b'{"error": {"message": "slow down", "type": "requests"}}'
            writer.write(_response("429 Too Many Requests", body, "Retry-After: inf\r\n"))
            await writer.drain()
            return
        if behaviour == "echo":
            body = json.dumps({"error": {"message": f"bad request: {headers}"}}).encode()
            writer.write(_response("500 Internal Server Error", body))
            await writer.drain()
            return
        if behaviour == "huge-json":
            filler = "x" * HUGE_BYTES
            body = json.dumps(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "model": "hostile",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": filler},
                        }
                    ],
                }
            ).encode()
            writer.write(_response("200 OK", body))
            await writer.drain()
            return
        if behaviour == "silent":
            await reader.read()  # until the client gives up
            return
        writer.write(_SSE)
        self.open_streams += 1
        try:
            await self._stream(behaviour, writer)
        finally:
            self.open_streams -= 1

    async def _stream(self, behaviour: str, writer: asyncio.StreamWriter) -> None:
        if behaviour == "keepalive":
            while True:
                writer.write(b": keep-alive\n\n")
                await writer.drain()
                await asyncio.sleep(0.05)
        if behaviour == "trickle":
            while True:
                writer.write(_chunk("drip "))
                await writer.drain()
                await asyncio.sleep(0.1)
        if behaviour == "flood":
            piece = _chunk("flood " * 100)
            while True:
                writer.write(piece * 16)
                await writer.drain()
        if behaviour == "cut":
            writer.write(_chunk("half an answer"))
            await writer.drain()
            return  # closed by _handle: no finish_reason, no [DONE]
        if behaviour == "split-emoji":
            for text in ('"Smile ', '"\\ud83d', '"\\ude00'):
                writer.write(
                    b'data: {"choices":[{"index":0,"delta":{"content":'
                    + text.encode()
                    + b'"},"finish_reason":null}]}\n\n'
                )
            writer.write(_END)
            await writer.drain()
            return
        if behaviour == "huge-line":
            writer.write(b'data: {"choices":[{"index":0,"delta":{"content":"')
            block = b"y" * (1024 * 1024)
            for _ in range(HUGE_BYTES // len(block)):
                writer.write(block)
                await writer.drain()
            writer.write(b'"}}]}\n\n' + _END)
            await writer.drain()
            return
        writer.write(_chunk("hello") + _chunk(" world") + _END)  # "ok"
        await writer.drain()

    # -- running it ------------------------------------------------------------------------

    def start(self) -> str:
        """Listen on an ephemeral port of 127.0.0.1 (in a thread); return the URL."""
        started = threading.Event()

        def main() -> None:
            loop = self._loop = asyncio.new_event_loop()

            async def listen() -> None:
                self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=2**20)
                port = self._server.sockets[0].getsockname()[1]
                self.url = f"http://127.0.0.1:{port}"
                started.set()

            loop.run_until_complete(listen())
            loop.run_forever()
            loop.close()

        threading.Thread(target=main, name="hostile-upstream", daemon=True).start()
        started.wait(10)
        return self.url

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)


@contextmanager
def hostile() -> Iterator[HostileUpstream]:
    """A :class:`HostileUpstream` listening for the block."""
    upstream = HostileUpstream()
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.stop()
