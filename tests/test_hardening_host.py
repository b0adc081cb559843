"""The server's front door: the Host header check against DNS rebinding (a web page that
points a name of its own at 127.0.0.1 must not be able to drive the server), and the cap
on a request's ``provider`` list. Real sockets: uvicorn on an ephemeral port, the
emulators behind it."""

from __future__ import annotations

import json
import socket
from contextlib import contextmanager

import httpx
import openai
import pytest

from llmplex.server import ServerThread, create_app
from llmplex.server.emulated import EmulatedServices, emulated_client
from llmplex.server.middleware import LOOPBACK_HOSTS, allowed_hosts_for, is_loopback
from llmplex.testing import Script

ANSWER = "Hello from behind the Host check."
MESSAGES = [{"role": "user", "content": "Hi"}]
CHAT = {"model": "openai:gpt-4o-mini", "messages": MESSAGES}


@pytest.fixture(scope="module")
def services():
    with EmulatedServices(["openai"], script=lambda name: Script(ANSWER)) as served:
        yield served


@pytest.fixture
def emulator(services):
    emulator = services.emulators["openai"]
    emulator.reset()
    return emulator


@contextmanager
def running(services, **app_options):
    with ServerThread(create_app(emulated_client(services), **app_options)) as server:
        yield server


@pytest.fixture
def server(services):
    with running(services) as served:
        yield served


def request(server, method, path, host, **kwargs):
    kwargs.setdefault("timeout", 15)
    headers = {**kwargs.pop("headers", {}), "Host": host}
    return httpx.request(method, server.url + path, headers=headers, **kwargs)


def refused(response):
    assert response.status_code == 403, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error = body["error"]
    assert error["code"] == "host_not_allowed" and error["type"] == "invalid_request_error"
    assert "DNS rebinding" in error["message"]
    assert response.headers["x-should-retry"] == "false"
    return error


# -- the check --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:1337",
        "EVIL.example",
        "localhost.evil.example",
        "127.0.0.1.nip.io:1337",
        "[::1].evil.example",
        "[::1]x",
        "localhost:x",
        "192.168.1.10",
        "0.0.0.0:1337",
        "",
    ],
)
def test_a_foreign_host_is_refused_before_anything_runs(server, emulator, host):
    error = refused(request(server, "POST", "/v1/chat/completions", host, json=CHAT))
    if host:
        assert repr(host) in error["message"]
    assert not emulator.requests  # nothing reached the upstream


@pytest.mark.parametrize(
    "path",
    [
        "/health",
        "/v1/models",
        "/v1/providers",
        "/openapi.json",
        "/docs",
        "/v1/conversations/conv_x",
        "/nowhere",
    ],
)
def test_every_path_is_protected_health_and_docs_too(server, path):
    refused(request(server, "GET", path, "evil.example:1337"))


def test_the_check_comes_before_the_body_limit_auth_and_cors(services, emulator):
    with running(
        services, api_keys=["sk-server"], max_body_bytes=100, cors_origins=["*"]
    ) as server:
        big = {"messages": [{"role": "user", "content": "x" * 1000}]}
        refused(request(server, "POST", "/v1/chat/completions", "evil.example", json=big))
        refused(request(server, "GET", "/v1/models", "evil.example"))  # not a 401
        preflight = request(
            server,
            "OPTIONS",
            "/v1/chat/completions",
            "evil.example",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        refused(preflight)
        assert "access-control-allow-origin" not in preflight.headers
        # the same requests under the server's own name get their usual answers
        local = f"127.0.0.1:{server.port}"
        assert request(server, "GET", "/v1/models", local).status_code == 401
        assert request(server, "POST", "/v1/chat/completions", local, json=big).status_code == 413
    assert not emulator.requests


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:1337",
        "LocalHost:1",
        "localhost.",
        "127.0.0.1",
        "127.0.0.1:{port}",
        "[::1]",
        "[::1]:{port}",
        "127.0.0.2:{port}",
    ],
)
def test_loopback_names_pass(server, emulator, host):
    host = host.format(port=server.port)
    assert request(server, "GET", "/health", host).json()["status"] == "ok"
    response = request(server, "POST", "/v1/chat/completions", host, json=CHAT)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == ANSWER


