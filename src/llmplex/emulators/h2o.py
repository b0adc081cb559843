"""Emulator of H2O's gpt-gm: huggingface/chat-ui v0.5 in front of TGI (PROTOCOLS.md §3).

What chat-ui's ``hooks.server.ts`` enforces comes first, for every request:

- the ``hf-chat`` cookie names the session (a new one is made for a request without it,
  and the cookie is refreshed on every answer past the checks below);
- CSRF: a form POST (urlencoded, multipart, text/plain) needs a same-origin ``Referer``
  (403 otherwise);
- the ethics gate: until the session accepted the welcome modal at ``/settings``, every
  non-GET request outside ``/settings`` is a 405.

Then ``POST /settings`` (a SvelteKit form action: JSON redirect answer or a real 303),
``POST /conversation``, ``POST /conversation/{id}`` (the TGI event stream) and
``DELETE /conversation/{id}``. Conversations belong to the session that made them.

Script options (``Script(extra=...)``) and emulator attributes: ``crlf`` ends stream
lines with ``\\r\\n``; ``keepalive`` sends a ``:`` comment before the first token;
``details`` adds TGI's stream details to the final event (as if chat-ui asked for them).
``Script(extra={"final": False})`` ends the stream cleanly without its final event.
Status faults take ``step="settings"``, ``"conversation"`` or ``"generate"`` (default).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from uuid import UUID, uuid4

from aiohttp import web
from yarl import URL

from .emulator import Emulator, StreamOutcome
from .script import Fault, Script

__all__ = ["H2oEmulator", "ChatSession", "Conversation", "MODELS", "END_OF_TEXT"]

MODELS = (
    "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1",
    "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3",
    "h2oai/h2ogpt-gm-oasst1-en-2048-open-llama-13b",
)
END_OF_TEXT = "<|endoftext|>"  # Falcon's end-of-sequence token (id 11)
COOKIE = "hf-chat"
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded", "text/plain")
_GATE = "You need to accept the welcome modal first"
# chat-ui's messages for the statuses its routes raise
_STATUS_MESSAGES = {
    403: "Non-JSON form requests need to have a referer",
    405: _GATE,
    404: "Conversation not found",
    410: "Model not available anymore",
    429: "You are sending too many messages. Try again later.",
    500: "Internal Error",
}
_PAGE = (
    '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8">'
    '<title>H2O.ai Chat</title></head>\n<body><div id="svelte"></div></body>\n</html>\n'
)


# Typed request-storage keys (aiohttp >= 3.12 warns about plain strings).
_KeyType = getattr(web, "RequestKey", None)
_RECORD: Any = _KeyType("record", object) if _KeyType else "record"
_SESSION: Any = _KeyType("session", object) if _KeyType else "session"


def _js(value: Any) -> str:
    """JSON as ``JSON.stringify`` and serde write it: compact, UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class ChatSession:
    """One ``hf-chat`` session: its settings (``None`` until first saved)."""

    id: str
    settings: dict[str, Any] | None = None
    script: Script | None = None  # taken at the session's first step, used by its answer

    @property
    def accepted(self) -> bool:
        return bool(self.settings and self.settings.get("ethicsModalAcceptedAt"))


@dataclass
class Conversation:
    id: str
    session: str
    model: str
    messages: list[dict[str, str]] = field(default_factory=list)


