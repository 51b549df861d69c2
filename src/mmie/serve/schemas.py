"""The HTTP request and response schemas. Requests are pydantic models (unknown fields are
rejected with a 422 naming the field); responses are generated from the typed outputs of
:mod:`mmie.inference.outputs`, so the OpenAPI document shows exactly what predictors return."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from mmie.inference.outputs import Entity, Extraction, Relation, Typing

__all__ = ["PredictRequest", "ExtractRequest", "PredictResponse", "ExtractResponse",
           "FORM_FIELDS", "EXTRACT_FORM_FIELDS", "request_body_doc", "ERROR_RESPONSES"]


class PredictRequest(BaseModel):
    """The JSON body of ``POST /predict``."""

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


class PredictResponse(BaseModel):
    """``result`` is exactly what ``predictor.predict`` returns in Python: the entities of an
    NER model, the relation of the given pair, or the type of the given mention."""

    task: Literal["ner", "re", "zs_re", "typing"]
    result: Union[list[Entity], Relation, Typing]


#: ``POST /extract`` answers an :class:`~mmie.inference.outputs.Extraction`
ExtractResponse = Extraction

FORM_FIELDS = {
    "text": {"type": "string"},
    "image": {"type": "string", "format": "binary", "description": "the picture file"},
    "head": {"type": "string", "description": "'start,end' or '[start, end]'"},
    "tail": {"type": "string", "description": "'start,end' or '[start, end]'"},
    "candidate_labels": {"type": "array", "items": {"type": "string"},
                         "description": "repeated fields, or one comma-separated / JSON list"},
}
EXTRACT_FORM_FIELDS = {k: v for k, v in FORM_FIELDS.items() if k not in ("head", "tail")}

ERROR_RESPONSES = {401: {"description": "missing or wrong bearer token (serve --token)"},
                   408: {"description": "the request body did not arrive in time"},
                   413: {"description": "body, image or text over its limit"},
                   415: {"description": "unsupported Content-Type or image"},
                   422: {"description": "malformed request"},
                   500: {"description": "model error"}}


def request_body_doc(model: type[BaseModel], form_fields: dict[str, dict]) -> dict:
    """OpenAPI ``requestBody`` for a route that reads JSON or a multipart form itself."""
    form = {"type": "object", "required": ["text"], "properties": form_fields}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()},
        "multipart/form-data": {"schema": form},
    }}}
