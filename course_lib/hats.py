"""Cats with hats: drawing a procedural, offline data set of captioned cartoon animals (chapter 08).

Every picture is drawn by code from a seed — no download, no photo. A picture shows one cartoon
animal (a cat with pointed ears, whiskers and a small pink nose, or a dog with floppy ears, a light
muzzle and a big dark nose) that wears a hat or not, in front of a plain background. Four
attributes describe it — animal, hat, hat colour, background — and a caption is built from them
(the table and the vocabulary: :mod:`course_lib.captions`). Nuisance factors the captions never
mention vary freely: fur colour, hat style (party cone or top hat), position,
size and small shade jitter of every colour.

Guidance needs conditions, and this set gives two kinds: the attribute rows (N, 4) and the
captions (token ids by :func:`course_lib.captions.tokenize`; the empty prompt ``""`` is the "no
condition" input of classifier-free guidance, Ho & Salimans 2022, §3.2).

``exclude`` holds combinations out of a training set (e.g. a dog is never shown in a green hat),
for the experiment "does the model compose attributes it never saw together?".

Pictures are drawn with anti-aliased signed distances: each shape (ellipse, convex polygon, line)
gives every pixel its distance to the shape's edge in pixels, the pixel's coverage is
clamp(0.5 − distance, 0, 1), and shapes are painted back to front. Everything is vectorised over
the whole batch, so 10,000 pictures take a few seconds.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np
import torch

from .captions import (
    ANIMALS, BACKGROUNDS, HAT_COLOURS, NUM_TEMPLATES, UNSPECIFIED, caption_for, excluded_mask, resolve_combo,
)
from .settings import check_int

HAT_PROBABILITY = 0.5


class HatsData(NamedTuple):
    """Pictures (N, 3, size, size) in [-1, 1], attribute indices (N, 4) and one caption per picture.

    ``attributes`` columns follow :data:`course_lib.captions.ATTRIBUTE_NAMES`: animal, hat (0/1), hat_colour
    (index into :data:`HAT_COLOURS`, -1 without a hat), background.
    """

    images: torch.Tensor
    attributes: torch.Tensor
    captions: list[str]


def _sample_attributes(n: int, rng: np.random.Generator) -> np.ndarray:
    animal = rng.integers(0, len(ANIMALS), n)
    hat = (rng.random(n) < HAT_PROBABILITY).astype(np.int64)
    colour = np.where(hat == 1, rng.integers(0, len(HAT_COLOURS), n), UNSPECIFIED)
    background = rng.integers(0, len(BACKGROUNDS), n)
    return np.stack([animal, hat, colour, background], 1)  # (n, 4)


# ----------------------------------------------------------------------------- drawing
FUR_RGB = np.array([  # ginger, grey, brown, cream, white (a nuisance factor: captions never say it)
    [0.95, 0.60, 0.25], [0.55, 0.56, 0.60], [0.62, 0.42, 0.26], [0.96, 0.86, 0.66], [0.97, 0.96, 0.94],
], dtype=np.float32)
HAT_RGB = np.array([
    [0.88, 0.12, 0.15], [0.15, 0.68, 0.28], [0.99, 0.84, 0.10], [0.58, 0.27, 0.80], [0.13, 0.13, 0.16],
], dtype=np.float32)  # in the order of HAT_COLOURS
BACKGROUND_RGB = np.array([
    [0.68, 0.84, 0.98], [0.99, 0.78, 0.86], [0.99, 0.99, 0.97], [0.80, 0.80, 0.82],
], dtype=np.float32)  # in the order of BACKGROUNDS
OUTLINE_RGB = np.array([0.20, 0.14, 0.13], dtype=np.float32)
EYE_RGB = np.array([0.10, 0.08, 0.08], dtype=np.float32)
PINK_RGB = np.array([0.98, 0.56, 0.66], dtype=np.float32)
OUTLINE_PX = 0.85  # outline width in pixels at size 32 (scaled with the size)


Number = float | np.ndarray  # a scalar, or one value per picture shaped (n, 1, 1)


def _ellipse(x: np.ndarray, y: np.ndarray, cx: Number, cy: Number, a: Number, b: Number, angle: Number = 0.0) -> np.ndarray:
    """Approximate signed distance to an ellipse (negative inside), in the units of x and y."""
    dx, dy = x - cx, y - cy
    if not np.all(np.asarray(angle) == 0):
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    u, v = dx / a, dy / b
    q = np.sqrt(u * u + v * v) + 1e-6
    grad = np.sqrt((u / a) ** 2 + (v / b) ** 2) / q + 1e-6  # |∇q|
    return (q - 1) / grad


def _polygon(x: np.ndarray, y: np.ndarray, vertices: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Signed distance to a convex polygon (vertices in either order): the max of the edge distances."""
    edges = list(zip(vertices, [*vertices[1:], vertices[0]]))
    area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in edges)  # twice the signed area, per picture
    orientation = np.sign(area)  # makes "outside" positive whichever way the vertices run
    d = None
    for (x0, y0), (x1, y1) in edges:
        ex, ey = x1 - x0, y1 - y0
        length = np.sqrt(ex * ex + ey * ey) + 1e-9
        side = orientation * ((x - x0) * ey - (y - y0) * ex) / length
        d = side if d is None else np.maximum(d, side)
    return d


