"""Text-image fusion: MMIB's cross-modal attention and the simple concat baseline.

All modules take text tokens ``[B, T, D]`` with a boolean mask ``[B, T]`` (True = valid) and
image tokens ``[B, R, D]`` (global vector + regions, already projected to ``D``) with a
boolean mask ``[B, R]`` or ``None`` (all valid). A post without an image has an all-False
image mask: its text then passes through the residual path unchanged by the image (no NaN
from a softmax over zero keys).

Public API: :class:`CrossModalFusion`, :class:`ConcatFusion`, :class:`FusionOutput`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class FusionOutput(NamedTuple):
    """Fused text ``[B, T, D]`` (what the heads read) and fused image ``[B, R, D]``."""

    text: torch.Tensor
    image: torch.Tensor


def _masked_attention(attn: nn.MultiheadAttention, q: torch.Tensor, kv: torch.Tensor,
                      kv_mask: torch.Tensor | None) -> torch.Tensor:
    """``attn(q, kv, kv)`` ignoring invalid keys; rows with no valid key return zeros."""
    if kv_mask is None:
        out, _ = attn(q, kv, kv, need_weights=False)
        return out
    pad = ~kv_mask.bool()
    empty = pad.all(dim=1)  # [B]
    pad = pad & ~empty.unsqueeze(1)  # attend everywhere instead of over nothing ...
    out, _ = attn(q, kv, kv, key_padding_mask=pad, need_weights=False)
    return out * (~empty).to(out.dtype)[:, None, None]  # ... and then discard it


class _CrossBlock(nn.Module):
    """``x = LN(q + Drop(MHA(q, kv, kv)))``, then ``LN(x + Drop(FFN(x)))`` when ``ffn``."""

    def __init__(self, dim: int, num_heads: int, dropout: float, ffn: bool):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ffn = (nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout),
                                  nn.Linear(4 * dim, dim)) if ffn else None)
        self.norm_ffn = nn.LayerNorm(dim) if ffn else None

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor | None):
        x = self.norm(q + self.drop(_masked_attention(self.attn, q, kv, kv_mask)))
        if self.ffn is not None:
            x = self.norm_ffn(x + self.drop(self.ffn(x)))
        return x


def _check(text: torch.Tensor, image: torch.Tensor, name: str) -> None:
    if text.dim() != 3 or image.dim() != 3 or text.shape[0] != image.shape[0] \
            or text.shape[-1] != image.shape[-1]:
        raise ValueError(f"{name}: expected text [B, T, D] and image [B, R, D], got "
                         f"{tuple(text.shape)} and {tuple(image.shape)}")


class CrossModalFusion(nn.Module):
    """MMIB's cross-modal fusion: image-to-text, then text-to-image cross-attention.

    Reading of the MMIB paper ("image-to-text cross-attention, then text-to-image
    cross-attention"), "X-to-Y" naming the direction information flows:

    1. image-to-text: the text tokens are the queries and attend over the image tokens
       (global vector + regions): ``T' = Block(q=T, kv=V)`` -- image-aware text;
    2. text-to-image: the image tokens attend over the image-aware text:
       ``V' = Block(q=V, kv=T')`` -- text-aware image;
       (``layers > 1`` repeats 1-2 on ``(T', V')``);
    3. read-out (our addition, in the style of UMT's gated cross-modal layer, Yu et al. 2020):
       the text reads the text-aware image back through a sigmoid gate,
       ``C = MHA(T', V')``, ``g = sigmoid(W [T'; C])``, ``out = LN(T' + g * C)``.
       Without it, the text-to-image block of the last layer would not reach the output that
       the heads read (its parameters would get no gradient, which also breaks DDP).

    Each block is ``LayerNorm(x + Dropout(MHA))`` followed, when ``ffn``, by a
    position-wise feed-forward sub-layer ``LayerNorm(x + Dropout(FFN(x)))`` (a standard
    post-norm transformer layer).

    ``forward(text, text_mask, image, image_mask=None) -> FusionOutput(text [B,T,D],
    image [B,R,D])``.
    """

    def __init__(self, dim: int, num_heads: int = 8, dropout: float = 0.1, layers: int = 1,
                 ffn: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"CrossModalFusion: num_heads={num_heads} must divide dim={dim}")
        if layers < 1:
            raise ValueError(f"CrossModalFusion: layers must be >= 1, got {layers}")
        self.img2txt = nn.ModuleList(_CrossBlock(dim, num_heads, dropout, ffn)
                                     for _ in range(layers))
        self.txt2img = nn.ModuleList(_CrossBlock(dim, num_heads, dropout, ffn)
                                     for _ in range(layers))
        self.readout = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.gate = nn.Linear(2 * dim, dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor | None, image: torch.Tensor,
                image_mask: torch.Tensor | None = None) -> FusionOutput:
        _check(text, image, "CrossModalFusion")
        t, v = text, image
        for i2t, t2i in zip(self.img2txt, self.txt2img):
            t = i2t(t, v, image_mask)
            v = t2i(v, t, text_mask)
        c = _masked_attention(self.readout, t, v, image_mask)
        g = torch.sigmoid(self.gate(torch.cat([t, c], dim=-1)))
        return FusionOutput(self.norm(t + self.drop(g * c)), v)


class ConcatFusion(nn.Module):
    """The "simple fusion" baseline: ``Linear([t_i; P v_global]) -> D`` for every token.

    The global image vector ``[B, Dv]`` is projected to the text size (``P``), concatenated to
    every token and mapped back to ``D`` by one linear layer. ``image_present [B]`` (optional)
    zeroes the projected vector of posts without an image.
    ``init="identity"``: the output layer starts as ``[I | 0]`` with zero bias, so the fused
    tokens start equal to the text tokens (a post without a picture starts as text-only) and
    the image half is learned from zero.
    ``forward(text [B, T, D], image_global [B, Dv], image_present=None) -> [B, T, D]``.
    """

    def __init__(self, dim_text: int, dim_image: int, dropout: float = 0.1,
                 init: str = "random"):
        super().__init__()
        if init not in ("random", "identity"):
            raise ValueError(f"ConcatFusion: init={init!r}, expected random or identity")
        self.dim_text, self.dim_image = dim_text, dim_image
        self.proj = nn.Linear(dim_image, dim_text)
        self.out = nn.Linear(2 * dim_text, dim_text)
        self.drop = nn.Dropout(dropout)
        if init == "identity":
            with torch.no_grad():
                self.out.weight.zero_()
                self.out.weight[:, :dim_text].copy_(torch.eye(dim_text))
                self.out.bias.zero_()

    def forward(self, text: torch.Tensor, image_global: torch.Tensor,
                image_present: torch.Tensor | None = None) -> torch.Tensor:
        if text.dim() != 3 or image_global.dim() != 2 or text.shape[0] != image_global.shape[0]:
            raise ValueError(f"ConcatFusion: expected text [B, T, {self.dim_text}] and "
                             f"image_global [B, {self.dim_image}], got {tuple(text.shape)} "
                             f"and {tuple(image_global.shape)}")
        v = self.proj(image_global)
        if image_present is not None:
            v = v * image_present.to(v.dtype).unsqueeze(-1)
        v = v.unsqueeze(1).expand(-1, text.shape[1], -1)
        return self.drop(self.out(torch.cat([text, v], dim=-1)))


__all__ = ["CrossModalFusion", "ConcatFusion", "FusionOutput"]
