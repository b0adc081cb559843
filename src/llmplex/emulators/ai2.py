"""Emulator of the Ai2 Playground's current API, olmo-api v5 (PROTOCOLS.md §1b).

``POST /v5/threads/chat`` takes form fields (multipart or urlencoded, camelCase) and
answers ``application/jsonl``, one compact JSON object per line, each with ``message``
and ``type``: ``start``; ``startThread`` (a new thread: system and user message) or
``addMessage`` (a follow-up's user or tool-result message); ``addMessage`` again for the
assistant reply, its first text fragment (or first reasoning fragment) inside; then
``modelResponse``/``thinking``/``toolCall`` deltas, ``error`` chunks (the stream goes on),
``finalThread`` (every new message, final) and ``end``. Errors before the stream are
``application/problem+json``.

State: every message is kept with its owner (a bearer token's user, else the anonymous
id), so follow-ups need a known ``parent`` created by the same identity, and threads can
be read and deleted (``GET``/``DELETE /v5/threads/{id}``). ``GET /v5/models/`` lists
:data:`MODELS`.

Captcha rules (as in production by default, ``captcha="required"``): a signed-in caller
must send a non-empty ``captchaToken``; an anonymous one a token minted by
:meth:`Ai2Emulator.mint_captcha` (single use; a score of 0.3 or less fails the
assessment). ``captcha="off"`` is a development deployment that asks for none.

Scripts: ``reasoning`` streams as thinking (models with ``canThink``), ``tool_calls`` as
user tool calls (when the request enables tool calling with tool definitions), faults as
usual; ``Fault.error_event(..., reason="warning")`` (or ``"info"``) is a non-fatal error
chunk after which the answer goes on. ``extra``: ``{"flagged": True}`` answers the
moderation 400, ``{"error_code": "..."}`` sets error chunks' ``errorCode``,
``{"final_thread": False}`` ends the stream without ``finalThread`` and ``end``.
"""

from __future__ import annotations

import json
import random
import string
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from aiohttp import web

from .emulator import Emulator, StreamOutcome
from .script import Fault, Script, split_tokens

__all__ = ["Ai2Emulator", "MODELS", "EMULATED_TOKEN", "EMULATED_USER"]

#: the bearer token every emulator accepts (``serve --emulate`` uses it)
EMULATED_TOKEN = "ai2-emulated-token"
EMULATED_USER = "auth0|emulated-user"

_OLMO_SYSTEM = "You are Olmo, a helpful AI assistant built by Ai2 (the Allen Institute for AI)."


def _model(
    id: str,
    name: str,
    *,
    tools: bool = False,
    think: bool = False,
    files: bool = False,
    system: str | None = None,
) -> dict[str, Any]:
    return {
        "id": id,
        "name": name,
        "description": f"{name}, served by Ai2",
        "host": "modal",
        "modelType": "chat",
        "promptType": "multi_modal" if files else "text_only",
        "internal": False,
        "isDeprecated": False,
        "canCallTools": tools,
        "canThink": think,
        "acceptsFiles": files,
        "acceptedFileTypes": ["image/png", "image/jpeg", "image/webp", "image/gif"]
        if files
        else [],
        "maxFilesPerMessage": 1 if files else None,
        "requireFileToPrompt": "no_requirement",
        "systemPrompt": system,
        "temperatureDefault": 0.6,
        "temperatureLower": 0.0,
        "temperatureUpper": 2.0,
        "topPDefault": 0.95,
        "topPLower": 0.01,
        "topPUpper": 1.0,
        "maxTokensDefault": 4096,
        "maxTokensLower": 1,
        "maxTokensUpper": 8192,
    }


#: what ``GET /v5/models/`` lists (ids as the Playground shows them)
MODELS: list[dict[str, Any]] = [
    _model("olmo-3.1-32b-instruct", "Olmo 3.1 32B Instruct", tools=True, system=_OLMO_SYSTEM),
    _model("olmo-3.1-32b-think", "Olmo 3.1 32B Think", think=True, system=_OLMO_SYSTEM),
    _model("molmo2-8b", "Molmo 2 8B", files=True),
    _model("molmo2-4b", "Molmo 2 4B", files=True),
]

