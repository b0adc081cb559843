"""Emulator of open-assistant.io's chat API (PROTOCOLS.md §2).

Five endpoints under ``/api/chat``: create a chat, post a prompter message, request an
assistant message, stream its events (sse-starlette framing: ``data: <json>\\r\\n\\r\\n``,
``: ping - <time>`` comments) and delete the chat. Every request needs the next-auth
session cookie (``next-auth.session-token`` or ``__Secure-next-auth.session-token``);
without one the answer is a 403 with an empty body, as on the real site. Chats belong to
the session that created them: another session gets ``404 Chat not found``.

The script is taken when a chat is created (and for every later assistant message in the
same chat). ``Fault.http_status(..., step=...)`` picks the failing request: ``"chat"``,
``"prompter"``, ``"assistant"``, ``"events"`` or ``"delete"`` (no step: the first one).
``Script(extra={"queue": n})`` sends ``n`` extra ``pending`` events (queue positions
``n`` .. 0) before the first token; ``extra={"final_event": False}`` ends the stream
cleanly without its final ``message`` event (a server dying after the last token).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web

from .emulator import Emulator, StreamOutcome
from .script import Script

__all__ = ["OpenAssistantEmulator", "MODELS", "SESSION_COOKIES", "SAMPLING_KEYS"]

SESSION_COOKIES = ("__Secure-next-auth.session-token", "next-auth.session-token")
MODELS = (
    "OA_SFT_Llama_30B_6",
    "OA_SFT_Llama_30B_7",
    "OA_SFT_Llama2_70B_10",
    "OA_SFT_CodeLlama_13B_10",
    "OA_SFT_Pythia_12B_4",
)
#: the server's SamplingParameters fields (others are ignored by its pydantic model)
SAMPLING_KEYS = (
    "top_k",
    "top_p",
    "typical_p",
    "temperature",
    "repetition_penalty",
    "max_new_tokens",
)
STEPS = ("chat", "prompter", "assistant", "events", "delete")

_DEFAULT_MESSAGES = {
    400: "Bad Request",
    404: "Chat not found",
    413: "Message content exceeds max length",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "The server is currently busy. Please try again later.",
}


@dataclass
class Chat:
    """One chat: its owner's session token, its messages and the script answering it."""

    id: str
    owner: str
    created_at: str
    script: Script  # answers the chat's latest assistant message
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def read(self) -> dict[str, Any]:
        tail = list(self.messages)[-1] if self.messages else None
        return {
            "id": self.id,
            "created_at": self.created_at,
            "modified_at": self.created_at,
            "title": None,
            "hidden": False,
            "allow_data_use": True,
            "active_thread_tail_message_id": tail,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _frame(data: Any) -> bytes:
    """One sse-starlette event: ``data: `` + pydantic's ``.json()`` (spaced) + CRLF CRLF."""
    return b"data: " + json.dumps(data).encode("utf-8") + b"\r\n\r\n"


def _ping() -> bytes:
    return f": ping - {datetime.now(UTC).replace(tzinfo=None)}\r\n\r\n".encode()


class OpenAssistantEmulator(Emulator):
    """open-assistant.io's ``/api/chat`` endpoints with per-session chats.

    ``tokens``: the session tokens accepted (``None``: any non-empty token).
    ``max_content_length``: the longest prompter message accepted (longer: 413).
    ``ping_interval``: seconds between keep-alive comments (one is always sent first).
    """

    name = "openassistant"
    provider = "OpenAssistant"

    def __init__(
        self,
        script: Script | None = None,
        *,
        tokens: Iterable[str] | None = None,
        max_content_length: int = 16384,
        ping_interval: float = 15.0,
    ) -> None:
        super().__init__(script)
        self.tokens: set[str] | None = set(tokens) if tokens is not None else None
        self.max_content_length = max_content_length
        self.ping_interval = ping_interval
        self.chats: dict[str, Chat] = {}
        self._random = random.Random()

    def reset(self) -> None:
        super().reset()
        self.chats.clear()

    def live_chats(self, token: str | None = None) -> list[str]:
        """Ids of the chats not deleted yet (of the session ``token``, if given)."""
        return [c.id for c in self.chats.values() if token is None or c.owner == token]

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/chat", self.create_chat),
            web.get("/api/chat", self.get_chat),
            web.delete("/api/chat", self.delete_chat),
            web.post("/api/chat/prompter_message", self.prompter_message),
            web.post("/api/chat/assistant_message", self.assistant_message),
            web.route("*", "/api/chat/events", self.events),  # the method is not checked
        ]

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def error_response(
        status: int, message: str | None, retry_after: float | None = None
    ) -> web.Response:
        """``{"message": ...}`` with the status; ``None`` gives an empty body."""
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
        if message is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(
            {"message": message}, status=status, headers=headers, dumps=json.dumps
        )

    @staticmethod
    def json_response(data: Any) -> web.Response:
        return web.json_response(data, dumps=json.dumps)

    def _session(self, request: web.Request) -> str | None:
        for name in SESSION_COOKIES:
            token = request.cookies.get(name, "")
            if token and (self.tokens is None or token in self.tokens):
                return token
        return None

    def _fault(self, script: Script, step: str) -> web.Response | None:
        fault = script.fault_at("status", step)
        if fault is None or (not fault.step and step != "chat"):
            return None
        if fault.status == 403 or (fault.status == 404 and not fault.message):
            return self.error_response(fault.status, None)  # banned / chat disabled: no body
        text = (
            fault.message or _DEFAULT_MESSAGES.get(fault.status) or HTTPStatus(fault.status).phrase
        )
        return self.error_response(fault.status, text, fault.retry_after)

    async def _begin(self, request: web.Request) -> tuple[str, Any] | web.Response:
        """Record the request and authenticate it: (session token, JSON body) or an error."""
        record = await self.record(request)
        token = self._session(request)
        if token is None:
            return web.Response(status=403)
        return token, record.json

    def _chat(self, token: str, chat_id: Any) -> Chat | web.Response:
        chat = self.chats.get(chat_id) if isinstance(chat_id, str) else None
        if chat is None or chat.owner != token:
            return self.error_response(404, "Chat not found")
        return chat

    @staticmethod
    def _body(data: Any, required: dict[str, type | tuple[type, ...]]) -> web.Response | None:
        if not isinstance(data, dict):
            return OpenAssistantEmulator.error_response(422, "Request body must be a JSON object")
        for key, kind in required.items():
            if key not in data or not isinstance(data[key], kind):
                return OpenAssistantEmulator.error_response(422, f"Invalid or missing field: {key}")
        return None

    # -- endpoints -------------------------------------------------------------------------

    async def create_chat(self, request: web.Request) -> web.Response:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        script = self.next_script()
        failed = self._fault(script, "chat")
        if failed is not None:
            return failed
        chat = Chat(id=str(uuid.uuid4()), owner=begun[0], created_at=_now(), script=script)
        self.chats[chat.id] = chat
        return self.json_response(chat.read())

    async def get_chat(self, request: web.Request) -> web.Response:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        if "chat_id" not in request.query:
            chats = [c.read() for c in self.chats.values() if c.owner == begun[0]]
            return self.json_response({"chats": chats, "next": None, "prev": None})
        chat = self._chat(begun[0], request.query["chat_id"])
        if isinstance(chat, web.Response):
            return chat
        return self.json_response({**chat.read(), "messages": list(chat.messages.values())})

    async def delete_chat(self, request: web.Request) -> web.Response:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        chat = self._chat(begun[0], request.query.get("chat_id"))
        if isinstance(chat, web.Response):
            return chat
        failed = self._fault(chat.script, "delete")
        if failed is not None:
            return failed
        del self.chats[chat.id]
        return web.Response(status=200)

    async def prompter_message(self, request: web.Request) -> web.Response:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        token, data = begun
        invalid = self._body(data, {"chat_id": str, "content": str})
        if invalid is not None:
            return invalid
        chat = self._chat(token, data["chat_id"])
        if isinstance(chat, web.Response):
            return chat
        failed = self._fault(chat.script, "prompter")
        if failed is not None:
            return failed
        parent_id = data.get("parent_id")
        if parent_id is not None and parent_id not in chat.messages:
            return self.error_response(400, "Parent message not found")
        if len(data["content"]) > self.max_content_length:
            return self.error_response(413, "Message content exceeds max length")
        message = self._message(chat, "prompter", parent_id, data["content"], "manual", None)
        return self.json_response(message)

    async def assistant_message(self, request: web.Request) -> web.Response:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        token, data = begun
        invalid = self._body(data, {"chat_id": str, "parent_id": str, "model_config_name": str})
        if invalid is not None:
            return invalid
        chat = self._chat(token, data["chat_id"])
        if isinstance(chat, web.Response):
            return chat
        if any(m["role"] == "assistant" for m in chat.messages.values()):
            chat.script = self.next_script()  # a later answer in the same chat: its own script
        failed = self._fault(chat.script, "assistant")
        if failed is not None:
            return failed
        parent = chat.messages.get(data["parent_id"])
        if parent is None or parent["role"] != "prompter":
            return self.error_response(400, "Parent message not found")
        model = data["model_config_name"]
        if model not in MODELS:
            return self.error_response(422, f"Model {model} not found")
        sampling = data.get("sampling_parameters", {})
        problem = _check_sampling(sampling)
        if problem is not None:
            return self.error_response(422, problem)
        if not isinstance(data.get("plugins", []), list):
            return self.error_response(422, "Invalid or missing field: plugins")
        known = {key: sampling.get(key) for key in SAMPLING_KEYS}
        known["max_new_tokens"] = sampling.get("max_new_tokens", 1024)
        work = {
            "model_config": {
                "name": model,
                "model_id": model,
                "max_input_length": 1024,
                "max_total_length": 2048,
                "quantized": False,
            },
            "sampling_parameters": known,
            "do_sample": True,
            "seed": self._random.randrange(2**64 - 1),
            "plugins": data.get("plugins", []),
        }
        message = self._message(chat, "assistant", parent["id"], None, "pending", work)
        return self.json_response(message)

    async def events(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        chat = self._chat(begun[0], request.query.get("chat_id"))
        if isinstance(chat, web.Response):
            return chat
        script = chat.script
        failed = self._fault(script, "events")
        if failed is not None:
            return failed
        message = chat.messages.get(request.query.get("message_id", ""))
        if message is None or message["role"] != "assistant":
            return self.error_response(404, "Message not found")

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "Connection": "keep-alive",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        pinger: asyncio.Future[None] | None = None
        try:
            # The first keep-alive comment goes out before anything else, so clients show
            # they skip comments; the later ones follow on their own schedule.
            await response.write(_ping())
            pinger = asyncio.ensure_future(self._keep_alive(response))
            if message["state"] == "complete":  # already answered: only the final event
                await response.write(_frame({"event_type": "message", "message": message}))
                await response.write_eof()
                return response
            for position in range(int(script.extra.get("queue", 0)), -1, -1):
                await response.write(
                    _frame(
                        {
                            "event_type": "pending",
                            "queue_position": position,
                            "queue_size": position + 1,
                        }
                    )
                )
            outcome = await self.play(
                request,
                response,
                script,
                lambda piece, index: _frame({"event_type": "token", "text": piece}),
                error=lambda fault: _frame(
                    {"event_type": "error", "error": fault.message or "Timeout", "message": None}
                ),
                malformed=b"data: {this is not json\r\n\r\n",
            )
        except ConnectionError:
            return response
        finally:
            if pinger is not None:
                pinger.cancel()
        if outcome == StreamOutcome.ABORTED:
            return response
        if outcome == StreamOutcome.COMPLETE and script.extra.get("final_event", True):
            message.update(state="complete", content=script.reply)
            try:
                await response.write(_frame({"event_type": "message", "message": message}))
            except ConnectionError:
                return response
        elif outcome == StreamOutcome.ERROR:
            message.update(state="aborted_by_worker")
        try:
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    # -- internals -------------------------------------------------------------------------

    async def _keep_alive(self, response: web.StreamResponse) -> None:
        """sse-starlette's ping: a comment every ``ping_interval`` seconds."""
        try:
            while True:
                await asyncio.sleep(self.ping_interval)
                await response.write(_ping())
        except (ConnectionError, RuntimeError):
            pass

    def _message(
        self,
        chat: Chat,
        role: str,
        parent_id: str | None,
        content: str | None,
        state: str,
        work: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """A MessageRead, stored in the chat."""
        message: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "parent_id": parent_id,
            "content": content,
            "chat_id": chat.id,
            "created_at": _now(),
            "role": role,
            "state": state,
            "score": 0,
            "reports": [],
            "work_parameters": work,
            "safe_content": None,
            "safety_level": None,
            "safety_label": None,
            "safety_rots": None,
            "used_plugin": None,
        }
        chat.messages[message["id"]] = message
        return message


def _check_sampling(sampling: Any) -> str | None:
    """What pydantic would reject in ``SamplingParameters`` (unknown keys are ignored)."""
    if not isinstance(sampling, dict):
        return "sampling_parameters must be an object"
    for key in SAMPLING_KEYS:
        value = sampling.get(key)
        if key == "max_new_tokens":
            if key in sampling and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                return "sampling_parameters.max_new_tokens must be a positive integer"
        elif value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            return f"sampling_parameters.{key} must be a number or null"
        elif key == "top_k" and value is not None and not float(value).is_integer():
            return "sampling_parameters.top_k must be an integer"
    return None
