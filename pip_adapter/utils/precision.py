"""The one table of numeric precisions: a name → the ``torch.autocast`` dtype (``fp32``: no autocast).

Inference (``Restorer(precision=...)``, ``pip-adapter restore --precision``) and training (``train.amp`` of a
BasicSR option file) both read it, so a precision means the same dtype everywhere.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

PRECISIONS: Dict[str, Optional[torch.dtype]] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# other spellings of the same precisions (option files often say float16, half or false)
PRECISION_ALIASES: Dict[str, str] = {"none": "fp32", "false": "fp32", "float32": "fp32", "bfloat16": "bf16",
                                     "float16": "fp16", "half": "fp16"}


def precision_name(value: Any) -> Optional[str]:
    """The table's name of ``value`` (case and aliases ignored; None and False mean ``fp32``); None if unknown."""
    if value is None or value is False:
        return "fp32"
    key = str(value).strip().lower()
    key = PRECISION_ALIASES.get(key, key)
    return key if key in PRECISIONS else None
