"""A Responses API answer built from Chat Completions chunks: its events and its object.

:class:`ResponseWriter` takes the chunks of ``chat.completions.create(stream=True)`` and
gives the Responses event sequence (what ``openai``'s ``responses.stream`` and the
``openai-agents`` SDK read) and, at the end, the whole response object (what a request
without ``stream`` gets, and what is stored for ``previous_response_id``):

- ``response.created``, ``response.in_progress`` (the response without output);
- per output item, in the order the model produced them: a ``reasoning`` item
  (``reasoning_text`` content: the model's reasoning as it gave it), a ``message`` item
  (one ``output_text`` part, or a ``refusal`` part), a ``function_call`` item per tool call
  (``call_id``, ``name``, ``arguments``). Each item has ``response.output_item.added``, its
  content events (``response.content_part.added``, ``response.output_text.delta`` /
  ``response.reasoning_text.delta`` / ``response.refusal.delta`` /
  ``response.function_call_arguments.delta``, their ``.done`` and
  ``response.content_part.done``) and ``response.output_item.done``;
- ``response.completed`` (``status: "completed"``), or ``response.incomplete`` when the
  answer was cut by ``max_output_tokens`` or a content filter (``incomplete_details``),
  with the whole response and its ``usage``; ``response.failed`` (``error`` set) when the
  upstream failed after the stream began; an ``error`` event when llmplex itself did.

Every event has a ``sequence_number`` counting from 0.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..objects import ChatCompletionChunk, CompletionUsage
from .errors import APIError

__all__ = ["Event", "ResponseWriter", "new_response_id", "usage"]

Event = dict[str, Any]


def new_response_id() -> str:
    return "resp_" + os.urandom(24).hex()


def _item_id(prefix: str) -> str:
    return prefix + os.urandom(24).hex()


def usage(value: CompletionUsage | None) -> dict[str, Any] | None:
    """Chat Completions usage in the Responses shape."""
    if value is None:
        return None
    prompt = value.prompt_tokens_details
    completion = value.completion_tokens_details
    return {
        "input_tokens": value.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": (prompt.cached_tokens if prompt is not None else None) or 0,
            "cache_write_tokens": 0,
        },
        "output_tokens": value.completion_tokens,
        "output_tokens_details": {
            "reasoning_tokens": (completion.reasoning_tokens if completion is not None else None)
            or 0
        },
        "total_tokens": value.total_tokens,
    }


#: Chat Completions finish reasons that leave a response incomplete, with the reason
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


class ResponseWriter:
    """The events and the object of one response; ``response`` is its skeleton (the
    request's fields echoed, ``id``, ``created_at``, ``model``), completed here."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        response.setdefault("status", "in_progress")
        response["output"] = []
        response.setdefault("usage", None)
        self.sequence = 0
        self.item: dict[str, Any] | None = None  # the open output item
        self.kind: Any = None  # what it is: "reasoning", "text", "refusal", ("call", i)
        self.pieces: list[str] = []  # its text so far
        self.usage: CompletionUsage | None = None
        self.finish: str | None = None
        self.provider: str | None = None
        self.emulated: list[str] | None = None

    # -- events ----------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> Event:
        fields["type"] = kind
        fields["sequence_number"] = self.sequence
        self.sequence += 1
        return fields

    def _snapshot(self) -> dict[str, Any]:
        return {**self.response, "output": [dict(item) for item in self.response["output"]]}

    def opening(self) -> list[Event]:
        """``response.created`` and ``response.in_progress``."""
        return [
            self._event("response.created", response=self._snapshot()),
            self._event("response.in_progress", response=self._snapshot()),
        ]

    def chunk(self, chunk: ChatCompletionChunk) -> list[Event]:
        """The events for one chunk (often one delta event)."""
        events: list[Event] = []
        self.provider = chunk.provider
        if chunk.model:
            self.response["model"] = chunk.model
        if chunk.emulated:
            self.emulated = chunk.emulated
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # a response has one answer (no n)
            delta = choice.delta
            if delta.reasoning_content:
                self._switch("reasoning", events)
                events.append(self._delta("response.reasoning_text.delta", delta.reasoning_content))
            if delta.content:
                self._switch("text", events)
                events.append(self._delta("response.output_text.delta", delta.content, logprobs=[]))
            if delta.refusal:
                self._switch("refusal", events)
                events.append(self._delta("response.refusal.delta", delta.refusal))
            for call in delta.tool_calls or ():
                function = call.function
                self._switch(
                    ("call", call.index), events, call.id, function.name if function else None
                )
                arguments = function.arguments if function else None
                if arguments:
                    self.pieces.append(arguments)
                    assert self.item is not None
                    events.append(
                        self._event(
                            "response.function_call_arguments.delta",
                            item_id=self.item["id"],
                            output_index=self._index(),
                            delta=arguments,
                        )
                    )
            if choice.finish_reason:
                self.finish = choice.finish_reason
        return events

    def _index(self) -> int:
        return len(self.response["output"]) - 1

    def _delta(self, kind: str, text: str, **more: Any) -> Event:
        self.pieces.append(text)
        assert self.item is not None
        return self._event(
            kind,
            item_id=self.item["id"],
            output_index=self._index(),
            content_index=0,
            delta=text,
            **more,
        )

    def _switch(
        self, kind: Any, events: list[Event], call_id: str | None = None, name: str | None = None
    ) -> None:
        """Make ``kind`` the open item: close the open one if it is another, then open
        one of that kind."""
        if self.kind == kind:
            return
        self._close(events, "completed")
        self.kind = kind
        self.pieces = []
        if kind == "reasoning":
            item: dict[str, Any] = {
                "id": _item_id("rs_"),
                "type": "reasoning",
                "summary": [],
                "content": [],
                "status": "in_progress",
            }
            part: dict[str, Any] | None = {"type": "reasoning_text", "text": ""}
        elif kind in ("text", "refusal"):
            item = {
                "id": _item_id("msg_"),
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            part = (
                {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                if kind == "text"
                else {"type": "refusal", "refusal": ""}
            )
        else:
            item = {
                "id": _item_id("fc_"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": call_id or _item_id("call_"),
                "name": name or "",
                "arguments": "",
            }
            part = None
        self.item = item
        self.response["output"].append(item)
        index = self._index()
        events.append(
            self._event("response.output_item.added", output_index=index, item=dict(item))
        )
        if part is not None:
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=part,
                )
            )

    def _close(self, events: list[Event], status: str) -> None:
        item, kind = self.item, self.kind
        if item is None:
            return
        index, text = self._index(), "".join(self.pieces)
        where = {"item_id": item["id"], "output_index": index}
        if kind == "reasoning":
            part: dict[str, Any] | None = {"type": "reasoning_text", "text": text}
            events.append(
                self._event("response.reasoning_text.done", **where, content_index=0, text=text)
            )
        elif kind == "text":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            events.append(
                self._event(
                    "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
                )
            )
        elif kind == "refusal":
            part = {"type": "refusal", "refusal": text}
            events.append(
                self._event("response.refusal.done", **where, content_index=0, refusal=text)
            )
        else:
            part = None
            item["arguments"] = text
            events.append(
                self._event("response.function_call_arguments.done", **where, arguments=text)
            )
        if part is not None:
            events.append(
                self._event("response.content_part.done", **where, content_index=0, part=part)
            )
            item["content"] = [part]
        item["status"] = status
        events.append(self._event("response.output_item.done", output_index=index, item=dict(item)))
        self.item = self.kind = None
        self.pieces = []

    def closing(self) -> list[Event]:
        """The end of a stream that ended well, but its last event: the open item closed
        (the response is then whole, see :meth:`finished`)."""
        events: list[Event] = []
        incomplete = _INCOMPLETE.get(self.finish or "")
        if not self.response["output"]:
            self._switch("text", events)  # an empty answer is an empty message
        self._close(events, "incomplete" if incomplete else "completed")
        self.finished()
        return events

    def completed(self) -> Event:
        """The last event: ``response.completed`` (or ``response.incomplete``) with the
        whole response."""
        kind = (
            "response.incomplete"
            if self.response["status"] == "incomplete"
            else "response.completed"
        )
        return self._event(kind, response=self._snapshot())

    def finished(self) -> dict[str, Any]:
        """The whole response, as it stands at the end."""
        response = self.response
        incomplete = _INCOMPLETE.get(self.finish or "")
        response["status"] = "incomplete" if incomplete else "completed"
        response["incomplete_details"] = {"reason": incomplete} if incomplete else None
        response["completed_at"] = int(time.time())
        response["usage"] = usage(self.usage)
        if self.provider:
            response["provider"] = self.provider
        if self.emulated:
            response["emulated"] = self.emulated
        return response

    def error(self, error: APIError) -> Event:
        """OpenAI's ``error`` event (a failure that is not the upstream's)."""
        return self._event("error", code=error.code, message=error.message, param=error.param)

    def failed(self, error: APIError) -> list[Event]:
        """``response.failed``: the upstream failed after the stream began."""
        events: list[Event] = []
        self._close(events, "incomplete")
        response = self.response
        response["status"] = "failed"
        code = "rate_limit_exceeded" if error.status == 429 else "server_error"
        response["error"] = {"code": code, "message": error.message}
        if self.provider:
            response["provider"] = self.provider
        events.append(self._event("response.failed", response=self._snapshot()))
        return events
