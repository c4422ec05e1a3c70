"""``runlog report``: one self-contained HTML file that opens in a real headless Chromium with no console
errors; hostile text from the data never executes nor breaks the page; every layout gives a report."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib", reason="the report's plots need matplotlib: pip install 'runlog[plot]'")

from test_doctor import make_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "sample_runs"
HOSTILE = (
    '<script>console.error("pwned-script")</script> <img src=x onerror="console.error(\'pwned-img\')"> '
    "</style><style>body{display:none}</style> \x1b[31mred\x1b]0;title\x07 \"'><svg onload=alert(1)> \u202eevil"
)
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium); .ci/run installs it"
)


def chromium(page: Path, shot: Path, profile: Path) -> list[str]:
    """Open ``page`` headless, take a screenshot, return the page's console messages (errors, CSP
    violations: Chromium logs every console message as ``INFO:CONSOLE`` with --enable-logging=stderr)."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-quic",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert shot.exists(), proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Any]]:
    """``runlog report RUN -o FILE`` of a sample run, built once for the tests that only read it (a report of
    debate_grpo takes seconds, its figures most of them): ``(FILE, the CLI's result)``. Its figures are drawn,
    whichever test asks first (one with ``figures_not_drawn`` too)."""
    import runlog.plots
    import runlog.report

    from conftest import Cli, own_probe_cache

    built: dict[str, tuple[Path, Any]] = {}

    def report(run: str) -> tuple[Path, Any]:
        if run not in built:
            out = tmp_path_factory.mktemp("sample-report") / f"{run}.html"
            with own_probe_cache(tmp_path_factory), pytest.MonkeyPatch.context() as mp:
                mp.setattr(runlog.report, "figure_png", runlog.plots.figure_png)
                built[run] = (out, Cli()("report", ROOT / run, "-o", out))
        return built[run]

    return report


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from runlog.cli.app import app

    root = tmp_path_factory.mktemp("report")
    run = make_run(root, "nan_rewards", hostile=HOSTILE)
    out = root / "hostile.html"
    res = CliRunner().invoke(app, ["report", str(run), "-o", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


def test_report_is_one_self_contained_file(sample_report) -> None:
    out, res = sample_report("debate_grpo")
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and res.stderr.startswith(f"wrote {out} (")
    html = out.read_text(encoding="utf-8")
    assert 'http-equiv="Content-Security-Policy"' in html and "default-src 'none'" in html
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html), "a network asset"
    assert html.count('src="data:image/png;base64,') >= 6
    for anchor in ("findings", "summary", "plot-reward", "plot-kl", "plot-hist", "trajectories"):
        assert f'id="{anchor}"' in html
    assert 'href="#plot-reward"' in html and 'id="traj-solver-' in html
    assert "nan_rewards" in html and "solver" in html and "sample s31-" in html


@needs_chromium
def test_report_opens_in_headless_chromium_without_console_errors(sample_report, tmp_path: Path) -> None:
    out, res = sample_report("debate_grpo")
    assert res.exit_code == 0, res.output
    # A control page proves that console errors would be seen.
    control = tmp_path / "control.html"
    control.write_text("<!DOCTYPE html><html><body><script>undefinedFunction()</script></body></html>")
    assert any("Uncaught" in m for m in chromium(control, tmp_path / "control.png", tmp_path / "p0"))
    messages = chromium(out, tmp_path / "report.png", tmp_path / "p1")
    assert messages == []
    from matplotlib.image import imread

    img = imread(str(tmp_path / "report.png"))
    assert img.shape[:2] == (2000, 1280) and img[..., :3].std() > 0.05


def test_hostile_text_is_escaped(hostile_report: Path) -> None:
    html = hostile_report.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "<img src=x" not in html and "<svg onload" not in html
    assert html.count("</style>") == 1
    assert "\x1b" not in html and "\x07" not in html and "\u202e" not in html
    assert "&lt;script&gt;console.error(&quot;pwned-script&quot;)&lt;/script&gt;" in html
    assert "\\x1b[31mred" in html and "\\u202eevil" in html


@needs_chromium
def test_hostile_text_never_executes(hostile_report: Path, tmp_path: Path) -> None:
    """Any script that slipped through would log ``pwned`` or a CSP violation; neither happens."""
    messages = chromium(hostile_report, tmp_path / "hostile.png", tmp_path / "p")
    assert messages == []


@pytest.mark.parametrize("run", ["flink_mixed", "jaxarc", "damaged"])
def test_every_layout_gives_a_report(sample_report, run: str) -> None:
    out, res = sample_report(run)
    assert res.exit_code == 0, res.output
    html = out.read_text(encoding="utf-8")
    assert "Findings" in html and "</html>" in html


def test_report_usage_errors(cli, tmp_path: Path) -> None:
    assert cli("report", ROOT / "debate_grpo", "-o", tmp_path / "r.pdf").exit_code == 2
    assert cli("report", ROOT / "debate_grpo", "-o", tmp_path / "nope" / "r.html").exit_code == 2
    res = cli("report", ROOT / "debate_grpo", "-o", tmp_path / "r.html", "--set", "x=1")
    assert res.exit_code == 2 and "unknown threshold" in res.stderr


def test_the_steps_tile_counts_the_steps_read(sample_report, figures_not_drawn) -> None:
    """The tile showed the range of step numbers ("0–24 steps of eval" for 4 eval steps; "0 step of eval" for
    one step 0; "0–5" for a damaged run whose readable steps are 0, 2 and 5): it is now the count of steps
    with samples read, counted here from the files, and the range beside it. The train split is the default
    one: its page, and the damaged run's, are the shared reports (the tile names the split)."""
    from runlog import open_run
    from runlog.analysis.doctor_config import DoctorConfig
    from runlog.report import build_report

    root = ROOT
    cases = [
        (root / "debate_grpo", "eval", "4", "steps of eval (0–24)"),
        (root / "debate_grpo", None, "32", "steps of train (0–31)"),
        (root / "damaged", None, "3", "steps of train (0–5)"),
    ]
    for path, split, count, label in cases:
        if split == "eval":
            eval_steps = {p.name.split("_")[1].split(".")[0] for p in (path / "samples" / "eval").glob("*.parquet")}
            assert len(eval_steps) == int(count)
            cfg = DoctorConfig().replace({"split": split}, "--split")
            page = build_report(open_run(path), cfg)
        else:
            page = sample_report(path.name)[0].read_text(encoding="utf-8")
        tile = re.search(r'<div class="v">([^<]*)</div><div class="k">(step[^<]*)</div>', page)
        assert tile is not None and tile.groups() == (count, label), (path, split, tile and tile.groups())


def test_the_report_names_the_files_it_could_not_read_on_stderr(sample_report) -> None:
    """The unreadable files of a damaged run were only in the page: stderr said nothing (docs/cli.md)."""
    _, res = sample_report("damaged")
    assert res.exit_code == 0, res.output
    assert "error: samples/train/step_00000001.p0.parquet: unreadable Parquet" in res.stderr
    assert "error: samples/train/step_00000004.p0.parquet: written with runlog schema v3" in res.stderr


def _corrupt_column_page(path: Path, column: str) -> None:
    """Overwrite the data page of one column and keep the footer intact: discovery cannot tell, and a query
    finds it only when it reads that column."""
    import pyarrow.parquet as pq

    md = pq.ParquetFile(path).metadata
    chunk = next(
        md.row_group(0).column(i)
        for i in range(md.row_group(0).num_columns)
        if md.row_group(0).column(i).path_in_schema == column
    )
    data = bytearray(path.read_bytes())
    for j in range(chunk.data_page_offset + 8, chunk.data_page_offset + chunk.total_compressed_size - 2):
        data[j] = 0xAB
    path.write_bytes(bytes(data))


def test_a_file_found_corrupt_while_the_report_is_built_is_left_out_everywhere_and_listed(
    cli, tmp_path: Path, figures_not_drawn
):
    """A corrupt ``reward`` page behind an intact footer is found only when rewards are read, after the page's
    first parts were built: with the partials cache the report failed ("reading the run failed", exit 1, no
    page); without it the page said "No problems reading the run" and counted the file's 32 samples in its
    tile (1,024 where the tables held 1,008). Four pages are built (two runs, each building its page again
    once the file is found): their figures are not drawn, the page's words and numbers are checked."""
    import pyarrow.parquet as pq

    run = tmp_path / "run"
    shutil.copytree(ROOT / "debate_grpo", run)
    bad = run / "samples" / "train" / "step_00000031.p0.parquet"
    _corrupt_column_page(bad, "reward")
    good = sum(pq.ParquetFile(p).metadata.num_rows for p in (run / "samples" / "train").glob("*.parquet") if p != bad)
    for extra in ((), ("--no-cache",)):
        page = tmp_path / f"r{len(extra)}.html"
        res = cli("report", run, "-o", page, *extra)
        assert res.exit_code == 0, res.output
        assert "step_00000031.p0.parquet: corrupt data" in res.stderr
        html = page.read_text()
        assert "No problems reading the run" not in html and "step_00000031.p0.parquet" in html
        tile = re.search(r'<div class="v">([^<]*)</div><div class="k">samples in train', html)
        assert tile is not None and tile.group(1) == f"{good:,}"


def test_best_and_worst_cards_with_a_sample_id_shared_by_a_prompt_group(tmp_path: Path) -> None:
    """A GRPO trainer that writes the prompt's id for every sample of its group: the report keyed its cards by
    (file, id), so the three samples of step 2 became one card (the first row) titled "best by judge's reward
    (1)" over a table showing judge 0. Each card is now its own sample."""
    from runlog import open_run
    from runlog.report import build_report

    from conftest import native_rows, native_run_of

    rows = []
    for step in range(3):
        part = native_rows(step, 3, roles=("solver", "judge"))
        for k, (rs, rj) in enumerate([(1.0, 0.0), (0.5, 1.0), (0.0, 0.5)]):
            part[k]["sample_id"] = "prompt-7"
            part[k]["roles"] = [{"role": "solver", "reward": rs, "kl": 0.1}, {"role": "judge", "reward": rj, "kl": 0.2}]
            part[k]["messages"][1]["content"] = part[k]["completion"] = f"COMPLETION_{step}_{k}"
        rows += part
    html = build_report(open_run(native_run_of(tmp_path / "run", rows, roles=("solver", "judge"))))
    cards = re.findall(r'<section class="traj".*?</section>', html, re.S)
    assert len(cards) == 3
    import html as html_lib

    shown = {re.search(r"COMPLETION_2_\d", c).group(0): html_lib.unescape(re.sub("<[^>]+>", " ", c)) for c in cards}  # type: ignore[union-attr]
    assert set(shown) == {"COMPLETION_2_0", "COMPLETION_2_1", "COMPLETION_2_2"}
    assert "best" in shown["COMPLETION_2_0"] and "solver's reward (1)" in shown["COMPLETION_2_0"]
    assert "worst" in shown["COMPLETION_2_0"] and "judge's reward (0)" in shown["COMPLETION_2_0"]
    assert "judge's reward (1)" in shown["COMPLETION_2_1"] and "solver's reward (0)" in shown["COMPLETION_2_2"]


def test_a_shard_copied_under_another_process_is_said_in_the_report(
    sample_report, tmp_path: Path, figures_not_drawn
) -> None:
    """A step's file copied as ``.p7``: every figure counts its 32 samples twice (1,056 in train), and only
    ``inspect --deep`` said so; the report now checks the ids as well (the id column only). The run as it is
    says nothing of it (the shared report)."""
    from runlog import open_run
    from runlog.report import build_report

    assert "occur more than once" not in sample_report("debate_grpo")[0].read_text(encoding="utf-8")
    run = tmp_path / "run"
    shutil.copytree(ROOT / "debate_grpo", run)
    shard = run / "samples" / "train" / "step_00000005.p0.parquet"
    shutil.copy(shard, shard.with_name("step_00000005.p7.parquet"))
    html = build_report(open_run(run))
    assert "sample id(s) occur more than once" in html and "count twice in every statistic" in html
