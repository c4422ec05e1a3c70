"""``runlog metrics`` after the twenty-first audit (expected figures counted here from the rows written):

- a custom spec whose ``roles`` has a typo (``solvr``) printed rows of no text and exited 0, and doctor lost its
  ``format_drift`` without a word: a role that speaks in no message of the split read is a usage error (exit 2,
  one line, a near name), in ``metrics format`` and under doctor's ``--set format_spec``;
- the note of the texts skipped under a spec of one role said "text(s) (per sample and role)" of what are
  samples, and ``diversity --by role``'s note spoke of "a spec's roles" though diversity has no spec;
- two processes that each number their own prompt groups from 0 pooled two prompts in one group: such an id is
  split by file for the text metrics, with a warning;
- the single-set helpers counted None as an empty text, read a bare string as characters, and raised KeyError
  (or polars' TypeError on a NaN);
- ``metrics format --help``'s example printed adherence 0 at every step on the bundled run; where every text
  fails one rule, a note says so.

Then, a review of those fixes:

- a spec of roles ``[solver, judge]`` was refused on a valid run whose judge speaks in the eval split only
  (``--split train``, and doctor, which reads train): only a spec none of whose roles speaks is an error; where
  some do, a note names the others and where they speak, and the figures (doctor's ``format_drift``) are theirs;
- a group of one task whose rollouts each see their own seed in the prompt was shattered into groups of one:
  only an id's files are evidence of two processes' groups pooled (split by file, files that share a prompt
  together, prompts compared with white space normalised), never its prompts within one file;
- a split group's label could be a real group id of the same step, and the two were pooled;
- the warning was given where nothing was measured; the error named "the run" under ``metrics`` and "split
  train" under ``plot`` for the same one-split run; ``np.float32("nan")`` was refused as not a string.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from fractions import Fraction
from pathlib import Path

import pytest

from runlog.errors import UsageError
from runlog.writer import RunWriter

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RUN = ROOT / "sample_runs" / "debate_grpo"
OK = "<think>the reasoning</think><answer>x</answer>"


def _msgs(solver: str | None, judge: str | None = "judge says fine", *, judge_call: bool = False) -> list[dict]:
    out: list[dict] = [{"role": "user", "content": "Q?"}]
    if solver is not None:
        out.append({"role": "assistant", "name": "solver", "content": solver})
    if judge_call:  # the judge's only turn: a tool call without words
        out.append(
            {"role": "assistant", "name": "judge", "content": "", "tool_calls": [{"name": "f", "arguments": "{}"}]}
        )
    elif judge is not None:
        out.append({"role": "assistant", "name": "judge", "content": judge})
    return out


def _spec(path: Path, roles: list[str]) -> Path:
    path.write_text(
        'name = "tags"\ntags = ["think", "answer"]\nroles = [' + ", ".join(json.dumps(r) for r in roles) + "]\n"
    )
    return path


def _debate(root: Path, steps: int = 2, n: int = 4) -> Path:
    with RunWriter(root, durable=False) as w:
        for step in range(steps):
            w.log_samples(step, [{"reward": 1.0, "group_id": f"g{step}", "messages": _msgs(OK)} for _ in range(n)])
    return root


def _csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _notes(stderr: str) -> list[str]:
    return [x[len("note: ") :] for x in stderr.splitlines() if x.startswith("note: ")]


# -- 1. a spec role that speaks nowhere --------------------------------------------------------------------------
def test_a_spec_role_that_speaks_in_no_message_is_a_usage_error(tmp_path: Path, cli) -> None:
    run = _debate(tmp_path / "run")
    typo = _spec(tmp_path / "typo.toml", ["solvr"])
    res = cli("metrics", "format", run, "--spec", typo, "--steps", "1:1", "--format", "csv")
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert res.stdout == ""
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(f"Error: --spec {typo}: ") and "'solvr' (did you mean 'solver'?)" in line
    # The same spec spelled right reads the solver's 4 texts at step 1, every one with both tags once.
    good = _spec(tmp_path / "good.toml", ["solver"])
    res = cli("metrics", "format", run, "--spec", good, "--steps", "1:1", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    [row] = _csv(res.stdout)
    assert (row["texts"], float(row["adherence"])) == ("4", 1.0)


def test_the_library_raises_it_as_a_usage_error(tmp_path: Path) -> None:
    from runlog import format_frame, open_run

    run = open_run(_debate(tmp_path / "run"))
    with pytest.raises(UsageError, match=r"'jduge' \(did you mean 'judge'\?\)"):
        format_frame(run, str(_spec(tmp_path / "t.toml", ["jduge"])), ["step"])


def test_a_typo_beside_a_role_that_speaks_is_a_note_and_the_others_figures(tmp_path: Path) -> None:
    """2 steps of 4 samples, the solver's texts each with both tags: the figures are the solver's 4 per step."""
    from runlog import format_frame, open_run

    run = open_run(_debate(tmp_path / "run"))
    spec = str(_spec(tmp_path / "t.toml", ["solver", "jduge"]))
    notes: list[str] = []
    df = format_frame(run, spec, ["step"], notes=notes)
    assert df["texts"].to_list() == [4, 4] and df["adherence"].to_list() == [1.0, 1.0]
    [note] = [n for n in notes if "jduge" in n]
    assert note.startswith(f"--spec {spec}: its roles name 'jduge' (did you mean 'judge'?)"), note
    assert note.endswith("which are those of solver"), note


def test_a_spec_role_that_speaks_at_other_steps_only_is_no_error(tmp_path: Path, cli) -> None:
    """The judge speaks at step 1 only: --steps 0:0 reads the solver's texts, and the judge is no typo."""
    root = tmp_path / "run"
    with RunWriter(root, durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "group_id": "a", "messages": _msgs(OK, None)} for _ in range(3)])
        w.log_samples(1, [{"reward": 1.0, "group_id": "b", "messages": _msgs(OK, OK)} for _ in range(3)])
    spec = _spec(tmp_path / "s.toml", ["solver", "judge"])
    res = cli("metrics", "format", root, "--spec", spec, "--steps", "0:0", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    [row] = _csv(res.stdout)
    assert row["texts"] == "3"
    [note] = [n for n in _notes(res.stderr) if "'judge'" in n]
    assert "no message of split train at steps 0:0" in note, note
    assert "('judge' speaks at steps of split train outside --steps 0:0)" in note, note


def _collapse_run(root: Path, judge: str | None = "judge says fine") -> Path:
    """24 steps of 16 samples; from step 12 on, a quarter of the solver's texts lose their tags' order (the text
    starts with words before <think>, which a `match` rule refuses). ``judge``: the judge's words (None: silent)."""
    with RunWriter(root, durable=False) as w:
        for step in range(24):
            rows = []
            for g in range(4):
                for k in range(4):
                    solver = f"<think>r{step} {g} {k}</think><answer>a{k}</answer>"
                    if step >= 12 and g == 0:
                        solver = "no tags here " + solver
                    rows.append(
                        {"reward": 0.5, "group_id": f"s{step}g{g}", "prompt": f"p{g}", "messages": _msgs(solver, judge)}
                    )
            w.log_samples(step, rows)
    return root


def test_doctor_refuses_a_format_spec_whose_role_speaks_nowhere(tmp_path: Path, cli) -> None:
    run = _collapse_run(tmp_path / "run")
    match = "match = '\\s*<think>.*</answer>\\s*'\n"
    ok, typo = tmp_path / "ok.toml", tmp_path / "typo.toml"
    ok.write_text('name = "m"\n' + match + 'roles = ["solver"]\n')
    typo.write_text('name = "m"\n' + match + 'roles = ["solvr"]\n')
    # Spelled right: adherence 16/16 before step 12, 12/16 after (the texts written above), a fall of 0.25.
    res = cli("doctor", run, "--set", f"format_spec={ok}", "--format", "json")
    kinds = [f["kind"] for f in json.loads(res.stdout)["findings"]]
    assert "format_drift" in kinds, res.stdout
    res = cli("doctor", run, "--set", f"format_spec={typo}", "--format", "json")
    assert res.exit_code == 2, (res.stdout, res.stderr)
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(f"Error: --set format_spec={typo}: ") and "did you mean 'solver'?" in line
    assert "format_drift" in line


def _judge_in_eval(root: Path, train: Path | None = None) -> Path:
    """12 train steps where the solver alone speaks (4 samples), and eval steps 0, 4, 8 where a judge speaks too."""
    with RunWriter(root, durable=False) as w:
        for step in range(12):
            rows = [{"reward": 1.0, "group_id": "0", "messages": _msgs(OK, None)} for _ in range(4)]
            w.log_samples(step, rows)
            if step % 4 == 0:
                w.log_samples(step, [{"reward": 1.0, "messages": _msgs(OK, "ok")} for _ in range(2)], split="eval")
    return root


def test_a_spec_role_that_speaks_in_another_split_only_is_a_note(tmp_path: Path, cli) -> None:
    """The judge speaks in the eval split only: read with --split train, the table is the solver's 4 texts a step
    (each with both tags once), and a note says where the judge speaks; the run as a whole reads both."""
    run = _judge_in_eval(tmp_path / "run")
    spec = _spec(tmp_path / "s.toml", ["solver", "judge"])
    res = cli("metrics", "format", run, "--spec", spec, "--split", "train", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    rows = _csv(res.stdout)
    assert [(r["step"], r["texts"], float(r["adherence"])) for r in rows] == [(str(s), "4", 1.0) for s in range(12)]
    [note] = [n for n in _notes(res.stderr) if "'judge'" in n]
    assert note == (
        f"--spec {spec}: its roles name 'judge', who speaks in no message of split train ('judge' speaks in split "
        "eval): its texts are not in the figures, which are those of solver"
    )
    # Both splits: the eval steps hold 2 solver and 2 judge texts, and no note.
    res = cli("metrics", "format", run, "--spec", spec, "--format", "csv")
    assert res.exit_code == 0 and "'judge'" not in res.stderr, res.stderr
    evals = [r for r in _csv(res.stdout) if r["split"] == "eval"]
    assert [(r["step"], r["texts"]) for r in evals] == [("0", "4"), ("4", "4"), ("8", "4")]
    # Doctor reads train: not refused; the note says the same under its option.
    res = cli("doctor", run, "--set", f"format_spec={spec}", "--format", "json")
    assert res.exit_code == 0, res.stderr
    notes = json.loads(res.stdout)["notes"]
    assert any(n.startswith(f"--set format_spec={spec}: its roles name 'judge'") for n in notes), notes


def test_doctor_judges_format_drift_on_the_roles_that_speak(tmp_path: Path, cli) -> None:
    """``_collapse_run``'s train split (the solver's fall from 16/16 to 12/16 at step 12), and an eval split where
    a judge speaks: the spec of roles [solver, judge] finds the solver's format_drift at step 12, with the note."""
    run = _collapse_run(tmp_path / "run", judge=None)
    with RunWriter(run, process_index=1, durable=False) as w:  # another process: the train steps are kept
        w.log_samples(0, [{"reward": 1.0, "messages": _msgs(OK, "ok")} for _ in range(2)], split="eval")
    spec = tmp_path / "s.toml"
    spec.write_text('name = "m"\nmatch = \'\\s*<think>.*</answer>\\s*\'\nroles = ["solver", "judge"]\n')
    res = cli("doctor", run, "--set", f"format_spec={spec}", "--format", "json")
    assert res.exit_code == 1, res.stderr  # a warning: the drift (not 2, a refused spec)
    out = json.loads(res.stdout)
    [drift] = [f for f in out["findings"] if f["kind"] == "format_drift"]
    assert drift["onset_step"] == 12 and math.isclose(drift["evidence"]["before"], 1.0), drift
    assert math.isclose(drift["evidence"]["after"], 0.75), drift
    assert any("its roles name 'judge'" in n and "split eval" in n for n in out["notes"]), out["notes"]


def test_a_spec_roles_error_names_the_split_alike_in_metrics_and_plot(tmp_path: Path, cli) -> None:
    """One split, no --split: metrics and plot say the same split (metrics said 'the run', plot 'split train')."""
    run = _debate(tmp_path / "run")
    typo = _spec(tmp_path / "typo.toml", ["solvr"])
    said = []
    for args in (["metrics", "format", run], ["plot", run, "--what", "format", "-o", tmp_path / "p.png"]):
        res = cli(*args, "--spec", typo)
        assert res.exit_code == 2, (res.stdout, res.stderr)
        [line] = res.stderr.strip().splitlines()
        said.append(line)
    assert said[0] == said[1], said
    assert "who speaks in no message of split train:" in said[0], said[0]


# -- 1b, 4. the notes of the texts skipped ----------------------------------------------------------------------
def test_the_skipped_note_of_a_one_role_spec_counts_samples(tmp_path: Path, cli) -> None:
    """Two steps of 4 samples; the solver is absent from 3 of them: 3 samples skipped, said as samples."""
    root = tmp_path / "run"
    with RunWriter(root, durable=False) as w:
        for step in range(2):
            rows = [{"reward": 1.0, "group_id": "g", "messages": _msgs(OK)} for _ in range(4)]
            if step == 0:
                rows[0]["messages"] = rows[1]["messages"] = _msgs(None)
            else:
                rows[3]["messages"] = _msgs(None)
            w.log_samples(step, rows)
    spec = _spec(tmp_path / "s.toml", ["solver"])
    res = cli("metrics", "format", root, "--spec", spec, "--format", "csv")
    assert res.exit_code == 0, res.stderr
    assert [(r["texts"], r["no_text"]) for r in _csv(res.stdout)] == [("2", "2"), ("3", "1")]
    [note] = [n for n in _notes(res.stderr) if "have no text" in n]
    assert note.startswith("3 sample(s) have no text for --text auto"), note
    assert "per sample and role" not in note and "solver" in note


def test_the_skipped_note_of_a_spec_of_two_roles_says_its_unit(tmp_path: Path, cli) -> None:
    """One step: the judge's only turn is a bare tool call in 2 samples (2 texts missing), and one sample holds
    the user's message alone (none of the roles speaks: once): 3."""
    root = tmp_path / "run"
    rows = [{"reward": 1.0, "group_id": "g", "messages": _msgs(OK, OK)} for _ in range(5)]
    rows[0]["messages"] = rows[1]["messages"] = _msgs(OK, judge_call=True)
    rows[2]["messages"] = _msgs(None, None)
    with RunWriter(root, durable=False) as w:
        w.log_samples(0, rows)
    spec = _spec(tmp_path / "s.toml", ["solver", "judge"])
    res = cli("metrics", "format", root, "--spec", spec, "--format", "csv")
    assert res.exit_code == 0, res.stderr
    # Solver texts in samples 0, 1, 3, 4 and judge texts in 3, 4: 6 texts.
    [row] = _csv(res.stdout)
    assert (row["texts"], row["no_text"]) == ("6", "3")
    [note] = [n for n in _notes(res.stderr) if "have no text" in n]
    assert note.startswith("3 text(s) (per sample and role of the spec; once for a sample where none of them")


def test_diversity_by_role_note_speaks_of_no_spec(tmp_path: Path, cli) -> None:
    root = tmp_path / "run"
    rows = [{"reward": 1.0, "group_id": "g", "messages": _msgs(f"answer {i}", f"judge {i}")} for i in range(4)]
    rows[0]["messages"] = _msgs("answer x", judge_call=True)
    with RunWriter(root, durable=False) as w:
        w.log_samples(0, rows)
    res = cli("metrics", "diversity", root, "--by", "role", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    [note] = [n for n in _notes(res.stderr) if "have no text" in n]
    assert note.startswith("1 text(s) (per sample and role)") and "spec" not in note, note


# -- 2. one group id, two prompts ------------------------------------------------------------------------------
def _two_processes(root: Path, ids: tuple[str, str] = ("0", "0"), prompts: tuple[str, str] | None = None) -> None:
    for p in (0, 1):
        prompt = (prompts or ("prompt of process 0", "prompt of process 1"))[p]
        with RunWriter(root, name="gc", process_index=p, durable=False) as w:
            rows = [
                {"reward": 1.0, "group_id": ids[p], "prompt": prompt, "completion": f"collapsed answer {p}"}
                for _ in range(4)
            ]
            w.log_samples(0, rows)


def _distinct(texts: list[str], n: int) -> Fraction:
    grams = [tuple(t.split()[i : i + n]) for t in texts for i in range(len(t.split()) - n + 1)]
    return Fraction(len(set(grams)), len(grams))


def test_one_group_id_of_two_prompts_in_two_files_is_split_by_file_with_a_warning(tmp_path: Path, cli) -> None:
    root = tmp_path / "run"
    _two_processes(root)
    per_prompt = [[f"collapsed answer {p}"] * 4 for p in (0, 1)]
    want = {n: sum(_distinct(t, n) for t in per_prompt) / 2 for n in (1, 2)}
    assert want == {1: Fraction(1, 4), 2: Fraction(1, 4)}  # pooled, one group: 4/24 and 3/16
    res = cli("metrics", "diversity", root, "--format", "csv")
    assert res.exit_code == 0, res.stderr
    [row] = _csv(res.stdout)
    assert (row["groups"], row["texts"]) == ("2", "8")
    assert math.isclose(float(row["distinct_1"]), want[1]) and math.isclose(float(row["distinct_2"]), want[2])
    warnings = [x for x in res.stderr.splitlines() if x.startswith("warning: ")]
    assert len(warnings) == 1, res.stderr
    assert "1 group id(s) of a step hold different prompts in different files" in warnings[0]
    assert "group_id '0' at step 0 of split train, in 2 files: " in warnings[0]
    assert "prompt group" not in warnings[0]
    res = cli("metrics", "diversity", root, "--by", "group", "--format", "csv")
    assert {(r["group"], r["texts"]) for r in _csv(res.stdout)} == {("0/part-0", "4"), ("0/part-1", "4")}


def _seeded(root: Path) -> list[list[str]]:
    """One file: 3 steps of 2 groups (task0, task1) of 4 rollouts, each prompt with its own seed; the texts per
    group, returned in order."""
    groups = []
    with RunWriter(root, durable=False) as w:
        for step in range(3):
            rows = []
            for g in range(2):
                texts = [f"path {i} {g} {step} x{i * i}" if i < 3 else f"path 0 {g} {step} x0" for i in range(4)]
                groups.append(texts)
                rows += [
                    {
                        "reward": 1.0,
                        "group_id": f"task{g}",
                        "prompt": f"Solve maze {g}. seed={step}{g}{i}",
                        "completion": t,
                    }
                    for i, t in enumerate(texts)
                ]
            w.log_samples(step, rows)
    return groups


def test_a_group_whose_prompts_differ_within_one_file_is_one_group(tmp_path: Path, cli) -> None:
    """Each rollout's prompt has its own env seed: one group per id, as written; no warning."""
    groups = _seeded(tmp_path / "run")
    res = cli("metrics", "diversity", tmp_path / "run", "--by", "step", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    assert "warning" not in res.stderr and "over all texts" not in res.stderr, res.stderr
    rows = _csv(res.stdout)
    assert [(r["step"], r["groups"], r["texts"]) for r in rows] == [(str(s), "2", "8") for s in range(3)]
    for step, row in enumerate(rows):
        mine = groups[2 * step : 2 * step + 2]
        for n in (1, 2):
            want = sum(_distinct(t, n) for t in mine) / 2
            assert math.isclose(float(row[f"distinct_{n}"]), want), (step, n, row)
        unique = sum(Fraction(len(set(t)), len(t)) for t in mine) / 2
        assert math.isclose(float(row["unique_frac"]), unique)


@pytest.mark.parametrize("files", [1, 2])
def test_prompts_that_differ_in_white_space_alone_are_one_prompt(tmp_path: Path, cli, files) -> None:
    """One id, 4 samples of the same answer; half of the prompts end in a space (and a newline), in one file or
    in two processes' files: one group of 4 texts, unique_frac 1/4."""
    root = tmp_path / "run"
    prompts = ["What is 2+2?", "What is  2+2? \n"]
    for p in range(files):
        with RunWriter(root, name="ws", process_index=p, durable=False) as w:
            mine = range(4) if files == 1 else range(2 * p, 2 * p + 2)
            rows = [{"reward": 1.0, "group_id": "g", "prompt": prompts[i // 2], "completion": "same"} for i in mine]
            w.log_samples(0, rows)
    res = cli("metrics", "diversity", root, "--by", "group", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    [row] = _csv(res.stdout)
    assert (row["group"], row["texts"], float(row["unique_frac"])) == ("g", "4", 0.25)
    assert "warning" not in res.stderr, res.stderr


def test_files_that_share_a_prompt_stay_one_group(tmp_path: Path, cli) -> None:
    """Three processes under id 0: two share prompt A (one group's rollouts), the third asks B: 2 groups, 8 and 4."""
    root = tmp_path / "run"
    for p, prompt in enumerate(["A", "A", "B"]):
        with RunWriter(root, name="three", process_index=p, durable=False) as w:
            w.log_samples(
                0, [{"reward": 1.0, "group_id": "0", "prompt": prompt, "completion": f"t{p} {i}"} for i in range(4)]
            )
    res = cli("metrics", "diversity", root, "--by", "group", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    assert {(r["group"], r["texts"]) for r in _csv(res.stdout)} == {("0/part-0", "8"), ("0/part-1", "4")}


@pytest.mark.parametrize("real", ["g/prompt-0", "g/part-0"])
def test_a_split_groups_label_is_never_a_real_ids(tmp_path: Path, cli, real) -> None:
    """Process 0 writes id g (prompt P1) and an id named like a part's label (its own prompt P3); process 1 writes
    id g (P2). Three groups of 2 texts each: the real id is not pooled with a part of g."""
    root = tmp_path / "run"
    for p in (0, 1):
        with RunWriter(root, name="collide", process_index=p, durable=False) as w:
            rows = [{"reward": 1.0, "group_id": "g", "prompt": f"P{p + 1}", "completion": f"a{p} a{p}"}] * 2
            if p == 0:
                rows += [{"reward": 1.0, "group_id": real, "prompt": "P3", "completion": c} for c in ("x y", "z w")]
            w.log_samples(0, rows)
    res = cli("metrics", "diversity", root, "--by", "group", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    rows = _csv(res.stdout)
    assert sorted(r["texts"] for r in rows) == ["2", "2", "2"], rows
    [mine] = [r for r in rows if r["group"] == real]
    assert float(mine["unique_frac"]) == 1.0  # "x y" and "z w" alone, not pooled with g's "a0 a0"


def test_no_warning_where_no_text_of_a_split_id_is_measured(tmp_path: Path, cli) -> None:
    """The two processes' samples have no messages: --text messages measures nothing, and warns of nothing."""
    root = tmp_path / "run"
    _two_processes(root)
    res = cli("metrics", "diversity", root, "--text", "messages", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    assert [r["texts"] for r in _csv(res.stdout)] == ["0"]
    assert "warning" not in res.stderr, res.stderr


@pytest.mark.parametrize(
    ("ids", "prompts", "groups"),
    [(("p0-0", "p1-0"), None, "2"), (("0", "0"), ("the same prompt", "the same prompt"), "1")],
)
def test_ids_of_one_prompt_each_are_kept(tmp_path: Path, cli, ids, prompts, groups) -> None:
    """Ids of their own per process, or one id whose samples share one prompt: no warning, the ids as written."""
    root = tmp_path / "run"
    _two_processes(root, ids, prompts)
    res = cli("metrics", "diversity", root, "--format", "csv")
    assert res.exit_code == 0, res.stderr
    assert _csv(res.stdout)[0]["groups"] == groups
    assert "warning" not in res.stderr


# -- 3. the single-set helpers ---------------------------------------------------------------------------------
def test_single_set_helpers_skip_missing_texts_as_the_cli_does() -> None:
    from runlog.metrics.diversity import diversity_metrics

    for texts in ([None, "a b"], ["a b", float("nan")]):
        d = diversity_metrics(texts)
        # One text of two tokens: no other text to compare it with (no Self-BLEU).
        assert (d["texts"], d["len_mean"], d["self_bleu_2"]) == (1, 2.0, None), texts
    # An empty string is a text (a generation cut off before its first word).
    assert diversity_metrics(["", "a b"])["texts"] == 2


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "longdouble"])
def test_single_set_helpers_skip_a_numpy_nan_of_any_width(dtype: str) -> None:
    import numpy as np

    from runlog.metrics.diversity import diversity_metrics, self_bleu_scores

    nan = getattr(np, dtype)("nan")
    assert diversity_metrics([nan, "a b"])["texts"] == 1
    assert len(self_bleu_scores(["a b c", nan, "a b d"], 2)) == 2


def test_single_set_helpers_refuse_a_bare_string_and_unsupported_orders() -> None:
    from runlog.metrics import diversity as D

    with pytest.raises(TypeError, match="bare str"):
        D.diversity_metrics("the answer")
    with pytest.raises(TypeError, match=r"texts\[1\] is not a string"):
        D.distinct_n(["a b", 3], 1)
    texts = ["a b c d e f", "a b c d e g"]
    for f, n, said in [
        (D.distinct_n, 5, "1, 2, 3, 4"),
        (D.entropy_n, 0, "1, 2, 3, 4"),
        (D.distinct_li2016_n, True, "1, 2, 3, 4"),
        (D.self_bleu_n, 1, "2, 3, 4"),
    ]:
        with pytest.raises(ValueError, match=f"n={n!r} is not supported; n is one of {said}"):
            f(texts, n)
    with pytest.raises(ValueError, match="1 or more"):
        D.self_bleu_scores(texts, 0)


# -- 5. the help's example, and one rule failed by every text --------------------------------------------------
def test_the_format_help_example_shows_adherence_on_the_bundled_run(cli) -> None:
    res = cli("metrics", "format", "--help")
    [example] = [x.strip() for x in res.stdout.splitlines() if "--spec" in x and "sample_runs/debate_grpo" in x]
    args = example.split()[2:]  # past "runlog metrics"
    assert args[1] == "sample_runs/debate_grpo"
    args[1] = str(SAMPLE_RUN)
    out = cli("metrics", *args, "--format", "csv")
    assert out.exit_code == 0, out.stderr
    adherence = [float(r["adherence"]) for r in _csv(out.stdout)]
    assert any(a > 0 for a in adherence), adherence


# open-r1's format_reward (src/open_r1/rewards.py), as written there.
OPEN_R1 = r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$"


def _one_step(root: Path, texts: list[str]) -> None:
    with RunWriter(root, durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "group_id": "g", "completion": t} for t in texts])


def test_every_text_failing_one_rule_is_said(tmp_path: Path, cli) -> None:
    one_line = ["<think>a</think><answer>b</answer>", "<think>c d</think><answer>e</answer>"]
    assert not any(re.match(OPEN_R1, t, re.DOTALL | re.MULTILINE) for t in one_line)
    _one_step(tmp_path / "a", one_line)
    res = cli("metrics", "format", tmp_path / "a", "--spec", "open-r1", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    said = [n for n in _notes(res.stderr) if n.startswith("every text (2) fails open-r1 at the same first rule")]
    assert len(said) == 1 and "pattern" in said[0], res.stderr
    # One text in open-r1's format: not every text fails, and nothing is said.
    lines = [*one_line, "<think>\na\n</think>\n<answer>\nb\n</answer>"]
    assert sum(bool(re.match(OPEN_R1, t, re.DOTALL | re.MULTILINE)) for t in lines) == 1
    _one_step(tmp_path / "b", lines)
    res = cli("metrics", "format", tmp_path / "b", "--spec", "open-r1", "--format", "csv")
    assert res.exit_code == 0 and not [n for n in _notes(res.stderr) if n.startswith("every text")], res.stderr
