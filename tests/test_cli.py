"""The installed ``llmplex`` command, run as a subprocess against the emulators, with its
config file and data directory in a temporary directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmplex.emulators.openai import DEFAULT_CREATED, OpenAIEmulator
from llmplex.emulators.replicate import ReplicateEmulator
from llmplex.testing import Fault, Script, interrupt, read_exports, serve, wait_until

ANSWER = "The capital of France is Paris. Привет, 你好 😀!"
LLMPLEX = shutil.which("llmplex", path=str(Path(sys.executable).parent)) or "llmplex"
OPENAI_MODEL = "openai:gpt-4o-mini"
REPLICATE_MODEL = "replicate:meta/meta-llama-3-8b-instruct"


@pytest.fixture
def emulators():
    with (
        serve(OpenAIEmulator(Script(ANSWER))) as oai,
        serve(ReplicateEmulator(Script("Replicate says hi."))) as replicate,
    ):
        yield oai, replicate


@pytest.fixture
def env(tmp_path, emulators):
    """The environment of a user whose providers live on the emulators."""
    oai, _ = emulators
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLMPLEX_")
        and k not in ("OPENAI_API_KEY", "REPLICATE_API_TOKEN", "AI2_API_KEY")
    }
    config = tmp_path / "config.toml"
    config.write_text("")
    environ.update(
        LLMPLEX_CONFIG=str(config),
        LLMPLEX_DATA_DIR=str(tmp_path / "data"),
        LLMPLEX_OPENAI_BASE_URL=oai.url + "/v1",
        OPENAI_API_KEY="sk-test",
        PYTHONIOENCODING="utf-8",
    )
    return environ


def run(env, *args, input=None, timeout=60):
    return subprocess.run(
        [LLMPLEX, *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def sent_messages(emulator, index=-1):
    return emulator.requests_to("/chat/completions")[index].json["messages"]


def test_chat_streams_the_answer(env, emulators):
    oai, _ = emulators
    result = run(env, "chat", "Привет, что такое 你好? 😀", "-m", OPENAI_MODEL)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER + "\n"
    assert sent_messages(oai) == [{"role": "user", "content": "Привет, что такое 你好? 😀"}]
    assert oai.requests_to("/chat/completions")[0].json["stream"] is True


def test_prompt_from_stdin(env, emulators):
    oai, _ = emulators
    result = run(env, "chat", "-m", OPENAI_MODEL, input="Вопрос из stdin\nвторая строка\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER + "\n"
    assert sent_messages(oai)[-1]["content"] == "Вопрос из stdin\nвторая строка"
    result = run(env, "chat", "-", "-m", OPENAI_MODEL, input="dash means stdin")
    assert sent_messages(oai)[-1]["content"] == "dash means stdin"


def test_continue_across_two_invocations(env, emulators):
    oai, _ = emulators
    assert run(env, "chat", "First question", "-m", OPENAI_MODEL).returncode == 0
    second = run(env, "chat", "--continue", "Second question", "-m", OPENAI_MODEL)
    assert second.returncode == 0, second.stderr
    assert [m["content"] for m in sent_messages(oai)] == [
        "First question",
        ANSWER,
        "Second question",
    ]
    # a new chat starts afresh; --conversation ID picks an older one
    third = run(env, "chat", "Unrelated", "-m", OPENAI_MODEL, "--json")
    conversation_id = json.loads(third.stdout.splitlines()[-1])["conversation_id"]
    assert [m["content"] for m in sent_messages(oai)] == ["Unrelated"]
    run(env, "chat", "--conversation", conversation_id, "More", "-m", OPENAI_MODEL)
    assert [m["content"] for m in sent_messages(oai)] == ["Unrelated", ANSWER, "More"]


def test_json_output(env):
    result = run(env, "chat", "Hi", "-m", OPENAI_MODEL, "--json")
    assert result.returncode == 0, result.stderr
    chunks = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks) == ANSWER
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert chunks[-1]["conversation_id"].startswith("conv_")

    result = run(env, "chat", "Hi", "-m", OPENAI_MODEL, "--json", "--no-stream")
    (line,) = result.stdout.splitlines()
    completion = json.loads(line)
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == ANSWER


def test_error_exit_codes(env, emulators):
    oai, _ = emulators
    # an unknown model: an llmplex error, one line, no traceback
    result = run(env, "chat", "Hi", "-m", "olmo-3.1-32b-instrukt")
    assert result.returncode == 1
    assert result.stderr.startswith("llmplex: error: ModelNotFoundError:")
    assert "olmo-3.1-32b-instruct" in result.stderr and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    # an upstream failure
    oai.push(Script(fault=Fault.http_status(429, retry_after=3)))
    result = run(env, "chat", "Hi", "-m", OPENAI_MODEL)
    assert result.returncode == 1 and "RateLimitError" in result.stderr
    assert "OpenAI" in result.stderr and "429" in result.stderr
    # --debug adds the traceback
    result = run(env, "--debug", "chat", "Hi", "-m", "olmo-3.1-32b-instrukt")
    assert result.returncode == 1 and "Traceback" in result.stderr
    # usage errors: 2
    assert run(env, "chat", "Hi", "--temperature", "warm").returncode == 2
    assert run(env, "chat", "--continue", "Hi", "-m", OPENAI_MODEL).returncode == 2
    result = run(env, "chat", "-m", OPENAI_MODEL, input="")
    assert result.returncode == 2 and "prompt is empty" in result.stderr
    assert run(env, "no-such-command").returncode == 2
    assert run(env).returncode == 2
    assert not oai.requests_to("/chat/completions", "POST")[1:]  # only the 429 call went out


def test_error_mid_stream_keeps_the_text_and_fails(env, emulators):
    oai, _ = emulators
    oai.push(Script(ANSWER, fault=Fault.error_event("model overloaded", after=2)))
    result = run(env, "chat", "Hi", "-m", OPENAI_MODEL)
    assert result.returncode == 1
    assert result.stdout == "".join(Script(ANSWER).pieces()[:2]) + "\n"
    assert "model overloaded" in result.stderr


def test_config_file_and_environment_override(env, emulators, tmp_path):
    _, replicate = emulators
    Path(env["LLMPLEX_CONFIG"]).write_text(f"""
