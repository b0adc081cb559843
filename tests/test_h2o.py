"""H2o provider against the chat-ui + TGI emulator (PROTOCOLS.md §3), over real sockets."""

from __future__ import annotations

import asyncio
import inspect
import json

import aiohttp
import pytest

from llmplex.emulators.h2o import MODELS
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
from llmplex.prompt import format_prompt
from llmplex.providers import H2o
from llmplex.testing import Fault, Script, cancel_mid_stream, eventually
from llmplex.types import FinishReason

FALCON_40B = "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1"
FALCON_7B = "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3"
DEFAULTS = {
    "temperature": 0.4,
    "truncate": 2048,
    "max_new_tokens": 1024,
    "do_sample": True,
    "repetition_penalty": 1.2,
    "return_full_text": False,
}


async def collect(emulator, messages="Hi", model="", **kwargs):
    kwargs.setdefault("timeout", 5)
    return [
        c
        async for c in H2o.create_async_generator(model, messages, base_url=emulator.url, **kwargs)
    ]


def text_of(chunks):
    return "".join(c for c in chunks if isinstance(c, str))


def generate_request(emulator):
    [request] = [r for r in emulator.requests_to("/conversation/", "POST")]
    return request


def closed(emulator) -> bool:
    """The stream is over and the conversation's DELETE has arrived."""
    return not emulator.open_streams and bool(emulator.requests_to("/conversation/", "DELETE"))


def assert_deleted(emulator):
    deletes = emulator.requests_to("/conversation/", "DELETE")
    assert len(deletes) == 1
    assert deletes[0].path == generate_request(emulator).path
    assert emulator.conversations == {}


# -- the normal exchange -----------------------------------------------------------------


async def test_plain_answer_and_flow(h2o_emulator):
    h2o_emulator.script = Script(chunks=["Hello", "!", " How", " can", " I", " help?"])
    chunks = await collect(h2o_emulator)
    assert chunks[:-1] == ["Hello", "!", " How", " can", " I", " help?"]
    assert chunks[-1] == FinishReason("stop")
    assert "<|endoftext|>" not in text_of(chunks)  # the special end token is skipped
    steps = [
        (r.method, r.path.rsplit("/", 1)[0] if r.path.count("/") > 1 else r.path)
        for r in h2o_emulator.requests
    ]
    assert steps == [
        ("POST", "/settings"),
        ("POST", "/conversation"),
        ("POST", "/conversation"),
        ("DELETE", "/conversation"),
    ]
    assert_deleted(h2o_emulator)


async def test_one_session_cookie_and_headers(h2o_emulator):
    await collect(h2o_emulator)
    settings, create, generate, delete = h2o_emulator.requests
    assert settings.cookies == {}  # the session starts with the settings answer...
    cookie = create.cookies["hf-chat"]
    # ...and every later request carries the same hf-chat cookie: one session.
    assert {r.cookies.get("hf-chat") for r in (create, generate, delete)} == {cookie}
    assert h2o_emulator.sessions[cookie].accepted
    for request in h2o_emulator.requests:
        assert request.headers["Referer"] == h2o_emulator.url + "/"
    assert settings.headers["Accept"] == "*/*"
    assert settings.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert h2o_emulator.settings_forms() == [settings.form]
    assert settings.form == {
        "ethicsModalAccepted": "true",
        "shareConversationsWithModelAuthors": "true",
        "activeModel": FALCON_40B,
    }
    assert create.json == {"model": FALCON_40B}


async def test_body_has_only_known_parameters_with_defaults(h2o_emulator):
    await collect(h2o_emulator, stream=True, proxy=None)
    for option in ({"junk": "x"}, {"web_search": True}, {"api_key": "sk-secret"}):
        with pytest.raises(InvalidRequestError) as info:
            await collect(h2o_emulator, **option)
        assert info.value.param == next(iter(option)) and "sk-secret" not in str(info.value)
    body = generate_request(h2o_emulator).json
    assert set(body) == {"inputs", "parameters", "stream", "options"}
    assert body["parameters"] == DEFAULTS
    assert body["stream"] is True
    assert body["inputs"] == "Hi"
    options = body["options"]
    assert set(options) == {"id", "response_id", "is_retry", "use_cache", "web_search_id"}
    assert options["is_retry"] is False and options["use_cache"] is False
    assert options["web_search_id"] == "" and options["id"] != options["response_id"]
    assert "sk-secret" not in "".join(r.text for r in h2o_emulator.requests)


