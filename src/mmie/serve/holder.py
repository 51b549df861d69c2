"""The model holder: the loaded predictor (and extraction pipeline) of a service, its task,
the request rules it applies and the one lock that serialises model calls."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import HTTPException

from mmie.errors import DataError
from mmie.inference.request import check_candidate_labels, text_words, validate_item
from mmie.serve.batching import MicroBatcher
from mmie.serve.schemas import ExtractRequest, PredictRequest

log = logging.getLogger("mmie.serve")

__all__ = ["ModelHolder", "task_name", "public_info", "MAX_LABELS", "MAX_LABEL_CHARS"]

MAX_LABELS = 256
MAX_LABEL_CHARS = 200
_ABS_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"]+/)+[^\s/'\",)]*")


def task_name(predictor) -> str:
    """The predictor's task as a string ("ner", "re", "zs_re" or "typing"): ``predictor.task``
    when it is one, else its ``task_name`` / a task object's ``name`` / ``info()["task"]``."""
    task = getattr(predictor, "task", None)
    if isinstance(task, str):
        return task
    name = getattr(predictor, "task_name", None) or getattr(task, "name", None)
    return str(name if isinstance(name, str) else predictor.info().get("task"))


def public_info(info: dict[str, Any]) -> dict[str, Any]:
    """A predictor's ``info()`` without the server's file system: a ``path`` is reduced to
    the model folder's name."""
    out = dict(info)
    if out.get("path"):
        out["path"] = Path(str(out["path"])).name
    return out


def scrub_paths(message: str) -> str:
    """Absolute paths in an error message replaced by their last part (``.../model``)."""
    return _ABS_PATH.sub(lambda m: ".../" + Path(m.group(0)).name, message)


class ModelHolder:
    """What the routes call: request validation (:mod:`mmie.inference.request`, the rules every
    entry point shares), prediction through a :class:`MicroBatcher`, and extraction."""

    def __init__(self, predictor, pipeline=None, *, max_text_chars: int,
                 batch_window_ms: float, max_batch: int):
        self.predictor = predictor
        self.pipeline = pipeline
        self.task = task_name(predictor)
        self.zero_shot = bool(getattr(predictor, "zero_shot", False))
        self.max_text_chars = max_text_chars
        self.lock = threading.Lock()  # one model call at a time (predict batches and extract)
        self.batcher = MicroBatcher(predictor.predict_batch, predictor.predict,
                                    window_ms=batch_window_ms, max_batch=max_batch,
                                    lock=self.lock)

    def info(self) -> dict[str, Any]:
        return public_info(self.predictor.info())

    def check_text_length(self, text: str) -> None:
        if len(text) > self.max_text_chars:
            raise HTTPException(413, f"field 'text': {len(text)} characters is over the limit "
                                     f"of {self.max_text_chars} characters (max_text_chars)")

    def predict_item(self, req: PredictRequest) -> dict[str, Any]:
        """A request checked against the model: the ``predict`` keyword arguments (422 with
        the rule's message otherwise)."""
        self.check_text_length(req.text)
        item = {"text": req.text, "head": req.head, "tail": req.tail,
                "candidate_labels": req.candidate_labels}
        item = {k: v for k, v in item.items() if v is not None}
        try:
            valid = validate_item(item, 0, task=self.task, zero_shot=self.zero_shot,
                                  labels=list(getattr(self.predictor, "labels", ()) or ()),
                                  max_words=getattr(self.predictor, "max_words", None),
                                  max_labels=MAX_LABELS, max_label_chars=MAX_LABEL_CHARS)
        except DataError as e:
            raise HTTPException(422, str(e)) from None
        out: dict[str, Any] = {"text": req.text, "image": None}
        if valid.head is not None:
            out["head"] = valid.head
        if valid.tail is not None:
            out["tail"] = valid.tail
        if valid.candidate_labels is not None:
            out["candidate_labels"] = valid.candidate_labels
        return out

    def extract_kwargs(self, req: ExtractRequest) -> dict[str, Any]:
        self.check_text_length(req.text)
        try:
            text_words(req.text, None)
            labels = check_candidate_labels(
                req.candidate_labels, bool(getattr(self.pipeline, "zero_shot", True)),
                "this pipeline", max_labels=MAX_LABELS, max_label_chars=MAX_LABEL_CHARS)
        except DataError as e:
            raise HTTPException(422, str(e)) from None
        kwargs: dict[str, Any] = {"text": req.text, "image": None}
        if labels is not None:
            kwargs["candidate_labels"] = labels
        return kwargs

    async def predict(self, item: dict[str, Any]) -> Any:
        try:
            return await self.batcher.submit(item)
        except HTTPException:
            raise
        except Exception as e:  # noqa: BLE001
            raise model_error(e) from None

    async def extract(self, kwargs: dict[str, Any]) -> Any:
        def call():
            with self.lock:
                return self.pipeline.extract(**kwargs)
        try:
            return await anyio.to_thread.run_sync(call)
        except Exception as e:  # noqa: BLE001
            raise model_error(e) from None


def model_error(e: Exception) -> HTTPException:
    """422 for a :class:`DataError` the model raised, else 500 ``model error: ...`` (logged
    with its traceback; the service keeps serving). No absolute path reaches the client."""
    if isinstance(e, DataError):
        return HTTPException(422, scrub_paths(str(e)))
    log.exception("model error", exc_info=e)
    return HTTPException(500, scrub_paths(f"model error: {type(e).__name__}: {e}"))
