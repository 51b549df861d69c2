"""Pictures of a batch decoded and transformed on a thread pool: the same pixels, in the same
order, and the same first error as the one-by-one loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmie.data.images import image_workers, load_image, load_images, map_images
from mmie.errors import ImageError


def _pictures(tmp_path: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        arr = rng.integers(0, 256, size=(20 + 3 * k, 30 + k, 3), dtype=np.uint8)
        p = tmp_path / f"p{k}.jpg"
        Image.fromarray(arr).save(p, quality=90)
        out.append(p)
    return out


def test_parallel_load_equals_sequential_in_order(tmp_path):
    paths = _pictures(tmp_path, 9)
    sources = [paths[0], None, *paths[1:], paths[0].read_bytes()]
    seq = [None if s is None else load_image(s) for s in sources]
    par = load_images(sources, workers=4)
    assert len(par) == len(seq) == 11
    for a, b in zip(seq, par):
        if a is None:
            assert b is None
        else:
            assert a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))
    assert [None if p is None else p.size for p in par][:3] == [(30, 20), None, (31, 23)]


def test_first_bad_picture_in_order_raises(tmp_path):
    paths = _pictures(tmp_path, 3)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff not a jpeg")
    missing = tmp_path / "missing.jpg"
    with pytest.raises(ImageError, match="missing.jpg.*not found|not found.*missing.jpg"):
        load_images([paths[0], missing, paths[1], corrupt], workers=3)
    with pytest.raises(ImageError, match="corrupt.jpg"):
        load_images([paths[0], corrupt, paths[1], missing], workers=3)


def test_map_images_keeps_order_and_worker_setting(monkeypatch):
    assert map_images(lambda x: x * x, range(50), workers=4) == [x * x for x in range(50)]
    monkeypatch.setenv("MMIE_IMAGE_WORKERS", "3")
    assert image_workers() == 3
    monkeypatch.setenv("MMIE_IMAGE_WORKERS", "many")
    with pytest.raises(ImageError, match="MMIE_IMAGE_WORKERS"):
        image_workers()
    monkeypatch.setenv("MMIE_IMAGE_WORKERS", "0")
    with pytest.raises(ImageError, match="at least 1"):
        image_workers()


def test_vision_preprocess_parallel_is_bit_identical(tmp_path, monkeypatch):
    from mmie.encoders.vision import build_vision_encoder

    enc = build_vision_encoder("efficientnet_lite0")
    pils = [Image.open(p).convert("RGB") for p in _pictures(tmp_path, 6)]
    pils.append(Image.new("L", (50, 40), 90))  # grey: converted to RGB on the way
    monkeypatch.setenv("MMIE_IMAGE_WORKERS", "1")
    one = enc.preprocess(pils)
    monkeypatch.setenv("MMIE_IMAGE_WORKERS", "4")
    four = enc.preprocess(pils)
    assert one.shape == (7, 3, *enc.image_size)
    assert torch.equal(one, four)
    assert not torch.equal(one[0], one[1])  # distinct pictures stay distinct, in order


def test_default_workers_follow_the_cores(monkeypatch):
    import mmie.data.images as images

    monkeypatch.delenv("MMIE_IMAGE_WORKERS", raising=False)
    for cores, want in [(1, 1), (2, 1), (3, 1), (4, 4), (16, 8), (None, 1)]:
        monkeypatch.setattr(images.os, "cpu_count", lambda c=cores: c)
        assert image_workers() == want, cores


def test_batched_to_tensor_and_normalize_equal_the_per_picture_transform(tmp_path):
    from mmie.encoders.vision import build_vision_encoder

    enc = build_vision_encoder("efficientnet_lite0")
    assert enc._split_transform() is not None  # the batched path is the one taken
    rng = np.random.default_rng(1)
    pils = [Image.open(p).convert("RGB") for p in _pictures(tmp_path, 4)]
    pils.append(Image.fromarray(rng.integers(0, 256, (300, 500, 4), dtype=np.uint8), "RGBA"))
    pils.append(Image.new("L", (64, 90), 200))
    pils.append(Image.new("P", (33, 33)))
    got = enc.preprocess(pils)
    want = torch.stack([enc._transform(_rgb(im)) for im in pils])
    assert got.dtype == want.dtype == torch.float32
    assert torch.equal(got, want)


def _rgb(im):
    from mmie.encoders.vision import _to_rgb

    return _to_rgb(im)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_preprocess_on_the_gpu_equals_the_cpu(tmp_path):
    from mmie.encoders.vision import build_vision_encoder

    enc = build_vision_encoder("efficientnet_lite0")
    pils = [Image.open(p).convert("RGB") for p in _pictures(tmp_path, 5)]
    cpu = enc.preprocess(pils)
    gpu = enc.preprocess(pils, device="cuda")
    assert gpu.device.type == "cuda"
    # the same float operations; the GPU's division and FMA round in the last bit (H200: the
    # first run of this test saw equal shapes, unequal bits), so equal to float32 rounding
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-6)


def test_preprocess_device_argument_on_cpu(tmp_path):
    from mmie.encoders.vision import build_vision_encoder

    enc = build_vision_encoder("efficientnet_lite0")
    pils = [Image.open(p).convert("RGB") for p in _pictures(tmp_path, 3)]
    assert torch.equal(enc.preprocess(pils, device="cpu"), enc.preprocess(pils))
    assert enc.preprocess([], device="cpu").shape == (0, 3, *enc.image_size)


def _square_in_child(q):
    import mmie.data.images as images

    fresh = images._POOL is None  # the parent's pool object (its threads stayed behind) is gone
    q.put((fresh, map_images(lambda x: x * x, range(20), workers=3)))


def test_pool_works_in_a_forked_child():
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork here")
    assert map_images(lambda x: x + 1, range(10), workers=3) == list(range(1, 11))  # pool up
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_square_in_child, args=(q,))
    p.start()
    got = q.get(timeout=60)
    p.join(timeout=60)
    assert p.exitcode == 0
    assert got == (True, [x * x for x in range(20)])
