"""Which text the metrics read and what they say about it, after the fourth audit (expected figures counted
here, with plain regexes, from the rows written):

- runs served with a reasoning parser keep the reasoning in the messages' ``reasoning`` field: a think spec then
  fails every text, and ``metrics format``, doctor, plot and report say why (they said nothing);
  ``--text auto+reasoning`` puts the reasoning back as ``<think>…</think>``;
- speakers written in the role field (``{"role": "agent_0"}``) give no ``auto`` text: the note names them and
  suggests ``--text role:NAME`` (which now reads them) or ``--text completion``;
- the diversity plot (and the report's) draws each role's own texts, what ``diversity_collapse`` judges per role
  (it drew the policy's text only, under a verifier's onset);
- ``--by role`` with a text that has no speaker says so; ``--text answer`` skips what ``auto`` skips and counts
  the texts that are the completion column as written;
- a format reward component with no spread within any step (1.0 for every sample, then 0.0) is a drift (it was
  skipped: its within-step SD, the unit, was 0).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runlog import open_run
from runlog.analysis.doctor import diagnose
from runlog.writer import RunWriter

# think-answer-strict, as docs/metrics.md states it, for texts without cite tags and CR: one think block, then one
# answer block, both non-empty, only whitespace around them.
STRICT = re.compile(r"\s*<think>(.*)</think>\s*<answer>(.*)</answer>\s*", re.S)


def strict_ok(text: str) -> bool:
    m = STRICT.fullmatch(text)
    counts = [text.count(t) for t in ("<think>", "</think>", "<answer>", "</answer>")]
    return bool(m) and counts == [1, 1, 1, 1] and all(g.strip() for g in m.groups())


def think_tokens(text: str) -> int | None:
    m = re.search(r"<think>(.*?)</think>", text, re.S)
    return len(m.group(1).split()) if m else None


def note_lines(stderr: str) -> list[str]:
    return [x[len("note: ") :] for x in stderr.splitlines() if x.startswith("note: ")]


# -- (a) the reasoning field ---------------------------------------------------------------------------------
def reasoning_run(root: Path, steps: int = 2) -> list[list[tuple[str | None, str | None]]]:
    """A run served with a reasoning parser: per step, four samples whose assistant turn holds the answer in its
    content and the reasoning in ``reasoning_content``; one of them cut off while reasoning (content empty), one
    with no reasoning. Returns (content, reasoning) per sample, per step."""
    written = []
    with RunWriter(root, roles=["solver"], durable=False) as w:
        for step in range(steps):
            turns: list[tuple[str | None, str | None]] = [
                (f"<answer>{step}</answer>", f"I add {step} and {step} here"),
                (f"<answer>{step + 1}</answer>", f"two more words {step}"),
                ("", f"still thinking about {step} when cut"),
                (f"<answer>{step + 2}</answer>", None),
            ]
            rows = []
            for i, (content, reasoning) in enumerate(turns):
                msg = {"role": "assistant", "content": content}
                if reasoning is not None:
                    msg["reasoning_content"] = reasoning
                rows.append(
                    {
                        "reward": 1.0,
                        "sample_id": f"s{step}-{i}",
                        "group_id": f"g{step}",
                        "messages": [{"role": "user", "content": f"task {step}"}, msg],
                    }
                )
            w.log_samples(step, rows)
            written.append(turns)
    return written


def test_think_spec_on_reasoning_field_is_said_by_metrics_format(tmp_path: Path, cli) -> None:
    written = reasoning_run(tmp_path / "run")
    texts = [c for turns in written for c, _ in turns]
    held = sum(1 for turns in written for _, r in turns if r and r.strip())
    tagged = sum("<think>" in t for t in texts)
    r = cli("metrics", "format", tmp_path / "run", "--format", "json")
    assert r.exit_code == 0
    rows = json.loads(r.stdout)
    assert [x["adherence"] for x in rows] == [0.0, 0.0] and all(x["think_tokens_mean"] is None for x in rows)
    [note] = [x for x in note_lines(r.stderr) if "reasoning" in x]
    assert f"{tagged:,} of {len(texts):,} texts have one, while {held:,} of them" in note
    assert "--text auto+reasoning" in note
    # A spec without think tags, and a custom spec with one, alike.
    calls = note_lines(cli("metrics", "format", tmp_path / "run", "--spec", "tool-call-json").stderr)
    assert not [x for x in calls if "reasoning" in x], calls
    spec = tmp_path / "mine.toml"
    spec.write_text('tags = ["think", "answer"]\n')
    r = cli("metrics", "format", tmp_path / "run", "--spec", spec)
    assert any("mine looks for <think> tags" in x for x in note_lines(r.stderr))


def test_auto_plus_reasoning_puts_the_reasoning_back(tmp_path: Path, cli) -> None:
    written = reasoning_run(tmp_path / "run")
    r = cli("metrics", "format", tmp_path / "run", "--text", "auto+reasoning", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert not [x for x in note_lines(r.stderr) if "reasoning" in x]
    for row, turns in zip(json.loads(r.stdout), written, strict=True):
        # As the model wrote it before the parser cut it at the tags; no close tag without content.
        rebuilt = [(f"<think>{rs}</think>{c}" if c else f"<think>{rs}") if rs else c or "" for c, rs in turns]
        assert row["texts"] == len(rebuilt)
        assert row["adherence"] == pytest.approx(sum(map(strict_ok, rebuilt)) / len(rebuilt))
        counts = [n for n in map(think_tokens, rebuilt) if n is not None]
        assert row["think_tokens_mean"] == pytest.approx(sum(counts) / len(counts))
    per = cli("metrics", "format", tmp_path / "run", "--text", "auto+reasoning", "--per-sample", "--format", "json")
    assert [x["failed_rule"] for x in json.loads(per.stdout)][:4] == [None, None, "one_think", "one_think"]


def test_doctor_plot_and_report_say_the_reasoning_field(tmp_path: Path, cli) -> None:
    pytest.importorskip("matplotlib")
    from runlog.report import build_report

    reasoning_run(tmp_path / "run", steps=10)
    d = diagnose(open_run(tmp_path / "run"))
    said = [n for n in d.notes if "reasoning" in n]
    assert len(said) == 1 and "runlog metrics format RUN --spec think-answer-strict --text auto+reasoning" in said[0]
    r = cli("plot", tmp_path / "run", "--what", "format", "-o", tmp_path / "f.png")
    assert r.exit_code == 0 and any("auto+reasoning" in x for x in note_lines(r.stderr))
    page = build_report(open_run(tmp_path / "run"))
    assert page.count("--text auto+reasoning puts the reasoning back") == 1  # the note, once
    assert "their reasoning is in the messages&#x27; `reasoning` field" in page  # the format plot's caption


# -- (b) speakers in the role field -------------------------------------------------------------------------
GOOD = "<think>work {k}</think><answer>{k}</answer>"


def role_field_run(root: Path, steps: int = 2, completion: bool = True) -> list[str]:
    """Speakers written in the role field (``agent_0``, ``agent_1``), the run's roles solver and verifier;
    returns agent_0's texts."""
    texts = []
    with RunWriter(root, roles=["solver", "verifier"], durable=False) as w:
        for step in range(steps):
            rows = []
            for k in range(4):
                text = GOOD.format(k=k) if k else "no tags"
                texts.append(text)
                row = {
                    "reward": float(k),
                    "sample_id": f"s{step}-{k}",
                    "group_id": f"g{step}",
                    "messages": [
                        {"role": "user", "content": "Q"},
                        {"role": "agent_0", "content": text},
                        {"role": "agent_1", "content": "ok"},
                    ],
                }
                if completion:
                    row["completion"] = text
                rows.append(row)
            w.log_samples(step, rows)
    return texts


