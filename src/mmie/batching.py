"""Batch sizes per device and host-to-device transfer of collated batches.

:data:`PREDICT_BATCH_SIZE` is the default number of posts per prediction batch: on a GPU
small batches leave it waiting on Python (on an H200, docs/performance.md: text NER
prediction 1,857 posts/s at batch 64, 2,672 at 256; the bare MiniLM-L6 forward 35.6k posts/s
at 256 and 118k at 1,024, issue 20), on the CPU larger batches only add padding and latency
(2 cores: 230 posts/s at batch 16, 191 at 64). Use
:func:`predict_batch_size` where a caller gives none.
"""

from __future__ import annotations

from typing import Any

import torch

#: default posts per prediction batch, by device type
PREDICT_BATCH_SIZE: dict[str, int] = {"cpu": 32, "cuda": 256}


def predict_batch_size(device: torch.device | str) -> int:
    """:data:`PREDICT_BATCH_SIZE` of ``device``'s type (the CPU value for unknown types)."""
    return PREDICT_BATCH_SIZE.get(torch.device(device).type, PREDICT_BATCH_SIZE["cpu"])


def pin(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch with its CPU tensors in page-locked memory (needs CUDA), so that
    :func:`to_device` can copy them asynchronously."""
    return {k: v.pin_memory() if isinstance(v, torch.Tensor) and v.device.type == "cpu" else v
            for k, v in batch.items()}


def to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Every tensor of ``batch`` on ``device``; copies to a CUDA device do not block the host
    (``non_blocking``: asynchronous from pinned memory, ordered on the current stream, so the
    kernels that use them wait for them). Other values are left as they are."""
    device = torch.device(device)
    nb = device.type == "cuda"
    return {k: v.to(device, non_blocking=nb) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


__all__ = ["PREDICT_BATCH_SIZE", "predict_batch_size", "pin", "to_device"]
