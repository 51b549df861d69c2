"""Tests of the multimodal graph-based VAT (mmie.modules.vat)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmie.errors import ConfigError
from mmie.modules.vat import GraphVAT, graph_context_logits

D, B = 32, 16


def _batch(seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Clustered, LayerNorm-scale sample vectors (4 clusters)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, D, generator=g)
    h = centres[torch.randint(0, 4, (B,), generator=g)] + torch.randn(B, D, generator=g)
    return F.layer_norm(h, (D,)).to(dtype)


def _random_divergence(vat: GraphVAT, h: torch.Tensor, norms: torch.Tensor, shared: bool,
                       draws: int = 50) -> float:
    """Mean KL(p(h) || p(h + r)) over random r with the given per-sample norms."""
    g = torch.Generator().manual_seed(123)
    total = 0.0
    for _ in range(draws):
        if shared:
            r = F.normalize(torch.randn(D, generator=g, dtype=h.dtype), dim=0) * norms[0]
        else:
            r = F.normalize(torch.randn(B, D, generator=g, dtype=h.dtype), dim=-1) * norms[:, None]
        total += vat.divergence(h, r).item()
    return total / draws


def test_graph_context_logits_hand_computed():
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0]])      # cos = 0 -> g = [[1, .5], [.5, 1]]
    # sum contexts: pos_1 = h1 + .5 h2 -> h1.pos = 1; neg_1 = 0 h1 + .5 h2 -> h1.neg = 0
    torch.testing.assert_close(graph_context_logits(h, scale=1.0, context="sum"),
                               torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    # mean contexts: pos_1 = (h1 + .5 h2) / 1.5 -> 2/3; neg_1 = h2 -> 0; auto scale
    # 1 / mean |h_i|^2 = 1
    torch.testing.assert_close(graph_context_logits(h),
                               torch.tensor([[2 / 3, 0.0], [2 / 3, 0.0]]))
    torch.testing.assert_close(graph_context_logits(h, scale=0.5),
                               torch.tensor([[1 / 3, 0.0], [1 / 3, 0.0]]))
    # without self: pos_1 = .5 h2 / .5 = h2 -> 0; neg_1 = h2 -> 0
    torch.testing.assert_close(graph_context_logits(h, scale=1.0, exclude_self=True),
                               torch.zeros(2, 2))
    h3 = torch.tensor([[1.0, 1.0], [2.0, 2.0], [-1.0, -1.0]])  # g = [[1,1,0],[1,1,0],[0,0,1]]
    out = graph_context_logits(h3, scale=1.0, context="sum")
    # sample 1: pos = h1 + h2 = (3, 3) -> 6; neg = h3 = (-1, -1) -> -2
    torch.testing.assert_close(out[0], torch.tensor([6.0, -2.0]))


@pytest.mark.parametrize("eps", [0.1, 1.0, 3.5])
def test_power_perturbation_has_requested_norm(eps):
    torch.manual_seed(0)
    vat = GraphVAT(D, mode="power", eps=eps)
    h = _batch(1)
    r = vat.perturbation(h)
    assert r.shape == (B, D)
    torch.testing.assert_close(r.norm(dim=-1), torch.full((B,), eps))
    _, info = vat(h)
    torch.testing.assert_close(info["r_norm"], torch.full((B,), eps))


def test_power_perturbation_beats_random_of_same_norm():
    torch.manual_seed(0)
    ratios = []
    for seed in range(3):
        vat = GraphVAT(D, mode="power", eps=1.0, power_iterations=2)
        h = _batch(seed)
        adv = vat.divergence(h, vat.perturbation(h)).item()
        rnd = _random_divergence(vat, h, torch.full((B,), 1.0), shared=False)
        assert adv > rnd
        ratios.append(adv / rnd)
    assert sum(ratios) / len(ratios) > 3.0


def test_learned_perturbation_beats_random_of_same_norm():
    torch.manual_seed(0)
    vat = GraphVAT(D, mode="learned").train()
    h = _batch(2)
    r0 = vat.r.clone()
    for _ in range(100):
        vat(h)
    assert vat.r.norm() > 10 * r0.norm()          # moved away from the small start
    norm = vat.r.norm().expand(B)
    adv = vat.divergence(h, vat.r).item()
    rnd = _random_divergence(vat, h, norm, shared=True)
    assert adv > 3.0 * rnd
    # evaluation never updates the learned perturbation
    r1 = vat.r.clone()
    vat.eval()
    vat(h)
    assert torch.equal(vat.r, r1)


def test_learned_penalty_keeps_perturbation_small():
    h = _batch(2)
    norms = {}
    for penalty in (1e-4, 10.0):
        torch.manual_seed(0)
        vat = GraphVAT(D, mode="learned", penalty=penalty).train()
        for _ in range(100):
            vat(h)
        norms[penalty] = vat.r.norm().item()
    assert norms[10.0] < 0.2 * norms[1e-4]


def test_learned_r_is_a_buffer_not_a_parameter():
    vat = GraphVAT(D)
    assert "r" in vat.state_dict()
    assert not list(vat.parameters())


@pytest.mark.parametrize("mode", ["learned", "power"])
def test_loss_is_differentiable_in_h(mode):
    torch.manual_seed(0)
    vat = GraphVAT(D, mode=mode, init_std=0.5).train()
    h = _batch(3).requires_grad_(True)
    loss, info = vat(h)
    assert loss.item() > 0 and info["kl"].item() == pytest.approx(loss.item())
    loss.backward()
    assert torch.isfinite(h.grad).all() and h.grad.abs().sum() > 0


def test_gradient_matches_finite_differences():
    """The clean distribution is a fixed target (detached): the gradient of the loss is that
    of x -> KL(p(h0) || p(x + r)) at x = h0, and that function passes gradcheck."""
    torch.manual_seed(0)
    vat = GraphVAT(8, mode="learned", init_std=0.3).double().eval()
    h0 = torch.randn(5, 8, dtype=torch.float64)
    scale = vat.scale_for(h0)  # the clean batch's logit scale, a constant for the gradient
    r = vat.perturbation(h0)   # likewise the perturbation (r times the batch RMS), detached
    target = vat.logits(h0, scale)

    def fixed_target_kl(x):
        logp = F.log_softmax(target, -1)
        return (logp.exp() * (logp - F.log_softmax(vat.logits(x + r, scale), -1))).sum(-1).mean()

    assert torch.autograd.gradcheck(fixed_target_kl, (h0.clone().requires_grad_(True),))
    h = h0.clone().requires_grad_(True)
    vat(h)[0].backward()
    x = h0.clone().requires_grad_(True)
    fixed_target_kl(x).backward()
    torch.testing.assert_close(h.grad, x.grad)


def test_bad_config():
    with pytest.raises(ConfigError, match="model.vat"):
        GraphVAT(D, mode="fgsm")
    with pytest.raises(ConfigError, match="context"):
        GraphVAT(D, context="max")
    with pytest.raises(ValueError, match="shape"):
        GraphVAT(D)(torch.randn(4, D + 1))


def test_auto_scale_makes_the_term_independent_of_the_feature_norm():
    """Token means of small norm must not flatten p to uniform (the VAT term then vanishes):
    with the automatic scale, logits and the VAT loss are the same for h and 0.01 h."""
    h = _batch(0)
    torch.testing.assert_close(graph_context_logits(h), graph_context_logits(0.01 * h))
    vat = GraphVAT(D, temperature=0.2)
    p = vat.logits(h).softmax(-1)
    assert float((p[:, 0] - 0.5).abs().mean()) > 0.1  # far from uniform
    losses = []
    for scale in (1.0, 0.01):
        torch.manual_seed(0)
        v = GraphVAT(D, mode="learned").train()
        for _ in range(20):
            loss, _ = v(scale * h)
        losses.append(float(loss))
    assert losses[0] > 1e-3
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)


def test_power_perturbation_norm_survives_tiny_gradients():
    """Power-iteration gradients of a tiny-norm batch are far below 1e-12; normalising them
    with an epsilon floor used to shrink the perturbation towards 0."""
    h = 1e-4 * _batch(1)
    vat = GraphVAT(D, mode="power", eps=0.5, scale=1.0 / D)
    r = vat.perturbation(h)
    torch.testing.assert_close(r.norm(dim=-1), torch.full((h.shape[0],), 0.5))


@pytest.mark.parametrize("mode", ["learned", "power"])
def test_zero_batch_gives_zero_loss_not_nan(mode):
    """An all-zero batch (e.g. no picture anywhere) must not turn the automatic scale into
    inf and the loss into NaN."""
    h = torch.zeros(4, D, requires_grad=True)
    loss, _ = GraphVAT(D, mode=mode).train()(h)
    loss.backward()
    assert float(loss) == 0.0 and torch.isfinite(h.grad).all()


def test_learned_perturbation_stays_within_its_bound():
    h = _batch(2)
    vat = GraphVAT(D, mode="learned", max_rms=0.3).train()
    for _ in range(300):
        vat(h)
    assert float(vat.r.pow(2).mean().sqrt()) <= 0.3 + 1e-6
    with pytest.raises(ConfigError, match="max_rms"):
        GraphVAT(D, max_rms=0.0)
