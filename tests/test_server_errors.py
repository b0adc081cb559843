"""What HTTP clients are told when the server cannot answer, seen through the official
``openai`` SDK with its default retries: a configuration error (no upstream key) is a 500
the SDK does not retry (``x-should-retry: false``), worded in HTTP terms, and no message
shows where the upstreams or proxies are (the server log does)."""

from __future__ import annotations

import logging
import socket

import httpx
import openai
import pytest

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.emulators.openai import OpenAIEmulator
from llmplex.providers.endpoints import ENDPOINTS
from llmplex.routing import Router
from llmplex.server import ServerThread, create_app
from llmplex.testing import Fault, Script, serve
from llmplex.testing.hostile import hostile

MESSAGES = [{"role": "user", "content": "Hi"}]
DUO = {"duo": ["openai:gpt-4o-mini", "groq:llama-3.1-8b-instant"]}


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    for endpoint in ENDPOINTS.values():
        monkeypatch.delenv(endpoint.api_key_env, raising=False)
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_of(upstream) -> str:
    return upstream.url.rsplit(":", 1)[1]


class Counting:
    """An ``openai.OpenAI`` client on ``url`` that counts the requests it sends (its
    retries included), with the SDK's default retry policy unless told."""

    def __init__(self, url: str, **options) -> None:
        self.sent = 0
        http = httpx.Client(event_hooks={"request": [self._count]})
        self.client = openai.OpenAI(
            base_url=url + "/v1", api_key="unused", http_client=http, **options
        )

    def _count(self, request: httpx.Request) -> None:
        self.sent += 1

    def create(self, **body):
        return self.client.chat.completions.create(messages=MESSAGES, **body)


@pytest.fixture
def caller_on():
    """``caller_on(url, **options)``: a :class:`Counting` client, closed after the test."""
    made: list[Counting] = []

    def make(url: str, **options) -> Counting:
        made.append(Counting(url, **options))
        return made[-1]

    yield make
    for caller in made:
        caller.client.close()


def app_for(provider_options, aliases=None):
    client = AsyncClient(
        router=Router(aliases=aliases or {}), store=MemoryStore(), provider_options=provider_options
    )
    return create_app(client)


def test_a_provider_without_a_key_is_a_500_the_sdk_does_not_retry(caller_on):
    with ServerThread(app_for({})) as server:
        caller = caller_on(server.url)
        assert caller.client.max_retries == 2  # the SDK's default
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as info:
                list(caller.create(model="openai:gpt-4o-mini", stream=stream) or ())
            error = info.value
            assert error.status_code == 500
            assert error.response.headers["x-should-retry"] == "false"
            assert error.body == {
                "message": "the server has no API key configured for provider OpenAI",
                "type": "server_error",
                "param": None,
                "code": "provider_not_configured",
            }
        assert caller.sent == 2  # one per call: no retry


def test_no_provider_configured_for_any_route_and_it_stays_so(caller_on):
    with ServerThread(app_for({}, DUO)) as server:
        caller = caller_on(server.url)
        for _ in range(2):  # the second time too: a missing key is not a cooldown (503)
            with pytest.raises(openai.InternalServerError) as info:
                caller.create(model="duo")
            assert info.value.body["code"] == "provider_not_configured"
            assert info.value.body["message"] == (
                "no provider is configured on this server "
                "for model 'duo': it has no API key for "
                "OpenAI, Groq"
            )
            assert "api_key=" not in info.value.body["message"]
        assert caller.sent == 2


def test_a_refused_upstream_key_is_a_502_not_retried(caller_on):
    with (
        serve(OpenAIEmulator(api_keys={"sk-right"})) as upstream,
        ServerThread(
            app_for({"OpenAI": {"base_url": upstream.url + "/v1", "api_key": "sk-wrong"}})
        ) as server,
    ):
        caller = caller_on(server.url)
        with pytest.raises(openai.APIStatusError) as info:
            caller.create(model="openai:gpt-4o-mini")
        assert info.value.status_code == 502
        assert info.value.response.headers["x-should-retry"] == "false"
        assert info.value.body["code"] == "upstream_auth_error"
        assert info.value.body["message"].startswith(
            "OpenAI: HTTP 401: the upstream service refused the server's credentials"
        )
        assert "sk-wrong" not in info.value.body["message"]
        assert caller.sent == 1 and len(upstream.requests) == 1


