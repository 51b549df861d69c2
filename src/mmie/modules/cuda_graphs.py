"""Replay a function of tensors from captured CUDA graphs, one graph per input signature.

Small sequential loops (the CRF's Viterbi and forward-backward: a few kernels per time step)
are bound on a GPU by launching kernels, not by running them. A CUDA graph launches the
recorded kernels in one call; the kernels, and so the results, are the same as the eager
calls' (same operators, same order, same inputs).

:class:`GraphCache` wraps ``fn(*tensors) -> tensor or tuple of tensors``: the first call with
a given signature (shapes, dtypes, devices of the arguments) runs ``fn`` eagerly a few times
on a side stream, then captures it; later calls copy their arguments into the captured
inputs, replay, and return copies of the captured outputs. ``fn`` runs under
``torch.no_grad()`` and must not synchronise with the host (no ``.item()``, ``bool(t)``,
data-dependent shapes): such a capture fails, the signature is marked, and that call and
every later one with the signature run eagerly (``failures`` counts them, one warning says
why). CPU arguments always run eagerly. At most ``max_graphs`` signatures are captured (the
rest run eagerly); all graphs share one memory pool, which is safe because replays are
sequential and outputs are copied out before the next replay.

Public API: :class:`GraphCache`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

Tensors = tuple[torch.Tensor, ...]


class GraphCache:
    """``cache(*tensors)``: ``fn(*tensors)``, from a CUDA graph per argument signature (see
    the module docstring); ``graphs``, ``replays`` and ``failures`` say what happened."""

    def __init__(self, fn: Callable[..., torch.Tensor | Tensors], *, max_graphs: int = 32,
                 warmup: int = 2, name: str = "function"):
        self.fn, self.max_graphs, self.warmup, self.name = fn, max_graphs, warmup, name
        self.graphs: dict[tuple, tuple[list[torch.Tensor], Tensors, bool, object]] = {}
        self.failed: set[tuple] = set()
        self.failures = 0  # calls that fell back to eager because a capture failed
        self.replays = 0
        self._pool = None

    @staticmethod
    def signature(args: Tensors) -> tuple:
        return tuple((tuple(a.shape), a.dtype, a.device) for a in args)

    def _eager(self, args: Tensors):
        with torch.no_grad():
            return self.fn(*args)

    def __call__(self, *args: torch.Tensor):
        if not args or not all(isinstance(a, torch.Tensor) and a.is_cuda for a in args):
            return self._eager(args)
        key = self.signature(args)
        entry = self.graphs.get(key)
        if entry is None:
            if key in self.failed or len(self.graphs) >= self.max_graphs:
                self.failures += key in self.failed
                return self._eager(args)
            try:
                entry = self._capture(args)
            except Exception as e:  # noqa: BLE001 - any capture error means "run eagerly"
                self.failed.add(key)
                self.failures += 1
                if len(self.failed) == 1:
                    warnings.warn(f"GraphCache({self.name}): CUDA graph capture failed for "
                                  f"{key[0][0]} ({type(e).__name__}: {e}); running eagerly",
                                  RuntimeWarning, stacklevel=2)
                torch.cuda.synchronize()
                return self._eager(args)
            self.graphs[key] = entry
        static_in, static_out, single, graph = entry
        for s, a in zip(static_in, args):
            s.copy_(a)
        graph.replay()
        self.replays += 1
        outs = tuple(o.clone() for o in static_out)
        return outs[0] if single else outs

    def _capture(self, args: Tensors):
        static_in = [a.detach().clone() for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(self.warmup):
                self.fn(*static_in)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool), torch.no_grad():
            out = self.fn(*static_in)
        single = isinstance(out, torch.Tensor)
        static_out = (out,) if single else tuple(out)
        return static_in, static_out, single, graph


__all__ = ["GraphCache"]
