"""The texts after review 11's second look (expected figures counted here from the raw JSON written, never with
runlog's code):

- F4: a tool-call spec left out, with no count and no note, a sample that has messages but none it checks (a NeMo
  Gym response with no output, whose messages are all the request's; a native sample with a user message alone);
  such a sample is now skipped and counted (``SkippedTexts``, the ``no_text`` column and a note);
- F3: the no-text note said "no assistant turn" of samples whose assistant turns are their prompt's
  (``prompt_turns``: a few-shot example): it now says so;
- F5: doctor's ``format_drift`` said the message shape changed, "maybe not the format", when only half the texts
  moved their reasoning to the field and the other half lost it: it now gives the counts, and claims the shape
  explains the fall only where the texts with reasoning are about as many as passed before;
- F6: the W&B ``prompt`` cell stopped at a few-shot example's assistant turn, leaving out the real question: where
  the row's ``prompt_turns`` is known, the cell is those turns;
- F7: ``runlog inspect`` listed ``prompt_turns`` (bookkeeping, refused by ``--where``) as a numeric column.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from runlog import open_run
from runlog.analysis.doctor import diagnose
from runlog.analysis.inspect import inspect_run
from runlog.analysis.texts import SkippedTexts, diversity_frame, format_frame, format_per_sample
from runlog.sinks.tables import table_row
from runlog.writer import RunWriter

FEW_SHOT = [
    {"role": "system", "content": "Answer in tags."},
    {"role": "user", "content": "example: 1+1"},
    {
        "role": "assistant",
        "content": "<think>one plus one</think><answer>2</answer>",
        "tool_calls": [{"id": "fs1", "type": "function", "function": {"name": "calc", "arguments": '{"e": "1+1"}'}}],
    },
    {"role": "tool", "tool_call_id": "fs1", "content": "2"},
    {"role": "user", "content": "now: 2+2"},
]


def _write_jsonl(path: Path, records: list[dict]) -> list[dict]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def note_lines(stderr: str) -> list[str]:
    return [x[len("note: ") :] for x in stderr.splitlines() if x.startswith("note: ")]


# -- F4: nothing a tool-call spec does not check is left out unseen -------------------------------------------------
def _nemo_gym_run(root: Path) -> list[dict]:
    """Four rollouts with a call each, and one whose response has no output (every message the request's)."""
    inp = [
        {"role": "user", "content": "weather in Paris?", "type": "message"},
        {"type": "function_call", "call_id": "ex", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "ex", "output": "sunny"},
        {"role": "assistant", "content": "It is sunny.", "type": "message"},
        {"role": "user", "content": "and Rome?", "type": "message"},
    ]
    recs = []
    for k in range(5):
        call = {"type": "function_call", "call_id": f"c{k}", "name": "get_weather", "arguments": '{"city": "Rome"}'}
        recs.append(
            {
                "responses_create_params": {"input": inp, "instructions": "be brief"},
                "response": {"output": [] if k == 3 else [call]},
                "reward": 1.0,
                "_ng_task_index": k,
                "_ng_rollout_index": 0,
            }
        )
    return _write_jsonl(root / "rollouts.jsonl", recs)


def _generated_items(rec: dict) -> list[dict]:
    """The response's own items that a tool-call spec checks: calls, and messages with content."""
    return [it for it in rec["response"]["output"] if it.get("type") == "function_call" or it.get("content")]


def test_tool_call_json_counts_a_nemo_gym_response_without_output(tmp_path: Path, cli) -> None:
    recs = _nemo_gym_run(tmp_path / "run")
    checked = [r for r in recs if _generated_items(r)]
    empty = len(recs) - len(checked)  # 1: its messages are all the request's
    run = open_run(tmp_path / "run")
    skipped = SkippedTexts()
    per = format_per_sample(run, "tool-call-json", skipped=skipped)
    assert per["sample_id"].n_unique() == len(checked)
    assert skipped.by_reason() == {"unread": 0, "bare": 0, "rest": empty}  # was 0: left out, unseen
    skipped = SkippedTexts()
    fmt = format_frame(run, "tool-call-json", skipped=skipped)
    assert fmt["texts"].sum() == sum(len(_generated_items(r)) for r in recs)
    assert skipped.per_row(["step"])["no_text"].to_list() == [empty]
    # The command shows them: the no_text column and a note that says why.
    res = cli("metrics", "format", tmp_path / "run", "--spec", "tool-call-json", "--format", "json")
    assert res.exit_code == 0, res.stderr
    [row] = json.loads(res.stdout)
    assert row["no_text"] == empty
    [note] = [n for n in note_lines(res.stderr) if "have no text" in n]
    assert note.startswith(f"{empty} sample(s)") and "prompt_turns" in note


def test_tool_call_json_counts_a_sample_with_a_user_message_alone(tmp_path: Path) -> None:
    rows = [
        {
            "reward": 1.0,
            "sample_id": "a",
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
            ],
        },
        {"reward": 0.0, "sample_id": "b", "messages": [{"role": "user", "content": "q"}]},
    ]
    with RunWriter(tmp_path / "run", durable=False) as w:
        w.log_samples(0, rows)
    # The samples with a message of the model (its role assistant) that has content or calls.
    model = [r for r in rows if any(m["role"] == "assistant" for m in r["messages"])]
    skipped = SkippedTexts()
    per = format_per_sample(open_run(tmp_path / "run"), "tool-call-json", skipped=skipped)
    assert per["sample_id"].to_list() == [r["sample_id"] for r in model]
    assert skipped.total == len(rows) - len(model) == 1  # was 0


