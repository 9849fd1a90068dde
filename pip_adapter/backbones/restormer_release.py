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
  their shapes, and discard them; :func:`~pip_adapter.modules.release_keys.split_release_state_dict` does
  exactly that (the whole release layout lives in :mod:`pip_adapter.modules.release_keys`).

Where the release applies PIP (what a wrapper must reproduce): on the three encoder outputs
``encoder_level1/2/3`` (the skips), on the skip branch only — the downsampling path gets the raw tensor —
right before each ``torch.cat([up(x), skip], 1)``. Nothing is applied to the bottleneck.
"""
from __future__ import annotations

from torch import Tensor, nn

# the release checkpoint's layout lives with the rest of the release layout; named here too, where it was first
from ..modules.release_keys import (RELEASE_PIP_PREFIXES, RELEASE_UNUSED_CONVS, release_unused_convs,
                                    split_release_state_dict)
from .restormer import Restormer, Upsample

__all__ = ["RestormerPIPRelease", "RELEASE_UNUSED_CONVS", "RELEASE_PIP_PREFIXES", "release_unused_convs",
           "split_release_state_dict"]


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
