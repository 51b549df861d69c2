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


def _attention_by_hand(attn, q, kv, kv_mask):
    heads, dim = attn.num_heads, q.shape[-1]
    wq, wk, wv = attn.in_proj_weight.split(dim)
    bq, bk, bv = attn.in_proj_bias.split(dim)
    out = torch.zeros_like(q)
    for b in range(q.shape[0]):
        keys = kv_mask[b].nonzero().flatten()
        if len(keys) == 0:
            continue
        Q, K, V = q[b] @ wq.T + bq, kv[b, keys] @ wk.T + bk, kv[b, keys] @ wv.T + bv
        d = dim // heads
        ctx = torch.cat([torch.softmax(Q[:, h * d:(h + 1) * d] @ K[:, h * d:(h + 1) * d].T
                                       / d ** 0.5, -1) @ V[:, h * d:(h + 1) * d]
                         for h in range(heads)], -1)
        out[b] = ctx @ attn.out_proj.weight.T + attn.out_proj.bias
    return out


def _block_by_hand(block, q, kv, kv_mask):
    ln = torch.nn.functional.layer_norm
    x = ln(q + _attention_by_hand(block.attn, q, kv, kv_mask), (D,), block.norm.weight,
           block.norm.bias, block.norm.eps)
    lin1, _, _, lin2 = block.ffn
    f = torch.nn.functional.gelu(x @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias
    return ln(x + f, (D,), block.norm_ffn.weight, block.norm_ffn.bias, block.norm_ffn.eps)


@pytest.mark.parametrize("layers", [1, 2])
def test_cross_modal_fusion_shapes_and_no_image(layers):
    torch.manual_seed(0)
    fusion = CrossModalFusion(D, num_heads=4, dropout=0.0, layers=layers).eval()
    text, tmask, image, imask = _inputs()
    out = fusion(text, tmask, image, imask)
    # by hand: softmax attention over the valid keys, head by head (no key: zeros)
    t, v = text, image
    for i2t, t2i in zip(fusion.img2txt, fusion.txt2img):
        t = _block_by_hand(i2t, t, v, imask)
        v = _block_by_hand(t2i, v, t, tmask)
    c = _attention_by_hand(fusion.readout, t, v, imask)
    g = torch.sigmoid(torch.cat([t, c], -1) @ fusion.gate.weight.T + fusion.gate.bias)
    want_text = torch.nn.functional.layer_norm(t + g * c, (D,), fusion.norm.weight,
                                               fusion.norm.bias, fusion.norm.eps)
    assert torch.allclose(out.text, want_text, atol=1e-5)
    assert torch.allclose(out.image, v, atol=1e-5)
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
    v = glob[1] @ fusion.proj.weight.T + fusion.proj.bias
    expected = torch.cat([text[1, 2], v]) @ fusion.out.weight.T + fusion.out.bias
    assert torch.allclose(out[1, 2], expected, atol=1e-5)
    # a post without an image: the image half is exactly zero, whatever the vector holds
    present = torch.tensor([True, False])
    out_p = fusion(text, glob * 1e6, present)
    expected0 = torch.cat([text[1, 0], torch.zeros(D)]) @ fusion.out.weight.T + fusion.out.bias
    assert torch.allclose(out_p[1, 0], expected0, atol=1e-5)
    assert torch.isfinite(out_p).all()


def test_concat_fusion_identity_init_starts_as_text_only():
    torch.manual_seed(0)
    fusion = ConcatFusion(D, 7, dropout=0.0, init="identity")
    text = torch.randn(2, 3, D)
    glob = torch.randn(2, 7)
    absent = torch.tensor([False, False])
    assert torch.equal(fusion(text, glob, absent), text)  # no picture: exactly the text
    assert torch.equal(fusion(text, glob), text)  # a picture: its half starts at zero ...
    out = fusion(text, glob, torch.tensor([True, True]))
    out.pow(2).sum().backward()
    img_half = fusion.out.weight.grad[:, D:]
    assert img_half.abs().sum() > 0  # ... and learns from the first step
    with pytest.raises(ValueError, match="init='zeros'"):
        ConcatFusion(D, 7, init="zeros")


def test_gather_positions():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float).view(2, 4, 3)
    got = gather_positions(hidden, torch.tensor([3, 1]))
    assert torch.equal(got, torch.stack([hidden[0, 3], hidden[1, 1]]))
    got2 = gather_positions(hidden, torch.tensor([[0, 2], [3, 3]]))
    assert torch.equal(got2, torch.stack([hidden[0, [0, 2]], hidden[1, [3, 3]]]))
    with pytest.raises(IndexError, match="row 1"):
        gather_positions(hidden, torch.tensor([0, 4]))
    with pytest.raises(IndexError, match="row 0"):
        gather_positions(hidden, torch.tensor([-1, 0]))


def test_heads():
    torch.manual_seed(0)
    tag = TokenTaggingHead(D, 5, dropout=0.0)
    h = torch.randn(2, 6, D)
    assert torch.allclose(tag(h), h @ tag.proj.weight.T + tag.proj.bias, atol=1e-6)
    pair = PairClassifierHead(D, 4, dropout=0.0)
    head, tail = torch.tensor([1, 5]), torch.tensor([3, 0])
    logits = pair(h, head, tail)
    assert torch.allclose(logits[0], torch.cat([h[0, 1], h[0, 3]]) @ pair.proj.weight.T
                          + pair.proj.bias, atol=1e-5)
    expected = torch.cat([h[1, 5], h[1, 0]]) @ pair.proj.weight.T + pair.proj.bias
    assert torch.allclose(logits[1], expected, atol=1e-5)
    # order matters: swapping head and tail changes the logits
    assert not torch.allclose(pair(h, tail, head), logits)
