"""Guidance: telling the magic eraser what to find underneath the static (chapter 07).

Two ways to steer a diffusion model towards a class y, each packaged as a *denoiser*
``model(x_t, t, cond=None)`` that every sampler of :func:`course_lib.samplers.sample` accepts:

- **Classifier-free guidance** (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. 6):
  one network trained with condition dropout predicts both ε_c = ε(x_t, y) and ε_∅ = ε(x_t, ∅);
  extrapolate past the conditional prediction:

      ε̃ = ε_∅ + s · (ε_c − ε_∅)

  with s = ``guidance_scale`` (course convention, DESIGN.md and book/notation.md): s = 0 is the
  unconditional model, s = 1 the plain conditional one, s > 1 guided. Ho & Salimans write
  ε̃ = (1 + w) ε_c − w ε_∅, i.e. **w = s − 1**. :func:`cfg_model` evaluates both predictions in
  ONE batched forward pass on [x_t, x_t] with conditions [c, ∅]. The optional *guidance rescale*
  of Lin et al. 2023 ("Common Diffusion Noise Schedules and Sample Steps are Flawed", §3.4,
  eqs. 15–16) pulls the per-image standard deviation of the guided output back towards that of
  the conditional one, which tames the over-exposed look of large s.
- **Classifier guidance** (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image
  Synthesis", §4.2, Algorithm 2 and the ε̂ formula above it): with a classifier p_φ(y | x_t, t)
  trained on noisy images (:class:`course_lib.models.noisy_classifier.NoisyClassifier`),

      ε̂_guided = ε̂(x_t) − s · √(1−ᾱ_t) · ∇_{x_t} log p_φ(y | x_t),

  because ε̂/(−√(1−ᾱ_t)) is the score ∇ log p(x_t) and Bayes adds ∇ log p(y | x_t) to it; s is the
  classifier scale. :func:`classifier_guided_model` wraps any denoiser that way.

Both wrappers take the labels through ``cond``: ``sample(cfg_model(net, 3.0), s, shape, cond=labels)``.
``sample(net, s, shape, cond=labels, guidance_scale=3.0)`` is the same as the first (sample calls
:func:`cfg_model` itself). Label −1 (:data:`~course_lib.models.embeddings.EMPTY_LABEL`) means "no
condition"; for embedding-vector conditions a row of NaNs does (the convention of the U-Net and of
``training.drop_condition``).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import (
    check_same,
    check_signature,
    has_checkpoint,
    load_checkpoint,
    model_signature,
    save_checkpoint,
)
from .forward import PREDICTION_TYPES, prediction_type_of, split_prediction_at
from .models.embeddings import EMPTY_LABEL
from .models.noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from .schedules import NoiseSchedule, broadcast_to
from .settings import check_bool, check_choice, check_float, check_int, get_device, resolve_profile, runs_dir

Denoiser = Callable[..., torch.Tensor]  # model(x_t, t, cond=None) -> tensor shaped like x_t
PredictionType = Literal["epsilon", "sample", "v_prediction"]
GuidanceMethod = Literal["none", "cfg", "classifier"]
GUIDANCE_METHODS: tuple[str, ...] = get_args(GuidanceMethod)


# ============================================================================ classifier-free guidance
def check_guidance_scale(guidance_scale: Any, name: str = "guidance_scale") -> float:
    """A guidance scale as a float ≥ 0; ValueError (naming ``name``) for negatives, NaN, inf or non-numbers."""
    return check_float(name, guidance_scale, min_value=0.0)


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance: ε̃ = ε_∅ + s·(ε_c − ε_∅) (Ho & Salimans 2022, eq. 6, w = s − 1; chapter 07).

    s = 1 is the plain conditional model, s = 0 the unconditional one. Because x̂₀ and v are affine
    in ε at fixed (x_t, t), the same combination is correct for x₀- and v-prediction outputs.
    """
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def rescale_guidance(guided: torch.Tensor, cond_pred: torch.Tensor, rescale: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2023, §3.4, eqs. 15–16): with σ = per-image std over (C, H, W),

        x_rescaled = x_cfg · σ(x_c)/σ(x_cfg),    x_final = φ·x_rescaled + (1 − φ)·x_cfg

    φ = ``rescale`` ∈ [0, 1]: 0 leaves plain CFG, 1 gives the guided direction with exactly the
    conditional prediction's spread. (The paper rescales a v-prediction; like diffusers we apply it
    to whatever the network outputs.)
    """
    phi = check_float("rescale", rescale, min_value=0.0, max_value=1.0)
    if phi == 0.0:
        return guided
    dims = tuple(range(1, guided.dim()))
    std_cond = cond_pred.std(dim=dims, keepdim=True)  # (B, 1, 1, 1)
    std_cfg = guided.std(dim=dims, keepdim=True).clamp(min=1e-12)
    return phi * guided * (std_cond / std_cfg) + (1 - phi) * guided


def null_condition(cond: torch.Tensor) -> torch.Tensor:
    """The "no condition" version of ``cond``: labels → −1 (the empty token), vectors → rows of NaN."""
    if cond.is_floating_point():
        return torch.full_like(cond, float("nan"))
    return torch.full_like(cond, EMPTY_LABEL)


def _check_denoiser(name: str, model: Any) -> None:
    if not callable(model):
        raise ValueError(f"{name} must be a callable denoiser model(x_t, t, cond=None), got {type(model).__name__}")


def cfg_model(model: Denoiser, guidance_scale: float, *, rescale: float = 0.0) -> Denoiser:
    """``model`` with classifier-free guidance, as a denoiser ``guided(x_t, t, cond=None)`` (chapter 07).

    Each call with labels (B,) — or embedding vectors (B, D) — makes ONE batched forward pass
    ``model(cat[x_t, x_t], cat[t, t], cond=cat[cond, ∅])`` and returns
    ε̃ = ε_∅ + s·(ε_c − ε_∅) (:func:`cfg_combine`), then the guidance rescale φ = ``rescale``
    (:func:`rescale_guidance`). s = ``guidance_scale`` ≥ 0 (w = s − 1 in Ho & Salimans' notation).
    With s = 1 and φ = 0 the conditional model is called alone (nothing to combine); with
    ``cond=None`` the model is called unconditionally. The model must accept ``cond`` with −1
    labels (or NaN rows) meaning "no condition", as the course U-Net does when trained with
    ``TrainConfig(cond_drop_prob > 0)``.
    """
    _check_denoiser("model", model)
    s = check_guidance_scale(guidance_scale)
    phi = check_float("rescale", rescale, min_value=0.0, max_value=1.0)

    def guided(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is None:
            return model(x_t, t)
        if not isinstance(cond, torch.Tensor) or cond.shape[:1] != x_t.shape[:1]:
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"cond must be a tensor with one entry per image, shape ({x_t.shape[0]}, ...), got {got}")
        if s == 1.0 and phi == 0.0:
            return model(x_t, t, cond=cond)
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(x_t.shape[0]) if t.dim() == 0 else t
        x_in = torch.cat([x_t, x_t])  # (2B, C, H, W): conditional half, then unconditional half
        out = model(x_in, torch.cat([t, t]), cond=torch.cat([cond, null_condition(cond)]))
        if not isinstance(out, torch.Tensor) or out.shape != x_in.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the model returned shape {got} for an input x_t of shape {tuple(x_in.shape)}; "
                             "a denoiser must return a tensor shaped like x_t")
        out_cond, out_uncond = out.chunk(2)  # (2B, …) -> two (B, …)
        return rescale_guidance(cfg_combine(out_uncond, out_cond, s), out_cond, phi)

    guided.prediction_type = prediction_type_of(model)  # type: ignore[attr-defined]  (guidance keeps the type)
    return guided


# ============================================================================ classifier guidance
def alpha_bar_at(s: NoiseSchedule, t: torch.Tensor | int | float) -> torch.Tensor:
    """ᾱ at timesteps ``t`` (shape () or (B,)), float32 on t's device.

    Integer t: ``s.alphas_cumprod[t]``. Fractional t (the σ-space samplers of chapter 06 pass them):
    log σ interpolated linearly between the neighbouring steps, then ᾱ = 1/(1 + σ²) — the inverse of
    :func:`course_lib.samplers.sigma_to_t`, so ᾱ matches the noise level the sampler is really at.
    """
    from .samplers import schedule_sigmas  # lazy: samplers imports this module

    t = torch.as_tensor(t)
    T = s.num_timesteps
    if not t.is_floating_point():
        tc = t.detach().cpu().long()
        if tc.numel() and (int(tc.min()) < 0 or int(tc.max()) > T - 1):
            raise ValueError(f"t={tc.tolist()} is out of range; allowed: 0 <= t <= {T - 1}")
        return s.alphas_cumprod[tc].to(t.device)
    tt = t.detach().cpu().double().clamp(0, T - 1)
    low = tt.floor().long().clamp(max=max(T - 2, 0))
    log_sigma = schedule_sigmas(s).double().log()
    w = tt - low
    ls = (1 - w) * log_sigma[low] + w * log_sigma[(low + 1).clamp(max=T - 1)]
    return (1.0 / (1.0 + (2 * ls).exp())).float().to(t.device)


def classifier_log_prob_grad(classifier: nn.Module, x_t: torch.Tensor, t: torch.Tensor,
                             labels: torch.Tensor) -> torch.Tensor:
    """∇_{x_t} log p_φ(y | x_t, t) for each image (same shape as x_t) — by autograd, even under no_grad.

    Rows with label −1 ("no condition") get a zero gradient.
    """
    keep = labels != EMPTY_LABEL  # (B,)
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        log_probs = F.log_softmax(classifier(x, t), dim=-1)  # (B, K)
        picked = log_probs.gather(1, labels.clamp(min=0).long()[:, None])[:, 0]  # log p(y_i | x_i): (B,)
        (grad,) = torch.autograd.grad((picked * keep).sum(), x)  # each image's term depends on it alone
    return grad


def _output_from_eps(a_bar: torch.Tensor, eps: torch.Tensor, x_t: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """Re-express a noise guess ε̂ at noise level ᾱ as the network's output type (ε, x₀ or v)."""
    if prediction_type == "epsilon":
        return eps
    sa, s1 = a_bar**0.5, (1 - a_bar) ** 0.5
    x0 = (x_t - s1 * eps) / sa
    return x0 if prediction_type == "sample" else sa * eps - s1 * x0


def classifier_guided_model(
    model: Denoiser,
    classifier: nn.Module,
    schedule: NoiseSchedule,
    scale: float,
    *,
    prediction_type: str | None = None,
    pass_cond: bool = False,
) -> Denoiser:
    """``model`` steered by a noise-aware classifier, as a denoiser ``guided(x_t, t, cond=labels)`` (chapter 07).

    Dhariwal & Nichol 2021, §4.2 (Algorithm 2 and the ε̂ formula above it):

        ε̂_guided = ε̂(x_t) − s · √(1−ᾱ_t) · ∇_{x_t} log p_φ(y | x_t, t)

    with s = ``scale`` ≥ 0 (0: no guidance). ``classifier(x_t, t)`` returns logits; it sees the same
    (possibly fractional) t as the denoiser, and ᾱ_t comes from :func:`alpha_bar_at`. An x₀- or
    v-predicting model (``prediction_type``; None: the model's own, :func:`~course_lib.forward.prediction_type_of`)
    is read as ε̂, guided, and re-expressed in its own type.
    ``cond`` (required) holds the labels y (B,); −1 rows are left unguided. ``pass_cond=True`` also
    hands the labels to ``model`` (guidance on top of a conditional model); by default the model
    is called as ``model(x_t, t)`` — for the course's conditional U-Net that is its unconditional
    prediction ε_∅.
    """
    _check_denoiser("model", model)
    if not isinstance(classifier, nn.Module):
        raise ValueError(f"classifier must be a torch.nn.Module classifier(x_t, t) -> logits, got {type(classifier).__name__}")
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule (course_lib.schedules.make_schedule), got {type(schedule).__name__}")
    s = check_guidance_scale(scale, "scale")
    prediction_type = prediction_type_of(model, prediction_type)
    check_bool("pass_cond", pass_cond)

    def guided(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is None or not isinstance(cond, torch.Tensor) or cond.is_floating_point() or cond.shape != x_t.shape[:1]:
            got = "None" if cond is None else (tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__)
            raise ValueError(f"classifier guidance needs the labels to steer towards: cond as integer labels of shape "
                             f"({x_t.shape[0]},), e.g. sample(guided, schedule, shape, cond=labels); got {got}")
        out = model(x_t, t, cond=cond) if pass_cond else model(x_t, t)
        if s == 0.0:
            return out
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(x_t.shape[0]) if t.dim() == 0 else t
        a_bar = broadcast_to(alpha_bar_at(schedule, t).to(x_t.device, x_t.dtype), x_t)  # (B, 1, 1, 1)
        eps = split_prediction_at(a_bar, out, x_t, prediction_type).eps
        grad = classifier_log_prob_grad(classifier, x_t, t, cond.to(x_t.device))
        eps = eps - s * (1 - a_bar) ** 0.5 * grad
        return _output_from_eps(a_bar, eps, x_t, prediction_type)

    guided.prediction_type = prediction_type  # type: ignore[attr-defined]  (what sample() reads it as)
    return guided


def guided_denoiser(
    model: Denoiser,
    method: str = "cfg",
    scale: float = 1.0,
    *,
    schedule: NoiseSchedule | None = None,
    classifier: nn.Module | None = None,
    rescale: float = 0.0,
) -> Denoiser:
    """One switch over the guidance methods: ``none`` (the model as it is), ``cfg`` (:func:`cfg_model`
    with s = ``scale`` and φ = ``rescale``) or ``classifier`` (:func:`classifier_guided_model`, needs
    ``schedule`` and ``classifier``). Handy in sweeps and benchmarks."""
    check_choice("method", method, GUIDANCE_METHODS)
    scale = check_guidance_scale(scale, "scale")
    if method == "none":
        _check_denoiser("model", model)
        return model
    if method == "cfg":
        return cfg_model(model, scale, rescale=rescale)
    if schedule is None or classifier is None:
        raise ValueError("method='classifier' needs schedule= (the NoiseSchedule) and classifier= (a NoisyClassifier)")
    return classifier_guided_model(model, classifier, schedule, scale)


# ============================================================================ measuring a scale sweep
class SweepPoint(NamedTuple):
    """One guidance strength of :func:`guidance_sweep`: the scale, the share of samples the shipped
    digit classifier puts in the asked-for class, its mean confidence there, FID against real
    digits, the sampling seconds, and the samples themselves (class-balanced, label order)."""

    guidance_scale: float
    class_accuracy: float
    confidence: float
    fid: float
    seconds: float
    images: torch.Tensor


def balanced_labels(num_classes: int, per_class: int) -> torch.Tensor:
    """Labels 0,…,0, 1,…,1, …: ``per_class`` of each class, (num_classes·per_class,)."""
    check_int("num_classes", num_classes, min_value=1)
    check_int("per_class", per_class, min_value=1)
    return torch.arange(num_classes).repeat_interleave(per_class)


def guidance_sweep(
    model: Denoiser,
    schedule: NoiseSchedule,
    scales: list[float] | tuple[float, ...],
    real: torch.Tensor,
    *,
    per_class: int = 20,
    method: str = "cfg",
    classifier: nn.Module | None = None,
    rescale: float = 0.0,
    sampler: str = "ddim",
    num_steps: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> list[SweepPoint]:
    """Sample a class-balanced set of digits (``per_class`` of each of 10 classes) at each guidance
    strength and measure it (chapter 07's trade-off curve): class accuracy goes up with s, while
    FID against ``real`` (digits in [−1, 1]) first falls — the samples become recognisable — then
    rises again as guidance squeezes out the variety. Every scale starts from the same noise
    (seed ``seed``). ``method``: ``cfg`` or ``classifier`` (:func:`guided_denoiser`).
    FID is biased upwards for small sets: compare values only at equal ``per_class`` and ``len(real)``.
    """
    from .metrics import class_accuracy, fid
    from .samplers import sample

    check_choice("method", method, GUIDANCE_METHODS[1:])
    if not isinstance(scales, (list, tuple)) or not scales:
        raise ValueError(f"scales must be a non-empty list of guidance scales, got {scales!r}")
    scales = [check_guidance_scale(v, "scales[i]") for v in scales]
    labels = balanced_labels(10, per_class)
    points = []
    for scale in scales:
        net = guided_denoiser(model, method, scale, schedule=schedule, classifier=classifier, rescale=rescale)
        tic = time.perf_counter()
        images = sample(net, schedule, (len(labels), *real.shape[1:]), sampler=sampler, num_steps=num_steps,
                        cond=labels, generator=torch.Generator().manual_seed(seed), progress=progress)
        seconds = time.perf_counter() - tic
        images = images.clamp(-1, 1).cpu()
        accuracy, confidence = class_accuracy(images, labels, return_confidence=True)
        points.append(SweepPoint(scale, accuracy, confidence, fid(real, images), seconds, images))
    return points


# ============================================================================ training the noisy classifier
@dataclass(frozen=True)
class ClassifierTrainConfig:
    """How :func:`train_noisy_classifier` trains: AdamW, linear warm-up then cosine decay, cross-entropy on
    x_t at uniformly drawn t (Dhariwal & Nichol 2021, §4.1). ``seed`` fixes initial weights and every draw."""

    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("steps", self.steps, min_value=1)
        check_int("batch_size", self.batch_size, min_value=1)
        check_float("lr", self.lr, min_value=0.0, max_value=1.0)
        check_int("warmup", self.warmup, min_value=0)
        check_float("weight_decay", self.weight_decay, min_value=0.0)
        check_int("seed", self.seed, min_value=0, max_value=2**63 - 1)


def classifier_train_config(profile: str = "auto") -> ClassifierTrainConfig:
    """The noise-aware digit classifier's recipe per profile (``cpu``: about a minute of training on 2 CPU cores)."""
    return {
        "smoke": ClassifierTrainConfig(steps=10, batch_size=16, warmup=2),
        "cpu": ClassifierTrainConfig(steps=500, batch_size=64),
        "gpu": ClassifierTrainConfig(steps=3000, batch_size=256, lr=1e-3, warmup=200),
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


def train_noisy_classifier(
    classifier: NoisyClassifier,
    schedule: NoiseSchedule,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: ClassifierTrainConfig,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> list[float]:
    """Train ``classifier`` in place to predict y from x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε at t ~ U{0, …, T−1}.

    Cross-entropy loss (Dhariwal & Nichol 2021, §4.1: "trained on noisy images"); returns the loss
    history. At large t nothing can be told apart, so the loss there stays near log K; what
    matters for guidance is the gradient at small and middle t.
    """
    from tqdm.auto import tqdm

    from .training import lr_at

    if not isinstance(classifier, NoisyClassifier):
        raise ValueError(f"classifier must be a NoisyClassifier, got {type(classifier).__name__}")
    if not isinstance(config, ClassifierTrainConfig):
        raise ValueError(f"config must be a ClassifierTrainConfig, got {type(config).__name__}")
    if labels.shape != images.shape[:1] or labels.is_floating_point():
        raise ValueError(f"labels must be integer class labels of shape ({images.shape[0]},), got {labels.dtype} {tuple(labels.shape)}")
    check_bool("progress", progress)
    dev = torch.device(device) if isinstance(device, torch.device) else get_device(device or "auto")
    gen = torch.Generator().manual_seed(config.seed)
    classifier.to(dev).train()
    opt = torch.optim.AdamW(classifier.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    images_dev, labels_dev, sched = images.to(dev), labels.to(dev).long(), schedule.to(dev)
    n, T, B = images.shape[0], schedule.num_timesteps, config.batch_size
    losses: list[float] = []
    for step in tqdm(range(config.steps), disable=not progress, desc="noisy classifier", leave=False):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)  # type: ignore[arg-type]  (duck-typed: lr, warmup, steps)
        idx = torch.randint(n, (B,), generator=gen).to(dev)
        t = torch.randint(T, (B,), generator=gen).to(dev)
        noise = torch.randn((B, *images.shape[1:]), generator=gen).to(dev)
        x_t = sched.add_noise(images_dev[idx], noise, t)
        loss = F.cross_entropy(classifier(x_t, t), labels_dev[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    classifier.eval()
    return losses


def digits_noisy_classifier(
    profile: str = "auto",
    *,
    schedule: NoiseSchedule | None = None,
    run_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    retrain: bool = False,
) -> tuple[NoisyClassifier, dict[str, Any]]:
    """The noise-aware MNIST digit classifier of chapter 07, trained once and cached (like ``training.digits_model``).

    Trained on ``load_mnist5000("train")`` noised with ``schedule`` (default: the digits model's,
    ``training.DIGITS_SCHEDULE``). ``run_dir`` (default ``runs/noisy-classifier-<profile>``) holds a
    checkpoint whose sha256, classifier config, training config, schedule and data are verified
    on load; a mismatch raises CheckpointError (``retrain=True`` trains afresh over it).

    Returns ``(classifier, info)``; info keys: ``train_seconds``, ``steps``, ``config``,
    ``train_config``, ``profile``, ``run_dir``, ``losses``, ``cached`` and ``test_accuracy``
    ({t: accuracy on the test split noised to t}).
    """
    from .data import load_mnist5000
    from .schedules import make_schedule
    from .training import DIGITS_SCHEDULE, _fingerprint, _schedule_id

    check_bool("retrain", retrain)
    prof = resolve_profile(profile)
    schedule = schedule if schedule is not None else make_schedule(DIGITS_SCHEDULE)
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    cfg = NoisyClassifierConfig.preset("digits")
    tcfg = classifier_train_config(prof)
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"noisy-classifier-{prof}"
    dev = torch.device(device) if isinstance(device, torch.device) else get_device(device or "auto")
    torch.manual_seed(tcfg.seed)  # the initial weights are part of the recipe
    classifier = NoisyClassifier(cfg)
    identity = {"train_config": asdict(tcfg), "schedule": _schedule_id(schedule)}
    cached = has_checkpoint(run_dir) and not retrain
    if cached:  # cheap checks first, the data set's fingerprint after loading it
        tensors, state = load_checkpoint(run_dir)
        check_signature(state["model"], classifier)
        for key in identity:
            check_same(key.replace("_", " "), {key: state.get(key)}, {key: identity[key]})
    train_split = load_mnist5000("train", size=cfg.image_size)
    identity["data"] = _fingerprint(train_split.images)
    if cached:
        check_same("data", {"data": state.get("data")}, {"data": identity["data"]})
        classifier.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        classifier.to(dev).eval()
        return classifier, {**state["info"], "run_dir": str(run_dir), "cached": True}

    tic = time.perf_counter()
    losses = train_noisy_classifier(classifier, schedule, train_split.images, train_split.labels, tcfg,
                                    device=dev, progress=progress)
    seconds = time.perf_counter() - tic
    test = load_mnist5000("test", size=cfg.image_size)
    accuracy = {str(t): noisy_classifier_accuracy(classifier, schedule, test.images, test.labels, t)
                for t in (0, 250, 500, 750)}
    info = {"train_seconds": seconds, "steps": tcfg.steps, "config": cfg.to_dict(), "train_config": asdict(tcfg),
            "profile": prof, "losses": losses, "test_accuracy": accuracy}
    save_checkpoint(run_dir, {f"model.{k}": v.detach().cpu() for k, v in classifier.state_dict().items()},
                    {**identity, "model": model_signature(classifier), "step": tcfg.steps, "info": info})
    return classifier, {**info, "run_dir": str(run_dir), "cached": False}


__all__ = [
    "ClassifierTrainConfig", "GUIDANCE_METHODS", "SweepPoint", "balanced_labels", "alpha_bar_at", "cfg_combine", "cfg_model",
    "check_guidance_scale", "classifier_guided_model", "classifier_log_prob_grad", "classifier_train_config",
    "digits_noisy_classifier", "guidance_sweep", "guided_denoiser", "noisy_classifier_accuracy", "null_condition", "rescale_guidance",
    "train_noisy_classifier",
]
