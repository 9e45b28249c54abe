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
