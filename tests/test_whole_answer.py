"""``stream=False`` answers asked of an OpenAI-compatible upstream in one piece (``stream:
false``) when no wait a stream bounds could end before the answer's own deadline, and
streamed otherwise (the defaults: first token 300 s, reads 120 s, answer 1800 s).

Real emulator on 127.0.0.1; what the upstream was asked is read from its request log."""

from __future__ import annotations

import math

import pytest

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.testing import Script

MODEL = "openai:gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "hi"}]
# Nothing can end before the answer's deadline: the answer may come in one piece.
WHOLE = {"timeout": 600.0, "total_timeout": 600.0, "first_token_timeout": math.inf}


def _client(emulator, **kwargs) -> AsyncClient:
    options = {"OpenAI": {"base_url": emulator.url + "/v1", "api_key": "sk-test"}}
    return AsyncClient(provider_options=options, store=MemoryStore(), **kwargs)


def _asked(emulator) -> list[bool]:
    return [r.json.get("stream") for r in emulator.requests_to("/v1/chat/completions", "POST")]


def _answer(completion) -> dict:
    data = completion.model_dump()
    data.pop("id")
    data.pop("created")
    return data


@pytest.fixture
def scripted(openai_emulator):
    openai_emulator.script = Script(
        chunks=["Пр", "ивет, ", "世界 ", "🌍"], reasoning="thinking first"
    )
    return openai_emulator


async def test_defaults_stream_upstream(scripted):
    async with _client(scripted) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == "Привет, 世界 🌍"
    assert _asked(scripted) == [True]


async def test_whole_answer_when_no_wait_can_end_first(scripted):
    async with _client(scripted) as streamed:
        expected = await streamed.chat.completions.create(model=MODEL, messages=MESSAGES)
    async with _client(scripted, **WHOLE) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True
            )
        ]
    assert _asked(scripted) == [True, False, True]  # a stream stays a stream
    assert _answer(completion) == _answer(expected)
    assert completion.choices[0].message.reasoning_content == "thinking first"
    assert completion.usage.total_tokens == expected.usage.total_tokens
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Привет, 世界 🌍"
    )


@pytest.mark.parametrize(
    "settings",
    [
        {**WHOLE, "first_token_timeout": 300.0},  # the first token due before the end
        {**WHOLE, "timeout": 120.0},  # a read could time out before the end
        {**WHOLE, "total_timeout": math.inf},  # no end: the read timeout still bounds
    ],
    ids=["first-token", "read-timeout", "no-total"],
)
async def test_streamed_when_a_wait_could_end_first(scripted, settings):
    async with _client(scripted, **settings) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == "Привет, 世界 🌍"
    assert _asked(scripted) == [True]


async def test_per_call_deadlines_count(scripted):
    async with _client(scripted, **WHOLE) as client:
        await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, first_token_timeout=10.0
        )
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert _asked(scripted) == [True, False]
