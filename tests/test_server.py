"""The OpenAI-compatible server: uvicorn on an ephemeral port, driven with the official
``openai`` client (and httpx for raw bodies), every provider behind it on its emulator."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
from fuzzing import fuzz_route

from llmplex.emulators.openai import OpenAIEmulator
from llmplex.routing import Router
from llmplex.server import EMULATED_NOTICE, ServerThread, create_app
from llmplex.server.emulated import EmulatedServices, emulated_client
from llmplex.testing import Fault, Script, interrupt, serve, wait_until

ANSWER = "The capital of France is Paris. Привет, 你好 😀!"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
# provider prefix model -> emulator name
MODELS = {
    "openai:gpt-4o-mini": "openai",
    "allenai:olmo-3.1-32b-instruct": "allenai",
    "replicate:meta/meta-llama-3-8b-instruct": "replicate",
    "h2o:falcon-40b": "h2o",
    "openassistant:OA_SFT_Llama_30B_6": "openassistant",
}


@pytest.fixture
def services():
    """Every emulator, answering ANSWER."""
    with EmulatedServices(script=lambda name: Script(ANSWER)) as served:
        yield served


class Running:
    """A served app: its URL, the emulators behind it, the llmplex client it uses."""

    def __init__(self, url, services, client):
        self.url = url
        self.services = services
        self.client = client
        self.emu = services.emulators
        self._clients = []

    def openai(self, key="unused", **options):
        """An ``openai`` client for this server, closed when the server stops (an unclosed
        one leaves keep-alive sockets for the garbage collector to warn about later)."""
        client = openai.OpenAI(
            base_url=self.url + "/v1",
            api_key=key,
            max_retries=0,
            timeout=options.pop("timeout", 15),
            **options,
        )
        self._clients.append(client)
        return client

    def close(self):
        for client in self._clients:
            client.close()

    def post(self, body=None, **kwargs):
        kwargs.setdefault("timeout", 15)
        return httpx.post(self.url + "/v1/chat/completions", json=body, **kwargs)


@contextmanager
def running(services, *, client_options=None, **app_options):
    client = emulated_client(services, **(client_options or {}))
    with ServerThread(create_app(client, **app_options)) as server:
        served = Running(server.url, services, client)
        try:
            yield served
        finally:
            served.close()


@pytest.fixture
def server(services):
    with running(services, emulated=True) as served:
        yield served


def error_of(response):
    """The OpenAI-shaped error object of a response (and check the shape)."""
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# -- answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(MODELS))
def test_every_provider_non_stream_and_stream(server, model):
    oai = server.openai()
    completion = oai.chat.completions.create(model=model, messages=MESSAGES)
    assert completion.choices[0].message.content == ANSWER
    assert completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.usage.total_tokens > 0
    assert completion.model_extra["provider"].lower() == model.split(":")[0]

    chunks = list(oai.chat.completions.create(model=model, messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ANSWER
    assert len(chunks) > 3
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)  # no usage unless asked for


def test_upstream_connections_are_kept_alive_between_requests(server):
    emu = server.emu["openai"]
    oai = server.openai()
    for stream in (False, False, True):
        answer = oai.chat.completions.create(
            model="openai:gpt-4o-mini", messages=MESSAGES, stream=stream
        )
        if stream:
            list(answer)
    assert len(emu.requests) == 3
    assert len({tuple(r.peer) for r in emu.requests}) == 1  # one pooled connection


def test_stream_include_usage_is_a_final_chunk_with_empty_choices(server):
    oai = server.openai()
    chunks = list(
        oai.chat.completions.create(
            model="openai:gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *body, last = chunks
    assert (
        last.choices == []
        and last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens > 0
    )
    assert all(c.usage is None for c in body)
    assert body[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in body) == ANSWER


async def test_async_openai_client_streams(server):
    async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as oai:
        stream = await oai.chat.completions.create(
            model="allenai:olmo-3.1-32b-instruct", messages=MESSAGES, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == ANSWER


def test_unicode_prompt_reaches_the_upstream_intact(server):
    prompt = "Привет! 你好 😀 — «quotes»"
    server.openai().chat.completions.create(
        model="openai:gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}],
    )
    sent = server.emu["openai"].requests_to("/chat/completions")[-1].json["messages"]
    assert sent == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]


def test_content_parts_and_every_openai_field_are_forwarded(server):
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}]
    completion = server.openai().chat.completions.create(
        model="openai:gpt-4o-mini",
        user="someone",
        seed=7,
        logprobs=False,
        max_completion_tokens=50,
        metadata={"k": "v"},
        store=False,
        service_tier="auto",
        reasoning_effort="low",
        logit_bias={"50256": -100},
        messages=[{"role": "user", "content": parts}],
    )
    assert completion.choices[0].message.content == ANSWER
    sent = server.emu["openai"].requests_to("/chat/completions")[-1].json
    assert sent["messages"] == [{"role": "user", "content": parts}]
    for name, value in (
        ("seed", 7),
        ("user", "someone"),
        ("logprobs", False),
        ("max_completion_tokens", 50),
        ("metadata", {"k": "v"}),
        ("store", False),
        ("service_tier", "auto"),
        ("reasoning_effort", "low"),
        ("logit_bias", {"50256": -100}),
    ):
        assert sent[name] == value, name
    assert "max_tokens" not in sent  # max_completion_tokens stays itself


def test_vendor_fields_go_to_compatible_upstreams_and_are_refused_elsewhere(server):
    oai = server.openai()
    # The OpenAI emulator is strict, as OpenAI is: it refuses the field, which proves it
    # was forwarded; the refusal comes back as a 400.
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model="openai:gpt-4o-mini",
            messages=MESSAGES,
            extra_body={"some_future_field": {"x": 1}},
        )
    assert "some_future_field" in str(info.value)
    sent = server.emu["openai"].requests_to("/chat/completions")[-1].json
    assert sent["some_future_field"] == {"x": 1}
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model="allenai:olmo-3.1-32b-instruct",
            messages=MESSAGES,
            extra_body={"some_future_field": 1},
        )
    assert info.value.body["param"] == "some_future_field"
    assert not server.emu["allenai"].requests
    # a provider option is a vendor field that the provider declares: passed as such
    oai.chat.completions.create(
        model="replicate:meta/meta-llama-3-8b-instruct", messages=MESSAGES, extra_body={"top_k": 5}
    )
    created = server.emu["replicate"].requests_to("/predictions", "POST")[-1].json
    assert created["input"]["top_k"] == 5


def test_model_list_and_retrieve(server):
    oai = server.openai()
    models = {m.id: m for m in oai.models.list()}
    assert "gpt-4o-mini" in models and "molmo2-8b" in models
    assert models["molmo2-8b"].model_extra["providers"] == ["AllenAI"]
    assert oai.models.retrieve("molmo2-8b").id == "molmo2-8b"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")


def test_health_and_openapi_schema(server):
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["emulated"] is True
    schema = httpx.get(server.url + "/openapi.json").json()
    post = schema["paths"]["/v1/chat/completions"]["post"]
    assert "requestBody" in post and "400" in post["responses"]
    assert {"/v1/models", "/v1/providers", "/health"} <= set(schema["paths"])
    assert not any(path.startswith(("/docs", "/redoc")) for path in schema["paths"])


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_everything_from_the_server_itself(server, page):
    """Offline (``serve --emulate`` with no internet) a CDN script would leave them blank."""
    import re

    response = httpx.get(server.url + page)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    html = response.text
    assert "/openapi.json" in html
    linked = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    linked += re.findall(r"""(?:url):\s*["']([^"']+)["']""", html)
    assert linked, html
    assert not [url for url in linked if "://" in url or url.startswith("//")], linked
    assets = [url for url in linked if url.endswith((".js", ".css", ".png"))]
    assert any(url.endswith(".js") for url in assets)
    for url in assets:
        asset = httpx.get(server.url + url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url


def test_providers_show_health_cooldown_and_emulation(server):
    oai = server.openai()
    server.emu["replicate"].push(Script(ANSWER, fault=Fault.http_status(429, retry_after=30)))
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(
            model="replicate:meta/meta-llama-3-8b-instruct", messages=MESSAGES
        )
    oai.chat.completions.create(model="openai:gpt-4o-mini", messages=MESSAGES)
    response = httpx.get(server.url + "/v1/providers")
    data = response.json()
    assert data["emulated"] is True
    table = {p["name"]: p for p in data["data"]}
    assert {"AllenAI", "Replicate", "OpenAssistant", "H2o", "OpenAI", "Groq"} <= set(table)
    replicate = table["Replicate"]
    assert replicate["working"] is True and replicate["needs_auth"] is True
    assert replicate["emulated"] is True and replicate["configured"] is True
    assert replicate["cooling_down"] is True and 25 < replicate["cooldown_remaining"] <= 30
    assert replicate["health"]["failures"] == 1 and "429" in replicate["health"]["last_error"]
    assert replicate["capabilities"]["tools"] == "emulated"  # by llmplex, through the prompt
    assert table["OpenAI"]["capabilities"]["response_format"] == ["json_object", "json_schema"]
    assert table["Groq"]["capabilities"]["n"] is False
    assert table["OpenAI"]["health"]["successes"] == 1 and not table["OpenAI"]["cooling_down"]
    # configured with the emulator's token, AllenAI is usable; it says why when it is not
    ai2 = table["AllenAI"]
    assert ai2["working"] is True and ai2["not_working_reason"] is None
    assert "olmo-3.1-32b-instruct" in ai2["models"]
    assert table["H2o"]["working"] is False and table["H2o"]["not_working_reason"]
    assert table["OpenAssistant"]["needs_auth"] is True
    # the dummy credentials of the emulated providers never show
    for secret in ("r8_emulated", "sk-emulated", "emulated-session", "ai2-emulated-token"):
        assert secret not in response.text


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, param, needle",
    [
        ({"model": "openai:gpt-4o-mini"}, "messages", "Missing required parameter: 'messages'"),
        ({"messages": []}, "messages", "at least 1"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "'user'"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "string"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content", "string"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].image_url.url",
            "http(s) URL",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]},
            "messages[0].content[0].type",
            "not a content part type",
        ),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id", "required"),
        ({"messages": MESSAGES, "temprature": 0.5}, "temprature", "did you mean 'temperature'"),
        ({"messages": MESSAGES, "top_logprobs": 2}, "top_logprobs", "logprobs"),
        (
            {"messages": MESSAGES, "tool_choice": {"type": "function", "function": {"name": "f"}}},
            "tool_choice",
            "not in tools",
        ),
        ({"messages": MESSAGES, "temperature": 3}, "temperature", "less than or equal to 2"),
        ({"messages": MESSAGES, "temperature": "1"}, "temperature", "number"),
        ({"messages": MESSAGES, "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"messages": MESSAGES, "stream": "yes"}, "stream", "boolean"),
        ({"messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        ({"messages": MESSAGES, "n": 200}, "n", "less than or equal to 128"),
        (
            {"messages": MESSAGES, "stream_options": {"include_usage": True}},
            "stream_options",
            "only allowed when 'stream' is enabled",
        ),
    ],
)
def test_bad_requests_are_400_in_openai_shape(server, body, param, needle):
    response = server.post(body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert needle in error["message"]
    assert not server.services.emulators["openai"].requests  # nothing went upstream


def test_malformed_json_and_non_object_bodies(server):
    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=b'{"messages": [',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_json"
    for raw in (b"[]", b'"text"', b"null"):
        response = httpx.post(
            server.url + "/v1/chat/completions",
            content=raw,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400, raw
        error_of(response)
    response = httpx.get(server.url + "/v1/nowhere")
    assert response.status_code == 404 and "Invalid URL" in error_of(response)["message"]
    response = httpx.get(server.url + "/v1/chat/completions")
    assert response.status_code == 405
    error_of(response)


def test_unknown_model_is_404_with_suggestions(server):
    with pytest.raises(openai.NotFoundError) as info:
        server.openai().chat.completions.create(model="olmo-3.1-32b-instrukt", messages=MESSAGES)
    error = info.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "Did you mean" in error["message"] and "olmo-3.1-32b-instruct" in error["message"]
    assert info.value.response.headers["x-should-retry"] == "false"
    # an unknown provider is the caller's mistake: 400
    with pytest.raises(openai.BadRequestError, match="unknown provider"):
        server.openai().chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_body={"provider": "Nope"}
        )


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_rate_limit_is_429_with_retry_after(server, stream):
    server.emu["openai"].push(Script(fault=Fault.http_status(429, retry_after=7)))
    with pytest.raises(openai.RateLimitError) as info:
        result = server.openai().chat.completions.create(
            model="openai:gpt-4o-mini", messages=MESSAGES, stream=stream
        )
        list(result)
    assert info.value.status_code == 429
    assert info.value.response.headers["Retry-After"] == "7"
    assert info.value.body["code"] == "rate_limit_exceeded"
    assert "OpenAI" in info.value.body["message"]


@pytest.mark.parametrize(
    "fault, status, code",
    [
        (Fault.http_status(500), 502, "upstream_error"),
        (Fault.http_status(401), 502, "upstream_auth_error"),
        (Fault.http_status(400, "context too long"), 400, "upstream_rejected_request"),
        (Fault.disconnect(), 502, "upstream_connection_error"),
        (Fault.malformed(), 502, "upstream_error"),
        (Fault.error_event("overloaded"), 502, "upstream_stream_error"),
    ],
)
def test_upstream_failures_map_to_statuses(server, fault, status, code):
    server.emu["openai"].push(Script(ANSWER, fault=fault))
    response = server.post({"model": "openai:gpt-4o-mini", "messages": MESSAGES, "stream": True})
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code and "OpenAI" in error["message"]
    # SDKs retry 5xx by default: not an upstream key that is missing or refused
    final = code in ("upstream_auth_error", "upstream_rejected_request")
    assert (response.headers.get("x-should-retry") == "false") == final


def test_upstream_timeout_is_504(services):
    with running(services, client_options={"timeout": 0.5}) as server:
        server.emu["openai"].push(Script(ANSWER, fault=Fault.stall(5)))
        with pytest.raises(openai.APIStatusError) as info:
            server.openai().chat.completions.create(model="openai:gpt-4o-mini", messages=MESSAGES)
        assert info.value.status_code == 504
        assert info.value.body["code"] == "upstream_timeout"


def test_all_providers_failed_takes_the_telling_status(services):
    router = Router(
        aliases={"duo": ["openai:gpt-4o-mini", "groq:gpt-4o-mini"]}, include_not_working=True
    )
    with running(services, client_options={"router": router}) as server:
        openai_emu = server.emu["openai"]  # serves both OpenAI and Groq
        openai_emu.push(
            Script(fault=Fault.http_status(429, retry_after=9)),
            Script(fault=Fault.http_status(429, retry_after=4)),
        )
        response = server.post({"model": "duo", "messages": MESSAGES})
        assert response.status_code == 429 and response.headers["Retry-After"] == "4"
        assert "all providers failed" in error_of(response)["message"]
        router.health.clear()
        openai_emu.push(Script(fault=Fault.http_status(429)), Script(fault=Fault.http_status(500)))
        response = server.post({"model": "duo", "messages": MESSAGES})
        assert response.status_code == 502
        assert error_of(response)["code"] == "all_providers_failed"
        # both now cool down: skipped, and said so with a 503 and when to come back
        response = server.post({"model": "duo", "messages": MESSAGES})
        assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1


def test_error_after_the_stream_started_is_an_sse_error_event(server):
    server.emu["openai"].push(Script(ANSWER, fault=Fault.error_event("model overloaded", after=3)))
    with httpx.stream(
        "POST",
        server.url + "/v1/chat/completions",
        timeout=15,
        json={"model": "openai:gpt-4o-mini", "messages": MESSAGES, "stream": True},
    ) as response:
        assert response.status_code == 200
        raw = response.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    kind, data = events[-2].split("\n")
    assert kind == "event: error"
    error = json.loads(data.removeprefix("data: "))["error"]
    assert "model overloaded" in error["message"] and error["code"] == "upstream_stream_error"
    text = [
        json.loads(e.removeprefix("data: "))["choices"][0]["delta"]["content"] for e in events[:-2]
    ]
    assert "".join(text) == "".join(Script(ANSWER).pieces()[:3])

    # the openai client raises it, after the text that came before
    server.emu["openai"].push(Script(ANSWER, fault=Fault.error_event("model overloaded", after=3)))
    seen = []
    with pytest.raises(openai.APIError, match="model overloaded"):
        for chunk in server.openai().chat.completions.create(
            model="openai:gpt-4o-mini", messages=MESSAGES, stream=True
        ):
            seen.append(chunk.choices[0].delta.content)
    assert len(seen) == 3


# -- disconnects ----------------------------------------------------------------------------


def test_client_leaving_mid_stream_deletes_the_upstream_chat(server):
    emu = server.emu["openassistant"]
    emu.script = Script(ANSWER * 20, delay=0.1)
    stream = server.openai().chat.completions.create(
        model="openassistant:OA_SFT_Llama_30B_6", messages=MESSAGES, stream=True
    )
    first = next(iter(stream))
    assert first.choices[0].delta.content
    stream.close()
    wait_until(lambda: emu.requests_to("/api/chat", "DELETE"), message="upstream chat not deleted")
    wait_until(lambda: emu.open_streams == 0)
    assert len(emu.requests_to("/api/chat/events")) == 1


def test_client_leaving_mid_stream_cancels_the_replicate_prediction(server):
    emu = server.emu["replicate"]
    emu.script = Script(ANSWER * 20, delay=0.1)
    stream = server.openai().chat.completions.create(
        model="replicate:meta/meta-llama-3-8b-instruct", messages=MESSAGES, stream=True
    )
    next(iter(stream))
    stream.close()
    wait_until(lambda: emu.requests_to("/cancel", "POST"), message="prediction not cancelled")
    wait_until(lambda: emu.open_streams == 0)


def test_client_leaving_before_a_non_stream_answer_cancels_upstream(server):
    emu = server.emu["openassistant"]
    emu.script = Script(ANSWER * 20, delay=0.1)
    with pytest.raises(httpx.ReadTimeout):
        server.post(
            {"model": "openassistant:OA_SFT_Llama_30B_6", "messages": MESSAGES}, timeout=0.5
        )
    wait_until(lambda: emu.requests_to("/api/chat", "DELETE"), message="upstream chat not deleted")
    wait_until(lambda: emu.open_streams == 0)


# -- conversations ----------------------------------------------------------------------------


def test_conversation_id_keeps_history(server):
    created = httpx.post(
        server.url + "/v1/conversations",
        json={"messages": [{"role": "system", "content": "Be brief."}]},
    ).json()
    conversation_id = created["id"]
    oai = server.openai()
    first = oai.chat.completions.create(
        model="openai:gpt-4o-mini",
        messages=[{"role": "user", "content": "Turn one"}],
        extra_body={"conversation_id": conversation_id},
    )
    assert first.model_extra["conversation_id"] == conversation_id
    chunks = list(
        oai.chat.completions.create(
            model="openai:gpt-4o-mini",
            messages=[{"role": "user", "content": "Turn two"}],
            stream=True,
            extra_body={"conversation_id": conversation_id},
        )
    )
    assert chunks[-1].model_extra["conversation_id"] == conversation_id
    sent = server.emu["openai"].requests_to("/chat/completions")[-1].json["messages"]
    assert [m["content"] for m in sent] == ["Be brief.", "Turn one", ANSWER, "Turn two"]
    stored = httpx.get(f"{server.url}/v1/conversations/{conversation_id}").json()
    assert len(stored["messages"]) == 5 and stored["provider"] == "OpenAI"
    assert "provider_state" not in stored
    # unknown ids are a 404
    response = server.post({"messages": MESSAGES, "conversation_id": "conv_nope"})
    assert response.status_code == 404
    assert error_of(response)["code"] == "conversation_not_found"
    assert httpx.delete(f"{server.url}/v1/conversations/{conversation_id}").json()["deleted"]
    assert httpx.get(f"{server.url}/v1/conversations/{conversation_id}").status_code == 404


# -- safety -----------------------------------------------------------------------------------


def test_api_keys_are_enforced(services):
    with running(services, api_keys=["sk-server-one", "sk-server-two"]) as server:
        for key in ("sk-server-one", "sk-server-two"):
            completion = server.openai(key).chat.completions.create(
                model="openai:gpt-4o-mini", messages=MESSAGES
            )
            assert completion.choices[0].message.content == ANSWER
        with pytest.raises(openai.AuthenticationError) as info:
            server.openai("sk-wrong").chat.completions.create(
                model="openai:gpt-4o-mini", messages=MESSAGES
            )
        assert info.value.body["code"] == "invalid_api_key"
        assert "sk-wrong" not in str(info.value.body)
        response = httpx.get(server.url + "/v1/models")  # no key at all
        assert response.status_code == 401 and error_of(response)["code"] == "invalid_api_key"
        assert response.headers["WWW-Authenticate"] == "Bearer"
        response = httpx.get(
            server.url + "/v1/providers", headers={"Authorization": "Basic c2stc2VydmVyLW9uZTo="}
        )
        assert response.status_code == 401
        assert httpx.get(server.url + "/health").status_code == 200  # liveness stays open
        assert len(services.emulators["openai"].requests) == 2  # refused calls went nowhere


def test_secrets_never_logged(services, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    secrets = [
        "sk-server-SECRET-123",
        "sk-WRONG-SECRET-456",
        "r8_UPSTREAM_SECRET",
        "sk-UPSTREAM-SECRET",
    ]
    with running(services, api_keys=[secrets[0]]) as server:
        server.client.provider_options["replicate"]["api_key"] = secrets[2]
        server.client.provider_options["openai"]["api_key"] = secrets[3]
        oai = server.openai(secrets[0])
        oai.chat.completions.create(model="openai:gpt-4o-mini", messages=MESSAGES)
        list(
            oai.chat.completions.create(
                model="replicate:meta/meta-llama-3-8b-instruct", messages=MESSAGES, stream=True
            )
        )
        server.emu["replicate"].push(Script(fault=Fault.http_status(401)))
        with pytest.raises(openai.APIStatusError):  # upstream refused the key: 502, logged
            oai.chat.completions.create(
                model="replicate:meta/meta-llama-3-8b-instruct", messages=MESSAGES
            )
        with pytest.raises(openai.AuthenticationError):
            server.openai(secrets[1]).models.list()
        providers = httpx.get(
            server.url + "/v1/providers", headers={"Authorization": f"Bearer {secrets[0]}"}
        ).text
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "POST /v1/chat/completions" in logged  # the access log was captured
    assert "502" in logged
    for secret in secrets:
        assert secret not in logged
        assert secret not in providers


def test_request_size_limit(services):
    with running(services, max_body_bytes=2000) as server:
        big = {"messages": [{"role": "user", "content": "x" * 5000}]}
        response = server.post(big)
        assert response.status_code == 413
        assert error_of(response)["code"] == "request_too_large"

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b" " * 500

        response = httpx.post(
            server.url + "/v1/chat/completions",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 413
        assert server.post({"model": "openai:gpt-4o-mini", "messages": MESSAGES}).status_code == 200
        assert (
            not services.emulators["openai"].requests_to("/chat/completions")[0].body.count(b"xxxx")
        )


def test_cors_only_when_configured(services):
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    with running(services) as server:
        response = httpx.options(server.url + "/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
        response = httpx.get(server.url + "/v1/models", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in response.headers
    with running(services, cors_origins=["https://app.example"]) as server:
        response = httpx.options(server.url + "/v1/chat/completions", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        response = httpx.get(server.url + "/v1/models", headers={"Origin": "https://app.example"})
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        response = httpx.get(server.url + "/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "field, value",
    [
        ("base_url", "http://169.254.169.254"),
        ("proxy", "http://127.0.0.1:1"),
        ("api_key", "sk-mine"),
        ("cookies", {"a": "b"}),
        ("headers", {"X-A": "b"}),
    ],
)
def test_upstream_overrides_refused_by_default(server, field, value):
    response = server.post({"model": "openai:gpt-4o-mini", "messages": MESSAGES, field: value})
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == field and error["code"] == "upstream_override_forbidden"
    assert not server.emu["openai"].requests


def test_upstream_overrides_when_the_operator_allows_them(services):
    with (
        serve(OpenAIEmulator(Script("From the other one."))) as other,
        running(services, allow_upstream_overrides=True) as server,
    ):
        completion = server.openai().chat.completions.create(
            model="openai:gpt-4o-mini",
            messages=MESSAGES,
            extra_body={"base_url": other.url + "/v1", "api_key": "sk-caller"},
        )
        assert completion.choices[0].message.content == "From the other one."
        assert (
            other.requests_to("/chat/completions")[0].headers["Authorization"] == "Bearer sk-caller"
        )
        response = server.post({"model": "openai:gpt-4o-mini", "messages": MESSAGES, "base_url": 5})
        assert response.status_code == 400 and error_of(response)["code"] == "invalid_type"


# -- fuzzing ----------------------------------------------------------------------------------


def test_fuzzed_chat_requests_never_get_a_5xx(server):
    """Schemathesis generates bodies from the served OpenAPI schema, valid and invalid;
    with healthy emulators behind, none may produce a server error."""
    seen = fuzz_route(server.url, "/v1/chat/completions")
    assert seen.get(200) and (seen.get(400) or seen.get(404)), seen  # both kinds were tried


# -- `llmplex serve --emulate` ----------------------------------------------------------------

LLMPLEX = str(Path(sys.executable).parent / "llmplex")


def test_serve_emulate_from_the_command_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPLEX_")}
    config = tmp_path / "config.toml"
    config.write_text("")
    env.update(
        LLMPLEX_CONFIG=str(config),
        LLMPLEX_DATA_DIR=str(tmp_path / "data"),
        PYTHONIOENCODING="utf-8",
    )
    process = subprocess.Popen(
        [
            LLMPLEX,
            "serve",
            "--emulate",
            "--port",
            "0",
            "--allowed-host",
            "llm.test",
            "--max-providers",
            "2",
            "--first-token-timeout",
            "60",
            "--keepalive-timeout",
            "5",
            "--client-stall-timeout",
            "30",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = []
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            banner.append(line)
            if "serving the OpenAI-compatible API at " in line:
                url = line.split(" at ", 1)[1].split()[0]
        assert url, "".join(banner)
        assert EMULATED_NOTICE in "".join(banner)
        base = url.removesuffix("/v1")
        wait_until(lambda: _up(base), timeout=15)
        providers = httpx.get(url + "/providers").json()
        assert providers["emulated"] is True
        assert all(p["emulated"] for p in providers["data"])
        with openai.OpenAI(base_url=url, api_key="x", max_retries=0) as oai:
            # AllenAI has no credentials in this environment (not working), but in
            # emulation every provider is routed to
            answer = oai.chat.completions.create(model="molmo2-8b", messages=MESSAGES)
            assert "allenai emulator" in answer.choices[0].message.content
            stream = oai.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream)
            assert "openai emulator" in text
        # the flags: Host names (DNS-rebinding check), the provider-list cap
        assert httpx.get(base + "/health", headers={"Host": "llm.test"}).status_code == 200
        assert httpx.get(base + "/health", headers={"Host": "evil.example"}).status_code == 403
        too_many = httpx.post(
            url + "/chat/completions",
            json={"messages": MESSAGES, "provider": ["OpenAI", "Groq", "Mistral"]},
        )
        assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "provider"
    finally:
        code = interrupt(process)
    assert code == 0
    for flags in (
        ["--client-stall-timeout", "0"],
        ["--first-token-timeout", "-1"],
        ["--max-connections", "0"],
        ["--max-providers", "0"],
    ):
        result = subprocess.run(
            [LLMPLEX, "serve", "--port", "0", *flags],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (flags, result.stderr)


def _up(base):
    try:
        return httpx.get(base + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
