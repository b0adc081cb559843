"""Metrics, request ids, log lines and traces of the server, through a real
``llmplex serve`` (or the app on a real port) in front of the OpenAI emulator, with the
official ``openai`` SDK as the client."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from served import Served, clean_environ

from llmplex import AsyncClient
from llmplex.routing import Attempt, Router, RouterObserver
from llmplex.server import ServerThread, create_app
from llmplex.testing import Fault, Script

MESSAGES = [{"role": "user", "content": "Say three words"}]
KEY = "sk-test-secret-0123456789"


def openai_env(emulator, home, *providers: str) -> dict[str, str]:
    """``providers`` (OpenAI-compatible names) all pointed at the one OpenAI emulator."""
    extra = {}
    for name in providers:
        extra[f"LLMPLEX_{name.upper()}_BASE_URL"] = emulator.url + "/v1"
        extra[f"{name.upper()}_API_KEY"] = KEY
    return clean_environ(home, **extra)


def metrics(url: str, **kwargs) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``GET /metrics``: (name, sorted labels) -> value."""
    response = httpx.get(url + "/metrics", timeout=15, **kwargs)
    assert response.status_code == 200, response.text
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_a_known_sequence(openai_emulator, tmp_path):
    openai_emulator.script = Script("one two three")
    env = openai_env(openai_emulator, tmp_path, "OpenAI", "Groq")
    with (
        Served(tmp_path, env=env) as server,
        openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as client,
    ):
        plain = client.chat.completions.create(model="openai:gpt-4o-mini", messages=MESSAGES)
        chunks = list(
            client.chat.completions.create(
                model="openai:gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        streamed = chunks[-1].usage
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="no-such-model-anywhere", messages=MESSAGES)
        # OpenAI fails (500), Groq takes over: an upstream error and a fallback
        openai_emulator.push(Script(fault=Fault.http_status(500, "boom")))
        fallen = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_body={"provider": ["OpenAI", "Groq"]}
        )
        assert fallen.choices[0].message.content == "one two three"
        samples = metrics(server.url)

    chat = "/v1/chat/completions"
    assert value(samples, "llmplex_requests_total", route=chat, method="POST", status="200") == 3
    assert value(samples, "llmplex_requests_total", route=chat, method="POST", status="404") == 1
    assert (
        value(samples, "llmplex_requests_total", route="/health", method="GET", status="200") >= 1
    )  # the start-up probe(s)
    # tokens as the emulator reported them
    assert plain.usage.prompt_tokens > 0 and streamed.completion_tokens == 3
    assert (
        value(samples, "llmplex_tokens_in_total", provider="OpenAI", model="gpt-4o-mini")
        == plain.usage.prompt_tokens + streamed.prompt_tokens
    )
    assert (
        value(samples, "llmplex_tokens_out_total", provider="OpenAI", model="gpt-4o-mini")
        == plain.usage.completion_tokens + streamed.completion_tokens
    )
    assert (
        value(samples, "llmplex_tokens_in_total", provider="Groq", model="gpt-4o-mini")
        == fallen.usage.prompt_tokens
    )
    assert value(samples, "llmplex_tokens_out_total", provider="Groq", model="gpt-4o-mini") == 3
    # one failed attempt, one fallback, one cooldown
    assert (
        value(
            samples, "llmplex_upstream_errors_total", provider="OpenAI", error="ResponseStatusError"
        )
        == 1
    )
    assert (
        sum(v for (name, _), v in samples.items() if name == "llmplex_upstream_errors_total") == 1
    )
    assert value(samples, "llmplex_fallbacks_total", provider="Groq") == 1
    assert sum(v for (name, _), v in samples.items() if name == "llmplex_fallbacks_total") == 1
    assert value(samples, "llmplex_upstream_attempts_total", provider="OpenAI", outcome="ok") == 2
    assert value(samples, "llmplex_cooldowns_total", provider="OpenAI") == 1
    assert value(samples, "llmplex_providers_cooling_down") == 1
    assert value(samples, "llmplex_active_streams") == 0
    assert value(samples, "llmplex_time_to_first_token_seconds_count", route=chat) == 1
    assert value(samples, "llmplex_request_duration_seconds_count", route=chat) == 4
    assert KEY not in json.dumps([list(k) for k in samples])


def test_metrics_can_need_a_key_or_be_off(openai_emulator, tmp_path):
    env = openai_env(openai_emulator, tmp_path / "keyed", "OpenAI")
    with Served(
        tmp_path / "keyed", "--metrics", "keyed", "--api-key", "server-key", env=env
    ) as server:
        assert httpx.get(server.url + "/metrics").status_code == 401
        assert (
            httpx.get(
                server.url + "/metrics", headers={"Authorization": "Bearer wrong"}
            ).status_code
            == 401
        )
        samples = metrics(server.url, headers={"Authorization": "Bearer server-key"})
        assert (
            value(samples, "llmplex_requests_total", route="/metrics", method="GET", status="401")
            == 2
        )
    env = openai_env(openai_emulator, tmp_path / "off", "OpenAI")
    with Served(tmp_path / "off", "--metrics", "off", env=env) as server:
        assert httpx.get(server.url + "/metrics").status_code == 404