_ID_ALPHABET = (string.ascii_uppercase, string.digits)
_PROBLEM = "application/problem+json"
_SEVERITIES = ("error", "warning", "info")
_TOOL_ARGS_PIECE = 8  # characters of arguments per toolCall delta
_CAPTCHA_MISSING = "Value error, Failed to evaluate captcha. Please reload the page and try again."


class Ai2Emulator(Emulator):
    """olmo-api's v5 ``/v5/threads/chat``, models and threads endpoints.

    ``tokens`` maps accepted bearer tokens to user ids (:data:`EMULATED_TOKEN` by
    default); ``models`` the served models by id (:data:`MODELS`); ``captcha`` is
    ``"required"`` or ``"off"``.
    """

    name = "allenai"
    provider = "AllenAI"

    def __init__(
        self, script: Script | None = None, *, seed: int | None = None, captcha: str = "required"
    ) -> None:
        super().__init__(script)
        if captcha not in ("required", "off"):
            raise ValueError(f"captcha must be 'required' or 'off', not {captcha!r}")
        self.captcha = captcha
        self._random = random.Random(seed)
        self.messages: dict[str, dict[str, Any]] = {}  # id -> flat message (camelCase)
        self.owners: dict[str, str] = {}  # message id -> creator
        self.tokens: dict[str, str] = {EMULATED_TOKEN: EMULATED_USER}
        self.models: dict[str, dict[str, Any]] = {m["id"]: dict(m) for m in MODELS}
        self.captchas: dict[str, float] = {}  # minted, unused token -> its score
        self.files: list[tuple[str, str, bytes]] = []  # (filename, type, bytes) received

    def reset(self) -> None:
        super().reset()
        self.messages.clear()
        self.owners.clear()
        self.captchas.clear()
        self.files.clear()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v5/threads/chat", self.chat),
            web.get("/v5/models/", self.list_models),
            web.get("/v5/threads/", self.list_threads),
            web.get("/v5/threads/{id}", self.get_thread),
            web.delete("/v5/threads/{id}", self.delete_thread),
        ]

    def mint_captcha(self, score: float = 0.9) -> str:
        """A reCAPTCHA token as a browser would mint one (single use)."""
        token = "03AFcWeA" + "".join(
            self._random.choices(string.ascii_letters + string.digits, k=40)
        )
        self.captchas[token] = score
        return token

    # -- HTTP helpers ----------------------------------------------------------------------

    @staticmethod
    def problem(
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        retry_after: float | None = None,
        **extra: Any,
    ) -> web.Response:
        """An RFC 9457 problem document, as fastapi-problem writes them."""
        phrase = HTTPStatus(status).phrase
        body: dict[str, Any] = {
            "type": phrase.lower().replace(" ", "-"),
            "title": title or phrase,
            "status": status,
        }
        if detail is not None:
            body["detail"] = detail
        body.update(extra)
        headers = {"Content-Type": _PROBLEM}
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        return web.Response(status=status, body=_compact(body), headers=headers)

    def _validation(self, errors: list[dict[str, Any]]) -> web.Response:
        return self.problem(422, None, title="Request validation error.", errors=errors)

    def _identity(self, request: web.Request) -> tuple[str, bool] | web.Response:
        """(user, signed in), or the 401: a valid bearer wins; an invalid one falls back
        to the anonymous id when one is sent."""
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            user = self.tokens.get(auth[7:].strip())
            if user:
                return user, True
        anonymous = request.headers.get("X-Anonymous-User-ID", "").strip()
        if anonymous:
            return anonymous, False
        return self.problem(401, "Authentication required", title="Unauthorized")

    # -- models and threads ----------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        await self.record(request)
        return web.Response(
            body=_compact(list(self.models.values())), content_type="application/json"
        )

    def _thread_of(
        self, request: web.Request, thread_id: str, user: str
    ) -> list[dict[str, Any]] | web.Response:
        root = self.messages.get(thread_id)
        if root is None or root["root"] != thread_id:
            return self.problem(404, f"Thread {thread_id} not found")
        if self.owners.get(thread_id) != user and root["private"]:
            return self.problem(403, "You do not have access to this thread", title="Forbidden")
        return [m for m in self.messages.values() if m["root"] == thread_id]

    async def get_thread(self, request: web.Request) -> web.Response:
        await self.record(request)
        who = self._identity(request)
        if isinstance(who, web.Response):
            return who
        found = self._thread_of(request, request.match_info["id"], who[0])
        if isinstance(found, web.Response):
            return found
        return web.Response(
            body=_compact({"id": request.match_info["id"], "messages": found}),
            content_type="application/json",
        )

    async def list_threads(self, request: web.Request) -> web.Response:
        await self.record(request)
        who = self._identity(request)
        if isinstance(who, web.Response):
            return who
        threads = [
            {"id": mid, "messages": [m for m in self.messages.values() if m["root"] == mid]}
            for mid, m in self.messages.items()
            if m["parent"] is None and self.owners.get(mid) == who[0]
        ]
        return web.Response(
            body=_compact({"threads": threads, "meta": {"total": len(threads)}}),
            content_type="application/json",
        )

    async def delete_thread(self, request: web.Request) -> web.Response:
        await self.record(request)
        who = self._identity(request)
        if isinstance(who, web.Response):
            return who
        thread_id = request.match_info["id"]
        found = self._thread_of(request, thread_id, who[0])
        if isinstance(found, web.Response):
            return found
        if self.owners.get(thread_id) != who[0]:
            return self.problem(403, "Cannot delete a thread you did not create", title="Forbidden")
        for message in found:
            del self.messages[message["id"]]
            self.owners.pop(message["id"], None)
        return web.Response(status=204)

    # -- the chat request ------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        who = self._identity(request)
        if isinstance(who, web.Response):
            return who
        user, signed_in = who
        # FastAPI's Form(): a JSON body has none of the fields.
        form = record.form
        files = [v for v in _values(form.get("files")) if isinstance(v, bytes)]
        refused = self._validate(form)
        if refused is not None:
            return refused
        model = self.models.get(form["model"])
        if model is None:
            return self.problem(
                422, f"Model with ID '{form['model']}' not found", title="Unprocessable Entity"
            )
        refused = self._check_captcha(form, signed_in)
        if refused is not None:
            return refused
        parent_id = form.get("parent") or None
        parent = self.messages.get(parent_id) if parent_id else None
        if parent_id is not None:
            refused = self._check_parent(form, parent, user, signed_in)
            if refused is not None:
                return refused
        if files:
            refused = self._check_files(model, request, record.body)
            if refused is not None:
                return refused
        waiting = (
            form["role"] == "tool_call_result"
            and parent is not None
            and any(c != form["toolCallId"] for c in self._pending_calls(parent))
        )
        # A result while other calls are pending runs no model: it takes no script.
        script = Script() if waiting else self.next_script()
        fault = script.fault_at("status")
        if fault is not None:
            return self.problem(
                fault.status,
                fault.message or HTTPStatus(fault.status).phrase,
                retry_after=fault.retry_after,
            )
        if script.extra.get("flagged"):
            return self.problem(400, "Text was flagged as inappropriate", title="Bad Request")
        return await self._answer(request, script, form, model, user, signed_in, parent)

    def _validate(self, form: dict[str, Any]) -> web.Response | None:
        """The request model's checks (pydantic, camelCase locations)."""
        errors: list[dict[str, Any]] = []

        def fail(loc: str, kind: str, msg: str) -> None:
            errors.append({"type": kind, "loc": ["body", loc], "msg": msg, "input": None})

        role = form.get("role")
        if role is None:
            fail("role", "missing", "Field required")
        elif role not in ("user", "assistant", "tool_call_result"):
            errors.append(
                {
                    "type": "union_tag_invalid",
                    "loc": ["body"],
                    "msg": f"Input tag '{role}' found using 'role' does not match any of "
                    "the expected tags: 'user', 'assistant', 'tool_call_result'",
                    "input": None,
                }
            )
        for key in ("model", "content", "parent", "toolCallId", "captchaToken"):
            if isinstance(form.get(key), list):
                fail(key, "string_type", "Input should be a valid string")
        if form.get("model") is None:
            fail("model", "missing", "Field required")
        content = form.get("content")
        if role in ("user", "assistant") and not content and not form.get("inputParts"):
            errors.append(
                {
                    "type": "value_error",
                    "loc": ["body"],
                    "msg": "Value error, One of content or inputParts is required",
                    "input": None,
                }
            )
        if role in ("assistant", "tool_call_result") and not form.get("parent"):
            fail("parent", "missing", "Field required")
        if role == "tool_call_result":
            if form.get("toolCallId") is None:
                fail("toolCallId", "missing", "Field required")
            if content is None:
                fail("content", "missing", "Field required")
        for key in ("private", "enableToolCalling", "bypassSafetyCheck"):
            if form.get(key) not in (None, "true", "false", "True", "False", "1", "0"):
                fail(key, "bool_parsing", "Input should be a valid boolean")
        for key, cast in (("temperature", float), ("topP", float), ("maxTokens", int), ("n", int)):
            if form.get(key) is None:
                continue
            try:
                value = cast(form[key])
            except (TypeError, ValueError):
                fail(key, f"{cast.__name__}_parsing", f"Input should be a valid {cast.__name__}")
                continue
            if key == "n" and value != 1:
                fail(
                    key,
                    "less_than_equal" if value > 1 else "greater_than_equal",
                    f"Input should be {'less' if value > 1 else 'greater'} than or equal to 1",
                )
        for key, kind in (("toolDefinitions", list), ("extraParameters", dict)):
            if form.get(key) is None:
                continue
            try:
                value = json.loads(form[key])
            except (TypeError, ValueError):
                fail(key, "json_invalid", "Invalid JSON")
                continue
            if not isinstance(value, kind):
                fail(key, f"{kind.__name__}_type", f"Input should be a valid {kind.__name__}")
            elif key == "toolDefinitions":
                for i, tool in enumerate(value):
                    for field in ("name", "description", "parameters"):
                        if not isinstance(tool, dict) or field not in tool:
                            errors.append(
                                {
                                    "type": "missing",
                                    "loc": ["body", key, i, field],
                                    "msg": "Field required",
                                    "input": None,
                                }
                            )
        if self.captcha == "required" and not form.get("captchaToken"):
            fail("captchaToken", "value_error", _CAPTCHA_MISSING)
        if errors:
            return self._validation(errors)
        if form.get("model") in self.models:
            model = self.models[form["model"]]
            for key, low, high in (
                ("temperature", "temperatureLower", "temperatureUpper"),
                ("topP", "topPLower", "topPUpper"),
                ("maxTokens", "maxTokensLower", "maxTokensUpper"),
            ):
                if form.get(key) is not None:
                    value = float(form[key])
                    if not model[low] <= value <= model[high]:
                        fail(
                            key,
                            "value_error",
                            f"Value error, {key} must be between "
                            f"{model[low]} and {model[high]} for {model['id']}",
                        )
        return self._validation(errors) if errors else None

    def _check_captcha(self, form: dict[str, Any], signed_in: bool) -> web.Response | None:
        if self.captcha == "off" or signed_in:
            return None  # signed in: present (checked above) but not assessed
        score = self.captchas.pop(form["captchaToken"], None)  # single use
        if score is None:
            return self.problem(400, "Invalid captcha", title="Bad Request")
        if score <= 0.3:
            return self.problem(400, "Captcha assessment failed", title="Bad Request")
        return None

    def _check_parent(
        self, form: dict[str, Any], parent: dict[str, Any] | None, user: str, signed_in: bool
    ) -> web.Response | None:
        if parent is None:
            return self.problem(
                422, f"Parent message {form['parent']} not found", title="Unprocessable Entity"
            )
        if self.owners.get(parent["id"]) != user:
            return self.problem(403, "Cannot create message when not creator", title="Forbidden")
        role = form["role"]
        if parent["role"] == role and role != "tool_call_result":
            return self.problem(
                422,
                "Parent and child messages cannot have the same role",
                title="Unprocessable Entity",
            )
        if _flag(form.get("private"), not signed_in) != parent["private"]:
            return self.problem(
                422,
                "Visibility must be identical for all messages in a thread",
                title="Unprocessable Entity",
            )
        if role == "tool_call_result":
            call = form["toolCallId"]
            if call not in self._pending_calls(parent):
                return self.problem(
                    422,
                    f"Tool call {call} is not pending in this thread",
                    title="Unprocessable Entity",
                )
        return None

    def _check_files(
        self, model: dict[str, Any], request: web.Request, body: bytes
    ) -> web.Response | None:
        if not model["acceptsFiles"]:
            return self.problem(
                422, f"Model {model['id']} does not accept files", title="Unprocessable Entity"
            )
        for filename, ctype, data in _file_parts(request.headers.get("Content-Type", ""), body):
            if ctype not in model["acceptedFileTypes"]:
                return self.problem(400, "Unsupported file types in input", title="Bad Request")
            self.files.append((filename, ctype, data))
        return None

    def _pending_calls(self, message: dict[str, Any]) -> list[str]:
        """Tool call ids still without a result, below ``message`` (an assistant message
        with calls, or a result chained under it)."""
        answered: list[str] = []
        node: dict[str, Any] | None = message
        while node is not None and node["role"] == "tool_call_result":
            answered += [c["toolCallId"] for c in node["toolCalls"] or ()]
            node = self.messages.get(node["parent"] or "")
        if node is None or node["role"] != "assistant":
            return []
        return [
            c["toolCallId"]
            for c in node["toolCalls"] or ()
            if c["toolSource"] == "user_defined" and c["toolCallId"] not in answered
        ]

    # -- the thread ------------------------------------------------------------------------

    def new_id(self) -> str:
        """``msg_`` + 10 characters alternating letters and digits, unique here."""
        while True:
            mid = "msg_" + "".join(self._random.choice(_ID_ALPHABET[i % 2]) for i in range(10))
            if mid not in self.messages:
                return mid

    def _message(
        self,
        role: str,
        content: str,
        user: str,
        form: dict[str, Any],
        model: dict[str, Any],
        parent: dict[str, Any] | None,
        signed_in: bool,
        **fields: Any,
    ) -> dict[str, Any]:
        """A new flat message, stored and linked as a child of ``parent``."""
        now = datetime.now(UTC)
        mid = self.new_id()
        stop = _values(form.get("stop"))
        message = {
            "id": mid,
            "content": content,
            "inputParts": None,
            "creator": user,
            "role": role,
            "opts": {
                "maxTokens": int(form.get("maxTokens") or model["maxTokensDefault"]),
                "temperature": float(form.get("temperature") or model["temperatureDefault"]),
                "n": 1,
                "topP": float(form.get("topP") or model["topPDefault"]),
                "logprobs": None,
                "stop": stop,
            },
            "root": parent["root"] if parent else mid,
            "created": now.isoformat(),
            "modelId": model["id"],
            "modelHost": model["host"],
            "agentId": None,
            "deleted": None,
            "parent": parent["id"] if parent else None,
            "template": None,
            "children": None,
            "completion": None,
            "final": False,
            "original": None,
            "private": _flag(form.get("private"), not signed_in),
            "modelType": "chat" if role == "assistant" else None,
            "finishReason": None,
            "harmful": None if role == "assistant" else False,
            "expirationTime": None if signed_in else (now + timedelta(days=30)).isoformat(),
            "labels": [],
            "fileUrls": None,
            "toolCalls": None,
            "thinking": None,
            "toolDefinitions": None,
            "extraParameters": None,
            "errorCode": None,
            "errorDescription": None,
            "errorSeverity": None,
            "snippet": content[:80],
            "isLimitReached": False,
            "isOlderThan30Days": False,
        }
        message.update(fields)
        self.messages[mid] = message
        self.owners[mid] = user
        if parent is not None:
            parent["children"] = (parent["children"] or []) + [mid]
        return message

    async def _answer(
        self,
        request: web.Request,
        script: Script,
        form: dict[str, Any],
        model: dict[str, Any],
        user: str,
        signed_in: bool,
        parent: dict[str, Any] | None,
    ) -> web.StreamResponse:
        role = form["role"]
        tools = json.loads(form["toolDefinitions"]) if form.get("toolDefinitions") else None
        definitions = [
            {
                "name": t["name"],
                "description": t["description"],
                "parameters": t["parameters"],
                "toolSource": "user_defined",
            }
            for t in tools or ()
        ]
        extra = json.loads(form["extraParameters"]) if form.get("extraParameters") else None
        new: list[dict[str, Any]] = []
        if parent is None:
            system = model["systemPrompt"]
            top = (
                self._message("system", system, user, form, model, None, signed_in)
                if system
                else None
            )
            if top is not None:
                new.append(top)
        content = (form.get("content") or "").replace("\r\n", "\n")
        calls = None
        if role == "tool_call_result":
            call = next(
                c for c in self._calls_above(parent) if c["toolCallId"] == form["toolCallId"]
            )
            calls = [dict(call)]
        asked = self._message(
            role,
            content,
            user,
            form,
            model,
            parent or (new[0] if new else None),
            signed_in,
            toolCalls=calls,
            toolDefinitions=definitions or None,
            extraParameters=extra,
            fileUrls=[] if parent is None else None,
        )
        new.append(asked)
        root = asked["root"]
        pending = self._pending_calls(asked) if role == "tool_call_result" else []

        response = web.StreamResponse(status=200, headers={"Content-Type": "application/jsonl"})
        await response.prepare(request)
        await response.write(_line({"message": root, "type": "start"}))
        kind = "startThread" if parent is None else "addMessage"
        await response.write(
            _line(
                {
                    "message": new[0]["id"],
                    "id": new[0]["id"],
                    "messages": [dict(m) for m in new],
                    "type": kind,
                }
            )
        )
        if pending:
            # More results are due before the model runs again: nothing is generated.
            return await self._finish(response, script, root, new)

        reply = self._message("assistant", "", user, form, model, asked, signed_in)
        new.append(reply)
        sent = False  # the reply's addMessage

        def add_message(**fields: Any) -> bytes:
            nonlocal sent
            sent = True
            reply.update(fields)
            return _line(
                {
                    "message": reply["id"],
                    "id": reply["id"],
                    "messages": [dict(reply)],
                    "type": "addMessage",
                }
            )

        outcome = StreamOutcome.COMPLETE
        try:
            if script.reasoning and model["canThink"]:
                for piece in split_tokens(script.reasoning):
                    if script.delay:
                        await _sleep(script.delay)
                    if not sent:
                        await response.write(add_message(thinking=piece))
                    else:
                        reply["thinking"] += piece
                        await response.write(
                            _line(
                                {
                                    "message": reply["id"],
                                    "content": piece,
                                    "id": None,
                                    "type": "thinking",
                                }
                            )
                        )
        except (ConnectionError, RuntimeError):
            outcome = StreamOutcome.ABORTED
        calling = (
            bool(script.tool_calls)
            and _flag(form.get("enableToolCalling"), False)
            and model["canCallTools"]
            and bool(definitions)
        )
        text_script = (
            script
            if script.text_scripted or not calling
            else Script(chunks=[], fault=script.fault, delay=script.delay)
        )
        warnings = _warnings(script)
        stream_fault = script.fault
        if (
            stream_fault is not None
            and stream_fault.kind == "error_event"
            and stream_fault.reason in ("warning", "info")
        ):
            text_script = Script(chunks=text_script.pieces(), delay=text_script.delay)
        code = str(script.extra.get("error_code") or "otherError")

        def render(piece: str, index: int) -> bytes:
            notes = b"".join(self._error(reply, code, w) for w in warnings.get(index, ()))
            if not sent:
                return notes + add_message(content=piece)
            reply["content"] += piece
            return notes + _line(
                {"message": reply["id"], "content": piece, "type": "modelResponse"}
            )

        def error(fault: Fault) -> bytes:
            return self._error(reply, code, fault)

        if outcome == StreamOutcome.COMPLETE:
            outcome = await self.play(request, response, text_script, render, error=error)
        if outcome == StreamOutcome.COMPLETE:
            try:
                tail = b"".join(
                    self._error(reply, code, w)
                    for i, w in ((i, w) for i, ws in warnings.items() for w in ws)
                    if i >= len(text_script.pieces())
                )
                if tail:
                    await response.write(tail)
                if calling:
                    await self._tool_calls(response, script, reply, add_message, lambda: sent)
            except (ConnectionError, RuntimeError):
                outcome = StreamOutcome.ABORTED
        reply["snippet"] = reply["content"][:80]
        if outcome == StreamOutcome.ABORTED:
            reply["finishReason"] = "aborted"
            reply["final"] = True
            return response
        if not sent and outcome == StreamOutcome.COMPLETE:  # an empty answer has one too
            await response.write(add_message(content=""))
        if outcome == StreamOutcome.ERROR:
            reply["finishReason"] = (
                script.fault.reason if script.fault else None
            ) or "model overloaded"
        elif reply["toolCalls"]:
            reply["finishReason"] = None  # the run stops for the caller's tools
        else:
            reply["finishReason"] = script.finish_reason
        reply["isLimitReached"] = reply["finishReason"] == "length"
        return await self._finish(response, script, root, new)

    def _calls_above(self, message: dict[str, Any] | None) -> list[dict[str, Any]]:
        node = message
        while node is not None and node["role"] == "tool_call_result":
            node = self.messages.get(node["parent"] or "")
        return list(node["toolCalls"] or ()) if node is not None else []

    def _error(self, reply: dict[str, Any], code: str, fault: Fault) -> bytes:
        severity = fault.reason if fault.reason in _SEVERITIES else "error"
        if severity == "error":
            reply.update(errorCode=code, errorDescription=fault.message, errorSeverity=severity)
        return _line(
            {
                "message": reply["id"],
                "errorCode": code,
                "errorDescription": fault.message,
                "errorSeverity": severity,
                "type": "error",
            }
        )

    async def _tool_calls(
        self,
        response: web.StreamResponse,
        script: Script,
        reply: dict[str, Any],
        add_message: Any,
        sent: Any,
    ) -> None:
        if not sent():
            await response.write(add_message(content=""))
        calls = []
        for call in script.tool_calls or ():
            arguments = call.get("arguments", "")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, separators=(",", ":"))
            call_id = call.get("id") or f"call_{self._random.getrandbits(64):016x}"
            calls.append(
                {
                    "toolName": call["name"],
                    "args": arguments,
                    "toolCallId": call_id,
                    "toolSource": "user_defined",
                }
            )
            if script.delay:
                await _sleep(script.delay)
            await response.write(
                _line(
                    {
                        "message": reply["id"],
                        "toolCallId": call_id,
                        "toolName": call["name"],
                        "args": None,
                        "toolSource": "user_defined",
                        "type": "toolCall",
                    }
                )
            )
            for at in range(0, len(arguments), _TOOL_ARGS_PIECE):
                await response.write(
                    _line(
                        {
                            "message": reply["id"],
                            "toolCallId": call_id,
                            "toolName": "",
                            "args": arguments[at : at + _TOOL_ARGS_PIECE],
                            "toolSource": None,
                            "type": "toolCall",
                        }
                    )
                )
        reply["toolCalls"] = calls

    async def _finish(
        self, response: web.StreamResponse, script: Script, root: str, new: list[dict[str, Any]]
    ) -> web.StreamResponse:
        for message in new:
            message["final"] = True
        try:
            if script.extra.get("final_thread", True) is False:
                await response.write_eof()  # a server dying before its last lines
                return response
            await response.write(
                _line(
                    {
                        "message": root,
                        "id": root,
                        "messages": [dict(m) for m in new],
                        "type": "finalThread",
                    }
                )
            )
            await response.write(_line({"message": root, "type": "end"}))
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away at the end
        return response


