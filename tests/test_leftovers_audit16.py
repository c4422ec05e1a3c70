"""Leftovers of the sixteenth audit in summarize, the usage hints, the trajectory labels, the native reader's
exception column and the report's findings (runs built with ``RunWriter`` or written here; the real NeMo Gym
dump where the shared realdata checkout has it; every expected figure worked out from what the test wrote):

- A: ``summarize`` leaves out the components no sample of a split has (said in one note), and says the pooled
  layouts of its rows' splits, not of the run;
- B: a near-miss name with invisible characters is not offered as a name to type;
- C: trajectory labels are cut as shown, never through an escape;
- D: a native exception value that is the text ``None`` or ``null`` is no failed trajectory, and said (an empty or
  white-space one is a failure: test_exceptions_audit16);
- E: ids repeated within a step are one finding in the report (the doctor's), not two.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from runlog import open_run
from runlog.cli.app import app
from runlog.writer import RunWriter

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
NEMO_FILE = REALDATA / "nemo_gym_tool_call_multireward_rollouts.jsonl"


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def sample(step: int, i: int, sample_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "sample_id": sample_id or f"s{step}-{i}",
        "group_id": f"g{step}",
        "reward": 0.1 * i,
        "roles": {"P": {"reward": 0.1 * i, "kl": 0.01}},
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"answer {i}"}],
        **extra,
    }


# -- A --------------------------------------------------------------------------------------------------------


def loose_dumps(root: Path) -> int:
    """A verifiers eval (6 rows, component ``correct_answer``) beside NeMo Gym train rollouts; NeMo's rows."""
    if not NEMO_FILE.exists():
        pytest.skip(f"real data file {NEMO_FILE.name} not found in {REALDATA} (the shared/realdata checkout)")
    root.mkdir()
    q = [{"role": "user", "content": "q"}]
    lines = [
        json.dumps({"id": i, "prompt": q, "completion": f"a{i}", "reward": 1.0, "correct_answer": 1.0})
        for i in range(6)
    ]
    (root / "results.jsonl").write_text("".join(x + "\n" for x in lines))
    shutil.copy(NEMO_FILE, root / NEMO_FILE.name)
    return len(NEMO_FILE.read_text().splitlines())


def component_rows(out: str) -> list[list[str]]:
    """The component table's rows (cells), as printed."""
    table = out[out.index("Reward components") :]
    return [[c.strip() for c in line.strip("│").split("│")] for line in table.splitlines() if line.startswith("│")]


def test_summarize_of_a_split_leaves_out_the_other_splits_components(tmp_path: Path) -> None:
    """``--split train`` listed the verifiers eval's ``correct_answer`` as ``- 0 0 5``: no train sample has it.
    Left out, said once; the NeMo components keep their rows, whose count + NaN + null are the split's samples;
    JSON keeps every column. Nor does it say the train rows pool two layouts: they are NeMo Gym's alone."""
    nemo = loose_dumps(tmp_path / "dumps")
    r = cli("summarize", str(tmp_path / "dumps"), "--split", "train")
    assert r.exit_code == 0, r.output
    rows = component_rows(r.stdout)
    assert [row[0] for row in rows] == ["correctness", "schema_valid", "format"]
    assert all(int(row[2]) + int(row[3]) + int(row[4]) == nemo for row in rows)
    assert "left out of the component table: split train: correct_answer (--format json" in r.stderr
    assert "pooled in every figure" not in r.stderr
    j = cli("summarize", str(tmp_path / "dumps"), "--split", "train", "--format", "json")
    [row] = json.loads(j.stdout)
    assert row["sample:component/correct_answer_null"] == nemo and row["sample:component/correct_answer_count"] == 0


