#!/usr/bin/env python
"""Is ``runlog summarize`` faster than the same aggregation in DuckDB, exact, and bounded in memory?

Issue 4 ("Speed and scale") asks three things of ``runlog summarize`` on a large Flink-v1 run:

* **speed:** ``runlog summarize DIR --by role`` and ``--by role --by step`` against the same aggregation
  written in DuckDB SQL over the same Parquet files. Every phase is a whole process (``python -m runlog ...``
  and ``python -c <duckdb script>``), timed with ``time.perf_counter`` around ``subprocess.run``, so that
  interpreter start-up and imports count. DuckDB runs in two formulations (one ``union all`` branch per role,
  which scans the files once per role, and a single scan that unnests one struct per role), so that runlog is
  compared with the faster of them. The six phases are interleaved round-robin after one untimed
  warm-up round, so that drift in machine load or page-cache state hits all of them alike.
* **exactness:** runlog's JSON and DuckDB's rows must have the same groups and every statistic equal within
  1e-9 relative (null exactly where DuckDB gives NULL). The check runs on the timed data and on a second,
  smaller run with NaN and null rewards/KL, exceptions, a NaN reward component and degenerate steps (a role
  whose rewards are all NaN, a role with a single valid reward, a role with no KL) injected deterministically,
  because the timed data has no NaN at all. The script exits non-zero on any disagreement.
* **memory:** a 20 M-row run (numeric columns plus a short sample id; the text columns are present but all
  null) summarised once per query, reporting wall time and the peak RSS of the child process, next to
  DuckDB's on the same query (``--skip-20m`` leaves it out).

The timed data is the one ``benchmarks/inspect_bench.py`` generates (2,000 files x 512 rows, 1-2 KB of unique
text per row): its generator is imported, and the copy in ``benchmarks/_data/`` (git-ignored) is shared.

The DuckDB twin reproduces runlog's conventions (``src/runlog/analysis/summarize.py``, docs/cli.md "What
summarize counts"): NaN and null are counted in their own columns and never enter a statistic; ``*_std`` is
the sample standard deviation; the median interpolates; ``zero_adv_frac`` is null (summarize reads no prompt
text by default, and Flink writes no group id). The columns that are per sample in the data are given once
per group of the keys other than the role, over the samples (every row once, not once per role):
``sample:exception_rate``, the fraction of rows whose ``exception_info`` is not null, and
``sample:component/<name>_mean`` from the ``reward_metrics`` struct fields. It discovers the roles and
components from the schema, as runlog does.

Usage::

    python benchmarks/summarize_bench.py                        # generate if needed, 5 repetitions
    python benchmarks/summarize_bench.py --reps 9 --markdown    # also print a section for docs/benchmarks.md
    python benchmarks/summarize_bench.py --skip-20m             # leave out the 20 M-row memory run
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inspect_bench as ib  # noqa: E402  (the shared Flink-v1 generator, timing and machine helpers)

REPO_ROOT = ib.REPO_ROOT
DATA_ROOT = ib.DATA_ROOT
NAN_GENERATOR_VERSION = 1  # bump when the NaN variant changes, so stale copies are rebuilt
BIG_GENERATOR_VERSION = 1  # bump when the 20 M-row run changes
REL_TOL = 1e-9
FORMS = ("union", "unnest")  # the two DuckDB formulations (see DUCKDB_CODE)
GROUPINGS = (("role", ("role",)), ("step", ("role", "step")))  # DuckDB's argument -> runlog's --by keys
KEY_COLUMNS = ("role", "step")

# The DuckDB twin of `runlog summarize --by role [--by step] --format json`: argv = RUN_DIR (role|step)
# (union|unnest). Roles come from the flat `<role>_reward` / `<role>_kl` columns and components from the fields
# of the `reward_metrics` struct, as runlog derives them; the step comes from the file name. Two formulations
# of the long (sample, role) view: `union` has one `union all` branch per role (DuckDB scans the files once
# per role); `unnest` builds a list of one struct per role in a single scan and unnests it.
DUCKDB_CODE = r"""
import json, sys
import duckdb

