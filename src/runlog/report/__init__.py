"""``build_report(run)``: one self-contained HTML page about a run, to read and to share.

It holds the overview (``inspect_run``), the doctor's findings linked to the plots and trajectories they
concern, per-role summary tables (``summarize``), the plots (``runlog.plots``, embedded as PNG ``data:``
URIs) and the best and worst trajectories per role (``runlog.render``'s HTML renderer, with its escaping).
The page loads nothing, runs no script and says so in its Content-Security-Policy (``template.CSP``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from functools import cached_property
from typing import Any

from .. import __version__
from ..analysis.doctor import Diagnosis, DoctorConfig, Finding, diagnose
from ..analysis.inspect import RunInspection
from ..analysis.summarize import summarize
from ..analysis.texts import series_format_note
from ..analysis.views import layouts_note
from ..formats.base import UNREADABLE, Problem
from ..plots import (
    MAX_SCALAR_PANELS,
    NO_SAMPLES,
    NO_SCALARS,
    REASONING_WORDS,
    RunSeries,
    diversity_drawn,
    figure_png,
    make_figure,
    missing,
    one_step_words,
    scalar_frame,
    scalar_namespaces,
)
from ..run import Run
from ..schema import NULL_ROLE_LABEL
from .template import cut, e, e1, image, num, page, table
from .trajectories import quoted, role_slug, run_path, unpasted
from .trajectories import trajectories as trajectories_section

STAGES = ("overview", "doctor", "summary", "plots", "trajectories")
PLOTS = (
    ("reward", "Mean reward per role"),
    ("kl", "Mean KL per role"),
    ("components", "Reward components"),
    ("diversity", "Diversity of texts within prompt groups"),
    ("format", "Format adherence"),
    ("hist", "Reward distribution per role"),
)
# Which plot shows each finding kind.
PLOT_OF = {
    "kl_blowup": "kl",
    "reward_collapse": "reward",
    "reward_stuck": "reward",
    "zero_advantage": "hist",
    "diversity_collapse": "diversity",
    "format_drift": "format",
    "reward_hacking": "format",
    "nan_rewards": "reward",
    "nan_kl": "kl",
    "inf_rewards": "reward",
    "inf_kl": "kl",
    "exception_spike": "reward",
}


def build_report(
    run: Run,
    config: DoctorConfig | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    against: Run | None = None,
    text_problems: list[Problem] | None = None,
    against_locations: tuple[str, str] | None = None,
) -> str:
    """The report page as a string. ``progress(stage)`` is called as each of ``STAGES`` completes. With
    ``against`` (a baseline run), a comparison section: ``runlog diff AGAINST RUN``'s per-role table and the
    overlay figures, the runs named as ``runlog diff`` names them (``against_labels``: by ``against_locations``,
    where the baseline and the run were given, else by their folders). ``text_problems``, when given, receives
    the files whose text could not be read (their numbers are in the report, as in ``summarize``;
    ``run.problems`` does not hold them), and the warnings of the text reads."""
    tick = progress or (lambda _stage: None)
    cfg = config or DoctorConfig()
    # What ``inspect --deep`` checks and a report must say: sample ids that occur more than once in the run. The
    # doctor says those repeated within a step (rows counted twice there); this, run-wide, those at several steps
    # only. The id column only.
    if (problem := repeated_ids_problem(run)) is not None:
        run.ctx.problems.append(problem)
    known = len(run.problems)
    texts: list[Problem] = []
    html = _build(run, cfg, tick, against, texts, against_locations)
    if len(run.problems) > known and any(p.kind == UNREADABLE for p in run.problems[known:]):
        # A file found unreadable while the page was being built (a corrupt data page behind an intact footer is
        # only found by reading that column): the parts built before had counted it, and the data section said
        # nothing. Built again, every part reads the run without it and the problem is listed.
        texts.clear()
        html = _build(run, cfg, lambda _stage: None, against, texts, against_locations)
    if text_problems is not None:
        text_problems.extend(texts)
    return html


def repeated_ids_problem(run: Run) -> Problem | None:
    """``inspect --deep``'s warning of repeated sample ids (``analysis.inspect.repeated_ids_problem``), of the
    ids the doctor's ``repeated_sample_ids`` finding does not say: those only at different steps or splits,
    never twice within one step, where every row is counted once, at its own step. Ids repeated within a step
    (rows read twice, counted twice in that step's figures) are the doctor's finding, which names their steps
    and files: said here too, they were listed twice, in two wordings (and counted twice in the tile)."""
    from .._lazy import pl
    from ..analysis.inspect import UNIQUE_ID_LAYOUTS
    from ..analysis.inspect import repeated_ids_problem as deep_problem

    problem = deep_problem(run)
    if problem is None:
        return None
    files = [f for f in run.files if f.kind == "samples" and f.readable and f.layout in UNIQUE_ID_LAYOUTS]
    sub = Run(root=run.root, files=files, ctx=run.ctx)

    def query() -> list[Any]:
        ids = sub.samples.select("split", "step", "sample_id", "source").filter(pl.col("sample_id").is_not_null())
        per = ids.group_by("sample_id").agg(
            pl.len().alias("n"),
            pl.struct("split", "step").n_unique().alias("places"),
            pl.col("source").unique().sort(),
        )
        return [per.filter(pl.col("n") > 1).sort("sample_id")]

    [rep] = sub.collect(query)
    if not rep.height:
        return problem
    rep = rep.filter(pl.col("n") == pl.col("places"))  # never twice within one step: the doctor's are not here
    if not rep.height:
        return None
    extra = int(rep["n"].sum()) - rep.height
    first = rep.row(0, named=True)
    where = ", ".join(first["source"][:3]) + (" ..." if len(first["source"]) > 3 else "")
    message = (
        f"{rep.height} sample id(s) occur more than once ({extra} extra row(s); first: {first['sample_id']!r}, "
        f"{first['n']} times, in {where}), each time at a different step or split, never twice within one: every "
        "row is counted once, at its own step. Ids are meant to be unique within a run: distinct samples given "
        "one id, or the same samples logged again at another step"
    )
    return Problem(problem.path, problem.kind, message)


class ReportSeries(RunSeries):
    """``RunSeries`` whose text series (diversity, format) and trajectories read a twin of the run.

    A file whose numeric columns read but whose text does not (a corrupt data page in its ``completion``
    column) is found only when the text is read, and ``Run`` then leaves the whole file out of every later
    read. Read through the run itself, the report's text parts would take it out of the numbers too, which
    ``summarize`` and ``doctor`` (which read no text) count. Through the twin, the file is left out of the text
    parts only, and said there (``text_problems``)."""

    def __init__(self, run: Run, *, split: str | None = None, format_spec: str = "think-answer-strict") -> None:
        super().__init__(run, split=split, format_spec=format_spec)
        self._twin: Run | None = None
        self._twin_known = 0

    @property
    def text_run(self) -> Run:
        """The twin: the run's file records and problems copied when first asked (after the numbers are read,
        so that a file they found unreadable stays out), its own from then on."""
        if self._twin is None:
            ctx = dataclasses.replace(
                self.run.ctx,
                problems=list(self.run.ctx.problems),
                fidelity=list(self.run.ctx.fidelity),
                note_log=list(self.run.ctx.note_log),
            )
            files = [dataclasses.replace(f) for f in self.run.files]
            self._twin = Run(
                root=self.run.root,
                files=files,
                ctx=ctx,
                unmatched=self.run.unmatched,
                skipped=self.run.skipped,
                single=self.run.single,
            )
            self._twin_known = len(ctx.problems)
        return self._twin

    def text_problems(self) -> list[Problem]:
        """The files the text reads found unreadable, each once, with what it costs; and what they warned of
        (text that is no UTF-8, read with U+FFFD: its file kept), which only the twin saw: the page and stderr
        say it, never silent."""
        if self._twin is None:
            return []
        out: list[Problem] = []
        for p in self._twin.problems[self._twin_known :]:
            if p.is_warning and p not in out and p not in self.run.problems:
                out.append(p)
                continue
            if p.kind != UNREADABLE or any(q.path == p.path and q.kind == UNREADABLE for q in out):
                continue
            if p.message.startswith("its text could not be read"):  # ``Run``'s own words: its numbers kept
                out.append(p)
                continue
            reason = p.message.removesuffix("; file skipped")
            out.append(
                Problem(
                    p.path,
                    UNREADABLE,
                    f"its text could not be read ({reason}): left out of the report's diversity, format and "
                    "trajectories; its numbers are in the other parts",
                )
            )
        return out

    @cached_property
    def _text_series(self) -> RunSeries:
        t = RunSeries(self.text_run, split=self.split, format_spec=self.format_spec)
        t.notes = self.notes  # one list of notes: the doctor's and the report's
        return t

    @cached_property
    def diversity(self) -> Any:
        return self._text_series.diversity

    @cached_property
    def role_diversity(self) -> Any:
        return self._text_series.role_diversity

    @cached_property
    def format(self) -> Any:
        return self._text_series.format


def _build(
    run: Run,
    cfg: DoctorConfig,
    tick: Callable[[str], None],
    against: Run | None,
    texts: list[Problem],
    locations: tuple[str, str] | None = None,
) -> str:
    series = ReportSeries(run, split=cfg.split or None, format_spec=cfg.format_spec)
    overview = series.inspect
    splits = _splits(run)
    scalars = scalar_frame(run)
    tick("overview")
    result = diagnose(run, cfg, series)
    tick("doctor")
    has_samples = series.split is not None and series.per_step.height > 0
    # Why there is nothing per sample: no sample file, or files that hold no rows (said as such, as plot does).
    none = "" if has_samples else f'<p class="missing">{_words(missing(series, "reward") or NO_SAMPLES)}.</p>'
    summary = _summary(series) if has_samples else none
    tick("summary")
    plots = _plots(series, result) if has_samples else none
    scalar_part = _scalars(series, scalars)
    tick("plots")
    if has_samples:
        trajectories = trajectories_section(series, series.text_run)
        trajectories = _text_note(series.text_problems(), "the cards") + trajectories
    else:
        trajectories = none
    tick("trajectories")
    texts.extend(series.text_problems())
    comparison, baseline, label = "", None, None
    if against is not None:
        # The comparison covers the report's split (train by default, as every other part), not every split.
        # Built before the Data section: the baseline's files found unreadable while it is read are listed there.
        labels = against_labels(against, run, locations)
        comparison = _comparison(against, run, cfg.split or series.split, labels)
        baseline, label = (against, labels[0]), labels[1]
    body = "\n".join(
        [
            _cards(overview, series, splits, scalars, result),
            _absent(series, splits, scalars, has_samples),
            comparison,
            '<h2 id="findings">Findings</h2>',
            _findings(result, has_samples, overview, run, series.split),
            _baseline_note(baseline, "the comparison above"),
            '<h2 id="summary">Per-role summary</h2>',
            summary,
            '<h2 id="plots">Plots</h2>',
            plots,
            '<h2 id="scalars">Scalar metrics</h2>',
            scalar_part,
            '<h2 id="trajectories">Best and worst trajectories</h2>',
            trajectories,
            '<h2 id="data">Data</h2>',
            _data(overview, texts, run, baseline, label),
        ]
    )
    split = f" · split <b>{e1(series.split)}</b>" if series.split else ""
    others = [x for x in splits if x != series.split]
    if series.split and others:
        split += f" (not in this report: {_names(others)})"
    header = f'<h1>{e1(run.name)}</h1><div class="sub">{e1(overview.run)}{split}</div>'
    nav = [
        *([("comparison", "Comparison")] if against is not None else []),
        ("findings", "Findings"),
        ("summary", "Summary"),
        ("plots", "Plots"),
        ("scalars", "Scalars"),
        ("trajectories", "Trajectories"),
        ("data", "Data"),
    ]
    footer = f"runlog {e1(__version__)} report · self-contained: no scripts, no network"
    return page(f"runlog report: {run.name}", nav, header, body, footer)


def _text_note(problems: list[Problem], where: str) -> str:
    """What the text reads could not read, said where it is missing (one line; the files in the Data section).
    Their warnings are not that: the Data section lists them."""
    problems = [p for p in problems if not p.is_warning]
    if not problems:
        return ""
    files = _names([p.path for p in problems[:3]]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
    n = len(problems)
    return (
        f'<p class="missing">The text of {n} file{"s" if n > 1 else ""} ({files}) could not be read: '
        f"{'they are' if n > 1 else 'it is'} left out of {e1(where)}; "
        f"{'their' if n > 1 else 'its'} numbers are in the summary and the other plots "
        '(<a href="#data">Data</a>).</p>'
    )


def _names(names: list[str]) -> str:
    """Labels as one HTML list, ``a, b, c``: each cut (``template.cut``), so that a long one does not hide the
    others behind the list's own cut."""
    return e1(", ".join(cut(x) for x in names), limit=None)


