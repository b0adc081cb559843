"""OpenAI's Responses API on ``llmplex serve``: the official ``openai`` SDK's
``responses.create`` / ``responses.stream`` / ``responses.parse`` (and raw HTTP where the
bytes matter), every answer coming from the real emulators behind the server."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from fuzzing import fuzz_route
from pydantic import BaseModel

from llmplex.server import ServerThread, create_app
from llmplex.server.emulated import EmulatedServices, emulated_client
from llmplex.testing import Fault, Script, wait_until

ANSWER = "The capital of France is Paris."
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture(scope="module")
def services():
    with EmulatedServices(
        ["openai", "allenai", "openassistant"], script=lambda name: Script(ANSWER)
    ) as running:
        yield running


class Served:
    def __init__(self, url, services, client):
        self.url = url
        self.emu = services.emulators
        self.client = client
        self.sdk = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=15)

    def sent(self, service="openai"):
        """The JSON body of the last chat request the emulator got."""
        posts = [r for r in self.emu[service].requests if r.method == "POST"]
        return json.loads(posts[-1].text)


@pytest.fixture
def server(services):
    for emulator in services.emulators.values():
        emulator.reset()
    client = emulated_client(services)
    with ServerThread(create_app(client)) as running:
        served = Served(running.url, services, client)
        try:
            yield served
        finally:
            served.sdk.close()


def events_of(server, body):
    """The raw SSE events of a streamed request: ``[(event name, data)]``."""
    with httpx.stream(
        "POST", server.url + "/v1/responses", json={**body, "stream": True}, timeout=15
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    out = []
    for block in raw.split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


# -- text -----------------------------------------------------------------------------------


def test_text_answer_in_the_responses_shape(server):
    response = server.sdk.responses.create(
        model="openai:gpt-4o-mini",
        input="Capital?",
        instructions="Answer briefly.",
        temperature=0.5,
        max_output_tokens=50,
        metadata={"k": "v"},
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.incomplete_details is None
    assert response.output_text == ANSWER
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    assert message.status == "completed" and message.id.startswith("msg_")
    assert [(c.type, c.text) for c in message.content] == [("output_text", ANSWER)]
    assert response.model == "gpt-4o-mini" and response.metadata == {"k": "v"}
    assert response.instructions == "Answer briefly." and response.temperature == 0.5
    # the emulator counts words: "Answer briefly." + "Capital?" in, the answer out
    assert (response.usage.input_tokens, response.usage.output_tokens) == (3, 6)
    assert response.usage.total_tokens == 9
    sent = server.sent()
    assert sent["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital?"},
    ]
    assert sent["temperature"] == 0.5 and sent["max_completion_tokens"] == 50
    assert "metadata" not in sent  # echoed in the response, not sent upstream


def test_a_text_only_provider_answers_too(server):
    response = server.sdk.responses.create(
        model="allenai:",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Capital?"}]}],
    )
    assert response.output_text == ANSWER and response.status == "completed"


def test_stream_has_the_exact_event_sequence(server):
    events = events_of(server, {"model": "openai:gpt-4o-mini", "input": "Capital?"})
    kinds = [name for name, _ in events]
    pieces = len(Script(ANSWER).pieces())
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * pieces,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    created = events[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    item_id = events[2][1]["item"]["id"]
    deltas = [d for n, d in events if n == "response.output_text.delta"]
    assert all(
        d["item_id"] == item_id and d["output_index"] == 0 and d["content_index"] == 0
        for d in deltas
    )
    assert "".join(d["delta"] for d in deltas) == ANSWER
    assert events[-4][1]["text"] == ANSWER
    done = events[-1][1]["response"]
    assert done["id"] == created["id"] and done["status"] == "completed"
    assert done["output"][0]["content"][0]["text"] == ANSWER
    assert done["usage"]["output_tokens"] == 6
    # no [DONE]: the Responses API ends with response.completed


def test_sdk_stream_helper_gives_text_and_final_response(server):
    with server.sdk.responses.stream(model="openai:gpt-4o-mini", input="Capital?") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == ANSWER and final.output_text == ANSWER


def test_reasoning_is_a_reasoning_item_before_the_message(server):
    server.emu["openai"].push(Script(ANSWER, reasoning="Paris is the capital."))
    response = server.sdk.responses.create(
        model="openai:gpt-4o-mini", input="Capital?", reasoning={"effort": "low"}
    )
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.summary == []
    assert [(c.type, c.text) for c in reasoning.content] == [
        ("reasoning_text", "Paris is the capital.")
    ]
    assert message.type == "message" and response.output_text == ANSWER
    assert response.usage.output_tokens_details.reasoning_tokens == 4
    assert server.sent()["reasoning_effort"] == "low"

    server.emu["openai"].push(Script(ANSWER, reasoning="Paris is the capital."))
    events = events_of(server, {"model": "openai:gpt-4o-mini", "input": "Capital?"})
    kinds = [name for name, _ in events]
    first = kinds.index("response.reasoning_text.delta")
    assert kinds[2:first] == ["response.output_item.added", "response.content_part.added"]
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    assert (
        "".join(d["delta"] for n, d in events if n == "response.reasoning_text.delta")
        == "Paris is the capital."
    )
    assert [d["output_index"] for n, d in events if n == "response.output_item.added"] == [0, 1]


def test_max_output_tokens_cut_is_incomplete(server):
    response = server.sdk.responses.create(
        model="openai:gpt-4o-mini", input="Capital?", max_output_tokens=2
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "The capital"
    assert response.output[0].status == "incomplete"
    events = events_of(
        server, {"model": "openai:gpt-4o-mini", "input": "Capital?", "max_output_tokens": 2}
    )
    assert events[-1][0] == "response.incomplete"


# -- tools ----------------------------------------------------------------------------------


def test_function_tool_round_trip_native(server):
    server.emu["openai"].push(
        Script(
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_abc123"}
            ]
        )
    )
    first = server.sdk.responses.create(
        model="openai:gpt-4o-mini", input="Weather in Paris?", tools=[WEATHER], tool_choice="auto"
    )
    [call] = first.output
    assert call.type == "function_call" and call.status == "completed"
    assert (call.call_id, call.name, json.loads(call.arguments)) == (
        "call_abc123",
        "get_weather",
        {"city": "Paris"},
    )
    assert call.id.startswith("fc_") and first.output_text == ""
    sent = server.sent()
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        }
    ]
    assert sent["tool_choice"] == "auto"

    # The agent loop: the whole history as items, the call's output last.
    second = server.sdk.responses.create(
        model="openai:gpt-4o-mini",
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": "call_abc123", "output": "22 C, sunny"},
        ],
    )
    assert second.output_text == ANSWER
    assert server.sent()["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc123",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc123", "content": "22 C, sunny"},
    ]


def test_function_tool_round_trip_through_previous_response_id(server):
    server.emu["openai"].push(
        Script(
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_abc123"}
            ]
        )
    )
    first = server.sdk.responses.create(
        model="openai:gpt-4o-mini", input="Weather in Paris?", tools=[WEATHER]
    )
    second = server.sdk.responses.create(
        model="openai:gpt-4o-mini",
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": "call_abc123", "output": "22 C"}],
    )
    assert second.output_text == ANSWER and second.previous_response_id == first.id
    roles = [m["role"] for m in server.sent()["messages"]]
    assert roles == ["user", "assistant", "tool"]


def test_streamed_function_call_events(server):
    server.emu["openai"].push(
        Script(
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_abc123"}
            ]
        )
    )
    events = events_of(
        server, {"model": "openai:gpt-4o-mini", "input": "Weather?", "tools": [WEATHER]}
    )
    kinds = [name for name, _ in events]
    added = events[2][1]["item"]
    assert kinds[2] == "response.output_item.added" and added["type"] == "function_call"
    assert (added["call_id"], added["name"], added["arguments"]) == (
        "call_abc123",
        "get_weather",
        "",
    )
    deltas = [d["delta"] for n, d in events if n == "response.function_call_arguments.delta"]
    assert len(deltas) > 1 and "".join(deltas) == '{"city":"Paris"}'
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[-3][1]["arguments"] == '{"city":"Paris"}'
    # the SDK's stream helper assembles the same call
    server.emu["openai"].push(
        Script(
            tool_calls=[{"name": "get_weather", "arguments": {"city": "Rome"}, "id": "call_rome"}]
        )
    )
    with server.sdk.responses.stream(
        model="openai:gpt-4o-mini", input="Weather?", tools=[WEATHER]
    ) as stream:
        arguments = "".join(
            e.delta for e in stream if e.type == "response.function_call_arguments.delta"
        )
        final = stream.get_final_response()
    [call] = final.output
    assert (call.call_id, call.name, call.arguments) == ("call_rome", "get_weather", arguments)
    assert json.loads(arguments) == {"city": "Rome"}


def test_tool_choice_names_a_function_and_parallel_calls_are_forwarded(server):
    server.emu["openai"].push(
        Script(
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Paris"}},
                {"name": "get_weather", "arguments": {"city": "Rome"}},
            ]
        )
    )
    response = server.sdk.responses.create(
        model="openai:gpt-4o-mini",
        input="Weather?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
    )
    sent = server.sent()
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    # the emulator keeps one call without parallel calls, as OpenAI does
    assert [(c.name, json.loads(c.arguments)) for c in response.output] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert response.parallel_tool_calls is False


def test_images_and_refusals(server):
    image = "data:image/png;base64,iVBORw0KGgo="
    server.emu["openai"].push(Script(refusal="I can't help with that."))
    response = server.sdk.responses.create(
        model="openai:gpt-4o-mini",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": image, "detail": "low"},
                ],
            }
        ],
    )
    assert server.sent()["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
            ],
        }
    ]
    [message] = response.output
    assert [(c.type, c.refusal) for c in message.content] == [
        ("refusal", "I can't help with that.")
    ]
    server.emu["openai"].push(Script(refusal="I can't help with that."))
    events = events_of(server, {"model": "openai:gpt-4o-mini", "input": "Hi"})
    kinds = [name for name, _ in events]
    assert "response.refusal.delta" in kinds and "response.output_text.delta" not in kinds
    assert [d["refusal"] for n, d in events if n == "response.refusal.done"] == [
        "I can't help with that."
    ]


AI2_TEXT_ONLY = "allenai:olmo-3.1-32b-think"


def test_function_tool_on_a_text_only_provider_is_emulated(server):
    server.emu["allenai"].push(
        Script('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>')
    )
    # an Ai2 model without native tools (olmo-3.1-32b-instruct calls them itself)
    response = server.sdk.responses.create(
        model=AI2_TEXT_ONLY, input="Weather in Paris?", tools=[WEATHER]
    )
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert response.model_extra["emulated"] == ["tools"]
    # the answer goes back as a function_call_output, rendered for the text-only model
    server.emu["allenai"].push(Script("It is 22 C in Paris."))
    done = server.sdk.responses.create(
        model=AI2_TEXT_ONLY,
        previous_response_id=response.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22 C"}],
    )
    assert done.output_text == "It is 22 C in Paris."
    prompt = [r.text for r in server.emu["allenai"].requests if r.method == "POST"][-1]
    assert "22 C" in prompt and "get_weather" in prompt


# -- structured output ----------------------------------------------------------------------


class City(BaseModel):
    name: str
    population: int


def test_text_format_json_schema(server):
    server.emu["openai"].push(Script())  # unscripted text: a minimal instance of the schema
    parsed = server.sdk.responses.parse(
        model="openai:gpt-4o-mini", input="A city", text_format=City
    )
    assert parsed.output_parsed == City(name="", population=0)
    response_format = server.sent()["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "City"
    assert response_format["json_schema"]["schema"]["required"] == ["name", "population"]
    assert parsed.text.format.type == "json_schema"


def test_text_format_json_schema_on_a_text_only_provider(server):
    server.emu["allenai"].push(Script('{"name": "Paris", "population": 2100000}'))
    parsed = server.sdk.responses.parse(model="allenai:", input="A city", text_format=City)
    assert parsed.output_parsed == City(name="Paris", population=2100000)
    assert parsed.model_extra["emulated"] == ["response_format"]


def test_text_format_json_object(server):
    server.emu["openai"].push(Script())
    response = server.sdk.responses.create(
        model="openai:gpt-4o-mini", input="JSON please", text={"format": {"type": "json_object"}}
    )
    assert set(json.loads(response.output_text)) == {"answer"}
    assert server.sent()["response_format"] == {"type": "json_object"}


# -- stored responses -------------------------------------------------------------------------


def test_previous_response_id_continues_without_the_old_instructions(server):
    first = server.sdk.responses.create(
        model="openai:gpt-4o-mini", input="Capital?", instructions="Be brief."
    )
    server.emu["openai"].push(Script("About two million."))
    second = server.sdk.responses.create(
        model="openai:gpt-4o-mini",
        input="Population?",
        previous_response_id=first.id,
        instructions="Be precise.",
    )
    assert second.output_text == "About two million."
    assert server.sent()["messages"] == [
        {"role": "system", "content": "Be precise."},
        {"role": "user", "content": "Capital?"},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "Population?"},
    ]
    # a stored response is retrieved as it was answered; deleting it removes it
    again = server.sdk.responses.retrieve(second.id)
    assert again.output_text == "About two million." and again.id == second.id
    assert again.previous_response_id == first.id
    assert server.sdk.responses.delete(second.id) is None
    with pytest.raises(openai.NotFoundError) as missing:
        server.sdk.responses.retrieve(second.id)
    assert f"'{second.id}' not found" in missing.value.message


def test_a_streamed_response_is_stored_before_it_completes(server):
    with server.sdk.responses.stream(model="openai:gpt-4o-mini", input="Capital?") as stream:
        final = stream.get_final_response()
    assert server.sdk.responses.retrieve(final.id).output_text == ANSWER


def test_store_false_is_not_kept(server):
    response = server.sdk.responses.create(model="openai:gpt-4o-mini", input="Hi", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        server.sdk.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as missing:
        server.sdk.responses.create(
            model="openai:gpt-4o-mini", input="Hi", previous_response_id=response.id
        )
    error = missing.value.body
    assert error["param"] == "previous_response_id"
    assert error["code"] == "previous_response_not_found"


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0].type", 400),
        ({"input": "Hi", "include": ["reasoning.encrypted_content"]}, "include", 400),
        ({"input": "Hi", "conversation": "conv_1"}, "conversation", 400),
        ({"input": "Hi", "truncation": "auto"}, "truncation", 400),
        ({"input": "Hi", "background": True}, "background", 400),
        ({"input": "Hi", "temprature": 1}, "temprature", 400),
        ({"input": [{"type": "computer_call"}]}, "input[0].type", 400),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
            400,
        ),
        ({"input": [{"role": "robot", "content": "Hi"}]}, "input[0].role", 400),
        ({"input": "Hi", "text": {"format": {"type": "yaml"}}}, "text.format.type", 400),
        ({"input": "Hi", "reasoning": {"summary": "detailed"}}, "reasoning.summary", 400),
        ({"input": "Hi", "tool_choice": {"type": "allowed_tools"}}, "tool_choice", 400),
        ({"input": "Hi", "max_output_tokens": 0}, "max_output_tokens", 400),
        ({}, "input", 400),
        ({"input": "Hi", "base_url": "http://evil"}, "base_url", 400),
    ],
)
def test_bad_requests_are_400_naming_the_field(server, body, param, status):
    response = httpx.post(
        server.url + "/v1/responses", json={"model": "openai:gpt-4o-mini", **body}, timeout=15
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    assert not [r for r in server.emu["openai"].requests if r.method == "POST"]


def test_upstream_errors_keep_their_status(server):
    with pytest.raises(openai.NotFoundError):
        server.sdk.responses.create(model="no-such-model-anywhere", input="Hi")
    server.emu["openai"].push(Script(fault=Fault.http_status(429, retry_after=3)))
    with pytest.raises(openai.RateLimitError) as limited:
        server.sdk.responses.create(model="openai:gpt-4o-mini", input="Hi")
    assert limited.value.response.headers["retry-after"] == "3"
    server.emu["openai"].push(Script(fault=Fault.http_status(429)))
    # before the stream began: a real status
    with (
        pytest.raises(openai.RateLimitError),
        server.sdk.responses.stream(model="openai:gpt-4o-mini", input="Hi") as stream,
    ):
        for _ in stream:
            pass


def test_failure_mid_stream_is_response_failed(server):
    server.emu["openai"].push(Script(ANSWER, fault=Fault.error_event("overloaded", after=2)))
    events = events_of(server, {"model": "openai:gpt-4o-mini", "input": "Hi"})
    name, data = events[-1]
    assert name == "response.failed"
    assert data["response"]["status"] == "failed"
    assert "overloaded" in data["response"]["error"]["message"]
    assert data["response"]["error"]["code"] == "server_error"
    text = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    assert text == "".join(Script(ANSWER).pieces()[:2])
    stored = httpx.get(server.url + f"/v1/responses/{data['response']['id']}", timeout=15)
    assert stored.status_code == 404  # a failed response is not stored


def test_api_keys_are_required(services):
    client = emulated_client(services)
    with ServerThread(create_app(client, api_keys=["sk-server"])) as running:
        with openai.OpenAI(base_url=running.url + "/v1", api_key="wrong", max_retries=0) as sdk:
            with pytest.raises(openai.AuthenticationError):
                sdk.responses.create(model="openai:gpt-4o-mini", input="Hi")
            with pytest.raises(openai.AuthenticationError):
                sdk.responses.retrieve("resp_x")
        with openai.OpenAI(base_url=running.url + "/v1", api_key="sk-server", max_retries=0) as sdk:
            assert (
                sdk.responses.create(model="openai:gpt-4o-mini", input="Hi").output_text == ANSWER
            )


# -- cancellation -----------------------------------------------------------------------------


def test_client_leaving_mid_stream_closes_the_upstream(server):
    emulator = server.emu["openai"]
    emulator.push(Script(ANSWER * 30, delay=0.05))
    with server.sdk.responses.stream(model="openai:gpt-4o-mini", input="Hi") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
        assert emulator.open_streams == 1
    wait_until(lambda: emulator.open_streams == 0, message="upstream stream left open")


def test_client_leaving_mid_stream_deletes_the_upstream_chat(server):
    emulator = server.emu["openassistant"]
    emulator.push(Script(ANSWER * 30, delay=0.05))
    with server.sdk.responses.stream(model="openassistant:", input="Hi") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
    wait_until(
        lambda: emulator.requests_to("/api/chat", "DELETE"), message="upstream chat not deleted"
    )
    wait_until(lambda: emulator.open_streams == 0)


def test_client_leaving_before_a_non_stream_answer_cancels_upstream(server):
    emulator = server.emu["openai"]
    emulator.push(Script(ANSWER * 30, delay=0.1))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/v1/responses",
            timeout=0.5,
            json={"model": "openai:gpt-4o-mini", "input": "Hi"},
        )
    wait_until(lambda: emulator.open_streams == 0, message="upstream stream left open")


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/embeddings"])
def test_generated_requests_never_cause_a_server_error(server, path):
    seen = fuzz_route(server.url, path)
    assert seen.get(200) and seen.get(400), seen  # both kinds were tried


def test_a_client_that_stops_reading_is_dropped_and_the_upstream_closed(services):
    """Back-pressure and the stall timeout of /v1/chat/completions hold here too: a raw
    client that reads the start of a long answer, then nothing, holds the upstream back
    until it is dropped, and the upstream stream is closed."""
    import socket

    emulator = services.emulators["openai"]
    emulator.reset()
    emulator.push(Script(chunks=["word " * 200] * 40_000))
    client = emulated_client(services)
    with ServerThread(create_app(client, client_stall_timeout=1)) as running:
        body = json.dumps(
            {"model": "openai:gpt-4o-mini", "input": "Talk.", "stream": True}
        ).encode()
        sock = socket.create_connection((running.host, running.port), timeout=15)
        try:
            sock.sendall(
                b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            start = b""
            while b"response.created" not in start:  # headers and events may come apart
                more = sock.recv(65536)
                assert more, start
                start += more
            assert start.startswith(b"HTTP/1.1 200")
            assert emulator.open_streams == 1
            wait_until(
                lambda: emulator.open_streams == 0,
                timeout=30,
                message="the stalled client's upstream stream is still open",
            )
            received = start
            while chunk := sock.recv(65536):
                received += chunk
            assert b"response.completed" not in received  # dropped, not finished
        finally:
            sock.close()
        emulator.push(Script("Still here."))
        with openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0) as sdk:
            assert (
                sdk.responses.create(model="openai:gpt-4o-mini", input="Hi").output_text
                == "Still here."
            )


def test_input_items_of_a_stored_response(server):
    response = server.sdk.responses.create(
        model="openai:gpt-4o-mini",
        input=[
            {"role": "user", "content": "Weather?"},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "22 C"},
        ],
        tools=[WEATHER],
    )
    page = server.sdk.responses.input_items.list(response.id, order="asc")
    assert [item.type for item in page.data] == ["message", "function_call", "function_call_output"]
    assert page.data[0].content[0].text == "Weather?" and page.data[0].role == "user"
    assert page.data[1].call_id == "call_1" and page.data[2].output == "22 C"
    assert len({item.id for item in page.data}) == 3
    newest = server.sdk.responses.input_items.list(response.id, limit=1)
    assert [item.type for item in newest.data] == ["function_call_output"]
    assert newest.has_more
    # the SDK pages through them with `after`
    assert [
        item.id for item in server.sdk.responses.input_items.list(response.id, limit=1, order="asc")
    ] == [item.id for item in page.data]
    with pytest.raises(openai.NotFoundError):
        server.sdk.responses.input_items.list("resp_missing")


def test_a_store_that_fails_is_an_error_event_not_a_completed_response(services, tmp_path):
    from llmplex.conversations import SQLiteStore

    store = SQLiteStore(tmp_path / "store.sqlite3")
    store.close()  # every write now fails
    client = emulated_client(services, store=store)
    with ServerThread(create_app(client)) as running:
        served = Served(running.url, services, client)
        events = events_of(served, {"model": "openai:gpt-4o-mini", "input": "Hi"})
        name, data = events[-1]
        assert name == "error" and data["code"] == "internal_error"
        assert data["sequence_number"] == len(events) - 1
        assert "response.completed" not in [n for n, _ in events]
        response = httpx.post(
            running.url + "/v1/responses",
            timeout=15,
            json={"model": "openai:gpt-4o-mini", "input": "Hi"},
        )
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        # store: false needs no store
        assert (
            served.sdk.responses.create(
                model="openai:gpt-4o-mini", input="Hi", store=False
            ).output_text
            == ANSWER
        )
        served.sdk.close()
