"""Prompt helpers, the error tree, types, and the cheap top-level import."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import pytest

from llmplex.errors import (
    AllProvidersFailed,
    InvalidRequestError,
    LLMplexError,
    MissingAuthError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseError,
    ResponseStatusError,
    StreamError,
)
from llmplex.http.status import error_for_status, extract_message, parse_retry_after
from llmplex.prompt import filter_none, format_prompt, get_last_user_message
from llmplex.types import FinishReason, JsonConversation, Usage


def test_import_llmplex_is_cheap():
    code = (
        "import sys, llmplex, llmplex.errors, llmplex.types, llmplex.prompt, llmplex.providers;"
        "heavy = [m for m in ('aiohttp', 'pydantic', 'starlette', 'uvicorn') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_making_a_client_loads_no_http_stack():
    """aiohttp comes with the first request, not with ``Client()`` (whose connection pool
    makes its connector on first use)."""
    code = (
        "import sys, llmplex; llmplex.Client(); llmplex.AsyncClient();"
        "print('aiohttp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- prompt --------------------------------------------------------------------------------


def test_format_prompt_single_message_is_its_content():
    assert format_prompt([{"role": "user", "content": "Hi"}]) == "Hi"
    assert format_prompt("Hi") == "Hi"


def test_format_prompt_several_messages():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ]
    before = copy.deepcopy(messages)
    assert format_prompt(messages) == (
        "System: Be brief.\nUser: Hi\nAssistant: Hello\nUser: Bye\nAssistant:"
    )
    assert messages == before  # never mutated


def test_get_last_user_message():
    messages = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
        {"role": "assistant", "content": "four"},
    ]
    assert get_last_user_message(messages) == "three"
    with pytest.raises(InvalidRequestError, match="no user message"):
        get_last_user_message([{"role": "system", "content": "x"}])


@pytest.mark.parametrize(
    "messages, fragment",
    [
        ([], "empty"),
        (None, "not NoneType"),
        ([{"role": "user"}], "messages[0].content must be a string"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": "x"}, "hello"], "messages[1] must be a dict"),
        (
            [{"role": "user", "content": ["parts"]}],
            "content[0] must be a content part object, not str",
        ),
    ],
)
def test_bad_messages_are_named(messages, fragment):
    with pytest.raises(InvalidRequestError) as info:
        format_prompt(messages)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_filter_none():
    assert filter_none(a=1, b=None, c=0, d="") == {"a": 1, "c": 0, "d": ""}


# -- errors --------------------------------------------------------------------------------


def test_error_tree_shape():
    assert issubclass(ResponseError, RuntimeError)
    assert issubclass(ResponseStatusError, ResponseError)
    assert issubclass(RateLimitError, ResponseStatusError)
    assert issubclass(StreamError, ResponseError)
    assert issubclass(ProviderTimeoutError, TimeoutError)
    assert issubclass(ProviderConnectionError, ConnectionError)
    for cls in (
        ModelNotFoundError,
        MissingAuthError,
        ResponseError,
        ProviderTimeoutError,
        AllProvidersFailed,
        InvalidRequestError,
        ProviderConnectionError,
    ):
        assert issubclass(cls, LLMplexError)


def test_error_message_names_provider_and_status():
    err = ResponseStatusError("Invalid model", provider="AllenAI", status=400, body="{}")
    assert str(err) == "AllenAI: HTTP 400: Invalid model"
    assert (err.provider, err.status, err.body) == ("AllenAI", 400, "{}")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is ResponseStatusError and str(again) == str(err)
    assert again.status == 400


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, ResponseStatusError),
        (401, MissingAuthError),
        (403, MissingAuthError),
        (404, ResponseStatusError),
        (429, RateLimitError),
        (500, ResponseStatusError),
        (503, ResponseStatusError),
    ],
)
def test_error_for_status_chooses_by_status(status, cls):
    err = error_for_status(status, '{"detail": "nope"}', provider="P", retry_after="3")
    assert type(err) is cls
    assert str(err) == f"P: HTTP {status}: nope"
    if cls is RateLimitError:
        assert err.retry_after == 3.0


def test_status_is_chosen_by_code_not_text():
    # "rate limit" in a 500 body is still a 500, not a RateLimitError.
    err = error_for_status(500, "rate limit exceeded", provider="P")
    assert type(err) is ResponseStatusError


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"error": {"code": 400, "message": "Invalid model/host"}}', "Invalid model/host"),
        (
            '{"error": "You need to accept the welcome modal first"}',
            "You need to accept the welcome modal first",
        ),
        ('{"title": "Unauthenticated", "detail": "bad token", "status": 401}', "bad token"),
        ('{"message": "Chat not found"}', "Chat not found"),
        (
            "Non-JSON form requests need to have a referer",
            "Non-JSON form requests need to have a referer",
        ),
        ("", ""),
    ],
)
def test_extract_message(body, message):
    assert extract_message(body) == message


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_all_providers_failed_is_a_summary_then_a_line_per_provider():
    from llmplex.routing import CoolingDown

    long = "x" * 5000
    err = AllProvidersFailed(
        [
            ("AllenAI", RateLimitError("slow down", provider="AllenAI", status=429)),
            ("Replicate", MissingAuthError("no key", provider="Replicate")),
            (
                "Groq",
                ResponseStatusError(f"first line {long}\nsecond", provider="Groq", status=500),
            ),
            ("OpenAI", MissingAuthError("no API key", provider="OpenAI")),
            ("Mistral", CoolingDown("skipped", provider="Mistral", retry_after=12.2)),
            ("Together", CoolingDown("skipped", provider="Together", retry_after=3.0)),
            ("DeepInfra", MissingAuthError("refused", provider="DeepInfra", status=401)),
        ],
        model="llama-3.1-8b",
    )
    lines = str(err).splitlines()
    print(str(err))  # shown with -s: what a user reads
    assert lines[0] == "all providers failed for model 'llama-3.1-8b':"
    assert lines[1] == "  AllenAI: HTTP 429: slow down"  # the provider named once
    assert lines[2].startswith("  Groq: HTTP 500: first line xxx") and lines[2].endswith("…")
    assert len(lines[2]) <= 202 and "second" not in str(err)  # one line, trimmed
    assert lines[3] == "  DeepInfra: HTTP 401: refused"  # a refused key is not a missing one
    # the providers without a key: one line, then the variables to set and the file
    assert lines[4] == "  no key for: Replicate, OpenAI"
    hint = " ".join(line.strip() for line in lines[5:-1])
    assert hint.startswith(
        "(set REPLICATE_API_TOKEN or OPENAI_API_KEY, or add api_key under [providers.<Name>] in "
    )
    assert hint.endswith("config.toml)")
    assert lines[-1] == "  cooling down for up to 12s after failing recently: Mistral, Together"
    assert max(map(len, lines)) <= 202
    assert not err.unconfigured
    # the errors themselves are kept as they were; pickling keeps all
    assert [name for name, _ in err.errors][:2] == ["AllenAI", "Replicate"]
    copy_ = pickle.loads(pickle.dumps(err))
    assert copy_.model == "llama-3.1-8b" and str(copy_) == str(err)
    assert [type(e) for _, e in copy_.errors] == [type(e) for _, e in err.errors]


def test_all_providers_failed_for_want_of_keys_only():
    err = AllProvidersFailed(
        [
            ("OpenAI", MissingAuthError("no API key", provider="OpenAI")),
            ("OpenAssistant", MissingAuthError("no cookies", provider="OpenAssistant")),
        ]
    )
    assert err.unconfigured
    text = str(err)
    assert text.splitlines()[:2] == ["all providers failed:", "  no key for: OpenAI, OpenAssistant"]
    # OpenAssistant reads no variable: its cookies go in the config file
    assert "(set OPENAI_API_KEY, or add api_key or cookies under" in " ".join(text.split())
    assert not AllProvidersFailed([]).unconfigured
    assert MissingAuthError("x").unconfigured and not MissingAuthError("x", status=403).unconfigured


# -- types ---------------------------------------------------------------------------------


def test_typed_chunks_join_to_text():
    chunks = ["Hel", "lo", Usage(3, 2), JsonConversation(a=1), FinishReason("stop")]
    assert "".join(map(str, chunks)) == "Hello"
    assert Usage(3, 2).total_tokens == 5
    assert FinishReason("stop") == FinishReason("stop") != FinishReason("length")


def test_json_conversation_round_trip_is_a_copy():
    conv = JsonConversation(model="m", messages=[{"role": "user", "content": "x"}])
    data = conv.get_dict()
    data["messages"].append({"role": "assistant", "content": "y"})
    assert len(conv.messages) == 1
    assert JsonConversation.from_dict(conv.get_dict()) == conv
