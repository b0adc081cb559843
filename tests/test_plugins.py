"""Provider plugins: the example plugin (examples/llmplex-echo) installed and used by name
through AsyncClient, config.toml, routing, `llmplex serve --emulate` (the official openai
SDK against it) and `llmplex providers`; LLMPLEX_PLUGINS; a broken plugin; the built-ins
registered as entry points; the emulators' new home and their old import paths; the
opt-in pytest plugin (an unrelated pytest run does not import llmplex).

The example is built with the test environment's own setuptools (no build isolation, no
index: offline) into a directory of its own, put on PYTHONPATH of the processes started
here: importlib.metadata finds its entry point there as in site-packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import aiohttp
import httpx
import openai
import pytest
from served import Served

from llmplex.providers import BUILTIN_PLUGINS, provider_names
from llmplex.providers.spec import load_object

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "llmplex-echo"
LLMPLEX = shutil.which("llmplex", path=str(Path(sys.executable).parent)) or "llmplex"


@pytest.fixture(scope="module")
def echo_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Where the example plugin is installed (its package and its .dist-info)."""
    work = tmp_path_factory.mktemp("echo")
    source = work / "src"
    # a copy: building writes build/ and *.egg-info next to the sources
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "llmplex_echo" / "spec.py").is_file()
    return str(target)


def environment(
    tmp_path: Path, *paths: str, plugins: str | None = "echo", **extra: str
) -> dict[str, str]:
    """A user's environment: nothing of the developer's, plugins on ``paths``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLMPLEX_") and not k.endswith(("_API_KEY", "_API_TOKEN"))
    }
    config = tmp_path / "config.toml"
    if not config.exists():
        config.write_text("")
    env.update(
        LLMPLEX_CONFIG=str(config),
        LLMPLEX_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=os.pathsep.join(paths),
    )
    if plugins is not None:
        env["LLMPLEX_PLUGINS"] = plugins
    env.update(extra)
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def providers(env: dict[str, str]) -> dict[str, dict]:
    result = run(env, LLMPLEX, "providers", "--json")
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)}


# -- the built-ins ------------------------------------------------------------------------


def test_builtins_are_registered_as_entry_points():
    """pyproject.toml registers exactly the plugins the registry knows statically, and
    they hold exactly the built-in providers."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["llmplex.providers"] == BUILTIN_PLUGINS
    assert "pytest11" not in project.get("entry-points", {})
    names = []
    for reference in BUILTIN_PLUGINS.values():
        specs = load_object(reference)
        names += [s.name for s in (specs if isinstance(specs, tuple) else (specs,))]
    assert sorted(names) == sorted(provider_names())  # LLMPLEX_PLUGINS=none here
    assert {"AllenAI", "Replicate", "OpenAI", "Groq"} <= set(names)


def test_builtins_work_without_package_metadata(tmp_path):
    """From a source tree (the sources on sys.path, no llmplex .dist-info, so no entry
    points at all) every built-in provider is there."""
    site = Path(aiohttp.__file__).parent.parent  # the test venv's, without llmplex in it
    linked = tmp_path / "site"
    linked.mkdir()
    for entry in site.iterdir():
        if not entry.name.startswith(("llmplex", "__editable__")) and entry.suffix != ".pth":
            (linked / entry.name).symlink_to(entry)
    sources = tmp_path / "src"  # the package only (src/ may hold a llmplex.egg-info)
    sources.mkdir()
    (sources / "llmplex").symlink_to(ROOT / "src" / "llmplex")
    script = (
        "import importlib.metadata as m\n"
        "assert not list(m.entry_points(group='llmplex.providers'))\n"
        "assert m.entry_points(group='console_scripts')  # metadata is read\n"
        "from llmplex.providers import provider_names, get_provider\n"
        "print(len(provider_names()), get_provider('replicate').__name__)\n"
    )
    env = environment(tmp_path, plugins=None)
    result = run(
        env,
        sys.executable,
        "-S",
        "-c",  # -S: not the venv's site-packages
        f"import sys; sys.path[:0] = [{str(sources)!r}, {str(linked)!r}]; exec({script!r})",
    )
    assert result.returncode == 0, result.stderr
    count, name = result.stdout.split()
    assert int(count) == len(provider_names()) and name == "Replicate"


# -- the example plugin -------------------------------------------------------------------

