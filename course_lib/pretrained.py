"""Every model the chapters share, trained once, cached under ``settings.runs_dir()`` and verified on load.

One recipe, :func:`train_once`, serves them all: if the run directory holds a finished checkpoint
whose sha256, model config, training config, schedule (or objective) and data all match, it is
loaded in seconds; a partial one is resumed exactly; otherwise the model is trained from scratch
(course_lib.training.train). A checkpoint that does not verify raises CheckpointError naming the
problem; ``retrain=True`` trains afresh over it. Scores measured after training (the noisy
classifier's test accuracy) go to a model card next to the checkpoint (``card.json``).

- :func:`digits_model` — the chapter-04 MNIST U-Net, unconditional or class-conditional (chapters 04–07, 10);
- :func:`digits_noisy_classifier` — the noise-aware digit classifier of classifier guidance (chapter 07);
- :func:`prompt_model` — the chapter-08 prompt-conditioned U-Net on captioned cats and dogs;
- :func:`flow_digits_model` — the chapter-04 U-Net trained by flow matching at the chapter-04 budget, and
  :func:`reflow_digits_model`, its 2-rectified copy (chapter 12).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from .captions import ATTRIBUTE_VALUES, resolve_combo, tokenize
from .checkpoints import atomic_write_text, has_checkpoint, read_card, read_state
from .data import load_mnist5000
from .hats import make_hats_dataset
from .models.noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from .models.text import PromptDenoiser, TextEncoder, TextEncoderConfig
from .models.unet import UNet, UNetConfig, digits_config
from .schedules import NoiseSchedule, make_schedule
from .settings import Profile, ResolvedProfile, check_bool, check_int, get_device, resolve_profile, runs_dir
from .training import NoisyClassifierObjective, TrainConfig, TrainResult, noisy_classifier_config, train

CARD_FILE = "card.json"


# ----------------------------------------------------------------------------- the one recipe
def train_once(
    build: Callable[[], nn.Module], objective: NoiseSchedule | Any, data: Any, config: TrainConfig,
    run_dir: Path, *, retrain: bool = False, device: str | torch.device | None = None, progress: bool = True,
    callback: Any = None,
) -> tuple[TrainResult, bool]:
    """Train ``build()`` (seeded with ``config.seed``: the initial weights are part of the recipe) once, cached in ``run_dir``.

    Returns ``(result, cached)``; ``cached`` is True when a finished checkpoint was loaded and
    nothing was trained. A checkpoint written by an older course version (no optimizer state) is
    retrained over. ``callback`` goes to :func:`course_lib.training.train`.
    """
    check_bool("retrain", retrain)
    check_bool("progress", progress)
    state = read_state(run_dir) if has_checkpoint(run_dir) else None
    stale = state is not None and "optimizer_param_groups" not in state
    fresh = retrain or stale
    cached = not fresh and state is not None and int(state.get("step", -1)) >= config.steps
    torch.manual_seed(config.seed)
    result = train(build(), objective, data, config, run_dir=run_dir, resume=not fresh, device=device, progress=progress,
                   callback=callback)
    return result, cached


def run_info(result: TrainResult, cached: bool, config: TrainConfig, profile: str, run_dir: Path) -> dict[str, Any]:
    """The info dict every cached model returns: seconds, steps, configs, profile, run_dir, losses, cached."""
    return {"train_seconds": result.seconds, "steps": result.steps, "config": result.model.config.to_dict(),
            "train_config": asdict(config), "profile": profile, "run_dir": str(run_dir), "losses": result.losses,
            "cached": cached}


def card_scores(run_dir: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Scores stored in ``run_dir/card.json`` for the checkpoint there (by its sha256), else ``compute()`` and store them."""
    digest, path = read_state(run_dir)["sha256"], run_dir / CARD_FILE
    if path.is_file():
        card = read_card(path)
        if card.get("sha256") == digest:
            return card["scores"]
    scores = compute()
    atomic_write_text(path, json.dumps({"sha256": digest, "scores": scores}))
    return scores


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device) if isinstance(device, torch.device) else get_device(device or "auto")


# ----------------------------------------------------------------------------- the chapter-04 digits model
DIGITS_SCHEDULE = "cosine"
DIGITS_NUM_CLASSES = 10
COND_CPU_STEPS = 900  # the class-conditional digits model in the cpu profile: ≤ 5 min, ≥ 95 % with CFG
COND_PREDICTION_TYPE = "v_prediction"  # clean backgrounds: see digits_train_config


