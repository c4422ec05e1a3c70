"""Format adherence: the format rewards people train with, reproduced exactly, and runlog's own rules.

Every spec maps a text column to ``score`` (0..1, the reward's value) and ``failed_rule`` (null when the
text passes) as polars expressions, so a million texts are checked in parallel without a Python loop.
The regex specs are rewritten for polars' (Rust) regex engine; tests/test_metrics_format.py checks each
against the original Python function on a matrix of broken formats. Quirks: docs/metrics.md.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._lazy import pl
from ..errors import UsageError
from ._tokens import NON_SPACE_CLASS, SPACE_CLASS, TOKEN_PATTERN

Rule = tuple[str, "pl.Expr"]  # (rule name, boolean polars expression: True where the rule holds)
TextRule = Callable[[str], bool]  # a rule checked in Python, one text at a time


@dataclass
class Spec:
    """A format spec: named boolean rules checked in order; ``score`` is the spec's own value.

    ``score`` defaults to the fraction of rules that hold; ``failed_rule`` is the first rule that does not.
    ``roles`` limits a custom spec to texts of those roles (None: every text). ``message_rules``: the rules of a
    spec checked on messages rather than on a text (``tool-call-json``), named for ``rule:<name>`` columns.
    ``think``: the spec looks for ``<think>`` tags (a text without them fails it), so that a run whose reasoning
    is in the messages' ``reasoning`` field, not in their content, can be said (``analysis.texts.reasoning_note``).
    """

    name: str
    description: str
    rules: Callable[[pl.Expr], list[Rule]]
    score: Callable[[pl.Expr, list[pl.Expr]], pl.Expr] | None = None
    roles: Sequence[str] | None = None
    needs_messages: bool = False
    python_rules: list[tuple[str, TextRule]] = field(default_factory=list)
    message_rules: tuple[str, ...] = ()
    think: bool = False

    def rule_names(self) -> list[str]:
        probe = pl.col("__t")
        return [n for n, _ in self.rules(probe)] + [n for n, _ in self.python_rules] + list(self.message_rules)


def evaluate(texts: pl.Series, spec: Spec) -> pl.DataFrame:
    """Per text: ``score``, ``passed``, ``failed_rule`` and one boolean column per rule."""
    frame = pl.DataFrame({"__t": texts.cast(pl.String).fill_null("")})
    text = pl.col("__t")
    rules = spec.rules(text)
    exprs = [e.alias(f"rule:{n}") for n, e in rules]
    out = frame.with_columns(exprs)
    for name, fn in spec.python_rules:
        out = out.with_columns(pl.Series(f"rule:{name}", [bool(fn(t)) for t in out["__t"]], dtype=pl.Boolean))
    names = spec.rule_names()
    oks = [pl.col(f"rule:{n}") for n in names]
    score = spec.score(text, oks) if spec.score is not None else pl.mean_horizontal([o.cast(pl.Float64) for o in oks])
    failed = pl.lit(None, dtype=pl.String)
    for n in reversed(names):
        failed = pl.when(~pl.col(f"rule:{n}")).then(pl.lit(n)).otherwise(failed)
    return out.select(
        score.cast(pl.Float64).alias("score"),
        pl.all_horizontal(oks).alias("passed"),
        failed.alias("failed_rule"),
        *oks,
    )


# ---------------------------------------------------------------------------------------------------------
# Built-in specs
# ---------------------------------------------------------------------------------------------------------
# open-r1 (src/open_r1/rewards.py, format_reward), Apache-2.0:
#   re.match(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", text, re.DOTALL | re.MULTILINE)
# re.match anchors at 0; with MULTILINE, "$" holds at the end or before any "\n": same as Rust's (?m:$).
OPEN_R1_PATTERN = r"\A<think>\n(?s:.*?)\n</think>\n<answer>\n(?s:.*?)\n</answer>(?m:$)"
# open-r1 tag_count_reward: 0.25 for each string that occurs exactly once (str.count: non-overlapping).
OPEN_R1_TAGS: tuple[tuple[str, str], ...] = (
    ("think_open", "<think>\n"),
    ("think_close", "\n</think>\n"),
    ("answer_open", "\n<answer>\n"),
    ("answer_close", "\n</answer>"),
)


def _open_r1(text: pl.Expr) -> list[Rule]:
    return [("pattern", text.str.contains(OPEN_R1_PATTERN))]


def _open_r1_tags(text: pl.Expr) -> list[Rule]:
    return [(name, text.str.count_matches(s, literal=True) == 1) for name, s in OPEN_R1_TAGS]


def _tag_score(text: pl.Expr, oks: list[pl.Expr]) -> pl.Expr:
    return pl.sum_horizontal([o.cast(pl.Float64) * 0.25 for o in oks])


def _trl_think(text: pl.Expr) -> list[Rule]:
    # TRL trl/rewards/format_rewards.py think_format_reward, Apache-2.0:
    #   re.match(r"^<think>(?!.*<think>)(.*?)</think>.*$", text, re.DOTALL | re.MULTILINE)
    # i.e. starts with "<think>", no other "<think>" after it, and a "</think>" after it. Rust regex has
    # no look-ahead, so the same test is spelled with literal searches.
    rest = text.str.slice(7)
    return [
        (
            "pattern",
            text.str.starts_with("<think>")
            & ~rest.str.contains("<think>", literal=True)
            & rest.str.contains("</think>", literal=True),
        )
    ]


def _strict(text: pl.Expr) -> list[Rule]:
    """runlog's think-answer-strict: exactly one think block, then exactly one answer block, nothing else
    outside them but whitespace; non-empty bodies; <cite>...</cite> only inside the answer, balanced.

    Whitespace is ``str.isspace()``'s (``SPACE_CLASS``), as docs/metrics.md defines it and the token counts
    use: Rust's ``\\s`` misses ``\\x1c-\\x1f``, so a think body of one ``\\x1c`` read as non-empty while it held
    no token. Citations are checked on the sequence of cite tags of the answer alone, which must be
    ``<cite></cite>`` pairs one after another: none nested, none left open, none closed unopened (removing
    ``<cite>.*?</cite>`` pairs instead would leave no trace of an open tag before a pair)."""
    t = text.str.replace_all("\r\n", "\n", literal=True)
    think = t.str.extract(r"<think>((?s:.*))</think>", 1)
    answer = t.str.extract(r"<answer>((?s:.*))</answer>", 1)
    one = lambda s: t.str.count_matches(s, literal=True) == 1  # noqa: E731
    ws = SPACE_CLASS
    layout = t.str.contains(rf"\A{ws}*<think>(?s:.*)</think>{ws}*<answer>(?s:.*)</answer>{ws}*\z")
    cite_tags = answer.str.extract_all("</?cite>").list.join("")
    return [
        ("one_think", one("<think>") & one("</think>")),
        ("one_answer", one("<answer>") & one("</answer>")),
        ("order", layout.fill_null(False)),
        ("think_not_empty", think.str.contains(NON_SPACE_CLASS).fill_null(False)),
        ("answer_not_empty", answer.str.contains(NON_SPACE_CLASS).fill_null(False)),
        ("cite_outside_answer", ~think.str.contains("<cite>|</cite>").fill_null(False)),
        ("cite_unbalanced", cite_tags.str.contains(r"\A(?:<cite></cite>)*\z").fill_null(True)),
    ]


def _all_or_nothing(text: pl.Expr, oks: list[pl.Expr]) -> pl.Expr:
    return pl.all_horizontal(oks).cast(pl.Float64)


TOOL_CALL_TEXT = r"<tool_call>"
# tool-call-json's rules, in the order they are checked on each call (a ``<tool_call>`` in the text last).
TOOL_CALL_RULES = ("missing_name", "unknown_tool", "arguments_not_json_object", "tool_call_in_text")


BUILTIN: dict[str, Spec] = {
    "open-r1": Spec("open-r1", "open-r1 format_reward: the think/answer regex, 1 or 0", _open_r1, think=True),
    "open-r1-tags": Spec(
        "open-r1-tags",
        "open-r1 tag_count_reward: 0.25 per tag string present exactly once",
        _open_r1_tags,
        _tag_score,
        think=True,
    ),
    "trl-think": Spec("trl-think", "TRL think_format_reward: one leading think block, 1 or 0", _trl_think, think=True),
    "think-answer-strict": Spec(
        "think-answer-strict",
        "runlog: exactly one think then one answer block, nothing after, cite only inside the answer",
        _strict,
        _all_or_nothing,
        think=True,
    ),
    "tool-call-json": Spec(
        "tool-call-json",
        "structured tool calls with JSON-object arguments and a known name; tool calls written as text fail",
        lambda text: [],
        needs_messages=True,
        message_rules=TOOL_CALL_RULES,
    ),
}


def _not_json(constant: str) -> Any:
    """``json.loads``' ``parse_constant``: Python reads ``NaN``, ``Infinity`` and ``-Infinity``, which are not
    JSON (RFC 8259 has no such literals; a strict parser on the tool's side rejects them)."""
    raise ValueError(f"{constant} is not JSON")


def tool_call_failures(
    calls: list[dict[str, Any]] | None, content: str | None, known: Sequence[str] | None
) -> tuple[float, list[str]]:
    """Score one assistant message (or sample): the fraction of its tool calls that are well-formed, and the
    rules (``TOOL_CALL_RULES``) its calls break, each once, in the order the calls first break them.

    A structured call counts when its name is non-empty (and in ``known`` when given) and its arguments
    parse as a JSON object (RFC 8259: ``NaN`` and ``Infinity`` are refused); each ``<tool_call>`` written in
    the plain content counts as a failed call. No call at all scores 1.0."""
    failed: list[str] = []
    good = total = 0
    for call in calls or []:
        total += 1
        name = (call or {}).get("name")
        args = (call or {}).get("arguments")
        rule = None
        if not name:
            rule = "missing_name"
        elif known is not None and name not in known:
            rule = "unknown_tool"
        else:
            try:
                parsed = json.loads(args, parse_constant=_not_json) if isinstance(args, str) else args
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                rule = "arguments_not_json_object"
        if rule is None:
            good += 1
        elif rule not in failed:
            failed.append(rule)
    text_calls = (content or "").count(TOOL_CALL_TEXT)
    if text_calls:
        total += text_calls
        failed.append("tool_call_in_text")
    return (good / total if total else 1.0), failed


def check_tool_calls(
    calls: list[dict[str, Any]] | None, content: str | None, known: Sequence[str] | None
) -> tuple[float, str | None]:
    """``tool_call_failures`` with only the first rule broken (``failed_rule``), None when every call is good."""
    score, failed = tool_call_failures(calls, content, known)
    return score, (failed[0] if failed else None)


# ---------------------------------------------------------------------------------------------------------
# Custom specs (TOML)
# ---------------------------------------------------------------------------------------------------------
def _toml_load(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"--spec {path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--spec {path}: not valid TOML ({exc})") from None


def _compile(path: Path, key: str, pattern: str, flags: int) -> re.Pattern[str]:
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise UsageError(f"--spec {path}: {key}: bad regex {pattern!r} ({exc})") from None


def _one_block(open_: re.Pattern[str], close: re.Pattern[str]) -> TextRule:
    """``tag:<t>``: exactly one open tag and one close tag, the open one first (``</t>x<t>`` is no block,
    whatever the number of tags: ``tag_order``, which would see it, is a rule of two tags or more)."""

    def rule(s: str) -> bool:
        opens, closes = open_.findall(s), close.findall(s)
        if len(opens) != 1 or len(closes) != 1:
            return False
        start = open_.search(s)
        return start is not None and close.search(s, start.end()) is not None

    return rule


def _in_order(pairs: list[tuple[re.Pattern[str], re.Pattern[str]]]) -> TextRule:
    """``tag_order``: a ``<t>…</t>`` block of each tag, one after another in the spec's order (what
    ``re.search("<a>.*?</a>.*?<b>.*?</b>", DOTALL)`` finds), looked for left to right: each tag found at the first
    place after the previous one, which finds the blocks wherever they can be found. Linear in the text, where
    the regex backtracked (about k^3 on ``"<think></think><answer>" * k``: 11 s on 3.5 KB, hours on 10 KB). Where
    a tag occurs more than once (its ``tag:<t>`` rule failed, and is the ``failed_rule``), this still says
    whether blocks in this order are there, as the regex did."""

    def rule(s: str) -> bool:
        at = 0
        for open_, close in pairs:
            for rx in (open_, close):
                found = rx.search(s, at)
                if found is None:
                    return False
                at = found.end()
        return True

    return rule


def _found(rx: re.Pattern[str], *, wanted: bool = True) -> TextRule:
    """The rule that ``rx`` occurs somewhere (``wanted``) or nowhere (not ``wanted``)."""
    return lambda s: (rx.search(s) is not None) == wanted


def _whole(rx: re.Pattern[str]) -> TextRule:
    return lambda s: rx.fullmatch(s) is not None


def _prepared(prep: Callable[[str], str], rule: TextRule) -> TextRule:
    return lambda s: rule(prep(s))


def _tag_rules(tags: list[str], flags: int) -> list[tuple[str, TextRule]]:
    """``tag:<t>`` per tag (``_one_block``), then ``tag_order`` where there are two tags or more (``_in_order``)."""
    rules: list[tuple[str, TextRule]] = []
    pairs = [(re.compile(f"<{re.escape(t)}>", flags), re.compile(f"</{re.escape(t)}>", flags)) for t in tags]
    for tag, (open_, close) in zip(tags, pairs, strict=True):
        rules.append((f"tag:{tag}", _one_block(open_, close)))
    if len(tags) > 1:
        rules.append(("tag_order", _in_order(pairs)))
    return rules


def _strings(*, empty: bool) -> Callable[[Any], bool]:
    """The check of a TOML array of strings (``empty``: the strings may be empty)."""
    return lambda v: isinstance(v, list) and all(isinstance(x, str) and (empty or x) for x in v)


# Each key of a custom spec: what its value must be, in words, and the check. TOML has types, so a wrong one is
# refused rather than coerced: ``forbid = "ab"`` iterated as two patterns, ``ignore_case = "no"`` was truthy.
SPEC_KEYS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "name": ("a string", lambda v: isinstance(v, str)),
    "description": ("a string", lambda v: isinstance(v, str)),
    "tags": ("a list of tag names", _strings(empty=False)),
    "forbid": ("a list of regex strings", _strings(empty=True)),
    "require": ("a list of regex strings", _strings(empty=True)),
    "match": ("a regex string", lambda v: isinstance(v, str)),
    "roles": ("a non-empty list of role names", lambda v: bool(v) and _strings(empty=False)(v)),
    "ignore_case": ("true or false", lambda v: isinstance(v, bool)),
    "crlf": ("true or false", lambda v: isinstance(v, bool)),
}


