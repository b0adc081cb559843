"""Model lists (issue 11, item 2): a keyed OpenAI-compatible provider serves any name it is
given and discovers its upstream's models (``GET /models``: cached, short deadline,
configured providers only); ``models.list()``, ``GET /v1/models`` and ``llmplex models``
list what is routable now, ``all`` lists everything. Against OpenAI emulators standing for
OpenAI, Groq and OpenRouter, configured through the environment as a user would."""

from __future__ import annotations

import asyncio
import socket
from contextlib import contextmanager

import httpx
import openai
import pytest
from aiohttp import web

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.emulators.openai import DEFAULT_CREATED, OpenAIEmulator
from llmplex.errors import MissingAuthError, ModelNotFoundError
from llmplex.providers.discovery import MAX_DISCOVERED_MODELS, ModelCache
from llmplex.providers.endpoints import ENDPOINTS
from llmplex.routing import Router
from llmplex.server import ServerThread, create_app
from llmplex.server.emulated import EmulatedServices, emulated_client
from llmplex.testing import Fault, Script, serve

#: what each emulated upstream lists: ids in its own style, with created times
GROQ_MODELS = {"llama-3.1-8b-instant": 1693721698, "llama-3.3-70b-versatile": 1733447754}
OPENROUTER_MODELS = {
    "openai/gpt-4o-mini": 1721260800,
    "openrouter/auto": 1699401600,
    "anthropic/claude-3.5-sonnet": 1729555200,
}
KEYS = {
    "OpenAI": "sk-openai-secret-0123456789",
    "Groq": "gsk_groq-secret-0123456789",
    "OpenRouter": "sk-or-secret-0123456789",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for endpoint in ENDPOINTS.values():
        monkeypatch.delenv(endpoint.api_key_env, raising=False)
        monkeypatch.delenv(f"LLMPLEX_{endpoint.name.upper()}_BASE_URL", raising=False)
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.delenv("LLMPLEX_OPENAICOMPATIBLE_BASE_URL", raising=False)


@pytest.fixture
def upstreams():
    with (
        serve(OpenAIEmulator(Script("from openai"), api_keys=[KEYS["OpenAI"]])) as openai_,
        serve(
            OpenAIEmulator(Script("from groq"), models=GROQ_MODELS, api_keys=[KEYS["Groq"]])
        ) as groq,
        serve(
            OpenAIEmulator(
                Script("from openrouter"), models=OPENROUTER_MODELS, api_keys=[KEYS["OpenRouter"]]
            )
        ) as openrouter,
    ):
        yield {"OpenAI": openai_, "Groq": groq, "OpenRouter": openrouter}


def configure(monkeypatch, upstreams, *names):
    """Set the key and base URL of each named provider in the environment."""
    for name in names:
        endpoint = ENDPOINTS[name]
        monkeypatch.setenv(endpoint.api_key_env, KEYS[name])
        monkeypatch.setenv(f"LLMPLEX_{name.upper()}_BASE_URL", upstreams[name].url + "/v1")


def client(**kwargs) -> AsyncClient:
    return AsyncClient(store=MemoryStore(), config=False, **kwargs)


def listings(emulator) -> list:
    return emulator.requests_to("/v1/models", "GET")


def chats(emulator) -> list:
    return emulator.requests_to("/chat/completions")


# -- listing -------------------------------------------------------------------------------


async def test_only_routable_models_are_listed_with_upstream_created(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "OpenAI", "Groq")
    models = {m.id: m for m in await client().models.list()}
    assert models["gpt-4o"].providers == ["OpenAI"]
    assert models["gpt-4o"].created == DEFAULT_CREATED["gpt-4o"]
    assert models["llama-3.3-70b-versatile"].providers == ["Groq"]
    assert models["llama-3.3-70b-versatile"].created == GROQ_MODELS["llama-3.3-70b-versatile"]
    assert all(m.available and m.reason is None and m.created for m in models.values())
    providers = {p for m in models.values() for p in m.providers}
    assert providers == {"OpenAI", "Groq"}  # not OpenRouter (no key), not AllenAI...
    assert not listings(upstreams["OpenRouter"])


async def test_all_lists_everything_saying_why(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "OpenAI")
    models = {m.id: m for m in await client().models.list(all=True)}
    assert models["gpt-4o"].available
    assert not models["h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3"].available
    assert models["h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3"].reason == "H2o: marked not working"
    assert models["molmo2-8b"].reason.startswith("AllenAI: no credentials (set AI2_API_KEY")
    assert models["llama-3.1-8b-instant"].reason == "Groq: no API key (set GROQ_API_KEY)"
    assert models["llama3.2"].reason.startswith("Ollama: a local server that is not configured")
    assert models["meta/meta-llama-3-70b-instruct"].reason == (
        "Replicate: no API key (set REPLICATE_API_TOKEN)"
    )
    # unconfigured providers are not asked for their lists, even with all=True
    assert not listings(upstreams["Groq"]) and not listings(upstreams["OpenRouter"])


async def test_with_nothing_configured_nothing_is_listed():
    assert len(await client().models.list()) == 0
    assert len(await client().models.list(all=True)) > 30


async def test_discovery_is_cached(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "OpenAI")
    c = client()
    first = await c.models.list()
    second = await c.models.list()
    assert [m.id for m in first] == [m.id for m in second]
    assert len(listings(upstreams["OpenAI"])) == 1
    [request] = listings(upstreams["OpenAI"])
    assert request.headers["Authorization"] == f"Bearer {KEYS['OpenAI']}"
    # another key is another configuration: asked again
    monkeypatch.setenv("OPENAI_API_KEY", KEYS["OpenAI"] + "-rotated")
    await c.models.list()
    assert len(listings(upstreams["OpenAI"])) == 2


async def test_a_failing_upstream_is_not_asked_on_every_listing(monkeypatch):
    broken = OpenAIEmulator(Script(fault=Fault.http_status(503, "down", step="models")))
    with serve(broken):
        monkeypatch.setenv("OPENAI_API_KEY", KEYS["OpenAI"])
        monkeypatch.setenv("LLMPLEX_OPENAI_BASE_URL", broken.url + "/v1")
        c = client()
        for _ in range(3):
            models = {m.id: m for m in await c.models.list()}
            assert models["gpt-4o-mini"].available  # its static row still counts
        assert len(listings(broken)) == 1
        assert "503" in c.router.discovered.error("OpenAI")
        assert KEYS["OpenAI"] not in c.router.discovered.error("OpenAI")


async def test_the_last_good_list_serves_routing_while_a_refresh_fails(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "Groq")
    now = [0.0]
    c = client(router=Router(discovered=ModelCache(clock=lambda: now[0])))
    await c.models.list()
    groq = upstreams["Groq"]
    groq.script = Script("from groq", fault=Fault.http_status(500, step="models"))
    now[0] += 601  # past the TTL: asked again, and it fails
    await c.models.list()
    assert len(listings(groq)) == 2 and c.router.discovered.error("Groq")
    [route] = c.router.resolve("llama-3.3-70b-versatile")
    assert route.name == "Groq"


async def test_discovery_has_a_short_deadline(monkeypatch):
    async def never(request):
        await asyncio.sleep(60)
        return web.json_response({})

    with serve(_App([web.get("/v1/models", never)])) as stalled:
        monkeypatch.setenv("GROQ_API_KEY", KEYS["Groq"])
        monkeypatch.setenv("LLMPLEX_GROQ_BASE_URL", stalled.url + "/v1")
        c = client(router=Router(discovered=ModelCache(timeout=0.2)))
        models = {m.id for m in await c.models.list()}
        assert models == {"llama-3.1-8b-instant"}  # the static row
        assert c.router.discovered.error("Groq") == "timed out"


async def test_a_huge_model_list_is_not_read_whole(monkeypatch):
    sent = [0]

    async def endless(request):
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"object": "list", "data": [')
        piece = b'{"id": "m", "object": "model", "created": 1, "owned_by": "x"},' * 1000
        try:
            while sent[0] < 1024**3:
                await response.write(piece)
                sent[0] += len(piece)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    with serve(_App([web.get("/v1/models", endless)])) as hostile:
        monkeypatch.setenv("GROQ_API_KEY", KEYS["Groq"])
        monkeypatch.setenv("LLMPLEX_GROQ_BASE_URL", hostile.url + "/v1")
        c = client(router=Router(discovered=ModelCache(timeout=30)))
        await c.models.list()
        assert "too large" in c.router.discovered.error("Groq")
        assert sent[0] < 1024**3


async def test_at_most_so_many_models_are_kept(monkeypatch):
    many = {f"model-{i:05d}": 1700000000 + i for i in range(MAX_DISCOVERED_MODELS + 500)}
    with serve(OpenAIEmulator(models=many)) as big:
        monkeypatch.setenv("GROQ_API_KEY", KEYS["Groq"])
        monkeypatch.setenv("LLMPLEX_GROQ_BASE_URL", big.url + "/v1")
        c = client()
        await c.models.list()
        listed = c.router.discovered.listed("Groq")
        assert len(listed) == MAX_DISCOVERED_MODELS
        assert listed["model-00007"].created == 1700000007


def test_the_cache_shows_no_credentials():
    cache = ModelCache()
    key = cache.key("OpenAI", "https://api.openai.com/v1", KEYS["OpenAI"])
    assert KEYS["OpenAI"] not in repr(key) and KEYS["OpenAI"] not in repr(cache)
    assert "api.openai.com" not in repr(cache)
    assert cache.key("OpenAI", "https://x/v1", "a") != cache.key("OpenAI", "https://x/v1", "b")


# -- nothing is asked of what the user did not configure ----------------------------------


class _App:
    """Any HTTP service on a local port: it records the paths that reach it."""

    name = "listener"

    def __init__(self, routes=None) -> None:
        self.paths: list[str] = []
        self._routes = routes
        self.url: str | None = None

    def app(self) -> web.Application:
        async def anything(request):
            self.paths.append(request.path)
            return web.json_response({"object": "list", "data": [{"id": "hijacked"}]})

        @web.middleware
        async def record(request, handler):
            self.paths.append(request.path)
            return await handler(request)

        application = web.Application(middlewares=[record] if self._routes else [])
        application.add_routes(self._routes or [web.route("*", "/{tail:.*}", anything)])
        return application


@contextmanager
def on_port(port):
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))
    except OSError:
        pytest.skip(f"port {port} is in use here")
    finally:
        probe.close()
    with serve(_App(), "127.0.0.1", port) as listener:
        yield listener