def digits_train_config(profile: Profile = "auto", *, cond: bool = False) -> TrainConfig:
    """The training recipe of the chapter-04 digits model for a profile.

    ε-prediction on the cosine schedule with Min-SNR-5 weighting, AdamW at a high peak lr
    (2e-3, fine for a small net with warm-up and clipping), batch 64 and many steps rather than
    batch 128 and half as many, EMA with warm-up. Measured on the digits (FID on the shipped
    digit features, 1,000 samples with 50 DDIM steps, 1,800 steps of training): this recipe 12.5;
    linear schedule 17.8; no Min-SNR 15.5; batch 128 for half the steps 32.7; lr 1e-3 much worse.
    The ``cpu`` profile then trains twice as long, 3,600 steps (about 6½ minutes on the 2-core
    reference CPU, two threads): FID 6.5 instead of 13 (v-prediction at 3,600 steps: 5.5; the
    course keeps ε, the target chapters 03–06 teach).
    ``cond=True`` adds condition dropout 0.1 so that the model supports classifier-free guidance,
    and — measured on the background of its samples (chapter 10, issue 11) — predicts v without
    Min-SNR weights. In the ``cpu`` profile it trains 900 steps. Margin noise (RMS distance from
    black of the pixels that are black in every training digit; real test digits 0.0020), 200
    samples at s = 3, 20 steps, 1 thread: ε with Min-SNR-5 (the recipe before): DDIM 0.10, SDE-DPM-
    Solver++(2M) 0.052, DDPM-1000 0.055; ε without Min-SNR: DDIM 0.25, SDE 0.045; v without Min-SNR:
    DDIM 0.039, SDE 0.020 at 99.5 % class accuracy. Min-SNR-γ gives the nearly clean steps almost
    no weight (γ/SNR), so the network never learns to remove the last whisper of static; an
    ε-network's x̂₀ at high noise amplifies its errors by 1/√ᾱ, and a deterministic sampler keeps
    them as speckle. The returned model carries ``prediction_type`` so that samplers read it right.
    """
    check_bool("cond", cond)
    prof = resolve_profile(profile)
    base = {
        "smoke": TrainConfig(steps=20, batch_size=16, lr=2e-3, warmup=5, checkpoint_every=10, min_snr_gamma=5.0),
        "cpu": TrainConfig(steps=3600, batch_size=64, lr=2e-3, warmup=100, checkpoint_every=600, min_snr_gamma=5.0),
        "gpu": TrainConfig(steps=5000, batch_size=128, lr=1e-3, warmup=250, checkpoint_every=1000, min_snr_gamma=5.0,
                           ema_decay=0.9995),
    }[prof]
    if not cond:
        return base
    return replace(base, cond_drop_prob=0.1, steps=COND_CPU_STEPS if prof == "cpu" else base.steps,
                   prediction_type=COND_PREDICTION_TYPE, min_snr_gamma=None)


def digits_run_name(profile: str, *, cond: bool = False) -> str:
    """The folder under ``settings.runs_dir()`` of the digits model: ``digits-<profile>`` or, for the class-
    conditional model, ``digits-<profile>-cond-v`` (v-prediction since issue 11; a new name, so an old
    ε-model cache is neither mistaken for it nor in its way)."""
    return f"digits-{profile}" + ("-cond-v" if cond else "")


def digits_model(
    profile: Profile = "auto", *, cond: bool = False, run_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None, progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, NoiseSchedule, dict[str, Any]]:
    """The chapter-04 MNIST digits U-Net (32×32, ``course_lib.data.load_mnist5000``), trained once and cached.

    ``run_dir`` defaults to ``runs/digits-<profile>`` or ``runs/digits-<profile>-cond-v`` (see
    :func:`train_once` for loading, resuming and verifying). The unconditional run also keeps a copy of
    its checkpoint at chapter 09's race step in ``<run_dir>-race`` (:class:`KeepCheckpoint`). ``cond=True`` gives a class-conditional
    model (labels 0–9, −1 = no label) trained with condition dropout for classifier-free guidance.

    Returns ``(ema_model, schedule, info)`` with info keys ``train_seconds``, ``steps``,
    ``config`` (the UNetConfig as a dict), ``train_config``, ``schedule``, ``prediction_type``, ``profile``,
    ``run_dir``, ``losses`` and ``cached`` (True when nothing had to be trained).
    """
    check_bool("cond", cond)
    prof = resolve_profile(profile)
    cfg = digits_config(prof, num_classes=DIGITS_NUM_CLASSES if cond else None)
    tcfg = digits_train_config(prof, cond=cond)
    schedule = make_schedule(DIGITS_SCHEDULE)
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / digits_run_name(prof, cond=cond)
    split = load_mnist5000("train", size=cfg.image_size)
    data = (split.images, split.labels) if cond else split.images
    keep = None if cond else KeepCheckpoint(run_dir, run_dir.parent / f"{run_dir.name}-race", RACE_STEPS[prof]["diffusion"])
    result, cached = train_once(lambda: UNet(cfg), schedule, data, tcfg, run_dir, retrain=retrain, device=device,
                                progress=progress, callback=keep)
    info = {**run_info(result, cached, tcfg, prof, run_dir), "schedule": DIGITS_SCHEDULE,
            "prediction_type": tcfg.prediction_type}
    return result.ema_model, schedule, info


