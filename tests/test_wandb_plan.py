"""The pure half of ``runlog upload-wandb``: per-step payloads built from runlog frames, without W&B."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from runlog import open_run
from runlog.analysis.summarize import summarize
from runlog.sinks import plan as P
from runlog.sinks import tables as T

from conftest import SAMPLE_RUNS, make_native_run, native_rows

DEBATE = SAMPLE_RUNS / "debate_grpo"
SRC = str(Path(__file__).resolve().parents[1] / "src")
PY_TYPES = {"int": int, "float": float, "str": str}


@pytest.fixture(scope="module")
def debate_plan() -> P.Plan:
    return P.build_plan(open_run(DEBATE), P.PlanOptions(metrics=False))


@pytest.fixture(scope="module")
def debate_payloads(debate_plan: P.Plan) -> list[P.StepPayload]:
    return list(debate_plan.payloads())


def test_one_payload_per_step_ascending_with_trainer_step(debate_payloads):
    assert [p.step for p in debate_payloads] == list(range(32))
    for p in debate_payloads:
        assert p.values[P.STEP_KEY] == p.step
        assert p.timestamp is not None and p.timestamp > 1.7e9


def test_resume_point_skips_uploaded_steps(debate_plan):
    assert [p.step for p in debate_plan.payloads(after=29)] == [30, 31]
    assert list(debate_plan.payloads(after=31)) == []


def test_run_scalars_keep_their_keys_and_win_over_recomputation(debate_payloads):
    first = json.loads((DEBATE / "scalars.p0.jsonl").read_text().splitlines()[0])
    values = debate_payloads[0].values
    for k in ("train/loss", "grad/global_norm", "debate/reward/solver"):
        assert values[k] == pytest.approx(first[k])
    assert not any(k.endswith("__count") for k in values), "weight companions are hidden, as in summarize"


def test_per_role_aggregates_are_summarize_numbers(debate_payloads):
    run = open_run(DEBATE)
    df = summarize(run, ["split", "step", "role"])
    for r in df.filter(df["step"] == 8).iter_rows(named=True):
        prefix = "" if r["split"] == "train" else f"{r['split']}/"
        values = debate_payloads[8].values
        assert values[f"{prefix}debate/zero_adv_frac/{r['role']}"] == pytest.approx(r["zero_adv_frac"])
        if r["split"] == "eval":  # the train ones are shadowed by the trainer's own debate/* scalars
            assert values[f"eval/debate/reward/{r['role']}"] == pytest.approx(r["reward_mean"])
            assert values[f"eval/debate/kl/{r['role']}"] == pytest.approx(r["kl_mean"])
    assert "debate/component/correctness" in debate_payloads[0].values
    assert debate_payloads[0].values["debate/samples"] == 32
    assert "eval/debate/reward_total" in debate_payloads[8].values
    assert "eval/debate/reward_total" not in debate_payloads[9].values


def test_prefix_is_configurable(tmp_path):
    run = open_run(make_native_run(tmp_path / "r", steps=range(2), n=8))
    values = next(P.build_plan(run, P.PlanOptions(prefix="agents", metrics=False)).payloads()).values
    assert "agents/reward/solver" in values and "agents/kl/verifier" in values
    assert not any(k.startswith("debate/") for k in values)


def test_aliases_resolved_and_reserved_keys_dropped(tmp_path):
    root = make_native_run(tmp_path / "r", steps=range(2), n=4)
    with open(root / "scalars.p0.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 1, "time": 5.0, "grad_global_norm": 2.5, "_private": 1.0}) + "\n")
    scalars, _ = P.step_scalars(open_run(root), P.DEFAULT_ALIASES)
    assert scalars[1]["grad/global_norm"] == 2.5
    assert "grad_global_norm" not in scalars[1] and "_private" not in scalars[1]


def test_histograms_count_every_valid_reward_within_bin_limits(debate_payloads):
    for p in debate_payloads:
        for h in p.hists.values():
            assert len(h.edges) == len(h.counts) + 1
            assert 1 <= len(h.counts) <= 64 <= P.MAX_HIST_BINS
            assert h.edges == sorted(h.edges)
    h = debate_payloads[8].hists
    assert sum(h["debate/reward_hist/solver"].counts) == 32
    assert sum(h["eval/debate/reward_hist/judge"].counts) == 16
    assert len(h["eval/debate/reward_hist/solver"].counts) == 1  # a constant: one bin around it


def test_histogram_bins_capped(tmp_path):
    run = open_run(make_native_run(tmp_path / "r", steps=[0], n=40))
    hist = P.build_plan(run, P.PlanOptions(hist_bins=5, metrics=False)).hists[0]["debate/reward_hist/solver"]
    assert len(hist.counts) == 5 and sum(hist.counts) == 40
    with pytest.raises(Exception, match="512"):
        P.PlanOptions(hist_bins=513).check()


def test_infinite_rewards_are_said_not_binned(tmp_path):
    """+-inf rewards are valid (in the means) but no bin holds them: the histogram counts the finite values
    (an independent count of the written file) and a note says how many were left out, and where first."""
    import polars as pl

    from conftest import write_native_samples

    root = make_native_run(tmp_path / "r", steps=[0], n=4)
    rows = native_rows(1, 6)
    rows[0]["roles"][0]["reward"] = float("inf")
    rows[1]["roles"][0]["reward"] = float("-inf")
    write_native_samples(root / "samples" / "train" / "step_00000001.p0.parquet", rows)
    roles = pl.read_parquet(root / "samples" / "train" / "step_00000001.p0.parquet")["roles"].explode().struct.unnest()
    solver = roles.filter(pl.col("role") == "solver")["reward"]
    finite = int(solver.is_finite().sum())
    plan = P.build_plan(open_run(root), P.PlanOptions(metrics=False))
    assert sum(plan.hists[1]["debate/reward_hist/solver"].counts) == finite == 4
    [note] = [n for n in plan.notes if "infinite" in n]
    assert note.startswith("2 infinite reward(s)") and "(first: step 1, solver)" in note


def test_a_key_the_trainer_logs_is_its_series_alone(tmp_path):
    """The trainer logs debate/reward/solver at steps 0 and 2 but not 1 (its line lost): step 1 had runlog's
    recomputation, a series of two sources under one name. Now it is left empty there, and a note says so."""
    root = make_native_run(tmp_path / "r", steps=range(3), n=4, scalars=False)
    lines = [{"step": s, "time": 1.0 + s, "debate/reward/solver": 0.25 * s} for s in (0, 2)]
    (root / "scalars.p0.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    plan = P.build_plan(open_run(root), P.PlanOptions(metrics=False))
    by_step = {p.step: p.values for p in plan.payloads()}
    assert by_step[0]["debate/reward/solver"] == 0.0 and by_step[2]["debate/reward/solver"] == 0.5
    assert "debate/reward/solver" not in by_step[1]
    assert "debate/reward/verifier" in by_step[1]  # a key the trainer does not log is still computed
    assert plan.unfilled == {"debate/reward/solver": [1]}
    from runlog.sinks.wandb import _plan_notes

    assert any("have no value of the run's own at 1 step(s) (first: step 1" in n for n in _plan_notes(plan))


def test_tables_have_one_type_per_column(debate_payloads):
    tables = [t for p in debate_payloads for t in p.tables.values()]
    assert len(tables) == 36  # 32 train steps + 4 eval steps
    for t in tables:
        assert len(t.rows) == 16
        for j, (col, typ) in enumerate(zip(t.columns, t.types, strict=True)):
            kinds = {type(row[j]) for row in t.rows if row[j] is not None}
            assert kinds <= {PY_TYPES[typ]}, (col, kinds)


def test_table_columns_follow_seed_004(debate_plan):
    cols = debate_plan.columns[0]
    for c in ("step", "sample", "input", "prompt", "full_trajectory", "rewards", "total_reward", "turns"):
        assert c in cols
    assert {"tool_calls", "tool_responses", "component/correctness", "role/judge"} <= set(cols)


def test_table_rows_render_the_conversation_as_plain_text(debate_payloads):
    t = debate_payloads[8].tables["full_trajectories"]
    row = dict(zip(t.columns, t.rows[0], strict=True))
    assert row["step"] == 8 and row["pick"] == "best"
    assert "[assistant · solver]" in row["full_trajectory"] and "[user]" in row["prompt"]
    assert "[assistant" not in row["prompt"]
    assert row["rewards"].startswith("total ")
    assert row["turns"] >= row["tool_responses"]


def test_sampling_is_deterministic_and_picks_best_and_worst():
    ids = [f"s{i}" for i in range(40)]
    rewards = [float(i % 13) for i in range(40)]
    picks = T.pick_samples(ids, rewards, 16, seed=0, key="train:3")
    assert len(picks) == 16 and len({i for i, _ in picks}) == 16
    best = [i for i, p in picks if p == "best"]
    worst = [i for i, p in picks if p == "worst"]
    assert len(best) == len(worst) == 4
    assert sorted((rewards[ids.index(i)] for i in best), reverse=True) == sorted(rewards, reverse=True)[:4]
    assert sorted(rewards[ids.index(i)] for i in worst) == sorted(rewards)[:4]
    order = list(range(40))
    random.Random(1).shuffle(order)
    again = T.pick_samples([ids[i] for i in order], [rewards[i] for i in order], 16, seed=0, key="train:3")
    assert again == picks, "input order must not change the picks"
    assert T.pick_samples(ids, rewards, 16, seed=1, key="train:3") != picks
    assert T.pick_samples(ids[:5], rewards[:5], 16, seed=0, key="x") == [(i, "all") for i in ids[:5]]


def test_nan_and_null_rewards_are_never_best_or_worst():
    ids = ["a", "b", "c", "d", "e", "f"]
    picks = dict(T.pick_samples(ids, [None, math.nan, 1.0, 2.0, 0.5, None], 4, seed=0, key="k"))
    assert picks["d"] == "best" and picks["e"] == "worst"
    assert picks.get("a", "random") == "random" and picks.get("b", "random") == "random"


def test_cells_are_capped_and_tables_fit_their_budget(tmp_path):
    rows = native_rows(0, 4)
    rows[0]["messages"][1]["content"] = "x" * 50_000
    rows[0]["reward"] = 99.0  # the best: always in the table
    from conftest import write_native_samples

    root = make_native_run(tmp_path / "r", steps=[], n=0)
    write_native_samples(root / "samples" / "train" / "step_00000000.p0.parquet", rows)
    plan = P.build_plan(open_run(root), P.PlanOptions(max_cell_chars=1000, metrics=False))
    table = next(plan.payloads()).tables["full_trajectories"]
    traj = table.columns.index("full_trajectory")
    assert all(len(r[traj]) <= 1000 + 40 for r in table.rows)
    assert table.cut_cells >= 1 and "truncated" in table.rows[0][traj]
    budget = table.nbytes() // 2
    small = T.fit_budget(table, budget=budget)
    assert small.nbytes() <= budget and small.dropped_rows >= 1


def test_limits_are_checked():
    with pytest.raises(Exception, match="10000"):
        P.PlanOptions(max_samples_per_step=T.MAX_TABLE_ROWS + 1).check()
    assert T.TABLE_BYTES_BUDGET < T.MAX_LOG_BYTES and T.ROW_BYTES_BUDGET < T.MAX_ROW_BYTES


def test_every_step_stays_far_below_wandb_size_limits(debate_payloads):
    for p in debate_payloads:
        assert p.row_bytes() < T.ROW_BYTES_BUDGET
        assert p.nbytes() < T.MAX_LOG_BYTES


def test_tables_every_and_no_tables(tmp_path):
    run = open_run(make_native_run(tmp_path / "r", steps=range(6), n=4))
    every3 = P.build_plan(run, P.PlanOptions(tables_every=3, metrics=False))
    assert [p.step for p in every3.payloads() if p.tables] == [0, 3]
    none = P.build_plan(run, P.PlanOptions(tables_every=0, metrics=False))
    assert not any(p.tables for p in none.payloads())


def test_run_id_is_stable_and_valid(tmp_path):
    assert P.derive_run_id(open_run(DEBATE)) == "tiny-grpo-jax-seed1234"
    root = make_native_run(tmp_path / "r", steps=range(2), n=4)
    manifest = json.loads((root / "run.json").read_text())
    manifest["run_id"] = "exp 42/a:b"
    (root / "run.json").write_text(json.dumps(manifest))
    rid = P.derive_run_id(open_run(root))
    assert rid.startswith("exp-42-a-b-") and len(rid) <= 64
    (root / "run.json").unlink()
    a, b = P.derive_run_id(open_run(root)), P.derive_run_id(open_run(root))
    assert a == b and a.startswith("runlog-")
    other = make_native_run(tmp_path / "other", steps=range(2), n=4)
    (other / "run.json").unlink()
    assert P.derive_run_id(open_run(other)) != a


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=60)


def test_dry_run_and_import_never_load_wandb(tmp_path):
    code = (
        "import sys\n"
        "import runlog, runlog.sinks, runlog.cli.app\n"
        "assert 'wandb' not in sys.modules, 'import'\n"
        "from runlog.cli.app import app\n"
        f"try:\n    app([{str(DEBATE)!r}, '--project', 'p', '--dry-run', '--state', {str(tmp_path / 's.json')!r}])\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'wandb' not in sys.modules, 'dry-run'\n"
    ).replace("app([", "app(['upload-wandb', ")
    res = _python(code)
    assert res.returncode == 0, res.stderr
    assert "would log 32 of 32 step(s)" in res.stdout
    assert not (tmp_path / "s.json").exists(), "a dry run writes no state"


def test_missing_wandb_says_how_to_install(tmp_path):
    code = (
        "import sys\nsys.modules['wandb'] = None\n"
        "from runlog.cli.app import app\n"
        f"app(['upload-wandb', {str(DEBATE)!r}, '--project', 'p', '--mode', 'offline', "
        f"'--state', {str(tmp_path / 's.json')!r}])\n"
    )
    res = _python(code)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "Error: uploading to W&B needs the wandb package: in runlog's folder, pip install -e '.[wandb]'"
    ]


def test_online_without_credentials_fails_fast_with_one_line(tmp_path):
    env = {"HOME": str(tmp_path), "NETRC": str(tmp_path / "netrc"), "WANDB_MODE": "online", "WANDB_API_KEY": ""}
    env.update(WANDB_CONFIG_DIR=str(tmp_path / "cfg"), WANDB_DIR=str(tmp_path / "wb"), WANDB_SILENT="true")
    code = (
        "from runlog.cli.app import app\n"
        f"app(['upload-wandb', {str(DEBATE)!r}, '--project', 'p', '--state', {str(tmp_path / 's.json')!r}])\n"
    )
    res = _python(code, **env)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: no W&B credentials") and "wandb login" in lines[0]
    assert not (tmp_path / "wb").exists(), "nothing started"


def test_a_run_without_group_ids_logs_its_zero_advantage_fraction():
    """Flink writes no group id: the plan's zero_adv_frac per role comes from the prompt groups, the numbers
    summarize --prompt-groups (and the report) give."""
    import polars as pl

    from conftest import SAMPLE_RUNS

    run = open_run(SAMPLE_RUNS / "flink_mixed")
    plan = P.build_plan(run)
    want = summarize(run, ["split", "step", "role"], prompt_groups=True).filter(pl.col("split") == "train")
    checked = 0
    for row in want.iter_rows(named=True):
        if row["role"] is None or row["zero_adv_frac"] is None:
            continue
        got = plan.computed[row["step"]][f"debate/zero_adv_frac/{row['role']}"]
        assert got == pytest.approx(row["zero_adv_frac"], abs=1e-12)
        checked += 1
    assert checked >= 30


def _answer_rows(step: int, n: int, ids: list[str], rewards: list[float], split: str = "train") -> list[dict]:
    rows = native_rows(step, n, split=split, roles=("solver",))
    for r, sid, rw in zip(rows, ids, rewards, strict=True):
        r["sample_id"], r["reward"] = sid, rw
        r["roles"] = [{"role": "solver", "reward": rw, "kl": 0.0}]
        r["messages"][1]["content"] = f"answer {rw!r}"
    return rows


def test_recurring_sample_ids_show_each_sample_exactly_once(tmp_path):
    """Ids that recur at every step (a dataset index) and within a step (GRPO: the prompt's id for every sample
    of its group): every step gets its own rows, and each picked row is exactly that sample (its reward, its
    text), so the best and worst are the true best and worst and no row repeats."""
    from conftest import native_run_of

    rows, n = [], 20
    for step in range(3):
        rewards = [round(step + 0.05 * i, 2) for i in range(n)]
        rows += _answer_rows(step, n, [f"q{i // 4}" for i in range(n)], rewards)
    plan = P.build_plan(open_run(native_run_of(tmp_path / "r", rows)), P.PlanOptions(metrics=False))
    payloads = list(plan.payloads())
    assert [p.step for p in payloads] == [0, 1, 2]
    for p in payloads:
        t = p.tables["full_trajectories"]
        got = [dict(zip(t.columns, r, strict=True)) for r in t.rows]
        assert len(got) == 16 and {g["step"] for g in got} == {p.step}
        assert len({g["full_trajectory"] for g in got}) == 16, "no sample shown twice"
        for g in got:
            assert f"answer {g['total_reward']!r}" in g["full_trajectory"], "a row is its own sample"
            assert g["sample"] == f"q{round((g['total_reward'] - p.step) / 0.05) // 4}"
        truth = sorted(round(p.step + 0.05 * i, 2) for i in range(n))
        assert sorted(g["total_reward"] for g in got if g["pick"] == "best") == truth[-4:]
        assert sorted(g["total_reward"] for g in got if g["pick"] == "worst") == truth[:4]


def test_histogram_counts_are_numpy_histogram_of_the_edges_sent(tmp_path):
    """Counts equal ``numpy.histogram(values, bins=edges)`` with the very edges sent, values on an edge
    included (each bin is half-open, the last one closed: the maximum is in the last bin)."""
    np = pytest.importorskip("numpy")
    from conftest import native_run_of

    rng = random.Random(3)
    lo, hi, nb = 0.1, 0.7, 64
    edges = [lo + (hi - lo) * i / nb for i in range(nb + 1)]  # the values that sit exactly on the edges
    values = edges + [rng.uniform(lo, hi) for _ in range(200)] + [hi] * 3 + [lo] * 2
    rows = _answer_rows(0, len(values), [f"s{i}" for i in range(len(values))], values)
    for bins in (nb, 7, 512):
        plan = P.build_plan(
            open_run(native_run_of(tmp_path / f"r{bins}", rows)), P.PlanOptions(hist_bins=bins, metrics=False)
        )
        h = plan.hists[0]["debate/reward_hist/solver"]
        assert len(h.counts) == min(bins, len(values)) and h.edges[0] == lo and h.edges[-1] == hi
        counts, _ = np.histogram(np.array(values), bins=np.array(h.edges))
        assert h.counts == counts.tolist()
        assert sum(h.counts) == len(values) and h.counts[-1] >= values.count(hi)


def test_split_tables_share_the_byte_budget_fairly(tmp_path, monkeypatch):
    """Train and eval at one step over the shared budget: random picks of every split are dropped before any
    best or worst pick, so neither table is emptied while the other keeps random rows."""
    from conftest import native_run_of

    rows = []
    for split in ("train", "eval"):
        rws = [float(i) for i in range(40)]
        part = _answer_rows(0, 40, [f"{split}-{i}" for i in range(40)], rws, split=split)
        for r in part:
            r["messages"][1]["content"] += " " + "x" * 2000
        rows += part
    run = open_run(native_run_of(tmp_path / "r", rows))
    full = next(P.build_plan(run, P.PlanOptions(max_samples_per_step=16, metrics=False)).payloads()).tables
    one = full["full_trajectories"].nbytes()
    monkeypatch.setattr(T, "TABLE_BYTES_BUDGET", one)  # room for about half of the two tables
    plan = P.build_plan(run, P.PlanOptions(max_samples_per_step=16, metrics=False))
    tables = next(plan.payloads()).tables
    train, ev = tables["full_trajectories"], tables["eval/full_trajectories"]
    assert train.nbytes() + ev.nbytes() <= one
    for t in (train, ev):
        picks = [r[t.columns.index("pick")] for r in t.rows]
        assert picks.count("best") == 4 and picks.count("worst") == 4, picks
        assert t.dropped_rows >= 4
    assert abs(len(train.rows) - len(ev.rows)) <= 1
    assert any("step 0 train" in n for n in plan.notes) and any("step 0 eval" in n for n in plan.notes)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"format":"runlog-wandb-state","version":1,"destinations":[]}', "destinations is a list"),
        ('{"format":"runlog-wandb-state","version":"x","destinations":{}}', "version 'x'"),
        (
            '{"format":"runlog-wandb-state","version":1,"destinations":{"d":{"run_id":"r","project":"p",'
            '"entity":null,"mode":"offline","last_step":"7"}}}',
            "last_step is '7'",
        ),  # fmt: skip
        (
            '{"format":"runlog-wandb-state","version":1,"destinations":{"d":{"run_id":"r","project":"p",'
            '"entity":null,"mode":"offline","last_step":3,"fingerprint":{"a.jsonl":[1]}}}}',
            "fingerprint of 'a.jsonl'",
        ),  # fmt: skip
        (  # a missing field: read as absent, the entry would send every step again
            '{"format":"runlog-wandb-state","version":1,"destinations":{"d":{"run_id":"r","project":"p",'
            '"entity":null,"last_step":9,"complete":true}}}',
            "'d' has no mode",
        ),  # fmt: skip
        (
            '{"format":"runlog-wandb-state","version":1,"destinations":{"d":{"run_id":"r","project":"p",'
            '"entity":null,"mode":"offline"}}}',
            "'d' has no last_step",
        ),  # fmt: skip
        ('{"format":"runlog-wandb-state","version":1,"destinations":{"d":[1]}}', "'d' is a list"),
    ],
)
def test_a_wrongly_shaped_state_file_is_a_usage_error(tmp_path, text, says):
    from runlog.errors import UsageError
    from runlog.sinks import state as S

    path = tmp_path / "f.json"
    path.write_text(text)
    with pytest.raises(UsageError, match=str(path)) as exc:
        S.StateFile(path).get("d")
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_a_wrongly_shaped_state_file_exits_2_with_one_line(tmp_path):
    run = make_native_run(tmp_path / "r", steps=[0], n=4)
    state = tmp_path / "f.json"
    state.write_text('{"format":"runlog-wandb-state","version":1,"destinations":[]}')
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "runlog",
            "upload-wandb",
            str(run),
            "--project",
            "p",
            "--mode",
            "offline",
            "--wandb-dir",
            str(tmp_path / "wb"),
            "--state",
            str(state),
            "--dry-run",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and str(state) in res.stderr and "Traceback" not in res.stderr


def test_lines_appended_for_uploaded_steps_are_reported(tmp_path):
    """A lagging shard appends lines for steps already uploaded: W&B keeps a step's first row, so they are not
    sent, and a note names the file and the steps; lines for new steps are no news."""
    from runlog.sinks import state as S

    root = make_native_run(tmp_path / "r", steps=range(6), n=4)
    shard = root / "scalars.p1.jsonl"
    shard.write_text("".join(json.dumps({"step": s, "train/loss": 2.0}) + "\n" for s in range(3)))
    old = S.fingerprint(open_run(root))
    with open(shard, "a") as fh:
        fh.write("".join(json.dumps({"step": s, "train/loss": 2.0}) + "\n" for s in (3, 4, 5, 6, 7)))
    notes = S.changed_history(open_run(root), old, last_step=5)
    assert len(notes) == 1 and "scalars.p1.jsonl" in notes[0] and "step(s) 3, 4, 5 " in notes[0], notes
    assert S.changed_history(open_run(root), S.fingerprint(open_run(root)), last_step=7) == []


def test_rows_appended_to_a_csv_step_already_uploaded_are_reported(tmp_path):
    """A Flink CSV step file that grows after its step was uploaded (rows appended: its head unchanged) is
    said, as lines appended to a scalar shard are; a CSV of a step not uploaded yet is no news."""
    from runlog.sinks import state as S

    logs = tmp_path / "r" / "flink_logs"
    logs.mkdir(parents=True)
    header = "env_name,reward,unique_sample_id,schema_version\n"
    for step in (0, 1, 2):
        (logs / f"batch_debug_data_train_{step}.csv").write_text(
            header + "".join(f"math,{i / 4},s{step}-{i},1\n" for i in range(4))
        )
    old = S.fingerprint(open_run(tmp_path / "r"))
    for step in (1, 2):
        with open(logs / f"batch_debug_data_train_{step}.csv", "a") as fh:
            fh.write(f"math,0.5,s{step}-9,1\n")
    notes = S.changed_history(open_run(tmp_path / "r"), old, last_step=1)
    assert len(notes) == 1, notes
    assert "batch_debug_data_train_1.csv" in notes[0] and "rows appended since step 1 was uploaded" in notes[0]