def _segment(x: np.ndarray, y: np.ndarray, x0: Number, y0: Number, x1: Number, y1: Number, half_width: float) -> np.ndarray:
    """Signed distance to a thick line segment."""
    ex, ey = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * ex + (y - y0) * ey) / (ex * ex + ey * ey + 1e-12), 0, 1)
    return np.sqrt((x - x0 - t * ex) ** 2 + (y - y0 - t * ey) ** 2) - half_width


Box = tuple[Sequence[np.ndarray], Sequence[np.ndarray]]  # the x and the y coordinates that a shape stays within


def _around(cx: np.ndarray, cy: np.ndarray, radius: np.ndarray) -> Box:
    """The box holding a disc of ``radius`` around (cx, cy) in every picture."""
    return (cx - radius, cx + radius), (cy - radius, cy + radius)


def _hull(*points: tuple[np.ndarray, np.ndarray]) -> Box:
    """The box holding the given points in every picture."""
    return [p[0] for p in points], [p[1] for p in points]


class _Canvas:
    """A batch of RGB pictures (n, 3, H, W) on which shapes are painted back to front."""

    def __init__(self, background: np.ndarray, size: int) -> None:
        self.size = size
        grid = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres in (0, 1)
        self.x = grid[None, None, :]  # (1, 1, W)
        self.y = grid[None, :, None]  # (1, H, 1)
        shade = 1.0 - 0.06 * self.y[:, None]  # a soft vertical gradient, (1, 1, H, 1)
        self.rgb = background[:, :, None, None] * shade  # (n, 3, H, W) after broadcasting
        self.rgb = np.broadcast_to(self.rgb, (len(background), 3, size, size)).copy()
        self.outline = OUTLINE_PX / 32  # outline width in picture units (0.85 px at size 32)

    def coverage(self, distance: np.ndarray) -> np.ndarray:
        """Anti-aliased coverage of each pixel from a signed distance in picture units."""
        return np.clip(0.5 - distance * self.size, 0.0, 1.0)

    def _window(self, box: Box, where: np.ndarray | None) -> tuple[slice, slice]:
        """Rows and columns that hold the shape in every picture (only pictures in ``where`` count)."""
        pick = slice(None) if where is None else where

        def span(coords: Sequence[np.ndarray]) -> slice:
            values = np.concatenate([np.broadcast_to(np.asarray(c, np.float32), (len(self.rgb), 1, 1))[pick].ravel() for c in coords])
            if values.size == 0:
                return slice(0, 0)
            margin = self.outline + 1.0 / self.size
            lo = int(np.floor((values.min() - margin) * self.size))
            hi = int(np.ceil((values.max() + margin) * self.size))
            return slice(max(lo, 0), max(min(hi, self.size), 0))

        return span(box[1]), span(box[0])

    def paint(self, shape: Callable[[np.ndarray, np.ndarray], np.ndarray], rgb: np.ndarray, box: Box, *,
              where: np.ndarray | None = None, alpha: float = 1.0, outline: bool = True) -> None:
        """Fill ``shape`` (x, y → signed distance) with ``rgb`` ((3,) or (n, 3)), first its dark outline.

        Only the window given by ``box`` is computed; ``where`` (n,) bool picks the pictures that get it.
        """
        rows, cols = self._window(box, where)
        if rows.start >= rows.stop or cols.start >= cols.stop:
            return
        distance = shape(self.x[:, :, cols], self.y[:, rows, :])  # (n, h, w)
        view = self.rgb[:, :, rows, cols]  # a view: painting it paints the canvas
        mask = np.float32(alpha) if where is None else where.astype(np.float32)[:, None, None] * alpha  # (n, 1, 1)
        colour = np.asarray(rgb, dtype=np.float32)
        colour = colour[None, :, None, None] if colour.ndim == 1 else colour[:, :, None, None]  # (n|1, 3, 1, 1)
        if outline:
            cov = (self.coverage(distance - self.outline) * mask)[:, None]  # (n, 1, h, w)
            view += (OUTLINE_RGB[None, :, None, None] - view) * cov
        cov = (self.coverage(distance) * mask)[:, None]  # (n, 1, h, w)
        view += (colour - view) * cov


