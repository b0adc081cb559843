"""Replicate (``Replicate``): language models run as predictions, streamed over SSE.

Wire protocol: PROTOCOLS.md §4. ``POST /v1/models/{owner}/{name}/predictions`` with
``"stream": true`` creates a prediction (201); its ``urls.stream`` is then read as a
standard Server-Sent Events stream of ``output`` tokens ending with ``done``. A prediction
that is abandoned before ``done`` (early stop, cancellation, error) is cancelled with
``POST urls.cancel``, so it does not keep running — and billing — upstream.

The prediction names the URLs to follow, and they get the API token: they are followed
only to Replicate's own hosts or the configured base URL's origin (see
:func:`trusted_url`). A prediction naming any other host is refused with a
:class:`ResponseError` naming it, and nothing is sent there — not the stream request, not
the cancel on cleanup (which then goes to the API's own ``/v1/predictions/{id}/cancel``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import yarl

from ..errors import MissingAuthError, ResponseError, StreamError
from ..http.session import Session
from ..capabilities import TEXT_ONLY
from ..prompt import filter_none, format_prompt, require_text_only
from ..types import Chunk, FinishReason, Messages
from .base import AsyncGeneratorProvider, ProviderModelMixin, create_upstream, run_cleanup

__all__ = ["Replicate"]

_ORIGIN = "https://api.replicate.com"
_MODEL_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_TOKEN_ENV = "REPLICATE_API_TOKEN"

#: Where a prediction's ``urls`` may point, besides the configured base URL's origin
#: (https, port 443 only). ``get``/``cancel``: the API. ``stream``: the API and the hosts
#: Replicate streams from — ``stream.replicate.com`` (predictions since 2025), and the
#: ``stream*`` hosts of Replicate's ``replicate.net`` domain in older ones
#: (``stream-b.svc.<region>.c.replicate.net``, ``streaming-api.svc.us.c.replicate.net``).
_API_HOSTS = frozenset({"api.replicate.com"})
_STREAM_HOSTS = _API_HOSTS | {"stream.replicate.com"}
_STREAM_HOST = re.compile(r"stream[a-z0-9-]*(\.[a-z0-9-]+)*\.replicate\.net")


class Replicate(AsyncGeneratorProvider, ProviderModelMixin):
    """Replicate's HTTP API; needs an API token (``api_key=`` or ``REPLICATE_API_TOKEN``)."""

    label = "Replicate"
    url = "https://replicate.com"
    login_url = "https://replicate.com/account/api-tokens"
    api_endpoint = _ORIGIN + "/v1"
    working = True
    needs_auth = True
    supports_stream = True
    # text only; system messages become the model's ``system_prompt``, the history is
    # rendered into the prompt; max_new_tokens and stop_sequences are the model's inputs
    capabilities = TEXT_ONLY.with_(system_message=True)

    default_model = "meta/meta-llama-3-70b-instruct"
    models: ClassVar[list[str]] = [
        default_model,
        "meta/meta-llama-3-8b-instruct",
        "meta/meta-llama-3.1-405b-instruct",
        "mistralai/mixtral-8x7b-instruct-v0.1",
    ]

    #: upper bound, in seconds, for the best-effort cancel request sent on cleanup
    cancel_timeout: ClassVar[float] = 5.0

    @classmethod
    def accepts_model(cls, model: str) -> bool:
        """Replicate runs any public model: every ``owner/name`` is a valid name."""
        return bool(_MODEL_NAME.fullmatch(model))

    @classmethod
    async def create_async_generator(  # type: ignore[override]
        cls,
        model: str,
        messages: Messages | str,
        *,
        api_key: str | None = None,
        proxy: str | None = None,
        timeout: float = 180,
        base_url: str | None = None,
        system_prompt: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        stop: str | Sequence[str] | None = None,
        extra_data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,  # refused: see reject_unknown
    ) -> AsyncIterator[Chunk]:
        """Stream the answer of ``model`` (``owner/name``) as text deltas, then a
        :class:`FinishReason` (``"stop"``, or ``"canceled"`` when cancelled upstream).

        ``max_tokens`` is sent as ``max_new_tokens``; ``stop`` (a string or a list) as the
        comma-joined ``stop_sequences``; ``extra_data`` is merged into the model input.
        """
        cls.reject_unknown(kwargs)
        model = cls.get_model(model)
        api_key = api_key or os.environ.get(_TOKEN_ENV) or None
        if api_key is None:
            raise MissingAuthError(
                f"an API token is required: pass api_key= or set {_TOKEN_ENV} "
                f"(create one at {cls.login_url})",
                provider=cls.__name__,
            )
        prompt, system_prompt = _split_system(messages, system_prompt)
        if isinstance(stop, str):
            stop_sequences: str | None = stop or None
        else:
            stop_sequences = ",".join(stop) if stop else None
        body = {
            "stream": True,
            "input": {
                "prompt": prompt,
                **filter_none(
                    system_prompt=system_prompt,
                    max_new_tokens=max_tokens,
                    temperature=temperature,
                    top_p=top_p,
                    top_k=top_k,
                    stop_sequences=stop_sequences,
                ),
                **(extra_data or {}),
            },
        }
        # A fresh dict per call: the caller's mapping is never mutated or shared.
        request_headers = {
            "Accept": "application/json",
            **(headers or {}),
            "Authorization": f"Bearer {api_key}",
        }
        api = cls.resolve_base_url(base_url, _ORIGIN)
        endpoint = f"{api}/v1/models/{model}/predictions"
        name = cls.__name__
        async with Session(name, proxy=proxy, headers=request_headers, timeout=timeout) as session:
            prediction = await create_upstream(
                _create_prediction(session, endpoint, body, model),
                lambda made: _cancel(session, _cancel_url(made, api), cls.cancel_timeout),
                cls.cancel_timeout)
            urls = _urls(prediction)
            cancel_url = _cancel_url(prediction, api)
            finished = False
            try:
                if not isinstance(prediction, dict) or not prediction.get("id"):
                    raise ResponseError(
                        f"invalid prediction (no id): {json.dumps(prediction)[:300]}",
                        provider=name,
                    )
                stream_url = urls.get("stream")
                if not stream_url:
                    raise ResponseError(
                        f"model {model} cannot stream: its prediction has no urls.stream",
                        provider=name,
                    )
                if not trusted_url(stream_url, "stream", api):
                    raise _refused(stream_url, "stream", api, name)
                sse_headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
                async with session.request("GET", stream_url, headers=sse_headers) as stream:
                    async for event in session.sse(stream):
                        if event.event == "output":
                            if event.data:
                                yield event.data
                        elif event.event == "error":
                            finished = True  # the prediction failed: nothing to cancel
                            raise StreamError(
                                f"prediction failed: {_error_detail(event.data)}", provider=name
                            )
                        elif event.event == "done":
                            reason = _done_reason(event.data, name)
                            finished = True
                            if reason == "error":
                                raise StreamError("prediction failed", provider=name)
                            yield FinishReason("canceled" if reason == "canceled" else "stop")
                            return
                        # "logs" and unknown events carry no answer text
                raise ResponseError("stream ended before the done event", provider=name)
            finally:
                if not finished and cancel_url:
                    await _cancel(session, cancel_url, cls.cancel_timeout)


