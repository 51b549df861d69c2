"""Multimodal graph-based virtual adversarial training (MG-VAT of MG-VMoE, Zhou et al. 2025).

Each sample of a batch is one vector ``h_i`` (in MG-VMoE ``[mean image output; mean text
output]``). The batch is a graph with edge weights ``g_ij = (cos(h_i, h_j) + 1) / 2``; each sample
gets a positive context (neighbours weighted by ``g``) and a negative context (weighted by
``1 - g``), and a 2-way distribution ``p(h) = softmax([h . pos, h . neg] * scale)``
(:func:`graph_context_logits`). VAT makes ``p`` robust to an adversarial perturbation ``r``
of ``h``: ``r`` is chosen to *maximise* ``KL(p(h) || p(h + r))`` and the model then
*minimises* ``KL(p(h).detach() || p(h + r.detach()))``. The whole graph is recomputed from the
perturbed vectors, so a perturbation of one sample also moves its neighbours' outputs.

Choices (the MG-VMoE paper gives the formula, not these details):

* ``context="mean"`` (default): the contexts are *weighted means*, ``pos_i = sum_j g_ij h_j /
  sum_j g_ij`` (and likewise for ``1 - g``), so the logits do not grow with the batch size.
  ``context="sum"`` is the literal ``g @ h`` / ``(1 - g) @ h``.
* ``scale`` defaults to ``None`` = *auto*: ``1 / (temperature * mean_i |h_i|^2)`` of the clean
  batch (detached, shared by the perturbed logits), so the logits are O(1 / temperature)
  whatever the norm of ``h``. Raw dot products of 768-d vectors saturate the softmax; a fixed
  ``1 / D`` left the logits near 0 for the small-norm token means MG-VMoE feeds in (the
  distribution stayed uniform and the VAT term about 1e-7: an ablation without VAT gave
  identical predictions). A float fixes the scale.
* The sample itself is part of its graph (``g_ii = 1``: it is its own strongest positive
  neighbour and has weight 0 in the negative context), as the formula over the batch reads;
  ``exclude_self=True`` drops the diagonal from both contexts.

Two ways to find ``r`` (``mode``):

* ``"learned"`` (default, the paper's code): one perturbation vector ``r [D]``, shared by the
  batch and kept across steps (a buffer, so the outer optimizer never touches it, and it is
  saved and restored with the model). In every training forward, ``inner_steps`` steps of
  normalised gradient ascent on ``J(r) = KL(p(h) || p(h + r)) - penalty * mean(r**2)``
  update it (step RMS per element = ``step_size``), then the model term uses the updated
  ``r``. ``r`` is kept in units of the batch's RMS (the perturbation is ``r * rms(h)``), so
  it means the same for features of any norm; ``max_rms`` optionally bounds its RMS.
  ``r = 0`` is a stationary point of ``J``, so ``r`` starts from a small random vector
  (``init_std``); a ``penalty`` larger than the curvature of the KL collapses ``r`` towards 0
  (``info["r_norm"]`` shows it).
* ``"power"`` (Miyato et al. 2018): per-sample perturbations found by ``power_iterations``
  rounds of power iteration with finite difference ``xi`` from a random start, then scaled to
  exactly norm ``eps`` per sample (an absolute norm: choose it for the features' scale).
  Recomputed in every call.

The search for ``r`` runs in float64 on the detached inputs (it is ``B x B x D`` work) so that
``xi = 1e-6`` differences are above round-off; the model term runs in float32 with autocast
off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmie.errors import ConfigError

MODES = ("learned", "power")
CONTEXTS = ("mean", "sum")


def auto_scale(h: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``1 / (temperature * mean_i |h_i|^2)`` (detached): logits of O(1 / temperature).
    0 for an all-zero batch (its logits are 0 anyway), never inf."""
    ms = h.detach().pow(2).sum(-1).mean() * temperature
    scale = 1.0 / ms.clamp_min(torch.finfo(h.dtype).tiny ** 0.5)  # finite: 1 / tiny overflows
    return torch.where(ms > 0, scale, torch.zeros_like(scale))


