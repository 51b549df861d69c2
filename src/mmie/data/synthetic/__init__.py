"""The synthetic demo data set: :mod:`~mmie.data.synthetic.generator` draws the posts and
their pictures, :mod:`~mmie.data.synthetic.files` writes them in the real data sets' formats
(:func:`generate`); ``mmie data synthetic OUT_DIR`` runs it from the command line."""

from mmie.data.synthetic.files import generate
from mmie.data.synthetic.generator import (COLOURS, NER_CUES, NER_TYPES, RE_CUES, RE_LABELS,
                                           TYPING_TYPES, best_f1_with_abstention,
                                           ner_text_only_ceiling, re_text_only_ceiling,
                                           text_only_ceiling)

__all__ = ["generate", "text_only_ceiling", "ner_text_only_ceiling", "re_text_only_ceiling",
           "best_f1_with_abstention", "NER_TYPES", "NER_CUES", "RE_LABELS", "RE_CUES",
           "TYPING_TYPES", "COLOURS"]
