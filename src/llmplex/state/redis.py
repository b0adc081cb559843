"""The Redis state backend (also Valkey): health, conversations and limits in one Redis.

Two clients share the URL: an asyncio one (``redis.asyncio``) for the health and limit
scripts on the server's event loop, and a blocking one for the conversation store, whose
methods run in worker threads (:class:`~llmplex.conversations.base.ConversationStore`).
Both reconnect on their own when Redis comes back; nothing here is retried (a request
waits at most ``timeout`` for an unreachable Redis, then the ``on_error`` policy applies).
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from . import Fallback, StateBackend, StateBackendError, redact_url
from .health import SharedHealth
from .limits import Limiter, LocalLimiter, RedisLimiter

__all__ = ["RedisState", "backend_error"]


def backend_error(where: str, secret: str | None, exc: BaseException) -> StateBackendError:
    """A :class:`StateBackendError` for ``exc``, naming the backend by ``where`` (the
    redacted URL) and never showing ``secret`` (the URL's password)."""
    detail = f"{type(exc).__name__}: {exc}"
    if secret:
        detail = detail.replace(secret, "***")
    return StateBackendError(f"state backend {where} is unreachable or failed ({detail})")


def _password(url: str) -> str | None:
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    if parts.password:
        return unquote(parts.password)
    values = parse_qs(parts.query).get("password")
    return values[0] if values else None


class RedisState(StateBackend):
    """State in the Redis at ``url`` (see :func:`llmplex.state.from_url`)."""

    def __init__(
        self, url: str, *, on_error: str = "closed", prefix: str = "llmplex:", timeout: float = 5.0
    ) -> None:
        self.on_error = on_error
        self.where = redact_url(url)
        self.prefix = prefix
        self._secret = _password(url)
        options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        # One immediate retry: a pooled connection Redis closed (it restarted) fails
        # once, then a new one is made. No backoff: an outage is the policy's to answer.
        try:
            self._async = aioredis.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 1), **options)
            self._sync = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **options)
        except (ValueError, RedisError) as exc:  # a malformed URL
            raise backend_error(self.where, self._secret, exc) from None
        self._fallback = Fallback(on_error, self.where)
        self._local = LocalLimiter()
        self._remote = RedisLimiter(self._script, prefix)
        self._limiter = _GuardedLimiter(self)
        self.health = SharedHealth(self._guarded, prefix)
        from ..conversations.redis import RedisStore

        self.store = RedisStore(self._sync, prefix=prefix, where=self.where, secret=self._secret)

    def __repr__(self) -> str:
        return f"RedisState({self.where!r}, on_error={self.on_error!r})"

    @property
    def limiter(self) -> Limiter:
        return self._limiter

    async def _script(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by its hash, loading it once per Redis (EVALSHA, then EVAL
        when Redis does not know it: after a restart too)."""
        sha = _SHAS.get(script)
        if sha is None:
            sha = _SHAS[script] = hashlib.sha1(script.encode()).hexdigest()
        try:
            try:
                return await self._async.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                return await self._async.eval(script, len(keys), *keys, *args)
        except (RedisError, OSError) as exc:
            raise backend_error(self.where, self._secret, exc) from None

    async def _guarded(self, what: str, script: str, keys: list[str], args: list[Any]) -> Any:
        async def nothing() -> Any:
            return None

        return await self._fallback.call(what, lambda: self._script(script, keys, args), nothing)

    async def ping(self) -> None:
        """Check that Redis answers (:class:`StateBackendError` if not)."""
        try:
            await self._async.ping()
        except (RedisError, OSError) as exc:
            raise backend_error(self.where, self._secret, exc) from None

    async def aclose(self) -> None:
        await self._async.aclose()
        self._sync.close()


#: Lua script -> its SHA1 (what EVALSHA takes)
_SHAS: dict[str, str] = {}


class _GuardedLimiter(Limiter):
    """The Redis limiter under the error policy: the local one stands in when "open"."""

    def __init__(self, state: RedisState) -> None:
        self._state = state

    async def admit(self, name: str, rpm: int | None, tpm: int | None) -> Any:
        state = self._state
        return await state._fallback.call(
            "rate limits",
            lambda: state._remote.admit(name, rpm, tpm),
            lambda: state._local.admit(name, rpm, tpm),
        )

    async def spend(self, name: str, tokens: int) -> None:
        state = self._state
        await state._fallback.call(
            "rate limits",
            lambda: state._remote.spend(name, tokens),
            lambda: state._local.spend(name, tokens),
        )