# ----------------------------------------------------------------------------- the chapter-07 noisy classifier
def classifier_train_config(profile: Profile = "auto") -> TrainConfig:
    """The noise-aware digit classifier's recipe per profile (``cpu``: about a minute of training on 2 CPU cores)."""
    return {
        "smoke": noisy_classifier_config(steps=10, batch_size=16, warmup=2),
        "cpu": noisy_classifier_config(steps=500, batch_size=64),
        "gpu": noisy_classifier_config(steps=3000, batch_size=256, lr=1e-3, warmup=200),
    }[resolve_profile(profile)]


def noisy_classifier_accuracy(classifier: nn.Module, schedule: NoiseSchedule, images: torch.Tensor,
                              labels: torch.Tensor, t: int, *, seed: int = 0) -> float:
    """Share of ``images`` noised to step ``t`` (fixed-seed ε) that ``classifier`` puts in the right class."""
    t = check_int("t", t, min_value=0, max_value=schedule.num_timesteps - 1)
    dev = next(classifier.parameters()).device
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    tt = torch.full((images.shape[0],), t, dtype=torch.long)
    x_t = schedule.add_noise(images, noise, tt).to(dev)
    with torch.no_grad():
        pred = classifier(x_t, tt.to(dev)).argmax(-1).cpu()
    return float((pred == labels).float().mean())


def digits_noisy_classifier(
    profile: Profile = "auto", *, schedule: NoiseSchedule | None = None, run_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None, progress: bool = True, retrain: bool = False,
) -> tuple[NoisyClassifier, dict[str, Any]]:
    """The noise-aware MNIST digit classifier of chapter 07, trained once and cached (like :func:`digits_model`).

    Trained on ``load_mnist5000("train")`` noised with ``schedule`` (default: the digits model's,
    :data:`DIGITS_SCHEDULE`) through :func:`course_lib.training.train` with a
    :class:`~course_lib.training.NoisyClassifierObjective`. ``run_dir`` defaults to
    ``runs/noisy-classifier-<profile>``; a mismatch raises CheckpointError (``retrain=True`` trains afresh).

    Returns ``(classifier, info)``; info keys: ``train_seconds``, ``steps``, ``config``,
    ``train_config``, ``profile``, ``run_dir``, ``losses``, ``cached`` and ``test_accuracy``
    ({t: accuracy on the test split noised to t}).
    """
    prof = resolve_profile(profile)
    schedule = schedule if schedule is not None else make_schedule(DIGITS_SCHEDULE)
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    cfg = NoisyClassifierConfig.preset("digits")
    tcfg = classifier_train_config(prof)
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"noisy-classifier-{prof}"
    train_split = load_mnist5000("train", size=cfg.image_size)
    result, cached = train_once(lambda: NoisyClassifier(cfg), NoisyClassifierObjective(schedule),
                                (train_split.images, train_split.labels), tcfg, run_dir, retrain=retrain,
                                device=_device(device), progress=progress)
    classifier = result.model

    def test_accuracy() -> dict[str, float]:
        test = load_mnist5000("test", size=cfg.image_size)
        return {str(t): noisy_classifier_accuracy(classifier, schedule, test.images, test.labels, t)
                for t in (0, 250, 500, 750)}

    info = run_info(result, cached, tcfg, prof, run_dir)
    return classifier, {**info, "test_accuracy": card_scores(run_dir, test_accuracy)}


