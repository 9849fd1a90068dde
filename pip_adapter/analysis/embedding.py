"""2-D embedding of universal prompts for the t-SNE figure (scikit-learn, extra ``viz``)."""
from __future__ import annotations

import numpy as np
from torch import Tensor

VIZ_HINT = 'install the plotting extra to get the figures: pip install -e ".[viz]" (matplotlib, scikit-learn)'


class VizUnavailable(ImportError):
    """matplotlib or scikit-learn is missing; the message says how to install them."""


def tsne_2d(features: Tensor, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """t-SNE of N×D features to N×2 (PCA initialisation, fixed seed; perplexity capped for small N)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as err:
        raise VizUnavailable(f"t-SNE needs scikit-learn; {VIZ_HINT}") from err
    x = features.detach().double().cpu().numpy()
    n = x.shape[0]
    if x.ndim != 2 or n < 3:
        raise ValueError(f"t-SNE needs at least 3 feature vectors (N×D), got shape {tuple(x.shape)}")
    # standardise: the channels of U differ in scale by orders of magnitude between levels
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    perp = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)