@pytest.mark.parametrize("command", ["format", "diversity"])
def test_speakers_in_the_role_field_are_named_in_the_note(tmp_path: Path, cli, command: str) -> None:
    role_field_run(tmp_path / "run")
    r = cli("metrics", command, tmp_path / "run")
    assert r.exit_code == 0
    [note] = note_lines(r.stderr)
    assert "no assistant turn" in note and "agent_0, agent_1" in note and "the run's roles are solver, verifier" in note
    assert "--text role:agent_0" in note and "--text completion" in note


def test_role_text_reads_a_speaker_in_the_role_field(tmp_path: Path, cli) -> None:
    texts = role_field_run(tmp_path / "run")
    r = cli("metrics", "format", tmp_path / "run", "--text", "role:agent_0", "--by", "split", "--format", "json")
    assert r.exit_code == 0, r.stderr
    [row] = json.loads(r.stdout)
    assert row["texts"] == len(texts) and row["adherence"] == pytest.approx(sum(map(strict_ok, texts)) / len(texts))
    # A prompt's role is never a speaker's.
    assert cli("metrics", "format", tmp_path / "run", "--text", "role:user").exit_code == 2


def test_doctor_and_report_name_the_speakers(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from runlog.report import build_report

    role_field_run(tmp_path / "run", steps=10, completion=False)
    d = diagnose(open_run(tmp_path / "run"))
    [note] = [n for n in d.notes if "no assistant turn" in n]
    assert "--text role:agent_0" in note and "--text completion" not in note  # no completion column to suggest
    page = build_report(open_run(tmp_path / "run"))
    assert re.search(r'id="plot-diversity"><b>[^<]*</b>: no sample has the policy&#x27;s text', page)


# -- (c) the diversity plot shows each role --------------------------------------------------------------------
def verifier_collapse_run(root: Path) -> dict[str, list[float]]:
    """16 steps, two prompt groups of four: the solver always writes four texts per group; the verifier writes
    four until step 8, then one. Returns each role's unique-text share per step (mean over groups)."""
    unique: dict[str, list[float]] = {"solver": [], "verifier": []}
    with RunWriter(root, roles=["solver", "verifier"], durable=False) as w:
        for step in range(16):
            rows, said = [], {"solver": {}, "verifier": {}}
            for i in range(8):
                g = i // 4
                solver = f"solver words {step} {i}"
                verifier = "check ok" if step >= 8 else f"check {step} {i} fine"
                said["solver"].setdefault(g, []).append(solver)
                said["verifier"].setdefault(g, []).append(verifier)
                rows.append(
                    {
                        "reward": float(i % 2),
                        "sample_id": f"s{step}-{i}",
                        "group_id": f"s{step}-g{g}",
                        "solver_reward": float(i % 2),
                        "verifier_reward": 0.5,
                        "messages": [
                            {"role": "user", "content": f"task {g}"},
                            {"role": "assistant", "name": "solver", "content": solver},
                            {"role": "assistant", "name": "verifier", "content": verifier},
                        ],
                    }
                )
            w.log_samples(step, rows)
            for role, groups in said.items():
                unique[role].append(sum(len(set(t)) / len(t) for t in groups.values()) / len(groups))
    return unique


def test_diversity_plot_draws_each_roles_texts(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from runlog.plots import make_figure

    unique = verifier_collapse_run(tmp_path / "run")
    run = open_run(tmp_path / "run")
    assert any(f.kind == "diversity_collapse" and f.role == "verifier" for f in diagnose(run).findings)
    fig = make_figure(run, "diversity", window=1)
    first = fig.axes[0]
    drawn = {
        line.get_label(): list(line.get_ydata()) for line in first.get_lines() if not line.get_label().startswith("_")
    }
    assert drawn["solver"] == pytest.approx(unique["solver"]) and drawn["verifier"] == pytest.approx(unique["verifier"])
    assert "each role's own texts" in fig._suptitle.get_text()
    pooled = make_figure(run, "diversity", window=1, by="none")  # the policy's text, as before
    [line] = [x for x in pooled.axes[0].get_lines() if not x.get_label().startswith("_")]
    assert list(line.get_ydata()) == pytest.approx(unique["solver"])


def test_report_diversity_plot_is_per_role(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from runlog.report import build_report

    verifier_collapse_run(tmp_path / "run")
    page = build_report(open_run(tmp_path / "run"))
    assert "one line per role, each role&#x27;s own texts (what diversity_collapse judges)" in page


# -- (d) --by role without a speaker, --text answer -------------------------------------------------------------
def answer_run(root: Path) -> dict[str, list[str | None]]:
    """Five samples: two whose solver text has an answer block, one without (its completion an extracted
    answer), one whose only turn is the verifier's (its completion holds the prompt and another speaker's
    words: ``auto`` skips it), one without messages. Returns the expected ``answer`` texts."""
    rows = [
        ("<think>a</think><answer>4</answer>", "4", True),
        ("<think>b</think><answer>5</answer>", "5", True),
        ("the answer is 6", "6", True),
        (None, "PROMPT plus verifier words", True),
        (None, "<answer>7</answer>", False),
    ]
    with RunWriter(root, roles=["solver", "verifier"], durable=False) as w:
        samples = []
        for i, (solver, completion, has_messages) in enumerate(rows):
            messages = [{"role": "user", "content": "Q"}]
            if solver is not None:
                messages.append({"role": "assistant", "name": "solver", "content": solver})
            messages.append({"role": "assistant", "name": "verifier", "content": "fine"})
            sample = {"reward": 1.0, "sample_id": f"s{i}", "group_id": "g", "completion": completion}
            if has_messages:
                sample["messages"] = messages
            samples.append(sample)
        w.log_samples(0, samples)
    expected = []
    fell = 0
    for solver, completion, has_messages in rows:
        auto = solver if has_messages else completion
        if auto is None:
            continue  # no policy turn: no text, no answer
        m = re.search(r"<answer>(.*)</answer>", auto, re.S)
        expected.append(m.group(1) if m else completion)
        fell += m is None
    return {"answers": expected, "fell": [fell]}


def test_answer_skips_what_auto_skips_and_counts_completions(tmp_path: Path, cli) -> None:
    from runlog.analysis.texts import texts_frame

    want = answer_run(tmp_path / "run")
    got = texts_frame(open_run(tmp_path / "run"), "answer")["text"].drop_nulls().to_list()
    assert got == want["answers"]
    r = cli("metrics", "diversity", tmp_path / "run", "--text", "answer", "--over", "set", "--format", "json")
    [row] = json.loads(r.stdout)
    assert row["texts"] == len(want["answers"])
    assert any(
        f"{want['fell'][0]} of {len(want['answers'])} texts are the completion column" in x
        for x in note_lines(r.stderr)
    )


@pytest.mark.parametrize("text", ["answer", "completion"])
@pytest.mark.parametrize("command", ["format", "diversity"])
def test_by_role_with_a_text_without_speaker_is_said(tmp_path: Path, cli, text: str, command: str) -> None:
    answer_run(tmp_path / "run")
    r = cli("metrics", command, tmp_path / "run", "--text", text, "--by", "role", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert [x["role"] for x in json.loads(r.stdout)] == [None]
    assert any(f"--text {text} has no speaker" in x for x in note_lines(r.stderr))
    r = cli("metrics", command, tmp_path / "run", "--by", "role", "--format", "json")
    assert not any("has no speaker" in x for x in note_lines(r.stderr))


# -- (d) a format component without spread within steps -------------------------------------------------------
def test_format_component_without_spread_drifts(tmp_path: Path) -> None:
    """No text at all: only the component can tell; it is 1.0 for every sample of steps 0-7, then 0.0."""
    with RunWriter(tmp_path / "run", roles=["solver"], durable=False) as w:
        for step in range(16):
            w.log_samples(
                step,
                [
                    {
                        "reward": 0.5 + 0.1 * (i % 3),
                        "sample_id": f"s{step}-{i}",
                        "group_id": f"g{step}-{i // 4}",
                        "solver_reward": 0.5 + 0.1 * (i % 3),
                        "reward_components": {"format": 1.0 if step < 8 else 0.0, "correct": 0.5 + 0.1 * (i % 3)},
                    }
                    for i in range(8)
                ],
            )
    found = [f for f in diagnose(open_run(tmp_path / "run")).findings if f.kind in ("format_drift", "component_shift")]
    assert [(f.kind, f.onset_step, f.evidence["component"]) for f in found] == [("format_drift", 8, "format")]
    assert found[0].evidence["before"] == 1.0 and found[0].evidence["after"] == 0.0
    assert "of its range over the steps" in found[0].message


def test_the_suggested_role_text_is_quoted_for_the_shell(tmp_path: Path, cli) -> None:
    with RunWriter(tmp_path / "run", roles=["solver"], durable=False) as w:
        msgs = [{"role": "user", "content": "Q"}, {"role": "agent [0]", "content": "A"}]
        w.log_samples(0, [{"reward": 1.0, "sample_id": "s", "messages": msgs}])
    r = cli("metrics", "format", tmp_path / "run")
    [note] = note_lines(r.stderr)
    assert "--text 'role:agent [0]'" in note, note