# ----------------------------------------------------------------------------- the chapter-08 prompt model
PROMPT_SCHEDULE = "cosine"  # small pictures: the cosine schedule keeps more signal for longer (chapter 02)
# v-prediction (Salimans & Ho 2022, §4): with the cosine schedule's nearly pure noise at large t, an
# ε-predicting net's x̂₀ = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t blows its small errors up by 1/√ᾱ_t. In our cpu
# recipe the same training gave 56 % prompt accuracy with ε and 100 % with v (DDIM 30 steps, s = 3).
PROMPT_PREDICTION_TYPE = "v_prediction"
HELD_OUT: tuple[tuple[str, ...], ...] = (("dog", "green"),)  # never in the default training set
DATA_SEED = 8


@dataclass(frozen=True)
class PromptRecipe:
    """Everything that fixes the prompt model of one profile: the nets, the training and the data size."""

    unet: UNetConfig
    text: TextEncoderConfig
    train: TrainConfig
    num_images: int  # training pictures drawn by make_hats_dataset
    num_steps: int  # sampling steps used by the benchmark and the notebook
    per_prompt: int  # benchmark pictures per prompt


def _prompt_train_config(steps: int, batch_size: int, lr: float, warmup: int, checkpoint_every: int,
                         ema_decay: float) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, checkpoint_every=checkpoint_every,
                       ema_decay=ema_decay, cond_drop_prob=0.1, prediction_type=PROMPT_PREDICTION_TYPE)


def prompt_recipe(profile: Profile = "auto") -> PromptRecipe:
    """The prompt model's recipe for ``smoke`` (seconds), ``cpu`` (minutes on 2 cores) or ``gpu``."""
    prof: ResolvedProfile = resolve_profile(profile)
    if prof == "smoke":
        unet = UNetConfig(image_size=32, in_channels=3, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                          attention_resolutions=(), patch_size=2, norm_groups=4, head_channels=8, cond_dim=16)
        text = TextEncoderConfig(width=16, num_layers=1, num_heads=2, out_dim=16)
        return PromptRecipe(unet, text, _prompt_train_config(8, 8, 2e-3, 2, 0, 0.9), num_images=64, num_steps=4,
                            per_prompt=1)
    if prof == "cpu":
        unet = UNetConfig(image_size=32, in_channels=3, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1,
                          attention_resolutions=(4,), patch_size=2, norm_groups=8, head_channels=32, cond_dim=64)
        text = TextEncoderConfig(width=64, num_layers=1, num_heads=4, out_dim=64)
        return PromptRecipe(unet, text, _prompt_train_config(2000, 64, 2e-3, 100, 250, 0.999), num_images=10_000,
                            num_steps=30, per_prompt=8)
    unet = UNetConfig(image_size=32, in_channels=3, base_channels=64, channel_mults=(1, 2, 2), num_res_blocks=2,
                      attention_resolutions=(8, 4), patch_size=2, norm_groups=16, head_channels=32, cond_dim=128)
    text = TextEncoderConfig(width=128, num_layers=2, num_heads=4, out_dim=128)
    return PromptRecipe(unet, text, _prompt_train_config(8000, 256, 1e-3, 300, 1000, 0.9995), num_images=20_000,
                        num_steps=50, per_prompt=32)


def build_prompt_model(recipe: PromptRecipe) -> PromptDenoiser:
    """A fresh (untrained) :class:`PromptDenoiser` of ``recipe``'s shape, seeded by its training seed."""
    torch.manual_seed(recipe.train.seed)  # the initial weights are part of the recipe
    return PromptDenoiser(UNet(recipe.unet), TextEncoder(recipe.text))


def _exclude_slug(exclude: Sequence[Any]) -> str:
    """A run-directory suffix naming the held-out combinations, e.g. ``-without-dog-green``."""
    parts = ["-".join(ATTRIBUTE_VALUES[name][i].replace(" ", "") for name, i in resolve_combo(combo).items())
             for combo in exclude]
    return "-without-" + "+".join(parts) if parts else ""


