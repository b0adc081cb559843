"""OpenAICompatible, its named endpoints, and the OpenAI emulator (PROTOCOLS.md §5).

The emulator is checked against the official ``openai`` client; the provider is checked
against the emulator. Everything talks over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import json
import pickle
import time

import aiohttp
import openai
import pytest

from llmplex.emulators.openai import OpenAIEmulator
from llmplex.errors import (
    InvalidRequestError,
    MissingAuthError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseError,
    ResponseStatusError,
    StreamError,
)
from llmplex.providers.openai_compatible import (
    ENDPOINTS,
    Endpoint,
    OpenAICompatible,
    endpoint_provider,
)
from llmplex.testing import Fault, Script, cancel_mid_stream, eventually, serve
from llmplex.types import FinishReason, ResponseMeta, Usage

KEY = "sk-test-0123456789abcdef"


#: the usage details the emulator reports, as OpenAI does
DETAILS = {
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def meta(model: str) -> ResponseMeta:
    """What the emulator says of its answers (OpenAI's system_fingerprint, service_tier)."""
    return ResponseMeta(model, "fp_0ba0d124f1", "default")


async def collect(provider, model="gpt-4o-mini", messages="Hi", **kwargs):
    return [c async for c in provider.create_async_generator(model, messages, **kwargs)]


def v1(emulator) -> str:
    return emulator.url + "/v1"


def chat_bodies(emulator) -> list[dict]:
    return [r.json for r in emulator.requests_to("/chat/completions", "POST")]


@pytest.fixture
def keyed_emulator():
    """An emulator that demands ``Authorization: Bearer KEY`` (or GROQ's test key)."""
    with serve(OpenAIEmulator(api_keys={KEY, "gsk-from-env"})) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    # A developer's real keys must never reach the emulator or make a test pass.
    for endpoint in ENDPOINTS.values():
        monkeypatch.delenv(endpoint.api_key_env, raising=False)


# -- the emulator, seen through the official openai client --------------------------------


async def test_official_async_client_non_stream(openai_emulator):
    async with openai.AsyncOpenAI(
        base_url=v1(openai_emulator), api_key=KEY, max_retries=0
    ) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello please"}]
        )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello! How can I help you today?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 3
    assert completion.usage.completion_tokens == 7
    assert completion.usage.total_tokens == 10
    record = openai_emulator.requests_to("/v1/chat/completions", "POST")[0]
    assert record.headers["Authorization"] == f"Bearer {KEY}"


async def test_official_async_client_stream(openai_emulator):
    openai_emulator.script = Script(chunks=["Пр", "ивет, ", "世界 ", "🌍"])
    async with openai.AsyncOpenAI(
        base_url=v1(openai_emulator), api_key=KEY, max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Привет, 世界 🌍"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])


def test_official_sync_client(openai_emulator):
    with openai.OpenAI(base_url=v1(openai_emulator), api_key=KEY, max_retries=0) as client:
        completion = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        assert completion.choices[0].message.content == "Hello! How can I help you today?"
        assert completion.model == "gpt-4o"
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = list(stream)
        models = client.models.list()
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == (
        "Hello! How can I help you today?"
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)  # no include_usage: no usage chunk
    assert [m.id for m in models.data][:2] == ["gpt-4o-mini", "gpt-4o"]


def test_official_client_max_tokens_and_stop(openai_emulator):
    openai_emulator.script = Script("one two three four five six")
    with openai.OpenAI(base_url=v1(openai_emulator), api_key=KEY, max_retries=0) as client:
        cut = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "count"}], max_tokens=3
        )
        stopped = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "count"}], stop=[" four"]
        )
        streamed = list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "count"}],
                max_tokens=2,
                stream=True,
            )
        )
    assert cut.choices[0].message.content == "one two three"
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage.completion_tokens == 3
    assert stopped.choices[0].message.content == "one two three"
    assert stopped.choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == "one two"
    assert streamed[-1].choices[0].finish_reason == "length"


