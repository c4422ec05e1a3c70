"""What a path holds: one run, or several (refused, never added up); and a run given as a single file.

The rule (docs/format.md, "One run, or several"): each file belongs to the run folder its layout puts it in;
a folder below another one is that run's own, unless it holds a ``run.json`` of its own.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from object_stores import s3_server  # noqa: F401
from runlog import RunWriter
from runlog.errors import UsageError
from runlog.run import list_names, open_run
from runlog.storage import Store

from conftest import REALDATA, SAMPLE_RUNS, make_flink_run, make_native_run, need_realdata

NATIVE_RUNS = {"alpha": (3, 4), "beta": (5, 6), "gamma": (2, 10)}  # name: (steps, samples per step)


def write_native(root: Path, steps: int, n: int, seed: int) -> Path:
    with RunWriter(root, name=root.name, roles=["solver", "judge"]) as w:
        for step in range(steps):
            w.log_samples(
                step,
                {
                    "sample_id": [f"{root.name}-{step}-{i}" for i in range(n)],
                    "group_id": [f"g{step}-{i // 2}" for i in range(n)],
                    "reward": [((seed + step + i) % 5) / 4 for i in range(n)],
                    "roles": [
                        [
                            {"role": "solver", "reward": float((seed + i) % 3), "kl": 0.01 * (i + 1)},
                            {"role": "judge", "reward": float((seed + step) % 2), "kl": 0.02},
                        ]
                        for i in range(n)
                    ],
                },
            )
            w.log_scalars(step, {"train/loss": 1.0 / (step + 1 + seed)})
    return root


@pytest.fixture
def folder_of_runs(tmp_path: Path) -> Path:
    """``runs/``: three native runs written with ``RunWriter`` and a Flink run (``flink_logs/``)."""
    base = tmp_path / "runs"
    for seed, (name, (steps, n)) in enumerate(NATIVE_RUNS.items()):
        write_native(base / name, steps, n, seed)
    make_flink_run(base / "delta", steps=range(3))
    return base


def one_error_line(r: Any) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# -- a folder of runs is not one run ----------------------------------------------------------------------


def test_a_folder_of_runs_is_refused_on_every_command(cli, folder_of_runs: Path) -> None:
    expected = (
        f"Error: {folder_of_runs}: holds 4 runs (alpha, beta, delta, gamma): "
        f"pass one, or '{folder_of_runs}/*' --by run for a fleet (summarize, metrics)"
    )
    for path in (folder_of_runs, f"{folder_of_runs}/"):
        for cmd in (["inspect"], ["summarize"], ["summarize", "--format", "csv"], ["inspect", "--format", "json"]):
            r = cli(*cmd, path)
            assert r.exit_code == 2, (cmd, r.stdout, r.stderr)
            assert one_error_line(r) == expected
            assert r.stdout == ""
    # The library entry raises it, so that every command (and every API user) gets it; so does list_names.
    with pytest.raises(UsageError, match="holds 4 runs"):
        open_run(folder_of_runs)
    with pytest.raises(UsageError, match="holds 4 runs"):
        list_names(folder_of_runs)


def test_the_fleet_glob_gives_each_run_alone(cli, folder_of_runs: Path) -> None:
    assert cli("summarize", folder_of_runs).exit_code == 2  # the folder itself: refused, never added up
    r = cli("summarize", f"{folder_of_runs}/*", "--by", "run", "--by", "role", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    rows = csv_rows(r.stdout)
    assert sorted({row["run"] for row in rows}) == ["alpha", "beta", "delta", "gamma"]
    for name in ("alpha", "beta", "delta", "gamma"):
        alone = cli("summarize", folder_of_runs / name, "--by", "role", "--format", "csv")
        assert alone.exit_code == 0, alone.stderr
        expected = {row["role"]: row["reward_count"] for row in csv_rows(alone.stdout)}
        got = {row["role"]: row["reward_count"] for row in rows if row["run"] == name}
        assert got == expected, name
    counts = {row["run"]: 0 for row in rows}
    for row in rows:
        if row["role"] == "solver":
            counts[row["run"]] += int(row["reward_count"])
    assert counts == {"alpha": 12, "beta": 30, "gamma": 20, "delta": 12}  # steps x samples, per run


def test_sample_runs_folder_names_its_four_runs(cli) -> None:
    r = cli("inspect", SAMPLE_RUNS)
    assert r.exit_code == 2
    assert one_error_line(r).endswith(
        "holds 4 runs (damaged, debate_grpo, flink_mixed, jaxarc): "
        f"pass one, or '{SAMPLE_RUNS}/*' --by run for a fleet (summarize, metrics)"
    )


def tree(base: Path, files: dict[str, str | bytes | Path]) -> Path:
    for rel, content in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy(content, path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return base


def verl_lines(step: int) -> str:
    return "".join(json.dumps({"input": "q", "output": "a", "score": 1.0, "step": step}) + "\n" for _ in range(2))


def test_what_is_one_run_and_what_is_several(tmp_path: Path) -> None:
    flink_file = next((SAMPLE_RUNS / "flink_mixed" / "flink_logs").glob("batch_debug_data_train_*.parquet"))
    # One run: a run's own sub-folders (samples/, flink_logs/ of a resumed run, verl's validation dumps), and
    # files that no layout claims anywhere (a stray config.json, notes) are no run at all.
    one = make_native_run(tmp_path / "one")
    tree(one, {"flink_logs/batch_debug_data_train_9.parquet": flink_file, "notes/config.json": "{}"})
    assert {f.layout for f in open_run(one).files} == {"runlog", "flink"}
    verl = tree(tmp_path / "verl", {"rollout/3.jsonl": verl_lines(3), "val_generations/5.jsonl": verl_lines(5)})
    assert sorted(f.split for f in open_run(verl).files) == ["train", "val"]
    make_native_run(tmp_path / "lone" / "exp" / "run1")
    tree(tmp_path / "lone", {"config.json": "{}", "README.md": "x"})
    assert open_run(tmp_path / "lone").manifest is not None

    def refused(path: Path) -> str:
        with pytest.raises(UsageError) as exc:
            open_run(path)
        return str(exc.value)

    # Several: two manifests, even nested; two verl runs side by side; runs two levels down (the glob says so).
    nested = make_native_run(tmp_path / "nested")
    make_native_run(nested / "eval_run")
    assert refused(nested) == (
        f"{nested}: holds 2 runs (., eval_run): it is a run itself, with the run(s) eval_run in a sub-folder: "
        f"`runlog summarize|metrics {nested} --by run` reads each as a run of its own (this one without "
        f"{nested}/eval_run); for other commands move {nested}/eval_run out of {nested}"
    )
    two_verl = tree(tmp_path / "two_verl", {"a/3.jsonl": verl_lines(3), "b/val/3.jsonl": verl_lines(3)})
    assert "holds 2 runs (a, b)" in refused(two_verl)
    deep = tmp_path / "deep"
    for rel in ("exp1/s0", "exp1/s1", "exp2/s0"):
        make_native_run(deep / rel)
    assert (
        refused(deep) == f"{deep}: holds 3 runs (exp1/s0, exp1/s1, exp2/s0): "
        f"pass one, or '{deep}/*/*' --by run for a fleet (summarize, metrics)"
    )
    # A run whose folder has no manifest (Flink) beside a native one: two runs, named by their folders.
    mixed = tmp_path / "mixed"
    make_flink_run(mixed / "flink_run")
    make_native_run(mixed / "native_run", scalars=False)
    assert "holds 2 runs (flink_run, native_run)" in refused(mixed)
    many = tmp_path / "many"
    for i in range(10):
        make_flink_run(many / f"r{i}", steps=range(1))
    assert "holds 10 runs (r0, r1, r2, r3, r4, r5, r6, r7, ... (+2))" in refused(many)


def test_loose_files_of_several_layouts_in_one_folder_are_one_run(cli) -> None:
    """The real dumps folder (no manifest, files side by side): one run, each row keeping its layout."""
    if not REALDATA.is_dir():
        pytest.skip(f"{REALDATA} not found (the shared/realdata checkout)")
    r = cli("inspect", REALDATA, "--format", "json")
    assert r.exit_code in (0, 1), r.stderr
    layouts = {f["layout"] for f in json.loads(r.stdout)["files"]}
    assert {"verifiers", "nemo_gym"} <= layouts
    # Each file of it alone is a run too (the verifiers metadata alone has no rows: a one-line reason).
    meta = REALDATA / "verifiers_math_python_gpt5nano_metadata.json"
    r = cli("summarize", meta)
    assert r.exit_code == 2 and (
        "a verifiers manifest, with no rows of its own: pass the file of its rows "
        "(verifiers_math_python_gpt5nano_results.jsonl) or its folder" in one_error_line(r)
    )


# -- a single file is a run -------------------------------------------------------------------------------


def test_run_json_alone_is_a_usage_error(cli, tmp_path: Path) -> None:
    run = make_native_run(tmp_path / "r")
    for cmd in ("inspect", "summarize"):
        r = cli(cmd, run / "run.json")
        assert r.exit_code == 2
        assert one_error_line(r) == f"Error: {run / 'run.json'}: run.json is a manifest, not a run: pass its folder"
    with pytest.raises(UsageError, match="pass its folder"):
        open_run(run / "run.json", layout="runlog")


def single_files(tmp_path: Path) -> dict[str, tuple[Path, str, int]]:
    """layout -> (one file, its path within its run, the rows it holds)."""
    native = make_native_run(tmp_path / "native", steps=range(3), n=5)
    flink = SAMPLE_RUNS / "flink_mixed" / "flink_logs"
    out: dict[str, tuple[Path, str, int]] = {
        "runlog samples": (
            native / "samples/train/step_00000001.p0.parquet",
            "samples/train/step_00000001.p0.parquet",
            5,
        ),
        "runlog scalars": (native / "scalars.p0.jsonl", "scalars.p0.jsonl", 3),
        "flink parquet": (
            flink / "batch_debug_data_train_1.parquet",
            "flink_logs/batch_debug_data_train_1.parquet",
            16,
        ),
        "flink csv": (flink / "batch_debug_data_train_13.csv", "flink_logs/batch_debug_data_train_13.csv", 16),
        "jaxarc": (SAMPLE_RUNS / "jaxarc/batch_metrics.jsonl", "batch_metrics.jsonl", 50),
    }
    trl = tmp_path / "trl" / "completions" / "completions_00005.parquet"
    trl.parent.mkdir(parents=True)
    pq.write_table(pa.table({"step": [5, 5], "prompt": ["p", "p"], "completion": ["a", "b"], "r": [1.0, 0.0]}), trl)
    out["trl"] = (trl, "completions/completions_00005.parquet", 2)
    verl = tree(tmp_path / "verl", {"val_generations/5.jsonl": verl_lines(5)})
    out["verl"] = (verl / "val_generations/5.jsonl", "val_generations/5.jsonl", 2)
    areal = tree(tmp_path / "areal", {"stats.jsonl": "".join(f'{{"step": {i}, "loss": 0.5}}\n' for i in range(4))})
    out["areal"] = (areal / "stats.jsonl", "stats.jsonl", 4)
    for name, rows in (
        ("verifiers_math_python_gpt5nano_results.jsonl", 15),
        ("nemo_gym_tool_call_multireward_rollouts.jsonl", 5),
    ):
        if (REALDATA / name).is_file():
            out[name.split("_")[0] if name.startswith("verifiers") else "nemo_gym"] = (REALDATA / name, name, rows)
    return out


def test_every_layouts_single_file_is_a_run_of_that_file(cli, tmp_path: Path) -> None:
    files = single_files(tmp_path)
    for what, (path, rel, rows) in files.items():
        r = cli("inspect", path, "--format", "json")
        assert r.exit_code in (0, 1), (what, r.stderr)
        report = json.loads(r.stdout)
        assert [f["path"] for f in report["files"]] == [rel], what
        assert sum(f["rows"] or 0 for f in report["files"]) == rows, what
        s = cli("summarize", path, "--format", "csv")
        if not any(f["kind"] == "samples" for f in report["files"]):  # scalars: summarize says to ask for them
            assert s.exit_code == 2 and s.stderr.endswith("no per-sample data (only scalar metrics): try --scalars\n")
            s = cli("summarize", path, "--scalars", "--format", "csv")
        assert s.exit_code in (0, 1) and "Traceback" not in s.stderr, (what, s.stderr)
    # The path inside the run tells what it tells in the run's folder: split and step of a native file,
    # verl's validation split.
    native = open_run(files["runlog samples"][0])
    assert (native.files[0].split, native.files[0].step, native.name) == ("train", 1, "native")
    assert native.samples.collect().height == 5
    assert open_run(files["verl"][0]).samples.collect()["split"].to_list() == ["val", "val"]
    # A step file that no layout claims (not under samples/SPLIT/): one line saying where it belongs.
    stray = tree(tmp_path / "stray", {"step_00000001.p0.parquet": files["runlog samples"][0]})
    r = cli("summarize", stray / "step_00000001.p0.parquet")
    assert r.exit_code == 2 and "a runlog step file outside a samples/SPLIT/ folder" in one_error_line(r)


def test_single_native_file_relative_path_names_its_run_folder(cli, tmp_path: Path, monkeypatch) -> None:
    make_native_run(tmp_path / "exp" / "run7", steps=range(2), n=3)
    monkeypatch.chdir(tmp_path)
    r = cli("inspect", "exp/run7/samples/train/step_00000000.p0.parquet", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["run"] == "exp/run7"


# -- the same on an object store ----------------------------------------------------------------------------


def test_object_store_folder_of_runs_and_single_file(cli, s3_server: Any, folder_of_runs: Path) -> None:  # noqa: F811
    Store._cache.clear()
    url = f"s3://{s3_server.fresh_bucket()}/runs"
    s3_server.upload_dir(folder_of_runs, url)
    opts: list[str] = []
    for key, value in s3_server.storage_options.items():
        opts += ["--storage-option", f"{key}={value}"]
    try:
        r = cli("summarize", url, *opts)
        assert r.exit_code == 2
        assert one_error_line(r) == (
            f"Error: {url}: holds 4 runs (alpha, beta, delta, gamma): "
            f"pass one, or '{url}/*' --by run for a fleet (summarize, metrics)"
        )
        one = f"{url}/beta/samples/train/step_00000002.p0.parquet"
        r = cli("inspect", one, "--format", "json", *opts)
        assert r.exit_code == 0, r.stderr
        report = json.loads(r.stdout)
        assert report["run"] == f"{url}/beta"
        assert [(f["path"], f["rows"]) for f in report["files"]] == [("samples/train/step_00000002.p0.parquet", 6)]
        r = cli("inspect", f"{url}/beta/run.json", *opts)
        assert r.exit_code == 2 and "run.json is a manifest" in one_error_line(r)
        r = cli("summarize", f"{url}/*", "--by", "run", "--format", "csv", *opts)
        assert r.exit_code == 0, r.stderr
        assert sorted({row["run"] for row in csv_rows(r.stdout)}) == ["alpha", "beta", "delta", "gamma"]
    finally:
        Store._cache.clear()


def test_links_never_count_a_file_twice_and_broken_ones_are_named(tmp_path: Path) -> None:
    """``sub -> .`` beside a verifiers dump counted each of its 15 rows 41 times (the walk followed the loop 40
    deep); ``samples/up -> ..`` made a native run "hold 41 runs"; a shard replaced by a link to itself was only
    a step gap. Each folder and file is now listed once, the extra links said in a warning, and a broken
    link named as an unreadable file."""
    import os

    need_realdata("verifiers_math_python_gpt5nano_results.jsonl")
    loose = tmp_path / "loose"
    loose.mkdir()
    for name in ("verifiers_math_python_gpt5nano_results.jsonl", "verifiers_math_python_gpt5nano_metadata.json"):
        shutil.copyfile(REALDATA / name, loose / name)
    os.symlink(".", loose / "sub")
    os.symlink("verifiers_math_python_gpt5nano_results.jsonl", loose / "again_results.jsonl")
    run = open_run(loose)
    assert run.samples.select(pl.len()).collect().item() == 15
    said = {(p.path, p.kind) for p in run.problems}
    assert ("sub", "warning") in said
    # The real file is read and the link said (whatever their order: "again" sorts first).
    assert {p.path: p.message for p in run.problems if "listed already: read once" in p.message} == {
        "again_results.jsonl": "a link to verifiers_math_python_gpt5nano_results.jsonl, listed already: read once"
    }

    native = tmp_path / "native"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", native)
    os.symlink("..", native / "samples" / "up")
    shard = native / "samples" / "train" / "step_00000014.p0.parquet"
    lost = pq.read_metadata(shard).num_rows
    shard.unlink()
    os.symlink(shard.name, shard)  # a link to itself
    run = open_run(native)
    rows = {s: n for s, n in run.samples.group_by("split").len().collect().iter_rows()}
    assert rows == {"train": 1024 - lost, "eval": 64}  # that shard's rows gone, nothing counted twice
    errors = {p.path: p.message for p in run.problems if not p.is_warning}
    assert "Too many levels of symbolic links" in errors["samples/train/step_00000014.p0.parquet"]
    assert any(p.path == "samples/up" and p.is_warning for p in run.problems)

    # A link met before the real folder or file ("a_latest" sorts before "samples"): the real paths are read,
    # which the layout knows; the links are said (they took the real files' place, and train vanished).
    linked = tmp_path / "linked"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", linked)
    os.symlink("samples/train", linked / "a_latest")
    os.symlink("step_00000031.p0.parquet", linked / "samples" / "train" / "latest.parquet")
    run = open_run(linked)
    rows = {s: n for s, n in run.samples.group_by("split").len().collect().iter_rows()}
    assert rows == {"train": 1024, "eval": 64}
    said = {p.path: p.message for p in run.problems}
    assert said["a_latest"].startswith("a link to the folder samples/train, listed already")
    assert said["samples/train/latest.parquet"].startswith("a link to samples/train/step_00000031.p0.parquet")
    assert not [p for p in run.problems if "no known layout" in p.message]


def test_a_folder_that_cannot_be_listed_is_an_error_not_a_missing_split(tmp_path: Path, monkeypatch) -> None:
    """``chmod 000 samples/train`` dropped the train split without a word (exit 0, eval alone summarised).
    (The tests run as root, for whom mode 000 still lists: the refusal is made by ``os.scandir``.)"""
    import runlog.listing as L

    run_dir = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", run_dir)
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("samples/train"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(L.os, "scandir", scandir)
    run = open_run(run_dir)
    errors = {p.path: p.message for p in run.problems if not p.is_warning}
    assert errors["samples/train"] == "cannot list this folder (Permission denied): its files are not read"
    assert run.samples.select(pl.len()).collect().item() == 64  # eval only, and said


def _invalid_utf8(run_dir: Path, rel: str, column: str) -> int:
    """Append a 0xFF byte to the first value of a string ``column`` of one file (pyarrow writes it unchecked);
    the file's row count."""
    f = run_dir / rel
    t = pq.read_table(f)
    values = [v.encode() for v in t.column(column).to_pylist()]
    values[0] += b"\xff"
    raw = pa.array(values, pa.binary())
    broken = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())
    pq.write_table(t.set_column(t.column_names.index(column), t.schema.field(column), broken), f)
    return t.num_rows


