"""``runlog diff A B [C ...]``: did B beat A, for which role, from which step, and is it noise?

The first run is the baseline; every other run is compared with it, pair by pair, where both have data:

- **Alignment.** Per split, the steps both runs have (``check.steps_per_split``: file names and footers).
  A run logged every k steps is compared on the steps it shares with the other; the overlap is said in a
  note. Roles are matched by name (the null role, samples without per-role data, matches the null role).
- **Points.** Per split and role: the role's reward and KL at the *start* (the first ``window`` common
  steps), the *end* (the last ``window``) and the *best* point (each run's ``window`` consecutive common steps
  with the highest mean reward of that role), each the mean of the valid values over the samples of those
  steps (the numbers of ``summarize --by role --steps ...``: ±inf are values, so a mean over them is infinite
  or NaN, with no interval; rounding is no difference: ``bootstrap.valid_mean``), and the zero-advantage
  fraction of the role's
  prompt groups there (groups as ``summarize --prompt-groups`` finds them). The difference to the baseline
  has a percentile bootstrap confidence interval: the prompts of each run's window (a prompt's samples
  together, over every step of the window it was drawn at, as they share its difficulty: ``sides.clusters``;
  the prompt is its text, else its group id; the samples where neither is known, taken as independent, which
  a note says where a run has none) are resampled with replacement, independently, ``boot`` times, from a
  seeded generator, so that the same command prints the same interval. A difference whose interval lies above
  0 is ``ahead`` (``higher`` for KL and zero_adv_frac), below 0 ``behind`` (``lower``), else ``tie``; an end
  within rounding of the two means (``bootstrap.rounding``: a few ulps) is at 0, so round-off is never a verdict.
  A verdict beyond ``tie`` also needs a two-sample permutation test of the units at the same level
  (``bootstrap.backed_verdict``, its ``p_value`` shown): a percentile bootstrap of a few units is far too narrow,
  and fewer units than that test can ever find significant (3 and 3 at 95 %) get no verdict, with a note.
- **Paired.** Where both runs have prompt groups over the same prompts (the same prompt text, or where there
  is no text, or it is one the step's groups share, the same group id, unless the ids count a step's groups:
  ``sides.counters``; within the same split and step), the per-prompt difference of the role's
  mean reward over the end window, with a bootstrap interval over the prompts: differences between prompts
  cancel, so a paired interval is narrower. A difference within rounding of the prompt's two means is 0 (a tie).
  A paired verdict also needs an exact sign-flip test of the differences at the same level
  (``bootstrap.sign_flip_p``, its ``p_value`` shown): a percentile bootstrap of a few prompts is far too narrow,
  and fewer prompts than that test can ever find significant (6 at 95 %) get no paired verdict, with a note.
  Pairs that rest on a group id alone (no prompt text on either side
  to confirm it: ``g0..g7`` numbered before filtering dropped groups read as prompt names) are counted
  (``by_id``) and said in a note, and get no paired verdict: the unpaired one decides.
- **Onset.** Per common step, the Welch z of the difference of the role's mean rewards
  (``(mean_B - mean_A) / sqrt(deff_A sd_A^2 / n_A + deff_B sd_B^2 / n_B)``, ``deff`` the run's design effect of
  its prompt groups, measured on the windows: ``sides.design_effect``); B is ahead from the first step from which
  the z stays at or above the interval's normal quantile (1.96 for 95 %) stably: the doctor's onset rule
  (``changepoint.first_sustained`` with the doctor's ``persist`` and ``min_segment``). Behind likewise. A
  step where neither run has spread and the means differ has an infinite z: beyond any quantile, not missing.
- **Scalars.** Common scalar keys (``--keys`` globs), per-step values merged as ``summarize --scalars``
  merges them, at the start and the end, with a bootstrap interval over the window's steps.
- **Configs.** The recorded configs (``run.json`` ``config``; W&B-style ``{"value": ...}`` entries
  unwrapped, W&B's own ``_wandb`` entry left out), flattened to ``a/b`` keys: the keys that differ.
- **Text and findings** (opt-in: they read the texts, which costs many times a summary): diversity of each
  role's texts and format adherence at the start and the end, side by side; the doctor's findings of each
  run, matched by kind and role (``appears`` in the run, ``disappears`` from the baseline, ``both``).

What it costs: one pass over each run (per split, role and step: the reward's and KL's mean, SD and count,
numeric columns only, as lean as ``summarize``'s; from summarize's partial cache where it holds most steps),
then the samples of the few steps of the windows (one read of only their files, with their groups and the prompt
text: the units and the pairing), and the bootstrap (``bootstrap``: by value for columns of few values, else
one count matrix per run and column length); docs/benchmarks.md, "diff".

Modules: ``model`` (options, result, schemas), ``align`` (steps, roles, windows), ``sides`` (one run's reads),
``bootstrap``, ``compare`` (``diff_runs``), ``extras`` (scalars, configs, texts, findings), ``series`` (plots).
"""

from __future__ import annotations

from .bootstrap import bootstrap_means
from .compare import diff_runs, step_z
from .extras import TEXT_METRICS, flat_config, run_config, scalar_steps
from .model import DEFAULT_BOOT, DEFAULT_WINDOW, POINTS, Diff, DiffOptions
from .series import diff_series
from .sides import PER_STEP_COLUMNS

__all__ = [
    "DEFAULT_BOOT",
    "DEFAULT_WINDOW",
    "PER_STEP_COLUMNS",
    "POINTS",
    "TEXT_METRICS",
    "Diff",
    "DiffOptions",
    "bootstrap_means",
    "diff_runs",
    "diff_series",
    "flat_config",
    "run_config",
    "scalar_steps",
    "step_z",
]