def test_official_client_errors(keyed_emulator):
    with openai.OpenAI(
        base_url=v1(keyed_emulator), api_key="sk-wrong-key-000000", max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError) as info:
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert "Incorrect API key provided" in info.value.message
    assert "sk-wrong-key-000000" not in info.value.message  # OpenAI masks the key

    keyed_emulator.push(
        Script(fault=Fault.http_status(429, retry_after=7)),
        Script(fault=Fault.error_event("overloaded", after=1)),
    )
    with openai.OpenAI(base_url=v1(keyed_emulator), api_key=KEY, max_retries=0) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
        assert limited.value.response.headers["Retry-After"] == "7"
        assert limited.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.APIError, match="overloaded"):
            for _ in client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
            ):
                pass
        with pytest.raises(openai.BadRequestError, match="Unrecognized request argument"):
            client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"top_k": 3},
            )


# -- the emulator on the wire ---------------------------------------------------------------


async def test_emulator_stream_bytes(openai_emulator):
    openai_emulator.script = Script(chunks=["Hi", " there"])
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(v1(openai_emulator) + "/chat/completions", json=body) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
            raw = (await resp.read()).decode()
    assert raw.endswith("\n\ndata: [DONE]\n\n")
    events = raw.split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events)
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert events[0].startswith('data: {"id":"chatcmpl-')  # compact JSON, as OpenAI sends
    assert [c["choices"][0]["delta"] for c in chunks[:4]] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "Hi"},
        {"content": " there"},
        {},
    ]
    assert chunks[3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[4]["choices"] == []
    assert chunks[4]["usage"]["prompt_tokens"] == 1
    assert chunks[4]["usage"]["completion_tokens"] == 2
    assert all(c["object"] == "chat.completion.chunk" and c["usage"] is None for c in chunks[:4])
    assert len({c["id"] for c in chunks}) == 1


async def test_emulator_validation_and_auth_errors(keyed_emulator):
    url = v1(keyed_emulator) + "/chat/completions"
    auth = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"model": "m", "messages": []}) as resp:
            assert resp.status == 401
            assert json.loads(await resp.text())["error"]["message"].startswith(
                "You didn't provide an API key"
            )
        async with session.post(url, json={"model": "m"}, headers=auth) as resp:
            assert resp.status == 400
            raw = await resp.text()
        async with session.post(
            url, json={"messages": [{"role": "user", "content": "x"}]}, headers=auth
        ) as resp:
            assert resp.status == 400
            assert "model" in json.loads(await resp.text())["error"]["message"]
        async with session.post(url, data=b"{nope", headers=auth) as resp:
            assert resp.status == 400
            assert "parse the JSON body" in await resp.text()
        async with session.post(
            url,
            headers=auth,
            json={
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "stream_options": {"include_usage": True},
            },
        ) as resp:
            assert resp.status == 400
        async with session.get(keyed_emulator.url + "/v1/nowhere", headers=auth) as resp:
            assert resp.status == 404
            assert "Invalid URL (GET /v1/nowhere)" in await resp.text()
    assert raw == (
        '{\n    "error": {\n        "message": "Missing required parameter: \'messages\'.",\n'
        '        "type": "invalid_request_error",\n        "param": "messages",\n'
        '        "code": "missing_required_parameter"\n    }\n}\n'
    )


# -- the provider: answers ------------------------------------------------------------------


async def test_plain_answer_order_and_body(openai_emulator):
    chunks = await collect(
        OpenAICompatible, "gpt-4o-mini", "Hi there", base_url=v1(openai_emulator)
    )
    assert "".join(c for c in chunks if isinstance(c, str)) == "Hello! How can I help you today?"
    assert chunks[0] == meta("gpt-4o-mini")  # the upstream's own model id comes first
    assert all(isinstance(c, str) for c in chunks[1:-2])
    assert chunks[-2] == Usage(prompt_tokens=2, completion_tokens=7, total_tokens=9, **DETAILS)
    assert chunks[-2].cached_tokens == 0 and chunks[-2].reasoning_tokens == 0
    assert chunks[-1] == FinishReason("stop")
    [body] = chat_bodies(openai_emulator)
    assert body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hi there"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    record = openai_emulator.requests_to("/chat/completions")[0]
    assert record.path == "/v1/chat/completions"
    assert "Authorization" not in record.headers  # generic class, no key: none sent


