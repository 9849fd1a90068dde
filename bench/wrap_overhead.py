"""Cost of the wrapping mechanism: ``wrap_with_pip`` (module hooks) vs. a hand-written forward.

Both run the same backbone and the same ``pip_levels`` (PIP applied to the skip right before the merge), so
the difference is only what the hooks add: a context-variable lookup and a few Python calls per hooked
module call.  Timing is interleaved (A, B, A, B, ...) and the medians are compared, plus the median of the
per-round ratios (robust to load changes on a shared machine).

    python bench/wrap_overhead.py                         # NAFNet width 32, 256×256, CPU
    python bench/wrap_overhead.py --backbone restormer --dim 16 --size 128
    python bench/wrap_overhead.py --doc                   # also write the section in docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (command_line, machine_info, markdown_table, median, time_interleaved,  # noqa: E402
                          update_doc_section)
from pip_adapter.backbones import NAFNet, Restormer  # noqa: E402
from pip_adapter.testing import nafnet_reference, restormer_reference  # noqa: E402  (the tests' ground truth)
from pip_adapter.wrap import wrap_with_pip  # noqa: E402


def mechanism_cost(model, x, labels, repeats: int) -> dict:
    """Time the wrapper's own work per forward, without the PIP levels' compute (the same in both forwards).

    * ω conversion and the per-forward run object (``_omega_for``);
    * the hook bodies (``_ProducerHook`` / ``_SwapPreHook`` calls) minus the PIP levels they call;
    * the extra cost of ``nn.Module.__call__`` taking its hook path, per hooked call (a 1×1 conv on a 1×1×1×1
      tensor with and without a no-op hook, minimum over runs).
    """
    import time
    from torch import nn
    from pip_adapter.wrap import wrapper as W

    acc = {"hooks": 0.0, "pip": 0.0, "calls": 0}
    orig = {cls: cls.__call__ for cls in (W._ProducerHook, W._SwapPreHook)}
    orig_zhat = W._Run.zhat_of

    def timed_hook(cls):
        def call(self, *a):
            t0 = time.perf_counter()
            try:
                return orig[cls](self, *a)
            finally:
                acc["hooks"] += time.perf_counter() - t0
                acc["calls"] += 1
        return call

    def timed_zhat(self, i):
        t0 = time.perf_counter()
        try:
            return orig_zhat(self, i)
        finally:
            acc["pip"] += time.perf_counter() - t0

    for cls in orig:
        cls.__call__ = timed_hook(cls)
    W._Run.zhat_of = timed_zhat
    try:
        with torch.no_grad():
            model(x, labels)
            acc.update(hooks=0.0, pip=0.0, calls=0)
            for _ in range(repeats):
                model(x, labels)
    finally:
        for cls, fn in orig.items():
            cls.__call__ = fn
        W._Run.zhat_of = orig_zhat
    hooks_ms = 1e3 * (acc["hooks"] - acc["pip"]) / repeats
    calls = acc["calls"] // repeats

    def per_call(fn, n=2000):
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - t0) / n)
        return best

    with torch.no_grad():
        omega_ms = 1e3 * per_call(lambda: W._Run(model._uid, model._omega_for(labels, x), model.pip_levels), 500)
        conv, hooked = nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1)
        hooked.register_forward_pre_hook(lambda m, a: None)
        t = torch.zeros(1, 1, 1, 1)
        slow = max(0.0, per_call(lambda: hooked(t)) - per_call(lambda: conv(t)))
    return {"omega_ms": omega_ms, "hooks_ms": hooks_ms, "hooked_calls": calls, "slow_path_ms_per_call": 1e3 * slow,
            "mechanism_ms": omega_ms + hooks_ms + calls * 1e3 * slow}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", choices=("nafnet", "restormer"), default="nafnet")
    ap.add_argument("--width", type=int, default=32, help="NAFNet width")
    ap.add_argument("--dim", type=int, default=16, help="Restormer dim")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--account-repeats", type=int, default=20,
                    help="forwards over which the hooks' own time is accounted (see mechanism_cost)")
    ap.add_argument("--doc", action="store_true", help="write the result into docs/BENCHMARKS.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.backbone == "nafnet":
        net = NAFNet(width=args.width, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 1], dec_blk_nums=[1, 1, 1, 1])
        reference = nafnet_reference
        label = f"NAFNet width {args.width} (enc 1,1,1,1 / mid 1 / dec 1,1,1,1)"
    else:
        net = Restormer(dim=args.dim, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1)
        reference = restormer_reference
        label = f"Restormer dim {args.dim} (blocks 1,1,1,1, refinement 1)"
    model = wrap_with_pip(net).eval()
    x = torch.rand(args.batch, 3, args.size, args.size)
    labels = torch.zeros(args.batch, dtype=torch.long)
    w = torch.nn.functional.one_hot(labels, len(model.degradations)).float()
    with torch.no_grad():
        diff = (model(x, labels) - reference(net, x, model.pip_levels, w)).abs().max().item()

        def hooked():
            model(x, labels)

        def hand():
            reference(net, x, model.pip_levels, w)

        times = time_interleaved({"wrap_with_pip (hooks)": hooked, "hand-written": hand}, args.repeats, warmup=2)
        cost = mechanism_cost(model, torch.rand(args.batch, 3, 32, 32), labels, args.account_repeats)
    t_hook, t_hand = median(times["wrap_with_pip (hooks)"]), median(times["hand-written"])
    ratios = [a / b for a, b in zip(times["wrap_with_pip (hooks)"], times["hand-written"])]
    result = {
        "model": label, "input": f"{args.batch}×3×{args.size}×{args.size}", "threads": args.threads,
        "repeats": args.repeats, "hooked_ms": 1e3 * t_hook, "hand_ms": 1e3 * t_hand,
        "overhead_pct_of_medians": 100.0 * (t_hook / t_hand - 1.0),
        "overhead_pct_paired_median": 100.0 * (statistics.median(ratios) - 1.0),
        "max_abs_diff": diff,
        **cost,
    }
    result["mechanism_pct_of_forward"] = 100.0 * cost["mechanism_ms"] / result["hand_ms"]
    table = markdown_table(
        ["model", "input", "hooks (ms, median)", "hand-written (ms, median)", "overhead (medians)",
         "overhead (paired median)", "max |diff|"],
        [[label, result["input"], f"{result['hooked_ms']:.1f}", f"{result['hand_ms']:.1f}",
          f"{result['overhead_pct_of_medians']:+.2f}%", f"{result['overhead_pct_paired_median']:+.2f}%",
          f"{diff:.1e}"]])
    info = machine_info()
    body = (f"`{command_line()}` — CPU, {args.repeats} interleaved rounds after 2 warm-up rounds, "
            f"{info['cpu']}, torch {info['torch']}.\n\n{table}\n\n"
            f"The mechanism's own time, accounted directly (less noisy than the difference of two medians on a "
            f"shared machine): ω conversion {cost['omega_ms']:.3f} ms + hook bodies {cost['hooks_ms']:.3f} ms + "
            f"{cost['hooked_calls']} hooked module calls × {1e3 * cost['slow_path_ms_per_call']:.1f} µs "
            f"(nn.Module's hook path) = **{cost['mechanism_ms']:.3f} ms per forward = "
            f"{result['mechanism_pct_of_forward']:.3f}% of the hand-written forward** at {result['input']}.\n")
    print(body)
    if args.doc:
        update_doc_section("wrap_overhead", body, title="Cost of the wrapping mechanism (wrap_with_pip)")
    return result


if __name__ == "__main__":
    main()
