"""The Shapes world: procedural scenes, their pictures, their captions, and fixed splits.

A scene is one or two colored shapes on a 3x3 grid of positions over a plain background. Everything
is generated from a seed, so the dataset is the same on every machine and nothing is downloaded.
Captions come in several phrasings with synonyms, and may leave attributes unsaid; a `Claim` records
exactly what a caption states, which is what the judge scores an image against. A `Skew` turns the
balanced world into a deliberately biased one, for measuring bias (lesson 09).
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .config import get_preset
from .paths import cache_dir, data_dir

# ----------------------------------------------------------------------------- the world's vocabulary

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
#: Seven colors, far from each other and from both backgrounds (RGB, 0-255).
COLORS = {
    "red": (230, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (245, 230, 20),
    "green": (30, 180, 50),
    "cyan": (20, 210, 230),
    "blue": (30, 70, 230),
    "purple": (160, 50, 200),
}
BACKGROUNDS = {"black": (15, 15, 15), "white": (240, 240, 240)}
SIZES = ("small", "large")
#: Object width as a fraction of the image side: 7 px and 10 px across at 32x32.
SIZE_FRACTION = {"small": 0.22, "large": 0.32}
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
#: (row, col) -> canonical position name.
POSITION_NAMES = {
    (0, 0): "top left", (0, 1): "top", (0, 2): "top right",
    (1, 0): "left", (1, 1): "center", (1, 2): "right",
    (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right",
}
#: Relations between two objects, read as "first RELATION second".
RELATIONS = ("left of", "right of", "above", "below")
SPLITS = ("train", "val", "test", "heldout")


def _check_choice(kind: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}: valid {kind}s are {', '.join(valid)}")


@dataclass(frozen=True)
class ShapeObject:
    """One shape in a scene: what it is and which of the 3x3 cells it sits in."""

    shape: str
    color: str
    size: str
    row: int
    col: int

    def __post_init__(self) -> None:
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("color", self.color, tuple(COLORS))
        _check_choice("size", self.size, SIZES)
        if self.row not in (0, 1, 2) or self.col not in (0, 1, 2):
            raise ValueError(f"position ({self.row}, {self.col}) is off the grid: row and col must be 0, 1 or 2")

    @property
    def position(self) -> str:
        return POSITION_NAMES[(self.row, self.col)]


@dataclass(frozen=True)
class Scene:
    """One or two objects in distinct cells, with distinct colors, on a background."""

    objects: tuple[ShapeObject, ...]
    background: str

    def __post_init__(self) -> None:
        _check_choice("background", self.background, tuple(BACKGROUNDS))
        if not 1 <= len(self.objects) <= 2:
            raise ValueError(f"a scene holds one or two objects, not {len(self.objects)}")
        if len(self.objects) == 2:
            a, b = self.objects
            if (a.row, a.col) == (b.row, b.col):
                raise ValueError("two objects cannot share a cell: give them different positions")
            if a.color == b.color:
                raise ValueError("two objects must have different colors, so each stays readable")

    def key(self) -> str:
        """A canonical string for the scene, independent of object order (used for splits)."""
        parts = sorted(f"{o.size}-{o.color}-{o.shape}@{o.row}{o.col}" for o in self.objects)
        return f"{self.background}|" + "|".join(parts)

    def relations(self) -> list[tuple[int, str, int]]:
        """Every true relation (i, relation, j) between the objects."""
        if len(self.objects) < 2:
            return []
        out = []
        for i, j in ((0, 1), (1, 0)):
            a, b = self.objects[i], self.objects[j]
            if a.col < b.col:
                out.append((i, "left of", j))
            if a.col > b.col:
                out.append((i, "right of", j))
            if a.row < b.row:
                out.append((i, "above", j))
            if a.row > b.row:
                out.append((i, "below", j))
        return out

    def to_dict(self) -> dict:
        return {"background": self.background,
                "objects": [o.__dict__.copy() for o in self.objects]}

    @staticmethod
    def from_dict(d: dict) -> "Scene":
        return Scene(tuple(ShapeObject(**o) for o in d["objects"]), d["background"])


def relation_holds(a: tuple[int, int], relation: str, b: tuple[int, int]) -> bool:
    """Whether an object at cell `a` (row, col) is RELATION an object at cell `b`."""
    _check_choice("relation", relation, RELATIONS)
    (ra, ca), (rb, cb) = a, b
    return {"left of": ca < cb, "right of": ca > cb, "above": ra < rb, "below": ra > rb}[relation]


# ----------------------------------------------------------------------------- rendering

_SUPERSAMPLE = 4  # draw 4x larger, then downsample: anti-aliased edges that look the same at any size


def _polygon(shape: str, cx: float, cy: float, half: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        return [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "triangle":  # pointing up, filling the object's box
        return [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "diamond":
        return [(cx, cy - half), (cx + half, cy), (cx, cy + half), (cx - half, cy)]
    if shape == "cross":  # a plus sign with arms a third of the box wide
        t = half / 3
        return [(cx - t, cy - half), (cx + t, cy - half), (cx + t, cy - t), (cx + half, cy - t),
                (cx + half, cy + t), (cx + t, cy + t), (cx + t, cy + half), (cx - t, cy + half),
                (cx - t, cy + t), (cx - half, cy + t), (cx - half, cy - t), (cx - t, cy - t)]
    return None  # circle: drawn as an ellipse


def cell_center(row: int, col: int, image_size: int) -> tuple[float, float]:
    """Pixel coordinates (x, y) of the center of a grid cell."""
    cell = image_size / 3
    return ((col + 0.5) * cell, (row + 0.5) * cell)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, width: float, fill) -> None:
    """Draw one filled shape whose bounding box is `width` wide, centered at (cx, cy)."""
    half = width / 2
    points = _polygon(shape, cx, cy, half)
    if points is None:
        draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=fill)
    else:
        draw.polygon(points, fill=fill)


def render(scene: Scene, image_size: int = 32) -> Image.Image:
    """Draw a scene as an RGB PIL image of `image_size` x `image_size` pixels."""
    if image_size < 16:
        raise ValueError(f"image_size {image_size} is too small to draw legible shapes: use 16 or more")
    big = image_size * _SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        cx, cy = cell_center(obj.row, obj.col, big)
        draw_shape(draw, obj.shape, cx, cy, SIZE_FRACTION[obj.size] * big, COLORS[obj.color])
    return image.resize((image_size, image_size), Image.Resampling.BOX)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> float tensor [3, H, W] in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def to_image(tensor: torch.Tensor) -> Image.Image:
    """Float tensor [3, H, W] in [0, 1] -> PIL RGB image."""
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected an image tensor of shape [3, H, W], got {tuple(tensor.shape)}")
    array = (tensor.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


# ----------------------------------------------------------------------------- captions

COLOR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine"),
    "yellow": ("yellow", "golden", "lemon"),
    "green": ("green", "emerald", "lime"),
    "cyan": ("cyan", "turquoise", "teal"),
    "blue": ("blue", "navy", "azure"),
    "purple": ("purple", "violet", "lilac"),
}
SHAPE_WORDS = {
    "circle": ("circle", "disc", "disk", "dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "wedge"),
    "diamond": ("diamond", "rhombus", "lozenge"),
    "cross": ("cross", "plus", "plus sign"),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
#: Phrases after "at the", "in the" or alone with a colon; e.g. "top left", "upper-left corner".
POSITION_WORDS = {
    (0, 0): ("top left", "upper left", "top-left corner"),
    (0, 1): ("top", "top middle", "top center"),
    (0, 2): ("top right", "upper right", "top-right corner"),
    (1, 0): ("left", "middle left", "left side"),
    (1, 1): ("center", "middle", "centre"),
    (1, 2): ("right", "middle right", "right side"),
    (2, 0): ("bottom left", "lower left", "bottom-left corner"),
    (2, 1): ("bottom", "bottom middle", "bottom center"),
    (2, 2): ("bottom right", "lower right", "bottom-right corner"),
}
RELATION_WORDS = {
    "left of": ("to the left of", "left of"),
    "right of": ("to the right of", "right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
BACKGROUND_WORDS = {"black": ("black", "dark"), "white": ("white", "light")}


@dataclass(frozen=True)
class ObjectClaim:
    """What a caption says about one object; None means the caption leaves it unsaid."""

    shape: str
    color: str | None  # None only for a skewed world's captions (lesson 09), which may leave it unsaid
    size: str | None = None
    row: int | None = None
    col: int | None = None


@dataclass(frozen=True)
class Claim:
    """Everything a caption states: its objects (in caption order), a relation, a background."""

    objects: tuple[ObjectClaim, ...]
    relation: str | None = None  # objects[0] RELATION objects[1]
    background: str | None = None


def _noun_phrase(rng: random.Random, obj: ShapeObject, say_size: bool, say_color: bool = True) -> str:
    words = []
    if say_size:
        words.append(rng.choice(SIZE_WORDS[obj.size]))
    if say_color:
        words.append(rng.choice(COLOR_WORDS[obj.color]))
    words.append(rng.choice(SHAPE_WORDS[obj.shape]))
    return " ".join(words)


def _article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"


def _background_suffix(rng: random.Random, scene: Scene) -> str:
    return f" on a {rng.choice(BACKGROUND_WORDS[scene.background])} background"


def _one_object_caption(rng: random.Random, scene: Scene, say_size: bool, say_position: bool,
                        say_background: bool, say_color: bool = True) -> str:
    obj = scene.objects[0]
    noun = _noun_phrase(rng, obj, say_size, say_color)
    where = rng.choice(POSITION_WORDS[(obj.row, obj.col)])
    bg = _background_suffix(rng, scene) if say_background else ""
    if not say_position:
        template = rng.randrange(3)
        if template == 0:
            return f"{_article(noun)} {noun}{bg}"
        if template == 1:
            return f"there is {_article(noun)} {noun}{bg}"
        return f"{_article(noun)} {noun}, nothing else{bg}"
    template = rng.randrange(5)
    if template == 0:
        return f"{_article(noun)} {noun} at the {where}{bg}"
    if template == 1:
        return f"{where}: {_article(noun)} {noun}{bg}"
    if template == 2:
        return f"in the {where}, {_article(noun)} {noun}{bg}"
    if template == 3:
        return f"there is {_article(noun)} {noun} in the {where}{bg}"
    return f"{_article(noun)} {noun}, placed at the {where}{bg}"


def _two_object_caption(rng: random.Random, scene: Scene, say_size: bool, say_background: bool,
                        say_colors: tuple[bool, bool] = (True, True)) -> tuple[str, tuple[int, str, int]]:
    i, relation, j = rng.choice(scene.relations())
    first = _noun_phrase(rng, scene.objects[i], say_size, say_colors[i])
    second = _noun_phrase(rng, scene.objects[j], say_size, say_colors[j])
    rel = rng.choice(RELATION_WORDS[relation])
    bg = _background_suffix(rng, scene) if say_background else ""
    template = rng.randrange(4)
    if template == 0:
        text = f"{_article(first)} {first} {rel} {_article(second)} {second}{bg}"
    elif template == 1:
        text = f"there is {_article(first)} {first} {rel} {_article(second)} {second}{bg}"
    elif template == 2:
        text = f"{_article(first)} {first}, {rel} {_article(second)} {second}{bg}"
    else:
        text = f"{rel} {_article(second)} {second}: {_article(first)} {first}{bg}"
    return text, (i, relation, j)


def caption_scene(scene: Scene, rng: random.Random | int = 0, skew: "Skew | None" = None) -> tuple[str, Claim]:
    """A random caption for `scene` and the `Claim` of exactly what it states.

    Shape and color are always stated. A one-object caption states the size 80 % of the time and
    the position 85 %; a two-object caption states one true relation (not absolute positions) and
    the sizes 70 % of the time. The background is mentioned 20 % of the time. With a `skew`
    (lesson 09), each object's color is left unsaid with the skew's chance (`Skew.omit_chance`).
    """
    rng = random.Random(rng) if isinstance(rng, int) else rng
    say_background = rng.random() < 0.2
    if len(scene.objects) == 1:
        obj = scene.objects[0]
        say_size, say_position = rng.random() < 0.8, rng.random() < 0.85
        say_color = _say_colors(rng, scene, skew)[0]
        text = _one_object_caption(rng, scene, say_size, say_position, say_background, say_color)
        claims = (ObjectClaim(obj.shape, obj.color if say_color else None, obj.size if say_size else None,
                              obj.row if say_position else None, obj.col if say_position else None),)
        relation = None
    else:
        say_size = rng.random() < 0.7
        say_colors = _say_colors(rng, scene, skew)
        text, (i, relation, j) = _two_object_caption(rng, scene, say_size, say_background, say_colors)
        claims = tuple(ObjectClaim(scene.objects[k].shape, scene.objects[k].color if say_colors[k] else None,
                                   scene.objects[k].size if say_size else None) for k in (i, j))
    return text, Claim(claims, relation, scene.background if say_background else None)


def _say_colors(rng: random.Random, scene: Scene, skew: "Skew | None") -> tuple[bool, ...]:
    """Whether each object's color is stated: always without a skew (and then no random draw is spent,
    so the default world's captions stay exactly what they always were)."""
    if skew is None:
        return (True,) * len(scene.objects)
    return tuple(rng.random() >= skew.omit_chance(obj) for obj in scene.objects)


