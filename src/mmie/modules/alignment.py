"""Alignment regularizers between paired text and image vectors.

MMIB's *alignment regularizer* maximises a lower bound on the mutual information between
the text and image representations of a post with a discriminator (the paper's estimator,
and the default here):
a scorer ``T(t, v)`` on the concatenation ``[t; v]`` is trained with binary cross-entropy,
matched pairs ``(t_i, v_i)`` toward 1 and mismatched pairs ``(t_i, v_{i-1})`` (the images
shifted by one within the batch, ``torch.roll``) toward 0. This is the Jensen-Shannon MI
estimator of Hjelm et al. (Deep InfoMax, ICLR 2019). :func:`info_nce` is the contrastive
(InfoNCE / CLIP-style) option; MG-VMoE's variant is ``normalize=False, temperature=1``.

Public API: :class:`MIDiscriminator`, :class:`AlignmentOutput`, :func:`info_nce`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class AlignmentOutput(NamedTuple):
    """``loss`` to minimise and ``mi_estimate`` (detached) for logging."""

    loss: torch.Tensor
    mi_estimate: torch.Tensor


class MIDiscriminator(nn.Module):
    """Jensen-Shannon MI discriminator on ``[text vector; image vector]``.

    Scorer: ``Linear(dim_text + dim_image, hidden) -> ReLU -> Linear(hidden, 1)`` (a logit).

    ``forward(t [B, Dt], v [B, Dv]) -> AlignmentOutput(loss, mi_estimate)``:

    * positives: ``T(t_i, v_i)``; negatives: ``T(t_i, v_{(i-1) mod B})`` (``torch.roll(v, 1, 0)``).
    * ``loss`` = binary cross-entropy with logits averaged over the ``2B`` scored pairs
      ``= 0.5 * (mean softplus(-T_pos) + mean softplus(T_neg))``.
    * ``mi_estimate`` = the Jensen-Shannon estimate
      ``E_pos[-softplus(-T)] - E_neg[softplus(T)] = -2 * loss`` (Deep InfoMax's I_JSD):
      ``-2 log 2`` for a scorer that cannot tell pairs apart, rising toward 0 as matched
      and mismatched pairs separate. Only differences between runs are meaningful.

    Batch size 1 has no negative: ``loss`` is 0 (still connected to the scorer's parameters,
    with zero gradient, so DDP sees every parameter used) and ``mi_estimate`` is NaN.
    A batch whose images are all identical (e.g. a blank-image policy) makes negatives equal
    positives; the loss then stays at ``log 2`` and carries no signal.
    """

    def __init__(self, dim_text: int, dim_image: int, hidden: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        hidden = dim_text if hidden is None else hidden
        self.dim_text, self.dim_image = dim_text, dim_image
        self.scorer = nn.Sequential(nn.Linear(dim_text + dim_image, hidden), nn.ReLU(),
                                    nn.Dropout(dropout), nn.Linear(hidden, 1))

    def score(self, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Logit ``T(t, v)`` per row: ``[B]``."""
        return self.scorer(torch.cat([t, v], dim=-1)).squeeze(-1)

    def forward(self, t: torch.Tensor, v: torch.Tensor) -> AlignmentOutput:
        if t.dim() != 2 or v.dim() != 2 or t.shape[0] != v.shape[0]:
            raise ValueError(f"MIDiscriminator: expected t [B, {self.dim_text}] and v "
                             f"[B, {self.dim_image}], got {tuple(t.shape)} and {tuple(v.shape)}")
        pos = self.score(t, v).float()
        if t.shape[0] < 2:
            zero = pos.sum() * 0.0
            return AlignmentOutput(zero, torch.full((), float("nan"), device=t.device))
        neg = self.score(t, torch.roll(v, shifts=1, dims=0)).float()
        logits = torch.cat([pos, neg])
        targets = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        return AlignmentOutput(loss, (-2.0 * loss).detach())


def info_nce(t: torch.Tensor, v: torch.Tensor, temperature: float = 0.07,
             symmetric: bool = True, normalize: bool = True) -> torch.Tensor:
    """InfoNCE between row-paired vectors ``t [B, D]`` and ``v [B, D]``.

    ``logits = sim(t_i, v_j) / temperature`` with ``sim`` the cosine (``normalize=True``) or
    the dot product; ``loss = CE(logits, arange(B))`` (text -> image), averaged with
    ``CE(logits.T, arange(B))`` (image -> text) when ``symmetric``. Batch size 1 gives 0.
    """
    if t.shape != v.shape or t.dim() != 2:
        raise ValueError(f"info_nce: t and v must both be [B, D], got {tuple(t.shape)} "
                         f"and {tuple(v.shape)}")
    if temperature <= 0:
        raise ValueError(f"info_nce: temperature must be > 0, got {temperature}")
    t, v = t.float(), v.float()
    if normalize:
        t, v = F.normalize(t, dim=-1), F.normalize(v, dim=-1)
    logits = t @ v.T / temperature
    target = torch.arange(t.shape[0], device=t.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, target))
    return loss


__all__ = ["MIDiscriminator", "AlignmentOutput", "info_nce"]
