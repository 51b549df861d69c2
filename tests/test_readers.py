"""Readers: the real benchmark files (counts), the sample fixtures, and malformed input, whose
errors must name the file and the line."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from mmie.data.readers import (ReadResult, read_any, read_conll, read_mfiger, read_mnre,
                               read_wikidiverse, sniff_format)
from mmie.data.schema import Relation, Span
from mmie.errors import DataError

from helpers import data_root

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def real():
    """``real(kind, rel)``: a real data file read once for this module."""
    cache: dict[tuple[str, str], ReadResult] = {}

    def read(kind: str, rel: str) -> ReadResult:
        if (kind, rel) not in cache:
            p = data_root() / rel
            cache[kind, rel] = read_conll(p) if kind == "conll" else read_mnre(p)
        return cache[kind, rel]
    return read


# --------------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------------
TWITTER = [
    ("twitter2015", "train", 4000, 6166, 6352, 186),
    ("twitter2015", "valid", 1000, 1541, 1594, 53),
    ("twitter2015", "test", 3257, 5072, 5207, 135),
    ("twitter2017", "train", 3373, 6049, 6049, 0),
    ("twitter2017", "valid", 723, 1324, 1324, 0),
    ("twitter2017", "test", 723, 1351, 1351, 0),
]


@pytest.mark.data
@pytest.mark.parametrize("name,split,posts,b_only,conll,i_opened", TWITTER)
def test_twitter_counts(name, split, posts, b_only, conll, i_opened, real):
    res = real("conll", f"{name}/{split}.txt")
    assert len(res.examples) == posts == res.stats["posts"]
    assert res.stats["entities"] == conll == sum(len(e.entities) for e in res.examples)
    assert res.stats["entities_b_only"] == b_only
    assert res.stats["i_opened_spans"] == i_opened
    assert sum(res.stats["i_opened_by_label"].values()) == i_opened
    # independent count straight from the file: lines whose tag starts with B-
    raw = (data_root() / name / f"{split}.txt").read_text("utf-8").splitlines()
    assert sum(1 for ln in raw if "\tB-" in ln) == b_only
    assert sum(1 for ln in raw if ln.startswith("IMGID:")) == posts
    assert len({e.id for e in res.examples}) == posts
    for ex in res.examples:
        ex.validate()
        assert ex.image == ex.id + ".jpg"


@pytest.mark.data
def test_twitter2015_first_post_real_lines(real):
    ex = real("conll", "twitter2015/train.txt").examples[0]
    assert ex.id == "1015799" and ex.image == "1015799.jpg"
    assert ex.tokens[:4] == ["RT", "@JayKenMinaj", "_", ":"] and len(ex.tokens) == 22
    assert ex.entities == [Span(8, 10, "PER")]
    assert ex.entities[0].text(ex.tokens) == "George Zimmerman"


@pytest.mark.data
def test_twitter_types_and_label_map(real):
    r15 = real("conll", "twitter2015/train.txt")
    r17 = real("conll", "twitter2017/train.txt")
    assert set(r15.stats["entities_by_label"]) == {"PER", "LOC", "ORG", "OTHER"}
    assert set(r17.stats["entities_by_label"]) == {"PER", "LOC", "ORG", "MISC"}
    mapped = read_conll(data_root() / "twitter2015/valid.txt", label_map={"OTHER": "MISC"})
    orig = real("conll", "twitter2015/valid.txt")
    assert set(mapped.stats["entities_by_label"]) == {"PER", "LOC", "ORG", "MISC"}
    assert mapped.stats["entities_by_label"]["MISC"] == orig.stats["entities_by_label"]["OTHER"]
    assert mapped.stats["i_opened_by_label"]["MISC"] == orig.stats["i_opened_by_label"]["OTHER"]


@pytest.mark.data
@pytest.mark.parametrize("rel,char", [("twitter2017/train.txt", "\u200b"),
                                      ("twitter2015/valid.txt", "\u00a0")])
def test_twitter_keeps_zero_width_and_nbsp_tokens(rel, char, real):
    """Tokens that are a zero-width or no-break space are tokens, not blank lines."""
    toks = Counter(t for e in real("conll", rel).examples for t in e.tokens)
    raw = (data_root() / rel).read_text("utf-8").splitlines()
    n = sum(1 for ln in raw if ln == char + "\tO")
    assert n > 0 and toks[char] == n


@pytest.mark.data
@pytest.mark.parametrize("split,n,labels", [("train", 12247, 23), ("val", 1624, 23),
                                            ("test", 1614, 21)])
def test_mnre_counts(split, n, labels, real):
    res = real("mnre", f"mnre/mnre_{split}.txt")
    assert len(res.examples) == n == res.stats["instances"]
    assert res.stats["labels_present"] == labels
    assert "None" in res.stats["relations_by_label"]
    assert sum(res.stats["relations_by_label"].values()) == n
    assert res.stats["name_mismatch"] == 0
    for ex in res.examples:
        assert ex.entities[0].text(ex.tokens) == ex.meta["h_name"]
        assert ex.entities[1].text(ex.tokens) == ex.meta["t_name"]


@pytest.mark.data
def test_mnre_first_line(real):
    ex = real("mnre", "mnre/mnre_train.txt").examples[0]
    assert ex.id == "mnre_train-0" and ex.image == "twitter_19_31_16_6.jpg"
    assert ex.head == Span(8, 10, "ENTITY") and ex.tail == Span(2, 5, "ENTITY")
    assert ex.relations == [Relation(0, 1, "/misc/misc/part_of")]
    assert ex.meta == {"h_name": "Circle Undone", "t_name": "Arkham Horror LCG"}


# --------------------------------------------------------------------------------------------
# fixtures (invented posts in each format, with the quirks the readers must tolerate)
# --------------------------------------------------------------------------------------------
def test_conll_fixture_tolerates_docstart_blanks_crlf_spaces_no_imgid_and_no_final_blank():
    res = read_conll(FIX / "twitter_sample.txt")
    assert [e.id for e in res.examples] == ["1001", "1002", "twitter_sample-2", "1001#2"]
    assert [e.image for e in res.examples] == ["1001.jpg", "1002.jpg", None, "1001.jpg"]
    e0, e1, e2, e3 = res.examples
    assert e0.tokens == ["RT", "@kim", "Jordan", "Smith", "visits", "Chicago"]
    assert e0.entities == [Span(2, 4, "PER"), Span(5, 6, "LOC")]
    assert e1.tokens == ["Meet", "the", "Bulls", "\u00a0", "tonight"]  # CRLF, nbsp token
    assert e1.entities == [Span(2, 3, "ORG")]  # opened by I-ORG
    assert e2.tokens == ["hello", "Apple"] and e2.entities == [Span(1, 2, "OTHER")]
    assert e3.entities == [Span(1, 2, "LOC"), Span(2, 3, "PER"), Span(3, 4, "ORG")]
    for key, val in {"posts": 4, "tokens": 17, "entities": 7, "entities_b_only": 5,
                     "i_opened_spans": 2, "posts_without_image": 1, "duplicate_image_ids": 1,
                     "docstart_lines": 1}.items():
        assert res.stats[key] == val, key


def test_conll_bioes_scheme(tmp_path):
    p = tmp_path / "b.txt"
    p.write_text("IMGID:1\nNew\tB-LOC\nYork\tE-LOC\nis\tO\nbig\tS-MISC\n\n", "utf-8")
    res = read_conll(p, scheme="BIOES")
    assert res.examples[0].entities == [Span(0, 2, "LOC"), Span(3, 4, "MISC")]


def test_mnre_fixture_python_literals_json_lines_types_and_mismatch():
    res = read_mnre(FIX / "mnre_sample.txt")
    assert len(res.examples) == 4  # the blank line is skipped
    assert res.examples[0].entities == [Span(3, 5, "ENTITY"), Span(6, 8, "ENTITY")]
    assert res.examples[0].relation == "/per/per/couple"
    assert res.examples[2].entities == [Span(0, 1, "ORG"), Span(3, 4, "LOC")]  # JSON + type
    assert res.examples[3].entities[0] == Span(0, 1, "ENTITY")  # tuple pos accepted
    assert res.stats["name_mismatch"] == 1  # 'Bobby' vs token 'Bob'
    assert res.stats["labels_present"] == 4


def test_mnre_never_evaluates_code(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.txt"
    p.write_text("{'token': [__import__('pathlib').Path(%r).touch()], 'h': {}, 't': {}, "
                 "'img_id': 'x', 'relation': 'r'}\n" % str(marker), "utf-8")
    with pytest.raises(DataError, match=rf"{re.escape(str(p))}, line 1: not a Python literal"):
        read_mnre(p)
    assert not marker.exists()


def test_mfiger_fixture():
    res = read_mfiger(FIX / "mfiger_sample.jsonl")
    e0, e1, e2, e3 = res.examples
    assert e0.entities == [Span(0, 1, "/person/athlete", labels=("/person/athlete", "/person")),
                           Span(3, 5, "/building/sports_facility",
                                labels=("/building/sports_facility",))]
    assert e0.meta["mention_ids"] == ["m1", "m2"]
    assert [e.image for e in res.examples] == ["p1.jpg", "p2.jpg", "p3", None]
    assert e1.entities[0].start == 1 and e1.entities[0].end == 2  # "1"/"2" strings accepted
    assert e1.entities[0].labels == ("/location/mountain", "/location/geography")
    assert res.stats["labels_fixed"] == 1 and res.stats["posts_without_image"] == 1
    assert res.stats["mentions"] == 5


def test_wikidiverse_fixture_char_offsets_to_tokens():
    res = read_wikidiverse(FIX / "wikidiverse_sample.json")
    e0, e1, e2 = res.examples
    assert e0.tokens == ["The", "Lions", "versus", "the", "Packers", "(2007)."]
    assert e0.entities == [Span(1, 2, "Organization"), Span(4, 5, "Organization")]
    assert e0.image.endswith("DetroitLionsRunningPlay-2007.jpg") and e0.meta["topic"] == "sports"
    # words are split at mention boundaries inside them
    assert e1.tokens == ["Obama", "'s", "visit", "to", "Berlin", ",", "Germany", "."]
    assert [s.text(e1.tokens) for s in e1.entities] == ["Obama", "Berlin", "Germany"]
    assert [s.label for s in e1.entities] == ["People", "Location", "Country"]
    # the ' euro' mention [9, 14) holds a leading space: trimmed to [10, 14)
    assert e2.entities == [Span(2, 3, "Currency")] and e2.meta["char_spans"] == [[10, 14]]
    assert res.stats["split_words"] == 3 and res.stats["trimmed_mentions"] == 1
    for ex in res.examples:
        for s, (a, b) in zip(ex.entities, ex.meta["char_spans"]):
            assert "".join(ex.tokens[s.start:s.end]) == ex.meta["text"][a:b].replace(" ", "")


def test_wikidiverse_json_lines_variant(tmp_path):
    items = json.loads((FIX / "wikidiverse_sample.json").read_text("utf-8"))
    p = tmp_path / "wd.jsonl"
    p.write_text("\n".join(json.dumps(it) for it in items) + "\n", "utf-8")
    a = read_wikidiverse(p).examples
    b = read_wikidiverse(FIX / "wikidiverse_sample.json").examples
    assert [(x.tokens, x.entities) for x in a] == [(x.tokens, x.entities) for x in b]


@pytest.mark.parametrize("name,fmt", [("twitter_sample.txt", "conll"),
                                      ("mnre_sample.txt", "mnre"),
                                      ("mfiger_sample.jsonl", "mfiger"),
                                      ("wikidiverse_sample.json", "wikidiverse")])
def test_sniff_and_read_any(name, fmt):
    assert sniff_format(FIX / name) == fmt
    res = read_any(FIX / name)
    assert res.format == fmt and res.examples
    assert read_any(FIX / name, fmt).examples == res.examples


def test_read_any_mmie_jsonl_round_trip(tmp_path):
    from mmie.data.schema import write_jsonl

    exs = read_mnre(FIX / "mnre_sample.txt").examples
    write_jsonl(exs, tmp_path / "x.jsonl")
    res = read_any(tmp_path / "x.jsonl")
    assert res.format == "jsonl" and res.examples == exs


# --------------------------------------------------------------------------------------------
# malformed input: every error names the file and the line
# --------------------------------------------------------------------------------------------
GOOD_MNRE = ("{'token': ['a', 'b', 'c'], 'h': {'name': 'a', 'pos': [0, 1]}, "
             "'t': {'name': 'c', 'pos': [2, 3]}, 'img_id': 'x.jpg', 'relation': 'None'}")
GOOD_MFIGER = json.dumps({"tokens": ["a", "b"], "annotations": [
    {"mention_id": "m", "labels": ["/person"], "start": 0, "end": 1}], "image": "i.jpg"})
GOOD_WIKI = ["A B", "u", "t", [["A", "T", 0, 1, "w"]]]

MALFORMED = [
    # (id, reader, file content, line, message pattern)
    ("conll-one-column", read_conll, "IMGID:1\na\tO\nlonely\n\n", 3, r"found 1 column"),
    ("conll-three-tab-columns", read_conll, "IMGID:1\na\tO\tX\n\n", 2,
     r"expected 2 tab-separated columns"),
    ("conll-three-space-columns", read_conll, "a O\nb c O\n", 2, r"found 3 column"),
    ("conll-empty-token", read_conll, "IMGID:1\nx\tO\n\tB-PER\n", 3, r"empty token"),
    ("conll-imgid-inside-post", read_conll, "IMGID:1\nx\tO\nIMGID:2\ny\tO\n", 3,
     r"IMGID line inside a post"),
    ("conll-imgid-without-tokens", read_conll, "IMGID:1\n\nIMGID:2\ny\tO\n", 3,
     r"follows IMGID:1 \(line 1\)"),
    ("conll-imgid-at-eof", read_conll, "IMGID:1\nx\tO\n\nIMGID:2\n\n", 4, r"has no tokens"),
    ("conll-imgid-empty", read_conll, "IMGID:\nx\tO\n", 1, r"without a valid id"),
    ("conll-tag-x-prefix", read_conll, "IMGID:1\nx\tO\ny\tX-PER\n", 3, r"'X-PER'.*BIO tag"),
    ("conll-tag-bare-b", read_conll, "IMGID:1\nx\tB\n", 2, r"'B' is not a BIO tag"),
    ("conll-tag-lowercase", read_conll, "IMGID:1\nx\tO\n\nIMGID:2\ny\tb-per\n", 5,
     r"'b-per' is not a BIO tag"),
    ("conll-invalid-utf8", read_conll, b"IMGID:1\nx\tO\ncaf\xe9\tO\n", 3, r"invalid UTF-8"),
    ("mnre-syntax-error", read_mnre, GOOD_MNRE + "\n" + GOOD_MNRE[:-5] + "\n", 2,
     r"not a Python literal or JSON"),
    ("mnre-missing-relation", read_mnre, GOOD_MNRE.replace(", 'relation': 'None'", "") + "\n",
     1, r"field 'relation': missing field 'relation'"),
    ("mnre-missing-h-pos", read_mnre, "\n" + GOOD_MNRE.replace("'pos': [0, 1]", "'p': 1") + "\n",
     2, r"field 'h\.pos': missing field"),
    ("mnre-token-not-list", read_mnre, GOOD_MNRE.replace("['a', 'b', 'c']", "'a b c'") + "\n", 1,
     r"field 'token': field 'token' must be a list, got str"),
    ("mnre-empty-token", read_mnre, GOOD_MNRE.replace("'b'", "''") + "\n", 1,
     r"token\[1\] must be a non-empty string"),
    ("mnre-pos-out-of-range", read_mnre, GOOD_MNRE.replace("[2, 3]", "[2, 4]") + "\n", 1,
     r"field 't\.pos': 't\.pos' span \[2, 4\) is out of range or empty for 3 tokens"),
    ("mnre-pos-not-pair", read_mnre, GOOD_MNRE.replace("[0, 1]", "[0]") + "\n", 1,
     r"'h\.pos' must be \[start, end\]"),
    ("mnre-not-a-dict", read_mnre, GOOD_MNRE + "\n['token', 'h']\n", 2,
     r"expected a dict per line, got list"),
    ("mnre-relation-wrong-type", read_mnre, GOOD_MNRE.replace("'None'", "None") + "\n", 1,
     r"field 'relation' must be a str, got NoneType"),
    ("mfiger-invalid-json", read_mfiger, GOOD_MFIGER + "\n{\"tokens\": [\n", 2, r"invalid JSON"),
    ("mfiger-empty-labels", read_mfiger, GOOD_MFIGER.replace('["/person"]', "[]") + "\n", 1,
     r"annotations\[0\]\.labels' must be a non-empty list"),
    ("mfiger-end-out-of-range", read_mfiger,
     GOOD_MFIGER + "\n" + GOOD_MFIGER.replace('"end": 1', '"end": 9') + "\n", 2,
     r"'annotations\[0\]' span \[0, 9\) is out of range"),
    ("mfiger-missing-tokens", read_mfiger, GOOD_MFIGER.replace('"tokens"', '"words"') + "\n", 1,
     r"missing field 'tokens'"),
    ("wikidiverse-short-item", read_wikidiverse,
     json.dumps([GOOD_WIKI, GOOD_WIKI[:3]], indent=1) + "\n", 16,
     r"field 'item 1': item 1 must be \[sentence, image_url, topic, mentions\]"),
    ("wikidiverse-char-span-out-of-range", read_wikidiverse,
     json.dumps(GOOD_WIKI) + "\n" + json.dumps(["A B", "u", "t", [["B", "T", 2, 9, "w"]]]) + "\n",
     2, r"item 1\.mentions\[0\]: character span \[2, 9\) is out of range"),
    ("wikidiverse-invalid-json", read_wikidiverse, '[\n  ["A B", "u",\n  "t" [] ]\n]\n', 3,
     r"invalid JSON"),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_input_names_file_and_line(tmp_path, case):
    _, reader, content, line, pattern = case
    p = tmp_path / "bad_input.txt"
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, "utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))}, line {line}\b.*{pattern}") as ei:
        reader(p)
    assert ei.value.path == str(p) and ei.value.line == line


def test_malformed_kinds_are_many():
    assert len(MALFORMED) >= 15
    assert len({c[1] for c in MALFORMED}) == 4  # every reader is covered


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt: file not found"):
        read_conll(tmp_path / "nope.txt")
    p = tmp_path / "x.txt"
    p.write_text("just some prose here\n", "utf-8")
    with pytest.raises(DataError, match=r"cannot tell the format"):
        read_any(p)
    with pytest.raises(DataError, match=r"unknown format 'csv'"):
        read_any(p, "csv")
