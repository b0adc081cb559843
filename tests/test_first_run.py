"""A first run: ``llmplex chat`` and ``repl`` on a machine where nothing is configured (no
key, no config file: HOME and XDG_CONFIG_HOME in an empty directory) print one short line
saying which key to set, where the config file is and how to try offline; a partly
configured machine gets the summary with a line per provider."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from test_cli import run  # the installed command, in a subprocess

from llmplex.emulators.openai import OpenAIEmulator
from llmplex.server.emulated import EMULATED_NOTICE
from llmplex.testing import Fault, Script, serve

CONFIG = "~/.config/llmplex/config.toml"


@pytest.fixture
def fresh(tmp_path):
    """The environment of a new user: no provider variable, an empty home directory."""
    home = tmp_path / "home"
    home.mkdir()
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLMPLEX_", "XDG_")) and not k.endswith(("_API_KEY", "_API_TOKEN"))
    }
    environ.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        PYTHONIOENCODING="utf-8",
    )
    return environ


def assert_one_line(result, command):
    assert result.returncode == 2, result.stderr  # a configuration matter
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert len(line) < 200, len(line)
    assert "Traceback" not in result.stderr and "pass api_key" not in line
    assert f"edit {CONFIG}" in line
    assert f"try offline: llmplex {command} --emulate" in line
    return line


def test_chat_with_nothing_configured_says_what_to_set(fresh):
    result = run(fresh, "chat", "What is 2+2?")
    print(result.stderr)  # shown with -s: what a new user reads
    line = assert_one_line(result, "chat")
    assert line.startswith("llmplex: no provider is configured. Set one key (e.g. ")
    assert "REPLICATE_API_TOKEN" in line or "OPENAI_API_KEY" in line
    # the offline command it suggests works as written
    suggested = line.split("try offline: llmplex ", 1)[1]
    assert suggested == "chat --emulate 'What is 2+2?'"
    offline = run(fresh, "chat", "--emulate", "What is 2+2?")
    assert offline.returncode == 0 and offline.stdout.strip(), offline.stderr
    assert EMULATED_NOTICE in offline.stderr
    # a long or multi-line prompt is not repeated in the hint
    line = assert_one_line(run(fresh, "chat", "word " * 30), "chat")
    assert line.endswith('llmplex chat --emulate "..."')


def test_a_named_provider_without_its_key(fresh):
    line = assert_one_line(run(fresh, "chat", "hi", "-m", "openai:gpt-4o-mini"), "chat")
    assert line.startswith("llmplex: no API key for OpenAI. Set OPENAI_API_KEY or edit ")
    line = assert_one_line(run(fresh, "chat", "hi", "-m", "groq:llama-3.1-8b-instant"), "chat")
    assert "Set GROQ_API_KEY" in line


def test_repl_with_nothing_configured_says_it_once_and_leaves(fresh):
    result = run(fresh, "repl", input="hello\nsecond message\n")
    banner, *rest = result.stderr.splitlines()
    assert banner.startswith("llmplex ")
    assert_one_line(
        type(result)(result.args, result.returncode, result.stdout, "\n".join(rest)), "repl"
    )
    assert rest[0].endswith("try offline: llmplex repl --emulate")


def test_the_debug_flag_still_shows_the_traceback(fresh):
    result = run(fresh, "--debug", "chat", "hi")
    assert result.returncode == 2 and "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("llmplex: no provider is configured.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_partly_configured_machine_gets_the_summary(fresh):
    port = free_port()  # nothing listens there
    with serve(OpenAIEmulator(Script(fault=Fault.http_status(500, "meltdown")))) as oai:
        environ = {
            **fresh,
            "GROQ_API_KEY": "gsk-test",
            "OPENAI_API_KEY": "sk-test",
            "LLMPLEX_GROQ_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "LLMPLEX_OPENAI_BASE_URL": oai.url + "/v1",
        }
        config = Path(fresh["HOME"]) / ".config" / "llmplex" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(
            '[router]\naliases = { duo = ["openai:gpt-4o-mini", '
            '"groq:llama-3.1-8b-instant", "mistral:mistral-small-latest", '
            '"together:x"] }\n'
        )
        result = run(environ, "chat", "hi", "-m", "duo")
    print(result.stderr)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "llmplex: error: all providers failed for model 'duo':"
    assert lines[1] == "  OpenAI: HTTP 500: meltdown"
    assert lines[2].startswith("  Groq: cannot connect to ")
    assert lines[3] == "  no key for: Mistral, Together"
    hint = " ".join(line.strip() for line in lines[4:])
    assert hint == (
        "(set MISTRAL_API_KEY or TOGETHER_API_KEY, or add api_key under "
        f"[providers.<Name>] in {CONFIG})"
    )
    assert max(map(len, lines)) < 120


def test_a_provider_table_in_the_config_file_is_configuration(fresh):
    config = Path(fresh["HOME"]) / ".config" / "llmplex" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[providers.OpenAI]\nbase_url = "http://127.0.0.1:9/v1"\n')
    result = run(fresh, "chat", "hi", "-m", "openai:gpt-4o-mini")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        (
            "llmplex: error: MissingAuthError: OpenAI: no API key: set OPENAI_API_KEY or add "
            f"api_key under [providers.OpenAI] in {CONFIG}"
        )
    ]


LMSTUDIO = 1234  # LM Studio's port: a local server, reached when named without configuration


def test_repl_goes_on_once_something_answered(fresh):
    from test_local_servers import Listener

    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", LMSTUDIO))
    except OSError:
        pytest.skip(f"port {LMSTUDIO} is in use here")
    finally:
        probe.close()
    with serve(Listener(), "127.0.0.1", LMSTUDIO) as listener:
        result = run(
            fresh,
            "repl",
            "-m",
            "lmstudio:qwen",
            input=("hello\n/model openai:gpt-4o-mini\nagain\n/exit\n"),
        )
    assert result.returncode == 0, result.stderr
    assert len(listener.received) == 1 and result.stdout.strip() == "hi"
    first_run = [line for line in result.stderr.splitlines() if "try offline" in line]
    assert first_run == [
        (
            "llmplex: no API key for OpenAI. Set OPENAI_API_KEY or edit "
            f"{CONFIG}, or try offline: llmplex repl --emulate"
        )
    ]
