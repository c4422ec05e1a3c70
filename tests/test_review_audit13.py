"""Regressions a review of audit 13's own changes found, each checked against the raw input:

- ``chat.from_openai_chat`` kept the other keys of a message "in which nothing is read" as its text: an empty
  model turn's ``finish_reason`` and ``logprobs`` became its words, which the text metrics read;
- the note of several envs counted a Flink run's envs from its one CSV file (the Parquet files hold no parsed
  frame): 8 and 8 rows for 224 and 128;
- the policy's election parsed every train conversation of a Flink run, whatever ``--steps`` asked;
- a part of the W&B plan read a frame built before another part found a file unreadable (its step was uploaded)."""

from __future__ import annotations

import shutil
from pathlib import Path

from runlog import chat, open_run
from runlog.analysis import texts as T
from runlog.analysis.views import layouts_note

from conftest import SAMPLE_RUNS


def test_an_empty_model_turn_keeps_no_metadata_as_its_text() -> None:
    said = chat.from_openai_chat(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "", "finish_reason": "stop", "logprobs": {"content": []}},
            {"role": "assistant", "content": None, "model": "m", "audio": {"data": "QUFBQQ==", "transcript": "t"}},
        ]
    )
    assert [m["content"] for m in said] == ["q", "", None]
    # A message with no content key at all still keeps what it says (the promise of audit 13's R1).
    assert chat.from_openai_chat({"weird": True})[0]["content"] == '{"weird":true}'


def test_a_flink_run_says_no_env_counts_it_cannot_know() -> None:
    note = layouts_note(open_run(SAMPLE_RUNS / "flink_mixed")) or ""
    assert "envs" not in note, note


def test_the_election_of_a_large_flink_run_reads_a_few_train_files_spread_over_its_steps(tmp_path: Path) -> None:
    logs = tmp_path / "run" / "flink_logs"
    logs.mkdir(parents=True)
    src = SAMPLE_RUNS / "flink_mixed" / "flink_logs"
    for i in range(60):
        shutil.copy(src / f"batch_debug_data_train_{10 + i % 3}.parquet", logs / f"batch_debug_data_train_{i}.parquet")
    shutil.copy(src / "batch_debug_data_eval_0.parquet", logs / "batch_debug_data_eval_0.parquet")
    run = open_run(tmp_path / "run")
    voters = T._election_files(run)
    files = [f for f in voters.files if f.kind == "samples"]
    assert 1 <= len(files) <= T.ELECTION_FILES and all(f.split == "train" for f in files)
    steps = sorted(f.step for f in files if f.step is not None)
    assert steps[0] == 0 and steps[-1] == 59  # spread over the run, the first and last steps among them
    # The same speaker as the whole run's election (every file of one shape here).
    whole = T._elect(*run.collect(lambda: T._election_counts(run.samples.select("split", "prompt_turns", "messages"))))
    assert T.policy_speaker(run).name == whole.name
