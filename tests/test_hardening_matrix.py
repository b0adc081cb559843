"""The fault matrix: a hostile upstream of the project's own (llmplex.testing.hostile: raw
asyncio, nothing shared with the faithful emulators) driven through AsyncClient and through
``llmplex serve``. Every misbehaviour ends in llmplex's error tree (or a clean answer), in
bounded time, without a secret in what the caller sees, and with the upstream's
connections closed afterwards."""

from __future__ import annotations

import time

import httpx
import pytest

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.errors import (
    LLMplexError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseError,
    ResponseStatusError,
)
from llmplex.server import ServerThread, create_app
from llmplex.testing import eventually, wait_until
from llmplex.testing.hostile import hostile

KEY = "sk-hostile-test-0123456789"

# behaviour -> (what AsyncClient raises, or None for an answer; the server's status)
MATRIX = {
    "ok": (None, 200),
    "split-emoji": (None, 200),
    "keepalive": (ProviderTimeoutError, 504),
    "silent": (ProviderTimeoutError, 504),
    "cut": (ResponseError, 502),
    "huge-line": (ResponseError, 502),
    "huge-json": (ResponseError, 502),
    "retry-inf": (RateLimitError, 429),
    "echo": (ResponseStatusError, 502),
}


@pytest.fixture(scope="module")
def upstream():
    with hostile() as server:
        yield server


def client_for(upstream) -> AsyncClient:
    return AsyncClient(
        store=MemoryStore(),
        timeout=2,
        first_token_timeout=1,
        total_timeout=10,
        provider_options={"OpenAI": {"base_url": upstream.url + "/v1", "api_key": KEY}},
    )


@pytest.mark.parametrize("behaviour", list(MATRIX))
async def test_async_client(upstream, behaviour):
    expected, _ = MATRIX[behaviour]
    started = time.monotonic()
    async with client_for(upstream) as client:
        if expected is None:
            answer = await client.chat.completions.create(
                model=f"openai:{behaviour}", messages="Hi"
            )
            answer.choices[0].message.content.encode("utf-8")  # valid text
        else:
            with pytest.raises(expected) as info:
                await client.chat.completions.create(model=f"openai:{behaviour}", messages="Hi")
            assert isinstance(info.value, LLMplexError)
            assert KEY not in str(info.value) and KEY not in repr(info.value)
            assert KEY not in (info.value.body or "")
            if behaviour == "retry-inf":
                assert 0 < info.value.retry_after <= 300
    assert time.monotonic() - started < 30
    await eventually(lambda: upstream.open_connections == 0, timeout=10)


@pytest.mark.parametrize("behaviour", list(MATRIX))
def test_through_the_server(upstream, behaviour):
    _, status = MATRIX[behaviour]
    with ServerThread(create_app(client_for(upstream))) as server:
        for stream in (False, True):
            started = time.monotonic()
            response = httpx.post(
                server.url + "/v1/chat/completions",
                timeout=60,
                json={
                    "model": f"openai:{behaviour}",
                    "stream": stream,
                    "messages": [{"role": "user", "content": "Hi"}],
                },
            )
            assert time.monotonic() - started < 30
            assert KEY not in response.text
            if stream and behaviour == "cut":  # text went out first: an SSE error event
                assert response.status_code == 200
                assert "event: error" in response.text and "half an answer" in response.text
                assert response.text.rstrip().endswith("data: [DONE]")
                continue
            assert response.status_code == status, response.text
            if status == 429:
                assert 0 < int(response.headers["Retry-After"]) <= 300
            if status == 200:
                response.text.encode("utf-8")
                assert stream == response.text.startswith("data: ")
        providers = httpx.get(server.url + "/v1/providers", timeout=15).text
        assert KEY not in providers  # health's last_error included
    wait_until(lambda: upstream.open_connections == 0, timeout=10)


async def test_a_trickling_answer_ends_at_the_total_deadline(upstream):
    async with AsyncClient(
        store=MemoryStore(),
        total_timeout=1,
        provider_options={"OpenAI": {"base_url": upstream.url + "/v1", "api_key": KEY}},
    ) as client:
        stream = await client.chat.completions.create(
            model="openai:trickle", messages="Hi", stream=True
        )
        with pytest.raises(ProviderTimeoutError, match="total timeout"):
            async for _ in stream:
                pass
    await eventually(lambda: upstream.open_streams == 0, timeout=10)


async def test_a_connection_cut_mid_answer_after_text_is_raised_not_retried(upstream):
    async with client_for(upstream) as client:
        stream = await client.chat.completions.create(
            model="openai:cut", messages="Hi", stream=True
        )
        seen = []
        with pytest.raises((ResponseError, ProviderConnectionError)):
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.content or "")
        assert "".join(seen) == "half an answer"


def test_the_cli_with_debug_shows_no_key(upstream, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPLEX_")}
    (tmp_path / "config.toml").write_text("")
    env.update(
        LLMPLEX_CONFIG=str(tmp_path / "config.toml"),
        LLMPLEX_DATA_DIR=str(tmp_path),
        LLMPLEX_OPENAI_BASE_URL=upstream.url + "/v1",
        OPENAI_API_KEY=KEY,
    )
    llmplex = str(Path(sys.executable).parent / "llmplex")
    for behaviour in ("echo", "retry-inf"):
        result = subprocess.run(
            [llmplex, "--debug", "chat", "Hi", "-m", f"openai:{behaviour}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "Traceback" in result.stderr  # --debug really shows the details
        assert KEY not in result.stderr + result.stdout
