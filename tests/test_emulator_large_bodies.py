"""Every emulator takes a 2 MB prompt, through its provider, and answers it.

The Ai2 emulator used to answer 500 for multipart bodies over ~128 KiB (the parser fed the
cached body into a stream with flow control and no transport). These tests drive each
emulator with its real provider over a socket, and the multipart parser with hand-made
bodies: large fields, binary file parts, a preamble, a malformed body.
"""

from __future__ import annotations

import io

import aiohttp
import pytest

from llmplex.cookies import ENV_VAR
from llmplex.emulators import EMULATORS, Script, get_emulator, serve
from llmplex.emulators.ai2 import EMULATED_TOKEN
from llmplex.emulators.openassistant import OpenAssistantEmulator
from llmplex.errors import ResponseStatusError
from llmplex.providers import AllenAI, Anthropic, H2o, OpenAssistant, Replicate
from llmplex.providers.openai_compatible import OpenAICompatible

LINE = "Grüße aus Köln 😀 -- the quick brown fox jumps over the lazy dog\n"
PROMPT = LINE * (2_000_000 // len(LINE.encode()) + 1)  # a little over 2 MB of UTF-8
REPLY = "Read it all."
STREAM = "/v4/message/stream"


def text_of(chunks) -> str:
    return "".join(c for c in chunks if isinstance(c, str))


# aiohttp advises (ResourceWarning, an error in this suite) against sending a body over
# 1 MiB as raw bytes from the event loop; here the bodies are large on purpose.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Sending a large body directly with raw bytes:ResourceWarning"
)


@pytest.fixture(autouse=True)
def _no_user_cookie_files(tmp_path, monkeypatch):
    """OpenAssistant must never read the developer's real cookie files."""
    empty = tmp_path / "no-cookies"
    empty.mkdir()
    monkeypatch.setenv(ENV_VAR, str(empty))


def test_prompt_is_over_two_megabytes():
    assert len(PROMPT.encode()) > 2_000_000


async def test_allenai_takes_a_large_multipart_prompt():
    with serve(get_emulator("allenai")(Script(REPLY))) as emu:
        chunks = [
            c
            async for c in AllenAI.create_async_generator(
                "", PROMPT, base_url=emu.url, api_key=EMULATED_TOKEN
            )
        ]
        [record] = emu.requests_to("/v5/threads/chat", "POST")
    assert text_of(chunks) == REPLY
    assert record.headers["Content-Type"].startswith("multipart/form-data")
    assert len(record.body) > 2_000_000
    assert record.form["content"] == PROMPT


async def test_replicate_takes_a_large_prompt():
    with serve(get_emulator("replicate")(Script(REPLY))) as emu:
        chunks = [
            c
            async for c in Replicate.create_async_generator(
                "", PROMPT, base_url=emu.url, api_key="r8_test_key_0123456789"
            )
        ]
        [record] = emu.requests_to("/predictions", "POST")
    assert text_of(chunks) == REPLY
    assert PROMPT.rstrip("\n") in record.json["input"]["prompt"]


async def test_h2o_takes_a_large_prompt():
    with serve(get_emulator("h2o")(Script(REPLY))) as emu:
        chunks = [
            c async for c in H2o.create_async_generator("", PROMPT, base_url=emu.url, timeout=30)
        ]
        [record] = [r for r in emu.requests_to("/conversation/", "POST")]
    assert text_of(chunks) == REPLY
    assert PROMPT.rstrip("\n") in record.json["inputs"]


async def test_openassistant_takes_a_large_prompt_when_its_limit_allows():
    cookies = {"next-auth.session-token": "tok-large"}
    with serve(OpenAssistantEmulator(Script(REPLY), max_content_length=4_000_000)) as emu:
        chunks = [
            c
            async for c in OpenAssistant.create_async_generator(
                "", PROMPT, base_url=emu.url, cookies=cookies
            )
        ]
        [record] = emu.requests_to("/api/chat/prompter_message", "POST")
    assert text_of(chunks) == REPLY
    assert PROMPT.rstrip("\n") in record.json["content"]


async def test_openassistant_default_limit_is_a_clean_413():
    cookies = {"next-auth.session-token": "tok-large"}
    with serve(OpenAssistantEmulator(Script(REPLY))) as emu:
        with pytest.raises(ResponseStatusError) as info:
            async for _ in OpenAssistant.create_async_generator(
                "", PROMPT, base_url=emu.url, cookies=cookies
            ):
                pass
        assert emu.requests_to("/api/chat", "DELETE")  # the chat is still cleaned up
    assert info.value.status == 413


async def test_openai_takes_a_large_prompt():
    with serve(get_emulator("openai")(Script(REPLY))) as emu:
        chunks = [
            c
            async for c in OpenAICompatible.create_async_generator(
                "gpt-4o-mini", PROMPT, base_url=emu.url + "/v1"
            )
        ]
        [record] = emu.requests_to("/chat/completions", "POST")
    assert text_of(chunks) == REPLY
    assert record.json["messages"][-1]["content"] == PROMPT


