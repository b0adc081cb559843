"""Cookies a user keeps for services that authenticate with a browser session.

Some services (OpenAssistant) have no API key: they accept the session cookie of a
logged-in browser. Export the site's cookies with a browser extension and save the file as

``<config dir>/cookies/<domain>.txt``
    Netscape ``cookies.txt`` format (tab-separated ``domain``, ``include-subdomains``,
    ``path``, ``secure``, ``expiry``, ``name``, ``value``; ``#HttpOnly_`` lines count,
    other ``#`` lines and blank lines are comments), or
``<config dir>/cookies/<domain>.json``
    ``{"name": "value", ...}``, or a list of ``{"name", "value", "domain", ...}`` objects
    as Cookie-Editor/EditThisCookie export them (a ``{"cookies": [...]}`` storage state
    works too).

``<config dir>`` is ``platformdirs.user_config_dir("llmplex")``: ``~/.config/llmplex`` on
Linux, ``~/Library/Application Support/llmplex`` on macOS, ``%LOCALAPPDATA%\\llmplex`` on
Windows. ``cookies.txt``/``cookies.json`` in the same directory (an export of every site)
are read too, with the per-domain files taking precedence. The environment variable
``LLMPLEX_COOKIES_DIR`` replaces the directory; ``load_cookies(..., path=...)`` reads one
given file instead.

Cookies match the way a browser sends them: a domain cookie (``.open-assistant.io``,
include-subdomains ``TRUE``) applies to the domain and its subdomains, a host-only cookie to
its exact host; expired cookies are skipped. Error messages name the file and line but
never contain cookie values.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import InvalidRequestError

__all__ = ["load_cookies", "cookies_dir", "cookie_files", "ENV_VAR"]

#: environment variable naming the directory of cookie files
ENV_VAR = "LLMPLEX_COOKIES_DIR"

_HTTPONLY = "#HttpOnly_"
_GENERAL = ("cookies.txt", "cookies.json")  # exports of every site: lowest precedence
_Found = dict[str, tuple[int, str]]  # name -> (specificity of its domain, value)


def cookies_dir() -> Path:
    """The directory holding cookie files: ``$LLMPLEX_COOKIES_DIR``, else
    ``platformdirs.user_config_dir("llmplex") / "cookies"``."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("llmplex")) / "cookies"


def cookie_files(domain: str) -> list[Path]:
    """The files :func:`load_cookies` would read for ``domain``, lowest precedence first
    (only those that exist)."""
    host = _host(domain)
    directory = cookies_dir()
    names = [*_GENERAL, f"{host}.txt", f"{host}.json"]
    return [directory / name for name in names if (directory / name).is_file()]


def load_cookies(domain: str, *, path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The cookies a browser would send to ``domain``, read from the user's cookie files.

    ``path`` reads that one file (Netscape or JSON, told apart by content) and it must
    exist; otherwise the files of :func:`cookie_files` are read and an empty dict means
    there are none. A malformed file raises :class:`~llmplex.errors.InvalidRequestError`
    naming the file and line.
    """
    host = _host(domain)
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise InvalidRequestError(f"cookie file {file} does not exist")
        files = [file]
    else:
        files = cookie_files(host)
    cookies: dict[str, str] = {}
    for file in files:  # a later file wins a name clash: specificity counts within a file
        found: _Found = {}
        _read_file(file, host, found)
        cookies.update((name, value) for name, (_, value) in found.items())
    return cookies


def _host(domain: str) -> str:
    domain = domain.strip()
    if "://" in domain:
        domain = urlsplit(domain).hostname or ""
    host = domain.lower().lstrip(".").rstrip(".")
    if not host:
        raise InvalidRequestError("load_cookies needs a domain, e.g. 'open-assistant.io'")
    return host


def _read_file(file: Path, host: str, found: _Found) -> None:
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise InvalidRequestError(f"cannot read cookie file {file}: {reason}") from None
    if text.lstrip()[:1] in ("{", "["):
        _parse_json(text, file, host, found)
    else:
        _parse_netscape(text, file, host, found)


def _matches(host: str, domain: str, include_subdomains: bool) -> int:
    """How specifically a cookie for ``domain`` applies to ``host`` (0: it does not)."""
    domain = domain.strip().lower()
    include_subdomains = include_subdomains or domain.startswith(".")
    domain = domain.lstrip(".")
    # A name clash goes to the most specific cookie, as browsers list it first: the
    # longer domain, and a host-only cookie before a domain cookie of the same name.
    if not domain:
        return 1  # a file without domains is for this site as a whole
    if host == domain or (include_subdomains and host.endswith("." + domain)):
        return 2 * len(domain) + (1 if include_subdomains else 2)
    return 0


def _add(found: _Found, name: str, value: str, score: int) -> None:
    if score and (name not in found or score >= found[name][0]):
        found[name] = (score, value)


def _parse_netscape(text: str, file: Path, host: str, found: _Found) -> None:
    now = time.time()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip("\r\n")
        if line.startswith(_HTTPONLY):
            line = line[len(_HTTPONLY) :]
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) == 6:  # an empty value, trailing tab lost by an editor
            fields.append("")
        if len(fields) != 7:
            fields = line.split(None, 6)
        if len(fields) != 7:
            raise _bad(
                file,
                lineno,
                "expected 7 tab-separated fields (domain, include-subdomains,"
                f" path, secure, expiry, name, value), found {len(fields)}",
            )
        domain, flag, _path, _secure, expiry, name, value = fields
        if flag.upper() not in ("TRUE", "FALSE"):
            raise _bad(file, lineno, "include-subdomains must be TRUE or FALSE")
        try:
            expires = float(expiry or 0)
        except ValueError:
            raise _bad(file, lineno, "expiry must be a number of seconds since 1970") from None
        if not domain.strip() or not name:
            raise _bad(file, lineno, "a cookie needs a domain and a name")
        if 0 < expires < now:
            continue
        _add(found, name, value, _matches(host, domain, flag.upper() == "TRUE"))


def _parse_json(text: str, file: Path, host: str, found: _Found) -> None:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:  # exc.msg says what is wrong, never the content
        raise _bad(file, exc.lineno, f"invalid JSON ({exc.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("cookies"), list):
        data = data["cookies"]  # a storage-state export: {"cookies": [...], "origins": [...]}
    if isinstance(data, dict):
        for name, value in data.items():
            if not isinstance(value, str):
                raise _bad(file, None, f"the value of cookie {name!r} must be a string")
            _add(found, name, value, 1)
        return
    if not isinstance(data, list):
        raise _bad(file, None, "expected an object of names to values or a list of cookies")
    now = time.time()
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _bad(file, None, f"entry {index} is not a cookie object with a 'name'")
        value = item.get("value", "")
        if not isinstance(value, str):
            raise _bad(file, None, f"entry {index}: 'value' must be a string")
        expires = item.get("expirationDate", item.get("expires", 0))
        if not item.get("session") and isinstance(expires, (int, float)) and 0 < expires < now:
            continue
        domain = item.get("domain") or ""
        if not isinstance(domain, str):
            raise _bad(file, None, f"entry {index}: 'domain' must be a string")
        # hostOnly false (or absent) is a domain cookie, as the Domain attribute makes it
        _add(found, item["name"], value, _matches(host, domain, not item.get("hostOnly", False)))


def _bad(file: Path, lineno: int | None, reason: str) -> InvalidRequestError:
    where = f"{file}, line {lineno}" if lineno else str(file)
    return InvalidRequestError(f"malformed cookie file {where}: {reason}")
