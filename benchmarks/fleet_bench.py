#!/usr/bin/env python
"""Fleets and object storage: ``runlog summarize 'ROOT/*' --by run --by role`` on 500 runs, three ways.

Issue 9 asks for, in the same run of this script:

* **a fleet of 500 runs x 200 steps x 64 rows** (Flink v1 layout: one Parquet file per step, so 100,000
  small files; texts short, so the fleet is ~0.6 GB) summarised per run and role
  - by runlog with the local engine (in-process polars),
  - by runlog with ``--engine ray`` (Ray started on this machine, as a cluster of one),
  - by DuckDB over the same local files (one SQL query, ``union all`` of one branch per role);
  each as a whole process (start-up and imports count), interleaved after one untimed warm-up, medians.
  runlog's two engines must agree exactly, and runlog and DuckDB within 1e-9 on every mean, std, min, max
  and count (the script exits non-zero otherwise);
* **how cost grows:** the local engine on 1/8, 1/4, 1/2 and all of the runs (``--scaling``);
* **remote reads:** the first ``--remote-runs`` runs uploaded to a local S3 server (moto, in its own process
  on 127.0.0.1), then discovery of every run (listing, footers) with one request at a time
  (``RUNLOG_REMOTE_CONCURRENCY=1``) and with the default bounded pool, and the whole remote
  ``summarize --by run --by role`` both ways.

Usage::

    python benchmarks/fleet_bench.py                 # generate if needed (~3 min), 3 repetitions
    python benchmarks/fleet_bench.py --runs 100 --reps 5 --scaling --markdown
    python benchmarks/fleet_bench.py --skip-remote   # without the S3 part (needs moto[server])
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inspect_bench as ib  # noqa: E402  (timing and machine helpers)

DATA_ROOT = ib.DATA_ROOT
GENERATOR_VERSION = 2
ROLES = ("solver", "verifier", "judge")
REL_TOL = 1e-9

DUCKDB_CODE = r"""
import json, sys
import duckdb
root = sys.argv[1]
con = duckdb.connect()
con.execute("set enable_progress_bar = false")
src = f"read_parquet('{root}/*/flink_logs/*.parquet', filename=true)"
roles = ["solver", "verifier", "judge"]
branches = " union all ".join(
    f"select regexp_extract(filename, '([^/]+)/flink_logs/', 1) as run, '{r}' as role, "
    f"case when isnan({r}_reward) then null else {r}_reward end as r, "
    f"case when isnan({r}_kl) then null else {r}_kl end as k from {src}" for r in roles
)
q = f'''select run, role, avg(r) as reward_mean, stddev_samp(r) as reward_std, min(r) as reward_min,
  max(r) as reward_max, median(r) as reward_median, count(r) as reward_count, avg(k) as kl_mean,
  stddev_samp(k) as kl_std, count(k) as kl_count from ({branches}) group by run, role order by run, role'''
cur = con.execute(q)
cols = [d[0] for d in cur.description]
print(json.dumps([dict(zip(cols, row)) for row in cur.fetchall()]))
"""


def write_run(args: tuple[Path, int, int, int]) -> int:
    """One run: ``steps`` Flink v1 files of ``rows`` rows, seeded by the run index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, index, steps, rows = args
    logs = root / f"run_{index:04d}" / "flink_logs"
    logs.mkdir(parents=True, exist_ok=True)
    rng = random.Random(index)
    total = 0
    skill = 0.2 + 0.6 * rng.random()
    for step in range(steps):
        t = step / max(1, steps - 1)
        failed = [rng.random() < 0.003 for _ in range(rows)]
        cols: dict[str, list] = {f"{r}_{m}": [] for r in ROLES for m in ("reward", "kl")}
        for i in range(rows):
            for r in ROLES:
                cols[f"{r}_reward"].append(None if failed[i] else round(min(1.0, skill * t + rng.random() * 0.5), 4))
                cols[f"{r}_kl"].append(round(0.001 + 0.05 * t * rng.random(), 6))
        correct = [float(rng.random() < skill) for _ in range(rows)]
        table = pa.table(
            {
                "env_name": pa.array(["debate_arith"] * rows, pa.string()),
                "trajectory": pa.array([f"q{step}-{i}: <think>...</think><answer>{i}</answer>" for i in range(rows)]),
                "agent_trajectories": pa.array(["[]"] * rows, pa.string()),
                "exception_info": pa.array(["TimeoutError" if f else None for f in failed], pa.string()),
                "reward": pa.array([None if f else c for f, c in zip(failed, correct, strict=True)], pa.float64()),
                "reward_metrics": pa.array(
                    [None if f else {"correct": c, "format": 1.0} for f, c in zip(failed, correct, strict=True)]
                ),
                "reward_text_info": pa.array([None] * rows, pa.string()),
                "unique_sample_id": pa.array([f"r{index}:{step * rows + i}" for i in range(rows)]),
                "role_assignments": pa.array(['{"agent_0": "solver"}'] * rows, pa.string()),
                "schema_version": pa.array([1] * rows, pa.int64()),
                **{k: pa.array(v, pa.float64()) for k, v in cols.items()},
            }
        )
        path = logs / f"batch_debug_data_train_{step}.parquet"
        pq.write_table(table, path, compression="snappy")
        total += path.stat().st_size
    return total


