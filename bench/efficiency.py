"""Efficiency of PIP: parameters, MACs, latency and peak memory, bare backbone vs. the same backbone with PIP.

Run from the repository root::

    python bench/efficiency.py                 # full table at 256x256, CPU (and CUDA when present)
    python bench/efficiency.py --quick         # tiny models at 64x64: a smoke run in seconds

What is measured (per model, batch 1, 3x``size``x``size`` input, ``torch.inference_mode``):

* true parameters — every element of ``model.parameters()``;
* thop-style parameters and MACs — ``pip_adapter.analysis.counting.count_model`` (the convention of the
  paper's table: weights of standard layers only, one multiply-add per weight use, attention matrix
  products and bare parameters not counted);
* latency — median of ``--repeats`` forward passes after ``--warmup`` untimed ones; the bare backbone and
  its PIP versions run interleaved (A, B, C, B, C, A, ...) in the same process so that they see the same
  machine load; CUDA readings are bracketed by ``torch.cuda.synchronize``;
* peak memory — CUDA: ``torch.cuda.max_memory_allocated`` during one forward, minus the memory held before
  it; CPU: growth of the peak resident set size (``VmHWM``, reset just before the forward) during one
  forward, measured in a fresh interpreter per model (in a shared process the allocator would serve the
  activations from memory that earlier models freed, and RSS would not move).
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make `bench` and `pip_adapter` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (add_output_args, command_line, fmt_float, fmt_int, machine_info,  # noqa: E402
                          markdown_table, median, run_json_subprocess, sync, time_interleaved, write_section)

logger = logging.getLogger("bench.efficiency")

# Official configurations (spec §7 and the state-dict manifests): the models the paper's numbers refer to.
NAFNET_SIDD = dict(img_channel=3, middle_blk_num=12, enc_blk_nums=[2, 2, 4, 8], dec_blk_nums=[2, 2, 2, 2])
RESTORMER_DEFAULT = dict(inp_channels=3, out_channels=3, dim=48, num_blocks=[4, 6, 6, 8], num_refinement_blocks=4,
                         heads=[1, 2, 4, 8], ffn_expansion_factor=2.66, bias=False, LayerNorm_type="WithBias",
                         dual_pixel_task=False)
# PIP sizes of spec §5 (prompt channels D and prompt size s per skip level)
PIP_SIZES = {
    "nafnet64": dict(prompt_dims=[64, 96, 128, 128], prompt_sizes=[64, 32, 16, 16]),
    "restormer": dict(prompt_dims=[64, 128, 256], prompt_sizes=[64, 32, 16]),
}


class WithOmega(nn.Module):
    """Bind a fixed ω to a PIP model so that every model is called as ``model(x)`` (timing, counting)."""

    def __init__(self, model: nn.Module, omega: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("omega", omega, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.omega)


@dataclass
class ModelSpec:
    """One model of the table. ``group`` collects a backbone and its PIP versions (timed interleaved);
    ``baseline`` names the bare model that ratios are taken against (None for the bare model itself)."""
    name: str
    group: str
    build: Callable[[], nn.Module]
    pip: bool = False
    baseline: Optional[str] = None


@dataclass
class Row:
    """Measurements of one model on one device."""
    name: str
    baseline: Optional[str]
    device: str
    params: int
    thop_params: Optional[float] = None
    macs: Optional[float] = None
    all_macs: Optional[float] = None
    latency_s: Optional[float] = None
    latency_all_s: List[float] = field(default_factory=list)
    cpu_time_s: Optional[float] = None
    peak_mem_bytes: Optional[int] = None


def _pip_omega(num_types: int) -> torch.Tensor:
    omega = torch.zeros(1, num_types)
    omega[0, 0] = 1.0
    return omega


def _wrap(backbone: nn.Module, size_key: Optional[str] = None, **kwargs) -> nn.Module:
    from pip_adapter.wrap import wrap_with_pip

    if size_key:
        kwargs.update(PIP_SIZES[size_key])
    # the wrapper's default probe input (non-square, random) finds the skips; see the report on square probes
    model = wrap_with_pip(backbone, **kwargs)
    return WithOmega(model, _pip_omega(len(model.degradations)))


def _nafnet(width: int, **over) -> nn.Module:
    from pip_adapter.backbones import NAFNet

    cfg = dict(NAFNET_SIDD, width=width)
    cfg.update(over)
    return NAFNet(**cfg)


def _restormer(**over) -> nn.Module:
    from pip_adapter.backbones import Restormer

    cfg = dict(RESTORMER_DEFAULT)
    cfg.update(over)
    return Restormer(**cfg)


def _restormer_release(**over) -> nn.Module:
    """The release's Restormer variant (spec §6) with PIP on its three skips, as the authors trained it."""
    from pip_adapter.backbones import RestormerPIPRelease

    cfg = dict(RESTORMER_DEFAULT)
    cfg.update(over)
    return _wrap(RestormerPIPRelease(**cfg), "restormer")


