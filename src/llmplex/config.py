"""User configuration: a TOML file plus environment variables (which win).

The file is ``config.toml`` in the user's config directory
(``platformdirs.user_config_dir("llmplex")``: ``~/.config/llmplex`` on Linux), or the file
named by ``LLMPLEX_CONFIG``. Every key is optional::

    model = "groq:llama-3.1-8b-instant"  # default model (LLMPLEX_MODEL)
    provider = "Replicate"            # default provider or a list (LLMPLEX_PROVIDER: a,b)
    proxy = "socks5://127.0.0.1:9050" # proxy for every request (LLMPLEX_PROXY)
    timeout = 120                     # seconds (LLMPLEX_TIMEOUT)
    first_token_timeout = 300         # seconds to the first content (LLMPLEX_FIRST_TOKEN_TIMEOUT)
    total_timeout = 1800              # seconds per answer (LLMPLEX_TOTAL_TIMEOUT)
    data_dir = "~/llmplex-data"       # conversations, REPL history (LLMPLEX_DATA_DIR)

    [providers.Replicate]             # options passed to one provider
    api_key = "r8_..."                # (REPLICATE_API_TOKEN wins)
    base_url = "http://127.0.0.1:8000"  # (LLMPLEX_REPLICATE_BASE_URL wins)
    first_token_timeout = 60          # deadlines for this provider (llmplex.deadlines)

    [providers.OpenAssistant]
    cookies = { "next-auth.session-token" = "..." }

    [router]
    order = ["OpenAI", "Replicate"]   # providers tried first
    include_not_working = false
    cooldown = 30
    aliases = { fast = ["groq:llama-3.1-8b-instant", "openai:gpt-4o-mini"] }
    emulate = true                    # tools/JSON output by prompt for text-only services
    emulation_retries = 1             # corrective retries of an unusable emulated answer

    [server]                          # llmplex serve
    host = "127.0.0.1"
    port = 1337
    api_keys = ["..."]                # (LLMPLEX_SERVER_API_KEYS, comma-separated)
    cors_origins = []
    allow_upstream_overrides = false
    max_body_bytes = 1000000
    allowed_hosts = ["llm.example.org"]   # Host names besides localhost (DNS rebinding)
    client_stall_timeout = 60         # drop a streaming client that reads nothing this long
    max_providers = 8                 # longest "provider" list of one request
    header_timeout = 10               # seconds for a request's headers
    body_timeout = 30                 # seconds for its body
    keepalive_timeout = 20            # idle kept-alive connections
    max_connections = 2048            # at once; beyond: 503
    workers = 1                       # processes sharing the port (docs/deployment.md)
    drain_timeout = 30                # on SIGTERM, seconds running streams get to finish
    metrics = "public"                # GET /metrics: "public", "keyed" (API key) or "off"
    log_format = "text"               # or "json": one object per line
    traces = false                    # OpenTelemetry, exporter from OTEL_* (otel extra)

    [server.keys.team-a]              # a named API key with limits (llmplex.server.keys)
    key_sha256 = "<64 hex digits>"    # or key = "sk-..."
    rpm = 60                          # requests per minute, tpm = tokens per minute
    models = ["openai:*"]             # the models it may ask for (globs)

    [state]                           # shared by several servers (llmplex.state)
    url = "redis://localhost:6379/0"  # (LLMPLEX_STATE_URL); unset: embedded state
    on_error = "closed"               # Redis unreachable: "closed" 503s, "open" goes local

A ``[providers.X]`` table names any registered provider, a plugin's too (see
:mod:`llmplex.providers`; ``LLMPLEX_PLUGINS`` chooses the plugins). Every key is checked
when the file is read, and a mistake is a :class:`ConfigError` naming
the file, the table and the key: an unknown key (with a did-you-mean; a ``[providers.X]``
table takes the options that provider takes, plus ``timeout`` and the deadlines), a value
of the wrong type (``api_key``, ``base_url``, ``proxy``: strings; ``cookies``, ``headers``:
tables of strings; ``timeout``: a positive number), or a ``proxy`` that is not an
``http``, ``https``, ``socks4`` or ``socks5`` URL with a host. ``AsyncClient()`` reads the
same file and environment (see its ``config`` argument).

Keys in the file are secrets: keep it readable by you only. Values are never printed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .deadlines import DEADLINE_OPTIONS, check_deadline, default_deadline
from .errors import InvalidRequestError

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "config_path",
    "data_dir",
    "display_path",
    "ENVIRONMENT",
    "environment",
]

#: environment variables llmplex reads, for ``llmplex --help``
ENVIRONMENT: dict[str, str] = {
    "LLMPLEX_CONFIG": "path of the config file",
    "LLMPLEX_MODEL": "default model",
    "LLMPLEX_PROVIDER": "default provider(s), comma-separated",
    "LLMPLEX_PROXY": "proxy URL (http://, https://, socks5://)",
    "LLMPLEX_TIMEOUT": "request timeout, seconds",
    "LLMPLEX_FIRST_TOKEN_TIMEOUT": "seconds to an answer's first content (default 300)",
    "LLMPLEX_TOTAL_TIMEOUT": "seconds per answer (default 1800)",
    "LLMPLEX_DATA_DIR": "directory of conversations and REPL history",
    "LLMPLEX_SERVER_API_KEYS": "API keys `llmplex serve` accepts, comma-separated",
    "LLMPLEX_STATE_URL": "shared state of `llmplex serve` (redis://...; unset: embedded)",
    "LLMPLEX_<PROVIDER>_BASE_URL": "where a provider's service is (e.g. LLMPLEX_OPENAI_BASE_URL)",
    "LLMPLEX_PLUGINS": "provider plugins to load: unset all, 'none', or names, comma-separated",
    "LLMPLEX_COOKIES_DIR": "directory of exported browser cookies (OpenAssistant)",
}


def environment() -> dict[str, str]:
    """:data:`ENVIRONMENT` and every provider's key variables (from the providers' specs,
    plugins' included: imports every provider)."""
    from .providers import provider_specs

    keys: dict[str, list[str]] = {}
    for spec in provider_specs():
        for variable in spec.key_env:
            keys.setdefault(variable, []).append(spec.label or spec.name)
    return {**ENVIRONMENT, **{v: "API key of " + ", ".join(labels) for v, labels in keys.items()}}