ASYNC_CLIENT = textwrap.dedent("""
    import asyncio, json, sys, warnings
    warnings.simplefilter("error")  # the plugin loads cleanly
    from llmplex import AsyncClient
    from llmplex.conversations import MemoryStore
    from llmplex.emulators import Script, get_emulator, serve
    from llmplex.server.emulated import EmulatedServices

    async def main():
        out = {}
        with serve(get_emulator("Echo")(None)) as emu:
            options = {"Echo": {"base_url": emu.url, "api_key": "echo-emulated-key"}}
            async with AsyncClient(provider_options=options, store=MemoryStore()) as client:
                answer = await client.chat.completions.create(
                    model="echo:loud", messages=[{"role": "user", "content": "plugged in"}])
                out["by_name"] = [answer.provider, answer.choices[0].message.content]
            # config.toml's [providers.Echo] and a bare model name: routed to Echo
            open(sys.argv[1], "w").write(
                f'[providers.Echo]\\nbase_url = "{emu.url}"\\napi_key = "echo-emulated-key"\\n')
            async with AsyncClient(store=MemoryStore()) as client:
                answer = await client.chat.completions.create(
                    model="echo-1", messages=[{"role": "user", "content": "from config"}],
                    stream=True)
                text = "".join([c.choices[0].delta.content or "" async for c in answer])
                out["routed"] = text
            out["sent"] = emu.requests[-1].json
        with EmulatedServices(["echo"]) as services:
            out["exports"] = services.exports()
            out["options"] = services.provider_options()["Echo"]
        print(json.dumps(out))

    asyncio.run(main())
""")


def test_plugin_through_async_client_config_and_routing(echo_path, tmp_path):
    env = environment(tmp_path, echo_path)
    result = run(env, sys.executable, "-c", ASYNC_CLIENT, env["LLMPLEX_CONFIG"])
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["by_name"] == ["Echo", "PLUGGED IN"]  # echo-loud, through the alias
    assert out["routed"] == "from config"
    assert out["sent"]["model"] == "echo-1"
    ((service, url, line),) = out["exports"]
    assert service == "echo" and line == (
        f"export LLMPLEX_ECHO_BASE_URL={url} ECHO_API_KEY=echo-emulated-key"
    )
    assert out["options"] == {"base_url": url, "api_key": "echo-emulated-key"}


def test_plugin_in_providers_table(echo_path, tmp_path):
    listed = providers(environment(tmp_path, echo_path))
    echo = listed["Echo"]
    assert echo["label"] == "Echo (example plugin)" and echo["models"] == ["echo-1", "echo-loud"]
    assert echo["configured"] is False and echo["working"] is False
    assert "ECHO_API_KEY" in echo["not_working_reason"]
    assert {"AllenAI", "Replicate", "OpenAI"} <= set(listed)
    # its key variable (from its spec) configures it, as a built-in's does
    keyed = providers(environment(tmp_path, echo_path, ECHO_API_KEY="k-123"))["Echo"]
    assert keyed["configured"] is True and keyed["working"] is True
    assert "k-123" not in json.dumps(keyed)
    table = run(environment(tmp_path, echo_path), LLMPLEX, "providers").stdout
    assert any(row.split()[0] == "Echo" for row in table.splitlines())
    help_text = run(environment(tmp_path, echo_path), LLMPLEX, "--help").stdout
    assert "ECHO_API_KEY" in help_text
    emulate_help = run(environment(tmp_path, echo_path), LLMPLEX, "emulate", "--help").stdout
    assert "echo (Echo (example plugin))" in " ".join(emulate_help.split())


def test_plugin_through_serve_emulate(echo_path, tmp_path):
    with Served(tmp_path, "--emulate", env=environment(tmp_path, echo_path)) as server:
        base = server.url + "/v1"
        with openai.OpenAI(base_url=base, api_key="unused", max_retries=0) as client:
            answer = client.chat.completions.create(
                model="echo:echo-1", messages=[{"role": "user", "content": "hi"}]
            )
            assert "local echo emulator" in answer.choices[0].message.content
            stream = client.chat.completions.create(
                model="echo:echo-1", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert "local echo emulator" in text
            models = {m.id for m in client.models.list()}
            assert {"echo-1", "echo-loud"} <= models
        table = {p["id"]: p for p in httpx.get(base + "/providers", timeout=10).json()["data"]}
        assert table["Echo"]["emulated"] is True and table["Echo"]["configured"] is True
        assert table["Echo"]["working"] is True
        assert server.stop() == 0


def test_llmplex_plugins_restricts_loading(echo_path, tmp_path):
    assert "Echo" in providers(environment(tmp_path, echo_path, plugins=None))  # unset: all
    for value in ("none", ""):
        result = run(
            environment(tmp_path, echo_path, plugins=value), LLMPLEX, "providers", "--json"
        )
        assert result.returncode == 0 and result.stderr == ""
        names = {p["name"] for p in json.loads(result.stdout)}
        assert "Echo" not in names and "Replicate" in names
    result = run(environment(tmp_path, echo_path, plugins="other"), LLMPLEX, "providers", "--json")
    assert result.returncode == 0
    assert "Echo" not in {p["name"] for p in json.loads(result.stdout)}
    assert "PluginWarning" in result.stderr and "'other'" in result.stderr
    assert "installed: echo" in result.stderr
    # a model of a plugin that is not loaded is unknown, and said to be
    result = run(
        environment(tmp_path, echo_path, plugins="none"), LLMPLEX, "chat", "-m", "echo:echo-1", "hi"
    )
    assert result.returncode != 0


def _fake_plugin(
    where: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]
) -> str:
    """A distribution installed by hand (what pip writes: METADATA and entry_points.txt
    in a .dist-info) holding the given modules: for plugins broken on purpose."""
    info = where / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[llmplex.providers]\n{lines}")
    for module, source in modules.items():
        (where / f"{module}.py").write_text(textwrap.dedent(source))
    return str(where)


