"""The measured figures of the course: each is a function that returns a table (rows of numbers).

`python -m dalle_lessons evaluate judge` prints the judge's accuracy on fixed test renders; later
lessons add the dVAE's reconstructions and the fidelity of generated images.
"""
from __future__ import annotations

import hashlib
import random
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import judge
from .shapes import Claim, ShapesDataset, caption_scene

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


def _check_images(n) -> None:
    """`n` test images, split half one-object, half two-object: an int of at least 2."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n={n!r}: the evaluation needs at least 2 test images (half one-object, half "
                         "two-object); pass an int n >= 2")


def evaluate_judge(n: int = 2000, preset: str = "cpu", seed: int = 0) -> list[dict]:
    """Judge accuracy on `n` test-split renders (half one-object, half two-object) per condition.

    Also a negative control: each image scored against the caption of a different scene; a trusted
    judge must reject almost all of those.
    """
    _check_images(n)
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
                  batch_size: int = 250, device: str = "cpu") -> dict:
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

    _check_images(n)
    path = checkpoint or str(data_dir() / f"dvae-{preset}.safetensors")
    if not Path(path).exists():
        raise FileNotFoundError(f"no dVAE checkpoint at {path}: train one with "
                                f"`python -m dalle_lessons train dvae --preset {preset}` or pass --checkpoint")
    model = checkpoints.load(path)
    meta = checkpoints.read_metadata(path)
    if hasattr(model, "to"):
        model = model.to(device)
    from .dvae import DiscreteVAE
    if not isinstance(model, DiscreteVAE):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a dVAE: pass a dvae-*.safetensors checkpoint")
    if model.config.image_size != ShapesDataset("test", 1, preset=preset, render_images=False).image_size:
        raise ValueError(f"{path} is a {model.config.image_size}px dVAE but preset {preset!r} renders "
                         f"other sizes: pass the matching --preset")
    rows, all_ids, all_recon, all_target = [], [], [], []
    for k in (1, 2):
        data = ShapesDataset("test", n // 2, preset=preset, seed=seed, n_objects=k, cache=True)
        target = data.images_uint8().float() / 255
        ids = torch.cat([model.encode(target[i:i + batch_size].to(device)).cpu()
                         for i in range(0, len(target), batch_size)])
        recon = torch.cat([model.decode(ids[i:i + batch_size].to(device)).float().cpu()
                           for i in range(0, len(ids), batch_size)])
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


# ----------------------------------------------------------------------------- generation fidelity

#: The three caption sets of `evaluate generation`: (what they test, split, objects per scene).
GENERATION_SETS = {
    "a": ("one object, color-shape pair seen in training", "test", 1),
    "b": ("one object, held-out color-shape pair", "heldout", 1),
    "c": ("two objects and a relation", "test", 2),
}
CAPTION_SEED = 0  # the captions are the first items of these datasets, whatever the sampling seed
SWEEP_GUIDANCE = (1.0, 1.5, 2.0, 3.0, 5.0)
#: Changes to the default sampling settings, one at a time.
SWEEP_SAMPLING = {
    "greedy (temperature 0)": {"temperature": 0.0},
    "temperature 0.5": {"temperature": 0.5},
    "temperature 0.7": {"temperature": 0.7},
    "temperature 1.0": {"temperature": 1.0},
    "top_k 16": {"top_k": 16},
    "top_k 64": {"top_k": 64},
    "top_k off": {"top_k": None},
    "top_p 0.9": {"top_p": 0.9},
    "top_p off": {"top_p": None},
}
DIVERSITY_NOTE = ("distinct_images: distinct token grids among the samples of one caption (identical grids "
                  "decode to identical pictures); distinct_readings: distinct scenes the judge reads among "
                  "them (background, and each object's shape, color, size and cell); both averaged over captions")


@dataclass(frozen=True)
class CaptionSet:
    """A fixed list of test captions and the `Claim` of what each one states."""

    name: str
    description: str
    captions: tuple[str, ...]
    claims: tuple[Claim, ...]


def generation_caption_sets(n_captions: int = 100) -> dict[str, CaptionSet]:
    """The captions of sets a, b and c: the first `n_captions` items of fixed datasets (same every call)."""
    if n_captions < 1:
        raise ValueError(f"n_captions must be at least 1, got {n_captions}")
    sets = {}
    for name, (description, split, n_objects) in GENERATION_SETS.items():
        data = ShapesDataset(split, n_captions, seed=CAPTION_SEED, n_objects=n_objects, render_images=False)
        items = [data.item_claim(i) for i in range(n_captions)]
        sets[name] = CaptionSet(name, description, tuple(t for t, _ in items), tuple(c for _, c in items))
    return sets


def generation_settings(sampling: dict | None = None) -> dict:
    """The pipeline's default sampling settings, with `sampling`'s changes applied."""
    from .pipeline import DEFAULT_SAMPLING
    sampling = dict(sampling or {})
    unknown = sorted(set(sampling) - set(DEFAULT_SAMPLING))
    if unknown:
        raise ValueError(f"unknown sampling setting(s) {', '.join(unknown)}: choose from "
                         f"{', '.join(DEFAULT_SAMPLING)}")
    return {**DEFAULT_SAMPLING, **sampling}


def _load_pipeline(pipeline_or_path, device: str | None = None) -> tuple:
    """(pipeline, how to name it in a report) from a TextToImage, a save_pretrained folder or None (the shipped
    model), loaded onto `device` (None: the GPU when there is one); a pipeline in memory stays where it is."""
    from .paths import data_dir
    from .pipeline import TextToImage
    if isinstance(pipeline_or_path, TextToImage):
        return pipeline_or_path, "a pipeline in memory"
    pipe = TextToImage.from_pretrained(pipeline_or_path, device=device)
    if pipeline_or_path is None:
        return pipe, "the shipped model in data/"
    shown = Path(pipeline_or_path).resolve()
    if shown.is_relative_to(data_dir().parent):  # a path in the repository, not a machine's path
        shown = shown.relative_to(data_dir().parent)
    return pipe, str(shown)


@dataclass
class _PreparedSets:
    """Caption sets with their text ids, encoded once for any number of sampling settings."""

    sets: dict[str, CaptionSet]
    text_ids: dict[str, torch.Tensor]
    truncated: int  # captions longer than the model's text_seq_len (kept truncated, as in training)


def _prepare(pipe, n_captions: int) -> _PreparedSets:
    sets = generation_caption_sets(n_captions)
    tokenizer = pipe.tokenizer
    truncated = sum(tokenizer.count_tokens(c) > tokenizer.text_seq_len for s in sets.values() for c in s.captions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # counted above and reported, not warned about per set
        text_ids = {name: tokenizer.encode_batch(list(s.captions), on_overflow="warn") for name, s in sets.items()}
    return _PreparedSets(sets, text_ids, truncated)


def _batch_seed(seed: int, set_name: str, batch: int) -> int:
    """An independent, machine-independent seed for each batch of each set."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{set_name}/{batch}".encode()).digest()[:7], "big")


