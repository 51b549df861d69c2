"""Metrics (NER via seqeval, spans, MNRE relations) and label vocabularies, against hand counts."""

from __future__ import annotations

import json
import random

import pytest

from mmie.data.schema import Example, Span
from mmie.errors import DataError
from mmie.metrics import entity_scores, relation_scores, span_scores
from mmie.tasks.ner import NERTask, bio_labels

approx = pytest.approx

# --- NER --------------------------------------------------------------------------------------
# gold: PER(0,2) LOC(3,4) | ORG(0,1) | LOC(1,3)        -> 4 entities
# pred: PER(0,2)          | ORG(0,1) | LOC(1,2)        -> 3 entities, 2 correct
GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "O"], ["O", "B-LOC", "I-LOC", "O"]]
PRED = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O", "O"], ["O", "B-LOC", "O", "O"]]


def test_entity_scores_hand_count():
    s = entity_scores(GOLD, PRED)
    assert (s["support"], s["n_pred"], s["n_correct"]) == (4, 3, 2)
    assert s["precision"] == approx(2 / 3)
    assert s["recall"] == approx(1 / 2)
    assert s["f1"] == approx(4 / 7)
    # valid IOB2 throughout: strict mode agrees
    for k in ("precision", "recall", "f1", "support", "n_pred", "n_correct"):
        assert s[f"strict_{k}"] == approx(s[k])
    pt = s["per_type"]
    assert sorted(pt) == ["LOC", "ORG", "PER"]
    assert pt["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1,
                         "n_pred": 1, "n_correct": 1}
    assert pt["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2,
                         "n_pred": 1, "n_correct": 0}
    assert s["strict_per_type"] == pt
    for k, v in s.items():
        if not k.endswith("per_type"):
            assert type(v) in (int, float), k  # plain numbers, loggable as they are


def test_per_type_false_positive_type():
    gold = [["B-PER", "O", "O"], ["B-LOC", "I-LOC", "O"]]
    pred = [["B-PER", "O", "B-MISC"], ["B-LOC", "I-LOC", "B-MISC"]]
    s = entity_scores(gold, pred)
    assert s["precision"] == approx(2 / 4) and s["recall"] == 1.0 and s["f1"] == approx(2 / 3)
    assert s["per_type"]["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0,
                                     "n_pred": 2, "n_correct": 0}
    assert s["per_type"]["LOC"]["f1"] == 1.0 and s["per_type"]["LOC"]["support"] == 1


def test_default_and_strict_differ_on_gold_i_opening_span():
    # gold "I-PER I-PER" after O: default (conlleval) reads PER(1,3), strict IOB2 reads nothing
    gold = [["O", "I-PER", "I-PER", "O", "B-LOC"]]
    pred = [["O", "B-PER", "I-PER", "O", "B-LOC"]]
    s = entity_scores(gold, pred)
    assert (s["support"], s["n_pred"], s["n_correct"]) == (2, 2, 2)
    assert s["precision"] == s["recall"] == s["f1"] == 1.0
    assert (s["strict_support"], s["strict_n_pred"], s["strict_n_correct"]) == (1, 2, 1)
    assert s["strict_precision"] == approx(1 / 2)
    assert s["strict_recall"] == 1.0
    assert s["strict_f1"] == approx(2 / 3)
    assert s["per_type"]["PER"]["support"] == 1
    assert s["strict_per_type"]["PER"]["support"] == 0
    assert s["strict_per_type"]["PER"]["precision"] == 0.0


def test_default_and_strict_differ_on_predicted_i_and_type_switch():
    gold = [["O", "B-PER", "I-PER", "O"], ["B-PER", "B-LOC", "O"]]
    pred = [["O", "I-PER", "I-PER", "O"], ["B-PER", "I-LOC", "O"]]
    s = entity_scores(gold, pred)
    # default: I-PER opens PER(1,3); "B-PER I-LOC" is PER(0,1) + LOC(1,2): all 3 correct
    assert (s["support"], s["n_pred"], s["n_correct"]) == (3, 3, 3) and s["f1"] == 1.0
    # strict: neither I- opens an entity; only PER(0,1) of sentence 2 is predicted
    assert (s["strict_support"], s["strict_n_pred"], s["strict_n_correct"]) == (3, 1, 1)
    assert s["strict_precision"] == 1.0
    assert s["strict_recall"] == approx(1 / 3)
    assert s["strict_f1"] == approx(1 / 2)
    assert s["strict_per_type"]["LOC"]["n_pred"] == 0
    assert s["strict_per_type"]["LOC"]["recall"] == 0.0


def test_no_entities_and_empty_input():
    for gold, pred in (([], []), ([["O", "O"]], [["O", "O"]]), ([[]], [[]])):
        s = entity_scores(gold, pred)
        assert s["precision"] == s["recall"] == s["f1"] == s["strict_f1"] == 0.0
        assert s["support"] == s["n_pred"] == 0 and s["per_type"] == {}


def test_length_mismatch_names_example():
    with pytest.raises(DataError, match=r"example 1: 3 gold tags but 2 predicted"):
        entity_scores(GOLD, [PRED[0], ["B-ORG", "O"], PRED[2]])
    with pytest.raises(DataError, match=r"3 gold tag sequences but 2"):
        entity_scores(GOLD, PRED[:2])


def test_invalid_tag_names_example_token_and_side():
    with pytest.raises(DataError, match=r"example 2, token 1: invalid tag 'PER'") as e:
        entity_scores(GOLD, [PRED[0], PRED[1], ["O", "PER", "O", "O"]])
    assert e.value.field == "pred_tags"


