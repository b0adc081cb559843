"""Deprecated: moved to :mod:`llmplex.emulators.openassistant`."""

from ._moved import moved

moved(__name__, "llmplex.emulators.openassistant")
