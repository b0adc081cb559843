"""Deprecated: moved to :mod:`llmplex.emulators.h2o`."""

from ._moved import moved

moved(__name__, "llmplex.emulators.h2o")
