"""``llmplex serve --workers N`` and graceful shutdown, with real ``llmplex serve``
processes, the emulators and the official ``openai`` SDK."""

from __future__ import annotations

import http.client
import os
import signal
import threading
from pathlib import Path

import httpx
import openai
import pytest
from served import Served, clean_environ
from test_observability import KEY, MESSAGES, metrics, openai_env, value

from llmplex.testing import Script, wait_until

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers need fork()")


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux's /proc)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(p) for p in (task / "children").read_text().split()}
    return found


def chat(url: str) -> tuple[str, dict]:
    """One chat completion on a new connection: (the worker that answered, the body)."""
    response = httpx.post(
        url + "/v1/chat/completions",
        timeout=30,
        json={"model": "openai:gpt-4o-mini", "messages": MESSAGES},
    )
    assert response.status_code == 200, response.text
    return response.headers["x-llmplex-worker"], response.json()


def test_two_workers_answer_and_metrics_add_up(openai_emulator, tmp_path):
    openai_emulator.script = Script("one two three")
    env = openai_env(openai_emulator, tmp_path, "OpenAI")
    with Served(tmp_path, "--workers", "2", env=env) as server:
        assert len(children(server.process.pid)) == 2
        assert "2 workers without a shared state backend" in server.log
        answered: dict[str, int] = {}
        tokens = 0
        # The kernel gives each new connection to one of the workers: both get some.
        while len(answered) < 2 or sum(answered.values()) < 10:
            assert sum(answered.values()) < 400, answered
            worker, body = chat(server.url)
            answered[worker] = answered.get(worker, 0) + 1
            tokens += body["usage"]["completion_tokens"]
        assert set(answered) == {"1", "2"}
        sent = sum(answered.values())
        # whichever worker answers /metrics, it counts both workers' requests
        scraped = set()
        while len(scraped) < 2:
            assert len(scraped) < 50
            response = httpx.get(server.url + "/metrics")
            scraped.add(response.headers["x-llmplex-worker"])
            samples = metrics(server.url)
            assert (
                value(
                    samples,
                    "llmplex_requests_total",
                    route="/v1/chat/completions",
                    method="POST",
                    status="200",
                )
                == sent
            )
            assert (
                value(samples, "llmplex_tokens_out_total", provider="OpenAI", model="gpt-4o-mini")
                == tokens
                == 3 * sent
            )
            assert value(samples, "llmplex_active_streams") == 0

        # a worker that dies is started again; the others serve meanwhile
        first = children(server.process.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        server.wait_for(rf"worker \d \(pid {victim}\) exited with status -9; starting it again")
        wait_until(lambda: len(children(server.process.pid) - {victim}) == 2, timeout=60)
        seen = set()
        while seen != {"1", "2"}:
            assert len(seen) < 400
            seen.add(chat(server.url)[0])
        server.terminate()
        assert server.wait() == 0
    assert "Finished server process" in server.log


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited one no parent reaped yet is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def all_exit(workers: set[int]) -> None:
    """Wait for the orphaned ``workers`` to exit on their own; should they not, they are
    killed (they must not outlive the test) and the wait's failure raised."""
    try:
        wait_until(lambda: not any(running(pid) for pid in workers), timeout=60)
    finally:
        for pid in workers:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_workers_stop_when_the_supervisor_is_killed(openai_emulator, tmp_path):
    # SIGKILL gives the supervisor no chance to signal its workers: they notice it is gone
    # themselves (the pipe only it held open is closed) and drain and exit, so no orphan
    # goes on serving the socket.
    openai_emulator.script = Script("one two three")
    env = openai_env(openai_emulator, tmp_path, "OpenAI")
    with Served(tmp_path, "--workers", "2", env=env) as server:
        workers = children(server.process.pid)
        assert len(workers) == 2 and all(running(pid) for pid in workers)
        chat(server.url)
        server.process.kill()
        server.process.wait()
        all_exit(workers)
        assert server.log.count("the supervisor is gone; worker") == 2
        with pytest.raises(httpx.TransportError):  # nobody listens any more
            httpx.get(server.url + "/health", timeout=5)


def test_a_supervisor_killed_while_its_workers_drain_lets_them_finish(openai_emulator, tmp_path):
    # SIGTERM first (the workers drain), then SIGKILL: the workers' watch must not take
    # the pipe's end for a second signal, which would cut the stream being drained.
    script = Script(chunks=[f"s{i} " for i in range(10)], delay=0.3)  # ~3 s
    openai_emulator.script = script
    env = openai_env(openai_emulator, tmp_path, "OpenAI")
    with Served(tmp_path, "--workers", "2", "--drain-timeout", "60", env=env) as server:
        workers = children(server.process.pid)
        texts: list[str] = []
        ending: list[BaseException | None] = []
        started = threading.Event()

        def read() -> None:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
            try:
                for chunk in client.chat.completions.create(
                    model="openai:gpt-4o-mini", messages=MESSAGES, stream=True
                ):
                    if chunk.choices and chunk.choices[0].delta.content:
                        texts.append(chunk.choices[0].delta.content)
                        started.set()
                ending.append(None)
            except Exception as exc:  # what the client saw
                ending.append(exc)
            finally:
                started.set()
                client.close()

        thread = threading.Thread(target=read)
        thread.start()
        assert started.wait(60) and not ending
        server.terminate()
        server.wait_for(r"Shutting down")
        server.process.kill()
        server.process.wait()
        thread.join(60)
        all_exit(workers)
    assert ending == [None] and "".join(texts) == script.reply
    assert "the supervisor is gone" not in server.log


def test_sigterm_drains_streams_then_cancels_with_upstream_cleanup(replicate_emulator, tmp_path):
    short = Script(chunks=[f"s{i} " for i in range(6)], delay=0.25)  # done in ~1.5 s
    long = Script(chunks=[f"l{i} " for i in range(2000)], delay=0.3)  # ten minutes
    replicate_emulator.push(long, short)
    env = clean_environ(
        tmp_path, LLMPLEX_REPLICATE_BASE_URL=replicate_emulator.url, REPLICATE_API_TOKEN="r8_" + KEY
    )
    model = "replicate:meta/meta-llama-3-8b-instruct"
    with Served(tmp_path, "--drain-timeout", "8", env=env) as server:
        texts: dict[str, list[str]] = {"long": [], "short": []}
        endings: dict[str, BaseException | None] = {}
        started = {name: threading.Event() for name in texts}

        def read(name: str) -> None:
            client = openai.OpenAI(
                base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120
            )
            try:
                for chunk in client.chat.completions.create(
                    model=model, messages=MESSAGES, stream=True
                ):
                    if chunk.choices and chunk.choices[0].delta.content:
                        texts[name].append(chunk.choices[0].delta.content)
                        started[name].set()
                endings[name] = None
            except Exception as exc:  # what the client saw
                endings[name] = exc
            finally:
                started[name].set()
                client.close()

        threads = {name: threading.Thread(target=read, args=(name,)) for name in texts}
        threads["long"].start()
        assert started["long"].wait(60)
        threads["short"].start()
        assert started["short"].wait(60)
        assert not endings  # both in flight
        idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        idle.request("GET", "/health")
        assert idle.getresponse().read()  # and the connection is kept alive, idle
        server.terminate()
        server.wait_for(r"Shutting down")
        assert idle.sock.recv(1) == b""  # the idle kept-alive connection is closed
        idle.close()

        # no new connections during the drain (the long stream still runs)
        def refused() -> bool:
            try:
                httpx.get(server.url + "/health", timeout=2)
            except httpx.ConnectError:
                return True
            except httpx.TransportError:
                pass
            return False

        wait_until(refused, timeout=30, message="a new connection was still accepted")
        assert server.process.poll() is None and "long" not in endings
        for thread in threads.values():
            thread.join(120)
        assert server.wait() == 0
    # the short stream finished whole; the long one was cut at the drain timeout
    assert endings["short"] is None and "".join(texts["short"]) == short.reply
    assert endings["long"] is not None or "".join(texts["long"]) != long.reply
    assert 0 < len(texts["long"]) < 2000
    assert "Cancel 1 running task(s)" in server.log
    # ... and its prediction cancelled upstream; the finished one not
    cancels = replicate_emulator.requests_to("/cancel", "POST")
    created = replicate_emulator.requests_to("/predictions", "POST")
    assert len(cancels) == 1, [r.path for r in replicate_emulator.requests]
    assert len([r for r in created if not r.path.endswith("/cancel")]) == 2
    assert KEY not in server.log
