"""PNG figures of :mod:`pip_adapter.analysis` (matplotlib, extra ``viz``; the Agg backend, no display)."""
from __future__ import annotations

import os
from typing import List, Mapping, Sequence

import numpy as np
from torch import Tensor

from pip_adapter.utils.io import atomic_path

from .embedding import VIZ_HINT, VizUnavailable


def _plt():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise VizUnavailable(f"figures need matplotlib; {VIZ_HINT}") from err
    return plt


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def angle_heatmaps(angles: Sequence[Tensor], names: Sequence[str], path: str, title: str = "") -> str:
    """One heat-map per level of the angles (degrees) between degradation prompts, annotated."""
    plt = _plt()
    n = len(angles)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 0.6, 3.4), squeeze=False)
    im = None
    for i, (ax, a) in enumerate(zip(axes[0], angles)):
        m = a.numpy()
        im = ax.imshow(m, vmin=0, vmax=180, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
        ax.set_yticks(range(len(names)), names if i == 0 else [""] * len(names), fontsize=7)
        ax.set_title(f"level {i + 1}", fontsize=9)
        for r in range(m.shape[0]):
            for c in range(m.shape[1]):
                ax.text(c, r, f"{m[r, c]:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if m[r, c] < 100 else "black")
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="angle (degrees)")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def tsne_scatter(points: Sequence[np.ndarray], labels: Sequence[str], path: str, title: str = "") -> str:
    """One scatter per level of 2-D embedded universal prompts, coloured by degradation label."""
    plt = _plt()
    n = len(points)
    kinds: List[str] = sorted(set(labels), key=list(labels).index)
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.4), squeeze=False)
    lab = np.asarray(labels)
    for i, (ax, pts) in enumerate(zip(axes[0], points)):
        for k, kind in enumerate(kinds):
            sel = lab == kind
            ax.scatter(pts[sel, 0], pts[sel, 1], s=10, color=cmap(k % 10), label=kind, alpha=0.8)
        ax.set_title(f"U, level {i + 1}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _to_img(t: Tensor) -> np.ndarray:
    return t.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def wrong_prompt_grid(result: Mapping[str, object], path: str, title: str = "") -> str:
    """Rows: degradations; columns: degraded input, the restoration with each ω (PSNR in the title), clean."""
    plt = _plt()
    rows: List[str] = list(result["rows"])  # type: ignore[arg-type]
    cols: List[str] = list(result["cols"])  # type: ignore[arg-type]
    table: Tensor = result["psnr"]  # type: ignore[assignment]
    inp: Tensor = result["input_psnr"]  # type: ignore[assignment]
    outputs = result["outputs"]
    inputs = result["inputs"]
    ncol = len(cols) + 2
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.7 * ncol, 1.85 * len(rows) + 0.4), squeeze=False)
    for r, row in enumerate(rows):
        lq, gt = inputs[row]  # type: ignore[index]
        panels = [(lq[0], f"input {float(inp[r]):.1f}")]
        best = int(table[r].argmax())
        for c, col in enumerate(cols):
            mark = " *" if c == best else ""
            panels.append((outputs[(row, col)][0], f"ω={col} {float(table[r, c]):.1f}{mark}"))  # type: ignore[index]
        panels.append((gt[0], "clean"))
        for c, (img, label) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(_to_img(img))
            ax.set_title(label, fontsize=6.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(row, fontsize=8)
    fig.suptitle(title or "each degradation restored with each ω (PSNR dB; * best in the row)", fontsize=9)
    return _save(fig, path)
