"""Replicate driven by each model's own schema (issue 15): the families of
``llmplex.providers.replicate_models.FAMILIES`` against the emulator, which serves their
schemas and checks inputs against them as Replicate does."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from llmplex import AsyncClient
from llmplex.emulators.replicate import ReplicateEmulator
from llmplex.errors import (
    InvalidRequestError,
    ProviderTimeoutError,
    ResponseStatusError,
)
from llmplex.events import ReasoningDelta, ToolCallDelta, Usage
from llmplex.providers import Replicate
from llmplex.providers.replicate_models import ModelSchema, openapi_schema, version_id
from llmplex.providers.replicate_schema import SchemaCache
from llmplex.testing import Script, cancel_mid_stream, eventually, serve
from llmplex.types import FinishReason

KEY = "r8_test_key_0123456789"
LLAMA3 = "meta/meta-llama-3-70b-instruct"
CLAUDE = "anthropic/claude-4-sonnet"
GPT5 = "openai/gpt-5.1"
O4 = "openai/o4-mini"
GRANITE = "ibm-granite/granite-3.3-8b-instruct"
LLAMA2 = "meta/llama-2-70b-chat"
SYSTEM_AND_QUESTION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
]
CONVERSATION = [
    *SYSTEM_AND_QUESTION,
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "How are you?"},
]
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
LLAMA3_TEMPLATE = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{{prompt}}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
PHOTO = "https://example.com/cat.jpg"


class Fast(Replicate):
    """Quick to poll and to give up waiting, so that tests see every path soon."""

    poll_interval = 0.02
    wait_seconds = 1


async def collect(emulator, model, messages="Hi", provider=Replicate, **options):
    options.setdefault("api_key", KEY)
    return [
        chunk
        async for chunk in provider.create_async_generator(
            model, messages, base_url=emulator.url, **options
        )
    ]


def text_of(chunks) -> str:
    return "".join(c for c in chunks if isinstance(c, str))


def created(emulator):
    return [
        r for r in emulator.requests_to("/predictions", "POST") if r.path.endswith("/predictions")
    ]


def cancels(emulator):
    return emulator.requests_to("/cancel", "POST")


# -- the body has exactly the model's names --------------------------------------------------


@pytest.mark.parametrize(
    "model, messages, options, expected",
    [
        # Llama 3: no system_prompt in this version (the system text is the system turn of
        # its prompt_template), max_tokens, penalties; its stop is left to the client
        (
            LLAMA3,
            SYSTEM_AND_QUESTION,
            {"max_tokens": 64, "presence_penalty": 0.5, "top_k": 40},
            {
                "prompt": "Hi",
                "prompt_template": LLAMA3_TEMPLATE.format(system="Be brief."),
                "max_tokens": 64,
                "presence_penalty": 0.5,
                "top_k": 40,
            },
        ),
        # ... and system text a template cannot hold (braces) leads the prompt
        (
            LLAMA3,
            [
                {"role": "system", "content": 'Answer as {"a": 1}.'},
                {"role": "user", "content": "Hi"},
            ],
            {},
            {"prompt": 'System: Answer as {"a": 1}.\nUser: Hi\nAssistant:'},
        ),
        # Claude 4 Sonnet: system_prompt, max_tokens (>= 1024)
        (
            CLAUDE,
            SYSTEM_AND_QUESTION,
            {"max_tokens": 2048},
            {"prompt": "Hi", "system_prompt": "Be brief.", "max_tokens": 2048},
        ),
        # GPT-5.1: one question as prompt/system_prompt; max_completion_tokens, its reasoning
        (
            GPT5,
            SYSTEM_AND_QUESTION,
            {"max_tokens": 300, "reasoning_effort": "low", "verbosity": "low"},
            {
                "prompt": "Hi",
                "system_prompt": "Be brief.",
                "max_completion_tokens": 300,
                "reasoning_effort": "low",
                "verbosity": "low",
            },
        ),
        # ... and a conversation as messages, the system text among them (prompt is ignored)
        (
            GPT5,
            CONVERSATION,
            {},
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "How are you?"},
                ]
            },
        ),
        # o4-mini: max_completion_tokens, reasoning_effort
        (
            O4,
            SYSTEM_AND_QUESTION,
            {"max_tokens": 500, "reasoning_effort": "high"},
            {
                "prompt": "Hi",
                "system_prompt": "Be brief.",
                "max_completion_tokens": 500,
                "reasoning_effort": "high",
            },
        ),
        # Granite 3.3: messages, max_tokens, stop as a list, seed
        (
            GRANITE,
            CONVERSATION,
            {"max_tokens": 10, "stop": ["\n\n", "END"], "seed": 7, "temperature": 0.1},
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "How are you?"},
                ],
                "max_tokens": 10,
                "stop": ["\n\n", "END"],
                "seed": 7,
                "temperature": 0.1,
            },
        ),
        # Llama 2 chat: the classic names
        (
            LLAMA2,
            SYSTEM_AND_QUESTION,
            {"max_tokens": 10, "stop": ["User:", "###"]},
            {
                "prompt": "Hi",
                "system_prompt": "Be brief.",
                "max_new_tokens": 10,
                "stop_sequences": "User:,###",
            },
        ),
    ],
)
async def test_the_body_has_exactly_the_models_names(
    replicate_emulator, model, messages, options, expected
):
    replicate_emulator.script = Script("Fine, thanks.")
    chunks = await collect(replicate_emulator, model, messages, provider=Fast, **options)
    assert text_of(chunks) == "Fine, thanks."
    (create,) = created(replicate_emulator)
    assert create.json == {"input": expected}
    assert create.path == f"/v1/models/{model}/predictions"


async def test_an_option_the_model_does_not_take_is_an_error_naming_its_inputs(replicate_emulator):
    for model, option in (
        (GPT5, {"top_k": 5}),
        (LLAMA3, {"seed": 1}),
        (CLAUDE, {"stop": "x"}),
        (LLAMA3, {"extra_data": {"no_such_input": 1}}),
        (O4, {"tools": TOOLS}),
    ):
        with pytest.raises(InvalidRequestError) as info:
            await collect(replicate_emulator, model, **option)
        message = str(info.value)
        assert info.value.param == next(iter(option)), message
        assert f"model {model} has no input for it" in message
        # its inputs are named, so that the caller can see what it takes
        assert "its inputs are: " in message and "prompt" in message.split("inputs are: ")[1]
    assert created(replicate_emulator) == []  # nothing was sent


async def test_through_the_client_an_option_a_model_lacks_names_its_inputs(replicate_emulator):
    async with AsyncClient(
        provider_options={"Replicate": {"api_key": KEY, "base_url": replicate_emulator.url}}
    ) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.chat.completions.create(model=f"replicate:{GPT5}", messages="Hi", top_k=3)
        assert info.value.param == "top_k"
        assert f"model {GPT5} has no input for it; its inputs are: image_input, " in str(info.value)
        # a stop sequence Llama 3 has no input for is enforced by the client instead
        replicate_emulator.script = Script("Hello! How are you?")
        done = await client.chat.completions.create(
            model=f"replicate:{LLAMA3}", messages="Hi", stop=["!"]
        )
    assert done.choices[0].message.content == "Hello"
    (create,) = created(replicate_emulator)
    assert create.json == {"input": {"prompt": "Hi"}}
    assert len(cancels(replicate_emulator)) == 1  # the rest of the answer is not run


async def test_a_value_out_of_the_models_bounds_is_refused_before_sending(replicate_emulator):
    with pytest.raises(
        InvalidRequestError,
        match=r"max_tokens: model anthropic/claude-4-sonnet "
        r"takes 1024 to 64000, got 100",
    ) as info:
        await collect(replicate_emulator, CLAUDE, max_tokens=100)
    assert info.value.param == "max_tokens"
    with pytest.raises(InvalidRequestError, match="takes one of none, low, medium, high"):
        await collect(replicate_emulator, GPT5, reasoning_effort="extreme")
    assert created(replicate_emulator) == []


# -- models that do not stream: wait, then poll ----------------------------------------------


async def test_a_model_that_does_not_stream_answers_through_prefer_wait(replicate_emulator):
    replicate_emulator.script = Script("The answer is 42.")
    chunks = await collect(replicate_emulator, O4)
    assert chunks[:2] == ["The answer is 42.", FinishReason("stop")]
    assert chunks[2] == Usage(prompt_tokens=1, completion_tokens=4)
    (create,) = created(replicate_emulator)
    assert create.headers["Prefer"] == f"wait={Replicate.wait_seconds}"
    assert "stream" not in create.json  # never the deprecated "stream": true
    assert not replicate_emulator.requests_to("/v1/streams/")
    # the create call answered with the finished prediction: nothing was polled
    assert not replicate_emulator.requests_to("/v1/predictions/", "GET")


async def test_a_slow_model_that_does_not_stream_is_polled(replicate_emulator):
    replicate_emulator.script = Script("Thought it through.", delay=0.4)  # 1.2 s in all
    chunks = await collect(replicate_emulator, O4, provider=Fast)
    assert text_of(chunks) == "Thought it through."
    assert FinishReason("stop") in chunks
    (create,) = created(replicate_emulator)
    assert create.headers["Prefer"] == "wait=1"
    polls = replicate_emulator.requests_to("/v1/predictions/", "GET")
    assert len(polls) >= 2 and all(p.headers["Authorization"] == f"Bearer {KEY}" for p in polls)
    assert not cancels(replicate_emulator)


async def test_a_failed_prediction_that_does_not_stream_is_a_stream_error(replicate_emulator):
    from llmplex.errors import StreamError
    from llmplex.testing import Fault

    replicate_emulator.script = Script("x", fault=Fault.error_event("CUDA out of memory"))
    with pytest.raises(StreamError, match="prediction failed: CUDA out of memory"):
        await collect(replicate_emulator, O4, provider=Fast)
    assert not cancels(replicate_emulator)


# -- cancellation on every path ----------------------------------------------------------------


async def test_task_cancel_while_polling_cancels_the_prediction(replicate_emulator):
    replicate_emulator.script = Script("one two three four", delay=1)
    task = asyncio.create_task(collect(replicate_emulator, O4, provider=Fast))
    await eventually(lambda: replicate_emulator.requests_to("/v1/predictions/", "GET"), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (cancel,) = cancels(replicate_emulator)
    (prediction,) = replicate_emulator.predictions.values()
    assert cancel.path == f"/v1/predictions/{prediction.id}/cancel"
    assert prediction.status == "canceled"


async def test_task_cancel_during_prefer_wait_still_cancels_the_prediction(replicate_emulator):
    # The create call is held by Prefer: wait; the prediction it made is cancelled once
    # the call answers (within wait_seconds), though the caller is gone.
    replicate_emulator.script = Script("one two three four", delay=1)
    task = asyncio.create_task(collect(replicate_emulator, O4, provider=Fast))
    await eventually(lambda: created(replicate_emulator), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(cancels(replicate_emulator)) == 1
    (prediction,) = replicate_emulator.predictions.values()
    assert prediction.status == "canceled"


async def test_early_stop_while_polling_cancels_the_prediction(replicate_emulator):
    # A model that streams, polled (no stream URL): its output grows; the caller stops early.
    replicate_emulator.script = Script(
        "one two three four five six", delay=0.1, extra={"omit": ["urls.stream"]}
    )
    stream = Fast.create_async_generator(LLAMA3, "Hi", api_key=KEY, base_url=replicate_emulator.url)
    first = await stream.__anext__()
    assert first.startswith("one")
    await stream.aclose()
    assert len(cancels(replicate_emulator)) == 1
    assert next(iter(replicate_emulator.predictions.values())).status == "canceled"


@pytest.mark.parametrize("model", [CLAUDE, GRANITE])
async def test_early_stop_and_task_cancel_while_streaming_cancel_the_prediction(
    replicate_emulator, model
):
    replicate_emulator.script = Script("one two three four five six", delay=0.1)
    stream = Replicate.create_async_generator(
        model, "Hi", api_key=KEY, base_url=replicate_emulator.url
    )
    assert await stream.__anext__() == "one"
    await stream.aclose()
    assert len(cancels(replicate_emulator)) == 1
    await cancel_mid_stream(
        Replicate.create_async_generator(model, "Hi", api_key=KEY, base_url=replicate_emulator.url),
        first_within=5,
    )
    assert len(cancels(replicate_emulator)) == 2
    assert {p.status for p in replicate_emulator.predictions.values()} == {"canceled"}
    await eventually(lambda: replicate_emulator.open_streams == 0)


# -- Cancel-After from the total deadline ------------------------------------------------------


async def test_cancel_after_is_sent_and_honoured(replicate_emulator):
    replicate_emulator.script = Script("one two three four five six", delay=0.5)
    chunks = await collect(replicate_emulator, LLAMA3, total_timeout=1)
    (create,) = created(replicate_emulator)
    assert create.headers["Cancel-After"] == "1s"
    # the server cancelled it at the deadline: the stream says so
    assert FinishReason("canceled") in chunks
    assert next(iter(replicate_emulator.predictions.values())).status == "canceled"


async def test_the_clients_total_deadline_becomes_cancel_after(replicate_emulator):
    async with AsyncClient(
        provider_options={"Replicate": {"api_key": KEY, "base_url": replicate_emulator.url}}
    ) as client:
        await client.chat.completions.create(
            model=f"replicate:{LLAMA3}", messages="Hi", total_timeout=120
        )
        await client.chat.completions.create(model=f"replicate:{LLAMA3}", messages="Hi")
    first, second = created(replicate_emulator)
    assert first.headers["Cancel-After"] in ("120s", "119s")
    # the default total deadline (30 minutes) applies when the call sets none
    assert second.headers["Cancel-After"] in ("1800s", "1799s")


# -- native tools, images, reasoning, usage ------------------------------------------------------


async def test_a_tool_call_through_a_model_with_native_tools(replicate_emulator):
    replicate_emulator.push(
        Script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]),
        Script("It is sunny in Paris."),
    )
    question = [{"role": "user", "content": "Weather in Paris?"}]
    async with AsyncClient(
        provider_options={"Replicate": {"api_key": KEY, "base_url": replicate_emulator.url}}
    ) as client:
        done = await client.chat.completions.create(
            model=f"replicate:{GRANITE}", messages=question, tools=TOOLS
        )
        message = done.choices[0].message
        assert done.choices[0].finish_reason == "tool_calls"
        assert done.emulated is None  # native: the model's own tools input
        (call,) = message.tool_calls
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        follow_up = [
            *question,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": call.function.arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"},
        ]
        answer = await client.chat.completions.create(
            model=f"replicate:{GRANITE}", messages=follow_up, tools=TOOLS
        )
    assert answer.choices[0].message.content == "It is sunny in Paris."
    first, second = (r.json["input"] for r in created(replicate_emulator))
    assert first == {"prompt": "Weather in Paris?", "tools": TOOLS}
    assert second["tools"] == TOOLS
    assert second["messages"][1]["tool_calls"][0]["id"] == call.id
    assert second["messages"][2] == {
        "role": "tool",
        "content": "sunny, 24 C",
        "tool_call_id": call.id,
    }


def test_capabilities_per_model():
    assert Replicate.capabilities_for(GRANITE).tools == "native"
    assert Replicate.capabilities_for(LLAMA3).tools == "none"  # so tools are emulated
    assert Replicate.capabilities_for(None).tools == "none"  # the default model
    assert Replicate.capabilities_for(CLAUDE).images
    assert Replicate.capabilities_for(GPT5).images and Replicate.capabilities_for(GPT5).reasoning
    assert not Replicate.capabilities_for(LLAMA3).stop  # the client enforces it
    assert Replicate.capabilities_for(LLAMA2).stop
    assert "top_k" in Replicate.capabilities_for(GPT5).unsupported
    assert Replicate.capabilities_for("someone/unknown-model") == Replicate.capabilities


async def test_a_schema_read_decides_the_capabilities_of_a_model_llmplex_did_not_know():
    own = openapi_schema({"prompt": {"type": "string"}, "tools": {"type": "array"}})
    with serve(ReplicateEmulator(Script("ok"), models={"me/tool-model": own})) as emulator:
        assert Replicate.capabilities_for("me/tool-model").tools == "none"
        await collect(emulator, "me/tool-model")
    assert Replicate.capabilities_for("me/tool-model").tools == "native"


@pytest.mark.parametrize(
    "model, name, urls, expected",
    [
        (CLAUDE, "image", [PIXEL], PIXEL),
        (GPT5, "image_input", [PHOTO, PIXEL], [PHOTO, PIXEL]),
        (O4, "image_input", [PHOTO], [PHOTO]),
    ],
)
async def test_an_image_goes_to_the_models_image_input(
    replicate_emulator, model, name, urls, expected
):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                *({"type": "image_url", "image_url": {"url": u}} for u in urls),
            ],
        }
    ]
    await collect(replicate_emulator, model, messages, provider=Fast)
    (create,) = created(replicate_emulator)
    assert create.json["input"] == {"prompt": "What is this?", name: expected}


async def test_images_the_model_cannot_take_are_refused(replicate_emulator):
    two = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": PHOTO}},
                {"type": "image_url", "image_url": {"url": PIXEL}},
            ],
        }
    ]
    with pytest.raises(InvalidRequestError, match="takes one image"):
        await collect(replicate_emulator, CLAUDE, two)
    with pytest.raises(InvalidRequestError, match="takes text only") as info:
        await collect(replicate_emulator, LLAMA3, two)
    assert info.value.param == "messages[0].content[0]"
    local = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}],
        }
    ]
    with pytest.raises(InvalidRequestError, match="http"):
        await collect(replicate_emulator, CLAUDE, local)
    assert created(replicate_emulator) == []


async def test_reasoning_and_usage(replicate_emulator):
    replicate_emulator.script = Script("The answer is 42.", reasoning="Six times seven.")
    chunks = await collect(replicate_emulator, GRANITE, extra_data={"thinking": True})
    reasoning = "".join(c.text for c in chunks if isinstance(c, ReasoningDelta))
    assert reasoning == "Six times seven."
    assert text_of(chunks) == "The answer is 42."
    (usage,) = [c for c in chunks if isinstance(c, Usage)]
    assert usage.completion_tokens == 9 and usage.prompt_tokens == 1  # as its metrics say
    assert created(replicate_emulator)[0].json["input"]["thinking"] is True


async def test_tool_calls_arrive_as_tool_call_deltas(replicate_emulator):
    replicate_emulator.script = Script(
        tool_calls=[
            {"name": "get_weather", "arguments": {"city": "Paris"}},
            {"name": "get_weather", "arguments": '{"city": "Rome"}'},
        ]
    )
    chunks = await collect(replicate_emulator, GRANITE, tools=TOOLS)
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert [(c.index, c.name, json.loads(c.arguments)) for c in calls] == [
        (0, "get_weather", {"city": "Paris"}),
        (1, "get_weather", {"city": "Rome"}),
    ]
    assert FinishReason("tool_calls") in chunks and FinishReason("stop") not in chunks
    assert text_of(chunks) == ""


# -- the schema: read once, kept, passed in -----------------------------------------------------


async def test_the_schema_is_read_once_and_kept_on_disk(replicate_emulator, tmp_path):
    class Kept(Replicate):
        schemas = SchemaCache(directory=tmp_path)

    await collect(replicate_emulator, CLAUDE, provider=Kept)
    await collect(replicate_emulator, CLAUDE, provider=Kept)
    assert len(replicate_emulator.requests_to(f"/v1/models/{CLAUDE}", "GET")) == 1
    (kept,) = tmp_path.glob("*.json")
    assert replicate_emulator.url not in kept.read_text()  # the origin only as a digest
    Kept.schemas.clear()  # another process: it reads the disk
    await collect(replicate_emulator, CLAUDE, provider=Kept)
    assert len(replicate_emulator.requests_to(f"/v1/models/{CLAUDE}", "GET")) == 1


async def test_a_slow_schema_is_a_timeout_unless_one_was_kept(tmp_path):
    class Slow(Replicate):
        schemas = SchemaCache(timeout=0.2, ttl=0, directory=tmp_path)

    with serve(ReplicateEmulator(Script("ok"))) as emulator:
        emulator.latency = 1
        with pytest.raises(ProviderTimeoutError, match="schema of anthropic/claude-4-sonnet"):
            await collect(emulator, CLAUDE, provider=Slow)
        assert created(emulator) == []
        emulator.latency = 0
        await collect(emulator, CLAUDE, provider=Slow)  # read and kept (ttl 0: stale now)
        emulator.latency = 0.5  # slower than the schema's deadline, not the answer's
        chunks = await collect(emulator, CLAUDE, provider=Slow)
    assert text_of(chunks) == "ok"  # the kept schema stood in


async def test_schema_given_is_not_read(replicate_emulator):
    given = openapi_schema({"prompt": {"type": "string"}, "max_new_tokens": {"type": "integer"}})
    await collect(
        replicate_emulator, "mistralai/mixtral-8x7b-instruct-v0.1", schema=given, max_tokens=5
    )
    assert not replicate_emulator.requests_to("/v1/models/mistralai", "GET")
    assert created(replicate_emulator)[0].json["input"] == {"prompt": "Hi", "max_new_tokens": 5}
    with pytest.raises(InvalidRequestError) as info:
        await collect(replicate_emulator, LLAMA3, schema={"no": "schema"})
    assert info.value.param == "schema"


async def test_a_model_that_does_not_exist_is_a_clear_error(replicate_emulator):
    with pytest.raises(ResponseStatusError) as info:
        await collect(replicate_emulator, "nobody/no-such-model")
    assert info.value.status == 404
    assert "Model not found: nobody/no-such-model" in str(info.value)
    assert created(replicate_emulator) == []  # the schema said so: nothing was created


async def test_a_pinned_version(replicate_emulator):
    version = version_id(replicate_emulator.schemas[LLAMA2])
    chunks = await collect(replicate_emulator, f"{LLAMA2}:{version}", max_tokens=5)
    assert text_of(chunks) == replicate_emulator.script.reply
    (schema,) = replicate_emulator.requests_to("/versions/", "GET")
    assert schema.path == f"/v1/models/{LLAMA2}/versions/{version}"
    (create,) = created(replicate_emulator)
    assert create.path == "/v1/predictions"
    assert create.json == {"version": version, "input": {"prompt": "Hi", "max_new_tokens": 5}}


# -- the emulator checks inputs as Replicate does ------------------------------------------------


async def test_the_emulator_validates_inputs_against_the_schema(replicate_emulator):
    url, auth = replicate_emulator.url, {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(headers=auth) as http:

        async def create(model, data):
            async with http.post(
                f"{url}/v1/models/{model}/predictions", json={"input": data}
            ) as response:
                return response.status, await response.json()

        status, body = await create(CLAUDE, {"prompt": "Hi", "max_tokens": 100})
        assert status == 422 and body["title"] == "Input validation failed"
        assert body["invalid_fields"] == [
            {
                "type": "number_gte",
                "field": "input.max_tokens",
                "description": "Must be greater than or equal to 1024",
            }
        ]
        status, body = await create(CLAUDE, {"max_tokens": 2048})
        assert status == 422 and "prompt is required" in body["detail"]
        status, body = await create(CLAUDE, {"prompt": "Hi", "image": "/etc/passwd"})
        assert body["invalid_fields"][0]["field"] == "input.image"
        status, body = await create(GPT5, {"prompt": "Hi", "reasoning_effort": "max"})
        assert status == 422 and body["invalid_fields"][0]["type"] == "enum"
        status, body = await create(GRANITE, {"prompt": "Hi", "stop": "x"})
        assert body["invalid_fields"][0]["description"].startswith("Invalid type. Expected: array")
        # inputs a model does not declare are ignored (so llmplex must not send them)
        status, body = await create(LLAMA3, {"prompt": "Hi", "max_new_tokens": 5})
        assert status == 201 and "stream" in body["urls"]
        status, body = await create(O4, {"prompt": "Hi"})
        assert status == 201 and "stream" not in body["urls"]  # it does not stream
        async with http.get(f"{url}/v1/models/{O4}") as response:
            model = await response.json()
        schema = ModelSchema.parse(O4, model)
        assert model["owner"] == "openai" and model["name"] == "o4-mini"
        assert not schema.streams and "max_completion_tokens" in schema.inputs
        assert model["latest_version"]["openapi_schema"]["components"]["schemas"]["Output"] == {
            "type": "string",
            "title": "Output",
        }
        async with http.get(f"{url}/v1/models") as response:
            listing = await response.json()
        assert {f"{m['owner']}/{m['name']}" for m in listing["results"]} >= {
            LLAMA3,
            CLAUDE,
            GPT5,
            O4,
            GRANITE,
            LLAMA2,
        }
        async with http.post(
            f"{url}/v1/models/{O4}/predictions",
            json={"input": {"prompt": "Hi"}},
            headers={"Cancel-After": "soon"},
        ) as response:
            assert response.status == 400


def test_the_official_client_waits_for_a_model_that_does_not_stream(replicate_emulator):
    import httpx
    import replicate

    replicate_emulator.script = Script("Plain string output.")
    transport = httpx.HTTPTransport()
    client = replicate.Client(
        api_token=KEY, base_url=replicate_emulator.url, transport=transport, trust_env=False
    )
    try:
        assert client.run(O4, input={"prompt": "Hi"}) == "Plain string output."
        model = client.models.get(GRANITE)
        assert (
            "tools"
            in model.latest_version.openapi_schema["components"]["schemas"]["Input"]["properties"]
        )
    finally:
        transport.close()
