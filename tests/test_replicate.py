"""Replicate provider against the Replicate emulator (real sockets on 127.0.0.1), and the
emulator itself against the official ``replicate`` client."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import aiohttp
import pytest

from llmplex.emulators.replicate import ReplicateEmulator
from llmplex.errors import (
    InvalidRequestError,
    MissingAuthError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseError,
    ResponseStatusError,
    StreamError,
)
from llmplex.events import Usage
from llmplex.providers import Replicate
from llmplex.testing import Fault, Script, cancel_mid_stream, eventually, serve
from llmplex.types import FinishReason

KEY = "r8_test_key_0123456789"
MODEL = "meta/meta-llama-3-8b-instruct"
LLAMA2 = "meta/llama-2-70b-chat"  # the classic names: system_prompt, max_new_tokens, stop_sequences


async def collect(emulator, messages="Hi", **options):
    options.setdefault("api_key", KEY)
    chunks = []
    async for chunk in Replicate.create_async_generator(
        options.pop("model", MODEL), messages, base_url=emulator.url, **options
    ):
        chunks.append(chunk)
    return chunks


def text_of(chunks) -> str:
    return "".join(c for c in chunks if isinstance(c, str))


def creates(emulator):
    return emulator.requests_to("/predictions", "POST")


def cancels(emulator):
    return emulator.requests_to("/cancel", "POST")


def answer(chunks):
    """The chunks without the usage the stream ends with (its counts, checked apart)."""
    return [c for c in chunks if not isinstance(c, Usage)]


# -- answers -------------------------------------------------------------------------------


async def test_plain_answer(replicate_emulator):
    replicate_emulator.script = Script("Once upon a time")
    chunks = await collect(replicate_emulator)
    assert chunks == [
        "Once",
        " upon",
        " a",
        " time",
        FinishReason("stop"),
        Usage(prompt_tokens=1, completion_tokens=4),
    ]
    (schema,) = replicate_emulator.requests_to(f"/v1/models/{MODEL}", "GET")
    assert schema.headers["Authorization"] == f"Bearer {KEY}"
    (create,) = creates(replicate_emulator)
    assert create.path == f"/v1/models/{MODEL}/predictions"
    assert create.json == {"input": {"prompt": "Hi"}}  # no deprecated "stream": true
    assert "Prefer" not in create.headers  # a model that streams is streamed
    assert create.headers["Authorization"] == f"Bearer {KEY}"
    (stream,) = replicate_emulator.requests_to("/v1/streams/", "GET")
    assert stream.headers["Accept"] == "text/event-stream"
    assert not cancels(replicate_emulator)  # finished predictions are not cancelled
    (prediction,) = replicate_emulator.predictions.values()
    assert prediction.status == "succeeded"


async def test_default_model_and_create_async(replicate_emulator):
    replicate_emulator.script = Script("Hello there")
    answer = await Replicate.create_async("", "Hi", api_key=KEY, base_url=replicate_emulator.url)
    assert answer == "Hello there"
    assert creates(replicate_emulator)[0].path == (
        "/v1/models/meta/meta-llama-3-70b-instruct/predictions"
    )


async def test_options_are_sent_and_unknown_options_are_refused(replicate_emulator):
    caller_extra = {"repetition_penalty": 1.1}
    await collect(
        replicate_emulator,
        model=LLAMA2,
        seed=42,
        system_prompt="Be brief.",
        max_tokens=64,
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop=["a", "b"],
        extra_data=caller_extra,
        stream=True,  # a no-op: it streams anyway
    )
    body = creates(replicate_emulator)[0].json
    assert body == {
        "input": {
            "prompt": "Hi",
            "system_prompt": "Be brief.",
            "max_new_tokens": 64,
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": "a,b",
            "seed": 42,
            "repetition_penalty": 1.1,
        },
    }
    assert caller_extra == {"repetition_penalty": 1.1}
    for option in (
        {"web_search": True},
        {"stream": False},
        {"cookies": {"a": "b"}},
        {"max_token": 5},
    ):
        with pytest.raises(InvalidRequestError) as info:
            await collect(replicate_emulator, **option)
        assert info.value.param == next(iter(option))
    assert info.value.suggestions[0] == "max_tokens"
    assert len(creates(replicate_emulator)) == 1


async def test_stop_as_a_string(replicate_emulator):
    await collect(replicate_emulator, model=LLAMA2, stop="</s>")
    assert creates(replicate_emulator)[0].json["input"]["stop_sequences"] == "</s>"


async def test_history_and_system_messages(replicate_emulator):
    messages = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": "How are you?"},
    ]
    await collect(replicate_emulator, messages, model=LLAMA2)
    data = creates(replicate_emulator)[0].json["input"]
    assert data["prompt"] == "User: Hi\nAssistant: Bonjour\nUser: How are you?\nAssistant:"
    assert data["system_prompt"] == "Answer in French."
    # Llama 3 has no system_prompt input: the system text is its template's system turn
    await collect(replicate_emulator, messages, model=MODEL)
    data = creates(replicate_emulator)[1].json["input"]
    assert data["prompt"] == "User: Hi\nAssistant: Bonjour\nUser: How are you?\nAssistant:"
    assert data["prompt_template"].startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nAnswer in French."
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>"
    )
    assert set(data) == {"prompt", "prompt_template"}


async def test_unicode_prompt_arrives_intact(replicate_emulator):
    prompt = "Привет, 世界! 👋🏽 naïve"
    replicate_emulator.script = Script(chunks=["Здравствуй", ", ", "世界 ", "🎉"])
    chunks = await collect(replicate_emulator, prompt)
    assert text_of(chunks) == "Здравствуй, 世界 🎉"
    record = creates(replicate_emulator)[0]
    assert record.json["input"]["prompt"] == prompt
    assert prompt.encode("utf-8") in record.body or json.dumps(prompt).encode() in record.body


async def test_multiline_tokens_are_joined_with_newlines(replicate_emulator):
    replicate_emulator.script = Script(chunks=["Roses", " eyes\n", "\n", "line\r\n", "two\n\nend"])
    chunks = answer(await collect(replicate_emulator))
    # SSE carries line breaks as separate data: lines, which rejoin with "\n"
    assert chunks == ["Roses", " eyes\n", "\n", "line\n", "two\n\nend", FinishReason("stop")]


async def test_logs_events_are_not_answer_text(replicate_emulator):
    replicate_emulator.script = Script("Answer", extra={"logs": ["Loading weights", "ok\nready"]})
    chunks = answer(await collect(replicate_emulator))
    assert chunks == ["Answer", FinishReason("stop")]


async def test_custom_headers_are_sent(replicate_emulator):
    headers = {"X-Trace": "abc", "User-Agent": "my-app/1.0"}
    await collect(replicate_emulator, headers=headers)
    record = creates(replicate_emulator)[0]
    assert record.headers["X-Trace"] == "abc"
    assert record.headers["User-Agent"] == "my-app/1.0"
    assert record.headers["Authorization"] == f"Bearer {KEY}"


async def test_base_url_from_environment(replicate_emulator, monkeypatch):
    monkeypatch.setenv("LLMPLEX_REPLICATE_BASE_URL", replicate_emulator.url)
    answer = await Replicate.create_async(MODEL, "Hi", api_key=KEY)
    assert answer == replicate_emulator.script.reply


def test_sync_create_completion(replicate_emulator):
    replicate_emulator.script = Script("Sync works")
    chunks = list(
        Replicate.create_completion(MODEL, "Hi", api_key=KEY, base_url=replicate_emulator.url)
    )
    assert answer(chunks) == ["Sync", " works", FinishReason("stop")]
    whole = list(
        Replicate.create_completion(
            MODEL, "Hi", stream=False, api_key=KEY, base_url=replicate_emulator.url
        )
    )
    assert answer(whole) == ["Sync works", FinishReason("stop")]


# -- models --------------------------------------------------------------------------------


def test_model_names():
    assert Replicate.get_model("") == "meta/meta-llama-3-70b-instruct"
    assert Replicate.get_model(None) == Replicate.default_model
    assert Replicate.get_model("mistralai/mixtral-8x7b-instruct-v0.1") in Replicate.models
    assert Replicate.get_model("someone/my-model_v1.2") == "someone/my-model_v1.2"
    for bad in ("llama", "a/b/c", "owner/", "/name", "owner/na me", "../x/y"):
        with pytest.raises(ModelNotFoundError, match="Replicate"):
            Replicate.get_model(bad)
    assert Replicate.needs_auth and Replicate.working


# -- auth and secrets ----------------------------------------------------------------------


async def test_missing_key_raises_missing_auth(replicate_emulator):
    with pytest.raises(MissingAuthError, match=r"Replicate.*REPLICATE_API_TOKEN"):
        await collect(replicate_emulator, api_key=None)
    assert replicate_emulator.requests == []  # nothing was sent without a key


async def test_key_from_environment(replicate_emulator, monkeypatch):
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_from_env")
    chunks = answer(await collect(replicate_emulator, api_key=None))
    assert chunks[-1] == FinishReason("stop")
    assert creates(replicate_emulator)[0].headers["Authorization"] == "Bearer r8_from_env"


async def test_each_call_sends_its_own_key_and_headers_are_not_mutated(replicate_emulator):
    # Regression: a shared mutable default `headers` kept one caller's key for the next.
    shared = {"Accept": "application/json"}
    await collect(replicate_emulator, api_key="r8_first", headers=shared)
    await collect(replicate_emulator, api_key="r8_second", headers=shared)
    await collect(replicate_emulator, api_key="r8_third")
    assert shared == {"Accept": "application/json"}
    sent = [r.headers["Authorization"] for r in creates(replicate_emulator)]
    assert sent == ["Bearer r8_first", "Bearer r8_second", "Bearer r8_third"]
    # the stream and cancel requests carry only their own caller's key as well
    streams = replicate_emulator.requests_to("/v1/streams/", "GET")
    assert [r.headers["Authorization"] for r in streams] == sent
    # and a later caller without a key is refused rather than served with an old one
    with pytest.raises(MissingAuthError):
        await collect(replicate_emulator, api_key=None)
    assert len(creates(replicate_emulator)) == 3


async def test_invalid_key_is_missing_auth_and_never_shown():
    secret = "r8_SuperSecretValue_987"
    with serve(ReplicateEmulator(tokens={"r8_valid"})) as emulator:
        with pytest.raises(MissingAuthError) as info:
            await collect(emulator, api_key=secret)
    err = info.value
    assert err.status == 401 and err.provider == "Replicate"
    assert "Replicate" in str(err) and "401" in str(err)
    assert "valid authentication token" in str(err)
    for text in (str(err), repr(err), err.body or "", repr(err.args)):
        assert secret not in text


async def test_key_not_in_stream_errors(replicate_emulator):
    secret = "r8_AnotherSecret_123"
    replicate_emulator.script = Script("x y", fault=Fault.error_event("CUDA out of memory"))
    with pytest.raises(StreamError) as info:
        await collect(replicate_emulator, api_key=secret)
    assert secret not in str(info.value) and secret not in repr(info.value)


# -- HTTP errors ---------------------------------------------------------------------------


async def test_unknown_model_is_model_not_found(replicate_emulator):
    with pytest.raises(ResponseStatusError) as info:
        await collect(replicate_emulator, model="nobody/no-such-model")
    err = info.value
    assert type(err) is ResponseStatusError and err.status == 404
    assert "Model not found" in str(err) and "nobody/no-such-model" in str(err)
    assert str(err).startswith("Replicate:")
    assert "could not be found" in err.body


async def test_extra_models_are_served():
    with serve(ReplicateEmulator(Script("ok"), models={"me/my-llm"})) as emulator:
        assert text_of(await collect(emulator, model="me/my-llm")) == "ok"


async def test_401_fault_is_missing_auth(replicate_emulator):
    replicate_emulator.script = Script(fault=Fault.http_status(401))
    with pytest.raises(MissingAuthError, match=r"Replicate.*401"):
        await collect(replicate_emulator)


async def test_422_from_real_validation(replicate_emulator):
    with pytest.raises(ResponseStatusError) as info:
        await collect(replicate_emulator, temperature="hot")
    err = info.value
    assert err.status == 422 and "Replicate" in str(err)
    assert "input.temperature" in str(err) and "Expected: number" in str(err)
    assert json.loads(err.body)["invalid_fields"][0]["field"] == "input.temperature"


async def test_422_fault_carries_detail(replicate_emulator):
    replicate_emulator.script = Script(
        fault=Fault.http_status(422, "- input.prompt: String length must be at least 1")
    )
    with pytest.raises(ResponseStatusError, match="String length must be at least 1") as info:
        await collect(replicate_emulator)
    assert info.value.status == 422


async def test_429_is_rate_limit_with_retry_after(replicate_emulator):
    replicate_emulator.script = Script(fault=Fault.http_status(429, retry_after=7))
    with pytest.raises(RateLimitError) as info:
        await collect(replicate_emulator)
    err = info.value
    assert err.status == 429 and err.retry_after == 7
    assert "Replicate" in str(err) and "throttled" in str(err)


async def test_500_is_status_error(replicate_emulator):
    replicate_emulator.script = Script(fault=Fault.http_status(500))
    with pytest.raises(ResponseStatusError, match=r"Replicate.*500") as info:
        await collect(replicate_emulator)
    assert info.value.status == 500


async def test_stream_request_failure_cancels_prediction(replicate_emulator):
    replicate_emulator.script = Script(fault=Fault.http_status(503, step="stream"))
    with pytest.raises(ResponseStatusError) as info:
        await collect(replicate_emulator)
    assert info.value.status == 503
    assert len(cancels(replicate_emulator)) == 1


async def test_prediction_without_id():
    with serve(ReplicateEmulator(omit={"id"})) as emulator:
        with pytest.raises(ResponseError, match=r"Replicate.*no id"):
            await collect(emulator)


async def test_prediction_without_stream_url_is_polled(replicate_emulator):
    # A model that streams, but whose prediction gives no stream URL: its output is read
    # from urls.get as it grows.
    replicate_emulator.script = Script(
        "Once upon a time", delay=0.1, extra={"omit": ["urls.stream"]}
    )
    chunks = []
    async for chunk in _QuickPoll.create_async_generator(
        MODEL, "Hi", api_key=KEY, base_url=replicate_emulator.url
    ):
        chunks.append(chunk)
    chunks = answer(chunks)
    assert text_of(chunks) == "Once upon a time" and chunks[-1] == FinishReason("stop")
    assert len(chunks) > 2  # the text came as it grew, not all at the end
    assert len(replicate_emulator.requests_to("/v1/predictions/", "GET")) >= 2
    assert not replicate_emulator.requests_to("/v1/streams/")
    assert not cancels(replicate_emulator)


# -- stream faults -------------------------------------------------------------------------


async def test_error_event_raises_stream_error_with_detail(replicate_emulator):
    replicate_emulator.script = Script(
        "Once upon a time", fault=Fault.error_event("CUDA out of memory", after=2)
    )
    chunks = []
    with pytest.raises(StreamError, match="Replicate: prediction failed: CUDA out of memory"):
        async for chunk in Replicate.create_async_generator(
            MODEL, "Hi", api_key=KEY, base_url=replicate_emulator.url
        ):
            chunks.append(chunk)
    assert chunks == ["Once", " upon"]
    assert not cancels(replicate_emulator)  # a failed prediction has nothing to cancel
    await eventually(lambda: replicate_emulator.open_streams == 0)


async def test_disconnect_is_connection_error_and_cancels(replicate_emulator):
    replicate_emulator.script = Script("Once upon a time", fault=Fault.disconnect(after=1))
    with pytest.raises(ProviderConnectionError, match="Replicate"):
        await collect(replicate_emulator)
    assert len(cancels(replicate_emulator)) == 1


async def test_malformed_event_is_response_error(replicate_emulator):
    replicate_emulator.script = Script("Once upon", fault=Fault.malformed(after=1))
    with pytest.raises(ResponseError, match="Replicate: malformed done event"):
        await asyncio.wait_for(collect(replicate_emulator), 5)


async def test_stall_times_out_and_cancels(replicate_emulator):
    replicate_emulator.script = Script("Once upon", fault=Fault.stall(30, after=1))
    start = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match="Replicate"):
        await collect(replicate_emulator, timeout=0.3)
    assert time.monotonic() - start < 5
    assert len(cancels(replicate_emulator)) == 1
    await eventually(lambda: replicate_emulator.open_streams == 0)


# -- cancellation --------------------------------------------------------------------------


async def test_done_canceled_gives_finish_reason_canceled(replicate_emulator):
    replicate_emulator.script = Script("Once upon", finish_reason="canceled")
    chunks = answer(await collect(replicate_emulator))
    assert chunks == ["Once", " upon", FinishReason("canceled")]


async def test_cancel_from_elsewhere_ends_stream_as_canceled(replicate_emulator):
    replicate_emulator.script = Script("one two three four five six", delay=0.05)
    chunks = []
    async with aiohttp.ClientSession() as http:
        async for chunk in Replicate.create_async_generator(
            MODEL, "Hi", api_key=KEY, base_url=replicate_emulator.url
        ):
            chunks.append(chunk)
            if chunk == "one":
                (prediction,) = replicate_emulator.predictions.values()
                url = f"{replicate_emulator.url}/v1/predictions/{prediction.id}/cancel"
                async with http.post(url, headers={"Authorization": f"Bearer {KEY}"}) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["status"] == "canceled"
    assert chunks[-1] == FinishReason("canceled")
    assert 1 <= len(chunks) - 1 < 6


async def test_early_stop_cancels_prediction(replicate_emulator):
    replicate_emulator.script = Script("one two three four five six", delay=0.05)
    stream = Replicate.create_async_generator(
        MODEL, "Hi", api_key=KEY, base_url=replicate_emulator.url
    )
    async for chunk in stream:
        assert chunk == "one"
        break
    await stream.aclose()
    (cancel,) = cancels(replicate_emulator)
    (prediction,) = replicate_emulator.predictions.values()
    assert cancel.path == f"/v1/predictions/{prediction.id}/cancel"
    assert cancel.headers["Authorization"] == f"Bearer {KEY}"
    assert prediction.status == "canceled"
    await eventually(lambda: replicate_emulator.open_streams == 0)


async def test_task_cancellation_cancels_prediction(replicate_emulator):
    replicate_emulator.script = Script("one two three four five six", delay=0.2)
    await cancel_mid_stream(
        Replicate.create_async_generator(MODEL, "Hi", api_key=KEY, base_url=replicate_emulator.url),
        first_within=5,
    )
    assert len(cancels(replicate_emulator)) == 1
    await eventually(lambda: replicate_emulator.open_streams == 0)


async def test_cancelled_while_the_prediction_is_created_still_cancels_it(replicate_emulator):
    """The create request may already have started the prediction (which bills): it is
    let finish, then cancelled."""
    emu = replicate_emulator
    emu.script = Script("one two three", delay=1)  # still running when cancelled
    emu.latency = 0.3  # every request is answered 0.3 s after it arrives
    task = asyncio.create_task(collect(emu))
    await eventually(lambda: creates(emu))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in emu.requests] == [
        ("GET", MODEL.split("/")[1]),
        ("POST", "predictions"),
        ("POST", "cancel"),
    ]  # no stream was opened
    (prediction,) = emu.predictions.values()
    assert prediction.status == "canceled"


async def test_cancelled_twice_still_cancels_prediction(replicate_emulator):
    # A second cancellation landing during the cancel POST must not cut it short.
    replicate_emulator.script = Script("one two three four five six", delay=0.2)
    await cancel_mid_stream(
        Replicate.create_async_generator(MODEL, "Hi", api_key=KEY, base_url=replicate_emulator.url),
        first_within=5,
        cancels=2,
    )
    assert len(cancels(replicate_emulator)) == 1
    await eventually(lambda: replicate_emulator.open_streams == 0)


def test_sync_early_close_cancels_prediction(replicate_emulator):
    replicate_emulator.script = Script("one two three four five six", delay=0.05)
    stream = Replicate.create_completion(MODEL, "Hi", api_key=KEY, base_url=replicate_emulator.url)
    assert next(stream) == "one"
    stream.close()
    assert len(cancels(replicate_emulator)) == 1
    deadline = time.monotonic() + 3
    while replicate_emulator.open_streams and time.monotonic() < deadline:
        time.sleep(0.01)
    assert replicate_emulator.open_streams == 0


class _QuickCancel(Replicate):
    cancel_timeout = 0.3


class _QuickPoll(Replicate):
    poll_interval = 0.02


async def test_cleanup_is_bounded_when_cancel_hangs():
    """A cancel endpoint that never answers must not hang the caller's cleanup."""
    hung = threading.Event()

    class HangingCancel(ReplicateEmulator):
        async def _cancel(self, request):
            await self.record(request)
            hung.set()
            await asyncio.sleep(3600)  # never answers (ended with the emulator)

    with serve(HangingCancel(Script("one two three", delay=0.05))) as emulator:
        stream = _QuickCancel.create_async_generator(
            MODEL, "Hi", api_key=KEY, base_url=emulator.url
        )
        async for _ in stream:
            break
        start = time.monotonic()
        await stream.aclose()
        assert hung.is_set()
        assert time.monotonic() - start < 2


