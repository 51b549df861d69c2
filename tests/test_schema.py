"""The shared data model: Span / Relation / Example validation and the JSONL round trip."""

from __future__ import annotations

import json

import pytest

from mmie.data.schema import Example, Relation, Span, read_jsonl, write_jsonl
from mmie.errors import DataError


def _ex() -> Example:
    return Example(id="p1", tokens=["Jordan", "met", "Obama", "in", "Chicago", "😍"],
                   image="p1.jpg",
                   entities=[Span(0, 1, "PER"), Span(2, 3, "PER", score=0.5),
                             Span(4, 5, "LOC", labels=("LOC", "city"))],
                   relations=[Relation(0, 1, "/per/per/peer"), Relation(1, 2, "/per/loc/in",
                                                                        score=0.25)],
                   meta={"source": "test"})


def test_round_trip_is_identical(tmp_path):
    exs = [_ex(), Example(id="p2", tokens=["ok"])]
    p = tmp_path / "d.jsonl"
    assert write_jsonl(exs, p) == 2
    assert not (tmp_path / "d.jsonl.tmp").exists()
    back = list(read_jsonl(p))
    assert back == exs
    assert back[0].head == Span(0, 1, "PER") and back[0].tail.label == "PER"
    assert back[0].relation == "/per/per/peer"
    assert back[0].entities[2].all_labels == ("LOC", "city")
    assert back[0].entities[0].text(back[0].tokens) == "Jordan"
    # non-ASCII written as is (UTF-8), not escaped
    assert "😍" in p.read_text(encoding="utf-8")


@pytest.mark.parametrize("start,end,msg", [(2, 2, "empty or negative"), (3, 1, "empty or negative"),
                                           (-1, 2, "empty or negative"),
                                           (0.0, 1, "must be integers"),
                                           (True, 2, "must be integers")])
def test_bad_span(start, end, msg):
    with pytest.raises(DataError, match=msg):
        Span(start, end, "PER")


@pytest.mark.parametrize("d,field,msg", [
    ({"id": "x", "tokens": []}, "tokens", "has no tokens"),
    ({"id": "x", "tokens": ["a", ""]}, "tokens", "token 1"),
    ({"id": "x", "tokens": ["a"], "entities": [{"start": 0, "end": 2, "label": "P"}]},
     "entities", "out of range for a post of 1 tokens"),
    ({"id": "x", "tokens": ["a"], "entities": [{"start": 0, "end": 1, "label": "P"}],
      "relations": [{"head": 0, "tail": 1, "label": "r"}]}, "relations",
     "tail index 1 does not name one of the 1 entities"),
    ({"id": "x", "tokens": ["a"], "entities": [{"start": 1, "end": 1, "label": "P"}]},
     "entities", "empty"),
])
def test_from_dict_errors_name_line_and_field(d, field, msg):
    with pytest.raises(DataError, match=msg) as ei:
        Example.from_dict(d, path="f.jsonl", line=7)
    assert ei.value.field == field and ei.value.line == 7
    assert str(ei.value).startswith(f"f.jsonl, line 7, field '{field}'")


def test_from_dict_missing_keys():
    with pytest.raises(DataError, match="missing required field 'id'"):
        Example.from_dict({"tokens": ["a"]})
    with pytest.raises(DataError, match="missing key 'label'"):
        Example.from_dict({"id": 1, "tokens": ["a"], "entities": [{"start": 0, "end": 1}]})
    with pytest.raises(DataError, match="expected a JSON object, got list"):
        Example.from_dict([1, 2])


def test_read_jsonl_names_bad_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps(_ex().to_dict()) + "\n\n" + '{"id": "b", "tokens": ["a"\n',
                 encoding="utf-8")
    with pytest.raises(DataError, match="invalid JSON") as ei:
        list(read_jsonl(p))
    assert ei.value.line == 3 and str(p) in str(ei.value)


def test_failed_write_leaves_no_file(tmp_path):
    bad = Example(id="b", tokens=["a"], meta={"x": object()})  # not JSON-serialisable
    p = tmp_path / "d.jsonl"
    with pytest.raises(TypeError):
        write_jsonl([_ex(), bad], p)
    assert not p.exists() and not (tmp_path / "d.jsonl.tmp").exists()
