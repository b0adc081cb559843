"""Routing: name resolution, fallback between real emulators, cooldown, health order."""

from __future__ import annotations

import socket

import pytest

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.emulators.openai import OpenAIEmulator
from llmplex.emulators.replicate import ReplicateEmulator
from llmplex.errors import (
    AllProvidersFailed,
    InvalidRequestError,
    MissingAuthError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseStatusError,
    StreamError,
)
from llmplex.providers import get_provider
from llmplex.routing import CoolingDown, Router
from llmplex.testing import Fault, Script, serve

GOOD = "Fallback worked fine."


class Clock:
    """A clock the test moves by hand, so cooldowns are observed without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pair():
    """Two OpenAI-compatible services (as "OpenAI" and "Groq") and Replicate, all healthy."""
    with (
        serve(OpenAIEmulator(Script(GOOD))) as first,
        serve(OpenAIEmulator(Script(GOOD))) as second,
        serve(ReplicateEmulator(Script(GOOD))) as third,
    ):
        yield first, second, third


def make_client(pair, clock=None, **router_options):
    first, second, third = pair
    router = Router(
        aliases={
            "duo": ["openai:gpt-4o-mini", "groq:gpt-4o-mini"],
            "mixed": ["openai:gpt-4o-mini", "replicate:meta/meta-llama-3-8b-instruct"],
        },
        clock=clock or Clock(),
        **router_options,
    )
    return AsyncClient(
        router=router,
        store=MemoryStore(),
        provider_options={
            "OpenAI": {"base_url": first.url + "/v1", "api_key": "sk-one"},
            "Groq": {"base_url": second.url + "/v1", "api_key": "sk-two"},
            "Replicate": {"base_url": third.url, "api_key": "r8_three"},
        },
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text_of(completion) -> str:
    return completion.choices[0].message.content


@pytest.mark.parametrize(
    "fault, error_type",
    [
        (Fault.http_status(401), MissingAuthError),
        (Fault.http_status(429, retry_after=7), RateLimitError),
        (Fault.http_status(500), ResponseStatusError),
        (Fault.stall(30), ProviderTimeoutError),
        (Fault.error_event("overloaded"), StreamError),
    ],
    ids=["401", "429", "500", "stall", "error-event-before-text"],
)
async def test_fallback_to_the_next_provider(pair, fault, error_type):
    first, second, _ = pair
    first.script = Script(GOOD, fault=fault)
    client = make_client(pair)
    completion = await client.chat.completions.create(model="duo", messages="Hi", timeout=1.0)
    assert text_of(completion) == GOOD
    assert completion.provider == "Groq"
    assert len(first.requests) == 1 and len(second.requests) == 1
    health = client.router.status()
    assert health["OpenAI"]["consecutive_failures"] == 1
    assert health["OpenAI"]["last_error"].startswith(error_type.__name__)
    assert health["Groq"]["successes"] == 1


async def test_fallback_from_connection_refused_and_across_protocols(pair):
    client = make_client(pair)
    client.provider_options["openai"]["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    stream = await client.chat.completions.create(model="mixed", messages="Hi", stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == GOOD
    assert {c.provider for c in chunks} == {"Replicate"}
    assert "ProviderConnectionError" in client.router.status()["OpenAI"]["last_error"]


async def test_429_retry_after_sets_the_cooldown_and_it_ends(pair):
    first, second, _ = pair
    clock = Clock()
    client = make_client(pair, clock=clock)
    first.push(Script(GOOD, fault=Fault.http_status(429, retry_after=7)))
    assert (await client.chat.completions.create(model="duo", messages="Hi")).provider == "Groq"
    assert client.router.status()["OpenAI"]["cooldown_remaining"] == 7.0

    clock.now += 5  # still cooling: OpenAI is not even asked
    assert (await client.chat.completions.create(model="duo", messages="Hi")).provider == "Groq"
    assert len(first.requests) == 1

    clock.now += 3  # cooldown over: OpenAI is a candidate again (after the healthier Groq)
    second.push(Script(GOOD, fault=Fault.http_status(500)))
    assert (await client.chat.completions.create(model="duo", messages="Hi")).provider == "OpenAI"
    assert len(first.requests) == 2
    assert client.router.status()["OpenAI"]["consecutive_failures"] == 0


async def test_cooldown_grows_with_consecutive_failures(pair):
    first, _, _ = pair
    clock = Clock()
    client = make_client(pair, clock=clock, cooldown=10, max_cooldown=25)
    first.script = Script(GOOD, fault=Fault.http_status(500))
    for expected in (10, 20, 25):
        with pytest.raises(ResponseStatusError):  # one named route: always tried
            await client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
        assert client.router.status()["OpenAI"]["cooldown_remaining"] == expected
    assert len(first.requests) == 3


async def test_failure_after_text_is_raised_not_retried(pair):
    first, second, _ = pair
    first.script = Script("one two three four five", fault=Fault.disconnect(after=2))
    client = make_client(pair)
    stream = await client.chat.completions.create(model="duo", messages="Hi", stream=True)
    received = []
    with pytest.raises(ProviderConnectionError) as info:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "one two"  # nothing duplicated, nothing from Groq
    assert info.value.provider == "OpenAI"
    assert second.requests == []
    # non-stream: the same rule (a fresh client: OpenAI is cooling down in this one)
    with pytest.raises(ProviderConnectionError):
        await make_client(pair).chat.completions.create(model="duo", messages="Hi")
    assert second.requests == []


async def test_all_providers_failed_lists_each_typed_error(pair):
    first, second, _ = pair
    first.script = Script(GOOD, fault=Fault.http_status(500, "Internal meltdown"))
    second.script = Script(GOOD, fault=Fault.http_status(429, retry_after=3))
    client = make_client(pair)
    with pytest.raises(AllProvidersFailed) as info:
        await client.chat.completions.create(model="duo", messages="Hi")
    print(info.value)  # shown with -s: what a user reads
    names = [name for name, _ in info.value.errors]
    assert names == ["OpenAI", "Groq"]
    assert isinstance(info.value.errors[0][1], ResponseStatusError)
    assert isinstance(info.value.errors[1][1], RateLimitError)
    text = str(info.value)
    assert "'duo'" in text and "HTTP 500: Internal meltdown" in text and "HTTP 429" in text

    # Now both cool down: the next call says so, with how long to wait.
    with pytest.raises(AllProvidersFailed) as info:
        await client.chat.completions.create(model="duo", messages="Hi")
    assert all(isinstance(e, CoolingDown) for _, e in info.value.errors)
    assert "cooling down for" in str(info.value)
    assert len(first.requests) == 1 and len(second.requests) == 1


async def test_a_single_named_provider_raises_its_own_error(pair):
    first, _, _ = pair
    first.script = Script(GOOD, fault=Fault.http_status(401))
    client = make_client(pair)
    for _ in range(2):  # no cooldown notice for a provider the caller named
        with pytest.raises(MissingAuthError) as info:
            await client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
        assert info.value.provider == "OpenAI" and info.value.status == 401
    assert len(first.requests) == 2


async def test_retries_try_the_same_provider_again(pair):
    first, second, _ = pair
    first.push(Script(GOOD, fault=Fault.http_status(503)))
    client = make_client(pair, retries=1)
    completion = await client.chat.completions.create(model="duo", messages="Hi")
    assert completion.provider == "OpenAI" and len(first.requests) == 2
    assert second.requests == []


async def test_health_order_puts_failing_providers_last(pair):
    first, _second, _ = pair
    clock = Clock()
    client = make_client(pair, clock=clock, cooldown=1)
    first.push(Script(GOOD, fault=Fault.http_status(500)))
    await client.chat.completions.create(model="duo", messages="Hi")
    clock.now += 2  # cooled down, but still the one that failed last
    routes, skipped = client.router.ordered(client.router.resolve("duo"))
    assert [r.name for r in routes] == ["Groq", "OpenAI"] and skipped == []


async def test_provider_argument_forms(pair):
    client = make_client(pair)
    for provider in ("groq", get_provider("Groq"), ["groq", "openai"]):
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages="Hi", provider=provider
        )
        assert completion.provider == "Groq"
    with pytest.raises(InvalidRequestError, match="unknown provider 'nope'"):
        await client.chat.completions.create(model="x", messages="Hi", provider="nope")
    with pytest.raises(InvalidRequestError, match="names provider Replicate"):
        await client.chat.completions.create(
            model="replicate:meta/x", messages="Hi", provider="groq"
        )


def test_resolution_of_names():
    router = Router()
    (route,) = router.resolve("replicate:meta/meta-llama-3-8b-instruct")
    assert (route.name, route.model, route.named) == (
        "Replicate",
        "meta/meta-llama-3-8b-instruct",
        True,
    )
    (route,) = router.resolve("allenai:olmo-3.1-32b")  # alias resolved by the provider
    assert route.model == "olmo-3.1-32b-instruct"
    (route,) = router.resolve("ollama:llama3.2:1b")  # colons inside the model name survive
    assert (route.name, route.model) == ("Ollama", "llama3.2:1b")
    # a bare listed name: every working provider listing it
    assert [r.name for r in router.resolve("meta/meta-llama-3-70b-instruct")] == ["Replicate"]
    assert [r.name for r in Router(order=["Groq"]).resolve("")][:1] == ["Groq"]
    with pytest.raises(ModelNotFoundError) as info:
        router.resolve("meta/meta-llama-3-8b-instruc")
    assert "meta/meta-llama-3-8b-instruct" in info.value.suggestions
    assert "Did you mean" in str(info.value)


async def test_conversation_after_a_fallback_carries_the_full_history(pair):
    first, second, _ = pair
    client = make_client(pair)
    conversation = await client.conversations.create()
    await client.chat.completions.create(
        model="duo", messages="Turn one", conversation=conversation
    )
    first.push(Script(GOOD, fault=Fault.http_status(503)))  # OpenAI fails: Groq answers
    answer = await client.chat.completions.create(
        model="duo", messages="Turn two", conversation=conversation.id
    )
    assert answer.provider == "Groq" and answer.conversation_id == conversation.id
    sent = second.requests_to("/chat/completions")[0].json["messages"]
    assert [m["content"] for m in sent] == ["Turn one", GOOD, "Turn two"]
    stored = await client.conversations.get(conversation.id)
    assert [m["content"] for m in stored.messages] == ["Turn one", GOOD, "Turn two", GOOD]
    assert stored.provider == "Groq"


async def test_a_missing_key_is_grouped_and_never_cools_down(pair):
    first, second, _ = pair
    second.script = Script(GOOD, fault=Fault.http_status(500, "Internal meltdown"))
    client = make_client(pair, retries=2)
    del client.provider_options["openai"]["api_key"]  # OpenAI: nothing configured
    for _ in range(2):
        with pytest.raises(AllProvidersFailed) as info:
            await client.chat.completions.create(model="duo", messages="Hi")
        error = info.value
        print(error)
        assert isinstance(error.errors[0][1], MissingAuthError)
        names = [name for name, _ in error.errors]
        assert names == ["OpenAI", "Groq", "Groq", "Groq"]  # a missing key: no retry
        assert not error.unconfigured  # Groq has a key: it failed otherwise
        lines = str(error).splitlines()
        assert lines[1] == "  Groq: HTTP 500: Internal meltdown (3 attempts)"
        assert "  no key for: OpenAI" in lines
        assert lines[lines.index("  no key for: OpenAI") + 1].startswith(
            "    (set OPENAI_API_KEY, or add api_key under [providers.OpenAI] in"
        )
        router = client.router
        router.health.pop("Groq", None)  # Groq may be tried again; OpenAI never cooled
        assert "OpenAI" not in router.health or router.health["OpenAI"].failures == 0
    assert first.requests == []  # nothing sent without a key
