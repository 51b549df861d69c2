"""Tests of the synthetic demo data set (mmie.data.synthetic).

The files are parsed here with small self-contained parsers, independent of mmie.data.readers
and of the generator's own ones.
"""

from __future__ import annotations

import ast
import itertools
import json
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmie import cli
from mmie.data import synthetic as syn
from mmie.data.schema import Example, Relation, Span
from mmie.errors import DataError

SPLITS = ("train", "valid", "test")
RE_FILE = {"train": "train", "valid": "val", "test": "test"}


# ---------------------------------------------------------------------------- own parsers
def parse_conll(path: Path) -> list[dict]:
    """[{'id', 'tokens', 'tags', 'spans': [(s, e, type)]}] of a CoNLL file; checks layout."""
    posts, cur = [], None
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and lines[-2] == ""  # ends with a blank line, like the real files
    for line in lines:
        if line.startswith("IMGID:"):
            assert cur is None
            cur = {"id": line[6:], "tokens": [], "tags": []}
        elif line == "":
            if cur is not None:
                posts.append(cur)
            cur = None
        else:
            tok, tag = line.split("\t")
            assert tok and not any(c.isspace() for c in tok)
            cur["tokens"].append(tok)
            cur["tags"].append(tag)
    for p in posts:
        spans, prev = [], "O"
        for i, tag in enumerate(p["tags"]):
            assert tag == "O" or tag[:2] in ("B-", "I-") and tag[2:] in syn.NER_TYPES
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:], "I- tag must continue a span of its type"
                spans[-1][1] = i + 1
            elif tag.startswith("B-"):
                spans.append([i, i + 1, tag[2:]])
            prev = tag
        p["spans"] = [tuple(s) for s in spans]
    return posts


