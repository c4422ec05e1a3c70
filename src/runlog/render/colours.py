"""Role and reward colours: one palette for every output, so that a role has the same colour in every
command (render-trajectory's panels, its HTML browser, and any table that names roles).

A role's colour depends on its name only, never on what else is in the run: ``solver``, ``verifier`` and
``judge`` have fixed slots, the chat roles (system, user, assistant, tool) fixed colours of their own, and
any other name a slot chosen by a stable hash of the name (CRC-32, not Python's salted ``hash``). Speakers
written ``judge (agent_0)`` take the colour of ``judge``.

Rewards: 1 (and above) green, 0 red, negative values bold red; NaN and infinities red (their text says
which). Other values are not coloured. Red and green are never a role's colour.

Each colour is a rich colour name (256-colour palette) and, for HTML, its hex value; HTML pages use the CSS
classes ``rc0``..``rcN`` / ``rc-system``... (a fixed set) built by ``role_css``.
"""

from __future__ import annotations

import math
import re
import zlib

from rich.color import Color

# Speaker palette: no red, green or pure yellow (reward colours and warnings), distinct on dark and light.
PALETTE = (
    "dodger_blue1",
    "dark_orange",
    "medium_purple1",
    "hot_pink",
    "light_sea_green",
    "gold3",
    "steel_blue",
    "orchid",
)
FIXED_SLOTS = {"solver": 0, "verifier": 1, "judge": 2}
CHAT_ROLE_COLOURS = {"system": "grey62", "user": "cyan", "assistant": "green", "tool": "yellow"}
UNKNOWN_COLOUR = "white"
UNKNOWN_HEX = "#888888"

REWARD_HIGH = "green"
REWARD_ZERO = "red"
REWARD_NEGATIVE = "bold red"
NOT_FINITE = "red"

_AGENT_SUFFIX = re.compile(r"\s*\([^()]*\)\s*$")


def base_name(name: str | None) -> str:
    """The role a speaker name stands for: ``judge (agent_0)`` is ``judge``; case-insensitive."""
    if not name:
        return ""
    return _AGENT_SUFFIX.sub("", name).strip().lower() or name.strip().lower()


def role_slot(name: str | None) -> int | None:
    """The palette slot of a speaker role (None for chat roles and empty names)."""
    key = base_name(name)
    if not key or key in CHAT_ROLE_COLOURS:
        return None
    if key in FIXED_SLOTS:
        return FIXED_SLOTS[key]
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % len(PALETTE)


def role_colour(name: str | None) -> str:
    """The rich colour of a role or speaker name (``solver``, ``judge (agent_0)``, ``system``...)."""
    key = base_name(name)
    if key in CHAT_ROLE_COLOURS:
        return CHAT_ROLE_COLOURS[key]
    slot = role_slot(name)
    return UNKNOWN_COLOUR if slot is None else PALETTE[slot]


def role_hex(name: str | None) -> str:
    """``role_colour`` as ``#rrggbb`` (for HTML and plots)."""
    colour = role_colour(name)
    return UNKNOWN_HEX if colour == UNKNOWN_COLOUR else _hex(colour)


def role_class(name: str | None) -> str:
    """The CSS class of a role's colour (``role_css`` defines them all; never built from the data)."""
    key = base_name(name)
    if key in CHAT_ROLE_COLOURS:
        return f"rc-{key}"
    slot = role_slot(name)
    return "rc-other" if slot is None else f"rc{slot}"


def role_css() -> str:
    """CSS rules setting ``--rc`` (the role colour) for every class ``role_class`` can return."""
    rules = [f".rc{i}{{--rc:{_hex(c)}}}" for i, c in enumerate(PALETTE)]
    rules += [f".rc-{k}{{--rc:{_hex(c)}}}" for k, c in CHAT_ROLE_COLOURS.items()]
    rules.append(f".rc-other{{--rc:{UNKNOWN_HEX}}}")
    return "".join(rules)


def reward_style(value: float | None) -> str:
    """The rich style of a reward value: 1 and above green, 0 red, negative bold red, NaN/inf red."""
    return {"high": REWARD_HIGH, "zero": REWARD_ZERO, "neg": REWARD_NEGATIVE, "nan": NOT_FINITE}.get(
        reward_kind(value), ""
    )


def reward_kind(value: float | None) -> str:
    """``high`` (>= 1), ``zero``, ``neg`` (< 0), ``nan`` (NaN or infinite), ``mid`` or ``none`` (null): the
    CSS class suffix of HTML reward cells, and the key of ``reward_style``."""
    if value is None:
        return "none"
    if not math.isfinite(value):
        return "nan"
    if value < 0:
        return "neg"
    if value == 0:
        return "zero"
    return "high" if value >= 1 else "mid"


def _hex(name: str) -> str:
    return Color.parse(name).get_truecolor().hex
