"""Restore each degradation type with each ω (paper Fig. 4): does the model use the prompt?

If PIP conditions the restoration on ω, the diagonal (true type as ω) should be best in every row; a flat
row means the network ignores ω for that degradation.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from pip_adapter.omega import to_omega
from pip_adapter.utils.metrics import mean_psnr

PSNR_CAP_DB = 120.0  # what an identical pair counts in the matrix


def psnr(restored: Tensor, target: Tensor) -> float:
    """Mean PSNR (dB, peak 1) over a batch of B×C×H×W images in [0, 1]; ``restored`` is clamped first, and an
    image equal to its target counts 120 dB, not ``inf`` (the table holds means)."""
    return mean_psnr(restored.detach().clamp(0, 1), target.detach(), max_db=PSNR_CAP_DB)


@torch.no_grad()
def restore_batched(model: nn.Module, lq: Tensor, omega: object, names: Sequence[str],
                    batch_size: int = 4) -> Tensor:
    """``model(lq, ω)`` in chunks of ``batch_size`` (ω in any form ``to_omega`` accepts, same for every image)."""
    outs = []
    for i in range(0, lq.shape[0], batch_size):
        chunk = lq[i:i + batch_size]
        w = to_omega(omega, names, batch_size=chunk.shape[0], device=chunk.device)
        outs.append(model(chunk, w).clamp(0, 1))
    return torch.cat(outs, dim=0)


@torch.no_grad()
def wrong_prompt_matrix(model: nn.Module, samples: Mapping[str, Tuple[Tensor, Tensor]], names: Sequence[str],
                        prompts: Optional[Sequence[str]] = None, batch_size: int = 4,
                        keep_outputs: int = 1) -> Dict[str, object]:
    """PSNR of every degradation in ``samples`` restored with every ω in ``prompts`` (default: all ``names``).

    ``samples`` maps a row label (e.g. ``"noise σ25"``) to ``(lq, gt)`` batches N×3×H×W in [0, 1].
    Returns ``{"rows": [...], "cols": [...], "psnr": R×P tensor, "input_psnr": R tensor,
    "outputs": {(row, col): first ``keep_outputs`` restored images}, "inputs": {row: (lq, gt) of those}}``.
    """
    if not samples:
        raise ValueError("wrong_prompt_matrix needs at least one degraded sample set")
    cols = list(prompts) if prompts is not None else list(names)
    rows = list(samples)
    table = torch.zeros(len(rows), len(cols))
    input_psnr = torch.zeros(len(rows))
    outputs: Dict[Tuple[str, str], Tensor] = {}
    inputs: Dict[str, Tuple[Tensor, Tensor]] = {}
    was_training = model.training
    model.eval()
    try:
        for r, row in enumerate(rows):
            lq, gt = samples[row]
            if lq.shape != gt.shape:
                raise ValueError(f"{row}: lq and gt differ in shape ({tuple(lq.shape)} vs {tuple(gt.shape)})")
            input_psnr[r] = psnr(lq, gt)
            inputs[row] = (lq[:keep_outputs].cpu(), gt[:keep_outputs].cpu())
            for c, col in enumerate(cols):
                out = restore_batched(model, lq, col, names, batch_size)
                table[r, c] = psnr(out, gt)
                outputs[(row, col)] = out[:keep_outputs].cpu()
    finally:
        model.train(was_training)
    return {"rows": rows, "cols": cols, "psnr": table, "input_psnr": input_psnr, "outputs": outputs,
            "inputs": inputs}


def matrix_markdown(result: Mapping[str, object], digits: int = 2) -> str:
    """The wrong-prompt PSNR matrix as a markdown table; the best cell of each row is bold."""
    rows: List[str] = list(result["rows"])  # type: ignore[arg-type]
    cols: List[str] = list(result["cols"])  # type: ignore[arg-type]
    table: Tensor = result["psnr"]  # type: ignore[assignment]
    inp: Tensor = result["input_psnr"]  # type: ignore[assignment]
    lines = ["| degradation \\ ω | input | " + " | ".join(cols) + " |",
             "|---|---:|" + "---:|" * len(cols)]
    for r, row in enumerate(rows):
        best = int(table[r].argmax())
        cells = [(f"**{v:.{digits}f}**" if c == best else f"{v:.{digits}f}") for c, v in enumerate(table[r].tolist())]
        lines.append(f"| {row} | {float(inp[r]):.{digits}f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