async def test_options_in_body_unknown_kwargs_refused(openai_emulator):
    caller_headers = {"X-Title": "llmplex-tests"}
    await collect(
        OpenAICompatible,
        "gpt-4o",
        "Hi",
        base_url=v1(openai_emulator),
        api_key=KEY,
        temperature=0.5,
        top_p=0.9,
        max_tokens=50,
        stop=["\n\n", "END"],
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        response_format={"type": "text"},
        extra_body={"user": "u-1"},
        headers=caller_headers,
    )
    for option in (
        {"host": "modal"},
        {"web_search": True},
        {"foo": "bar"},
        {"stream": False},
        {"temprature": 0.1},
    ):
        with pytest.raises(InvalidRequestError) as info:
            await collect(OpenAICompatible, "gpt-4o", "Hi", base_url=v1(openai_emulator), **option)
        assert info.value.param == next(iter(option))
    assert info.value.suggestions == ["temperature"]
    [body] = chat_bodies(openai_emulator)
    assert body == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["\n\n", "END"],
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "response_format": {"type": "text"},
        "user": "u-1",
    }
    record = openai_emulator.requests_to("/chat/completions")[0]
    assert record.headers["X-Title"] == "llmplex-tests"
    assert record.headers["Authorization"] == f"Bearer {KEY}"
    assert caller_headers == {"X-Title": "llmplex-tests"}  # the caller's dict is not touched


async def test_every_forwarded_field_is_sent_under_its_own_name():
    # Each of OpenAI's fields the provider forwards, given a value of its own, arrives
    # upstream under its own name (the provider lists their values in _FORWARDED's order).
    from aiohttp import web

    from llmplex.providers.openai_compatible import _FORWARDED

    bodies = []

    async def chat(request: web.Request) -> web.StreamResponse:
        bodies.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(
            b'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}'
            b"\n\ndata: [DONE]\n\n"
        )
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        chunks = await collect(
            OpenAICompatible,
            "m",
            "Hi",
            base_url=f"http://127.0.0.1:{port}/v1",
            **{name: f"value of {name}" for name in _FORWARDED},
        )
    finally:
        await runner.cleanup()
    assert chunks[0] == "ok"
    [body] = bodies
    assert {name: body.get(name) for name in _FORWARDED} == {
        name: f"value of {name}" for name in _FORWARDED
    }


async def test_extra_body_merges_and_none_removes():
    # A vLLM-like server: accepts fields OpenAI does not know, ignores stream_options.
    with serve(OpenAIEmulator(strict=False, honor_stream_options=False)) as emulator:
        chunks = await collect(
            OpenAICompatible,
            "Qwen/Qwen2.5-1.5B-Instruct",
            "Hi",
            base_url=v1(emulator),
            extra_body={"top_k": 20, "stream_options": None},
        )
    [body] = chat_bodies(emulator)
    assert body["top_k"] == 20 and "stream_options" not in body
    assert not any(isinstance(c, Usage) for c in chunks)
    assert chunks[-1] == FinishReason("stop")


async def test_multi_turn_history_and_unicode(openai_emulator):
    prompt = "Привет! 你好，世界 🌍👋🏽"
    openai_emulator.script = Script(chunks=["Здравствуй", "，", "朋友 🙂"])
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": prompt},
    ]
    chunks = await collect(OpenAICompatible, "gpt-4o", messages, base_url=v1(openai_emulator))
    assert "".join(c for c in chunks if isinstance(c, str)) == "Здравствуй，朋友 🙂"
    record = openai_emulator.requests_to("/chat/completions")[0]
    assert record.json["messages"] == messages
    assert json.loads(record.body)["messages"][-1]["content"] == prompt  # intact on the wire


async def test_length_finish_reason(openai_emulator):
    openai_emulator.script = Script("a b c d e f")
    chunks = await collect(
        OpenAICompatible, "gpt-4o", "Hi", base_url=v1(openai_emulator), max_tokens=2
    )
    assert "".join(c for c in chunks if isinstance(c, str)) == "a b"
    assert chunks[-1] == FinishReason("length")
    assert chunks[-2].completion_tokens == 2


