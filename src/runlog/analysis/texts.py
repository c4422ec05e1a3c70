"""``diversity_frame(run, ...)`` and ``format_frame(run, ...)``: metrics over a run as polars DataFrames.

Which text a metric reads is the ``text=`` argument (``runlog metrics --text``; ``plot``, ``doctor``,
``report`` and ``diff`` always read ``auto``; docs/metrics.md "Which text"):

- ``auto`` (the default): the policy's generated text. Where a sample has messages, the policy's last
  assistant turn, the policy being the model speaker that speaks first in most of the run's train samples (the
  agent that answers the prompt: the solver of a debate, whatever order the run lists its roles in; elected once
  per run whatever the filters, the turns without a name a speaker of their own: ``policy_speaker``): the
  message that holds its answer, which format rewards score (earlier
  turns, such as tool calls without words, lead up to it; a final turn without content, cut off while
  reasoning, is the empty text); with ``role`` among the keys, each role's own last turn (one text per sample
  and role). Where a sample has no messages (null or empty), its ``completion``; a sample with messages but no
  such turn has no text.
- ``assistant``: every assistant turn of the sample with content, all speakers, joined by a newline (per speaker
  with ``role`` among the keys), passing over tool calls without words as ``auto`` does; ``completion`` only
  where the sample has no messages, as ``auto``.
- ``auto+reasoning``: the ``auto`` text with its turn's ``reasoning`` field put back in front of the content as
  ``<think>REASONING</think>`` (no ``</think>`` where the turn has no content: cut off while reasoning), as the
  model wrote it before a server's reasoning parser cut it at the tags (a Responses reasoning item's raw
  reasoning, not its summary, where it has both: ``reasoning_written``); a text that has a ``<think>`` of its
  own, or a turn without reasoning, is the ``auto`` text as it is.
- ``answer``: the inside of the last ``<answer>`` block of the ``auto`` text (from the last ``<answer>`` that a
  ``</answer>`` follows to the first ``</answer>`` after it), else ``completion``; a sample that ``auto`` skips
  (messages, but no policy turn) has none.
- ``completion``, ``trajectory``: that column as written.
- ``role:<name>``: that speaker's last turn, read as ``auto`` reads the policy's (its final word, even empty:
  a generation cut off while reasoning is the empty text; tool calls without words passed over), the speaker
  being the one ``--by role`` labels so (``speaker_label``: the turn's ``name``; the model turns without a name
  are ``assistant``, however their role is spelled; a ``role`` field that names a speaker rather than a chat
  role, ``{"role": "agent_0"}``): ``role:assistant`` never reads a named judge's turn, ``role:model`` a speaker
  named ``model`` alone; only where no speaker of the run is named so does a model chat role spelled otherwise
  (``role:model``, ``role:Agent``) name the model turns without a name (``role_speaker``, said: ``role_note``).
- ``messages``: every message, one text each (role = its speaker, ``speaker_label``), for message-level specs.

Think tags only mean reasoning in assistant turns: the ``auto``, ``assistant`` and ``role:`` texts never
include a system prompt or a user message. Where a layout tells where the generation starts (``prompt_turns``:
verifiers, NeMo Gym), those texts and the tool calls checked are read from the generated turns only: an
assistant turn of the prompt (a few-shot example) is not the policy's. Only the text column(s) and the key
columns are read (lazy projection). Prompt groups are found as ``summarize`` finds them: ``group_id``, else
identical prompt text within a step; a group id whose files at a step hold different prompts (processes numbering
their own groups from 0) is split by file, with a warning (``_mixed_groups``).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .. import chat as _chat
from .._lazy import pl
from ..chat import REDACTED_MARKS
from ..errors import UsageError, did_you_mean
from ..metrics import diversity as D
from ..metrics import format as F
from ..run import Run
from .aggregate import group_key_expr
from .filters import Filters, StepRange, apply_filters
from .summarize import check_keys
from .views import run_splits

if TYPE_CHECKING:
    from .series import RunSeries

KEYS = ("step", "role", "group", "split")
TEXT_SOURCES = (
    "auto",
    "auto+reasoning",
    "assistant",
    "answer",
    "completion",
    "trajectory",
    "role:<name>",
    "messages",
)
# The text kinds without a speaker: with ``--by role`` all their texts are in one row, its role empty.
NO_SPEAKER_TEXTS = ("answer", "completion", "trajectory")
# The chat roles of the model's turns and of its input (prompt and tool-result messages), as render-trajectory
# reads them (``chat``): a text metric reads the turns it shows as the model's.
MODEL_ROLES = sorted(_chat.MODEL_ROLES)
NOT_MODEL_ROLES = sorted(_chat.INPUT_ROLES)
# The model's roles in words, for the notes: "assistant, agent or model".
_SAID = sorted(_chat.MODEL_ROLES, key=lambda r: (r != "assistant", r))
MODEL_ROLE_WORDS = ", ".join(_SAID[:-1]) + f" or {_SAID[-1]}" if len(_SAID) > 1 else _SAID[0]
# The speaker of the model turns without a name, as ``--by role`` labels it and ``--text role:NAME`` names it: one
# speaker however its turns spell their role (``assistant``, ``Model``), as the policy's election counts them.
UNNAMED_SPEAKER = "assistant"


def speaker_label(name: pl.Expr, role: pl.Expr) -> pl.Expr:
    """A message's speaker as the texts label it (their ``role`` column, ``--by role``'s rows): its ``name``; a
    model turn without one (its role ``assistant``, ``model`` or ``agent``, in any case) ``UNNAMED_SPEAKER``, the
    speaker the election counts them as; any other message its ``role`` as written (a speaker in the role field,
    ``{"role": "agent_0"}``; a user or a tool result)."""
    name, role = name.cast(pl.String), role.cast(pl.String)
    unnamed_model = role.str.to_lowercase().is_in(MODEL_ROLES)
    return pl.when(name.is_not_null()).then(name).when(unnamed_model).then(pl.lit(UNNAMED_SPEAKER)).otherwise(role)


def spoken_by(speaker: str, name: pl.Expr, role: pl.Expr) -> pl.Expr:
    """The messages ``--text role:NAME`` reads as ``speaker``'s (``role_speaker``: the speaker NAME names): those
    whose ``speaker_label`` is ``speaker``, exactly the turns ``--by role`` puts in that speaker's row
    (``role:assistant`` reads the model turns without a name, never a named judge's; ``role:judge`` a judge's,
    named or written in the role field; ``role:model`` a speaker named ``model``, never the turns without a
    name beside it)."""
    return (speaker_label(name, role) == speaker).fill_null(False)


def role_speaker(run: Run, name: str) -> str:
    """The speaker ``--text role:NAME`` reads: ``name``, the one ``--by role`` labels so (``speaker_label``). A
    model chat role spelled otherwise than ``UNNAMED_SPEAKER`` (``model``, ``agent``, ``Assistant``), where no
    turn of the run that the texts read is labelled so (no speaker is named so), names the model turns without a
    name, ``UNNAMED_SPEAKER`` (as they are written; ``role_note`` says so); where a turn is, that speaker alone,
    never the turns without a name beside it. Decided over the run's every sample whatever a command filters, as
    the policy is elected: a step's texts are the same whatever is asked."""
    if name == UNNAMED_SPEAKER or name.lower() not in MODEL_ROLES:
        return name
    return name if _labelled(run, name) else UNNAMED_SPEAKER


def _labelled(run: Run, speaker: str) -> bool:
    """Whether a generated turn of the run (past ``prompt_turns``) that ``--text role:NAME`` can read (not a
    prompt, system or tool message) has ``speaker`` for its ``speaker_label``. Kept on the run per speaker, until a
    file is found unreadable."""

    def state() -> tuple[Any, ...]:
        return tuple((f.path, f.readable, f.unread) for f in run.files if f.kind == "samples")

    held = run.__dict__.get("_labelled")
    if held is not None and held[0] == state() and speaker in held[1]:
        return bool(held[1][speaker])
    e = pl.element()

    def build() -> list[pl.LazyFrame]:  # built again after a file is left out (``Run.collect``)
        head = pl.col("prompt_turns").fill_null(0).cast(pl.Int64)
        role = e.struct.field("role").cast(pl.String)
        theirs = speaker_label(e.struct.field("name"), role) == speaker
        theirs &= ~role.str.to_lowercase().is_in(NOT_MODEL_ROLES)
        hit = pl.col("messages").list.slice(head).list.eval(theirs.fill_null(False)).list.any()
        return [run.samples.select(hit.fill_null(False).any().alias("hit"))]

    [df] = run.collect(build)
    found = bool(df["hit"][0]) if df.height else False
    # Keyed by the files' state after the read: a file it left out is read no more.
    known = held[1] if held is not None and held[0] == state() else {}
    run.__dict__["_labelled"] = (state(), {**known, speaker: found})
    return found


def role_note(run: Run, text: str) -> str | None:
    """``--text role:NAME`` whose NAME spells a model chat role that no speaker of the run is named (``role:model``):
    it read the model turns without a name (``role_speaker``), which ``--by role`` labels ``UNNAMED_SPEAKER``;
    said, as those texts are another row's. None otherwise."""
    if not text.startswith("role:") or text == "role:":
        return None
    name = text.split(":", 1)[1]
    read = role_speaker(run, name)
    if read == name:
        return None
    return (
        f"--text role:{name}: no speaker of the run is named {name}, so it reads the model turns without a name "
        f"(their role {MODEL_ROLE_WORDS}, in any case), which --by role labels {read}: the texts of --text "
        f"role:{read}"
    )


# ``--text answer``: the inside of the last answer block, the last ``<answer>`` that a ``</answer>`` follows, up to the
# first ``</answer>`` after it (``<answer>a</answer> more </answer>`` is ``a``; an unclosed ``<answer>`` after the
# block is no block). The leading greedy ``.*`` finds that last open tag (Rust's regex does not backtrack).
_ANSWER = r"(?s).*<answer>(.*?)</answer>"
OVER_SET_ROWS_NOTE = (
    "rows with no groups ({rows}): no prompt group there holds two texts, so their figures are over all texts of "
    "the row (as --over set), not within groups"
)
_SINGLETONS_WHY = "(a single text has no within-group diversity; --over set counts every text)"
SINGLETONS_NOTE = "{n} prompt group(s) of one text left out of the means over groups " + _SINGLETONS_WHY
# With ``--by role`` a prompt group is in each role's row, and is left out of each role's row where that role has
# one text in it: the groups are counted once, and how many role rows left them out is said beside.
SINGLETONS_ROLES_NOTE = (
    "{n} prompt group(s) of one text left out of the means over groups, {sets} times in all: once from the row of "
    "each role with one text there " + _SINGLETONS_WHY
)
SINGLETONS_RULE_NOTE = (
    "where a row has prompt groups of two texts or more, its groups of one text are left out of the means over "
    "groups " + _SINGLETONS_WHY
)
NO_GROUP_NOTE = (
    "{n} text(s) without a prompt group (no group_id, no prompt) left out of the means over groups: they are in no "
    "group (--over set counts every text)"
)
OVER_SET_NOTE = (
    "no prompt group holds two texts (or the run has no prompt groups): diversity is over all texts of each row "
    "(as --over set), not within groups"
)


def _check_keys(by: Sequence[str], run: Run | None = None, filters: Filters | None = None) -> list[str]:
    """``by`` checked; ``step`` before ``group`` (a prompt group is one group id within a step: the same id at
    another step is another group, as in summarize); with ``run``, ``split`` added first when the run has
    several splits and ``filters`` pick none: eval texts are never pooled with training texts silently
    (naming several splits pools them on purpose, as in every command: docs/cli.md)."""
    keys = check_keys(by, KEYS)
    if "group" in keys and "step" not in keys:
        keys.insert(keys.index("group"), "step")
    if run is not None and "split" not in keys and not (filters and filters.splits) and len(run_splits(run)) > 1:
        keys.insert(0, "split")
    return keys


def texts_frame(
    run: Run,
    text: str = "auto",
    *,
    filters: Filters | None = None,
    with_group: bool = True,
    per_role: bool = False,
    calls: bool = False,
    reasoning: bool = False,
) -> pl.DataFrame:
    """One row per text: ``step, split, sample_id, group, role, turn, text`` in run order (``turn`` is the
    message index for ``messages`` texts, else null; ``group`` null when the run has no prompt groups).
    ``per_role``: the ``auto`` and ``assistant`` texts one per sample and speaker (``role`` = the speaker,
    ``speaker_label``: the model turns without a name are one, ``assistant``; a model speaker with a turn but no
    text, its only turn a tool call without words, has a null text).
    ``calls`` (tool-call checks): the messages whatever ``text`` is, with their ``tool_calls`` and
    ``message_role``; ``role:NAME`` keeps that speaker's messages; a sample without messages gives its
    ``completion`` (``trajectory`` with that text), where a ``<tool_call>`` in plain text is the only call.
    ``reasoning``: a ``reasoning`` column too, the ``reasoning`` field of the turn(s) each text was read from
    (null for a text read from a column)."""
    filters = filters or Filters()
    mixed: list[_Mixed] = []

    def query() -> list[pl.LazyFrame]:
        return [_texts_lazy(run, text, filters, with_group, per_role, calls, reasoning, mixed=mixed)]

    # Through Run.collect: a corrupt data page behind an intact footer is reported and its file left out.
    [frame] = run.collect(query)
    _warn_mixed(run, mixed, frame)
    return frame