def prompt_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, exclude: Iterable[Any] = HELD_OUT,
    device: str | torch.device | None = None, progress: bool = True, retrain: bool = False,
) -> tuple[PromptDenoiser, NoiseSchedule, dict[str, Any]]:
    """The chapter-08 prompt-conditioned U-Net, trained on captioned cats and dogs, once, then cached.

    Data: ``make_hats_dataset(recipe.num_images, seed=DATA_SEED, exclude=exclude)`` and the
    tokenized captions; ``exclude`` (default :data:`HELD_OUT`: no dog ever wears a green hat)
    holds combinations out (see :func:`course_lib.captions.excluded_mask` for the entry format).
    Training: :func:`course_lib.training.train` with condition dropout 0.1 (the empty prompt), so
    the model supports classifier-free guidance. ``run_dir`` defaults to
    ``runs/prompts-<profile>[-without-…]`` (see :func:`train_once`).

    Returns ``(ema_model, schedule, info)``; info keys: ``train_seconds``, ``steps``, ``config``,
    ``train_config``, ``schedule``, ``profile``, ``run_dir``, ``losses``, ``cached``,
    ``num_images``, ``exclude`` and ``recipe_num_steps``.
    """
    check_bool("progress", progress)
    prof = resolve_profile(profile)
    exclude = [tuple(c) if isinstance(c, (list, tuple, set, frozenset)) else c for c in exclude]
    for combo in exclude:
        resolve_combo(combo)  # a typo fails here, naming the allowed values
    recipe = prompt_recipe(prof)
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"prompts-{prof}{_exclude_slug(exclude)}"
    data = make_hats_dataset(recipe.num_images, size=recipe.unet.image_size, seed=DATA_SEED, exclude=exclude)
    tokens = tokenize(data.captions)  # (N, MAX_PROMPT_LENGTH)
    schedule = make_schedule(PROMPT_SCHEDULE)
    result, cached = train_once(lambda: build_prompt_model(recipe), schedule, (data.images, tokens), recipe.train,
                                run_dir, retrain=retrain, device=_device(device), progress=progress)
    info = {**run_info(result, cached, recipe.train, prof, run_dir), "schedule": PROMPT_SCHEDULE,
            "num_images": recipe.num_images, "exclude": [list(c) if isinstance(c, tuple) else c for c in exclude],
            "recipe_num_steps": recipe.num_steps}
    return result.ema_model.eval(), schedule, info


# ----------------------------------------------------------------------------- the chapter-12 flow models
FLOW_REFLOW_SAMPLER = "midpoint"  # how the reflow pairs are drawn from the base flow …
FLOW_REFLOW_PAIR_STEPS = {"smoke": 1, "cpu": 5, "gpu": 10}  # … and with how many steps (midpoint: 2 calls each)


def flow_train_config(profile: Profile = "auto") -> TrainConfig:
    """The flow model's recipe: the chapter-04 digits recipe (same steps, batch, lr, EMA: the same
    training time) without Min-SNR, which weighs the ε-loss only; the flow loss has its own weighting,
    the logit-normal choice of t (:class:`course_lib.flow.FlowMatching`, Esser et al. 2024)."""
    return replace(digits_train_config(profile), min_snr_gamma=None)


