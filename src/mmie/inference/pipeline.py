"""One call from a raw post (+ an optional picture) to entities and the relations between them.

    >>> pipe = mmie.pipeline(ner="runs/ner/model", re="runs/re/model")
    >>> pipe.extract("Rafael Nadal gets engaged to Mery Perello", image="post.jpg")
    {"entities": [{"text": "Rafael Nadal", "type": "PER", "start": 0, "end": 12, "score": 0.98},
                  ...],
     "relations": [{"head": 0, "tail": 1, "label": "/per/per/couple", "score": 0.91}]}

Raw text is split by :func:`mmie.data.tokenize.split_words` (character offsets into the input).
The NER model tags the words; every ordered pair of distinct mentions of a post is then
classified by the RE model. Work is batched: the posts of a chunk go through NER in one forward
pass, each picture goes through each model's vision encoder once (one vision call per chunk),
and all mention pairs of all posts of the chunk go through RE in ``ceil(pairs / pair_batch_size)``
forward passes, carrying the image features (``image_global`` / ``image_regions`` /
``image_present`` rows) instead of pixels. ``None`` predictions are dropped.

Type constraints: MNRE-style labels ``/head_type/tail_type/name`` (``per``, ``loc``, ``org``,
``misc``) name the entity types they accept. With ``type_constraints=True`` the NER types
(``PER -> per``, ``LOC -> loc``, ``ORG -> org``, ``OTHER``/``MISC -> misc``) restrict each pair
to the labels whose signature fits (labels without a signature, and mentions of unknown type,
are never restricted); a pair for which no non-``None`` label fits is skipped without a forward
pass. The reported score is the model's probability of the chosen label (over all labels, not
renormalised over the allowed ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from mmie.data.schema import Example, Relation, Span
from mmie.errors import ConfigError, DataError
from mmie.inference.outputs import EntityPair, Extraction, to_json
from mmie.inference.predictor import Predictor, load
from mmie.inference.request import Request, check_candidate_labels

NONE_LABEL = "None"
#: NER type -> MNRE signature type
TYPE_MAP = {"PER": "per", "LOC": "loc", "ORG": "org", "OTHER": "misc", "MISC": "misc"}
SIGNATURE_TYPES = frozenset(TYPE_MAP.values())
_ITEM_KEYS = {"text", "image", "candidate_labels", "id"}


def label_signature(label: str) -> tuple[str, str] | None:
    """``"/per/loc/place_of_residence"`` -> ``("per", "loc")``; ``None`` for a label that names
    no head/tail types."""
    parts = label.strip("/").split("/")
    if len(parts) >= 3 and parts[0] in SIGNATURE_TYPES and parts[1] in SIGNATURE_TYPES:
        return parts[0], parts[1]
    return None


def signature_type(ner_type: str | None) -> str | None:
    """An NER type in the signature vocabulary (``PER`` -> ``per``); ``None`` when unknown."""
    if ner_type is None:
        return None
    t = ner_type.strip()
    return TYPE_MAP.get(t.upper()) or (t.lower() if t.lower() in SIGNATURE_TYPES else None)


def label_fits(label: str, head_type: str | None, tail_type: str | None) -> bool:
    """Whether ``label`` accepts a (head, tail) pair of these NER types."""
    sig = label_signature(label)
    if sig is None:
        return True
    h, t = signature_type(head_type), signature_type(tail_type)
    return (h is None or sig[0] == h) and (t is None or sig[1] == t)


def _resolve_pair(ner: Any, re: Any) -> tuple[Any, Any]:
    if ner is None:
        raise ConfigError("pipeline needs an NER model: ner=DIR (or a Predictor), or ner=DIR "
                          "holding DIR/ner and DIR/re")
    if re is None:
        if isinstance(ner, Predictor):
            raise ConfigError("pipeline needs an RE model: pass re=DIR or re=Predictor")
        root = Path(ner)
        if not ((root / "ner").is_dir() and (root / "re").is_dir()):
            raise ConfigError(f"{root}: with ner= alone the directory must hold 'ner' and 're' "
                              "model folders; otherwise pass re=DIR")
        return root / "ner", root / "re"
    return ner, re


class Pipeline:
    """NER then RE on raw posts (see the module docstring). Build with :func:`pipeline`."""

    def __init__(self, ner: Predictor, re: Predictor, *, type_constraints: bool = True,
                 post_batch_size: int = 32, pair_batch_size: int = 64):
        if ner.task.name != "ner":
            raise ConfigError(f"the ner model is a {ner.task.name!r} model, not an NER model")
        if re.task.name not in ("re", "zs_re"):
            raise ConfigError(f"the re model is a {re.task.name!r} model, not a relation model")
        if post_batch_size < 1 or pair_batch_size < 1:
            raise ConfigError("post_batch_size and pair_batch_size must be >= 1")
        self.ner = ner
        self.re = re
        self.type_constraints = type_constraints
        self.post_batch_size = post_batch_size
        self.pair_batch_size = pair_batch_size

    @property
    def zero_shot(self) -> bool:
        """Whether relation labels are chosen at call time (``candidate_labels``)."""
        return bool(self.re.zero_shot)

    @property
    def relation_labels(self) -> list[str]:
        return [l for l in self.re.labels if l != NONE_LABEL]

    def info(self) -> dict[str, Any]:
        return {"ner": self.ner.info(), "re": self.re.info(),
                "type_constraints": self.type_constraints, "zero_shot": self.zero_shot}

    # ---- public API --------------------------------------------------------------------------
    def extract(self, text: str, image: Any = None,
                candidate_labels: Sequence[str] | None = None) -> dict[str, list[dict]]:
        """Entities ``[{text, type, start, end, score}]`` (character offsets into ``text``) and
        relations ``[{head, tail, label, score}]`` (``head``/``tail`` index ``entities``)."""
        return self.extract_batch([{"text": text, "image": image,
                                    "candidate_labels": candidate_labels}])[0]

    def extract_batch(self, items: Iterable[dict[str, Any]],
                      progress: bool = False) -> list[dict[str, list[dict]]]:
        """:meth:`extract` over ``{"text", "image"?, "candidate_labels"?}`` items, batched."""
        items = list(items)
        starts = range(0, len(items), self.post_batch_size)
        if progress:
            starts = tqdm(starts, desc="extract", unit="chunk",
                          disable=len(items) <= self.post_batch_size)
        out: list[dict[str, list[dict]]] = []
        for i in starts:
            chunk = self._extract_chunk(items[i:i + self.post_batch_size], offset=i)
            out.extend(to_json(x) for x in chunk)
        return out

    # ---- steps -------------------------------------------------------------------------------
    def _check_item(self, n: int, item: Any) -> tuple[Request, list[str] | None]:
        """Item ``n`` validated: the NER model's :class:`Request` (text split into words) and
        the relation candidate labels (zero-shot RE only; duplicates and ``None`` dropped)."""
        if not isinstance(item, dict):
            raise DataError(f"item {n} must be an object with 'text', got {type(item).__name__}")
        unknown = set(item) - _ITEM_KEYS
        if unknown:
            raise DataError(f"unknown field(s) {sorted(unknown)} in item {n}; expected "
                            f"{sorted(_ITEM_KEYS)}")
        if item.get("text") is None:
            raise DataError(f"item {n} has no 'text'", field="text")
        cands = check_candidate_labels(item.get("candidate_labels"), self.zero_shot,
                                       "this pipeline's relation model", self.relation_labels)
        if cands is not None:
            cands = [c for c in dict.fromkeys(cands) if c != NONE_LABEL]
            if not cands:
                raise DataError("candidate_labels must be non-empty strings (other than "
                                "'None')", field="candidate_labels")
        req = self.ner.validate({k: item[k] for k in ("text", "image", "id") if k in item}, n)
        return req, cands

    def _image_features(self, pred: Predictor, pils: list[Any]) -> dict[str, torch.Tensor] | None:
        """Per post ``image_global [P, D]``, ``image_regions [P, R, D]`` (and the object
        tensors under ``data.regions=objects/both``), ``image_present [P]``: one
        :meth:`Predictor.image_inputs` call over the chunk's pictures (the same featurisation
        as single predictions); posts without one are masked as absent."""
        if getattr(pred.model, "vision", None) is None:
            return None
        return pred.image_inputs(pils)

    def _features_for(self, pred: Predictor, pils: list[Any], cache: dict) -> Any:
        vision = getattr(pred.model, "vision", None)
        data = pred.cfg.data
        key = (id(vision), pred.cfg.model.region_grid, data.regions, data.max_objects,
               data.detector, data.detector_threshold)
        if key not in cache:  # models sharing one vision encoder and regions share features
            cache[key] = self._image_features(pred, pils)
        return cache[key]

    @staticmethod
    def _add_image(batch: dict, feats: dict[str, torch.Tensor] | None, rows: list[int],
                   n: int, device: torch.device) -> dict:
        if feats is None:
            batch["image_present"] = torch.zeros(n, dtype=torch.bool)
        else:
            ix = torch.tensor(rows, dtype=torch.long)
            for k, v in feats.items():
                batch[k] = v[ix.to(v.device)]
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def run(self, items: Iterable[dict[str, Any]]) -> list[Extraction]:
        """Typed :class:`~mmie.inference.outputs.Extraction` results of ``items``, chunked."""
        items = list(items)
        out: list[Extraction] = []
        for i in range(0, len(items), self.post_batch_size):
            out.extend(self._extract_chunk(items[i:i + self.post_batch_size], offset=i))
        return out

    def _extract_chunk(self, items: list[dict[str, Any]], offset: int = 0) -> list[Extraction]:
        reqs, cands = [], []
        for n, item in enumerate(items):
            req, c = self._check_item(offset + n, item)
            reqs.append(req)
            cands.append(c)
        # read by a device-mode model when there is one (a host model's image_inputs decodes
        # such a picture with Pillow), else decoded by Pillow
        reader = next((p for p in (self.ner, self.re) if p.device_pixels is not None), self.ner)
        pils = reader.read_pictures([r.image for r in reqs])
        cache: dict[int, Any] = {}

        # NER: all posts of the chunk in one forward pass
        ner = self.ner
        examples = [Example(id=str(offset + n), tokens=r.words) for n, r in enumerate(reqs)]
        batch = ner.task.collate(examples, ner.model.text, ner.cfg.data.max_length,
                                 with_labels=False)
        batch = self._add_image(batch, self._features_for(ner, pils, cache),
                                list(range(len(items))), len(items), ner.device)
        decoded = ner.task.decode(examples, ner.forward_batch(batch))
        spans = [p["entities"] for p in decoded]
        entities = [ner.result(r, p) for r, p in zip(reqs, decoded)]
        relations: list[list[EntityPair]] = [[] for _ in reqs]

        # RE: every ordered pair of mentions of every post, grouped by candidate label set
        pairs: dict[tuple[str, ...] | None, list[tuple[int, int, int, set[str] | None]]] = {}
        for p, ents in enumerate(spans):
            labels = (cands[p] or self.re.task.candidates("test")) if self.zero_shot \
                else self.relation_labels
            group = tuple(labels) if self.zero_shot else None
            for i, h in enumerate(ents):
                for j, t in enumerate(ents):
                    if i == j:
                        continue
                    allowed = None
                    if self.type_constraints:
                        allowed = {l for l in labels if label_fits(l, h.label, t.label)}
                        if not allowed:
                            continue
                    pairs.setdefault(group, []).append((p, i, j, allowed))
        words = [r.words for r in reqs]
        for group, plist in pairs.items():
            for k in range(0, len(plist), self.pair_batch_size):
                self._classify(plist[k:k + self.pair_batch_size], group, words, spans, pils,
                               cache, relations)
        return [Extraction(entities=e, relations=r) for e, r in zip(entities, relations)]

    def _classify(self, plist, group, words, spans, pils, cache, relations) -> None:
        re = self.re
        exs = []
        for p, i, j, _ in plist:
            h, t = spans[p][i], spans[p][j]
            exs.append(Example(id=f"{p}:{i}:{j}", tokens=words[p],
                               entities=[Span(h.start, h.end, h.label), Span(t.start, t.end, t.label)],
                               relations=[Relation(0, 1, re.task.labels[0])]))
        kwargs = {"candidates": list(group)} if self.zero_shot else {}
        batch = re.task.collate(exs, re.model.text, re.cfg.data.max_length, with_labels=False,
                                **kwargs)
        batch = self._add_image(batch, self._features_for(re, pils, cache),
                                [p for p, *_ in plist], len(exs), re.device)
        raw = re.forward_batch(batch)
        for (p, i, j, allowed), out in zip(plist, raw):
            if self.zero_shot:
                scores = out["scores"]
            else:
                scores = dict(zip(re.task.labels, out["probs"]))
            options = {l: s for l, s in scores.items()
                       if allowed is None or l in allowed or l == NONE_LABEL}
            label = max(options, key=options.get)
            if label == NONE_LABEL:
                continue
            relations[p].append(EntityPair(head=i, tail=j, label=label,
                                           score=round(float(options[label]), 6)))


def pipeline(ner: str | Path | Predictor | None = None, re: str | Path | Predictor | None = None,
             *, type_constraints: bool = True, device: str | torch.device = "cpu",
             post_batch_size: int = 32, pair_batch_size: int = 64,
             image_decode: str = "host") -> Pipeline:
    """An extraction pipeline from an NER and an RE model (directories or loaded
    :class:`~mmie.inference.predictor.Predictor` objects); ``ner=DIR`` alone reads
    ``DIR/ner`` and ``DIR/re``. ``image_decode``: as :func:`mmie.load`, for the models
    loaded here from directories."""
    ner, re = _resolve_pair(ner, re)
    ner_p = ner if isinstance(ner, Predictor) else load(ner, device=device,
                                                          image_decode=image_decode)
    re_p = re if isinstance(re, Predictor) else load(re, device=device,
                                                     image_decode=image_decode)
    return Pipeline(ner_p, re_p, type_constraints=type_constraints,
                    post_batch_size=post_batch_size, pair_batch_size=pair_batch_size)


__all__ = ["Pipeline", "pipeline", "label_signature", "label_fits", "signature_type", "TYPE_MAP"]