model = "{REPLICATE_MODEL}"

[providers.replicate]
api_key = "r8_from_config"
base_url = "{replicate.url}"
""")
    result = run(env, "chat", "Hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Replicate says hi.\n"
    assert replicate.requests[0].headers["Authorization"] == "Bearer r8_from_config"
    # the environment wins over the file
    result = run({**env, "LLMPLEX_MODEL": OPENAI_MODEL}, "chat", "Hi")
    assert result.stdout == ANSWER + "\n"
    result = run({**env, "REPLICATE_API_TOKEN": "r8_from_env"}, "chat", "Hi")
    assert (
        replicate.requests_to("/predictions")[-1].headers["Authorization"] == "Bearer r8_from_env"
    )
    # a broken config file is a usage error, said in one line without its secrets
    Path(env["LLMPLEX_CONFIG"]).write_text('model = 5\n[providers.Replicate]\napi_key = "r8_x"\n')
    result = run(env, "chat", "Hi")
    assert result.returncode == 2 and "'model' must be of type str" in result.stderr
    assert "r8_x" not in result.stderr
    Path(env["LLMPLEX_CONFIG"]).write_text("[providers.Nope]\n")
    assert "unknown provider" in run(env, "models").stderr


def test_repl_keeps_one_conversation(env, emulators):
    oai, _ = emulators
    script = "First turn\n/model openai:gpt-4o\nSecond turn\n/id\n/new\nFresh start\n/exit\n"
    result = run(env, "repl", "-m", OPENAI_MODEL, input=script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == ANSWER and lines[1] == ANSWER and lines[2].startswith("conv_")
    second = oai.requests_to("/chat/completions")[1].json
    assert second["model"] == "gpt-4o"
    assert [m["content"] for m in second["messages"]] == ["First turn", ANSWER, "Second turn"]
    assert [m["content"] for m in sent_messages(oai)] == ["Fresh start"]  # after /new
    assert (Path(env["LLMPLEX_DATA_DIR"]) / "repl_history").exists()


class Terminal:
    """``llmplex`` on a pseudo-terminal, as a person at a keyboard runs it: readline is
    active, keys are bytes typed into the terminal."""

    def __init__(self, env, *args, command=(LLMPLEX,)):
        import pty

        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [*command, *args],
            env={**env, "TERM": "xterm"},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        self.seen = b""

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def expect(self, text: str, timeout: float = 15.0) -> None:
        """Read the screen until ``text`` appears after what earlier calls consumed."""
        import select

        wanted, deadline = text.encode(), time.monotonic() + timeout
        while wanted not in self.seen:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"{text!r} not shown; the screen: {self.seen[-500:]!r}")
            try:
                self.seen += os.read(self.master, 4096)
            except OSError:  # the process ended and closed the terminal
                raise AssertionError(f"{text!r} not shown; the screen: {self.seen!r}") from None
        self.seen = self.seen[self.seen.index(wanted) + len(wanted) :]

    def close(self) -> int:
        try:
            return self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            os.close(self.master)


def test_repl_on_a_terminal_history_interrupt_and_ctrl_d(env, emulators):
    oai, _ = emulators
    terminal = Terminal(env, "repl", "-m", OPENAI_MODEL)
    try:
        terminal.expect("you> ")
        terminal.type("First turn\r")  # Enter
        terminal.expect(ANSWER)
        terminal.expect("you> ")
        terminal.type("\x10\r")  # Ctrl-P: the previous line again, from readline's history
        terminal.expect(ANSWER)
        terminal.expect("you> ")
        assert [m["content"] for m in sent_messages(oai)] == ["First turn", ANSWER, "First turn"]

        oai.script = Script("word " * 200, delay=0.05)  # a long, slow answer
        terminal.type("Tell me everything\r")
        terminal.expect("word")
        terminal.process.send_signal(signal.SIGINT)  # Ctrl-C mid-answer
        terminal.expect("(interrupted)")
        terminal.expect("you> ")
        # the upstream stream was closed, not left running
        wait_until(lambda: oai.open_streams == 0, message="upstream stream left open")

        terminal.type("\x04")  # Ctrl-D on an empty line leaves
        assert terminal.close() == 0
    finally:
        if terminal.process.poll() is None:
            terminal.close()
    history = (Path(env["LLMPLEX_DATA_DIR"]) / "repl_history").read_text()
    assert "First turn" in history and "Tell me everything" in history


def test_repl_waiting_indicator_on_a_terminal_only(env, emulators):
    oai, _ = emulators
    oai.script = Script(chunks=[ANSWER], delay=0.8)  # a slow first token
    terminal = Terminal(env, "repl", "-m", OPENAI_MODEL)
    try:
        terminal.expect("you> ")
        terminal.type("Hello\r")
        terminal.expect("waiting for the answer...")
        terminal.expect("\r\x1b[K" + ANSWER)  # wiped before the text starts
        terminal.expect("you> ")
        terminal.type("\x04")
        assert terminal.close() == 0
    finally:
        if terminal.process.poll() is None:
            terminal.close()
    # never in pipes, nor in --json output
    oai.script = Script(chunks=[ANSWER], delay=0.5)
    for extra in ((), ("--json",)):
        result = run(env, "chat", "Hi", "-m", OPENAI_MODEL, *extra)
        assert result.returncode == 0, result.stderr
        assert "waiting" not in result.stdout + result.stderr
        assert "\x1b" not in result.stdout + result.stderr


def test_repl_names_the_model_and_knows_its_commands(env, emulators):
    oai, _ = emulators
    script = (
        "/model\n/model openai:gpt-4o\n/model\nTurn\n/model no-such-model-x\n/model\n"
        "/model -\n/frobnicate\n/help\n/exit\n"
    )
    result = run(env, "repl", "-m", OPENAI_MODEL, input=script)
    assert result.returncode == 0, result.stderr
    err = result.stderr.splitlines()
    assert f"model {OPENAI_MODEL};" in err[0]  # the banner names it
    shown = [line for line in err if line.startswith("(model")]
    assert shown[:3] == [
        f"(model: {OPENAI_MODEL})",
        "(model: openai:gpt-4o)",
        "(model: openai:gpt-4o)",
    ]
    # a typo is refused and the model kept; "-" goes back to the default, named
    assert any("no-such-model-x" in line and "ModelNotFoundError" in line for line in err)
    assert shown[3:5] == ["(model still: openai:gpt-4o)", "(model: openai:gpt-4o)"]
    assert shown[5].startswith("(model: (default")
    assert oai.requests_to("/chat/completions")[-1].json["model"] == "gpt-4o"
    unknown = result.stderr.index("unknown command /frobnicate")
    assert "/model" in result.stderr[unknown:] and "/exit" in result.stderr[unknown:]
    # without -m, the banner names the default the router tries first
    result = run(env, "repl", input="/exit\n")
    assert "model (default" in result.stderr.splitlines()[0]


PASTE = "\x1b[200~line one\nline two\n  indented three\x1b[201~"


@pytest.mark.parametrize("readline", ["gnu", "none"])
def test_repl_bracketed_paste_is_one_message(env, emulators, readline):
    oai, _ = emulators
    command = (
        (LLMPLEX,)
        if readline == "gnu"
        else (
            sys.executable,
            "-c",
            (
                "import sys; sys.modules['readline'] = None; "
                "from llmplex.cli import main; sys.exit(main())"
            ),
        )
    )
    terminal = Terminal(env, "repl", "-m", OPENAI_MODEL, command=command)
    try:
        terminal.expect("\x1b[?2004h")  # bracketed-paste mode asked of the terminal
        terminal.expect("you> ")
        terminal.type(PASTE)
        time.sleep(0.3)  # nothing is sent before Enter: the paste's newlines do not send it
        assert not oai.requests_to("/chat/completions")
        terminal.type("\r")
        terminal.expect(ANSWER)
        terminal.expect("you> ")
        terminal.type("single line\r")
        terminal.expect(ANSWER)
        terminal.expect("you> ")
        terminal.type("\x04")
        assert terminal.close() == 0
    finally:
        if terminal.process.poll() is None:
            terminal.close()
    assert [m["content"] for m in sent_messages(oai)] == [
        "line one\nline two\n  indented three",
        ANSWER,
        "single line",
    ]


@pytest.mark.parametrize("command", ["serve", "emulate"])
@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_port_out_of_range_is_a_usage_error(env, command, port):
    result = run(env, command, "--port", port)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"llmplex: error: --port must be a port number from 0 to 65535, not {port}"
    ]
    assert result.stdout == ""


def test_emulate_ports_must_all_fit(env):
    result = run(env, "emulate", "openai", "replicate", "--port", "65535")
    assert result.returncode == 2 and "(and the 1 after it)" in result.stderr
    Path(env["LLMPLEX_CONFIG"]).write_text("[server]\nport = 70000\n")
    result = run(env, "serve")
    assert result.returncode == 2 and "[server] port" in result.stderr


def test_serve_front_page_points_to_the_docs(env):
    process = subprocess.Popen(
        [LLMPLEX, "serve", "--emulate", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = None
        deadline = time.monotonic() + 30
        while base is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            if "serving the OpenAI-compatible API at " in line:
                base = line.split(" at ", 1)[1].split()[0].removesuffix("/v1")
        assert base, "the server did not start"
        # The line comes once the port is bound; uvicorn listens a moment later.
        wait_until(lambda: _answers(base + "/health"), timeout=15)
        page = httpx.get(base + "/", timeout=10)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'href="/docs"' in page.text and "<code>/v1</code>" in page.text
        assert "EMULATED" in page.text
        assert httpx.get(base + "/docs", timeout=10).status_code == 200
        assert "/" not in httpx.get(base + "/openapi.json", timeout=10).json()["paths"]
    finally:
        assert interrupt(process) == 0
        process.stderr.close()


def test_providers_and_models_tables(env):
    result = run(env, "providers")
    assert result.returncode == 0
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["PROVIDER", "WORKING", "AUTH"]
    table = {row.split()[0]: row.split() for row in rows}
    assert table["Replicate"][1:3] == ["yes", "yes"] and table["AllenAI"][1] == "no"
    assert table["OpenAI"][3] == "yes"  # configured through the environment
    assert table["OpenAI"][4] == "tools,images,audio,files,json,reasoning,n,logprobs"
    assert table["Replicate"][4] == "tools(emulated),json(emulated)"
    assert table["Groq"][4] == "tools,images,json,reasoning"
    data = json.loads(run(env, "providers", "--json").stdout)
    assert {p["name"] for p in data} >= {"AllenAI", "OpenAssistant", "H2o", "Replicate"}
    caps = {p["name"]: p["capabilities"] for p in data}
    assert caps["OpenAI"]["tools"] == "native" and caps["AllenAI"]["tools"] == "native"
    assert caps["Replicate"]["tools"] == "emulated"
    ai2 = next(p for p in data if p["name"] == "AllenAI")
    assert ai2["working"] is False and "AI2_API_KEY" in ai2["not_working_reason"]
    assert caps["OpenAssistant"]["native_stop"] is False
    result = run(env, "models", "-p", "allenai")  # no credentials: nothing routable
    assert result.stdout == "" and "AllenAI is not available: no credentials" in (result.stderr)
    models = run(env, "models", "-p", "allenai", "--all").stdout
    assert "olmo-3.1-32b-instruct" in models and "gpt-4o-mini" not in models
    assert "no: AllenAI: no credentials" in models
    listed = json.loads(run(env, "models", "--all", "--json").stdout)
    (molmo,) = [m for m in listed if m["id"] == "molmo2-8b"]
    assert molmo["providers"] == ["AllenAI"] and molmo["available"] is False
    assert molmo["reason"].startswith("AllenAI: no credentials")
    # by default: what the configured OpenAI (the emulator) lists, with its created times
    listed = {m["id"]: m for m in json.loads(run(env, "models", "--json").stdout)}
    assert listed["gpt-4o"] == {
        "id": "gpt-4o",
        "providers": ["OpenAI"],
        "created": DEFAULT_CREATED["gpt-4o"],
    }
    assert "molmo2-8b" not in listed


def test_help_documents_environment_and_exit_codes(env):
    result = run(env, "--help")
    assert result.returncode == 0
    for needle in (
        "LLMPLEX_MODEL",
        "LLMPLEX_CONFIG",
        "LLMPLEX_DATA_DIR",
        "config file",
        "exit status",
        "130",
    ):
        assert needle in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "llmplex", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("llmplex ")


def test_emulate_serves_emulators_for_other_processes(env):
    clean = {k: v for k, v in env.items() if k not in ("LLMPLEX_OPENAI_BASE_URL", "OPENAI_API_KEY")}
    process = subprocess.Popen(
        [LLMPLEX, "emulate", "openai", "replicate", "--port", "0"],
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        exports = read_exports(process)
        assert exports["LLMPLEX_OPENAI_BASE_URL"].endswith("/v1")
        assert set(exports) >= {
            "LLMPLEX_REPLICATE_BASE_URL",
            "REPLICATE_API_TOKEN",
            "OPENAI_API_KEY",
        }
        models = httpx.get(exports["LLMPLEX_OPENAI_BASE_URL"] + "/models", timeout=5)
        assert models.status_code == 200
        result = run({**clean, **exports}, "chat", "Hi", "-m", OPENAI_MODEL)
        assert result.returncode == 0, result.stderr
        assert "local openai emulator" in result.stdout
        result = run({**clean, **exports}, "chat", "Hi", "-m", REPLICATE_MODEL)
        assert "local replicate emulator" in result.stdout
    finally:
        code = interrupt(process)
    assert code == 0
    assert run(env, "emulate", "nonesuch").returncode == 2


def test_ctrl_c_exits_130_and_cleans_up_upstream(env, tmp_path):
    from llmplex.emulators.openassistant import OpenAssistantEmulator

    with serve(OpenAssistantEmulator(Script("word " * 400, delay=0.05))) as emulator:
        Path(env["LLMPLEX_CONFIG"]).write_text(
            f'[providers.OpenAssistant]\nbase_url = "{emulator.url}"\n'
            'cookies = { "next-auth.session-token" = "session-1" }\n'
        )
        process = subprocess.Popen(
            [LLMPLEX, "chat", "Hi", "-m", "openassistant:"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert process.stdout.read(10) == b"word word "  # the answer is streaming
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
            process.stderr.close()
        assert code == 130
        wait_until(
            lambda: emulator.requests_to("/api/chat", "DELETE"),
            message="the upstream chat was not deleted",
        )
        # the emulator sees the closed stream a moment after the process has gone
        wait_until(lambda: emulator.open_streams == 0, message="the stream stayed open")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
