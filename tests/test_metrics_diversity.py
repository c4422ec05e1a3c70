"""Diversity metrics equal their reference implementations (nltk, the ``diversity`` package, DialoGPT's
``cal_entropy``) on generated sets: collapsed groups, near-duplicates, empty texts, unicode, long texts."""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from runlog import diversity_frame, open_run
from runlog.metrics import diversity as D
from runlog.metrics._tokens import WHITESPACE, tokenize

from conftest import native_rows, native_run_of, write_native_samples

nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
TOL = 1e-9


def _load_diversity_module(name: str):
    """The ``diversity`` package's own module file when the package is installed, else the verbatim copy in
    ``tests/reference/`` (the package pulls torch and transformers, too heavy for the test extra, and its
    ``__init__`` imports an undeclared spaCy, so the module files are loaded directly either way)."""
    candidates = [Path(p) / "diversity" / f"{name}.py" for p in sys.path]
    candidates.append(Path(__file__).parent / "reference" / f"diversity_{name}.py")
    for f in candidates:
        if f.exists():
            spec = importlib.util.spec_from_file_location(f"_diversity_{name}", f)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
    pytest.skip("no copy of the diversity package's module found")


# DialoGPT (github.com/microsoft/DialoGPT, dstc/metrics.py / data_loader), MIT licence: copied verbatim.
def cal_entropy(generated):
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


def nltk_self_bleu(texts: list[str], n: int) -> tuple[float, list[float]]:
    """Texygen's SelfBleu.get_bleu_parallel semantics: each text against all the *other* texts."""
    toks = [t.split() for t in texts]
    smooth = nltk_bleu.SmoothingFunction().method1
    w = tuple(1.0 / n for _ in range(n))
    scores = [
        nltk_bleu.sentence_bleu(toks[:i] + toks[i + 1 :], toks[i], w, smoothing_function=smooth)
        for i in range(len(toks))
    ]
    return sum(scores) / len(scores), scores


WORDS = ["the", "a", "cat", "sat", "on", "mat", "é", "日本語", "🙂", "x\u200by", "Ωmega", "42", "<answer>"]


def generated_sets(seed: int = 0, count: int = 60) -> list[list[str]]:
    rng = random.Random(seed)
    sets: list[list[str]] = []
    for i in range(count):
        k = rng.randint(1, 14)
        base = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 20)))
        texts = []
        for _ in range(k):
            r = rng.random()
            if r < 0.25:
                texts.append(base)  # collapsed: the same answer again
            elif r < 0.4:
                words = base.split()
                if words:
                    words[rng.randrange(len(words))] = rng.choice(WORDS)  # near-duplicate
                texts.append(" ".join(words))
            elif r < 0.5:
                texts.append(rng.choice(["", "   ", "\n\t"]))  # empty
            else:
                sep = rng.choice([" ", "  ", "\n", "\t", "\u3000", "\xa0", "\x1c", " \r\n "])
                texts.append(sep.join(rng.choice(WORDS) for _ in range(rng.randint(0, 30))))
        if i % 10 == 0:
            texts.append(" ".join(rng.choice(WORDS) for _ in range(2000)))  # long
        sets.append(texts)
    sets.append(["same answer"] * 20)  # a fully collapsed group
    sets.append(["one lonely text"])
    return sets


def test_whitespace_set_is_pythons():
    """The tokenizer's whitespace list is exactly the characters str.split() splits on."""
    assert set(WHITESPACE) == {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}


def test_tokenize_equals_str_split():
    texts = ["", "  a  b ", "a\x1cb\x1fc", "日本\u3000語\xa0x", "a\u2028b\u200bc", "\n", "tail ", None, "x" * 50]
    tok = tokenize(pl.Series(texts, dtype=pl.String))
    expected = [(t or "").split() for t in texts]
    assert tok.lengths.tolist() == [len(e) for e in expected]
    flat = [w for e in expected for w in e]
    # Same ids for the same token, different ids for different tokens.
    seen: dict[str, int] = {}
    for w, i in zip(flat, tok.ids.tolist(), strict=True):
        assert seen.setdefault(w, i) == i
    assert len(set(seen.values())) == len(seen) == tok.vocab