def flow_digits_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
    progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The chapter-12 flow-matching digits model: the chapter-04 U-Net, trained as a velocity model
    ``v(x_t, t·1000)`` with :class:`~course_lib.flow.FlowMatching` (logit-normal t) at the chapter-04 budget.

    Cached in ``runs/flow-digits-<profile>`` (see :func:`train_once`). Returns ``(ema_model, info)``;
    info as :func:`digits_model`'s plus ``objective``.
    """
    from .flow import FlowMatching

    prof = resolve_profile(profile)
    cfg, tcfg, objective = digits_config(prof), flow_train_config(prof), FlowMatching()
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"flow-digits-{prof}"
    images = load_mnist5000("train", size=cfg.image_size).images
    result, cached = train_once(lambda: UNet(cfg), objective, images, tcfg, run_dir, retrain=retrain, device=device,
                                progress=progress)
    return result.ema_model, {**run_info(result, cached, tcfg, prof, run_dir), "objective": objective.identity()}


def reflow_train_config(profile: Profile = "auto") -> TrainConfig:
    """Reflow's fine-tuning recipe: half the base flow's steps at half its peak lr, from the base flow's
    EMA weights (Liu et al. 2023, §2.2: the *k*-rectified flow starts from the (k−1)-th). With the pairs
    (4,000 × 10 network calls) the extra cost stays below the base training's (measured at 600 steps of
    the cpu recipe: 579 s of extra for 877 s of base training, 1 thread)."""
    base = flow_train_config(profile)
    return replace(base, steps=max(1, base.steps // 2), lr=base.lr / 2, warmup=max(1, base.warmup // 2))


def reflow_pairs_for(flow_model: nn.Module, base_sha256: str, profile: Profile, run_dir: Path, *, num_pairs: int,
                     device: torch.device) -> tuple[torch.Tensor, float]:
    """The (picture, static) couplings of reflow: ``num_pairs`` statics (seed 12) carried to pictures by the
    base flow (:data:`FLOW_REFLOW_SAMPLER`, :data:`FLOW_REFLOW_PAIR_STEPS`), cached in ``run_dir/pairs-<base sha256>.safetensors``
    (a new base flow gets new pairs); returns the pairs (:func:`course_lib.flow.reflow_pairs`) and the
    seconds spent drawing them."""
    import time

    from .checkpoints import atomic_save_tensors, load_tensors
    from .flow import reflow_pairs, sample_flow

    path = run_dir / f"pairs-{base_sha256[:16]}.safetensors"
    if path.is_file():
        stored = load_tensors(path)
        return stored["pairs"], float(stored["seconds"])
    tic = time.perf_counter()
    noise = torch.randn((num_pairs, 1, 32, 32), generator=torch.Generator().manual_seed(12))  # (N, 1, 32, 32)
    steps = FLOW_REFLOW_PAIR_STEPS[resolve_profile(profile)]
    flow_model = flow_model.to(device).eval()
    images = torch.cat([sample_flow(flow_model, tuple(z.shape), sampler=FLOW_REFLOW_SAMPLER, num_steps=steps,
                                    noise=z, device=device).cpu() for z in noise.split(250)])
    pairs = reflow_pairs(images, noise)
    seconds = time.perf_counter() - tic
    atomic_save_tensors(path, {"pairs": pairs, "seconds": torch.tensor(seconds, dtype=torch.float64)})
    return pairs, seconds


def reflow_digits_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
    progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The 2-rectified flow of chapter 12 (Liu et al. 2023, Algorithm 1): the base flow
    (:func:`flow_digits_model`) draws one picture from each of 4,000 statics (64 in smoke), and a copy
    of it is trained further on the straight lines between exactly those pairs (uniform t: a one-step
    sampler uses the velocity at t = 1, so every t matters).

    Cached in ``runs/reflow-digits-<profile>``. Returns ``(ema_model, info)``; info as
    :func:`flow_digits_model`'s plus ``pair_seconds`` (drawing the pairs) and ``extra_seconds`` (pairs +
    training: the cost on top of the base flow's ``train_seconds``).
    """
    from .flow import FlowMatching

    prof = resolve_profile(profile)
    base, base_info = flow_digits_model(prof, device=device, progress=progress)
    cfg, tcfg = digits_config(prof), reflow_train_config(prof)
    objective = FlowMatching(timestep_sampling="uniform", reflow=True)
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"reflow-digits-{prof}"
    base_sha = read_state(base_info["run_dir"])["sha256"]
    if retrain:
        for old in run_dir.glob("pairs-*.safetensors"):
            old.unlink()
    num_pairs = {"smoke": 64, "cpu": 4000, "gpu": 4000}[prof]
    pairs, pair_seconds = reflow_pairs_for(base, base_sha, prof, run_dir, num_pairs=num_pairs, device=_device(device))
    weights = {k: v.detach().cpu().clone() for k, v in base.state_dict().items()}

    def build() -> nn.Module:  # the base flow's EMA weights, trainable again
        model = UNet(cfg)
        model.load_state_dict(weights)
        return model

    result, cached = train_once(build, objective, pairs, tcfg, run_dir, retrain=retrain, device=device,
                                progress=progress)
    info = {**run_info(result, cached, tcfg, prof, run_dir), "objective": objective.identity(),
            "base_train_seconds": base_info["train_seconds"], "pair_seconds": pair_seconds,
            "extra_seconds": pair_seconds + result.seconds, "num_pairs": num_pairs}
    return result.ema_model, info


__all__ = [
    "COND_CPU_STEPS", "DATA_SEED", "DIGITS_NUM_CLASSES", "DIGITS_SCHEDULE", "FLOW_REFLOW_PAIR_STEPS",
    "FLOW_REFLOW_SAMPLER", "HELD_OUT", "PROMPT_PREDICTION_TYPE", "PROMPT_SCHEDULE", "PromptRecipe", "build_prompt_model",
    "card_scores", "classifier_train_config", "digits_model", "digits_noisy_classifier", "digits_train_config",
    "flow_digits_model", "flow_train_config", "noisy_classifier_accuracy", "prompt_model", "prompt_recipe",
    "reflow_digits_model", "reflow_pairs_for", "reflow_train_config", "run_info", "train_once",
]