def _words(text: str) -> str:
    """A sentence as HTML: escaped, then its `backquoted` names (column and file names) as ``<code>``."""
    import re

    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", e(text))


def _splits(run: Run) -> dict[str, tuple[int, int]]:
    """Per split: (samples, failed trajectories)."""
    from .._lazy import pl

    # Through Run.collect: a corrupt data page behind an intact footer is reported and its file left out.
    [df] = run.collect(
        lambda: [
            run.samples.group_by("split").agg(
                pl.len().alias("n"), pl.col("exception").is_not_null().sum().alias("failed")
            )
        ]
    )
    df = df.sort("split", nulls_last=True)
    return {str(r["split"]): (int(r["n"]), int(r["failed"])) for r in df.iter_rows(named=True)}


def _span(a: int, b: int) -> str:
    return f"{a}–{b}" if a != b else str(a)


def _cards(r: RunInspection, s: RunSeries, splits: dict[str, tuple[int, int]], scalars: Any, d: Diagnosis) -> str:
    """The overview tiles, all about the split the report covers (the header names it)."""
    sev = {x: sum(f.severity == x for f in d.findings) for x in ("error", "warning", "info")}
    worst = "bad" if sev["error"] else ("warn" if sev["warning"] else "good")
    split = s.split
    n, failed = splits.get(split, (0, 0)) if split else (0, 0)
    all_n = sum(v[0] for v in splits.values())
    sev_card = (worst, f"{sev['error']} / {sev['warning']} / {sev['info']}", "errors / warnings / info")
    layout_card = ("", _names(list(r.layouts)) or "-", "layout")
    if split is None:  # no samples: no steps, roles or failures to count
        cards = [("", "0", "samples"), layout_card, sev_card]
    else:
        total = f" ({all_n:,} in all splits)" if all_n != n else ""
        cards = [
            ("", f"{n:,}", f"samples in {e1(split)}{total}"),
            _steps_card(s, split, r.empty_steps.get(split, [])),
            _roles_card([x for x in s.roles if x is not None]),
            layout_card,
            ("warn" if failed else "", f"{failed:,}", f"failed trajectories in {e1(split)}"),
            sev_card,
        ]
    if scalars.height:
        keys = scalars["key"].n_unique()
        cards.append(("", f"{keys:,}", f"scalar keys, steps {_span(scalars['step'].min(), scalars['step'].max())}"))
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card {cls}"><div class="v">{v}</div><div class="k">{k}</div></div>' for cls, v, k in cards
        )
        + "</div>"
    )


