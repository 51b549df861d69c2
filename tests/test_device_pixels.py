"""New pictures decoded and transformed as tensors on the model's device (``image_decode=
'device'``): upright like Pillow's EXIF transpose, within a grey level or two of the host path,
the same errors, every non-JPEG or refused picture counted."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import COMBOS, get_run
from mmie.data.images import load_image
from mmie.encoders.device_pixels import DevicePixels, EncodedPicture, orient, read_picture
from mmie.errors import ConfigError, ImageError, MMIEError

LEVEL = 1 / 127.5  # one grey level after Normalize(mean 0.5, std 0.5)


@pytest.fixture(scope="module")
def lite0():
    from mmie.encoders.vision import build_vision_encoder

    return build_vision_encoder("efficientnet_lite0")


def _photo(h=90, w=130, seed=0) -> np.ndarray:
    """A smooth, asymmetric picture (JPEG keeps it within a level or two)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    base[: h // 3, : w // 4] = (250, 20, 20)  # a red corner: any wrong turn moves it
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def _jpeg(arr: np.ndarray, orientation: int | None = None, quality: int = 92) -> bytes:
    im = Image.fromarray(arr)
    buf = io.BytesIO()
    if orientation is None:
        im.save(buf, "JPEG", quality=quality)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_device_decode_turns_pictures_upright_like_pillow(lite0, orientation):
    data = _jpeg(_photo(), orientation)
    pic = read_picture(data)
    assert isinstance(pic, EncodedPicture) and pic.orientation == orientation
    got = DevicePixels(lite0).decode([pic], "cpu")[0]
    want = np.asarray(load_image(data))  # Pillow: decode + ImageOps.exif_transpose
    assert tuple(got.shape) == (3, *want.shape[:2])
    diff = np.abs(got.permute(1, 2, 0).numpy().astype(int) - want.astype(int))
    assert diff.max() <= 1  # both are libjpeg-turbo on the CPU


def test_orient_is_a_permutation_of_the_pixels():
    x = (torch.arange(12) + 1).view(1, 3, 4) * torch.tensor([1, 100]).view(2, 1, 1)
    assert orient(x, 1) is x
    for k in range(2, 9):
        y = orient(x, k)
        assert sorted(y.flatten().tolist()) == sorted(x.flatten().tolist())
        assert tuple(y.shape) == ((2, 4, 3) if k >= 5 else (2, 3, 4))
    assert orient(x, 6)[0, 0, -1].item() == x[0, 0, 0].item()  # 90 degrees clockwise


def test_device_pixels_close_to_the_host_path(lite0):
    arrs = [_photo(90 + 7 * k, 130 - 5 * k, seed=k) for k in range(4)]
    datas = [_jpeg(a) for a in arrs]
    dp = DevicePixels(lite0)
    got = dp([read_picture(d) for d in datas], "cpu")
    want = lite0.preprocess([load_image(d) for d in datas])
    assert got.shape == want.shape == (4, 3, 224, 224) and got.dtype == torch.float32
    diff = (got - want).abs()
    assert diff.max().item() <= 2 * LEVEL + 1e-6
    assert diff.mean().item() < 0.5 * LEVEL
    assert dp.counts == {"device": 4, "host": 0, "fallback": 0}
    with torch.no_grad():
        g1, _ = lite0(got)
        g2, _ = lite0(want)
    # H200: 0.986-0.995 on these sharp-edged pictures (nvJPEG's chroma upsampling)
    assert torch.nn.functional.cosine_similarity(g1, g2).min().item() > 0.97


def test_pictures_of_one_size_resize_together_as_one_by_one(lite0):
    dp = DevicePixels(lite0)
    imgs = [torch.from_numpy(_photo(90, 130, seed=k)).permute(2, 0, 1) for k in range(3)]
    imgs.insert(1, torch.from_numpy(_photo(70, 100, seed=9)).permute(2, 0, 1))
    together = dp.transform(imgs)
    alone = torch.cat([dp.transform([x]) for x in imgs])
    assert together.shape == (4, 3, 224, 224)
    assert torch.equal(together, alone)


def test_png_pil_and_grey_go_through_the_host_decoder_counted(lite0, tmp_path):
    arr = _photo()
    png = tmp_path / "a.png"
    Image.fromarray(arr).save(png)
    grey = _jpeg(arr[..., 0])  # a grey JPEG: decoded on the device as RGB
    srcs = [png, Image.fromarray(arr), grey]
    pics = [read_picture(s) for s in srcs]
    assert [type(p).__name__ for p in pics] == ["Image", "Image", "EncodedPicture"]
    dp = DevicePixels(lite0)
    got = dp(pics, "cpu")
    want = lite0.preprocess([load_image(s) for s in srcs])
    assert (got - want).abs().max().item() <= 2 * LEVEL + 1e-6
    assert dp.counts == {"device": 1, "host": 2, "fallback": 0}


def test_truncated_and_corrupt_jpegs_raise_naming_the_file(tmp_path):
    data = _jpeg(_photo())
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg"):
        read_picture(cut)  # not EOI-terminated: the host decoder decides, and refuses
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    with pytest.raises(ImageError, match="junk.jpg"):
        read_picture(junk)
    with pytest.raises(ImageError, match="not found"):
        read_picture(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="exceeds the limit"):
        read_picture(data, max_pixels=100)


def test_a_jpeg_the_device_decoder_refuses_falls_back_counted(lite0, monkeypatch):
    import torchvision.io

    data = _jpeg(_photo())
    pics = [read_picture(data), read_picture(data)]
    real = torchvision.io.decode_jpeg
    calls = []

    def flaky(inp, **kw):  # the second picture fails the batch, and again alone
        calls.append(inp)
        if len(calls) in (2, 4):
            raise RuntimeError("nvjpeg says no")
        return real(inp, **kw)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", flaky)
    monkeypatch.setattr("mmie.encoders.device_pixels.map_images",
                        lambda fn, xs: [fn(x) for x in xs])
    dp = DevicePixels(lite0)
    got = dp.decode(pics, "cpu")
    assert dp.counts == {"device": 1, "host": 0, "fallback": 1}
    want = np.asarray(load_image(data)).transpose(2, 0, 1)
    for x in got:
        assert np.abs(x.numpy().astype(int) - want.astype(int)).max() <= 1


def test_unknown_decoder_is_refused(lite0):
    with pytest.raises(ConfigError, match="nvjpeg"):
        DevicePixels(lite0, decoder="pillow")


def test_other_transforms_are_refused():
    from mmie.encoders.vision import build_vision_encoder
    from transformers import ResNetConfig

    hf = build_vision_encoder("random:tiny-resnet", config=ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_channels=3),
        pretrained=False)
    with pytest.raises(ConfigError, match="image_decode='host'"):
        DevicePixels(hf)


