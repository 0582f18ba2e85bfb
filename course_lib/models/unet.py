"""The course U-Net: a denoiser ε_θ(x_t, t, c) built from small readable blocks (chapter 04).

Shape of the network (Ronneberger et al. 2015; the DDPM variant of Ho et al. 2020, appendix B):

    x_t ─ stem ─ [ResBlock (+Attn)] × n ─ Down ─ … ─ middle (Res, Attn, Res) ─ … ─ Up ─ [ResBlock (+Attn)] × n ─ out
                   └──────────── skip connection (concatenate) ──────────────────────────┘

- :class:`ResBlock`: GroupNorm → SiLU → 3×3 conv, add the (time + condition) embedding, GroupNorm →
  SiLU → dropout → 3×3 conv, plus the input (a residual block, He et al. 2016).
- :class:`SelfAttention`: every pixel looks at every other pixel; costs (H·W)², so only at low
  resolution (8×8 or 4×4) where it lets far-apart strokes agree.
- down-sampling is a stride-2 3×3 conv; up-sampling is nearest-neighbour ×2 then a 3×3 conv.
- ``patch_size=2`` folds each 2×2 patch of pixels into channels before the first conv
  (``pixel_unshuffle``) and unfolds it after the last (``pixel_shuffle``), the "patchify" stem of
  DiT (Peebles & Xie 2023) and simple diffusion (Hoogeboom et al. 2023). The network then never
  runs at full resolution: about 4× less compute per block, which is what makes CPU training of the
  digits model take minutes instead of an hour.

Where the compute goes (why the presets look the way they do): a 3×3 conv costs
9·C_in·C_out·H·W multiply-adds but has 9·C_in·C_out weights, independent of H·W. So parameters
placed at low resolution are cheap to run; the presets keep few, narrow blocks at high
resolution and put the width (most parameters) at 8×8 and 4×4.

The CPU-speed choices of the ``digits-cpu`` preset, each measured (benchmarks/train_throughput.py):
``patch_size=2`` (no block at 32×32), one ResBlock per level, attention only at 8×8 and 4×4, and
``upsample="conv_nearest"`` (20–30 % less compute than nearest-then-conv). How fast it trains and
samples against diffusers' UNet2DModel in its usual layout at equal parameter count (0.83 M vs
0.85 M), and the FID it reaches on the digits in 3,600 steps of batch 64 with its training time
(course_lib.pretrained.digits_model), are in README "Performance" → "Training speed: course U-Net vs
diffusers' UNet2DModel" (``benchmarks/train_throughput.py``) and "Quality of the chapter-04 digits
model" (``benchmarks/quality.py --profile cpu``).

Conditioning (chapter 07): ``num_classes`` adds a label embedding (label −1 = "no condition", a
learned empty token, for classifier-free guidance); ``cond_dim`` adds a projection of an
embedding vector (a NaN row = "no condition"). Either is added to the time embedding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import Profile, check_choice, check_float, check_int, resolve_profile
from .embeddings import LabelEmbedding, TimeEmbedding, VectorEmbedding

PresetName = Literal["tiny", "digits-smoke", "digits-cpu", "digits-gpu", "cifar-gpu"]
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)
UpsampleMode = Literal["conv_nearest", "nearest_conv"]
UPSAMPLE_MODES: tuple[str, ...] = get_args(UpsampleMode)
MAX_ATTENTION_RESOLUTION = 16  # self-attention only at low resolution: its cost grows as (H·W)²


@dataclass(frozen=True)
class UNetConfig:
    """Everything that fixes a U-Net's shape. Frozen, so it can be stored in and checked against a checkpoint.

    - ``image_size``, ``in_channels``: the images the net takes (square, NCHW).
    - ``base_channels`` × ``channel_mults[i]``: the width of level i; level i runs at resolution
      image_size / patch_size / 2^i.
    - ``num_res_blocks``: ResBlocks per level on the way down (and as many on the way up).
    - ``attention_resolutions``: feature-map sizes (e.g. (8,) for 8×8) that get self-attention.
    - ``num_classes`` / ``cond_dim``: optional class-label or vector conditioning (at most one).
    - ``dropout``: inside each ResBlock; ``patch_size``: 1 or 2 (see the module docstring);
      ``norm_groups``: GroupNorm groups; ``head_channels``: channels per attention head.
    """

    image_size: int = 32
    in_channels: int = 1
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (8,)
    num_classes: int | None = None
    cond_dim: int | None = None
    dropout: float = 0.0
    patch_size: int = 1
    norm_groups: int = 8
    head_channels: int = 32
    upsample: UpsampleMode = "conv_nearest"

    def __post_init__(self) -> None:
        check_int("image_size", self.image_size, min_value=4)
        check_int("in_channels", self.in_channels, min_value=1)
        check_int("base_channels", self.base_channels, min_value=1)
        check_int("num_res_blocks", self.num_res_blocks, min_value=1)
        check_choice("patch_size", str(self.patch_size), ("1", "2", "4"))
        check_int("norm_groups", self.norm_groups, min_value=1)
        check_int("head_channels", self.head_channels, min_value=1)
        check_float("dropout", self.dropout, min_value=0.0, max_value=0.9)
        check_choice("upsample", self.upsample, UPSAMPLE_MODES)
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        object.__setattr__(self, "attention_resolutions", tuple(self.attention_resolutions))
        if not self.channel_mults:
            raise ValueError("channel_mults must list at least one level, e.g. (1, 2, 2)")
        for m in self.channel_mults:
            check_int("channel_mults[i]", m, min_value=1)
        if self.num_classes is not None:
            check_int("num_classes", self.num_classes, min_value=1)
        if self.cond_dim is not None:
            check_int("cond_dim", self.cond_dim, min_value=1)
        if self.num_classes is not None and self.cond_dim is not None:
            raise ValueError("give num_classes (class labels) or cond_dim (embedding vectors), not both")
        factor = self.patch_size * 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image_size={self.image_size} must be divisible by patch_size·2^(levels−1) = {factor} "
                f"(patch_size={self.patch_size}, {len(self.channel_mults)} levels)"
            )
        for ch in self.widths:
            if ch % self.norm_groups:
                raise ValueError(f"every level width must be divisible by norm_groups={self.norm_groups}; got widths {self.widths}")
        for r in self.attention_resolutions:
            if r > MAX_ATTENTION_RESOLUTION:
                raise ValueError(
                    f"attention_resolutions contains {r}; self-attention costs (H·W)² so the course U-Net allows it "
                    f"only at resolutions <= {MAX_ATTENTION_RESOLUTION} (levels run at {self.resolutions})"
                )
            if r not in self.resolutions:
                raise ValueError(
                    f"attention_resolutions contains {r}, but the levels run at {self.resolutions}; "
                    f"choose from those (low ones: attention costs (H·W)²)"
                )

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each level: base_channels · channel_mults[i]."""
        return tuple(self.base_channels * m for m in self.channel_mults)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Feature-map size of each level: image_size / patch_size / 2^i."""
        return tuple(self.image_size // self.patch_size // 2**i for i in range(len(self.channel_mults)))

    @property
    def emb_dim(self) -> int:
        """Width of the time (+ condition) embedding: 4 · base_channels, as in DDPM."""
        return 4 * self.base_channels

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None or self.cond_dim is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UNetConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown UNetConfig fields {unknown}; allowed: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @classmethod
    def preset(cls, name: PresetName, **overrides: Any) -> "UNetConfig":
        """A named configuration, optionally with fields changed, e.g. ``preset("digits-cpu", num_classes=10)``.

        - ``tiny``: 16×16, a few thousand parameters — unit tests.
        - ``digits-smoke`` / ``digits-cpu`` / ``digits-gpu``: the 32×32 MNIST digits model of
          chapter 04 at each profile's budget.
        - ``cifar-gpu``: 32×32 colour images, a DDPM-CIFAR-like width, for GPU runs.
        """
        check_choice("preset", name, PRESET_NAMES)
        return replace(_PRESETS[name], **overrides)


_PRESETS: dict[str, UNetConfig] = {
    "tiny": UNetConfig(image_size=16, in_channels=1, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                       attention_resolutions=(8,), norm_groups=4, head_channels=8),
    "digits-smoke": UNetConfig(image_size=32, in_channels=1, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                               attention_resolutions=(8,), patch_size=2, norm_groups=8, head_channels=16),
    # 0.83 M parameters; 16×16 (32 ch) → 8×8 (64 ch, attention) → 4×4 (64 ch, attention); see the module docstring
    "digits-cpu": UNetConfig(image_size=32, in_channels=1, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1,
                             attention_resolutions=(8, 4), patch_size=2, norm_groups=8, head_channels=32),
    "digits-gpu": UNetConfig(image_size=32, in_channels=1, base_channels=64, channel_mults=(1, 2, 2, 2), num_res_blocks=2,
                             attention_resolutions=(8, 4), patch_size=1, norm_groups=32, head_channels=32, dropout=0.1,
                             upsample="nearest_conv"),
    "cifar-gpu": UNetConfig(image_size=32, in_channels=3, base_channels=128, channel_mults=(1, 2, 2, 2),
                            num_res_blocks=2, attention_resolutions=(16,), norm_groups=32, head_channels=64, dropout=0.1,
                            upsample="nearest_conv"),
}


def digits_config(profile: Profile = "auto", *, num_classes: int | None = None) -> UNetConfig:
    """The chapter-04 digits U-Net for a profile (``smoke``/``cpu``/``gpu``/``auto``), optionally class-conditional."""
    return UNetConfig.preset(f"digits-{resolve_profile(profile)}", num_classes=num_classes)


# ----------------------------------------------------------------------------- blocks
class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv → (+ embedding) → GroupNorm → SiLU → dropout → conv, plus a skip path."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]  # (B, C) -> (B, C, 1, 1): the same shift at every pixel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W pixels (Vaswani et al. 2017), with a residual connection."""

    def __init__(self, channels: int, groups: int, head_channels: int) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)  # (B, 3, heads, d, HW)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, d)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ/√d) v: (B, heads, HW, d)
        out = out.transpose(-1, -2).reshape(b, c, h, w)  # back to an image
        return x + self.proj(out)


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3×3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W with a 3×3 conv and a nearest-neighbour copy, in either order.

    ``nearest_conv`` (DDPM): copy each pixel to 2×2, then convolve at the high resolution.
    ``conv_nearest``: convolve at the low resolution first (4× fewer multiply-adds) and narrow to
    the next level's width, then copy; the next ResBlock's 3×3 convs smooth the 2×2 blocks.
    """

    def __init__(self, in_ch: int, out_ch: int, mode: UpsampleMode) -> None:
        super().__init__()
        self.mode = check_choice("upsample", mode, UPSAMPLE_MODES)
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest_conv":
            return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return F.interpolate(self.conv(x), scale_factor=2.0, mode="nearest")


class Level(nn.Module):
    """One resolution of the U-Net: ResBlocks, each optionally followed by self-attention."""

    def __init__(self, in_chs: list[int], out_ch: int, emb_dim: int, cfg: UNetConfig, attention: bool) -> None:
        super().__init__()
        self.res = nn.ModuleList(ResBlock(c, out_ch, emb_dim, cfg.norm_groups, cfg.dropout) for c in in_chs)
        self.attn = nn.ModuleList(
            SelfAttention(out_ch, cfg.norm_groups, cfg.head_channels) if attention else nn.Identity() for _ in in_chs
        )


# ----------------------------------------------------------------------------- the network
class UNet(nn.Module):
    """The course U-Net; call it as ``model(x_t, t, cond=None)`` → a tensor shaped like ``x_t``.

    ``t``: int/float timesteps, a scalar or shape (B,) (fractional t is fine). ``cond``: class
    labels (B,) with −1 = no condition, or vectors (B, cond_dim) with a NaN row = no condition,
    or None (= no condition for the whole batch); only for a model built with
    ``num_classes``/``cond_dim``.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise ValueError(f"config must be a UNetConfig (e.g. UNetConfig.preset('digits-cpu')), got {type(config).__name__}")
        self.config = cfg = config
        emb = cfg.emb_dim
        self.time_embed = TimeEmbedding(emb, freq_dim=cfg.base_channels)
        self.cond_embed: nn.Module | None = None
        if cfg.num_classes is not None:
            self.cond_embed = LabelEmbedding(cfg.num_classes, emb)
        elif cfg.cond_dim is not None:
            self.cond_embed = VectorEmbedding(cfg.cond_dim, emb)

        p2 = cfg.patch_size**2
        widths, res = cfg.widths, cfg.resolutions
        self.stem = nn.Conv2d(cfg.in_channels * p2, widths[0], 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = widths[0]
        for i, w in enumerate(widths):
            self.down.append(Level([ch] + [w] * (cfg.num_res_blocks - 1), w, emb, cfg, res[i] in cfg.attention_resolutions))
            ch = w
            self.downsample.append(Downsample(w) if i < len(widths) - 1 else nn.Identity())

        mid_attention = res[-1] in cfg.attention_resolutions
        self.mid1 = ResBlock(ch, ch, emb, cfg.norm_groups, cfg.dropout)
        self.mid_attn = SelfAttention(ch, cfg.norm_groups, cfg.head_channels) if mid_attention else nn.Identity()
        self.mid2 = ResBlock(ch, ch, emb, cfg.norm_groups, cfg.dropout)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(widths))):
            w = widths[i]
            # each up ResBlock takes the running features concatenated with one skip from the way down
            self.up.append(Level([ch + w] + [2 * w] * (cfg.num_res_blocks - 1), w, emb, cfg, res[i] in cfg.attention_resolutions))
            ch = w
            if i > 0:
                ch = widths[i - 1] if cfg.upsample == "conv_nearest" else w
                self.upsample.append(Upsample(w, ch, cfg.upsample))
            else:
                self.upsample.append(nn.Identity())

        self.out_norm = nn.GroupNorm(cfg.norm_groups, ch)
        self.out_conv = nn.Conv2d(ch, cfg.in_channels * p2, 3, padding=1)

    def check_inputs(self, x_t: torch.Tensor, t: torch.Tensor | float | int, cond: torch.Tensor | None) -> torch.Tensor:
        """Validate (x_t, t, cond) against the config; return t as a (B,) tensor on x_t's device."""
        cfg = self.config
        expected = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 4 or tuple(x_t.shape[1:]) != expected:
            shape = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(
                f"x_t has shape {shape}, but this UNetConfig expects (B, {cfg.in_channels}, {cfg.image_size}, "
                f"{cfg.image_size}) (in_channels={cfg.in_channels}, image_size={cfg.image_size})"
            )
        b = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device)
        if t.dim() == 0:
            t = t.expand(b)
        if t.shape != (b,):
            raise ValueError(f"t must be a scalar or have shape ({b},) — one timestep per image — got {tuple(t.shape)}")
        if cond is not None and self.cond_embed is None:
            raise ValueError(
                "cond was given, but this model is unconditional (num_classes=None and cond_dim=None); "
                "build it with UNetConfig(..., num_classes=K) or cond_dim=D, or call model(x_t, t) without cond"
            )
        return t

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float | int, cond: torch.Tensor | None = None) -> torch.Tensor:
        t = self.check_inputs(x_t, t, cond)
        p = self.config.patch_size
        emb = self.time_embed(t)
        if self.cond_embed is not None:
            emb = emb + self.cond_embed(cond, x_t.shape[0])
        emb = F.silu(emb)  # every ResBlock projects this (B, emb_dim) vector to its own channels

        h = F.pixel_unshuffle(x_t, p) if p > 1 else x_t  # (B, C, H, W) -> (B, C·p², H/p, W/p)
        h = self.stem(h)
        skips: list[torch.Tensor] = []
        for level, down in zip(self.down, self.downsample):
            for res, attn in zip(level.res, level.attn):
                h = attn(res(h, emb))
                skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level, up in zip(self.up, self.upsample):
            for res, attn in zip(level.res, level.attn):
                h = attn(res(torch.cat([h, skips.pop()], dim=1), emb))  # concatenate along channels
            h = up(h)
        h = self.out_conv(F.silu(self.out_norm(h)))
        return F.pixel_shuffle(h, p) if p > 1 else h  # (B, C·p², H/p, W/p) -> (B, C, H, W)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
