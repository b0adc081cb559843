"""What the command line says when a request fails for a reason a person can fix.

- Nothing configured (no key, no ``[providers.X]`` table, no base URL) and every route
  failed for want of a key: one short line naming a key to set, the config file, and
  the offline way to try llmplex (:func:`first_run_line`).
- Otherwise an :class:`~llmplex.errors.AllProvidersFailed` keeps its lines (a summary,
  one per provider), and a missing key names its variable and the config file rather
  than the library's ``api_key=`` (:func:`error_text`).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path

from .config import Config, _key_env, config_path, display_path
from .errors import AllProvidersFailed, MissingAuthError, key_variables, or_list

__all__ = ["error_text", "first_run_line", "nothing_configured"]

#: the prompt is quoted in the offline hint when it is this short (else "...")
_PROMPT_SHOWN = 40


def _variables(environ: Mapping[str, str]) -> set[str]:
    """Every variable that configures a provider: its key, its base URL (the providers'
    specs say which)."""
    from .providers import provider_specs

    keys = {v for spec in provider_specs() for v in spec.key_env}
    return keys | {
        name for name in environ if name.startswith("LLMPLEX_") and name.endswith("_BASE_URL")
    }


def nothing_configured(config: Config, environ: Mapping[str, str] | None = None) -> bool:
    """Whether no provider is configured at all: no ``[providers.X]`` table in the config
    file, no provider key or base URL in the environment."""
    environ = os.environ if environ is None else environ
    return not config.providers and not any(environ.get(v) for v in _variables(environ))


def _unconfigured_names(exc: BaseException) -> list[str] | None:
    """The providers that failed for want of credentials, when that is why all failed."""
    if isinstance(exc, AllProvidersFailed) and exc.unconfigured:
        return [name for name, _ in exc.errors]
    if isinstance(exc, MissingAuthError) and exc.unconfigured and exc.provider:
        return [exc.provider]
    return None


def first_run_line(
    exc: BaseException,
    config: Config,
    *,
    command: str,
    prompt: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The one line for a user with nothing configured whose request failed for want of
    a key (``None`` in every other case)::

        llmplex: no provider is configured. Set one key (e.g. REPLICATE_API_TOKEN or
        OPENAI_API_KEY) or edit ~/.config/llmplex/config.toml, or try offline: llmplex
        chat --emulate "hi"
    """
    names = _unconfigured_names(exc)
    if not names or not nothing_configured(config, environ):
        return None
    variables = key_variables(names)[:2]
    where = display_path(config.path or config_path(environ))
    if len(names) == 1:
        start = f"no API key for {names[0]}. " + (
            f"Set {variables[0]} or edit {where}" if variables else f"Edit {where}"
        )
    else:
        start = "no provider is configured. " + (
            f"Set one key (e.g. {or_list(variables)}) or edit {where}"
            if variables
            else f"Edit {where}"
        )
    offline = f"llmplex {command} --emulate"
    if command == "chat":
        shown = (
            prompt
            if prompt
            and len(prompt) <= _PROMPT_SHOWN
            and "\n" not in prompt
            and not prompt.startswith("-")
            else "..."
        )
        offline += f" {shlex.quote(shown)}" if shown != "..." else ' "..."'
    return f"llmplex: {start}, or try offline: {offline}"


def error_text(exc: BaseException, config_file: str | None = None) -> str:
    """An llmplex error as the terminal shows it (after ``llmplex: error: ``): one line,
    but an AllProvidersFailed keeps its line per provider. ``config_file``: the
    ``--config`` given, if any."""
    if isinstance(exc, AllProvidersFailed):
        return str(exc)
    if isinstance(exc, MissingAuthError) and exc.unconfigured and exc.provider:
        variable = _key_env(exc.provider)
        where = display_path(Path(config_file) if config_file else config_path())
        table = f"[providers.{exc.provider}]"
        return (
            f"{exc.provider}: no API key: set {variable} or add api_key under {table} in {where}"
            if variable
            else f"{exc.provider}: no credentials: {exc.message}"
        )
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
