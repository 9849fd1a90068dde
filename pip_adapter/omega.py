"""ω, the degradation weights: the one place where every accepted form becomes a B×T tensor.

Accepted forms (``names`` is the model's ordered list of degradation types, T = len(names)):

* ``torch.LongTensor`` / list of ints of shape (B,): labels, turned into one-hot rows;
* float tensor B×T (or a single row of length T, broadcast to the batch): weights as given;
* a name (``"rain"``): that type for the whole batch;
* a list of names, one per sample;
* a dict ``{name: weight}``: the same mix for the whole batch (types not named get 0).

Batch-wide forms (a name, a dict, one weight row, a 0-d label tensor) apply to every sample.  Per-sample forms
(lists of names, labels or dicts, a 1-d label tensor) must give exactly one entry per sample when the batch size is
known: ``model(x_with_batch_2, ["rain"])`` is refused rather than silently applying one label to both images
(write ``model(x, "rain")`` for that).

Weights are validated (finite, non-negative, at most ``MAX_WEIGHT``, not all zero per row) but not
renormalised: PIP takes any non-negative weights (spec §1).  Every problem raises ``ValueError`` naming what was
expected and what was given.  Value checks read the tensor's data (one host sync for a valid ω), so they run
once per call and in eager calls only: under ``torch.compile`` / ``torch.export``
(``torch.compiler.is_compiling()``) shapes are still checked but the values are not, and a traced graph stays free
of data-dependent branches; inside :func:`values_checked` (a caller that validated ω once, on the host, and now
runs many forwards with it, e.g. one per tile) shapes are checked only.  The PIP levels check shapes only.

Text: :func:`parse_omega_spec` reads ``"rain=0.7,noise=0.3"`` (``--omega``) into a dict for :func:`to_omega`.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Dict, Iterator, Mapping, Optional, Sequence, Union

import torch

DEFAULT_DEGRADATIONS: tuple = ("noise", "rain", "haze", "blur", "low_light")

# words that --degradation reads as a request, never as a type: a type with such a name could not be selected
RESERVED_NAMES: tuple = ("auto",)

# ω weights are mixing proportions: beyond this a weight only scales the prompts into float overflow (NaN output)
MAX_WEIGHT = 1e6

# spellings users write for the default types -> canonical name
_ALIASES = {
    "lowlight": "low_light",
    "low-light": "low_light",
    "low light": "low_light",
    "denoise": "noise",
    "denoising": "noise",
    "derain": "rain",
    "deraining": "rain",
    "dehaze": "haze",
    "dehazing": "haze",
    "deblur": "blur",
    "deblurring": "blur",
}

OmegaLike = Union[torch.Tensor, str, Sequence[str], Sequence[int], Mapping[str, float]]


def canonical_name(name: str) -> str:
    """Lower-case, trim and map common spellings (``low-light`` → ``low_light``)."""
    if not isinstance(name, str):
        raise ValueError(f"a degradation name must be a string, got {type(name).__name__}: {name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key.replace(" ", "_").replace("-", "_")


def placeholder_names(count: int) -> list:
    """``type0`` … ``type{count-1}``: the names of types a model knows only by number."""
    return [f"type{i}" for i in range(count)]


def normalise_names(names: Union[int, Sequence[str], None]) -> list:
    """Turn ``degradations`` as users give it (int T, list of names, None) into a list of names."""
    if names is None:
        return list(DEFAULT_DEGRADATIONS)
    if isinstance(names, int):
        if names < 1:
            raise ValueError(f"the number of degradation types must be >= 1, got {names}")
        if names == len(DEFAULT_DEGRADATIONS):
            return list(DEFAULT_DEGRADATIONS)
        return placeholder_names(names)
    if isinstance(names, str):
        raise ValueError(f"degradations must be a list of names or an int, got the string {names!r}")
    out = [canonical_name(n) for n in names]
    if not out:
        raise ValueError("degradations is empty: give at least one degradation type")
    dupes = sorted({n for n in out if out.count(n) > 1})
    if dupes:
        raise ValueError(f"degradation names must be unique, repeated: {dupes}")
    return out


def name_to_index(name: str, names: Sequence[str]) -> int:
    """Index of ``name`` in ``names``; an unknown name lists the known ones."""
    key = canonical_name(name)
    for i, n in enumerate(names):
        if canonical_name(n) == key:
            return i
    raise ValueError(f"unknown degradation {name!r}; this model knows: {', '.join(names)}")


def parse_omega_spec(text: str) -> Dict[str, float]:
    """``"rain=0.7,noise=0.3"`` → ``{"rain": 0.7, "noise": 0.3}`` (names and values are checked by ``to_omega``)."""
    out: Dict[str, float] = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"cannot read omega {text!r}: write name=weight pairs like 'rain=0.7,noise=0.3'")
        name, value = part.split("=", 1)
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"cannot read omega {text!r}: {value.strip()!r} is not a number") from None
        if name.strip() in out:
            raise ValueError(f"omega {text!r} names {name.strip()!r} twice")
        out[name.strip()] = weight
    if not out:
        raise ValueError(f"omega {text!r} is empty: write name=weight pairs like 'rain=0.7,noise=0.3'")
    return out


# set by values_checked(): the ω of the calls inside was validated already, only shapes are checked again
_VALUES_CHECKED: contextvars.ContextVar = contextvars.ContextVar("pip_adapter_omega_values_checked", default=False)


@contextlib.contextmanager
def values_checked() -> Iterator[None]:
    """Inside, :func:`to_omega` checks shapes only: for a caller that validated its ω once (``to_omega`` on the
    host) and then runs the network many times with it — the ``Restorer`` over tiles — so that a GPU run makes no
    host sync per forward to re-read values it already knows are valid."""
    token = _VALUES_CHECKED.set(True)
    try:
        yield
    finally:
        _VALUES_CHECKED.reset(token)


def _tracing() -> bool:
    """True while torch.compile / torch.export trace: data-dependent value checks must not run then."""
    return torch.compiler.is_compiling()


def _skip_value_checks() -> bool:
    # the tracing test first: a compiled graph never reads the context variable
    return _tracing() or _VALUES_CHECKED.get()


def _check_weights(w: torch.Tensor, num_types: int) -> torch.Tensor:
    if w.dim() != 2 or w.shape[1] != num_types:
        raise ValueError(
            f"omega weights must have shape B×T with T={num_types}, got shape {tuple(w.shape)}")
    if not _skip_value_checks():
        _check_values(w)
    return w


def _check_values(w: torch.Tensor) -> None:
    # one host sync for a valid ω; the checks below only run to say what is wrong
    bad = (~torch.isfinite(w)).any() | (w < 0).any() | (w > MAX_WEIGHT).any() | (w.sum(dim=1) <= 0).any()
    if not bool(bad):
        return
    if not torch.isfinite(w).all():
        raise ValueError("omega weights contain NaN or infinite values; give finite, non-negative weights")
    if (w < 0).any():
        raise ValueError(f"omega weights must be non-negative, got min {w.min().item():g}")
    if (w > MAX_WEIGHT).any():
        raise ValueError(f"omega weight {w.max().item():g} is absurdly large (at most {MAX_WEIGHT:g}); ω weights "
                         "are proportions such as rain=0.7,noise=0.3")
    zero_rows = (w.sum(dim=1) <= 0).nonzero().flatten().tolist()
    if zero_rows:
        raise ValueError(f"omega weights are all zero for sample(s) {zero_rows}; "
                         "give at least one positive weight per sample")


def _weight(name: str, value: object) -> float:
    """One weight of a {name: weight} ω, checked before it meets a float32 tensor (1e39 would overflow there)."""
    try:
        weight = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"omega weight of {name!r} must be a number, got {value!r}") from None
    if not math.isfinite(weight):
        raise ValueError(f"omega weight of {name!r} is NaN or infinite ({value!r}); give finite, non-negative "
                         "weights")
    if weight < 0:
        raise ValueError(f"omega weights must be non-negative, got {name}={weight:g}")
    if weight > MAX_WEIGHT:
        raise ValueError(f"omega weight of {name!r} is {weight:g}, absurdly large (at most {MAX_WEIGHT:g}); ω "
                         "weights are proportions such as rain=0.7,noise=0.3")
    return weight


def labels_to_omega(labels: torch.Tensor, num_types: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot B×T weights from integer labels of shape (B,), with range checks."""
    labels = torch.as_tensor(labels)
    if labels.dim() != 1:
        raise ValueError(f"omega labels must have shape (B,), got shape {tuple(labels.shape)}")
    if not _skip_value_checks() and labels.numel() and bool((labels.min() < 0) | (labels.max() >= num_types)):
        raise ValueError(f"omega labels must lie in [0, {num_types - 1}] (T={num_types}), "
                         f"got {labels.tolist()}")
    return torch.nn.functional.one_hot(labels.long(), num_types).to(dtype)