async def test_parameter_overrides(h2o_emulator):
    await collect(
        h2o_emulator,
        temperature=0.9,
        max_tokens=77,
        top_p=0.5,
        stop="###",
        do_sample=False,
        repetition_penalty=None,
        seed=3,
    )
    assert generate_request(h2o_emulator).json["parameters"] == {
        **DEFAULTS,
        "temperature": 0.9,
        "max_new_tokens": 77,
        "top_p": 0.5,
        "stop": ["###"],
        "do_sample": False,
        "seed": 3,
    }


async def test_max_new_tokens_wins_over_max_tokens(h2o_emulator):
    await collect(h2o_emulator, max_tokens=5, max_new_tokens=9)
    assert generate_request(h2o_emulator).json["parameters"]["max_new_tokens"] == 9


# -- models and prompts ------------------------------------------------------------------


def test_models_and_aliases():
    assert inspect.isasyncgenfunction(H2o.create_async_generator)
    assert H2o.working is False
    assert H2o.default_model == FALCON_40B
    assert H2o.get_model(None) == FALCON_40B
    assert H2o.get_model("falcon-7b") == FALCON_7B
    assert H2o.get_model("llama-13b") == "h2oai/h2ogpt-gm-oasst1-en-2048-open-llama-13b"
    assert sorted(H2o.get_models()) == sorted(MODELS)
    with pytest.raises(ModelNotFoundError, match="H2o"):
        H2o.get_model("gpt-4")


async def test_alias_reaches_the_server_as_the_model_id(h2o_emulator):
    await collect(h2o_emulator, model="falcon-7b")
    assert h2o_emulator.requests_to("/settings")[0].form["activeModel"] == FALCON_7B
    assert h2o_emulator.requests_to("/conversation", "POST")[0].json == {"model": FALCON_7B}


async def test_history_travels_in_the_prompt(h2o_emulator):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And times 3?"},
    ]
    await collect(h2o_emulator, messages)
    inputs = generate_request(h2o_emulator).json["inputs"]
    assert inputs == format_prompt(messages)
    assert inputs == (
        "System: Be brief.\nUser: What is 2+2?\nAssistant: 4\nUser: And times 3?\nAssistant:"
    )


async def test_unicode_both_ways(h2o_emulator):
    prompt = "Привет, 世界! 👋🏽 ¿qué?"
    h2o_emulator.script = Script(chunks=["Здравствуй", "，世界", " 🎉"])
    chunks = await collect(h2o_emulator, [{"role": "user", "content": prompt}])
    assert text_of(chunks) == "Здравствуй，世界 🎉"
    request = generate_request(h2o_emulator)
    assert request.json["inputs"] == prompt


async def test_crlf_stream(h2o_emulator):
    h2o_emulator.crlf = True
    h2o_emulator.script = Script(chunks=["line one\n", "line\r\ntwo", " end"])
    chunks = await collect(h2o_emulator)
    assert text_of(chunks) == "line one\nline\r\ntwo end"
    assert chunks[-1] == FinishReason("stop")


async def test_finish_reason_length_from_token_budget(h2o_emulator):
    h2o_emulator.script = Script(chunks=["a", "b", "c", "d"])
    chunks = await collect(h2o_emulator, max_new_tokens=2)
    assert chunks == ["a", "b", FinishReason("length")]


async def test_finish_reason_from_details(h2o_emulator):
    h2o_emulator.details = True
    h2o_emulator.script = Script(chunks=["a", "b"], finish_reason="length")
    assert (await collect(h2o_emulator))[-1] == FinishReason("length")
    h2o_emulator.script = Script(chunks=["a", "b"], finish_reason="stop")
    assert (await collect(h2o_emulator))[-1] == FinishReason("stop")


async def test_env_base_url(h2o_emulator, monkeypatch):
    monkeypatch.setenv("LLMPLEX_H2O_BASE_URL", h2o_emulator.url)
    text = await H2o.create_async("falcon-40b", "Hi", timeout=5)
    assert text == h2o_emulator.script.reply


