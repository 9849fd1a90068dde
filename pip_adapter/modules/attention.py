"""Channel-wise ("transposed", MDTA-style) cross attention, plain and top-m.

The attention map is C×C per head (channels attend to channels, spatial positions are the inner
dimension), so its cost is linear in H·W.  The top-m variant keeps, in each row of the map, the
top-k entries for four values of k and sums the four softmax outputs with learnable scalars.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .tokens import depthwise_tokens, linear_tokens, weight_matrix


def set_fused(model: nn.Module, fused: bool) -> Dict[nn.Module, bool]:
    """Set the ``fused`` flag of every sub-module that has one; returns the previous values.

    Fused paths fold a module's work into another op (the attention's output projection into its mixing
    matrix, the FFN's 1×1 and depthwise convs into per-half convs).  With ``fused=False`` every such module
    is called as a module, so forward hooks (counters, profilers) see it; the numbers agree up to rounding.
    """
    previous = {}
    for m in model.modules():
        if isinstance(getattr(m, "fused", None), bool):
            previous[m] = m.fused
            m.fused = fused
    return previous


@contextlib.contextmanager
def unfused(model: nn.Module) -> Iterator[nn.Module]:
    """Inside this block every fused path of ``model`` calls its modules (see :func:`set_fused`)."""
    previous = set_fused(model, False)
    try:
        yield model
    finally:
        for m, value in previous.items():
            m.fused = value


def topm_ks(c: int) -> Tuple[int, int, int, int]:
    """The four top-k sizes for per-head width ``c``: int(c/2), int(2c/3), int(3c/4), int(4c/5)."""
    # integer floor division equals int() of the float quotient for positive ints, without float rounding
    return (c // 2, (2 * c) // 3, (3 * c) // 4, (4 * c) // 5)


def topm_masks(attn: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """Boolean masks keeping the top-k entries of every row of ``attn`` for each k in ``ks``.

    Returns a tensor of shape ``(len(ks), *attn.shape)``.  One ``topk`` with the largest k (sorted
    descending) gives every entry's rank; mask i is ``rank < ks[i]``.  For rows without ties this
    is exactly what ``len(ks)`` separate ``torch.topk`` calls select; with ties, which of the tied
    entries is kept follows the one (sorted) topk call, and every mask still keeps exactly k entries.
    """
    n = attn.shape[-1]
    kmax = max(ks)
    if min(ks) < 1 or kmax > n:
        raise ValueError(f"top-k sizes must lie in [1, {n}], got {list(ks)}")
    idx = torch.topk(attn, kmax, dim=-1, largest=True, sorted=True).indices
    ranks = torch.full(attn.shape, n, dtype=torch.int32, device=attn.device)
    order = torch.arange(kmax, dtype=torch.int32, device=attn.device).expand(idx.shape)
    ranks.scatter_(-1, idx, order)
    kt = torch.tensor(list(ks), dtype=torch.int32, device=attn.device).view(-1, *([1] * attn.dim()))
    return ranks.unsqueeze(0) < kt


class TransposedCrossAttention(nn.Module):
    """Cross attention over channels: query from ``x``, key/value from ``y`` (both ``dim`` channels).

    ``q = DW3×3(1×1(x))``, ``k, v = split(DW3×3(1×1_{dim→2dim}(y)))``, heads of width c = dim/heads,
    q and k L2-normalised along space, ``A = q kᵀ · τ`` (τ per head, init 1).
    ``topm=False``: ``out = softmax(A) v``.  ``topm=True``: ``out = Σ_i a_i softmax(mask_i(A)) v`` with
    the masks of :func:`topm_masks` and scalars ``attn1..attn4`` (init 0.2, not normalised).
    Then a 1×1 projection.  No bias anywhere.
    """

    def __init__(self, dim: int, num_heads: int, topm: bool = False, fused: bool = True) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"attention width {dim} must be divisible by the number of heads {num_heads}")
        self.dim, self.num_heads, self.topm = dim, num_heads, topm
        self.fused = fused   # an explicit flag (see set_fused), never inferred from attached hooks
        self.head_dim = dim // num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, kernel_size=1, bias=False)
        self.q_dwconv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=False)
        self.kv = nn.Conv2d(dim, 2 * dim, kernel_size=1, bias=False)
        self.kv_dwconv = nn.Conv2d(2 * dim, 2 * dim, kernel_size=3, padding=1, groups=2 * dim, bias=False)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=False)
        if topm:
            self.ks = topm_ks(self.head_dim)
            if self.ks[0] < 1:
                raise ValueError(f"top-m attention needs a head width of at least 2, got {self.head_dim} "
                                 f"(dim {dim} / {num_heads} heads)")
            for i in range(1, 5):
                setattr(self, f"attn{i}", nn.Parameter(torch.full((1,), 0.2)))

    def attention_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``q kᵀ`` of L2-normalised rows times τ, for q, k of shape B×heads×c×N."""
        # dividing the small c×c product by the norms equals normalising q and k first, without
        # writing two normalised copies of the big tensors
        # float32 from here on (no-ops for float32 inputs): under autocast the c×c map, its top-m ranks and
        # the softmax stay in float32 while the big products run in the low precision
        qn = torch.linalg.vector_norm(q, dim=-1, dtype=torch.float32).clamp_min(1e-12)
        kn = torch.linalg.vector_norm(k, dim=-1, dtype=torch.float32).clamp_min(1e-12)
        attn = (q @ k.transpose(-2, -1)).float()
        return attn / (qn.unsqueeze(-1) * kn.unsqueeze(-2)) * self.temperature

    def mix_weights(self, attn: torch.Tensor) -> torch.Tensor:
        """The c×c matrix applied to v: softmax(A), or Σ_i a_i softmax(mask_i(A)) for top-m."""
        if not self.topm:
            return attn.softmax(dim=-1)
        masks = topm_masks(attn, self.ks)
        probs = attn.unsqueeze(0).masked_fill(~masks, float("-inf")).softmax(dim=-1)
        scalars = torch.cat([self.attn1, self.attn2, self.attn3, self.attn4]).view(4, *([1] * attn.dim()))
        # Σ_i a_i (P_i v) = (Σ_i a_i P_i) v: one product with the big v instead of four
        return (probs * scalars).sum(0)

    # ---- the attention's pieces (the level's band and token paths are built from these) -------------------
    def query(self, x: torch.Tensor) -> torch.Tensor:
        """q: the 1×1 and depthwise 3×3 query convs of ``x`` (B×c×H×W, c ≤ dim; fewer channels = zero-padded)."""
        if x.shape[1] > self.dim:
            raise ValueError(f"query has {x.shape[1]} channels, more than the attention width {self.dim}")
        if x.shape[1] == self.dim:
            q = self.q(x)
        elif not self.fused:
            q = self.q(F.pad(x, (0, 0, 0, 0, 0, self.dim - x.shape[1])))
        else:
            # the padded channels add nothing to the 1×1 conv, so they are never built
            q = F.conv2d(x, self.q.weight[:, :x.shape[1]])
        return self.q_dwconv(q)

    def key(self, y: torch.Tensor) -> torch.Tensor:
        """k alone (the first half of the key/value convs) of ``y`` B×dim×H×W."""
        dim = self.dim
        return F.conv2d(F.conv2d(y, self.kv.weight[:dim]), self.kv_dwconv.weight[:dim], padding=1, groups=dim)

    def value(self, y: torch.Tensor) -> torch.Tensor:
        """v alone (the second half of the key/value convs) of ``y`` B×dim×H×W."""
        dim = self.dim
        return F.conv2d(F.conv2d(y, self.kv.weight[dim:]), self.kv_dwconv.weight[dim:], padding=1, groups=dim)

    def token_statistics(self, q: torch.Tensor, k: torch.Tensor,
                         product: str = "heads") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the mixing matrix needs from q and k tokens (B'×N×dim and B×N×dim, B' 1 or B, any strides).

        Returns the per-head ``q·kᵀ`` (B×heads×c×c) and the sums of squares of q and k over the tokens (B'×dim,
        B×dim), all float32.  All three are sums over tokens, so a caller may add them up over parts of the map.
        ``product`` says how ``q·kᵀ`` is computed (same numbers up to rounding): ``"heads"``, one batched product
        over strided head-major views; ``"samples"``, one product per sample (on CPU a batched product over
        (B, heads) first copies both strided operands: docs/BENCHMARKS.md, "Transposed attention: CPU paths");
        ``"dense"``, one dim×dim GEMM and its diagonal head blocks (what a compiler lowers best).
        """
        b, heads, c = k.shape[0], self.num_heads, self.head_dim
        if product == "dense":
            gram = torch.bmm(q.transpose(1, 2).expand(b, -1, -1), k)
            gram = gram.view(b, heads, c, heads, c).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)
        elif product in ("heads", "samples"):
            qh = q.unflatten(-1, (heads, c)).permute(0, 2, 3, 1)
            kh = k.unflatten(-1, (heads, c)).permute(0, 2, 1, 3)
            if product == "heads":
                gram = qh @ kh
            else:
                gram = torch.stack([qh[i if qh.shape[0] > 1 else 0] @ kh[i] for i in range(b)])
        else:
            raise ValueError(f"product must be 'heads', 'samples' or 'dense', got {product!r}")
        # sum of squares over tokens: a vectorised reduction over the outer axis of a channels-last view (timed
        # against linalg.vector_norm in docs/BENCHMARKS.md, "Transposed attention: CPU paths"); float32 as in
        # attention_map, so under autocast the c×c map, top-m and softmax stay float32
        return gram.float(), q.square().sum(dim=1, dtype=torch.float32), k.square().sum(dim=1, dtype=torch.float32)

    def mixing_matrix(self, stats: Tuple[torch.Tensor, torch.Tensor, torch.Tensor], dtype: torch.dtype,
                      fold_projection: bool = True) -> torch.Tensor:
        """The B×dim×dim matrix M with output ``v·Mᵀ`` (tokens), from :meth:`token_statistics`.

        M is the block-diagonal matrix of the per-head mixing weights (:meth:`mix_weights` of the normalised
        ``q·kᵀ`` times τ), in ``dtype``; with ``fold_projection`` the output projection is multiplied in.
        """
        gram, q_sq, k_sq = stats
        heads, c = self.num_heads, self.head_dim
        # dividing the small c×c product by the norms equals normalising q and k first
        qn = q_sq.sqrt().clamp_min(1e-12).view(q_sq.shape[0], heads, c)
        kn = k_sq.sqrt().clamp_min(1e-12).view(k_sq.shape[0], heads, c)
        mix = self.mix_weights(gram / (qn.unsqueeze(-1) * kn.unsqueeze(-2)) * self.temperature).to(dtype)
        eye = torch.eye(heads, dtype=mix.dtype, device=mix.device)
        block = (mix.unsqueeze(3) * eye.view(1, heads, 1, heads, 1)).reshape(mix.shape[0], self.dim, self.dim)
        if fold_projection:
            block = weight_matrix(self.project_out.weight).to(block.dtype) @ block
        return block

    # ---- forwards --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor, per_sample_gram: bool = False) -> torch.Tensor:
        """Attend from ``x`` (B×dim×H×W, or 1×dim×H×W shared by the batch) to ``y`` (B×dim×H×W).

        ``x`` may have fewer than ``dim`` channels: it is then taken as zero-padded up to ``dim`` (the padded
        channels add nothing to the 1×1 query conv, so they are never built).

        The layout of the maps picks the form: channels-last maps run token-major (B×HW×dim views, no copies)
        and fold the per-head mixing and the output projection into one dim×dim matrix per sample
        (:meth:`mixing_matrix`); other layouts run head-major.  Both give the same numbers up to rounding.
        ``per_sample_gram``: the token-major ``q·kᵀ`` one sample at a time (``product="samples"`` of
        :meth:`token_statistics`); the PIP level's dispatcher sets it for eager CPU calls with B > 1.  With
        ``fused=False`` (see :func:`set_fused`; counting sets it) ``project_out`` is called as a module instead
        of being folded in.
        """
        b, _, h, w = y.shape
        if x.shape[-2:] != y.shape[-2:] or x.shape[0] not in (1, b):
            raise ValueError(f"query and key/value maps must share batch and size, got {tuple(x.shape)} "
                             f"and {tuple(y.shape)}")
        q = self.query(x)
        kv = self.kv_dwconv(self.kv(y))
        if kv.is_contiguous(memory_format=torch.channels_last):
            return self._forward_tokens(q, kv, per_sample_gram)
        heads, c = self.num_heads, self.head_dim
        q = q.reshape(x.shape[0], heads, c, h * w)
        k, v = kv.reshape(b, 2, heads, c, h * w).unbind(1)
        mix = self.mix_weights(self.attention_map(q, k)).to(v.dtype)
        out = (mix @ v).reshape(b, self.dim, h, w)
        return self.project_out(out)

    def _forward_tokens(self, q: torch.Tensor, kv: torch.Tensor, per_sample_gram: bool) -> torch.Tensor:
        b, _, h, w = kv.shape
        n, dim = h * w, self.dim
        qt = q.permute(0, 2, 3, 1).reshape(q.shape[0], n, dim)      # views for channels-last maps
        kvt = kv.permute(0, 2, 3, 1).reshape(b, n, 2 * dim)
        kt, vt = kvt[..., :dim], kvt[..., dim:]
        stats = self.token_statistics(qt, kt, "samples" if per_sample_gram and b > 1 else "heads")
        block = self.mixing_matrix(stats, vt.dtype, fold_projection=self.fused)
        out = (vt @ block.transpose(-1, -2)).view(b, h, w, dim).permute(0, 3, 1, 2)
        return out if self.fused else self.project_out(out)

    def mix_tokens(self, x: torch.Tensor, y: torch.Tensor, size: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The attention for tokens, as ``(M, v)``: its output is ``v · Mᵀ`` (B×N×dim).

        ``x``: query tokens B'×N×c (B' 1 or B; c ≤ dim, taken as zero-padded to dim as in :meth:`forward`);
        ``y``: key/value tokens B×N×dim; ``size``: the H×W grid of the N tokens.  ``M`` (B×dim×dim) is
        :meth:`mixing_matrix` with the output projection folded in, so a caller can fold a following linear map
        and a residual into one GEMM over ``v``.  Every full-size tensor is made by a GEMM or a depthwise conv
        on a channels-last view (the level's token path, what ``torch.compile`` runs).
        """
        dim = y.shape[-1]
        q = depthwise_tokens(linear_tokens(x, weight_matrix(self.q.weight)[:, :x.shape[-1]]), self.q_dwconv.weight,
                             size)
        w_kv, w_dw = weight_matrix(self.kv.weight), self.kv_dwconv.weight
        k = depthwise_tokens(linear_tokens(y, w_kv[:dim]), w_dw[:dim], size)
        v = depthwise_tokens(linear_tokens(y, w_kv[dim:]), w_dw[dim:], size)
        # one dim×dim GEMM over the tokens rather than a batched product over strided per-head views
        return self.mixing_matrix(self.token_statistics(q, k, "dense"), v.dtype), v
