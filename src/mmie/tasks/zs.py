"""The zero-shot task (MG-VMoE protocol): entity typing and relation extraction over labels
scored by their names / descriptions.

Labels are split into seen (train), validation (model selection) and unseen (test) labels
(:mod:`mmie.tasks.zs_labels`); every instance goes with its label. Label texts are inputs (a
data file users can edit), never trained parameters, so any label can be scored at
prediction time. Scores: :mod:`mmie.metrics.zeroshot`.

* ``typing``: one instance per mention (a post with several mentions gives several
  instances); the mention is wrapped in entity markers.
* ``zs_re``: one instance per MNRE head/tail pair; ``None`` is excluded.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from mmie.data.schema import Example
from mmie.errors import ConfigError, DataError
from mmie.metrics.zeroshot import generalized_metrics, zero_shot_metrics
from mmie.tasks.base import Task
from mmie.tasks.zs_labels import NONE_LABEL, ZeroShotSplit, class_balanced_weights, label_split

PART_OF = {"train": "train", "dev": "val", "test": "test"}


def expand_mentions(examples: Sequence[Example]) -> list[Example]:
    """One typing instance per mention: ``entities=[mention]`` (label = its type)."""
    out = []
    for ex in examples:
        if ex.relations:
            out.append(ex)
            continue
        for k, span in enumerate(ex.entities):
            out.append(replace(ex, id=f"{ex.id}#{k}", entities=[span], relations=[]))
    return out


def instance_label(ex: Example) -> str:
    return ex.relations[0].label if ex.relations else ex.entities[0].label


class ZeroShotTask(Task):
    zero_shot = True
    monitor = "accuracy"

    def __init__(self, kind: str, split: ZeroShotSplit, label_texts: dict[str, str],
                 calibration: float = 0.0):
        if kind not in ("typing", "zs_re"):
            raise ConfigError(f"zero-shot task kind {kind!r}")
        self.name = kind
        self.split = split
        self.label_texts = dict(label_texts)
        #: calibrated stacking: subtracted from the seen labels' scores at evaluation and
        #: prediction (chosen on validation, :meth:`calibrate`; saved with the model)
        self.calibration = float(calibration)
        super().__init__(split.all_labels)
        missing = [l for l in self.labels if l not in self.label_texts]
        if missing:
            raise DataError(f"no name/description for labels {missing}", field="label_texts")

    # ---- construction -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"task": self.name, "labels": self.labels, "split": self.split.to_dict(),
                "label_texts": self.label_texts, "calibration": self.calibration}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ZeroShotTask":
        return cls(d["task"], ZeroShotSplit.from_dict(d["split"]), d["label_texts"],
                   calibration=d.get("calibration", 0.0))

    @classmethod
    def from_data(cls, name, cfg, splits) -> "ZeroShotTask":
        """The label split and texts of the run's config over the data's labels
        (:func:`mmie.tasks.zs_labels.label_split`)."""
        split, texts = label_split(name, cfg, splits)
        return cls(name, split, texts)

    # ---- data -------------------------------------------------------------------------------
    def filter_splits(self, splits: dict[str, list[Example]], evaluation: bool = False):
        """Re-partition instances by label (pooled over the data set's splits), or, for the
        generalised leave-one-type-out protocol, keep the data's splits: train keeps the seen
        types, dev the seen and validation types (never the held-out type: model selection
        uses validation labels only), test the seen and held-out types."""
        pools = {s: expand_mentions(v) for s, v in splits.items()}
        pools = {s: [e for e in v if instance_label(e) != NONE_LABEL] for s, v in pools.items()}
        if self.split.generalized:
            out = {}
            for s, v in pools.items():
                allowed = set(self.split.gold_labels(PART_OF.get(s, "test")))
                out[s] = [e for e in v if instance_label(e) in allowed]
            return out
        if evaluation:  # a single split handed in for evaluation: keep its unseen labels
            return {s: [e for e in v if instance_label(e) in set(self.split.unseen)]
                    for s, v in pools.items()}
        every = [e for s in ("train", "dev", "test") for e in pools.get(s, [])]
        return {s: [e for e in every if instance_label(e) in set(self.split.labels(PART_OF[s]))]
                for s in ("train", "dev", "test")}

    def candidates(self, phase: str) -> list[str]:
        return list(self.split.candidates(PART_OF.get(phase, phase)))

    def collate(self, examples, text_encoder, max_length, with_labels=True, phase="test",
                candidates: Sequence[str] | None = None):
        hs, he, ts, te = text_encoder.entity_markers
        words = [ex.tokens for ex in examples]
        if self.name == "zs_re":
            enc = text_encoder.encode_pair(words, [(ex.head.start, ex.head.end) for ex in examples],
                                           [(ex.tail.start, ex.tail.end) for ex in examples],
                                           max_length=max_length, warn=False)
            head_pos, tail_pos = enc.head_pos, enc.tail_pos
        else:
            marks = [[(ex.entities[0].start, ex.entities[0].end, hs, he)] for ex in examples]
            enc = text_encoder.encode_words(words, max_length, markers=marks, warn=False)
            head_pos = tail_pos = enc.marker_pos[:, 0].clone()
        cands = list(candidates) if candidates else self.candidates(phase)
        lab = text_encoder.encode_texts([self.label_text(c) for c in cands], max_length=48)
        batch: dict[str, Any] = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask,
                                 "head_pos": head_pos, "tail_pos": tail_pos,
                                 "label_input_ids": lab.input_ids,
                                 "label_attention_mask": lab.attention_mask,
                                 "candidates": cands}
        if self.calibration and phase != "train":
            batch["score_offset"] = self.score_offset(cands)
        if with_labels:
            idx = {c: i for i, c in enumerate(cands)}
            try:
                batch["labels"] = torch.tensor([idx[instance_label(ex)] for ex in examples])
            except KeyError as e:
                raise DataError(f"gold label {e} is not among the candidate labels {cands}") from None
        return batch

    def score_offset(self, candidates: Sequence[str]) -> torch.Tensor:
        """``[L]``: the calibration constant for seen candidates, 0 for the others."""
        seen = set(self.split.seen)
        return torch.tensor([self.calibration if c in seen else 0.0 for c in candidates])

    def calibrate(self, examples: Sequence[Example], predictions: Sequence[dict[str, Any]]
                  ) -> dict[str, float]:
        """Calibrated stacking: choose the constant on validation predictions (their raw
        ``logits``) and keep it (:attr:`calibration`). Returns what
        :func:`choose_calibration` found."""
        if not self.split.generalized:
            raise ConfigError("calibrated stacking applies to generalised zero-shot only")
        found = choose_calibration([instance_label(e) for e in examples],
                                   [p["logits"] for p in predictions], self.split.seen)
        self.calibration = found["gamma"]
        return found

    def sampling_weights(self, examples: Sequence[Example]) -> list[float]:
        """Class-balanced sampling weights over the (seen) training labels: 1 / count."""
        return class_balanced_weights([instance_label(e) for e in examples])

    def label_text(self, label: str) -> str:
        """The text a label is embedded from; a label the model never saw is read as is."""
        return self.label_texts.get(label, label)

    # ---- outputs ----------------------------------------------------------------------------
    def decode(self, examples, outputs):
        out = []
        for o in outputs:
            d = {"label": o["label"], "score": round(float(o["score"]), 6),
                 "scores": {k: round(float(v), 6) for k, v in o.get("scores", {}).items()}}
            if "logits" in o:  # raw (uncalibrated) scores: what calibration is chosen on
                d["logits"] = {k: float(v) for k, v in o["logits"].items()}
            out.append(d)
        return out

    def evaluate(self, examples, predictions):
        gold = [instance_label(ex) for ex in examples]
        pred = [p["label"] for p in predictions]
        labels = sorted(set(gold))
        m = zero_shot_metrics(gold, pred, labels)
        out = {**m, "f1": m["macro_f1"], "n": len(gold), "chance": 1.0 / max(1, len(labels))}
        if self.split.generalized:  # "unseen": every label not seen in training
            others = [l for l in self.labels if l not in set(self.split.seen)]
            g = generalized_metrics(gold, pred, self.split.seen, others)
            out.update({"seen_accuracy": g["seen_acc"], "unseen_accuracy": g["unseen_acc"],
                        "harmonic_mean": g["h"]})
            out["chance"] = 1.0 / max(1, len(self.labels))
        return out

    def record(self, example, prediction):
        return {"id": example.id, "tokens": example.tokens, "image": example.image,
                "mentions": [s.to_dict() for s in example.entities],
                "gold": instance_label(example), "pred": prediction["label"],
                "score": prediction["score"]}


# ---------------------------------------------------------------------------------------------
# calibrated stacking (generalised zero-shot)
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


__all__ = ["ZeroShotTask", "calibrated_predictions", "choose_calibration", "expand_mentions",
           "instance_label"]
