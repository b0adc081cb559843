"""Two real ``llmplex serve`` processes sharing one real redis-server, with the OpenAI
emulator (and a second one as Groq) upstream, driven by the official SDKs: cooldowns,
conversations and per-key limits hold across instances; a killed instance loses no
stored turn; a Redis outage gets the configured behaviour, and recovery."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import redis
from redis_server import RedisServer

from llmplex.emulators.openai import OpenAIEmulator
from llmplex.testing import Fault, Script, serve, wait_until

LLMPLEX = shutil.which("llmplex", path=str(Path(sys.executable).parent)) or "llmplex"
PASSWORD = "redis-pass-9f8e7d"
KEY_HASHED = "sk-hashed-secret"
MODEL = "openai:gpt-4o-mini"
KEYS = f"""
[router]
aliases = {{ duo = ["openai:gpt-4o-mini", "groq:llama-3.1-8b-instant"] }}

[server.keys.free]
key = "sk-free"

[server.keys.rpm4]
key = "sk-rpm4"
rpm = 4

[server.keys.tpm1]
key = "sk-tpm1"
tpm = 1

[server.keys.openai-only]
key = "sk-openai-only"
models = ["openai:*"]

[server.keys.hashed]
key_sha256 = "{hashlib.sha256(KEY_HASHED.encode()).hexdigest()}"

[server.keys.messages]
key = "sk-messages"
rpm = 2

[server.keys.tpm-anthropic]
key = "sk-tpm-anthropic"
tpm = 1

[server.keys.tpm-responses]
key = "sk-tpm-responses"
tpm = 1
"""


class Instance:
    """One ``llmplex serve`` subprocess, its log in a file (never a pipe that fills)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        # a data directory of its own: nothing shared through a SQLite file
        env = {**env, "LLMPLEX_DATA_DIR": str(log.with_suffix(".data"))}
        with log.open("wb") as sink:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [LLMPLEX, "serve", "--port", "0"], env=env, stdout=subprocess.DEVNULL, stderr=sink
            )
        self.url = ""
        self.clients: dict[object, openai.OpenAI | anthropic.Anthropic] = {}

        def started() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"llmplex serve exited: {self.text()}")
            for line in self.text().splitlines():
                if "serving the OpenAI-compatible API at " in line:
                    self.url = line.split(" at ", 1)[1].split()[0].removesuffix("/v1")
            return bool(self.url) and _answers(self.url + "/health")

        wait_until(started, timeout=60)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def openai(self, key: str) -> openai.OpenAI:
        """An SDK client with ``key`` (one per key, closed with the instance)."""
        if key not in self.clients:
            self.clients[key] = openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)
        return self.clients[key]

    def anthropic(self, key: str) -> anthropic.Anthropic:
        if ("anthropic", key) not in self.clients:
            self.clients["anthropic", key] = anthropic.Anthropic(
                base_url=self.url, api_key=key, max_retries=0
            )
        return self.clients["anthropic", key]

    def close_clients(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=15)

    def stop(self) -> None:
        self.close_clients()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def environment(
    tmp: Path, config: str, oai: OpenAIEmulator, groq: OpenAIEmulator, state_url: str
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLMPLEX_") and not k.endswith(("_API_KEY", "_API_TOKEN"))
    }
    path = tmp / "config.toml"
    path.write_text(config)
    env.update(
        LLMPLEX_CONFIG=str(path),
        LLMPLEX_DATA_DIR=str(tmp / "data"),
        LLMPLEX_OPENAI_BASE_URL=oai.url + "/v1",
        OPENAI_API_KEY="sk-upstream",
        LLMPLEX_GROQ_BASE_URL=groq.url + "/v1",
        GROQ_API_KEY="gsk-upstream",
        LLMPLEX_STATE_URL=state_url,
        PYTHONIOENCODING="utf-8",
    )
    return env


