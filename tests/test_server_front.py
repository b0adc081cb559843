"""The routes served in front of the middleware stack (:mod:`llmplex.server.front`: chat
completions, responses and Anthropic's messages) answer exactly as the whole stack does: two apps
over the same emulators, one with its front and one without (``app.front = None``), get
the same requests (good ones, streams, every kind of refusal) and must give the same
statuses, headers and bodies, byte for byte once the answers' own ids and times are set
aside, and count the same metrics."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmplex.server import ServerThread, create_app
from llmplex.server.emulated import EmulatedServices, emulated_client
from llmplex.testing import Script

KEY = "sk-right"
GOOD = {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
JSON = {"content-type": "application/json"}
AUTH = {"authorization": f"Bearer {KEY}"}

CASES: list[tuple[str, dict[str, str], bytes]] = [
    ("good", {**JSON, **AUTH}, httpx.Request("POST", "/", json=GOOD).content),
    (
        "stream",
        {**JSON, **AUTH},
        httpx.Request("POST", "/", json={**GOOD, "stream": True}).content,
    ),
    (
        "stream with usage",
        {**JSON, **AUTH},
        httpx.Request(
            "POST",
            "/",
            json={**GOOD, "stream": True, "stream_options": {"include_usage": True}},
        ).content,
    ),
    ("no key", JSON, httpx.Request("POST", "/", json=GOOD).content),
    ("wrong key", {**JSON, "authorization": "Bearer sk-wrong"}, b"{}"),
    ("bad JSON", {**JSON, **AUTH}, b'{"model": '),
    ("not UTF-8", {**JSON, **AUTH}, b"\x80\x81"),
    ("no body", {**JSON, **AUTH}, b""),
    ("no messages", {**JSON, **AUTH}, b'{"model": "openai:gpt-4o-mini"}'),
    (
        "unknown model",
        {**JSON, **AUTH},
        httpx.Request("POST", "/", json={**GOOD, "model": "nope:nothing"}).content,
    ),
    (
        "override",
        {**JSON, **AUTH},
        httpx.Request("POST", "/", json={**GOOD, "base_url": "http://127.0.0.1:9"}).content,
    ),
    (
        "typo",
        {**JSON, **AUTH},
        httpx.Request("POST", "/", json={**GOOD, "temperatur": 1}).content,
    ),
    (
        "stream_options without stream",
        {**JSON, **AUTH},
        httpx.Request(
            "POST", "/", json={**GOOD, "stream_options": {"include_usage": True}}
        ).content,
    ),
    ("too large", {**JSON, **AUTH}, b'{"model": "' + b"x" * 5000 + b'"}'),
    ("evil host", {**JSON, **AUTH, "host": "evil.example"}, b"{}"),
    ("given id", {**JSON, **AUTH, "x-request-id": "trace-42"}, b"{}"),
    ("insane id", {**JSON, **AUTH, "x-request-id": "bad id!"}, b"{}"),
]

MESSAGE = {
    "model": "openai:gpt-4o-mini",
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "Hi"}],
}
ANTHROPIC_AUTH = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}

#: Anthropic's Messages API (/v1/messages), served in front too
MESSAGES_CASES: list[tuple[str, dict[str, str], bytes]] = [
    ("good", {**JSON, **ANTHROPIC_AUTH}, httpx.Request("POST", "/", json=MESSAGE).content),
    (
        "stream",
        {**JSON, **ANTHROPIC_AUTH},
        httpx.Request("POST", "/", json={**MESSAGE, "stream": True}).content,
    ),
    ("no key", JSON, httpx.Request("POST", "/", json=MESSAGE).content),
    ("bad JSON", {**JSON, **ANTHROPIC_AUTH}, b'{"model": '),
    ("no messages", {**JSON, **ANTHROPIC_AUTH}, b'{"model": "openai:gpt-4o-mini"}'),
    (
        "unknown model",
        {**JSON, **ANTHROPIC_AUTH},
        httpx.Request("POST", "/", json={**MESSAGE, "model": "nope:nothing"}).content,
    ),
    ("too large", {**JSON, **ANTHROPIC_AUTH}, b'{"model": "' + b"x" * 5000 + b'"}'),
    ("evil host", {**JSON, **ANTHROPIC_AUTH, "host": "evil.example"}, b"{}"),
]

RESPONSE = {"model": "openai:gpt-4o-mini", "input": "Hi", "store": False}

#: OpenAI's Responses API (/v1/responses), served in front too
RESPONSES_CASES: list[tuple[str, dict[str, str], bytes]] = [
    ("good", {**JSON, **AUTH}, httpx.Request("POST", "/", json=RESPONSE).content),
    (
        "stream",
        {**JSON, **AUTH},
        httpx.Request("POST", "/", json={**RESPONSE, "stream": True}).content,
    ),
    ("no key", JSON, httpx.Request("POST", "/", json=RESPONSE).content),
    ("bad JSON", {**JSON, **AUTH}, b'{"model": '),
    ("no input", {**JSON, **AUTH}, b'{"model": "openai:gpt-4o-mini"}'),
    (
        "unknown previous",
        {**JSON, **AUTH},
        httpx.Request(
            "POST", "/", json={**RESPONSE, "previous_response_id": "resp_nothing"}
        ).content,
    ),
    ("too large", {**JSON, **AUTH}, b'{"model": "' + b"x" * 5000 + b'"}'),
]

CASES_BY_PATH = {
    "/v1/chat/completions": CASES,
    "/v1/messages": MESSAGES_CASES,
    "/v1/responses": RESPONSES_CASES,
}

_VOLATILE = [
    (re.compile(rb"chatcmpl-[0-9a-f]+"), b"chatcmpl-X"),
    (re.compile(rb'"created":\d+'), b'"created":0'),
    (re.compile(rb"(msg|resp|rs|fc)_[0-9A-Za-z]+"), rb"\1_X"),
    (re.compile(rb'"(created_at|completed_at)":\d+'), rb'"\1":0'),
]


def _normal(body: bytes) -> bytes:
    for pattern, fixed in _VOLATILE:
        body = pattern.sub(fixed, body)
    return body


@pytest.fixture(scope="module")
def served():
    with EmulatedServices(script=lambda name: Script("Hello there, front door.")) as services:
        apps = []
        for front in (True, False):
            app = create_app(
                emulated_client(services), api_keys=[KEY], max_body_bytes=2000, emulated=True
            )
            assert app.front is not None  # on by default (no CORS, no traces)
            if not front:
                app.front = None
            apps.append(app)
        with ServerThread(apps[0]) as fast, ServerThread(apps[1]) as stack:
            yield fast, stack, apps[0]


def _send(
    url: str, headers: dict[str, str], body: bytes, path: str = "/v1/chat/completions"
) -> httpx.Response:
    return httpx.post(url + path, content=body, headers=headers, timeout=15)


@pytest.mark.parametrize(
    ("path", "name"),
    [(path, name) for path, cases in CASES_BY_PATH.items() for name, _, _ in cases],
)
def test_front_answers_as_the_stack_does(served, path, name):
    fast, stack, _ = served
    _, headers, body = next(case for case in CASES_BY_PATH[path] if case[0] == name)
    a, b = _send(fast.url, headers, body, path), _send(stack.url, headers, body, path)
    assert a.status_code == b.status_code, name
    assert _normal(a.content) == _normal(b.content), name
    ignored = {"date", "x-request-id", "content-length", "request-id"}
    assert {k: v for k, v in a.headers.items() if k not in ignored} == {
        k: v for k, v in b.headers.items() if k not in ignored
    }
    for response in (a, b):
        rid = response.headers["x-request-id"]
        if name == "given id":
            assert rid == "trace-42"
        else:
            assert re.fullmatch(r"req_[0-9a-f]{24}", rid)
    assert a.headers["x-request-id"] != b.headers["x-request-id"] or name == "given id"


def _requests_total(url: str) -> dict[tuple[str, str, str], float]:
    text = httpx.get(url + "/metrics", timeout=15).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("llmplex_requests_total", "llmplex_request_duration_seconds_count"):
                labels = sample.labels
                key = (sample.name, labels["route"], labels.get("status", ""))
                out[key] = sample.value
            elif sample.name in (
                "llmplex_time_to_first_token_seconds_count",
                "llmplex_active_streams",
            ):
                out[(sample.name, sample.labels.get("route", ""), "")] = sample.value
    return out


def test_front_counts_the_same_metrics(served):
    fast, stack, _ = served
    before = _requests_total(fast.url), _requests_total(stack.url)
    for path, cases in CASES_BY_PATH.items():
        for _, headers, body in cases:
            _send(fast.url, headers, body, path)
            _send(stack.url, headers, body, path)
    after = _requests_total(fast.url), _requests_total(stack.url)
    grown = [
        {k: v - counts[0].get(k, 0.0) for k, v in counts[1].items()}
        for counts in zip(before, after, strict=True)
    ]
    assert grown[0] == grown[1]
    # and they are counted at all: the chat route's 200s (the three good ones), the
    # refusals before any route ran (Host, size) as "unmatched", two first tokens
    assert grown[0][("llmplex_requests_total", "/v1/chat/completions", "200")] == 3
    assert grown[0][("llmplex_requests_total", "/v1/messages", "200")] == 2
    assert grown[0][("llmplex_requests_total", "/v1/responses", "200")] == 2
    assert grown[0][("llmplex_requests_total", "unmatched", "403")] == 2
    assert grown[0][("llmplex_requests_total", "unmatched", "413")] == 3
    key = ("llmplex_time_to_first_token_seconds_count", "/v1/chat/completions", "")
    assert grown[0][key] == 2
    key = ("llmplex_time_to_first_token_seconds_count", "/v1/messages", "")
    assert grown[0][key] == 1
    assert after[0][("llmplex_active_streams", "", "")] == 0


def test_front_requests_count_for_the_drain():
    """A request the front serves is in flight (the graceful drain waits for it) until
    its answer has ended."""
    slow = Script(chunks=["one ", "two ", "three"], delay=0.5)
    with EmulatedServices(script=lambda name: slow) as services:
        app = create_app(emulated_client(services), emulated=True)
        in_flight = app.front.in_flight
        with ServerThread(app) as server:
            assert in_flight.count == 0
            with httpx.stream(
                "POST",
                server.url + "/v1/chat/completions",
                json={**GOOD, "stream": True},
                timeout=15,
            ) as response:
                pieces = response.iter_bytes()
                first = next(pieces)
                assert b"one" in first
                assert in_flight.count == 1  # two chunks, a second, still to come
                rest = b"".join(pieces)
            assert rest.endswith(b"data: [DONE]\n\n")
            deadline = time.monotonic() + 10
            while in_flight.count and time.monotonic() < deadline:
                time.sleep(0.01)
            assert in_flight.count == 0


def test_front_is_off_with_cors_or_traces():
    """Their middlewares are not repeated in front: such an app serves every request
    through its stack."""
    from opentelemetry.sdk.trace import TracerProvider

    from llmplex import AsyncClient

    assert create_app(AsyncClient()).front is not None
    assert create_app(AsyncClient(), cors_origins=["http://x.example"]).front is None
    assert create_app(AsyncClient(), tracer_provider=TracerProvider()).front is None


@pytest.mark.parametrize(
    "content",
    [{"a": 'é😀\n"', "b": [1, None, 2.5, True]}, {}, [], "text", {"nested": {"x": [{}]}}],
)
def test_json_answers_are_starlettes_json_responses(content):
    from starlette.responses import JSONResponse

    from llmplex.server.fastpath import JSONAnswer

    ours, theirs = JSONAnswer(content), JSONResponse(content)
    assert (ours.status_code, ours.body, ours.raw_headers) == (
        theirs.status_code,
        theirs.body,
        theirs.raw_headers,
    )
