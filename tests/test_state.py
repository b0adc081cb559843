"""The state backends against a real redis-server: RedisStore, the limiters, shared
health, the error policy, and secrets kept out of errors and reprs."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
import redis
from redis_server import RedisServer, free_port

from llmplex.conversations import ConversationNotFoundError, RedisStore
from llmplex.errors import RateLimitError
from llmplex.routing import Router
from llmplex.state import EmbeddedState, StateBackendError, from_url, redact_url
from llmplex.state.limits import LocalLimiter

PASSWORD = "s3cret-pass-word"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis"), password=PASSWORD) as server:
        yield server


@pytest.fixture
def url(redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


def test_redact_url_hides_passwords():
    assert redact_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("rediss://user:pw@host/1") == "rediss://user:***@host/1"
    assert (
        redact_url("unix:///run/redis.sock?password=pw&db=2")
        == "unix:///run/redis.sock?password=***&db=2"
    )
    assert redact_url("redis://host:6379") == "redis://host:6379"


def test_from_url_choices_and_refusals():
    assert isinstance(from_url(None), EmbeddedState)
    assert isinstance(from_url(""), EmbeddedState)
    with pytest.raises(ValueError, match="scheme") as info:
        from_url("http://:pw@host")
    assert "pw" not in str(info.value)
    with pytest.raises(ValueError, match="on_error"):
        from_url(None, on_error="maybe")


def test_store_round_trip(url):
    state = from_url(url)
    store = state.store
    assert isinstance(store, RedisStore) and PASSWORD not in repr(store) + repr(state)
    record = store.create(
        model="m", messages=[{"role": "system", "content": "be brief"}], metadata={"k": "v"}
    )
    assert store.get(record.id).messages == [{"role": "system", "content": "be brief"}]
    after = store.append(
        record.id,
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello ✓"}],
        provider="OpenAI",
        model="gpt",
        state={"s": 1},
        expected_turns=1,
    )
    assert [m["content"] for m in after.messages] == ["be brief", "hi", "hello ✓"]
    assert after.provider == "OpenAI" and after.model == "gpt" and after.metadata == {"k": "v"}
    assert after.state_for("OpenAI") == {"s": 1}
    # another writer slipped a turn in: the state is not claimed for it
    stale = store.append(
        record.id,
        [{"role": "user", "content": "x"}],
        provider="Groq",
        state={"g": 1},
        expected_turns=1,
    )
    assert "Groq" not in stale.provider_state and len(stale.messages) == 4
    assert [c.id for c in store.list()] == [record.id]
    store.delete(record.id)
    with pytest.raises(ConversationNotFoundError):
        store.get(record.id)
    with pytest.raises(ConversationNotFoundError):
        store.append(record.id, [{"role": "user", "content": "gone"}])
    store.close()


def test_concurrent_writers_lose_no_turn(url):
    first, second = from_url(url).store, from_url(url).store  # two connections
    record = first.create()
    writers, turns = 8, 25

    def write(n: int) -> None:
        store = first if n % 2 else second
        for i in range(turns):
            store.append(
                record.id,
                [
                    {"role": "user", "content": f"{n}-{i}"},
                    {"role": "assistant", "content": f"re {n}-{i}"},
                ],
            )

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    messages = second.get(record.id).messages
    assert len(messages) == 2 * writers * turns
    users = [m["content"] for m in messages[::2]]
    assert sorted(users) == sorted(f"{n}-{i}" for n in range(writers) for i in range(turns))
    # every turn's two messages stay together
    assert all(
        b["content"] == "re " + a["content"]
        for a, b in zip(messages[::2], messages[1::2], strict=True)
    )
    first.close()
    second.close()


async def test_redis_limiter_shared_by_two_backends(url):
    one, two = from_url(url), from_url(url)
    try:
        for n in range(3):
            decision = await (one if n % 2 else two).limiter.admit("k", 3, None)
            assert decision.allowed and decision.requests == n + 1
        for backend in (one, two):
            refused = await backend.limiter.admit("k", 3, None)
            assert not refused.allowed and refused.exceeded == "requests"
            assert 0 < refused.retry_after <= 60
        assert (await one.limiter.admit("other", 3, None)).allowed  # per key
        # tokens: the window is spent once the answers used tpm
        assert (await one.limiter.admit("t", None, 100)).allowed
        await two.limiter.spend("t", 100)
        refused = await one.limiter.admit("t", None, 100)
        assert not refused.allowed and refused.exceeded == "tokens" and refused.tokens == 100
    finally:
        await one.aclose()
        await two.aclose()


async def test_local_limiter_counts_the_same():
    limiter = LocalLimiter()
    assert [(await limiter.admit("k", 2, None)).allowed for _ in range(3)] == [True, True, False]
    await limiter.spend("t", 5)
    assert (await limiter.admit("t", None, 6)).allowed
    await limiter.spend("t", 1)
    refused = await limiter.admit("t", None, 6)
    assert not refused.allowed and 0 < refused.retry_after <= 60


async def test_health_shared_between_routers(url):
    one, two = from_url(url), from_url(url)
    try:
        first, second = Router(shared=one.health), Router(shared=two.health)
        first.record_failure(
            "OpenAI", RateLimitError("slow down", provider="OpenAI", status=429, retry_after=120)
        )
        await one.health.failed(first, "OpenAI")
        await two.health.pull(second, ["OpenAI", "Groq"])
        status = second.status()
        assert status["OpenAI"]["cooling_down"] and status["OpenAI"]["cooldown_remaining"] > 100
        assert status["OpenAI"]["consecutive_failures"] == 1
        assert "slow down" in status["OpenAI"]["last_error"]
        assert not status["Groq"]["cooling_down"]
        await two.health.succeeded("OpenAI")
        await one.health.pull(first, ["OpenAI"])
        assert not first.status()["OpenAI"]["cooling_down"]
    finally:
        await one.aclose()
        await two.aclose()


async def test_unreachable_closed_raises_without_the_password():
    state = from_url(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0", timeout=2)
    try:
        with pytest.raises(StateBackendError) as info:
            await state.limiter.admit("k", 1, None)
        assert "unreachable" in str(info.value) and PASSWORD not in str(info.value)
        assert "***" in str(info.value)
        with pytest.raises(StateBackendError) as info:
            await asyncio.to_thread(state.store.create)
        assert PASSWORD not in str(info.value)
    finally:
        await state.aclose()


async def test_unreachable_open_goes_local_and_warns_once(tmp_path, caplog):
    server = RedisServer(tmp_path)  # started later: unreachable first
    state = from_url(server.url, on_error="open", timeout=2)
    try:
        with caplog.at_level(logging.WARNING, logger="llmplex.state"):
            assert [(await state.limiter.admit("k", 2, None)).allowed for _ in range(3)] == [
                True,
                True,
                False,
            ]  # counted here
            await state.health.pull(Router(), ["OpenAI"])  # no error: local health
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1
        with pytest.raises(StateBackendError):  # conversations never fall open
            await asyncio.to_thread(state.store.create)
        caplog.clear()
        with server, caplog.at_level(logging.WARNING, logger="llmplex.state"):
            decision = await state.limiter.admit("k", 2, None)  # Redis again: its count
            assert decision.allowed and decision.requests == 1
            assert any("reachable again" in r.getMessage() for r in caplog.records)
            assert state.store.create().id  # and the store works without a restart
    finally:
        await state.aclose()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[state]\non_error = "maybe"\n', "on_error"),
        ('[state]\nurl = "http://:pw@host"\n', "redis://"),
        ('[state]\nurls = "redis://host"\n', "unknown key 'urls'"),
        ('[server.keys.a]\nkey = "k"\nrpn = 1\n', "[server.keys.a]: unknown key 'rpn'"),
        ('[server.keys.a]\nkey = "k"\nkey_sha256 = "00"\n', "exactly one of"),
        ('[server.keys.a]\nkey_sha256 = "abc"\n', "64 hexadecimal"),
        ('[server.keys.a]\nkey = "k"\nrpm = 0\n', "'rpm' must be a positive integer"),
        ('[server.keys.a]\nkey = "k"\n[server.keys.b]\nkey = "k"\n', "same secret"),
    ],
)
def test_config_refuses_bad_state_and_key_tables(tmp_path, text, expected):
    from llmplex.config import ConfigError, load_config

    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert expected in str(info.value) and "pw" not in str(info.value)
    assert "'k'" not in str(info.value)  # never a key


def test_config_reads_state_and_keys_and_the_variable_wins(tmp_path):
    from llmplex.config import load_config

    path = tmp_path / "config.toml"
    path.write_text(
        '[state]\nurl = "redis://file:6379"\non_error = "open"\n'
        '[server.keys.a]\nkey = "k"\nrpm = 5\nmodels = ["openai:*"]\n'
    )
    config = load_config(path, environ={"LLMPLEX_STATE_URL": "redis://env:6379"})
    assert config.state == {"url": "redis://env:6379", "on_error": "open"}
    assert config.server["keys"] == {"a": {"key": "k", "rpm": 5, "models": ["openai:*"]}}
    assert "redis" not in repr(config) and "'k'" not in repr(config)
