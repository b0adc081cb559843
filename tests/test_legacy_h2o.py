"""The legacy synchronous ``h2o`` module against the H2O emulator, over real sockets."""

from __future__ import annotations

import gc
import inspect

import pytest

from llmplex.errors import ModelNotFoundError, ResponseStatusError, StreamError
from llmplex.providers.legacy import h2o
from llmplex.testing import Fault, Script, wait_until

FALCON_7B = "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3"
INSTRUCTION = (
    "instruction: this is a conversation beween, a user and an AI assistant, "
    "respond to the latest message, referring to the conversation if needed\n"
)
DEFAULTS = {
    "temperature": 0.4,
    "truncate": 2048,
    "max_new_tokens": 1024,
    "do_sample": True,
    "repetition_penalty": 1.2,
    "return_full_text": False,
}
MESSAGES = [{"role": "user", "content": "Hello"}]


def generate_request(emulator):
    [request] = emulator.requests_to("/conversation/", "POST")
    return request


def closed(emulator) -> bool:
    """The stream is over and the conversation's DELETE has arrived."""
    return not emulator.open_streams and bool(emulator.requests_to("/conversation/", "DELETE"))


def assert_deleted(emulator):
    [delete] = emulator.requests_to("/conversation/", "DELETE")
    assert delete.path == generate_request(emulator).path
    assert emulator.conversations == {}


def test_module_attributes():
    assert h2o.url == "https://gpt-gm.h2o.ai"
    assert h2o.model == ["falcon-40b", "falcon-7b", "llama-13b"]
    assert h2o.models == {
        "falcon-40b": "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1",
        "falcon-7b": FALCON_7B,
        "llama-13b": "h2oai/h2ogpt-gm-oasst1-en-2048-open-llama-13b",
    }
    assert h2o.supports_stream is True
    assert h2o.needs_auth is False
    assert h2o.params == (
        "llmplex.providers.legacy.h2o supports: (model: str, messages: list, stream: bool)"
    )


def test_is_a_plain_generator_and_lazy(h2o_emulator):
    assert inspect.isgeneratorfunction(h2o._create_completion)
    gen = h2o._create_completion("falcon-40b", MESSAGES, True, base_url=h2o_emulator.url)
    assert inspect.isgenerator(gen)
    assert h2o_emulator.requests == []  # nothing is sent before iteration
    gen.close()
    assert h2o_emulator.requests == []


def test_yields_tokens_and_the_legacy_flow(h2o_emulator):
    chunks = ["Hello", " there", ",", " how", " are", " you", "?"]
    h2o_emulator.script = Script(chunks=chunks)
    tokens = list(h2o._create_completion("falcon-7b", MESSAGES, True, base_url=h2o_emulator.url))
    assert tokens == chunks  # tokens as TGI streamed them, not characters, no <|endoftext|>
    root, settings, create, generate, delete = h2o_emulator.requests
    assert (root.method, root.path, root.cookies) == ("GET", "/", {})
    cookie = settings.cookies["hf-chat"]  # from GET /, kept for the whole exchange
    assert {r.cookies["hf-chat"] for r in (create, generate, delete)} == {cookie}
    assert settings.form["activeModel"] == FALCON_7B
    assert settings.headers["Referer"] == h2o_emulator.url + "/"
    assert create.json == {"model": FALCON_7B}
    assert delete.method == "DELETE" and delete.path == generate.path
    assert generate.json["parameters"] == DEFAULTS


def test_legacy_prompt_exactly(h2o_emulator):
    messages = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Привет, 世界 👋"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "Again"},
    ]
    list(h2o._create_completion("falcon-40b", messages, True, base_url=h2o_emulator.url))
    assert generate_request(h2o_emulator).json["inputs"] == (
        INSTRUCTION + "system: Be kind.\nuser: Привет, 世界 👋\nassistant: Hi!\n"
        "user: Again\nassistant:"
    )


