"""The measured figures of the course: each is a function that returns a table (rows of numbers).

`python -m dalle_lessons evaluate judge` prints the judge's accuracy on fixed test renders; later
lessons add the dVAE's reconstructions and the fidelity of generated images.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from . import judge
from .shapes import ShapesDataset, caption_scene

ATTRIBUTES = ("count", "shape", "color", "size", "position", "relation", "background")


@dataclass
class Accuracy:
    """All-correct rate and per-attribute accuracy over a set of (image, claim) pairs."""

    n: int = 0
    all_correct: int = 0
    scene_exact: int = 0

    def __post_init__(self) -> None:
        self.hits: dict[str, int] = defaultdict(int)
        self.stated: dict[str, int] = defaultdict(int)

    def add(self, result: judge.Score, exact: bool | None = None) -> None:
        self.n += 1
        self.all_correct += result.all_correct
        self.scene_exact += bool(exact)
        for name, ok in result.attributes.items():
            self.stated[name] += 1
            self.hits[name] += ok

    def row(self) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {"n": self.n, "all_correct": 100 * self.all_correct / max(self.n, 1)}
        for name in ATTRIBUTES:
            out[name] = 100 * self.hits[name] / self.stated[name] if self.stated[name] else None
        return out


def degrade(images: torch.Tensor, noise: float = 0.0, blur: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Add Gaussian pixel noise (std `noise`) and/or a Gaussian blur (std `blur` pixels), then clamp."""
    out = images.clone()
    if blur > 0:
        radius = max(1, int(np.ceil(3 * blur)))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(x**2) / (2 * blur**2))
        kernel = (kernel / kernel.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
        padded = torch.nn.functional.pad(out, (radius, radius, radius, radius), mode="replicate")
        out = torch.nn.functional.conv2d(padded, kernel, groups=3)
        out = torch.nn.functional.conv2d(out, kernel.transpose(2, 3), groups=3)
    if noise > 0:
        generator = torch.Generator().manual_seed(seed)
        out = out + noise * torch.randn(out.shape, generator=generator)
    return out.clamp(0, 1)


JUDGE_CONDITIONS = {
    "clean": dict(noise=0.0, blur=0.0),
    "noise 0.05": dict(noise=0.05, blur=0.0),
    "blur 0.7px": dict(noise=0.0, blur=0.7),
    "blur 0.7px + noise 0.05": dict(noise=0.05, blur=0.7),
    "blur 1.0px + noise 0.05": dict(noise=0.05, blur=1.0),
}


def evaluate_judge(n: int = 2000, preset: str = "cpu", seed: int = 0) -> list[dict]:
    """Judge accuracy on `n` test-split renders (half one-object, half two-object) per condition.

    Also a negative control: each image scored against the caption of a different scene; a trusted
    judge must reject almost all of those.
    """
    halves = [ShapesDataset("test", n // 2, preset=preset, seed=seed, n_objects=k) for k in (1, 2)]
    rows = []
    for name, condition in JUDGE_CONDITIONS.items():
        for k, data in zip((1, 2), halves):
            images = degrade(data.images_uint8().float() / 255, seed=seed + k, **condition)
            accuracy = Accuracy()
            for i in range(len(data)):
                _, claim = data.item_claim(i)
                reading = judge.read_image(images[i])
                accuracy.add(judge.score_reading(reading, claim), judge.scene_matches(reading, data.scenes[i]))
            rows.append({"condition": name, "objects": k, **accuracy.row(),
                         "scene_exact": 100 * accuracy.scene_exact / accuracy.n})
    rng = random.Random(seed)
    for k, data in zip((1, 2), halves):
        accuracy = Accuracy()
        images = data.images_uint8()
        for i in range(len(data)):
            other = data.scenes[(i + 1 + rng.randrange(len(data) - 1)) % len(data)]
            _, claim = caption_scene(other, rng)
            accuracy.add(judge.score(images[i].float() / 255, claim))
        rows.append({"condition": "mismatched caption (lower is better)", "objects": k, **accuracy.row(),
                     "scene_exact": None})
    return rows


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A plain-text table with numbers at one decimal."""
    columns = columns or list(rows[0])
    cells = [[("-" if r.get(c) is None else f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]))
              for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _scene_exact(reading: judge.Reading, scene) -> bool:
    """`judge.scene_matches`, treating an unreadable shape or size as a miss (it cannot sort None)."""
    if any(o.shape is None or o.size is None for o in reading.objects):
        return False
    return judge.scene_matches(reading, scene)


def evaluate_dvae(checkpoint: str | None = None, n: int = 2000, preset: str = "cpu", seed: int = 0,
                  batch_size: int = 250) -> dict:
    """Reconstruction quality of a trained dVAE on `n` test-split images (half one-object, half two).

    Per half and overall: PSNR (from the mean squared error), codebook usage and perplexity of the
    argmax codes, and the judge on the reconstructions: `scene_exact` (every attribute of every object
    read back) and `caption_correct` (the item's caption claim holds), next to the judge's figure on
    the original renders for reference. Returns {"checkpoint", "config", "extra", "rows"}.
    """
    from pathlib import Path

    from . import checkpoints
    from .dvae import code_usage, psnr
    from .paths import data_dir

    path = checkpoint or str(data_dir() / f"dvae-{preset}.safetensors")
    if not Path(path).exists():
        raise FileNotFoundError(f"no dVAE checkpoint at {path}: train one with "
                                f"`python -m dalle_lessons train dvae --preset {preset}` or pass --checkpoint")
    model = checkpoints.load(path)
    meta = checkpoints.read_metadata(path)
    if model.config.image_size != ShapesDataset("test", 1, preset=preset, render_images=False).image_size:
        raise ValueError(f"{path} is a {model.config.image_size}px dVAE but preset {preset!r} renders "
                         f"other sizes: pass the matching --preset")
    rows, all_ids, all_recon, all_target = [], [], [], []
    for k in (1, 2):
        data = ShapesDataset("test", n // 2, preset=preset, seed=seed, n_objects=k, cache=True)
        target = data.images_uint8().float() / 255
        ids = torch.cat([model.encode(target[i:i + batch_size]) for i in range(0, len(target), batch_size)])
        recon = torch.cat([model.decode(ids[i:i + batch_size]) for i in range(0, len(ids), batch_size)])
        recon = (recon * 255).round() / 255  # what a saved 8-bit image would hold
        exact = caption = original = 0
        for i in range(len(data)):
            reading = judge.read_image(recon[i])
            exact += _scene_exact(reading, data.scenes[i])
            caption += judge.score_reading(reading, data.item_claim(i)[1]).all_correct
            original += _scene_exact(judge.read_image(target[i]), data.scenes[i])
        used, perplexity = code_usage(ids, model.config.codebook_size)
        rows.append({"objects": str(k), "n": len(data), "psnr_db": psnr(recon, target), "codes_used": used,
                     "perplexity": perplexity, "scene_exact": 100 * exact / len(data),
                     "caption_correct": 100 * caption / len(data),
                     "scene_exact_originals": 100 * original / len(data)})
        all_ids.append(ids), all_recon.append(recon), all_target.append(target)
    used, perplexity = code_usage(torch.cat(all_ids), model.config.codebook_size)
    total = {"objects": "all", "n": sum(r["n"] for r in rows),
             "psnr_db": psnr(torch.cat(all_recon), torch.cat(all_target)), "codes_used": used,
             "perplexity": perplexity}
    for key in ("scene_exact", "caption_correct", "scene_exact_originals"):
        total[key] = sum(r[key] * r["n"] for r in rows) / total["n"]
    rows.append(total)
    shown = Path(path).resolve()
    if shown.is_relative_to(data_dir().parent):  # print data/dvae-cpu.safetensors, not a machine's path
        shown = shown.relative_to(data_dir().parent)
    return {"checkpoint": str(shown), "config": meta["config"], "extra": {k: v for k, v in meta["extra"].items()
                                                                         if k != "history"}, "rows": rows}
