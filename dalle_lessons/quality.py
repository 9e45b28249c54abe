"""Lesson 09's quality table: how close generated images come to real ones, and what closeness costs.

    python -m dalle_lessons evaluate quality [--n 500] [--samples 4] [--seed 0] [--json]

Each row is a set of images compared with a reference set A of `n` real test images by a Fréchet
distance on the course's CLIP image embeddings (`metrics.clip_frechet`: FID's formula on the encoder
that fits this world, x100; not an FID). The rows:

- real (floor): `n` other real test images (set B). Two samples of the same distribution still differ;
  no set of `n` images can be expected to beat this.
- real, same captions: `samples` real test scenes for each caption of the generated rows, drawn among
  the scenes the caption truly describes: what a perfect generator would draw, and the floor for the
  generated rows, whose n images come from only n // samples captions (fewer independent scenes than B,
  which alone raises the distance well above the first floor).
- real, blurred 1 px: set B blurred, a yardstick for what a given distance looks like.
- dVAE reconstructions: set B encoded to tokens and decoded. Every generated image passes through the
  same decoder, so this is the ceiling that compression sets. The paper saw the same limit: it compared
  FIDs on MS-COCO with real and generated images both blurred, and DALL·E's standing rose with the blur
  radius, as the blur hid the fine detail that its dVAE discards.
- generated: `samples` images for each of the first n // samples captions of set B, under the shipped
  sampling default, a few temperatures and guidance scales, and CLIP reranking of N candidates.

Every generated row also has the judge's all-correct % against each caption's `Claim` and two
diversity counts per caption (`evaluate.DIVERSITY_NOTE`), so the trade-off can be read off one table:
sharper sampling is more often right and less varied, and the distance shows which of the two matters
more for looking like the real thing.
"""
from __future__ import annotations

import random
import time
import warnings

import torch

from . import judge
from .clip_data import claim_holds
from .evaluate import (DIVERSITY_NOTE, CaptionSet, _check_counts, _decode_8bit, _generate, _load_pipeline,
                       _reading_key, _score_set, degrade, generation_settings)
from .metrics import clip_frechet
from .rerank_eval import generate_reranked

#: Rows of generated images: changes to the pipeline's DEFAULT_SAMPLING, one at a time.
QUALITY_SETTINGS: dict[str, dict] = {
    "default": {},
    **{f"temperature {t}": {"temperature": t} for t in (0.3, 0.5, 1.0, 1.3)},
    **{f"guidance {g}": {"guidance_scale": g} for g in (1.0, 3.0, 5.0)},
}
QUALITY_RERANK = (4, 8)  # CLIP's best of N candidates per image, at the default sampling
DATA_SEED = 0  # sets A and B are fixed whatever the sampling seed: only the generated rows change with it
SET_NAME = "quality"  # seeds the sampling streams (evaluate._batch_seed); the same for every row
CALIBRATION_BLUR = 1.0  # pixels (std of the Gaussian) of the blurred-real yardstick row
FRECHET_NOTE = ("frechet: Fréchet distance x100 between Gaussians fitted to the course CLIP's image embeddings "
                "of each set and of A (real test images); lower is closer to real; not an FID (not Inception "
                "features), comparable only within the course and at the same n")


def _check_int(name: str, value, least: int, fix: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"{name}={value!r}: {fix}")
    return value


def check_quality_args(n, samples, seed, settings, rerank, batch_size) -> tuple[dict[str, dict], tuple[int, ...]]:
    """Refuse what `evaluate_quality` cannot run, before any model loads; returns (full settings, rerank Ns)."""
    from .rerank import check_rerank
    from .sampling import check_sampling, check_seed
    _check_int("n", n, 2, "each of the two real sets needs at least 2 images (a covariance); pass n >= 2 "
                          "(the default is 500)")
    _check_int("samples", samples, 1, "draw at least 1 image per caption (the default is 4)")
    if samples > n:
        raise ValueError(f"samples={samples} is more than n={n}: the generated rows hold n images, samples per "
                         "caption, so samples must be at most n")
    _check_counts(samples, batch_size)
    check_seed(seed)
    settings = QUALITY_SETTINGS if settings is None else settings
    if not isinstance(settings, dict):
        raise TypeError(f"settings must be a dict of row name -> sampling changes, e.g. {{'temperature 1.0': "
                        f"{{'temperature': 1.0}}}}, got {type(settings).__name__}")
    full = {}
    for name, change in settings.items():
        if not isinstance(change, dict):
            raise TypeError(f"settings[{name!r}] must be a dict of sampling changes, got {type(change).__name__}")
        try:
            full[str(name)] = generation_settings(change)  # unknown names: one line listing the known ones
            check_sampling(**full[str(name)])
        except (ValueError, TypeError) as error:
            raise type(error)(f"settings[{name!r}]: {error}") from None
    if isinstance(rerank, (str, bytes)) or not hasattr(rerank, "__iter__"):
        raise TypeError(f"rerank must be a tuple of candidate counts N >= 2, e.g. (4, 8), or () for no "
                        f"reranking rows; got {rerank!r}")
    rerank = tuple(rerank)
    for r in rerank:
        check_rerank(r, samples)
        if r == 1:
            raise ValueError("rerank N=1 is the default row (no reranking): give N >= 2, e.g. (4, 8)")
    if len(set(rerank)) != len(rerank):
        raise ValueError(f"rerank={rerank} names an N twice: give each N once")
    return full, rerank


