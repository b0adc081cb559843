"""The OpenAI-compatible HTTP API over an :class:`~llmplex.client.AsyncClient`.

>>> app = create_app(AsyncClient(), api_keys=["my-secret"])
>>> # uvicorn.run(app, port=1337); then point any OpenAI client at http://127.0.0.1:1337/v1

Endpoints: ``POST /v1/chat/completions`` (JSON or SSE stream), Anthropic's
``POST /v1/messages`` and ``/v1/messages/count_tokens``
(:mod:`llmplex.server.anthropic_api`), ``GET /v1/models``,
``GET /v1/models/{id}``, ``GET /v1/providers``, ``POST/GET/DELETE /v1/conversations``,
``POST /v1/responses``, ``GET/DELETE /v1/responses/{id}`` and its ``/input_items``
(OpenAI's Responses API, :mod:`llmplex.server.responses_api`), ``POST /v1/embeddings``
(:mod:`llmplex.server.embeddings`), ``GET /health``; the OpenAPI schema at
``/openapi.json`` (docs at ``/docs`` and ``/redoc``, served without a CDN). Errors always
have OpenAI's shape (:mod:`llmplex.server.errors` has the status table).

Safety: requests whose ``Host`` header is not a loopback name or one of ``allowed_hosts``
are refused (403) before anything else runs, against DNS rebinding
(:class:`~llmplex.server.middleware.HostCheck`); request bodies are capped
(``max_body_bytes``, 413 above); the ``provider`` list of a request is capped
(``max_providers``, 400 above); CORS headers are sent
only for ``cors_origins``; with ``api_keys`` every ``/v1`` route needs ``Authorization:
Bearer <key>``; clients cannot choose upstream URLs, proxies or credentials
(:data:`~llmplex.server.schemas.UPSTREAM_FIELDS`) unless ``allow_upstream_overrides``;
nothing here logs headers, keys or bodies.

Streams (:mod:`llmplex.server.streaming`): the first chunk is awaited before the response
starts, so an error before any text gets its real status; an error later becomes an SSE
``error`` event and ``[DONE]``. When the client disconnects (at any point, also while
waiting for the upstream), the upstream request is cancelled and the provider's cleanup
runs before the request ends. The upstream is read only as fast as the client reads (a
bounded buffer), and a client that reads nothing for ``client_stall_timeout`` seconds is
dropped, with the upstream request closed and cleaned up the same way.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Receive, Scope, Send

from .. import __version__
from ..client import AsyncClient
from ..errors import InvalidRequestError
from . import fastpath
from .anthropic_api import anthropic_router
from .docs import install_docs
from .errors import APIError, check_provider_list
from .handlers import install_error_handlers
from .middleware import BodyLimit, HostCheck
from .schemas import (
    OPENAI_FIELD_NAMES,
    UPSTREAM_FIELDS,
    ChatCompletionRequest,
    ConversationRequest,
)
from .streaming import (
    CLIENT_STALL_TIMEOUT,
    ClientGone,
    Direct,
    EventStream,
    disconnected,
    public,
    started,
    unless_gone,
)

if TYPE_CHECKING:
    from .front import Front

__all__ = ["EMULATED_NOTICE", "MAX_PROVIDERS", "create_app"]

log = logging.getLogger("llmplex.server")

EMULATED_NOTICE = "EMULATED: answers come from local emulators, not real services"

#: the longest ``provider`` list a request may name (``max_providers``)
MAX_PROVIDERS = 8


def create_app(
    client: AsyncClient,
    *,
    api_keys: Iterable[str] = (),
    allow_upstream_overrides: bool = False,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = 1_000_000,
    emulated: bool = False,
    allowed_hosts: Sequence[str] | None = None,
    client_stall_timeout: float = CLIENT_STALL_TIMEOUT,
    max_providers: int = MAX_PROVIDERS,
    metrics: str = "public",
    tracer_provider: Any = None,
    keys: Any = None,
    state: Any = None,
) -> FastAPI:
    """Build the ASGI app serving ``client``.

    ``api_keys``: keys accepted as ``Authorization: Bearer <key>`` (none: no check).
    ``allow_upstream_overrides``: let request bodies set ``base_url``, ``proxy``,
    ``api_key``, ``cookies`` and ``headers`` for the upstream call (off: a 400).
    ``cors_origins``: origins allowed by CORS (``["*"]`` for any; none: no CORS headers).
    ``max_body_bytes``: the largest request body accepted. ``emulated``: the client talks
    to local emulators; said in ``/health`` and ``/v1/providers``.

    ``allowed_hosts``: the names clients may address the server by (the ``Host`` header,
    any port), besides ``localhost``, ``127.0.0.1`` and ``[::1]``, which always pass;
    other requests get a 403 before anything runs, ``/health`` included (protection from
    DNS rebinding, for a server on a loopback address). ``None``: the loopback names
    only. ``["*"]``: no check, for a server reached under names it cannot list (bound to
    a public address, where API keys protect it).
    :func:`~llmplex.server.middleware.allowed_hosts_for` gives the value for a bind
    address.
    ``client_stall_timeout``: seconds a streaming client may read nothing (one write of
    its answer waits that long) before it is dropped: its response ends unfinished and
    the upstream request is closed and cleaned up (default
    :data:`~llmplex.server.streaming.CLIENT_STALL_TIMEOUT`, 60 s).
    ``max_providers``: the longest ``provider`` list a request may name (400 above).
    ``metrics``: ``GET /metrics`` is ``"public"``, ``"keyed"`` (needs one of the API
    keys) or ``"off"``; ``tracer_provider``: OpenTelemetry traces (None: none). Every
    response has an ``x-request-id`` (:mod:`llmplex.server.observability`).

    ``keys``: API keys with names, limits and allowed models (a ``[server.keys]`` table,
    :class:`~llmplex.server.keys.ApiKey` objects or a
    :class:`~llmplex.server.keys.KeyRing`), besides ``api_keys`` (keys without limits).
    ``state``: the state backend (:func:`llmplex.state.from_url`; default: embedded):
    provider health and rate limits are counted there, and a backend with a store wants
    it as the client's (``AsyncClient(store=state.store)``); closed with the app.
    """
    if not (
        isinstance(client_stall_timeout, (int, float))
        and math.isfinite(client_stall_timeout)
        and client_stall_timeout > 0
    ):
        raise ValueError(
            f"client_stall_timeout must be a positive number of seconds, "
            f"not {client_stall_timeout!r}"
        )
    if isinstance(max_providers, bool) or not isinstance(max_providers, int) or max_providers < 1:
        raise ValueError(f"max_providers must be a positive integer, not {max_providers!r}")
    if isinstance(allowed_hosts, str):
        raise TypeError("allowed_hosts is a list of names, not one string")
    from ..state import EmbeddedState
    from .keys import KeyRing

    state = state if state is not None else EmbeddedState()
    if state.store is not None and getattr(client, "_store", None) is not state.store:
        raise ValueError(
            "the state backend keeps conversations: build the client with "
            "AsyncClient(store=state.store)"
        )
    ring = (
        keys
        if isinstance(keys, KeyRing)
        else KeyRing(
            keys or (), [k for k in api_keys if k], limiter=state.limiter, router=client.router
        )
    )
    if state.health is not None:
        client.router.shared = state.health

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The client keeps its upstream connections alive for the server's life: requests
        # reuse them instead of opening one per call.
        try:
            async with client:
                yield
        finally:
            await state.aclose()

    app = _App(
        lifespan=lifespan,
        title="llmplex",
        version=__version__,
        description="OpenAI-compatible API over many LLM chat services."
        + (f"\n\n**{EMULATED_NOTICE}**" if emulated else ""),
        docs_url=None,
        redoc_url=None,  # served by install_docs, without a CDN
    )
    install_docs(app)

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        """A browser's landing page: where the API and its documentation are."""
        notice = f"<p><strong>{EMULATED_NOTICE}</strong></p>" if emulated else ""
        return HTMLResponse(
            '<!doctype html><html><head><meta charset="utf-8"><title>llmplex</title>'
            "</head><body><h1>llmplex</h1>"
            f"<p>An OpenAI-compatible API, version {__version__}.</p>{notice}"
            '<p>API base URL: <code>/v1</code> (for example <a href="/v1/models">'
            "<code>/v1/models</code></a>).</p>"
            '<p>Documentation: <a href="/docs">/docs</a> (Swagger UI), '
            '<a href="/redoc">/redoc</a>, the schema at '
            '<a href="/openapi.json">/openapi.json</a>.</p></body></html>'
        )

    app.state.client = client
    # Its HTTP clients must not make the server reach local ports its operator did not
    # configure (a model named "llamacpp:x" would probe 127.0.0.1:8080).
    client.local_servers = "configured"
    app.state.emulated = emulated
    app.state.keys = ring
    app.state.backend = state

    bearer = HTTPBearer(
        auto_error=False, description="One of the server's API keys, when it was started with any."
    )

    async def authorize(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> None:
        # the key only; the routes that ask a model also call ring.admit (model, limits)
        ring.authenticate(request.headers)

    def authorize_request(request: Request) -> None:
        """The hot routes' dependency (see :mod:`.fastpath`): the same check."""
        ring.authenticate(request.headers)

    install_error_handlers(app)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])

    @app.get("/health", tags=["meta"])
    async def health() -> dict[str, Any]:
        """Liveness: always ``{"status": "ok"}`` while the server runs (no key needed)."""
        return {"status": "ok", "version": __version__, "emulated": emulated}

    @v1.post("/chat/completions", tags=["chat"], responses=_ERROR_RESPONSES)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        """Create a chat completion; with ``"stream": true`` an SSE stream of chunks ending
        with ``data: [DONE]``. llmplex extras: ``provider`` and ``conversation_id``."""
        check_provider_list(body.provider, max_providers)
        caller = await ring.admit(request.headers, body.model, provider=body.provider)
        kwargs = _create_arguments(body, allow_upstream_overrides)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        watcher = asyncio.ensure_future(disconnected(request.receive))
        try:
            return await _answer(kwargs, body.stream, include_usage, request, watcher, caller)
        except InvalidRequestError as exc:
            vendor = kwargs.get("extra_body")
            if exc.param == "extra_body" and vendor:
                # The caller sent top-level fields, not "extra_body": name them.
                names = ", ".join(vendor)
                raise APIError(
                    400,
                    f"Unrecognized request argument supplied: {names} (vendor "
                    f"fields go to OpenAI-compatible upstreams only; {exc.message})",
                    code="unknown_parameter",
                    param=next(iter(vendor)),
                ) from None
            raise

    async def _answer(
        kwargs: dict[str, Any],
        streamed: bool,
        include_usage: bool,
        request: Request,
        watcher: asyncio.Future[None],
        caller: Any,
    ) -> Any:
        owned = True  # the watcher is cancelled here, unless a stream took it over
        try:
            if not streamed:
                completion = await unless_gone(watcher, client.chat.completions.create(**kwargs))
                await ring.record_usage(caller, completion.usage.total_tokens)
                return fastpath.JSONAnswer(public(completion.model_dump()))
            # read by the response's own task (no pump: it sends no keep-alives)
            opening = ring.metered(caller, client.chat.completions.create(**kwargs, stream=True))
            source = Direct(await unless_gone(watcher, opening))
            first = await started(watcher, source)
            stream = EventStream(first, source, watcher, include_usage, client_stall_timeout)
            owned = False  # the stream owns it now
            return stream
        except ClientGone:
            log.info("client went away before the answer started; upstream request cancelled")
            return Response(status_code=499)
        finally:
            if owned:
                watcher.cancel()

    @v1.get("/models", tags=["models"])
    async def list_models(all: bool = False) -> dict[str, Any]:  # "all": the query name
        """The models a request can be routed to now (working, configured providers),
        each with the providers serving it and the upstream's ``created`` (0 when
        unknown). ``?all=true`` lists every known model, those not routable with
        ``"available": false`` and a ``reason``."""
        models = await client.models.list(all=all)
        return {"object": "list", "data": [m.model_dump(exclude_none=True) for m in models]}

    @v1.get("/models/{model_id:path}", tags=["models"], responses=_ERROR_RESPONSES)
    async def get_model(model_id: str) -> dict[str, Any]:
        """One routable model (404 ``model_not_found`` otherwise, saying why when the
        model is known but not routable here)."""
        for model in await client.models.list(all=True):
            if model.id == model_id:
                if model.available:
                    return model.model_dump(exclude_none=True)
                raise APIError(
                    404,
                    f"The model {model_id!r} is not available on this server ({model.reason}).",
                    code="model_not_found",
                    param="model",
                )
        raise APIError(
            404,
            f"The model {model_id!r} does not exist (see GET /v1/models).",
            code="model_not_found",
            param="model",
        )

    @v1.get("/providers", tags=["models"])
    async def list_providers() -> dict[str, Any]:
        """Every provider: whether it works, needs credentials, its models, its health."""
        if client.router.shared is not None:  # the health every instance shares
            await client.router.shared.pull(
                client.router, [cls.get_name() for cls in client.router.provider_classes()]
            )
        return {"object": "list", "emulated": emulated, "data": _providers(client, emulated)}

    @v1.post("/conversations", tags=["conversations"], responses=_ERROR_RESPONSES)
    async def create_conversation(body: ConversationRequest | None = None) -> dict[str, Any]:
        """Start a stored conversation; pass its ``id`` as ``conversation_id`` to chat."""
        body = body or ConversationRequest()
        seed = [m.as_dict() for m in body.messages]
        conversation = await client.conversations.create(
            model=body.model, messages=seed, metadata=dict(body.metadata or {})
        )
        return _conversation(conversation)

    @v1.get("/conversations/{conversation_id}", tags=["conversations"], responses=_ERROR_RESPONSES)
    async def get_conversation(conversation_id: str) -> dict[str, Any]:
        """A stored conversation with its messages."""
        return _conversation(await client.conversations.get(conversation_id))

    @v1.delete("/conversations/{conversation_id}", tags=["conversations"])
    async def delete_conversation(conversation_id: str) -> dict[str, Any]:
        """Delete a stored conversation (no error if there is none)."""
        await client.conversations.delete(conversation_id)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    from .embeddings import install_embeddings
    from .responses_api import install_responses

    install_embeddings(
        v1, client, max_providers=max_providers, responses=_ERROR_RESPONSES, keys=ring
    )
    create_response = install_responses(
        v1,
        client,
        stall_timeout=client_stall_timeout,
        max_providers=max_providers,
        responses=_ERROR_RESPONSES,
        keys=ring,
    )
    app.include_router(v1)
    # The hot routes without FastAPI's per-request dependency solving: plain routes in
    # front of the FastAPI ones, which stay for the OpenAPI schema (same steps, errors).
    chat_handler = fastpath.handler(
        "/v1/chat/completions", ChatCompletionRequest, authorize_request, chat_completions
    )
    from .responses_api import ResponseRequest

    responses_handler = fastpath.handler(
        "/v1/responses", ResponseRequest, authorize_request, create_response
    )
    for path, handle in (
        ("/v1/chat/completions", chat_handler),
        ("/v1/responses", responses_handler),
    ):
        app.router.routes.insert(0, fastpath.route(path, handle))
    # Anthropic's Messages API (/v1/messages): its own auth headers and error shape
    anthropic = anthropic_router(client, keys=ring, client_stall_timeout=client_stall_timeout)
    app.include_router(anthropic)
    # Middleware: the last added is the outermost. CORS goes outside the size limit, so a
    # browser also sees its 413; the Host check outside everything: a request under a
    # name the server does not answer to reaches nothing else.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "x-api-key",
                "anthropic-version",
                "anthropic-beta",
            ],
        )
    app.add_middleware(HostCheck, allowed_hosts=allowed_hosts)
    from .observability import install_observability  # request ids, /metrics, traces
    from .shutdown import InFlight

    in_flight = InFlight()
    counted = install_observability(
        app,
        client,
        metrics=metrics,
        keys=ring,
        tracer_provider=tracer_provider,
        in_flight=in_flight,
    )
    if not cors_origins and tracer_provider is None:  # (their middlewares are not repeated)
        from .front import Front

        app.front = Front(
            {
                "/v1/chat/completions": chat_handler,
                "/v1/responses": responses_handler,
                **anthropic.front_routes,
            },
            host_check=HostCheck(None, allowed_hosts),
            max_body_bytes=max_body_bytes,
            in_flight=in_flight,
            metrics=counted,
        )
    return app


