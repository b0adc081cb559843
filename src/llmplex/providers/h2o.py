"""H2O gpt-gm (``H2o``): Falcon and LLaMA models behind huggingface/chat-ui + TGI.

Wire protocol: PROTOCOLS.md §3. One cookie session (``hf-chat``) per call: accept the
welcome modal (``POST /settings``), create a conversation, stream the TGI tokens of one
``POST /conversation/{id}``, and delete the conversation again in ``finally``. History
travels inside the prompt (``inputs``), so every call is self-contained.

The flow itself lives in :meth:`H2o.stream_prompt`, shared with the legacy synchronous
module :mod:`llmplex.providers.legacy.h2o` (which only differs in its prompt and in
fetching ``/`` first).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, ClassVar
from uuid import uuid4

from ..capabilities import TEXT_ONLY
from ..errors import ResponseError, StreamError
from ..http.session import DEFAULT_TIMEOUT, Session, json_object
from ..prompt import format_prompt
from ..surrogates import Surrogates
from ..types import Chunk, FinishReason, Messages
from .base import (
    CLEANUP_TIMEOUT,
    AsyncGeneratorProvider,
    ProviderModelMixin,
    create_upstream,
    run_cleanup,
)

__all__ = ["H2o", "DEFAULT_PARAMETERS", "build_parameters"]

_ORIGIN = "https://gpt-gm.h2o.ai"
_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
#: the DELETE of the conversation must not hang the caller's exit (or its cancellation)

#: TGI generation parameters sent when the caller gives none (PROTOCOLS.md §3)
DEFAULT_PARAMETERS: dict[str, Any] = {
    "temperature": 0.4,
    "truncate": 2048,
    "max_new_tokens": 1024,
    "do_sample": True,
    "repetition_penalty": 1.2,
    "return_full_text": False,
}
# Every other TGI parameter a caller may set; nothing outside these reaches the body.
_OPTIONAL_PARAMETERS = ("top_p", "top_k", "typical_p", "stop", "seed")
# TGI's finish reasons -> ours.
_FINISH = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}


def build_parameters(options: Mapping[str, Any]) -> dict[str, Any]:
    """TGI ``parameters`` from keyword options: the defaults, overridden by known keys.

    ``max_tokens`` is an alias of ``max_new_tokens``; ``None`` means "use the default";
    anything else in ``options`` (``stream``, ``timeout``, other providers' options) is
    ignored, never sent.
    """
    parameters = dict(DEFAULT_PARAMETERS)
    if options.get("max_new_tokens") is None and options.get("max_tokens") is not None:
        parameters["max_new_tokens"] = options["max_tokens"]
    for key in (*DEFAULT_PARAMETERS, *_OPTIONAL_PARAMETERS):
        if options.get(key) is not None:
            parameters[key] = options[key]
    if isinstance(parameters.get("stop"), str):
        parameters["stop"] = [parameters["stop"]]  # TGI wants a list of stop sequences
    return parameters


class H2o(AsyncGeneratorProvider, ProviderModelMixin):
    """H2O.ai's gpt-gm chat (a chat-ui v0.5 fork), anonymous: no account needed."""

    label = "H2O gpt-gm"
    url = _ORIGIN
    api_endpoint = _ORIGIN + "/conversation"
    # gpt-gm.h2o.ai has been shut down. The protocol is kept for self-hosted chat-ui
    # deployments of that era (base_url=) and is tested against the emulator.
    working = False
    needs_auth = False
    supports_stream = True
    # text only; system messages become "System: ..." prompt lines; TGI enforces
    # max_new_tokens and stop itself
    capabilities = TEXT_ONLY.with_(system_message=True)

    default_model = "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1"
    models: ClassVar[list[str]] = [
        default_model,
        "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3",
        "h2oai/h2ogpt-gm-oasst1-en-2048-open-llama-13b",
    ]
    #: the short names of the legacy module
    model_aliases: ClassVar[dict[str, str]] = {
        "falcon-40b": default_model,
        "falcon-7b": "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3",
        "llama-13b": "h2oai/h2ogpt-gm-oasst1-en-2048-open-llama-13b",
    }

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages | str,
        *,
        proxy: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        base_url: str | None = None,
        temperature: float | None = None,
        truncate: int | None = None,
        max_new_tokens: int | None = None,
        max_tokens: int | None = None,
        do_sample: bool | None = None,
        repetition_penalty: float | None = None,
        return_full_text: bool | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        typical_p: float | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        **kwargs: Any,  # refused: see reject_unknown
    ) -> AsyncIterator[Chunk]:
        """Stream the answer's text tokens, then a ``FinishReason``.

        Generation options: ``temperature``, ``truncate``, ``max_new_tokens`` (alias
        ``max_tokens``), ``do_sample``, ``repetition_penalty``, ``return_full_text``,
        ``top_p``, ``top_k``, ``typical_p``, ``stop``, ``seed``.
        """
        cls.reject_unknown(kwargs)
        options = dict(
            temperature=temperature,
            truncate=truncate,
            max_new_tokens=max_new_tokens,
            max_tokens=max_tokens,
            do_sample=do_sample,
            repetition_penalty=repetition_penalty,
            return_full_text=return_full_text,
            top_p=top_p,
            top_k=top_k,
            typical_p=typical_p,
            stop=stop,
            seed=seed,
        )
        stream = cls.stream_prompt(
            cls.get_model(model),
            format_prompt(messages),
            build_parameters(options),
            proxy=proxy,
            timeout=timeout,
            base_url=base_url,
        )
        async with aclosing(stream) as chunks:
            async for chunk in chunks:
                yield chunk

    @classmethod
    async def stream_prompt(
        cls,
        model: str,
        prompt: str,
        parameters: Mapping[str, Any],
        *,
        proxy: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        base_url: str | None = None,
        get_root_first: bool = False,
    ) -> AsyncGenerator[Chunk, None]:
        """The whole exchange for a ready ``prompt`` and resolved ``model`` id.

        ``get_root_first`` fetches ``/`` before anything else, as the legacy module did
        to obtain its session cookie (the cookie comes with any answer, so it is optional).
        """
        origin = cls.resolve_base_url(base_url, _ORIGIN)
        # chat-ui refuses form POSTs without a same-origin Referer (CSRF), and ties the
        # settings and the conversation to the hf-chat cookie: one Session for everything.
        headers = {
            "Accept": "*/*",
            "Origin": origin,
            "Referer": origin + "/",
            "User-Agent": _USER_AGENT,
        }
        async with Session(cls.__name__, proxy=proxy, headers=headers, timeout=timeout) as session:
            if get_root_first:
                async with session.request("GET", origin + "/") as response:
                    await response.read()
            await cls._accept_settings(session, origin, model)
            conversation_id = await create_upstream(
                _create_conversation(session, origin, model),
                lambda made: _delete(session, f"{origin}/conversation/{made}"),
                min(timeout or CLEANUP_TIMEOUT, CLEANUP_TIMEOUT),
            )
            url = f"{origin}/conversation/{conversation_id}"
            body = {
                "inputs": prompt,
                "parameters": dict(parameters),
                "stream": True,
                "options": {
                    "id": str(uuid4()),
                    "response_id": str(uuid4()),
                    "is_retry": False,
                    "use_cache": False,
                    "web_search_id": "",
                },
            }
            max_new_tokens = parameters.get("max_new_tokens")
            try:
                async with session.request("POST", url, json=body) as response:
                    count = 0
                    text = Surrogates()  # emoji may come as two \ud8xx escapes in two events
                    async for event in session.sse(response):
                        data = _parse_event(event.data, cls.__name__)
                        token = data.get("token") or {}
                        count += 1
                        if not token.get("special") and token.get("text"):
                            piece = text.feed(token["text"])
                            if piece:
                                yield piece
                        if data.get("generated_text") is not None:
                            tail = text.flush()
                            if tail:
                                yield tail
                            yield FinishReason(_finish_reason(data, count, max_new_tokens))
                            return
                raise ResponseError(
                    "the stream ended before the answer was complete", provider=cls.__name__
                )
            finally:
                try:
                    await run_cleanup(
                        _delete(session, url), min(timeout or CLEANUP_TIMEOUT, CLEANUP_TIMEOUT)
                    )
                except TimeoutError:
                    pass  # best effort: the server drops idle conversations anyway

    @classmethod
    async def _accept_settings(cls, session: Session, origin: str, model: str) -> None:
        """Accept the welcome modal: until then chat-ui answers 405 to every POST."""
        form = {
            "ethicsModalAccepted": "true",
            "shareConversationsWithModelAuthors": "true",
            "activeModel": model,
        }
        # A SvelteKit form action answers */* with a JSON redirect and text/html with a
        # real 303: both mean success, so redirects are not followed.
        async with session.request(
            "POST", origin + "/settings", data=form, allow_redirects=False
        ) as response:
            if response.status >= 300 or response.content_type != "application/json":
                return
            answer = await session.read_json(response)
        if isinstance(answer, dict) and answer.get("type") in ("error", "failure"):
            raise ResponseError(
                f"settings refused: {json.dumps(answer)[:200]}", provider=cls.__name__
            )


