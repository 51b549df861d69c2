"""What the command line prints: one log handler, and the third-party notices a user cannot act
on kept out of the output unless ``-v`` asks for detail.

Each filter is narrow: one named message of one library, at the place mmie triggers it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator

__all__ = ["setup_cli_logging", "verbose", "tame_lightning", "quiet_lightning_warnings",
           "quiet_transformers", "LIGHTNING_NOISE"]

_FORMAT = "%(levelname)s %(name)s: %(message)s"

#: Lightning warnings about mmie's own, deliberate set-up: the frozen vision encoder stays in
#: eval mode during training; Lightning's pytree helper calls a deprecated torch API
LIGHTNING_NOISE = (r"Found \d+ module\(s\) in eval mode at the start of training",
                   r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def setup_cli_logging(verbose_: bool) -> None:
    """The root handler of the ``mmie`` command (INFO with ``-v``, else WARNING)."""
    logging.basicConfig(level=logging.INFO if verbose_ else logging.WARNING, format=_FORMAT)


def verbose() -> bool:
    """Whether detail was asked for (``-v``: mmie's loggers are enabled at INFO)."""
    return logging.getLogger("mmie").isEnabledFor(logging.INFO)


def tame_lightning() -> None:
    """Lightning's messages through the one root handler, once (Lightning adds a console
    handler of its own, so every line came twice), and at WARNING unless verbose (its INFO
    lines are the accelerator summary and advertisements)."""
    import lightning  # noqa: F401 - its import installs the handler removed here

    root = logging.getLogger("lightning")
    for h in list(root.handlers):
        if type(h) is logging.StreamHandler:
            root.removeHandler(h)
    level = logging.INFO if verbose() else logging.WARNING
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        lg.setLevel(level)
        if name != "lightning":
            for h in list(lg.handlers):
                if type(h) is logging.StreamHandler:
                    lg.removeHandler(h)
            lg.propagate = True


@contextlib.contextmanager
def quiet_lightning_warnings() -> Iterator[None]:
    """Inside: :data:`LIGHTNING_NOISE` is not shown (unless verbose)."""
    with warnings.catch_warnings():
        if not verbose():
            for pattern in LIGHTNING_NOISE:
                warnings.filterwarnings("ignore", message=pattern)
        yield


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Inside: transformers' weight-loading progress bar and INFO/WARNING notices (such as the
    "new embeddings will be initialized ..." notice of adding the entity-marker tokens) are
    not shown (unless verbose); errors still are."""
    if verbose():
        yield
        return
    from transformers.utils import logging as hf_logging  # heavy: only when text is encoded

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
