"""The Anthropic provider against the Anthropic emulator, and the emulator against the
official ``anthropic`` SDK. Real sockets on 127.0.0.1."""

from __future__ import annotations

import json

import anthropic
import pytest

from llmplex.emulators.anthropic import AnthropicEmulator
from llmplex.errors import (
    InvalidRequestError,
    MissingAuthError,
    ProviderConnectionError,
    RateLimitError,
    ResponseStatusError,
)
from llmplex.providers import Anthropic, get_provider
from llmplex.testing import Fault, Script, cancel_mid_stream, eventually, serve
from llmplex.types import (
    FinishReason,
    ReasoningDelta,
    ReasoningSignature,
    ResponseMeta,
    ToolCallDelta,
    Usage,
)

KEY = "sk-ant-test-0123456789"


def run(emulator, messages="Hi", **options):
    options.setdefault("api_key", KEY)
    return Anthropic.create_async_generator(
        "claude-sonnet-4-5", messages, base_url=emulator.url, **options
    )


async def collect(stream):
    return [chunk async for chunk in stream]


def test_registered():
    assert get_provider("anthropic") is Anthropic
    assert Anthropic.capabilities.tools == "native"
    assert Anthropic.get_model("claude-3-5-haiku-20241022") == "claude-3-5-haiku-20241022"


async def test_text_answer_and_request(anthropic_emulator):
    anthropic_emulator.script = Script(
        "Hello there friend", cached_tokens=7, extra={"cache_creation_input_tokens": 3}
    )
    chunks = await collect(
        run(
            anthropic_emulator,
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
            temperature=0.5,
            stop=["END"],
            top_k=5,
        )
    )
    assert "".join(c for c in chunks if isinstance(c, str)) == "Hello there friend"
    assert chunks[0] == ResponseMeta("claude-sonnet-4-5")
    usage = next(c for c in chunks if isinstance(c, Usage))
    # OpenAI's prompt_tokens counts cached and written tokens too: 4 words + 7 + 3
    assert (usage.prompt_tokens, usage.completion_tokens) == (4 + 7 + 3, 3)
    assert usage.prompt_tokens_details == {"cached_tokens": 7, "cache_write_tokens": 3}
    assert chunks[-1] == FinishReason("stop")
    sent = anthropic_emulator.requests[-1]
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json == {
        "model": "claude-sonnet-4-5",
        "stream": True,
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}],
        "temperature": 0.5,
        "top_k": 5,
        "stop_sequences": ["END"],
    }


async def test_tools_round_trip_translation(anthropic_emulator):
    anthropic_emulator.script = Script(
        tool_calls=[{"name": "weather", "arguments": {"city": "Paris"}}]
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "w",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    chunks = await collect(
        run(anthropic_emulator, tools=tools, tool_choice="required", parallel_tool_calls=False)
    )
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert calls[0].name == "weather" and calls[0].id.startswith("toolu_")
    assert json.loads("".join(c.arguments for c in calls)) == {"city": "Paris"}
    assert chunks[-1] == FinishReason("tool_calls")
    sent = anthropic_emulator.requests[-1].json
    assert sent["tools"] == [
        {"name": "weather", "description": "w", "input_schema": tools[0]["function"]["parameters"]}
    ]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    # the answer goes back: assistant tool_calls and the tool message, translated
    history = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": calls[0].id,
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]
    anthropic_emulator.script = Script("Sunny in Paris.")
    text = await Anthropic.create_async(
        "claude-sonnet-4-5", history, base_url=anthropic_emulator.url, api_key=KEY, tools=tools
    )
    assert text == "Sunny in Paris."
    sent = anthropic_emulator.requests[-1].json["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": calls[0].id, "name": "weather", "input": {"city": "Paris"}}
        ],
    }
    assert sent[2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": calls[0].id,
                "content": [{"type": "text", "text": "sunny"}],
            },
            {"type": "text", "text": "And this?"},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
            },
        ],
    }


