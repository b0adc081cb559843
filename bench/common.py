"""What the benchmark's emulators send and its clients expect: shared by both sides.

Stdlib only: imported by ``emulators.py`` (llmplex's environment) and by ``worker.py``
(every peer's environment).
"""

from __future__ import annotations

# Token-like pieces with their leading space, as models stream them; a few are Cyrillic,
# CJK or emoji so the UTF-8 paths are exercised too.
_WORDS = (
    " the",
    " quick",
    " brown",
    " fox",
    " jumps",
    " over",
    " a",
    " lazy",
    " dog",
    " and",
    " then",
    " writes",
    " some",
    " code",
    ",",
    " привет",
    " 世界",
    " 🙂",
    " again",
    ".",
)

MESSAGES = [{"role": "user", "content": "Tell me a story."}]
OPENAI_MODEL = "gpt-4o-mini"
REPLICATE_MODEL = "meta/meta-llama-3-8b-instruct"
AI2_MODEL = "olmo-3.1-32b-instruct"
#: the bearer token the Ai2 v5 emulator accepts (llmplex.emulators.ai2.EMULATED_TOKEN)
AI2_TOKEN = "ai2-emulated-token"
API_KEY = "sk-bench-not-a-real-key"


def chunks(n: int) -> list[str]:
    """The ``n`` pieces of the scripted reply of ``n`` chunks. The first has no leading
    space: g4f strips the answer's leading whitespace, and the texts must compare equal."""
    pieces = [_WORDS[i % len(_WORDS)] + (str(i) if i % 7 == 3 else "") for i in range(n)]
    if pieces:
        pieces[0] = "Once"
    return pieces


def reply(n: int) -> str:
    """The whole reply text of ``n`` chunks (what every client must return)."""
    return "".join(chunks(n))
