"""One benchmark client, run inside its own environment; measures itself.

``python worker.py CLIENT`` reads commands (JSON lines) on stdin and answers each with a
line ``@@BENCH {...}`` on stdout (anything else a library prints is ignored).
``python worker.py CLIENT --once '{...}'`` runs one command in a fresh process (used for
concurrency, whose peak RSS must be this process's own).

Clients (the library must be importable in the interpreter running this file):

=================  ===========================================================
``aiohttp``        the baseline: one shared ``ClientSession``, a minimal decoder
``aiohttp-fresh``  the same with a new ``ClientSession`` per request (context)
``llmplex``        a provider class called directly (``create_async_generator``)
``llmplex-async``  ``llmplex.AsyncClient`` (router, chunk objects)
``llmplex-sync``   ``llmplex.Client`` (the same through the sync bridge)
``openai``         the ``openai`` SDK's ``AsyncOpenAI``
``litellm``        ``litellm.acompletion``
``g4f``            ``g4f.client.AsyncClient`` with its ``Custom`` provider
``serve``          the ``openai`` SDK talking to ``llmplex serve`` (CPU of both)
=================  ===========================================================

CPU is ``time.process_time()`` of this process (all its threads: the sync bridge's loop
thread is counted); for ``serve`` the server's CPU is read from ``/proc/<pid>/task/*/
schedstat``. Every answer's text is checked against the scripted reply.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import socket
import sys
import time
import traceback
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common
from common import API_KEY, MESSAGES

# -- no phoning home ---------------------------------------------------------------------
# Peers must only ever talk to the 127.0.0.1 emulators. Any other host name lookup or
# connection is refused (and counted in the results), whatever the library tries.

_LOCAL = {"127.0.0.1", "localhost", "::1", None, b"127.0.0.1", b"localhost"}
BLOCKED: list[str] = []
_getaddrinfo = socket.getaddrinfo
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _guard_getaddrinfo(host, *args, **kwargs):
    if host not in _LOCAL:
        BLOCKED.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, f"bench: lookup of {host!r} blocked")
    return _getaddrinfo(host, *args, **kwargs)


def _allowed(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        return address[0] in ("127.0.0.1", "::1", "localhost")
    return True  # unix sockets


def _guard_connect(self, address):
    if not _allowed(address):
        BLOCKED.append(str(address))
        raise ConnectionRefusedError(f"bench: connection to {address!r} blocked")
    return _connect(self, address)


def _guard_connect_ex(self, address):
    if not _allowed(address):
        BLOCKED.append(str(address))
        raise ConnectionRefusedError(f"bench: connection to {address!r} blocked")
    return _connect_ex(self, address)


socket.getaddrinfo = _guard_getaddrinfo
socket.socket.connect = _guard_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guard_connect_ex  # type: ignore[method-assign]


# -- clients -----------------------------------------------------------------------------
# Each client has ``stream(proto, url, on_text)`` and ``request(proto, url) -> str``,
# async unless the class says ``sync = True``. ``on_text`` is called with each text delta.


class Baseline:
    """Bare aiohttp: the least a client can do to read these streams (our floor).

    The decoders are minimal but correct for what the emulators send: SSE events split on
    blank lines, ``data:`` payloads parsed with ``json.loads``; NDJSON lines parsed one by
    one. The session (and its keep-alive connections) is reused across requests.
    """

    sync = False
    fresh = False

    def __init__(self) -> None:
        import aiohttp

        self.aiohttp = aiohttp
        self._session = None

    def session(self):
        if self._session is None or self.fresh:
            self._session = self.aiohttp.ClientSession(connector=self.aiohttp.TCPConnector(limit=0))
        return self._session

    async def _done(self, session) -> None:
        if self.fresh:
            await session.close()

    async def stream(self, proto: str, url: str, on_text) -> None:
        session = self.session()
        try:
            await getattr(self, "_" + proto)(session, url, on_text)
        finally:
            await self._done(session)

    async def _openai(self, session, url: str, on_text) -> None:
        body = {
            "model": common.OPENAI_MODEL,
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            loads = json.loads
            buffer = b""
            async for data in resp.content.iter_any():
                buffer += data
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    if not event.startswith(b"data: "):
                        continue
                    payload = event[6:]
                    if payload == b"[DONE]":
                        return
                    for choice in loads(payload)["choices"]:
                        content = choice["delta"].get("content")
                        if content:
                            on_text(content)

    async def _replicate(self, session, url: str, on_text) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with session.post(
            f"{url}/v1/models/{common.REPLICATE_MODEL}/predictions",
            json={"stream": True, "input": {"prompt": MESSAGES[0]["content"]}},
            headers=headers,
        ) as resp:
            if resp.status != 201:
                raise RuntimeError(f"HTTP {resp.status}")
            prediction = await resp.json()
        async with session.get(
            prediction["urls"]["stream"], headers={"Accept": "text/event-stream"}
        ) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            buffer = b""
            async for data in resp.content.iter_any():
                buffer += data
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    kind, lines = b"message", []
                    for line in event.split(b"\n"):
                        if line.startswith(b"data: "):
                            lines.append(line[6:])
                        elif line.startswith(b"event: "):
                            kind = line[7:]
                    if kind == b"output":
                        on_text(b"\n".join(lines).decode())
                    elif kind == b"done":
                        return

    async def _ai2(self, session, url: str, on_text) -> None:
        aiohttp = self.aiohttp
        form = aiohttp.FormData()
        # the v5 protocol (/v5/threads/chat), signed in: any captcha token is taken
        for key, value in (
            ("role", "user"),
            ("model", common.AI2_MODEL),
            ("content", MESSAGES[0]["content"]),
            ("captchaToken", "bench"),
            ("private", "true"),
        ):
            form.add_field(key, value, content_type="text/plain; charset=utf-8")
        headers = {"Authorization": f"Bearer {common.AI2_TOKEN}"}
        async with session.post(url + "/v5/threads/chat", data=form, headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            loads = json.loads
            buffer = b""
            async for data in resp.content.iter_any():
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    value = loads(line)
                    kind = value["type"]
                    if kind == "modelResponse":
                        on_text(value["content"])
                    elif kind == "addMessage":  # the reply's first fragment is inside
                        for message in value["messages"]:
                            if message["role"] == "assistant" and message["content"]:
                                on_text(message["content"])
                    elif kind == "end":
                        return

    async def request(self, proto: str, url: str) -> str:
        if proto != "openai":  # these services always stream: a request is a short stream
            parts: list[str] = []
            await self.stream(proto, url, parts.append)
            return "".join(parts)
        session = self.session()
        try:
            body = {"model": common.OPENAI_MODEL, "messages": MESSAGES}
            async with session.post(
                url + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {API_KEY}"},
            ) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")
                data = json.loads(await resp.read())
            return data["choices"][0]["message"]["content"]
        finally:
            await self._done(session)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


class BaselineFresh(Baseline):
    fresh = True


_PROVIDERS: dict[str, Any] = {}


def _llmplex_call(proto: str, url: str) -> tuple[Any, str, dict[str, Any]]:
    """(provider class, model, options) for a protocol and emulator URL."""
    if not _PROVIDERS:  # looked up once: the lookup is the benchmark's cost, not llmplex's
        from llmplex.providers import AllenAI, OpenAICompatible, Replicate

        _PROVIDERS.update(openai=OpenAICompatible, replicate=Replicate, ai2=AllenAI)
    if proto == "openai":
        return _PROVIDERS[proto], common.OPENAI_MODEL, {"base_url": url + "/v1"}
    if proto == "replicate":
        return _PROVIDERS[proto], common.REPLICATE_MODEL, {"base_url": url, "api_key": API_KEY}
    return _PROVIDERS[proto], common.AI2_MODEL, {"base_url": url, "api_key": common.AI2_TOKEN}


class LLMplexProvider:
    """A provider class called directly: the lowest llmplex layer (a connection per call)."""

    sync = False

    def __init__(self) -> None:
        import llmplex.providers  # noqa: F401

    async def stream(self, proto: str, url: str, on_text) -> None:
        provider, model, options = _llmplex_call(proto, url)
        async for chunk in provider.create_async_generator(model, MESSAGES, **options):
            if type(chunk) is str:
                on_text(chunk)

    async def request(self, proto: str, url: str) -> str:
        provider, model, options = _llmplex_call(proto, url)
        return await provider.create_async(model, MESSAGES, **options)

    async def close(self) -> None:
        pass


class LLMplexPooled(LLMplexProvider):
    """The same calls inside ``async with ConnectionPool():`` (keep-alive connections)."""

    def __init__(self) -> None:
        from llmplex.http import ConnectionPool

        self.pool = ConnectionPool()

    async def stream(self, proto: str, url: str, on_text) -> None:
        with self.pool.bind():
            await super().stream(proto, url, on_text)

    async def request(self, proto: str, url: str) -> str:
        with self.pool.bind():
            return await super().request(proto, url)

    async def close(self) -> None:
        await self.pool.close()


def _route(proto: str) -> str:
    return {
        "openai": "openaicompatible:" + common.OPENAI_MODEL,
        "replicate": "replicate:" + common.REPLICATE_MODEL,
        "ai2": "allenai:" + common.AI2_MODEL,
    }[proto]


def _options(proto: str, url: str) -> dict[str, Any]:
    return _llmplex_call(proto, url)[2]


class LLMplexAsync:
    """``llmplex.AsyncClient``: routing, limits, OpenAI-shaped chunk objects; used as
    ``async with AsyncClient() as client:`` (its keep-alive connections), entered here in
    ``__init__`` and left in ``close``."""

    sync = False

    def __init__(self) -> None:
        from llmplex import AsyncClient

        self.client = AsyncClient()
        asyncio.get_event_loop().run_until_complete(self.client.__aenter__())

    async def stream(self, proto: str, url: str, on_text) -> None:
        stream = await self.client.chat.completions.create(
            model=_route(proto), messages=MESSAGES, stream=True, **_options(proto, url)
        )
        async for chunk in stream:
            content = chunk.choices[0].delta.content
            if content:
                on_text(content)

    async def request(self, proto: str, url: str) -> str:
        answer = await self.client.chat.completions.create(
            model=_route(proto), messages=MESSAGES, **_options(proto, url)
        )
        return answer.choices[0].message.content

    async def close(self) -> None:
        await self.client.__aexit__(None, None, None)


class LLMplexSync:
    """``llmplex.Client``: the same, from synchronous code through the bridge (it keeps
    its connections alive until ``close``)."""

    sync = True

    def __init__(self) -> None:
        from llmplex import Client

        self.client = Client()

    def stream(self, proto: str, url: str, on_text) -> None:
        for chunk in self.client.chat.completions.create(
            model=_route(proto), messages=MESSAGES, stream=True, **_options(proto, url)
        ):
            content = chunk.choices[0].delta.content
            if content:
                on_text(content)

    def request(self, proto: str, url: str) -> str:
        answer = self.client.chat.completions.create(
            model=_route(proto), messages=MESSAGES, **_options(proto, url)
        )
        return answer.choices[0].message.content

    def close(self) -> None:
        self.client.close()


class OpenAISDK:
    """The ``openai`` package's async client, one per emulator (keep-alive pool)."""

    sync = False

    def __init__(self) -> None:
        import openai

        self.openai = openai
        self.clients: dict[str, Any] = {}

    def client(self, url: str):
        if url not in self.clients:
            self.clients[url] = self.openai.AsyncOpenAI(
                base_url=url + "/v1", api_key=API_KEY, max_retries=0
            )
        return self.clients[url]

    async def stream(self, proto: str, url: str, on_text) -> None:
        stream = await self.client(url).chat.completions.create(
            model=common.OPENAI_MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.choices:
                content = chunk.choices[0].delta.content
                if content:
                    on_text(content)

    async def request(self, proto: str, url: str) -> str:
        answer = await self.client(url).chat.completions.create(
            model=common.OPENAI_MODEL, messages=MESSAGES
        )
        return answer.choices[0].message.content

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


class Serve(OpenAISDK):
    """The ``openai`` SDK talking to ``llmplex serve``, which forwards to the emulator.

    The server runs with ``--allow-upstream-overrides``, so each request names its
    upstream (``base_url``) in the body, as an ``openai`` SDK user would with
    ``extra_body``."""

    def __init__(self) -> None:
        super().__init__()
        self.serve_url = os.environ["BENCH_SERVE_URL"]
        self.model = "openaicompatible:" + common.OPENAI_MODEL

    async def stream(self, proto: str, url: str, on_text) -> None:
        stream = await self.client(self.serve_url).chat.completions.create(
            model=self.model,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"base_url": url + "/v1"},
        )
        async for chunk in stream:
            if chunk.choices:
                content = chunk.choices[0].delta.content
                if content:
                    on_text(content)

    async def request(self, proto: str, url: str) -> str:
        answer = await self.client(self.serve_url).chat.completions.create(
            model=self.model, messages=MESSAGES, extra_body={"base_url": url + "/v1"}
        )
        return answer.choices[0].message.content