def full_specs() -> List[ModelSpec]:
    """The models of the published comparison, at their official sizes."""
    return [
        ModelSpec("NAFNet-32", "nafnet32", lambda: _nafnet(32)),
        ModelSpec("PIP-NAFNet-32", "nafnet32", lambda: _wrap(_nafnet(32)), True, "NAFNet-32"),
        ModelSpec("NAFNet-64", "nafnet64", lambda: _nafnet(64)),
        ModelSpec("PIP-NAFNet-64", "nafnet64", lambda: _wrap(_nafnet(64), "nafnet64"), True, "NAFNet-64"),
        ModelSpec("Restormer", "restormer", lambda: _restormer()),
        ModelSpec("Restormer + PIP (wrap_with_pip)", "restormer", lambda: _wrap(_restormer(), "restormer"), True,
                  "Restormer"),
        ModelSpec("PIP_Restormer (release variant)", "restormer", lambda: _restormer_release(), True, "Restormer"),
    ]


def quick_specs() -> List[ModelSpec]:
    """Tiny versions of the same models: a smoke run of the whole pipeline in seconds."""
    small_nafnet = dict(middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])
    small_restormer = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1)
    return [
        ModelSpec("NAFNet-8", "nafnet8", lambda: _nafnet(8, **small_nafnet)),
        ModelSpec("PIP-NAFNet-8", "nafnet8", lambda: _wrap(_nafnet(8, **small_nafnet), prompt_dims=8, prompt_sizes=8), True,
                  "NAFNet-8"),
        ModelSpec("Restormer-8", "restormer8", lambda: _restormer(**small_restormer)),
        ModelSpec("Restormer-8 + PIP", "restormer8", lambda: _wrap(_restormer(**small_restormer), prompt_dims=16, prompt_sizes=8), True,
                  "Restormer-8"),
    ]


SPEC_SETS: Dict[str, Callable[[], List[ModelSpec]]] = {"full": full_specs, "quick": quick_specs}


def count(model: nn.Module, x: torch.Tensor) -> Dict[str, Optional[float]]:
    """True parameters, thop-style parameters and MACs, and all MACs (attention products included) on ``x``."""
    from pip_adapter.analysis.counting import count_model

    res = count_model(model, x)
    return {"params": res.params, "thop_params": res.thop_params, "macs": res.macs, "all_macs": res.all_macs}


def _cuda_peak(model: nn.Module, x: torch.Tensor) -> int:
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    before = torch.cuda.memory_allocated(x.device)
    with torch.inference_mode():
        model(x)
    torch.cuda.synchronize(x.device)
    return int(torch.cuda.max_memory_allocated(x.device) - before)


def memory_child(spec_set: str, name: str, size: int, threads: int) -> dict:
    """Body of the fresh interpreter that measures one model's CPU peak memory (see module docstring)."""
    from bench.common import current_rss_bytes, peak_rss_bytes, reset_peak_rss

    torch.set_num_threads(threads)
    spec = {s.name: s for s in SPEC_SETS[spec_set]()}[name]
    model = spec.build().eval()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model(x)  # warm-up: one-time buffers (kernel caches, thread pools) are not activations
    gc.collect()
    # without a reset, the peak of building the model would hide a smaller forward peak
    before = current_rss_bytes() if reset_peak_rss() else max(current_rss_bytes(), peak_rss_bytes())
    with torch.inference_mode():
        model(x)
    return {"peak_mem_bytes": max(0, peak_rss_bytes() - before)}


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def _cpu_peak_subprocess(spec_set: str, name: str, size: int) -> Optional[int]:
    code = ("import json; from bench.efficiency import memory_child; "
            f"print(json.dumps(memory_child({spec_set!r}, {name!r}, {size}, {torch.get_num_threads()})))")
    try:
        # a fixed mmap threshold: every tensor above 64 KiB gets its own mapping, returned to the system when
        # freed, so RSS follows the live tensors (glibc's default adapts the threshold and then keeps freed
        # memory resident, which hides the second forward's activations)
        return int(run_json_subprocess(code, env_extra=MALLOC_ENV)["peak_mem_bytes"])
    except (RuntimeError, OSError, ValueError, KeyError) as err:
        logger.warning("peak memory of %s not measured: %s", name, err)
        return None


