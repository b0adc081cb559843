"""Model names users type (issue 11, item 3): LiteLLM's ``provider/model``, provider typos
and honest aliases, through AsyncClient against OpenAI emulators standing for three
services (each emulator records what it received)."""

from __future__ import annotations

import pytest

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.emulators.openai import OpenAIEmulator
from llmplex.errors import InvalidRequestError, ModelNotFoundError
from llmplex.providers import AllenAI
from llmplex.providers.endpoints import ENDPOINTS
from llmplex.routing import Router
from llmplex.testing import Script, serve


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    for endpoint in ENDPOINTS.values():
        monkeypatch.delenv(endpoint.api_key_env, raising=False)


@pytest.fixture
def services():
    with (
        serve(OpenAIEmulator(Script("from openai"))) as openai_,
        serve(OpenAIEmulator(Script("from groq"))) as groq,
        serve(OpenAIEmulator(Script("from openrouter"))) as openrouter,
    ):
        yield {"OpenAI": openai_, "Groq": groq, "OpenRouter": openrouter}


def client(services) -> AsyncClient:
    return AsyncClient(
        router=Router(),
        store=MemoryStore(),
        provider_options={
            name: {"base_url": emulator.url + "/v1", "api_key": f"key-{name}"}
            for name, emulator in services.items()
        },
    )


def chats(emulator) -> list:
    return emulator.requests_to("/chat/completions")


async def test_litellm_style_groq_prefix_goes_to_groq(services):
    async with client(services) as c:
        answer = await c.chat.completions.create(model="groq/llama-3.1-8b-instant", messages="Hi")
    assert answer.provider == "Groq"
    [request] = chats(services["Groq"])
    assert request.json["model"] == "llama-3.1-8b-instant"
    assert not chats(services["OpenAI"]) and not chats(services["OpenRouter"])


async def test_openai_prefix_is_openai_never_openrouter(services):
    # "openai/gpt-4o-mini" is also an OpenRouter id: the user with both keys means OpenAI
    async with client(services) as c:
        answer = await c.chat.completions.create(model="openai/gpt-4o-mini", messages="Hi")
    assert answer.provider == "OpenAI"
    [request] = chats(services["OpenAI"])
    assert request.json["model"] == "gpt-4o-mini"
    assert not chats(services["OpenRouter"])


async def test_openrouter_ids_are_reached_through_openrouter_named(services):
    async with client(services) as c:
        first = await c.chat.completions.create(
            model="openrouter:openai/gpt-4o-mini", messages="Hi"
        )
        second = await c.chat.completions.create(
            model="openai/gpt-4o-mini", messages="Hi", provider="OpenRouter"
        )
    assert first.provider == second.provider == "OpenRouter"
    assert [r.json["model"] for r in chats(services["OpenRouter"])] == ["openai/gpt-4o-mini"] * 2
    assert not chats(services["OpenAI"])


def test_slash_in_a_model_id_is_not_a_provider():
    router = Router()
    [route] = [r for r in router.resolve("meta/meta-llama-3-8b-instruct") if r.name == "Replicate"]
    assert route.model == "meta/meta-llama-3-8b-instruct" and not route.named
    [route] = router.resolve("together:meta-llama/Llama-3.3-70B-Instruct-Turbo")
    assert (route.name, route.model) == ("Together", "meta-llama/Llama-3.3-70B-Instruct-Turbo")
    [route] = router.resolve("Ollama/llama3.2:1b")  # case-insensitive prefix
    assert (route.name, route.model) == ("Ollama", "llama3.2:1b")


async def test_a_provider_prefix_typo_is_an_unknown_provider(services):
    async with client(services) as c:
        with pytest.raises(InvalidRequestError) as info:
            await c.chat.completions.create(model="alenai:tulu-3-405b", messages="Hi")
    assert "unknown provider 'alenai'" in str(info.value)
    assert "did you mean AllenAI?" in str(info.value)
    assert info.value.suggestions == ["AllenAI"] and info.value.param == "model"
    assert not any(e.requests for e in services.values())


def test_ollama_style_names_with_a_colon_still_work():
    router = Router()
    with pytest.raises(ModelNotFoundError):  # no provider lists it: a model, not a typo
        router.resolve("llama3.2:1b")
    [route] = router.resolve("ollama:llama3.2:1b")
    assert (route.name, route.model) == ("Ollama", "llama3.2:1b")
    [route] = router.resolve("llama3.2:1b", provider="Ollama")
    assert route.model == "llama3.2:1b"


def test_a_slash_prefix_near_a_provider_is_suggested():
    with pytest.raises(ModelNotFoundError) as info:
        Router().resolve("gorq/llama-3.1-8b-instant")
    assert info.value.suggestions[0] == "groq:llama-3.1-8b-instant"


async def test_a_provider_argument_typo_has_a_did_you_mean(services):
    async with client(services) as c:
        with pytest.raises(InvalidRequestError) as info:
            await c.chat.completions.create(model="gpt-4o-mini", messages="Hi", provider="Replicat")
    assert "did you mean Replicate?" in str(info.value)
    assert info.value.param == "provider" and info.value.suggestions == ["Replicate"]
    with pytest.raises(InvalidRequestError) as info:
        Router().resolve("x", provider="nope")
    assert "unknown provider 'nope'" in str(info.value) and not info.value.suggestions


def test_aliases_name_only_the_model_served():
    assert not any(alias.startswith("llama") for alias in AllenAI.model_aliases)
    assert AllenAI.get_model("olmo-3.1-32b") == AllenAI.default_model
    assert "llama-3.1-405b" not in Router().catalog()
