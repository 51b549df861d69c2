"""Image regions and their boxes: the grid of the vision encoder's feature map, detected
objects (crops through the same frozen encoder), or both (``data.regions``).

* ``grid``: the feature map average-pooled to ``model.region_grid`` x ``model.region_grid``
  cells, row-major; cell ``(i, j)`` of an ``s x s`` grid has the box
  ``[j/s, i/s, (j+1)/s, (i+1)/s]`` (:func:`grid_boxes`).
* ``objects``: up to ``data.max_objects`` boxes per picture from a
  :class:`~mmie.encoders.detector.Detector` (or a boxes file written by
  ``mmie data boxes``); each crop goes through the frozen encoder and its global vector is
  the region's feature. Pictures with fewer boxes are padded and the padding masked.
* ``both``: the grid cells, then the objects.

The global image token always stays (box ``[0, 0, 1, 1]``). Batches carry
``image_regions`` ``[B, R, D]`` (grid) and ``image_objects`` ``[B, K, D]``,
``image_object_boxes`` ``[B, K, 4]``, ``image_object_mask`` ``[B, K]`` (objects).

Crop features are cached like whole pictures (:class:`~mmie.encoders.cache.FeatureCache`,
global vectors only), keyed by the picture's content hash and the crop's pixel box; detections
are cached per picture under the detector's identity. A boxes file
(``data.boxes_file``) replaces the detector, so a machine without detector weights computes
the same features.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TextIO

import torch

from mmie.errors import ConfigError, DataError

__all__ = ["REGION_MODES", "BOXES_FORMAT", "grid_boxes", "box_features", "crop_box",
           "crop_digest", "read_boxes_file", "write_boxes_file", "RegionSource",
           "object_features", "featurize_pictures", "detector_from_config"]

REGION_MODES = ("grid", "objects", "both")
BOXES_FORMAT = "mmie-boxes-1"
FULL_BOX = (0.0, 0.0, 1.0, 1.0)


# ---- boxes ----------------------------------------------------------------------------------
def grid_boxes(side: int, device=None) -> torch.Tensor:
    """``[side * side, 4]`` normalised ``[x0, y0, x1, y1]`` of a row-major ``side x side``
    grid (cell ``(i, j)`` is row ``i``, column ``j``)."""
    if side < 1:
        raise ValueError(f"grid side must be >= 1, got {side}")
    i = torch.arange(side, dtype=torch.float32, device=device)
    rows, cols = torch.meshgrid(i, i, indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    return torch.stack([cols / side, rows / side, (cols + 1) / side, (rows + 1) / side], dim=-1)


def boxes_for_regions(n: int, device=None) -> torch.Tensor:
    """The grid boxes of ``n`` row-major regions (``n`` must be a square)."""
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise ValueError(f"{n} image regions do not form a square grid, so their boxes are "
                         "unknown (a non-square model.image_size?); use a square input or "
                         "set model.box_embedding=false")
    return grid_boxes(side, device=device)


def box_features(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` boxes -> ``[..., 5]``: ``[x0, y0, x1, y1, area]`` (the box embedding's
    input)."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return torch.cat([boxes, area.unsqueeze(-1)], dim=-1)


def crop_box(size: tuple[int, int], box: Sequence[float]) -> tuple[int, int, int, int]:
    """Pixel box ``(left, top, right, bottom)`` of a normalised box on a ``(W, H)`` picture:
    outward-rounded, inside the picture, at least one pixel each way."""
    W, H = size
    l = min(W - 1, max(0, math.floor(box[0] * W)))
    t = min(H - 1, max(0, math.floor(box[1] * H)))
    r = max(l + 1, min(W, math.ceil(box[2] * W)))
    b = max(t + 1, min(H, math.ceil(box[3] * H)))
    return l, t, r, b


def crop_digest(image_digest: str, pixel_box: Sequence[int]) -> str:
    """The feature-cache key of a crop: the picture's content hash and the pixel box."""
    return hashlib.sha256(f"mmie-crop-1|{image_digest}|{','.join(map(str, pixel_box))}"
                          .encode()).hexdigest()


