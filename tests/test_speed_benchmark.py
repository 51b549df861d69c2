"""benchmarks/speed.py: the batch sources and the timing rule (no timings asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("speed_bench", REPO / "benchmarks" / "speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_one_loader_pass_covers_a_row(speed):
    # 1,400 posts at batch 1,024 are 2 batches; a row of 15 + 30 + 8 steps needs 53 of them
    idx = speed.pass_indices(1400, 1024, 53)
    batches = [idx[i:i + 1024] for i in range(0, len(idx), 1024)]
    assert len(idx) % 1024 == 0 and len(batches) >= 53
    # the pass is the pool's cycle repeated: batch k is batch k mod 2 of one cycle
    cycle = speed.cycle_batches(1400, 1024)
    assert len(cycle) == 2
    assert all(b == cycle[k % 2] for k, b in enumerate(batches))
    # every post of the pool is used, none outside it
    assert set(idx) == set(range(1400))
    # no minimum: one cycle, as before
    assert speed.pass_indices(10, 4) == [i for c in speed.cycle_batches(10, 4) for i in c]


def test_row_reports_the_sustained_rate_beside_the_median(speed):
    import torch

    # clock readings: 3 warm-up steps of 1 s (stable), then timed steps of 1, 1, 1 and 5 s
    readings = iter([0, 1, 1, 2, 2, 3, 10, 11, 11, 12, 12, 13, 13, 18])

    class Clock:
        def now(self):
            return float(next(readings))

    bench = speed.Bench(Clock(), torch.device("cpu"), min_warmup=3, max_warmup=3, steps=4)
    assert bench.steps_per_row == 3 + 4 + 8
    row = bench.measure("x", lambda: None, posts_per_step=10)
    assert row["warmup_steps"] == 3 and row["warmup_converged"]
    assert row["s_per_step_all"] == [1.0, 1.0, 1.0, 5.0]
    assert row["posts_per_s"] == pytest.approx(10.0)            # median step 1 s
    assert row["posts_per_s_sustained"] == pytest.approx(5.0)   # 40 posts in 8 s


def test_profiled_steps_count_operators_after_the_timed_ones(speed):
    import torch

    calls = []

    def step():
        calls.append(1)
        x = torch.ones(4, 4)
        return (x @ x).sum()

    bench = speed.Bench(speed.Clock(torch.device("cpu")), torch.device("cpu"), min_warmup=3,
                        max_warmup=3, steps=4, profile_steps=2)
    assert bench.steps_per_row == 3 + 4 + 2 + 8
    row = bench.measure("x", step, posts_per_step=1)
    # 3 warm-up + 4 timed + 2 profiled steps; the timed list holds only the timed ones
    assert len(calls) == 9 and len(row["s_per_step_all"]) == 4
    assert row["profiled_steps"] == 2
    # ones, matmul (mm) and sum at least, per step
    assert row["aten_ops_per_step"] >= 3
    # no GPU fields on the CPU
    assert "gpu_busy_fraction" not in row and "gpu_kernels_per_step" not in row
