"""The Ai2 Playground's v5 wire protocol (PROTOCOLS.md §1b): pure pieces.

:func:`plan` turns OpenAI-shaped messages into the form posts of one turn (a new thread,
a follow-up, or the tool results of a pending call); :func:`form_fields` spells one post;
:class:`ChunkReader` turns the JSON lines of its answer into llmplex stream events; and
:func:`problem_error` reads an ``application/problem+json`` refusal. The I/O is in
:mod:`llmplex.providers.allenai`.
"""

from __future__ import annotations

import base64
import binascii
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    InvalidRequestError,
    LLMplexError,
    MissingAuthError,
    ProviderWarning,
    ResponseError,
)
from ..http.status import error_for_status
from ..surrogates import Surrogates
from ..types import Chunk, ReasoningDelta, ToolCallDelta

__all__ = [
    "Post",
    "plan",
    "form_fields",
    "tool_definitions",
    "ChunkReader",
    "problem_error",
    "PATH",
    "MODELS_PATH",
]

PATH = "/v5/threads/chat"
MODELS_PATH = "/v5/models/"
_PROVIDER = "AllenAI"
_FINISH = {
    "stop": "stop",
    "length": "length",
    "aborted": "canceled",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
}
_IMAGE_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}


@dataclass
class Post:
    """One ``POST /v5/threads/chat`` of a turn."""

    role: str  # "user" or "tool_call_result"
    content: str
    tool_call_id: str | None = None
    #: (filename, content type, bytes) of the images and files sent with it
    files: list[tuple[str, str, bytes]] = field(default_factory=list)


# -- messages -> posts -----------------------------------------------------------------------


def plan(messages: Sequence[Mapping[str, Any]], continuing: bool) -> tuple[list[Post], int]:
    """The posts of this turn, and the index of the first message they carry (the new
    part of the history).

    ``continuing`` (the thread exists upstream): the messages after the last assistant
    message are sent — tool results as ``tool_call_result`` posts, one each (the server
    answers once the last pending call has its result), or the new user message. A new
    thread gets one user post: a single user message as it is, a longer history as a
    transcript (the service takes no earlier turns in a new thread)."""
    if continuing:
        start = next(
            (i + 1 for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "assistant"),
            0,
        )
        tail = messages[start:]
        if tail and all(m["role"] == "tool" for m in tail):
            return [
                Post("tool_call_result", _text(m, start + i), m["tool_call_id"])
                for i, m in enumerate(tail)
            ], start
        if any(m["role"] == "tool" for m in tail):
            raise InvalidRequestError(
                "tool results and a new user message cannot be sent in one turn to Ai2: "
                "send the tool results first",
                param="messages",
                provider=_PROVIDER,
            )
        if not any(m["role"] == "user" for m in tail):
            raise InvalidRequestError(
                "messages has no new user message after the last assistant message",
                param="messages",
                provider=_PROVIDER,
            )
        return [_user_post(tail, start)], start
    return [_user_post(messages, 0)], 0


def _user_post(messages: Sequence[Mapping[str, Any]], offset: int) -> Post:
    files: list[tuple[str, str, bytes]] = []
    for i, message in enumerate(messages):
        if message["role"] == "user" and type(message["content"]) is not str:
            for j, part in enumerate(message["content"]):
                if part["type"] in ("image_url", "file"):
                    files.append(_file(part, f"messages[{offset + i}].content[{j}]"))
    if len(messages) == 1 and messages[0]["role"] == "user":
        return Post("user", _text(messages[0], offset), files=files)
    lines = []
    for i, message in enumerate(messages):
        role = message["role"]
        text = _text(message, offset + i)
        if role == "tool":
            lines.append(f"Tool result ({message['tool_call_id']}): {text}")
            continue
        label = "System" if role == "developer" else role.capitalize()
        if text:
            lines.append(f"{label}: {text}")
        for call in message.get("tool_calls") or ():
            function = call["function"]
            lines.append(
                f"Assistant called {function['name']}({function['arguments']}) [{call['id']}]"
            )
    return Post("user", "\n".join(lines) + "\nAssistant:", files=files)


