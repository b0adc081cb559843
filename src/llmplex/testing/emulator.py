"""Deprecated: moved to :mod:`llmplex.emulators.emulator`."""

from ._moved import moved

moved(__name__, "llmplex.emulators.emulator")
