"""Mixed precision and PIP's memory: fp32 vs bf16 inference (latency, peak memory, PIP/bare) and training steps.

Run from the repository root::

    python bench/precision.py --threads 1                 # CPU: the efficiency models at 256², fp32 and bf16
    python bench/precision.py --quick                     # tiny models at 64²: a smoke run in seconds
    python bench/precision.py --device cuda --compile     # on a GPU, with torch.compile'd rows
    python bench/precision.py --update-docs               # also replace its sections of docs/BENCHMARKS.md

Results go to ``--out-dir`` (default ``bench_results/precision``: ``precision.md`` and ``precision.json``);
``docs/BENCHMARKS.md`` changes only with ``--update-doc``.

Inference (batch 1, ``torch.inference_mode``): every model of ``bench/efficiency.py``'s set under fp32 and under
``torch.autocast`` to bf16 (``--precisions``); PIP models also with the full-resolution P2F in row bands
(``PIPLevel.set_p2f_chunking``, what ``Restorer`` uses).  A backbone and its PIP versions, in every precision,
are timed interleaved in one process; peak memory as in ``bench/efficiency.py`` (CPU: peak-RSS growth of one
forward in a fresh interpreter; CUDA: ``max_memory_allocated`` growth).

Training: one step (``feed_data`` + ``optimize_parameters`` + ``update_learning_rate``) of BasicSR's ``SRModel``
on the bare NAFNet, and of ``PIPModel`` on the bare NAFNet and on PIPNet, in fp32 and with ``train.amp``
(``SRModel`` has no mixed precision: the bare network's bf16 step is ``PIPModel``'s, which calls a network
without PIP levels as ``SRModel`` does).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make `bench` and `pip_adapter` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (REPO_ROOT, command_line, fmt_float, machine_info, markdown_table, median,  # noqa: E402
                          run_json_subprocess, time_interleaved, update_doc_section)
from bench.efficiency import MALLOC_ENV, SPEC_SETS, ModelSpec  # noqa: E402
from bench import train_cost  # noqa: E402
from pip_adapter.modules.pip_level import set_p2f_chunking  # noqa: E402
from pip_adapter.restore.restorer import P2F_CHUNK_PIXELS  # noqa: E402
from pip_adapter.utils.precision import PRECISIONS  # noqa: E402

logger = logging.getLogger("bench.precision")
DEFAULT_OUT_DIR = os.path.join("bench_results", "precision")


@dataclass
class Variant:
    """One way of running one model: precision, P2F bands (pixels, 0 = off), compiled or not."""
    spec: str
    group: str
    baseline: Optional[str]
    precision: str
    chunk: int = 0
    compiled: bool = False

    @property
    def key(self) -> str:
        return f"{self.spec} | {self.precision} | {self.chunk} | {int(self.compiled)}"

    @property
    def setting(self) -> str:
        parts = [self.precision] + (["P2F in bands"] if self.chunk else []) + (["compiled"] if self.compiled else [])
        return ", ".join(parts)


@dataclass
class InferenceRow:
    """Measurements of one variant."""
    variant: Variant
    latency_s: Optional[float] = None
    cpu_time_s: Optional[float] = None
    peak_mem_bytes: Optional[int] = None


def autocast(device: torch.device, precision: str):
    """``torch.autocast`` to the precision's dtype, or nothing for fp32."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def variants(specs: Sequence[ModelSpec], precisions: Sequence[str], chunk: int, compiled: bool) -> List[Variant]:
    """Every variant measured: each model in each precision; PIP models also in bands; compiled copies."""
    out = []
    for s in specs:
        for p in precisions:
            out.append(Variant(s.name, s.group, s.baseline, p))
            if s.pip and chunk:
                out.append(Variant(s.name, s.group, s.baseline, p, chunk=chunk))
            if compiled:
                out.append(Variant(s.name, s.group, s.baseline, p, compiled=True))
    return out


