"""Measuring sample quality: features in, numbers out — FID, KID, class accuracy, nearest neighbours, 2-D distances.

Pure measurements (chapters 04, 07 and 10): nothing here samples, trains or draws; drawing samples
to measure lives in :mod:`course_lib.evaluation`, pictures in :mod:`course_lib.viz`.
Images are NCHW floats in [-1, 1] (book/notation.md). For digits, every image metric looks at
them through the small classifier that ships with the package
(:mod:`course_lib.models.classifier`, sha256-checked on load, cached once per process):

- :func:`fid` — Fréchet distance between Gaussians fitted to the features of two sets
  (Heusel et al. 2017, eq. 6): ‖μ_r − μ_f‖² + Tr(Σ_r + Σ_f − 2 (Σ_r Σ_f)^{1/2}).
  Computed by torchmetrics' ``FrechetInceptionDistance`` with the classifier as its
  ``feature`` module. Lower is better; it is biased upwards for small sets, so compare values
  only at the same set sizes.
- :func:`kid` — Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", §4):
  the unbiased MMD² with the cubic kernel k(a, b) = (a·b / d + 1)³, averaged over random subsets
  (torchmetrics' ``KernelInceptionDistance``). Unbiased, so fine for small sets; may dip below 0.
- :func:`class_accuracy` — for class-conditional samples, the share the classifier puts in
  the class that was asked for (and, optionally, its mean confidence in that class); chapter 07's
  guidance sweep and chapter 10. :func:`predicted_classes` counts which digits a model draws.
- :func:`nearest_training_images` — a memorisation check: each sample's nearest training image and
  the ratio nearest / second-nearest distance. A copy sits much closer to one training image than
  to any other, so its ratio is near 0 (the ratio test of Lowe 2004, used for copy detection of
  diffusion samples by Carlini et al. 2023, "Extracting training data from diffusion models", §4).
  :func:`course_lib.viz.plot_nearest` shows the pairs.
- :func:`sliced_wasserstein` and :func:`mmd` — the same questions for (N, 2) point clouds of
  the 2-D toys (chapters 03–04).
- :func:`margin_mask`, :func:`background_noise` and the rest of :mod:`course_lib.margins` — clean
  backgrounds (chapter 10), re-exported here.

``features="inception"`` swaps in Inception-v3 pool features (the usual FID on photos). It needs
the ``torch-fidelity`` package and the weights file ``pt_inception-2015-12-05-6726825d.pth`` already
on disk (``inception_weights=`` or the environment variable ``COURSE_INCEPTION_WEIGHTS``);
nothing is ever downloaded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal, NamedTuple, Sequence, get_args

import torch
import torch.nn as nn

from .models.classifier import NUM_CLASSES, cached_digit_classifier, check_digit_images
from .margins import (  # noqa: F401  (re-exported: the clean-background measures of chapter 10)
    background_noise,
    background_noise_per_image,
    background_ratio_interval,
    held_out_background_noise,
    margin_mask,
)
from .settings import check_bool, check_choice, check_float, check_images, check_int

FeatureSpace = Literal["digits", "inception"]
FEATURE_SPACES: tuple[str, ...] = get_args(FeatureSpace)
NeighbourSpace = Literal["pixel", "features"]
NEIGHBOUR_SPACES: tuple[str, ...] = get_args(NeighbourSpace)
INCEPTION_ENV = "COURSE_INCEPTION_WEIGHTS"
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
DEFAULT_BANDWIDTHS: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0)


# ----------------------------------------------------------------------------- feature modules
class DigitFeatures(nn.Module):
    """torchmetrics ``feature`` module: images (N, 1, 28|32, 28|32) in [-1, 1] → (N, 128) float64.

    ``num_features`` tells torchmetrics the size, so it does not push a dummy uint8 image through.
    Features come back in float64, the precision torchmetrics keeps its sums in.
    """

    def __init__(self, device: str = "cpu") -> None:
        super().__init__()
        self.net = cached_digit_classifier(device)
        self.num_features = self.net.num_features

    def train(self, mode: bool = True) -> "DigitFeatures":
        return super().train(False)  # a fixed yardstick: never in training mode

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net.features(images).double()  # (N, 128)


class InceptionFeatures(nn.Module):
    """torchmetrics ``feature`` module: Inception-v3 pool3 features (N, 2048) of [-1, 1] images.

    Grey images are repeated to 3 channels and mapped to uint8 [0, 255], torchmetrics' input for
    its Inception (which resizes to 299×299 itself).
    """

    num_features = 2048

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(weights)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # [-1, 1] -> {0, …, 255}
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)  # (N, 1, H, W) -> (N, 3, H, W)
        with torch.no_grad():
            return self.net(pixels).double()  # (N, 2048)


def inception_weights_path(inception_weights: str | Path | None) -> Path:
    """Resolve the local Inception weights (argument, else ``COURSE_INCEPTION_WEIGHTS``); never download."""
    given = inception_weights if inception_weights is not None else os.environ.get(INCEPTION_ENV)
    if not given:
        raise ValueError(
            f"features='inception' needs the Inception-v3 weights on disk: pass inception_weights='/path/to/{INCEPTION_FILE}' "
            f"or set {INCEPTION_ENV}. course_lib never downloads them; features='digits' works offline."
        )
    path = Path(given).expanduser()
    if not path.is_file():
        raise ValueError(f"inception_weights={str(path)!r} is not a file; point it at a local copy of {INCEPTION_FILE}")
    try:
        import torch_fidelity  # noqa: F401  (torchmetrics' Inception lives there)
    except ImportError as err:
        raise ImportError("features='inception' needs the torch-fidelity package: pip install torch-fidelity") from err
    return path


class CustomFeatures(nn.Module):
    """Wrap any ``module(x) -> (N, d)`` as a torchmetrics ``feature`` module with float64 output.

    ``num_features`` is read from the module when it has one, else from one forward pass on
    ``example`` — so an encoder from a later chapter, or ``nn.Identity()`` on (N, d) vectors in a
    test, can serve as the feature space.
    """

    def __init__(self, module: nn.Module, example: torch.Tensor) -> None:
        super().__init__()
        self.module = module
        num = getattr(module, "num_features", None)
        if not isinstance(num, int):
            with torch.no_grad():
                num = int(module(example[:2]).reshape(2, -1).shape[1])  # (2, …) -> (2, d)
        self.num_features = num

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(x).reshape(x.shape[0], -1).double()  # (N, d)


def _feature_module(
    features: FeatureSpace | nn.Module, inception_weights: str | Path | None, real: torch.Tensor
) -> nn.Module:
    if isinstance(features, nn.Module):
        return CustomFeatures(features, real)
    if features == "digits":
        return DigitFeatures(str(real.device))
    return InceptionFeatures(inception_weights_path(inception_weights)).to(real.device)


def _check_images(name: str, images: object, features: FeatureSpace | nn.Module) -> torch.Tensor:
    """Digits: (N, 1, 28|32, 28|32) in [-1, 1]; Inception: (N, 1|3, H, W) in [-1, 1]; custom: any float tensor."""
    if isinstance(features, nn.Module):
        if not isinstance(images, torch.Tensor) or images.dim() < 2 or not images.is_floating_point():
            raise ValueError(f"{name} must be a float tensor (N, …) for a custom feature module, got {type(images).__name__}")
        return images
    if features == "digits":
        return check_digit_images(name, images)
    return check_images(name, images, channels=(1, 3))


def _check_common(
    real: object, fake: object, features: FeatureSpace | nn.Module, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(features, nn.Module):
        check_choice("features", features, FEATURE_SPACES)
    check_int("batch_size", batch_size, min_value=1)
    real = _check_images("real", real, features)
    fake = _check_images("fake", fake, features)
    for name, x in (("real", real), ("fake", fake)):
        if x.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 images, got {x.shape[0]}")
    return real, fake.to(real.device)


def _fill(metric: nn.Module, real: torch.Tensor, fake: torch.Tensor, batch_size: int) -> None:
    for chunk in real.split(batch_size):
        metric.update(chunk.float(), real=True)
    for chunk in fake.split(batch_size):
        metric.update(chunk.float(), real=False)


# ----------------------------------------------------------------------------- FID / KID
def digit_features(images: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """The classifier's penultimate-layer features (N, 128) of digits in [-1, 1] — FID/KID's space."""
    images = check_digit_images("images", images)
    check_int("batch_size", batch_size, min_value=1)
    module = DigitFeatures(str(images.device))
    return torch.cat([module(chunk.float()) for chunk in images.split(batch_size)]).float()


def fid(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    features: FeatureSpace | nn.Module = "digits",
    inception_weights: str | Path | None = None,
    batch_size: int = 500,
) -> float:
    """Fréchet distance between feature Gaussians of ``real`` and ``fake`` (Heusel et al. 2017, eq. 6).

    ``features``: ``"digits"`` (the shipped classifier, default), ``"inception"`` (needs local
    weights, see the module docstring), or your own ``nn.Module`` mapping a batch to (N, d) features.
    Lower is better; 0 for identical statistics. Deterministic. Reference points with the shipped
    network (real against real, noised, blurred and pure-noise digits) and the time it takes are in
    README "Performance" → "FID and KID yardsticks on the digit features (chapter 10)"; chapter 10
    measures such a ladder in every run. (The features have RMS 1, so the values are smaller than
    Inception FIDs on photos; compare them only with each other.)
    """
    real, fake = _check_common(real, fake, features, batch_size)
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_feature_module(features, inception_weights, real)).to(real.device)
    _fill(metric, real, fake, batch_size)
    return float(metric.compute())


def kid(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    subsets: int = 100,
    subset_size: int | None = None,
    seed: int = 0,
    features: FeatureSpace | nn.Module = "digits",
    inception_weights: str | Path | None = None,
    batch_size: int = 500,
) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): mean and std of the unbiased MMD² over subsets.

    Kernel k(a, b) = (a·b / d + 1)³ on the features (d of them). Each of ``subsets`` draws
    ``subset_size`` real and fake images without replacement; the default is half the smaller set,
    at most 1,000 (a subset as large as a set makes every draw the same, and the std 0). A larger
    ``subset_size`` is capped at the smaller set's size. ``seed`` fixes the draws: deterministic.
    Values depend on the feature space, so compare them only within one. Reference points with the
    shipped network: README "Performance" → "FID and KID yardsticks on the digit features (chapter 10)".
    """
    real, fake = _check_common(real, fake, features, batch_size)
    subsets = check_int("subsets", subsets, min_value=1)
    if subset_size is not None:
        subset_size = check_int("subset_size", subset_size, min_value=2)
    seed = check_int("seed", seed, min_value=0)
    from torchmetrics.image.kid import KernelInceptionDistance

    smaller = min(real.shape[0], fake.shape[0])
    size = max(2, min(1000, smaller // 2)) if subset_size is None else min(subset_size, smaller)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(
            feature=_feature_module(features, inception_weights, real), subsets=subsets, subset_size=size
        ).to(real.device)
    _fill(metric, real, fake, batch_size)
    with torch.random.fork_rng(devices=[]):  # torchmetrics draws subsets with the global CPU generator
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


# ----------------------------------------------------------------------------- class accuracy
def class_accuracy(
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int] | int,
    *,
    return_confidence: bool = False,
    batch_size: int = 500,
) -> float | tuple[float, float]:
    """Share of ``images`` the shipped classifier assigns to the class in ``labels`` (chapters 07 and 10).

    ``labels``: one class per image (N,) or a single int for all. With ``return_confidence=True``
    returns ``(accuracy, mean confidence)``, the confidence being the softmax probability of the
    requested class — guidance should raise both (chapter 07's sweep, chapter 10).
    """
    images = check_digit_images("images", images)
    check_bool("return_confidence", return_confidence)
    check_int("batch_size", batch_size, min_value=1)
    labels = check_labels(labels, images.shape[0]).to(images.device)
    net = cached_digit_classifier(str(images.device))
    with torch.no_grad():
        probs = torch.cat([net(chunk.float()).softmax(-1) for chunk in images.split(batch_size)])  # (N, 10)
    accuracy = float((probs.argmax(-1) == labels).float().mean())
    if not return_confidence:
        return accuracy
    return accuracy, float(probs.gather(1, labels[:, None]).mean())


