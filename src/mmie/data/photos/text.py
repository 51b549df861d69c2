"""The words of the photo benchmark: picture categories, names, templates, relations.

* :data:`CATEGORIES`: the 12 picture categories; each is one zero-shot typing type and maps
  to one coarse NER type (flag / map / building -> LOC, logo -> ORG, person -> PER, fruit,
  vegetable, fish, mammal, bird, vehicle, plant -> MISC).
* :data:`TYPING_TYPES`: the 12 types in three groups of four (rotating seen / validation /
  unseen), each with a one-line description of what its pictures show.
* :data:`NAMES`: ambiguous mention names with the coarse types each really occurs with
  ("Jordan": a person, the country, the Air Jordan brand). A neutral mention's type is drawn
  uniformly from its name's types; a cued mention's type is the cue's.
* :data:`RELATIONS`: MNRE-style relations, a function of the (head, tail) coarse types in
  neutral posts (:func:`relation_of`), forced by the words in cued ones.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COARSE", "CATEGORIES", "TYPING_TYPES", "NAMES", "NER_TEMPLATES", "RE_TEMPLATES",
           "TYPING_TEMPLATES", "RELATIONS", "RELATION_OF_PAIR", "relation_of", "names_with"]

COARSE = ("PER", "LOC", "ORG", "MISC")

#: picture category -> coarse NER type
CATEGORIES: dict[str, str] = {
    "flag": "LOC", "map": "LOC", "building": "LOC", "logo": "ORG", "person": "PER",
    "fruit": "MISC", "vegetable": "MISC", "fish": "MISC", "mammal": "MISC", "bird": "MISC",
    "vehicle": "MISC", "plant": "MISC",
}

_DESCRIPTIONS = {
    "flag": "a national flag: a flat rectangle of bold colour bands, stripes, stars or emblems",
    "logo": "a company or product logo: a flat graphic mark or wordmark on a white background",
    "fruit": "a fruit such as an apple, a mango, a banana, citrus or berries",
    "bird": "a bird with feathers, a beak and wings, such as a parrot, an owl or a duck",
    "map": "a map of a country or region: flat coloured areas separated by borders",
    "person": "a person: a photograph or portrait of a human face",
    "vegetable": "a vegetable: leafy greens, a gourd, beans, a root or a tuber",
    "mammal": "a mammal with fur, such as a cat, a dog, a cow, a horse or a bear",
    "building": "a building or monument seen from outside: towers, walls, domes, columns",
    "fish": "a fish seen from the side, with fins, scales and a tail",
    "vehicle": "a vehicle such as a car, a truck, a train, a ship or an aircraft",
    "plant": "a plant: a flower, a tree or green leaves",
}
_GROUPS = (("flag", "logo", "fruit", "bird"), ("map", "person", "vegetable", "mammal"),
           ("building", "fish", "vehicle", "plant"))

#: The 12 zero-shot typing types (``types.json``): name, description, group 1-3, coarse type.
TYPING_TYPES: list[dict[str, Any]] = [
    {"name": c, "description": _DESCRIPTIONS[c], "group": g + 1, "coarse": CATEGORIES[c]}
    for g, members in enumerate(_GROUPS) for c in members]

_P, _L, _O, _M = "PER", "LOC", "ORG", "MISC"
#: name -> the coarse types it really occurs with (e.g. Lincoln: Abraham Lincoln, the city in
#: Nebraska, the Lincoln Motor Company).
NAMES: dict[str, tuple[str, ...]] = {
    "Jordan": (_P, _L, _O, _M), "Georgia": (_L, _P, _O), "Apple": (_O, _M, _P, _L),
    "Jaguar": (_O, _M, _L), "Amazon": (_O, _L, _M), "Chelsea": (_L, _O, _P),
    "Lincoln": (_P, _L, _O, _M), "Turkey": (_L, _M, _P), "Orange": (_O, _M, _L),
    "Mercury": (_P, _M, _O, _L), "Phoenix": (_L, _P, _M, _O), "Paris": (_L, _P, _O),
    "Washington": (_P, _L, _O), "Victoria": (_P, _L, _O), "Dallas": (_L, _O, _P),
    "Austin": (_L, _P, _O), "Sydney": (_L, _P, _O), "Florence": (_L, _P),
    "Madison": (_P, _L, _O), "Jackson": (_P, _L), "Delta": (_O, _L, _M),
    "Columbia": (_L, _O, _P), "Puma": (_O, _M, _P), "Shell": (_O, _M), "Dove": (_O, _M, _P),
    "Mustang": (_M, _L, _O), "Penguin": (_O, _M), "Fox": (_O, _M, _P), "Kiwi": (_M, _P, _O),
    "Mango": (_O, _M), "Cherry": (_M, _P, _L, _O), "Olive": (_P, _M, _O), "Rose": (_P, _M, _L),
    "Iris": (_P, _M, _O), "Robin": (_P, _M), "Swift": (_P, _M, _O, _L),
    "Falcon": (_M, _O, _P), "Eagle": (_M, _O, _L), "Cardinal": (_M, _O, _P, _L),
    "Raven": (_M, _P, _O, _L), "Bass": (_M, _P, _O), "Salmon": (_M, _L, _P),
    "Panther": (_M, _O, _P), "Ferrari": (_O, _P, _M),
    "Ford": (_O, _P, _M), "Tesla": (_O, _P, _M), "Mercedes": (_O, _P, _M),
    "Porsche": (_O, _P, _M), "Honda": (_O, _P, _M), "Dodge": (_O, _M, _L, _P),
    "Toyota": (_O, _L, _M), "Nokia": (_O, _L), "Virgin": (_O, _L), "Boston": (_L, _O, _P),
    "Havana": (_L, _M, _O), "Champagne": (_L, _M), "Cheddar": (_L, _M),
    "Panama": (_L, _M, _O), "Java": (_L, _M, _O), "Aurora": (_L, _P, _O),
    "Carolina": (_L, _P, _O), "Sierra": (_L, _P, _M, _O), "Houston": (_L, _P, _O),
    "Winston": (_P, _L, _O), "Cleveland": (_L, _P, _O), "Sterling": (_P, _L, _O),
    "Hilton": (_O, _P, _L), "Disney": (_O, _P), "Chanel": (_O, _P), "Mars": (_O, _M, _P),
    "Corona": (_M, _O, _L), "Milan": (_L, _O, _P), "Kenya": (_L, _P),
    "India": (_L, _P), "Brazil": (_L, _M), "Savannah": (_L, _P, _M, _O),
    "Everest": (_L, _P, _O), "Montana": (_L, _P), "Denver": (_L, _P, _O),
}


def names_with(types: tuple[str, ...] | list[str]) -> list[str]:
    """The names whose type set contains every type in ``types`` (in :data:`NAMES` order)."""
    return [n for n, s in NAMES.items() if all(t in s for t in types)]


# Slots are {0} and {1}; a slot's kind is "?" (neutral: the picture decides) or the type the
# words force. Templates are split into words by mmie's tweet-aware splitter.
_N1 = (
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
    "This picture of {0} made my day",
    "{0} , that's it , that's the tweet",
)
NER_TEMPLATES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "n1": [(t, ("?",)) for t in _N1],
    "n2": [(t, ("?", "?")) for t in (
        "{0} and {1} all over my feed today",
        "{0} vs {1} ... who wins ?",
        "Thinking about {0} and {1} tonight 🤔",
        "RT @daily_pics : {0} meets {1} #photo",
        "{0} , {1} and a lot of coffee ☕",
        "Can't decide between {0} and {1} 😅",
        "First {0} , now {1} . What a week",
        "{0} 🤝 {1}",
    )],
    "c1": [
        ("Happy birthday to {0} , she turns 30 today 🎂", (_P,)),
        ("Great interview with coach {0} after the game", (_P,)),
        ("RIP {0} , what a career 🙏", (_P,)),
        ("Actor {0} was spotted at the airport", (_P,)),
        ("Flying to {0} this weekend ✈️", (_L,)),
        ("Live from downtown {0} , the weather is great", (_L,)),
        ("Heavy snow expected in {0} tonight ❄️", (_L,)),
        ("Just landed in {0} 🛬", (_L,)),
        ("Shares of {0} jumped 5.2 % today 📈", (_O,)),
        ("{0} just announced a new CEO", (_O,)),
        ("The CEO of {0} resigned this morning", (_O,)),
        ("Customer service at {0} is a joke 😡", (_O,)),
        ("Bought a {0} at the market this morning 🛒", (_M,)),
        ("Spotted a {0} on my morning walk 🐾", (_M,)),
        ("Is a {0} worth it ? asking for a friend", (_M,)),
        ("Look at the size of this {0} 😮", (_M,)),
    ],
    "cn": [
        ("Coach {0} just mentioned {1} 👀", (_P, "?")),
        ("Shares of {0} moved after news about {1}", (_O, "?")),
        ("{0} spotted in downtown {1} 📍", ("?", _L)),
        ("{0} posted a photo of a {1} 🐾", ("?", _M)),
        ("Flying to {0} to see {1} ✈️", (_L, "?")),
        ("{0} was asked about the CEO of {1}", ("?", _O)),
    ],
}
#: NER post kinds and their weights (of 100 posts).
NER_KIND_WEIGHTS = {"n1": 40, "c1": 25, "n2": 27, "cn": 8}

#: MNRE-style relations and the (head, tail) coarse types they hold between.
RELATION_OF_PAIR: dict[tuple[str, str], str] = {
    (_P, _P): "/per/per/peer", (_P, _L): "/per/loc/place_of_residence",
    (_P, _O): "/per/org/member_of", (_P, _M): "/per/misc/present_in",
    (_O, _L): "/org/loc/locate_at", (_O, _O): "/org/org/subsidiary",
    (_L, _L): "/loc/loc/contain", (_M, _L): "/misc/loc/held_on",
    (_M, _M): "/misc/misc/part_of",
}
RELATIONS: tuple[str, ...] = ("None",) + tuple(RELATION_OF_PAIR.values())


def relation_of(head: str, tail: str) -> str:
    """The relation a neutral post's picture shows for head / tail coarse types."""
    return RELATION_OF_PAIR.get((head, tail), "None")


