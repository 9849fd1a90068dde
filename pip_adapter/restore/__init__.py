"""Inference: self-describing checkpoints, the ``Restorer``, tiling, image I/O and the degradation classifier.

Pure PyTorch: nothing here imports basicsr (the classifier's BasicSR model lives in ``pip_adapter.bsr``).
"""
from pip_adapter.restore.checkpoint import (CheckpointError, LoadedCheckpoint, export_checkpoint,
                                            load_checkpoint, make_meta, save_checkpoint)
from pip_adapter.restore.classifier import DegradationClassifier
from pip_adapter.image_io import ImageInfo, ImageReadError, read_image, write_image
from pip_adapter.restore.onnx_export import MissingDependencyError, export_onnx, export_onnx_model
from pip_adapter.restore.onnx_runtime import OnnxRuntimeNet
from pip_adapter.restore.restorer import Restorer, RestoreResult, image_metrics, parse_omega_spec
from pip_adapter.restore.tiling import pad_to_multiple, tiled_forward

__all__ = [
    "CheckpointError", "LoadedCheckpoint", "export_checkpoint", "load_checkpoint", "make_meta", "save_checkpoint",
    "DegradationClassifier", "ImageInfo", "ImageReadError", "read_image", "write_image", "Restorer",
    "RestoreResult", "image_metrics", "parse_omega_spec", "pad_to_multiple", "tiled_forward",
    "MissingDependencyError", "export_onnx", "export_onnx_model", "OnnxRuntimeNet",
]
