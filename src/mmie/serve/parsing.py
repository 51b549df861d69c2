"""Reading a request body: JSON or a multipart form into a validated request model, and the
picture (base64 or an uploaded file) into a PIL image within the byte and pixel limits."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from mmie.data.images import load_image, probe_size
from mmie.errors import ImageError

__all__ = ["BodyReader"]


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


class BodyReader:
    """Parses request bodies for one app (its image limits)."""

    def __init__(self, max_image_bytes: int, max_image_pixels: int):
        self.max_image_bytes = max_image_bytes
        self.max_image_pixels = max_image_pixels

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
            return load_image(data, max_bytes=self.max_image_bytes,
                              max_pixels=self.max_image_pixels)
        except ImageError as e:
            raise HTTPException(415, f"field 'image': {e.reason}") from None