def to_omega(omega: OmegaLike, names: Sequence[str], batch_size: Optional[int] = None,
             device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Validate ``omega`` in any accepted form and return a float B×T tensor on ``device``.

    ``batch_size`` broadcasts batch-wide forms (a name, a dict, one row) and checks per-sample forms.
    """
    num_types = len(names)
    per_sample = (isinstance(omega, torch.Tensor) and omega.dim() >= 1 and not omega.is_floating_point()) or (
        isinstance(omega, Sequence) and not isinstance(omega, (str, torch.Tensor)))
    if omega is None:
        raise ValueError("omega is required: give labels, weights, a name, names or a {name: weight} dict "
                         f"(known types: {', '.join(names)})")
    if isinstance(omega, str):
        w = labels_to_omega(torch.tensor([name_to_index(omega, names)]), num_types, dtype)
    elif isinstance(omega, Mapping):
        w = torch.zeros(1, num_types, dtype=dtype)
        given = {}
        for key, val in omega.items():
            index = name_to_index(key, names)
            if index in given:
                raise ValueError(f"omega names {names[index]!r} twice ({given[index]!r} and {key!r}); give each "
                                 "degradation once")
            given[index] = key
            w[0, index] = _weight(key, val)
    elif isinstance(omega, torch.Tensor):
        if omega.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool):
            w = labels_to_omega(omega.reshape(-1) if omega.dim() == 0 else omega, num_types, dtype)
        else:
            w = omega.to(dtype)
            if w.dim() == 1:
                if w.shape[0] != num_types:
                    raise ValueError(f"omega weights must have T={num_types} entries, got {w.shape[0]}")
                w = w.unsqueeze(0)
    elif isinstance(omega, Sequence) and len(omega) > 0 and all(isinstance(o, str) for o in omega):
        w = labels_to_omega(torch.tensor([name_to_index(o, names) for o in omega]), num_types, dtype)
    elif isinstance(omega, Sequence) and len(omega) > 0 and all(isinstance(o, int) for o in omega):
        w = labels_to_omega(torch.tensor(list(omega)), num_types, dtype)
    elif isinstance(omega, Sequence) and len(omega) > 0 and all(isinstance(o, Mapping) for o in omega):
        w = torch.cat([to_omega(o, names, 1, None, dtype) for o in omega], dim=0)
    else:
        raise ValueError(f"cannot read omega of type {type(omega).__name__}: give labels (LongTensor B), "
                         "weights (float B×T), a name, a list of names or a {name: weight} dict")
    w = _check_weights(w, num_types)
    if batch_size is not None and w.shape[0] != batch_size:
        if per_sample:
            example = omega[0] if isinstance(omega, Sequence) and isinstance(omega[0], str) else names[0]
            one = (f"; for one type on every sample give a single name (a string, e.g. {example!r}), not a list"
                   if w.shape[0] == 1 else "")
            raise ValueError(f"omega gives {w.shape[0]} per-sample entries (labels, names or dicts) but the batch has "
                             f"{batch_size} samples: give one per sample{one}")
        if w.shape[0] == 1:
            w = w.expand(batch_size, num_types)
        else:
            raise ValueError(f"omega has {w.shape[0]} rows but the batch has {batch_size} samples")
    return w.to(device) if device is not None else w
