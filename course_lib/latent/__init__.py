"""Stable Diffusion in miniature: autoencoder, latent diffusion, cross-attention, editing (chapter 11).

Every box of Stable Diffusion's diagram (Rombach et al. 2022), small enough for a laptop CPU:

=========================== ===================================== ======================================
piece                       here                                  Stable Diffusion 1.5
=========================== ===================================== ======================================
tokenizer                   :func:`~course_lib.scenes.scene_tokenize` (words, 24 ids)  CLIP BPE, 77 ids
text encoder                2-layer transformer, per-word 64-d    CLIP ViT-L/14 text, 12 layers, 768-d
autoencoder ("VAE")         :class:`Autoencoder`, f = 4, 16×16×4  AutoencoderKL, f = 8, 64×64×4
latent denoiser             :class:`CrossAttentionUNet`           UNet2DConditionModel, 860 M
scheduler / sampler         cosine schedule, v-prediction, DDIM   scaled-linear, ε, PNDM/DDIM/…
guidance                    CFG, s = :data:`DEFAULT_GUIDANCE`     CFG, s = 7.5
=========================== ===================================== ======================================

Functions, in the order the chapter uses them: :func:`autoencoder_model` (shipped, or
trained once and cached; verified), :func:`scene_latents`, :func:`latent_model` (the cross-attention or the pooled denoiser
on latents), :func:`text_to_image` (the pipeline), :func:`img2img`, :func:`inpaint`,
:func:`inversion_edit`, :func:`attention_maps`, and :func:`latent_benchmark` (every figure of
``benchmarks/latent.py``).

Modules: :mod:`.pipeline` (recipe, autoencoder, latent denoisers, pipeline; the ``cpu`` networks
ship in ``course_lib/weights``, trained by ``benchmarks/train_latent.py`` and checked by sha256 and
recipe on load through :mod:`course_lib.registry`), :mod:`.editing` (img2img, inpainting, inversion edits,
attention maps), :mod:`.measuring` (accuracy, edits, speed, the benchmark). Everything is importable
from here: ``from course_lib.latent import latent_model``.
"""

from .editing import attention_maps, denoise_from, img2img, inpaint, inversion_edit
from .measuring import edit_benchmark, edit_requests, latent_benchmark, prompt_accuracy, speed_comparison
from .pipeline import (
    AUTOENCODER, LATENT_DENOISERS, CONDITIONINGS, DEFAULT_GUIDANCE, DEFAULT_STRENGTH, LATENT_DDIM, LATENT_PREDICTION_TYPE, LATENT_SCHEDULE,
    LatentRecipe, Pipeline, autoencoder_model, build_latent_denoiser, latent_model, latent_recipe, load_pipeline,
    reconstruction_psnr, scene_latents, text_to_image,
)

__all__ = [
    "AUTOENCODER", "CONDITIONINGS", "DEFAULT_GUIDANCE", "DEFAULT_STRENGTH", "LATENT_DDIM", "LATENT_DENOISERS",
    "LATENT_PREDICTION_TYPE", "LATENT_SCHEDULE", "LatentRecipe", "Pipeline", "attention_maps",
    "autoencoder_model", "build_latent_denoiser", "denoise_from", "edit_benchmark", "edit_requests", "img2img", "inpaint",
    "inversion_edit", "latent_benchmark", "latent_model", "latent_recipe", "load_pipeline", "prompt_accuracy",
    "reconstruction_psnr", "scene_latents", "speed_comparison", "text_to_image",
]
