"""Fast paths: eager PyTorch vs ``torch.compile`` vs ONNX Runtime, bare backbones and their PIP versions.

Run from the repository root::

    nice -n 10 python bench/compile_onnx.py                    # the table of docs/BENCHMARKS.md (minutes)
    python bench/compile_onnx.py --update-docs                  # also write it into docs/BENCHMARKS.md
    python bench/compile_onnx.py --quick --backend aot_eager    # tiny models at 32²: a smoke run

Models (batch 1, 3×``size``×``size``, ``torch.inference_mode``, one thread): NAFNet width 32 (enc 2,2,4,8,
mid 12, dec 2,2,2,2) and PIP-NAFNet (``wrap_with_pip``, 3 types, the wrapper's default sizes); Restormer (the
official configuration) and the release's PIP_Restormer (``PIPNet({"type": "RestormerPIPRelease"})``, 3 types).

Paths, per model:

* eager — the model as built;
* compile — ``torch.compile(model)`` (``--backend``, default inductor); the compile time is the first call's,
  wall and process CPU (inductor compiles in this process: ``compile_threads = 1``);
* onnxruntime — ``torch.onnx.export(dynamo=True)`` (static shape at ``size``) and an onnxruntime session with one
  intra-op thread; the export time is reported, and a failing export is reported with its reason.

Each path's output is compared with eager (max |diff|).  Timing: every (model, path) of one backbone pair runs
round-robin in one process (``bench.common.time_interleaved``), median process CPU time and wall time.
Results go to ``--out`` (``compile_onnx.json``, ``compile_onnx.md``); docs/BENCHMARKS.md only with ``--update-docs``
(or later, from a finished run's folder, with ``--publish DIR``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make `bench` and `pip_adapter` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (BENCH_DOC, REPO_ROOT, command_line, fmt_float, machine_info,  # noqa: E402
                          markdown_table, median, time_interleaved, update_doc_section)
from bench.efficiency import NAFNET_SIDD, RESTORMER_DEFAULT, PIP_SIZES  # noqa: E402
from pip_adapter.backbones import NAFNet, Restormer  # noqa: E402
from pip_adapter.restore.onnx_export import OnnxForward, require, trace_onnx  # noqa: E402
from pip_adapter.utils.io import atomic_path  # noqa: E402
from pip_adapter.wrap.pipnet import PIPNet  # noqa: E402
from pip_adapter.wrap import wrap_with_pip  # noqa: E402

logger = logging.getLogger("bench.compile_onnx")

TYPES = ["noise", "rain", "haze"]
PATHS = ("eager", "compile", "onnxruntime")
DOC_TAG = "compile_onnx"
DOC_TITLE = "Fast paths: eager vs torch.compile vs ONNX Runtime"


def model_pairs(quick: bool = False) -> List[Tuple[str, Dict[str, Callable[[], nn.Module]]]]:
    """(pair name, {"bare": build, "pip": build}) for each backbone of the table (``quick``: tiny versions)."""
    if quick:
        naf = dict(width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])
        rest = dict(RESTORMER_DEFAULT, dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1])
        rest_pip = dict(prompt_dims=[8, 8, 8], prompt_sizes=[4, 4, 4])
        naf_pip = dict(prompt_dims=8, prompt_sizes=8)
        names = ("NAFNet-8", "Restormer-8")
    else:
        naf = dict(NAFNET_SIDD, width=32)
        rest = dict(RESTORMER_DEFAULT)
        rest_pip = dict(PIP_SIZES["restormer"])
        naf_pip = {}
        names = ("NAFNet-32", "Restormer")
    return [
        (names[0], {"bare": lambda: NAFNet(**naf),
                    "pip": lambda: wrap_with_pip(NAFNet(**naf), degradations=TYPES, **naf_pip)}),
        (names[1], {"bare": lambda: Restormer(**rest),
                    "pip": lambda: PIPNet({"type": "RestormerPIPRelease", **rest}, degradations=TYPES, **rest_pip)}),
    ]


class _Bound(nn.Module):
    """``model(x)`` for every model: a PIP model gets the fixed ω (a B×T tensor)."""

    def __init__(self, model: nn.Module, omega: Optional[torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.omega = omega

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.omega is None else self.model(x, self.omega)


def _timed(fn: Callable[[], Any]) -> Tuple[Any, float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _error(err: BaseException, limit: int = 240) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:limit]}" + (" ..." if len(text) > limit else "")


def prepare_paths(model: nn.Module, pip: bool, x: torch.Tensor, paths: Sequence[str], backend: str,
                  onnx_dir: str, tag: str) -> Dict[str, Dict[str, Any]]:
    """For each path: ``fn`` (a no-argument callable running one forward, or None when the path failed), setup
    times (compile / export), and the max |diff| of its output against eager."""
    omega = torch.eye(len(TYPES))[:1] if pip else None
    bound = _Bound(model.eval(), omega).eval()
    with torch.inference_mode():
        reference = bound(x)
    out: Dict[str, Dict[str, Any]] = {}
    for path in paths:
        info: Dict[str, Any] = {"fn": None, "error": None, "setup_wall_s": None, "setup_cpu_s": None, "diff": None}
        try:
            if path == "eager":
                info["fn"] = lambda: bound(x)
                info["diff"] = 0.0
            elif path == "compile":
                compiled = torch.compile(bound, backend=backend)
                with torch.inference_mode():
                    y, info["setup_wall_s"], info["setup_cpu_s"] = _timed(lambda: compiled(x))
                info["fn"] = lambda: compiled(x)
                info["diff"] = float((y - reference).abs().max())
            elif path == "onnxruntime":
                ort = require("onnxruntime", "the onnxruntime path")
                wrapper = OnnxForward(model, pip).eval()
                w = omega if omega is not None else torch.zeros(1, len(TYPES))
                program, info["setup_wall_s"], info["setup_cpu_s"] = _timed(
                    lambda: trace_onnx(wrapper, x.shape[1], len(TYPES), 1, example=(x, w)))
                file = os.path.join(onnx_dir, f"{tag}.onnx")
                with atomic_path(file) as tmp:
                    program.save(tmp, external_data=False)
                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                session = ort.InferenceSession(file, options, providers=["CPUExecutionProvider"])
                feeds = {"image": x.numpy(), "omega": w.numpy()}
                feeds = {k: v for k, v in feeds.items() if k in {i.name for i in session.get_inputs()}}
                y = torch.from_numpy(session.run(None, feeds)[0])
                info["fn"] = lambda: session.run(None, feeds)
                info["diff"] = float((y - reference).abs().max())
            else:
                raise ValueError(f"unknown path {path!r}; use {', '.join(PATHS)}")
            logger.info("%s / %s ready (setup %s s wall, %s s CPU; max diff %s)", tag, path, info["setup_wall_s"],
                        info["setup_cpu_s"], info["diff"])
        except Exception as err:  # noqa: BLE001 - a failing path is a result (reported), not a crash
            logger.warning("%s / %s failed: %s", tag, path, _error(err))
            info["error"] = _error(err)
        out[path] = info
    return out


def measure(size: int = 256, repeats: int = 5, slow_repeats: int = 3, warmup: int = 1, quick: bool = False,
            paths: Sequence[str] = PATHS, backend: str = "inductor", pairs: Optional[Sequence[str]] = None,
            onnx_dir: str = "results/onnx") -> Dict[str, Any]:
    """Measure every (pair, bare/pip, path); returns a JSON-able dict (see :func:`render`)."""
    os.makedirs(onnx_dir, exist_ok=True)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    result: Dict[str, Any] = {"size": size, "backend": backend, "paths": list(paths), "pairs": []}
    for index, (name, builders) in enumerate(model_pairs(quick)):
        if pairs and name not in pairs:
            continue
        torch.manual_seed(0)
        prepared = {}
        for kind in ("bare", "pip"):
            model = builders[kind]().eval()
            prepared[kind] = prepare_paths(model, kind == "pip", x, paths, backend, onnx_dir, f"{name}-{kind}")
        fns = {f"{kind}/{path}": info["fn"] for kind, by in prepared.items() for path, info in by.items()
               if info["fn"] is not None}
        n = repeats if index == 0 else slow_repeats
        cpu: Dict[str, List[float]] = {}
        with torch.inference_mode():
            wall = time_interleaved(fns, n, warmup=warmup, cpu_out=cpu)
        rows = {}
        for kind, by in prepared.items():
            for path, info in by.items():
                key = f"{kind}/{path}"
                rows[key] = {k: v for k, v in info.items() if k != "fn"}
                if key in wall:
                    rows[key].update(wall_s=median(wall[key]), cpu_s=median(cpu[key]), cpu_all_s=cpu[key])
        result["pairs"].append({"name": name, "repeats": n, "rows": rows})
    return result


def ratios(pair: Dict[str, Any], path: str) -> Dict[str, Optional[float]]:
    """PIP/bare CPU-time ratio under ``path`` and speed-ups over eager (bare and PIP)."""
    rows = pair["rows"]

    def cpu(key: str) -> Optional[float]:
        return rows.get(key, {}).get("cpu_s")

    bare, pip = cpu(f"bare/{path}"), cpu(f"pip/{path}")
    bare_e, pip_e = cpu("bare/eager"), cpu("pip/eager")
    return {"pip_over_bare": pip / bare if bare and pip else None,
            "bare_speedup": bare_e / bare if bare_e and bare else None,
            "pip_speedup": pip_e / pip if pip_e and pip else None}


def fastest_ratio(pair: Dict[str, Any], path: str) -> Optional[float]:
    """PIP/bare CPU-time ratio under ``path`` from each model's fastest timed round (None when not timed)."""
    bare = pair["rows"].get(f"bare/{path}", {}).get("cpu_all_s")
    pip = pair["rows"].get(f"pip/{path}", {}).get("cpu_all_s")
    return min(pip) / min(bare) if bare and pip else None