def _preset_for(image_size: int) -> str:
    """The preset whose Shapes renders have the pipeline's native size (real and generated must match)."""
    from .config import PRESETS
    for name, preset in PRESETS.items():
        if preset.image_size == image_size:
            return name
    raise ValueError(f"no preset renders {image_size}x{image_size} Shapes images, the size this pipeline draws: "
                     f"use a pipeline of one of the presets {', '.join(PRESETS)}")


def reference_sets(n: int, image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor, CaptionSet, int]:
    """(A, B, B's captions, shared): items 0..n-1 and n..2n-1 of the test split (data seed DATA_SEED), as
    floats in [0, 1]; `shared` counts the items of B whose very scene is also in A.

    A and B are independent draws from the test split, never the same items, yet some scenes recur: the
    split holds only 120 distinct one-object scenes (of 1,116 outside the held-out pairs), so two draws of
    a few hundred must share many. Dropping the shared ones from B would starve it of one-object scenes
    and make it another distribution, no longer a floor.
    """
    from .shapes import ShapesDataset
    data = ShapesDataset("test", 2 * n, preset=_preset_for(image_size), seed=DATA_SEED)
    images = data.images_uint8().float() / 255
    items = [data.item_claim(i) for i in range(n, 2 * n)]
    captions = CaptionSet("B", "test items n..2n-1", tuple(t for t, _ in items), tuple(c for _, c in items))
    in_a = {scene.key() for scene in data.scenes[:n]}
    shared = sum(scene.key() in in_a for scene in data.scenes[n:])
    return images[:n], images[n:], captions, shared


def scene_for(claim, rng: random.Random):
    """A random test-split scene that `claim` truly describes: what it states, as stated; the rest (size, cell,
    background, the cells of a relation) drawn uniformly, as `shapes.random_scene` draws them."""
    from .shapes import BACKGROUNDS, SIZES, Scene, ShapeObject, split_of
    cells = [(r, c) for r in range(3) for c in range(3)]
    for _ in range(100_000):  # a claim holds for at least its own test scene: about 1 draw in 10 to 100 fits
        drawn = rng.sample(cells, len(claim.objects))
        objects = tuple(ShapeObject(o.shape, o.color, o.size or rng.choice(SIZES),
                                    *((o.row, o.col) if o.row is not None else cell))
                        for o, cell in zip(claim.objects, drawn))
        if len({(o.row, o.col) for o in objects}) < len(objects):
            continue
        scene = Scene(objects, claim.background or rng.choice(tuple(BACKGROUNDS)))
        if claim_holds(claim, scene) and split_of(scene) == "test":
            return scene
    raise ValueError(f"no test-split scene fits the claim {claim}")


def same_caption_scenes(claims, samples: int) -> list:
    """`samples` scenes per claim, claim-major, each drawn by `scene_for` with a seed of its own."""
    return [scene_for(claim, random.Random(f"quality/{DATA_SEED}/{p}/{k}"))
            for p, claim in enumerate(claims) for k in range(samples)]


def _all_correct(images: torch.Tensor, claims) -> float:
    """The judge's all-correct % of images[i] against claims[i] (one image per caption)."""
    return 100 * sum(judge.score(image, claim).all_correct for image, claim in zip(images, claims)) / len(claims)


def _same_captions_row(asked: CaptionSet, samples: int, image_size: int) -> tuple[torch.Tensor, dict]:
    """Renders of `same_caption_scenes`, judged like generated images: all-correct and distinct scenes per caption."""
    from .shapes import render, to_tensor
    scenes = same_caption_scenes(asked.claims, samples)
    images = torch.stack([to_tensor(render(scene, image_size)) for scene in scenes])
    readings = [judge.read_image(image) for image in images]
    claims = [claim for claim in asked.claims for _ in range(samples)]
    groups = range(0, len(scenes), samples)
    scored = {"all_correct": 100 * sum(judge.score_reading(r, c).all_correct for r, c in zip(readings, claims))
              / len(claims),
              "distinct_readings": sum(len({_reading_key(r) for r in readings[g:g + samples]}) for g in groups)
              / len(groups),
              "distinct_images": sum(len({s.key() for s in scenes[g:g + samples]}) for g in groups) / len(groups)}
    return images, scored


