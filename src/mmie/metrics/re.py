"""Relation classification scores under the MNRE protocol.

Micro precision / recall / F1 leave the ``None`` (no relation) label out:
``P = correct non-None predictions / non-None predictions`` and
``R = correct non-None predictions / non-None gold labels``. Accuracy counts every example,
``None`` included. A confusion matrix (rows gold, columns predicted) comes with the labels in
the order of its rows, ready for plotting.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from mmie.errors import DataError

__all__ = ["relation_scores"]


def _prf(n_correct: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = n_correct / n_pred if n_pred else 0.0
    r = n_correct / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def relation_scores(gold: Sequence[str], pred: Sequence[str], none_label: str = "None",
                    labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Score predicted relation labels against gold ones, one label per example.

    Returns ``precision``, ``recall``, ``f1`` (micro, ``none_label`` excluded), ``support``
    (non-None gold), ``n_pred`` (non-None predictions), ``n_correct`` (correct non-None
    predictions), ``accuracy`` (all examples), ``per_label``
    (``{label: {precision, recall, f1, support, n_pred, n_correct}}`` for every label but
    ``none_label``) and ``confusion``: ``{"labels": [...], "matrix": [[...]]}`` with
    ``matrix[i][j]`` = examples of gold ``labels[i]`` predicted as ``labels[j]``.

    ``labels`` fixes the label order (e.g. the model's label list) so matrices of different
    runs line up; by default it is ``none_label`` first, then the other labels seen, sorted.
    Undefined ratios are 0.0. Raises :class:`~mmie.errors.DataError` when the lists differ in
    length, or naming the example when ``labels`` is given and lacks its gold or predicted label.
    """
    if len(gold) != len(pred):
        raise DataError(f"{len(gold)} gold labels but {len(pred)} predicted labels")
    seen = set(gold) | set(pred)
    if labels is None:
        order = [none_label] + sorted(seen - {none_label})
    else:
        order = list(labels)
        known = set(order)
        for i, (g, p) in enumerate(zip(gold, pred)):
            for field, label in (("gold", g), ("pred", p)):
                if label not in known:
                    raise DataError(f"example {i}: {field} label {label!r} is not in the "
                                    f"label list: {', '.join(order)}", field=field)
    index = {l: i for i, l in enumerate(order)}
    matrix = [[0] * len(order) for _ in order]
    n_gold, n_pred, n_correct = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred):
        matrix[index[g]][index[p]] += 1
        if g != none_label:
            n_gold[g] += 1
        if p != none_label:
            n_pred[p] += 1
            if p == g:
                n_correct[p] += 1
    tot_c, tot_p, tot_g = sum(n_correct.values()), sum(n_pred.values()), sum(n_gold.values())
    precision, recall, f1 = _prf(tot_c, tot_p, tot_g)
    per_label = {}
    for l in order:
        if l == none_label:
            continue
        pl, rl, fl = _prf(n_correct[l], n_pred[l], n_gold[l])
        per_label[l] = {"precision": pl, "recall": rl, "f1": fl, "support": n_gold[l],
                        "n_pred": n_pred[l], "n_correct": n_correct[l]}
    n_exact = sum(g == p for g, p in zip(gold, pred))
    return {"precision": precision, "recall": recall, "f1": f1, "support": tot_g,
            "n_pred": tot_p, "n_correct": tot_c,
            "accuracy": n_exact / len(gold) if len(gold) else 0.0,
            "per_label": per_label, "confusion": {"labels": order, "matrix": matrix}}
