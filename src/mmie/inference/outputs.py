"""The typed outputs of prediction: one small family of dataclasses for what mmie finds in a
post, and one renderer each for JSON, JSON lines and the web page.

Every predictor produces these (``Predictor.run``, ``Pipeline.run``); the Python API's
``predict`` / ``extract`` return :func:`to_json` of them (plain dicts and lists, the documented
shapes), ``mmie predict --output`` / ``mmie extract --output`` write :func:`to_jsonl` lines,
and the HTTP service answers :func:`page_payload` (its OpenAPI schema is generated from these
classes, see :mod:`mmie.serve.schemas`). Offsets are character offsets ``[start, end)`` into
the post's text; scores are probabilities rounded to 6 decimals.

=====================  =====================================================================
shape                  JSON
=====================  =====================================================================
NER                    ``[{"text", "type", "start", "end", "score"}, ...]`` (:class:`Entity`)
RE                     ``{"relation", "score", "head": [s, e], "tail": [s, e]}``
zero-shot RE           ``{"relation", "score", "scores": {label: p}}`` (:class:`Relation`)
entity typing          ``{"type", "score", "scores": {label: p}}`` (:class:`Typing`)
extraction             ``{"entities": [Entity...], "relations": [{"head", "tail", "label",
                       "score"}]}`` (:class:`Extraction`, :class:`EntityPair`; ``head`` and
                       ``tail`` index ``entities``)
=====================  =====================================================================
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = ["Entity", "Relation", "Typing", "EntityPair", "Extraction", "Prediction",
           "to_json", "to_jsonl", "page_payload", "task_of"]


@dataclass(frozen=True)
class Entity:
    """An entity mention: its text, type and character span, with the model's score."""

    text: str
    type: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Relation:
    """The relation between a given head and tail mention (RE). A supervised model reports
    the spans it was given; a zero-shot model reports the score of every candidate label."""

    relation: str
    score: float
    head: tuple[int, int] | None = None
    tail: tuple[int, int] | None = None
    scores: dict[str, float] | None = None


@dataclass(frozen=True)
class Typing:
    """The type of a given mention (zero-shot entity typing), with every candidate's score."""

    type: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EntityPair:
    """A relation found between two extracted entities (indices into ``entities``)."""

    head: int
    tail: int
    label: str
    score: float


@dataclass(frozen=True)
class Extraction:
    """Everything extracted from one post: entities, then the relations between them."""

    entities: list[Entity] = field(default_factory=list)
    relations: list[EntityPair] = field(default_factory=list)


#: what ``Predictor.run`` yields per post: the entities of an NER model, a relation, a type
Prediction = Union[list[Entity], Relation, Typing]


def task_of(result: Any) -> str:
    """The task name a typed result belongs to ("ner", "re", "typing" or "extract")."""
    if isinstance(result, Extraction):
        return "extract"
    if isinstance(result, Relation):
        return "re"
    if isinstance(result, Typing):
        return "typing"
    return "ner"


_PLAIN = frozenset((str, int, float, bool))
_FIELDS: dict[type, tuple[str, ...]] = {}  # dataclass -> its field names


def to_json(value: Any) -> Any:
    """Typed outputs (and anything holding them) -> plain JSON values: dataclasses become
    dicts without their ``None`` fields, tuples lists, numpy / torch scalars Python numbers."""
    if value is None or type(value) in _PLAIN:  # the leaves, most calls: nothing to convert
        return value
    names = _FIELDS.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {n: to_json(v) for n in names if (v := getattr(value, n)) is not None}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return value


def to_jsonl(value: Any) -> str:
    """One JSON line (no trailing newline) of a typed result: what ``--output`` files hold."""
    return json.dumps(to_json(value), ensure_ascii=False)


def page_payload(task: str, result: Any) -> dict[str, Any]:
    """The HTTP / web page answer of ``POST /predict``: ``{"task", "result"}``."""
    return {"task": task, "result": to_json(result)}
