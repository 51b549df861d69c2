"""The HTTP service: a FastAPI app around a loaded predictor (and optionally an extraction
pipeline), with request limits, a micro-batcher for concurrent requests and a web page.

Endpoints
---------
``GET /``            the web page (``static/index.html``)
``GET /health``      ``{"status": "ok", "task", "zero_shot", "extract", "limits"}``
``GET /model``       ``predictor.info()``
``POST /predict``    one prediction; JSON ``{text, image (base64), head, tail, candidate_labels}``
                     or ``multipart/form-data`` (``text`` + an ``image`` file + optional fields)
``POST /extract``    entities and relations (only when the app has a pipeline)
``GET /docs``, ``GET /openapi.json``  FastAPI's generated documentation

Status codes: 200 ok; 413 body, image (bytes or pixels) or text over its limit; 415 a
Content-Type other than JSON / multipart, or an image that cannot be decoded; 422 a malformed
request (unknown field, wrong type, empty text, bad offsets, missing head/tail, candidate
labels on a model that is not zero-shot, or a :class:`~mmie.errors.DataError` raised by the
model); 500 ``{"detail": "model error: ..."}`` when the model itself fails (the service keeps
serving). Offsets are character offsets ``[start, end)`` into ``text`` (code points).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable, Literal

import anyio.to_thread
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from mmie.errors import DataError, ImageError

log = logging.getLogger("mmie.serve")

STATIC_DIR = Path(__file__).with_name("static")
MB = 1024 * 1024
MAX_LABELS = 256
MAX_LABEL_CHARS = 200


# --------------------------------------------------------------------------- request models
class PredictRequest(BaseModel):
    """The JSON body of ``POST /predict``. Unknown fields are rejected (422 naming the field)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The post, at most `max_text_chars` characters.")
    image: str | None = Field(
        default=None, description="The picture, base64 (a `data:image/...;base64,` prefix is "
        "accepted); PNG, JPEG, GIF, BMP or WebP.")
    head: tuple[int, int] | None = Field(
        default=None, description="Head mention as character offsets [start, end) "
        "(required for RE and entity typing; the typed mention for typing).")
    tail: tuple[int, int] | None = Field(
        default=None, description="Tail mention as character offsets [start, end) "
        "(required for RE).")
    candidate_labels: list[str] | None = Field(
        default=None, description="Zero-shot models only: the labels to choose from.")


