"""Automatic ω against the true ω on the built-in validation sets: PSNR/SSIM per set and the confusion matrix.

Run from the repository root, after training a restorer (e.g. ``pip-adapter quickstart``) and the classifier
(``basicsr train -opt basicsr_options/classifier_builtin.yml``) and exporting both::

    python bench/classifier_auto.py -m model.safetensors --classifier classifier.safetensors \
        [--data datasets/builtin] [--json OUT.json]

With ``--draws N`` the classifier alone is also scored on N fresh degradations per type of every
validation photo (new random draws of the same synthesisers, seeded): a larger check than 2 images per set.

Every validation image is restored three times: with its set's true ω, with ``auto`` (the classifier's
probabilities are ω) and with ``auto --auto-mode argmax`` (only its top type); the PSNR/SSIM protocol is that
of ``pip-adapter evaluate`` (RGB float in [0, 1], scikit-image SSIM).  Prints markdown tables.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List

if __package__ in (None, ""):  # run as a script: make `bench` and `pip_adapter` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import command_line, fmt_float, markdown_table  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pip_adapter.image_io import read_image_file  # noqa: E402
from pip_adapter.data.outdir import read_manifest  # noqa: E402
from pip_adapter.degradations import get_synthesizer  # noqa: E402
from pip_adapter.data.standard import pair_folders  # noqa: E402
from pip_adapter.restore.evaluate import BenchmarkSet, evaluate_set  # noqa: E402
from pip_adapter.restore.restorer import Restorer  # noqa: E402


def builtin_val_sets(root: str) -> List[Dict[str, Any]]:
    """``[{"set": BenchmarkSet, "pairs": [(name, lq, gt)]}]`` for every validation folder of built-in data."""
    man = read_manifest(root)
    if man is None or man.get("kind") != "builtin":
        raise FileNotFoundError(f"{root} is not built-in data (no manifest.json); run "
                                "`pip-adapter prepare-data --builtin DIR`")
    out = []
    for vs in man["val_sets"]:
        lq_dir, gt_dir = os.path.join(root, "val", vs["name"]), os.path.join(root, "val", "gt")
        pairs = [(os.path.basename(lq), lq, gt) for lq, gt in pair_folders(lq_dir, gt_dir, task=vs["name"])]
        out.append({"set": BenchmarkSet(vs["name"], vs["name"], vs["degradation"]), "pairs": pairs})
    return out


def run(model: str, classifier: str, data: str) -> Dict[str, Any]:
    """PSNR/SSIM per validation set for true ω, auto (weights) and auto (argmax), and the confusion matrix."""
    restorer = Restorer.from_checkpoint(model, classifier=classifier, device="cpu")
    names = list(restorer.degradations)
    confusion = [[0] * len(names) for _ in names]
    rows = []
    for item in builtin_val_sets(data):
        s, pairs = item["set"], item["pairs"]
        true = evaluate_set(restorer, s, pairs, omega="true")
        weights = evaluate_set(restorer, s, pairs, omega="auto", auto_mode="weights")
        argmax = evaluate_set(restorer, s, pairs, omega="auto", auto_mode="argmax")
        for img in argmax["images"]:
            confusion[names.index(s.degradation)][names.index(img["predicted"])] += 1
        rows.append({"set": s.key, "degradation": s.degradation, "count": true["count"],
                     "input_psnr": true["input_psnr"], "true_psnr": true["psnr"], "true_ssim": true["ssim"],
                     "auto_psnr": weights["psnr"], "auto_ssim": weights["ssim"], "argmax_psnr": argmax["psnr"],
                     "argmax_ssim": argmax["ssim"], "accuracy": argmax["classifier_accuracy"],
                     "omega_auto": [img["omega"] for img in weights["images"]]})
    return {"command": command_line(), "labels": names, "sets": rows, "confusion": confusion}


def fresh_draws_confusion(classifier: Any, data: str, draws: int, seed: int = 1) -> Dict[str, Any]:
    """Confusion of ``classifier`` on ``draws`` new degradations per type of each clean validation photo."""
    names = list(classifier.degradations)
    gt_dir = os.path.join(data, "val", "gt")
    photos = sorted(f for f in os.listdir(gt_dir) if f.endswith(".png"))
    confusion = [[0] * len(names) for _ in names]
    for t, name in enumerate(names):
        synth = get_synthesizer(name)
        variants = synth.variants or [{}]
        for p, photo in enumerate(photos):
            clean = read_image_file(os.path.join(gt_dir, photo))
            for k in range(draws):
                rng = np.random.default_rng([seed, t, p, k])
                lq = synth(clean, rng, **variants[k % len(variants)])
                x = torch.from_numpy(lq).permute(2, 0, 1).float() / 255.0
                confusion[t][int(classifier.predict_proba(x).argmax())] += 1
    per_type = {n: confusion[i][i] / max(1, sum(confusion[i])) for i, n in enumerate(names)}
    return {"draws": draws, "seed": seed, "photos": photos, "confusion": confusion, "per_type": per_type}


def report(res: Dict[str, Any]) -> str:
    """Markdown: the PSNR table and the confusion matrix."""
    rows = [[r["set"], r["count"], fmt_float(r["input_psnr"]), fmt_float(r["true_psnr"]), fmt_float(r["auto_psnr"]),
             fmt_float(r["argmax_psnr"]), fmt_float(r["accuracy"])] for r in res["sets"]]
    n = len(res["sets"])
    mean = [sum(r[k] for r in res["sets"]) / n for k in ("input_psnr", "true_psnr", "auto_psnr", "argmax_psnr")]
    rows.append(["average", sum(r["count"] for r in res["sets"])] + [fmt_float(m) for m in mean] + [""])
    table = markdown_table(["val set", "images", "input PSNR", "true ω", "auto (weights)", "auto (argmax)",
                            "classifier top-1"], rows)
    labels = res["labels"]
    conf = markdown_table(["true \\ predicted"] + labels,
                          [[labels[i]] + row for i, row in enumerate(res["confusion"])])
    text = f"{table}\n\nConfusion (argmax, every validation image):\n\n{conf}\n"
    fresh = res.get("fresh")
    if fresh:
        rows = [[labels[i]] + row + [fmt_float(fresh["per_type"][labels[i]])] for i, row in
                enumerate(fresh["confusion"])]
        text += (f"\nClassifier on {fresh['draws']} fresh draws per type of each validation photo "
                 f"(seed {fresh['seed']}):\n\n" + markdown_table(["true \\ predicted"] + labels + ["accuracy"], rows)
                 + "\n")
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", required=True, help="exported restorer (pip-adapter export)")
    p.add_argument("--classifier", default=None, help="exported classifier (when the model has none bundled)")
    p.add_argument("--data", default="datasets/builtin", help="built-in data folder (default datasets/builtin)")
    p.add_argument("--draws", type=int, default=0, help="also score the classifier on N fresh draws per type")
    p.add_argument("--json", default=None, help="also write the numbers here")
    args = p.parse_args()
    res = run(args.model, args.classifier, args.data)
    if args.draws:
        restorer = Restorer.from_checkpoint(args.model, classifier=args.classifier, device="cpu")
        res["fresh"] = fresh_draws_confusion(restorer.classifier, args.data, args.draws)
    print(report(res))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
