"""OpenAssistant: the five-step flow against its emulator, cookie files, and cleanup.

Every test talks to the emulator over real sockets on 127.0.0.1 and asserts on what the
emulator recorded: the bodies sent, the session cookie, and the DELETE of the chat.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from llmplex.cookies import ENV_VAR, cookie_files, cookies_dir, load_cookies
from llmplex.emulators.openassistant import SAMPLING_KEYS, OpenAssistantEmulator
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
from llmplex.providers.openassistant import DEFAULT_SAMPLING, OpenAssistant
from llmplex.testing import Fault, Script, cancel_mid_stream, eventually, serve
from llmplex.types import FinishReason

TOKEN = "tok-3f9a1c0e7b"  # a value that must never show up in an error message
COOKIES = {"next-auth.session-token": TOKEN}
FLOW = [
    ("POST", "/api/chat"),
    ("POST", "/api/chat/prompter_message"),
    ("POST", "/api/chat/assistant_message"),
    ("POST", "/api/chat/events"),
    ("DELETE", "/api/chat"),
]


@pytest.fixture(autouse=True)
def _no_user_cookie_files(tmp_path, monkeypatch):
    """Never read the developer's real cookie files: point the lookup at an empty dir."""
    empty = tmp_path / "no-cookies"
    empty.mkdir()
    monkeypatch.setenv(ENV_VAR, str(empty))


async def collect(emulator, messages="Hello", **options):
    options.setdefault("cookies", COOKIES)
    return [
        c
        async for c in OpenAssistant.create_async_generator(
            "", messages, base_url=emulator.url, **options
        )
    ]


def text_of(chunks) -> str:
    return "".join(c for c in chunks if isinstance(c, str))


def flow_of(emulator) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in emulator.requests]


def assert_deleted(emulator) -> None:
    """The chat was deleted: one DELETE of the chat the flow used, and no chat is live."""
    deletes = emulator.requests_to("/api/chat", "DELETE")
    assert len(deletes) == 1, flow_of(emulator)
    prompters = emulator.requests_to("/prompter_message")
    if prompters:
        assert deletes[0].query == {"chat_id": prompters[0].json["chat_id"]}
    assert emulator.live_chats() == []


# -- the flow ------------------------------------------------------------------------------


