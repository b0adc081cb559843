"""``llmplex serve``'s Anthropic Messages API (``/v1/messages``) with the official
``anthropic`` SDK and raw HTTP, against the emulators: Anthropic (pass-through), OpenAI
(native tools, translated) and AllenAI (text only: tools emulated)."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest
from fastapi import FastAPI

from llmplex.server import ServerThread, create_app
from llmplex.server.anthropic_api import anthropic_router
from llmplex.server.emulated import EmulatedServices, emulated_client
from llmplex.testing import Fault, Script, wait_until

CLAUDE = "claude-sonnet-4-5"
GPT = "openai:gpt-4o-mini"
ALLENAI = "allenai:olmo-3.1-32b-think"  # an Ai2 model without native tools
KEY = "sk-llmplex-server-key"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
    "RU5ErkJggg=="
)


@pytest.fixture(scope="module")
def services():
    with EmulatedServices(["anthropic", "openai", "allenai"]) as running:
        yield running


@pytest.fixture(scope="module")
def server(services):
    with ServerThread(create_app(emulated_client(services), api_keys=[KEY])) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(services):
    for emulator in services.emulators.values():
        emulator.reset()
        emulator.script = Script("Hello from the emulator.")


@pytest.fixture
def sdk(server):
    with anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0, timeout=20) as client:
        yield client


def emulator(services, name):
    return services.emulators[name]


def events(response: httpx.Response) -> list[tuple[str, dict]]:
    """The (event name, data) pairs of an SSE body."""
    out = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


# -- create and stream --------------------------------------------------------------------


def test_create_through_the_anthropic_provider(services, sdk):
    emulator(services, "anthropic").script = Script(
        "Hi there, I am Claude.", cached_tokens=5, extra={"cache_creation_input_tokens": 2}
    )
    message = sdk.messages.create(
        model=CLAUDE,
        max_tokens=100,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Say hi"}],
        metadata={"user_id": "u-1"},
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Hi there, I am Claude."
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    # the emulator counts words: "You are terse." + "Say hi" = 5 uncached input tokens
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 5)
    assert message.usage.cache_read_input_tokens == 5
    assert message.usage.cache_creation_input_tokens == 2
    sent = emulator(services, "anthropic").requests_to("/v1/messages")[-1].json
    # pass-through: the body arrives as the SDK sent it (cache_control and all)
    assert sent == {
        "model": CLAUDE,
        "max_tokens": 100,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [{"role": "user", "content": "Say hi"}],
        "metadata": {"user_id": "u-1"},
    }


def test_create_and_stream_through_openai(services, sdk):
    emulator(services, "openai").script = Script("Streaming works fine.")
    message = sdk.messages.create(
        model=GPT,
        max_tokens=50,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello"}],
        stop_sequences=["STOP"],
        extra_body={"temperature": 0.2},
    )
    assert message.content[0].text == "Streaming works fine."
    assert message.model.startswith("gpt-4o-mini")
    sent = emulator(services, "openai").requests_to("/chat/completions")[-1].json
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    assert (sent["stop"], sent["temperature"], sent["max_tokens"]) == (["STOP"], 0.2, 50)
    with sdk.messages.stream(
        model=GPT, max_tokens=50, messages=[{"role": "user", "content": "Hello"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Streaming works fine."
    assert final.content[0].text == text and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3 and final.usage.input_tokens == 1


def test_stream_event_sequence(services, server):
    emulator(services, "openai").script = Script(chunks=["Hel", "lo"])
    response = httpx.post(
        server.url + "/v1/messages",
        headers={"x-api-key": KEY},
        json={
            "model": GPT,
            "max_tokens": 20,
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
        },
        timeout=20,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    seen = events(response)
    assert [name for name, _ in seen] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in seen)
    start = seen[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert seen[2][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert seen[3][1]["delta"] == {"type": "text_delta", "text": "Hel"}
    assert seen[6][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert seen[6][1]["usage"]["output_tokens"] == 1


def test_thinking_streamed_as_thinking_blocks(services, sdk):
    emulator(services, "anthropic").script = Script("Forty-two.", reasoning="Deep thought")
    with sdk.messages.stream(
        model=CLAUDE,
        max_tokens=3000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Answer?"}],
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Deep thought"
    assert final.content[1].text == "Forty-two."
    assert final.content[0].signature in emulator(services, "anthropic").signatures
    sent = emulator(services, "anthropic").requests_to("/v1/messages")[-1].json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    # elsewhere thinking is reasoning_effort
    emulator(services, "openai").script = Script("Yes.", reasoning="Hmm")
    message = sdk.messages.create(
        model=GPT,
        max_tokens=3000,
        thinking={"type": "enabled", "budget_tokens": 4000},
        messages=[{"role": "user", "content": "Answer?"}],
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert emulator(services, "openai").requests[-1].json["reasoning_effort"] == "medium"


# -- tools ----------------------------------------------------------------------------------


def _round_trip(sdk, model, first_message):
    question = {"role": "user", "content": "Weather in Paris?"}
    assert first_message.stop_reason == "tool_use"
    call = next(b for b in first_message.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    return sdk.messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": first_message.content},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call.id,
                        "content": [{"type": "text", "text": "21 C, sunny"}],
                    }
                ],
            },
        ],
    )


def test_tool_round_trip_native_tools(services, sdk):
    openai_emulator = emulator(services, "openai")
    openai_emulator.push(
        Script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]),
        Script("It is sunny, 21 C."),
    )
    with sdk.messages.stream(
        model=GPT,
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        first = stream.get_final_message()
    sent = openai_emulator.requests[-1].json
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": WEATHER["description"],
            },
        }
    ]
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("required", False)
    answer = _round_trip(sdk, GPT, first)
    assert answer.content[0].text == "It is sunny, 21 C."
    messages = openai_emulator.requests[-1].json["messages"]
    call_id = first.content[0].id
    assert messages[1]["tool_calls"][0]["id"] == call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call_id, "content": "21 C, sunny"}


def test_tool_round_trip_text_only_provider_emulated(services, sdk):
    allenai = emulator(services, "allenai")
    allenai.push(
        Script('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'),
        Script("Sunny and 21 C in Paris."),
    )
    first = sdk.messages.create(
        model=ALLENAI,
        max_tokens=100,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    answer = _round_trip(sdk, ALLENAI, first)
    assert answer.content[0].text == "Sunny and 21 C in Paris."
    assert "21 C, sunny" in allenai.requests[-1].text  # the result reached the prompt


def test_tool_round_trip_anthropic(services, sdk):
    claude = emulator(services, "anthropic")
    claude.push(
        Script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]),
        Script("Sunny."),
    )
    first = sdk.messages.create(
        model=CLAUDE,
        max_tokens=100,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert _round_trip(sdk, CLAUDE, first).content[0].text == "Sunny."
    last = claude.requests_to("/v1/messages")[-1].json["messages"][-1]
    assert last["content"][0]["type"] == "tool_result"


def test_tool_round_trip_with_thinking_keeps_signatures(services, sdk):
    # Anthropic checks the signature of the thinking block sent back with a tool result
    claude = emulator(services, "anthropic")
    claude.push(
        Script(
            reasoning="I need the weather",
            tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}],
        ),
        Script("Sunny.", reasoning="Got it"),
    )
    thinking = {"type": "enabled", "budget_tokens": 1024}
    first = sdk.messages.create(
        model=CLAUDE,
        max_tokens=2000,
        tools=[WEATHER],
        thinking=thinking,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert first.content[0].signature in claude.signatures
    answer = sdk.messages.create(
        model=CLAUDE,
        max_tokens=2000,
        tools=[WEATHER],
        thinking=thinking,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": first.content[1].id, "content": "sunny"}
                ],
            },
        ],
    )
    assert answer.content[-1].text == "Sunny."
    # a made-up signature is refused upstream, and the refusal reaches the caller
    forged = [
        {"type": "thinking", "thinking": "x", "signature": "forged"},
        {"type": "text", "text": "Hi"},
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.messages.create(
            model=CLAUDE,
            max_tokens=2000,
            thinking=thinking,
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": forged},
                {"role": "user", "content": "Again"},
            ],
        )
    assert "signature" in info.value.body["error"]["message"]


def test_image_block(services, sdk):
    message = sdk.messages.create(
        model=GPT,
        max_tokens=50,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.png"},
                    },
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    assert message.content[0].text == "Hello from the emulator."
    parts = emulator(services, "openai").requests[-1].json["messages"][0]["content"]
    assert parts == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "text", "text": "What is this?"},
    ]


def test_count_tokens(services, sdk):
    count = sdk.messages.count_tokens(
        model=GPT, system="x" * 40, messages=[{"role": "user", "content": "y" * 40}]
    )
    assert count.input_tokens == 20  # an estimate: one token per 4 bytes
    # Anthropic counts its own (the emulator: words)
    count = sdk.messages.count_tokens(
        model=CLAUDE, system="a b", messages=[{"role": "user", "content": "c d e"}]
    )
    assert count.input_tokens == 5
    sent = emulator(services, "anthropic").requests_to("/count_tokens")[-1]
    assert sent.json["model"] == CLAUDE and sent.headers["x-api-key"] == "sk-ant-emulated"
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.count_tokens(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )


# -- errors ---------------------------------------------------------------------------------


def test_bad_requests(sdk):
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.messages.create(model=GPT, max_tokens=0, messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in info.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.messages.create(
            model=GPT,
            max_tokens=10,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
            messages=[{"role": "user", "content": "hi"}],
        )
    assert "web_search" in info.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.messages.create(
            model=GPT,
            max_tokens=10,
            extra_body={"top_k": 3},
            messages=[{"role": "user", "content": "hi"}],
        )
    assert "top_k" in info.value.body["error"]["message"]
    # a translated field is named as the caller named it
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.messages.create(
            model=ALLENAI,
            max_tokens=3000,
            thinking={"type": "enabled", "budget_tokens": 2000},
            messages=[{"role": "user", "content": "hi"}],
        )
    message = info.value.body["error"]["message"]
    assert "'thinking'" in message and "reasoning_effort" not in message


def test_body_too_large_in_anthropic_shape(services):
    with ServerThread(create_app(emulated_client(services), max_body_bytes=1000)) as running:
        response = httpx.post(
            running.url + "/v1/messages",
            json={
                "model": GPT,
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x" * 2000}],
            },
        )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


def test_unknown_model(sdk):
    with pytest.raises(anthropic.NotFoundError) as info:
        sdk.messages.create(
            model="gpt-nonexistent-9", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.body["error"]["type"] == "not_found_error"


def test_auth_with_x_api_key(server):
    url = server.url + "/v1/messages"
    body = {"model": GPT, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    missing = httpx.post(url, json=body)
    wrong = httpx.post(url, json=body, headers={"x-api-key": "wrong"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.json()["type"] == "error"
    good = httpx.post(
        url, json=body, headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}, timeout=20
    )
    assert good.status_code == 200 and good.json()["type"] == "message"
    bearer = httpx.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=20)
    assert bearer.status_code == 200
    with (
        anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0) as bad,
        pytest.raises(anthropic.AuthenticationError),
    ):
        bad.messages.create(model=GPT, max_tokens=10, messages=[{"role": "user", "content": "hi"}])


def test_upstream_overloaded_and_in_stream_error(services, sdk, server):
    emulator(services, "anthropic").push(Script(fault=Fault.http_status(529)))
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk.messages.create(
            model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"
    emulator(services, "openai").push(
        Script("one two three four", fault=Fault.error_event(after=2))
    )
    response = httpx.post(
        server.url + "/v1/messages",
        headers={"x-api-key": KEY},
        json={
            "model": GPT,
            "max_tokens": 20,
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
        },
        timeout=20,
    )
    seen = events(response)
    assert seen[-1][0] == "error" and seen[-1][1]["type"] == "error"
    assert seen[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [name for name, _ in seen]


def test_overloaded_mid_stream_from_anthropic(services, server):
    emulator(services, "anthropic").push(Script("one two three", fault=Fault.error_event(after=1)))
    response = httpx.post(
        server.url + "/v1/messages",
        headers={"x-api-key": KEY},
        json={
            "model": CLAUDE,
            "max_tokens": 20,
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
        },
        timeout=20,
    )
    seen = events(response)
    assert seen[-1] == (
        "error",
        {
            "type": "error",
            "error": {"type": "overloaded_error", "message": seen[-1][1]["error"]["message"]},
        },
    )
    assert "overloaded" in seen[-1][1]["error"]["message"]
    assert seen[-2][0] == "content_block_delta"  # the text before it was delivered


def test_client_leaving_before_a_whole_answer_closes_the_upstream(services, server):
    claude = emulator(services, "anthropic")
    claude.script = Script(" ".join(["word"] * 400), delay=0.05)  # 20 s, if read to its end
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/v1/messages",
            headers={"x-api-key": KEY},
            json={
                "model": CLAUDE,
                "max_tokens": 500,
                "messages": [{"role": "user", "content": "Talk"}],
            },
            timeout=1,
        )
    assert claude.requests_to("/v1/messages")  # it was asked
    wait_until(lambda: claude.open_streams == 0, timeout=8)


def test_client_closing_mid_stream_closes_the_upstream(services, sdk):
    claude = emulator(services, "anthropic")
    claude.script = Script(" ".join(["word"] * 400), delay=0.05)  # 20 s, if read to its end
    with sdk.messages.stream(
        model=CLAUDE, max_tokens=1000, messages=[{"role": "user", "content": "Talk"}]
    ) as stream:
        for _ in stream.text_stream:
            break
        assert claude.open_streams == 1
    wait_until(lambda: claude.open_streams == 0, timeout=8)


# -- Claude Code ----------------------------------------------------------------------------


def _claude_code_body(model: str) -> dict:
    tools = [
        {
            "name": f"Tool{i}",
            "description": f"Tool number {i}",
            "input_schema": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
                "additionalProperties": False,
                "$schema": "http://json-schema.org/draft-07/schema#",
            },
        }
        for i in range(24)
    ]
    tools[-1]["cache_control"] = {"type": "ephemeral"}
    return {
        "model": model,
        "max_tokens": 32000,
        "stream": True,
        "temperature": 1,
        "system": [
            {
                "type": "text",
                "text": "You are Claude Code, Anthropic's official CLI.",
                "cache_control": {"type": "ephemeral"},
            },
            {
                "type": "text",
                "text": "Working directory: /work",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>Context</system-reminder>"},
                    {
                        "type": "text",
                        "text": "List the files",
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            }
        ],
        "tools": tools,
        "metadata": {"user_id": "user_abc_account_x_session_y"},
    }


CLAUDE_CODE_HEADERS = {
    "x-api-key": KEY,
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
    "fine-grained-tool-streaming-2025-05-14",
    "anthropic-dangerous-direct-browser-access": "true",
    "user-agent": "claude-cli/2.0.0 (external, cli)",
    "x-app": "cli",
}


def test_claude_code_request_to_anthropic_passes_through(services, server):
    claude = emulator(services, "anthropic")
    claude.script = Script(tool_calls=[{"name": "Tool3", "arguments": {"path": "."}}])
    body = _claude_code_body("claude-sonnet-4-5-20250929")
    response = httpx.post(
        server.url + "/v1/messages?beta=true", json=body, headers=CLAUDE_CODE_HEADERS, timeout=20
    )
    assert response.status_code == 200, response.text
    seen = events(response)
    starts = [d["content_block"] for n, d in seen if n == "content_block_start"]
    assert starts[0]["type"] == "tool_use" and starts[0]["name"] == "Tool3"
    deltas = "".join(d["delta"]["partial_json"] for n, d in seen if n == "content_block_delta")
    assert json.loads(deltas) == {"path": "."}
    assert seen[-2][1]["delta"]["stop_reason"] == "tool_use"
    sent = claude.requests_to("/v1/messages")[-1]
    assert sent.json == body
    assert sent.headers["anthropic-beta"] == CLAUDE_CODE_HEADERS["anthropic-beta"]
    assert sent.headers["x-api-key"] == "sk-ant-emulated"  # the server's key, not the caller's


def test_claude_code_request_to_openai(services, server):
    openai_emulator = emulator(services, "openai")
    openai_emulator.script = Script("Here are the files.")
    body = _claude_code_body(GPT)
    response = httpx.post(
        server.url + "/v1/messages", json=body, headers=CLAUDE_CODE_HEADERS, timeout=20
    )
    assert response.status_code == 200, response.text
    seen = events(response)
    assert (
        "".join(d["delta"]["text"] for n, d in seen if n == "content_block_delta")
        == "Here are the files."
    )
    sent = openai_emulator.requests[-1].json
    assert len(sent["tools"]) == 24 and sent["user"] == "user_abc_account_x_session_y"
    assert sent["messages"][0] == {
        "role": "system",
        "content": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI."},
            {"type": "text", "text": "Working directory: /work"},
        ],
    }


def test_pings_while_the_upstream_is_silent(services):
    # the router on its own, pinging after 0.1 s of silence (the server's: 10 s)
    app = FastAPI()
    app.include_router(anthropic_router(emulated_client(services), ping_interval=0.1))
    emulator(services, "openai").script = Script(chunks=["slow", " answer"], delay=0.5)
    with ServerThread(app) as running:
        response = httpx.post(
            running.url + "/v1/messages",
            json={
                "model": GPT,
                "max_tokens": 20,
                "stream": True,
                "messages": [{"role": "user", "content": "Hi"}],
            },
            timeout=20,
        )
    names = [name for name, _ in events(response)]
    # one ping after message_start, more while the second piece is awaited
    first_text = names.index("content_block_delta")
    assert "ping" in names[first_text : names.index("message_delta")]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert (
        "".join(d["delta"]["text"] for n, d in events(response) if n == "content_block_delta")
        == "slow answer"
    )


def test_tool_result_with_an_image_and_a_document(services, sdk):
    openai_emulator = emulator(services, "openai")
    sdk.messages.create(
        model=GPT,
        max_tokens=50,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Look"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "X"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "no such city"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": PNG,
                                },
                            },
                        ],
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBERi0x",
                        },
                    },
                    {"type": "text", "text": "What now?"},
                ],
            },
        ],
    )
    messages = openai_emulator.requests[-1].json["messages"]
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": "Error: no such city",
    }
    assert messages[3] == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {
                "type": "file",
                "file": {
                    "file_data": "data:application/pdf;base64,JVBERi0x",
                    "filename": "document.pdf",
                },
            },
            {"type": "text", "text": "What now?"},
        ],
    }
