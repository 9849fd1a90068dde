"""Data: the mixed-degradation dataset, Degradation-Mix, built-in data and standard-layout conversion.

Pure PyTorch/NumPy (never imports basicsr); ``pip_adapter.bsr`` registers ``MixedDegradationDataset`` in
BasicSR's DATASET_REGISTRY.  See docs/DATA.md for the option schema.
"""
from .builtin import builtin_dataset_options, ensure_builtin, prepare_builtin
from .convert import PAPER_REPEATS, convert_standard
from .dataset import MixedDegradationDataset
from .lmdb_io import LmdbReader, LmdbWriter, lmdb_key, read_meta_info
from .mix import degradation_mix

__all__ = [
    "MixedDegradationDataset", "degradation_mix", "prepare_builtin", "ensure_builtin", "convert_standard",
    "builtin_dataset_options", "PAPER_REPEATS", "LmdbReader", "LmdbWriter", "lmdb_key", "read_meta_info",
]
