"""Tool calling and JSON output emulated through the prompt, end to end: every text-only
provider against its emulator (whose scripted model answers are what a model writes),
through ``AsyncClient``, ``Client`` and ``llmplex serve`` with the official ``openai`` SDK."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

from llmplex import (
    AsyncClient,
    Client,
    InvalidRequestError,
    OutputValidationError,
    ResponseError,
    ToolCallError,
)
from llmplex.conversations import MemoryStore
from llmplex.routing import Router
from llmplex.server import ServerThread, create_app
from llmplex.server.emulated import EmulatedServices, emulated_client
from llmplex.testing import Script

TEXT_ONLY = {
    "allenai": "AllenAI",
    "openassistant": "OpenAssistant",
    "h2o": "H2o",
    "replicate": "Replicate",
}
#: an Ai2 model without native tool calls (olmo-3.1-32b-instruct has them: no emulation)
AI2 = "allenai:olmo-3.1-32b-think"
#: the model each text-only service is asked for (its default, Ai2's text-only one)
MODELS = {
    service: AI2 if service == "allenai" else f"{name.lower()}:"
    for service, name in TEXT_ONLY.items()
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The local time in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
]
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'


@pytest.fixture(scope="module")
def services():
    with EmulatedServices([*TEXT_ONLY, "openai"]) as running:
        yield running


@pytest.fixture
def client(services):
    for emulator in services.emulators.values():
        emulator.reset()
    return emulated_client(services)


def prompts(services, service: str) -> list[str]:
    """The bodies of the requests that carried a prompt to ``service``'s emulator."""
    return [
        r.text
        for r in services.emulators[service].requests
        if r.method == "POST" and ("get_weather" in r.text or "Paris" in r.text)
    ]


def request_id(bad: str) -> str:
    return "schema" if "kelvin" in bad else "unknown tool" if "forecast" in bad else "malformed"


def calls_of(completion) -> list[tuple[str, dict]]:
    return [
        (c.function.name, json.loads(c.function.arguments))
        for c in completion.choices[0].message.tool_calls or ()
    ]


# -- every text-only provider, every accepted format ------------------------------------------


FORMATS = {
    "tagged": f"<tool_call>{CALL}</tool_call>",
    "fenced": f"```json\n{CALL}\n```",
    "bare": CALL,
    "after prose": f"Let me look that up.\n{CALL}",
    "openai shape": '{"type": "function", "function": {"name": "get_weather", '
    '"arguments": "{\\"city\\": \\"Paris\\"}"}}',
}


@pytest.mark.parametrize("service", TEXT_ONLY)
@pytest.mark.parametrize("form", FORMATS)
async def test_a_text_only_provider_answers_a_tool_call(services, client, service, form):
    services.emulators[service].push(Script(FORMATS[form]))
    async with client:
        done = await client.chat.completions.create(
            model=MODELS[service], messages=QUESTION, tools=TOOLS
        )
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert calls_of(done) == [("get_weather", {"city": "Paris"})]
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and len(call.id) > 10 and call.type == "function"
    assert done.emulated == ["tools"] and done.provider == TEXT_ONLY[service]
    if form == "after prose":
        assert choice.message.content == "Let me look that up.\n"
    else:
        assert not choice.message.content
    # The model was told about the tools and the one format to use.
    sent = prompts(services, service)[-1]
    assert "get_weather" in sent and "The current weather in a city" in sent
    assert "tool_call" in sent


@pytest.mark.parametrize("service", TEXT_ONLY)
async def test_several_calls_streamed_with_prose_first(services, client, service):
    answer = (
        "I will check both.\n"
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": '
        '"celsius"}}</tool_call>\n<tool_call>{"name": "get_time", "arguments": '
        '{"city": "Paris"}}</tool_call>'
    )
    services.emulators[service].push(Script(answer))
    async with client:
        stream = await client.chat.completions.create(
            model=MODELS[service], messages=QUESTION, tools=TOOLS, stream=True
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "I will check both.\n"
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or ())]
    assert [(d.index, d.function.name, json.loads(d.function.arguments)) for d in deltas] == [
        (0, "get_weather", {"city": "Paris", "unit": "celsius"}),
        (1, "get_time", {"city": "Paris"}),
    ]
    assert len({d.id for d in deltas}) == 2
    # The prose came before any call: it was not held back for them.
    first_call = next(i for i, c in enumerate(chunks) if c.choices[0].delta.tool_calls)
    assert any(c.choices[0].delta.content for c in chunks[:first_call])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert all(c.emulated == ["tools"] for c in chunks)


