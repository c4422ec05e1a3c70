#!/usr/bin/env python
"""Write the small, deterministic example runs in ``sample_runs/`` that docs, tests and demos point at.

Why a generator instead of checked-in data only: the runs must follow the on-disk contracts exactly (native
runlog v2, Flink debug data v0/v1 with its CSV fallback, JaxARC ``batch_metrics.jsonl``) and must be easy to
rebuild when a contract changes. Everything is seeded and every timestamp is fixed (no wall clock), so running
the script twice gives byte-identical JSON/JSONL and identical Parquet files; a reviewer can regenerate the
data and ``git diff`` shows nothing.

Runs written (each folder is removed and recreated; nothing else under ``--out`` is touched):

* ``debate_grpo/``  native layout, written by the real example trainer (``examples/tiny_grpo_jax.py``,
                    JAX + ``RunWriter`` + ``StatsTracker``): 3 roles, 32 steps on 2 processes, eval every 8.
* ``flink_mixed/``  Flink ``flink_logs/`` with v0 and v1 files, a CSV fallback and a suffixed file name.
* ``jaxarc/``       a JaxARC ``batch_metrics.jsonl`` (50 records, every 10 steps).
* ``damaged/``      a small native run broken on purpose (truncated Parquet, bad JSONL lines, a newer schema
                    version, a missing step, a stray file) to exercise the readers' problem reporting.

Usage: ``python scripts/make_sample_runs.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import json
import math
import random
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_FOLDERS = ("debate_grpo", "flink_mixed", "jaxarc", "damaged")
ROLES = ("solver", "verifier", "judge")
WRITER = {"name": "runlog", "version": "0.1.0"}
# 2026-02-04T12:00:00Z: every timestamp in the sample runs is an offset from this instant, never "now".
T0 = 1770206400.0
T0_ISO = "2026-02-04T12:00:00Z"

Row = dict[str, Any]


def native_schema() -> pa.Schema:
    """``runlog.schema.NATIVE_SAMPLE_SCHEMA``, importable whether or not runlog is installed.

    The script must use the executable schema definition (not a copy) so the sample data cannot drift from it;
    when run from a checkout without ``pip install -e .`` the ``src/`` folder is put on the path first.
    """
    try:
        mod = importlib.import_module("runlog.schema")
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT / "src"))
        mod = importlib.import_module("runlog.schema")
    schema: pa.Schema = mod.NATIVE_SAMPLE_SCHEMA
    return schema


# ---------------------------------------------------------------------------------------------------------
# Tasks: small templates so that conversations read like real debate rollouts and answers are checkable.
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One prompt of a GRPO group: the question, the ground truth, the tool a solver would reach for."""

    env_name: str
    question: str
    answer: str
    tool: str
    tool_args: dict[str, str]
    tool_result: str
    wrong_answers: tuple[str, ...]
    difficulty: float


TRIVIA: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("What is the capital of Australia?", "Canberra", ("Sydney", "Melbourne")),
    ("What is the chemical symbol for gold?", "Au", ("Ag", "Gd")),
    ("How many bones are in the adult human body?", "206", ("212", "201")),
    ("Which planet has the shortest year?", "Mercury", ("Venus", "Mars")),
    ("Who wrote 'The Origin of Species'?", "Charles Darwin", ("Alfred Russel Wallace", "Gregor Mendel")),
    ("What is the largest ocean on Earth?", "Pacific Ocean", ("Atlantic Ocean", "Indian Ocean")),
    ("In which year did the Berlin Wall fall?", "1989", ("1991", "1987")),
    ("What is the smallest prime number greater than 100?", "101", ("103", "107")),
    ("Which element has atomic number 26?", "Iron", ("Cobalt", "Nickel")),
    ("What is the longest river in South America?", "Amazon", ("Parana", "Orinoco")),
    ("How many sides does a dodecagon have?", "12", ("10", "20")),
    ("What is the boiling point of water at sea level in Kelvin?", "373.15", ("373", "273.15")),
    ("Which language has the most native speakers?", "Mandarin Chinese", ("Spanish", "English")),
    ("What is the hardest natural mineral?", "Diamond", ("Corundum", "Quartz")),
    ("Who painted 'The Night Watch'?", "Rembrandt", ("Vermeer", "Frans Hals")),
    ("What is the square root of 1764?", "42", ("44", "41")),
)


