"""Text that arrives as JSON in pieces: UTF-16 surrogate halves split across events.

A JSON string may spell a character outside the Basic Multilingual Plane as two escapes,
``"\\ud83d\\ude00"`` (😀). When a service streams them in two events, each event decodes to
a lone surrogate: joining the Python strings gives two invalid code points, which cannot be
encoded (UTF-8 output, token estimates, the server's JSON all fail). :class:`Surrogates`
holds a trailing high half until the next piece, joins the pairs, and turns any half that
stays alone into U+FFFD, so every piece it gives is valid text.
"""

from __future__ import annotations

import re

__all__ = ["Surrogates", "fix_surrogates"]

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def fix_surrogates(text: str) -> str:
    """``text`` with surrogate pairs joined and lone halves replaced by U+FFFD."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class Surrogates:
    """One stream of text pieces (one field of one choice): ``feed`` each piece, ``flush``
    at the end (a high half still held becomes U+FFFD)."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        """The valid text of ``text`` so far (possibly ``""``: a lone half waits)."""
        if self._held:
            text, self._held = self._held + text, ""
        elif text.isascii() or _SURROGATE.search(text) is None:
            return text  # the fast path: nearly every piece
        if text and "\ud800" <= text[-1] <= "\udbff":
            text, self._held = text[:-1], text[-1]  # its low half may come next
        return fix_surrogates(text)

    def flush(self) -> str:
        """What is held at the end of the stream: ``""``, or U+FFFD for a lone half."""
        held, self._held = self._held, ""
        return REPLACEMENT if held else ""
