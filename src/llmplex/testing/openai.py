"""Emulator of the OpenAI Chat Completions API (PROTOCOLS.md §5), served under ``/v1``.

- ``POST /v1/chat/completions``: with ``stream: true`` an SSE stream of compact
  ``chat.completion.chunk`` objects (``data: {...}\\n\\n``): a first chunk carrying
  ``delta.role``, one chunk per scripted piece, a chunk with ``finish_reason``, then, when
  ``stream_options.include_usage`` is set, a chunk with empty ``choices`` and ``usage``
  (every other chunk then has ``"usage":null``), and ``data: [DONE]\\n\\n``. Without
  ``stream`` one ``chat.completion`` object (pretty-printed, as OpenAI sends it).
- ``GET /v1/models`` and ``GET /v1/models/{id}``.
- Errors are OpenAI's: ``{"error": {"message", "type", "param", "code"}}`` with the status.

Token counts are deterministic stand-ins: a token is a whitespace-separated word.
``prompt_tokens`` counts the words of every message's text, ``completion_tokens`` the
words of the reply sent; ``max_tokens`` (or ``max_completion_tokens``) cuts the reply
after that many words with ``finish_reason: "length"``, and ``stop`` cuts it before the
first stop sequence.

Behaviour of other compatible servers, per script (``Script(extra={...})``) or for every
answer (constructor flags): ``"stream": False`` answers a streaming request with one JSON
body (as some local servers do); ``"usage": False`` ignores ``stream_options``;
``"done": False`` omits ``data: [DONE]`` (``"done": "disconnect"`` cuts the connection
there instead); ``"finish": False`` ends the stream cleanly after the text, with neither
``finish_reason`` nor ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import string
import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web

from .emulator import Emulator, StreamOutcome
from .script import Fault, Script

__all__ = ["OpenAIEmulator", "DEFAULT_MODELS", "KNOWN_PARAMETERS"]

DEFAULT_MODELS: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-3.5-turbo")

#: top-level body fields the real API accepts; anything else is a 400 in strict mode
KNOWN_PARAMETERS = frozenset({
    "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "messages", "metadata", "modalities", "model", "n",
    "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
    "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop",
    "store", "stream", "stream_options", "temperature", "tool_choice", "tools", "top_logprobs",
    "top_p", "user", "verbosity", "web_search_options",
})
_ROLES = ("system", "assistant", "user", "function", "tool", "developer")

#: status -> (type, code, message) of the bodies OpenAI sends for it
_STATUS_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None,
          "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
}
_NO_KEY = ("You didn't provide an API key. You need to provide your API key in an "
           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
_BAD_JSON = ("We could not parse the JSON body of your request. (HINT: This likely means you "
             "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
             "but what was sent was not valid JSON.)")
_WORD = re.compile(r"\S+")


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> str:
    """OpenAI's error JSON, spaced as the API sends it (4-space indent, final newline)."""
    return json.dumps({"error": {"message": message, "type": type_, "param": param,
                                 "code": code}}, indent=4, ensure_ascii=False) + "\n"