def _turn_texts(
    lf: pl.LazyFrame,
    base: list[pl.Expr],
    speaker: str | None,
    policy: bool,
    per_role: bool,
    reasoning: bool = False,
    flags: bool = False,
    elected: PolicySpeaker | None = None,
) -> pl.LazyFrame:
    """One row per sample (and speaker with ``per_role``): the last assistant turn (``policy`` or ``speaker`` set)
    or every assistant turn with content joined by a newline (neither set; a tool call without words passed over
    as in the last-turn case), with ``completion`` where a sample has no messages (null or empty; not with
    ``speaker``). ``speaker``: only that speaker's turns; ``policy``:
    only the policy's turns, the policy being ``elected`` (``policy_speaker``: the model speaker that speaks
    first in most of the run's train samples, the turns without a name being a speaker of their own). The last
    turn is the final one, its content even empty (a generation cut off while
    reasoning reads ``""``), passing over turns that are tool calls without content; a sample that has messages
    but no such turn (its only policy turn a tool call) has no text (null): its ``completion`` may hold the
    prompt too, or another speaker's text, so it is not read in the turn's place; with ``per_role``, likewise each
    model speaker of the sample without such a turn (a null text in its row). ``speaker``'s turns are those
    ``spoken_by`` it (their ``speaker_label``, the ``role`` of ``per_role``'s rows): a turn whose ``role`` field is
    that speaker rather than a chat role (``{"role": "agent_0"}``) is one. ``reasoning``: a
    ``reasoning`` column, the turn's ``reasoning`` field (the turns' joined by a newline, as their texts).
    ``flags``: ``__unread`` (from ``base``) and ``__bare`` (no messages, and no ``completion`` where that is read
    in their place) too, for ``_texts_counted``. Where ``prompt_turns`` is known, only the turns after the prompt
    are read (``_generated``)."""
    messages = pl.col("messages")
    rows = lf.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("__row"),
        *base,
        messages,
        (messages.list.len().fill_null(0) == 0).alias("__no_messages"),
        "completion",
        "prompt_turns",
    ).cache()
    turns = (
        rows.select("__row", "messages", "prompt_turns")
        .with_columns(pl.int_ranges(0, messages.list.len()).alias("__index"))  # the message's place in its sample
        .explode("messages", "__index")
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("__turn"))  # run order, for the speakers
        .unnest("messages")
    )
    who = speaker_label(pl.col("name"), pl.col("role"))
    content = pl.col("content")
    said = content.is_not_null() & (content != "")
    last = speaker is not None or policy
    model = pl.col("role").str.to_lowercase().is_in(MODEL_ROLES)
    if speaker is not None:
        # A speaker written in the role field (``{"role": "agent_0"}``) is that speaker's turn; a chat role of the
        # prompt or a tool result never is (``role:user`` reads no user message).
        theirs = spoken_by(speaker, pl.col("name"), pl.col("role"))
        model |= theirs & ~pl.col("role").str.to_lowercase().is_in(NOT_MODEL_ROLES)
    # Only the turns the rollout generated: an assistant turn of the prompt (a few-shot example) was not written
    # by the policy, and is neither its text nor where its speaker is found.
    model &= _generated(pl.col("__index"))
    # The last turn: a speaker's final word, even empty (a generation cut off while reasoning is the empty text,
    # which fails a format, never an earlier turn's); a turn that is a tool call without words leads up to the
    # answer and is passed over. Every turn joined: the turns with words.
    # Words: a character that is not white space (a tool call's content is often "\n\n", as the hermes and
    # Qwen tool parsers leave it: no words, passed over as an empty one is).
    words = content.str.contains(F.NON_SPACE_CLASS).fill_null(False)
    # The same turns passed over whether the last turn is read or every turn joined: a tool call without words.
    keep = model & (words | pl.col("tool_calls").list.len().fill_null(0).eq(0))
    if not last:
        keep &= said
    if speaker is not None:
        keep &= theirs
    elif policy and not per_role and elected is not None and elected.found:
        # The policy (``policy_speaker``: elected once per run, whatever the filters): a sample where it does not
        # speak has no text, never another speaker's.
        if elected.name is None:
            # The turns without a name: a named speaker beside them (a critic, a judge) is another agent.
            keep &= pl.col("name").is_null()
        else:
            # Its turns; in a sample none of whose model turns names its speaker (a layout that names none, pooled
            # in one folder with a named run), the turns without a name count as the policy's.
            named_here = (model & pl.col("name").is_not_null()).any().over("__row")
            keep &= (pl.col("name") == elected.name) | (pl.col("name").is_null() & ~named_here)
    if per_role:
        # Every model speaker of the sample has a row, its text read from its kept turns: a speaker with a turn but
        # none kept (its only turn a tool call without words) has a null text, and is counted in its role's
        # ``no_text`` (``_texts_counted``), never left out unseen because another speaker of the sample has a text.
        group, spoken = ["__row", "__speaker"], turns.filter(model)

        def read(e: pl.Expr) -> pl.Expr:
            return e.filter(keep)
    else:
        group, spoken = ["__row"], turns.filter(keep)

        def read(e: pl.Expr) -> pl.Expr:
            return e

    content_read, reasoning_read = (read(pl.col(c)).cast(pl.String) for c in ("content", "reasoning"))
    spoke = read(keep).any()  # the speaker has a turn read
    joined = (
        spoken.with_columns(who.cast(pl.String).alias("__speaker"))
        .group_by(group, maintain_order=True)
        .agg(
            pl.when(spoke)
            .then(content_read.fill_null("").last() if last else content_read.str.join("\n"))
            .alias("text"),
            # A speaker's first turn read (its first turn, where none is read): its rows' order.
            pl.coalesce(read(pl.col("__turn")).min(), pl.col("__turn").min()).alias("__turn"),
            *(
                [
                    pl.when(spoke)
                    .then(reasoning_read.last() if last else reasoning_read.str.join("\n"))
                    .alias("__reasoning")
                ]
                if reasoning
                else []
            ),
        )
    )
    out = rows.drop("messages").join(joined, on="__row", how="left", maintain_order="left")
    role = pl.col("__speaker") if per_role else pl.lit(speaker, dtype=pl.String)
    # A sample's speakers in the order they first speak: the same rows in the same order every time (a join's
    # matches come in any order), so that sums over them give the same digits every time.
    return out.sort("__row", "__turn", nulls_last=True, maintain_order=True).select(
        *[pl.col(c) for c in ("step", "split", "sample_id", "group")],
        role.alias("role"),
        pl.lit(None, dtype=pl.Int64).alias("turn"),
        pl.coalesce(
            pl.col("text"),
            pl.when(pl.col("__no_messages")).then(pl.col("completion").cast(pl.String)) if speaker is None else None,
        ).alias("text"),
        *([pl.col("__reasoning").alias("reasoning")] if reasoning else []),
        *_flag_columns(
            (pl.col("__no_messages") & pl.col("completion").is_null()) if speaker is None else pl.col("__no_messages"),
            flags,
        ),
        *([pl.col("__row").alias("__sample")] if flags else []),  # whose a row is (``_texts_counted``)
    )


# ---------------------------------------------------------------------------------------------------------
# The policy: whose turns ``--text auto`` reads, elected once per run
# ---------------------------------------------------------------------------------------------------------
# The split whose samples elect the policy: the one it is trained on. Eval samples (a judge opening every eval
# conversation, say) never decide whose training texts are measured.
POLICY_SPLIT = "train"
# The text kinds read from the policy's turns.
POLICY_TEXTS = ("auto", "auto+reasoning", "answer")
# Sample files of at least this many bytes in all elect through their nested role and name columns alone
# (``_election_native``); below it, reading ``messages`` whole takes a few hundredths of a second.
NATIVE_ELECTION_BYTES = 16 << 20


@dataclass(frozen=True)
class PolicySpeaker:
    """Whose turns are the policy's (``policy_speaker``). ``name``: the speaker elected, None for the model turns
    without a name (a speaker of their own); ``opens``: each speaker that speaks first in some sample, with how
    many, in the order of the election (the winner first); ``speakers``: every model speaker with a turn with text
    in those samples (None: the turns without a name), the winner first; ``silent``: the model speakers of those
    samples without one (their every turn a tool call without words: nothing to read, no vote); ``samples``: the
    samples that voted (with a model turn with text); ``train``: whether they are the train split's (else the
    run's every sample); ``found``: whether any sample has a model turn with text (else there is nothing to
    elect, and nothing to read); ``files``: where the election read only some of the sample files
    (``_election_files``), how many of how many, else None (it read them all)."""

    name: str | None
    opens: tuple[tuple[str | None, int], ...] = ()
    speakers: tuple[str | None, ...] = ()
    samples: int = 0
    train: bool = False
    found: bool = False
    silent: tuple[str | None, ...] = ()
    files: tuple[int, int] | None = None

    @property
    def tied(self) -> bool:
        """Whether another speaker opens as many samples as the one elected (the tie rule chose)."""
        return len(self.opens) > 1 and self.opens[0][1] == self.opens[1][1]


def _vote_order(name: str | None, opens: int) -> tuple[int, int, str]:
    """The election's order: most samples opened first; a tie goes to a named speaker before the turns without a
    name (a named policy still reads the samples that name no speaker, so it leaves fewer without a text), then
    to the first name in alphabetical order (code-point order)."""
    return (-opens, name is None, name or "")


def reads_policy(text: str, per_role: bool = False) -> bool:
    """Whether the texts of ``text`` are the policy's turns (``auto``, ``auto+reasoning``, ``answer``), not each
    role's own (``per_role``: ``--by role``, a spec with ``roles``; ``answer`` has no speaker, so it is the
    policy's even then)."""
    return text in POLICY_TEXTS and not (per_role and text != "answer")


def policy_speaker(run: Run) -> PolicySpeaker:
    """The policy, whose turns ``--text auto`` (``auto+reasoning``, ``answer``) reads: the model speaker that
    speaks first in most of the run's train samples (every sample where no train sample has a model turn with
    text), the turns without a name being a speaker of their own; ties: ``_vote_order``. A sample's vote is the
    speaker of its first generated model turn with text: a turn the texts are read from (``_turn_texts``), one
    with words or without a tool call (a generation cut off while reasoning is still its speaker's turn, whose
    text is empty). A tool call without words is passed over: it holds no text to measure, and a planner that
    opens every conversation with a bare call, a solver answering after it, made the planner the policy, whose
    texts are none (every sample skipped while the solver's answers went unread). Elected once per run whatever a
    command filters (its steps, splits or roles), so that ``metrics``, doctor, plot, report and diff read the
    same speaker's text at a step. Reads the messages' ``role``, ``name``, ``tool_calls`` and ``content`` fields
    (with ``prompt_turns`` and ``split``): in native Parquet without a tool call in a model turn through the
    nested role, name and tool-call columns alone (``_election_native``), else through the run's samples. Kept
    on the run until a file is found unreadable."""
    key = tuple((f.path, f.readable, f.unread) for f in run.files if f.kind == "samples")
    held = run.__dict__.get("_policy_speaker")
    if held is not None and held[0] == key:
        return held[1]
    rows = _election_native(run)
    files: tuple[int, int] | None = None
    if rows is not None:
        counts = pl.collect_all(_election_counts(rows.lazy(), voiced=True))
    else:
        # The train split first (what elects where one of its samples has a model turn): the messages of other
        # splits are not read for it (a Flink run parses each conversation from its text, once per read).
        voters = _election_files(run)

        def counts_of(train: bool) -> list[pl.DataFrame]:
            def build() -> list[pl.LazyFrame]:  # built again after a file is left out (``Run.collect``)
                lf = voters.samples.select("split", "prompt_turns", "messages")
                return _election_counts(lf.filter(pl.col("split") == POLICY_SPLIT) if train else lf)

            return voters.collect(build)

        counts = counts_of(True)
        if not counts[0].height:
            counts = counts_of(False)
        if voters is not run:  # some files only: how many of how many, for the note that counts the votes
            # Counted after the read: a file it found with text that cannot be read gave no vote.
            voted = sum(f.kind == "samples" and f.text_readable for f in voters.files)
            files = (voted, len(_election_pool(run)))
    opens, voiced, model = counts
    elected = _elect(opens, voiced, model, files)
    # Keyed by the files' state when elected: a file left out since (``Run.collect``) elects again.
    run.__dict__["_policy_speaker"] = (
        tuple((f.path, f.readable, f.unread) for f in run.files if f.kind == "samples"),
        elected,
    )
    return elected


# Where the messages are read whole (another layout than native Parquet: a Flink run parses each conversation from
# its text, 100 us a sample), the election reads whole sample files of about this many train samples in all,
# spread evenly over the run's steps: a command that reads a few steps (``--steps 3``) no longer parsed every
# train conversation of the run first (2.8 s for 1.2 s on 300 steps, 6.7 s on 900).
ELECTION_ROWS = 1024
ELECTION_FILES = 16  # and at most this many files (each is a scan of its own: 10 ms apiece on a Flink run)


def _election_pool(run: Run) -> list[Any]:
    """The sample files the election may read: the readable ones of the train split (or of none), else all the
    readable ones (eval never votes where train has files). A file whose text could not be read (``unread``)
    has no vote to give: it is not one of them (the note counted it among the files read to elect)."""
    files = [f for f in run.files if f.kind == "samples" and f.text_readable]
    return [f for f in files if f.split in (POLICY_SPLIT, None)] or files


def _election_files(run: Run) -> Run:
    """``run``, or where its readable sample files hold more than ``ELECTION_ROWS`` train samples (or samples of
    no single split), a sub-run of whole files of about that many, taken evenly over the files ordered by step: the
    same files whatever a command filters. A file of another split is never among them (eval never votes); where
    there is none of train, the run's others are (``_election_pool``)."""
    import dataclasses
    import math

    train = _election_pool(run)
    rows = sum(f.rows or 0 for f in train)
    if not train or (rows <= ELECTION_ROWS and len(train) <= ELECTION_FILES) or any(f.rows is None for f in train):
        return run
    train.sort(key=lambda f: (f.step if f.step is not None else -1, f.path))
    k = min(len(train), ELECTION_FILES, max(1, math.ceil(ELECTION_ROWS * len(train) / rows)))
    picked = sorted({round(i * (len(train) - 1) / max(1, k - 1)) for i in range(k)})
    others = [f for f in run.files if f.kind != "samples"]
    return dataclasses.replace(run, files=[*others, *(train[i] for i in picked)])


def _voiced(messages: pl.Expr) -> pl.Expr:
    """``messages`` as the election reads them: each message's ``role`` and ``name``, and ``voice``, whether it
    has text to read: words, or no tool call (``_turn_texts`` passes over a tool call without words, and only
    such a turn)."""
    e = pl.element()
    calls = e.struct.field("tool_calls").list.len().fill_null(0) > 0
    words = e.struct.field("content").cast(pl.String).str.contains(F.NON_SPACE_CLASS).fill_null(False)
    return messages.list.eval(
        pl.struct(
            e.struct.field("role").cast(pl.String).alias("role"),
            e.struct.field("name").cast(pl.String).alias("name"),
            (words | ~calls).alias("voice"),
        )
    ).alias("messages")


