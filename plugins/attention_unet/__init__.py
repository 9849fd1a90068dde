"""Plugin: ``AttentionUNet``, a U-Net with attention-gated skips, as a backbone for ``PIPNet``.

Importing it registers the class with pip-adapter's backbone registry (and, through the glue, with
BasicSR's ``ARCH_REGISTRY``), so an option file can say::

    plugins: [plugins/attention_unet]
    network_g:
      type: PIPNet
      backbone: {type: AttentionUNet, width: 32, mults: [1, 2, 4]}

and PIP modules are placed on its three skip connections.
"""
from pip_adapter.backbones import register_backbone

from .arch import AttentionGate, AttentionUNet

register_backbone(AttentionUNet)

__all__ = ["AttentionUNet", "AttentionGate"]