async def test_sync_create_completion_and_create_async(openai_emulator):
    base = v1(openai_emulator)
    streamed = list(OpenAICompatible.create_completion("gpt-4o", "Hi", base_url=base))
    assert "".join(map(str, streamed)) == "Hello! How can I help you today?"
    assert streamed[-1] == FinishReason("stop")
    whole = list(OpenAICompatible.create_completion("gpt-4o", "Hi", stream=False, base_url=base))
    assert whole[0] == "Hello! How can I help you today?" and whole[-1] == FinishReason("stop")
    assert await OpenAICompatible.create_async("gpt-4o", "Hi", base_url=base) == (
        "Hello! How can I help you today?"
    )


# -- the provider: server variants ----------------------------------------------------------


async def test_non_stream_json_fallback(openai_emulator):
    openai_emulator.push(Script("Whole answer at once", extra={"stream": False}))
    chunks = await collect(OpenAICompatible, "llama3.2", "Hi", base_url=v1(openai_emulator))
    assert chunks == [
        meta("llama3.2"),
        "Whole answer at once",
        Usage(prompt_tokens=1, completion_tokens=4, **DETAILS),
        FinishReason("stop"),
    ]
    assert chat_bodies(openai_emulator)[0]["stream"] is True  # we did ask to stream


async def test_stream_options_ignored_and_no_done(openai_emulator):
    openai_emulator.push(Script("Hi", extra={"usage": False, "done": False}))
    chunks = await collect(OpenAICompatible, "m", "Hi", base_url=v1(openai_emulator))
    assert chunks == [meta("m"), "Hi", FinishReason("stop")]


async def test_connection_lost_after_finish_reason_is_harmless(openai_emulator):
    # The answer (and its usage) arrived; only [DONE] was lost with the connection.
    openai_emulator.push(Script("Hi there", extra={"done": "disconnect"}))
    chunks = await collect(OpenAICompatible, "m", "Hi", base_url=v1(openai_emulator))
    assert chunks == [meta("m"), "Hi", " there", Usage(1, 2, **DETAILS), FinishReason("stop")]


async def test_clean_eof_without_finish_is_an_error(openai_emulator):
    openai_emulator.push(Script("Hi", extra={"finish": False, "done": False}))
    with pytest.raises(ResponseError, match="ended early") as info:
        await collect(OpenAICompatible, "m", "Hi", base_url=v1(openai_emulator))
    assert "OpenAICompatible" in str(info.value)
    assert not isinstance(info.value, ResponseStatusError)


# -- the provider: faults -------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,error,text",
    [
        (400, ResponseStatusError, "Invalid request."),
        (401, MissingAuthError, "Incorrect API key provided"),
        (404, ResponseStatusError, "does not exist"),
        (500, ResponseStatusError, "The server had an error"),
        (503, ResponseStatusError, "overloaded"),
    ],
)
async def test_http_status_faults(openai_emulator, status, error, text):
    openai_emulator.push(Script(fault=Fault.http_status(status)))
    with pytest.raises(error) as info:
        await collect(OpenAICompatible, "gpt-4o", "Hi", base_url=v1(openai_emulator))
    assert info.value.status == status
    assert info.value.provider == "OpenAICompatible"
    assert "OpenAICompatible" in str(info.value) and f"HTTP {status}" in str(info.value)
    assert text in str(info.value)


async def test_rate_limit_fault(openai_emulator):
    openai_emulator.push(Script(fault=Fault.http_status(429, retry_after=12)))
    with pytest.raises(RateLimitError) as info:
        await collect(OpenAICompatible, "gpt-4o", "Hi", base_url=v1(openai_emulator))
    assert info.value.retry_after == 12 and info.value.status == 429
    assert "Rate limit reached" in str(info.value) and "OpenAICompatible" in str(info.value)


async def test_error_event_fault(openai_emulator):
    openai_emulator.push(
        Script("one two three", fault=Fault.error_event("model overloaded", after=2))
    )
    seen = []
    with pytest.raises(StreamError, match="model overloaded") as info:
        async for chunk in OpenAICompatible.create_async_generator(
            "gpt-4o", "Hi", base_url=v1(openai_emulator)
        ):
            seen.append(chunk)
    assert seen == [meta("gpt-4o"), "one", " two"]
    assert "OpenAICompatible" in str(info.value)