def make_task(rng: random.Random) -> Task:
    """A random arithmetic (python tool) or trivia (search tool) task with plausible wrong answers."""
    kind = rng.choice(("mul_add", "sum", "percent", "mod", "rate", "trivia", "trivia"))
    difficulty = round(rng.uniform(-0.2, 0.2), 3)
    if kind == "trivia":
        q, a, wrong = rng.choice(TRIVIA)
        topic = q.rstrip("?")
        snippet = f"[1] Encyclopedia: {a}. ... [2] Quiz archive, '{topic}': {a}."
        return Task("debate_trivia", q, a, "search", {"query": q.rstrip("?")}, snippet, wrong, difficulty)
    if kind == "mul_add":
        a, b, c = rng.randint(12, 99), rng.randint(12, 99), rng.randint(1, 500)
        q, val, code = f"Compute {a} * {b} + {c}.", a * b + c, f"print({a} * {b} + {c})"
    elif kind == "sum":
        xs = [rng.randint(-50, 200) for _ in range(rng.randint(5, 9))]
        q, val, code = f"What is the sum of {xs}?", sum(xs), f"print(sum({xs}))"
    elif kind == "percent":
        p, n = rng.choice((5, 10, 15, 20, 25, 40, 75)), 20 * rng.randint(3, 60)
        q, val, code = f"What is {p}% of {n}?", p * n // 100, f"print({p} * {n} // 100)"
    elif kind == "mod":
        a, b = rng.randint(1000, 99999), rng.randint(7, 97)
        q, val, code = f"What is the remainder when {a} is divided by {b}?", a % b, f"print({a} % {b})"
    else:
        v, h = rng.randint(40, 180), rng.randint(2, 9)
        q = f"A train travels at {v} km/h for {h} hours. How many kilometres does it cover?"
        val, code = v * h, f"print({v} * {h})"
    wrong = (str(val + rng.choice((-10, -1, 1, 2, 10))), str(val * 10), str(val - rng.randint(3, 30)))
    return Task("debate_arith", q, str(val), "python", {"code": code}, str(val), wrong, difficulty)


SYSTEM_PROMPT = (
    "You are taking part in a three-agent debate. The solver answers the task, using tools when useful, "
    "and writes its reasoning inside <think></think> and its final answer inside <answer></answer>. "
    "The verifier checks the solver's work. The judge reads both and gives a verdict: ACCEPT or REJECT."
)

TRACEBACKS = (
    'Traceback (most recent call last):\n  File "/app/debate/env.py", line 212, in step\n'
    "    result = self.sandbox.run(call.arguments['code'], timeout=5.0)\n"
    '  File "/app/tools/sandbox.py", line 88, in run\n'
    '    raise TimeoutError(f"python tool exceeded {timeout}s")\n'
    "TimeoutError: python tool exceeded 5.0s",
    'Traceback (most recent call last):\n  File "/app/debate/env.py", line 198, in parse_tool_call\n'
    "    args = json.loads(raw_arguments)\n"
    '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
    "    return _default_decoder.decode(s)\n"
    "json.decoder.JSONDecodeError: Unterminated string starting at: line 1 column 10 (char 9)",
    'Traceback (most recent call last):\n  File "/app/debate/rollout.py", line 77, in generate\n'
    "    out = self.engine.generate(prompt_ids, max_new_tokens=remaining)\n"
    '  File "/app/inference/engine.py", line 301, in generate\n'
    "    raise ContextLengthExceeded(len(prompt_ids), self.max_len)\n"
    "inference.errors.ContextLengthExceeded: prompt of 8214 tokens exceeds the context of 8192",
)


def msg(
    role: str,
    content: str | None,
    name: str | None = None,
    reasoning: str | None = None,
    tool_calls: list[dict[str, str]] | None = None,
    tool_call_id: str | None = None,
) -> dict[str, Any]:
    """One chat message with every field of ``runlog.schema.ARROW_MESSAGE`` present (None when unused)."""
    return {
        "role": role,
        "name": name,
        "content": content,
        "reasoning": reasoning,
        "tool_calls": tool_calls,
        "tool_call_id": tool_call_id,
    }


