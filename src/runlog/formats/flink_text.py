"""The text of Flink rows: the derived ``prompt`` (the first user block of the rendered trajectory, by
polars' own string functions) and the conversations (``messages``, ``prompt``, ``completion``, the derived
``group_id``), parsed by ``flink_messages.conversation`` only when selected, with their fallbacks counted
once per sample as warnings and fidelity notes."""

from __future__ import annotations

import functools
import threading
from typing import Any

from .. import schema as S
from .._lazy import pl
from .base import WARNING, Problem, RunContext
from .flink_messages import ABSENT, UNPARSEABLE, conversation

# The first user block of a rendered trajectory: ``<|user ...|>`` header to the next header (the transcript
# format runlog's render reads), or a ChatML ``<|im_start|>user`` block. Rust regex: no look-ahead.
_HEADER_PROMPT = r"(?ms)^<\|user(?: [\w-]+=[^\s|]*)*\|>$(.*?)(?:^<\|[A-Za-z_][\w-]*(?: [\w-]+=[^\s|]*)*\|>$|\z)"
_CHATML_PROMPT = r"(?s)<\|im_start\|>user[ \t]*\n(.*?)(?:<\|im_end\|>|<\|im_start\|>|\z)"
# The same, each in three searches without captures (a capture costs about 5 us a row, even on a short text;
# a search a tenth of it): the span of the whole match, then its head and its tail cut off. The head is what
# comes before the group (a header holds no ``|`` before its closing ``|>``); the tail is the terminating
# header (after the newline that ends the group) or nothing, where the match ran to the end of the text.
_HEADER_SPLIT = (
    _HEADER_PROMPT.replace("(.*?)", ".*?"),
    r"\A<\|[^|]*\|>",
    r"\n<\|[A-Za-z_][\w-]*(?: [\w-]+=[^\s|]*)*\|>\z",
    "\n",
)
_CHATML_SPLIT = (
    _CHATML_PROMPT.replace("(.*?)", ".*?"),
    r"\A<\|im_start\|>user[ \t]*\n",
    r"(?:<\|im_end\|>|<\|im_start\|>)\z",
    "",
)


GROUP_NOTE = (
    "group_id is derived: the samples of one split and step with the same prompt (the first user message); "
    "Flink writes no group id"
)
TEXT_SOURCES = ("trajectory", "agent_trajectories")


def _conversation_dtype() -> pl.DataType:
    return pl.Struct({"messages": S.PL_MESSAGES, "prompt": pl.String, "completion": pl.String, "prompt_key": pl.String})


def with_prompt(columns: dict[str, str], ctx: RunContext) -> dict[str, str]:
    """The file's column mapping with the derived ``prompt``; one mapping per distinct footer schema (files
    of one schema keep sharing theirs)."""
    memo = ctx.cache.setdefault("flink_prompt_columns", {})
    hit = memo.get(id(columns))
    if hit is not None and hit[0] is columns:
        return hit[1]
    out = {**columns, "prompt": "string"}
    if len(memo) < 256:
        memo[id(columns)] = (columns, out)
    return out


def prompt_expr(schema: Any) -> pl.Expr:
    """``prompt`` for the numeric view: the first user block of the rendered ``trajectory`` (native string
    functions); only a file without that column has its ``agent_trajectories`` parsed for it."""
    if "trajectory" in schema:
        t = pl.col("trajectory").cast(pl.String)
        text = pl.coalesce(_first_group(t, *_HEADER_SPLIT), _first_group(t, *_CHATML_SPLIT)).str.strip_chars("\n")
        return pl.when(text != "").then(text).alias("prompt")
    if "agent_trajectories" in schema:
        assign = pl.col("role_assignments") if "role_assignments" in schema else pl.lit(None, dtype=pl.String)
        return (
            pl.struct(pl.col("agent_trajectories").alias("a"), assign.alias("r"))
            .map_batches(_prompts, return_dtype=pl.String, is_elementwise=True)
            .alias("prompt")
        )
    return pl.lit(None, dtype=pl.String).alias("prompt")


def _first_group(text: pl.Expr, whole: str, head: str, tail: str, keep: str) -> pl.Expr:
    """``text.str.extract(pattern, 1)`` of ``_HEADER_PROMPT`` or ``_CHATML_PROMPT`` from their ``_SPLIT``: the
    leftmost match's span (a group changes nothing of what matches), less its head and its tail (``keep``:
    what of the tail belongs to the group). Tested equal to the one extraction on random transcripts."""
    span = text.str.extract(whole, 0)
    return span.str.replace(head, "", literal=False, n=1).str.replace(tail, keep, literal=False, n=1)


def _prompts(s: pl.Series) -> pl.Series:
    a, r = s.struct.field("a").to_list(), s.struct.field("r").to_list()
    return pl.Series([conversation(x, None, y).prompt for x, y in zip(a, r, strict=True)], dtype=pl.String)


