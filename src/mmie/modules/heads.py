"""Task heads: per-token emissions (NER) and entity-pair classification (RE).

Public API: :func:`gather_positions`, :class:`TokenTaggingHead`, :class:`PairClassifierHead`.
"""

from __future__ import annotations

import torch
from torch import nn


def gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Pick ``hidden[b, positions[b]]``.

    ``hidden [B, T, D]``; ``positions [B]`` -> ``[B, D]`` or ``[B, K]`` -> ``[B, K, D]``.
    Raises ``IndexError`` naming the offending row when a position is outside ``[0, T)``
    (negative positions are not wrapped).
    """
    if hidden.dim() != 3:
        raise ValueError(f"gather_positions: hidden must be [B, T, D], got {tuple(hidden.shape)}")
    if positions.dim() not in (1, 2) or positions.shape[0] != hidden.shape[0]:
        raise ValueError(f"gather_positions: positions must be [B] or [B, K] with "
                         f"B={hidden.shape[0]}, got {tuple(positions.shape)}")
    positions = positions.long()
    T = hidden.shape[1]
    bad = (positions < 0) | (positions >= T)
    if bool(bad.any()):
        row = int(bad.reshape(bad.shape[0], -1).any(1).nonzero()[0])
        raise IndexError(f"gather_positions: row {row} has position(s) "
                         f"{positions[row].tolist()} outside [0, {T})")
    single = positions.dim() == 1
    idx = positions.view(positions.shape[0], -1)  # [B, K]
    out = torch.gather(hidden, 1, idx.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    return out.squeeze(1) if single else out


class TokenTaggingHead(nn.Module):
    """``Dropout -> Linear(dim, num_tags)``: per-token emission scores ``[B, T, num_tags]``
    (for the CRF), as the BERT-CRF / HVPNeT / MMIB NER heads."""

    def __init__(self, dim: int, num_tags: int, dropout: float = 0.1):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, num_tags)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(self.drop(hidden))


class PairClassifierHead(nn.Module):
    """Relation logits from the hidden states at the head and tail entity markers.

    ``forward(hidden [B, T, D], head_pos [B], tail_pos [B]) -> [B, num_labels]`` over
    ``Dropout([h[head_pos]; h[tail_pos]]) -> Linear(2 * dim, num_labels)`` (MMIB / HVPNeT:
    the hidden states at the head and tail start markers, concatenated, linear).
    """

    def __init__(self, dim: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(2 * dim, num_labels)

    def pair_representation(self, hidden: torch.Tensor, head_pos: torch.Tensor,
                            tail_pos: torch.Tensor) -> torch.Tensor:
        """``[h[head_pos]; h[tail_pos]]``: ``[B, 2D]``."""
        return torch.cat([gather_positions(hidden, head_pos),
                          gather_positions(hidden, tail_pos)], dim=-1)

    def forward(self, hidden: torch.Tensor, head_pos: torch.Tensor,
                tail_pos: torch.Tensor) -> torch.Tensor:
        return self.proj(self.drop(self.pair_representation(hidden, head_pos, tail_pos)))


__all__ = ["gather_positions", "TokenTaggingHead", "PairClassifierHead"]