def test_the_official_client_passes_by_default(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as oai:
        completion = oai.chat.completions.create(**CHAT)
        assert completion.choices[0].message.content == ANSWER
        stream = oai.chat.completions.create(**CHAT, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream) == ANSWER
    with openai.OpenAI(
        base_url=f"http://localhost:{server.port}/v1", api_key="x", max_retries=0
    ) as oai:
        assert oai.models.list().data


def test_configured_names_pass_and_others_still_do_not(services, emulator):
    with running(services, allowed_hosts=["llm.home.arpa", "Box.Lan."]) as server:
        for host in (
            "llm.home.arpa",
            "llm.home.arpa:8443",
            "box.lan",
            "BOX.LAN:1",
            "localhost:9",
            f"127.0.0.1:{server.port}",
        ):
            response = request(server, "POST", "/v1/chat/completions", host, json=CHAT)
            assert response.status_code == 200, (host, response.text)
        for host in ("evil.example", "sub.llm.home.arpa", "llm.home.arpa.evil.example"):
            refused(request(server, "GET", "/health", host))
    assert len(emulator.requests) == 6


def test_a_configured_ipv6_address_passes_with_or_without_brackets(services):
    for name in ("fd00::5", "[fd00::5]"):
        with running(services, allowed_hosts=[name]) as server:
            assert request(server, "GET", "/health", "[fd00::5]:1337").status_code == 200
            refused(request(server, "GET", "/health", "[fd00::6]:1337"))


def test_star_turns_the_check_off(services, emulator):
    with running(services, allowed_hosts=["*"]) as server:
        for host in ("evil.example", "anything:1", "10.0.0.1"):
            assert request(server, "GET", "/health", host).status_code == 200
        response = request(server, "POST", "/v1/chat/completions", "evil.example", json=CHAT)
        assert response.status_code == 200
    assert emulator.requests


def test_a_request_without_host_header_passes(server):
    """Only HTTP/1.0 may leave it out (no browser does): nothing to rebind."""
    with socket.create_connection((server.host, server.port), timeout=15) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw
    assert json.loads(body)["status"] == "ok"


def test_allowed_hosts_must_be_a_list():
    with EmulatedServices(["openai"]) as services, pytest.raises(TypeError):
        create_app(emulated_client(services), allowed_hosts="localhost")


# -- what the CLI passes for a bind address -----------------------------------------------------


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_allowed_hosts_for_a_bind_address():
    assert allowed_hosts_for("127.0.0.1") == list(LOOPBACK_HOSTS)
    assert allowed_hosts_for("::1", ["box.lan"]) == [*LOOPBACK_HOSTS, "box.lan"]
    # bound elsewhere: clients come under names the server cannot know, unless given
    assert allowed_hosts_for("0.0.0.0") == ["*"]
    assert allowed_hosts_for("::") == ["*"]
    assert allowed_hosts_for("0.0.0.0", ["llm.example.com"]) == [*LOOPBACK_HOSTS, "llm.example.com"]
    assert allowed_hosts_for("192.168.1.5", ["box.lan"]) == [
        *LOOPBACK_HOSTS,
        "box.lan",
        "192.168.1.5",
    ]


# -- the provider list ------------------------------------------------------------------------


def test_a_long_provider_list_is_a_clean_400(server, emulator):
    for providers in (["OpenAI"] * 9, ["mistral"] * 1100):
        response = request(
            server,
            "POST",
            "/v1/chat/completions",
            "localhost",
            json={**CHAT, "model": "gpt-4o-mini", "provider": providers},
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "provider" and error["type"] == "invalid_request_error"
        assert (
            f"has {len(providers)} entries" in error["message"] and "at most 8" in error["message"]
        )
    assert not emulator.requests
    response = request(
        server,
        "POST",
        "/v1/chat/completions",
        "localhost",
        json={**CHAT, "model": "gpt-4o-mini", "provider": ["OpenAI"] * 8},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "Hi"}),
        ("/v1/responses", {"model": "gpt-4o-mini", "input": "Hi"}),
    ],
)
def test_the_other_model_routes_cap_the_provider_list_too(server, emulator, path, body):
    response = request(server, "POST", path, "localhost", json={**body, "provider": ["OpenAI"] * 9})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "provider" and error["code"] == "invalid_value"
    assert "has 9 entries" in error["message"] and "at most 8" in error["message"]
    assert not emulator.requests


def test_max_providers_is_configurable(services, emulator):
    with running(services, max_providers=2) as server:
        body = {**CHAT, "model": "gpt-4o-mini"}
        response = httpx.post(
            server.url + "/v1/chat/completions",
            timeout=15,
            json={**body, "provider": ["OpenAI", "Groq", "OpenAI"]},
        )
        assert response.status_code == 400 and response.json()["error"]["param"] == "provider"
        assert (
            httpx.post(
                server.url + "/v1/chat/completions",
                timeout=15,
                json={**body, "provider": ["OpenAI", "Groq"]},
            ).status_code
            == 200
        )
        # a single name is not a list
        assert (
            httpx.post(
                server.url + "/v1/chat/completions", timeout=15, json={**body, "provider": "OpenAI"}
            ).status_code
            == 200
        )
    for value in (0, -1, True, 2.5):
        with pytest.raises(ValueError):
            create_app(emulated_client(services), max_providers=value)
