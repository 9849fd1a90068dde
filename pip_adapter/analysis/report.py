"""Everything ``pip-adapter inspect`` shows about one PIP model: text parts always, figures with extra ``viz``.

Text: skip levels (where PIP sits, C, D, s, T), the backbone/PIP parameter split, and per level the angle
matrix between the degradation prompts.  Figures (PNG): angle heat-maps, t-SNE of the universal prompts U per
level over degraded images coloured by type (paper Fig. 7), and a wrong-prompt grid (paper Fig. 4).

Images for the figures come from a folder laid out like the built-in validation data
(``val/gt/*.png`` and ``val/<type>[_<variant>]/*.png``, same file names; see ``prepare_builtin``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from pip_adapter.omega import canonical_name
from pip_adapter.image_io import is_image_file, read_image

from . import figures as figs
from .embedding import VIZ_HINT, VizUnavailable, tsne_2d
from .prompts import collect_universal_prompts, level_prompt_angles, names_of, parameter_split, skip_level_rows
from .wrong_prompt import matrix_markdown, wrong_prompt_matrix

logger = logging.getLogger(__name__)

GT_FOLDERS = ("gt", "target", "clean")


@dataclass
class TypedSet:
    """Degraded images of one folder: its label, its degradation type, the images and their clean versions."""
    label: str
    degradation: str
    lq: Tensor
    gt: Optional[Tensor] = None


@dataclass
class InspectReport:
    """Result of :func:`inspect_model`: text sections, angle matrices and written figure paths."""
    names: List[str]
    levels: List[Dict[str, object]]
    split: Dict[str, int]
    angles: List[Tensor]
    wrong: Optional[Dict[str, object]] = None
    figures: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def text(self) -> str:
        """The report as plain text / markdown."""
        lines = [f"degradation types (ω order): {', '.join(self.names)}", "", "PIP levels:"]
        lines.append("| level | skip | C | D | s | T | parameters |")
        lines.append("|---:|---|---:|---:|---:|---:|---:|")
        for r in self.levels:
            s = r.get("prompt_size")
            lines.append(f"| {r['level']} | {r.get('skip', '')} | {r['channels']} | {r['prompt_dim']} | "
                         f"{s}×{s} | {r['num_types']} | {r['params']:,} |")
        sp = self.split
        lines += ["", f"parameters: total {sp['total']:,} = backbone {sp['backbone']:,} + PIP {sp['pip']:,} "
                      f"({100.0 * sp['pip'] / max(1, sp['total']):.2f}% PIP); trainable {sp['trainable']:,}", ""]
        for i, a in enumerate(self.angles):
            lines.append(f"angles between degradation prompts, level {i + 1} (degrees):")
            lines.append(_angle_table(a, self.names))
            off = a[~torch.eye(a.shape[0], dtype=torch.bool)]
            if off.numel():
                lines.append(f"min {float(off.min()):.1f}°, mean {float(off.mean()):.1f}° "
                             f"(L_ddl pushes every pair to ≥ 90°)")
            lines.append("")
        if self.wrong is not None:
            lines += ["wrong-prompt matrix (PSNR dB; rows: degradation, columns: ω):", matrix_markdown(self.wrong), ""]
        lines += self.notes
        if self.figures:
            lines += ["figures:"] + [f"  {p}" for p in self.figures]
        return "\n".join(lines).rstrip() + "\n"


def _angle_table(a: Tensor, names: Sequence[str]) -> str:
    head = "| | " + " | ".join(names) + " |"
    rule = "|---|" + "---:|" * len(names)
    rows = [f"| {n} | " + " | ".join(f"{v:.1f}" for v in a[i].tolist()) + " |" for i, n in enumerate(names)]
    return "\n".join([head, rule] + rows)


def _type_of(folder: str, names: Sequence[str]) -> Optional[str]:
    """The degradation a val folder holds: its name, or its name before ``_<variant>`` (``noise_sigma15``)."""
    key = canonical_name(folder)
    for n in sorted(names, key=len, reverse=True):
        cn = canonical_name(n)
        if key == cn or key.startswith(cn + "_"):
            return n
    return None


def _read_float(path: str) -> np.ndarray:
    arr, _ = read_image(path)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[..., :3], dtype=np.float32)


def _center(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if h < size or w < size:
        raise ValueError(f"validation image of {h}×{w} is smaller than the crop size {size}; lower --crop")
    y, x = (h - size) // 2, (w - size) // 2
    return arr[y:y + size, x:x + size]


def load_typed_sets(root: str, names: Sequence[str], crop: int = 96, max_images: Optional[int] = None
                    ) -> List[TypedSet]:
    """Degraded images per folder of ``root`` whose name is a known type (``rain``, ``noise_sigma25``...).

    ``root`` is a folder like the built-in ``val`` (or the data root holding ``val/``).  Every image is
    centre-cropped to ``crop``×``crop``; clean versions come from ``root/gt`` (same file names) when present.
    """
    if os.path.isdir(os.path.join(root, "val")):
        root = os.path.join(root, "val")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder not found: {root} (give the built-in data's val folder, e.g. "
                                "datasets/builtin/val; make it with 'pip-adapter prepare-data')")
    gt_dir = next((os.path.join(root, g) for g in GT_FOLDERS if os.path.isdir(os.path.join(root, g))), None)
    sets = []
    for folder in sorted(os.listdir(root)):
        path = os.path.join(root, folder)
        deg = _type_of(folder, names)
        if not os.path.isdir(path) or folder in GT_FOLDERS or deg is None:
            continue
        files = sorted(f for f in os.listdir(path) if is_image_file(f))[:max_images]
        if not files:
            continue
        lq = torch.stack([torch.from_numpy(_center(_read_float(os.path.join(path, f)), crop)).permute(2, 0, 1)
                          for f in files])
        gt = None
        if gt_dir is not None and all(os.path.isfile(os.path.join(gt_dir, f)) for f in files):
            gt = torch.stack([torch.from_numpy(_center(_read_float(os.path.join(gt_dir, f)), crop)).permute(2, 0, 1)
                              for f in files])
        sets.append(TypedSet(folder, deg, lq, gt))
    if not sets:
        raise FileNotFoundError(f"no folder of {root} is named after one of the model's types ({', '.join(names)}); "
                                "expected e.g. rain/, haze/, noise_sigma25/")
    return sets


def _tiles(lq: Tensor, tile: int) -> Tensor:
    """Non-overlapping tile×tile crops of every image (more points per type for the t-SNE)."""
    _, _, h, w = lq.shape
    out = [lq[:, :, y:y + tile, x:x + tile] for y in range(0, h - tile + 1, tile) for x in range(0, w - tile + 1, tile)]
    return torch.cat(out, dim=0)


def inspect_model(model: nn.Module, out_dir: Optional[str] = None, images: Optional[str] = None,
                  names: Optional[Sequence[str]] = None, crop: int = 96, tile: int = 32,
                  max_images: Optional[int] = None, figures: bool = True, seed: int = 0) -> InspectReport:
    """Inspect a PIP model; with ``out_dir`` and the ``viz`` extra, also write the PNG figures there.

    ``images``: a folder laid out like the built-in ``val`` data; it feeds the t-SNE of U (each image cut
    into ``tile``² tiles) and the wrong-prompt grid (needs ``gt/``).  Without it only the angle figure is made.
    """
    model.eval()
    names = list(names) if names else names_of(model)
    report = InspectReport(names=names, levels=skip_level_rows(model), split=parameter_split(model),
                           angles=level_prompt_angles(model))
    sets = load_typed_sets(images, names, crop, max_images) if images else []
    paired = [s for s in sets if s.gt is not None]
    if paired:
        with torch.no_grad():
            report.wrong = wrong_prompt_matrix(model, {s.label: (s.lq, s.gt) for s in paired}, names)
    if not figures or out_dir is None:
        return report
    try:
        os.makedirs(out_dir, exist_ok=True)
        if report.angles and report.angles[0].shape[0] > 1:
            report.figures.append(figs.angle_heatmaps(report.angles, names, os.path.join(out_dir, "prompt_angles.png"),
                                                      "angles between degradation prompts d_t"))
        if sets:
            xs, labels = [], []
            for s in sets:
                t = _tiles(s.lq, tile)
                xs.append((t, torch.full((t.shape[0],), names.index(s.degradation), dtype=torch.long)))
                labels += [s.label] * t.shape[0]
            us = collect_universal_prompts(model, [(x, torch.nn.functional.one_hot(lab, len(names)).float())
                                                   for x, lab in xs])
            pts = [tsne_2d(u, seed=seed) for u in us]
            report.figures.append(figs.tsne_scatter(pts, labels, os.path.join(out_dir, "tsne_universal_prompts.png"),
                                                    f"t-SNE of U (spatial mean), {len(labels)} tiles of {tile}²"))
        if report.wrong is not None:
            report.figures.append(figs.wrong_prompt_grid(report.wrong, os.path.join(out_dir, "wrong_prompt_grid.png")))
    except VizUnavailable as err:
        report.notes.append(f"figures not written: {err}")
        logger.warning("figures not written: %s", err)
    return report


__all__ = ["InspectReport", "TypedSet", "inspect_model", "load_typed_sets", "VIZ_HINT"]
