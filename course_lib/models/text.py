"""Words in, a vector out: a tiny text encoder and the prompt-conditioned denoiser (chapter 08).

A prompt such as "a cat wearing a red hat" becomes token ids (:func:`course_lib.captions.tokenize`,
padded with ``PAD_ID`` to ``MAX_PROMPT_LENGTH``), then a vector of size ``cond_dim``:

    ids (B, L) ─ word embedding + position embedding ─ [transformer layer] × n ─ mean over the words ─ Linear ─ (B, cond_dim)

The transformer layers (Vaswani et al. 2017; pre-norm, padding masked out) let each word see the
others, so "no" can change what "hat" means; with ``num_layers=0`` the encoder is a plain "bag of
words" (the mean of the word embeddings). The encoder is **trained together with the denoiser**
from the pictures' captions alone: no pretrained language model, the only words it knows are
:data:`course_lib.captions.VOCAB`.

**Added vector or cross-attention?** This course adds the pooled prompt vector to the time
embedding of the U-Net (:class:`course_lib.models.embeddings.VectorEmbedding`): every ResBlock
gets the same shift for the whole picture. Stable Diffusion (Rombach et al. 2022, "High-resolution
image synthesis with latent diffusion models", §3.3) instead keeps one vector *per word* from a
large pretrained text encoder (CLIP's, Radford et al. 2021) and lets every pixel of the U-Net look
at every word with **cross-attention** (queries from pixels, keys and values from words), so that
"a red cube on a blue sphere" can put red in one place and blue in another; DALL·E 2 (Ramesh et
al. 2022) conditions on a CLIP embedding and adds it to the time embedding as well as feeding
projected tokens to attention. For our short prompts — four attributes about the *whole* 32×32
picture, each named by its own word — one added vector says everything; it is cheaper (no
attention between 256 pixels and 12 words in every block) and the network is easier to read.

An empty prompt (every id is ``PAD_ID``) is the "no condition" of classifier-free guidance
(Ho & Salimans 2022, §3.2): the encoder returns a NaN row for it, which the U-Net maps to its
learned empty vector. :class:`PromptDenoiser` wraps both networks so that the sampler and the
training loop see one denoiser ``model(x_t, t, cond=token_ids)``. They mark "no condition" the
course's way for integer conditions, with −1 (a class label −1; for prompts a whole row of −1,
what ``objectives.drop_condition`` and classifier-free guidance in ``samplers.sample`` produce),
and the wrapper reads such a row as the empty prompt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..captions import MAX_PROMPT_LENGTH, PAD_ID, VOCAB
from ..settings import check_int
from .unet import UNet, UNetConfig

NO_PROMPT = -1  # a whole row of −1 = "no condition" (as the class label −1); read as the empty prompt


@dataclass(frozen=True)
class TextEncoderConfig:
    """Shape of a :class:`TextEncoder`.

    - ``vocab_size``: number of token ids (id ``PAD_ID`` = 0 is padding); ``max_length``: tokens per prompt.
    - ``width``: size of each word vector inside the encoder; ``num_heads``: attention heads.
    - ``num_layers``: transformer layers (0 = bag of words); ``out_dim``: size of the prompt vector
      (the U-Net's ``cond_dim``).
    """

    vocab_size: int = len(VOCAB)
    max_length: int = MAX_PROMPT_LENGTH
    width: int = 64
    num_layers: int = 1
    num_heads: int = 4
    out_dim: int = 64

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, min_value=2)
        check_int("max_length", self.max_length, min_value=1)
        check_int("width", self.width, min_value=1)
        check_int("num_layers", self.num_layers, min_value=0, max_value=8)
        check_int("num_heads", self.num_heads, min_value=1)
        check_int("out_dim", self.out_dim, min_value=1)
        if self.width % self.num_heads:
            raise ValueError(f"width={self.width} must be divisible by num_heads={self.num_heads}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def check_tokens(name: str, tokens: object, vocab_size: int, max_length: int) -> torch.Tensor:
    """Validate token ids: an integer tensor (B, L), L <= ``max_length``, ids in 0..vocab_size−1."""
    if not isinstance(tokens, torch.Tensor) or tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor of token ids (B, L) from course_lib.captions.tokenize, "
                         f"got {tokens!r:.80}")
    if tokens.dim() != 2 or tokens.shape[1] > max_length:
        raise ValueError(f"{name} must have shape (B, L) with L <= {max_length}, got {tuple(tokens.shape)}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(f"{name} holds ids in [{int(tokens.min())}, {int(tokens.max())}], "
                         f"outside 0..{vocab_size - 1} (the vocabulary size)")
    return tokens.long()


class TextEncoder(nn.Module):
    """Token ids (B, L) → prompt vectors (B, out_dim); an all-padding (empty) prompt → a NaN row.

    Word + position embeddings, ``num_layers`` pre-norm transformer layers that ignore the padding
    (``src_key_padding_mask``), the mean over the real words, LayerNorm, then a linear map.
    """

    def __init__(self, config: TextEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else TextEncoderConfig()
        if not isinstance(cfg, TextEncoderConfig):
            raise ValueError(f"config must be a TextEncoderConfig, got {type(cfg).__name__}")
        self.words = nn.Embedding(cfg.vocab_size, cfg.width, padding_idx=PAD_ID)
        self.positions = nn.Parameter(torch.randn(cfg.max_length, cfg.width) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.width, cfg.num_heads, dim_feedforward=4 * cfg.width, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(cfg.width)
        self.out = nn.Linear(cfg.width, cfg.out_dim)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prompt vectors for non-empty prompts only: (B, L) → (B, out_dim). Every row needs a word."""
        pad = tokens == PAD_ID  # (B, L): True where there is no word
        h = self.words(tokens) + self.positions[: tokens.shape[1]]  # (B, L, width)
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)  # (B, L, 1)
        pooled = (h * keep).sum(1) / keep.sum(1)  # mean over the real words: (B, width)
        return self.out(self.norm(pooled))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        tokens = check_tokens("tokens", tokens, cfg.vocab_size, cfg.max_length).to(self.out.weight.device)
        nonempty = (tokens != PAD_ID).any(dim=1)  # (B,)
        out = torch.full((tokens.shape[0], cfg.out_dim), float("nan"), device=tokens.device, dtype=self.out.weight.dtype)
        if bool(nonempty.all()):
            return self.encode(tokens)
        if bool(nonempty.any()):
            # encode only the real prompts: a fully masked row would make attention NaN, even in the gradient
            encoded = self.encode(tokens[nonempty])  # bfloat16 under autocast (a bf16 GPU, make gpu-dryrun)
            out = out.to(encoded.dtype).index_put((nonempty.nonzero().squeeze(1),), encoded)
        return out


