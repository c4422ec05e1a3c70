"""``build_report(run)``: one self-contained HTML page about a run, to read and to share.

It holds the overview (``inspect_run``), the doctor's findings linked to the plots and trajectories they
concern, per-role summary tables (``summarize``), the plots (``runlog.plots``, embedded as PNG ``data:``
URIs) and the best and worst trajectories per role (``runlog.render``'s HTML renderer, with its escaping).
The page loads nothing, runs no script and says so in its Content-Security-Policy (``template.CSP``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import __version__
from ..analysis.doctor import Diagnosis, DoctorConfig, Finding, diagnose
from ..analysis.summarize import summarize
from ..plots import RunSeries, figure_png, make_figure
from ..run import Run
from .template import e, e1, image, num, page, table

STAGES = ("overview", "doctor", "summary", "plots", "trajectories")
PLOTS = (
    ("reward", "Mean reward per role"),
    ("kl", "Mean KL per role"),
    ("components", "Reward components"),
    ("diversity", "Diversity of completions within prompt groups"),
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
    "exception_spike": "reward",
}
MAX_CHARS = 3000  # per text in the rendered trajectories: a report is for reading, not for archiving


def build_report(run: Run, config: DoctorConfig | None = None, *, progress: Callable[[str], None] | None = None) -> str:
    """The report page as a string. ``progress(stage)`` is called as each of ``STAGES`` completes."""
    tick = progress or (lambda _stage: None)
    cfg = config or DoctorConfig()
    series = RunSeries(run, split=cfg.split or None, format_spec=cfg.format_spec)
    overview = series.inspect
    tick("overview")
    result = diagnose(run, cfg, series)
    tick("doctor")
    summary = _summary(series) if series.split is not None else ""
    tick("summary")
    plots = _plots(series, result) if series.per_step.height else '<p class="note">No samples: nothing to plot.</p>'
    tick("plots")
    trajectories = _trajectories(series)
    tick("trajectories")
    body = "\n".join(
        [
            _cards(overview, result),
            '<h2 id="findings">Findings</h2>',
            _findings(result),
            '<h2 id="summary">Per-role summary</h2>',
            summary or '<p class="note">No samples in this run.</p>',
            '<h2 id="plots">Plots</h2>',
            plots,
            '<h2 id="trajectories">Best and worst trajectories</h2>',
            trajectories,
            '<h2 id="data">Data</h2>',
            _data(overview),
        ]
    )
    split = f" · split <b>{e1(series.split)}</b>" if series.split else ""
    header = f'<h1>{e1(run.name)}</h1><div class="sub">{e1(overview["run"])}{split}</div>'
    nav = [
        ("findings", "Findings"),
        ("summary", "Summary"),
        ("plots", "Plots"),
        ("trajectories", "Trajectories"),
        ("data", "Data"),
    ]
    footer = f"runlog {e1(__version__)} report · self-contained: no scripts, no network"
    return page(f"runlog report: {run.name}", nav, header, body, footer)


def _cards(r: dict[str, Any], d: Diagnosis) -> str:
    steps = r["steps"]
    span = ", ".join(f"{e1(s)} {a}–{b}" for s, (a, b) in steps.items()) or "-"
    sev = {s: sum(f.severity == s for f in d.findings) for s in ("error", "warning", "info")}
    worst = "bad" if sev["error"] else ("warn" if sev["warning"] else "good")
    cards = [
        ("", f"{r['rows_by_kind'].get('samples', 0):,}", "samples"),
        ("", span, "steps"),
        ("", e1(", ".join(r["roles"])) or "-", "roles"),
        ("", e1(", ".join(r["layouts"])) or "-", "layout"),
        ("warn" if r["exceptions"] else "", f"{r['exceptions']:,}", "failed trajectories"),
        (worst, f"{sev['error']} / {sev['warning']} / {sev['info']}", "errors / warnings / info"),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card {cls}"><div class="v">{v}</div><div class="k">{k}</div></div>' for cls, v, k in cards
        )
        + "</div>"
    )


def _findings(d: Diagnosis) -> str:
    parts = []
    if not d.findings:
        parts.append('<div class="healthy">Healthy: the doctor found nothing to report.</div>')
    for f in d.findings:
        parts.append(_finding(f))
    parts += [f'<p class="note">note: {e(n)}</p>' for n in d.notes]
    return "\n".join(parts)


def _finding(f: Finding) -> str:
    links = []
    if f.kind in PLOT_OF:
        links.append(f'<a href="#plot-{PLOT_OF[f.kind]}">see the {PLOT_OF[f.kind]} plot</a>')
    if f.role is not None:
        links.append(f'<a href="#{_slug(f.role)}">{e1(f.role)}\'s trajectories</a>')
    if f.onset_step is not None:
        links.append(f"since step {f.onset_step}")
    evidence = ", ".join(f"{e1(k)}={_short(v)}" for k, v in f.as_dict()["evidence"].items())
    return (
        f'<div class="finding sev-{f.severity}"><span class="badge sev-{f.severity}">{f.severity}</span>'
        f'<span class="what">{e1(f.kind)}</span>{" · " + e1(f.role) if f.role else ""}'
        f"<div>{e(f.message)}</div>"
        f'<div class="links">{" · ".join(links)}{" · " if links and evidence else ""}{evidence}</div></div>'
    )


def _short(v: Any) -> str:
    if isinstance(v, float):
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
    ("reward_nan", "NaN"),
    ("kl_mean", "KL mean"),
    ("kl_max", "KL max"),
    ("zero_adv_frac", "zero-adv groups"),
)


def _summary(s: RunSeries) -> str:
    df = summarize(s.run, ["role"], filters=s.filters, prompt_groups=True)
    cols = [(c, h) for c, h in SUMMARY_COLUMNS if c in df.columns and df[c].null_count() < df.height]
    rows = [
        [e1(r["role"] if r["role"] is not None else "(role unknown)")] + [num(r[c]) for c, _ in cols]
        for r in df.iter_rows(named=True)
    ]
    headers = ["role", *[h for _, h in cols]]
    out = table(headers, rows)
    # What the data holds per sample (failures, reward components) is shown once, not under every role.
    per_sample = [c for c in df.columns if c.startswith("sample:")]
    if df.height and per_sample:
        first = df.row(0, named=True)
        names = [
            "failed" if c == "sample:exception_rate" else c.removeprefix("sample:component/").removesuffix("_mean")
            for c in per_sample
        ]
        out += '<p class="note">Per sample, all roles together (failed trajectories; reward component means):</p>'
        out += table(names, [[num(first[c]) for c in per_sample]])
    last = s.per_role["step"].max() if s.per_role.height else None
    caption = f'<p class="note">Split {e1(s.split)}, all steps; per-step values are in the plots.'
    if last is not None:
        caption += f" Last step {last}."
    return out + caption + "</p>"


def _plots(s: RunSeries, d: Diagnosis) -> str:
    marks: dict[str, list[tuple[int, str]]] = {}
    for f in d.findings:
        if f.kind in PLOT_OF and f.onset_step is not None:
            label = f.kind + (f" ({f.role})" if f.role else "")
            marks.setdefault(PLOT_OF[f.kind], []).append((f.onset_step, label))
    out = []
    for what, caption in PLOTS:
        fig = make_figure(s, what, marks=marks)
        text = e(caption) + (" — dashed lines: onsets of the findings above." if marks.get(what) else "")
        out.append(image(figure_png(fig), caption, f"plot-{what}", text))
    return "\n".join(out)


def _trajectories(s: RunSeries) -> str:
    from ..errors import RunlogError
    from ..render import Criteria, conversations
    from ..render.html_page import conversation_html

    if s.split is None:
        return '<p class="note">No samples: no trajectories to show.</p>'
    roles = [r for r in s.roles if r is not None] or [None]
    out = []
    for role in roles:
        try:
            convs, sel = conversations(
                s.run, Criteria(split=s.split, steps="last", best=1, worst=1, role=role), max_chars=MAX_CHARS
            )
        except RunlogError as exc:
            out.append(f'<p class="note">{e1(role or "run")}: trajectories not available ({e(exc)})</p>')
            continue
        title = f"{role}: best and worst by {role}'s reward" if role else "best and worst by total reward"
        out.append(f'<h3 id="{_slug(role)}">{e1(title)} ({e1(sel.scope)})</h3>')
        if not convs:
            out.append('<p class="note">No sample with a valid reward at the last step.</p>')
        for c in convs:
            out.append(f'<div class="traj">{conversation_html(c)}</div>')
    return "\n".join(out)


def _data(r: dict[str, Any]) -> str:
    rows = [
        [e1(lay), num(v["files"]), num(v["rows"]), e1(", ".join(f"v{k}: {n}" for k, n in v["by_version"].items()))]
        for lay, v in r["layouts"].items()
    ]
    parts = [table(["layout", "files", "rows", "schema versions"], rows)]
    gaps = {k: v for k, v in r["step_gaps"].items() if v}
    if gaps:
        parts.append(
            "<p>Missing steps: "
            + "; ".join(
                f"{e1(k)}: " + ", ".join(f"{a}–{b}" if a != b else str(a) for a, b in v) for k, v in gaps.items()
            )
            + "</p>"
        )
    if r["problems"]:
        rows = [[e1(p["kind"]), e1(p["path"]), e(p["message"])] for p in r["problems"][:50]]
        parts.append(table(["problem", "file", "message"], rows))
    else:
        parts.append('<p class="note">No problems reading the run.</p>')
    parts += [f'<p class="note">{e1(n["layout"])}: {e(n["message"])}</p>' for n in r["fidelity"]]
    return "\n".join(parts)


def _slug(role: str | None) -> str:
    """An id from a role name: only [a-z0-9-], so that no data reaches an attribute unescaped."""
    if role is None:
        return "traj-run"
    import hashlib

    out = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in role.lower())
    return f"traj-{out[:40]}-{hashlib.sha1(role.encode()).hexdigest()[:8]}"


__all__ = ["STAGES", "build_report"]
