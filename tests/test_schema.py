"""Schema versions: the gate, the ordered migrations, and one frozen fixture file per version."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from runlog import open_run
from runlog import schema as S
from runlog.formats.base import NEWER_VERSION, UNKNOWN_VERSION, FileInfo, RunContext
from runlog.formats.common import gate_version
from runlog.textparse import parse_number_dict

from conftest import FIXTURES

VERSIONS = FIXTURES / "versions"


def test_every_known_version_has_a_migration_path_and_a_fixture():
    assert list(S.KNOWN_VERSIONS) == list(range(S.CURRENT_VERSION + 1))
    for v in range(S.CURRENT_VERSION):
        assert v in S.MIGRATIONS, f"no migration from v{v}"
    for v in (*S.KNOWN_VERSIONS, S.CURRENT_VERSION + 1):
        assert (VERSIONS / f"v{v}").is_dir(), f"no fixture for v{v}"


def _gated(version: int | None, **kw: Any) -> tuple[bool, FileInfo, RunContext]:
    info = FileInfo("samples/train/step_00000001.p0.parquet", Path("f"), "native", "parquet", "samples", 1)
    ctx = RunContext(root=Path("."))
    return gate_version(info, ctx, version, **kw), info, ctx


def test_newer_version_is_refused_naming_file_and_upgrade():
    """The one version gate (``formats.common.gate_version``): a newer file is a problem naming the file and
    the upgrade, and is left unread; an unknown one likewise; a known one passes."""
    ok, info, ctx = _gated(S.CURRENT_VERSION + 1)
    [p] = ctx.problems
    assert not ok and not info.readable and p.kind == NEWER_VERSION
    assert p.path == "samples/train/step_00000001.p0.parquet"
    assert (
        f"v{S.CURRENT_VERSION + 1}" in p.message
        and "git pull && pip install -e ." in p.message
        and "pip install -U runlog" not in p.message
    )
    ok, info, ctx = _gated(-1)
    assert not ok and not info.readable and [p.kind for p in ctx.problems] == [UNKNOWN_VERSION]
    for v in S.KNOWN_VERSIONS:
        ok, info, ctx = _gated(v)
        assert ok and info.readable and not ctx.problems


def test_another_tools_schema_is_gated_against_its_own_versions():
    ok, info, ctx = _gated(3, foreign="inspect_ai log", newest=2, known=(1, 2))
    assert not ok and "newer inspect_ai log schema version 3" in ctx.problems[0].message
    assert _gated(2, foreign="inspect_ai log", newest=2, known=(1, 2))[0]


def test_v0_fixture_reads_without_inventing_roles():
    run = open_run(VERSIONS / "v0")
    assert [f.schema_version for f in run.files] == [0]
    df = run.samples.collect()
    assert df["schema_version"].to_list() == [0, 0, 0]
    assert df["step"].to_list() == [7, 7, 7] and df["split"].to_list() == ["train"] * 3
    assert df["sample_id"].to_list() == ["ds-7-0", "ds-7-1", "ds-7-2"]
    assert df["roles"].null_count() == 3  # no per-role data: never invented
    assert run.role_names() == []
    roles = run.roles.collect()
    assert roles["role"].null_count() == 3 and roles["reward"].to_list() == [0.0, 1.0, 2.0]
    comps = df["reward_components"].to_list()[1]
    assert {c["name"]: c["value"] for c in comps} == {"correct": 1.0, "format": 0.5}
    assert any("no per-role data" in n["message"] for n in run.fidelity)


def test_v1_fixture_migrates_flat_role_columns_to_nested_roles():
    run = open_run(VERSIONS / "v1")
    df = run.samples.collect()
    assert df["schema_version"].to_list() == [1, 1, 1]
    assert df["split"].to_list() == ["eval"] * 3 and df["step"].to_list() == [8] * 3
    assert run.role_names() == ["solver", "verifier", "judge"]
    roles = run.roles.collect().sort("sample_id", "role")
    judge = roles.filter(pl.col("role") == "judge")
    assert judge["reward"].to_list() == [2.0, 3.0, 4.0]
    assert judge["kl"].to_list() == pytest.approx([0.3, 0.3, 0.3])
    assert df["exception"].to_list() == [None, None, "ValueError: boom"]
    # Extra v1 columns are kept, not dropped.
    assert "role_assignments" in df.columns and "agent_trajectories" in df.columns


def test_v2_fixture_is_read_as_is():
    run = open_run(VERSIONS / "v2")
    assert run.manifest["name"] == "fixture-v2"
    df = run.samples.collect()
    assert df["schema_version"].to_list() == [2, 2, 2]
    assert df.schema["messages"] == S.PL_MESSAGES
    assert df["messages"][0][1]["tool_calls"][0]["name"] == "python"
    assert run.role_names() == ["solver", "verifier"]
    assert run.problems == []


def test_v3_fixture_is_an_error_naming_the_file():
    run = open_run(VERSIONS / "v3")
    [p] = run.errors
    assert p.kind == "newer_schema_version"
    assert p.path == "samples/train/step_00000004.p0.parquet"
    assert "v3" in p.message and "upgrade" in p.message
    assert run.samples.collect().height == 0  # refused, not half-read


def test_mixed_versions_in_one_run(tmp_path):
    import shutil

    for v in ("v0", "v1", "v2"):
        shutil.copytree(VERSIONS / v, tmp_path, dirs_exist_ok=True)
    run = open_run(tmp_path)
    df = run.samples.collect()
    assert sorted(df["schema_version"].unique().to_list()) == [0, 1, 2]
    assert df.height == 9 and run.errors == []


@pytest.mark.parametrize("stats", [True, False])
def test_a_native_file_of_several_versions_is_refused(tmp_path, stats):
    """The ``schema_version`` column is checked against itself and the file's metadata (from statistics, else
    read): a file holding v2 and v3 rows, or v3 rows under v2 metadata, is skipped with its reason (format.md);
    the other files are read."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import SAMPLE_RUNS

    run = shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / "run")
    rows = {}
    for step, versions in ((3, lambda n: [2] * (n - 1) + [3]), (4, lambda n: [3] * n)):
        path = run / "samples" / "train" / f"step_{step:08d}.p0.parquet"
        table = pq.read_table(path)
        field = table.schema.field("schema_version")
        table = table.set_column(
            table.schema.get_field_index("schema_version"), field, pa.array(versions(len(table)), field.type)
        )
        rows[step] = len(table)
        others = [c for c in table.column_names if c != "schema_version"]
        pq.write_table(table, path, write_statistics=True if stats else others)
    opened = open_run(run, cache=False)
    said = {p.path: p.message for p in opened.errors}
    assert said == {
        "samples/train/step_00000003.p0.parquet": "mixed schema versions 2..3 inside one file; file skipped",
        "samples/train/step_00000004.p0.parquet": "its schema_version column says v3, its metadata v2; file skipped",
    }
    total = sum(pq.read_metadata(f).num_rows for f in (run / "samples").rglob("*.parquet"))
    assert opened.samples.collect().height == total - rows[3] - rows[4]


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"a": 1, "b": 0.5}', {"a": 1.0, "b": 0.5}),
        ("{'a': 1.0, 'b': nan, 'c': None, 'd': True}", {"a": 1.0, "b": math.nan, "c": None, "d": 1.0}),
        ("{}", {}),
        ("{'a': 'text'}", None),
        ("{'a': __import__('os').system('echo pwned')}", None),
        ("not a dict", None),
        (None, None),
    ],
)
def test_parse_number_dict_is_safe(text, expected):
    got = parse_number_dict(text)
    if expected is None:
        assert got is None
        return
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        if v is not None and math.isnan(v):
            assert math.isnan(got[k])
        else:
            assert got[k] == v


