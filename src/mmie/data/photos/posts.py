"""The posts of the photo benchmark: words, labels, subset tags and what each panel shows.

A post's words and labels come from its split's text stream, ``SeedSequence([seed, task,
split, 0])``; which coarse type an *unrelated* (noisy) panel shows comes from stream 2. The
pictures themselves (which category of a coarse type, which pool picture, the augmentation)
are drawn later from stream 1 by the builder, so the texts, labels and splits never depend
on the pool's pixels.

NER post kinds (weights :data:`~mmie.data.photos.text.NER_KIND_WEIGHTS`):

* ``n1`` one neutral mention; the picture shows its type (``picture_decides``);
* ``c1`` one mention whose words decide its type ("Flying to X"), with an unrelated
  picture of another coarse type (``text_decides``, ``noisy_picture``);
* ``n2`` two neutral mentions and a collage: left half for the first mention in the text,
  right half for the second (``picture_decides``, ``two_mentions``, ``collage``);
* ``cn`` a cued and a neutral mention; the cued mention's half is unrelated (all five
  tags: ``picture_decides``, ``text_decides``, ``noisy_picture``, ``two_mentions``,
  ``collage``).

RE: ``neutral`` posts show head and tail in a collage (head / tail halves in text order) and
the relation is :func:`~mmie.data.photos.text.relation_of` the two coarse types;
``cued`` posts' words force the relation and both halves show an unrelated pair (one whose
relation differs). Typing: one neutral mention, its name drawn independently of the type;
the picture is of the mention's fine type, so only the picture tells the type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence


from mmie.data.photos.rand import StableRng, stable_rng
from mmie.data.photos.text import (COARSE, NAMES, NER_KIND_WEIGHTS, NER_TEMPLATES,
                                   RE_KIND_WEIGHTS, RE_TEMPLATES, TYPING_TEMPLATES,
                                   TYPING_TYPES, cued_pair, names_with, relation_of)
from mmie.data.tokenize import fill_template

__all__ = ["Mention", "Post", "gen_ner", "gen_re", "gen_typing", "rng", "TAGS"]

TAGS = ("picture_decides", "text_decides", "noisy_picture", "two_mentions", "collage")
_NAME_LIST = list(NAMES)


def rng(seed: int, task: int, split: int, stream: int) -> StableRng:
    """Stream 0: words and labels; 1: pictures; 2: which type a noisy panel shows (draws
    that are the same with every NumPy version, :mod:`mmie.data.photos.rand`)."""
    return stable_rng(seed, task, split, stream)


@dataclass
class Mention:
    start: int
    end: int
    label: str
    name: str
    cue: str | None
    """the type the words force, or None (neutral: the picture decides)"""

    @property
    def typeset(self) -> tuple[str, ...]:
        return NAMES[self.name]


@dataclass
class Post:
    id: str
    kind: str
    tokens: list[str]
    mentions: list[Mention]
    """in slot order ({0}, {1}); for RE: head, tail"""
    tags: list[str]
    panels: list[tuple[str, str]] = field(default_factory=list)
    """what each panel shows, left to right: ("coarse", T) or ("fine", category)"""
    relation: str | None = None


class _Bag:
    """Draws items in shuffled rounds, so every item comes up equally often."""

    def __init__(self, items: Sequence[Any], g: StableRng):
        self.items, self.g, self.queue = list(items), g, []

    def draw(self) -> Any:
        if not self.queue:
            self.queue = [self.items[i] for i in self.g.permutation(len(self.items))]
        return self.queue.pop()


def _weighted(w: dict[str, int]) -> list[str]:
    return [k for k, n in w.items() for _ in range(n)]


def _pick(g: StableRng, pool: Sequence[str], avoid: Sequence[str] = ()) -> str:
    cands = [n for n in pool if n not in avoid]
    return cands[int(g.integers(len(cands)))]


def _uniform(g: StableRng, items: Sequence[str]) -> str:
    return items[int(g.integers(len(items)))]


def _text_order(spans: Sequence[tuple[int, int]]) -> list[int]:
    return sorted(range(len(spans)), key=lambda k: spans[k][0])


def gen_ner(seed: int, split_index: int, split: str, n: int) -> list[Post]:
    g, noise = rng(seed, 0, split_index, 0), rng(seed, 0, split_index, 2)
    kinds = _Bag(_weighted(NER_KIND_WEIGHTS), g)
    tbags = {k: _Bag(range(len(v)), g) for k, v in NER_TEMPLATES.items()}
    posts = []
    for i in range(n):
        kind = kinds.draw()
        template, slots = NER_TEMPLATES[kind][tbags[kind].draw()]
        names: list[str] = []
        for s in slots:
            names.append(_pick(g, _NAME_LIST if s == "?" else names_with([s]), names))
        labels = [_uniform(g, NAMES[nm]) if s == "?" else s for s, nm in zip(slots, names)]
        tokens, spans = fill_template(template, names)
        ms = [Mention(a, b, lab, nm, None if s == "?" else s)
              for (a, b), lab, nm, s in zip(spans, labels, names, slots)]
        panels = []
        for k in _text_order(spans):
            if ms[k].cue is None:
                panels.append(("coarse", ms[k].label))
            else:  # unrelated: another coarse type than the mention's
                panels.append(("coarse", _uniform(noise, [t for t in COARSE
                                                          if t != ms[k].label])))
        tags = set()
        if any(m.cue is None for m in ms):
            tags.add("picture_decides")
        if any(m.cue is not None for m in ms):
            tags |= {"text_decides", "noisy_picture"}
        if len(ms) == 2:
            tags |= {"two_mentions", "collage"}
        posts.append(Post(f"pner_{split}_{i:05d}", kind, tokens, ms,
                          [t for t in TAGS if t in tags], panels))
    return posts


def gen_re(seed: int, split_index: int, split: str, n: int) -> list[Post]:
    g, noise = rng(seed, 1, split_index, 0), rng(seed, 1, split_index, 2)
    kinds = _Bag(_weighted(RE_KIND_WEIGHTS), g)
    tbags = {k: _Bag(range(len(v)), g) for k, v in RE_TEMPLATES.items()}
    pairs = [(a, b) for a in COARSE for b in COARSE]
    posts = []
    for i in range(n):
        kind = kinds.draw()
        template, rel = RE_TEMPLATES[kind][tbags[kind].draw()]
        if rel == "?":
            h = _pick(g, _NAME_LIST)
            t = _pick(g, _NAME_LIST, [h])
            th, tt = _uniform(g, NAMES[h]), _uniform(g, NAMES[t])
            rel = relation_of(th, tt)
            cue = None
            shown = (th, tt)
        else:
            th, tt = cued_pair(rel)
            h = _pick(g, names_with([th]))
            t = _pick(g, names_with([tt]), [h])
            cue = rel
            others = [p for p in pairs if relation_of(*p) != rel]
            shown = others[int(noise.integers(len(others)))]
        tokens, spans = fill_template(template, [h, t])
        ms = [Mention(*spans[0], th, h, None if cue is None else th),
              Mention(*spans[1], tt, t, None if cue is None else tt)]
        panels = [("coarse", shown[k]) for k in _text_order(spans)]
        tags = (["picture_decides"] if cue is None else ["text_decides", "noisy_picture"])
        tags += ["two_mentions", "collage"]
        posts.append(Post(f"pre_{split}_{i:05d}", kind, tokens, ms,
                          [x for x in TAGS if x in tags], panels, relation=rel))
    return posts


def gen_typing(seed: int, split_index: int, split: str, n: int) -> list[Post]:
    g = rng(seed, 2, split_index, 0)
    types = _Bag([t["name"] for t in TYPING_TYPES], g)
    tbag = _Bag(range(len(TYPING_TEMPLATES)), g)
    posts = []
    for i in range(n):
        fine = types.draw()
        name = _pick(g, _NAME_LIST)  # independent of the type: the words say nothing
        tokens, [(s, e)] = fill_template(TYPING_TEMPLATES[tbag.draw()], [name])
        posts.append(Post(f"ptyp_{split}_{i:05d}", "typing", tokens,
                          [Mention(s, e, fine, name, None)], ["picture_decides"],
                          [("fine", fine)]))
    return posts