@pytest.mark.parametrize("seed", [0, 1])
def test_distinct_and_entropy_equal_dialogpt(seed):
    for texts in generated_sets(seed):
        m = D.diversity_metrics(texts)
        etp, div = cal_entropy(texts)
        split = [t.split() for t in texts]
        words = sum(len(t) for t in split)
        for n in range(1, 5):
            if div[n - 1] == 0:  # no n-gram at all: runlog says null, DialoGPT 0.0
                assert m[f"distinct_{n}"] is None and m[f"entropy_{n}"] is None
                continue
            assert m[f"distinct_{n}"] == pytest.approx(div[n - 1], rel=TOL, abs=TOL)
            assert m[f"entropy_{n}"] == pytest.approx(etp[n - 1], rel=TOL, abs=TOL)
            uniq = len({tuple(t[i : i + n]) for t in split for i in range(len(t) - n + 1)})
            assert m[f"distinct_li2016_{n}"] == pytest.approx(uniq / words, rel=TOL)


@pytest.mark.parametrize("seed", [0, 2])
def test_self_bleu_equals_nltk_per_text(seed):
    for texts in generated_sets(seed, count=40):
        if len(texts) < 2:
            assert D.self_bleu_n(texts, 4) is None
            continue
        for n in (2, 3, 4):
            ref_mean, ref = nltk_self_bleu(texts, n)
            mine = D.self_bleu_scores(texts, n)
            assert mine == pytest.approx(ref, rel=TOL, abs=TOL)
            assert D.self_bleu_n(texts, n) == pytest.approx(ref_mean, rel=TOL, abs=TOL)


def test_self_bleu_brevity_penalty_ties_to_the_shorter_reference():
    """Hypothesis of 4 tokens, references of 3 and 5 tokens: nltk takes 3 (tie -> shorter), so no
    penalty; taking 5 would give exp(1 - 5/4)."""
    texts = ["a b c d", "a b c", "a b c d e"]
    _, ref = nltk_self_bleu(texts, 2)
    assert D.self_bleu_scores(texts, 2) == pytest.approx(ref, rel=TOL)


def test_self_repetition_and_compression_equal_the_diversity_package():
    sr = _load_diversity_module("self_repetition").self_repetition_score
    cr = _load_diversity_module("compression").compression_ratio
    for texts in generated_sets(3, count=30):
        m = D.diversity_metrics(texts, compression=True)
        assert m["self_repetition"] == pytest.approx(float(sr(texts, verbose=False)), rel=TOL, abs=TOL)
        if " ".join(texts).strip() or " ".join(texts):
            assert round(m["compression_ratio"], 3) == cr(texts, "xz")
            raw = " ".join(texts).encode()
            assert m["compression_ratio_gzip"] == len(raw) / len(gzip.compress(raw, mtime=0))


def test_many_sets_at_once_equal_one_set_at_a_time():
    sets = generated_sets(4, count=25)
    texts = [t for s in sets for t in s]
    ids = np.array([i for i, s in enumerate(sets) for _ in s], dtype=np.int64)
    perm = np.random.default_rng(0).permutation(len(texts))  # sets interleaved
    batch = D.diversity_by_set(pl.Series([texts[i] for i in perm], dtype=pl.String), ids[perm], len(sets))
    for i, s in enumerate(sets):
        one = D.diversity_metrics(s)
        row = batch.row(i, named=True)
        for k, v in one.items():
            if v is None:
                assert row[k] is None, (i, k)
            else:
                assert row[k] == pytest.approx(v, rel=TOL, abs=TOL), (i, k)


def _brute_set_stats(texts: list[str], sets: list[int], n_sets: int, n: int):
    """Per set: n-grams, distinct n-grams, sum c log c; per text: nltk's clipped numerator against the other
    texts of its set, and the self-repetition sum (over its distinct n-grams, the other texts holding each)."""
    grams = [[tuple(t.split()[i : i + n]) for i in range(len(t.split()) - n + 1)] for t in texts]
    total, unique, clogc = [0] * n_sets, [0] * n_sets, [0.0] * n_sets
    clipped, rep = [], []
    for s in range(n_sets):
        pooled: dict[tuple, int] = defaultdict(int)
        for g, si in zip(grams, sets, strict=True):
            if si == s:
                for x in g:
                    pooled[x] += 1
        total[s], unique[s] = sum(pooled.values()), len(pooled)
        clogc[s] = sum(c * np.log(c) for c in pooled.values())
    for j, (g, s) in enumerate(zip(grams, sets, strict=True)):
        others = [grams[i] for i in range(len(texts)) if sets[i] == s and i != j]
        mine: dict[tuple, int] = defaultdict(int)
        for x in g:
            mine[x] += 1
        clipped.append(sum(min(c, max([o.count(x) for o in others], default=0)) for x, c in mine.items()))
        rep.append(sum(sum(1 for o in others if x in o) for x in mine))
    return total, unique, clogc, clipped, rep