class H2oEmulator(Emulator):
    """chat-ui v0.5 + TGI, with sessions, the CSRF and ethics checks, and scripted faults."""

    name = "h2o"
    provider = "H2o"

    def __init__(
        self,
        script: Script | None = None,
        *,
        crlf: bool = False,
        keepalive: bool = True,
        details: bool = False,
    ) -> None:
        super().__init__(script)
        self.crlf = crlf
        self.keepalive = keepalive
        self.details = details
        self.sessions: dict[str, ChatSession] = {}
        self.conversations: dict[str, Conversation] = {}
        self.deleted: list[str] = []  # ids of deleted conversations, in order

    def reset(self) -> None:
        super().reset()
        self.sessions.clear()
        self.conversations.clear()
        self.deleted.clear()

    def app(self) -> web.Application:
        application = super().app()
        application.middlewares.append(self._hooks)
        return application

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.home),
            web.post("/settings", self.settings),
            web.post("/conversation", self.create),
            web.post("/conversation/{id}", self.generate),
            web.delete("/conversation/{id}", self.delete),
        ]

    # -- hooks.server.ts -------------------------------------------------------------------

    @web.middleware
    async def _hooks(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        request[_RECORD] = await self.record(request)
        sid = request.cookies.get(COOKIE) or str(uuid4())
        request[_SESSION] = self.sessions.setdefault(sid, ChatSession(sid))
        if request.method == "POST" and request.content_type in _FORM_TYPES:
            referer = request.headers.get("Referer")
            if not referer:
                return _error_response(
                    request, 403, "Non-JSON form requests need to have a referer"
                )
            if _origin(referer) != str(request.url.origin()):
                return _error_response(request, 403, "Invalid referer for POST request")
        if (
            request.method not in ("GET", "OPTIONS", "HEAD")
            and not request.path.startswith("/settings")
            and not request[_SESSION].accepted
        ):
            return _error_response(request, 405, _GATE)
        response = await handler(request)
        if not response.prepared:  # streams set it themselves, before their headers go out
            _set_cookie(response, sid)
        return response

    # -- routes ----------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html")

    async def settings(self, request: web.Request) -> web.StreamResponse:
        session: ChatSession = request[_SESSION]
        fault = self._status_fault(session, "settings")
        if fault is not None:
            return self._fault_response(request, fault)
        form = request[_RECORD].form
        settings = dict(session.settings or {})
        # zod's z.boolean({coerce: true}) on formData.get(): any non-empty value is true.
        settings["shareConversationsWithModelAuthors"] = bool(
            form.get("shareConversationsWithModelAuthors")
        )
        settings["activeModel"] = form.get("activeModel") or MODELS[0]
        if form.get("ethicsModalAccepted"):
            settings["ethicsModalAcceptedAt"] = datetime.now(UTC).isoformat()
        session.settings = settings
        location = request.headers.get("Referer") or "/"
        if _accepts_json(request):
            return web.Response(
                text=_js({"type": "redirect", "status": 303, "location": location}),
                content_type="application/json",
            )
        return web.Response(status=303, headers={"Location": location})

    async def create(self, request: web.Request) -> web.StreamResponse:
        session: ChatSession = request[_SESSION]
        fault = self._status_fault(session, "conversation")
        if fault is not None:
            return self._fault_response(request, fault)
        body = request[_RECORD].json
        model = body.get("model") if isinstance(body, dict) else None
        if model not in MODELS:  # zod enum of the configured models
            return self._json(500, {"message": _STATUS_MESSAGES[500]})
        conversation = Conversation(secrets.token_hex(12), session.id, model)
        self.conversations[conversation.id] = conversation
        return self._json(200, {"conversationId": conversation.id})

    async def generate(self, request: web.Request) -> web.StreamResponse:
        session: ChatSession = request[_SESSION]
        conversation = self._owned(request)
        if conversation is None:
            return self._json(404, {"message": _STATUS_MESSAGES[404]})
        script = self._script(session)
        session.script = None  # this answer uses it up
        fault = script.fault
        if (
            fault is not None
            and fault.kind == "status"
            and (fault.step or "generate") == "generate"
        ):
            return self._fault_response(request, fault)
        body = request[_RECORD].json
        if not _valid_body(body):
            return self._json(500, {"message": _STATUS_MESSAGES[500]})
        return await self._stream(request, session, conversation, script, body)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        conversation = self._owned(request)
        if conversation is None:
            return self._json(404, {"message": _STATUS_MESSAGES[404]})
        del self.conversations[conversation.id]
        self.deleted.append(conversation.id)
        return web.Response()

    # -- the TGI stream --------------------------------------------------------------------

    async def _stream(
        self,
        request: web.Request,
        session: ChatSession,
        conversation: Conversation,
        script: Script,
        body: dict[str, Any],
    ) -> web.StreamResponse:
        given = body.get("parameters")
        parameters: dict[str, Any] = given if isinstance(given, dict) else {}
        pieces = script.pieces()
        finish = script.finish_reason
        limit = parameters.get("max_new_tokens")
        if isinstance(limit, int) and 0 < limit < len(pieces):
            pieces, finish = pieces[:limit], "length"  # TGI stops at the token budget
        script = dataclasses.replace(script, chunks=pieces)
        eol = "\r\n" if (self.crlf or script.extra.get("crlf")) else "\n"
        with_details = bool(
            parameters.get("details") or self.details or script.extra.get("details")
        )
        conversation.messages.append({"from": "user", "content": body["inputs"]})

        def event(data: dict[str, Any]) -> bytes:
            return f"data:{_js(data)}{eol}{eol}".encode()

        def final_fields(tokens: int) -> dict[str, Any]:
            details = None
            if with_details:
                reason = {"length": "length", "stop": "eos_token"}.get(finish, "stop_sequence")
                details = {"finish_reason": reason, "generated_tokens": tokens, "seed": None}
            return {"generated_text": "".join(pieces), "details": details}

        def render(piece: str, index: int) -> bytes:
            data: dict[str, Any] = {"token": _token(piece), "generated_text": None, "details": None}
            if finish == "length" and index == len(pieces) - 1:
                data.update(final_fields(len(pieces)))  # the budget's last token ends it
            return event(data)

        def error(fault: Fault) -> bytes:
            return event(
                {
                    "error": fault.message or "Request failed during generation",
                    "error_type": fault.reason or "generation",
                }
            )

        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        _set_cookie(response, session.id)
        await response.prepare(request)
        if self.keepalive and script.extra.get("keepalive", True):
            await response.write(f":{eol}{eol}".encode())  # axum's keep-alive comment
        outcome = await self.play(
            request,
            response,
            script,
            render,
            error=error,
            malformed=f"data:{{this is not json{eol}{eol}".encode(),
        )
        if outcome == StreamOutcome.ABORTED and script.fault and script.fault.kind == "disconnect":
            return response
        try:
            if outcome == StreamOutcome.COMPLETE:
                if not (finish == "length" and pieces) and script.extra.get("final", True):
                    final = {
                        "token": {
                            "id": 11,
                            "text": END_OF_TEXT,
                            "logprob": -0.0367,
                            "special": True,
                        },
                        **final_fields(len(pieces) + 1),
                    }
                    await response.write(event(final))
                conversation.messages.append({"from": "assistant", "content": "".join(pieces)})
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        return response

    # -- helpers ---------------------------------------------------------------------------

    def _owned(self, request: web.Request) -> Conversation | None:
        """The conversation in the path, if it exists and belongs to this session."""
        conversation = self.conversations.get(request.match_info["id"])
        if conversation is None or conversation.session != request[_SESSION].id:
            return None
        return conversation

    def _script(self, session: ChatSession) -> Script:
        if session.script is None:
            session.script = self.next_script()
        return session.script

    def _status_fault(self, session: ChatSession, step: str) -> Fault | None:
        """The script's status fault for ``step``; one that fires uses the script up."""
        fault = self._script(session).fault
        if fault is None or fault.kind != "status" or (fault.step or "generate") != step:
            return None
        session.script = None
        return fault

    def _fault_response(self, request: web.Request, fault: Fault) -> web.Response:
        message = fault.message or _STATUS_MESSAGES.get(fault.status, "Error")
        if fault.status in (403, 405):  # the hooks' own refusals
            response = _error_response(request, fault.status, message)
        else:
            response = self._json(fault.status, {"message": message})
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(int(fault.retry_after))
        return response

    @staticmethod
    def _json(status: int, data: Any) -> web.Response:
        return web.Response(status=status, text=_js(data), content_type="application/json")

    def settings_forms(self) -> list[dict[str, Any]]:
        """The forms posted to ``/settings``, in order."""
        return [r.form for r in self.requests_to("/settings", "POST")]


def _token(piece: str) -> dict[str, Any]:
    """A TGI token for ``piece``: a stable fake id and log-probability."""
    crc = zlib.crc32(piece.encode("utf-8"))
    return {
        "id": 100 + crc % 65000,
        "text": piece,
        "logprob": -round((crc % 997) / 1000, 4),
        "special": False,
    }


def _valid_body(body: Any) -> bool:
    """chat-ui's zod schema: non-blank ``inputs``, an ``options`` object with uuid ids."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
        return False
    if not body["inputs"].strip() or not isinstance(body.get("options"), dict):
        return False
    options = body["options"]
    for key in ("id", "response_id"):
        if key in options:
            try:
                UUID(str(options[key]))
            except ValueError:
                return False
    return all(
        not (k in options and not isinstance(options[k], bool)) for k in ("is_retry", "use_cache")
    )


def _accepts_json(request: web.Request) -> bool:
    """SvelteKit's negotiate(accept ?? "*/*", ["application/json", "text/html"])."""
    ranges = []
    for position, part in enumerate(request.headers.get("Accept", "*/*").split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        ranges.append((-q, position, media))
    for _q, _pos, media in sorted(ranges):
        if media in ("application/json", "application/*", "*/*"):
            return True
        if media in ("text/html", "text/*"):
            return False
    return False


def _error_response(request: web.Request, status: int, message: str) -> web.Response:
    """hooks.server.ts errorResponse: JSON ``{"error"}`` for JSON clients, else text.

    It is a bare Response, built before the session cookie is refreshed: no Set-Cookie.
    """
    send_json = "application/json" in request.headers.get(
        "Accept", ""
    ) or "application/json" in request.headers.get("Content-Type", "")
    if send_json:
        return web.Response(
            status=status, text=_js({"error": message}), content_type="application/json"
        )
    return web.Response(status=status, text=message, content_type="text/plain")


def _set_cookie(response: web.StreamResponse, session_id: str) -> None:
    # refreshSessionCookie(): dev-mode flags (no Secure: the emulator speaks plain http).
    expires = datetime.now(UTC) + timedelta(days=365)
    response.headers.add(
        "Set-Cookie",
        f"{COOKIE}={session_id}; Path=/; Expires="
        f"{format_datetime(expires, usegmt=True)}; HttpOnly; SameSite=Lax",
    )


def _origin(url: str) -> str:
    try:
        return str(URL(url).origin())
    except ValueError:  # a relative or broken Referer matches no origin
        return ""