async def _create_prediction(session: Session, endpoint: str, body: dict[str, Any],
                             model: str) -> Any:
    # 404 here means the owner/name does not exist (or is not visible to us).
    async with session.request("POST", endpoint, json=body,
                               messages={404: f"Model not found: {model}"}) as response:
        return await session.read_json(response)


def _urls(prediction: Any) -> dict[str, str]:
    """The prediction's ``urls`` that are strings (``stream``, ``cancel``, ``get``)."""
    urls = prediction.get("urls") if isinstance(prediction, dict) else None
    if not isinstance(urls, dict):
        return {}
    return {k: v for k, v in urls.items() if isinstance(v, str) and v}


def trusted_url(url: str, kind: str, base: str) -> bool:
    """Whether the prediction's ``urls[kind]`` (``"stream"``, ``"cancel"``, ``"get"``) may
    be sent the API token: on the configured base URL's origin (scheme, host and port as
    given), or https on one of Replicate's hosts for that kind (:data:`_STREAM_HOSTS`,
    :data:`_API_HOSTS`). URLs with credentials or that do not parse are not."""
    target = _parse(url)
    if target is None or target.user is not None or target.password is not None:
        return False
    origin = _parse(base)
    if origin is not None and (target.scheme, target.host, target.port) == (
            origin.scheme, origin.host, origin.port):
        return True
    host = target.host or ""
    if target.scheme != "https" or target.port != 443:
        return False
    if kind == "stream":
        return host in _STREAM_HOSTS or bool(_STREAM_HOST.fullmatch(host))
    return host in _API_HOSTS


