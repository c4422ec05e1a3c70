"""The report after the twelfth audit (runs built with ``RunWriter``; every expected figure worked out from the
raw files with pyarrow and json, not with runlog):

- 1: with ``--against BASE``, the baseline's unreadable files are in the page (Comparison, Findings, Data, named
  as the baseline's) and on stderr, each line naming its run as ``runlog diff``'s do;
- 2: opening messages are "the same in all trajectories" only when their whole texts are, not their 3,000
  characters shown;
- 3: a role with no valid reward at the last step keeps its row (the anchor its findings link to), and its note
  offers no option ``report`` does not take;
- 4: the missing steps are counted one way on the page: which have no file, which are in an unreadable file;
- 5: the Data table counts sample rows and scalar lines apart;
- 6: the ``--split`` hint for another split is shell-quoted.
"""

from __future__ import annotations

import html
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("matplotlib", reason="the report's plots need matplotlib: pip install 'runlog[plot]'")

from runlog import open_run  # noqa: E402
from runlog.report import build_report  # noqa: E402
from runlog.writer import RunWriter  # noqa: E402

ROLES = ["solver", "judge"]


def text_of(page: str) -> str:
    """The page as one line of text: images dropped, tags removed, entities decoded."""
    page = re.sub(r"data:image/png;base64,[^\"]+", "", page)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def section(page: str, anchor: str) -> str:
    start = page.index(f'<h2 id="{anchor}">')
    end = page.find("<h2 ", start + 5)
    return page[start : end if end > 0 else len(page)]


def rows(step: int, n: int = 4, *, system: Any = None, judge: Any = "value") -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        sys_text = system(step, i) if system else "You are a debater."
        out.append(
            {
                "sample_id": f"s{step}-{i}",
                "group_id": f"g{step}",
                "reward": 0.1 * i + 0.01 * step,
                "roles": {
                    "solver": {"reward": 0.1 * i, "kl": 0.01},
                    "judge": {"reward": (0.2 * i if judge == "value" else judge), "kl": 0.02},
                },
                "messages": [
                    {"role": "system", "content": sys_text},
                    {"role": "user", "content": f"task {step}/{i}"},
                    {"role": "assistant", "content": f"answer {step}/{i}"},
                ],
            }
        )
    return out


def write_run(root: Path, steps: list[int], *, name: str) -> None:
    with RunWriter(root, name=name, roles=ROLES, durable=False) as w:
        for step in steps:
            w.log_samples(step, rows(step))
            w.log_scalars(step, {"train/loss": 1.0 / (step + 1)})


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def unreadable(path: Path) -> bool:
    try:
        pq.read_table(path)
    except Exception:
        return True
    return False


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """Train steps 0, 1, 2, 4, 5 (no file for 3), step 2's file cut in half."""
    root = tmp_path / "base"
    write_run(root, [0, 1, 2, 4, 5], name="base")
    truncate(root / "samples" / "train" / "step_00000002.p0.parquet")
    return root


# -- 1 --------------------------------------------------------------------------------------------------------


def test_the_baselines_unreadable_file_is_in_the_page_and_stderr_names_its_run(
    cli, tmp_path: Path, damaged: Path, figures_not_drawn
) -> None:
    """``report RUN --against BASE`` said the baseline's unreadable file on stderr without its run
    (``error: samples/train/step_00000002.p0.parquet: ...``: RUN has a file at that path too), and the page named
    it nowhere: the comparison was silently without it."""
    run = tmp_path / "run"
    write_run(run, [0, 1, 2, 3, 4, 5], name="run")
    bad = "samples/train/step_00000002.p0.parquet"
    assert unreadable(damaged / bad) and not unreadable(run / bad)
    out = tmp_path / "r.html"
    res = cli("report", run, "--against", damaged, "-o", out)
    assert res.exit_code == 0, res.output
    lines = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: base: {bad}: unreadable Parquet"), res.stderr
    page = out.read_text(encoding="utf-8")
    comparison = text_of(section(page, "comparison"))
    assert f"The baseline, base, has 1 file that could not be read ({bad}: unreadable Parquet" in comparison
    assert "left out of this comparison" in comparison
    assert f"The baseline, base, has 1 file that could not be read ({bad}" in text_of(section(page, "findings"))
    data = text_of(section(page, "data"))
    assert f"run problem file message base (baseline) unreadable {bad}" in data