async def test_unconfigured_rows_are_never_asked_for_their_models(monkeypatch):
    with on_port(11434) as ollama:  # Ollama's port, Ollama not configured
        c = client()
        await c.models.list()
        await c.models.list(all=True)
        with pytest.raises(ModelNotFoundError):  # the miss path does not ask it either
            await c.chat.completions.create(model="hijacked", messages="secret")
        assert ollama.paths == []
        # a base URL without the key OpenAI needs: not asked (nothing it could answer)
        monkeypatch.setenv("LLMPLEX_OPENAI_BASE_URL", ollama.url + "/v1")
        await c.models.list()
        assert ollama.paths == []
        # configured: asked, and its models are listed
        monkeypatch.setenv("LLMPLEX_OLLAMA_BASE_URL", ollama.url + "/v1")
        models = {m.id: m.providers for m in await c.models.list()}
        assert ollama.paths == ["/v1/models"] and models["hijacked"] == ["Ollama"]


# -- names ----------------------------------------------------------------------------------


async def test_bare_gpt_4o_with_an_openai_key_goes_to_openai(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "OpenAI", "OpenRouter")
    answer = await client().chat.completions.create(model="gpt-4o", messages="Hi")
    assert answer.provider == "OpenAI" and answer.choices[0].message.content == "from openai"
    [request] = chats(upstreams["OpenAI"])
    assert request.json["model"] == "gpt-4o"
    assert not chats(upstreams["OpenRouter"])


