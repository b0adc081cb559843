"""OpenAssistant (open-assistant.io): LAION's chat, authenticated by a browser session cookie.

Wire protocol: PROTOCOLS.md §2. Each answer is a five-step flow: create a chat, post the
prompt as a prompter message, request an assistant message (model and sampling
parameters), read its event stream, and delete the chat — the delete always, whatever
happened in between, so no chat is left behind upstream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from ..capabilities import TEXT_ONLY
from ..cookies import ENV_VAR, cookies_dir, load_cookies
from ..errors import (
    InvalidRequestError,
    LLMplexError,
    MissingAuthError,
    ResponseError,
    StreamError,
)
from ..http.session import DEFAULT_TIMEOUT, Session, json_object
from ..prompt import format_prompt
from ..surrogates import Surrogates, fix_surrogates
from ..types import Chunk, FinishReason, Messages
from .base import (
    AsyncGeneratorProvider,
    ProviderModelMixin,
    create_upstream,
    run_cleanup,
)

__all__ = ["OpenAssistant"]

log = logging.getLogger("llmplex.providers.openassistant")

_ORIGIN = "https://open-assistant.io"
_DOMAIN = "open-assistant.io"
_SESSION_COOKIE = "__Secure-next-auth.session-token"
DELETE_TIMEOUT = 10.0  # seconds the DELETE may take: cleanup must never hang a caller

# The values the original client sent (top_p and typical_p null: the model's default).
DEFAULT_SAMPLING: dict[str, float | int | None] = {
    "top_k": 50,
    "top_p": None,
    "typical_p": None,
    "temperature": 0.35,
    "repetition_penalty": 1.1111111111111112,
    "max_new_tokens": 1024,
}

# The status alone says little when the body is empty: explain what it means here.
_EMPTY_BODY_MESSAGES = {
    401: "the session cookie was refused: log in to open-assistant.io again and re-export it",
    403: "the session cookie was refused (missing, expired or banned): log in to "
    "open-assistant.io again and re-export its cookies",
    404: "the chat feature is disabled on this server",
}


class OpenAssistant(AsyncGeneratorProvider, ProviderModelMixin):
    """Open Assistant chat with a logged-in session (``cookies=`` or the cookie file)."""

    label = "Open Assistant"
    url = _ORIGIN
    login_url = _ORIGIN + "/auth/signin"
    api_endpoint = _ORIGIN + "/api/chat"
    # The hosted service closed in October 2023 (open-assistant.io is read-only), so no
    # live model answers; the protocol is kept for self-hosted deployments (base_url=).
    working = False
    needs_auth = True
    supports_stream = True
    # text only; the service takes no stop sequences (the client enforces them)
    capabilities = TEXT_ONLY.with_(stop=False)

    default_model = "OA_SFT_Llama_30B_6"
    models: ClassVar[list[str]] = [
        default_model,
        "OA_SFT_Llama_30B_7",
        "OA_SFT_Llama2_70B_10",
        "OA_SFT_CodeLlama_13B_10",
        "OA_SFT_Pythia_12B_4",
    ]

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages | str,
        *,
        cookies: Mapping[str, str] | None = None,
        proxy: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        base_url: str | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        typical_p: float | None = None,
        temperature: float | None = None,
        repetition_penalty: float | None = None,
        max_new_tokens: int | None = None,
        max_tokens: int | None = None,
        **kwargs: Any,  # refused: see reject_unknown
    ) -> AsyncIterator[Chunk]:
        """Stream the answer as text deltas, then ``FinishReason("stop")``.

        Sampling options left ``None`` take :data:`DEFAULT_SAMPLING`; ``max_tokens`` (the
        OpenAI-style name the client passes) stands for ``max_new_tokens``. ``cookies`` defaults
        to the user's cookie file (:func:`llmplex.cookies.load_cookies`).
        """
        cls.reject_unknown(kwargs)
        model = cls.get_model(model)
        prompt = format_prompt(messages)
        given = {
            "top_k": top_k,
            "top_p": top_p,
            "typical_p": typical_p,
            "temperature": temperature,
            "repetition_penalty": repetition_penalty,
            "max_new_tokens": max_new_tokens if max_new_tokens is not None else max_tokens,
        }
        sampling = {k: v if v is not None else DEFAULT_SAMPLING[k] for k, v in given.items()}
        try:
            jar = dict(cookies) if cookies is not None else load_cookies(_DOMAIN)
        except InvalidRequestError as exc:  # a malformed cookie file: say who needed it
            raise InvalidRequestError(exc.message, provider=cls.__name__) from None
        if not jar:
            raise MissingAuthError(_missing_cookies_message(), provider=cls.__name__)
        api = cls.resolve_base_url(base_url, _ORIGIN) + "/api/chat"
        async with Session(
            cls.__name__,
            proxy=proxy,
            cookies=jar,
            timeout=timeout,
            headers={"Accept": "application/json"},
        ) as session:
            chat_id = await create_upstream(
                _create_chat(session, api),
                lambda made: _delete(session, api, made, strict=False),
                DELETE_TIMEOUT + 1,
            )
            finished = False
            try:
                prompter = await _call(
                    session,
                    "POST",
                    api + "/prompter_message",
                    json={"chat_id": chat_id, "content": prompt, "parent_id": None},
                )
                assistant = await _call(
                    session,
                    "POST",
                    api + "/assistant_message",
                    json={
                        "chat_id": chat_id,
                        "parent_id": _field(prompter, "id", "prompter message"),
                        "model_config_name": model,
                        "sampling_parameters": sampling,
                        "plugins": [],
                    },
                )
                params = {
                    "chat_id": chat_id,
                    "message_id": _field(assistant, "id", "assistant message"),
                }
                async with session.request(
                    "POST",
                    api + "/events",
                    params=params,
                    explain=_EMPTY_BODY_MESSAGES,
                    headers={"Accept": "text/event-stream"},
                ) as response:
                    streamed = False
                    pieces = Surrogates()  # emoji may come as two \ud8xx escapes in two events
                    async for event in session.sse(response):
                        data = json_object(event.data, session.provider)
                        kind = data.get("event_type")
                        if kind == "token" and isinstance(data.get("text"), str):
                            streamed = True
                            piece = pieces.feed(data["text"])
                            if piece:
                                yield piece
                        elif kind == "message":
                            text = _final_text(data.get("message"), session.provider)
                            if text and not streamed:  # a server that sent no tokens
                                yield fix_surrogates(text)
                            tail = pieces.flush()
                            if tail:
                                yield tail
                            yield FinishReason("stop")
                            finished = True
                            return
                        elif kind == "error":
                            raise StreamError(
                                f"error event: {data.get('error') or 'unknown'}",
                                provider=session.provider,
                            )
                        # pending, safe_prompt, plugin_intermediate: progress, not text
                raise ResponseError(
                    "the event stream ended before the answer was complete",
                    provider=session.provider,
                )
            finally:
                await run_cleanup(
                    _delete(session, api, chat_id, strict=finished), DELETE_TIMEOUT + 1
                )  # _delete bounds itself first


def _missing_cookies_message() -> str:
    return (
        f"no cookies for {_DOMAIN}: the service needs a logged-in session cookie "
        f"({_SESSION_COOKIE}). Pass cookies={{...}}, or export your browser's cookies for "
        f"{_DOMAIN} (Netscape cookies.txt or JSON) to {cookies_dir() / (_DOMAIN + '.txt')} "
        f"or {cookies_dir() / (_DOMAIN + '.json')}; set {ENV_VAR} to use another directory"
    )


async def _create_chat(session: Session, api: str) -> str:
    return _field(await _call(session, "POST", api), "id", "chat")


async def _call(session: Session, method: str, url: str, **kwargs: Any) -> Any:
    async with session.request(method, url, explain=_EMPTY_BODY_MESSAGES, **kwargs) as response:
        return await session.read_json(response)


def _field(data: Any, key: str, what: str) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise ResponseError(f"the {what} response has no {key!r}", provider="OpenAssistant")
    return value


def _final_text(message: Any, provider: str) -> str:
    """The final message's content; a state other than ``complete`` is a failure."""
    if not isinstance(message, dict):
        return ""
    state = message.get("state", "complete")
    if state != "complete":
        raise StreamError(f"the answer ended in state {state!r}", provider=provider)
    content = message.get("content")
    return content if isinstance(content, str) else ""


