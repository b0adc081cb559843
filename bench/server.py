"""The server hop: gateways between a load generator and one fast OpenAI-compatible
upstream (``python3 bench/run.py --server``).

This file is both the driver (:func:`measure`, called by ``run.py``) and the processes it
starts, each in the llmplex environment's Python (standard library and aiohttp only)::

    python server.py upstream PORT DELAY   a minimal fast aiohttp upstream: answers
                                           max_tokens chunks of "hello", DELAY s apart
    python server.py floor PORT UPSTREAM   the floor: a minimal aiohttp reverse proxy
    python server.py design-floor PORT UPSTREAM
                                           the work llmplex's design requires, alone
                                           (uvicorn; run with the server's Python)
    python server.py load                  the load generator: raw asyncio sockets,
                                           commands as JSON lines on stdin

The gateways (the floor, ``llmplex serve``, LiteLLM's proxy) all sit in front of the same
upstream; the load generator drives each in turn, rounds interleaved, and the driver
reads each gateway's CPU (``utime+stime`` of the process and its children, from
``/proc``) before and after every run. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HELLO = "hello"
MESSAGES = [{"role": "user", "content": "Hi"}]
TICK = os.sysconf("SC_CLK_TCK")
LITELLM_KEY = "sk-bench-master-0123456789abcdef0123456789"  # its proxy's master key


# -- the upstream ----------------------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def upstream(port: int, delay: float) -> None:
    from aiohttp import web

    first = _chunk({"role": "assistant", "content": HELLO})
    # a few different texts in turn: LiteLLM cuts a stream repeating one chunk 100 times
    middles = [_chunk({"content": f"{HELLO}{j}"}) for j in range(8)]
    last = _chunk({}, "stop")
    usage = (
        b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":'
        b'1700000000,"model":"bench","choices":[],"usage":{"prompt_tokens":1,'
        b'"completion_tokens":1,"total_tokens":2}}\n\n'
    )

    async def chat(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        n = int(body.get("max_tokens") or body.get("max_completion_tokens") or 1)
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": "bench",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": HELLO * n},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1},
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(n):
            await response.write(first if i == 0 else middles[i % 8])
            if delay and i < n - 1:
                await asyncio.sleep(delay)
        await response.write(last)
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(usage)
        await response.write(b"data: [DONE]\n\n")
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "bench", "object": "model", "created": 0, "owned_by": "bench"}],
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    gc.freeze()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096)


# -- the floor: a minimal aiohttp reverse proxy -----------------------------------------------


def floor(port: int, target: str) -> None:
    import aiohttp
    from aiohttp import web

    async def start(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
        )

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with request.app["session"].post(
            target + request.path, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            kind = upstream.headers.get("Content-Type", "application/json")
            if not kind.startswith("text/event-stream"):
                return web.Response(
                    body=await upstream.read(),
                    status=upstream.status,
                    headers={"Content-Type": kind},
                )
            response = web.StreamResponse(status=upstream.status, headers={"Content-Type": kind})
            await response.prepare(request)
            async for data in upstream.content.iter_any():
                await response.write(data)
            await response.write_eof()
            return response

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/v1/chat/completions", proxy)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096)


# -- the design floor: what any gateway built like llmplex must do, and nothing else -------------


def design_floor(port: int, target: str) -> None:
    """uvicorn (as ``llmplex serve`` runs it: httptools, uvloop when installed) and a
    plain ASGI function doing only the work llmplex's design cannot skip: the body
    validated by llmplex's own request model, the upstream asked for a stream (as the
    default deadlines require, even for ``stream: false``), each of its events parsed
    (usage metering, errors), a ``stream: false`` answer assembled from them. No auth,
    routing, fallback, deadlines, health, metrics or typed objects. Run with the server
    environment's Python (it needs uvicorn and llmplex)."""
    import aiohttp
    import uvicorn

    from llmplex.server.schemas import ChatCompletionRequest

    state: dict[str, Any] = {}

    async def lifespan(receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                state["session"] = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
                )
                await send({"type": "lifespan.startup.complete"})
            else:
                await state["session"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def respond(send: Any, status: int, kind: bytes, data: bytes) -> None:
        headers = [(b"content-type", kind), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            request = ChatCompletionRequest.model_validate_json(body)
        except ValueError as exc:
            return await respond(send, 400, b"text/plain", str(exc).encode())
        wire = json.loads(body)
        wire["model"] = (request.model or "bench").rpartition(":")[2]
        streamed = request.stream
        wire["stream"] = True
        wire["stream_options"] = {"include_usage": True}
        async with state["session"].post(target + "/v1/chat/completions", json=wire) as up:
            if streamed:
                headers = [(b"content-type", b"text/event-stream")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                rest = b""
                async for data in up.content.iter_any():
                    *events, rest = (rest + data).split(b"\n\n")
                    for event in events:
                        payload = event.partition(b"data: ")[2]
                        if payload and payload != b"[DONE]":
                            json.loads(payload)
                    more = {"type": "http.response.body", "body": data, "more_body": True}
                    await send(more)
                return await send({"type": "http.response.body", "body": b""})
            text: list[str] = []
            head: dict[str, Any] = {}
            finish = usage = None
            async for line in up.content:
                payload = line.partition(b"data: ")[2].strip()
                if not payload or payload == b"[DONE]":
                    continue
                chunk = json.loads(payload)
                head = head or chunk
                for choice in chunk.get("choices") or ():
                    piece = choice["delta"].get("content")
                    if piece:
                        text.append(piece)
                    finish = choice.get("finish_reason") or finish
                usage = chunk.get("usage") or usage
        answer = {
            "id": head.get("id"),
            "object": "chat.completion",
            "created": head.get("created"),
            "model": head.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(text)},
                    "finish_reason": finish,
                }
            ],
            "usage": usage,
        }
        await respond(send, 200, b"application/json", json.dumps(answer).encode())

    gc.freeze()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


