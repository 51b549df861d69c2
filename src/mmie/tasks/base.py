"""The task contract: label vocabulary, batching of examples, decoding and scoring.

A task turns :class:`~mmie.data.schema.Example` objects into model batches (``collate``),
turns model outputs back into spans / labels (``decode``), and scores predictions against the
gold annotations (``evaluate``). Models never see examples; the data layer never sees models.
Every task type is listed in :mod:`mmie.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from mmie.data.schema import Example
from mmie.errors import DataError

if TYPE_CHECKING:  # typing only
    from mmie.config import RunConfig


class Task(ABC):
    """What training, evaluation and prediction call on a task; subclasses implement every
    abstract method."""

    name: str = ""
    #: the metric used for model selection on the dev split
    monitor: ClassVar[str] = "f1"
    #: labels are scored by their names / descriptions; ``collate`` takes candidate labels
    zero_shot: ClassVar[bool] = False

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

    # ---- construction and saving --------------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_data(cls, name: str, cfg: "RunConfig", splits: dict[str, list[Example]]) -> "Task":
        """The task of a new run: ``name`` (a :data:`mmie.registry.TASK_TYPES` key), its labels
        taken from the data (``splits``: train, dev, test examples as read)."""

    def to_dict(self) -> dict[str, Any]:
        """What a model directory stores to rebuild the task (:meth:`from_dict`)."""
        return {"task": self.name, "labels": self.labels}

    @classmethod
    @abstractmethod
    def from_dict(cls, d: dict[str, Any]) -> "Task":
        """Inverse of :meth:`to_dict`."""

    # ---- data ---------------------------------------------------------------------------------
    def filter_splits(self, splits: dict[str, list[Example]],
                      evaluation: bool = False) -> dict[str, list[Example]]:
        """The task's instances of each split (default: the examples as read)."""
        return splits

    def sampling_weights(self, examples: list[Example]) -> list[float] | None:
        """Per-example weights for sampling training batches with replacement; ``None`` (the
        default): plain shuffling."""
        return None

    @abstractmethod
    def collate(self, examples: list[Example], text_encoder, max_length: int,
                with_labels: bool = True, phase: str = "test") -> dict[str, Any]:
        """A model batch of ``examples`` (``phase``: the split, for tasks whose candidate
        labels depend on it)."""

    # ---- outputs ------------------------------------------------------------------------------
    @abstractmethod
    def decode(self, examples: list[Example], outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Model outputs (``model.predict``) -> predictions (spans / labels with scores)."""

    @abstractmethod
    def evaluate(self, examples: list[Example], predictions: list[dict[str, Any]]) -> dict[str, Any]:
        """Scores of ``predictions`` against the gold annotations of ``examples``."""

    @abstractmethod
    def record(self, example: Example, prediction: dict[str, Any]) -> dict[str, Any]:
        """One line of a predictions file: gold and predicted, enough to recompute the metric."""


__all__ = ["Task"]
