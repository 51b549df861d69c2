"""Entity-level NER scores.

Two entry points:

* :func:`entity_scores` scores BIO tag sequences with seqeval. The headline numbers are
  seqeval's default mode (conlleval-compatible: an ``I-`` tag after ``O`` or after another
  type opens an entity); the strict IOB2 numbers (such an ``I-`` is not an entity) sit beside
  them under ``strict_*`` keys.
* :func:`span_scores` scores sets of ``(start, end, type)`` spans by exact match, for
  end-to-end evaluation where predictions are spans rather than tags.

Both return micro precision / recall / F1 with the counts they come from, and the same numbers
per entity type. Every top-level value except ``per_type`` / ``strict_per_type`` is a plain
``float`` or ``int``, so the dict can be logged as it is after dropping those two keys.
Undefined ratios (no predictions, no gold entities) are 0.0.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Sequence

from seqeval.metrics.sequence_labeling import get_entities
from seqeval.metrics.sequence_labeling import precision_recall_fscore_support as prfs_default
from seqeval.metrics.v1 import precision_recall_fscore_support as prfs_strict
from seqeval.scheme import IOB2, Entities

from mmie.errors import DataError

__all__ = ["entity_scores", "span_scores"]

_TAG = re.compile(r"^(O|[BI]-.+)$")
SpanTuple = tuple[int, int, str]


def _prf(n_correct: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = n_correct / n_pred if n_pred else 0.0
    r = n_correct / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def _check_tags(gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> None:
    if len(gold_tags) != len(pred_tags):
        raise DataError(f"{len(gold_tags)} gold tag sequences but {len(pred_tags)} predicted ones")
    for i, (g, p) in enumerate(zip(gold_tags, pred_tags)):
        if len(g) != len(p):
            raise DataError(f"example {i}: {len(g)} gold tags but {len(p)} predicted tags")
        for name, seq in (("gold_tags", g), ("pred_tags", p)):
            for j, tag in enumerate(seq):
                if not isinstance(tag, str) or not _TAG.match(tag):
                    raise DataError(f"example {i}, token {j}: invalid tag {tag!r}; expected 'O', "
                                    f"'B-<type>' or 'I-<type>'", field=name)


def _default_spans(tags: Sequence[Sequence[str]]) -> list[set[SpanTuple]]:
    """Entities as seqeval's default mode reads them (end made exclusive)."""
    return [{(s, e + 1, t) for t, s, e in get_entities(list(seq))} for seq in tags]


def _strict_spans(ents: Entities) -> list[set[SpanTuple]]:
    """Entities as seqeval's strict IOB2 mode reads them."""
    return [{(e.start, e.end, e.tag) for e in sent} for sent in ents.entities]


def _counts(gold: list[set[SpanTuple]], pred: list[set[SpanTuple]]
            ) -> tuple[Counter, Counter, Counter]:
    n_gold, n_pred, n_correct = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred):
        n_gold.update(t for _, _, t in g)
        n_pred.update(t for _, _, t in p)
        n_correct.update(t for _, _, t in g & p)
    return n_gold, n_pred, n_correct


def _seqeval_block(gold_tags, pred_tags, gold_spans, pred_spans, prfs, **kw) -> dict[str, Any]:
    """Micro and per-type P/R/F1 from seqeval, with the counts behind them."""
    gold_tags, pred_tags = [list(s) for s in gold_tags], [list(s) for s in pred_tags]
    n_gold, n_pred, n_correct = _counts(gold_spans, pred_spans)
    if not n_gold and not n_pred:  # nothing to score (seqeval rejects an empty corpus)
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "n_pred": 0,
                "n_correct": 0, "per_type": {}}
    p, r, f, _ = prfs(gold_tags, pred_tags, average="micro", zero_division=0, **kw)
    out: dict[str, Any] = {"precision": float(p), "recall": float(r), "f1": float(f),
                           "support": sum(n_gold.values()), "n_pred": sum(n_pred.values()),
                           "n_correct": sum(n_correct.values())}
    types = sorted(set(n_gold) | set(n_pred))  # seqeval's own order of per-type rows
    per_type: dict[str, dict[str, Any]] = {}
    ps, rs, fs, ss = prfs(gold_tags, pred_tags, average=None, zero_division=0, **kw)
    for t, pt, rt, ft, st in zip(types, ps, rs, fs, ss, strict=True):
        per_type[t] = {"precision": float(pt), "recall": float(rt), "f1": float(ft),
                       "support": int(st), "n_pred": n_pred[t], "n_correct": n_correct[t]}
    out["per_type"] = per_type
    return out