def test_tool_call_json_counts_verifiers_rollouts_with_an_empty_completion(tmp_path: Path) -> None:
    recs = _write_jsonl(
        tmp_path / "run" / "results.jsonl",
        [{"id": k, "prompt": FEW_SHOT, "completion": [], "reward": 0.0} for k in range(4)],
    )
    skipped = SkippedTexts()
    fmt = format_frame(open_run(tmp_path / "run"), "tool-call-json", skipped=skipped)
    assert fmt["texts"].sum() == sum(len(r["completion"]) for r in recs) == 0
    assert skipped.total == len(recs)  # was 0: four samples, no row and no count


def test_messages_text_counts_a_sample_whose_messages_have_no_content(tmp_path: Path) -> None:
    """``--text messages`` (diversity): a sample whose only message is a tool call without words has no text."""
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    rows = [
        {"reward": 1.0, "sample_id": "a", "messages": [{"role": "user", "content": "q"}]},
        {"reward": 1.0, "sample_id": "b", "messages": [{"role": "assistant", "content": None, "tool_calls": [call]}]},
    ]
    with RunWriter(tmp_path / "run", durable=False) as w:
        w.log_samples(0, rows)
    worded = [m for r in rows for m in r["messages"] if m.get("content")]
    without = sum(not any(m.get("content") for m in r["messages"]) for r in rows)
    skipped = SkippedTexts()
    div = diversity_frame(open_run(tmp_path / "run"), text="messages", over="set", skipped=skipped)
    assert div["texts"].sum() == len(worded)
    assert skipped.total == without == 1  # was 0


# -- F3: the assistant turns are the prompt's ----------------------------------------------------------------------
def test_no_text_note_says_the_assistant_turns_are_the_prompts(tmp_path: Path, cli) -> None:
    recs = _write_jsonl(
        tmp_path / "run" / "results.jsonl",
        [{"id": k, "prompt": FEW_SHOT, "completion": [], "reward": 0.0} for k in range(4)],
    )
    in_prompt = sum(any(m["role"] == "assistant" for m in r["prompt"]) for r in recs)
    res = cli("metrics", "format", tmp_path / "run")
    [note] = [n for n in note_lines(res.stderr) if n.startswith("no sample has")]
    assert f"the assistant turns of {in_prompt} of them are their prompt's" in note
    assert "no assistant turn after their prompt" in note
    assert "have no assistant turn (a message" not in note  # was: as if the samples had none


# -- F5: the message shape changed for N of M texts ----------------------------------------------------------------
def _drift_run(root: Path, moved: int, steps: int = 30, onset: int = 15, per_step: int = 8) -> list[list[dict]]:
    """Think tags in the content before ``onset``; from it on, ``moved`` of each step's texts hold their reasoning
    in the ``reasoning`` field (a reasoning parser), the others have none at all."""
    logged = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with RunWriter(root, durable=False) as w:
            for step in range(steps):
                rows = []
                for k in range(per_step):
                    user = {"role": "user", "content": f"q{k}"}
                    if step < onset:
                        a = {
                            "role": "assistant",
                            "content": f"<think>step {step} thinking {k}</think><answer>{k}</answer>",
                        }
                    elif k < moved:
                        a = {"role": "assistant", "content": f"<answer>{k}</answer>", "reasoning_content": f"think {k}"}
                    else:
                        a = {"role": "assistant", "content": f"<answer>{k}</answer>"}
                    rows.append(
                        {"reward": 0.5, "sample_id": f"s{step}_{k}", "group_id": f"g{step}", "messages": [user, a]}
                    )
                w.log_samples(step, rows)
                logged.append(rows)
    return logged


def _after_onset(logged: list[list[dict]]) -> tuple[int, int, int, int]:
    """The onset (the first step whose texts have no tag), the texts from it on, those with reasoning in the field,
    and those with neither a tag nor reasoning."""
    onset = next(i for i, rows in enumerate(logged) if not any("<think>" in r["messages"][1]["content"] for r in rows))
    after = [r["messages"][1] for rows in logged[onset:] for r in rows]
    held = sum(bool(m.get("reasoning_content")) for m in after)
    neither = sum(not m.get("reasoning_content") and "<think>" not in m["content"] for m in after)
    return onset, len(after), held, neither


