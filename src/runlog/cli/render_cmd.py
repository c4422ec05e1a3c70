"""``runlog render-trajectory DIR``: what did the model actually say? Whole conversations, tool calls and
reward breakdowns, for a terminal, as HTML, Markdown or JSON."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from ..errors import EXIT_OK, EXIT_PROBLEMS, UsageError
from .common import (
    RUN_PATH,
    STORAGE_OPTION,
    fail,
    handle_errors,
    report_problems,
    stdout_console,
    use_storage_options,
    write_stdout,
    writing,
    wrote,
)
from .options import (
    STEPS_SYNTAX,
    Format,
    Layout,
    NoProbeCache,
    Output,
    Split,
    format_from_output,
    json_lines,
    steps_checked,
)

SELECTORS_HINT = (
    "choose others with --steps N|A:B|all, --split, --sample-id ID, --index N, --best/--worst N, --role NAME, "
    "--where 'reward < 0.2', --grep TEXT, --random N --seed S, --exceptions"
)


class RenderFormat(str, Enum):
    terminal = "terminal"
    html = "html"
    markdown = "markdown"
    json = "json"


def render_command(
    ctx: typer.Context,
    path: str = RUN_PATH,
    step: str | None = typer.Option(
        None,
        "--steps",
        metavar="STEPS",
        help=(
            f"Steps: {STEPS_SYNTAX}; or last, or all (default: last; all with --where, --grep, --exceptions or "
            "--sample-id)."
        ),
        callback=steps_checked("last", "all"),
    ),
    step_alias: str | None = typer.Option(
        None, "--step", hidden=True, help="Old spelling of --steps.", callback=steps_checked("last", "all")
    ),
    split: Split = None,
    sample_id: list[str] = typer.Option(None, "--sample-id", help="These samples (repeatable); every step and split."),
    index: list[int] = typer.Option(
        None, "--index", help="The N-th selected sample in file order (0-based; -1 = last; repeatable)."
    ),
    role: str = typer.Option(None, "--role", help="Rank --best/--worst by this role's reward instead of the total."),
    best: int = typer.Option(None, "--best", min=1, help="The N samples with the highest reward."),
    worst: int = typer.Option(None, "--worst", min=1, help="The N samples with the lowest reward."),
    where: str = typer.Option(
        None, "--where", help="Numeric filter: 'reward < 0.2 and role:judge >= 0.5' (also component:NAME)."
    ),
    grep: str = typer.Option(
        None, "--grep", help="Samples whose messages (text, reasoning, tool calls) contain TEXT (literal, any case)."
    ),
    random_n: int = typer.Option(None, "--random", min=1, help="N samples drawn at random (reproducible, --seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed of --random."),
    exceptions: bool = typer.Option(False, "--exceptions", help="Only failed trajectories (with an exception)."),
    limit: int = typer.Option(20, "--limit", min=1, help="At most N samples when only filters are given."),
    source: str = typer.Option(
        "auto", "--source", help="Read the conversation from: auto, messages, trajectory, agent_trajectories, prompt."
    ),
    fmt: Format[RenderFormat] = RenderFormat.terminal,
    output: Output = None,
    max_chars: int = typer.Option(
        None,
        "--max-chars",
        min=1,
        help="Cut each text after N characters (marked). Default: whole, but at 20,000 on a terminal.",
    ),
    no_think: bool = typer.Option(False, "--no-think", help="Hide <think> blocks and reasoning (default: dimmed)."),
    layout: Layout = None,
    storage_option: list[str] = STORAGE_OPTION,
    no_cache: NoProbeCache = False,
) -> None:
    """Render whole conversations: every turn, tool call and tool result, the reward breakdown (total,
    components, per role with KL), trajectory statistics and the exception traceback.

    With no selector: the best and the worst sample (by total reward) of the last step of the train split.
    Without --steps, the last step is searched, except with --sample-id, --where, --grep or --exceptions,
    which search every step (and every split, without --split). Pickers (--best, --worst, --random,
    --index) combine; filters narrow.

    Model text is shown literally: escape sequences appear as \\x1b, markup is not interpreted, HTML is
    escaped.

    Exit codes: 0 rendered; 1 no sample matches the selectors; 2 usage error, or -o FILE cannot be
    written.

    --format html writes a sample browser (at a terminal: give -o FILE): a header with the selection and how
    many samples matched, a table of the samples that sorts and filters, each row opening its conversation
    (docs/render.md).

    Examples:

      runlog render-trajectory sample_runs/debate_grpo --steps 5 --worst 2 --role verifier

      runlog render-trajectory sample_runs/flink_mixed --exceptions --format html -o failed.html

      runlog render-trajectory sample_runs/debate_grpo --where 'reward < 0.2' --format json
    """
    from ..render import Criteria, conversations
    from ..render.html_page import PageInfo
    from ..render.select import plan_keep
    from ..run import list_names, open_run

    fmt = format_from_output(ctx, fmt, output)
    with handle_errors():
        if fmt == RenderFormat.html and output is None and sys.stdout.isatty():
            raise UsageError("--format html writes a page: give -o FILE (or redirect stdout to a file)")
        if step is not None and step_alias is not None:
            raise UsageError("--steps and --step are the same option: give one")
        if grep is not None and not grep.strip():
            raise UsageError("--grep: empty text (every sample would match): give the text to look for")
        criteria = Criteria(
            steps=step if step is not None else step_alias,
            split=split,
            sample_ids=tuple(sample_id or ()),
            index=tuple(index) if index else None,
            role=role,
            best=best,
            worst=worst,
            where=where,
            grep=grep,
            random=random_n,
            seed=seed,
            exceptions=exceptions,
            limit=limit,
        )
        # Where file names settle which split/step files can hold the selection (a Flink run's: its rows are of
        # their file's name), the others are never opened; elsewhere every file's footer tells its rows' steps.
        storage = use_storage_options(storage_option)
        keep = plan_keep(list_names(path, layout=layout, storage_options=storage), criteria)
        run = open_run(path, layout=layout, keep=keep, storage_options=storage)
        # On a terminal a text is cut at TERMINAL_MAX_CHARS unless --max-chars says otherwise: a 1 MB tool output
        # took 27 s to draw and scrolled everything else away. Files and the other formats keep texts whole.
        on_screen = fmt == RenderFormat.terminal and output is None and max_chars is None
        max_chars = TERMINAL_MAX_CHARS if on_screen else max_chars
        from ..render.select import RoleNotLoggedError

        def select(run: Any) -> Any:
            try:
                return conversations(run, criteria, source=source, max_chars=max_chars, no_think=no_think)
            except RoleNotLoggedError as e:  # no match: the run's problems first, as for any other no match
                report_problems(_run_problems(run, path, layout, storage))
                raise fail(str(e), EXIT_PROBLEMS) from None

        convs, sel = select(run)
        if not convs and keep is not None and run.errors and criteria.steps in (None, "last") and not criteria.searches:
            # The last step's files could not be read, and only they were opened: open the run whole, so that the
            # selection falls back to the last step that can be read (and says so).
            run = open_run(path, layout=layout, storage_options=storage)
            convs, sel = select(run)
        if not convs:
            report_problems(_run_problems(run, path, layout, storage))  # which files, and why
            unreadable = len(run.errors)
            extra = f"; {unreadable} file(s) could not be read (listed above)" if unreadable else ""
            if sel.unshowable:
                raise fail(
                    f"{sel.unshowable:,} sample(s) match the selectors ({sel.scope}), but none whose text can be read"
                    f"{extra}",
                    EXIT_PROBLEMS,
                )
            raise fail(f"no sample matches the selectors ({sel.scope}){extra}", EXIT_PROBLEMS)
        problems = [(p.path, p.message, not p.is_warning) for p in _problems(run)]
        sample_files = {f.path for f in run.files if f.kind == "samples"}
        unread = len({path for path, _, error in problems if error and path in sample_files})
        info = PageInfo(
            run=path,
            scope=sel.scope,
            selectors=criteria.describe(),
            matched=sel.matched,
            notes=sel.notes,
            problems=problems,
            unread_samples=unread,
        )
        _emit(convs, fmt, output, show_think=not no_think, info=info)
        if on_screen and any(_was_cut(c, TERMINAL_MAX_CHARS) for c in convs):
            sel.notes.append(
                f"texts longer than {TERMINAL_MAX_CHARS:,} characters are cut on the terminal (marked): --max-chars N "
                "to change, or -o FILE / --format json for them whole"
            )
        from ..formats.flink_text import parse_notes

        sel.notes += parse_notes(run.ctx)  # what parsing the texts noted (Flink v0 agents that read alike)
        for note in sel.notes:
            sys.stderr.write(f"note: {note}\n")
        # Problems met while reading (a corrupt file, a bad line) are listed, and those of the files of other
        # steps; the exit code stays about the selection (0 rendered, 1 nothing matched), as documented.
        report_problems(_run_problems(run, path, layout, storage))
        if sel.defaulted:
            what = "sample" if len(convs) == 1 else "best and worst samples"
            by = f"{role}'s reward" if role else "reward"
            sys.stderr.write(f"hint: showing the {what} by {by} of {sel.scope}; {SELECTORS_HINT}\n")
    raise typer.Exit(EXIT_OK)


TERMINAL_MAX_CHARS = 20_000


def _was_cut(conv: Any, limit: int) -> bool:
    """Whether a text of ``conv`` (prepared with ``max_chars=limit``) was cut, or its exception: a cut text is
    its first ``limit`` characters and the marker, longer than ``limit``; a text left whole is at most that.
    Not the characters left against those before: ``--no-think`` takes the reasoning away too, which read as a
    cut (the note said so of a run whose longest text was 292 characters)."""
    for t in conv.turns:
        texts = [t.content, t.reasoning, *(c.arguments for c in t.tool_calls)]
        if t.result is not None:
            texts.append(t.result.content)
        if any(text is not None and len(text) > limit for text in texts):
            return True
    return bool(conv.exception_cut)


def _emit(convs: list, fmt: RenderFormat, output: Path | None, *, show_think: bool, info: Any) -> None:
    from rich.console import Console

    from ..render import to_json
    from ..render.html_page import render_html
    from ..render.markdown import render_markdown
    from ..render.terminal import render_all

    if fmt == RenderFormat.terminal:
        view = render_all(convs, show_think=show_think)
        if output is None:
            stdout_console().print(view)
            return
        with writing(output), open(output, "w", encoding="utf-8") as fh:
            Console(file=fh, width=120, no_color=True, highlight=False).print(view)
        wrote(output)
        return
    if fmt == RenderFormat.html:
        text = render_html(convs, show_think=show_think, info=info)
    elif fmt == RenderFormat.markdown:
        text = render_markdown(convs, show_think=show_think)
    else:
        indent = 2 if output is None and sys.stdout.isatty() else None
        text = to_json(convs, indent=indent, lines=json_lines(output)) + "\n"
    if output is None:
        write_stdout(text)
    else:
        with writing(output):
            Path(output).write_text(text, encoding="utf-8")
        wrote(output)


def _run_problems(run: Any, path: str, layout: str | None, storage: Any) -> list[Any]:
    """The problems to list on stderr: the whole run's, as every other command lists them (docs/cli.md: files
    that could not be read are listed), also where only the files of the selected split and steps were opened
    (``plan_keep``): a truncated file at another step was said by no line. The run is then opened whole for its
    problems alone (footers; the probes of files read before come from the probe cache), after the selection
    was read, and the problems met while reading the selection (a corrupt data page) are kept. The page's own
    list (``PageInfo``) stays that of the files read for it: it says what may be missing from the page. A
    warning that counts over the run's files (``common.EXCEPTION_TEXTS_WARNING``) is the whole run's alone: the
    part's count of the same values, said too, read as more of them ("7 in 2 files", then "3 here")."""
    from ..formats.common import EXCEPTION_TEXTS_WARNING
    from ..run import open_run

    if not run.skipped:
        return _problems(run)
    whole = open_run(path, layout=layout, storage_options=storage)
    said = {(p.path, p.message) for p in whole.problems}
    part = [
        p for p in _problems(run) if (p.path, p.message) not in said and not EXCEPTION_TEXTS_WARNING.match(p.message)
    ]
    return [*_problems(whole), *part]


def _problems(run: Any) -> list[Any]:
    """The problems to list: every error, and the warnings about files that hold samples (a torn last line of
    a results file skipped a sample that is then never shown: it is said); warnings about scalar or unknown
    files do not concern conversations."""
    samples = {f.path for f in run.files if f.kind == "samples"}
    return [p for p in run.problems if not p.is_warning or p.path in samples]