def _steps_card(s: RunSeries, split: str, empty: list[int] | None = None) -> tuple[str, str, str]:
    """How many steps of the split have samples read (a count: "0–24" read as 25 steps where there are 4),
    and which; the ``empty`` steps (``inspect``'s ``empty_steps``: files of no rows) named beside, so that
    "4 steps (0–4)" does not leave the reader to find which one is not there (the Data section says why)."""
    steps = s.per_step["step"].drop_nulls().unique().sort().to_list() if "step" in s.per_step.columns else []
    if not steps and empty:
        # Logged, every one with no rows: named, as beside steps with rows ("0 steps" read as none logged).
        verb = "has" if len(empty) == 1 else "have"
        return ("", "0", f"steps of {e1(split)} with rows ({_steps_words(empty)} {verb} no rows)")
    if not steps:
        return ("", "0", f"steps of {e1(split)}")
    which = f"step {steps[0]}" if len(steps) == 1 else f"{_span(steps[0], steps[-1])}"
    if empty:
        verb = "has" if len(empty) == 1 else "have"
        which += f"; {_steps_words(empty)} {verb} no rows"
    return ("", f"{len(steps):,}", f"step{'s' if len(steps) != 1 else ''} of {e1(split)} ({which})")


def _steps_words(steps: list[int], limit: int = 5) -> str:
    """``step 2``, ``steps 2, 5, 9 (+3 more)``."""
    if len(steps) == 1:
        return f"step {steps[0]}"
    more = f" (+{len(steps) - limit} more)" if len(steps) > limit else ""
    return f"steps {', '.join(map(str, steps[:limit]))}{more}"


def _roles_card(roles: list[str]) -> tuple[str, str, str]:
    """The number of roles big, their names small (names can be long: they wrap under the number)."""
    if not roles:
        return ("", "-", "roles (no per-role data)")
    return ("", str(len(roles)), f"role{'s' if len(roles) > 1 else ''}: {_names(roles)}")


def _absent(s: RunSeries, splits: dict[str, tuple[int, int]], scalars: Any, has_samples: bool) -> str:
    """One line per part of a full report that this run cannot have, and why (each line HTML)."""
    out = []
    if not has_samples:
        # Why, as the sections below say it: no sample file, or files that hold no rows (not "only scalar
        # metrics, or no readable sample file" of a run of neither).
        out.append(
            _words(
                "Per-role summary, sample plots and trajectories: "
                + (missing(s, "reward") or NO_SAMPLES)
                + (". The scalar metrics are drawn below." if scalars.height else ".")
            )
        )
    if not scalars.height:
        out.append(_words("Scalar metrics: " + NO_SCALARS + "."))
    others = [x for x in splits if x != s.split]
    if has_samples and others:
        # Quoted as a shell reads it (a split named ``ev<x>`` is no redirection once pasted), of this run's path;
        # ``SPLIT`` and ``RUN`` where the page cannot show a name to paste (``quoted``: ``held\u2028out``).
        path = quoted(run_path(s.run)) or "RUN"
        command = f"runlog report {path} --split {quoted(others[0]) or 'SPLIT'}"
        names = ", ".join(cut(x) for x in others)
        out.append(
            e(f"Split{'s' if len(others) > 1 else ''} {names}: this report covers {cut(s.split)} only (")
            + f"<code>{e1(command, limit=None)}</code>{unpasted(s.run, others[0])})."
        )
    if has_samples and s.per_step.height == 1:
        out.append(
            "Trends: this split has one step, so the plots show distributions at that step and the doctor's trend "
            "checks are skipped."
        )
    if not out:
        return ""
    items = "".join(f"<li>{x}</li>" for x in out)
    return f'<div class="absent"><b>Not in this report:</b><ul>{items}</ul></div>'


