"""Where a server's shared state lives: this process (embedded), or Redis.

One setting chooses: ``LLMPLEX_STATE_URL`` (or ``[state] url`` in config.toml). Unset, the
state is *embedded*, as it always was: provider health in the router of this process,
conversations in the SQLite file, rate limits counted here. A ``redis://``, ``rediss://``
or ``unix://`` URL moves all three to that Redis (or Valkey), so several ``llmplex serve``
processes, on one machine or many, act as one:

- provider health and cooldowns (:mod:`llmplex.state.health`): one instance's 429 with
  ``Retry-After`` cools the provider down for all;
- conversations and stored Responses (:class:`~llmplex.conversations.redis.RedisStore`);
- the per-key rate limits of :mod:`llmplex.server.keys` (:mod:`llmplex.state.limits`).

When Redis cannot be reached, :class:`StateBackendError` says so (never with the URL's
password), and ``on_error`` decides: ``"closed"`` (the default) fails the request (the
server answers 503 with ``x-should-retry: true``); ``"open"`` serves it with this
process's own health and limits, logging a warning once per outage. Conversations never
fall open: a turn that cannot be stored is an error. Once Redis answers again, the next
request uses it (the client reconnects; no restart).

The ``redis`` client library is imported only when a Redis URL is used
(``pip install 'llmplex[redis]'``).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from ..errors import InvalidRequestError, StateBackendError

if TYPE_CHECKING:  # pragma: no cover
    from ..conversations.base import ConversationStore
    from .health import SharedHealth
    from .limits import Limiter

__all__ = [
    "ON_ERROR",
    "SCHEMES",
    "EmbeddedState",
    "StateBackend",
    "StateBackendError",
    "from_url",
    "redact_url",
]

log = logging.getLogger("llmplex.state")

#: URL schemes of the Redis backend
SCHEMES = ("redis", "rediss", "unix")
#: what to do when the backend cannot be reached
ON_ERROR = ("closed", "open")

T = TypeVar("T")


def redact_url(url: str) -> str:
    """``url`` with its password (and a user name's secret part) replaced by ``***``;
    a ``?password=`` query value too."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unreadable URL)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
        if not user:
            netloc = f":***@{host}"
    query = "&".join(
        f"{k}=***" if k.lower() == "password" else (f"{k}={v}" if sep else k)
        for k, sep, v in (item.partition("=") for item in parts.query.split("&") if item)
    )
    # by hand: urlunsplit drops the "//" of an empty host (unix:///path)
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


class StateBackend(abc.ABC):
    """A state backend: shared health, the conversation store, and the rate limiter.

    ``health`` is None for the embedded backend (the router's own health is the state);
    ``store`` is None there too (the caller's store, SQLite by default, is used)."""

    on_error: str = "closed"
    health: SharedHealth | None = None
    store: ConversationStore | None = None

    @property
    @abc.abstractmethod
    def limiter(self) -> Limiter:
        """The rate limiter keys are counted with."""

    @property
    def shared(self) -> bool:
        """Whether the state is shared with other processes."""
        return self.health is not None

    async def aclose(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections."""


class EmbeddedState(StateBackend):
    """This process's own state: the default when no URL is set."""

    def __init__(self) -> None:
        from .limits import LocalLimiter

        self._limiter = LocalLimiter()

    @property
    def limiter(self) -> Limiter:
        return self._limiter

    def __repr__(self) -> str:
        return "EmbeddedState()"


class Fallback:
    """The ``on_error`` policy around backend calls: run one, and when the backend is
    unreachable raise (closed) or run the local stand-in (open), warning once per
    outage and once when the backend is back."""

    def __init__(self, on_error: str, where: str) -> None:
        self.on_error = on_error
        self.where = where  # the redacted URL
        self.down = False

    async def call(
        self,
        what: str,
        remote: Callable[[], Awaitable[T]],
        local: Callable[[], Awaitable[T]] | None,
    ) -> T:
        try:
            result = await remote()
        except StateBackendError as exc:
            if self.on_error != "open" or local is None:
                raise
            if not self.down:
                self.down = True
                log.warning(
                    "%s; serving %s from this process's own state until it is back "
                    '([state] on_error = "open")',
                    exc,
                    what,
                )
            return await local()
        if self.down:
            self.down = False
            log.warning("state backend %s is reachable again", self.where)
        return result


def from_url(
    url: str | None, *, on_error: str = "closed", prefix: str = "llmplex:", timeout: float = 5.0
) -> StateBackend:
    """The backend for ``url``: None or ``""`` embedded; ``redis://``, ``rediss://``,
    ``unix://`` Redis (needs the ``redis`` extra). ``on_error``: ``"closed"`` or
    ``"open"`` (see the module docstring). ``prefix``: of every Redis key (instances
    sharing state use the same). ``timeout``: seconds a Redis connection or command may
    take before it counts as unreachable."""
    if on_error not in ON_ERROR:
        raise InvalidRequestError(
            f"state on_error must be 'closed' or 'open', not {on_error!r}", param="on_error"
        )
    if not url:
        backend: StateBackend = EmbeddedState()
        backend.on_error = on_error
        return backend
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise InvalidRequestError(
            f"state URL {redact_url(url)!r}: the scheme must be one of "
            f"{', '.join(s + '://' for s in SCHEMES)} (or no URL for embedded state)",
            param="state_url",
        )
    try:
        from .redis import RedisState
    except ImportError as exc:
        raise InvalidRequestError(
            f"a {scheme}:// state URL needs the redis client library ({exc.name} is "
            "missing): pip install 'llmplex[redis]'",
            param="state_url",
        ) from None
    return RedisState(url, on_error=on_error, prefix=prefix, timeout=timeout)
