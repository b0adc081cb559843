"""Embeddings: ``client.embeddings.create`` in the library and ``POST /v1/embeddings`` on
``llmplex serve`` with the official ``openai`` SDK, against the OpenAI emulator."""

from __future__ import annotations

import base64
import json
import math
import struct

import httpx
import openai
import pytest

from llmplex import (
    AllProvidersFailed,
    AsyncClient,
    Client,
    InvalidRequestError,
    ModelNotFoundError,
)
from llmplex.emulators.openai_embeddings import vector
from llmplex.errors import ResponseStatusError
from llmplex.server import ServerThread, create_app
from llmplex.server.emulated import EmulatedServices, emulated_client
from llmplex.testing import Fault, Script


@pytest.fixture(scope="module")
def services():
    with EmulatedServices(["openai", "allenai"]) as running:
        yield running


@pytest.fixture
def emulator(services):
    services.emulators["openai"].reset()
    return services.emulators["openai"]


@pytest.fixture
def server(services, emulator):
    with (
        ServerThread(create_app(emulated_client(services))) as running,
        openai.OpenAI(
            base_url=running.url + "/v1", api_key="unused", max_retries=0, timeout=15
        ) as sdk,
    ):
        sdk.url = running.url
        yield sdk


def bodies(emulator):
    return [
        json.loads(r.text)
        for r in emulator.requests
        if r.method == "POST" and r.path == "/v1/embeddings"
    ]


def norm(values):
    return math.sqrt(sum(v * v for v in values))


# -- through the server, with the openai SDK --------------------------------------------------


def test_sdk_embeddings_through_the_server(server, emulator):
    result = server.embeddings.create(
        model="text-embedding-3-small", input=["The food was delicious", "Hi"]
    )
    assert [item.index for item in result.data] == [0, 1]
    assert [len(item.embedding) for item in result.data] == [1536, 1536]
    assert result.model == "text-embedding-3-small"
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (5, 5)
    assert result.model_extra["provider"] == "OpenAI"
    # the SDK asks for base64 (and decodes it): forwarded as asked
    assert bodies(emulator)[-1] == {
        "model": "text-embedding-3-small",
        "input": ["The food was delicious", "Hi"],
        "encoding_format": "base64",
    }
    assert result.data[0].embedding == pytest.approx(
        vector("text-embedding-3-small", "The food was delicious")
    )
    assert norm(result.data[1].embedding) == pytest.approx(1.0, abs=1e-5)


def test_floats_dimensions_tokens_and_user_are_forwarded(server, emulator):
    result = server.embeddings.create(
        model="openai:text-embedding-3-large",
        input="Hello",
        dimensions=8,
        encoding_format="float",
        user="u-1",
    )
    [item] = result.data
    assert len(item.embedding) == 8 and norm(item.embedding) == pytest.approx(1.0, abs=1e-5)
    # shortened as text-embedding-3 does: the start of the full vector, renormalised
    full = vector("text-embedding-3-large", "Hello")
    scale = norm(full[:8])
    assert item.embedding == pytest.approx([v / scale for v in full[:8]], abs=1e-6)
    assert bodies(emulator)[-1] == {
        "model": "text-embedding-3-large",
        "input": "Hello",
        "dimensions": 8,
        "encoding_format": "float",
        "user": "u-1",
    }
    tokens = server.embeddings.create(
        model="text-embedding-3-small", input=[[1, 2, 3], [4]], encoding_format="float"
    )
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 4


