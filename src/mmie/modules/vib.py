"""Variational information bottleneck: a Gaussian encoder and its KL regularizer.

MMIB's *refinement regularizer* (Cui et al., TASLP 2024) maps each modality's token (or image
region) sequence to a diagonal Gaussian posterior ``q(z | x) = N(mu, diag(exp(logvar)))`` and
penalises ``KL(q(z | x) || N(0, I))``; the task loss plays the predictive term. Training uses
the reparameterised sample ``z = mu + exp(logvar / 2) * eps``; evaluation uses ``z = mu``.

Public API: :func:`gaussian_kl`, :class:`VariationalEncoder`, :class:`VIBOutput`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

#: ``logvar`` is clamped to this range before it is used (exp(10) ~ 2.2e4, exp(-10) ~ 4.5e-5),
#: so that neither the sample nor the KL can overflow, also under fp16/bf16 autocast.
LOGVAR_MIN, LOGVAR_MAX = -10.0, 10.0

KL_REDUCTIONS = ("mean", "sum_latent_mean_tokens", "sum", "none")


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` in closed form.

    Per element: ``0.5 * (mu**2 + exp(logvar) - 1 - logvar)``.

    Args:
        mu, logvar: ``[..., D]`` (e.g. ``[B, T, D]`` tokens or ``[B, D]`` vectors).
        mask: optional boolean ``mu.shape[:-1]`` (True = valid position); padded positions
            contribute nothing and are not counted.
        reduction:
            ``"mean"`` (default): mean over every valid element (valid positions x latent
            dimensions), as MMIB's released code averages its KL term. Independent of the
            latent size and sequence length, so weight 1.0 is meaningful.
            ``"sum_latent_mean_tokens"``: sum over the latent dimensions (the textbook KL of
            one position's posterior), mean over valid positions. ``D`` times larger.
            ``"sum"``: sum over all valid elements.  ``"none"``: the per-element ``[..., D]``
            tensor (masked positions set to 0).

    Returns a scalar (0.0, not NaN, when no position is valid), or the per-element tensor.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"gaussian_kl: mu {tuple(mu.shape)} and logvar "
                         f"{tuple(logvar.shape)} differ in shape")
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f"gaussian_kl: reduction={reduction!r}, expected one of {KL_REDUCTIONS}")
    mu_f, lv_f = mu.float(), logvar.float()
    kl = 0.5 * (mu_f.pow(2) + lv_f.exp() - 1.0 - lv_f)
    if mask is not None:
        if mask.shape != mu.shape[:-1]:
            raise ValueError(f"gaussian_kl: mask {tuple(mask.shape)} must have shape "
                             f"{tuple(mu.shape[:-1])} (mu's shape without the latent dim)")
        kl = kl * mask.to(kl.dtype).unsqueeze(-1)
        n_pos = mask.sum().to(kl.dtype)
    else:
        n_pos = torch.tensor(float(kl[..., 0].numel()), device=kl.device)
    if reduction == "none":
        return kl
    total = kl.sum()
    if reduction == "sum":
        return total
    denom = n_pos * kl.shape[-1] if reduction == "mean" else n_pos
    return total / denom.clamp_min(1.0)


class VIBOutput(NamedTuple):
    """``z`` (sample in training, ``mu`` in eval), ``mu`` and clamped ``logvar``: ``[B, T, L]``."""

    z: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor


class _SelfAttentionBlock(nn.Module):
    """``LayerNorm(x + Dropout(MHA(x, x, x)))`` with a key padding mask (post-norm, as BERT)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(x, x, x, key_padding_mask=key_padding_mask, need_weights=False)
        return self.norm(x + self.drop(out))


