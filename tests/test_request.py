"""The typed request: every field checked once at the edge, unknown keywords refused with a
did-you-mean, fields a route cannot serve refused naming the field and the providers that
would take it, and routing by capability. Calls go through AsyncClient to the emulators;
a refused request must send nothing anywhere."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.emulators import Script, get_emulator, serve
from llmplex.emulators.ai2 import EMULATED_TOKEN
from llmplex.errors import InvalidRequestError
from llmplex.providers import get_provider
from llmplex.request import ChatRequest
from llmplex.routing import Router

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def emulators():
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(serve(get_emulator(name)(Script("ok"))))
            for name in ("openai", "allenai", "replicate")
        }


def client_for(emulators, **router) -> AsyncClient:
    return AsyncClient(
        store=MemoryStore(),
        router=Router(**router),
        provider_options={
            "OpenAI": {"base_url": emulators["openai"].url + "/v1", "api_key": "sk-test"},
            "AllenAI": {"base_url": emulators["allenai"].url, "api_key": EMULATED_TOKEN},
            "Replicate": {"base_url": emulators["replicate"].url, "api_key": "r8_test"},
        },
    )


def nothing_sent(emulators) -> bool:
    return not any(e.requests for e in emulators.values())


@pytest.mark.parametrize(
    "kwargs, param, needle",
    [
        ({"temprature": 0.1}, "temprature", "did you mean 'temperature'"),
        ({"max_token": 5}, "max_token", "did you mean 'max_tokens'"),
        ({"temperature": 3}, "temperature", "from 0 to 2"),
        ({"temperature": "0.5"}, "temperature", "number"),
        ({"n": 0}, "n", "from 1 to 128"),
        ({"top_logprobs": 3}, "top_logprobs", "logprobs: true"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "tools[0].function.name",
            "1 to 64",
        ),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "not in tools",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format.type", "json_schema"),
        ({"logit_bias": {"abc": 1}}, "logit_bias.abc", "token id"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "stream is true"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id", "required"),
        (
            {"messages": [{"role": "assistant", "content": None}]},
            "messages[0].content",
            "tool_calls",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
            "http(s) URL",
        ),
    ],
)
async def test_bad_arguments_are_refused_before_anything_is_sent(emulators, kwargs, param, needle):
    kwargs = {"messages": "Hi", **kwargs}
    async with client_for(emulators) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.chat.completions.create(model="openai:gpt-4o-mini", **kwargs)
    assert info.value.param == param
    assert needle in str(info.value)
    assert nothing_sent(emulators)


@pytest.mark.parametrize(
    "kwargs, param, needle",
    [
        # (tools and JSON output are emulated for a text-only service unless turned off)
        ({"tools": TOOLS, "emulate": False}, "tools", "'tools' is not supported by AllenAI"),
        (
            {"response_format": {"type": "json_object"}, "emulate": False},
            "response_format",
            "json_object",
        ),
        ({"n": 2}, "n", "'n' is not supported"),
        ({"logprobs": True}, "logprobs", "'logprobs' is not supported"),
        ({"logit_bias": {"1": 1}}, "logit_bias", "not supported by AllenAI"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "What is it?"}, IMAGE]}
                ]
            },
            "messages[0].content[1]",
            "needs images support",
        ),
        ({"top_k": 5}, "top_k", "providers that take it: "),
    ],
)
async def test_a_field_the_route_cannot_serve_names_who_could(emulators, kwargs, param, needle):
    kwargs = {"messages": "Hi", **kwargs}
    async with client_for(emulators) as client:
        with pytest.raises(InvalidRequestError) as info:
            # a text-only Ai2 model
            await client.chat.completions.create(model="allenai:olmo-3.1-32b-think", **kwargs)
    message = str(info.value)
    assert info.value.param == param
    assert needle in message and "AllenAI" in message
    if param != "top_k":
        assert "OpenAI" in message.split("providers that take it:")[1]
    else:
        assert "Replicate" in message.split("providers that take it:")[1]
    assert nothing_sent(emulators)


async def test_routing_skips_routes_without_the_capability(emulators):
    # An alias over a text-only provider first, then OpenAI: a request with tools or an
    # image goes to OpenAI only; a plain one still goes to the first.
    emulators["openai"].script = Script(
        tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]
    )
    aliases = {"any": ["allenai:olmo-3.1-32b-think", "openai:gpt-4o-mini"]}
    async with client_for(emulators, aliases=aliases) as client:
        answer = await client.chat.completions.create(model="any", messages="Hi", tools=TOOLS)
        assert answer.provider == "OpenAI"
        assert answer.choices[0].message.tool_calls[0].function.name == "get_weather"
        assert not emulators["allenai"].requests
        image = [{"role": "user", "content": [IMAGE]}]
        assert (
            await client.chat.completions.create(model="any", messages=image)
        ).provider == "OpenAI"
        assert not emulators["allenai"].requests
        plain = await client.chat.completions.create(model="any", messages="Hi")
        assert plain.provider == "AllenAI"


async def test_an_image_reaches_a_provider_that_takes_images(emulators):
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, IMAGE]}]
    async with client_for(emulators) as client:
        await client.chat.completions.create(model="openai:gpt-4o-mini", messages=messages)
    assert emulators["openai"].requests_to("/chat/completions")[0].json["messages"] == messages


async def test_a_text_only_provider_called_directly_refuses_images(emulators):
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, IMAGE]}]
    replicate = get_provider("Replicate")
    with pytest.raises(InvalidRequestError) as info:
        await replicate.create_async(
            "meta/meta-llama-3-8b-instruct",
            messages,
            api_key="r8_test",
            base_url=emulators["replicate"].url,
        )
    assert info.value.param == "messages[0].content[1]"
    assert "text only" in str(info.value)
    # text parts alone are joined for it
    text = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}],
        }
    ]
    await replicate.create_async(
        "meta/meta-llama-3-8b-instruct",
        text,
        api_key="r8_test",
        base_url=emulators["replicate"].url,
    )
    created = emulators["replicate"].requests_to("/predictions", "POST")[-1].json
    assert created["input"]["prompt"] == "Hello there"


def test_request_needs_and_repr_hide_credentials():
    request = ChatRequest.build(
        "m",
        [{"role": "user", "content": [IMAGE]}],
        tools=TOOLS,
        n=2,
        response_format={"type": "json_schema", "json_schema": {"name": "x"}},
        api_key="sk-secret-value",
    )
    assert request.needs == {
        "images": "messages[0].content[0]",
        "tools": "tools",
        "n": "n",
        "json_schema": "response_format",
    }
    assert "sk-secret-value" not in repr(request)
    # tool_choice "none" alone asks for no tools
    assert "tools" not in ChatRequest.build("m", "Hi", tool_choice="none").needs