def test_invalid_utf8_in_a_string_cell_skips_that_file_and_names_it(tmp_path: Path, cli) -> None:
    """pyarrow reads such a file; polars refuses it, so every command failed with "reading the run failed"
    (no file named, no data printed) or an internal error (render-trajectory). The file is now named and
    left out, and the rest analysed: counted here from the other files. Where the byte is in its text (a
    completion), only that value changes: read with U+FFFD, said in a warning naming the file."""
    import json as _json

    run_dir = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", run_dir)
    bad = "samples/train/step_00000030.p1.parquet"
    lost = _invalid_utf8(run_dir, bad, "group_id")
    res = cli("summarize", run_dir, "--split", "train", "--by", "step", "--format", "json")
    assert res.exit_code == 1, res.output
    assert f"error: {bad}: corrupt data" in res.stderr and "invalid UTF-8" in res.stderr
    rows = {r["step"]: r["reward_count"] + r["reward_nan"] + r["reward_null"] for r in _json.loads(res.stdout)}
    expected = {}
    for f in sorted((run_dir / "samples" / "train").glob("*.parquet")):
        if f.relative_to(run_dir).as_posix() != bad:
            step = int(f.name.split("_")[1].split(".")[0])
            expected[step] = expected.get(step, 0) + pq.read_metadata(f).num_rows
    assert rows == expected and sum(expected.values()) == 1024 - lost

    run_dir2 = tmp_path / "run2"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", run_dir2)
    bad2 = "samples/train/step_00000031.p0.parquet"
    _invalid_utf8(run_dir2, bad2, "completion")
    res = cli("render-trajectory", run_dir2, "--format", "json")
    assert res.exit_code == 0 and "internal error" not in res.stderr, res.stderr
    # Only its text holds the byte: that one value is read with U+FFFD, the file's other values as written.
    assert f"warning: {bad2}: 1 text value(s) are not valid UTF-8 (completion: 1): read with U+FFFD" in res.stderr
    assert "could not be read" not in res.stderr and "error:" not in res.stderr
    assert _json.loads(res.stdout) and all(c["step"] == 31 for c in _json.loads(res.stdout))