def measure(specs: Sequence[ModelSpec], size: int = 256, repeats: int = 3, warmup: int = 1,
            device: torch.device = torch.device("cpu"), memory: bool = True, spec_set: Optional[str] = None,
            counts: bool = True) -> List[Row]:
    """Measure every model of ``specs`` on ``device``; models of one group are timed interleaved.

    CPU peak memory needs ``spec_set`` (a key of ``SPEC_SETS``) because the models are rebuilt by name in a
    fresh interpreter.
    """
    rows: List[Row] = []
    groups: Dict[str, List[ModelSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.group, []).append(spec)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    for group, members in groups.items():
        logger.info("group %s: building %s", group, ", ".join(s.name for s in members))
        models = {s.name: s.build().eval().to(device) for s in members}
        group_rows = {}
        for s in members:
            row = Row(s.name, s.baseline, device.type, sum(p.numel() for p in models[s.name].parameters()))
            if counts:
                c = count(models[s.name], x)
                row.thop_params, row.macs, row.all_macs = c["thop_params"], c["macs"], c["all_macs"]
            group_rows[s.name] = row
        if repeats > 0:
            def _call(m: nn.Module) -> Callable[[], object]:
                def run() -> object:
                    with torch.inference_mode():
                        return m(x)
                return run
            logger.info("group %s: timing (%d warm-up, %d timed rounds)", group, warmup, repeats)
            cpu: Dict[str, List[float]] = {}
            times = time_interleaved({n: _call(m) for n, m in models.items()}, repeats, warmup, device, cpu)
            for n, ts in times.items():
                group_rows[n].latency_s = median(ts)
                group_rows[n].latency_all_s = ts
                if device.type == "cpu":
                    group_rows[n].cpu_time_s = median(cpu[n])
        if memory:
            for s in members:
                if device.type == "cuda":
                    group_rows[s.name].peak_mem_bytes = _cuda_peak(models[s.name], x)
                elif spec_set is not None:
                    group_rows[s.name].peak_mem_bytes = _cpu_peak_subprocess(spec_set, s.name, size)
        rows.extend(group_rows[s.name] for s in members)
        del models
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _is_pip_level(m: nn.Module) -> bool:
    return callable(getattr(m, "universal_prompt", None)) and callable(getattr(m, "all_degradation_prompts", None))


@torch.inference_mode()
def profile_pip(model: nn.Module, x: torch.Tensor, repeats: int = 2, top: int = 12) -> dict:
    """Where a PIP model spends its time: whole forward, each PIP level, each direct child of a level.

    Wall-clock per module comes from forward pre/post hooks (with a device sync), summed over
    ``repeats`` forwards after one warm-up and divided by ``repeats``; the part of a level not covered by
    its children is the functional glue (bilinear resizes, channel pad/slice, residual adds).  The top
    operators come from ``torch.profiler`` over one forward (self CPU time, or self CUDA time on a GPU).
    """
    dev = x.device
    levels = [(n, m) for n, m in model.named_modules() if _is_pip_level(m)]
    if not levels:
        raise ValueError("profile_pip: the model has no PIP level")
    acc: Dict[str, float] = {}
    starts: Dict[int, float] = {}
    handles = []

    def pre(key: str):
        def hook(mod: nn.Module, *_a) -> None:
            sync(dev)
            starts[id(mod)] = time.perf_counter()
        return hook

    def post(key: str):
        def hook(mod: nn.Module, *_a) -> None:
            sync(dev)
            acc[key] = acc.get(key, 0.0) + time.perf_counter() - starts.pop(id(mod))
        return hook

    for i, (_, level) in enumerate(levels):
        handles += [level.register_forward_pre_hook(pre(f"L{i + 1}")), level.register_forward_hook(post(f"L{i + 1}"))]
        for cname, child in level.named_children():
            key = f"L{i + 1}.{cname}"
            handles += [child.register_forward_pre_hook(pre(key)), child.register_forward_hook(post(key))]
    model(x)  # warm-up
    acc.clear()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model(x)
    sync(dev)
    total = (time.perf_counter() - t0) / repeats
    for h in handles:
        h.remove()
    per = {k: v / repeats for k, v in acc.items()}
    for i in range(len(levels)):
        key = f"L{i + 1}"
        children = sum(v for k, v in per.items() if k.startswith(key + "."))
        per[key + ".(glue: resize/pad/residual)"] = max(0.0, per.get(key, 0.0) - children)
    by_kind: Dict[str, float] = {}
    for k, v in per.items():
        if "." in k:
            kind = k.split(".", 1)[1]
            by_kind[kind] = by_kind.get(kind, 0.0) + v
    from torch.profiler import ProfilerActivity, profile
    if dev.type != "cuda":
        # a CUDA build of torch on a machine without a GPU: Kineto's device probe logs a harmless
        # "ERROR ... gpuGetDeviceCount failed"; level 5 keeps Kineto quiet (read when profiling starts)
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        model(x)
        sync(dev)
    sort_key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    ops = prof.key_averages().table(sort_by=sort_key, row_limit=top)
    pip_total = sum(per[f"L{i + 1}"] for i in range(len(levels)))
    return {"total_s": total, "pip_s": pip_total, "levels": {f"L{i + 1}": per[f"L{i + 1}"] for i in range(len(levels))},
            "by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])), "per_module": per, "top_ops": ops}


def render_profile(prof: dict) -> str:
    """Text summary of :func:`profile_pip`."""
    lines = [f"forward {prof['total_s'] * 1e3:.1f} ms, of which PIP levels {prof['pip_s'] * 1e3:.1f} ms "
             f"({100 * prof['pip_s'] / prof['total_s']:.1f}%)",
             "per level: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in prof["levels"].items()),
             "per PIP sub-module (all levels): " + ", ".join(
                 f"{k} {v * 1e3:.1f} ms" for k, v in prof["by_kind"].items())]
    return "\n".join(lines) + "\n\n" + prof["top_ops"]


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return float(a) / float(b)


def ratio_rows(rows: Sequence[Row]) -> List[dict]:
    """For every model with a baseline: its PIP/bare ratios of params, MACs, latency and memory."""
    by_name = {r.name: r for r in rows}
    out = []
    for r in rows:
        if r.baseline is None:
            continue
        if r.baseline not in by_name:
            raise ValueError(f"{r.name}: baseline {r.baseline!r} was not measured; measure it in the same run")
        b = by_name[r.baseline]
        out.append({"name": r.name, "baseline": b.name,
                    "params": ratio(r.params, b.params), "thop_params": ratio(r.thop_params, b.thop_params),
                    "macs": ratio(r.macs, b.macs), "all_macs": ratio(r.all_macs, b.all_macs),
                    "latency": ratio(r.latency_s, b.latency_s), "cpu_time": ratio(r.cpu_time_s, b.cpu_time_s),
                    "peak_mem": ratio(r.peak_mem_bytes, b.peak_mem_bytes)})
    return out


def _mib(b: Optional[int]) -> Optional[float]:
    return None if b is None else b / 2 ** 20


def render(rows: Sequence[Row], size: int, repeats: int, warmup: int, info: Dict[str, str], command: str,
           notes: Sequence[str] = ()) -> str:
    """The efficiency section of BENCHMARKS.md: one table of measurements and one of ratios per device."""
    parts = [f"Command: `{command}`", "",
             "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()), "",
             f"Input 1×3×{size}×{size}, batch 1, `torch.inference_mode`. Latency: median of {repeats} timed "
             f"forwards after {warmup} warm-up, bare and PIP models interleaved in one process (on CPU also the "
             "median process CPU time of the same calls, which waiting for a busy core does not inflate). MACs "
             "and thop-style parameters: `pip_adapter.analysis.counting.count_model` (weights of standard layers "
             "only, as the paper's table); all MACs: the same counter's ATen-level count, attention matrix "
             "products included. Peak memory: CUDA `max_memory_allocated` growth during one forward; CPU growth "
             "of the peak RSS during a second forward in a fresh process with a fixed 64 KiB mmap threshold."]
    parts += [""] + [f"- {n}" for n in notes]
    for dev in sorted({r.device for r in rows}):
        drows = [r for r in rows if r.device == dev]
        cpu = dev == "cpu"
        parts += ["", f"### {dev.upper()}", ""]
        header = ["model", "true params", "thop-style params", "MACs thop-style (G)", "all MACs (G)",
                  "latency (ms)"] + (["CPU time (ms)"] if cpu else []) + ["peak memory (MiB)"]
        parts.append(markdown_table(header, [
            [r.name, fmt_int(r.params), fmt_int(r.thop_params),
             fmt_float(None if r.macs is None else r.macs / 1e9),
             fmt_float(None if r.all_macs is None else r.all_macs / 1e9),
             fmt_float(None if r.latency_s is None else r.latency_s * 1e3, 1)]
            + ([fmt_float(None if r.cpu_time_s is None else r.cpu_time_s * 1e3, 1)] if cpu else [])
            + [fmt_float(_mib(r.peak_mem_bytes), 0)] for r in drows]))
        rr = ratio_rows(drows)
        if rr:
            parts += ["", f"Ratios PIP / bare ({dev.upper()}):", ""]
            parts.append(markdown_table(
                ["model", "vs", "params", "thop params", "MACs thop-style", "all MACs", "latency"]
                + (["CPU time"] if cpu else []) + ["peak memory"],
                [[d["name"], d["baseline"], fmt_float(d["params"], 3), fmt_float(d["thop_params"], 3),
                  fmt_float(d["macs"], 3), fmt_float(d["all_macs"], 3), fmt_float(d["latency"], 3)]
                 + ([fmt_float(d["cpu_time"], 3)] if cpu else []) + [fmt_float(d["peak_mem"], 3)]
                 for d in rr]))
    return "\n".join(parts) + "\n"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options of this script."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models at 64x64, 1 timed round (smoke run)")
    p.add_argument("--size", type=int, default=None, help="input height = width (default 256; 64 with --quick)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed forwards per model (default: 3 on CPU, 1 with --quick, 50 on CUDA)")
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards per model before timing (CUDA: x10)")
    p.add_argument("--models", nargs="*", default=None, help="names of models to run (default: all of the set)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-memory", action="store_true", help="skip peak-memory measurement")
    p.add_argument("--no-cuda", action="store_true", help="CPU only even when a GPU is present")
    p.add_argument("--no-cpu", action="store_true", help="CUDA only (bench/gpu_check.sh): skip the CPU table")
    p.add_argument("--profile-only", action="store_true",
                   help="instead of the table: profile the (PIP) models chosen with --models — time per PIP level "
                        "and sub-module, top operators — and write the 'efficiency profile' section")
    add_output_args(p)
    p.add_argument("--json", default=None, help="also write raw measurements to this JSON file")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark and update the efficiency section of BENCHMARKS.md."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    spec_set = "quick" if args.quick else "full"
    specs = SPEC_SETS[spec_set]()
    if args.models:
        known = {s.name for s in specs}
        unknown = [m for m in args.models if m not in known]
        if unknown:
            raise SystemExit(f"unknown model(s) {unknown}; this set has: {sorted(known)}")
        specs = [s for s in specs if s.name in args.models]
    size = args.size or (64 if args.quick else 256)
    rows: List[Row] = []
    notes: List[str] = []
    devices = [] if args.no_cpu else [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(torch.device("cuda"))
    if not devices:
        raise SystemExit("--no-cpu needs a CUDA device, and none is available (or --no-cuda was given)")
    if args.profile_only:
        return _profile_main(args, [s for s in specs if s.pip], size, devices[-1])
    for dev in devices:
        repeats = args.repeats or (1 if args.quick else (50 if dev.type == "cuda" else 3))
        warmup = args.warmup * (10 if dev.type == "cuda" else 1)
        t0 = time.time()
        rows += measure(specs, size, repeats, warmup, dev, memory=not args.no_memory, spec_set=spec_set)
        notes.append(f"{dev.type.upper()}: {repeats} timed rounds, {warmup} warm-up, {time.time() - t0:.0f} s total.")
    info = machine_info(devices[-1])
    text = render(rows, size, repeats, warmup, info, command_line(), notes)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump([r.__dict__ for r in rows], fh, indent=1)
    write_section(args, "efficiency", text, title="Efficiency: parameters, MACs, latency, memory")
    return 0


def _profile_main(args: argparse.Namespace, specs: Sequence[ModelSpec], size: int, device: torch.device) -> int:
    if not specs:
        raise SystemExit("--profile-only needs PIP models (choose them with --models)")
    repeats = args.repeats or 1
    parts = [f"Command: `{command_line()}`", "",
             "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine_info(device).items()), "",
             f"Input 1×3×{size}×{size}; wall time per module from forward hooks (mean of {repeats} forward(s) after "
             "one warm-up), then one forward under `torch.profiler` for the top operators of the whole model."]
    for s in specs:
        prof = profile_pip(s.build().eval().to(device), torch.rand(1, 3, size, size, device=device), repeats=repeats)
        parts += ["", f"**{s.name}** ({device.type}):", "", "```", render_profile(prof).rstrip(), "```"]
    text = "\n".join(parts) + "\n"
    write_section(args, "efficiency_profile", text, title="Where PIP's time goes (profile)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
