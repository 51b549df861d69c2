"""Exact text-only ceilings of the photo benchmark.

Under the generator a label depends on the words only through a small *sufficient
statistic* of them: a cued mention's label is its cue; a neutral mention's type is uniform
over its name's type set, whatever the template or the other name; a neutral relation is
:func:`~mmie.data.photos.text.relation_of` two such types; a typing post's type depends on
its name's type set only. The generator knows these distributions exactly, so the best
text-only predictor is known in closed form: for each statistic, predict its most probable
label (ties broken in a fixed order), or, for F1, abstain on the statistics where that pays.
Its score on a split (told the gold mention boundaries) is the reported ceiling
(``entity_f1``, ``accuracy``, ...; abstention chosen exactly with
:func:`mmie.data.synthetic.best_f1_with_abstention`). No text-only model can beat it in
expectation, since names carry no information beyond their type sets.

Beside it, ``*_in_split_majority`` is the synthetic set's bound: each statistic's majority
label *on the split itself*, which is a little higher (it fits the split's sampling noise).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from fractions import Fraction
from typing import Hashable, Iterable, Sequence

from mmie.data.photos.posts import Post
from mmie.data.photos.text import COARSE, RELATIONS, TYPING_TYPES, relation_of
from mmie.data.synthetic import best_f1_with_abstention

__all__ = ["ner_ceiling", "re_ceiling", "typing_ceiling", "typeset_key"]


def typeset_key(types: Iterable[str]) -> tuple[str, ...]:
    """A type set in the fixed order of :data:`COARSE` (the same set, the same key)."""
    s = set(types)
    return tuple(t for t in COARSE if t in s)


def _groups(pairs: Iterable[tuple[Hashable, str]]) -> dict[Hashable, Counter[str]]:
    g: dict[Hashable, Counter[str]] = defaultdict(Counter)
    for key, label in pairs:
        g[key][label] += 1
    return g


def _argmax(dist: dict[str, Fraction], order: Sequence[str]) -> str:
    best = max(dist.values())
    return next(x for x in order if dist.get(x) == best)


def _score(groups: dict[Hashable, Counter[str]], predict, n_gold: int) -> tuple[float, float]:
    """(accuracy, best F1 with abstention) of ``predict(key) -> label | None``; labels
    predicted as None count as abstentions for F1."""
    n = sum(sum(c.values()) for c in groups.values())
    acc_hits, items = 0, []
    for key, c in groups.items():
        lab = predict(key)
        acc_hits += c.get(lab, 0)
        if lab is not None and lab != "None":
            items.append((c.get(lab, 0), sum(c.values())))
    f1 = float(best_f1_with_abstention(items, n_gold)) if n_gold and items else 0.0
    return acc_hits / n, f1


def _majority(groups: dict[Hashable, Counter[str]], n_gold: int,
              exclude_none: bool = False) -> tuple[float, float]:
    n = sum(sum(c.values()) for c in groups.values())
    acc = sum(c.most_common(1)[0][1] for c in groups.values()) / n
    items = []
    for c in groups.values():
        pos = [(v, k) for k, v in c.items() if not (exclude_none and k == "None")]
        if pos:
            items.append((max(pos)[0], sum(c.values())))
    return acc, (float(best_f1_with_abstention(items, n_gold)) if n_gold and items else 0.0)


def ner_ceiling(posts: Sequence[Post]) -> dict[str, float]:
    """Entity F1 (with abstention) and type accuracy of the best text-only predictor."""
    g = _groups((("cue", m.cue) if m.cue else ("set", typeset_key(m.typeset)), m.label)
                for p in posts for m in p.mentions)
    n = sum(sum(c.values()) for c in g.values())

    def predict(key):  # uniform over the set: the first type of the set in COARSE order
        return key[1] if key[0] == "cue" else key[1][0]

    acc, f1 = _score(g, predict, n)
    macc, mf1 = _majority(g, n)
    return {"entity_f1": f1, "type_accuracy": acc, "entity_f1_in_split_majority": mf1,
            "type_accuracy_in_split_majority": macc, "groups": len(g)}


def _relation_dist(sh: Sequence[str], st: Sequence[str]) -> dict[str, Fraction]:
    d: dict[str, Fraction] = defaultdict(Fraction)
    for a in sh:
        for b in st:
            d[relation_of(a, b)] += Fraction(1, len(sh) * len(st))
    return dict(d)


def re_ceiling(posts: Sequence[Post]) -> dict[str, float]:
    """Accuracy and micro F1 without ``None`` (with abstention) of the best text-only
    predictor."""
    g = _groups((("cue", p.relation) if p.mentions[0].cue else
                 ("set", typeset_key(p.mentions[0].typeset),
                  typeset_key(p.mentions[1].typeset)), p.relation) for p in posts)
    n_gold = sum(v for c in g.values() for k, v in c.items() if k != "None")

    def predict_acc(key):
        return key[1] if key[0] == "cue" else _argmax(_relation_dist(key[1], key[2]),
                                                      RELATIONS)

    def predict_f1(key):  # for F1 the most probable relation other than None
        if key[0] == "cue":
            return key[1]
        d = {k: v for k, v in _relation_dist(key[1], key[2]).items() if k != "None"}
        return _argmax(d, RELATIONS) if d else None

    acc, _ = _score(g, predict_acc, n_gold)
    _, f1 = _score(g, predict_f1, n_gold)
    macc, mf1 = _majority(g, n_gold, exclude_none=True)
    return {"accuracy": acc, "f1": f1, "accuracy_in_split_majority": macc,
            "f1_in_split_majority": mf1, "groups": len(g)}


def typing_ceiling(posts: Sequence[Post]) -> dict[str, float]:
    """Accuracy over all 12 types (and within each group of four) of the best text-only
    predictor. Typing names are drawn independently of the type, so this is chance up to
    the split's sampling noise; computed all the same, as a check."""
    g = _groups((typeset_key(p.mentions[0].typeset), p.mentions[0].label) for p in posts)
    n = sum(sum(c.values()) for c in g.values())
    order = [t["name"] for t in TYPING_TYPES]

    def predict(key):  # every type equally likely whatever the name
        return order[0]

    acc, _ = _score(g, predict, n)
    macc, _ = _majority(g, n)
    out = {"accuracy_all_types": acc, "accuracy_all_types_in_split_majority": macc,
           "groups": len(g)}
    # zero-shot: scored among the four types of the post's own group (the unseen group of a
    # fold)
    for grp in sorted({t["group"] for t in TYPING_TYPES}):
        members = [t["name"] for t in TYPING_TYPES if t["group"] == grp]
        gg = _groups((typeset_key(p.mentions[0].typeset), p.mentions[0].label) for p in posts
                     if p.mentions[0].label in members)
        if not gg:
            continue

        def predict_in(key, members=members):
            return members[0]

        out[f"accuracy_within_group_{grp}"], _ = _score(gg, predict_in, 1)
    return out