def _findings(
    d: Diagnosis,
    has_samples: bool,
    r: RunInspection | None = None,
    run: Run | None = None,
    split: str | None = None,
) -> str:
    parts = []
    if run is not None and (pooled := split_layouts_note(run, split)) is not None:
        # Loose dumps of several layouts or tasks in one folder: every figure below pools them, as ``summarize``
        # warns; said first, since a "Healthy" or a finding reads as one evaluation's.
        parts.append(f'<p class="missing">note: {e(pooled)}</p>')
    if not d.findings and has_samples and not d.notes:
        parts.append('<div class="healthy">Healthy: the doctor found nothing to report.</div>')
    elif not d.findings:
        # Not green: some checks could not run (no samples, too few steps); the notes say which.
        parts.append('<div class="nofindings">No findings, but some checks could not run (see the notes).</div>')
    for f in d.findings:
        parts.append(_finding(_gap_finding(f, r, run) if f.kind == "step_gaps" and r and run else f))
    parts += [f'<p class="note">note: {e(n)}</p>' for n in d.all_notes]
    return "\n".join(parts)


SEVERITY_WORDS = ("error", "warning", "info")


def _finding(f: Finding) -> str:
    links = []
    if f.kind in PLOT_OF:
        links.append(f'<a href="#plot-{PLOT_OF[f.kind]}">see the {PLOT_OF[f.kind]} plot</a>')
    if f.role is not None:
        links.append(f'<a href="#{role_slug(f.role)}">{e1(f.role)}\'s trajectories</a>')
    if f.onset_step is not None:
        links.append(f"since step {f.onset_step}")
    evidence = dict(f.as_dict()["evidence"])
    message = f.message
    what = e1(f.kind)
    problems = ""
    if f.kind == "data_problem":
        # "warning: file: ..." under an INFO badge reads as a contradiction: the problem's kind goes to the
        # title ("reader warning"), the message keeps the file and what happened.
        kind = str(evidence.pop("problem_kind", "") or "")
        if kind and message.startswith(kind + ": "):
            message = message[len(kind) + 2 :]
        if kind:
            what += " · " + e1("reader warning" if kind == "warning" else kind)
        listed = evidence.pop("problems", None) or []
        if len(listed) > 1:
            problems = "<ul>" + "".join(f"<li>{e(_problem_line(x))}</li>" for x in listed) + "</ul>"
    else:
        head, sep, rest = message.partition(": ")
        if sep and head.lower() in SEVERITY_WORDS and head.lower() != f.severity:
            message = rest
    text = ", ".join(f"{e1(k)}={_short(v)}" for k, v in evidence.items())
    return (
        f'<div class="finding sev-{f.severity}"><span class="badge sev-{f.severity}">{f.severity}</span>'
        f'<span class="what">{what}</span>{" · " + e1(f.role) if f.role else ""}'
        f"<div>{e(message)}</div>{problems}"
        f'<div class="links">{" · ".join(links)}{" · " if links and text else ""}{text}</div></div>'
    )


def _problem_line(p: Any) -> str:
    if isinstance(p, dict):
        return ": ".join(str(p[k]) for k in ("path", "message") if p.get(k) is not None) or str(p)
    return str(p)


def _short(v: Any) -> str:
    if v is None or isinstance(v, float):  # null as the tables show it: "flat_value=" read as a blank
        return num(v)
    if isinstance(v, list):
        inner = ", ".join(_short(x) for x in v[:8])
        return f"[{inner}{', …' if len(v) > 8 else ''}]"
    if isinstance(v, dict):
        return "{…}"
    return e1(v)


SUMMARY_COLUMNS = (
    ("reward_mean", "reward mean"),
    ("reward_std", "std"),
    ("reward_min", "min"),
    ("reward_max", "max"),
    ("reward_count", "rewards"),
    ("reward_nan", "reward NaN"),
    ("reward_null", "reward null"),
    ("kl_mean", "KL mean"),
    ("kl_max", "KL max"),
    ("kl_nan", "KL NaN"),
    ("kl_null", "KL null"),
    ("zero_adv_frac", "zero-adv groups"),
)


def _summary(s: RunSeries) -> str:
    df = summarize(s.run, ["role"], filters=s.filters, prompt_groups=True)
    cols = [(c, h) for c, h in SUMMARY_COLUMNS if c in df.columns and df[c].null_count() < df.height]
    if "kl_count" in df.columns and not int(df["kl_count"].sum() or 0) + int(df["kl_nan"].sum() or 0):
        cols = [(c, h) for c, h in cols if c not in ("kl_nan", "kl_null")]  # a run without KL: nothing to count
    rows = [
        [e1(r["role"] if r["role"] is not None else NULL_ROLE_LABEL)] + [num(r[c]) for c, _ in cols]
        for r in df.iter_rows(named=True)
    ]
    headers = ["role", *[h for _, h in cols]]
    out = table(headers, rows)
    # What the data holds per sample (failures, reward components) is shown once, not under every role:
    # one row per figure, so that any number of components fits the page.
    per_sample = [c for c in df.columns if c.startswith("sample:")]
    if df.height and per_sample:
        out += _per_sample(s, df.row(0, named=True), per_sample)
    last_step = s.per_role["step"].max()  # an integer column: an int, or None when empty
    last = last_step if isinstance(last_step, int) else None
    caption = f'<p class="note">Split {e1(s.split)}, all steps; per-step values are in the plots.'
    if last is not None:
        caption += f" Last step {last}."
    if (pooled := split_layouts_note(s.run, s.split)) is not None:
        caption += f" Note: {e(pooled)}."
    return out + caption + "</p>"


def split_layouts_note(run: Run, split: str | None) -> str | None:
    """``layouts_note`` (the layouts and tasks every figure pools) of the report's split, its name cut as every
    label of the page (``views.layouts_note``, which ``summarize`` says of its rows' splits too)."""
    return layouts_note(run, by_env=False, splits=[split] if split is not None else None, shown=cut)