@pytest.mark.parametrize(("key_bits", "narrow"), [(64, 2**31), (0, 2**31), (64, 0), (0, 0)])
def test_ngram_engine_equals_brute_force(monkeypatch, key_bits, narrow):
    """The engine's raw counts on interleaved sets (some empty, some of one text) with heavy repetition, on
    both sort paths (the packed value sort, 64; the stable arg sort of keys without positions, 0) and both
    index widths (32-bit; 64-bit, forced with narrow=0)."""
    from runlog.metrics import _ngrams

    monkeypatch.setattr(_ngrams, "_KEY_BITS", key_bits)
    monkeypatch.setattr(_ngrams, "_NARROW", narrow)
    rng = random.Random(7)
    vocab = ["a", "b", "c", "d", "é", "🙂"]
    texts, sets = [], []
    for _ in range(120):
        k = rng.choice([0, 1, 2, 3, 5, 8])
        sets.append(rng.randrange(9))  # set 8 may stay empty
        texts.append(" ".join(rng.choice(vocab[: rng.randint(1, 6)]) for _ in range(k)))
    tokens = tokenize(pl.Series(texts, dtype=pl.String))
    stats = _ngrams.ngram_stats(tokens, np.array(sets), 10, max_n=4, clipped=True, rep_n=4)
    for n in range(1, 5):
        total, unique, clogc, clipped, rep = _brute_set_stats(texts, sets, 10, n)
        assert stats.total[n].tolist() == total
        assert stats.unique[n].tolist() == unique
        assert stats.clogc[n] == pytest.approx(clogc, rel=1e-12, abs=1e-12)
        assert stats.clipped[n].tolist() == clipped
        if n == 4:
            assert stats.rep_sum.tolist() == rep


def test_both_sort_paths_give_identical_frames(monkeypatch):
    """Forcing the stable arg-sort path (keys too wide to carry positions) changes no value, not even a bit."""
    from polars.testing import assert_frame_equal

    from runlog.metrics import _ngrams

    sets = generated_sets(5, count=30)
    texts = [t for s in sets for t in s]
    ids = np.array([i for i, s in enumerate(sets) for _ in s], dtype=np.int64)
    perm = np.random.default_rng(1).permutation(len(texts))
    series = pl.Series([texts[i] for i in perm], dtype=pl.String)
    packed = D.diversity_by_set(series, ids[perm], len(sets))
    monkeypatch.setattr(_ngrams, "_KEY_BITS", 0)
    assert_frame_equal(D.diversity_by_set(series, ids[perm], len(sets)), packed, check_exact=True)
    whole = D.diversity_by_set(series, np.zeros(len(texts), np.int64), 1)
    monkeypatch.setattr(_ngrams, "_KEY_BITS", 64)
    assert_frame_equal(D.diversity_by_set(series, np.zeros(len(texts), np.int64), 1), whole, check_exact=True)


def test_tokenize_random_texts_equal_str_split():
    """Texts that end and begin without whitespace between them, whitespace-only texts, runs of mixed
    whitespace: the byte-level split equals str.split() text by text."""
    rng = random.Random(3)
    pieces = ["a", "bb", "日本", "🙂", "x\u200by", " ", "\n", "\r\n", "\t", "\u3000", "\xa0", "\x1c", "\x85", ""]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(400)]
    tok = tokenize(pl.Series(texts, dtype=pl.String))
    expected = [t.split() for t in texts]
    assert tok.lengths.tolist() == [len(e) for e in expected]
    seen: dict[str, int] = {}
    for w, i in zip([w for e in expected for w in e], tok.ids.tolist(), strict=True):
        assert seen.setdefault(w, i) == i
    assert len(set(seen.values())) == len(seen) == tok.vocab


