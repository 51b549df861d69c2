"""Paired bootstrap over test posts (seeds paired), against hand computations."""

from __future__ import annotations

import random

import numpy as np
import pytest
from seqeval.metrics import f1_score

from mmie.errors import DataError
from mmie.metrics import entity_scores, relation_scores
from mmie.metrics.bootstrap import (accuracy_post_stats, align_runs, bootstrap_runs,
                                    label_post_stats, macro_f1, micro_f1, ner_post_counts,
                                    paired_bootstrap, re_post_counts, resample_weights)
from mmie.metrics.zeroshot import zero_shot_metrics

approx = pytest.approx

# per-post (correct, predicted, gold) entity counts of two systems on three posts
A = np.array([[1, 1, 1], [0, 1, 1], [1, 2, 1]])
B = np.array([[0, 0, 1], [1, 1, 1], [0, 1, 1]])
DRAWS = np.array([[0, 0, 1], [2, 2, 2], [0, 1, 2]])


def test_resample_weights_count_each_post():
    w = resample_weights(DRAWS, 3)
    assert w.tolist() == [[2, 1, 0], [0, 0, 3], [1, 1, 1]]


def test_three_posts_by_hand():
    # replicate [0,0,1]: A sums (2,3,3) -> F1 4/6; B (1,1,3) -> 2/4; diff 1/6
    # replicate [2,2,2]: A (3,6,3) -> 6/9; B (0,3,3) -> 0;   diff 2/3
    # replicate [0,1,2]: A (2,4,3) -> 4/7; B (1,2,3) -> 2/5; diff 6/35 (= the observed one)
    r = paired_bootstrap([A], [B], "f1", indices={0: DRAWS})
    assert r["a"] == approx(4 / 7) and r["b"] == approx(2 / 5)
    assert r["diff"] == approx(6 / 35)
    assert r["boot_mean"] == approx((1 / 6 + 2 / 3 + 6 / 35) / 3)
    # percentiles of the sorted diffs (1/6, 6/35, 2/3), linear interpolation at 0.05 and 1.95
    assert r["ci_low"] == approx(1 / 6 + 0.05 * (6 / 35 - 1 / 6))
    assert r["ci_high"] == approx(6 / 35 + 0.95 * (2 / 3 - 6 / 35))
    assert r["p_le_0"] == 0.0
    assert (r["n_posts"], r["n_seeds"], r["n_resamples"]) == (3, 1, 3)
    # swapped systems: every replicate difference changes sign
    s = paired_bootstrap([B], [A], "f1", indices={0: DRAWS})
    assert s["ci_low"] == approx(-r["ci_high"]) and s["ci_high"] == approx(-r["ci_low"])
    assert s["p_le_0"] == 1.0


def test_seed_means_share_each_draw():
    # seed 2: A2 always right (F1 1), B2 predicts nothing (F1 0) -> diff 1 on every replicate
    a2 = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1]])
    b2 = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1]])
    r = paired_bootstrap([A, a2], [B, b2], "f1", indices={0: DRAWS})
    one = [1 / 6, 2 / 3, 6 / 35]
    diffs = sorted((d + 1) / 2 for d in one)
    assert r["diff"] == approx((6 / 35 + 1) / 2)
    assert r["boot_mean"] == approx(sum(diffs) / 3)
    assert r["ci_low"] == approx(diffs[0] + 0.05 * (diffs[1] - diffs[0]))
    assert r["n_seeds"] == 2 and r["n_posts"] == 3


def test_identical_systems_give_exactly_zero():
    rng = np.random.default_rng(1)
    a = [rng.integers(0, 3, size=(40, 3)) for _ in range(5)]
    r = paired_bootstrap(a, [x.copy() for x in a], "f1", n_resamples=500)
    assert (r["diff"], r["ci_low"], r["ci_high"], r["p_le_0"]) == (0.0, 0.0, 0.0, 1.0)


def test_default_draws_are_documented_rng_stream():
    rng = np.random.default_rng(7)
    fixed = {0: rng.integers(0, 3, size=(50, 3))}
    assert paired_bootstrap([A], [B], "f1", n_resamples=50, seed=7) == \
        paired_bootstrap([A], [B], "f1", indices=fixed)
    # chunking draws chunk after chunk from the same stream
    assert paired_bootstrap([A], [B], "f1", n_resamples=50, seed=7, chunk=20) == \
        paired_bootstrap([A], [B], "f1", n_resamples=50, seed=7)


