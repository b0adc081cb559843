"""OpenAI's Responses API: ``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``.

A request is translated onto ``chat.completions.create`` (:mod:`.responses_input`), so
any provider serves it — text-only ones with tools and JSON output emulated through the
prompt (:mod:`llmplex.emulation`) — and the answer is given in the Responses shape, whole
or as the Responses event stream (:mod:`.responses_output`). Errors, the API keys,
cancellation when the client leaves, back-pressure and the upstream's cleanup are those of
``/v1/chat/completions`` (the same :class:`~llmplex.server.streaming.Pump` and
:class:`~llmplex.server.streaming.EventStream`).

Stored responses (``store``, true by default, as OpenAI's): a completed or incomplete
response is saved in the client's conversation store (:mod:`llmplex.conversations`)
under its ``resp_`` id, with the conversation so far as messages (without the
``instructions``, which apply to one response only), so ``previous_response_id``
continues it, ``GET /v1/responses/{id}`` returns it and ``GET
/v1/responses/{id}/input_items`` lists its input. A response that failed or whose client
left is not stored. (There is no expiry: ``DELETE /v1/responses/{id}`` removes one.)
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from ..conversations.base import ConversationNotFoundError
from .errors import APIError, check_provider_list, error_for
from .handlers import log_error
from .responses_input import chat_arguments, input_items, input_messages
from .responses_output import Event, ResponseWriter, new_response_id
from .schemas import UPSTREAM_FIELDS
from .streaming import ClientGone, EventStream, Pump, disconnected, started, unless_gone

if TYPE_CHECKING:  # pragma: no cover
    from ..client import AsyncClient

__all__ = ["ResponseRequest", "install_responses"]

log = logging.getLogger("llmplex.server")

#: OpenAI fields with no Chat Completions counterpart: refused by name
REFUSED_FIELDS = frozenset(
    {
        "conversation",
        "prompt",
        "max_tool_calls",
        "top_logprobs",
        "prompt_cache_retention",
        "prompt_cache_options",
        "context_management",
    }
)
#: the metadata OpenAI takes: 16 pairs, keys up to 64 characters, values up to 512
_METADATA = (16, 64, 512)
#: where the conversation store's metadata keeps a stored response, and its input items
_KIND = "llmplex.response"
_INPUT = "llmplex.input_items"


class ResponseRequest(BaseModel):
    """``POST /v1/responses``: OpenAI's fields (honoured, or refused naming the field) plus
    llmplex's ``provider`` and ``emulate``."""

    model_config = ConfigDict(
        strict=True,
        extra="allow",
        json_schema_extra={
            "examples": [{"model": "gpt-4o-mini", "input": "Say hello", "stream": False}]
        },
    )

    model: StrictStr | None = Field(
        None, description="A model name or alias, or 'provider:model'. Empty: the default."
    )
    input: StrictStr | list[dict[str, Any]] | None = None
    instructions: StrictStr | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    metadata: dict[str, StrictStr] | None = None
    store: StrictBool | None = None
    previous_response_id: StrictStr | None = None
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    include: list[StrictStr] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    background: StrictBool | None = None
    user: StrictStr | None = None
    safety_identifier: StrictStr | None = None
    prompt_cache_key: StrictStr | None = None
    service_tier: StrictStr | None = None
    provider: StrictStr | Annotated[list[StrictStr], Field(min_length=1)] | None = Field(
        None, description="llmplex: a provider name, or a list tried in order."
    )
    emulate: StrictBool | None = Field(
        None,
        description="llmplex: allow (true) or refuse (false) tool calls and JSON output "
        "emulated through the prompt on providers without them; unset: the server's setting.",
    )


def _unsupported(what: str, param: str) -> APIError:
    return APIError(
        400,
        f"{what} is not supported by llmplex's Responses API.",
        code="unsupported_parameter",
        param=param,
    )


