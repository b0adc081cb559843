"""Credentials and endpoints belong to their provider: a fallback never receives another
provider's key or host, from the library or through the server.

Two OpenAI emulators stand for two services (OpenAI and Groq), each demanding its own key;
they record every request, so the tests read exactly what each service received.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.emulators.openai import OpenAIEmulator
from llmplex.errors import InvalidRequestError
from llmplex.providers.endpoints import ENDPOINTS
from llmplex.routing import Router
from llmplex.server import ServerThread, create_app
from llmplex.testing import Fault, Script, serve

OPENAI_KEY = "sk-openai-0123456789abcdef"
GROQ_KEY = "gsk-groq-fedcba9876543210"
CALLER_KEY = "sk-caller-5555555555555555"
ALIAS = {"smart": ["openai:gpt-4o-mini", "groq:llama-3.1-8b-instant"]}


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    for endpoint in ENDPOINTS.values():
        monkeypatch.delenv(endpoint.api_key_env, raising=False)


@pytest.fixture
def two_services():
    with (
        serve(OpenAIEmulator(api_keys={OPENAI_KEY})) as first,
        serve(OpenAIEmulator(api_keys={GROQ_KEY})) as second,
    ):
        yield first, second


def configured(first, second) -> AsyncClient:
    return AsyncClient(
        router=Router(aliases=ALIAS),
        store=MemoryStore(),
        provider_options={
            "OpenAI": {"base_url": first.url + "/v1", "api_key": OPENAI_KEY},
            "Groq": {"base_url": second.url + "/v1", "api_key": GROQ_KEY},
        },
    )


def everything_received(emulator) -> str:
    return "\n".join(json.dumps(r.headers) + r.text for r in emulator.requests)


async def test_a_fallback_uses_its_own_key_and_host(two_services):
    first, second = two_services
    first.push(Script(fault=Fault.http_status(503)))  # OpenAI fails: Groq takes over
    async with configured(first, second) as client:
        answer = await client.chat.completions.create(model="smart", messages="Hi")
    assert answer.provider == "Groq"
    [to_groq] = second.requests_to("/chat/completions")
    assert to_groq.headers["Authorization"] == f"Bearer {GROQ_KEY}"
    assert OPENAI_KEY not in everything_received(second)
    assert GROQ_KEY not in everything_received(first)
    assert len(first.requests_to("/chat/completions")) == 1


@pytest.mark.parametrize("option", ["api_key", "base_url", "headers", "proxy"])
async def test_per_call_credentials_are_refused_for_a_chain(two_services, option):
    first, second = two_services
    value = {
        "api_key": CALLER_KEY,
        "base_url": first.url + "/v1",
        "headers": {"Authorization": f"Bearer {CALLER_KEY}"},
        "proxy": "http://127.0.0.1:9",
    }[option]
    async with configured(first, second) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.chat.completions.create(model="smart", messages="Hi", **{option: value})
    assert info.value.param == option
    assert "OpenAI" in str(info.value) and "Groq" in str(info.value)
    assert CALLER_KEY not in str(info.value)
    assert not first.requests and not second.requests  # nothing was sent anywhere


async def test_per_call_credentials_apply_to_the_one_provider_named(two_services):
    first, second = two_services
    first.api_keys = frozenset({CALLER_KEY})
    async with configured(first, second) as client:
        answer = await client.chat.completions.create(
            model="openai:gpt-4o-mini", messages="Hi", api_key=CALLER_KEY
        )
        assert answer.provider == "OpenAI"
        # provider= with one name is as explicit as a prefix
        await client.chat.completions.create(
            model="gpt-4o-mini", provider="OpenAI", messages="Hi", api_key=CALLER_KEY
        )
    sent = [r.headers["Authorization"] for r in first.requests_to("/chat/completions")]
    assert sent == [f"Bearer {CALLER_KEY}"] * 2
    assert not second.requests


def test_the_server_never_sends_a_callers_key_down_a_chain(two_services):
    first, second = two_services
    first.push(Script(fault=Fault.http_status(503)))
    app = create_app(configured(first, second), allow_upstream_overrides=True)
    with ServerThread(app) as server:
        with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as oai:
            with pytest.raises(openai.BadRequestError) as info:
                oai.chat.completions.create(
                    model="smart",
                    messages=[{"role": "user", "content": "Hi"}],
                    extra_body={"api_key": CALLER_KEY},
                )
            assert info.value.body["param"] == "api_key"
            assert info.value.response.headers["x-should-retry"] == "false"
            assert not first.requests and not second.requests
            answer = oai.chat.completions.create(
                model="smart", messages=[{"role": "user", "content": "Hi"}]
            )
            assert answer.model_extra["provider"] == "Groq"
        raw = httpx.get(server.url + "/v1/providers").text
    assert GROQ_KEY not in raw and OPENAI_KEY not in raw
    assert CALLER_KEY not in everything_received(first) + everything_received(second)
    assert OPENAI_KEY not in everything_received(second)
