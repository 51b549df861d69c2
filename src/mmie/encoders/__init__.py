"""Encoders: text (transformers), vision (timm or transformers) and the image feature cache.

Names are imported lazily so that ``import mmie.encoders`` stays cheap::

    from mmie.encoders import TextEncoder, build_vision_encoder, FeatureCache
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TextEncoder": "text", "WordBatch": "text", "resolve_text_encoder": "text",
    "DEFAULT_TEXT_ENCODER": "text", "DEFAULT_ENTITY_MARKERS": "text",
    "VisionEncoder": "vision", "build_vision_encoder": "vision",
    "DEFAULT_VISION_ENCODER": "vision", "map_efficientnet_lite0_state_dict": "vision",
    "WeightMappingError": "vision",
    "FeatureCache": "cache", "image_content_hash": "cache",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmie.encoders' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mmie.encoders.{module}"), name)


def __dir__() -> list[str]:
    return __all__
