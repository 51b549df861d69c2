"""Zero-shot multimodal entity typing and relation extraction (MG-VMoE protocol).

Labels are split into seen (train), validation (model selection) and unseen (test) labels
(:mod:`mmie.tasks.zeroshot`); every instance goes with its label. Labels are embedded from
their names / descriptions, which are inputs (a data file users can edit), never trained
parameters, so any label can be scored at prediction time.

* ``typing``: one instance per mention (a post with several mentions gives several
  instances); the mention is wrapped in entity markers.
* ``zs_re``: one instance per MNRE head/tail pair; ``None`` is excluded.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Sequence

import torch

from mmie.data.schema import Example
from mmie.errors import ConfigError, DataError
from mmie.tasks.base import Task
from mmie.tasks.zeroshot import (ZeroShotSplit, generalized_metrics, leave_one_type_out,
                                 split_relations, typing_fold, zero_shot_metrics)

TWITTER_TYPES = {
    "PER": ("person", "a named person, real or fictional"),
    "LOC": ("location", "a named place such as a city, country, region or landmark"),
    "ORG": ("organization", "a named company, team, institution, band or other organization"),
    "OTHER": ("miscellaneous", "another named thing: an event, product, work or nationality"),
    "MISC": ("miscellaneous", "another named thing: an event, product, work or nationality"),
}

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
    def from_config(cls, cfg, train: list[Example], splits: dict[str, list[Example]]) -> "ZeroShotTask":
        from mmie.tasks.zeroshot import load_label_resource

        every = [e for s in ("train", "dev", "test") for e in splits.get(s, [])]
        if cfg.model.task == "re":
            labels = sorted({ex.relation for ex in every} - {"None"})
            n = len(labels)
            n_seen = max(1, round(n * 8 / 22))
            n_val = max(1, (n - n_seen) // 2)
            split = split_relations(labels, cfg.data.zero_shot_seed, n_seen=n_seen, n_val=n_val,
                                    n_unseen=n - n_seen - n_val)
            res = load_label_resource(cfg.data.label_descriptions or "mnre_relations")
            field = cfg.data.label_text
            texts = {l: (res.text(l, field) if l in res.labels else relation_name(l))
                     for l in split.all_labels}
            return cls("zs_re", split, texts)
        types = sorted({s.label for ex in every for s in ex.entities})
        if cfg.data.held_out_type:
            for key in ("held_out_type", "validation_type"):
                value = getattr(cfg.data, key)
                if value is not None and value not in types:
                    raise ConfigError(f"data.{key}={value!r} is not one of the data's types "
                                      f"{types}")
            split = leave_one_type_out(types, cfg.data.held_out_type, cfg.data.validation_type)
            resource = cfg.data.label_descriptions or (
                _default_resource(cfg, "typing") if cfg.data.name == "synthetic" else None)
            if resource:
                res = load_label_resource(resource)
                texts = {t: res.text(t, cfg.data.label_text) for t in types}
            else:
                texts = {t: twitter_type_text(t, cfg.data.label_text) for t in types}
            return cls("typing", split, texts)
        res = load_label_resource(cfg.data.label_descriptions or _default_resource(cfg, "typing"))
        if len(res.groups) != 3:
            raise ConfigError(f"{res.path}: entity typing needs three label groups")
        split = typing_fold(cfg.data.zero_shot_fold, res.groups)
        texts = {l: res.text(l, cfg.data.label_text) for l in split.all_labels}
        return cls("typing", split, texts)

    # ---- data -------------------------------------------------------------------------------
    def filter_splits(self, splits: dict[str, list[Example]], evaluation: bool = False):
        """Re-partition instances by label (pooled over the data set's splits), or, for the
        generalised leave-one-type-out protocol, keep the data's splits: train keeps the seen
        types, dev the seen and validation types (never the held-out type: model selection
        uses validation labels only), test the seen and held-out types."""
        pools = {s: expand_mentions(v) for s, v in splits.items()}
        pools = {s: [e for e in v if instance_label(e) != "None"] for s, v in pools.items()}
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
        :func:`~mmie.tasks.zeroshot.choose_calibration` found."""
        from mmie.tasks.zeroshot import choose_calibration

        if not self.split.generalized:
            raise ConfigError("calibrated stacking applies to generalised zero-shot only")
        found = choose_calibration([instance_label(e) for e in examples],
                                   [p["logits"] for p in predictions], self.split.seen)
        self.calibration = found["gamma"]
        return found

    def sampling_weights(self, examples: Sequence[Example]) -> list[float]:
        """Class-balanced sampling weights over the (seen) training labels: 1 / count."""
        from mmie.tasks.zeroshot import class_balanced_weights

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

    def predict_zero_shot(self, model, predictor, examples, images, candidates, texts, offsets):
        """Prediction on new posts with the candidate labels given at call time."""
        results = []
        for ex, img, cands in zip(examples, images, candidates):
            cands = list(cands) if cands else self.candidates("test")
            batch = self.collate([ex], model.text, predictor.cfg.data.max_length,
                                 with_labels=False, candidates=cands)
            batch.update(predictor.image_inputs([img]))
            batch = {k: v.to(predictor.device) if isinstance(v, torch.Tensor) else v
                     for k, v in batch.items()}
            with torch.no_grad():
                out = model.predict(batch)[0]
            key = "relation" if self.name == "zs_re" else "type"
            results.append({key: out["label"], "score": round(out["score"], 6),
                            "scores": {k: round(v, 6) for k, v in out["scores"].items()}})
        return results


def twitter_type_text(label: str, field: str = "name+description") -> str:
    """The built-in text of a Twitter NER type (``TWITTER_TYPES``) for a label-text field."""
    name, desc = TWITTER_TYPES.get(label, (label.lower(), label.lower()))
    return {"name": name, "description": desc}.get(field, f"{name}: {desc}")


def relation_name(label: str) -> str:
    """``/per/loc/place_of_residence`` -> ``place of residence`` (a label without a text)."""
    return label.rstrip("/").split("/")[-1].replace("_", " ")


def _default_resource(cfg, kind: str) -> str:
    if cfg.data.name == "synthetic":
        from mmie.data.paths import synthetic_dir

        return str(synthetic_dir(cfg.data.synthetic_size, cfg.cache_dir) / ("typing/types.json" if kind == "typing" else "re/relations.json"))
    if kind == "typing" and cfg.data.name == "photos_typing":  # its own label file
        from mmie.data import catalog

        return str(catalog.data_dir(cfg.data.data_dir) / "photos_typing" / "types.json")
    return "mnre_relations" if kind == "re" else "wikidiverse_types"


__all__ = ["ZeroShotTask", "expand_mentions", "instance_label", "random"]