# -- the load generator ------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 connection: sends a prepared request, parses the response (headers,
    then Content-Length or chunked body), resolves a future with it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.done: asyncio.Future[tuple[int, bytes, float | None]] | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.reset()

    def reset(self) -> None:
        self.status = 0
        self.length: int | None = None
        self.chunked = False
        self.in_body = False
        self.body = bytearray()
        self.first: float | None = None
        self.close_after = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection lost mid-response"))

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes, float | None]]:
        self.reset()
        self.done = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(data)
        return self.done

    def data_received(self, data: bytes) -> None:
        self.buf += data
        buf = self.buf
        if not self.in_body:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[: end + 4]
            self.status = int(head[0].split()[1])
            for line in head[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    self.length = int(value)
                elif name == "transfer-encoding" and "chunked" in value:
                    self.chunked = True
                elif name == "connection" and value == "close":
                    self.close_after = True
            self.in_body = True
        if self.chunked:
            while True:
                line = buf.find(b"\r\n")
                if line < 0:
                    return
                size = int(bytes(buf[:line]).split(b";")[0], 16)
                if len(buf) < line + 2 + size + 2:
                    return
                if size == 0:
                    del buf[: line + 4]
                    return self._finish()
                if self.first is None:
                    self.first = time.perf_counter()
                self.body += buf[line + 2 : line + 2 + size]
                del buf[: line + 2 + size + 2]
        elif self.length is not None:
            if buf and self.first is None:
                self.first = time.perf_counter()
            if len(buf) >= self.length:
                self.body += buf[: self.length]
                del buf[: self.length]
                self._finish()
        # (no length, not chunked: ends with the connection; not used by these servers)

    def _finish(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result((self.status, bytes(self.body), self.first))


def _request(
    port: int, model: str, chunks: int, stream: bool, keepalive: bool, key: str = "sk-bench"
) -> bytes:
    body = json.dumps(
        {"model": model, "messages": MESSAGES, "max_tokens": chunks, "stream": stream}
    ).encode()
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Length: {len(body)}\r\n" + ("" if keepalive else "Connection: close\r\n") + "\r\n"
    ).encode() + body


async def _run(command: dict[str, Any]) -> dict[str, Any]:
    """Requests at ``concurrency`` until ``count`` are done or ``duration`` has passed
    (then the ones under way finish). Every answer is checked (status 200, the text)."""
    loop = asyncio.get_running_loop()
    port, keepalive = command["port"], command["keepalive"]
    chunks, stream = command["chunks"], command["stream"]
    data = _request(
        port, command["model"], chunks, stream, keepalive, command.get("key", "sk-bench")
    )
    count = command.get("count")
    deadline = time.perf_counter() + command.get("duration", 1e9)
    latencies: list[float] = []
    firsts: list[float] = []
    errors: list[str] = []
    started = 0

    async def connect() -> _Conn:
        _, conn = await loop.create_connection(_Conn, "127.0.0.1", port)
        return conn

    async def worker() -> None:
        nonlocal started
        conn: _Conn | None = None
        while (count is None or started < count) and time.perf_counter() < deadline:
            started += 1
            t0 = time.perf_counter()
            try:
                if conn is None or conn.transport is None or conn.transport.is_closing():
                    conn = await connect()
                status, body, first = await conn.send(data)
            except OSError as exc:
                errors.append(repr(exc))
                conn = None
                continue
            t1 = time.perf_counter()
            if status != 200 or body.count(HELLO.encode()) != chunks:
                errors.append(f"status {status}: {body[:200]!r}")
            else:
                latencies.append(t1 - t0)
                if first is not None:
                    firsts.append(first - t0)
            if not keepalive or conn.close_after:
                assert conn.transport is not None
                conn.transport.close()
                await conn.closed
                conn = None
        if conn is not None and conn.transport is not None:
            conn.transport.close()
            await conn.closed

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(command["concurrency"])))
    wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "n": len(latencies),
        "wall": wall,
        "errors": len(errors),
        "error_sample": errors[:3],
        "p50": _pct(latencies, 50),
        "p99": _pct(latencies, 99),
        "ttft": statistics.median(firsts) if firsts else None,
    }


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def load() -> None:
    gc.disable()  # the load generator's pauses are no gateway's
    for line in sys.stdin:
        result = asyncio.run(_run(json.loads(line)))
        print(json.dumps(result), flush=True)