def _election_counts(lf: pl.LazyFrame, voiced: bool = False) -> list[pl.LazyFrame]:
    """Per ``split`` and speaker (``name``, null for the turns without one): the samples it opens (``opens``, its
    turn with text the sample's first), the samples where it has a turn with text, and those where it has a model
    turn (``samples``, each), over the generated model turns (past ``prompt_turns``: an assistant turn of the
    prompt, a few-shot example, speaks for no one). ``lf``: ``split``, ``prompt_turns`` and ``messages`` (their
    ``role``, ``name``, ``content`` and ``tool_calls`` read: ``_voiced``; with ``voiced``, already as ``_voiced``
    gives them). The samples are counted per shape first (the same speakers in the same order: a run
    has few), so that only the shapes' turns are looked at one by one."""
    shapes = (
        lf.select(
            pl.col("split").cast(pl.String),
            "prompt_turns",
            (pl.col("messages") if voiced else _voiced(pl.col("messages"))).cast(
                pl.List(pl.Struct({"role": pl.String, "name": pl.String, "voice": pl.Boolean}))
            ),
        )
        .group_by("split", "prompt_turns", "messages")
        .agg(pl.len().cast(pl.Int64).alias("__n"))
        .with_row_index("__row")
    )
    turns = (
        shapes.with_columns(pl.int_ranges(0, pl.col("messages").list.len()).alias("__index"))
        .explode("messages", "__index")
        .unnest("messages")
        .filter(pl.col("role").str.to_lowercase().is_in(MODEL_ROLES) & _generated(pl.col("__index")))
    )
    spoken = turns.filter(pl.col("voice"))  # the turns with text: those that vote
    first = spoken.group_by("__row", maintain_order=True).agg(pl.col("split", "name", "__n").first())

    def samples(of: pl.LazyFrame) -> pl.LazyFrame:  # per speaker, the samples where it has such a turn
        once = of.group_by("__row", "name").agg(pl.col("split", "__n").first())
        return once.group_by("split", "name").agg(pl.col("__n").sum().alias("samples"))

    return [first.group_by("split", "name").agg(pl.col("__n").sum().alias("opens")), samples(spoken), samples(turns)]


def _elect(
    opens: pl.DataFrame, voiced: pl.DataFrame, model: pl.DataFrame, files: tuple[int, int] | None = None
) -> PolicySpeaker:
    """``policy_speaker``'s election from ``_election_counts``: over the train split's samples where one has a
    model turn with text, else over every sample."""
    train = bool(opens.filter(pl.col("split") == POLICY_SPLIT).height)
    if train:
        opens, voiced, model = (f.filter(pl.col("split") == POLICY_SPLIT) for f in (opens, voiced, model))
    votes = {n: int(v) for n, v in opens.group_by("name").agg(pl.col("opens").sum()).iter_rows()}
    spoke = set(voiced["name"].to_list())
    silent = tuple(sorted(set(model["name"].to_list()) - spoke, key=lambda n: (n is None, n or "")))
    if not votes:
        return PolicySpeaker(None, silent=silent, files=files)
    ranked = sorted(votes.items(), key=lambda kv: _vote_order(*kv))
    name = ranked[0][0]
    others = sorted(spoke - {name}, key=lambda n: _vote_order(n, votes.get(n, 0)))
    return PolicySpeaker(name, tuple(ranked), (name, *others), sum(votes.values()), train, True, silent, files)


def _election_native(run: Run) -> pl.DataFrame | None:
    """The rows ``_election_counts`` reads, from a run whose every sample file is local native Parquet of the
    current schema: the nested ``messages.*.role`` and ``messages.*.name`` columns, with one column of the
    messages' tool calls, alone (a fraction of the time of reading ``messages`` whole, whose contents are most of
    a file), with ``split`` and ``prompt_turns`` (as ``Run.samples`` conforms them). None where that cannot be
    done (another layout, a remote or older file, a file that fails, a run under ``NATIVE_ELECTION_BYTES``), or
    where a generated model turn holds a tool call: whether it has words (whether it votes, ``_voiced``) is in
    its content, which this does not read; the run's samples are read instead (``_election_files``: a few of its
    files), which also report what fails."""
    from .. import schema as S
    from ..storage import ObjectPath

    files = [f for f in run.files if f.kind == "samples" and f.readable]
    if sum(f.bytes or 0 for f in files) < NATIVE_ELECTION_BYTES or any(
        f.layout != "runlog"
        or f.fmt != "parquet"
        or isinstance(f.abspath, ObjectPath)
        or (f.schema_version or S.CURRENT_VERSION) != S.CURRENT_VERSION
        for f in files
    ):
        return None
    import pyarrow as pa  # only here: a run read another way need not load it (0.1-0.2 s)
    import pyarrow.parquet as pq

    tables: dict[Any, list[Any]] = {}  # per schema read: the files' tables, made one frame each
    messages = pl.List(pl.Struct({"role": pl.String, "name": pl.String, "voice": pl.Boolean}))
    e = pl.element()
    try:
        for f in files:
            if "messages" in f.unread:  # its messages are null in the run's samples: no turn to vote with
                continue
            pf = pq.ParquetFile(f.abspath)
            paths = [pf.schema.column(i).path for i in range(pf.metadata.num_columns)]
            # ``messages.list.element.role`` (not a tool call's ``...tool_calls.list.element.name``).
            fields = [p for p in paths if p.startswith("messages.") and p.count(".") == 3]
            fields = [p for p in fields if p.rsplit(".", 1)[1] in ("role", "name")]
            if not fields:  # no messages (or none with a role or a name): nothing to vote with
                continue
            # One leaf of the tool calls (``...tool_calls.list.element.id``): which messages hold one.
            fields += [p for p in paths if p.startswith("messages.list.element.tool_calls.")][:1]
            wanted = [c for c in ("split", "prompt_turns") if c in paths and c not in f.unread]
            table = pf.read(columns=[*wanted, *fields])
            tables.setdefault(table.schema, []).append(table)
        frames = []
        for same in tables.values():
            frame = pl.from_arrow(pa.concat_tables(same))
            assert isinstance(frame, pl.DataFrame)
            # ``split`` and ``prompt_turns`` as the run's samples conform them (a prompt_turns that is not a whole
            # count reads as null: every turn is read).
            conformed = S.conform_samples(frame.drop("messages").lazy()).select("split", "prompt_turns").collect()
            names = {x.name for x in frame.schema["messages"].inner.fields}  # type: ignore[attr-defined]
            said = [
                (e.struct.field(n) if n in names else pl.lit(None)).cast(pl.String).alias(n) for n in ("role", "name")
            ]
            calls = e.struct.field("tool_calls").list.len().fill_null(0) > 0 if "tool_calls" in names else pl.lit(False)
            voiced = (
                frame["messages"]
                .to_frame()
                .select(pl.col("messages").list.eval(pl.struct(*said, (~calls).alias("voice"))))
            )
            frames.append(conformed.with_columns(voiced["messages"].cast(messages)))
    except Exception:  # noqa: BLE001 - whatever fails, the run's samples are read instead, and report it
        return None
    if not frames:
        return pl.DataFrame(schema={"split": pl.String, "prompt_turns": pl.Int32, "messages": messages})
    rows = pl.concat(frames, how="vertical_relaxed")
    call_turns = (
        rows.lazy()
        .select("prompt_turns", "messages", pl.int_ranges(0, pl.col("messages").list.len()).alias("__index"))
        .explode("messages", "__index")
        .unnest("messages")
        .filter(pl.col("role").str.to_lowercase().is_in(MODEL_ROLES) & _generated(pl.col("__index")) & ~pl.col("voice"))
        .head(1)
        .collect()
    )
    return None if call_turns.height else rows


def _generated(index: pl.Expr) -> pl.Expr:
    """Whether the message at ``index`` (its place in its sample's ``messages``) is one the rollout generated:
    past the sample's ``prompt_turns`` (the prompt as sent, few-shot examples included), or any message where a
    layout cannot tell (null: every turn is read, as written). Null for a null ``index`` (no message)."""
    return index >= pl.col("prompt_turns").fill_null(0)


def _flag_columns(bare: pl.Expr, flags: bool) -> list[pl.Expr]:
    """``__unread`` (put in the frame by ``_texts_lazy``'s ``base``) and ``bare`` as ``__bare``, with ``flags``."""
    return [pl.col("__unread"), bare.alias("__bare")] if flags else []


def _unread(run: Run) -> pl.Expr:
    """Whether a row's file is one whose text could not be read (``FileInfo.unread``: its texts are null). Known
    when the query is built: ``Run.collect`` builds it again after it found such a file. Reads ``source`` only
    where the run has such a file."""
    paths = {p for f in run.files if f.kind == "samples" and f.readable and f.unread for p in (f.path, str(f.abspath))}
    return pl.col("source").is_in(sorted(paths)) if paths else pl.lit(False)


def _texts_lazy(
    run: Run,
    text: str,
    filters: Filters,
    with_group: bool,
    per_role: bool = False,
    calls: bool = False,
    reasoning: bool = False,
    flags: bool = False,
    mixed: list[_Mixed] | None = None,
) -> pl.LazyFrame:
    """``texts_frame``'s query. ``flags`` (``_texts_counted``): two more columns, ``__unread`` (the row's file is
    one whose text could not be read) and ``__bare`` (the sample has no messages, and no text in their place:
    ``completion``, or the fallback of message-level texts), and for message-level texts (``messages``,
    ``calls``) one row, flagged ``__bare``, for each sample without messages that has no row otherwise.
    ``mixed``: where a group id is split by file (``_mixed_groups``), its answer is put there, for the caller to
    warn once it knows a text of theirs is measured (``_warn_mixed``)."""
    group_key = group_key_expr(run) if with_group else None
    group = group_key if group_key is not None else pl.lit(None, dtype=pl.String)
    base = [pl.col("step"), pl.col("split"), pl.col("sample_id"), group.cast(pl.String).alias("group")]
    # The policy is elected over the run, not over the samples the filters keep: a step's text is the same whatever
    # is asked (read before ``run.samples``, which a file found unreadable while electing builds again).
    elected = policy_speaker(run) if not calls and reads_policy(text, per_role) else None
    # One group id whose files hold different prompts (processes numbering their own groups from 0): split by file.
    # Looked for before ``run.samples`` is read here, as the election is: a file it finds unreadable is left out.
    split_ids = _mixed_groups(run, filters) if group_key is not None else None
    if split_ids is not None and mixed is not None:
        mixed.append(split_ids)
    if flags:  # after the election: a file whose text it found unreadable is one of them
        base.append(_unread(run).alias("__unread"))
    lf = apply_filters(run.samples, filters, roles_too=False)
    if split_ids is not None and group_key is not None:
        lf, split_group = _split_by_file(lf, group_key, split_ids)
        base[3] = split_group.cast(pl.String).alias("group")
    if text == "role:":
        raise UsageError("--text role:NAME needs a role name (e.g. role:solver)")
    if calls:
        # The calls the rollout made: a call in a few-shot example of the prompt is not the policy's.
        if text.startswith("role:"):
            return _message_texts(
                lf,
                base,
                role_speaker(run, text.split(":", 1)[1]),
                reasoning=reasoning,
                flags=flags,
                generated_only=True,
            )
        if text not in TEXT_SOURCES:
            raise UsageError(f"--text {text!r}: expected one of {', '.join(TEXT_SOURCES)}")
        # A sample without messages: its completion (or with --text trajectory its transcript as written).
        fallback = "trajectory" if text == "trajectory" else "completion"
        return _message_texts(lf, base, None, fallback=fallback, reasoning=reasoning, flags=flags, generated_only=True)
    if text in ("auto", "auto+reasoning", "assistant", "answer") or (text.startswith("role:") and text != "role:"):
        speaker = role_speaker(run, text.split(":", 1)[1]) if text.startswith("role:") else None
        policy = text in ("auto", "auto+reasoning", "answer")
        with_reasoning = reasoning or text == "auto+reasoning"
        by_speaker = per_role and speaker is None and text != "answer"
        out = _turn_texts(lf, base, speaker, policy, by_speaker, with_reasoning, flags, elected)
        if text == "auto+reasoning":
            out = out.with_columns(_with_reasoning(pl.col("text"), pl.col("reasoning")).alias("text"))
            out = out if reasoning else out.drop("reasoning")
        if text == "answer":
            inner = pl.col("text").str.extract(_ANSWER, 1)
            # The text's answer block when it has one, else completion (a trainer's extracted answer); a sample
            # that ``auto`` skips (messages, but no policy turn) has no answer either: its completion may hold the
            # prompt, or another speaker's words (what ``auto`` does not read in the turn's place).
            completion = lf.select(pl.col("completion").cast(pl.String).alias("__c"))
            out = pl.concat([out, completion], how="horizontal").with_columns(
                pl.when(pl.col("text").is_null())
                .then(pl.lit(None, dtype=pl.String))
                .when(inner.is_not_null())
                .then(inner)
                .otherwise(pl.col("__c"))
                .alias("text")
            )
            out = out.drop("__c")
        return out
    if text in ("completion", "trajectory"):
        lf = lf.select(
            *base,
            pl.lit(None, dtype=pl.String).alias("role"),
            pl.lit(None, dtype=pl.Int64).alias("turn"),
            pl.col(text).cast(pl.String).alias("text"),
            *([pl.lit(None, dtype=pl.String).alias("reasoning")] if reasoning else []),
            *([pl.lit(False).alias("__bare")] if flags else []),  # ``__unread`` is in ``base``
        )
    elif text == "messages":
        lf = _message_texts(lf, base, None, reasoning=reasoning, flags=flags)
    else:
        raise UsageError(f"--text {text!r}: expected one of {', '.join(TEXT_SOURCES)}")
    return lf