def test_keyed_metrics_take_a_named_key_of_the_config(openai_emulator, tmp_path):
    """``[server.keys.NAME]`` keys open a keyed ``/metrics`` as ``--api-key`` ones do."""
    home = tmp_path / "named"
    env = openai_env(openai_emulator, home, "OpenAI")
    (home / "config" / "config.toml").write_text(
        '[server]\nmetrics = "keyed"\n\n[server.keys.ops]\nkey = "named-metrics-key"\nrpm = 5\n'
    )
    with Served(home, env=env) as server:
        assert httpx.get(server.url + "/metrics").status_code == 401
        wrong = httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        samples = metrics(server.url, headers={"Authorization": "Bearer named-metrics-key"})
        assert (
            value(samples, "llmplex_requests_total", route="/metrics", method="GET", status="401")
            == 2
        )
        assert "named-metrics-key" not in server.log


def test_request_ids_on_answers_errors_streams_and_log_lines(openai_emulator, tmp_path):
    env = openai_env(openai_emulator, tmp_path, "OpenAI")
    with (
        Served(tmp_path, "--access-log", env=env) as server,
        openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as client,
    ):
        given = client.chat.completions.with_raw_response.create(
            model="openai:gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"x-request-id": "client-id_1:a.b-c"},
        )
        assert given.headers["x-request-id"] == "client-id_1:a.b-c"
        made = client.chat.completions.with_raw_response.create(
            model="openai:gpt-4o-mini", messages=MESSAGES
        )
        generated = made.headers["x-request-id"]
        assert re.fullmatch(r"req_[0-9a-f]{24}", generated)
        # an insane one (too long, or characters that do not belong in a log) is replaced
        for insane in ("x" * 129, "a b", "id\u00e9".encode(), "a;rm"):
            response = httpx.get(server.url + "/health", headers={"x-request-id": insane})
            assert re.fullmatch(r"req_[0-9a-f]{24}", response.headers["x-request-id"])
        with pytest.raises(openai.NotFoundError) as error:
            client.chat.completions.create(
                model="no-such-model-anywhere",
                messages=MESSAGES,
                extra_headers={"x-request-id": "the-error"},
            )
        assert error.value.response.headers["x-request-id"] == "the-error"
        with client.chat.completions.with_streaming_response.create(
            model="openai:gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-request-id": "the-stream"},
        ) as streamed:
            assert streamed.headers["x-request-id"] == "the-stream"
            assert "data: [DONE]" in streamed.text()
        # refused before anything else runs (the Host check): still has an id
        refused = httpx.get(server.url + "/health", headers={"Host": "evil.example"})
        assert refused.status_code == 403 and refused.headers["x-request-id"]
    lines = server.log.splitlines()
    for rid, what in (
        ("client-id_1:a.b-c", "POST /v1/chat/completions"),
        (generated, "POST /v1/chat/completions"),
        ("the-error", "404"),
        ("the-stream", "POST /v1/chat/completions"),
    ):
        mine = [line for line in lines if f"[{rid}]" in line]
        assert mine and any(what in line for line in mine), (rid, server.log)
    # every log line of a request carries its id: none of the access lines lacks one
    access = [line for line in lines if "uvicorn.access" in line]
    assert len(access) >= 8 and all("[-]" not in line for line in access), server.log


def test_json_log_lines(openai_emulator, tmp_path):
    env = openai_env(openai_emulator, tmp_path, "OpenAI")
    with Served(tmp_path, "--log-format", "json", "--access-log", env=env) as server:
        httpx.get(server.url + "/v1/models", headers={"x-request-id": "json-line"})
    entries = [json.loads(line) for line in server.log.splitlines() if line.startswith("{")]
    assert entries, server.log
    assert all(set(e) >= {"time", "level", "logger", "message", "request_id"} for e in entries)
    mine = [e for e in entries if e["request_id"] == "json-line"]
    assert len(mine) == 1 and "GET /v1/models" in mine[0]["message"]
    assert mine[0]["logger"] == "uvicorn.access" and mine[0]["level"] == "INFO"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", mine[0]["time"])


