"""Issue 10 items 3 and 9: the server's connections to its clients.

``TCP_NODELAY`` on every accepted connection (a kept-alive connection used to wait ~40 ms
per answer for a delayed ACK), and limits for clients: a connection that never sends a
byte, a slowloris dribbling its headers or its body, too many connections, too large
headers. Raw sockets on 127.0.0.1 against a ServerThread running a trivial ASGI app, with
short limits for the test.
"""

from __future__ import annotations

import asyncio
import select
import socket
import statistics
import threading
import time

import pytest

from llmplex.server import ServerThread
from llmplex.server.runner import (
    BODY_TIMEOUT,
    HEADER_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_HEADER_BYTES,
    bind,
)

RELEASE = threading.Event()  # /hold answers once set


async def app(scope, receive, send):
    """Echoes the body's length; ``/hold`` answers only once RELEASE is set."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    if scope["path"] == "/hold":
        while not RELEASE.is_set():  # noqa: ASYNC110 - a threading.Event, set from the test thread
            await asyncio.sleep(0.01)
    body = b'{"received": %d}' % size
    # Two writes, as uvicorn makes them for any app: the start, then the body.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def connect(server: ServerThread) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no stall of our own
    return sock


def request_head(path: str = "/", body: bytes = b"", extra: bytes = b"") -> bytes:
    return (
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body)
    )


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length: (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in lines[1:]
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        rest += chunk
    return status, rest[:length]


def closed_within(
    sock: socket.socket, seconds: float, drip: bytes = b"", every: float = 0.2
) -> float | None:
    """Wait up to ``seconds`` for the server to close ``sock``, sending one byte of
    ``drip`` every ``every`` seconds meanwhile (a slowloris). The time it took, or None
    if the connection is still open."""
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            try:
                if sock.recv(65536) == b"":
                    return time.monotonic() - start
            except ConnectionError:
                return time.monotonic() - start
        if drip and sent < len(drip):
            try:
                sock.send(drip[sent : sent + 1])
            except (BrokenPipeError, ConnectionError):
                return time.monotonic() - start
            sent += 1
    del elapsed
    return None


@pytest.fixture
def server():
    with ServerThread(app, header_timeout=1, body_timeout=1, keepalive_timeout=3) as running:
        yield running


# -- TCP_NODELAY -------------------------------------------------------------------------


def _served_sockets(server: ServerThread) -> list[socket.socket]:
    return [c.transport.get_extra_info("socket") for c in server.server.server_state.connections]


def test_bind_makes_a_tcp_socket_with_nodelay():
    sock = bind()
    try:
        assert sock.proto == socket.IPPROTO_TCP  # what asyncio checks before setting it
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()


def test_every_accepted_connection_has_tcp_nodelay():
    with ServerThread(app) as server:
        clients = [connect(server) for _ in range(3)]
        try:
            for client in clients:
                client.sendall(request_head(body=b"{}") + b"{}")
                assert read_response(client) == (200, b'{"received": 2}')
            served = _served_sockets(server)
            assert len(served) == 3
            for sock in served:
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), sock
        finally:
            for client in clients:
                client.close()


def test_kept_alive_round_trips_do_not_wait_for_delayed_acks():
    """20 small POSTs on one kept-alive connection, each sent as headers then body (two
    writes, as httpx and so the OpenAI SDK send them). With Nagle on, each answer (two
    writes too) waited for the client's delayed ACK: ~40 ms each. Now ~1 ms; the bound
    is generous."""
    with ServerThread(app) as server:
        client = connect(server)
        try:
            times = []
            body = b'{"model": "m", "messages": []}'
            for _ in range(20):
                start = time.perf_counter()
                client.sendall(request_head(body=body))
                client.sendall(body)
                assert read_response(client) == (200, b'{"received": %d}' % len(body))
                times.append(time.perf_counter() - start)
        finally:
            client.close()
    assert statistics.median(times) < 0.020, times


# -- limits for clients ------------------------------------------------------------------


def test_the_defaults_close_idle_and_slow_clients_within_30_seconds():
    assert HEADER_TIMEOUT <= 30 and BODY_TIMEOUT <= 30 and KEEPALIVE_TIMEOUT <= 30
    assert KEEPALIVE_TIMEOUT > 15  # above httpx's (5 s) and aiohttp's (15 s) idle expiry
    assert MAX_CONNECTIONS >= 1024  # 1,000 concurrent streams are served
    assert MAX_HEADER_BYTES >= 16 * 1024


def test_a_connection_that_never_sends_a_byte_is_closed(server):
    sock = connect(server)
    try:
        took = closed_within(sock, 8)
    finally:
        sock.close()
    assert took is not None, "still open after 8 s (header_timeout=1)"
    assert 0.5 < took < 5


def test_a_slowloris_dribbling_its_headers_is_closed(server):
    """One header byte every 0.2 s: always active, never done."""
    sock = connect(server)
    head = request_head(body=b"{}", extra=b"X-Slow: " + b"s" * 200 + b"\r\n")
    try:
        took = closed_within(sock, 8, drip=head)
    finally:
        sock.close()
    assert took is not None, "still open after 8 s (header_timeout=1)"
    assert took < 5


def test_a_slowloris_dribbling_its_body_is_closed(server):
    body = b'{"x": "' + b"b" * 200 + b'"}'
    sock = connect(server)
    try:
        sock.sendall(request_head(body=body))
        took = closed_within(sock, 8, drip=body)
    finally:
        sock.close()
    assert took is not None, "still open after 8 s (body_timeout=1)"
    assert took < 5


def test_a_slowloris_on_a_kept_alive_connection_is_closed(server):
    """After a first answer, the next request's headers are dribbled: the header
    deadline starts again with the first byte of the next request."""
    sock = connect(server)
    try:
        sock.sendall(request_head(body=b"{}") + b"{}")
        assert read_response(sock)[0] == 200
        took = closed_within(sock, 8, drip=request_head(extra=b"X-Slow: " + b"s" * 200 + b"\r\n"))
    finally:
        sock.close()
    assert took is not None and took < 5


def test_kept_alive_connections_still_serve_and_idle_ones_close(server):
    """Requests on one connection with pauses longer than header_timeout (1 s) but
    shorter than keepalive_timeout (3 s) are served: an idle kept-alive connection is
    the keep-alive timeout's business. Idle past it, the connection is closed."""
    sock = connect(server)
    try:
        for pause in (0, 1.5, 1.5):
            time.sleep(pause)
            body = b'{"n": 1}'
            sock.sendall(request_head(body=body))  # headers, then the body in a second write
            time.sleep(0.3)
            sock.sendall(body)
            assert read_response(sock) == (200, b'{"received": 8}')
        took = closed_within(sock, 10)
    finally:
        sock.close()
    assert took is not None and 2 < took < 8


