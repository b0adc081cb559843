"""Anthropic's Messages API on the server: ``POST /v1/messages`` and
``POST /v1/messages/count_tokens``, for Claude Code and the ``anthropic`` SDK.

A request in Anthropic's shape is translated onto llmplex's typed request
(the arguments of ``chat.completions.create``) and served by any
provider; the answer is sent back in Anthropic's shape, whole or streamed as Anthropic's
event sequence (:mod:`llmplex.server.anthropic_stream`), errors with Anthropic's body.
The translation is :mod:`llmplex.server.anthropic_translate`.

Translation (every route):

- ``system`` (a string or text blocks) -> a system message; ``messages``: ``text`` ->
  text parts, ``image`` (``base64`` or ``url`` source) -> ``image_url`` parts (a ``data:``
  URL), ``document`` (a base64 PDF or text) -> a ``file`` part or text, assistant
  ``tool_use`` -> ``tool_calls``, ``tool_result`` -> ``tool`` messages (their text;
  ``is_error: true`` puts ``Error:`` before it, the only way to say it in OpenAI's shape;
  their images and documents, which OpenAI's tool messages cannot hold, open the user
  turn that follows the tool messages).
- ``tools`` (custom tools with ``input_schema``) -> function tools; server tools
  (``web_search``, ``code_execution``...) are refused by name: their answers have no
  place in llmplex's stream. ``tool_choice`` ``auto`` / ``any`` / ``tool`` / ``none`` ->
  ``auto`` / ``required`` / the named function / ``none``, ``disable_parallel_tool_use``
  -> ``parallel_tool_calls: false``.
- ``stop_sequences`` -> ``stop``; ``temperature``, ``top_p``, ``max_tokens`` as they are;
  ``top_k`` the provider option of that name (refused by providers without it);
  ``metadata.user_id`` -> ``user``; ``thinking`` (enabled) -> ``reasoning_effort`` from
  its budget (up to 2048 ``low``, up to 8192 ``medium``, else ``high``).
- Accepted without effect on other services: ``cache_control`` (a caching hint of
  Anthropic's, on blocks, tools or the whole request), the thinking blocks of earlier
  turns (Anthropic drops them from the context too), the ``anthropic-version`` and
  ``anthropic-beta`` headers.

Pass-through: when every route a request may take is the
:class:`~llmplex.providers.anthropic.Anthropic` provider (a ``claude-...`` model), the
request body reaches it as the caller sent it (the provider's ``anthropic_body`` option,
with ``anthropic-beta`` as a header): system blocks, ``cache_control``, thinking blocks
and their signatures, ``is_error``, ``service_tier``, any field Anthropic adds later.
The translation still runs, to route and to check the request.

Thinking blocks carry the signature the upstream gave (Anthropic's; others give none:
``"signature": ""``). What the answer cannot carry: ``redacted_thinking`` blocks, and
which stop sequence matched (``stop_reason`` is ``end_turn``, ``stop_sequence`` null).

Usage: ``input_tokens`` is the upstream's prompt count without cached and cache-written
tokens, which are ``cache_read_input_tokens`` / ``cache_creation_input_tokens`` when it
reports them. A stream's ``message_start`` carries an estimate of the input
(:func:`llmplex.limits.estimate_tokens`, one token per 4 bytes of the request's text);
``message_delta`` the counts the upstream reported. ``count_tokens`` asks Anthropic when
every route is the Anthropic provider, else answers that estimate (no other upstream
counts tokens).

Auth: with server API keys, ``x-api-key: <key>`` or ``Authorization: Bearer <key>``.
Cancellation, back-pressure and cleanup are those of ``/v1/chat/completions``
(:mod:`llmplex.server.streaming`): a client leaving mid-stream closes the upstream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from ..client import AsyncClient
from ..errors import InvalidRequestError
from .anthropic_stream import PING_SECONDS, MessageStream, anthropic_error, message_for
from .anthropic_translate import (
    all_anthropic,
    anthropic_param,
    chat_arguments,
    estimate_input,
)
from .errors import APIError
from .handlers import log_error
from .streaming import (
    CLIENT_STALL_TIMEOUT,
    ClientGone,
    Pump,
    disconnected,
    started,
    unless_gone,
)

__all__ = ["AnthropicRouter", "anthropic_router"]

log = logging.getLogger("llmplex.server")


def _error_response(exc: BaseException) -> Response:
    error, body = anthropic_error(exc)
    log_error(error, exc)
    headers = {**error.all_headers(), "request-id": "req_" + os.urandom(12).hex()}
    return JSONResponse(body, status_code=error.status, headers=headers)


class _AnthropicRoute(APIRoute):
    """A route whose every error leaves in Anthropic's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # every error gets Anthropic's body
                return _error_response(exc)

        return route


# -- the routes --------------------------------------------------------------------------


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise APIError(
            400,
            f"There was an issue with your request body: invalid JSON ({exc})",
            code="invalid_json",
        ) from None


