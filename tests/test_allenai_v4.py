"""AllenAI on the retired v4 protocol (``api_version="v4"``) against its emulator, over
real sockets on 127.0.0.1. The current protocol (v5) is tested in test_allenai.py."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time

import aiohttp
import pytest

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
from llmplex.providers import AllenAI
from llmplex.providers.ai2_models import V4_MODEL_HOSTS
from llmplex.providers.allenai import Conversation
from llmplex.testing import Fault, Script, cancel_mid_stream, eventually

MSG_ID = re.compile(r"^msg_[A-Z0-9]{10}$")
STREAM = "/v4/message/stream"


async def collect(emu, model="", messages="Hi", **kwargs):
    kwargs.setdefault("base_url", emu.url)
    kwargs.setdefault("api_version", "v4")
    return [c async for c in AllenAI.create_async_generator(model, messages, **kwargs)]


def text_of(chunks) -> str:
    return "".join(c for c in chunks if isinstance(c, str))


async def raw_post(emu, fields, headers=None):
    """A hand-made request, to check what the emulator itself enforces and sends."""
    form = aiohttp.FormData(charset="utf-8")
    for key, value in fields:
        form.add_field(key, value, content_type="text/plain; charset=utf-8")
    async with aiohttp.ClientSession() as session:
        async with session.post(emu.url + STREAM, data=form, headers=headers or {}) as resp:
            return resp.status, resp.headers.get("Content-Type"), await resp.read()


# -- models and hosts ------------------------------------------------------------------------


def test_v4_models_and_hosts():
    # the v4 models stay accepted by name (for deployments of the old API), unlisted
    for model, host in V4_MODEL_HOSTS.items():
        assert AllenAI.get_model(model) == model and model not in AllenAI.get_models()
        assert AllenAI.get_host(model) == host
        assert AllenAI.capabilities_for(model).tools == "none"  # text only: emulation applies
    assert AllenAI.get_host("tulu3-405b") == "inferd"
    # the retired models' aliases are gone
    for alias in ("tulu-3-405b", "olmo-2-13b", "tulu-3-70b"):
        with pytest.raises(ModelNotFoundError):
            AllenAI.get_model(alias)
    # v4 anonymous access needs a deployment that still runs it
    assert "removed" in AllenAI.why_not_working({"api_version": "v4"})
    assert AllenAI.why_not_working({"api_version": "v4", "base_url": "http://x"}) is None


async def test_default_model_of_v4_is_its_own(ai2_v4_emulator):
    await collect(ai2_v4_emulator)
    assert ai2_v4_emulator.requests[-1].form["model"] == "tulu3-405b"


async def test_v5_only_options_are_refused_on_v4(ai2_v4_emulator):
    for option in (
        {"captcha_token": "t"},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"extra_parameters": {}},
        {"tool_choice": "auto"},
    ):
        with pytest.raises(InvalidRequestError) as info:
            await collect(ai2_v4_emulator, **option)
        assert info.value.param == next(iter(option)) and "v5" in str(info.value)
    with pytest.raises(InvalidRequestError) as info:
        await collect(ai2_v4_emulator, api_version="v3")
    assert info.value.param == "api_version"
    assert ai2_v4_emulator.requests == []


@pytest.mark.parametrize("model", list(V4_MODEL_HOSTS))
async def test_every_model_is_sent_with_its_host(ai2_v4_emulator, model):
    chunks = await collect(ai2_v4_emulator, model)
    assert text_of(chunks) == "Hello! How can I help you today?"
    form = ai2_v4_emulator.requests[-1].form
    assert (form["model"], form["host"]) == (model, "inferd" if model == "tulu3-405b" else "modal")


async def test_explicit_host_is_sent_and_a_wrong_one_is_the_servers_400(ai2_v4_emulator):
    with pytest.raises(ResponseStatusError) as info:
        await collect(ai2_v4_emulator, "tulu3-405b", host="modal")
    err = info.value
    assert err.status == 400 and err.provider == "AllenAI"
    assert "Invalid model/host combination tulu3-405b/modal" in str(err)
    assert str(err).startswith("AllenAI:")
    assert ai2_v4_emulator.requests[-1].form["host"] == "modal"


# -- answers ---------------------------------------------------------------------------------


async def test_plain_answer(ai2_v4_emulator):
    ai2_v4_emulator.script = Script(chunks=["Hel", "lo", " ", "world"])
    chunks = await collect(ai2_v4_emulator, messages=[{"role": "user", "content": "Hi"}])
    assert chunks == ["Hel", "lo", " ", "world", chunks[-1]]
    assert chunks[-1].reason == "stop"
    (req,) = ai2_v4_emulator.requests
    assert req.method == "POST" and req.path == STREAM
    assert req.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert req.form == {"model": "tulu3-405b", "host": "inferd", "content": "Hi", "private": "true"}
    assert req.headers["X-Anonymous-User-ID"]


async def test_unicode_prompt_arrives_intact(ai2_v4_emulator):
    prompt = "Привет, мир! 你好，世界 🎉👩‍💻"
    await collect(ai2_v4_emulator, messages=prompt)
    req = ai2_v4_emulator.requests[-1]
    assert req.form["content"] == prompt
    assert prompt.encode("utf-8") in req.body  # real UTF-8 multipart, not Latin-1 / escapes


async def test_multi_message_prompt_is_formatted(ai2_v4_emulator):
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    await collect(ai2_v4_emulator, messages=messages)
    assert ai2_v4_emulator.requests[-1].form["content"] == (
        "User: a\nAssistant: b\nUser: c\nAssistant:"
    )


async def test_finish_reason_length_propagates(ai2_v4_emulator):
    ai2_v4_emulator.script = Script("cut short", finish_reason="length")
    chunks = await collect(ai2_v4_emulator)
    assert chunks[-1].reason == "length"


async def test_options_arrive_in_the_form_and_unknown_kwargs_are_refused(ai2_v4_emulator):
    await collect(
        ai2_v4_emulator,
        temperature=0.5,
        top_p=0.9,
        private=False,
        max_tokens=64,
        stop=["\n\n", "User:"],
        stream=True,
    )
    req = ai2_v4_emulator.requests[-1]
    assert req.form == {
        "model": "tulu3-405b",
        "host": "inferd",
        "content": "Hi",
        "private": "false",
        "temperature": "0.5",
        "top_p": "0.9",
        "max_tokens": "64",
        "stop": ["\n\n", "User:"],
    }
    assert b'name="stream"' not in req.body
    for option in (
        {"seed": 3},
        {"frobnicate": "x"},
        {"cookies": {"a": "sk-secret"}},
        {"temprature": 0.5},
    ):
        with pytest.raises(InvalidRequestError) as info:
            await collect(ai2_v4_emulator, **option)
        assert info.value.param == next(iter(option)) and "AllenAI" in str(info.value)
        assert "sk-secret" not in str(info.value)
    assert info.value.suggestions == ["temperature"]
    assert len(ai2_v4_emulator.requests) == 1  # nothing was sent for the refused calls


async def test_single_stop_string_is_one_field(ai2_v4_emulator):
    await collect(ai2_v4_emulator, stop="END")
    assert ai2_v4_emulator.requests[-1].form["stop"] == "END"


async def test_out_of_range_option_is_the_servers_validation_error(ai2_v4_emulator):
    with pytest.raises(ResponseStatusError) as info:
        await collect(ai2_v4_emulator, temperature=5)
    assert info.value.status == 400
    assert "less than or equal to 1" in str(info.value)


async def test_empty_content_is_the_servers_validation_error(ai2_v4_emulator):
    with pytest.raises(ResponseStatusError) as info:
        await collect(ai2_v4_emulator, messages="")
    err = info.value
    assert err.status == 400 and "AllenAI" in str(err)
    assert "String should have at least 1 character" in str(err)
    assert json.loads(err.body)["error"]["validation_errors"][0]["loc"] == ["content"]


async def test_bad_messages_fail_before_any_request(ai2_v4_emulator):
    with pytest.raises(InvalidRequestError):
        await collect(ai2_v4_emulator, messages=[{"role": "user"}])
    assert ai2_v4_emulator.requests == []


# -- conversations ---------------------------------------------------------------------------


async def test_history_records_the_whole_reply(ai2_v4_emulator):
    ai2_v4_emulator.script = Script(chunks=["The ", "whole ", "reply."])
    chunks = await collect(ai2_v4_emulator, messages="Q1", return_conversation=True)
    conv = chunks[-2]
    assert isinstance(conv, Conversation)
    assert conv.messages == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "The whole reply."},
    ]
    assert conv.model == "tulu3-405b"
    reply = ai2_v4_emulator.messages[conv.parent]
    assert reply["role"] == "assistant" and MSG_ID.match(conv.parent)


async def test_return_conversation_ordering(ai2_v4_emulator):
    chunks = await collect(ai2_v4_emulator, return_conversation=True)
    kinds = [type(c).__name__ for c in chunks]
    assert kinds == ["str"] * (len(chunks) - 2) + ["Conversation", "FinishReason"]
    assert len(chunks) > 2
    assert "Conversation" not in [type(c).__name__ for c in await collect(ai2_v4_emulator)]


async def test_second_turn_sends_only_the_last_user_message_and_parent(ai2_v4_emulator):
    ai2_v4_emulator.push(Script("First answer."), Script("Second answer."))
    first = await collect(ai2_v4_emulator, messages="Q1", return_conversation=True)
    conv = first[-2]
    anonymous_id, first_reply = conv.x_anonymous_user_id, conv.parent
    history = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Q2 ✓"},
    ]
    second = await collect(
        ai2_v4_emulator, messages=history, conversation=conv, return_conversation=True
    )
    assert text_of(second) == "Second answer."
    assert second[-2] is conv
    req1, req2 = ai2_v4_emulator.requests
    assert req2.form == {
        "model": "tulu3-405b",
        "host": "inferd",
        "content": "Q2 ✓",
        "private": "true",
        "parent": first_reply,
    }
    assert req1.headers["X-Anonymous-User-ID"] == anonymous_id
    assert req2.headers["X-Anonymous-User-ID"] == anonymous_id
    assert conv.x_anonymous_user_id == anonymous_id
    assert conv.parent != first_reply and ai2_v4_emulator.messages[conv.parent]["parent"] in (
        ai2_v4_emulator.messages
    )
    assert conv.messages == [*history, {"role": "assistant", "content": "Second answer."}]


async def test_each_new_conversation_gets_its_own_anonymous_id(ai2_v4_emulator):
    a = (await collect(ai2_v4_emulator, return_conversation=True))[-2]
    b = (await collect(ai2_v4_emulator, return_conversation=True))[-2]
    assert a.x_anonymous_user_id != b.x_anonymous_user_id


async def test_conversation_round_trips_through_get_dict_for_a_continuation(ai2_v4_emulator):
    conv = (await collect(ai2_v4_emulator, messages="Q1", return_conversation=True))[-2]
    stored = json.loads(json.dumps(conv.get_dict()))
    assert set(stored) == {"model", "messages", "parent", "thread_id", "x_anonymous_user_id"}
    restored = Conversation.from_dict(stored)
    assert restored == conv and restored is not conv
    chunks = await collect(ai2_v4_emulator, messages="Q2", conversation=restored)
    assert text_of(chunks)
    req = ai2_v4_emulator.requests[-1]
    assert req.form["parent"] == stored["parent"]
    assert req.headers["X-Anonymous-User-ID"] == stored["x_anonymous_user_id"]
    assert len(restored.messages) == 4 and len(conv.messages) == 2


async def test_system_rooted_thread_of_an_olmo_model_continues(ai2_v4_emulator):
    ai2_v4_emulator.push(Script("One."), Script("Two."))
    conv = (
        await collect(ai2_v4_emulator, "OLMo-2-1124-13B-Instruct", "Q1", return_conversation=True)
    )[-2]
    reply = ai2_v4_emulator.messages[conv.parent]
    user = ai2_v4_emulator.messages[reply["parent"]]
    system = ai2_v4_emulator.messages[user["parent"]]
    assert (reply["role"], user["role"], system["role"]) == ("assistant", "user", "system")
    chunks = await collect(ai2_v4_emulator, "", "Q2", conversation=conv)
    assert text_of(chunks) == "Two."
    assert ai2_v4_emulator.requests[-1].form["parent"] == reply["id"]
    assert ai2_v4_emulator.requests[-1].form["model"] == "OLMo-2-1124-13B-Instruct"
    assert conv.messages[-1] == {"role": "assistant", "content": "Two."}


async def test_follow_up_with_another_anonymous_id_is_refused(ai2_v4_emulator):
    conv = (await collect(ai2_v4_emulator, return_conversation=True))[-2]
    stranger = Conversation(conv.model, parent=conv.parent)
    with pytest.raises(MissingAuthError) as info:
        await collect(ai2_v4_emulator, conversation=stranger)
    assert info.value.status == 403 and "AllenAI" in str(info.value)
    assert stranger.messages == []


async def test_unknown_parent_is_a_400(ai2_v4_emulator):
    with pytest.raises(ResponseStatusError) as info:
        await collect(
            ai2_v4_emulator, conversation=Conversation("tulu3-405b", parent="msg_NOPE000000")
        )
    assert info.value.status == 400 and "msg_NOPE000000" in str(info.value)


def test_conversation_repr_hides_the_anonymous_id():
    conv = Conversation("tulu3-405b", x_anonymous_user_id="very-private-id")
    assert "very-private-id" not in repr(conv)
    assert conv.get_dict()["x_anonymous_user_id"] == "very-private-id"
    assert str(conv) == ""


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, error_type",
    [
        (500, ResponseStatusError),
        (400, ResponseStatusError),
        (401, MissingAuthError),
        (403, MissingAuthError),
        (429, RateLimitError),
    ],
)
async def test_http_status_faults(ai2_v4_emulator, status, error_type):
    ai2_v4_emulator.script = Script(
        fault=Fault.http_status(status, "upstream says no", retry_after=7)
    )
    with pytest.raises(error_type) as info:
        await collect(ai2_v4_emulator)
    err = info.value
    assert err.status == status and err.provider == "AllenAI"
    assert "AllenAI" in str(err) and "upstream says no" in str(err) and str(status) in str(err)
    assert json.loads(err.body) == {"error": {"code": status, "message": "upstream says no"}}
    if status == 429:
        assert err.retry_after == 7


async def test_error_line_raises_stream_error_after_the_final_line(ai2_v4_emulator):
    ai2_v4_emulator.script = Script(
        chunks=["par", "tial", " rest"],
        fault=Fault.error_event("model overloaded", after=2, reason="grpc inference failed"),
    )
    conv = Conversation("tulu3-405b")
    seen = []
    with pytest.raises(StreamError) as info:
        async for chunk in AllenAI.create_async_generator(
            "",
            "Hi",
            base_url=ai2_v4_emulator.url,
            api_version="v4",
            conversation=conv,
            return_conversation=True,
        ):
            seen.append(chunk)
    err = info.value
    assert seen == ["par", "tial"]
    assert "AllenAI" in str(err) and "model overloaded" in str(err)
    assert "grpc inference failed" in str(err)
    assert conv.messages == [] and conv.parent is None  # a failed turn is not history
    # The emulator wrote its final line (the reply is finalized, not aborted by the client).
    (reply,) = [m for m in ai2_v4_emulator.messages.values() if m["role"] == "assistant"]
    assert reply["finish_reason"] == "grpc inference failed"
    assert ai2_v4_emulator.open_streams == 0


async def test_disconnect_mid_stream(ai2_v4_emulator):
    ai2_v4_emulator.script = Script(fault=Fault.disconnect(after=2))
    with pytest.raises(ProviderConnectionError) as info:
        await collect(ai2_v4_emulator)
    assert "AllenAI" in str(info.value)


async def test_malformed_line(ai2_v4_emulator):
    ai2_v4_emulator.script = Script(fault=Fault.malformed(after=1))
    with pytest.raises(ResponseError) as info:
        await collect(ai2_v4_emulator)
    assert "AllenAI" in str(info.value) and "malformed" in str(info.value)


async def test_stall_times_out(ai2_v4_emulator):
    ai2_v4_emulator.script = Script(fault=Fault.stall(3.0, after=1))
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError) as info:
        await collect(ai2_v4_emulator, timeout=0.3)
    assert time.monotonic() - started < 2.5
    assert "AllenAI" in str(info.value)


async def test_stream_without_final_line_is_a_response_error(ai2_v4_emulator):
    ai2_v4_emulator.script = Script("no end", extra={"final_line": False})
    chunks = []
    with pytest.raises(ResponseError) as info:
        async for chunk in AllenAI.create_async_generator(
            "", "Hi", base_url=ai2_v4_emulator.url, api_version="v4"
        ):
            chunks.append(chunk)
    assert "AllenAI" in str(info.value) and "final" in str(info.value)
    assert chunks == ["no", " end"]  # text came, but no FinishReason


# -- stopping early --------------------------------------------------------------------------


async def test_early_stop_closes_the_stream(ai2_v4_emulator):
    ai2_v4_emulator.script = Script(chunks=[f"w{i} " for i in range(200)], delay=0.01)
    agen = AllenAI.create_async_generator("", "Hi", base_url=ai2_v4_emulator.url, api_version="v4")
    got = [await agen.__anext__(), await agen.__anext__()]
    assert got == ["w0 ", "w1 "]
    assert ai2_v4_emulator.open_streams == 1
    await agen.aclose()
    await eventually(lambda: ai2_v4_emulator.open_streams == 0)
    # The server saw the client go away: the reply is finalized as aborted, nothing else
    # exists upstream to delete (Ai2 threads are the conversation state itself).
    (reply,) = [m for m in ai2_v4_emulator.messages.values() if m["role"] == "assistant"]
    await eventually(lambda: reply["finish_reason"] == "aborted")
    assert len(ai2_v4_emulator.requests) == 1


async def test_task_cancellation_closes_the_stream(ai2_v4_emulator):
    ai2_v4_emulator.script = Script(chunks=[f"w{i} " for i in range(200)], delay=0.01)
    await cancel_mid_stream(
        AllenAI.create_async_generator("", "Hi", base_url=ai2_v4_emulator.url, api_version="v4"),
        first_within=3,
    )
    await eventually(lambda: ai2_v4_emulator.open_streams == 0)


# -- sync API, proxy -------------------------------------------------------------------------


def test_sync_create_completion(ai2_v4_emulator):
    ai2_v4_emulator.script = Script(chunks=["sync ", "works"])
    chunks = list(
        AllenAI.create_completion("", "Hi", base_url=ai2_v4_emulator.url, api_version="v4")
    )
    assert chunks[:2] == ["sync ", "works"] and chunks[-1].reason == "stop"
    whole = list(
        AllenAI.create_completion(
            "", "Hi", stream=False, base_url=ai2_v4_emulator.url, api_version="v4"
        )
    )
    assert whole[0] == "sync works"


def test_sync_early_close(ai2_v4_emulator):
    ai2_v4_emulator.script = Script(chunks=[f"w{i} " for i in range(200)], delay=0.01)
    stream = AllenAI.create_completion("", "Hi", base_url=ai2_v4_emulator.url, api_version="v4")
    assert next(stream) == "w0 "
    stream.close()
    deadline = time.monotonic() + 3
    while ai2_v4_emulator.open_streams and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ai2_v4_emulator.open_streams == 0


async def test_create_async_returns_the_whole_text(ai2_v4_emulator):
    assert await AllenAI.create_async("", "Hi", base_url=ai2_v4_emulator.url, api_version="v4") == (
        "Hello! How can I help you today?"
    )


async def test_base_url_from_environment(ai2_v4_emulator, monkeypatch):
    monkeypatch.setenv("LLMPLEX_ALLENAI_BASE_URL", ai2_v4_emulator.url)
    assert await AllenAI.create_async("", "Hi", api_version="v4") == (
        "Hello! How can I help you today?"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_requests_go_through_the_proxy(ai2_v4_emulator):
    port = _free_port()
    proxy = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pproxy",
        "-l",
        f"http://127.0.0.1:{port}",
        "-v",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
            else:
                writer.close()
                await writer.wait_closed()
                break
        text = await AllenAI.create_async(
            "",
            "через прокси",
            base_url=ai2_v4_emulator.url,
            api_version="v4",
            proxy=f"http://127.0.0.1:{port}",
        )
        assert text == "Hello! How can I help you today?"
        assert ai2_v4_emulator.requests[-1].form["content"] == "через прокси"
    finally:
        proxy.terminate()
        log = (await asyncio.wait_for(proxy.communicate(), 5))[0].decode()
    emulator_port = ai2_v4_emulator.url.rsplit(":", 1)[1]
    assert f"-> 127.0.0.1:{emulator_port}" in log


async def test_unreachable_proxy_is_a_connection_error(ai2_v4_emulator):
    with pytest.raises(ProviderConnectionError) as info:
        await collect(ai2_v4_emulator, proxy=f"http://user:pw@127.0.0.1:{_free_port()}")
    assert "AllenAI" in str(info.value) and "pw" not in str(info.value)


# -- the emulator on the wire ----------------------------------------------------------------


async def test_emulator_wire_format(ai2_v4_emulator):
    ai2_v4_emulator.script = Script(chunks=["a", "b"])
    status, ctype, body = await raw_post(
        ai2_v4_emulator,
        [("model", "olmoe-0125"), ("host", "modal"), ("content", "hé")],
        {"X-Anonymous-User-ID": "anon-1"},
    )
    assert status == 200 and ctype == "application/jsonl"
    lines = body.decode("utf-8").split("\n")
    assert lines[-1] == ""
    objects = [json.loads(line) for line in lines[:-1]]
    for line, obj in zip(lines, objects, strict=False):
        assert line == json.dumps(obj)  # Python's default spacing
    first, *chunks, final = objects
    assert first["role"] == "system" and first["final"] is False and first["parent"] is None
    user = first["children"][0]
    reply = user["children"][0]
    assert (user["role"], user["content"], reply["role"]) == ("user", "hé", "assistant")
    assert all(MSG_ID.match(m["id"]) for m in (first, user, reply))
    assert reply["root"] == user["root"] == first["id"]
    assert chunks == [
        {"message": reply["id"], "content": "a", "logprobs": []},
        {"message": reply["id"], "content": "b", "logprobs": []},
    ]
    final_reply = final["children"][0]["children"][0]
    assert final["final"] is True
    assert (final_reply["content"], final_reply["final"], final_reply["finish_reason"]) == (
        "ab",
        True,
        "stop",
    )
    assert list(first) == [
        "id",
        "content",
        "snippet",
        "creator",
        "role",
        "opts",
        "root",
        "created",
        "model_id",
        "model_host",
        "deleted",
        "parent",
        "template",
        "logprobs",
        "children",
        "completion",
        "final",
        "original",
        "private",
        "model_type",
        "finish_reason",
        "harmful",
        "expiration_time",
        "labels",
        "file_urls",
    ]


async def test_emulator_error_line_then_final_line(ai2_v4_emulator):
    ai2_v4_emulator.script = Script(
        chunks=["x", "y"], fault=Fault.error_event("boom", after=1, reason="length")
    )
    status, _, body = await raw_post(
        ai2_v4_emulator,
        [("model", "tulu3-405b"), ("host", "inferd"), ("content", "q")],
        {"X-Anonymous-User-ID": "anon-1"},
    )
    objects = [json.loads(line) for line in body.decode().splitlines()]
    assert status == 200 and len(objects) == 4
    reply_id = objects[0]["children"][0]["id"]
    assert objects[2] == {"message": reply_id, "error": "boom", "reason": "length"}
    assert objects[3]["final"] is True and objects[3]["children"][0]["content"] == "x"


async def test_emulator_auth_rules(ai2_v4_emulator):
    fields = [("model", "tulu3-405b"), ("host", "inferd"), ("content", "q")]
    status, ctype, body = await raw_post(ai2_v4_emulator, fields)
    assert status == 401 and ctype == "application/json"
    assert json.loads(body)["error"]["code"] == 401
    status, _, _ = await raw_post(ai2_v4_emulator, fields, {"Authorization": "Bearer nope"})
    assert status == 401
    ai2_v4_emulator.tokens["good-token"] = "user-42"
    fields.append(("private", "false"))
    status, _, body = await raw_post(
        ai2_v4_emulator, fields, {"Authorization": "Bearer good-token"}
    )
    first = json.loads(body.splitlines()[0])
    assert status == 200 and first["creator"] == "user-42" and first["private"] is False
    status, _, body = await raw_post(ai2_v4_emulator, fields, {"X-Anonymous-User-ID": "anon-2"})
    assert status == 200 and json.loads(body.splitlines()[0])["private"] is True
    assert len(ai2_v4_emulator.requests) == 4  # every request is recorded, refused ones too
