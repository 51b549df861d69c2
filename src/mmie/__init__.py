"""mmie: multimodal information extraction from text paired with an image."""

__version__ = "0.1.0"

from mmie.errors import MMIEError, DataError, ConfigError  # noqa: E402,F401

# ``load`` and ``pipeline`` import the prediction stack (torch, transformers: seconds) when
# called, so that ``import mmie`` (the CLI, config and data tools) stays light.


def load(path, **kwargs):
    """Load a saved mmie model directory (``save_pretrained`` layout) for prediction."""
    from mmie.inference.predictor import load as _load

    return _load(path, **kwargs)


def pipeline(ner=None, re=None, **kwargs):
    """Raw text (+ image) -> entities and relations, from an NER and an RE model directory."""
    from mmie.inference.pipeline import pipeline as _pipeline

    return _pipeline(ner=ner, re=re, **kwargs)
