"""What a provider (or one OpenAI-compatible endpoint row) can do, as data routing reads.

A request needs capabilities (:meth:`llmplex.request.ChatRequest.needs`): tool calling,
image/audio/file content, a ``response_format`` kind, reasoning, ``n`` > 1, logprobs. A
route is tried only when its provider has every one; when no route has them, the error
names the field and the providers that would take it.

Request *fields* (``temperature``, ``logit_bias``, ``top_k``...) are checked against the
keyword arguments the provider's ``create_async_generator`` declares, minus
:attr:`Capabilities.unsupported` (fields an endpoint row refuses although its class takes
them). ``max_tokens`` and ``stop`` are special: every route takes them; where the service
does not enforce them (``max_tokens=False``/``stop=False`` here), the client does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["Capabilities", "TEXT_ONLY", "EMULATABLE"]

#: needs llmplex can emulate through the prompt where the service lacks them
#: (:mod:`llmplex.emulation`): tool calling and JSON output
EMULATABLE = frozenset({"tools", "json_object", "json_schema"})

ToolSupport = Literal["native", "emulated", "none"]


@dataclass(frozen=True)
class Capabilities:
    """What a provider supports beyond plain text in and text out."""

    #: tool calling: the service's own (``native``), emulated by llmplex, or none
    tools: ToolSupport = "none"
    images: bool = False  # image_url content parts
    audio: bool = False  # input_audio parts, audio output
    files: bool = False  # file content parts
    #: response_format types taken besides "text": {"json_object", "json_schema"}
    response_format: frozenset[str] = frozenset()
    reasoning: bool = False  # reasoning_effort, reasoning deltas
    n: bool = False  # n > 1 choices
    logprobs: bool = False  # logprobs / top_logprobs
    max_tokens: bool = True  # the service enforces max_tokens itself
    stop: bool = True  # the service enforces stop sequences itself
    system_message: bool = False  # takes system messages as such
    message_history: bool = True  # takes earlier turns
    #: request fields refused although the provider's class takes them (per endpoint row)
    unsupported: frozenset[str] = field(default_factory=frozenset)

    def with_(self, **changes: Any) -> Capabilities:
        """A copy with ``changes`` (sets may be given as any iterable)."""
        for name in ("response_format", "unsupported"):
            if name in changes:
                changes[name] = frozenset(changes[name])
        return replace(self, **changes)

    def has(self, need: str) -> bool:
        """Whether a capability need (as :meth:`ChatRequest.needs` names them) is met."""
        if need == "tools":
            return self.tools != "none"
        if need in ("json_object", "json_schema"):
            return need in self.response_format
        return bool(getattr(self, need))

    def emulated(self) -> list[str]:
        """The emulatable needs this service lacks (what llmplex emulates for it)."""
        return sorted(need for need in EMULATABLE if not self.has(need))

    def summary(self, emulate: bool = False) -> dict[str, Any]:
        """JSON-ready view (``/v1/providers``, ``llmplex providers``); with ``emulate``,
        what llmplex emulates is shown as such (``tools: "emulated"``, ``emulated``)."""
        emulated = self.emulated() if emulate else []
        return {
            "tools": "emulated" if "tools" in emulated else self.tools,
            "emulated": emulated,
            "images": self.images,
            "audio": self.audio,
            "files": self.files,
            "response_format": sorted(self.response_format),
            "reasoning": self.reasoning,
            "n": self.n,
            "logprobs": self.logprobs,
            "native_max_tokens": self.max_tokens,
            "native_stop": self.stop,
            "system_message": self.system_message,
        }


#: a text-only chat service
TEXT_ONLY = Capabilities()