# The keys of a prompt group given by id: one id is one group within its split and step.
_ID_GROUP = ["split", "step", "group_id"]
# The label of one file's share of a group id whose files hold different prompts (``_mixed_groups``).
FILE_PART = "{group}/part-{n}"
MIXED_GROUPS_WARNING = (
    "{n:,} group id(s) of a step hold different prompts in different files (first: group_id {group!r} at step "
    "{step}{split}, in {files} files: {names}; processes that each number their own groups from 0?): the text "
    "metrics (diversity within groups) take each file's samples of such an id as a group of their own "
    "(`{label}`, ...; files that share a prompt stay one group), so that no group pools two processes' prompts; "
    "runlog summarize still groups by the id"
)


def _normalised_prompt() -> pl.Expr:
    """A sample's prompt with its white space normalised (each run of it one space, none at either end), as a
    number: two files' prompts that differ only there (a trailing space or newline) are one prompt."""
    prompt = pl.col("prompt").cast(pl.String)
    return prompt.str.replace_all(r"\s+", " ").str.strip_chars(" ").hash()


class _Mixed(NamedTuple):
    """``_mixed_groups``' answer: ``parts`` (one row per split, step, group id and file: ``__label``, the group
    that file's samples of the id are in) and the warning to give where their texts are measured (``path``,
    ``message``, and the labels that say whether they are)."""

    parts: pl.DataFrame
    path: str
    message: str


def _mixed_groups(run: Run, filters: Filters) -> _Mixed | None:
    """The group ids (per split and step) of the samples ``filters`` keep whose files hold different prompts:
    two processes (or files) that each number their own groups from 0, pooled in one run folder, would otherwise
    pool answers to different questions in one group, where each prompt's collapse reads as variety. Only an
    id's files are evidence: the samples of one id in one file are one group whatever their prompts (a group of
    one task whose rollouts each see their own seed in the prompt), and the files of an id that share a prompt
    (white space normalised, ``_normalised_prompt``) are one group too (one group's rollouts written by two
    processes); an id whose files share none is split by file, each file's samples (and those of the files that
    share a prompt with it) a group of their own, ``FILE_PART`` (``ID/part-N``, N the part's place among the id's,
    from 0, in run order; made unique beside the ids there are at that step). Its samples without a prompt stay
    with their file's. None where no id is so split.

    Two reads, the second only where some id's samples at a step come from two files and hold two prompts (as
    written): ``group_id``, ``source`` and ``prompt`` (a twentieth of the time of the texts' own read, unique
    prompts of 2.4 KB each), then those ids' prompts normalised, and the ids at their steps. Not looked for where
    a layout finds the group ids from the prompt (Flink, ``Layout.text_columns``): one id is then one prompt, and
    reading the prompt would parse every conversation a second time (a third more time)."""
    from ..run import text_columns

    layouts = {f.layout for f in run.files if f.kind == "samples" and f.readable and f.layout}
    if any("group_id" in text_columns(layout) for layout in layouts):
        return None
    schema = run.samples.collect_schema()
    if "group_id" not in schema.names() or "prompt" not in schema.names():
        return None
    prompt = pl.col("prompt").cast(pl.String)
    with_prompt = pl.col("group_id").is_not_null() & prompt.is_not_null()

    def candidates() -> list[pl.LazyFrame]:  # built again after a file is left out (``Run.collect``)
        lf = apply_filters(run.samples, filters, roles_too=False).filter(with_prompt)
        pairs = lf.select(*_ID_GROUP, "source", prompt.hash().alias("__h")).unique(maintain_order=True)
        many = (pl.col("source").n_unique() > 1) & (pl.col("__h").n_unique() > 1)
        return [pairs.group_by(_ID_GROUP, maintain_order=True).agg(many.alias("__many")).filter("__many")]

    [ids] = run.collect(candidates)
    if not ids.height:
        return None
    ids = ids.select(_ID_GROUP)

    def prompts() -> list[pl.LazyFrame]:
        lf = apply_filters(run.samples, filters, roles_too=False)
        own = lf.filter(with_prompt).join(
            ids.lazy(), on=_ID_GROUP, how="semi", nulls_equal=True, maintain_order="left"
        )  # in run order: the parts are numbered so
        pairs = own.select(*_ID_GROUP, "source", _normalised_prompt().alias("__h")).unique(maintain_order=True)
        steps = ids.lazy().select("split", "step").unique()
        present = lf.join(steps, on=["split", "step"], how="semi", nulls_equal=True)
        return [pairs, present.select("split", "step", pl.col("group_id").cast(pl.String)).unique()]

    pairs, present = run.collect(prompts)
    parts = _file_parts(pairs)
    if not parts.height:
        return None
    parts = _part_labels(parts, present)
    first = parts.row(0, named=True)
    split_ids = parts.select(_ID_GROUP).unique()
    files = parts.filter(*[pl.col(k).eq_missing(first[k]) for k in _ID_GROUP])["source"].to_list()
    names = ", ".join(str(f) for f in files[:2]) + (", …" if len(files) > 2 else "")
    message = MIXED_GROUPS_WARNING.format(
        n=split_ids.height,
        group=first["group_id"],
        step=first["step"],
        split=f" of split {first['split']}" if first["split"] is not None else "",
        files=len(files),
        names=names,
        label=first["__label"],
    )
    return _Mixed(parts.select(*_ID_GROUP, "source", "__label"), str(first["source"] or "."), message)


def _file_parts(pairs: pl.DataFrame) -> pl.DataFrame:
    """From ``pairs`` (one row per split, step, group id, file and prompt ``__h``), the files of the ids that fall
    in two parts or more, a part being the files that share a prompt (directly, or through another file of the
    id): one row per split, step, group id and file, ``__n`` its part's place among the id's (from 0, in run
    order). Files joined by a shared prompt are found by passing each file's smallest number round its prompts
    until none changes (as many passes as the longest chain of files, one or two in practice)."""
    files = pairs.select(*_ID_GROUP, "source").unique(maintain_order=True)
    files = files.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over(_ID_GROUP).alias("__f"))
    frame = pairs.join(files, on=[*_ID_GROUP, "source"], how="left", nulls_equal=True, maintain_order="left")
    frame = frame.with_columns(pl.col("__f").alias("__c"))
    while True:  # one window over the other's result: two steps (a window of a window is not that)
        moved = frame.with_columns(pl.col("__c").min().over([*_ID_GROUP, "__h"]).alias("__next"))
        moved = moved.with_columns(pl.col("__next").min().over([*_ID_GROUP, "source"]))
        if moved.filter(pl.col("__next") != pl.col("__c")).height == 0:
            break
        frame = moved.drop("__c").rename({"__next": "__c"})
    per_file = frame.group_by([*_ID_GROUP, "source"], maintain_order=True).agg(pl.col("__f", "__c").first())
    per_file = per_file.with_columns(
        (pl.col("__c").rank("dense").over(_ID_GROUP).cast(pl.Int64) - 1).alias("__n"),
        pl.col("__c").n_unique().over(_ID_GROUP).alias("__k"),
    )
    return per_file.filter(pl.col("__k") > 1).sort([*_ID_GROUP, "__f"], maintain_order=True).drop("__f", "__c", "__k")


def _part_labels(parts: pl.DataFrame, present: pl.DataFrame) -> pl.DataFrame:
    """``parts`` with ``__label``: ``FILE_PART``, unless that is a group id at the same split and step
    (``present``: every id there), or another part's label there; then ``ID/part-N~2`` (``~3``, ...): a group
    the run names so is never pooled with a part of another id."""
    label = pl.format(FILE_PART.replace("{group}", "{}").replace("{n}", "{}"), pl.col("group_id"), pl.col("__n"))
    parts = parts.with_columns(label.alias("__label"))
    taken = present.rename({"group_id": "__label"}).with_columns(pl.lit(True).alias("__taken"))
    clash = parts.join(taken, on=["split", "step", "__label"], how="left", nulls_equal=True, maintain_order="left")
    if not clash["__taken"].any():
        return parts
    # A label that is an id there: the next free one (rare: a run whose ids read like these labels).
    used: set[tuple[Any, Any, str]] = {(r[0], r[1], r[2]) for r in present.iter_rows()}
    used |= {(r["split"], r["step"], r["__label"]) for r in parts.iter_rows(named=True)}
    labels = []
    for row, hit in zip(parts.iter_rows(named=True), clash["__taken"].to_list(), strict=True):
        lab = row["__label"]
        k = 1
        while hit and (row["split"], row["step"], lab) in used:
            k += 1
            lab = f"{row['__label']}~{k}"
        used.add((row["split"], row["step"], lab))
        labels.append(lab)
    return parts.with_columns(pl.Series("__label", labels, dtype=pl.String))


def _split_by_file(lf: pl.LazyFrame, key: pl.Expr, mixed: _Mixed) -> tuple[pl.LazyFrame, pl.Expr]:
    """``lf`` and its prompt group key, each file's samples of a group id that ``_mixed_groups`` splits being
    in their part's group (``__label``); every other sample keeps ``key``."""
    joined = lf.join(mixed.parts.lazy(), on=[*_ID_GROUP, "source"], how="left", nulls_equal=True, maintain_order="left")
    return joined, pl.when(pl.col("__label").is_not_null()).then(pl.col("__label")).otherwise(key.cast(pl.String))


def _warn_mixed(run: Run, mixed: list[_Mixed], frame: pl.DataFrame) -> None:
    """``_mixed_groups``' warning, given where a text of a split id is measured (``frame``: the texts read; a
    part's samples without a text, ``--text messages`` of samples without messages, measure nothing)."""
    if not mixed or "group" not in frame.columns:
        return
    last = mixed[-1]  # the query built last (``Run.collect`` builds it again after a file is left out)
    labels = last.parts["__label"].unique().to_list()
    if not frame.filter(pl.col("text").is_not_null() & pl.col("group").is_in(labels)).height:
        return
    if not any(p.message == last.message for p in run.problems):
        run.ctx.warn(last.path, last.message)


def reasoning_written(reasoning: pl.Expr) -> pl.Expr:
    """A ``reasoning`` field as the model wrote it: without the lines that are runlog's marks of encrypted
    reasoning (``REDACTED_MARKS``; empty where all of it is encrypted: no text to count tokens of, or to put back
    in think tags), and without the summary of a Responses reasoning item that has its raw reasoning too (another
    model's shortened retelling: think lengths would count both, a review), which ``chat.reasoning_text`` writes as
    ``SUMMARY_MARK``, the summary, ``RAW_REASONING_MARK``, the raw reasoning. Those two marks are only runlog's
    where they pair up so, a summary mark before a raw one with no mark between: the summary's lines and both marks
    are left out there; a line that reads the same anywhere else (a summary mark with no raw one after it, a raw one
    with no summary one before it) is the model's, and kept. An item with its summary alone keeps it: the only
    words of its reasoning there are."""
    line = pl.element()
    summary, raw = line == _chat.SUMMARY_MARK, line == _chat.RAW_REASONING_MARK
    mark = pl.when(summary).then(pl.lit(1)).when(raw).then(pl.lit(2))
    # The nearest mark before a line, and the nearest after it (null: none).
    before, after = mark.shift(1).forward_fill(), mark.shift(-1).backward_fill()
    paired = (
        (summary & (after == 2))  # the summary mark that a raw mark follows
        | (mark.is_null() & (before == 1) & (after == 2))  # the summary between them
        | (raw & (before == 1))  # the raw mark after a summary mark
    ).fill_null(False)
    redacted = line.is_in([m for m in REDACTED_MARKS if m not in (_chat.SUMMARY_MARK, _chat.RAW_REASONING_MARK)])
    return reasoning.str.split("\n").list.eval(line.filter(~paired & ~redacted)).list.join("\n")


def _with_reasoning(text: pl.Expr, reasoning: pl.Expr) -> pl.Expr:
    """``--text auto+reasoning``: the turn's ``reasoning`` put back in front of its content as the model wrote it
    (``<think>REASONING</think>CONTENT``: vLLM's reasoning parsers cut the generation at the tags and keep both
    parts as written); without content (cut off while reasoning: the parser saw no ``</think>``) no close tag.
    A text with a ``<think>`` of its own, or without reasoning, is left as it is; an encrypted reasoning
    (runlog's ``[redacted_thinking]`` mark, ``reasoning_written``) is none: it has no words to put back; of a
    Responses reasoning item with a summary and its raw reasoning, the raw reasoning goes back."""
    reasoning = reasoning_written(reasoning)
    back = text.is_not_null() & reasoning.is_not_null() & (reasoning != "")
    back &= ~text.str.contains("<think>", literal=True)
    closed = pl.concat_str([pl.lit("<think>"), reasoning, pl.lit("</think>"), text])
    return (
        pl.when(back & (text != ""))
        .then(closed)
        .when(back)
        .then(pl.concat_str([pl.lit("<think>"), reasoning]))
        .otherwise(text)
    )


