"""``Client`` and ``AsyncClient``: every provider behind the OpenAI SDK's shape.

>>> client = AsyncClient()
>>> answer = await client.chat.completions.create(model="llama-3.1-405b", messages="Hi")
>>> answer.choices[0].message.content
>>> async for chunk in await client.chat.completions.create(model=..., messages=..., stream=True):
...     print(chunk.choices[0].delta.content or "", end="")

Model names are resolved by the :class:`~llmplex.routing.Router` (``"provider:model"``,
``provider=``, or a bare name with fallback across providers). ``conversation=`` keeps a
multi-turn exchange in a :mod:`conversation store <llmplex.conversations>`.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing, nullcontext
from typing import TYPE_CHECKING, Any

from .conversations.base import Conversation, ConversationStore
from .errors import InvalidRequestError
from .limits import OutputLimiter, estimate_tokens
from .objects import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    CompletionUsage,
    Model,
    ModelList,
)
from .prompt import filter_none, validate_messages
from .routing import Route, Router
from .types import FinishReason, JsonConversation, Usage

if TYPE_CHECKING:  # pragma: no cover
    from .http.pool import ConnectionPool

__all__ = ["AsyncClient", "Client"]


class AsyncClient:
    """The async client.

    ``provider_options`` gives per-provider defaults, keyed by provider name, e.g.
    ``{"Replicate": {"api_key": "..."}, "AllenAI": {"base_url": "http://127.0.0.1:8001"}}``.
    ``store`` is a :class:`ConversationStore` or a SQLite file path (default: the SQLite
    file in the user's data directory, opened on first use). ``proxy`` and ``timeout``
    apply to every request unless a call overrides them.
    """

    def __init__(
        self,
        *,
        router: Router | None = None,
        store: ConversationStore | str | None = None,
        provider_options: Mapping[str, Mapping[str, Any]] | None = None,
        proxy: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.router = router or Router()
        self._store = store
        self.provider_options = {k.lower(): dict(v) for k, v in (provider_options or {}).items()}
        self.proxy = proxy
        self.timeout = timeout
        self._pool: ConnectionPool | None = None  # keep-alive connections, when kept
        self.chat = _AsyncChat(self)
        self.models = _AsyncModels(self)
        self.conversations = _AsyncConversations(self)

    def __repr__(self) -> str:  # provider_options may hold keys: never shown
        return f"AsyncClient(providers={sorted(self.provider_options)!r})"

    async def __aenter__(self) -> AsyncClient:
        """``async with AsyncClient() as client:`` keeps connections alive between the
        client's calls inside the block (one pool, closed on exit): less CPU and latency
        per call. Without the block, every call opens and closes its own connection."""
        from .http.pool import ConnectionPool

        if self._pool is None or self._pool.closed:
            self._pool = ConnectionPool()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the kept-alive connections; later calls open their own again."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def store(self) -> ConversationStore:
        if not isinstance(self._store, ConversationStore):
            from .conversations.sqlite import SQLiteStore

            self._store = SQLiteStore(self._store)
        return self._store

    def _provider_kwargs(self, route: Route, options: dict[str, Any]) -> dict[str, Any]:
        kwargs = dict(self.provider_options.get(route.name.lower(), ()))
        kwargs.update(options)
        return kwargs


class _AsyncChat:
    def __init__(self, client: AsyncClient) -> None:
        self.completions = _AsyncCompletions(client)


class _AsyncCompletions:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        model: str | None = None,
        messages: Any,
        stream: bool = False,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        provider: Any = None,
        proxy: str | None = None,
        timeout: float | None = None,
        conversation: Conversation | str | None = None,
        stream_options: Mapping[str, Any] | None = None,  # accepted for SDK parity
        **kwargs: Any,
    ) -> ChatCompletion | AsyncIterator[ChatCompletionChunk]:
        """Create a chat completion (``stream=False``) or a stream of chunks (``True``).

        With ``conversation=`` (a :class:`Conversation` or its id), ``messages`` holds only
        the new turn; the stored history is sent before it, and the answer is saved.
        Without ``model`` (and ``provider``), the conversation's last model is used.
        Extra keyword arguments go to the provider (e.g. ``api_key``, ``system_prompt``).
        """
        client = self._client
        new_messages = validate_messages(messages)
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise InvalidRequestError(f"max_tokens must be a positive integer, not {max_tokens!r}")
        record = None
        if conversation is not None:
            conversation_id = conversation.id if isinstance(conversation, Conversation) else str(conversation)
            record = await asyncio.to_thread(client.store.get, conversation_id)
            if not model and provider is None:
                model = record.model  # a conversation goes on with the model it used
        routes = client.router.resolve(model, provider)
        options = filter_none(
            temperature=temperature, top_p=top_p, max_tokens=max_tokens, stop=stop,
            proxy=proxy or client.proxy, timeout=timeout or client.timeout, **kwargs,
        )
        limiter = OutputLimiter(max_tokens, stop) if max_tokens or stop else None
        run = _Run(client, routes, new_messages, record, options, model or routes[0].model,
                   limiter)
        if stream:
            return run.chunks()
        return await run.complete()


class _Run:
    """One request: fallback stream, limits, usage, conversation bookkeeping."""

    def __init__(self, client: AsyncClient, routes: list[Route], new_messages: list,
                 record: Conversation | None, options: dict[str, Any], model: str,
                 limiter: OutputLimiter | None) -> None:
        self.client = client
        self.routes = routes
        self.new_messages = [dict(m) for m in new_messages]
        self.record = record
        self.history = (record.messages if record else []) + self.new_messages
        self.options = options
        self.model = model
        self.limiter = limiter if limiter is not None and limiter.active else None
        self.id = "chatcmpl-" + os.urandom(12).hex()  # as random as uuid4's hex, cheaper
        self.created = int(time.time())
        self.provider = routes[0].name
        self.text: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.state: dict[str, Any] | None = None

    def _open(self, route: Route) -> AsyncIterator[Any]:
        kwargs = self.client._provider_kwargs(route, self.options)
        conversation_class = route.provider.conversation_class
        if self.record is not None and conversation_class is not None:
            state = self.record.state_for(route.name)
            if state is not None:
                kwargs["conversation"] = conversation_class.from_dict(state)
            kwargs["return_conversation"] = True
        return route.provider.create_async_generator(route.model, self.history, **kwargs)

    async def deltas(self) -> AsyncIterator[str]:
        """Text deltas after limits; fills in provider, finish reason, usage, state."""
        limiter = self.limiter
        # The client's pool (if it keeps one) is bound around each step of the stream, the
        # steps that open connections, whichever task iterates us; not between them.
        pool = self.client._pool
        bind = nullcontext if pool is None else pool.bind
        stream = self.client.router.stream(self.routes, self._open, model=self.model)
        current = None
        try:
            while True:
                with bind():
                    try:
                        route, chunk = await stream.__anext__()
                    except StopAsyncIteration:
                        break
                if route is not current:  # changes only on fallback: not per chunk
                    current = route
                    self.provider = route.name
                if type(chunk) is str:
                    if limiter is not None:
                        chunk = limiter.feed(chunk)
                    if chunk:
                        self.text.append(chunk)
                        yield chunk
                    if limiter is not None and limiter.done:
                        break  # closing the stream cancels the upstream request
                elif isinstance(chunk, FinishReason):
                    self.finish_reason = chunk.reason
                elif isinstance(chunk, Usage):
                    self.usage = chunk
                elif isinstance(chunk, JsonConversation):
                    self.state = chunk.get_dict()
        finally:
            with bind():  # cleanup requests (a DELETE, a cancel) may reuse a connection
                await stream.aclose()
        if limiter is not None:
            tail = limiter.finish()
            if tail:
                self.text.append(tail)
                yield tail
            if limiter.reason:
                self.finish_reason = limiter.reason
        await self._save()

    def usage_object(self) -> CompletionUsage:
        text = "".join(self.text)
        if self.usage is not None and not (self.limiter and self.limiter.reason):
            u = self.usage
            return CompletionUsage(u.prompt_tokens, u.completion_tokens, u.total_tokens)
        prompt = sum(estimate_tokens(str(m.get("content") or "")) for m in self.history)
        return CompletionUsage(prompt, estimate_tokens(text), estimated=True)

    async def _save(self) -> None:
        if self.record is None:
            return
        reply = {"role": "assistant", "content": "".join(self.text)}
        self.record = await asyncio.to_thread(
            self.client.store.append, self.record.id, [*self.new_messages, reply],
            provider=self.provider, model=self.model, state=self.state,
            expected_turns=len(self.record.messages),
        )

    async def chunks(self) -> AsyncIterator[ChatCompletionChunk]:
        ident, created, model = self.id, self.created, self.model
        first = True
        # aclosing: if our consumer stops early, close the inner stream right away, so
        # the upstream request is cancelled and cleaned up now, not at garbage collection.
        async with aclosing(self.deltas()) as deltas:
            async for delta in deltas:
                yield ChatCompletionChunk(
                    ident, created, model, self.provider,
                    [ChunkChoice(ChoiceDelta(delta, "assistant" if first else None))],
                )
                first = False
        yield ChatCompletionChunk(
            ident, created, model, self.provider,
            [ChunkChoice(ChoiceDelta(), self.finish_reason or "stop")],
            usage=self.usage_object(),
            conversation_id=self.record.id if self.record else None,
        )

    async def complete(self) -> ChatCompletion:
        async with aclosing(self.deltas()) as deltas:
            async for _ in deltas:
                pass
        message = ChatCompletionMessage("assistant", "".join(self.text))
        return ChatCompletion(
            self.id, self.created, self.model, self.provider,
            [Choice(0, message, self.finish_reason or "stop")],
            self.usage_object(),
            conversation_id=self.record.id if self.record else None,
        )


class _AsyncModels:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self) -> ModelList:
        """Every model the known providers list, each with the providers serving it."""
        return ModelList([Model(m, p) for m, p in sorted(self._client.router.catalog().items())])


class _AsyncConversations:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, *, model: str | None = None, messages: Sequence[Mapping] = (),
                     metadata: dict[str, Any] | None = None) -> Conversation:
        """Start a conversation (``messages`` may seed it, e.g. with a system message)."""
        seed = validate_messages(list(messages)) if messages else []
        return await asyncio.to_thread(
            self._client.store.create, model=model, messages=seed, metadata=metadata
        )

    async def retrieve(self, conversation_id: str) -> Conversation:
        return await asyncio.to_thread(self._client.store.get, conversation_id)

    get = retrieve

    async def delete(self, conversation_id: str) -> None:
        await asyncio.to_thread(self._client.store.delete, conversation_id)

    async def list(self, limit: int = 50) -> list[Conversation]:
        return await asyncio.to_thread(self._client.store.list, limit)


# -- sync --------------------------------------------------------------------------------

class Client:
    """The synchronous client: the same API, run on llmplex's background loop, so it also
    works inside Jupyter or any running event loop. Takes :class:`AsyncClient`'s arguments.

    It keeps connections alive between calls (one pool on the background loop), closed by
    :meth:`close`, at the end of ``with Client() as client:``, when the client is garbage
    collected, or at interpreter exit.
    """

    def __init__(self, **kwargs: Any) -> None:
        from .http.pool import ConnectionPool

        self._async = AsyncClient(**kwargs)
        self._async._pool = pool = ConnectionPool()
        self.chat = _SyncChat(self._async)
        self.models = _SyncProxy(self._async.models)
        self.conversations = _SyncProxy(self._async.conversations)
        # Holds the pool, not the client: the finalizer must not keep the client alive.
        self._finalizer = weakref.finalize(self, _close_pool, pool)

    @property
    def router(self) -> Router:
        return self._async.router

    @property
    def store(self) -> ConversationStore:
        return self._async.store

    def close(self) -> None:
        """Close the kept-alive connections; later calls open their own again."""
        self._async._pool = None
        self._finalizer()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(providers={sorted(self._async.provider_options)!r})"


def _close_pool(pool: ConnectionPool) -> None:
    if pool.connector_created:  # never used: nothing on the loop to close
        from . import bridge

        bridge.finalize(pool.close())


class _SyncChat:
    def __init__(self, client: AsyncClient) -> None:
        self.completions = _SyncCompletions(client)


class _SyncCompletions:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def create(self, **kwargs: Any) -> ChatCompletion | Iterator[ChatCompletionChunk]:
        """See :meth:`_AsyncCompletions.create`; ``stream=True`` gives a sync iterator."""
        from . import bridge

        result = bridge.run(self._client.chat.completions.create(**kwargs))
        if kwargs.get("stream"):
            return bridge.iterate(lambda: result)
        return result


class _SyncProxy:
    """Runs an async namespace's coroutine methods synchronously."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            from . import bridge

            return bridge.run(method(*args, **kwargs))

        call.__doc__ = method.__doc__
        call.__name__ = name
        return call
