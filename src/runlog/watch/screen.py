"""The live screen of ``runlog watch``: a rich renderable drawn from a ``LiveRun`` at any width.

Every string from the run (its name, roles, paths, problem messages, sample ids and texts) is made inert
(``render.safe.one_line``: control and invisible characters shown as escapes) and drawn as ``rich.text.Text``,
which never reads markup; every line is cut to the screen's width.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..render.safe import one_line
from ..textsafe import cut_middle_cells, pad_cells
from .findings import DoctorWatch
from .live import LiveRun

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.text import Text

BARS = "▁▂▃▄▅▆▇█"
GAP = "·"  # a sparkline's mark of steps missing between two bars
MAX_LINES = 6  # problems, findings: the most recent ones beyond this are counted, not shown
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _scaled(values: Sequence[float | None]) -> tuple[list[float | None], int]:
    """The finite values divided by a power of two that brings the largest into [0.5, 1) (exactly: the bits of
    each value are kept), the others None; and that power. Sums and squares of the scaled values cannot
    overflow, whatever the values' size (a reward of 1e200 squared was an ``OverflowError``)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    e = math.frexp(max(finite))[1] if finite and max(finite) > 0 else 0
    return [math.ldexp(v, -e) if v is not None and math.isfinite(v) else None for v in values], e


# How far apart values may be and still be one value: a mean computed as a sum over n (``summarize``'s, polars')
# carries rounding noise (three KL of 0.1 average to 0.10000000000000002, one unit in the last place above; 100 000
# equal values, up to 17 units): a series that differs by no more than this many units in the last place of its
# largest value is flat, a level bar and no trend. It was drawn as jumps between the lowest and highest bar, with
# a trend of +1.1e-17.
FLAT_ULPS = 64


def flat(values: Sequence[float]) -> bool:
    """Whether the finite ``values`` differ by rounding noise at most (``FLAT_ULPS``)."""
    lo, hi = min(values), max(values)
    return hi - lo <= FLAT_ULPS * math.ulp(max(abs(lo), abs(hi)))


def stride(steps: Sequence[int]) -> int | None:
    """The smallest difference between two consecutive steps (an eval split's every 5 steps is no gap), or None."""
    return min((b - a for a, b in zip(steps, steps[1:], strict=False) if b > a), default=None)


def window(steps: Sequence[int], width: int, every: int | None = None) -> int:
    """How many of the last ``steps`` a sparkline of ``width`` characters shows: one bar a step, and a ``GAP``
    mark between two shown steps farther apart than ``every`` (default the steps' ``stride``)."""
    every = stride(steps) if every is None else every
    used = n = 0
    for i in range(len(steps) - 1, -1, -1):
        mark = int(n > 0 and every is not None and steps[i + 1] - steps[i] > every)
        if used + 1 + mark > width:
            break
        used, n = used + 1 + mark, n + 1
    return n


def sparkline(values: Sequence[float | None], steps: Sequence[int] | None = None, every: int | None = None) -> str:
    """One bar per value, scaled between the values' minimum and maximum (values that differ by rounding noise
    only, ``flat``, are one level); a missing, NaN or infinite value is a space. With ``steps`` (each value's
    step), a ``GAP`` mark between two steps farther apart than ``every`` (default the steps' ``stride``): steps
    are missing there, and the bars on either side are not neighbours."""
    scaled, _ = _scaled(values)
    every = stride(steps) if steps is not None and every is None else every
    marks = [
        GAP if steps is not None and every is not None and i and steps[i] - steps[i - 1] > every else ""
        for i in range(len(values))
    ]
    finite = [v for v in scaled if v is not None]
    if not finite:
        return "".join(m + " " for m in marks)
    lo, hi = min(finite), max(finite)
    out = []
    for v, mark in zip(scaled, marks, strict=True):
        out.append(mark)
        if v is None:
            out.append(" ")
        elif hi == lo or flat(finite):
            out.append(BARS[3])
        else:
            out.append(BARS[min(len(BARS) - 1, int((v - lo) / (hi - lo) * len(BARS)))])
    return "".join(out)


