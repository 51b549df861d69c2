"""Issue 20's CPU prediction path (``mmie predict``) changes no result: the tag decoder that
replaces seqeval's on the prediction path, the vision encoder in micro-batches on CPU, and the
model rebuilt without random initialisation before its weights are loaded. Also: predicting
imports neither seqeval nor scikit-learn nor Lightning (start-up time)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image
from seqeval.metrics.sequence_labeling import get_entities

from helpers import subprocess_env
from mmie.data.tags import conll_chunks
from mmie.encoders.vision import micro_batches


# ---- the tag decoder ------------------------------------------------------------------------
def test_conll_chunks_equal_seqeval_on_every_short_sequence():
    """Every sequence of up to 5 tags over two types and all BIOES prefixes (66,430 of them,
    malformed ones included): the same chunks in the same order as seqeval's get_entities."""
    alphabet = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC") for p in "BIES"]
    n = 0
    for length in range(0, 6):
        for seq in itertools.product(alphabet, repeat=length):
            seq = list(seq)
            assert conll_chunks(seq) == get_entities(seq), seq
            n += 1
    assert n == sum(9 ** k for k in range(6))
    # hand-checked cases: an I- after O or after another type opens a chunk
    assert conll_chunks(["I-PER", "I-PER", "O", "B-LOC", "I-PER"]) == [
        ("PER", 0, 1), ("LOC", 3, 3), ("PER", 4, 4)]
    assert conll_chunks(["B-X", "E-X", "S-X", "I-X"]) == [("X", 0, 1), ("X", 2, 2), ("X", 3, 3)]


# ---- micro-batches of the vision encoder ------------------------------------------------------
def test_micro_batches_cover_in_order_and_never_leave_one_picture_alone():
    assert micro_batches(0, 2) == []
    assert micro_batches(1, 2) == [(0, 1)]
    assert micro_batches(3, 2) == [(0, 3)]
    assert micro_batches(5, 2) == [(0, 3), (3, 5)]
    assert micro_batches(32, 3) == [(0, 4), (4, 8)] + [(a, a + 3) for a in range(8, 32, 3)]
    for n in range(1, 70):
        for size in (2, 3, 4, 8):
            ch = micro_batches(n, size)
            assert ch[0][0] == 0 and ch[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ch, ch[1:]))
            sizes = [b - a for a, b in ch]
            assert max(sizes) - min(sizes) <= 1
            assert min(sizes) >= min(n, size)


def _pictures(n: int, seed: int = 0) -> list[Image.Image]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        side = int(torch.randint(40, 160, (1,), generator=g))
        px = torch.randint(0, 256, (side, side + 7, 3), generator=g, dtype=torch.uint8)
        out.append(Image.fromarray(px.numpy(), "RGB"))
    return out


class _Calls:
    def __init__(self, module):
        self.sizes: list[int] = []
        self._h = module.register_forward_pre_hook(lambda m, args: self.sizes.append(
            int(args[0].shape[0])))

    def close(self):
        self._h.remove()


@pytest.mark.parametrize("name", ["random:tiny-resnet", "efficientnet_lite0"])
def test_encode_batch_in_micro_batches_equals_one_call(name):
    """The features of 7 pictures encoded in calls of 3 + 4 equal one call of 7 (stated
    tolerance 1e-6; bit-identical on the 2-core machine here), for the tiny test encoder and
    the packaged EfficientNet-Lite0 the demo model uses."""
    from mmie.config import load_config
    from mmie.training.train import build_encoders

    torch.manual_seed(0)
    _, vision = build_encoders(load_config(None, [f"model.vision_encoder={name}"]), True)
    vision.eval()
    x = vision.preprocess(_pictures(7))
    calls = _Calls(vision)
    with torch.no_grad():
        g1, r1 = vision(x)
        g2, r2 = vision.encode_batch(x, micro_batch=3)
        g3, r3 = vision.encode_batch(x, micro_batch=4)  # 7 < 2 * 4: one call
    calls.close()
    assert calls.sizes == [7, 4, 3, 7]
    for a, b in ((g1, g2), (r1, r2), (g1, g3), (r1, r3)):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=0, atol=1e-6), (a - b).abs().max()