def with_conversations(lf: pl.LazyFrame, ctx: RunContext, *, json_unread: bool = False) -> pl.LazyFrame:
    """``messages``, ``prompt``, ``completion`` and the derived ``group_id`` of canonical Flink rows, parsed
    (``flink_messages.conversation``) only when one of them is selected, and only for the rows kept.

    ``json_unread``: the rows' ``agent_trajectories`` cannot be read (``FileInfo.unread``), their rendered
    ``trajectory`` can: their prompt and group come from that string, as the numeric view's do (a prompt
    group must not depend on whether another file's read failed and set the quarantine going); their
    messages and completion are nulled by the caller. Their parses are not counted as fallbacks."""
    schema = lf.collect_schema()

    def col(name: str) -> pl.Expr:
        if name in schema and not (json_unread and name == "agent_trajectories"):
            return pl.col(name)
        return pl.lit(None, dtype=pl.String)

    tracker = _Fallbacks.of(ctx)
    parse = tracker.parse if not json_unread else functools.partial(tracker.parse, counted=False)
    conv = (
        pl.struct(
            col("agent_trajectories").alias("a"),
            pl.col("trajectory").alias("t"),
            col("role_assignments").alias("r"),
            pl.col("source").alias("f"),
            pl.col("sample_id").alias("i"),
        )
        .map_batches(parse, return_dtype=_conversation_dtype(), is_elementwise=True)
        .alias("__conversation")
    )
    field = pl.col("__conversation").struct.field
    key = field("prompt_key")
    derived = pl.when(key.is_not_null()).then(pl.format("{}:{}:{}", pl.col("split"), pl.col("step"), key))
    return (
        lf.with_columns(conv)
        .with_columns(
            pl.coalesce(pl.col("group_id"), derived).alias("group_id"),
            field("prompt").alias("prompt"),
            field("completion").alias("completion"),
            field("messages").alias("messages"),
        )
        .drop("__conversation")
    )


def _arrow_type() -> Any:
    import pyarrow as pa

    text = pa.string()
    return pa.struct(
        [("messages", pa.list_(S.ARROW_MESSAGE)), ("prompt", text), ("completion", text), ("prompt_key", text)]
    )


