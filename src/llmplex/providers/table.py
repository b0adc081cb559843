"""The providers table: one row per registered provider, for ``llmplex providers`` and
the server's ``GET /v1/providers`` (the same function, so the same meaning of every
column)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..client import AsyncClient

__all__ = ["provider_table"]


def provider_table(client: AsyncClient, *, emulated: bool = False) -> list[dict[str, Any]]:
    """A row per provider of ``client``'s router (its ``order`` first, then every
    registered provider, plugins' included). ``configured`` is
    :meth:`AsyncClient.configured <llmplex.client.AsyncClient.configured>`: options for
    it, its base-URL or key variable set, or named by the router. No row holds an option
    value or a key."""
    from ..routing import ProviderHealth

    router = client.router
    status = router.status()
    now = router.clock()
    items = []
    for cls in router.provider_classes():
        name = cls.get_name()
        health = status.get(name) or ProviderHealth().snapshot(now)
        why_not = cls.why_not_working(client.provider_options.get(name.lower()))
        items.append(
            {
                "id": name,
                "object": "provider",
                "name": name,
                "label": cls.label,
                "url": cls.url,
                "working": why_not is None,
                "not_working_reason": why_not,  # what to configure, never the options
                "needs_auth": cls.needs_auth,
                "configured": client.configured(cls),
                "emulated": emulated,
                "default_model": getattr(cls, "default_model", "") or None,
                "models": cls.get_models(),  # type: ignore[attr-defined]
                "aliases": dict(getattr(cls, "model_aliases", {})),
                "open_catalog": bool(cls.accepts_model("x/y")),  # type: ignore[attr-defined]
                "capabilities": cls.capabilities.summary(router.emulate),
                "health": health,
                "cooling_down": health["cooling_down"],
                "cooldown_remaining": health["cooldown_remaining"],
            }
        )
    return items