def test_broken_plugins_warn_once_and_the_rest_works(echo_path, tmp_path):
    broken = _fake_plugin(
        tmp_path / "broken",
        "llmplex-broken",
        {
            "crashes": "broken_crash:SPEC",
            "notaspec": "broken_values:NOT_A_SPEC",
            "badspec": "broken_values:bad_spec",
            "taken": "broken_values:TAKEN",
        },
        {
            "broken_crash": "raise ImportError('no module named upstream_sdk')\n",
            "broken_values": """
            from llmplex.providers.spec import ProviderSpec
            NOT_A_SPEC = {"name": "Nope"}
            TAKEN = ProviderSpec(name="openai", provider="broken_values:X")
            def bad_spec():
                pass
        """,
        },
    )
    env = environment(tmp_path, echo_path, broken, plugins=None)
    result = run(env, LLMPLEX, "providers", "--json")
    assert result.returncode == 0, result.stderr
    names = {p["name"] for p in json.loads(result.stdout)}
    assert {"Echo", "Replicate", "OpenAI", "AllenAI"} <= names and "Nope" not in names
    warnings = [line for line in result.stderr.splitlines() if "PluginWarning" in line]
    assert len(warnings) == 4, result.stderr
    for plugin, why in (
        ("crashes", "ImportError: no module named upstream_sdk"),
        ("notaspec", "not a ProviderSpec"),
        ("badspec", "not a ProviderSpec"),
        ("taken", "openai is already taken"),
    ):
        (line,) = [w for w in warnings if f"plugin {plugin!r}" in w]
        assert why in line
    # and a spec that does not validate names the plugin and the mistake
    bad = _fake_plugin(
        tmp_path / "bad",
        "llmplex-bad",
        {"misnamed": "bad_spec:SPEC"},
        {
            "bad_spec": """
            from llmplex.providers.spec import ProviderSpec
            SPEC = ProviderSpec(name="has space", provider="bad_spec:X")
        """
        },
    )
    result = run(environment(tmp_path, bad, plugins="misnamed"), LLMPLEX, "providers")
    assert result.returncode == 0 and "Replicate" in result.stdout
    assert "plugin 'misnamed'" in result.stderr and "'has space' is not a name" in result.stderr


