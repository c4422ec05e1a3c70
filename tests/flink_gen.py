"""A generator of Flink debug-data runs (seed 000, ``BatchDebugData``, v0 and v1) for tests.

``write_flink_run(root, ...)`` writes ``root/flink_logs/batch_debug_data_{split}_{step}.parquet`` with every
column of the seed's schema: ``agent_trajectories`` holds multi-turn debate messages (a solver that calls a
``python`` tool with a ``code`` argument, the tool's result, a verifier, a judge) in one of the shapes Flink
writes, and ``trajectory`` the same conversation rendered with ``<|role name=X id=Y|>`` headers. Everything
is drawn from ``random.Random`` seeded by ``(seed, split, step, prompt, sample)``: the same arguments give
the same files.

Each sample is an :class:`Episode` whose fields are drawn first; then every ``hooks`` callable may change
them (it sees ``step``, ``split``, the prompt and sample index, a per-prompt ``group_rng``); then whatever
reward or component a hook did not set is scored from the fields. Planted pathologies are hooks, e.g.::

    def flat_judge(ep):                      # no within-group reward spread for the judge from step 20
        if ep.step >= 20:
            ep.role_rewards["judge"] = 1.0

    def collapse(ep):                        # one solver text per prompt from step 15
        if ep.step >= 15:
            ep.think, ep.answer, ep.uses_tool = f"Known: {ep.task.question}", ep.task.truth, False

    def drift(ep):                           # the format breaks more and more from step 10
        if ep.step >= 10 and ep.rng.random() < (ep.step - 10) / 10:
            ep.well_formatted = False

    write_flink_run(tmp_path / "run", steps=30, hooks=[flat_judge])

The solver's last message is its completion: ``<think>…</think><answer>…</answer>`` when
``well_formatted``, else ``… The answer is X.``; the ``format`` component is 1.0 / 0.0 accordingly (unless a
hook sets ``components["format"]``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROLES = ("solver", "verifier", "judge")
AGENTS = ("agent_0", "agent_1", "agent_2")
SYSTEM = (
    "You are taking part in a three-agent debate. The solver answers, using the python tool when useful, "
    "with its reasoning in <think></think> and its final answer in <answer></answer>. The verifier checks "
    "the solver's work. The judge gives a verdict: ACCEPT or REJECT."
)
# How ``agent_trajectories`` is written (every one is a shape Flink writes):
SHAPES = (
    "messages",  # a JSON list of OpenAI chat messages, assistant messages named by their role
    "agents",  # a JSON list of {agent_id, turns}: each agent's own messages, roles via role_assignments
    "by_agent",  # a JSON object {agent_id: [messages]}
    "double",  # the "messages" JSON encoded once more: a JSON string inside the string
    "parts",  # "messages" with every content a list of {"type": "text", "text": ...} parts
)


@dataclass(frozen=True)
class Task:
    question: str
    truth: str
    code: str


@dataclass
class Episode:
    """One sample before it is written. Hooks change fields; ``role_rewards`` / ``components`` entries a
    hook sets are kept, the others are scored after the hooks."""

    step: int
    split: str
    prompt_index: int
    sample_index: int
    task: Task
    rng: random.Random  # this sample's own generator
    group_rng: random.Random  # seeded by (seed, split, step, prompt): the same draws for the whole group
    t: float  # training progress in [0, 1]
    correct: bool
    uses_tool: bool
    well_formatted: bool
    answer: str
    think: str
    verifier_agrees: bool  # the verifier's verdict is right
    judge_agrees: bool  # the judge's verdict is right
    rounds: int = 1
    exception: str | None = None
    role_rewards: dict[str, float | None] = field(default_factory=dict)
    role_kls: dict[str, float | None] = field(default_factory=dict)
    components: dict[str, float] = field(default_factory=dict)
    reward: float | None = None
    assignment: dict[str, str] = field(default_factory=dict)  # agent id -> role

    @property
    def sample_id(self) -> str:
        return f"gen_{self.split}:{self.step:05d}:{self.prompt_index}:{self.sample_index}"

    @property
    def call_id(self) -> str:
        return f"call_{self.split}{self.step}_{self.prompt_index}_{self.sample_index}"

    @property
    def completion(self) -> str:
        """The solver's final message."""
        if self.well_formatted:
            return f"<think>{self.think}</think><answer>{self.answer}</answer>"
        return f"{self.think} The answer is {self.answer}."

    @property
    def revision(self) -> str:
        """The solver's message in a later debate round: it keeps its answer."""
        if self.well_formatted:
            return f"<think>The verifier's check does not change my result.</think><answer>{self.answer}</answer>"
        return f"I keep my answer {self.answer}."

    def messages(self) -> list[dict[str, Any]]:
        """The debate as OpenAI chat messages (assistant messages named by role; the tool call's message has
        no text, as chat templates write it)."""
        msgs: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": self.task.question},
        ]
        if self.exception is not None:
            return msgs + [{"role": "assistant", "name": "solver", "content": f"<think>{self.think}"}]
        if self.uses_tool:
            call = {
                "id": self.call_id,
                "type": "function",
                "function": {"name": "python", "arguments": json.dumps({"code": self.task.code})},
            }
            msgs.append({"role": "assistant", "name": "solver", "content": None, "tool_calls": [call]})
            msgs.append({"role": "tool", "tool_call_id": self.call_id, "name": "python", "content": self.task.truth})
        for r in range(self.rounds):
            solver = self.completion if r == 0 else self.revision
            msgs.append({"role": "assistant", "name": "solver", "content": solver})
            verdict = "PASS" if self.correct == self.verifier_agrees else "FAIL"
            check = f"<think>Checking {self.answer} (round {r + 1}).</think>VERIFY: {verdict}"
            msgs.append({"role": "assistant", "name": "verifier", "content": check})
        accept = self.correct == self.judge_agrees
        msgs.append({"role": "assistant", "name": "judge", "content": f"Verdict: {'ACCEPT' if accept else 'REJECT'}"})
        return msgs


