"""Pure PyTorch PIP building blocks (no BasicSR): LayerNorm2d, transposed attention, FFNs, PIPLevel,
the directional decoupled loss, prompt geometry and the release key mapping."""
from .attention import TransposedCrossAttention, set_fused, topm_ks, topm_masks, unfused
from .ddl_loss import DirectionalDecoupledLoss
from .ffn import GDFN, DualGateFFN
from .layernorm import LayerNorm2d
from .level_paths import record_dispatch
from .pip_level import PIPLevel, set_level_path, set_p2f_chunking
from .prompt_geometry import min_prompt_angle, orthogonal_prompt_init, pairwise_cosine, prompt_angles
from .release_keys import (load_release_level, ours_to_release_level, ours_to_release_prefixed,
                           release_level_to_ours, release_prefixed_to_ours, release_prefixes,
                           split_prefixed)

__all__ = [
    "LayerNorm2d", "TransposedCrossAttention", "topm_ks", "topm_masks", "set_fused", "unfused", "GDFN",
    "DualGateFFN", "PIPLevel", "set_p2f_chunking", "set_level_path", "record_dispatch", "pairwise_cosine", "prompt_angles", "min_prompt_angle", "orthogonal_prompt_init",
    "DirectionalDecoupledLoss", "release_level_to_ours", "ours_to_release_level", "release_prefixes",
    "split_prefixed", "release_prefixed_to_ours", "ours_to_release_prefixed", "load_release_level",
]
