"""Serve the benchmark's emulators in their own process (so their CPU is not counted).

Run in llmplex's environment, e.g. ``python emulators.py --burst 1,1000 --paced 1,200``.
For each protocol (OpenAI-compatible SSE, Replicate SSE, Ai2 v5 JSONL) and each stream it
serves one emulator on its own 127.0.0.1 port, whose every answer is that many chunks:
``b<n>`` with no delay (burst), ``p<n>`` with ``--delay`` seconds before each chunk
(paced, as a model streams), ``s<n>`` with ``--slow-delay`` (for clients run under
valgrind, 50 times slower). Prints one JSON line ``{"pid": ..., "urls": {"openai":
{"b1": url, ...}, "replicate": ..., "ai2": ...}}`` and serves until stdin closes (or
SIGTERM).

The listen backlog is raised (aiohttp's default is 128) so that 1,000 connections opened
at once are accepted rather than retried by the kernel a second later.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys

from aiohttp import web

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import chunks

from llmplex.emulators import Script
from llmplex.emulators.ai2 import Ai2Emulator
from llmplex.emulators.openai import OpenAIEmulator
from llmplex.emulators.replicate import ReplicateEmulator

BACKLOG = 4096


def make(kind: str, n: int, delay: float = 0.0):
    script = Script(chunks=chunks(n), delay=delay)
    if kind == "openai":
        # strict=False: accept the extra body fields some peers send, as vLLM & co. do
        return OpenAIEmulator(script, strict=False, seed=n)
    if kind == "replicate":
        return ReplicateEmulator(script)
    if kind == "ai2":
        return Ai2Emulator(script, seed=n)
    raise ValueError(kind)


class Forgetful:
    """Keeps an emulator's request log short: a long benchmark would otherwise hold every
    request it ever received (the Ai2 emulator's thread store too)."""

    def __init__(self, emulators: list) -> None:
        self.emulators = emulators

    async def run(self) -> None:
        while True:
            await asyncio.sleep(5)
            for emulator in self.emulators:
                if len(emulator.requests) > 5000:
                    del emulator.requests[:-100]


async def main(streams: list[tuple[str, int, float]], kinds: list[str]) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    urls: dict[str, dict[str, str]] = {}
    runners = []
    emulators = []
    for kind in kinds:
        urls[kind] = {}
        for key, n, delay in streams:
            emulator = make(kind, n, delay)
            runner = web.AppRunner(emulator.app(), access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=BACKLOG)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            emulator.url = f"http://127.0.0.1:{port}"
            urls[kind][key] = emulator.url
            runners.append(runner)
            emulators.append(emulator)
    print(json.dumps({"pid": os.getpid(), "urls": urls}), flush=True)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # stdin closing (the benchmark ended or died) stops us too
    loop.add_reader(
        sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(1) else None
    )
    cleaner = asyncio.ensure_future(Forgetful(emulators).run())
    await stop.wait()
    cleaner.cancel()
    for runner in runners:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--burst", default="1,1000,50", help="chunk counts served with no delay (keys b<count>)"
    )
    parser.add_argument(
        "--paced",
        default="1,200",
        help="chunk counts served with --delay before each chunk (keys p<count>)",
    )
    parser.add_argument("--delay", type=float, default=0.001)
    parser.add_argument(
        "--slow",
        default="",
        help="chunk counts served with --slow-delay (keys s<count>), for "
        "clients run under valgrind",
    )
    parser.add_argument("--slow-delay", type=float, default=0.02)
    parser.add_argument("--kinds", default="openai,replicate,ai2")
    args = parser.parse_args()
    streams = [(f"b{n}", int(n), 0.0) for n in args.burst.split(",") if n]
    streams += [(f"p{n}", int(n), args.delay) for n in args.paced.split(",") if n]
    streams += [(f"s{n}", int(n), args.slow_delay) for n in args.slow.split(",") if n]
    asyncio.run(main(streams, args.kinds.split(",")))
