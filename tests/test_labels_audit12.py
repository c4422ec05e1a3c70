"""One name for the null role (the samples without per-role data: Flink v0 files, single-agent layouts).

The report named it "(role unknown)" in its summary table and "(no role)" in its comparison table, the plots
"(role unknown)" or "(no role)", summarize, diff and render "(unknown)": one page could show one group of
samples under two names. Every output now says ``schema.NULL_ROLE_LABEL``, the name the docs give."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq

from runlog.schema import NULL_ROLE_LABEL

SAMPLE = Path(__file__).resolve().parents[1] / "sample_runs" / "flink_mixed"
OTHER_NAMES = ("(role unknown)", "(no role)")


class _Cells(HTMLParser):
    """The text of every table cell, one string per cell."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:  # noqa: ANN001
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _v0_files() -> list[Path]:
    """The sample run's files written without per-role data (Flink v0: no ``roles`` column)."""
    return [f for f in sorted(SAMPLE.rglob("*.parquet")) if "roles" not in pq.read_schema(f).names]


def test_the_label_is_the_documented_one() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert f"(shown `{NULL_ROLE_LABEL}`)" in docs


def test_report_names_the_null_role_once(cli, tmp_path: Path) -> None:  # noqa: ANN001
    assert _v0_files(), "the sample run should hold v0 files (rows without roles)"
    out = tmp_path / "r.html"
    r = cli("report", str(SAMPLE), "--against", str(SAMPLE), "-o", str(out))
    assert r.exit_code in (0, 1), r.stderr
    page = out.read_text(encoding="utf-8")
    for name in OTHER_NAMES:
        assert name not in page, name
    cells = _Cells()
    cells.feed(page)
    # The run's own per-role table and the comparison's table: both name the v0 rows' group.
    assert sum(1 for c in cells.cells if re.fullmatch(r"(●\s*)?" + re.escape(NULL_ROLE_LABEL), c)) >= 2


def test_summarize_and_inspect_say_the_same_name(cli) -> None:  # noqa: ANN001
    r = cli("summarize", str(SAMPLE), "--by", "role", "--split", "train", "--steps", "0:9")
    assert r.exit_code in (0, 1), r.stderr
    assert NULL_ROLE_LABEL in r.stdout
    i = cli("inspect", str(SAMPLE))
    assert f"shown as {NULL_ROLE_LABEL}" in i.stdout + i.stderr
    for name in OTHER_NAMES:
        assert name not in r.stdout + r.stderr + i.stdout + i.stderr


def test_plot_legend_names_the_null_role(tmp_path: Path) -> None:
    from runlog import open_run
    from runlog.analysis.series import RunSeries
    from runlog.plots import _per_role_lines

    s = RunSeries(open_run(SAMPLE), split="train")
    labels = [line[0] for line in _per_role_lines(s, "reward_mean", "role")]
    assert NULL_ROLE_LABEL in labels and not set(labels) & set(OTHER_NAMES)
