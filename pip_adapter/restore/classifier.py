"""Degradation classifier for automatic ω: a small CNN of our own or a timm network (never pretrained).

The classifier looks at the image at its native resolution — downscaling would hide noise and blur — through
a few crops; their averaged probabilities are ω for ``--degradation auto``.  ``arch="compact"``
(:class:`CompactDegradationNet`, about 1 MB) is the one the shipped models bundle; any other ``arch`` is a timm
model name (``resnet34`` as in the paper).
"""
from __future__ import annotations

import difflib
import logging
import math
import re
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from pip_adapter.networks import NETWORKS
from pip_adapter.omega import normalise_names
from pip_adapter.utils.tensor import pad_bottom_right

logger = logging.getLogger(__name__)

COMPACT_ARCH = "compact"
COMPACT_WIDTHS = (24, 32, 48, 64, 96)

# the timm options a classifier may carry, with the type of their value: a model file (or its bundled classifier
# document) passes them to timm.create_model, so anything naming a file, a URL or a hub (checkpoint_path,
# pretrained_cfg, "hf-hub:..." names) must never get through
TIMM_OPTIONS = {"drop_rate": float, "drop_path_rate": float, "drop_block_rate": float, "global_pool": str,
                "norm_layer": str, "act_layer": str, "output_stride": int}
MAX_CROP_SIZE = 4096
MAX_CROPS = 64
_PLAIN = re.compile(r"[A-Za-z0-9_]{1,64}")


def check_classifier_options(arch: Any, options: Mapping[str, Any], known_archs: Sequence[str]) -> None:
    """Refuse a classifier ``arch`` that is not one of timm's built-in model names, and any option outside
    :data:`TIMM_OPTIONS` (or of another type), before timm sees them; raises ``ValueError`` naming them."""
    if not isinstance(arch, str) or not _PLAIN.fullmatch(arch):
        raise ValueError(f"classifier arch {arch!r} is not a timm model name (letters, digits and '_' only: "
                         "hub names and paths are refused)")
    if arch not in set(known_archs):
        close = difflib.get_close_matches(arch, list(known_archs), n=3)
        raise ValueError(f"unknown classifier arch {arch!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
                         + " (a timm model name such as resnet18 or resnet34, or compact)")
    for key, value in options.items():
        kind = TIMM_OPTIONS.get(key)
        if kind is None:
            raise ValueError(f"classifier option {key!r} is not accepted; the options are arch, degradations, "
                             f"crop_size, num_crops and {', '.join(sorted(TIMM_OPTIONS))}")
        ok = (isinstance(value, str) and bool(_PLAIN.fullmatch(value))) if kind is str else \
            (isinstance(value, (int, float)) and not isinstance(value, bool) and
             (kind is float or isinstance(value, int)) and math.isfinite(value) and 0 <= value <= 64)
        if not ok:
            raise ValueError(f"classifier option {key}={value!r} is not a plain "
                             f"{'name' if kind is str else 'number from 0 to 64'}")


def _mean_std(x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and standard deviation over H×W: B×2C."""
    flat = x.flatten(2)
    return torch.cat([flat.mean(-1), flat.std(-1, unbiased=False)], dim=1)


class _DownBlock(nn.Module):
    """Stride-2 conv then a residual 3×3 conv, GroupNorm + SiLU (batch-size independent, as in training)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                                  nn.GroupNorm(8, c_out), nn.SiLU())
        self.body = nn.Sequential(nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.GroupNorm(8, c_out))
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return self.act(x + self.body(x))


