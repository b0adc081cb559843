"""Prometheus metrics of the server (``GET /metrics``, the ``prometheus-client`` package,
imported only when metrics are on).

Every name starts with ``llmplex_``:

``llmplex_requests_total{route,method,status}``
    HTTP requests answered (``route`` is the route's template, ``/v1/models/{model_id:path}``;
    ``unmatched`` for a path no route serves, so a scan cannot grow the label set).
``llmplex_request_duration_seconds{route}``
    From the request's arrival to the end of its response (a stream: its last byte).
``llmplex_time_to_first_token_seconds{route}``
    Streams only: from the request's arrival to the first byte of the stream's body.
``llmplex_tokens_in_total`` / ``llmplex_tokens_out_total{provider,model}``
    Prompt and completion tokens as the upstream reported them (``usage``).
``llmplex_upstream_attempts_total{provider,outcome}``
    Every try of a provider: ``ok``, ``error``, ``invalid``, ``cancelled``.
``llmplex_upstream_errors_total{provider,error}``
    Failed attempts, by the error's class (``RateLimitError``, ``ProviderTimeoutError``...).
``llmplex_fallbacks_total{provider}``
    Attempts that followed a failed attempt of the same request (``provider``: the one
    tried next).
``llmplex_active_streams``
    Streaming responses being written now.
``llmplex_cooldowns_total{provider}``
    Failures that started (or lengthened) a provider's cooldown.
``llmplex_providers_cooling_down``
    Providers skipped right now for a recent failure (the answering worker's view of the
    router's health; the same for all with a shared state backend).

With several worker processes (``llmplex serve --workers N``) the supervisor points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before it starts them; every worker then
writes its values there and ``/metrics``, whichever worker answers it, sums them all
(prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request  # at module level: FastAPI resolves the annotation
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..routing import Attempt, RouterObserver

__all__ = ["METRICS_MODES", "Metrics", "MetricsMiddleware", "route_of"]

#: ``[server] metrics``: "public" (no key needed), "keyed" (an API key needed), "off"
METRICS_MODES = ("public", "keyed", "off")

# Answers take from milliseconds (a cached model list) to minutes (a long generation).
_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
#: label children kept by :meth:`Metrics._child` at most (then looked up each time)
_MAX_CHILDREN = 4096
_METHODS = frozenset({"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"})


def route_of(scope: Scope) -> str:
    """The template of the route that served ``scope`` (after the app ran), else
    ``"unmatched"``: raw paths never become labels."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class _CoolingDown:
    """A collector: how many providers cool down now, read from the router at scrape."""

    def __init__(self, status: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.status = status

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        cooling = sum(1 for health in self.status().values() if health.get("cooling_down"))
        yield GaugeMetricFamily(
            "llmplex_providers_cooling_down",
            "Providers skipped now for a recent failure.",
            value=cooling,
        )


class Metrics(RouterObserver):
    """The server's metrics, in a registry of their own (so several apps in one process,
    as in tests, each count their own); also the router observer that counts attempts."""

    def __init__(self, status: Callable[[], dict[str, dict[str, Any]]]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry()
        self.cooling = _CoolingDown(status)
        registry.register(self.cooling)
        self.requests = Counter(
            "llmplex_requests",
            "HTTP requests answered.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "llmplex_request_duration_seconds",
            "Seconds from a request's arrival to its response's end.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.first_token = Histogram(
            "llmplex_time_to_first_token_seconds",
            "Seconds from a streaming request's arrival to the first byte of its stream.",
            ["route"],
            buckets=_FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.tokens_in = Counter(
            "llmplex_tokens_in",
            "Prompt tokens (upstream usage).",
            ["provider", "model"],
            registry=registry,
        )
        self.tokens_out = Counter(
            "llmplex_tokens_out",
            "Completion tokens (upstream usage).",
            ["provider", "model"],
            registry=registry,
        )
        self.attempts = Counter(
            "llmplex_upstream_attempts",
            "Tries of a provider.",
            ["provider", "outcome"],
            registry=registry,
        )
        self.errors = Counter(
            "llmplex_upstream_errors",
            "Failed tries, by error class.",
            ["provider", "error"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "llmplex_fallbacks",
            "Tries that followed a failed one.",
            ["provider"],
            registry=registry,
        )
        self.cooldowns = Counter(
            "llmplex_cooldowns",
            "Failures that started a cooldown.",
            ["provider"],
            registry=registry,
        )
        self.active_streams = Gauge(
            "llmplex_active_streams",
            "Streams being written now.",
            registry=registry,
            multiprocess_mode="livesum",
        )

        # the children of label values seen (labels() takes a lock and validates each time)
        self._children: dict[tuple[Any, ...], Any] = {}

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request answered: its route, method, status and duration."""
        method = method if method in _METHODS else "other"
        self._child(self.requests, route, method, str(status)).inc()
        self._child(self.latency, route).observe(seconds)

    def finished(
        self,
        route: str,
        method: str,
        status: int,
        began: float,
        streaming: bool,
        first: float | None,
    ) -> None:
        """A request's answer has ended: count it (:meth:`answered`), and for a stream
        (counted open since it started) close it and time its first byte. ``began`` and
        ``first`` are ``time.perf_counter()`` values."""
        self.answered(route, method, status, time.perf_counter() - began)
        if streaming:
            self.active_streams.dec()
            if first is not None:
                self._child(self.first_token, route).observe(first - began)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, kept: ``labels()`` validates and locks each time."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*labels)
            if len(self._children) < _MAX_CHILDREN:  # (model names come from clients)
                self._children[key] = child
        return child

    def attempt_ended(self, attempt: Attempt) -> None:
        provider = attempt.provider
        child = self._child
        child(self.attempts, provider, attempt.outcome).inc()
        if attempt.fallback:
            child(self.fallbacks, provider).inc()
        if attempt.outcome == "error" and attempt.error is not None:
            child(self.errors, provider, type(attempt.error).__name__).inc()
        if attempt.cooldown:
            child(self.cooldowns, provider).inc()
        usage = attempt.usage
        if usage is not None:
            child(self.tokens_in, provider, attempt.model).inc(usage.prompt_tokens or 0)
            child(self.tokens_out, provider, attempt.model).inc(usage.completion_tokens or 0)

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type; all workers' values summed in
        multiprocess mode."""
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            generate_latest,
        )

        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self.cooling)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def endpoint(
        self, authenticate: Callable[[Mapping[str, str]], object] | None = None
    ) -> Callable[..., Any]:
        """The ``/metrics`` route; with ``authenticate`` (the server's
        :meth:`KeyRing.authenticate <llmplex.server.keys.KeyRing.authenticate>`), only
        for a request carrying one of the server's keys (its 401 otherwise)."""
        from starlette.responses import Response

        from .errors import APIError

        async def metrics(request: Request) -> Response:
            if authenticate is not None:
                try:
                    authenticate(request.headers)
                except APIError as refused:
                    return refused.response()
            body, content_type = self.render()
            return Response(body, media_type=content_type)

        return metrics


class MetricsMiddleware:
    """Plain ASGI (streams pass through unbuffered): counts each request, its latency, a
    stream's first byte and the streams open."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        began = time.perf_counter()
        status = 500  # an app that raised before answering: what the client gets
        streaming = False
        first: float | None = None

        async def observed(message: Message) -> None:
            nonlocal status, streaming, first
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers") or ():
                    if name.lower() == b"content-type" and value.startswith(b"text/event-stream"):
                        streaming = True
                        metrics.active_streams.inc()
                        break
            elif (
                streaming and first is None and kind == "http.response.body" and message.get("body")
            ):
                first = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            metrics.finished(
                route_of(scope), scope.get("method", ""), status, began, streaming, first
            )
