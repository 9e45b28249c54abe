"""The judge: reads a Shapes scene back from pixels and scores an image against a caption.

It is not a trained network but a small, transparent vision pipeline, so a learner can follow every
decision and nothing can be gamed by a generator:

1. the background is the median color of the image;
2. each pixel is explained as a mix of the background and one palette color (`alpha` in [0, 1]),
   which also explains the soft, anti-aliased or blurred edges of decoded images;
3. pixels with alpha >= 0.5 form connected components, one per object (specks are ignored);
4. each component's soft mask is compared with every (shape, size) template, sharp and blurred,
   aligned on its center of mass; the closest template names the shape and size, the center names
   the cell. A mask that matches no template well reads as an unknown shape.

Scoring is strict: every stated attribute must be right, and the number of objects must be exactly
the number the caption names (an extra object is wrong).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw

from .shapes import (BACKGROUNDS, COLORS, SHAPES, SIZE_FRACTION, SIZES, Claim, ObjectClaim, Scene,
                     draw_shape, parse_caption, relation_holds)

_PALETTE = np.array(list(COLORS.values()), dtype=np.float32) / 255.0  # [C, 3]
_COLOR_NAMES = tuple(COLORS)
_BG = np.array(list(BACKGROUNDS.values()), dtype=np.float32) / 255.0
_BG_NAMES = tuple(BACKGROUNDS)

ALPHA_THRESHOLD = 0.5  # a pixel belongs to an object when it is at least half object color
MIN_OBJECT_FRACTION = 0.3  # components smaller than 30 % of the smallest shape's area are specks
UNKNOWN_SHAPE_ERROR = 0.45  # a mask further than this from every template is no known shape
_TEMPLATE_BLURS = (0.0, 0.5, 0.8, 1.2)  # Gaussian sigmas in pixels at 32x32 (scaled with size)


@dataclass(frozen=True)
class DetectedObject:
    """One object the judge found: what it looks like, where, and how well it matched a template."""

    shape: str | None  # None: the mask matches no shape's template well
    color: str
    size: str | None
    row: int
    col: int
    area: float  # sum of the soft mask, in pixels
    match_error: float  # normalized squared distance to the best template (0 = perfect)


@dataclass(frozen=True)
class Reading:
    """Everything the judge read from one image."""

    background: str
    objects: tuple[DetectedObject, ...]


@dataclass
class Score:
    """How well one image follows one caption."""

    all_correct: bool
    attributes: dict[str, bool]  # only the attributes the caption states, plus "count"
    reading: Reading
    claim: Claim = field(repr=False)
    assignment: tuple[int, ...] = ()  # which detected object answers each claimed one (in claim order)


# ----------------------------------------------------------------------------- reading pixels

def as_array(image) -> np.ndarray:
    """PIL image, or tensor [3, H, W] / [H, W, 3] in [0, 1] -> float32 array [H, W, 3] in [0, 1]."""
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    elif isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.ndim == 3 and t.shape[0] == 3:
            t = t.permute(1, 2, 0)
        array = t.numpy()
    else:
        array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] != array.shape[1]:
        raise ValueError(f"the judge reads square RGB images ([3, H, W] tensor or PIL), got shape {array.shape}")
    if array.shape[0] < 16:
        raise ValueError(f"image is {array.shape[0]}x{array.shape[1]}: the judge needs at least 16x16 pixels")
    return np.clip(array, 0.0, 1.0)


def unmix(pixels: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel, the palette color that best explains it as a mix with the background.

    Returns (color index [H, W], alpha [C, H, W]) where alpha[c] is the share of color c that best
    explains each pixel on its own.
    """
    offset = pixels - background  # [H, W, 3]
    directions = _PALETTE - background  # [C, 3]
    alpha = np.einsum("hwk,ck->chw", offset, directions) / (directions**2).sum(1)[:, None, None]
    alpha = np.clip(alpha, 0.0, 1.0)
    residual = ((offset[None] - alpha[..., None] * directions[:, None, None, :]) ** 2).sum(-1)
    return residual.argmin(0), alpha