# ---- boxes files ------------------------------------------------------------------------------
def write_boxes_file(path: str | Path, settings: dict[str, Any], identity: str,
                     rows: Sequence[tuple]) -> Path:
    """JSON lines: a header ``{"format", "detector_identity", "settings"}``, then one line
    per picture ``{"sha256", "image", "size", "boxes": [[label, score, x0, y0, x1, y1], ...]}``
    (``rows``: ``(sha256, image key, detections)`` or ``(sha256, image key, detections,
    (W, H))``). Written atomically; gzip-compressed when the name ends in ``.gz``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with _text_writer(fd, path) as f:
        f.write(json.dumps({"format": BOXES_FORMAT, "detector_identity": identity,
                            "settings": settings}, sort_keys=True) + "\n")
        for row in rows:
            digest, key, dets = row[:3]
            line = {"sha256": digest, "image": key, "boxes": [d.to_list() for d in dets]}
            if len(row) > 3 and row[3] is not None:
                line["size"] = list(row[3])
            f.write(json.dumps(line) + "\n")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a data file is not
    os.replace(tmp, path)
    return path


@contextmanager
def _text_writer(fd: int, path: Path) -> Iterator[TextIO]:
    """A text stream over the open file ``fd``: gzip (mtime 0, so the same boxes give the same
    bytes) when ``path`` ends in ``.gz``, else plain UTF-8."""
    if path.suffix != ".gz":
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        return
    with os.fdopen(fd, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            io.TextIOWrapper(gz, encoding="utf-8") as f:
        yield f


def read_boxes_file(path: str | Path, by_name: dict | None = None
                    ) -> tuple[dict[str, Any], dict[str, list]]:
    """``(header, {sha256: [Detection]})`` of a file written by :func:`write_boxes_file`;
    a malformed line raises :class:`DataError` naming the file and line. ``by_name``, when
    given, is filled with ``{image key: ((W, H), [Detection])}`` for lines with a size."""
    from mmie.encoders.detector import Detection

    path = Path(path)
    if not path.is_file():
        raise DataError("boxes file not found (write it with `mmie data boxes`)", path=path)
    header: dict[str, Any] | None = None
    boxes: dict[str, list] = {}
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"not JSON ({e.msg})", path=path, line=n) from None
                if header is None:
                    if not isinstance(obj, dict) or obj.get("format") != BOXES_FORMAT:
                        raise DataError(f"the first line must be a header with format "
                                        f"{BOXES_FORMAT!r}", path=path, line=n)
                    header = obj
                    continue
                if not isinstance(obj, dict) or not isinstance(obj.get("sha256"), str) \
                        or not isinstance(obj.get("boxes"), list):
                    raise DataError('expected {"sha256": ..., "image": ..., "boxes": [...]}',
                                    path=path, line=n)
                try:
                    boxes[obj["sha256"]] = [Detection.from_list(b) for b in obj["boxes"]]
                except ValueError as e:
                    raise DataError(str(e), path=path, line=n, field="boxes") from None
                if by_name is not None and isinstance(obj.get("image"), str) and obj.get("size"):
                    by_name[obj["image"]] = (tuple(obj["size"]), boxes[obj["sha256"]])
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:  # truncated / not gzip
        raise DataError(f"cannot read the boxes file ({type(e).__name__}: {e})",
                        path=path) from None
    if header is None:
        raise DataError("empty boxes file (no header)", path=path)
    return header, boxes


# ---- where boxes come from ------------------------------------------------------------------------
def detector_settings(data_cfg) -> dict[str, Any]:
    return {"detector": data_cfg.detector, "max_objects": int(data_cfg.max_objects),
            "threshold": float(data_cfg.detector_threshold)}


def detector_from_config(data_cfg):
    """The :class:`~mmie.encoders.detector.Detector` that ``data.detector`` /
    ``data.max_objects`` / ``data.detector_threshold`` describe."""
    from mmie.encoders.detector import Detector

    return Detector(data_cfg.detector, max_objects=int(data_cfg.max_objects),
                    threshold=float(data_cfg.detector_threshold))


class RegionSource:
    """Object boxes per picture: from ``boxes_file`` when given (no detector needed), else
    from the configured detector, cached under ``cache_dir/detections/<identity>/``.

    A picture is found in the boxes file by its content hash; failing that (the same JPEG
    decoded by another libjpeg, a synthetic picture drawn by another Pillow) by its image key
    (``split/file``) if the picture has the recorded size. Those are counted in
    :attr:`matched_by_name`."""

    def __init__(self, data_cfg, cache_dir: str | Path | None = None,
                 boxes_file: str | Path | None = None, detector=None):
        self.settings = detector_settings(data_cfg)
        self.boxes_file = Path(boxes_file) if boxes_file else None
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._detector = detector
        self._file: dict[str, list] | None = None
        self.detected = 0
        self.from_cache = 0
        self.matched_by_name = 0
        self._by_name: dict = {}
        if self.boxes_file is not None:
            header, self._file = read_boxes_file(self.boxes_file, self._by_name)
            made = header.get("settings") or {}
            diff = {k: (made.get(k), v) for k, v in self.settings.items() if made.get(k) != v}
            if diff:
                raise ConfigError(
                    f"{self.boxes_file} was written with other detector settings than this "
                    "run's: " + ", ".join(f"{k}: file {a!r} vs config {b!r}"
                                          for k, (a, b) in diff.items()) +
                    "; rewrite it with `mmie data boxes` or set the data.* keys to match")

    @property
    def detector(self):
        if self._detector is None:
            self._detector = detector_from_config(_Settings(self.settings))
        return self._detector

    def boxes(self, key: str, digest: str, image: Callable[[], Any]) -> list:
        """Detections of one picture; ``image()`` decodes it (only when needed)."""
        if self._file is not None:
            if digest in self._file:
                return self._file[digest]
            img = image()
            if key in self._by_name and tuple(self._by_name[key][0]) == tuple(img.size):
                self.matched_by_name += 1
                return self._by_name[key][1]
            if _uniform(img):
                return []
            raise DataError(f"picture {key!r} (sha256 {digest[:12]}...) is not in the boxes "
                            "file; rewrite it with `mmie data boxes` over this data set",
                            path=self.boxes_file)
        det = self.detector
        path = None
        if self.cache_dir is not None:
            path = self.cache_dir / "detections" / det.identity / digest[:2] / f"{digest}.json"
            if path.exists():
                try:
                    from mmie.encoders.detector import Detection

                    rows = json.loads(path.read_text(encoding="utf-8"))
                    found = [Detection.from_list(r) for r in rows]
                    self.from_cache += 1
                    return found
                except (OSError, ValueError):
                    pass  # damaged entry: detect again and overwrite it
        found = det.detect(image())
        self.detected += 1
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".det.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump([d.to_list() for d in found], f)
            os.replace(tmp, path)
        return found


class _Settings:
    def __init__(self, s: dict[str, Any]):
        self.detector = s["detector"]
        self.max_objects = s["max_objects"]
        self.detector_threshold = s["threshold"]


def _uniform(img) -> bool:
    ext = img.convert("RGB").getextrema()
    return all(lo == hi for lo, hi in ext)


# ---- features --------------------------------------------------------------------------------------
def _pack(dets_per_image: list[list], feats: list[torch.Tensor], K: int, D: int):
    N = len(dets_per_image)
    objects = torch.zeros(N, K, D, dtype=torch.float32)
    boxes = torch.zeros(N, K, 4, dtype=torch.float32)
    mask = torch.zeros(N, K, dtype=torch.bool)
    for i, (dets, f) in enumerate(zip(dets_per_image, feats)):
        n = min(K, len(dets))
        if n:
            objects[i, :n] = f[:n]
            boxes[i, :n] = torch.tensor([d.box for d in dets[:n]], dtype=torch.float32)
            mask[i, :n] = True
    return objects, boxes, mask


def object_features(vision, items: Sequence[tuple[str, Any]], source: RegionSource,
                    max_objects: int, cache_dir: str | Path | None = None,
                    batch_size: int = 32, compute_device: str | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(objects [N, K, D], boxes [N, K, 4], mask [N, K])`` for ``items`` (``(key, source)``
    as :meth:`FeatureCache.get_or_compute` takes them). Crop features go through a
    :class:`FeatureCache` under ``cache_dir`` when given (keyed by picture hash and pixel box),
    else are computed directly; ``compute_device``: where the cache computes missing crop
    features (see :class:`FeatureCache`)."""
    from mmie.encoders.cache import FeatureCache, _open_image, image_content_hash

    crop_items: list[tuple[str, Callable[[], Any]]] = []
    crop_keys: list[str] = []
    per_image: list[list] = []
    spans: list[tuple[int, int]] = []
    last: dict[str, Any] = {}

    def opener(key, src, pil):
        def get():
            if pil is not None:
                return pil
            if last.get("key") != key:  # crops of one picture are consecutive: decode once
                last.clear()
                last.update(key=key, img=_open_image(key, src))
            return last["img"]
        return get

    for key, src in items:
        digest, pil = image_content_hash(src)
        get = opener(key, src, pil)
        dets = source.boxes(key, digest, get)[:max_objects]
        per_image.append(dets)
        start = len(crop_items)
        # the pixel boxes need the picture size: read from the file header, not decoded
        size = _picture_size(src, pil, get) if dets else (0, 0)
        for d in dets:
            def crop(get=get, box=d.box):
                img = get()
                return img.crop(crop_box(img.size, box))
            pb = crop_box(size, d.box)
            crop_items.append((f"{key}#crop{pb}", crop))
            crop_keys.append(crop_digest(digest, pb))
        spans.append((start, len(crop_items)))
    D = vision.out_dim
    if crop_items:
        if cache_dir is not None:
            cache = FeatureCache(cache_dir, vision, batch_size=batch_size, regions=False,
                                 compute_device=compute_device)
            glob, _ = cache.get_or_compute(crop_items, digests=crop_keys)
        else:
            glob = encode_crops(vision, [c() for _, c in crop_items], batch_size)
    else:
        glob = torch.zeros(0, D)
    feats = [glob[a:b] for a, b in spans]
    return _pack(per_image, feats, max_objects, D)