_SERVER_KEYS = {
    "host": str,
    "port": int,
    "api_keys": list,
    "cors_origins": list,
    "allow_upstream_overrides": bool,
    "max_body_bytes": int,
    "allowed_hosts": list,
    "client_stall_timeout": float,
    "max_providers": int,
    "header_timeout": float,
    "body_timeout": float,
    "keepalive_timeout": float,
    "max_connections": int,
    "workers": int,
    "drain_timeout": float,
    "metrics": str,
    "log_format": str,
    "traces": bool,
    "keys": dict,
}
# [state]: where a server's health, conversations and limits live (llmplex.state)
_STATE_KEYS = {"url": str, "on_error": str, "prefix": str, "timeout": float}
_ROUTER_KEYS = {
    "order": list,
    "aliases": dict,
    "include_not_working": bool,
    "cooldown": float,
    "max_cooldown": float,
    "retries": int,
    "max_routes": int,
    "emulate": bool,
    "emulation_retries": int,
}


class ConfigError(InvalidRequestError):
    """The config file or an environment variable holds something unusable."""


@dataclass
class Config:
    """The merged configuration (file, then environment)."""

    model: str | None = None
    provider: list[str] | None = None
    proxy: str | None = None
    timeout: float | None = None
    first_token_timeout: float | None = None
    total_timeout: float | None = None
    data_dir: Path | None = None
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    router: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # [state]; its url may hold a password
    path: Path | None = None  # the file read, if any

    def __repr__(self) -> str:  # provider options and server keys are secrets
        return (
            f"Config(model={self.model!r}, provider={self.provider!r}, "
            f"providers={sorted(self.providers)!r}, path={str(self.path)!r})"
        )

    def make_router(self) -> Any:
        from .routing import Router

        return Router(**self.router)


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the config file is (it need not exist)."""
    environ = os.environ if environ is None else environ
    if environ.get("LLMPLEX_CONFIG"):
        return Path(environ["LLMPLEX_CONFIG"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("llmplex")) / "config.toml"


def display_path(path: Path) -> str:
    """``path`` as a person would type it: ``~/...`` under the home directory."""
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except (ValueError, RuntimeError):  # elsewhere, or no home directory
        return str(path)


def data_dir(config: Config | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The data directory: LLMPLEX_DATA_DIR, the config's ``data_dir``, or the user's."""
    environ = os.environ if environ is None else environ
    if environ.get("LLMPLEX_DATA_DIR"):
        return Path(environ["LLMPLEX_DATA_DIR"]).expanduser()
    if config is not None and config.data_dir is not None:
        return config.data_dir
    import platformdirs

    return Path(platformdirs.user_data_dir("llmplex"))


