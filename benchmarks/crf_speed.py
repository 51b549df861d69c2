"""CRF Viterbi decoding: the sequential decode mmie had before issue 20 vs ``CRF.decode``.

    python benchmarks/crf_speed.py [--device cuda] [--batch 256] [--lengths 16 40 64]
        [--output results/speed/crf_decode_cpu.json]

Random emissions ``[B, T, 9]`` (the 9 BIO tags of Twitter NER, BIO constraints on), row
lengths uniform in ``1..T`` (the longest row has ``T``), transitions ~ N(0, 1). Per length:
both decodes' time (warm-up until three consecutive calls agree within 10 %, then 30 timed
calls between CUDA synchronisations; median, p10, p90), how many aten operators each issues
per call (on a GPU, about one kernel launch each: what bounds a small decode there), and a
check that both return the same paths.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


@torch.no_grad()
def sequential_decode(crf, emissions, mask, constrained=True):
    """mmie's decode before issue 20 (same as the reference in tests/test_crf.py)."""
    B, T, _ = emissions.shape
    start, trans, end = crf._params(constrained)
    em = emissions.float()
    score = start + em[:, 0]
    history = []
    for t in range(1, T):
        cand = score.unsqueeze(2) + trans.unsqueeze(0) + em[:, t].unsqueeze(1)
        best, idx = cand.max(dim=1)
        score = torch.where(mask[:, t : t + 1], best, score)
        history.append(idx)
    score = score + end
    cur = score.argmax(dim=-1)
    out = torch.zeros(B, T, dtype=torch.long, device=em.device)
    for t in range(T - 1, -1, -1):
        out[:, t] = cur
        if t > 0:
            prev = history[t - 1].gather(1, cur.unsqueeze(1)).squeeze(1)
            cur = torch.where(mask[:, t], prev, cur)
    return [row[:n] for row, n in zip(out.tolist(), mask.sum(1).tolist())]


def timed(fn, device, steps=30, max_warmup=60):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def once():
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    warm = []
    while len(warm) < max_warmup:
        warm.append(once())
        if len(warm) >= 3 and max(warm[-3:]) <= 1.1 * min(warm[-3:]):
            break
    ts = sorted(once() for _ in range(steps))
    q = lambda p: ts[round(p * (len(ts) - 1))]  # noqa: E731
    return {"ms_median": round(1000 * statistics.median(ts), 3), "ms_p10": round(1000 * q(0.1), 3),
            "ms_p90": round(1000 * q(0.9), 3), "warmup_calls": len(warm)}


def op_count(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    # top-level aten calls only (an op called inside another op is not a separate launch)
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lengths", type=int, nargs="+", default=[16, 40, 64])
    ap.add_argument("--output", default=None)
    a = ap.parse_args(argv)
    from mmie.modules.crf import CRF, allowed_transitions_bio

    device = torch.device(a.device)
    labels = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC", "ORG", "MISC") for p in "BI"]
    torch.manual_seed(0)
    crf = CRF(len(labels), constraints=allowed_transitions_bio(labels))
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    crf = crf.to(device)
    rows = []
    for T in a.lengths:
        g = torch.Generator().manual_seed(T)
        lens = torch.randint(1, T + 1, (a.batch,), generator=g)
        lens[0] = T
        mask = (torch.arange(T)[None] < lens[:, None]).to(device)
        em = torch.randn(a.batch, T, len(labels), generator=g).to(device)
        old = lambda: sequential_decode(crf, em, mask)  # noqa: E731
        new = lambda: crf.decode(em, mask)  # noqa: E731
        same = old() == new()
        r = {"batch": a.batch, "length": T, "same_paths": same,
             "sequential": {**timed(old, device), "aten_ops": op_count(old)},
             "vectorised": {**timed(new, device), "aten_ops": op_count(new)}}
        r["speedup"] = round(r["sequential"]["ms_median"] / r["vectorised"]["ms_median"], 2)
        rows.append(r)
        print(f"B={a.batch} T={T}: sequential {r['sequential']['ms_median']} ms "
              f"({r['sequential']['aten_ops']} ops), vectorised {r['vectorised']['ms_median']} ms "
              f"({r['vectorised']['aten_ops']} ops), x{r['speedup']}, same paths: {same}",
              flush=True)
    res = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
           "rows": rows}
    if a.output:
        Path(a.output).parent.mkdir(parents=True, exist_ok=True)
        Path(a.output).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {a.output}")
    return 0 if all(r["same_paths"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