def test_the_native_column_names_are_the_schema_s():
    assert tuple(f.name for f in S.NATIVE_SAMPLE_SCHEMA) == S.NATIVE_COLUMNS
    assert set(S.NATIVE_REQUIRED) <= set(S.NATIVE_COLUMNS)


def test_a_native_file_that_says_v1_is_an_unknown_version(tmp_path):
    """v0 and v1 are Flink's schemas: a native sample file that says v1 is refused, not migrated as Flink."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import SAMPLE_RUNS

    run = shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / "run")
    path = run / "samples" / "train" / "step_00000002.p0.parquet"
    table = pq.read_table(path)
    field = table.schema.field("schema_version")
    table = table.set_column(
        table.schema.get_field_index("schema_version"), field, pa.array([1] * len(table), field.type)
    ).replace_schema_metadata({"runlog.schema_version": "1"})
    pq.write_table(table, path)
    [p] = open_run(run, cache=False).errors
    assert (p.path, p.kind, p.message) == (
        "samples/train/step_00000002.p0.parquet",
        UNKNOWN_VERSION,
        "unknown schema version 1",
    )


@pytest.mark.parametrize("values", [["abc"], [float("nan")]])
def test_a_schema_version_column_that_holds_no_integers_never_crashes_the_check(tmp_path, values):
    """Text or NaN where the version belongs: the file is skipped, saying why. Never an internal error."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import SAMPLE_RUNS

    run = shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / "run")
    path = run / "samples" / "train" / "step_00000002.p0.parquet"
    table = pq.read_table(path)
    column = pa.array(values * len(table))
    table = table.set_column(table.schema.get_field_index("schema_version"), "schema_version", column)
    pq.write_table(table.replace_schema_metadata({"runlog.schema_version": "2"}), path)
    opened = open_run(run, cache=False)
    assert not [p for p in opened.problems if "could not be read" in p.message]
    [p] = opened.errors
    assert (p.path, p.kind) == ("samples/train/step_00000002.p0.parquet", "unreadable"), p
    assert p.message == "its schema_version column holds no integer version (null, NaN, text); file skipped"
    assert opened.samples.collect().height == 1088 - pq.read_metadata(path).num_rows