async def test_concurrent_calls_have_their_own_sessions(h2o_emulator):
    h2o_emulator.script = Script(chunks=["x", "y"], delay=0.01)
    results = await asyncio.gather(*(collect(h2o_emulator, f"question {i}") for i in range(8)))
    assert all(text_of(chunks) == "xy" for chunks in results)
    generates = h2o_emulator.requests_to("/conversation/", "POST")
    assert sorted(r.json["inputs"] for r in generates) == sorted(f"question {i}" for i in range(8))
    assert len({r.cookies["hf-chat"] for r in generates}) == 8
    assert len(h2o_emulator.requests_to("/conversation/", "DELETE")) == 8
    assert h2o_emulator.conversations == {}


def test_sync_create_completion(h2o_emulator):
    chunks = list(H2o.create_completion("", "Hi", base_url=h2o_emulator.url, timeout=5))
    assert text_of(chunks) == h2o_emulator.script.reply
    assert chunks[-1] == FinishReason("stop")
    assert_deleted(h2o_emulator)
    whole = list(H2o.create_completion("", "Hi", stream=False, base_url=h2o_emulator.url))
    assert whole[0] == h2o_emulator.script.reply


# -- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, error, status, text",
    [
        (Fault.http_status(500, step="settings"), ResponseStatusError, 500, "Internal Error"),
        (
            Fault.http_status(
                403, "Non-JSON form requests need to have a referer", step="settings"
            ),
            MissingAuthError,
            403,
            "need to have a referer",
        ),
        (Fault.http_status(405, step="conversation"), ResponseStatusError, 405, None),
        (
            Fault.http_status(429, step="conversation", retry_after=7),
            RateLimitError,
            429,
            "too many messages",
        ),
        (Fault.http_status(410), ResponseStatusError, 410, "Model not available anymore"),
        (
            Fault.http_status(404, step="generate"),
            ResponseStatusError,
            404,
            "Conversation not found",
        ),
        (Fault.http_status(500, step="generate"), ResponseStatusError, 500, "Internal Error"),
    ],
)
async def test_status_faults(h2o_emulator, fault, error, status, text):
    h2o_emulator.script = Script(fault=fault)
    with pytest.raises(error) as info:
        await collect(h2o_emulator)
    assert info.value.status == status
    assert info.value.provider == "H2o"
    assert str(info.value).startswith("H2o:") and str(status) in str(info.value)
    if text:
        assert text in str(info.value)
    if status == 429:
        assert info.value.retry_after == 7
    created = h2o_emulator.requests_to("/conversation/", "POST")
    # Whatever was created upstream is deleted; nothing else is attempted.
    assert len(h2o_emulator.requests_to("/conversation/", "DELETE")) == len(created)
    assert h2o_emulator.conversations == {}


async def test_ethics_gate_error_message(h2o_emulator):
    h2o_emulator.script = Script(fault=Fault.http_status(405, step="conversation"))
    with pytest.raises(ResponseStatusError, match="accept the welcome modal"):
        await collect(h2o_emulator)


@pytest.mark.parametrize("reason", ["", "overloaded"])
async def test_error_event(h2o_emulator, reason):
    h2o_emulator.script = Script(
        chunks=["a", "b", "c"],
        fault=Fault.error_event("Model is overloaded", after=2, reason=reason),
    )
    seen = []
    with pytest.raises(StreamError) as info:
        async for chunk in H2o.create_async_generator("", "Hi", base_url=h2o_emulator.url):
            seen.append(chunk)
    assert seen == ["a", "b"]
    message = str(info.value)
    assert message.startswith("H2o:") and "Model is overloaded" in message
    assert (reason or "generation") in message
    await eventually(lambda: closed(h2o_emulator))
    assert_deleted(h2o_emulator)


async def test_disconnect(h2o_emulator):
    h2o_emulator.script = Script(chunks=["a", "b", "c"], fault=Fault.disconnect(after=1))
    with pytest.raises(ProviderConnectionError, match="H2o"):
        await collect(h2o_emulator)
    await eventually(lambda: closed(h2o_emulator))
    assert_deleted(h2o_emulator)


async def test_malformed(h2o_emulator):
    h2o_emulator.script = Script(chunks=["a", "b"], fault=Fault.malformed(after=1))
    with pytest.raises(ResponseError, match="H2o: malformed") as info:
        await collect(h2o_emulator)
    assert not isinstance(info.value, StreamError)
    assert_deleted(h2o_emulator)


async def test_stall(h2o_emulator):
    h2o_emulator.script = Script(chunks=["a", "b"], fault=Fault.stall(10, after=1))
    with pytest.raises(ProviderTimeoutError, match="H2o"):
        await collect(h2o_emulator, timeout=0.3)
    assert_deleted(h2o_emulator)