def _check(body: ResponseRequest, max_providers: int) -> None:
    """The 400s for fields that are valid but cannot be honoured."""
    for name in body.model_extra or {}:
        if name in REFUSED_FIELDS:
            raise _unsupported(f"'{name}'", name)
        if name in UPSTREAM_FIELDS:
            raise APIError(
                400,
                f"'{name}' cannot be set by clients on /v1/responses.",
                code="upstream_override_forbidden",
                param=name,
            )
        near = difflib.get_close_matches(name, list(ResponseRequest.model_fields), n=1, cutoff=0.8)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise APIError(
            400,
            f"Unrecognized request argument supplied: {name}{hint}",
            code="unknown_parameter",
            param=name,
        )
    if body.include:
        raise _unsupported(f"include {body.include[0]!r}", "include")
    if body.truncation == "auto":
        raise _unsupported("truncation 'auto' (llmplex never truncates the input)", "truncation")
    if body.background:
        raise _unsupported("background mode", "background")
    if body.stream_options is not None:
        if not body.stream:
            raise APIError(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                code="invalid_value",
                param="stream_options",
            )
        unknown = set(body.stream_options) - {"include_obfuscation"}
        if unknown or body.stream_options.get("include_obfuscation"):
            name = min(unknown) if unknown else "include_obfuscation"
            raise _unsupported(f"stream_options.{name}", f"stream_options.{name}")
    metadata = body.metadata or {}
    pairs, key_length, value_length = _METADATA
    if len(metadata) > pairs or any(
        len(k) > key_length or len(v) > value_length for k, v in metadata.items()
    ):
        raise APIError(
            400,
            f"Invalid 'metadata': at most {pairs} pairs, keys of at most "
            f"{key_length} characters, values of at most {value_length}.",
            code="invalid_value",
            param="metadata",
        )
    check_provider_list(body.provider, max_providers)


def _skeleton(body: ResponseRequest, response_id: str) -> dict[str, Any]:
    """The response before the answer: the request's settings, echoed."""
    text: dict[str, Any] = {"format": (body.text or {}).get("format") or {"type": "text"}}
    if (body.text or {}).get("verbosity") is not None:
        text["verbosity"] = body.text["verbosity"]  # type: ignore[index]
    reasoning = body.reasoning or {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": None,
        "model": body.model or "",
        "output": [],
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "service_tier": body.service_tier,
        "store": body.store is not False,
        "temperature": body.temperature,
        "text": text,
        "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
        "tools": body.tools or [],
        "top_p": body.top_p,
        "truncation": "disabled",
        "usage": None,
        "user": body.user,
        "safety_identifier": body.safety_identifier,
        "prompt_cache_key": body.prompt_cache_key,
        "metadata": dict(body.metadata or {}),
    }


def _render(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        b"event: "
        + event["type"].encode()
        + b"\ndata: "
        + json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        + b"\n\n"
        for event in events
    )


class _ResponsesStream(EventStream):
    """The SSE response of a streamed response: its chunks are lists of events; it ends
    without ``[DONE]`` (the Responses API sends none)."""

    def __init__(
        self,
        first: tuple[str, Any],
        pump: Pump,
        watcher: asyncio.Future[None],
        stall_timeout: float,
        writer: ResponseWriter,
    ) -> None:
        super().__init__(first, pump, watcher, False, stall_timeout)
        self.writer = writer

    def _render(self, chunk: list[dict[str, Any]]) -> bytes:  # type: ignore[override]
        return _render(chunk)

    def _end(self) -> bytes:
        return b""

    def _error(self, exc: BaseException) -> bytes:
        # Upstream failures became response.failed; this is a failure of llmplex itself
        # (storing the response, say): OpenAI's error event.
        error = error_for(exc)
        log_error(error, exc, streaming=True)
        return _render([self.writer.error(error)])


class _Turn:
    """One response: the chat call, its events, and what is stored at its end."""

    def __init__(
        self,
        client: AsyncClient,
        arguments: dict[str, Any],
        writer: ResponseWriter,
        history: list[dict[str, Any]],
        new: list[dict[str, Any]],
        store: bool,
        given: Any,
    ) -> None:
        self.client = client
        self.given = given  # the request's input, for GET .../input_items
        self.arguments = arguments
        self.writer = writer
        self.history = [*history, *new]
        self.store = store
        #: wraps the chat call's opening (the key ring's usage meter); identity by default
        self.meter: Callable[[Awaitable[Any]], Awaitable[Any]] = lambda opening: opening

    async def events(self, streamed: bool) -> AsyncGenerator[list[Event], None]:
        """The events (see :mod:`.responses_output`), a list per chat chunk. An error
        before the first chunk is raised (the request gets its status); a later one is a
        ``response.failed`` event when ``streamed``, else raised too."""
        writer = self.writer
        stream = await self.meter(
            self.client.chat.completions.create(**self.arguments, stream=True)
        )
        async with aclosing(stream) as chunks:
            iterator = aiter(chunks)
            first = await anext(iterator, None)
            opening = writer.opening()
            if first is not None:
                opening += writer.chunk(first)
            yield opening
            try:
                async for chunk in iterator:
                    events = writer.chunk(chunk)
                    if events:
                        yield events
            except Exception as exc:
                if not streamed:
                    raise
                error = error_for(exc)
                log_error(error, exc, streaming=True)
                yield writer.failed(error)
                return
        yield writer.closing()
        # Stored before the client hears of the end, so a GET right after finds it.
        await self._save()
        yield [writer.completed()]

    async def complete(self) -> dict[str, Any]:
        async with aclosing(self.events(streamed=False)) as events:
            async for _ in events:
                pass
        return self.writer.response

    async def _save(self) -> None:
        if not self.store:
            return
        response = self.writer.response
        reply = input_messages(
            [item for item in response["output"] if item["type"] in ("message", "function_call")]
        )
        await asyncio.to_thread(
            self.client.store.create,
            id=response["id"],
            model=response["model"],
            messages=[*self.history, *reply],
            metadata={_KIND: response, _INPUT: input_items(self.given)},
        )


