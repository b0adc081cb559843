"""What a byte relay would save per streamed chunk: ``python3 bench/chunk_path.py``.

Issue 18 asks that an OpenAI-compatible upstream answering an OpenAI client not be decoded
into objects and re-encoded when nothing needs to change. This measures, in one process
and interleaved, the two ways one text chunk of such a stream can cross ``llmplex serve``:

- *typed* (what the server does): the event's JSON parsed, read by the provider's decoder
  into a text delta, made a ``ChatCompletionChunk`` by the client's run, rendered to SSE by
  the server's per-stream template;
- *relay* (the least a gateway that meters usage and sees errors can do): the JSON parsed,
  its delta looked at, the upstream's own bytes passed on with llmplex's ``provider`` field
  spliced in.

The difference is the most a relay could take off the server's CPU per chunk; the server
bench's figure (``bench/server-results.json``, when there) puts it in proportion. Only the
standard library and llmplex; nothing leaves the process.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

EVENT = (
    b'{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"bench","choices":[{"index":0,"delta":{"content":"hello3"},'
    b'"finish_reason":null}]}'
)
ROUNDS, N = 7, 50_000


def typed_path() -> Any:
    """One chunk through the server's own path (the provider's decoder, the client's chunk,
    the server's renderer), as a function of no arguments."""
    from llmplex import AsyncClient
    from llmplex.client import _Run
    from llmplex.conversations import MemoryStore
    from llmplex.providers.openai_compatible import _Reader
    from llmplex.request import ChatRequest
    from llmplex.server.streaming import ChunkRenderer

    client = AsyncClient(store=MemoryStore())
    request = ChatRequest.build("openaicompatible:bench", [{"role": "user", "content": "Hi"}])
    routes = client.router.resolve("openaicompatible:bench", None)
    run = _Run(client, routes, request, None, "bench", None)
    run.choices[0].started = True  # a middle chunk: the role went with the first
    reader = _Reader("OpenAICompatible")
    reader.meta_sent = True
    render = ChunkRenderer(False)
    pending: dict[int, Any] = {}
    loads = json.loads

    def one() -> bytes:
        out = b""
        for item in reader.chunk(loads(EVENT)):
            out += render(run._text_chunk(item, pending))
        return out

    return one


def relay_path() -> Any:
    """One chunk passed on as the upstream's bytes (parsed and looked at, not rebuilt)."""
    loads = json.loads
    head = b'data: {"provider":"OpenAICompatible",'

    def one() -> bytes:
        data = loads(EVENT)
        choices = data.get("choices")
        if not choices or "error" in data or not choices[0].get("delta"):
            return b""  # (never here: a relay would hand such an event to the decoder)
        return head + EVENT[1:] + b"\n\n"

    return one


def main() -> int:
    paths = {"typed": typed_path(), "relay": relay_path()}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(ROUNDS):
        for name, one in paths.items():
            started = time.perf_counter()
            for _ in range(N):
                one()
            times[name].append((time.perf_counter() - started) / N * 1e6)
    typed, relay = (statistics.median(times[name]) for name in ("typed", "relay"))
    print(f"per text chunk, medians of {ROUNDS} rounds of {N:,}:")
    print(f"  typed (decode, chunk object, template render): {typed:.2f} µs")
    print(f"  relay (parse, pass the upstream's bytes on):  {relay:.2f} µs")
    print(f"  a relay would save {typed - relay:.2f} µs per chunk")
    results = Path(__file__).with_name("server-results.json")
    if results.exists():
        rows = json.loads(results.read_text()).get("rows", {})
        served = rows.get("llmplex", {}).get("chunk_us")
        floor = rows.get("floor", {}).get("chunk_us")
        if served and floor:
            print(
                f"  llmplex serve's CPU per chunk in the last server bench: {served:.1f} µs "
                f"({served / floor:.2f}x the floor); without that: "
                f"{(served - typed + relay) / floor:.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
