"""Requests per second of ``llmplex serve`` with 1 and with 2 worker processes.

    .venv/bin/python bench/workers.py [--seconds 10] [--rounds 3] [--concurrency 32]

Run with the project's environment (llmplex with the server extra, aiohttp). Starts the
OpenAI emulator (:mod:`llmplex.emulators`, answering at once, in its own process), then for
each round and each worker count a fresh ``llmplex serve --workers N`` in front of it, and drives it
from this process with ``--concurrency`` aiohttp requests in flight (non-streaming chat
completions, a three-word answer, kept-alive connections) for ``--seconds``. Prints the
median requests/s per worker count as a Markdown table (for bench/RESULTS.md). On a
machine with few cores the emulator, the load generator and the workers share them:
the figures say what a second worker gains here, not on a bigger machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

BIN = Path(sys.executable).parent
# The emulator in a process of its own, answering three words at once (no pacing).
EMULATOR = """
import sys
from llmplex.emulators import Script, serve
from llmplex.emulators.openai import OpenAIEmulator
with serve(OpenAIEmulator(Script("one two three"))) as emulator:
    print(emulator.url, flush=True)
    sys.stdin.read()
"""
BODY = {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def environment() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLMPLEX_", "PROMETHEUS_")) and not k.endswith("_API_KEY")
    }
    home = Path(tempfile.mkdtemp(prefix="llmplex-bench-workers-"))
    (home / "config.toml").touch()
    env.update(
        HOME=str(home),
        LLMPLEX_CONFIG=str(home / "config.toml"),
        LLMPLEX_DATA_DIR=str(home / "data"),
    )
    return env


def start_server(env: dict[str, str], workers: int, log: Path) -> tuple[subprocess.Popen[str], str]:
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                str(BIN / "llmplex"),
                "serve",
                "--port",
                "0",
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ],
            env=env,
            text=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"at (http://127\.0\.0\.1:\d+)/v1", log.read_text())
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"llmplex serve did not start:\n{log.read_text()}")


async def load(url: str, seconds: float, concurrency: int) -> float:
    """Requests/s completed (each checked) with ``concurrency`` in flight."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def ready() -> None:  # every worker up: the port answers
            for _ in range(600):
                try:
                    async with session.get(url + "/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            raise SystemExit("the server never answered /health")

        await ready()
        done = 0
        stop_at = 0.0

        async def one_client() -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                async with session.post(url + "/v1/chat/completions", json=BODY) as response:
                    data = await response.json()
                    if response.status != 200 or not data["choices"][0]["message"]["content"]:
                        raise SystemExit(f"bad answer: {response.status} {data}")
                done += 1

        stop_at = time.monotonic() + 2.0  # warm-up: connections, imports, caches
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        done = 0
        began = time.monotonic()
        stop_at = began + seconds
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        return done / (time.monotonic() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    env = environment()
    emulator = subprocess.Popen(
        [sys.executable, "-c", EMULATOR],
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    results: dict[int, list[float]] = {1: [], 2: []}
    try:
        assert emulator.stdout is not None
        env.update(
            LLMPLEX_OPENAI_BASE_URL=emulator.stdout.readline().strip() + "/v1",
            OPENAI_API_KEY="sk-bench",
        )
        log = Path(env["HOME"]) / "serve.log"
        for _ in range(args.rounds):
            for workers in results:  # interleaved: a busy moment hits both
                server, url = start_server(env, workers, log)
                try:
                    rate = asyncio.run(load(url, args.seconds, args.concurrency))
                finally:
                    server.terminate()
                    server.wait(60)
                results[workers].append(rate)
                print(f"  workers={workers}: {rate:.0f} requests/s", file=sys.stderr)
    finally:
        emulator.terminate()
        emulator.wait(30)
        assert emulator.stdin is not None and emulator.stdout is not None
        emulator.stdin.close()
        emulator.stdout.close()
    one = statistics.median(results[1])
    print(
        f"\n{os.cpu_count()} cores; {args.concurrency} requests in flight, "
        f"{args.seconds:g} s x {args.rounds} rounds, median\n"
    )
    print("| workers | requests/s | vs 1 worker |\n|---:|---:|---:|")
    for workers, rates in results.items():
        median = statistics.median(rates)
        print(f"| {workers} | {median:,.0f} | {median / one:.2f}x |")


if __name__ == "__main__":
    main()
