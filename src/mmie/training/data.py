"""From a run config to batches: read the splits, turn them into the task's instances, attach
cached image features, collate. :class:`MMIEDataModule` is that path, shared by training,
evaluation and the plots.

Image features of a frozen vision encoder are computed once per image (content hash +
encoder identity) by :class:`mmie.encoders.cache.FeatureCache`; every training run after the
first reads them from disk. Missing or broken images follow ``data.image_policy`` and are
counted in the returned report (never silently replaced).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from mmie import registry
from mmie.config import RunConfig
from mmie.data import catalog, paths
from mmie.data.images import ImageLoader, blank_image
from mmie.data.schema import Example
from mmie.encoders.cache import FeatureCache
from mmie.encoders.regions import training_object_features
from mmie.encoders.token_cache import TokenCache
from mmie.encoders.vision import pool_regions
from mmie.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLIT_ALIASES = {"train": ("train",), "dev": ("dev", "valid", "val"), "test": ("test",)}


def canonical_split(split: str) -> str:
    """``valid`` / ``val`` -> ``dev``; other names unchanged."""
    return next((k for k, v in SPLIT_ALIASES.items() if split in v), split)


def default_cache_dir(cfg: RunConfig | None = None) -> Path:
    return paths.default_cache_dir(cfg.cache_dir if cfg is not None else None)


def synthetic_dir(cfg: RunConfig) -> Path:
    return paths.synthetic_dir(cfg.data.synthetic_size, cfg.cache_dir)


def dataset_source(cfg: RunConfig) -> tuple[str, Path | None]:
    """The catalog name (or file directory) and data dir to read this run's task from."""
    name = cfg.data.name
    if name == "synthetic":
        return "synthetic", synthetic_dir(cfg)
    return name, Path(cfg.data.data_dir) if cfg.data.data_dir else None


def read_task(cfg: RunConfig) -> str | None:
    """Which files of a multi-task data set to read (only the synthetic set has several);
    entity typing on Twitter reads the NER files and types their mentions."""
    return cfg.model.task if cfg.data.name == "synthetic" else None


def load_examples(cfg: RunConfig, split: str) -> list[Example]:
    name, data_dir = dataset_source(cfg)
    last: Exception | None = None
    for alias in SPLIT_ALIASES.get(split, (split,)):
        try:
            res = catalog.load_split(name, alias, data_dir=data_dir, task=read_task(cfg))
        except KeyError as e:  # split not known under this alias
            last = e
            continue
        exs = res.examples
        limit = cfg.data.limit_train if split == "train" else cfg.data.limit_eval
        return exs[:limit] if limit else exs
    raise ConfigError(f"data set {name!r} has no split {split!r} ({last})")


def image_dir_for(cfg: RunConfig, split: str) -> Path | None:
    if cfg.data.image_dir:
        return Path(cfg.data.image_dir)
    name, data_dir = dataset_source(cfg)
    return catalog.image_dir(name, split, data_dir=data_dir, task=read_task(cfg))


@dataclass
class ImageFeatures:
    """Per-example rows into stacked features.

    ``blank_row``: the row of the grey picture that stands in for a missing or broken image
    (``data.image_policy=blank``, or an example without an image reference), ``None`` when
    no example needed it. Examples on that row are *absent* (``image_present`` False): they
    take part in no image term, not merely masked in attention.
    """

    glob: torch.Tensor
    regions: torch.Tensor | None
    rows: dict[str, list[int]] = field(default_factory=dict)
    blank_row: int | None = None
    #: data.regions=objects/both: crop features [N, K, D], boxes [N, K, 4], mask [N, K]
    objects: dict[str, torch.Tensor] | None = None

    def present(self, rows: torch.Tensor) -> torch.Tensor:
        """``image_present`` ``[B]`` for feature rows ``[B]``: False on the blank row."""
        if self.blank_row is None:
            return torch.ones(rows.shape, dtype=torch.bool)
        return rows != self.blank_row



