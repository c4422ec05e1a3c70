"""Make hostile text safe to show: model output and file names may hold escape sequences and markup."""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, and C1 controls (0x80-0x9f, which include CSI and OSC).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Bidi embeddings/overrides/isolates, zero-width characters, the BOM and the line/paragraph separators; and
# lone surrogates (invalid UTF-8 decoded with ``surrogateescape``, or a JSON "\\udXXX" escape), which no
# output encoding can write.
_INVISIBLE = re.compile("[\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")


def visible(text: str, *, keep_newlines: bool = True) -> str:
    """Replace control characters (ESC, BEL, CR, C1...) by a visible ``\\xNN`` so that no terminal sequence
    from the data can act on the terminal, and invisible formatting characters (bidi overrides, zero-width
    characters; "Trojan Source") and lone surrogates by ``\\uNNNN``. Rich markup must still be escaped by
    the caller (or shown as ``rich.text.Text``, which never interprets markup)."""
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    out = _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)
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
