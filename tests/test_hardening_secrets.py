"""Echoed secrets (issue 10, item 6): one scrubbing policy in the HTTP layer.

Careless upstreams of the test's own (small aiohttp servers on 127.0.0.1, not the faithful
emulators) answer errors whose bodies echo the request's headers and cookies back — as a
status error, as an error event inside a 200 stream, as a body that is not JSON. Whoever's
protocol it is (Replicate's token, OpenAssistant's session cookie and the cookie the server
set, an OpenAI-compatible key, a proxy's password), the secret appears nowhere in the
error: not in ``str``, ``repr``, ``.message``, ``.body`` or ``.args``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from llmplex.errors import LLMplexError, ResponseError, ResponseStatusError, StreamError
from llmplex.http.session import MIN_SECRET_LENGTH, Secrets
from llmplex.providers import OpenAICompatible, OpenAssistant, Replicate
from llmplex.providers.replicate_models import openapi_schema

REPLICATE_TOKEN = "r8_EchoedToken_0123456789abcdef"
OA_COOKIE = "oa-session/cookie+value=42"  # characters that JSON and URLs quote differently
SERVER_COOKIE = "srv-set-cookie-7f3e91"
OPENAI_KEY = "sk-echoed-key-0123456789"
PROXY_USER, PROXY_PASSWORD = "proxyuser", "pr0xy@Passw0rd"


def echo(request: web.Request) -> dict:
    """What a careless server puts in an error: everything it was sent."""
    return {
        "headers": dict(request.headers),
        "cookies": dict(request.cookies),
        "url": str(request.url),
    }


def echo_text(request: web.Request) -> str:
    return f"bad request: {echo(request)!r}"


@pytest.fixture
async def serve_app() -> AsyncIterator[Callable[[list[web.RouteDef]], object]]:
    runners: list[web.AppRunner] = []

    async def start(routes: list[web.RouteDef]) -> str:
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def assert_clean(error: BaseException, *secrets: str) -> None:
    assert isinstance(error, LLMplexError)
    texts = [str(error), repr(error), error.message, error.body or "", repr(error.args)]
    for secret in secrets:
        for form in {secret, json.dumps(secret)[1:-1]}:
            for text in texts:
                assert form not in text, (form, text)
    assert "***" in str(error) + (error.body or "")  # the echo was there, and was scrubbed


async def consume(gen) -> list:
    return [chunk async for chunk in gen]


# -- Replicate: the token ----------------------------------------------------------------------


def replicate_routes(mode: str) -> list[web.RouteDef]:
    async def create(request: web.Request) -> web.StreamResponse:
        if mode == "status":
            return web.json_response(
                {
                    "title": "Internal error",
                    "detail": echo_text(request),
                    "status": 500,
                    "request": echo(request),
                },
                status=500,
                content_type="application/problem+json",
            )
        if mode == "json":
            return web.Response(
                status=201, text=f"<html>{echo(request)}</html>", content_type="application/json"
            )
        origin = f"{request.scheme}://{request.host}"
        return web.json_response(
            {
                "id": "p1",
                "status": "starting",
                "urls": {
                    "get": f"{origin}/v1/predictions/p1",
                    "cancel": f"{origin}/v1/predictions/p1/cancel",
                    "stream": f"{origin}/v1/streams/s1",
                },
            },
            status=201,
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        detail = json.dumps({"detail": echo_text(request)})
        await response.write(f"event: error\nid: 1:0\ndata: {detail}\n\n".encode())
        await response.write(b'event: done\nid: 1:1\ndata: {"reason": "error"}\n\n')
        return response

    async def cancel(request: web.Request) -> web.StreamResponse:
        return web.json_response({"id": "p1", "status": "canceled"})

    return [
        web.post("/v1/models/{owner}/{name}/predictions", create),
        web.get("/v1/streams/{id}", stream),
        web.post("/v1/predictions/{id}/cancel", cancel),
    ]


@pytest.mark.parametrize(
    "mode, error",
    [("status", ResponseStatusError), ("event", StreamError), ("json", ResponseError)],
)
async def test_replicate_token_echoed_back_is_scrubbed(serve_app, mode, error):
    base = await serve_app(replicate_routes(mode))
    with pytest.raises(error) as info:
        await consume(
            Replicate.create_async_generator(
                "meta/meta-llama-3-8b-instruct",
                "Hi",
                base_url=base,
                api_key=REPLICATE_TOKEN,
                schema=openapi_schema({"prompt": {"type": "string"}}),
            )
        )
    assert_clean(info.value, REPLICATE_TOKEN)
    assert info.value.provider == "Replicate"


# -- OpenAssistant: the session cookie, and the one the server set ----------------------------


def openassistant_routes(mode: str) -> list[web.RouteDef]:
    async def create(request: web.Request) -> web.StreamResponse:
        response = web.json_response({"id": "c1"})
        response.set_cookie("srv-session", SERVER_COOKIE)
        return response

    async def prompter(request: web.Request) -> web.StreamResponse:
        if mode == "status":
            return web.json_response({"message": echo_text(request)}, status=500)
        return web.json_response({"id": "m1"})

    async def assistant(request: web.Request) -> web.StreamResponse:
        return web.json_response({"id": "m2"})

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        data = json.dumps({"event_type": "error", "error": echo_text(request)})
        await response.write(f"data: {data}\r\n\r\n".encode())
        return response

    async def delete(request: web.Request) -> web.StreamResponse:
        return web.Response()

    return [
        web.post("/api/chat", create),
        web.post("/api/chat/prompter_message", prompter),
        web.post("/api/chat/assistant_message", assistant),
        web.post("/api/chat/events", events),
        web.delete("/api/chat", delete),
    ]


@pytest.mark.parametrize("mode, error", [("status", ResponseStatusError), ("event", StreamError)])
async def test_openassistant_cookies_echoed_back_are_scrubbed(serve_app, mode, error):
    base = await serve_app(openassistant_routes(mode))
    with pytest.raises(error) as info:
        await consume(
            OpenAssistant.create_async_generator(
                "", "Hi", base_url=base, cookies={"next-auth.session-token": OA_COOKIE}
            )
        )
    assert_clean(info.value, OA_COOKIE, SERVER_COOKIE)
    assert info.value.provider == "OpenAssistant"


# -- OpenAI-compatible: the key ----------------------------------------------------------------


def openai_routes(mode: str) -> list[web.RouteDef]:
    async def completions(request: web.Request) -> web.StreamResponse:
        if mode == "status":
            return web.json_response({"error": {"message": echo_text(request)}}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        data = json.dumps({"error": {"message": echo_text(request)}})
        await response.write(f"data: {data}\n\n".encode())
        return response

    return [web.post("/v1/chat/completions", completions)]


@pytest.mark.parametrize("mode, error", [("status", ResponseStatusError), ("event", StreamError)])
@pytest.mark.parametrize("header", ["Authorization", "x-api-key", "api-key"])
async def test_openai_compatible_keys_echoed_back_are_scrubbed(serve_app, mode, error, header):
    base = await serve_app(openai_routes(mode))
    options = (
        {"api_key": OPENAI_KEY} if header == "Authorization" else {"headers": {header: OPENAI_KEY}}
    )
    with pytest.raises(error) as info:
        await OpenAICompatible.create_async("m", "Hi", base_url=base + "/v1", **options)
    assert_clean(info.value, OPENAI_KEY)


# -- a proxy's password ------------------------------------------------------------------------


async def through_proxy(serve_app, answer, base_url: str, expected: type) -> tuple:
    """A call through a proxy of the test's own answering every request with ``answer``,
    with credentials in its URL: (the error raised, the password as the URL quotes it)."""
    proxy = await serve_app([web.route("*", "/{tail:.*}", answer)])
    quoted = PROXY_PASSWORD.replace("@", "%40")
    proxy_url = proxy.replace("http://", f"http://{PROXY_USER}:{quoted}@")
    with pytest.raises(expected) as info:
        await OpenAICompatible.create_async(
            "m", "Hi", base_url=base_url, api_key=OPENAI_KEY, proxy=proxy_url
        )
    return info, quoted


async def test_proxy_credentials_echoed_back_are_scrubbed(serve_app):
    # A plain-http target goes to the proxy as an ordinary request: this proxy answers it
    # with an error that echoes Proxy-Authorization (Basic user:password) back.
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"message": echo_text(request)}}, status=502)

    info, quoted = await through_proxy(
        serve_app, refuse, "http://127.0.0.1:9/v1", ResponseStatusError
    )
    basic = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    assert "Proxy-Authorization" in (info.value.body or "")  # it was echoed...
    assert_clean(info.value, PROXY_PASSWORD, quoted, basic, OPENAI_KEY)  # ...and scrubbed


async def test_a_transport_error_carried_as_the_cause_shows_no_password(serve_app):
    # A proxy that will not tunnel (its 404 to CONNECT): aiohttp's ClientHttpProxyError
    # quotes the proxy URL, password and all. The llmplex error carries it as its cause,
    # which a traceback (a log line with exc_info) prints: it stands there scrubbed.
    import traceback

    from llmplex.errors import ProviderConnectionError
    from llmplex.http.session import ScrubbedError

    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.Response(status=404)

    info, quoted = await through_proxy(
        serve_app, refuse, "https://127.0.0.1:9/v1", ProviderConnectionError
    )
    error = info.value
    printed = "".join(traceback.format_exception(error))
    linked, seen = [], [error]
    while seen:  # every exception reachable from the error, by either link
        item = seen.pop()
        if item is not None and all(item is not x for x in linked):
            linked.append(item)
            seen += [item.__cause__, item.__context__]
    shown = printed + "".join(f"{x!s} {x!r}" for x in linked)
    for secret in (PROXY_PASSWORD, quoted, OPENAI_KEY):
        assert secret not in shown, secret
    assert isinstance(error.__cause__, ScrubbedError)  # the cause is still told, without it
    assert "aiohttp.client_exceptions.ClientHttpProxyError: 404" in printed
    assert f"{PROXY_USER}:***@" in printed


async def test_a_base_url_with_credentials_and_a_key_is_a_clear_error():
    # aiohttp would send the URL's user:password as Basic auth, and refuses to beside the
    # key's Authorization header: a typed error naming base_url, without the password.
    from llmplex.errors import InvalidRequestError

    password = "basic-Passw0rd-77"
    with pytest.raises(InvalidRequestError) as info:
        await OpenAICompatible.create_async(
            "m", "Hi", base_url=f"http://me:{password}@127.0.0.1:9/v1", api_key=OPENAI_KEY
        )
    error = info.value
    assert error.param == "base_url" and "carries credentials" in str(error)
    assert "http://me:***@127.0.0.1:9" in str(error)
    assert password not in str(error) + repr(error) and OPENAI_KEY not in str(error)


def test_a_foreign_exception_that_cannot_be_printed_is_left_linked():
    class Odd(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    cause = Odd()
    error = ResponseError(f"failed ({OPENAI_KEY})", provider="X")
    error.__cause__ = cause
    Secrets([OPENAI_KEY]).scrub_error(error)  # (no exception of its own)
    assert error.__cause__ is cause and OPENAI_KEY not in str(error)


def test_a_foreign_exception_without_a_secret_stays_linked():
    cause = ConnectionRefusedError("connection refused")
    error = ResponseError(f"no answer ({OPENAI_KEY})", provider="X")
    error.__cause__ = cause
    Secrets([OPENAI_KEY]).scrub_error(error)
    assert error.__cause__ is cause and OPENAI_KEY not in str(error)


# -- the rule ----------------------------------------------------------------------------------


def test_short_secrets_are_only_scrubbed_where_they_were_sent():
    secrets = Secrets()
    secrets.add_headers(
        {
            "Authorization": "Bearer abc",
            "Cookie": "sid=1; theme=dark-mode-x",
            "X-Api-Key": "k9",
            "Accept": "application/json-and-more",
        }
    )
    secrets.add_url("http://me:pw@proxy:8080")
    assert MIN_SECRET_LENGTH == 6
    text = (
        "Bearer abc; abc is also a word; sid=1 and 1 more; theme=dark-mode-x; k9; "
        "me:pw; pw; application/json-and-more"
    )
    assert secrets.scrub(text) == (
        "Bearer ***; abc is also a word; sid=*** and 1 more; "
        "theme=***; k9; me:***; pw; application/json-and-more"
    )
    assert repr(secrets).startswith("<Secrets: ") and "abc" not in repr(secrets)


def test_long_secrets_are_scrubbed_in_every_quoted_form():
    value = 'tok/en+"quoted"=1'
    secrets = Secrets([value])
    for form in (
        value,
        json.dumps(value)[1:-1],
        "tok%2Fen%2B%22quoted%22%3D1",
        "tok%2Fen%2B%22quoted%22%3D1".replace("%20", "+"),
    ):
        assert secrets.scrub(f"<{form}>") == "<***>"


def test_a_secret_cut_by_a_length_limit_is_scrubbed_too():
    # Bodies and messages are trimmed (1000, 300, 200 characters): an echo cut in the
    # middle of a secret leaves only its start, which must go as well.
    secrets = Secrets([OPENAI_KEY])
    for size in range(4, len(OPENAI_KEY)):
        assert secrets.scrub("key was " + OPENAI_KEY[:size]) == "key was ***"
    assert secrets.scrub("key was sk-") == "key was sk-"  # three characters say nothing


async def test_an_echo_cut_at_the_body_limit_leaves_no_part_of_the_key(serve_app):
    from llmplex.http.status import BODY_LIMIT

    async def completions(request: web.Request) -> web.StreamResponse:
        prefix = "x" * (BODY_LIMIT - len("Bearer ") - 8)  # the limit cuts the key at 8
        return web.Response(status=500, text=prefix + request.headers["Authorization"])

    base = await serve_app([web.post("/v1/chat/completions", completions)])
    with pytest.raises(ResponseStatusError) as info:
        await OpenAICompatible.create_async("m", "Hi", base_url=base + "/v1", api_key=OPENAI_KEY)
    body = info.value.body or ""
    assert body.endswith("Bearer ***") and OPENAI_KEY[:4] not in body


def test_errors_carried_by_an_error_are_scrubbed_too():
    from llmplex.errors import AllProvidersFailed

    inner = ResponseStatusError(
        f"key {OPENAI_KEY} refused", provider="X", status=400, body=f'{{"key": "{OPENAI_KEY}"}}'
    )
    outer = AllProvidersFailed([("X", inner)], model="m")
    Secrets([OPENAI_KEY]).scrub_error(outer)
    for error in (inner, outer):
        assert OPENAI_KEY not in str(error) + repr(error) + (error.body or "")
