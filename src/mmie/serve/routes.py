"""The routes: :func:`create_app` builds the FastAPI app around a :class:`ModelHolder`.

Endpoints
---------
``GET /``            the web page (``static/index.html``)
``GET /health``      ``{"status": "ok", "task", "zero_shot", "extract", "auth", "limits"}``
``GET /model``       ``predictor.info()`` (no server paths)
``POST /predict``    one prediction; JSON ``{text, image (base64), head, tail, candidate_labels}``
                     or ``multipart/form-data`` (``text`` + an ``image`` file + optional fields)
``POST /extract``    entities and relations (only when the app has a pipeline)
``GET /docs``        offline API documentation; ``GET /openapi.json`` the OpenAPI document

Status codes: 200 ok; 401 a missing or wrong bearer token (when the app has one); 408 a body
that did not arrive within ``body_timeout_s``; 413 body, image (bytes or pixels) or text over
its limit; 415 a Content-Type other than JSON / multipart, or an image that cannot be decoded;
422 a malformed request (unknown field, wrong type, empty text, bad offsets, missing head/tail,
candidate labels on a model that is not zero-shot, or a :class:`~mmie.errors.DataError` raised
by the model); 500 ``{"detail": "model error: ..."}`` when the model itself fails (the service
keeps serving). Offsets are character offsets ``[start, end)`` into ``text`` (code points).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mmie.inference.outputs import page_payload, to_json
from mmie.serve.holder import ModelHolder
from mmie.serve.limits import BodyLimitMiddleware, TokenMiddleware
from mmie.serve.page import add_page
from mmie.serve.parsing import BodyReader
from mmie.serve.schemas import (ERROR_RESPONSES, EXTRACT_FORM_FIELDS, FORM_FIELDS,
                                ExtractRequest, ExtractResponse, PredictRequest,
                                PredictResponse, request_body_doc)

__all__ = ["create_app", "MB"]

MB = 1024 * 1024


def create_app(predictor, *, pipeline=None, max_body_bytes: int = 10 * MB,
               max_image_bytes: int = 8 * MB, max_image_pixels: int = 40_000_000,
               max_text_chars: int = 5000, batch_window_ms: float = 5,
               max_batch: int = 16, body_timeout_s: float | None = 30.0,
               token: str | None = None) -> FastAPI:
    """Build the service around ``predictor`` (from :func:`mmie.load`) and, when given, an
    extraction ``pipeline`` (from :func:`mmie.pipeline`, adds ``POST /extract``).

    Concurrent ``/predict`` requests are collected for up to ``batch_window_ms`` (at most
    ``max_batch``) and answered by one ``predictor.predict_batch`` call in a worker thread.
    With ``token``, every route but the page and ``/health`` needs ``Authorization: Bearer
    <token>``.
    """
    holder = ModelHolder(predictor, pipeline, max_text_chars=max_text_chars,
                         batch_window_ms=batch_window_ms, max_batch=max_batch)
    reader = BodyReader(max_image_bytes, max_image_pixels)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await holder.batcher.aclose()

    info = predictor.info()
    app = FastAPI(
        title="mmie", version=str(info.get("version", "")),
        description=(f"Multimodal information extraction ({holder.task} model). "
                     "Send a post's text and optionally its picture; offsets are character "
                     "offsets into the text."),
        lifespan=lifespan, docs_url=None, redoc_url=None)  # /docs: the offline page below
    app.state.mmie = holder
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes, timeout_s=body_timeout_s)
    if token:
        app.add_middleware(TokenMiddleware, token=token)
    limits = {"max_body_bytes": max_body_bytes, "max_image_bytes": max_image_bytes,
              "max_image_pixels": max_image_pixels, "max_text_chars": max_text_chars,
              "max_batch": max_batch, "batch_window_ms": batch_window_ms,
              "body_timeout_s": body_timeout_s}
    add_page(app)

    @app.get("/health", summary="Liveness, task and limits")
    async def health() -> dict:
        return {"status": "ok", "task": holder.task, "zero_shot": holder.zero_shot,
                "extract": pipeline is not None, "auth": bool(token), "limits": limits}

    @app.get("/model", summary="The loaded model's description (predictor.info())")
    async def model_info() -> dict:
        return holder.info()

    @app.post("/predict", response_model=PredictResponse, summary="Predict on one post",
              openapi_extra=request_body_doc(PredictRequest, FORM_FIELDS),
              responses=ERROR_RESPONSES)
    async def predict(request: Request):
        req, image_bytes = await reader.parse(request, PredictRequest)
        item = holder.predict_item(req)
        if image_bytes is not None:  # decoding is CPU work: keep it off the event loop
            item["image"] = await anyio.to_thread.run_sync(reader.load_image, image_bytes)
        result = await holder.predict(item)
        return JSONResponse(page_payload(holder.task, result))

    if pipeline is not None:
        @app.post("/extract", response_model=ExtractResponse,
                  summary="Entities and the relations between them",
                  openapi_extra=request_body_doc(ExtractRequest, EXTRACT_FORM_FIELDS),
                  responses=ERROR_RESPONSES)
        async def extract(request: Request):
            req, image_bytes = await reader.parse(request, ExtractRequest)
            kwargs = holder.extract_kwargs(req)
            if image_bytes is not None:
                kwargs["image"] = await anyio.to_thread.run_sync(reader.load_image, image_bytes)
            return JSONResponse(to_json(await holder.extract(kwargs)))

    return app