def leaks(text: str, port: int | str) -> bool:
    return "127.0.0.1" in text or str(port) in text


def test_connection_errors_hide_the_upstream_address(caplog, caller_on):
    port = free_port()  # nothing listens there
    options = {"OpenAI": {"base_url": f"http://127.0.0.1:{port}/v1", "api_key": "sk-x"}}
    caplog.set_level(logging.INFO, logger="llmplex.server")
    with ServerThread(app_for(options, DUO)) as server:
        caller = caller_on(server.url, max_retries=0)
        # in a fallback: one line per provider, the one without a key grouped
        with pytest.raises(openai.APIStatusError) as info:
            caller.create(model="duo")
        error = info.value.body
        # the status and code of the provider that could answer (a key is no news)
        assert info.value.status_code == 502 and error["code"] == "upstream_connection_error"
        assert error["message"].splitlines() == [
            "all providers failed for model 'duo':",
            ("  OpenAI: cannot connect to [address hidden]: Connect call failed [address hidden]"),
            "  the server has no API key configured for: Groq",
        ]
        assert "x-should-retry" not in info.value.response.headers  # it may come back
        # alone (a single route is tried even while cooling down)
        with pytest.raises(openai.APIStatusError) as info:
            caller.create(model="openai:gpt-4o-mini")
        error = info.value.body
        assert info.value.status_code == 502 and error["code"] == "upstream_connection_error"
        assert error["message"].startswith("OpenAI: cannot connect to [address hidden]")
        assert not leaks(error["message"], port)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"http://127.0.0.1:{port}" in logged  # the operator sees where


def test_a_proxy_address_is_hidden_too(caplog, caller_on):
    proxy = free_port()
    caplog.set_level(logging.INFO, logger="llmplex.server")
    with (
        serve(OpenAIEmulator(Script("hi"))) as upstream,
        ServerThread(
            app_for(
                {
                    "OpenAI": {
                        "base_url": upstream.url + "/v1",
                        "api_key": "sk-x",
                        "proxy": f"http://user:pw@127.0.0.1:{proxy}",
                    }
                }
            )
        ) as server,
        pytest.raises(openai.APIStatusError) as info,
    ):
        caller_on(server.url, max_retries=0).create(model="openai:gpt-4o-mini")
    message = info.value.body["message"]
    print(message)
    assert message.startswith(
        "OpenAI: cannot connect to [address hidden] through proxy [address hidden]"
    ), message
    assert not leaks(message, proxy) and not leaks(message, port_of(upstream))
    assert "pw" not in message
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"127.0.0.1:{proxy}" in logged and "pw" not in logged


def test_hostile_upstreams_leak_no_address(caplog, caller_on):
    caplog.set_level(logging.INFO, logger="llmplex.server")
    with hostile() as upstream:
        options = {
            "OpenAI": {"base_url": upstream.url + "/v1", "api_key": "sk-hostile", "timeout": 0.5}
        }
        with ServerThread(app_for(options)) as server:
            caller = caller_on(server.url, max_retries=0)
            # "silent" never answers: a timeout; "echo" is a 500 echoing the request's
            # headers (Host: 127.0.0.1:<port>); "cut" closes the connection mid-stream
            for behaviour, status in (("silent", 504), ("echo", 502)):
                with pytest.raises(openai.APIStatusError) as info:
                    caller.create(model=f"openai:{behaviour}")
                assert info.value.status_code == status, behaviour
                assert not leaks(info.value.body["message"], port_of(upstream)), info.value.body[
                    "message"
                ]
            with pytest.raises(openai.APIError) as info:
                list(caller.create(model="openai:cut", stream=True))
            assert not leaks(str(info.value.message), port_of(upstream)), info.value.message
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"127.0.0.1:{port_of(upstream)}" in logged


def test_an_upstream_failure_without_an_address_is_unchanged(caller_on):
    with (
        serve(
            OpenAIEmulator(Script(fault=Fault.http_status(500, "Internal meltdown")))
        ) as upstream,
        ServerThread(
            app_for({"OpenAI": {"base_url": upstream.url + "/v1", "api_key": "sk-x"}})
        ) as server,
    ):
        caller = caller_on(server.url)
        with pytest.raises(openai.InternalServerError) as info:
            caller.create(model="openai:gpt-4o-mini")
        assert info.value.body["message"] == "OpenAI: HTTP 500: Internal meltdown"
        assert caller.sent == 3  # a 502 may pass: the SDK retries it, as it should
