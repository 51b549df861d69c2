"""Signal against sampling noise in MMIB's two bottlenecks at the start of training.

For the first training batches of a recipe (default: the photo benchmark's MMIB NER recipe
with the embedded encoders), builds the model as training does (same seed) and reports per
modality: the standard deviation of the posterior means ``mu`` over valid elements, the mean
``sigma = exp(logvar / 2)``, their ratio (signal-to-noise of one training sample), the cosine
between a training sample ``z`` and ``mu``, and the same for the representation the bottleneck
replaces (``H``, which the fusion sees w/o refinement). ``--init`` lists the log-variance biases
to compare (``model.vib_init_logvar``; 0 = the released code's default initialisation).

    python benchmarks/vib_noise.py configs/mmib_photos_ner.yaml --set data.data_dir=DIR \\
        --init 0 -4 --output results/vib_noise_photos_ner.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


def stats(h: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor,
          mask: torch.Tensor) -> dict[str, float]:
    m = mask.bool()
    sig = torch.exp(0.5 * logvar)[m]
    mu_v, z_v = mu[m], z[m]
    return {"std_H": float(h[m].std()), "std_mu": float(mu_v.std()),
            "mean_sigma": float(sig.mean()), "snr_mu_over_sigma": float(mu_v.std() / sig.mean()),
            "cos_z_mu": float(torch.nn.functional.cosine_similarity(z_v, mu_v, dim=-1).mean()),
            "tokens": int(m.sum())}


def main() -> None:
    from mmie.config import load_config
    from mmie.encoders.regions import object_inputs
    from mmie.models.factory import build_model
    from mmie.training.data import MMIEDataModule
    from mmie.training.train import build_encoders

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", nargs="?", default=str(ROOT / "configs" / "mmib_photos_ner.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--init", type=float, nargs="+", default=[0.0, -4.0])
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--output", type=Path, default=None)
    a = ap.parse_args()
    out: dict = {"config": a.config, "set": a.set, "batches": a.batches, "rows": {}}
    for init in a.init:
        cfg = load_config(a.config, [*a.set, f"model.vib_init_logvar={init}"])
        torch.manual_seed(cfg.seed)
        text, vision = build_encoders(cfg, True)
        dm = MMIEDataModule(cfg, text, vision, splits=("train",), limit=a.batches *
                            cfg.trainer.batch_size)
        dm.setup()
        model = build_model(cfg.model, dm.task, text, vision).train()
        acc: dict[str, list[dict[str, float]]] = {"text": [], "image": []}
        with torch.no_grad():
            for i, batch in enumerate(dm.loader("train", cfg.trainer.batch_size)):
                if i >= a.batches:
                    break
                h_t = model.text(batch["input_ids"], batch["attention_mask"])
                g, r, present = model.image_features(batch)
                h_v, img_mask = model.image_in(g, r, present, **object_inputs(batch))
                tm = batch["attention_mask"].bool()
                ot, ov = model.vib_text(h_t, tm), model.vib_image(h_v, img_mask)
                acc["text"].append(stats(h_t, ot.mu, ot.logvar, ot.z, tm))
                acc["image"].append(stats(h_v, ov.mu, ov.logvar, ov.z, img_mask))
        row = {k: {s: sum(d[s] for d in v) / len(v) for s in v[0]} for k, v in acc.items()}
        out["rows"][str(init)] = row
        for k, v in row.items():
            print(f"init_logvar {init:+.1f} {k:5s}: std(H) {v['std_H']:.3f}  std(mu) "
                  f"{v['std_mu']:.3f}  sigma {v['mean_sigma']:.3f}  mu/sigma "
                  f"{v['snr_mu_over_sigma']:.3f}  cos(z, mu) {v['cos_z_mu']:.3f}")
    if a.output:
        a.output.parent.mkdir(parents=True, exist_ok=True)
        a.output.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
