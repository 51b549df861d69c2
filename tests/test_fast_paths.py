"""Issue 20's faster paths change no result: tokenise-once collate, loader workers, the
device-side gathering of predictions, fused AdamW on CUDA, default prediction batch sizes."""

from __future__ import annotations

import pickle
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

from mmie.config import load_config

_CACHE = Path(tempfile.mkdtemp(prefix="mmie-fast-"))
BASE = ["data.name=synthetic", "data.synthetic_size=60", "data.max_length=48",
        "model.text_encoder=random:tiny-bert", "model.vision_encoder=random:tiny-resnet",
        "trainer.accelerator=cpu", f"cache_dir={_CACHE}"]


def _setup(model_type: str, task: str, *extra: str):
    from mmie.models.factory import build_model
    from mmie.training.data import load_examples
    from mmie.registry import new_task
    from mmie.training.train import build_encoders, model_uses_image

    cfg = load_config(None, [*BASE, f"model.type={model_type}", f"model.task={task}", *extra])
    splits = {s: load_examples(cfg, s) for s in ("train", "dev", "test")}
    t = new_task(cfg, splits)
    splits = t.filter_splits(splits)
    torch.manual_seed(0)
    text, vision = build_encoders(cfg, model_uses_image(cfg))
    return cfg, t, splits, text, vision, build_model(cfg.model, t, text, vision)


@pytest.fixture(scope="module")
def text_ner():
    return _setup("text", "ner")


