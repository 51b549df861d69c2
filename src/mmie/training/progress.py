"""A quiet progress display for the command line: one progress bar per training epoch (it
disappears when the epoch ends) and one line per epoch with the train loss and the dev score;
no validation or test bars."""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

import lightning as L
from tqdm.auto import tqdm

__all__ = ["EpochLines"]


class EpochLines(L.Callback):
    """Use with ``trainer.progress=false`` (Lightning's own bars off). ``monitor`` is the dev
    metric shown (default: the one the checkpoint callback selects on)."""

    def __init__(self, monitor: str | None = None, stream: TextIO | None = None):
        self.monitor = monitor
        self.stream = stream or sys.stderr
        self.best = -math.inf
        self.bar: Any = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        total = trainer.num_training_batches
        self.bar = tqdm(total=total if math.isfinite(total) else None, leave=False,
                        desc=f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}",
                        file=self.stream, unit="batch", dynamic_ncols=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        m = trainer.callback_metrics
        monitor = self.monitor or getattr(trainer.checkpoint_callback, "monitor", None)
        dev = m.get(monitor) if monitor else None
        loss = m.get("train/loss")
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if loss is not None:
            parts.append(f"train loss {float(loss):.4f}")
        if dev is not None:
            value = float(dev)
            best = value > self.best
            self.best = max(self.best, value)
            parts.append(f"{monitor} {value:.4f}" + ("  (best so far)" if best else ""))
        print("  ".join(parts), file=self.stream, flush=True)
