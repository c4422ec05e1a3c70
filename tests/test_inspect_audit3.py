"""``runlog inspect``: counts of files without Parquet statistics, files found unreadable by ``--deep``, a wrong
type inside ``roles``, the verdict on gaps and incomplete writers, the stride of an off-stride final step, the
roles read from data, and what version each file states. Expected figures come from pyarrow on the raw files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog
from runlog.analysis.inspect import inspect_run, step_gaps
from runlog.run import open_run

from conftest import make_native_run


def _write(root: Path, steps: range | list[int] = range(4), processes: tuple[int, ...] = (0,), n: int = 6) -> Path:
    """A run written by ``RunWriter``: ``n`` samples a step and process (every third reward null, ``num_turns``
    null every fourth), roles solver and verifier, a scalar per step."""
    for p in processes:
        with runlog.RunWriter(root, name=root.name, roles=["solver", "verifier"], process_index=p) as w:
            for s in steps:
                rows = [
                    {
                        "reward": None if i % 3 == 0 else 0.1 * i,
                        "group_id": f"g{s}-{i // 2}",
                        "roles": {"solver": {"reward": 0.5, "kl": 0.01}, "verifier": {"reward": 0.2, "kl": None}},
                        "num_turns": None if i % 4 == 0 else i,
                        "completion": "c",
                    }
                    for i in range(n)
                ]
                w.log_samples(s, rows)
                w.log_scalars(s, {"train/loss": 1.0 / (s + 1)})
    return root


def _samples(root: Path) -> list[Path]:
    return sorted((root / "samples").rglob("*.parquet"))


def _report(cli, root: Path, *args: str) -> dict:
    result = cli("inspect", root, "--no-cache", "--format", "json", *args)
    return json.loads(result.stdout)


# -- 1. files without statistics -------------------------------------------------------------------------------


def test_files_without_statistics_are_counted_by_reading_their_numbers(tmp_path, cli):
    """Parquet statistics are optional: a file written without them (steps 0 and 2 here) still counts its rows
    and nulls, plain (footers) and ``--deep`` (its extra numeric column), as pyarrow reads them."""
    root = _write(tmp_path / "r")
    for f in _samples(root)[::2]:
        pq.write_table(pq.read_table(f), f, write_statistics=False)
    assert pq.ParquetFile(_samples(root)[0]).metadata.row_group(0).column(0).statistics is None
    tables = [pq.read_table(f) for f in _samples(root)]
    rows = sum(t.num_rows for t in tables)
    reward_null = sum(t.column("reward").null_count for t in tables)
    turns = np.concatenate([t.column("num_turns").to_numpy(zero_copy_only=False) for t in tables]).astype(float)
    turns_null = sum(t.column("num_turns").null_count for t in tables)

    plain = _report(cli, root)
    assert plain["rows_by_kind"]["samples"] == rows == 24
    assert plain["numeric"]["reward"]["rows"] == rows and plain["numeric"]["reward"]["null"] == reward_null == 8
    assert plain["numeric"]["num_turns"]["rows"] == rows and plain["numeric"]["num_turns"]["null"] == turns_null

    deep = _report(cli, root, "--deep")
    assert deep["numeric"]["num_turns"] == {
        "rows": rows,
        "null": turns_null,
        "nan": 0,
        "inf": 0,
        "valid": int(np.sum(~np.isnan(turns))),
    }


# -- 2. a file --deep finds unreadable -------------------------------------------------------------------------


def test_a_file_deep_finds_unreadable_is_left_out_of_every_count(tmp_path, cli):
    """Step 2's data pages garbled behind an intact footer: ``--deep`` skips the file, and its rows, version,
    layout rows and step leave every figure (step 2, which no other file holds, is a gap), table and JSON alike."""
    root = _write(tmp_path / "r", steps=range(5))
    bad = root / "samples/train/step_00000002.p0.parquet"
    data = bytearray(bad.read_bytes())
    data[8:400] = b"\x55" * 392
    bad.write_bytes(bytes(data))
    good = [f for f in _samples(root) if f != bad]
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in good)
    scalar_lines = len((root / "scalars.p0.jsonl").read_text().splitlines())

    r = _report(cli, root, "--deep")
    assert [p["path"] for p in r["problems"] if p["kind"] == "unreadable"] == [bad.relative_to(root).as_posix()]
    assert r["rows_by_kind"] == {"samples": rows, "scalars": scalar_lines}
    assert r["rows"] == rows + scalar_lines == r["layouts"]["runlog"]["rows"]
    assert r["layouts"]["runlog"]["by_version"]["2 (skipped)"] == 1
    assert r["schema_versions"] == {"2": len(good) + 1}  # the skipped file still states its version
    assert r["step_gaps"] == {"train": [[2, 2]]}
    assert r["numeric"]["reward"]["rows"] == rows
    text = cli("inspect", root, "--no-cache", "--deep").stdout
    assert f"{rows + scalar_lines} readable rows ({rows} samples, {scalar_lines} scalars)" in text


# -- 3. a wrong type inside roles ------------------------------------------------------------------------------

ROLE_VARIANTS = {
    "reward is a struct": [{"role": "solver", "reward": {"v": 0.9}, "kl": 0.1}],
    "fields renamed": [{"name": "solver", "score": 0.9, "kl_div": 0.1}],
    "reward is text": [{"role": "solver", "reward": "0.9", "kl": 0.1}],  # (a whole-number role id reads as text)
}


@pytest.mark.parametrize("variant", list(ROLE_VARIANTS))
def test_a_wrong_type_inside_roles_skips_that_file_and_the_rest_is_read(tmp_path, cli, variant):
    """format.md: a column of the wrong kind is a ``wrong_type`` problem that skips the file; inside the nested
    ``roles`` too (a struct where a number belongs failed every data-reading command for the whole run; renamed
    fields lost the file's per-role data without a word). Found from the footer, by plain inspect too."""
    root = _write(tmp_path / "r")
    bad = root / "samples/train/step_00000002.p0.parquet"
    t = pq.read_table(bad)
    cells = pa.array([ROLE_VARIANTS[variant]] * t.num_rows)
    pq.write_table(t.set_column(t.schema.get_field_index("roles"), "roles", cells), bad)
    good = [pq.read_table(f) for f in _samples(root) if f != bad]
    solver = [
        x["reward"] for t in good for cell in t.column("roles").to_pylist() for x in cell if x["role"] == "solver"
    ]

    for extra in ((), ("--deep",)):
        result = cli("inspect", root, "--no-cache", "--format", "json", *extra)
        assert result.exit_code == 1
        r = json.loads(result.stdout)
        assert [(p["kind"], p["path"]) for p in r["problems"] if p["kind"] != "warning"] == [
            ("wrong_type", "samples/train/step_00000002.p0.parquet")
        ]
        assert "roles" in r["problems"][0]["message"] and "file skipped" in r["problems"][0]["message"]
    assert r["numeric"]["solver/reward"]["rows"] == len(solver) == 18
    summary = cli("summarize", root, "--no-cache", "--by", "role", "--format", "json")
    assert summary.exit_code == 1 and "wrong column type" in summary.stderr
    rows = {row["role"]: row for row in json.loads(summary.stdout)}
    assert rows["solver"]["reward_count"] == len(solver)
    assert rows["solver"]["reward_mean"] == pytest.approx(float(np.mean(solver)))


# -- 6. the verdict --------------------------------------------------------------------------------------------


def test_a_missing_step_is_a_warning_that_strict_fails_as_doctor_does(tmp_path, cli):
    """Both shards of step 3 deleted: the gap is a warning with a one-line message, so ``--strict`` exits 1
    (it said "valid: no problems found", exit 0); ``doctor`` flags the same gap."""
    root = _write(tmp_path / "r", steps=range(8), processes=(0, 1))
    for p in (0, 1):
        (root / f"samples/train/step_00000003.p{p}.parquet").unlink()
    plain = cli("inspect", root, "--no-cache")
    assert plain.exit_code == 0 and "valid, with 1 warning(s)." in plain.stdout
    assert cli("inspect", root, "--no-cache", "--strict").exit_code == 1
    r = _report(cli, root)
    assert r["warnings"] == 1 and r["step_gaps"] == {"train": [[3, 3]]}
    assert [p["message"] for p in r["problems"]] == ["split 'train': 1 step(s) missing (3): no file holds them"]
    doctor = cli("doctor", root, "--format", "json")
    assert doctor.exit_code == 1
    assert "step_gaps" in {f["kind"] for f in json.loads(doctor.stdout)["findings"]}


def test_files_a_closed_writer_wrote_and_are_missing_are_a_warning(tmp_path, cli):
    """Process 1's last train file deleted: its writer state says it wrote step 7; inspect warns (``--strict``
    exits 1), as doctor's ``writer_incomplete`` does."""
    root = _write(tmp_path / "r", steps=range(8), processes=(0, 1))
    (root / "samples/train/step_00000007.p1.parquet").unlink()
    assert cli("inspect", root, "--no-cache").exit_code == 0
    assert cli("inspect", root, "--no-cache", "--strict").exit_code == 1
    r = _report(cli, root)
    [warning] = [p for p in r["problems"] if p["kind"] == "warning"]
    assert "process 1" in warning["message"] and "up to step 7" in warning["message"]
    assert "step 6" in warning["message"]
    doctor = json.loads(cli("doctor", root, "--format", "json").stdout)
    assert any("writer_incomplete" in f["message"] for f in doctor["findings"])


# -- 7. stride -------------------------------------------------------------------------------------------------


def test_an_off_stride_final_step_is_not_a_gap():
    assert step_gaps([0, 8, 16, 20]) == (8, [])
    assert step_gaps([0, 10, 20, 30, 35]) == (10, [])
    assert step_gaps([0, 8, 16, 30]) == (8, [[24, 24]])  # 24 is on the stride and missing
    assert step_gaps([0, 8, 24, 28]) == (8, [[16, 16]])
    assert step_gaps([0, 25, 50, 100]) == (25, [[75, 75]])
    assert step_gaps([0, 4, 5]) == (1, [[1, 3]])  # one difference before the last tells no stride


def test_eval_every_n_steps_and_at_the_last_has_no_gaps_in_inspect_or_doctor(tmp_path, cli):
    root = tmp_path / "r"
    with runlog.RunWriter(root, name="r") as w:
        for s in range(21):
            w.log_samples(s, [{"reward": 0.5, "group_id": f"g{s}"}] * 2)
            if s % 8 == 0 or s == 20:
                w.log_samples(s, [{"reward": 1.0, "group_id": f"e{s}"}] * 2, split="eval")
    evals = sorted(int(f.name[5:13]) for f in (root / "samples/eval").glob("*.parquet"))
    assert evals == [0, 8, 16, 20]
    r = _report(cli, root)
    assert r["step_stride"]["eval"] == 8 and r["step_gaps"]["eval"] == [] and r["warnings"] == 0
    doctor = json.loads(cli("doctor", root, "--split", "eval", "--format", "json").stdout)
    assert "step_gaps" not in {f["kind"] for f in doctor["findings"]}


# -- 8. roles --------------------------------------------------------------------------------------------------


def test_deep_adds_the_roles_the_data_hold(tmp_path, cli):
    """Footers carry no role names: plain inspect says the list may be incomplete (or unknown, without a
    manifest); ``--deep`` adds the roles it reads."""
    root = make_native_run(tmp_path / "r", steps=range(2), roles=("solver",))
    truth = {x["role"] for f in _samples(root) for cell in pq.read_table(f).column("roles").to_pylist() for x in cell}
    manifest = json.loads((root / "run.json").read_text())
    manifest["roles"] = ["solver"]
    (root / "run.json").write_text(json.dumps(manifest))
    plain = _report(cli, root)
    assert plain["roles"] == ["solver"] and plain["roles_complete"] is False
    assert "the data may hold others" in cli("inspect", root, "--no-cache").stdout
    deep = _report(cli, root, "--deep")
    assert set(deep["roles"]) == truth and deep["roles"][0] == "solver" and deep["roles_complete"] is True

    (root / "run.json").unlink()
    assert _report(cli, root)["roles"] == []
    assert "roles: not known from footers" in cli("inspect", root, "--no-cache").stdout
    assert set(_report(cli, root, "--deep")["roles"]) == truth


# -- 10, 11. versions ------------------------------------------------------------------------------------------


def test_schema_versions_count_only_files_that_state_one(tmp_path):
    """A scalars JSONL states no version: ``schema_versions`` counts the sample files alone (it counted the
    scalars file as the manifest's version, or v2 where the manifest was refused)."""
    root = make_native_run(tmp_path / "r", steps=range(3))
    r = inspect_run(open_run(root, cache=False))
    assert r.schema_versions == {"2": len(_samples(root))}
    assert next(f for f in r.files if f["kind"] == "scalars")["schema_version"] is None


def test_version_metadata_that_is_no_number_and_a_partly_null_version_column_are_said(tmp_path):
    root = make_native_run(tmp_path / "r", steps=range(3))
    first, second = _samples(root)[:2]
    t = pq.read_table(first)
    pq.write_table(t.replace_schema_metadata({"runlog.schema_version": "two"}), first)
    t = pq.read_table(second)
    versions = pa.array([None if i % 2 else 2 for i in range(t.num_rows)], pa.int32())
    pq.write_table(t.set_column(0, "schema_version", versions), second)
    r = inspect_run(open_run(root, cache=False))
    said = {p.path: p.message for p in r.problems}
    assert r.errors == 0
    assert "'two', not a number" in said[first.relative_to(root).as_posix()]
    nulls = pq.read_table(second).column("schema_version").null_count
    assert f"{nulls} of its {t.num_rows} rows have no schema_version" in said[second.relative_to(root).as_posix()]
