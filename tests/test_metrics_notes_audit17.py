"""Audit 17 (metrics, findings 1 and 2): the notes of ``metrics diversity`` name what is there.

1. The rows that fall back to figures over all their texts (no prompt group of two texts) are named as rows: the
   rows (eval, 0) and (train, 1) were said as ``split eval, train; step 0, 1``, which reads as if (train, 0),
   whose figures are within its 2 groups, fell back too.
2. With ``--by role``, a prompt group of one sample in which two roles speak is one prompt group of one text
   left out, not two (it is left out of each role's row: said beside).

The expected rows and groups are those written into the run, never runlog's figures.
"""

from __future__ import annotations

import json

import polars as pl

from runlog import open_run
from runlog.analysis.texts import describe_rows, diversity_frame

from conftest import native_rows, native_run_of


def _row(step: int, group: str, text: str, split: str = "train", messages: list | None = None) -> dict:
    [r] = native_rows(step, 1, split=split, roles=("solver", "judge"))
    r.update(sample_id=f"{split}-{step}-{group}-{text}", group_id=group, prompt=f"P {group}", completion=text)
    r["messages"] = messages
    return r


def test_rows_with_no_groups_are_named_as_rows(cli, tmp_path):
    """Train step 0 has groups of 4 and 2 texts; eval step 0 three groups of one; train step 1 one group of one:
    the rows without a group of two texts are (eval, 0) and (train, 1), and the note names those two alone."""
    rows = [_row(0, "g1", t) for t in ("a b", "a b", "c d", "e f")] + [_row(0, "g2", t) for t in ("x y", "x z")]
    rows += [_row(0, f"e{i}", t, split="eval") for i, t in enumerate(("Yes", "Yes", "No"))]
    rows += [_row(1, "h1", "only one")]
    root = native_run_of(tmp_path / "run", rows)
    res = cli("metrics", "diversity", root, "--format", "json")
    assert res.exit_code == 0, res.output
    fallback = {(r["split"], r["step"]) for r in json.loads(res.stdout) if r["groups"] is None}
    assert fallback == {("eval", 0), ("train", 1)}
    [note] = [line for line in res.stderr.splitlines() if "rows with no groups" in line]
    assert "rows with no groups (split eval, step 0; split train, step 1):" in note


def test_describe_rows_names_only_rows_that_are_there():
    """Every combination of the values said per key (as before, shorter); any other set row by row."""
    product = pl.DataFrame({"split": ["eval", "eval"], "step": [0, 1]})
    assert describe_rows(product, ["split", "step"]) == "split eval; step 0, 1"
    some = pl.DataFrame({"step": [0, 0, 1], "role": ["judge", "solver", "solver"]})
    assert describe_rows(some, ["step", "role"]) == "step 0, role judge, solver; step 1, role solver"
    many = pl.DataFrame({"split": ["a", "b", "c", "d", "d"], "step": [0, 1, 2, 3, 4]})
    assert (
        describe_rows(many, ["split", "step"]) == "split a, step 0; split b, step 1; split c, step 2 (+2 more row(s))"
    )


def test_a_group_of_one_sample_is_counted_once_with_by_role(cli, tmp_path):
    """One prompt group of one sample, where the solver and the judge each speak once: 1 prompt group of one text
    (left out of both roles' rows, said), beside a group of four (before: '2 prompt group(s)')."""

    def msg(role: str, content: str, name: str | None = None) -> dict:
        return {
            "role": role,
            "name": name,
            "content": content,
            "reasoning": None,
            "tool_calls": None,
            "tool_call_id": None,
        }

    def turns(i: str) -> list:
        return [msg("user", "q"), msg("assistant", f"s {i}", "solver"), msg("assistant", f"j {i}", "judge")]

    rows = [_row(0, "g0", "c", messages=turns(str(i))) for i in range(4)] + [_row(0, "g1", "c", messages=turns("1"))]
    root = native_run_of(tmp_path / "run", rows, roles=("solver", "judge"))
    notes: list[str] = []
    df = diversity_frame(open_run(root), ["step", "role"], notes=notes)
    assert sorted(df["role"].to_list()) == ["judge", "solver"] and df["groups"].to_list() == [1, 1]
    [note] = [n for n in notes if "of one text left out" in n]
    assert note.startswith("1 prompt group(s) of one text left out of the means over groups, 2 times in all")
    res = cli("metrics", "diversity", root, "--by", "step", "--by", "role")
    assert res.exit_code == 0, res.output
    assert "note: 1 prompt group(s) of one text left out" in res.stderr
    assert "2 prompt group(s)" not in res.stderr


def test_a_group_of_one_text_without_roles_is_said_as_before(tmp_path):
    """Without --by role a set is a prompt group: the note is the one it was."""
    rows = [_row(0, "g0", t) for t in ("a", "a", "b")] + [_row(0, "g1", "z"), _row(0, "g2", "y")]
    notes: list[str] = []
    diversity_frame(open_run(native_run_of(tmp_path / "run", rows)), ["step"], notes=notes)
    assert "2 prompt group(s) of one text left out of the means over groups (a single text" in " ".join(notes)