def render(messages: Sequence[dict[str, Any]]) -> str:
    """Plain-text transcript, the way rollout workers log a trajectory for humans."""
    parts: list[str] = []
    for m in messages:
        head = f"<|{m['role']}"
        if m["name"]:
            head += f" name={m['name']}"
        if m["tool_call_id"]:
            head += f" id={m['tool_call_id']}"
        parts.append(head + "|>")
        if m["content"]:
            parts.append(m["content"])
        for tc in m["tool_calls"] or ():
            parts.append(f"[tool_call {tc['id']} {tc['name']} {tc['arguments']}]")
    return "\n".join(parts) + "\n"


def clamp01(x: float) -> float:
    return min(1.0, max(0.0, x))


@dataclass
class Outcome:
    """What happened in one rollout; both the native and the Flink writers render rows from it."""

    messages: list[dict[str, Any]]
    completion: str | None
    reward: float | None
    components: dict[str, float] | None
    role_rewards: dict[str, float | None]
    role_kls: dict[str, float | None]
    exception: str | None
    extracted: str | None


def rollout(
    task: Task,
    sample_id: str,
    t: float,
    rng: random.Random,
    forced: str | None = None,
    exception: str | None = None,
    nan_reward: bool = False,
) -> Outcome:
    """Simulate one debate episode at training progress ``t`` in [0, 1].

    Skill rises with ``t`` and differs per role (the solver learns fastest, the verifier slowest), so the
    per-role reward curves trend upward at different rates. KL to the reference rises with ``t`` too, fastest
    for the solver. ``forced`` ("all_correct"/"all_wrong") makes every sample of a group score the same, the
    zero-advantage case GRPO analyses must detect.
    """
    user = msg("user", task.question)
    system = msg("system", SYSTEM_PROMPT)
    kls: dict[str, float | None] = {
        "solver": round(0.002 + 0.060 * t * t + 0.004 * t + abs(rng.gauss(0, 0.002)), 6),
        "verifier": round(0.001 + 0.012 * t + abs(rng.gauss(0, 0.001)), 6),
        "judge": round(0.001 + 0.008 * t + abs(rng.gauss(0, 0.001)), 6),
    }
    if exception is not None:
        partial = msg(
            "assistant",
            f"<think>Let me work this out step by step. {task.question}</think>",
            name="solver",
            reasoning=f"Let me work this out step by step. {task.question}",
        )
        return Outcome([system, user, partial], None, None, None, dict.fromkeys(ROLES), kls, exception, None)

    p_correct = clamp01(0.25 + 0.60 * t - task.difficulty)
    if forced == "all_correct":
        correct, fmt, used_tool = True, 1.0, True
    elif forced == "all_wrong":
        correct, fmt, used_tool = False, 1.0, True
    else:
        correct = rng.random() < p_correct
        r = rng.random()
        fmt = 1.0 if r < 0.70 + 0.28 * t else (0.5 if r < 0.93 + 0.05 * t else 0.0)
        used_tool = rng.random() < 0.50 + 0.45 * t
        if fmt == 0.0:
            correct = False  # no <answer> tag: nothing to grade
    answer = task.answer if correct else rng.choice(task.wrong_answers)

    messages = [system, user]
    think1 = f"I need to answer: {task.question} I'll use the {task.tool} tool to be sure."
    if used_tool:
        call_id = f"call_{sample_id}_0"
        args = json.dumps(task.tool_args)
        messages.append(
            msg(
                "assistant",
                f"<think>{think1}</think>",
                name="solver",
                reasoning=think1,
                tool_calls=[{"id": call_id, "name": task.tool, "arguments": args}],
            )
        )
        result = task.tool_result
        messages.append(msg("tool", result, name=task.tool, tool_call_id=call_id))
        if correct:
            think2 = f"The {task.tool} tool returned {result!r}. So the answer is {answer}."
        else:  # the classic failure: a correct tool result, then a wrong transcription or override
            think2 = f"The {task.tool} tool returned {result!r}, but re-checking by hand I get {answer}."
    else:
        think2 = f"{task.question} Working it out in my head, I get {answer}."
    if fmt == 1.0:
        final = f"<think>{think2}</think><answer>{answer}</answer>"
    elif fmt == 0.5:
        final = f"{think2}\n<answer>{answer}</answer>"
    else:
        final = f"{think2} The answer is {answer}."
    messages.append(msg("assistant", final, name="solver", reasoning=think2 if fmt == 1.0 else None))

    verifier_right = rng.random() < 0.55 + 0.30 * t
    says_ok = correct if verifier_right else not correct
    v_text = (
        f"<think>Re-checking the solver's answer {answer} against the task.</think>"
        f"I re-derived the result independently. The solver's answer {answer} is "
        f"{'consistent' if says_ok else 'not consistent'} with my check. "
        f"VERIFY: {'PASS' if says_ok else 'FAIL'}"
    )
    messages.append(msg("assistant", v_text, name="verifier"))
    judge_right = rng.random() < 0.60 + 0.30 * t
    accept = correct if judge_right else not correct
    j_text = (
        f"Verdict: {'ACCEPT' if accept else 'REJECT'}\nReason: the verifier "
        f"{'confirmed' if says_ok else 'disputed'} the answer {answer}; "
        f"{'I agree with' if accept == says_ok else 'I overrule'} the verifier."
    )
    messages.append(msg("assistant", j_text, name="judge"))

    components = {
        "correctness": 1.0 if correct else 0.0,
        "format": fmt,
        "tool_use": 1.0 if used_tool else 0.0,
    }
    reward = round(0.7 * components["correctness"] + 0.2 * fmt + 0.1 * components["tool_use"], 6)
    role_rewards: dict[str, float | None] = {"solver": reward}
    if forced:
        role_rewards["verifier"] = 1.0 if verifier_right else 0.0
        role_rewards["judge"] = 1.0 if judge_right else 0.0
    else:
        role_rewards["verifier"] = round(0.9 * verifier_right + 0.1 * rng.random(), 6)
        role_rewards["judge"] = round(0.9 * judge_right + 0.1 * rng.random(), 6)
    if nan_reward:
        reward = math.nan
        components["correctness"] = math.nan
        role_rewards["solver"] = math.nan
    return Outcome(messages, answer, reward, components, role_rewards, kls, None, answer if fmt else None)