def _memo_budget() -> int:
    """An eighth of the memory this process may use, at most 4 GB (400 MB where it cannot be told): the
    machine's, or a container's limit where that is less (cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``)."""
    import os

    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 400_000_000
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit, encoding="ascii") as f:
                value = f.read().strip()
        except OSError:
            continue
        if value.isdigit():  # "max": no limit
            memory = min(memory, int(value))
    return int(min(4_000_000_000, memory // 8))


# Conversations kept parsed for a run's later questions (doctor and report ask for the texts four ways: 100 us a
# sample in Python each time), as the Arrow arrays they are returned in: at most this many bytes of them (a
# parsed conversation takes about the bytes of its JSON and transcript, 3 KB a sample of the benchmarks' Flink
# run: 3 GB, an eighth of a 24 GB machine, keeps its million samples).
MEMO_BYTES = _memo_budget()


class _Fallbacks:
    """Counts the samples whose conversation could not come from ``agent_trajectories``, as they are parsed:
    unparseable JSON is a warning naming its file, absent JSON one fidelity note for the run. The samples
    whose agents' texts could not tell which speaker each is get a fidelity note too. Each sample is
    counted once however often the samples are collected; the messages are updated in place.

    It also keeps the parsed conversations (``memo``: a sample's key to its row in one of ``chunks``, the Arrow
    arrays of earlier batches), within ``MEMO_BYTES``: a sample asked for again is taken from there."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.absent: set[tuple[str, Any]] = set()
        self.bad: dict[str, set[Any]] = {}
        self.problems: dict[str, Problem] = {}
        self.note: dict[str, str] | None = None
        self.alike: set[tuple[str, Any]] = set()
        self.alike_note: dict[str, str] | None = None
        # Samples whose rendered string and JSON disagree (``Conversation.from_transcript`` / ``unplaced``).
        self.disagree: dict[tuple[str, Any], tuple[int, int]] = {}
        self.disagree_note: dict[str, str] | None = None
        # Samples whose speakers are agent ids (``Conversation.by_id``): per file, how many each id opens.
        self.by_id: set[tuple[str, Any]] = set()
        self.openers: dict[str, dict[str, int]] = {}
        self.ids_problem: Problem | None = None
        self.memo: dict[tuple[Any, ...], tuple[int, int]] = {}
        self.chunks: list[Any] = []
        self.memo_bytes = 0
        # Batches are parsed on polars' threads at once: the budget's check and its addition are one step.
        self._memo_lock = threading.Lock()

    @classmethod
    def of(cls, ctx: RunContext) -> _Fallbacks:
        tracker = ctx.cache.get("flink_fallbacks")
        if not isinstance(tracker, cls):
            tracker = ctx.cache["flink_fallbacks"] = cls(ctx)
        return tracker

    def parse(self, s: pl.Series, *, counted: bool = True) -> pl.Series:
        """The conversations of a batch; ``counted``: its fallbacks recorded (``record``)."""
        import pyarrow as pa  # only here: converting nested Python values, pyarrow is ~3x faster than polars

        if not len(s):
            # A batch a filter emptied (``--steps`` that selects no Flink step of a run with native samples
            # besides): nothing to parse, and nothing to assemble (``concat_arrays`` refuses no array).
            return pl.Series(pa.array([], type=_arrow_type()))
        # A sample is known by its file, its id and its texts' hashes (two samples of one id differ), hashed
        # by polars: the texts of a sample kept are not copied into Python again.
        field = s.struct.field
        hashes = [field(k).hash(0).to_list() for k in "atr"]
        keys = list(zip(field("f").to_list(), field("i").to_list(), *hashes, strict=True))
        memo = self.memo
        found = [memo.get(k) for k in keys]
        miss = [j for j, at in enumerate(found) if at is None]
        fresh = None
        if miss:
            part = s if len(miss) == len(s) else s.gather(miss)
            rows = []
            cols = [part.struct.field(k).to_list() for k in ("a", "t", "r", "f", "i")]
            by_id = 0
            for a, t, r, f, i in zip(*cols, strict=True):
                c = conversation(a, t, r)
                if counted and c.fallback is not None:
                    self.record(str(f), i, c.fallback, c.source)
                if counted and c.ambiguous:
                    self.record_alike(str(f), i)
                if counted and (c.from_transcript or c.unplaced):
                    self.record_disagree(str(f), i, c.from_transcript, c.unplaced)
                if counted and c.by_id and c.messages:
                    by_id += self.record_ids(str(f), i, c.messages)
                rows.append(
                    {"messages": c.messages, "prompt": c.prompt, "completion": c.completion, "prompt_key": c.prompt_key}
                )
            if by_id:
                self.ids_warning()
            fresh = pa.array(rows, type=_arrow_type())
            with self._memo_lock:
                if self.memo_bytes + fresh.nbytes <= MEMO_BYTES:
                    chunk = len(self.chunks)
                    self.chunks.append(fresh)
                    self.memo_bytes += fresh.nbytes
                    for k, j in enumerate(miss):
                        memo[keys[j]] = (chunk, k)
            if len(miss) == len(s):
                return pl.Series(fresh)
        # The batch from the chunks its kept samples are in, and the fresh ones, in the batch's order.
        chunks = sorted({at[0] for at in found if at is not None})
        start: dict[int, int] = {}
        offset = 0
        for n in chunks:
            start[n] = offset
            offset += len(self.chunks[n])
        pieces = [self.chunks[n] for n in chunks] + ([fresh] if fresh is not None else [])
        index = [0] * len(s)
        for j, at in enumerate(found):
            if at is not None:
                index[j] = start[at[0]] + at[1]
        for k, j in enumerate(miss):
            index[j] = offset + k
        whole = pieces[0] if len(pieces) == 1 else pa.concat_arrays(pieces)
        return pl.Series(whole.take(pa.array(index, type=pa.int64())))

    def record(self, path: str, sample_id: Any, why: str, source: str | None) -> None:
        if why == UNPARSEABLE:
            ids = self.bad.setdefault(path, set())
            ids.add(sample_id)
            problem = self.problems.get(path)
            if problem is None:
                problem = self.problems[path] = Problem(path, WARNING, "")
                self.ctx.problems.append(problem)
            problem.message = (
                f"agent_trajectories of {len(ids)} sample(s) is not JSON of a known shape; "
                "their conversations were read from the rendered trajectory"
            )
        elif why == ABSENT and source == "trajectory":
            self.absent.add((path, sample_id))
            files = len({p for p, _ in self.absent})
            message = (
                f"conversations of {len(self.absent)} sample(s) in {files} file(s) were read from the rendered "
                "trajectory string: their agent_trajectories is absent or empty"
            )
            if self.note is None:
                self.note = {"layout": "flink", "message": message}
                self.ctx.fidelity.append(self.note)
            self.note["message"] = message

    def record_alike(self, path: str, sample_id: Any) -> None:
        """A sample whose agents (no role of their own) say the same texts: which speaker each is was decided
        by agent id, not by what they said (``flink_messages._match_speakers``)."""
        self.alike.add((path, sample_id))
        files = len({p for p, _ in self.alike})
        message = (
            f"agents of {len(self.alike)} sample(s) in {files} file(s) read alike (the same texts, reasoning "
            "aside): matched to the transcript's speakers by agent id (the lowest id to the first to speak), "
            "without distinct ids left unmatched (named by agent id, after the transcript's turns)"
        )
        if self.alike_note is None:
            self.alike_note = {"layout": "flink", "message": message}
            self.ctx.fidelity.append(self.alike_note)
        self.alike_note["message"] = message

    def record_disagree(self, path: str, sample_id: Any, from_transcript: int, unplaced: int) -> None:
        """A sample whose rendered trajectory and agent_trajectories disagree: turns only the string holds (read
        from it, in its order) and JSON turns the string does not show (after its turns)."""
        self.disagree[(path, sample_id)] = (from_transcript, unplaced)
        files = len({p for p, _ in self.disagree})
        said = sum(n for n, _ in self.disagree.values())
        unsaid = sum(n for _, n in self.disagree.values())
        message = (
            f"the rendered trajectory and agent_trajectories of {len(self.disagree)} sample(s) in {files} file(s) "
            f"disagree: {said} turn(s) that only the rendered string holds were read from it, in its order; "
            f"{unsaid} turn(s) of agent_trajectories that it does not show follow its turns"
        )
        if self.disagree_note is None:
            self.disagree_note = {"layout": "flink", "message": message}
            self.ctx.fidelity.append(self.disagree_note)
        self.disagree_note["message"] = message

    def record_ids(self, path: str, sample_id: Any, messages: list[dict[str, Any]]) -> bool:
        """A sample whose speakers are its agents' ids (``Conversation.by_id``): which id speaks first (the first
        model turn with text: the turn the policy is elected by, ``texts.policy_speaker``), counted per file.
        Whether it was counted (each sample once)."""
        if (path, sample_id) in self.by_id:
            return False
        first = next((m.get("name") for m in messages if m.get("role") == "assistant" and m.get("content")), None)
        if not isinstance(first, str):
            return False
        self.by_id.add((path, sample_id))
        per = self.openers.setdefault(path, {})
        per[first] = per.get(first, 0) + 1
        return True

    def ids_warning(self) -> None:
        """A warning, where the samples whose speakers are agent ids do not show one id opening them: the id
        that speaks first in most of them opens fewer than half, or another id opens most of some file's. The
        data give an id no role (a v0 file without a rendered trajectory), and the policy is the speaker that
        opens most samples: an id that is the solver in some files and the judge in others made format
        adherence read 1.0, 0.0, 1.0, 0.0 by step for a solver well formatted at every step. Updated in place
        as samples are parsed (once per batch: a few dicts of a few ids); dropped if the counts come to agree."""
        total: dict[str, int] = {}
        for per in self.openers.values():
            for name, k in per.items():
                total[name] = total.get(name, 0) + k
        ranked = sorted(total.items(), key=lambda nk: (-nk[1], nk[0]))
        top, opens = ranked[0]
        samples = sum(total.values())
        other = sorted(p for p, per in self.openers.items() if per.get(top, 0) < max(per.values()))
        if 2 * opens >= samples and not other:
            if self.ids_problem is not None and self.ids_problem in self.ctx.problems:
                self.ctx.problems.remove(self.ids_problem)
            self.ids_problem = None
            return
        files = len(self.openers)
        counts = ", ".join(f"{n} {k:,}" for n, k in ranked[1:6]) + (", ..." if len(ranked) > 6 else "")
        said = [f"{top} speaks first in {opens:,} of them" + (f" ({counts})" if counts else "")]
        said[0] += ", fewer than half" if 2 * opens < samples else ""
        if other:
            said.append(f"another id speaks first in most samples of {len(other):,} of the {files:,} file(s)")
        message = (
            f"the speakers of {samples:,} sample(s) in {files:,} file(s) are their agent ids (no role, no rendered "
            f"trajectory that names them): {'; '.join(said)}. An id may play different roles in different files: "
            "the policy's turns (the id that speaks first in most samples: --text auto, format adherence per step) "
            "may be another role's at some steps"
        )
        if self.ids_problem is None:
            self.ids_problem = Problem((other or sorted(self.openers))[0], WARNING, message)
            self.ctx.problems.append(self.ids_problem)
        self.ids_problem.message = message


def parse_notes(ctx: RunContext) -> list[str]:
    """The fidelity notes recorded while the run's conversations were parsed (``_Fallbacks``: read from the
    rendered trajectory; agents that read alike, matched by id), as ``layout: message`` lines: they are added
    to ``ctx.fidelity`` only once texts are read, after discovery, which is all ``inspect`` prints; a command
    that reads the texts prints these after its output (none before a conversation is parsed)."""
    tracker = ctx.cache.get("flink_fallbacks")
    if not isinstance(tracker, _Fallbacks):
        return []
    return [
        f"{n['layout']}: {n['message']}"
        for n in (tracker.note, tracker.alike_note, tracker.disagree_note)
        if n is not None
    ]
