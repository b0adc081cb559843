"""The Ai2 Playground's models and what each can do (``GET /v5/models/``).

The live list is fetched once per origin and kept for :data:`CACHE_SECONDS`; until then,
or when it cannot be fetched, a small built-in list (:data:`BUILTIN`) stands in. Each
model's flags (``canCallTools``, ``canThink``, ``acceptsFiles``) become its
:class:`~llmplex.capabilities.Capabilities`, which routing reads per model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..capabilities import TEXT_ONLY, Capabilities

__all__ = ["Ai2Model", "BUILTIN", "CACHE_SECONDS", "Catalogue", "V4_MODEL_HOSTS"]

#: seconds a fetched model list is trusted
CACHE_SECONDS = 3600.0

#: the retired v4 API's models and their inference hosts (``api_version="v4"``)
V4_MODEL_HOSTS: dict[str, str] = {
    "tulu3-405b": "inferd",
    "OLMo-2-1124-13B-Instruct": "modal",
    "tulu-3-1-8b": "modal",
    "Llama-3-1-Tulu-3-70B": "modal",
    "olmoe-0125": "modal",
    "olmo-2-0325-32b-instruct": "modal",
}


@dataclass(frozen=True)
class Ai2Model:
    """One model of ``GET /v5/models/``: its id and the flags llmplex reads."""

    id: str
    name: str = ""
    can_call_tools: bool = False
    can_think: bool = False
    accepts_files: bool = False

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Ai2Model:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            can_call_tools=data.get("canCallTools") is True,
            can_think=data.get("canThink") is True,
            accepts_files=data.get("acceptsFiles") is True
            or data.get("promptType") in ("multi_modal", "files_only"),
        )

    @property
    def capabilities(self) -> Capabilities:
        """Native tools, images and files, reasoning: as the model's flags say. System
        messages and earlier turns are rendered into the prompt (the service keeps its
        own system prompt); max_tokens and stop are the service's."""
        return TEXT_ONLY.with_(
            tools="native" if self.can_call_tools else "none",
            images=self.accepts_files,
            files=self.accepts_files,
            reasoning=self.can_think,
        )


#: the models known without asking (Dec 2026), the fallback for the live list
BUILTIN: dict[str, Ai2Model] = {
    m.id: m
    for m in (
        Ai2Model("olmo-3.1-32b-instruct", "Olmo 3.1 32B Instruct", can_call_tools=True),
        Ai2Model("olmo-3.1-32b-think", "Olmo 3.1 32B Think", can_think=True),
        Ai2Model("molmo2-8b", "Molmo 2 8B", accepts_files=True),
        Ai2Model("molmo2-4b", "Molmo 2 4B", accepts_files=True),
    )
}


class Catalogue:
    """The model lists fetched so far, per origin, with their age."""

    def __init__(self) -> None:
        self._lists: dict[str, tuple[float, dict[str, Ai2Model]]] = {}
        self._latest: dict[str, Ai2Model] = {}

    def fresh(self, origin: str) -> dict[str, Ai2Model] | None:
        """The list fetched from ``origin`` if still fresh."""
        entry = self._lists.get(origin)
        if entry is None or time.monotonic() - entry[0] > CACHE_SECONDS:
            return None
        return entry[1]

    def store(self, origin: str, items: Any) -> dict[str, Ai2Model]:
        """Keep the models of a ``GET /v5/models/`` body (a list, or ``{"models": [...]}``);
        entries without an id are skipped."""
        if isinstance(items, Mapping):
            items = items.get("models")
        models = {
            m.id: m
            for m in (
                Ai2Model.from_api(i) for i in items or () if isinstance(i, Mapping) and i.get("id")
            )
        }
        self._lists[origin] = (time.monotonic(), models)
        self._latest = models
        return models

    def get(self, model: str, origin: str | None = None) -> Ai2Model | None:
        """What is known of ``model``: from ``origin``'s list, else the latest list
        fetched, else the built-in one."""
        if origin is not None:
            listed = self.fresh(origin)
            if listed is not None and model in listed:
                return listed[model]
        return self._latest.get(model) or BUILTIN.get(model)

    def ids(self) -> list[str]:
        """Every model id known: the built-in ones, then those fetched."""
        return list(dict.fromkeys([*BUILTIN, *self._latest]))

    def clear(self) -> None:
        self._lists.clear()
        self._latest = {}