# -- the emulator's wire format ------------------------------------------------------------


async def test_emulator_wire_format(replicate_emulator):
    replicate_emulator.script = Script(chunks=["Once upon", " eyes\n", "done"])
    url = replicate_emulator.url
    auth = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/v1/models/{MODEL}/predictions",
            headers=auth,
            json={"stream": True, "input": {"prompt": "Hi"}},
        ) as resp:
            assert resp.status == 201
            prediction = await resp.json()
        assert list(prediction) == [
            "id",
            "model",
            "version",
            "input",
            "logs",
            "output",
            "data_removed",
            "error",
            "status",
            "created_at",
            "urls",
            "metrics",
        ]
        assert re.fullmatch(r"[a-z0-9]{26}", prediction["id"])
        assert prediction["status"] == "starting" and prediction["output"] is None
        assert prediction["urls"]["get"] == f"{url}/v1/predictions/{prediction['id']}"
        assert prediction["urls"]["cancel"] == prediction["urls"]["get"] + "/cancel"
        assert prediction["urls"]["stream"].startswith(f"{url}/v1/streams/")

        async with http.get(
            prediction["urls"]["stream"], headers={"Accept": "text/event-stream"}
        ) as resp:
            assert resp.headers["Content-Type"] == "text/event-stream"
            raw = (await resp.read()).decode()
        pattern = (
            r"event: output\nid: (\d+):0\ndata: Once upon\n\n"
            r"event: output\nid: \d+:1\ndata:  eyes\ndata: \n\n"
            r"event: output\nid: \d+:2\ndata: done\n\n"
            r"event: done\nid: \d+:3\ndata: \{\}\n\n"
        )
        assert re.fullmatch(pattern, raw), raw

        async with http.get(prediction["urls"]["get"], headers=auth) as resp:
            final = await resp.json()
        assert final["status"] == "succeeded"
        assert final["output"] == ["Once upon", " eyes\n", "done"]
        # predictions are private to their owner's token; no token at all is a 401
        async with http.get(
            prediction["urls"]["get"], headers={"Authorization": "Bearer someone-else"}
        ) as resp:
            assert resp.status == 404
        async with http.post(
            f"{url}/v1/models/{MODEL}/predictions", json={"input": {"prompt": "Hi"}}
        ) as resp:
            assert resp.status == 401
            assert resp.content_type == "application/problem+json"
            assert await resp.json() == {
                "title": "Unauthenticated",
                "detail": "You did not pass a valid authentication token",
                "status": 401,
            }


