"""The hot routes' fast path (:mod:`llmplex.server.fastpath`) answers exactly as FastAPI's
dependency solving would: the same app serves one body model through a FastAPI route and
through ``fastpath.route`` (a ``fastpath.handler``), and every kind of bad request gets the
same status, headers and body from both, byte for byte."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from llmplex.server import ServerThread, fastpath
from llmplex.server.errors import APIError
from llmplex.server.handlers import install_error_handlers
from llmplex.server.schemas import ChatCompletionRequest

GOOD = b'{"model": "m", "messages": [{"role": "user", "content": "Hi"}]}'


def _check(token: str | None) -> None:
    if token != "sk-right":
        raise APIError(
            401,
            "Incorrect API key provided.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    async def answer(body: ChatCompletionRequest, request: Request) -> JSONResponse:
        return JSONResponse(
            {"model": body.model, "n": len(body.messages), "extra": sorted(body.model_extra or {})}
        )

    def dependency(request: Request) -> None:
        _check(fastpath.bearer_token(request))

    @app.post("/slow", dependencies=[Depends(dependency)])
    async def slow(body: ChatCompletionRequest, request: Request) -> JSONResponse:
        return await answer(body, request)

    app.router.routes.append(
        fastpath.route(
            "/fast",
            fastpath.handler(
                "/fast",
                ChatCompletionRequest,
                lambda request: _check(fastpath.bearer_token(request)),
                answer,
            ),
        )
    )
    return app


CASES = [
    ("good", GOOD, {"content-type": "application/json"}),
    ("good, +json", GOOD, {"content-type": "application/vnd.api+json; charset=utf-8"}),
    ("no content type", GOOD, {}),
    ("text/plain", GOOD, {"content-type": "text/plain"}),
    ("empty", b"", {"content-type": "application/json"}),
    ("bad JSON", b'{"model": ', {"content-type": "application/json"}),
    ("not UTF-8", b"\x80\x81", {"content-type": "application/json"}),
    ("a list", b"[1, 2]", {"content-type": "application/json"}),
    ("null", b"null", {"content-type": "application/json"}),
    ("no messages", b'{"model": "m"}', {"content-type": "application/json"}),
    (
        "bad role",
        b'{"model": "m", "messages": [{"role": "robot", "content": "x"}]}',
        {"content-type": "application/json"},
    ),
    (
        "bad part",
        (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "nope"}]}]}'),
        {"content-type": "application/json"},
    ),
    (
        "bad temperature",
        b'{"model": "m", "messages": [], "temperature": "hot"}',
        {"content-type": "application/json"},
    ),
    (
        "vendor field",
        b'{"model": "m", "messages": [], "top_k": 3}',
        {"content-type": "application/json"},
    ),
]


@pytest.mark.parametrize("auth", [None, "Bearer sk-right", "Bearer sk-wrong", "Basic abc"])
def test_fast_route_answers_as_fastapi_would(auth):
    with ServerThread(_app()) as server:
        for name, body, headers in CASES:
            if auth:
                headers = {**headers, "authorization": auth}
            answers = [
                httpx.post(server.url + path, content=body, headers=headers)
                for path in ("/slow", "/fast")
            ]
            slow, fast = answers
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content), name
            assert fast.headers.get("www-authenticate") == slow.headers.get("www-authenticate")
            assert fast.headers["content-type"] == slow.headers["content-type"]
    # the cases do reach every branch: some pass, some fail each way
    statuses = {a.status_code for a in answers}
    assert statuses <= {200, 400, 401}