class _App(FastAPI):
    """The app: FastAPI, with its hot routes served in front of the middleware stack
    (:mod:`llmplex.server.front`) when ``front`` is set."""

    front: Front | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if front is not None:
            handle = front.serves(scope)
            if handle is not None:
                scope["app"] = self
                await front.serve(handle, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


_ERROR_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        }
    }
}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": _ERROR_BODY}
    for status, text in (
        (400, "Bad request"),
        (401, "Missing or wrong API key"),
        (404, "Unknown model or conversation"),
        (413, "Body too large"),
        (429, "Upstream rate limit"),
        (502, "Upstream failure"),
        (504, "Upstream timeout"),
    )
}


# -- request handling ---------------------------------------------------------------------


def _create_arguments(body: ChatCompletionRequest, allow_overrides: bool) -> dict[str, Any]:
    """``chat.completions.create`` keyword arguments for a validated body.

    OpenAI's fields go as they are; vendor fields (any other top-level key) become
    ``extra_body`` for OpenAI-compatible upstreams, or the provider option of that name
    where a provider declares one (``top_k``...); upstream overrides only when allowed."""
    extra = dict(body.model_extra or {})
    overrides = {k: extra.pop(k) for k in UPSTREAM_FIELDS if k in extra}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for name, value in overrides.items():
        if not allow_overrides:
            raise APIError(
                400,
                f"'{name}' cannot be set by clients of this server: the "
                "operator has not allowed upstream overrides.",
                code="upstream_override_forbidden",
                param=name,
            )
        expected = UPSTREAM_FIELDS[name]
        if not isinstance(value, expected) or (
            expected is dict
            and not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            what = "a string" if expected is str else "an object of strings"
            raise APIError(
                400, f"Invalid type for '{name}': expected {what}.", code="invalid_type", param=name
            )
    if body.stream_options is not None and not body.stream:
        raise APIError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            code="invalid_value",
            param="stream_options",
        )
    arguments: dict[str, Any] = {
        "model": body.model or None,
        "messages": [message.as_dict() for message in body.messages],
        "provider": body.provider,
        "conversation": body.conversation_id,
        "emulate": body.emulate,
        **body.openai_fields(),
        **overrides,
    }
    # stream_options shapes the SSE output here; the client asks upstreams for usage itself
    arguments.pop("stream_options", None)
    if extra:
        from ..providers import provider_option_names

        options = provider_option_names()
        vendor = {}
        for name, value in extra.items():
            if name in options and name not in ("extra_body",):
                arguments[name] = value
                continue
            # A near miss of an OpenAI field is a typo, not a vendor field.
            typo = difflib.get_close_matches(name, OPENAI_FIELD_NAMES, n=1, cutoff=0.85)
            if typo:
                raise APIError(
                    400,
                    f"Unrecognized request argument supplied: {name} (did you mean '{typo[0]}'?)",
                    code="unknown_parameter",
                    param=name,
                )
            vendor[name] = value
        if vendor:
            arguments["extra_body"] = vendor
    return {k: v for k, v in arguments.items() if v is not None}


def _conversation(conversation: Any) -> dict[str, Any]:
    # provider_state is upstream session state (anonymous user ids...): not shown.
    return {
        "id": conversation.id,
        "object": "conversation",
        "created": int(conversation.created),
        "updated": int(conversation.updated),
        "model": conversation.model,
        "provider": conversation.provider,
        "messages": conversation.messages,
        "metadata": conversation.metadata,
    }


def _providers(client: AsyncClient, emulated: bool) -> list[dict[str, Any]]:
    from ..providers.table import provider_table  # the table `llmplex providers` prints

    return provider_table(client, emulated=emulated)