async def _stored(client: AsyncClient, response_id: str, param: str | None) -> Any:
    """The stored conversation of a response (404 if there is none)."""
    try:
        record = await asyncio.to_thread(client.store.get, response_id)
    except ConversationNotFoundError:
        record = None
    if record is None or _KIND not in record.metadata:
        if param == "previous_response_id":
            raise APIError(
                404,
                f"Previous response with id '{response_id}' not found.",
                code="previous_response_not_found",
                param=param,
            )
        raise APIError(
            404,
            f"Response with id '{response_id}' not found.",
            code="response_not_found",
            param=param,
        )
    return record


def install_responses(
    router: APIRouter,
    client: AsyncClient,
    *,
    stall_timeout: float,
    max_providers: int,
    responses: dict[int | str, Any],
    keys: Any = None,
) -> Callable[[ResponseRequest, Request], Awaitable[Any]]:
    """Add the ``/responses`` routes to ``router`` (the ``/v1`` one, with its auth);
    ``keys``: the server's :class:`~llmplex.server.keys.KeyRing` (model, limits).
    Returns the ``POST /responses`` endpoint, for the app's fast route
    (:mod:`llmplex.server.fastpath`) and front (:mod:`llmplex.server.front`)."""
    from .keys import KeyRing

    ring = keys if keys is not None else KeyRing()

    @router.post("/responses", tags=["responses"], responses=responses)
    async def create_response(body: ResponseRequest, request: Request) -> Any:
        """Create a model response (OpenAI's Responses API); with ``"stream": true`` the
        Responses event stream. llmplex extras: ``provider`` and ``emulate``."""
        _check(body, max_providers)
        caller = await ring.admit(request.headers, body.model, provider=body.provider)
        history: list[dict[str, Any]] = []
        if body.previous_response_id:
            previous = await _stored(client, body.previous_response_id, "previous_response_id")
            history = previous.messages
        arguments, new = chat_arguments(body, history)
        writer = ResponseWriter(_skeleton(body, new_response_id()))
        turn = _Turn(client, arguments, writer, history, new, body.store is not False, body.input)
        turn.meter = functools.partial(ring.metered, caller)
        watcher = asyncio.ensure_future(disconnected(request.receive))
        owned = True  # the watcher is cancelled here, unless a stream took it over
        try:
            if not body.stream:
                return JSONResponse(await unless_gone(watcher, turn.complete()))
            pump = Pump(_opened(turn.events(streamed=True)))
            first = await started(watcher, pump)
            owned = False  # the stream owns it now
            return _ResponsesStream(first, pump, watcher, stall_timeout, writer)
        except ClientGone:
            log.info("client went away before the answer started; upstream request cancelled")
            return Response(status_code=499)
        finally:
            if owned:
                watcher.cancel()

    @router.get("/responses/{response_id}", tags=["responses"], responses=responses)
    async def get_response(response_id: str) -> Any:
        """A stored response (404 for one not stored, or still running)."""
        record = await _stored(client, response_id, None)
        return JSONResponse(record.metadata[_KIND])

    @router.get("/responses/{response_id}/input_items", tags=["responses"], responses=responses)
    async def list_input_items(
        response_id: str,
        after: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        order: Literal["asc", "desc"] = "desc",
        include: Annotated[list[str] | None, Query()] = None,
    ) -> Any:
        """The input items of a stored response (this response's own ``input``), newest
        first unless ``order=asc``; ``after`` an item id, ``limit`` 1 to 100."""
        if include:
            raise _unsupported(f"include {include[0]!r}", "include")
        record = await _stored(client, response_id, None)
        items = list(record.metadata.get(_INPUT) or ())
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise APIError(
                    404, f"Item with id '{after}' not found.", param="after", code="item_not_found"
                )
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }

    @router.delete("/responses/{response_id}", tags=["responses"], responses=responses)
    async def delete_response(response_id: str) -> dict[str, Any]:
        """Delete a stored response."""
        await _stored(client, response_id, None)
        await asyncio.to_thread(client.store.delete, response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    return create_response


async def _opened(events: AsyncIterator[list[Event]]) -> AsyncIterator[list[Event]]:
    """What :class:`Pump` opens: the event iterator (created lazily, in the pump's task)."""
    return events
