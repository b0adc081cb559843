"""The ``llmplex`` command: chat, REPL, provider and model tables, server, emulators.

``main(argv)`` returns the exit status: 0 success, 1 an llmplex or upstream error, 2 a
usage or configuration error (nothing configured included), 130 interrupted (Ctrl-C).
Errors are one line on stderr (an AllProvidersFailed: a summary line and one per
provider; with nothing configured, one line saying what to set and how to try offline:
:mod:`llmplex.cli_messages`); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import aclosing, contextmanager
from pathlib import Path
from typing import Any

from . import __version__
from .config import Config, ConfigError, config_path, data_dir, load_config
from .config import environment as load_environment
from .errors import AllProvidersFailed, LLMplexError

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LAST_CONVERSATION = "last_conversation"
HISTORY_FILE = "repl_history"


class UsageError(Exception):
    """A command-line mistake (exit status 2)."""


# -- parser -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog is made when help is shown (``epilog_of``): it lists
    every provider's key variables or emulators, which imports every provider — a cost
    the other commands need not pay."""

    def __init__(self, *args: Any, epilog_of: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epilog_of = epilog_of

    def format_help(self) -> str:
        if self._epilog_of is not None:
            self.epilog = self._epilog_of()
        return super().format_help()


def _emulate_epilog() -> str:
    from .emulators import emulator_specs

    services = ", ".join(f"{s} ({spec.label or spec.name})" for s, spec in emulator_specs().items())
    return f"services: {services}"


def _epilog() -> str:
    environment = load_environment()
    width = max(len(k) for k in environment)
    env = "\n".join(f"  {name.ljust(width)}  {text}" for name, text in environment.items())
    return f"""\
configuration:
  config file: {config_path()}
  (TOML: model, provider, proxy, timeout, data_dir, [providers.<Name>] options such as
  api_key/base_url/cookies, [router], [server]; see `python -c "import llmplex.config;
  help(llmplex.config)"`). Environment variables override the file:
{env}

exit status:
  0 success, 1 llmplex or upstream error, 2 usage or configuration error,
  130 interrupted (Ctrl-C)

examples:
  llmplex chat "What is the capital of France?" -m gpt-4o-mini
  echo "Summarise this" | llmplex chat -p Replicate
  llmplex chat --continue "And then?"
  llmplex chat --emulate "hi"      # offline: canned answers from local emulators
  llmplex repl --emulate           # (or LLMPLEX_EMULATE=1 for chat and repl)
  llmplex serve --emulate          # the whole stack offline, on local emulators
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="llmplex",
        description="One streaming interface to many LLM chat services.",
        epilog_of=_epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"llmplex {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--config", metavar="PATH", help="config file (default: see below)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("-m", "--model", help="model name, alias or 'provider:model'")
        p.add_argument("-p", "--provider", help="provider name, or several comma-separated")
        which = p.add_mutually_exclusive_group()
        which.add_argument(
            "-c",
            "--continue",
            dest="continue_",
            action="store_true",
            help="continue the most recent conversation",
        )
        which.add_argument("--conversation", metavar="ID", help="continue conversation ID")
        p.add_argument(
            "--emulate",
            action="store_true",
            help="offline: answer from the built-in emulators, not real services "
            "(also LLMPLEX_EMULATE=1)",
        )

    chat = commands.add_parser(
        "chat",
        help="ask once, stream the answer to stdout",
        description="Ask once and stream the answer to stdout. "
        "Without PROMPT (or with '-') the prompt is read from stdin.",
    )
    chat.add_argument("prompt", nargs="?", metavar="PROMPT")
    model_options(chat)
    chat.add_argument("-s", "--system", help="system message (new conversations)")
    chat.add_argument(
        "--json",
        action="store_true",
        help="machine output: one JSON object per line (chunks, or the "
        "completion with --no-stream)",
    )
    chat.add_argument("--no-stream", action="store_true", help="print the answer when complete")
    chat.add_argument("-t", "--temperature", type=float)
    chat.add_argument("--max-tokens", type=int)
    chat.set_defaults(handler=cmd_chat)

    repl = commands.add_parser(
        "repl",
        help="interactive multi-turn chat",
        description="Interactive chat keeping one conversation. "
        "Commands: /new, /model [NAME|-], /provider [NAME|-], /id, "
        "/help, /exit. "
        "A pasted block of several lines is one message.",
    )
    model_options(repl)
    repl.set_defaults(handler=cmd_repl)

    providers = commands.add_parser("providers", help="table of providers")
    providers.add_argument("--json", action="store_true")
    providers.set_defaults(handler=cmd_providers)

    models = commands.add_parser(
        "models",
        help="table of the models you can use now, and their providers",
        description="The models a request can be routed to now: those of working providers "
        "that are configured (a key set, a base URL...), with the models their upstreams "
        "list (asked with a short timeout, configured providers only). --all lists every "
        "known model, saying why one is not available.",
    )
    models.add_argument("-p", "--provider", help="only this provider's models")
    models.add_argument(
        "--all", action="store_true", help="also models of providers not configured or not working"
    )
    models.add_argument("--json", action="store_true")
    models.add_argument(
        "--emulate",
        action="store_true",
        help="the models of the built-in emulators (also LLMPLEX_EMULATE=1)",
    )
    models.set_defaults(handler=cmd_models)

    serve = commands.add_parser(
        "serve",
        help="OpenAI-compatible HTTP API",
        description="Serve an OpenAI-compatible API (needs the "
        "[server] extra: pip install 'llmplex[server]').",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port, 0 to 65535 (default 1337; 0: any free port)")
    serve.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="require this key (Bearer); repeatable. Prefer "
        "LLMPLEX_SERVER_API_KEYS: arguments are visible to other users",
    )
    serve.add_argument(
        "--emulate", action="store_true", help="answer from the built-in emulators (offline demo)"
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        dest="cors_origins",
        metavar="ORIGIN",
        help="allow browser requests from ORIGIN ('*': any); repeatable",
    )
    serve.add_argument(
        "--allow-upstream-overrides",
        action="store_true",
        default=None,
        help="let clients set base_url, proxy, api_key, cookies, headers",
    )
    serve.add_argument("--max-body-bytes", type=int, help="request size limit (default 1000000)")
    serve.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="NAME",
        help="a Host name clients may use (repeatable; on loopback only "
        "localhost, 127.0.0.1 and [::1] pass: DNS-rebinding protection)",
    )
    serve.add_argument(
        "--client-stall-timeout",
        type=float,
        metavar="SECONDS",
        help="drop a streaming client that reads nothing this long (default 60)",
    )
    serve.add_argument(
        "--max-providers",
        type=int,
        metavar="N",
        help="longest 'provider' list a request may give (default 8)",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds for a request's headers (default 10)",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds for a request's body (default 30)",
    )
    serve.add_argument(
        "--keepalive-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds an idle kept-alive connection stays open (default 20)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="connections served at once; beyond: 503 (default 2048)",
    )
    serve.add_argument(
        "--first-token-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds to an answer's first content before the next provider "
        "is tried (default 300; config first_token_timeout)",
    )
    serve.add_argument(
        "--total-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds per answer (default 1800; config total_timeout)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (method, path, status; off by default: it "
        "costs ~5%% of a request's CPU)",
    )
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="log lines as text or one JSON object each (default text)",
    )
    serve.add_argument(
        "--workers", type=int, metavar="N", help="worker processes sharing the port (default 1)"
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        metavar="SECONDS",
        help="on SIGTERM, running streams get this long to finish (default 30)",
    )
    serve.add_argument(
        "--metrics",
        choices=["public", "keyed", "off"],
        help="GET /metrics: without a key, with one, or none (default public)",
    )
    serve.add_argument(
        "--traces",
        action="store_true",
        default=None,
        help="OpenTelemetry traces, exporter from OTEL_* (the otel extra)",
    )
    serve.set_defaults(handler=cmd_serve)

    emulate = commands.add_parser(
        "emulate",
        help="run the service emulators for other tools",
        description="Serve emulators of the upstream services on "
        "127.0.0.1 and print how to point llmplex at them.",
        epilog_of=_emulate_epilog,
    )
    emulate.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help="the emulators to run, named below (default: all)",
    )
    emulate.add_argument(
        "--port",
        type=int,
        default=0,
        help="first port, the next ones consecutive (default 0: any free)",
    )
    emulate.add_argument("--host", default="127.0.0.1")
    emulate.set_defaults(handler=cmd_emulate)
    return parser


# -- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # never die on a character the terminal lacks
            stream.reconfigure(errors="replace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a usage error (2)
        return int(exit.code or 0)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    config: Config | None = None
    try:
        config = load_config(args.config)
        code: int = args.handler(args, config)
        return code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, ConfigError) as exc:
        return _fail(args, exc, EXIT_USAGE)
    except LLMplexError as exc:
        if config is not None and _first_run(args, config, exc):
            return EXIT_USAGE
        return _fail(args, exc, EXIT_ERROR)
    except BrokenPipeError:  # `llmplex chat ... | head -1`
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:
        return _fail(args, exc, EXIT_ERROR, internal=True)


def _fail(args: argparse.Namespace, exc: BaseException, status: int, internal: bool = False) -> int:
    from .cli_messages import error_text

    if args.debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, AllProvidersFailed):  # its own summary line names what it is
        message = error_text(exc)
    elif isinstance(exc, LLMplexError) and not isinstance(exc, (UsageError, ConfigError)):
        message = f"{type(exc).__name__}: {error_text(exc, args.config)}"
    else:
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if internal:
        hint = "" if args.debug else " (run with --debug for the traceback)"
        message = f"internal error: {type(exc).__name__}: {message}{hint}"
    print(f"llmplex: error: {message}", file=sys.stderr)
    return status


def _first_run(args: argparse.Namespace, config: Config, exc: BaseException) -> bool:
    """With nothing configured and no key for any route: print the one line saying what
    to set and how to try offline (and the traceback with ``--debug``); say whether."""
    from .cli_messages import first_run_line

    line = first_run_line(exc, config, command=args.command, prompt=getattr(args, "prompt", None))
    if line is None:
        return False
    if args.debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(line, file=sys.stderr)
    return True


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# -- shared helpers -----------------------------------------------------------------------


def _client(config: Config, store: Any = None) -> Any:
    from .client import AsyncClient
    from .conversations import SQLiteStore

    if store is None:
        store = SQLiteStore(data_dir(config) / "conversations.sqlite3")
    return AsyncClient(config=config, store=store)  # its router, providers, proxy, deadlines


def _emulating(args: argparse.Namespace) -> bool:
    """``--emulate``, or ``LLMPLEX_EMULATE`` set to a true value."""
    if getattr(args, "emulate", False):
        return True
    return os.environ.get("LLMPLEX_EMULATE", "").strip().lower() in ("1", "true", "yes", "on")


def _announce_emulated() -> None:
    from .server.emulated import EMULATED_NOTICE

    bar = "=" * len(EMULATED_NOTICE)
    print(f"{bar}\n{EMULATED_NOTICE}\n{bar}", file=sys.stderr, flush=True)


@contextmanager
def _open_client(args: argparse.Namespace, config: Config) -> Iterator[Any]:
    """The client of ``chat`` and ``repl``: the configured providers, or with ``--emulate``
    the local emulators, in this process (aiohttp only: no server extra needed). Emulated
    conversations live in memory, apart from real ones: the emulators start afresh each
    run, so such a conversation could not be continued later (nor sent to a real
    service)."""
    if not args.emulated:
        client = _client(config)
        try:
            yield client
        finally:
            client.store.close()
        return
    from .server.emulated import EmulatedServices, emulated_client

    if args.continue_ or args.conversation:
        raise UsageError(
            "--emulate: emulated conversations are not kept between runs; "
            "use `llmplex repl --emulate` for several turns"
        )
    services = EmulatedServices().start()
    try:
        _announce_emulated()
        client = emulated_client(
            services,
            first_token_timeout=config.first_token_timeout,
            total_timeout=config.total_timeout,
        )
        try:
            yield client
        finally:
            client.store.close()
    finally:
        services.stop()


def _providers_arg(value: str | None, config: Config) -> Any:
    if value:
        names = [n.strip() for n in value.split(",") if n.strip()]
    else:
        names = config.provider or []
    if not names:
        return None
    return names[0] if len(names) == 1 else names


def _last_file(config: Config) -> Path:
    return data_dir(config) / LAST_CONVERSATION


def _remember(config: Config, conversation_id: str, emulated: bool = False) -> None:
    if emulated:  # kept in memory only: nothing to continue later
        return
    path = _last_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(conversation_id + "\n", encoding="utf-8")


def _conversation_id(args: argparse.Namespace, config: Config) -> str | None:
    """The conversation to continue (``--conversation``, ``--continue``), else None."""
    if args.conversation:
        return str(args.conversation)
    if args.continue_:
        try:
            found = _last_file(config).read_text(encoding="utf-8").strip()
        except OSError:
            found = ""
        if not found:
            raise UsageError("--continue: no previous conversation (start one with `llmplex chat`)")
        return found
    return None


class _Waiting:
    """A spinner on the terminal until the answer's first text, then wiped: shown only
    when both stdout and stderr are a terminal (never in pipes, files or ``--json``)."""

    FRAMES = "|/-\\"

    def __init__(self, enabled: bool, text: str = "waiting for the answer") -> None:
        self.enabled = enabled
        self.text = text
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def wanted(as_json: bool) -> bool:
        try:
            return not as_json and sys.stdout.isatty() and sys.stderr.isatty()
        except (AttributeError, ValueError):
            return False

    async def _spin(self) -> None:
        frame = 0
        while True:
            sys.stderr.write(f"\r{self.FRAMES[frame % len(self.FRAMES)]} {self.text}...")
            sys.stderr.flush()
            frame += 1
            await asyncio.sleep(0.1)

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._spin())

    def stop(self) -> None:
        """Wipe the indicator (idempotent); it writes nothing more once this returns."""
        if self._task is None:
            return
        self._task.cancel()  # it only ever waits in sleep(): nothing is half-written
        self._task = None
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


async def _turn(
    client: Any,
    *,
    model: str | None,
    provider: Any,
    conversation: str,
    text: str,
    stream: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """One question, its answer written to stdout."""
    out = sys.stdout
    waiting = _Waiting(_Waiting.wanted(as_json))
    waiting.start()
    try:
        result = await client.chat.completions.create(
            model=model,
            provider=provider,
            messages=[{"role": "user", "content": text}],
            conversation=conversation,
            stream=stream,
            **options,
        )
        if not stream:
            waiting.stop()
            if as_json:
                out.write(json.dumps(result.model_dump(), ensure_ascii=False) + "\n")
            else:
                out.write((result.choices[0].message.content or "") + "\n")
            out.flush()
            return
        wrote = False
        try:
            async with aclosing(result) as chunks:
                async for chunk in chunks:
                    if as_json:
                        out.write(json.dumps(chunk.model_dump(), ensure_ascii=False) + "\n")
                        out.flush()
                        continue
                    delta = chunk.choices[0].delta.content if chunk.choices else None
                    if delta:
                        waiting.stop()
                        out.write(delta)
                        out.flush()
                        wrote = True
        finally:
            waiting.stop()
            if wrote:  # end the answer's line, also when an error cut it short
                out.write("\n")
                out.flush()
    finally:
        waiting.stop()


# -- commands -----------------------------------------------------------------------------


def cmd_chat(args: argparse.Namespace, config: Config) -> int:
    prompt = args.prompt
    if prompt is None or prompt == "-":
        if prompt is None and sys.stdin.isatty():
            raise UsageError("no prompt: give PROMPT, or pipe it on stdin")
        prompt = sys.stdin.read()
    prompt = prompt.strip("\n")
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    options = {
        k: v
        for k, v in (("temperature", args.temperature), ("max_tokens", args.max_tokens))
        if v is not None
    }
    args.emulated = _emulating(args)
    with _open_client(args, config) as client:
        conversation_id = _conversation_id(args, config)
        if conversation_id is None:
            seed = [{"role": "system", "content": args.system}] if args.system else []
            conversation_id = client.store.create(
                model=args.model or config.model, messages=seed
            ).id
        asyncio.run(
            _turn(
                client,
                model=args.model or config.model,
                provider=_providers_arg(args.provider, config),
                conversation=conversation_id,
                text=prompt,
                stream=not args.no_stream,
                as_json=args.json,
                **options,
            )
        )
        _remember(config, conversation_id, args.emulated)
    return EXIT_OK


REPL_COMMANDS = {
    "/new": "start a new conversation",
    "/model": "NAME: use model NAME; - : the default; alone: show the model",
    "/provider": "NAME[,NAME...]: use these providers; - : any; alone: show them",
    "/id": "print the conversation id",
    "/help": "this list",
    "/exit": "leave (also /quit, Ctrl-D)",
}
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"


def _repl_help() -> str:
    width = max(map(len, REPL_COMMANDS))
    return "commands:\n" + "\n".join(
        f"  {name.ljust(width)}  {text}" for name, text in REPL_COMMANDS.items()
    )


def _model_label(client: Any, model: str | None, provider: Any) -> str:
    """``model``, or the default's first route (what a bare request tries first)."""
    if model:
        return model
    try:
        routes = client.router.resolve(None, provider)
    except LLMplexError:  # the default cannot be resolved: the first turn will say why
        return "(default)"
    if not routes:
        return "(default)"
    return f"(default: {routes[0].name.lower()}:{routes[0].model})"


def _read_message(prompt: str, own_paste: bool) -> str:
    """One message from the user: a line, or a bracketed paste of several.

    With GNU readline, readline's own bracketed-paste mode (switched on in
    :func:`cmd_repl`) puts a whole paste, newlines included, in one line buffer. Without
    readline, the terminal is asked for bracketed paste (``ESC[?2004h``) and a line that
    opens a paste (``ESC[200~``) is joined with the next ones up to its end
    (``ESC[201~``)."""
    line = input(prompt)
    if own_paste and PASTE_START in line:
        parts = [line]
        while PASTE_END not in parts[-1]:
            try:
                parts.append(input(""))
            except EOFError:
                break
        line = "\n".join(parts)
    return line.replace(PASTE_START, "").replace(PASTE_END, "")


def cmd_repl(args: argparse.Namespace, config: Config) -> int:
    args.emulated = _emulating(args)
    history = data_dir(config) / (HISTORY_FILE + ("_emulated" if args.emulated else ""))
    try:
        import readline
    except ImportError:  # Windows without pyreadline: plain input()
        readline = None  # type: ignore[assignment]
    interactive = sys.stdin.isatty()
    gnu = readline is not None and "libedit" not in (readline.__doc__ or "")
    own_paste = interactive and not gnu
    if readline is not None:
        try:
            readline.read_history_file(history)
        except (OSError, ValueError):
            pass
        readline.set_history_length(1000)
        if gnu:  # CPython turns it off (bpo-42819); a paste is then one line buffer
            readline.parse_and_bind("set enable-bracketed-paste on")
    model = args.model or config.model
    provider = _providers_arg(args.provider, config)
    prompt = ("you (emulated)> " if args.emulated else "you> ") if interactive else ""
    answered = False  # a turn was answered (by a provider named without configuration)
    with _open_client(args, config) as client:
        try:
            conversation_id = _conversation_id(args, config) or client.store.create(model=model).id
            print(
                f"llmplex {__version__} — model {_model_label(client, model, provider)}"
                f"{' (EMULATED)' if args.emulated else ''}; conversation "
                f"{conversation_id}. /help for commands, Ctrl-D to leave.",
                file=sys.stderr,
            )
            while True:
                if own_paste:
                    sys.stdout.write("\x1b[?2004h")
                    sys.stdout.flush()
                try:
                    line = _read_message(prompt, own_paste)
                except EOFError:
                    break
                except KeyboardInterrupt:
                    print(file=sys.stderr)
                    continue
                finally:
                    if own_paste:
                        sys.stdout.write("\x1b[?2004l")
                        sys.stdout.flush()
                text = line.strip()
                if not text:
                    continue
                if text.startswith("/") and "\n" not in text:
                    command, _, rest = text.partition(" ")
                    rest = rest.strip()
                    if command in ("/exit", "/quit"):
                        break
                    if command == "/new":
                        conversation_id = client.store.create(model=model).id
                        print(f"(new conversation {conversation_id})", file=sys.stderr)
                    elif command == "/model":
                        if rest:
                            chosen = None if rest == "-" else rest
                            try:
                                client.router.resolve(chosen, provider)
                            except LLMplexError as exc:  # a typo: keep the model in use
                                _fail(args, exc, EXIT_ERROR)
                                print(
                                    f"(model still: {_model_label(client, model, provider)})",
                                    file=sys.stderr,
                                )
                                continue
                            model = chosen
                        print(f"(model: {_model_label(client, model, provider)})", file=sys.stderr)
                    elif command == "/provider":
                        if rest:
                            provider = _providers_arg(rest if rest != "-" else "", Config())
                        print(f"(provider: {provider or '(any)'})", file=sys.stderr)
                    elif command == "/id":
                        print(conversation_id)
                    elif command == "/help":
                        print(_repl_help(), file=sys.stderr)
                    else:
                        print(f"unknown command {command}; {_repl_help()}", file=sys.stderr)
                    continue
                try:
                    asyncio.run(
                        _turn(
                            client,
                            model=model,
                            provider=provider,
                            conversation=conversation_id,
                            text=text,
                            stream=True,
                            as_json=False,
                        )
                    )
                    _remember(config, conversation_id, args.emulated)
                    answered = True
                except KeyboardInterrupt:
                    print("(interrupted)", file=sys.stderr)
                except LLMplexError as exc:
                    if _first_run(args, config, exc):
                        if not answered:  # nothing has answered, nothing will: leave
                            return EXIT_USAGE
                    else:
                        _fail(args, exc, EXIT_ERROR)
        finally:
            if readline is not None:
                try:
                    history.parent.mkdir(parents=True, exist_ok=True)
                    readline.write_history_file(history)
                except OSError:
                    pass
    return EXIT_OK


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def _can(caps: dict[str, Any]) -> str:
    """A capability summary in a few letters' worth: "tools,images,json,reasoning,n,logprobs"."""
    names = [
        name
        for name, on in (
            (
                "tools" if caps["tools"] == "native" else f"tools({caps['tools']})",
                caps["tools"] != "none",
            ),
            ("images", caps["images"]),
            ("audio", caps["audio"]),
            ("files", caps["files"]),
            (
                "json" if caps["response_format"] else "json(emulated)",
                bool(caps["response_format"]) or "json_object" in caps.get("emulated", ()),
            ),
            ("reasoning", caps["reasoning"]),
            ("n", caps["n"]),
            ("logprobs", caps["logprobs"]),
        )
        if on
    ]
    return ",".join(names) or "text"


def cmd_providers(args: argparse.Namespace, config: Config) -> int:
    from .client import AsyncClient
    from .conversations import MemoryStore
    from .providers.table import provider_table  # the table GET /v1/providers serves

    items = provider_table(AsyncClient(config=config, store=MemoryStore()))
    if args.json:
        print(json.dumps(items, ensure_ascii=False, indent=2))
        return EXIT_OK
    rows = [
        [
            i["name"],
            "yes" if i["working"] else "no",
            "yes" if i["needs_auth"] else "no",
            "yes" if i["configured"] else "no",
            _can(i["capabilities"]),
            str(len(i["models"])),
            i["default_model"] or "-",
        ]
        for i in items
    ]
    print(
        _table(
            rows, ["PROVIDER", "WORKING", "AUTH", "CONFIGURED", "CAN", "MODELS", "DEFAULT MODEL"]
        )
    )
    return EXIT_OK


def cmd_models(args: argparse.Namespace, config: Config) -> int:
    from .client import AsyncClient
    from .conversations import MemoryStore
    from .providers import get_provider

    if _emulating(args):
        from .server.emulated import EmulatedServices, emulated_client

        with EmulatedServices() as services:
            _announce_emulated()
            client = emulated_client(services)
            listed = asyncio.run(client.models.list(all=args.all)).data
    else:
        client = AsyncClient(config=config, store=MemoryStore())  # nothing to store: no file
        listed = asyncio.run(client.models.list(all=args.all)).data
    if args.provider:
        name = get_provider(args.provider).get_name()
        listed = [m for m in listed if name in m.providers]
        reason = client.unavailable(get_provider(name))
        if reason is not None and not args.all:
            print(
                f"llmplex: {name} is not available: {reason} (--all lists its models)",
                file=sys.stderr,
            )
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": m.id,
                        "providers": m.providers,
                        "created": m.created,
                        **({} if m.available else {"available": False, "reason": m.reason}),
                    }
                    for m in listed
                ],
                ensure_ascii=False,
                indent=2,
            )
        )
        return EXIT_OK
    if not listed and not args.all:
        print(
            "llmplex: no model is available: set a provider's key (e.g. OPENAI_API_KEY) "
            "or configure one in the config file; `llmplex models --all` lists every "
            "known model",
            file=sys.stderr,
        )
        return EXIT_OK
    if args.all:
        rows = [
            [m.id, ", ".join(m.providers), "yes" if m.available else f"no: {m.reason}"]
            for m in listed
        ]
        print(_table(rows, ["MODEL", "PROVIDERS", "AVAILABLE"]))
    else:
        print(_table([[m.id, ", ".join(m.providers)] for m in listed], ["MODEL", "PROVIDERS"]))
    return EXIT_OK


