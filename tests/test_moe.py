"""Tests of the variational mixture-of-experts layer (mmie.modules.moe)."""

from __future__ import annotations

import math

import pytest
import torch

from mmie.errors import ConfigError
from mmie.modules.moe import MoEOutput, VariationalExpert, VMoELayer


def _one_hot_gate_layer(token_probs: list[list[float]], gating: str, k: int = 2) -> VMoELayer:
    """A layer whose gate gives exactly ``token_probs[t]`` for the one-hot input ``e_t``."""
    E = len(token_probs[0])
    dim = len(token_probs)
    layer = VMoELayer(dim, num_experts=E, gating=gating, k=k, dropout=0.0)
    with torch.no_grad():
        layer.gate.weight.copy_(torch.tensor(token_probs).log().T)  # [E, dim]
        layer.gate.bias.zero_()
    return layer


PROBS = [[0.4, 0.3, 0.2, 0.1],   # token A: top-2 {0, 1}
         [0.1, 0.2, 0.3, 0.4],   # token B: top-2 {3, 2}
         [0.5, 0.1, 0.3, 0.1],   # token C: top-2 {0, 2}
         [0.1, 0.1, 0.1, 0.7]]   # token D: masked out


@pytest.mark.parametrize("gating", ["dense", "topk"])
def test_gates_sum_to_one(gating):
    torch.manual_seed(0)
    layer = VMoELayer(16, num_experts=8, gating=gating, k=3)
    out = layer(torch.randn(3, 5, 16))
    assert isinstance(out, MoEOutput)
    assert out.gates.shape == (3, 5, 8)
    assert out.hidden.shape == (3, 5, 16)
    torch.testing.assert_close(out.gates.sum(-1), torch.ones(3, 5))
    assert (out.gates >= 0).all()


def test_topk_keeps_exactly_k_and_renormalises():
    torch.manual_seed(1)
    layer = VMoELayer(16, num_experts=8, gating="topk", k=3)
    x = torch.randn(2, 7, 16)
    out = layer(x)
    assert ((out.gates > 0).sum(-1) == 3).all()
    probs = torch.softmax(layer.gate(x), dim=-1)
    top = probs.topk(3, dim=-1)
    kept = top.values / top.values.sum(-1, keepdim=True)
    torch.testing.assert_close(out.gates.gather(-1, top.indices), kept)


def test_load_balance_and_entropy_hand_computed():
    layer = _one_hot_gate_layer(PROBS, "topk", k=2)
    x = torch.eye(4).unsqueeze(0)                      # tokens A, B, C, D
    mask = torch.tensor([[1, 1, 1, 0]])
    out = layer(x, mask)
    # P_i: mean probs over A, B, C; f_i: share of the 6 top-2 slots (0: A,C; 1: A; 2: B,C; 3: B)
    P = [1.0 / 3, 0.6 / 3, 0.8 / 3, 0.6 / 3]
    f = [2 / 6, 1 / 6, 2 / 6, 1 / 6]
    expected_lb = 4 * sum(fi * pi for fi, pi in zip(f, P))
    assert expected_lb == pytest.approx(16 / 15)
    assert out.load_balance.item() == pytest.approx(expected_lb, abs=1e-6)

    def H(p):
        return -sum(q * math.log(q) for q in p)
    expected_h = (H(PROBS[0]) + H(PROBS[1]) + H(PROBS[2])) / 3
    assert out.gate_entropy.item() == pytest.approx(expected_h, abs=1e-6)
    # renormalised top-2 gates of token A: 0.4/0.7, 0.3/0.7
    torch.testing.assert_close(out.gates[0, 0], torch.tensor([4 / 7, 3 / 7, 0.0, 0.0]))


def test_dense_load_balance_counts_top1():
    layer = _one_hot_gate_layer(PROBS, "dense")
    out = layer(torch.eye(4).unsqueeze(0), torch.tensor([[1, 1, 1, 0]]))
    P = [1.0 / 3, 0.6 / 3, 0.8 / 3, 0.6 / 3]
    f = [2 / 3, 0.0, 0.0, 1 / 3]                          # argmax: A->0, B->3, C->0
    assert out.load_balance.item() == pytest.approx(4 * sum(a * b for a, b in zip(f, P)), abs=1e-6)
    torch.testing.assert_close(out.gates[0], torch.tensor(PROBS))  # dense gates = probs


