"""Fusion modules (shapes, masks, posts without an image) and task heads."""

import pytest
import torch

from mmie.modules.fusion import ConcatFusion, CrossModalFusion
from mmie.modules.heads import PairClassifierHead, TokenTaggingHead, gather_positions

B, T, R, D = 3, 5, 4, 16


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(B, T, D, generator=g)
    image = torch.randn(B, R, D, generator=g)
    text_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]).bool()
    image_mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]]).bool()  # row 2: none
    return text, text_mask, image, image_mask


@pytest.mark.parametrize("layers", [1, 2])
def test_cross_modal_fusion_shapes_and_no_image(layers):
    torch.manual_seed(0)
    fusion = CrossModalFusion(D, num_heads=4, dropout=0.0, layers=layers).eval()
    text, tmask, image, imask = _inputs()
    out = fusion(text, tmask, image, imask)
    assert isinstance(out, tuple) and out.text.shape == (B, T, D) and out.image.shape == (B, R, D)
    assert torch.isfinite(out.text).all() and torch.isfinite(out.image).all()
    # the post without an image ignores whatever sits in its image slots ...
    other = image.clone()
    other[2] = torch.randn(R, D) * 10
    out2 = fusion(text, tmask, other, imask)
    assert torch.allclose(out.text[2], out2.text[2], atol=1e-5)
    # ... while a post with an image depends on it
    other[0] = torch.randn(R, D)
    assert not torch.allclose(out.text[0], fusion(text, tmask, other, imask).text[0], atol=1e-3)


def test_cross_modal_fusion_ignores_padding_and_none_mask():
    torch.manual_seed(0)
    fusion = CrossModalFusion(D, num_heads=4, dropout=0.0).eval()
    text, tmask, image, imask = _inputs()
    out = fusion(text, tmask, image, imask)
    noisy_text, noisy_image = text.clone(), image.clone()
    noisy_text[~tmask] = 50.0
    noisy_image[~imask] = -50.0
    out2 = fusion(noisy_text, tmask, noisy_image, imask)
    assert torch.allclose(out.text[tmask], out2.text[tmask], atol=1e-4)
    assert torch.allclose(out.image[imask], out2.image[imask], atol=1e-4)
    full = torch.ones(B, R, dtype=torch.bool)
    assert torch.allclose(fusion(text, tmask, image, None).text,
                          fusion(text, tmask, image, full).text, atol=1e-6)


def test_cross_modal_fusion_every_parameter_gets_gradient():
    torch.manual_seed(0)
    fusion = CrossModalFusion(D, num_heads=4, dropout=0.0)
    text, tmask, image, imask = _inputs()
    out = fusion(text, tmask, image, imask)
    (out.text[tmask].pow(2).sum()).backward()
    missing = [n for n, p in fusion.named_parameters()
               if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_concat_fusion_by_hand():
    torch.manual_seed(0)
    fusion = ConcatFusion(D, 7, dropout=0.0)
    text = torch.randn(2, 3, D)
    glob = torch.randn(2, 7)
    out = fusion(text, glob)
    assert out.shape == (2, 3, D)
    v = glob[1] @ fusion.proj.weight.T + fusion.proj.bias
    expected = torch.cat([text[1, 2], v]) @ fusion.out.weight.T + fusion.out.bias
    assert torch.allclose(out[1, 2], expected, atol=1e-5)
    # a post without an image: the image half is exactly zero, whatever the vector holds
    present = torch.tensor([True, False])
    out_p = fusion(text, glob * 1e6, present)
    expected0 = torch.cat([text[1, 0], torch.zeros(D)]) @ fusion.out.weight.T + fusion.out.bias
    assert torch.allclose(out_p[1, 0], expected0, atol=1e-5)
    assert torch.isfinite(out_p).all()


def test_gather_positions():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float).view(2, 4, 3)
    got = gather_positions(hidden, torch.tensor([3, 1]))
    assert torch.equal(got, torch.stack([hidden[0, 3], hidden[1, 1]]))
    got2 = gather_positions(hidden, torch.tensor([[0, 2], [3, 3]]))
    assert got2.shape == (2, 2, 3)
    assert torch.equal(got2[0, 1], hidden[0, 2]) and torch.equal(got2[1, 0], hidden[1, 3])
    with pytest.raises(IndexError, match="row 1"):
        gather_positions(hidden, torch.tensor([0, 4]))
    with pytest.raises(IndexError, match="row 0"):
        gather_positions(hidden, torch.tensor([-1, 0]))


def test_heads():
    torch.manual_seed(0)
    tag = TokenTaggingHead(D, 5, dropout=0.0)
    h = torch.randn(2, 6, D)
    assert tag(h).shape == (2, 6, 5)
    pair = PairClassifierHead(D, 4, dropout=0.0)
    head, tail = torch.tensor([1, 5]), torch.tensor([3, 0])
    logits = pair(h, head, tail)
    assert logits.shape == (2, 4)
    expected = torch.cat([h[1, 5], h[1, 0]]) @ pair.proj.weight.T + pair.proj.bias
    assert torch.allclose(logits[1], expected, atol=1e-5)
    # order matters: swapping head and tail changes the logits
    assert not torch.allclose(pair(h, tail, head), logits)
