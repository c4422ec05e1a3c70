"""The report and the plots after the sixteenth audit (runs built with ``RunWriter``, JSONL written here, and the
real NeMo Gym dump where the shared realdata checkout has it; every expected text worked out from what the test
wrote, not with runlog):

- A: a role, component or run whose name starts with ``_`` is named in the legend (matplotlib leaves such a
  label out: its "nolegend" convention), in ``runlog plot``'s figures, the report's and the ``--against`` overlays;
- B: the "pooled in every figure" note and the component table are of the report's split, not of the run;
- C: sample ids that repeat at different steps are said as such, not "counted twice";
- D: the "Not in this report" command names the run's path, and names no split it cannot show to paste;
- E: the "no card" command of a run given as one file names that file, not its folder;
- G: a label is cut after its control characters are made visible, never through an escape.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("matplotlib", reason="the report's plots need matplotlib: pip install 'runlog[plot]'")

from runlog import open_run  # noqa: E402
from runlog.report import build_report  # noqa: E402
from runlog.report.template import e1  # noqa: E402
from runlog.writer import RunWriter  # noqa: E402
from test_report_audit12 import section, text_of  # noqa: E402

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
NEMO_FILE = REALDATA / "nemo_gym_tool_call_multireward_rollouts.jsonl"


def sample(step: int, i: int, roles: tuple[str, ...], sample_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "sample_id": sample_id or f"s{step}-{i}",
        "group_id": f"g{step}",
        "reward": 0.1 * i,
        "roles": {r: {"reward": 0.1 * i + 0.01 * k, "kl": 0.01 * (k + 1)} for k, r in enumerate(roles)},
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"answer {i}"}],
        **extra,
    }


def legend_names(fig: Any) -> list[list[str]]:
    """Each panel's legend entries, as drawn."""
    return [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes if ax.get_legend() is not None]


# -- A --------------------------------------------------------------------------------------------------------


def test_names_that_start_with_an_underscore_are_in_the_legends(tmp_path: Path) -> None:
    """Roles ``_solver`` and ``judge``: the reward, KL and histogram panels drew two lines, the legend named one;
    a component ``_format`` beside ``score`` was drawn unnamed too."""
    from runlog.plots import RunSeries, make_figure

    roles = ("_solver", "judge")
    root = tmp_path / "run"
    with RunWriter(root, name="r", roles=list(roles), durable=False) as w:
        for step in range(4):
            rows = [sample(step, i, roles, reward_components={"_format": 0.5, "score": 0.1 * i}) for i in range(3)]
            w.log_samples(step, rows)
    s = RunSeries(open_run(root), split="train")
    for what in ("reward", "kl", "hist"):
        fig = make_figure(s, what)
        assert legend_names(fig)[0] == list(roles), what
    shown = [name for panel in legend_names(make_figure(s, "components")) for name in panel]
    assert sorted(shown) == ["_format", "score"]


def test_an_underscore_run_is_named_in_the_against_overlay(tmp_path: Path) -> None:
    """``--against``: a run named ``_base`` (the dashed baseline) was drawn but left out of the legend."""
    from runlog.analysis.diff import diff_runs
    from runlog.plots.diff import diff_figure

    runs = []
    for name, shift in (("_base", 0.0), ("_new", 0.2)):
        root = tmp_path / name
        with RunWriter(root, name=name, roles=["P"], durable=False) as w:
            for step in range(4):
                w.log_samples(step, [{**sample(step, i, ("P",)), "reward": 0.1 * i + shift} for i in range(3)])
        runs.append(open_run(root))
    fig = diff_figure(diff_runs(runs), "reward", "train")
    assert legend_names(fig)[0] == ["_base (baseline)", "_new"]


# -- B --------------------------------------------------------------------------------------------------------


def verifiers_lines(n: int, *, reward: bool = True) -> str:
    """A verifiers ``results.jsonl`` (split eval) with a reward component of its own, ``correct_answer``."""
    q = [{"role": "user", "content": "q"}]
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"id": i, "prompt": q, "completion": f"a{i}"}
        row |= {"reward": 1.0, "correct_answer": 1.0} if reward else {"reward": None}
        rows.append(json.dumps(row))
    return "".join(x + "\n" for x in rows)