def graph_context_logits(h: torch.Tensor, scale: float | torch.Tensor | None = None,
                         context: str = "mean", exclude_self: bool = False) -> torch.Tensor:
    """The 2-way logits ``[B, 2]`` = ``[h . pos, h . neg] * scale`` over the batch graph.

    Args:
        h: ``[B, D]`` one vector per sample.
        scale: multiplies the dot products; ``None`` means :func:`auto_scale` of ``h``.
        context: ``"mean"`` (weighted mean of neighbours) or ``"sum"`` (``g @ h``).
        exclude_self: drop ``i == j`` from both contexts.
    """
    if h.dim() != 2:
        raise ValueError(f"graph_context_logits expects h of shape [B, D], got {tuple(h.shape)}")
    if context not in CONTEXTS:
        raise ConfigError(f"GraphVAT context: unknown context {context!r}; "
                          f"expected one of {', '.join(CONTEXTS)}")
    B, D = h.shape
    hn = F.normalize(h, dim=-1)
    g = (hn @ hn.transpose(0, 1) + 1.0) / 2.0
    w_pos, w_neg = g, 1.0 - g
    if exclude_self:
        off = 1.0 - torch.eye(B, dtype=h.dtype, device=h.device)
        w_pos, w_neg = w_pos * off, w_neg * off
    if context == "mean":
        tiny = torch.finfo(h.dtype).eps
        w_pos = w_pos / w_pos.sum(-1, keepdim=True).clamp_min(tiny)
        w_neg = w_neg / w_neg.sum(-1, keepdim=True).clamp_min(tiny)
    pos = w_pos @ h
    neg = w_neg @ h
    logits = torch.stack([(h * pos).sum(-1), (h * neg).sum(-1)], dim=-1)
    return logits * (auto_scale(h) if scale is None else scale)


def _kl_from_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(p) || softmax(q))`` averaged over the batch (a scalar)."""
    logp = F.log_softmax(p_logits, dim=-1)
    logq = F.log_softmax(q_logits, dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1).mean()


def _rms(h: torch.Tensor) -> torch.Tensor:
    """Root mean square of the (detached) batch: the unit of the learned perturbation."""
    return h.detach().pow(2).mean().sqrt().clamp_min(torch.finfo(h.dtype).tiny)


def _unit(d: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Rows of ``d`` scaled to unit norm without an epsilon floor (power-iteration gradients can
    be far below 1e-12 and must keep their direction); an all-zero row takes ``fallback``'s."""
    norm = d.norm(dim=-1, keepdim=True)
    zero = norm == 0
    if bool(zero.any()):
        d = torch.where(zero, fallback, d)
        norm = d.norm(dim=-1, keepdim=True)
    return d / norm.clamp_min(torch.finfo(d.dtype).tiny)


