"""Tests of the zero-shot protocol: label sets (mmie.tasks.zs_labels), metrics
(mmie.metrics.zeroshot) and label scoring (mmie.modules.label_scorer)."""

from __future__ import annotations

import ast
import json
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from mmie.errors import ConfigError, DataError
from mmie.modules.label_scorer import (LabelScorer, label_cross_entropy, label_loss,
                                       ranking_hinge_loss)
from mmie.metrics.zeroshot import generalized_metrics, harmonic_mean, zero_shot_metrics
from mmie.tasks.zs_labels import (ZeroShotSplit, class_balanced_weights, leave_one_type_out,
                                  load_label_descriptions, load_label_resource, relation_name,
                                  split_relations, typing_fold)

from helpers import data_root

MNRE_RELATIONS = sorted(load_label_resource("mnre_relations").labels)
GROUPS = {"G1": ("People", "Site", "Building", "Currency"),
          "G2": ("Location", "Event", "Book", "Music"),
          "G3": ("Organization", "Country", "APP", "Movie")}


# ---------------------------------------------------------------------------------------------
# splits
def test_relation_split_sizes_disjoint_and_covering():
    labels = MNRE_RELATIONS * 3 + ["None"] * 5          # repeats and the negative label
    for seed in range(5):
        s = split_relations(labels, seed)
        assert (len(s.seen), len(s.val), len(s.unseen)) == (8, 7, 7)
        assert not (set(s.seen) & set(s.val) or set(s.seen) & set(s.unseen)
                    or set(s.val) & set(s.unseen))
        assert set(s.seen) | set(s.val) | set(s.unseen) == set(MNRE_RELATIONS)
        assert "None" not in s.all_labels
        assert s.candidates("test") == s.unseen and s.candidates("train") == s.seen


def test_relation_split_deterministic_per_seed_and_seeds_differ():
    a = split_relations(MNRE_RELATIONS, seed=3)
    b = split_relations(list(reversed(MNRE_RELATIONS)), seed=3)   # input order is irrelevant
    assert a == b
    splits = {split_relations(MNRE_RELATIONS, seed=s).unseen for s in range(5)}
    assert len(splits) == 5
    # the shuffle is random.Random(seed) over the sorted labels
    import random
    pool = sorted(MNRE_RELATIONS)
    random.Random(7).shuffle(pool)
    assert split_relations(MNRE_RELATIONS, 7).seen == tuple(sorted(pool[:8]))


def test_relation_split_sizes_must_cover():
    with pytest.raises(ConfigError, match="22 labels"):
        split_relations(MNRE_RELATIONS, 0, n_seen=8, n_val=7, n_unseen=6)
    s = split_relations(MNRE_RELATIONS, 0, n_seen=10, n_val=6, n_unseen=6)
    assert len(s.seen) == 10


def test_typing_folds_rotate_groups():
    folds = [typing_fold(f) for f in range(3)]
    assert folds[0] == ZeroShotSplit(GROUPS["G1"], GROUPS["G2"], GROUPS["G3"])
    assert folds[1] == ZeroShotSplit(GROUPS["G2"], GROUPS["G3"], GROUPS["G1"])
    assert folds[2] == ZeroShotSplit(GROUPS["G3"], GROUPS["G1"], GROUPS["G2"])
    for s in folds:
        assert len(set(s.seen) | set(s.val) | set(s.unseen)) == 12
    # every type is unseen in exactly one fold
    assert Counter(t for s in folds for t in s.unseen) == Counter({t: 1 for g in GROUPS.values()
                                                                  for t in g})
    assert typing_fold(1, list(GROUPS.values())) == folds[1]
    with pytest.raises(ConfigError, match="0, 1 or 2"):
        typing_fold(3)
    with pytest.raises(ConfigError, match="more than one group"):
        typing_fold(0, [("a", "b"), ("b",), ("c",)])


def test_leave_one_type_out_is_generalized():
    s = leave_one_type_out(["PER", "LOC", "ORG", "MISC"], "ORG")
    # the held-out type is the test label only: validation never holds it (issue 17)
    assert s.seen == ("PER", "LOC", "MISC") and s.val == () and s.unseen == ("ORG",)
    assert s.candidates("train") == ("PER", "LOC", "MISC")
    assert set(s.candidates("test")) == set(s.candidates("val")) == {"PER", "LOC", "ORG", "MISC"}
    assert ZeroShotSplit.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(ConfigError, match="not one of"):
        leave_one_type_out(["PER", "LOC"], "ORG")


def test_relation_name_and_balanced_weights():
    assert relation_name("/per/loc/place_of_residence") == "place of residence"
    assert relation_name("/org/org/subsidiary/") == "subsidiary"
    w = class_balanced_weights(["a", "b", "a", "a"])
    assert w == pytest.approx([1 / 3, 1.0, 1 / 3, 1 / 3])


