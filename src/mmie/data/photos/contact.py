"""A contact sheet of a built photo benchmark: sample post pictures per category, and
two-mention collage posts with their words and gold types (``docs/figures/``).

    python -m mmie.data.photos.contact OUT_DIR docs/figures/photos_contact_sheet.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["contact_sheet"]


def contact_sheet(out_dir: str | Path, png: str | Path, *, per_category: int = 6,
                  collages: int = 6, split: str = "test") -> Path:
    """Draw the sheet from ``out_dir`` (a build) into ``png``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from mmie.data import catalog
    from mmie.data.photos.text import CATEGORIES, TYPING_TYPES

    out = Path(out_dir)
    typing = catalog.load_split("photos_typing", split, data_dir=out).examples
    by_cat: dict[str, list[str]] = {t["name"]: [] for t in TYPING_TYPES}
    for ex in typing:
        lab = ex.entities[0].label
        if len(by_cat[lab]) < per_category:
            by_cat[lab].append(ex.image)
    ner = catalog.load_split("photos_ner", split, data_dir=out).examples
    subsets = [json.loads(x)["subsets"] for x in
               (out / "photos_ner" / f"{split}.subsets.jsonl").read_text().splitlines()]
    half = collages // 2
    both = [(ex, t) for ex, t in zip(ner, subsets) if "collage" in t and "text_decides" not in t]
    noisy = [(ex, t) for ex, t in zip(ner, subsets) if "noisy_picture" in t]
    picks = both[:collages - half] + noisy[:half]
    rows = len(by_cat) + (len(picks) + 2) // 3
    fig = plt.figure(figsize=(per_category * 1.25 + 1.6, rows * 1.3 + 0.4), dpi=80)
    gs = fig.add_gridspec(rows, per_category + 1, width_ratios=[1.3] + [1] * per_category,
                          hspace=0.35, wspace=0.05, top=0.975, bottom=0.01)
    for r, (cat, ims) in enumerate(by_cat.items()):
        ax = fig.add_subplot(gs[r, 0])
        ax.axis("off")
        ax.text(1.0, 0.5, f"{cat}\n({CATEGORIES[cat]})", ha="right", va="center", fontsize=10)
        for c, im in enumerate(ims):
            ax = fig.add_subplot(gs[r, c + 1])
            ax.imshow(Image.open(out / "images" / im))
            ax.axis("off")
    base = len(by_cat)
    span = max(1, (per_category + 1) // 3)
    for k, (ex, tags) in enumerate(picks):
        r, c = base + k // 3, (k % 3) * span
        ax = fig.add_subplot(gs[r, c:c + span])
        ax.axis("off")
        img = Image.open(out / "images" / f"{Path(ex.image).stem}.jpg")
        ax.imshow(img, extent=(0, 1, 0, 1))
        words = list(ex.tokens)
        for e in sorted(ex.entities, key=lambda e: -e.start):
            words[e.start:e.end] = [f"[{' '.join(ex.tokens[e.start:e.end])}]{e.label}"]
        text = " ".join(words)
        lines, cur = [], ""
        for w in text.split():
            if len(cur) + len(w) > 21:
                lines.append(cur)
                cur = w
            else:
                cur = f"{cur} {w}".strip()
        lines.append(cur)
        tag = "noisy: text decides" if "noisy_picture" in tags else "left/right = 1st/2nd"
        ax.text(1.08, 0.5, "\n".join(lines[:4] + [f"({tag})"]), fontsize=7.5, va="center",
                transform=ax.transAxes)
        ax.set_xlim(0, 1)
        ax.set_aspect("equal")
    fig.suptitle(f"mmie photos benchmark: sample {split} pictures per category (typing posts),"
                 " and NER posts", fontsize=11, y=0.995)
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, bbox_inches="tight")
    plt.close(fig)
    return png


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m mmie.data.photos.contact OUT_DIR PNG", file=sys.stderr)
        return 2
    print(contact_sheet(args[0], args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
