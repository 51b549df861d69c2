"""Request validation: the one place where a prediction request (a post's text, its picture,
mention offsets and candidate labels) is checked against what a model accepts.

The Python API, the CLI and the HTTP service all go through :func:`validate_item` (the first
step of ``Predictor.preprocess``); a bad request raises a :class:`~mmie.errors.DataError`
whose ``field`` names the offending field (the service answers it with a 422 and the same
text). The rules, by task:

============  ==================  ==================  ===========================
task          ``head``            ``tail``            ``candidate_labels``
============  ==================  ==================  ===========================
``ner``       refused             refused             refused
``re``        required            required            refused
``zs_re``     required            required            optional (default: the model's)
``typing``    required            refused             optional (default: the model's)
============  ==================  ==================  ===========================

Offsets are character offsets ``[start, end)`` into ``text`` (code points) and must cover at
least one word of :func:`mmie.data.tokenize.split_words`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from mmie.data.tokenize import split_words
from mmie.errors import DataError

__all__ = ["Request", "validate_item", "check_candidate_labels", "text_words", "ITEM_FIELDS",
           "MAX_WORDS", "needs_head", "needs_tail"]

MAX_WORDS = 512
#: the fields a prediction item may have
ITEM_FIELDS = ("text", "image", "tokens", "head", "tail", "candidate_labels", "id")
_TASK_WORDS = {"ner": "an NER", "typing": "an entity typing", "re": "a relation",
               "zs_re": "a relation"}


def needs_head(task: str) -> bool:
    return task in ("re", "zs_re", "typing")


def needs_tail(task: str) -> bool:
    return task in ("re", "zs_re")


@dataclass
class Request:
    """One validated prediction request: the text split into words (each with its character
    offsets), the mention spans as character and word offsets, the labels to choose from."""

    id: str
    text: str
    words: list[str]
    offsets: list[tuple[int, int]]
    image: Any = None
    head: tuple[int, int] | None = None
    tail: tuple[int, int] | None = None
    head_words: tuple[int, int] | None = None
    tail_words: tuple[int, int] | None = None
    candidate_labels: list[str] | None = None


def text_words(text: Any, max_words: int | None = MAX_WORDS
               ) -> tuple[list[str], list[tuple[int, int]]]:
    """The words of a post's text and their character offsets; a :class:`DataError` (field
    ``text``) for a text that is not a string, has no words or more than ``max_words``."""
    if not isinstance(text, str):
        raise DataError(f"text must be a string, got {type(text).__name__}", field="text")
    words = split_words(text)
    if not words:
        raise DataError("text is empty (no words to analyse); send the post's text",
                        field="text")
    if max_words is not None and len(words) > max_words:
        raise DataError(f"text has {len(words)} words; the limit is {max_words}. "
                        "Split the post or raise Predictor.max_words", field="text")
    return [w for w, _, _ in words], [(s, e) for _, s, e in words]


def _token_words(tokens: Any) -> tuple[str, list[str], list[tuple[int, int]]]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise DataError(f"tokens must be a list of words, got {type(tokens).__name__}",
                        field="tokens")
    words = [str(w) for w in tokens]
    if not words:
        raise DataError("tokens is empty (no words to analyse)", field="tokens")
    offs, pos = [], 0
    for w in words:
        offs.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), words, offs


def _span(span: Any, which: str, text: str,
          offsets: list[tuple[int, int]]) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(character span, word span)`` of a mention given as ``[start, end)`` offsets."""
    try:
        if isinstance(span, (str, bytes)) or len(span) != 2:
            raise TypeError
        s, e = int(span[0]), int(span[1])
    except (TypeError, ValueError, IndexError):
        raise DataError(f"{which} must be [start, end] character offsets, got {span!r}",
                        field=which) from None
    if not 0 <= s < e <= len(text):
        raise DataError(f"{which} offsets [{s}, {e}) are outside the text (length "
                        f"{len(text)}); need 0 <= start < end <= {len(text)}", field=which)
    idx = [i for i, (ws, we) in enumerate(offsets) if ws < e and we > s]
    if not idx:
        raise DataError(f"{which} [{s}, {e}) covers no word of the text", field=which)
    return (s, e), (idx[0], idx[-1] + 1)


