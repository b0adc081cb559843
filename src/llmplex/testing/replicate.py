"""Emulator of Replicate's predictions API and its SSE stream host (PROTOCOLS.md §4).

Routes, as on the real service (the stream host is served from the same origin):

- ``POST /v1/models/{owner}/{name}/predictions`` — Bearer token required; creates a
  prediction and answers ``201`` with its JSON (``urls.get``/``cancel``/``stream``).
- ``GET /v1/predictions/{id}`` — the prediction with its current status and output.
- ``POST /v1/predictions/{id}/cancel`` — cancels it; a running stream ends with
  ``event: done`` / ``data: {"reason": "canceled"}``.
- ``GET /v1/streams/{token}`` — ``text/event-stream``: ``output`` events (a token with
  ``\\n`` spans several ``data:`` lines), ``id: <unix>:<n>`` on every event, then ``done``.

Errors are ``application/problem+json`` bodies as the real API sends them. Script faults:
``http_status`` (step ``"create"`` — the default — or ``"stream"``), ``error_event``
(``error`` with ``{"detail": ...}`` then ``done`` ``{"reason": "error"}``), ``disconnect``,
``malformed`` (a ``done`` event whose data is not JSON), ``stall``. ``Script.extra`` may hold
``"omit": ["id", "urls.stream"]`` (leave keys out of the created prediction) and
``"logs": [...]`` (log lines sent as ``logs`` events before the first token).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from aiohttp import web

from .emulator import Emulator, StreamOutcome
from .script import Fault, Script

__all__ = ["ReplicateEmulator", "KNOWN_MODELS"]

KNOWN_MODELS = (
    "meta/meta-llama-3-70b-instruct",
    "meta/meta-llama-3-8b-instruct",
    "meta/meta-llama-3.1-405b-instruct",
    "mistralai/mixtral-8x7b-instruct-v0.1",
)

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Input types of the language models' schemas (others pass, as the API ignores them).
_INPUT_TYPES: dict[str, tuple[type, ...]] = {
    "prompt": (str,),
    "system_prompt": (str,),
    "prompt_template": (str,),
    "stop_sequences": (str,),
    "max_new_tokens": (int,),
    "max_tokens": (int,),
    "min_tokens": (int,),
    "top_k": (int,),
    "seed": (int,),
    "temperature": (int, float),
    "top_p": (int, float),
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
}
_TYPE_NAMES = {str: "string", int: "integer", float: "number"}
_TITLES = {400: "Bad request", 401: "Unauthenticated", 402: "Insufficient credit",
           403: "Forbidden", 422: "Input validation failed", 429: "Request was throttled",
           500: "Internal server error", 503: "Service unavailable"}


@dataclass
class Prediction:
    """Server-side state of one prediction."""

    id: str
    model: str
    input: dict[str, Any]
    token: str  # the API token that created it: only its owner may read or cancel it
    stream_token: str
    script: Script
    created_at: str
    status: str = "starting"
    output: list[str] | None = None
    error: str | None = None
    canceled: asyncio.Event = field(default_factory=asyncio.Event)


class ReplicateEmulator(Emulator):
    """Replicate, locally. ``tokens``: the accepted API tokens (default: any non-empty
    one); ``models``: served besides :data:`KNOWN_MODELS` (others are 404); ``omit``:
    keys left out of every created prediction (``"id"``, ``"urls.stream"``)."""

    name = "replicate"
    provider = "Replicate"

    def __init__(
        self,
        script: Script | None = None,
        *,
        tokens: Iterable[str] | None = None,
        models: Iterable[str] = (),
        omit: Iterable[str] = (),
    ) -> None:
        super().__init__(script)
        self.tokens = set(tokens) if tokens is not None else None
        self.models = set(KNOWN_MODELS) | set(models)
        self.omit = set(omit)
        self.predictions: dict[str, Prediction] = {}
        self._streams: dict[str, Prediction] = {}

    def reset(self) -> None:
        super().reset()
        self.predictions.clear()
        self._streams.clear()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/models/{owner}/{name}/predictions", self._create),
            web.get("/v1/predictions/{id}", self._get),
            web.post("/v1/predictions/{id}/cancel", self._cancel),
            web.get("/v1/streams/{token}", self._stream),
        ]

    # -- API --------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        token = self._token(request)
        if token is None:
            return problem(401)
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        if model not in self.models:
            return problem(404)
        try:
            body = json.loads(record.body)
        except ValueError:
            return problem(400, "The request body is not valid JSON.")
        script = self.next_script()
        fault = script.fault_at("status", "create")  # step "" or "create"
        if fault is not None:
            return fault_response(fault)
        invalid = _validate(body)
        if invalid:
            detail = "".join(f"- {f['field']}: {f['description']}\n" for f in invalid)
            return problem(422, detail, invalid_fields=invalid)
        prediction = Prediction(
            id=_new_id(),
            model=model,
            input=body["input"],
            token=token,
            stream_token=secrets.token_urlsafe(24),
            script=script,
            created_at=_now(),
        )
        self.predictions[prediction.id] = prediction
        self._streams[prediction.stream_token] = prediction
        data = self._json(prediction)
        omit = self.omit | set(script.extra.get("omit", ()))
        if "id" in omit:
            del data["id"]
        if "urls.stream" in omit:
            del data["urls"]["stream"]
        return json_response(data, 201)

    async def _get(self, request: web.Request) -> web.Response:
        await self.record(request)
        prediction = self._owned(request)
        if not isinstance(prediction, Prediction):
            return prediction
        return json_response(self._json(prediction))

    async def _cancel(self, request: web.Request) -> web.Response:
        await self.record(request)
        prediction = self._owned(request)
        if not isinstance(prediction, Prediction):
            return prediction
        if prediction.status in ("starting", "processing"):
            prediction.status = "canceled"
            prediction.canceled.set()
        return json_response(self._json(prediction))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        prediction = self._streams.get(request.match_info["token"])
        if prediction is None:
            return problem(404)
        script = prediction.script
        fault = script.fault_at("status", "stream")
        if fault is not None and fault.step == "stream":
            return fault_response(fault)
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        events = _EventWriter()
        if prediction.status == "canceled":
            await _write(response, events.render("done", json.dumps({"reason": "canceled"})))
            return response
        prediction.status = "processing"
        prediction.output = prediction.output or []
        for line in script.extra.get("logs", ()):
            await _write(response, events.render("logs", line))

        def render(piece: str, index: int) -> bytes:
            return events.render("output", piece)

        def error(fault: Fault) -> bytes:
            prediction.status = "failed"
            prediction.error = fault.message or "Prediction failed"
            return events.render("error", json.dumps({"detail": prediction.error})) + \
                events.render("done", json.dumps({"reason": fault.reason or "error"}))

        def on_chunk(piece: str) -> None:
            assert prediction.output is not None
            prediction.output.append(piece)

        # A cancel request must end a stream mid-flight (even in a stall): play runs as
        # its own task, stopped when the prediction is cancelled.
        malformed = events.render("done", "{not json", advance=False)
        play = asyncio.ensure_future(self.play(
            request, response, script, render, error=error, malformed=malformed,
            on_chunk=on_chunk,
        ))
        canceled = asyncio.ensure_future(prediction.canceled.wait())
        try:
            await asyncio.wait({play, canceled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            canceled.cancel()
            if not play.done():
                play.cancel()
            outcome = await play
        if prediction.canceled.is_set():
            await _write(response, events.render("done", json.dumps({"reason": "canceled"})))
        elif outcome == StreamOutcome.COMPLETE:
            if script.finish_reason == "canceled":
                prediction.status = "canceled"
                await _write(response, events.render("done", json.dumps({"reason": "canceled"})))
            else:
                prediction.status = "succeeded"
                await _write(response, events.render("done", "{}"))
        return response

    # -- helpers ----------------------------------------------------------------------------

    def _token(self, request: web.Request) -> str | None:
        """The API token of the request, if it is one the emulator accepts."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() not in ("bearer", "token") or not token:
            return None
        if self.tokens is not None and token not in self.tokens:
            return None
        return token

    def _owned(self, request: web.Request) -> Prediction | web.Response:
        token = self._token(request)
        if token is None:
            return problem(401)
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None or prediction.token != token:
            return problem(404)  # other accounts' predictions do not exist for you
        return prediction

    def _json(self, prediction: Prediction) -> dict[str, Any]:
        api = f"{self.url}/v1/predictions/{prediction.id}"
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": hashlib.sha256(prediction.model.encode()).hexdigest(),
            "input": prediction.input,
            "logs": "",
            "output": prediction.output,
            "error": prediction.error,
            "status": prediction.status,
            "created_at": prediction.created_at,
            "urls": {
                "get": api,
                "cancel": f"{api}/cancel",
                "stream": f"{self.url}/v1/streams/{prediction.stream_token}",
            },
        }