def _positive(value: float, flag: str) -> float:
    if not value > 0:
        raise UsageError(f"{flag} must be a positive number of seconds")
    return value


def _check_port(port: Any, what: str = "--port", count: int = 1) -> int:
    """``port`` if it is a TCP port number (and ``count`` consecutive ones fit), else a
    usage error."""
    last = port + count - 1 if isinstance(port, int) and port else port
    if (
        isinstance(port, bool)
        or not isinstance(port, int)
        or not 0 <= port <= 65535
        or not 0 <= last <= 65535
    ):
        span = (
            f" (and the {count - 1} after it)"
            if count > 1 and isinstance(port, int) and 0 <= port <= 65535
            else ""
        )
        raise UsageError(f"{what} must be a port number from 0 to 65535{span}, not {port!r}")
    return port


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    port_given = args.port if args.port is not None else config.server.get("port")
    if port_given is not None:  # before the server extra is looked for: a usage error first
        _check_port(port_given, "--port" if args.port is not None else "[server] port")
    try:
        from .server import EMULATED_NOTICE, bind, create_app, serve_forever
    except ImportError as exc:
        raise UsageError(
            f"`llmplex serve` needs the server extra ({exc.name} is missing): "
            "pip install 'llmplex[server]'"
        ) from None
    settings = config.server
    host = args.host or settings.get("host") or "127.0.0.1"
    port = args.port if args.port is not None else settings.get("port", 1337)
    api_keys = [*(settings.get("api_keys") or ()), *(args.api_keys or ())]
    from .server.middleware import allowed_hosts_for

    def setting(name: str) -> Any:  # a flag wins over [server] in config.toml
        value = getattr(args, name, None)
        return value if value is not None else settings.get(name)

    limits = {
        name: value
        for name in ("header_timeout", "body_timeout", "keepalive_timeout", "max_connections")
        if (value := setting(name)) is not None
    }
    for name, value in limits.items():
        if not value > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    extra = {
        name: value
        for name in ("client_stall_timeout", "max_providers")
        if (value := setting(name)) is not None
    }
    services = None
    for name in ("first_token_timeout", "total_timeout"):  # the flags win over the config
        if getattr(args, name) is not None:
            setattr(config, name, _positive(getattr(args, name), "--" + name.replace("_", "-")))
    workers = setting("workers")
    workers = 1 if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"--workers must be a positive integer, not {workers!r}")
    drain = setting("drain_timeout")
    if drain is not None:
        limits["drain_timeout"] = _positive(drain, "--drain-timeout")
    observe: dict[str, Any] = {}
    if setting("metrics") is not None:
        observe["metrics"] = setting("metrics")
    from .server.logs import log_config

    try:
        logging_setup = log_config(setting("log_format") or "text", args.log_level)
    except ValueError as exc:
        raise UsageError(f"[server] log_format: {exc}") from None
    if args.emulate:
        from .server.emulated import EmulatedServices

        services = EmulatedServices().start()
        bar = "=" * len(EMULATED_NOTICE)
        print(f"{bar}\n{EMULATED_NOTICE}\n{bar}", file=sys.stderr, flush=True)

    def make_app() -> Any:  # in each worker: its own client, pool and app
        state = _state(config)  # [state] / LLMPLEX_STATE_URL: embedded, or Redis
        if services is not None:
            from .server.emulated import emulated_client

            client = emulated_client(
                services,
                first_token_timeout=config.first_token_timeout,
                total_timeout=config.total_timeout,
                **({"store": state.store} if state.store else {}),
            )
        else:
            client = _client(config, state.store)
        if setting("traces"):
            from .server.tracing import tracer_provider_from_env

            try:
                observe["tracer_provider"] = tracer_provider_from_env()
            except RuntimeError as exc:
                raise UsageError(str(exc)) from None
        try:
            app = create_app(
                client,
                api_keys=api_keys,
                keys=settings.get("keys"),
                state=state,
                allow_upstream_overrides=bool(
                    args.allow_upstream_overrides or settings.get("allow_upstream_overrides")
                ),
                cors_origins=args.cors_origins or settings.get("cors_origins") or (),
                max_body_bytes=args.max_body_bytes or settings.get("max_body_bytes") or 1_000_000,
                emulated=services is not None,
                allowed_hosts=allowed_hosts_for(host, setting("allowed_hosts") or ()),
                **extra,
                **observe,
            )
        except (ValueError, TypeError) as exc:  # a limit out of range
            client.store.close()
            raise UsageError(str(exc)) from None
        return app, client

    def serve(app: Any, client: Any) -> None:
        try:
            serve_forever(
                app,
                sock,
                log_level=args.log_level,
                log_config=logging_setup,
                access_log=args.access_log,
                **limits,
            )
        finally:
            client.store.close()
            tracer_provider = observe.get("tracer_provider")
            if tracer_provider is not None:  # a worker ends with os._exit: no atexit flush
                tracer_provider.force_flush()

    try:
        app = client = None
        if workers == 1:  # built before binding: a bad setting is a usage error first
            app, client = make_app()
        try:
            sock = bind(host, port)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        real_port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        keyed = bool(api_keys or settings.get("keys"))
        auth = "API key required" if keyed else "no API key required"
        from .state import redact_url

        url = config.state.get("url")
        auth += f"; state in Redis at {redact_url(url)}" if url else "; embedded state"
        print(
            f"llmplex: serving the OpenAI-compatible API at http://{shown}:{real_port}/v1 "
            f"({auth}{'; EMULATED' if services else ''}"
            f"{f'; {workers} workers' if workers > 1 else ''})",
            file=sys.stderr,
            flush=True,
        )
        if not keyed and host not in ("127.0.0.1", "localhost", "::1"):
            print(
                f"llmplex: warning: listening on {host} without an API key: anyone who "
                "reaches this port can use your providers' credentials",
                file=sys.stderr,
            )
        if app is not None:
            serve(app, client)
            return EXIT_OK
        state = getattr(config, "state", None)
        if not (
            os.environ.get("LLMPLEX_STATE_URL") or (isinstance(state, dict) and state.get("url"))
        ):
            print(
                f"llmplex: warning: {workers} workers without a shared state backend "
                "(LLMPLEX_STATE_URL / [state] url): each worker keeps its own provider "
                "health and cooldowns",
                file=sys.stderr,
                flush=True,
            )
        from .server.workers import WorkerTag, supervise

        def worker(number: int) -> None:
            try:
                app, client = make_app()
            except UsageError as exc:  # the same for every worker: the supervisor stops
                print(f"llmplex: error: {exc}", file=sys.stderr, flush=True)
                raise SystemExit(EXIT_USAGE) from None
            serve(WorkerTag(app, number), client)

        return supervise(workers, sock, worker)
    finally:
        if services is not None:
            services.stop()