def _warnings(script: Script) -> dict[int, list[Fault]]:
    """Non-fatal error chunks by the text chunk they come before: the script's
    ``error_event`` fault when its ``reason`` is ``warning``/``info``, and
    ``extra["warnings"]`` (a list of such faults)."""
    found = list(script.extra.get("warnings") or ())
    fault = script.fault
    if fault is not None and fault.kind == "error_event" and fault.reason in ("warning", "info"):
        found.append(fault)
    out: dict[int, list[Fault]] = {}
    for item in found:
        out.setdefault(item.after, []).append(item)
    return out


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    return str(value).lower() in ("true", "1")


def _file_parts(content_type: str, body: bytes) -> list[tuple[str, str, bytes]]:
    """``(filename, content type, bytes)`` of the file parts named ``files``."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    out = []
    for part in message.iter_parts() if message.is_multipart() else ():
        if part.get_param("name", header="content-disposition") != "files":
            continue
        filename = part.get_filename() or ""
        payload = part.get_payload(decode=True)
        out.append(
            (filename, part.get_content_type(), payload if isinstance(payload, bytes) else b"")
        )
    return out


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def _compact(value: Any) -> bytes:
    # pydantic's model_dump_json: no spaces, non-ASCII as UTF-8
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _line(value: dict[str, Any]) -> bytes:
    return _compact(value) + b"\n"