class AnthropicRouter(APIRouter):
    """The routes, and those of them the app serves in front of its middleware stack
    (``front_routes``: path -> handler, :mod:`llmplex.server.front`)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.front_routes: dict[str, Callable[[Request], Awaitable[Response]]] = {}


def anthropic_router(
    client: AsyncClient,
    *,
    api_keys: Sequence[bytes] = (),
    client_stall_timeout: float = CLIENT_STALL_TIMEOUT,
    ping_interval: float = PING_SECONDS,
    keys: Any = None,
) -> AnthropicRouter:
    """The ``/v1/messages`` routes over ``client``; ``api_keys`` (UTF-8 bytes) and
    ``client_stall_timeout`` as ``create_app``'s; ``ping_interval``: seconds of upstream
    silence after which a stream gets a ``ping``. ``keys``: the server's
    :class:`~llmplex.server.keys.KeyRing` (instead of ``api_keys``)."""
    from .keys import KeyRing

    router = AnthropicRouter(prefix="/v1", route_class=_AnthropicRoute, tags=["anthropic"])
    ring = keys if keys is not None else KeyRing(plain=[k.decode() for k in api_keys])

    def arguments(body: Any, count_only: bool = False) -> tuple[dict[str, Any], bool]:
        model = body.get("model") if isinstance(body, dict) else None
        native = isinstance(model, str) and bool(model) and all_anthropic(client, model)
        return chat_arguments(body, count_only=count_only, native=native), native

    @router.post("/messages")
    async def messages(request: Request) -> Response:
        """Anthropic's Messages API: create a message; with ``"stream": true`` Anthropic's
        SSE event sequence (see :mod:`llmplex.server.anthropic_api`)."""
        ring.authenticate(request.headers, anthropic=True)  # before the body is looked at
        body = await _json(request)
        model = body.get("model") if isinstance(body, dict) else None
        caller = await ring.admit(
            request.headers, model if isinstance(model, str) else None, anthropic=True
        )
        kwargs, native = arguments(body)
        if native:
            kwargs["anthropic_body"] = {
                k: v for k, v in body.items() if k not in ("model", "stream")
            }
            beta = request.headers.get("anthropic-beta")
            if beta:
                kwargs["anthropic_beta"] = beta
        streamed = bool(body.get("stream"))
        watcher = asyncio.ensure_future(disconnected(request.receive))
        owned = True
        try:
            if not streamed:
                # read as a stream: thinking signatures come only in stream chunks
                stream = await ring.metered(
                    caller, client.chat.completions.create(**kwargs, stream=True)
                )
                return JSONResponse(
                    await unless_gone(watcher, message_for(stream, estimate_input(body)))
                )
            pump = Pump(ring.metered(caller, client.chat.completions.create(**kwargs, stream=True)))
            first = await started(watcher, pump)
            response = MessageStream(
                first, pump, watcher, client_stall_timeout, estimate_input(body), ping_interval
            )
            owned = False  # the stream owns the watcher now
            return response
        except ClientGone:
            log.info("client went away before the answer started; upstream request cancelled")
            return Response(status_code=499)
        except InvalidRequestError as exc:
            raise anthropic_param(exc) from None
        finally:
            if owned:
                watcher.cancel()

    async def messages_in_front(request: Request) -> Response:
        """``/v1/messages`` as the app's front serves it (:mod:`llmplex.server.front`):
        the route with its errors in Anthropic's shape, as :class:`_AnthropicRoute`
        gives them."""
        try:
            return await messages(request)
        except Exception as exc:
            return _error_response(exc)

    #: the routes the app serves in front of its middleware stack (path -> handler)
    router.front_routes["/v1/messages"] = messages_in_front

    @router.post("/messages/count_tokens")
    async def count_tokens(request: Request) -> Any:
        """A request's input tokens: Anthropic's own count when every route is the
        Anthropic provider, else an estimate (no upstream counts): one token per 4 bytes
        of its text, tool definitions included."""
        ring.authenticate(request.headers, anthropic=True)  # counting asks no model
        body = await _json(request)
        kwargs, native = arguments(body, count_only=True)
        routes = client.router.resolve(kwargs["model"])  # unknown model: a 404, as upstream
        if not native:
            return {"input_tokens": estimate_input(body)}
        from ..providers.anthropic import count_tokens as anthropic_count

        options = dict(client.provider_options.get("anthropic", {}))
        if client.proxy is not None:
            options.setdefault("proxy", client.proxy)
        watcher = asyncio.ensure_future(disconnected(request.receive))
        try:
            tokens = await unless_gone(
                watcher,
                anthropic_count(
                    routes[0].model,
                    body,
                    anthropic_beta=request.headers.get("anthropic-beta"),
                    **options,
                ),
            )
        except ClientGone:
            return Response(status_code=499)
        finally:
            watcher.cancel()
        return {"input_tokens": tokens}

    return router