def _picture_size(src, pil, get) -> tuple[int, int]:
    if pil is not None:
        return pil.size
    from PIL import Image

    try:
        with Image.open(src) as im:
            return im.size
    except Exception:  # noqa: BLE001 - decoding errors are raised by the full open below
        return get().size


def encode_crops(vision, pils: list[Any], batch_size: int = 32) -> torch.Tensor:
    """Global vectors ``[N, D]`` of crops through the frozen encoder (no cache)."""
    p = next(vision.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    out = []
    vision.eval()
    for s in range(0, len(pils), batch_size):
        with torch.no_grad():
            g, _ = vision.encode_batch(vision.preprocess(pils[s:s + batch_size]).to(device))
        out.append(g.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, vision.out_dim)


def featurize_pictures(vision, pils: list[Any], *, region_grid: int, regions: str = "grid",
                       max_objects: int = 4, source: RegionSource | None = None,
                       device: torch.device | str = "cpu",
                       pixel_values: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Image inputs of a prediction batch from PIL pictures (``None``: no picture): the one
    place new pictures are featurised for prediction (Predictor, pipeline, service).
    ``pixel_values``: the present pictures' pixels, in order, already preprocessed (on the
    device, :class:`~mmie.encoders.device_pixels.DevicePixels`); then ``pils`` only says
    which posts have a picture, and ``regions`` must be ``grid``.

    Returns ``image_global`` ``[P, D]``, ``image_present`` ``[P]``, and per ``regions``
    ``image_regions`` ``[P, s*s, D]`` and/or ``image_objects`` / ``image_object_boxes`` /
    ``image_object_mask``. A missing picture is encoded as a black placeholder and masked
    (``image_present`` False); it has no objects."""
    from PIL import Image

    from mmie.encoders.vision import pool_regions

    if regions not in REGION_MODES:
        raise ConfigError(f"data.regions={regions!r} is not one of {', '.join(REGION_MODES)}")
    present = torch.tensor([p is not None for p in pils], dtype=torch.bool)
    idx = [k for k, p in enumerate(pils) if p is not None]
    vision.eval()
    if pixel_values is not None and (regions != "grid" or len(pixel_values) != len(idx)):
        raise ConfigError(f"pixel_values for {len(pixel_values)} pictures with {len(idx)} "
                          f"present and data.regions={regions!r}: given pixels need regions "
                          "'grid' and one row per present picture")
    grid = regions in ("grid", "both")
    gi = ri = None
    if idx:  # the pictures there are, as one batch (in micro-batches on CPU)
        with torch.no_grad():
            pix = (vision.preprocess([pils[k] for k in idx], device=device)
                   if pixel_values is None else pixel_values)
            gi, ri = vision.encode_batch(pix)
        gi = gi.float().to(device)
        ri = pool_regions(ri.float(), region_grid).to(device) if grid else None
    if idx and len(idx) == len(pils):
        g, r = gi, ri
    else:  # missing pictures get the placeholder's features (masked by image_present)
        pg, pr = _placeholder(vision, device)
        g = pg.expand(len(pils), -1).clone()
        r = None
        if grid:
            pr = pool_regions(pr.unsqueeze(0), region_grid)[0]
            r = pr.expand(len(pils), *pr.shape).clone()
        if idx:
            at = torch.tensor(idx, device=g.device)
            g[at] = gi
            if grid:
                r[at] = ri
    out = {"image_global": g, "image_present": present.to(device)}
    if grid:
        out["image_regions"] = r
    if regions in ("objects", "both"):
        if source is None:
            raise ConfigError("data.regions=objects/both needs a detector (RegionSource)")
        items = []
        for k, p in enumerate(pils):
            items.append((f"picture {k}", p if p is not None else Image.new("RGB", (32, 32))))
        objs, boxes, mask = object_features(vision, items, source, max_objects)
        out["image_objects"] = objs.to(device)
        out["image_object_boxes"] = boxes.to(device)
        out["image_object_mask"] = (mask & present.unsqueeze(1)).to(device)
    return out


_PLACEHOLDERS: "weakref.WeakKeyDictionary" = None  # type: ignore[assignment]


def _placeholder(vision, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of the black 32 x 32 placeholder of a missing picture (masked out by
    ``image_present``), memoised per encoder and identity."""
    global _PLACEHOLDERS
    import weakref

    from PIL import Image

    if _PLACEHOLDERS is None:
        _PLACEHOLDERS = weakref.WeakKeyDictionary()
    key = (vision.identity, str(device))
    memo = _PLACEHOLDERS.get(vision)
    if memo is None or memo[0] != key:
        with torch.no_grad():
            g, r = vision(vision.preprocess([Image.new("RGB", (32, 32))]).to(device))
        memo = (key, (g[0].float(), r[0].float()))
        _PLACEHOLDERS[vision] = memo
    return memo[1]


def object_inputs(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The object tensors of a batch as keyword arguments of ``ImageInput``."""
    if "image_objects" not in batch:
        return {}
    return {"objects": batch["image_objects"], "object_boxes": batch["image_object_boxes"],
            "object_mask": batch["image_object_mask"]}


def training_object_features(cfg, vision, items: Sequence[tuple[str, Any]],
                             cache_root: str | Path, report: dict[str, Any] | None = None,
                             compute_device: str | None = None
                             ) -> dict[str, torch.Tensor] | None:
    """The object tensors of a run's pictures (``None`` for ``data.regions=grid``): boxes
    from ``data.boxes_file`` or the detector (detections cached under ``cache_root``), crop
    features through the crop feature cache ``cache_root/crops``."""
    if cfg.data.regions == "grid":
        return None
    source = RegionSource(cfg.data, cache_dir=cache_root, boxes_file=cfg.data.boxes_file)
    objs, boxes, mask = object_features(vision, items, source, cfg.data.max_objects,
                                        cache_dir=Path(cache_root) / "crops",
                                        compute_device=compute_device)
    if report is not None:
        per = mask.sum(1)
        report["objects"] = {"source": str(cfg.data.boxes_file or cfg.data.detector),
                             "pictures": int(len(per)),
                             "without_objects": int((per == 0).sum()),
                             "mean_objects": round(float(per.float().mean()), 3) if len(per) else 0.0,
                             "detected": source.detected, "detections_cached": source.from_cache,
                             "boxes_matched_by_name": source.matched_by_name}
    return {"image_objects": objs, "image_object_boxes": boxes, "image_object_mask": mask}
