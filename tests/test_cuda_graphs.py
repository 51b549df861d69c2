"""GraphCache: eager on CPU, and the fallback when a capture fails (no GPU needed)."""

from __future__ import annotations

import pytest
import torch

from mmie.modules.cuda_graphs import GraphCache


def test_cpu_arguments_run_eagerly_under_no_grad():
    w = torch.ones(3, requires_grad=True)
    calls = []

    def fn(x):
        calls.append(torch.is_grad_enabled())
        return x * w, x.sum()

    cache = GraphCache(fn)
    a, s = cache(torch.arange(3.0))
    assert a.tolist() == [0.0, 1.0, 2.0] and float(s) == 3.0
    assert calls == [False] and not a.requires_grad
    assert cache.graphs == {} and cache.replays == 0 and cache.failures == 0
    # one tensor out stays one tensor
    assert GraphCache(lambda x: x + 1)(torch.zeros(2)).tolist() == [1.0, 1.0]


def test_signature_separates_shapes_and_dtypes():
    a, b, c = torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3, dtype=torch.bfloat16)
    sigs = {GraphCache.signature((x,)) for x in (a, b, c, torch.ones(2, 3))}
    assert len(sigs) == 3


def test_failed_capture_falls_back_to_eager_and_is_counted(monkeypatch):
    cache = GraphCache(lambda x: x * 2, name="test")

    def broken(args):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(cache, "_capture", broken)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    x = torch.arange(3.0)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    with pytest.warns(RuntimeWarning, match="capture failed"):
        assert cache(x).tolist() == [0.0, 2.0, 4.0]
    assert cache(x).tolist() == [0.0, 2.0, 4.0]  # marked: eager, no second capture
    assert cache.failures == 2 and cache.graphs == {} and len(cache.failed) == 1
