"""Variational mixture of experts (the VMoE layer of MG-VMoE, Zhou et al. 2025).

Each expert is a variational information bottleneck: two linear heads give the mean and the
log-variance of a Gaussian latent, sampled as ``z = mu + sigma * eps`` (training) or
``z = mu`` (evaluation). A per-token softmax gate mixes the experts. Two forms (``form``):

* ``"code"`` (default, the authors' released code): the layer's output *is* the gate-weighted
  mixture of the experts' samples, with no residual, no LayerNorm and no output projection
  (the latent size equals the model width)::

      g = softmax(W_g x)                          [B, T, E]
      y = sum_e g_e * (mu_e(x) + sigma_e(x) * eps_e)   [B, T, D]

  ``logvar`` is clamped to ``[LOGVAR_MIN, LOGVAR_MAX]`` of :mod:`mmie.modules.vib` (no
  overflow of the sample or the KL, also under bf16).
* ``"residual"`` (mmie's earlier form, an option): each expert's sample is projected back to
  the width and the mixture goes around a residual path::

      y = x + LayerNorm(dropout(sum_e g_e * W_out,e z_e))   [B, T, D]

MG-VMoE applies the *same* layer instance to the text token sequence and to the image patch
sequence ("uni-backbone"): call it once per modality with that modality's mask.

Gating:

* ``"dense"`` (the paper's code): every expert contributes with its softmax weight.
* ``"topk"``: the ``k`` largest gates are kept and renormalised to sum to 1; the others are
  zero. All experts are still evaluated (8 small experts; the option changes the routing, not
  the compute).

Auxiliary terms (returned, not weighted; the model decides the weights and signs):

* ``kl``: KL of the experts' posteriors to N(0, I) over the valid tokens.
  ``form="code"``: summed over every expert's latent dimensions, ungated, averaged over the
  valid tokens, ``sum_{valid t} sum_e sum_d KL_{e,d}(t) / #valid`` (the released code).
  ``form="residual"``: gate-weighted and averaged over the latent dimension,
  ``sum_{valid t} sum_e g_{t,e} mean_d KL_{e,d}(t) / #valid``.
* ``gate_entropy``: mean over valid tokens of ``-sum_e g_e log g_e`` of the (pre-top-k) softmax
  gate. The auxiliary term for dense gating in the paper's code.
* ``load_balance``: Switch-Transformer style ``E * sum_i f_i * P_i``, with ``P_i`` the mean
  softmax gate of expert ``i`` over valid tokens and ``f_i`` the fraction of routing slots
  sent to expert ``i`` (each valid token sends ``k`` slots to its top-k experts, so
  ``sum_i f_i = 1``; dense gating counts its top-1 expert). It equals 1 under perfectly
  uniform routing. The auxiliary term for the top-k option.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmie.errors import ConfigError

GATINGS = ("dense", "topk")
#: the layer's form: the released code's mixture of samples, or mmie's earlier residual form
FORMS = ("code", "residual")


@dataclass
class MoEOutput:
    """What one :class:`VMoELayer` call returns."""

    #: ``[B, T, D]`` the layer's output (the mixture of samples; residual form: x + ...)
    hidden: torch.Tensor
    #: scalar, KL(q_e(z|x) || N(0, I)) over valid tokens (reduction: see the module doc)
    kl: torch.Tensor
    #: scalar, mean entropy of the softmax gate over valid tokens
    gate_entropy: torch.Tensor
    #: scalar, Switch-style load-balancing term (1.0 when routing is uniform)
    load_balance: torch.Tensor
    #: ``[B, T, E]`` the mixing weights actually used (top-k zeroed and renormalised)
    gates: torch.Tensor


def _token_kl(mu: torch.Tensor, logvar: torch.Tensor, keep: torch.Tensor,
              over_latent: str = "mean") -> torch.Tensor:
    """Per-token KL(N(mu, exp(logvar)) || N(0, I)), averaged (``over_latent="mean"``) or
    summed (``"sum"``) over the latent dim: ``[...]``.

    Positions where ``keep`` is False get 0. Their ``mu`` / ``logvar`` are zeroed *before* the
    KL, so that garbage in padded positions (an ``exp`` overflow) cannot turn into a NaN value
    or gradient.
    """
    from mmie.modules.vib import gaussian_kl

    k = keep.unsqueeze(-1)
    mu = torch.where(k, mu, 0.0)
    logvar = torch.where(k, logvar, 0.0)
    kl = gaussian_kl(mu, logvar, reduction="none")
    return kl.sum(dim=-1) if over_latent == "sum" else kl.mean(dim=-1)


class VariationalExpert(nn.Module):
    """One expert: a Gaussian bottleneck ``dim -> latent_dim`` (``-> dim`` with ``project``).

    ``forward(x)`` returns ``(out, mu, logvar)``; in training ``z`` is sampled with the
    reparameterisation trick, in evaluation ``z = mu`` (deterministic). ``out`` is ``z``
    itself without ``project`` (the released code; ``latent_dim`` must then equal ``dim``,
    and ``logvar`` is clamped to the VIB range), ``W_out z`` with it (the residual form).
    """

    def __init__(self, dim: int, latent_dim: int | None = None, project: bool = True):
        super().__init__()
        latent_dim = latent_dim or dim
        if not project and latent_dim != dim:
            raise ConfigError(f"a VMoE expert without output projection needs latent_dim == "
                              f"dim, got latent_dim={latent_dim}, dim={dim}")
        self.mu = nn.Linear(dim, latent_dim)
        self.logvar = nn.Linear(dim, latent_dim)
        self.out = nn.Linear(latent_dim, dim) if project else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu = self.mu(x)
        logvar = self.logvar(x)
        if self.out is None:
            from mmie.modules.vib import LOGVAR_MAX, LOGVAR_MIN

            logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        if self.training:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            z = mu
        return (z if self.out is None else self.out(z)), mu, logvar


class VMoELayer(nn.Module):
    """A mixture of :class:`VariationalExpert` s with a per-token softmax gate.

    Args:
        dim: model width ``D`` (input and output).
        num_experts: ``E`` (8 in MG-VMoE).
        latent_dim: width of each expert's latent (default ``dim``; 768 in the paper).
        gating: ``"dense"`` (default, the paper's code) or ``"topk"``.
        k: experts kept per token when ``gating="topk"``.
        dropout: dropout on the mixed expert output before the LayerNorm (residual form).
        form: ``"code"`` (default, the released code: output = mixture of the samples, KL
            summed over latent dims and experts) or ``"residual"`` (see the module doc).
    """

    def __init__(self, dim: int, num_experts: int = 8, latent_dim: int | None = None,
                 gating: str = "dense", k: int = 2, dropout: float = 0.1, form: str = "code"):
        super().__init__()
        if form not in FORMS:
            raise ConfigError(f"model.moe_form: unknown form {form!r}; "
                              f"expected one of {', '.join(FORMS)}")
        if gating not in GATINGS:
            raise ConfigError(f"model.gating: unknown gating {gating!r}; "
                              f"expected one of {', '.join(GATINGS)}")
        if num_experts < 1:
            raise ConfigError(f"model.num_experts must be >= 1, got {num_experts}")
        if gating == "topk" and not 1 <= k <= num_experts:
            raise ConfigError(f"model.top_k must be in [1, num_experts={num_experts}], got {k}")
        self.dim = dim
        self.num_experts = num_experts
        self.gating = gating
        self.form = form
        self.k = k if gating == "topk" else num_experts
        self.gate = nn.Linear(dim, num_experts)
        residual = form == "residual"
        self.experts = nn.ModuleList(VariationalExpert(dim, latent_dim, project=residual)
                                     for _ in range(num_experts))
        if residual:
            self.dropout = nn.Dropout(dropout)
            self.norm = nn.LayerNorm(dim)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gate probabilities for ``x [..., D]``.

        Returns ``(probs, gates, assigned)``: the full softmax ``probs``, the mixing ``gates``
        (equal to ``probs`` for dense gating, top-k renormalised otherwise) and the 0/1
        ``assigned`` routing slots used by the load-balancing term (top-k; top-1 for dense).
        """
        probs = torch.softmax(self.gate(x).float(), dim=-1).to(x.dtype)
        n_assign = self.k if self.gating == "topk" else 1
        top = probs.topk(n_assign, dim=-1).indices
        assigned = torch.zeros_like(probs).scatter_(-1, top, 1.0)
        if self.gating == "topk":
            kept = probs * assigned
            gates = kept / kept.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(kept.dtype).tiny)
        else:
            gates = probs
        return probs, gates, assigned

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> MoEOutput:
        """Mix the experts over ``x [B, T, D]``; ``mask [B, T]`` (1/True = real token) limits
        the auxiliary terms to real tokens (padded positions still get an output)."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"VMoELayer expects x of shape [B, T, {self.dim}], "
                             f"got {tuple(x.shape)}")
        if mask is None:
            keep = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        else:
            if mask.shape != x.shape[:2]:
                raise ValueError(f"mask shape {tuple(mask.shape)} does not match x "
                                 f"{tuple(x.shape[:2])}")
            keep = mask.bool()
        valid = keep.float()  # counts in float32 (bf16 cannot count past 256)
        n_valid = valid.sum().clamp_min(1.0)

        probs, gates, assigned = self.route(x)
        residual = self.form == "residual"
        mixed = torch.zeros_like(x)
        kl = x.new_zeros((), dtype=torch.float32)
        for e, expert in enumerate(self.experts):
            out, mu, logvar = expert(x)
            g = gates[..., e]
            mixed = mixed + g.unsqueeze(-1) * out
            if residual:  # gate-weighted, mean over the latent dims
                kl = kl + (g * _token_kl(mu, logvar, keep)).sum()
            else:  # the released code: ungated, summed over the latent dims
                kl = kl + _token_kl(mu, logvar, keep, over_latent="sum").sum()
        kl = kl / n_valid
        hidden = x + self.norm(self.dropout(mixed)) if residual else mixed

        entropy = -(probs * torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))).sum(-1)
        gate_entropy = torch.where(keep, entropy, 0.0).sum() / n_valid
        w = valid.unsqueeze(-1)
        p_mean = torch.where(keep.unsqueeze(-1), probs, 0.0).sum(dim=(0, 1)) / n_valid
        n_slots = (assigned * w).sum().clamp_min(1.0)
        f = (assigned * w).sum(dim=(0, 1)) / n_slots
        load_balance = self.num_experts * (f * p_mean).sum()
        return MoEOutput(hidden=hidden, kl=kl, gate_entropy=gate_entropy,
                         load_balance=load_balance, gates=gates)
