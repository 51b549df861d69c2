"""Evaluation metrics: entity-level NER scores (seqeval) and MNRE relation scores."""

from mmie.metrics.ner import entity_scores, span_scores
from mmie.metrics.re import relation_scores

__all__ = ["entity_scores", "span_scores", "relation_scores"]