def test_raw_base64_answer_is_the_float32_vector(server):
    response = httpx.post(
        server.url + "/v1/embeddings",
        timeout=15,
        json={"model": "text-embedding-3-small", "input": "Hi", "encoding_format": "base64"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == vector("text-embedding-3-small", "Hi")


@pytest.mark.parametrize(
    ("model", "status", "param", "needle"),
    [
        ("allenai:tulu3-405b", 400, "model", "AllenAI: no embeddings API"),
        ("groq:nomic-embed-text", 400, "model", "Groq: no embeddings API"),
        ("text-embedding-4-small", 404, "model", "text-embedding-3-small"),
    ],
)
def test_a_provider_without_embeddings_is_named(server, model, status, param, needle):
    with pytest.raises(openai.APIStatusError) as failed:
        server.embeddings.create(model=model, input="Hi")
    assert failed.value.status_code == status
    assert failed.value.body["param"] == param and needle in failed.value.body["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "text-embedding-3-small"}, "input"),
        ({"model": "text-embedding-3-small", "input": []}, "input"),
        (
            {"model": "text-embedding-3-small", "input": "Hi", "encoding_format": "hex"},
            "encoding_format",
        ),
        ({"model": "text-embedding-3-small", "input": "Hi", "dimensions": 0}, "dimensions"),
        ({"model": "text-embedding-3-small", "input": "Hi", "temperature": 1}, "temperature"),
        ({"input": "Hi"}, "model"),
    ],
)
def test_bad_requests_are_400(server, emulator, body, param):
    response = httpx.post(server.url + "/v1/embeddings", json=body, timeout=15)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not bodies(emulator)


def test_upstream_refusals_keep_their_meaning(server, emulator):
    # ada-002 takes no dimensions: the emulator's 400, passed on as a 400
    with pytest.raises(openai.BadRequestError, match="does not support specifying dimensions"):
        server.embeddings.create(model="text-embedding-ada-002", input="Hi", dimensions=8)
    emulator.push(Script(fault=Fault.http_status(429, step="embeddings")))
    with pytest.raises(openai.RateLimitError):
        server.embeddings.create(model="text-embedding-3-small", input="Hi")


# -- the library ----------------------------------------------------------------------------


async def test_async_client_embeddings(services, emulator):
    async with emulated_client(services) as client:
        result = await client.embeddings.create(
            model="text-embedding-3-small", input="Hello", encoding_format="float"
        )
    assert result.object == "list" and result.provider == "OpenAI"
    assert result.data[0].embedding == vector("text-embedding-3-small", "Hello")
    assert result.usage.total_tokens == 1
    assert result.model_dump()["data"][0]["object"] == "embedding"


def test_sync_client_embeddings(services, emulator):
    with Client(provider_options=services.provider_options()) as client:
        result = client.embeddings.create(
            model="mistral:mistral-embed", input=["a", "b"], encoding_format="base64"
        )
    assert [type(item.embedding) for item in result.data] == [str, str]
    assert result.provider == "Mistral" and result.model == "mistral-embed"


async def test_library_errors(services, emulator):
    client = emulated_client(services)
    with pytest.raises(InvalidRequestError, match="AllenAI: no embeddings API") as refused:
        await client.embeddings.create(model="allenai:tulu3-405b", input="Hi")
    assert refused.value.param == "model"
    with pytest.raises(ModelNotFoundError) as unknown:
        await client.embeddings.create(model="text-embedding-3-smal", input="Hi")
    assert "text-embedding-3-small" in unknown.value.suggestions
    with pytest.raises(InvalidRequestError, match="dimensions"):
        await client.embeddings.create(model="text-embedding-3-small", input="Hi", dimensions=-1)
    with pytest.raises(InvalidRequestError, match="did you mean 'dimensions'"):
        await client.embeddings.create(model="text-embedding-3-small", input="Hi", dimension=8)
    # a server's client reaches only the local servers its operator configured
    policed = AsyncClient(provider_options={}, local_servers="configured")
    with pytest.raises(InvalidRequestError, match="not configured"):
        await policed.embeddings.create(model="llamacpp:nomic-embed-text", input="Hi")
    # the upstream's own refusal, typed
    with pytest.raises(ResponseStatusError) as rejected:
        await client.embeddings.create(model="text-embedding-ada-002", input="Hi", dimensions=8)
    assert rejected.value.status == 400


async def test_provider_names_the_route(services, emulator):
    client = emulated_client(services)
    result = await client.embeddings.create(
        model="openai:text-embedding-3-small", input="Hi", provider="OpenAI"
    )
    assert result.provider == "OpenAI"
    assert bodies(emulator)[-1]["model"] == "text-embedding-3-small"
    result = await client.embeddings.create(
        model="nomic-embed-text", input="Hi", provider=["Ollama"]
    )
    assert result.provider == "Ollama" and bodies(emulator)[-1]["model"] == "nomic-embed-text"
    with pytest.raises(InvalidRequestError, match="names provider OpenAI"):
        await client.embeddings.create(
            model="openai:text-embedding-3-small", input="Hi", provider="Mistral"
        )


async def test_a_bare_name_listed_by_several_providers_falls_back(services, emulator):
    # Together and DeepInfra both list this model; the first answers 503, the next serves.
    emulator.push(Script(fault=Fault.http_status(503, step="embeddings")))
    client = emulated_client(services)
    result = await client.embeddings.create(model="BAAI/bge-large-en-v1.5", input="Hi")
    assert result.provider == "DeepInfra" and len(bodies(emulator)) == 2
    emulator.push(Script(fault=Fault.http_status(503, step="embeddings")))
    emulator.push(Script(fault=Fault.http_status(503, step="embeddings")))
    with pytest.raises(AllProvidersFailed) as failed:
        await client.embeddings.create(model="BAAI/bge-large-en-v1.5", input="Hi")
    assert [name for name, _ in failed.value.errors] == ["Together", "DeepInfra"]
