"""The OpenAI emulator answers everything Chat Completions answers, checked with the SDK.

Tool calls (streamed in argument fragments and not), the tool round trip, the SDK's
``chat.completions.stream`` helper and ``parse``, reasoning, refusals, logprobs, ``n``,
JSON output, cached tokens, the model id and service tier, and the 400s strict mode
answers. Every request goes through the official ``openai`` client over a real socket.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Literal

import openai
import pytest
from pydantic import BaseModel

from llmplex.emulators.openai import OpenAIEmulator
from llmplex.testing import Fault, Script, serve

KEY = "sk-test-0123456789abcdef"
USER = [{"role": "user", "content": "What is the weather in Paris?"}]
CALL_ID = re.compile(r"^call_[A-Za-z0-9]{24}$")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
CALLS = [
    {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
    {"name": "get_time", "arguments": '{"zone":"Europe/Paris"}', "id": "call_fixed_1"},
]


def client(emulator) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=emulator.url + "/v1", api_key=KEY, max_retries=0)


def sent(emulator) -> list[dict]:
    return [r.json for r in emulator.requests_to("/chat/completions", "POST")]


async def stream_chunks(emulator, **kwargs) -> list:
    kwargs.setdefault("model", "gpt-4o-mini")
    kwargs.setdefault("messages", USER)
    async with client(emulator) as oai:
        stream = await oai.chat.completions.create(stream=True, **kwargs)
        return [chunk async for chunk in stream]


def reassemble(chunks, choice: int = 0) -> dict[int, dict]:
    """The tool calls of a stream, by index, the way a client must rebuild them."""
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for c in chunk.choices:
            if c.index != choice:
                continue
            for delta in c.delta.tool_calls or ():
                call = calls.setdefault(
                    delta.index, {"id": None, "name": "", "arguments": "", "fragments": 0}
                )
                if delta.id:
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    call["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
                    call["fragments"] += 1
    return calls


# -- tool calls --------------------------------------------------------------------------------


async def test_tool_calls_streamed_in_fragments(openai_emulator):
    openai_emulator.script = Script(tool_calls=CALLS)
    chunks = await stream_chunks(openai_emulator, tools=[WEATHER_TOOL, TIME_TOOL])
    calls = reassemble(chunks)
    assert sorted(calls) == [0, 1]
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert calls[0]["arguments"] == '{"city":"Paris","unit":"celsius"}'  # compact JSON
    assert CALL_ID.match(calls[0]["id"])
    assert calls[1] == {
        "id": "call_fixed_1",
        "name": "get_time",
        "arguments": '{"zone":"Europe/Paris"}',
        "fragments": calls[1]["fragments"],
    }
    assert calls[0]["fragments"] >= 5 and calls[1]["fragments"] >= 4  # really split
    deltas = [c.choices[0].delta for c in chunks]
    # The first call rides on the role chunk, OpenAI's form for a calls-only answer.
    first = deltas[0]
    assert first.role == "assistant" and first.content is None and first.refusal is None
    assert first.tool_calls[0].id == calls[0]["id"] and first.tool_calls[0].type == "function"
    assert first.tool_calls[0].function.arguments == ""
    # Later fragments carry only the index and the arguments.
    headers = [d for d in deltas if d.tool_calls and d.tool_calls[0].id]
    assert [h.tool_calls[0].index for h in headers] == [0, 1]
    for d in deltas[1:]:
        if d.tool_calls and not d.tool_calls[0].id:
            assert d.tool_calls[0].type is None and d.tool_calls[0].function.name is None
        assert d.role is None and not d.content
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)


async def test_tool_call_ids_are_deterministic_per_seed():
    ids = []
    for _ in range(2):
        with serve(OpenAIEmulator(Script(tool_calls=CALLS[:1]), seed=42)) as emu:
            async with client(emu) as oai:
                answer = await oai.chat.completions.create(model="gpt-4o", messages=USER)
            ids.append(answer.choices[0].message.tool_calls[0].id)
    assert ids[0] == ids[1] and CALL_ID.match(ids[0])


async def test_tool_calls_not_streamed(openai_emulator):
    openai_emulator.script = Script(tool_calls=CALLS)
    async with client(openai_emulator) as oai:
        answer = await oai.chat.completions.create(
            model="gpt-4o", messages=USER, tools=[WEATHER_TOOL, TIME_TOOL]
        )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None and choice.message.refusal is None
    calls = choice.message.tool_calls
    assert [(c.type, c.function.name, c.function.arguments) for c in calls] == [
        ("function", "get_weather", '{"city":"Paris","unit":"celsius"}'),
        ("function", "get_time", '{"zone":"Europe/Paris"}'),
    ]
    assert CALL_ID.match(calls[0].id) and calls[1].id == "call_fixed_1"
    raw = openai_emulator.requests[-1]
    assert raw.json["tools"] == [WEATHER_TOOL, TIME_TOOL]


async def test_text_and_tool_calls_together(openai_emulator):
    openai_emulator.script = Script("Let me check.", tool_calls=CALLS[:1])
    async with client(openai_emulator) as oai:
        answer = await oai.chat.completions.create(
            model="gpt-4o", messages=USER, tools=[WEATHER_TOOL]
        )
    chunks = await stream_chunks(openai_emulator, tools=[WEATHER_TOOL])
    assert answer.choices[0].message.content == "Let me check."
    assert answer.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert answer.choices[0].finish_reason == "tool_calls"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Let me check."
    assert chunks[0].choices[0].delta.content == "" and not chunks[0].choices[0].delta.tool_calls
    assert reassemble(chunks)[0]["name"] == "get_weather"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_an_explicit_finish_reason_is_kept_with_tool_calls(openai_emulator):
    openai_emulator.script = Script(tool_calls=CALLS[:1], finish_reason="length")
    async with client(openai_emulator) as oai:
        answer = await oai.chat.completions.create(model="gpt-4o", messages=USER)
    assert answer.choices[0].finish_reason == "length"


async def test_tool_round_trip(openai_emulator):
    openai_emulator.push(Script(tool_calls=CALLS[:1]), Script("It is 21 °C in Paris."))
    async with client(openai_emulator) as oai:
        first = await oai.chat.completions.create(
            model="gpt-4o", messages=USER, tools=[WEATHER_TOOL]
        )
        call = first.choices[0].message.tool_calls[0]
        messages = [
            *USER,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
        ]
        final = await oai.chat.completions.create(
            model="gpt-4o", messages=messages, tools=[WEATHER_TOOL]
        )
    assert final.choices[0].message.content == "It is 21 °C in Paris."
    assert final.choices[0].finish_reason == "stop"
    second = sent(openai_emulator)[1]["messages"]
    assert second[1]["role"] == "assistant" and "content" not in second[1]
    assert second[1]["tool_calls"][0]["id"] == call.id
    assert second[2] == {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}


async def test_tool_choice_steers_the_calls(openai_emulator):
    tools = [WEATHER_TOOL, TIME_TOOL]
    openai_emulator.script = Script(tool_calls=CALLS)
    async with client(openai_emulator) as oai:
        none = await oai.chat.completions.create(
            model="gpt-4o", messages=USER, tools=tools, tool_choice="none"
        )
        named = await oai.chat.completions.create(
            model="gpt-4o",
            messages=USER,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
        single = await oai.chat.completions.create(
            model="gpt-4o", messages=USER, tools=tools, parallel_tool_calls=False
        )
        openai_emulator.script = Script(tool_calls=CALLS[:1])
        unscripted = await oai.chat.completions.create(
            model="gpt-4o",
            messages=USER,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
        openai_emulator.script = Script()
        required = await oai.chat.completions.create(
            model="gpt-4o", messages=USER, tools=tools, tool_choice="required"
        )
        auto = await oai.chat.completions.create(model="gpt-4o", messages=USER, tools=tools)
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].message.content == "Hello! How can I help you today?"
    assert none.choices[0].finish_reason == "stop"
    [call] = named.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_fixed_1",
        "get_time",
        '{"zone":"Europe/Paris"}',
    )
    assert [c.function.name for c in single.choices[0].message.tool_calls] == ["get_weather"]
    [call] = unscripted.choices[0].message.tool_calls
    assert (call.function.name, call.function.arguments) == ("get_time", "{}")
    [call] = required.choices[0].message.tool_calls
    assert (call.function.name, call.function.arguments) == ("get_weather", "{}")
    assert required.choices[0].finish_reason == "tool_calls"
    assert auto.choices[0].message.tool_calls is None


async def test_tool_call_stream_fault(openai_emulator):
    openai_emulator.script = Script(
        tool_calls=CALLS[:1], fault=Fault.error_event("overloaded", after=2)
    )
    seen = []
    async with client(openai_emulator) as oai:
        with pytest.raises(openai.APIError, match="overloaded"):
            async for chunk in await oai.chat.completions.create(
                model="gpt-4o", messages=USER, stream=True
            ):
                seen.append(chunk)
    assert len(seen) == 3  # the role chunk with the call's header, then two fragments


# -- the SDK's stream helper ------------------------------------------------------------------


class GetWeather(BaseModel):
    city: str
    unit: Literal["celsius", "fahrenheit"]


async def test_stream_helper_on_a_tool_only_answer(openai_emulator):
    openai_emulator.script = Script(
        tool_calls=[{"name": "GetWeather", "arguments": {"city": "Paris", "unit": "celsius"}}]
    )
    async with (
        client(openai_emulator) as oai,
        oai.chat.completions.stream(
            model="gpt-4o", messages=USER, tools=[openai.pydantic_function_tool(GetWeather)]
        ) as stream,
    ):
        events = [event async for event in stream]
        final = await stream.get_final_completion()
    types = [e.type for e in events]
    assert "content.delta" not in types
    assert types.count("tool_calls.function.arguments.delta") >= 5
    [done] = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert done.name == "GetWeather" and done.parsed_arguments == GetWeather(
        city="Paris", unit="celsius"
    )
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls[0].function.parsed_arguments == GetWeather(
        city="Paris", unit="celsius"
    )
    assert CALL_ID.match(message.tool_calls[0].id)


async def test_stream_helper_on_a_refusal(openai_emulator):
    openai_emulator.script = Script(refusal="I'm sorry, I can't help with that.")
    async with (
        client(openai_emulator) as oai,
        oai.chat.completions.stream(
            model="gpt-4o", messages=USER, response_format=GetWeather
        ) as stream,
    ):
        events = [event async for event in stream]
        final = await stream.get_final_completion()
    deltas = [e.delta for e in events if e.type == "refusal.delta"]
    assert deltas[0] == ""  # the role chunk opens the refusal, as "content": "" opens text
    assert len(deltas) == 8 and "".join(deltas) == "I'm sorry, I can't help with that."
    [done] = [e for e in events if e.type == "refusal.done"]
    assert done.refusal == "I'm sorry, I can't help with that."
    assert not [e for e in events if e.type == "content.delta"]
    message = final.choices[0].message
    assert message.refusal == "I'm sorry, I can't help with that."
    assert message.content is None and message.parsed is None
    assert final.choices[0].finish_reason == "stop"


async def test_stream_helper_on_an_empty_answer(openai_emulator):
    openai_emulator.script = Script(text="")
    async with (
        client(openai_emulator) as oai,
        oai.chat.completions.stream(
            model="gpt-4o", messages=USER, stream_options={"include_usage": True}
        ) as stream,
    ):
        events = [event async for event in stream]
        final = await stream.get_final_completion()
    # The role chunk (its "content": "" a first, empty content delta), finish, usage.
    assert [e.type for e in events] == ["chunk", "content.delta", "chunk", "chunk"]
    assert final.choices[0].message.content == ""
    assert final.choices[0].message.tool_calls is None
    assert final.choices[0].finish_reason == "stop"
    assert final.usage.completion_tokens == 0


async def test_stream_helper_get_final_completion_of_text(openai_emulator):
    openai_emulator.script = Script(chunks=["Bonjour", " Paris", "!"])
    async with (
        client(openai_emulator) as oai,
        oai.chat.completions.stream(model="gpt-4o", messages=USER) as stream,
    ):
        deltas = [e.delta async for e in stream if e.type == "content.delta"]
        final = await stream.get_final_completion()
    assert deltas == ["", "Bonjour", " Paris", "!"]
    assert final.choices[0].message.content == "Bonjour Paris!"
    assert final.model == "gpt-4o" and final.system_fingerprint == "fp_0ba0d124f1"


# -- JSON output -------------------------------------------------------------------------------


class Colour(StrEnum):
    red = "red"
    green = "green"


class Address(BaseModel):
    street: str
    number: int


class Person(BaseModel):
    name: str
    age: int
    height: float
    admin: bool
    colour: Colour
    kind: Literal["human", "robot"]
    tags: list[str]
    address: Address
    previous: list[Address]
    nickname: str | None


async def test_parse_returns_a_parsed_object(openai_emulator):
    async with client(openai_emulator) as oai:
        completion = await oai.chat.completions.parse(
            model="gpt-4o", messages=USER, response_format=Person
        )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Person)
    assert parsed == Person(
        name="",
        age=0,
        height=0,
        admin=False,
        colour=Colour.red,
        kind="human",
        tags=[""],
        address=Address(street="", number=0),
        previous=[Address(street="", number=0)],
        nickname="",
    )
    fmt = sent(openai_emulator)[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Person"
    assert "$defs" in fmt["json_schema"]["schema"]  # the $refs really were resolved


async def test_parse_streamed_in_json_fragments(openai_emulator):
    async with (
        client(openai_emulator) as oai,
        oai.chat.completions.stream(
            model="gpt-4o", messages=USER, response_format=Address
        ) as stream,
    ):
        deltas = [e.delta async for e in stream if e.type == "content.delta"]
        final = await stream.get_final_completion()
    assert "".join(deltas) == '{"street":"","number":0}' and len(deltas) > 3
    assert final.choices[0].message.parsed == Address(street="", number=0)


async def test_json_schema_minimal_instances(openai_emulator):
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "when": {"type": "string", "format": "date-time"},
            "code": {"type": "string", "minLength": 3},
            "count": {"type": "integer", "minimum": 5, "multipleOf": 4},
            "ratio": {"type": "number", "exclusiveMinimum": 0.5},
            "mode": {"const": "fast"},
            "choice": {"oneOf": [{"type": "boolean"}, {"type": "string"}]},
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "null"}]},
            "many": {"type": "array", "items": {"$ref": "#/$defs/Leaf"}, "minItems": 2},
            "both": {
                "allOf": [
                    {"$ref": "#/$defs/Leaf"},
                    {
                        "type": "object",
                        "properties": {"extra": {"type": "boolean"}},
                        "required": ["extra"],
                    },
                ]
            },
            "tree": {"$ref": "#/$defs/Tree"},
            "optional": {"type": "string"},
        },
        "required": [
            "id",
            "when",
            "code",
            "count",
            "ratio",
            "mode",
            "choice",
            "pair",
            "many",
            "both",
            "tree",
        ],
        "$defs": {
            "Leaf": {
                "type": "object",
                "properties": {"leaf": {"type": ["string", "null"]}},
                "required": ["leaf"],
            },
            "Tree": {
                "type": "object",
                "required": ["children"],
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}}},
            },
        },
    }
    async with client(openai_emulator) as oai:
        answer = await oai.chat.completions.create(
            model="gpt-4o",
            messages=USER,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "thing", "schema": schema},
            },
        )
    value = json.loads(answer.choices[0].message.content)
    tree = value.pop("tree")
    assert value == {
        "id": "00000000-0000-0000-0000-000000000000",
        "when": "1970-01-01T00:00:00Z",
        "code": "aaa",
        "count": 8,
        "ratio": 1.5,
        "mode": "fast",
        "choice": False,
        "pair": [0, None],
        "many": [{"leaf": ""}, {"leaf": ""}],
        "both": {"leaf": "", "extra": False},
    }
    depth = 0
    while tree["children"]:  # a recursive schema ends once it may
        [tree] = tree["children"]
        depth += 1
    assert 1 <= depth < 30


async def test_json_object_and_scripted_text(openai_emulator):
    async with client(openai_emulator) as oai:
        default = await oai.chat.completions.create(
            model="gpt-4o", messages=USER, response_format={"type": "json_object"}
        )
        openai_emulator.script = Script('{"city": "Paris"}')
        scripted = await oai.chat.completions.create(
            model="gpt-4o",
            messages=USER,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "Person", "schema": {}},
            },
        )
    assert json.loads(default.choices[0].message.content) == {
        "answer": "Hello! How can I help you today?"
    }
    assert scripted.choices[0].message.content == '{"city": "Paris"}'  # sent as is


# -- reasoning, refusal, logprobs --------------------------------------------------------------


async def test_reasoning_streamed_and_not(openai_emulator):
    openai_emulator.script = Script("Paris is sunny.", reasoning="The user asks about weather")
    chunks = await stream_chunks(openai_emulator, stream_options={"include_usage": True})
    async with client(openai_emulator) as oai:
        answer = await oai.chat.completions.create(model="gpt-4o", messages=USER)
    reasoning = [
        c.choices[0].delta.model_extra.get("reasoning_content") for c in chunks if c.choices
    ]
    pieces = [r for r in reasoning if r is not None]
    assert "".join(pieces) == "The user asks about weather" and len(pieces) == 5
    texts = [c.choices[0].delta.content for c in chunks if c.choices]
    first_text = next(i for i, t in enumerate(texts) if t)
    last_reasoning = max(i for i, r in enumerate(reasoning) if r is not None)
    assert last_reasoning < first_text  # reasoning comes first
    assert "".join(t or "" for t in texts) == "Paris is sunny."
    usage = chunks[-1].usage
    assert usage.completion_tokens_details.reasoning_tokens == 5
    assert usage.completion_tokens == 5 + 3
    message = answer.choices[0].message
    assert message.content == "Paris is sunny."
    assert message.model_extra["reasoning_content"] == "The user asks about weather"
    assert answer.usage.completion_tokens_details.reasoning_tokens == 5


async def test_reasoning_in_openrouters_field(openai_emulator):
    openai_emulator.script = Script(
        "Yes.", reasoning="Short thought", extra={"reasoning_field": "reasoning"}
    )
    chunks = await stream_chunks(openai_emulator)
    async with client(openai_emulator) as oai:
        answer = await oai.chat.completions.create(model="gpt-4o", messages=USER)
    assert (
        "".join(getattr(c.choices[0].delta, "reasoning", None) or "" for c in chunks)
        == "Short thought"
    )
    assert not any("reasoning_content" in c.choices[0].delta.model_extra for c in chunks)
    assert answer.choices[0].message.model_extra == {"reasoning": "Short thought"}


async def test_refusal_not_streamed(openai_emulator):
    openai_emulator.script = Script(refusal="I can't do that.", tool_calls=CALLS)
    async with client(openai_emulator) as oai:
        answer = await oai.chat.completions.create(model="gpt-4o", messages=USER)
    message = answer.choices[0].message
    assert message.refusal == "I can't do that."
    assert message.content is None and message.tool_calls is None
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.completion_tokens == 4


async def test_logprobs_with_top_logprobs(openai_emulator):
    openai_emulator.script = Script(chunks=["Hé", " there", "!"])
    chunks = await stream_chunks(openai_emulator, logprobs=True, top_logprobs=3)
    async with client(openai_emulator) as oai:
        answer = await oai.chat.completions.create(
            model="gpt-4o", messages=USER, logprobs=True, top_logprobs=3
        )
        plain = await oai.chat.completions.create(model="gpt-4o", messages=USER)
        zero = await oai.chat.completions.create(model="gpt-4o", messages=USER, logprobs=True)
    streamed = [
        entry
        for c in chunks
        if c.choices[0].logprobs
        for entry in c.choices[0].logprobs.content or ()
    ]
    assert chunks[0].choices[0].logprobs.content == []  # the role chunk
    assert chunks[-1].choices[0].logprobs is None  # the finish chunk
    assert [e.token for e in streamed] == ["Hé", " there", "!"]
    assert streamed[0].bytes == list("Hé".encode())
    whole = answer.choices[0].logprobs.content
    assert [e.model_dump() for e in whole] == [e.model_dump() for e in streamed]
    for entry in whole:
        assert -0.75 < entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == entry.logprob
        values = [t.logprob for t in entry.top_logprobs]
        assert values == sorted(values, reverse=True) and len(set(values)) == 3
        assert len({t.token for t in entry.top_logprobs}) == 3
    assert whole[0].logprob != whole[1].logprob  # derived from the token
    assert answer.choices[0].logprobs.refusal is None
    assert plain.choices[0].logprobs is None
    assert all(e.top_logprobs == [] for e in zero.choices[0].logprobs.content)


# -- n choices ---------------------------------------------------------------------------------


async def test_n_choices_not_streamed(openai_emulator):
    openai_emulator.script = Script("First answer here", alternatives=["Second one"])
    async with client(openai_emulator) as oai:
        answer = await oai.chat.completions.create(model="gpt-4o", messages=USER, n=3)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert [c.message.content for c in answer.choices] == [
        "First answer here",
        "Second one",
        "First answer here",
    ]
    assert answer.usage.completion_tokens == 3 + 2 + 3


async def test_n_choices_streamed(openai_emulator):
    openai_emulator.script = Script("One two three", alternatives=["Four"])
    chunks = await stream_chunks(openai_emulator, n=2, stream_options={"include_usage": True})
    assert all(len(c.choices) == 1 for c in chunks[:-1]) and chunks[-1].choices == []
    order = [c.choices[0].index for c in chunks[:-1]]
    assert order[:4] == [0, 1, 0, 1]  # interleaved, each choice its own role chunk first
    texts = {0: "", 1: ""}
    roles, finishes = [], []
    for c in chunks[:-1]:
        choice = c.choices[0]
        texts[choice.index] += choice.delta.content or ""
        if choice.delta.role:
            roles.append(choice.index)
        if choice.finish_reason:
            finishes.append((choice.index, choice.finish_reason))
    assert texts == {0: "One two three", 1: "Four"}
    assert roles == [0, 1]
    assert sorted(finishes) == [(0, "stop"), (1, "stop")]
    assert chunks[-1].usage.completion_tokens == 4


async def test_n_choices_with_tool_calls_and_limits(openai_emulator):
    openai_emulator.script = Script(tool_calls=CALLS[:1])
    chunks = await stream_chunks(openai_emulator, n=2)
    calls = [reassemble(chunks, 0)[0], reassemble(chunks, 1)[0]]
    assert calls[0]["arguments"] == calls[1]["arguments"] == '{"city":"Paris","unit":"celsius"}'
    assert calls[0]["id"] != calls[1]["id"]  # every choice its own ids
    openai_emulator.script = Script("a b c d e", alternatives=["f g h i j"])
    async with client(openai_emulator) as oai:
        answer = await oai.chat.completions.create(model="gpt-4o", messages=USER, n=2, max_tokens=2)
    assert [(c.message.content, c.finish_reason) for c in answer.choices] == [
        ("a b", "length"),
        ("f g", "length"),
    ]


# -- usage details, model id, service tier ------------------------------------------------------


async def test_cached_tokens_model_id_and_service_tier(openai_emulator):
    openai_emulator.script = Script(cached_tokens=1024, extra={"model": "gpt-4o-mini-2024-07-18"})
    chunks = await stream_chunks(
        openai_emulator, service_tier="flex", stream_options={"include_usage": True}
    )
    async with client(openai_emulator) as oai:
        answer = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, service_tier="priority"
        )
        auto = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, service_tier="auto"
        )
    assert {c.model for c in chunks} == {"gpt-4o-mini-2024-07-18"}
    assert {c.service_tier for c in chunks} == {"flex"}
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 1024
    assert answer.model == "gpt-4o-mini-2024-07-18" and answer.service_tier == "priority"
    assert answer.usage.prompt_tokens_details.cached_tokens == 1024
    assert answer.system_fingerprint == "fp_0ba0d124f1"
    assert auto.service_tier == "default"


# -- validation (strict mode) -------------------------------------------------------------------


ASSISTANT_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"},
        },
    ],
}
IMAGE = "https://example.com/cat.png"

INVALID = [
    pytest.param(
        {"messages": [*USER, {"role": "tool", "content": "21"}]},
        "messages.[1].tool_call_id",
        None,
        "Missing parameter 'tool_call_id': messages with role 'tool' must have a 'tool_call_id'.",
        id="tool-without-id",
    ),
    pytest.param(
        {
            "messages": [
                *USER,
                ASSISTANT_CALL,
                {"role": "tool", "tool_call_id": "call_a", "content": "1"},
                {"role": "user", "content": "and?"},
            ]
        },
        "messages.[3].role",
        None,
        "An assistant message with 'tool_calls' must be followed by tool messages "
        "responding to each 'tool_call_id'. The following tool_call_ids did not have "
        "response messages: call_b",
        id="call-not-answered",
    ),
    pytest.param(
        {"messages": [*USER, ASSISTANT_CALL]},
        "messages.[1].role",
        None,
        "The following tool_call_ids did not have response messages: call_a, call_b",
        id="calls-last",
    ),
    pytest.param(
        {"messages": [*USER, {"role": "tool", "tool_call_id": "call_a", "content": "1"}]},
        "messages.[1].role",
        None,
        "Invalid parameter: messages with role 'tool' must be a response to a "
        "preceeding message with 'tool_calls'.",
        id="tool-not-preceded",
    ),
    pytest.param(
        {
            "messages": [
                *USER,
                ASSISTANT_CALL,
                {"role": "tool", "tool_call_id": "call_a", "content": "1"},
                {"role": "tool", "tool_call_id": "call_zzz", "content": "1"},
            ]
        },
        "messages.[3].role",
        None,
        "must be a response to a preceeding message",
        id="tool-unknown-id",
    ),
    pytest.param(
        {"messages": [*USER, {"role": "assistant", "content": None}]},
        "messages.[1].content",
        None,
        "Invalid value for 'content': expected a string, got null.",
        id="assistant-null-content",
    ),
    pytest.param(
        {
            "messages": [
                *USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
            ]
        },
        "messages[1].tool_calls[0].id",
        "missing_required_parameter",
        "Missing required parameter: 'messages[1].tool_calls[0].id'.",
        id="call-without-id",
    ),
    pytest.param(
        {"tools": [{"type": "function", "function": {"description": "x"}}]},
        "tools[0].function.name",
        "missing_required_parameter",
        "Missing required parameter: 'tools[0].function.name'.",
        id="tool-no-name",
    ),
    pytest.param(
        {"tools": [{"type": "retrieval"}]},
        "tools[0].type",
        "invalid_value",
        "Invalid value: 'retrieval'. Supported values are: 'function' and 'custom'.",
        id="tool-type",
    ),
    pytest.param(
        {"tools": [{"type": "function"}]},
        "tools[0].function",
        "missing_required_parameter",
        "Missing required parameter: 'tools[0].function'.",
        id="tool-no-function",
    ),
    pytest.param(
        {"tools": [{"type": "function", "function": {"name": "get weather"}}]},
        "tools[0].function.name",
        "invalid_value",
        "string does not match pattern",
        id="tool-name-pattern",
    ),
    pytest.param(
        {"tools": []}, "tools", "empty_array", "Invalid 'tools': empty array.", id="tools-empty"
    ),
    pytest.param(
        {"tools": [WEATHER_TOOL], "tool_choice": "always"},
        "tool_choice",
        "invalid_value",
        "Invalid value: 'always'. Supported values are: 'none', 'auto', and 'required'.",
        id="tool-choice-value",
    ),
    pytest.param(
        {
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        },
        "tool_choice.function.name",
        "invalid_value",
        "function 'get_time' is not one of the functions in 'tools'",
        id="tool-choice-undefined",
    ),
    pytest.param(
        {"tool_choice": "auto"},
        "tool_choice",
        None,
        "'tool_choice' is only allowed when 'tools' are specified.",
        id="tool-choice-without-tools",
    ),
    pytest.param(
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function"}},
        "tool_choice.function",
        "missing_required_parameter",
        "Missing required parameter: 'tool_choice.function'.",
        id="tool-choice-no-function",
    ),
    pytest.param(
        {"top_logprobs": 3},
        "top_logprobs",
        None,
        "The 'top_logprobs' parameter is only allowed when 'logprobs' is enabled.",
        id="top-logprobs-without-logprobs",
    ),
    pytest.param(
        {"logprobs": True, "top_logprobs": 21},
        "top_logprobs",
        "integer_above_max_value",
        "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, "
        "but got 21 instead.",
        id="top-logprobs-high",
    ),
    pytest.param(
        {"logprobs": True, "top_logprobs": -1},
        "top_logprobs",
        "integer_below_min_value",
        "Expected a value >= 0, but got -1 instead.",
        id="top-logprobs-low",
    ),
    pytest.param(
        {"n": 0},
        "n",
        "integer_below_min_value",
        "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        id="n-low",
    ),
    pytest.param(
        {"n": 129},
        "n",
        "integer_above_max_value",
        "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 129 instead.",
        id="n-high",
    ),
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "ftp://example.com/cat.png"}},
                    ],
                }
            ]
        },
        "messages[0].content[1].image_url.url",
        "invalid_value",
        "Invalid image URL: 'messages[0].content[1].image_url.url'. Expected a valid "
        "URL, but got a value with an invalid format.",
        id="image-url-scheme",
    ),
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "cat.png"}}],
                }
            ]
        },
        "messages[0].content[0].image_url.url",
        "invalid_value",
        "Invalid image URL",
        id="image-url-relative",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "image", "image": IMAGE}]}]},
        "messages[0].content[0].type",
        "invalid_value",
        "Invalid value: 'image'. Supported values are: 'text', 'image_url', "
        "'input_audio', and 'file'.",
        id="part-type",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "system", "content": [{"type": "image_url", "image_url": {"url": IMAGE}}]},
                *USER,
            ]
        },
        "messages[0].content[0].type",
        "invalid_value",
        "Invalid value: 'image_url'. Supported values are: 'text'.",
        id="part-type-for-role",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        "messages[0].content[0].text",
        "missing_required_parameter",
        "Missing required parameter: 'messages[0].content[0].text'.",
        id="text-part-without-text",
    ),
    pytest.param(
        {"service_tier": "turbo"},
        "service_tier",
        "invalid_value",
        "Supported values are: 'auto', 'default', 'flex', 'scale', and 'priority'.",
        id="service-tier",
    ),
    pytest.param(
        {"response_format": {"type": "yaml"}},
        "response_format.type",
        "invalid_value",
        "Invalid value: 'yaml'.",
        id="response-format",
    ),
    pytest.param(
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "response_format.json_schema.name",
        "missing_required_parameter",
        "Missing required parameter: 'response_format.json_schema.name'.",
        id="json-schema-name",
    ),
]


@pytest.mark.parametrize("body, param, code, message", INVALID)
async def test_strict_validation_errors(openai_emulator, body, param, code, message):
    body = {"model": "gpt-4o", "messages": USER, **body}
    async with client(openai_emulator) as oai:
        with pytest.raises(openai.BadRequestError) as info:
            await oai.chat.completions.create(**body)
    error = info.value
    assert error.status_code == 400
    assert message in error.message
    assert error.param == param
    assert error.code == code
    assert error.type == "invalid_request_error"
    # A compatible server (strict=False) takes the same body.
    with serve(OpenAIEmulator(strict=False)) as lenient:
        async with client(lenient) as oai:
            answer = await oai.chat.completions.create(**body)
    assert answer.choices[0].finish_reason in ("stop", "tool_calls")


async def test_valid_tool_conversations_and_parts_are_accepted(openai_emulator):
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": IMAGE}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        ASSISTANT_CALL,
        {"role": "tool", "tool_call_id": "call_b", "content": "1"},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "2"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Done."}]},
        {"role": "user", "content": "Thanks"},
    ]
    async with client(openai_emulator) as oai:
        answer = await oai.chat.completions.create(
            model="gpt-4o",
            messages=messages,
            tools=[WEATHER_TOOL],
            tool_choice="auto",
            logprobs=True,
            top_logprobs=0,
            n=1,
            service_tier="default",
        )
    assert answer.choices[0].message.content == "Hello! How can I help you today?"
    assert sent(openai_emulator)[0]["messages"] == messages


async def test_lenient_mode_clamps_n_and_top_logprobs():
    with serve(OpenAIEmulator(strict=False)) as emu:
        async with client(emu) as oai:
            many = await oai.chat.completions.create(
                model="m", messages=USER, n=500, logprobs=True, top_logprobs=50
            )
    assert len(many.choices) == 128
    assert len(many.choices[0].logprobs.content[0].top_logprobs) == 20