def test_a_flink_file_says_only_flink_versions(tmp_path):
    """Flink files are v0 or v1: one that says v2 (runlog's native version, nested columns) was read as a
    "Flink v2" file and counted as one; it is an unknown version, skipped, and the rest of the run read.
    A v3 one stays newer (upgrade)."""
    import pyarrow.parquet as pq

    from runlog.analysis.inspect import inspect_run

    from conftest import flink_table, make_flink_run

    root = make_flink_run(tmp_path / "r", steps=range(3))
    logs = root / "flink_logs"
    pq.write_table(flink_table(3, version=2), logs / "batch_debug_data_train_3.parquet")
    pq.write_table(flink_table(4, version=3), logs / "batch_debug_data_train_4.parquet")
    run = open_run(root)
    kinds = {p.path.rsplit("_", 1)[-1]: p.kind for p in run.errors}
    assert kinds == {"3.parquet": UNKNOWN_VERSION, "4.parquet": NEWER_VERSION}
    assert "Flink files are v0 or v1" in run.errors[0].message or "Flink files are v0 or v1" in run.errors[1].message
    assert run.samples.collect().height == 12
    r = inspect_run(run)
    assert r.layouts["flink"].by_version == {"1": 3, "2 (skipped)": 1, "3 (skipped)": 1}
    assert sum(r.layouts["flink"].by_version.values()) == r.layouts["flink"].files


def test_a_flink_v1_file_of_no_rows_is_a_step_of_no_rows(tmp_path):
    """A v1 file with no rows has no version value to read: it was 'schema_version column is empty', an
    error and a gap, where the same v0 file is a warning. Its column says v1; it is a file of no rows."""
    import pyarrow.parquet as pq

    from runlog.analysis.inspect import inspect_run

    from conftest import flink_table, make_flink_run

    root = make_flink_run(tmp_path / "r", steps=[0, 2])
    for version, step in ((1, 1), (0, 3)):
        empty = flink_table(step, version=version).slice(0, 0)
        pq.write_table(empty, root / "flink_logs" / f"batch_debug_data_train_{step}.parquet")
    run = open_run(root)
    assert run.errors == []
    no_rows = "a file with no rows (a writer that stopped before its first row?)"
    assert [p.message for p in run.warnings] == [no_rows] * 2
    r = inspect_run(run)
    assert r.step_gaps == {"train": []}, r.step_gaps
    assert r.layouts["flink"].by_version == {"1": 3, "0": 1}


def test_by_version_adds_up_to_the_files_and_matches_the_table(tmp_path):
    """A layout's ``by_version`` (JSON) left the manifest out and called version-skipped files
    'unreadable': its counts did not add up to ``files``, and disagreed with the table."""
    from runlog.analysis.inspect import inspect_run

    from conftest import make_native_run, native_rows, write_native_samples

    root = make_native_run(tmp_path / "r", steps=range(2), n=2)
    write_native_samples(root / "samples" / "train" / "step_00000002.p0.parquet", native_rows(2, 2), version=3)
    (root / "samples" / "train" / "step_00000003.p0.parquet").write_bytes(b"PAR1 not parquet")
    r = inspect_run(open_run(root))
    by = r.layouts["runlog"].by_version
    assert sum(by.values()) == r.layouts["runlog"].files
    assert by["3 (skipped)"] == 1 and by["unreadable"] == 1
    assert r.schema_versions["3"] == 1
