"""The README's fenced code blocks and the ``<!-- readme-test: ... -->`` markers that say
how each one runs (read by ``tests/test_readme_examples.py``).

A marker is an HTML comment (invisible on GitHub) on the lines just above a block:

    <!-- readme-test: real-key OPENAI_API_KEY; serve -->

It holds directives separated by ``;``:

- ``emulate``: works as written against the local emulators: its shell commands carry
  ``--emulate``, its Python runs in the environment ``llmplex emulate`` prints.
- ``real-key VAR``: works for real with the key variable ``VAR`` set; the test runs it
  with ``VAR``'s provider pointed at its emulator (base-URL variable and a dummy key).
- ``real-key VAR; emulate``: both; tested both ways (the second test's id ends in
  ``-emulate``).
- ``no-key``: shows what happens with nothing configured (no key, no emulator).
- ``serve``: talks to ``llmplex serve`` on port 1337 (the Quick start's server); the test
  runs one ``llmplex serve --emulate`` and rewrites only the port 1337 in the block.
- ``port N=SERVICE``: a URL's port ``N`` stands for a local server; the test rewrites it to
  the port of the ``SERVICE`` emulator (``openai``, ``replicate``...).
- ``exit N``: the block's last command exits with status ``N`` (a block showing an error).
- ``continues``: the block goes on from the previous block of the same section (same
  language); the test runs them together, that one first.
- ``error-tree``: a tree of exception classes, checked against ``llmplex.errors``.
- ``skip reason="..."``: cannot run here at all (say why); keep these rare.

Every block needs a marker with ``emulate``, ``real-key``, ``no-key``, ``error-tree`` or
``skip`` (``continues`` inherits it): a block without one fails its test, saying so.

In a ``console`` block, ``$ `` lines are commands and the lines under one are what it
prints: each must appear in its output (stdout and stderr), in order, ``...`` standing for
any text. ``bash``/``sh`` blocks are all commands (``#`` comments ignored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
PREFIX = "readme-test:"
MODES = ("emulate", "real-key", "no-key", "error-tree", "skip")
HOW_TO_MARK = (
    "put a marker on the line above the block, e.g. `<!-- readme-test: emulate -->` (runs "
    "as written against the emulators), `<!-- readme-test: real-key OPENAI_API_KEY -->` "
    "(works for real with that key; tested against its emulator), `; serve` if it talks to "
    "`llmplex serve` on port 1337, `; continues` to run it after the previous block of its "
    'section, or `<!-- readme-test: skip reason="..." -->`; see tests/readme_blocks.py'
)

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
_MARKER = re.compile(r"<!--\s*readme-test:(.*?)-->", re.DOTALL)


class MarkerError(ValueError):
    """A marker the harness does not understand."""


@dataclass
class Marker:
    """The parsed directives of one ``readme-test`` comment."""

    mode: str | None = None  # one of MODES
    key: str | None = None  # real-key VAR
    reason: str | None = None  # skip reason
    serve: bool = False
    continues: bool = False
    ports: dict[int, str] = field(default_factory=dict)  # port -> emulator service
    exit: int = 0  # the exit status of the block's last command
    also_emulate: bool = False  # real-key and emulate: works both ways

    @classmethod
    def parse(cls, text: str) -> Marker:
        marker = cls()
        for directive in filter(None, (d.strip() for d in text.split(";"))):
            word, _, rest = directive.partition(" ")
            rest = rest.strip()
            if {word, marker.mode} == {"real-key", "emulate"}:  # the two ways: both tested
                marker.mode, marker.also_emulate = "real-key", True
            elif word in MODES:
                if marker.mode is not None:
                    raise MarkerError(f"two modes in one marker: {marker.mode!r} and {word!r}")
                marker.mode = word
            if word == "real-key":
                if not re.fullmatch(r"[A-Z][A-Z0-9_]*", rest):
                    raise MarkerError(f"real-key needs a variable name, got {rest!r}")
                marker.key = rest
            elif word == "skip":
                found = re.fullmatch(r'reason="([^"]+)"', rest)
                if not found:
                    raise MarkerError('skip needs reason="why it cannot run"')
                marker.reason = found.group(1)
            elif word in ("emulate", "no-key", "error-tree", "serve", "continues"):
                if rest:
                    raise MarkerError(f"{word!r} takes no argument, got {rest!r}")
                marker.serve = marker.serve or word == "serve"
                marker.continues = marker.continues or word == "continues"
            elif word == "exit":
                if not rest.isdigit():
                    raise MarkerError(f"exit needs a status, got {rest!r}")
                marker.exit = int(rest)
            elif word == "port":
                found = re.fullmatch(r"(\d+)=(\w+)", rest)
                if not found:
                    raise MarkerError(f"port needs N=SERVICE, got {rest!r}")
                marker.ports[int(found.group(1))] = found.group(2)
            elif word not in MODES:
                raise MarkerError(f"unknown directive {word!r}")
        return marker


@dataclass
class Block:
    """One fenced code block: where it is, what it holds, how it is marked."""

    id: str  # section slug and ordinal: "quick-start-2"
    section: str
    language: str  # the fence's info word, lower case ("" when none)
    code: str
    line: int  # 1-based line of the opening fence in README.md
    marker: Marker | None
    marker_error: str | None = None


def slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-") or "top"


def blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the README, in order."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    found: list[Block] = []
    section, ordinal = "top", 0
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = re.match(r"^#{1,6}\s+(.*)", line)
        if heading:
            section, ordinal = heading.group(1).strip(), 0
            i += 1
            continue
        fence = _FENCE.match(line)
        if not fence:
            i += 1
            continue
        end = next(
            (
                j
                for j in range(i + 1, len(lines))
                if lines[j].strip().startswith(fence.group(1))
                and not lines[j].strip().strip(fence.group(1)[0])
            ),
            len(lines),
        )
        ordinal += 1
        marker, error = None, None
        before = _comment_above(lines, i)
        if before is not None:
            try:
                marker = Marker.parse(before)
            except MarkerError as exc:
                error = str(exc)
        found.append(
            Block(
                f"{slug(section)}-{ordinal}",
                section,
                fence.group(2).lower(),
                "\n".join(lines[i + 1 : end]) + "\n",
                i + 1,
                marker,
                error,
            )
        )
        i = end + 1
    return found


def _comment_above(lines: list[str], fence: int) -> str | None:
    """The directives of a marker ending on the last non-blank line above ``fence``."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j < 0 or not lines[j].rstrip().endswith("-->"):
        return None
    k = j
    while k >= 0 and "<!--" not in lines[k]:
        k -= 1
    found = _MARKER.search("\n".join(lines[max(k, 0) : j + 1]))
    return found.group(1) if found else None