run, by, form = sys.argv[1], sys.argv[2], sys.argv[3]
glob = run.rstrip("/") + "/flink_logs/*.parquet"
con = duckdb.connect()
con.execute("set enable_progress_bar = false")  # it would write to stdout and cost time
names = [d[0] for d in con.execute(f"select * from read_parquet('{glob}') limit 0").description]
roles = []
for c in names:
    for suffix in ("_reward", "_kl"):
        if c.endswith(suffix) and len(c) > len(suffix):
            r = c[: -len(suffix)]
            if r not in roles and r not in ("reward", "total"):
                roles.append(r)
comps = [d[0] for d in con.execute(f"select reward_metrics.* from read_parquet('{glob}') limit 0").description]


def q(name):
    return '"' + name.replace('"', '""') + '"'


step = by == "step"
src = f"read_parquet('{glob}', filename=true)" if step else f"read_parquet('{glob}')"
step_col = r", cast(regexp_extract(filename, '_(\d+)\.parquet$', 1) as bigint) as step" if step else ""
comp_cols = "".join(f", cast(reward_metrics.{q(n)} as double) as c{i}" for i, n in enumerate(comps))


def value(r, m):
    return f"cast({q(r + '_' + m)} as double)" if f"{r}_{m}" in names else "null::double"


def branch(r):
    return f"select '{r}' as role{step_col}, {value(r, 'reward')} as reward, {value(r, 'kl')} as kl from {src}"


if form == "union":
    long = " union all ".join(branch(r) for r in roles)
else:
    items = ", ".join(f"{{'role': '{r}', 'reward': {value(r, 'reward')}, 'kl': {value(r, 'kl')}}}" for r in roles)
    long = f"select unnest([{items}], recursive := true){step_col} from {src}"


keys = "role, step" if step else "role"
# The per-sample columns: over the rows (samples) once, per step when grouped by step.
comp_aggs = "".join(
    f', avg(c{i}) filter (where not isnan(c{i})) as {q("sample:component/" + n + "_mean")}'
    f', count(c{i}) filter (where not isnan(c{i})) as {q("sample:component/" + n + "_count")}'
    f', count(*) filter (where isnan(c{i})) as {q("sample:component/" + n + "_nan")}'
    f', count(*) filter (where c{i} is null) as {q("sample:component/" + n + "_null")}'
    for i, n in enumerate(comps)
)
samples = f"select exception_info is not null as exc{comp_cols}{step_col} from {src}"
per_sample = f'select {"step, " if step else ""}avg(exc::double) as "sample:exception_rate"{comp_aggs} from ({samples})'
per_sample += " group by step" if step else ""
join = "left join s using (step)" if step else "cross join s"
sql = f'''
with r as (
select {keys},
  avg(reward) filter (where reward is not null and not isnan(reward)) as reward_mean,
  stddev_samp(reward) filter (where not isnan(reward)) as reward_std,
  min(reward) filter (where not isnan(reward)) as reward_min,
  max(reward) filter (where not isnan(reward)) as reward_max,
  median(reward) filter (where not isnan(reward)) as reward_median,
  count(reward) filter (where not isnan(reward)) as reward_count,
  count(*) filter (where isnan(reward)) as reward_nan,
  count(*) filter (where reward is null) as reward_null,
  avg(kl) filter (where not isnan(kl)) as kl_mean,
  stddev_samp(kl) filter (where not isnan(kl)) as kl_std,
  min(kl) filter (where not isnan(kl)) as kl_min,
  max(kl) filter (where not isnan(kl)) as kl_max,
  count(kl) filter (where not isnan(kl)) as kl_count,
  count(*) filter (where isnan(kl)) as kl_nan,
  count(*) filter (where kl is null) as kl_null,
  null::double as zero_adv_frac
from ({long})
group by {keys}
), s as ({per_sample})
select r.*, s.*{" exclude (step)" if step else ""} from r {join} order by {keys}
'''
cur = con.execute(sql)
cols = [d[0] for d in cur.description]
json.dump([dict(zip(cols, row)) for row in cur.fetchall()], sys.stdout)
"""

# Runs one command (argv[2:]) with its stdout sent to the file argv[1]; prints its exit code, wall time and
# peak RSS. A fresh process per measurement, so that RUSAGE_CHILDREN's ru_maxrss is that one child's.
RUSAGE_CODE = """
import json, resource, subprocess, sys, time
with open(sys.argv[1], "wb") as out:
    t0 = time.perf_counter()
    p = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": p.returncode, "wall": wall, "maxrss_kib": rss, "stderr": p.stderr[-1500:].decode("replace")}))
