"""Alignment regularizers: the MI discriminator against a hand computation, InfoNCE."""

import math

import pytest
import torch

from mmie.modules.alignment import MIDiscriminator, info_nce


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _tiny_scorer(**kw) -> MIDiscriminator:
    """T(t, v) = 2 * relu(t + v) - 1 on 1-d vectors."""
    d = MIDiscriminator(1, 1, hidden=1, **kw)
    lin1, lin2 = d.scorer[0], d.scorer[3]
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[1.0, 1.0]]))
        lin1.bias.zero_()
        lin2.weight.copy_(torch.tensor([[2.0]]))
        lin2.bias.fill_(-1.0)
    return d


T3 = torch.tensor([[1.0], [2.0], [-1.0]])
V3 = torch.tensor([[0.5], [-1.0], [3.0]])
# matched: t_i + v_i = 1.5, 1, 2 -> T = 2, 1, 3 (target 1: loss softplus(-T))
POS = [softplus(-2), softplus(-1), softplus(-3)]
# shifted (v rolled by one: 3, 0.5, -1): t + v = 4, 2.5, -2 -> T = 7, 4, -1 (target 0:
# loss softplus(T))
NEG1 = [softplus(7), softplus(4), softplus(-1)]
# rolled by two (-1, 3, 0.5): t + v = 0, 5, -0.5 -> T = -1, 9, -1
NEG2 = [softplus(-1), softplus(9), softplus(-1)]


def test_bce_loss_by_hand_default_is_released_code_sum():
    """Default: positive BCE + one BCE per negative shift (each a batch mean), not halved."""
    out = _tiny_scorer()(T3, V3)
    assert out.loss.item() == pytest.approx(sum(POS) / 3 + sum(NEG1) / 3, rel=1e-6)
    assert out.mi_estimate.item() == pytest.approx(-sum(POS) / 3 - sum(NEG1) / 3, rel=1e-6)
    # also the tuple protocol the models use
    assert out[0] is out.loss


def test_bce_loss_by_hand_mean_option_and_two_shifts():
    out = _tiny_scorer(reduction="mean")(T3, V3)
    assert out.loss.item() == pytest.approx((sum(POS) + sum(NEG1)) / 6, rel=1e-6)
    out2 = _tiny_scorer(shifts=2)(T3, V3)
    assert out2.loss.item() == pytest.approx((sum(POS) + sum(NEG1) + sum(NEG2)) / 3, rel=1e-6)
    assert out2.mi_estimate.item() == pytest.approx(-sum(POS) / 3 - (sum(NEG1) + sum(NEG2)) / 6,
                                                    rel=1e-6)
    # a shift that would wrap onto the positives (s >= B) is skipped
    out5 = _tiny_scorer(shifts=5)(T3, V3)
    assert out5.loss.item() == pytest.approx(out2.loss.item(), rel=1e-6)


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
    # default reduction: positive BCE + negative BCE, 2 log 2 for a scorer that cannot tell
    assert start == pytest.approx(2 * math.log(2), abs=0.2)
    assert end < 0.6 < start
    assert sum(o.mi_estimate.item() for o in outs) / 10 > -0.6 > -start


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