def _text(message: Mapping[str, Any], index: int) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if type(content) is str:
        return content
    texts = []
    for j, part in enumerate(content):
        kind = part["type"]
        if kind in ("text", "refusal"):
            texts.append(part[kind])
        elif kind == "input_audio":
            raise InvalidRequestError(
                f"messages[{index}].content[{j}]: Ai2 takes no audio",
                param=f"messages[{index}].content[{j}]",
                provider=_PROVIDER,
            )
    return "".join(texts)


def _file(part: Mapping[str, Any], where: str) -> tuple[str, str, bytes]:
    """An image or file part as an upload: only inline data can be sent (the service
    takes uploads, not URLs)."""
    if part["type"] == "image_url":
        url = part["image_url"]["url"]
        if not url.startswith("data:"):
            raise InvalidRequestError(
                f"{where}: Ai2 takes uploaded images only; pass the image as a data: URI "
                "(data:image/png;base64,...)",
                param=f"{where}.image_url.url",
                provider=_PROVIDER,
            )
        ctype, data = _data_uri(url, where)
        return f"image.{ctype.split('/')[-1]}", ctype, data
    file = part["file"]
    if not isinstance(file.get("file_data"), str):
        raise InvalidRequestError(
            f"{where}: Ai2 takes inline files only (file_data), not file_id",
            param=f"{where}.file",
            provider=_PROVIDER,
        )
    name = str(file.get("filename") or "file")
    raw = file["file_data"]
    if raw.startswith("data:"):
        ctype, data = _data_uri(raw, where)
    else:
        ctype = _IMAGE_TYPES.get(name.rsplit(".", 1)[-1].lower(), "application/octet-stream")
        data = _b64(raw, where)
    return name, ctype, data


def _data_uri(uri: str, where: str) -> tuple[str, bytes]:
    head, comma, payload = uri[5:].partition(",")
    if not comma or not head.endswith(";base64"):
        raise InvalidRequestError(
            f"{where}: expected a base64 data: URI", param=where, provider=_PROVIDER
        )
    return head[:-7] or "application/octet-stream", _b64(payload, where)


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            f"{where}: not valid base64", param=where, provider=_PROVIDER
        ) from None


