"""Prediction on new posts: raw text (+ an optional picture) in, JSON out.

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

import mmie
from mmie.data.schema import Example, Relation, Span
from mmie.errors import DataError, MMIEError

MAX_WORDS = 512


def _char_span_to_words(span: Sequence[int], offsets: list[tuple[int, int]], which: str,
                        text: str) -> tuple[int, int]:
    try:
        s, e = int(span[0]), int(span[1])
    except (TypeError, ValueError, IndexError):
        raise DataError(f"{which} must be [start, end] character offsets, got {span!r}",
                        field=which) from None
    if not 0 <= s < e <= len(text):
        raise DataError(f"{which} offsets [{s}, {e}) are outside the text (length {len(text)})",
                        field=which)
    idx = [i for i, (ws, we) in enumerate(offsets) if ws < e and we > s]
    if not idx:
        raise DataError(f"{which} [{s}, {e}) covers no word of the text", field=which)
    return idx[0], idx[-1] + 1


class Predictor:
    """A loaded model ready for prediction (``mmie.load``)."""

    def __init__(self, model, task, run_cfg, meta: dict[str, Any], path: Path | None = None,
                 device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.task = task
        self.cfg = run_cfg
        self.meta = meta
        self.path = path
        self.device = torch.device(device)
        self.zero_shot = getattr(task, "zero_shot", False)
        self.max_words = MAX_WORDS

    @property
    def task_name(self) -> str:
        return "typing" if self.task.name in ("typing",) else self.task.name

    # keep the attribute the service reads
    @property
    def labels(self) -> list[str]:
        return list(self.task.labels)

    def info(self) -> dict[str, Any]:
        return {"task": self.task.name, "model": self.cfg.model.type, "labels": self.labels,
                "zero_shot": self.zero_shot,
                "encoders": {"text": self.meta.get("text_encoder"),
                             "vision": self.meta.get("vision_encoder")},
                "version": mmie.__version__, "max_words": self.max_words,
                "max_length": self.cfg.data.max_length, "path": str(self.path or "")}

    # ---- input handling --------------------------------------------------------------------
    def _words(self, text: str) -> tuple[list[str], list[tuple[int, int]]]:
        from mmie.data.tokenize import split_words

        if not isinstance(text, str):
            raise DataError(f"text must be a string, got {type(text).__name__}", field="text")
        words = split_words(text)
        if not words:
            raise DataError("text is empty (no words to analyse)", field="text")
        if len(words) > self.max_words:
            raise DataError(f"text has {len(words)} words; the limit is {self.max_words}. "
                            "Split the post or raise Predictor.max_words", field="text")
        return [w for w, _, _ in words], [(s, e) for _, s, e in words]

    def _pixels(self, images: list[Any]) -> tuple[torch.Tensor | None, torch.Tensor]:
        from mmie.data.images import load_image

        present = torch.tensor([im is not None for im in images], dtype=torch.bool)
        vision = getattr(self.model, "vision", None)
        if vision is None:
            return None, present
        pils = []
        for im in images:
            if im is None:
                from PIL import Image

                # placeholder pixels only; image_present=False masks them out of the model
                pils.append(Image.new("RGB", (32, 32)))
            else:
                pils.append(load_image(im))
        return vision.preprocess(pils), present

    def image_inputs(self, images: list[Any]) -> dict[str, torch.Tensor]:
        """The image part of a prediction batch for pictures (paths, bytes, PIL images or
        ``None``): the one place new pictures are featurised (Python API, ``mmie predict``,
        the pipeline and the service all come here). Regions follow the saved run's
        ``data.regions``: the grid, and/or detected objects (the detector runs on the picture
        here, as it ran on the training pictures)."""
        from mmie.data.images import load_image
        from mmie.encoders.regions import featurize_pictures

        vision = getattr(self.model, "vision", None)
        present = torch.tensor([im is not None for im in images], dtype=torch.bool)
        if vision is None:
            return {"image_present": present.to(self.device)}
        pils = [load_image(im) if im is not None else None for im in images]
        data = self.cfg.data
        return featurize_pictures(vision, pils, region_grid=self.cfg.model.region_grid,
                                  regions=data.regions, max_objects=data.max_objects,
                                  source=self._region_source(), device=self.device)

    def _region_source(self):
        if self.cfg.data.regions == "grid":
            return None
        if getattr(self, "_regions", None) is None:
            from mmie.encoders.regions import RegionSource

            self._regions = RegionSource(self.cfg.data)  # the detector; no boxes file here
        return self._regions

    def _batch(self, examples: list[Example], images: list[Any]) -> dict[str, torch.Tensor]:
        batch = self.task.collate(examples, self.model.text, self.cfg.data.max_length,
                                  with_labels=False)
        batch.update(self.image_inputs(images))
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    # ---- public API --------------------------------------------------------------------------
    def predict(self, text: str | None = None, image: Any = None, *, tokens: list[str] | None = None,
                head: Sequence[int] | None = None, tail: Sequence[int] | None = None,
                candidate_labels: list[str] | None = None) -> Any:
        return self.predict_batch([{"text": text, "image": image, "tokens": tokens, "head": head,
                                    "tail": tail, "candidate_labels": candidate_labels}])[0]

    def predict_batch(self, items: Iterable[dict[str, Any]], batch_size: int = 32) -> list[Any]:
        items = list(items)
        out: list[Any] = []
        for i in range(0, len(items), batch_size):
            out.extend(self._predict_chunk(items[i:i + batch_size], start=i))
        return out

    def _predict_chunk(self, items: list[dict[str, Any]], start: int = 0) -> list[Any]:
        examples, offsets, texts, images = [], [], [], []
        for n, item in enumerate(items, start=start):
            if not isinstance(item, dict):
                raise DataError(f"item {n} must be a dict of fields, got {type(item).__name__}")
            unknown = set(item) - {"text", "image", "tokens", "head", "tail", "candidate_labels", "id"}
            if unknown:
                raise DataError(f"unknown field(s) {sorted(unknown)} in item {n}; expected "
                                "text, image, tokens, head, tail, candidate_labels, id")
            if item.get("candidate_labels") and not self.zero_shot:
                raise DataError("candidate_labels are only accepted by zero-shot models; this "
                                f"model predicts the fixed labels {self.labels}",
                                field="candidate_labels")
            if item.get("tokens") is not None:
                words = list(item["tokens"])
                text = " ".join(words)
                offs, pos = [], 0
                for w in words:
                    offs.append((pos, pos + len(w)))
                    pos += len(w) + 1
            else:
                text = item.get("text")
                if text is None:
                    raise DataError("each item needs 'text' (or 'tokens')", field="text")
                words, offs = self._words(text)
            ex = Example(id=str(item.get("id", n)), tokens=words)
            unused = [f for f in ("head", "tail") if item.get(f) is not None and
                      (self.task.name == "ner" or (f == "tail" and self.task.name == "typing"))]
            if unused:
                what = "an NER" if self.task.name == "ner" else "an entity typing"
                raise DataError(f"{' and '.join(unused)} offsets are not used by {what} model "
                                "(it finds the mentions itself); leave them out",
                                field=unused[0])
            if self.task.name != "ner":
                if item.get("head") is None or (self.task.name == "re" and item.get("tail") is None):
                    need = "head" if self.task.name != "re" else "head and tail"
                    raise DataError(f"this {self.task.name} model needs {need} character "
                                    "offsets", field="head")
                hs, he = _char_span_to_words(item["head"], offs, "head", text)
                ex.entities.append(Span(hs, he, "ENTITY"))
                if item.get("tail") is not None:
                    ts, te = _char_span_to_words(item["tail"], offs, "tail", text)
                    ex.entities.append(Span(ts, te, "ENTITY"))
                    ex.relations.append(Relation(0, 1, self.task.labels[0]))
            examples.append(ex)
            offsets.append(offs)
            texts.append(text)
            images.append(item.get("image"))
        if self.zero_shot:
            cands = [it.get("candidate_labels") for it in items]
            return self.task.predict_zero_shot(self.model, self, examples, images, cands,
                                               texts, offsets)
        batch = self._batch(examples, images)
        with torch.no_grad():
            raw = self.model.predict(batch)
        preds = self.task.decode(examples, raw)
        results = []
        for ex, p, offs, text, item in zip(examples, preds, offsets, texts, items):
            if self.task.name == "ner":
                results.append([{"text": text[offs[s.start][0]:offs[s.end - 1][1]], "type": s.label,
                                 "start": offs[s.start][0], "end": offs[s.end - 1][1],
                                 "score": s.score} for s in p["entities"]])
            else:
                results.append({"relation": p["label"], "score": p["score"],
                                "head": list(item["head"]), "tail": list(item["tail"])})
        return results


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
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            f.keys()
    except Exception as e:  # noqa: BLE001 - SafetensorError and the OS errors of a bad file
        raise MMIEError(f"{weights}: unreadable weights file ({e}); it may be truncated: "
                        f"{fix}") from None


def load(path: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """Load a model directory written by ``save_pretrained`` (the ``model`` folder of a run)."""
    from mmie.models.factory import load_pretrained

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
    return Predictor(model, task, run_cfg, meta, path=path, device=device)
