"""Chapter 13's "real thing": OpenAI's CLIP ViT-B/32 plays the chapter's reading game on our scenes (GPU only).

Radford et al. 2021 released CLIP ViT-B/32 (``openai/clip-vit-base-patch32`` on the Hugging Face Hub, about
600 MB), trained on 400 million pictures from the web. :func:`read_with_real_clip` asks it zero-shot
questions about chapter 11's scenes (upscaled to 224×224, normalised as CLIP's processor does), each as a
choice among captions (CLIP §3.1.2):

- the animal of each occupied half, the half shown alone ("a drawing of a cat" / "... a dog");
- the hat colour of each hatted animal, its half shown alone ("a drawing of an animal wearing a red hat", ...);
- the background of the whole scene ("a drawing on a blue background", ...);
- **where**: on scenes with a cat and a dog, "a cat on the left and a dog on the right" against the swapped
  caption (chance 50 %): spatial relations are a known weakness of CLIP (Radford et al. 2021, §3.1.5, and
  later studies of binding).

It runs only where a CUDA GPU, the packages and the Hub (or a local copy) are available, as chapter 11's
:mod:`course_lib.real_sd` does (whose network checks it shares); otherwise it returns one line saying why.
A given ``model`` and ``tokenizer`` (the offline test's tiny random CLIP) skip those checks.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
import torch.nn.functional as F

from .hats import BACKGROUNDS, HAT_COLOURS
from .real_sd import hub_offline, is_cached, probe_hub
from .scenes import NOBODY
from .settings import check_bool, check_choice

MODEL_ID = "openai/clip-vit-base-patch32"
SKIPPED = "real CLIP skipped: "
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's image normalisation (its processor's config)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def why_not(enabled: bool, profile: str, model_id: str = MODEL_ID) -> tuple[str | None, bool]:
    """(why the real CLIP cannot run here, or None; whether to load from the local cache only)."""
    if not enabled:
        return "real_clip=False (set it to True to download it on a GPU)", False
    if not torch.cuda.is_available():
        return f"no CUDA GPU here; on one (Colab: Runtime → Change runtime type → T4 GPU) this cell downloads {model_id}", False
    if profile == "smoke":
        return "the smoke profile downloads nothing (run with profile='gpu')", False
    if importlib.util.find_spec("transformers") is None:
        return "transformers not installed (pip install transformers)", False
    cached = is_cached(model_id)
    if hub_offline():
        return (None, True) if cached else (f"HF_HUB_OFFLINE is set and {model_id} is not in the local cache", False)
    problem = probe_hub(model_id)
    if problem is None or cached:
        return None, problem is not None
    return f"no answer from the Hugging Face Hub for {model_id} ({problem}), and it is not cached here", False


def _vectors(out: Any) -> torch.Tensor:
    """transformers 4 returns the projected vectors; 5 an output whose ``pooler_output`` holds them."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@torch.no_grad()
def _choose(model: Any, tokenizer: Any, pictures: torch.Tensor, captions: list[str], size: int) -> torch.Tensor:
    """For pictures (N, 3, h, w) in [-1, 1], the index of the best caption among ``captions``: (N,)."""
    dev = next(model.parameters()).device
    x = F.interpolate((pictures + 1) / 2, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    x = (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
    tokens = tokenizer(captions, padding=True, return_tensors="pt").to(dev)
    text = F.normalize(_vectors(model.get_text_features(**tokens)).float(), dim=-1)
    dtype = next(model.parameters()).dtype
    pics = torch.cat([F.normalize(_vectors(model.get_image_features(pixel_values=b.to(dev, dtype))).float(), dim=-1)
                      for b in x.split(64)])
    return (pics @ text.T).argmax(1).cpu()


def _questions(model: Any, tokenizer: Any, images: torch.Tensor, rows: torch.Tensor, size: int) -> dict[str, float]:
    halves = {0: images[..., :, :32], 1: images[..., :, 32:]}
    out: dict[str, float] = {}
    animal_right, colour_right = [], []
    for slot, half in halves.items():
        present = rows[:, 3 * slot] != NOBODY
        pick = _choose(model, tokenizer, half[present], ["a drawing of a cat", "a drawing of a dog"], size)
        animal_right.append(pick == rows[present, 3 * slot])
        hatted = rows[:, 3 * slot + 1] == 1
        if bool(hatted.any()):
            caps = [f"a drawing of an animal wearing a {c} hat" for c in HAT_COLOURS]
            colour_right.append(_choose(model, tokenizer, half[hatted], caps, size) == rows[hatted, 3 * slot + 2])
    out["animal, each half alone"] = float(torch.cat(animal_right).float().mean())
    out["hat colour, each half alone"] = float(torch.cat(colour_right).float().mean()) if colour_right else float("nan")
    bg = _choose(model, tokenizer, images, [f"a drawing on a {b} background" for b in BACKGROUNDS], size)
    out["background"] = float((bg == rows[:, 6]).float().mean())
    pair = (rows[:, 0] != NOBODY) & (rows[:, 3] != NOBODY) & (rows[:, 0] != rows[:, 3])  # a cat and a dog
    if bool(pair.any()):
        caps = ["a cat on the left and a dog on the right", "a dog on the left and a cat on the right"]
        out["which animal is on the left"] = float((_choose(model, tokenizer, images[pair], caps, size) == rows[pair, 0]).float().mean())
    return out


def read_with_real_clip(enabled: bool, images: torch.Tensor, rows: torch.Tensor, *, profile: str, model: Any = None,
                        tokenizer: Any = None, model_id: str = MODEL_ID) -> dict[str, float] | str:
    """The real CLIP's zero-shot accuracy on each question of the module docstring, or one line saying why it
    cannot run. ``images`` (N, 3, 64, 64) in [-1, 1] with their scene rows (N, 7)."""
    enabled = check_bool("real_clip", enabled)
    check_choice("profile", profile, ("smoke", "cpu", "gpu"))
    if model is None or tokenizer is None:
        reason, cached_only = why_not(enabled, profile, model_id)
        if reason is not None:
            return SKIPPED + reason
        try:
            from transformers import AutoTokenizer, CLIPModel

            model = CLIPModel.from_pretrained(model_id, local_files_only=cached_only).to("cuda", torch.float16).eval()
            tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=cached_only)
        except Exception as err:  # a download that fails must not end the chapter
            return SKIPPED + f"loading {model_id} failed ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
    size = int(model.config.vision_config.image_size)
    return _questions(model, tokenizer, images, rows, size)


__all__ = ["MODEL_ID", "read_with_real_clip", "why_not"]
