"""The real thing: a downloaded Stable Diffusion checkpoint, opened along the course's boxes (chapter 11, section 7).

Chapter 11 builds every box of Stable Diffusion's diagram at laptop size (Rombach et al. 2022). This
module takes a real checkpoint apart along the same boxes and drives it with the course's own code:

============== ================================================ ===========================================
box            the course (chapter 11)                          the checkpoint (``diffusers`` pipeline)
============== ================================================ ===========================================
tokenizer      ``scenes.scene_tokenize``: words → ids           ``pipe.tokenizer``: CLIP BPE → 77 ids
text encoder   ``models.text.TextEncoder``, one vector per word  ``pipe.text_encoder``: CLIP text transformer
U-Net          ``models.cross_attention.CrossAttentionUNet``     ``pipe.unet``: ``UNet2DConditionModel``
VAE            ``models.autoencoder.Autoencoder``                ``pipe.vae``: ``AutoencoderKL``
scheduler      ``schedules.make_schedule`` + ``samplers.sample``  ``pipe.scheduler`` (its β's, its steps)
============== ================================================ ===========================================

- :class:`RealDenoiser` is the text encoder and the U-Net as a course denoiser ``model(x_t, t, cond=ids)``
  (a row of −1 ids is CFG's "no condition", read as the empty prompt, which is what diffusers feeds
  its unconditional half), so :func:`course_lib.samplers.sample` drives the real U-Net: chapter 11's
  DDIM (``latent.LATENT_DDIM``: trailing steps, unclamped) on the checkpoint's own schedule
  (:func:`course_schedule`), then the VAE decodes ``z / scaling_factor``.
- :func:`real_attention_maps` records the real U-Net's cross-attention weights with the course's
  formula (``models.cross_attention.cross_attention_weights``, the function chapter 11's exercise
  asks for) and adds them up as ``latent.attention_maps`` does: the conditional row, heads averaged,
  upsampled to the picture, summed over layers and steps, each word's map scaled to a maximum of 1.
- :func:`paint_real_sd` is chapter 11's cell: with a CUDA GPU and a network it downloads
  :data:`MODEL_ID` (SD-Turbo, Sauer et al. 2023, "Adversarial Diffusion Distillation": one step, no
  guidance) and paints :data:`COURSE_PROMPT`. Without a GPU, without the packages, without a network
  (the Hub is probed for :data:`PROBE_TIMEOUT_S` seconds in a thread that cannot hang the cell), in
  the ``smoke`` profile, or when the learner opts out (``real_sd=False``), it returns ONE line saying
  why, and the chapter moves on. A pipeline can be injected (``pipe=``), which is how
  ``tests/test_real_sd.py`` runs the cell's code path on a tiny random pipeline, offline.

``diffusers`` and ``transformers`` are optional: they are imported inside the functions that need them.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from .latent import LATENT_DDIM
from .models.cross_attention import cross_attention_weights
from .samplers import sample
from .schedules import NoiseSchedule, make_schedule
from .settings import check_bool, check_choice, check_int
from .viz import show_images

MODEL_ID = "stabilityai/sd-turbo"  # on the Hub with diffusers folders and fp16 files
DOWNLOAD_SIZE = "about 2.6 GB"  # its fp16 files as the Hub lists them: U-Net 1.73 GB, text encoder 681 MB, VAE 167 MB
COURSE_PROMPT = "a cat wearing a hat"  # the course's own sentence (chapter 08)
MAP_WORDS = ("cat", "hat")
PROBE_TIMEOUT_S = 3.0
SKIPPED = "real Stable Diffusion skipped: "
BOXES = ("tokenizer", "text encoder", "U-Net", "VAE", "scheduler")
_BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}


# ----------------------------------------------------------------------------- may it run here?
def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:120]}" if text else type(err).__name__


def hub_offline() -> bool:
    """Whether the learner switched the Hugging Face Hub off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "on", "yes", "true")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def is_cached(model_id: str = MODEL_ID) -> bool:
    """Whether ``model_id``'s ``model_index.json`` is in the local Hugging Face cache (nothing is fetched)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model_id, "model_index.json"), str)


def probe_hub(model_id: str = MODEL_ID, timeout: float = PROBE_TIMEOUT_S, *, endpoint: str | None = None) -> str | None:
    """None when the Hub answers a HEAD request for ``model_id``'s ``model_index.json``, else why not (one line).

    The request runs in a daemon thread that the caller waits for at most ``timeout`` + 1 seconds, so
    not even a stuck name lookup can hang a notebook cell.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    answer: list[str | None] = []

    def head() -> None:
        try:
            get_hf_file_metadata(hf_hub_url(model_id, "model_index.json", endpoint=endpoint), timeout=timeout)
            answer.append(None)
        except Exception as err:  # a probe reports any failure, it never raises
            answer.append(_one_line(err))

    probe = threading.Thread(target=head, daemon=True, name="hub-probe")
    probe.start()
    probe.join(timeout + 1.0)
    if not answer:
        return f"the Hugging Face Hub did not answer within {timeout:g} s"
    return answer[0]