# ----------------------------------------------------------------------------- chapter 09: the race of the three families
# Each family trains for about the same CPU time. Calibrated on the 2-core reference CPU with one torch
# thread, in process CPU seconds (which a busy, shared machine does not inflate as it does wall time):
# a step of 64 images costs the digits U-Net 0.222 s, the VAE 0.056 s and the GAN 0.107 s, so 600, 2,400
# and 1,240 steps each cost about 133 s. Measured whole runs (1 thread, data loading and checkpoints
# included): VAE 145 s, GAN 143 s of CPU time. Chapter 04's run commits a checkpoint at its step 600 and
# keeps a copy of it (:class:`KeepCheckpoint`): the race's diffusion model, without training twice.
RACE_STEPS: dict[str, dict[str, int]] = {
    "smoke": {"vae": 20, "gan": 20, "diffusion": 10},
    "cpu": {"vae": 2400, "gan": 1240, "diffusion": 600},
    "gpu": {"vae": 6000, "gan": 3000, "diffusion": 1000},
}
VAE_DECODER_STD = 0.7  # tuned on 400-step runs (FID of 500 samples): s = 0.1 → 91, 0.2 → 68, 0.35 → 47, 0.5 → 38, 0.7 → 33, 1.0 → 31 (flat: keep the sharper 0.7)


