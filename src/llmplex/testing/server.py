"""Deprecated: moved to :mod:`llmplex.emulators.server`."""

from ._moved import moved

moved(__name__, "llmplex.emulators.server")