def _call(model: nn.Module, x: torch.Tensor, v: Variant) -> Callable[[], object]:
    def run() -> object:
        set_p2f_chunking(model, v.chunk)
        with torch.inference_mode(), autocast(x.device, v.precision):
            return model(x)
    return run


def memory_child(spec_set: str, name: str, size: int, threads: int, precision: str, chunk: int) -> dict:
    """Body of the fresh interpreter that measures one variant's CPU peak memory (as bench/efficiency.py)."""
    from bench.common import current_rss_bytes, peak_rss_bytes, reset_peak_rss

    torch.set_num_threads(threads)
    spec = {s.name: s for s in SPEC_SETS[spec_set]()}[name]
    model = spec.build().eval()
    set_p2f_chunking(model, chunk)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), autocast(x.device, precision):
        model(x)  # warm-up: one-time buffers are not activations
    gc.collect()
    before = current_rss_bytes() if reset_peak_rss() else max(current_rss_bytes(), peak_rss_bytes())
    with torch.inference_mode(), autocast(x.device, precision):
        model(x)
    return {"peak_mem_bytes": max(0, peak_rss_bytes() - before)}


def _cpu_peak(spec_set: str, v: Variant, size: int) -> Optional[int]:
    code = ("import json; from bench.precision import memory_child; print(json.dumps(memory_child("
            f"{spec_set!r}, {v.spec!r}, {size}, {torch.get_num_threads()}, {v.precision!r}, {v.chunk})))")
    try:
        return int(run_json_subprocess(code, env_extra=MALLOC_ENV)["peak_mem_bytes"])
    except (RuntimeError, OSError, ValueError, KeyError) as err:
        logger.warning("peak memory of %s not measured: %s", v.key, err)
        return None


def _cuda_peak(fn: Callable[[], object], device: torch.device) -> int:
    fn()  # warm-up (compiled variants compile here)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - before)


def measure_inference(spec_set: str, specs: Sequence[ModelSpec], precisions: Sequence[str], chunk: int,
                      size: int, repeats: int, warmup: int, device: torch.device, memory: bool = True,
                      compiled: bool = False, compile_backend: str = "inductor") -> List[InferenceRow]:
    """Latency and peak memory of every variant; a backbone's variants are timed interleaved."""
    rows: List[InferenceRow] = []
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    groups: Dict[str, List[ModelSpec]] = {}
    for s in specs:
        groups.setdefault(s.group, []).append(s)
    for group, members in groups.items():
        models = {s.name: s.build().eval().to(device) for s in members}
        compiled_models = ({n: torch.compile(m, backend=compile_backend) for n, m in models.items()}
                           if compiled else {})
        vs = variants(members, precisions, chunk, compiled)
        fns = {v.key: _call(compiled_models[v.spec] if v.compiled else models[v.spec], x, v) for v in vs}
        group_rows = {v.key: InferenceRow(v) for v in vs}
        if repeats > 0:
            logger.info("group %s: timing %d variants (%d warm-up, %d rounds)", group, len(vs), warmup, repeats)
            cpu: Dict[str, List[float]] = {}
            times = time_interleaved(fns, repeats, warmup, device, cpu)
            for k, ts in times.items():
                group_rows[k].latency_s = median(ts)
                if device.type == "cpu":
                    group_rows[k].cpu_time_s = median(cpu[k])
        if memory:
            for v in vs:
                if device.type == "cuda":
                    group_rows[v.key].peak_mem_bytes = _cuda_peak(fns[v.key], device)
                elif not v.compiled:
                    group_rows[v.key].peak_mem_bytes = _cpu_peak(spec_set, v, size)
        rows.extend(group_rows[v.key] for v in vs)
        set_p2f_chunking(nn.ModuleList(models.values()), 0)
        del models, compiled_models, fns
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _bare_of(rows: Sequence[InferenceRow], r: InferenceRow) -> Optional[InferenceRow]:
    """The bare backbone's row in the same precision and compile state (its own row for a bare model)."""
    target = r.variant.baseline or r.variant.spec
    for b in rows:
        bv = b.variant
        if (bv.spec == target and bv.precision == r.variant.precision and bv.compiled == r.variant.compiled
                and bv.chunk == 0):
            return b
    return None


