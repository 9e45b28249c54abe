"""Pictures for the lessons: image grids with captions."""
from __future__ import annotations

import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import torch
from PIL import Image

from .shapes import to_image


def show_images(images: Sequence[Image.Image | torch.Tensor], titles: Sequence[str] | None = None,
                ncols: int = 6, width: float = 8.0, title_width: int = 22, suptitle: str | None = None):
    """Draw images in a grid (pixelated, no smoothing) with wrapped titles; returns the figure."""
    images = [to_image(x) if isinstance(x, torch.Tensor) else x for x in images]
    ncols = min(ncols, len(images))
    nrows = (len(images) + ncols - 1) // ncols
    cell = width / ncols
    text_lines = max((len(textwrap.wrap(t, title_width)) for t in titles), default=0) if titles else 0
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, nrows * (cell + 0.16 * text_lines)), dpi=80,
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k], interpolation="nearest")
            if titles:
                ax.set_title("\n".join(textwrap.wrap(titles[k], title_width)), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def image_grid(rows: Sequence[Sequence[Image.Image]], gap: int = 4,
               fill: tuple[int, int, int] = (128, 128, 128)) -> Image.Image:
    """Paste PIL images into one picture, row by row, `gap` pixels apart (and from the border).

    A mid-grey gap keeps the black- and the white-background images apart. Images of a row are
    left-aligned; all images must have the same size.
    """
    rows = [list(row) for row in rows if len(row)]
    if not rows:
        raise ValueError("image_grid needs at least one image")
    width, height = rows[0][0].size
    if any(image.size != (width, height) for row in rows for image in row):
        raise ValueError("image_grid needs images of one size: resize them first")
    ncols = max(len(row) for row in rows)
    grid = Image.new("RGB", (ncols * width + (ncols + 1) * gap, len(rows) * height + (len(rows) + 1) * gap), fill)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            grid.paste(image.convert("RGB"), (gap + c * (width + gap), gap + r * (height + gap)))
    return grid