def evaluate_quality(pipeline_or_path=None, n: int = 500, samples: int = 4, seed: int = 0,
                     settings: dict[str, dict] | None = None, rerank=QUALITY_RERANK, batch_size: int = 128,
                     device: str | None = None) -> dict:
    """The quality table of lesson 09 (see the module docstring): one row per set of images.

    `pipeline_or_path`: a TextToImage (with a CLIP reranker), a save_pretrained folder, or None for the
    shipped model. `settings`: row name -> changes to DEFAULT_SAMPLING (default QUALITY_SETTINGS);
    `rerank`: the N of the reranked rows, at the default sampling. Generated images are drawn in batches
    of about `batch_size` with seeds derived from `seed` (the numbers depend on both). JSON-serialisable.
    """
    start = time.perf_counter()
    full, rerank = check_quality_args(n, samples, seed, settings, rerank, batch_size)
    pipe, shown = _load_pipeline(pipeline_or_path, device)
    clip = pipe.reranker  # the lesson-08 CLIP; a pipeline without one fails here, naming set_reranker
    reference, real, captions, shared = reference_sets(n, pipe.native_size)
    prompts = n // samples
    asked = CaptionSet(SET_NAME, f"the first {prompts} captions of B", captions.captions[:prompts],
                       captions.claims[:prompts])
    rows = []

    def add(setting: str, kind: str, images: torch.Tensor, began: float, sampling: dict | None = None,
            rerank_n: int | None = None, scored: dict | None = None) -> None:
        """One row; without `scored`, the images are B's or made from B's: judged one per caption of B."""
        judged = scored or {"all_correct": _all_correct(images, captions.claims)}
        rows.append({"setting": setting, "kind": kind, "sampling": sampling,
                     "temperature": None if sampling is None else sampling["temperature"],
                     "guidance": None if sampling is None else sampling["guidance_scale"],
                     "rerank": rerank_n, "images": len(images),
                     "frechet": clip_frechet(clip, reference, images), "all_correct": judged["all_correct"],
                     "distinct_readings": judged.get("distinct_readings"),
                     "distinct_images": judged.get("distinct_images"),
                     "seconds": round(time.perf_counter() - began, 2)})

    began = time.perf_counter()
    add("real (floor)", "real", real, began)
    began = time.perf_counter()
    add(f"real, blurred {CALIBRATION_BLUR:g} px", "real", degrade(real, blur=CALIBRATION_BLUR), began)
    began = time.perf_counter()
    ids = torch.cat([pipe.dvae.encode(real[i:i + batch_size].to(pipe.device)).flatten(1).cpu()
                     for i in range(0, n, batch_size)])
    add("dVAE reconstructions", "reconstruction", _decode_8bit(pipe, ids, batch_size), began)
    began = time.perf_counter()
    images, scored = _same_captions_row(asked, samples, pipe.native_size)
    add("real, same captions", "real", images, began, scored=scored)

    tokenizer = pipe.tokenizer
    truncated = sum(tokenizer.count_tokens(c) > tokenizer.text_seq_len for c in asked.captions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # counted above and reported, as in training they are kept truncated
        text_ids = tokenizer.encode_batch(list(asked.captions), on_overflow="warn")
    default = generation_settings()
    jobs = [(name, sampling, 1) for name, sampling in full.items()]
    jobs += [(f"rerank {r}", default, r) for r in rerank]
    for name, sampling, r in jobs:
        began = time.perf_counter()
        if r > 1:
            ids = generate_reranked(pipe, text_ids, samples, r, seed, SET_NAME, sampling, batch_size)
        else:
            ids = _generate(pipe, text_ids, samples, seed, SET_NAME, sampling, batch_size)
        images = _decode_8bit(pipe, ids, batch_size)
        add(name, "generated", images, began, sampling, r, _score_set(pipe, ids, asked, samples, batch_size, images))

    return {"checkpoint": shown, "n": n, "samples": samples, "captions": prompts, "seed": seed,
            "data_seed": DATA_SEED, "batch_size": batch_size, "default_sampling": default,
            "settings": full, "rerank": list(rerank), "shared_scenes": shared,
            "truncated_captions": truncated, "frechet_note": FRECHET_NOTE, "diversity": DIVERSITY_NOTE,
            "rows": rows, "seconds": round(time.perf_counter() - start, 1)}

