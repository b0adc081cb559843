"""A local emulator of the Echo service (``llmplex serve --emulate``, ``llmplex emulate
echo``, the ``llmplex_emulator("Echo")`` fixture): the protocol of
:mod:`llmplex_echo.provider`, byte for byte. Unless a script sets the text, it echoes
the last user message (in capitals for ``echo-loud``)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from llmplex.emulators.emulator import Emulator, StreamOutcome
from llmplex.emulators.script import Fault, Script

from .spec import MODELS, SPEC

__all__ = ["EchoEmulator"]


class EchoEmulator(Emulator):
    """The Echo service. ``api_keys``: the keys it accepts (default: the spec's dummy)."""

    name = "echo"
    provider = "Echo"

    def __init__(
        self,
        script: Script | None = None,
        *,
        api_keys: tuple[str, ...] = (str(SPEC.emulator_options["api_key"]),),
    ) -> None:
        super().__init__(script)
        self.api_keys = set(api_keys)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/echo", self.echo)]

    async def echo(self, request: web.Request) -> web.StreamResponse:
        record = await self.record(request)
        script = self.next_script()
        if request.headers.get("X-Echo-Key") not in self.api_keys:
            return web.json_response({"error": "invalid key"}, status=401)
        refusal = script.fault_at("status")  # Fault.http_status(...)
        if refusal is not None:
            return web.json_response({"error": refusal.message or "failed"}, status=refusal.status)
        body: Any = record.json
        if (
            not isinstance(body, dict)
            or body.get("model") not in MODELS
            or not isinstance(body.get("messages"), list)
        ):
            return web.json_response({"error": "expected model and messages"}, status=400)
        if not script.text_scripted:  # echo the last user message
            last = next(
                (
                    m.get("content")
                    for m in reversed(body["messages"])
                    if isinstance(m, dict) and m.get("role") == "user"
                ),
                "",
            )
            text = str(last).upper() if body["model"] == "echo-loud" else str(last)
            script = Script(text, delay=script.delay, fault=script.fault)
        pieces = script.pieces()
        finish = script.finish_reason
        limit = body.get("max_words")
        if isinstance(limit, int) and len(pieces) > limit:
            pieces, finish = pieces[:limit], "length"
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        outcome = await self.play(
            request,
            response,
            Script(chunks=pieces, delay=script.delay, fault=script.fault),
            lambda piece, _: _line({"delta": piece}),
            error=_error,
        )
        if outcome == StreamOutcome.COMPLETE:
            await response.write(_line({"done": True, "finish": finish}))
        if outcome != StreamOutcome.ABORTED:
            await response.write_eof()
        return response


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode() + b"\n"


def _error(fault: Fault) -> bytes:
    return _line({"error": fault.message})
