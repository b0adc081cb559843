"""Rate limits per API key: requests and tokens per minute, in a sliding window.

The window is the last :data:`WINDOW` seconds, counted in one-second buckets (a bounded
number per key, whatever the traffic): a request is admitted when the requests of the
window plus this one stay within ``rpm`` and the tokens of the window are under ``tpm``.
Tokens are known only once an answer ends, so they are added afterwards
(:meth:`Limiter.spend`): one answer may take a key over its ``tpm``; the next requests
are refused until enough of the window has passed.

:class:`LocalLimiter` counts in this process; :class:`RedisLimiter` in Redis, each check
one Lua script (atomic, on Redis's own clock), so every instance sees the same counts.
"""

from __future__ import annotations

import abc
import math
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["WINDOW", "Decision", "Limiter", "LocalLimiter", "RedisLimiter"]

#: seconds of the sliding window (rpm and tpm are per minute)
WINDOW = 60


@dataclass(frozen=True)
class Decision:
    """The outcome of one admission check.

    ``retry_after``: seconds until a refused request could pass. ``exceeded``:
    ``"requests"`` or ``"tokens"`` when refused. ``requests``/``tokens``: what the
    window holds (this request counted when admitted)."""

    allowed: bool
    retry_after: float = 0.0
    exceeded: str | None = None
    requests: int = 0
    tokens: int = 0


class Limiter(abc.ABC):
    """Counts requests and tokens per key name."""

    @abc.abstractmethod
    async def admit(self, name: str, rpm: int | None, tpm: int | None) -> Decision:
        """Check ``name``'s window and, when admitted, count this request."""

    @abc.abstractmethod
    async def spend(self, name: str, tokens: int) -> None:
        """Add the tokens an answer used to ``name``'s window."""


def _wait(buckets: list[tuple[int, int]], used: int, room: int, now: float) -> float:
    """Seconds until the window's count (``used``, in ``buckets`` oldest first) has gone
    down to ``room`` or less."""
    freed = 0
    for second, count in buckets:
        freed += count
        if used - freed <= room:
            return max(0.0, second + WINDOW - now)
    return float(WINDOW)


class LocalLimiter(Limiter):
    """The counts of this process (the embedded backend, and the "open" fallback)."""

    def __init__(self) -> None:
        # name -> {second: count}; pruned on every look, so at most WINDOW entries each
        self._requests: dict[str, dict[int, int]] = {}
        self._tokens: dict[str, dict[int, int]] = {}

    def _window(
        self, table: dict[str, dict[int, int]], name: str, second: int
    ) -> tuple[dict[int, int], list[tuple[int, int]], int]:
        buckets = table.setdefault(name, {})
        for old in [s for s in buckets if s <= second - WINDOW]:
            del buckets[old]
        ordered = sorted(buckets.items())
        return buckets, ordered, sum(c for _, c in ordered)

    async def admit(self, name: str, rpm: int | None, tpm: int | None) -> Decision:
        now = time.time()
        second = int(now)
        requests, rlist, rused = self._window(self._requests, name, second)
        _, tlist, tused = self._window(self._tokens, name, second)
        if tpm is not None and tused >= tpm:
            return Decision(False, _wait(tlist, tused, tpm - 1, now), "tokens", rused, tused)
        if rpm is not None and rused + 1 > rpm:
            return Decision(False, _wait(rlist, rused, rpm - 1, now), "requests", rused, tused)
        if rpm is not None:
            requests[second] = requests.get(second, 0) + 1
            rused += 1
        return Decision(True, 0.0, None, rused, tused)

    async def spend(self, name: str, tokens: int) -> None:
        if tokens <= 0:
            return
        second = int(time.time())
        buckets, _, _ = self._window(self._tokens, name, second)
        buckets[second] = buckets.get(second, 0) + tokens


# KEYS[1]: the request buckets (a hash second -> count), KEYS[2]: the token buckets;
# ARGV[1]: rpm (0: none), ARGV[2]: tpm (0: none), ARGV[3]: the window in seconds.
# Returns {allowed, retry_after (a string: Lua numbers become integers), exceeded,
# requests, tokens}.
_ADMIT = """
local t = redis.call('TIME')
local second = tonumber(t[1])
local now = second + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[3])
local function load(key)
  local flat = redis.call('HGETALL', key)
  local buckets, used, stale = {}, 0, {}
  for i = 1, #flat, 2 do
    local s, n = tonumber(flat[i]), tonumber(flat[i + 1])
    if s <= second - window then
      stale[#stale + 1] = flat[i]
    else
      buckets[#buckets + 1] = {s, n}
      used = used + n
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  table.sort(buckets, function(a, b) return a[1] < b[1] end)
  return buckets, used
end
local function wait(buckets, used, room)
  local freed = 0
  for _, b in ipairs(buckets) do
    freed = freed + b[2]
    if used - freed <= room then return math.max(0, b[1] + window - now) end
  end
  return window
end
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local rb, rused = load(KEYS[1])
local tb, tused = load(KEYS[2])
if tpm > 0 and tused >= tpm then
  return {0, tostring(wait(tb, tused, tpm - 1)), 'tokens', rused, tused}
end
if rpm > 0 and rused + 1 > rpm then
  return {0, tostring(wait(rb, rused, rpm - 1)), 'requests', rused, tused}
end
if rpm > 0 then
  redis.call('HINCRBY', KEYS[1], second, 1)
  redis.call('EXPIRE', KEYS[1], window + 1)
  rused = rused + 1
end
return {1, '0', '', rused, tused}
"""

# KEYS[1]: the token buckets; ARGV[1]: tokens, ARGV[2]: the window
_SPEND = """
local t = redis.call('TIME')
redis.call('HINCRBY', KEYS[1], t[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) + 1)
return 1
"""


class RedisLimiter(Limiter):
    """The counts in Redis, shared by every instance using the same Redis and prefix.
    ``run(script, keys, args)`` runs a Lua script (the backend's, with its error policy)."""

    def __init__(self, run: Any, prefix: str) -> None:
        self._run = run
        self._prefix = prefix

    def _keys(self, name: str) -> list[str]:
        return [f"{self._prefix}limit:{name}:requests", f"{self._prefix}limit:{name}:tokens"]

    async def admit(self, name: str, rpm: int | None, tpm: int | None) -> Decision:
        allowed, wait, exceeded, requests, tokens = await self._run(
            _ADMIT, self._keys(name), [rpm or 0, tpm or 0, WINDOW]
        )
        retry = float(wait.decode() if isinstance(wait, bytes) else wait)
        what = exceeded.decode() if isinstance(exceeded, bytes) else exceeded
        return Decision(
            bool(allowed),
            retry if math.isfinite(retry) else float(WINDOW),
            what or None,
            int(requests),
            int(tokens),
        )

    async def spend(self, name: str, tokens: int) -> None:
        if tokens > 0:
            await self._run(_SPEND, self._keys(name)[1:], [int(tokens), WINDOW])