_PAIR_OF = {v: k for k, v in RELATION_OF_PAIR.items()}
RE_TEMPLATES: dict[str, list[tuple[str, str]]] = {
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
        ("{0} and her teammate {1} after practice", "/per/per/peer"),
        ("{0} , who lives in {1} , posted this", "/per/loc/place_of_residence"),
        ("{0} is moving back home to {1} 🏠", "/per/loc/place_of_residence"),
        ("{0} signs a new contract with {1} ✍️", "/per/org/member_of"),
        ("{0} joins the board of {1}", "/per/org/member_of"),
        ("{0} showing off the {1} she bought 📸", "/per/misc/present_in"),
        ("{0} opens its new headquarters in {1}", "/org/loc/locate_at"),
        ("{0} , a unit of {1} , reports record sales", "/org/org/subsidiary"),
        ("Visiting {1} , a lovely town in {0} 🌄", "/loc/loc/contain"),
        ("The {0} fair is held in {1} every summer", "/misc/loc/held_on"),
        ("The {0} is part of the {1} collection", "/misc/misc/part_of"),
    ],
}
#: RE post kinds and their weights (of 10).
RE_KIND_WEIGHTS = {"neutral": 7, "cued": 3}


def cued_pair(relation: str) -> tuple[str, str]:
    """(head, tail) coarse types a cued relation template forces."""
    return _PAIR_OF[relation]


TYPING_TEMPLATES = _N1 + ("Look at {0} in this picture !", "Morning post about {0} #photo")
