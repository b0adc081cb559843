"""Keep-alive connections shared across provider calls.

A :class:`Session` is one provider call; by default it opens (and closes) its own TCP
connection. A :class:`ConnectionPool` lets the Sessions of many calls borrow connections
from one aiohttp connector instead: the clients own one (``async with AsyncClient()``, the
sync ``Client``, ``llmplex serve``), and code calling providers directly can open one with
``async with ConnectionPool():``.

Which pool serves a call is carried by a context variable, so nothing has to be threaded
through the providers' signatures: :meth:`ConnectionPool.bind` sets it around the code
that opens Sessions, and tasks started there inherit it.

Stale connections. A kept-alive connection can be closed by the peer at any moment, and a
request written to it just then fails before any byte of an answer arrives (an upstream
that closes after an error answer does it every time). Every connector llmplex makes (the
pools' and each Session's own, see :func:`new_connector`) therefore knows which of its
connections are reused, and:

- a connection whose response was an error (status >= 400, or the caller's code failed
  while reading it) is marked by the Session and never handed out again, even when it went
  back to the pool before the error was seen (a stream read to its end);
- a request that fails on a *reused* connection before any byte of the answer (aiohttp's
  ``ServerDisconnectedError``, a reset) is sent once more by the Session, on a connection
  the connector opens for it (see :class:`ConnectProbe`). A request on a new connection is
  never repeated.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp

__all__ = [
    "ConnectProbe",
    "ConnectionPool",
    "bind_pool",
    "connect_probe",
    "current_connector",
    "new_connector",
    "unbind_pool",
]

_current: contextvars.ContextVar[ConnectionPool | None] = contextvars.ContextVar(
    "llmplex_connection_pool", default=None
)

#: most idle connections dropped in a row by one connect (then the next one is taken)
_MAX_DROPS = 64


class ConnectProbe:
    """What the connector says about the connection of one request: ``reused`` (it had
    served a request before) and its ``protocol`` (aiohttp's, also once the response
    handed the connection back); set ``fresh`` to make the connector open a new
    connection (dropping the idle ones it would have reused)."""

    __slots__ = ("fresh", "protocol", "reused")

    def __init__(self) -> None:
        self.reused = False
        self.fresh = False
        self.protocol: Any = None


#: the probe of the request being sent in this context (set by Session around a request)
connect_probe: contextvars.ContextVar[ConnectProbe | None] = contextvars.ContextVar(
    "llmplex_connect_probe", default=None
)


@functools.cache
def _connector_class() -> type[aiohttp.TCPConnector]:
    import aiohttp  # here, not at import: making a client must stay cheap

    class TrackingConnector(aiohttp.TCPConnector):
        """A TCPConnector that knows which connections it hands out again and refuses the
        ones marked as not to be reused (``protocol.force_close()``) while idle."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._llmplex_used: weakref.WeakSet[Any] = weakref.WeakSet()

        async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
            probe = connect_probe.get()
            fresh = probe is not None and probe.fresh
            used = self._llmplex_used
            for attempt in range(_MAX_DROPS + 1):
                conn = await super().connect(req, traces, timeout)
                protocol = conn.protocol
                if protocol is None:  # pragma: no cover - aiohttp always sets one
                    return conn
                if protocol not in used:
                    used.add(protocol)
                    if probe is not None:
                        probe.reused, probe.protocol = False, protocol
                    return conn
                if attempt == _MAX_DROPS or not (fresh or protocol.should_close):
                    if probe is not None:
                        probe.reused, probe.protocol = True, protocol
                    return conn
                conn.close()  # marked, or the caller wants a new one: drop it, take the next
            raise AssertionError("unreachable")  # pragma: no cover

    return TrackingConnector


def new_connector(limit: int = 100) -> aiohttp.TCPConnector:
    """A connector that tells reused connections apart (see the module's docstring).
    ``limit`` as aiohttp's (100 by default, 0 for none)."""
    return _connector_class()(limit=limit)


class ConnectionPool:
    """Keep-alive connections for the provider calls made where it is bound.

    The connector is created on first use, in the event loop that uses it; a pool only
    ever serves that loop (calls from another loop open their own connections, as without
    a pool). :meth:`close` (or leaving ``async with``) closes the pooled connections;
    afterwards calls open their own connections again. Sessions through a SOCKS proxy keep
    their own connector.

    ``limit`` caps the connections open at once (0: no cap). The default has none, as
    calls without a pool have none: a cap would make the stream past it wait, unseen, for
    another model's answer to end. Idle connections close after aiohttp's keep-alive
    timeout (15 s).
    """

    def __init__(self, limit: int = 0) -> None:
        self._limit = limit
        self._connector: aiohttp.TCPConnector | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._token: contextvars.Token[ConnectionPool | None] | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._connector else "unused"
        return f"ConnectionPool(limit={self._limit}, {state})"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connector_created(self) -> bool:
        """Whether a connector was ever made (so there may be connections to close)."""
        return self._connector is not None

    def connector(self) -> aiohttp.TCPConnector | None:
        """The pool's connector for the running loop (created on first use), or None when
        the pool is closed or belongs to another loop."""
        if self._closed:
            return None
        loop = asyncio.get_running_loop()
        if self._connector is None:
            self._connector = new_connector(self._limit)
            self._loop = loop
        elif self._loop is not loop or self._connector.closed:
            return None
        return self._connector

    def bind(self) -> _Binding:
        """``with pool.bind():`` makes Sessions opened in the block (and in tasks started
        from it) use the pool."""
        return _Binding(self)

    async def close(self) -> None:
        """Close the pooled connections; later calls open their own. Idempotent."""
        self._closed = True
        if self._connector is not None:
            connector, self._connector = self._connector, None
            await connector.close()

    async def __aenter__(self) -> ConnectionPool:
        """``async with ConnectionPool():`` binds the pool for the block and closes it after."""
        self._token = _current.set(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._token is not None:
            token, self._token = self._token, None
            try:
                _current.reset(token)
            except ValueError:  # left from another context: no longer ours to reset
                pass
        await self.close()


class _Binding:
    # A plain class, not @contextmanager: clients bind around every step of a stream.
    __slots__ = ("_pool", "_token")
    _token: contextvars.Token[ConnectionPool | None]  # set by __enter__, which always comes first

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def __enter__(self) -> None:
        self._token = _current.set(self._pool)

    def __exit__(self, *exc_info: object) -> None:
        _current.reset(self._token)


#: ``token = bind_pool(pool)`` ... ``unbind_pool(token)``: what ``with pool.bind():`` does,
#: as two C calls (the client binds its pool around every step of a stream)
bind_pool = _current.set
unbind_pool = _current.reset


def current_connector() -> aiohttp.TCPConnector | None:
    """The connector of the pool bound in this context, if any serves the running loop."""
    pool = _current.get()
    return None if pool is None else pool.connector()