@dataclass(frozen=True)
class PromptDenoiserConfig:
    """The two shapes of a :class:`PromptDenoiser` (stored in and checked against checkpoints)."""

    unet: UNetConfig
    text: TextEncoderConfig

    @property
    def conditional(self) -> bool:
        return True

    def to_dict(self) -> dict[str, dict]:
        return {"unet": self.unet.to_dict(), "text": self.text.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, dict]) -> "PromptDenoiserConfig":
        return cls(UNetConfig.from_dict(d["unet"]), TextEncoderConfig(**d["text"]))


class PromptDenoiser(nn.Module):
    """A U-Net steered by words: ``model(x_t, t, cond=token_ids)`` → a tensor like x_t.

    ``cond``: token ids (B, L) from :func:`course_lib.captions.tokenize`, or None (= the empty prompt
    for the whole batch). The text encoder turns them into vectors that the U-Net adds to its
    time embedding; an all-PAD row (the empty prompt ``""``) is "no condition", and so is a row
    of −1 (:data:`NO_PROMPT`, the course's "no condition" mark for integer conditions, which
    condition dropout in :func:`course_lib.training.train` and classifier-free guidance in
    :func:`course_lib.samplers.sample` put there): it is read as the empty prompt.
    """

    def __init__(self, unet: UNet, text_encoder: TextEncoder) -> None:
        super().__init__()
        if not isinstance(unet, UNet) or not isinstance(text_encoder, TextEncoder):
            raise ValueError(f"PromptDenoiser needs a UNet and a TextEncoder, got {type(unet).__name__} and "
                             f"{type(text_encoder).__name__}")
        if unet.config.cond_dim != text_encoder.config.out_dim:
            raise ValueError(f"the U-Net's cond_dim={unet.config.cond_dim} must equal the text encoder's "
                             f"out_dim={text_encoder.config.out_dim}")
        self.unet = unet
        self.text_encoder = text_encoder
        self.config = PromptDenoiserConfig(unet.config, text_encoder.config)

    def as_prompt_ids(self, cond: torch.Tensor | None, batch_size: int, device: torch.device) -> torch.Tensor:
        """Token ids (B, L) with every "no condition" row (None, or all −1) turned into the empty prompt."""
        L = self.text_encoder.config.max_length
        if cond is None:
            return torch.full((batch_size, L), PAD_ID, dtype=torch.long, device=device)
        if not isinstance(cond, torch.Tensor) or cond.dim() != 2 or cond.shape[0] != batch_size:
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"cond must be token ids (B, L) = ({batch_size}, <= {L}) from course_lib.captions.tokenize, "
                             f"one prompt per image; got {got}")
        if cond.is_floating_point() or cond.dtype == torch.bool:
            raise ValueError(f"cond must be integer token ids from course_lib.captions.tokenize, got dtype {cond.dtype}")
        no_prompt = (cond == NO_PROMPT).all(dim=1, keepdim=True)  # (B, 1)
        return torch.where(no_prompt, torch.full_like(cond, PAD_ID), cond)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float | int, cond: torch.Tensor | None = None) -> torch.Tensor:
        ids = self.as_prompt_ids(cond, x_t.shape[0], x_t.device)
        return self.unet(x_t, t, self.text_encoder(ids))


__all__ = ["NO_PROMPT", "PromptDenoiser", "PromptDenoiserConfig", "TextEncoder", "TextEncoderConfig", "check_tokens"]