class GraphVAT(nn.Module):
    """The MG-VAT term. ``forward(h [B, D]) -> (vat_loss, info)``.

    Args:
        dim: ``D``.
        mode: ``"learned"`` (default) or ``"power"`` (see the module docstring).
        eps: per-sample perturbation norm in power mode.
        xi: finite-difference step of the power iteration.
        power_iterations: rounds of power iteration (power mode).
        penalty: weight of ``mean(r**2)`` in the learned perturbation's objective.
        inner_steps: ascent steps on ``r`` per training forward (learned mode).
        step_size: RMS per element of one ascent step (learned mode).
        init_std: std of the learned ``r`` at construction.
        scale, context, exclude_self: passed to :func:`graph_context_logits`.
        temperature: of the automatic scale (``scale=None``).
        max_rms: optional bound on the learned ``r``'s RMS, in units of the batch RMS (after
            each ascent step ``r`` is scaled back onto it). Default ``None`` (no bound, as
            measured in docs/results.md): with the weak L2 penalty the fixed-length steps let
            ``r`` drift, on fixed features, to several times the features' RMS over
            thousands of steps.
    """

    def __init__(self, dim: int, mode: str = "learned", eps: float = 1.0, xi: float = 1e-6,
                 power_iterations: int = 1, penalty: float = 1e-4, inner_steps: int = 1,
                 step_size: float = 0.05, init_std: float = 1e-2, scale: float | None = None,
                 context: str = "mean", exclude_self: bool = False, temperature: float = 0.2,
                 max_rms: float | None = None):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"model.vat: unknown mode {mode!r}; "
                              f"expected one of {', '.join(MODES)}")
        if context not in CONTEXTS:
            raise ConfigError(f"GraphVAT context: unknown context {context!r}; "
                              f"expected one of {', '.join(CONTEXTS)}")
        if eps <= 0 or xi <= 0:
            raise ConfigError(f"GraphVAT eps and xi must be > 0, got {eps}, {xi}")
        if power_iterations < 1 or inner_steps < 0:
            raise ConfigError("GraphVAT power_iterations must be >= 1 and "
                              "inner_steps >= 0")
        self.dim = dim
        self.mode = mode
        self.eps = eps
        self.xi = xi
        self.power_iterations = power_iterations
        self.penalty = penalty
        self.inner_steps = inner_steps
        self.step_size = step_size
        self.scale = scale
        self.temperature = temperature
        if max_rms is not None and max_rms <= 0:
            raise ConfigError(f"GraphVAT max_rms must be > 0, got {max_rms}")
        self.max_rms = max_rms
        self.context = context
        self.exclude_self = exclude_self
        #: the learned perturbation (a buffer: updated by ascent here, never by the optimizer)
        self.register_buffer("r", torch.randn(dim) * init_std)

    # ------------------------------------------------------------------------------------------
    def scale_for(self, h: torch.Tensor) -> float | torch.Tensor:
        """The logit scale for clean batch ``h`` (fixed, or automatic from ``h``)."""
        return auto_scale(h, self.temperature) if self.scale is None else self.scale

    def logits(self, h: torch.Tensor, scale: float | torch.Tensor | None = None) -> torch.Tensor:
        """:func:`graph_context_logits` with this module's settings; ``scale`` defaults to
        :meth:`scale_for` ``(h)`` (pass the clean batch's scale for perturbed inputs)."""
        return graph_context_logits(h, self.scale_for(h) if scale is None else scale,
                                    self.context, self.exclude_self)

    def divergence(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``KL(p(h) || p(h + r))`` averaged over the batch; ``r`` is ``[D]`` or ``[B, D]``."""
        s = self.scale_for(h)
        return _kl_from_logits(self.logits(h, s), self.logits(h + r, s))

    @torch.no_grad()
    def _check(self, h: torch.Tensor) -> None:
        if h.dim() != 2 or h.shape[-1] != self.dim:
            raise ValueError(f"GraphVAT expects h of shape [B, {self.dim}], got {tuple(h.shape)}")

    def _power_perturbation(self, h: torch.Tensor) -> torch.Tensor:
        """Per-sample adversarial directions by power iteration, scaled to norm ``eps``."""
        h64 = h.detach().double()
        s = self.scale_for(h64)
        with torch.enable_grad():
            p_logits = self.logits(h64, s)
            start = torch.randn_like(h64)
            d = start
            for _ in range(self.power_iterations):
                d = (self.xi * _unit(d, start)).requires_grad_(True)
                kl = _kl_from_logits(p_logits, self.logits(h64 + d, s))
                (d,) = torch.autograd.grad(kl, d)
        return (self.eps * _unit(d, start)).to(h.dtype)

    def update_perturbation(self, h: torch.Tensor, steps: int | None = None) -> None:
        """``steps`` (default ``inner_steps``) ascent steps on the learned ``r`` for batch ``h``."""
        steps = self.inner_steps if steps is None else steps
        h64 = h.detach().double()
        s = self.scale_for(h64)
        unit = _rms(h64)  # r is kept in units of the batch's RMS
        with torch.enable_grad():
            p_logits = self.logits(h64, s)
            for _ in range(steps):
                r = self.r.detach().double().requires_grad_(True)
                objective = (_kl_from_logits(p_logits, self.logits(h64 + r * unit, s))
                             - self.penalty * r.pow(2).mean())
                (grad,) = torch.autograd.grad(objective, r)
                norm = grad.norm()
                if not torch.isfinite(norm) or norm == 0:
                    break
                step = self.step_size * self.dim ** 0.5 * grad / norm
                self.r.add_(step.to(self.r.dtype))
                rms = self.r.pow(2).mean().sqrt()
                if self.max_rms is not None and rms > self.max_rms:  # keep r small
                    self.r.mul_(self.max_rms / rms)

    def perturbation(self, h: torch.Tensor) -> torch.Tensor:
        """The adversarial perturbation for ``h`` without updating anything learned:
        ``[B, D]`` in power mode, the current learned ``r`` broadcast to ``[B, D]`` otherwise."""
        self._check(h)
        if self.mode == "power":
            return self._power_perturbation(h)
        return (self.r.to(h.dtype) * _rms(h).to(h.dtype)).expand_as(h)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns ``(loss, info)``: ``loss = KL(p(h).detach() || p(h + r_adv))``, differentiable
        in ``h``; ``info`` holds ``r_norm`` ``[B]`` (per-sample perturbation norm) and the
        detached ``kl``. In learned mode a training call first updates ``r``."""
        self._check(h)
        if self.mode == "learned" and self.training and self.inner_steps > 0:
            self.update_perturbation(h)
        r_adv = self.perturbation(h).detach()
        with torch.autocast(device_type=h.device.type, enabled=False):
            h32 = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h
            r32 = r_adv.to(h32.dtype)
            s = self.scale_for(h32)
            p_clean = self.logits(h32, s).detach()
            loss = _kl_from_logits(p_clean, self.logits(h32 + r32, s))
        info = {"kl": loss.detach(), "r_norm": r32.norm(dim=-1).detach()}
        return loss, info