def _state(config: Config) -> Any:
    """The state backend of ``[state]`` (``LLMPLEX_STATE_URL`` over its ``url``)."""
    from .errors import InvalidRequestError
    from .state import from_url

    options = config.state
    try:
        return from_url(
            options.get("url"),
            on_error=options.get("on_error", "closed"),
            prefix=options.get("prefix", "llmplex:"),
            timeout=options.get("timeout", 5.0),
        )
    except InvalidRequestError as exc:
        raise UsageError(exc.message) from None


def cmd_emulate(args: argparse.Namespace, config: Config) -> int:
    import signal
    import time

    from .server.emulated import EmulatedServices

    try:
        services = EmulatedServices(args.services, host=args.host, port=args.port)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    _check_port(args.port, count=len(services.names))
    try:
        services.start()
    except OSError as exc:
        raise UsageError(f"cannot listen: {exc.strerror or exc}") from None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    hints = services.config_hints()
    try:
        for service, url, line in services.exports():
            print(f"{service:<14} {url}")
            print(f"  {line}")
            hint = hints.get(service)
            if hint:  # options no variable carries (a session cookie...): config.toml
                print(
                    f"  # and (any value will do) in {config_path()}:\n"
                    f"  #   [providers.{hint.pop('provider')}]"
                )
                for key, value in hint.items():
                    print(f"  #   {key} = {_toml(value)}")
        print("Emulators running; Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        services.stop()
    return EXIT_OK


def _toml(value: Any) -> str:
    """A string or a table of strings as TOML (the emulators' dummy options)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