async def _delete(session: Session, api: str, chat_id: str, *, strict: bool) -> None:
    """Delete the chat. A failure is raised after a complete answer (``strict``), else
    only logged: it must not replace the error or cancellation already under way."""
    try:
        async with asyncio.timeout(DELETE_TIMEOUT):
            async with session.request(
                "DELETE", api, params={"chat_id": chat_id}, explain=_EMPTY_BODY_MESSAGES
            ) as response:
                await response.read()
    except (LLMplexError, TimeoutError) as exc:
        if strict:
            if isinstance(exc, LLMplexError):
                raise
            raise ResponseError("deleting the chat timed out", provider=session.provider) from None
        log.warning("OpenAssistant: could not delete chat %s: %s", chat_id, exc)


# -- provider spec: what the registry, config, the server and --emulate know of OpenAssistant --
from .spec import ProviderSpec  # noqa: E402  (kept with the spec, a block of its own)

#: OpenAssistant's facts for the registry (:mod:`llmplex.providers.spec`)
SPEC = ProviderSpec(
    name="OpenAssistant",
    provider=f"{__name__}:OpenAssistant",
    label=OpenAssistant.label,
    base_url=_ORIGIN,
    key_env=(),
    capabilities=OpenAssistant.capabilities,
    models=tuple(OpenAssistant.models),
    aliases=OpenAssistant.model_aliases,
    emulator="llmplex.emulators.openassistant:OpenAssistantEmulator",
    emulator_options={"cookies": {"next-auth.session-token": "emulated-session"}},
)