async def test_disconnect_fault(openai_emulator):
    openai_emulator.push(Script("one two three", fault=Fault.disconnect(after=1)))
    with pytest.raises(ProviderConnectionError) as info:
        await collect(OpenAICompatible, "gpt-4o", "Hi", base_url=v1(openai_emulator))
    assert "OpenAICompatible" in str(info.value)
    await eventually(lambda: openai_emulator.open_streams == 0)


async def test_malformed_fault(openai_emulator):
    openai_emulator.push(Script("one two", fault=Fault.malformed(after=1)))
    with pytest.raises(ResponseError, match="malformed") as info:
        await collect(OpenAICompatible, "gpt-4o", "Hi", base_url=v1(openai_emulator))
    assert "OpenAICompatible" in str(info.value)


async def test_stall_fault(openai_emulator):
    openai_emulator.push(Script("one two", fault=Fault.stall(30, after=1)))
    with pytest.raises(ProviderTimeoutError) as info:
        await collect(OpenAICompatible, "gpt-4o", "Hi", base_url=v1(openai_emulator), timeout=0.3)
    assert "OpenAICompatible" in str(info.value)


@pytest.mark.parametrize(
    "fault,error",
    [
        (Fault.disconnect(), ProviderConnectionError),
        (Fault.malformed(), ResponseError),
        (Fault.error_event("boom"), ResponseStatusError),
    ],
)
async def test_faults_of_non_streaming_servers(openai_emulator, fault, error):
    openai_emulator.push(Script("one two", fault=fault, extra={"stream": False}))
    with pytest.raises(error) as info:
        await collect(OpenAICompatible, "gpt-4o", "Hi", base_url=v1(openai_emulator))
    assert info.value.provider == "OpenAICompatible"


async def test_unknown_model_on_strict_server():
    with serve(OpenAIEmulator(models=["only-this"])) as emulator:
        with pytest.raises(ResponseStatusError, match="does not exist") as info:
            await collect(OpenAICompatible, "gpt-5", "Hi", base_url=v1(emulator))
        assert info.value.status == 404
        assert "".join(
            map(str, await collect(OpenAICompatible, "only-this", "Hi", base_url=v1(emulator)))
        )


# -- the provider: early stop and cancellation ----------------------------------------------


async def test_early_stop_closes_the_stream(openai_emulator):
    openai_emulator.script = Script("word " * 400, delay=0.01)
    agen = OpenAICompatible.create_async_generator("gpt-4o", "Hi", base_url=v1(openai_emulator))
    assert isinstance(await agen.__anext__(), ResponseMeta)
    assert isinstance(await agen.__anext__(), str)
    await eventually(lambda: openai_emulator.open_streams == 1)
    await agen.aclose()
    await eventually(lambda: openai_emulator.open_streams == 0)


async def test_cancellation_closes_the_stream(openai_emulator):
    openai_emulator.script = Script("word " * 400, delay=0.01)
    await cancel_mid_stream(
        OpenAICompatible.create_async_generator("gpt-4o", "Hi", base_url=v1(openai_emulator)),
        first_within=5,
    )
    await eventually(lambda: openai_emulator.open_streams == 0)


def test_sync_early_stop(openai_emulator):
    openai_emulator.script = Script("word " * 400, delay=0.01)
    stream = OpenAICompatible.create_completion("gpt-4o", "Hi", base_url=v1(openai_emulator))
    assert next(stream) == meta("gpt-4o")
    assert next(stream) == "word"
    stream.close()
    deadline = time.monotonic() + 5
    while openai_emulator.open_streams and time.monotonic() < deadline:
        time.sleep(0.01)
    assert openai_emulator.open_streams == 0


# -- named endpoints, keys and base URLs ----------------------------------------------------