def _same_batch(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def _same_wordbatch(x, y) -> None:
    for f in ("input_ids", "attention_mask", "word_index", "word_mask", "marker_pos",
              "head_pos", "tail_pos"):
        u, v = getattr(x, f), getattr(y, f)
        assert (u is None) == (v is None), f
        if u is not None:
            assert u.dtype == v.dtype and torch.equal(u, v), f
    assert x.n_truncated == y.n_truncated


# ---- tokenise once -------------------------------------------------------------------------------
def test_token_cache_equals_encoder(text_ner):
    from mmie.encoders.token_cache import TokenCache

    _, _, splits, text, _, _ = text_ner
    posts = [ex.tokens for ex in splits["train"][:12]]
    posts += [["a"] * 60, [], ["x", "\u200b", "y"]]  # truncated at 20, empty, a vanishing word
    cache = TokenCache(text)
    g = torch.Generator().manual_seed(0)
    for rnd in range(6):  # random batches with repeats: misses first, then mixed, then hits
        idx = torch.randint(0, len(posts), (7,), generator=g).tolist()
        batch = [posts[i] for i in idx]
        for max_length in (20, 48):
            _same_wordbatch(cache.encode_words(batch, max_length, warn=False),
                            text.encode_words(batch, max_length, warn=False))
        heads = [(0, 1) if len(p) > 1 else (0, 1) for p in batch]
        tails = [(len(p) - 1, len(p)) for p in batch]
        keep = [i for i, p in enumerate(batch) if len(p) > 1]
        pb = [batch[i] for i in keep]
        hs, ts = [heads[i] for i in keep], [tails[i] for i in keep]
        _same_wordbatch(cache.encode_pair(pb, hs, ts, 20, warn=False),
                        text.encode_pair(pb, hs, ts, 20, warn=False))
    assert cache.hits > 0 and cache.misses > 0
    assert len(cache) < cache.hits + cache.misses
    lab = cache.encode_texts(["person", "location"], 16)
    lab.input_ids.zero_()  # a caller changing its copy does not change the cache
    _same_wordbatch(cache.encode_texts(["person", "location"], 16),
                    text.encode_texts(["person", "location"], 16))
    # the truncation warning on hits too; attribute look-ups reach the encoder
    with pytest.warns(UserWarning, match="did not fit"):
        cache.encode_words([posts[-3]], 20)
    assert cache.tokenizer is text.tokenizer and cache.entity_markers == text.entity_markers
    restored = pickle.loads(pickle.dumps(cache))  # DataLoader workers under spawn
    assert len(restored) == len(cache)


@pytest.mark.parametrize("combo", [("text", "ner"), ("mmib", "re"), ("mg_vmoe", "typing")])
def test_collator_with_token_cache_gives_the_same_batches(combo):
    from mmie.training.data import Collator

    cfg, t, splits, text, _, _ = _setup(*combo)
    exs = splits["train"][:16]
    plain = Collator(t, text, cfg.data.max_length, None, phase="train")
    cached = Collator(t, text, cfg.data.max_length, None, phase="train", cache_tokens=True)
    items = [(i, ex, -1) for i, ex in enumerate(exs)]
    for chunk in (items[:8], items[4:12], items[:8], items[8:]):  # repeats hit the cache
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _same_batch(plain(chunk), cached(chunk))
    assert cached.text_encoder.hits >= 8
    if combo[1] == "ner":  # gold tags: the label ids of each post, then 0 (built from lists)
        b = cached(items[:8])
        for i, (_, ex, _) in enumerate(items[:8]):
            ids = [t.label_id(g, example=ex) for g in t.gold_tags(ex)]
            assert b["tags"][i].tolist() == ids + [0] * (b["tags"].shape[1] - len(ids))
        assert any(x != 0 for row in b["tags"].tolist() for x in row)


def test_loader_with_workers_gives_the_same_batches(text_ner):
    from mmie.training.data import Collator, ExampleDataset, make_loader

    cfg, t, splits, text, _, _ = text_ner
    ds = ExampleDataset(splits["train"][:20])
    col = Collator(t, text, cfg.data.max_length, None, cache_tokens=True)
    ref = list(make_loader(ds, col, 8, shuffle=True, seed=3, group_by_length=True,
                           bucket_batches=2))
    dl = make_loader(ds, col, 8, shuffle=True, num_workers=1, seed=3, group_by_length=True,
                     bucket_batches=2)
    assert dl.persistent_workers and dl.num_workers == 1 and not dl.pin_memory
    for epoch in range(2):  # the persistent worker serves the second epoch from its cache
        got = list(dl)
        assert len(got) == len(ref)
        for a, b in zip(ref, got):
            _same_batch(a, b)


# ---- prediction gathered on the device -----------------------------------------------------------
@torch.no_grad()
def _reference_ner_predict(model, batch):
    """The per-element loop that ``MMIEModel.predict`` used before issue 20."""
    hidden, _ = model.represent(batch)
    em = model._word_emissions(hidden, batch)
    mask = batch["word_mask"].bool()
    paths = model.crf.decode(em, mask)
    marg = model.crf.token_marginals(em, mask)
    return [{"tags": list(p), "scores": [float(marg[i, j, t]) for j, t in enumerate(p)]}
            for i, p in enumerate(paths)]


def test_ner_predict_equals_per_element_reference(text_ner):
    from mmie.training.data import Collator

    cfg, t, splits, text, _, model = text_ner
    with torch.no_grad():  # random head weights large enough for varied tags
        for p in model.head.parameters():
            p.normal_(0, 2.0)
    model.eval()
    exs = splits["test"][:16]
    batch = Collator(t, text, cfg.data.max_length, None, phase="test")(
        [(i, ex, -1) for i, ex in enumerate(exs)])
    got = model.predict(batch)
    ref = _reference_ner_predict(model, batch)
    assert got == ref
    assert len({tuple(o["tags"]) for o in got}) > 1  # not all the same (the test can fail)
    assert all(len(o["tags"]) == len(ex.tokens) for o, ex in zip(got, exs))


def test_typing_predict_equals_per_element_reference():
    from mmie.training.data import Collator

    cfg, t, splits, text, _, model = _setup("label_sim", "typing")
    model.eval()
    exs = splits["test"][:8]
    batch = Collator(t, text, cfg.data.max_length, None, phase="test")(
        [(i, ex, -1) for i, ex in enumerate(exs)])
    got = model.predict(batch)
    s, _, _ = model.scores(batch)
    raw = s.float()
    prob = raw.softmax(-1)
    cands = batch["candidates"]
    assert "score_offset" not in batch
    for row, r, o in zip(prob, raw, got):
        j = int(row.argmax())
        assert o == {"label": cands[j], "score": float(row[j]),
                     "scores": {c: float(p) for c, p in zip(cands, row)},
                     "logits": {c: float(v) for c, v in zip(cands, r)}}


# ---- optimizer and defaults ----------------------------------------------------------------------
def test_adamw_fused_only_on_cuda_without_fp16():
    from mmie.training.module import adamw

    p = [torch.nn.Parameter(torch.ones(3))]
    assert not adamw(p, "cpu", "32-true").defaults["fused"]
    assert adamw(p, "cuda", "bf16-mixed").defaults["fused"] is True
    assert adamw(p, "cuda", "32-true").defaults["fused"] is True
    assert not adamw(p, "cuda", "16-mixed").defaults["fused"]


def test_fused_optimizer_gradients_clipped_by_the_module():
    """Lightning refuses to clip for fused optimizers; the module does it (norm and value)."""
    from mmie.training.module import MMIELightningModule

    lin = torch.nn.Linear(2, 2, bias=False)
    module = MMIELightningModule(lin, None, None, {})
    opt = torch.optim.AdamW(lin.parameters(), fused=True)  # fused runs on the CPU too
    lin.weight.grad = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # norm 5
    module.configure_gradient_clipping(opt, 1.0, "norm")
    assert lin.weight.grad.norm().item() == pytest.approx(1.0, rel=1e-5)
    assert lin.weight.grad[1, 1].item() == pytest.approx(0.8, rel=1e-5)
    lin.weight.grad = torch.tensor([[3.0, -0.5], [0.0, -4.0]])
    module.configure_gradient_clipping(opt, 1.0, "value")
    assert lin.weight.grad.tolist() == [[1.0, -0.5], [0.0, -1.0]]


def test_predict_batch_size_by_device():
    from mmie.batching import PREDICT_BATCH_SIZE, predict_batch_size, to_device

    assert predict_batch_size("cuda:0") == PREDICT_BATCH_SIZE["cuda"] == 256
    assert predict_batch_size("cpu") == 32 and predict_batch_size("mps") == 32
    b = to_device({"x": torch.ones(2), "n": [1]}, "cpu")
    assert torch.equal(b["x"], torch.ones(2)) and b["n"] == [1]
