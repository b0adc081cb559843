"""OpenTelemetry traces (the ``[otel]`` extra: ``opentelemetry-api`` and ``-sdk``).

A server span per request (``POST /v1/chat/completions``: method and route template, the
status, the request id) and a child span per upstream attempt (``llmplex.attempt``:
provider, model, outcome, error class, tokens). Never keys, headers, bodies, messages or
error texts: upstream error messages may quote what was sent.

Off unless asked for (``llmplex serve --traces`` / ``[server] traces = true``, or a
``tracer_provider`` given to ``create_app``): nothing here is imported otherwise.
:func:`tracer_provider_from_env` builds the SDK's provider with the exporter the standard
``OTEL_*`` variables choose (``OTEL_TRACES_EXPORTER``: ``otlp``, the default, needs
``opentelemetry-exporter-otlp``; ``console``; ``none``), resource from
``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..routing import Attempt, RouterObserver
from .metrics import route_of
from .request_id import request_id

__all__ = ["Tracing", "TracingMiddleware", "tracer_provider_from_env"]


class Tracing(RouterObserver):
    """The tracer, and the router observer that records each attempt as a child span of
    the request's span (the current span where the attempt ran)."""

    def __init__(self, tracer_provider: Any) -> None:
        from opentelemetry import trace

        from .. import __version__

        self.trace = trace
        self.tracer = tracer_provider.get_tracer("llmplex", __version__)

    def attempt_ended(self, attempt: Attempt) -> None:
        span = self.tracer.start_span(
            "llmplex.attempt", start_time=attempt.start_ns, kind=self.trace.SpanKind.CLIENT
        )
        span.set_attribute("llmplex.provider", attempt.provider)
        span.set_attribute("llmplex.model", attempt.model)
        span.set_attribute("llmplex.outcome", attempt.outcome)
        span.set_attribute("llmplex.fallback", attempt.fallback)
        if attempt.error is not None:
            span.set_attribute("error.type", type(attempt.error).__name__)
            span.set_status(self.trace.StatusCode.ERROR)
        usage = attempt.usage
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens or 0)
            span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens or 0)
        span.end(end_time=attempt.end_ns or None)


class TracingMiddleware:
    """Plain ASGI: a server span around each HTTP request, current while it runs (so the
    attempts' spans are its children)."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace = self.tracing.trace
        method = scope.get("method", "")
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.tracing.tracer.start_as_current_span(
            method,
            kind=trace.SpanKind.SERVER,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self.app(scope, receive, observed)
            finally:
                route = route_of(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                rid = request_id.get()
                if rid:
                    span.set_attribute("llmplex.request_id", rid)
                if status >= 500:
                    span.set_status(trace.StatusCode.ERROR)


def tracer_provider_from_env() -> Any:
    """The SDK's tracer provider with the exporter ``OTEL_TRACES_EXPORTER`` names
    (``otlp`` by default; ``console``; ``none``), batching spans off the request path."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
        )
    except ImportError as exc:
        raise RuntimeError(
            f"traces need the otel extra ({exc.name} is missing): pip install 'llmplex[otel]'"
        ) from None
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "llmplex"})
    )
    exporter_name = (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower()
    exporter: Any
    if exporter_name == "none":
        return provider
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        except ImportError:
            raise RuntimeError(
                "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip "
                "install opentelemetry-exporter-otlp-proto-http (or set "
                "OTEL_TRACES_EXPORTER=console)"
            ) from None
        exporter = OTLPSpanExporter()  # endpoint, headers: OTEL_EXPORTER_OTLP_* variables
    else:
        raise RuntimeError(
            f"OTEL_TRACES_EXPORTER={exporter_name!r} is not supported here (otlp, console or none)"
        )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
