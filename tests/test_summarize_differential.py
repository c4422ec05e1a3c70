"""Differential test of ``summarize``: random runs, summarised by runlog and by an independent engine.

The runs are written by ``runlog.RunWriter`` (native layout: 1-12 steps with gaps, train and eval sharing step
numbers, 1-3 roles with some samples lacking a role or every role, one or two writer processes per step,
prompt groups of 1-4 samples whose ids come again at other steps, splits and shards, NaN / null / +-inf rewards
and KL, exceptions, reward components with NaN) and with pyarrow directly (Flink v1 and v0 files). The oracle
is DuckDB SQL over the Parquet files, unnested here (never through runlog), written from docs/cli.md "What
summarize counts":

- with ``role`` among the keys (or a ``--role`` filter), reward/KL/zero_adv_frac are over (sample, role) pairs
  of the roles each sample logged; a sample without per-role data is one pair of a null role with its total
  reward; ``sample:exception_rate`` and ``sample:component/<name>_mean`` (with its ``_count``, ``_nan`` and
  ``_null``: a sample without the component is null) are over the samples of the group of the other keys;
- without ``role``, over samples: the sample's reward, the mean of its roles' KL (NaN if one is NaN, null if
  none logged one);
- valid = neither null nor NaN (so +-inf are values); std has ddof 1 and is null below two values;
- zero_adv_frac: prompt groups (one group id within a split and step) with a valid reward, share whose valid
  rewards all tie; null when there is none;
- ``split`` is a key whenever the run has several splits and ``--split`` picks none.

Every statistic is compared to 1e-12 relative (1e-12 absolute near zero, where the sum of values of order 1
cancels), with the partials cache off, cold and warm, and through the CLI's JSON.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.analysis.filters import Filters, StepRange
from runlog.analysis.summarize import summarize
from runlog.writer import RunWriter

duckdb = pytest.importorskip("duckdb")

ROLE_POOL = ("solver", "verifier", "judge")
COMPONENTS = ("fmt", "acc", "len")
OLD = 1_600_000_000  # file times well in the past: "just written" files are never stored in the partials cache
REL = 1e-12
ABS = 1e-12
NAN = float("nan")
INF = float("inf")


# ----------------------------------------------------------------------------------------------- generators


def _value(rng: random.Random, inf: float, special: float = 0.15) -> float | None:
    """A reward or KL: NaN or null now and then, +-inf with probability ``inf`` (drawn per step, so that most
    steps' means are finite numbers), else a value that often ties with others (zero-advantage groups)."""
    u = rng.random()
    if u < inf:
        return rng.choice([INF, -INF])
    if u < inf + special:
        return rng.choice([NAN, None])
    if rng.random() < 0.45:
        return rng.choice([0.0, 1.0, 0.5])
    return round(rng.gauss(0.4, 0.6), rng.choice([1, 3, 9])) + 0.0  # + 0.0: never -0.0


def _group_ids(rng: random.Random, n: int) -> list[str | None]:
    """Prompt groups of 1-4 samples, ids ``g0, g1, ...`` (the same ids at every step, split and process), and
    now and then a sample in no group."""
    out: list[str | None] = []
    k = 0
    while len(out) < n:
        size = rng.randint(1, 4)
        out += [f"g{k}"] * size
        k += 1
    out = out[:n]
    return [None if rng.random() < 0.1 else g for g in out]


@dataclass
class NativeRun:
    root: Path
    roles: tuple[str, ...]
    splits: tuple[str, ...]


def write_native(root: Path, seed: int, rows: int = 9) -> NativeRun:
    rng = random.Random(seed)
    roles = tuple(rng.sample(ROLE_POOL, rng.randint(1, 3)))
    steps = sorted(rng.sample(range(16), rng.randint(1, 12)))  # gaps
    with_eval = rng.random() < 0.75
    processes = rng.randint(1, 2)
    plan: dict[int, list[tuple[int, str]]] = {p: [] for p in range(processes)}
    for step in steps:
        splits = ["train"] if not with_eval else rng.choice([["train"], ["train", "eval"], ["train", "eval"], ["eval"]])
        for split in splits:
            shards = rng.sample(range(processes), rng.randint(1, processes))
            for p in shards:
                plan[p].append((step, split))
    splits_seen = sorted({s for p in plan.values() for _, s in p})
    for p in range(processes):
        with RunWriter(root, name=f"diff{seed}", roles=roles, process_index=p, durable=False) as w:
            for step, split in plan[p]:
                for _ in range(rng.choice([1, 1, 2])):  # one or two calls for one step
                    w.log_samples(step, _native_rows(rng, roles, rng.choice([0.0, 0.0, 0.1]), rows), split=split)
    _age(root)
    return NativeRun(root, roles, tuple(splits_seen))


def _native_rows(rng: random.Random, roles: tuple[str, ...], inf: float, most: int) -> list[dict[str, Any]]:
    n = 0 if rng.random() < 0.04 else rng.randint(1, most)  # now and then a call with no rows
    gids = _group_ids(rng, n)
    flat = rng.random() < 0.5  # flat <role>_reward columns (a missing one: a role struct of nulls), or nested
    rows = []
    for i in range(n):
        failed = rng.random() < 0.15
        row: dict[str, Any] = {
            "reward": None if failed and rng.random() < 0.7 else _value(rng, inf),
            "group_id": gids[i],
            "exception": "Traceback: boom" if failed else None,
        }
        if rng.random() < 0.85:
            row["reward_components"] = {c: _value(rng, inf / 4, 0.25) for c in COMPONENTS if rng.random() < 0.7}
        logged = [r for r in roles if rng.random() < 0.8]
        if flat:
            for r in logged:
                row[f"{r}_reward"] = _value(rng, inf)
                if rng.random() < 0.9:
                    row[f"{r}_kl"] = _value(rng, inf)
        elif logged:
            row["roles"] = {
                r: {"reward": _value(rng, inf), "kl": _value(rng, inf) if rng.random() < 0.9 else None} for r in logged
            }
        elif rng.random() < 0.5:
            row["roles"] = {}  # an empty list of roles: no per-role data, as a null one
        rows.append(row)
    return rows


def _age(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (OLD, OLD))


@dataclass
class FlinkRun:
    root: Path
    roles: tuple[str, ...]
    splits: tuple[str, ...]
    v0_steps: frozenset[tuple[str, int]]


def _trajectory(prompt: str | None, i: int) -> str:
    head = "<|system|>\nYou are a careful solver.\n"
    user = f"<|user|>\n{prompt}\n" if prompt is not None else ""
    return head + user + f"<|assistant name=solver|>\nanswer {i}\n"


def write_flink(root: Path, seed: int, *, with_v0: bool) -> FlinkRun:
    """Flink debug data written with pyarrow (docs/format.md: Flink v1 columns, and v0 files without
    ``schema_version`` or per-role columns). Prompts repeat within a step (prompt groups) and across steps."""
    rng = random.Random(seed)
    roles = ROLE_POOL[: rng.randint(1, 3)]
    logs = root / "flink_logs"
    logs.mkdir(parents=True, exist_ok=True)
    steps = sorted(rng.sample(range(12), rng.randint(2, 8)))
    v0: set[tuple[str, int]] = set()
    splits_seen: set[str] = set()
    for step in steps:
        for split in ("train", "eval") if rng.random() < 0.5 else ("train",):
            splits_seen.add(split)
            version = 0 if with_v0 and rng.random() < 0.4 else 1
            if version == 0:
                v0.add((split, step))
            n = rng.randint(1, 10)
            inf = rng.choice([0.0, 0.0, 0.1])
            prompts = [None if rng.random() < 0.1 else f"What is {rng.randint(0, 3)} + 2?" for _ in range(n)]
            cols: dict[str, Any] = {
                "env_name": ["math"] * n,
                "trajectory": [_trajectory(p, i) for i, p in enumerate(prompts)],
                "agent_trajectories": ["{}"] * n,
                "exception_info": ["ValueError: x" if rng.random() < 0.15 else None for _ in range(n)],
                "reward": pa.array([_value(rng, inf) for _ in range(n)], pa.float64()),
                "reward_metrics": pa.array(
                    [{"correct": _value(rng, inf / 4, 0.3), "format": _value(rng, inf / 4, 0.3)} for _ in range(n)],
                    pa.struct([("correct", pa.float64()), ("format", pa.float64())]),
                ),
                "reward_text_info": [None] * n,
                "unique_sample_id": [f"{split}-{step}-{i}" for i in range(n)],
            }
            if version == 1:
                cols["schema_version"] = pa.array([1] * n, pa.int64())
                cols["role_assignments"] = ['{"agent_0": "solver"}'] * n
                for r in roles:
                    cols[f"{r}_reward"] = pa.array([_value(rng, inf) for _ in range(n)], pa.float64())
                    cols[f"{r}_kl"] = pa.array([_value(rng, inf) for _ in range(n)], pa.float64())
            pq.write_table(pa.table(cols), logs / f"batch_debug_data_{split}_{step}.parquet")
            # the oracle's prompt groups: the prompt text, kept beside the data (not read by runlog: hidden)
            (logs / f".prompts_{split}_{step}.json").write_text(json.dumps(prompts))
    _age(root)
    return FlinkRun(root, roles, tuple(sorted(splits_seen)), frozenset(v0))


# ----------------------------------------------------------------------------------------------- the oracle


def _native_base(root: Path) -> str:
    return f"""
        SELECT split, step, sample_id, group_id AS gid, reward, roles, reward_components AS comps, exception
        FROM read_parquet('{root}/samples/*/*.parquet', union_by_name = true)"""


def _flink_base(run: FlinkRun, prompt_groups: bool) -> str:
    """One SELECT per file (v0 files have no per-role columns), the split and step from the file name."""
    parts = []
    for f in sorted((run.root / "flink_logs").glob("batch_debug_data_*.parquet")):
        split, step = f.stem.removeprefix("batch_debug_data_").rsplit("_", 1)
        v0 = (split, int(step)) in run.v0_steps
        roles = (
            "NULL::STRUCT(role VARCHAR, reward DOUBLE, kl DOUBLE)[]"
            if v0
            else "[" + ", ".join(f"{{'role': '{r}', 'reward': {r}_reward, 'kl': {r}_kl}}" for r in run.roles) + "]"
        )
        if prompt_groups:
            prompts = json.loads((f.parent / f".prompts_{split}_{step}.json").read_text())
            literal = ", ".join("NULL" if t is None else "'" + t.replace("'", "''") + "'" for t in prompts)
            gid = f"(CAST([{literal}] AS VARCHAR[]))[file_row_number + 1]"
        else:
            gid = "NULL::VARCHAR"
        parts.append(
            f"""SELECT '{split}' AS split, {int(step)}::BIGINT AS step, unique_sample_id AS sample_id, {gid} AS gid,
                reward, {roles} AS roles,
                [{{'name': 'correct', 'value': reward_metrics.correct}},
                 {{'name': 'format', 'value': reward_metrics.format}}] AS comps,
                exception_info AS exception
            FROM read_parquet('{f}', file_row_number = true)"""
        )
    return "\nUNION ALL BY NAME\n".join(parts)


def _valid(x: str) -> str:
    return f"({x} IS NOT NULL AND NOT isnan({x}))"


def _stats(prefix: str, x: str) -> str:
    """Every statistic summarize prints for one value column, as SQL aggregates over the valid values."""
    v = _valid(x)
    n = f"count(*) FILTER (WHERE {v})"
    srt = f"list_sort(list({x}) FILTER (WHERE {v}))"
    median = (
        f"CASE WHEN {n} = 0 THEN NULL WHEN {n} % 2 = 1 THEN {srt}[({n} + 1) // 2] "
        f"ELSE ({srt}[{n} // 2] + {srt}[{n} // 2 + 1]) / 2 END"
    )
    std = (
        f"CASE WHEN {n} < 2 THEN NULL WHEN bool_or(isinf({x})) FILTER (WHERE {v}) THEN 'NaN'::DOUBLE "
        f"ELSE stddev_samp({x}) FILTER (WHERE {v} AND NOT isinf({x})) END"
    )
    out = [
        f"avg({x}) FILTER (WHERE {v}) AS {prefix}_mean",
        f"{std} AS {prefix}_std",
        f"min({x}) FILTER (WHERE {v}) AS {prefix}_min",
        f"max({x}) FILTER (WHERE {v}) AS {prefix}_max",
    ]
    if prefix == "reward":
        out.append(f"{median} AS reward_median")
    out += [
        f"{n} AS {prefix}_count",
        f"count(*) FILTER (WHERE isnan({x})) AS {prefix}_nan",
        f"count(*) FILTER (WHERE {x} IS NULL) AS {prefix}_null",
    ]
    return ",\n".join(out)


KEY_COLUMN = {"split": "split", "step": "step", "role": "role", "group": "gid"}
# the sample's KL: the mean of its roles' KL values (NaN if one is NaN; null if no role logged one)
_KLS = "list_filter(roles, lambda x: x.kl IS NOT NULL)"
SAMPLE_KL = f"""CASE WHEN roles IS NULL OR len({_KLS}) = 0 THEN NULL
    WHEN len(list_filter({_KLS}, lambda x: isnan(x.kl))) > 0 THEN 'NaN'::DOUBLE
    ELSE list_sum(list_transform({_KLS}, lambda x: x.kl)) / len({_KLS}) END"""


def expected_keys(by: list[str], filters: Filters, splits: tuple[str, ...]) -> list[str]:
    """docs/cli.md: --role makes role a key, --by group adds step, several splits add split first."""
    keys = list(by)
    if filters.roles and "role" not in keys:
        keys.insert(0, "role")
    if "group" in keys and "step" not in keys:
        keys.insert(keys.index("group"), "step")
    if "split" not in keys and not filters.splits and len(splits) > 1:
        keys.insert(0, "split")
    return keys


def load(base: str) -> Any:
    """A DuckDB connection holding the run's samples as table ``s`` (read once from the Parquet files)."""
    con = duckdb.connect()
    con.execute(f"CREATE TABLE s AS {base}")
    return con


def oracle(con: Any, by: list[str], filters: Filters, splits: tuple[str, ...]) -> tuple[list[str], dict[tuple, dict]]:
    """The summary by DuckDB over table ``s``: ``(keys, {key tuple: {column: value}})``."""
    keys = expected_keys(by, filters, splits)
    where = ["TRUE"]
    if filters.splits:
        where.append("split IN (" + ", ".join(f"'{s}'" for s in filters.splits) + ")")
    if not filters.steps.unbounded:
        items = []
        for lo, hi in filters.steps.items:
            items.append(
                "("
                + " AND ".join(
                    [f"step >= {lo}" if lo is not None else "TRUE", f"step <= {hi}" if hi is not None else "TRUE"]
                )
                + ")"
            )
        where.append("(" + " OR ".join(items) + ")")
    per_role = "role" in keys
    if per_role:
        view = """SELECT f.split, f.step, f.gid, f.sample_id, r.role AS role, r.reward AS v, r.kl AS k
                  FROM f, unnest(f.roles) AS t(r)
                  UNION ALL
                  SELECT split, step, gid, sample_id, NULL::VARCHAR, reward, NULL::DOUBLE
                  FROM f WHERE roles IS NULL OR len(roles) = 0"""
    else:
        view = f"SELECT split, step, gid, sample_id, NULL::VARCHAR AS role, reward AS v, {SAMPLE_KL} AS k FROM f"
    role_where = "TRUE"
    if filters.roles:
        role_where = "role IN (" + ", ".join(f"'{r}'" for r in filters.roles) + ")"
    kcols = [KEY_COLUMN[k] for k in keys]
    others = [KEY_COLUMN[k] for k in keys if k != "role"]
    sel = lambda cols: ", ".join(cols) + ", " if cols else ""  # noqa: E731
    grp = lambda cols: "GROUP BY " + ", ".join(cols) if cols else ""  # noqa: E731
    con.execute(f"CREATE OR REPLACE TEMP VIEW f AS SELECT * FROM s WHERE {' AND '.join(where)}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW long AS SELECT * FROM ({view}) WHERE {role_where}")
    main = con.execute(
        f"SELECT {sel(kcols)} {_stats('reward', 'v')}, {_stats('kl', 'k')} FROM long {grp(kcols)}"
    ).fetchall()
    names = [d[0] for d in con.description]
    rows: dict[tuple, dict] = {}
    for r in main:
        rec = dict(zip(names, r, strict=True))
        rows[tuple(rec.pop(c) for c in kcols)] = rec
    # zero_adv_frac: prompt groups = (split, step, group id), within the row's keys
    gkeys = sorted(set(kcols) | {"split", "step", "gid"}, key=["split", "step", "gid", "role"].index)
    zadv = con.execute(
        f"""WITH g AS (
              SELECT {", ".join(gkeys)}, count(DISTINCT v) FILTER (WHERE {_valid("v")}) AS d,
                     count(*) FILTER (WHERE {_valid("v")}) AS c
              FROM long WHERE gid IS NOT NULL GROUP BY {", ".join(gkeys)})
            SELECT {sel(kcols)} avg(CASE WHEN d = 1 THEN 1.0 ELSE 0.0 END) FILTER (WHERE c > 0) AS z
            FROM g {grp(kcols)}"""
    ).fetchall()
    z = {tuple(r[:-1]): r[-1] for r in zadv}
    prefix = "sample:" if per_role else ""
    # the per-sample columns: every sample of the group of the other keys (all roles together)
    exc = con.execute(
        f"SELECT {sel(others)} avg(CASE WHEN exception IS NOT NULL THEN 1.0 ELSE 0.0 END) FROM f {grp(others)}"
    ).fetchall()
    exc_by = {tuple(r[:-1]): r[-1] for r in exc}
    # a component of the run is a column of every summary of it (null where the rows selected have no value);
    # each sample has one value of it: its own, or null where it lacks the component (or logged it null)
    comp_names = sorted(r[0] for r in con.execute("SELECT DISTINCT c.name FROM s, unnest(s.comps) AS t(c)").fetchall())
    comp_by: dict[tuple, tuple] = {}
    for name in comp_names:
        value = f"list_filter(comps, lambda c: c.name = '{name}')[1].value"
        for r in con.execute(
            f"""SELECT {sel(others)} avg(x) FILTER (WHERE {_valid("x")}), count(*) FILTER (WHERE {_valid("x")}),
                    count(*) FILTER (WHERE isnan(x)), count(*) FILTER (WHERE x IS NULL)
                FROM (SELECT *, {value} AS x FROM f) {grp(others)}"""
        ).fetchall():
            comp_by[(tuple(r[:-4]), name)] = r[-4:]
    for key, rec in rows.items():
        rec["zero_adv_frac"] = z.get(key)
        other = tuple(v for c, v in zip(kcols, key, strict=True) if c != "role")
        rec[f"{prefix}exception_rate"] = exc_by[other]
        for c in comp_names:
            for stat, v in zip(("mean", "count", "nan", "null"), comp_by[(other, c)], strict=True):
                rec[f"{prefix}component/{c}_{stat}"] = v
    return keys, rows


# ----------------------------------------------------------------------------------------------- comparison


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if math.isinf(a) or math.isinf(b):
            return a == b
        return math.isclose(a, b, rel_tol=REL, abs_tol=ABS)
    return a == b


def _json_value(x: Any) -> Any:
    """The JSON output's value: NaN and infinities become null (docs/cli.md)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def compare(got_rows: list[dict], keys: list[str], want: dict[tuple, dict], *, json_out: bool = False) -> list[str]:
    errors = []
    got: dict[tuple, dict] = {}
    for r in got_rows:
        r = dict(r)
        key = tuple(r.pop(k, "<missing key>") for k in keys)
        if key in got:
            errors.append(f"row {key} twice")
        got[key] = r
    if set(got) != set(want):
        errors.append(
            f"rows: runlog only {sorted(set(got) - set(want), key=str)}, "
            f"oracle only {sorted(set(want) - set(got), key=str)}"
        )
    for key in set(got) & set(want):
        g, w = got[key], want[key]
        extra = set(g) - set(w) - {"run"}
        if extra or set(w) - set(g):
            errors.append(f"{key}: columns runlog only {sorted(extra)}, oracle only {sorted(set(w) - set(g))}")
        for c in sorted(set(g) & set(w)):
            wv = _json_value(w[c]) if json_out else w[c]
            if not _same(g[c], wv):
                errors.append(f"{key} {c}: runlog {g[c]!r}, oracle {wv!r}")
    return errors


# ----------------------------------------------------------------------------------------------- questions


def _questions(rng: random.Random, roles: tuple[str, ...], splits: tuple[str, ...]) -> list[tuple[list[str], Filters]]:
    """The --by combinations and filters asked of every run: fixed ones, and a few drawn at random."""
    qs: list[tuple[list[str], Filters]] = [
        (["role"], Filters()),
        (["step", "role"], Filters()),
        (["split", "role"], Filters()),
        ([], Filters()),
        (["step"], Filters()),
        (["split"], Filters()),
        (["group"], Filters()),
        (["role", "group"], Filters()),
        (["role"], Filters(splits=("train",) if "train" in splits else splits[:1])),
        ([], Filters(splits=splits)),  # several splits named: pooled on purpose
        (["role"], Filters(splits=splits)),
        ([], Filters(roles=(roles[-1],))),
    ]
    for _ in range(3):
        by = rng.choice([["role"], [], ["step"], ["step", "role"], ["split"], ["split", "role"], ["group"]])
        lo = rng.randint(0, 8)
        steps = rng.choice([f"{lo}:{lo + rng.randint(0, 6)}", f"{lo}:", f":{lo}", f"{lo},{lo + 2}:{lo + 5}"])
        split = rng.choice([(), (rng.choice(splits),)])
        role = rng.choice([(), (rng.choice(roles),)])
        qs.append((by, Filters(splits=split, steps=StepRange.parse(steps), roles=role)))
    return qs


def _fits(con: Any, filters: Filters) -> bool:
    """Whether the filters select a step the run has (a value the run lacks is a usage error, not a summary)."""
    return any(filters.steps.contains(r[0]) for r in con.execute("SELECT DISTINCT step FROM s").fetchall())


def check_api(
    root: Path, con: Any, splits: tuple[str, ...], qs, modes=("off", "cold", "warm"), prompt_groups: bool = False
) -> tuple[list[str], int]:
    """Every question, with the partials cache off, on and cold (the steps are read and stored), and on and
    warm (asked again: the stored steps are merged). Returns the discrepancies and the count of known ones."""
    errors, known = [], 0
    for by, filters in qs:
        keys, want = oracle(con, by, filters, splits)
        for mode in modes:
            try:
                got = summarize(open_run(root), by, filters=filters, cache=mode != "off", prompt_groups=prompt_groups)
            except Exception as e:  # a crash is a discrepancy too
                errors.append(f"by={by} {filters}: {mode}: {type(e).__name__}: {e}")
                break
            cols = [c for c in got.columns if c in KEY_COLUMN]
            if cols != keys:
                errors.append(f"by={by} {filters} {mode}: keys {cols}, expected {keys}")
            for e in compare(got.to_dicts(), keys, want):
                if isinstance(e, tuple):
                    known += 1
                else:
                    errors.append(
                        f"by={by} {filters.splits} steps={filters.steps.text!r} roles={filters.roles} {mode}: {e}"
                    )
    return errors, known


def _steps_text(f: Filters) -> list[str]:
    args = [a for s in f.splits for a in ("--split", s)] + [a for r in f.roles for a in ("--role", r)]
    return args + (["--steps", f.steps.text] if f.steps.text else [])


def check_cli(cli: Any, root: Path, con: Any, splits: tuple[str, ...], qs) -> list[str]:
    """The same questions through ``runlog summarize ... --format json`` (with and without --no-cache)."""
    errors = []
    for i, (by, filters) in enumerate(qs):
        keys, want = oracle(con, by, filters, splits)
        args = ["summarize", root, *[a for b in by for a in ("--by", b)], *_steps_text(filters), "--format", "json"]
        if not by:
            args[2:2] = ["--by", "run"]
        if i % 2:
            args.append("--no-cache")
        r = cli(*args)
        if r.exit_code not in (0, 1) or (r.exit_code == 1 and "error" not in r.stderr.lower()):
            errors.append(f"{args}: exit {r.exit_code}: {r.stderr[-500:]}")
            continue
        rows = json.loads(r.stdout)
        errors += [
            f"{' '.join(map(str, args[2:]))}: {e}"
            for e in compare(rows, keys, want, json_out=True)
            if not isinstance(e, tuple)
        ]
        # (a fleet, --by run, adds split without the note: test_fleet_adds_split_with_a_note below)
        if by and "split" in keys and "split" not in by and "`split` was added" not in r.stderr:
            errors.append(f"{args}: split added without a note on stderr: {r.stderr!r}")
    return errors


# ----------------------------------------------------------------------------------------------- tests

# picked for variety: one split or two, 1-3 roles, 1-2 processes, rows without roles (null or empty lists)
NATIVE_SEEDS = [1, 2, 8, 10, 11, 15, 20, 21, 39]


@pytest.mark.parametrize(
    ("seed", "rows"),
    [*((s, 9) for s in NATIVE_SEEDS), pytest.param(5, 120, id="heavy-5"), pytest.param(20, 120, id="heavy-20")],
)
def test_native_summaries_equal_duckdb(tmp_path, seed, rows):
    """RunWriter runs; the heavy variants log up to 120 rows per call (about 1-2 thousand samples): still small."""
    run = write_native(tmp_path / "run", seed, rows)
    con = load(_native_base(run.root))
    qs = [q for q in _questions(random.Random(seed * 7919), run.roles, run.splits) if _fits(con, q[1])]
    errors, _ = check_api(run.root, con, run.splits, qs)
    assert not errors, "\n".join(errors[:40])


FLINK_CASES = [
    pytest.param(11, False, False, id="v1"),
    pytest.param(12, True, False, id="v0-and-v1"),
    pytest.param(13, False, True, id="v1-prompt-groups"),
    pytest.param(14, True, True, id="v0-and-v1-prompt-groups"),
]


@pytest.mark.parametrize(("seed", "with_v0", "prompt_groups"), FLINK_CASES)
def test_flink_summaries_equal_duckdb(tmp_path, seed, with_v0, prompt_groups):
    """Flink debug data written with pyarrow: per-role columns, reward_metrics struct, exception_info; v0 files
    without roles (a null role with the sample's reward); prompt groups from the rendered trajectory's user
    turn with --prompt-groups, none without (zero_adv_frac null)."""
    run = write_flink(tmp_path / "run", seed, with_v0=with_v0)
    con = load(_flink_base(run, prompt_groups))
    qs = [q for q in _questions(random.Random(seed), run.roles, run.splits) if _fits(con, q[1])]
    if prompt_groups:  # a derived group is named by a digest of its prompt: compare the groups' figures only
        qs = [q for q in qs if "group" not in q[0]]
    errors, _ = check_api(run.root, con, run.splits, qs, prompt_groups=prompt_groups)
    assert not errors, "\n".join(errors[:40])


@pytest.mark.parametrize("kind", ["native-2", "native-21", "flink-14"])
def test_cli_json_equals_duckdb(tmp_path, cli, kind):
    """``runlog summarize ... --format json`` (NaN and infinities as null; every other question --no-cache;
    no --by as --by run), and the note on stderr when split is added to the keys."""
    layout, seed = kind.split("-")
    if layout == "native":
        run: NativeRun | FlinkRun = write_native(tmp_path / "run", int(seed))
        con = load(_native_base(run.root))
    else:
        run = write_flink(tmp_path / "run", int(seed), with_v0=True)
        con = load(_flink_base(run, False))
    qs = [q for q in _questions(random.Random(int(seed) + 1), run.roles, run.splits) if _fits(con, q[1])]
    errors = check_cli(cli, run.root, con, run.splits, qs)
    assert not errors, "\n".join(errors[:40])


@pytest.mark.parametrize("seed", [15, 21])
def test_splits_are_never_pooled_unless_asked_and_a_sample_counts_once(tmp_path, seed):
    """Without role, reward_count + reward_nan + reward_null (and the same for KL) is the number of samples of
    the row, per split; train and eval come apart unless both are named; the per-sample figures of a summary by
    role are the same on each role's row and equal the summary without role."""
    run = write_native(tmp_path / "run", seed)
    assert run.splits == ("eval", "train")
    con = load(_native_base(run.root))
    n = dict(con.execute("SELECT split, count(*) FROM s GROUP BY split").fetchall())
    n_step = {(a, b): c for a, b, c in con.execute("SELECT split, step, count(*) FROM s GROUP BY ALL").fetchall()}
    for cache in (False, True, True):
        plain = summarize(open_run(run.root), [], cache=cache)
        assert plain["split"].to_list() == ["eval", "train"]
        for r in plain.to_dicts():
            for m in ("reward", "kl"):
                assert r[f"{m}_count"] + r[f"{m}_nan"] + r[f"{m}_null"] == n[r["split"]], (r, m)
        by_step = summarize(open_run(run.root), ["step"], cache=cache)
        assert {(r["split"], r["step"]) for r in by_step.to_dicts()} == set(n_step)
        for r in by_step.to_dicts():
            assert r["reward_count"] + r["reward_nan"] + r["reward_null"] == n_step[(r["split"], r["step"])]
        pooled = summarize(open_run(run.root), [], filters=Filters(splits=("train", "eval")), cache=cache)
        assert "split" not in pooled.columns and pooled["reward_null"][0] + pooled["reward_nan"][0] + pooled[
            "reward_count"
        ][0] == sum(n.values())
        by_role = summarize(open_run(run.root), ["role"], cache=cache)
        for split, rows in by_role.group_by("split"):
            alone = plain.filter(plain["split"] == split[0]).to_dicts()[0]
            for c in [c for c in by_role.columns if c.startswith("sample:")]:
                for v in rows[c].to_list():
                    assert _same(v, alone[c.removeprefix("sample:")]), (split, c, v)


def _one_step_run(root: Path, rewards: list[float]) -> Path:
    with RunWriter(root, name="m", durable=False) as w:
        w.log_samples(0, [{"reward": r} for r in rewards])
    return root


@pytest.mark.parametrize("cache", [False, True])
def test_median_of_minus_inf_and_a_number(tmp_path, cache):
    """polars' median takes ``lo + (hi - lo) / 2`` of the two middle values: NaN for [-inf, 1.0], where numpy
    (and the oracle) give -inf; docs/cli.md counts +-inf as values. ``stats.median`` gives numpy's."""
    import numpy as np

    for i, values in enumerate(([-INF, 1.0], [-INF, -INF], [-INF, INF], [-INF, -INF, 2.0, INF])):
        out = summarize(open_run(_one_step_run(tmp_path / f"m{i}", values)), [], cache=cache)
        with np.errstate(invalid="ignore"):
            want = float(np.median(values))
        got = out["reward_median"][0]
        assert got == want or (math.isnan(got) and math.isnan(want)), (values, got, want)


def test_median_of_a_number_and_plus_inf(tmp_path):
    """The mirror of the case above, which runlog gets right: the middle of 1 and +inf is +inf."""
    out = summarize(open_run(_one_step_run(tmp_path / "m", [1.0, INF])), [], cache=False)
    assert out["reward_median"][0] == INF


def test_fleet_adds_split_with_a_note(tmp_path, cli):
    root = tmp_path / "r"
    with RunWriter(root, name="r", durable=False) as w:
        w.log_samples(0, [{"reward": 1.0}], split="train")
        w.log_samples(0, [{"reward": 0.0}], split="eval")
    single = cli("summarize", root, "--by", "step", "--format", "json")
    assert "`split` was added" in single.stderr  # the single-run path says it
    r = cli("summarize", root, "--by", "run", "--format", "json")
    assert r.exit_code == 0 and [row["split"] for row in json.loads(r.stdout)] == ["eval", "train"]
    assert "`split` was added" in r.stderr, r.stderr
    assert "this run has the splits eval, train" in r.stderr  # one run asked for: not "runs of this fleet"
    shutil.copytree(root, tmp_path / "r2")
    both = cli("summarize", root, tmp_path / "r2", "--by", "run", "--format", "json")
    assert "runs of this fleet have the splits eval, train" in both.stderr, both.stderr