def test_groups_draw_independently_per_test_set():
    # seed 0 on posts {0,1,2}; seed 1 on a different 2-post test set where A wins by 1 always
    a1, b1 = np.array([[1], [1]]), np.array([[0], [0]])
    draws = {0: DRAWS, 1: np.array([[0, 0], [1, 1], [0, 1]])}
    r = paired_bootstrap([np.array([[1], [0], [1]]), a1],
                         [np.array([[0], [1], [0]]), b1], "accuracy", groups=[0, 1],
                         indices=draws)
    # accuracy diffs of seed 0 per replicate: [0,0,1] -> 1/3, [2,2,2] -> 1, [0,1,2] -> 1/3
    assert r["boot_mean"] == approx(((1 / 3 + 1) / 2 + (1 + 1) / 2 + (1 / 3 + 1) / 2) / 3)
    assert r["n_posts"] == 5
    with pytest.raises(DataError, match="own group"):
        paired_bootstrap([A, a1], [B, b1], "f1")


def test_ner_counts_match_seqeval_default_mode():
    rng = random.Random(0)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG", "B-ORG"]
    gold, pred = [], []
    for _ in range(200):
        n = rng.randint(1, 12)
        g = [rng.choice(tags) for _ in range(n)]
        p = [t if rng.random() < 0.7 else rng.choice(tags) for t in g]
        gold.append(g)
        pred.append(p)
    c = ner_post_counts(gold, pred)
    s = entity_scores(gold, pred)
    assert c.sum(axis=0).tolist() == [s["n_correct"], s["n_pred"], s["support"]]
    assert float(micro_f1(c.sum(axis=0))) == approx(s["f1"], abs=1e-12)
    assert float(micro_f1(c.sum(axis=0))) == approx(f1_score(gold, pred), abs=1e-12)
    # an I- tag after O opens an entity in the default mode
    assert ner_post_counts([["O", "I-PER"]], [["O", "B-PER"]]).tolist() == [[1, 1, 1]]


def test_re_accuracy_and_macro_stats_match_the_package_scores():
    rng = random.Random(1)
    labels = ["None", "a", "b", "c"]
    gold = [rng.choice(labels) for _ in range(300)]
    pred = [g if rng.random() < 0.5 else rng.choice(labels) for g in gold]
    rs = relation_scores(gold, pred)
    assert float(micro_f1(re_post_counts(gold, pred).sum(0))) == approx(rs["f1"], abs=1e-12)
    zs = zero_shot_metrics(gold, pred)
    acc = accuracy_post_stats(gold, pred)
    assert acc.sum() / len(gold) == approx(zs["accuracy"])
    st = label_post_stats(gold, pred, sorted(set(gold)))
    assert float(macro_f1(st.sum(0))) == approx(zs["macro_f1"], abs=1e-12)
    # hand case: gold [x, x, y], pred [x, y, z]: F1(x)=2/3, F1(y)=0 -> macro 1/3
    st = label_post_stats(["x", "x", "y"], ["x", "y", "z"], ["x", "y"])
    assert st.tolist() == [[1, 1, 1, 0, 0, 0], [0, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 1]]
    assert float(macro_f1(st.sum(0))) == approx(1 / 3)


def test_align_runs_pairs_by_post_id_and_groups_by_test_set():
    a = {0: (["p1", "p2"], np.array([[1], [0]])), 1: (["q1"], np.array([[1]])),
         2: (["p1", "p2"], np.array([[0], [0]]))}
    b = {0: (["p2", "p1"], np.array([[5], [7]])), 1: (["q1"], np.array([[0]])),
         2: (["p1", "p2"], np.array([[1], [1]])), 3: (["p1", "p2"], np.array([[1], [1]]))}
    seeds, sa, sb, groups = align_runs(a, b)
    assert seeds == [0, 1, 2]
    assert sb[0].tolist() == [[7], [5]]  # reordered to A's ids
    assert groups == [0, 1, 0]
    r = bootstrap_runs(a, b, "accuracy", n_resamples=10)
    assert r["seeds"] == [0, 1, 2] and r["test_sets"] == 2
    with pytest.raises(DataError, match="different posts"):
        align_runs({0: (["p1"], np.array([[1]]))}, {0: (["p9"], np.array([[1]]))})
