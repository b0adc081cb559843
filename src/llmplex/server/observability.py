"""What ``create_app`` adds for operators: request ids, metrics, traces, the drain.

The middlewares, outermost first: :class:`~llmplex.server.request_id.RequestId` (so every
response has its id, a refused Host's 403 too), the tracing one when traces are on,
:class:`~llmplex.server.metrics.MetricsMiddleware` unless metrics are off, and
:class:`~llmplex.server.shutdown.Drain`; then the app's own (Host check, CORS, body
limit). Each is plain ASGI: nothing is buffered, streams pass as they are written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .metrics import METRICS_MODES
from .request_id import RequestId
from .shutdown import Drain

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..client import AsyncClient
    from .keys import KeyRing
    from .metrics import Metrics
    from .shutdown import InFlight

__all__ = ["install_observability"]


def install_observability(
    app: FastAPI,
    client: AsyncClient,
    *,
    metrics: str = "public",
    keys: KeyRing | None = None,
    tracer_provider: Any = None,
    in_flight: InFlight | None = None,
) -> Metrics | None:
    """Add the middlewares above to ``app`` and, unless ``metrics`` is ``"off"``,
    ``GET /metrics`` (``"public"``: no key needed; ``"keyed"``: any key of ``keys``, the
    server's key ring: ``--api-key`` ones and named ``[server.keys]`` ones alike).
    ``tracer_provider``: an OpenTelemetry tracer provider (None: no traces).
    ``in_flight``: the drain's count of requests in flight (shared with the front routes).
    Returns the metrics (None when off)."""
    if metrics not in METRICS_MODES:
        raise ValueError(f"metrics must be one of {', '.join(METRICS_MODES)}, not {metrics!r}")
    if metrics == "keyed" and (keys is None or not keys.active):
        raise ValueError(
            "metrics = 'keyed' needs API keys (--api-key, [server] api_keys or [server.keys])"
        )
    app.add_middleware(Drain, in_flight=in_flight)
    counted = None
    if metrics != "off":
        from .metrics import Metrics, MetricsMiddleware

        counted = Metrics(client.router.status)
        client.router.observers.append(counted)
        # an APIRoute (not a plain route): FastAPI then names its template in the scope
        app.add_api_route(
            "/metrics",
            counted.endpoint(keys.authenticate if metrics == "keyed" and keys else None),
            methods=["GET"],
            include_in_schema=False,
        )
        app.add_middleware(MetricsMiddleware, metrics=counted)
    if tracer_provider is not None:
        from .tracing import Tracing, TracingMiddleware

        tracing = Tracing(tracer_provider)
        client.router.observers.append(tracing)
        app.add_middleware(TracingMiddleware, tracing=tracing)
    app.add_middleware(RequestId)
    return counted