@pytest.fixture(scope="module")
def upstreams():
    with (
        serve(OpenAIEmulator(Script("From OpenAI."))) as oai,
        serve(OpenAIEmulator(Script("From Groq."))) as groq,
    ):
        yield oai, groq


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis"), password=PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def pair(tmp_path_factory, upstreams, shared_redis):
    """Two instances on the same Redis and config."""
    tmp = tmp_path_factory.mktemp("pair")
    env = environment(tmp, KEYS, *upstreams, shared_redis.url)
    first = Instance(env, tmp / "a.log")
    try:
        second = Instance(env, tmp / "b.log")
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()
    for instance in (first, second):  # no secret ever reached a log
        text = instance.text()
        assert PASSWORD not in text and "sk-rpm4" not in text and KEY_HASHED not in text


def ask(instance: Instance, key: str, model: str = MODEL, text: str = "Hi", **extra):
    return instance.openai(key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **extra
    )


def test_a_cooldown_started_on_one_is_honoured_by_the_other(pair, upstreams):
    first, second = pair
    oai, groq = upstreams
    oai.reset()
    groq.reset()
    oai.push(Script(fault=Fault.http_status(429, "slow down", retry_after=120)))
    answer = ask(first, "sk-free", "duo")  # OpenAI's 429, then Groq answers
    assert answer.choices[0].message.content == "From Groq."
    assert answer.provider == "Groq"
    answer = ask(second, "sk-free", "duo")  # the other instance skips OpenAI at once
    assert answer.choices[0].message.content == "From Groq."
    assert len(oai.requests_to("/chat/completions")) == 1
    assert len(groq.requests_to("/chat/completions")) == 2
    providers = httpx.get(
        second.url + "/v1/providers", headers={"Authorization": "Bearer sk-free"}, timeout=10
    ).json()
    (health,) = [p for p in providers["data"] if p["id"] == "OpenAI"]
    assert health["cooling_down"] and health["cooldown_remaining"] > 60
    # an answer from OpenAI (a single route is always tried) ends the shared cooldown
    assert ask(second, "sk-free").choices[0].message.content == "From OpenAI."
    ask(first, "sk-free", "duo")
    assert len(oai.requests_to("/chat/completions")) == 3


def test_a_conversation_started_on_one_continues_on_the_other(pair, upstreams, shared_redis):
    first, second = pair
    oai, _ = upstreams
    headers = {"Authorization": "Bearer sk-free"}
    conversation = httpx.post(
        first.url + "/v1/conversations", headers=headers, json={}, timeout=10
    ).json()["id"]
    ask(first, "sk-free", text="First turn", extra_body={"conversation_id": conversation})
    assert redis.Redis.from_url(shared_redis.url).llen(f"llmplex:conv:{conversation}:messages") == 2
    stream = second.openai("sk-free").chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Second turn"}],
        stream=True,
        extra_body={"conversation_id": conversation},
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "From OpenAI."
    sent = oai.requests_to("/chat/completions")[-1].json["messages"]
    assert [m["content"] for m in sent] == ["First turn", "From OpenAI.", "Second turn"]
    stored = httpx.get(
        f"{first.url}/v1/conversations/{conversation}", headers=headers, timeout=10
    ).json()
    assert [m["content"] for m in stored["messages"]] == [
        "First turn",
        "From OpenAI.",
        "Second turn",
        "From OpenAI.",
    ]
    # stored Responses too: previous_response_id on the other instance
    response = first.openai("sk-free").responses.create(model=MODEL, input="Remember me")
    follow = second.openai("sk-free").responses.create(
        model=MODEL, input="And now?", previous_response_id=response.id
    )
    assert follow.output_text == "From OpenAI."
    sent = oai.requests_to("/chat/completions")[-1].json["messages"]
    assert [m["content"] for m in sent] == ["Remember me", "From OpenAI.", "And now?"]


def test_rpm_holds_across_both_instances(pair):
    first, second = pair
    for n in range(4):
        ask(first if n % 2 else second, "sk-rpm4")
    for instance in (first, second):  # the 5th, wherever it lands
        with pytest.raises(openai.RateLimitError) as info:
            ask(instance, "sk-rpm4")
        error = info.value
        assert error.code == "rate_limit_exceeded" and "rpm4" in error.message
        assert 1 <= int(error.response.headers["retry-after"]) <= 60
        assert error.response.headers["x-ratelimit-limit-requests"] == "4"
        assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert "sk-rpm4" not in error.message
    # other keys are not affected
    assert ask(second, "sk-free").choices[0].message.content == "From OpenAI."