def test_doctor_format_drift_gives_the_share_whose_shape_changed(tmp_path: Path) -> None:
    logged = _drift_run(tmp_path / "run", moved=4)
    onset, n, held, neither = _after_onset(logged)
    [drift] = [f for f in diagnose(open_run(tmp_path / "run")).findings if f.kind == "format_drift"]
    assert drift.onset_step == onset
    assert drift.evidence["reasoning_field"]["reasoning_in_field"] == held
    assert f"changed for those {held:,} of {n:,}" in drift.message
    assert f"the other {neither:,} have no reasoning" in drift.message
    assert "maybe not the format" not in drift.message  # was said of 60 of 120: half really lost it


def test_doctor_format_drift_still_says_the_shape_when_it_explains_the_fall(tmp_path: Path) -> None:
    logged = _drift_run(tmp_path / "run", moved=8)
    onset, n, held, neither = _after_onset(logged)
    assert held == n and neither == 0
    [drift] = [f for f in diagnose(open_run(tmp_path / "run")).findings if f.kind == "format_drift"]
    assert drift.onset_step == onset and "maybe not the format" in drift.message
    assert "--text auto+reasoning" in drift.message


# -- F6: the W&B prompt cell is the prompt's turns ------------------------------------------------------------------
def test_wandb_prompt_cell_holds_the_whole_few_shot_prompt(tmp_path: Path) -> None:
    completion = [{"role": "assistant", "content": "<think>two plus two</think><answer>4</answer>"}]
    recs = _write_jsonl(
        tmp_path / "run" / "results.jsonl",
        [{"id": 0, "prompt": FEW_SHOT, "completion": completion, "reward": 1.0}],
    )
    [row] = open_run(tmp_path / "run").samples.collect().to_dicts()
    cells, _ = table_row(row, "all", [], [], 100_000)
    prompt = cells[4]
    assert "now: 2+2" in prompt  # was cut at the example's assistant turn
    # Every message of the prompt, in order, and none of the completion.
    at = 0
    for m in recs[0]["prompt"]:
        at = prompt.index(m["content"], at)
    assert completion[0]["content"] not in prompt
    assert prompt.count("\n\n[") + 1 == len(recs[0]["prompt"])  # one block per prompt message


# -- F7: prompt_turns is bookkeeping, not a numeric column ----------------------------------------------------------
def test_inspect_does_not_list_prompt_turns_as_a_numeric_column(tmp_path: Path, cli) -> None:
    recs = _write_jsonl(
        tmp_path / "run" / "results.jsonl",
        [{"id": k, "prompt": FEW_SHOT, "completion": [], "reward": 0.5} for k in range(3)],
    )
    report = inspect_run(open_run(tmp_path / "run"))
    assert "prompt_turns" not in report.numeric  # was listed, while --where refuses it as bookkeeping
    assert report.numeric["reward"].count == len(recs)
    res = cli("inspect", tmp_path / "run", "--format", "json")
    assert "prompt_turns" not in json.loads(res.stdout)["numeric"]
    deep = cli("inspect", tmp_path / "run", "--deep", "--format", "json")
    assert "prompt_turns" not in json.loads(deep.stdout)["numeric"]


def test_a_spec_of_one_role_counts_the_samples_where_it_does_not_speak(tmp_path, cli):
    """A spec keeping the verifier's texts, ``--text auto``: the samples where the verifier does not speak were
    left out without a word (texts 4, no no_text), while ``--text role:verifier`` counted them."""
    from runlog import RunWriter

    def turn(name, content):
        return {"role": "assistant", "name": name, "content": content}

    q = {"role": "user", "content": "question"}
    samples = [
        [q, turn("solver", "<answer>0</answer>")],
        [q, turn("solver", "<answer>1</answer>"), turn("verifier", "<answer>ok</answer>")],
        [q, turn("solver", "<answer>2</answer>"), turn("verifier", "looks fine")],
        [q, turn("solver", "<answer>3</answer>")],
        [q, turn("solver", "<answer>4</answer>"), turn("verifier", "<answer>ok</answer>")],
    ]
    with RunWriter(tmp_path / "run", roles=["solver", "verifier"], durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "sample_id": f"s{i}", "messages": m} for i, m in enumerate(samples)])
    spec = tmp_path / "ver.toml"
    spec.write_text('name = "ver"\ntags = ["answer"]\nroles = ["verifier"]\n')
    spoken = [any(m.get("name") == "verifier" and m["content"] for m in s) for s in samples]
    for text in ("auto", "role:verifier"):
        r = cli("metrics", "format", tmp_path / "run", "--spec", spec, "--text", text, "--format", "json")
        assert r.exit_code == 0, r.stderr
        [row] = json.loads(r.stdout)
        assert (row["texts"], row.get("no_text")) == (sum(spoken), len(samples) - sum(spoken)), (text, row)