# ----------------------------------------------------------------------------- a skewed world (lesson 09)

@dataclass(frozen=True)
class Skew:
    """A deliberately biased world, for measuring bias and its amplification (lesson 09).

    `rate`: the chance that an object of `shape` is drawn in `color` (the others spread evenly over
    the remaining colors); the default world has 1/7. `omit`: the chance that a caption leaves an
    object's color unsaid (0 in the default world: color is always stated). `omit_pair`: the same
    chance for objects of the skewed pair itself (None: `omit`). A larger `omit_pair` than `omit`
    is the caption mismatch of real data (people rarely name the expected color): among captions
    that leave the color unsaid, the skewed color is then even more common than its `rate`.

        Skew("triangle", "red", rate=0.8, omit=0.5)      # 80 % of triangles red; half the colors unsaid
        parse_skew("shape=triangle,color=red,rate=0.8,omit=0.5")   # the same, as the CLI writes it
    """

    shape: str = "triangle"
    color: str = "red"
    rate: float = 0.8
    omit: float = 0.0
    omit_pair: float | None = None

    def __post_init__(self) -> None:
        for kind, value, valid in (("shape", self.shape, SHAPES), ("color", self.color, tuple(COLORS))):
            if value not in valid:
                raise ValueError(f"unknown skew {kind} {str(value)[:30]!r}: choose one of {', '.join(valid)}")
        for name in ("rate", "omit", "omit_pair"):
            value = getattr(self, name)
            if value is None and name == "omit_pair":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"skew {name}={str(value)[:30]}: a probability must be a number from 0 to 1")
        if (self.color, self.shape) in heldout_pairs():
            raise ValueError(f"'{self.color} {self.shape}' is a held-out pair: skewed scenes would all land in the "
                             "held-out split and training would never see them; skew toward another color")

    def omit_chance(self, obj: ShapeObject) -> float:
        if self.omit_pair is not None and (obj.shape, obj.color) == (self.shape, self.color):
            return self.omit_pair
        return self.omit

    def spec(self) -> str:
        """The text form `parse_skew` reads back."""
        parts = [f"shape={self.shape}", f"color={self.color}", f"rate={self.rate:g}", f"omit={self.omit:g}"]
        return ",".join(parts + ([f"omit_pair={self.omit_pair:g}"] if self.omit_pair is not None else []))