class VariationalEncoder(nn.Module):
    """Gaussian posterior ``q(z | x)`` over a sequence, with the reparameterisation trick.

    ``attention=True`` (MMIB's refinement regularizer): the mean and the log-variance each come from their
    own multi-head self-attention block over the sequence (``LayerNorm(x + MHA(x))``),
    followed by a linear map to the latent size. ``attention=False``: a plain MLP
    (``Linear -> GELU -> Dropout`` trunk, then one linear map each for mean and
    log-variance), the usual per-position VIB.

    Args:
        dim: input size ``D``.
        latent_dim: latent size ``L`` (default ``D``, as in MMIB).
        num_heads: attention heads (must divide ``dim``).
        attention: self-attention blocks (True) or MLP (False).
        dropout: dropout inside the blocks.
        init_logvar: initial value of the log-variance head's bias. 0.0 (default) starts
            from unit variance, the neutral PyTorch initialisation; a negative value (e.g.
            -4) starts training with less sampling noise.
        init_mean: ``random`` (default, PyTorch's initialisation of the mean head) or
            ``identity`` (the mean head starts as the identity with zero bias, so the mean
            starts as the attention block's output, not a random map of it; needs
            ``latent_dim == dim``).

    ``forward(x [B, T, D], mask [B, T] bool, True = valid) -> VIBOutput``. Padded positions
    are excluded as attention keys; a row with no valid position (e.g. a post without an
    image) attends over all its positions instead, so it never produces NaN; its outputs are
    meaningless and should be masked downstream (pass the same mask to :func:`gaussian_kl`).
    ``logvar`` is clamped to ``[LOGVAR_MIN, LOGVAR_MAX]``. In ``train()`` mode ``z`` is a
    fresh sample ``mu + exp(logvar / 2) * eps``; in ``eval()`` mode ``z = mu`` exactly.
    """

    def __init__(self, dim: int, latent_dim: int | None = None, *, num_heads: int = 8,
                 attention: bool = True, dropout: float = 0.1, init_logvar: float = 0.0,
                 init_mean: str = "random"):
        super().__init__()
        latent_dim = dim if latent_dim is None else latent_dim
        if init_mean not in ("random", "identity"):
            raise ValueError(f"VariationalEncoder: init_mean={init_mean!r}, expected random or "
                             "identity")
        if init_mean == "identity" and latent_dim != dim:
            raise ValueError(f"VariationalEncoder: init_mean='identity' needs latent_dim == dim "
                             f"({latent_dim} != {dim})")
        self.dim, self.latent_dim, self.attention = dim, latent_dim, attention
        if attention:
            if dim % num_heads:
                raise ValueError(f"VariationalEncoder: num_heads={num_heads} must divide "
                                 f"dim={dim}")
            self.mu_block = _SelfAttentionBlock(dim, num_heads, dropout)
            self.logvar_block = _SelfAttentionBlock(dim, num_heads, dropout)
        else:
            self.trunk = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.mu_head = nn.Linear(dim, latent_dim)
        self.logvar_head = nn.Linear(dim, latent_dim)
        with torch.no_grad():
            self.logvar_head.bias.add_(init_logvar)
            if init_mean == "identity":
                self.mu_head.weight.copy_(torch.eye(dim))
                self.mu_head.bias.zero_()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> VIBOutput:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"VariationalEncoder: expected x of shape [B, T, {self.dim}], "
                             f"got {tuple(x.shape)}")
        if self.attention:
            if mask is None:
                pad = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
            else:
                if mask.shape != x.shape[:2]:
                    raise ValueError(f"VariationalEncoder: mask {tuple(mask.shape)} must be "
                                     f"{tuple(x.shape[:2])}")
                pad = ~mask.bool()
                # rows with no valid position attend everywhere instead of producing NaN
                pad = pad & ~pad.all(dim=1, keepdim=True)
            h_mu, h_lv = self.mu_block(x, pad), self.logvar_block(x, pad)
        else:
            h_mu = h_lv = self.trunk(x)
        mu = self.mu_head(h_mu)
        logvar = self.logvar_head(h_lv).clamp(LOGVAR_MIN, LOGVAR_MAX)
        if self.training:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            z = mu
        return VIBOutput(z, mu, logvar)


__all__ = ["gaussian_kl", "VariationalEncoder", "VIBOutput", "KL_REDUCTIONS",
           "LOGVAR_MIN", "LOGVAR_MAX"]
