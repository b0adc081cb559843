"""Provider health shared through Redis: cooldowns and consecutive failures.

The router keeps its local :class:`~llmplex.routing.ProviderHealth` per provider and reads
it for every decision, as when the state is embedded. With a shared backend it also:

- before choosing among several routes, reads the shared cooldowns of those providers
  (one small Redis script per request decision, never per chunk) and adopts them;
- after a failure that cools a provider down, writes the cooldown there (an atomic
  script: the later end of the two cooldowns wins, the failure count goes up by one), so
  one instance's 429 with ``Retry-After`` cools the provider down for all;
- after a success of a provider it knew to be failing, clears it there.

Times cross machines as wall-clock seconds (the router's own clock is monotonic).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..errors import LLMplexError

__all__ = ["SharedFailure", "SharedHealth"]

#: the longest error text kept in Redis for a provider
MAX_ERROR_TEXT = 300


class SharedFailure(LLMplexError):
    """A provider's last failure, as another instance recorded it (its text only)."""


# KEYS: one hash per provider. Returns {until, fails, error} per key (strings).
_PULL = """
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'until', 'fails', 'error')
  out[#out + 1] = v[1] or '0'
  out[#out + 1] = v[2] or '0'
  out[#out + 1] = v[3] or ''
end
return out
"""

# KEYS[1]: the provider's hash; ARGV[1]: until (wall clock), ARGV[2]: error text,
# ARGV[3]: seconds to keep the hash after the cooldown ends
_FAILED = """
local old = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
local new = tonumber(ARGV[1])
if new > old then redis.call('HSET', KEYS[1], 'until', ARGV[1]) else new = old end
local fails = redis.call('HINCRBY', KEYS[1], 'fails', 1)
redis.call('HSET', KEYS[1], 'error', ARGV[2])
local t = redis.call('TIME')
local ttl = math.ceil(new - tonumber(t[1])) + tonumber(ARGV[3])
if ttl < 1 then ttl = tonumber(ARGV[3]) end
redis.call('EXPIRE', KEYS[1], ttl)
return fails
"""

_SUCCEEDED = """
redis.call('DEL', KEYS[1])
return 1
"""

#: seconds a provider's failure count outlives its cooldown (so doubling still works)
KEEP_AFTER = 600


class SharedHealth:
    """Health of providers shared through Redis (see the module docstring).

    ``run(what, script, keys, args)`` runs a Lua script under the backend's error policy;
    it returns None when the backend is unreachable and the policy is "open" (the router
    then goes on with its local health)."""

    def __init__(self, run: Any, prefix: str) -> None:
        self._run = run
        self._prefix = prefix

    def _key(self, name: str) -> str:
        return f"{self._prefix}health:{name}"

    async def pull(self, router: Any, names: Sequence[str]) -> None:
        """Adopt the shared health of ``names`` into ``router.health``."""
        names = list(dict.fromkeys(names))
        values = await self._run("provider health", _PULL, [self._key(n) for n in names], [])
        if values is None:
            return
        from ..routing import ProviderHealth

        wall, now = time.time(), router.clock()
        for index, name in enumerate(names):
            until, fails, error = (_text(v) for v in values[3 * index : 3 * index + 3])
            health = router.health.get(name)
            if health is None:
                health = router.health[name] = ProviderHealth()
            left = float(until) - wall
            health.cooldown_until = now + left if left > 0 else 0.0
            health.consecutive_failures = int(fails)
            if (
                left > 0
                and error
                and (health.last_error is None or _describe(health.last_error) != error)
            ):
                health.last_error = SharedFailure(f"{error} (on another instance)")

    async def failed(self, router: Any, name: str) -> None:
        """Share the cooldown ``router`` just gave ``name`` after a failure."""
        health = router.health.get(name)
        if health is None:
            return
        left = health.cooldown_until - router.clock()
        until = time.time() + max(0.0, left)
        error = _describe(health.last_error)[:MAX_ERROR_TEXT] if health.last_error else ""
        await self._run(
            "provider health", _FAILED, [self._key(name)], [repr(until), error, KEEP_AFTER]
        )

    async def succeeded(self, name: str) -> None:
        """Share that ``name`` answered: its cooldown and failure count are cleared."""
        await self._run("provider health", _SUCCEEDED, [self._key(name)], [])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _describe(error: BaseException) -> str:
    if isinstance(error, SharedFailure):
        return str(error).removesuffix(" (on another instance)")
    return f"{type(error).__name__}: {error}"