def draw_animals(attributes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Pictures (n, 3, size, size) in [0, 1] for attribute rows (n, 4); all jitter comes from ``rng``
    (chapter 08's animals; chapter 11's scenes draw each animal with it, :func:`course_lib.scenes.draw_scenes`)."""
    n = len(attributes)
    animal, hat, colour, background = attributes.T
    is_cat, is_dog, has_hat = animal == 0, animal == 1, hat == 1

    def u(lo: float, hi: float) -> np.ndarray:  # one uniform number per picture, shaped to broadcast (n, 1, 1)
        return rng.uniform(lo, hi, n).astype(np.float32)[:, None, None]

    def shade(rgb: np.ndarray, spread: float) -> np.ndarray:  # (n, 3) colours with a small brightness jitter
        return np.clip(rgb * rng.uniform(1 - spread, 1 + spread, (n, 1)).astype(np.float32), 0, 1)

    s = u(0.88, 1.08)  # size of the animal
    cx, cy = u(0.44, 0.56), u(0.58, 0.64)  # head centre
    tilt = u(-0.12, 0.12)  # head tilt, radians
    fur = shade(FUR_RGB[rng.integers(0, len(FUR_RGB), n)], 0.07)
    hat_rgb = shade(HAT_RGB[np.maximum(colour, 0)], 0.05)
    hat_style = rng.random(n) < 0.5  # True: party cone, False: top hat
    hat_dx = u(-0.04, 0.04)  # hat sits a little left or right
    canvas = _Canvas(shade(BACKGROUND_RGB[background], 0.03), size)
    c, si = np.cos(tilt), np.sin(tilt)
    white = np.ones(3, np.float32)

    def at(dx: float | np.ndarray, dy: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A point given relative to the head centre in head units, turned with the head tilt."""
        px, py = dx * s, dy * s
        return cx + c * px - si * py, cy + si * px + c * py

    def ellipse(px, py, a, b, angle=0.0, **kw) -> None:
        """Paint an ellipse with radii (a, b) head units around the picture point (px, py)."""
        canvas.paint(lambda x, y: _ellipse(x, y, px, py, a * s, b * s, angle), box=_around(px, py, max(a, b) * s), **kw)

    def polygon(vertices, **kw) -> None:
        canvas.paint(lambda x, y: _polygon(x, y, vertices), box=_hull(*vertices), **kw)

    # body (shoulders), peeking up from the bottom edge
    ellipse(cx, cy + 0.37 * s, 0.29, 0.2, rgb=fur)
    # cat ears: outer triangle, then a pink inner triangle; drawn before the head, which hides their base
    for side in (-1, 1):
        verts = [at(side * 0.24, -0.06), at(side * 0.21, -0.36), at(side * 0.04, -0.2)]  # outer base, tip, inner base
        polygon(verts, rgb=fur, where=is_cat)
        centre = (sum(v[0] for v in verts) / 3, sum(v[1] for v in verts) / 3)
        inner = [(0.45 * vx + 0.55 * centre[0], 0.45 * vy + 0.55 * centre[1]) for vx, vy in verts]
        inner[1] = (0.6 * verts[1][0] + 0.4 * centre[0], 0.6 * verts[1][1] + 0.4 * centre[1])  # reaching up into the tip
        polygon(inner, rgb=PINK_RGB, where=is_cat, outline=False)
    # head
    ellipse(cx, cy, 0.25, 0.21, tilt, rgb=fur)
    # dog: floppy ears hanging at the sides, a light muzzle and a big dark nose
    for side in (-1, 1):
        ellipse(*at(side * 0.25, 0.0), 0.075, 0.17, tilt - side * 0.3, rgb=fur * 0.62, where=is_dog)
    ellipse(*at(0.0, 0.1), 0.12, 0.08, tilt, rgb=0.45 * fur + 0.55, where=is_dog, outline=False)
    ellipse(*at(0.0, 0.06), 0.05, 0.035, tilt, rgb=EYE_RGB, where=is_dog, outline=False)
    # cat: small pink nose and whiskers
    polygon([at(0.035, 0.045), at(0.0, 0.085), at(-0.035, 0.045)], rgb=PINK_RGB, where=is_cat, outline=False)
    for side in (-1, 1):
        for dy0, dy1 in ((0.07, 0.04), (0.1, 0.12)):
            (x0, y0), (x1, y1) = at(side * 0.08, dy0), at(side * 0.3, dy1)
            canvas.paint(lambda x, y: _segment(x, y, x0, y0, x1, y1, 0.25 / 32), OUTLINE_RGB, _hull((x0, y0), (x1, y1)),
                         where=is_cat, alpha=0.8, outline=False)
    # eyes with a white glint, and pink cheeks
    for side in (-1, 1):
        ellipse(*at(side * 0.1, -0.02), 0.04, 0.05, tilt, rgb=EYE_RGB, outline=False)
        ellipse(*at(side * 0.1 + 0.014, -0.038), 0.016, 0.016, rgb=white, outline=False)
        ellipse(*at(side * 0.16, 0.08), 0.045, 0.028, tilt, rgb=PINK_RGB, alpha=0.55, outline=False)
    # the hat, sitting on top of the head: a party cone with a pom-pom, or a top hat with a light band
    hx, hy = at(0.0, -0.185)
    hx = hx + hat_dx
    cone, top = has_hat & hat_style, has_hat & ~hat_style
    apex = (hx + 0.6 * hat_dx, hy - 0.28 * s)
    polygon([(hx + 0.13 * s, hy + 0.02 * s), apex, (hx - 0.13 * s, hy + 0.02 * s)], rgb=hat_rgb, where=cone)
    canvas.paint(lambda x, y: _ellipse(x, y, apex[0], apex[1], 0.04 * s, 0.04 * s), 0.98 * white,
                 _around(apex[0], apex[1], 0.04 * s), where=cone)
    crown = [(hx + 0.1 * s, hy), (hx + 0.11 * s, hy - 0.24 * s), (hx - 0.11 * s, hy - 0.24 * s), (hx - 0.1 * s, hy)]
    polygon(crown, rgb=hat_rgb, where=top)
    band_y = hy - 0.05 * s
    canvas.paint(lambda x, y: np.maximum(_polygon(x, y, crown), np.abs(y - band_y) - 0.03 * s),
                 np.clip(0.55 * hat_rgb + 0.45, 0, 1), _hull(*crown), where=top, outline=False)
    brim = [(hx + 0.17 * s, hy + 0.035 * s), (hx + 0.17 * s, hy - 0.01 * s),
            (hx - 0.17 * s, hy - 0.01 * s), (hx - 0.17 * s, hy + 0.035 * s)]
    polygon(brim, rgb=hat_rgb, where=top)
    return np.clip(canvas.rgb, 0.0, 1.0)


def make_hats_dataset(n: int, *, size: int = 32, seed: int = 0, exclude: Iterable[Any] = ()) -> HatsData:
    """``n`` captioned cartoon cats and dogs, with or without hats, drawn from ``seed``.

    Attributes are drawn independently: animal and background uniformly, a hat with probability
    :data:`HAT_PROBABILITY`, its colour uniformly. Combinations matching an ``exclude`` entry are
    redrawn, so they never appear: ``exclude={("dog", "green")}`` gives a training set in which no
    dog wears a green hat (see :func:`excluded_mask` for the entry format). Each caption uses a
    template drawn from the same seed (:func:`caption_for`). The same ``n``, ``size``, ``seed``
    and ``exclude`` always give the same pictures.

    Returns :class:`HatsData`: images (n, 3, size, size) float32 in [-1, 1], attributes (n, 4) long,
    captions (n strings).
    """
    n = check_int("n", n, min_value=0)
    size = check_int("size", size, min_value=16, max_value=128)
    seed = check_int("seed", seed, min_value=0, max_value=2**32 - 1)
    exclude = list(exclude)
    for combo in exclude:
        resolve_combo(combo)  # fail early on a typo
    rng = np.random.default_rng(seed)
    attributes = _sample_attributes(n, rng)
    for _ in range(1000):
        bad = excluded_mask(torch.from_numpy(attributes), exclude).numpy()
        if not bad.any():
            break
        attributes[bad] = _sample_attributes(int(bad.sum()), rng)
    else:
        raise ValueError(f"exclude={exclude!r} leaves (almost) no attribute combination to draw")
    templates = rng.integers(0, NUM_TEMPLATES, n)
    draw_rng = np.random.default_rng([seed, 1])  # the drawing jitter has its own stream
    chunk = max(64, 2048 * 32 * 32 // (size * size))  # keeps each batch of temporaries near 25 MB
    pictures = [draw_animals(attributes[i : i + chunk], size, draw_rng) for i in range(0, n, chunk)]
    images = np.concatenate(pictures) if pictures else np.zeros((0, 3, size, size), np.float32)
    captions = [caption_for(row, int(t)) for row, t in zip(attributes.tolist(), templates)]
    return HatsData(torch.from_numpy(images * 2 - 1).float(), torch.from_numpy(attributes).long(), captions)
