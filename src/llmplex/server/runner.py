"""Run the app on uvicorn: in the foreground (``llmplex serve``) or in a background
thread (tests, notebooks, programs embedding the API).

Limits for clients, each a keyword of :func:`serve_forever` and :class:`ServerThread` with
its default here (seconds, counts, bytes):

``header_timeout`` (:data:`HEADER_TIMEOUT`, 10 s)
    A request's headers must be complete this long after the connection opened, or after
    the first byte of a request that follows another on a kept-alive connection; else the
    connection is closed. This closes connections that never send a byte and slowloris
    clients dribbling headers (uvicorn itself arms no timer before the first response).
``body_timeout`` (:data:`BODY_TIMEOUT`, 30 s)
    A request's whole body must arrive this long after its headers; else the connection
    is closed (the app sees a disconnect).
``keepalive_timeout`` (:data:`KEEPALIVE_TIMEOUT`, 20 s)
    An idle kept-alive connection is closed after this long (uvicorn's
    ``timeout_keep_alive``). Longer than the clients' own idle expiry (httpx, so the
    OpenAI SDK: 5 s; aiohttp: 15 s), so a client never reuses a connection the server is
    closing at the same moment.
``max_connections`` (:data:`MAX_CONNECTIONS`, 2048)
    Connections (and running requests) served at once: a request beyond them is answered
    503 at once (uvicorn's ``limit_concurrency``).
``max_header_bytes`` (:data:`MAX_HEADER_BYTES`, 32 KiB)
    What the server buffers of one request's line and headers while they arrive (h11's
    ``max_incomplete_event_size``; with httptools, counted here); more is a 400. (Headers
    that arrive complete in one read are parsed whole: one read is at most 256 KiB.)

Speed (``llmplex serve`` is a hop between clients and upstreams, measured in
``bench/server.py``): httptools (the ``[server]`` extra) and uvloop (``[uvloop]``) are
used when installed (uvicorn's ``"auto"``), with the same limits on either HTTP parser;
:func:`serve_forever` moves the objects built at start-up out of the garbage collector's
way (``gc.freeze()``) and collects the youngest generation less often, so that a
collection does not pause every few requests; the access log is off unless asked for
(``llmplex serve --access-log``): a log record per request costs ~5% of a request's CPU.

Shutdown (:func:`serve_forever`): on SIGTERM or Ctrl-C the listening socket is closed (new
connections are refused), idle kept-alive connections are closed and busy ones after
their current response; running requests (streams) get ``drain_timeout`` seconds
(:data:`DRAIN_TIMEOUT`, 30 s) to finish, then are cancelled, their upstream requests
cleaned up by the providers (:mod:`llmplex.server.shutdown`), and the call returns.

Every accepted TCP connection has ``TCP_NODELAY`` set: without it a response written in
two pieces (headers, then body) waits ~40 ms for the client's delayed ACK on a kept-alive
connection. (asyncio sets it only on sockets whose ``proto`` is ``IPPROTO_TCP``, which a
socket made with ``socket(AF_INET, SOCK_STREAM)`` is not: :func:`bind` passes it, the
listening socket has the option for the accepted ones to inherit, and the protocol sets it
on each connection whatever socket it came from.)
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import socket
import threading
from typing import Any

__all__ = [
    "bind",
    "serve_forever",
    "ServerThread",
    "HEADER_TIMEOUT",
    "BODY_TIMEOUT",
    "KEEPALIVE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_HEADER_BYTES",
    "DRAIN_TIMEOUT",
]

HEADER_TIMEOUT = 10.0  # seconds for a request's headers (from connect, or its first byte)
BODY_TIMEOUT = 30.0  # seconds for a request's body, from its headers
KEEPALIVE_TIMEOUT = 20.0  # seconds an idle kept-alive connection stays open
MAX_CONNECTIONS = 2048  # connections (and requests) served at once; beyond: 503
MAX_HEADER_BYTES = 32 * 1024  # of a request's headers buffered while they arrive; beyond: 400
DRAIN_TIMEOUT = 30.0  # seconds running requests get to finish on SIGTERM (serve_forever)

_logger = logging.getLogger("llmplex.server")


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready socket on ``host:port`` (port 0: an ephemeral one), so the
    caller knows the real port before the server starts. A TCP socket with
    ``TCP_NODELAY`` (inherited by the connections it accepts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _Limits:
    """Mixed into uvicorn's HTTP protocol class (h11 or httptools): ``TCP_NODELAY`` on the
    connection, and the header and body deadlines (see the module docstring).

    One timer per connection, re-armed lazily: it fires at the earliest deadline it may
    have to enforce and then checks which one applies now (a request's headers, its
    body, or none while the app answers or the connection idles between requests, which
    uvicorn's keep-alive timer covers)."""

    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    #: headers buffered while they arrive, at most (None: the parser enforces it, as h11)
    header_bytes: int | None = None

    # The protocol's own attributes these methods use (uvicorn's h11 and httptools
    # protocols both have them).
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - the peer is already gone
                pass
        self._limit_cycle: Any = None  # the request whose headers were seen last
        self._limit_timer: asyncio.TimerHandle | None = None
        self._limit_deadline: float | None = None  # when the current phase must end
        self._limit_what = "headers"
        self._limit_head = 0  # bytes of the request's head received so far
        self._limit_set(self.header_timeout, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._limit_timer is not None:
            self._limit_timer.cancel()
            self._limit_timer = None
        self._limit_deadline = None
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not self._limit_cycle:
            self._limit_request()
        elif self._limit_what == "idle":  # the first bytes of a next request
            self._limit_set(self.header_timeout, "headers")
            self._limit_head = len(data)
            self._limit_head_size()
        elif self._limit_what == "body" and not self.cycle.more_body:
            self._limit_clear("app")  # the body is in: the app answers, no deadline
        elif self._limit_what == "headers" and self.header_bytes is not None:
            self._limit_head += len(data)
            self._limit_head_size()

    def _limit_head_size(self) -> None:
        """Headers still incomplete beyond ``header_bytes``: a 400 and the connection
        closed, as h11 answers beyond its ``max_incomplete_event_size``."""
        limit = self.header_bytes
        if limit is None or self._limit_head <= limit or self.transport.is_closing():
            return
        _logger.debug(
            "closing a connection from %s: request headers beyond %d bytes",
            getattr(self, "client", None),
            limit,
        )
        body = b"Invalid HTTP request received."
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; "
            b"charset=utf-8\r\nconnection: close\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        self._limit_deadline = None
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]  # (may start a pipelined one)
        if self.cycle is not self._limit_cycle:
            self._limit_request()
        elif not self.cycle.more_body:  # (else answered before its body came in: the
            self._limit_clear("idle")  # body deadline stands); idle: uvicorn's keep-alive

    def _limit_request(self) -> None:
        """A new request's headers are complete: its body has a deadline, if it has one."""
        self._limit_cycle = cycle = self.cycle
        if cycle.more_body:
            self._limit_set(self.body_timeout, "body")
        else:
            self._limit_clear("app")

    def _limit_clear(self, what: str) -> None:
        self._limit_deadline = None
        self._limit_what = what

    def _limit_set(self, seconds: float, what: str) -> None:
        deadline = self.loop.time() + seconds
        self._limit_deadline = deadline
        self._limit_what = what
        timer = self._limit_timer
        if timer is None or timer.when() > deadline:  # (a body deadline may be later)
            if timer is not None:
                timer.cancel()
            self._limit_timer = self.loop.call_at(deadline, self._limit_check)

    def _limit_check(self) -> None:
        self._limit_timer = None
        deadline = self._limit_deadline
        if deadline is None or self.transport.is_closing():
            return
        now = self.loop.time()
        if now < deadline:
            self._limit_timer = self.loop.call_at(deadline, self._limit_check)
            return
        _logger.debug(
            "closing a connection from %s: request %s not complete in time",
            getattr(self, "client", None),
            self._limit_what,
        )
        self._limit_deadline = None
        self.transport.close()


class _HeadFirst:
    """The transport as a request's response cycle sees it (httptools): the response's
    head is held back until the body's first bytes follow (or the loop's next turn), so
    that a whole answer goes out in one write, one TCP segment, not two. uvicorn writes
    the status line and headers as soon as the app starts its response and the body
    right after, in the same turn for an answer the app has in hand. Once the head is
    out, the cycle writes to the transport itself again (a stream's chunks pass no
    Python layer of this)."""

    __slots__ = ("_cycle", "_held", "_loop", "_transport", "_used")

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, cycle: Any
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._cycle = cycle
        self._held: bytes | None = None
        self._used = False

    def write(self, data: bytes) -> None:
        if not self._used:  # the first write of the cycle: the head (or a 100 Continue)
            self._used = True
            self._held = data
            self._loop.call_soon(self.flush)
            return
        held = self._held
        if held is not None:
            self._held = None
            data = held + data
            self._done()
        self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._done()
            if not self._transport.is_closing():
                self._transport.write(held)

    def _done(self) -> None:
        if self._cycle.transport is self:
            self._cycle.transport = self._transport

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _HeadFirstMixin:
    """Mixed into uvicorn's httptools protocol: each request's cycle writes through
    :class:`_HeadFirst`."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def on_headers_complete(self) -> None:
        super().on_headers_complete()  # type: ignore[misc]
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = _HeadFirst(self.transport, self.loop, cycle)


@functools.cache
def _protocol(
    base: type, header_timeout: float, body_timeout: float, header_bytes: int | None = None
) -> type:
    """uvicorn's protocol class ``base`` with the deadlines of :class:`_Limits` (and for
    httptools, whole answers in one write: :class:`_HeadFirst`)."""
    mixins: tuple[type, ...] = (_Limits,)
    if hasattr(base, "on_headers_complete"):  # httptools' (h11 has no such callback)
        mixins += (_HeadFirstMixin,)
    return type(
        f"Limited{base.__name__}",
        (*mixins, base),
        {
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "header_bytes": header_bytes,
        },
    )


def _tune_gc() -> None:
    """Keep the collector out of the hot path: what exists after start-up (modules, the
    app, its schemas) is frozen out of every collection, and the youngest generation is
    collected after 50,000 allocations instead of 700 (a request allocates a few
    thousand objects; most die young by reference counting, cycles still get
    collected)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _config(
    app: Any,
    host: str,
    port: int,
    *,
    header_timeout: float = HEADER_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    max_header_bytes: int = MAX_HEADER_BYTES,
    **options: Any,
) -> Any:
    import uvicorn
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    options.setdefault("log_level", "info")
    # On shutdown, streams still open get this long to finish, then are cancelled (their
    # upstream requests too, with the providers' cleanup).
    options.setdefault("timeout_graceful_shutdown", 5)
    # Limits for clients (module docstring). uvicorn's limit_concurrency counts the
    # connection asking too (503 once connections >= limit): one more serves exactly
    # max_connections.
    options.setdefault("timeout_keep_alive", keepalive_timeout)
    options.setdefault("limit_concurrency", max_connections + 1)
    options.setdefault("h11_max_incomplete_event_size", max_header_bytes)
    http = options.pop("http", "auto")
    base = import_from_string(HTTP_PROTOCOLS.get(http, http)) if isinstance(http, str) else http
    # h11 bounds incomplete headers itself; httptools does not: _Limits counts them
    from uvicorn.protocols.http.h11_impl import H11Protocol

    header_bytes = None if issubclass(base, H11Protocol) else int(max_header_bytes)
    options["http"] = _protocol(base, float(header_timeout), float(body_timeout), header_bytes)
    # uvloop when installed (uvicorn's "auto"); say so: the default is asyncio's loop
    options.setdefault("loop", "auto")
    if options.pop("tune_gc", False):
        _tune_gc()
    # Requests are logged by uvicorn's access log when it is on: method, path and status
    # only (no headers, no bodies, so no keys).
    # lifespan "on": the app opens its upstream connection pool at start-up and closes it
    # at shutdown.
    return uvicorn.Config(app, host=host, port=port, lifespan="on", **options)