def tool_definitions(tools: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI ``tools`` as Ai2's ``toolDefinitions`` (``{name, description, parameters}``;
    the service requires a description and an object schema)."""
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type", "function") != "function":
            raise InvalidRequestError(
                f"tools[{i}]: Ai2 takes function tools only",
                param=f"tools[{i}].type",
                provider=_PROVIDER,
            )
        function = tool["function"]
        out.append(
            {
                "name": function["name"],
                "description": function.get("description") or "",
                "parameters": function.get("parameters") or {"type": "object", "properties": {}},
            }
        )
    return out


def form_fields(
    post: Post, *, model: str, parent: str | None, captcha: str | None, options: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """The text fields of one post, in the order the Playground sends them; ``options``
    holds the form names of the sampling and tool fields (``None``: not sent)."""
    fields: list[tuple[str, Any]] = [
        ("role", post.role),
        ("model", model),
        ("content", post.content),
        ("parent", parent),
        ("toolCallId", post.tool_call_id),
        ("captchaToken", captcha),
    ]
    for key, value in options.items():
        if key == "stop":
            fields += [("stop", s) for s in value or ()]
        elif isinstance(value, bool):
            fields.append((key, "true" if value else "false"))
        elif isinstance(value, (list, dict)):
            fields.append((key, json.dumps(value, ensure_ascii=False, separators=(",", ":"))))
        else:
            fields.append((key, value))
    return [(k, str(v)) for k, v in fields if v is not None]


# -- answer lines -> events --------------------------------------------------------------


class ChunkReader:
    """The events of one ``/v5/threads/chat`` answer, one JSON line at a time.

    Text deltas come from the reply's ``addMessage`` (its first fragment) and
    ``modelResponse``; reasoning from ``thinking`` (and the first fragment in
    ``addMessage``); user tool calls from ``toolCall`` (start, then argument deltas,
    numbered in order of appearance; the server's own tools are not the caller's and are
    not passed on). ``error`` chunks of severity ``error`` are kept (:attr:`errors`) and
    raised by the caller once the stream ends; ``warning``/``info`` ones are issued as a
    :class:`~llmplex.errors.ProviderWarning`. ``finalThread`` is authoritative: text or
    reasoning it has beyond what streamed is given then, and it supplies the history.
    """

    def __init__(self) -> None:
        self.replies: list[str] = []  # assistant message ids, in order
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[str, int] = {}  # user tool call id -> index
        self.internal: set[str] = set()  # the server's own tool calls
        self.errors: list[tuple[str, str]] = []  # (code, description)
        self.final: list[dict[str, Any]] | None = None
        self.ended = False
        self._text = Surrogates()
        self._reasoning = Surrogates()

    def feed(self, line: Any) -> list[Chunk]:
        """The events of one line (a JSON value); unknown types are skipped."""
        if not isinstance(line, dict):
            return []
        kind = line.get("type")
        if kind == "modelResponse":
            return self._say(line.get("content"))
        if kind == "thinking":
            return self._think(line.get("content"))
        if kind == "toolCall":
            return self._tool(line)
        if kind in ("addMessage", "startThread"):
            out: list[Chunk] = []
            for message in line.get("messages") or ():
                if (
                    isinstance(message, dict)
                    and message.get("role") == "assistant"
                    and not message.get("final")
                    and message.get("id") not in self.replies
                ):
                    self.replies.append(str(message.get("id")))
                    out += self._think(message.get("thinking"))
                    out += self._say(message.get("content"))
            return out
        if kind == "error":
            self._error(line)
            return []
        if kind == "finalThread":
            messages = line.get("messages")
            self.final = (
                [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
            )
            return self._complete()
        if kind == "end":
            self.ended = True
        return []

    def flush(self) -> list[Chunk]:
        """What is held at the end (a lone surrogate half)."""
        out: list[Chunk] = []
        tail = self._reasoning.flush()
        if tail:
            out.append(ReasoningDelta(tail))
        tail = self._text.flush()
        if tail:
            self.text.append(tail)
            out.append(tail)
        return out

    def _say(self, content: Any) -> list[Chunk]:
        if not isinstance(content, str) or not content:
            return []
        piece = self._text.feed(content)
        if not piece:
            return []
        self.text.append(piece)
        return [piece]

    def _think(self, content: Any) -> list[Chunk]:
        if not isinstance(content, str) or not content:
            return []
        piece = self._reasoning.feed(content)
        if not piece:
            return []
        self.reasoning.append(piece)
        return [ReasoningDelta(piece)]

    def _tool(self, line: dict[str, Any]) -> list[Chunk]:
        call_id = line.get("toolCallId")
        if not isinstance(call_id, str) or call_id in self.internal:
            return []
        args = line.get("args")
        if isinstance(args, dict):
            args = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
        arguments = args if isinstance(args, str) else ""
        index = self.calls.get(call_id)
        if index is None:
            if line.get("toolSource") not in (None, "user_defined"):
                self.internal.add(call_id)  # run by the server itself
                return []
            index = self.calls[call_id] = len(self.calls)
            return [ToolCallDelta(index, call_id, str(line.get("toolName") or ""), arguments)]
        return [ToolCallDelta(index, arguments=arguments)] if arguments else []

    def _error(self, line: dict[str, Any]) -> None:
        code = str(line.get("errorCode") or "error")
        description = str(line.get("errorDescription") or "")
        severity = line.get("errorSeverity") or "error"
        if severity == "error":
            self.errors.append((code, description))
        else:
            warnings.warn(
                ProviderWarning(f"{_PROVIDER}: {severity}: {description} (code: {code})"),
                stacklevel=2,
            )

    # -- the final thread ------------------------------------------------------------------

    def assistant_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.final or () if m.get("role") == "assistant"]

    def _complete(self) -> list[Chunk]:
        """Whatever the final thread has beyond the stream: the rest of the text and
        reasoning, tool calls that never streamed."""
        out: list[Chunk] = []
        replies = self.assistant_messages()
        final_text = "".join(str(m.get("content") or "") for m in replies)
        streamed = "".join(self.text)
        if len(final_text) > len(streamed) and final_text.startswith(streamed):
            rest = final_text[len(streamed) :]
            self.text.append(rest)
            out.append(rest)
        final_thinking = "".join(str(m.get("thinking") or "") for m in replies)
        thought = "".join(self.reasoning)
        if len(final_thinking) > len(thought) and final_thinking.startswith(thought):
            rest = final_thinking[len(thought) :]
            self.reasoning.append(rest)
            out.insert(0, ReasoningDelta(rest))
        for call in self.tool_calls():
            if call["id"] not in self.calls:
                index = self.calls[call["id"]] = len(self.calls)
                out.append(
                    ToolCallDelta(
                        index, call["id"], call["function"]["name"], call["function"]["arguments"]
                    )
                )
        return out

    def tool_calls(self) -> list[dict[str, Any]]:
        """The reply's user tool calls, in OpenAI's shape, from the final thread."""
        calls = []
        for message in self.assistant_messages():
            for call in message.get("toolCalls") or ():
                if (
                    not isinstance(call, dict)
                    or call.get("toolSource") not in (None, "user_defined")
                    or call.get("toolCallId") in self.internal
                ):
                    continue
                args = call.get("args")
                if not isinstance(args, str):
                    args = json.dumps(
                        args if args is not None else {}, ensure_ascii=False, separators=(",", ":")
                    )
                calls.append(
                    {
                        "id": str(call.get("toolCallId")),
                        "type": "function",
                        "function": {"name": str(call.get("toolName") or ""), "arguments": args},
                    }
                )
        return calls

    def final_text(self) -> str:
        replies = self.assistant_messages()
        if replies:
            return "".join(str(m.get("content") or "") for m in replies)
        return "".join(self.text)

    def finish_reason(self) -> str:
        if self.tool_calls():
            return "tool_calls"
        replies = self.assistant_messages()
        reason = replies[-1].get("finishReason") if replies else None
        return _FINISH.get(str(reason), "stop") if reason else "stop"

    def last_id(self) -> str | None:
        """The id to continue from: the last message of the final thread."""
        if self.final:
            last = self.final[-1].get("id")
            return last if isinstance(last, str) else None
        return None

    def check(self) -> None:
        """After the stream: a ResponseError when it ended without its final thread."""
        if self.final is None:
            raise ResponseError("the stream ended without its finalThread", provider=_PROVIDER)


# -- refusals ----------------------------------------------------------------------------


def problem_error(status: int, body: str, retry_after: str | None) -> LLMplexError:
    """The error for a refused post: by status (401/403: MissingAuthError, 429:
    RateLimitError, else ResponseStatusError), with the problem document's ``detail`` or
    its validation errors as the message. A validation error on ``captchaToken`` is a
    MissingAuthError (the post needed a captcha token), whatever its status."""
    message = None
    captcha = False
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            parts = []
            for error in errors:
                if not isinstance(error, dict):
                    continue
                loc = [str(p) for p in error.get("loc") or () if p != "body"]
                captcha = captcha or "captchaToken" in loc
                parts.append(f"{'.'.join(loc) or 'body'}: {error.get('msg')}")
            message = f"{data.get('title') or 'validation error'} " + "; ".join(parts)
        elif isinstance(data.get("detail"), str):
            message = data["detail"]
    error = error_for_status(
        status, body, provider=_PROVIDER, message=message, retry_after=retry_after
    )
    if captcha:
        return MissingAuthError(
            f"{message}. Ai2 asks for a captcha token: pass captcha_token= (a string, or "
            "an async callable minting one per message), or sign in with api_key=",
            provider=_PROVIDER,
            status=status,
            body=error.body,
        )
    return error
