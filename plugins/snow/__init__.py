"""Plugin: the ``snow`` degradation type.

Importing it registers the ``snow`` synthesiser, so the built-in data preparation
(``pip_adapter.data.prepare_builtin(..., degradations=[..., "snow"])``) and the mixed-degradation
dataset can make snowy training/validation pairs.  Name it in an option file
(``plugins: [plugins/snow]``) or on the command line (``--plugin plugins/snow``).
See ``docs/EXTEND.md`` for adding ``snow`` to a trained model.
"""
from pip_adapter.degradations import register_synthesizer

from .synth import add_snow

# two validation variants (light and heavy snow); cheap enough to synthesise during training
register_synthesizer(
    "snow", variants=[{"density": 0.004, "veil": 0.08}, {"density": 0.012, "veil": 0.16}], online=True,
    description="falling snow: motion-streaked flakes in two depth layers over a white veil")(add_snow)

__all__ = ["add_snow"]
