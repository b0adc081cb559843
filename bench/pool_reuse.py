"""Addendum to run.py: CPU per request of AsyncClient with and without its connection pool.

``async with AsyncClient()`` (and ``llmplex serve``) keep upstream connections alive; run.py
measures the default per-call sessions. This compares the two on the same emulator, which
runs in another process so only the client's CPU is counted:

    .venv/bin/python bench/pool_reuse.py     # needs llmplex installed (pip install -e .)
"""

import asyncio, subprocess, sys, time, statistics
code = ("import time; from llmplex.testing import EmulatorServer, Script; "
        "from llmplex.testing.openai import OpenAIEmulator; "
        "s = EmulatorServer(OpenAIEmulator(Script('hello there')), port=18621); s.start(); time.sleep(600)")
proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(2.5)
from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
OPTS = {"OpenAI": {"base_url": "http://127.0.0.1:18621/v1", "api_key": "sk"}}
async def run(client, n):
    c0 = time.process_time()
    for _ in range(n):
        await client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
    return (time.process_time() - c0) / n * 1000
async def main():
    plain = AsyncClient(provider_options=OPTS, store=MemoryStore())
    await run(plain, 20)
    res = {"per-call session": [], "async with (pool)": []}
    for _ in range(5):
        res["per-call session"].append(await run(plain, 100))
        async with AsyncClient(provider_options=OPTS, store=MemoryStore()) as pooled:
            await run(pooled, 20)
            res["async with (pool)"].append(await run(pooled, 100))
    for k, v in res.items():
        print(f"{k}: {statistics.median(v):.3f} ms CPU per request (median of 5 x 100)")
try:
    asyncio.run(main())
finally:
    proc.terminate(); proc.wait()
