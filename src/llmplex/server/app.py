"""The OpenAI-compatible HTTP API over an :class:`~llmplex.client.AsyncClient`.

>>> app = create_app(AsyncClient(), api_keys=["my-secret"])
>>> # uvicorn.run(app, port=1337); then point any OpenAI client at http://127.0.0.1:1337/v1

Endpoints: ``POST /v1/chat/completions`` (JSON or SSE stream), ``GET /v1/models``,
``GET /v1/models/{id}``, ``GET /v1/providers``, ``POST/GET/DELETE /v1/conversations``,
``GET /health``; the OpenAPI schema at ``/openapi.json`` (docs at ``/docs``). Errors
always have OpenAI's shape (:mod:`llmplex.server.errors` has the status table).

Safety: request bodies are capped (``max_body_bytes``, 413 above); CORS headers are sent
only for ``cors_origins``; with ``api_keys`` every ``/v1`` route needs ``Authorization:
Bearer <key>``; clients cannot choose upstream URLs, proxies or credentials
(:data:`~llmplex.server.schemas.UPSTREAM_FIELDS`) unless ``allow_upstream_overrides``;
nothing here logs headers, keys or bodies.

Streams: the upstream stream runs in one task feeding a queue; the response writes the
queue as SSE. The first chunk is awaited before the response starts, so an error before
any text gets its real status; an error later becomes an SSE ``error`` event and
``[DONE]``. When the client disconnects (at any point, also while waiting for the
upstream), the upstream task is cancelled and the provider's cleanup runs before the
request ends.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Iterable, Sequence
from contextlib import aclosing
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from .. import __version__
from ..client import AsyncClient
from ..errors import LLMplexError
from ..objects import ChatCompletionChunk
from ..routing import ProviderHealth
from .errors import APIError, error_for
from .schemas import UPSTREAM_FIELDS, ChatCompletionRequest, ConversationRequest

__all__ = ["create_app", "BodyLimit", "EMULATED_NOTICE"]

log = logging.getLogger("llmplex.server")

EMULATED_NOTICE = "EMULATED: answers come from local emulators, not real services"

T = TypeVar("T")


def create_app(
    client: AsyncClient,
    *,
    api_keys: Iterable[str] = (),
    allow_upstream_overrides: bool = False,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = 1_000_000,
    emulated: bool = False,
) -> FastAPI:
    """Build the ASGI app serving ``client``.

    ``api_keys``: keys accepted as ``Authorization: Bearer <key>`` (none: no check).
    ``allow_upstream_overrides``: let request bodies set ``base_url``, ``proxy``,
    ``api_key``, ``cookies`` and ``headers`` for the upstream call (off: a 400).
    ``cors_origins``: origins allowed by CORS (``["*"]`` for any; none: no CORS headers).
    ``max_body_bytes``: the largest request body accepted. ``emulated``: the client talks
    to local emulators; said in ``/health`` and ``/v1/providers``.
    """
    keys = tuple(k.encode() for k in api_keys if k)
    app = FastAPI(
        title="llmplex",
        version=__version__,
        description="OpenAI-compatible API over many LLM chat services."
        + (f"\n\n**{EMULATED_NOTICE}**" if emulated else ""),
    )
    app.state.client = client
    app.state.emulated = emulated

    bearer = HTTPBearer(auto_error=False, description="One of the server's API keys, "
                        "when it was started with any.")

    async def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not keys:
            return
        if credentials is None or not credentials.credentials:
            raise APIError(401, "You didn't provide an API key. Send it in an Authorization "
                           "header using Bearer auth (Authorization: Bearer YOUR_KEY).",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        given = credentials.credentials.encode()
        # Compare against every key (no early exit) so timing tells nothing.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    _install_error_handlers(app)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])

    @app.get("/health", tags=["meta"])
    async def health() -> dict[str, Any]:
        """Liveness: always ``{"status": "ok"}`` while the server runs (no key needed)."""
        return {"status": "ok", "version": __version__, "emulated": emulated}

    @v1.post("/chat/completions", tags=["chat"], responses=_ERROR_RESPONSES)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        """Create a chat completion; with ``"stream": true`` an SSE stream of chunks ending
        with ``data: [DONE]``. llmplex extras: ``provider`` and ``conversation_id``."""
        kwargs = _create_arguments(body, allow_upstream_overrides)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        watcher = asyncio.ensure_future(_disconnected(request.receive))
        try:
            if not body.stream:
                completion = await _unless_gone(
                    watcher, client.chat.completions.create(**kwargs))
                return JSONResponse(_public(completion.model_dump()))
            pump = _Pump(client.chat.completions.create(**kwargs, stream=True))
            try:
                first = await _unless_gone(watcher, pump.get())
                if first[0] == "error":
                    raise first[1]
            except BaseException:
                await pump.close()
                raise
            stream = _EventStream(first, pump, watcher, include_usage)
            watcher = None  # the stream owns it now
            return stream
        except _ClientGone:
            log.info("client went away before the answer started; upstream request cancelled")
            return Response(status_code=499)
        finally:
            if watcher is not None:
                watcher.cancel()

    @v1.get("/models", tags=["models"])
    async def list_models() -> dict[str, Any]:
        """Every model a known provider lists, each with the providers serving it."""
        return (await client.models.list()).model_dump()

    @v1.get("/models/{model_id:path}", tags=["models"], responses=_ERROR_RESPONSES)
    async def get_model(model_id: str) -> dict[str, Any]:
        """One model of the list (404 ``model_not_found`` if no provider lists it)."""
        for model in await client.models.list():
            if model.id == model_id:
                return model.model_dump()
        raise APIError(404, f"The model {model_id!r} does not exist (see GET /v1/models).",
                       code="model_not_found", param="model")

    @v1.get("/providers", tags=["models"])
    async def list_providers() -> dict[str, Any]:
        """Every provider: whether it works, needs credentials, its models, its health."""
        return {"object": "list", "emulated": emulated, "data": _providers(client, emulated)}

    @v1.post("/conversations", tags=["conversations"], responses=_ERROR_RESPONSES)
    async def create_conversation(body: ConversationRequest | None = None) -> dict[str, Any]:
        """Start a stored conversation; pass its ``id`` as ``conversation_id`` to chat."""
        body = body or ConversationRequest()
        seed = [{"role": m.role, "content": m.text()} for m in body.messages]
        conversation = await client.conversations.create(
            model=body.model, messages=seed, metadata=dict(body.metadata or {}))
        return _conversation(conversation)

    @v1.get("/conversations/{conversation_id}", tags=["conversations"],
            responses=_ERROR_RESPONSES)
    async def get_conversation(conversation_id: str) -> dict[str, Any]:
        """A stored conversation with its messages."""
        return _conversation(await client.conversations.get(conversation_id))

    @v1.delete("/conversations/{conversation_id}", tags=["conversations"])
    async def delete_conversation(conversation_id: str) -> dict[str, Any]:
        """Delete a stored conversation (no error if there is none)."""
        await client.conversations.delete(conversation_id)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    app.include_router(v1)
    # Middleware: the last added is the outermost. CORS goes outside the size limit, so a
    # browser also sees its 413.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


_ERROR_BODY = {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "object", "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}}}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": _ERROR_BODY}
    for status, text in ((400, "Bad request"), (401, "Missing or wrong API key"),
                         (404, "Unknown model or conversation"), (413, "Body too large"),
                         (429, "Upstream rate limit"), (502, "Upstream failure"),
                         (504, "Upstream timeout"))
}


# -- request handling ---------------------------------------------------------------------

def _create_arguments(body: ChatCompletionRequest, allow_overrides: bool) -> dict[str, Any]:
    """``chat.completions.create`` keyword arguments for a validated body."""
    extra = body.model_extra or {}
    overrides = {k: extra[k] for k in UPSTREAM_FIELDS if extra.get(k) is not None}
    for name, value in overrides.items():
        if not allow_overrides:
            raise APIError(400, f"'{name}' cannot be set by clients of this server: the "
                           "operator has not allowed upstream overrides.",
                           code="upstream_override_forbidden", param=name)
        expected = UPSTREAM_FIELDS[name]
        if not isinstance(value, expected) or (expected is dict and not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            what = "a string" if expected is str else "an object of strings"
            raise APIError(400, f"Invalid type for '{name}': expected {what}.",
                           code="invalid_type", param=name)
    if body.stream_options is not None and not body.stream:
        raise APIError(400, "The 'stream_options' parameter is only allowed when 'stream' "
                       "is enabled.", code="invalid_value", param="stream_options")
    messages = []
    for message in body.messages:
        item = {"role": message.role, "content": message.text()}
        if message.name is not None:
            item["name"] = message.name
        messages.append(item)
    arguments: dict[str, Any] = {
        "model": body.model or None,
        "messages": messages,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_tokens": body.max_tokens or body.max_completion_tokens,
        "stop": body.stop,
        "provider": body.provider,
        "conversation": body.conversation_id,
        "seed": body.seed,
        "presence_penalty": body.presence_penalty,
        "frequency_penalty": body.frequency_penalty,
        **overrides,
    }
    return {k: v for k, v in arguments.items() if v is not None}


def _public(data: dict[str, Any]) -> dict[str, Any]:
    """Drop llmplex-only fields that are empty (``conversation_id`` without one)."""
    if data.get("conversation_id") is None:
        data.pop("conversation_id", None)
    return data


def _conversation(conversation: Any) -> dict[str, Any]:
    # provider_state is upstream session state (anonymous user ids...): not shown.
    return {"id": conversation.id, "object": "conversation", "created": int(conversation.created),
            "updated": int(conversation.updated), "model": conversation.model,
            "provider": conversation.provider, "messages": conversation.messages,
            "metadata": conversation.metadata}


def _providers(client: AsyncClient, emulated: bool) -> list[dict[str, Any]]:
    router = client.router
    status = router.status()
    now = router.clock()
    items = []
    for cls in router.provider_classes():
        name = cls.get_name()
        health = status.get(name) or ProviderHealth().snapshot(now)
        models = cls.get_models()  # type: ignore[attr-defined]
        items.append({
            "id": name,
            "object": "provider",
            "name": name,
            "label": cls.label,
            "url": cls.url,
            "working": cls.working,
            "needs_auth": cls.needs_auth,
            "configured": name.lower() in client.provider_options,  # never the options
            "emulated": emulated,
            "default_model": getattr(cls, "default_model", "") or None,
            "models": models,
            "aliases": dict(getattr(cls, "model_aliases", {})),
            "open_catalog": bool(cls.accepts_model("x/y")),  # type: ignore[attr-defined]
            "health": health,
            "cooling_down": health["cooling_down"],
            "cooldown_remaining": health["cooldown_remaining"],
        })
    return items


# -- disconnects and streaming ------------------------------------------------------------

class _ClientGone(Exception):
    """The HTTP client disconnected."""


async def _disconnected(receive: Receive) -> None:
    """Return once the client has disconnected (the body was already read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _unless_gone(watcher: asyncio.Future[None], work: Awaitable[T]) -> T:
    """``await work``, unless the client disconnects first: then cancel it (its cleanup
    runs before this returns) and raise :class:`_ClientGone`."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this request itself was cancelled (server shutdown)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise _ClientGone()


class _Pump:
    """Runs the completion stream in one task, from creation to cleanup, and hands its
    chunks over through a queue: ``("chunk", c)``, then ``("end", None)`` or
    ``("error", exc)``. Cancelling the task closes the stream (provider cleanup runs).

    The queue is unbounded: answers are small, and the writer side notices a
    disconnect by itself, so nothing piles up for long."""

    def __init__(self, opening: Awaitable[Any]) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._run(opening))

    async def _run(self, opening: Awaitable[Any]) -> None:
        put = self.queue.put_nowait
        try:
            stream = await opening
            async with aclosing(stream) as chunks:
                async for chunk in chunks:
                    put(("chunk", chunk))
        except asyncio.CancelledError:
            put(("end", None))
            raise
        except Exception as exc:
            put(("error", exc))
        else:
            put(("end", None))

    async def get(self) -> tuple[str, Any]:
        return await self.queue.get()

    async def close(self) -> None:
        """Stop the stream if it still runs, and wait for its cleanup."""
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


_DONE = b"data: [DONE]\n\n"


class _EventStream(Response):
    """The SSE response: writes the pump's chunks, watching for the client leaving."""

    media_type = "text/event-stream"

    def __init__(self, first: tuple[str, Any], pump: _Pump, watcher: asyncio.Future[None],
                 include_usage: bool) -> None:
        # Not Response.__init__: it would add a Content-Length for the empty body.
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"),
                            (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        self.first = first
        self.pump = pump
        self.watcher = watcher
        self.include_usage = include_usage

    def _render(self, chunk: ChatCompletionChunk) -> bytes:
        data = _public(chunk.model_dump())
        usage = data.pop("usage", None)
        if self.include_usage:
            data["usage"] = None  # OpenAI: null on every chunk but the usage one
        out = _sse(data)
        if usage is not None and self.include_usage:
            out += _sse({**data, "choices": [], "usage": usage})
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump, watcher = self.pump, self.watcher
        # The client leaving ends the upstream at once, even while it is silent.
        watcher.add_done_callback(lambda _: pump.task.cancel())
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": self.raw_headers})
            item = self.first
            while True:
                kind, value = item
                if kind == "chunk":
                    body = self._render(value)
                elif kind == "error":
                    error = error_for(value)
                    _log_error(error, value, streaming=True)
                    body = b"event: error\n" + _sse(error.body()) + _DONE
                else:
                    body = _DONE
                if watcher.done():
                    log.info("client went away mid-stream; upstream request cancelled")
                    break
                await send({"type": "http.response.body", "body": body, "more_body": True})
                if kind != "chunk":
                    break
                item = await pump.get()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the connection broke while writing: same as a disconnect
        finally:
            watcher.cancel()
            await pump.close()


# -- errors -------------------------------------------------------------------------------

def _log_error(error: APIError, exc: BaseException, *, streaming: bool = False) -> None:
    # The message of an llmplex error names provider and status, never keys; bodies
    # and headers of requests are never logged.
    where = " (after the stream started)" if streaming else ""
    if error.status >= 500:
        log.warning("%s %s%s: %s", error.status, error.code, where, error.message)
    else:
        log.info("%s %s%s: %s", error.status, error.code, where, error.message)


def _param(loc: Sequence[Any]) -> str:
    """``("messages", 0, "role")`` -> ``"messages[0].role"``, without pydantic's union
    member tags (``"str"``, ``"list[TextPart]"``...)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str):
            if any(c in part for c in "[]-") or part in _TYPE_TAGS:
                continue
            out += f".{part}" if out else part
    return out


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "bytes",
                        "literal", "TextPart", "ChatMessage", "StreamOptions"})


def _validation_error(exc: RequestValidationError) -> APIError:
    errors = list(exc.errors())
    # A value failing a union (content: string or parts) gets one error per member. The
    # most specific is the deepest ("messages[0].content[1].type"), then one about the
    # value rather than "should be a string" from the member of the wrong type.
    first = dict(max(errors, default={}, key=lambda e: (
        len(_param(list(e.get("loc") or ())[1:])), not str(e.get("type")).endswith("_type"))))
    loc = list(first.get("loc") or ())
    where = loc[0] if loc else "body"
    kind = str(first.get("type", ""))
    text = str(first.get("msg", "invalid request"))
    if kind == "json_invalid":
        return APIError(400, "We could not parse the JSON body of your request: "
                        f"{text}. Send a JSON object.", code="invalid_json")
    param = _param(loc[1:])
    if not param:
        if kind == "missing":
            return APIError(400, f"Missing request {where}: expected a JSON object.",
                            code="missing_required_parameter")
        return APIError(400, f"Invalid request {where}: {text}.", code="invalid_type")
    if kind == "missing":
        return APIError(400, f"Missing required parameter: '{param}'.",
                        code="missing_required_parameter", param=param)
    code = "invalid_type" if kind.endswith(("_type", "_parsing")) else "invalid_value"
    return APIError(400, f"Invalid '{param}': {text}.", code=code, param=param)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        _log_error(exc, exc)
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        error = _validation_error(exc)
        _log_error(error, exc)
        return error.response()

    @app.exception_handler(LLMplexError)
    async def llmplex_error(request: Request, exc: LLMplexError) -> Response:
        error = error_for(exc)
        _log_error(error, exc)
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            message = f"Invalid URL ({request.method} {request.url.path})"
        else:
            message = str(exc.detail)
        error = APIError(exc.status_code, message, code=None, headers=dict(exc.headers or {}))
        return error.response()

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_for(exc).response()


# -- body size limit ----------------------------------------------------------------------

class BodyLimit:
    """ASGI middleware: read the request body up front, refusing (413, OpenAI-shaped)
    anything over ``max_bytes``, declared or streamed; then replay it to the app."""

    def __init__(self, app: Any, max_bytes: int = 1_000_000) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = False  # the server itself rejects a malformed length
            if too_large:
                await self._reject(scope, receive, send)
                return
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before its body arrived: nobody to answer
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            parts.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(parts), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = APIError(413, f"Request body too large: the limit is {self.max_bytes} bytes.",
                         code="request_too_large", headers={"Connection": "close"})
        await error.response()(scope, receive, send)
