"""AllenAI (Ai2 Playground) on its current API, v5 ``/v5/threads/chat``, against the v5
emulator over real sockets on 127.0.0.1. The retired v4 protocol: test_allenai_v4.py."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import warnings

import aiohttp
import openai
import pytest

from llmplex import AsyncClient
from llmplex.emulators.ai2 import EMULATED_TOKEN, EMULATED_USER, MODELS, Ai2Emulator
from llmplex.errors import (
    InvalidRequestError,
    MissingAuthError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderWarning,
    RateLimitError,
    ResponseError,
    ResponseStatusError,
    StreamError,
)
from llmplex.http.ndjson import NDJSONDecoder
from llmplex.providers import AllenAI
from llmplex.providers.ai2_v5 import ChunkReader
from llmplex.providers.allenai import API_KEY_ENV, Conversation
from llmplex.routing import Router
from llmplex.server import ServerThread, create_app
from llmplex.server.emulated import EmulatedServices, emulated_client
from llmplex.testing import Fault, Script, cancel_mid_stream, eventually, serve
from llmplex.types import FinishReason, ReasoningDelta, ToolCallDelta

CHAT = "/v5/threads/chat"
MSG_ID = re.compile(r"^msg_([A-Z][0-9]){5}$")
WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
IMAGE = {
    "type": "image_url",
    "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
}


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    AllenAI.catalogue.clear()
    yield
    AllenAI.catalogue.clear()


async def collect(emu, model="", messages="Hi", **kwargs):
    kwargs.setdefault("base_url", emu.url)
    if "captcha_token" not in kwargs:
        kwargs.setdefault("api_key", EMULATED_TOKEN)
    return [c async for c in AllenAI.create_async_generator(model, messages, **kwargs)]


def text_of(chunks) -> str:
    return "".join(c for c in chunks if isinstance(c, str))


def chats(emu):
    return emu.requests_to(CHAT, "POST")


async def raw_post(emu, fields, headers=None, files=()):
    """A hand-made request, to check what the emulator itself enforces and sends."""
    form = aiohttp.FormData(charset="utf-8")
    for key, value in fields:
        form.add_field(key, value, content_type="text/plain; charset=utf-8")
    for name, ctype, data in files:
        form.add_field("files", data, filename=name, content_type=ctype)
    async with aiohttp.ClientSession() as session:
        async with session.post(emu.url + CHAT, data=form, headers=headers or {}) as resp:
            return resp.status, resp.headers.get("Content-Type"), await resp.read()


def lines_of(body: bytes) -> list[dict]:
    text = body.decode("utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


SIGNED_IN = {"Authorization": f"Bearer {EMULATED_TOKEN}"}


# -- models ----------------------------------------------------------------------------------


def test_builtin_models_and_their_capabilities():
    assert AllenAI.default_model == "olmo-3.1-32b-instruct"
    assert AllenAI.get_models()[:4] == [
        "olmo-3.1-32b-instruct",
        "olmo-3.1-32b-think",
        "molmo2-8b",
        "molmo2-4b",
    ]
    assert AllenAI.get_model("") == "olmo-3.1-32b-instruct"
    assert AllenAI.get_model("olmo-3.1-32b") == "olmo-3.1-32b-instruct"
    instruct = AllenAI.capabilities_for("olmo-3.1-32b-instruct")
    think = AllenAI.capabilities_for("olmo-3.1-32b-think")
    molmo = AllenAI.capabilities_for("molmo2-8b")
    assert (instruct.tools, instruct.reasoning, instruct.images) == ("native", False, False)
    assert (think.tools, think.reasoning) == ("none", True)  # text only: tools get emulated
    assert (molmo.images, molmo.files, molmo.tools) == (True, True, "none")
    with pytest.raises(ModelNotFoundError) as info:
        AllenAI.get_model("olmo-3.1-32b-instrukt")
    assert "olmo-3.1-32b-instruct" in info.value.suggestions


async def test_models_come_from_the_models_endpoint_once(ai2_emulator):
    ai2_emulator.models["olmo-4-test"] = {
        **MODELS[0],
        "id": "olmo-4-test",
        "canCallTools": False,
        "canThink": True,
    }
    listed = await AllenAI.load_models(base_url=ai2_emulator.url)
    assert [m.id for m in listed] == [*(m["id"] for m in MODELS), "olmo-4-test"]
    assert "olmo-4-test" in AllenAI.get_models() and AllenAI.get_model("olmo-4-test")
    assert AllenAI.capabilities_for("olmo-4-test").reasoning is True
    (get,) = ai2_emulator.requests_to("/v5/models/")
    assert get.method == "GET" and "Authorization" not in get.headers  # anonymous is fine
    await collect(ai2_emulator, "olmo-4-test")
    await collect(ai2_emulator, "olmo-4-test")
    assert len(ai2_emulator.requests_to("/v5/models/")) == 1  # cached


async def test_first_call_reads_the_model_list(ai2_emulator):
    await collect(ai2_emulator)
    await collect(ai2_emulator)
    assert [r.path for r in ai2_emulator.requests] == ["/v5/models/", CHAT, CHAT]


async def test_unknown_model_is_the_servers_422(ai2_emulator):
    del ai2_emulator.models["molmo2-4b"]
    with pytest.raises(ResponseStatusError) as info:
        await collect(ai2_emulator, "molmo2-4b")
    err = info.value
    assert err.status == 422 and "Model with ID 'molmo2-4b' not found" in str(err)
    assert json.loads(err.body)["status"] == 422


# -- credentials and captcha -----------------------------------------------------------------


async def test_without_credentials_the_error_says_how_to_get_them(ai2_emulator):
    with pytest.raises(MissingAuthError) as info:
        await AllenAI.create_async("", "Hi", base_url=ai2_emulator.url)
    text = str(info.value)
    assert "AllenAI" in text and "captcha" in text and API_KEY_ENV in text
    assert "api_key=" in text and "captcha_token=" in text and "playground.allenai.org" in text
    assert ai2_emulator.requests == []
    assert AllenAI.working is False and API_KEY_ENV in AllenAI.why_not_working()


def test_working_follows_the_configuration(monkeypatch):
    assert AllenAI.why_not_working({"api_key": "t"}) is None
    assert AllenAI.why_not_working({"captcha_token": "t"}) is None
    monkeypatch.setenv(API_KEY_ENV, "token-from-env")
    assert AllenAI.working is True and AllenAI.why_not_working() is None


async def test_bearer_mode_needs_no_browser(ai2_emulator):
    chunks = await collect(ai2_emulator, return_conversation=True)
    (req,) = chats(ai2_emulator)
    assert req.headers["Authorization"] == f"Bearer {EMULATED_TOKEN}"
    assert "X-Anonymous-User-ID" not in req.headers  # a bad token must be a 401
    assert req.form["captchaToken"]  # present, as the server wants; not assessed
    conv = chunks[-2]
    assert ai2_emulator.messages[conv.parent]["creator"] == EMULATED_USER


async def test_api_key_from_the_environment(ai2_emulator, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, EMULATED_TOKEN)
    assert await AllenAI.create_async("", "Hi", base_url=ai2_emulator.url) == (
        "Hello! How can I help you today?"
    )


async def test_invalid_bearer_is_missing_auth_and_hides_the_token(ai2_emulator):
    with pytest.raises(MissingAuthError) as info:
        await collect(ai2_emulator, api_key="eyJ-not-a-valid-token")
    assert info.value.status == 401 and "Authentication required" in str(info.value)
    assert "eyJ-not-a-valid-token" not in repr(info.value)


async def test_captcha_minter_is_called_once_per_message(ai2_emulator):
    minted = []

    async def mint() -> str:
        await asyncio.sleep(0)
        token = ai2_emulator.mint_captcha()
        minted.append(token)
        return token

    first = await collect(ai2_emulator, messages="Q1", captcha_token=mint, return_conversation=True)
    conv = first[-2]
    await collect(ai2_emulator, messages="Q2", captcha_token=mint, conversation=conv)
    sent = chats(ai2_emulator)
    assert [r.form["captchaToken"] for r in sent] == minted and len(set(minted)) == 2
    assert {r.headers["X-Anonymous-User-ID"] for r in sent} == {conv.x_anonymous_user_id}
    assert all("Authorization" not in r.headers for r in sent)


async def test_a_captcha_string_is_used_as_given(ai2_emulator):
    token = ai2_emulator.mint_captcha()
    assert text_of(await collect(ai2_emulator, captcha_token=token))
    # single use, as reCAPTCHA's: the same token again is refused
    with pytest.raises(ResponseStatusError) as info:
        await collect(ai2_emulator, captcha_token=token)
    assert info.value.status == 400 and "Invalid captcha" in str(info.value)


async def test_low_captcha_score_fails_the_assessment(ai2_emulator):
    with pytest.raises(ResponseStatusError) as info:
        await collect(ai2_emulator, captcha_token=ai2_emulator.mint_captcha(score=0.1))
    assert info.value.status == 400 and "Captcha assessment failed" in str(info.value)


async def test_an_empty_captcha_is_the_servers_422_as_missing_auth(ai2_emulator):
    with pytest.raises(MissingAuthError) as info:
        await collect(ai2_emulator, captcha_token="")
    err = info.value
    assert err.status == 422 and "captchaToken" in str(err) and "captcha_token=" in str(err)


async def test_a_minter_returning_nothing_is_missing_auth(ai2_emulator):
    async def broken() -> str:
        return ""

    with pytest.raises(MissingAuthError, match="returned no token"):
        await collect(ai2_emulator, captcha_token=broken)


async def test_development_deployment_without_captcha():
    with serve(Ai2Emulator(Script("dev"), captcha="off")) as emu:
        status, _, body = await raw_post(
            emu,
            [("role", "user"), ("model", "molmo2-4b"), ("content", "hi")],
            {"X-Anonymous-User-ID": "anon"},
        )
        assert status == 200 and lines_of(body)[-1]["type"] == "end"


# -- answers ---------------------------------------------------------------------------------


async def test_new_thread(ai2_emulator):
    ai2_emulator.script = Script(chunks=["Hel", "lo", " wor", "ld"])
    chunks = await collect(
        ai2_emulator, messages=[{"role": "user", "content": "Hi"}], return_conversation=True
    )
    assert chunks[:4] == ["Hel", "lo", " wor", "ld"]
    conv, finish = chunks[4:]
    assert finish == FinishReason("stop")
    (req,) = chats(ai2_emulator)
    assert req.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert req.form == {
        "role": "user",
        "model": "olmo-3.1-32b-instruct",
        "content": "Hi",
        "captchaToken": req.form["captchaToken"],
        "private": "true",
    }
    assert conv.messages == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello world"},
    ]
    reply = ai2_emulator.messages[conv.parent]
    assert reply["role"] == "assistant" and MSG_ID.match(conv.parent)
    root = ai2_emulator.messages[conv.thread_id]
    assert root["role"] == "system" and root["parent"] is None  # the model's system prompt


async def test_continued_thread(ai2_emulator):
    ai2_emulator.push(Script("First answer."), Script("Second answer."))
    conv = (await collect(ai2_emulator, messages="Q1", return_conversation=True))[-2]
    first_reply, thread = conv.parent, conv.thread_id
    history = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Q2 ✓"},
    ]
    second = await collect(
        ai2_emulator, messages=history, conversation=conv, return_conversation=True
    )
    assert text_of(second) == "Second answer." and second[-2] is conv
    req = chats(ai2_emulator)[1]
    assert (req.form["content"], req.form["parent"], req.form["role"]) == (
        "Q2 ✓",
        first_reply,
        "user",
    )
    assert conv.thread_id == thread and ai2_emulator.messages[conv.parent]["root"] == thread
    assert conv.messages == [*history, {"role": "assistant", "content": "Second answer."}]
    # the state survives JSON (a store) and goes on from there
    restored = Conversation.from_dict(json.loads(json.dumps(conv.get_dict())))
    assert text_of(await collect(ai2_emulator, messages="Q3", conversation=restored))
    assert chats(ai2_emulator)[2].form["parent"] == conv.parent


async def test_anonymous_thread_keeps_its_identity_and_refuses_others(ai2_emulator):
    conv = (
        await collect(
            ai2_emulator, captcha_token=ai2_emulator.mint_captcha(), return_conversation=True
        )
    )[-2]
    assert ai2_emulator.messages[conv.parent]["creator"] == conv.x_anonymous_user_id
    stranger = Conversation(conv.model, parent=conv.parent)
    with pytest.raises(MissingAuthError) as info:
        await collect(
            ai2_emulator, conversation=stranger, captcha_token=ai2_emulator.mint_captcha()
        )
    err = info.value
    assert err.status == 403 and "Cannot create message when not creator" in str(err)
    assert stranger.messages == []


async def test_history_without_a_thread_goes_as_a_transcript(ai2_emulator):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    await collect(ai2_emulator, messages=messages)
    assert chats(ai2_emulator)[0].form["content"] == (
        "System: Be brief.\nUser: a\nAssistant: b\nUser: c\nAssistant:"
    )


async def test_thinking_streams_as_reasoning(ai2_emulator):
    ai2_emulator.script = Script("The answer is 4.", reasoning="Two plus two is four.")
    chunks = await collect(ai2_emulator, "olmo-3.1-32b-think", "2+2?")
    reasoning = [c for c in chunks if isinstance(c, ReasoningDelta)]
    assert "".join(r.text for r in reasoning) == "Two plus two is four."
    assert text_of(chunks) == "The answer is 4."
    assert chunks.index(reasoning[-1]) < chunks.index("The")  # thinking first
    # on the wire: the first reasoning fragment is inside the reply's addMessage
    token = ai2_emulator.mint_captcha()
    ai2_emulator.script = Script("Yes.", reasoning="Hmm, yes.")
    _, _, body = await raw_post(
        ai2_emulator,
        [
            ("role", "user"),
            ("model", "olmo-3.1-32b-think"),
            ("content", "q"),
            ("captchaToken", token),
        ],
        {"X-Anonymous-User-ID": "anon"},
    )
    lines = lines_of(body)
    add = next(line for line in lines if line["type"] == "addMessage")
    assert add["messages"][0]["thinking"] == "Hmm," and add["messages"][0]["content"] == ""
    assert [line["content"] for line in lines if line["type"] == "thinking"] == [" yes."]
    final = next(line for line in lines if line["type"] == "finalThread")
    assert final["messages"][-1]["thinking"] == "Hmm, yes."


async def test_options_arrive_in_the_form_and_unknown_ones_are_refused(ai2_emulator):
    await collect(
        ai2_emulator,
        temperature=0.5,
        top_p=0.9,
        max_tokens=64,
        private=False,
        stop=["\n\n", "User:"],
        extra_parameters={"seed": 7},
    )
    form = chats(ai2_emulator)[-1].form
    assert (form["temperature"], form["topP"], form["maxTokens"], form["private"]) == (
        "0.5",
        "0.9",
        "64",
        "false",
    )
    assert form["stop"] == ["\n\n", "User:"]
    assert json.loads(form["extraParameters"]) == {"seed": 7}
    for option in ({"seed": 3}, {"top_k": 3}, {"temprature": 0.5}):
        with pytest.raises(InvalidRequestError) as info:
            await collect(ai2_emulator, **option)
        assert info.value.param == next(iter(option))
    with pytest.raises(InvalidRequestError) as info:
        await collect(ai2_emulator, api_version="v6")
    assert info.value.param == "api_version"
    assert len(chats(ai2_emulator)) == 1


async def test_out_of_bounds_option_is_the_servers_validation_error(ai2_emulator):
    with pytest.raises(ResponseStatusError) as info:
        await collect(ai2_emulator, temperature=5)
    err = info.value
    assert err.status == 422 and "temperature" in str(err)
    assert json.loads(err.body)["errors"][0]["loc"] == ["body", "temperature"]


async def test_unicode_prompts_and_answers(ai2_emulator):
    prompt = "Привет, мир! 你好，世界 🎉👩‍💻 \r\n next"
    ai2_emulator.script = Script(chunks=["Ответ ", "答案 ", "😀", "!"])
    chunks = await collect(ai2_emulator, messages=prompt, return_conversation=True)
    assert text_of(chunks) == "Ответ 答案 😀!"
    req = chats(ai2_emulator)[0]
    assert req.form["content"] == prompt
    assert prompt.encode("utf-8") in req.body  # real UTF-8 multipart
    stored = ai2_emulator.messages[ai2_emulator.messages[chunks[-2].parent]["parent"]]
    assert stored["content"] == prompt.replace("\r\n", "\n")  # as the server keeps it


def test_final_thread_is_authoritative():
    # a reply whose last fragment never streamed: the final thread has it
    reader = ChunkReader()
    events = []
    for line in (
        {"message": "m", "type": "start"},
        {
            "message": "a",
            "id": "a",
            "type": "addMessage",
            "messages": [{"id": "a", "role": "assistant", "content": "Par", "final": False}],
        },
        {
            "message": "m",
            "id": "m",
            "type": "finalThread",
            "messages": [
                {"id": "u", "role": "user", "content": "q"},
                {
                    "id": "a",
                    "role": "assistant",
                    "content": "Partial",
                    "finishReason": "length",
                    "final": True,
                },
            ],
        },
        {"message": "m", "type": "end"},
    ):
        events += reader.feed(line)
    assert events == ["Par", "tial"] and reader.finish_reason() == "length"
    assert reader.last_id() == "a" and reader.ended


# -- tools -------------------------------------------------------------------------------


def _call_history(call_id, result="Rainy, 12 °C"):
    return [
        {"role": "user", "content": "Weather in Seattle?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Seattle"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]


async def test_tool_round_trip(ai2_emulator):
    ai2_emulator.push(
        Script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Seattle"}}]),
        Script("Seattle: rainy, 12 °C."),
    )
    first = await collect(
        ai2_emulator, messages="Weather in Seattle?", tools=WEATHER, return_conversation=True
    )
    deltas = [c for c in first if isinstance(c, ToolCallDelta)]
    call_id = deltas[0].id
    assert deltas[0].name == "get_weather" and call_id.startswith("call_")
    assert "".join(d.arguments for d in deltas) == '{"city":"Seattle"}'
    assert {d.index for d in deltas} == {0} and text_of(first) == ""
    conv, finish = first[-2:]
    assert finish == FinishReason("tool_calls")
    assert conv.messages[-1]["tool_calls"][0]["id"] == call_id
    req = chats(ai2_emulator)[0]
    assert req.form["enableToolCalling"] == "true"
    assert json.loads(req.form["toolDefinitions"]) == [
        {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": WEATHER[0]["function"]["parameters"],
        }
    ]
    second = await collect(
        ai2_emulator, messages=_call_history(call_id), tools=WEATHER, conversation=conv
    )
    assert text_of(second) == "Seattle: rainy, 12 °C." and second[-1] == FinishReason("stop")
    result = chats(ai2_emulator)[1].form
    assert (result["role"], result["toolCallId"], result["content"], result["parent"]) == (
        "tool_call_result",
        call_id,
        "Rainy, 12 °C",
        ai2_emulator.messages[result["parent"]]["id"],
    )
    assert ai2_emulator.messages[result["parent"]]["role"] == "assistant"


async def test_two_tool_results_are_chained(ai2_emulator):
    ai2_emulator.push(
        Script(
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_a"},
                {"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "call_b"},
            ]
        ),
        Script("Paris sunny, Oslo snowy."),
    )
    conv = (
        await collect(ai2_emulator, messages="Two cities?", tools=WEATHER, return_conversation=True)
    )[-2]
    history = [
        *conv.messages,
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "snowy"},
    ]
    chunks = await collect(ai2_emulator, messages=history, tools=WEATHER, conversation=conv)
    assert text_of(chunks) == "Paris sunny, Oslo snowy."
    first, second = chats(ai2_emulator)[1:]
    assert (first.form["toolCallId"], second.form["toolCallId"]) == ("call_a", "call_b")
    assert second.form["parent"] != first.form["parent"]  # chained under the first result
    assert ai2_emulator.messages[second.form["parent"]]["role"] == "tool_call_result"


async def test_tools_for_a_model_without_them_are_refused(ai2_emulator):
    with pytest.raises(InvalidRequestError) as info:
        await collect(ai2_emulator, "olmo-3.1-32b-think", tools=WEATHER)
    assert info.value.param == "tools" and "canCallTools" in str(info.value)
    with pytest.raises(InvalidRequestError) as info:
        await collect(ai2_emulator, tools=WEATHER, tool_choice="required")
    assert info.value.param == "tool_choice"
    assert chats(ai2_emulator) == []


async def test_tool_round_trip_through_async_client(ai2_emulator):
    ai2_emulator.push(
        Script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Seattle"}}]),
        Script("Rainy in Seattle."),
    )
    async with AsyncClient(
        provider_options={"AllenAI": {"base_url": ai2_emulator.url, "api_key": EMULATED_TOKEN}},
        router=Router(include_not_working=True),
    ) as client:
        model = "allenai:olmo-3.1-32b-instruct"
        first = await client.chat.completions.create(
            model=model, messages="Weather?", tools=WEATHER
        )
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert first.emulated is None  # the model's own tool calls, not the prompt's
        (call,) = choice.message.tool_calls
        assert (call.function.name, json.loads(call.function.arguments)) == (
            "get_weather",
            {"city": "Seattle"},
        )
        messages = _call_history(call.id, "rainy")
        messages[0]["content"] = "Weather?"
        second = await client.chat.completions.create(model=model, messages=messages, tools=WEATHER)
    assert second.choices[0].message.content == "Rainy in Seattle."
    result = chats(ai2_emulator)[1].form
    # no conversation given: the thread was found by its pending call
    assert result["role"] == "tool_call_result" and result["toolCallId"] == call.id


def test_tool_round_trip_through_llmplex_serve_with_the_openai_sdk():
    with EmulatedServices(["allenai"]) as services:
        emu = services.emulators["allenai"]
        emu.push(
            Script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]),
            Script("Oslo: snow, −3 °C."),
        )
        with ServerThread(create_app(emulated_client(services))) as server:
            with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as oai:
                model = "allenai:olmo-3.1-32b-instruct"
                first = oai.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": "Oslo weather?"}],
                    tools=WEATHER,
                )
                (call,) = first.choices[0].message.tool_calls
                assert first.choices[0].finish_reason == "tool_calls"
                assert json.loads(call.function.arguments) == {"city": "Oslo"}
                stream = oai.chat.completions.create(
                    model=model,
                    stream=True,
                    tools=WEATHER,
                    messages=[
                        {"role": "user", "content": "Oslo weather?"},
                        first.choices[0].message.model_dump(exclude_none=True),
                        {"role": "tool", "tool_call_id": call.id, "content": "snow, -3"},
                    ],
                )
                text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Oslo: snow, −3 °C."
    posted = emu.requests_to(CHAT)
    assert posted[1].form["toolCallId"] == call.id
    assert posted[0].headers["Authorization"] == f"Bearer {EMULATED_TOKEN}"


def test_providers_endpoint_says_why_not_working():
    import httpx

    with EmulatedServices(["allenai"]) as services:
        client = AsyncClient(
            provider_options={"AllenAI": {"base_url": services.urls()["allenai"]}},
            router=Router(include_not_working=True),
        )
        with ServerThread(create_app(client)) as server:
            table = {p["id"]: p for p in httpx.get(server.url + "/v1/providers").json()["data"]}
    ai2 = table["AllenAI"]
    assert ai2["working"] is False and API_KEY_ENV in ai2["not_working_reason"]
    assert ai2["capabilities"]["tools"] == "native"
    assert table["OpenAI"]["not_working_reason"] is None


# -- images ----------------------------------------------------------------------------------


async def test_image_part_goes_as_a_file_to_a_model_that_takes_files(ai2_emulator):
    ai2_emulator.script = Script("A single pixel.")
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE]}]
    chunks = await collect(ai2_emulator, "molmo2-8b", messages)
    assert text_of(chunks) == "A single pixel."
    (req,) = chats(ai2_emulator)
    assert req.form["content"] == "What is this?" and req.form["files"] == PNG
    assert ai2_emulator.files == [("image.png", "image/png", PNG)]


async def test_images_are_refused_where_they_cannot_go(ai2_emulator):
    messages = [{"role": "user", "content": [{"type": "text", "text": "?"}, IMAGE]}]
    with pytest.raises(InvalidRequestError) as info:
        await collect(ai2_emulator, "olmo-3.1-32b-instruct", messages)
    assert "acceptsFiles" in str(info.value)
    remote = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}}],
        }
    ]
    with pytest.raises(InvalidRequestError) as info:
        await collect(ai2_emulator, "molmo2-8b", remote)
    assert info.value.param == "messages[0].content[0].image_url.url"
    assert chats(ai2_emulator) == []
    bmp = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "?"},
                {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}},
            ],
        }
    ]
    with pytest.raises(ResponseStatusError) as info:
        await collect(ai2_emulator, "molmo2-8b", bmp)
    assert info.value.status == 400 and "Unsupported file types" in str(info.value)


# -- errors ----------------------------------------------------------------------------------


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
async def test_problem_json_errors_by_status(ai2_emulator, status, error_type):
    ai2_emulator.script = Script(fault=Fault.http_status(status, "upstream says no", retry_after=7))
    with pytest.raises(error_type) as info:
        await collect(ai2_emulator)
    err = info.value
    assert err.status == status and err.provider == "AllenAI"
    assert "upstream says no" in str(err) and str(status) in str(err)
    assert json.loads(err.body)["detail"] == "upstream says no"
    if status == 429:
        assert err.retry_after == 7


async def test_flagged_prompt_is_a_400(ai2_emulator):
    ai2_emulator.script = Script(extra={"flagged": True})
    with pytest.raises(ResponseStatusError) as info:
        await collect(ai2_emulator)
    assert info.value.status == 400 and "flagged as inappropriate" in str(info.value)


async def test_error_chunk_raises_after_the_stream_ended(ai2_emulator):
    ai2_emulator.script = Script(
        chunks=["par", "tial", " rest"], fault=Fault.error_event("inference failed", after=2)
    )
    conv = Conversation()
    seen = []
    with pytest.raises(StreamError) as info:
        async for chunk in AllenAI.create_async_generator(
            "",
            "Hi",
            base_url=ai2_emulator.url,
            api_key=EMULATED_TOKEN,
            conversation=conv,
            return_conversation=True,
        ):
            seen.append(chunk)
    assert seen == ["par", "tial"]
    assert "inference failed" in str(info.value) and "otherError" in str(info.value)
    assert conv.messages == [] and conv.parent is None  # a failed turn is not history
    assert ai2_emulator.open_streams == 0
    (reply,) = [m for m in ai2_emulator.messages.values() if m["role"] == "assistant"]
    assert reply["final"] and reply["errorSeverity"] == "error"


async def test_warning_chunk_is_a_warning_and_the_answer_goes_on(ai2_emulator):
    ai2_emulator.script = Script(
        chunks=["one ", "two"],
        fault=Fault.error_event("tool server slow", after=1, reason="warning"),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chunks = await collect(ai2_emulator)
    assert text_of(chunks) == "one two" and chunks[-1] == FinishReason("stop")
    (warning,) = [w for w in caught if issubclass(w.category, ProviderWarning)]
    assert "tool server slow" in str(warning.message) and "warning" in str(warning.message)


async def test_disconnect_and_malformed_and_missing_final_thread(ai2_emulator):
    ai2_emulator.script = Script(fault=Fault.disconnect(after=2))
    with pytest.raises(ProviderConnectionError):
        await collect(ai2_emulator)
    ai2_emulator.script = Script(fault=Fault.malformed(after=1))
    with pytest.raises(ResponseError, match="malformed"):
        await collect(ai2_emulator)
    ai2_emulator.script = Script("no end", extra={"final_thread": False})
    chunks = []
    with pytest.raises(ResponseError, match="finalThread"):
        async for chunk in AllenAI.create_async_generator(
            "", "Hi", base_url=ai2_emulator.url, api_key=EMULATED_TOKEN
        ):
            chunks.append(chunk)
    assert chunks == ["no", " end"]


async def test_emulator_validation_and_parent_rules(ai2_emulator):
    token = ai2_emulator.mint_captcha
    anon = {"X-Anonymous-User-ID": "anon-1"}
    status, ctype, body = await raw_post(
        ai2_emulator, [("model", "molmo2-4b"), ("content", "q")], SIGNED_IN
    )
    assert status == 422 and ctype == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == 422 and problem["errors"][0]["loc"] == ["body", "role"]
    # JSON is not a form: every field is missing
    async with aiohttp.ClientSession() as session:
        async with session.post(
            ai2_emulator.url + CHAT, json={"role": "user"}, headers=SIGNED_IN
        ) as resp:
            assert resp.status == 422
    # no identity at all
    status, _, body = await raw_post(ai2_emulator, [("role", "user")])
    assert status == 401 and json.loads(body)["detail"] == "Authentication required"
    # production: anonymous callers need a captcha
    status, _, body = await raw_post(
        ai2_emulator, [("role", "user"), ("model", "molmo2-4b"), ("content", "q")], anon
    )
    assert status == 422 and "captcha" in body.decode()
    fields = [("role", "user"), ("model", "molmo2-4b"), ("content", "q")]
    status, _, body = await raw_post(ai2_emulator, [*fields, ("captchaToken", token())], anon)
    final = next(line for line in lines_of(body) if line["type"] == "finalThread")
    user_id, reply_id = final["messages"][0]["id"], final["messages"][-1]["id"]
    # a user message under a user message
    status, _, body = await raw_post(
        ai2_emulator, [*fields, ("parent", user_id), ("captchaToken", token())], anon
    )
    assert status == 422 and "same role" in json.loads(body)["detail"]
    # visibility must match the thread's
    status, _, body = await raw_post(
        ai2_emulator,
        [*fields, ("parent", reply_id), ("private", "false"), ("captchaToken", token())],
        anon,
    )
    assert status == 422 and "Visibility" in json.loads(body)["detail"]
    # an unknown parent, and a tool result for no pending call
    status, _, _ = await raw_post(
        ai2_emulator, [*fields, ("parent", "msg_A0A0A0A0A0"), ("captchaToken", token())], anon
    )
    assert status == 422
    status, _, body = await raw_post(
        ai2_emulator,
        [
            ("role", "tool_call_result"),
            ("model", "molmo2-4b"),
            ("content", "r"),
            ("toolCallId", "call_x"),
            ("parent", reply_id),
            ("captchaToken", token()),
        ],
        anon,
    )
    assert status == 422 and "call_x" in json.loads(body)["detail"]


async def test_emulator_wire_format_and_threads(ai2_emulator):
    ai2_emulator.script = Script(chunks=["a", "b"])
    status, ctype, body = await raw_post(
        ai2_emulator,
        [("role", "user"), ("model", "molmo2-8b"), ("content", "hé"), ("captchaToken", "x")],
        SIGNED_IN,
    )
    assert status == 200 and ctype == "application/jsonl"
    lines = lines_of(body)
    for raw, line in zip(body.decode().splitlines(), lines, strict=False):
        assert raw == json.dumps(line, separators=(",", ":"), ensure_ascii=False)
    assert [line["type"] for line in lines] == [
        "start",
        "startThread",
        "addMessage",
        "modelResponse",
        "finalThread",
        "end",
    ]
    start, thread, add, delta, final, end = lines
    (user,) = thread["messages"]  # Molmo has no system prompt
    assert start["message"] == thread["id"] == user["id"] == user["root"] == end["message"]
    reply = add["messages"][0]
    assert (reply["content"], reply["parent"], reply["final"]) == ("a", user["id"], False)
    assert delta == {"message": reply["id"], "content": "b", "type": "modelResponse"}
    assert [m["final"] for m in final["messages"]] == [True, True]
    assert final["messages"][-1]["content"] == "ab"
    assert list(user)[:8] == [
        "id",
        "content",
        "inputParts",
        "creator",
        "role",
        "opts",
        "root",
        "created",
    ]
    # the thread, read and deleted by its owner only
    thread_url = ai2_emulator.url + "/v5/threads/" + user["id"]
    async with aiohttp.ClientSession() as session:
        async with session.get(thread_url, headers=SIGNED_IN) as resp:
            assert resp.status == 200
            assert [m["id"] for m in (await resp.json())["messages"]] == [user["id"], reply["id"]]
        async with session.delete(thread_url, headers={"X-Anonymous-User-ID": "someone"}) as resp:
            assert resp.status == 403
        async with session.delete(thread_url, headers=SIGNED_IN) as resp:
            assert resp.status == 204
        async with session.get(thread_url, headers=SIGNED_IN) as resp:
            assert resp.status == 404
    assert ai2_emulator.messages == {}


# -- byte splits -----------------------------------------------------------------------------


async def test_the_jsonl_split_at_every_byte_offset(ai2_emulator):
    ai2_emulator.script = Script(
        chunks=["Привет ", "😀", " 你好"],
        reasoning="мысль 🤔",
        fault=Fault.error_event("note", after=1, reason="info"),
    )
    _, _, body = await raw_post(
        ai2_emulator,
        [
            ("role", "user"),
            ("model", "olmo-3.1-32b-think"),
            ("content", "q"),
            ("captchaToken", "x"),
        ],
        SIGNED_IN,
    )

    def events(pieces):
        decoder, reader, out = NDJSONDecoder(), ChunkReader(), []
        for piece in pieces:
            for line in decoder.feed(piece):
                out += reader.feed(line)
        for line in decoder.close():
            out += reader.feed(line)
        return out + reader.flush(), reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProviderWarning)
        whole, reader = events([body])
        assert "".join(c for c in whole if isinstance(c, str)) == "Привет 😀 你好"
        assert "".join(c.text for c in whole if isinstance(c, ReasoningDelta)) == "мысль 🤔"
        assert reader.ended and reader.final is not None
        for at in range(len(body) + 1):
            assert events([body[:at], body[at:]])[0] == whole, at
        assert events([body[i : i + 1] for i in range(len(body))])[0] == whole


async def test_an_answer_written_one_byte_at_a_time():
    """A server that writes the v5 answer byte by byte, over a real socket."""
    from aiohttp import web

    from llmplex.emulators.server import EmulatorServer

    with serve(Ai2Emulator(Script(chunks=["Ü", "ber ", "😀"]))) as emu:
        _, _, body = await raw_post(
            emu,
            [("role", "user"), ("model", "molmo2-4b"), ("content", "q"), ("captchaToken", "x")],
            SIGNED_IN,
        )

    async def trickle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/jsonl"})
        await response.prepare(request)
        for i in range(len(body)):
            await response.write(body[i : i + 1])
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response(MODELS)

    class Trickle(Ai2Emulator):
        def routes(self):
            return [web.post(CHAT, trickle), web.get("/v5/models/", models)]

    server = EmulatorServer(Trickle())
    url = server.start()
    try:
        chunks = [
            c
            async for c in AllenAI.create_async_generator(
                "molmo2-4b", "q", base_url=url, api_key=EMULATED_TOKEN
            )
        ]
    finally:
        server.stop()
    assert chunks == ["Ü", "ber ", "😀", FinishReason("stop")]


# -- stopping early --------------------------------------------------------------------------


async def test_early_stop_and_cancellation_close_the_stream(ai2_emulator):
    ai2_emulator.script = Script(chunks=[f"w{i} " for i in range(200)], delay=0.01)
    agen = AllenAI.create_async_generator(
        "", "Hi", base_url=ai2_emulator.url, api_key=EMULATED_TOKEN
    )
    assert [await agen.__anext__(), await agen.__anext__()] == ["w0 ", "w1 "]
    await agen.aclose()
    await eventually(lambda: ai2_emulator.open_streams == 0)
    (reply,) = [m for m in ai2_emulator.messages.values() if m["role"] == "assistant"]
    await eventually(lambda: reply["finishReason"] == "aborted")
    await cancel_mid_stream(
        AllenAI.create_async_generator("", "Hi", base_url=ai2_emulator.url, api_key=EMULATED_TOKEN),
        first_within=3,
    )
    await eventually(lambda: ai2_emulator.open_streams == 0)


def test_conversation_repr_hides_the_anonymous_id():
    conv = Conversation("olmo-3.1-32b-instruct", x_anonymous_user_id="very-private-id")
    assert "very-private-id" not in repr(conv)
    assert conv.get_dict()["x_anonymous_user_id"] == "very-private-id"


# -- the command line ------------------------------------------------------------------------


def test_llmplex_emulate_allenai_for_another_process(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from llmplex.testing import interrupt, read_exports

    llmplex = shutil.which("llmplex", path=str(Path(sys.executable).parent)) or "llmplex"
    config = tmp_path / "config.toml"
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPLEX_") and k != API_KEY_ENV}
    env.update(
        LLMPLEX_CONFIG=str(config),
        LLMPLEX_DATA_DIR=str(tmp_path / "data"),
        PYTHONIOENCODING="utf-8",
    )
    process = subprocess.Popen(
        [llmplex, "emulate", "allenai", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        exports = read_exports(process)
        assert exports[API_KEY_ENV] == EMULATED_TOKEN and "LLMPLEX_ALLENAI_BASE_URL" in exports
        result = subprocess.run(
            [llmplex, "chat", "Hi", "-m", "allenai:olmo-3.1-32b-instruct"],
            env={**env, **exports},
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "local allenai emulator" in result.stdout
        # with its credentials configured, the provider reports itself usable
        listed = subprocess.run(
            [llmplex, "providers", "--json"],
            env={**env, **exports},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        ai2 = next(p for p in json.loads(listed.stdout) if p["name"] == "AllenAI")
        assert ai2["working"] is True and ai2["not_working_reason"] is None
    finally:
        code = interrupt(process)
        process.stdout.close()
        process.stderr.close()
    assert code == 0


# -- configuration ---------------------------------------------------------------------------


async def test_config_file_sets_the_api_version_and_credentials(
    tmp_path, ai2_v4_emulator, ai2_emulator
):
    from llmplex.config import load_config

    path = tmp_path / "config.toml"
    path.write_text(
        f'[providers.AllenAI]\napi_version = "v4"\nbase_url = "{ai2_v4_emulator.url}"\n'
    )
    config = load_config(path, environ={})
    assert config.providers["AllenAI"]["api_version"] == "v4"
    async with AsyncClient(config=path) as client:  # usable as configured: v4 and its URL
        done = await client.chat.completions.create(model="allenai:tulu3-405b", messages="Hi")
    assert done.choices[0].message.content == "Hello! How can I help you today?"
    assert ai2_v4_emulator.requests[-1].path == "/v4/message/stream"
    path.write_text(
        f'[providers.AllenAI]\napi_key = "{EMULATED_TOKEN}"\nbase_url = "{ai2_emulator.url}"\n'
    )
    async with AsyncClient(config=path) as client:
        done = await client.chat.completions.create(model="allenai:molmo2-4b", messages="Hi")
    assert done.provider == "AllenAI"
    assert chats(ai2_emulator)[-1].headers["Authorization"] == f"Bearer {EMULATED_TOKEN}"


async def test_tool_results_of_an_unknown_thread_go_as_a_transcript(ai2_emulator):
    ai2_emulator.script = Script("From the transcript: rainy.")
    chunks = await collect(
        ai2_emulator, messages=_call_history("call_from_elsewhere"), tools=WEATHER
    )
    assert text_of(chunks) == "From the transcript: rainy."
    (req,) = chats(ai2_emulator)
    assert req.form["role"] == "user" and "parent" not in req.form
    assert "Tool result (call_from_elsewhere): Rainy, 12 °C" in req.form["content"]
    assert 'Assistant called get_weather({"city":"Seattle"})' in req.form["content"]


async def test_native_tool_round_trip_in_a_stored_conversation(ai2_emulator):
    from llmplex.conversations import MemoryStore

    ai2_emulator.push(
        Script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Lima"}}]),
        Script("Lima: cloudy."),
    )
    async with AsyncClient(
        provider_options={"AllenAI": {"base_url": ai2_emulator.url, "api_key": EMULATED_TOKEN}},
        store=MemoryStore(),
    ) as client:
        conversation = await client.conversations.create(model="allenai:olmo-3.1-32b-instruct")
        first = await client.chat.completions.create(
            messages="Lima?", tools=WEATHER, conversation=conversation
        )
        (call,) = first.choices[0].message.tool_calls
        final = await client.chat.completions.create(
            messages=[{"role": "tool", "tool_call_id": call.id, "content": "cloudy"}],
            tools=WEATHER,
            conversation=conversation,
        )
    assert final.choices[0].message.content == "Lima: cloudy." and final.emulated is None
    _first_post, result = chats(ai2_emulator)
    assert result.form["role"] == "tool_call_result" and result.form["toolCallId"] == call.id
    assert ai2_emulator.messages[result.form["parent"]]["toolCalls"][0]["toolCallId"] == call.id