def entity_scores(gold_tags: Sequence[Sequence[str]],
                  pred_tags: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level micro and per-type scores of BIO tag sequences (one list per sentence).

    Returns ``precision``, ``recall``, ``f1`` (seqeval default, conlleval-compatible mode: the
    headline), ``support`` (gold entities), ``n_pred``, ``n_correct``, the same six under
    ``strict_`` (seqeval ``mode="strict", scheme=IOB2``), and ``per_type`` /
    ``strict_per_type``: ``{type: {precision, recall, f1, support, n_pred, n_correct}}``.

    Raises :class:`~mmie.errors.DataError` naming the example index when gold and predicted
    sequences differ in length, or naming example and token for a tag that is not ``O``,
    ``B-<type>`` or ``I-<type>``.
    """
    _check_tags(gold_tags, pred_tags)
    default = _seqeval_block(gold_tags, pred_tags, _default_spans(gold_tags),
                             _default_spans(pred_tags), prfs_default)
    # seqeval's strict scorer accepts the parsed entities, so each side is parsed only once
    ents_gold = Entities([list(s) for s in gold_tags], IOB2)
    ents_pred = Entities([list(s) for s in pred_tags], IOB2)
    strict = _seqeval_block(gold_tags, pred_tags, _strict_spans(ents_gold),
                            _strict_spans(ents_pred), prfs_strict, scheme=IOB2,
                            entities_true=ents_gold, entities_pred=ents_pred)
    out = {k: v for k, v in default.items() if k != "per_type"}
    out.update({f"strict_{k}": v for k, v in strict.items() if k != "per_type"})
    out["per_type"] = default["per_type"]
    out["strict_per_type"] = strict["per_type"]
    return out


def _as_span_set(spans: Iterable[Any], i: int, field: str) -> set[SpanTuple]:
    out = set()
    for s in spans:
        if hasattr(s, "label") and hasattr(s, "start"):  # mmie.data.schema.Span
            s = (s.start, s.end, s.label)
        try:
            start, end, label = s
        except (TypeError, ValueError):
            raise DataError(f"example {i}: expected (start, end, type) spans, got {s!r}",
                            field=field) from None
        out.add((int(start), int(end), str(label)))
    return out


def span_scores(gold: Sequence[Iterable[SpanTuple]],
                pred: Sequence[Iterable[SpanTuple]]) -> dict[str, Any]:
    """Exact-match micro and per-type scores of entity spans, one collection per example.

    A predicted span is correct when ``(start, end, type)`` equals a gold span of the same
    example. Items may be ``(start, end, type)`` tuples or :class:`~mmie.data.schema.Span`.
    Returns ``precision``, ``recall``, ``f1``, ``support``, ``n_pred``, ``n_correct`` and
    ``per_type`` as :func:`entity_scores` does.
    """
    if len(gold) != len(pred):
        raise DataError(f"{len(gold)} gold examples but {len(pred)} predicted ones")
    g = [_as_span_set(s, i, "gold") for i, s in enumerate(gold)]
    p = [_as_span_set(s, i, "pred") for i, s in enumerate(pred)]
    n_gold, n_pred, n_correct = _counts(g, p)
    pr, rc, f1 = _prf(sum(n_correct.values()), sum(n_pred.values()), sum(n_gold.values()))
    per_type = {}
    for t in sorted(set(n_gold) | set(n_pred)):
        pt, rt, ft = _prf(n_correct[t], n_pred[t], n_gold[t])
        per_type[t] = {"precision": pt, "recall": rt, "f1": ft, "support": n_gold[t],
                       "n_pred": n_pred[t], "n_correct": n_correct[t]}
    return {"precision": pr, "recall": rc, "f1": f1, "support": sum(n_gold.values()),
            "n_pred": sum(n_pred.values()), "n_correct": sum(n_correct.values()),
            "per_type": per_type}