def test_a_data_file_that_cannot_be_read_is_an_error_not_an_unknown_layout(tmp_path: Path, monkeypatch) -> None:
    """A verifiers dump without read permission was "matches no known layout; ignored" (a warning, exit 0):
    its 15 rows vanished. Its layout cannot be told because it cannot be read: that is said, as an error."""
    import runlog.storage as storage

    need_realdata("verifiers_math_python_gpt5nano_results.jsonl", "nemo_gym_tool_call_multireward_rollouts.jsonl")
    folder = tmp_path / "dumps"
    folder.mkdir()
    for name in ("verifiers_math_python_gpt5nano_results.jsonl", "nemo_gym_tool_call_multireward_rollouts.jsonl"):
        shutil.copyfile(REALDATA / name, folder / name)
    real_head = storage.read_head

    def read_head(path, n):
        if "verifiers" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_head(path, n)

    monkeypatch.setattr(storage, "read_head", read_head)
    run = open_run(folder)
    errors = {p.path: p.message for p in run.problems if not p.is_warning}
    assert errors == {"verifiers_math_python_gpt5nano_results.jsonl": "cannot read file (Permission denied); not read"}
    assert run.samples.select(pl.len()).collect().item() == 5  # the NeMo Gym rollouts, read


def test_empty_files_and_folders_named_like_data_are_said(tmp_path: Path) -> None:
    """A 0-byte scalars file and a folder in place of one read as "valid: no problems found" with no scalars;
    a shard with no rows gave no word, and a misleading note that some samples had no group_id."""
    from runlog.analysis.aggregate import group_key_expr

    run_dir = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", run_dir)
    (run_dir / "scalars.p0.jsonl").write_bytes(b"")
    shard = run_dir / "samples" / "train" / "step_00000011.p0.parquet"
    pq.write_table(pq.read_table(shard).slice(0, 0), shard)
    (run_dir / "samples" / "eval" / "step_00000099.p0.parquet").mkdir()
    run = open_run(run_dir)
    warned = {p.path: p.message for p in run.problems if p.is_warning}
    assert warned["scalars.p0.jsonl"].startswith("an empty file (0 bytes")
    # runlog's writer writes a step with no rows on purpose (every rollout filtered out), atomically: no word
    assert "samples/train/step_00000011.p0.parquet" not in warned
    assert warned["samples/eval/step_00000099.p0.parquet"] == "an empty folder named like a data file: nothing to read"
    assert str(group_key_expr(run)) == str(pl.col("group_id"))  # every sample has a group id
    flink = make_flink_run(tmp_path / "flink", steps=range(3), version=0)
    step = flink / "flink_logs" / "batch_debug_data_train_1.parquet"
    pq.write_table(pq.read_table(step).slice(0, 0), step)
    warned = {p.path: p.message for p in open_run(flink).problems if p.is_warning}
    assert warned["flink_logs/batch_debug_data_train_1.parquet"].startswith("a file with no rows")


def test_an_empty_results_file_is_said_to_be_empty(cli, tmp_path):
    """A 0-byte ``results.jsonl`` or ``.eval`` was "1 file(s) match no known layout": no layout can be told
    from nothing, and the reason is that the file is empty. Beside a good file it is a warning saying so."""
    for name in ("results.jsonl", "log.eval"):
        (tmp_path / name).write_bytes(b"")
        res = cli("summarize", tmp_path / name)
        assert res.exit_code == 2 and "no run files found (1 empty file(s), 0 bytes)" in res.stderr, res.stderr
        (tmp_path / name).unlink()
    real = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "verifiers_math_python_gpt5nano_results.jsonl"
    if not real.exists():
        pytest.skip("shared/realdata is not beside the project")
    shutil.copy(real, tmp_path / "results.jsonl")
    (tmp_path / "a.jsonl").write_bytes(b"")
    res = cli("summarize", tmp_path)
    assert res.exit_code == 0, res.stderr
    assert "warning: a.jsonl: an empty file (0 bytes" in res.stderr and "no known layout" not in res.stderr
