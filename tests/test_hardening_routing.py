"""Routing under abuse (issue 10): health bookkeeping that cannot overflow, a bounded
provider list, and conversations that keep the user's message when a turn fails."""

from __future__ import annotations

import asyncio

import pytest

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.emulators.openai import OpenAIEmulator
from llmplex.errors import InvalidRequestError, ProviderConnectionError, StreamError
from llmplex.providers.endpoints import ENDPOINTS
from llmplex.routing import Router
from llmplex.testing import Fault, Script, serve


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    for endpoint in ENDPOINTS.values():
        monkeypatch.delenv(endpoint.api_key_env, raising=False)


def test_consecutive_failures_never_overflow_the_cooldown():
    router = Router(cooldown=30, max_cooldown=300)
    for _ in range(5000):  # 2 ** 1024 does not fit a float: this raised OverflowError
        router.record_failure("Mistral", ProviderConnectionError("down", provider="Mistral"))
    status = router.status()["Mistral"]
    assert status["consecutive_failures"] == 5000
    assert 0 < status["cooldown_remaining"] <= 300


async def test_a_long_provider_list_is_refused_and_repeats_count_once():
    with serve(OpenAIEmulator(Script(fault=Fault.http_status(503)))) as emulator:
        options = {"Mistral": {"base_url": emulator.url + "/v1", "api_key": "k"}}
        async with AsyncClient(store=MemoryStore(), provider_options=options) as client:
            with pytest.raises(InvalidRequestError) as info:
                await client.chat.completions.create(
                    model="m", messages="Hi", provider=[f"p{i}" for i in range(20)]
                )
            assert info.value.param == "provider" and "at most 8" in str(info.value)
            # 1,100 times the same provider is one route: one upstream request, not 1,100
            with pytest.raises(Exception) as failed:
                await client.chat.completions.create(
                    model="m", messages="Hi", provider=["mistral"] * 1100
                )
            assert not isinstance(failed.value, (InvalidRequestError, OverflowError))
        assert len(emulator.requests_to("/chat/completions")) == 1


async def test_a_failed_turn_keeps_the_users_message():
    with serve(OpenAIEmulator()) as emulator:
        options = {"OpenAI": {"base_url": emulator.url + "/v1", "api_key": "k"}}
        async with AsyncClient(store=MemoryStore(), provider_options=options) as client:
            conversation = await client.conversations.create()
            emulator.push(Script("one two three four", fault=Fault.error_event(after=2)))
            with pytest.raises(StreamError):
                await client.chat.completions.create(
                    model="openai:gpt-4o-mini", messages="first question", conversation=conversation
                )
            stored = (await client.conversations.get(conversation.id)).messages
            assert stored[0] == {"role": "user", "content": "first question"}
            assert stored[1] == {"role": "assistant", "content": "one two", "status": "incomplete"}
            # failing before any text: the question alone is kept
            emulator.push(Script(fault=Fault.http_status(500)))
            with pytest.raises(Exception):
                await client.chat.completions.create(
                    model="openai:gpt-4o-mini",
                    messages="second question",
                    conversation=conversation,
                )
            stored = (await client.conversations.get(conversation.id)).messages
            assert stored[2] == {"role": "user", "content": "second question"}
            # continuing sends the whole history, without llmplex's own marker
            await client.chat.completions.create(messages="third", conversation=conversation)
            sent = emulator.requests_to("/chat/completions")[-1].json["messages"]
            assert [m["content"] for m in sent] == [
                "first question",
                "one two",
                "second question",
                "third",
            ]
            assert all("status" not in m for m in sent)


async def test_a_cancelled_turn_keeps_the_users_message():
    with serve(OpenAIEmulator(Script("word " * 200, delay=0.02))) as emulator:
        options = {"OpenAI": {"base_url": emulator.url + "/v1", "api_key": "k"}}
        async with AsyncClient(store=MemoryStore(), provider_options=options) as client:
            conversation = await client.conversations.create()

            async def ask() -> None:
                stream = await client.chat.completions.create(
                    model="openai:gpt-4o-mini",
                    messages="a long one",
                    stream=True,
                    conversation=conversation,
                )
                async for _ in stream:
                    pass

            task = asyncio.ensure_future(ask())
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            stored = (await client.conversations.get(conversation.id)).messages
        assert stored[0] == {"role": "user", "content": "a long one"}
        assert stored[1]["status"] == "incomplete" and stored[1]["content"].startswith("word")