async def test_emulator_error_event_format(replicate_emulator):
    replicate_emulator.script = Script(chunks=["a"], fault=Fault.error_event("boom", after=1))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{replicate_emulator.url}/v1/models/{MODEL}/predictions",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"stream": True, "input": {"prompt": "Hi"}},
        ) as resp:
            stream_url = (await resp.json())["urls"]["stream"]
        async with http.get(stream_url) as resp:
            raw = (await resp.read()).decode()
    assert re.fullmatch(
        r"event: output\nid: \d+:0\ndata: a\n\n"
        r'event: error\nid: \d+:1\ndata: \{"detail": "boom"\}\n\n'
        r'event: done\nid: \d+:2\ndata: \{"reason": "error"\}\n\n',
        raw,
    ), raw


# -- the emulator speaks the real protocol: the official client -----------------------------


def test_official_replicate_client_streams_from_emulator(replicate_emulator):
    import httpx
    import replicate

    replicate_emulator.script = Script(chunks=["Once", " upon", " eyes\n", "\n", "end"])
    transport = httpx.HTTPTransport()  # ours, so the test can close its connection pool
    client = replicate.Client(
        api_token=KEY, base_url=replicate_emulator.url, transport=transport, trust_env=False
    )
    try:
        events = list(
            client.stream(MODEL, input={"prompt": "Tell me a story", "max_new_tokens": 8})
        )
        assert "".join(str(event) for event in events) == "Once upon eyes\n\nend"
        assert [e.event.value for e in events] == ["output"] * 5 + ["done"]
        (create,) = creates(replicate_emulator)
        assert create.json == {
            "input": {"prompt": "Tell me a story", "max_new_tokens": 8},
            "stream": True,
        }
        assert create.headers["User-Agent"].startswith("replicate-python/")
        assert create.headers["Authorization"] == f"Bearer {KEY}"

        # its view of a failed prediction: the error event's data is raised
        replicate_emulator.script = Script(chunks=["a"], fault=Fault.error_event("boom", after=1))
        with pytest.raises(RuntimeError, match="boom"):
            list(client.stream(MODEL, input={"prompt": "Hi"}))
        # and of an unknown model: a problem+json 404
        with pytest.raises(replicate.exceptions.ReplicateError) as info:
            list(client.stream("nobody/nothing", input={"prompt": "Hi"}))
        assert info.value.status == 404
        assert info.value.detail == "The requested resource could not be found."
    finally:
        transport.close()