def serve_forever(
    app: Any,
    sock: socket.socket,
    *,
    header_timeout: float = HEADER_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    max_header_bytes: int = MAX_HEADER_BYTES,
    drain_timeout: float = DRAIN_TIMEOUT,
    **options: Any,
) -> None:
    """Serve ``app`` on the bound ``sock`` until Ctrl-C or SIGTERM, then return.

    The limits for clients are described in the module docstring; ``options`` are
    ``uvicorn.Config`` options (``access_log`` is off unless given). ``drain_timeout``:
    seconds running requests get to finish after the signal (then they are cancelled,
    with upstream cleanup). The collector is tuned for a long-running server
    (``gc.freeze()`` and higher thresholds, see :func:`_tune_gc`): this process is the
    server's.

    uvicorn shuts down gracefully on either signal and then raises it again for the
    previous handler; SIGTERM's handler is set to raise ``KeyboardInterrupt`` meanwhile,
    so both end here, and the caller's cleanup runs (the default would kill the process).
    """
    import signal

    import uvicorn

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    options.setdefault("timeout_graceful_shutdown", drain_timeout)
    host, port = sock.getsockname()[:2]
    options.setdefault("access_log", False)  # llmplex serve --access-log turns it on
    server = uvicorn.Server(
        _config(
            app,
            host,
            port,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            keepalive_timeout=keepalive_timeout,
            max_connections=max_connections,
            max_header_bytes=max_header_bytes,
            tune_gc=True,
            **options,
        )
    )
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if main else None
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


class ServerThread:
    """The app on uvicorn in a daemon thread: ``with ServerThread(app) as server:`` gives
    ``server.url`` (``http://127.0.0.1:<port>``); leaving the block shuts it down.

    ``log_config=None`` by default: uvicorn's loggers then propagate to the root logger
    (so pytest's ``caplog`` sees them) instead of getting their own handlers. The limits
    and ``options`` as for :func:`serve_forever`."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_header_bytes: int = MAX_HEADER_BYTES,
        **options: Any,
    ) -> None:
        import uvicorn

        options.setdefault("log_config", None)
        self.sock = bind(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.server = uvicorn.Server(
            _config(
                app,
                self.host,
                self.port,
                header_timeout=header_timeout,
                body_timeout=body_timeout,
                keepalive_timeout=keepalive_timeout,
                max_connections=max_connections,
                max_header_bytes=max_header_bytes,
                **options,
            )
        )
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        self._thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self.sock]},
            name="llmplex-server",
            daemon=True,
        )
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread ended before it started listening")
            self._thread.join(0.01)
        return self.url

    def stop(self) -> None:
        if self._thread is None:
            return
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._thread = None
        self.sock.close()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