"""


# ---------------------------------------------------------------------------------------------------------
# Data: the NaN/null variant (correctness only) and the 20 M-row run (memory only)
# ---------------------------------------------------------------------------------------------------------
NAN_FILES, NAN_ROWS = 200, 512
# Degenerate steps of the NaN variant: (step, role, what).
ALL_NAN_REWARD = (3, "judge")  # every reward NaN: count 0, mean/std/min/max/median null
SINGLE_REWARD = (5, "verifier")  # one valid reward, the rest null: std null, count 1
NO_KL = (8, "solver")  # every KL null: kl_* null, kl_count 0


def write_nan_file(args: tuple[Path, int]) -> int:
    """inspect_bench's file for this step, then NaN/null rewards and KL, exceptions and NaN components
    injected with a per-step seed (deterministic however the work is split)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    logs, step = args
    ib.write_flink_file((logs, step, NAN_ROWS))
    path = logs / f"batch_debug_data_train_{step}.parquet"
    table = pq.read_table(path)
    rng = random.Random(1_000_003 + step)
    nan = float("nan")

    def inject(values: list, p_nan: float, p_null: float) -> list:
        out = []
        for v in values:
            u = rng.random()
            out.append(nan if u < p_nan else None if u < p_nan + p_null else v)
        return out

    cols: dict[str, list] = {}
    for role, (pr_nan, pr_null, pk_nan, pk_null) in {
        "solver": (0.03, 0.0, 0.01, 0.0),
        "verifier": (0.0, 0.03, 0.0, 0.01),
        "judge": (0.01, 0.01, 0.005, 0.005),
    }.items():
        cols[f"{role}_reward"] = inject(table.column(f"{role}_reward").to_pylist(), pr_nan, pr_null)
        cols[f"{role}_kl"] = inject(table.column(f"{role}_kl").to_pylist(), pk_nan, pk_null)
    cols["reward"] = inject(table.column("reward").to_pylist(), 0.01, 0.0)
    if step == ALL_NAN_REWARD[0]:
        cols[f"{ALL_NAN_REWARD[1]}_reward"] = [nan] * NAN_ROWS
    if step == SINGLE_REWARD[0]:
        cols[f"{SINGLE_REWARD[1]}_reward"] = [0.25] + [None] * (NAN_ROWS - 1)
    if step == NO_KL[0]:
        cols[f"{NO_KL[1]}_kl"] = [None] * NAN_ROWS
    # Extra exceptions on rows that still have rewards (a tool error the environment recovered from).
    exc = [
        e if e is not None or rng.random() >= 0.02 else "Traceback (most recent call last):\nValueError: parse"
        for e in table.column("exception_info").to_pylist()
    ]
    metrics = []
    for m in table.column("reward_metrics").to_pylist():
        if m is not None and rng.random() < 0.01:
            m = {**m, "correct": nan}
        metrics.append(m)
    replaced = {**{k: pa.array(v, pa.float64()) for k, v in cols.items()}, "exception_info": pa.array(exc, pa.string())}
    replaced["reward_metrics"] = pa.array(metrics, table.schema.field("reward_metrics").type)
    for name, arr in replaced.items():
        table = table.set_column(table.schema.get_field_index(name), name, arr)
    pq.write_table(table, path, compression="snappy")
    return path.stat().st_size