# -- the driver (run by run.py, standard library only) ----------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (of all its threads)
    return total / TICK


def peak_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class Gateway:
    """One row: a process in front of the upstream (or none, for ``direct``)."""

    def __init__(
        self,
        name: str,
        label: str,
        argv: list[str] | None,
        port: int,
        model: str,
        env: dict[str, str],
        workdir: Path,
    ) -> None:
        self.name, self.label, self.port, self.model = name, label, port, model
        self.key = "sk-bench"  # the bearer token the load generator sends
        self.proc: subprocess.Popen[Any] | None = None
        self.pids: list[int] = []
        self.argv, self.env = argv, env
        self.log = workdir / f"gateway-{name}.log"
        self.reason = ""

    def start(self) -> bool:
        if self.argv is None:
            return True
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        if not wait_port(self.port, self.proc):
            self.reason = f"did not start: {self.log.read_text()[-800:]}"
            self.stop()
            return False
        time.sleep(0.5)
        self.pids = _descendants(self.proc.pid)
        return True

    def cpu(self) -> float:
        if not self.proc:
            return 0.0
        # read the process tree again: a supervisor's workers may have started late
        self.pids = _descendants(self.proc.pid)
        return cpu_seconds(self.pids)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Load:
    def __init__(self, python: str) -> None:
        self.proc = subprocess.Popen(
            [python, __file__, "load"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def run(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(30)


def _measure_round(load: Load, gw: Gateway, quick: bool, chunks: int) -> dict[str, Any]:
    """One round of every figure for one gateway."""
    d = 1.0 if quick else 3.0
    out: dict[str, Any] = {}
    base = {"port": gw.port, "model": gw.model, "key": gw.key}
    errors = 0
    for keepalive in (True, False):
        tag = "ka" if keepalive else "new"
        for conc in (1, 16, 64) if keepalive else (1, 16):
            c0 = gw.cpu()
            r = load.run(
                **base, keepalive=keepalive, chunks=1, stream=False, concurrency=conc, duration=d
            )
            cpu = gw.cpu() - c0
            errors += r["errors"]
            if r["error_sample"]:
                out.setdefault("error_sample", r["error_sample"])
            out[f"{tag}_c{conc}_rps"] = r["n"] / r["wall"]
            out[f"{tag}_c{conc}_cpu_ms"] = cpu / r["n"] * 1e3 if r["n"] else None
            if conc == 1:
                out[f"{tag}_p50_ms"] = r["p50"] * 1e3 if r["p50"] else None
                out[f"{tag}_p99_ms"] = r["p99"] * 1e3 if r["p99"] else None
    # streams: per chunk = (CPU of long streams - CPU of one-chunk streams) / extra chunks
    # (CPU is read in 10 ms ticks: enough streams that the difference is well above them)
    k = 8 if quick else 16
    c0 = gw.cpu()
    short = load.run(**base, keepalive=True, chunks=1, stream=True, concurrency=1, count=k)
    c1 = gw.cpu()
    long = load.run(**base, keepalive=True, chunks=chunks, stream=True, concurrency=1, count=k)
    c2 = gw.cpu()
    errors += short["errors"] + long["errors"]
    if short["error_sample"] or long["error_sample"]:
        out.setdefault("error_sample", short["error_sample"] or long["error_sample"])
    if short["n"] == k and long["n"] == k:
        out["chunk_us"] = ((c2 - c1) - (c1 - c0)) / k / (chunks - 1) * 1e6
    out["ttft_ms"] = long["ttft"] * 1e3 if long["ttft"] else None
    out["errors"] = errors
    out.setdefault("error_sample", None)
    return out


def measure(
    python: str, litellm_python: str | None, llmplex_bin: str, workdir: Path, quick: bool, log: Any
) -> dict[str, Any]:
    """Start the upstream and the gateways, run the rounds, return the results."""
    workdir.mkdir(parents=True, exist_ok=True)
    rounds = 3 if quick else 5
    chunks = 200
    delay = 0.001
    many = 500
    many_chunks = 20 if quick else 50
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_PROXY", "_proxy")) and k != "LLMPLEX_CONFIG"
    }
    env.update({"DO_NOT_TRACK": "1", "NO_PROXY": "*", "no_proxy": "*"})
    up_port = free_port()
    up = subprocess.Popen(
        [python, __file__, "upstream", str(up_port), str(delay)], env=env, start_new_session=True
    )
    results: dict[str, Any] = {
        "rounds": rounds,
        "chunks": chunks,
        "delay": delay,
        "many": many,
        "many_chunks": many_chunks,
        "rows": {},
        "notes": {},
    }
    gateways: list[Gateway] = []
    try:
        if not wait_port(up_port, up):
            raise RuntimeError("the bench upstream did not start")
        target = f"http://127.0.0.1:{up_port}"
        gateways.append(
            Gateway(
                "direct", "no gateway (the upstream itself)", None, up_port, "bench", env, workdir
            )
        )
        port = free_port()
        gateways.append(
            Gateway(
                "floor",
                "minimal aiohttp reverse proxy (the floor)",
                [python, __file__, "floor", str(port), target],
                port,
                "bench",
                env,
                workdir,
            )
        )
        # What no gateway that validates the request and streams the upstream (as the
        # default deadlines require) can skip: the floor of llmplex's design, not of aiohttp.
        port = free_port()
        gateways.append(
            Gateway(
                "design-floor",
                "design floor: uvicorn, the request validated, the upstream streamed and "
                "parsed, nothing else",
                [
                    str(Path(llmplex_bin).parent / "python"),
                    __file__,
                    "design-floor",
                    str(port),
                    target,
                ],
                port,
                "openaicompatible:bench",
                env,
                workdir,
            )
        )
        config = workdir / "serve-config.toml"
        config.write_text("")

        def serve_row(name: str, label: str, *args: str, **variables: str) -> Gateway:
            """An ``llmplex serve`` row: its own port and data directory, the same
            upstream; ``args`` for the command line, ``variables`` for the environment."""
            port = free_port()
            data = workdir / f"serve-data-{name}"
            data.mkdir(exist_ok=True)
            return Gateway(
                name,
                label,
                [llmplex_bin, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
                port,
                "openaicompatible:bench",
                {
                    **env,
                    "LLMPLEX_CONFIG": str(config),
                    "LLMPLEX_DATA_DIR": str(data),
                    "LLMPLEX_OPENAICOMPATIBLE_BASE_URL": target + "/v1",
                    **variables,
                },
                workdir,
            )

        gateways.append(serve_row("llmplex", "`llmplex serve` (1 worker)"))
        # The same with deadlines under which `stream: false` answers are asked of the
        # upstream in one piece (no first-token deadline, reads bounded by the answer's
        # own 1800 s): with the defaults they are streamed upstream and re-assembled.
        gateways.append(
            serve_row(
                "llmplex-whole",
                "`llmplex serve`, first-token deadline off (`stream: false` in one piece)",
                LLMPLEX_FIRST_TOKEN_TIMEOUT="inf",
                LLMPLEX_TIMEOUT="1800",
                LLMPLEX_TOTAL_TIMEOUT="1800",
            )
        )
        # Two worker processes on one socket (a pre-fork supervisor; the CPU counted is
        # the supervisor's and its workers'). The machine's two cores are shared with the
        # load generator and the upstream, so this row shows the cost of the split more
        # than the gain a machine with free cores would see.
        gateways.append(
            serve_row("llmplex-workers", "`llmplex serve --workers 2`", "--workers", "2")
        )
        if litellm_python:
            port = free_port()
            lconfig = workdir / "litellm.yaml"
            lconfig.write_text(
                "model_list:\n  - model_name: bench\n    litellm_params:\n"
                f"      model: openai/bench\n      api_base: {target}/v1\n"
                "      api_key: sk-bench\n"
                # it refuses to start without a master key (a strong one)
                f"general_settings:\n  master_key: {LITELLM_KEY}\n"
                "litellm_settings:\n  telemetry: false\n  drop_params: true\n"
            )
            gateways.append(
                Gateway(
                    "litellm",
                    "LiteLLM proxy",
                    [
                        str(Path(litellm_python).parent / "litellm"),
                        "--config",
                        str(lconfig),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--num_workers",
                        "1",
                    ],
                    port,
                    "bench",
                    {
                        **env,
                        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                        "LITELLM_TELEMETRY": "False",
                        "LITELLM_LOG": "ERROR",
                        "HOME": str(workdir),
                    },
                    workdir,
                )
            )
            gateways[-1].key = LITELLM_KEY
        else:
            results["notes"]["litellm"] = "not installed (see --litellm-python)"
        running = []
        for gw in gateways:
            log(f"server bench: starting {gw.name}")
            if gw.start():
                running.append(gw)
            else:
                results["notes"][gw.name] = gw.reason
                log(f"server bench: {gw.name} {gw.reason[:300]}")
        load = Load(python)
        try:
            for gw in running:  # warm-up: imports, first connections, caches
                load.run(
                    port=gw.port,
                    model=gw.model,
                    key=gw.key,
                    keepalive=True,
                    chunks=1,
                    stream=False,
                    concurrency=4,
                    count=50,
                )
                load.run(
                    port=gw.port,
                    model=gw.model,
                    key=gw.key,
                    keepalive=True,
                    chunks=5,
                    stream=True,
                    concurrency=4,
                    count=8,
                )
            per: dict[str, list[dict[str, Any]]] = {gw.name: [] for gw in running}
            for i in range(rounds):
                log(f"server bench: round {i + 1}/{rounds}")
                for gw in running:
                    per[gw.name].append(_measure_round(load, gw, quick, chunks))
            for gw in running:
                rows = per[gw.name]
                row: dict[str, Any] = {"label": gw.label}
                for key in rows[0]:
                    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
                    if key == "errors":
                        row[key] = sum(values)
                    elif values:
                        row[key] = statistics.median(values)
                samples = [r["error_sample"] for r in rows if r.get("error_sample")]
                if samples:
                    row["error_sample"] = samples[0]
                log(f"server bench: {many} concurrent streams through {gw.name}")
                c0 = gw.cpu()
                r = load.run(
                    port=gw.port,
                    model=gw.model,
                    key=gw.key,
                    keepalive=True,
                    chunks=many_chunks,
                    stream=True,
                    concurrency=many,
                    count=many,
                )
                row["many_wall_s"] = r["wall"]
                row["many_ok"] = r["n"]
                row["many_cpu_s"] = gw.cpu() - c0
                row["rss_mb"] = peak_rss_mb(gw.pids) if gw.proc else None
                results["rows"][gw.name] = row
        finally:
            load.close()
    finally:
        for gw in gateways:
            gw.stop()
        up.terminate()
        up.wait(15)
    return results


def _f(value: Any, digits: int = 2) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _x(value: Any, base: Any) -> str:
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}x)"


#: what py-spy showed on llmplex serve after the changes of issue 18 (see README.md)
PROFILE_NOTE = (
    "Where `llmplex serve`'s CPU goes (py-spy on the gateway with uvloop, c=16, one-chunk "
    "answers, third pass of issue 18): the socket writes (the answer ~10%, the request "
    "upstream ~4%) and uvloop's own C code ~8% (the floor pays these too); the library's "
    "request path ~28% inclusive (`AsyncClient.chat.completions.create`: routing, the "
    "typed request, the provider, reading the answer; the aiohttp client ~11% of that); "
    "validating the body with pydantic ~3%; uvicorn's protocol most of the rest, no single "
    "item of llmplex's above 4%. The hot routes (`/v1/chat/completions`, `/v1/responses`, "
    "`/v1/messages`) are served in front of the ASGI middleware stack (one layer doing "
    "what its ten did, `llmplex.server.front`). With the default deadlines (first token "
    "300 s, reads 120 s) `stream: false` is streamed upstream and re-assembled (a "
    "one-piece answer would have to arrive within those); the second llmplex row sets "
    "deadlines under which it is asked in one piece. Per streamed chunk the loop's "
    "wake-ups and one socket send per chunk dominate (the floor pays both); a chat stream "
    "is read by the response's own task (no pump task, no queue), so each chunk wakes one "
    "task, as in the floor. What is left above the floor is what the floor does not do: "
    "validate, route, deadline-guard and re-encode each answer into typed objects. The "
    "*design floor* row (`server.py design-floor`, a plain ASGI function under uvicorn) "
    "does only the part of that no gateway built like llmplex can skip: it validates the "
    "body with llmplex's request model, asks the upstream for a stream (as the default "
    "deadlines require, also for `stream: false`), parses each event and assembles a "
    "`stream: false` answer; it has no keys, routing, fallback, deadlines, health, metrics "
    "or typed objects. The budget's margin over that row is what all of those may cost."
)


def render(results: dict[str, Any]) -> list[str]:
    """The server table(s) for RESULTS.md."""
    rows = results.get("rows") or {}
    if not rows:
        return []
    fl = rows.get("floor", {})
    direct = rows.get("direct", {})
    lines = [
        "## The server hop",
        "",
        (
            f"`python3 bench/run.py --server{' --quick' if results.get('quick') else ''}`: each "
            "gateway (one process, unless it says otherwise) between the load generator (raw "
            "asyncio sockets, its own process) and the same fast aiohttp upstream "
            "(OpenAI-compatible, its own process). "
            f"Medians of {results['rounds']} rounds, gateways interleaved in every round. "
            "*Added latency*: the gateway's median latency at concurrency 1 (one-chunk answers, "
            "`stream: false`) minus the upstream's own, measured in the same round; *p99*: the "
            "whole 99th percentile through the gateway (the upstream's included). *CPU*: the "
            "gateway process's `utime+stime` (`/proc`), per request at c=16 and per streamed "
            f"chunk (streams of {results['chunks']} chunks, {results['delay'] * 1e3:g} ms apart, "
            "minus one-chunk streams). *First token*: to the first body bytes of a stream. "
            f"*{results['many']} streams*: {results['many']} streams of "
            f"{results['many_chunks']} chunks at once, wall time. Ratios are to the floor."
        ),
        "",
        "### Kept-alive connections",
        "",
        (
            "| gateway | added latency p50 ms | latency p99 ms | req/s c=16 | req/s c=64 | "
            "CPU/request c=16 ms | CPU/chunk µs | first token ms | "
            f"{results['many']} streams s | peak RSS MB |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def added(row: dict[str, Any], key: str) -> float | None:
        if row.get(key) is None or direct.get(key) is None:
            return None
        return float(row[key] - direct[key])

    for name, row in rows.items():
        if name == "direct":
            lines.append(
                f"| {row['label']} | {_f(row.get('ka_p50_ms'), 3)} (itself) | "
                f"{_f(row.get('ka_p99_ms'), 3)} (itself) | {_f(row.get('ka_c16_rps'), 0)} | "
                f"{_f(row.get('ka_c64_rps'), 0)} | | | {_f(row.get('ttft_ms'))} | "
                f"{_f(row.get('many_wall_s'))} | |"
            )
            continue
        a50, a99 = added(row, "ka_p50_ms"), row.get("ka_p99_ms")
        many_ok = "" if row.get("many_ok") == results["many"] else f" ({row.get('many_ok')} ok)"
        lines.append(
            f"| {row['label']} | {_f(a50, 3)}{_x(a50, added(fl, 'ka_p50_ms'))} | "
            f"{_f(a99, 3)}{_x(a99, fl.get('ka_p99_ms'))} | "
            f"{_f(row.get('ka_c16_rps'), 0)}{_x(row.get('ka_c16_rps'), fl.get('ka_c16_rps'))} | "
            f"{_f(row.get('ka_c64_rps'), 0)}{_x(row.get('ka_c64_rps'), fl.get('ka_c64_rps'))} | "
            f"{_f(row.get('ka_c16_cpu_ms'), 3)}"
            f"{_x(row.get('ka_c16_cpu_ms'), fl.get('ka_c16_cpu_ms'))} | "
            f"{_f(row.get('chunk_us'), 1)}{_x(row.get('chunk_us'), fl.get('chunk_us'))} | "
            f"{_f(row.get('ttft_ms'))}{_x(row.get('ttft_ms'), fl.get('ttft_ms'))} | "
            f"{_f(row.get('many_wall_s'))}{_x(row.get('many_wall_s'), fl.get('many_wall_s'))}"
            f"{many_ok} | "
            f"{_f(row.get('rss_mb'), 0)}{_x(row.get('rss_mb'), fl.get('rss_mb'))} |"
        )
    lines += [
        "",
        "### New connections (one per request, `Connection: close`)",
        "",
        "| gateway | added latency p50 ms | latency p99 ms | req/s c=16 | CPU/request c=16 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        if name == "direct":
            lines.append(
                f"| {row['label']} | {_f(row.get('new_p50_ms'), 3)} (itself) | "
                f"{_f(row.get('new_p99_ms'), 3)} (itself) | "
                f"{_f(row.get('new_c16_rps'), 0)} | |"
            )
            continue
        a50, a99 = added(row, "new_p50_ms"), row.get("new_p99_ms")
        lines.append(
            f"| {row['label']} | {_f(a50, 3)}{_x(a50, added(fl, 'new_p50_ms'))} | "
            f"{_f(a99, 3)}{_x(a99, fl.get('new_p99_ms'))} | "
            f"{_f(row.get('new_c16_rps'), 0)}{_x(row.get('new_c16_rps'), fl.get('new_c16_rps'))} | "
            f"{_f(row.get('new_c16_cpu_ms'), 3)}"
            f"{_x(row.get('new_c16_cpu_ms'), fl.get('new_c16_cpu_ms'))} |"
        )
    budget = []
    ll = rows.get("llmplex")
    if ll and fl:

        def check(what: str, value: Any, base: Any, limit: float, above: bool) -> None:
            if value is None or not base:
                return
            r = value / base
            ok = r >= limit if above else r <= limit
            budget.append(
                f"- {what}: {r:.2f}x the floor (budget {'≥' if above else '≤'} "
                f"{limit}x): **{'met' if ok else 'not met'}**"
            )

        check(
            "CPU per request (c=16, kept-alive)",
            ll.get("ka_c16_cpu_ms"),
            fl.get("ka_c16_cpu_ms"),
            1.5,
            False,
        )
        check("CPU per streamed chunk", ll.get("chunk_us"), fl.get("chunk_us"), 1.2, False)
        check(
            "requests/s at c=16 (kept-alive)",
            ll.get("ka_c16_rps"),
            fl.get("ka_c16_rps"),
            0.67,
            True,
        )
    design = rows.get("design-floor")
    if budget and design and fl:
        # how much of each budget the design's own required work already takes
        parts = [
            f"{what} {_f(design.get(key) / fl[key] if design.get(key) and fl.get(key) else None)}x"
            for what, key in (
                ("CPU per request", "ka_c16_cpu_ms"),
                ("CPU per chunk", "chunk_us"),
                ("requests/s", "ka_c16_rps"),
            )
        ]
        budget.append(
            "- the design floor (the work no gateway built like llmplex can skip): "
            + ", ".join(parts)
            + " the floor"
        )
    if budget:
        lines += ["", "Budget (`llmplex serve` against the floor):", "", *budget, "", PROFILE_NOTE]
    for name, row in rows.items():
        if row.get("errors"):
            lines.append(
                f"\n{name}: {row['errors']} failed answers, e.g. {row.get('error_sample')}"
            )
    for name, note in (results.get("notes") or {}).items():
        lines.append(f"\n{name}: {note}")
    return [*lines, ""]


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "upstream":
        upstream(int(sys.argv[2]), float(sys.argv[3]))
    elif role == "floor":
        floor(int(sys.argv[2]), sys.argv[3])
    elif role == "design-floor":
        design_floor(int(sys.argv[2]), sys.argv[3])
    elif role == "load":
        load()
    else:
        raise SystemExit(f"unknown role {role!r}")
