"""Shared test configuration. Emulator fixtures come from llmplex's opt-in pytest plugin
(``llmplex.testing.pytest_plugin``, enabled below)."""

from __future__ import annotations

import gc
import os
import signal
import tempfile

import pytest

pytest_plugins = ["llmplex.testing.pytest_plugin"]

# Tests never talk to the real services: make sure no developer environment override
# points a provider somewhere else, and no key from the environment is picked up.
for _name in list(os.environ):
    if _name.startswith("LLMPLEX_") or _name in ("REPLICATE_API_TOKEN", "OPENAI_API_KEY"):
        os.environ.pop(_name)
# No third-party provider plugin installed where the tests run may change what they see
# (tests/test_plugins.py sets LLMPLEX_PLUGINS for the processes it starts).
os.environ["LLMPLEX_PLUGINS"] = "none"
# A shell starts background commands with SIGINT ignored, and children inherit that: the
# Ctrl-C tests of the CLI would then see their Ctrl-C ignored. Restore Python's default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# AsyncClient() reads config.toml: never a developer's own (an empty file instead).
_config_dir = tempfile.mkdtemp(prefix="llmplex-tests-")
os.environ["LLMPLEX_CONFIG"] = os.path.join(_config_dir, "config.toml")
open(os.environ["LLMPLEX_CONFIG"], "w").close()
# What llmplex keeps on disk (Replicate's model schemas...): never in a developer's home.
os.environ["LLMPLEX_DATA_DIR"] = os.path.join(_config_dir, "data")


@pytest.fixture(autouse=True, scope="module")
def _collect_garbage_after_each_module():
    """Collect after every test module so that a leaked socket or transport warns (and
    fails) in the module that leaked it, not in whichever later test the collector happens
    to run in. (Per test it would be exact, but a full collection costs ~0.1 s here.)"""
    yield
    gc.collect()
