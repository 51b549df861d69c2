"""The claims harness (benchmarks/claims.py): grid expansion, per-subset scoring of a finished
run, tables with paired bootstrap CIs, regeneration of a marked docs section."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, subprocess_env

sys.path.insert(0, str(REPO / "benchmarks"))
import claims  # noqa: E402

from mmie.config import load_config  # noqa: E402

approx = pytest.approx

# three posts of a folder data set; gold / predicted tags and their subsets
POSTS = [("Jordan flew home", "B-PER O O", "B-LOC O O", ["picture_decides"]),
         ("Apple and Orange", "B-ORG O B-ORG", "B-ORG O B-ORG",
          ["two_mentions", "picture_decides"]),
         ("Lincoln", "B-LOC", "O", ["noisy_picture"])]


def _folder_set(root: Path, subsets: bool = True) -> Path:
    d = root / "set"
    d.mkdir()
    blocks = []
    for i, (text, gold, _, _) in enumerate(POSTS):  # post ids p0, p1, p2 (from IMGID)
        blocks.append(f"IMGID:p{i}\n" + "\n".join(f"{w}\t{t}" for w, t in
                                                 zip(text.split(), gold.split())))
    for split in ("train", "valid", "test"):
        (d / f"{split}.txt").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    if subsets:
        (d / "test.subsets.jsonl").write_text("".join(
            json.dumps({"id": f"p{i}", "subsets": s}) + "\n"
            for i, (*_, s) in enumerate(POSTS)), encoding="utf-8")
    return d


def _finished_run(run: Path, data: Path, pred_tags: list[str], f1: float) -> claims.Job:
    run.mkdir()
    cfg = load_config(None, [f"data.name={data}", "model.type=text", "model.task=ner",
                             "trainer.max_epochs=30"])
    cfg.save(run / "config.yaml")
    with open(run / "predictions_test.jsonl", "w", encoding="utf-8") as f:
        for i, ((text, gold, _, _), pred) in enumerate(zip(POSTS, pred_tags)):
            f.write(json.dumps({"id": f"p{i}", "tokens": text.split(),
                                "gold_tags": gold.split(), "pred_tags": pred.split()}) + "\n")
    (run / "summary.json").write_text(json.dumps(
        {"epochs_run": 4, "best_epoch": 2, "dev": {"f1": 0.5}, "test": {"f1": f1},
         "train_seconds": 3.0, "total_seconds": 4.0, "device": "cpu x1"}))
    return claims.Job("text_set_ner", 0, "none.yaml", [], run, "ner", "ner", False, "", 10.0)


def test_score_run_overall_and_per_subset_by_hand(tmp_path):
    data = _folder_set(tmp_path)
    # per post (correct, predicted, gold): (0,1,1), (2,2,2), (0,0,1)
    job = _finished_run(tmp_path / "run", data, [p for _, _, p, _ in POSTS], 4 / 7)
    row, posts = claims.score_run(job, 5.0, {"grid": "t"})
    assert posts["counts"] == [[0, 1, 1], [2, 2, 2], [0, 0, 1]]
    assert posts["subsets"] == [["picture_decides"], ["picture_decides", "two_mentions"],
                                ["noisy_picture"]]
    s = row["subsets"]
    assert s["all"] == {"f1": approx(4 / 7), "n": 3}            # 2*2 / (3+4)
    assert s["picture_decides"] == {"f1": approx(2 / 3), "n": 2}  # 2*2 / (3+3)
    assert s["two_mentions"] == {"f1": 1.0, "n": 1}
    assert s["noisy_picture"] == {"f1": 0.0, "n": 1}
    assert row["check"]["ok"] and row["plateau"] is True  # stopped early: 4 of 30 epochs
    # a package score the posts do not reproduce is flagged
    job2 = _finished_run(tmp_path / "run2", data, [p for _, _, p, _ in POSTS], 0.5)
    assert claims.score_run(job2, 1.0, {})[0]["check"]["ok"] is False


def test_subsets_file_must_have_one_line_per_post(tmp_path):
    data = _folder_set(tmp_path)
    lines = (data / "test.subsets.jsonl").read_text().splitlines()
    (data / "test.subsets.jsonl").write_text("\n".join(lines[:2]) + "\n")
    cfg = load_config(None, [f"data.name={data}", "model.type=text"])
    with pytest.raises(claims.GridError, match=r"test.subsets.jsonl: 2 lines but 3 posts"):
        claims.read_subsets(cfg, ["test"])
    (data / "test.subsets.jsonl").write_text("\n".join([lines[1], lines[0], lines[2]]) + "\n")
    with pytest.raises(claims.GridError, match=r"test.subsets.jsonl:1: id 'p1' but the "
                                               r"post there is 'p0'"):
        claims.read_subsets(cfg, ["test"])
    (data / "test.subsets.jsonl").unlink()
    assert claims.read_subsets(cfg, ["test"]) is None


def test_grid_expansion_folds_only_and_bad_override(tmp_path):
    g = claims.load_grid(REPO / "benchmarks" / "claims_synthetic.yaml", tmp_path,
                         ["data=" + str(tmp_path / "d")])
    jobs = claims.expand_jobs(g, tmp_path / "runs", only=["mg_vmoe_*_no_vat", "text_*_ner"],
                              seeds=[0, 4])
    assert [(j.name, j.seed) for j in jobs] == [
        ("text_synthetic_ner", 0), ("text_synthetic_ner", 4),
        ("mg_vmoe_synthetic_typing_no_vat", 0), ("mg_vmoe_synthetic_typing_no_vat", 4)]
    vat4 = jobs[3]
    assert vat4.kind == "zs" and vat4.uses_image and not jobs[0].uses_image
    assert vat4.overrides[-3:] == ["model.vat=off", "data.zero_shot_seed=4",
                                   "data.zero_shot_fold=1"]
    assert f"cache_dir={tmp_path / 'd'}" in vat4.overrides
    cmd = vat4.command("python3")
    assert cmd[:5] == ["python3", "-m", "mmie", "train", "configs/mg_vmoe_synthetic_typing.yaml"]
    assert cmd[-4:] == ["--seed", "4", "--output-dir",
                        str(tmp_path / "runs" / "mg_vmoe_synthetic_typing_no_vat" / "seed4")]
    with pytest.raises(claims.GridError, match="max_epoch"):
        claims.expand_jobs(g, tmp_path, only=["text_synthetic_ner"], extra=["trainer.max_epoch=1"])
    with pytest.raises(claims.GridError, match="no run matches"):
        claims.expand_jobs(g, tmp_path, only=["nothing_*"])
    # every photo recipe of the claims grid is declared with a comparison partner
    p = claims.load_grid(REPO / "benchmarks" / "claims_photos.yaml", tmp_path)
    names = {r["name"] for r in p["runs"]}
    assert {c["a"] for c in p["comparisons"]} | {c["b"] for c in p["comparisons"]} <= names


def _write_results(d: Path, rows: list[dict], posts: list[dict]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with gzip.open(d / "posts.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(p) + "\n" for p in posts))


def _row(recipe: str, seed: int, f1: float) -> dict:
    return {"recipe": recipe, "seed": seed, "kind": "ner", "model": recipe.split("_")[0],
            "data": "set", "text_encoder": "minilm", "vision_encoder": None,
            "dev": {"f1": f1}, "test": {"f1": f1}, "subsets": {"all": {"f1": f1, "n": 3}},
            "check": {"ok": True}, "max_epochs": 30, "best_epoch": 3, "plateau": True,
            "wall_seconds": 10.0, "device": "NVIDIA H200 x1", "precision": "bf16-mixed",
            "commit": "abc", "command": "python3 benchmarks/claims.py run g.yaml",
            "data_version": {"summary_sha256": "ff" * 32}}


def test_tables_and_marked_section_regeneration(tmp_path):
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(
        "name: t\ntitle: T claims\nruns:\n  - {name: mmib_t, config: c.yaml}\n"
        "  - {name: text_t, config: c.yaml, ceiling: text_only_ceiling.ner_f1.test}\n"
        "comparisons:\n"
        "  - {claim: MMIB beats text, a: mmib_t, b: text_t, target: 0}\n")
    grid = claims.load_grid(grid_file, tmp_path)
    ids = ["p0", "p1", "p2"]
    # seed 0: A (2,3,4)->4/7, B (1,3,4)->2/7; seed 1: A (2,2,4)->2/3, B (2,2,4)->2/3
    posts = [{"recipe": "mmib_t", "seed": 0, "kind": "ner", "ids": ids, "subsets": None,
              "counts": [[1, 1, 1], [1, 2, 2], [0, 0, 1]]},
             {"recipe": "text_t", "seed": 0, "kind": "ner", "ids": ids, "subsets": None,
              "counts": [[0, 1, 1], [1, 2, 2], [0, 0, 1]]},
             {"recipe": "mmib_t", "seed": 1, "kind": "ner", "ids": ids, "subsets": None,
              "counts": [[1, 1, 1], [1, 1, 2], [0, 0, 1]]},
             {"recipe": "text_t", "seed": 1, "kind": "ner", "ids": ids, "subsets": None,
              "counts": [[1, 1, 1], [1, 1, 2], [0, 0, 1]]}]
    rows = [_row("mmib_t", 0, 4 / 7), _row("text_t", 0, 2 / 7), _row("mmib_t", 1, 2 / 3),
            _row("text_t", 1, 2 / 3)]
    _write_results(tmp_path / "res", rows, posts)
    (tmp_path / "res" / "data_summary.json").write_text(json.dumps(
        {"text_only_ceiling": {"ner_f1": {"train": 0.9, "test": 0.5}}}))
    rows2, posts2 = claims.load_results([tmp_path / "res"])
    md = claims.tables(grid, rows2, posts2, n_resamples=200, sources=[str(tmp_path / "res")])
    # mean ± sample std of (4/7, 2/3) and (2/7, 2/3), in points
    assert "| mmib_t | mmib | 0,1 | 61.90 ± 6.73 |" in md
    assert "| text_t | text | 0,1 | 47.62 ± 26.94 | 50.00 (Δ -2.38) |" in md
    assert "| mmib_t | mmib | 0,1 | 61.90 ± 6.73 |  |" in md
    assert "ceilings (data summary): text_only_ceiling.ner_f1.test 50.00\n" in md
    # observed Δ = ((4/7 - 2/7) + 0) / 2 = 1/7 = +14.29 points
    line = next(l for l in md.splitlines() if l.startswith("| MMIB beats text"))
    assert "| F1 | all | +14.29 |" in line and line.endswith("| 0,1 | 3 |")
    assert "Machine: NVIDIA H200 x1; precision bf16-mixed" in md
    assert "encoders: all-MiniLM-L6-v2" in md
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nkept above\n")
    claims.write_section(doc, "t", "T claims", md)
    once = doc.read_text()
    assert once.startswith("# Results\n\nkept above\n\n## T claims\n\n<!-- claims:begin t -->\n")
    doc.write_text(once + "\nkept below\n")
    claims.write_section(doc, "t", "T claims", "new body")
    text = doc.read_text()
    assert "<!-- claims:begin t -->\nnew body\n<!-- claims:end t -->\n\nkept below\n" in text
    assert text.count("claims:begin t") == 1 and "kept above" in text and "61.90" not in text


def test_verdicts():
    assert claims.verdict({"ci_low": 0.26, "ci_high": 0.3}, 25) == "met"
    assert claims.verdict({"ci_low": 0.2, "ci_high": 0.3}, 25) == "unclear"
    assert claims.verdict({"ci_low": 0.1, "ci_high": 0.2}, 25) == "not met"
    assert claims.verdict({"ci_low": 0.0, "ci_high": 0.0}, 0) == "not met"
    assert claims.verdict({"ci_low": 0.001, "ci_high": 0.02}, 0) == "met"


@pytest.mark.slow
def test_driver_end_to_end_on_tiny_synthetic(tmp_path):
    """Data build, two recipes x two seeds in parallel processes, rows + posts + logs, and the
    table with its comparison (tiny encoders, one epoch, 40 posts)."""
    out, runs, data = tmp_path / "out", tmp_path / "runs", tmp_path / "data"
    cmd = [sys.executable, str(REPO / "benchmarks" / "claims.py"), "run",
           str(REPO / "benchmarks" / "claims_synthetic.yaml"), "--out", str(out), "--runs",
           str(runs), "--var", f"data={data}", "--var", "size=40", "--only", "text_*_ner",
           "fusion_*_ner", "--seeds", "0", "1", "--parallel", "2", "--threads", "1",
           "--set", "model.text_encoder=random:tiny-bert", "--set",
           "model.vision_encoder=random:tiny-resnet", "--set", "trainer.max_epochs=1",
           "--set", "trainer.accelerator=cpu"]
    r = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "data_summary.json", "driver.log", "logs.tar.gz", "posts.jsonl.gz", "rows.jsonl"]
    rows, posts = claims.load_results([out])
    assert sorted((r["recipe"], r["seed"]) for r in rows) == [
        ("fusion_synthetic_ner", 0), ("fusion_synthetic_ner", 1),
        ("text_synthetic_ner", 0), ("text_synthetic_ner", 1)]
    for row in rows:
        assert row["check"]["ok"], row["check"]
        n = row["subsets"]["all"]["n"]
        assert n == 10 and row["subsets"]["two_mentions"]["n"] + row["subsets"][
            "one_mention"]["n"] == n
    # a second call skips what is done
    r2 = subprocess.run(cmd + ["--skip-done", str(out), "--dry-run"], cwd=REPO,
                        env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert r2.returncode == 0 and "mmie train" not in r2.stdout
    g = claims.load_grid(REPO / "benchmarks" / "claims_synthetic.yaml", out)
    md = claims.tables(g, rows, posts, n_resamples=100)
    assert "| text_synthetic_ner | text | 0,1 |" in md
    assert any(l.startswith("| MMIB >= fusion") and "no paired runs" in l
               for l in md.splitlines())


def test_mnre_style_posts_join_by_position(tmp_path):
    # MNRE lines carry no id: the reader numbers them "mnre_test-<i>", so the subsets file's
    # own ids (here "pre_<i>") cannot be checked and the position decides
    d = tmp_path / "re"
    d.mkdir()
    (d / "mnre_test.txt").write_bytes((REPO / "tests" / "fixtures" / "mnre_sample.txt")
                                      .read_bytes())
    (d / "test.subsets.jsonl").write_text("".join(
        json.dumps({"id": f"pre_{i}", "subsets": ["collage"] if i == 2 else []}) + "\n"
        for i in range(4)))
    cfg = load_config(None, [f"data.name={d}", "model.type=text", "model.task=re"])
    assert claims.read_subsets(cfg, ["test"]) == {"mnre_test-0": [], "mnre_test-1": [],
                                                  "mnre_test-2": ["collage"],
                                                  "mnre_test-3": []}


def test_seed_interval_is_the_t_interval_of_the_per_seed_differences():
    r = claims.seed_interval([0.01, 0.02, 0.03])
    # mean 0.02, sd 0.01, t(2) = 4.303: half width 4.303 * 0.01 / sqrt(3) = 0.024844
    assert r["seed_mean"] == pytest.approx(0.02)
    assert r["seed_ci_low"] == pytest.approx(0.02 - 0.0248434, abs=1e-6)
    assert r["seed_ci_high"] == pytest.approx(0.02 + 0.0248434, abs=1e-6)
    assert r["seed_wins"] == 3
    one = claims.seed_interval([-0.5])
    assert one["seed_ci_low"] is None and one["seed_wins"] == 0
    assert claims.verdict({"ci_low": None, "ci_high": None}, 0) == "—"
