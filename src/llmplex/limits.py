"""Client-side output limits: ``max_tokens`` (counted in tokens) and ``stop`` sequences.

Providers get ``max_tokens``/``stop`` too where their service knows them; these limits make
the result the same whatever the provider honours. Where a provider reports no token
usage, tokens are **estimated** as one per 4 bytes of UTF-8 text, rounded up (OpenAI's
rule of thumb for English; CJK text comes out near one token per character).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["estimate_tokens", "OutputLimiter", "MAX_ANSWER_CHARS"]

#: the longest answer text the client gathers or holds (beyond it the answer fails:
#: memory stays bounded whatever an upstream sends)
MAX_ANSWER_CHARS = 64 * 1024 * 1024


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text`` (one per 4 UTF-8 bytes, rounded up)."""
    return -(-len(text.encode("utf-8")) // 4)


def _cut_to_bytes(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 form fits in ``limit`` bytes."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


class OutputLimiter:
    """Feed text deltas; get back what may be shown, until a limit ends the answer.

    ``feed(delta)`` returns the text to emit now (possibly ``""``: the tail that could be
    the start of a stop sequence is held back until the next delta decides). ``finish()``
    returns what was held at the end of the stream. ``reason`` becomes ``"stop"`` (a stop
    sequence was met) or ``"length"`` (``max_tokens`` reached); then ``done`` is true and
    the caller closes the upstream stream.
    """

    __slots__ = ("_stops", "_hold", "_budget", "_pending", "_used", "reason", "done")

    def __init__(self, max_tokens: int | None = None, stop: str | Sequence[str] | None = None):
        if isinstance(stop, str):
            stop = [stop]
        self._stops = [s for s in (stop or ()) if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._budget = None if max_tokens is None else max_tokens * 4  # bytes
        self._pending = ""
        self._used = 0  # bytes emitted
        self.reason: str | None = None
        self.done = False

    @property
    def active(self) -> bool:
        return bool(self._stops) or self._budget is not None

    def feed(self, delta: str) -> str:
        if self.done:
            return ""
        text = self._pending + delta
        if self._stops:
            cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
            if cut >= 0:
                self.reason, self.done = "stop", True
                self._pending = ""
                return self._spend(text[:cut], final=True)
            keep = min(self._hold, len(text))
            self._pending = text[len(text) - keep :] if keep else ""
            text = text[: len(text) - keep]
        return self._spend(text)

    def finish(self) -> str:
        """End of stream: release held text (within the budget)."""
        if self.done:
            return ""
        text, self._pending = self._pending, ""
        self.done = True
        return self._spend(text)

    def _spend(self, text: str, final: bool = False) -> str:
        if self._budget is None or not text:
            return text
        size = len(text.encode("utf-8"))
        if self._used + size <= self._budget:
            self._used += size
            return text
        allowed = _cut_to_bytes(text, self._budget - self._used)
        self._used = self._budget
        self.reason, self.done = "length", True
        return allowed
