"""The ``openai-agents`` SDK through ``llmplex serve``: an Agent with a function tool, on
the SDK's default model class (the Responses API), pointed at the server; every answer
from the emulators. Tracing is disabled: nothing is exported anywhere."""

from __future__ import annotations

import json

import pytest
from agents import (
    Agent,
    Runner,
    function_tool,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models import _openai_shared
from openai import AsyncOpenAI

from llmplex.server import ServerThread, create_app
from llmplex.server.emulated import EmulatedServices, emulated_client
from llmplex.testing import Script

CALLS: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    CALLS.append(city)
    return f"22 C and sunny in {city}"


@pytest.fixture
async def served():
    with EmulatedServices(["openai", "allenai"]) as services:
        client = emulated_client(services)
        with ServerThread(create_app(client)) as server:
            before = _openai_shared.get_default_openai_client()
            sdk = AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
            set_default_openai_client(sdk, use_for_tracing=False)
            set_tracing_disabled(True)
            CALLS.clear()
            try:
                yield services
            finally:
                _openai_shared._default_openai_client = before
                await sdk.close()  # its kept-alive connections, on the test's loop


def chat_requests(emulator):
    return [
        json.loads(r.text)
        for r in emulator.requests
        if r.method == "POST" and r.path.endswith("/chat/completions")
    ]


@pytest.mark.parametrize("streamed", [False, True])
async def test_agent_with_a_function_tool(served, streamed):
    emulator = served.emulators["openai"]
    emulator.push(Script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    emulator.push(Script("It is 22 C and sunny in Paris."))
    agent = Agent(
        name="Weather",
        instructions="Answer with the weather tool.",
        model="gpt-4o-mini",
        tools=[get_weather],
    )
    if streamed:
        result = Runner.run_streamed(agent, "What is the weather in Paris?")
        kinds = [event.type async for event in result.stream_events()]
        assert "raw_response_event" in kinds
    else:
        result = await Runner.run(agent, "What is the weather in Paris?")
    assert result.final_output == "It is 22 C and sunny in Paris."
    assert CALLS == ["Paris"]
    first, second = chat_requests(emulator)
    assert first["messages"][0] == {"role": "system", "content": "Answer with the weather tool."}
    assert first["tools"][0]["function"]["name"] == "get_weather"
    # the second turn carries the call and the tool's answer
    call = second["messages"][-2]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": call["id"],
        "content": "22 C and sunny in Paris",
    }


async def test_agent_on_a_text_only_provider(served):
    emulator = served.emulators["allenai"]
    emulator.push(
        Script('<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>')
    )
    emulator.push(Script("Sunny in Rome."))
    # an Ai2 model without native tools (olmo-3.1-32b-instruct calls them itself)
    agent = Agent(
        name="Weather",
        instructions="Use the tool.",
        model="allenai:olmo-3.1-32b-think",
        tools=[get_weather],
    )
    result = await Runner.run(agent, "Weather in Rome?")
    assert result.final_output == "Sunny in Rome."
    assert CALLS == ["Rome"]
