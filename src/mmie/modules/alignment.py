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

    * positives: ``T(t_i, v_i)``; negatives, one set per shift ``s = 1..shifts``:
      ``T(t_i, v_{(i-s) mod B})`` (``torch.roll(v, s, 0)``; shifts that would wrap onto the
      positive, ``s >= B``, are skipped).
    * ``reduction="sum"`` (default, MMIB's released code): the positive pairs' BCE plus one
      BCE per negative shift, each averaged over the batch,
      ``loss = mean softplus(-T_pos) + sum_s mean softplus(T_neg,s)``.
      ``reduction="mean"``: BCE averaged over every scored pair, for one shift
      ``0.5 * (mean softplus(-T_pos) + mean softplus(T_neg))`` (half of ``"sum"``).
    * ``mi_estimate`` = the Jensen-Shannon estimate
      ``E_pos[-softplus(-T)] - E_neg[softplus(T)]`` (Deep InfoMax's I_JSD; the negatives of
      all shifts pooled): ``-2 log 2`` for a scorer that cannot tell pairs apart, rising
      toward 0 as matched and mismatched pairs separate. Only differences between runs are
      meaningful.

    Batch size 1 has no negative: ``loss`` is 0 (still connected to the scorer's parameters,
    with zero gradient, so DDP sees every parameter used) and ``mi_estimate`` is NaN.
    A batch whose images are all identical (e.g. a blank-image policy) makes negatives equal
    positives; the loss then stays at ``log 2`` and carries no signal.
    """

    def __init__(self, dim_text: int, dim_image: int, hidden: int | None = None,
                 dropout: float = 0.0, reduction: str = "sum", shifts: int = 1):
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"MIDiscriminator: reduction={reduction!r}, expected sum or mean")
        if shifts < 1:
            raise ValueError(f"MIDiscriminator: shifts must be >= 1, got {shifts}")
        hidden = dim_text if hidden is None else hidden
        self.dim_text, self.dim_image = dim_text, dim_image
        self.reduction, self.shifts = reduction, shifts
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
        negs = [self.score(t, torch.roll(v, shifts=s, dims=0)).float()
                for s in range(1, min(self.shifts, t.shape[0] - 1) + 1)]
        bce_pos = F.softplus(-pos).mean()
        bce_negs = [F.softplus(n).mean() for n in negs]
        if self.reduction == "sum":
            loss = bce_pos + sum(bce_negs)
        else:
            loss = (F.softplus(-pos).sum() + sum(F.softplus(n).sum() for n in negs)) / (
                pos.numel() * (1 + len(negs)))
        mi = -bce_pos - torch.stack(bce_negs).mean()
        return AlignmentOutput(loss, mi.detach())


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