def test_the_runs_own_problems_are_named_too_when_a_baseline_is_given(
    cli, tmp_path: Path, damaged: Path, figures_not_drawn
) -> None:
    """Both runs' lines name their run (as ``runlog diff``'s): the run's own unreadable file reads
    ``error: base: ...`` when the baseline is the good run."""
    good = tmp_path / "good"
    write_run(good, [0, 1, 2, 3, 4, 5], name="good")
    out = tmp_path / "r.html"
    res = cli("report", damaged, "--against", good, "-o", out)
    assert res.exit_code == 0, res.output
    errors = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert errors == [x for x in errors if x.startswith("error: base: samples/train/step_00000002.p0.parquet")]
    assert len(errors) == 1
    data = text_of(section(out.read_text(encoding="utf-8"), "data"))
    assert "base unreadable samples/train/step_00000002.p0.parquet" in data


# -- 2 --------------------------------------------------------------------------------------------------------


def test_system_prompts_that_differ_after_the_cut_are_not_said_to_be_the_same(tmp_path: Path, figures_not_drawn):
    """4,000-character system prompts that differ only in their last characters: cut at 3,000 they read alike, and
    the page said "The first 1 message (system) is the same in all N trajectories below" and folded them."""
    root = tmp_path / "run"
    long = "x" * 4000
    with RunWriter(root, name="long", roles=ROLES, durable=False) as w:
        for step in range(2):
            w.log_samples(step, rows(step, system=lambda s, i: f"{long} secret tail {s}-{i}"))
    # The last step's system prompts, read raw: all different, all the same over their first 3,000 characters.
    table = pq.read_table(root / "samples" / "train" / "step_00000001.p0.parquet", columns=["messages"])
    systems = [m[0]["content"] for m in table.column("messages").to_pylist()]
    assert len(set(systems)) == len(systems) == 4 and len({x[:3000] for x in systems}) == 1
    page = build_report(open_run(root))
    assert '<details class="shared">' not in page and "the same in all" not in text_of(page)
    assert "shared by every card" not in text_of(page)


def test_system_prompts_the_same_whole_are_still_folded_once(tmp_path: Path, figures_not_drawn) -> None:
    """The same 4,000-character prompt in every card: shown once, folded, as before."""
    root = tmp_path / "run"
    with RunWriter(root, name="long", roles=ROLES, durable=False) as w:
        for step in range(2):
            w.log_samples(step, rows(step, system=lambda s, i: "y" * 4000))
    page = text_of(build_report(open_run(root)))
    assert re.search(r"The first 1 message \(system\) is the same in all \d trajectories below", page)


# -- 3 --------------------------------------------------------------------------------------------------------


