"""The image feature cache: hits return identical tensors, keys follow content and encoder,
corrupt entries are detected and recomputed, writes are atomic, float16 storage."""

from __future__ import annotations

import warnings

import pytest
import torch
from PIL import Image

from mmie.errors import ConfigError, ImageError


def _encoder(seed: int = 0):
    from mmie.encoders.vision import build_vision_encoder

    torch.manual_seed(seed)
    return build_vision_encoder("timm:test_efficientnet", pretrained=False, image_size=64)


@pytest.fixture(scope="module")
def enc():
    return _encoder(0)


@pytest.fixture()
def images(tmp_path):
    """Five distinct PNG files and two in-memory images (one a callable)."""
    paths = []
    for i in range(5):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (40 + i, 30), (40 * i, 255 - 40 * i, 7 * i)).save(p)
        paths.append(p)
    mem = Image.new("RGB", (33, 33), (9, 99, 199))
    items = [(p.name, p) for p in paths]
    items.append(("mem", mem))
    items.append(("lazy", lambda: Image.new("L", (20, 40), 128)))
    return items


def _direct(enc, items):
    """The features computed without any cache."""
    pils = []
    for _, src in items:
        if isinstance(src, Image.Image):
            pils.append(src)
        elif callable(src):
            pils.append(src())
        else:
            pils.append(Image.open(src))
    with torch.no_grad():
        return enc(enc.preprocess(pils))


def test_second_call_is_all_hits_and_identical(enc, images, tmp_path):
    from mmie.encoders.cache import FeatureCache

    cache = FeatureCache(tmp_path / "cache", enc)
    g1, r1 = cache.get_or_compute(images)
    assert (cache.hits, cache.misses, cache.computed) == (0, 7, 7)
    assert g1.shape == (7, 256) and r1.shape == (7, 4, 256)
    g0, r0 = _direct(enc, images)
    torch.testing.assert_close(g1, g0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r1, r0, atol=1e-5, rtol=1e-5)
    files = sorted((tmp_path / "cache" / enc.identity).rglob("*.safetensors"))
    assert len(files) == 7
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # atomic writes leave nothing behind

    again = FeatureCache(tmp_path / "cache", enc)
    g2, r2 = again.get_or_compute(images)
    assert (again.hits, again.misses, again.computed) == (7, 0, 0)
    assert torch.equal(g1, g2) and torch.equal(r1, r2)
    # reordered request: rows follow the request
    g3, _ = again.get_or_compute(images[::-1])
    assert torch.equal(g3, g1.flip(0))


def test_identical_content_is_computed_once(enc, images, tmp_path):
    from mmie.encoders.cache import FeatureCache

    dup = tmp_path / "copy_of_img0.png"
    dup.write_bytes(images[0][1].read_bytes())
    cache = FeatureCache(tmp_path / "cache", enc)
    g, _ = cache.get_or_compute([images[0], ("copy", dup), images[1]])
    assert (cache.misses, cache.computed) == (3, 2)
    assert torch.equal(g[0], g[1]) and not torch.equal(g[0], g[2])