def check_labels(labels: object, n: int) -> torch.Tensor:
    """``labels`` as a LongTensor (n,) of digit classes 0…9; a single int means that class for all n."""
    if isinstance(labels, bool):
        raise ValueError(f"labels must be class indices in 0…{NUM_CLASSES - 1}, got {labels!r}")
    if isinstance(labels, int):
        labels = torch.full((n,), labels)
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), one class per image, got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers in 0…{NUM_CLASSES - 1}, got dtype {labels.dtype}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= NUM_CLASSES):
        raise ValueError(f"labels must lie in 0…{NUM_CLASSES - 1}, got values in [{int(labels.min())}, {int(labels.max())}]")
    return labels.long()


# ----------------------------------------------------------------------------- memorisation
class NearestNeighbours(NamedTuple):
    """Per sample: its nearest training image and how much closer that one is than the runner-up."""

    index: torch.Tensor  # (N,) long: index into the training set
    distance: torch.Tensor  # (N,) Euclidean distance to the nearest training image
    second_distance: torch.Tensor  # (N,) distance to the second nearest
    ratio: torch.Tensor  # (N,) distance / second_distance in [0, 1]; near 0 = a likely copy


def nearest_training_images(
    samples: torch.Tensor, train: torch.Tensor, *, space: NeighbourSpace = "pixel", batch_size: int = 256
) -> NearestNeighbours:
    """For each sample, the nearest and second-nearest training image (Euclidean distance).

    ``space="pixel"`` (default) compares raw pixels: a memorised sample is a near-exact copy, and
    pixel distance is the strictest, easiest-to-explain test — any image size, as long as samples
    and training images share (C, H, W). ``space="features"`` compares the classifier's 128
    features (digits only); it also catches slightly shifted copies, but two different 7s can sit
    close there too, so read its ratios more loosely. A ratio well below ~0.5 is worth a look.
    Candidates are found with a fast matrix product, then re-measured exactly, so a true copy has
    distance 0.
    """
    check_choice("space", space, NEIGHBOUR_SPACES)
    check_int("batch_size", batch_size, min_value=1)
    if space == "features":
        samples_f = digit_features(check_digit_images("samples", samples))
        train_f = digit_features(check_digit_images("train", train)).to(samples_f.device)
    else:
        for name, x in (("samples", samples), ("train", train)):
            check_images(name, x)
        if samples.shape[1:] != train.shape[1:]:
            raise ValueError(
                f"train images {tuple(train.shape[1:])} and samples {tuple(samples.shape[1:])} must share (C, H, W) "
                "in space='pixel' (pad 28×28 digits with models.classifier.pad_to_32, or use space='features')"
            )
        samples_f = samples.flatten(1).float()  # (N, C*H*W)
        train_f = train.flatten(1).float().to(samples_f.device)  # (M, C*H*W)
    if train_f.shape[0] < 2:
        raise ValueError(f"train needs at least 2 images for a nearest / second-nearest ratio, got {train_f.shape[0]}")
    k = min(8, train_f.shape[0])
    out = [_two_nearest(chunk, train_f, k) for chunk in samples_f.split(batch_size)]
    index, d1, d2 = (torch.cat(parts) for parts in zip(*out))
    ratio = torch.where(d2 > 0, d1 / d2.clamp_min(1e-12), torch.zeros_like(d1))
    return NearestNeighbours(index, d1, d2, ratio)