def feature_device(cfg: RunConfig) -> str | None:
    """Where a training run computes missing picture features: this rank's GPU when the run
    trains on one (the cache is built before Lightning moves the model), else ``None`` (where
    the encoder is). Never on the GPU for ``accelerator=cpu``, and never for fork-based
    strategies (CUDA must not start before the fork)."""
    acc, strategy = str(cfg.trainer.accelerator), str(cfg.trainer.strategy)
    if acc not in ("auto", "gpu", "cuda") or "fork" in strategy or "notebook" in strategy:
        return None
    if not torch.cuda.is_available():
        return None
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"


def compute_image_features(cfg: RunConfig, vision, splits: dict[str, list[Example]],
                           report: dict[str, Any]) -> tuple[ImageFeatures, dict]:
    """Load every split's images under the policy, encode them through the feature cache,
    and drop examples whose image is skipped. Returns features and the kept examples."""
    cache = FeatureCache(default_cache_dir(cfg) / "features", vision,
                         compute_device=feature_device(cfg))
    keys: list[tuple[str, Any]] = []
    key_row: dict[str, int] = {}
    kept: dict[str, list[Example]] = {}
    rows: dict[str, list[int]] = {}
    counts: dict[str, dict[str, int]] = {}
    for split, exs in splits.items():
        loader = ImageLoader(image_dir_for(cfg, split), policy=cfg.data.image_policy)
        kept[split], rows[split] = [], []
        for ex in exs:
            if ex.image is None:
                if cfg.data.image_policy == "error":
                    raise DataError(f"example {ex.id!r} has no image reference; choose "
                                    "data.image_policy=skip or blank to go on without it")
                if cfg.data.image_policy == "skip":
                    continue
            blanks_before = loader.counts.get("blank", 0)
            img = loader.load(ex.image, example_id=ex.id) if ex.image is not None else None
            if img is None and cfg.data.image_policy == "skip":
                continue
            if img is None:
                img = blank_image()
                loader.counts["blank"] = loader.counts.get("blank", 0) + 1
            # identical pictures (every blank image) share one cache entry and one row
            is_blank = loader.counts.get("blank", 0) > blanks_before
            k = "blank" if is_blank else f"{split}/{ex.image}"
            if k not in key_row:
                key_row[k] = len(keys)
                keys.append((k, img))
            kept[split].append(ex)
            rows[split].append(key_row[k])
        counts[split] = dict(loader.counts)
        if loader.counts.get("blank") or loader.counts.get("skipped"):
            # the user chose the policy; say what it did, where a default run shows it
            log.warning("%s split: %s", split, loader.report())
    report["images"] = counts
    glob, regions = cache.get_or_compute(keys)
    report["feature_cache"] = {"hits": cache.hits, "misses": cache.misses}
    regions = pool_regions(regions.float(), cfg.model.region_grid)
    objects = training_object_features(cfg, vision, keys, default_cache_dir(cfg), report,
                                       compute_device=feature_device(cfg))
    if cfg.data.regions == "objects":
        regions = None
    return ImageFeatures(glob.float(), regions, rows, objects=objects,
                         blank_row=key_row.get("blank")), kept


class ExampleDataset(Dataset):
    def __init__(self, examples: list[Example], rows: list[int] | None = None):
        self.examples = examples
        self.rows = rows

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[int, Example, int]:
        return i, self.examples[i], (self.rows[i] if self.rows is not None else -1)


class Collator:
    """Picklable collate function: task batching + cached image rows + example indices.

    ``cache_tokens``: tokenise each post once (:class:`mmie.encoders.token_cache.TokenCache`;
    identical tensors) -- for loaders that see the same posts every epoch. Each DataLoader
    worker fills its own cache, so use it with ``persistent_workers`` (as :func:`make_loader`
    does)."""

    def __init__(self, task, text_encoder, max_length: int, features: ImageFeatures | None,
                 phase: str = "train", cache_tokens: bool = False):
        self.task = task
        self.phase = phase
        if cache_tokens:
            text_encoder = TokenCache(text_encoder)
        self.text_encoder = text_encoder
        self.max_length = max_length
        self.features = features

    def __call__(self, items):
        idx = [i for i, _, _ in items]
        exs = [e for _, e, _ in items]
        batch = self.task.collate(exs, self.text_encoder, self.max_length, phase=self.phase)
        batch["index"] = torch.tensor(idx, dtype=torch.long)
        if self.features is not None:
            rows = torch.tensor([r for _, _, r in items], dtype=torch.long)
            batch["image_global"] = self.features.glob[rows]
            if self.features.regions is not None:
                batch["image_regions"] = self.features.regions[rows]
            for k, v in (self.features.objects or {}).items():
                batch[k] = v[rows]
            batch["image_present"] = self.features.present(rows)
        return batch