def parse_mnre(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        d = ast.literal_eval(line)
        assert list(d) == ["token", "h", "t", "img_id", "relation"]
        for k in ("h", "t"):
            s, e = d[k]["pos"]
            assert " ".join(d["token"][s:e]) == d[k]["name"]
        out.append(d)
    return out


def to_examples(posts: list[dict]) -> list[Example]:
    return [Example(p["id"], p["tokens"], entities=[Span(s, e, t) for s, e, t in p["spans"]])
            for p in posts]


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def default_set(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("syn_default")
    summary = syn.generate(out, seed=0)
    return out, summary


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


def dominant(region: np.ndarray, colours: dict[str, tuple[int, int, int]]) -> tuple[str, int]:
    """The cue colour with the most pixels (within 40 per channel) in ``region``."""
    counts = {name: int((np.abs(region - np.array(rgb)).max(axis=-1) < 40).sum())
              for name, rgb in colours.items()}
    best = max(counts, key=counts.get)
    return best, counts[best]


# ---------------------------------------------------------------------------- tests
def test_default_size_counts_ceilings_and_speed(default_set) -> None:
    out, s = default_set
    assert s["sizes"] == {"train": 600, "valid": 150, "test": 150}
    assert s["images"] == 2700 == len(list((out / "images").glob("*.png")))
    for split, n in s["sizes"].items():
        assert s["counts"]["ner"][split]["posts"] == n
        assert s["counts"]["re"][split]["instances"] == n
        assert s["counts"]["typing"][split]["posts"] == n
        for key in ("ner_f1", "re_accuracy", "re_f1"):
            c = s["text_only_ceiling"][key][split]
            assert 0.35 <= c <= 0.60, (key, split, c)
        # the ceilings recomputed from the files (through the public entry point) agree
        assert syn.text_only_ceiling(out, task="ner", split=split) == \
            s["text_only_ceiling"]["ner_f1"][split]
        assert syn.text_only_ceiling(out / "re", split=split, metric="f1") == \
            s["text_only_ceiling"]["re_f1"][split]
        assert syn.text_only_ceiling(out / "re" / f"mnre_{RE_FILE[split]}.txt") == \
            s["text_only_ceiling"]["re_accuracy"][split]
    # all six relation labels and all four NER types occur in every split
    for split in SPLITS:
        assert sum(k.startswith("relation_") for k in s["counts"]["re"][split]) == 6
        assert sum(k.startswith("entities_") for k in s["counts"]["ner"][split]) == 4
    # a pooled image vector cannot separate the two-mention posts, region features can
    assert s["pooled_image_ceiling_ner_f1"]["test"] <= 0.85
    assert s["seconds"] < 60
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["text_only_ceiling"] == s["text_only_ceiling"]


def test_ner_files_and_image_cues_decide_the_types(default_set) -> None:
    out, _ = default_set
    colours = {t: syn.COLOURS[c] for t, (_, c) in syn.NER_CUES.items()}
    two_ambiguous = 0
    for split in ("valid", "test"):
        posts = parse_conll(out / "ner" / f"{split}.txt")
        assert len(posts) == 150
        for p in posts:
            img = pixels(out / "images" / f"{p['id']}.png")
            assert img.shape == (128, 128, 3)
            spans = sorted(p["spans"])
            assert 1 <= len(spans) <= 2
            if len(spans) == 1:
                regions = [img]
            else:
                regions = [img[:, :64], img[:, 64:]]  # first mention left, second right
            for (s, e, typ), region in zip(spans, regions):
                got, n = dominant(region, colours)
                assert got == typ and n > 150, (p["id"], typ, got, n)
            if len(spans) == 2:
                # the other half must not show the mention's cue in quantity
                left, right = dominant(img[:, :64], colours), dominant(img[:, 64:], colours)
                assert left[0] == spans[0][2] and right[0] == spans[1][2]
                if spans[0][2] != spans[1][2]:
                    two_ambiguous += 1
    assert two_ambiguous >= 60


def test_re_files_and_image_cues_decide_the_relation(default_set) -> None:
    out, _ = default_set
    colours = {rel: syn.COLOURS[c] for rel, (_, c) in syn.RE_CUES.items()}
    for split in SPLITS:
        rows = parse_mnre(out / "re" / f"mnre_{RE_FILE[split]}.txt")
        assert len(rows) == {"train": 600, "valid": 150, "test": 150}[split]
        assert {r["relation"] for r in rows} == set(syn.RE_LABELS)
        if split == "train":
            continue
        for r in rows:
            got, n = dominant(pixels(out / "images" / r["img_id"]), colours)
            assert got == r["relation"] and n > 300


def test_typing_types_are_compositional(default_set) -> None:
    out, _ = default_set
    types = json.loads((out / "typing" / "types.json").read_text(encoding="utf-8"))
    assert len(types) == 12 and len({t["name"] for t in types}) == 12
    groups = defaultdict(list)
    for t in types:
        assert set(t) >= {"name", "description", "group"}
        groups[t["group"]].append(t)
        a = t["attributes"]
        for v in a.values():  # the description names every attribute in words
            assert v in t["description"]
    assert sorted(groups) == [1, 2, 3] and all(len(g) == 4 for g in groups.values())
    values = {g: {k: Counter(t["attributes"][k] for t in ts) for k in ("colour", "shape",
              "texture", "position")} for g, ts in groups.items()}
    for g in groups:
        assert sorted(values[g]["colour"].values()) == [1, 1, 1, 1]
        assert sorted(values[g]["shape"].values()) == [1, 1, 1, 1]
        assert sorted(values[g]["texture"].values()) == [2, 2]
        assert sorted(values[g]["position"].values()) == [2, 2]
        for other in groups:  # every value of a held-out group occurs in every other group
            for k in values[g]:
                assert set(values[g][k]) <= set(values[other][k])
    pairs = {(t["attributes"]["colour"], t["attributes"]["shape"]) for t in types}
    assert len(pairs) == 12


def test_typing_posts_and_pictures(default_set) -> None:
    out, _ = default_set
    types = {t["name"]: t for t in json.loads((out / "typing" / "types.json").read_text())}
    giveaway = {w for t in types.values() for w in [t["name"], *t["attributes"].values()]}
    colours = {c: syn.COLOURS[c] for c in ("red", "blue", "green", "yellow")}
    seen_labels = Counter()
    for split in SPLITS:
        lines = (out / "typing" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        for line in lines:
            d = json.loads(line)
            assert list(d) == ["id", "tokens", "image", "annotations"]
            assert not giveaway & {w.lower().strip("#@") for w in d["tokens"]}
            [a] = d["annotations"]
            assert list(a) == ["mention_id", "labels", "start", "end"]
            assert 0 <= a["start"] < a["end"] <= len(d["tokens"])
            [label] = a["labels"]
            seen_labels[label] += 1
            if split == "test":
                attrs = types[label]["attributes"]
                img = pixels(out / "images" / d["image"])
                colour, n = dominant(img, colours)
                assert colour == attrs["colour"]
                mask = (np.abs(img - np.array(colours[colour])).max(axis=-1) < 40)
                ys, xs = np.nonzero(mask)  # robust to a distractor dot of the same colour
                assert (np.median(xs) < 64) == (attrs["position"] == "left")
                y0, y1 = np.percentile(ys, [2, 98]).astype(int)
                x0, x1 = np.percentile(xs, [2, 98]).astype(int)
                box = img[y0:y1 + 1, x0:x1 + 1]
                white = int((box.min(axis=-1) > 240).sum())
                assert (white > 0.25 * n) == (attrs["texture"] == "striped"), (d["id"], white, n)
    assert set(seen_labels) == set(types)
    assert max(seen_labels.values()) - min(seen_labels.values()) <= 3  # balanced


def test_ceiling_hand_computations() -> None:
    def ner(tokens: str, *spans: tuple[int, int, str]) -> Example:
        return Example("x", tokens.split(), entities=[Span(s, e, t) for s, e, t in spans])

    # context "about <E> today" 3x: PER, PER, LOC; context "coach <E>" once: PER.
    exs = [ner("about A today", (1, 2, "PER")), ner("about B today", (1, 2, "PER")),
           ner("about C today", (1, 2, "LOC")), ner("coach D", (1, 2, "PER"))]
    # predict PER in both contexts: TP = 3, P = G = 4 -> F1 = 0.75 (abstaining: 2/5)
    assert syn.text_only_ceiling(exs) == pytest.approx(0.75)
    # context X: PER, LOC, ORG, MISC (majority 1 of 4); three fully cued mentions.
    exs = [ner(f"X {n} y", (1, 2, t)) for n, t in zip("ABCD", syn.NER_TYPES)]
    exs += [ner("coach P", (1, 2, "PER")), ner("to L now", (1, 2, "LOC")),
            ner("shares of O", (2, 3, "ORG"))]
    # predict everywhere: 2*4/(7+7) = 0.571; abstain on X: 2*3/(3+7) = 0.6
    assert syn.text_only_ceiling(exs) == pytest.approx(0.6)
    # which mention of a post it is belongs to the context
    exs = [ner("A and B", (0, 1, "PER"), (2, 3, "LOC")), ner("C and D", (0, 1, "PER"),
                                                            (2, 3, "LOC"))]
    assert syn.text_only_ceiling(exs) == 1.0

    def rel(tokens: str, h: int, t: int, label: str) -> Example:
        return Example("r", tokens.split(), entities=[Span(h, h + 1, "e"), Span(t, t + 1, "e")],
                       relations=[Relation(0, 1, label)])

    exs = [rel("A and B", 0, 2, "None"), rel("C and D", 0, 2, "None"),
           rel("E and F", 0, 2, "/per/per/couple"), rel("G married H", 0, 2, "/per/per/couple")]
    # accuracy: context "<H> and <T>" predicts None (2 of 3), "married" 1 of 1 -> 3/4
    assert syn.text_only_ceiling(exs) == pytest.approx(0.75)
    # F1 without None: G = 2; predict couple for "married" only: 2*1/(1+2) = 2/3;
    # also for "and": 2*2/(4+2) = 2/3 -> 2/3
    assert syn.text_only_ceiling(exs, metric="f1") == pytest.approx(2 / 3)
    assert float(syn.best_f1_with_abstention([(1, 4), (3, 3)], 7)) == pytest.approx(0.6)


def _brute_force_ner_f1(posts: list[dict]) -> float:
    """Every subset of contexts to abstain on, majority type elsewhere."""
    groups = defaultdict(Counter)
    gold = 0
    for p in posts:
        spans = sorted(p["spans"])
        masked, i = [], 0
        for s, e, _ in spans:
            masked += p["tokens"][i:s] + ["<E>"]
            i = e
        masked += p["tokens"][i:]
        for j, (_, _, t) in enumerate(spans):
            groups[(tuple(masked), j)][t] += 1
            gold += 1
    items = [(c.most_common(1)[0][1], sum(c.values())) for c in groups.values()]
    assert len(items) <= 16
    best = Fraction(0)
    for keep in itertools.product([0, 1], repeat=len(items)):
        tp = sum(g for k, (g, _) in zip(keep, items) if k)
        p = sum(n for k, (_, n) in zip(keep, items) if k)
        best = max(best, Fraction(2 * tp, p + gold))
    return float(best)


def test_ceiling_equals_brute_force_on_a_tiny_generated_set(tmp_path: Path) -> None:
    s = syn.generate(tmp_path, seed=3, n_train=8, n_valid=5, n_test=5, images=False)
    assert not (tmp_path / "images").exists() and s["images"] == 0
    for split in SPLITS:
        posts = parse_conll(tmp_path / "ner" / f"{split}.txt")
        expected = _brute_force_ner_f1(posts)
        assert s["text_only_ceiling"]["ner_f1"][split] == pytest.approx(expected, abs=1e-12)
        assert syn.text_only_ceiling(to_examples(posts)) == pytest.approx(expected, abs=1e-12)
        rows = parse_mnre(tmp_path / "re" / f"mnre_{RE_FILE[split]}.txt")
        by_ctx = defaultdict(Counter)
        for r in rows:
            (hs, he), (ts, te) = r["h"]["pos"], r["t"]["pos"]
            toks = list(r["token"])
            for (a, b), mark in sorted([((hs, he), "<H>"), ((ts, te), "<T>")], reverse=True):
                toks[a:b] = [mark]
            by_ctx[tuple(toks)][r["relation"]] += 1
        acc = sum(c.most_common(1)[0][1] for c in by_ctx.values()) / len(rows)
        assert s["text_only_ceiling"]["re_accuracy"][split] == pytest.approx(acc)


def test_text_model_fitted_on_train_stays_under_the_ceiling(default_set) -> None:
    """A lookup on (masked context, which mention, the name itself) fitted on train, backed off
    to the context alone, does not beat the test ceiling: the names carry no information."""
    out, s = default_set

    def keyed(posts):
        for p in posts:
            spans = sorted(p["spans"])
            masked, i = [], 0
            for a, b, _ in spans:
                masked += p["tokens"][i:a] + ["<E>"]
                i = b
            ctx = tuple(masked + p["tokens"][i:])
            for j, (a, b, t) in enumerate(spans):
                yield (ctx, j), " ".join(p["tokens"][a:b]), t

    fine, coarse = defaultdict(Counter), defaultdict(Counter)
    for ctx, name, t in keyed(parse_conll(out / "ner" / "train.txt")):
        fine[(ctx, name)][t] += 1
        coarse[ctx][t] += 1
    tp = n = 0
    for ctx, name, t in keyed(parse_conll(out / "ner" / "test.txt")):
        table = fine.get((ctx, name)) or coarse.get(ctx)
        pred = table.most_common(1)[0][0] if table else "PER"
        tp += pred == t
        n += 1
    f1 = tp / n  # every mention predicted with gold boundaries: P = R = F1
    assert f1 <= s["text_only_ceiling"]["ner_f1"]["test"] + 0.02
    assert f1 < 0.55


def test_same_seed_identical_other_seed_different(tmp_path: Path) -> None:
    kw = dict(n_train=20, n_valid=8, n_test=8, image_size=64)
    a, b, c, d = (tmp_path / x for x in "abcd")
    syn.generate(a, seed=5, **kw)
    syn.generate(b, seed=5, **kw)
    syn.generate(c, seed=6, **kw)
    syn.generate(d, seed=5, images=False, **kw)
    texts = sorted(p.relative_to(a) for p in a.rglob("*") if p.suffix in (".txt", ".jsonl",
                                                                          ".json"))
    assert len(texts) == 3 + 3 + 3 + 1 + 1
    for rel in texts:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        if rel.name != "summary.json":  # the summary counts the pictures
            assert (a / rel).read_bytes() == (d / rel).read_bytes(), rel  # pictures or not
    pngs = sorted(p.name for p in (a / "images").glob("*.png"))
    assert len(pngs) == 3 * 36
    for name in pngs:
        pa = pixels(a / "images" / name)
        assert pa.shape == (64, 64, 3)
        assert np.array_equal(pa, pixels(b / "images" / name)), name
    for f in ("ner/train.txt", "re/mnre_test.txt", "typing/valid.jsonl"):
        assert (a / f).read_bytes() != (c / f).read_bytes()
    differ = sum(not np.array_equal(pixels(a / "images" / n), pixels(c / "images" / n))
                 for n in pngs)
    assert differ == len(pngs)


def test_entry_points_and_errors(tmp_path: Path, capsys) -> None:
    rc = cli.main(["data", "synthetic", str(tmp_path / "cli"), "--seed", "1", "--n-train", "4",
                   "--n-valid", "2", "--n-test", "3", "--image-size", "48"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["sizes"] == {"train": 4, "valid": 2, "test": 3} and printed["seed"] == 1
    with Image.open(tmp_path / "cli" / "images" / "ner_test_00002.png") as im:
        assert im.size == (48, 48)
    # the CLI contract: valid and test default to a quarter of train, pictures to 128 px
    assert cli.main(["data", "synthetic", str(tmp_path / "q"), "--n-train", "8"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["sizes"] == {"train": 8, "valid": 2, "test": 2}
    assert printed["image_size"] == 128
    assert cli.main(["data", "synthetic", str(tmp_path / "bad"), "--n-train", "0"]) == 1
    assert "n_train must be a positive integer" in capsys.readouterr().err
    with pytest.raises(DataError, match="image_size"):
        syn.generate(tmp_path / "bad2", image_size=8)
    with pytest.raises(DataError, match="no test split found"):
        syn.text_only_ceiling(tmp_path)
    with pytest.raises(DataError, match="unknown metric"):
        syn.text_only_ceiling(tmp_path / "cli" / "re", metric="auc")
