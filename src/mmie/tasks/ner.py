"""Multimodal NER: BIO tagging of the words of a post, scored at the entity level."""

from __future__ import annotations

import torch

from mmie.data.schema import Example, Span
from mmie.data.tags import spans_to_tags, tags_to_spans
from mmie.tasks.base import Task


def bio_labels(types: list[str]) -> list[str]:
    """``["O", "B-LOC", "I-LOC", ...]`` over the sorted entity types."""
    out = ["O"]
    for t in sorted(set(types)):
        out += [f"B-{t}", f"I-{t}"]
    return out


class NERTask(Task):
    name = "ner"
    monitor = "f1"

    def __init__(self, labels: list[str]):
        super().__init__(labels)
        self.types = sorted({l[2:] for l in self.labels if l != "O"})

    @classmethod
    def from_examples(cls, examples: list[Example]) -> "NERTask":
        return cls(bio_labels([s.label for ex in examples for s in ex.entities]))

    @classmethod
    def from_data(cls, name, cfg, splits) -> "NERTask":
        """BIO labels over the entity types of the train split."""
        return cls.from_examples(splits["train"])

    @classmethod
    def from_dict(cls, d) -> "NERTask":
        return cls(d["labels"])

    def gold_tags(self, ex: Example) -> list[str]:
        return spans_to_tags(ex.entities, len(ex.tokens), scheme="BIO")

    def collate(self, examples, text_encoder, max_length, with_labels=True, phase="test"):
        enc = text_encoder.encode_words([ex.tokens for ex in examples], max_length=max_length,
                                        warn=False)
        batch = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask,
                 "word_index": enc.word_index, "word_mask": enc.word_mask}
        if with_labels:
            W = enc.word_index.shape[1]
            rows = []  # padded lists, one tensor at the end (not one per post)
            for ex in examples:
                ids = [self.label_id(t, example=ex) for t in self.gold_tags(ex)][:W]
                rows.append(ids + [0] * (W - len(ids)))
            batch["tags"] = torch.tensor(rows, dtype=torch.long).view(len(examples), W)
        return batch

    def decode(self, examples, outputs):
        """Model outputs ``{"tags": [ids of the kept words], "scores": [per word]}`` ->
        ``{"tags": [...], "entities": [Span...]}``; words cut by truncation are tagged O."""
        preds = []
        for ex, out in zip(examples, outputs):
            ids = list(out["tags"])
            scores = list(out.get("scores", [1.0] * len(ids)))
            n = len(ex.tokens)
            tags = [self.labels[i] for i in ids[:n]] + ["O"] * max(0, n - len(ids))
            scores = scores[:n] + [1.0] * max(0, n - len(scores))
            spans, _ = tags_to_spans(tags, scheme="BIO")
            ents = [Span(s.start, s.end, s.label,
                         score=round(float(sum(scores[s.start:s.end]) / (s.end - s.start)), 6))
                    for s in spans]
            preds.append({"tags": tags, "entities": ents})
        return preds

    def evaluate(self, examples, predictions):
        # lazy: the metrics import seqeval (and with it scikit-learn); prediction needs neither
        from mmie.metrics.ner import entity_scores

        gold = [self.gold_tags(ex) for ex in examples]
        pred = [p["tags"] for p in predictions]
        scores = entity_scores(gold, pred)
        scores["confusion"] = self.type_confusion(examples, predictions)
        return scores

    def type_confusion(self, examples, predictions) -> dict:
        """Per-type confusion at the span level: rows gold type, columns predicted type of the
        predicted span with the same boundaries; ``O`` = no span there (missed / spurious)."""
        labels = self.types + ["O"]
        idx = {t: i for i, t in enumerate(labels)}
        m = [[0] * len(labels) for _ in labels]
        for ex, p in zip(examples, predictions):
            g = {(s.start, s.end): s.label for s in ex.entities}
            q = {(s.start, s.end): s.label for s in p["entities"]}
            for key in set(g) | set(q):
                gi = idx.get(g.get(key, "O"), idx["O"])
                pi = idx.get(q.get(key, "O"), idx["O"])
                m[gi][pi] += 1
        return {"labels": labels, "matrix": m}

    def record(self, example, prediction):
        return {"id": example.id, "tokens": example.tokens, "image": example.image,
                "gold": [s.to_dict() for s in example.entities],
                "pred": [s.to_dict() for s in prediction["entities"]],
                "gold_tags": self.gold_tags(example), "pred_tags": prediction["tags"]}
