"""Nothing is sent to an endpoint the user did not configure or name: a plain HTTP server on
the port of a local-server row (Ollama's 11434) receives nothing unless that row is
configured, or, in the library, named by the call; the server never lets its HTTP clients
reach an unconfigured local port."""

from __future__ import annotations

import socket
from contextlib import contextmanager

import httpx
import pytest
from aiohttp import web

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.errors import InvalidRequestError, LLMplexError
from llmplex.providers.endpoints import ENDPOINTS
from llmplex.routing import Router
from llmplex.server import ServerThread, create_app
from llmplex.testing import serve

PORT = 11434  # Ollama's


class Listener:
    """Any HTTP service that happens to listen on a local port: it records what reaches it
    and answers like a minimal OpenAI-compatible server."""

    name = "listener"

    def __init__(self) -> None:
        self.received: list[str] = []
        self.url: str | None = None
        self._connections = None

    def app(self) -> web.Application:
        async def anything(request: web.Request) -> web.Response:
            self.received.append((await request.read()).decode("utf-8", "replace"))
            return web.json_response(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "hi"},
                        }
                    ],
                }
            )

        application = web.Application()
        application.add_routes([web.route("*", "/{tail:.*}", anything)])
        return application


@contextmanager
def listening():
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", PORT))
    except OSError:
        pytest.skip(f"port {PORT} is in use here")
    finally:
        probe.close()
    with serve(Listener(), "127.0.0.1", PORT) as listener:
        yield listener


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for endpoint in ENDPOINTS.values():
        monkeypatch.delenv(endpoint.api_key_env, raising=False)
        monkeypatch.delenv(f"LLMPLEX_{endpoint.name.upper()}_BASE_URL", raising=False)


def client(**kwargs) -> AsyncClient:
    return AsyncClient(store=MemoryStore(), **kwargs)


async def test_a_bare_model_name_never_reaches_an_unconfigured_local_server():
    with listening() as listener:
        async with client() as plain:
            for model in ("llama3.2", None):  # Ollama's default model; the default model
                with pytest.raises(LLMplexError):
                    await plain.chat.completions.create(model=model, messages="my secret prompt")
        assert listener.received == []


async def test_a_named_or_configured_local_server_is_reached():
    with listening() as listener:
        async with client() as plain:
            answer = await plain.chat.completions.create(model="ollama:llama3.2", messages="named")
        assert answer.provider == "Ollama" and "named" in listener.received[-1]
        async with client(provider_options={"Ollama": {}}) as configured:
            answer = await configured.chat.completions.create(
                model="llama3.2", messages="configured"
            )
        assert answer.provider == "Ollama" and "configured" in listener.received[-1]
        async with client(
            router=Router(aliases={"local": ["ollama:llama3.2"]}), local_servers="configured"
        ) as aliased:
            await aliased.chat.completions.create(model="local", messages="aliased")
        assert "aliased" in listener.received[-1]


async def test_configured_only_refuses_a_named_unconfigured_local_server():
    with listening() as listener:
        async with client(local_servers="configured") as strict:
            with pytest.raises(InvalidRequestError) as info:
                await strict.chat.completions.create(model="ollama:llama3.2", messages="x")
        assert "LLMPLEX_OLLAMA_BASE_URL" in str(info.value) and info.value.param == "model"
        assert listener.received == []


def test_the_servers_clients_cannot_reach_unconfigured_local_ports(monkeypatch):
    with listening() as listener:
        with ServerThread(create_app(client())) as server:
            for model in ("ollama:llama3.2", "llama3.2"):
                response = httpx.post(
                    server.url + "/v1/chat/completions",
                    timeout=15,
                    json={"model": model, "messages": [{"role": "user", "content": "secret"}]},
                )
                assert response.status_code in (400, 404), response.text
                assert response.headers["x-should-retry"] == "false"
        assert listener.received == []
        monkeypatch.setenv("LLMPLEX_OLLAMA_BASE_URL", f"http://127.0.0.1:{PORT}/v1")
        with ServerThread(create_app(client())) as server:  # configured by its operator
            response = httpx.post(
                server.url + "/v1/chat/completions",
                timeout=15,
                json={"model": "ollama:llama3.2", "messages": [{"role": "user", "content": "ok"}]},
            )
            assert response.status_code == 200, response.text
        assert len(listener.received) == 1