def _ref_spans(tags, strict):
    """Independent BIO decoder: strict IOB2 (only B- opens) or conlleval (I- may open)."""
    spans, start, typ = set(), None, None
    for i, t in enumerate(list(tags) + ["O"]):
        p, ty = (t[0], t[2:]) if t != "O" else ("O", None)
        if start is not None and not (p == "I" and ty == typ):
            spans.add((start, i, typ))
            start = None
        if p == "B" or (p == "I" and start is None and not strict):
            start, typ = i, ty
    return spans


def test_seqeval_matches_independent_decoder_on_random_tags():
    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    for _ in range(20):
        gold = [[rng.choice(tags) for _ in range(rng.randint(0, 9))] for _ in range(6)]
        pred = [[rng.choice(tags) for _ in g] for g in gold]
        s = entity_scores(gold, pred)
        for strict, pre in ((False, ""), (True, "strict_")):
            ref = span_scores([_ref_spans(g, strict) for g in gold],
                              [_ref_spans(p, strict) for p in pred])
            for k in ("precision", "recall", "f1", "support", "n_pred", "n_correct"):
                assert s[pre + k] == approx(ref[k]), (strict, k)
            assert sorted(s[pre + "per_type"]) == sorted(ref["per_type"])
            for t, row in ref["per_type"].items():
                assert s[pre + "per_type"][t] == approx(row), (strict, t)


def test_span_scores_hand_count_and_span_objects():
    gold = [{(0, 2, "PER"), (3, 4, "LOC")}, {(0, 1, "ORG")}, {(1, 3, "LOC")}]
    pred = [[Span(0, 2, "PER")], [(0, 1, "ORG")], [(1, 2, "LOC")]]
    s = span_scores(gold, pred)
    assert (s["support"], s["n_pred"], s["n_correct"]) == (4, 3, 2)
    assert (s["precision"], s["recall"], s["f1"]) == approx((2 / 3, 1 / 2, 4 / 7))
    assert s["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2,
                                    "n_pred": 1, "n_correct": 0}
    # a span is matched within its own example only
    assert span_scores([{(0, 1, "PER")}, set()], [set(), {(0, 1, "PER")}])["n_correct"] == 0
    with pytest.raises(DataError, match="2 gold examples but 1"):
        span_scores([set(), set()], [set()])
    with pytest.raises(DataError, match=r"example 0: expected \(start, end, type\)"):
        span_scores([{(0, 1)}], [set()])


# --- RE ---------------------------------------------------------------------------------------
RE_GOLD = ["A", "A", "B", "None", "None", "B", "C"]
RE_PRED = ["A", "B", "B", "A", "C", "None", "C"]


def test_relation_scores_hand_count():
    s = relation_scores(RE_GOLD, RE_PRED)
    # non-None predictions: 6 (A, B, B, A, C, C), correct 3; non-None gold: 5
    assert (s["n_pred"], s["n_correct"], s["support"]) == (6, 3, 5)
    assert s["precision"] == approx(1 / 2)
    assert s["recall"] == approx(3 / 5)
    assert s["f1"] == approx(6 / 11)
    assert s["accuracy"] == approx(3 / 7)
    assert "None" not in s["per_label"]
    assert s["per_label"]["A"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2,
                                   "n_pred": 2, "n_correct": 1}
    assert s["per_label"]["C"]["precision"] == 0.5 and s["per_label"]["C"]["recall"] == 1.0
    assert s["per_label"]["C"]["f1"] == approx(2 / 3)
    assert s["confusion"] == {"labels": ["None", "A", "B", "C"],
                              "matrix": [[0, 1, 0, 1], [0, 1, 1, 0], [1, 0, 1, 0],
                                         [0, 0, 0, 1]]}


def test_relation_scores_given_label_order_and_custom_none():
    gold = [g.replace("None", "NA") for g in RE_GOLD]
    pred = [p.replace("None", "NA") for p in RE_PRED]
    s = relation_scores(gold, pred, none_label="NA", labels=["C", "B", "A", "NA", "D"])
    assert s["f1"] == approx(6 / 11)
    assert s["confusion"]["labels"] == ["C", "B", "A", "NA", "D"]
    assert s["confusion"]["matrix"][3] == [1, 0, 1, 0, 0]  # gold NA -> predicted C and A
    assert s["per_label"]["D"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0,
                                   "n_pred": 0, "n_correct": 0}


def test_relation_scores_all_none_and_errors():
    s = relation_scores(["None", "None"], ["None", "None"])
    assert s["accuracy"] == 1.0 and s["precision"] == s["recall"] == s["f1"] == 0.0
    with pytest.raises(DataError, match="3 gold labels but 2 predicted"):
        relation_scores(["A", "B", "None"], ["A", "B"])
    with pytest.raises(DataError, match=r"example 1: pred label 'Z' is not in the label list"):
        relation_scores(["A", "A"], ["A", "Z"], labels=["None", "A"])


# --- labels -----------------------------------------------------------------------------------
def test_bio_labels_order_and_lookup():
    task = NERTask(bio_labels(["PER", "LOC", "PER", "ORG"]))
    assert task.labels == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert task.label_id("O") == 0 and task.label_id("I-ORG") == 4
    assert task.types == ["LOC", "ORG", "PER"]
    assert NERTask.from_dict(json.loads(json.dumps(task.to_dict()))).labels == task.labels


def test_unknown_label_names_the_example_and_the_known_labels():
    task = NERTask(bio_labels(["PER", "LOC"]))
    ex = Example(id="post-7", tokens=["Paris"], entities=[Span(0, 1, "MISC")])
    with pytest.raises(DataError, match=r"unknown label 'B-MISC' in example 'post-7'; the model "
                                        r"knows: O, B-LOC, I-LOC, B-PER, I-PER"):
        task.label_id("B-MISC", example=ex)
