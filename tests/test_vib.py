"""Variational bottleneck: closed-form KL, sampling, determinism, gradients, masks."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from mmie.modules.vib import LOGVAR_MAX, LOGVAR_MIN, VariationalEncoder, gaussian_kl


def test_kl_by_hand():
    mu = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [math.log(0.25), 0.0]])
    # per element 0.5 * (mu^2 + var - 1 - logvar)
    e = [0.5 * (1 + 1 - 1 - 0), 0.5 * (4 + 4 - 1 - math.log(4)),
         0.5 * (0.25 + 0.25 - 1 - math.log(0.25)), 0.0]
    assert gaussian_kl(mu, logvar).item() == pytest.approx(sum(e) / 4, rel=1e-6)
    assert gaussian_kl(mu, logvar, reduction="sum").item() == pytest.approx(sum(e), rel=1e-6)
    assert gaussian_kl(mu, logvar, reduction="sum_latent_mean_tokens").item() == \
        pytest.approx(sum(e) / 2, rel=1e-6)
    # mask out the second row: only the first two elements count
    m = torch.tensor([True, False])
    assert gaussian_kl(mu, logvar, mask=m).item() == pytest.approx((e[0] + e[1]) / 2, rel=1e-6)
    none = gaussian_kl(mu, logvar, mask=m, reduction="none")
    assert none[0].tolist() == pytest.approx(e[:2], rel=1e-6) and none[1].tolist() == [0, 0]


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 5, 7, generator=g)
    logvar = torch.randn(3, 5, 7, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))  # [3, 5, 7]
    expected_mean = ref[mask].mean()
    expected_sum_lat = ref[mask].sum(-1).mean()
    assert torch.allclose(gaussian_kl(mu, logvar, mask=mask), expected_mean, atol=1e-6)
    assert torch.allclose(gaussian_kl(mu, logvar, mask=mask, reduction="sum_latent_mean_tokens"),
                          expected_sum_lat, atol=1e-5)
    assert torch.allclose(gaussian_kl(mu, logvar), ref.mean(), atol=1e-6)


def test_kl_zero_at_prior_and_empty_mask():
    z = torch.zeros(2, 3, 4)
    assert gaussian_kl(z, z).item() == 0.0
    empty = torch.zeros(2, 3, dtype=torch.bool)
    out = gaussian_kl(torch.randn(2, 3, 4), torch.randn(2, 3, 4), mask=empty)
    assert out.item() == 0.0 and not torch.isnan(out)


def test_kl_bad_args():
    with pytest.raises(ValueError, match="reduction"):
        gaussian_kl(torch.zeros(1, 2), torch.zeros(1, 2), reduction="avg")
    with pytest.raises(ValueError, match="mask"):
        gaussian_kl(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), mask=torch.ones(2, 4).bool())


@pytest.mark.parametrize("attention", [True, False])
def test_eval_deterministic_train_stochastic(attention):
    torch.manual_seed(0)
    enc = VariationalEncoder(16, 8, num_heads=4, attention=attention, dropout=0.0)
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    enc.eval()
    a, b = enc(x, mask), enc(x, mask)
    assert a.z.shape == (2, 5, 8)
    assert torch.equal(a.z, b.z) and torch.equal(a.z, a.mu)
    enc.train()
    c, d = enc(x, mask), enc(x, mask)
    assert not torch.allclose(c.z, d.z)
    # with dropout 0 the posterior itself is the same in both modes; only z differs
    assert torch.allclose(c.mu, a.mu, atol=1e-5) and torch.allclose(c.logvar, a.logvar, atol=1e-5)
    # the sample is mu + sigma * eps with eps ~ N(0, 1): check its spread on many draws
    eps = torch.stack([(enc(x, mask).z - c.mu) / torch.exp(0.5 * c.logvar) for _ in range(200)])
    assert abs(eps.mean().item()) < 0.05 and abs(eps.std().item() - 1.0) < 0.05


def test_gradient_flows_through_reparameterisation():
    torch.manual_seed(0)
    enc = VariationalEncoder(8, num_heads=2, dropout=0.0).train()
    x = torch.randn(3, 4, 8, requires_grad=True)
    out = enc(x)
    out.z.pow(2).sum().backward()
    # the log-variance branch only reaches the loss through the sampled noise
    for p in (enc.logvar_head.weight, enc.logvar_block.attn.in_proj_weight,
              enc.mu_head.weight, enc.mu_block.attn.in_proj_weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0


def test_padding_is_ignored_and_empty_rows_are_finite():
    torch.manual_seed(0)
    enc = VariationalEncoder(8, num_heads=2, dropout=0.0).eval()
    x = torch.randn(1, 4, 8)
    mask = torch.tensor([[True, True, False, False]])
    y = x.clone()
    y[0, 2:] = 100.0  # padding content must not change valid outputs
    assert torch.allclose(enc(x, mask).mu[0, :2], enc(y, mask).mu[0, :2], atol=1e-5)
    empty = enc(x, torch.zeros(1, 4, dtype=torch.bool))
    assert torch.isfinite(empty.mu).all() and torch.isfinite(empty.logvar).all()


def test_logvar_is_clamped():
    enc = VariationalEncoder(4, attention=False, init_logvar=50.0).eval()
    out = enc(torch.zeros(1, 2, 4))
    assert out.logvar.max().item() <= LOGVAR_MAX and out.logvar.min().item() >= LOGVAR_MIN
    assert torch.allclose(out.logvar, torch.full_like(out.logvar, LOGVAR_MAX))


def test_shape_errors():
    enc = VariationalEncoder(8, num_heads=2)
    with pytest.raises(ValueError, match="expected x"):
        enc(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="num_heads"):
        VariationalEncoder(10, num_heads=4)