def _parse(url: str) -> yarl.URL | None:
    """``url`` as aiohttp will read it (so the check and the request agree), or None."""
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError):
        return None
    if not parsed.is_absolute() or not parsed.host or parsed.scheme not in ("http", "https"):
        return None
    return parsed


def _refused(url: str, kind: str, base: str, provider: str) -> ResponseError:
    target = _parse(url)
    where = str(target.origin()) if target is not None and target.user is None else "<unusable URL>"
    return ResponseError(
        f"refusing to follow the prediction's urls.{kind} to {where[:200]}: the API token "
        f"is only sent to Replicate's own hosts ({', '.join(sorted(_STREAM_HOSTS))}, "
        f"stream*.replicate.net) and the configured base URL's origin {_origin(base)}",
        provider=provider)


def _origin(base: str) -> str:
    parsed = _parse(base)
    return str(parsed.origin()) if parsed is not None else base


def _cancel_url(prediction: Any, api: str) -> str | None:
    """Where to cancel ``prediction``: its ``urls.cancel`` when that may be followed; if
    it names another host, the API's own cancel endpoint for the prediction's id (the
    prediction was made there); None when it gives no cancel URL."""
    url = _urls(prediction).get("cancel")
    if not url:
        return None
    if trusted_url(url, "cancel", api):
        return url
    ident = prediction.get("id") if isinstance(prediction, dict) else None
    if not isinstance(ident, str) or not ident:
        return None
    return f"{api}/v1/predictions/{quote(ident, safe='')}/cancel"


def _split_system(messages: Messages | str, system_prompt: str | None) -> tuple[str, str | None]:
    """The prompt, and the system prompt: ``system_prompt`` plus any system messages,
    which models on Replicate take as a separate input."""
    items = require_text_only(messages)
    system = [m["content"] for m in items if m["role"] == "system"]
    rest = [m for m in items if m["role"] != "system"]
    if not system or not rest:
        return format_prompt(items), system_prompt
    parts = ([system_prompt] if system_prompt else []) + system
    return format_prompt(rest), "\n".join(parts)


def _error_detail(data: str) -> str:
    """The ``detail`` of an ``error`` event; data that is not the usual JSON is the text."""
    try:
        value = json.loads(data)
    except ValueError:
        return data.strip() or "unknown error"
    if isinstance(value, dict) and value.get("detail"):
        return str(value["detail"])
    return data.strip() or "unknown error"


def _done_reason(data: str, provider: str) -> str:
    """The ``reason`` of a ``done`` event (``""`` for a normal end)."""
    if not data.strip():
        return ""
    try:
        value = json.loads(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ResponseError(f"malformed done event: {data[:200]!r}", provider=provider)
    return str(value.get("reason") or "")


async def _cancel(session: Session, url: str | None, limit: float) -> None:
    """Best-effort ``POST urls.cancel``, bounded by ``limit`` seconds and shielded from
    the caller's cancellation; failures are ignored (the caller is already ending, with
    its own result or error). No URL: nothing to cancel."""
    if not url:
        return

    async def post() -> None:
        async with session.request("POST", url, check=False):
            pass

    try:
        await run_cleanup(post(), limit)
    except Exception:  # noqa: BLE001 - cleanup must not replace the real outcome
        pass