def _fit(values: Sequence[float | None], steps: Sequence[int] | None = None) -> tuple[float, float, int] | None:
    """(change over the window, its t statistic, the number of finite values) of a least-squares line through
    the finite values (None with fewer than 3, or when the change is beyond a float's range), against their
    ``steps`` (default: evenly spaced; steps missing in the window are a longer run, not one step). The t
    statistic is the slope over its standard error (infinite for a perfect line). The fit is done on the
    values scaled by a power of two (``_scaled``), so that no size of value overflows; the t statistic does not
    depend on the scale."""
    scaled, e = _scaled(values)
    xs = range(len(values)) if steps is None else steps
    pts = [(x, v) for x, v in zip(xs, scaled, strict=True) if v is not None]
    if len(pts) < 3:
        return None
    n = len(pts)
    if flat([v for _, v in pts]):  # rounding noise of equal values: no change, not a change of 1e-17
        return 0.0, 0.0, n
    mx = sum(i for i, _ in pts) / n
    my = sum(v for _, v in pts) / n
    sxx = sum((i - mx) ** 2 for i, _ in pts)
    slope = sum((i - mx) * (v - my) for i, v in pts) / sxx if sxx else 0.0
    residual = sum((v - my - slope * (i - mx)) ** 2 for i, v in pts)
    se = math.sqrt(residual / (n - 2) / sxx) if sxx else 0.0
    t = slope / se if se else (math.inf if slope else 0.0)
    try:
        change = math.ldexp(slope * (pts[-1][0] - pts[0][0]), e)
    except OverflowError:  # a change beyond the largest float: no trend to show
        return None
    return (change, t, n) if math.isfinite(change) else None


def trend(values: Sequence[float | None], steps: Sequence[int] | None = None) -> float | None:
    """The change over the window of a least-squares line through the values at their ``steps`` (None with
    fewer than 3)."""
    fit = _fit(values, steps)
    return None if fit is None else fit[0]


# Student's t at 0.975 by degrees of freedom (n - 2), 1 to 30: a slope this many standard errors from 0 is a
# trend at the 5 % level (two-sided); above 30 degrees of freedom, 2.0 (2.02 at 40, 1.96 in the limit).
_T975 = (
    *(12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13),
    *(2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04),
)


def trend_text(values: Sequence[float | None], steps: Sequence[int] | None = None) -> str:
    """``↑+0.12``, ``↓-0.3``, or ``→+0.001`` (flat: the slope is not distinguishable from noise at the 5 % level,
    a t test of the least-squares slope against the ``steps``), or empty with fewer than 3 values."""
    fit = _fit(values, steps)
    if fit is None:
        return ""
    change, t, n = fit
    critical = _T975[n - 3] if n - 2 <= len(_T975) else 2.0
    arrow = "→" if change == 0 or abs(t) < critical else ("↑" if change > 0 else "↓")
    return f"{arrow}{change:+.2g}"


def num(v: float | None, digits: int = 4, *, zeros: bool = False) -> str:
    """A figure in 4 significant digits (``summarize``'s tables' and the step lines' ``.4g``), or ``digits``;
    ``zeros`` keeps trailing zeros (``0.050000``), so that figures shown to more digits read as such."""
    if v is None:
        return "-"
    if not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{v + 0.0:{'#' if zeros else ''}.{digits}g}"  # + 0.0: a reward of -0.0 reads 0, not -0


def nums_apart(values: Sequence[float | None]) -> list[str]:
    """``num`` of each value, with as many more significant digits (trailing zeros kept) as it takes for
    different values to read differently: a best sample of 0.0500005 and a worst of 0.0499995 read ``0.05``
    in 4 digits, ``0.050001`` and ``0.050000`` in 6; 17 digits tell any two floats apart."""
    distinct = {v for v in values if v is not None and math.isfinite(v)}
    if len({num(v) for v in distinct}) == len(distinct):
        return [num(v) for v in values]
    digits = next(d for d in range(5, 18) if len({num(v, d, zeros=True) for v in distinct}) == len(distinct))
    return [num(v, digits, zeros=True) for v in values]


def ago(t: float | None, now: float) -> str:
    if t is None:
        return "-"
    s = max(0.0, now - t)
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h")


@dataclass
class SampleLine:
    """The best or worst sample of a step, as one line: its reward, id and (the start of) its text."""

    label: str
    reward: float | None
    sample_id: str | None
    text: str
    note: bool = False  # no sample to show: ``text`` says why (``_unranked``)


