"""``runlog report``: one self-contained HTML file that opens in a real headless Chromium with no console
errors; hostile text from the data never executes nor breaks the page; every layout gives a report."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

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
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from runlog.cli.app import app

    root = tmp_path_factory.mktemp("report")
    run = make_run(root, "nan_rewards", hostile=HOSTILE)
    out = root / "hostile.html"
    res = CliRunner().invoke(app, ["report", str(run), "-o", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


def test_report_is_one_self_contained_file(cli, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = cli("report", ROOT / "debate_grpo", "-o", out)
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
def test_report_opens_in_headless_chromium_without_console_errors(cli, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert cli("report", ROOT / "debate_grpo", "-o", out).exit_code == 0
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
def test_every_layout_gives_a_report(cli, tmp_path: Path, run: str) -> None:
    out = tmp_path / f"{run}.html"
    res = cli("report", ROOT / run, "-o", out)
    assert res.exit_code == 0, res.output
    html = out.read_text(encoding="utf-8")
    assert "Findings" in html and "</html>" in html


def test_report_usage_errors(cli, tmp_path: Path) -> None:
    assert cli("report", ROOT / "debate_grpo", "-o", tmp_path / "r.pdf").exit_code == 2
    assert cli("report", ROOT / "debate_grpo", "-o", tmp_path / "nope" / "r.html").exit_code == 2
    res = cli("report", ROOT / "debate_grpo", "-o", tmp_path / "r.html", "--set", "x=1")
    assert res.exit_code == 2 and "unknown threshold" in res.stderr


def test_the_steps_tile_counts_the_steps_read(tmp_path: Path) -> None:
    """The tile showed the range of step numbers ("0–24 steps of eval" for 4 eval steps; "0 step of eval" for
    one step 0; "0–5" for a damaged run whose readable steps are 0, 2 and 5): it is now the count of steps
    with samples read, counted here from the files, and the range beside it."""
    from runlog import open_run
    from runlog.analysis.doctor_config import DoctorConfig
    from runlog.report import build_report

    root = ROOT
    cases = [
        (root / "debate_grpo", "eval", "4", "steps of eval (0–24)"),
        (root / "debate_grpo", "train", "32", "steps of train (0–31)"),
        (root / "damaged", None, "3", "steps of train (0–5)"),
    ]
    for path, split, count, label in cases:
        if split == "eval":
            eval_steps = {p.name.split("_")[1].split(".")[0] for p in (path / "samples" / "eval").glob("*.parquet")}
            assert len(eval_steps) == int(count)
        cfg = DoctorConfig().replace({"split": split}, "--split") if split else None
        page = build_report(open_run(path), cfg)
        tile = re.search(r'<div class="v">([^<]*)</div><div class="k">(step[^<]*)</div>', page)
        assert tile is not None and tile.groups() == (count, label), (path, split, tile and tile.groups())


def test_the_report_names_the_files_it_could_not_read_on_stderr(cli, tmp_path: Path) -> None:
    """The unreadable files of a damaged run were only in the page: stderr said nothing (docs/cli.md)."""
    res = cli("report", ROOT / "damaged", "-o", tmp_path / "r.html")
    assert res.exit_code == 0, res.output
    assert "error: samples/train/step_00000001.p0.parquet: unreadable Parquet" in res.stderr
    assert "error: samples/train/step_00000004.p0.parquet: written with runlog schema v3" in res.stderr
