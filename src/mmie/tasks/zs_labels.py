"""Zero-shot label sets: the seen / validation / unseen split of the labels, and the texts
labels are embedded from.

Labels, not examples, are split: every instance of a label goes with its label.

* Relations (MNRE without ``None``: 22 relations): :func:`split_relations` shuffles the sorted
  unique labels with ``random.Random(seed)`` and cuts 8 seen (train) / 7 validation / 7 unseen
  (test). Some relations have only 7 to 12 instances, so results need several seeds (at
  least 5).
* Entity types (the WikiDiverse-derived set, 12 types in three fixed groups of 4):
  :func:`typing_fold` rotates the groups, fold ``f`` = seen ``G[f]``, val ``G[f+1]``, unseen
  ``G[f+2]`` (mod 3): fold 0 = G1/G2/G3, fold 1 = G2/G3/G1, fold 2 = G3/G1/G2.
* Twitter NER types (4 types): :func:`leave_one_type_out` trains on the other types and scores
  over all 4 candidates (generalised zero-shot); the held-out type is the test label only.
  Model selection never sees its labels: by default it uses the dev posts of the seen types;
  with a ``validation`` type, that type is held out of training as well and validated on
  (which also lets calibrated stacking choose its constant,
  :func:`mmie.tasks.zs.choose_calibration`).

Label texts are inputs (the text encoder reads them), loaded from JSON resources shipped in
``mmie/resources`` (:func:`load_label_resource`) or a user's file; :func:`label_split` builds
a run's split and label texts from its config. The zero-shot task itself is
:mod:`mmie.tasks.zs`, its metrics :mod:`mmie.metrics.zeroshot`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from mmie.data import catalog
from mmie.data.paths import synthetic_dir
from mmie.errors import ConfigError, DataError

if TYPE_CHECKING:  # typing only
    from mmie.config import RunConfig
    from mmie.data.schema import Example

#: the dataset's negative relation, never a zero-shot label
NONE_LABEL = "None"
PARTS = ("train", "val", "test")
LABEL_TEXT_FIELDS = ("name", "description", "name+description")


@dataclass(frozen=True)
class ZeroShotSplit:
    """Seen (train), validation and unseen (test) labels.

    ``generalized``: evaluation scores over seen + evaluated labels (generalised zero-shot),
    not over the evaluated labels alone.
    """

    seen: tuple[str, ...]
    val: tuple[str, ...]
    unseen: tuple[str, ...]
    generalized: bool = False

    def labels(self, part: str) -> tuple[str, ...]:
        """The gold labels of a data part: ``train`` -> seen, ``val`` -> val, ``test`` -> unseen."""
        _check_part(part)
        return {"train": self.seen, "val": self.val, "test": self.unseen}[part]

    def candidates(self, part: str) -> tuple[str, ...]:
        """The labels a model scores over for ``part``: the part's own labels; for val / test
        when ``generalized``, every label (seen, validation and unseen; order kept)."""
        own = self.labels(part)
        if part == "train" or not self.generalized:
            return own
        return self.all_labels

    def gold_labels(self, part: str) -> tuple[str, ...]:
        """The gold labels whose instances a part holds: ``labels(part)``; when
        ``generalized``, also the seen labels for val and test (validation never holds an
        unseen label)."""
        own = self.labels(part)
        if part == "train" or not self.generalized:
            return own
        return tuple(dict.fromkeys(self.seen + own))

    @property
    def all_labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.seen + self.val + self.unseen))

    def to_dict(self) -> dict[str, Any]:
        return {"seen": list(self.seen), "val": list(self.val), "unseen": list(self.unseen),
                "generalized": self.generalized}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ZeroShotSplit":
        try:
            return cls(tuple(d["seen"]), tuple(d["val"]), tuple(d["unseen"]),
                       bool(d.get("generalized", False)))
        except KeyError as e:
            raise ConfigError(f"zero-shot split: missing key {e.args[0]!r} "
                              "(expected seen, val, unseen)") from None


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ConfigError(f"unknown data part {part!r}; expected one of {', '.join(PARTS)}")


# ---------------------------------------------------------------------------------------------
# splits
def split_relations(labels: Iterable[str], seed: int, n_seen: int = 8, n_val: int = 7,
                    n_unseen: int = 7, exclude: Sequence[str] = (NONE_LABEL,)) -> ZeroShotSplit:
    """Shuffle the sorted unique ``labels`` (minus ``exclude``) with ``random.Random(seed)``
    and cut them into ``n_seen`` / ``n_val`` / ``n_unseen``; each part is returned sorted.

    ``labels`` may repeat (e.g. one entry per instance). The three sizes must add up to the
    number of labels, so that no label is silently dropped.
    """
    pool = sorted(set(labels) - set(exclude))
    if min(n_seen, n_val, n_unseen) < 1:
        raise ConfigError(f"zero-shot split sizes must be >= 1, got seen={n_seen}, "
                          f"val={n_val}, unseen={n_unseen}")
    if n_seen + n_val + n_unseen != len(pool):
        raise ConfigError(f"zero-shot split sizes seen={n_seen} + val={n_val} + "
                          f"unseen={n_unseen} = {n_seen + n_val + n_unseen}, but there are "
                          f"{len(pool)} labels (excluding {list(exclude)})")
    random.Random(seed).shuffle(pool)
    seen = tuple(sorted(pool[:n_seen]))
    val = tuple(sorted(pool[n_seen:n_seen + n_val]))
    unseen = tuple(sorted(pool[n_seen + n_val:]))
    return ZeroShotSplit(seen, val, unseen)


def typing_fold(fold: int, groups: Mapping[str, Sequence[str]] | Sequence[Sequence[str]]
                | None = None) -> ZeroShotSplit:
    """Fold ``fold`` (0, 1, 2) of the rotating three-group entity-typing protocol.

    ``groups``: three label groups, as a sequence or a mapping in order (default: G1, G2, G3
    of ``wikidiverse_types.json``). Fold ``f``: seen ``G[f]``, val ``G[(f+1) % 3]``,
    unseen ``G[(f+2) % 3]``.
    """
    if groups is None:
        groups = load_label_resource("wikidiverse_types").groups
    seq = [tuple(g) for g in (groups.values() if isinstance(groups, Mapping) else groups)]
    if len(seq) != 3:
        raise ConfigError(f"typing_fold needs exactly 3 label groups, got {len(seq)}")
    flat = [l for g in seq for l in g]
    if len(set(flat)) != len(flat):
        dup = sorted(l for l, c in Counter(flat).items() if c > 1)
        raise ConfigError(f"typing_fold: labels in more than one group: {dup}")
    if fold not in (0, 1, 2):
        raise ConfigError(f"typing fold must be 0, 1 or 2, got {fold!r}")
    return ZeroShotSplit(seq[fold], seq[(fold + 1) % 3], seq[(fold + 2) % 3])


def leave_one_type_out(types: Sequence[str], held_out: str,
                       validation: str | None = None) -> ZeroShotSplit:
    """Generalised zero-shot over a small type set (Twitter's 4 types): test on ``held_out``
    while scoring over all types; its labels are never used before the test.

    ``validation=None``: train on every other type; validation = the dev posts of those seen
    types (``val`` is empty). ``validation=V``: ``V`` is held out of training too and is the
    validation label (seen types = the remaining ones).
    """
    types = tuple(dict.fromkeys(types))
    if held_out not in types:
        raise ConfigError(f"held-out type {held_out!r} is not one of {list(types)}")
    if validation is not None and (validation not in types or validation == held_out):
        raise ConfigError(f"validation type {validation!r} must be one of {list(types)} other "
                          f"than the held-out type {held_out!r}")
    val = (validation,) if validation is not None else ()
    seen = tuple(t for t in types if t != held_out and t not in val)
    return ZeroShotSplit(seen, val, (held_out,), generalized=True)


def class_balanced_weights(example_labels: Sequence[str]) -> list[float]:
    """Per-example sampling weights ``1 / count(label)`` (for class-balanced sampling over the
    seen labels, e.g. with ``torch.utils.data.WeightedRandomSampler``)."""
    counts = Counter(example_labels)
    return [1.0 / counts[l] for l in example_labels]


# ---------------------------------------------------------------------------------------------
# label texts
@dataclass(frozen=True)
class LabelResource:
    """A label-text resource: ``labels[label] = {"name": ..., "description": ...}``, and the
    label groups when the resource defines them."""

    labels: dict[str, dict[str, str]]
    groups: dict[str, tuple[str, ...]]
    path: str

    def text(self, label: str, field: str = "name") -> str:
        """The text the label encoder reads: ``name``, ``description`` or
        ``name+description`` (``"name: description"``)."""
        if field not in LABEL_TEXT_FIELDS:
            raise ConfigError(f"label text field {field!r}; expected one of "
                              f"{', '.join(LABEL_TEXT_FIELDS)}")
        try:
            entry = self.labels[label]
        except KeyError:
            raise DataError(f"label {label!r} has no text in this resource "
                            f"(it has {len(self.labels)} labels)", path=self.path,
                            field="labels") from None
        if field == "name+description":
            return f"{entry['name']}: {entry['description']}"
        return entry[field]

    def texts(self, labels: Iterable[str], field: str = "name") -> list[str]:
        return [self.text(l, field) for l in labels]


def _resolve(path_or_resource: str | Path) -> tuple[str, str]:
    """``(text, where)`` of a file path or a resource name shipped in ``mmie/resources``
    (``"mnre_relations"`` or ``"mnre_relations.json"``)."""
    p = Path(path_or_resource)
    if p.is_file():
        return p.read_text(encoding="utf-8"), str(p)
    name = str(path_or_resource)
    if "/" not in name and "\\" not in name:
        fname = name if name.endswith(".json") else name + ".json"
        res = resources.files("mmie").joinpath("resources", fname)
        if res.is_file():
            return res.read_text(encoding="utf-8"), str(res)
    shipped = sorted(r.name.removesuffix(".json")
                     for r in resources.files("mmie").joinpath("resources").iterdir()
                     if r.name.endswith(".json"))
    raise DataError(f"no such label file or resource; shipped resources: {shipped}",
                    path=str(path_or_resource))


def load_label_resource(path_or_resource: str | Path) -> LabelResource:
    """Read a label-text JSON: ``{"labels": {label: {"name": str, "description": str}},
    "groups": {group: [label, ...]}?}``. A bare label value that is a string is taken as both
    name and description."""
    text, where = _resolve(path_or_resource)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", path=where, line=e.lineno) from None
    if isinstance(data, list):  # [{"name", "description", "group"}, ...] (synthetic types.json)
        conv: dict[str, Any] = {"labels": {}, "groups": {}}
        for i, item in enumerate(data):
            if not isinstance(item, dict) or "name" not in item:
                raise DataError(f"item {i}: expected an object with 'name' and 'description'",
                                path=where, field="labels")
            conv["labels"][item["name"]] = {"name": item["name"],
                                            "description": item.get("description", item["name"])}
            if "group" in item:
                conv["groups"].setdefault(f"G{item['group']}", []).append(item["name"])
        data = conv
    if not isinstance(data, dict) or not isinstance(data.get("labels"), dict):
        raise DataError("expected an object with a 'labels' object", path=where, field="labels")
    labels: dict[str, dict[str, str]] = {}
    for label, entry in data["labels"].items():
        if isinstance(entry, str):
            entry = {"name": entry, "description": entry}
        if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) and entry[k].strip() for k in ("name", "description")):
            raise DataError("each label needs non-empty string 'name' and 'description'",
                            path=where, field=f"labels.{label}")
        labels[label] = {"name": entry["name"], "description": entry["description"]}
    groups: dict[str, tuple[str, ...]] = {}
    for g, members in (data.get("groups") or {}).items():
        if not isinstance(members, list):
            raise DataError("a group must be a list of labels", path=where, field=f"groups.{g}")
        missing = [m for m in members if m not in labels]
        if missing:
            raise DataError(f"group members without a label entry: {missing}", path=where,
                            field=f"groups.{g}")
        groups[g] = tuple(members)
    return LabelResource(labels=labels, groups=groups, path=where)


def load_label_descriptions(path_or_resource: str | Path,
                            field: str = "description") -> dict[str, str]:
    """``{label: text}`` from a label resource; ``field`` as in :meth:`LabelResource.text`."""
    res = load_label_resource(path_or_resource)
    return {label: res.text(label, field) for label in res.labels}


# ---------------------------------------------------------------------------------------------
# a run's label split and texts
TWITTER_TYPES = {
    "PER": ("person", "a named person, real or fictional"),
    "LOC": ("location", "a named place such as a city, country, region or landmark"),
    "ORG": ("organization", "a named company, team, institution, band or other organization"),
    "OTHER": ("miscellaneous", "another named thing: an event, product, work or nationality"),
    "MISC": ("miscellaneous", "another named thing: an event, product, work or nationality"),
}


def twitter_type_text(label: str, field: str = "name+description") -> str:
    """The built-in text of a Twitter NER type (``TWITTER_TYPES``) for a label-text field."""
    name, desc = TWITTER_TYPES.get(label, (label.lower(), label.lower()))
    return {"name": name, "description": desc}.get(field, f"{name}: {desc}")


def relation_name(label: str) -> str:
    """``/per/loc/place_of_residence`` -> ``place of residence`` (a label without a text)."""
    return label.rstrip("/").split("/")[-1].replace("_", " ")


def default_resource(cfg: "RunConfig", kind: str) -> str:
    """The label-text resource of a run without ``data.label_descriptions``: the generated
    synthetic set's own file, the photo benchmark's ``types.json``, else the shipped MNRE
    relations / WikiDiverse types."""
    if cfg.data.name == "synthetic":
        folder = synthetic_dir(cfg.data.synthetic_size, cfg.cache_dir)
        return str(folder / ("typing/types.json" if kind == "typing" else "re/relations.json"))
    if kind == "typing" and cfg.data.name == "photos_typing":  # its own label file
        return str(catalog.data_dir(cfg.data.data_dir) / "photos_typing" / "types.json")
    return "mnre_relations" if kind == "re" else "wikidiverse_types"


def label_split(kind: str, cfg: "RunConfig", splits: dict[str, list["Example"]]
                ) -> tuple[ZeroShotSplit, dict[str, str]]:
    """The label split and label texts of a run (``kind``: ``zs_re`` or ``typing``) over the
    labels found in every split of the data; texts are the ``data.label_text`` field.

    * ``zs_re``: the MNRE relation folds (``data.zero_shot_seed``), 8/22 of the labels seen
      and the rest halved into validation and unseen.
    * ``typing`` with ``data.held_out_type``: leave-one-type-out over the data's types
      (``data.validation_type`` held out of training too, for validation).
    * ``typing`` otherwise: fold ``data.zero_shot_fold`` of the three label groups of the
      label resource.
    """
    every = [e for s in ("train", "dev", "test") for e in splits.get(s, [])]
    field = cfg.data.label_text
    if kind == "zs_re":
        labels = sorted({ex.relation for ex in every} - {NONE_LABEL})
        n = len(labels)
        n_seen = max(1, round(n * 8 / 22))
        n_val = max(1, (n - n_seen) // 2)
        split = split_relations(labels, cfg.data.zero_shot_seed, n_seen=n_seen, n_val=n_val,
                                n_unseen=n - n_seen - n_val)
        res = load_label_resource(cfg.data.label_descriptions or "mnre_relations")
        texts = {l: (res.text(l, field) if l in res.labels else relation_name(l))
                 for l in split.all_labels}
        return split, texts
    types = sorted({s.label for ex in every for s in ex.entities})
    if cfg.data.held_out_type:
        for key, value in (("held_out_type", cfg.data.held_out_type),
                           ("validation_type", cfg.data.validation_type)):
            if value is not None and value not in types:
                raise ConfigError(f"data.{key}={value!r} is not one of the data's types "
                                  f"{types}")
        split = leave_one_type_out(types, cfg.data.held_out_type, cfg.data.validation_type)
        resource = cfg.data.label_descriptions or (
            default_resource(cfg, "typing") if cfg.data.name == "synthetic" else None)
        if resource:
            res = load_label_resource(resource)
            return split, {t: res.text(t, field) for t in types}
        return split, {t: twitter_type_text(t, field) for t in types}
    res = load_label_resource(cfg.data.label_descriptions or default_resource(cfg, "typing"))
    if len(res.groups) != 3:
        raise ConfigError(f"{res.path}: entity typing needs three label groups")
    split = typing_fold(cfg.data.zero_shot_fold, res.groups)
    return split, {l: res.text(l, field) for l in split.all_labels}