def cell_of(x: float, y: float, image_size: int) -> tuple[int, int]:
    """The (row, col) of the 3x3 grid cell that contains pixel coordinates (x, y)."""
    cell = image_size / 3
    return min(2, max(0, int(y // cell))), min(2, max(0, int(x // cell)))


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """Connected components (8-neighbourhood) of a boolean mask, as lists of (row, col) pixels."""
    seen = np.zeros_like(mask, dtype=bool)
    height, width = mask.shape
    out = []
    for r0, c0 in zip(*np.nonzero(mask)):
        if seen[r0, c0]:
            continue
        stack, pixels = [(r0, c0)], []
        seen[r0, c0] = True
        while stack:
            r, c = stack.pop()
            pixels.append((r, c))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < height and 0 <= cc < width and mask[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        stack.append((rr, cc))
        out.append(np.array(pixels))
    return out


def _gaussian_blur(array: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return array
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(array, radius)
    rows = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), 0, rows)


def _centroid_offset(shape: str) -> float:
    """Vertical distance from a shape's box center to its center of mass, per unit of width."""
    return 1 / 6 if shape == "triangle" else 0.0  # an upward triangle's mass sits low


@lru_cache(maxsize=20_000)
def _template(shape: str, size: str, image_size: int, window: int, qx: int, qy: int, blur: float) -> np.ndarray:
    """Soft mask of one shape drawn in a `window`-pixel square with its box center at (qx/4, qy/4)."""
    scale = 4
    canvas = Image.new("L", (window * scale, window * scale), 0)
    draw_shape(ImageDraw.Draw(canvas), shape, qx / 4 * scale, qy / 4 * scale,
               SIZE_FRACTION[size] * image_size * scale, 255)
    mask = np.asarray(canvas.resize((window, window), Image.Resampling.BOX), dtype=np.float32) / 255.0
    return _gaussian_blur(mask, blur * image_size / 32)


def _classify(soft: np.ndarray, cy: float, cx: float, image_size: int, window: int
              ) -> tuple[str | None, str | None, float, float, float]:
    """Best (shape, size) for a soft mask in a window; returns it with its error and box center."""
    best = (None, None, np.inf, cy, cx)
    energy = max(float((soft**2).sum()), 1e-6)
    for shape, size in itertools.product(SHAPES, SIZES):
        by = cy - _centroid_offset(shape) * SIZE_FRACTION[size] * image_size
        qx, qy = round(cx * 4), round(by * 4)
        for blur in _TEMPLATE_BLURS:
            template = _template(shape, size, image_size, window, qx, qy, blur)
            error = float(((soft - template) ** 2).sum()) / max(energy, float((template**2).sum()))
            if error < best[2]:
                best = (shape, size, error, by, cx)
    return best


def read_image(image) -> Reading:
    """Read the background and every object (shape, color, size, cell) from an image."""
    pixels = as_array(image)
    n = pixels.shape[0]
    background_rgb = np.median(pixels.reshape(-1, 3), axis=0)
    background = _BG_NAMES[int(((_BG - background_rgb) ** 2).sum(1).argmin())]
    color_index, alpha = unmix(pixels, background_rgb)
    own_alpha = np.take_along_axis(alpha, color_index[None], 0)[0]
    solid = own_alpha >= ALPHA_THRESHOLD

    smallest_area = 0.5 * (SIZE_FRACTION["small"] * n) ** 2  # a small triangle or diamond
    half = int(np.ceil(0.3 * n))  # the window around an object: its largest size plus blur
    objects = []
    for c, color in enumerate(_COLOR_NAMES):
        for pixels_rc in _components(solid & (color_index == c)):
            if len(pixels_rc) < MIN_OBJECT_FRACTION * smallest_area:
                continue
            # the object's soft mask: this color's alpha near the component, minus other objects
            near = np.zeros((n, n), dtype=bool)
            near[pixels_rc[:, 0], pixels_rc[:, 1]] = True
            near = _gaussian_blur(near.astype(np.float32), 1.0) > 0.01
            soft = np.where(near & ~(solid & (color_index != c)), alpha[c], 0.0)
            weights = soft.sum()
            cy = float((soft.sum(1) * np.arange(n)).sum() / weights) + 0.5
            cx = float((soft.sum(0) * np.arange(n)).sum() / weights) + 0.5
            top, left = int(round(cy)) - half, int(round(cx)) - half
            window = np.zeros((2 * half, 2 * half), dtype=np.float32)
            r0, r1, c0, c1 = max(top, 0), min(top + 2 * half, n), max(left, 0), min(left + 2 * half, n)
            window[r0 - top:r1 - top, c0 - left:c1 - left] = soft[r0:r1, c0:c1]
            shape, size, error, by, bx = _classify(window, cy - top, cx - left, n, 2 * half)
            if error > UNKNOWN_SHAPE_ERROR:
                shape, size = None, None
            row, col = cell_of(bx + left, by + top, n)
            objects.append(DetectedObject(shape, color, size, row, col, float(weights), round(error, 4)))
    objects.sort(key=lambda o: (o.row, o.col, o.color))
    return Reading(background, tuple(objects))


# ----------------------------------------------------------------------------- scoring

def _object_matches(claim: ObjectClaim, obj: DetectedObject) -> dict[str, bool]:
    out = {"shape": claim.shape == obj.shape}
    if claim.color is not None:  # a skewed world's caption may leave it unsaid (lesson 09)
        out["color"] = claim.color == obj.color
    if claim.size is not None:
        out["size"] = claim.size == obj.size
    if claim.row is not None:
        out["position"] = (claim.row, claim.col) == (obj.row, obj.col)
    return out


def score_reading(reading: Reading, claim: Claim) -> Score:
    """Score what was read from an image against what a caption claims."""
    detected = reading.objects
    best_assignment, best_hits = None, -1
    for chosen in itertools.permutations(range(len(detected)), min(len(detected), len(claim.objects))):
        hits = sum(sum(_object_matches(c, detected[k]).values()) for c, k in zip(claim.objects, chosen))
        if hits > best_hits:
            best_assignment, best_hits = chosen, hits
    assignment = list(best_assignment or ())

    attributes: dict[str, bool] = {"count": len(detected) == len(claim.objects)}
    for index, obj_claim in enumerate(claim.objects):
        matches = (_object_matches(obj_claim, detected[assignment[index]]) if index < len(assignment)
                   else {k: False for k in _object_matches(obj_claim, DetectedObject(None, "", None, 0, 0, 0, 0))})
        for name, ok in matches.items():
            attributes[name] = attributes.get(name, True) and ok
    if claim.relation is not None:
        holds = len(assignment) == 2 and relation_holds(
            (detected[assignment[0]].row, detected[assignment[0]].col), claim.relation,
            (detected[assignment[1]].row, detected[assignment[1]].col))
        attributes["relation"] = holds
    if claim.background is not None:
        attributes["background"] = reading.background == claim.background
    return Score(all(attributes.values()), attributes, reading, claim, tuple(assignment))


def score(image, caption: str | Claim) -> Score:
    """Score an image against a caption (text, or the `Claim` that `caption_scene` returns)."""
    claim = parse_caption(caption) if isinstance(caption, str) else caption
    return score_reading(read_image(image), claim)


def scene_matches(reading: Reading, scene: Scene) -> bool:
    """Whether a reading recovers a scene exactly (every attribute of every object)."""
    expected = sorted((o.row, o.col, o.color, o.shape, o.size) for o in scene.objects)
    got = sorted((o.row, o.col, o.color, o.shape, o.size) for o in reading.objects)
    return reading.background == scene.background and expected == got