def test_kwargs_filtered_and_overrides(h2o_emulator):
    list(
        h2o._create_completion(
            "llama-13b",
            MESSAGES,
            stream=True,
            base_url=h2o_emulator.url,
            temperature=0.8,
            max_new_tokens=64,
            timeout=5,
            proxy=None,
            junk="nope",
            id="not-sent",
            web_search=True,
        )
    )
    body = generate_request(h2o_emulator).json
    assert body["parameters"] == {**DEFAULTS, "temperature": 0.8, "max_new_tokens": 64}
    assert set(body) == {"inputs", "parameters", "stream", "options"}
    assert "nope" not in generate_request(h2o_emulator).text
    assert body["options"]["id"] != "not-sent"


def test_stream_false_yields_the_whole_answer(h2o_emulator):
    h2o_emulator.script = Script(chunks=["a", "b", "c"])
    assert list(
        h2o._create_completion("falcon-40b", MESSAGES, False, base_url=h2o_emulator.url)
    ) == ["abc"]


def test_crlf_stream(h2o_emulator):
    h2o_emulator.crlf = True
    h2o_emulator.script = Script(chunks=["one", "\r\n", "two"])
    assert (
        "".join(h2o._create_completion("falcon-40b", MESSAGES, True, base_url=h2o_emulator.url))
        == "one\r\ntwo"
    )


async def test_works_inside_a_running_event_loop(h2o_emulator):
    h2o_emulator.script = Script(chunks=["inside", " a", " loop"])
    tokens = list(h2o._create_completion("falcon-40b", MESSAGES, True, base_url=h2o_emulator.url))
    assert tokens == ["inside", " a", " loop"]
    assert_deleted(h2o_emulator)


def test_early_stop_deletes(h2o_emulator):
    h2o_emulator.script = Script(chunks=[f" t{i}" for i in range(100)], delay=0.02)
    gen = h2o._create_completion("falcon-40b", MESSAGES, True, base_url=h2o_emulator.url)
    assert next(gen) == " t0"
    gen.close()
    wait_until(lambda: closed(h2o_emulator))
    assert h2o_emulator.open_streams == 0
    assert_deleted(h2o_emulator)


def test_abandoned_generator_deletes(h2o_emulator):
    h2o_emulator.script = Script(chunks=[f" t{i}" for i in range(100)], delay=0.02)
    for _token in h2o._create_completion("falcon-40b", MESSAGES, True, base_url=h2o_emulator.url):
        break  # the loop drops the generator: finalisation must clean up
    gc.collect()
    wait_until(lambda: closed(h2o_emulator))
    assert h2o_emulator.open_streams == 0
    assert_deleted(h2o_emulator)


def test_error_event_raises_and_deletes(h2o_emulator):
    h2o_emulator.script = Script(
        chunks=["a", "b"], fault=Fault.error_event("Out of memory", after=1)
    )
    seen = []
    with pytest.raises(StreamError, match="H2o: generation error: Out of memory"):
        for token in h2o._create_completion(
            "falcon-40b", MESSAGES, True, base_url=h2o_emulator.url
        ):
            seen.append(token)
    assert seen == ["a"]
    assert_deleted(h2o_emulator)


def test_status_error(h2o_emulator):
    h2o_emulator.script = Script(fault=Fault.http_status(410))
    with pytest.raises(ResponseStatusError, match="H2o: HTTP 410: Model not available") as info:
        list(h2o._create_completion("falcon-40b", MESSAGES, True, base_url=h2o_emulator.url))
    assert info.value.status == 410
    assert_deleted(h2o_emulator)


def test_unknown_model(h2o_emulator):
    with pytest.raises(ModelNotFoundError, match="H2o"):
        list(h2o._create_completion("gpt-5", MESSAGES, True, base_url=h2o_emulator.url))
    assert h2o_emulator.requests == []


def test_full_model_id_accepted(h2o_emulator):
    list(h2o._create_completion(FALCON_7B, MESSAGES, True, base_url=h2o_emulator.url))
    assert h2o_emulator.requests_to("/conversation", "POST")[0].json == {"model": FALCON_7B}


def test_stops_at_a_plain_endoftext_token(h2o_emulator):
    # A server that does not mark <|endoftext|> special: the old module stopped there too.
    h2o_emulator.script = Script(chunks=["a", "<|endoftext|>", "b"])
    assert list(
        h2o._create_completion("falcon-40b", MESSAGES, True, base_url=h2o_emulator.url)
    ) == ["a"]
    wait_until(lambda: closed(h2o_emulator))
    assert_deleted(h2o_emulator)
