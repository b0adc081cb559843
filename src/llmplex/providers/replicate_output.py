"""A Replicate model's output text, read as llmplex's typed chunks.

Models on Replicate answer in plain text, which carries more than the answer:

- reasoning models (DeepSeek R1, Qwen, Granite with ``thinking``) begin with their reasoning
  between ``<think>`` and ``</think>``: it becomes :class:`ReasoningDelta` events;
- a model given ``tools`` (Granite) calls them by answering ``<|tool_call|>`` and a JSON list
  of ``{"name", "arguments"}``: that becomes :class:`ToolCallDelta` events and the finish
  reason ``tool_calls``.

:class:`OutputReader` reads the text incrementally, for any split of it into pieces.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..errors import ResponseError
from ..events import FinishReason, ReasoningDelta, ToolCallDelta
from ..types import Chunk

__all__ = ["OutputReader"]

_THINK, _END_THINK = "<think>", "</think>"
_TOOL_CALL = "<|tool_call|>"
#: bound on a tool call's text held while it is read (the arguments of one answer)
_MAX_CALL_CHARS = 1_000_000


class OutputReader:
    """Splits output text into answer text, reasoning and tool calls (``tools``: whether
    the model was given tools natively, so that its calls are read as such)."""

    def __init__(self, tools: bool = False) -> None:
        self.tools = tools
        self.state = "start"  # start -> text | think -> text | call
        self.held = ""
        self.called = False  # the answer was tool calls

    def feed(self, text: str) -> list[Chunk]:
        """The chunks ``text`` (the next piece of output) completes."""
        if self.state == "text":
            return [text] if text else []
        self.held += text
        if self.state == "start":
            return self._start()
        if self.state == "think":
            return self._think()
        if len(self.held) > _MAX_CALL_CHARS:
            raise ResponseError(
                f"tool call over {_MAX_CALL_CHARS} characters", provider="Replicate"
            )
        return []

    def end(self, complete: bool = True) -> list[Chunk]:
        """The chunks held back at the end of the output (a tool call's, if it was one).
        An output cut short (not ``complete``: cancelled) leaves a call unread: its text
        is given as it is."""
        held, self.held = self.held, ""
        if self.state == "call":
            return self._calls(held) if complete else [_TOOL_CALL + held]
        if self.state == "think":
            return [ReasoningDelta(held)] if held else []
        return [held] if held else []

    def _start(self) -> list[Chunk]:
        head = self.held.lstrip()
        markers = [_THINK] + ([_TOOL_CALL] if self.tools else [])
        for marker in markers:
            if head.startswith(marker):
                self.held = head[len(marker) :]
                if marker == _THINK:
                    self.state = "think"
                    return self._think()
                self.state = "call"
                return []
        if not head or any(marker.startswith(head) for marker in markers):
            return []  # not decided yet: it may still begin with a marker
        self.state = "text"
        held, self.held = self.held, ""
        return [held]

    def _think(self) -> list[Chunk]:
        held = self.held
        end = held.find(_END_THINK)
        if end >= 0:
            reasoning, rest = held[:end], held[end + len(_END_THINK) :].lstrip("\n")
            self.held, self.state = "", "start"
            out: list[Chunk] = [ReasoningDelta(reasoning)] if reasoning else []
            return out + (self.feed(rest) if rest else [])
        # keep back what may be the start of </think>
        keep = next(
            (n for n in range(len(_END_THINK) - 1, 0, -1) if held.endswith(_END_THINK[:n])), 0
        )
        reasoning, self.held = held[: len(held) - keep], held[len(held) - keep :]
        return [ReasoningDelta(reasoning)] if reasoning else []

    def _calls(self, text: str) -> list[Chunk]:
        try:
            calls = json.loads(text)
        except ValueError:
            raise ResponseError(
                f"unreadable tool call from the model: {text[:200]!r}", provider="Replicate"
            ) from None
        if isinstance(calls, dict):
            calls = [calls]
        out: list[Chunk] = []
        for index, call in enumerate(calls if isinstance(calls, list) else ()):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise ResponseError(
                    f"unreadable tool call from the model: {text[:200]!r}", provider="Replicate"
                )
            arguments: Any = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            out.append(
                ToolCallDelta(index, "call_" + os.urandom(12).hex(), call["name"], arguments)
            )
        if not out:
            raise ResponseError("the model's tool call names no tool", provider="Replicate")
        self.called = True
        return [*out, FinishReason("tool_calls")]
