"""Every code block of the README runs as written, one test per block.

The blocks and their ``<!-- readme-test: ... -->`` markers are read by
``tests/readme_blocks.py`` (its docstring lists the directives). A new block becomes a new
test by itself; one without a marker, or of a language nothing here runs, fails saying how
to mark it.

How each kind runs:

- Python runs in a subprocess, as a user would paste it (a top-level ``await`` as in
  ``python -m asyncio`` or Jupyter). ``emulate`` blocks get the environment that a running
  ``llmplex emulate`` prints (read from its stdout, one per session); ``real-key VAR`` blocks
  get only ``VAR``'s provider pointed at its emulator, so a block needing a second key or a
  retired service fails. ``serve`` blocks reach one ``llmplex serve --emulate`` per session:
  the only change made to a block is the port 1337 (and ``port N=SERVICE``) in its URLs.
  Its imports must be installed by the README's latest ``pip install`` before it.
- Shell commands run through bash in the same environments, each in a scratch directory.
  ``llmplex serve`` and ``llmplex emulate`` are started on a free port (their ``--port``
  rewritten), probed and stopped with Ctrl-C; ``llmplex repl`` gets one question on stdin.
  Installs (``python3 -m venv``, ``pip install``) are not run here: their extras must exist
  in pyproject.toml. ``python -m pytest`` (this suite) must be the line ``.ci/run`` runs.
- TOML goes through llmplex's own config loader, JSON through ``json.loads``; an
  ``error-tree`` block must be the class hierarchy of ``llmplex.errors``.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from readme_blocks import HOW_TO_MARK, Block, blocks

import llmplex
from llmplex.providers.endpoints import ENDPOINTS
from llmplex.testing import interrupt, read_exports, wait_until

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(llmplex.__file__).resolve().parents[1]  # the code under test (a worktree wins)
BIN = Path(sys.executable).parent  # `llmplex`, `python` and `pip` of this environment
BLOCKS = blocks()
TIMEOUT = 60
SHELLS = ("bash", "sh", "shell", "console")
# what Python runs a block with: top-level await allowed, as in `python -m asyncio`
RUNNER = """\
import ast, asyncio, inspect, sys
source = open(sys.argv[1], encoding="utf-8").read()
code = compile(source, sys.argv[2], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if inspect.iscoroutine(result):
    asyncio.run(result)
"""


# -- environments -------------------------------------------------------------------------


def _clean_environ(home: Path) -> dict[str, str]:
    """This process's environment without any llmplex setting or service key, with a
    scratch home, config file, data and cookie directory, and this environment's
    ``llmplex`` first on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLMPLEX_") and not re.search(r"_(API_KEY|API_TOKEN|KEY)$", k)
    }
    for name in ("config", "data", "cookies"):
        (home / name).mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(SRC),
        LLMPLEX_CONFIG=str(home / "config" / "config.toml"),
        LLMPLEX_DATA_DIR=str(home / "data"),
        LLMPLEX_COOKIES_DIR=str(home / "cookies"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
    )
    (home / "config" / "config.toml").touch()
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Emulators:
    """A running ``llmplex emulate``: its export lines, and the cookie it asks for."""

    exports: dict[str, str]
    cookie_config: str  # the config.toml lines its output suggests for OpenAssistant

    def url(self, service: str) -> str:
        if service == "openai":
            return self.exports["LLMPLEX_OPENAI_BASE_URL"]
        return self.exports[f"LLMPLEX_{service.upper()}_BASE_URL"]

    def for_key(self, key: str) -> dict[str, str]:
        """The variables pointing the provider whose key is ``key`` at its emulator."""
        if key == "REPLICATE_API_TOKEN":
            return {"LLMPLEX_REPLICATE_BASE_URL": self.url("replicate"), key: self.exports[key]}
        if key == "AI2_API_KEY":
            return {"LLMPLEX_ALLENAI_BASE_URL": self.url("allenai"), key: self.exports[key]}
        if key == "ANTHROPIC_API_KEY":
            return {"LLMPLEX_ANTHROPIC_BASE_URL": self.url("anthropic"), key: self.exports[key]}
        endpoint = next((e for e in ENDPOINTS.values() if e.api_key_env == key), None)
        if endpoint is None:
            raise AssertionError(f"real-key {key}: no provider takes that variable")
        # the OpenAI emulator stands in for every OpenAI-compatible service
        return {
            f"LLMPLEX_{endpoint.name.upper()}_BASE_URL": self.url("openai"),
            key: self.exports["OPENAI_API_KEY"],
        }


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    env = _clean_environ(tmp_path_factory.mktemp("emulate-home"))
    process = subprocess.Popen(
        [str(BIN / "llmplex"), "emulate"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        exports = read_exports(process)
        assert "LLMPLEX_OPENAI_BASE_URL" in exports, exports
        yield Emulators(exports, _cookie_config())
    finally:
        interrupt(process)


def _cookie_config() -> str:
    """The config.toml lines ``llmplex emulate`` tells a user to add for OpenAssistant
    (a session cookie), made from the same data it prints them from."""
    from llmplex.server.emulated import dummy_credentials

    cookies = dummy_credentials()["OpenAssistant"]["cookies"]
    pairs = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in cookies.items())
    return f"[providers.OpenAssistant]\ncookies = {{ {pairs} }}\n"


def _wait_for_line(
    path: Path, pattern: str, process: subprocess.Popen[str], timeout: float = 30.0
) -> re.Match[str]:
    """The first match of ``pattern`` in what ``process`` writes to ``path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text(errors="replace"))
        if found:
            return found
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} from the process; it wrote:\n{path.read_text()}")


class Servers:
    """The session's ``llmplex serve`` processes, one per way of running: ``--emulate``
    for ``emulate`` blocks, and for ``real-key VAR`` blocks a real one that has only
    ``VAR``'s provider, pointed at its emulator. The README's port 1337 stands for them."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.ports: dict[str, int] = {}
        self.processes: list[subprocess.Popen[str]] = []

    def port(self, mode: str, key: str | None, emulators: Emulators | None) -> int:
        name = key or mode
        if name not in self.ports:
            home = self.home / name
            env = _clean_environ(home)
            args = [str(BIN / "llmplex"), "serve", "--port", "0"]
            if mode == "emulate":
                args.append("--emulate")
            elif key is not None:
                assert emulators is not None
                env.update(emulators.for_key(key))
            log = home / "serve.log"
            with open(log, "w") as out:
                process = subprocess.Popen(
                    args,
                    env=env,
                    text=True,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            self.processes.append(process)
            found = _wait_for_line(log, r"serving .* at http://127\.0\.0\.1:(\d+)/v1", process)
            _wait_for_health(int(found.group(1)))
            self.ports[name] = int(found.group(1))
        return self.ports[name]


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    running = Servers(tmp_path_factory.mktemp("serve-home"))
    try:
        yield running
    finally:
        for process in running.processes:
            interrupt(process)


def _rewrite_ports(code: str, ports: dict[int, int]) -> str:
    """Only the port of a local URL changes: ``localhost:1337`` -> ``localhost:43121``."""
    for old, new in ports.items():
        code = re.sub(rf"\b(127\.0\.0\.1|localhost|\[::1\]):{old}\b", rf"\g<1>:{new}", code)
    return code


@dataclass
class Context:
    """What one block runs with: its environment, directory and port rewrites."""

    env: dict[str, str]
    cwd: Path
    ports: dict[int, int] = field(default_factory=dict)
    exit: int = 0  # the exit status the block's last command shows


def _context(
    chain: list[Block], request: pytest.FixtureRequest, tmp_path: Path, mode: str | None = None
) -> Context:
    """The first block of ``chain`` says how it runs (unless ``mode`` says); each one may
    add ports."""
    assert chain[0].marker is not None
    marker = dataclasses.replace(chain[0].marker, mode=mode or chain[0].marker.mode)
    for later in chain[1:]:
        assert later.marker is not None
        marker.serve = marker.serve or later.marker.serve
        marker.ports = {**marker.ports, **later.marker.ports}
    env = _clean_environ(tmp_path / "home")
    ports: dict[int, int] = {}
    if marker.mode == "emulate" or marker.ports:
        emu: Emulators = request.getfixturevalue("emulators")
    if marker.mode == "emulate":
        env.update(emu.exports)
        Path(env["LLMPLEX_CONFIG"]).write_text(emu.cookie_config, encoding="utf-8")
    elif marker.mode == "real-key":
        assert marker.key is not None
        env.update(request.getfixturevalue("emulators").for_key(marker.key))
    if marker.serve:
        key = marker.key if marker.mode == "real-key" else None
        assert marker.mode is not None
        ports[1337] = request.getfixturevalue("servers").port(
            marker.mode, key, request.getfixturevalue("emulators") if key else None
        )
    for port, service in marker.ports.items():
        ports[port] = int(emu.url(service).rsplit(":", 1)[1].split("/")[0])
    work = tmp_path / "work"
    work.mkdir()
    return Context(env, work, ports, marker.exit)


# -- which blocks, in which order ---------------------------------------------------------


def _chain(block: Block) -> list[Block]:
    """``block`` preceded by the blocks it continues (same section, same language)."""
    chain = [block]
    index = BLOCKS.index(block)
    while chain[0].marker and chain[0].marker.continues:
        index -= 1
        before = BLOCKS[index] if index >= 0 else None
        assert (
            before is not None
            and before.section == block.section
            and before.language == block.language
        ), f"{chain[0].id}: `continues`, but no earlier {block.language} block in its section"
        chain.insert(0, before)
    return chain


def _first(block: Block) -> Block:
    """The block whose marker says how ``block`` runs (the first of its chain)."""
    return _chain(block)[0]


# -- installs and imports -----------------------------------------------------------------


@dataclass
class Install:
    """A ``pip install`` of the README: the project's extras and other packages."""

    extras: list[str]
    packages: list[str]
    block: str


def _pip_install(tokens: list[str]) -> tuple[list[str], list[str]] | None:
    names = [Path(t).name for t in tokens]
    if names[:2] in (["pip", "install"], ["pip3", "install"]):
        args = tokens[2:]
    elif len(names) > 3 and names[1:4] == ["-m", "pip", "install"]:
        args = tokens[4:]
    else:
        return None
    extras: list[str] = []
    packages: list[str] = []
    for arg in args:
        if arg.startswith("-"):
            continue
        project = re.fullmatch(r"(?:\.|llmplex)(?:\[([\w,\s-]*)\])?", arg)
        if project:
            extras += [e.strip() for e in (project.group(1) or "").split(",") if e.strip()]
        else:
            packages.append(arg)
    return extras, packages


def _installs() -> dict[str, Install | None]:
    """Block id -> the README's latest ``pip install`` before it."""
    latest: Install | None = None
    found: dict[str, Install | None] = {}
    for block in BLOCKS:
        found[block.id] = latest
        if block.language in SHELLS:
            for command in (c for b in _chain(block) for c in _commands(b)):
                tokens = _tokens(command)
                got = _pip_install(tokens) if tokens else None
                if got:
                    latest = Install(*got, block=block.id)
    return found


def _pyproject() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {"": project["dependencies"], **project.get("optional-dependencies", {})}


def _provides(extras: list[str], needed: str) -> bool:
    """Whether installing ``extras`` installs what the ``needed`` extra lists (the test
    extra includes the server's requirements, so the suite's install serves both)."""
    table = _pyproject()
    have = {canonicalize_name(Requirement(r).name) for e in extras for r in table.get(e, ())}
    return (
        needed in extras
        or {canonicalize_name(Requirement(r).name) for r in table.get(needed, ())} <= have
    )


def _closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install, with their dependencies (as installed
    here), canonical names."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in metadata.requires(req.name) or ()]
        except metadata.PackageNotFoundError:
            pass  # not installed here: it cannot give a module we import either
    return seen


def _check_imports(block: Block, code: str, install: Install | None) -> None:
    assert install is not None, f"{block.id}: imports modules, but no `pip install` before it"
    deps = _pyproject()
    unknown = [e for e in install.extras if e not in deps]
    assert not unknown, f"{install.block}: no extra {unknown} in pyproject.toml"
    installed = _closure(
        [*deps[""], *(r for e in install.extras for r in deps[e]), *install.packages]
    )
    owners = metadata.packages_distributions()
    modules = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    missing = sorted(
        m
        for m in modules - set(sys.stdlib_module_names) - {"llmplex"}
        if not {canonicalize_name(d) for d in owners.get(m, [])} & installed
    )
    assert not missing, (
        f"{block.id} imports {missing}, which the install before it "
        f"({install.block}: extras {install.extras}, packages "
        f"{install.packages}) does not install"
    )


# -- running ------------------------------------------------------------------------------


def _run(
    args: list[str], ctx: Context, what: str, stdin: str = "", status: int = 0
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            args,
            env=ctx.env,
            cwd=ctx.cwd,
            input=stdin,
            text=True,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"{what}: still running after {TIMEOUT} s\n{exc.stdout}\n{exc.stderr}"
        ) from exc
    assert done.returncode == status, (
        f"{what}: exit status {done.returncode}, not {status}\n"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    return done


def run_python(block: Block, ctx: Context) -> None:
    code = "\n".join(b.code for b in _chain(block))
    _check_imports(block, code, _installs()[_first(block).id])
    (ctx.cwd / "block.py").write_text(_rewrite_ports(code, ctx.ports), encoding="utf-8")
    (ctx.cwd / "runner.py").write_text(RUNNER, encoding="utf-8")
    done = _run(
        [sys.executable, "runner.py", "block.py", f"README.md:{block.line}"],
        ctx,
        f"{block.id} (README.md line {block.line})",
    )
    assert done.stdout.strip() or "print(" not in code, f"{block.id}: printed nothing"


@dataclass
class Step:
    """One command of a shell block, and what a console block shows it printing."""

    command: str
    shown: list[str] = field(default_factory=list)


def _steps(block: Block) -> list[Step]:
    """The block's commands: backslash continuations joined, split at ``&&`` and ``;``.
    In a console block only ``$ `` lines are commands; the lines under one are its output
    (kept in the last command of that line)."""
    lines = block.code.splitlines()
    if block.language != "console":
        return [Step(c) for c in _split(re.sub(r"\\\n\s*", " ", "\n".join(lines)))]
    steps: list[Step] = []
    command: str | None = None
    for line in lines:
        if command is not None:  # a continued command line
            command += " " + line.strip()
        elif line.startswith("$ "):
            command = line[2:]
        elif steps:
            steps[-1].shown.append(line)
            continue
        if command is not None and not command.endswith("\\"):
            steps += [Step(c) for c in _split(command)]
            command = None
        elif command is not None:
            command = command[:-1]
    return steps


def _split(text: str) -> list[str]:
    commands: list[str] = []
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in ("&&", ";"):
                commands.append(_join(current))
                current = []
            else:
                current.append(token)
        if current:
            commands.append(_join(current))
    return [c for c in commands if c]


def _commands(block: Block) -> list[str]:
    return [step.command for step in _steps(block)]


def _join(tokens: list[str]) -> str:
    ops = {"|", "||", ">", ">>", "<", "2>", "&"}
    return " ".join(t if t in ops else shlex.quote(t) for t in tokens)


def _tokens(command: str) -> list[str]:
    return shlex.split(command)


def _program(tokens: list[str]) -> list[str]:
    """The command's words with a path to this project's venv (``.venv/bin/``) dropped."""
    return [Path(tokens[0]).name, *tokens[1:]] if tokens else []


def _ci_test_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return next(line for line in reversed(lines) if "pytest" in line)


def _with_port(words: list[str], port: int) -> list[str]:
    """``words`` with its ``--port`` value (added when absent) replaced by ``port``."""
    if "--port" in words:
        at = words.index("--port")
        return [*words[: at + 1], str(port), *words[at + 2 :]]
    return [*words, "--port", str(port)]


def _wait_for_health(port: int) -> None:
    """The server says where it listens just before it starts accepting: wait for that."""

    def healthy() -> bool:
        try:
            return bool(_probe(f"http://127.0.0.1:{port}/health"))
        except OSError:
            return False

    wait_until(healthy, timeout=30, message=f"no answer on /health of port {port}")


def _probe(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def run_serve(words: list[str], ctx: Context, what: str) -> None:
    port = _free_port()
    log = ctx.cwd / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            _with_port(words, port),
            env=ctx.env,
            cwd=ctx.cwd,
            text=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_for_line(log, rf"serving .*:{port}/v1", process)
        _wait_for_health(port)
        assert _probe(f"http://127.0.0.1:{port}/v1/models")["data"], f"{what}: no models"
    finally:
        status = interrupt(process)
    assert status == 0, f"{what}: exit status {status} on Ctrl-C\n{log.read_text()}"


def run_emulate(words: list[str], ctx: Context, what: str) -> None:
    process = subprocess.Popen(
        _with_port(words, 0),
        env=ctx.env,
        cwd=ctx.cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        exports = read_exports(process)
        urls = [v for k, v in exports.items() if k.endswith("_BASE_URL")]
        assert urls, f"{what}: printed no base URL"
        for url in urls:  # every emulator it names answers
            host, port = url.split("//")[1].split("/")[0].split(":")
            socket.create_connection((host, int(port)), 5).close()  # listening: printed after start
    finally:
        status = interrupt(process)
    assert status == 0, f"{what}: exit status {status} on Ctrl-C"


#: the extra each long-running command needs (it says so when it is missing)
NEEDS_EXTRA = {("llmplex", "serve"): "server"}


def run_shell(block: Block, ctx: Context) -> None:
    ran = 0
    steps = [step for b in _chain(block) for step in _steps(b)]
    install = _installs()[_first(block).id]
    for number, step in enumerate(steps, 1):
        command = _rewrite_ports(step.command, ctx.ports)
        words = _program(_tokens(command))
        what = f"{block.id}: `{command}`"
        if words[:3] in (["python3", "-m", "venv"], ["python", "-m", "venv"]):
            continue  # makes a virtual environment: not redone here
        got = _pip_install(_tokens(command))
        if got:
            unknown = [e for e in got[0] if e not in _pyproject()]
            assert not unknown, f"{what}: no extra {unknown} in pyproject.toml"
            install = Install(*got, block=block.id)
            continue
        if words[1:3] == ["-m", "pytest"]:
            assert _ci_test_command() in block.code, (
                f"{what}: this suite itself; it must be the line .ci/run runs"
            )
            continue
        extra = NEEDS_EXTRA.get(tuple(words[:2]))
        if extra:
            assert install is not None and _provides(install.extras, extra), (
                f"{what} needs the [{extra}] extra; the install before it does not name it"
            )
        ran += 1
        status = ctx.exit if number == len(steps) else 0
        if words[:2] == ["llmplex", "serve"]:
            run_serve(words, ctx, what)
            continue
        if words[:2] == ["llmplex", "emulate"]:
            run_emulate(words, ctx, what)
            continue
        repl = words[:2] == ["llmplex", "repl"]  # one question, then the end of input
        done = _run(
            ["bash", "-c", command], ctx, what, stdin="Hello\n" if repl else "", status=status
        )
        if repl:
            assert done.stdout.strip(), f"{what}: no answer"
        if status == 0:
            _no_error_answer(done.stdout, what)
        _shows(step.shown, done.stdout + done.stderr, what)
    assert ran or "pytest" in block.code, f"{block.id}: no command ran"


def _shows(shown: list[str], output: str, what: str) -> None:
    """Each line a console block shows under a command is in what it printed, in order;
    ``...`` in a shown line stands for any text."""
    at = 0
    for line in (line.strip() for line in shown):
        if not line:
            continue
        pattern = ".*?".join(map(re.escape, line.split("...")))
        found = re.compile(pattern).search(output, at)
        assert found, f"{what}: shows {line!r}, but it printed:\n{output}"
        at = found.end()


def _no_error_answer(output: str, what: str) -> None:
    """An HTTP answer printed by ``curl -s`` is not an error object."""
    try:
        answer = json.loads(output)
    except ValueError:
        return
    assert not (isinstance(answer, dict) and "error" in answer), f"{what}: {output}"


def run_toml(block: Block, ctx: Context) -> None:
    from llmplex.config import load_config

    path = ctx.cwd / "config.toml"
    path.write_text(block.code, encoding="utf-8")
    load_config(path, environ={})  # ConfigError on a typo, a wrong type or range


def run_json(block: Block, ctx: Context) -> None:
    json.loads(block.code)


def run_error_tree(block: Block) -> None:
    """Each line ``├── Name (Base)  text``: a class of llmplex.errors, a subclass of the
    class above it one level up, and of the built-ins it names."""
    from llmplex import errors

    parents: list[type] = []
    for line in block.code.splitlines():
        found = re.match(r"^([\s│├└─]*)(\w+)\s*(.*)$", line)
        if not found:
            continue
        depth = len(found.group(1)) // 4
        cls = getattr(errors, found.group(2), None)
        assert isinstance(cls, type) and issubclass(cls, Exception), (
            f"{block.id}: no exception {found.group(2)} in llmplex.errors"
        )
        if depth:
            assert issubclass(cls, parents[depth - 1]), (
                f"{block.id}: {cls.__name__} is not a {parents[depth - 1].__name__}"
            )
        for base in re.findall(r"\((?:a )?(\w+)\)", found.group(3)):
            assert issubclass(cls, getattr(builtins, base)), (
                f"{block.id}: {cls.__name__} is not a {base}"
            )
        parents[depth:] = [cls]


RUNNERS = {
    "python": run_python,
    "py": run_python,
    "toml": run_toml,
    "json": run_json,
    **{shell: run_shell for shell in SHELLS},
}


CASES = [pytest.param(b, None, id=b.id) for b in BLOCKS] + [
    pytest.param(b, "emulate", id=b.id + "-emulate")
    for b in BLOCKS
    if (first := _first(b).marker) and first.also_emulate
]


@pytest.mark.parametrize(("block", "mode"), CASES)
def test_readme_block_runs(
    block: Block, mode: str | None, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    where = f"README.md line {block.line} ({block.id}, ```{block.language})"
    assert block.marker_error is None, f"{where}: {block.marker_error}; {HOW_TO_MARK}"
    how = _first(block).marker
    assert block.marker is not None and how is not None and how.mode is not None, (
        f"{where}: says nowhere how it runs: {HOW_TO_MARK}"
    )
    if how.mode == "skip":
        pytest.skip(how.reason)
    if how.mode == "error-tree":
        run_error_tree(block)
        return
    runner = RUNNERS.get(block.language)
    assert runner is not None, (
        f"{where}: no runner for ```{block.language or '(none)'}; "
        f"mark it skip with a reason, or teach "
        f"tests/test_readme_examples.py to run it"
    )
    runner(block, _context(_chain(block), request, tmp_path, mode))


def test_every_block_has_its_own_id():
    ids = [b.id for b in BLOCKS]
    assert len(ids) == len(set(ids))
    assert len(BLOCKS) >= 10  # the parser finds the README's blocks


def test_an_unmarked_block_is_reported():
    """The parser sees markers, their absence and their mistakes."""
    from readme_blocks import blocks as parse

    text = (
        "# A\n\n<!-- readme-test: real-key GROQ_API_KEY; serve; port 8000=openai -->\n"
        "```python\nx = 1\n```\n\n```bash\nls\n```\n"
        "<!-- readme-test: skip -->\n```toml\n```\n"
        "## B\n<!--\n  readme-test: continues\n-->\n~~~py\ny = 2\n~~~\n"
    )
    first, second, third, fourth = parse(text)
    assert first.id == "a-1" and first.marker and first.marker.key == "GROQ_API_KEY"
    assert first.marker.serve and first.marker.ports == {8000: "openai"}
    assert second.marker is None and second.id == "a-2"
    assert third.marker_error and "reason" in third.marker_error
    assert fourth.id == "b-1" and fourth.language == "py" and fourth.code == "y = 2\n"
    assert fourth.marker and fourth.marker.continues and fourth.marker.mode is None


def test_console_blocks_show_what_their_commands_print():
    from readme_blocks import blocks as parse

    (block,) = parse(
        "<!-- readme-test: no-key; exit 2 -->\n```console\n"
        "$ llmplex chat \\\n    --bogus\nusage: ...\n"
        "llmplex: error: ... --bogus\n$ echo a && echo b\nb\n```\n"
    )
    assert block.marker and block.marker.mode == "no-key" and block.marker.exit == 2
    steps = _steps(block)
    assert [s.command for s in steps] == ["llmplex chat --bogus", "echo a", "echo b"]
    assert steps[0].shown == ["usage: ...", "llmplex: error: ... --bogus"]
    assert steps[2].shown == ["b"]
    _shows(steps[0].shown, "usage: llmplex [-h]\nllmplex: error: unrecognized: --bogus\n", "x")
    with pytest.raises(AssertionError, match="shows"):
        _shows(steps[0].shown, "llmplex: error: --bogus\nusage: llmplex\n", "x")  # order
