"""Issue 10 item 13: an upstream's ``Retry-After`` is capped.

A real aiohttp server on 127.0.0.1 answers 429 with hostile ``Retry-After`` values; the
OpenAI-compatible provider and the bare Session read them. ``inf`` used to take a provider
out of rotation for the life of the process, ``1e9`` for 31 years.
"""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest
from aiohttp import web

from llmplex.errors import RateLimitError
from llmplex.http.session import Session
from llmplex.http.status import MAX_RETRY_AFTER, parse_retry_after
from llmplex.providers.openai_compatible import OpenAICompatible
from llmplex.routing import Router


class RateLimitedUpstream:
    """Answers every request with 429 and ``Retry-After: <self.header>``."""

    def __init__(self) -> None:
        self.header = "1"
        self.requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        await request.read()
        return web.json_response(
            {"error": {"message": "Rate limit reached", "type": "requests"}},
            status=429,
            headers={"Retry-After": self.header},
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def upstream():
    server = RateLimitedUpstream()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _http_date(offset: float) -> str:
    return formatdate(time.time() + offset, usegmt=True)


# header -> (lowest, highest) expected retry_after; None: no usable value
CASES = {
    "7": (7, 7),
    "120": (120, 120),
    "299.5": (299.5, 299.5),
    "300": (300, 300),
    "301": (300, 300),
    "inf": (300, 300),
    "Infinity": (300, 300),
    "1e9": (300, 300),
    "1e400": (300, 300),  # a float overflow: inf
    "99999999999999999999999": (300, 300),
    "-5": (0, 0),
    "-inf": (0, 0),
    "nan": None,
    "NaN": None,
    "soon": None,
    "Wed, 21 Oct 2015 07:28:00 GMT": (0, 0),  # an HTTP date in the past
    "Fri, 31 Dec 9999 23:59:59 GMT": (300, 300),  # ... in the far future
    "Fri, 31 Dec 9999 23:59:59 -0000": (300, 300),  # no zone: taken as GMT
}


def _check(value, expected) -> None:
    if expected is None:
        assert value is None
    else:
        low, high = expected
        assert value is not None and low <= value <= high, value


@pytest.mark.parametrize("header", list(CASES))
async def test_provider_rate_limit_retry_after_is_capped(upstream, header):
    upstream.header = header
    with pytest.raises(RateLimitError) as info:
        async for _ in OpenAICompatible.create_async_generator(
            "gpt-4o-mini", "Hi", base_url=upstream.url + "/v1"
        ):
            pass
    assert info.value.status == 429 and upstream.requests == 1
    _check(info.value.retry_after, CASES[header])


@pytest.mark.parametrize(
    "offset, low, high",
    [
        (60, 50, 60),  # a date a minute ahead: about a minute (the clock moved meanwhile)
        (3600, 300, 300),  # an hour ahead: the cap
        (-60, 0, 0),  # a minute ago: now
    ],
)
async def test_session_http_date_retry_after(upstream, offset, low, high):
    upstream.header = _http_date(offset)
    async with Session("Upstream", timeout=10) as session:
        with pytest.raises(RateLimitError) as info:
            async with session.request("POST", upstream.url + "/v1/chat/completions", json={}):
                pass
    assert info.value.provider == "Upstream"
    _check(info.value.retry_after, (low, high))


async def test_an_infinite_retry_after_cools_a_provider_down_for_the_cap_only(upstream):
    """The router's cooldown follows the (capped) retry_after: after ``inf`` the provider
    is back in rotation within MAX_RETRY_AFTER, not never."""
    upstream.header = "inf"
    with pytest.raises(RateLimitError) as info:
        async for _ in OpenAICompatible.create_async_generator(
            "gpt-4o-mini", "Hi", base_url=upstream.url + "/v1"
        ):
            pass
    now = [1000.0]
    router = Router(clock=lambda: now[0])
    router.record_failure("OpenAICompatible", info.value)
    cooling = router.health["OpenAICompatible"].cooldown_until - now[0]
    assert 0 < cooling <= MAX_RETRY_AFTER == 300.0


def test_the_cap_is_configurable():
    assert MAX_RETRY_AFTER == 300.0
    assert parse_retry_after("1000", cap=600) == 600
    assert parse_retry_after("inf", cap=10) == 10
    assert parse_retry_after("5", cap=10) == 5