def test_per_sentence_average_cannot_see_a_collapsed_group():
    """Twenty copies of one varied sentence: every text alone looks diverse, the group is not."""
    texts = ["the quick brown fox jumps over the lazy dog today"] * 20
    m = D.diversity_metrics(texts)
    assert m["distinct_2"] == pytest.approx(9 / 180)
    assert m["self_bleu_4"] == pytest.approx(1.0)
    assert m["unique_frac"] == pytest.approx(1 / 20)


# ---------------------------------------------------------------------------------------------------------
# Over a run: API and CLI
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def collapse_run(tmp_path):
    """Step 0: four prompt groups of varied answers. Step 1: each group collapsed to one answer, but the
    four groups answer differently, so the step as a whole still looks varied."""
    rows = []
    rng = random.Random(0)
    for step in (0, 1):
        for g in range(4):
            for k in range(5):
                r = native_rows(step, 1)[0]
                words = [rng.choice(WORDS) for _ in range(12)]
                text = " ".join(words) if step == 0 else f"group {g} always says the same thing"
                r.update(sample_id=f"s{step}-{g}-{k}", group_id=f"g{step}-{g}", completion=text)
                rows.append(r)
    return native_run_of(tmp_path / "run", rows)


def test_group_view_averages_per_prompt_group(collapse_run):
    """--over group: metrics per prompt group, then the mean over the step's groups."""
    run = open_run(collapse_run)
    g = diversity_frame(run, ["step"], over="group", text="completion")
    s = diversity_frame(run, ["step"], over="set", text="completion")
    assert g["groups"].to_list() == [4, 4]
    assert g["unique_frac"].to_list() == pytest.approx([1.0, 0.2])
    assert g["self_bleu_4"][1] == pytest.approx(1.0)
    assert g["self_bleu_4"][0] < 0.9
    # Over the whole step, each text still has four identical copies among its references.
    assert s["self_bleu_4"][1] == pytest.approx(1.0)
    assert s["distinct_1"][1] == pytest.approx(10 / 140)
    assert s["texts"].to_list() == [20, 20]