def extremes(live: LiveRun) -> list[SampleLine]:
    """The best and the worst sample of the latest step (by the sample reward, or by the one ``--role``'s
    reward), reading that step's files only. When the step has samples but none with a reward to rank them by
    (every one NaN or null), one ``note`` line says so: the lines left out without a word read as a screen too
    small. Empty when nothing could be read (retried when the step changes)."""
    from ..errors import RunlogError, UsageError
    from ..formats.common import live_reads
    from ..render import Criteria, conversations
    from ..run import read_failures

    run = live.latest_run()
    if run is None or live.latest is None:
        return []
    role = live.role_filter[0] if len(live.role_filter) == 1 else None
    step = live.latest.step
    criteria = Criteria(steps=str(step), split=live.split, best=1, worst=1, role=role)
    try:
        with live_reads():  # the step's files may still change: never memory-mapped (``formats.common``)
            try:
                convs, _ = conversations(run, criteria)
            except UsageError:  # samples, none of them with a reward to rank by
                convs = []
            if not convs:
                return _unranked(run, step, live.split, role)
    except read_failures(RunlogError):  # a file rewritten while read (a panic in polars): none this time
        return []
    out = []
    for label, conv in zip(("best", "worst"), convs, strict=False):
        reward = None
        if conv.reward is not None:
            reward = conv.reward.total
            if role is not None:
                reward = next((r.reward for r in conv.reward.roles if r.role == role), None)
        out.append(SampleLine(label, reward, conv.sample_id, sample_text(conv)))
    return out


def _unranked(run: Any, step: int, split: str | None, role: str | None) -> list[SampleLine]:
    """The ``note`` line of a step whose samples have no reward to rank them by (the total, or ``role``'s):
    ``no valid total reward at step 9 (16 NaN)``; none when some reward is valid or the step has no sample."""
    from .._lazy import pl
    from ..render.where import role_reward

    score = role_reward(role) if role else pl.col("reward").cast(pl.Float64)
    keep = pl.col("step") == step
    if split is not None:
        keep &= pl.col("split") == split
    counts = [
        score.is_nan().sum().alias("nan"),
        score.is_null().sum().alias("null"),
        (score.is_not_null() & ~score.is_nan()).sum().alias("valid"),
    ]
    [df] = run.collect(lambda: [run.samples.filter(keep).select(counts)])
    nan, null, valid = (int(df[c][0] or 0) for c in ("nan", "null", "valid"))
    if valid or not nan + null:
        return []
    why = ", ".join(f"{n} {what}" for n, what in ((nan, "NaN"), (null, "null")) if n)
    what = f"{one_line(role)} reward" if role else "total reward"
    return [SampleLine("best/worst", None, None, f"no valid {what} at step {step} ({why})", note=True)]


def sample_text(conv: Any) -> str:
    """The sample's last words of the model (reasoning left out), else its last turn's text, on one line."""
    from ..render.model import is_model_turn, strip_think

    turns = [t for t in conv.turns if t.content]
    said = [t for t in turns if is_model_turn(t)] or turns
    if not said:
        return ""
    return one_line(" ".join((strip_think(said[-1].content) or "").split()))


# Emoji skin tones (U+1F3FB-U+1F3FF): rich (14 and later) counts each 0 cells, joined to the emoji before it
# (``👍🏽`` is 2 cells to it), but a terminal that draws each character on its own (tmux, many others) gives it
# 2 cells of its own: a line of them that rich had cut to the screen's width wrapped there.
ZWJ = "\u200d"  # the zero-width joiner of emoji sequences (``👩‍💻``: woman, ZWJ, laptop)
_TONES = re.compile("[\U0001f3fb-\U0001f3ff]")


def drawn_cells(text: str) -> int:
    """The cells ``text`` may take on a terminal: the larger of rich's ``cell_len`` (a terminal that joins an emoji
    sequence into one glyph) and the sum of each character's own width (one that draws each character: tmux),
    with each emoji skin tone counted as 2 cells of its own (``_TONES``). An emoji ZWJ sequence (``👩‍💻``,
    ``👨‍👩‍👧``) is 2 cells to rich, its parts' widths (4, 6) on a terminal that draws them one by one, the joiner
    itself none; a line cut to this count fits either terminal."""
    from rich.cells import cell_len, get_character_cell_size

    drawn = sum(2 if _TONES.match(c) else get_character_cell_size(c) for c in text)
    return max(cell_len(text), drawn)


def fit_cells(line: Text, width: int) -> None:
    """Cut ``line`` (in place) to at most ``width`` cells on any terminal (``drawn_cells``), ending in ``…`` where
    it was cut: rich's ``truncate`` measures with its own widths, which a skin tone's, or an emoji ZWJ sequence's
    on a terminal that draws each of its characters, exceed. A cut inside such a sequence drops the joiner left
    at its end (``👨‍…`` would join the ellipsis to the emoji)."""
    plain = line.plain
    if plain.isascii() or drawn_cells(plain) <= width:
        line.truncate(width, overflow="ellipsis")
        return
    lo, hi = 0, len(plain)  # the longest start of the line that leaves a cell for the ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if drawn_cells(plain[:mid]) <= width - 1:
            lo = mid
        else:
            hi = mid - 1
    while lo and plain[lo - 1] == ZWJ:
        lo -= 1
    line.right_crop(len(plain) - lo)
    if width > 0:
        line.append("…")


