"""What every task shares: label vocabulary, batching of examples, decoding and scoring.

A task turns :class:`~mmie.data.schema.Example` objects into model batches (``collate``),
turns model outputs back into spans / labels (``decode``), and scores predictions against the
gold annotations (``evaluate``). Models never see examples; the data layer never sees models.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from mmie.data.schema import Example
from mmie.errors import DataError


class Task:
    name: str = ""
    #: the metric used for model selection on the dev split
    monitor: str = "f1"

    def __init__(self, labels: Sequence[str]):
        self.labels = list(labels)
        self.label2id = {l: i for i, l in enumerate(self.labels)}

    def label_id(self, label: str, *, example: Example | None = None) -> int:
        try:
            return self.label2id[label]
        except KeyError:
            where = f" in example {example.id!r}" if example is not None else ""
            raise DataError(f"unknown label {label!r}{where}; the model knows: "
                            f"{', '.join(self.labels)}", field="label") from None

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.name, "labels": self.labels}

    # interface -----------------------------------------------------------------------------
    def collate(self, examples: list[Example], text_encoder, max_length: int,
                with_labels: bool = True, **kwargs: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def decode(self, examples: list[Example], outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def evaluate(self, examples: list[Example], predictions: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def record(self, example: Example, prediction: dict[str, Any]) -> dict[str, Any]:
        """One line of a predictions file: gold and predicted, enough to recompute the metric."""
        raise NotImplementedError
