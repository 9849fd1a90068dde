"""The Restormer variant inside the PIP authors' release (class ``PIPNet_Restormer_onskip_inter``), without PIP.

Differences from :class:`~pip_adapter.backbones.restormer.Restormer` (PIP spec §6), all on the path from
the bottleneck to decoder level 3 (the PromptIR layout):

* ``chnl_reduce3``: 1×1 conv 8·dim → 4·dim (384 → 192 at dim 48, no bias) applied to the latent;
* ``up4_3`` is built for 4·dim channels, so it outputs 2·dim (96) channels;
* ``reduce_chan_level3`` takes 2·dim + 4·dim (96 + 192 = 288) channels back to 4·dim.

Everything else (names, shapes, forward) is Restormer's. The release's checkpoints also hold keys that are
not part of this backbone:

* the PIP side — ``prompt1/2/3.*`` and ``low_prompt_interaction_level1/2/3.*`` — mapped by the wrapper;
* three 1×1 convs ``reduce_noise_channel_1/2/3`` (:data:`RELEASE_UNUSED_CONVS`, 112,896 parameters at the
  default sizes) that the release builds but **never uses in its forward**. A loader must accept them, check
  their shapes, and discard them; :func:`split_release_state_dict` does exactly that.

Where the release applies PIP (what a wrapper must reproduce): on the three encoder outputs
``encoder_level1/2/3`` (the skips), on the skip branch only — the downsampling path gets the raw tensor —
right before each ``torch.cat([up(x), skip], 1)``. Nothing is applied to the bottleneck.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from torch import Tensor, nn

from .restormer import Restormer, Upsample

__all__ = ["RestormerPIPRelease", "RELEASE_UNUSED_CONVS", "RELEASE_PIP_PREFIXES", "release_unused_convs",
           "split_release_state_dict"]

#: the release's unused convs at its default sizes (dim 48, prompt dims 64/128/256): key -> shape.
#: Never used in the forward; accepted and discarded by loaders after a shape check.
RELEASE_UNUSED_CONVS: dict[str, tuple[int, ...]] = {
    "reduce_noise_channel_1.weight": (48, 112, 1, 1),
    "reduce_noise_channel_2.weight": (96, 224, 1, 1),
    "reduce_noise_channel_3.weight": (192, 448, 1, 1),
}

#: key prefixes of the PIP side of a release checkpoint (prompt-in-prompt blocks and P2F blocks)
RELEASE_PIP_PREFIXES: tuple[str, ...] = ("prompt1.", "prompt2.", "prompt3.", "low_prompt_interaction_level1.",
                                         "low_prompt_interaction_level2.", "low_prompt_interaction_level3.")


def release_unused_convs(dim: int = 48, prompt_dims: Sequence[int] = (64, 128, 256)) -> dict[str, tuple[int, ...]]:
    """Shapes of the unused ``reduce_noise_channel_l`` convs for other sizes: (2^(l-1)·dim, that + D_l, 1, 1)."""
    if len(prompt_dims) != 3:
        raise ValueError(f"prompt_dims must have 3 entries (one per skip level), got {list(prompt_dims)!r}")
    out = {}
    for level, d in enumerate(prompt_dims, start=1):
        c = dim * 2 ** (level - 1)
        out[f"reduce_noise_channel_{level}.weight"] = (c, c + int(d), 1, 1)
    return out


def split_release_state_dict(state_dict: Mapping[str, Tensor], dim: int = 48,
                             prompt_dims: Sequence[int] = (64, 128, 256),
                             ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """Split a release state dict into (backbone, PIP side, unused convs).

    The backbone part loads into :class:`RestormerPIPRelease` with ``strict=True``; the PIP part keeps the
    release's key names. Raises ``ValueError`` when an unused conv has an unexpected shape (a sign that the
    checkpoint was built with other sizes: pass its ``dim``/``prompt_dims``).
    """
    expected = release_unused_convs(dim, prompt_dims)
    backbone: dict[str, Tensor] = {}
    pip: dict[str, Tensor] = {}
    unused: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(RELEASE_PIP_PREFIXES):
            pip[key] = value
        elif key.startswith("reduce_noise_channel_"):
            want = expected.get(key)
            if want is None or tuple(value.shape) != want:
                raise ValueError(f"release checkpoint: unused conv {key!r} has shape {tuple(value.shape)}, "
                                 f"expected {want} for dim={dim}, prompt_dims={list(prompt_dims)}; "
                                 "pass the sizes the checkpoint was trained with")
            unused[key] = value
        else:
            backbone[key] = value
    return backbone, pip, unused


class RestormerPIPRelease(Restormer):
    """Restormer as laid out in the PIP release (see the module docstring); same constructor as Restormer.

    Its state dict equals the release checkpoint's keys minus ``prompt1/2/3.*``,
    ``low_prompt_interaction_level*.*`` and the unused ``reduce_noise_channel_*`` convs
    (:data:`RELEASE_UNUSED_CONVS`), which are never used in the forward.
    """

    def _build_level3_merge(self, dim: int, bias: bool) -> None:
        self.chnl_reduce3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)
        self.up4_3 = Upsample(dim * 4)
        self.reduce_chan_level3 = nn.Conv2d(dim * 2 + dim * 4, dim * 4, 1, bias=bias)

    def _reduce_latent(self, latent: Tensor) -> Tensor:
        return self.chnl_reduce3(latent)