@pytest.mark.parametrize("service", TEXT_ONLY)
async def test_prose_only_is_an_answer(services, client, service):
    services.emulators[service].push(Script("It is sunny in Paris, {as far as I know}."))
    async with client:
        done = await client.chat.completions.create(
            model=MODELS[service], messages=QUESTION, tools=TOOLS
        )
    assert done.choices[0].message.content == "It is sunny in Paris, {as far as I know}."
    assert done.choices[0].finish_reason == "stop"
    assert done.choices[0].message.tool_calls is None


async def test_json_that_is_no_call_is_text(services, client):
    services.emulators["allenai"].push(Script('{"city": "Paris", "forecast": "sun"}'))
    async with client:
        done = await client.chat.completions.create(model=AI2, messages=QUESTION, tools=TOOLS)
    assert done.choices[0].message.content == '{"city": "Paris", "forecast": "sun"}'
    assert done.choices[0].finish_reason == "stop"


# -- unusable answers: one corrective retry, then a typed error --------------------------------


@pytest.mark.parametrize("service", TEXT_ONLY)
@pytest.mark.parametrize(
    "bad",
    [
        (
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "kelvin"}}'
            "</tool_call>"
        ),
        '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>',
        '<tool_call>{"name": "get_forecast", "arguments": {"city": "Paris"}}</tool_call>',
    ],
    ids=["schema", "malformed", "unknown tool"],
)
async def test_an_invalid_call_is_retried_once(services, client, service, bad):
    emulator = services.emulators[service]
    emulator.push(Script(bad), Script(f"<tool_call>{CALL}</tool_call>"))
    async with client:
        done = await client.chat.completions.create(
            model=MODELS[service], messages=QUESTION, tools=TOOLS
        )
    assert calls_of(done) == [("get_weather", {"city": "Paris"})]
    first, retry = prompts(services, service)[-2:]
    # The retry carries the bad answer and a correction naming what was wrong with it.
    assert "could not be used" not in first and "could not be used" in retry
    problem = {"schema": "kelvin", "malformed": "get_weather", "unknown tool": "get_forecast"}
    assert problem[request_id(bad)] in retry.split("could not be used", 1)[1]


@pytest.mark.parametrize("stream", [False, True])
async def test_twice_invalid_is_a_tool_call_error_with_the_raw_answer(services, client, stream):
    bad = '<tool_call>{"name": "get_weather", "arguments": {"unit": "celsius"}}</tool_call>'
    services.emulators["allenai"].push(Script(bad), Script(bad))
    async with client:
        with pytest.raises(ToolCallError) as caught:
            result = await client.chat.completions.create(
                model=AI2, messages=QUESTION, tools=TOOLS, stream=stream
            )
            if stream:
                async for _ in result:
                    pass
    error = caught.value
    assert error.raw == bad and error.provider == "AllenAI"
    assert any("city" in problem for problem in error.problems)
    assert "retr" in str(error)


async def test_retries_follow_the_router_setting(services):
    bad = '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>'
    emulator = services.emulators["h2o"]
    emulator.reset()
    emulator.push(Script(bad), Script(f"<tool_call>{CALL}</tool_call>"))
    client = emulated_client(services, router=Router(include_not_working=True, emulation_retries=0))
    async with client:
        with pytest.raises(ToolCallError):
            await client.chat.completions.create(model="h2o:", messages=QUESTION, tools=TOOLS)
    emulator.reset()
    with pytest.raises(InvalidRequestError, match="emulation_retries"):
        Router(emulation_retries=9)


