#!/usr/bin/env python3
"""llmplex against bare aiohttp and its peers, in one run: ``python3 bench/run.py``.

Creates (once) a virtual environment per library under ``bench/.envs/``, starts the
emulators in a process of their own, measures every client in a process of its own
(``worker.py``), and writes ``bench/RESULTS.md`` (and the raw figures to
``bench/results.json``). Standard library only; see ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ENVS = BENCH / ".envs"
WORKER = BENCH / "worker.py"

#: environment name -> what pip installs there (peers pinned to versions checked here)
ENV_SPECS: dict[str, list[str]] = {
    "llmplex": ["-e", f"{ROOT}[server,uvloop]"],
    "openai": ["openai==3.54.0"],
    "litellm": ["litellm==1.102.4"],
    "g4f": ["g4f==8.8.6"],
    # LiteLLM's proxy server (--server): its own environment, its extra's dependencies
    "litellm-proxy": ["litellm[proxy]==1.108.7"],
}
SERVER_JSON = BENCH / "server-results.json"

#: client -> (environment, protocols it is measured on)
CLIENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "aiohttp": ("llmplex", ("openai", "replicate", "ai2")),
    "aiohttp-fresh": ("llmplex", ("openai", "replicate", "ai2")),
    "llmplex": ("llmplex", ("openai", "replicate", "ai2")),
    "llmplex-pool": ("llmplex", ("openai", "replicate", "ai2")),
    "llmplex-async": ("llmplex", ("openai", "replicate", "ai2")),
    "llmplex-sync": ("llmplex", ("openai", "replicate", "ai2")),
    "serve": ("openai", ("openai",)),
    "openai": ("openai", ("openai",)),
    "litellm": ("litellm", ("openai",)),
    "g4f": ("g4f", ("openai",)),
}
LABELS = {
    "aiohttp": "bare aiohttp (baseline)",
    "aiohttp-fresh": "bare aiohttp, new session per request",
    "llmplex": "llmplex provider, direct",
    "llmplex-pool": "llmplex provider, in a ConnectionPool",
    "llmplex-async": "llmplex AsyncClient (async with)",
    "llmplex-sync": "llmplex Client (sync)",
    "serve": "openai SDK → llmplex serve",
    "openai": "openai SDK",
    "litellm": "LiteLLM",
    "g4f": "g4f",
}
PROTOCOLS = {
    "openai": "OpenAI-compatible SSE",
    "replicate": "Replicate SSE",
    "ai2": "Ai2 JSONL (v5)",
}
#: llmplex's clients, lowest layer first
LLMPLEX_CLIENTS = ("llmplex", "llmplex-pool", "llmplex-async", "llmplex-sync")
#: the bare aiohttp client each llmplex client's CPU per request is held against: the one
#: that treats connections the same way (a new one per call, or kept alive)
REQUEST_REFERENCE = {"llmplex": "aiohttp-fresh"}
CONCURRENT_CLIENTS = ("aiohttp", "llmplex", "llmplex-async", "serve", "openai", "litellm", "g4f")

#: (label, environment, statement) timed as ``python -c statement``
IMPORTS = [
    ("python -c pass", "llmplex", "pass"),
    ("import aiohttp (baseline)", "llmplex", "import aiohttp"),
    ("import llmplex", "llmplex", "import llmplex"),
    ("from llmplex import AsyncClient", "llmplex", "from llmplex import AsyncClient"),
    (
        "from llmplex.providers import Replicate",
        "llmplex",
        "from llmplex.providers import Replicate",
    ),
    ("import openai", "openai", "import openai"),
    ("from openai import AsyncOpenAI", "openai", "from openai import AsyncOpenAI"),
    ("import litellm", "litellm", "import litellm"),
    ("import g4f", "g4f", "import g4f"),
    ("from g4f.client import AsyncClient", "g4f", "from g4f.client import AsyncClient"),
]

#: keep every library on the emulators: no cost-map download, no telemetry, no update checks
QUIET_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
    "DO_NOT_TRACK": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "NO_PROXY": "*",
    "PYTHONHASHSEED": "0",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- environments ----------------------------------------------------------------------


def env_python(name: str) -> Path:
    return ENVS / name / "bin" / "python"


def ensure_env(name: str, rebuild: bool = False) -> Path:
    """The environment's interpreter, creating the environment first if needed."""
    directory = ENVS / name
    stamp = directory / ".bench-spec"
    spec = json.dumps(ENV_SPECS[name])
    if name == "llmplex":  # an editable install: rebuild when its dependencies change
        spec += " " + hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if rebuild and directory.exists():
        shutil.rmtree(directory)
    if stamp.exists() and stamp.read_text() == spec and env_python(name).exists():
        return env_python(name)
    log(f"creating environment {name}: pip install {' '.join(ENV_SPECS[name])}")
    if directory.exists():
        shutil.rmtree(directory)
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    pip = [str(env_python(name)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    result = subprocess.run(pip + ENV_SPECS[name], capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"bench: installing {name} failed")
    stamp.write_text(spec)
    return env_python(name)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (
            k.startswith("LLMPLEX_")
            or k.endswith("_API_KEY")
            or k.endswith("_TOKEN")
            or k.lower() in ("http_proxy", "https_proxy", "all_proxy")
        )
    }
    env.update(QUIET_ENV)
    env.update(extra or {})
    return env


# -- processes ---------------------------------------------------------------------------


class Worker:
    """A persistent ``worker.py`` process: commands in, ``@@BENCH`` result lines out."""

    def __init__(self, client: str, workdir: Path, extra_env: dict[str, str]) -> None:
        self.client = client
        python = env_python(CLIENTS[client][0])
        self.stderr = open(workdir / f"{client}.stderr", "w")
        self.proc = subprocess.Popen(
            [str(python), str(WORKER), client],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=workdir,
            env=child_env(extra_env),
        )
        self._buffer = b""
        self.ready = self._read(120)

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self._buffer:
                    line, self._buffer = self._buffer.split(b"\n", 1)
                    if line.startswith(b"@@BENCH "):
                        return json.loads(line[8:])
                left = deadline - time.monotonic()
                if left <= 0:
                    return {"error": f"timed out after {timeout:.0f}s"}
                if not selector.select(left):
                    continue
                data = os.read(fd, 65536)
                if not data:
                    return {"error": f"worker exited ({self.proc.wait()}); see {self.stderr.name}"}
                self._buffer += data

    def call(self, command: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        if self.proc.poll() is not None:
            return {"error": f"worker exited ({self.proc.returncode}); see {self.stderr.name}"}
        try:
            self.proc.stdin.write((json.dumps(command) + "\n").encode())  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except BrokenPipeError:
            return {"error": f"worker exited; see {self.stderr.name}"}
        result = self._read(timeout)
        if "error" in result and "timed out" in result["error"]:
            self.kill()
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"op": "exit"}\n')  # type: ignore[union-attr]
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.kill()
        self.stderr.close()


def run_once(
    client: str, command: dict[str, Any], workdir: Path, extra_env: dict[str, str], timeout: float
) -> dict[str, Any]:
    """One command in a fresh worker process (its peak RSS is its own)."""
    python = env_python(CLIENTS[client][0])
    try:
        proc = subprocess.run(
            [str(python), str(WORKER), client, "--once", json.dumps(command)],
            capture_output=True,
            cwd=workdir,
            env=child_env(extra_env),
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    for line in proc.stdout.splitlines():
        if line.startswith(b"@@BENCH "):
            return json.loads(line[8:])
    return {"error": f"worker exited ({proc.returncode}): {proc.stderr.decode()[-500:]}"}


class Background:
    """A long-running helper process (emulators, llmplex serve)."""

    def __init__(
        self, argv: list[str], workdir: Path, name: str, extra_env: dict[str, str] | None = None
    ) -> None:
        self.log_path = workdir / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=workdir,
            env=child_env(extra_env),
        )

    def first_line(self, timeout: float = 60) -> str:
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            data = b""
            deadline = time.monotonic() + timeout
            while b"\n" not in data:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.log_path.name}: no output; {self.log_path.read_text()[-1000:]}"
                    )
                if selector.select(1):
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        continue
                    data += chunk
        return data.split(b"\n", 1)[0].decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def start_serve(workdir: Path) -> tuple[Background | None, str]:
    """``llmplex serve`` on a free port, or (None, reason) when it is not available."""
    python = env_python("llmplex")
    check = subprocess.run(
        [str(python), "-c", "import llmplex.server, llmplex.cli"],
        capture_output=True,
        text=True,
        env=child_env(),
    )
    if check.returncode != 0:
        return None, "llmplex serve is not available in this checkout"
    data = workdir / "serve-data"
    data.mkdir(exist_ok=True)
    config = workdir / "serve-config.toml"
    config.write_text("[server]\nallow_upstream_overrides = true\n")
    serve = Background(
        [
            str(ENVS / "llmplex" / "bin" / "llmplex"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--allow-upstream-overrides",
            "--log-level",
            "warning",
        ],
        workdir,
        "serve",
        {"LLMPLEX_CONFIG": str(config), "LLMPLEX_DATA_DIR": str(data)},
    )
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline and serve.proc.poll() is None:
        text = serve.log_path.read_text()
        if "serving the OpenAI-compatible API at " in text:
            url = text.split("serving the OpenAI-compatible API at ", 1)[1].split()[0]
            return serve, url.removesuffix("/v1")
        time.sleep(0.1)
    serve.stop()
    return None, f"llmplex serve did not start: {text[-500:]}"


# -- measurements ------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure_imports(runs: int, envs: set[str]) -> dict[str, dict[str, Any]]:
    """Wall time of ``python -c statement`` (interpreter start included), rounds interleaved."""
    chosen = [item for item in IMPORTS if item[1] in envs]
    times: dict[str, list[float]] = {label: [] for label, _, _ in chosen}
    env = child_env()
    for _label, env_name, statement in chosen:  # once untimed: warm the disk cache, .pyc files
        subprocess.run([str(env_python(env_name)), "-c", statement], env=env, capture_output=True)
    for _ in range(runs):
        for label, env_name, statement in chosen:
            start = time.perf_counter()
            proc = subprocess.run(
                [str(env_python(env_name)), "-c", statement], env=env, capture_output=True
            )
            elapsed = time.perf_counter() - start
            if proc.returncode == 0:
                times[label].append(elapsed)
    return {
        label: {"median_ms": _ms(median(v)), "runs_ms": [round(x * 1e3, 1) for x in v]}
        for label, v in times.items()
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1e3


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="llmplex-bench-"))
        self.results: dict[str, Any] = {"errors": [], "blocked": {}}
        self.urls: dict[str, dict[str, str]] = {}
        self.serve: Background | None = None
        self.serve_url = ""
        self.extra_env: dict[str, str] = {}

    # streams: key -> chunk count
    @property
    def streams(self) -> list[tuple[str, int]]:
        a = self.args
        return [
            ("p1", 1),
            (f"p{a.paced_chunks}", a.paced_chunks),
            ("b1", 1),
            (f"b{a.chunks}", a.chunks),
        ]

    def clients(self) -> list[str]:
        chosen = [c for c in CLIENTS if not self.args.only or c in self.args.only]
        if self.args.no_peers:
            chosen = [c for c in chosen if CLIENTS[c][0] == "llmplex" or c == "serve"]
        if not self.serve:
            chosen = [c for c in chosen if c != "serve"]
        return chosen

    def start(self) -> None:
        a = self.args
        emulators = Background(
            [
                str(env_python("llmplex")),
                str(BENCH / "emulators.py"),
                "--burst",
                f"1,{a.chunks},{a.concurrent_chunks}",
                "--paced",
                f"1,{a.paced_chunks}",
                "--delay",
                str(a.delay),
                "--slow",
                f"1,{a.slow_chunks}" if a.instructions else "",
            ],
            self.workdir,
            "emulators",
        )
        self.emulators = emulators
        info = json.loads(emulators.first_line())
        self.urls = info["urls"]
        log(f"emulators up (pid {info['pid']})")
        if "serve" in CLIENTS and (not a.only or "serve" in a.only):
            self.serve, reason = start_serve(self.workdir)
            if self.serve is None:
                log(reason)
                self.results["serve"] = reason
            else:
                self.serve_url = self.serve_url or reason
                self.results["serve"] = f"llmplex serve at {reason}"
                self.extra_env = {
                    "BENCH_SERVE_URL": reason,
                    "BENCH_SERVE_PID": str(self.serve.proc.pid),
                }
                log(f"llmplex serve up at {reason}")

    def stop(self) -> None:
        if self.serve is not None:
            self.serve.stop()
        self.emulators.stop()

    def note_blocked(self, client: str, result: dict[str, Any]) -> None:
        if result.get("blocked"):
            self.results["blocked"].setdefault(client, [])
            for host in result["blocked"]:
                if host not in self.results["blocked"][client]:
                    self.results["blocked"][client].append(host)

    def error(self, where: str, result: dict[str, Any]) -> None:
        message = f"{where}: {result.get('error')}"
        log("ERROR " + message)
        self.results["errors"].append(message)

    def measure_streams(self) -> None:
        a = self.args
        workers: dict[str, Worker] = {}
        samples: dict[str, dict[str, dict[str, list[dict[str, float]]]]] = {}
        requests: dict[str, dict[str, list[dict[str, float]]]] = {}
        versions: dict[str, Any] = {}
        for client in self.clients():
            log(f"starting worker {client}")
            worker = Worker(client, self.workdir, self.extra_env)
            if "error" in worker.ready:
                self.error(client, worker.ready)
                worker.close()
                continue
            protos = CLIENTS[client][1]
            setup = worker.call(
                {"op": "setup", "warmup": [[p, self.urls[p]["b1"], 1] for p in protos]}, timeout=300
            )
            self.note_blocked(client, setup)
            if "error" in setup:
                self.error(f"{client} setup", setup)
                worker.close()
                continue
            versions[client] = setup["versions"]
            workers[client] = worker
            samples[client] = {p: {k: [] for k, _ in self.streams} for p in protos}
            requests[client] = {p: [] for p in protos}
        self.results["versions"] = versions

        failed: set[tuple[str, str]] = set()
        for round_ in range(a.rounds):
            log(f"streams and requests, round {round_ + 1}/{a.rounds}")
            for client, worker in workers.items():
                for proto in CLIENTS[client][1]:
                    if (client, proto) in failed:
                        continue
                    result = worker.call(
                        {
                            "op": "stream",
                            "proto": proto,
                            "urls": self.urls[proto],
                            "streams": self.streams,
                            "reps": a.reps,
                        },
                        timeout=600,
                    )
                    self.note_blocked(client, result)
                    if "error" in result:
                        self.error(f"{client} {proto} stream", result)
                        failed.add((client, proto))
                        continue
                    for key, rows in result["streams"].items():
                        samples[client][proto][key].extend(rows)
                    result = worker.call(
                        {
                            "op": "request",
                            "proto": proto,
                            "url": self.urls[proto]["b1"],
                            "n": 1,
                            "reps": a.request_reps,
                        },
                        timeout=600,
                    )
                    self.note_blocked(client, result)
                    if "error" in result:
                        self.error(f"{client} {proto} request", result)
                        failed.add((client, proto))
                        continue
                    requests[client][proto].extend(result["requests"])
        for worker in workers.values():
            worker.close()

        table: dict[str, dict[str, dict[str, Any]]] = {}
        pk, bk = f"p{a.paced_chunks}", f"b{a.chunks}"
        for client in samples:
            for proto in samples[client]:
                if (client, proto) in failed:
                    continue
                s = samples[client][proto]
                r = requests[client][proto]

                paced = _paired_per_chunk(s[pk], s["p1"], a.paced_chunks)
                burst = _paired_per_chunk(s[bk], s["b1"], a.chunks)
                row = {
                    "paced_us": paced,
                    "burst_us": burst,
                    "ttfc_ms": _ms(median([x["ttfc"] for x in s["b1"] + s[bk]])),
                    "stream_wall_ms": _ms(median([x["wall"] for x in s[bk]])),
                    "request_ms": _ms(median([x["cpu"] for x in r])),
                    "request_wall_ms": _ms(median([x["wall"] for x in r])),
                    "samples": len(s[pk]),
                }
                if client == "serve":  # the server's CPU, read from /proc
                    row["server_paced_us"] = _paired_per_chunk(
                        s[pk], s["p1"], a.paced_chunks, "server_cpu"
                    )
                    row["server_burst_us"] = _paired_per_chunk(
                        s[bk], s["b1"], a.chunks, "server_cpu"
                    )
                    row["server_request_ms"] = _ms(median([x["server_cpu"] for x in r]))
                table.setdefault(proto, {})[client] = row
        self.results["streams"] = table

    def measure_concurrency(self) -> None:
        a = self.args
        out: list[dict[str, Any]] = []
        for n in a.concurrency:
            for client in self.clients():
                if client not in CONCURRENT_CLIENTS:
                    continue
                for proto in CLIENTS[client][1]:
                    log(f"{n} concurrent streams: {client} {proto}")
                    command = {
                        "op": "concurrent",
                        "proto": proto,
                        "n": n,
                        "chunks": a.concurrent_chunks,
                        "url": self.urls[proto][f"b{a.concurrent_chunks}"],
                        "timeout": a.concurrent_timeout,
                    }
                    result = run_once(
                        client, command, self.workdir, self.extra_env, a.concurrent_timeout + 120
                    )
                    self.note_blocked(client, result)
                    if "error" in result:
                        self.error(f"{client} {proto} {n} concurrent", result)
                        result = {"error": result["error"], "n": n}
                    result.update(client=client, proto=proto)
                    out.append(result)
        self.results["concurrency"] = out

    def measure_instructions(self) -> None:
        """Instructions per chunk under callgrind: deterministic, whatever else the machine
        does. Paced streams (each chunk its own read); the emulators are not counted."""
        a = self.args
        valgrind = shutil.which("valgrind")
        if valgrind is None:
            self.results["instructions_note"] = "valgrind not found: not measured"
            return
        jobs = []
        # Baseline and llmplex only: the budget is about them, and the peers' own figures
        # are the CPU tables' (their instruction counts under valgrind did not track their
        # CPU time, so they would only mislead).
        for client in self.clients():
            if CLIENTS[client][0] != "llmplex":
                continue
            for proto in CLIENTS[client][1]:
                for n in (1, a.slow_chunks, -1, -11):  # negative: that many requests
                    jobs.append((client, proto, n))
        counts: dict[tuple[str, str, int], int | None] = {}
        running: list[tuple[tuple[str, str, int], subprocess.Popen, Path]] = []

        def reap(block: bool) -> None:
            for item in list(running):
                key, proc, out = item
                if block:
                    proc.wait()
                elif proc.poll() is None:
                    continue
                running.remove(item)
                counts[key] = _callgrind_total(out.with_name(out.name + ".1"))
                if counts[key] is None:
                    self.error(f"{key[0]} {key[1]} instructions", {"error": "no callgrind dump"})

        for key in jobs:
            client, proto, n = key
            while len(running) >= 2:  # two cores
                reap(False)
                time.sleep(0.2)
            log(f"callgrind: {client} {proto} " + (f"{n} chunks" if n > 0 else f"{-n} requests"))
            out = self.workdir / f"callgrind.{client}.{proto}.{n}.out"
            command = {
                "op": "instructions",
                "proto": proto,
                "n": max(n, 1),
                "requests": max(-n, 0),
                "url": self.urls[proto][f"s{max(n, 1)}"],
                "warmup_url": self.urls[proto]["s1"],
            }
            argv = [
                valgrind,
                "--tool=callgrind",
                "--zero-before=getsid",
                "--dump-before=getpgid",
                f"--callgrind-out-file={out}",
                str(env_python(CLIENTS[client][0])),
                str(WORKER),
                client,
                "--once",
                json.dumps(command),
            ]
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.workdir,
                env=child_env(self.extra_env),
            )
            running.append((key, proc, out))
        reap(True)
        table: dict[str, dict[str, float | None]] = {}
        requests: dict[str, dict[str, float | None]] = {}
        for client, proto, n in jobs:
            if n == a.slow_chunks:
                big, small = counts.get((client, proto, n)), counts.get((client, proto, 1))
                table.setdefault(proto, {})[client] = (
                    None if big is None or small is None else (big - small) / (n - 1)
                )
            elif n == -11:
                big, small = counts.get((client, proto, -11)), counts.get((client, proto, -1))
                requests.setdefault(proto, {})[client] = (
                    None if big is None or small is None else (big - small) / 10
                )
        self.results["instructions"] = table
        self.results["instructions_request"] = requests