def _per_sample(s: RunSeries, first: dict[str, Any], per_sample: list[str]) -> str:
    """The figures that are per sample in the data, one row each: the failed share, and each reward component's
    mean with its valid values and the NaN and null ones (a sample without the component) left out of it,
    counted as the reward's are: a mean over 20 of 32 samples is not the mean of 32."""
    from .._lazy import pl

    counts: dict[str, tuple[int, int, int]] = {}
    comp = s.components_per_step
    if comp.height:
        summed = comp.group_by("component").agg(pl.col("count").sum(), pl.col("nan").sum(), pl.col("null").sum())
        counts = {r["component"]: (r["count"], r["nan"], r["null"]) for r in summed.iter_rows(named=True)}
    rows = []
    # Components no sample of the split has (another split's, in loose dumps of two): one line, not rows of "-".
    absent: list[tuple[str, int]] = []
    for c in per_sample:
        if c == "sample:exception_rate":
            rows.append([e1("failed trajectories (share)"), num(first[c]), "", "", ""])
            continue
        if not c.endswith("_mean"):
            continue  # a component's count, NaN and null (``_count``, ``_nan``, ``_null``): its row's, below
        name = c.removeprefix("sample:component/").removesuffix("_mean")
        values, nan, null = counts.get(name, (None, None, None))
        if values == 0 and nan == 0 and null:
            absent.append((name, null))
            continue
        rows.append([f"component {e1(name)} (mean)", num(first[c]), num(values), num(nan), num(null)])
    none = ""
    if absent:
        n = len(absent)
        none = (
            f'<p class="note">No sample of split {e1(s.split)} has the component{"s" if n > 1 else ""} '
            f"{_names([x for x, _ in absent])} (null in all {num(absent[0][1])}): left out of the table.</p>"
        )
    if not counts:
        return '<p class="note">Per sample, all roles together:</p>' + table(
            ["per sample", "value"], [r[:2] for r in rows]
        )
    return (
        '<p class="note">Per sample, all roles together (a component\'s mean is over its valid values; the NaN '
        "ones and the samples without it, null, are left out and counted):</p>"
        + table(["per sample", "value", "values", "NaN", "null"], rows)
        + none
    )


def against_labels(baseline: Run, run: Run, locations: tuple[str, str] | None = None) -> tuple[str, str]:
    """The names the comparison gives the baseline and the run, ``runlog diff``'s (``cli.diff_cmd.run_labels``):
    each run's location relative to the folder the two share (``fleet.run_names``), never its manifest's name
    (the seeds of one config share one: ``exp`` and ``exp#2`` said nothing of which folder is which); the second
    made unique (``#2``) only when the two locations are one. ``locations``: where each run was given, as the
    command line spelled them; else each run's folder (``run_location``). The page and stderr name each run's
    problems with them."""
    from ..analysis.diff.align import labels_of
    from ..fleet import run_names

    given = list(locations) if locations is not None else [run_location(baseline), run_location(run)]
    base, name = labels_of([baseline, run], run_names(given))
    return base, name


def run_location(run: Run) -> str:
    """Where a run was given, as far as the opened run tells: its folder, or ``folder/file`` for a file at its
    folder's top given alone (``Run.single``)."""
    root = str(run.root).rstrip("/")
    return f"{root}/{run.files[0].path}" if run.single and len(run.files) == 1 else root


def _baseline_note(baseline: tuple[Run, str] | None, where: str) -> str:
    """The baseline's files that could not be read, in one line: what the comparison is without (the files are
    listed in the Data section, named as the baseline's)."""
    if baseline is None:
        return ""
    run, label = baseline
    lost = [p for p in run.problems if not p.is_warning]
    if not lost:
        return ""
    n = len(lost)
    files = "; ".join(f"{p.path}: {p.message}" for p in lost[:3]) + (f" (+{n - 3} more)" if n > 3 else "")
    return (
        f'<p class="missing">The baseline, {e1(label)}, has {n} file{"s" if n > 1 else ""} that could not be read '
        f"({e(files)}): {'they are' if n > 1 else 'it is'} left out of {e1(where)} "
        '(<a href="#data">Data</a>).</p>'
    )


def _comparison(baseline: Run, run: Run, split: str | None, labels: tuple[str, str]) -> str:
    """``diff BASELINE RUN --split SPLIT``: the per-role table (end of the run, difference with its bootstrap
    interval, the verdict, the onsets, the paired comparison), the notes, and the reward and KL overlays; the runs
    named by ``labels`` (``against_labels``)."""
    from ..analysis.diff import DiffOptions, diff_runs
    from ..plots.diff import diff_figure

    d = diff_runs([baseline, run], list(labels), options=DiffOptions(splits=(split,) if split else ()))
    base, name = d.names
    out = [
        '<h2 id="comparison">Comparison</h2>',
        f"<p>This run, <b>{e1(name)}</b>, against the baseline <b>{e1(base)}</b> (<code>runlog diff</code>): "
        f"per role, the mean reward over the last {d.options.window} common steps, the difference with a "
        f"{d.options.ci:.0%} bootstrap interval, and the first step from which it is stably ahead or behind.</p>",
    ]
    if (same := _same_run(baseline, run)) is not None:
        out.append(f'<p class="missing">note: the baseline, {e1(base)}, is {same}</p>')
    out += [f'<p class="missing">{e(n)}</p>' for n in d.notes]
    # Repeated sample ids in a compared window (a copied shard, counted twice): said as ``runlog diff`` says them.
    out += [f'<p class="missing">warning: {e(w)}</p>' for w in d.warnings]
    out.append(_baseline_note((baseline, base), "this comparison"))
    if d.roles.height:
        headers = ["split", "role", "common steps", "baseline", "this run", "difference", "interval", "verdict"]
        headers += ["ahead from", "behind from", "paired (prompts)"]
        rows = []
        for r in d.roles.iter_rows(named=True):
            paired = "-"
            if r["paired_diff"] is not None:
                # Pairs that rest on a group id alone may be no one prompt (``runlog diff``'s note): said here.
                alone = r["paired_by_id"]
                paired = (
                    f"{num(r['paired_diff'])} [{num(r['paired_ci_low'])}, {num(r['paired_ci_high'])}] "
                    f"({num(r['prompts'])}{f'; {num(alone)} by id alone, no verdict: see the note' if alone else ''})"
                )
            rows.append(
                [
                    e1(r["split"] or "-"),
                    e1(r["role"] if r["role"] is not None else NULL_ROLE_LABEL),
                    num(r["common_steps"]),
                    num(r["reward_end_baseline"]),
                    num(r["reward_end"]),
                    num(r["diff"]),
                    f"[{num(r['ci_low'])}, {num(r['ci_high'])}]",
                    f"<b>{e1(r['verdict'] or '-')}</b>",
                    num(r["ahead_from"]),
                    num(r["behind_from"]),
                    paired,
                ]
            )
        out.append(table(headers, rows))
        for metric, caption in (("reward", "Mean reward per role"), ("kl", "Mean KL per role")):
            fig = diff_figure(d, metric, split)
            text = f"{e(caption)}: {e1(base)} (baseline, dashed) and {e1(name)}, with {d.options.ci:.0%} bands."
            out.append(image(figure_png(fig), f"{caption}: {base} vs {name}", f"comparison-{metric}", text))
    return "\n".join(out)


