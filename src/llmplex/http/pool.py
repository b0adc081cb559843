"""Keep-alive connections shared across provider calls.

A :class:`Session` is one provider call; by default it opens (and closes) its own TCP
connection. A :class:`ConnectionPool` lets the Sessions of many calls borrow connections
from one aiohttp connector instead: the clients own one (``async with AsyncClient()``, the
sync ``Client``, ``llmplex serve``), and code calling providers directly can open one with
``async with ConnectionPool():``.

Which pool serves a call is carried by a context variable, so nothing has to be threaded
through the providers' signatures: :meth:`ConnectionPool.bind` sets it around the code
that opens Sessions, and tasks started there inherit it.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp

__all__ = ["ConnectionPool", "current_connector"]

_current: contextvars.ContextVar[ConnectionPool | None] = contextvars.ContextVar(
    "llmplex_connection_pool", default=None
)


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
        self._token: contextvars.Token | None = None

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
            import aiohttp  # here, not at import: making a client must stay cheap

            self._connector = aiohttp.TCPConnector(limit=self._limit)
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

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._token: contextvars.Token | None = None

    def __enter__(self) -> None:
        self._token = _current.set(self._pool)

    def __exit__(self, *exc_info: object) -> None:
        _current.reset(self._token)


def current_connector() -> aiohttp.TCPConnector | None:
    """The connector of the pool bound in this context, if any serves the running loop."""
    pool = _current.get()
    return None if pool is None else pool.connector()
