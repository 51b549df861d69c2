"""Prediction on new posts: raw text (+ an optional picture) in, typed results / JSON out.

    >>> ner = mmie.load("runs/mmib-twitter2015/model")
    >>> ner.predict(text="Jordan scores 30 in Chicago", image="post.jpg")
    [{"text": "Jordan", "type": "PER", "start": 0, "end": 6, "score": 0.97}, ...]

Character offsets are into the input string. Raw text is split into words by
:func:`mmie.data.tokenize.split_words` (the one tweet-aware splitter). No training stack is
imported here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from safetensors import safe_open

import mmie
from mmie.data.images import decode_image_bytes, load_images
from mmie.data.schema import Example, Relation, Span
from mmie.encoders.device_pixels import DevicePixels, EncodedPicture, read_picture
from mmie.encoders.regions import featurize_pictures
from mmie.errors import MMIEError
from mmie.inference.outputs import Entity, Prediction, Typing, to_json
from mmie.inference.outputs import Relation as RelationResult
from mmie.inference.request import MAX_WORDS, Request, validate_item
from mmie.models.factory import load_pretrained

IMAGE_DECODE = ("host", "device", "nvjpeg")

class Predictor:
    """A loaded model ready for prediction (``mmie.load``).

    One inference path, the shape of a Hugging Face pipeline, used by ``predict``,
    ``predict_batch``, the CLI, the service, the extraction pipeline and ``evaluate``:

    1. :meth:`preprocess`: validate each item (:func:`~mmie.inference.request.validate_item`,
       the one place for request rules), split the text into words, load the picture;
    2. :meth:`forward`: encode a batch of requests (:meth:`encode`) and run the model on it
       (:meth:`forward_batch`: device, ``no_grad``, ``model.predict``);
    3. :meth:`postprocess`: decode the raw outputs into typed results
       (:mod:`mmie.inference.outputs`) with character offsets into each post.

    :meth:`run` chains the three and returns the typed results; :meth:`predict` and
    :meth:`predict_batch` return them as plain JSON values (:func:`~mmie.inference.outputs.to_json`).
    """

    def __init__(self, model, task, run_cfg, meta: dict[str, Any], path: Path | None = None,
                 device: str | torch.device = "cpu", cuda_graphs: bool = False,
                 image_decode: str = "host"):
        if image_decode not in IMAGE_DECODE:
            raise MMIEError(f"image_decode={image_decode!r} is not one of "
                            f"{', '.join(IMAGE_DECODE)}")
        self.model = model.to(device).eval()
        if cuda_graphs and getattr(model, "crf", None) is not None:
            # NER on a GPU: the CRF's decoding loops replayed from CUDA graphs (same kernels,
            # same outputs; one graph per batch size and length); no effect on the CPU
            model.crf.use_cuda_graphs()
        self.task = task
        self.cfg = run_cfg
        self.meta = meta
        self.path = path
        self.device = torch.device(device)
        self.zero_shot = getattr(task, "zero_shot", False)
        self.max_words = MAX_WORDS
        self.image_decode = image_decode
        self.device_pixels = None
        if image_decode != "host" and getattr(model, "vision", None) is not None:
            if run_cfg.data.regions != "grid":
                raise MMIEError(f"image_decode={image_decode!r} needs a model of "
                                f"data.regions=grid; this one uses {run_cfg.data.regions!r} "
                                "(the detector takes host pictures): use image_decode='host'")
            # ConfigError for other transforms
            self.device_pixels = DevicePixels(
                model.vision, decoder="nvjpeg" if image_decode == "nvjpeg" else "libjpeg")

    @property
    def task_name(self) -> str:
        return self.task.name

    @property
    def labels(self) -> list[str]:
        return list(self.task.labels)

    def info(self) -> dict[str, Any]:
        return {"task": self.task.name, "model": self.cfg.model.type, "labels": self.labels,
                "zero_shot": self.zero_shot,
                "encoders": {"text": self.meta.get("text_encoder"),
                             "vision": self.meta.get("vision_encoder")},
                "version": mmie.__version__, "max_words": self.max_words,
                "max_length": self.cfg.data.max_length, "path": str(self.path or ""),
                "image_decode": self.image_decode,
                **({"image_decode_counts": dict(self.device_pixels.counts)}
                   if self.device_pixels is not None else {})}

    # ---- 1. preprocess -------------------------------------------------------------------
    def validate(self, item: Any, n: int = 0, **limits: Any) -> Request:
        """Item ``n`` checked against this model (no picture loaded): a :class:`Request`."""
        return validate_item(item, n, task=self.task.name, zero_shot=self.zero_shot,
                             labels=self.labels, max_words=self.max_words, **limits)

    def preprocess(self, items: Sequence[Any], start: int = 0) -> list[Request]:
        """Validated requests with their pictures loaded (RGB PIL images or ``None``; with
        ``image_decode='device'`` a JPEG is read and checked here and decoded on the device
        in :meth:`image_inputs`)."""
        reqs = [self.validate(item, n) for n, item in enumerate(items, start=start)]
        for r, im in zip(reqs, self.read_pictures([r.image for r in reqs])):
            r.image = im
        return reqs

    def read_pictures(self, sources: Sequence[Any]) -> list[Any]:
        """Pictures (paths, bytes, PIL images or ``None``) as :meth:`image_inputs` takes them:
        decoded by Pillow in parallel (host), or, in a device mode, read and checked in a plain
        loop (the header work is GIL-bound Python; a non-JPEG decodes there, on this thread).
        Either way the first bad picture in order raises its ImageError."""
        if self.device_pixels is not None:
            return [read_picture(s) for s in sources]
        return load_images(sources)

    def example(self, req: Request) -> Example:
        """The model-side example of a request: its words, and the given mentions as spans
        (head, tail, and a placeholder relation between them, for the pair encoders)."""
        ex = Example(id=req.id, tokens=req.words)
        if req.head_words is not None:
            ex.entities.append(Span(*req.head_words, "ENTITY"))
        if req.tail_words is not None:
            ex.entities.append(Span(*req.tail_words, "ENTITY"))
            ex.relations.append(Relation(0, 1, self.task.labels[0]))
        return ex

    # ---- 2. forward ------------------------------------------------------------------------
    def image_inputs(self, images: list[Any]) -> dict[str, torch.Tensor]:
        """The image part of a prediction batch for pictures (paths, bytes, PIL images or
        ``None``): the one place new pictures are featurised (Python API, ``mmie predict``,
        the pipeline and the service all come here). Regions follow the saved run's
        ``data.regions``: the grid, and/or detected objects (the detector runs on the picture
        here, as it ran on the training pictures)."""
        vision = getattr(self.model, "vision", None)
        present = torch.tensor([im is not None for im in images], dtype=torch.bool)
        if vision is None:
            return {"image_present": present.to(self.device)}
        data = self.cfg.data
        pixels = None
        if self.device_pixels is not None:
            pils = self.read_pictures(images)  # already-read pictures pass through
            pixels = self.device_pixels([p for p in pils if p is not None], self.device)
        else:  # a picture another (device-mode) predictor read but did not decode: Pillow
            pils = load_images([decode_image_bytes(p.data, p.path)
                                if isinstance(p, EncodedPicture) else p for p in images])
        return featurize_pictures(vision, pils, region_grid=self.cfg.model.region_grid,
                                  regions=data.regions, max_objects=data.max_objects,
                                  source=self._region_source(), device=self.device,
                                  pixel_values=pixels)

    def _region_source(self):
        if self.cfg.data.regions == "grid":
            return None
        if getattr(self, "_regions", None) is None:
            from mmie.encoders.regions import RegionSource

            self._regions = RegionSource(self.cfg.data)  # the detector; no boxes file here
        return self._regions

    def encode(self, examples: list[Example], images: list[Any],
               candidates: Sequence[str] | None = None) -> dict[str, Any]:
        """The model's input batch: collated text (+ candidate labels) and the image part
        (:meth:`image_inputs`)."""
        kwargs = {}
        if self.zero_shot:
            kwargs["candidates"] = list(candidates or self.task.candidates("test"))
        batch = self.task.collate(examples, self.model.text, self.cfg.data.max_length,
                                  with_labels=False, **kwargs)
        batch.update(self.image_inputs(images))
        return batch

    def forward_batch(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """``model.predict`` on a batch (moved to the device) without gradients."""
        batch = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                 for k, v in batch.items()}
        with torch.no_grad():
            return self.model.predict(batch)

    def forward(self, reqs: list[Request]) -> list[dict[str, Any]]:
        """Raw model outputs of preprocessed requests: one forward pass for the batch, or
        one per request for a zero-shot model (each has its own candidate labels)."""
        examples = [self.example(r) for r in reqs]
        if self.zero_shot:
            return [self.forward_batch(self.encode([ex], [r.image], r.candidate_labels))[0]
                    for ex, r in zip(examples, reqs)]
        return self.forward_batch(self.encode(examples, [r.image for r in reqs]))

    # ---- 3. postprocess --------------------------------------------------------------------
    def postprocess(self, reqs: list[Request], raw: list[dict[str, Any]]) -> list[Prediction]:
        """Typed results: entities with character offsets (NER), the relation of the given
        pair (RE), the type of the given mention (typing)."""
        preds = self.task.decode([self.example(r) for r in reqs], raw)
        return [self.result(r, p) for r, p in zip(reqs, preds)]

    def result(self, req: Request, p: dict[str, Any]) -> Prediction:
        """One decoded prediction as a typed result."""
        name = self.task.name
        if name == "ner":
            return [entity(req.text, req.offsets, s) for s in p["entities"]]
        if name == "typing":
            return Typing(type=p["label"], score=p["score"], scores=p["scores"])
        if self.zero_shot:
            return RelationResult(relation=p["label"], score=p["score"], scores=p["scores"])
        return RelationResult(relation=p["label"], score=p["score"], head=req.head, tail=req.tail)

    # ---- public API ------------------------------------------------------------------------
    def run(self, items: Iterable[dict[str, Any]], batch_size: int = 32) -> list[Prediction]:
        """preprocess -> forward -> postprocess over ``items``, ``batch_size`` at a time."""
        items = list(items)
        out: list[Prediction] = []
        for i in range(0, len(items), batch_size):
            reqs = self.preprocess(items[i:i + batch_size], start=i)
            out.extend(self.postprocess(reqs, self.forward(reqs)))
        return out

    def predict(self, text: str | None = None, image: Any = None, *, tokens: list[str] | None = None,
                head: Sequence[int] | None = None, tail: Sequence[int] | None = None,
                candidate_labels: list[str] | None = None) -> Any:
        """One post: entities ``[{text, type, start, end, score}]`` (NER), ``{relation,
        score, head, tail}`` (RE) or ``{type, score, scores}`` (typing), as plain JSON."""
        item = {"text": text, "image": image, "tokens": tokens, "head": head, "tail": tail,
                "candidate_labels": candidate_labels}
        return self.predict_batch([{k: v for k, v in item.items() if v is not None}])[0]

    def predict_batch(self, items: Iterable[dict[str, Any]], batch_size: int = 32) -> list[Any]:
        """:meth:`predict` over ``{text|tokens, image?, head?, tail?, candidate_labels?,
        id?}`` items, batched."""
        return [to_json(r) for r in self.run(items, batch_size)]


def entity(text: str, offsets: list[tuple[int, int]], span: Span) -> Entity:
    """A word span of a post as an :class:`Entity` with character offsets into ``text``."""
    start, end = offsets[span.start][0], offsets[span.end - 1][1]
    return Entity(text=text[start:end], type=span.label, start=start, end=end, score=span.score)


def check_model_dir(path: Path) -> None:
    """Refuse a model folder that cannot load, before building anything: a missing folder,
    ``config.json`` or ``model.safetensors``, a corrupt ``config.json`` or a truncated weights
    file. The :class:`~mmie.errors.MMIEError` names the file and the fix."""
    fix = "copy the model folder again, or re-create it with `mmie train`"
    if not path.is_dir():
        raise MMIEError(f"model directory not found: {path}")
    cfg = path / "config.json"
    if not cfg.is_file():
        raise MMIEError(f"{path} is not an mmie model directory (no config.json); pass the "
                        "'model' folder inside a run directory")
    try:
        meta = json.loads(cfg.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MMIEError(f"{cfg}: corrupt config.json ({e}); {fix}") from None
    if not isinstance(meta, dict) or not {"run", "task"} <= set(meta):
        raise MMIEError(f"{cfg}: not an mmie model config (needs 'run' and 'task'); {fix}")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise MMIEError(f"{path}: model.safetensors is missing (the weights); {fix}")
    try:
        with safe_open(str(weights), framework="pt") as f:
            f.keys()
    except Exception as e:  # noqa: BLE001 - SafetensorError and the OS errors of a bad file
        raise MMIEError(f"{weights}: unreadable weights file ({e}); it may be truncated: "
                        f"{fix}") from None


def load(path: str | Path, device: str | torch.device = "cpu",
         cuda_graphs: bool = False, image_decode: str = "host") -> Predictor:
    """Load a model directory written by ``save_pretrained`` (the ``model`` folder of a run).

    ``cuda_graphs``: on a GPU, replay an NER model's CRF decoding (Viterbi and marginals)
    from CUDA graphs captured per (batch size, length); the same outputs, fewer kernel
    launches (about 1.5-1.9x the model call on an H200 at batch 256-1,024,
    docs/performance.md). Off by default: each new batch shape pays a capture.

    ``image_decode``: ``"host"`` (default) decodes and transforms new pictures with Pillow;
    ``"device"`` decodes JPEGs with libjpeg-turbo on the host's threads and resizes them on
    ``device`` as tensors; ``"nvjpeg"`` decodes them on the GPU too
    (:mod:`mmie.encoders.device_pixels`): the same checks and errors; pixels within 2 grey
    levels of the host path with ``"device"``; ``"nvjpeg"`` is experimental (measured further
    off on an H200, docs/api.md). Scores can differ in their last digits. For models of
    ``data.regions=grid``; meant for JPEG pictures (others decode with Pillow on one thread).
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise MMIEError(f"device {device!r} is not a torch device (cpu, cuda, cuda:1, ...): "
                        f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MMIEError(f"device {str(device)!r}: no CUDA GPU is available here; use cpu")
    path = Path(path)
    if (path / "model" / "config.json").exists() and not (path / "config.json").exists():
        path = path / "model"
    check_model_dir(path)
    try:
        model, task, run_cfg, meta = load_pretrained(path, map_location=device)
    except MMIEError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise MMIEError(f"{path}: cannot load the model ({type(e).__name__}: {first[:300]}); "
                        "the folder may be incomplete or from another mmie version: copy it "
                        "again, or re-create it with `mmie train`") from None
    return Predictor(model, task, run_cfg, meta, path=path, device=device,
                     cuda_graphs=cuda_graphs, image_decode=image_decode)