async def test_stream_without_final_event(h2o_emulator):
    h2o_emulator.script = Script(chunks=["a", "b"], extra={"final": False})
    with pytest.raises(ResponseError, match="ended before the answer was complete"):
        await collect(h2o_emulator)
    assert_deleted(h2o_emulator)


# -- stopping early ----------------------------------------------------------------------


async def test_early_stop_deletes_and_closes(h2o_emulator):
    h2o_emulator.script = Script(chunks=[f" w{i}" for i in range(100)], delay=0.02)
    stream = H2o.create_async_generator("", "Hi", base_url=h2o_emulator.url)
    assert await stream.__anext__() == " w0"
    assert await stream.__anext__() == " w1"
    await stream.aclose()
    await eventually(lambda: closed(h2o_emulator))
    assert h2o_emulator.open_streams == 0
    assert_deleted(h2o_emulator)


async def test_cancelled_while_the_conversation_is_created_still_deletes_it(h2o_emulator):
    """The create request may already have made the conversation: it is let finish, then
    deleted."""
    emu = h2o_emulator
    emu.latency = 0.3  # every request is answered 0.3 s after it arrives
    task = asyncio.create_task(collect(emu))
    await eventually(lambda: emu.requests_to("/conversation", "POST"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (create,) = emu.requests_to("/conversation", "POST")
    assert create.path == "/conversation"  # cancelled during it: nothing was generated
    (delete,) = emu.requests_to("/conversation/", "DELETE")
    assert delete.path.startswith("/conversation/")
    assert emu.conversations == {}


async def test_cancellation_deletes_and_closes(h2o_emulator):
    h2o_emulator.script = Script(chunks=[f" w{i}" for i in range(100)], delay=0.02)
    await cancel_mid_stream(
        H2o.create_async_generator("", "Hi", base_url=h2o_emulator.url), first_within=5
    )
    # The DELETE went out before the cancellation finished propagating.
    assert len(h2o_emulator.requests_to("/conversation/", "DELETE")) == 1
    await eventually(lambda: closed(h2o_emulator))
    assert h2o_emulator.open_streams == 0
    assert_deleted(h2o_emulator)


def test_sync_early_stop(h2o_emulator):
    h2o_emulator.script = Script(chunks=[f" w{i}" for i in range(100)], delay=0.02)
    stream = H2o.create_completion("", "Hi", base_url=h2o_emulator.url)
    assert next(stream) == " w0"
    stream.close()  # waits for the provider's cleanup
    assert_deleted(h2o_emulator)


# -- the emulator enforces what chat-ui enforces (raw HTTP) --------------------------------


async def raw(emulator, method, path, *, jar=None, **kwargs):
    jar = jar if jar is not None else aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.request(
            method, emulator.url + path, allow_redirects=False, **kwargs
        ) as response:
            return (
                response.status,
                dict(response.headers),
                await response.read(),
                response.headers.getall("Set-Cookie", []),
            )


async def test_emulator_csrf_and_ethics_gate(h2o_emulator):
    form = {"ethicsModalAccepted": "true", "activeModel": FALCON_40B}
    status, headers, body, cookies = await raw(h2o_emulator, "POST", "/settings", data=form)
    assert (status, body) == (403, b"Non-JSON form requests need to have a referer")
    assert headers["Content-Type"].startswith("text/plain") and cookies == []
    status, _, body, _ = await raw(
        h2o_emulator, "POST", "/settings", data=form, headers={"Referer": "https://evil.example/"}
    )
    assert (status, body) == (403, b"Invalid referer for POST request")
    status, headers, body, _ = await raw(
        h2o_emulator, "POST", "/conversation", json={"model": FALCON_40B}
    )
    assert (status, body) == (405, b'{"error":"You need to accept the welcome modal first"}')
    assert headers["Content-Type"].startswith("application/json")


async def test_emulator_settings_answers_and_session_scope(h2o_emulator):
    url = h2o_emulator.url
    form = {"ethicsModalAccepted": "true", "activeModel": FALCON_40B}
    jar = aiohttp.CookieJar(unsafe=True)
    status, _, body, cookies = await raw(
        h2o_emulator,
        "POST",
        "/settings",
        jar=jar,
        data=form,
        headers={"Referer": url + "/", "Accept": "*/*"},
    )
    assert status == 200
    assert body == b'{"type":"redirect","status":303,"location":"' + url.encode() + b'/"}'
    [cookie] = cookies
    assert cookie.startswith("hf-chat=") and "Path=/" in cookie and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    session_id = cookie.split(";")[0].split("=", 1)[1]
    status, headers, _, cookies = await raw(
        h2o_emulator,
        "POST",
        "/settings",
        jar=jar,
        data=form,
        headers={"Referer": url + "/", "Accept": "text/html"},
    )
    assert (status, headers["Location"]) == (303, url + "/")
    assert cookies[0].startswith(f"hf-chat={session_id};")  # the same session, refreshed
    status, _, body, _ = await raw(
        h2o_emulator, "POST", "/conversation", jar=jar, json={"model": FALCON_40B}
    )
    conversation_id = json.loads(body)["conversationId"]
    assert status == 200 and len(conversation_id) == 24 and int(conversation_id, 16) >= 0
    assert body == b'{"conversationId":"' + conversation_id.encode() + b'"}'
    # Another session (settings accepted too) cannot see that conversation.
    other = aiohttp.CookieJar(unsafe=True)
    await raw(
        h2o_emulator, "POST", "/settings", jar=other, data=form, headers={"Referer": url + "/"}
    )
    body_ok = {"inputs": "Hi", "parameters": {}, "stream": True, "options": {}}
    for method in ("POST", "DELETE"):
        status, _, body, _ = await raw(
            h2o_emulator, method, f"/conversation/{conversation_id}", jar=other, json=body_ok
        )
        assert (status, body) == (404, b'{"message":"Conversation not found"}')
    # Body validation: blank inputs, missing options, unknown model.
    for bad in ({"inputs": "  ", "options": {}}, {"inputs": "Hi"}):
        status, _, body, _ = await raw(
            h2o_emulator, "POST", f"/conversation/{conversation_id}", jar=jar, json=bad
        )
        assert (status, body) == (500, b'{"message":"Internal Error"}')
    status, _, body, _ = await raw(
        h2o_emulator, "POST", "/conversation", jar=jar, json={"model": "gpt-4"}
    )
    assert (status, body) == (500, b'{"message":"Internal Error"}')
    status, _, body, _ = await raw(
        h2o_emulator, "DELETE", f"/conversation/{conversation_id}", jar=jar
    )
    assert (status, body) == (200, b"")
    assert h2o_emulator.deleted == [conversation_id]


async def test_emulator_stream_framing(h2o_emulator):
    url = h2o_emulator.url
    h2o_emulator.script = Script(chunks=["Hi", " there"])
    jar = aiohttp.CookieJar(unsafe=True)
    await raw(
        h2o_emulator,
        "POST",
        "/settings",
        jar=jar,
        data={"ethicsModalAccepted": "true"},
        headers={"Referer": url + "/"},
    )
    _, _, body, _ = await raw(
        h2o_emulator, "POST", "/conversation", jar=jar, json={"model": FALCON_40B}
    )
    path = f"/conversation/{json.loads(body)['conversationId']}"
    request = {"inputs": "Hi", "parameters": {}, "stream": True, "options": {}}
    status, headers, body, _ = await raw(h2o_emulator, "POST", path, jar=jar, json=request)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert body.startswith(b":\n\n")
    events = body[3:].split(b"\n\n")
    assert events[-1] == b""
    first, second, last = (json.loads(e[len(b"data:") :]) for e in events[:-1])
    assert events[0].startswith(b'data:{"token":{"id":') and b": " not in events[0]
    assert first["token"]["text"] == "Hi" and first["token"]["special"] is False
    assert isinstance(first["token"]["logprob"], float) and first["generated_text"] is None
    assert second["token"]["text"] == " there"
    assert last["token"] == {"id": 11, "text": "<|endoftext|>", "logprob": -0.0367, "special": True}
    assert last["generated_text"] == "Hi there" and last["details"] is None
    # error events and CRLF line ends
    h2o_emulator.crlf = True
    h2o_emulator.script = Script(chunks=["x"], fault=Fault.error_event("boom", after=1))
    _, _, body, _ = await raw(h2o_emulator, "POST", path, jar=jar, json=request)
    assert body.startswith(b':\r\n\r\ndata:{"token"')
    assert body.endswith(b'\r\n\r\ndata:{"error":"boom","error_type":"generation"}\r\n\r\n')
