"""The old homes of the emulators (``llmplex.testing.openai``...), kept working."""

from __future__ import annotations

import importlib
import sys
import warnings


def moved(old: str, new: str) -> None:
    """Make module ``old`` the module ``new`` (same objects, so ``isinstance`` and
    private names keep working), with a :class:`DeprecationWarning`."""
    warnings.warn(
        f"{old} is deprecated; the emulators are now in llmplex.emulators: import {new}",
        DeprecationWarning,
        stacklevel=4,
    )
    sys.modules[old] = importlib.import_module(new)
