"""Shared test configuration. Emulator fixtures come from llmplex's pytest plugin
(``llmplex.testing.pytest_plugin``, registered through the package's entry point)."""

from __future__ import annotations

import os

# Tests never talk to the real services: make sure no developer environment override
# points a provider somewhere else, and no key from the environment is picked up.
for _name in list(os.environ):
    if _name.startswith("LLMPLEX_") or _name in ("REPLICATE_API_TOKEN", "OPENAI_API_KEY"):
        os.environ.pop(_name)