def test_a_normal_request_is_not_cut_by_the_limits(server):
    """Headers and body within the deadlines, then an app slower than all of them
    (the app's own time has no deadline here)."""
    RELEASE.clear()
    sock = connect(server)
    try:
        sock.sendall(request_head("/hold", body=b"{}") + b"{}")
        time.sleep(2.5)  # > header_timeout and body_timeout
        RELEASE.set()
        assert read_response(sock) == (200, b'{"received": 2}')
    finally:
        RELEASE.set()
        sock.close()


def test_beyond_max_connections_requests_are_answered_503():
    RELEASE.clear()
    with ServerThread(app, max_connections=2) as server:
        held = [connect(server) for _ in range(2)]
        extra = None
        try:
            for sock in held:
                sock.sendall(request_head("/hold", body=b"{}") + b"{}")
            time.sleep(0.3)  # both requests are in the app
            extra = connect(server)
            extra.sendall(request_head(body=b"{}") + b"{}")
            status, _ = read_response(extra)
            assert status == 503
            RELEASE.set()
            for sock in held:
                assert read_response(sock) == (200, b'{"received": 2}')
        finally:
            RELEASE.set()
            for sock in [*held, *([extra] if extra else [])]:
                sock.close()
        # Once they are gone, a new connection is served again.
        time.sleep(0.3)
        sock = connect(server)
        try:
            sock.sendall(request_head(body=b"{}") + b"{}")
            assert read_response(sock)[0] == 200
        finally:
            sock.close()


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_headers_beyond_max_header_bytes_are_refused(http):
    """h11's bound on what it buffers of headers still arriving (counted by the runner
    under httptools, uvicorn's "auto" when installed): a client cannot make the server
    hold more than max_header_bytes of one request's headers while it waits."""
    with ServerThread(app, max_header_bytes=2048, http=http) as server:
        for size, status in ((1000, 200), (4000, 400)):
            head = request_head(body=b"{}", extra=b"X-Big: " + b"h" * size + b"\r\n")
            sock = connect(server)
            try:
                sock.sendall(head[:-100])  # all but the end of the headers
                time.sleep(0.2)
                sock.sendall(head[-100:] + b"{}")
                assert read_response(sock)[0] == status
            finally:
                sock.close()