def _check(table: Mapping[str, Any], types: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for key, value in table.items():
        if key not in types:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(types)})")
        expected = types[key]
        ok = isinstance(value, expected) and not (
            expected in (int, float) and isinstance(value, bool)
        )
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            names = (
                " or ".join(t.__name__ for t in expected)
                if isinstance(expected, tuple)
                else expected.__name__
            )
            raise ConfigError(f"{where}: {key!r} must be of type {names}")
        out[key] = value
    return out


def load_config(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read the config file (if it exists) and apply the environment over it."""
    from .providers import find_provider, get_provider, key_variables, provider_names

    environ = os.environ if environ is None else environ
    file = Path(path).expanduser() if path is not None else config_path(environ)
    raw: dict[str, Any] = {}
    config = Config()
    if file.is_file():
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {file}: {exc}") from None
        config.path = file
    elif path is not None or environ.get("LLMPLEX_CONFIG"):
        raise ConfigError(f"config file {file} does not exist")

    top = _check(
        {k: v for k, v in raw.items() if k not in ("providers", "router", "server", "state")},
        {
            "model": str,
            "provider": (str, list),
            "proxy": str,
            "timeout": float,
            "first_token_timeout": float,
            "total_timeout": float,
            "data_dir": str,
        },
        str(file),
    )
    config.model = top.get("model")
    if "provider" in top:
        config.provider = _names(top["provider"], str(file))
    config.proxy = top.get("proxy")
    if config.proxy is not None:
        _proxy(config.proxy, f"{file}: 'proxy'")
    config.timeout = top.get("timeout")
    if config.timeout is not None and not config.timeout > 0:
        raise ConfigError(f"{file}: 'timeout' must be a positive number of seconds")
    for name in DEADLINE_OPTIONS:
        if name in top:
            setattr(config, name, _deadline(name, top[name], str(file)))
    if top.get("data_dir"):
        config.data_dir = Path(top["data_dir"]).expanduser()

    providers = raw.get("providers", {})
    if not isinstance(providers, dict):
        raise ConfigError(f"{file}: [providers] must be a table of tables")
    for name, options in providers.items():
        if find_provider(name) is None:
            raise ConfigError(
                f"{file}: [providers.{name}]: unknown provider "
                f"(known: {', '.join(provider_names())})"
            )
        if not isinstance(options, dict):
            raise ConfigError(f"{file}: [providers.{name}] must be a table")
        cls = get_provider(name)
        _check_provider(cls, options, f"{file}: [providers.{name}]")
        config.providers[cls.get_name()] = dict(options)
    for section, types in (("router", _ROUTER_KEYS), ("server", _SERVER_KEYS)):
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{file}: [{section}] must be a table")
        setattr(config, section, _check(table, types, f"{file}: [{section}]"))
    _check_state(config, raw.get("state", {}), str(file))

    # The environment wins over the file.
    if environ.get("LLMPLEX_MODEL"):
        config.model = environ["LLMPLEX_MODEL"]
    if environ.get("LLMPLEX_PROVIDER"):
        config.provider = _names(environ["LLMPLEX_PROVIDER"], "LLMPLEX_PROVIDER")
    if environ.get("LLMPLEX_PROXY"):
        config.proxy = _proxy(environ["LLMPLEX_PROXY"], "LLMPLEX_PROXY")
    if environ.get("LLMPLEX_TIMEOUT"):
        try:
            config.timeout = float(environ["LLMPLEX_TIMEOUT"])
        except ValueError:
            raise ConfigError("LLMPLEX_TIMEOUT must be a number of seconds") from None
    if environ.get("LLMPLEX_DATA_DIR"):
        config.data_dir = Path(environ["LLMPLEX_DATA_DIR"]).expanduser()
    for name, (variable, _) in DEADLINE_OPTIONS.items():
        if environ.get(variable):
            try:
                setattr(config, name, default_deadline(name, environ))
            except InvalidRequestError as exc:
                raise ConfigError(exc.message) from None
    if environ.get("LLMPLEX_STATE_URL"):
        config.state["url"] = environ["LLMPLEX_STATE_URL"]
    if environ.get("LLMPLEX_SERVER_API_KEYS"):
        config.server["api_keys"] = [
            k.strip() for k in environ["LLMPLEX_SERVER_API_KEYS"].split(",") if k.strip()
        ]
    for name, options in config.providers.items():
        # Providers read these variables only when no option is given: drop the option.
        if environ.get(f"LLMPLEX_{name.upper()}_BASE_URL"):
            options.pop("base_url", None)
        if any(environ.get(v) for v in key_variables(name)):
            options.pop("api_key", None)
    return config


def _check_state(config: Config, table: Any, file: str) -> None:
    """``[state]`` and ``[server.keys.*]``: known keys, right types, usable values."""
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [state] must be a table")
    config.state = _check(table, _STATE_KEYS, f"{file}: [state]")
    if config.state.get("on_error", "closed") not in ("closed", "open"):
        raise ConfigError(f'{file}: [state] on_error must be "closed" or "open"')
    url = config.state.get("url")
    if url and url.split("://", 1)[0].lower() not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{file}: [state] url must start with redis://, rediss:// or unix://")
    if "keys" in config.server:
        from .server.keys import parse_keys

        try:
            parse_keys(config.server["keys"], f"{file}: [server.keys]")
        except InvalidRequestError as exc:
            raise ConfigError(exc.message) from None


#: proxy URL schemes the HTTP layer speaks
PROXY_SCHEMES = ("http", "https", "socks4", "socks5")
_STRINGS = ("api_key", "base_url", "proxy", "api_version", "captcha_token")
_STRING_TABLES = ("cookies", "headers")


def _proxy(value: str, where: str) -> str:
    """``value`` if it is a proxy URL llmplex can use, else a ConfigError (at load time,
    not at the first request)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        host, _ = parts.hostname, parts.port  # .port raises for a bad port
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme.lower() not in PROXY_SCHEMES or not host:
        raise ConfigError(
            f"{where}: not a proxy URL (expected "
            f"{', '.join(s + '://host:port' for s in PROXY_SCHEMES)})"
        )
    return value


def _check_provider(cls: Any, options: Mapping[str, Any], where: str) -> None:
    """Validate one ``[providers.X]`` table: every key is an option that provider takes
    (or a deadline, or ``timeout``), of the right type and range."""
    import difflib

    known = sorted(cls.accepted_options() | {"timeout"} | set(DEADLINE_OPTIONS))
    for key, value in options.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = (
                f"did you mean {' or '.join(map(repr, close))}?"
                if close
                else f"{cls.get_name()} takes: {', '.join(known)}"
            )
            raise ConfigError(f"{where}: unknown key {key!r}; {hint}", param=key, suggestions=close)
        if key in _STRINGS:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}: {key!r} must be a non-empty string", param=key)
            if key == "proxy":
                _proxy(value, f"{where}: 'proxy'")
        elif key in _STRING_TABLES:
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ConfigError(f"{where}: {key!r} must be a table of strings", param=key)
        elif key == "timeout":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(
                    f"{where}: 'timeout' must be a positive number of seconds", param=key
                )
        elif key in DEADLINE_OPTIONS:
            _deadline(key, value, where)


def _deadline(name: str, value: Any, where: str) -> float | None:
    try:
        return check_deadline(name, value)
    except InvalidRequestError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def _names(value: Any, where: str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{where}: provider must be a name or a list of names")
    return [i.strip() for i in items if i.strip()]


def _key_env(provider: str) -> str | None:
    """The (first) environment variable a provider reads its API key from, if any: its
    spec's (:func:`llmplex.providers.key_variables` has them all)."""
    from .providers import key_variables

    return next(iter(key_variables(provider)), None)