Hook = Callable[[Episode], None]


@dataclass
class GeneratedRun:
    root: Path
    episodes: list[Episode]

    def by_step(self, split: str = "train") -> dict[int, list[Episode]]:
        out: dict[int, list[Episode]] = {}
        for ep in self.episodes:
            if ep.split == split:
                out.setdefault(ep.step, []).append(ep)
        return out


def write_flink_run(
    root: Path,
    *,
    steps: int | Iterable[int] = 6,
    prompts: int = 3,
    group_size: int = 4,
    version: int = 1,
    split: str = "train",
    seed: int = 0,
    shape: str = "messages",
    render_tool_calls: bool = False,
    rounds: int = 1,
    tool_rate: float = 0.7,
    exception_rate: float = 0.0,
    hooks: Sequence[Hook] = (),
    drop_columns: Sequence[str] = (),
    agent_trajectories: Callable[[Episode], str | None] | None = None,
) -> GeneratedRun:
    """Write one split of a Flink run; returns the root and every episode written (for references).

    ``steps``: a count (0..n-1) or the step numbers. ``shape``: one of ``SHAPES``. ``render_tool_calls``:
    whether the rendered ``trajectory`` has ``[tool_call ID NAME ARGS]`` lines (Flink's own rendering has
    none: the tool-calling turn is then an empty solver turn). ``drop_columns``: columns left out of the
    files (``agent_trajectories`` to exercise the fallback). ``agent_trajectories``: a function giving the
    column's cell for an episode, replacing ``shape`` (for hostile or unknown shapes).
    """
    if shape not in SHAPES:
        raise ValueError(f"shape {shape!r}: expected one of {SHAPES}")
    step_list = list(range(steps)) if isinstance(steps, int) else list(steps)
    last = max(step_list, default=0)
    logs = Path(root) / "flink_logs"
    logs.mkdir(parents=True, exist_ok=True)
    episodes: list[Episode] = []
    for step in step_list:
        rows = []
        for p in range(prompts):
            task = _task(random.Random(f"{seed}/{split}/{step}/{p}/task"))
            for k in range(group_size):
                ep = _draw(seed, split, step, p, k, task, step / max(1, last), rounds, tool_rate, exception_rate)
                for hook in hooks:
                    hook(ep)
                _score(ep, version)
                episodes.append(ep)
                rows.append(_row(ep, version, shape, render_tool_calls, agent_trajectories))
        table = _table(rows, version)
        for name in drop_columns:
            if name in table.column_names:
                table = table.drop_columns([name])
        pq.write_table(table, logs / f"batch_debug_data_{split}_{step}.parquet")
    return GeneratedRun(Path(root), episodes)


