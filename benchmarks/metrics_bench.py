"""Benchmark ``runlog metrics`` against the reference implementations, on the same texts in the same run.

    python benchmarks/metrics_bench.py --sizes 20000 200000 [--million] [--markdown]

Data: synthetic completions of ~100 whitespace tokens (Zipf-distributed vocabulary of 50,000 words) in
prompt groups of 20; a third of each group repeats one answer with small edits (near-duplicates), and the
texts carry think/answer tags with a mix of format errors.

Peers: nltk ``sentence_bleu`` (Texygen Self-BLEU, each text against the other texts of its set),
DialoGPT's ``cal_entropy`` (distinct-n, entropy), the ``diversity`` package's ``self_repetition_score``,
and the original open-r1 / TRL reward functions for the format specs. Where a peer would take hours
(per group on 200,000 texts, or an O(n^2) whole-set Self-BLEU), it is timed on a measured subset and
extrapolated: linearly in the number of groups, quadratically in the size of a whole set. The table says
which numbers are extrapolated. Values are compared on every subset the peers ran on.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

from runlog.metrics import diversity as D
from runlog.metrics import format as F

GROUP = 20


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    out: list[str] = []
    for g in range(n // GROUP):
        base = vocab[rng.zipf(1.15, size=100) % 50_000]
        for k in range(GROUP):
            words = base.copy() if k < GROUP // 3 else vocab[rng.zipf(1.15, size=rng.integers(60, 140)) % 50_000]
            if k < GROUP // 3:
                words[rng.integers(0, len(words), 3)] = vocab[rng.integers(0, 50_000, 3)]
            body = " ".join(words)
            kind = (g + k) % 5
            if kind == 0:
                out.append(f"<think>\n{body}\n</think>\n<answer>\n{k}\n</answer>")
            elif kind == 1:
                out.append(f"<think>\n{body}\n</think>\n<answer>\n{k}\n</answer>\ntrailing")
            elif kind == 2:
                out.append(f"<think>{body}</think><answer>{k}</answer>")
            elif kind == 3:
                out.append(body)
            else:
                out.append(f"<think>\r\n{body}\r\n</think>\r\n<answer>\r\n{k}\r\n</answer>")
    return out


# ---- peers -----------------------------------------------------------------------------------------------
def nltk_self_bleu(texts: list[str], n: int) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    toks = [t.split() for t in texts]
    sm = SmoothingFunction().method1
    w = tuple(1.0 / n for _ in range(n))
    s = [sentence_bleu(toks[:i] + toks[i + 1 :], toks[i], w, smoothing_function=sm) for i in range(len(toks))]
    return sum(s) / len(s)


def cal_entropy(generated):  # DialoGPT (MIT), verbatim
    etp_score = [0.0, 0.0, 0.0, 0.0]
    div_score = [0.0, 0.0, 0.0, 0.0]
    counter = [defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(int)]
    for gg in generated:
        g = gg.rstrip().split()
        for n in range(4):
            for idx in range(len(g) - n):
                ngram = " ".join(g[idx : idx + n + 1])
                counter[n][ngram] += 1
    for n in range(4):
        total = sum(counter[n].values()) + 1e-10
        for v in counter[n].values():
            etp_score[n] += -(v + 0.0) / total * (np.log(v + 0.0) - np.log(total))
        div_score[n] = (len(counter[n].values()) + 0.0) / total
    return etp_score, div_score


def self_repetition_ref():
    for p in sys.path:
        f = Path(p) / "diversity" / "self_repetition.py"
        if f.exists():
            spec = importlib.util.spec_from_file_location("_div_sr", f)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod.self_repetition_score
    return None


def open_r1(text: str) -> float:
    return (
        1.0 if re.match(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", text, re.DOTALL | re.MULTILINE) else 0.0
    )


def trl_think(text: str) -> float:
    return 1.0 if re.match(r"^<think>(?!.*<think>)(.*?)</think>.*$", text, re.DOTALL | re.MULTILINE) else 0.0


def tag_count(text: str) -> float:
    c = 0.0
    for s in ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>"):
        if text.count(s) == 1:
            c += 0.25
    return c


# ---- timing ----------------------------------------------------------------------------------------------
def timed(fn):
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def bench(n: int, rows: list[tuple], sample_groups: int, whole_subset: int) -> None:
    texts = make_texts(n)
    series = pl.Series(texts, dtype=pl.String)
    groups = np.arange(n, dtype=np.int64) // GROUP
    n_groups = n // GROUP
    t_group, per_group = timed(lambda: D.diversity_by_set(series, groups, n_groups))
    rows.append((n, "all n-gram metrics + Self-BLEU-2/3/4 + self-repetition, per group", "runlog", t_group, ""))
    t_whole, whole = timed(lambda: D.diversity_by_set(series, np.zeros(n, np.int64), 1))
    rows.append((n, "the same over the whole set (one set of n texts)", "runlog", t_whole, ""))
    # nltk Self-BLEU per group: measured on `sample_groups` groups, extrapolated to all.
    k = min(sample_groups, n_groups)
    worst = 0.0
    t0 = time.perf_counter()
    for g in range(k):
        ts = texts[g * GROUP : (g + 1) * GROUP]
        for order in (2, 3, 4):
            worst = max(worst, abs(nltk_self_bleu(ts, order) - per_group[f"self_bleu_{order}"][g]))
    t_nltk = (time.perf_counter() - t0) * n_groups / k
    note = f"extrapolated from {k} groups; max abs diff {worst:.1e}"
    rows.append((n, "Self-BLEU-2/3/4 per group", "nltk sentence_bleu", t_nltk, note))
    # DialoGPT cal_entropy per group.
    t0 = time.perf_counter()
    worst = 0.0
    for g in range(k):
        etp, div = cal_entropy(texts[g * GROUP : (g + 1) * GROUP])
        worst = max(worst, max(abs(div[i] - per_group[f"distinct_{i + 1}"][g]) for i in range(4)))
        worst = max(worst, max(abs(etp[i] - per_group[f"entropy_{i + 1}"][g]) for i in range(4)))
    t_ent = (time.perf_counter() - t0) * n_groups / k
    rows.append(
        (n, "distinct-1..4 + entropy-1..4 per group", "DialoGPT cal_entropy", t_ent, f"extrapolated; {worst:.1e}")
    )
    sr = self_repetition_ref()
    if sr is not None:
        t0 = time.perf_counter()
        worst = max(
            abs(float(sr(texts[g * GROUP : (g + 1) * GROUP], verbose=False)) - per_group["self_repetition"][g])
            for g in range(k)
        )
        t_sr = (time.perf_counter() - t0) * n_groups / k
        rows.append((n, "self-repetition per group", "diversity package", t_sr, f"extrapolated; {worst:.1e}"))
    # Whole-set nltk Self-BLEU is O(n^2): time two subset sizes and extrapolate quadratically.
    m = min(whole_subset, n)
    sub = texts[:m]
    t_sub, ref = timed(lambda: nltk_self_bleu(sub, 4))
    mine = D.self_bleu_n(sub, 4)
    t_whole_nltk = t_sub * (n / m) ** 2
    rows.append(
        (
            n,
            "Self-BLEU-4 over the whole set",
            "nltk sentence_bleu",
            t_whole_nltk,
            f"extrapolated (n^2) from {m} texts ({t_sub:.1f} s); abs diff {abs(ref - mine):.1e}",
        )
    )
    # Format specs: every text, measured in full.
    for name, ref_fn in (("open-r1", open_r1), ("trl-think", trl_think), ("open-r1-tags", tag_count)):
        t_ours, res = timed(lambda name=name: F.evaluate(series, F.BUILTIN[name]))
        t_ref, ref_scores = timed(lambda ref_fn=ref_fn: [ref_fn(t) for t in texts])
        same = res["score"].to_list() == ref_scores
        rows.append((n, f"format spec {name}", "runlog", t_ours, f"identical to the reference on all texts: {same}"))
        rows.append((n, f"format spec {name}", "reference function", t_ref, ""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    ap.add_argument("--sample-groups", type=int, default=50)
    ap.add_argument("--whole-subset", type=int, default=400)
    ap.add_argument("--million", action="store_true", help="also time 1,000,000 completions, per group")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows: list[tuple] = []
    for n in args.sizes:
        bench(n, rows, args.sample_groups, args.whole_subset)
    if args.million:
        texts = pl.Series(make_texts(1_000_000, seed=1), dtype=pl.String)
        groups = np.arange(texts.len(), dtype=np.int64) // GROUP
        t, _ = timed(lambda: D.diversity_by_set(texts, groups, texts.len() // GROUP))
        rows.append(
            (1_000_000, "all n-gram metrics + Self-BLEU + self-repetition, per group", "runlog", t, "target <= 60 s")
        )
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}, polars {pl.__version__}")
    if args.markdown:
        print("| texts | what | implementation | seconds | notes |")
        print("| ---: | --- | --- | ---: | --- |")
        for n, what, impl, t, note in rows:
            print(f"| {n:,} | {what} | {impl} | {t:.2f} | {note} |")
    else:
        for r in rows:
            print(f"{r[0]:>9,}  {r[1]:<70} {r[2]:<22} {r[3]:>10.2f}  {r[4]}")


if __name__ == "__main__":
    main()