def test_kl_hand_computed_residual_form():
    """Two experts, latent 2, constant posteriors; gates 0.25 / 0.75 (residual form: the KL
    is gate-weighted and averaged over the latent dims)."""
    layer = VMoELayer(2, num_experts=2, latent_dim=2, gating="dense", dropout=0.0,
                      form="residual")
    with torch.no_grad():
        layer.gate.weight.zero_()
        layer.gate.bias.copy_(torch.tensor([math.log(0.25), math.log(0.75)]))
        for e in layer.experts:
            e.mu.weight.zero_()
            e.logvar.weight.zero_()
        layer.experts[0].mu.bias.copy_(torch.tensor([1.0, 0.0]))
        layer.experts[0].logvar.bias.copy_(torch.tensor([0.0, 0.0]))
        layer.experts[1].mu.bias.copy_(torch.tensor([0.0, 2.0]))
        layer.experts[1].logvar.bias.copy_(torch.tensor([math.log(2.0), 0.0]))
    # per-element KL 0.5 * (mu^2 + var - 1 - logvar), averaged over the 2 latent dims
    kl0 = (0.5 * (1 + 1 - 1 - 0) + 0.0) / 2                                  # 0.25
    kl1 = (0.5 * (0 + 2 - 1 - math.log(2)) + 0.5 * (4 + 1 - 1 - 0)) / 2      # 1.0767
    expected = 0.25 * kl0 + 0.75 * kl1
    x = torch.randn(2, 3, 2)
    for mode in ("train", "eval"):
        getattr(layer, mode)()
        out = layer(x, torch.tensor([[1, 1, 0], [1, 0, 0]]))
        assert out.kl.item() == pytest.approx(expected, abs=1e-6)


def test_kl_ignores_masked_tokens():
    torch.manual_seed(2)
    layer = VMoELayer(8, num_experts=4, dropout=0.0).eval()
    x = torch.randn(1, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    padded = x.clone()
    padded[:, 3:] = 100.0                           # garbage in the padded positions
    a = layer(padded, mask)
    b = layer(x[:, :3])
    for name in ("kl", "gate_entropy", "load_balance"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))
    torch.testing.assert_close(a.hidden[:, :3], b.hidden)
    # no NaN gradient leaks out of the padded positions
    layer.train()
    padded.requires_grad_(True)
    out = layer(padded, mask)
    (out.kl + out.gate_entropy + out.hidden[:, :3].sum()).backward()
    assert torch.isfinite(padded.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)


def test_eval_is_deterministic_and_matches_formula_residual_form():
    torch.manual_seed(3)
    layer = VMoELayer(8, num_experts=3, dropout=0.5, form="residual")
    x = torch.randn(2, 4, 8)
    layer.train()
    assert not torch.equal(layer(x).hidden, layer(x).hidden)    # sampling + dropout
    layer.eval()
    h1, h2 = layer(x).hidden, layer(x).hidden
    assert torch.equal(h1, h2)
    g = torch.softmax(layer.gate(x), -1)
    mixed = sum(g[..., e:e + 1] * ex.out(ex.mu(x)) for e, ex in enumerate(layer.experts))
    torch.testing.assert_close(h1, x + layer.norm(mixed))


def _constant_posterior_layer() -> VMoELayer:
    """Default (released-code) layer: width 2, two experts with constant posteriors
    (mu, logvar independent of x) and gates 0.25 / 0.75 for every token."""
    layer = VMoELayer(2, num_experts=2, gating="dense")
    with torch.no_grad():
        layer.gate.weight.zero_()
        layer.gate.bias.copy_(torch.tensor([math.log(0.25), math.log(0.75)]))
        for e in layer.experts:
            e.mu.weight.zero_()
            e.logvar.weight.zero_()
        layer.experts[0].mu.bias.copy_(torch.tensor([1.0, 0.0]))
        layer.experts[0].logvar.bias.copy_(torch.tensor([0.0, 0.0]))
        layer.experts[1].mu.bias.copy_(torch.tensor([0.0, 2.0]))
        layer.experts[1].logvar.bias.copy_(torch.tensor([math.log(2.0), math.log(0.5)]))
    return layer