def check_candidate_labels(labels: Any, zero_shot: bool, what: str, fixed: Sequence[str] = (),
                           max_labels: int | None = None,
                           max_label_chars: int | None = None) -> list[str] | None:
    """The candidate labels of a request, checked: only a zero-shot model takes them; they
    must be a non-empty list of non-empty strings (within the optional limits)."""
    if labels is None:
        return None
    if not zero_shot:
        shown = f" {list(fixed)}" if fixed else " (see GET /model)"
        raise DataError(f"candidate_labels are only accepted by zero-shot models; {what} is "
                        f"not zero-shot and predicts its own fixed labels{shown}",
                        field="candidate_labels")
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise DataError(f"candidate_labels must be a list of strings, got "
                        f"{type(labels).__name__}", field="candidate_labels")
    if not labels:
        raise DataError("candidate_labels is empty; give at least one label",
                        field="candidate_labels")
    if max_labels is not None and len(labels) > max_labels:
        raise DataError(f"{len(labels)} labels is over the limit of {max_labels}",
                        field="candidate_labels")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise DataError(f"item {i} is empty (labels must be non-empty strings)",
                            field="candidate_labels")
        if max_label_chars is not None and len(label) > max_label_chars:
            raise DataError(f"item {i} is longer than {max_label_chars} characters",
                            field="candidate_labels")
    return list(labels)


def validate_item(item: Any, n: int, *, task: str, zero_shot: bool,
                  labels: Sequence[str] = (), max_words: int | None = MAX_WORDS,
                  max_labels: int | None = None,
                  max_label_chars: int | None = None) -> Request:
    """Check prediction item number ``n`` (a dict of :data:`ITEM_FIELDS`) against a model of
    ``task``; the :class:`Request` it describes, or a :class:`DataError` naming the field."""
    if not isinstance(item, dict):
        raise DataError(f"item {n} must be a dict of fields, got {type(item).__name__}")
    unknown = set(item) - set(ITEM_FIELDS)
    if unknown:
        raise DataError(f"unknown field(s) {sorted(unknown)} in item {n}; expected "
                        f"{', '.join(ITEM_FIELDS)}")
    what = f"this {task} model"
    cands = check_candidate_labels(item.get("candidate_labels"), zero_shot, what, labels,
                                   max_labels, max_label_chars)
    if item.get("tokens") is not None:
        text, words, offs = _token_words(item["tokens"])
    else:
        if item.get("text") is None:
            raise DataError("each item needs 'text' (or 'tokens')", field="text")
        text = item["text"]
        words, offs = text_words(text, max_words)
    unused = [f for f in ("head", "tail") if item.get(f) is not None and
              not (needs_head(task) if f == "head" else needs_tail(task))]
    if unused:
        why = " (it finds the mentions itself)" if task == "ner" else ""
        raise DataError(f"{' and '.join(unused)} offsets are not used by "
                        f"{_TASK_WORDS.get(task, 'this')} model{why}; leave them out",
                        field=unused[0])
    need = [f for f, want in (("head", needs_head(task)), ("tail", needs_tail(task)))
            if want and item.get(f) is None]
    if need:
        wanted = "head and tail" if needs_tail(task) else "head"
        purpose = ("the two mentions" if needs_tail(task) else "the mention to type")
        raise DataError(f"this {task} model needs {wanted} character offsets [start, end) of "
                        f"{purpose}; missing {' and '.join(repr(f) for f in need)}",
                        field=need[0])
    req = Request(id=str(item.get("id", n)), text=text, words=words, offsets=offs,
                  image=item.get("image"), candidate_labels=cands)
    if needs_head(task):
        req.head, req.head_words = _span(item["head"], "head", text, offs)
    if needs_tail(task):
        req.tail, req.tail_words = _span(item["tail"], "tail", text, offs)
    return req