def _dist_info() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ResumableSampler(Sampler[int]):
    """Epoch-seeded, rank-sharded sampler that can resume in the middle of an epoch.

    The order of epoch ``e`` is a function of ``(seed, e)`` only (a fresh ``torch.Generator``
    seeded ``seed + e``), so it is the same before and after a crash. Under DDP the order is
    padded, like :class:`torch.utils.data.DistributedSampler`, to a multiple of the world size
    by repeating its first indices, and rank ``r`` takes every ``world``-th index from ``r``;
    evaluation drops those duplicates again by example index. The rank and world size are
    read when iterating (the process group does not exist yet when loaders are built).
    ``skip`` drops the first indices of this rank's share once (mid-epoch resume).

    Length grouping (less padding, same examples): without shuffling and with ``lengths``,
    examples go longest first (evaluation; predictions are put back in order by example
    index, so scores do not change). With shuffling and ``bucket_batches`` > 0, the shuffled
    order is cut into windows of ``bucket_batches`` global batches, each window sorted by
    length and cut into batches, and the batches shuffled -- still a function of
    ``(seed, epoch)`` only, so resume stays exact.
    """

    def __init__(self, n: int, shuffle: bool, seed: int = 0, lengths: list[int] | None = None,
                 batch_size: int = 1, bucket_batches: int = 0,
                 weights: list[float] | None = None):
        self.n = n
        if weights is not None and len(weights) != n:
            raise ValueError(f"weights has {len(weights)} entries for {n} examples")
        #: with shuffling: an epoch is ``n`` draws with replacement, probability ~ weight
        #: (class-balanced sampling), still a function of ``(seed, epoch)`` only
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.skip = 0
        if lengths is not None and len(lengths) != n:
            raise ValueError(f"lengths has {len(lengths)} entries for {n} examples")
        self.lengths = lengths
        self.batch_size = batch_size
        self.bucket_batches = bucket_batches

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        _, world = _dist_info()
        return -(-self.n // world)

    def indices(self) -> list[int]:
        """This rank's full share of the current epoch (nothing skipped)."""
        rank, world = _dist_info()
        lengths = self.lengths
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            if self.weights is not None:
                order = torch.multinomial(self.weights, self.n, replacement=True,
                                          generator=g).tolist()
            else:
                order = torch.randperm(self.n, generator=g).tolist()
            if lengths is not None and self.bucket_batches > 0:
                step = self.batch_size * world
                window = step * self.bucket_batches
                batches = []
                for c in range(0, len(order), window):
                    part = sorted(order[c:c + window], key=lambda i: -lengths[i])
                    batches += [part[k:k + step] for k in range(0, len(part), step)]
                # a short last batch stays last: shuffled into the middle it would shift every
                # later batch boundary across two length buckets
                tail = batches.pop() if batches and len(batches[-1]) < step else []
                perm = torch.randperm(len(batches), generator=g).tolist()
                order = [i for p in perm for i in batches[p]] + tail
        elif lengths is not None:
            order = sorted(range(self.n), key=lambda i: -lengths[i])
        else:
            order = list(range(self.n))
        total = -(-self.n // world) * world
        if total > len(order) and order:
            order = order + (order * (total // len(order) + 1))[:total - len(order)]
        return order[rank:total:world]

    def __iter__(self):
        skip, self.skip = self.skip, 0
        return iter(self.indices()[skip:])


class ResumableLoader(DataLoader):
    """A :class:`DataLoader` over a :class:`ResumableSampler` that Lightning checkpoints.

    Lightning stores ``state_dict()`` (epoch and batches handed out so far this epoch) in
    every checkpoint and calls ``load_state_dict`` before iterating again after a restart;
    the next iteration of the same epoch then skips the batches already trained on. The
    count is of batches delivered to the training loop, so worker prefetching does not
    disturb it.
    """

    def __init__(self, dataset, sampler: ResumableSampler, **kw):
        kw.setdefault("generator", torch.Generator())
        super().__init__(dataset, sampler=sampler, **kw)
        self._delivered = 0
        self._resume: dict[str, int] | None = None

    def __iter__(self):
        # lazy: Lightning calls iter() before set_epoch(); the epoch is read at the first next()
        return self._batches()

    def _batches(self):
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        start = 0
        if self._resume is not None and self._resume["epoch"] == sampler.epoch:
            start = self._resume["batches"]
            sampler.skip = start * (self.batch_size or 1)
        self._resume = None
        self._delivered = start
        # own generator for the workers' base seed: iterating never draws from the global RNG
        self.generator.manual_seed(sampler.seed * 100_003 + sampler.epoch)
        for batch in super().__iter__():
            self._delivered += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches": self._delivered}  # type: ignore[attr-defined]

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}


def make_loader(dataset: ExampleDataset, collate: Collator, batch_size: int, shuffle: bool,
                num_workers: int = 0, seed: int = 0, group_by_length: bool = False,
                bucket_batches: int = 0, pin_memory: bool = False,
                weights: list[float] | None = None) -> ResumableLoader:
    """A resumable, DDP-aware loader; the shuffle order depends on ``(seed, epoch)`` only.
    ``group_by_length``: evaluation longest-first, and (with ``bucket_batches``) length-bucketed
    training batches; ``weights``: weighted sampling with replacement (class-balanced
    zero-shot training); see :class:`ResumableSampler`. ``num_workers`` > 0 builds batches in
    persistent worker processes (off the training loop's critical path; their token caches
    survive the epoch); ``pin_memory`` (for a CUDA device) lets the host-to-device copies of
    the batches run asynchronously (Lightning moves batches with ``non_blocking=True``)."""
    lengths = [len(ex.tokens) for ex in dataset.examples] if group_by_length else None
    sampler = ResumableSampler(len(dataset), shuffle, seed, lengths=lengths,
                               batch_size=batch_size, bucket_batches=bucket_batches,
                               weights=weights if shuffle else None)
    extra: dict[str, Any] = {"persistent_workers": True, "prefetch_factor": 4} if num_workers else {}
    return ResumableLoader(dataset, sampler, batch_size=batch_size, collate_fn=collate,
                           num_workers=num_workers, pin_memory=pin_memory, **extra)


def count_truncated(text_encoder, examples: list[Example], max_length: int,
                    chunk: int = 512) -> int:
    """How many posts do not fit in ``max_length`` sub-tokens (reported, never silent)."""
    n = 0
    for i in range(0, len(examples), chunk):
        enc = text_encoder.encode_words([e.tokens for e in examples[i:i + chunk]], max_length,
                                        warn=False)
        n += enc.n_truncated
    return n


class MMIEDataModule(L.LightningDataModule):
    """Examples -> the task's instances -> image features (through the feature cache) ->
    loaders: the one data path of training, evaluation and the plots.

    Args:
        cfg: the run config (data set, image policy, lengths, batch sizes, seed).
        text_encoder: batches are tokenised with it.
        vision_encoder: image features are computed (or read from the cache) with it;
            ``None`` for models that read no image.
        task: the task of a saved model; ``None`` builds a new one from the data
            (:func:`mmie.registry.new_task`, training).
        splits: the splits to serve (``valid`` / ``val`` are ``dev``). Zero-shot tasks read
            every split, as their instances are partitioned by label over all of them.
        count_truncation: count the posts longer than ``data.max_length`` (training reports
            it).
        limit: keep only the first ``limit`` instances of each split (after the task's
            partition).
        cache_tokens: tokenise each post once (loaders that see the same posts every epoch;
            see :class:`Collator`).
        pin_memory: pinned host memory for the batches (training on a CUDA device).
        check_examples: called with the examples as read (split -> examples), before the
            task partitions them and before any picture is read (e.g. evaluation's check that
            the data fits the saved model's task).

    :meth:`setup` does the work once; afterwards ``examples[split]`` holds the instances,
    ``task`` the task and ``report`` what was read, kept and cached.
    """

    def __init__(self, cfg: RunConfig, text_encoder, vision_encoder=None, task=None, *,
                 splits: tuple[str, ...] = ("train", "dev", "test"),
                 count_truncation: bool = False, limit: int | None = None,
                 cache_tokens: bool = False, pin_memory: bool = False,
                 check_examples: Callable[[dict[str, list[Example]]], None] | None = None):
        super().__init__()
        self.cfg = cfg
        self.text_encoder = text_encoder
        self.vision_encoder = vision_encoder
        self.task = task
        self.splits = tuple(dict.fromkeys(canonical_split(s) for s in splits))
        self.count_truncation = count_truncation
        self.limit = limit
        self.cache_tokens = cache_tokens
        self.pin_memory = pin_memory
        self.check_examples = check_examples
        self.examples: dict[str, list[Example]] = {}
        self.rows: dict[str, list[int] | None] = {}
        self.features: ImageFeatures | None = None
        self.report: dict[str, Any] = {}
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        if self._ready:  # Lightning calls setup for fit, validate and test alike
            return
        cfg = self.cfg
        zero_shot = (registry.TASK_TYPES[registry.task_name(cfg.model.type, cfg.model.task)]
                     .zero_shot if self.task is None else self.task.zero_shot)
        read = ("train", "dev", "test") if zero_shot or self.task is None else self.splits
        splits = {s: load_examples(cfg, s) for s in read}
        if self.check_examples is not None:
            self.check_examples(splits)
        self.report["examples"] = {s: len(v) for s, v in splits.items()}
        if self.task is None:
            self.task = registry.new_task(cfg, splits)
        splits = self.task.filter_splits(splits)
        missing = [s for s in self.splits if s not in splits]
        if missing:
            raise ConfigError(f"unknown split {missing[0]!r}; expected train, dev or test")
        splits = {s: splits[s][:self.limit] if self.limit else splits[s] for s in self.splits}
        self.report["instances"] = {s: len(v) for s, v in splits.items()}
        if self.count_truncation:
            self.report["truncated"] = {s: count_truncated(self.text_encoder, v, cfg.data.max_length)
                                        for s, v in splits.items()}
            if any(self.report["truncated"].values()):
                log.warning("posts longer than data.max_length=%d sub-tokens (cut words are "
                            "predicted 'O' / a window around the mentions is kept): %s",
                            cfg.data.max_length, self.report["truncated"])
        self.rows = {s: None for s in splits}
        if self.vision_encoder is not None:
            self.features, splits = compute_image_features(cfg, self.vision_encoder, splits,
                                                           self.report)
            self.rows = self.features.rows
        self.report["examples_used"] = {s: len(v) for s, v in splits.items()}
        self.examples = splits
        self._ready = True

    def loader(self, split: str, batch_size: int, shuffle: bool = False,
               group_by_length: bool = True, num_workers: int | None = None,
               weights: list[float] | None = None) -> ResumableLoader:
        """A resumable loader over ``split``'s instances (see :func:`make_loader`;
        ``num_workers`` defaults to ``trainer.num_workers``; ``weights``: weighted sampling
        with replacement when shuffling)."""
        self.setup()
        split = canonical_split(split)
        tc = self.cfg.trainer
        collate = Collator(self.task, self.text_encoder, self.cfg.data.max_length,
                           self.features, phase=split, cache_tokens=self.cache_tokens)
        return make_loader(ExampleDataset(self.examples[split], self.rows[split]), collate,
                           batch_size, shuffle,
                           tc.num_workers if num_workers is None else num_workers, self.cfg.seed,
                           group_by_length=group_by_length,
                           bucket_batches=tc.length_bucketing if shuffle else 0,
                           pin_memory=self.pin_memory, weights=weights)

    def train_dataloader(self) -> ResumableLoader:
        """Shuffled training batches; the task's sampling weights (class-balanced over the
        seen labels for zero-shot tasks) unless ``data.class_balanced=false``."""
        self.setup()
        weights = (self.task.sampling_weights(self.examples["train"])
                   if self.cfg.data.class_balanced is not False else None)
        return self.loader("train", self.cfg.trainer.batch_size, shuffle=True, weights=weights)

    def val_dataloader(self) -> ResumableLoader:
        return self.loader("dev", self.cfg.trainer.eval_batch_size)

    def test_dataloader(self) -> ResumableLoader:
        return self.loader("test", self.cfg.trainer.eval_batch_size)
