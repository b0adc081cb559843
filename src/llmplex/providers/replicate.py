"""Replicate (``Replicate``): language models run as predictions.

Wire protocol: PROTOCOLS.md §4 (and its 2026 additions). Each model's schema is read first
(:mod:`.replicate_schema`) and the request mapped onto the inputs it declares
(:mod:`.replicate_input`). ``POST /v1/models/{owner}/{name}/predictions`` (``POST
/v1/predictions`` with a pinned ``version``) creates a prediction (201), with
``Cancel-After`` from the answer's total deadline. A model whose output streams is read
from ``urls.stream``, a standard Server-Sent Events stream of ``output`` tokens ending with
``done``; another is created with ``Prefer: wait`` and polled at ``urls.get`` until it is
done. A prediction that is abandoned before its end (early stop, cancellation, error) is
cancelled with ``POST urls.cancel``, so it does not keep running — and billing — upstream.

The prediction names the URLs to follow, and they get the API token: they are followed
only to Replicate's own hosts or the configured base URL's origin (see
:func:`trusted_url`). A prediction naming any other host is refused with a
:class:`ResponseError` naming it, and nothing is sent there — not the stream request, not
the cancel on cleanup (which then goes to the API's own ``/v1/predictions/{id}/cancel``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, ClassVar
from urllib.parse import quote

import yarl

from ..capabilities import TEXT_ONLY, Capabilities
from ..errors import InvalidRequestError, MissingAuthError, ResponseError, StreamError
from ..events import Usage
from ..http.session import Session
from ..prompt import filter_none
from ..types import Chunk, FinishReason, Messages
from .base import (
    AsyncGeneratorProvider,
    ProviderModelMixin,
    create_upstream,
    run_cleanup,
)
from .replicate_input import build_input
from .replicate_models import ModelSchema
from .replicate_output import OutputReader
from .replicate_schema import SchemaCache

__all__ = ["Replicate"]

_ORIGIN = "https://api.replicate.com"
_MODEL_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(:[0-9A-Za-z]+)?")
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
    """Replicate's HTTP API; needs an API token (``api_key=`` or ``REPLICATE_API_TOKEN``).

    Each model is sent the inputs its own schema declares (:mod:`.replicate_input`),
    read once per model and version (:mod:`.replicate_schema`). A model whose output
    streams is read from ``urls.stream``; another is waited for (``Prefer: wait``) and
    polled at ``urls.get``. Either way a prediction not finished when the caller stops —
    early, by cancellation, on an error — is cancelled.
    """

    label = "Replicate"
    url = "https://replicate.com"
    login_url = "https://replicate.com/account/api-tokens"
    api_endpoint = _ORIGIN + "/v1"
    working = True
    needs_auth = True
    supports_stream = True
    # A model whose schema is not known yet: text, its system text handled (its own input
    # or the prompt), max_tokens taken by almost every model; stop left to the client.
    # Known models answer with their own (capabilities_for).
    capabilities = TEXT_ONLY.with_(system_message=True, stop=False)

    default_model = "meta/meta-llama-3-70b-instruct"
    # Listed (routed to by name alone); every other owner/name is served when asked for
    # as "replicate:owner/name", and the families of FAMILIES have known capabilities.
    models: ClassVar[list[str]] = [
        default_model,
        "meta/meta-llama-3-8b-instruct",
        "meta/meta-llama-3.1-405b-instruct",
        "mistralai/mixtral-8x7b-instruct-v0.1",
    ]

    #: upper bound, in seconds, for the best-effort cancel request sent on cleanup
    cancel_timeout: ClassVar[float] = 5.0
    #: seconds a create request of a model that does not stream waits for the answer
    #: (``Prefer: wait=N``); short, so that a caller cancelled meanwhile still learns the
    #: prediction's id (within ``cancel_timeout`` more) and cancels it
    wait_seconds: ClassVar[int] = 5
    #: seconds between two looks at a prediction that is not done
    poll_interval: ClassVar[float] = 0.5
    #: the models' schemas (memory and disk; ``schemas.clear()`` forgets the first)
    schemas: ClassVar[SchemaCache] = SchemaCache()

    @classmethod
    def accepts_model(cls, model: str) -> bool:
        """Replicate runs any public model: every ``owner/name`` is a valid name, and
        ``owner/name:version`` pins a version."""
        return bool(_MODEL_NAME.fullmatch(model))

    @classmethod
    def capabilities_for(cls, model: str | None) -> Capabilities:
        """The model's own capabilities (native ``tools``, images, which limits it
        enforces...), from its schema when one was read, else llmplex's table of known
        models (:data:`FAMILIES`), else :attr:`capabilities`."""
        name = model or cls.default_model
        schema = cls.schemas.latest(name) or ModelSchema.known(name)
        return schema.capabilities() if schema is not None else cls.capabilities

    @classmethod
    def why_missing(cls, param: str, model: str | None) -> str | None:
        """The model's inputs, when its schema is known and lacks ``param``."""
        name = model or cls.default_model
        schema = cls.schemas.latest(name) or ModelSchema.known(name)
        if schema is None or param not in schema.capabilities().unsupported:
            return None
        inputs = ", ".join(sorted(schema.inputs))
        return f"model {name} has no input for it; its inputs are: {inputs}"

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages | str,
        *,
        api_key: str | None = None,
        proxy: str | None = None,
        timeout: float = 180,
        total_timeout: float | None = None,
        base_url: str | None = None,
        system_prompt: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        presence_penalty: float | None = None,
        frequency_penalty: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        reasoning_effort: str | None = None,
        verbosity: str | None = None,
        extra_data: Mapping[str, Any] | None = None,
        schema: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,  # refused: see reject_unknown
    ) -> AsyncIterator[Chunk]:
        """Stream the answer of ``model`` (``owner/name`` or ``owner/name:version``) as
        text deltas (and reasoning, tool calls, usage), then a :class:`FinishReason`
        (``"stop"``, ``"tool_calls"``, or ``"canceled"`` when cancelled upstream).

        Options go to the model's own inputs (``max_tokens`` as its ``max_tokens``,
        ``max_completion_tokens`` or ``max_new_tokens``...); one it has no input for is an
        :class:`InvalidRequestError` naming its inputs. ``extra_data`` is merged into the
        input as given (each key must be an input of the model). ``schema``: the model's
        schema (its ``openapi_schema``, version or model JSON), instead of reading it.
        ``total_timeout``: seconds the answer may take; Replicate cancels the prediction
        then (``Cancel-After``), should llmplex be unable to.
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
        given = None
        if schema is not None:
            try:
                given = ModelSchema.parse(model, schema)
            except (ValueError, AttributeError, TypeError) as exc:
                raise InvalidRequestError(
                    f"schema: {exc}", param="schema", provider=cls.__name__
                ) from None
        options = filter_none(
            system_prompt=system_prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
            seed=seed,
            stop=stop,
            tools=tools,
            tool_choice=tool_choice,
            reasoning_effort=reasoning_effort,
            verbosity=verbosity,
        )
        if given is not None:  # a bad request is refused before anything is sent
            build_input(given, messages, options, extra_data)
        # A fresh dict per call: the caller's mapping is never mutated or shared.
        request_headers = {
            "Accept": "application/json",
            **(headers or {}),
            "Authorization": f"Bearer {api_key}",
        }
        api = cls.resolve_base_url(base_url, _ORIGIN)
        name = cls.__name__
        async with Session(name, proxy=proxy, headers=request_headers, timeout=timeout) as session:
            found = given or await cls.schemas.get(session, api, model)
            body: dict[str, Any] = {"input": build_input(found, messages, options, extra_data)}
            path, _, version = model.partition(":")
            if version:
                endpoint = f"{api}/v1/predictions"
                body = {"version": version, **body}
            else:
                endpoint = f"{api}/v1/models/{path}/predictions"
            create_headers = {}
            if total_timeout is not None and math.isfinite(total_timeout):
                create_headers["Cancel-After"] = f"{max(1, math.ceil(total_timeout))}s"
            if not found.streams:
                create_headers["Prefer"] = f"wait={cls.wait_seconds}"
            undo_within = cls.cancel_timeout + (0 if found.streams else cls.wait_seconds)
            prediction = await create_upstream(
                _create_prediction(session, endpoint, body, model, create_headers),
                lambda made: _cancel(session, _cancel_url(made, api), cls.cancel_timeout),
                undo_within,
            )
            cancel_url = _cancel_url(prediction, api)
            reader = OutputReader(tools="tools" in body["input"])
            run = _Run(session, api, name, prediction)
            end: FinishReason | None = None
            try:
                if not isinstance(prediction, dict) or not prediction.get("id"):
                    raise ResponseError(
                        f"invalid prediction (no id): {json.dumps(prediction)[:300]}",
                        provider=name,
                    )
                stream_url = _urls(prediction).get("stream") if found.streams else None
                if stream_url:
                    if not trusted_url(stream_url, "stream", api):
                        raise _refused(stream_url, "stream", api, name)
                    # The stream read here, not through a generator of its own: one layer
                    # less per chunk (_Run.event says what the other events mean).
                    async with session.request("GET", stream_url, headers=_SSE_HEADERS) as response:
                        async for event in session.sse(response):
                            if event.event == "output":
                                piece = event.data
                                if not piece:
                                    continue
                                if reader.state == "text":  # the fast path: answer text
                                    yield piece
                                    continue
                                for chunk in reader.feed(piece):
                                    yield chunk
                            else:
                                end = run.event(event)
                                if end is not None:
                                    break
                else:  # the model does not stream: wait for the whole answer
                    pieces = run.poll(cls.poll_interval)
                    async with aclosing(pieces):  # its request ends with it, however it ends
                        async for item in pieces:
                            if not isinstance(item, str):
                                end = item
                                break
                            if reader.state == "text":
                                yield item
                                continue
                            for chunk in reader.feed(item):
                                yield chunk
                if end is None:
                    raise ResponseError("stream ended before the done event", provider=name)
                for chunk in reader.end(complete=end.reason == "stop"):
                    yield chunk
                if not (reader.called and end.reason == "stop"):
                    yield end  # (a tool call's answer gave its own: tool_calls)
                usage = await run.usage(cls.cancel_timeout)
                if usage is not None:
                    yield usage
            finally:
                if not run.finished and cancel_url:
                    await _cancel(session, cancel_url, cls.cancel_timeout)


_SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-store"}


class _Run:
    """Following one prediction to its end: its stream, or its state polled."""

    def __init__(self, session: Session, api: str, provider: str, prediction: Any) -> None:
        self.session = session
        self.api = api
        self.provider = provider
        self.prediction = prediction
        self.finished = False  # done upstream (succeeded, failed, canceled): nothing to cancel

    def get_url(self) -> str:
        url = _urls(self.prediction).get("get")
        if url and trusted_url(url, "get", self.api):
            return url
        return f"{self.api}/v1/predictions/{quote(str(self.prediction['id']), safe='')}"

    def event(self, event: Any) -> FinishReason | None:
        """A stream event other than ``output``: the finish reason at ``done``, an error
        raised at ``error`` (or a ``done`` saying so); ``logs`` and unknown events carry
        no answer text (None)."""
        if event.event == "error":
            self.finished = True  # the prediction failed: nothing to cancel
            raise StreamError(
                f"prediction failed: {_error_detail(event.data)}", provider=self.provider
            )
        if event.event == "done":
            reason = _done_reason(event.data, self.provider)
            self.finished = True
            if reason == "error":
                raise StreamError("prediction failed", provider=self.provider)
            return FinishReason("canceled" if reason == "canceled" else "stop")
        return None

    async def poll(self, interval: float) -> AsyncGenerator[str | FinishReason, None]:
        """The output of a prediction that does not stream (or gave no stream URL): as
        the create call answered, then ``urls.get`` until it is done; output that grows
        meanwhile (a list of tokens) comes as it grows."""
        said = ""
        while True:
            prediction = self.prediction
            if not isinstance(prediction, dict):
                raise ResponseError(
                    f"invalid prediction: {str(prediction)[:200]!r}", provider=self.provider
                )
            text = _output_text(prediction.get("output"))
            if text.startswith(said) and len(text) > len(said):
                yield text[len(said) :]
                said = text
            status = prediction.get("status")
            if status in ("succeeded", "failed", "canceled"):
                self.finished = True
                if status == "failed":
                    detail = prediction.get("error") or "unknown error"
                    raise StreamError(f"prediction failed: {detail}", provider=self.provider)
                yield FinishReason("stop" if status == "succeeded" else "canceled")
                return
            await asyncio.sleep(interval)
            async with self.session.request("GET", self.get_url()) as response:
                self.prediction = {**prediction, **(await self.session.read_json(response))}

    async def usage(self, limit: float) -> Usage | None:
        """Token counts from the prediction's ``metrics`` (read once more, briefly, when
        the prediction at hand has none: a stream's end says nothing of them)."""
        metrics = self.prediction.get("metrics") if isinstance(self.prediction, dict) else None
        if not isinstance(metrics, dict) or "output_token_count" not in metrics:
            try:
                async with asyncio.timeout(limit):
                    async with self.session.request("GET", self.get_url()) as response:
                        latest = await self.session.read_json(response)
            except Exception:  # usage is a courtesy: the answer is complete
                return None
            metrics = latest.get("metrics") if isinstance(latest, dict) else None
        if not isinstance(metrics, dict):
            return None
        prompt, completion = metrics.get("input_token_count"), metrics.get("output_token_count")
        if not isinstance(completion, int) or isinstance(completion, bool):
            return None
        return Usage(prompt if isinstance(prompt, int) else 0, completion)