async def test_a_bare_name_only_the_upstream_lists_is_found_by_discovery(monkeypatch):
    listed = {"gpt-4o-mini": 1721172741, "gpt-5-preview-emulated": 1754000000}
    with serve(OpenAIEmulator(Script("from openai"), models=listed)) as upstream:
        monkeypatch.setenv("OPENAI_API_KEY", KEYS["OpenAI"])
        monkeypatch.setenv("LLMPLEX_OPENAI_BASE_URL", upstream.url + "/v1")
        c = client()
        for _ in range(2):  # the first one discovers (on the miss), the second reads it
            answer = await c.chat.completions.create(model="gpt-5-preview-emulated", messages="Hi")
            assert answer.provider == "OpenAI"
        assert len(listings(upstream)) == 1
        assert [r.json["model"] for r in chats(upstream)] == ["gpt-5-preview-emulated"] * 2
        models = {m.id: m for m in await c.models.list()}
        assert models["gpt-5-preview-emulated"].created == 1754000000
        assert "gpt-4.1-nano" not in models  # the upstream's list replaces the static row
        assert len(listings(upstream)) == 1


async def test_groq_slash_model_goes_to_groq(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "OpenAI", "Groq", "OpenRouter")
    answer = await client().chat.completions.create(
        model="groq/llama-3.3-70b-versatile", messages="Hi"
    )
    assert answer.provider == "Groq"
    [request] = chats(upstreams["Groq"])
    assert request.json["model"] == "llama-3.3-70b-versatile"
    assert request.headers["Authorization"] == f"Bearer {KEYS['Groq']}"