class ExtractRequest(BaseModel):
    """The JSON body of ``POST /extract``."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The post, at most `max_text_chars` characters.")
    image: str | None = Field(default=None, description="The picture, base64.")
    candidate_labels: list[str] | None = Field(
        default=None, description="Labels for a zero-shot relation model.")


class Entity(BaseModel):
    text: str
    type: str
    start: int
    end: int
    score: float


class RelationResult(BaseModel):
    relation: str
    score: float
    head: tuple[int, int]
    tail: tuple[int, int]


class TypingResult(BaseModel):
    type: str
    score: float
    scores: dict[str, float]


class PredictResponse(BaseModel):
    """``result`` is exactly what ``predictor.predict`` returns in Python."""

    task: Literal["ner", "re", "typing"]
    result: list[Entity] | RelationResult | TypingResult


class ExtractedRelation(BaseModel):
    head: int = Field(description="Index into `entities`.")
    tail: int = Field(description="Index into `entities`.")
    label: str
    score: float


class ExtractResponse(BaseModel):
    entities: list[Entity]
    relations: list[ExtractedRelation]


def _form_schema(fields: dict[str, dict]) -> dict:
    return {"type": "object", "required": ["text"], "properties": fields}


_FORM_FIELDS = {
    "text": {"type": "string"},
    "image": {"type": "string", "format": "binary", "description": "the picture file"},
    "head": {"type": "string", "description": "'start,end' or '[start, end]'"},
    "tail": {"type": "string", "description": "'start,end' or '[start, end]'"},
    "candidate_labels": {"type": "array", "items": {"type": "string"},
                         "description": "repeated fields, or one comma-separated / JSON list"},
}


def _request_body_doc(model: type[BaseModel], form_fields: dict[str, dict]) -> dict:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()},
        "multipart/form-data": {"schema": _form_schema(form_fields)},
    }}}


# --------------------------------------------------------------------------- limits
class _BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body is larger than the limit of {limit} bytes "
                              f"(max_body_bytes)")


class BodyLimitMiddleware:
    """Reject bodies over ``max_bytes``: at once on a ``Content-Length`` header, and while
    streaming for chunked bodies or a header that lies."""

    def __init__(self, app: Callable, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length > self.max_bytes:
                    return await _send_json(send, 413, _BodyTooLarge(self.max_bytes).detail)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge as e:  # raised outside the exception handlers (e.g. a form parser)
            if started:
                raise
            await _send_json(send, 413, e.detail)


async def _send_json(send, status: int, detail: Any) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- batching
class MicroBatcher:
    """Collect concurrent requests for up to ``window_ms`` (or ``max_batch`` items) and run
    ``batch_fn`` once on them in a worker thread. Batches run one at a time, so requests that
    arrive while a batch runs form the next batch. If a batch fails, its items are retried one
    by one with ``single_fn`` so that each request gets its own answer or its own error."""

    def __init__(self, batch_fn: Callable[[list[dict]], list], single_fn: Callable[..., Any],
                 *, window_ms: float = 5.0, max_batch: int = 16,
                 lock: threading.Lock | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.batch_fn = batch_fn
        self.single_fn = single_fn
        self.window = max(0.0, window_ms) / 1000.0
        self.max_batch = max_batch
        self.lock = lock or threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self.batch_sizes: list[int] = []  # one entry per batch_fn call (for tests and stats)

    def _ensure_worker(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(self._queue))
        return self._queue

    async def submit(self, item: dict) -> Any:
        """Queue one item and wait for its result (or its exception)."""
        fut = asyncio.get_running_loop().create_future()
        self._ensure_worker().put_nowait((item, fut))
        return await fut

    async def aclose(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        self._worker = None

    async def _run(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.window
            while len(batch) < self.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), timeout))
                except (asyncio.TimeoutError, TimeoutError):
                    break
            batch = [(item, fut) for item, fut in batch if not fut.done()]  # drop cancelled
            if not batch:
                continue
            outcomes = await anyio.to_thread.run_sync(self._compute, [i for i, _ in batch])
            for (_, fut), (ok, value) in zip(batch, outcomes):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    def _compute(self, items: list[dict]) -> list[tuple[bool, Any]]:
        """Run in a worker thread: ``(True, result)`` or ``(False, exception)`` per item."""
        with self.lock:
            self.batch_sizes.append(len(items))
            try:
                results = list(self.batch_fn(items))
                if len(results) != len(items):
                    raise RuntimeError(f"predict_batch returned {len(results)} results for "
                                       f"{len(items)} inputs")
                return [(True, r) for r in results]
            except Exception as e:
                if len(items) == 1:
                    return [(False, e)]
                log.info("batch of %d failed (%s); retrying one by one", len(items), e)
            out: list[tuple[bool, Any]] = []
            for item in items:
                try:
                    out.append((True, self.single_fn(**item)))
                except Exception as e:  # noqa: BLE001 - reported to that request
                    out.append((False, e))
            return out


# --------------------------------------------------------------------------- parsing
def _validation_error(errors: list[dict], prefix: tuple = ("body",)) -> RequestValidationError:
    """A 422 in FastAPI's format, without echoing (possibly huge) inputs."""
    clean = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        clean.append({"type": err.get("type", "value_error"), "loc": [*prefix, *loc],
                      "msg": err.get("msg", "invalid value")})
    return RequestValidationError(clean)


def _split_labels(values: list[str]) -> list[str]:
    labels: list[str] = []
    for v in values:
        v = v.strip()
        if v.startswith("["):
            try:
                parsed = json.loads(v)
            except json.JSONDecodeError:
                raise HTTPException(422, "field 'candidate_labels': not a valid JSON list") from None
            if not isinstance(parsed, list):
                raise HTTPException(422, "field 'candidate_labels': expected a list of strings")
            labels.extend(parsed)
        else:
            labels.extend(part.strip() for part in v.split(",") if part.strip())
    return labels


def _split_offsets(field: str, value: str) -> list[str]:
    v = value.strip()
    if v.startswith("["):
        try:
            parsed = json.loads(v)
        except json.JSONDecodeError:
            raise HTTPException(422, f"field '{field}': expected 'start,end' or "
                                     f"'[start, end]', got {value[:40]!r}") from None
        return parsed if isinstance(parsed, list) else [parsed]
    return [p.strip() for p in v.split(",")]


