"""The report after the fourteenth audit (runs built with ``RunWriter`` and pyarrow; every expected figure worked out
here from what the test wrote, not with runlog):

- 1: a folder of loose dumps of two layouts says, as ``summarize`` does, that every figure pools them;
- 2: a reward component's NaN and null values, left out of its mean, are counted beside it;
- 3: a last step whose file holds no rows does not empty the trajectory cards: they are of the last step that
  has samples, and the section says so;
- 4: long labels (run, role, component, scalar key) are cut at 300 characters everywhere on the page;
- 5: the Findings note's ``--split`` hint is shell-quoted;
- 6: ``--against`` the run itself says that it is the same run, as ``runlog diff A A`` does;
- 7: a null evidence value reads as ``-``, not a blank; a sample's reward in its titles reads as in its card.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("matplotlib", reason="the report's plots need matplotlib: pip install 'runlog[plot]'")

from runlog import open_run  # noqa: E402
from runlog.analysis.findings import Finding  # noqa: E402
from runlog.report import build_report  # noqa: E402
from runlog.writer import RunWriter  # noqa: E402
from test_inspect_ai import sample as inspect_sample  # noqa: E402
from test_inspect_ai import write_json_log  # noqa: E402
from test_report_audit12 import section, text_of  # noqa: E402


def sample(step: int, i: int, role: str = "P", **extra: Any) -> dict[str, Any]:
    return {
        "sample_id": f"s{step}-{i}",
        "group_id": f"g{step}",
        "reward": 0.1 * i,
        "roles": {role: {"reward": 0.1 * i, "kl": 0.01}},
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"answer {i}"}],
        **extra,
    }


# -- 1 --------------------------------------------------------------------------------------------------------


def test_a_folder_of_two_layouts_says_in_the_report_that_every_figure_pools_them(
    tmp_path: Path, figures_not_drawn
) -> None:
    """``summarize`` warned that a verifiers results file and an inspect_ai log side by side are pooled in one
    row; the report showed the pooled row with no word of it."""
    run = tmp_path / "dumps"
    run.mkdir()
    q = [{"role": "user", "content": "q"}]
    lines = [json.dumps({"id": i, "prompt": q, "completion": "a", "reward": 0.5}) for i in range(5)]
    (run / "results.jsonl").write_text("".join(x + "\n" for x in lines))
    write_json_log(run / "task.json", [inspect_sample(1, 1), inspect_sample(2, 1)])
    inspect_rows = len(json.loads((run / "task.json").read_text())["samples"])
    page = build_report(open_run(run))
    note = (
        f"this run holds samples of 2 layouts, verifiers ({len(lines)} rows), inspect_ai ({inspect_rows} rows), "
        "pooled in every figure"
    )
    for part in ("findings", "summary"):
        said = text_of(section(page, part))
        assert note in said, part
        assert "pass one file or folder to see one apart" in said and "--by env" not in said  # report has no --by


def test_one_layout_has_no_pooling_note(tmp_path: Path, figures_not_drawn) -> None:
    root = tmp_path / "run"
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        for step in range(2):
            w.log_samples(step, [sample(step, i) for i in range(3)])
    assert "pooled in every figure" not in text_of(build_report(open_run(root)))


# -- 2 --------------------------------------------------------------------------------------------------------


def test_component_nan_and_null_values_are_counted_beside_the_mean(tmp_path: Path, figures_not_drawn) -> None:
    """``component fmt (mean) 1`` over 8 of 16 samples: 4 NaN and 4 without the component were left out, and the
    table said nothing of them."""
    root = tmp_path / "run"
    written: list[float | None] = []
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        for step in range(2):
            rows = []
            for i in range(8):
                value = math.nan if i < 2 else (None if i < 4 else 1.0)
                written.append(value)
                extra = {} if value is None else {"reward_components": {"fmt": value}}
                rows.append(sample(step, i, **extra))
            w.log_samples(step, rows)
    valid = [v for v in written if v is not None and not math.isnan(v)]
    nan = sum(1 for v in written if v is not None and math.isnan(v))
    null = sum(1 for v in written if v is None)
    assert (len(valid), nan, null) == (8, 4, 4)
    summary = section(build_report(open_run(root)), "summary")
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", summary) if "component fmt" in r)
    cells = [text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
    assert cells == ["component fmt (mean)", f"{sum(valid) / len(valid):g}", str(len(valid)), str(nan), str(null)]
    assert "NaN" in text_of(summary) and "left out and counted" in text_of(summary)


# -- 3 --------------------------------------------------------------------------------------------------------


def test_an_empty_last_step_file_keeps_the_cards_of_the_last_step_with_samples(
    tmp_path: Path, figures_not_drawn
) -> None:
    """Steps 0-2 hold 4 samples each, step 3's file 0 rows: the section said "No sample with a valid reward at the
    last step" and showed no card."""
    root = tmp_path / "run"
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        for step in range(3):
            w.log_samples(step, [sample(step, i) for i in range(4)])
    [step2] = sorted((root / "samples" / "train").glob("step_00000002*.parquet"))
    table = pq.read_table(step2)
    empty = root / "samples" / "train" / step2.name.replace("00000002", "00000003")
    pq.write_table(table.slice(0, 0), empty)
    assert pq.read_metadata(empty).num_rows == 0
    part = text_of(section(build_report(open_run(root)), "trajectories"))
    assert "No sample with a valid reward" not in part and "no sample with a valid reward" not in part
    assert "Step 3 of split train has no samples: the cards are of step 2" in part
    # Best at step 2: s2-3 (reward 0.3), worst: s2-0 (reward 0).
    assert "sample s2-3" in part and "sample s2-0" in part