def vae_train_config(profile: Profile = "auto") -> TrainConfig:
    """The VAE's recipe: AdamW, lr 2e-3 with warm-up and cosine decay, batch 64, EMA, no clipping (the ELBO is in nats per image)."""
    prof = resolve_profile(profile)
    steps = RACE_STEPS[prof]["vae"]
    return TrainConfig(steps=steps, batch_size=16 if prof == "smoke" else 64, lr=2e-3, warmup=min(100, steps // 4),
                       grad_clip=None, ema_decay=0.999, checkpoint_every=max(1, steps // 4))


def vae_model(
    profile: Profile = "auto", *, beta: float = 1.0, run_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None, progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Chapter 09's VAE on the MNIST-5000 digits, trained once through :func:`course_lib.training.train`
    with the :class:`~course_lib.models.vae.ELBO` objective and cached in ``runs/vae-<profile>``
    (``-beta<β>`` when β ≠ 1). Returns ``(ema_model, info)`` (info as :func:`run_info`, plus ``beta``, ``decoder_std``)."""
    from .models.vae import ELBO, VAE, VAEConfig

    prof = resolve_profile(profile)
    objective = ELBO(beta=beta, decoder_std=VAE_DECODER_STD)
    cfg = VAEConfig(base=8 if prof == "smoke" else 32)
    tcfg = vae_train_config(prof)
    name = f"vae-{prof}" + ("" if objective.beta == 1.0 else f"-beta{objective.beta:g}")
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / name
    data = load_mnist5000("train", size=cfg.image_size).images
    result, cached = train_once(lambda: VAE(cfg), objective, data, tcfg, run_dir, retrain=retrain,
                                device=_device(device), progress=progress)
    return result.ema_model, {**run_info(result, cached, tcfg, prof, run_dir), **objective.identity()}


def gan_train_config(profile: Profile = "auto") -> "GANTrainConfig":
    """The GAN's recipe: hinge loss, Adam (β₁ = 0, β₂ = 0.9), two time-scales lr_g 4e-4 < lr_d 8e-4, batch 64, EMA."""
    from .adversarial import GANTrainConfig

    prof = resolve_profile(profile)
    steps = RACE_STEPS[prof]["gan"]
    return GANTrainConfig(steps=steps, batch_size=16 if prof == "smoke" else 64, lr_g=4e-4, lr_d=8e-4,
                          checkpoint_every=max(1, steps // 4))


def gan_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
    progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Chapter 09's GAN on the MNIST-5000 digits (:func:`course_lib.adversarial.train_gan`), trained once and
    cached in ``runs/gan-<profile>`` like every model here. Returns ``(ema_generator, info)``; info as
    :func:`run_info` but with ``g_losses`` / ``d_losses`` instead of ``losses``."""
    from .adversarial import train_gan
    from .models.gan import Discriminator, GANConfig, Generator

    check_bool("retrain", retrain)
    prof = resolve_profile(profile)
    cfg = GANConfig(g_base=8, d_base=8) if prof == "smoke" else GANConfig()
    tcfg = gan_train_config(prof)
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"gan-{prof}"
    data = load_mnist5000("train", size=cfg.image_size).images
    cached = not retrain and has_checkpoint(run_dir) and int(read_state(run_dir).get("step", -1)) >= tcfg.steps
    torch.manual_seed(tcfg.seed)
    result = train_gan(Generator(cfg), Discriminator(cfg), data, tcfg, run_dir=run_dir, resume=not retrain,
                       device=_device(device), progress=progress)
    info = {"train_seconds": result.seconds, "steps": result.steps, "config": cfg.to_dict(),
            "train_config": asdict(tcfg), "profile": prof, "run_dir": str(run_dir), "cached": cached,
            "g_losses": result.g_losses, "d_losses": result.d_losses}
    return result.ema_generator, info


def digits_race_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[nn.Module, NoiseSchedule, dict[str, Any]]:
    """Chapter 04's digits model as it was after ``RACE_STEPS[profile]["diffusion"]`` steps: chapter 09's diffusion contestant.

    The same recipe as :func:`digits_model` (same initial weights, data order and learning-rate plan),
    stopped at the race's step and cached in ``runs/digits-<profile>-race``: the EMA weights there are
    exactly what chapter 04's run held at that step. Returns ``(ema_model, schedule, info)``.
    """
    from .checkpoints import CheckpointError, check_signature, load_checkpoint, state_dict_into
    from .training import StopAfter

    prof = resolve_profile(profile)
    race = RACE_STEPS[prof]["diffusion"]
    cfg, tcfg = digits_config(prof), digits_train_config(prof)
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"digits-{prof}-race"
    cached = has_checkpoint(run_dir) and int(read_state(run_dir).get("step", -1)) >= race
    if not cached:  # train chapter 04's recipe up to the race's step (a checkpoint is committed there)
        torch.manual_seed(tcfg.seed)
        train(UNet(cfg), make_schedule(DIGITS_SCHEDULE), load_mnist5000("train", size=cfg.image_size).images, tcfg,
              run_dir=run_dir, device=_device(device), progress=progress, callback=StopAfter(steps=race))
    tensors, state = load_checkpoint(run_dir)  # sha256-verified
    model = UNet(cfg)
    check_signature(state["model"], model)
    if state["train_config"] != asdict(tcfg) or int(state["step"]) != race:
        raise CheckpointError(f"{str(run_dir)!r} does not hold chapter 04's recipe at step {race}; delete it to retrain")
    state_dict_into(model, tensors, "ema.")
    info = {"train_seconds": float(state["seconds"]), "steps": int(state["step"]), "config": cfg.to_dict(),
            "train_config": asdict(tcfg), "profile": prof, "run_dir": str(run_dir), "cached": cached,
            "losses": list(state["losses"]), "schedule": DIGITS_SCHEDULE, "prediction_type": tcfg.prediction_type}
    return model.to(_device(device)).eval(), make_schedule(DIGITS_SCHEDULE), info


class KeepCheckpoint:
    """Callback for :func:`train`: once the run has committed its checkpoint of step ``step`` in ``run_dir``,
    copy it to ``keep_dir`` (weights first, then the JSON: the copy is committed atomically like the original).

    Chapter 04's digits run commits a checkpoint at the race's step (``checkpoint_every`` divides it), so
    chapter 09 finds the diffusion model "as it was after the race budget" without training anything twice.
    """

    def __init__(self, run_dir: Path, keep_dir: Path, step: int) -> None:
        self.run_dir, self.keep_dir, self.step = Path(run_dir), Path(keep_dir), check_int("step", step, min_value=1)

    def __call__(self, info: Any) -> None:
        if info.step <= self.step or has_checkpoint(self.keep_dir) or not has_checkpoint(self.run_dir):
            return
        state = read_state(self.run_dir)
        if int(state["step"]) != self.step:
            return
        from .checkpoints import atomic_save_tensors, load_checkpoint

        tensors, state = load_checkpoint(self.run_dir)  # sha256-verified
        digest = atomic_save_tensors(self.keep_dir / state["weights"], tensors,
                                     metadata={"format_version": str(state["format_version"])})
        atomic_write_text(self.keep_dir / "checkpoint.json", json.dumps({**state, "sha256": digest}))
