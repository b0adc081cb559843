"""Deprecated: moved to :mod:`llmplex.emulators.openai_embeddings`."""

from ._moved import moved

moved(__name__, "llmplex.emulators.openai_embeddings")