async def test_plain_answer_runs_the_five_steps(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("Hello! How can I help you today?")
    chunks = await collect(emu)
    assert text_of(chunks) == "Hello! How can I help you today?"
    assert len([c for c in chunks if isinstance(c, str)]) > 1  # streamed, not one piece
    assert chunks[-1] == FinishReason("stop")
    assert flow_of(emu) == FLOW
    chat_id = emu.requests[1].json["chat_id"]
    assert emu.requests[3].query["chat_id"] == chat_id
    assert emu.requests[4].query == {"chat_id": chat_id}
    assert emu.requests[3].query["message_id"]
    assert all(r.cookies == COOKIES for r in emu.requests)
    assert emu.live_chats() == []


async def test_request_bodies_follow_the_protocol(openassistant_emulator):
    emu = openassistant_emulator
    await collect(emu, "Hi", top_p=0.9, temperature=0.5, max_new_tokens=64)
    prompter, assistant = emu.requests[1].json, emu.requests[2].json
    assert prompter == {"chat_id": prompter["chat_id"], "content": "Hi", "parent_id": None}
    assert set(assistant) == {
        "chat_id",
        "parent_id",
        "model_config_name",
        "sampling_parameters",
        "plugins",
    }
    assert assistant["model_config_name"] == "OA_SFT_Llama_30B_6"
    assert assistant["plugins"] == []
    assert assistant["sampling_parameters"] == {
        "top_k": 50,
        "top_p": 0.9,
        "typical_p": None,
        "temperature": 0.5,
        "repetition_penalty": 1.1111111111111112,
        "max_new_tokens": 64,
    }
    # the prompter message the emulator returned is the parent of the assistant message
    chat = emu.requests[1].json["chat_id"]
    assert assistant["chat_id"] == chat
    assert emu.requests[3].query["message_id"] != assistant["parent_id"]


async def test_sampling_parameters_are_exactly_the_known_keys(openassistant_emulator):
    emu = openassistant_emulator
    await collect(emu)
    sent = emu.requests[2].json["sampling_parameters"]
    assert list(sent) == list(SAMPLING_KEYS)
    assert sent == DEFAULT_SAMPLING


async def test_unknown_options_never_reach_a_request_body(openassistant_emulator):
    emu = openassistant_emulator
    for option in ({"web_search": True}, {"foo": "sentinel-xyz"}, {"stop": "x"}):
        with pytest.raises(InvalidRequestError) as info:
            await collect(emu, **option)
        assert info.value.param == next(iter(option))
    assert emu.requests == []
    chunks = await collect(emu, stream=True, top_k=3)
    assert chunks[-1] == FinishReason("stop")
    assert emu.requests[2].json["sampling_parameters"]["top_k"] == 3
    for record in emu.requests:
        raw = record.text + json.dumps(record.query)
        for leaked in (
            "stream",
            "max_tokens",
            "web_search",
            "sentinel-xyz",
            "foo",
            "conversation",
            "return_conversation",
        ):
            assert leaked not in raw, (record.path, leaked)


async def test_max_tokens_stands_for_max_new_tokens(openassistant_emulator):
    emu = openassistant_emulator
    await collect(emu, max_tokens=7)
    sent = emu.requests[2].json["sampling_parameters"]
    assert sent["max_new_tokens"] == 7 and "max_tokens" not in sent
    emu.reset()
    await collect(emu, max_tokens=7, max_new_tokens=9)  # the service's own name wins
    assert emu.requests[2].json["sampling_parameters"]["max_new_tokens"] == 9


async def test_unicode_prompt_arrives_intact(openassistant_emulator):
    emu = openassistant_emulator
    prompt = "Привет, мир! 你好，世界 🦀🎉 — ünïcödé"
    emu.script = Script("Ответ: 好的 👍")
    chunks = await collect(emu, prompt)
    assert emu.requests[1].json["content"] == prompt
    assert text_of(chunks) == "Ответ: 好的 👍"


async def test_history_goes_into_one_prompter_message(openassistant_emulator):
    emu = openassistant_emulator
    history = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    await collect(emu, history)
    content = emu.requests[1].json["content"]
    assert content == format_prompt(history)
    assert "My name is Ada." in content and content.endswith("Assistant:")


async def test_model_choice_and_unknown_model(openassistant_emulator):
    emu = openassistant_emulator
    chunks = [
        c
        async for c in OpenAssistant.create_async_generator(
            "OA_SFT_Llama2_70B_10", "Hi", cookies=COOKIES, base_url=emu.url
        )
    ]
    assert chunks[-1] == FinishReason("stop")
    assert emu.requests[2].json["model_config_name"] == "OA_SFT_Llama2_70B_10"
    with pytest.raises(ModelNotFoundError, match="OpenAssistant"):
        [
            c
            async for c in OpenAssistant.create_async_generator(
                "gpt-4", "Hi", cookies=COOKIES, base_url=emu.url
            )
        ]
    assert len(emu.requests) == len(FLOW)  # the unknown model sent nothing


async def test_keep_alive_comments_and_pending_events_are_skipped():
    # pings every 20 ms between slow tokens, and three queue updates before the first token
    emulator = OpenAssistantEmulator(
        Script("one two three", delay=0.06, extra={"queue": 2}), ping_interval=0.02
    )
    with serve(emulator) as emu:
        chunks = await collect(emu)
    assert text_of(chunks) == "one two three"
    assert chunks[-1] == FinishReason("stop")


async def test_secure_cookie_name_is_accepted(openassistant_emulator):
    emu = openassistant_emulator
    cookies = {"__Secure-next-auth.session-token": TOKEN, "other": "x"}
    chunks = await collect(emu, cookies=cookies)
    assert chunks[-1] == FinishReason("stop")
    assert emu.requests[0].cookies == cookies


def test_sync_create_completion(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("sync works fine")
    chunks = list(OpenAssistant.create_completion("", "Hi", cookies=COOKIES, base_url=emu.url))
    assert text_of(chunks) == "sync works fine"
    whole = list(
        OpenAssistant.create_completion("", "Hi", stream=False, cookies=COOKIES, base_url=emu.url)
    )
    assert whole[0] == "sync works fine"
    assert emu.live_chats() == []
    assert len(emu.requests_to("/api/chat", "DELETE")) == 2


async def test_create_async_and_env_base_url(openassistant_emulator, monkeypatch):
    emu = openassistant_emulator
    monkeypatch.setenv("LLMPLEX_OPENASSISTANT_BASE_URL", emu.url)
    emu.script = Script("whole answer")
    assert await OpenAssistant.create_async("", "Hi", cookies=COOKIES) == "whole answer"
    assert flow_of(emu) == FLOW


def test_class_attributes():
    assert OpenAssistant.working is False
    assert OpenAssistant.needs_auth is True
    assert OpenAssistant.default_model == "OA_SFT_Llama_30B_6"
    assert OpenAssistant.get_model("") == "OA_SFT_Llama_30B_6"
    assert "OA_SFT_Pythia_12B_4" in OpenAssistant.get_models()


# -- authentication ------------------------------------------------------------------------


async def test_no_cookies_anywhere_is_missing_auth_with_instructions(openassistant_emulator):
    emu = openassistant_emulator
    with pytest.raises(MissingAuthError) as info:
        await collect(emu, cookies=None)
    message = str(info.value)
    assert message.startswith("OpenAssistant:")
    assert str(cookies_dir()) in message
    assert "open-assistant.io.txt" in message and "open-assistant.io.json" in message
    assert ENV_VAR in message and "cookies=" in message
    assert "__Secure-next-auth.session-token" in message
    assert emu.requests == []  # refused before any request


async def test_cookies_come_from_the_cookie_file(openassistant_emulator, tmp_path, monkeypatch):
    emu = openassistant_emulator
    directory = tmp_path / "cookie-dir"
    directory.mkdir()
    (directory / "open-assistant.io.txt").write_text(
        "# Netscape HTTP Cookie File\n"
        f"#HttpOnly_.open-assistant.io\tTRUE\t/\tTRUE\t0\tnext-auth.session-token\t{TOKEN}\n"
        ".example.com\tTRUE\t/\tFALSE\t0\tunrelated\tnope\n"
    )
    monkeypatch.setenv(ENV_VAR, str(directory))
    chunks = await collect(emu, cookies=None)
    assert chunks[-1] == FinishReason("stop")
    assert emu.requests[0].cookies == {"next-auth.session-token": TOKEN}


async def test_refused_session_is_missing_auth_without_the_value():
    with serve(OpenAssistantEmulator(tokens={"the-only-valid-token"})) as emu:
        with pytest.raises(MissingAuthError) as info:
            await collect(emu)
        assert info.value.status == 403
        assert info.value.provider == "OpenAssistant"
        assert "session cookie was refused" in str(info.value)
        assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
        assert flow_of(emu) == [("POST", "/api/chat")]  # nothing created, nothing to delete
        assert emu.live_chats() == []
        # the valid token goes through
        good = {"next-auth.session-token": "the-only-valid-token"}
        assert (await collect(emu, cookies=good))[-1] == FinishReason("stop")


# -- every step's failure ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "status", "message", "error_type"),
    [
        ("chat", 503, "The server is currently busy. Please try again later.", ResponseStatusError),
        ("chat", 429, "Too Many Requests", RateLimitError),
        ("prompter", 413, "Message content exceeds max length", ResponseStatusError),
        ("prompter", 400, "Parent message not found", ResponseStatusError),
        ("assistant", 422, "Model OA_SFT_Llama_30B_6 not found", ResponseStatusError),
        ("assistant", 429, "Too Many Requests", RateLimitError),
        ("assistant", 403, "", MissingAuthError),
        ("events", 404, "Chat not found", ResponseStatusError),
        ("events", 500, "Internal Server Error", ResponseStatusError),
    ],
)
async def test_each_step_failure_is_typed_and_the_chat_deleted(
    openassistant_emulator, step, status, message, error_type
):
    emu = openassistant_emulator
    emu.script = Script(fault=Fault.http_status(status, message, retry_after=7, step=step))
    with pytest.raises(error_type) as info:
        await collect(emu)
    error = info.value
    assert type(error) is error_type
    assert error.status == status and error.provider == "OpenAssistant"
    assert str(error).startswith(f"OpenAssistant: HTTP {status}")
    if message:
        assert message in str(error)
    if error_type is RateLimitError:
        assert error.retry_after == 7
    steps = ["chat", "prompter", "assistant", "events"]
    expected = FLOW[: steps.index(step) + 1]
    if step != "chat":
        expected = [*expected, ("DELETE", "/api/chat")]  # the chat existed: deleted
    assert flow_of(emu) == expected
    assert emu.live_chats() == []


async def test_disabled_chat_404_with_empty_body(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script(fault=Fault.http_status(404, step="events"))
    with pytest.raises(ResponseStatusError, match="chat feature is disabled") as info:
        await collect(emu)
    assert info.value.status == 404
    assert_deleted(emu)


async def test_real_validation_too_long_prompt():
    with serve(OpenAssistantEmulator(max_content_length=10)) as emu:
        with pytest.raises(ResponseStatusError, match="exceeds max length") as info:
            await collect(emu, "x" * 11)
        assert info.value.status == 413
        assert_deleted(emu)


async def test_failed_delete_after_a_complete_answer_is_reported(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("done", fault=Fault.http_status(500, step="delete"))
    received = []
    with pytest.raises(ResponseStatusError) as info:
        async for chunk in OpenAssistant.create_async_generator(
            "", "Hi", cookies=COOKIES, base_url=emu.url
        ):
            received.append(chunk)
    assert info.value.status == 500
    assert text_of(received) == "done"
    assert emu.requests_to("/api/chat", "DELETE")


# -- stream faults -------------------------------------------------------------------------


async def test_error_event_raises_stream_error_and_deletes(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("one two three four", fault=Fault.error_event("Timeout", after=2))
    received = []
    with pytest.raises(StreamError, match="Timeout") as info:
        async for chunk in OpenAssistant.create_async_generator(
            "", "Hi", cookies=COOKIES, base_url=emu.url
        ):
            received.append(chunk)
    assert str(info.value).startswith("OpenAssistant:")
    assert received == ["one", " two"]
    assert flow_of(emu) == FLOW
    assert_deleted(emu)


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault.disconnect(after=1), ProviderConnectionError),
        (Fault.malformed(after=1), ResponseError),
    ],
)
async def test_broken_stream_is_typed_and_deletes(openassistant_emulator, fault, error_type):
    emu = openassistant_emulator
    emu.script = Script("alpha beta gamma", fault=fault)
    with pytest.raises(error_type, match="OpenAssistant"):
        await collect(emu)
    assert flow_of(emu) == FLOW
    assert_deleted(emu)


async def test_stalled_stream_times_out_and_deletes(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("alpha beta", fault=Fault.stall(5, after=1))
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match="OpenAssistant"):
        await collect(emu, timeout=0.3)
    assert time.monotonic() - started < 3
    assert_deleted(emu)


async def test_stream_ending_without_final_event_is_an_error(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("cut short", extra={"final_event": False})
    with pytest.raises(ResponseError, match="ended before the answer was complete"):
        await collect(emu)
    assert_deleted(emu)


# -- stopping early ------------------------------------------------------------------------


async def test_consumer_stops_early_deletes_and_closes(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("a b c d e f g h", delay=0.05)
    stream = OpenAssistant.create_async_generator("", "Hi", cookies=COOKIES, base_url=emu.url)
    assert await stream.__anext__() == "a"
    await stream.aclose()
    assert emu.requests_to("/api/chat", "DELETE")  # sent before aclose() returned
    assert emu.live_chats() == []
    await eventually(lambda: emu.open_streams == 0)


async def test_break_out_of_async_for_deletes(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("a b c d e f g h", delay=0.05)
    stream = OpenAssistant.create_async_generator("", "Hi", cookies=COOKIES, base_url=emu.url)
    async for _chunk in stream:
        break
    await stream.aclose()
    assert_deleted(emu)
    await eventually(lambda: emu.open_streams == 0)


def test_sync_early_stop_deletes(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("a b c d e f g h", delay=0.05)
    stream = OpenAssistant.create_completion("", "Hi", cookies=COOKIES, base_url=emu.url)
    assert next(stream) == "a"
    stream.close()
    assert_deleted(emu)
    deadline = time.monotonic() + 3
    while emu.open_streams and time.monotonic() < deadline:
        time.sleep(0.01)
    assert emu.open_streams == 0


async def test_cancelled_task_deletes(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("a b c d e f g h", delay=0.1)
    await cancel_mid_stream(
        OpenAssistant.create_async_generator("", "Hi", cookies=COOKIES, base_url=emu.url),
        first_within=3,
    )
    assert_deleted(emu)
    await eventually(lambda: emu.open_streams == 0)


async def test_cancelled_while_the_chat_is_created_still_deletes_it(openassistant_emulator):
    """The create request may already have made the chat: it is let finish, then deleted."""
    emu = openassistant_emulator
    emu.latency = 0.3  # every request is answered 0.3 s after it arrives
    task = asyncio.create_task(collect(emu))
    await eventually(lambda: emu.requests)  # the chat's POST is in flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(r.method, r.path) for r in emu.requests] == [FLOW[0], FLOW[-1]]
    # the id came from the POST's answer, so the chat was made; and it is gone
    assert emu.requests[-1].query.get("chat_id")
    assert emu.live_chats() == []


async def test_cancelled_twice_still_deletes(openassistant_emulator):
    """A second cancel while the DELETE is in flight must not abandon it."""
    emu = openassistant_emulator
    emu.script = Script("a b c d e f g h", delay=0.1)
    await cancel_mid_stream(
        OpenAssistant.create_async_generator("", "Hi", cookies=COOKIES, base_url=emu.url),
        first_within=3,
        cancels=2,
    )
    assert_deleted(emu)


async def test_timeout_around_the_consumer_deletes(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("a b c d e f g h", delay=0.1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.35):
            await collect(emu)
    assert_deleted(emu)


# -- the emulator on its own ---------------------------------------------------------------


async def test_emulator_wire_format_and_session_rules(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("Hi there")
    mine = {"next-auth.session-token": "mine"}
    theirs = {"next-auth.session-token": "theirs"}
    url = emu.url + "/api/chat"
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.post(url) as r:  # no session cookie
            assert r.status == 403 and await r.read() == b""
        async with http.post(url, cookies=mine) as r:
            raw = await r.text()
            chat = json.loads(raw)
            assert r.status == 200 and raw == json.dumps(chat)  # Python's spaced separators
            assert set(chat) == {
                "id",
                "created_at",
                "modified_at",
                "title",
                "hidden",
                "allow_data_use",
                "active_thread_tail_message_id",
            }
        body = {"chat_id": chat["id"], "content": "Hi", "parent_id": None}
        async with http.post(url + "/prompter_message", json=body, cookies=theirs) as r:
            assert r.status == 404 and await r.json() == {"message": "Chat not found"}
        async with http.post(
            url + "/prompter_message", json={**body, "parent_id": "nope"}, cookies=mine
        ) as r:
            assert r.status == 400 and await r.json() == {"message": "Parent message not found"}
        async with http.post(url + "/prompter_message", json=body, cookies=mine) as r:
            prompter = await r.json()
            assert prompter["role"] == "prompter" and prompter["state"] == "manual"
        assistant_body = {
            "chat_id": chat["id"],
            "parent_id": prompter["id"],
            "model_config_name": "gpt-5",
            "sampling_parameters": {},
            "plugins": [],
        }
        async with http.post(url + "/assistant_message", json=assistant_body, cookies=mine) as r:
            assert r.status == 422 and await r.json() == {"message": "Model gpt-5 not found"}
        assistant_body["model_config_name"] = "OA_SFT_Llama_30B_6"
        async with http.post(url + "/assistant_message", json=assistant_body, cookies=mine) as r:
            assistant = await r.json()
            assert assistant["role"] == "assistant" and assistant["state"] == "pending"
            assert assistant["content"] is None
        query = {"chat_id": chat["id"], "message_id": assistant["id"]}
        async with http.get(url + "/events", params=query, cookies=theirs) as r:
            assert r.status == 404
        async with http.get(url + "/events", params=query, cookies=mine) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            stream = await r.read()
        async with http.delete(url, params={"chat_id": chat["id"]}, cookies=theirs) as r:
            assert r.status == 404
        assert emu.live_chats() == [chat["id"]]
        async with http.delete(url, params={"chat_id": chat["id"]}, cookies=mine) as r:
            assert r.status == 200 and await r.read() == b""
        assert emu.live_chats() == []
    assert stream.startswith(b": ping - ")
    frames = stream.split(b"\r\n\r\n")
    assert frames[-1] == b""
    assert frames[1] == b'data: {"event_type": "pending", "queue_position": 0, "queue_size": 1}'
    assert frames[2] == b'data: {"event_type": "token", "text": "Hi"}'
    assert frames[3] == b'data: {"event_type": "token", "text": " there"}'
    final = json.loads(frames[4][len(b"data: ") :])
    assert final["event_type"] == "message"
    assert final["message"]["state"] == "complete" and final["message"]["content"] == "Hi there"
    assert len(frames) == 6


async def test_emulator_error_event_body(openassistant_emulator):
    emu = openassistant_emulator
    emu.script = Script("x", fault=Fault.error_event("Timeout"))
    with pytest.raises(StreamError):
        await collect(emu)
    # replay the error frame format by reading a second stream raw
    emu.script = Script("x", fault=Fault.error_event("Timeout"))
    mine = {"next-auth.session-token": "raw"}
    url = emu.url + "/api/chat"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.post(url, cookies=mine) as r:
            chat = await r.json()
        async with http.post(
            url + "/prompter_message",
            cookies=mine,
            json={"chat_id": chat["id"], "content": "Hi", "parent_id": None},
        ) as r:
            prompter = await r.json()
        async with http.post(
            url + "/assistant_message",
            cookies=mine,
            json={
                "chat_id": chat["id"],
                "parent_id": prompter["id"],
                "model_config_name": "OA_SFT_Llama_30B_6",
            },
        ) as r:
            assistant = await r.json()
        async with http.post(
            url + "/events",
            cookies=mine,
            params={"chat_id": chat["id"], "message_id": assistant["id"]},
        ) as r:
            stream = await r.read()
        async with http.delete(url, params={"chat_id": chat["id"]}, cookies=mine) as r:
            assert r.status == 200
    assert stream.split(b"\r\n\r\n")[-2] == (
        b'data: {"event_type": "error", "error": "Timeout", "message": null}'
    )


# -- cookie files --------------------------------------------------------------------------


def _netscape(*lines: str) -> str:
    return (
        "# Netscape HTTP Cookie File\n# https://curl.se/docs/http-cookies.html\n\n"
        + "\n".join(lines)
        + "\n"
    )


def test_netscape_cookie_file(tmp_path):
    future, past = int(time.time()) + 3600, int(time.time()) - 3600
    path = tmp_path / "open-assistant.io.txt"
    path.write_text(
        _netscape(
            f"#HttpOnly_.open-assistant.io\tTRUE\t/\tTRUE\t{future}"
            "\t__Secure-next-auth.session-token\tS1",
            ".open-assistant.io\tTRUE\t/\tFALSE\t0\tlocale\ten",
            f"open-assistant.io\tFALSE\t/\tFALSE\t{past}\told\texpired",
            "open-assistant.io\tFALSE\t/\tFALSE\t0\thostonly\th1",
            "www.open-assistant.io\tFALSE\t/\tFALSE\t0\tsub\tnot-for-parent",
            ".example.com\tTRUE\t/\tFALSE\t0\tother\tsite",
            "open-assistant.io\tFALSE\t/\tFALSE\t0\tempty\t",
        )
    )
    assert load_cookies("open-assistant.io", path=path) == {
        "__Secure-next-auth.session-token": "S1",
        "locale": "en",
        "hostonly": "h1",
        "empty": "",
    }
    # a subdomain gets the domain cookies, not the host-only one of the parent
    assert load_cookies("chat.open-assistant.io", path=path) == {
        "__Secure-next-auth.session-token": "S1",
        "locale": "en",
    }
    assert load_cookies("https://www.open-assistant.io/chat", path=path) == {
        "__Secure-next-auth.session-token": "S1",
        "locale": "en",
        "sub": "not-for-parent",
    }


def test_more_specific_domain_wins_a_name_clash(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(
        _netscape(
            "open-assistant.io\tFALSE\t/\tFALSE\t0\tsid\tspecific",
            ".open-assistant.io\tTRUE\t/\tFALSE\t0\tsid\tgeneral",
        )
    )
    assert load_cookies("open-assistant.io", path=path) == {"sid": "specific"}


def test_json_cookie_files(tmp_path):
    simple = tmp_path / "simple.json"
    simple.write_text(json.dumps({"next-auth.session-token": "J1", "a": "b"}))
    assert load_cookies("open-assistant.io", path=simple) == {
        "next-auth.session-token": "J1",
        "a": "b",
    }

    exported = tmp_path / "exported.json"
    exported.write_text(
        json.dumps(
            [
                {
                    "domain": ".open-assistant.io",
                    "hostOnly": False,
                    "name": "__Secure-next-auth.session-token",
                    "value": "J2",
                    "path": "/",
                    "secure": True,
                    "httpOnly": True,
                    "expirationDate": time.time() + 3600,
                    "session": False,
                },
                {
                    "domain": "open-assistant.io",
                    "hostOnly": True,
                    "name": "host",
                    "value": "h",
                    "session": True,
                },
                {
                    "domain": ".open-assistant.io",
                    "name": "gone",
                    "value": "v",
                    "expirationDate": time.time() - 10,
                },
                {
                    "domain": "other.org",
                    "hostOnly": True,
                    "name": "x",
                    "value": "y",
                    "session": True,
                },
            ]
        )
    )
    assert load_cookies("open-assistant.io", path=exported) == {
        "__Secure-next-auth.session-token": "J2",
        "host": "h",
    }
    assert load_cookies("app.open-assistant.io", path=exported) == {
        "__Secure-next-auth.session-token": "J2"
    }

    state = tmp_path / "state.json"  # a storage-state export
    state.write_text(
        json.dumps(
            {
                "cookies": [
                    {"name": "sid", "value": "S", "domain": ".open-assistant.io", "expires": -1}
                ],
                "origins": [],
            }
        )
    )
    assert load_cookies("open-assistant.io", path=state) == {"sid": "S"}


def test_cookie_directory_env_var_and_precedence(tmp_path, monkeypatch):
    directory = tmp_path / "mine"
    directory.mkdir()
    monkeypatch.setenv(ENV_VAR, str(directory))
    assert cookies_dir() == directory
    assert load_cookies("open-assistant.io") == {}  # no file: nothing, no error
    (directory / "cookies.txt").write_text(
        _netscape(
            ".open-assistant.io\tTRUE\t/\tFALSE\t0\tsid\tgeneral",
            ".open-assistant.io\tTRUE\t/\tFALSE\t0\tonly_general\tg",
        )
    )
    (directory / "open-assistant.io.json").write_text(json.dumps({"sid": "specific"}))
    assert [p.name for p in cookie_files("open-assistant.io")] == [
        "cookies.txt",
        "open-assistant.io.json",
    ]
    assert load_cookies("open-assistant.io") == {"sid": "specific", "only_general": "g"}
    assert load_cookies("example.com") == {}


def test_default_cookie_directory(monkeypatch):
    from platformdirs import user_config_dir

    monkeypatch.delenv(ENV_VAR, raising=False)
    assert cookies_dir() == Path(user_config_dir("llmplex")) / "cookies"


def test_missing_explicit_path_is_an_error(tmp_path):
    with pytest.raises(InvalidRequestError, match="does not exist"):
        load_cookies("open-assistant.io", path=tmp_path / "nope.txt")


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (
            _netscape(
                ".open-assistant.io\tTRUE\t/\tFALSE\t0\tok\tfine", "garbage-line-with-SECRETVALUE"
            ),
            5,
            "expected 7",
        ),
        (_netscape(".open-assistant.io\tMAYBE\t/\tFALSE\t0\tsid\tSECRETVALUE"), 4, "TRUE or FALSE"),
        (_netscape(".open-assistant.io\tTRUE\t/\tFALSE\tsoon\tsid\tSECRETVALUE"), 4, "expiry"),
        ('{\n  "sid": "SECRETVALUE",\n  oops\n}', 3, "invalid JSON"),
    ],
)
def test_malformed_cookie_file_names_file_and_line_not_values(tmp_path, content, line, reason):
    path = tmp_path / "open-assistant.io.txt"
    path.write_text(content)
    with pytest.raises(InvalidRequestError) as info:
        load_cookies("open-assistant.io", path=path)
    message = str(info.value)
    assert str(path) in message and f"line {line}" in message and reason in message
    assert "SECRETVALUE" not in message and "SECRETVALUE" not in repr(info.value)


def test_malformed_json_structure_does_not_leak_values(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"value": "SECRETVALUE"}]))
    with pytest.raises(InvalidRequestError, match="entry 0") as info:
        load_cookies("open-assistant.io", path=path)
    assert "SECRETVALUE" not in str(info.value)
    path.write_text(json.dumps({"sid": 12345}))
    with pytest.raises(InvalidRequestError, match="must be a string") as info:
        load_cookies("open-assistant.io", path=path)
    assert "12345" not in str(info.value)


async def test_malformed_cookie_file_fails_the_provider(
    openassistant_emulator, tmp_path, monkeypatch
):
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "open-assistant.io.txt").write_text("not a cookie line SECRETVALUE\n")
    monkeypatch.setenv(ENV_VAR, str(directory))
    with pytest.raises(InvalidRequestError) as info:
        await collect(openassistant_emulator, cookies=None)
    assert str(info.value).startswith("OpenAssistant: malformed cookie file")
    assert "line 1" in str(info.value)
    assert "SECRETVALUE" not in str(info.value)
    assert openassistant_emulator.requests == []