# ---------------------------------------------------------------------------------------------------------
# Native runlog v2
# ---------------------------------------------------------------------------------------------------------
@dataclass
class NativeSpec:
    """Shape of a native sample run; the damaged run is a smaller instance of the same generator."""

    run_id: str
    name: str
    seed: str
    steps: int
    prompts: int
    group_size: int
    processes: int
    eval_every: int | None
    eval_prompts: int = 8
    eval_group_size: int = 2
    exceptions: frozenset[tuple[int, int, int]] = frozenset()
    nan_rewards: frozenset[tuple[int, int, int]] = frozenset()
    config: dict[str, Any] = field(default_factory=dict)


def native_rows(spec: NativeSpec, split: str, step: int) -> list[Row]:
    """All rows of one (split, step), in sample_id order, before they are divided among processes."""
    t = step / max(1, spec.steps - 1)
    is_eval = split != "train"
    n_prompts = spec.eval_prompts if is_eval else spec.prompts
    size = spec.eval_group_size if is_eval else spec.group_size
    letter = "e" if is_eval else "p"
    rows: list[Row] = []
    for p in range(n_prompts):
        grng = random.Random(f"{spec.seed}/{split}/{step}/{p}")
        task = make_task(grng)
        forced = None
        if not is_eval and grng.random() < 0.18:
            forced = "all_correct" if grng.random() < 0.3 + 0.6 * t else "all_wrong"
        group_id = f"s{step}-{letter}{p}"
        for k in range(size):
            sample_id = f"{group_id}-{k}"
            srng = random.Random(f"{spec.seed}/{split}/{step}/{p}/{k}")
            key = (step, p, k)
            exc = None
            if not is_eval and key in spec.exceptions:
                exc = TRACEBACKS[(step + p + k) % len(TRACEBACKS)]
            out = rollout(task, sample_id, t, srng, forced, exc, nan_reward=not is_eval and key in spec.nan_rewards)
            rows.append(
                {
                    "schema_version": 2,
                    "step": step,
                    "split": split,
                    "sample_id": sample_id,
                    "group_id": group_id,
                    "env_name": task.env_name,
                    "reward": out.reward,
                    "reward_components": None
                    if out.components is None
                    else [{"name": n, "value": v} for n, v in out.components.items()],
                    "roles": [{"role": r, "reward": out.role_rewards[r], "kl": out.role_kls[r]} for r in ROLES],
                    "messages": out.messages,
                    "prompt": task.question,
                    "completion": out.completion,
                    "trajectory": render(out.messages),
                    "exception": out.exception,
                    "num_turns": sum(1 for m in out.messages if m["role"] == "assistant"),
                }
            )
    return rows