async def test_openai_slash_model_is_openai_even_when_openrouter_lists_it(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "OpenAI", "OpenRouter")
    c = client()
    models = {m.id: m.providers for m in await c.models.list()}
    assert models["openai/gpt-4o-mini"] == ["OpenRouter"]  # OpenRouter's own id
    answer = await c.chat.completions.create(model="openai/gpt-4o-mini", messages="Hi")
    assert answer.provider == "OpenAI"
    [request] = chats(upstreams["OpenAI"])
    assert request.json["model"] == "gpt-4o-mini"
    assert not chats(upstreams["OpenRouter"])
    answer = await c.chat.completions.create(model="openrouter:openai/gpt-4o-mini", messages="Hi")
    assert answer.provider == "OpenRouter"
    # OpenRouter's own id starting with its name stays whole
    answer = await c.chat.completions.create(model="openrouter/auto", messages="Hi")
    assert answer.provider == "OpenRouter"
    assert [r.json["model"] for r in chats(upstreams["OpenRouter"])] == [
        "openai/gpt-4o-mini",
        "openrouter/auto",
    ]


async def test_a_keyed_provider_serves_any_model_it_is_given(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "OpenAI")
    answer = await client().chat.completions.create(model="openai:ft:gpt-4o:acme:1", messages="Hi")
    assert answer.provider == "OpenAI"
    assert chats(upstreams["OpenAI"])[-1].json["model"] == "ft:gpt-4o:acme:1"


async def test_a_bare_unknown_name_is_not_fanned_out(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "OpenAI", "Groq", "OpenRouter")
    c = client()
    with pytest.raises(ModelNotFoundError) as info:
        await c.chat.completions.create(model="llama-3.3-70b-versatil", messages="secret")
    assert "llama-3.3-70b-versatile" in info.value.suggestions  # discovered, then suggested
    assert not any(chats(u) for u in upstreams.values())
    assert all(len(listings(u)) == 1 for u in upstreams.values())
    with pytest.raises(ModelNotFoundError):  # the lists are fresh: not asked again
        await c.chat.completions.create(model="no-such-model", messages="secret")
    assert all(len(listings(u)) == 1 for u in upstreams.values())


async def test_a_bare_openai_model_is_never_sent_to_another_vendor(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "OpenRouter")  # no OpenAI key
    with pytest.raises(MissingAuthError) as info:
        await client().chat.completions.create(model="gpt-4o", messages="Hi")
    assert "OPENAI_API_KEY" in str(info.value)
    assert not chats(upstreams["OpenRouter"])


# -- the server, through the official SDK ----------------------------------------------------


def test_v1_models_lists_only_routable_models(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "OpenAI", "Groq")
    with (
        ServerThread(create_app(client())) as server,
        openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as oai,
    ):
        models = {m.id: m for m in oai.models.list()}
        assert models["gpt-4o"].created == DEFAULT_CREATED["gpt-4o"]
        assert models["gpt-4o"].owned_by == "OpenAI"
        assert models["gpt-4o"].model_extra["providers"] == ["OpenAI"]
        assert models["llama-3.3-70b-versatile"].model_extra["providers"] == ["Groq"]
        assert {p for m in models.values() for p in m.model_extra["providers"]} == {
            "OpenAI",
            "Groq",
        }
        assert all(m.model_extra["available"] for m in models.values())
        assert "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3" not in models
        assert "claude" not in str(models)
        oai.models.list()
        assert len(listings(upstreams["OpenAI"])) == 1  # cached across requests
        assert oai.models.retrieve("gpt-4o").created == DEFAULT_CREATED["gpt-4o"]
        with pytest.raises(openai.NotFoundError) as info:
            oai.models.retrieve("h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3")
        assert "not available" in str(info.value) and "marked not working" in str(info.value)

        everything = oai.models.list(extra_query={"all": "true"}).data
        table = {m.id: m.model_extra for m in everything}
        falcon = table["h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3"]
        assert falcon["available"] is False
        assert falcon["reason"] == "H2o: marked not working"
        assert table["gpt-4o"]["available"] is True and "reason" not in table["gpt-4o"]
        plain = httpx.get(server.url + "/v1/models", timeout=15).json()
        assert plain["object"] == "list" and len(plain["data"]) == len(models)


