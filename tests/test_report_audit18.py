"""The report after the eighteenth audit: ``--against`` names the runs as ``runlog diff`` does (by folder, not by a
manifest name two seeds share); a role that no sample of the last step logs is said to be not logged there, not
"all null or NaN"; the steps whose files hold no rows and the scalar keys' missing steps are in the page; the
warnings of the text reads reach the page and stderr; one byte that is no UTF-8 costs one value, not the file's
every text."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

import runlog
from runlog import open_run
from runlog.analysis.doctor_config import DoctorConfig
from runlog.cli.app import app
from runlog.formats.base import WARNING
from runlog.report import ReportSeries, build_report

TRAIN = DoctorConfig().replace({"split": "train"}, "--split")


def _seed(path: Path, seed: int, steps: int = 4) -> Path:
    with runlog.RunWriter(path, name="exp") as w:
        for s in range(steps):
            w.log_samples(
                s, [{"sample_id": f"{s}-{k}", "group_id": "g", "reward": float((k + seed) % 2)} for k in range(4)]
            )
    return path


def test_against_names_the_runs_by_folder_as_diff_does(tmp_path: Path) -> None:
    """Two seeds whose manifests both say ``exp``: the page said "exp#2 against the baseline exp"; diff says
    seed1 and seed0."""
    base, run = _seed(tmp_path / "seed0", 0), _seed(tmp_path / "seed1", 1)
    page = build_report(open_run(run), TRAIN, against=open_run(base))
    assert "This run, <b>seed1</b>, against the baseline <b>seed0</b>" in page
    assert "exp#2" not in page


def test_against_stderr_names_each_runs_problems_by_folder(tmp_path: Path) -> None:
    """The baseline's unreadable file on stderr and in the Data section, named as runlog diff names its run."""
    base, run = _seed(tmp_path / "seed0", 0), _seed(tmp_path / "seed1", 1)
    broken = base / "samples" / "train" / "step_00000001.p0.parquet"
    broken.write_bytes(broken.read_bytes()[:40])
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", str(run), "--against", str(base), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert re.search(r"error: seed0: samples/train/step_00000001\.p0\.parquet", res.output), res.output
    assert "exp:" not in res.output
    assert '<td class="t">seed0 (baseline)</td>' in out.read_text()
    diffed = CliRunner().invoke(app, ["diff", str(base), str(run), "--format", "json"])
    assert {r["run"] for r in json.loads(diffed.stdout)["roles"]} == {"seed1"}  # the name the page gives it


def _judged(path: Path, judged_at: set[int], judge_reward: float | None = 1.0) -> Path:
    with runlog.RunWriter(path, name="r", roles=["solver", "judge"]) as w:
        for s in range(3):
            w.log_samples(
                s,
                [
                    {
                        "sample_id": f"{s}-{k}",
                        "group_id": "g",
                        "reward": float(k),
                        "roles": [{"role": "solver", "reward": float(k)}]
                        + ([{"role": "judge", "reward": judge_reward}] if s in judged_at else []),
                    }
                    for k in range(4)
                ],
            )
    return path


def _card_row(page: str, role: str) -> str:
    text = html.unescape(page)
    return re.findall(rf"{role}'s reward</span></td><td[^>]*>(.*?)</td>", text)[0]


def test_a_role_absent_at_the_last_step_is_said_not_logged(tmp_path: Path) -> None:
    """No sample of step 2 has a judge entry: not "all null or NaN" (the summary counts 0 null, 0 NaN), but not
    logged there, with the last step that logs it and the command that shows its cards."""
    run = _judged(tmp_path / "run", {0, 1})
    row = _card_row(build_report(open_run(run), TRAIN), "judge")
    assert "judge is not logged at step 2" in row
    assert "null or NaN)" not in row.split("not even")[0]
    assert "the last step that logs it is 1" in row
    assert "--steps 1 --role judge --best 1 --worst 1" in row


def test_a_role_logged_with_null_rewards_is_still_said_null(tmp_path: Path) -> None:
    """Where the judge is logged at the last step with null rewards, the refusal stays the selection's."""
    run = _judged(tmp_path / "run", {0, 1, 2}, judge_reward=None)
    row = _card_row(build_report(open_run(run), TRAIN), "judge")
    assert "none has a valid judge's reward (all null or NaN)" in row
    assert "not logged" not in row


