"""The retired v4 protocol of the Ai2 Playground (PROTOCOLS.md §1), for deployments that
still run ``POST /v4/message/stream`` (``AllenAI`` with ``api_version="v4"``).

One multipart POST per turn, answered with JSON lines: the new message tree, text chunks,
optional error lines, and the finalized tree. Text only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from ..errors import LLMplexError, ResponseError, StreamError
from ..http.session import Session
from ..prompt import format_prompt, get_last_user_message, require_text_only
from ..surrogates import Surrogates
from ..types import Chunk, FinishReason

if TYPE_CHECKING:  # pragma: no cover
    from .allenai import Conversation

__all__ = ["stream_v4", "PATH"]

PATH = "/v4/message/stream"
_NAME = "AllenAI"


async def stream_v4(
    url: str,
    model: str,
    host: str,
    messages: Any,
    *,
    conversation: Conversation,
    headers: Mapping[str, str],
    proxy: str | None,
    timeout: float | None,
    private: bool,
    options: Mapping[str, Any],
    stop: str | Iterable[str] | None,
    return_conversation: bool,
) -> AsyncIterator[Chunk]:
    """One v4 turn: text deltas, then the updated conversation (if asked), then the
    finish reason. ``options``: ``temperature``, ``top_p``, ``max_tokens``."""
    continuing = bool(conversation.parent)
    if continuing:
        prompt = get_last_user_message(messages)
        turn = [{"role": "user", "content": prompt}]
    else:
        prompt = format_prompt(messages)
        turn = [
            {"role": m["role"], "content": m["content"]} for m in require_text_only(messages, _NAME)
        ]

    form = aiohttp.FormData(charset="utf-8")
    fields: list[tuple[str, Any]] = [
        ("model", model),
        ("host", host),
        ("content", prompt),
        ("private", "true" if private else "false"),
        ("parent", conversation.parent if continuing else None),
        *options.items(),
    ]
    fields += [("stop", s) for s in ([stop] if isinstance(stop, str) else stop or ())]
    for key, value in fields:
        if value is not None:
            # An explicit text part type makes FormData multipart (not urlencoded) on
            # every aiohttp version, and UTF-8 keeps Cyrillic/CJK/emoji intact.
            form.add_field(key, str(value), content_type="text/plain; charset=utf-8")

    reply_id: str | None = None
    deltas: list[str] = []
    text = Surrogates()  # emoji may come as two \ud8xx escapes in two lines
    error: tuple[str, str] | None = None
    final: dict[str, Any] | None = None
    async with Session(_NAME, proxy=proxy, headers=headers, timeout=timeout) as session:
        async with session.request("POST", url + PATH, data=form) as response:
            try:
                async for line in session.ndjson(response):
                    if not isinstance(line, dict):
                        continue
                    if "message" in line:  # a chunk line or an error line
                        reply_id = reply_id or line.get("message")
                        if "error" in line:
                            # The final line still follows an error line: read on.
                            error = (str(line["error"]), str(line.get("reason") or ""))
                        elif isinstance(line.get("content"), str) and line["content"]:
                            piece = text.feed(line["content"])
                            if piece:
                                deltas.append(piece)
                                yield piece
                    elif "id" in line:  # a message tree: the first line or the final one
                        node = _find_reply(line, reply_id)
                        if node is not None:
                            reply_id = node.get("id") or reply_id
                        if line.get("final"):
                            final = node or {}
                            break
            except LLMplexError:
                if error is None:
                    raise  # else the stream broke after an error line: report that
    # The connection is closed from here on: errors and the last chunks come after.
    if error is not None:
        message, reason = error
        raise StreamError(f"{message} (reason: {reason})" if reason else message, provider=_NAME)
    tail = text.flush()
    if tail:
        deltas.append(tail)
        yield tail
    if final is None:
        raise ResponseError("the stream ended without its final message", provider=_NAME)
    content = final.get("content")
    conversation.messages.extend(turn)
    conversation.messages.append(
        {
            "role": "assistant",
            "content": content if isinstance(content, str) and content else "".join(deltas),
        }
    )
    conversation.parent = reply_id
    conversation.model = model
    if return_conversation:
        yield conversation
    yield FinishReason(final.get("finish_reason") or "stop")


def _find_reply(tree: dict[str, Any], reply_id: str | None) -> dict[str, Any] | None:
    """The assistant reply in a message tree, at any depth (models with a system prompt
    put it two levels down): the node with ``reply_id`` if known, else the last
    unfinished assistant message, else the last assistant message."""
    found: list[dict[str, Any]] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if node.get("role") == "assistant":
            if reply_id is not None and node.get("id") == reply_id:
                return node
            found.append(node)
        stack.extend(reversed([c for c in node.get("children") or () if isinstance(c, dict)]))
    if reply_id is not None:
        return None
    pending = [n for n in found if not n.get("final")]
    candidates = pending or found
    return candidates[-1] if candidates else None