def _shown(value: Any, most: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= most else text[: most - 3] + "..."


def load_spec(path: str | Path) -> Spec:
    """A custom spec from TOML (format in docs/metrics.md): ordered required ``tags``, ``forbid`` and
    ``require`` regexes (Python ``re``, searched), an optional ``match`` regex for the whole text,
    ``roles`` it applies to, ``ignore_case`` and ``crlf`` (normalise CRLF first, default true). Every key's
    value has its type (``SPEC_KEYS``): a wrong one is a usage error naming the file and the key."""
    path = Path(path)
    data = _toml_load(path)
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise UsageError(f"--spec {path}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(SPEC_KEYS))}")
    for key, value in data.items():
        want, ok = SPEC_KEYS[key]
        if not ok(value):
            raise UsageError(f"--spec {path}: {key} must be {want}, got {_shown(value)}")
    flags = re.IGNORECASE if data.get("ignore_case", False) else 0
    crlf = data.get("crlf", True)
    prep: Callable[[str], str] = (lambda s: s.replace("\r\n", "\n")) if crlf else (lambda s: s)
    rules = _tag_rules(data.get("tags", []), flags)
    for i, pat in enumerate(data.get("forbid", [])):
        rx = _compile(path, "forbid", pat, flags | re.MULTILINE)
        rules.append((f"forbid:{i}", _found(rx, wanted=False)))
    for i, pat in enumerate(data.get("require", [])):
        rx = _compile(path, "require", pat, flags | re.MULTILINE)
        rules.append((f"require:{i}", _found(rx)))
    if "match" in data:
        rx = _compile(path, "match", data["match"], flags | re.DOTALL)
        rules.append(("match", _whole(rx)))
    if not rules:
        raise UsageError(f"--spec {path}: no rules (give tags, forbid, require or match)")
    wrapped = [(n, _prepared(prep, f)) for n, f in rules]
    # A think block it asks for: a tag named think, or a required or whole-text pattern that spells one.
    spelled = [*data.get("require", []), data.get("match", "")]
    think = any(t.lower() == "think" for t in data.get("tags", [])) or any("<think" in p.lower() for p in spelled)
    return Spec(
        data.get("name") or path.stem,
        data.get("description") or f"custom spec {path.name}",
        lambda text: [],
        roles=data.get("roles"),
        python_rules=wrapped,
        think=think,
    )


def get_spec(name_or_path: str) -> Spec:
    """A built-in spec by name, or a custom spec from a TOML file."""
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.exists():
            raise UsageError(f"--spec {name_or_path}: no such file")
        return load_spec(p)
    raise UsageError(f"--spec {name_or_path!r}: expected one of {', '.join(BUILTIN)} or a .toml file")


# Reasoning-to-answer lengths: tokens (whitespace-separated) inside the first think and answer blocks.
def section_tokens(text: pl.Expr, tag: str) -> pl.Expr:
    body = text.str.extract(f"<{tag}>((?s:.*?))</{tag}>", 1)
    return body.str.count_matches(TOKEN_PATTERN)