def _task(rng: random.Random) -> Task:
    a, b = rng.randint(12, 99), rng.randint(3, 19)
    return Task(f"What is {a} * {b}?", str(a * b), f"print({a} * {b})")


def _draw(
    seed: int,
    split: str,
    step: int,
    p: int,
    k: int,
    task: Task,
    t: float,
    rounds: int,
    tool_rate: float,
    exception_rate: float,
) -> Episode:
    rng = random.Random(f"{seed}/{split}/{step}/{p}/{k}")
    correct = rng.random() < 0.35 + 0.3 * t
    uses_tool = rng.random() < tool_rate
    answer = task.truth if correct else str(int(task.truth) + rng.choice((-10, -1, 1, 2, 10)))
    style = rng.choice(("Multiplying step by step", "Splitting the product", "Rounding and correcting"))
    think = f"{style}: {task.question} gives {answer}."
    if uses_tool:
        think = f"The python tool printed {task.truth}; {'so' if correct else 'but by hand I get'} {answer}."
    ep = Episode(
        step=step,
        split=split,
        prompt_index=p,
        sample_index=k,
        task=task,
        rng=rng,
        group_rng=random.Random(f"{seed}/{split}/{step}/{p}/group"),
        t=t,
        correct=correct,
        uses_tool=uses_tool,
        well_formatted=rng.random() < 0.85 + 0.1 * t,
        answer=answer,
        think=think,
        verifier_agrees=rng.random() < 0.6 + 0.3 * t,
        judge_agrees=rng.random() < 0.6 + 0.3 * t,
        rounds=rounds,
    )
    if rng.random() < exception_rate:
        ep.exception = 'Traceback (most recent call last):\n  File "rollout.py", line 7\nTimeoutError: tool timed out'
    ep.assignment = dict(zip(AGENTS, rng.sample(ROLES, 3), strict=True))
    return ep


def _score(ep: Episode, version: int) -> None:
    """Fill what no hook set: components, the total reward, per-role rewards (with noise, so that groups
    have spread) and KL."""
    rng = random.Random(f"{ep.sample_id}/score")
    failed = ep.exception is not None
    if not failed:
        ep.components.setdefault("correct", 1.0 if ep.correct else 0.0)
        ep.components.setdefault("format", 1.0 if ep.well_formatted else 0.0)
    if ep.reward is None and not failed:
        ep.reward = round(0.8 * ep.components["correct"] + 0.2 * ep.components["format"], 6)
    defaults = {
        "solver": ep.reward,
        "verifier": None if failed else round(0.9 * ep.verifier_agrees + 0.1 * rng.random(), 6),
        "judge": None if failed else round(0.9 * ep.judge_agrees + 0.1 * rng.random(), 6),
    }
    for role in ROLES:
        ep.role_rewards.setdefault(role, defaults[role])
        ep.role_kls.setdefault(role, None if failed else round(0.002 + 0.01 * ep.t + 0.001 * rng.random(), 6))