def native_table(rows: list[Row], version: int = 2, extra: dict[str, pa.DataType] | None = None) -> pa.Table:
    """Rows to an Arrow table of the native schema plus free extra columns, tagged with the version."""
    fields = list(native_schema()) + [pa.field("num_turns", pa.int32())]
    for name, typ in (extra or {}).items():
        fields.append(pa.field(name, typ))
    schema = pa.schema(fields, metadata={"runlog.schema_version": str(version)})
    return pa.Table.from_pylist(rows, schema=schema)


def write_parquet(table: pa.Table, path: Path) -> None:
    """The writer settings of the contract: zstd, statistics on (readers prune steps by min/max)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", write_statistics=True)


def finite(xs: Sequence[float | None]) -> list[float]:
    return [x for x in xs if x is not None and not math.isnan(x)]


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def std(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def r6(x: float) -> float:
    return round(x, 6)


def step_scalars(spec: NativeSpec, step: int, rows: list[Row], elapsed: float, rng: random.Random) -> Row:
    """The trainer's per-step metrics, computed from the same rows that were written to Parquet.

    Computing them from the rows (instead of drawing them separately) keeps the two sources consistent, so a
    test can check that what runlog recomputes from samples matches what the trainer logged.
    """
    t = step / max(1, spec.steps - 1)
    rewards = finite([r["reward"] for r in rows])
    rec: Row = {"step": step, "time": r6(T0 + elapsed)}
    lr = 1e-6 * min(1.0, (step + 1) / 4) * (0.5 + 0.5 * math.cos(math.pi * t))
    rec["train/loss"] = r6(0.02 * rng.gauss(0, 1) - 0.01 * t)
    rec["train/lr"] = float(f"{lr:.6g}")
    rec["train/reward_mean"] = r6(mean(rewards))
    rec["train/reward_mean__count"] = len(rewards)
    rec["train/reward_std"] = r6(std(rewards))
    groups: dict[str, list[float]] = {}
    for r in rows:
        if r["exception"] is None and r["reward"] is not None and not math.isnan(r["reward"]):
            groups.setdefault(r["group_id"], []).append(r["reward"])
    zero = sum(1 for g in groups.values() if len(g) > 1 and max(g) == min(g))
    rec["debate/zero_adv_frac"] = r6(zero / len(groups)) if groups else 0.0
    rec["debate/zero_adv_frac__count"] = len(groups)
    all_kl: list[float] = []
    for role in ROLES:
        vals = finite([x["reward"] for r in rows for x in (r["roles"] or ()) if x["role"] == role])
        kls = finite([x["kl"] for r in rows for x in (r["roles"] or ()) if x["role"] == role])
        all_kl += kls
        rec[f"debate/reward/{role}"] = r6(mean(vals))
        rec[f"debate/kl/{role}"] = r6(mean(kls))
    rec["train/kl"] = r6(mean(all_kl))
    rec["train/exceptions"] = sum(1 for r in rows if r["exception"] is not None)
    rec["grad/global_norm"] = r6(abs(0.8 + 0.6 * math.exp(-3 * t) + 0.15 * rng.gauss(0, 1)))
    rec["update/global_norm"] = r6(rec["grad/global_norm"] * lr * 1e3)
    return rec


def write_native(spec: NativeSpec, root: Path) -> dict[tuple[str, int], list[Path]]:
    """Write run.json, the per-(split, step, process) Parquet shards and scalars.p0.jsonl.

    Train rows are divided among processes by whole prompt groups, as a data-parallel rollout does, so that
    a reader has to merge shards to see a full step. Returns the files written per (split, step).
    """
    root.mkdir(parents=True)
    manifest = {
        "format": "runlog",
        "schema_version": 2,
        "run_id": spec.run_id,
        "name": spec.name,
        "created": T0_ISO,
        "config": spec.config,
        "roles": list(ROLES),
        "writer": WRITER,
    }
    (root / "run.json").write_text(json.dumps(manifest, indent=2) + "\n")
    written: dict[tuple[str, int], list[Path]] = {}
    srng = random.Random(f"{spec.seed}/scalars")
    elapsed = 0.0
    lines: list[str] = []
    for step in range(spec.steps):
        rows = native_rows(spec, "train", step)
        per_proc = len(rows) // spec.processes
        paths = []
        for proc in range(spec.processes):
            chunk = rows[proc * per_proc : (proc + 1) * per_proc]
            path = root / "samples" / "train" / f"step_{step:08d}.p{proc}.parquet"
            write_parquet(native_table(chunk), path)
            paths.append(path)
        written[("train", step)] = paths
        step_s = 41.0 + 6.0 * step / spec.steps + srng.uniform(-2.5, 2.5)
        elapsed += step_s
        rec = step_scalars(spec, step, rows, elapsed, srng)
        rec["time/step_s"] = r6(step_s)
        if spec.eval_every and step % spec.eval_every == 0:
            erows = native_rows(spec, "eval", step)
            path = root / "samples" / "eval" / f"step_{step:08d}.p0.parquet"
            write_parquet(native_table(erows), path)
            written[("eval", step)] = [path]
            ev = finite([r["reward"] for r in erows])
            rec["eval/reward_mean"] = r6(mean(ev))
            rec["eval/reward_mean__count"] = len(ev)
        lines.append(json.dumps(rec))
    (root / "scalars.p0.jsonl").write_text("\n".join(lines) + "\n")
    return written


# The damaged run's config (it was the synthetic debate run's config before that run came from the example).
DEBATE_CONFIG: dict[str, Any] = {
    "algorithm": "grpo",
    "model": "Qwen2.5-1.5B-Instruct",
    "group_size": 8,
    "prompts_per_step": 4,
    "learning_rate": 1e-6,
    "kl_coef": 0.02,
    "max_turns": 6,
    "tools": ["python", "search"],
    "reward": {"correctness": 0.7, "format": 0.2, "tool_use": 0.1},
    "data_parallel": 2,
    "eval_every": 8,
    "seed": 1234,
}


def make_debate_grpo(root: Path) -> None:
    """Run the real example trainer (examples/tiny_grpo_jax.py: JAX, RunWriter, StatsTracker) on a fixed seed
    with its simulated clock, so that the sample data comes from the real writer and reruns are identical.
    Needs JAX (pip install -e '.[jax]' in the repository); the other three runs do not."""
    spec = importlib.util.spec_from_file_location("tiny_grpo_jax", REPO_ROOT / "examples" / "tiny_grpo_jax.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["--out", str(root), "--steps", "32", "--seed", "1234", "--deterministic"])


def make_damaged(root: Path) -> None:
    """A small native run, then broken in the ways a crashed or half-synced run directory is broken.

    Damage (each one something ``runlog inspect`` must report while still reading the good data):
    step 1 Parquet truncated to half its bytes; step 3 missing (gap); step 4 written with schema version 3;
    ``scalars.p0.jsonl`` line 3 (step 2) invalid JSON and the last line (step 5) cut off with no newline;
    a stray ``notes.txt``.
    """
    config = dict(DEBATE_CONFIG, group_size=4, prompts_per_step=2, data_parallel=1, eval_every=None)
    spec = NativeSpec(
        run_id="damaged-20260204-d1",
        name="damaged",
        seed="damaged-v1",
        steps=6,
        prompts=2,
        group_size=4,
        processes=1,
        eval_every=None,
        exceptions=frozenset({(2, 1, 3)}),
        config=config,
    )
    written = write_native(spec, root)
    # Truncated: a copy interrupted half-way.
    trunc = written[("train", 1)][0]
    data = trunc.read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    # Gap: the step-3 shard never arrived.
    written[("train", 3)][0].unlink()
    # Newer schema: a file from a future runlog (column and metadata say 3, plus a column v2 lacks).
    rows = native_rows(spec, "train", 4)
    for r in rows:
        r["schema_version"] = 3
        r["policy_version"] = 4
    newer = native_table(rows, version=3, extra={"policy_version": pa.int64()})
    write_parquet(newer, written[("train", 4)][0])
    # Scalars: a corrupt middle line and a torn final line.
    scalars = root / "scalars.p0.jsonl"
    lines = scalars.read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 3] + '"train/rew@@\x7f NaN, }'
    torn = lines[-1][: len(lines[-1]) // 2]
    scalars.write_text("\n".join(lines[:-1]) + "\n" + torn)
    (root / "notes.txt").write_text(
        "Run restarted by hand after the node died at step 3; the step-3 shard was never copied back.\n"
    )


# ---------------------------------------------------------------------------------------------------------
# Flink debug data v0 / v1 (seed 000)
# ---------------------------------------------------------------------------------------------------------
FLINK_V0_COLUMNS = (
    "env_name",
    "trajectory",
    "agent_trajectories",
    "exception_info",
    "reward",
    "reward_metrics",
    "reward_text_info",
    "unique_sample_id",
)
FLINK_V1_EXTRA = (
    "schema_version",
    "role_assignments",
    "solver_reward",
    "verifier_reward",
    "judge_reward",
    "solver_kl",
    "verifier_kl",
    "judge_kl",
)


def flink_rows(split: str, step: int, version: int, n: int, specials: dict[int, str]) -> list[Row]:
    """Rows of one Flink ``BatchDebugData`` file; ``specials`` maps a row index to "exception" or "nan"."""
    t = step / 19
    rows: list[Row] = []
    for i in range(n):
        rng = random.Random(f"flink_mixed/{split}/{step}/{i}")
        if i % 8 == 0:
            task = make_task(random.Random(f"flink_mixed/{split}/{step}/task{i // 8}"))
        special = specials.get(i)
        exc = TRACEBACKS[(step + i) % len(TRACEBACKS)] if special == "exception" else None
        out = rollout(task, f"{split}{step}_{i}", t, rng, exception=exc, nan_reward=special == "nan")
        agents = [f"agent_{j}" for j in range(3)]
        order = list(ROLES)
        if version >= 1:
            rng.shuffle(order)  # which agent plays which role changes per episode
        assignment = dict(zip(agents, order, strict=True))
        agent_traj = []
        for agent in agents:
            role = assignment[agent]
            turns = [
                {"role": m["role"], "content": m["content"], "tool_calls": m["tool_calls"]}
                for m in out.messages
                if m["name"] == role or (role == "solver" and m["role"] == "tool")
            ]
            agent_traj.append({"agent_id": agent, "turns": turns, "num_turns": len(turns)})
        metrics = None
        verdict = "correct" if out.components and out.components["correctness"] == 1.0 else "incorrect"
        if out.components is not None:
            metrics = {"correct": out.components["correctness"], "format": out.components["format"]}
        row: Row = {
            "env_name": task.env_name,
            "trajectory": render(out.messages),
            "agent_trajectories": json.dumps(agent_traj),
            "exception_info": out.exception,
            "reward": out.reward,
            "reward_metrics": metrics,
            "reward_text_info": None
            if out.exception
            else f"extracted_answer={out.extracted!r} target={task.answer!r} verdict={verdict}",
            "unique_sample_id": f"{task.env_name}_{split}:{step * n + i:06d}",
        }
        if version >= 1:
            row["schema_version"] = 1
            row["role_assignments"] = json.dumps(assignment)
            for role in ROLES:
                row[f"{role}_reward"] = out.role_rewards[role]
            for role in ROLES:
                row[f"{role}_kl"] = None if out.exception else out.role_kls[role]
        rows.append(row)
    return rows


def flink_table(rows: list[Row], version: int) -> pa.Table:
    """Columns as Flink's writer produces them: ``reward_metrics`` left to pyarrow's struct inference."""
    cols: dict[str, pa.Array] = {
        "env_name": pa.array([r["env_name"] for r in rows], pa.string()),
        "trajectory": pa.array([r["trajectory"] for r in rows], pa.string()),
        "agent_trajectories": pa.array([r["agent_trajectories"] for r in rows], pa.string()),
        "exception_info": pa.array([r["exception_info"] for r in rows], pa.string()),
        "reward": pa.array([r["reward"] for r in rows], pa.float64()),
        "reward_metrics": pa.array([r["reward_metrics"] for r in rows]),
        "reward_text_info": pa.array([r["reward_text_info"] for r in rows], pa.string()),
        "unique_sample_id": pa.array([r["unique_sample_id"] for r in rows], pa.string()),
    }
    if version >= 1:
        cols["schema_version"] = pa.array([r["schema_version"] for r in rows], pa.int64())
        cols["role_assignments"] = pa.array([r["role_assignments"] for r in rows], pa.string())
        for c in FLINK_V1_EXTRA[2:]:
            cols[c] = pa.array([r[c] for r in rows], pa.float64())
    return pa.table(cols)


def csv_cell(v: Any) -> str:
    """A cell as pandas ``to_csv`` writes it: None/NaN empty, floats via repr, dicts as Python repr."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(v) if isinstance(v, (float, dict)) else str(v)