def _fp32_of(rows: Sequence[InferenceRow], r: InferenceRow) -> Optional[InferenceRow]:
    for b in rows:
        bv, v = b.variant, r.variant
        if bv.spec == v.spec and bv.precision == "fp32" and bv.chunk == v.chunk and bv.compiled == v.compiled:
            return b
    return None


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None or b == 0 else a / b


def render_inference(rows: Sequence[InferenceRow], size: int, repeats: int, warmup: int, device: torch.device,
                     info: Dict[str, str], command: str, notes: Sequence[str] = ()) -> str:
    """The inference section: one row per variant with its ratios to the bare network and to fp32."""
    cpu = device.type == "cpu"
    timing = "process CPU time" if cpu else "wall time (synchronised)"
    header = ["model", "setting", "latency (ms)"] + (["CPU time (ms)"] if cpu else []) + [
        "peak memory (MiB)", "time / bare", "memory / bare", "time / fp32", "memory / fp32"]
    table = []
    for r in rows:
        bare, fp32 = _bare_of(rows, r), _fp32_of(rows, r)
        t = (lambda q: q.cpu_time_s) if cpu else (lambda q: q.latency_s)
        latency = None if r.latency_s is None else r.latency_s * 1e3
        table.append([r.variant.spec, r.variant.setting, fmt_float(latency, 1)]
                     + ([fmt_float(None if r.cpu_time_s is None else r.cpu_time_s * 1e3, 1)] if cpu else [])
                     + [fmt_float(None if r.peak_mem_bytes is None else r.peak_mem_bytes / 2 ** 20, 0),
                        fmt_float(_ratio(t(r), t(bare)) if bare is not None and bare is not r else None, 3),
                        fmt_float(_ratio(r.peak_mem_bytes, bare.peak_mem_bytes)
                                  if bare is not None and bare is not r else None, 3),
                        fmt_float(_ratio(t(r), t(fp32)) if fp32 is not None and fp32 is not r else None, 3),
                        fmt_float(_ratio(r.peak_mem_bytes, fp32.peak_mem_bytes)
                                  if fp32 is not None and fp32 is not r else None, 3)])
    parts = [f"Command: `{command}`", "", "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()), "",
             f"Input 1×3×{size}×{size} on {device.type.upper()}, batch 1, `torch.inference_mode`; bf16 = "
             "`torch.autocast` (weights float32). Latency: median of "
             f"{repeats} forwards after {warmup} warm-up, all variants of a backbone interleaved in one process; "
             f"ratios use the {timing}. 'P2F in bands': `PIPLevel.set_p2f_chunking` (what `Restorer` does). "
             "Peak memory: " + ("growth of the peak RSS during a second forward in a fresh process (64 KiB mmap "
                                "threshold)." if cpu else "`max_memory_allocated` growth during one forward.")
             + " Ratios to the bare backbone compare the same precision and compile state.", ""]
    parts += [f"- {n}" for n in notes] + ([""] if notes else [])
    parts.append(markdown_table(header, table, ["l", "l"] + ["r"] * (len(header) - 2)))
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------------------- training
def train_variants(precisions: Sequence[str]) -> List[Dict[str, Any]]:
    """The training rows: SRModel fp32, then bare NAFNet and PIPNet through PIPModel in every precision."""
    out = [{"name": "SRModel (bare NAFNet)", "kind": "SRModel", "pip": False, "precision": "fp32"}]
    for p in precisions:
        out.append({"name": "PIPModel, bare NAFNet", "kind": "PIPModel", "pip": False, "precision": p})
        out.append({"name": "PIPModel (PIPNet: NAFNet + PIP)", "kind": "PIPModel", "pip": True, "precision": p})
    return out


