"""The zero-shot protocol: label splits, label texts and metrics (MG-VMoE, Zhou et al. 2025).

Labels, not examples, are split: every instance of a label goes with its label.

* Relations (MNRE without ``None``: 22 relations): :func:`split_relations` shuffles the sorted
  unique labels with ``random.Random(seed)`` and cuts 8 seen (train) / 7 validation / 7 unseen
  (test). Run at least 5 seeds (DECISIONS.md).
* Entity types (the WikiDiverse-derived set, 12 types in three fixed groups of 4):
  :func:`typing_fold` rotates the groups, fold ``f`` = seen ``G[f]``, val ``G[f+1]``, unseen
  ``G[f+2]`` (mod 3): fold 0 = G1/G2/G3, fold 1 = G2/G3/G1, fold 2 = G3/G1/G2.
* Twitter NER types (4 types): :func:`leave_one_type_out` trains on the other types and scores
  over all 4 candidates (generalised zero-shot); the held-out type is the test label only.
  Model selection never sees its labels: by default it uses the dev posts of the seen types;
  with a ``validation`` type, that type is held out of training as well and validated on
  (which also lets calibrated stacking choose its constant, :func:`choose_calibration`).

Label texts are inputs (the text encoder reads them), loaded from JSON resources shipped in
``mmie/resources`` (:func:`load_label_resource`). Metrics (:func:`zero_shot_metrics`) are
accuracy, macro precision / recall / F1 over the evaluated labels and micro F1; with gold and
predictions confined to those labels, micro F1 equals accuracy.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from mmie.errors import ConfigError, DataError

T = TypeVar("T")

#: the dataset's negative relation, never a zero-shot label
NONE_LABEL = "None"
PARTS = ("train", "val", "test")
LABEL_TEXT_FIELDS = ("name", "description", "name+description")


@dataclass(frozen=True)
class ZeroShotSplit:
    """Seen (train), validation and unseen (test) labels.

    ``generalized``: evaluation scores over seen + evaluated labels (generalised zero-shot),
    not over the evaluated labels alone.
    """

    seen: tuple[str, ...]
    val: tuple[str, ...]
    unseen: tuple[str, ...]
    generalized: bool = False

    def labels(self, part: str) -> tuple[str, ...]:
        """The gold labels of a data part: ``train`` -> seen, ``val`` -> val, ``test`` -> unseen."""
        _check_part(part)
        return {"train": self.seen, "val": self.val, "test": self.unseen}[part]

    def candidates(self, part: str) -> tuple[str, ...]:
        """The labels a model scores over for ``part``: the part's own labels; for val / test
        when ``generalized``, every label (seen, validation and unseen; order kept)."""
        own = self.labels(part)
        if part == "train" or not self.generalized:
            return own
        return self.all_labels

    def gold_labels(self, part: str) -> tuple[str, ...]:
        """The gold labels whose instances a part holds: ``labels(part)``; when
        ``generalized``, also the seen labels for val and test (validation never holds an
        unseen label)."""
        own = self.labels(part)
        if part == "train" or not self.generalized:
            return own
        return tuple(dict.fromkeys(self.seen + own))

    @property
    def all_labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.seen + self.val + self.unseen))

    def to_dict(self) -> dict[str, Any]:
        return {"seen": list(self.seen), "val": list(self.val), "unseen": list(self.unseen),
                "generalized": self.generalized}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ZeroShotSplit":
        try:
            return cls(tuple(d["seen"]), tuple(d["val"]), tuple(d["unseen"]),
                       bool(d.get("generalized", False)))
        except KeyError as e:
            raise ConfigError(f"zero-shot split: missing key {e.args[0]!r} "
                              "(expected seen, val, unseen)") from None


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ConfigError(f"unknown data part {part!r}; expected one of {', '.join(PARTS)}")


# ---------------------------------------------------------------------------------------------
# splits
def split_relations(labels: Iterable[str], seed: int, n_seen: int = 8, n_val: int = 7,
                    n_unseen: int = 7, exclude: Sequence[str] = (NONE_LABEL,)) -> ZeroShotSplit:
    """Shuffle the sorted unique ``labels`` (minus ``exclude``) with ``random.Random(seed)``
    and cut them into ``n_seen`` / ``n_val`` / ``n_unseen``; each part is returned sorted.

    ``labels`` may repeat (e.g. one entry per instance). The three sizes must add up to the
    number of labels, so that no label is silently dropped.
    """
    pool = sorted(set(labels) - set(exclude))
    if min(n_seen, n_val, n_unseen) < 1:
        raise ConfigError(f"zero-shot split sizes must be >= 1, got seen={n_seen}, "
                          f"val={n_val}, unseen={n_unseen}")
    if n_seen + n_val + n_unseen != len(pool):
        raise ConfigError(f"zero-shot split sizes seen={n_seen} + val={n_val} + "
                          f"unseen={n_unseen} = {n_seen + n_val + n_unseen}, but there are "
                          f"{len(pool)} labels (excluding {list(exclude)})")
    random.Random(seed).shuffle(pool)
    seen = tuple(sorted(pool[:n_seen]))
    val = tuple(sorted(pool[n_seen:n_seen + n_val]))
    unseen = tuple(sorted(pool[n_seen + n_val:]))
    return ZeroShotSplit(seen, val, unseen)


def typing_fold(fold: int, groups: Mapping[str, Sequence[str]] | Sequence[Sequence[str]]
                | None = None) -> ZeroShotSplit:
    """Fold ``fold`` (0, 1, 2) of the rotating three-group entity-typing protocol.

    ``groups``: three label groups, as a sequence or a mapping in order (default: G1, G2, G3
    of ``wikidiverse_types.json``). Fold ``f``: seen ``G[f]``, val ``G[(f+1) % 3]``,
    unseen ``G[(f+2) % 3]``.
    """
    if groups is None:
        groups = load_label_resource("wikidiverse_types").groups
    seq = [tuple(g) for g in (groups.values() if isinstance(groups, Mapping) else groups)]
    if len(seq) != 3:
        raise ConfigError(f"typing_fold needs exactly 3 label groups, got {len(seq)}")
    flat = [l for g in seq for l in g]
    if len(set(flat)) != len(flat):
        dup = sorted(l for l, c in Counter(flat).items() if c > 1)
        raise ConfigError(f"typing_fold: labels in more than one group: {dup}")
    if fold not in (0, 1, 2):
        raise ConfigError(f"typing fold must be 0, 1 or 2, got {fold!r}")
    return ZeroShotSplit(seq[fold], seq[(fold + 1) % 3], seq[(fold + 2) % 3])


def leave_one_type_out(types: Sequence[str], held_out: str,
                       validation: str | None = None) -> ZeroShotSplit:
    """Generalised zero-shot over a small type set (Twitter's 4 types): test on ``held_out``
    while scoring over all types; its labels are never used before the test.

    ``validation=None``: train on every other type; validation = the dev posts of those seen
    types (``val`` is empty). ``validation=V``: ``V`` is held out of training too and is the
    validation label (seen types = the remaining ones).
    """
    types = tuple(dict.fromkeys(types))
    if held_out not in types:
        raise ConfigError(f"held-out type {held_out!r} is not one of {list(types)}")
    if validation is not None and (validation not in types or validation == held_out):
        raise ConfigError(f"validation type {validation!r} must be one of {list(types)} other "
                          f"than the held-out type {held_out!r}")
    val = (validation,) if validation is not None else ()
    seen = tuple(t for t in types if t != held_out and t not in val)
    return ZeroShotSplit(seen, val, (held_out,), generalized=True)


def filter_examples(examples: Iterable[T], labels: Iterable[str],
                    label_of: Callable[[T], str | None]) -> list[T]:
    """The examples whose ``label_of(example)`` is in ``labels`` (order kept)."""
    keep = set(labels)
    return [ex for ex in examples if label_of(ex) in keep]


def calibrated_predictions(logits: Sequence[Mapping[str, float]], seen: Iterable[str],
                           gamma: float) -> list[str]:
    """Calibrated stacking (Chao et al., 2016): the argmax of ``score - gamma`` for seen labels
    and ``score`` for the others, per example (``logits``: candidate -> raw score)."""
    seen = set(seen)
    return [max(row, key=lambda c: row[c] - (gamma if c in seen else 0.0)) for row in logits]


def choose_calibration(gold: Sequence[str], logits: Sequence[Mapping[str, float]],
                       seen: Iterable[str]) -> dict[str, float]:
    """The constant ``gamma`` subtracted from the seen labels' scores that maximises, on
    validation, the harmonic mean of the accuracy on seen-label and on other-label examples.

    Accuracy is piecewise constant in ``gamma`` with steps where an example's best seen score
    minus its best other score, ``d_i``, equals ``gamma``; the candidates are 0, the midpoints
    between consecutive ``d_i`` and a point beyond each end. Ties go to the smallest
    ``|gamma|``. Returns ``{"gamma", "h", "seen_acc", "unseen_acc", "h_at_0"}``.
    Raises :class:`ConfigError` when the validation examples hold no seen or no other label.
    """
    import numpy as np

    seen = set(seen)
    if len(gold) != len(logits):
        raise ValueError(f"choose_calibration: {len(gold)} gold labels, {len(logits)} rows")
    is_seen = np.array([g in seen for g in gold])
    if is_seen.all() or not is_seen.any():
        raise ConfigError("calibrated stacking needs validation examples of seen labels and of "
                          "labels not seen in training (set data.validation_type)")
    d, seen_ok, other_ok = [], [], []
    for g, row in zip(gold, logits):
        s_lab = max((c for c in row if c in seen), key=row.__getitem__)
        o_lab = max((c for c in row if c not in seen), key=row.__getitem__)
        d.append(row[s_lab] - row[o_lab])
        seen_ok.append(s_lab == g)
        other_ok.append(o_lab == g)
    d, seen_ok, other_ok = np.array(d), np.array(seen_ok), np.array(other_ok)
    u = np.unique(d)
    cands = np.concatenate([[0.0, u[0] - 1.0, u[-1] + 1.0], (u[1:] + u[:-1]) / 2])
    pred_seen = d[None, :] > cands[:, None]  # [C, N]: the seen label wins after the offset
    correct = np.where(pred_seen, seen_ok[None, :], other_ok[None, :])
    acc_s = correct[:, is_seen].mean(1)
    acc_u = correct[:, ~is_seen].mean(1)
    h = np.where(acc_s + acc_u > 0, 2 * acc_s * acc_u / np.maximum(acc_s + acc_u, 1e-12), 0.0)
    best = max(range(len(cands)), key=lambda i: (round(float(h[i]), 12), -abs(cands[i])))
    return {"gamma": float(cands[best]), "h": float(h[best]), "seen_acc": float(acc_s[best]),
            "unseen_acc": float(acc_u[best]), "h_at_0": float(h[0])}


def class_balanced_weights(example_labels: Sequence[str]) -> list[float]:
    """Per-example sampling weights ``1 / count(label)`` (for class-balanced sampling over the
    seen labels, e.g. with ``torch.utils.data.WeightedRandomSampler``)."""
    counts = Counter(example_labels)
    return [1.0 / counts[l] for l in example_labels]


# ---------------------------------------------------------------------------------------------
# label texts
@dataclass(frozen=True)
class LabelResource:
    """A label-text resource: ``labels[label] = {"name": ..., "description": ...}``, and the
    label groups when the resource defines them."""

    labels: dict[str, dict[str, str]]
    groups: dict[str, tuple[str, ...]]
    path: str

    def text(self, label: str, field: str = "name") -> str:
        """The text the label encoder reads: ``name``, ``description`` or
        ``name+description`` (``"name: description"``)."""
        if field not in LABEL_TEXT_FIELDS:
            raise ConfigError(f"label text field {field!r}; expected one of "
                              f"{', '.join(LABEL_TEXT_FIELDS)}")
        try:
            entry = self.labels[label]
        except KeyError:
            raise DataError(f"label {label!r} has no text in this resource "
                            f"(it has {len(self.labels)} labels)", path=self.path,
                            field="labels") from None
        if field == "name+description":
            return f"{entry['name']}: {entry['description']}"
        return entry[field]

    def texts(self, labels: Iterable[str], field: str = "name") -> list[str]:
        return [self.text(l, field) for l in labels]


def _resolve(path_or_resource: str | Path) -> tuple[str, str]:
    """``(text, where)`` of a file path or a resource name shipped in ``mmie/resources``
    (``"mnre_relations"`` or ``"mnre_relations.json"``)."""
    p = Path(path_or_resource)
    if p.is_file():
        return p.read_text(encoding="utf-8"), str(p)
    name = str(path_or_resource)
    if "/" not in name and "\\" not in name:
        fname = name if name.endswith(".json") else name + ".json"
        res = resources.files("mmie").joinpath("resources", fname)
        if res.is_file():
            return res.read_text(encoding="utf-8"), str(res)
    shipped = sorted(r.name.removesuffix(".json")
                     for r in resources.files("mmie").joinpath("resources").iterdir()
                     if r.name.endswith(".json"))
    raise DataError(f"no such label file or resource; shipped resources: {shipped}",
                    path=str(path_or_resource))


def load_label_resource(path_or_resource: str | Path) -> LabelResource:
    """Read a label-text JSON: ``{"labels": {label: {"name": str, "description": str}},
    "groups": {group: [label, ...]}?}``. A bare label value that is a string is taken as both
    name and description."""
    text, where = _resolve(path_or_resource)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", path=where, line=e.lineno) from None
    if isinstance(data, list):  # [{"name", "description", "group"}, ...] (synthetic types.json)
        conv: dict[str, Any] = {"labels": {}, "groups": {}}
        for i, item in enumerate(data):
            if not isinstance(item, dict) or "name" not in item:
                raise DataError(f"item {i}: expected an object with 'name' and 'description'",
                                path=where, field="labels")
            conv["labels"][item["name"]] = {"name": item["name"],
                                            "description": item.get("description", item["name"])}
            if "group" in item:
                conv["groups"].setdefault(f"G{item['group']}", []).append(item["name"])
        data = conv
    if not isinstance(data, dict) or not isinstance(data.get("labels"), dict):
        raise DataError("expected an object with a 'labels' object", path=where, field="labels")
    labels: dict[str, dict[str, str]] = {}
    for label, entry in data["labels"].items():
        if isinstance(entry, str):
            entry = {"name": entry, "description": entry}
        if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) and entry[k].strip() for k in ("name", "description")):
            raise DataError("each label needs non-empty string 'name' and 'description'",
                            path=where, field=f"labels.{label}")
        labels[label] = {"name": entry["name"], "description": entry["description"]}
    groups: dict[str, tuple[str, ...]] = {}
    for g, members in (data.get("groups") or {}).items():
        if not isinstance(members, list):
            raise DataError("a group must be a list of labels", path=where, field=f"groups.{g}")
        missing = [m for m in members if m not in labels]
        if missing:
            raise DataError(f"group members without a label entry: {missing}", path=where,
                            field=f"groups.{g}")
        groups[g] = tuple(members)
    return LabelResource(labels=labels, groups=groups, path=where)


def load_label_descriptions(path_or_resource: str | Path,
                            field: str = "description") -> dict[str, str]:
    """``{label: text}`` from a label resource; ``field`` as in :meth:`LabelResource.text`."""
    res = load_label_resource(path_or_resource)
    return {label: res.text(label, field) for label in res.labels}


# ---------------------------------------------------------------------------------------------
# metrics
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
