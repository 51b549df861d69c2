"""Alignment regularizers: the MI discriminator against a hand computation, InfoNCE."""

import math

import pytest
import torch

from mmie.modules.alignment import MIDiscriminator, info_nce


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _tiny_scorer() -> MIDiscriminator:
    """T(t, v) = 2 * relu(t + v) - 1 on 1-d vectors."""
    d = MIDiscriminator(1, 1, hidden=1)
    lin1, lin2 = d.scorer[0], d.scorer[3]
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[1.0, 1.0]]))
        lin1.bias.zero_()
        lin2.weight.copy_(torch.tensor([[2.0]]))
        lin2.bias.fill_(-1.0)
    return d


def test_bce_loss_by_hand():
    d = _tiny_scorer()
    t = torch.tensor([[1.0], [2.0], [-1.0]])
    v = torch.tensor([[0.5], [-1.0], [3.0]])
    # matched: t_i + v_i = 1.5, 1, 2 -> T = 2, 1, 3 (target 1: loss softplus(-T))
    # shifted (v rolled by one: 3, 0.5, -1): t + v = 4, 2.5, -2 -> T = 7, 4, -1 (target 0:
    # loss softplus(T))
    terms = [softplus(-2), softplus(-1), softplus(-3), softplus(7), softplus(4), softplus(-1)]
    expected = sum(terms) / 6
    out = d(t, v)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.mi_estimate.item() == pytest.approx(-2 * expected, rel=1e-6)
    # also the tuple protocol the models use
    assert out[0] is out.loss


def test_batch_of_one_has_zero_loss_and_gradient_path():
    d = MIDiscriminator(4, 3)
    out = d(torch.randn(1, 4), torch.randn(1, 3))
    assert out.loss.item() == 0.0 and math.isnan(out.mi_estimate.item())
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in d.parameters())


def test_training_on_correlated_pairs_decreases_loss():
    torch.manual_seed(0)
    D = 8
    mix = torch.randn(D, D)

    def batch(n=32):
        x = torch.randn(n, D)
        return x + 0.1 * torch.randn(n, D), x @ mix + 0.1 * torch.randn(n, D)

    d = MIDiscriminator(D, D, hidden=32)
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    with torch.no_grad():
        start = sum(d(*batch()).loss.item() for _ in range(10)) / 10
    for _ in range(300):
        loss = d(*batch()).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        outs = [d(*batch()) for _ in range(10)]
    end = sum(o.loss.item() for o in outs) / 10
    assert start == pytest.approx(math.log(2), abs=0.1)
    assert end < 0.3 < start
    assert sum(o.mi_estimate.item() for o in outs) / 10 > -0.6 > -2 * start


def test_info_nce_by_hand():
    g = torch.Generator().manual_seed(1)
    t, v = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    tau = 0.5
    sim = [[float(torch.dot(t[i], v[j]) / (t[i].norm() * v[j].norm())) / tau for j in range(4)]
           for i in range(4)]

    def ce(rows):
        return sum(-r[i] + math.log(sum(math.exp(x) for x in r)) for i, r in enumerate(rows)) / 4

    t2v = ce(sim)
    v2t = ce([[sim[i][j] for i in range(4)] for j in range(4)])
    assert info_nce(t, v, temperature=tau, symmetric=False).item() == pytest.approx(t2v, rel=1e-5)
    assert info_nce(t, v, temperature=tau).item() == pytest.approx((t2v + v2t) / 2, rel=1e-5)
    # MG-VMoE's variant: raw dot products, no temperature
    dots = (t @ v.T).tolist()
    assert info_nce(t, v, temperature=1.0, symmetric=False, normalize=False).item() == \
        pytest.approx(ce(dots), rel=1e-5)


def test_info_nce_single_pair_and_errors():
    assert info_nce(torch.randn(1, 3), torch.randn(1, 3)).item() == 0.0
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.randn(2, 3), torch.randn(2, 3), temperature=0.0)
    with pytest.raises(ValueError, match="info_nce"):
        info_nce(torch.randn(2, 3), torch.randn(3, 3))