def test_cli_diversity_and_format(cli, collapse_run):
    res = cli("metrics", "diversity", collapse_run, "--by", "step", "--format", "json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["step"] for r in rows] == [0, 1] and rows[1]["unique_frac"] == pytest.approx(0.2)
    res = cli("metrics", "diversity", collapse_run, "--over", "set", "--compression", "-f", "csv")
    assert res.exit_code == 0 and "compression_ratio_gzip" in res.stdout
    res = cli("metrics", "diversity", collapse_run, "--by", "nope")
    assert res.exit_code == 2 and "Error: --by 'nope'" in res.stderr
    res = cli("metrics", "diversity", collapse_run, "--text", "bogus")
    assert res.exit_code == 2 and "--text 'bogus'" in res.stderr


def test_diversity_by_group_keeps_each_step_s_groups_apart(tmp_path, cli):
    """Group ids that come again at every step: one row per step and group (each of one prompt group), as
    summarize --by group has them, said in a note."""
    import json

    from runlog import RunWriter

    with RunWriter(tmp_path / "run", name="run", roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for step in range(3):
            rows = [{"group_id": f"g{i % 2}", "completion": f"text {step} {i} a b c", "reward": 0.5} for i in range(4)]
            w.log_samples(step, rows)
    r = cli("metrics", "diversity", tmp_path / "run", "--by", "group", "-f", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [(x["step"], x["group"], x["groups"], x["texts"]) for x in rows] == [
        (s, g, 1, 2) for s in range(3) for g in ("g0", "g1")
    ]
    assert "note: a prompt group is one group id within a step: `step` was added to the keys" in r.stderr


def test_groups_of_one_text_fall_back_to_the_set_and_say_so(tmp_path, cli):
    """Every prompt group holds one text (an eval of one epoch, a run without repeats): within-group figures
    would be those of single texts (unique_frac 1, no Self-BLEU), blind to ten answers that are all "Yes".
    The metrics are then over the row's texts, as with --over set, and the command says so."""
    rows = []
    for i in range(10):
        r = native_rows(0, 1)[0]
        r.update(sample_id=f"s{i}", group_id=f"g{i}", completion="Yes" if i % 2 else "No")
        r["messages"] = None
        rows.append(r)
    root = native_run_of(tmp_path / "run", rows)
    run = open_run(root)
    grouped = diversity_frame(run, ["step"])
    whole = diversity_frame(run, ["step"], over="set")
    assert grouped.equals(whole) and "groups" not in grouped.columns
    assert grouped["unique_frac"].to_list() == [0.2]  # two distinct texts of ten, counted by hand
    res = cli("metrics", "diversity", root)
    assert res.exit_code == 0 and "no prompt group holds two texts" in res.stderr
    res = cli("metrics", "diversity", root, "--over", "set")
    assert "no prompt group" not in res.stderr
    # One group of two among singletons: still per group (the singletons are groups of their own).
    rows[1]["group_id"] = "g0"
    write_native_samples(root / "samples" / "train" / "step_00000000.p0.parquet", rows)
    assert "groups" in diversity_frame(open_run(root), ["step"]).columns


def test_the_fall_back_to_the_set_is_decided_per_row(tmp_path, cli):
    """Train groups of four beside an eval whose groups hold one sample each: the train rows stay within
    groups, the eval rows are over their texts (groups empty), each equal to the split alone (counted by
    hand for eval: 3 distinct of 6), and the note names the eval rows."""
    rows = []
    for step in (0, 1):
        train = native_rows(step, 8)
        for i, r in enumerate(train):
            r.update(completion=f"answer {i % 3} to {r['group_id']}", messages=None)
        ev = native_rows(step, 6, split="eval")
        for i, r in enumerate(ev):
            r.update(sample_id=f"e{step}-{i}", group_id=f"e{step}-{i}", completion=("Yes", "No", "Maybe")[i % 3])
            r["messages"] = None
        rows += train + ev
    root = native_run_of(tmp_path / "run", rows)
    run = open_run(root)
    both = diversity_frame(run, ["step"])
    assert both["split"].to_list() == ["eval", "eval", "train", "train"]
    assert both["groups"].to_list() == [None, None, 2, 2]
    ev_rows = both.filter(pl.col("split") == "eval").drop("split", "groups")
    from runlog.analysis.filters import Filters

    alone = diversity_frame(run, ["step"], filters=Filters(splits=("eval",)), over="set")
    assert ev_rows.equals(alone) and alone["unique_frac"].to_list() == [0.5, 0.5]
    tr_rows = both.filter(pl.col("split") == "train").drop("split")
    assert tr_rows.equals(diversity_frame(run, ["step"], filters=Filters(splits=("train",))))
    res = cli("metrics", "diversity", root)
    assert res.exit_code == 0, res.output
    assert "rows with no groups (split eval; step 0, 1)" in res.stderr


def test_groups_of_one_text_are_left_out_of_the_means_beside_larger_groups(tmp_path, cli):
    """Four collapsed groups of eight (one answer each) and four groups of one text: the singletons, each
    unique_frac 1 on its own, read the step as half varied (0.56); they are left out of the means, so the
    collapse reads 1/8, and a note counts them. --over set still counts every text."""
    rows = []
    for g in range(8):
        size = 8 if g < 4 else 1
        for i in range(size):
            r = native_rows(0, 1)[0]
            r.update(sample_id=f"g{g}-{i}", group_id=f"g{g}", completion=f"the same answer {g}")
            r["messages"] = None
            rows.append(r)
    root = native_run_of(tmp_path / "run", rows)
    run = open_run(root)
    notes: list[str] = []
    df = diversity_frame(run, ["step"], notes=notes)
    assert df["groups"].to_list() == [4] and df["texts"].to_list() == [32]
    assert df["unique_frac"].to_list() == [1 / 8]
    assert notes == [
        "4 prompt group(s) of one text left out of the means over groups (a single text has no "
        "within-group diversity; --over set counts every text)"
    ]
    assert diversity_frame(run, ["step"], over="set")["texts"].to_list() == [36]
    # One row per group: each singleton is its own row, measured over its one text.
    by_group = diversity_frame(run, ["group"])
    assert by_group.height == 8 and by_group["texts"].to_list() == [8, 8, 8, 8, 1, 1, 1, 1]
    res = cli("metrics", "diversity", root)
    assert res.exit_code == 0 and "4 prompt group(s) of one text left out" in res.stderr
