"""What the Redis state backend costs per request, against the embedded one.

    .venv/bin/python bench/state_cost.py [--requests 400]

Needs ``redis-server`` on PATH (or /usr/bin) and the ``redis`` extra. Starts a Redis on a
free port, the OpenAI emulator (in this process, answering at once), and ``llmplex serve``
twice (embedded state; Redis state), each with
one API key limited by rpm and tpm (so every request is admitted and counted through the
backend), and sends the same sequential requests over one kept-alive connection: plain
chat completions, then turns of one stored conversation. Prints the mean wall time per
request and the server process's CPU per request (user + system, from /proc). Not a test:
numbers for the report, on this machine, as they are.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

LLMPLEX = shutil.which("llmplex", path=str(Path(sys.executable).parent)) or "llmplex"
CONFIG = """
[server.keys.bench]
key = "sk-bench"
rpm = 100000000
tpm = 100000000000
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(
    tmp: Path, name: str, state_url: str | None, upstream: str
) -> tuple[subprocess.Popen[bytes], str]:
    config = tmp / f"{name}.toml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPLEX_")}
    env.update(
        LLMPLEX_CONFIG=str(config),
        LLMPLEX_DATA_DIR=str(tmp / f"{name}-data"),
        LLMPLEX_OPENAI_BASE_URL=upstream + "/v1",
        OPENAI_API_KEY="sk-upstream",
    )
    if state_url:
        env["LLMPLEX_STATE_URL"] = state_url
    log = tmp / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [LLMPLEX, "serve", "--port", "0", "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "serving the OpenAI-compatible API at " in line:
                url = line.split(" at ", 1)[1].split()[0].removesuffix("/v1")
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        return process, url
                except httpx.HTTPError:
                    pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{name}: llmplex serve did not start: {log.read_text()}")


def measure(process: subprocess.Popen[bytes], url: str, requests: int) -> dict[str, float]:
    headers = {"Authorization": "Bearer sk-bench"}
    body = {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    out = {}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for _ in range(20):  # warm up
            client.post("/v1/chat/completions", json=body).raise_for_status()
        conversation = client.post("/v1/conversations", json={}).json()["id"]
        for label, extra in (
            ("chat", {}),
            ("conversation turn", {"conversation_id": conversation}),
        ):
            cpu, wall = cpu_seconds(process.pid), time.perf_counter()
            for _ in range(requests):
                client.post("/v1/chat/completions", json={**body, **extra}).raise_for_status()
            out[f"{label} wall ms"] = (time.perf_counter() - wall) * 1000 / requests
            out[f"{label} server CPU ms"] = (cpu_seconds(process.pid) - cpu) * 1000 / requests
            if extra:  # the history grows: keep the turns comparable between backends
                client.delete(f"/v1/conversations/{conversation}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    from llmplex.emulators.openai import OpenAIEmulator
    from llmplex.testing import Script, serve

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    with (
        tempfile.TemporaryDirectory() as directory,
        serve(OpenAIEmulator(Script("Hello there, from the emulator."))) as upstream,
    ):
        tmp = Path(directory)
        port = free_port()
        redis = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        results = {}
        try:
            for name, state_url in (("embedded", None), ("redis", f"redis://127.0.0.1:{port}/0")):
                process, url = start(tmp, name, state_url, str(upstream.url))
                try:
                    results[name] = measure(process, url, args.requests)
                finally:
                    process.terminate()
                    process.wait(timeout=20)
        finally:
            redis.terminate()
            redis.wait(timeout=10)
    print(
        f"{args.requests} sequential requests each, one kept-alive connection, "
        "llmplex serve, a key with rpm and tpm"
    )
    print(f"{'':28}{'embedded':>10}{'redis':>10}{'delta':>10}")
    for metric in results["embedded"]:
        a, b = results["embedded"][metric], results["redis"][metric]
        print(f"{metric:28}{a:10.3f}{b:10.3f}{b - a:+10.3f}")


if __name__ == "__main__":
    main()