def write_flink_csv(rows: list[Row], path: Path) -> None:
    """The "Parquet writing failed" fallback: same columns, ``reward_metrics`` as a Python dict repr."""
    columns = list(FLINK_V0_COLUMNS) + list(FLINK_V1_EXTRA)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([csv_cell(r[c]) for c in columns])


def make_flink_mixed(root: Path) -> None:
    """Steps 0-9 in v0, 10-19 in v1 (step 13 as the CSV fallback), eval at 0 (v0) and 10 (v1, suffixed)."""
    logs = root / "flink_logs"
    logs.mkdir(parents=True)
    specials: dict[tuple[str, int], dict[int, str]] = {
        ("train", 4): {11: "nan"},
        ("train", 6): {3: "exception"},
        ("train", 16): {9: "exception", 14: "nan"},
        ("eval", 10): {2: "exception"},
    }
    files: list[tuple[str, int, str]] = [("train", s, "") for s in range(20)]
    files += [("eval", 0, ""), ("eval", 10, "_final")]
    for split, step, suffix in files:
        version = 0 if step < 10 else 1
        rows = flink_rows(split, step, version, 16, specials.get((split, step), {}))
        stem = f"batch_debug_data_{split}_{step}{suffix}"
        if (split, step) == ("train", 13):
            write_flink_csv(rows, logs / f"{stem}.csv")
        else:
            write_parquet(flink_table(rows, version), logs / f"{stem}.parquet")