def _same_run(baseline: Run, run: Run) -> str | None:
    """How the baseline is the run itself, in ``runlog diff A A``'s words, or None: the same files (``--against``
    the run, by any spelling of its path), or some of them (a file of the run, or the run a file of the
    baseline's). ``runlog diff`` says it from the paths given (``cli.diff_cmd.run_labels``); the report has the
    opened runs: their files, resolved. A run compared with itself has every difference 0, and says nothing of
    the two runs without this."""
    from .. import storage

    def where(r: Run) -> set[str]:
        paths = (str(f.abspath) for f in r.files)
        return {p if storage.is_url(p) else os.path.realpath(p) for p in paths}

    a, b = where(baseline), where(run)
    if not a or not b:
        return None
    if a == b:
        return "this run: the same run, compared with itself"
    if a < b:
        return "a part of this run: the same run, compared with a part of itself"
    if b < a:
        return "the run this one is a part of: the same run, compared with a part of itself"
    return None


def _plots(s: RunSeries, d: Diagnosis) -> str:
    marks: dict[str, list[tuple[int, str]]] = {}
    for f in d.findings:
        if f.kind in PLOT_OF and f.onset_step is not None:
            label = f.kind + (f" ({f.role})" if f.role else "")
            marks.setdefault(PLOT_OF[f.kind], []).append((f.onset_step, label))
    one_step = s.per_step.height == 1
    out = []
    for what, caption in PLOTS:
        # Nothing to draw: one line that says what is missing and how a run gets it, not an empty panel.
        line = missing(s, what)
        over_all = ""  # diversity: which steps are measured over all their texts (no prompt group of two there)
        if line is None and what == "diversity":
            over_all = _over_all_texts(s)
            if over_all:
                caption = "Diversity of texts" + (
                    " (within prompt groups where a group holds two)"
                    if s.diversity is not None and "groups" in s.diversity.columns
                    else ""
                )
        if line is None and one_step and what == "diversity":
            line = _one_step_diversity(s, bool(over_all))
        elif line is None and one_step and what == "format":
            line = one_step_words(s, what)
        if line is None and one_step and what == "hist":
            line = "one step: the reward plot above is this distribution"
        if line is not None:
            if over_all:
                line += "; " + over_all
            out.append(f'<p class="missing" id="plot-{what}"><b>{e(caption)}</b>: {_words(line)}.</p>')
            continue
        fig = make_figure(s, what, marks=marks)
        text = e(caption) + (" — dashed lines: onsets of the findings above." if marks.get(what) else "")
        if what == "diversity" and diversity_drawn(s)[1]:
            text += " — " + e("one line per role, each role's own texts (what diversity_collapse judges)") + "."
        if what == "format" and series_format_note(s):
            text += " — " + e(REASONING_WORDS) + "."
        if over_all:
            text += " — " + e(over_all) + "."
        if one_step and what in ("reward", "kl", "components"):
            text += " — one step: the distribution of the samples' values."
        out.append(image(figure_png(fig), caption, f"plot-{what}", text))
    if isinstance(s, ReportSeries):
        # After the two text plots: which files' texts they could not read (the twin found them).
        at = next((i + 1 for i, x in enumerate(out) if 'id="plot-format"' in x), len(out))
        out.insert(at, _text_note(s.text_problems(), "the diversity and format above"))
    return "\n".join(out)


def _over_all_texts(s: RunSeries) -> str:
    """What ``metrics diversity`` notes when prompt groups do not hold two texts: the figures of those steps
    (every step, or the steps named) are over all their texts, not within groups. Empty when every step has a
    group of two texts or more."""
    from ..analysis.texts import OVER_SET_NOTE, OVER_SET_ROWS_NOTE, describe_rows

    div, roles = diversity_drawn(s)  # what the plot draws: each role's own texts, or the policy's
    if div is None or not div.height:
        return ""
    if "groups" not in div.columns:
        return OVER_SET_NOTE
    whole = div.filter(div["groups"].is_null())
    if not whole.height:
        return ""
    return OVER_SET_ROWS_NOTE.format(rows=describe_rows(whole, ["step", "role"] if roles else ["step"]))


def _one_step_diversity(s: RunSeries, over_all: bool) -> str | None:
    """``one_step_words`` for diversity, its labels without "per group" / "within groups" where the figures
    are over all the step's texts."""
    line = one_step_words(s, "diversity")
    if line is not None and over_all:
        line = line.replace(" per group", "").replace(" within groups", "")
    return line