class CompactDegradationNet(nn.Module):
    """A small CNN (about 0.26 M parameters at the default widths) that sees a crop at full resolution.

    Degradations differ in global statistics (low light: brightness; haze: contrast and colour) as much as in
    local texture (noise: pixel-level energy; blur: its absence; rain: oriented streaks).  The stem runs at full
    resolution so that pixel-level noise is visible; the head reads the per-channel mean and standard deviation
    of the input itself (which GroupNorm would otherwise normalise away) and of every stage, not only the
    last feature map.

    Args:
        num_classes: number of degradation types.
        widths: channels of the stem and of each stride-2 stage (each a multiple of 8).
    """

    def __init__(self, num_classes: int, widths: Sequence[int] = COMPACT_WIDTHS) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or any(w < 8 or w % 8 for w in widths):
            raise ValueError(f"compact classifier widths must be multiples of 8 (>= 8), got {widths}")
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.GroupNorm(8, widths[0]),
                                  nn.SiLU())
        self.stages = nn.ModuleList(_DownBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Linear(2 * (3 + sum(widths)), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits B×num_classes of centred images B×3×H×W."""
        stats = [_mean_std(x)]
        x = self.stem(x)
        stats.append(_mean_std(x))
        for stage in self.stages:
            x = stage(x)
            stats.append(_mean_std(x))
        return self.head(torch.cat(stats, dim=1))


def check_compact_options(options: Mapping[str, Any]) -> None:
    """Refuse options of ``arch: compact`` other than ``widths`` (1 to 8 multiples of 8, each at most 512)."""
    unknown = sorted(set(options) - {"widths"})
    if unknown:
        raise ValueError(f"classifier option(s) {unknown} are not accepted by arch 'compact'; its one option is "
                         "widths")
    widths = options.get("widths", COMPACT_WIDTHS)
    if (not isinstance(widths, (list, tuple)) or not 1 <= len(widths) <= 8
            or any(isinstance(w, bool) or not isinstance(w, int) or not 8 <= w <= 512 or w % 8 for w in widths)):
        raise ValueError(f"compact classifier widths must be 1 to 8 multiples of 8 from 8 to 512, got {widths!r}")


class DegradationClassifier(nn.Module):
    """The network ``arch`` with a T-way head; input B×3×H×W in [0, 1], output logits B×T.

    Args:
        arch: ``"compact"`` (:class:`CompactDegradationNet`, about 1 MB; its one option is ``widths``) or a
            timm model name (``resnet34`` as in the paper, ``resnet18`` / ``resnet10t`` for CPU); names of
            timm's own registry only (no hub names).
        degradations: the type names, in ω order (None: the five default types).
        crop_size: size of the crops :meth:`predict_proba` looks at (training crops should match).
        num_crops: crops per image in :meth:`predict_proba` (a grid over the image).
        model_kwargs: extra keyword arguments of ``timm.create_model``, from :data:`TIMM_OPTIONS` only.
    """

    def __init__(self, arch: str = "resnet34", degradations: Optional[Sequence[str]] = None,
                 crop_size: int = 128, num_crops: int = 4, **model_kwargs) -> None:
        super().__init__()
        if model_kwargs.pop("pretrained", False):
            raise ValueError("the degradation classifier never downloads weights: pretrained must be False")
        if arch == COMPACT_ARCH:
            check_compact_options(model_kwargs)
        else:
            import timm

            check_classifier_options(arch, model_kwargs, timm.list_models())
        self.arch = arch
        self.degradations: List[str] = normalise_names(degradations)
        for key, value in (("crop_size", crop_size), ("num_crops", num_crops)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"classifier {key} must be a whole number, got {value!r}")
        self.crop_size = int(crop_size)
        self.num_crops = int(num_crops)
        if not 1 <= self.crop_size <= MAX_CROP_SIZE or not 1 <= self.num_crops <= MAX_CROPS:
            raise ValueError(f"classifier crop_size {crop_size!r} / num_crops {num_crops!r} out of range "
                             f"(1 to {MAX_CROP_SIZE} / 1 to {MAX_CROPS})")
        self.model_kwargs = dict(model_kwargs)
        if arch == COMPACT_ARCH:
            self.model_kwargs = {"widths": [int(w) for w in model_kwargs.get("widths", COMPACT_WIDTHS)]}
            self.net = CompactDegradationNet(len(self.degradations), self.model_kwargs["widths"])
        else:
            self.net = timm.create_model(arch, pretrained=False, num_classes=len(self.degradations),
                                         **model_kwargs)
        # fixed input scaling so that inputs are centred; a buffer would end up in the state dict for nothing
        self._mean, self._std = 0.5, 0.25

    def config(self) -> dict:
        """JSON-able keyword arguments that rebuild this classifier."""
        return {"arch": self.arch, "degradations": list(self.degradations), "crop_size": self.crop_size,
                "num_crops": self.num_crops, **self.model_kwargs}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits B×T for images B×3×H×W in [0, 1]."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"the classifier expects B×3×H×W images, got shape {tuple(x.shape)}")
        return self.net((x - self._mean) / self._std)

    def crops(self, image: torch.Tensor) -> torch.Tensor:
        """Up to ``num_crops`` native-resolution crops of one 3×H×W (or 1×3×H×W) image, as N×3×s×s."""
        if image.dim() == 4:
            image = image[0]
        _, h, w = image.shape
        s = self.crop_size
        if h < s or w < s:
            # small images: look at the whole image, padded by reflection up to the crop size
            image = pad_bottom_right(image[None], s - h, s - w)[0]
            _, h, w = image.shape
        n = max(1, self.num_crops)
        rows = max(1, int(round(n ** 0.5)))
        cols = max(1, (n + rows - 1) // rows)
        tops = torch.linspace(0, h - s, rows).round().long().tolist() if rows > 1 else [(h - s) // 2]
        lefts = torch.linspace(0, w - s, cols).round().long().tolist() if cols > 1 else [(w - s) // 2]
        boxes: List[Tuple[int, int]] = [(t, l) for t in tops for l in lefts][:n]
        return torch.stack([image[:, t:t + s, l:l + s] for t, l in boxes])

    @torch.no_grad()
    def predict_proba(self, image: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Probabilities (T,) for one image 3×H×W (or 1×3×H×W) in [0, 1] — or stored values times ``scale``
        (e.g. uint8 with 1/255) — averaged over its crops."""
        was_training = self.training
        self.eval()
        try:
            param = next(self.parameters())
            if image.dim() == 4:
                image = image[0]
            if not image.is_floating_point() and (image.shape[-2] < self.crop_size or image.shape[-1] < self.crop_size):
                image, scale = image.float() * scale, 1.0  # padding needs floats; small images are cheap
            crops = self.crops(image).to(device=param.device, dtype=torch.float32) * scale
            return torch.softmax(self(crops.to(param.dtype)).float(), dim=1).mean(dim=0)
        finally:
            self.train(was_training)


NETWORKS.register(DegradationClassifier)   # checkpoints name it as network type (file_format.CLASSIFIER_TYPE)