class _App:
    """The request handling behind :func:`create_app` (one instance per app)."""

    def __init__(self, predictor, pipeline, *, max_image_bytes: int, max_image_pixels: int,
                 max_text_chars: int, batch_window_ms: float, max_batch: int):
        self.predictor = predictor
        self.task = task_name(predictor)
        self.pipeline = pipeline
        self.max_image_bytes = max_image_bytes
        self.max_image_pixels = max_image_pixels
        self.max_text_chars = max_text_chars
        self.lock = threading.Lock()  # one model call at a time (predict batches and extract)
        self.batcher = MicroBatcher(predictor.predict_batch, predictor.predict,
                                    window_ms=batch_window_ms, max_batch=max_batch,
                                    lock=self.lock)

    # ---- body -> (validated model, raw image bytes)
    async def parse(self, request: Request, model: type[BaseModel]) -> tuple[BaseModel, bytes | None]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("application/json", "") or ctype.endswith("+json"):
            raw = await request.body()
            if not raw:
                raise HTTPException(422, "empty request body; expected a JSON object with "
                                         "at least 'text'")
            try:
                req = model.model_validate_json(raw, strict=True)
            except ValidationError as e:
                raise _validation_error(e.errors(include_url=False, include_input=False))
            image = self.decode_base64(req.image) if req.image is not None else None
            return req, image
        if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.form(max_files=1, max_fields=64)
            data: dict[str, Any] = {}
            image: bytes | None = None
            for key in set(form.keys()):
                values = form.getlist(key)
                if key == "image":
                    v = values[-1]
                    if isinstance(v, UploadFile):
                        image = await v.read()
                        if not image and not v.filename:
                            image = None  # an empty file input
                    elif v.strip():
                        image = self.decode_base64(v)
                    continue
                if any(isinstance(v, UploadFile) for v in values):
                    raise HTTPException(422, f"field '{key}': expected a text value, got a file")
                if key == "candidate_labels":
                    labels = _split_labels(values)
                    data[key] = labels or None
                elif key in ("head", "tail"):
                    if values[-1].strip():
                        data[key] = _split_offsets(key, values[-1])
                else:
                    data[key] = values[-1] if len(values) == 1 else values
            try:
                req = model.model_validate(data)
            except ValidationError as e:
                raise _validation_error(e.errors(include_url=False, include_input=False))
            return req, image
        raise HTTPException(415, f"unsupported Content-Type {ctype!r}; send application/json "
                                 f"or multipart/form-data")

    def decode_base64(self, value: str) -> bytes:
        s = value.strip()
        if s.startswith("data:"):
            head, _, s = s.partition(",")
            if ";base64" not in head:
                raise HTTPException(422, "field 'image': a data URL must be base64-encoded")
        # base64 inflates by 4/3: refuse before decoding when the result must be too large
        if len(s) * 3 // 4 > self.max_image_bytes + 3:
            raise self.image_too_large(len(s) * 3 // 4)
        try:
            return base64.b64decode(s, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(422, "field 'image': not valid base64") from None

    def image_too_large(self, n: int) -> HTTPException:
        return HTTPException(413, f"field 'image': {n} bytes is over the limit of "
                                  f"{self.max_image_bytes} bytes (max_image_bytes)")

    def load_image(self, data: bytes | None):
        """Bytes -> PIL image, enforcing the byte and pixel limits (413) and reporting
        undecodable data (415)."""
        if data is None:
            return None
        if len(data) > self.max_image_bytes:
            raise self.image_too_large(len(data))
        if not data:
            raise HTTPException(415, "field 'image': the file is empty")
        from mmie.data.images import probe_size

        try:  # header only: the size is known before any pixel is decoded
            width, height = probe_size(data, max_pixels=self.max_image_pixels)
        except ImageError as e:
            if getattr(e, "kind", "") == "too_large":
                raise HTTPException(413, f"field 'image': {e.reason} "
                                         "(max_image_pixels)") from None
            raise HTTPException(415, f"field 'image': cannot read the picture: {e.reason}; "
                                     "send PNG, JPEG, GIF, BMP or WebP") from None
        if width * height > self.max_image_pixels:
            raise HTTPException(413, f"field 'image': {width}x{height} = {width * height} "
                                     f"pixels is over the limit of {self.max_image_pixels} "
                                     f"pixels (max_image_pixels)")
        try:
            return _decode_image(data, self.max_image_bytes, self.max_image_pixels)
        except ImageError as e:
            raise HTTPException(415, f"field 'image': {e.reason}") from None

    def check_text(self, text: str) -> None:
        if not text.strip():
            raise HTTPException(422, "field 'text': is empty; send the post's text")
        if len(text) > self.max_text_chars:
            raise HTTPException(413, f"field 'text': {len(text)} characters is over the limit "
                                     f"of {self.max_text_chars} characters (max_text_chars)")

    def check_labels(self, labels: list[str] | None, zero_shot: bool, what: str) -> None:
        if labels is None:
            return
        if not zero_shot:
            raise HTTPException(422, f"field 'candidate_labels': {what} is not zero-shot; it "
                                     f"predicts its own label set (see GET /model)")
        if not labels:
            raise HTTPException(422, "field 'candidate_labels': is empty; give at least one label")
        if len(labels) > MAX_LABELS:
            raise HTTPException(422, f"field 'candidate_labels': {len(labels)} labels is over "
                                     f"the limit of {MAX_LABELS}")
        for i, label in enumerate(labels):
            if not isinstance(label, str) or not label.strip():
                raise HTTPException(422, f"field 'candidate_labels': item {i} is empty")
            if len(label) > MAX_LABEL_CHARS:
                raise HTTPException(422, f"field 'candidate_labels': item {i} is longer than "
                                         f"{MAX_LABEL_CHARS} characters")

    def check_span(self, field: str, span, text: str) -> tuple[int, int] | None:
        if span is None:
            return None
        start, end = span
        if not 0 <= start < end <= len(text):
            raise HTTPException(422, f"field '{field}': [{start}, {end}] is not a span of the "
                                     f"text; need 0 <= start < end <= {len(text)}")
        return (start, end)

    def predict_item(self, req: PredictRequest) -> dict:
        """Validate a request against the model and build ``predict`` keyword arguments."""
        task = self.task
        self.check_text(req.text)
        self.check_labels(req.candidate_labels, bool(self.predictor.zero_shot),
                          f"this {task} model")
        head = self.check_span("head", req.head, req.text)
        tail = self.check_span("tail", req.tail, req.text)
        if task == "re":
            missing = [n for n, v in (("head", head), ("tail", tail)) if v is None]
            if missing:
                raise HTTPException(422, f"field {' and '.join(repr(m) for m in missing)}: "
                                         f"required for relation extraction (character "
                                         f"offsets [start, end) of the two mentions)")
        elif task == "typing":
            if head is None:
                raise HTTPException(422, "field 'head': required for entity typing (character "
                                         "offsets [start, end) of the mention to type)")
            if tail is not None:
                raise HTTPException(422, "field 'tail': not used by an entity typing model")
        else:
            for name, v in (("head", head), ("tail", tail)):
                if v is not None:
                    raise HTTPException(422, f"field '{name}': not used by an NER model")
        item: dict[str, Any] = {"text": req.text, "image": None}
        if head is not None:
            item["head"] = head
        if tail is not None:
            item["tail"] = tail
        if req.candidate_labels is not None:
            item["candidate_labels"] = list(req.candidate_labels)
        return item

    async def run_extract(self, kwargs: dict) -> dict:
        def call():
            with self.lock:
                return self.pipeline.extract(**kwargs)
        return await anyio.to_thread.run_sync(call)


def task_name(predictor) -> str:
    """The predictor's task as a string ("ner", "re" or "typing"): ``predictor.task`` when it
    is one, else ``info()["task"]`` / a task object's ``name``."""
    task = getattr(predictor, "task", None)
    if isinstance(task, str):
        return task
    name = getattr(predictor, "task_name", None) or getattr(task, "name", None)
    return str(name if isinstance(name, str) else predictor.info().get("task"))


def _decode_image(data: bytes, max_bytes: int, max_pixels: int):
    """Bytes -> RGB PIL image via :func:`mmie.data.images.load_image` (the project's one image
    loader); falls back to a plain PIL decode only if that module is missing."""
    try:
        from mmie.data.images import load_image
    except ImportError:  # pragma: no cover - only while the data layer lacks images.py
        load_image = None
    if load_image is not None:
        return load_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # noqa: BLE001
        raise ImageError(f"cannot decode the picture ({type(e).__name__}: {e})") from None


def _model_error(e: Exception) -> HTTPException:
    if isinstance(e, DataError):
        return HTTPException(422, str(e))
    log.exception("model error", exc_info=e)
    return HTTPException(500, f"model error: {type(e).__name__}: {e}")


# --------------------------------------------------------------------------- the app
def create_app(predictor, *, pipeline=None, max_body_bytes: int = 10 * MB,
               max_image_bytes: int = 8 * MB, max_image_pixels: int = 40_000_000,
               max_text_chars: int = 5000, batch_window_ms: float = 5,
               max_batch: int = 16) -> FastAPI:
    """Build the service around ``predictor`` (from :func:`mmie.load`) and, when given, an
    extraction ``pipeline`` (from :func:`mmie.pipeline`, adds ``POST /extract``).

    Concurrent ``/predict`` requests are collected for up to ``batch_window_ms`` (at most
    ``max_batch``) and answered by one ``predictor.predict_batch`` call in a worker thread.
    """
    state = _App(predictor, pipeline, max_image_bytes=max_image_bytes,
                 max_image_pixels=max_image_pixels, max_text_chars=max_text_chars,
                 batch_window_ms=batch_window_ms, max_batch=max_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await state.batcher.aclose()

    info = predictor.info()
    app = FastAPI(
        title="mmie",
        version=str(info.get("version", "")),
        description=(f"Multimodal information extraction ({state.task} model). "
                     "Send a post's text and optionally its picture; offsets are character "
                     "offsets into the text."),
        lifespan=lifespan,
    )
    app.state.mmie = state
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    limits = {"max_body_bytes": max_body_bytes, "max_image_bytes": max_image_bytes,
              "max_image_pixels": max_image_pixels, "max_text_chars": max_text_chars,
              "max_batch": max_batch, "batch_window_ms": batch_window_ms}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health", summary="Liveness, task and limits")
    async def health() -> dict:
        return {"status": "ok", "task": state.task, "zero_shot": bool(predictor.zero_shot),
                "extract": pipeline is not None, "limits": limits}

    @app.get("/model", summary="The loaded model's description (predictor.info())")
    async def model_info() -> dict:
        return predictor.info()

    @app.post("/predict", response_model=PredictResponse, summary="Predict on one post",
              openapi_extra=_request_body_doc(PredictRequest, _FORM_FIELDS),
              responses={413: {"description": "body, image or text over its limit"},
                         415: {"description": "unsupported Content-Type or image"},
                         422: {"description": "malformed request"},
                         500: {"description": "model error"}})
    async def predict(request: Request):
        req, image_bytes = await state.parse(request, PredictRequest)
        item = state.predict_item(req)
        if image_bytes is not None:  # decoding is CPU work: keep it off the event loop
            item["image"] = await anyio.to_thread.run_sync(state.load_image, image_bytes)
        try:
            result = await state.batcher.submit(item)
        except HTTPException:
            raise
        except Exception as e:  # noqa: BLE001
            raise _model_error(e) from None
        return JSONResponse({"task": state.task, "result": _jsonable(result)})

    if pipeline is not None:
        extract_fields = {k: v for k, v in _FORM_FIELDS.items() if k not in ("head", "tail")}

        @app.post("/extract", response_model=ExtractResponse,
                  summary="Entities and the relations between them",
                  openapi_extra=_request_body_doc(ExtractRequest, extract_fields),
                  responses={413: {"description": "body, image or text over its limit"},
                             415: {"description": "unsupported Content-Type or image"},
                             422: {"description": "malformed request"},
                             500: {"description": "model error"}})
        async def extract(request: Request):
            req, image_bytes = await state.parse(request, ExtractRequest)
            state.check_text(req.text)
            state.check_labels(req.candidate_labels,
                               bool(getattr(pipeline, "zero_shot", True)), "this pipeline")
            image = (await anyio.to_thread.run_sync(state.load_image, image_bytes)
                     if image_bytes is not None else None)
            kwargs: dict[str, Any] = {"text": req.text, "image": image}
            if req.candidate_labels is not None:
                kwargs["candidate_labels"] = list(req.candidate_labels)
            try:
                result = await state.run_extract(kwargs)
            except Exception as e:  # noqa: BLE001
                raise _model_error(e) from None
            return JSONResponse(_jsonable(result))

    return app


def _jsonable(value: Any) -> Any:
    """Tuples -> lists, numpy / torch scalars -> Python numbers (predictors may return them)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return value


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *,
          re_model_dir: str | Path | None = None, log_level: str = "info",
          **limits: Any) -> None:
    """Load ``model_dir`` and serve it with uvicorn (blocks). With ``re_model_dir`` the app
    also gets ``POST /extract`` from ``mmie.pipeline(ner=model_dir, re=re_model_dir)``.
    ``limits`` are passed to :func:`create_app` (e.g. ``max_text_chars=2000``)."""
    import uvicorn

    import mmie

    predictor = mmie.load(model_dir)
    pipeline = mmie.pipeline(ner=model_dir, re=re_model_dir) if re_model_dir else None
    app = create_app(predictor, pipeline=pipeline, **limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
