"""Deprecated: moved to :mod:`llmplex.emulators.ai2_v4`."""

from ._moved import moved

moved(__name__, "llmplex.emulators.ai2_v4")