def _message_texts(
    lf: pl.LazyFrame,
    base: list[pl.Expr],
    wanted: str | None,
    *,
    fallback: str | None = None,
    reasoning: bool = False,
    flags: bool = False,
    generated_only: bool = False,
) -> pl.LazyFrame:
    """One row per message with content or tool calls, in run order: ``role`` the speaker (``wanted``: that
    speaker's messages only), ``turn`` the message index, ``tool_calls`` and ``message_role`` (the message's
    own role: a tool result's name is its tool's). ``fallback`` (a text column): a sample with no messages (null
    or empty) gives one row with that text instead, so that it is still counted. ``reasoning``: the message's
    ``reasoning`` field too. ``flags``: a sample with no messages and no ``fallback`` text keeps one row (its
    text and role null), flagged ``__bare``, beside ``__unread``; a sample with messages none of which is kept
    (each one the prompt's, the speaker silent, none with content or calls) keeps one row too (its text, calls and
    role null), flagged ``__none``, so that it is counted as skipped, never left out unseen; ``__sample`` numbers
    the samples (``_texts_counted`` tells by it whose a row is). ``generated_only`` (tool calls): only the
    messages after the prompt, where the sample's ``prompt_turns`` tells (``_generated``)."""
    cols = ["messages", fallback] if fallback else ["messages"]
    if generated_only:
        cols.append("prompt_turns")
    messages = pl.col("messages")
    number = [pl.int_range(pl.len(), dtype=pl.Int64).alias("__sample")] if flags else []
    # A null list explodes to one null row (as its null ``turn`` does) and an empty one to none: an empty list
    # is made null, so that a sample without messages keeps one row, in its place (its ``turn`` null).
    msgs = (
        lf.select(*base, *cols, *number)
        .with_columns(pl.when(messages.list.len() > 0).then(messages).alias("messages"))
        .with_columns(pl.int_ranges(0, messages.list.len()).alias("turn"))
        .explode("messages", "turn")
        .unnest("messages")
    )
    who = speaker_label(pl.col("name"), pl.col("role"))
    text = pl.col("content").cast(pl.String)
    if fallback:
        text = pl.when(pl.col("turn").is_null()).then(pl.col(fallback).cast(pl.String)).otherwise(text)
    # The row of a sample without messages (``turn`` null) that has no text in their place either.
    bare = pl.col("turn").is_null() & text.is_null()
    # A message with content (an empty string is none: an empty tool result) or tool calls; a sample's
    # fallback text counts as it is (an empty completion is the model's answer).
    has_text = text.is_not_null() & ((pl.col("content").cast(pl.String) != "") | pl.col("turn").is_null())
    kept = has_text | pl.col("tool_calls").is_not_null()
    if wanted is not None:
        kept &= spoken_by(wanted, pl.col("name"), pl.col("role"))
        who = pl.lit(wanted)
    if generated_only:
        kept &= pl.col("turn").is_null() | _generated(pl.col("turn"))  # (a sample's fallback row has no turn)
    kept = kept.fill_null(False)
    if not flags:
        return msgs.filter(kept).select(*_message_columns(who, text, reasoning))
    # A sample with messages of which none is kept: its first row stands for it (``__none``), emptied.
    none = ~bare & ~kept.any().over("__sample") & pl.col("__sample").is_first_distinct()
    return msgs.filter(kept | bare | none).select(
        *_message_columns(pl.when(kept).then(who), pl.when(~none).then(text), reasoning, none),
        *_flag_columns(bare, flags),
        none.alias("__none"),
        pl.col("__sample"),
    )


def _message_columns(who: pl.Expr, text: pl.Expr, reasoning: bool, empty: pl.Expr | None = None) -> list[pl.Expr]:
    """``_message_texts``'s columns; ``empty``: the rows that stand for a sample of which no message is read
    (their turn, calls and message role null)."""

    def unless(e: pl.Expr) -> pl.Expr:
        return e if empty is None else pl.when(~empty).then(e)

    return [
        *[pl.col(c) for c in ("step", "split", "sample_id", "group")],
        who.cast(pl.String).alias("role"),
        unless(pl.col("turn").cast(pl.Int64)).alias("turn"),
        text.alias("text"),
        unless(pl.col("tool_calls")).alias("tool_calls"),
        unless(pl.col("role").cast(pl.String)).alias("message_role"),
        *([unless(pl.col("reasoning").cast(pl.String)).alias("reasoning")] if reasoning else []),
    ]


@dataclass
class SkippedTexts:
    """The samples that have no text of the kind read (a null text in ``texts_frame``), which the metrics skip:
    filled by ``diversity_frame``, ``format_frame`` and ``format_per_sample`` given ``skipped=SkippedTexts()``,
    counted in the same read as the texts. ``counts``: the samples (``n``) per row (the function's keys:
    ``step, split, role`` for ``format_per_sample``) and reason (``why``): ``unread``, their file's text could
    not be read; ``bare``, no messages and no text in their place (``completion``, where that is read); ``rest``,
    the others (messages without a turn of the speaker read, a null column, no ``<answer>`` block and a null
    completion; for message-level texts, ``messages`` and tool-call specs, the samples with messages none of which
    is measured: every one the prompt's, a user message alone, none with content)."""

    counts: pl.DataFrame | None = None

    def per_row(self, keys: Sequence[str]) -> pl.DataFrame:
        """The samples skipped per row of ``keys`` (a subset of the keys counted), as ``no_text``; only the rows
        where some are."""
        if self.counts is None:
            return pl.DataFrame(schema={"no_text": pl.Int64})
        n = pl.col("n").sum().cast(pl.Int64).alias("no_text")
        out = self.counts.group_by(list(keys), maintain_order=True).agg(n) if keys else self.counts.select(n)
        return out.filter(pl.col("no_text") > 0)

    def by_reason(self) -> dict[str, int]:
        """The samples skipped per reason: ``unread``, ``bare``, ``rest``, in that order."""
        counts = self.counts
        got = {} if counts is None else dict(counts.group_by("why").agg(pl.col("n").sum()).iter_rows())
        return {k: int(got.get(k) or 0) for k in ("unread", "bare", "rest")}

    @property
    def total(self) -> int:
        return sum(self.by_reason().values())


def _texts_counted(
    run: Run,
    text: str,
    filters: Filters | None,
    keys: Sequence[str],
    skipped: SkippedTexts | None,
    *,
    with_group: bool,
    per_role: bool = False,
    calls: bool = False,
    checked: pl.Expr | None = None,
) -> pl.DataFrame:
    """``texts_frame``; with ``skipped``, the samples without a text counted in it per ``keys`` and reason, from
    the same read (flags of columns the query reads anyway; a file's ``source`` only where some file's text could
    not be read). The frame is ``texts_frame``'s: its rows with a null text kept (the caller drops them).
    Message-level texts (``messages``, ``calls``): a sample is skipped when none of its rows is measured, those
    the caller keeps being ``checked`` (a tool-call spec checks no prompt, system or tool message: a sample
    whose only message is the user's has nothing checked), its role then null (the sample's, not a message's)."""
    if skipped is None:
        return texts_frame(run, text, filters=filters, with_group=with_group, per_role=per_role, calls=calls)
    filters = filters or Filters()
    mixed: list[_Mixed] = []

    def query() -> list[pl.LazyFrame]:
        return [_texts_lazy(run, text, filters, with_group, per_role, calls, flags=True, mixed=mixed)]

    frame = run.collect(query)[0]
    message_level = calls or text == "messages"
    why = pl.when(pl.col("__unread")).then(pl.lit("unread")).when(pl.col("__bare")).then(pl.lit("bare"))
    if message_level:
        read = ~pl.col("__bare") & ~pl.col("__none")
        if checked is not None:
            read &= checked.fill_null(False)
        # One count per sample none of whose rows is measured (its first row stands for it).
        none = ~read.any().over("__sample") & pl.col("__sample").is_first_distinct()
        found = frame.filter(none).with_columns(pl.lit(None, dtype=pl.String).alias("role"))
    elif per_role and checked is not None and "__sample" in frame.columns:
        # One row per sample and speaker. A speaker with a turn but no text (its row's text null: ``_turn_texts``)
        # is skipped in its own role's row, where the caller measures that role's texts (``checked`` of the row as if
        # it had a text: a spec's roles); a sample with neither such a speaker nor a row measured (a spec keeping the
        # verifier's texts, in a sample where only the solver speaks) is counted once, its role null (the sample's).
        wanted = frame.with_columns(pl.col("text").fill_null("")).select(checked.fill_null(False)).to_series()
        frame = frame.with_columns(wanted.alias("__wanted"))
        read = pl.col("text").is_not_null() & checked.fill_null(False)
        silent = pl.col("text").is_null() & pl.col("role").is_not_null() & pl.col("__wanted")
        none = ~(read | silent).any().over("__sample") & pl.col("__sample").is_first_distinct()
        found = frame.filter(silent | none).with_columns(pl.when(~none).then(pl.col("role")).alias("role"))
    else:
        found = frame.filter(pl.col("text").is_null())
    skipped.counts = (
        found.with_columns(why.otherwise(pl.lit("rest")).alias("why"))
        .group_by([*keys, "why"], maintain_order=True)
        .agg(pl.len().cast(pl.Int64).alias("n"))
    )
    if message_level:  # the samples' own rows, there only to be counted
        frame = frame.filter(~pl.col("__bare") & ~pl.col("__none")).drop("__none")
    _warn_mixed(run, mixed, frame)
    return frame.drop("__unread", "__bare", "__sample", "__wanted", strict=False)


def _has_text() -> pl.Expr:
    """The rows of a ``texts_frame`` that have a text (the others are skipped, and counted)."""
    return pl.col("text").is_not_null()


def _wordless_call() -> pl.Expr:
    """The rows of a message-level ``texts_frame`` that are tool calls without words: a message with a tool call
    whose content is empty, null or white space (``""`` or ``"\\n\\n"``, as the hermes and Qwen tool parsers leave
    it). Only ``tool-call-json`` checks them; diversity and the text specs measure words, and 16 identical empty
    texts of a tool-using agent read as mode collapse (a real verifiers dump: unique_frac 0.32 over its assistant
    turns, 0.60 over those with words). A reply of white space without a tool call is no such turn: the model
    said nothing, a text that fails every format spec and counts in diversity (a review: left out, adherence read
    0.333 where it was 0.25)."""
    words = pl.col("text").str.contains(F.NON_SPACE_CLASS).fill_null(False)
    return ~words & pl.col("tool_calls").list.len().fill_null(0).gt(0)


WORDLESS_NOTE = (
    "{n} message(s) without words (tool calls whose content is empty or white space) left out of --text messages: "
    "only tool-call-json checks them"
)


def diversity_frame(
    run: Run,
    by: Sequence[str] = ("step",),
    *,
    text: str = "auto",
    over: str = "group",
    filters: Filters | None = None,
    compression: bool = False,
    threads: int = 2,
    split_key: bool = True,
    notes: list[str] | None = None,
    skipped: SkippedTexts | None = None,
) -> pl.DataFrame:
    """Diversity metrics per row of ``by`` keys (``notes``: what the figures leave out is said there;
    ``skipped``: filled with the samples that have no text, per row, from the same read).

    ``over="group"`` (the mode-collapse view): metrics per prompt group, then the mean over the row's
    groups (``groups`` counts them), so a collapse inside groups shows even when the step as a whole looks
    varied. ``over="set"``: metrics over all texts of the row at once (Self-BLEU of a whole step).
    ``split`` is added to the keys when the run has several splits and ``filters`` pick none
    (``split_key=False`` pools them).
    """
    keys = _check_keys(by, run if split_key else None, filters)
    if over not in ("group", "set"):
        raise UsageError(f"--over {over!r}: expected group or set")
    with_group = over == "group" or "group" in keys
    # ``messages``: a turn of tool calls without words is no text to measure (left out, said; a sample with no
    # other message is counted in ``no_text``).
    checked = _has_text() & ~_wordless_call() if text == "messages" else _has_text()
    frame = _texts_counted(
        run, text, filters, keys, skipped, with_group=with_group, per_role="role" in keys, checked=checked
    )
    if text == "messages":
        frame = _left_out(frame, _wordless_call(), WORDLESS_NOTE, notes)
    frame = frame.filter(_has_text())
    if notes is not None and frame.height:
        notes += [x for x in [role_note(run, text)] if x]
    set_keys = list(dict.fromkeys(keys + (["split", "step", "group"] if over == "group" else [])))
    whole: pl.DataFrame | None = None  # the rows measured over their whole set (no group of two texts there)
    if over == "group" and frame.height:
        whole, every_row = _rows_without_a_group_of_two(frame, keys, set_keys)
        if every_row:
            over, whole = "set", None  # no row has a group of two: within-group figures would be single texts'
            set_keys = list(keys)
        elif whole.height:
            # Those rows' sets are the rows themselves: the group keys past the row's own are cleared.
            inner = [k for k in set_keys if k not in keys]
            frame = _marked(frame, whole, keys).with_columns(
                [pl.when(pl.col("__whole")).then(None).otherwise(pl.col(k)).alias(k) for k in inner]
            )
        else:
            whole = None
    if over == "group":
        # A text without a prompt group (no group_id, no prompt) is in no group: all of a step's such texts
        # together are not one more group (four unrelated texts beside a collapsed group read as varied).
        orphan = pl.col("group").is_null()
        if whole is not None:
            orphan &= ~pl.col("__whole")
        frame = _left_out(frame, orphan, NO_GROUP_NOTE, notes)
    cols = D.BASIC_COLUMNS + D.NGRAM_COLUMNS + (D.COMPRESSION_COLUMNS if compression else [])
    if frame.height == 0:
        return pl.DataFrame(schema={**{k: frame.schema[k] for k in keys}, **_metric_schema(cols, over)})
    if set_keys:
        idx = frame.select(pl.struct(set_keys).rank("dense").cast(pl.Int64) - 1).to_series()
        set_index = idx.to_numpy()
        n_sets = int(set_index.max()) + 1
    else:
        set_index = np.zeros(frame.height, np.int64)
        n_sets = 1
    per_set = D.diversity_by_set(frame["text"], set_index, n_sets, compression=compression, threads=threads)
    ids = frame.select(*set_keys).with_columns(pl.Series("s", set_index)).unique("s", maintain_order=True)
    per_set = ids.join(per_set, on="s", how="left").drop("s")
    if over == "set":
        out = per_set.select(*keys, *cols)
    else:
        # A group of one text has no within-group diversity (unique_frac 1, no Self-BLEU): beside groups of two
        # or more it would pull the row's means towards "varied" (four collapsed groups of eight and four
        # singletons read unique_frac 0.56, not 0.125). Left out, and counted in a note.
        lone = (pl.col("texts") < 2) & pl.col("group").is_not_null()
        if whole is not None:
            per_set = _marked(per_set, whole, keys)
            lone &= ~pl.col("__whole")
        per_set = _left_out_groups(per_set, lone, notes)
        means = [pl.col(c).mean() for c in cols if c != "texts"]
        agg = [pl.len().alias("groups"), pl.col("texts").sum().alias("texts"), *means]
        out = per_set.group_by(keys, maintain_order=True).agg(agg) if keys else per_set.select(agg)
        out = out.select(*keys, "groups", *cols)
        if whole is not None:  # no groups there: ``groups`` null (the figures are over the row's texts)
            groups = pl.when(pl.col("__whole")).then(None).otherwise(pl.col("groups")).alias("groups")
            out = _marked(out, whole, keys).with_columns(groups).drop("__whole")
    return out.sort(keys, nulls_last=True) if keys else out


