"""Zero-shot label scoring: a sample vector against label-name embeddings (MG-VMoE).

The label names (or descriptions) are encoded by the text encoder outside this module; here
both sides are projected into a shared space (256-d for relations, 64-d for entity types in the
paper) and scored by dot product. Labels are inputs, not parameters, so any candidate set can
be scored at prediction time.

Losses over the scores ``[B, L]``:

* :func:`ranking_hinge_loss` (the paper's): ``mean_b sum_{j != y_b} max(0, margin - s_{b,y}
  + s_{b,j})``;
* :func:`label_cross_entropy`: softmax cross-entropy over the candidates (an option).

Both take an optional ``label_mask`` (``[L]`` or ``[B, L]``, True = a candidate) so that
training scores only over the seen labels when the label bank holds more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmie.errors import ConfigError

LOSSES = ("hinge", "cross_entropy")


class LabelScorer(nn.Module):
    """``scores = proj_s(samples) . proj_l(labels)``.

    Args:
        sample_dim: width of the sample vectors.
        label_dim: width of the label embeddings.
        proj_dim: shared projection width (256 relations / 64 entity types in the paper).
    """

    def __init__(self, sample_dim: int, label_dim: int, proj_dim: int = 256):
        super().__init__()
        self.sample_proj = nn.Linear(sample_dim, proj_dim)
        self.label_proj = nn.Linear(label_dim, proj_dim)

    def forward(self, samples: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``samples [B, Ds]``; ``labels [L, Dl]`` (shared candidates) or ``[B, L, Dl]``
        (per-sample candidates). Returns scores ``[B, L]``."""
        s = self.sample_proj(samples)
        lab = self.label_proj(labels)
        if labels.dim() == 2:
            return s @ lab.transpose(0, 1)
        if labels.dim() == 3:
            return torch.einsum("bp,blp->bl", s, lab)
        raise ValueError(f"labels must be [L, D] or [B, L, D], got {tuple(labels.shape)}")


def _masked(scores: torch.Tensor, target: torch.Tensor,
            label_mask: torch.Tensor | None) -> torch.Tensor:
    """The candidate mask ``[B, L]`` (bool), checking that every target is a candidate."""
    if target.shape != scores.shape[:1]:
        raise ValueError(f"target shape {tuple(target.shape)} does not match scores "
                         f"{tuple(scores.shape)}")
    if label_mask is None:
        return torch.ones_like(scores, dtype=torch.bool)
    mask = label_mask.to(torch.bool, copy=False).expand_as(scores)
    if not bool(mask.gather(1, target.unsqueeze(1)).all()):
        raise ValueError("a target label is not among the candidate labels (label_mask)")
    return mask


def ranking_hinge_loss(scores: torch.Tensor, target: torch.Tensor, margin: float = 1.0,
                       label_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_b sum_{j != y_b, j candidate} max(0, margin - s_{b, y_b} + s_{b, j})``."""
    mask = _masked(scores, target, label_mask)
    pos = scores.gather(1, target.unsqueeze(1))
    hinge = (margin - pos + scores).clamp_min(0.0)
    others = mask & ~F.one_hot(target, scores.shape[1]).bool()
    return (hinge * others).sum(dim=1).mean()


def label_cross_entropy(scores: torch.Tensor, target: torch.Tensor,
                        label_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy over the candidate labels, mean over the batch."""
    mask = _masked(scores, target, label_mask)
    masked = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return F.cross_entropy(masked, target)


def label_loss(scores: torch.Tensor, target: torch.Tensor, loss: str = "hinge",
               margin: float = 1.0, label_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Dispatch on ``loss`` (``"hinge"`` default, the paper's; or ``"cross_entropy"``)."""
    if loss == "hinge":
        return ranking_hinge_loss(scores, target, margin=margin, label_mask=label_mask)
    if loss == "cross_entropy":
        return label_cross_entropy(scores, target, label_mask=label_mask)
    raise ConfigError(f"model.label_loss: unknown loss {loss!r}; expected one of "
                      f"{', '.join(LOSSES)}")
