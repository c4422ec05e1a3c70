"""``--where``: comparisons of numbers, parsed by hand (never ``eval``) into polars expressions.

Grammar: ``COND (and COND)*`` with ``COND := OPERAND OP NUMBER``; ``OP`` one of ``< <= > >= == !=``;
``OPERAND`` a numeric column (``reward``, ``step``, an extra numeric column such as ``num_turns``),
``role:NAME`` (that role's reward) or ``component:NAME`` (a reward component). Text columns are refused:
ranking and filtering by numbers must never read model text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._lazy import pl
from ..errors import UsageError
from ..schema import NOT_VALUES, TEXT_COLUMNS

OPS: dict[str, Callable[[pl.Expr, float], pl.Expr]] = {
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
}
_TOKEN = re.compile(
    r"\s*(?:(?P<op><=|>=|==|!=|<|>)|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.:])|[-+]?inf\b)"
    r"|(?P<name>(?:role|component):[^\s<>=!]+|[A-Za-z_][\w./-]*))"
)
# Columns that are keys or bookkeeping, not values one filters on.


@dataclass(frozen=True)
class Condition:
    operand: str
    op: str
    value: float

    def __str__(self) -> str:
        v = int(self.value) if self.value.is_integer() else self.value
        return f"{self.operand} {self.op} {v}"


def parse_where(text: str) -> list[Condition]:
    """Parse ``text``; a ``UsageError`` names what was expected and where."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise UsageError(f"--where {text!r}: cannot read {text[pos:].strip()[:20]!r}; {_HELP}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    conds: list[Condition] = []
    i = 0
    while True:
        part = tokens[i : i + 3]
        kinds = [k for k, _ in part]
        if kinds != ["name", "op", "num"] or part[0][1] == "and":
            got = " ".join(v for _, v in part) or "nothing"
            raise UsageError(f"--where {text!r}: expected COLUMN OP NUMBER, got {got!r}; {_HELP}")
        conds.append(Condition(part[0][1], part[1][1], float(part[2][1])))
        i += 3
        if i == len(tokens):
            return conds
        if tokens[i] != ("name", "and"):
            raise UsageError(f"--where {text!r}: conditions are joined by 'and' only; {_HELP}")
        if i + 1 == len(tokens):
            raise UsageError(f"--where {text!r}: no condition after the last 'and'; {_HELP}")
        i += 1


_HELP = "for example --where 'reward < 0.2 and role:judge >= 0.5' (ops < <= > >= == !=)"


def role_reward(name: str) -> pl.Expr:
    """The reward of one role from the canonical ``roles`` list (null when the sample has no such role)."""
    return (
        pl.col("roles")
        .list.eval(pl.element().filter(pl.element().struct.field("role") == name).struct.field("reward"))
        .list.first()
    )


def component(name: str) -> pl.Expr:
    return (
        pl.col("reward_components")
        .list.eval(pl.element().filter(pl.element().struct.field("name") == name).struct.field("value"))
        .list.first()
    )


def where_expr(
    conds: Sequence[Condition], schema: dict[str, pl.DataType], roles: Sequence[str], components: Sequence[str]
) -> pl.Expr:
    """The conditions as one polars filter, each operand checked against what the run has."""
    out: pl.Expr | None = None
    for c in conds:
        expr = operand_expr(c.operand, schema, roles, components)
        # NaN compares greater than every number in polars; a NaN reward matches no comparison here.
        e = OPS[c.op](expr, c.value) & expr.is_not_nan()
        out = e if out is None else out & e
    assert out is not None
    return out


def operand_expr(name: str, schema: dict[str, pl.DataType], roles: Sequence[str], components: Sequence[str]) -> pl.Expr:
    kind, sep, arg = name.partition(":")
    if sep and kind == "role":
        if arg not in roles:
            raise UsageError(f"--where: unknown role {arg!r}; this run's roles: {', '.join(roles) or '(none)'}")
        return role_reward(arg)
    if sep and kind == "component":
        if arg not in components:
            known = ", ".join(components) or "(none)"
            raise UsageError(f"--where: unknown reward component {arg!r}; this run's components: {known}")
        return component(arg)
    numeric = numeric_columns(schema)
    if name not in numeric:
        why = (
            "is text"
            if name in TEXT_COLUMNS
            else "is bookkeeping, not a value of the sample"
            if name in NOT_VALUES
            else "is not a numeric column of this run"
        )
        raise UsageError(f"--where: {name!r} {why}; use one of {', '.join(numeric)}, role:NAME or component:NAME")
    return pl.col(name).cast(pl.Float64)


def numeric_columns(schema: dict[str, pl.DataType]) -> list[str]:
    return [c for c, t in schema.items() if t.is_numeric() and c not in TEXT_COLUMNS and c not in NOT_VALUES]