def _generate(pipe, text_ids: torch.Tensor, samples: int, seed: int, set_name: str, sampling: dict,
              batch_size: int, compose: dict | None = None, captions_of: Sequence[str] = ()) -> torch.Tensor:
    """Image tokens [P * samples, N], caption-major, in batches of about `batch_size` images.
    `compose`: sample with `composition.generate_composed` and these weights (needs `captions_of`)."""
    from .sampling import generate_image_tokens
    if sampling["temperature"] == 0 and samples > 1:  # greedy: every sample is the same, draw one
        return _generate(pipe, text_ids, 1, seed, set_name, sampling, batch_size, compose,
                         captions_of).repeat_interleave(samples, dim=0)
    device = pipe.device
    per_batch = max(1, batch_size // samples)
    out = []
    for batch, start in enumerate(range(0, len(text_ids), per_batch)):
        generator = torch.Generator(device=device).manual_seed(_batch_seed(seed, set_name, batch))
        if compose is not None:  # contrastive guidance against each caption's fallbacks (composition.py)
            from .composition import generate_composed
            captions = [c for c in captions_of[start:start + per_batch] for _ in range(samples)]
            out.append(generate_composed(pipe.transformer, pipe.tokenizer, captions, generator=generator,
                                         **sampling, **compose).cpu())
            continue
        text = text_ids[start:start + per_batch].repeat_interleave(samples, dim=0).to(device)
        out.append(generate_image_tokens(pipe.transformer, text, generator=generator, **sampling).cpu())
    return torch.cat(out)


def _reading_key(reading: judge.Reading) -> tuple:
    return (reading.background,) + tuple((o.shape, o.color, o.size, o.row, o.col) for o in reading.objects)


def _decode_8bit(pipe, ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Token grids [B, N] -> images [B, 3, H, W] on the CPU, rounded to what a saved 8-bit image would hold."""
    images = torch.cat([pipe.decode(ids[i:i + batch_size]).float().cpu() for i in range(0, len(ids), batch_size)])
    return (images * 255).round() / 255


def _score_set(pipe, ids: torch.Tensor, caption_set: CaptionSet, samples: int, batch_size: int,
               images: torch.Tensor | None = None) -> dict:
    """Decode (unless `images` are given), judge against each caption's claim, and count distinct samples per caption."""
    images = _decode_8bit(pipe, ids, batch_size) if images is None else images
    accuracy = Accuracy()
    distinct_images = distinct_readings = 0
    pairs: dict[str, dict] = {}
    tallies: dict[str, list] = defaultdict(list)
    for p, claim in enumerate(caption_set.claims):
        rows = range(p * samples, (p + 1) * samples)
        readings = [judge.read_image(images[j]) for j in rows]
        for reading in readings:
            result = judge.score_reading(reading, claim)
            accuracy.add(result)
            _tally_asked_drawn(tallies, result)
            if len(claim.objects) == 1:
                _count_pair(pairs, claim, reading, result.all_correct)
        distinct_images += len({tuple(ids[j].tolist()) for j in rows})
        distinct_readings += len({_reading_key(r) for r in readings})
    row = accuracy.row()
    del row["n"]
    n = len(caption_set.claims)
    out = {"set": caption_set.name, "description": caption_set.description, "captions": n,
           "images": accuracy.n, **row, "distinct_images": distinct_images / n,
           "distinct_readings": distinct_readings / n}
    out["confusion"] = {name: _confusion(name, pairs_) for name, pairs_ in tallies.items()}
    if caption_set.name == "b":  # held-out pairs: how each one fares, and what is drawn instead
        out["pairs"] = {name: {**pair, "all_correct": 100 * pair["all_correct"] / pair["images"],
                               "drawn": dict(pair["drawn"].most_common())} for name, pair in sorted(pairs.items())}
    return out


def _confusion_labels() -> dict[str, list]:
    """The labels of each confusion matrix (lesson 09); a drawn value outside them lands in the last column."""
    from .shapes import COLORS, POSITION_NAMES, RELATIONS, SHAPES, SIZES
    return {"count": [1, 2], "color": list(COLORS), "shape": list(SHAPES), "size": list(SIZES),
            "position": list(POSITION_NAMES.values()), "relation": list(RELATIONS)}


def _tally_asked_drawn(tallies: dict, result: judge.Score) -> None:
    """Record (asked, drawn) per attribute: the object count for every caption; color, shape, and the
    size and cell where stated, for one-object captions whose image holds exactly one object (None is
    drawn when it holds another number: the attribute cannot be read off one object). For a caption with a
    relation: the relation drawn between the objects matched to the stated two (`_drawn_relation`)."""
    from .shapes import POSITION_NAMES
    claim, reading = result.claim, result.reading
    tallies["count"].append((len(claim.objects), len(reading.objects)))
    if claim.relation is not None:
        tallies["relation"].append((claim.relation, _drawn_relation(result)))
    if len(claim.objects) != 1:
        return
    asked = claim.objects[0]
    drawn = reading.objects[0] if len(reading.objects) == 1 else None
    if asked.color is not None:
        tallies["color"].append((asked.color, drawn and drawn.color))
    tallies["shape"].append((asked.shape, drawn and drawn.shape))
    if asked.size is not None:
        tallies["size"].append((asked.size, drawn and drawn.size))
    if asked.row is not None:
        tallies["position"].append((POSITION_NAMES[(asked.row, asked.col)],
                                    drawn and POSITION_NAMES[(drawn.row, drawn.col)]))


def _drawn_relation(result: judge.Score) -> str | None:
    """The relation between the drawn objects the judge matched to the caption's two: the asked one if it
    holds, else the first that does in RELATIONS order; None when fewer than two objects were drawn."""
    from .shapes import RELATIONS, relation_holds
    if len(result.assignment) != 2:
        return None
    a, b = (result.reading.objects[k] for k in result.assignment)
    holding = [r for r in RELATIONS if relation_holds((a.row, a.col), r, (b.row, b.col))]
    return result.claim.relation if result.claim.relation in holding else next(iter(holding), None)


def _confusion(name: str, asked_drawn: list) -> dict:
    """{"labels", "counts"}: counts[i][j] images asked labels[i] and drawn labels[j]; the extra last
    column counts images where the attribute was drawn otherwise (no single object, unreadable)."""
    from .metrics import confusion_matrix
    labels = _confusion_labels()[name]
    asked, drawn = zip(*asked_drawn)
    return {"labels": labels, "counts": confusion_matrix(asked, drawn, labels).tolist()}


def _count_pair(pairs: dict, claim, reading: judge.Reading, correct: bool) -> None:
    """Tally one image of a one-object caption under its color-shape pair: right or not, and the
    color-shape pair(s) the judge reads ("nothing" for an empty picture)."""
    obj = claim.objects[0]
    pair = pairs.setdefault(f"{obj.color} {obj.shape}", {"images": 0, "all_correct": 0, "drawn": Counter()})
    pair["images"] += 1
    pair["all_correct"] += bool(correct)
    drawn = " + ".join(sorted(f"{o.color} {o.shape}" for o in reading.objects)) or "nothing"
    pair["drawn"][drawn] += 1


def _evaluate_prepared(pipe, prepared: _PreparedSets, samples: int, seed: int, sampling: dict,
                       batch_size: int, rerank: int = 1, compose: dict | None = None) -> list[dict]:
    from .rerank_eval import generate_reranked
    rows = []
    for name, caption_set in prepared.sets.items():
        if rerank > 1:  # each image: CLIP's best of `rerank` candidates (lesson 08)
            ids = generate_reranked(pipe, prepared.text_ids[name], samples, rerank, seed, name, sampling, batch_size)
        else:
            ids = _generate(pipe, prepared.text_ids[name], samples, seed, name, sampling, batch_size, compose,
                            caption_set.captions)
        rows.append(_score_set(pipe, ids, caption_set, samples, batch_size))
    return rows


def _check_counts(samples: int, batch_size: int) -> None:
    if samples < 1:
        raise ValueError(f"samples must be at least 1 image per caption, got {samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


def evaluate_generation(pipeline_or_path=None, n_captions: int = 100, samples: int = 4, seed: int = 0,
                        sampling: dict | None = None, batch_size: int = 128, rerank: int = 1,
                        compose: dict | None = None) -> dict:
    """How faithfully generated images follow fixed test captions, scored by the judge.

    Three sets of `n_captions` captions (see `GENERATION_SETS`): (a) one object whose color-shape
    pair was seen in training, (b) one object with a held-out pair, (c) two objects and a relation.
    Each caption gets `samples` images, drawn in batches of about `batch_size` images with seeds
    derived from `seed` (the numbers depend on both). Per set: `all_correct` (every stated
    attribute right, and exactly the stated number of objects), per-attribute accuracy over the
    captions that state it (None where none does), and diversity (see `DIVERSITY_NOTE`).

    `pipeline_or_path`: a TextToImage, a folder written by `save_pretrained`, or None for the
    shipped model. `sampling`: changes to the pipeline's DEFAULT_SAMPLING. `rerank` N > 1: each image
    is the one CLIP scores highest among N samples (the pipeline's reranker).
    """
    from .rerank import check_rerank
    _check_counts(samples, batch_size)
    rerank = check_rerank(rerank, samples)
    settings = generation_settings(sampling)
    pipe, shown = _load_pipeline(pipeline_or_path)
    prepared = _prepare(pipe, n_captions)
    rows = _evaluate_prepared(pipe, prepared, samples, seed, settings, batch_size, rerank, compose)
    return {"checkpoint": shown, "sampling": settings, "rerank": rerank, "compose": compose, "n_captions": n_captions, "samples": samples,
            "seed": seed, "batch_size": batch_size, "caption_seed": CAPTION_SEED,
            "truncated_captions": prepared.truncated, "diversity": DIVERSITY_NOTE, "rows": rows}


def _sweep_summary(rows: list[dict]) -> dict:
    """One sweep row's numbers: all-correct % per set, and distinct readings over all captions."""
    summary = {row["set"]: row["all_correct"] for row in rows}
    total = sum(row["captions"] for row in rows)
    summary["distinct_readings"] = sum(row["distinct_readings"] * row["captions"] for row in rows) / total
    return summary


def _settings_key(settings: dict) -> tuple:
    return tuple(sorted(settings.items()))


def generation_sweep(pipeline_or_path=None, n_captions: int = 100, samples: int = 4, seed: int = 0,
                     sampling: dict | None = None, guidance_scales=SWEEP_GUIDANCE,
                     variations: dict[str, dict] | None = None, batch_size: int = 128,
                     baseline: dict | None = None) -> dict:
    """All-correct % of sets a, b and c as guidance and the sampling settings change.

    `guidance` rows vary the guidance scale alone; `sampling` rows apply one change from
    `variations` (default `SWEEP_SAMPLING`) to the default settings. Every row uses the same
    captions and seeds, so differences come from the settings only. `distinct_readings` is the mean
    over all captions of the three sets. `baseline`: a report of `evaluate_generation` with the
    same captions, samples, seed and batch size, whose numbers are reused for its settings' row.
    """
    _check_counts(samples, batch_size)
    base = generation_settings(sampling)
    variations = SWEEP_SAMPLING if variations is None else variations
    pipe, shown = _load_pipeline(pipeline_or_path)
    prepared = _prepare(pipe, n_captions)
    done: dict[tuple, dict] = {}
    if baseline is not None:
        same = {"n_captions": n_captions, "samples": samples, "seed": seed, "batch_size": batch_size}
        if any(baseline.get(k) != v for k, v in same.items()):
            raise ValueError(f"the baseline report was measured with other {', '.join(same)} than the sweep: "
                             "pass the same values, or no baseline")
        done[_settings_key(baseline["sampling"])] = _sweep_summary(baseline["rows"])

    def run(settings: dict) -> dict:
        key = _settings_key(settings)
        if key not in done:  # a variation equal to another (or to the defaults) is measured once
            done[key] = _sweep_summary(_evaluate_prepared(pipe, prepared, samples, seed, settings, batch_size))
        return {**settings, "default": settings == base, **done[key]}

    guidance = [run(generation_settings({**base, "guidance_scale": float(g)})) for g in guidance_scales]
    changed = [{"variation": name, **run(generation_settings({**base, **change}))}
               for name, change in variations.items()]
    return {"checkpoint": shown, "base_sampling": base, "n_captions": n_captions, "samples": samples,
            "seed": seed, "batch_size": batch_size, "guidance": guidance, "sampling": changed}
