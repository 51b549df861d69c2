"""The ``mmie`` command: thin wrappers around importable functions.

Each command imports the subsystem it runs (training, inference, the service, the plots, the
data tools) when it runs: they pull in torch, Lightning, transformers, FastAPI or matplotlib
(seconds each), so ``mmie --help`` and the other commands start without them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

import mmie
from mmie import registry
from mmie.config import load_config
from mmie.data.images import resolve_image
from mmie.data.io import iter_json_objects
from mmie.data.photos import add_arguments as photos_arguments
from mmie.errors import DataError, MMIEError
from mmie.inference.outputs import to_json, to_jsonl
from mmie.logs import setup_cli_logging

EXAMPLES = {
    "train": "mmie train configs/mmib_twitter2015.yaml --set trainer.max_epochs=10 --set seed=2",
    "evaluate": "mmie evaluate runs/mmib-twitter2015/model --data twitter2015 --split test "
                "--output preds.jsonl",
    "predict": "mmie predict runs/mmib-twitter2015/model --text 'Jordan scores 30 in Chicago' "
               "--image post.jpg",
    "serve": "mmie serve runs/mmib-twitter2015/model --port 8000",
    "plot": "mmie plot runs/mmib-twitter2015",
    "plot-zs": "mmie plot-zs runs/mgvmoe-wikidiverse/model --split test --out-dir figs",
    "demo": "mmie demo --output-dir runs/demo",
    "data": "mmie data stats twitter2015 --data-dir ../shared/data --json",
    "extract": "mmie extract --ner runs/ner/model --re runs/re/model --text '...' --image post.jpg",
}


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="mmie", formatter_class=fmt,
                                description="Multimodal information extraction (text + image): "
                                "MMIB, MG-VMoE, baselines.\n\nExamples:\n  " +
                                "\n  ".join(EXAMPLES.values()))
    p.add_argument("--version", action="version", version=f"mmie {mmie.__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        ex = EXAMPLES.get(name)
        return sub.add_parser(name, help=help_, formatter_class=fmt, description=help_ +
                              (f"\n\nExample:\n  {ex}" if ex else ""))

    # data ------------------------------------------------------------------------------------
    d = add("data", "inspect, validate, download or generate data sets")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION")
    st = dsub.add_parser("stats", help="per-split counts of a data set (name or path)",
                         description="Example:\n  mmie data stats twitter2015 --data-dir ../shared/data",
                         formatter_class=fmt)
    st.add_argument("name")
    st.add_argument("--data-dir", help="data root (default $MMIE_DATA, then ../shared/data)")
    st.add_argument("--image-dir")
    st.add_argument("--json", action="store_true")
    va = dsub.add_parser("validate", help="check files, SHA-256 and counts against the catalog",
                         description="Example:\n  mmie data validate twitter2015 --data-dir "
                         "../shared/data", formatter_class=fmt)
    va.add_argument("name")
    va.add_argument("--data-dir")
    va.add_argument("--json", action="store_true")
    dl = dsub.add_parser("download", help="download a data set's text files (needs internet)",
                         description="Example:\n  mmie data download mnre --data-dir data",
                         formatter_class=fmt)
    dl.add_argument("name")
    dl.add_argument("--data-dir")
    sy = dsub.add_parser("synthetic", help="generate the synthetic demo set (text + pictures)",
                         description="Example:\n  mmie data synthetic data/synthetic --n-train 600",
                         formatter_class=fmt)
    sy.add_argument("output_dir")
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--n-train", type=int, default=600, help="posts per task in train")
    sy.add_argument("--n-valid", type=int, help="posts per task in valid (default: n-train / 4)")
    sy.add_argument("--n-test", type=int, help="posts per task in test (default: n-train / 4)")
    sy.add_argument("--image-size", type=int, default=128, help="picture side in pixels")
    photos_arguments(dsub.add_parser("photos", help="build the real-photo benchmark (photos_ner, "
                                 "photos_re, photos_typing)", formatter_class=fmt,
                                 description="Example:\n  mmie data photos data/photos "
                                 "--size small   (docs/data.md)"))
    bx = dsub.add_parser("boxes", help="run the object/face detector over a data set's "
                         "pictures and write a boxes file (data.boxes_file)",
                         description="Example:\n  mmie data boxes ../shared/data --data "
                         "twitter2015 --out boxes.jsonl\n  mmie data boxes data/photos "
                         "--out photos_boxes.jsonl   (a directory of files)",
                         formatter_class=fmt)
    bx.add_argument("data_dir", help="data root, or the data set's directory when --data is "
                    "omitted")
    bx.add_argument("--data", help="catalog name (twitter2015, mnre, synthetic, ...); default: "
                    "DATA_DIR is the data set's directory")
    bx.add_argument("--out", required=True, help="boxes file to write (JSON lines)")
    bx.add_argument("--image-dir")
    bx.add_argument("--threads", type=int, default=None,
                    help="OpenCV threads for the detector (default: OpenCV's choice)")
    bx.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="data.detector, data.max_objects, "
                    "data.detector_threshold, ... (must match the training run's)")

    # train -----------------------------------------------------------------------------------
    t = add("train", "train a model from a YAML recipe (configs/) with overrides")
    t.epilog = "model types (model.type, the model.task values each trains on):\n" + "\n".join(
        f"  {m.name:<10} {'/'.join(m.tasks):<10} {m.summary}"
        + (f" [options: model.{m.options}.*]" if m.options else "")
        for m in registry.MODEL_TYPES.values())
    t.add_argument("config", nargs="?", help="YAML recipe; defaults apply when omitted")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set trainer.max_epochs=10 (repeatable)")
    t.add_argument("--output-dir", help="run directory (config key output_dir)")
    t.add_argument("--data-dir", help="data root (config key data.data_dir; default $MMIE_DATA, "
                   "then ../shared/data)")
    t.add_argument("--seed", type=int)
    t.add_argument("--devices", help="devices per node (trainer.devices), e.g. 2")
    t.add_argument("--strategy", help="trainer.strategy, e.g. ddp")
    t.add_argument("--accelerator", help="cpu, gpu or auto (trainer.accelerator)")
    t.add_argument("--num-nodes", type=int, help="trainer.num_nodes")
    t.add_argument("--precision", help="trainer.precision, e.g. bf16-mixed")
    t.add_argument("--resume", action="store_true", help="continue from checkpoints/last.ckpt")

    # evaluate ----------------------------------------------------------------------------------
    e = add("evaluate", "score a saved model on a split and write per-example predictions")
    e.add_argument("model_dir")
    e.add_argument("--data", help="catalog name or directory (default: the training data)")
    e.add_argument("--data-dir")
    e.add_argument("--image-dir")
    e.add_argument("--image-policy", choices=["error", "skip", "blank"])
    e.add_argument("--split", default="test")
    e.add_argument("--output", help="predictions JSONL (gold and predicted per example)")
    e.add_argument("--limit", type=int)
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--json", action="store_true", help="print the full JSON result")

    # predict -----------------------------------------------------------------------------------
    pr = add("predict", "predict on new text (+ picture), or on a JSONL file of posts")
    pr.add_argument("model_dir")
    pr.add_argument("--text")
    pr.add_argument("--image", help="path of the picture (optional)")
    pr.add_argument("--head", help="head mention character offsets START,END (RE, typing)")
    pr.add_argument("--tail", help="tail mention character offsets START,END (RE)")
    pr.add_argument("--candidate-labels", help="comma-separated labels (zero-shot models)")
    pr.add_argument("--input", help='JSONL: one {"text", "image", "head", "tail"} per line')
    pr.add_argument("--output", help="write results as JSONL here (default: stdout)")
    pr.add_argument("--device", default="cpu", help="where the model runs: cpu (default), "
                    "cuda, cuda:1, ...")
    pr.add_argument("--image-decode", choices=["host", "device", "nvjpeg"], default="host",
                    help="host (default): pictures decoded and resized with Pillow; device: "
                    "JPEGs decoded by libjpeg-turbo, resized on --device (pixels within 2 "
                    "grey levels of host); nvjpeg: decoded on the GPU too (further off)")

    # extract ---------------------------------------------------------------------------------
    ex = add("extract", "raw post (+ picture) -> entities and relations (NER then RE)")
    ex.add_argument("--ner", required=True, help="NER model directory")
    ex.add_argument("--re", required=True, help="RE model directory")
    ex.add_argument("--text")
    ex.add_argument("--image")
    ex.add_argument("--input")
    ex.add_argument("--output")
    ex.add_argument("--no-type-constraints", action="store_true")
    ex.add_argument("--device", default="cpu", help="where the models run (cpu, cuda, ...)")
    ex.add_argument("--image-decode", choices=["host", "device", "nvjpeg"], default="host",
                    help="as for predict")

    # serve / plot / demo -----------------------------------------------------------------------
    s = add("serve", "HTTP service and web page for a saved model")
    s.add_argument("model_dir")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--re", dest="re_model", help="an RE model directory: adds POST /extract "
                   "(entities and relations from raw text) with MODEL_DIR as the NER model")
    s.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every route but the "
                   "page and /health (default: $MMIE_TOKEN; none = open)")
    pl = add("plot", "write PNG figures (loss terms, dev metrics, confusion) of a run")
    pl.add_argument("run_dir")
    pl.add_argument("--out-dir")
    pz = add("plot-zs", "write PNG diagnostics of a saved MG-VMoE model on a split: expert "
                        "routing per gold label and a 2-D PCA of instance and label vectors")
    pz.add_argument("model_dir")
    pz.add_argument("--split", default="test", help="train, dev or test (test = unseen labels)")
    pz.add_argument("--data", help="catalog name or directory (default: the training data)")
    pz.add_argument("--data-dir")
    pz.add_argument("--out-dir", help="default: <MODEL_DIR>/../plots")
    pz.add_argument("--limit", type=int, help="use only the first N instances of the split")
    dm = add("demo", "the main job on the embedded defaults: generate the synthetic set, train "
                     "MMIB, evaluate, reload and predict")
    dm.add_argument("--output-dir", default="runs/demo")
    dm.add_argument("--epochs", type=int, default=4)
    dm.add_argument("--task", choices=["ner", "re"], default="ner")
    dm.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def _offsets(text: str | None, name: str) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise MMIEError(f"--{name} must be START,END character offsets, got {text!r}") from None
    return a, b


def _read_jsonl_items(path: str, with_lines: bool = False) -> list[Any]:
    """The JSON objects of a JSONL file (blank lines skipped); with ``with_lines``,
    ``(line_number, object)`` pairs."""
    return [(lineno, d) if with_lines else d for lineno, d in iter_json_objects(path)]


def check_output_file(output: str | None, flag: str = "--output") -> None:
    """Fail before any work when ``output`` cannot be written: its folder must exist and be
    writable, and the path must not be a directory."""
    if output is None:
        return
    out = Path(output)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise MMIEError(f"{flag} {out}: is a directory; give a file name")
    if not parent.is_dir():
        raise MMIEError(f"{flag} {out}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MMIEError(f"{flag} {out}: the folder {parent} is not writable")


def _write_results(results: list[Any], output: str | None) -> None:
    if output is None:
        for r in results:
            print(to_jsonl(r))
        return
    out = Path(output)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in results:
            f.write(to_jsonl(r) + "\n")
    tmp.replace(out)
    print(f"wrote {len(results)} results to {out}", file=sys.stderr)


def cmd_data(a: argparse.Namespace) -> int:
    from mmie.data import catalog, stats

    if a.data_command == "stats":
        d = stats.dataset_stats(a.name, data_dir=a.data_dir, image_dir=a.image_dir)
        print(json.dumps(d, indent=2) if a.json else stats.format_stats(d))
    elif a.data_command == "validate":
        rep = catalog.validate(a.name, data_dir=a.data_dir)
        if a.json:
            _print_json(rep.to_dict())
        else:
            print(rep)
        return 0 if rep.ok else 1
    elif a.data_command == "download":
        catalog.download(a.name, data_dir=a.data_dir)
    elif a.data_command == "synthetic":
        from mmie.data.synthetic import generate

        n = a.n_train
        quarter = max(1, n // 4)
        _print_json(generate(a.output_dir, seed=a.seed, n_train=n,
                             n_valid=quarter if a.n_valid is None else a.n_valid,
                             n_test=quarter if a.n_test is None else a.n_test,
                             image_size=a.image_size))
    elif a.data_command == "photos":
        from mmie.data.photos.build import run_cli

        return run_cli(a)
    elif a.data_command == "boxes":
        from mmie.training.boxes import dataset_boxes

        over = [f"data.name={a.data or a.data_dir}"]
        if a.data:
            over.append(f"data.data_dir={a.data_dir}")
        if a.image_dir:
            over.append(f"data.image_dir={a.image_dir}")
        if a.threads is not None:
            from mmie.encoders.detector import _cv2

            _cv2().setNumThreads(a.threads)
        _print_json(dataset_boxes(load_config(None, over + list(a.overrides)), a.out))
    else:
        print("usage: mmie data {stats,validate,download,synthetic,photos,boxes} ...",
              file=sys.stderr)
        return 2
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from mmie.training.train import train

    extra: dict[str, Any] = {}
    tr: dict[str, Any] = {}
    if a.output_dir:
        extra["output_dir"] = a.output_dir
    if a.seed is not None:
        extra["seed"] = a.seed
    if a.data_dir:
        extra["data"] = {"data_dir": a.data_dir}
    if a.devices is not None:
        tr["devices"] = int(a.devices) if str(a.devices).isdigit() else a.devices
    for key in ("strategy", "accelerator", "num_nodes", "precision"):
        if getattr(a, key) is not None:
            tr[key] = getattr(a, key)
    if tr:
        extra["trainer"] = tr
    cfg = load_config(a.config, a.overrides, extra)
    from mmie.logs import tame_lightning

    tame_lightning()
    summary = train(cfg, resume=a.resume)
    if summary:
        _print_json({k: v for k, v in summary.items() if k != "report"})
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from mmie.inference.evaluate import evaluate

    check_output_file(a.output)
    res = evaluate(a.model_dir, data=a.data, split=a.split, data_dir=a.data_dir,
                   image_dir=a.image_dir, image_policy=a.image_policy, output=a.output,
                   batch_size=a.batch_size, limit=a.limit)
    if a.json:
        _print_json(res)
    else:
        keys = [k for k in ("precision", "recall", "f1", "strict_f1", "accuracy", "macro_f1")
                if k in res]
        print(f"{res['data']} {res['split']} (n={res['n']}): " +
              "  ".join(f"{k}={res[k]:.4f}" for k in keys))
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from mmie.inference.predictor import load

    if a.input is None and a.text is None:
        raise MMIEError("give --text (and optionally --image) or --input FILE.jsonl")
    check_output_file(a.output)
    pred = load(a.model_dir, device=a.device, image_decode=a.image_decode)
    if a.input:
        numbered = _read_jsonl_items(a.input, with_lines=True)
        items = [d for _, d in numbered]
        results = []
        for i in tqdm(range(0, len(items), 32), desc="predict", disable=len(items) <= 32):
            try:
                results.extend(pred.run(items[i:i + 32]))
            except DataError:
                # find the offending line so the message names it (nothing is written)
                for lineno, item in numbered[i:i + 32]:
                    try:
                        pred.preprocess([item])
                    except DataError as e:
                        raise DataError(e.reason, path=a.input, line=lineno,
                                        field=e.field) from None
                raise
        _write_results(results, a.output)
        return 0
    cands = [c.strip() for c in a.candidate_labels.split(",")] if a.candidate_labels else None
    item = {"text": a.text, "image": a.image, "head": _offsets(a.head, "head"),
            "tail": _offsets(a.tail, "tail"), "candidate_labels": cands}
    res = pred.run([{k: v for k, v in item.items() if v is not None}])[0]
    if a.output:
        _write_results([res], a.output)
    else:
        _print_json(to_json(res))
    return 0


def cmd_extract(a: argparse.Namespace) -> int:
    from mmie.inference.pipeline import pipeline

    if a.input is None and a.text is None:
        raise MMIEError("give --text (and optionally --image) or --input FILE.jsonl")
    check_output_file(a.output)
    pipe = pipeline(ner=a.ner, re=a.re, type_constraints=not a.no_type_constraints,
                    device=a.device, image_decode=a.image_decode)
    if a.input:
        items = _read_jsonl_items(a.input)
        _write_results(pipe.extract_batch(items, progress=True), a.output)
        return 0
    res = pipe.extract(a.text, image=a.image)
    if a.output:
        _write_results([res], a.output)
    else:
        _print_json(res)
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from mmie.serve.app import serve

    serve(a.model_dir, host=a.host, port=a.port, re_model_dir=a.re_model, token=a.token)
    return 0


def cmd_plot(a: argparse.Namespace) -> int:
    from mmie.plots.figures import plot_run

    for p in plot_run(a.run_dir, a.out_dir):
        print(p)
    return 0


def cmd_plot_zs(a: argparse.Namespace) -> int:
    from mmie.plots.zeroshot import plot_zero_shot

    for p in plot_zero_shot(a.model_dir, split=a.split, data=a.data, data_dir=a.data_dir,
                            out_dir=a.out_dir, limit=a.limit):
        print(p)
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    """Synthetic set -> MMIB training -> test evaluation -> reload -> prediction. Quiet unless
    ``-v``: one progress bar and one line per epoch, the summary table, the prediction."""
    from mmie.data.tokenize import join_words
    from mmie.inference.predictor import load
    from mmie.logs import tame_lightning, verbose
    from mmie.training.data import image_dir_for, load_examples
    from mmie.training.progress import EpochLines
    from mmie.training.train import train

    cfg_file = Path(__file__).resolve().parents[2] / "configs" / f"mmib_synthetic_{a.task}.yaml"
    overrides = [f"output_dir={a.output_dir}", f"trainer.max_epochs={a.epochs}"]
    callbacks = []
    if not verbose():  # Lightning's bars (train, validation, test) -> one bar + line per epoch
        overrides.append("trainer.progress=false")
        callbacks.append(EpochLines())
    cfg = load_config(cfg_file if cfg_file.exists() else None, [*overrides, *a.overrides],
                      None if cfg_file.exists() else {"model": {"task": a.task}})
    tame_lightning()
    summary = train(cfg, callbacks=callbacks)
    if verbose():
        _print_json({k: v for k, v in summary.items() if k != "report"})
    print(summary_table(summary))
    pred = load(Path(a.output_dir) / "model")
    ex = load_examples(cfg, "test")[0]
    img_dir = image_dir_for(cfg, "test")
    found = resolve_image(img_dir, ex.image) if img_dir and ex.image else None
    image = str(found) if found else None
    text, offs = join_words(ex.tokens)  # the post as written, not its words re-joined
    item: dict[str, Any] = {"text": text, "image": image}
    if a.task != "ner":
        h, t = ex.head, ex.tail
        item.update(head=(offs[h.start][0], offs[h.end - 1][1]),
                    tail=(offs[t.start][0], offs[t.end - 1][1]))
    res = pred.run([item])[0]
    print(f"\nreloaded {a.output_dir}/model and predicted on a test post:\n  text:  {text}\n"
          f"  image: {image}")
    _print_json(to_json(res))
    return 0


def summary_table(summary: dict[str, Any]) -> str:
    """The end-of-training summary: scores of the selected model on dev and test, and how it
    was selected."""
    keys = [k for k in ("precision", "recall", "f1", "strict_f1", "accuracy", "macro_f1")
            if k in summary["test"]]
    rows = [["split", *keys]] + [[s, *(f"{summary[s][k]:.4f}" for k in keys)]
                                 for s in ("dev", "test")]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    head = (f"{summary['model']} on {summary['data']} ({summary['task']}): "
            f"{summary['epochs_run']} epochs, best epoch {summary['best_epoch']} (selected on "
            f"{summary['selected_on']}), {summary['train_seconds']:.1f} s on {summary['device']}")
    return "\n".join(["", head, *lines, f"model saved to {summary['model_dir']}"])


COMMANDS = {"data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate,
            "predict": cmd_predict, "extract": cmd_extract, "serve": cmd_serve,
            "plot": cmd_plot, "plot-zs": cmd_plot_zs, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    a = parser.parse_args(argv)
    setup_cli_logging(a.verbose)
    if a.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[a.command](a) or 0
    except MMIEError as e:
        print(f"mmie {a.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
