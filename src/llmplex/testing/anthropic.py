"""Deprecated: moved to :mod:`llmplex.emulators.anthropic`."""

from ._moved import moved

moved(__name__, "llmplex.emulators.anthropic")
