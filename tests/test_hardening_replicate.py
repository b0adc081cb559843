"""Replicate follows a prediction's URLs only to its own hosts (issue 10, item 11).

An emulator-like API of the test's own (server A, the configured base URL) answers with a
prediction whose ``urls.stream`` / ``urls.cancel`` / ``urls.get`` point at a second server
on another port (B), which records every connection. B receives nothing — no token, no
stream request, no cancel on cleanup —, the caller gets a ResponseError naming B, and the
prediction is still cancelled, on A's own ``/v1/predictions/{id}/cancel``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from llmplex.errors import ResponseError
from llmplex.providers import Replicate
from llmplex.providers.replicate import trusted_url
from llmplex.providers.replicate_models import openapi_schema

TOKEN = "r8_Token_ForReplicateOnly_42"
MODEL = "meta/meta-llama-3-8b-instruct"


class Recorder:
    """Server B, raw asyncio: counts every connection and keeps every byte it is sent."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            self.received += await reader.read(65536)
        finally:
            writer.close()

    @property
    def requests(self) -> list[bytes]:
        """What B was sent: nothing, as long as no connection was even opened."""
        return [self.received] if self.connections else []


class Api:
    """Server A: creates predictions whose ``urls`` come from ``urls`` (``{a}``/``{b}``
    stand for the two origins); streams tokens slowly; records its cancels."""

    def __init__(self, urls: dict[str, str], create_delay: float = 0.0) -> None:
        self.urls = urls
        self.create_delay = create_delay
        self.created = asyncio.Event()
        self.cancels: list[tuple[str, str | None]] = []  # (path, Authorization)
        self.gets: list[str | None] = []  # Authorization of each GET of the prediction
        self.a = self.b = ""

    async def create(self, request: web.Request) -> web.StreamResponse:
        self.created.set()
        await asyncio.sleep(self.create_delay)
        urls = {k: v.format(a=self.a, b=self.b) for k, v in self.urls.items()}
        return web.json_response({"id": "p1", "status": "starting", "urls": urls}, status=201)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for n in range(50):
            await response.write(f"event: output\nid: 1:{n}\ndata: tok{n}\n\n".encode())
            await asyncio.sleep(0.02)
        await response.write(b"event: done\nid: 1:99\ndata: {}\n\n")
        return response

    async def get(self, request: web.Request) -> web.StreamResponse:
        self.gets.append(request.headers.get("Authorization"))
        return web.json_response(
            {
                "id": "p1",
                "status": "succeeded",
                "output": "polled",
                "metrics": {"output_token_count": 1},
            }
        )

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        self.cancels.append((request.path, request.headers.get("Authorization")))
        return web.json_response({"id": request.match_info["id"], "status": "canceled"})


@pytest.fixture
async def servers() -> AsyncIterator:
    runners: list[web.AppRunner] = []
    servers_b: list[asyncio.Server] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def make(urls: dict[str, str], create_delay: float = 0.0) -> tuple[Api, Recorder]:
        recorder = Recorder()
        b_server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
        servers_b.append(b_server)
        api = Api(urls, create_delay)
        a_app = web.Application()
        a_app.add_routes(
            [
                web.post("/v1/models/{owner}/{name}/predictions", api.create),
                web.get("/v1/streams/{id}", api.stream),
                web.get("/v1/predictions/{id}", api.get),
                web.post("/v1/predictions/{id}/cancel", api.cancel),
            ]
        )
        api.b = f"http://127.0.0.1:{b_server.sockets[0].getsockname()[1]}"
        api.a = await start(a_app)
        return api, recorder

    yield make
    for runner in runners:
        await runner.cleanup()
    for server in servers_b:
        server.close()
        await server.wait_closed()


#: the model's schema, given: server A serves predictions only
SCHEMA = openapi_schema({"prompt": {"type": "string"}})


def generator(api: Api):
    return Replicate.create_async_generator(
        MODEL, "Hi", api_key=TOKEN, base_url=api.a, schema=SCHEMA
    )


async def test_a_stream_url_on_another_host_is_refused_and_gets_nothing(servers):
    api, b = await servers(
        {
            "get": "{b}/v1/predictions/p1",
            "cancel": "{b}/v1/predictions/p1/cancel",
            "stream": "{b}/v1/streams/s1",
        }
    )
    with pytest.raises(ResponseError) as info:
        [chunk async for chunk in generator(api)]
    message = str(info.value)
    assert message.startswith("Replicate: refusing to follow the prediction's urls.stream")
    assert api.b in message and TOKEN not in message
    assert b.connections == 0 and b.received == b""  # B was not even connected to
    # the prediction was cancelled where it was made, with the token
    assert api.cancels == [("/v1/predictions/p1/cancel", f"Bearer {TOKEN}")]