def ensure_fleet(runs: int, steps: int, rows: int) -> tuple[Path, int]:
    root = DATA_ROOT / f"fleet_{runs}x{steps}x{rows}"
    marker = DATA_ROOT / f"fleet_{runs}x{steps}x{rows}.params.json"
    params = {"generator_version": GENERATOR_VERSION, "runs": runs, "steps": steps, "rows": rows}
    if marker.exists():
        done = json.loads(marker.read_text())
        if done.get("params") == params:
            return root, int(done["bytes"])
    import shutil

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    print(f"generating {runs} runs x {steps} steps x {rows} rows ...", file=sys.stderr)
    t0 = time.perf_counter()
    with ProcessPoolExecutor() as pool:
        total = sum(pool.map(write_run, [(root, i, steps, rows) for i in range(runs)], chunksize=4))
    marker.write_text(json.dumps({"params": params, "bytes": total}) + "\n")
    print(f"  done in {time.perf_counter() - t0:.0f} s, {total / 2**20:.0f} MiB", file=sys.stderr)
    return root, total


def compare(a: list[dict], b: list[dict], cols: list[str], what: str, rel_tol: float = REL_TOL) -> None:
    key = lambda row: (row["run"], row["role"] or "")  # noqa: E731
    a, b = sorted(a, key=key), sorted(b, key=key)
    if [key(r) for r in a] != [key(r) for r in b]:
        raise SystemExit(f"{what}: different groups")
    for ra, rb in zip(a, b, strict=True):
        for c in cols:
            x, y = ra.get(c), rb.get(c)
            if x is None or y is None:
                if x is not None or y is not None:
                    raise SystemExit(f"{what}: {key(ra)} {c}: {x} vs {y}")
            elif not math.isclose(float(x), float(y), rel_tol=rel_tol, abs_tol=1e-12):
                raise SystemExit(f"{what}: {key(ra)} {c}: {x} vs {y}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROXY_CODE = r"""
import asyncio, sys
listen, target, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000

async def pipe(reader, writer, lag):
    try:
        while data := await reader.read(65536):
            if lag:
                await asyncio.sleep(lag)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()

async def handle(creader, cwriter):
    sreader, swriter = await asyncio.open_connection("127.0.0.1", target)
    await asyncio.gather(pipe(creader, swriter, delay), pipe(sreader, cwriter, 0))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def remote_part(root: Path, nruns: int, reps: int, latency_ms: float) -> dict:
    """Upload ``nruns`` runs to a moto S3 server (its own process) and time discovery and summarize, through a
    proxy that delays every request by ``latency_ms`` (an object store is not on loopback: real requests take
    tens of milliseconds, which is what makes one-at-a-time reads slow)."""
    import obstore
    import obstore.store

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    proxy_port = free_port()
    proxy = subprocess.Popen([sys.executable, "-c", PROXY_CODE, str(proxy_port), str(port), str(latency_ms)])
    opts = {
        "aws_endpoint_url": endpoint,
        "aws_region": "us-east-1",
        "aws_access_key_id": "bench",
        "aws_secret_access_key": "bench",
        "aws_allow_http": "true",
    }
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        import boto3

        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="b", aws_secret_access_key="b"
        ).create_bucket(Bucket="fleet")
        store = obstore.store.from_url(
            "s3://fleet",
            config={k: v for k, v in opts.items() if k != "aws_allow_http"},
            client_options={"allow_http": True},
        )
        runs = sorted(p for p in root.iterdir() if p.is_dir())[:nruns]
        files = [(p, f"{r.name}/{p.relative_to(r).as_posix()}") for r in runs for p in sorted(r.rglob("*.parquet"))]
        t0 = time.perf_counter()

        async def upload() -> None:
            import asyncio

            sem = asyncio.Semaphore(32)

            async def put(p: Path, key: str) -> None:
                async with sem:
                    await obstore.put_async(store, key, p.read_bytes())

            await asyncio.gather(*(put(p, k) for p, k in files))

        import asyncio

        asyncio.run(upload())
        upload_s = time.perf_counter() - t0
        env = ib.child_env()
        env.update({k.upper(): v for k, v in opts.items()})
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy_port}"
        out: dict = {"runs": nruns, "objects": len(files), "upload_s": upload_s, "latency_ms": latency_ms}
        discover = (
            "import sys, time\nfrom runlog.fleet import resolve_locations\nfrom runlog.run import open_run\n"
            "t = time.perf_counter()\nlocs = resolve_locations(['s3://fleet/*'])\n"
            "n = sum(len(open_run(loc).files) for loc in locs)\nprint(n, time.perf_counter() - t)\n"
        )
        summarize = [sys.executable, "-m", "runlog", "summarize", "s3://fleet/*", "--by", "run", "--by", "role"]
        summarize += ["--format", "json"]
        # The first two rows are first commands (no probe cache); the third is a command on runs seen before:
        # an untimed summarize fills a cache of its own, and the listing's ETags say nothing changed.
        cache = DATA_ROOT / "probe_cache_remote"
        shutil.rmtree(cache, ignore_errors=True)
        configs = (
            ("one request at a time", "1", {"RUNLOG_CACHE": "off"}),
            ("bounded pool (64)", "64", {"RUNLOG_CACHE": "off"}),
            ("bounded pool, seen before", "64", {"RUNLOG_CACHE_DIR": str(cache)}),
        )
        for label, conc, extra in configs:
            env["RUNLOG_REMOTE_CONCURRENCY"] = conc
            env.pop("RUNLOG_CACHE", None)
            env.update(extra)
            if "RUNLOG_CACHE_DIR" in extra:
                ib.run_once(summarize, env)
            d_times, s_times = [], []
            for _ in range(reps):
                proc = subprocess.run([sys.executable, "-c", discover], env=env, capture_output=True, text=True)
                if proc.returncode:
                    raise SystemExit(f"remote discovery failed: {proc.stdout[-400:]} {proc.stderr[-800:]}")
                d_times.append(float(proc.stdout.split()[1]))
                s, proc = ib.run_once(summarize, env)
                if proc.returncode:
                    raise SystemExit(f"remote summarize failed: {proc.stderr[-800:]}")
                s_times.append(s)
            out[label] = {"discovery": ib.stats(d_times).median, "summarize": ib.stats(s_times).median}
        return out
    finally:
        for proc in (proxy, server):
            proc.terminate()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scaling", action="store_true", help="Also time the local engine on 1/8..1 of the runs.")
    ap.add_argument("--remote-runs", type=int, default=50, help="Runs uploaded to the local S3 server.")
    ap.add_argument("--skip-remote", action="store_true")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="Delay added to every S3 request (0: none).")
    ap.add_argument("--skip-local", action="store_true", help="Only the remote part.")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)

    root, nbytes = ensure_fleet(args.runs, args.steps, args.rows)
    env = ib.child_env()
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # runlog keeps the probes of unchanged footers between commands (runlog.probe_cache): the timed phases use
    # a cache of their own, emptied first and filled by the warm-up; "no probe cache" is a first command.
    cache = DATA_ROOT / "probe_cache_fleet"
    shutil.rmtree(cache, ignore_errors=True)
    env["RUNLOG_CACHE_DIR"] = str(cache)
    env.pop("RUNLOG_CACHE", None)
    info = ib.machine_info()
    lines: list[str] = []
    if not args.skip_local:
        glob = str(root / "*")
        base = [sys.executable, "-m", "runlog", "summarize", glob, "--by", "run", "--by", "role", "--format", "json"]
        phases = [
            ib.Phase("local", "runlog, local engine", base),
            ib.Phase("cold", "runlog, local, no probe cache", base, env={"RUNLOG_CACHE": "off"}),
            ib.Phase("ray", "runlog, --engine ray (local Ray)", [*base, "--engine", "ray"]),
            ib.Phase("duckdb", "DuckDB, one SQL query", [sys.executable, "-c", DUCKDB_CODE, str(root)]),
        ]
        outputs: dict[str, list[dict]] = {}
        for ph in phases:  # warm-up, and the exactness checks
            _, proc = ib.run_once(ph.argv, {**env, **ph.env})
            if proc.returncode not in (0,):
                raise SystemExit(f"{ph.label} failed (exit {proc.returncode}): {proc.stderr[-1500:]}")
            outputs[ph.key] = json.loads(proc.stdout)
        every = sorted({c for row in outputs["local"] for c, v in row.items() if isinstance(v, (int, float))})
        compare(outputs["local"], outputs["ray"], every, "local vs Ray engine", rel_tol=1e-12)
        compare(outputs["local"], outputs["cold"], every, "with vs without the probe cache", rel_tol=1e-12)
        stats_cols = ["reward_mean", "reward_std", "reward_min", "reward_max", "reward_median", "reward_count"]
        stats_cols += ["kl_mean", "kl_std", "kl_count"]
        compare(outputs["local"], outputs["duckdb"], stats_cols, "runlog vs DuckDB")
        for _ in range(args.reps):
            for ph in phases:
                t, proc = ib.run_once(ph.argv, {**env, **ph.env})
                if proc.returncode:
                    raise SystemExit(f"{ph.label} failed: {proc.stderr[-800:]}")
                ph.times.append(t)
        files = args.runs * args.steps
        lines += [
            f"fleet: {args.runs} runs x {args.steps} steps x {args.rows} rows = {files:,} files, "
            f"{args.runs * args.steps * args.rows:,} samples, {nbytes / 2**20:.0f} MiB; {args.reps} reps, medians",
            "runlog local == runlog ray == no probe cache (1e-12, every column); runlog == DuckDB within 1e-9 on "
            + ", ".join(stats_cols)
            + f" ({len(outputs['local'])} groups)",
        ]
        duck = ib.stats(phases[-1].times).median
        for ph in phases:
            st = ib.stats(ph.times)
            spread = f"(min {st.lo:.2f}, max {st.hi:.2f})"
            lines.append(f"  {ph.label:<36} {st.median:7.2f} s  {spread}  {st.median / duck:5.2f}x DuckDB")
        if args.scaling:
            lines.append("scaling, local engine (1 rep each):")
            runs = sorted(p for p in root.iterdir() if p.is_dir())
            for frac in (8, 4, 2, 1):
                subset = runs[: max(1, len(runs) // frac)]
                listing = DATA_ROOT / "fleet_subset.txt"
                listing.write_text("\n".join(str(p) for p in subset) + "\n")
                argv = [
                    sys.executable,
                    "-m",
                    "runlog",
                    "summarize",
                    "--runs",
                    str(listing),
                    "--by",
                    "run",
                    "--by",
                    "role",
                ]
                t, proc = ib.run_once([*argv, "--format", "json"], env)
                if proc.returncode:
                    raise SystemExit(proc.stderr[-800:])
                lines.append(f"  {len(subset):5d} runs, {len(subset) * args.steps:7,d} files: {t:7.2f} s")
    if not args.skip_remote:
        rem = remote_part(root, args.remote_runs, args.reps, args.latency_ms)
        lines.append(
            f"remote (moto S3 server on loopback, {rem['latency_ms']:.0f} ms added to each request): {rem['runs']} "
            f"runs, {rem['objects']:,} objects (uploaded in {rem['upload_s']:.0f} s)"
        )
        for label in ("one request at a time", "bounded pool (64)", "bounded pool, seen before"):
            r = rem[label]
            lines.append(f"  {label:<26} discovery {r['discovery']:6.2f} s   summarize {r['summarize']:6.2f} s")
    lines.append("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        print("\n```text\n" + text + "\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
