"""A noise-aware classifier p_φ(y | x_t, t) for classifier guidance (chapter 07).

Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis",
§4 and Algorithms 1–2) needs the gradient ∇_{x_t} log p_φ(y | x_t) at *every* noise level, so the
classifier must read noisy pictures: it is trained on x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε at random t,
with t as an extra input. The shipped digit classifier (:mod:`course_lib.models.classifier`) has
only ever seen clean digits; on static its gradient points nowhere useful.

Like Dhariwal & Nichol's classifier, this one is the *down-sampling half* of a U-Net: the course
U-Net's :class:`~course_lib.models.unet.ResBlock` and :class:`~course_lib.models.unet.Downsample`,
with the course's :class:`~course_lib.models.embeddings.TimeEmbedding` added in every block, then
GroupNorm → SiLU → global average pool → a linear layer to the class logits (they pool with
attention; an average is enough for 32×32 digits). ``t`` may be fractional (the σ-space samplers
of chapter 06 pass float timesteps).

It trains through the one loop, :func:`course_lib.training.train`, with a
:class:`~course_lib.objectives.NoisyClassifierObjective`; the cached digit classifier is
:func:`course_lib.pretrained.digits_noisy_classifier`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import check_choice, check_int
from .embeddings import TimeEmbedding
from .unet import Downsample, ResBlock

NoisyClassifierPreset = Literal["tiny", "digits"]
NOISY_CLASSIFIER_PRESETS: tuple[str, ...] = get_args(NoisyClassifierPreset)


@dataclass(frozen=True)
class NoisyClassifierConfig:
    """The shape of a :class:`NoisyClassifier` (frozen: stored in and checked against a checkpoint).

    - ``image_size``, ``in_channels``: the images it reads (square, NCHW in [-1, 1]).
    - ``num_classes``: number of logits.
    - ``base_channels`` × ``channel_mults[i]``: width of level i, which runs at
      image_size / patch_size / 2^i; one ResBlock per level.
    - ``patch_size``: 1 or 2 — fold 2×2 pixel patches into channels first, as the course U-Net does.
    - ``norm_groups``: GroupNorm groups (must divide every width).
    """

    image_size: int = 32
    in_channels: int = 1
    num_classes: int = 10
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    patch_size: int = 2
    norm_groups: int = 8

    def __post_init__(self) -> None:
        check_int("image_size", self.image_size, min_value=4)
        check_int("in_channels", self.in_channels, min_value=1)
        check_int("num_classes", self.num_classes, min_value=2)
        check_int("base_channels", self.base_channels, min_value=1)
        check_choice("patch_size", str(self.patch_size), ("1", "2"))
        check_int("norm_groups", self.norm_groups, min_value=1)
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        if not self.channel_mults:
            raise ValueError("channel_mults must list at least one level, e.g. (1, 2, 2)")
        for m in self.channel_mults:
            check_int("channel_mults[i]", m, min_value=1)
        factor = self.patch_size * 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor:
            raise ValueError(f"image_size={self.image_size} must be divisible by patch_size·2^(levels−1) = {factor}")
        for ch in self.widths:
            if ch % self.norm_groups:
                raise ValueError(f"every level width must be divisible by norm_groups={self.norm_groups}; got widths {self.widths}")

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each level: base_channels · channel_mults[i]."""
        return tuple(self.base_channels * m for m in self.channel_mults)

    @property
    def emb_dim(self) -> int:
        """Width of the time embedding: 4 · base_channels, as in the U-Net."""
        return 4 * self.base_channels

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def preset(cls, name: NoisyClassifierPreset, **overrides: Any) -> "NoisyClassifierConfig":
        """``tiny`` (16×16, unit tests) or ``digits`` (32×32 MNIST, ≈0.3 M parameters), optionally changed."""
        check_choice("preset", name, NOISY_CLASSIFIER_PRESETS)
        return replace(_PRESETS[name], **overrides)


_PRESETS: dict[str, NoisyClassifierConfig] = {
    "tiny": NoisyClassifierConfig(image_size=16, base_channels=8, channel_mults=(1, 2), patch_size=1, norm_groups=4),
    "digits": NoisyClassifierConfig(image_size=32, base_channels=32, channel_mults=(1, 2, 2), patch_size=2, norm_groups=8),
}


class NoisyClassifier(nn.Module):
    """p_φ(y | x_t, t): call it as ``classifier(x_t, t)`` → logits (B, num_classes).

    x_t: (B, C, H, W) noisy images; t: timesteps, a scalar or (B,), int or float.
    """

    def __init__(self, config: NoisyClassifierConfig) -> None:
        super().__init__()
        if not isinstance(config, NoisyClassifierConfig):
            raise ValueError(f"config must be a NoisyClassifierConfig (e.g. NoisyClassifierConfig.preset('digits')), "
                             f"got {type(config).__name__}")
        self.config = cfg = config
        widths = cfg.widths
        self.time_embed = TimeEmbedding(cfg.emb_dim, freq_dim=cfg.base_channels)
        self.stem = nn.Conv2d(cfg.in_channels * cfg.patch_size**2, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = widths[0]
        for i, w in enumerate(widths):
            self.blocks.append(ResBlock(ch, w, cfg.emb_dim, cfg.norm_groups, 0.0))
            self.downsample.append(Downsample(w) if i < len(widths) - 1 else nn.Identity())
            ch = w
        self.out_norm = nn.GroupNorm(cfg.norm_groups, ch)
        self.head = nn.Linear(ch, cfg.num_classes)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float | int) -> torch.Tensor:
        cfg = self.config
        expected = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 4 or tuple(x_t.shape[1:]) != expected:
            shape = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(f"x_t has shape {shape}, but this classifier expects (B, {', '.join(map(str, expected))})")
        b = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(b) if t.dim() == 0 else t
        if t.shape != (b,):
            raise ValueError(f"t must be a scalar or have shape ({b},) — one timestep per image — got {tuple(t.shape)}")
        emb = F.silu(self.time_embed(t))  # (B, emb_dim)
        p = cfg.patch_size
        h = F.pixel_unshuffle(x_t, p) if p > 1 else x_t  # (B, C, H, W) -> (B, C·p², H/p, W/p)
        h = self.stem(h)
        for block, down in zip(self.blocks, self.downsample):
            h = down(block(h, emb))
        h = F.silu(self.out_norm(h)).mean(dim=(2, 3))  # global average pool: (B, C, h, w) -> (B, C)
        return self.head(h)  # (B, num_classes)