def _cell(row: Dict[str, Any]) -> str:
    if row.get("cpu_s") is None:
        return "fails" if row.get("error") else "—"
    return f"{1e3 * row['cpu_s']:,.0f} ms"


def _setup(row: Dict[str, Any]) -> str:
    if row.get("setup_cpu_s") is None:
        return "—"
    return f"{row['setup_cpu_s']:.0f} ({row['setup_wall_s']:.0f})"


def render(result: Dict[str, Any], info: Dict[str, str], command: str) -> str:
    """The markdown section: one table per backbone pair, the setup times and any failure."""
    parts = [f"Command: `{command}`", "",
             "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()), "",
             f"Input 1×3×{result['size']}×{result['size']}, one thread (torch and onnxruntime), "
             f"`torch.inference_mode`; median process CPU time per forward, every (model, path) of a table timed "
             f"round-robin in one process. compile: `torch.compile(model)`, backend `{result['backend']}`. "
             "onnxruntime: `torch.onnx.export(dynamo=True)` at this size, CPU execution provider."]
    failures = []
    for pair in result["pairs"]:
        rows = pair["rows"]
        table = []
        for path in result["paths"]:
            r = ratios(pair, path)
            bare, pip = rows.get(f"bare/{path}", {}), rows.get(f"pip/{path}", {})
            table.append([path,
                          _cell(bare) + (f" ({r['bare_speedup']:.2f}×)" if path != "eager" and r["bare_speedup"]
                                         else ""),
                          _cell(pip) + (f" ({r['pip_speedup']:.2f}×)" if path != "eager" and r["pip_speedup"]
                                        else ""),
                          fmt_float(r["pip_over_bare"]),
                          " / ".join(_setup(x) for x in (bare, pip)),
                          " / ".join("—" if x.get("diff") is None else f"{x['diff']:.0e}" for x in (bare, pip))])
            for kind, row in (("bare", bare), ("PIP", pip)):
                if row.get("error"):
                    failures.append(f"- {pair['name']} {kind}, {path}: {row['error']}")
        parts += ["", f"**{pair['name']}** ({pair['repeats']} timed rounds):", "",
                  markdown_table(["path", "bare", "PIP", "PIP / bare", "setup: CPU s (wall s), bare / PIP",
                                  "max diff vs eager (bare / PIP)"], table)]
        fastest = [f"{path} {fmt_float(r)}" for path in PATHS if (r := fastest_ratio(pair, path)) is not None]
        if fastest:
            # a busy machine only ever adds time, so the fastest rounds are the least disturbed
            parts += ["", "PIP / bare from each model's fastest round: " + ", ".join(fastest) + "."]
    parts += ["", "(×: speed-up over eager of the same model, by CPU time; setup: the compile time of the first "
                  "call, or the ONNX export time, in CPU seconds of this process — inductor's C++ compiler runs in "
                  "child processes and is not counted — and, in brackets, wall seconds, which include it but on a "
                  "loaded machine measure the load as much as the work.)"]
    if failures:
        parts += ["", "Failures:", ""] + failures
    return "\n".join(parts) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds for the NAFNet pair")
    ap.add_argument("--slow-repeats", type=int, default=3, help="timed rounds for the Restormer pair")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backend", default="inductor", help="torch.compile backend (aot_eager: no code generation)")
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    ap.add_argument("--pairs", nargs="+", default=None, help="only these backbone pairs (e.g. NAFNet-32)")
    ap.add_argument("--quick", action="store_true", help="tiny models (use with --size 32)")
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "results"), help="folder of the JSON and markdown")
    ap.add_argument("--update-docs", action="store_true", help="also write the section of docs/BENCHMARKS.md")
    ap.add_argument("--doc", default=BENCH_DOC, help="the markdown file --update-docs / --publish write into")
    ap.add_argument("--publish", metavar="DIR", nargs="+", default=None,
                    help="measure nothing: write DIR/compile_onnx.md of earlier runs (each with its command, one "
                         "after the other) into the --doc file")
    args = ap.parse_args(argv)
    if args.publish:
        texts, results = [], []
        for folder in args.publish:
            with open(os.path.join(folder, "compile_onnx.json"), encoding="utf-8") as fh:
                results.append(json.load(fh))
            if "command" in results[-1]:  # re-rendered: the table's layout may have improved since the run
                texts.append(render(results[-1], results[-1]["machine"], results[-1]["command"]).strip())
            else:
                with open(os.path.join(folder, "compile_onnx.md"), encoding="utf-8") as fh:
                    texts.append(fh.read().strip())
        update_doc_section(DOC_TAG, "\n\n---\n\n".join(texts), path=args.doc, title=DOC_TITLE)
        return {"pairs": [pair for r in results for pair in r["pairs"]]}
    torch.set_num_threads(args.threads)
    if args.backend == "inductor":
        import torch._inductor.config as inductor_config
        inductor_config.compile_threads = 1  # compile in this process: its CPU time is the compile's
    load = os.getloadavg()
    result = measure(size=args.size, repeats=args.repeats, slow_repeats=args.slow_repeats, warmup=args.warmup,
                     quick=args.quick, paths=args.paths, backend=args.backend, pairs=args.pairs,
                     onnx_dir=os.path.join(args.out, "onnx"))
    load_after = os.getloadavg()
    info = machine_info()
    info["load average (1 min) before / after"] = f"{load[0]:.1f} / {load_after[0]:.1f}"
    text = render(result, info, command_line())
    result["machine"], result["command"] = info, command_line()
    os.makedirs(args.out, exist_ok=True)
    for name, content in (("compile_onnx.json", json.dumps(result, indent=1)), ("compile_onnx.md", text)):
        with atomic_path(os.path.join(args.out, name)) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(content)
    print(text)
    if args.update_docs:
        update_doc_section(DOC_TAG, text, path=args.doc, title=DOC_TITLE)
    return result


if __name__ == "__main__":
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s: %(message)s")
    logger.setLevel(logging.INFO)
    main()
