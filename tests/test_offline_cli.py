"""The offline CLI: ``chat --emulate``, ``repl --emulate`` (and ``LLMPLEX_EMULATE=1``)
answer from the local emulators in-process, marked as emulated; they and ``llmplex
emulate`` work without the ``[server]`` extra (FastAPI, uvicorn)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from test_cli import LLMPLEX, Terminal, run  # the same helpers (tests/ is on sys.path)

from llmplex.server.app import EMULATED_NOTICE as APP_NOTICE
from llmplex.server.emulated import EMULATED_NOTICE
from llmplex.testing import interrupt, read_exports

CANNED = "This answer is canned: llmplex is running offline"


@pytest.fixture
def env(tmp_path):
    """A user with nothing configured: no keys, no base URLs."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLMPLEX_") and not k.endswith(("_API_KEY", "_API_TOKEN"))
    }
    config = tmp_path / "config.toml"
    config.write_text("")
    environ.update(
        LLMPLEX_CONFIG=str(config),
        LLMPLEX_DATA_DIR=str(tmp_path / "data"),
        PYTHONIOENCODING="utf-8",
    )
    return environ


@pytest.fixture
def no_server_extra(env, tmp_path):
    """``env`` as on a base install: ``import fastapi`` / ``uvicorn`` fail."""
    blocked = tmp_path / "blocked"
    for name in ("fastapi", "uvicorn", "starlette"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(
            f'raise ModuleNotFoundError("No module named {name!r}", name={name!r})\n'
        )
    return {
        **env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(blocked), env.get("PYTHONPATH")])),
    }


def test_one_notice():
    assert EMULATED_NOTICE == APP_NOTICE


def assert_emulated(result):
    assert result.returncode == 0, result.stderr
    assert "local allenai emulator" in result.stdout and CANNED in result.stdout
    assert EMULATED_NOTICE in result.stderr  # loudly, before the answer
    assert "=" * len(EMULATED_NOTICE) in result.stderr


def test_chat_emulate_answers_offline(env):
    assert_emulated(run(env, "chat", "--emulate", "hi"))
    assert_emulated(run({**env, "LLMPLEX_EMULATE": "1"}, "chat", "hi"))
    # without it, nothing is configured: no canned answer passes for a real one
    result = run(env, "chat", "hi")
    assert CANNED not in result.stdout and EMULATED_NOTICE not in result.stderr
    # other models and providers are emulated too
    result = run(env, "chat", "--emulate", "hi", "-m", "replicate:meta/meta-llama-3-8b-instruct")
    assert result.returncode == 0 and "local replicate emulator" in result.stdout


def test_emulated_conversations_are_kept_apart(env):
    data = Path(env["LLMPLEX_DATA_DIR"])
    assert run(env, "chat", "--emulate", "first").returncode == 0
    assert not (data / "last_conversation").exists()  # nothing a real --continue would reuse
    assert not (data / "conversations.sqlite3").exists()
    for args in (("--continue",), ("--conversation", "conv_1")):
        result = run(env, "chat", "--emulate", *args, "second")
        assert result.returncode == 2, result.stderr
        assert "not kept between runs" in result.stderr.splitlines()[-1]
    result = run(env, "chat", "--continue", "third")
    assert result.returncode == 2 and "no previous conversation" in result.stderr
    # in one repl session, turns do form one conversation
    result = run(env, "repl", "--emulate", input="one\ntwo\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("local allenai emulator") == 2


def test_chat_and_emulate_without_the_server_extra(no_server_extra):
    env = no_server_extra
    check = run(env, "serve")  # the extra really is missing
    assert check.returncode == 2 and "server extra" in check.stderr
    assert_emulated(run(env, "chat", "--emulate", "hi"))
    assert_emulated(run({**env, "LLMPLEX_EMULATE": "yes"}, "repl", input="hi\n/exit\n"))

    process = subprocess.Popen(
        [LLMPLEX, "emulate", "openai", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        exports = read_exports(process)
        assert "LLMPLEX_OPENAI_BASE_URL" in exports, process.stderr.read()
        models = httpx.get(exports["LLMPLEX_OPENAI_BASE_URL"] + "/models", timeout=5)
        assert models.status_code == 200
        result = run({**env, **exports}, "chat", "hi", "-m", "openai:gpt-4o-mini")
        assert result.returncode == 0, result.stderr
        assert "local openai emulator" in result.stdout
    finally:
        code = interrupt(process)
        process.stdout.close()
        process.stderr.close()
    assert code == 0


def test_emulate_imports_nothing_of_the_server_extra(env):
    code = (
        "import sys; from llmplex.cli import main; import llmplex.server.emulated; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'uvicorn', 'starlette')))"
    )
    import sys

    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_repl_emulate_on_a_terminal(env, how):
    args = ("repl", "--emulate") if how == "flag" else ("repl",)
    if how == "environment":
        env = {**env, "LLMPLEX_EMULATE": "1"}
    terminal = Terminal(env, *args)
    try:
        terminal.expect(EMULATED_NOTICE)
        terminal.expect("(EMULATED)")  # the banner says it too, with the model
        terminal.expect("you (emulated)> ")
        terminal.type("hi\r")
        terminal.expect("local allenai emulator")
        terminal.expect("you (emulated)> ")
        terminal.type("/model replicate:meta/meta-llama-3-8b-instruct\r")
        terminal.expect("(model: replicate:meta/meta-llama-3-8b-instruct)")
        terminal.type("again\r")
        terminal.expect("local replicate emulator")
        terminal.expect("you (emulated)> ")
        terminal.type("\x04")
        assert terminal.close() == 0
    finally:
        if terminal.process.poll() is None:
            terminal.close()
