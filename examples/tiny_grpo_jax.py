#!/usr/bin/env python
"""A tiny but real GRPO-style debate trainer in JAX (CPU, well under a minute), logging with runlog.

Three roles learn at once, each a softmax policy over a few discrete actions, linear in features of what it
can see:

* solver   picks a tool (python / search / none) and an answer format (tagged / plain). The right tool for the
           task makes a correct answer likely; the wrong one makes it unlikely, and python on a trivia task
           sometimes crashes the sandbox (an exception, null reward).
* verifier sees the task, the solver's tool and a noisy re-check, and says PASS or FAIL.
* judge    sees the verifier's verdict, its own noisy check and whether the tool fits, and ACCEPTs or REJECTs.

Each step samples groups of 8 rollouts per prompt, computes group-relative advantages per role (GRPO),
and takes one Adam step on ``-adv * log pi(a|x) + beta * KL(pi(.|x) || pi_ref(.|x))``, the KL exact and to a
frozen copy of the initial policy. Rewards rise as the policies learn. The conversations (with tool calls
and tool results) are rendered from the sampled actions with templates.

Logging: one ``RunWriter`` per (simulated) data-parallel process, each writing its half of every step's
prompt groups, and a ``StatsTracker`` committed once per step.

    python examples/tiny_grpo_jax.py --out /tmp/grpo --steps 32 --seed 1234
    runlog inspect /tmp/grpo

``--deterministic`` replaces the wall clock by a simulated one, so that two runs give identical files
(``scripts/make_sample_runs.py`` uses it for ``sample_runs/debate_grpo``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

try:
    import jax
    import jax.numpy as jnp
except ImportError:  # pragma: no cover
    sys.exit("this example needs JAX: pip install -e '.[jax]' (in runlog's repository)")
import numpy as np

try:
    from runlog import RunWriter, StatsTracker
except ImportError:  # running from a checkout without pip install -e .
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from runlog import RunWriter, StatsTracker

ROLES = ("solver", "verifier", "judge")
TOOLS = ("python", "search", None)
KINDS = ("mul_add", "sum", "mod", "trivia")
T0 = 1770206400.0  # 2026-02-04T12:00:00Z, the start of the simulated clock
CONFIG = {
    "algorithm": "grpo",
    "policy": "linear-softmax (toy)",
    "prompts_per_step": 4,
    "group_size": 8,
    "learning_rate": 0.15,
    "kl_coef": 0.3,
    "reward": {"correctness": 0.7, "format": 0.2, "tool_use": 0.1},
    "data_parallel": 2,
    "eval_every": 8,
}
SYSTEM = (
    "You are taking part in a three-agent debate. The solver answers the task, using tools when useful, and "
    "writes its reasoning inside <think></think> and its final answer inside <answer></answer>. The verifier "
    "checks the solver's work. The judge reads both and gives a verdict: ACCEPT or REJECT."
)
TRIVIA = (
    ("What is the capital of Australia?", "Canberra", "Sydney"),
    ("What is the chemical symbol for gold?", "Au", "Ag"),
    ("Which planet has the shortest year?", "Mercury", "Venus"),
    ("Who painted 'The Night Watch'?", "Rembrandt", "Vermeer"),
    ("What is the largest ocean on Earth?", "Pacific Ocean", "Atlantic Ocean"),
    ("Which element has atomic number 26?", "Iron", "Cobalt"),
)
SANDBOX_ERROR = (
    "Traceback (most recent call last):\n"
    '  File "/app/tools/sandbox.py", line 88, in run\n'
    "    exec(compile(code, '<tool>', 'exec'), scope)\n"
    '  File "<tool>", line 1, in <module>\n'
    "NameError: name '{name}' is not defined"
)


# ---------------------------------------------------------------------------------------------------------
# The environment (host side, numpy / random: it is the world, not the model)
# ---------------------------------------------------------------------------------------------------------
def make_task(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(KINDS)
    hard = rng.random() < 0.3
    if kind == "trivia":
        q, a, wrong = rng.choice(TRIVIA)
        return {"kind": kind, "hard": hard, "question": q, "answer": a, "wrong": wrong, "code": None}
    if kind == "mul_add":
        x, y, z = rng.randint(12, 99), rng.randint(12, 99 if not hard else 999), rng.randint(1, 500)
        q, val, code = f"Compute {x} * {y} + {z}.", x * y + z, f"print({x} * {y} + {z})"
    elif kind == "sum":
        xs = [rng.randint(-50, 200) for _ in range(rng.randint(5, 9 if not hard else 14))]
        q, val, code = f"What is the sum of {xs}?", sum(xs), f"print(sum({xs}))"
    else:
        x, y = rng.randint(1000, 99999), rng.randint(7, 97)
        q, val, code = f"What is the remainder when {x} is divided by {y}?", x % y, f"print({x} % {y})"
    return {"kind": kind, "hard": hard, "question": q, "answer": str(val), "wrong": str(val + 1), "code": code}


def task_features(task: dict[str, Any]) -> list[float]:
    return [float(task["kind"] == k) for k in KINDS] + [float(task["hard"]), 1.0]


def p_correct(task: dict[str, Any], tool: str | None) -> float:
    right = "search" if task["kind"] == "trivia" else "python"
    if tool == right:
        return 0.85 if task["hard"] else 0.95
    if tool is None:
        return 0.15 if task["hard"] else (0.5 if task["kind"] == "trivia" else 0.35)
    return 0.1


def verifier_features(task: dict[str, Any], tool: str | None, check: bool) -> list[float]:
    return [*task_features(task)[:4], *[float(tool == t) for t in TOOLS], 1.0 if check else -1.0, 1.0]


def judge_features(task: dict[str, Any], tool: str | None, passed: bool, check: bool) -> list[float]:
    fits = tool == ("search" if task["kind"] == "trivia" else "python")
    return [1.0 if passed else -1.0, 1.0 if check else -1.0, float(fits), 1.0]


# ---------------------------------------------------------------------------------------------------------
# The policies (JAX): linear softmax per role, GRPO loss with an exact KL to the frozen reference
# ---------------------------------------------------------------------------------------------------------
DIMS = {"solver": (6, 6), "verifier": (9, 2), "judge": (4, 2)}


def init_params(key: jax.Array) -> dict[str, jax.Array]:
    keys = jax.random.split(key, len(ROLES))
    return {r: 0.1 * jax.random.normal(k, DIMS[r]) for r, k in zip(ROLES, keys, strict=True)}


def kl_per_sample(w: jax.Array, w_ref: jax.Array, x: jax.Array) -> jax.Array:
    logp, logq = jax.nn.log_softmax(x @ w), jax.nn.log_softmax(x @ w_ref)
    return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


def role_loss(w: jax.Array, w_ref: jax.Array, x: jax.Array, a: jax.Array, adv: jax.Array, beta: float) -> jax.Array:
    logp = jax.nn.log_softmax(x @ w)
    chosen = jnp.take_along_axis(logp, a[:, None], axis=1)[:, 0]
    return -jnp.mean(adv * chosen) + beta * jnp.mean(kl_per_sample(w, w_ref, x))


@jax.jit
def sample_actions(w: jax.Array, x: jax.Array, key: jax.Array) -> jax.Array:
    return jax.random.categorical(key, x @ w)


@jax.jit
def kls(params: dict[str, jax.Array], ref: dict[str, jax.Array], xs: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {r: kl_per_sample(params[r], ref[r], xs[r]) for r in ROLES}


def group_advantages(rewards: np.ndarray, valid: np.ndarray, group_size: int) -> np.ndarray:
    """GRPO: each reward minus its group's mean, over the group's std; invalid samples get 0."""
    r = np.where(valid, rewards, 0.0).reshape(-1, group_size)
    v = valid.reshape(-1, group_size)
    n = np.maximum(v.sum(axis=1, keepdims=True), 1)
    mean = (r * v).sum(axis=1, keepdims=True) / n
    std = np.sqrt((((r - mean) ** 2) * v).sum(axis=1, keepdims=True) / n)
    return (np.where(v, (r - mean) / (std + 1e-6), 0.0)).ravel()


def make_update(lr: float, beta: float) -> Callable[..., Any]:
    b1, b2, eps = 0.9, 0.999, 1e-8

    @jax.jit
    def update(params, ref, opt, xs, acts, advs):  # type: ignore[no-untyped-def]
        def total(p):  # type: ignore[no-untyped-def]
            losses = {r: role_loss(p[r], ref[r], xs[r], acts[r], advs[r], beta) for r in ROLES}
            return sum(losses.values()), losses

        (loss, losses), grads = jax.value_and_grad(total, has_aux=True)(params)
        t = opt["t"] + 1
        m = jax.tree_util.tree_map(lambda m_, g: b1 * m_ + (1 - b1) * g, opt["m"], grads)
        v = jax.tree_util.tree_map(lambda v_, g: b2 * v_ + (1 - b2) * g * g, opt["v"], grads)
        step = jax.tree_util.tree_map(lambda m_, v_: lr * (m_ / (1 - b1**t)) / (jnp.sqrt(v_ / (1 - b2**t)) + eps), m, v)
        new = jax.tree_util.tree_map(lambda p, s: p - s, params, step)
        gnorm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
        unorm = jnp.sqrt(sum(jnp.sum(s * s) for s in jax.tree_util.tree_leaves(step)))
        return new, {"t": t, "m": m, "v": v}, loss, losses, gnorm, unorm

    return update


# ---------------------------------------------------------------------------------------------------------
# Text from actions (templates), and the rows runlog stores
# ---------------------------------------------------------------------------------------------------------
def conversation(task, sample_id, tool, tagged, correct, crashed, tool_result, passed, accepted):  # type: ignore[no-untyped-def]
    answer = task["answer"] if correct else task["wrong"]
    msgs: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task["question"]}]
    think = f"I need to answer: {task['question']}"
    if tool is not None:
        call_id = f"call_{sample_id}_0"
        args = (
            {"code": task["code"] or f"print(lookup({task['question']!r}))"}
            if tool == "python"
            else {"query": task["question"].rstrip("?")}
        )
        msgs.append(
            {
                "role": "assistant",
                "name": "solver",
                "content": f"<think>{think} I'll use the {tool} tool.</think>",
                "reasoning_content": f"{think} I'll use the {tool} tool.",
                "tool_calls": [{"id": call_id, "type": "function", "function": {"name": tool, "arguments": args}}],
            }
        )
        msgs.append({"role": "tool", "tool_call_id": call_id, "content": tool_result})
        if crashed:
            return msgs, None
        think2 = f"The {tool} tool returned {tool_result!r}, so the answer is {answer}."
    else:
        think2 = f"{think} Working it out in my head, I get {answer}."
    final = f"<think>{think2}</think><answer>{answer}</answer>" if tagged else f"{think2} The answer is {answer}."
    msgs.append({"role": "assistant", "name": "solver", "content": final})
    msgs.append(
        {
            "role": "assistant",
            "name": "verifier",
            "content": f"I re-checked the solver's answer {answer}. VERIFY: {'PASS' if passed else 'FAIL'}",
        }
    )
    msgs.append(
        {
            "role": "assistant",
            "name": "judge",
            "content": f"Verdict: {'ACCEPT' if accepted else 'REJECT'}\nThe verifier said "
            f"{'PASS' if passed else 'FAIL'}; {'I agree' if passed == accepted else 'I overrule it'}.",
        }
    )
    return msgs, answer


def render(msgs: Sequence[dict[str, Any]]) -> str:
    lines = []
    for m in msgs:
        lines.append(f"<|{m['role']}{' name=' + m['name'] if m.get('name') else ''}|>")
        if m.get("content"):
            lines.append(m["content"])
        for tc in m.get("tool_calls") or ():
            lines.append(f"[tool_call {tc['id']} {tc['function']['name']} {json.dumps(tc['function']['arguments'])}]")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------
# One rollout batch: sample every role, score, render
# ---------------------------------------------------------------------------------------------------------
def rollout(params, ref, key, tasks, group, split, step, env_rng, greedy=False):  # type: ignore[no-untyped-def]
    letter = "e" if split == "eval" else "p"
    items = [(p, k, t) for p, t in enumerate(tasks) for k in range(group)]
    xs_s = jnp.array([task_features(t) for _, _, t in items])
    k1, k2, k3 = jax.random.split(key, 3)
    pick = (lambda w, x, _k: jnp.argmax(x @ w, axis=-1)) if greedy else sample_actions
    a_s = np.asarray(jax.device_get(pick(params["solver"], xs_s, k1)))
    env = []
    for (_, _, task), a in zip(items, a_s, strict=True):
        tool, tagged = TOOLS[a // 2], a % 2 == 0
        crashed = tool == "python" and task["kind"] == "trivia" and env_rng.random() < 0.3
        timeout = tool == "search" and env_rng.random() < 0.012
        correct = env_rng.random() < p_correct(task, tool)
        if tool == "python":
            result = SANDBOX_ERROR.format(name="lookup").splitlines()[-1] if crashed else task["answer"]
        elif tool == "search":
            result = "" if timeout else f"[1] Encyclopedia: {task['answer'] if correct else task['wrong']}."
        else:
            result = None
        env.append((tool, tagged, crashed, timeout, correct, result, env_rng.random() < 0.8, env_rng.random() < 0.75))
    xs_v = jnp.array([verifier_features(t, e[0], e[6] == e[4]) for (_, _, t), e in zip(items, env, strict=True)])
    a_v = np.asarray(jax.device_get(pick(params["verifier"], xs_v, k2)))
    xs_j = jnp.array(
        [
            judge_features(t, e[0], a_v[i] == 0, e[7] == e[4])
            for i, ((_, _, t), e) in enumerate(zip(items, env, strict=True))
        ]
    )
    a_j = np.asarray(jax.device_get(pick(params["judge"], xs_j, k3)))
    xs = {"solver": xs_s, "verifier": xs_v, "judge": xs_j}
    kl_dev = kls(params, ref, xs)  # per sample, for the policy that produced the data (on the device)
    kl = jax.device_get(kl_dev)
    rows, rewards = [], {r: np.full(len(items), np.nan) for r in ROLES}
    valid = np.ones(len(items), dtype=bool)
    for i, ((p, k, task), (tool, tagged, crashed, timeout, correct, result, _, _)) in enumerate(
        zip(items, env, strict=True)
    ):
        passed, accepted = bool(a_v[i] == 0), bool(a_j[i] == 0)
        sid = f"s{step}-{letter}{p}-{k}"
        msgs, answer = conversation(task, sid, tool, tagged, correct, crashed, result, passed, accepted)
        row: dict[str, Any] = {
            "sample_id": sid,
            "group_id": f"s{step}-{letter}{p}",
            "env_name": "debate_trivia" if task["kind"] == "trivia" else "debate_arith",
            "prompt": task["question"],
            "messages": msgs,
            "trajectory": render(msgs),
            "completion": answer,
            "num_turns": sum(1 for m in msgs if m["role"] == "assistant"),
        }
        for r in ROLES:
            row[f"{r}_kl"] = round(float(kl[r][i]), 6)
        if crashed:
            valid[i] = False
            row |= {"reward": None, "exception": SANDBOX_ERROR.format(name="lookup"), "solver_reward": None}
            row |= {"verifier_reward": None, "judge_reward": None}
        else:
            c = float("nan") if timeout else float(correct)
            comp = {"correctness": c, "format": 1.0 if tagged else 0.5, "tool_use": float(tool is not None)}
            total = round(0.7 * comp["correctness"] + 0.2 * comp["format"] + 0.1 * comp["tool_use"], 6)
            rv = float("nan") if timeout else float(passed == correct)
            rj = float("nan") if timeout else float(accepted == correct)
            row |= {"reward": total, "reward_components": comp, "exception": None}
            row |= {"solver_reward": total, "verifier_reward": rv, "judge_reward": rj}
            rewards["solver"][i], rewards["verifier"][i], rewards["judge"][i] = total, rv, rj
            valid[i] = not timeout
        rows.append(row)
    acts = {"solver": jnp.array(a_s), "verifier": jnp.array(a_v), "judge": jnp.array(a_j)}
    return rows, xs, acts, rewards, valid, kl_dev


# ---------------------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------------------
class SimClock:
    """A clock that advances a fixed amount per reading: reproducible times and durations."""

    def __init__(self, start: float, tick: float) -> None:
        self._n = itertools.count()
        self.start, self.tick = start, tick

    def __call__(self) -> float:
        return self.start + self.tick * next(self._n)


def train(out: Path, steps: int, seed: int, deterministic: bool, table: bool = False) -> dict[str, Any]:
    prompts, group = CONFIG["prompts_per_step"], CONFIG["group_size"]
    wall = SimClock(T0, 0.25) if deterministic else time.time
    perf = wall if deterministic else time.perf_counter
    key = jax.random.PRNGKey(seed)
    key, init_key = jax.random.split(key)
    params = init_params(init_key)
    ref = jax.tree_util.tree_map(jnp.copy, params)  # frozen reference policy
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    opt = {"t": jnp.zeros((), jnp.int32), "m": zeros, "v": zeros}
    update = make_update(CONFIG["learning_rate"], CONFIG["kl_coef"])
    tracker = StatsTracker(clock=perf, process_count=1)
    common = {"name": "debate_grpo", "roles": ROLES, "run_id": f"tiny-grpo-jax-seed{seed}", "clock": wall}
    config = {**CONFIG, "seed": seed, "steps": steps}
    first = {}
    with (
        RunWriter(out, config=config, process_index=0, **common) as w0,
        RunWriter(out, process_index=1, **common) as w1,
    ):
        for step in range(steps):
            rng = random.Random(f"{seed}/train/{step}")
            tasks = [make_task(rng) for _ in range(prompts)]
            key, k_roll, k_eval = jax.random.split(key, 3)
            with tracker.record_timing("rollout"):
                rows, xs, acts, rewards, valid, kl = rollout(params, ref, k_roll, tasks, group, "train", step, rng)
            advs = {r: jnp.array(group_advantages(rewards[r], valid, group)) for r in ROLES}
            with tracker.record_timing("update"):
                params, opt, loss, losses, gnorm, unorm = update(params, ref, opt, xs, acts, advs)
            half = len(rows) // 2  # data parallel: each process holds whole prompt groups
            w0.log_samples(step, rows[:half])
            w1.log_samples(step, rows[half:])
            with tracker.scope("train"):
                tracker.scalar(loss=loss, lr=CONFIG["learning_rate"])
                tracker.summary("reward", np.array([np.nan if r["reward"] is None else r["reward"] for r in rows]))
                tracker.summary("kl", jnp.concatenate([kl[r] for r in ROLES]))  # reduced on the device
                tracker.scalar(exceptions=float(sum(r["exception"] is not None for r in rows)))
            with tracker.scope("debate"):
                for r in ROLES:  # the per-role curves a debate trainer watches
                    tracker.scalar(**{f"reward/{r}": float(np.nanmean(np.where(valid, rewards[r], np.nan)))})
                    tracker.scalar(**{f"kl/{r}": jnp.mean(kl[r]), f"loss/{r}": losses[r]})
                grouped = np.where(valid, rewards["solver"], np.nan).reshape(-1, group)
                zero = [np.nanmax(g) == np.nanmin(g) for g in grouped if np.isfinite(g).sum() > 1]
                tracker.scalar(zero_adv_frac=float(np.mean(zero)) if zero else 0.0)
            tracker.scalar(**{"grad/global_norm": gnorm, "update/global_norm": unorm})
            if step % CONFIG["eval_every"] == 0:
                erng = random.Random(f"{seed}/eval/{step}")
                etasks = [make_task(erng) for _ in range(8)]
                with tracker.record_timing("eval"):
                    erows, *_ = rollout(params, ref, k_eval, etasks, 2, "eval", step, erng, greedy=True)
                w0.log_samples(step, erows, split="eval")
                tracker.summary(
                    "eval/reward", np.array([np.nan if r["reward"] is None else r["reward"] for r in erows])
                )
            stats = tracker.commit(step, w0, table=table)
            first.setdefault("reward", stats["train/reward/mean"])
            last = stats["train/reward/mean"]
        print(f"train/reward/mean: {first['reward']:.3f} at step 0 -> {last:.3f} at step {steps - 1}", file=sys.stderr)
        return {"first_reward": first["reward"], "last_reward": last, "writer": w0.stats()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="run directory (replaced if it exists)")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--deterministic", action="store_true", help="simulated clock: identical files on rerun")
    parser.add_argument("--table", action="store_true", help="print each step's stats as a table")
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    train(args.out, args.steps, args.seed, args.deterministic, args.table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