def error_response(status: int, message: str, type_: str = "invalid_request_error",
                   param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=error_body(message, type_, param, code),
                        content_type="application/json", headers=headers)


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    """The text of a message's content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _cut(pieces: Sequence[str], limit: int) -> list[str]:
    """The pieces holding the first ``limit`` characters, keeping their chunking."""
    out: list[str] = []
    for piece in pieces:
        if limit <= 0:
            break
        out.append(piece[:limit])
        limit -= len(piece)
    return [p for p in out if p]


class OpenAIEmulator(Emulator):
    """OpenAI's ``/v1/chat/completions`` and ``/v1/models``.

    ``api_keys``: ``None`` accepts any request (with or without a key); a collection
    requires ``Authorization: Bearer <one of them>`` (else 401, as OpenAI answers).
    ``models``: the list ``/v1/models`` shows; when given, other model names are a 404
    ``model_not_found`` (by default any name is served). ``strict``: reject body fields
    the real API does not know (400 ``Unrecognized request argument supplied``); compatible
    servers such as vLLM accept extras, so ``strict=False`` does too.
    """

    name = "openai"
    provider = "OpenAICompatible"

    def __init__(self, script: Script | None = None, *, api_keys: Iterable[str] | None = None,
                 models: Sequence[str] | None = None, strict: bool = True,
                 honor_stream: bool = True, honor_stream_options: bool = True,
                 seed: int | None = None) -> None:
        super().__init__(script)
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.models = list(models) if models is not None else list(DEFAULT_MODELS)
        self.enforce_models = models is not None
        self.strict = strict
        self.honor_stream = honor_stream
        self.honor_stream_options = honor_stream_options
        self._random = random.Random(seed)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat_completions),
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{model:.+}", self.get_model),
            web.route("*", "/{tail:.*}", self.not_found),
        ]

    # -- helpers ---------------------------------------------------------------------------

    def _id(self, prefix: str, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
        return prefix + "".join(self._random.choice(alphabet) for _ in range(n))

    def _headers(self) -> dict[str, str]:
        return {"x-request-id": self._id("req_", 32, "0123456789abcdef"),
                "openai-version": "2020-10-01", "openai-processing-ms": "42"}

    def _auth(self, request: web.Request) -> web.Response | None:
        if self.api_keys is None:
            return None
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            return error_response(401, _NO_KEY)
        key = header[7:].strip()
        if key in self.api_keys:
            return None
        shown = f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}" if len(key) > 10 else "***"
        return error_response(
            401, f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.", code="invalid_api_key")

    def _fault_response(self, fault: Fault) -> web.Response:
        type_, code, message = _STATUS_ERRORS.get(
            fault.status,
            ("server_error" if fault.status >= 500 else "invalid_request_error", None,
             "request failed"))
        headers = self._headers()
        if fault.status == 429 and fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        return error_response(fault.status, fault.message or message, type_, code=code,
                              headers=headers)

    def _validate(self, body: Any) -> web.Response | None:
        """The 400 OpenAI answers for a bad body, or None."""
        if not isinstance(body, dict):
            return error_response(400, _BAD_JSON)
        if self.strict:
            unknown = sorted(k for k in body if k not in KNOWN_PARAMETERS)
            if unknown:
                plural = "s" if len(unknown) > 1 else ""
                return error_response(
                    400, f"Unrecognized request argument{plural} supplied: {', '.join(unknown)}")
        if "messages" not in body:
            return error_response(400, "Missing required parameter: 'messages'.",
                                  param="messages", code="missing_required_parameter")
        if "model" not in body:
            return error_response(400, "you must provide a model parameter")
        if not isinstance(body["model"], str):
            return error_response(400, "Invalid type for 'model': expected a string.",
                                  param="model", code="invalid_type")
        messages = body["messages"]
        if not isinstance(messages, list):
            return error_response(400, "Invalid type for 'messages': expected an array.",
                                  param="messages", code="invalid_type")
        if not messages:
            return error_response(
                400, "Invalid 'messages': empty array. Expected an array with minimum length 1,"
                " but got an empty array instead.", param="messages", code="empty_array")
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in _ROLES:
                return error_response(
                    400, f"Invalid value: {role!r}. Supported values are: 'system', 'assistant',"
                    " 'user', 'function', 'tool', and 'developer'.",
                    param=f"messages[{i}].role", code="invalid_value")
            if role != "assistant" and not isinstance(message.get("content"), (str, list)):
                return error_response(400, f"Missing required parameter: 'messages[{i}].content'.",
                                      param=f"messages[{i}].content",
                                      code="missing_required_parameter")
        if "stream" in body and not isinstance(body["stream"], bool):
            return error_response(400, "Invalid type for 'stream': expected a boolean.",
                                  param="stream", code="invalid_type")
        if body.get("stream_options") is not None and not body.get("stream"):
            return error_response(
                400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options", code="invalid_value")
        for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1),
                                ("presence_penalty", -2, 2), ("frequency_penalty", -2, 2)):
            value = body.get(name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or not low <= value <= high):
                return error_response(
                    400, f"Invalid '{name}': expected a number between {low} and {high}, "
                    f"but got {value!r} instead.", param=name, code="invalid_value")
        for name in ("max_tokens", "max_completion_tokens"):
            value = body.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 1):
                return error_response(
                    400, f"Invalid '{name}': integer below minimum value. Expected a value >= 1,"
                    f" but got {value!r} instead.", param=name, code="integer_below_min_value")
        stop = body.get("stop")
        if stop is not None and not isinstance(stop, str) and not (
                isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
            return error_response(400, "Invalid type for 'stop': expected a string or an array "
                                  "of strings.", param="stop", code="invalid_type")
        if isinstance(stop, list) and len(stop) > 4:
            return error_response(
                400, "Invalid 'stop': array too long. Expected an array with maximum length 4, "
                f"but got an array with length {len(stop)} instead.", param="stop",
                code="array_above_max_length")
        if self.enforce_models and body["model"] not in self.models:
            return error_response(
                404, f"The model `{body['model']}` does not exist or you do not have access to "
                "it.", code="model_not_found")
        return None

    # -- handlers --------------------------------------------------------------------------

    async def not_found(self, request: web.Request) -> web.Response:
        await self.record(request)
        return error_response(404, f"Invalid URL ({request.method} {request.path})")

    async def list_models(self, request: web.Request) -> web.Response:
        await self.record(request)
        denied = self._auth(request)
        if denied is not None:
            return denied
        script = self._queue[0] if self._queue else self.script
        fault = script.fault
        if fault is not None and fault.kind == "status" and fault.step == "models":
            if self._queue:
                self._queue.popleft()
            return self._fault_response(fault)
        data = [{"id": m, "object": "model", "created": 1686935002, "owned_by": "system"}
                for m in self.models]
        return web.Response(text=json.dumps({"object": "list", "data": data}, indent=2),
                            content_type="application/json", headers=self._headers())

    async def get_model(self, request: web.Request) -> web.Response:
        await self.record(request)
        denied = self._auth(request)
        if denied is not None:
            return denied
        model = request.match_info["model"]
        if model not in self.models:
            return error_response(404, f"The model '{model}' does not exist",
                                  param="model", code="model_not_found")
        return web.Response(
            text=json.dumps({"id": model, "object": "model", "created": 1686935002,
                             "owned_by": "system"}, indent=2),
            content_type="application/json", headers=self._headers())

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        denied = self._auth(request)
        if denied is not None:
            return denied
        try:
            body = json.loads(record.body)
        except ValueError:
            body = None
        invalid = self._validate(body)
        if invalid is not None:
            return invalid
        script = self.next_script()
        fault = script.fault_at("status", "chat")
        if fault is not None:
            return self._fault_response(fault)

        # What the reply becomes after stop sequences and the token limit.
        pieces = script.pieces()
        reply = "".join(pieces)
        end, finish = len(reply), script.finish_reason
        stops = body.get("stop")
        for stop in [stops] if isinstance(stops, str) else stops or ():
            at = reply.find(stop) if stop else -1
            if 0 <= at < end:
                end, finish = at, "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit is not None:
            words = list(_WORD.finditer(reply))
            if len(words) > limit and words[limit - 1].end() < end:
                end, finish = words[limit - 1].end(), "length"
        pieces = _cut(pieces, end)
        prompt_tokens = sum(_words(_text_of(m.get("content"))) for m in body["messages"])
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": _words(reply[:end]),
                 "total_tokens": prompt_tokens + _words(reply[:end]),
                 "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0,
                                               "rejected_prediction_tokens": 0}}
        meta = {"id": self._id("chatcmpl-", 29), "created": int(time.time()),
                "model": body["model"]}
        flag = script.extra.get
        if body.get("stream") and flag("stream", self.honor_stream):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and \
                flag("usage", self.honor_stream_options)
            return await self._stream(request, dataclasses.replace(script, chunks=pieces), meta,
                                      finish, usage if include_usage else None)
        return await self._complete(request, script, pieces, meta, finish, usage)

    async def _complete(self, request: web.Request, script: Script, pieces: list[str],
                        meta: dict[str, Any], finish: str, usage: dict[str, Any]
                        ) -> web.StreamResponse:
        """A non-streamed answer, with the script's faults in their non-stream form."""
        fault = script.fault
        if script.delay:
            await asyncio.sleep(script.delay * len(pieces))
        if fault is not None and fault.kind == "stall":
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind == "error_event":
            return error_response(500, fault.message, "server_error", code=fault.reason or None)
        completion = {
            "id": meta["id"], "object": "chat.completion", "created": meta["created"],
            "model": meta["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces),
                                                 "refusal": None, "annotations": []},
                         "logprobs": None, "finish_reason": finish}],
            "usage": usage, "service_tier": "default", "system_fingerprint": "fp_0ba0d124f1",
        }
        raw = json.dumps(completion, indent=2, ensure_ascii=False).encode()
        if fault is not None and fault.kind == "malformed":
            raw = b"{this is not json"
        response = web.StreamResponse(headers={
            **self._headers(), "Content-Type": "application/json", "Content-Length": str(len(raw))})
        await response.prepare(request)
        if fault is not None and fault.kind == "disconnect":
            await response.write(raw[: len(raw) // 2])
            if request.transport is not None:
                request.transport.abort()  # the client sees a body cut short
            return response
        await response.write(raw)
        await response.write_eof()
        return response

    async def _stream(self, request: web.Request, script: Script, meta: dict[str, Any],
                      finish: str, usage: dict[str, Any] | None) -> web.StreamResponse:
        extra = {"usage": None} if usage is not None else {}

        def chunk(choices: list[dict[str, Any]], **more: Any) -> bytes:
            data = {"id": meta["id"], "object": "chat.completion.chunk",
                    "created": meta["created"], "model": meta["model"],
                    "service_tier": "default", "system_fingerprint": "fp_0ba0d124f1",
                    "choices": choices, **extra, **more}
            return b"data: " + json.dumps(data, separators=(",", ":"),
                                          ensure_ascii=False).encode() + b"\n\n"

        def choice(delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "logprobs": None,
                     "finish_reason": finish_reason}]

        def error(fault: Fault) -> bytes:
            return b"data: " + json.dumps(
                {"error": {"message": fault.message, "type": "server_error", "param": None,
                           "code": fault.reason or None}},
                separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"

        response = web.StreamResponse(headers={
            **self._headers(), "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            await response.write(chunk(choice({"role": "assistant", "content": "",
                                               "refusal": None})))
        except (ConnectionError, RuntimeError):
            return response
        outcome = await self.play(
            request, response, script, lambda piece, _: chunk(choice({"content": piece})),
            error=error, malformed=b"data: {this is not json\n\n")
        if outcome == StreamOutcome.ABORTED:
            return response
        try:
            if outcome == StreamOutcome.COMPLETE and script.extra.get("finish", True):
                await response.write(chunk(choice({}, finish)))
                if usage is not None:
                    await response.write(chunk([], usage=usage))
                done = script.extra.get("done", True)
                if done == "disconnect":  # the connection drops where [DONE] was due
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                if done:
                    await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away after the last chunk
        return response