# ---- the Predictor ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lite0_run():
    return get_run("mmib_ner_lite0", *COMBOS["mmib_ner"], "model.vision_encoder=efficientnet_lite0")


def _jpeg_items(tmp_path: Path, n: int = 12) -> list[dict]:
    words = ["Jordan", "visits", "Chicago", "with", "Lincoln", "Park", "fans", "today"]
    items = []
    for k in range(n):
        item = {"tokens": words[k % 3:] + words[: k % 3]}
        if k % 6 != 5:  # most posts have a picture
            dst = tmp_path / f"{k}.jpg"
            dst.write_bytes(_jpeg(_photo(80 + 9 * k, 140 - 4 * k, seed=k), quality=95))
            item["image"] = str(dst)
        items.append(item)
    return items


def test_predictor_device_decode_matches_host(lite0_run, tmp_path):
    import mmie

    items = _jpeg_items(tmp_path)
    host = mmie.load(lite0_run.out / "model")
    dev = mmie.load(lite0_run.out / "model", image_decode="device")
    fh = host.image_inputs([it.get("image") for it in items])
    fd = dev.image_inputs([it.get("image") for it in items])
    assert torch.equal(fh["image_present"], fd["image_present"])
    cos = torch.nn.functional.cosine_similarity(fh["image_global"], fd["image_global"])
    assert cos.min().item() > 0.99
    a, b = host.predict_batch(items), dev.predict_batch(items)
    spans = [[(e["start"], e["end"], e["type"]) for e in r] for r in a]
    assert spans == [[(e["start"], e["end"], e["type"]) for e in r] for r in b]
    counts = dev.info()["image_decode_counts"]
    assert counts == {"device": 20, "host": 0, "fallback": 0}  # 10 pictures, twice
    assert host.info()["image_decode"] == "host"
    bad = dict(items[0], image=str(tmp_path / "nope.jpg"))
    with pytest.raises(ImageError, match="nope.jpg"):
        dev.predict_batch([items[1], bad])


