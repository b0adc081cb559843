"""Deprecated: moved to :mod:`llmplex.emulators.script`."""

from ._moved import moved

moved(__name__, "llmplex.emulators.script")
