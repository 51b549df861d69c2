"""Zero-shot scores: accuracy and macro precision / recall / F1 over the evaluated labels, and
the generalised protocol's seen / unseen accuracy with their harmonic mean.

With gold and predictions confined to the evaluated labels, micro F1 equals accuracy.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

__all__ = ["generalized_metrics", "harmonic_mean", "zero_shot_metrics"]


def _safe_div(a: float, b: float) -> float:
    return a / b if b else 0.0


def zero_shot_metrics(gold: Sequence[str], pred: Sequence[str],
                      labels: Sequence[str] | None = None) -> dict[str, float]:
    """Accuracy, macro P / R / F1 over ``labels`` (default: the gold labels present) and
    micro F1 over the same labels.

    Per label: P = tp / #pred, R = tp / #gold, F1 their harmonic mean (0 when undefined);
    macro = unweighted mean over ``labels``. Micro F1 counts only gold and predicted labels in
    ``labels``; with everything in ``labels`` it equals accuracy.
    """
    if len(gold) != len(pred):
        raise ValueError(f"zero_shot_metrics: {len(gold)} gold labels but {len(pred)} "
                         "predictions")
    labels = sorted(set(gold)) if labels is None else list(dict.fromkeys(labels))
    tp: Counter[str] = Counter()
    n_gold: Counter[str] = Counter(gold)
    n_pred: Counter[str] = Counter(pred)
    for g, p in zip(gold, pred):
        if g == p:
            tp[g] += 1
    ps, rs, fs = [], [], []
    for l in labels:
        p_l = _safe_div(tp[l], n_pred[l])
        r_l = _safe_div(tp[l], n_gold[l])
        ps.append(p_l)
        rs.append(r_l)
        fs.append(_safe_div(2 * p_l * r_l, p_l + r_l))
    k = len(labels)
    tp_all = sum(tp[l] for l in labels)
    micro_p = _safe_div(tp_all, sum(n_pred[l] for l in labels))
    micro_r = _safe_div(tp_all, sum(n_gold[l] for l in labels))
    return {
        "accuracy": _safe_div(sum(tp.values()), len(gold)),
        "macro_p": _safe_div(sum(ps), k),
        "macro_r": _safe_div(sum(rs), k),
        "macro_f1": _safe_div(sum(fs), k),
        "micro_f1": _safe_div(2 * micro_p * micro_r, micro_p + micro_r),
        "n": float(len(gold)),
    }


def harmonic_mean(seen_acc: float, unseen_acc: float) -> float:
    """``H = 2 * seen * unseen / (seen + unseen)`` (0 when both are 0)."""
    return _safe_div(2 * seen_acc * unseen_acc, seen_acc + unseen_acc)


def generalized_metrics(gold: Sequence[str], pred: Sequence[str], seen: Iterable[str],
                        unseen: Iterable[str]) -> dict[str, float]:
    """Generalised zero-shot: accuracy on the examples of seen and of unseen gold labels
    (predictions scored over all candidates) and their harmonic mean."""
    if len(gold) != len(pred):
        raise ValueError(f"generalized_metrics: {len(gold)} gold labels but {len(pred)} "
                         "predictions")
    seen, unseen = set(seen), set(unseen)

    def acc(part: set[str]) -> float:
        pairs = [(g, p) for g, p in zip(gold, pred) if g in part]
        return _safe_div(sum(g == p for g, p in pairs), len(pairs))

    s, u = acc(seen), acc(unseen)
    return {"seen_acc": s, "unseen_acc": u, "h": harmonic_mean(s, u)}