async def test_a_cancel_url_on_another_host_is_not_followed_on_early_stop(servers):
    api, b = await servers(
        {"cancel": "{b}/v1/predictions/p1/cancel", "stream": "{a}/v1/streams/s1"}
    )
    stream = generator(api)
    assert await stream.__anext__() == "tok0"  # the stream on A's own origin is followed
    await stream.aclose()  # early stop: the prediction is cancelled...
    assert b.requests == []  # ...not at the URL it named...
    assert api.cancels == [("/v1/predictions/p1/cancel", f"Bearer {TOKEN}")]  # ...but on A


async def test_a_cancel_url_on_another_host_is_not_followed_when_cancelled_in_create(servers):
    # The caller is cancelled while the create request is in flight: the prediction it
    # makes is undone, on A, although it names B.
    api, b = await servers(
        {"cancel": "{b}/v1/predictions/p1/cancel", "stream": "{b}/v1/streams/s1"}, create_delay=0.2
    )
    task = asyncio.create_task(generator(api).__anext__())
    await api.created.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.requests == []
    assert api.cancels == [("/v1/predictions/p1/cancel", f"Bearer {TOKEN}")]


async def test_urls_on_the_configured_origin_are_followed(servers):
    api, b = await servers(
        {"cancel": "{a}/v1/predictions/p1/cancel", "stream": "{a}/v1/streams/s1"}
    )
    chunks = [chunk async for chunk in generator(api)]
    assert "".join(c for c in chunks if isinstance(c, str)) == "".join(f"tok{n}" for n in range(50))
    assert b.requests == [] and api.cancels == []  # done: nothing to cancel


@pytest.mark.parametrize(
    "url, kind, allowed",
    [
        ("https://api.replicate.com/v1/predictions/p/cancel", "cancel", True),
        ("https://api.replicate.com/v1/predictions/p", "get", True),
        ("https://api.replicate.com/v1/streams/x", "stream", True),
        ("https://stream.replicate.com/v1/files/bcwr-abc", "stream", True),
        ("https://stream-b.svc.ric1.c.replicate.net/v1/streams/x", "stream", True),
        ("https://streaming-api.svc.us.c.replicate.net/v1/streams/x", "stream", True),
        ("HTTPS://API.REPLICATE.COM:443/v1/predictions/p/cancel", "cancel", True),
        # the streaming hosts get no cancels; the API wants https on its own port
        ("https://stream.replicate.com/v1/predictions/p/cancel", "cancel", False),
        ("https://stream-b.svc.ric1.c.replicate.net/x", "cancel", False),
        ("http://api.replicate.com/v1/predictions/p/cancel", "cancel", False),
        ("https://api.replicate.com:8443/v1/streams/x", "stream", False),
        # look-alikes, credentials, unparsable
        ("https://api.replicate.com.evil.example/v1/streams/x", "stream", False),
        ("https://api.replicate.com@evil.example/v1/streams/x", "stream", False),
        ("https://user@api.replicate.com/v1/streams/x", "stream", False),
        ("https://evil.example\\@api.replicate.com/v1/streams/x", "stream", False),
        ("https://replicate.net.evil.example/v1/streams/x", "stream", False),
        ("https://evil-replicate.net/v1/streams/x", "stream", False),
        ("https://api.replicate.com./v1/streams/x", "stream", False),
        ("/v1/streams/x", "stream", False),
        ("file:///etc/passwd", "stream", False),
    ],
)
def test_which_urls_get_the_token(url, kind, allowed):
    assert trusted_url(url, kind, "https://api.replicate.com") is allowed


def test_the_configured_base_urls_origin_is_trusted_exactly():
    base = "http://127.0.0.1:8080"
    assert trusted_url("http://127.0.0.1:8080/v1/streams/x", "stream", base)
    assert trusted_url("http://127.0.0.1:8080/v1/predictions/p/cancel", "cancel", base + "/")
    assert not trusted_url("http://127.0.0.1:8081/v1/streams/x", "stream", base)  # port
    assert not trusted_url("https://127.0.0.1:8080/v1/streams/x", "stream", base)  # scheme
    assert not trusted_url("http://localhost:8080/v1/streams/x", "stream", base)  # host
    # Replicate's own hosts stay trusted behind a configured gateway
    assert trusted_url("https://stream.replicate.com/v1/files/x", "stream", base)


async def test_a_get_url_on_another_host_is_not_polled(servers):
    # A model that does not stream is polled: at the API's own /v1/predictions/{id}, not
    # at the urls.get the prediction names on B.
    api, b = await servers(
        {"get": "{b}/v1/predictions/p1", "cancel": "{b}/v1/predictions/p1/cancel"}
    )
    plain = openapi_schema({"prompt": {"type": "string"}}, output={"type": "string"})

    class Quick(Replicate):
        poll_interval = 0.01

    chunks = [
        chunk
        async for chunk in Quick.create_async_generator(
            MODEL, "Hi", api_key=TOKEN, base_url=api.a, schema=plain
        )
    ]
    assert "".join(c for c in chunks if isinstance(c, str)) == "polled"
    assert b.requests == []
    assert api.gets == [f"Bearer {TOKEN}"] and api.cancels == []
