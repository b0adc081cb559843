"""Emulator of Replicate's predictions API and its SSE stream host (PROTOCOLS.md §4).

Routes, as on the real service (the stream host is served from the same origin):

- ``GET /v1/models``, ``GET /v1/models/{owner}/{name}`` (``latest_version.openapi_schema``)
  and ``GET /v1/models/{owner}/{name}/versions/{id}``: the models and their schemas — the
  families of :data:`llmplex.providers.replicate_models.FAMILIES`, as Replicate lists them.
- ``POST /v1/models/{owner}/{name}/predictions`` (and ``POST /v1/predictions`` with a
  ``version``) — Bearer token required; checks the input against the model's schema (422
  with ``invalid_fields``: missing, wrongly typed, out of bounds, not a choice; inputs the
  model does not declare are ignored, as Replicate does) and answers ``201`` with the
  prediction (``urls.get``/``cancel``, and ``urls.stream`` for a model whose output
  streams). ``Prefer: wait[=N]`` holds the answer until the prediction is done (at most N,
  60 s); ``Cancel-After: <duration>`` (``30s``, ``5m``, ``1h30m``) cancels it then.
- ``GET /v1/predictions/{id}`` — its status and output so far (a list of tokens for a
  streaming model, the whole string for another), ``metrics`` once done.
- ``POST /v1/predictions/{id}/cancel`` — cancels it; a running stream ends with
  ``event: done`` / ``data: {"reason": "canceled"}``.
- ``GET /v1/streams/{token}`` — ``text/event-stream``: the ``output`` so far and as it comes
  (a token with ``\\n`` spans several ``data:`` lines), ``id: <unix>:<n>`` on every event,
  then ``done``.

A prediction runs on its own from its creation (the stream replays it), paced by its
script. What the model writes: the script's ``reasoning`` between ``<think>`` and
``</think>`` first, then the text; or, when the input has ``tools`` and the script
``tool_calls``, ``<|tool_call|>`` and the calls as a JSON list (Granite's way).

Errors are ``application/problem+json`` bodies as the real API sends them. Script faults:
``http_status`` (step ``"create"`` — the default — or ``"stream"``), ``error_event``
(the prediction fails: ``error`` with ``{"detail": ...}`` then ``done`` ``{"reason":
"error"}``), ``disconnect``, ``malformed`` (a ``done`` event whose data is not JSON),
``stall``. ``Script.extra`` may hold ``"omit": ["id", "urls.stream"]`` (leave keys out of
the created prediction) and ``"logs": [...]`` (log lines sent as ``logs`` events before
the first token).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web

from ..providers.replicate_models import (
    FAMILIES,
    ModelSchema,
    openapi_schema,
    version_id,
)
from .emulator import Emulator
from .script import Fault, Script, split_tokens

__all__ = ["KNOWN_MODELS", "ReplicateEmulator"]

#: the models served by default (with their published schemas)
KNOWN_MODELS = tuple(FAMILIES)
#: the schema of a model named in ``models=`` without one: a classic chat model
_DEFAULT_FAMILY = FAMILIES["meta/llama-2-70b-chat"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)?")
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}
_TYPE_NAMES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}
_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    402: "Insufficient credit",
    403: "Forbidden",
    422: "Input validation failed",
    429: "Request was throttled",
    500: "Internal server error",
    503: "Service unavailable",
}
_DONE = ("succeeded", "failed", "canceled")


@dataclass
class Prediction:
    """Server-side state of one prediction."""

    id: str
    model: str
    version: str
    input: dict[str, Any]
    token: str  # the API token that created it: only its owner may read or cancel it
    stream_token: str
    script: Script
    created_at: str
    streams: bool
    status: str = "starting"
    output: list[str] = field(default_factory=list)
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    #: seconds after which the server cancels it (its Cancel-After), if given
    cancel_after: float | None = None
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        """Wake whoever waits for a change (a stream, a ``Prefer: wait``)."""
        self.changed.set()
        self.changed = asyncio.Event()

    @property
    def done(self) -> bool:
        return self.status in _DONE


class ReplicateEmulator(Emulator):
    """Replicate, locally. ``tokens``: the accepted API tokens (default: any non-empty
    one); ``models``: served besides :data:`KNOWN_MODELS` (others are 404): names (a
    classic chat model's schema) or a mapping of names to their ``openapi_schema``;
    ``omit``: keys left out of every created prediction (``"id"``, ``"urls.stream"``)."""

    name = "replicate"
    provider = "Replicate"

    def __init__(
        self,
        script: Script | None = None,
        *,
        tokens: Iterable[str] | None = None,
        models: Iterable[str] | Mapping[str, Mapping[str, Any]] = (),
        omit: Iterable[str] = (),
    ) -> None:
        super().__init__(script)
        self.tokens = set(tokens) if tokens is not None else None
        self.schemas: dict[str, dict[str, Any]] = {
            name: openapi_schema(*family) for name, family in FAMILIES.items()
        }
        for name in models:
            given = models[name] if isinstance(models, Mapping) else None
            self.schemas[name] = (
                dict(given) if given is not None else openapi_schema(*_DEFAULT_FAMILY)
            )
        self.omit = set(omit)
        self.predictions: dict[str, Prediction] = {}
        self._streams: dict[str, Prediction] = {}

    @property
    def models(self) -> set[str]:
        """The names of the models served."""
        return set(self.schemas)

    def reset(self) -> None:
        super().reset()
        for prediction in self.predictions.values():
            if prediction.task is not None:
                prediction.task.cancel()
        self.predictions.clear()
        self._streams.clear()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/models", self._list_models),
            web.get("/v1/models/{owner}/{name}", self._model),
            web.get("/v1/models/{owner}/{name}/versions/{version}", self._version),
            web.post("/v1/models/{owner}/{name}/predictions", self._create),
            web.post("/v1/predictions", self._create),
            web.get("/v1/predictions/{id}", self._get),
            web.post("/v1/predictions/{id}/cancel", self._cancel),
            web.get("/v1/streams/{token}", self._stream),
        ]

    # -- models -----------------------------------------------------------------------------

    def _model_json(self, name: str) -> dict[str, Any]:
        owner, _, short = name.partition("/")
        schema = self.schemas[name]
        return {
            "url": f"https://replicate.com/{name}",
            "owner": owner,
            "name": short,
            "description": f"{name} (emulated)",
            "visibility": "public",
            "run_count": 0,
            "latest_version": self._version_json(schema),
        }

    @staticmethod
    def _version_json(schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": version_id(schema),
            "created_at": "2025-01-01T00:00:00.000000Z",
            "cog_version": "0.14.0",
            "openapi_schema": schema,
        }

    async def _list_models(self, request: web.Request) -> web.Response:
        await self.record(request)
        if self._token(request) is None:
            return problem(401)
        return json_response(
            {
                "next": None,
                "previous": None,
                "results": [self._model_json(n) for n in sorted(self.schemas)],
            }
        )

    async def _model(self, request: web.Request) -> web.Response:
        await self.record(request)
        if self._token(request) is None:
            return problem(401)
        name = f"{request.match_info['owner']}/{request.match_info['name']}"
        if name not in self.schemas:
            return problem(404)
        return json_response(self._model_json(name))

    async def _version(self, request: web.Request) -> web.Response:
        await self.record(request)
        if self._token(request) is None:
            return problem(401)
        name = f"{request.match_info['owner']}/{request.match_info['name']}"
        schema = self.schemas.get(name)
        if schema is None or version_id(schema) != request.match_info["version"]:
            return problem(404)
        return json_response(self._version_json(schema))

    # -- predictions ------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        token = self._token(request)
        if token is None:
            return problem(401)
        try:
            body = json.loads(record.body)
        except ValueError:
            return problem(400, "The request body is not valid JSON.")
        if "owner" in request.match_info:
            model: str | None = f"{request.match_info['owner']}/{request.match_info['name']}"
            if model not in self.schemas:
                return problem(404)
        else:
            wanted = body.get("version") if isinstance(body, dict) else None
            model = next((n for n, s in self.schemas.items() if version_id(s) == wanted), None)
            if model is None:
                return problem(
                    422,
                    "- version: Invalid version or not permitted\n",
                    invalid_fields=[
                        {
                            "type": "invalid",
                            "field": "version",
                            "description": "Invalid version or not permitted",
                        }
                    ],
                )
        cancel_after = _duration(request.headers.get("Cancel-After"))
        if cancel_after is False:
            return problem(400, "Cancel-After must be a duration such as 30s, 5m or 1h30m")
        script = self.next_script()
        fault = script.fault_at("status", "create")  # step "" or "create"
        if fault is not None:
            return fault_response(fault)
        schema = ModelSchema.parse(model, self.schemas[model])
        invalid = _validate(body, schema)
        if invalid:
            detail = "".join(f"- {f['field']}: {f['description']}\n" for f in invalid)
            return problem(422, detail, invalid_fields=invalid)
        prediction = Prediction(
            id=_new_id(),
            model=model,
            version=version_id(self.schemas[model]),
            input=body["input"],
            token=token,
            stream_token=secrets.token_urlsafe(24),
            script=script,
            created_at=_now(),
            streams=schema.streams,
            cancel_after=cancel_after or None,
        )
        self.predictions[prediction.id] = prediction
        self._streams[prediction.stream_token] = prediction
        prediction.task = asyncio.ensure_future(self._run(prediction, schema))
        if prediction.cancel_after is not None:
            asyncio.get_running_loop().call_later(prediction.cancel_after, self._stop, prediction)
        wait = _prefer_wait(request.headers.get("Prefer"))
        if wait:
            try:
                async with asyncio.timeout(wait):
                    while not prediction.done:
                        await prediction.changed.wait()
            except TimeoutError:
                pass  # answered as it is: the client polls urls.get
        data = self._json(prediction)
        omit = self.omit | set(script.extra.get("omit", ()))
        if "id" in omit:
            del data["id"]
        if "urls.stream" in omit:
            data["urls"].pop("stream", None)
        return json_response(data, 201)

    async def _run(self, prediction: Prediction, schema: ModelSchema) -> None:
        """The model at work: its output, paced by the script, then its end."""
        script = prediction.script
        started = time.monotonic()
        pieces = _pieces(script, prediction.input)
        fault = (
            script.fault
            if script.fault is not None and script.fault.kind in ("error_event", "stall")
            else None
        )
        try:
            prediction.status = "processing"
            prediction.notify()
            for index in range(len(pieces) + 1):
                if fault is not None and fault.after == index:
                    if fault.kind == "stall":
                        await asyncio.sleep(fault.seconds)
                    else:
                        prediction.status = "failed"
                        prediction.error = fault.message or "Prediction failed"
                        prediction.metrics = {"predict_time": time.monotonic() - started}
                        return
                if index == len(pieces):
                    break
                if script.delay:
                    await asyncio.sleep(script.delay)
                prediction.output.append(pieces[index])
                prediction.notify()
            prediction.status = "canceled" if script.finish_reason == "canceled" else "succeeded"
            prediction.metrics = {
                "input_token_count": len(
                    split_tokens(
                        json.dumps(
                            prediction.input.get("messages") or prediction.input.get("prompt", "")
                        )
                    )
                ),
                "output_token_count": len(pieces),
                "predict_time": round(time.monotonic() - started, 6),
            }
        except asyncio.CancelledError:
            pass  # cancelled: _stop says so
        finally:
            prediction.notify()

    def _stop(self, prediction: Prediction) -> None:
        """Cancel ``prediction`` if it still runs (a cancel request, its Cancel-After)."""
        if prediction.done:
            return
        prediction.status = "canceled"
        if prediction.task is not None:
            prediction.task.cancel()
        prediction.notify()

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
        self._stop(prediction)
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
        cut = (
            script.fault
            if script.fault is not None and script.fault.kind in ("disconnect", "malformed")
            else None
        )
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        events = _EventWriter()
        self.open_streams += 1
        try:
            for line in script.extra.get("logs", ()) if prediction.status != "canceled" else ():
                await response.write(events.render("logs", line))
            sent = 0
            while True:
                changed = prediction.changed
                if cut is not None and cut.after == sent:
                    if cut.kind == "disconnect":
                        transport = request.transport
                        if transport is not None:
                            transport.abort()
                    else:
                        await response.write(events.render("done", "{not json", advance=False))
                    return response
                if sent < len(prediction.output):
                    await response.write(events.render("output", prediction.output[sent]))
                    sent += 1
                    continue
                if prediction.status == "failed":
                    await response.write(
                        events.render("error", json.dumps({"detail": prediction.error}))
                        + events.render(
                            "done",
                            json.dumps(
                                {"reason": (script.fault.reason if script.fault else "") or "error"}
                            ),
                        )
                    )
                    return response
                if prediction.status == "canceled":
                    await response.write(events.render("done", json.dumps({"reason": "canceled"})))
                    return response
                if prediction.status == "succeeded":
                    await response.write(events.render("done", "{}"))
                    return response
                await changed.wait()
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return response  # the client went away
        finally:
            self.open_streams -= 1

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
        output: Any = None
        if prediction.streams:
            output = list(prediction.output) if prediction.output or prediction.done else None
        elif prediction.status == "succeeded":
            output = "".join(prediction.output)
        urls = {"get": api, "cancel": f"{api}/cancel"}
        if prediction.streams:
            urls["stream"] = f"{self.url}/v1/streams/{prediction.stream_token}"
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": prediction.version,
            "input": prediction.input,
            "logs": "",
            "output": output,
            "data_removed": False,
            "error": prediction.error,
            "status": prediction.status,
            "created_at": prediction.created_at,
            "urls": urls,
            "metrics": dict(prediction.metrics),
        }


def _pieces(script: Script, data: Mapping[str, Any]) -> list[str]:
    """What the model writes: reasoning, then the text or (given tools) its tool calls."""
    out: list[str] = []
    if script.reasoning:
        out += ["<think>", *split_tokens(script.reasoning), "</think>\n\n"]
    if script.tool_calls and data.get("tools"):
        calls = json.dumps(
            [
                {
                    "name": c["name"],
                    "arguments": json.loads(c["arguments"])
                    if isinstance(c["arguments"], str)
                    else c["arguments"],
                }
                for c in script.tool_calls
            ]
        )
        half = len(calls) // 2
        return [*out, "<|tool_call|>", calls[:half], calls[half:]]
    return out + script.pieces()


def _duration(value: str | None) -> float | bool | None:
    """A Cancel-After duration in seconds (None: not given; False: not a duration)."""
    if value is None:
        return None
    text = value.strip()
    parts = list(_DURATION.finditer(text))
    if not text or "".join(p.group(0) for p in parts) != text:
        return False
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}
    seconds = sum(float(p.group(1)) * units[p.group(2)] for p in parts)
    return seconds if seconds > 0 else False


def _prefer_wait(value: str | None) -> float:
    """Seconds a ``Prefer: wait[=N]`` asks to hold the answer (0: none; at most 60)."""
    for preference in (value or "").split(","):
        name, _, number = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return min(60.0, float(number)) if number else 60.0
            except ValueError:
                return 60.0
    return 0.0


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
        body: dict[str, Any] = {
            "title": "Unauthenticated",
            "detail": detail or "You did not pass a valid authentication token",
            "status": 401,
        }
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
    return web.Response(
        status=status,
        text=json.dumps(body),
        headers=headers,
        content_type="application/problem+json",
    )


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
        return problem(
            422,
            fault.message or "- input: Invalid input\n",
            invalid_fields=[
                {
                    "type": "invalid",
                    "field": "input",
                    "description": fault.message or "Invalid input",
                }
            ],
        )
    return problem(fault.status, fault.message)


def _validate(body: Any, schema: ModelSchema) -> list[dict[str, str]]:
    """The schema errors of a create-prediction body (empty when valid), as the real API
    reports them: each with the field (``input.<name>``)."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        return [{"type": "required", "field": "input", "description": "input is required"}]
    errors = []
    data = body["input"]
    for name in sorted(schema.required - set(data)):
        errors.append({"type": "required", "field": "input", "description": f"{name} is required"})
    for name, value in data.items():
        spec = schema.inputs.get(name)
        if spec is None:
            continue  # undeclared inputs are ignored, as Replicate does
        problem_ = _check(spec, value)
        if problem_:
            errors.append(
                {"type": problem_[0], "field": f"input.{name}", "description": problem_[1]}
            )
    if "stream" in body and not isinstance(body["stream"], bool):
        errors.append(
            {
                "type": "invalid_type",
                "field": "stream",
                "description": "Invalid type. Expected: boolean",
            }
        )
    return errors


def _check(spec: Mapping[str, Any], value: Any) -> tuple[str, str] | None:
    """What is wrong with ``value`` for the input ``spec`` (a JSON schema), if anything."""
    kind = spec.get("type")
    types = _JSON_TYPES.get(kind or "")
    if types is not None and (
        not isinstance(value, types) or (isinstance(value, bool) and kind != "boolean")
    ):
        given = _TYPE_NAMES.get(type(value), type(value).__name__)
        return "invalid_type", f"Invalid type. Expected: {kind}, given: {given}"
    if "enum" in spec and value not in spec["enum"]:
        choices = ", ".join(json.dumps(c) for c in spec["enum"])
        return "enum", f"{_name_of(spec)} must be one of the following: {choices}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in spec and value < spec["minimum"]:
            return "number_gte", f"Must be greater than or equal to {spec['minimum']}"
        if "maximum" in spec and value > spec["maximum"]:
            return "number_lte", f"Must be less than or equal to {spec['maximum']}"
    uris = (
        [value]
        if spec.get("format") == "uri"
        else (value if kind == "array" and (spec.get("items") or {}).get("format") == "uri" else [])
    )
    for uri in uris:
        if not isinstance(uri, str) or not uri.startswith(("http://", "https://", "data:")):
            return "format", "Does not match format 'uri'"
    items = spec.get("items")
    if kind == "array" and isinstance(items, Mapping) and items.get("type"):
        for item in value:
            found = _check({"type": items["type"]}, item)
            if found:
                return found
    return None


def _name_of(spec: Mapping[str, Any]) -> str:
    return str(spec.get("title") or "value")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _new_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
