"""Load test of ``mmie serve`` on the loopback interface, bounded in requests and time.

Starts the service in a subprocess on 127.0.0.1 (a free port), waits for ``GET /health``, then
``--clients`` concurrent clients send ``--requests`` ``POST /predict`` requests in total (each
a post, with a picture as base64 unless ``--no-image``), and reports throughput, latency
percentiles and the status codes. Any 5xx is reported (and makes the exit status 1).

Without ``--model-dir`` an MMIB NER model with the embedded encoders (MiniLM-L6 +
EfficientNet-Lite0) is built untrained and saved with ``save_pretrained``: the load test
measures the service, not the model's quality.

    python benchmarks/load_test.py --clients 8 --requests 200 --output results/load_test_cpu.json
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

POSTS = [
    "Rafael Nadal wins in Paris again #RolandGarros",
    "Heading to New York with @nytimes friends tonight",
    "Apple unveils a new iPhone at the Steve Jobs Theater in Cupertino",
    "Lionel Messi and Barcelona celebrate the Copa del Rey title",
    "Storm warning for Florida : stay safe everyone",
    "Watching the Lakers beat the Celtics at Staples Center",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_default_model(directory: Path) -> Path:
    """An untrained MMIB NER model with the embedded encoders, saved for ``mmie serve``."""
    from mmie.config import load_config
    from mmie.models.factory import build_model, save_pretrained
    from mmie.tasks.ner import NERTask
    from mmie.training.train import build_encoders

    cfg = load_config(None, ["model.type=mmib", "model.task=ner"])
    task = NERTask(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"])
    text, vision = build_encoders(cfg, True)
    model = build_model(cfg.model, task, text, vision)
    return save_pretrained(model, task, cfg, directory)


def picture_b64(seed: int, size: int = 320) -> str:
    """A distinct JPEG (a colour gradient with a square) as base64."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), ((37 * seed) % 256, (91 * seed) % 256, 128))
    d = ImageDraw.Draw(img)
    o = (seed * 13) % (size // 2)
    d.rectangle([o, o, o + size // 3, o + size // 3], fill=(255 - (37 * seed) % 256, 40, 200))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def wait_for_health(url: str, proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
    import httpx

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with status {proc.returncode} before it was ready")
        try:
            r = httpx.get(url + "/health", timeout=2.0)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the service did not answer /health within {timeout:.0f} s")


def run_load(url: str, clients: int, requests: int, max_seconds: float,
             with_image: bool) -> dict[str, Any]:
    import httpx

    images = [picture_b64(i) for i in range(16)] if with_image else []
    lock = threading.Lock()
    next_id = [0]
    lat: list[float] = []
    codes: dict[int, int] = {}
    errors: list[str] = []
    deadline = time.perf_counter() + max_seconds

    def worker() -> None:
        with httpx.Client(timeout=60.0) as c:
            while True:
                with lock:
                    i = next_id[0]
                    if i >= requests or time.perf_counter() > deadline:
                        return
                    next_id[0] += 1
                body: dict[str, Any] = {"text": POSTS[i % len(POSTS)]}
                if with_image:
                    body["image"] = images[i % len(images)]
                t0 = time.perf_counter()
                try:
                    r = c.post(url + "/predict", json=body)
                    code = r.status_code
                    if code >= 500:
                        with lock:
                            errors.append(r.text[:200])
                except httpx.HTTPError as e:
                    code = -1
                    with lock:
                        errors.append(repr(e)[:200])
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    codes[code] = codes.get(code, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    s = sorted(lat)

    def pct(q: float) -> float:
        return round(1000 * s[min(len(s) - 1, int(q * (len(s) - 1)))], 1) if s else float("nan")

    return {"clients": clients, "requests_sent": len(lat), "requests_planned": requests,
            "with_image": with_image, "wall_s": round(wall, 2),
            "throughput_rps": round(len(lat) / wall, 2) if wall else None,
            "latency_ms": {"mean": round(1000 * statistics.mean(s), 1) if s else None,
                           "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99),
                           "max": round(1000 * s[-1], 1) if s else None},
            "status_codes": {str(k): v for k, v in sorted(codes.items())},
            "server_errors_5xx": sum(v for k, v in codes.items() if k >= 500),
            "transport_errors": codes.get(-1, 0), "error_samples": errors[:5]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, default=None,
                    help="a saved model (default: build an untrained MMIB NER model)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8],
                    help="concurrency levels, one load run each")
    ap.add_argument("--requests", type=int, default=200, help="requests per load run")
    ap.add_argument("--max-seconds", type=float, default=180.0, help="time bound per load run")
    ap.add_argument("--no-image", action="store_true", help="text only requests")
    ap.add_argument("--output", type=Path, default=None)
    a = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mmie-load-"))
    model_dir = a.model_dir or build_default_model(work / "model")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(work / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mmie", "serve", str(model_dir), "--host",
                             "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    try:
        health = wait_for_health(url, proc, 180.0)
        # warm-up: a few requests so the first-call costs are not in the numbers
        run_load(url, 1, 3, 60.0, not a.no_image)
        runs = [run_load(url, c, a.requests, a.max_seconds, not a.no_image) for c in a.clients]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    import torch

    res = {"command": " ".join(["python", "benchmarks/load_test.py", *(argv or sys.argv[1:])]),
           "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                       "torch": torch.__version__,
                       "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
           "model": str(a.model_dir) if a.model_dir else "untrained MMIB NER, MiniLM-L6 + EfficientNet-Lite0",
           "health": {k: health.get(k) for k in ("task", "model", "limits") if k in health},
           "runs": runs}
    print(f"{'clients':>8}{'sent':>6}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'5xx':>5}")
    for r in runs:
        L = r["latency_ms"]
        print(f"{r['clients']:>8}{r['requests_sent']:>6}{r['throughput_rps']:>8}{L['p50']:>9}"
              f"{L['p95']:>9}{L['p99']:>9}{r['server_errors_5xx']:>5}")
    if a.output:
        a.output.parent.mkdir(parents=True, exist_ok=True)
        a.output.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {a.output}")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 1 if any(r["server_errors_5xx"] or r["transport_errors"] for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
