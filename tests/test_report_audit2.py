"""The report and render-trajectory after the second audit (runs built with ``RunWriter``; numbers checked
against pyarrow reading the files directly):

- D1: a trajectory card holds every place its sample holds, even when it is the best and the worst of one role;
- D2: a file whose text only cannot be read leaves the report's numbers as ``summarize`` counts them;
- D3: the default render falls back from a last step that cannot be read, and says so;
- D4: long component names draw without matplotlib's layout warning;
- D5: diversity where no prompt group holds two texts is said to be over all texts, as ``metrics diversity``.
"""

from __future__ import annotations

import html
import json
import math
import re
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("matplotlib", reason="the report's plots need matplotlib: pip install 'runlog[plot]'")

from runlog import open_run  # noqa: E402
from runlog.analysis.doctor import DoctorConfig  # noqa: E402
from runlog.analysis.summarize import summarize  # noqa: E402
from runlog.report import build_report  # noqa: E402
from runlog.writer import RunWriter  # noqa: E402

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def text_of(page: str) -> str:
    """The page as one line of text: images dropped, tags removed, entities decoded."""
    page = re.sub(r"data:image/png;base64,[^\"]+", "", page)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def cards(page: str) -> dict[str, str]:
    """Each trajectory card's sample id and its titles, as text."""
    out = {}
    for m in re.finditer(
        r'<section class="traj"[^>]*>\s*<h3>sample (.*?)</h3>\s*<div class="titles">(.*?)</div>', page
    ):
        out[html.unescape(m.group(1))] = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", m.group(2))).split())
    return out


def section(page: str, anchor: str) -> str:
    start = page.index(f'<h2 id="{anchor}">')
    end = page.find("<h2 ", start + 5)
    return page[start : end if end > 0 else len(page)]


# -- D1 -------------------------------------------------------------------------------------------------------


def test_a_card_holds_every_place_even_when_one_role_ranks_it_best_and_worst(tmp_path: Path) -> None:
    """The judge gives every sample 0.5 (its best and worst are one sample, a0, first by id); the solver ranks
    a0 worst. The card of a0 says both: "best and worst by judge's reward" and "worst by solver's reward"."""
    root = tmp_path / "run"
    with RunWriter(root, name="d1", roles=["solver", "judge"]) as w:
        for step in range(2):
            w.log_samples(
                step,
                [
                    {
                        "reward": 0.1 * (i + 1),
                        "sample_id": f"a{i}",
                        "group_id": f"g{step}",
                        "prompt": "p",
                        "completion": f"c{i}",
                        "solver_reward": 0.1 * (i + 1),
                        "solver_kl": 0.01,
                        "judge_reward": 0.5,
                        "judge_kl": 0.02,
                    }
                    for i in range(4)
                ],
            )
    # Independently: the last step's solver worst and judge rewards, read with pyarrow.
    rows = pq.read_table(sorted((root / "samples" / "train").glob("step_*1.*.parquet"))[0]).to_pylist()
    solver = {r["sample_id"]: next(x["reward"] for x in r["roles"] if x["role"] == "solver") for r in rows}
    judge = {next(x["reward"] for x in r["roles"] if x["role"] == "judge") for r in rows}
    worst = min(solver, key=lambda k: (solver[k], k))
    assert worst == "a0" and judge == {0.5}
    page = build_report(open_run(root))
    titles = cards(page)
    assert set(titles) == {"a0", "a3"}  # each chosen sample once
    assert "best and worst by judge's reward (0.5)" in titles["a0"]
    assert f"worst by solver's reward ({solver['a0']:.4g})" in titles["a0"]
    assert titles["a3"] == f"best by solver's reward ({solver['a3']:.4g})"
    text = text_of(section(page, "trajectories"))
    assert "By judge's reward, the best and the worst are this one sample: every sample ranks the same." in text


def test_a_card_of_the_only_sample_says_why_per_role(tmp_path: Path) -> None:
    """One sample: for every role it is the best and the worst, the only one with a valid reward."""
    root = tmp_path / "run"
    with RunWriter(root, name="one", roles=["solver", "judge"]) as w:
        w.log_samples(0, [{"reward": 1.0, "sample_id": "x", "prompt": "p", "completion": "c", "solver_reward": 1.0,
                           "judge_reward": 0.0}])  # fmt: skip
    page = build_report(open_run(root))
    assert cards(page) == {"x": "best and worst by solver's reward (1) best and worst by judge's reward (0)"}
    assert (
        "By solver's reward and judge's reward, the best and the worst are this one sample: it is the only one "
        "with a valid reward." in text_of(page)
    )


# -- D2, D3: a file whose text column cannot be read ------------------------------------------------------------


def corrupt_column(path: Path, column: str) -> None:
    """Damage the data pages of one column of a Parquet file; the footer and the other columns stay intact."""
    md = pq.ParquetFile(path).metadata
    data = bytearray(path.read_bytes())
    for g in range(md.num_row_groups):
        for i in range(md.num_columns):
            chunk = md.row_group(g).column(i)
            if chunk.path_in_schema.split(".")[0] != column:
                continue
            start = chunk.dictionary_page_offset or chunk.data_page_offset
            for j in range(start, start + chunk.total_compressed_size):
                data[j] ^= 0x5A
    path.write_bytes(bytes(data))


