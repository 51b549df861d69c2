"""Evaluation metrics: entity-level NER scores (seqeval) and MNRE relation scores.

The names are imported on first use: :mod:`mmie.metrics.ner` imports seqeval (and with it
scikit-learn, about 0.6 s), which the tasks' relation and zero-shot metrics and prediction do
not need.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["entity_scores", "span_scores", "relation_scores"]
_HOME = {"entity_scores": "mmie.metrics.ner", "span_scores": "mmie.metrics.ner",
         "relation_scores": "mmie.metrics.re"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'mmie.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
