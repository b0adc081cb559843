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
from llmplex.server.responses_api import ResponseRequest
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

    async def respond(body: ResponseRequest, request: Request) -> JSONResponse:
        return JSONResponse(body.model_dump(mode="json"))

    def dependency(request: Request) -> None:
        _check(fastpath.bearer_token(request))

    @app.post("/slow", dependencies=[Depends(dependency)])
    async def slow(body: ChatCompletionRequest, request: Request) -> JSONResponse:
        return await answer(body, request)

    @app.post("/slow-responses", dependencies=[Depends(dependency)])
    async def slow_responses(body: ResponseRequest, request: Request) -> JSONResponse:
        return await respond(body, request)

    for path, model, endpoint in (
        ("/fast", ChatCompletionRequest, answer),
        ("/fast-responses", ResponseRequest, respond),
    ):
        app.router.routes.append(
            fastpath.route(
                path,
                fastpath.handler(
                    path,
                    model,
                    lambda request: _check(fastpath.bearer_token(request)),
                    endpoint,
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


#: the Responses API's body model is strict: every kind of type and range error
RESPONSES_CASES = [
    ("good", b'{"model": "m", "input": "Hi", "temperature": 0.5}'),
    ("input parts", b'{"model": "m", "input": [{"role": "user", "content": "Hi"}]}'),
    ("input a number", b'{"model": "m", "input": 5}'),
    ("temperature a string", b'{"model": "m", "input": "Hi", "temperature": "1"}'),
    ("temperature too high", b'{"model": "m", "input": "Hi", "temperature": 3}'),
    ("stream a string", b'{"model": "m", "input": "Hi", "stream": "yes"}'),
    ("max_output_tokens a float", b'{"model": "m", "input": "Hi", "max_output_tokens": 1.5}'),
    ("metadata not strings", b'{"model": "m", "input": "Hi", "metadata": {"a": 1}}'),
    ("vendor field", b'{"model": "m", "input": "Hi", "top_k": 3}'),
    ("bad JSON", b'{"model": '),
    ("a list", b"[1]"),
    ("empty", b""),
]


@pytest.mark.parametrize("auth", [None, "Bearer sk-right"])
def test_fast_route_validates_responses_as_fastapi_would(auth):
    headers = {"content-type": "application/json", **({"authorization": auth} if auth else {})}
    seen = set()
    with ServerThread(_app()) as server:
        for name, body in RESPONSES_CASES:
            slow, fast = (
                httpx.post(server.url + path, content=body, headers=headers)
                for path in ("/slow-responses", "/fast-responses")
            )
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content), name
            assert fast.headers["content-type"] == slow.headers["content-type"]
            seen.add(fast.status_code)
    assert seen == ({200, 400} if auth else {400, 401})