def test_default_form_is_the_released_code_mixture_of_samples():
    """Output = sum_e g_e (mu_e + sigma_e eps_e): no residual, no LayerNorm, no projection."""
    layer = _constant_posterior_layer()
    assert layer.form == "code"
    assert all(e.out is None for e in layer.experts)
    assert not hasattr(layer, "norm")
    x = torch.randn(2, 3, 2)
    layer.train()
    torch.manual_seed(11)
    out = layer(x)
    torch.manual_seed(11)  # the same draws, in the layer's order (expert 0, then expert 1)
    eps0, eps1 = torch.randn(2, 3, 2), torch.randn(2, 3, 2)
    sd0 = torch.tensor([1.0, 1.0])
    sd1 = torch.tensor([math.sqrt(2.0), math.sqrt(0.5)])
    z0 = torch.tensor([1.0, 0.0]) + sd0 * eps0
    z1 = torch.tensor([0.0, 2.0]) + sd1 * eps1
    torch.testing.assert_close(out.hidden, 0.25 * z0 + 0.75 * z1)
    # evaluation: the mixture of the means, still without x
    layer.eval()
    torch.testing.assert_close(layer(x).hidden,
                               torch.tensor([0.25, 1.5]).expand(2, 3, 2))


def test_default_kl_summed_over_latents_and_experts_ungated():
    """KL closed form 0.5 (mu^2 + var - 1 - log var), summed over every expert's latent dims
    (not weighted by the gates), averaged over the valid tokens."""
    layer = _constant_posterior_layer()
    kl0 = 0.5 * (1 + 1 - 1 - 0) + 0.0                                          # 0.5
    kl1 = 0.5 * (0 + 2 - 1 - math.log(2)) + 0.5 * (4 + 0.5 - 1 - math.log(0.5))  # 2.0
    x = torch.randn(2, 3, 2)
    for mode in ("train", "eval"):
        getattr(layer, mode)()
        out = layer(x, torch.tensor([[1, 1, 0], [1, 0, 0]]))
        assert out.kl.item() == pytest.approx(kl0 + kl1, abs=1e-6)
    # against the module's own Gaussian KL: the same number
    from mmie.modules.vib import gaussian_kl

    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    lv = torch.tensor([[0.0, 0.0], [math.log(2.0), math.log(0.5)]])
    assert out.kl.item() == pytest.approx(gaussian_kl(mu, lv, reduction="sum").item(), abs=1e-6)


def test_code_form_needs_latent_equal_width():
    with pytest.raises(ConfigError, match="latent_dim"):
        VMoELayer(8, num_experts=2, latent_dim=4)
    with pytest.raises(ConfigError, match="moe_form"):
        VMoELayer(8, form="gated")
    VMoELayer(8, num_experts=2, latent_dim=4, form="residual")  # projects back: fine


def test_uni_backbone_shared_across_modalities_and_grads_flow():
    torch.manual_seed(4)
    layer = VMoELayer(8, num_experts=4, gating="topk", k=2)
    text, image = torch.randn(2, 6, 8), torch.randn(2, 10, 8)
    t = layer(text, torch.ones(2, 6))
    v = layer(image, torch.ones(2, 10, dtype=torch.bool))
    loss = t.hidden.sum() + v.hidden.sum() + t.kl + v.kl + v.load_balance - t.gate_entropy
    loss.backward()
    assert layer.gate.weight.grad.abs().sum() > 0
    assert all(e.logvar.weight.grad is not None for e in layer.experts)


def test_expert_sampling():
    torch.manual_seed(5)
    ex = VariationalExpert(4, 3)
    x = torch.randn(2, 4)
    out, mu, logvar = ex.eval()(x)
    torch.testing.assert_close(out, ex.out(mu))
    assert mu.shape == logvar.shape == (2, 3)
    out_t, _, _ = ex.train()(x)
    assert not torch.allclose(out_t, out)


def test_bad_config():
    with pytest.raises(ConfigError, match="gating"):
        VMoELayer(8, gating="sparse")
    with pytest.raises(ConfigError, match="top_k"):
        VMoELayer(8, num_experts=4, gating="topk", k=5)
    with pytest.raises(ValueError, match="shape"):
        VMoELayer(8)(torch.randn(2, 3, 7))
