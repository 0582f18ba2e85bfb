"""Denoisers (chapter 04): the course U-Net, an MLP for 2-D toys, and their embeddings.

Every denoiser is called as ``model(x_t, t, cond=None)`` and returns a tensor shaped like ``x_t``.
"""

from .embeddings import EMPTY_LABEL, LabelEmbedding, TimeEmbedding, VectorEmbedding, sinusoidal_embedding
from .mlp import MLPConfig, MLPDenoiser
from .unet import PRESET_NAMES, UNet, UNetConfig, count_parameters, digits_config

__all__ = [
    "EMPTY_LABEL", "LabelEmbedding", "TimeEmbedding", "VectorEmbedding", "sinusoidal_embedding",
    "MLPConfig", "MLPDenoiser", "PRESET_NAMES", "UNet", "UNetConfig", "count_parameters", "digits_config",
]
