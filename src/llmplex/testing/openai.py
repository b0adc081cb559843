"""Deprecated: moved to :mod:`llmplex.emulators.openai`."""

from ._moved import moved

moved(__name__, "llmplex.emulators.openai")