def _output_text(output: Any) -> str:
    """A prediction's output as text: a string, or a list of tokens joined."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(str(piece) for piece in output)
    return json.dumps(output)


async def _create_prediction(
    session: Session, endpoint: str, body: dict[str, Any], model: str, headers: Mapping[str, str]
) -> Any:
    # 404 here means the owner/name does not exist (or is not visible to us).
    async with session.request(
        "POST",
        endpoint,
        json=body,
        headers=dict(headers),
        messages={404: f"Model not found: {model}"},
    ) as response:
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
        origin.scheme,
        origin.host,
        origin.port,
    ):
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
        provider=provider,
    )


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
    except Exception:  # cleanup must not replace the real outcome
        pass


# -- provider spec: what the registry, config, the server and --emulate know of Replicate --
from .spec import ProviderSpec  # noqa: E402  (kept with the spec, a block of its own)

#: Replicate's facts for the registry (:mod:`llmplex.providers.spec`)
SPEC = ProviderSpec(
    name="Replicate",
    provider=f"{__name__}:Replicate",
    label=Replicate.label,
    base_url=_ORIGIN,
    key_env=(_TOKEN_ENV,),
    capabilities=Replicate.capabilities,
    models=tuple(Replicate.models),
    aliases=Replicate.model_aliases,
    emulator="llmplex.emulators.replicate:ReplicateEmulator",
    emulator_options={"api_key": "r8_emulated"},
)