@pytest.mark.data
def test_mnre_relations_match_resource():
    """The resource names exactly MNRE's 22 non-None relations (5,767 instances)."""
    root = data_root() / "mnre"
    counts: Counter[str] = Counter()
    for part in ("train", "val", "test"):
        with open(root / f"mnre_{part}.txt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    counts[ast.literal_eval(line)["relation"]] += 1
    assert sorted(set(counts) - {"None"}) == MNRE_RELATIONS
    assert sum(c for r, c in counts.items() if r != "None") == 5767
    split = split_relations(list(counts.elements()), seed=0)
    assert len(split.all_labels) == 22


# ---------------------------------------------------------------------------------------------
# label texts
def test_label_resources():
    rel = load_label_resource("mnre_relations.json")
    assert len(rel.labels) == 22
    assert rel.text("/per/per/couple") == "couple"
    assert rel.text("/per/per/couple", "description") == "the two people are a couple"
    assert rel.text("/per/per/couple", "name+description") == "couple: the two people are a couple"
    names = rel.texts(MNRE_RELATIONS)
    assert len(set(names)) == 22                              # no two candidates read the same
    types = load_label_resource("wikidiverse_types")
    assert types.groups == GROUPS and len(types.labels) == 12
    desc = load_label_descriptions("wikidiverse_types")
    assert set(desc) == {t for g in GROUPS.values() for t in g} and all(desc.values())
    with pytest.raises(DataError, match="no text"):
        rel.text("/per/per/friend")


def test_label_file_errors_name_the_place(tmp_path):
    good = tmp_path / "labels.json"
    good.write_text(json.dumps({"labels": {"x": "the x label", "y": {"name": "y",
                                                                     "description": "why"}}}))
    assert load_label_descriptions(good) == {"x": "the x label", "y": "why"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"labels": {\n "x": "a",\n}}')
    with pytest.raises(DataError, match=r"bad\.json, line 3"):
        load_label_resource(bad)
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"labels": {"x": {"name": "x"}}}))
    with pytest.raises(DataError, match="labels.x"):
        load_label_resource(missing)
    with pytest.raises(DataError, match="mnre_relations"):
        load_label_resource("no_such_resource")


# ---------------------------------------------------------------------------------------------
# metrics
def test_zero_shot_metrics_hand_counts():
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    m = zero_shot_metrics(gold, pred, ["a", "b", "c"])
    # tp a2 b1 c1; #pred a2 b2 c2; #gold a3 b2 c1
    p = [1.0, 0.5, 0.5]
    r = [2 / 3, 0.5, 1.0]
    f = [2 * x * y / (x + y) for x, y in zip(p, r)]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_p"] == pytest.approx(sum(p) / 3)
    assert m["macro_r"] == pytest.approx(sum(r) / 3)
    assert m["macro_f1"] == pytest.approx(sum(f) / 3)
    assert m["micro_f1"] == pytest.approx(m["accuracy"])       # everything within the labels
    # restricted to {a, b}: micro P = 3 / 4 (pred a, a, b, b), micro R = 3 / 5
    m2 = zero_shot_metrics(gold, pred, ["a", "b"])
    assert m2["micro_f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert m2["macro_p"] == pytest.approx(0.75) and m2["macro_r"] == pytest.approx((2 / 3 + .5) / 2)
    # a label never predicted nor gold counts as 0 in the macro average
    m3 = zero_shot_metrics(gold, pred, ["a", "b", "c", "d"])
    assert m3["macro_f1"] == pytest.approx(sum(f) / 4)
    with pytest.raises(ValueError, match="6 gold"):
        zero_shot_metrics(gold, pred[:-1])


def test_harmonic_and_generalized_metrics():
    assert harmonic_mean(0.6, 0.3) == pytest.approx(0.4)
    assert harmonic_mean(0.0, 0.0) == 0.0
    gold = ["PER", "PER", "LOC", "ORG", "ORG", "ORG"]
    pred = ["PER", "LOC", "LOC", "ORG", "PER", "ORG"]
    g = generalized_metrics(gold, pred, seen=["PER", "LOC", "MISC"], unseen=["ORG"])
    assert g["seen_acc"] == pytest.approx(2 / 3) and g["unseen_acc"] == pytest.approx(2 / 3)
    assert g["h"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------------
# label scoring
def test_ranking_hinge_hand_computed():
    scores = torch.tensor([[2.0, 1.5, -1.0], [0.0, 0.5, 0.2]])
    target = torch.tensor([0, 1])
    # row 0: max(0, 1-2+1.5)=.5, max(0, 1-2-1)=0; row 1: 1-.5+0=.5, 1-.5+.2=.7
    assert ranking_hinge_loss(scores, target).item() == pytest.approx((0.5 + 1.2) / 2)
    assert ranking_hinge_loss(scores, target, margin=0.0).item() == pytest.approx(0.0)
    mask = torch.tensor([True, True, False])                 # only two candidates
    assert ranking_hinge_loss(scores, target, label_mask=mask).item() == pytest.approx(0.5)
    assert label_loss(scores, target).item() == pytest.approx(0.85)
    with pytest.raises(ValueError, match="not among the candidate"):
        ranking_hinge_loss(scores, torch.tensor([2, 1]), label_mask=mask)
    with pytest.raises(ConfigError, match="label_loss"):
        label_loss(scores, target, loss="focal")


def test_cross_entropy_hand_computed():
    scores = torch.tensor([[2.0, 1.5, -1.0], [0.0, 0.5, 0.2]])
    target = torch.tensor([0, 1])
    mask = torch.tensor([True, True, False])
    row0 = -(2.0 - math.log(math.exp(2.0) + math.exp(1.5)))
    row1 = -(0.5 - math.log(math.exp(0.0) + math.exp(0.5)))
    assert label_cross_entropy(scores, target, mask).item() == pytest.approx((row0 + row1) / 2)
    assert label_loss(scores, target, "cross_entropy").item() == pytest.approx(
        F.cross_entropy(scores, target).item())


def test_label_scorer_shapes_and_per_sample_candidates():
    torch.manual_seed(0)
    scorer = LabelScorer(12, 10, proj_dim=6)
    samples, labels = torch.randn(3, 12), torch.randn(5, 10)
    s = scorer(samples, labels)
    assert s.shape == (3, 5)
    expected = scorer.sample_proj(samples) @ scorer.label_proj(labels).T
    torch.testing.assert_close(s, expected)
    torch.testing.assert_close(scorer(samples, labels.expand(3, 5, 10)), s)
    loss = ranking_hinge_loss(s, torch.tensor([0, 4, 2]))
    loss.backward()
    assert scorer.label_proj.weight.grad.abs().sum() > 0