def corrupt_pages(path: Path) -> None:
    """Damage every data page of a Parquet file (the footer stays intact: discovery cannot tell)."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    for i in range(8, len(data) - footer - 8):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def three_role_run(root: Path, steps: int = 6, n: int = 8, group_ids: bool = True) -> Path:
    with RunWriter(root, name="d2", roles=["solver", "verifier", "judge"]) as w:
        for step in range(steps):
            rows = []
            for i in range(n):
                r = ((step * 7 + i * 3) % 10) / 10
                rows.append(
                    {
                        "reward": r,
                        "sample_id": f"s{step}-{i}",
                        "group_id": f"s{step}-p{i // 4}" if group_ids else None,
                        "prompt": f"task {i // 4} " + "words " * 40,
                        "completion": f"answer {i} at step {step} " + "more text " * 60,
                        "solver_reward": r,
                        "solver_kl": 0.01 * step,
                        "verifier_reward": float(i % 2),
                        "verifier_kl": 0.02,
                        "judge_reward": ((step + i * 5) % 9) / 9,
                        "judge_kl": 0.03,
                    }
                )
            w.log_samples(step, rows)
            w.log_scalars(step, {"train/loss": 1.0 / (step + 1)})
    return root


def independent_role_means(root: Path) -> dict[str, tuple[float, int]]:
    """Per role: the mean of the valid rewards and their count, over every sample file (pyarrow, numbers only)."""
    values: dict[str, list[float]] = {}
    for f in sorted((root / "samples" / "train").glob("*.parquet")):
        for cell in pq.read_table(f, columns=["roles"]).column("roles").to_pylist():
            for x in cell:
                if x["reward"] is not None and not math.isnan(x["reward"]):
                    values.setdefault(x["role"], []).append(x["reward"])
    return {k: (sum(v) / len(v), len(v)) for k, v in values.items()}


def summary_rows(page: str) -> dict[str, list[str]]:
    """The per-role summary table: role -> its cells as text."""
    table = re.search(r"<table.*?</table>", section(page, "summary"), re.S)
    assert table is not None
    out = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        if cells:
            out[cells[0]] = cells[1:]
    return out


def test_a_file_whose_text_cannot_be_read_keeps_its_numbers_in_the_report(tmp_path: Path, cli) -> None:
    root = three_role_run(tmp_path / "run")
    bad = root / "samples" / "train" / "step_00000005.p0.parquet"
    corrupt_column(bad, "completion")
    with pytest.raises(Exception):  # noqa: B017, PT011  (the text cannot be read: pyarrow's own error)
        pq.read_table(bad, columns=["completion"])
    expected = independent_role_means(root)  # reads the numbers of every file, step 5's included
    assert {k: c for k, (_, c) in expected.items()} == {"solver": 48, "verifier": 48, "judge": 48}

    run = open_run(root)
    texts: list = []
    page = build_report(run, DoctorConfig(), text_problems=texts)
    # The numbers: summarize's, which are the files' (step 5 counted).
    df = summarize(open_run(root), ["role"])
    table = summary_rows(page)
    for role, (mean, count) in expected.items():
        row = df.filter(df["role"] == role).row(0, named=True)
        assert row["reward_count"] == count and row["reward_mean"] == pytest.approx(mean, rel=1e-12)
        assert table[role][0] == f"{mean:.4g}" and table[role][4] == f"{count:,}"
    assert "48 samples in train" in text_of(page)
    # No problem in the run's numbers: no data_problem finding, none in the run's problems.
    assert "data_problem" not in page and run.errors == []
    # The text parts say what they could not read, and go on with the rest.
    [p] = texts
    assert p.path == "samples/train/step_00000005.p0.parquet" and "its text could not be read" in p.message
    plots = text_of(section(page, "plots"))
    assert "The text of 1 file (samples/train/step_00000005.p0.parquet) could not be read" in plots
    traj = text_of(section(page, "trajectories"))
    assert "could not be read: it is left out of the cards" in traj
    assert "The last step, 5, could not be read" in traj and "split train, step 4:" in traj
    assert set(re.findall(r"sample (s\d+-\d+)", traj)) <= {f"s4-{i}" for i in range(8)}
    assert "unreadable text" in section(page, "data")
    # The command: the page written, one line naming the file and why, no traceback.
    r = cli("report", root, "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    assert "error: samples/train/step_00000005.p0.parquet: its text could not be read" in r.stderr
    assert "Traceback" not in r.stderr and "file skipped" not in r.stderr
    assert summary_rows((tmp_path / "r.html").read_text())["judge"][0] == f"{expected['judge'][0]:.4g}"


@pytest.mark.parametrize("damage", ["text", "pages"])
def test_render_default_falls_back_from_a_last_step_that_cannot_be_read(tmp_path: Path, cli, damage: str) -> None:
    root = three_role_run(tmp_path / "run")
    bad = root / "samples" / "train" / "step_00000005.p0.parquet"
    corrupt_column(bad, "completion") if damage == "text" else corrupt_pages(bad)
    # Independently: the best and worst of step 4 by total reward, ties by sample id.
    rows = pq.read_table(root / "samples" / "train" / "step_00000004.p0.parquet").to_pylist()
    ranked = sorted(rows, key=lambda r: (-r["reward"], r["sample_id"]))
    best = ranked[0]["sample_id"]
    worst = sorted(rows, key=lambda r: (r["reward"], r["sample_id"]))[0]["sample_id"]
    r = cli("render-trajectory", root, "--format", "json")
    assert r.exit_code == 0, r.stderr
    got = json.loads(r.stdout)
    assert [(c["step"], c["sample_id"]) for c in got] == [(4, best), (4, worst)]
    assert "note: the last step, 5, could not be read" in r.stderr and "showing step 4" in r.stderr
    assert "error: samples/train/step_00000005.p0.parquet" in r.stderr
    assert "split train, step 4" in r.stderr  # the hint names the step shown
    # An explicit step still answers for that step alone: nothing there, exit 1.
    r = cli("render-trajectory", root, "--steps", "5", "--format", "json")
    assert r.exit_code == 1


# -- D4 -------------------------------------------------------------------------------------------------------


def test_long_component_names_draw_without_a_layout_warning(tmp_path: Path) -> None:
    from runlog.plots import RunSeries, figure_png, make_figure

    long = "component_" + "very_long_name_" * 16
    root = tmp_path / "run"
    with RunWriter(root, name="d4", roles=["solver"]) as w:
        for step in range(3):
            w.log_samples(
                step,
                [
                    {
                        "reward": 0.1 * i,
                        "solver_reward": 0.1 * i,
                        "reward_components": {long + "a": 0.1 * i, long + "b": 0.3},
                    }
                    for i in range(4)
                ],
            )
    s = RunSeries(open_run(root))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "constrained_layout not applied" would raise here
        fig = make_figure(s, "components")
        png = figure_png(fig)
        build_report(open_run(root))
    assert png[:4] == b"\x89PNG"
    labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert len(labels) == 2 and all(len(x) <= 48 for x in labels)
    assert labels[0][-1] != labels[1][-1]  # cut in the middle: the names' different ends are kept


# -- D5 -------------------------------------------------------------------------------------------------------


def singleton_group_run(root: Path, steps: int) -> Path:
    with RunWriter(root, name="d5", roles=["solver"]) as w:
        for step in range(steps):
            w.log_samples(
                step,
                [
                    {"reward": 0.5, "sample_id": f"s{step}-{i}", "group_id": f"s{step}-{i}", "prompt": f"p{i}",
                     "completion": "the same answer" if i < 3 else f"answer {i}", "solver_reward": 0.5}
                    for i in range(5)
                ],
            )  # fmt: skip
    return root


@pytest.mark.parametrize("steps", [1, 3])
def test_diversity_without_a_group_of_two_is_said_to_be_over_all_texts(tmp_path: Path, cli, steps: int) -> None:
    root = singleton_group_run(tmp_path / "run", steps)
    r = cli("metrics", "diversity", root, "--format", "json")
    assert r.exit_code == 0
    note = next(x[len("note: ") :] for x in r.stderr.splitlines() if "no prompt group holds two texts" in x)
    unique = json.loads(r.stdout)[0]["unique_frac"]
    assert unique == pytest.approx(3 / 5)  # independently: 5 texts, 3 distinct (3 alike + 2 others)
    page = build_report(open_run(root))
    plots = text_of(section(page, "plots"))
    assert note in plots
    assert "Diversity of completions" not in page and "Diversity of texts" in plots
    if steps == 1:
        line = plots[plots.index("Diversity of texts") :]
        assert f"unique texts {unique:.3g}," in line and "per group" not in line.split(note)[0]


def test_grouped_diversity_keeps_its_heading_and_no_note(tmp_path: Path) -> None:
    root = three_role_run(tmp_path / "run", steps=3)
    plots = text_of(section(build_report(open_run(root)), "plots"))
    assert "Diversity of texts within prompt groups" in plots and "no prompt group holds two texts" not in plots


@pytest.mark.parametrize("name", ["nemo_gym_tool_call_multireward_rollouts.jsonl", "inspect_ai_popularity.eval"])
def test_real_one_step_dumps_say_diversity_is_over_all_texts(cli, name: str) -> None:
    path = REALDATA / name
    if not path.exists():
        pytest.skip(f"{path} not here")
    r = cli("metrics", "diversity", path, "--format", "json")
    assert "no prompt group holds two texts" in r.stderr
    plots = text_of(section(build_report(open_run(path)), "plots"))
    assert "no prompt group holds two texts (or the run has no prompt groups): diversity is over all texts" in plots
    assert "per group" not in plots
