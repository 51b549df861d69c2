"""The synthetic data set's posts and pictures: a small multimodal set whose labels need the
picture (a demo and a test bed). :mod:`mmie.data.synthetic.files` writes them in the real
data sets' formats (:func:`mmie.data.synthetic.generate`).

How the labels depend on text and picture
-----------------------------------------
* **Names are uninformative.** Every mention is a name from one pool of ambiguous names
  ("Jordan", "Amazon", "Paris", "Phoenix", "Lincoln Park", ...) drawn uniformly at random,
  independently of its label.
* **NER.** Most mentions sit in *neutral* templates ("Everyone is talking about {0} today
  #trending") and their type (PER, LOC, ORG, MISC) is drawn at random, balanced per template;
  the type is shown in the picture only. About a quarter sit in *cued* templates whose words
  decide the type ("Flying to {0} this weekend" -> LOC). Each type has a large saturated cue:
  PER red circle, LOC blue triangle, ORG green square, MISC yellow star. A post with two
  mentions shows the first mention's cue (in text order) in the left half of the picture and
  the second's in the right half; a post with one mention shows its cue in a random half. In
  the posts with *two* neutral mentions the two types differ, so a single pooled image vector
  (which tells which types are present but not where) can only guess who is who; region
  features can solve them.
* **RE.** One head and one tail name per post. In neutral templates ("{0} and {1} 📸") the
  relation (one of :data:`RE_LABELS`, ``None`` included) is drawn at random, balanced per
  template, and shown by one cue in the picture; about 30% of the posts use cued templates
  ("{0} married {1} ..." -> ``/per/per/couple``).
* **Zero-shot typing.** 12 types in three groups of four (:data:`TYPING_TYPES`); each type's
  picture combines four attributes (colour, shape, texture, position): in every group each
  of the four colours and four shapes appears once and each texture and position twice, so
  every attribute value of a held-out group also occurs in every other group, and the 12
  (colour, shape) pairs are all different. ``types.json`` describes each type by its
  attributes in words ("a red striped circle on the left of the picture"). The text of a
  typing post never reveals the type (neutral templates only).
* **Noise.** Background colour jitter with a gentle gradient, small distractor dots in random
  colours, jitter of position, size and rotation of the cues; cues stay large and saturated so
  a small frozen CNN (e.g. EfficientNet-Lite0 at 128-224 px) picks them up.

Text-only ceiling
-----------------
By construction a label is independent of everything in the text given the *context* of its
mention: the post's words with every mention replaced by a placeholder (plus which mention it
is). :func:`text_only_ceiling` computes, on a split, the best score of any predictor that is a
function of that context (and is told the gold mention boundaries): each context predicts its
majority label, and for entity F1 (and RE F1 without ``None``) it may also abstain, chosen to
maximise F1 exactly. It is an optimistic bound for any text-only model, since names carry no
information. :func:`~mmie.data.synthetic.generate` reports it per split; by design it stays
under 0.60 (about
0.46-0.48 entity F1, 0.42-0.46 RE accuracy, 0.51 RE F1 at the default sizes).

Everything is seeded: the same ``seed`` and sizes give byte-identical text files and
identical image pixels. Split ``s`` of task ``t`` draws its text and labels from
``SeedSequence([seed, t, s, 0])`` and its pictures from ``SeedSequence([seed, t, s, 1])``, so
``images=False`` writes the same text files.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from mmie.data.readers import read_conll, read_mnre, sniff_format
from mmie.data.schema import Example, Relation, Span
from mmie.data.tokenize import fill_template
from mmie.errors import DataError

__all__ = ["Post", "gen_ner", "gen_re", "gen_typing", "render", "post_rng", "text_only_ceiling",
           "ner_text_only_ceiling", "re_text_only_ceiling", "best_f1_with_abstention",
           "NER_TYPES", "NER_CUES", "RE_LABELS", "RE_CUES", "TYPING_TYPES", "COLOURS", "SPLITS"]

SPLITS = ("train", "valid", "test")
RE_SPLIT_FILE = {"train": "train", "valid": "val", "test": "test"}

#: Saturated RGB colours of the cues.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 40), "blue": (30, 80, 225), "green": (20, 165, 50),
    "yellow": (245, 200, 0), "purple": (140, 40, 190), "black": (20, 20, 20),
}

NER_TYPES = ("PER", "LOC", "ORG", "MISC")
#: NER type -> (shape, colour) of its cue.
NER_CUES: dict[str, tuple[str, str]] = {
    "PER": ("circle", "red"), "LOC": ("triangle", "blue"), "ORG": ("square", "green"),
    "MISC": ("star", "yellow"),
}

RE_LABELS = ("None", "/per/per/couple", "/per/loc/place_of_residence", "/per/org/member_of",
             "/org/org/subsidiary", "/loc/loc/contain")
#: Relation -> (shape, colour) of its cue.
RE_CUES: dict[str, tuple[str, str]] = {
    "None": ("cross", "black"), "/per/per/couple": ("circle", "red"),
    "/per/loc/place_of_residence": ("triangle", "blue"), "/per/org/member_of": ("square", "green"),
    "/org/org/subsidiary": ("star", "yellow"), "/loc/loc/contain": ("diamond", "purple"),
}

_TYPING_COLOURS = ("red", "blue", "green", "yellow")
_TYPING_SHAPES = ("circle", "square", "triangle", "star")
_TYPING_TEXTURES = ("solid", "striped")
_TYPING_POSITIONS = ("left", "right")
_TYPING_NAMES = ("beacon", "anchor", "lantern", "compass", "ember", "harbor", "summit",
                 "glacier", "orchard", "citadel", "meadow", "tide")


def _typing_types() -> list[dict[str, Any]]:
    """Group g (0-2), member i (0-3): colour i, shape (i + g) mod 4, texture and position
    balanced within the group."""
    out = []
    for g in range(3):
        for i in range(4):
            attrs = {"colour": _TYPING_COLOURS[i], "shape": _TYPING_SHAPES[(i + g) % 4],
                     "texture": _TYPING_TEXTURES[(i // 2 + g) % 2],
                     "position": _TYPING_POSITIONS[(i % 2 + g) % 2]}
            desc = (f"a {attrs['colour']} {attrs['texture']} {attrs['shape']} on the "
                    f"{attrs['position']} of the picture")
            out.append({"name": _TYPING_NAMES[4 * g + i], "description": desc, "group": g + 1,
                        "attributes": attrs})
    return out


#: The 12 zero-shot typing types (``types.json``): name, description, group 1-3, attributes.
TYPING_TYPES: list[dict[str, Any]] = _typing_types()

# --------------------------------------------------------------------------------------------
# Text material. Slots are {0} and {1}; a slot kind is "?" (neutral) or the label it forces.
# --------------------------------------------------------------------------------------------
NAMES = (
    "Jordan", "Amazon", "Paris", "Apple", "Washington", "Phoenix", "Jaguar", "Mercury",
    "Chelsea", "Lincoln", "Orlando", "Victoria", "Dallas", "Austin", "Sydney", "Florence",
    "Georgia", "Jackson", "Madison", "Everest", "Savannah", "Aurora", "Delta", "Columbia",
    "Pacific Heights", "Lincoln Park", "Santa Cruz", "Cedar Point", "Rio Grande", "Monte Carlo",
)

_N1 = (  # one neutral mention
    "Can't stop thinking about {0} 😍",
    "RT @newsdesk : {0} is trending at the moment",
    "Everyone is talking about {0} today #trending",
    "Big day for {0} !",
    "Throwback to {0} 📸 https://t.co/Xy12Ab",
    "So much love for {0} ❤️",
    "Just saw the latest on {0} . Thoughts ?",
    "{0} is all over my timeline 🔥",
    "Who else is excited about {0} ?!",
    "Can't believe what happened with {0} 😂",
)
_NER_TEMPLATES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "n1": [(t, ("?",)) for t in _N1],
    "n2": [(t, ("?", "?")) for t in (
        "{0} and {1} all over my feed today",
        "{0} vs {1} ... who wins ?",
        "Thinking about {0} and {1} tonight 🤔",
        "RT @daily_pics : {0} meets {1} #photo",
        "{0} , {1} and a lot of coffee ☕",
        "Can't decide between {0} and {1} 😅",
    )],
    "c1": [
        ("Happy birthday to {0} , she turns 30 today 🎂", ("PER",)),
        ("Great interview with coach {0} after the game", ("PER",)),
        ("Flying to {0} this weekend ✈️", ("LOC",)),
        ("Live from downtown {0} , the weather is great", ("LOC",)),
        ("Shares of {0} jumped 5.2 % today 📈", ("ORG",)),
        ("{0} just announced a new CEO", ("ORG",)),
        ("Watching the {0} premiere tonight 🎬", ("MISC",)),
        ("The new {0} album is out now 🎧", ("MISC",)),
    ],
    "cn": [
        ("Coach {0} just mentioned {1} 👀", ("PER", "?")),
        ("Shares of {0} moved after news about {1}", ("ORG", "?")),
        ("{0} spotted in downtown {1} 📍", ("?", "LOC")),
        ("{0} reviews the new {1} album 🎧", ("?", "MISC")),
    ],
    "c2": [
        ("Coach {0} flies to {1} tomorrow", ("PER", "LOC")),
        ("Actress {0} joins the cast of the {1} sequel 🎬", ("PER", "MISC")),
        ("Mayor {0} meets the CEO of {1}", ("PER", "ORG")),
        ("Shares of {0} rose after the {1} premiere", ("ORG", "MISC")),
    ],
}
#: Post kinds of NER and how many of every 10 posts are of each kind.
_NER_KIND_WEIGHTS = {"n1": 4, "n2": 3, "c1": 1, "cn": 1, "c2": 1}

_RE_TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "neutral": [(t, "?") for t in (
        "{0} and {1} 📸",
        "New photo of {0} with {1} #tbt",
        "RT @photo_feed : {0} , {1} and the whole crew",
        "{0} 🤝 {1}",
        "Can't stop looking at this pic of {0} and {1} 😂",
        "Guess who ? {0} and {1} https://t.co/Qw3rT9",
        "Look who showed up : {0} and {1} !",
        "{0} with {1} last night 🔥",
    )],
    "cued": [
        ("{0} and her husband {1} celebrate their anniversary 💍", "/per/per/couple"),
        ("{0} married {1} in a private ceremony", "/per/per/couple"),
        ("{0} , who lives in {1} , posted this", "/per/loc/place_of_residence"),
        ("{0} is moving back home to {1} 🏠", "/per/loc/place_of_residence"),
        ("{0} signs a new contract with {1} ✍️", "/per/org/member_of"),
        ("{0} joins the board of {1}", "/per/org/member_of"),
        ("{0} , a unit of {1} , reports record sales", "/org/org/subsidiary"),
        ("{1} completes its takeover of {0}", "/org/org/subsidiary"),
        ("Visiting {1} , a lovely town in {0} 🌄", "/loc/loc/contain"),
        ("{0} is home to the old harbour of {1}", "/loc/loc/contain"),
    ],
}
_RE_KIND_WEIGHTS = {"neutral": 7, "cued": 3}

_TYPING_TEMPLATES = _N1 + (
    "Look at {0} in this picture !",
    "Morning post about {0} #photo",
)


# --------------------------------------------------------------------------------------------
# Sampling helpers
# --------------------------------------------------------------------------------------------
class _Bag:
    """Draws items in shuffled rounds, so that every item comes up equally often."""

    def __init__(self, items: Sequence[Any], rng: np.random.Generator):
        self.items = list(items)
        self.rng = rng
        self.queue: list[Any] = []

    def draw(self) -> Any:
        if not self.queue:
            self.queue = [self.items[i] for i in self.rng.permutation(len(self.items))]
        return self.queue.pop()


class _RoundBag(_Bag):
    """A :class:`_Bag` over rounds of items: one round at a time, rounds in shuffled order.

    Used for ordered pairs of different NER types: round ``r`` holds ``(a, a + r mod 4)`` for
    every ``a``, so each round shows every type once in each slot and the per-slot type
    counts stay balanced at every multiple of four draws."""

    def __init__(self, rounds: Sequence[Sequence[Any]], rng: np.random.Generator):
        super().__init__([], rng)
        self.rounds = _Bag([list(r) for r in rounds], rng)

    def draw(self) -> Any:
        if not self.queue:
            r = self.rounds.draw()
            self.queue = [r[i] for i in self.rng.permutation(len(r))]
        return self.queue.pop()


def _weighted(weights: dict[str, int]) -> list[str]:
    return [k for k, w in weights.items() for _ in range(w)]


def _names(rng: np.random.Generator, k: int) -> list[str]:
    """``k`` different names, uniform over :data:`NAMES` (never sharing a word)."""
    while True:
        idx = rng.choice(len(NAMES), size=k, replace=False)
        names = [NAMES[i] for i in idx]
        words = [w for n in names for w in n.split()]
        if len(set(words)) == len(words):
            return names


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Cue:
    shape: str
    colour: str
    region: str  # "left", "right" or "center"
    texture: str = "solid"


def _polygon(cx: float, cy: float, radii: Sequence[float], angle: float) -> list[tuple]:
    n = len(radii)
    return [(cx + r * math.cos(angle + 2 * math.pi * k / n),
             cy + r * math.sin(angle + 2 * math.pi * k / n)) for k, r in enumerate(radii)]


def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float,
                rot: float) -> Image.Image:
    """A mask ("L" image, 0 or 255) of one shape of (circum)radius about ``r`` centred at
    ``(cx, cy)``, rotated by ``rot`` radians."""
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)
    up = -math.pi / 2
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "square":
        d.polygon(_polygon(cx, cy, [r * 1.05] * 4, math.pi / 4 + rot), fill=255)
    elif shape == "diamond":
        d.polygon(_polygon(cx, cy, [r * 1.1] * 4, up + rot), fill=255)
    elif shape == "triangle":
        d.polygon(_polygon(cx, cy + 0.15 * r, [r * 1.1] * 3, up + rot), fill=255)
    elif shape == "star":
        d.polygon(_polygon(cx, cy, [r * 1.1, r * 0.47] * 5, up + rot), fill=255)
    elif shape == "cross":
        w = 0.28 * r
        for a in (math.pi / 4 + rot, -math.pi / 4 + rot):
            dx, dy = math.cos(a), math.sin(a)
            px, py = -dy * w, dx * w
            d.polygon([(cx - dx * r + px, cy - dy * r + py), (cx + dx * r + px, cy + dy * r + py),
                       (cx + dx * r - px, cy + dy * r - py), (cx - dx * r - px, cy - dy * r - py)],
                      fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return m


@functools.lru_cache(maxsize=8)
def _grids(size: int) -> tuple[np.ndarray, Image.Image]:
    """Coordinates in [-1, 1] and the diagonal stripe mask (an "L" image) of one size."""
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = ((xx + yy) // max(3, size // 20)) % 2 == 1
    return (np.linspace(-1.0, 1.0, size, dtype=np.float32),
            Image.fromarray((stripes * 255).astype(np.uint8)))


def render(rng: np.random.Generator, size: int, cues: Sequence[_Cue]) -> Image.Image:
    """Draw one picture: a light background of jittered colour with a gentle gradient, the
    cues, then small distractor dots in random colours."""
    s = float(size)
    lin, stripes = _grids(size)
    base = rng.integers(180, 236, size=3)
    slope = rng.uniform(-12.0, 12.0, size=2).astype(np.float32)
    shade = (slope[0] * lin)[None, :] + (slope[1] * lin)[:, None]
    bg = np.empty((size, size, 3), dtype=np.uint8)
    for c in range(3):
        bg[:, :, c] = shade + float(base[c])
    pic = Image.fromarray(bg)
    for cue in cues:
        if cue.region == "center":
            r = rng.uniform(0.17, 0.24) * s
            cx = s / 2 + rng.uniform(-0.12, 0.12) * s
        else:
            r = rng.uniform(0.14, 0.19) * s
            cx = (0.25 if cue.region == "left" else 0.75) * s + rng.uniform(-0.04, 0.04) * s
        cy = s / 2 + rng.uniform(-0.2, 0.2) * s
        rot = rng.uniform(-0.17, 0.17)  # about +-10 degrees
        mask = _shape_mask(cue.shape, size, cx, cy, r, rot)
        pic.paste(COLOURS[cue.colour], (0, 0, size, size), mask)
        if cue.texture == "striped":
            pic.paste((250, 250, 250), (0, 0, size, size), ImageChops.multiply(mask, stripes))
        elif cue.texture != "solid":
            raise ValueError(f"unknown texture {cue.texture!r}")
    d = ImageDraw.Draw(pic)
    rmax = max(2, size // 40)
    for _ in range(int(rng.integers(3, 9))):
        x, y = rng.uniform(0, s, size=2)
        rd = float(rng.uniform(1, rmax))
        d.ellipse([x - rd, y - rd, x + rd, y + rd],
                  fill=tuple(int(v) for v in rng.integers(0, 256, size=3)))
    return pic


# --------------------------------------------------------------------------------------------
# The three tasks
# --------------------------------------------------------------------------------------------
@dataclass
class Post:
    """One generated post: its words, its mentions (``spans``, word offsets ``[start, end)``)
    with their names, its labels (NER: one type per mention; RE: the relation; typing: the
    type) and the cues its picture shows."""

    id: str
    tokens: list[str]
    spans: list[tuple[int, int]]
    names: list[str]
    labels: list[str]
    cues: list[_Cue]

    def example(self, task: str) -> Example:
        """The post as the reader of its file gives it back (``ner`` or ``re``)."""
        if task == "re":
            (hs, he), (ts, te) = self.spans
            return Example(self.id, self.tokens, image=f"{self.id}.png",
                           entities=[Span(hs, he, "head"), Span(ts, te, "tail")],
                           relations=[Relation(0, 1, self.labels[0])])
        return Example(self.id, self.tokens, image=self.id,
                       entities=[Span(s, e, l) for (s, e), l in zip(self.spans, self.labels)])


def post_rng(seed: int, task: int, split: int, stream: int) -> np.random.Generator:
    """Stream 0 draws the text and labels of a split, stream 1 its pictures."""
    return np.random.default_rng(np.random.SeedSequence([seed, task, split, stream]))


def gen_ner(rng: np.random.Generator, n: int, split: str) -> tuple[list[Post], dict[str, Any]]:
    """``n`` NER posts of ``split`` and their counts."""
    kinds = _Bag(_weighted(_NER_KIND_WEIGHTS), rng)
    tbags = {k: _Bag(range(len(v)), rng) for k, v in _NER_TEMPLATES.items()}
    lbags: dict[tuple[str, int], _Bag] = {}
    nt = len(NER_TYPES)
    pair_rounds = [[(NER_TYPES[a], NER_TYPES[(a + r) % nt]) for a in range(nt)]
                   for r in range(1, nt)]
    out: list[Post] = []
    stats: Counter[str] = Counter()
    for i in range(n):
        pid = f"ner_{split}_{i:05d}"
        kind = kinds.draw()
        ti = tbags[kind].draw()
        template, slots = _NER_TEMPLATES[kind][ti]
        if kind == "n2":
            key = (kind, ti)
            lbags.setdefault(key, _RoundBag(pair_rounds, rng))
            labels = list(lbags[key].draw())
        else:
            labels = []
            for k, slot in enumerate(slots):
                if slot == "?":
                    key = (f"{kind}:{k}", ti)
                    lbags.setdefault(key, _Bag(NER_TYPES, rng))
                    labels.append(lbags[key].draw())
                else:
                    labels.append(slot)
        names = _names(rng, len(slots))
        tokens, spans = fill_template(template, names)
        order = sorted(range(len(spans)), key=lambda k: spans[k][0])
        if len(spans) == 2:
            regions = {order[0]: "left", order[1]: "right"}
        else:
            regions = {0: "left" if rng.random() < 0.5 else "right"}
        cues = [_Cue(*NER_CUES[labels[k]], region=regions[k]) for k in range(len(spans))]
        out.append(Post(pid, tokens, spans, names, labels, cues))
        stats["posts"] += 1
        stats["entities"] += len(spans)
        stats["text_cued_mentions"] += sum(s != "?" for s in slots)
        stats["two_ambiguous_mention_posts"] += kind == "n2"
        for lab in labels:
            stats[f"entities_{lab}"] += 1
    return out, dict(stats)


def gen_re(rng: np.random.Generator, n: int, split: str) -> tuple[list[Post], dict[str, Any]]:
    """``n`` RE posts (one head/tail pair each) of ``split`` and their counts."""
    kinds = _Bag(_weighted(_RE_KIND_WEIGHTS), rng)
    tbags = {k: _Bag(range(len(v)), rng) for k, v in _RE_TEMPLATES.items()}
    lbags: dict[int, _Bag] = {}
    posts: list[Post] = []
    stats: Counter[str] = Counter()
    for i in range(n):
        pid = f"re_{split}_{i:05d}"
        kind = kinds.draw()
        ti = tbags[kind].draw()
        template, rel = _RE_TEMPLATES[kind][ti]
        if rel == "?":
            lbags.setdefault(ti, _Bag(RE_LABELS, rng))
            rel = lbags[ti].draw()
        names = _names(rng, 2)
        tokens, spans = fill_template(template, names)
        posts.append(Post(pid, tokens, spans, names, [rel],
                          [_Cue(*RE_CUES[rel], region="center")]))
        stats["instances"] += 1
        stats["text_cued"] += kind == "cued"
        stats[f"relation_{rel}"] += 1
    return posts, dict(stats)


def gen_typing(rng: np.random.Generator, n: int, split: str) -> tuple[list[Post], dict[str, Any]]:
    """``n`` zero-shot typing posts (one mention each) of ``split`` and their counts."""
    types = _Bag(range(len(TYPING_TYPES)), rng)
    tbag = _Bag(range(len(_TYPING_TEMPLATES)), rng)
    posts: list[Post] = []
    stats: Counter[str] = Counter()
    for i in range(n):
        pid = f"typing_{split}_{i:05d}"
        t = TYPING_TYPES[types.draw()]
        template = _TYPING_TEMPLATES[tbag.draw()]
        names = _names(rng, 1)
        tokens, spans = fill_template(template, names)
        a = t["attributes"]
        cue = _Cue(a["shape"], a["colour"], region=a["position"], texture=a["texture"])
        posts.append(Post(pid, tokens, spans, names, [t["name"]], [cue]))
        stats["posts"] += 1
        stats[f"group_{t['group']}"] += 1
    return posts, dict(stats)


# --------------------------------------------------------------------------------------------
# Text-only ceilings
# --------------------------------------------------------------------------------------------
def best_f1_with_abstention(items: Iterable[tuple[int, int]], n_gold: int) -> Fraction:
    """Best micro F1 ``2 TP / (P + G)`` when each item ``(tp, p)`` (a context's majority-label
    hits and its number of predictions) is either predicted as a whole or abstained on.

    The optimum takes the items in order of decreasing ``tp / p`` up to some point (an item
    pays off exactly when ``tp / p > F* / 2``), so checking every such prefix is exact.
    """
    if n_gold <= 0:
        raise DataError("no gold mentions: F1 is undefined")
    best = Fraction(0)
    tp = p = 0
    for g, c in sorted(items, key=lambda it: Fraction(it[0], it[1]), reverse=True):
        tp += g
        p += c
        best = max(best, Fraction(2 * tp, p + n_gold))
    return best


def _masked(tokens: Sequence[str], marks: Sequence[tuple[int, int, str]]) -> tuple[str, ...]:
    """The words with each marked span ``[s, e)`` replaced by its placeholder."""
    out: list[str] = []
    i = 0
    for s, e, ph in sorted(marks):
        if s < i:  # overlapping spans: keep the first
            continue
        out.extend(tokens[i:s])
        out.append(ph)
        i = e
    out.extend(tokens[i:])
    return tuple(out)


def ner_text_only_ceiling(examples: Sequence[Example]) -> float:
    """Best entity F1 of a predictor that sees each mention's context (the post with every
    mention masked, and which mention it is) and the gold boundaries: per context the
    majority type or nothing, chosen to maximise micro F1 exactly."""
    groups: dict[tuple, Counter[str]] = defaultdict(Counter)
    n_gold = 0
    for ex in examples:
        spans = sorted(ex.entities, key=lambda s: (s.start, s.end))
        ctx = _masked(ex.tokens, [(s.start, s.end, "<E>") for s in spans])
        for j, s in enumerate(spans):
            groups[(ctx, j)][s.label] += 1
            n_gold += 1
    items = [(c.most_common(1)[0][1], sum(c.values())) for c in groups.values()]
    return float(best_f1_with_abstention(items, n_gold))


def re_text_only_ceiling(examples: Sequence[Example], *, metric: str = "accuracy") -> float:
    """Best score of a predictor that sees the post with head and tail masked (``<H>``,
    ``<T>``): ``accuracy`` (each context predicts its majority relation) or ``f1`` (micro F1
    without ``None``; each context predicts its most frequent other relation or ``None``,
    chosen to maximise F1 exactly)."""
    groups: dict[tuple, Counter[str]] = defaultdict(Counter)
    for ex in examples:
        h, t = ex.head, ex.tail
        groups[_masked(ex.tokens, [(h.start, h.end, "<H>"), (t.start, t.end, "<T>")])][
            ex.relation] += 1
    n = sum(sum(c.values()) for c in groups.values())
    if n == 0:
        raise DataError("no relation instances")
    if metric == "accuracy":
        return sum(c.most_common(1)[0][1] for c in groups.values()) / n
    if metric != "f1":
        raise DataError(f"unknown metric {metric!r}; expected 'accuracy' or 'f1'",
                        field="metric")
    n_gold = sum(v for c in groups.values() for k, v in c.items() if k != "None")
    items = []
    for c in groups.values():
        pos = [(v, k) for k, v in c.items() if k != "None"]
        if pos:
            items.append((max(pos)[0], sum(c.values())))
    return float(best_f1_with_abstention(items, n_gold))


def text_only_ceiling(source: str | Path | Sequence[Example], *, task: str | None = None,
                      split: str = "test", metric: str | None = None) -> float:
    """The best score any text-only predictor can reach on a split (see the module docstring).

    ``source`` is a CoNLL file, an MNRE file, a directory (the output of ``generate``, or
    its ``ner`` / ``re`` folder; ``split`` picks the file), or a list of
    :class:`~mmie.data.schema.Example` (with relations: RE, else NER). ``metric``: entity
    ``f1`` for NER; ``accuracy`` (default) or ``f1`` for RE.
    """
    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_dir():
            if split not in SPLITS:
                raise DataError(f"unknown split {split!r}; expected one of {SPLITS}",
                                field="split")
            ner_f = [p / f"{split}.txt", p / "ner" / f"{split}.txt"]
            re_f = [p / f"mnre_{RE_SPLIT_FILE[split]}.txt",
                    p / "re" / f"mnre_{RE_SPLIT_FILE[split]}.txt"]
            cands = ([] if task == "re" else ner_f) + ([] if task == "ner" else re_f)
            found = [f for f in cands if f.is_file()]
            if not found:
                raise DataError(f"no {split} split found (looked for "
                                f"{', '.join(str(f) for f in cands)})", path=p)
            p = found[0]
        if task is None:
            task = "ner" if sniff_format(p) == "conll" else "re"
        examples: Sequence[Example] = (read_conll(p) if task == "ner" else read_mnre(p)).examples
    else:
        examples = list(source)
        if task is None:
            task = "re" if any(ex.relations for ex in examples) else "ner"
    if task == "ner":
        if metric not in (None, "f1"):
            raise DataError(f"NER has only the 'f1' metric, got {metric!r}", field="metric")
        return ner_text_only_ceiling(examples)
    if task == "re":
        return re_text_only_ceiling(examples, metric=metric or "accuracy")
    raise DataError(f"unknown task {task!r}; expected 'ner' or 're'", field="task")