# -- 4 --------------------------------------------------------------------------------------------------------


def test_long_labels_are_cut_everywhere_on_the_page(tmp_path: Path, figures_not_drawn) -> None:
    """A 1 MB role name was written whole five times (tile, summary, ranking, card titles), a component name and
    a scalar key once each, the run name in the title and header: the page grew nine times the label."""
    n = 20_000
    role, comp, key, name = "R" * n, "K" * n, "Q" * n, "N" * n
    root = tmp_path / "run"
    with RunWriter(root, name=name, roles=[role], durable=False) as w:
        for step in range(3):
            rows = [sample(step, i, role=role, reward_components={comp: 0.1 * i}) for i in range(4)]
            w.log_samples(step, rows)
            w.log_scalars(step, {key: 1.0})
    page = build_report(open_run(root))
    for label in (role, comp, key, name):
        assert label[:301] not in page  # 300 characters at most of a label, both ends together
    assert f"[truncated {n - 300} chars]" in page
    assert len(page.encode()) < 2 * n  # the page is not a multiple of the labels


# -- 5 --------------------------------------------------------------------------------------------------------


def test_the_findings_split_hint_is_shell_quoted(tmp_path: Path, figures_not_drawn) -> None:
    """``(--split held out for it)`` pasted is two words; "Not in this report" quoted it already."""
    root = tmp_path / "run"
    other = "held out"
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        for step in range(2):
            w.log_samples(step, [sample(step, i) for i in range(3)])
            w.log_samples(step, [sample(step, i) for i in range(3)], split="ev")
    # The writer takes folder-safe names only: the split renamed in its files and its folder.
    (root / "samples" / other).mkdir()
    for path in sorted((root / "samples" / "ev").glob("*.parquet")):
        table = pq.read_table(path)
        table = table.set_column(table.schema.get_field_index("split"), "split", pa.array([other] * table.num_rows))
        pq.write_table(table, root / "samples" / other / path.name)
        path.unlink()
    (root / "samples" / "ev").rmdir()
    findings = text_of(section(build_report(open_run(root)), "findings"))
    assert f"(--split {shlex.quote(other)} for it)" in findings
    assert shlex.split(f"runlog report --split {shlex.quote(other)}")[-1] == other


# -- 6 --------------------------------------------------------------------------------------------------------


def test_against_the_run_itself_says_so(tmp_path: Path, figures_not_drawn) -> None:
    root = tmp_path / "run"
    other = tmp_path / "other"
    for where in (root, other):
        with RunWriter(where, name="r", roles=["P"], durable=False) as w:
            for step in range(3):
                w.log_samples(step, [sample(step, i) for i in range(4)])
    same = text_of(section(build_report(open_run(root), against=open_run(str(root) + "/")), "comparison"))
    assert "the same run, compared with itself" in same
    apart = text_of(section(build_report(open_run(root), against=open_run(other)), "comparison"))
    assert "compared with itself" not in apart  # the same name, another run


# -- 7 --------------------------------------------------------------------------------------------------------


def test_a_null_evidence_value_reads_as_a_dash(tmp_path: Path) -> None:
    from runlog.report import _finding

    shown = text_of(_finding(Finding("reward_stuck", "warning", "stuck", evidence={"flat_value": None, "n": 2})))
    assert re.search(r"flat_value= ?- ?,", shown), shown  # was "flat_value=, n=2"


def test_a_samples_reward_reads_the_same_in_its_titles_and_its_card(tmp_path: Path, figures_not_drawn) -> None:
    """The ranking table and the card's title said 0.3 where the card's reward table said 0.30000000000000004
    (0.1 * 3): one sample's value, written two ways."""
    root = tmp_path / "run"
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        for step in range(2):
            w.log_samples(step, [sample(step, i) for i in range(4)])
    value = repr(0.1 * 3)
    assert value == "0.30000000000000004"
    part = text_of(section(build_report(open_run(root)), "trajectories"))
    assert f"P's reward s1-3 {value} s1-0 0" in part  # the ranking table
    assert f"best by P's reward ({value})" in part  # the card's title
    assert f"total {value}" in part  # the card's own reward table