def _left_out(df: pl.DataFrame, rows: pl.Expr, note: str, notes: list[str] | None) -> pl.DataFrame:
    """``df`` without the ``rows``, their count said in ``note`` (``{n}``) where there are any."""
    n = df.select(rows.sum()).item()
    if not n:
        return df
    if notes is not None:
        notes.append(note.format(n=n))
    return df.filter(~rows)


def _left_out_groups(per_set: pl.DataFrame, lone: pl.Expr, notes: list[str] | None) -> pl.DataFrame:
    """``per_set`` without the ``lone`` sets (prompt groups of one text), said in a note that counts prompt
    groups: a set is one group within one row, and with ``--by role`` one group is a set in each role's row (one
    group of one sample where two roles speak was said as 2 prompt groups)."""
    if notes is not None:
        sets = per_set.filter(lone)
        if sets.height:
            n = sets.select("split", "step", "group").unique().height
            note = SINGLETONS_NOTE if n == sets.height else SINGLETONS_ROLES_NOTE
            notes.append(note.format(n=n, sets=sets.height))
    return per_set.filter(~lone)


def describe_rows(rows: pl.DataFrame, keys: Sequence[str], most: int = 3) -> str:
    """The rows (their values of ``keys``) in a few words, naming only rows that are there.

    Each key's values on their own (``split eval; step 0, 1, 2 (+5 more)``) where the rows are every
    combination of them; otherwise the rows by the values of all but the last key, each with its last key's
    values (``split eval, step 0; split train, step 1``): the rows (eval, 0) and (train, 1) said per key as
    ``split eval, train; step 0, 1`` read as if (train, 0) were one of them too."""
    if not keys:
        return f"{rows.height} row(s)"
    rows = rows.select(keys).unique(maintain_order=True)
    per_key = [rows[k].unique(maintain_order=True).to_list() for k in keys]
    if rows.height == math.prod(len(v) for v in per_key):
        return "; ".join(f"{k} {_listed(_values(k, v), most)}" for k, v in zip(keys, per_key, strict=True))
    *outer, last = keys
    heads = rows.select(outer).unique(maintain_order=True)
    parts = []
    for head in heads.head(most).iter_rows(named=True):
        these = rows.filter(*[pl.col(k).eq_missing(v) for k, v in head.items()])[last].to_list()
        said = [f"{k} {_values(k, [v])[0]}" for k, v in head.items()]
        parts.append(", ".join([*said, f"{last} {_listed(_values(last, these), most)}"]))
    rest = rows.height - rows.join(heads.head(most), on=outer, how="semi", nulls_equal=True).height
    return "; ".join(parts) + (f" (+{rest} more row(s))" if rest else "")


# A row's empty key in words: the texts of no prompt group, of no speaker (``None`` read as a value named None).
_EMPTY_KEY = {"group": "(no group id or prompt)", "role": "(no speaker)"}


def _values(key: str, values: Sequence[Any]) -> list[Any]:
    """A key's values as a note says them: an empty one (null) in words (``_EMPTY_KEY``)."""
    return [_EMPTY_KEY.get(key, "(none)") if v is None else v for v in values]


def _listed(values: Sequence[Any], most: int) -> str:
    """``0, 1, 2 (+5 more)``."""
    more = f" (+{len(values) - most} more)" if len(values) > most else ""
    return ", ".join(str(v) for v in values[:most]) + more


def _rows_without_a_group_of_two(
    frame: pl.DataFrame, keys: list[str], set_keys: list[str]
) -> tuple[pl.DataFrame, bool]:
    """The rows (values of ``keys``) where no prompt group (a set of ``set_keys`` with a group id) holds two
    texts or more: within-group figures there would be single texts'; and whether that is every row. Decided
    per row, so that a split whose groups are single samples (an eval) falls back while the train groups
    beside it do not."""
    rows = frame.select(keys).unique(maintain_order=True) if keys else pl.DataFrame({"__all": [True]})
    big = frame.filter(pl.col("group").is_not_null()).group_by(set_keys).len().filter(pl.col("len") >= 2)
    if not keys:
        whole = rows.head(0) if big.height else rows
    else:
        whole = rows.join(big.select(keys).unique(), on=keys, how="anti", nulls_equal=True)
    return whole, whole.height == rows.height