def _two_nearest(queries: torch.Tensor, bank: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index of the nearest row of ``bank`` and the two smallest exact distances, per query row."""
    rough = torch.cdist(queries, bank)  # (B, M), fast but inexact near 0
    cand = rough.topk(k, dim=1, largest=False).indices  # (B, k)
    exact = (queries[:, None, :] - bank[cand]).square().sum(-1).sqrt()  # (B, k)
    best, order = exact.topk(2, dim=1, largest=False)  # (B, 2)
    return cand.gather(1, order[:, :1]).squeeze(1), best[:, 0], best[:, 1]


# ----------------------------------------------------------------------------- 2-D point clouds
def _check_clouds(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    for name, c in (("x", x), ("y", y)):
        if not isinstance(c, torch.Tensor) or c.dim() != 2 or c.shape[0] < 2 or c.shape[1] < 1:
            shape = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
            raise ValueError(f"{name} must be a point cloud tensor (N, D) with N >= 2, e.g. (N, 2) for the toys; got {shape}")
        if not c.is_floating_point() or not bool(torch.isfinite(c).all()):
            raise ValueError(f"{name} must hold finite float coordinates")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension D, got x {tuple(x.shape)} and y {tuple(y.shape)}")
    return x.double(), y.double().to(x.device)


def sliced_wasserstein(
    x: torch.Tensor, y: torch.Tensor, num_projections: int = 256, seed: int = 0, *, p: float = 2.0
) -> float:
    """Sliced p-Wasserstein distance between point clouds (N, D) and (M, D) (Bonneel et al. 2015).

    Projects both clouds on ``num_projections`` random unit directions (seeded), takes the exact
    1-D Wasserstein distance between the sorted projections on each, and returns
    (mean over directions of W_p^p)^(1/p). N and M may differ. In the units of the coordinates.
    """
    x, y = _check_clouds(x, y)
    num_projections = check_int("num_projections", num_projections, min_value=1)
    seed = check_int("seed", seed, min_value=0)
    p = check_float("p", p, min_value=1.0)
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.randn(x.shape[1], num_projections, generator=gen, dtype=torch.float64).to(x.device)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)  # (D, P) unit columns
    xs = (x @ dirs).T.sort(dim=1).values  # (P, N)
    ys = (y @ dirs).T.sort(dim=1).values  # (P, M)
    n, m = xs.shape[1], ys.shape[1]
    # quantile levels where either empirical CDF jumps, in exact integer units of 1 / (n m)
    cuts = torch.cat([torch.arange(1, n + 1) * m, torch.arange(1, m + 1) * n]).unique()  # sorted, ends at n m
    prev = torch.cat([torch.zeros(1, dtype=cuts.dtype), cuts[:-1]])
    width = ((cuts - prev).double() / (n * m)).to(x.device)  # interval lengths, sum to 1
    ix = ((prev + cuts) // (2 * m)).clamp_max(n - 1).to(x.device)  # quantile index of x at each midpoint
    iy = ((prev + cuts) // (2 * n)).clamp_max(m - 1).to(x.device)
    wpp = ((xs[:, ix] - ys[:, iy]).abs().pow(p) * width).sum(1)  # (P,) W_p^p per direction
    return float(wpp.mean().pow(1 / p))


def mmd(
    x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS, *, unbiased: bool = True,
    batch_size: int = 2048,
) -> float:
    """Squared maximum mean discrepancy MMD² with a sum of RBF kernels (Gretton et al. 2012, eq. 3).

    k(a, b) = Σ_σ exp(−‖a − b‖² / (2σ²)) over ``bandwidths`` σ (in coordinate units; the toys are
    standardised, so 0.1…2 covers fine and coarse structure). ``unbiased=True`` drops the i = j
    terms (Gretton's MMD²_u, which can dip slightly below 0); ``False`` gives the biased MMD²_b ≥ 0.
    """
    x, y = _check_clouds(x, y)
    if isinstance(bandwidths, (int, float)):
        bandwidths = (bandwidths,)
    bandwidths = tuple(check_float("bandwidths", b, min_value=1e-12) for b in bandwidths)
    if not bandwidths:
        raise ValueError("bandwidths must name at least one positive bandwidth")
    check_bool("unbiased", unbiased)
    check_int("batch_size", batch_size, min_value=1)
    n, m = x.shape[0], y.shape[0]
    k_xx = _kernel_sum(x, x, bandwidths, batch_size)
    k_yy = _kernel_sum(y, y, bandwidths, batch_size)
    k_xy = _kernel_sum(x, y, bandwidths, batch_size)
    if unbiased:
        diag = len(bandwidths)  # k(a, a) = 1 per bandwidth
        value = (k_xx - n * diag) / (n * (n - 1)) + (k_yy - m * diag) / (m * (m - 1)) - 2 * k_xy / (n * m)
    else:
        value = k_xx / n**2 + k_yy / m**2 - 2 * k_xy / (n * m)
    return float(value)


def _kernel_sum(a: torch.Tensor, b: torch.Tensor, bandwidths: tuple[float, ...], batch_size: int) -> float:
    """Σ_ij Σ_σ exp(−‖a_i − b_j‖² / (2σ²)), a block of rows at a time."""
    total = 0.0
    for chunk in a.split(batch_size):
        sq = torch.cdist(chunk, b, compute_mode="donot_use_mm_for_euclid_dist").square()  # (B, M) exact
        total += sum(float(torch.exp(-sq / (2 * s * s)).sum()) for s in bandwidths)
    return total


# ----------------------------------------------------------------------------- class balance (chapter 10)
def predicted_classes(images: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """The shipped classifier's class (N,) for each digit — to count which digits a model draws (class balance)."""
    images = check_digit_images("images", images)
    check_int("batch_size", batch_size, min_value=1)
    net = cached_digit_classifier(str(images.device))
    with torch.no_grad():
        return torch.cat([net(chunk.float()).argmax(-1) for chunk in images.split(batch_size)])  # (N,)