async def test_anthropic_takes_a_large_prompt():
    with serve(get_emulator("anthropic")(Script(REPLY))) as emu:
        chunks = [
            c
            async for c in Anthropic.create_async_generator(
                "claude-sonnet-4-5", PROMPT, base_url=emu.url, api_key="sk-ant-test"
            )
        ]
        [record] = emu.requests_to("/v1/messages", "POST")
    assert text_of(chunks) == REPLY
    assert record.json["messages"][-1]["content"] == [{"type": "text", "text": PROMPT}]


def test_every_emulator_is_covered():
    # A new emulator must get its large-prompt test here too.
    assert set(EMULATORS) == {"allenai", "replicate", "h2o", "openassistant", "openai", "anthropic"}


# -- the multipart parser, with hand-made bodies ---------------------------------------------


async def post(emu, data, headers=None):  # to the v4 emulator: its form parser
    async with (
        aiohttp.ClientSession() as session,
        session.post(emu.url + STREAM, data=data, headers=headers or {}) as resp,
    ):
        return resp.status, await resp.read()


FIELDS = {"model": "tulu3-405b", "host": "inferd", "private": "true"}


def raw_body(
    boundary: str, parts: list[tuple[str, bytes]], preamble: bytes = b"", close: bool = True
) -> bytes:
    out = preamble + (b"\r\n" if preamble else b"")
    for headers, content in parts:
        out += b"--" + boundary.encode() + b"\r\n" + headers.encode() + b"\r\n\r\n" + content
        out += b"\r\n"
    return out + (b"--" + boundary.encode() + b"--\r\n" if close else b"")


async def test_multipart_large_binary_file_part_and_charsets(ai2_v4_emulator):
    blob = bytes(range(256)) * 8192 + b"\r\n--\r\n\r\n--" * 1000  # 2 MB, CRLFs and dashes
    big = "é" * 1_100_000
    body = raw_body(
        "7f3a9c",
        [
            *[
                (f'Content-Disposition: form-data; name="{key}"', value.encode())
                for key, value in FIELDS.items()
            ],
            (
                (
                    'Content-Disposition: form-data; name="content"\r\n'
                    "Content-Type: text/plain; charset=utf-8"
                ),
                big.encode(),
            ),
            (
                (
                    'Content-Disposition: form-data; name="content"\r\n'
                    "Content-Type: text/plain; charset=latin-1"
                ),
                "café".encode("latin-1"),
            ),
            (
                (
                    'Content-Disposition: form-data; name="attachment"; filename="blob.bin"\r\n'
                    "Content-Type: application/octet-stream"
                ),
                blob,
            ),
        ],
    )
    status, _ = await post(
        ai2_v4_emulator,
        io.BytesIO(body),
        {"Content-Type": "multipart/form-data; boundary=7f3a9c", "X-Anonymous-User-ID": "anon-1"},
    )
    record = ai2_v4_emulator.requests[-1]
    assert len(record.body) == len(body) > 4_000_000
    assert record.form["content"] == [big, "café"]
    assert record.form["attachment"] == blob
    assert {k: record.form[k] for k in FIELDS} == FIELDS
    assert status == 400  # two values for content: olmo-api's validation, not a crash


async def test_multipart_preamble_transfer_encodings_and_folded_headers(ai2_v4_emulator):
    boundary = "b0undary"
    body = raw_body(
        boundary,
        [
            ('Content-Disposition: form-data; name="model"', b"tulu3-405b"),
            ('Content-Disposition: form-data;\r\n name="host"', b"inferd"),
            (
                (
                    'Content-Disposition: form-data; name="content"\r\n'
                    "Content-Transfer-Encoding: base64"
                ),
                b"SGksIHRoZXJl",
            ),
            (
                (
                    'Content-Disposition: form-data; name="private"\r\n'
                    "Content-Transfer-Encoding: quoted-printable"
                ),
                b"tr=\r\nue",
            ),
            ("Content-Type: text/plain", b"a part without a name is skipped"),
        ],
        preamble=b"This is the preamble.",
    )
    status, _ = await post(
        ai2_v4_emulator,
        body,
        {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "X-Anonymous-User-ID": "anon-2",
        },
    )
    assert ai2_v4_emulator.requests[-1].form == {
        "model": "tulu3-405b",
        "host": "inferd",
        "content": "Hi, there",
        "private": "true",
    }
    assert status == 200


@pytest.mark.parametrize(
    "body, ctype",
    [
        (
            raw_body("xyz", [('Content-Disposition: form-data; name="model"', b"m")], close=False)[
                :-2
            ],
            "multipart/form-data; boundary=xyz",
        ),  # no closing delimiter
        (b"--xyz\r\nno header block", "multipart/form-data; boundary=xyz"),
        (b"nothing multipart here", "multipart/form-data; boundary=xyz"),
        (
            raw_body("xyz", [('Content-Disposition: form-data; name="model"', b"m")]),
            "multipart/form-data",
        ),  # no boundary
        (
            raw_body("xyz", [('Content-Disposition: form-data; name="content"', b"\xff\xfe")]),
            "multipart/form-data; boundary=xyz",
        ),  # not UTF-8
    ],
)
async def test_malformed_multipart_is_a_400_not_a_crash(ai2_v4_emulator, body, ctype):
    status, answer = await post(
        ai2_v4_emulator, body, {"Content-Type": ctype, "X-Anonymous-User-ID": "anon-3"}
    )
    assert ai2_v4_emulator.requests[-1].form == {}
    assert status == 400, answer