async def test_thinking(anthropic_emulator):
    anthropic_emulator.script = Script("The answer.", reasoning="Let me think")
    chunks = await collect(run(anthropic_emulator, reasoning_effort="low"))
    assert "".join(c.text for c in chunks if isinstance(c, ReasoningDelta)) == "Let me think"
    signatures = [c.signature for c in chunks if isinstance(c, ReasoningSignature)]
    assert len(signatures) == 1 and signatures[0] in anthropic_emulator.signatures
    assert "".join(c for c in chunks if isinstance(c, str)) == "The answer."
    sent = anthropic_emulator.requests[-1].json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["max_tokens"] == 4096 + 2048
    with pytest.raises(InvalidRequestError) as info:
        await collect(run(anthropic_emulator, reasoning_effort="extreme"))
    assert info.value.param == "reasoning_effort"


async def test_pass_through_body_sent_verbatim(anthropic_emulator):
    body = {
        "model": "ignored",
        "max_tokens": 50,
        "stream": False,
        "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hi"}],
        "metadata": {"user_id": "u1"},
    }
    await collect(run(anthropic_emulator, anthropic_body=body, anthropic_beta="x-2025"))
    sent = anthropic_emulator.requests[-1]
    assert sent.json == {**body, "model": "claude-sonnet-4-5", "stream": True}
    assert sent.headers["anthropic-beta"] == "x-2025"


async def test_errors(anthropic_emulator):
    anthropic_emulator.push(Script(fault=Fault.http_status(529, retry_after=2)))
    with pytest.raises(RateLimitError) as info:
        await collect(run(anthropic_emulator))
    assert info.value.status == 529 and info.value.retry_after == 2
    assert "Overloaded" in str(info.value)
    anthropic_emulator.api_keys = ("good",)
    with pytest.raises(MissingAuthError) as auth:
        await collect(run(anthropic_emulator))
    assert auth.value.status == 401 and KEY not in str(auth.value)
    anthropic_emulator.api_keys = ()
    with pytest.raises(MissingAuthError):
        await collect(
            Anthropic.create_async_generator(
                "claude-sonnet-4-5", "Hi", base_url=anthropic_emulator.url
            )
        )
    anthropic_emulator.push(Script(fault=Fault.http_status(500)))
    with pytest.raises(ResponseStatusError) as server:
        await collect(run(anthropic_emulator))
    assert server.value.status == 500
    with pytest.raises(InvalidRequestError):
        await collect(run(anthropic_emulator, temperature=1.5))


async def test_stream_faults(anthropic_emulator):
    anthropic_emulator.push(Script("one two three", fault=Fault.error_event(after=1)))
    with pytest.raises(RateLimitError) as info:
        await collect(run(anthropic_emulator))
    assert info.value.status == 529
    anthropic_emulator.push(Script("one two three", fault=Fault.disconnect(after=1)))
    with pytest.raises(ProviderConnectionError):
        await collect(run(anthropic_emulator))


async def test_cancellation_closes_the_stream(anthropic_emulator):
    anthropic_emulator.script = Script("a b c d e f g h", delay=0.2)
    await cancel_mid_stream(run(anthropic_emulator))
    await eventually(lambda: anthropic_emulator.open_streams == 0)


async def test_emulator_with_the_official_sdk():
    emulator = AnthropicEmulator(
        Script(
            "Hi from Claude",
            reasoning="hmm",
            tool_calls=[{"name": "f", "arguments": {"a": 1}}],
            chunks=["Hi ", "from Claude"],
        )
    )
    with serve(emulator) as emu:
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=emu.url)
        kwargs = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 2000,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "Hi"}],
        }
        whole = await client.messages.create(**kwargs)
        async with client.messages.stream(**kwargs) as stream:
            streamed = await stream.get_final_message()
        for message in (whole, streamed):
            assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
            assert message.content[1].text == "Hi from Claude"
            assert message.content[2].input == {"a": 1}
            assert message.stop_reason == "tool_use"
            assert message.content[0].signature
        assert (
            await client.messages.count_tokens(
                model="claude-sonnet-4-5", messages=[{"role": "user", "content": "a b c"}]
            )
        ).input_tokens == 3
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.create(model="m", max_tokens=0, messages=[])
        await client.close()