def test_summarize_per_split_leaves_out_each_splits_absent_components(tmp_path: Path) -> None:
    """The default table of two splits is per split: each split's rows leave out the components none of its
    samples has (NeMo's in eval, verifiers' in train), and no split pools layouts."""
    loose_dumps(tmp_path / "dumps")
    r = cli("summarize", str(tmp_path / "dumps"))
    assert r.exit_code == 0, r.output
    kept = {(row[0], row[1]) for row in component_rows(r.stdout)}
    assert kept == {
        ("eval", "correct_answer"),
        ("train", "correctness"),
        ("train", "schema_valid"),
        ("train", "format"),
    }
    assert "split eval: correctness, schema_valid, format; split train: correct_answer" in r.stderr
    assert "pooled in every figure" not in r.stderr


def test_summarize_keeps_a_component_that_one_step_lacks(tmp_path: Path) -> None:
    """A component logged at step 1 only: per step its null rows at step 0 say where it is missing (the split
    has it), so they stay."""
    root = tmp_path / "run"
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        w.log_samples(0, [sample(0, i) for i in range(2)])
        w.log_samples(1, [sample(1, i, reward_components={"fmt": 1.0}) for i in range(2)])
    r = cli("summarize", str(root), "--by", "step")
    assert r.exit_code == 0, r.output
    assert [row[:2] for row in component_rows(r.stdout)] == [["0", "fmt"], ["1", "fmt"]]
    assert "left out of the component table" not in r.stderr


def test_a_split_pooling_two_layouts_is_said_of_that_split(tmp_path: Path) -> None:
    """Eval pools verifiers and an inspect_ai log; train (NeMo Gym) pools nothing: the note names split eval,
    with its own layouts, not the run's three."""
    from test_inspect_ai import sample as inspect_sample
    from test_inspect_ai import write_json_log

    loose_dumps(tmp_path / "dumps")
    write_json_log(tmp_path / "dumps" / "task.json", [inspect_sample(1, 1), inspect_sample(2, 1)])
    r = cli("summarize", str(tmp_path / "dumps"))
    notes = [x for x in r.stderr.splitlines() if "pooled in every figure" in x]
    assert len(notes) == 1 and notes[0].startswith("note: split eval holds samples of 2 layouts, verifiers (6 rows)")
    assert "nemo_gym" not in notes[0]


# -- B --------------------------------------------------------------------------------------------------------


def test_a_name_with_invisible_characters_is_not_offered_to_type() -> None:
    """``did you mean 'held\\u2028out'?``: pasted, the escape is text and names nothing."""
    from runlog.errors import did_you_mean

    hint = did_you_mean("held", ["held\u2028out", "train"])
    assert "did you mean 'held\\u2028out'?" not in hint
    assert "typed as shown it names nothing" in hint and "runlog inspect RUN --format json" in hint
    assert did_you_mean("trian", ["held\u2028out", "train"]) == " (did you mean 'train'?)"


# -- C --------------------------------------------------------------------------------------------------------


def test_trajectory_labels_are_cut_as_shown() -> None:
    """A 300-ESC sample id was cut at 300 characters, then shown as 1,200 (each ESC ``\\x1b``)."""
    from runlog.render.model import LABEL_CHARS, Conversation, cut_labels
    from runlog.render.safe import one_line

    conv = cut_labels(Conversation(turns=[], source="x", sample_id="\x1b" * 300, split="train"))
    assert conv.sample_id is not None and len(one_line(conv.sample_id)) <= LABEL_CHARS + 40
    assert "[truncated" in conv.sample_id and conv.split == "train"
    head = conv.sample_id.split(" ")[0]
    assert re.fullmatch(r"(\\x1b)+", head)


def test_the_browser_cuts_a_label_between_escapes() -> None:
    """``label`` cut the shown text at 119 characters: through ``\\x1b``, leaving ``\\x1…``."""
    from runlog.render.html_page import CELL_CHARS, label

    out = label("a" + "\x1b" * 100, CELL_CHARS)
    assert out.endswith("…") and len(out) <= CELL_CHARS
    assert re.fullmatch(r"a(\\x1b)+…", out)