class LiteLLM:
    """``litellm.acompletion`` with an ``openai/`` model at the emulator's ``api_base``."""

    sync = False

    def __init__(self) -> None:
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        self.litellm = litellm

    async def stream(self, proto: str, url: str, on_text) -> None:
        stream = await self.litellm.acompletion(
            model="openai/" + common.OPENAI_MODEL,
            messages=MESSAGES,
            api_base=url + "/v1",
            api_key=API_KEY,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.choices:
                content = chunk.choices[0].delta.content
                if content:
                    on_text(content)

    async def request(self, proto: str, url: str) -> str:
        answer = await self.litellm.acompletion(
            model="openai/" + common.OPENAI_MODEL,
            messages=MESSAGES,
            api_base=url + "/v1",
            api_key=API_KEY,
        )
        return answer.choices[0].message.content

    async def close(self) -> None:
        pass


class G4F:
    """g4f's ``AsyncClient`` with its ``Custom`` (OpenAI-compatible) provider."""

    sync = False

    def __init__(self) -> None:
        import g4f.debug
        from g4f.client import AsyncClient
        from g4f.Provider import Custom

        g4f.debug.version_check = False  # it would ask PyPI for a newer g4f
        self.AsyncClient = AsyncClient
        self.Custom = Custom
        self.clients: dict[str, Any] = {}

    def client(self, url: str):
        if url not in self.clients:
            self.clients[url] = self.AsyncClient(
                provider=self.Custom, base_url=url + "/v1", api_key=API_KEY
            )
        return self.clients[url]

    async def stream(self, proto: str, url: str, on_text) -> None:
        stream = self.client(url).chat.completions.create(
            messages=MESSAGES, model=common.OPENAI_MODEL, stream=True
        )
        async for chunk in stream:
            if chunk.choices:
                content = chunk.choices[0].delta.content
                if content:
                    on_text(content)

    async def request(self, proto: str, url: str) -> str:
        answer = await self.client(url).chat.completions.create(
            messages=MESSAGES, model=common.OPENAI_MODEL
        )
        return answer.choices[0].message.content

    async def close(self) -> None:
        pass


CLIENTS = {
    "aiohttp": Baseline,
    "aiohttp-fresh": BaselineFresh,
    "llmplex": LLMplexProvider,
    "llmplex-pool": LLMplexPooled,
    "llmplex-async": LLMplexAsync,
    "llmplex-sync": LLMplexSync,
    "openai": OpenAISDK,
    "serve": Serve,
    "litellm": LiteLLM,
    "g4f": G4F,
}


# -- measurements ------------------------------------------------------------------------


def server_cpu() -> float:
    """CPU seconds used so far by the process ``BENCH_SERVE_PID`` (0 when unset)."""
    pid = os.environ.get("BENCH_SERVE_PID")
    if not pid:
        return 0.0
    total = 0
    base = f"/proc/{pid}/task"
    for task in os.listdir(base):
        try:
            with open(f"{base}/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just ended
    return total / 1e9


class Runner:
    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.client = CLIENTS[name]()

    def call(self, method: str, *args):
        result = getattr(self.client, method)(*args)
        if self.client.sync:
            return result
        return self.loop.run_until_complete(result)

    def one_stream(self, proto: str, url: str, n: int) -> dict[str, float]:
        """Measure one stream: CPU, wall time, time to first text; checks the text."""
        parts: list[str] = []
        first: list[float] = []

        def on_text(text: str) -> None:
            if not parts:
                first.append(time.perf_counter())
            parts.append(text)

        gc.collect()
        s0 = server_cpu()
        w0 = time.perf_counter()
        c0 = time.process_time()
        self.call("stream", proto, url, on_text)
        cpu = time.process_time() - c0
        wall = time.perf_counter() - w0
        s1 = server_cpu()
        text = "".join(parts)
        if text != common.reply(n):
            raise AssertionError(
                f"wrong text: {len(text)} chars, expected {len(common.reply(n))}: {text[:80]!r}"
            )
        return {
            "cpu": cpu,
            "wall": wall,
            "ttfc": (first[0] - w0) if first else wall,
            "server_cpu": s1 - s0,
        }

    def op_stream(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """``reps`` rounds over ``streams`` (``[[key, chunks], ...]``, interleaved), each
        read from ``urls[key]``."""
        out: dict[str, list[dict[str, float]]] = {key: [] for key, _ in cmd["streams"]}
        for _ in range(cmd["reps"]):
            for key, n in cmd["streams"]:
                out[key].append(self.one_stream(cmd["proto"], cmd["urls"][key], n))
        return {"streams": out}

    def op_request(self, cmd: dict[str, Any]) -> dict[str, Any]:
        n, url = cmd["n"], cmd["url"]
        rows = []
        for _ in range(cmd["reps"]):
            gc.collect()
            s0 = server_cpu()
            w0 = time.perf_counter()
            c0 = time.process_time()
            text = self.call("request", cmd["proto"], url)
            cpu = time.process_time() - c0
            wall = time.perf_counter() - w0
            if text != common.reply(n):
                raise AssertionError(f"wrong text {text!r}")
            rows.append({"cpu": cpu, "wall": wall, "server_cpu": server_cpu() - s0})
        return {"requests": rows}

    def op_concurrent(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """``n`` streams at once in this process; every text must be complete."""
        if self.client.sync:
            raise NotImplementedError("concurrency is measured for async clients")
        proto, url, chunks, n = cmd["proto"], cmd["url"], cmd["chunks"], cmd["n"]
        expected = common.reply(chunks)
        rss_before = _rss_now()

        async def one() -> bool:
            parts: list[str] = []
            await self.client.stream(proto, url, parts.append)
            return "".join(parts) == expected

        async def run_all():
            tasks = [asyncio.ensure_future(one()) for _ in range(n)]
            return await asyncio.wait_for(
                asyncio.gather(*tasks, return_exceptions=True), cmd.get("timeout", 300)
            )

        gc.collect()
        s0 = server_cpu()
        w0 = time.perf_counter()
        c0 = time.process_time()
        results = self.loop.run_until_complete(run_all())
        cpu = time.process_time() - c0
        wall = time.perf_counter() - w0
        errors = [r for r in results if isinstance(r, BaseException)]
        return {
            "n": n,
            "chunks": chunks,
            "wall": wall,
            "cpu": cpu,
            "server_cpu": server_cpu() - s0,
            "ok": sum(1 for r in results if r is True),
            "wrong": sum(1 for r in results if r is False),
            "errors": len(errors),
            "error_sample": sorted({f"{type(e).__name__}: {e}"[:200] for e in errors})[:3],
            "rss_before_kb": rss_before,
            "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }

    def op_instructions(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """One stream between two markers for callgrind (``--zero-before=getsid
        --dump-before=getpgid``), after a warm-up: its instruction count is the dump's."""
        if cmd.get("requests"):  # instead: ``requests`` whole one-chunk answers
            for _ in range(3):
                self.call("request", cmd["proto"], cmd["warmup_url"])
            os.getsid(0)
            for _ in range(cmd["requests"]):
                self.call("request", cmd["proto"], cmd["warmup_url"])
            os.getpgid(0)
            return {"ok": True}
        for _ in range(3):
            self.one_stream(cmd["proto"], cmd["warmup_url"], 1)
        os.getsid(0)  # callgrind zeroes its counters here
        self.one_stream(cmd["proto"], cmd["url"], cmd["n"])
        os.getpgid(0)  # ... and dumps them here
        return {"ok": True}

    def op_setup(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Warm up: a few streams and requests so lazy imports and pools are in place."""
        for proto, url, n in cmd.get("warmup", ()):
            for _ in range(2):
                self.one_stream(proto, url, n)
                self.call("request", proto, url)
        return {"versions": _versions(), "python": sys.version.split()[0]}

    def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        try:
            result = getattr(self, "op_" + cmd["op"])(cmd)
        except Exception as exc:  # reported, the benchmark goes on
            result = {
                "error": f"{type(exc).__name__}: {exc}"[:500],
                "traceback": traceback.format_exc()[-2000:],
            }
        result["blocked"] = list(BLOCKED)
        return result

    def close(self) -> None:
        try:
            self.call("close")
        except Exception:
            pass


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("aiohttp", "llmplex", "openai", "httpx", "litellm", "g4f"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write("@@BENCH " + json.dumps(result) + "\n")
    sys.stdout.flush()


def main() -> None:
    name = sys.argv[1]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if len(sys.argv) > 3 and sys.argv[2] == "--once":
        runner = Runner(name)
        emit(runner.handle(json.loads(sys.argv[3])))
        runner.close()
        return
    runner = Runner(name)
    emit({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd["op"] == "exit":
            break
        emit(runner.handle(cmd))
    runner.close()


if __name__ == "__main__":
    main()
