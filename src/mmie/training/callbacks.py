"""Lightning callbacks: per-epoch / per-step JSON-lines logs written by rank 0 only."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.detach().float().item() if v.numel() == 1 else v.tolist()
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk (a crash loses at most the current line)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({k: _plain(v) for k, v in row.items()}) + "\n")
        f.flush()


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if line.endswith(b"\n"))


def truncate_lines(path: Path, n: int) -> None:
    """Keep the first ``n`` complete lines of ``path`` (atomically replaced)."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        lines = [line for line in f if line.endswith(b"\n")][:n]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(lines))
    tmp.replace(path)


class JsonlLogger(L.Callback):
    """Writes ``metrics.jsonl`` (one row per epoch: the train means of every loss term,
    ``weighted/<term>`` = the term's mean times its loss weight, and dev metrics) and
    ``steps.jsonl`` (every ``every_n_steps`` optimizer steps: each loss term), from an
    :class:`~mmie.training.module.MMIELightningModule` (``last_terms``, ``epoch_means``,
    ``epoch_weighted``, ``last_eval``)."""

    def __init__(self, run_dir: str | Path, every_n_steps: int = 10):
        self.run_dir = Path(run_dir)
        self.every = max(1, every_n_steps)
        self._epoch_start = time.perf_counter()

    # exact resume: a checkpoint remembers how many rows each log had; rows written after it
    # (before a crash) are cut on resume, since the resumed run writes them again
    _LOGS = ("metrics.jsonl", "steps.jsonl")
    _restore: dict[str, int] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {name: _count_lines(self.run_dir / name) for name in self._LOGS}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restore = {k: int(v) for k, v in state_dict.items() if k in self._LOGS}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restore is not None and trainer.is_global_zero:
            for name, n in self._restore.items():
                truncate_lines(self.run_dir / name, n)
        self._restore = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero or (trainer.global_step - 1) % self.every:
            return
        terms = pl_module.last_terms
        row = {"step": trainer.global_step, "epoch": trainer.current_epoch + 1}
        row.update({f"train/{k}": v for k, v in terms.items()})
        append_jsonl(self.run_dir / "steps.jsonl", row)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # validation of this epoch has run by now (Lightning validates before this hook)
        if not trainer.is_global_zero:
            return
        row = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step,
               "epoch_seconds": round(time.perf_counter() - self._epoch_start, 3)}
        opt = trainer.optimizers[0] if trainer.optimizers else None
        if opt is not None:
            row["lr"] = opt.param_groups[0]["lr"]
        row.update({f"train/{k}": v for k, v in pl_module.epoch_means().items()})
        # each term's contribution to train/loss
        row.update({f"weighted/{k}": v for k, v in pl_module.epoch_weighted().items()})
        ev = pl_module.last_eval
        if ev.get("split") == "dev":
            for k, v in ev["scores"].items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    row[f"dev/{k}"] = v
        append_jsonl(self.run_dir / "metrics.jsonl", row)


class EvalTimer(L.Callback):
    """Wall seconds spent in validation loops during ``fit`` (summed over epochs), so that
    the training loop's own time can be reported apart from the dev evaluation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start: float | None = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None


class DDPInfo(L.Callback):
    """What the DistributedDataParallel wrapper actually uses (``static_graph``, gradient
    bucket size in MB), read when training starts; ``info`` stays None without DDP."""

    def __init__(self) -> None:
        self.info: dict[str, Any] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from torch.nn.parallel import DistributedDataParallel

        ddp = trainer.strategy.model
        if isinstance(ddp, DistributedDataParallel):
            self.info = {"static_graph": bool(ddp.static_graph),
                         "bucket_cap_mb": ddp.bucket_bytes_cap / 2 ** 20}
