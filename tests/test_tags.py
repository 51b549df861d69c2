"""Tags <-> spans: CoNLL-way decoding, I-opened counting, schemes, round trips, bad tags."""

from __future__ import annotations

import random

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from mmie.data.schema import Span
from mmie.data.tags import convert_tags, spans_to_tags, tags_to_spans
from mmie.errors import DataError


def S(a: int, b: int, lab: str) -> Span:
    return Span(a, b, lab)


def test_bio_basic():
    spans, n_i = tags_to_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"])
    assert spans == [S(0, 2, "PER"), S(3, 4, "LOC"), S(4, 6, "LOC")]
    assert n_i == 0


def test_bio_i_opened_spans_are_read_the_conll_way_and_counted():
    tags = ["I-PER", "I-PER", "O", "I-LOC", "B-ORG", "I-MISC", "I-MISC", "B-PER", "I-PER"]
    spans, n_i = tags_to_spans(tags)
    assert spans == [S(0, 2, "PER"), S(3, 4, "LOC"), S(4, 5, "ORG"), S(5, 7, "MISC"),
                     S(7, 9, "PER")]
    assert n_i == 3  # I-PER at 0, I-LOC after O, I-MISC after B-ORG
    # B-only counting misses exactly the I-opened spans
    assert sum(t.startswith("B-") for t in tags) == len(spans) - n_i


def test_bioes_and_io():
    spans, n_i = tags_to_spans(["B-PER", "I-PER", "E-PER", "S-LOC", "O", "E-ORG", "S-ORG"],
                               "BIOES")
    assert spans == [S(0, 3, "PER"), S(3, 4, "LOC"), S(5, 6, "ORG"), S(6, 7, "ORG")]
    assert n_i == 1  # E-ORG after O opens a span
    spans, n_i = tags_to_spans(["I-PER", "I-PER", "O", "I-LOC", "I-PER"], "IO")
    assert spans == [S(0, 2, "PER"), S(3, 4, "LOC"), S(4, 5, "PER")]
    assert n_i == 0  # IO spans always start with I-: not counted


def test_scheme_aliases_and_unknown_scheme():
    assert tags_to_spans(["B-X"], "IOB2")[0] == [S(0, 1, "X")]
    assert tags_to_spans(["S-X"], "iobes")[0] == [S(0, 1, "X")]
    with pytest.raises(DataError, match="unknown tagging scheme 'BILOU'"):
        tags_to_spans(["O"], "BILOU")


@pytest.mark.parametrize("scheme,bad", [
    ("BIO", "X-PER"), ("BIO", "B"), ("BIO", "b-per"), ("BIO", "B-"), ("BIO", "PER"),
    ("BIO", "E-LOC"), ("BIO", "S-LOC"), ("BIO", "o"), ("BIO", ""), ("BIO", "B-New York"),
    ("IO", "B-LOC"), ("BIOES", "L-LOC"), ("BIOES", "U-PER"), ("BIO", None),
])
def test_tags_outside_the_scheme_raise_naming_path_and_line(scheme, bad):
    tags = ["O", bad, "O"]
    with pytest.raises(DataError, match=rf"^data\.txt, line 12, field 'tag': tag .* \(token 1\) "
                                        rf"is not a {scheme} tag"):
        tags_to_spans(tags, scheme, path="data.txt", line=[11, 12, 13])
    with pytest.raises(DataError, match=r"^f\.txt, line 7"):
        tags_to_spans(tags, scheme, path="f.txt", line=7)


def _random_spans(rng: random.Random, n: int, labels: list[str], gap: bool) -> list[Span]:
    spans, i = [], 0
    while i < n:
        i += rng.randint(1 if gap else 0, 3)
        length = rng.randint(1, 4)
        if i + length > n:
            break
        spans.append(Span(i, i + length, rng.choice(labels)))
        i += length
    return spans


@pytest.mark.parametrize("scheme", ["BIO", "BIOES", "IO"])
def test_round_trip_spans_tags_spans_is_identical(scheme):
    rng = random.Random(0)
    checked = 0
    for _ in range(300):
        n = rng.randint(1, 30)
        # IO cannot separate adjacent spans of the same type: keep a gap for IO only
        spans = _random_spans(rng, n, ["PER", "LOC", "ORG", "MISC"], gap=scheme == "IO")
        tags = spans_to_tags(spans, n, scheme)
        assert len(tags) == n
        back, n_i = tags_to_spans(tags, scheme)
        assert back == spans and n_i == 0
        checked += len(spans)
    assert checked > 300


def test_io_merges_adjacent_same_type_spans():
    spans = [S(0, 1, "PER"), S(1, 3, "PER")]
    tags = spans_to_tags(spans, 3, "IO")
    assert tags == ["I-PER"] * 3
    assert tags_to_spans(tags, "IO")[0] == [S(0, 3, "PER")]
    # BIO and BIOES keep them apart
    assert tags_to_spans(spans_to_tags(spans, 3, "BIO"))[0] == spans
    assert tags_to_spans(spans_to_tags(spans, 3, "BIOES"), "BIOES")[0] == spans


def test_spans_to_tags_exact_and_unordered_input():
    spans = [S(3, 4, "LOC"), S(0, 3, "PER")]
    assert spans_to_tags(spans, 5) == ["B-PER", "I-PER", "I-PER", "B-LOC", "O"]
    assert spans_to_tags(spans, 5, "BIOES") == ["B-PER", "I-PER", "E-PER", "S-LOC", "O"]
    assert spans_to_tags(spans, 5, "IO") == ["I-PER", "I-PER", "I-PER", "I-LOC", "O"]


def test_spans_to_tags_rejects_overlap_and_out_of_range():
    with pytest.raises(DataError, match=r"\[0, 3\) 'PER' and \[2, 4\) 'LOC' overlap"):
        spans_to_tags([S(2, 4, "LOC"), S(0, 3, "PER")], 5)
    with pytest.raises(DataError, match="out of range for 4 tokens"):
        spans_to_tags([S(2, 5, "LOC")], 4)
    with pytest.raises(DataError, match="cannot be written as a tag type"):
        spans_to_tags([S(0, 1, "New York")], 2)


def test_convert_tags():
    assert convert_tags(["O", "I-PER", "I-PER", "B-LOC"], "BIO", "BIO") == \
        ["O", "B-PER", "I-PER", "B-LOC"]
    assert convert_tags(["B-PER", "I-PER", "B-LOC", "O"], "BIO", "BIOES") == \
        ["B-PER", "E-PER", "S-LOC", "O"]
    assert convert_tags(["B-PER", "E-PER", "S-LOC", "O"], "BIOES", "IO") == \
        ["I-PER", "I-PER", "I-LOC", "O"]
    assert convert_tags(["I-PER", "O", "I-LOC", "I-LOC"], "IO", "BIOES") == \
        ["S-PER", "O", "B-LOC", "E-LOC"]


def test_agrees_with_seqeval_on_random_malformed_bio():
    """Same chunks as seqeval's default (conlleval) mode, the metric's own decoder."""
    rng = random.Random(1)
    vocab = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
    for _ in range(500):
        tags = [rng.choice(vocab) for _ in range(rng.randint(1, 20))]
        spans, n_i = tags_to_spans(tags)
        assert [(s.label, s.start, s.end - 1) for s in spans] == get_entities(tags)
        assert n_i == sum(1 for s in spans if tags[s.start].startswith("I-"))