def test_tpm_counts_the_answers_tokens_across_instances(pair):
    first, second = pair
    answer = ask(first, "sk-tpm1")  # admitted: nothing used yet
    assert answer.usage.total_tokens > 1
    with pytest.raises(openai.RateLimitError) as info:
        ask(second, "sk-tpm1")
    assert info.value.code == "rate_limit_exceeded" and "TPM" in info.value.message
    assert info.value.response.headers["x-ratelimit-remaining-tokens"] == "0"


def test_tpm_counts_streamed_answers(pair, shared_redis):
    first, second = pair
    redis.Redis.from_url(shared_redis.url).delete("llmplex:limit:tpm1:tokens")
    stream = first.openai("sk-tpm1").chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    with pytest.raises(openai.RateLimitError):
        ask(second, "sk-tpm1")


def test_tpm_counts_anthropic_messages_and_responses(pair):
    first, second = pair
    message = first.anthropic("sk-tpm-anthropic").messages.create(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.usage.output_tokens > 0
    with pytest.raises(anthropic.RateLimitError):
        second.anthropic("sk-tpm-anthropic").messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
        )
    events = list(
        first.openai("sk-tpm-responses").responses.create(model=MODEL, input="Hi", stream=True)
    )
    assert events[-1].type == "response.completed"
    with pytest.raises(openai.RateLimitError):
        second.openai("sk-tpm-responses").responses.create(model=MODEL, input="Hi")


def test_model_allow_list_hashed_keys_and_wrong_keys(pair):
    first, second = pair
    assert ask(first, "sk-openai-only").choices[0].message.content == "From OpenAI."
    # a bare name counts by the routes it takes: OpenAI's only
    assert ask(first, "sk-openai-only", "gpt-4o-mini").provider == "OpenAI"
    for model in ("groq:llama-3.1-8b-instant", "duo"):  # duo may reach Groq
        with pytest.raises(openai.PermissionDeniedError) as info:
            ask(second, "sk-openai-only", model)
        assert info.value.code == "model_not_allowed" and model in info.value.message
        assert "sk-openai-only" not in info.value.message
    with pytest.raises(openai.PermissionDeniedError):
        second.openai("sk-openai-only").embeddings.create(model="groq:some-embedder", input="x")
    assert ask(second, KEY_HASHED).choices[0].message.content == "From OpenAI."
    with pytest.raises(openai.AuthenticationError) as info:
        ask(first, "sk-wrong")
    assert info.value.code == "invalid_api_key" and "sk-wrong" not in info.value.message
    assert first.openai("sk-openai-only").models.list().data  # listing: no model check


def test_anthropic_messages_share_the_keys_limits(pair):
    first, second = pair
    for n, instance in enumerate((first, second)):
        client = instance.anthropic("sk-messages")
        message = client.messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": f"Hi {n}"}]
        )
        assert message.content[0].text == "From OpenAI."
    client = first.anthropic("sk-messages")
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
        )
    assert int(info.value.response.headers["retry-after"]) >= 1
    with pytest.raises(anthropic.AuthenticationError):
        first.anthropic("sk-nope").messages.create(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
        )


