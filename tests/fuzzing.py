"""Schemathesis fuzzing of one route of a running server, shared by the server's tests."""

from __future__ import annotations


def fuzz_route(url: str, path: str, examples: int = 150) -> dict[int, int]:
    """POST bodies generated from the served OpenAPI schema of ``path``, valid and invalid;
    asserts none gets a 5xx and every error is OpenAI-shaped. Returns status -> count, so
    the caller can check both kinds were tried."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operation = schema[path]["POST"]
    seen: dict[int, int] = {}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(GenerationMode.POSITIVE)
        | operation.as_strategy(GenerationMode.NEGATIVE)
    )
    def check(case):
        response = case.call(base_url=url, timeout=15)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (case.body, response.text)
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"} and body["error"]["message"], body

    check()
    return seen