# -- D --------------------------------------------------------------------------------------------------------


def blank_exception_run(root: Path) -> None:
    """Four steps of six samples: one real failure each, three values that stand for none ('None', ' null', 'None')."""
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        for step in range(4):
            w.log_samples(step, [sample(step, i) for i in range(6)])
    for f in sorted((root / "samples" / "train").glob("*.parquet")):
        t = pq.read_table(f)
        exc = pa.array(["None", " null\n", None, "None", None, "ValueError: x"], type=pa.string())
        pq.write_table(t.set_column(t.schema.get_field_index("exception"), "exception", exc), f)


@pytest.mark.parametrize("cache", ["off", "on"])
def test_blank_exception_values_are_no_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: str) -> None:
    """16 "failed trajectories" where 4 failed: summarize, inspect, render --exceptions and the report counted
    every non-null text. Each now counts 4 (1 in 6), and one warning says how many values were read as none (a
    second command, its probes cached, says it the same)."""
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RUNLOG_CACHE", cache)
    root = tmp_path / "run"
    blank_exception_run(root)
    for _ in range(2):
        r = cli("summarize", str(root), "--format", "json")
        assert r.exit_code == 0, r.output
        [row] = json.loads(r.stdout)
        assert row["sample:exception_rate"] == pytest.approx(4 / 24)
        said = [x for x in r.stderr.splitlines() if "read as no exception" in x]
        assert len(said) == 1 and "12 exception value(s) in 4 sample files (this one the first)" in said[0]
    per_step = json.loads(cli("summarize", str(root), "--by", "step", "--format", "json").stdout)  # (no role)
    assert [x["exception_rate"] for x in per_step] == pytest.approx([1 / 6] * 4)
    assert json.loads(cli("inspect", str(root), "--format", "json").stdout)["exceptions"] == 4
    rendered = cli("render-trajectory", str(root), "--exceptions", "--format", "json", "--limit", "100")
    assert len(json.loads(rendered.stdout)) == 4


def test_the_report_and_doctor_count_only_real_failures(tmp_path: Path, figures_not_drawn) -> None:
    """The report's tile said 16 failed; the doctor saw an exception spike of 4 in 6 a step (2/3 >= 25 %)."""
    pytest.importorskip("matplotlib")
    from runlog.analysis.doctor import diagnose
    from runlog.report import build_report
    from test_report_audit12 import text_of

    root = tmp_path / "run"
    blank_exception_run(root)
    assert "4 failed trajectories" in text_of(build_report(open_run(root)))
    spikes = [f for f in diagnose(open_run(root)).findings if f.kind == "exception_spike"]
    assert spikes == []  # 1 in 6 a step: under the 25 % threshold


# -- E --------------------------------------------------------------------------------------------------------


def test_ids_repeated_within_a_step_are_one_finding(tmp_path: Path, figures_not_drawn) -> None:
    """A shard copied under another process's name: the doctor's ``repeated_sample_ids`` and the report's own
    run-wide warning both listed it; the doctor's (steps and files named) is kept, and the tile counts it once."""
    pytest.importorskip("matplotlib")
    from runlog.report import build_report
    from test_report_audit12 import text_of

    root = tmp_path / "run"
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        for step in range(3):
            w.log_samples(step, [sample(step, i) for i in range(3)])
    [shard] = (root / "samples" / "train").glob("step_00000001.p0.parquet")
    shutil.copy(shard, shard.with_name("step_00000001.p1.parquet"))
    page = build_report(open_run(root))
    findings = re.findall(r'<div class="finding .*?</div></div>', page)
    repeated = [text_of(b) for b in findings if "occur more than once" in text_of(b)]
    assert len(repeated) == 1 and "repeated_sample_ids" in repeated[0]
    tile = re.search(r'<div class="v">(\d+) / (\d+) / (\d+)</div><div class="k">errors / warnings / info', page)
    assert tile is not None and sum(map(int, tile.groups())) == len(findings)