SKEW_FIELDS = ("shape", "color", "rate", "omit", "omit_pair")


def parse_skew(spec: str) -> Skew:
    """'shape=triangle,color=red,rate=0.8,omit=0.5' -> Skew; unset names keep Skew's defaults."""
    if not isinstance(spec, str):
        raise TypeError(f"a skew spec is a str such as 'shape=triangle,color=red,rate=0.8', not a {type(spec).__name__}"
                        f" ({str(spec)[:40]}): pass one")
    if not spec.strip():
        raise ValueError("the skew spec is empty: give one such as 'shape=triangle,color=red,rate=0.8'")
    values: dict[str, object] = {}
    for part in spec.split(","):
        name, sep, value = (x.strip() for x in part.partition("="))
        if name not in SKEW_FIELDS or not sep:
            raise ValueError(f"unknown skew setting {part.strip()[:40]!r}: use name=value with a name from "
                             f"{', '.join(SKEW_FIELDS)} (e.g. 'shape=triangle,color=red,rate=0.8')")
        if name in values:
            raise ValueError(f"skew setting {name!r} is given twice in {spec[:80]!r}: keep one")
        if name in ("shape", "color"):
            values[name] = value
            continue
        try:
            values[name] = float(value)
        except ValueError:
            raise ValueError(f"skew {name}={value[:30]!r} is not a number: give a probability from 0 to 1") from None
    return Skew(**values)


