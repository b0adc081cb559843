"""Deprecated: moved to :mod:`llmplex.emulators.replicate`."""

from ._moved import moved

moved(__name__, "llmplex.emulators.replicate")