def test_endpoints_are_data():
    assert list(ENDPOINTS) == [
        "OpenAI",
        "OpenRouter",
        "Groq",
        "Together",
        "DeepInfra",
        "Mistral",
        "Ollama",
        "vLLM",
        "LlamaCpp",
        "LMStudio",
    ]
    expected = {
        "OpenAI": ("https://api.openai.com/v1", "OPENAI_API_KEY", True),
        "OpenRouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", True),
        "Groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY", True),
        "Together": ("https://api.together.xyz/v1", "TOGETHER_API_KEY", True),
        "DeepInfra": ("https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY", True),
        "Mistral": ("https://api.mistral.ai/v1", "MISTRAL_API_KEY", True),
        "Ollama": ("http://localhost:11434/v1", "OLLAMA_API_KEY", False),
        "vLLM": ("http://localhost:8000/v1", "VLLM_API_KEY", False),
        "LlamaCpp": ("http://localhost:8080/v1", "LLAMACPP_API_KEY", False),
        "LMStudio": ("http://localhost:1234/v1", "LMSTUDIO_API_KEY", False),
    }
    for name, (base, env, needs_auth) in expected.items():
        e = ENDPOINTS[name]
        assert isinstance(e, Endpoint) and e.name == name
        assert (e.base_url, e.api_key_env, e.needs_auth, e.local) == (
            base,
            env,
            needs_auth,
            not needs_auth,
        )
        assert e.default_model and e.label and e.url.startswith("https://")
    with pytest.raises(Exception):
        ENDPOINTS["Groq"].base_url = "http://evil"  # frozen


def test_endpoint_provider_classes():
    groq = endpoint_provider("Groq")
    assert groq is endpoint_provider("groq")  # cached, case-insensitive
    assert issubclass(groq, OpenAICompatible) and groq.__name__ == "Groq"
    assert groq.label == "Groq" and groq.working and groq.needs_auth
    assert groq.default_model == "llama-3.1-8b-instant"
    assert groq.get_model("") == "llama-3.1-8b-instant"
    assert groq.get_model("any/model-name") == "any/model-name"  # open-ended catalogue
    assert groq.url == "https://groq.com"
    assert endpoint_provider("Ollama").get_model(None) == "llama3.2"
    assert endpoint_provider("OpenAI").default_model == "gpt-4o-mini"
    assert not endpoint_provider("LMStudio").needs_auth
    from llmplex.providers.openai_compatible import Mistral

    assert Mistral is endpoint_provider("Mistral")
    assert pickle.loads(pickle.dumps(groq)) is groq
    with pytest.raises(InvalidRequestError, match="unknown endpoint"):
        endpoint_provider("NoSuchCloud")


async def test_api_key_from_env_of_named_endpoint(keyed_emulator, monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "gsk-from-env")
    groq = endpoint_provider("Groq")
    chunks = await collect(groq, "", "Hi", base_url=v1(keyed_emulator))
    assert chunks[-1] == FinishReason("stop")
    record = keyed_emulator.requests_to("/chat/completions")[0]
    assert record.headers["Authorization"] == "Bearer gsk-from-env"
    assert record.json["model"] == "llama-3.1-8b-instant"
    # An explicit api_key wins over the environment.
    await collect(groq, "", "Hi", base_url=v1(keyed_emulator), api_key=KEY)
    assert keyed_emulator.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


async def test_missing_key_for_needs_auth_endpoint(openai_emulator):
    with pytest.raises(MissingAuthError) as info:
        await collect(endpoint_provider("OpenRouter"), "", "Hi", base_url=v1(openai_emulator))
    assert "OPENROUTER_API_KEY" in str(info.value) and "OpenRouter" in str(info.value)
    assert openai_emulator.requests == []  # refused before any request
    with pytest.raises(MissingAuthError, match="DEEPINFRA_API_KEY"):
        await endpoint_provider("DeepInfra").list_models(base_url=v1(openai_emulator))


async def test_local_endpoint_needs_no_key(openai_emulator, monkeypatch):
    ollama = endpoint_provider("Ollama")
    await collect(ollama, "", "Hi", base_url=v1(openai_emulator))
    record = openai_emulator.requests[-1]
    assert "Authorization" not in record.headers and record.json["model"] == "llama3.2"
    monkeypatch.setenv("OLLAMA_API_KEY", "ollama-secret")  # optional key, sent when set
    await collect(ollama, "", "Hi", base_url=v1(openai_emulator))
    assert openai_emulator.requests[-1].headers["Authorization"] == "Bearer ollama-secret"


