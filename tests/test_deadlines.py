"""Deadlines: time to the first content (then the next provider is tried) and total time per
answer, per call, per provider, per client, from config.toml and the environment.

The stalling upstream is a small aiohttp server of the tests' own that answers 200 and then
sends only SSE comments (keep-alives), as a hostile or overloaded service may: the per-read
``timeout`` never fires, only the deadlines can end the wait.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from aiohttp import web

from llmplex import AsyncClient
from llmplex.config import ConfigError, load_config
from llmplex.conversations import MemoryStore
from llmplex.emulators.openai import OpenAIEmulator
from llmplex.errors import AllProvidersFailed, InvalidRequestError, ProviderTimeoutError
from llmplex.providers.endpoints import ENDPOINTS
from llmplex.routing import Router
from llmplex.server import ServerThread, create_app
from llmplex.testing import Script, eventually, serve


class KeepAlives:
    """An 'emulator' of a service that never answers: SSE comments every 50 ms."""

    name = "keepalives"

    def __init__(self) -> None:
        self.open_streams = 0
        self.url: str | None = None
        self._connections = None

    def app(self) -> web.Application:
        async def chat(request: web.Request) -> web.StreamResponse:
            await request.read()
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            self.open_streams += 1
            try:
                while True:
                    await response.write(b": keep-alive\n\n")
                    await asyncio.sleep(0.05)
            except (ConnectionError, RuntimeError, asyncio.CancelledError):
                pass
            finally:
                self.open_streams -= 1
            return response

        application = web.Application()
        application.add_routes([web.post("/v1/chat/completions", chat)])
        return application


def keepalives():
    """A served :class:`KeepAlives` (``serve`` takes anything with an ``app()``)."""
    return serve(KeepAlives())


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    for endpoint in ENDPOINTS.values():
        monkeypatch.delenv(endpoint.api_key_env, raising=False)


def client_for(stalling, answering=None, **kwargs) -> AsyncClient:
    options = {"OpenAI": {"base_url": stalling.url + "/v1", "api_key": "sk-a"}}
    if answering is not None:
        options["Groq"] = {"base_url": answering.url + "/v1", "api_key": "gsk-b"}
    options.update(kwargs.pop("provider_options", {}))
    return AsyncClient(
        store=MemoryStore(),
        provider_options=options,
        router=Router(aliases={"chain": ["openai:gpt-4o-mini", "groq:llama-3.1-8b-instant"]}),
        **kwargs,
    )


async def test_keepalives_only_end_at_the_first_token_deadline():
    with keepalives() as upstream:
        started = time.monotonic()
        async with client_for(upstream, first_token_timeout=0.5) as client:
            with pytest.raises(ProviderTimeoutError, match="first-token timeout") as info:
                await client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
        assert time.monotonic() - started < 10  # not the 120 s read timeout, nor forever
        assert info.value.provider == "OpenAI"
        await eventually(lambda: upstream.open_streams == 0)  # the stream was closed


async def test_the_next_provider_answers_after_the_first_token_deadline():
    with keepalives() as upstream, serve(OpenAIEmulator()) as emulator:
        async with client_for(upstream, emulator, first_token_timeout=0.5) as client:
            answer = await client.chat.completions.create(model="chain", messages="Hi")
            assert answer.provider == "Groq"
            assert answer.choices[0].message.content == Script().reply
            # streamed too
            stream = await client.chat.completions.create(model="chain", messages="Hi", stream=True)
            chunks = [c async for c in stream]
        assert chunks[-1].provider == "Groq"


async def test_a_per_call_and_a_per_provider_deadline():
    with keepalives() as upstream:
        async with client_for(upstream) as client:  # defaults: minutes
            started = time.monotonic()
            with pytest.raises(ProviderTimeoutError):
                await client.chat.completions.create(
                    model="openai:gpt-4o-mini", messages="Hi", first_token_timeout=0.3
                )
            assert time.monotonic() - started < 10
        slow = {
            "OpenAI": {
                "base_url": upstream.url + "/v1",
                "api_key": "sk-a",
                "first_token_timeout": 0.3,
            }
        }
        async with client_for(upstream, provider_options=slow) as client:
            with pytest.raises(ProviderTimeoutError):
                await client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
        with pytest.raises(InvalidRequestError, match="first_token_timeout"):
            AsyncClient(first_token_timeout=-1)


async def test_the_total_deadline_ends_a_trickling_answer():
    with (
        serve(OpenAIEmulator(Script("word " * 200, delay=0.05))) as emulator,
        serve(OpenAIEmulator()) as other,
    ):
        async with client_for(emulator, other, total_timeout=0.6) as client:
            stream = await client.chat.completions.create(model="chain", messages="Hi", stream=True)
            got = []
            with pytest.raises(ProviderTimeoutError, match="total timeout"):
                async for chunk in stream:
                    got.append(chunk.choices[0].delta.content or "")
            assert "".join(got).startswith("word")  # it had started: no fallback
            assert not other.requests
        await eventually(lambda: emulator.open_streams == 0)


async def test_a_fallback_chain_that_only_stalls_fails_with_every_timeout():
    with keepalives() as first, keepalives() as second:
        options = {"Groq": {"base_url": second.url + "/v1", "api_key": "gsk-b"}}
        async with client_for(first, provider_options=options, first_token_timeout=0.3) as client:
            with pytest.raises(AllProvidersFailed) as info:
                await client.chat.completions.create(model="chain", messages="Hi")
        assert [type(e) for _, e in info.value.errors] == [ProviderTimeoutError] * 2


def test_the_server_answers_504_at_the_first_token_deadline():
    with keepalives() as upstream:
        app = create_app(client_for(upstream, first_token_timeout=0.5))
        with ServerThread(app) as server:
            started = time.monotonic()
            response = httpx.post(
                server.url + "/v1/chat/completions",
                timeout=30,
                json={
                    "model": "openai:gpt-4o-mini",
                    "messages": [{"role": "user", "content": "Hi"}],
                },
            )
            assert response.status_code == 504
            assert response.json()["error"]["code"] == "upstream_timeout"
            assert time.monotonic() - started < 10


def test_deadlines_from_config_and_environment(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        "first_token_timeout = 12\ntotal_timeout = 600\n[providers.Groq]\nfirst_token_timeout = 5\n"
    )
    config = load_config(path, environ={})
    assert (config.first_token_timeout, config.total_timeout) == (12.0, 600.0)
    assert config.providers["Groq"]["first_token_timeout"] == 5
    config = load_config(path, environ={"LLMPLEX_FIRST_TOKEN_TIMEOUT": "7"})
    assert config.first_token_timeout == 7.0  # the environment wins
    for bad in (
        "first_token_timeout = -1\n",
        'total_timeout = "soon"\n',
        "[providers.Groq]\ntotal_timeout = 0\n",
    ):
        path.write_text(bad)
        with pytest.raises(ConfigError):
            load_config(path, environ={})
    ok = tmp_path / "ok.toml"
    ok.write_text("")
    with pytest.raises(ConfigError, match="LLMPLEX_TOTAL_TIMEOUT"):
        load_config(ok, environ={"LLMPLEX_TOTAL_TIMEOUT": "later"})
