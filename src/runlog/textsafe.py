"""Make hostile text safe to show: model output and file names may hold escape sequences and markup."""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, and C1 controls (0x80-0x9f, which include CSI and OSC).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Invisible formatting characters: Unicode's Bidi_Control set (U+061C, U+200E-F, U+202A-E, U+2066-9), zero-width
# characters, the soft hyphen, the Mongolian vowel separator, the BOM, the line/paragraph separators, the
# interlinear annotation controls (U+FFF9-B) and the tag characters (U+E0000-E007F: invisible text, used to
# smuggle instructions past a reader); and lone surrogates (invalid UTF-8 decoded with ``surrogateescape``, or
# a JSON "\\udXXX" escape), which no output encoding can write. Variation selectors are left alone: emoji use
# them, and they change how the character before them is drawn, never the text's order.
INVISIBLE_CHARS = (
    "\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f"
)
_INVISIBLE = re.compile(f"[{INVISIBLE_CHARS}]")


def _escape(ch: str) -> str:
    """``\\uNNNN``, or ``\\UNNNNNNNN`` beyond the BMP (``\\ue0041`` would read as U+E004 and a "1")."""
    n = ord(ch)
    return f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"


def visible(text: str, *, keep_newlines: bool = True) -> str:
    """Replace control characters (ESC, BEL, CR, C1...) by a visible ``\\xNN`` so that no terminal sequence
    from the data can act on the terminal, and invisible formatting characters (bidi controls, zero-width and
    tag characters, ``_INVISIBLE``; "Trojan Source", "ASCII smuggling") and lone surrogates by ``\\uNNNN``
    (``\\UNNNNNNNN`` beyond the BMP). Rich markup must still be escaped by the caller (or shown as
    ``rich.text.Text``, which never interprets markup)."""
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    out = _INVISIBLE.sub(lambda m: _escape(m.group()), out)
    if not keep_newlines:
        out = out.replace("\n", "\\n").replace("\t", "\\t")
    return out


def cut_middle(text: str, width: int, head: float = 0.5) -> str:
    """``text`` cut to ``width`` characters with an ellipsis in the middle, keeping its start (``head`` of what
    is kept) and its end: names that share a prefix (``verifier_math``, ``verifier_code``) or differ only at
    their end (``.../format_a``, ``.../format_b``) stay apart."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    first = int((width - 1) * head)
    return text[:first] + "…" + text[len(text) - (width - 1 - first) :]


def cut_middle_cells(text: str, width: int, head: float = 0.5) -> str:
    """``cut_middle`` for a terminal: ``text`` cut to ``width`` terminal cells (``rich.cells.cell_len``: a CJK
    character or an emoji takes two, a combining mark none), not characters, so that a name of wide characters
    padded to a column's width does not push the rest of its line past the screen's edge (where rich crops it).
    A wide character that does not fit whole is left out: the result may be a cell short of ``width``."""
    from rich.cells import cell_len

    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    first = int((width - 1) * head)
    return _cells_from(text, first) + "…" + _cells_from(text[::-1], width - 1 - first)[::-1]


def _cells_from(text: str, width: int) -> str:
    """The longest start of ``text`` that takes at most ``width`` terminal cells."""
    from rich.cells import cell_len

    used = 0
    for i, ch in enumerate(text):
        used += cell_len(ch)
        if used > width:
            return text[:i]
    return text


def pad_cells(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` terminal cells (``f"{text:<{width}}"`` pads to characters)."""
    from rich.cells import cell_len

    return text + " " * max(0, width - cell_len(text))