async def test_required_answer_without_a_call_is_retried(services, client):
    services.emulators["replicate"].push(
        Script("I think it is sunny."), Script(f"<tool_call>{CALL}</tool_call>")
    )
    async with client:
        stream = await client.chat.completions.create(
            model="replicate:", messages=QUESTION, tools=TOOLS, tool_choice="required", stream=True
        )
        chunks = [chunk async for chunk in stream]
    # Held until judged: the prose of the first answer never reached the caller.
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ""
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_a_named_function_must_be_the_one_called(services, client):
    services.emulators["allenai"].push(
        Script(f"<tool_call>{CALL}</tool_call>"),
        Script('<tool_call>{"name": "get_time", "arguments": {"city": "Paris"}}</tool_call>'),
    )
    async with client:
        done = await client.chat.completions.create(
            model=AI2,
            messages=QUESTION,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
    assert calls_of(done) == [("get_time", {"city": "Paris"})]


async def test_parallel_tool_calls_false_allows_one(services, client):
    two = f"<tool_call>{CALL}</tool_call><tool_call>{CALL}</tool_call>"
    services.emulators["allenai"].push(Script(two), Script(two))
    async with client:
        with pytest.raises(ToolCallError, match="parallel_tool_calls"):
            await client.chat.completions.create(
                model=AI2, messages=QUESTION, tools=TOOLS, parallel_tool_calls=False
            )


async def test_tool_choice_none_offers_no_tools(services, client):
    services.emulators["allenai"].push(Script("No tools needed: it is sunny."))
    async with client:
        done = await client.chat.completions.create(
            model=AI2, messages=QUESTION, tools=TOOLS, tool_choice="none"
        )
    assert done.choices[0].message.content == "No tools needed: it is sunny."
    assert "get_weather" not in services.emulators["allenai"].requests[-1].text


# -- the tool round trip and conversations ----------------------------------------------------


async def test_tool_results_are_rendered_into_the_history(services, client):
    services.emulators["openassistant"].push(Script("It is 21 degrees in Paris."))
    history = [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "21 degrees, sunny"},
    ]
    async with client:
        done = await client.chat.completions.create(
            model="openassistant:", messages=history, tools=TOOLS
        )
    assert done.choices[0].message.content == "It is 21 degrees in Paris."
    sent = "\n".join(r.text for r in services.emulators["openassistant"].requests)
    assert "21 degrees, sunny" in sent and "call_abc" in sent


async def test_a_stored_conversation_carries_emulated_calls(services, client):
    services.emulators["allenai"].push(
        Script(f"<tool_call>{CALL}</tool_call>"), Script("Sunny, 21 degrees.")
    )
    async with client:
        conversation = await client.conversations.create(model=AI2)
        done = await client.chat.completions.create(
            messages=QUESTION, tools=TOOLS, conversation=conversation
        )
        call = done.choices[0].message.tool_calls[0]
        final = await client.chat.completions.create(
            messages=[{"role": "tool", "tool_call_id": call.id, "content": "21C and sunny"}],
            tools=TOOLS,
            conversation=conversation,
        )
        stored = await client.conversations.retrieve(conversation.id)
    assert final.choices[0].message.content == "Sunny, 21 degrees."
    assert stored.messages[1]["tool_calls"][0]["id"] == call.id
    assert stored.messages[2]["role"] == "tool"
    assert "21C and sunny" in services.emulators["allenai"].requests[-1].text or any(
        "21C and sunny" in r.text for r in services.emulators["allenai"].requests
    )


# -- routing: native first, emulation can be turned off ---------------------------------------


async def test_a_native_route_is_preferred(services):
    services.emulators["openai"].push(
        Script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    )
    client = emulated_client(
        services,
        router=Router(include_not_working=True, aliases={"any": [AI2, "openai:gpt-4o-mini"]}),
    )
    async with client:
        done = await client.chat.completions.create(model="any", messages=QUESTION, tools=TOOLS)
        assert done.provider == "OpenAI" and done.emulated is None
        assert calls_of(done) == [("get_weather", {"city": "Paris"})]
        plain = await client.chat.completions.create(model="any", messages=QUESTION)
        assert plain.provider == "AllenAI"


async def test_emulation_can_be_turned_off(services, client):
    async with client:
        with pytest.raises(InvalidRequestError, match="emulat") as caught:
            await client.chat.completions.create(
                model=AI2, messages=QUESTION, tools=TOOLS, emulate=False
            )
        assert caught.value.param == "tools"
        with pytest.raises(InvalidRequestError, match="emulate"):
            await client.chat.completions.create(
                model=AI2, messages=QUESTION, tools=TOOLS, emulate="no"
            )
    off = emulated_client(services, router=Router(include_not_working=True, emulate=False))
    async with off:
        with pytest.raises(InvalidRequestError, match="tools"):
            await off.chat.completions.create(model=AI2, messages=QUESTION, tools=TOOLS)
    assert not services.emulators["allenai"].requests  # refused before anything was sent