def test_loose_dumps_of_two_splits_are_not_said_pooled_in_either(tmp_path: Path, figures_not_drawn) -> None:
    """A verifiers eval beside NeMo Gym train rollouts: the train report said "this run holds samples of 2
    layouts ... pooled in every figure" of figures that hold NeMo Gym's rows only, and listed the verifiers
    component as a row of nulls."""
    if not NEMO_FILE.exists():
        pytest.skip(f"real data file {NEMO_FILE.name} not found in {REALDATA} (the shared/realdata checkout)")
    run = tmp_path / "dumps"
    run.mkdir()
    (run / "results.jsonl").write_text(verifiers_lines(6))
    shutil.copy(NEMO_FILE, run / NEMO_FILE.name)
    nemo_rows = len(NEMO_FILE.read_text().splitlines())
    page = build_report(open_run(run))
    assert f"{nemo_rows} samples in train" in text_of(page)
    for part in ("findings", "summary"):
        assert "pooled in every figure" not in text_of(section(page, part)), part
    summary = text_of(section(page, "summary"))
    assert "component correct_answer (mean)" not in summary
    assert (
        f"No sample of split train has the component correct_answer (null in all {nemo_rows}): left out of the "
        "table." in summary
    )
    assert "component correctness (mean)" in summary  # NeMo Gym's own, in every train sample
    page = build_report(open_run(run), _config("eval"))
    assert "pooled in every figure" not in text_of(page)


def test_a_split_that_pools_two_layouts_of_three_says_its_own(tmp_path: Path) -> None:
    """The note of a split is over its rows: eval pools verifiers and an inspect_ai log (its 2 layouts, not the
    run's 3); where the split pools what the run does, the run's own words are kept."""
    from runlog.report import split_layouts_note
    from test_inspect_ai import sample as inspect_sample
    from test_inspect_ai import write_json_log

    if not NEMO_FILE.exists():
        pytest.skip(f"real data file {NEMO_FILE.name} not found in {REALDATA} (the shared/realdata checkout)")
    run = tmp_path / "dumps"
    run.mkdir()
    (run / "results.jsonl").write_text(verifiers_lines(5))
    write_json_log(run / "task.json", [inspect_sample(1, 1), inspect_sample(2, 1)])
    inspect_rows = len(json.loads((run / "task.json").read_text())["samples"])
    shutil.copy(NEMO_FILE, run / NEMO_FILE.name)
    opened = open_run(run)
    eval_note = split_layouts_note(opened, "eval")
    assert eval_note is not None and eval_note.startswith(
        f"split eval holds samples of 2 layouts, verifiers (5 rows), inspect_ai ({inspect_rows} rows), pooled"
    )
    assert split_layouts_note(opened, "train") is None
    (run / NEMO_FILE.name).unlink()
    whole = split_layouts_note(open_run(run), "eval")
    assert whole is not None and whole.startswith("this run holds samples of 2 layouts")


def _config(split: str) -> Any:
    from runlog.analysis.doctor import DoctorConfig

    return DoctorConfig(split=split)


# -- C --------------------------------------------------------------------------------------------------------


def finding_text(page: str, kind: str) -> str:
    [block] = [b for b in re.findall(r'<div class="finding .*?</div></div>', page) if kind in b]
    return text_of(block)


def test_ids_repeated_at_other_steps_are_not_said_counted_twice(tmp_path: Path, figures_not_drawn) -> None:
    """Ids ``z0``-``z2`` at each of 3 steps: every row is counted once, at its step (the doctor finds nothing
    within a step), yet the report's warning said "counted twice"."""
    root = tmp_path / "run"
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        for step in range(3):
            w.log_samples(step, [sample(step, i, ("P",), sample_id=f"z{i}") for i in range(3)])
    said = finding_text(build_report(open_run(root)), "occur more than once")
    assert "3 sample id(s) occur more than once (6 extra row(s); first: 'z0', 3 times" in said
    assert "each time at a different step or split, never twice within one: every row is counted once" in said
    assert "counted twice" not in said


def test_ids_repeated_within_a_step_are_said_counted_twice_there(tmp_path: Path, figures_not_drawn) -> None:
    """A shard copied under another process's name: its ids repeat within their step, and those rows are
    counted twice in that step's figures."""
    root = tmp_path / "run"
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        for step in range(3):
            w.log_samples(step, [sample(step, i, ("P",)) for i in range(3)])
    [shard] = (root / "samples" / "train").glob("step_00000001.p0.parquet")
    shutil.copy(shard, shard.with_name("step_00000001.p1.parquet"))
    page = build_report(open_run(root))
    # One finding: the doctor's, which names the step and files (the report's own run-wide warning says only ids
    # repeated at other steps or splits, so that a repeat is not said twice).
    said = finding_text(page, "repeated_sample_ids")
    assert "occur more than once within their step" in said
    assert "more than once within one step" not in text_of(page)