def _parse_event(raw: str, provider: str) -> dict[str, Any]:
    """One TGI stream event as a dict; an error event raises :class:`StreamError`."""
    data = json_object(raw, provider)
    if "error" in data:
        kind = data.get("error_type") or "unknown"
        raise StreamError(f"{kind} error: {data['error']}", provider=provider, body=raw[:1000])
    return data


def _finish_reason(event: Mapping[str, Any], tokens: int, max_new_tokens: Any) -> str:
    details = event.get("details")
    if isinstance(details, dict) and details.get("finish_reason"):
        return _FINISH.get(details["finish_reason"], "stop")
    if (event.get("token") or {}).get("special"):
        return "stop"  # ended on the end-of-sequence token
    # Without details, a last ordinary token means the token budget ran out.
    return "length" if isinstance(max_new_tokens, int) and tokens >= max_new_tokens else "stop"


async def _create_conversation(session: Session, origin: str, model: str) -> str:
    created = await session.json("POST", origin + "/conversation", json={"model": model})
    conversation_id = created.get("conversationId") if isinstance(created, dict) else None
    if not isinstance(conversation_id, str) or not conversation_id:
        raise ResponseError(
            f"no conversationId in {str(created)[:200]!r}", provider=session.provider
        )
    return conversation_id


async def _delete(session: Session, url: str) -> None:
    try:
        async with session.request("DELETE", url, check=False) as response:
            await response.read()
    except Exception:  # best effort: a failed cleanup must not hide the real outcome
        pass


# -- provider spec: what the registry, config, the server and --emulate know of H2o --
from .spec import ProviderSpec  # noqa: E402  (kept with the spec, a block of its own)

#: H2o's facts for the registry (:mod:`llmplex.providers.spec`)
SPEC = ProviderSpec(
    name="H2o",
    provider=f"{__name__}:H2o",
    label=H2o.label,
    base_url=_ORIGIN,
    key_env=(),
    capabilities=H2o.capabilities,
    models=tuple(H2o.models),
    aliases=H2o.model_aliases,
    emulator="llmplex.emulators.h2o:H2oEmulator",
    emulator_options={},
)