async def test_wrong_key_never_in_errors(keyed_emulator):
    secret = "sk-secret-value-that-must-not-leak-42"
    with pytest.raises(MissingAuthError) as info:
        await collect(
            endpoint_provider("OpenAI"), "", "Hi", base_url=v1(keyed_emulator), api_key=secret
        )
    assert info.value.status == 401 and "Incorrect API key provided" in str(info.value)
    # A careless server that echoes the whole key back: the provider scrubs it.
    with serve(OpenAIEmulator(api_keys={secret})) as careless:
        careless.push(Script(fault=Fault.http_status(500, f"bad key {secret} in request")))
        with pytest.raises(ResponseStatusError) as echoed:
            await collect(
                endpoint_provider("OpenAI"), "", "Hi", base_url=v1(careless), api_key=secret
            )
    assert "bad key *** in request" in str(echoed.value)
    for error in (info.value, echoed.value):
        for text in (str(error), repr(error), error.body or "", str(error.args)):
            assert secret not in text


async def test_named_endpoint_base_url_env_override(openai_emulator, monkeypatch):
    monkeypatch.setenv("LLMPLEX_LLAMACPP_BASE_URL", v1(openai_emulator))
    chunks = await collect(endpoint_provider("LlamaCpp"), "", "Hi")
    assert chunks[-1] == FinishReason("stop")
    assert openai_emulator.requests[-1].json["model"] == "default"
    monkeypatch.setenv("LLMPLEX_LMSTUDIO_BASE_URL", v1(openai_emulator) + "/")
    assert await endpoint_provider("LMStudio").create_async("", "Hi")
    assert len(chat_bodies(openai_emulator)) == 2


async def test_generic_needs_a_base_url(openai_emulator, monkeypatch):
    with pytest.raises(InvalidRequestError, match="base_url is required"):
        await collect(OpenAICompatible, "m", "Hi")
    with pytest.raises(InvalidRequestError, match="model"):
        await collect(OpenAICompatible, "", "Hi", base_url=v1(openai_emulator))
    monkeypatch.setenv("LLMPLEX_OPENAICOMPATIBLE_BASE_URL", v1(openai_emulator))
    assert await OpenAICompatible.create_async("m", "Hi") == "Hello! How can I help you today?"


async def test_bad_arguments(openai_emulator):
    base = v1(openai_emulator)
    with pytest.raises(InvalidRequestError):
        await collect(OpenAICompatible, "m", [], base_url=base)
    with pytest.raises(InvalidRequestError, match="stop"):
        await collect(OpenAICompatible, "m", "Hi", base_url=base, stop=5)
    assert openai_emulator.requests == []
    # A wrong base path reaches the server, which says so (OpenAI's 404 for unknown URLs).
    with pytest.raises(ResponseStatusError, match="Invalid URL") as info:
        await collect(OpenAICompatible, "m", "Hi", base_url=openai_emulator.url)
    assert info.value.status == 404


# -- list_models ----------------------------------------------------------------------------


async def test_list_models(keyed_emulator):
    base = v1(keyed_emulator)
    assert await OpenAICompatible.list_models(base_url=base, api_key=KEY) == [
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-4.1-mini",
        "gpt-3.5-turbo",
    ]
    assert keyed_emulator.requests[-1].path == "/v1/models"
    with pytest.raises(MissingAuthError):
        await OpenAICompatible.list_models(base_url=base, api_key="sk-nope-nope-nope")
    keyed_emulator.push(Script(fault=Fault.http_status(503, step="models")))
    with pytest.raises(ResponseStatusError) as info:
        await OpenAICompatible.list_models(base_url=base, api_key=KEY)
    assert info.value.status == 503 and "OpenAICompatible" in str(info.value)


async def test_list_models_custom_catalogue():
    with serve(OpenAIEmulator(models=["llama3.2", "qwen2.5:7b"])) as emulator:
        assert await endpoint_provider("Ollama").list_models(base_url=v1(emulator)) == [
            "llama3.2",
            "qwen2.5:7b",
        ]