def ensure_nan_data() -> tuple[Path, int]:
    params = {
        "generator_version": NAN_GENERATOR_VERSION,
        "base_generator_version": ib.GENERATOR_VERSION,
        "files": NAN_FILES,
        "rows": NAN_ROWS,
    }
    return ib.cached_run("flink_v1_nan", params, write_nan_file, NAN_FILES)


BIG_FILES, BIG_ROWS = 2000, 10_240


def write_big_file(args: tuple[Path, int]) -> int:
    """A numeric-only Flink-v1 file: the same reward/KL distributions as inspect_bench's, a short sample id,
    and the text columns present but all null (so that runlog sees a complete v1 schema)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    logs, step = args
    rows = BIG_ROWS
    rng = np.random.default_rng(step)
    t = step / BIG_FILES
    failed = rng.random(rows) < 0.003
    correct = (rng.random(rows) < 0.3 + 0.5 * t).astype(np.float64)
    fmt = np.where(rng.random(rows) < 0.9, 1.0, 0.5)
    first = step * rows
    cols = {
        "env_name": pa.array(np.where(np.arange(rows) % 2 == 1, "debate_arith", "debate_trivia")),
        "trajectory": pa.nulls(rows, pa.string()),
        "agent_trajectories": pa.nulls(rows, pa.string()),
        "exception_info": pa.array(np.where(failed, "TimeoutError: tool", None), pa.string()),
        "reward": pa.array(0.8 * correct + 0.2 * fmt, mask=failed),
        "reward_metrics": pa.StructArray.from_arrays(
            [pa.array(correct), pa.array(fmt)], names=["correct", "format"], mask=pa.array(failed)
        ),
        "reward_text_info": pa.nulls(rows, pa.string()),
        "unique_sample_id": pa.array([f"s{first + i:09d}" for i in range(rows)], pa.string()),
        "schema_version": pa.array(np.ones(rows, np.int64)),
        "role_assignments": pa.nulls(rows, pa.string()),
    }
    for r in ib.ROLES:
        cols[f"{r}_reward"] = pa.array(np.round(rng.random(rows), 4), mask=failed)
        cols[f"{r}_kl"] = pa.array(np.round(0.001 + 0.05 * t * rng.random(rows), 6))
    path = logs / f"batch_debug_data_train_{step}.parquet"
    pq.write_table(pa.table(cols), path, compression="snappy")
    return path.stat().st_size


def ensure_big_data() -> tuple[Path, int]:
    free = shutil.disk_usage(DATA_ROOT if DATA_ROOT.exists() else REPO_ROOT).free
    params = {"generator_version": BIG_GENERATOR_VERSION, "files": BIG_FILES, "rows": BIG_ROWS}
    marker = DATA_ROOT / f"flink_v1_big_{BIG_FILES}x{BIG_ROWS}.params.json"
    if not marker.exists() and free < 8 * 2**30:
        raise SystemExit(f"only {free / 2**30:.1f} GiB free for the 20 M-row run (about 1.5 GiB): use --skip-20m")
    return ib.cached_run(f"flink_v1_big_{BIG_FILES}x{BIG_ROWS}", params, write_big_file, BIG_FILES)


# ---------------------------------------------------------------------------------------------------------
# Correctness
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Check:
    """runlog's rows against DuckDB's for one run and one grouping."""

    label: str
    groups: int = 0
    values: int = 0
    max_rel: float = 0.0
    max_rel_at: str = ""
    problems: list[str] = field(default_factory=list)


def _rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def compare(label: str, runlog_rows: list[dict], duck_rows: list[dict], keys: Sequence[str]) -> Check:
    check = Check(label)
    mine = {tuple(r.get(k) for k in keys): r for r in runlog_rows}
    theirs = {tuple(r[k] for k in keys): r for r in duck_rows}
    if len(mine) != len(runlog_rows):
        check.problems.append(f"runlog has duplicate groups ({len(runlog_rows)} rows, {len(mine)} groups)")
    for g in sorted(set(mine) - set(theirs), key=repr):
        check.problems.append(f"group {dict(zip(keys, g, strict=True))} only in runlog")
    for g in sorted(set(theirs) - set(mine), key=repr):
        check.problems.append(f"group {dict(zip(keys, g, strict=True))} only in DuckDB")
    cols = [c for c in duck_rows[0] if c not in keys] if duck_rows else []
    extra = sorted(set(runlog_rows[0]) - set(cols) - set(keys)) if runlog_rows else []
    if extra:
        check.problems.append(f"columns only in runlog: {extra}")
    for g in sorted(set(mine) & set(theirs), key=repr):
        check.groups += 1
        a, b = mine[g], theirs[g]
        where = ", ".join(f"{k}={v}" for k, v in zip(keys, g, strict=True))
        for c in cols:
            check.values += 1
            x, y = a.get(c, "<missing>"), b[c]
            if x == "<missing>":
                check.problems.append(f"[{where}] {c}: missing from runlog's output (DuckDB {y!r})")
            elif x is None or y is None:
                if x is not y:
                    check.problems.append(f"[{where}] {c}: runlog {x!r} vs DuckDB {y!r}")
            elif isinstance(x, (int, float)) and isinstance(y, (int, float)):
                if isinstance(x, float) and math.isnan(x) or isinstance(y, float) and math.isnan(y):
                    check.problems.append(f"[{where}] {c}: NaN (runlog {x!r}, DuckDB {y!r})")
                    continue
                d = _rel(float(x), float(y))
                if d > check.max_rel:
                    check.max_rel, check.max_rel_at = d, f"{c} [{where}]: runlog {x!r} vs DuckDB {y!r}"
                if d > REL_TOL:
                    check.problems.append(f"[{where}] {c}: runlog {x!r} vs DuckDB {y!r} (rel. diff {d:.3g})")
            elif x != y:
                check.problems.append(f"[{where}] {c}: runlog {x!r} vs DuckDB {y!r}")
    return check


def _json_out(proc, label: str) -> list[dict]:
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{label} failed (exit {proc.returncode}): {proc.stderr[-800:]}")
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise SystemExit(f"{label}: output is not JSON: {proc.stdout[:200]!r} {proc.stderr[-500:]}") from None


def check_run(run: Path, name: str, env: dict[str, str]) -> list[Check]:
    """Both groupings of one run, runlog against both DuckDB formulations (one untimed process each)."""
    out = []
    for by, keys in GROUPINGS:
        _, mine = ib.run_once(runlog_argv(run, keys), env)
        mine_rows = _json_out(mine, f"runlog ({name}, {flags_text(keys)})")
        for form in FORMS:
            label = f"{name}, {flags_text(keys)}, DuckDB {form}"
            _, theirs = ib.run_once(duckdb_argv(run, by, form), env)
            out.append(compare(label, mine_rows, _json_out(theirs, f"DuckDB ({label})"), keys))
    return out


def flags_text(keys: Sequence[str]) -> str:
    return " ".join(f"--by {k}" for k in keys)


def runlog_argv(run: Path, keys: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "runlog", "summarize", str(run), *flags_text(keys).split(), "--format", "json"]


def duckdb_argv(run: Path, by: str, form: str) -> list[str]:
    return [sys.executable, "-c", DUCKDB_CODE, str(run), by, form]


# ---------------------------------------------------------------------------------------------------------
# Memory (20 M rows)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class MemRow:
    label: str
    wall: float
    rss_mib: float


def measure(argv: list[str], env: dict[str, str], out_file: Path, label: str) -> MemRow:
    _, proc = ib.run_once([sys.executable, "-c", RUSAGE_CODE, str(out_file), *argv], env)
    if proc.returncode != 0:
        raise SystemExit(f"{label}: measuring wrapper failed: {proc.stderr[-800:]}")
    res = json.loads(proc.stdout)
    if res["rc"] not in (0, 1):
        raise SystemExit(f"{label} failed (exit {res['rc']}): {res['stderr']}")
    return MemRow(label, res["wall"], res["maxrss_kib"] / 1024)


def memory_run(run: Path, env: dict[str, str]) -> tuple[list[MemRow], list[Check]]:
    rows: list[MemRow] = []
    checks: list[Check] = []
    tmp = DATA_ROOT / "_summarize_bench_out"
    tmp.mkdir(parents=True, exist_ok=True)
    # Each query runs once, so read the files first: otherwise the first process (runlog's) would pay for
    # bringing 0.85 GiB into the page cache and the ones after it would not. `runlog inspect` fills the probe
    # cache, as the warm-up round does for the timed phases.
    for f in sorted(run.rglob("*.parquet")):
        f.read_bytes()
    ib.run_once([sys.executable, "-m", "runlog", "inspect", str(run), "--format", "json"], env)
    for by, keys in GROUPINGS:
        what = flags_text(keys)
        rows.append(measure(runlog_argv(run, keys), env, tmp / "runlog.json", f"runlog summarize {what}"))
        mine = json.loads((tmp / "runlog.json").read_text())
        for form in FORMS:
            rows.append(measure(duckdb_argv(run, by, form), env, tmp / "duckdb.json", f"DuckDB {form}, {what}"))
            theirs = json.loads((tmp / "duckdb.json").read_text())
            checks.append(compare(f"20 M rows, {what}, DuckDB {form}", mine, theirs, keys))
        print(f"  20 M rows {what} done", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    return rows, checks


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------
def machine_info() -> dict[str, str]:
    info = ib.machine_info()
    for dist in ("duckdb", "numpy"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = "not installed"
    return info


def ratio(phases: dict[str, ib.Phase], by: str, form: str, runlog: str = "runlog") -> float | None:
    """runlog's median over the median of one DuckDB formulation, for one grouping (``runlog_cold``: the
    phase without the probe cache)."""
    a, b = phases[f"{runlog}_{by}"], phases[f"duck_{form}_{by}"]
    if a.skipped or b.skipped:
        return None
    return ib.stats(a.times).median / ib.stats(b.times).median


def check_lines(checks: list[Check]) -> list[str]:
    out = []
    for c in checks:
        status = "agree" if not c.problems else f"DISAGREE ({len(c.problems)} value(s))"
        out.append(
            f"{c.label}: {status}; {c.groups} groups, {c.values} values compared, "
            f"max relative difference {c.max_rel:.2g}" + (f" ({c.max_rel_at})" if c.max_rel else "")
        )
        out += [f"    {p}" for p in c.problems[:20]]
        if len(c.problems) > 20:
            out.append(f"    ... and {len(c.problems) - 20} more")
    return out


def render_text(
    phases: dict[str, ib.Phase],
    checks: list[Check],
    mem: list[MemRow] | None,
    info: dict[str, str],
    header: str,
) -> str:
    lines = [header, ""]
    lines += [f"{k:>8}: {v}" for k, v in info.items()]
    lines += ["", f"{'phase':<58} {'median s':>9} {'min s':>8} {'max s':>8}"]
    for p in phases.values():
        if p.skipped:
            lines.append(f"{p.label:<58} {'skipped':>9}  ({p.skipped})")
            continue
        s = ib.stats(p.times)
        lines.append(f"{p.label:<58} {s.median:9.3f} {s.lo:8.3f} {s.hi:8.3f}")
    lines.append("")
    for by, keys in GROUPINGS:
        for form in FORMS:
            for who, what in (("runlog", ""), ("runlog_cold", " (no probe cache)")):
                r = ratio(phases, by, form, who)
                lines.append(
                    f"runlog {flags_text(keys)}{what} vs DuckDB {form}: "
                    + ("n/a" if r is None else f"{r:.2f}x the time (median / median)")
                )
    lines += ["", "correctness (runlog JSON vs DuckDB, tolerance 1e-9 relative):"]
    lines += ["  " + x for x in check_lines(checks)]
    if mem:
        lines += ["", f"{'20 M rows, one run each':<58} {'wall s':>9} {'peak RSS MiB':>13}"]
        lines += [f"{m.label:<58} {m.wall:9.2f} {m.rss_mib:13.0f}" for m in mem]
    return "\n".join(lines)


def render_markdown(
    phases: dict[str, ib.Phase],
    checks: list[Check],
    mem: list[MemRow] | None,
    mem_size: int,
    info: dict[str, str],
    size: int,
    reps: int,
) -> str:
    files, rows = 2000, 512
    out = [
        f"## `runlog summarize` against DuckDB ({files:,} files x {rows} rows)",
        "",
        f"Data: the Flink-v1 run of the `inspect` benchmark, {files:,} Parquet files x {rows} rows "
        f"({files * rows:,} rows, {size / 2**30:.2f} GiB on disk, snappy), with 1-2 KB of unique text per row "
        "that neither side needs to read; three roles (`solver`, `verifier`, `judge`) with flat `<role>_reward` "
        "/ `<role>_kl` columns, two reward components, 0.3% failed samples (null rewards, an exception).",
        "",
        "Method: each phase is a whole process (interpreter start-up and imports included), timed with "
        f"`time.perf_counter` around `subprocess.run`, interleaved round-robin for {reps} repetitions after one "
        "untimed warm-up round (warm page cache). The DuckDB phases run the same aggregation in SQL from a "
        "`python -c` process (`read_parquet` over `flink_logs/*.parquet`, `filter (where not isnan(...))` on "
        "every statistic, the step parsed from the file name, JSON printed as runlog does), in two "
        "formulations of the (sample, role) rows: *union*, one `union all` branch per role (DuckDB scans the "
        "files once per role), and *unnest*, one scan that unnests a list of one struct per role. Both tools "
        "use every core. The ratio is runlog's median over that DuckDB row's median (below 1: runlog faster).",
        "",
        "runlog keeps the probes of unchanged Parquet footers between commands (`runlog.probe_cache`): the "
        "first row of each group is a command on a run runlog has seen before (the warm-up round filled the "
        "cache), the second a first command on it (`RUNLOG_CACHE=off`).",
        "",
        "| phase | median (s) | min (s) | max (s) | runlog / this | runlog, no cache / this |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for by, _ in GROUPINGS:
        for key in (f"runlog_{by}", f"runlog_cold_{by}", *(f"duck_{form}_{by}" for form in FORMS)):
            p = phases[key]
            if p.skipped:
                out.append(f"| {p.label} | skipped: {p.skipped} | | | | |")
                continue
            s = ib.stats(p.times)
            cells = ["", ""]
            if key.startswith("duck"):
                for i, who in enumerate(("runlog", "runlog_cold")):
                    r = ratio(phases, by, key.split("_")[1], who)
                    cells[i] = "" if r is None else f"{r:.2f}"
            out.append(f"| {p.label} | {s.median:.3f} | {s.lo:.3f} | {s.hi:.3f} | {cells[0]} | {cells[1]} |")
    ok = all(not c.problems for c in checks)
    out += [
        "",
        "Correctness: runlog's JSON and DuckDB's rows are compared group by group and value by value (same "
        "groups; integers equal; floats within 1e-9 relative; null exactly where DuckDB gives NULL). Besides "
        f"the timed data, a second run of {NAN_FILES} files x {NAN_ROWS} rows adds NaN and null rewards and KL, "
        "extra exceptions, NaN reward components, a step where one role's rewards are all NaN, one with a "
        f"single valid reward and one with no KL. Result: **{'all agree' if ok else 'DISAGREEMENT'}**.",
        "",
        "| comparison | groups | values | max relative difference | result |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for c in checks:
        res = "agree" if not c.problems else f"{len(c.problems)} value(s) differ"
        out.append(f"| {c.label} | {c.groups} | {c.values} | {c.max_rel:.2g} | {res} |")
    bad = [f"- {c.label}: {p}" for c in checks for p in c.problems[:10]]
    if bad:
        out += ["", "Differences:", "", *bad]
    if mem:
        out += [
            "",
            f"Memory: a {BIG_FILES:,}-file x {BIG_ROWS:,}-row run ({BIG_FILES * BIG_ROWS / 1e6:.1f} M rows, "
            f"{mem_size / 2**30:.2f} GiB on disk; numeric columns and a short sample id, the text columns all "
            "null), each query run once in a fresh process, after the files were read once and `runlog inspect` "
            "filled the probe cache (as the warm-up round does above); peak RSS is the child's `ru_maxrss` "
            "(`getrusage(RUSAGE_CHILDREN)` in a wrapper process per measurement).",
            "",
            "| 20 M rows | wall (s) | peak RSS (MiB) |",
            "| --- | ---: | ---: |",
        ]
        out += [f"| {m.label} | {m.wall:.2f} | {m.rss_mib:.0f} |" for m in mem]
    out += ["", "Machine:", ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += [
        "",
        f"Reproduce: `python benchmarks/summarize_bench.py --reps {reps} --markdown` (the data is generated into "
        "`benchmarks/_data/` on first use and shared with `inspect_bench.py`).",
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time `runlog summarize` against the same aggregation in DuckDB.")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per phase (default 5)")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the timed data even if present")
    parser.add_argument("--markdown", action="store_true", help="also print a docs/benchmarks.md section")
    parser.add_argument("--skip-20m", action="store_true", help="leave out the 20 M-row memory run")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")

    run, size = ib.ensure_data(2000, 512, args.regenerate)
    nan_run, _ = ensure_nan_data()
    big = None if args.skip_20m else ensure_big_data()
    env = ib.child_env()
    # runlog keeps the probes of unchanged footers between commands (runlog.probe_cache): the timed phases
    # use a cache of their own, emptied first and filled by the warm-up round, and a "no cache" twin
    # (RUNLOG_CACHE=off) shows a first command on a run.
    cache = DATA_ROOT / "probe_cache"
    shutil.rmtree(cache, ignore_errors=True)
    env["RUNLOG_CACHE_DIR"] = str(cache)
    env.pop("RUNLOG_CACHE", None)
    phases: dict[str, ib.Phase] = {}
    for by, keys in GROUPINGS:
        key = f"runlog_{by}"
        phases[key] = ib.Phase(key, f"runlog summarize DIR {flags_text(keys)} --format json", runlog_argv(run, keys))
        phases[f"runlog_cold_{by}"] = ib.Phase(
            f"runlog_cold_{by}",
            "  the same, no probe cache (RUNLOG_CACHE=off)",
            runlog_argv(run, keys),
            env={"RUNLOG_CACHE": "off"},
        )
        for form in FORMS:
            key = f"duck_{form}_{by}"
            phases[key] = ib.Phase(key, f"DuckDB {form}, by {' and '.join(keys)}", duckdb_argv(run, by, form))
    # Warm-up round (untimed): also fails loudly if a phase does not produce JSON.
    for p in phases.values():
        _, proc = ib.run_once(p.argv, {**env, **p.env})
        _json_out(proc, p.label)
    for rep in range(args.reps):
        for p in phases.values():
            elapsed, proc = ib.run_once(p.argv, {**env, **p.env})
            if proc.returncode not in (0, 1):
                raise SystemExit(f"{p.label} failed on repetition {rep}: {proc.stderr[-500:]}")
            p.times.append(elapsed)
        print(f"  repetition {rep + 1}/{args.reps} done", file=sys.stderr)

    checks = check_run(run, "1 M rows", env) + check_run(nan_run, f"NaN/null variant ({NAN_FILES}x{NAN_ROWS})", env)
    mem, mem_size = None, 0
    if big is not None:
        mem, big_checks = memory_run(big[0], env)
        mem_size = big[1]
        checks += big_checks

    info = machine_info()
    header = (
        f"runlog summarize benchmark: 2000 files x 512 rows, {size / 2**20:.0f} MiB, "
        f"{args.reps} interleaved repetitions (warm cache)"
    )
    print(render_text(phases, checks, mem, info, header))
    if args.markdown:
        print()
        print(render_markdown(phases, checks, mem, mem_size, info, size, args.reps))
    return 1 if any(c.problems for c in checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
