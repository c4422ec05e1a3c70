"""Text from the data is hostile: these helpers make it inert for each output before anything else sees it.

``runlog.textsafe.visible`` turns control characters (ESC, BEL, C1 ...) into a visible ``\\xNN``; here we
also make the invisible Unicode formatting characters visible (bidirectional overrides can make a line read
differently from what it is, "Trojan Source"), and fold CRLF line ends so a Windows-written tool output does
not show ``\\x0d`` on every line.
"""

from __future__ import annotations

import re

from ..textsafe import visible

# Bidi embeddings/overrides/isolates, zero-width characters, the BOM and the line/paragraph separators; and
# lone surrogates (invalid UTF-8 decoded with ``surrogateescape``, or a JSON "\\udXXX" escape), which no
# output encoding can write.
_INVISIBLE = re.compile("[\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")


def safe(text: str | None, *, keep_newlines: bool = True) -> str:
    """``text`` with every control and invisible formatting character, and every lone surrogate, shown as
    an escape (``\\x1b``, ``\\u202e``, ``\\udcff``). The result still needs the output's own escaping
    (``rich.text.Text``, ``html.escape``)."""
    if not text:
        return ""
    text = text.replace("\r\n", "\n")
    out = visible(text, keep_newlines=keep_newlines)
    return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)


def one_line(text: str | None) -> str:
    """``safe`` for labels and titles: newlines and tabs shown as ``\\n`` / ``\\t``."""
    return safe(text, keep_newlines=False)