def test_the_legacy_functions_field_is_not_emulated(services, client):
    with pytest.raises(InvalidRequestError, match="functions"):
        Client(
            router=Router(include_not_working=True),
            provider_options=services.provider_options(),
            store=MemoryStore(),
        ).chat.completions.create(
            model=AI2,
            messages=QUESTION,
            functions=[{"name": "get_weather", "parameters": {"type": "object"}}],
        )


def test_the_sync_client_emulates_too(services):
    services.emulators["h2o"].push(Script(f"```json\n{CALL}\n```"))
    with Client(
        router=Router(include_not_working=True),
        store=MemoryStore(),
        provider_options=services.provider_options(),
    ) as sync:
        done = sync.chat.completions.create(model="h2o:", messages=QUESTION, tools=TOOLS)
    assert calls_of(done) == [("get_weather", {"city": "Paris"})]


# -- response_format --------------------------------------------------------------------------


class Weather(BaseModel):
    city: str
    celsius: int
    sunny: bool


SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "weather",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
            "required": ["city", "celsius"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize("service", TEXT_ONLY)
async def test_json_schema_output_is_extracted_and_validated(services, client, service):
    services.emulators[service].push(
        Script('Here you are:\n```json\n{"city": "Paris", "celsius": 21}\n```')
    )
    async with client:
        done = await client.chat.completions.create(
            model=MODELS[service], messages=QUESTION, response_format=SCHEMA_FORMAT
        )
    assert json.loads(done.choices[0].message.content) == {"city": "Paris", "celsius": 21}
    assert done.emulated == ["response_format"]
    assert '"celsius"' in prompts(services, service)[-1].replace('\\"', '"')


@pytest.mark.parametrize("stream", [False, True])
async def test_invalid_json_is_retried_then_an_output_validation_error(services, client, stream):
    emulator = services.emulators["replicate"]
    emulator.push(Script('{"city": "Paris"}'), Script('{"city": "Paris", "celsius": 21}'))
    async with client:
        done = await client.chat.completions.create(
            model="replicate:", messages=QUESTION, response_format=SCHEMA_FORMAT
        )
        assert json.loads(done.choices[0].message.content)["celsius"] == 21
        emulator.push(Script("sunny and warm"), Script('{"city": 3, "celsius": 21}'))
        with pytest.raises(OutputValidationError) as caught:
            result = await client.chat.completions.create(
                model="replicate:", messages=QUESTION, response_format=SCHEMA_FORMAT, stream=stream
            )
            if stream:
                async for _ in result:
                    pass
    assert caught.value.raw == '{"city": 3, "celsius": 21}'
    assert any("city" in p for p in caught.value.problems)


async def test_json_object_mode(services, client):
    services.emulators["h2o"].push(Script('Sure! {"answer": 42} Hope that helps.'))
    async with client:
        stream = await client.chat.completions.create(
            model="h2o:", messages=QUESTION, response_format={"type": "json_object"}, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert json.loads(text) == {"answer": 42}


# -- through llmplex serve with the official SDK -----------------------------------------------


@pytest.fixture
def sdk(services, client):
    with (
        ServerThread(create_app(client)) as running,
        openai.OpenAI(base_url=running.url + "/v1", api_key="unused", timeout=20) as oai,
    ):
        yield oai


def test_sdk_tool_round_trip_to_a_text_only_provider(services, sdk):
    emulator = services.emulators["allenai"]
    emulator.push(
        Script(f"Checking.\n<tool_call>{CALL}</tool_call>"),
        Script("It is 21 degrees and sunny in Paris."),
    )
    first = sdk.chat.completions.create(model=AI2, messages=QUESTION, tools=TOOLS)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls[0].function.name == "get_weather"
    assert first.model_extra["emulated"] == ["tools"]
    history = [
        *QUESTION,
        message.model_dump(exclude_none=True),
        {
            "role": "tool",
            "tool_call_id": message.tool_calls[0].id,
            "content": '{"celsius": 21, "sunny": true}',
        },
    ]
    with sdk.chat.completions.stream(model=AI2, messages=history, tools=TOOLS) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "It is 21 degrees and sunny in Paris."
    assert (
        '\\"celsius\\": 21' in emulator.requests[-1].text
        or '"celsius": 21' in emulator.requests[-1].text
    )


def test_sdk_parse_against_a_text_only_provider(services, sdk):
    emulator = services.emulators["openassistant"]
    emulator.push(Script('{"city": "Paris", "celsius": 21, "sunny": true}'))
    parsed = sdk.chat.completions.parse(
        model="openassistant:", messages=QUESTION, response_format=Weather
    )
    assert parsed.choices[0].message.parsed == Weather(city="Paris", celsius=21, sunny=True)
    emulator.push(
        Script('{"city": "Paris", "celsius": "warm"}'), Script('{"city": "Paris", "sunny": true}')
    )
    before = len(emulator.requests)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.parse(
            model="openassistant:", messages=QUESTION, response_format=Weather
        )
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "invalid_model_output"
    assert caught.value.response.headers["x-should-retry"] == "false"
    prompted = [r for r in emulator.requests[before:] if r.method == "POST" and "Paris" in r.text]
    assert len(prompted) == 2  # the answer and its one corrective retry; the SDK did not retry


def test_sdk_can_turn_emulation_off(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model=AI2, messages=QUESTION, tools=TOOLS, extra_body={"emulate": False}
        )
    assert caught.value.body["param"] == "tools"


def test_providers_endpoint_says_what_is_emulated(sdk):
    listed = sdk.get("/providers", cast_to=object)
    caps = {p["name"]: p["capabilities"] for p in listed["data"]}
    assert caps["Replicate"]["tools"] == "emulated"
    assert caps["Replicate"]["emulated"] == ["json_object", "json_schema", "tools"]
    # AllenAI: native tools on some models (emulated on the others), JSON output emulated
    assert caps["AllenAI"]["tools"] == "native"
    assert caps["AllenAI"]["emulated"] == ["json_object", "json_schema"]
    assert caps["OpenAI"]["tools"] == "native" and caps["OpenAI"]["emulated"] == []


async def test_config_can_turn_emulation_off(services, tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[router]\nemulate = false\nemulation_retries = 2\n")
    client = AsyncClient(
        config=path, provider_options=services.provider_options(), store=MemoryStore()
    )
    assert client.router.emulate is False and client.router.emulation_retries == 2
    async with client:
        with pytest.raises(InvalidRequestError, match="emulation through the prompt is off"):
            await client.chat.completions.create(model="h2o:", messages=QUESTION, tools=TOOLS)
        # a call may still ask for it
        services.emulators["h2o"].push(Script(CALL))
        done = await client.chat.completions.create(
            model="h2o:", messages=QUESTION, tools=TOOLS, emulate=True
        )
    assert done.emulated == ["tools"]
    path.write_text('[router]\nemulate = "no"\n')
    with pytest.raises(InvalidRequestError, match="emulate"):
        AsyncClient(config=path)


async def test_what_emulation_holds_is_bounded(services, client, monkeypatch):
    # JSON output is held until validated: an endless answer fails at the limit instead
    # of growing memory (the limit lowered here so the test stays small).
    monkeypatch.setattr("llmplex.emulation.stream.MAX_ANSWER_CHARS", 10_000)
    services.emulators["h2o"].push(Script('{"a": "' + "x" * 20_000 + '"}'))
    async with client:
        with pytest.raises(ResponseError, match="answer too long"):
            await client.chat.completions.create(
                model="h2o:", messages=QUESTION, response_format={"type": "json_object"}
            )


def test_capabilities_are_asked_per_model():
    # A provider whose models differ declares it through capabilities_for(model): routing
    # and emulation follow the route's model, not the class.
    from llmplex.capabilities import Capabilities
    from llmplex.providers import get_provider
    from llmplex.request import ChatRequest
    from llmplex.routing import Route

    h2o = get_provider("H2o")

    class PerModel(h2o):  # one model with native tools, the others text-only
        @classmethod
        def capabilities_for(cls, model):
            return Capabilities(tools="native") if model == "native-tools" else cls.capabilities

    request = ChatRequest.build(None, QUESTION, tools=TOOLS)
    assert PerModel.emulated(request, "native-tools") == frozenset()
    assert PerModel.emulated(request, "text-only") == {"tools"}
    # natively, the tools field must also be one the provider takes: H2o's does not
    assert ("tools", "tools") in PerModel.missing(request, True, "native-tools")
    assert PerModel.missing(request, True, "text-only") == []
    routes = [Route(PerModel, "native-tools"), Route(PerModel, "text-only")]
    assert Router().capable(routes, request) == [routes[1]]
