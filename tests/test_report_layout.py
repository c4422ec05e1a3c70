"""The report as a reader sees it at 1280 px: every section present, nothing wider than the window, no element
that hides part of its content (a table cut behind a hidden scroll bar), no full-size empty panel; scalars
drawn by namespace; a run of one step shown as distributions; best and worst cards titled, each sample once;
the repeated opening of the conversations folded once. Browser checks run in headless Chromium (skipped
without it); the screenshots they take are kept under the test's temporary folder."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the report's plots need matplotlib: pip install 'runlog[plot]'")

from browser import CHROMIUM, SKIP_REASON, Page  # noqa: E402
from runlog import RunWriter, open_run  # noqa: E402
from runlog.plots import RunSeries, make_figure  # noqa: E402
from runlog.plots.figures import role_colours  # noqa: E402
from runlog.report import build_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "sample_runs"
REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
VERIFIERS = REALDATA / "verifiers_math_python_gpt5nano_results.jsonl"
NEMO = REALDATA / "nemo_gym_tool_call_multireward_rollouts.jsonl"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
needs_realdata = pytest.mark.skipif(not VERIFIERS.exists(), reason=f"{REALDATA} is absent (CI has it)")
SECTIONS = ("findings", "summary", "plots", "scalars", "trajectories", "data")
SYSTEM = (
    "You are a careful solver. "
    + "Think inside <think></think>, answer inside <answer></answer>. " * 6
    + "END-OF-SYSTEM"
)
LONG_ROLES = ["solver_with_a_rather_long_role_name", "verifier_with_an_even_longer_role_name_here", "judge"]
COMPONENTS = [f"correct_answer_reward_function_number_{i}" for i in range(10)]

# Layout facts, measured in the page: overflow of the document, elements whose content is wider than their box
# (cut, behind a scroll bar the reader may not see, or spilling over the next box) or taller while cut,
# sections and their content, the height of every "nothing to draw" line and of every figure.
LAYOUT_JS = """
(() => {
  const clipped = [];
  for (const el of document.querySelectorAll('body *')) {
    const cs = getComputedStyle(el);
    if (cs.display === 'none' || el.closest('details:not([open]) > :not(summary)')) continue;
    // Wider content than its box: cut (or behind a scroll bar), or spilling over its neighbours.
    const cutX = el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1;
    const cutY = cs.overflowY !== 'visible' && el.tagName !== 'HTML' && el.tagName !== 'BODY'
      && el.scrollHeight > el.clientHeight + 1;
    if (cutX || cutY) clipped.push(el.tagName + '.' + el.className + ' ' + el.scrollWidth + '>' + el.clientWidth);
  }
  const sections = {};
  for (const id of SECTIONS) {
    const h = document.getElementById(id);
    let text = '', n = h ? h.nextElementSibling : null;
    while (n && n.tagName !== 'H2') { text += n.textContent; n = n.nextElementSibling; }
    sections[id] = h ? text.trim().length : -1;
  }
  return {
    scrollWidth: document.documentElement.scrollWidth, width: window.innerWidth, clipped, sections,
    missing: [...document.querySelectorAll('.missing')].map(e => [e.id, e.getBoundingClientRect().height]),
    figures: [...document.querySelectorAll('figure')].map(f => [f.id, f.querySelector('img').naturalHeight]),
  };
})()
""".replace("SECTIONS", json.dumps(SECTIONS))


def wide_run(root: Path) -> Path:
    """Long role names, ten long-named reward components, an unbroken 400-character token in every prompt,
    and the same long system prompt in every sample."""
    path = root / "wide"
    with RunWriter(path, name="wide", roles=LONG_ROLES, durable=False, clock=lambda: 1.7e9) as w:
        for step in range(12):
            rows = []
            for i in range(8):
                value = (i % 4) / 3
                rows.append(
                    {
                        "group_id": f"g{step}-{i // 4}",
                        "reward": value,
                        "roles": {r: {"reward": value, "kl": 0.01 * (step + 1)} for r in LONG_ROLES},
                        "reward_components": {c: value for c in COMPONENTS},
                        "messages": [
                            {"role": "system", "content": SYSTEM},
                            {"role": "user", "content": f"Compute {step} + {i // 4}. " + "x" * 400},
                            {"role": "assistant", "content": f"<think>easy</think><answer>{step + i}</answer>"},
                        ],
                    }
                )
            w.log_samples(step, rows)
            w.log_scalars(step, {"train/loss": 1.0 / (1 + step), "debate/kl/solver": 0.1 * step, "lr": 1e-6})
    return path


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report_layout")
    runs = {name: ROOT / name for name in ("debate_grpo", "flink_mixed", "jaxarc", "damaged")}
    runs["wide"] = wide_run(root)
    if VERIFIERS.exists():
        runs["verifiers"] = VERIFIERS
    out = {}
    for name, path in runs.items():
        out[name] = root / f"{name}.html"
        out[name].write_text(build_report(open_run(path)), encoding="utf-8")
    return out


def html(reports: dict[str, Path], name: str) -> str:
    if name not in reports:
        pytest.skip(f"{name}: its data is absent")
    return reports[name].read_text(encoding="utf-8")


@needs_chromium
@pytest.mark.parametrize("name", ["debate_grpo", "flink_mixed", "jaxarc", "damaged", "wide", "verifiers"])
def test_layout_at_1280_px(reports: dict[str, Path], name: str, tmp_path: Path) -> None:
    html(reports, name)
    with Page(width=1280, height=900) as page:
        page.open(reports[name])
        facts = page.js(LAYOUT_JS)
        shot = page.screenshot(tmp_path / f"{name}.png", full_page=True)
        assert page.problems() == []
    assert facts["scrollWidth"] <= facts["width"] == 1280, facts
    assert facts["clipped"] == [], facts["clipped"]
    assert all(facts["sections"][s] > 0 for s in SECTIONS), facts["sections"]
    # A line that says what is missing is a line or two, not a panel; every figure holds a drawn image.
    assert all(h < 70 for _, h in facts["missing"]), facts["missing"]
    assert all(h > 100 for _, h in facts["figures"]), facts["figures"]
    from matplotlib.image import imread

    img = imread(str(shot))
    assert img.shape[1] == 1280 and img.shape[0] > 1500 and img[..., :3].std() > 0.05


def test_scalars_only_run_has_its_scalars_and_says_what_is_absent(reports: dict[str, Path]) -> None:
    page = html(reports, "jaxarc")
    assert "nothing to plot" not in page and 'class="healthy"' not in page
    scalars = page.split('id="scalars"')[1].split("<h2")[0]
    assert scalars.count('src="data:image/png;base64,') == 1 and "reward_mean" in scalars
    assert re.search(r'class="absent">.*no per-sample data in this run', page, re.S)
    plots = page.split('id="plots"')[1].split("<h2")[0]
    assert "<figure" not in plots and 'class="missing"' in plots


def test_scalars_are_grouped_by_namespace(reports: dict[str, Path]) -> None:
    page = html(reports, "debate_grpo")
    scalars = page.split('id="scalars"')[1].split("<h2")[0]
    heads = re.findall(r'<h3 id="scalars-\d+">([^<]+) <span class="note">(\d+) keys?</span>', scalars)
    assert [h for h, _ in heads] == ["debate/", "eval/", "grad/", "time/", "train/", "update/"]
    assert sum(int(n) for _, n in heads) == 34  # 37 keys less the three __count companions
    # 14 train/ keys: two figures of 7 panels, none of them holding a "more keys" remainder.
    assert "train/ (1 of 2)" in scalars and "train/ (2 of 2)" in scalars and "more keys" not in scalars


def test_header_and_tiles_are_about_one_split(reports: dict[str, Path]) -> None:
    page = html(reports, "debate_grpo")
    header = page.split("</header>")[0]
    assert "split <b>train</b> (not in this report: eval)" in header
    cards = page.split('<div class="cards">')[1].split('<h2 id="findings">')[0]
    assert '1,024</div><div class="k">samples in train (1,088 in all splits)' in cards
    assert '32</div><div class="k">steps of train (0–31)' in cards and "eval" not in cards.split("steps of")[1][:40]


def test_best_and_worst_cards_say_which_and_show_each_sample_once(reports: dict[str, Path]) -> None:
    page = html(reports, "debate_grpo")
    part = page.split('id="trajectories"')[1].split("<h2")[0]
    cards = re.findall(r'<section class="traj" id="card-\d+">\s*<h3>sample ([^<]+)</h3>', part)
    assert len(cards) == len(set(cards)) >= 2
    for role in ("solver", "verifier", "judge"):
        assert re.search(rf'class="place best">best</span> by {role}&#x27;s reward \(', part)
        assert re.search(rf'class="place worst">worst</span> by {role}&#x27;s reward \(', part)
        assert f'id="traj-{role}-' in part  # the findings' links land in the index table
    # The three roles' best is one sample: one card with three titles.
    first = part.split('<section class="traj"')[1]
    assert first.count('class="place best"') == 3


def test_repeated_opening_messages_are_folded_once(reports: dict[str, Path]) -> None:
    page = html(reports, "wide")
    part = page.split('id="trajectories"')[1].split("<h2")[0]
    assert part.count('<section class="traj"') >= 2
    assert part.count("END-OF-SYSTEM") == 1
    shared = part.split('<details class="shared">')[1].split("</details>")[0]
    assert "END-OF-SYSTEM" in shared and "the same in all" in shared
    assert part.count("Opening messages (system, user): shared by every card, folded above.") >= 2


def test_tables_wrap_instead_of_hiding_columns(reports: dict[str, Path]) -> None:
    """The per-sample figures are one row each (ten components fit), and no table is a hidden-scroll block."""
    page = html(reports, "wide")
    summary = page.split('id="summary"')[1].split("<h2")[0]
    assert summary.count("component correct_answer_reward_function_number_") == 10
    assert "display:block;overflow-x:auto" not in page


def test_info_badge_never_carries_a_warning_message(reports: dict[str, Path]) -> None:
    for name in ("damaged", "flink_mixed"):
        page = html(reports, name)
        assert 'class="what">data_problem' in page
        assert not re.search(r'badge sev-info">info</span>.*?<div>warning:', page)
        assert "reader warning" in page


def test_onset_markers_are_in_no_role_colour() -> None:
    run = open_run(ROOT / "debate_grpo")
    fig = make_figure(RunSeries(run), "reward", marks={"reward": [(5, "nan_rewards")]})
    ax = fig.axes[0]
    from matplotlib.colors import to_rgb

    dashed = {to_rgb(line.get_color()) for line in ax.get_lines() if line.get_linestyle() == "--"}
    roles = {to_rgb(c) for c in role_colours(["solver", "verifier", "judge"]).values()}
    assert dashed and roles
    assert min(math.dist(a, b) for a in dashed for b in roles) > 0.4, (dashed, roles)


@needs_realdata
def test_a_run_of_one_step_gets_distributions(reports: dict[str, Path]) -> None:
    page = html(reports, "verifiers")
    plots = page.split('id="plots"')[1].split("<h2")[0]
    assert re.search(r'<p class="missing" id="plot-kl"><b>Mean KL per role</b>: no KL values', plots)
    assert re.search(r'<figure id="plot-reward">.*one step', plots)
    assert re.search(r'<p class="missing" id="plot-diversity">.*step 0: unique texts', plots)
    for path in (VERIFIERS, NEMO):
        series = RunSeries(open_run(path))
        for what in ("reward", "components"):
            fig = make_figure(series, what)
            # Bars of the samples' values, not a line through one point.
            assert all(len(ax.patches) >= 1 for ax in fig.axes if ax.get_visible()), what
            assert not any(len(line.get_xdata()) == 1 for ax in fig.axes for line in ax.get_lines()), what
