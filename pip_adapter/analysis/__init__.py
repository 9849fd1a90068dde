"""Inspection of a PIP model: what it learned and how it uses ω.

* :mod:`.prompts` — skip levels, backbone/PIP parameter split, angles between degradation prompts,
  universal prompts U collected over images (pure PyTorch);
* :mod:`.wrong_prompt` — restoring each degradation with each ω (paper Fig. 4);
* :mod:`.embedding` — t-SNE of U (needs scikit-learn, extra ``viz``);
* :mod:`.figures` — PNG figures (needs matplotlib, extra ``viz``);
* :mod:`.report` — everything above for one model, as text and figures (``pip-adapter inspect``).
"""
from __future__ import annotations

from .prompts import (angle_matrix, collect_universal_prompts, level_prompt_angles, parameter_split,
                      pip_levels_of, skip_level_rows)
from .wrong_prompt import psnr, wrong_prompt_matrix

__all__ = ["angle_matrix", "collect_universal_prompts", "level_prompt_angles", "parameter_split", "pip_levels_of",
           "skip_level_rows", "psnr", "wrong_prompt_matrix"]