def _scalars(s: RunSeries, frame: Any) -> str:
    """The trainer's logged metrics, one figure per namespace (``train/``, ``debate/``), at most
    ``MAX_SCALAR_PANELS`` panels a figure; a value table per namespace, folded."""
    import glob

    from .._lazy import pl
    from ..plots.figures import short_name

    if not frame.height:
        return f'<p class="missing">{_words(NO_SCALARS)}.</p>'
    groups = scalar_namespaces(frame["key"].unique(maintain_order=True).to_list())
    one_step = frame["step"].n_unique() == 1
    stats = frame.group_by("key").agg(
        pl.col("step").n_unique().alias("steps"),
        pl.col("value").first().alias("first"),
        pl.col("value").last().alias("last"),
        pl.col("value").min().alias("min"),
        pl.col("value").max().alias("max"),
        pl.col("value").is_nan().sum().alias("nan"),
    )
    by_key = {r["key"]: r for r in stats.iter_rows(named=True)}
    # Steps whose value is NaN (a diverged loss): min and max leave them out, so a column says them where any is.
    cols = ("steps", "first", "last", "min", "max", *(("nan",) if int(stats["nan"].sum() or 0) else ()))
    out = [
        '<p class="note">Every logged key (not restricted to a split), grouped by namespace; the mean value per '
        "step, raw line light, moving average bold.</p>"
    ]
    # A run that logs hundreds of thousands of keys (a per-token or per-sample metric as a key) would draw one
    # figure per 12 of them: the report never ended (500,000 keys, an audit). Figures and rows past these caps are
    # left out, and said with the commands that show them.
    drawn, listed = MAX_SCALAR_FIGURES, MAX_SCALAR_ROWS
    undrawn: list[str] = []
    unlisted = 0
    for i, (ns, all_keys) in enumerate(groups.items()):
        name = ns or "top-level keys"
        count = f"{len(all_keys)} key{'s' if len(all_keys) > 1 else ''}"
        if listed <= 0 and (drawn <= 0 or one_step):
            undrawn += [] if one_step else all_keys
            unlisted += len(all_keys)
            continue
        out.append(f'<h3 id="scalars-{i}">{e1(name)} <span class="note">{count}</span></h3>')
        shown = all_keys[: max(listed, 0)]
        listed -= len(shown)
        unlisted += len(all_keys) - len(shown)
        rows = [[e1(k), *[num(by_key[k][c]) for c in cols]] for k in shown]
        values = table(["key", *("NaN steps" if c == "nan" else c for c in cols)], rows)
        if one_step:
            out.append(values)
            continue
        keys = all_keys[: max(drawn, 0) * MAX_SCALAR_PANELS]
        undrawn += all_keys[len(keys) :]
        if not keys:
            out.append(
                f"<details><summary>values of {len(shown)} of the {len(all_keys)} keys</summary>{values}</details>"
            )
            continue
        # Figures of at most MAX_SCALAR_PANELS panels, balanced (14 keys: 7 + 7, not 12 + 2).
        figures = -(-len(keys) // MAX_SCALAR_PANELS)
        drawn -= figures
        size = -(-len(keys) // figures)
        for j in range(0, len(keys), size):
            chunk = keys[j : j + size]
            part = f" ({j // size + 1} of {figures})" if figures > 1 else ""
            title = f"{short_name(s.run.name)}: {short_name(name)}{part}"  # as the other plots' titles
            fig = make_figure(s, "scalars", keys=[glob.escape(k) for k in chunk], title=title)
            out.append(image(figure_png(fig), f"scalars {name}", f"scalars-{i}-{j}", e(f"{cut(name)}{part}")))
        which = f"{e1(ns)} keys" if ns else name  # "top-level keys" already says keys
        listed_of = f"{len(shown)} of the {len(all_keys)}" if len(shown) < len(all_keys) else f"the {len(all_keys)}"
        out.append(f"<details><summary>values of {listed_of} {which}</summary>{values}</details>")
    if undrawn:
        out.append(
            f'<p class="missing">{len(undrawn):,} key(s) not drawn (the report draws {MAX_SCALAR_FIGURES} figures of '
            f"{MAX_SCALAR_PANELS} at most): <code>runlog plot RUN --what scalars --keys 'NAMESPACE/*'</code> draws "
            "them.</p>"
        )
    if unlisted:
        out.append(
            f'<p class="missing">{unlisted:,} key(s) not listed (the report lists {MAX_SCALAR_ROWS:,} at most): '
            "<code>runlog summarize RUN --scalars</code> lists every key.</p>"
        )
    return "\n".join(out)


MAX_SCALAR_FIGURES = 40  # figures of scalars a report draws (of MAX_SCALAR_PANELS keys each)
MAX_SCALAR_ROWS = 2000  # scalar keys a report's value tables list


def _version(label: str) -> str:
    """A version label of inspect's ``by_version`` as the table shows it: ``v2``, ``v3 (skipped)``;
    ``unreadable`` and ``-`` (no version) as they are."""
    return f"v{label}" if label[:1].isdigit() else label


def _data(
    r: RunInspection,
    texts: list[Problem] | None = None,
    run: Run | None = None,
    baseline: tuple[Run, str] | None = None,
    label: str | None = None,
) -> str:
    """Layouts (their files, sample rows and scalar lines apart, as ``inspect`` counts them), missing steps,
    every problem reading the run and, with a baseline (its label beside it), the baseline's, each named by its
    run (this one by ``label``, as the comparison names it)."""
    rows = [
        [
            e1(lay),
            num(v.files),
            num(_rows_of(r, lay, "samples")),
            num(_rows_of(r, lay, "scalars")),
            e1(", ".join(f"{_version(k)}: {n}" for k, n in v.by_version.items())),
        ]
        for lay, v in r.layouts.items()
    ]
    parts = [table(["layout", "files", "samples", "scalar lines", "schema versions"], rows, text=(4,))]
    gaps = {k: v for k, v in r.step_gaps.items() if v}
    if gaps:
        parts.append(
            "<p>Missing steps: " + "; ".join(f"{e1(k)}: {e(_gap_line(r, run, k, v))}" for k, v in gaps.items()) + "</p>"
        )
    parts += _coverage(r)
    # The text reads' own: a file whose text could not be read (its numbers are counted), and their warnings.
    own = [*r.problems, *[p if p.is_warning else Problem(p.path, "unreadable text", p.message) for p in texts or []]]
    if baseline is None:
        if own:
            rows = [[e1(p.kind), e1(p.path), e(p.message)] for p in own[:50]]
            parts.append(table(["problem", "file", "message"], rows, text=(1, 2)))
        else:
            parts.append('<p class="note">No problems reading the run.</p>')
    else:
        # Two runs' problems in one table: each row names its run (a path such as samples/train/step_2 is in
        # both), as ``runlog diff`` names them on stderr.
        base_run, base_label = baseline
        name = label or (against_labels(base_run, run)[1] if run is not None else r.name)
        named = [(name, p) for p in own[:50]] + [(f"{base_label} (baseline)", p) for p in base_run.problems[:50]]
        if named:
            rows = [[e1(who), e1(p.kind), e1(p.path), e(p.message)] for who, p in named]
            parts.append(table(["run", "problem", "file", "message"], rows, text=(0, 2, 3)))
        else:
            parts.append('<p class="note">No problems reading the run or the baseline.</p>')
    parts += [f'<p class="note">{e1(n["layout"])}: {e(n["message"])}</p>' for n in r.fidelity]
    if run is not None:  # what parsing the texts noted (Flink v0 agents that read alike)
        from ..formats.flink_text import parse_notes

        parts += [f'<p class="note">{e(n)}</p>' for n in parse_notes(run.ctx)]
    return "\n".join(parts)


def _coverage(r: RunInspection) -> list[str]:
    """What ``inspect`` says of the run's steps beside its missing ones, each as a paragraph: the steps whose files
    hold no rows (``empty_steps``: present, not missing, and with nothing in any figure), and the scalar keys that
    had a value due at steps whose records their file lost (``scalars.key_gaps``, with the file)."""
    out = []
    for split, steps in r.empty_steps.items():
        if steps:
            out.append(
                f"<p>Steps that hold no rows: {e1(split)}: {e(', '.join(map(str, steps[:20])))}"
                f"{e(f' (+{len(steps) - 20} more)') if len(steps) > 20 else ''} (files of 0 rows: a step whose "
                "samples were all filtered out; counted as present, not as missing steps).</p>"
            )
    cadences = r.scalars.key_gaps
    if cadences:
        items = []
        for c in cadences[:MAX_KEY_GAPS]:
            more = f" (+{len(c.keys) - 3} more)" if len(c.keys) > 3 else ""
            every = "every step" if c.stride == 1 else f"every {c.stride} steps"
            keys = f"{len(c.keys)} key{'s' if len(c.keys) != 1 else ''} logged {every}"
            where = f" ({e(c.file)})" if c.file else ""
            items.append(
                f"<li>{e(_ranges(c.gaps))}{where}: records lost, due of {keys}: {_names(c.keys[:3])}{e(more)}</li>"
            )
        rest = len(cadences) - MAX_KEY_GAPS
        tail = (
            f'<p class="note">{rest} more (<code>runlog inspect RUN --format json</code>: '
            "<code>scalars.key_gaps</code>).</p>"
            if rest > 0
            else ""
        )
        head = (
            "<p>Scalar metrics: steps whose records a file lost, where its keys had a value due at their own cadence "
            "(as <code>runlog inspect</code>):</p>"
        )
        out.append(f"{head}<ul>{''.join(items)}</ul>{tail}")
    return out


MAX_KEY_GAPS = 10  # the groups of scalar keys with missing steps the Data section lists


def _ranges(gaps: list[list[int]], limit: int = 6) -> str:
    """``4, 10-12, ...``: runs of missing steps."""
    text = ", ".join(str(a) if a == b else f"{a}..{b}" if a < 0 or b < 0 else f"{a}-{b}" for a, b in gaps[:limit])
    return text + (f", ... (+{len(gaps) - limit})" if len(gaps) > limit else "")


def _gap_line(r: RunInspection, run: Run | None, split: str, gaps: list[list[int]]) -> str:
    """``2–3 (with no file: 3; in a file that could not be read: 2)``: the Data section's words."""
    _, ranges, apart = _gaps_apart(r, run, split, gaps, "–")
    return f"{ranges} ({'; '.join(f'{what}: {where}' for _, what, where in apart)})" if apart else ranges


def _gap_finding(f: Finding, r: RunInspection, run: Run) -> Finding:
    """The doctor's ``step_gaps`` finding, its message saying which missing steps have no file and which are in
    a file that could not be read (the Data section lists that file, and inspect's warning counts the others)."""
    split, gaps = f.evidence.get("split"), f.evidence.get("gaps")
    if not isinstance(split, str) or not gaps or split not in r.step_gaps:
        return f
    total, ranges, apart = _gaps_apart(r, run, split, r.step_gaps[split])
    if not apart:
        return f
    detail = ", ".join(f"{n} {what} ({where})" for n, what, where in apart)
    return dataclasses.replace(f, message=f"split {split}: {total} step(s) missing ({ranges}): {detail}")


def _rows_of(r: RunInspection, layout: str, kind: str) -> int:
    """The rows of the layout's readable files of one kind (``samples``, ``scalars``): the layout's "rows" of
    ``inspect`` apart (1,120 read as samples where 1,088 are samples and 32 scalar lines)."""
    return sum(
        int(f.get("rows") or 0) for f in r.files if f["layout"] == layout and f["kind"] == kind and f["readable"]
    )


def _gaps_apart(
    r: RunInspection, run: Run | None, split: str, gaps: list[list[int]], dash: str = "-"
) -> tuple[int, str, list[tuple[int, str, str]]]:
    """A split's missing steps: how many, their ranges, and which of them a file names that could not be read,
    apart from those with no file (``(count, what, ranges)`` each; none when no file names any). ``inspect``'s
    warning counts the steps with no file ("1 step(s) missing (3): no file holds them"), the doctor every step
    with no sample read ("2 step(s) missing (2-3)"): said apart, the two figures agree."""
    from ..analysis.inspect import gaps_without

    stride = max(1, r.step_stride.get(split, 1))
    every = f" every {stride}" if stride > 1 else ""

    def shown(g: list[list[int]]) -> str:
        text = ", ".join(f"{a}" if a == b else f"{a}{dash}{b}{every}" for a, b in g[:6])
        return text + (", ..." if len(g) > 6 else "")

    def count(g: list[list[int]]) -> int:
        return sum((b - a) // stride + 1 for a, b in g)

    total = count(gaps)
    if run is None:
        return total, shown(gaps), []
    # The steps named by the split's unreadable files (as inspect files them: a file of no split under "?"), those
    # inside a gap: a few (one per file), never a gap's every step.
    named = {
        s
        for f in run.files
        if f.kind == "samples" and not f.readable and (f.split or "?") == split
        for s in f.all_steps()
    }
    inside = sorted(s for s in named if any(a <= s <= b and (s - a) % stride == 0 for a, b in gaps))
    if not inside:
        return total, shown(gaps), []
    unread: list[list[int]] = []
    for x in inside:
        if unread and x == unread[-1][1] + stride:
            unread[-1][1] = x
        else:
            unread.append([x, x])
    no_file = gaps_without(gaps, stride, inside)
    parts = [(count(no_file), "with no file", shown(no_file))] if no_file else []
    parts.append((len(inside), "in a file that could not be read", shown(unread)))
    return total, shown(gaps), parts


__all__ = ["STAGES", "against_labels", "build_report"]