def _train_options(row: Dict[str, Any], backbone: Dict[str, Any], root: str, device: str) -> Dict[str, Any]:
    opts = train_cost.model_options("PIPModel" if row["pip"] else "SRModel", backbone, root, device)
    opts["model_type"] = row["kind"]
    if row["precision"] != "fp32":
        opts["train"]["amp"] = row["precision"]
    return opts


def measure_training(precisions: Sequence[str], width: int, batch: int, patch: int, repeats: int, warmup: int,
                     quick: bool, device: str) -> Dict[str, Any]:
    """Median step times of every training row, interleaved."""
    import pip_adapter.bsr  # noqa: F401  (registers PIPModel, PIPNet)
    from basicsr.models import build_model

    backbone = train_cost.backbone_option(width, quick)
    rows = train_variants(precisions)
    with tempfile.TemporaryDirectory() as root:
        models = {}
        for i, row in enumerate(rows):
            torch.manual_seed(0)
            models[i] = build_model(_train_options(row, backbone, os.path.join(root, str(i)), device))
        data = train_cost.make_batch(batch, patch)
        cpu: Dict[str, List[float]] = {}
        times = time_interleaved({str(i): train_cost.step_fn(m, data) for i, m in models.items()}, repeats, warmup,
                                 torch.device(device), cpu)
        for i, row in enumerate(rows):
            row["params"] = sum(p.numel() for p in models[i].net_g.parameters())
            row["step_s"] = median(times[str(i)])
            row["cpu_s"] = median(cpu[str(i)])
            row["loss"] = {k: float(v) for k, v in models[i].log_dict.items()}
    return {"backbone": backbone, "batch": batch, "patch": patch, "repeats": repeats, "warmup": warmup,
            "device": device, "rows": rows}


def render_training(res: Dict[str, Any], info: Dict[str, str], command: str) -> str:
    """The training section: step times and their ratios to SRModel's fp32 step and to the row's fp32 step."""
    cpu = res["device"] == "cpu"
    t = (lambda r: r["cpu_s"]) if cpu else (lambda r: r["step_s"])
    rows = res["rows"]
    base = t(rows[0])
    table = []
    for r in rows:
        fp32 = next((q for q in rows if q["kind"] == r["kind"] and q["pip"] == r["pip"] and q["precision"] == "fp32"),
                    None)
        table.append([r["name"], r["precision"], f"{r['params']:,}", fmt_float(r["step_s"] * 1e3, 1)]
                     + ([fmt_float(r["cpu_s"] * 1e3, 1)] if cpu else [])
                     + [fmt_float(t(r) / base, 3),
                        fmt_float(t(r) / t(fp32) if fp32 is not None and fp32 is not r else None, 3)])
    bb = {k: v for k, v in res["backbone"].items() if k != "type"}
    header = ["model", "precision", "parameters", "step wall time (ms)"] + (["step CPU time (ms)"] if cpu else []) \
        + ["/ SRModel fp32", "/ same model fp32"]
    return "\n".join([
        f"Command: `{command}`", "", "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()), "",
        f"Backbone NAFNet {bb}; batch {res['batch']}×3×{res['patch']}×{res['patch']}, {res['device'].upper()}; "
        "a step = `feed_data` + `optimize_parameters` (L1, + 0.002·L_ddl for PIP; Adam) + `update_learning_rate`; "
        f"median of {res['repeats']} interleaved steps after {res['warmup']} warm-up steps each; ratios use the "
        + ("process CPU time." if cpu else "wall time."), "",
        markdown_table(header, table, ["l", "l"] + ["r"] * (len(header) - 2))]) + "\n"