# ---------------------------------------------------------------------------------------------------------
# JaxARC batch_metrics.jsonl (seed 003)
# ---------------------------------------------------------------------------------------------------------
def make_jaxarc(root: Path) -> None:
    """50 aggregated records, ``log_frequency`` = 10, with learning-curve shaped metrics."""
    root.mkdir(parents=True)
    rng = random.Random("jaxarc-v1")
    lines = []
    ts = T0 + 86400.0
    for i in range(50):
        step = 10 * i
        t = i / 49
        ts += 10 * (2.2 + rng.uniform(-0.2, 0.2))
        mean_r = -0.8 + 1.3 * (1 - math.exp(-3 * t)) + rng.gauss(0, 0.04)
        sd = 0.55 - 0.2 * t + rng.uniform(-0.03, 0.03)
        metrics = {
            "reward_mean": r6(mean_r),
            "reward_std": r6(sd),
            "reward_max": r6(min(1.0, mean_r + 2.2 * sd)),
            "reward_min": r6(max(-1.0, mean_r - 2.5 * sd)),
            "episode_length_mean": r6(95 - 50 * t + rng.gauss(0, 2.0)),
            "success_rate": r6(clamp01(0.02 + 0.45 * t + rng.gauss(0, 0.02))),
            "policy_loss": r6(-0.02 - 0.01 * t + rng.gauss(0, 0.006)),
            "value_loss": r6(0.9 * math.exp(-2.5 * t) + 0.05 + abs(rng.gauss(0, 0.02))),
            "gradient_norm": r6(2.5 * math.exp(-2 * t) + 0.3 + abs(rng.gauss(0, 0.1))),
        }
        lines.append(json.dumps({"timestamp": r6(ts), "step": step, "metrics": metrics}))
    (root / "batch_metrics.jsonl").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "sample_runs", help="parent folder of the four runs")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    makers = {
        "debate_grpo": make_debate_grpo,
        "flink_mixed": make_flink_mixed,
        "jaxarc": make_jaxarc,
        "damaged": make_damaged,
    }
    for name in RUN_FOLDERS:
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        makers[name](target)
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        print(f"wrote {target} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
