"""Back-pressure through ``llmplex serve``: a fast upstream behind the server and a raw
socket client that stops reading. The server must read the upstream only as fast as the
client takes the answer (memory stays flat, the upstream stream stays open and
unfinished), and must drop a client that reads nothing for ``client_stall_timeout``
seconds, closing the upstream stream and running the provider's cleanup.

The server thread runs in this process, so its memory is this process's ``VmRSS``. The
emulators render their answers before the first byte goes out, so the baseline is taken
once the response has started."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from typing import Self

import h11
import pytest

from llmplex.server import ServerThread, create_app
from llmplex.server.emulated import EmulatedServices, emulated_client
from llmplex.testing import Script, wait_until

PIECE = "word " * 200  # 1,000 characters a chunk
CHUNKS = 40_000  # 40 MB of text, as much SSE again upstream and downstream
MESSAGES = [{"role": "user", "content": "Talk for a long time."}]
MODELS = {"openai": "openai:gpt-4o-mini", "openassistant": "openassistant:OA_SFT_Llama_30B_6"}


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@contextmanager
def served(service: str = "openai", chunks: int = CHUNKS, **app_options):
    """One emulator answering ``chunks`` PIECEs with no delay, behind the server."""
    script = Script(chunks=[PIECE] * chunks)
    with EmulatedServices([service], script=lambda name: script) as services:
        client = emulated_client(services)
        with ServerThread(create_app(client, **app_options)) as server:
            yield server, services.emulators[service]


class RawClient:
    """A streaming chat request on a plain socket; reads only when told to."""

    def __init__(self, server, model: str = MODELS["openai"]) -> None:
        body = json.dumps({"model": model, "messages": MESSAGES, "stream": True}).encode()
        self.sock = socket.create_connection((server.host, server.port), timeout=15)
        self.http = h11.Connection(h11.CLIENT)
        request = h11.Request(
            method="POST",
            target="/v1/chat/completions",
            headers=[
                ("Host", f"127.0.0.1:{server.port}"),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
            ],
        )
        self.sock.sendall(
            self.http.send(request)
            + self.http.send(h11.Data(data=body))
            + self.http.send(h11.EndOfMessage())
        )
        self.status: int | None = None
        self.body = bytearray()
        self.complete = False  # the response's end (the last chunk) arrived
        self.eof = False  # the server closed the connection

    def _events(self, timeout: float) -> bool:
        """Receive once (up to 64 KiB) and parse; False at EOF."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        self.http.receive_data(data)
        while True:
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError:  # closed mid-body: the response is unfinished
                break
            if event is h11.NEED_DATA:
                break
            if isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
            elif isinstance(event, h11.ConnectionClosed):
                break
        if not data:
            self.eof = True
        return bool(data)

    def start(self) -> None:
        """Read until the response has started (status line, headers, a first chunk)."""
        while self.status is None or not self.body:
            assert self._events(15), "connection closed before the answer started"
        assert self.status == 200, bytes(self.body)

    def read_to_end(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.complete and self._events(max(0.1, deadline - time.monotonic())):
            assert time.monotonic() < deadline, "answer not read to its end in time"

    def text(self) -> str:
        out = []
        for event in bytes(self.body).decode().split("\n\n"):
            if event.startswith("data: {"):
                for choice in json.loads(event[6:])["choices"]:
                    out.append(choice["delta"].get("content") or "")
        return "".join(out)

    def close(self) -> None:
        self.sock.close()


class Peak:
    """The highest RSS seen while the block runs (sampled in a thread)."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def test_a_client_reading_nothing_holds_the_upstream_back_not_memory():
    with served() as (server, emulator):
        client = RawClient(server)
        try:
            client.start()
            baseline = rss_mb()
            with Peak() as memory:
                time.sleep(5)  # the client reads nothing
                # the upstream is read only as fast as the client reads: still mid-answer
                assert emulator.open_streams == 1
                assert not client.complete
            assert memory.peak - baseline < 25, (baseline, memory.peak)  # (unbounded: 55+)
            # then the client reads again: the whole answer arrives, nothing was lost
            client.read_to_end()
            assert client.complete
            assert client.text() == PIECE * CHUNKS
            assert bytes(client.body).endswith(b"data: [DONE]\n\n")
            wait_until(lambda: emulator.open_streams == 0, message="upstream still open")
        finally:
            client.close()


@pytest.mark.parametrize("service", ["openai", "openassistant"])
def test_a_client_that_stops_reading_is_dropped_and_the_upstream_cleaned_up(service):
    with served(service, client_stall_timeout=1) as (server, emulator):
        client = RawClient(server, MODELS[service])
        try:
            client.start()
            started = time.monotonic()
            assert emulator.open_streams == 1
            # buffers fill, then a write waits for 1 s: the client is dropped
            # (filling the buffers takes a few seconds on a busy machine)
            wait_until(
                lambda: emulator.open_streams == 0,
                timeout=30,
                message="the stalled client's upstream stream is still open",
            )
            assert time.monotonic() - started < 25
            if service == "openassistant":  # the provider's cleanup ran: chat deleted
                wait_until(
                    lambda: emulator.requests_to("/api/chat", "DELETE"),
                    message="upstream chat not deleted",
                )
            # what the server had written still arrives, then the connection ends
            # without the end of the response
            while not client.eof:
                client._events(10)
            assert not client.complete
            assert b"[DONE]" not in client.body
            assert len(client.text()) < len(PIECE) * CHUNKS
        finally:
            client.close()
        # the server is fine: the next answer streams in full
        emulator.push(Script("Still here."))
        again = RawClient(server, MODELS[service])
        try:
            again.start()
            again.read_to_end()
            assert again.text() == "Still here."
        finally:
            again.close()


def test_a_client_leaving_while_the_upstream_is_held_back_cleans_up():
    """The pump is blocked on its full queue when the client goes: cancelled there, the
    stream's cleanup still runs (here: the upstream chat is deleted)."""
    with served("openassistant") as (server, emulator):
        client = RawClient(server, MODELS["openassistant"])
        client.start()
        time.sleep(1.5)  # the buffers fill and the pump waits
        assert emulator.open_streams == 1
        client.close()
        wait_until(lambda: emulator.open_streams == 0, message="upstream still open")
        wait_until(
            lambda: emulator.requests_to("/api/chat", "DELETE"), message="upstream chat not deleted"
        )


def test_a_reading_client_is_not_dropped_by_a_short_stall_timeout():
    with served(chunks=5000, client_stall_timeout=1) as (server, _):
        client = RawClient(server)
        try:
            client.start()
            client.read_to_end()
            assert client.text() == PIECE * 5000
        finally:
            client.close()


@pytest.mark.parametrize("value", [0, -1, float("nan")])
def test_client_stall_timeout_must_be_positive(value):
    with EmulatedServices(["openai"]) as services, pytest.raises(ValueError):
        create_app(emulated_client(services), client_stall_timeout=value)
