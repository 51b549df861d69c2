"""Multimodal relation extraction between a given head and tail mention (MNRE protocol)."""

from __future__ import annotations

import torch

from mmie.data.schema import Example
from mmie.metrics.re import relation_scores
from mmie.tasks.base import Task

NONE_LABEL = "None"


class RETask(Task):
    name = "re"
    monitor = "f1"

    @classmethod
    def from_examples(cls, examples: list[Example]) -> "RETask":
        labels = sorted({ex.relation for ex in examples} | {NONE_LABEL})
        labels.remove(NONE_LABEL)
        return cls([NONE_LABEL] + labels)

    @classmethod
    def from_data(cls, name, cfg, splits) -> "RETask":
        """``None`` first, then the relations of the train split, sorted."""
        return cls.from_examples(splits["train"])

    @classmethod
    def from_dict(cls, d) -> "RETask":
        return cls(d["labels"])

    def collate(self, examples, text_encoder, max_length, with_labels=True, phase="test"):
        heads = [(ex.head.start, ex.head.end) for ex in examples]
        tails = [(ex.tail.start, ex.tail.end) for ex in examples]
        enc = text_encoder.encode_pair([ex.tokens for ex in examples], heads, tails,
                                       max_length=max_length, warn=False)
        batch = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask,
                 "head_pos": enc.head_pos, "tail_pos": enc.tail_pos}
        if with_labels:
            batch["labels"] = torch.tensor([self.label_id(ex.relation, example=ex)
                                            for ex in examples], dtype=torch.long)
        return batch

    def decode(self, examples, outputs):
        return [{"label": self.labels[o["label"]], "score": round(float(o["score"]), 6)}
                for o in outputs]

    def evaluate(self, examples, predictions):
        return relation_scores([ex.relation for ex in examples],
                               [p["label"] for p in predictions], none_label=NONE_LABEL)

    def record(self, example, prediction):
        return {"id": example.id, "tokens": example.tokens, "image": example.image,
                "head": example.head.to_dict(), "tail": example.tail.to_dict(),
                "gold": example.relation, "pred": prediction["label"],
                "score": prediction["score"]}