# -- D --------------------------------------------------------------------------------------------------------


def two_split_run(root: Path, other: str) -> None:
    """A train split and a second split named ``other`` (written as ``eval``, then renamed in its folder and
    its rows: the writer's names are plain)."""
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        for step in range(2):
            w.log_samples(step, [sample(step, i, ("P",)) for i in range(3)])
            w.log_samples(step, [sample(step, i, ("P",), sample_id=f"e{step}-{i}") for i in range(2)], split="eval")
    if other != "eval":
        (root / "samples" / "eval").rename(root / "samples" / other)
        for f in (root / "samples" / other).iterdir():
            t = pq.read_table(f)
            col = t.schema.get_field_index("split")
            pq.write_table(t.set_column(col, "split", pa.array([other] * t.num_rows)), f)


def absent_line(page: str) -> str:
    return text_of(re.search(r'<div class="absent">.*?</div>', page).group(0))  # type: ignore[union-attr]


def test_the_other_split_command_names_the_run(tmp_path: Path, figures_not_drawn) -> None:
    """``(runlog report --split eval)`` left out the run: pasted, it is refused (RUN is required)."""
    root = tmp_path / "my run"
    two_split_run(root, "eval")
    said = absent_line(build_report(open_run(root)))
    assert f"( runlog report {shlex.quote(str(root))} --split eval )" in said  # the command, in <code>


def test_a_split_the_page_cannot_show_to_paste_gets_no_command(tmp_path: Path, figures_not_drawn) -> None:
    """A split ``held<U+2028>out`` was offered as ``--split 'held\\u2028out'``: the escape the page shows is
    no character once pasted, and that command names no split."""
    root = tmp_path / "run"
    two_split_run(root, "held\u2028out")
    said = absent_line(build_report(open_run(root)))
    assert "held\\u2028out" in said  # the name, shown visibly
    assert "'held\\u2028out'" not in said and "--split held" not in said
    assert f"runlog report {root} --split SPLIT (SPLIT: the split's name has invisible characters" in said
    assert f"runlog inspect {root} --format json gives it exactly" in said


# -- E --------------------------------------------------------------------------------------------------------


def test_the_no_card_command_of_a_file_names_the_file(tmp_path: Path, figures_not_drawn) -> None:
    """A results file without rewards given alone, beside another dump: the hint said ``render-trajectory
    FOLDER``, which reads the other dump too (its sample 0 is another file's)."""
    folder = tmp_path / "dumps"
    folder.mkdir()
    (folder / "a_results.jsonl").write_text(verifiers_lines(3, reward=False))
    (folder / "b_results.jsonl").write_text(verifiers_lines(4))
    target = folder / "a_results.jsonl"
    said = text_of(section(build_report(open_run(target)), "trajectories"))
    assert f"runlog render-trajectory {target} --split eval --index N" in said
    assert f"render-trajectory {folder} " not in said


# -- G --------------------------------------------------------------------------------------------------------


def test_a_label_is_cut_as_shown_never_through_an_escape() -> None:
    """300 ESC characters were cut (to 300, their limit) before being made visible: 1,200 characters on the
    page. Cut as shown, at most 300 characters and the marker; each end made of whole ``\\x1b`` escapes."""
    label = "\x1b" * 300
    shown = e1(label)
    head, marker, tail = re.fullmatch(r"(.*) (… \[truncated (?:\d+) chars\]) … (.*)", shown).groups()  # type: ignore[union-attr]
    assert len(head) + len(tail) <= 300
    assert re.fullmatch(r"(\\x1b)+", head) and re.fullmatch(r"(\\x1b)+", tail)
    kept = (len(head) + len(tail)) // 4
    assert marker == f"… [truncated {300 - kept} chars]"
    # A long name of plain characters: 150 at each end, as before.
    plain = "a" * 200 + "b" * 200
    assert e1(plain) == "a" * 150 + " … [truncated 100 chars] … " + "b" * 150
    # Escapes of different lengths at the cut: no backslash left alone at an end.
    mixed = ("x\u202e" * 200)[:-1] + "\U000e0041" * 3
    cut = e1(mixed)
    start, _, end = cut.partition(" … [truncated")
    assert not re.search(r"\\(u[0-9a-f]{0,3}|U[0-9a-f]{0,7})$", start)
    assert end.endswith("\\U000e0041" * 3)