def test_load_refuses_bad_decode_and_device_values(tiny_run):
    import mmie

    out = tiny_run("mmib_ner").out / "model"  # its tiny HF ResNet has no timm transform
    with pytest.raises(ConfigError, match="image_decode"):
        mmie.load(out, image_decode="device")
    with pytest.raises(MMIEError, match="image_decode='gpu'"):
        mmie.load(out, image_decode="gpu")
    with pytest.raises(MMIEError, match="not a torch device"):
        mmie.load(out, device="gpu0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nvjpeg_decode_close_to_the_cpu(lite0):
    # nvJPEG upsamples chroma differently from libjpeg: at a sharp colour edge (the red corner
    # here) single pixels differ by tens of levels (H200: max 76), elsewhere by one or none
    datas = [_jpeg(_photo(90 + 7 * k, 130 - 5 * k, seed=k), orientation=1 + k) for k in range(6)]
    pics = [read_picture(d) for d in datas]
    dp = DevicePixels(lite0, decoder="nvjpeg")
    gpu = dp(pics, "cuda")
    cpu = dp(pics, "cpu")
    assert gpu.device.type == "cuda" and dp.counts["device"] == 12
    # libjpeg decoding on the host, transform on the GPU: the CPU's pixels up to rounding
    lib = DevicePixels(lite0)(pics, "cuda")
    assert lib.device.type == "cuda"
    assert ((lib.cpu() - cpu).abs() / LEVEL).max().item() <= 1.01
    diff = (gpu.cpu() - cpu).abs() / LEVEL
    far = (diff > 4).float().mean().item()
    assert diff.mean().item() < 1.0 and far < 0.02, (diff.mean().item(), far, diff.max().item())
    import copy

    on_gpu = copy.deepcopy(lite0).to("cuda")  # the module's fixture stays on the CPU
    with torch.no_grad():
        g1, _ = on_gpu(gpu)
        g2, _ = on_gpu(cpu.cuda())
    # H200: 0.986-0.995 on these sharp-edged pictures (nvJPEG's chroma upsampling)
    assert torch.nn.functional.cosine_similarity(g1, g2).min().item() > 0.97


def test_pipeline_device_decode_matches_host(lite0_run, tmp_path):
    """mmie.pipeline(..., image_decode='device'): the same entities and relations as the host
    path; an RE model on the host path takes the pictures the NER model only read."""
    import mmie

    re_run = get_run("mmib_re_lite0", *COMBOS["mmib_re"], "model.vision_encoder=efficientnet_lite0")
    items = [{"text": " ".join(it["tokens"]), **({"image": it["image"]} if "image" in it else {})}
             for it in _jpeg_items(tmp_path, n=6)]
    host = mmie.pipeline(ner=lite0_run.out / "model", re=re_run.out / "model",
                         type_constraints=False)
    dev = mmie.pipeline(ner=lite0_run.out / "model", re=re_run.out / "model",
                        type_constraints=False, image_decode="device")
    mixed = mmie.pipeline(ner=mmie.load(lite0_run.out / "model", image_decode="device"),
                          re=mmie.load(re_run.out / "model"), type_constraints=False)

    def key(out):
        return [([(e["start"], e["end"], e["type"]) for e in o["entities"]],
                 [(r["head"], r["tail"], r["label"]) for r in o["relations"]]) for o in out]

    want = key(host.extract_batch(items))
    assert key(dev.extract_batch(items)) == want
    assert key(mixed.extract_batch(items)) == want
    assert dev.ner.info()["image_decode_counts"]["device"] == 5


def test_host_predictor_takes_pictures_read_for_the_device(lite0_run, tmp_path):
    """A host-path predictor given EncodedPictures (read, not decoded, by a device-mode one in
    the same pipeline) decodes them with Pillow: the same image inputs as from the files."""
    import mmie

    host = mmie.load(lite0_run.out / "model")
    paths = [it.get("image") for it in _jpeg_items(tmp_path, n=6)]
    read = [read_picture(p) for p in paths]
    assert sum(isinstance(p, EncodedPicture) for p in read) == 5
    a, b = host.image_inputs(paths), host.image_inputs(read)
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