def _processes(processes: Sequence[int]) -> str:
    """``p0, p1``: process indices as the run's files name them (``.writer.p0.json``, ``step_….p0.parquet``)."""
    return ", ".join(f"p{p}" for p in processes)


class Screen:
    """What ``runlog watch`` shows on a terminal (see the module's docstring)."""

    def __init__(
        self,
        live: LiveRun,
        doctor: DoctorWatch | None,
        samples: list[SampleLine],
        *,
        interval: float,
        status: str = "",
    ) -> None:
        self.live = live
        self.doctor = doctor
        self.samples = samples
        self.interval = interval
        self.status = status

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        for line in self.lines(width):
            line.no_wrap = True
            line.overflow = "ellipsis"
            fit_cells(line, width)
            yield line

    def lines(self, width: int) -> list[Text]:
        from rich.text import Text

        live, now = self.live, time.time()
        out: list[Text] = []
        head = Text()
        head.append("runlog watch ", style="bold")
        head.append(one_line(live.name), style="bold cyan")
        if live.split:
            head.append(f"  split {one_line(live.split)}", style="dim")
        out.append(head)
        st = live.latest
        info = Text()
        scalars = live.scalars_only() if st is None else []
        if scalars:
            more = f" and {len(scalars) - 1} more" if len(scalars) > 1 else ""
            info.append(f"no sample file, only scalar metrics ({one_line(scalars[0])}{more})", style="dim")
            out.append(info)
            info = Text("watch follows samples, not scalars: runlog summarize --scalars shows them", style="dim")
        elif st is None:
            info.append("waiting for the first step...", style="dim")
        else:
            rate = live.rows_per_second()
            info.append(f"step {st.step}", style="bold")
            info.append(f"  {st.rows:,} rows/step  ")
            info.append("-" if rate is None else f"{rate:,.1f}", style="bold")
            info.append(" rows/s  ")
            info.append(f"last step {ago(live.newest_arrival(), now)} ago", style="dim")
        out.append(info)
        ends = live.end_state
        if ends is not None and ends.processes:  # the writers' state files (``runlog.ends``)
            missing = ends.missing
            closed = [p for p in ends.processes if p not in missing]
            writers = Text("writers: ", style="dim")
            if ends.finished:
                writers.append(f"all closed ({', '.join(map(str, closed))}): the run is finished", style="green")
            else:
                # Process indices, written as the files name them (``p0``): ``open 0`` read as "no writer open".
                if missing:
                    writers.append(f"open {_processes(missing)}")
                if closed:
                    writers.append(("  " if missing else "") + f"closed {_processes(closed)}", style="dim")
                if ends.incomplete:
                    writers.append("  (files still missing: being copied?)", style="yellow")
            out.append(writers)
        out.append(Text(""))
        out += self._roles(width)
        out += self._problems()
        out += self._findings(now)
        out += self._samples(width)
        footer = Text("q quits", style="dim")
        if self.status:
            footer.append(f"  {one_line(self.status)}", style="dim")
        out.append(footer)
        return out

    def _roles(self, width: int) -> list[Text]:
        from rich.text import Text

        from ..render.colours import role_colour

        roles = self.live.roles()
        if not roles:
            return []
        names = [one_line(r or "(none)") for r in roles]
        columns = {
            (role, what): [v for _, v in self.live.series(role, what, 40)]
            for role in roles
            for what in ("reward_mean", "kl_mean")
        }
        # the steps of those values (every role's series has the run's last steps), and the split's stride: a
        # step missing is marked in the sparklines, and the trends are fitted against the steps themselves
        every = stride(sorted(self.live.steps))
        at = sorted(self.live.steps)[-40:]
        # the value and trend columns hold their widest figures (``-1.235e-05``, ``↑+4.3e-05``: 9 or more wide);
        # the trends are those of the sparklines' window, whose width depends on theirs: widen until they fit
        value_w = max([9] + [len(num(v[-1] if v else None)) for v in columns.values()])
        from rich.cells import cell_len

        # names are measured in terminal cells: a CJK or emoji character takes two, and a name padded by
        # characters pushed its line past the screen's edge, where rich cut off the KL figures
        longest = max(cell_len(n) for n in names)
        trend_w = 9
        while True:
            per_column = 1 + 1 + value_w + 1 + trend_w  # space, sparkline, space, value, space, trend
            # names up to 14 wide, wider (up to what leaves 4-bar sparklines) where cut names would read alike
            widest = max(14, width - 2 * (per_column + 4))
            name_w = max(4, min(longest, 14))
            while name_w < min(longest, widest) and len({cut_middle_cells(n, name_w) for n in names}) < len(set(names)):
                name_w += 1
            spark = max(4, min(40, (width - name_w - 2 * per_column) // 2))
            shown = window(at, spark, every)
            needed = max([9] + [len(trend_text(v[-shown:], at[-shown:])) for v in columns.values()])
            if needed <= trend_w:
                break
            trend_w = needed
        # the number of steps the sparklines show (the window, or fewer while the run has fewer steps)
        steps = f"reward, last {shown} step{'' if shown == 1 else 's'}"
        out = [
            Text(
                f"{'role':<{name_w}} {steps:<{per_column + spark - 1}} {'KL':<{per_column + spark - 2}}",
                style="dim",
            )
        ]
        for role, name in zip(roles, names, strict=True):
            line = Text()
            line.append(pad_cells(cut_middle_cells(name, name_w), name_w), style=f"bold {role_colour(role)}")
            for what in ("reward_mean", "kl_mean"):
                values, where = columns[(role, what)][-shown:] if shown else [], at[-shown:] if shown else []
                line.append(" ")
                bars = sparkline(values, where, every)
                line.append(f"{bars:<{spark}}", style="green" if what == "reward_mean" else "magenta")
                line.append(f" {num(values[-1] if values else None):>{value_w}} ")
                line.append(f"{trend_text(values, where):<{trend_w}}", style="dim")
            out.append(line)
        return out

    def _problems(self) -> list[Text]:
        from rich.text import Text

        issues = list(self.live.issues.values())
        if not issues:
            return []
        out = [Text(""), Text(f"problems ({len(issues)})", style="bold")]
        issues.sort(key=lambda i: (i.severity != "error", -1 if i.onset_step is None else i.onset_step))
        for issue in issues[:MAX_LINES]:
            line = Text("  ")
            line.append(f"{issue.severity:<7} ", style=SEVERITY_STYLE.get(issue.severity, ""))
            line.append(f"step {issue.onset_step if issue.onset_step is not None else '-'}  ")
            line.append(one_line(f"{issue.kind}: {issue.path}: {issue.message}"))
            out.append(line)
        if len(issues) > MAX_LINES:
            out.append(Text(f"  ... {len(issues) - MAX_LINES} more (runlog inspect)", style="dim"))
        return out

    def _findings(self, now: float) -> list[Text]:
        from rich.text import Text

        doc = self.doctor
        if doc is None:
            return []
        when = "not yet checked" if doc.checked_at is None else f"checked {ago(doc.checked_at, now)} ago"
        out = [Text(""), Text(f"doctor ({when})", style="bold")]
        if doc.error:
            out.append(Text(f"  {one_line(doc.error)}", style="dim"))
        if doc.checked_at is not None and not doc.findings:
            out.append(Text("  no findings", style="green"))
            out += [Text(f"  note: {one_line(n)}", style="dim") for n in doc.notes[:2]]
        for f in doc.findings[:MAX_LINES]:
            line = Text("  ")
            line.append(f"{f.severity:<7} ", style=SEVERITY_STYLE.get(f.severity, ""))
            line.append(f"step {f.onset_step if f.onset_step is not None else '-'}  ")
            line.append(one_line(f.message))
            out.append(line)
        if len(doc.findings) > MAX_LINES:
            out.append(Text(f"  ... {len(doc.findings) - MAX_LINES} more (runlog doctor)", style="dim"))
        return out

    def _samples(self, width: int) -> list[Text]:
        from rich.text import Text

        if not self.samples:
            return []
        out = [Text("")]
        notes = [s for s in self.samples if s.note]
        for s in notes:
            line = Text(f"{s.label}: ", style="bold")
            line.append(s.text, style="yellow")
            out.append(line)
        if notes:
            return out
        rewards = nums_apart([s.reward for s in self.samples])
        reward_w = max(6, *(len(r) for r in rewards))
        for s, reward in zip(self.samples, rewards, strict=True):
            line = Text()
            line.append(f"{s.label:<5} ", style="bold green" if s.label == "best" else "bold red")
            line.append(f"{reward:>{reward_w}}  ")
            line.append(one_line(s.sample_id or "-")[:24], style="dim")
            line.append("  ")
            line.append(s.text[: max(0, width * 2)])
            out.append(line)
        return out