def test_predictor_outputs_do_not_depend_on_the_micro_batch(tiny_run, monkeypatch):
    """``mmie.load(...).predict_batch`` on posts with pictures: the same entities, offsets and
    scores with the vision encoder in micro-batches (the CPU default) as in one call."""
    import mmie
    import mmie.encoders.vision as V
    from mmie.data.images import resolve_image
    from mmie.data.tokenize import words_to_text
    from mmie.training.data import image_dir_for, load_examples

    out, _, cfg = tiny_run("mmib_ner")
    pred = mmie.load(out / "model")
    with torch.no_grad():  # the barely trained tiny model: tag entities, not only O
        pred.model.head.proj.bias[pred.task.labels.index("O")] -= 3.0
    img_dir = image_dir_for(cfg, "test")
    items = []
    for ex in load_examples(cfg, "test")[:9]:
        text, _ = words_to_text(ex.tokens)
        items.append({"text": text, "image": str(resolve_image(img_dir, ex.image))})
    items.insert(4, {"text": items[0]["text"]})  # one post without a picture
    chunks = [b - a for a, b in micro_batches(9, V.CPU_MICRO_BATCH)]
    calls = _Calls(pred.model.vision)
    chunked = pred.predict_batch(items)
    monkeypatch.setattr(V, "CPU_MICRO_BATCH", 0)  # 0: one call for the batch
    whole = pred.predict_batch(items)
    calls.close()
    # first call: the 9 pictures in micro-batches, then the missing picture's placeholder
    # (memoised); second call: the 9 pictures at once
    assert len(chunks) > 1 and calls.sizes == chunks + [1, 9]
    assert sum(len(r) for r in whole) >= 3  # entities to compare, not empty lists
    assert len(chunked) == len(whole) == 10
    for a, b in zip(chunked, whole):
        assert [{k: v for k, v in e.items() if k != "score"} for e in a] == \
            [{k: v for k, v in e.items() if k != "score"} for e in b]
        assert [e["score"] for e in a] == pytest.approx([e["score"] for e in b], abs=2e-6)


# ---- loading ------------------------------------------------------------------------------------
def test_load_skips_random_init_and_restores_torch_init(tiny_run):
    """The loaded model holds exactly the saved weights, and the no-init context is gone
    after loading (torch's init functions are the originals again)."""
    from safetensors.torch import load_file

    from mmie.models.factory import load_pretrained

    originals = (torch.nn.init.normal_, torch.nn.init.kaiming_uniform_, torch.nn.init.ones_)
    out, _, _ = tiny_run("mmib_ner")
    model, *_ = load_pretrained(out / "model")
    assert (torch.nn.init.normal_, torch.nn.init.kaiming_uniform_, torch.nn.init.ones_) == \
        originals
    saved = load_file(str(out / "model" / "model.safetensors"))
    state = model.state_dict()
    assert sorted(saved) == sorted(state)
    for k, v in saved.items():
        assert torch.equal(state[k], v), k
    lin = torch.nn.Linear(3, 3)  # initialisation works again
    assert lin.weight.abs().sum() > 0


def test_predict_imports_no_training_or_metrics_stack(tiny_run, tmp_path):
    """``mmie predict`` on posts with and without a picture, in a fresh interpreter: seqeval,
    scikit-learn and Lightning stay unimported (about 0.6 s and more of start-up)."""
    out, _, _ = tiny_run("mmib_ner")
    code = ("import json, sys, mmie.cli\n"
            f"rc = mmie.cli.main(['predict', {str(out / 'model')!r}, '--text', 'Jordan in Paris'])\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'seqeval', 'sklearn', 'lightning', 'pytorch_lightning', 'matplotlib', 'fastapi'})\n"
            "print(json.dumps({'rc': rc, 'heavy': heavy}))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=subprocess_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    last = json.loads(res.stdout.strip().splitlines()[-1])
    assert last == {"rc": 0, "heavy": []}


def test_load_with_cuda_graphs_sets_the_crf_cache_and_keeps_cpu_outputs(tiny_run):
    import mmie

    out, _, _ = tiny_run("mmib_ner")
    plain = mmie.load(out / "model")
    graphs = mmie.load(out / "model", cuda_graphs=True)
    assert plain.model.crf.cuda_graphs is None
    cache = graphs.model.crf.cuda_graphs
    assert cache is not None
    items = [{"text": "Kevin Durant visits Paris with Obama"}, {"text": "RT @nba : LeBron"}]
    assert graphs.predict_batch(items) == plain.predict_batch(items)
    assert cache.replays == 0 and cache.graphs == {}  # CPU tensors: eager