class _EventWriter:
    """Renders SSE events with ``id: <unix>:<n>``, splitting multi-line data."""

    def __init__(self) -> None:
        self.second = int(time.time())
        self.count = 0

    def render(self, event: str, data: str, *, advance: bool = True) -> bytes:
        # Every line break of the data starts a new data: line (a bare CR too, else it
        # would end the line early); the client joins them with "\n".
        lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
        text = f"event: {event}\nid: {self.second}:{self.count}\n{lines}\n"
        self.count += advance
        return text.encode()


async def _write(response: web.StreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
    except (ConnectionError, RuntimeError):  # the client went away
        pass


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer (Python ``json.dumps`` spacing, as in PROTOCOLS.md)."""
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


def problem(status: int, detail: str = "", **extra: Any) -> web.Response:
    """An ``application/problem+json`` error as the real API sends it."""
    if status == 401:
        body: dict[str, Any] = {"title": "Unauthenticated",
                                "detail": detail or "You did not pass a valid authentication token",
                                "status": 401}
    elif status == 404:
        body = {"detail": detail or "The requested resource could not be found.", "status": 404}
    else:
        title = _TITLES.get(status) or _phrase(status)
        body = {"title": title, "detail": detail or title, "status": status}
        if status == 422:
            body["invalid_fields"] = extra.get("invalid_fields", [])
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return web.Response(status=status, text=json.dumps(body), headers=headers,
                        content_type="application/problem+json")


def fault_response(fault: Fault) -> web.Response:
    """The error a scripted ``http_status`` fault answers with."""
    if fault.status == 429:
        wait = math.ceil(fault.retry_after if fault.retry_after is not None else 7)
        detail = fault.message or (
            f"Request was throttled. Your rate limit resets in ~{wait}s. "
            f"Expected available in {wait} seconds."
        )
        return problem(429, detail, retry_after=wait)
    if fault.status == 422:
        return problem(422, fault.message or "- input: Invalid input\n", invalid_fields=[
            {"type": "invalid", "field": "input", "description": fault.message or "Invalid input"}
        ])
    return problem(fault.status, fault.message)


def _validate(body: Any) -> list[dict[str, str]]:
    """The schema errors of a create-prediction body (empty when valid)."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        return [{"type": "required", "field": "input", "description": "input is required"}]
    errors = []
    data = body["input"]
    if "prompt" not in data:
        errors.append({"type": "required", "field": "input",
                       "description": "prompt is required"})
    for key, types in _INPUT_TYPES.items():
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            expected = _TYPE_NAMES[types[-1]]
            given = _TYPE_NAMES.get(type(value), type(value).__name__)
            errors.append({"type": "invalid_type", "field": f"input.{key}",
                           "description": f"Invalid type. Expected: {expected}, given: {given}"})
    if "stream" in body and not isinstance(body["stream"], bool):
        errors.append({"type": "invalid_type", "field": "stream",
                       "description": "Invalid type. Expected: boolean"})
    return errors


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _new_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