def test_in_emulate_mode_every_emulated_provider_is_routable():
    with EmulatedServices() as services:
        c = emulated_client(services)
        with (
            ServerThread(create_app(c, emulated=True)) as server,
            openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as oai,
        ):
            models = {m.id: m.model_extra["providers"] for m in oai.models.list()}
            providers = {p for names in models.values() for p in names}
            assert {
                "AllenAI",
                "Replicate",
                "H2o",
                "OpenAssistant",
                "OpenAI",
                "Groq",
                "Ollama",
            } <= providers
            assert "olmo-3.1-32b-instruct" in models
            everything = oai.models.list(extra_query={"all": "true"}).data
            assert all(m.model_extra["available"] for m in everything)


async def test_two_listings_at_once_ask_the_upstream_once(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "Groq")
    c = client()
    first, second = await asyncio.gather(c.models.list(), c.models.list())
    assert [m.id for m in first] == [m.id for m in second]
    assert "llama-3.3-70b-versatile" in {m.id for m in first}
    assert len(listings(upstreams["Groq"])) == 1


async def test_a_named_provider_refusing_a_model_starts_no_discovery(monkeypatch, upstreams):
    configure(monkeypatch, upstreams, "OpenAI")
    with pytest.raises(ModelNotFoundError):
        await client().chat.completions.create(model="allenai:no-such", messages="Hi")
    assert not listings(upstreams["OpenAI"])


async def test_a_configured_local_server_serves_the_names_it_lists(monkeypatch):
    tags = {"llama3.2:1b": 1730000000, "qwen2.5:7b": 1730000001}
    with serve(OpenAIEmulator(Script("from ollama"), models=tags)) as ollama:
        monkeypatch.setenv("LLMPLEX_OLLAMA_BASE_URL", ollama.url + "/v1")
        answer = await client().chat.completions.create(model="qwen2.5:7b", messages="Hi")
        assert answer.provider == "Ollama"
        assert [r.json["model"] for r in chats(ollama)] == ["qwen2.5:7b"]
        [request] = listings(ollama)
        assert "Authorization" not in request.headers  # no key set: none sent


def test_llmplex_models_lists_what_is_routable(monkeypatch, upstreams, tmp_path):
    import json
    import subprocess
    import sys

    configure(monkeypatch, upstreams, "Groq")
    monkeypatch.setenv("LLMPLEX_CONFIG", str(tmp_path / "config.toml"))
    (tmp_path / "config.toml").write_text("")
    monkeypatch.delenv("LLMPLEX_EMULATE", raising=False)

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "llmplex", "models", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    result = run()
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["MODEL", "PROVIDERS"]
    assert {r.split()[0]: r.split()[1] for r in rows} == {
        "llama-3.1-8b-instant": "Groq",
        "llama-3.3-70b-versatile": "Groq",
    }
    listed = json.loads(run("--json").stdout)
    assert {
        "id": "llama-3.3-70b-versatile",
        "providers": ["Groq"],
        "created": GROQ_MODELS["llama-3.3-70b-versatile"],
    } in listed
    everything = run("--all").stdout
    assert "no: OpenAI: no API key (set OPENAI_API_KEY)" in everything
    emulated = run("--emulate", "--json")
    assert "EMULATED" in emulated.stderr
    table = {m["id"]: m for m in json.loads(emulated.stdout)}
    assert "molmo2-8b" in table and "AllenAI" in table["molmo2-8b"]["providers"]
    assert "llama-3.3-70b-versatile" not in table  # the emulators, not the user's Groq