def test_concurrent_writers_on_both_instances_lose_no_turn(pair):
    first, second = pair
    headers = {"Authorization": "Bearer sk-free"}
    conversation = httpx.post(
        second.url + "/v1/conversations", headers=headers, json={}, timeout=10
    ).json()["id"]
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(3):
                ask(
                    first if (n + i) % 2 else second,
                    "sk-free",
                    text=f"turn {n}-{i}",
                    extra_body={"conversation_id": conversation},
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    messages = httpx.get(
        f"{first.url}/v1/conversations/{conversation}", headers=headers, timeout=10
    ).json()["messages"]
    users = sorted(m["content"] for m in messages if m["role"] == "user")
    assert users == sorted(f"turn {n}-{i}" for n in range(8) for i in range(3))
    assert len(messages) == 48
    assert all(
        a["role"] == "user" and b["role"] == "assistant"
        for a, b in zip(messages[::2], messages[1::2], strict=True)
    )


def test_kill_9_of_one_instance_loses_no_acknowledged_turn(tmp_path, upstreams):
    oai, groq = upstreams
    with RedisServer(tmp_path, appendonly=True) as server:
        env = environment(tmp_path, KEYS, oai, groq, server.url)
        first, second = Instance(env, tmp_path / "a.log"), Instance(env, tmp_path / "b.log")
        try:
            headers = {"Authorization": "Bearer sk-free"}
            conversation = httpx.post(
                first.url + "/v1/conversations", headers=headers, json={}, timeout=10
            ).json()["id"]
            for i in range(5):
                ask(
                    first, "sk-free", text=f"turn {i}", extra_body={"conversation_id": conversation}
                )
            # a slow answer in flight when the instance dies
            oai.push(Script("word " * 200, delay=0.05))
            stream = first.openai("sk-free").chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "dying"}],
                stream=True,
                extra_body={"conversation_id": conversation},
            )
            next(iter(stream))
            first.kill()
            with pytest.raises((openai.APIError, httpx.HTTPError)):
                for _ in stream:
                    pass
            stored = httpx.get(
                f"{second.url}/v1/conversations/{conversation}", headers=headers, timeout=10
            ).json()["messages"]
            assert [m["content"] for m in stored[:10]] == [
                text for i in range(5) for text in (f"turn {i}", "From OpenAI.")
            ]
            assert "dying" not in [m["content"] for m in stored]  # never acknowledged
            # the survivor continues it
            ask(second, "sk-free", text="after", extra_body={"conversation_id": conversation})
            sent = oai.requests_to("/chat/completions")[-1].json["messages"]
            assert [m["content"] for m in sent][-3:] == ["turn 4", "From OpenAI.", "after"]
        finally:
            first.stop()
            second.stop()


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_redis_stopped_mid_run_then_back(tmp_path, upstreams, policy):
    oai, groq = upstreams
    server = RedisServer(tmp_path, password=PASSWORD).start()
    config = KEYS + f'\n[state]\non_error = "{policy}"\ntimeout = 2\n'
    instance = Instance(
        environment(tmp_path, config, oai, groq, server.url), tmp_path / "serve.log"
    )
    headers = {"Authorization": "Bearer sk-rpm4"}
    try:
        assert ask(instance, "sk-rpm4").choices[0].message.content == "From OpenAI."
        server.stop()
        if policy == "closed":
            with pytest.raises(openai.InternalServerError) as info:
                ask(instance, "sk-rpm4")
            error = info.value
            assert error.status_code == 503 and error.code == "state_backend_unavailable"
            assert "state backend" in error.message and PASSWORD not in error.message
            assert error.response.headers["x-should-retry"] == "true"
        else:
            for _ in range(2):  # served, counted in this process meanwhile
                assert ask(instance, "sk-rpm4").choices[0].message.content == "From OpenAI."
            assert instance.text().count("unreachable or failed") == 1  # warned once
        # conversations cannot fall open
        reply = httpx.post(instance.url + "/v1/conversations", headers=headers, json={}, timeout=10)
        assert reply.status_code == 503
        assert reply.json()["error"]["code"] == "state_backend_unavailable"
        server.start()  # back on the same port: served again, no restart
        assert ask(instance, "sk-rpm4").choices[0].message.content == "From OpenAI."
        assert (
            httpx.post(
                instance.url + "/v1/conversations", headers=headers, json={}, timeout=10
            ).status_code
            == 200
        )
        if policy == "open":
            assert "reachable again" in instance.text()
    finally:
        instance.stop()
        server.stop()
    assert PASSWORD not in instance.text()


def test_serve_refuses_an_unusable_state_url_without_showing_its_password(tmp_path, upstreams):
    env = environment(tmp_path, "", *upstreams, f"http://:{PASSWORD}@127.0.0.1:1/0")
    result = subprocess.run(
        [LLMPLEX, "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "redis://" in result.stderr and PASSWORD not in result.stderr + result.stdout