def _skewed_color(rng: random.Random, shape: str, free: list[str], skew: Skew) -> str:
    """A color for an object of `shape` among the `free` colors, by the skew's rate."""
    if shape != skew.shape:
        return rng.choice(free)
    others = [c for c in free if c != skew.color]
    if skew.color in free and (not others or rng.random() < skew.rate):
        return skew.color
    return rng.choice(others)


# ----------------------------------------------------------------------------- reading captions back

def _normalize(text: str) -> str:
    """Lowercase, hyphens as spaces ("top-left" = "top left"), punctuation as separate words."""
    text = text.lower().replace("-", " ").replace(",", " , ").replace(":", " : ")
    return " ".join(text.split())


def _lookup(table: dict) -> dict[str, object]:
    return {_normalize(phrase): value for value, phrases in table.items() for phrase in phrases}


def _longest_match(text: str, start: int, phrases: dict[str, object]) -> tuple[object, int] | None:
    for phrase in sorted(phrases, key=len, reverse=True):
        end = start + len(phrase)
        if text.startswith(phrase, start) and (end == len(text) or not text[end].isalnum()):
            return phrases[phrase], end
    return None


def parse_caption(text: str, require_color: bool = True) -> Claim:
    """Read what a caption states (its shapes, colors, sizes, positions, relation, background).

    Works on every phrasing `caption_scene` produces and on free-form prompts that use the same
    words, e.g. "a big red circle above a small blue square". Raises ValueError when no object
    (a color followed by a shape) can be found, naming the words it understands. With
    `require_color=False` a shape alone is an object too, with its color unsaid (None): the captions
    of a skewed world (lesson 09), e.g. "a triangle at the top".
    """
    if not text or not text.strip():
        raise ValueError("the caption is empty: describe one or two shapes, e.g. 'a red circle at the top left'")
    text = _normalize(text)
    colors, shapes, sizes = _lookup(COLOR_WORDS), _lookup(SHAPE_WORDS), _lookup(SIZE_WORDS)
    positions, relations, backgrounds = _lookup(POSITION_WORDS), _lookup(RELATION_WORDS), _lookup(BACKGROUND_WORDS)

    objects: list[dict] = []
    pending: dict = {}
    pending_position = None  # a position named before its object ("top-left: a red circle")
    relation, relation_before_objects, background = None, False, None
    i = 0
    while i < len(text):
        if text[i] == " ":
            i += 1
            continue
        for table, slot in ((relations, "relation"), (sizes, "size"), (colors, "color"), (shapes, "shape")):
            hit = _longest_match(text, i, table)
            if hit:
                break
        else:
            hit, slot = None, None
        if hit and slot == "relation":
            relation, i = hit
            relation_before_objects = not objects and not pending
            continue
        if hit and slot in ("size", "color"):
            # "a dark background" / "a light background": a background word, not an object color
            bg = _longest_match(text, i, backgrounds)
            if bg and text.startswith(" background", bg[1]):
                background, i = bg[0], bg[1] + len(" background")
                continue
            pending[slot], i = hit
            continue
        if hit and slot == "shape":
            pending["shape"], i = hit
            if "color" in pending or not require_color:
                if pending_position is not None:
                    pending["row"], pending["col"] = pending_position
                    pending_position = None
                objects.append(pending)
            pending = {}
            continue
        bg = _longest_match(text, i, backgrounds)
        if bg and text.startswith(" background", bg[1]):
            background, i = bg[0], bg[1] + len(" background")
            continue
        if text.startswith(("at the ", "in the "), i) or text.startswith("placed at the ", i):
            start = text.index("the ", i) + 4
            pos = _longest_match(text, start, positions)
            if pos:
                (row, col), i = pos
                if text.startswith(" corner", i):
                    i += len(" corner")
                if objects and "row" not in objects[-1]:
                    objects[-1]["row"], objects[-1]["col"] = row, col
                else:
                    pending_position = (row, col)
                continue
        pos = _longest_match(text, i, positions)
        if pos and text.startswith(" corner", pos[1]):
            pos = (pos[0], pos[1] + len(" corner"))
        if pos and text.startswith(" :", pos[1]):
            pending_position, i = pos[0], pos[1] + 2
            continue
        i = text.find(" ", i)  # skip a word we do not need ("a", "there", "is", ...)
        if i < 0:
            break
    if not objects:
        raise ValueError(
            f"no object found in caption {text!r}: name a color ({', '.join(COLORS)}) followed by a "
            f"shape ({', '.join(SHAPES)})")
    if len(objects) > 2:
        raise ValueError(f"the caption names {len(objects)} objects; Shapes scenes hold one or two")
    if relation_before_objects and len(objects) == 2:
        objects.reverse()  # "above a blue square: a red circle" -> red circle above blue square
    claims = tuple(ObjectClaim(o["shape"], o.get("color"), o.get("size"), o.get("row"), o.get("col")) for o in objects)
    if relation is not None and len(claims) != 2:
        raise ValueError(f"the caption states the relation {relation!r} but names {len(claims)} object(s): "
                         "a relation needs two objects")
    return Claim(claims, relation, background)


