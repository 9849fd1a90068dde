"""Degradation classifier for automatic ω: a timm network (never pretrained) over the degradation types.

The classifier looks at the image at its native resolution — downscaling would hide noise and blur — through
a few crops; their averaged probabilities are ω for ``--degradation auto``.
"""
from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from pip_adapter.omega import normalise_names
from pip_adapter.utils.tensor import pad_bottom_right

logger = logging.getLogger(__name__)


class DegradationClassifier(nn.Module):
    """``timm`` backbone ``arch`` with a T-way head; input B×3×H×W in [0, 1], output logits B×T.

    Args:
        arch: any timm model name (``resnet34`` as in the paper, ``resnet18`` / ``resnet10t`` for CPU).
        degradations: the type names, in ω order (None: the five default types).
        crop_size: size of the crops :meth:`predict_proba` looks at (training crops should match).
        num_crops: crops per image in :meth:`predict_proba` (a grid over the image).
        model_kwargs: extra keyword arguments of ``timm.create_model``.
    """

    def __init__(self, arch: str = "resnet34", degradations: Optional[Sequence[str]] = None,
                 crop_size: int = 128, num_crops: int = 4, **model_kwargs) -> None:
        super().__init__()
        import timm

        self.arch = arch
        self.degradations: List[str] = normalise_names(degradations)
        self.crop_size = int(crop_size)
        self.num_crops = int(num_crops)
        if model_kwargs.pop("pretrained", False):
            raise ValueError("the degradation classifier never downloads weights: pretrained must be False")
        self.model_kwargs = dict(model_kwargs)
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
