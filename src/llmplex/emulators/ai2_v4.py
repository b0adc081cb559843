"""Emulator of the Ai2 Playground's retired v4 message stream (PROTOCOLS.md §1).

The current API (v5) is :mod:`llmplex.emulators.ai2`; this one stands in for deployments
that still run ``/v4/message/stream`` (``AllenAI(api_version="v4")``).

``POST /v4/message/stream`` takes a multipart form and answers ``application/jsonl``: the
new message tree (rooted at the system message for models with a system prompt), chunk
lines, error lines, and the finalized tree. Threads live in the emulator: every message
id is remembered with its owner, so follow-ups need a known ``parent`` and the same
anonymous user id (or bearer token) that started the thread.
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
from .script import Fault, Script

__all__ = ["Ai2V4Emulator", "MODEL_HOSTS", "SYSTEM_PROMPT_MODELS"]

#: model id -> the host that serves it; any other combination is a 400
MODEL_HOSTS: dict[str, str] = {
    "tulu3-405b": "inferd",
    "OLMo-2-1124-13B-Instruct": "modal",
    "tulu-3-1-8b": "modal",
    "Llama-3-1-Tulu-3-70B": "modal",
    "olmoe-0125": "modal",
    "olmo-2-0325-32b-instruct": "modal",
}
#: models whose threads start with a system message (the first line's root)
SYSTEM_PROMPT_MODELS: dict[str, str] = {
    "OLMo-2-1124-13B-Instruct": "You are OLMo 2, a helpful and harmless AI Assistant built by "
    "the Allen Institute for AI.",
    "olmo-2-0325-32b-instruct": "You are OLMo 2, a helpful and harmless AI Assistant built by "
    "the Allen Institute for AI.",
    "olmoe-0125": "You are OLMoE, a helpful and harmless AI Assistant built by the Allen "
    "Institute for AI.",
}

_ID_ALPHABET = string.ascii_uppercase + string.digits
_ANONYMOUS_TTL = timedelta(days=30)  # anonymous threads expire


def _validation_error(loc: str, kind: str, msg: str) -> dict[str, Any]:
    # pydantic's errors(include_context=False, include_input=False)
    return {
        "type": kind,
        "loc": [loc],
        "msg": msg,
        "url": f"https://errors.pydantic.dev/2.10/v/{kind}",
    }


class Ai2V4Emulator(Emulator):
    """olmo-api's ``/v4/message/stream``, with per-session threads and scripted faults.

    ``tokens`` maps accepted bearer tokens to user ids (empty: every token is refused).
    ``Script(extra={"final_line": False})`` ends the stream cleanly without its final
    line (a server dying between the last chunk and the end).
    """

    name = "allenai-v4"
    provider = "AllenAI"

    def __init__(self, script: Script | None = None, *, seed: int | None = None) -> None:
        super().__init__(script)
        self._random = random.Random(seed)
        self.messages: dict[str, dict[str, Any]] = {}  # message id -> Message object
        self.owners: dict[str, str] = {}  # message id -> creator (anonymous id / user)
        self.tokens: dict[str, str] = {}

    def reset(self) -> None:
        super().reset()
        self.messages.clear()
        self.owners.clear()

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v4/message/stream", self.stream)]

    # -- HTTP ------------------------------------------------------------------------------

    @staticmethod
    def error_response(
        status: int, message: str, retry_after: float | None = None, **extra: Any
    ) -> web.Response:
        """olmo-api's error body: ``{"error": {"code": N, "message": "...", ...}}``."""
        body = json.dumps({"error": {"code": status, "message": message, **extra}}) + "\n"
        headers = {"Content-Type": "application/json"}
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        return web.Response(status=status, body=body.encode("utf-8"), headers=headers)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        form = record.form  # Flask's request.form: multipart or urlencoded

        user = self._authenticate(request)
        if isinstance(user, web.Response):
            return user
        invalid = self._validate(form)
        if invalid is not None:
            return invalid
        model, host = form["model"], form["host"]
        if MODEL_HOSTS.get(model) != host:
            return self.error_response(400, f"Invalid model/host combination {model}/{host}")
        parent_id = form.get("parent") or None
        if parent_id is not None:
            if parent_id not in self.messages:
                return self.error_response(400, f"parent message {parent_id} not found")
            if self.owners.get(parent_id) != user:
                return self.error_response(
                    403,
                    "The current thread was not created by the current user. "
                    "You do not have permission to add messages to it.",
                )

        script = self.next_script()
        fault = script.fault_at("status")
        if fault is not None:
            message = fault.message or HTTPStatus(fault.status).phrase
            return self.error_response(fault.status, message, fault.retry_after)
        return await self._answer(request, script, form, user, parent_id)

    def _authenticate(self, request: web.Request) -> str | web.Response:
        """The caller's identity: a bearer token's user, else the anonymous id."""
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            user = self.tokens.get(auth[7:].strip())
            return user if user else self.error_response(401, "invalid token")
        anonymous = request.headers.get("X-Anonymous-User-ID", "").strip()
        if not anonymous:
            return self.error_response(
                401, "missing X-Anonymous-User-ID header or Authorization bearer token"
            )
        return anonymous

    def _validate(self, form: dict[str, Any]) -> web.Response | None:
        """The request model's checks; a 400 with ``validation_errors`` if any fails."""
        errors = []
        for key in ("content", "model", "host"):
            value = form.get(key)
            if isinstance(value, list):
                errors.append(
                    _validation_error(key, "string_type", "Input should be a valid string")
                )
            elif value is None:
                errors.append(_validation_error(key, "missing", "Field required"))
            elif key == "content" and len(value) < 1:
                errors.append(
                    _validation_error(
                        key, "string_too_short", "String should have at least 1 character"
                    )
                )
        if form.get("private") not in (None, "true", "false"):
            errors.append(
                _validation_error("private", "bool_parsing", "Input should be a valid boolean")
            )
        for key, low, high, cast in (
            ("temperature", 0, 1, float),
            ("top_p", 0.01, 1, float),
            ("max_tokens", 1, 2048, int),
        ):
            if form.get(key) is None:
                continue
            try:
                value = cast(form[key])
            except (TypeError, ValueError):
                errors.append(
                    _validation_error(
                        key, f"{cast.__name__}_parsing", f"Input should be a valid {cast.__name__}"
                    )
                )
                continue
            if value < low:
                errors.append(
                    _validation_error(
                        key, "greater_than_equal", f"Input should be greater than or equal to {low}"
                    )
                )
            elif value > high:
                errors.append(
                    _validation_error(
                        key, "less_than_equal", f"Input should be less than or equal to {high}"
                    )
                )
        if not errors:
            return None
        lines = [
            f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} "
            "for CreateMessageRequest"
        ]
        for e in errors:
            lines += [e["loc"][0], f"  {e['msg']} [type={e['type']}]"]
        return self.error_response(400, "\n".join(lines), validation_errors=errors)

    # -- the thread ------------------------------------------------------------------------

    def new_id(self) -> str:
        """``msg_`` + 10 upper-case letters and digits, unique in this emulator."""
        while True:
            mid = "msg_" + "".join(self._random.choices(_ID_ALPHABET, k=10))
            if mid not in self.messages:
                return mid

    def _message(
        self,
        role: str,
        content: str,
        user: str,
        form: dict[str, Any],
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """A new Message object, stored and linked under ``parent``."""
        now = datetime.now(UTC)
        mid = self.new_id()
        stop = form.get("stop")
        message = {
            "id": mid,
            "content": content,
            "snippet": content[:40],
            "creator": user,
            "role": role,
            "opts": {
                "max_tokens": int(form.get("max_tokens") or 2048),
                "temperature": float(form.get("temperature") or 0.7),
                "n": 1,
                "top_p": float(form.get("top_p") or 1.0),
                "logprobs": None,
                "stop": None if stop is None else stop if isinstance(stop, list) else [stop],
            },
            "root": parent["root"] if parent else mid,
            "created": now.isoformat(),
            "model_id": form["model"],
            "model_host": form["host"],
            "deleted": None,
            "parent": parent["id"] if parent else None,
            "template": None,
            "logprobs": None,
            "children": None,
            "completion": None,
            "final": False,  # until the reply ends
            "original": None,
            # anonymous users are always private
            "private": user not in self.tokens.values() or form.get("private") != "false",
            "model_type": "chat",
            "finish_reason": None,
            "harmful": None,
            "expiration_time": (now + _ANONYMOUS_TTL).isoformat(),
            "labels": [],
            "file_urls": None,
        }
        self.messages[mid] = message
        self.owners[mid] = user
        if parent is not None:
            parent["children"] = (parent["children"] or []) + [message]
        return message

    async def _answer(
        self,
        request: web.Request,
        script: Script,
        form: dict[str, Any],
        user: str,
        parent_id: str | None,
    ) -> web.StreamResponse:
        top: dict[str, Any] | None
        if parent_id is not None:
            top = user_msg = self._message(
                "user", form["content"], user, form, self.messages[parent_id]
            )
        else:
            system = SYSTEM_PROMPT_MODELS.get(form["model"])
            top = self._message("system", system, user, form, None) if system else None
            user_msg = self._message("user", form["content"], user, form, top)
            top = top or user_msg
        reply = self._message("assistant", "", user, form, user_msg)

        response = web.StreamResponse(status=200, headers={"Content-Type": "application/jsonl"})
        await response.prepare(request)
        await response.write(_line(_tree(top)))

        streamed: list[str] = []

        def render(piece: str, index: int) -> bytes:
            streamed.append(piece)
            return _line({"message": reply["id"], "content": piece, "logprobs": []})

        def error(fault: Fault) -> bytes:
            return _line(
                {
                    "message": reply["id"],
                    "error": fault.message,
                    "reason": fault.reason or "grpc inference failed",
                }
            )

        outcome = await self.play(request, response, script, render, error=error)
        reply["content"] = "".join(streamed)
        reply["snippet"] = reply["content"][:40]
        _finalize(top)
        if outcome == StreamOutcome.ABORTED:
            reply["finish_reason"] = "aborted"
            return response
        fault_reason = script.fault.reason if script.fault is not None else None
        reply["finish_reason"] = (
            script.finish_reason if outcome == StreamOutcome.COMPLETE else fault_reason or "aborted"
        )
        if script.extra.get("final_line", True) is False:
            # A server that dies between the last chunk and the final line: clean EOF.
            await response.write_eof()
            return response
        try:
            await response.write(_line(_tree(top)))
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away after the last chunk
        return response


def _finalize(node: dict[str, Any]) -> None:
    node["final"] = True
    for child in node["children"] or ():
        _finalize(child)


def _tree(node: dict[str, Any]) -> dict[str, Any]:
    """A snapshot of ``node`` and its descendants (later turns mutate the stored ones)."""
    copy = dict(node)
    copy["opts"] = dict(node["opts"])
    if node["children"] is not None:
        copy["children"] = [_tree(child) for child in node["children"]]
    return copy


def _line(value: dict[str, Any]) -> bytes:
    # Python's json.dumps default spacing, one object per line, as the real server sends.
    return (json.dumps(value) + "\n").encode("utf-8")