def _marked(df: pl.DataFrame, whole: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """``df`` with ``__whole``: whether its row (``keys``) is one of ``whole``'s."""
    mark = whole.with_columns(pl.lit(True).alias("__whole"))
    joined = df.join(mark, on=keys, how="left", nulls_equal=True, maintain_order="left")
    return joined.with_columns(pl.col("__whole").fill_null(False))


def _metric_schema(cols: list[str], over: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"groups": pl.UInt32} if over == "group" else {}
    schema.update({c: (pl.Int64 if c == "texts" else pl.Float64) for c in cols})
    return schema


PER_SAMPLE_COLUMNS = ("step", "split", "sample_id", "role", "turn", "score", "passed", "failed_rule")


def format_per_sample(
    run: Run,
    spec: str | F.Spec = "think-answer-strict",
    *,
    text: str = "auto",
    filters: Filters | None = None,
    known_tools: Sequence[str] | None = None,
    per_role: bool = False,
    skipped: SkippedTexts | None = None,
    notes: list[str] | None = None,
) -> pl.DataFrame:
    """One row per text, in run order: ``step, split, sample_id, role, turn, score, passed, failed_rule``,
    the think/answer token counts, and one boolean column per rule (``rule:<name>``). ``skipped``: filled with
    the samples that have no text, per ``step, split, role``, from the same read; ``notes``: what the rows leave
    out is said there (``--text messages`` with a text spec: the tool calls without words; a spec's roles that
    speak in none of the messages read, ``_check_spec_roles``).

    A spec with ``roles`` reads, under ``auto`` and ``assistant``, each role's own text (as ``per_role``: under
    ``auto`` the policy's text has a null role, which no ``roles`` list names), and keeps its roles' texts. Where
    none of its roles speaks in the messages read, ``SpecRolesError``."""
    given = spec if isinstance(spec, str) else spec.name  # as the user gave it: a custom spec's file
    spec = F.get_spec(spec) if isinstance(spec, str) else spec
    if spec.roles is not None and not spec.needs_messages:
        if text in NO_SPEAKER_TEXTS:
            raise UsageError(
                f"--spec {spec.name} keeps the texts of the roles {', '.join(spec.roles)}; --text {text} has no "
                "speaker: use --text auto, auto+reasoning, assistant, role:NAME or messages"
            )
        per_role = per_role or text in ("auto", "auto+reasoning", "assistant")
    # Tool calls are parts of messages: every text choice reads the messages (``role:NAME``: that speaker's); a
    # turn's text alone has no structured calls to check.
    keys = ["step", "split", "role"]
    calls = spec.needs_messages
    # A sample with no text of the kind asked for (a rollout that failed before the policy spoke, a speaker
    # absent from it) has nothing to check: it is left out, not counted as a failure (as diversity does).
    checked = _has_text()
    wanted = pl.lit(True) if spec.roles is None else pl.col("role").is_in(list(spec.roles)).fill_null(False)
    wordless = not calls and text == "messages"
    if calls:  # message rows: a message of tool calls without words is checked too
        checked |= pl.col("tool_calls").is_not_null()
    elif wordless:  # a text spec: a message of tool calls without words has no text to check (a reply without
        checked &= ~_wordless_call()  # words and without a call is the model's empty text: checked, and fails)
    checked &= wanted
    if calls:
        # Only the model speaks in tool calls: the prompt, system, developer and tool-result messages are not
        # checked (by the message's own role: a tool result's name is its tool's, not a speaker's).
        checked &= ~pl.col("message_role").str.to_lowercase().is_in(NOT_MODEL_ROLES).fill_null(False)
    frame = _texts_counted(
        run, text, filters, keys, skipped, with_group=False, per_role=per_role, calls=calls, checked=checked
    )
    if spec.roles is not None and not text.startswith("role:"):
        # ``role:NAME`` reads one speaker, whatever else speaks: a spec's roles that leave it out are said by the
        # command (``check.check_text_role``). None of the roles speaking is an error; some of them, a note.
        roles_note = _check_spec_roles(run, spec, given, frame, filters)
        if roles_note is not None and notes is not None:
            notes.append(f"--spec {given}: {roles_note}")
    if wordless:  # said, as diversity says them
        frame = _left_out(frame, _wordless_call() & wanted, WORDLESS_NOTE, notes)
    frame = frame.filter(checked)
    if notes is not None and frame.height:
        notes += [x for x in [role_note(run, text)] if x]
    if spec.needs_messages and known_tools is not None and notes is not None:
        notes += [x for x in [unknown_tools_note(frame, known_tools)] if x]
    res = _tool_calls(frame, known_tools) if spec.needs_messages else F.evaluate(frame["text"], spec)
    t = pl.col("text").fill_null("")
    lengths = frame.select(
        F.section_tokens(t, "think").alias("think_tokens"), F.section_tokens(t, "answer").alias("answer_tokens")
    )
    base = frame.select("step", "split", "sample_id", "role", "turn")
    return pl.concat([base, res, lengths], how="horizontal").select(
        *PER_SAMPLE_COLUMNS, "think_tokens", "answer_tokens", pl.col("^rule:.*$")
    )


class SpecRolesError(UsageError):
    """None of a format spec's ``roles`` speaks in a message of what is read (a typo, ``solvr``; the split or
    steps read): there is no text to check, and the table would be empty without a word. ``reason``: the message
    without its ``--spec NAME:`` (doctor and report say it under ``--set format_spec``)."""

    def __init__(self, given: str, reason: str) -> None:
        super().__init__(f"--spec {given}: {reason}")
        self.reason = reason


# Speakers named in ``SpecRolesError``'s message, at most.
SPEAKERS_SAID = 8


class _Speakers(NamedTuple):
    """Who speaks where (``_speakers``): ``read``, the speakers of the samples the filters keep, in order of first
    appearance; ``elsewhere``, for each speaker of the run's other samples, the splits it speaks in there, and
    whether at steps of a split that is read (outside ``--steps``); ``where``, what is read in words."""

    read: list[str]
    elsewhere: dict[str, list[str]]
    where: str


def _check_spec_roles(run: Run, spec: F.Spec, given: str, frame: pl.DataFrame, filters: Filters | None) -> str | None:
    """A spec whose roles speak in no message of what ``filters`` read (the split(s) and steps) is a usage error
    (``SpecRolesError``, with a near name), as ``--text role:NAME`` that reads no message is: no text to check.
    Where some of its roles speak and others do not (a judge that speaks in the eval split only, a typo beside a
    right name), the figures are those that speak, and the words returned say which roles have no text, with a
    near name and where else in the run they speak (``SPEC_ROLES_NOTE``); None where every role speaks. The
    speakers of ``frame`` (the texts read, before the spec keeps its roles') are looked at first: where every
    role is among them nothing more is read; else the run's messages are read for their speakers
    (``speaker_label``: the ``role`` a text of theirs has). The words (without the option's name: ``--spec NAME:``
    goes before them) are kept in ``run.ctx.cache`` for ``series_roles_note`` (doctor, report), which reads
    nothing again."""
    assert spec.roles is not None
    filters = filters or Filters()
    key = _roles_key(spec.roles, filters)
    if "role" in frame.columns:
        seen = set(frame["role"].drop_nulls().to_list())
        if all(r in seen for r in spec.roles):
            run.ctx.cache[key] = None
            return None
    heard = _speakers(run, filters)
    missing = [r for r in spec.roles if r not in heard.read]
    named = [f"{r!r}{did_you_mean(r, heard.read)}" for r in missing]
    listed = ", ".join(named[:-1]) + f" and {named[-1]}" if len(named) > 1 else "".join(named)
    one = len(missing) == 1
    # Where else each role speaks: a speaker of another split, or of steps --steps leaves out, is no typo.
    others = [f"{r!r} speaks {_and(heard.elsewhere[r])}" for r in missing if r in heard.elsewhere]
    also = f" ({'; '.join(others)})" if others else ""
    if len(missing) == len(spec.roles):
        shown = ", ".join(heard.read[:SPEAKERS_SAID]) + (" …" if len(heard.read) > SPEAKERS_SAID else "")
        there = (
            f"the messages there are spoken by {shown} (as --by role labels them)"
            if heard.read
            else "the samples there have no messages, so no text has a speaker"
        )
        raise SpecRolesError(
            given,
            f"its roles name {listed}, {'who speaks' if one else 'who speak'} in no message of {heard.where}{also}: "
            f"no text of {'that role' if one else 'theirs'} to check; {there}",
        )
    if not missing:
        run.ctx.cache[key] = None
        return None
    spoken = [r for r in spec.roles if r not in missing]
    note = SPEC_ROLES_NOTE.format(
        listed=listed,
        verb="speaks" if one else "speak",
        where=heard.where,
        also=also,
        theirs="its" if one else "their",
        spoken=", ".join(spoken),
    )
    run.ctx.cache[key] = note
    return note


SPEC_ROLES_NOTE = (
    "its roles name {listed}, who {verb} in no message of {where}{also}: {theirs} texts are "
    "not in the figures, which are those of {spoken}"
)


def _roles_key(roles: Sequence[str], filters: Filters) -> str:
    """The key of ``_check_spec_roles``'s words in ``run.ctx.cache``."""
    return f"spec_roles:{list(roles)!r}:{filters!r}"


def _and(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else "".join(items)


def _speakers(run: Run, filters: Filters) -> _Speakers:
    """The speakers (``speaker_label``) of every message of the run's samples, those ``filters`` keep (their
    split(s) and steps) apart from the others (``_Speakers``), in one read of the messages."""
    e = pl.element()
    label = speaker_label(e.struct.field("name"), e.struct.field("role"))
    kept = pl.lit(True)
    if filters.splits:
        kept &= pl.col("split").is_in(list(filters.splits)).fill_null(False)
    steps = filters.steps.expr()
    if steps is not None:
        kept &= steps.fill_null(False)

    def build() -> list[pl.LazyFrame]:  # built again after a file is left out (``Run.collect``)
        said = pl.col("messages").list.eval(label).alias("speaker")
        rows = run.samples.select(pl.col("split").cast(pl.String), kept.alias("__kept"), said)
        return [rows.explode("speaker").filter(pl.col("speaker").is_not_null()).unique(maintain_order=True)]

    [df] = run.collect(build)
    read = [str(x) for x in df.filter(pl.col("__kept"))["speaker"].unique(maintain_order=True).to_list()]
    splits = list(filters.splits) or run_splits(run)
    elsewhere: dict[str, list[str]] = {}
    for split, speaker in (
        df.filter(~pl.col("__kept") & ~pl.col("speaker").is_in(read)).select("split", "speaker").iter_rows()
    ):
        if split in splits and not filters.steps.unbounded:
            place = f"at steps of split {split} outside --steps {filters.steps.shown}"
        else:
            place = f"in split {split}" if split is not None else "in samples of no split"
        if place not in elsewhere.setdefault(str(speaker), []):
            elsewhere[str(speaker)].append(place)
    where = f"split{'s' if len(splits) > 1 else ''} {', '.join(splits)}" if splits else "the run"
    if not filters.steps.unbounded:
        where += f" at steps {filters.steps.shown}"
    return _Speakers(read, elsewhere, where)


def _tool_calls(frame: pl.DataFrame, known: Sequence[str] | None) -> pl.DataFrame:
    """tool-call-json per message; messages of other speakers than the assistant/a named agent count too
    only when they carry tool calls or a ``<tool_call>`` in their text. ``failed_rule`` is the first rule a
    call breaks; ``rule:<name>`` (one per ``F.TOOL_CALL_RULES``) holds where no call of the message breaks it."""
    calls = frame["tool_calls"].to_list() if "tool_calls" in frame.columns else [None] * frame.height
    scores, failed = [], []
    for c, content in zip(calls, frame["text"].to_list(), strict=True):
        s, f = F.tool_call_failures(c, content, known)
        scores.append(s)
        failed.append(f)
    return pl.DataFrame(
        {
            "score": pl.Series(scores, dtype=pl.Float64),
            "passed": pl.Series([not f for f in failed], dtype=pl.Boolean),
            "failed_rule": pl.Series([f[0] if f else None for f in failed], dtype=pl.String),
            **{f"rule:{r}": pl.Series([r not in f for f in failed], dtype=pl.Boolean) for r in F.TOOL_CALL_RULES},
        }
    )


def unknown_tools_note(frame: pl.DataFrame, known: Sequence[str], most: int = 6) -> str | None:
    """``--tools`` that names none of the tools the checked messages call (``frame``: their rows, with
    ``tool_calls``): every named call then fails as ``unknown_tool``, which reads as a model calling unknown tools
    where the list may be the typo (``pythn``). Says so, with the tools called (the most first, with their calls)
    and a name of the list that is near one of them; None where some tool called is listed, or no call names one."""
    if "tool_calls" not in frame.columns or not frame.height:
        return None
    names = frame.select(pl.col("tool_calls").explode().struct.field("name").cast(pl.String).alias("n"))
    called = names.filter(pl.col("n").is_not_null() & (pl.col("n") != "")).group_by("n").len()
    if not called.height or called.filter(pl.col("n").is_in(list(known))).height:
        return None
    called = called.sort(["len", "n"], descending=[True, False])
    listed = ", ".join(f"{n} ({k:,})" for n, k in called.head(most).iter_rows())
    more = f" (+{called.height - most} more)" if called.height > most else ""
    hints = [f"{k!r} is never called{did_you_mean(k, called['n'].to_list())}" for k in known]
    hints = [h for h in hints if "did you mean" in h]
    return (
        f"--tools {','.join(known) or '(none)'}: none of the tools the checked messages call is listed, so each of "
        f"their {int(called['len'].sum()):,} named call(s) fails as unknown_tool; the tools called are {listed}{more}"
        + (f"; {'; '.join(hints)}" if hints else "")
    )


def format_frame(
    run: Run,
    spec: str | F.Spec = "think-answer-strict",
    by: Sequence[str] = ("step",),
    *,
    text: str = "auto",
    filters: Filters | None = None,
    known_tools: Sequence[str] | None = None,
    split_key: bool = True,
    skipped: SkippedTexts | None = None,
    notes: list[str] | None = None,
) -> pl.DataFrame:
    """Per row of ``by`` keys: ``texts, adherence`` (fraction passed), ``score_mean``, ``failed/<rule>``
    (texts whose first failing rule it is), ``think_tokens_mean, answer_tokens_mean`` and
    ``reasoning_answer_ratio`` (think tokens / answer tokens, summed over texts that have both blocks).
    ``skipped``: filled with the samples that have no text (``SkippedTexts.per_row(keys)`` gives them per row);
    ``notes``: what the figures leave out is said there (``format_per_sample``)."""
    keys = _check_keys(by, run if split_key else None, filters)
    if "group" in keys:
        raise UsageError("--by group is not available for format adherence; use step, role or split")
    per = format_per_sample(
        run,
        spec,
        text=text,
        filters=filters,
        known_tools=known_tools,
        per_role="role" in keys,
        skipped=skipped,
        notes=notes,
    )
    both = pl.col("think_tokens").is_not_null() & pl.col("answer_tokens").is_not_null()
    rules = [r for r in per["failed_rule"].unique().drop_nulls().sort().to_list()]
    agg = [
        pl.len().alias("texts"),
        pl.col("passed").cast(pl.Float64).mean().alias("adherence"),
        pl.col("score").mean().alias("score_mean"),
        pl.col("think_tokens").mean().cast(pl.Float64).alias("think_tokens_mean"),
        pl.col("answer_tokens").mean().cast(pl.Float64).alias("answer_tokens_mean"),
        (pl.col("think_tokens").filter(both).sum() / pl.col("answer_tokens").filter(both).sum())
        .cast(pl.Float64)
        .alias("reasoning_answer_ratio"),
        *[(pl.col("failed_rule") == r).sum().cast(pl.Int64).alias(f"failed/{r}") for r in rules],
    ]
    out = per.group_by(keys).agg(agg) if keys else per.select(agg)
    out = out.with_columns(
        pl.when(pl.col("reasoning_answer_ratio").is_infinite() | pl.col("reasoning_answer_ratio").is_nan())
        .then(None)
        .otherwise(pl.col("reasoning_answer_ratio"))
        .alias("reasoning_answer_ratio")
    )
    return out.sort(keys, nulls_last=True) if keys else out


# ---------------------------------------------------------------------------------------------------------
# What the figures cannot show by themselves: said in notes (``runlog metrics``, and doctor, plot and report)
# ---------------------------------------------------------------------------------------------------------
THINK_FEW = 0.02  # think tags in at most this share of the texts: "(almost) none"
# The texts read from turns, whose turns have a ``reasoning`` field to look at.
TURN_TEXTS = ("auto", "assistant", "messages")


def reasoning_note(
    run: Run,
    spec: str | F.Spec = "think-answer-strict",
    *,
    text: str = "auto",
    filters: Filters | None = None,
    command: str | None = None,
    measured: pl.DataFrame | None = None,
) -> str | None:
    """Why a spec that looks for ``<think>`` tags fails (almost) every text, when that is why: the tags are in at
    most ``THINK_FEW`` of the texts, while more than that many of the texts' turns hold their reasoning in the
    ``reasoning`` field (a server's reasoning parser moved it out of the content). None otherwise, and for the
    texts not read from turns. ``command``: the command to suggest (doctor, plot and report have no ``--text``),
    else ``--text auto+reasoning``. ``measured``: the spec's ``format_frame`` or ``format_per_sample`` of these
    texts, when at hand: where more than ``THINK_FEW`` of them pass, they have think tags, and the texts are not
    read again. The fix is offered only where it reads the same texts (``auto``: ``auto+reasoning`` is the same
    turn with its reasoning); for the other texts the note says what ``auto+reasoning`` would read instead."""
    counts = reasoning_counts(run, spec, text=text, filters=filters, measured=measured)
    if counts is None:
        return None
    n, tagged, held = counts.texts, counts.tagged, counts.held
    named = spec if isinstance(spec, str) else spec.name  # as given: a custom spec's file
    name = F.get_spec(spec).name if isinstance(spec, str) else spec.name
    said = (
        f"{name} looks for <think> tags: {tagged:,} of {n:,} texts have one, while {held:,} of them hold their "
        "reasoning in the turn's `reasoning` field instead (a server's reasoning parser, such as vLLM's "
        "--reasoning-parser, moves it out of the content): the adherence and think_tokens_mean measured are the "
        "content's alone. "
    )
    if text != "auto":
        # No text kind puts the reasoning back into these texts: auto+reasoning reads another turn (the policy's
        # last), which would measure other texts than the ones asked for.
        return said + (
            f"No --text puts it back into the texts of --text {text}: --text auto+reasoning does so only for the "
            "policy's last turn (the --text auto text), not for the texts read here; a spec without think tags "
            "checks the content as it is"
        )
    fix = f"{command} --spec {named} --text auto+reasoning" if command else "--text auto+reasoning"
    return said + (
        f"{fix} puts the reasoning back before the content as <think>…</think>; a spec without think tags checks "
        "the content as it is"
    )


class ReasoningCounts(NamedTuple):
    """``reasoning_counts``: the texts, those with a ``<think>`` tag, those whose turn holds reasoning in the
    ``reasoning`` field, and those with either (a text may have both)."""

    texts: int
    tagged: int
    held: int
    either: int


def reasoning_counts(
    run: Run,
    spec: str | F.Spec,
    *,
    text: str = "auto",
    filters: Filters | None = None,
    measured: pl.DataFrame | None = None,
) -> ReasoningCounts | None:
    """The texts, with a <think> tag, with reasoning in the field (and with either) where ``reasoning_note`` is
    due (see there), else None. Reasoning that is all encrypted (runlog's ``[redacted_thinking]`` mark) has no
    words: not counted as reasoning held in the field."""
    spec = F.get_spec(spec) if isinstance(spec, str) else spec
    if not spec.think or spec.needs_messages or not (text in TURN_TEXTS or text.startswith("role:")):
        return None
    if measured is not None and passed_share(measured) > THINK_FEW:
        return None
    per_role = spec.roles is not None and text in ("auto", "assistant")
    frame = texts_frame(run, text, filters=filters, with_group=False, per_role=per_role, reasoning=True)
    frame = frame.filter(pl.col("text").is_not_null())
    if spec.roles is not None:
        frame = frame.filter(pl.col("role").is_in(list(spec.roles)))
    n = frame.height
    tag = pl.col("text").str.contains("(?i)<think>")
    words = reasoning_written(pl.col("reasoning")).str.contains(F.NON_SPACE_CLASS).fill_null(False)
    tagged, held, either = (
        int(v or 0)
        for v in frame.select(tag.sum().alias("t"), words.sum().alias("h"), (tag | words).sum().alias("e")).row(0)
    )
    if not n or tagged > THINK_FEW * n or held <= THINK_FEW * n:
        return None
    return ReasoningCounts(n, tagged, held, either)


def same_rule_note(spec: str | F.Spec, measured: pl.DataFrame) -> str | None:
    """Where every text measured fails the spec, each at the same first rule (``open-r1``'s one ``pattern`` on
    texts written without its newlines): a table of adherence 0 at every step, which reads like a broken run or a
    broken tool where the spec and the texts' format do not meet. Says which rule, what it asks where that can be
    said in a few words (the built-in specs), and where to look. ``measured``: a ``format_frame`` (its
    ``texts`` and ``failed/<rule>`` columns) or a ``format_per_sample`` (``failed_rule``). None otherwise, and for
    a tool-call spec (``unknown_tools_note`` says the usual cause there)."""
    named = spec if isinstance(spec, str) else spec.name
    spec = F.get_spec(spec) if isinstance(spec, str) else spec
    if spec.needs_messages or not measured.height:
        return None
    if "failed_rule" in measured.columns:
        n = measured.height
        rules = measured["failed_rule"].unique().to_list()
        rule = rules[0] if len(rules) == 1 else None
    else:
        n = int(measured["texts"].sum() or 0)
        every = [c for c in measured.columns if c.startswith("failed/") and int(measured[c].sum() or 0) == n]
        rule = every[0].split("/", 1)[1] if every else None
    if not n or rule is None:
        return None
    return (
        f"every text ({n:,}) fails {named} at the same first rule, {rule}{_RULE_SAID.get((spec.name, rule), '')}: "
        "the texts may be written in another format than the spec's (--per-sample gives each text's rules; "
        "docs/metrics.md describes each spec)"
    )


# What a built-in spec's rule asks, in a few words, for ``same_rule_note``.
_RULE_SAID: dict[tuple[str, str], str] = {
    ("open-r1", "pattern"): (
        " (its regex wants the text to start at <think> and each tag on a line of its own: "
        "<think>\\n…\\n</think>\\n<answer>\\n…\\n</answer>)"
    ),
    **{
        ("open-r1-tags", name): f" (the string {tag!r} exactly once, its newlines included)"
        for name, tag in F.OPEN_R1_TAGS
    },
    ("trl-think", "pattern"): " (the text must start with <think>, close it with </think>, and open no other)",
}


def passed_share(measured: pl.DataFrame) -> float:
    """The share of texts that pass, over every row of a ``format_frame`` (its ``adherence`` weighted by its
    ``texts``) or a ``format_per_sample`` (its ``passed``); 0 without texts."""
    if "passed" in measured.columns:
        passed, texts = measured["passed"].cast(pl.Float64), pl.Series([measured.height], dtype=pl.Float64)
    else:
        passed, texts = measured["adherence"].fill_null(0) * measured["texts"], measured["texts"].cast(pl.Float64)
    total = float(texts.sum())
    return float(passed.sum()) / total if total else 0.0


def no_text_note(run: Run, text: str, *, filters: Filters | None = None, command: str | None = None) -> str | None:
    """Why no sample has a text of a kind read from assistant turns (``auto``, ``auto+reasoning``, ``assistant``,
    ``answer``) when samples have messages: none of their messages is an assistant turn (a role of
    ``chat.MODEL_ROLES``); their speakers named (a speaker in the role field, ``{"role": "agent_0"}``), with what
    reads them (``--text role:NAME``, ``--text completion``). None when that is not why. ``command``: the command
    to suggest (doctor, plot and report have no ``--text``)."""
    if text not in ("auto", "auto+reasoning", "assistant", "answer"):
        return None
    lf = apply_filters(run.samples, filters or Filters(), roles_too=False)
    chat = pl.col("role").cast(pl.String).str.to_lowercase()

    def build() -> list[pl.LazyFrame]:
        every = (
            lf.select("messages", "prompt_turns")
            .filter(pl.col("messages").list.len() > 0)
            .with_columns(
                pl.int_range(pl.len(), dtype=pl.Int64).alias("__sample"),
                pl.int_ranges(0, pl.col("messages").list.len()).alias("__index"),
            )
            .explode("messages", "__index")
            .with_columns(_generated(pl.col("__index")).alias("__generated"))
            .unnest("messages")
        )
        turns = every.filter(pl.col("__generated"))  # the turns the texts are read from
        return [
            lf.select(
                (pl.col("messages").list.len().fill_null(0) > 0).sum().alias("with"),
                (pl.col("completion").cast(pl.String).fill_null("") != "").sum().alias("completions"),
            ),
            turns.select(chat.is_in(MODEL_ROLES).sum().alias("model")),
            # The samples whose assistant turns are all the prompt's (a few-shot example): not read.
            every.filter(~pl.col("__generated") & chat.is_in(MODEL_ROLES)).select(
                pl.col("__sample").n_unique().alias("prompt")
            ),
            turns.filter(~chat.is_in(MODEL_ROLES) & ~chat.is_in(NOT_MODEL_ROLES) & pl.col("role").is_not_null())
            .group_by(pl.col("role").cast(pl.String))
            .agg(pl.len().alias("__n")),
        ]

    counts, model, prompt, speakers = run.collect(build)
    with_messages, completions = int(counts["with"][0] or 0), int(counts["completions"][0] or 0)
    if not with_messages or int(model["model"][0] or 0):
        return None
    in_prompt = int(prompt["prompt"][0] or 0)
    names = speakers.sort(["__n", "role"], descending=[True, False])["role"].to_list()
    roles = run.role_names()
    told = (
        f"their speakers are {', '.join(names[:6])}{' …' if len(names) > 6 else ''}, written in the messages' role "
        "field" + (f" (the run's roles are {', '.join(roles)})" if roles and not set(names) & set(roles) else "")
        if names
        else "they hold only prompt, system and tool messages"
        if not in_prompt
        else "their other messages are prompt, system and tool messages"
    )
    if in_prompt:
        # The assistant turns are there, but in the prompt (``prompt_turns``): not "no assistant turn".
        told = (
            f"the assistant turns of {in_prompt:,} of them are their prompt's (the first prompt_turns messages, "
            f"such as a few-shot example), which the policy did not generate and which are not read; {told}"
        )
        where = " after their prompt"
    else:
        where = ""
    ways = [f"--text {shlex.quote('role:' + names[0])} (that speaker's turns)"] if names else []
    if completions:
        ways.append("--text completion (the completion column as written)")
    how = ""
    if ways and command:
        how = f"; {command} {' or '.join(ways)} reads them"
    elif ways:
        how = f"; try {' or '.join(ways)}"
    what = "the policy's text (metrics' --text auto) to measure" if command else f"a text for --text {text}"
    return (
        f"no sample has {what}: the {with_messages:,} sample(s) with messages have no assistant turn{where} (a "
        f"message whose role is {MODEL_ROLE_WORDS}), the only turns it reads; {told}{how}"
    )


def _speaker_words(name: str | None) -> str:
    return "the model turns without a name" if name is None else name


def policy_note(
    run: Run,
    text: str = "auto",
    *,
    command: str | None = None,
    filters: Filters | None = None,
    found: bool = True,
) -> str | None:
    """Whose turns are the policy's (``policy_speaker``), where the run has more than one model speaker, or a
    model speaker whose every turn is a tool call without words (which does not vote): the one elected, how many
    samples it opens of how many voted (those with a model turn with text, in the files read for the election:
    a count of the samples read to elect it, not of the run's or the split's), the others' counts, the tie rule
    where it chose, and what reads another speaker. ``found``: whether the texts read hold any; where they hold
    none the note is due even with one speaker (it is then what the reader most needs): it says so, with the model
    speakers that do have a turn with text in the samples ``filters`` keep and what reads them. None where no
    model turn has text at all (``no_text_note`` and the notes of the samples skipped say why), or with one
    speaker and texts found. ``text``: the text kind read (``auto``, ``auto+reasoning``, ``answer``: each reads
    the policy's turns). ``command``: the command to suggest (doctor, plot and report have no ``--text``; their
    figures per role read each role's own turns)."""
    p = policy_speaker(run)
    if not p.found or (found and len(p.speakers) < 2 and not p.silent):
        return None
    where = "train samples" if p.train else "samples"
    counts = "; ".join(f"{_speaker_words(n)} {k:,}" for n, k in p.opens[1:])
    voted = f"the {p.samples:,} {where} with a model turn with text"
    if p.files is not None:
        read, of = p.files
        kind = "train sample files" if p.train else "sample files"
        voted += f" in the {read:,} of its {of:,} {kind} read to elect it, spread over the steps"
    opened = f"{'they open' if p.name is None else 'it opens'} {p.opens[0][1]:,} of {voted}"
    verb = "which speak" if p.name is None else "the model speaker that speaks"
    reader = "format adherence and diversity per step read" if command else f"--text {text} reads"
    said = f"{reader} the policy's turns: {_speaker_words(p.name)}, {verb} first in most {where} ({opened}"
    said += f"; {counts})" if counts else ")"
    if p.tied:
        said += (
            ", a tie, which goes to a named speaker before the turns without a name, then to the first name in "
            "alphabetical order"
        )
    if p.name is not None and None in p.speakers:
        said += "; the turns without a name count as its own only in samples where no model turn names its speaker"
    if p.silent:
        silent = ", ".join(_speaker_words(n) for n in p.silent)
        said += f"; {silent} made only tool calls without words there (no text to read, so no vote)"
    if len(p.speakers) > 1:
        others = ", ".join(_speaker_words(n) for n in p.speakers[1:])
        how = (
            f"{command} --text role:NAME reads one"
            if command
            else "--text role:NAME reads one, --by role each one's own"
        )
        said += f"; the other model speakers ({others}) are not read there ({how})"
    if found:
        return said
    said += f"; no sample read has a turn of {_speaker_words(p.name)} with text"
    having = [(n, k) for n, k in _speakers_with_text(run, filters) if n != p.name]
    if having:
        listed = ", ".join(f"{_speaker_words(n)} ({k:,} sample(s))" for n, k in having[:6])
        named = [n for n, _ in having if n is not None]
        ways = [f"--text {shlex.quote('role:' + named[0])} reads {named[0]}'s turns"] if named else []
        if any(n is None for n, _ in having):
            ways.append("--text assistant reads every model turn")
        said += (
            f"; the model speakers with one there: {listed}{' …' if len(having) > 6 else ''}; "
            f"{(command + ' ') if command else ''}{' or '.join(ways)}"
        )
    return said


def _speakers_with_text(run: Run, filters: Filters | None) -> list[tuple[str | None, int]]:
    """The model speakers with a generated turn with text (``_voiced``) in the samples ``filters`` keep, each with
    how many samples it has one in, the most first (then by name, the turns without a name last)."""

    def build() -> list[pl.LazyFrame]:  # built again after a file is left out (``Run.collect``)
        lf = apply_filters(run.samples, filters or Filters(), roles_too=False)
        return _election_counts(lf.select("split", "prompt_turns", "messages"))[1:2]

    [voiced] = run.collect(build)
    per = voiced.group_by("name").agg(pl.col("samples").sum()).iter_rows()
    return sorted(((n, int(k)) for n, k in per), key=lambda nk: (-nk[1], nk[0] is None, nk[0] or ""))


def series_policy_note(s: RunSeries) -> str | None:
    """``policy_note`` for doctor, plot and report (their format adherence and diversity per step read the
    policy's turns; diversity per role each role's own), added once to ``s.scope_notes``: what was read, which
    has no bearing on the run's health (``s.notes`` are checks that could not run)."""
    run = getattr(s, "text_run", s.run)
    note = policy_note(run, command="runlog metrics diversity|format RUN")
    if note is not None and note not in s.scope_notes:
        s.scope_notes.append(note)
    return note


def answer_note(run: Run, *, filters: Filters | None = None) -> str | None:
    """``--text answer``: how many of its texts are the ``completion`` column as written, the policy's text
    having no ``<answer>`` block (they are then mixed with the answers taken from a block). None when none is."""
    auto, answer = (texts_frame(run, t, filters=filters, with_group=False) for t in ("auto", "answer"))
    both = pl.DataFrame({"auto": auto["text"], "answer": answer["text"]})
    taken = both.filter(pl.col("answer").is_not_null())
    fell = taken.select((~pl.col("auto").str.contains(_ANSWER)).sum()).item() or 0
    if not fell:
        return None
    return (
        f"--text answer: {fell:,} of {taken.height:,} texts are the completion column as written (the policy's text "
        "has no <answer> block), beside the answers taken from a block; --text auto reads the policy's whole text"
    )


def by_role_note(text: str) -> str | None:
    """``--by role`` with a text kind that has no speaker: its texts are in one row whose role is empty."""
    if text not in NO_SPEAKER_TEXTS:
        return None
    return (
        f"--by role: --text {text} has no speaker, so its texts are in one row whose role is empty; --text auto, "
        "auto+reasoning, assistant, role:NAME or messages give each speaker its own rows"
    )


def series_text_note(s: RunSeries) -> str | None:
    """``no_text_note`` for the text series of doctor, plot and report (``auto``, one split), added to ``s.notes``
    once: why they found no text, when the samples' messages tell why. None when they have texts."""
    if s.diversity is not None:
        return None
    run = getattr(s, "text_run", s.run)  # the report's twin (report.ReportSeries): its text reads
    return _said_once(s, no_text_note(run, "auto", filters=s.filters, command="runlog metrics diversity|format RUN"))


def series_format_note(s: RunSeries) -> str | None:
    """``reasoning_note`` for the format series of doctor, plot and report (``format_spec`` over ``auto``, one
    split), added to ``s.notes`` once; looked for only where at most ``THINK_FEW`` of the texts pass."""
    fmt = s.format
    if fmt is None:
        return None
    run = getattr(s, "text_run", s.run)
    command = "runlog metrics format RUN"
    return _said_once(s, reasoning_note(run, s.format_spec, filters=s.filters, command=command, measured=fmt))


def series_roles_note(s: RunSeries) -> str | None:
    """For the format series of doctor and report (``format_spec`` over ``auto``, one split): the spec's roles
    that speak in none of its messages while others do (``_check_spec_roles``: the figures are those of the roles
    that speak), said under ``--set format_spec`` and added to ``s.notes`` once. Read when ``s.format`` was
    (kept in ``run.ctx.cache``); ``s.format`` raises ``SpecRolesError`` where none of them speaks."""
    if s.format is None:
        return None
    spec = F.get_spec(s.format_spec)
    if spec.roles is None or spec.needs_messages:
        return None
    run = getattr(s, "text_run", s.run)
    key = _roles_key(spec.roles, s.filters)
    if key in run.ctx.cache:
        reason = run.ctx.cache[key]
    else:  # not read there (another run object): read now
        reason = _check_spec_roles(run, spec, s.format_spec, pl.DataFrame(), s.filters)
    return _said_once(s, f"--set format_spec={s.format_spec}: {reason}" if reason else None)


def drift_reasoning(s: RunSeries, onset: int, before: float, drop: float) -> tuple[str, dict[str, int]] | None:
    """For a format drift the doctor found from step ``onset`` on (``format_spec`` over ``auto``, adherence
    ``before`` it): whether, over the steps from the onset on, the texts lost their think tags because the
    reasoning moved to the turns' ``reasoning`` field (``reasoning_counts``, as ``series_format_note`` checks the
    whole split): the message shape changed (a reasoning parser turned on, the logger writing thinking parts),
    which the model's format may not have. That is said to explain the fall only where it can: where the texts
    with a tag or reasoning in the field are about as many as passed before (short of it by less than ``drop``,
    the fall that makes a finding); else the words give the counts (the shape changed for N of M texts, the others
    have no reasoning at all), as putting the reasoning back would still leave a fall. Returns the words for the
    finding, with the command that reads the reasoning back, and the counts for its evidence; None when that is
    not why."""
    fmt = s.format
    run = getattr(s, "text_run", s.run)
    after = Filters(splits=s.filters.splits, steps=StepRange(onset, None), roles=s.filters.roles)
    measured = fmt.filter(pl.col("step") >= onset) if fmt is not None else None
    counts = reasoning_counts(run, s.format_spec, filters=after, measured=measured)
    if counts is None:
        return None
    n, tagged, held, either = counts
    back = f"runlog metrics format RUN --spec {s.format_spec} --text auto+reasoning --by step puts it back"
    said = f"from then on {tagged:,} of {n:,} texts have a <think> tag and {held:,} hold their reasoning in the turn's "
    if before - either / n < drop:
        words = said + (
            f"`reasoning` field: the message shape changed (a reasoning parser, thinking parts), maybe not the format "
            f"({back})"
        )
    else:
        words = said + (
            f"`reasoning` field: the message shape changed for those {held:,} of {n:,} (a reasoning parser, thinking "
            f"parts), which does not explain the whole fall: the other {n - either:,} have no reasoning, in a tag or "
            f"in the field ({back} for those {held:,})"
        )
    return words, {"from_step": onset, "texts": n, "think_tagged": tagged, "reasoning_in_field": held}


def _said_once(s: RunSeries, note: str | None) -> str | None:
    if note is not None and note not in s.notes:
        s.notes.append(note)
    return note