def test_traces_a_server_span_per_request_and_a_child_per_attempt(openai_emulator):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    options = {
        name: {"base_url": openai_emulator.url + "/v1", "api_key": KEY}
        for name in ("OpenAI", "Groq")
    }
    client = AsyncClient(provider_options=options, config=False)
    openai_emulator.script = Script("one two three")
    with (
        ServerThread(create_app(client, tracer_provider=provider)) as server,
        openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as sdk,
    ):
        sdk.chat.completions.create(
            model="openai:gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"x-request-id": "traced-1"},
        )
        openai_emulator.push(Script(fault=Fault.http_status(500, "boom")))
        list(
            sdk.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "a secret question"}],
                stream=True,
                extra_body={"provider": ["OpenAI", "Groq"]},
                extra_headers={"x-request-id": "traced-2"},
            )
        )
        httpx.get(server.url + "/v1/models")
    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.name.startswith(("POST ", "GET "))]
    attempts = [s for s in spans if s.name == "llmplex.attempt"]
    assert [s.name for s in servers] == [
        "POST /v1/chat/completions",
        "POST /v1/chat/completions",
        "GET /v1/models",
    ]
    assert len(spans) == len(servers) + len(attempts) == 6
    first, second, models = servers
    assert first.attributes["llmplex.request_id"] == "traced-1"
    assert first.attributes["http.response.status_code"] == 200
    assert first.attributes["http.route"] == "/v1/chat/completions"
    by_parent = {}
    for span in attempts:
        by_parent.setdefault(span.parent.span_id, []).append(span)
    assert [dict(s.attributes) for s in by_parent[first.context.span_id]] == [
        {
            "llmplex.provider": "OpenAI",
            "llmplex.model": "gpt-4o-mini",
            "llmplex.outcome": "ok",
            "llmplex.fallback": False,
            "gen_ai.usage.input_tokens": 3,
            "gen_ai.usage.output_tokens": 3,
        }
    ]
    failed, fallback = by_parent[second.context.span_id]
    assert failed.attributes["llmplex.outcome"] == "error"
    assert failed.attributes["error.type"] == "ResponseStatusError"
    assert not failed.status.is_ok
    assert fallback.attributes["llmplex.provider"] == "Groq"
    assert fallback.attributes["llmplex.fallback"] is True
    assert models.context.span_id not in by_parent  # no upstream attempt
    assert all(
        s.context.trace_id == first.context.trace_id for s in by_parent[first.context.span_id]
    )
    text = json.dumps([s.to_json() for s in spans])
    for secret in (KEY, "secret question", "boom", "one two three"):
        assert secret not in text


async def test_router_observers_see_each_attempt_and_a_failing_one_breaks_nothing(
    openai_emulator, caplog
):
    class Seen(RouterObserver):
        def __init__(self) -> None:
            self.attempts: list[Attempt] = []

        def attempt_ended(self, attempt: Attempt) -> None:
            self.attempts.append(attempt)

    class Broken(RouterObserver):
        def attempt_ended(self, attempt: Attempt) -> None:
            raise RuntimeError("an observer's own bug")

    seen = Seen()
    options = {
        name: {"base_url": openai_emulator.url + "/v1", "api_key": KEY}
        for name in ("OpenAI", "Groq")
    }
    openai_emulator.script = Script("one two three")
    openai_emulator.push(Script(fault=Fault.http_status(500, "boom")))
    async with AsyncClient(
        router=Router(observers=[Broken(), seen]), provider_options=options, config=False
    ) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", provider=["OpenAI", "Groq"], messages=MESSAGES
        )
    assert completion.choices[0].message.content == "one two three"
    assert [
        (a.provider, a.model, a.outcome, a.fallback, a.cooldown, type(a.error).__name__)
        for a in seen.attempts
    ] == [
        ("OpenAI", "gpt-4o-mini", "error", False, True, "ResponseStatusError"),
        ("Groq", "gpt-4o-mini", "ok", True, False, "NoneType"),
    ]
    assert seen.attempts[1].usage.completion_tokens == completion.usage.completion_tokens == 3
    assert all(a.start_ns <= a.end_ns for a in seen.attempts)
    assert sum("router observer" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be a positive integer"),
        (["--metrics", "keyed"], "metrics = 'keyed' needs API keys"),
        (["--workers", "2", "--metrics", "keyed"], "metrics = 'keyed' needs API keys"),
        (["--drain-timeout", "0"], "--drain-timeout must be a positive number"),
        ('[server]\nlog_format = "xml"', "log format must be one of text, json"),
        ('[server]\nmetrics = "secret"', "metrics must be one of public, keyed, off"),
        ("[server]\nworkers = 0", "workers must be a positive integer"),
    ],
)
def test_serve_refuses_bad_settings(tmp_path, args, message):
    import subprocess

    from served import BIN

    env = clean_environ(tmp_path)
    if isinstance(args, str):  # config.toml's [server] table
        (tmp_path / "config" / "config.toml").write_text(args + "\n")
        args = []
    done = subprocess.run(
        [str(BIN / "llmplex"), "serve", "--port", "0", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_traces_to_the_exporter_the_environment_names(openai_emulator, tmp_path, workers):
    env = openai_env(openai_emulator, tmp_path, "OpenAI")
    env["OTEL_TRACES_EXPORTER"] = "console"  # spans as JSON on stdout
    with Served(tmp_path, "--traces", "--workers", workers, env=env) as server:
        for n in range(4):
            httpx.get(server.url + "/v1/models", headers={"x-request-id": f"exported-{n}"})
    assert server.process.returncode == 0
    # every span reached the exporter before the process (each worker) ended
    ids = re.findall(r'"llmplex.request_id": "(exported-\d)"', server.log)
    assert sorted(ids) == [f"exported-{n}" for n in range(4)], server.log
    assert server.log.count('"name": "GET /v1/models"') == 4