# ----------------------------------------------------------------------------- splits

SPLITS_FILE = "splits.json"
SPLIT_SEED = 1234


def _unit_hash(text: str) -> float:
    """A number in [0, 1) that depends only on `text`: stable across machines and Python versions."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def make_split_definition(seed: int = SPLIT_SEED) -> dict:
    """The split definition: held-out color-shape pairs and the train/val/test fractions.

    Four of the 35 color-shape pairs (about 11 %) never appear in training, each with a different
    color and a different shape, so every color and every shape is still seen in training.
    """
    rng = random.Random(seed)
    colors, shapes = list(COLORS), list(SHAPES)
    rng.shuffle(colors)
    rng.shuffle(shapes)
    heldout = sorted([colors[k], shapes[k]] for k in range(4))
    return {
        "version": 1,
        "seed": seed,
        "heldout_pairs": heldout,
        "fractions": {"train": 0.8, "val": 0.1, "test": 0.1},
        "rule": "a scene with any held-out color-shape pair is 'heldout'; otherwise the sha256 of its "
                "key() maps it to train/val/test by the fractions",
    }


@lru_cache(maxsize=None)
def load_split_definition() -> dict:
    """The committed split definition in data/splits.json (regenerate: `python -m dalle_lessons data splits`)."""
    path = data_dir() / SPLITS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m dalle_lessons data splits` to write it")
    return json.loads(path.read_text())


def heldout_pairs() -> frozenset[tuple[str, str]]:
    """Color-shape pairs that never appear in the training split."""
    return frozenset((c, s) for c, s in load_split_definition()["heldout_pairs"])


def split_of(scene: Scene) -> str:
    """Which split a scene belongs to; every distinct scene is in exactly one."""
    if any((o.color, o.shape) in heldout_pairs() for o in scene.objects):
        return "heldout"
    u = _unit_hash(scene.key())
    fractions = load_split_definition()["fractions"]
    if u < fractions["train"]:
        return "train"
    if u < fractions["train"] + fractions["val"]:
        return "val"
    return "test"


# ----------------------------------------------------------------------------- sampling scenes

def random_scene(rng: random.Random, n_objects: int | None = None, skew: Skew | None = None) -> Scene:
    """A uniformly random scene with one or two objects (two objects get distinct cells and colors).
    With a `skew`, objects of the skewed shape take the skewed color at its rate instead."""
    if n_objects is None:
        n_objects = rng.choice((1, 2))
    if n_objects not in (1, 2):
        raise ValueError(f"n_objects must be 1 or 2, not {n_objects}")
    cells = rng.sample([(r, c) for r in range(3) for c in range(3)], n_objects)
    if skew is not None:
        objects: list[ShapeObject] = []
        for r, c in cells:
            shape = rng.choice(SHAPES)
            color = _skewed_color(rng, shape, [k for k in COLORS if k not in {o.color for o in objects}], skew)
            objects.append(ShapeObject(shape, color, rng.choice(SIZES), r, c))
        return Scene(tuple(objects), rng.choice(tuple(BACKGROUNDS)))
    colors = rng.sample(list(COLORS), n_objects)
    objects = tuple(ShapeObject(rng.choice(SHAPES), color, rng.choice(SIZES), r, c)
                    for color, (r, c) in zip(colors, cells))
    return Scene(objects, rng.choice(tuple(BACKGROUNDS)))


MAX_DRAWS = 10_000  # a split no scene lands in after this many draws is empty (a skew can make it so)


def sample_scene(split: str, index: int, seed: int = 0, n_objects: int | None = None,
                 skew: Skew | None = None) -> Scene:
    """The `index`-th scene of a split: deterministic, drawn until it lands in that split."""
    _check_choice("split", split, SPLITS)
    rng = random.Random(f"{seed}/{split}/{index}" + (f"/{skew.spec()}" if skew is not None else ""))
    for _ in range(MAX_DRAWS):
        scene = random_scene(rng, n_objects, skew)
        if split_of(scene) == split:
            return scene
    raise ValueError(f"no scene of the {split} split in {MAX_DRAWS:,} draws" +
                     (f" of the skewed world {skew.spec()!r}: the skew leaves that split empty; lower its rate"
                      if skew is not None else ": the split definition leaves it empty; regenerate data/splits.json"))


def caption_corpus(n: int, split: str = "train", seed: int = 0) -> list[str]:
    """The captions of the first `n` items of a split (what the tokenizer is trained on)."""
    data = ShapesDataset(split, n, seed=seed, render_images=False)
    return [data.item_caption(i) for i in range(n)]


class ShapesDataset(torch.utils.data.Dataset):
    """A fixed, seeded list of (image tensor [3, H, W] in [0, 1], caption, scene) for one split.

    Item i is the same on every machine. Images are rendered on first use; with `cache=True` they
    are stored once in data/cache/ (never committed) and loaded from there afterwards. `skew`: a
    deliberately biased world instead of the balanced one (lesson 09; see `Skew`).
    """

    def __init__(self, split: str = "train", size: int = 10_000, preset: str = "cpu", seed: int = 0,
                 n_objects: int | None = None, cache: bool = False, render_images: bool = True,
                 skew: Skew | None = None) -> None:
        _check_choice("split", split, SPLITS)
        if size < 1:
            raise ValueError(f"a {split} dataset of size={size!r}: ask for at least 1 image")
        if skew is not None and not isinstance(skew, Skew):
            raise TypeError(f"skew={str(skew)[:40]!r}: pass a Skew "
                            "(e.g. parse_skew('shape=triangle,color=red,rate=0.8'))")
        self.split, self.size, self.seed, self.n_objects, self.skew = split, size, seed, n_objects, skew
        self.image_size = get_preset(preset).image_size
        self.scenes = [sample_scene(split, i, seed, n_objects, skew) for i in range(size)]
        self.cache = cache
        self._images: torch.Tensor | None = None
        if render_images and cache:
            self._images = self._load_or_render_cache()

    def __len__(self) -> int:
        return self.size

    def item_caption(self, index: int) -> str:
        return self.item_claim(index)[0]

    def item_claim(self, index: int) -> tuple[str, Claim]:
        """The caption of item `index` and what it states."""
        return caption_scene(self.scenes[index], random.Random(f"caption/{self.seed}/{self.split}/{index}"), self.skew)

    def image(self, index: int) -> torch.Tensor:
        if self._images is not None:
            return self._images[index].float() / 255.0
        return to_tensor(render(self.scenes[index], self.image_size))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, Scene]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of {self.size} items")
        return self.image(index), self.item_caption(index), self.scenes[index]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, str, Scene]]:
        return (self[i] for i in range(self.size))

    def images_uint8(self) -> torch.Tensor:
        """All images as one uint8 tensor [N, 3, H, W] (from the cache when the dataset uses one)."""
        if self._images is None:
            self._images = self._load_or_render_cache() if self.cache else self._render_all()
        return self._images

    def _render_all(self) -> torch.Tensor:
        # contiguous [N, 3, H, W]: a channels-last layout would make convolutions pick other kernels
        # (and round differently) than for the same images loaded from the cache
        return torch.from_numpy(np.ascontiguousarray(np.stack(
            [np.asarray(render(s, self.image_size)).transpose(2, 0, 1) for s in self.scenes])))

    def _load_or_render_cache(self) -> torch.Tensor:
        skewed = f"-skew{hashlib.sha256(self.skew.spec().encode()).hexdigest()[:10]}" if self.skew else ""
        name = (f"shapes-{self.split}-{self.size}-{self.image_size}px-seed{self.seed}-obj{self.n_objects or 'any'}"
                f"{skewed}.npy")
        path = cache_dir() / name
        if path.exists():
            return torch.from_numpy(np.load(path))
        array = self._render_all().numpy()
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, array)
        tmp.replace(path)
        return torch.from_numpy(array)


def collate(batch: list[tuple[torch.Tensor, str, Scene]]) -> tuple[torch.Tensor, list[str], list[Scene]]:
    """DataLoader collate: stack images, keep captions and scenes as lists."""
    images, captions, scenes = zip(*batch)
    return torch.stack(images), list(captions), list(scenes)


def write_split_definition(path: Path | None = None, seed: int = SPLIT_SEED) -> Path:
    """Write data/splits.json atomically (the command: `python -m dalle_lessons data splits`)."""
    path = path or data_dir() / SPLITS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(make_split_definition(seed), indent=2) + "\n")
    tmp.replace(path)
    load_split_definition.cache_clear()
    return path
