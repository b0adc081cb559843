"""config.toml (issue 11, item 6): every ``[providers.X]`` key is validated at load time,
and ``AsyncClient()`` reads the same configuration as the CLI."""

from __future__ import annotations

import pytest

from llmplex import AsyncClient
from llmplex.config import ConfigError, load_config
from llmplex.conversations import MemoryStore
from llmplex.emulators.openai import OpenAIEmulator
from llmplex.providers.endpoints import ENDPOINTS
from llmplex.testing import Script, serve


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    for endpoint in ENDPOINTS.values():
        monkeypatch.delenv(endpoint.api_key_env, raising=False)
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)


def write(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(tmp_path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)
    return info.value


def test_an_unknown_provider_key_has_a_did_you_mean(tmp_path):
    error = refused(tmp_path, '[providers.OpenAI]\napi_kye = "sk-1"\n')
    assert "[providers.OpenAI]" in str(error) and "'api_kye'" in str(error)
    assert "did you mean 'api_key'?" in str(error)
    assert error.suggestions == ["api_key"] and error.param == "api_kye"


def test_a_key_another_provider_takes_is_unknown_here(tmp_path):
    error = refused(tmp_path, '[providers.AllenAI]\ncookies = { a = "x" }\n')  # no cookies
    assert "unknown key 'cookies'" in str(error)


@pytest.mark.parametrize(
    "line, words",
    [
        ("api_key = 5", "'api_key' must be a non-empty string"),
        ("base_url = 1", "'base_url' must be a non-empty string"),
        ('headers = { "X-A" = 1 }', "'headers' must be a table of strings"),
        ('headers = "X-A: 1"', "'headers' must be a table of strings"),
        ("timeout = -1", "'timeout' must be a positive number"),
        ("timeout = true", "'timeout' must be a positive number"),
        ('timeout = "10"', "'timeout' must be a positive number"),
        ("first_token_timeout = -5", "first_token_timeout"),
    ],
)
def test_types_and_ranges_are_checked(tmp_path, line, words):
    error = refused(tmp_path, f"[providers.Replicate]\n{line}\n")
    assert "[providers.Replicate]" in str(error) and words in str(error)


def test_cookies_must_be_a_table_of_strings(tmp_path):
    error = refused(tmp_path, '[providers.OpenAssistant]\ncookies = ["a"]\n')
    assert "'cookies' must be a table of strings" in str(error)


@pytest.mark.parametrize(
    "proxy",
    ["not a url", "ftp://127.0.0.1:21", "http://:3128", "socks5:///x", "http://127.0.0.1:99999"],
)
def test_proxy_urls_are_checked_at_load_time(tmp_path, proxy):
    error = refused(tmp_path, f'[providers.Groq]\nproxy = "{proxy}"\n')
    assert "[providers.Groq]" in str(error) and "not a proxy URL" in str(error)
    assert proxy not in str(error)  # a proxy URL may hold a password: never echoed
    refused(tmp_path, f'proxy = "{proxy}"\n')


def test_a_valid_table_loads(tmp_path):
    path = write(
        tmp_path,
        """
timeout = 30
proxy = "socks5://127.0.0.1:9050"
[providers.groq]
api_key = "gsk-1"
base_url = "http://127.0.0.1:9/v1"
proxy = "http://user:pw@proxy.example:3128"
headers = { "X-Team" = "a" }
timeout = 10
first_token_timeout = 60
temperature = 0.2
[providers.OpenAssistant]
cookies = { "next-auth.session-token" = "t" }
""",
    )
    config = load_config(path, environ={})
    assert config.providers["Groq"]["timeout"] == 10
    assert config.providers["OpenAssistant"]["cookies"]
    assert config.proxy == "socks5://127.0.0.1:9050"


def test_the_environment_proxy_is_checked_too(tmp_path):
    with pytest.raises(ConfigError, match="LLMPLEX_PROXY"):
        load_config(write(tmp_path, ""), environ={"LLMPLEX_PROXY": "nope"})


async def test_async_client_reads_the_config_file(tmp_path, monkeypatch):
    with serve(OpenAIEmulator(Script("configured"), api_keys={"sk-from-file"})) as emulator:
        path = write(
            tmp_path,
            f"""
[providers.OpenAI]
base_url = "{emulator.url}/v1"
api_key = "sk-from-file"
""",
        )
        monkeypatch.setenv("LLMPLEX_CONFIG", str(path))
        async with AsyncClient(store=MemoryStore()) as client:
            answer = await client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
        assert answer.provider == "OpenAI"
        assert answer.choices[0].message.content == "configured"
        [request] = emulator.requests_to("/chat/completions")
        assert request.headers["Authorization"] == "Bearer sk-from-file"


def test_explicit_arguments_and_config_false_do_not_read_it(tmp_path, monkeypatch):
    path = write(
        tmp_path, '[providers.OpenAI]\napi_key = "sk-from-file"\n[router]\norder = ["Groq"]\n'
    )
    monkeypatch.setenv("LLMPLEX_CONFIG", str(path))
    assert "openai" in AsyncClient(store=MemoryStore()).provider_options
    assert list(AsyncClient(store=MemoryStore()).router.order) == ["Groq"]
    assert AsyncClient(config=False, store=MemoryStore()).provider_options == {}
    explicit = AsyncClient(provider_options={"Groq": {"api_key": "k"}}, store=MemoryStore())
    assert list(explicit.provider_options) == ["groq"]
    assert list(explicit.router.order) == []
    both = AsyncClient(
        provider_options={"Groq": {"api_key": "k"}}, config=True, store=MemoryStore()
    )
    assert list(both.provider_options) == ["groq"] and list(both.router.order) == ["Groq"]
    assert (
        AsyncClient(config=path, store=MemoryStore(), proxy="http://127.0.0.1:9").proxy
        == "http://127.0.0.1:9"
    )


def test_a_broken_config_fails_at_construction(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMPLEX_CONFIG", str(write(tmp_path, "[providers.OpenAI]\ntimeout = 0\n")))
    with pytest.raises(ConfigError):
        AsyncClient(store=MemoryStore())


def test_no_config_file_is_fine(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMPLEX_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no llmplex/config.toml there
    assert AsyncClient(store=MemoryStore()).provider_options == {}