def _callgrind_total(path: Path) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _paired_per_chunk(
    big: list[dict[str, float]], small: list[dict[str, float]], n: int, field: str = "cpu"
) -> float | None:
    """µs per chunk: the median over rounds of (CPU of an n-chunk stream - CPU of the
    1-chunk stream measured next to it) / (n - 1). Pairing neighbours cancels most of the
    drift of a shared machine."""
    pairs = [(b[field] - s[field]) / (n - 1) * 1e6 for b, s in zip(big, small, strict=False)]
    return median(pairs) if pairs and n > 1 else None


# -- report ------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": str(os.cpu_count()),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    try:
        info["commit"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True, text=True
        ).stdout.strip()
        if dirty:
            info["commit"] += " + uncommitted changes in src/"
    except OSError:
        pass
    return info


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "n/a"
    return f"{value / base:.2f}x"


def _instruction_table(
    title: str, intro: str, counts: dict[str, dict[str, int | None]]
) -> list[str]:
    """A callgrind table: a row per client, a column per protocol, with the ratio to the
    baseline; nothing when nothing was counted."""
    if not counts:
        return []
    lines = [
        f"### {title}",
        "",
        intro,
        "",
        "| client | " + " | ".join(PROTOCOLS[p] for p in counts) + " |",
        "|---|" + "---:|" * len(counts),
    ]
    for client in [c for c in CLIENTS if any(c in row for row in counts.values())]:
        cells = []
        for row in counts.values():
            value, base = row.get(client), row.get("aiohttp")
            cells.append(
                ""
                if client not in row
                else f"{fmt(value / 1000 if value else None)}k ({ratio(value, base)})"
            )
        lines.append(f"| {LABELS[client]} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    m = results["machine"]
    argv = " " + " ".join(results["argv"]) if results["argv"] else ""
    lines = [
        "# llmplex benchmark results",
        "",
        f"Written by `python3 bench/run.py{argv}`"
        f" on {results['date']} (UTC), in {results['duration_s']:.0f} s. "
        "Every figure comes from this one run; ratios are to bare aiohttp (the baseline) "
        "measured in the same run on the same streams.",
        "",
        f"- Machine: {m.get('cpu', '?')}, {m.get('cores')} cores, {m.get('memory', '?')}; "
        f"{m.get('platform')}",
        f"- Python {m.get('python')}; llmplex at commit {m.get('commit', '?')}",
    ]
    versions = results.get("versions", {})
    per_env: dict[str, str] = {}
    for client, v in versions.items():
        env = CLIENTS[client][0]
        if env not in per_env:
            per_env[env] = ", ".join(f"{k} {x}" for k, x in sorted(v.items()))
    if per_env:
        lines.append(
            "- Environments: " + "; ".join(f"`{env}`: {text}" for env, text in per_env.items())
        )
    lines += [
        f"- Streams: {args.paced_chunks} chunks paced at {args.delay * 1e3:g} ms "
        f"(each chunk arrives on its own, as from a model), and {args.chunks} chunks with no "
        f"delay (burst); {args.rounds} rounds x {args.reps} stream(s) of each. Requests: "
        f"{args.rounds} rounds x {args.request_reps}, one-chunk answers, median.",
        "- CPU is the client process's own (`time.process_time()`, all threads), the emulators "
        "run in another process. Per chunk = median over rounds of (CPU of an N-chunk stream "
        "- CPU of the 1-chunk stream next to it) / (N - 1). Rounds go over all clients in "
        "turn, so that a busy moment of the machine does not fall on one client only.",
        "",
    ]

    lines += ["## Where llmplex stands", "", *findings(results), ""]
    lines += [
        "## Import time",
        "",
        f'`python -c "..."` wall time, interpreter start included, median of '
        f"{args.import_runs} runs.",
        "",
        "| statement | ms | vs `import aiohttp` |",
        "|---|---:|---:|",
    ]
    imports = results.get("imports", {})
    base = (imports.get("import aiohttp (baseline)") or {}).get("median_ms")
    for label, row in imports.items():
        lines.append(f"| `{label}` | {fmt(row['median_ms'])} | {ratio(row['median_ms'], base)} |")
    lines.append("")

    streams = results.get("streams", {})
    lines += [
        "## Streaming and requests",
        "",
        "CPU per chunk *paced* is the figure that matters for real models, whose chunks "
        "arrive one at a time: it includes the event loop waking up for each chunk. "
        "*Burst* reads the same chunks sent back to back with no delay; there the "
        "client's CPU is mostly set by how fast the emulator writes (a fast client wakes "
        "per chunk, a slow one reads many at once), so it is shown for completeness. "
        "Time to first chunk: from the call to the first text (no delay). Request: a "
        "whole one-chunk answer (`stream=False` where the client has it; Replicate and "
        "Ai2 always stream).",
        "",
    ]
    for proto, rows in streams.items():
        b = rows.get("aiohttp", {})
        lines += [
            f"### {PROTOCOLS[proto]}",
            "",
            "| client | CPU/chunk paced µs | ratio | CPU/chunk burst µs | ratio | "
            "first chunk ms | ratio | CPU/request ms | vs baseline | ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for client, r in rows.items():
            delta = (
                None
                if r["request_ms"] is None or b.get("request_ms") is None
                else r["request_ms"] - b["request_ms"]
            )
            added = (
                "" if client == "aiohttp" else ("+" if (delta or 0) >= 0 else "") + fmt(delta, 3)
            )
            lines.append(
                f"| {LABELS[client]} | {fmt(r['paced_us'])} "
                f"| {ratio(r['paced_us'], b.get('paced_us'))} "
                f"| {fmt(r['burst_us'])} | {ratio(r['burst_us'], b.get('burst_us'))} "
                f"| {fmt(r['ttfc_ms'], 2)} | {ratio(r['ttfc_ms'], b.get('ttfc_ms'))} "
                f"| {fmt(r['request_ms'], 3)} | {added} "
                f"| {ratio(r['request_ms'], b.get('request_ms'))} |"
            )
            if client == "serve":
                lines.append(
                    f"| ↳ llmplex serve process | {fmt(r.get('server_paced_us'))} | "
                    f"{ratio(r.get('server_paced_us'), b.get('paced_us'))} | "
                    f"{fmt(r.get('server_burst_us'))} | "
                    f"{ratio(r.get('server_burst_us'), b.get('burst_us'))} | | | "
                    f"{fmt(r.get('server_request_ms'), 3)} | | "
                    f"{ratio(r.get('server_request_ms'), b.get('request_ms'))} |"
                )
        lines.append("")
    if results.get("serve"):
        lines += [
            f"`serve`: {results['serve']}. Its rows are the openai SDK's CPU (the client) "
            "and, below, the llmplex server's CPU (read from /proc), which decodes the "
            "upstream stream and encodes its own.",
            "",
        ]

    lines += _instruction_table(
        "Instructions per chunk (callgrind)",
        f"The client process under valgrind, streams of {args.slow_chunks} chunks paced at "
        "20 ms (valgrind runs code about 50 times slower): user-space instructions per "
        "chunk, the same on every run whatever else the machine does. Kernel time (the "
        "wake-up, the socket read) is not counted.",
        results.get("instructions", {}),
    )
    lines += _instruction_table(
        "Instructions per request (callgrind)",
        "The same for whole one-chunk answers (ten of them, after a warm-up): user-space "
        "instructions per request. The kernel's part (connecting, sending, closing) is not "
        "counted.",
        results.get("instructions_request", {}),
    )

    conc = results.get("concurrency", [])
    if conc:
        lines += [
            "## Concurrent streams",
            "",
            f"N streams of {args.concurrent_chunks} chunks (no delay) at once in one "
            "fresh process; every text checked. Peak RSS is the process's high-water "
            "mark (`ru_maxrss`, imports included).",
            "",
            "| client | protocol | N | correct | wall s | ratio | CPU s | ratio | "
            "peak RSS MB | ratio |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        base_rows = {
            (r["proto"], r["n"]): r for r in conc if r["client"] == "aiohttp" and "error" not in r
        }
        for r in conc:
            b = base_rows.get((r["proto"], r["n"]), {})
            if "error" in r:
                lines.append(
                    f"| {LABELS[r['client']]} | {r['proto']} | {r['n']} | failed: "
                    f"{r['error'][:80]} | | | | | | |"
                )
                continue
            rss = r["maxrss_kb"] / 1024
            brss = b.get("maxrss_kb", 0) / 1024 or None
            correct = f"{r['ok']}/{r['n']}"
            if r["errors"] or r["wrong"]:
                sample = "; ".join(r["error_sample"])[:80]
                correct += f" ({r['errors']} errors, {r['wrong']} wrong; {sample})"
            lines.append(
                f"| {LABELS[r['client']]} | {r['proto']} | {r['n']} | {correct} "
                f"| {fmt(r['wall'], 2)} | {ratio(r['wall'], b.get('wall'))} "
                f"| {fmt(r['cpu'], 2)} | {ratio(r['cpu'], b.get('cpu'))} "
                f"| {fmt(rss)} | {ratio(rss, brss)} |"
            )
        lines.append("")

    lines += ["## Budget (DESIGN.md)", "", *budget_lines(results, args), ""]
    section = server_section(SERVER_JSON)
    if section:
        lines += [section]
    blocked = results.get("blocked", {})
    lines += [
        "## Network",
        "",
        "Every client ran with outbound connections to anything but 127.0.0.1 refused "
        "(host name lookups and connects are checked in the worker process). "
        + (
            "Blocked attempts: " + "; ".join(f"{c}: {', '.join(h[:3])}" for c, h in blocked.items())
            if blocked
            else "No client attempted one."
        ),
        "",
    ]
    if results.get("errors"):
        lines += ["## Errors", ""] + [f"- {e}" for e in results["errors"]] + [""]
    if results.get("notes"):
        lines += ["## Notes", "", results["notes"], ""]
    return "\n".join(lines)


def findings(results: dict[str, Any]) -> list[str]:
    """The report's summary: the budget's figures from this run, and why they are so."""
    out: list[str] = []
    imports = results.get("imports", {})

    def ms(label: str) -> float | None:
        return (imports.get(label) or {}).get("median_ms")

    if ms("import llmplex") is not None:
        out.append(
            f"- **Import**: `import llmplex` takes {fmt(ms('import llmplex'))} ms "
            f"(`python -c pass`: {fmt(ms('python -c pass'))} ms). `from llmplex import "
            f"AsyncClient` takes {fmt(ms('from llmplex import AsyncClient'))} ms (asyncio, "
            f"sqlite3 for the conversation store), a provider "
            f"{fmt(ms('from llmplex.providers import Replicate'))} ms (aiohttp: `import "
            f"aiohttp` alone is {fmt(ms('import aiohttp (baseline)'))} ms); `import openai` "
            f"{fmt(ms('import openai'))} ms, `import litellm` {fmt(ms('import litellm'))} ms, "
            f"`import g4f` {fmt(ms('import g4f'))} ms."
        )
    streams = results.get("streams", {})
    counted = results.get("instructions", {})
    chunk_rows, request_rows = [], []
    for proto, rows in streams.items():
        b = rows.get("aiohttp") or {}
        for client in LLMPLEX_CLIENTS:
            r = rows.get(client)
            if not r or not b.get("paced_us") or r.get("paced_us") is None:
                continue
            text = f"{LABELS[client]} {r['paced_us'] / b['paced_us']:.2f}x"
            c = counted.get(proto, {})
            if c.get(client) and c.get("aiohttp"):
                text += f" ({c[client] / c['aiohttp']:.2f}x in instructions)"
            chunk_rows.append(f"{proto}: {text}")
        parts = []
        for client in LLMPLEX_CLIENTS:
            r = rows.get(client)
            ref = rows.get(REQUEST_REFERENCE.get(client, "aiohttp")) or {}
            if r and r.get("request_ms") is not None and ref.get("request_ms") is not None:
                parts.append(f"{LABELS[client]} {r['request_ms'] - ref['request_ms']:+.2f} ms")
        if parts:
            request_rows.append(f"{proto}: " + ", ".join(parts))
    if chunk_rows:
        out.append(
            "- **CPU per chunk** (paced, vs bare aiohttp): "
            + "; ".join(chunk_rows)
            + ". The decoding work per chunk is now at or below the baseline's; what "
            "remains above it is the routing and chunk objects of the clients, and "
            "for the sync `Client` the hand-off of every chunk from llmplex's event "
            "loop thread to the caller's thread (a thread wake-up per chunk: kernel "
            "time, which instruction counts do not see)."
        )
    if request_rows:
        out.append(
            "- **CPU per request**, each against the bare aiohttp client that treats "
            "connections the same way (a provider called directly opens a connection "
            "per call, like bare aiohttp with a new session per request; in a "
            "`ConnectionPool`, in `async with AsyncClient()` and in the sync `Client` "
            "connections are kept alive, like the baseline's): "
            + "; ".join(request_rows)
            + ". What remains is llmplex's own set-up (session, headers, body, error "
            "translation, and for the clients routing and the answer's objects) and, "
            "for the OpenAI-compatible API, reading the answer as a stream of events "
            "where the baseline reads one JSON body: llmplex streams upstream even "
            "for a whole answer, so that a long answer never runs into the timeout "
            "between bytes. The sync `Client` adds a hand-off to llmplex's loop "
            "thread and back per call: thread wake-ups, kernel time (its instruction "
            "count below is within a few percent of `AsyncClient`'s). The CPU figures "
            "per request move by ±0.3 ms from run to run here; the instruction counts "
            "below do not."
        )
    per_request = results.get("instructions_request", {})
    counted_rows = []
    for proto, row in per_request.items():
        if row.get("aiohttp"):
            counted_rows.append(
                f"{proto}: "
                + ", ".join(
                    f"{LABELS[c]} {row[c] / 1e3:.0f}k"
                    for c in ("aiohttp", "aiohttp-fresh", *LLMPLEX_CLIENTS)
                    if row.get(c)
                )
            )
    if counted_rows:
        out.append(
            "- **Instructions per request** (user space only): " + "; ".join(counted_rows) + "."
        )
    big = [
        r
        for r in results.get("concurrency", [])
        if r.get("n") == 1000 and r["client"] in ("llmplex", "llmplex-async")
    ]
    if big:
        good = all("error" not in r and r["ok"] == r["n"] for r in big)
        out.append(
            f"- **1,000 concurrent streams**: {'every' if good else 'NOT every'} text "
            "correct, for the provider and `AsyncClient` on all three protocols; wall "
            + ", ".join(
                f"{r['client']}/{r['proto']} {r['wall']:.2f} s" for r in big if "error" not in r
            )
            + "."
        )
    serve = streams.get("openai", {}).get("serve")
    base = streams.get("openai", {}).get("aiohttp")
    if serve and base and serve.get("server_paced_us") and base.get("paced_us"):
        out.append(
            f"- **llmplex serve** (not in the budget): the server process spends "
            f"{serve['server_paced_us']:.0f} µs per chunk "
            f"({serve['server_paced_us'] / base['paced_us']:.2f}x a bare aiohttp "
            "client's reading): it reads the upstream stream and writes its own, with "
            "FastAPI and uvicorn. The openai SDK in front of it costs more than the "
            "server."
        )
    return out


def budget_lines(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    out = ["| budget | measured | verdict |", "|---|---|---|"]
    imports = results.get("imports", {})
    t = (imports.get("import llmplex") or {}).get("median_ms")
    out.append(
        f'| `python -c "import llmplex"` < 100 ms | {fmt(t)} ms | '
        f"{'met' if t is not None and t < 100 else 'MISSED'} |"
    )
    streams = results.get("streams", {})
    instructions = results.get("instructions", {})
    for proto, rows in streams.items():
        b = rows.get("aiohttp")
        if not b:
            continue
        for client in LLMPLEX_CLIENTS:
            r = rows.get(client)
            if not r or r["paced_us"] is None or not b["paced_us"]:
                continue
            q = r["paced_us"] / b["paced_us"]
            parts = [f"{q:.2f}x CPU paced"]
            if r["burst_us"] and b["burst_us"]:
                parts.append(f"{r['burst_us'] / b['burst_us']:.2f}x CPU burst")
            counted = instructions.get(proto, {})
            qi = None
            if counted.get(client) and counted.get("aiohttp"):
                qi = counted[client] / counted["aiohttp"]
                parts.append(f"{qi:.2f}x instructions")
            # The verdict goes by the paced CPU; where it is counted, by the instruction
            # count too (the CPU figures move by ±20% from run to run on a shared machine).
            good = q <= 1.5 and (qi is None or qi <= 1.5)
            out.append(
                f"| CPU/chunk ≤ 1.5x baseline: {LABELS[client]}, {proto} | "
                f"{', '.join(parts)} | {'met' if good else 'MISSED'} |"
            )
        for client in LLMPLEX_CLIENTS:
            r = rows.get(client)
            reference = REQUEST_REFERENCE.get(client, "aiohttp")
            ref = rows.get(reference) or {}
            if not r or r["request_ms"] is None or ref.get("request_ms") is None:
                continue
            d = r["request_ms"] - ref["request_ms"]
            out.append(
                f"| CPU/request ≤ 0.5 ms above {LABELS[reference]}: {LABELS[client]}, "
                f"{proto} | {d:+.3f} ms | {'met' if d <= 0.5 else 'MISSED'} |"
            )
    for r in results.get("concurrency", []):
        if r.get("n") == 1000 and r["client"].startswith("llmplex"):
            if "error" in r:
                out.append(
                    f"| 1,000 concurrent streams correct: {LABELS[r['client']]}, "
                    f"{r['proto']} | failed | MISSED |"
                )
            else:
                good = r["ok"] == r["n"]
                out.append(
                    f"| 1,000 concurrent streams correct: {LABELS[r['client']]}, "
                    f"{r['proto']} | {r['ok']}/{r['n']} in {r['wall']:.2f} s | "
                    f"{'met' if good else 'MISSED'} |"
                )
    return out


def _settings(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.quick:
        args.paced_chunks, args.chunks, args.rounds, args.reps = 100, 300, 4, 1
        args.request_reps, args.import_runs, args.concurrent_chunks = 5, 3, 20
    args.only = [c for c in args.only.split(",") if c]
    args.concurrency = [int(n) for n in args.concurrency.split(",") if n]
    if "aiohttp" not in args.only and args.only:
        args.only.append("aiohttp")  # ratios need the baseline
    return args


#: in RESULTS.md, what follows this line is written by hand and kept by every rewrite
KEPT = "<!-- Written by hand below this line: bench/run.py keeps it when it rewrites the file. -->"


def write_report(path: Path, report: str) -> None:
    """Write ``report`` to ``path``, keeping the hand-written part of the old file (from
    :data:`KEPT` on), so a run cannot delete measurements made by other scripts."""
    kept = ""
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if KEPT in old:
            kept = "\n" + old[old.index(KEPT) :]
    path.write_text(report + "\n" + kept, encoding="utf-8")


def server_section(path: Path) -> str:
    """The server hop's section of RESULTS.md, from ``--server``'s JSON (if any)."""
    if not path.exists():
        return ""
    sys.path.insert(0, str(BENCH))
    import server

    results = json.loads(path.read_text())
    head = (
        f"Written by `python3 bench/run.py {' '.join(results['argv'])}` on "
        f"{results['date']} (UTC), in {results['duration_s']:.0f} s; llmplex at commit "
        f"{results['machine'].get('commit', '?')}; {results.get('versions', '')}."
    )
    lines = server.render(results)
    return "\n".join([*lines[:2], head, "", *lines[2:]])


def server_main(args: argparse.Namespace, argv: list[str]) -> int:
    """``--server``: measure the server hop, write its JSON, re-render RESULTS.md."""
    sys.path.insert(0, str(BENCH))
    import server

    started = time.time()
    python = Path(args.server_python) if args.server_python else ensure_env("llmplex")
    litellm: str | None
    if args.litellm_python == "none":
        litellm = None
    elif args.litellm_python:
        litellm = args.litellm_python
    else:
        litellm = str(ensure_env("litellm-proxy"))
    versions = []
    for py, names in ((python, "uvicorn fastapi aiohttp uvloop httptools"), (litellm, "litellm")):
        if py:
            out = subprocess.run(
                [
                    str(py),
                    "-c",
                    "import importlib.metadata as m, sys\n"
                    "for n in sys.argv[1:]:\n"
                    "    try: print(n, m.version(n))\n"
                    "    except m.PackageNotFoundError: print(n, 'absent')",
                    *names.split(),
                ],
                capture_output=True,
                text=True,
            ).stdout.split("\n")
            versions += [line for line in out if line]
    workdir = Path(tempfile.mkdtemp(prefix="llmplex-server-bench-"))
    try:
        results = server.measure(
            str(python), litellm, str(Path(python).parent / "llmplex"), workdir, args.quick, log
        )
    finally:
        if not args.keep_work:
            shutil.rmtree(workdir, ignore_errors=True)
    results.update(
        {
            "argv": argv,
            "quick": args.quick,
            "machine": machine_info(),
            "versions": ", ".join(versions),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
            "duration_s": time.time() - started,
        }
    )
    Path(args.server_json).write_text(json.dumps(results, indent=1, ensure_ascii=False))
    section = server_section(Path(args.server_json))
    print(section)
    library = Path(args.json)
    if library.exists() and Path(args.output).resolve() == (BENCH / "RESULTS.md").resolve():
        lib = json.loads(library.read_text())
        report = render(lib, _settings(build_parser(), lib.get("argv", [])))
        write_report(Path(args.output), report)
        log(f"wrote {args.output} (library figures from {library}, server from {args.server_json})")
    log(f"wrote {args.server_json} in {results['duration_s']:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer and shorter runs (about 3 minutes once the envs exist)",
    )
    parser.add_argument("--chunks", type=int, default=1000, help="chunks per burst stream")
    parser.add_argument("--paced-chunks", type=int, default=200, help="chunks per paced stream")
    parser.add_argument(
        "--delay", type=float, default=0.001, help="seconds between chunks of a paced stream"
    )
    parser.add_argument("--concurrency", default="100,1000", help="concurrent stream counts")
    parser.add_argument("--concurrent-chunks", type=int, default=50)
    parser.add_argument("--concurrent-timeout", type=float, default=300)
    parser.add_argument(
        "--rounds", type=int, default=12, help="rounds over all clients (interleaving them in time)"
    )
    parser.add_argument("--reps", type=int, default=1, help="streams per round and client")
    parser.add_argument("--request-reps", type=int, default=8, help="requests per round")
    parser.add_argument("--import-runs", type=int, default=9)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per chunk under valgrind (callgrind): "
        "noise-free, adds a few minutes",
    )
    parser.add_argument(
        "--slow-chunks",
        type=int,
        default=100,
        help="chunks per stream under valgrind (paced at 20 ms)",
    )
    parser.add_argument("--only", default="", help="comma-separated clients (default: all)")
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="only the baseline and llmplex (no peer environments)",
    )
    parser.add_argument("--rebuild-envs", action="store_true")
    parser.add_argument(
        "--keep-work",
        action="store_true",
        help="keep the work directory (worker logs, callgrind dumps)",
    )
    parser.add_argument("--output", default=str(BENCH / "RESULTS.md"))
    parser.add_argument("--json", default=str(BENCH / "results.json"))
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: write the report again from the JSON file "
        "(after a change to the report's wording)",
    )
    parser.add_argument(
        "--server",
        action="store_true",
        help="the server hop instead: the aiohttp proxy floor, llmplex serve "
        "and LiteLLM's proxy in front of one upstream (bench/server.py); "
        "writes bench/server-results.json and the server section of "
        "RESULTS.md (with --quick: about 4 minutes)",
    )
    parser.add_argument(
        "--server-python",
        default="",
        help="with --server: the Python with llmplex[server] to run the "
        "gateways in (default: bench/.envs/llmplex's)",
    )
    parser.add_argument(
        "--litellm-python",
        default="",
        help="with --server: the Python with litellm[proxy] (default: "
        "bench/.envs/litellm-proxy's, created on first use; 'none': skip)",
    )
    parser.add_argument("--server-json", default=str(SERVER_JSON))
    return parser


def main() -> int:
    parser = build_parser()
    argv = sys.argv[1:]
    args = _settings(parser, argv)
    if args.server:
        return server_main(args, argv)
    if args.render_only:
        results = json.loads(Path(args.json).read_text())
        report = render(results, _settings(parser, results.get("argv", [])))
        write_report(Path(args.output), report)
        log(f"wrote {args.output} from {args.json}")
        return 0

    started = time.time()
    needed = {"llmplex"} | {
        CLIENTS[c][0]
        for c in CLIENTS
        if (not args.only or c in args.only) and not (args.no_peers and CLIENTS[c][0] != "llmplex")
    }
    for name in ENV_SPECS:
        if name in needed:
            ensure_env(name, args.rebuild_envs)

    results: dict[str, Any] = {
        "argv": argv,
        "machine": machine_info(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
    }
    log("import times")
    results["imports"] = measure_imports(args.import_runs, needed)
    bench = Bench(args)
    try:
        bench.start()
        bench.measure_streams()
        bench.measure_concurrency()
        if args.instructions:
            bench.measure_instructions()
    finally:
        bench.stop()
    results.update(bench.results)
    results["duration_s"] = time.time() - started
    Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False))
    report = render(results, args)
    write_report(Path(args.output), report)
    print(report)
    if args.keep_work:
        log(f"work files (logs, callgrind dumps) kept in {bench.workdir}")
    else:
        shutil.rmtree(bench.workdir, ignore_errors=True)
    log(f"wrote {args.output} and {args.json} in {results['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
