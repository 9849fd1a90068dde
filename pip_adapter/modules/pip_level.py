"""One Prompt-In-Prompt level (spec §2): P2P builds the universal prompt U, selective P2F modulates Z."""
from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attention import TransposedCrossAttention
from .ffn import GDFN, DualGateFFN
from .layernorm import LayerNorm2d
from .level_paths import AUTO, Dispatch, LevelCall, dispatch, to_channels_last, in_layout_of, check_path, run_level
from .resize import resize_bilinear

logger = logging.getLogger(__name__)

_REDUCES = ("mean", "sum")


class PIPLevel(nn.Module):
    """PIP on one skip connection: ``Ẑ = PIP(Z, ω)`` for ``Z`` B×C×H×W and ``ω`` B×T.

    Args:
        channels: C, the skip feature's channels.
        prompt_dim: D, the prompt channels (the width the attention runs at).
        prompt_size: s, the basic prompt is D×s×s and Z is resized to s×s for P2P.
        num_types: T0, the number of degradation types the level is built (trained) with.
        p2p_heads / p2f_heads: attention heads of P2P (2) and P2F (4).
        ffn_expansion: hidden width factor of both FFNs (2.66).
        prompt_reduce: ``"mean"`` (release): ``d(ω) = Σ_t ω_t d_t / prompt_divisor``; ``"sum"``: the plain
            ``Σ_t ω_t d_t`` (the paper's product).
        prompt_divisor: divisor of the mean; defaults to T0 and must stay the trained T0 when types are
            added later, so the old types' outputs do not move (spec §2.1).
        use_degradation_prompt / use_basic_prompt / selective: the paper's ablation switches.  Without the
            degradation prompts, S = resized Z (ω is still checked but has no effect); without the basic
            prompt, P2P runs as self-attention on S (query = S); ``selective=False`` uses plain softmax
            attention in P2F instead of the top-m one.
        num_added_types: degradation prompts added after training (see :meth:`add_degradation_prompts`);
            only needed to rebuild an extended level from :meth:`config`.

    Parameters: ``degradation_prompt`` (T0×D, N(0,1)), ``added_prompts`` (1×D each), ``basic_prompt``
    (D×s×s, N(0,1)), the P2P block (``p2p_*``), ``out_conv`` (3×3 D→D) and the P2F block (``p2f_*``,
    ``reduce_channel`` when C < D).  No bias anywhere except the LayerNorms'.
    """

    def __init__(self, channels: int, prompt_dim: int, prompt_size: int, num_types: int,
                 p2p_heads: int = 2, p2f_heads: int = 4, ffn_expansion: float = 2.66,
                 prompt_reduce: str = "mean", prompt_divisor: Optional[int] = None,
                 use_degradation_prompt: bool = True, use_basic_prompt: bool = True, selective: bool = True,
                 num_added_types: int = 0) -> None:
        super().__init__()
        for name, val in (("channels", channels), ("prompt_dim", prompt_dim), ("prompt_size", prompt_size),
                          ("num_types", num_types)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"PIPLevel: {name} must be a positive int, got {val!r}")
        if prompt_reduce not in _REDUCES:
            raise ValueError(f"PIPLevel: prompt_reduce must be one of {_REDUCES}, got {prompt_reduce!r}")
        if prompt_reduce == "mean":
            prompt_divisor = num_types if prompt_divisor is None else prompt_divisor
            if not isinstance(prompt_divisor, int) or prompt_divisor < 1:
                raise ValueError(f"PIPLevel: prompt_divisor must be a positive int, got {prompt_divisor!r}")
        elif prompt_divisor is not None:
            raise ValueError("PIPLevel: prompt_divisor only applies to prompt_reduce='mean'")
        if num_added_types < 0:
            raise ValueError(f"PIPLevel: num_added_types must be >= 0, got {num_added_types}")
        c, d = channels, prompt_dim
        self.channels, self.prompt_dim, self.prompt_size = c, d, prompt_size
        self.p2p_heads, self.p2f_heads, self.ffn_expansion = p2p_heads, p2f_heads, ffn_expansion
        self.prompt_reduce, self.prompt_divisor = prompt_reduce, prompt_divisor
        self.use_degradation_prompt, self.use_basic_prompt = use_degradation_prompt, use_basic_prompt
        self.selective = selective
        # 0: P2F runs on the whole map; > 0: eager forwards run it in row bands (see set_p2f_chunking)
        self.p2f_chunk_pixels = 0
        self._path = AUTO   # which forward runs (see the path property)
        self._trained_types = num_types
        self._added_types = 0

        self.degradation_prompt = nn.Parameter(torch.randn(num_types, d)) if use_degradation_prompt else None
        self.added_prompts = nn.ParameterList()
        self.basic_prompt = nn.Parameter(torch.randn(d, prompt_size, prompt_size)) if use_basic_prompt else None

        # P2P: query B (or S), key/value S, then GDFN, then the 3×3 conv after upsampling
        self.p2p_norm_query = LayerNorm2d(d)
        self.p2p_norm_kv = LayerNorm2d(d)
        self.p2p_attn = TransposedCrossAttention(d, p2p_heads, topm=False)
        self.p2p_norm_ffn = LayerNorm2d(d)
        self.p2p_ffn = GDFN(d, ffn_expansion)
        self.out_conv = nn.Conv2d(d, d, kernel_size=3, padding=1, bias=False)

        # P2F: query from the feature, key/value from U, at width D
        self.p2f_norm_feature = LayerNorm2d(c)
        self.p2f_norm_prompt = LayerNorm2d(d)
        self.p2f_attn = TransposedCrossAttention(d, p2f_heads, topm=selective)
        self.reduce_channel = nn.Conv2d(d, c, kernel_size=1, bias=False) if c < d else None
        self.p2f_norm_ffn = LayerNorm2d(c)
        self.p2f_ffn = DualGateFFN(c, ffn_expansion)

        if num_added_types:
            self.add_degradation_prompts(torch.zeros(num_added_types, d))

    # ---- degradation types -------------------------------------------------------------------------
    @property
    def num_types(self) -> int:
        """T: the trained types plus the ones added later."""
        return self._trained_types + self._added_types

    def all_degradation_prompts(self) -> torch.Tensor:
        """All degradation prompts as a T×D tensor (0×D when the level has none)."""
        if self.degradation_prompt is None:
            ref = next(self.parameters())
            return ref.new_zeros(0, self.prompt_dim)
        if not len(self.added_prompts):
            return self.degradation_prompt
        return torch.cat([self.degradation_prompt, *self.added_prompts], dim=0)

    @torch.no_grad()
    def add_degradation_prompts(self, init: torch.Tensor) -> None:
        """Append k new degradation types, their prompts initialised from ``init`` (k×D).

        The mean's divisor stays ``prompt_divisor`` and the old prompts are untouched, so outputs for the
        old types do not change (the new terms are exact zeros for them).
        """
        init = torch.as_tensor(init)
        if init.dim() == 1:
            init = init.unsqueeze(0)
        if init.dim() != 2 or init.shape[1] != self.prompt_dim:
            raise ValueError(f"new degradation prompts must have shape k×{self.prompt_dim} (k×D), "
                             f"got {tuple(init.shape)}")
        ref = next(self.parameters())
        if self.degradation_prompt is not None:
            for row in init:
                self.added_prompts.append(nn.Parameter(row.detach().reshape(1, -1).to(ref).clone()))
        self._added_types += int(init.shape[0])

    def config(self) -> dict:
        """Constructor kwargs that rebuild this level (including added types)."""
        return dict(channels=self.channels, prompt_dim=self.prompt_dim, prompt_size=self.prompt_size,
                    num_types=self._trained_types, p2p_heads=self.p2p_heads, p2f_heads=self.p2f_heads,
                    ffn_expansion=self.ffn_expansion, prompt_reduce=self.prompt_reduce,
                    prompt_divisor=self.prompt_divisor, use_degradation_prompt=self.use_degradation_prompt,
                    use_basic_prompt=self.use_basic_prompt, selective=self.selective,
                    num_added_types=self._added_types)

    # ---- checks ------------------------------------------------------------------------------------
    def _check_inputs(self, z: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        """Shapes only: ω's values (finite, non-negative, labels in range) are checked once per call upstream,
        by ``pip_adapter.omega`` (a level runs per skip and per tile; value checks would sync a GPU each time)."""
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or z.shape[1] != self.channels:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"PIPLevel expects a skip feature of shape B×{self.channels}×H×W (C={self.channels}), "
                             f"got {shape}")
        if not isinstance(omega, torch.Tensor):
            raise ValueError(f"omega must be a tensor (B×T weights or B labels), got {type(omega).__name__}; "
                             "use pip_adapter.omega.to_omega for names, dicts and lists")
        t = self.num_types
        dtype = self.degradation_prompt.dtype if self.degradation_prompt is not None else z.dtype
        if not omega.is_floating_point() and omega.dim() == 1:
            omega = F.one_hot(omega.long(), t).to(dtype)
        if omega.dim() != 2:
            raise ValueError(f"omega must be 2-D (B×T with T={t}), got shape {tuple(omega.shape)}")
        if omega.shape[1] != t:
            raise ValueError(f"omega must have T={t} columns (one per degradation type), "
                             f"got shape {tuple(omega.shape)}")
        b = z.shape[0]
        if omega.shape[0] != b:
            if omega.shape[0] != 1:
                raise ValueError(f"omega has {omega.shape[0]} rows but the feature batch has {b} samples")
            omega = omega.expand(b, t)
        return omega.to(device=z.device, dtype=dtype)

    # ---- P2P ---------------------------------------------------------------------------------------
    def degradation_vector(self, omega: torch.Tensor) -> torch.Tensor:
        """``d(ω)``, B×D: the ω-weighted degradation prompts, reduced by ``prompt_reduce``."""
        t0 = self._trained_types
        # element-wise products summed over T (not a matmul) so the old types' sum is the very same
        # operation before and after an extension; the added types then contribute exact zeros
        d = (omega[:, :t0].unsqueeze(-1) * self.degradation_prompt).sum(dim=1)
        if len(self.added_prompts):
            added = torch.cat(list(self.added_prompts), dim=0)
            d = d + (omega[:, t0:].unsqueeze(-1) * added).sum(dim=1)
        if self.prompt_reduce == "mean":
            d = d / self.prompt_divisor
        return d

    def _universal_prompt(self, z: torch.Tensor, omega: torch.Tensor, call: LevelCall) -> torch.Tensor:
        """U on the modules, in ``z``'s layout (NCHW: the reference path; channels-last: the channels-last path)."""
        c, dim, s = self.channels, self.prompt_dim, self.prompt_size
        h, w = z.shape[-2:]
        # the resize is per channel, so dropping channels first is exact and cheaper
        zs = z[:, :dim] if c > dim else z
        zs = resize_bilinear(zs, (s, s), by_matrix=call.symbolic)
        if self.degradation_prompt is not None:
            d = self.degradation_vector(omega)
            zs = zs * d[:, :zs.shape[1], None, None]
        if c < dim:
            zs = F.pad(zs, (0, 0, 0, 0, 0, dim - c))
        kv = self.p2p_norm_kv(zs)
        per_sample = call.per_sample_gram
        if self.basic_prompt is not None:
            # the query path does not depend on the sample: run it once and broadcast over the batch
            query = self.basic_prompt.unsqueeze(0)
            if zs.is_contiguous(memory_format=torch.channels_last):
                query = query.contiguous(memory_format=torch.channels_last)
            x = query + self.p2p_attn(self.p2p_norm_query(query), kv, per_sample_gram=per_sample)
        else:
            x = zs + self.p2p_attn(self.p2p_norm_query(zs), kv, per_sample_gram=per_sample)
        x = x + self.p2p_ffn(self.p2p_norm_ffn(x))
        # a compiler's graph always resizes (an exact identity at s×s), so a symbolic H×W is not specialised to s
        if call.symbolic or (h, w) != (s, s):
            x = resize_bilinear(x, (h, w), by_matrix=call.symbolic)
        return self.out_conv(x)

    def universal_prompt(self, z: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        """U, B×D×H×W: the universal restoration prompt after the 3×3 out-conv."""
        omega = self._check_inputs(z, omega)
        return in_layout_of(self._universal_prompt(to_channels_last(z), omega, LevelCall.read(z)), z)

    # ---- P2F ---------------------------------------------------------------------------------------
    def prompt_to_feature(self, z: torch.Tensor, u: torch.Tensor, per_sample_gram: bool = False) -> torch.Tensor:
        """Selective P2F: modulate ``z`` (B×C×H×W) with the universal prompt ``u`` (B×D×H×W), in their layout.

        ``per_sample_gram``: see :meth:`TransposedCrossAttention.forward` (the dispatcher sets it).
        """
        c, dim = self.channels, self.prompt_dim
        zn = self.p2f_norm_feature(z)
        un = self.p2f_norm_prompt(u)
        rest = None
        if c > dim:
            query, rest = zn[:, :dim], zn[:, dim:]
        else:
            query = zn  # C < D: the attention zero-pads the query implicitly
        # the attention's and the FFN's outputs are fresh tensors that no backward needs: adding in place
        # saves two full-size buffers and is autograd-safe, so there is one code path for training,
        # inference and tracing
        a = self.p2f_attn(query, un, per_sample_gram=per_sample_gram)
        if c < dim:
            a[:, :c].add_(zn)
        else:
            a = a.add_(query)
        if self.reduce_channel is not None:
            a = self.reduce_channel(a)
        elif rest is not None:
            a = torch.cat([a, rest], dim=1)
        out = self.p2f_ffn(self.p2f_norm_ffn(a))
        return out.add_(a)

    def set_p2f_chunking(self, pixels: int) -> None:
        """Run P2F in bands of whole rows, about ``pixels`` pixels (at least 8 rows) each; 0: off (the default).

        Full-resolution P2F sets the peak memory of a PIP level; in bands only one band's intermediates are alive
        at a time (``modules/level_bands.py``).  The result equals the unchunked one up to float rounding.  With
        ``path = "auto"`` only eager calls on maps taller than one band use it: under ``torch.compile`` /
        ``torch.export`` / jit tracing the level runs unchunked, so the graph has no loop over the input size.
        Gradients flow through either path.
        """
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 0:
            raise ValueError(f"p2f chunk size must be an int >= 0 (pixels per band, 0 = off), got {pixels!r}")
        self.p2f_chunk_pixels = pixels

    # ---- the forward -------------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """Which forward runs: ``"auto"`` (the default) or one of ``"reference"``, ``"channels_last"``,
        ``"bands"``, ``"tokens"`` (``modules/level_paths.py``).  Not part of :meth:`config`."""
        return self._path

    @path.setter
    def path(self, value: str) -> None:
        self._path = check_path(value)

    def choose_path(self, z: torch.Tensor) -> Dispatch:
        """The path a forward on ``z`` takes here and now (in this context: eager, compiling, exporting), and why
        each other path is not taken; raises ``ValueError`` when a forced :attr:`path` cannot run it."""
        return dispatch(self, LevelCall.read(z))

    def forward(self, z: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        """``Ẑ`` (B×C×H×W) from the skip feature ``z`` and ``omega`` (B×T float weights or B int labels)."""
        return run_level(self, z, self._check_inputs(z, omega))

    def extra_repr(self) -> str:
        return (f"C={self.channels}, D={self.prompt_dim}, s={self.prompt_size}, T={self.num_types}, "
                f"reduce={self.prompt_reduce}/{self.prompt_divisor}, selective={self.selective}"
                + (f", p2f_chunk_pixels={self.p2f_chunk_pixels}" if self.p2f_chunk_pixels else "")
                + (f", path={self.path}" if self.path != AUTO else ""))


def set_p2f_chunking(model: nn.Module, pixels: int) -> int:
    """Set :meth:`PIPLevel.set_p2f_chunking` on every PIP level of ``model``; returns how many levels there are."""
    levels = [m for m in model.modules() if isinstance(m, PIPLevel)]
    for level in levels:
        level.set_p2f_chunking(pixels)
    return len(levels)


def set_level_path(model: nn.Module, path: str) -> int:
    """Set :attr:`PIPLevel.path` on every PIP level of ``model``; returns how many levels there are."""
    check_path(path)
    levels = [m for m in model.modules() if isinstance(m, PIPLevel)]
    for level in levels:
        level.path = path
    return len(levels)