def why_not(enabled: bool, profile: str, model_id: str = MODEL_ID, *,
            timeout: float = PROBE_TIMEOUT_S) -> tuple[str | None, bool]:
    """(the one line saying why the real model cannot run here, or None; whether to load from the cache only).

    Checked in order, cheapest first: the opt-out, a CUDA GPU, the profile, the packages, then the
    network (``HF_HUB_OFFLINE``, or a probe of ``timeout`` seconds); a checkpoint already in the
    local cache runs without a network.
    """
    size = f" ({DOWNLOAD_SIZE})" if model_id == MODEL_ID else ""
    if not enabled:
        return f"real_sd=False (set it to True to download {model_id}{size} on a GPU)", False
    if not torch.cuda.is_available():
        return (f"no CUDA GPU here; on one (Colab: Runtime → Change runtime type → T4 GPU) this cell downloads "
                f"{model_id}{size} and paints \"{COURSE_PROMPT}\""), False
    if profile == "smoke":
        return "the smoke profile downloads nothing (the cpu and gpu profiles do)", False
    missing = [m for m in ("diffusers", "transformers", "huggingface_hub") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (pip install {' '.join(missing)})", False
    cached = is_cached(model_id)
    if hub_offline():
        return (None, True) if cached else (f"HF_HUB_OFFLINE is set and {model_id} is not in the local cache", False)
    problem = probe_hub(model_id, timeout)
    if problem is None:
        return None, False
    if cached:
        return None, True
    return f"the Hugging Face Hub did not serve {model_id} ({problem}), and it is not cached here", False


def load_real_pipeline(model_id: str = MODEL_ID, device: str | torch.device = "cuda", *,
                       local_files_only: bool = False) -> Any:
    """Download (or read from the cache) ``model_id`` as a diffusers ``StableDiffusionPipeline`` in float16 on
    ``device`` (float32 on a CPU); its fp16 files only, no safety checker (SD-Turbo ships none)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    device = torch.device(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # the download's progress bars stay; loading chatter goes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # newer diffusers rename torch_dtype, older know only it
            pipe = StableDiffusionPipeline.from_pretrained(model_id, torch_dtype=dtype, variant="fp16", safety_checker=None,
                                                           requires_safety_checker=False, local_files_only=local_files_only)
    finally:
        diffusers_logging.set_verbosity(verbosity)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


# ----------------------------------------------------------------------------- the boxes
@dataclass(frozen=True)
class Part:
    """One box of the diagram: what the course calls it, and what this checkpoint has there."""

    box: str
    course: str
    real: str


def _millions(module: torch.nn.Module) -> str:
    m = sum(p.numel() for p in module.parameters()) / 1e6
    return f"{m:,.0f} M" if m >= 10 else f"{m:.2f} M"


def vae_factor(pipe: Any) -> int:
    """How many pixels one latent cell stands for along each side (8 for Stable Diffusion)."""
    return 2 ** (len(pipe.vae.config.block_out_channels) - 1)


def pipeline_parts(pipe: Any) -> list[Part]:
    """The pipeline's parts mapped onto the course's boxes, described from the loaded objects themselves."""
    tok, te, unet, vae, sch = pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae, pipe.scheduler
    f, c = vae_factor(pipe), unet.config.in_channels
    side = unet.config.sample_size
    sc = sch.config
    return [
        Part("tokenizer", "`scene_tokenize`: words → ids", f"{type(tok).__name__}: BPE, {len(tok):,} tokens, "
             f"{tok.model_max_length} ids"),
        Part("text encoder", "`TextEncoder`: one vector per word", f"{type(te).__name__}: "
             f"{te.config.num_hidden_layers} layers, {_millions(te)}, {te.config.hidden_size}-d per token"),
        Part("U-Net", "`CrossAttentionUNet` (cross-attention)", f"{type(unet).__name__}: {_millions(unet)}, "
             f"cross-attention on {unet.config.cross_attention_dim}-d tokens, {c}×{side}×{side} latents"),
        Part("VAE", "`Autoencoder`, f = 4", f"{type(vae).__name__}: f = {f}, {vae.config.latent_channels} channels, "
             f"{_millions(vae)}, scale {vae.config.scaling_factor:g}"),
        Part("scheduler", "`make_schedule` + `sample(sampler='ddim')`", f"{type(sch).__name__}: {sc.beta_schedule} "
             f"β {sc.beta_start:g}…{sc.beta_end:g}, {sc.prediction_type}, {sc.get('timestep_spacing', 'leading')} steps"),
    ]


def parts_markdown(parts: Sequence[Part]) -> str:
    """The parts as a Markdown table (chapter 11 displays it)."""
    rows = ["| box | the course (chapter 11) | this checkpoint |", "|---|---|---|"]
    return "\n".join(rows + [f"| {p.box} | {p.course} | {p.real} |" for p in parts])


def course_schedule(pipe: Any) -> NoiseSchedule:
    """The checkpoint's noise schedule as a course :class:`~course_lib.schedules.NoiseSchedule` (its β's, its T)."""
    sc = pipe.scheduler.config
    if sc.get("trained_betas") is not None or sc.beta_schedule not in _BETA_SCHEDULES:
        raise ValueError(f"the scheduler's beta_schedule {sc.beta_schedule!r} has no course schedule; "
                         f"known: {sorted(_BETA_SCHEDULES)}")
    return make_schedule(_BETA_SCHEDULES[sc.beta_schedule], sc.num_train_timesteps, beta_start=sc.beta_start,
                         beta_end=sc.beta_end, zero_terminal_snr=bool(sc.get("rescale_betas_zero_snr", False)))


def prompt_ids(pipe: Any, prompts: Sequence[str]) -> torch.Tensor:
    """The tokenizer box: prompts → (B, 77) ids, padded as the pipeline pads them."""
    tok = pipe.tokenizer
    return tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


class RealDenoiser:
    """The checkpoint's text encoder and U-Net as a course denoiser ``model(x_t, t, cond=ids)`` (chapter 11).

    ``cond`` holds token ids (B, 77); a row of −1 (``guidance.null_condition``, CFG's "no condition")
    is the empty prompt. x_t comes in float32 and the prediction goes back in float32, whatever the
    U-Net's own dtype, so the course's sampler keeps its arithmetic in float32.
    """

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.prediction_type = pipe.scheduler.config.prediction_type
        self.empty = prompt_ids(pipe, [""])[0]  # (77,)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Text encoder box: ids (B, 77) → one vector per token (B, 77, D)."""
        te = self.pipe.text_encoder
        ids = ids.to(te.device)
        null = (ids < 0).all(dim=1, keepdim=True)
        ids = torch.where(null, self.empty.to(ids.device), ids)
        return te(ids)[0]

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        unet = self.pipe.unet
        if cond is None:
            cond = torch.full((x_t.shape[0], self.empty.numel()), -1, dtype=torch.long)
        with torch.no_grad():
            out = unet(x_t.to(unet.device, unet.dtype), t.to(unet.device), encoder_hidden_states=self.embed(cond))
        return out.sample.float()


def decode(pipe: Any, z: torch.Tensor) -> torch.Tensor:
    """The VAE box: latents (B, 4, h, w) → pictures (B, 3, f·h, f·w) in [−1, 1], float32 on the CPU."""
    vae = pipe.vae
    with torch.no_grad():
        x = vae.decode(z.to(vae.device, vae.dtype) / vae.config.scaling_factor).sample
    return x.float().clamp(-1, 1).cpu()


def latent_noise(pipe: Any, seed: int, batch: int = 1) -> torch.Tensor:
    """z_T ~ N(0, I) of the pipeline's latent shape, from a CPU generator (the same on every device)."""
    h = pipe.unet.config.sample_size
    shape = (batch, pipe.unet.config.in_channels, h, h)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- attention maps
def token_positions(pipe: Any, prompt: str, word: str) -> list[int]:
    """Where ``word``'s BPE tokens sit among the prompt's ids (after the start token); ValueError if absent."""
    tok = pipe.tokenizer
    toks, piece = tok.tokenize(prompt), tok.tokenize(word)
    found = [1 + i + j for i in range(len(toks) - len(piece) + 1) if toks[i:i + len(piece)] == piece
             for j in range(len(piece))]
    if not piece or not found:
        raise ValueError(f"word {word!r} is not in the prompt {prompt!r}")
    return found


class _CourseCrossAttention:
    """A diffusers attention processor for cross-attention layers computing the weights with the course's
    ``cross_attention_weights`` (in float32) and adding the maps of the watched tokens to ``total``."""

    def __init__(self, original: Any, positions: list[list[int]], total: torch.Tensor) -> None:
        self.original, self.positions, self.total = original, positions, total
        self.latent = None  # (h, w) of the latents, set by the caller

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        head_dim = attn.to_q.out_features // attn.heads
        plain = (encoder_hidden_states is not None and attention_mask is None and hidden_states.dim() == 3
                 and getattr(attn, "spatial_norm", None) is None and getattr(attn, "group_norm", None) is None
                 and getattr(attn, "norm_q", None) is None and getattr(attn, "norm_k", None) is None
                 and abs(attn.scale * head_dim**0.5 - 1) < 1e-6)  # the course's 1/√d
        if not plain:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        b, n, _ = hidden_states.shape
        ctx = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
        q, k, v = attn.to_q(hidden_states), attn.to_k(ctx), attn.to_v(ctx)
        d = k.shape[-1] // attn.heads

        def split(y: torch.Tensor) -> torch.Tensor:  # (B, tokens, heads·d) -> (B, heads, tokens, d)
            return y.view(b, -1, attn.heads, d).transpose(1, 2)

        q, k, v = split(q), split(k), split(v)
        mask = torch.ones(b, k.shape[2], dtype=torch.bool, device=k.device)  # SD attends to all 77 ids
        weights = cross_attention_weights(q.float(), k.float(), mask)  # (B, heads, HW, 77): the course's formula
        self._record(weights)
        out = (weights.to(v.dtype) @ v).transpose(1, 2).reshape(b, n, attn.heads * d)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor

    def _record(self, weights: torch.Tensor) -> None:
        lh, lw = self.latent
        a = weights[:1].mean(1)[0]  # the conditional row (CFG puts it first), heads averaged: (HW, 77)
        step = round((lh * lw / a.shape[0]) ** 0.5)  # this layer's feature map is (lh/step, lw/step)
        words = torch.stack([a[:, pos].sum(1) for pos in self.positions])  # each word's positions added: (n, HW)
        words = words.reshape(-1, 1, lh // step, lw // step)
        self.total += F.interpolate(words, size=self.total.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def real_attention_maps(pipe: Any, prompt: str, words: Sequence[str] = MAP_WORDS, *, num_steps: int = 4,
                        guidance_scale: float = 1.0, seed: int = 0,
                        noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The course's sampler on the real U-Net, recording cross-attention: (picture (3, H, W), maps (len(words), H, W)).

    Chapter 11's DDIM (``LATENT_DDIM``) with ``num_steps`` steps on the checkpoint's own schedule, CFG
    at ``guidance_scale`` (the course's s: 1 = none, as SD-Turbo is used), from ``noise`` (default
    :func:`latent_noise` of ``seed``). Each word's map is summed over heads, layers and steps and
    scaled to a maximum of 1, as ``latent.attention_maps`` does for the chapter's own model.
    """
    num_steps = check_int("num_steps", num_steps, min_value=1, max_value=pipe.scheduler.config.num_train_timesteps)
    positions = [token_positions(pipe, prompt, w) for w in words]
    z = latent_noise(pipe, seed) if noise is None else noise
    f = vae_factor(pipe)
    total = torch.zeros(len(words), z.shape[-2] * f, z.shape[-1] * f, device=pipe.unet.device)  # (n, H, W)
    originals = dict(pipe.unet.attn_processors)
    swapped = {}
    for name, proc in originals.items():
        swapped[name] = proc
        if name.endswith("attn2.processor"):  # the cross-attention of every transformer block
            swapped[name] = _CourseCrossAttention(proc, positions, total)
            swapped[name].latent = tuple(z.shape[-2:])
    pipe.unet.set_attn_processor(swapped)
    try:
        latents = sample(RealDenoiser(pipe), course_schedule(pipe), tuple(z.shape), sampler="ddim",
                         num_steps=num_steps, cond=prompt_ids(pipe, [prompt]), guidance_scale=guidance_scale,
                         noise=z.float(), progress=False, device=pipe.unet.device, **LATENT_DDIM)
    finally:
        pipe.unet.set_attn_processor(originals)
    maps = (total / total.flatten(1).amax(1)[:, None, None].clamp_min(1e-12)).cpu()
    return decode(pipe, latents)[0], maps


def diffusers_ddim(pipe: Any, prompt: str, noise: torch.Tensor, *, num_steps: int = 4,
                   guidance_scale: float = 1.0) -> torch.Tensor:
    """The same walk with diffusers' own ``DDIMScheduler`` (trailing, ᾱ = 1 after the last step) from the same
    noise: the picture (3, H, W) in [−1, 1] that the course's sampler should reproduce. Diffusers applies
    CFG only for a scale above 1, so the course's s = 1 is its 0."""
    from diffusers import DDIMScheduler

    own = pipe.scheduler
    pipe.scheduler = DDIMScheduler.from_config(own.config, timestep_spacing="trailing", set_alpha_to_one=True,
                                               clip_sample=False, thresholding=False)
    try:
        out = pipe(prompt, num_inference_steps=num_steps, guidance_scale=guidance_scale if guidance_scale > 1 else 0.0,
                   latents=noise.to(pipe.unet.device, pipe.unet.dtype), output_type="pt").images
    finally:
        pipe.scheduler = own
    return (out[0].float().cpu() * 2 - 1).clamp(-1, 1)


# ----------------------------------------------------------------------------- the chapter's cell
@dataclass
class RealSDResult:
    """What :func:`paint_real_sd` painted: the pipeline's own picture, the course sampler's, the maps."""

    model_id: str
    prompt: str
    words: tuple[str, ...]
    parts: list[Part]
    official: torch.Tensor  # (3, H, W) in [-1, 1]: the pipeline as its model card calls it
    course: torch.Tensor  # (3, H, W): the course's DDIM driving the real U-Net
    maps: torch.Tensor  # (len(words), H, W) in [0, 1]
    gap: float  # largest pixel difference between the course's DDIM and diffusers' DDIMScheduler
    num_steps: int
    device: str
    seconds: dict[str, float] = field(default_factory=dict)


def paint_real_sd(enabled: bool = True, *, profile: str, seed: int = 0, pipe: Any = None, model_id: str = MODEL_ID,
                  prompt: str = COURSE_PROMPT, words: Sequence[str] = MAP_WORDS, num_steps: int = 4,
                  official_steps: int = 1, official_guidance: float = 0.0) -> RealSDResult | str:
    """Chapter 11's "real thing": paint ``prompt`` with a real checkpoint, or return one line saying why not.

    With ``pipe`` None the checkpoint must be loadable here (:func:`why_not`: a CUDA GPU, not the smoke
    profile, the packages, the Hub or the local cache), then :func:`load_real_pipeline` fetches it.
    A given ``pipe`` (the offline test's tiny one) skips those checks and runs the same path: the
    pipeline as its model card calls it (``official_steps`` steps at diffusers' guidance
    ``official_guidance``: SD-Turbo's 1 and 0), the course's sampler on its U-Net with the maps of
    ``words`` (:func:`real_attention_maps`), and diffusers' DDIM from the same noise to compare.
    """
    enabled = check_bool("real_sd", enabled)
    profile = check_choice("profile", profile, ("smoke", "cpu", "gpu"))
    if not enabled:
        return SKIPPED + why_not(False, profile, model_id)[0]
    seconds = {}
    if pipe is None:
        reason, cached_only = why_not(enabled, profile, model_id)
        if reason is not None:
            return SKIPPED + reason
        start = time.perf_counter()
        try:
            pipe = load_real_pipeline(model_id, "cuda", local_files_only=cached_only)
        except Exception as err:  # a download that fails must not end the chapter: one line, then move on
            return SKIPPED + f"loading {model_id} failed ({_one_line(err)})"
        seconds["load"] = time.perf_counter() - start
    try:
        return _paint(pipe, model_id, prompt, tuple(words), num_steps, official_steps, official_guidance, seed, seconds)
    except torch.cuda.OutOfMemoryError as err:
        return SKIPPED + f"the GPU ran out of memory ({_one_line(err)})"


def _paint(pipe: Any, model_id: str, prompt: str, words: tuple[str, ...], num_steps: int, official_steps: int,
           official_guidance: float, seed: int, seconds: dict[str, float]) -> RealSDResult:
    z = latent_noise(pipe, seed)  # one static for all three pictures
    start = time.perf_counter()
    official = pipe(prompt, num_inference_steps=official_steps, guidance_scale=official_guidance,
                    latents=z.to(pipe.unet.device, pipe.unet.dtype), output_type="pt").images[0]
    seconds["official"] = time.perf_counter() - start
    start = time.perf_counter()
    course, maps = real_attention_maps(pipe, prompt, words, num_steps=num_steps, noise=z)
    seconds["course"] = time.perf_counter() - start
    twin = diffusers_ddim(pipe, prompt, z, num_steps=num_steps)
    return RealSDResult(model_id, prompt, words, pipeline_parts(pipe), (official.float().cpu() * 2 - 1).clamp(-1, 1),
                        course, maps, float((course - twin).abs().max()), num_steps, str(pipe.unet.device), seconds)


def show_real_sd(result: RealSDResult) -> plt.Figure:
    """The pipeline's picture, the course sampler's, and each word's map over the latter (as chapter 11 draws them)."""
    n = 2 + len(result.words)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.0))
    show_images(result.official[None], nrow=1, ax=axes[0], title="the pipeline (model card)")
    show_images(result.course[None], nrow=1, ax=axes[1], title=f"the course's DDIM, {result.num_steps} steps")
    h, w = result.course.shape[-2:]
    for ax, word, m in zip(axes[2:], result.words, result.maps):
        show_images(result.course[None], nrow=1, ax=ax)
        ax.imshow(m.numpy(), cmap="magma", alpha=0.6, extent=(1.5, w + 1.5, h + 1.5, 1.5))  # the grid pads by 2
        ax.set_title(f'"{word}"')
    fig.suptitle(f"{result.model_id}: \"{result.prompt}\"", fontsize=10)
    fig.tight_layout()
    return fig


__all__ = [
    "BOXES", "COURSE_PROMPT", "DOWNLOAD_SIZE", "MAP_WORDS", "MODEL_ID", "PROBE_TIMEOUT_S", "Part", "RealDenoiser", "RealSDResult",
    "course_schedule", "decode", "diffusers_ddim", "hub_offline", "is_cached", "latent_noise", "load_real_pipeline",
    "paint_real_sd", "parts_markdown", "pipeline_parts", "probe_hub", "prompt_ids", "real_attention_maps",
    "show_real_sd", "token_positions", "vae_factor", "why_not",
]