def test_example_plugin_own_tests_use_the_opt_in_pytest_plugin(echo_path, tmp_path):
    env = environment(tmp_path, echo_path)
    result = run(
        env,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "llmplex.testing.pytest_plugin",
        "--rootdir",
        str(tmp_path),
        str(EXAMPLE / "tests"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    # without the plugin, its fixtures are not there
    result = run(
        env,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(tmp_path),
        str(EXAMPLE / "tests"),
    )
    assert result.returncode != 0 and "fixture 'llmplex_emulator' not found" in result.stdout


# -- layout: llmplex.emulators, llmplex.testing, the pytest plugin --------------------------


def test_unrelated_pytest_run_does_not_import_llmplex(tmp_path):
    (tmp_path / "test_unrelated.py").write_text(
        textwrap.dedent("""
        import sys

        def test_nothing_of_llmplex():
            loaded = [m for m in sys.modules if m == "llmplex" or m.startswith("llmplex.")]
            assert loaded == []
    """)
    )
    env = environment(tmp_path, plugins=None)
    env.pop("PYTHONPATH")
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_server_needs_nothing_of_llmplex_testing(tmp_path):
    script = (
        "import sys\n"
        "import llmplex.cli, llmplex.server.app\n"
        "from llmplex.server.emulated import EmulatedServices\n"
        "with EmulatedServices() as services:\n"
        "    assert services.provider_options()['Groq']['base_url'].endswith('/v1')\n"
        "print(sorted(m for m in sys.modules if m.startswith('llmplex.testing')))\n"
    )
    result = run(environment(tmp_path, plugins="none"), sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


OLD_PATHS = textwrap.dedent("""
    import warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        from llmplex.testing.openai import DEFAULT_CREATED, OpenAIEmulator
        from llmplex.testing.openassistant import SAMPLING_KEYS
        import llmplex.testing.ai2 as ai2
        from llmplex.testing import OpenAIEmulator as Again, get_emulator
    import llmplex.emulators.ai2, llmplex.emulators.openai
    assert OpenAIEmulator is llmplex.emulators.openai.OpenAIEmulator is Again
    assert ai2 is llmplex.emulators.ai2 and DEFAULT_CREATED and SAMPLING_KEYS
    assert get_emulator("replicate").__name__ == "ReplicateEmulator"
    for w in caught:
        print(w.category.__name__, w.message)
""")


def test_old_import_paths_work_with_a_deprecation_warning(tmp_path):
    result = run(environment(tmp_path, plugins="none"), sys.executable, "-c", OLD_PATHS)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5 and all(line.startswith("DeprecationWarning") for line in lines)
    assert "llmplex.testing.openai is deprecated" in lines[0]
    assert "import llmplex.emulators.openai" in lines[0]
    assert "from llmplex.emulators import get_emulator" in lines[4]
    # the new paths and the test helpers that stay in llmplex.testing warn nothing
    result = run(
        environment(tmp_path, plugins="none"),
        sys.executable,
        "-W",
        "error::DeprecationWarning",
        "-c",
        "from llmplex.testing import Script, Fault, serve, eventually, wait_until\n"
        "from llmplex.testing.hostile import hostile\n"
        "from llmplex.emulators import Script as S, get_emulator, EMULATORS\n"
        "from llmplex.emulators.openai import OpenAIEmulator\n"
        "assert Script is S and set(EMULATORS) >= {'openai', 'allenai', 'replicate'}\n",
    )
    assert result.returncode == 0, result.stderr


# -- the spec itself ----------------------------------------------------------------------


def test_spec_validates_and_says_how_to_reach_its_emulator():
    from llmplex.providers.spec import ProviderSpec

    spec = ProviderSpec(
        name="Mine",
        provider="mine.provider:Mine",
        key_env="MINE_KEY",
        emulator="mine.emulator:MineEmulator",
        emulator_path="/api",
        emulator_options={"api_key": "k"},
        emulator_env={"MINE_MODE": "x"},
    )
    assert spec.key_env == ("MINE_KEY",) and spec.emulator_service == "mine"
    assert spec.emulated_env("http://127.0.0.1:9") == {
        "LLMPLEX_MINE_BASE_URL": "http://127.0.0.1:9/api",
        "MINE_KEY": "k",
        "MINE_MODE": "x",
    }
    with pytest.raises(TypeError):
        spec.emulator_options["api_key"] = "changed"  # shared by every user: read-only
    for bad in (
        {"name": "two words"},
        {"provider": "no_colon"},
        {"emulator": "x"},
        {"key_env": ("",)},
    ):
        with pytest.raises(ValueError, match=r"name|must be"):
            ProviderSpec(**{"name": "Mine", "provider": "mine:Mine", **bad})
    with pytest.raises(TypeError, match="not a provider class"):
        ProviderSpec(name="Mine", provider="llmplex.providers.spec:ProviderSpec").load_class()
    with pytest.raises(LookupError, match="no emulator"):
        ProviderSpec(name="Mine", provider="mine:Mine").load_emulator()


def test_emulated_services_read_every_fact_from_the_specs():
    from llmplex.server.emulated import EmulatedServices, dummy_credentials

    with EmulatedServices(["openassistant", "replicate", "openai"]) as services:
        exports = {service: line for service, _, line in services.exports()}
        hints = services.config_hints()
        options = services.provider_options()
    assert exports["replicate"].endswith(" REPLICATE_API_TOKEN=r8_emulated")
    assert exports["openai"].startswith("export LLMPLEX_OPENAI_BASE_URL=")
    assert exports["openai"].endswith("/v1 OPENAI_API_KEY=sk-emulated")
    # a session cookie is carried by no variable: config.toml's [providers.OpenAssistant]
    assert hints == {
        "openassistant": {
            "provider": "OpenAssistant",
            "cookies": dummy_credentials()["OpenAssistant"]["cookies"],
        }
    }
    # the OpenAI emulator stands in for every OpenAI-compatible provider
    assert options["Groq"]["base_url"] == options["OpenAI"]["base_url"]
    assert options["Groq"]["base_url"].endswith("/v1") and "AllenAI" not in options
