"""Ai2 Playground (``AllenAI``): OLMo and Tülu models over olmo-api's message stream.

Wire protocol: PROTOCOLS.md §1. One multipart POST to ``/v4/message/stream`` per turn,
answered with JSON lines: the new message tree, text chunks, optional error lines, and
the finalized tree. A thread continues by sending the assistant reply's id as ``parent``
with the same ``X-Anonymous-User-ID``; the :class:`Conversation` carries both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, ClassVar
from uuid import uuid4

import aiohttp

from ..capabilities import TEXT_ONLY
from ..errors import LLMplexError, ResponseError, StreamError
from ..http.session import DEFAULT_TIMEOUT, Session
from ..prompt import format_prompt, get_last_user_message, require_text_only
from ..surrogates import Surrogates
from ..types import Chunk, FinishReason, JsonConversation, Messages
from .base import AsyncGeneratorProvider, ProviderModelMixin

__all__ = ["AllenAI", "Conversation"]

_ORIGIN = "https://olmo-api.allen.ai"
_PATH = "/v4/message/stream"


class Conversation(JsonConversation):
    """State of one Ai2 thread: ``model``, ``messages`` (the history), ``parent`` (the
    last assistant reply's id) and ``x_anonymous_user_id`` (one per conversation: the
    server refuses follow-ups from another id)."""

    model: str
    messages: list[dict[str, str]]
    parent: str | None
    x_anonymous_user_id: str

    def __init__(
        self,
        model: str = "",
        messages: Iterable[Mapping[str, str]] | None = None,
        parent: str | None = None,
        x_anonymous_user_id: str | None = None,
    ) -> None:
        super().__init__(
            model=model,
            messages=[dict(m) for m in messages or ()],
            parent=parent,
            x_anonymous_user_id=x_anonymous_user_id or str(uuid4()),
        )

    def __repr__(self) -> str:
        # The anonymous id is what lets anyone post into this thread: keep it out of logs.
        return (f"Conversation(model={self.model!r}, parent={self.parent!r}, "
                f"x_anonymous_user_id='***', messages=<{len(self.messages or ())}>)")


class AllenAI(AsyncGeneratorProvider, ProviderModelMixin):
    """Ai2 Playground, anonymous access (no account, no cookies)."""

    label = "Ai2 Playground"
    url = "https://playground.allenai.org"
    login_url = None
    api_endpoint = _ORIGIN + _PATH
    # Nov 2025: /v4/message/stream was replaced by /v4/threads/ (which may demand a captcha
    # token), so this protocol no longer reaches a live model. Kept for self-hosted
    # olmo-api deployments and mirrors (base_url=), and tested against the emulator.
    working = False
    needs_auth = False
    supports_stream = True
    # text only; max_tokens and stop are sent to (and enforced by) the service
    capabilities = TEXT_ONLY

    default_model = "tulu3-405b"
    models: ClassVar[list[str]] = [
        default_model,
        "OLMo-2-1124-13B-Instruct",
        "tulu-3-1-8b",
        "Llama-3-1-Tulu-3-70B",
        "olmoe-0125",
        "olmo-2-0325-32b-instruct",
    ]
    model_aliases: ClassVar[dict[str, str]] = {
        "tulu-3-405b": default_model,
        "olmo-2-13b": "OLMo-2-1124-13B-Instruct",
        "tulu-3-1-8b": "tulu-3-1-8b",
        "tulu-3-70b": "Llama-3-1-Tulu-3-70B",
        # no "llama-3.1-*" aliases: these are Ai2's Tulu fine-tunes, not Meta's models
    }
    conversation_class = Conversation
    #: the server rejects a model sent with the wrong host (400); "modal" unless listed
    model_hosts: ClassVar[dict[str, str]] = {default_model: "inferd"}

    @classmethod
    def get_host(cls, model: str) -> str:
        """The inference host serving ``model`` (a model name after :meth:`get_model`)."""
        return cls.model_hosts.get(model, "modal")

    @classmethod
    async def create_async_generator(  # type: ignore[override]
        cls,
        model: str,
        messages: Messages | str,
        *,
        proxy: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        base_url: str | None = None,
        host: str | None = None,
        private: bool = True,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | Iterable[str] | None = None,
        conversation: Conversation | None = None,
        return_conversation: bool = False,
        **kwargs: Any,  # refused: see reject_unknown
    ) -> AsyncIterator[Chunk]:
        """Stream a reply: text deltas, then the updated :class:`Conversation` (with
        ``return_conversation=True``), then ``FinishReason``. Pass ``conversation=`` to
        continue a thread: only the last user message is sent then."""
        cls.reject_unknown(kwargs)
        name = cls.__name__
        model = cls.get_model(model or (conversation.model if conversation else None))
        continuing = conversation is not None and bool(conversation.parent)
        if continuing:
            prompt = get_last_user_message(messages)
            turn = [{"role": "user", "content": prompt}]
        else:
            prompt = format_prompt(messages)
            turn = [{"role": m["role"], "content": m["content"]}
                    for m in require_text_only(messages, name)]
        if conversation is None:
            conversation = Conversation(model)

        form = aiohttp.FormData(charset="utf-8")
        fields: list[tuple[str, Any]] = [
            ("model", model), ("host", host or cls.get_host(model)), ("content", prompt),
            ("private", "true" if private else "false"),
            ("parent", conversation.parent if continuing else None),
            ("temperature", temperature), ("top_p", top_p), ("max_tokens", max_tokens),
        ]
        fields += [("stop", s) for s in ([stop] if isinstance(stop, str) else stop or ())]
        for key, value in fields:
            if value is not None:
                # An explicit text part type makes FormData multipart (not urlencoded) on
                # every aiohttp version, and UTF-8 keeps Cyrillic/CJK/emoji intact.
                form.add_field(key, str(value), content_type="text/plain; charset=utf-8")
        headers = {
            "Accept": "*/*",
            "Origin": cls.url,
            "Referer": f"{cls.url}/",
            "X-Anonymous-User-ID": conversation.x_anonymous_user_id,
        }

        url = cls.resolve_base_url(base_url, _ORIGIN) + _PATH
        reply_id: str | None = None
        deltas: list[str] = []
        text = Surrogates()  # emoji may come as two \ud8xx escapes in two lines
        error: tuple[str, str] | None = None
        final: dict[str, Any] | None = None
        async with Session(name, proxy=proxy, headers=headers, timeout=timeout) as session:
            async with session.request("POST", url, data=form) as response:
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
            raise StreamError(f"{message} (reason: {reason})" if reason else message,
                              provider=name)
        tail = text.flush()
        if tail:
            deltas.append(tail)
            yield tail
        if final is None:
            raise ResponseError("the stream ended without its final message", provider=name)
        content = final.get("content")
        conversation.messages.extend(turn)
        conversation.messages.append(
            {"role": "assistant", "content": content if isinstance(content, str) and content
             else "".join(deltas)}
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
    return (pending or found or [None])[-1]
