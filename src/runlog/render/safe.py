"""Text from the data is hostile: these helpers make it inert for each output before anything else sees it.

``runlog.textsafe.visible`` turns control characters (ESC, BEL, C1 ...) into a visible ``\\xNN``; here we
also make the invisible Unicode formatting characters visible (bidirectional overrides can make a line read
differently from what it is, "Trojan Source"), and fold CRLF line ends so a Windows-written tool output does
not show ``\\x0d`` on every line.
"""

from __future__ import annotations

from ..textsafe import visible


def safe(text: str | None, *, keep_newlines: bool = True) -> str:
    """``text`` with every control and invisible formatting character, and every lone surrogate, shown as
    an escape (``\\x1b``, ``\\u202e``, ``\\udcff``). The result still needs the output's own escaping
    (``rich.text.Text``, ``html.escape``)."""
    if not text:
        return ""
    text = text.replace("\r\n", "\n")
    return visible(text, keep_newlines=keep_newlines)


def one_line(text: str | None) -> str:
    """``safe`` for labels and titles: newlines and tabs shown as ``\\n`` / ``\\t``."""
    return safe(text, keep_newlines=False)
