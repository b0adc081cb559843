"""Conversations in Redis, shared by every process that uses the same Redis and prefix.

One conversation is three keys: ``<prefix>conv:<id>`` (a hash: model, provider,
metadata, created, updated), ``<prefix>conv:<id>:messages`` (a list, a JSON message per
item) and ``<prefix>conv:<id>:state`` (a hash: provider -> its continuation state and the
number of turns it covers); ``<prefix>conversations`` (a sorted set by update time)
lists them. Stored Responses of ``/v1/responses`` are conversations too.

A turn is appended by one Lua script: the messages are pushed onto the list (never a
read-modify-write of the history), the provider's state is kept only if the history had
the expected length, and the whole record comes back from the same atomic step. So
several writers, on any number of machines, never lose a turn, and a turn is in Redis
before the client hears the answer ended.

Build it through :func:`llmplex.state.from_url` (``state.store``), or directly from a
``redis.Redis`` client: ``RedisStore(redis.Redis.from_url(url))``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from redis.exceptions import RedisError

from .base import Conversation, ConversationNotFoundError, ConversationStore

__all__ = ["RedisStore"]

T = TypeVar("T")

# KEYS: meta, messages, state, index. ARGV: now, id, provider, model, state JSON ("" for
# none), expected turns (-1: any), then the messages. Returns {turns before (-1: no such
# conversation), meta (flat), messages, state (flat)}.
_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local turns = redis.call('LLEN', KEYS[2])
local added = #ARGV - 6
if added > 0 then redis.call('RPUSH', KEYS[2], unpack(ARGV, 7, #ARGV)) end
local expected = tonumber(ARGV[6])
if ARGV[3] ~= '' and ARGV[5] ~= '' and (expected < 0 or expected == turns) then
  redis.call('HSET', KEYS[3], ARGV[3],
             '{"turns": ' .. (turns + added) .. ', "state": ' .. ARGV[5] .. '}')
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'provider', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'model', ARGV[4]) end
redis.call('HSET', KEYS[1], 'updated', ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[2])
return {turns, redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1),
        redis.call('HGETALL', KEYS[3])}
"""


class RedisStore(ConversationStore):
    """Conversations in Redis (see the module docstring). ``client``: a blocking
    ``redis.Redis``; ``prefix``: of every key; ``where``: how errors name the backend
    (a URL without password); ``secret``: a string never to show in an error."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "llmplex:",
        where: str = "Redis",
        secret: str | None = None,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._where = where
        self._secret = secret
        self._append = client.register_script(_APPEND)

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self._prefix!r})"

    def _keys(self, conversation_id: str) -> list[str]:
        base = f"{self._prefix}conv:{conversation_id}"
        return [base, base + ":messages", base + ":state", f"{self._prefix}conversations"]

    def _do(self, work: Callable[[], T]) -> T:
        try:
            return work()
        except (RedisError, OSError) as exc:
            from ..state.redis import backend_error

            raise backend_error(self._where, self._secret, exc) from None

    def create(
        self,
        *,
        model: str | None = None,
        messages: Sequence[Mapping[str, Any]] = (),
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> Conversation:
        conversation = Conversation.new(model=model, messages=messages, metadata=metadata, id=id)
        meta, listed, _, index = self._keys(conversation.id)

        def write() -> None:
            pipe = self._redis.pipeline(transaction=True)  # MULTI: all of it or nothing
            pipe.delete(meta, listed, self._keys(conversation.id)[2])
            pipe.hset(
                meta,
                mapping={
                    "model": model or "",
                    "provider": "",
                    "metadata": json.dumps(conversation.metadata),
                    "created": repr(conversation.created),
                    "updated": repr(conversation.updated),
                },
            )
            if conversation.messages:
                pipe.rpush(listed, *(json.dumps(m) for m in conversation.messages))
            pipe.zadd(index, {conversation.id: conversation.updated})
            pipe.execute()

        self._do(write)
        return conversation

    def get(self, conversation_id: str) -> Conversation:
        meta, listed, states, _ = self._keys(conversation_id)

        def read() -> list[Any]:
            pipe = self._redis.pipeline(transaction=True)  # one consistent snapshot
            pipe.hgetall(meta)
            pipe.lrange(listed, 0, -1)
            pipe.hgetall(states)
            return list(pipe.execute())

        fields, messages, state = self._do(read)
        if not fields:
            raise ConversationNotFoundError(f"conversation {conversation_id!r} not found")
        return _record(conversation_id, fields, messages, state)

    def append(
        self,
        conversation_id: str,
        messages: Sequence[dict[str, Any]],
        *,
        provider: str | None = None,
        model: str | None = None,
        state: dict[str, Any] | None = None,
        expected_turns: int | None = None,
    ) -> Conversation:
        args = [
            repr(time.time()),
            conversation_id,
            provider or "",
            model or "",
            json.dumps(state) if state is not None and provider else "",
            -1 if expected_turns is None else int(expected_turns),
            *(json.dumps(dict(m)) for m in messages),
        ]
        result = self._do(lambda: self._append(keys=self._keys(conversation_id), args=args))
        if int(result[0]) < 0:
            raise ConversationNotFoundError(f"conversation {conversation_id!r} not found")
        return _record(conversation_id, _pairs(result[1]), result[2], _pairs(result[3]))

    def delete(self, conversation_id: str) -> None:
        meta, listed, states, index = self._keys(conversation_id)

        def remove() -> None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(meta, listed, states)
            pipe.zrem(index, conversation_id)
            pipe.execute()

        self._do(remove)

    def list(self, limit: int = 50) -> list[Conversation]:
        index = f"{self._prefix}conversations"
        ids = self._do(lambda: self._redis.zrevrange(index, 0, max(0, limit - 1)))
        found = []
        for raw in ids:
            try:
                found.append(self.get(_text(raw)))
            except ConversationNotFoundError:  # deleted in between
                continue
        return found

    def close(self) -> None:
        self._redis.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _record(
    conversation_id: str, fields: dict[Any, Any], messages: Sequence[Any], state: dict[Any, Any]
) -> Conversation:
    meta = {_text(k): _text(v) for k, v in fields.items()}
    return Conversation(
        id=conversation_id,
        model=meta.get("model") or None,
        provider=meta.get("provider") or None,
        messages=[json.loads(m) for m in messages],
        provider_state={_text(k): json.loads(v) for k, v in state.items()},
        metadata=json.loads(meta.get("metadata") or "{}"),
        created=float(meta.get("created") or 0),
        updated=float(meta.get("updated") or 0),
    )