def test_a_role_with_no_valid_reward_at_the_last_step_keeps_its_anchor_and_right_advice(
    tmp_path: Path, figures_not_drawn
) -> None:
    """The judge's rewards are all null at the last step and its KL has NaN earlier (a ``nan_kl · judge`` finding
    links to the judge's trajectories): the row was left out (the link dangled) and the note said "use --index N
    or --random N", which ``report`` does not take."""
    root = tmp_path / "run"
    with RunWriter(root, name="f2", roles=ROLES, durable=False) as w:
        for step in range(3):
            batch = rows(step, judge=None if step == 2 else "value")
            if step == 1:
                batch[0]["roles"]["judge"]["kl"] = float("nan")
            w.log_samples(step, batch)
    last = pq.read_table(root / "samples" / "train" / "step_00000002.p0.parquet", columns=["roles"])
    judge = [x["reward"] for r in last.column("roles").to_pylist() for x in r if x["role"] == "judge"]
    assert judge == [None] * 4
    page = build_report(open_run(root))
    ids = set(re.findall(r'id="([^"]+)"', page))
    links = set(re.findall(r'href="#([^"]+)"', page))
    assert links <= ids, links - ids
    assert any(x.startswith("traj-judge-") for x in links)  # the finding's link, now with its target
    traj = text_of(section(page, "trajectories"))
    assert "judge's reward no card: 4 sample(s) match, but none has a valid judge's reward (all null or NaN)" in traj
    assert f"to see these samples: runlog render-trajectory {shlex.quote(str(root))} --split train --index N" in traj
    assert "use --index N" not in traj


# -- 4 --------------------------------------------------------------------------------------------------------


def test_missing_steps_are_counted_one_way_on_the_page(damaged: Path, figures_not_drawn) -> None:
    """Step 3 has no file, step 2's file cannot be read: the finding said "2 step(s) missing (2-3)", the Data
    section's warning "1 step(s) missing (3): no file holds them". The finding now says which is which."""
    names = sorted(p.name for p in (damaged / "samples" / "train").glob("*.parquet"))
    named = [int(n.split("_")[1].split(".")[0]) for n in names]
    bad = [s for s, n in zip(named, names, strict=True) if unreadable(damaged / "samples" / "train" / n)]
    no_file = [s for s in range(min(named), max(named) + 1) if s not in named]
    assert (bad, no_file) == ([2], [3])
    page = build_report(open_run(damaged))
    findings = text_of(section(page, "findings"))
    assert (
        f"split train: {len(bad) + len(no_file)} step(s) missing (2-3): {len(no_file)} with no file (3), "
        f"{len(bad)} in a file that could not be read (2)"
    ) in findings
    data = text_of(section(page, "data"))
    assert "Missing steps: train: 2–3 (with no file: 3; in a file that could not be read: 2)" in data
    assert f"{len(no_file)} step(s) missing (3): no file holds them" in data


# -- 5 --------------------------------------------------------------------------------------------------------


def test_the_data_table_counts_samples_and_scalar_lines_apart(damaged: Path, figures_not_drawn) -> None:
    """ "rows" was samples and scalar lines added (debate_grpo: 1,120 where the tile says 1,088 samples)."""
    samples = sum(
        pq.ParquetFile(p).metadata.num_rows for p in (damaged / "samples").rglob("*.parquet") if not unreadable(p)
    )
    lines = sum(
        1 for p in damaged.rglob("scalars*.jsonl") for x in p.read_text().splitlines() if x.strip() and json.loads(x)
    )
    assert (samples, lines) == (16, 5)
    data = section(build_report(open_run(damaged)), "data")
    head = re.search(r"<thead>(.*?)</thead>", data, re.S)
    assert head is not None and [html.unescape(x) for x in re.findall(r"<th[^>]*>(.*?)</th>", head.group(1))] == [
        "layout",
        "files",
        "samples",
        "scalar lines",
        "schema versions",
    ]
    first = re.search(r"<tbody>\s*<tr>(.*?)</tr>", data, re.S)
    assert first is not None
    cells = [text_of(x) for x in re.findall(r"<td[^>]*>(.*?)</td>", first.group(1))]
    assert cells[2:4] == [str(samples), str(lines)]


# -- 6 --------------------------------------------------------------------------------------------------------