def test_an_empty_step_is_in_the_tile_and_the_data_section(tmp_path: Path) -> None:
    """A step written with no rows: inspect says it; the report said nothing ("4 steps of train (0–4)")."""
    with runlog.RunWriter(tmp_path / "run", name="r") as w:
        for s in range(5):
            rows = [{"sample_id": f"{s}-{k}", "group_id": "g", "reward": float(k)} for k in range(4)]
            w.log_samples(s, [] if s == 2 else rows)
    page = build_report(open_run(tmp_path / "run"), TRAIN)
    assert "steps of train (0–4; step 2 has no rows)" in page
    assert "<p>Steps that hold no rows: train: 2 (files of 0 rows" in page


def test_scalar_key_gaps_are_in_the_data_section_escaped(tmp_path: Path) -> None:
    """A scalar key that missed step 4 of its cadence: inspect says "gaps 4"; the page said nothing. Its name is
    data: escaped."""
    with runlog.RunWriter(tmp_path / "run", name="r") as w:
        for s in range(7):
            w.log_samples(s, [{"sample_id": f"{s}-{k}", "group_id": "g", "reward": float(k)} for k in range(4)])
            if s != 4:
                w.log_scalars(s, {"train/<script>": float(s), "train/loss": 1.0})
    page = build_report(open_run(tmp_path / "run"), TRAIN)
    data = page[page.index('id="data"') :]
    want = (
        "<li>4 (scalars.p0.jsonl): records lost, due of 2 keys logged every step: train/&lt;script&gt;, train/loss</li>"
    )
    assert want in data, data[:3000]
    assert "<script>" not in page


def test_the_text_reads_warnings_reach_the_page(tmp_path: Path) -> None:
    """A warning the text twin's reads give (text read with U+FFFD) is no unreadable file: listed as a warning in
    the Data section, and handed to the CLI for stderr; not said as text that could not be read."""
    run = open_run(_seed(tmp_path / "run", 0))
    series = ReportSeries(run, split="train")
    series.text_run.ctx.warn("samples/train/step_00000003.p0.parquet", "1 text value(s) are not valid UTF-8")
    [said] = series.text_problems()
    assert said.kind == WARNING and "not valid UTF-8" in said.message


def _bad_byte(run: Path) -> Path:
    """Step 2's file with one byte that is no UTF-8 in one of its 8 completions (its messages all valid)."""
    with runlog.RunWriter(run, name="r") as w:
        for s in range(3):
            w.log_samples(
                s,
                [
                    {
                        "sample_id": f"{s}-{k}",
                        "group_id": "g",
                        "reward": float(k),
                        "completion": f"text {k}",
                        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"a {k}"}],
                    }
                    for k in range(8)
                ],
            )
    f = run / "samples" / "train" / "step_00000002.p0.parquet"
    t = pq.read_table(f)
    meta = {k: v for k, v in (t.schema.metadata or {}).items() if k != b"ARROW:schema"}
    values = [x.encode() for x in t.column("completion").to_pylist()]
    values[5] += b"\xff"
    column = pa.array(values, pa.binary()).view(pa.string())
    t = t.set_column(t.schema.get_field_index("completion"), "completion", column)
    pq.write_table(t.replace_schema_metadata(meta), f)
    return f


def test_one_invalid_byte_costs_one_value_not_the_files_texts(tmp_path: Path) -> None:
    """The cards stay at step 2 (its 7 other completions and 8 messages are valid), the page never says the step
    could not be read, and one warning names the file and the count."""
    _bad_byte(tmp_path / "run")
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", str(tmp_path / "run"), "-o", str(out)])
    page = out.read_text()
    assert res.exit_code == 0, res.output
    assert set(re.findall(r"split train, step (\d+)", page)) == {"2"}
    assert "could not be read" not in page
    assert "corrupt data" not in res.output
    assert re.search(r"warning: samples/train/step_00000002\.p0\.parquet: 1 .*UTF-8", res.output), res.output
