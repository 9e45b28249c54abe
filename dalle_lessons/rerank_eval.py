"""What reranking buys, measured by the judge: best of N samples per caption, N = 1, 2, 4, ... 64.

    python -m dalle_lessons evaluate rerank [--captions 100] [--max-rerank 64] [--json]
    python -m dalle_lessons evaluate generation --rerank 16

Three choosers side by side, on the captions of `evaluate generation` (sets a, b, c):
- random: one sample, as without reranking (the mean over all samples: the expected all-correct);
- clip: the sample the shipped CLIP scores highest among the first N;
- oracle: the judge itself picks (a caption counts if any of the first N is all-correct), the most
  any reranker could reach with these samples.
The samples are drawn once (max N per caption) and every N uses the first N of them, so the curve
is nested and the choosers compare the very same images.
"""
from __future__ import annotations

import time

import torch

from . import judge
from .evaluate import _generate, _prepare, generation_settings
from .rerank import check_rerank, rerank_candidates


def curve_points(max_n: int) -> list[int]:
    """1, 2, 4, ... up to max_n (and max_n itself)."""
    points, n = [], 1
    while n < max_n:
        points.append(n)
        n *= 2
    return points + [max_n]


def generate_reranked(pipe, text_ids: torch.Tensor, samples: int, rerank: int, seed: int, set_name: str,
                      sampling: dict, batch_size: int) -> torch.Tensor:
    """Like `evaluate._generate`, but each of the `samples` images is CLIP's best of `rerank` candidates."""
    candidates = _generate(pipe, text_ids, samples * rerank, seed, set_name, sampling, batch_size)
    pixels = torch.cat([pipe.decode(candidates[i:i + batch_size]).float() for i in range(0, len(candidates), batch_size)])
    rows = text_ids.repeat_interleave(samples * rerank, dim=0)
    return rerank_candidates(pipe.reranker, pixels, rows, per_group=rerank).chosen(candidates)


def _judged(pipe, ids: torch.Tensor, claims, per_caption: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded 8-bit images [P * k, 3, H, W] and whether each is all-correct [P, k]."""
    images = torch.cat([pipe.decode(ids[i:i + batch_size]).float().cpu() for i in range(0, len(ids), batch_size)])
    images = (images * 255).round() / 255  # what a saved 8-bit image would hold
    right = torch.tensor([[judge.score_reading(judge.read_image(images[p * per_caption + j]), claim).all_correct
                           for j in range(per_caption)] for p, claim in enumerate(claims)])
    return images, right


def seconds_per_caption(pipe, caption: str, rerank: int, sampling: dict, repeats: int = 2) -> float:
    """Wall time of `generate_ranked(caption, n=1, rerank=N)`: sampling, decoding and one CLIP pass."""
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        pipe.generate_ranked(caption, n=1, rerank=rerank, seed=r, **sampling)
        times.append(time.perf_counter() - start)
    return min(times)


def rerank_curve(pipe, n_captions: int = 100, max_n: int = 64, seed: int = 0, sampling: dict | None = None,
                 batch_size: int = 128, timed: tuple[int, ...] = (16, 64)) -> dict:
    """All-correct % of sets a, b, c for N = 1, 2, 4, ... max_n under the random, CLIP and oracle choosers."""
    max_n = check_rerank(max_n)
    settings = generation_settings(sampling)
    prepared = _prepare(pipe, n_captions)
    points = curve_points(max_n)
    table = {n: {"N": n} for n in points}
    recovered = {}
    for name, caption_set in prepared.sets.items():
        text_ids = prepared.text_ids[name]
        ids = _generate(pipe, text_ids, max_n, seed, name, settings, batch_size)
        images, right = _judged(pipe, ids, caption_set.claims, max_n, batch_size)
        scores = rerank_candidates(pipe.reranker, images, text_ids.repeat_interleave(max_n, dim=0),
                                   per_group=max_n).scores  # [P, max_n]
        random = 100 * right.float().mean().item()
        for n in points:
            pick = scores[:, :n].argmax(1)
            clip = 100 * right.gather(1, pick[:, None]).float().mean().item()
            oracle = 100 * right[:, :n].any(1).float().mean().item()
            table[n].update({f"{name} random": random, f"{name} clip": clip, f"{name} oracle": oracle})
            if n == 16:
                gain = oracle - random
                recovered[name] = 100 * (clip - random) / gain if gain > 0 else None
    caption = prepared.sets["c"].captions[0]
    timing = {n: seconds_per_caption(pipe, caption, n, settings) for n in timed if n <= max_n}
    return {"sampling": settings, "n_captions": n_captions, "max_n": max_n, "seed": seed,
            "rows": list(table.values()), "clip_share_of_oracle_gain_at_16": recovered,
            "seconds_per_caption": timing, "timed_caption": caption}