def render(messages: list[dict[str, Any]], tool_calls: bool) -> str:
    """The rendered ``trajectory``: ``<|role name=X id=Y|>`` headers, with ``[tool_call ID NAME ARGS]`` lines
    when ``tool_calls``."""
    parts = []
    for m in messages:
        head = f"<|{m['role']}"
        if m.get("name"):
            head += f" name={m['name']}"
        if m.get("tool_call_id"):
            head += f" id={m['tool_call_id']}"
        parts.append(head + "|>")
        if m.get("content"):
            parts.append(m["content"])
        for c in m.get("tool_calls") or () if tool_calls else ():
            parts.append(f"[tool_call {c['id']} {c['function']['name']} {c['function']['arguments']}]")
    return "\n".join(parts) + "\n"


def _agents_json(ep: Episode, msgs: list[dict[str, Any]], shape: str) -> str:
    if shape in ("messages", "double", "parts"):
        out: Any = msgs
        if shape == "parts":
            out = [{**m, "content": [{"type": "text", "text": m["content"]}]} if m.get("content") else m for m in msgs]
        text = json.dumps(out)
        return json.dumps(text) if shape == "double" else text
    per_agent: dict[str, list[dict[str, Any]]] = {a: [] for a in AGENTS}
    role_of = {r: a for a, r in ep.assignment.items()}
    speaker = None
    for m in msgs:
        if m["role"] == "assistant":
            speaker = m["name"]
        if m["role"] in ("system", "user"):
            for a in AGENTS:
                per_agent[a].append(m)
        elif speaker is not None:
            turn = {k: v for k, v in m.items() if k != "name" or m["role"] == "tool"}
            per_agent[role_of[speaker]].append(turn)
    if shape == "agents":
        return json.dumps([{"agent_id": a, "turns": per_agent[a], "num_turns": len(per_agent[a])} for a in AGENTS])
    return json.dumps(per_agent)


def _row(
    ep: Episode,
    version: int,
    shape: str,
    render_tool_calls: bool,
    custom: Callable[[Episode], str | None] | None,
) -> dict[str, Any]:
    msgs = ep.messages()
    failed = ep.exception is not None
    row: dict[str, Any] = {
        "env_name": "debate_arith",
        "trajectory": render(msgs, render_tool_calls),
        "agent_trajectories": custom(ep) if custom is not None else _agents_json(ep, msgs, shape),
        "exception_info": ep.exception,
        "reward": ep.reward,
        "reward_metrics": None if failed else dict(ep.components),
        "reward_text_info": None if failed else f"extracted_answer={ep.answer!r} target={ep.task.truth!r}",
        "unique_sample_id": ep.sample_id,
    }
    if version >= 1:
        row["schema_version"] = version
        row["role_assignments"] = json.dumps(ep.assignment)
        for role in ROLES:
            row[f"{role}_reward"] = ep.role_rewards[role]
        for role in ROLES:
            row[f"{role}_kl"] = ep.role_kls[role]
    return row


def _table(rows: list[dict[str, Any]], version: int) -> pa.Table:
    """The seed's column types: strings, float64 rewards, ``reward_metrics`` a struct of floats; v1 adds
    ``schema_version`` (int64), ``role_assignments`` and the flat per-role floats."""
    names = sorted({k for r in rows for k in (r["reward_metrics"] or {})})
    text, num = pa.string(), pa.float64()
    types: dict[str, pa.DataType] = dict.fromkeys(("env_name", "trajectory", "agent_trajectories"), text)
    types |= {"exception_info": text, "reward": num, "reward_metrics": pa.struct([(n, num) for n in names])}
    types |= {"reward_text_info": text, "unique_sample_id": text}
    if version >= 1:
        types |= {"schema_version": pa.int64(), "role_assignments": text}
        types |= {f"{role}_{m}": num for m in ("reward", "kl") for role in ROLES}
    return pa.table({c: pa.array([r[c] for r in rows], t) for c, t in types.items()})