def test_changed_image_or_encoder_invalidates(enc, images, tmp_path):
    from mmie.encoders.cache import FeatureCache

    root = tmp_path / "cache"
    g1, _ = FeatureCache(root, enc).get_or_compute(images[:3])
    other = _encoder(seed=1)
    assert other.identity != enc.identity
    cache = FeatureCache(root, other)
    g2, _ = cache.get_or_compute(images[:3])
    assert (cache.hits, cache.misses) == (0, 3)
    assert not torch.allclose(g1, g2)
    # an edited file under the same key is a new entry
    Image.new("RGB", (40, 30), (1, 2, 3)).save(images[0][1])
    cache = FeatureCache(root, enc)
    g3, _ = cache.get_or_compute(images[:3])
    assert (cache.hits, cache.misses) == (2, 1)
    assert not torch.equal(g3[0], g1[0]) and torch.equal(g3[1:], g1[1:])


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_corrupt_entry_is_detected_and_recomputed(enc, images, tmp_path, damage):
    from mmie.encoders.cache import FeatureCache, image_content_hash

    root = tmp_path / "cache"
    g1, r1 = FeatureCache(root, enc).get_or_compute(images[:2])
    cache = FeatureCache(root, enc)
    path = cache.path_for(image_content_hash(images[0][1])[0])
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-9] ^= 0xFF  # one byte inside the region tensor: only the checksum notices
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"image 'img0\.png' is corrupt"):
        g2, r2 = cache.get_or_compute(images[:2])
    assert (cache.hits, cache.misses, cache.corrupt) == (1, 1, 1)
    assert torch.equal(g2[1], g1[1]) and torch.equal(r2[1], r1[1])  # the intact entry
    # recomputed alone rather than in a batch of two: equal up to float rounding
    torch.testing.assert_close(g2[0], g1[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r2[0], r1[0], atol=1e-5, rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g3, r3 = cache.get_or_compute(images[:2])  # repaired: hits, no warning
    assert cache.hits == 3 and torch.equal(g3, g2) and torch.equal(r3, r2)


def test_half_storage(enc, images, tmp_path):
    from safetensors import safe_open

    from mmie.encoders.cache import FeatureCache

    full, _ = FeatureCache(tmp_path / "full", enc).get_or_compute(images)
    cache = FeatureCache(tmp_path / "half", enc, half=True)
    g1, r1 = cache.get_or_compute(images)
    assert g1.dtype == torch.float32
    assert torch.equal(g1, full.half().float())  # values are the float16 rounding
    g2, r2 = FeatureCache(tmp_path / "half", enc, half=True).get_or_compute(images)
    assert torch.equal(g1, g2) and torch.equal(r1, r2)
    f = next((tmp_path / "half").rglob("*.safetensors"))
    with safe_open(str(f), "pt") as st:
        assert st.get_tensor("regions").dtype == torch.float16


def test_batches_and_progress(enc, images, tmp_path):
    from mmie.encoders.cache import FeatureCache

    g1, r1 = FeatureCache(tmp_path / "a", enc, batch_size=2, progress=True).get_or_compute(images)
    g2, r2 = FeatureCache(tmp_path / "b", enc, batch_size=32).get_or_compute(images)
    torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r1, r2, atol=1e-5, rtol=1e-5)


def test_bad_inputs(enc, tmp_path):
    from mmie.encoders.cache import FeatureCache
    from mmie.encoders.vision import build_vision_encoder

    cache = FeatureCache(tmp_path / "cache", enc)
    with pytest.raises(ImageError, match=r"missing\.jpg.*'post-7': file not found"):
        cache.get_or_compute([("post-7", tmp_path / "missing.jpg")])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(ImageError, match="'post-8': cannot decode"):
        cache.get_or_compute([("post-8", bad)])
    torch.manual_seed(0)
    trainable = build_vision_encoder("timm:test_efficientnet", pretrained=False, image_size=64,
                                     frozen=False)
    with pytest.raises(ConfigError, match="frozen"):
        FeatureCache(tmp_path / "cache", trainable)
    g, r = cache.get_or_compute([])
    assert g.shape == (0, 256) and r.shape == (0, 4, 256)


def test_compute_device_moves_the_encoder_there_and_back(images, tmp_path, monkeypatch):
    """With a compute device the encoder goes there for the missing features and comes back;
    without one (the default) it stays where it is, GPU present or not; batches: 32 on the
    CPU unless asked."""
    from mmie.encoders.cache import FeatureCache

    enc = _encoder(0)
    moves, batches = [], []
    real_to, real_fwd = enc.to, enc.forward
    monkeypatch.setattr(enc, "to", lambda d: (moves.append(str(d)), real_to(d))[1])
    monkeypatch.setattr(enc, "forward", lambda x: (batches.append(len(x)), real_fwd(x))[1])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    g0, _ = FeatureCache(tmp_path / "a", enc).get_or_compute(images)
    assert moves == [] and batches == [len(images)]
    g1, _ = FeatureCache(tmp_path / "b", enc, compute_device="cpu:0",
                         batch_size=3).get_or_compute(images)
    assert moves == ["cpu:0", "cpu"] and batches[1:] == [3, 3, 1]
    assert torch.allclose(g0, g1, atol=1e-6)  # other batch sizes: float rounding only


def test_feature_device_follows_the_run(monkeypatch):
    """A training run computes its cache on this rank's GPU, never for accelerator=cpu, a
    fork-based strategy or without CUDA."""
    from mmie.config import load_config
    from mmie.training.data import feature_device

    def dev(*sets):
        return feature_device(load_config(None, list(sets)))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev() is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert dev() == "cuda:0"
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dev("trainer.strategy=ddp") == "cuda:1"
    assert dev("trainer.accelerator=cpu") is None
    assert dev("trainer.strategy=ddp_fork") is None
