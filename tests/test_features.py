"""Tools, images, structured output, reasoning, logprobs and ``n`` through the whole stack:
the official ``openai`` SDK through ``llmplex serve``, and ``AsyncClient``, to the OpenAI
emulator, which records what it received (so every forwarded field is checked there)."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from pydantic import BaseModel

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.emulators.openai import OpenAIEmulator
from llmplex.server import ServerThread, create_app
from llmplex.testing import Script, serve

KEY = "sk-test-features-0000"
MODEL = "openai:gpt-4o-mini"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_weather_1"}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


class Weather(BaseModel):
    city: str
    celsius: int
    sunny: bool


@pytest.fixture
def emulator():
    with serve(OpenAIEmulator(api_keys={KEY})) as emu:
        yield emu


def make_client(emulator) -> AsyncClient:
    return AsyncClient(
        store=MemoryStore(),
        provider_options={"OpenAI": {"base_url": emulator.url + "/v1", "api_key": KEY}},
    )


@pytest.fixture
def server(emulator):
    with ServerThread(create_app(make_client(emulator))) as running:
        with openai.OpenAI(
            base_url=running.url + "/v1", api_key="unused", max_retries=0, timeout=15
        ) as oai:
            running.oai = oai
            yield running


def received(emulator) -> dict:
    return emulator.requests_to("/chat/completions")[-1].json


def follow_up(call_id: str) -> list[dict]:
    return [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": '{"celsius": 21}'},
    ]


def sse_events(response: httpx.Response) -> list[dict]:
    events = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[6:]))
    return events


# -- tools -----------------------------------------------------------------------------------


def test_tool_round_trip_through_the_server(server, emulator):
    emulator.push(Script(tool_calls=[CALL]), Script("It is 21 °C and sunny in Paris."))
    first = server.oai.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=TOOLS, tool_choice="auto", parallel_tool_calls=False
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None and choice.message.refusal is None
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_weather_1", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    sent = received(emulator)
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto"
    assert sent["parallel_tool_calls"] is False
    final = server.oai.chat.completions.create(
        model=MODEL, messages=follow_up(call.id), tools=TOOLS
    )
    assert final.choices[0].message.content == "It is 21 °C and sunny in Paris."
    assert final.choices[0].finish_reason == "stop"
    assert received(emulator)["messages"] == follow_up(call.id)  # the tool turn, intact


def test_tool_calls_stream_in_openais_format_through_the_server(server, emulator):
    emulator.push(Script(tool_calls=[CALL, {"name": "get_weather", "arguments": {"city": "Lyon"}}]))
    calls: dict[int, dict] = {}
    finish = None
    with server.oai.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=TOOLS, stream=True
    ) as stream:
        for chunk in stream:
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for delta in choice.delta.tool_calls or ():
                    entry = calls.setdefault(delta.index, {"id": None, "name": None, "args": ""})
                    entry["id"] = entry["id"] or delta.id
                    if delta.function is not None:
                        entry["name"] = entry["name"] or delta.function.name
                        entry["args"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    assert [json.loads(calls[i]["args"]) for i in sorted(calls)] == [
        {"city": "Paris"},
        {"city": "Lyon"},
    ]
    assert calls[0]["id"] == "call_weather_1" and calls[1]["name"] == "get_weather"
    # On the wire: role on the first chunk only, fragments in OpenAI's shape.
    emulator.push(Script(tool_calls=[CALL]))
    raw = httpx.post(
        server.url + "/v1/chat/completions",
        timeout=15,
        json={"model": MODEL, "messages": QUESTION, "tools": TOOLS, "stream": True},
    )
    deltas = [e["choices"][0]["delta"] for e in sse_events(raw) if e["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert all("role" not in d for d in deltas[1:])
    assert deltas[0]["tool_calls"][0]["id"] == "call_weather_1"
    assert deltas[0]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert all(
        set(d["tool_calls"][0]) == {"index", "function"} for d in deltas[1:] if d.get("tool_calls")
    )
    assert len([d for d in deltas if d.get("tool_calls")]) > 3  # really in fragments


async def test_tool_round_trip_with_async_client(emulator):
    emulator.push(
        Script(tool_calls=[CALL]), Script(tool_calls=[CALL]), Script("21 °C."), Script("21 °C.")
    )
    async with make_client(emulator) as client:
        answer = await client.chat.completions.create(model=MODEL, messages=QUESTION, tools=TOOLS)
        [call] = answer.choices[0].message.tool_calls
        assert answer.choices[0].finish_reason == "tool_calls"
        assert answer.choices[0].message.content is None
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        pieces: dict[int, list[str]] = {}
        async with await client.chat.completions.create(
            model=MODEL, messages=QUESTION, tools=TOOLS, stream=True
        ) as stream:
            chunks = [c async for c in stream]
        for chunk in chunks:
            for delta in chunk.choices[0].delta.tool_calls or ():
                pieces.setdefault(delta.index, []).append(delta.function.arguments or "")
        assert json.loads("".join(pieces[0])) == {"city": "Paris"}
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        for stream in (False, True):
            result = await client.chat.completions.create(
                model=MODEL, messages=follow_up(call.id), tools=TOOLS, stream=stream
            )
            if stream:
                text = "".join([c.choices[0].delta.content or "" async for c in result])
            else:
                text = result.choices[0].message.content
            assert text == "21 °C."
            assert received(emulator)["messages"] == follow_up(call.id)


async def test_a_conversation_stores_and_replays_tool_calls(emulator):
    emulator.push(Script(tool_calls=[CALL]), Script("21 °C."))
    async with make_client(emulator) as client:
        conversation = await client.conversations.create()
        await client.chat.completions.create(
            model=MODEL, messages=QUESTION, tools=TOOLS, conversation=conversation
        )
        result = [{"role": "tool", "tool_call_id": "call_weather_1", "content": "21"}]
        answer = await client.chat.completions.create(
            messages=result, tools=TOOLS, conversation=conversation
        )
        assert answer.choices[0].message.content == "21 °C."
        stored = (await client.conversations.get(conversation.id)).messages
    sent = received(emulator)["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["content"] is None
    assert sent[1]["tool_calls"][0]["id"] == "call_weather_1"
    assert sent[2] == result[0]
    assert stored[1]["tool_calls"] == sent[1]["tool_calls"]
    assert stored[-1] == {"role": "assistant", "content": "21 °C."}


# -- the SDK's stream helper on answers without text -------------------------------------------


@pytest.mark.parametrize(
    "script, check",
    [
        (
            Script(tool_calls=[CALL]),
            lambda m: m.tool_calls[0].function.name == "get_weather" and m.content is None,
        ),
        (
            Script(refusal="I can't help with that."),
            lambda m: m.refusal == "I can't help with that." and not m.content,
        ),
        (Script(""), lambda m: m.content in ("", None) and m.tool_calls is None),
    ],
    ids=["tool-only", "refusal", "empty"],
)
def test_the_sdk_stream_helper_accepts_every_answer(server, emulator, script, check):
    emulator.push(script)
    with server.oai.chat.completions.stream(model=MODEL, messages=QUESTION, tools=TOOLS) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.role == "assistant"
    assert check(final.choices[0].message)


def test_a_refusal_is_not_an_empty_answer(server, emulator):
    emulator.push(Script(refusal="I can't help with that."))
    completion = server.oai.chat.completions.create(model=MODEL, messages=QUESTION)
    message = completion.choices[0].message
    assert message.refusal == "I can't help with that." and message.content is None
    raw = httpx.post(
        server.url + "/v1/chat/completions", timeout=15, json={"model": MODEL, "messages": QUESTION}
    ).json()
    # the official schema requires "refusal" on every message: null when there is none
    assert raw["choices"][0]["message"]["refusal"] is None


# -- structured output -------------------------------------------------------------------------


def test_parse_with_a_pydantic_model_through_the_server(server, emulator):
    completion = server.oai.chat.completions.parse(
        model=MODEL, messages=QUESTION, response_format=Weather
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Weather)
    sent = received(emulator)["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Weather"
    assert sent["json_schema"]["schema"]["required"] == ["city", "celsius", "sunny"]


async def test_json_object_with_async_client(emulator):
    async with make_client(emulator) as client:
        answer = await client.chat.completions.create(
            model=MODEL, messages="JSON please", response_format={"type": "json_object"}
        )
    assert isinstance(json.loads(answer.choices[0].message.content), dict)
    assert received(emulator)["response_format"] == {"type": "json_object"}


# -- images --------------------------------------------------------------------------------------


def test_an_image_part_is_forwarded_through_the_server(server, emulator):
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
    ]
    server.oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": parts}])
    assert received(emulator)["messages"] == [{"role": "user", "content": parts}]
    with pytest.raises(openai.BadRequestError) as info:  # a text-only provider refuses it
        server.oai.chat.completions.create(
            model="allenai:olmo-3.1-32b-think", messages=[{"role": "user", "content": parts}]
        )
    assert info.value.body["param"] == "messages[0].content[1]"


# -- n, logprobs, reasoning, usage details ---------------------------------------------------


def test_n_choices_through_the_server(server, emulator):
    emulator.push(Script("first answer", alternatives=["second answer"]))
    completion = server.oai.chat.completions.create(model=MODEL, messages=QUESTION, n=2)
    assert [c.message.content for c in completion.choices] == ["first answer", "second answer"]
    assert [c.index for c in completion.choices] == [0, 1]
    assert received(emulator)["n"] == 2
    emulator.push(Script("first answer", alternatives=["second answer"]))
    texts: dict[int, str] = {}
    finishes = {}
    for chunk in server.oai.chat.completions.create(
        model=MODEL, messages=QUESTION, n=2, stream=True
    ):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            finishes[choice.index] = choice.finish_reason or finishes.get(choice.index)
    assert texts == {0: "first answer", 1: "second answer"}
    assert finishes == {0: "stop", 1: "stop"}


async def test_n_choices_with_async_client(emulator):
    emulator.push(Script("first answer", alternatives=["second answer"]))
    async with make_client(emulator) as client:
        answer = await client.chat.completions.create(model=MODEL, messages="Hi", n=2)
    assert [c.message.content for c in answer.choices] == ["first answer", "second answer"]


def test_logprobs_through_the_server(server, emulator):
    emulator.push(Script("Paris is sunny"))
    completion = server.oai.chat.completions.create(
        model=MODEL, messages=QUESTION, logprobs=True, top_logprobs=2
    )
    tokens = completion.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == "Paris is sunny"
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in tokens)
    sent = received(emulator)
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    emulator.push(Script("Paris is sunny"))
    streamed = []
    for chunk in server.oai.chat.completions.create(
        model=MODEL, messages=QUESTION, logprobs=True, stream=True
    ):
        for choice in chunk.choices:
            if choice.logprobs and choice.logprobs.content:
                streamed += [t.token for t in choice.logprobs.content]
    assert "".join(streamed) == "Paris is sunny"


def test_reasoning_usage_details_and_the_upstream_model_id(server, emulator):
    script = dict(
        text="Paris.",
        reasoning="The user asks about Paris.",
        cached_tokens=3,
        extra={"model": "gpt-4o-mini-2024-07-18"},
    )
    emulator.push(Script(**script), Script(**script))
    completion = server.oai.chat.completions.create(
        model=MODEL, messages=QUESTION, reasoning_effort="low"
    )
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.choices[0].message.model_extra["reasoning_content"] == (
        "The user asks about Paris."
    )
    assert completion.choices[0].message.content == "Paris."
    assert completion.usage.prompt_tokens_details.cached_tokens == 3
    assert completion.usage.completion_tokens_details.reasoning_tokens == 5
    assert completion.system_fingerprint and completion.service_tier == "default"
    assert received(emulator)["reasoning_effort"] == "low"
    reasoning, text, usage = "", "", None
    for chunk in server.oai.chat.completions.create(
        model=MODEL, messages=QUESTION, stream=True, stream_options={"include_usage": True}
    ):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
            text += choice.delta.content or ""
        assert chunk.model == "gpt-4o-mini-2024-07-18"
    assert (reasoning, text) == ("The user asks about Paris.", "Paris.")
    assert usage.completion_tokens_details.reasoning_tokens == 5


async def test_reasoning_with_async_client_is_not_part_of_the_text(emulator):
    emulator.push(Script("Paris.", reasoning="Thinking it over."))
    async with make_client(emulator) as client:
        stream = await client.chat.completions.create(model=MODEL, messages="Hi", stream=True)
        chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.reasoning_content or "" for c in chunks) == (
        "Thinking it over."
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Paris."


# -- stream objects ----------------------------------------------------------------------------


async def test_async_stream_closes_the_upstream_when_left_early(emulator):
    from llmplex.testing import eventually

    emulator.script = Script("word " * 300, delay=0.01)
    async with make_client(emulator) as client:
        async with await client.chat.completions.create(
            model=MODEL, messages="Hi", stream=True
        ) as stream:
            async for chunk in stream:
                assert chunk.choices[0].delta.role == "assistant"
                break
            await eventually(lambda: emulator.open_streams == 1)
        await eventually(lambda: emulator.open_streams == 0)  # closed at the block's end
        await stream.close()  # closing again is harmless


def test_sync_client_stream_object(emulator):
    from llmplex import Client
    from llmplex.client import Stream

    emulator.push(Script(tool_calls=[CALL]))
    with Client(
        store=MemoryStore(),
        provider_options={"OpenAI": {"base_url": emulator.url + "/v1", "api_key": KEY}},
    ) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages="Hi", tools=TOOLS, stream=True
        )
        assert isinstance(stream, Stream)
        with stream:
            chunks = list(stream)
        arguments = "".join(
            d.function.arguments or "" for c in chunks for d in c.choices[0].delta.tool_calls or ()
        )
        assert json.loads(arguments) == {"city": "Paris"}
        emulator.script = Script("word " * 300, delay=0.01)
        with client.chat.completions.create(model=MODEL, messages="Hi", stream=True) as stream:
            next(stream)
        deadline = time.monotonic() + 5
        while emulator.open_streams and time.monotonic() < deadline:
            time.sleep(0.01)
        assert emulator.open_streams == 0