def test_the_split_hint_is_shell_quoted(tmp_path: Path, figures_not_drawn) -> None:
    """A split named ``ev<x> $(y)`` gave ``(runlog report --split ev<x> $(y))``: pasted, ``<`` and ``>`` are
    redirections and ``$(y)`` runs."""
    root = tmp_path / "run"
    hostile = "ev<x> $(y)"
    with RunWriter(root, name="e", roles=ROLES, durable=False) as w:
        for step in range(2):
            w.log_samples(step, rows(step))
            w.log_samples(step, rows(step), split="ev")
    # The writer takes folder-safe names only: the split renamed in its files and its folder, as another writer
    # could have written it.
    (root / "samples" / hostile).mkdir()
    for path in sorted((root / "samples" / "ev").glob("*.parquet")):
        table = pq.read_table(path)
        table = table.set_column(table.schema.get_field_index("split"), "split", pa.array([hostile] * table.num_rows))
        pq.write_table(table.replace_schema_metadata(table.schema.metadata), root / "samples" / hostile / path.name)
        path.unlink()
    (root / "samples" / "ev").rmdir()
    page = text_of(build_report(open_run(root)))
    assert f"( runlog report {shlex.quote(str(root))} --split {shlex.quote(hostile)} )" in page
    assert shlex.split(f"runlog report {shlex.quote(str(root))} --split {shlex.quote(hostile)}")[-1] == hostile


def test_top_level_scalar_keys_are_named_once(tmp_path: Path) -> None:
    """The report's scalars section said "values of the 2 top-level keys keys" (plot audit a12)."""
    import runlog as _runlog
    from runlog import open_run as _open_run
    from runlog.report import build_report

    run = tmp_path / "run"
    with _runlog.RunWriter(run, name="r") as w:
        for s in range(3):
            w.log_samples(s, {"reward": [0.5, 1.0]})
            w.log_scalars(s, {"loss": 1.0 / (s + 1), "lr": 0.1, "train/kl": 0.01})
    html = build_report(_open_run(run))
    assert "keys keys" not in html
    assert "values of the 2 top-level keys" in html and "values of the 1 train/ keys" in html


def test_sample_files_of_no_rows_are_said_as_such(tmp_path: Path) -> None:
    """The report said "no per-sample data" of a run whose sample files are there and hold no rows (plot audit
    a12): it says that they hold none, as plot does."""
    import runlog as _runlog
    from runlog import open_run as _open_run
    from runlog.report import build_report

    run = tmp_path / "run"
    with _runlog.RunWriter(run, name="r") as w:
        for s in range(3):
            w.log_samples(s, {"reward": [1.0]})
            w.log_scalars(s, {"loss": 1.0})
    files = sorted((run / "samples" / "train").glob("*.parquet"))
    for f in files:
        pq.write_table(pq.read_table(f).slice(0, 0), f)
    assert sum(pq.read_metadata(f).num_rows for f in files) == 0
    page = build_report(_open_run(run))
    assert f"the {len(files)} sample file(s) of split train hold no rows" in html.unescape(page)


def test_scalar_keys_with_nan_steps_say_how_many(tmp_path: Path) -> None:
    """The report's scalars table showed min and max of a loss that was NaN at some steps with no word of them
    (plot audit a12): a "NaN steps" column, where any key has one."""
    import runlog as _runlog
    from runlog import open_run as _open_run
    from runlog.report import build_report

    run = tmp_path / "run"
    losses = [1.0, float("nan"), 0.5, float("nan"), 0.25]
    with _runlog.RunWriter(run, name="r") as w:
        for s, loss in enumerate(losses):
            w.log_samples(s, {"reward": [0.5, 1.0]})
            w.log_scalars(s, {"loss": loss, "lr": 0.1})
    lines = (run / "scalars.p0.jsonl").read_text().splitlines()
    nan_steps = sum(1 for line in lines if json.loads(line).get("loss") != json.loads(line).get("loss"))
    assert nan_steps == 2
    page = build_report(_open_run(run))
    assert "<th>NaN steps</th>" in page or ">NaN steps<" in page
    row = re.search(r"<td>loss</td>(.*?)</tr>", page, re.S)
    assert row is not None and re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))[-1] == str(nan_steps)
