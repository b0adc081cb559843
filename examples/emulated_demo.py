"""Stream one answer from every provider — through its local EMULATOR, not the real service.

Runs offline: each upstream (Ai2 Playground, OpenAssistant, H2O gpt-gm, Replicate, an
OpenAI-compatible server) is replaced by llmplex's byte-faithful emulator on 127.0.0.1.
It shows the exact calls you would make against the real services; only ``base_url`` and
the dummy credentials differ.

    python examples/emulated_demo.py
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.emulators import Script, get_emulator, serve
from llmplex.providers import AllenAI, H2o, OpenAssistant, Replicate, get_provider

QUESTION = [{"role": "user", "content": "Say hello in three languages."}]
REPLY = "Hello! Bonjour! Привет! 你好!"

# provider, emulator, model, options the real service would need (dummy values here)
DEMOS = [
    (AllenAI, "allenai", "olmo-3.1-32b-instruct", {"api_key": "ai2-emulated-token"}),
    (
        OpenAssistant,
        "openassistant",
        "OA_SFT_Llama_30B_6",
        {"cookies": {"next-auth.session-token": "demo-session"}},
    ),
    (H2o, "h2o", "falcon-40b", {}),
    (Replicate, "replicate", "meta/meta-llama-3-8b-instruct", {"api_key": "r8_demo"}),
    (get_provider("OpenAI"), "openai", "gpt-4o-mini", {"api_key": "sk-demo"}),
]


async def main() -> None:
    print("EMULATED: every answer below comes from a local emulator, not a real service.\n")
    with ExitStack() as stack:
        options = {}
        for provider, emulator, model, extra in DEMOS:
            emu = stack.enter_context(serve(get_emulator(emulator)(Script(REPLY, delay=0.02))))
            base_url = emu.url + "/v1" if emulator == "openai" else emu.url
            options[provider.get_name()] = {"base_url": base_url, **extra}
            print(f"{provider.get_name():>14} ({model}) @ {base_url}: ", end="", flush=True)
            # 1. The provider called directly: an async generator of text and typed chunks.
            async for chunk in provider.create_async_generator(
                model, QUESTION, **options[provider.get_name()]
            ):
                if isinstance(chunk, str):
                    print(chunk, end="", flush=True)
            print()

        # 2. The same through the one client: "provider:model" names, OpenAI-shaped objects.
        client = AsyncClient(provider_options=options, store=MemoryStore())
        answer = await client.chat.completions.create(
            model="replicate:meta/meta-llama-3-8b-instruct", messages="Hi!"
        )
        print(f"\nAsyncClient via {answer.provider}: {answer.choices[0].message.content}")


if __name__ == "__main__":
    asyncio.run(main())
