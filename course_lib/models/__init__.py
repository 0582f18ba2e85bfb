"""The course's networks: denoisers (the U-Net, an MLP for 2-D toys) and their embeddings (chapter 04).

Classifiers (:mod:`.classifier`, :mod:`.noisy_classifier`, :mod:`.attributes`) and the text encoder
(:mod:`.text`) are imported from their own modules. Every denoiser is called as
``model(x_t, t, cond=None)`` and returns a tensor shaped like ``x_t``.
"""

from .embeddings import NULL_LABEL, LabelEmbedding, TimeEmbedding, VectorEmbedding, sinusoidal_embedding
from .mlp import MLPConfig, MLPDenoiser
from .unet import PRESET_NAMES, UNet, UNetConfig, count_parameters, digits_config

__all__ = [
    "NULL_LABEL", "LabelEmbedding", "TimeEmbedding", "VectorEmbedding", "sinusoidal_embedding",
    "MLPConfig", "MLPDenoiser", "PRESET_NAMES", "UNet", "UNetConfig", "count_parameters", "digits_config",
]