# ----------------------------------------------------------------------------------------------- command
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options of this script."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models at 64² and a tiny training step (seconds)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=sorted(PRECISIONS))
    p.add_argument("--models", nargs="*", default=None, help="names of bench/efficiency.py models (default: all)")
    p.add_argument("--size", type=int, default=None, help="input height = width (default 256; 64 with --quick)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds (default 3 on CPU, 30 on CUDA, 1 quick; 0: no timing)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up rounds (default 1 on CPU, 5 on CUDA)")
    p.add_argument("--chunk", type=int, default=P2F_CHUNK_PIXELS,
                   help=f"pixels per P2F band for the banded PIP rows (default {P2F_CHUNK_PIXELS}; 0: no such rows)")
    p.add_argument("--compile", action="store_true", help="add torch.compile'd variants")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (default inductor)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-memory", action="store_true", help="skip peak memory")
    p.add_argument("--no-inference", action="store_true", help="skip the inference table")
    p.add_argument("--no-train", action="store_true", help="skip the training-step table")
    p.add_argument("--train-width", type=int, default=32, help="NAFNet width of the training step (default 32)")
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--train-patch", type=int, default=128)
    p.add_argument("--note", action="append", default=[], help="a line to add under the inference table")
    p.add_argument("--out-dir", default=DEFAULT_OUT_DIR, help=f"results folder (default {DEFAULT_OUT_DIR})")
    p.add_argument("--update-docs", "--update-doc", dest="update_doc", action="store_true",
                   help="also replace this script's sections of --doc (the flag name of the other bench scripts)")
    p.add_argument("--doc", default=os.path.join(REPO_ROOT, "docs", "BENCHMARKS.md"))
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Measure, write ``precision.md``/``precision.json`` to ``--out-dir``, optionally update the docs."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but CUDA is not available here")
    cuda = device.type == "cuda"
    spec_set = "quick" if args.quick else "full"
    specs = SPEC_SETS[spec_set]()
    if args.models:
        unknown = sorted(set(args.models) - {s.name for s in specs})
        if unknown:
            raise SystemExit(f"unknown model(s) {unknown}; this set has: {sorted(s.name for s in specs)}")
        specs = [s for s in specs if s.name in args.models or any(
            s.name == o.baseline for o in specs if o.name in args.models)]
    size = args.size or (64 if args.quick else 256)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else (30 if cuda else 3))
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    info = machine_info(device)
    tag = "_cuda" if cuda else ""
    os.makedirs(args.out_dir, exist_ok=True)
    sections: Dict[str, str] = {}
    raw: Dict[str, Any] = {"machine": info, "command": command_line()}
    if not args.no_inference:
        t0 = time.time()
        rows = measure_inference(spec_set, specs, args.precisions, args.chunk, size, repeats, warmup, device,
                                 memory=not args.no_memory, compiled=args.compile,
                                 compile_backend=args.compile_backend)
        notes = list(args.note) + [f"{time.time() - t0:.0f} s in all."]
        sections[f"precision{tag}"] = render_inference(rows, size, repeats, warmup, device, info, command_line(),
                                                       notes)
        raw["inference"] = [{**asdict(r.variant), **{k: v for k, v in asdict(r).items() if k != "variant"}}
                            for r in rows]
    if not args.no_train:
        if args.quick:
            res = measure_training(args.precisions, 8, 2, 32, 1, 1, True, device.type)
        else:
            res = measure_training(args.precisions, args.train_width, args.train_batch, args.train_patch,
                                   max(1, repeats), min(warmup, 2), False, device.type)
        sections[f"precision_train{tag}"] = render_training(res, info, command_line())
        raw["training"] = res
    with open(os.path.join(args.out_dir, "precision.json"), "w", encoding="utf-8") as fh:
        json.dump(raw, fh, indent=1, default=str)
    text = "\n".join(f"<!-- {k} -->\n{v}" for k, v in sections.items())
    with open(os.path.join(args.out_dir, "precision.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    if args.update_doc:
        titles = {"precision": "Mixed precision and P2F bands: inference",
                  "precision_train": "Mixed precision: training step"}
        for k, body in sections.items():
            update_doc_section(k, body, path=args.doc, title=titles.get(k.replace("_cuda", ""), k) +
                               (" (CUDA)" if k.endswith("_cuda") else ""))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
