"""Composition: drawing color-shape pairs that training never showed together (issue 11, lesson 07).

The shipped model draws a held-out pair such as "a blue square" right about 1 time in 10, yet it
already *prefers* the right picture: teacher-forced, a real blue square is more likely under "a blue
square" than under the captions it falls back to ("a blue circle", "a red square", ...). So the
capability is there and plain sampling does not reach it. This module measures that (`diagnose`) and
samples with it: **contrastive guidance** divides the caption's distribution by the
distributions of its *fallback captions* — the same caption with one object's shape changed (same
color) or its color changed (same shape) — token by token:

    l = guided(l_caption, l_empty)  +  w_shape * (l_caption - mean l_other_shapes)
                                     +  w_color * (l_caption - mean l_other_colors)

a product of experts in the spirit of composable guidance (Liu et al. 2022), aimed at the two ways a
composition fails: the right color on a familiar shape, or the right shape in a familiar color.
Large weights push toward tokens that are merely *unlikely* under the fallbacks, not likely under the
caption; a plausibility mask (contrastive decoding, Li et al. 2023) keeps only tokens whose probability
under the caption is at least `plausibility` times the best token's, which lets the weights grow.

The same batch also gives, for free, the likelihood of the tokens drawn so far under the caption and
under each fallback, hence by Bayes' rule p(caption | partial image). **Particles** use it: each image
is drawn as P partial images that are resampled every few tokens in proportion to that posterior
(sequential Monte Carlo), so partial images heading for a fallback are dropped and the ones heading for
the caption multiply. Measured in benchmarks/composition.py; see its results for what each one buys.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Sequence

import torch

from . import judge
from .sampling import _pick, check_sampling, guided_logits
from .shapes import COLORS, POSITION_NAMES, SHAPES, Claim, ObjectClaim, parse_caption

# ----------------------------------------------------------------------------- captions

def _object_phrase(obj: ObjectClaim) -> str:
    words = ([obj.size] if obj.size else []) + [obj.color, obj.shape]
    article = "an" if words[0][0] in "aeiou" else "a"
    return f"{article} {' '.join(words)}"


def claim_caption(claim: Claim) -> str:
    """One plain caption that states exactly `claim` ("a small blue square at the top left")."""
    first = _object_phrase(claim.objects[0])
    if len(claim.objects) == 2:
        text = f"{first} {claim.relation or 'and'} {_object_phrase(claim.objects[1])}"
    else:
        obj = claim.objects[0]
        text = first if obj.row is None else f"{first} at the {POSITION_NAMES[(obj.row, obj.col)]}"
    return text + (f" on a {claim.background} background" if claim.background else "")


def fallbacks(claim: Claim) -> tuple[list[Claim], list[Claim]]:
    """The claims a failed composition draws instead: (same colors, one shape changed) and
    (same shapes, one color changed), over every object of the caption."""
    other_shapes, other_colors = [], []
    for k, obj in enumerate(claim.objects):
        def changed(**change) -> Claim:
            objects = list(claim.objects)
            objects[k] = replace(obj, **change)
            return replace(claim, objects=tuple(objects))
        other_shapes += [changed(shape=s) for s in SHAPES if s != obj.shape]
        other_colors += [changed(color=c) for c in COLORS if c != obj.color]
    return other_shapes, other_colors


# ----------------------------------------------------------------------------- sampling

@dataclass(frozen=True)
class _Rows:
    """The big text batch for B captions: row r extends the image of caption owner[r]."""

    text: torch.Tensor  # [R, T]: the B captions, B empty captions, B canonical captions, then fallbacks
    owner: torch.Tensor  # [R] which caption's image each row continues
    shape_rows: torch.Tensor  # [B, S] rows of each caption's other-shape fallbacks (-1: padding)
    color_rows: torch.Tensor  # [B, C] rows of its other-color fallbacks


def _padded(lists: list[list[int]]) -> torch.Tensor:
    width = max(map(len, lists))
    return torch.tensor([r + [-1] * (width - len(r)) for r in lists])


def _rows(tokenizer, model, captions: Sequence[str]) -> _Rows:
    B = len(captions)
    claims = [parse_caption(c) for c in captions]
    texts, owner = [claim_caption(c) for c in claims], list(range(B))
    shape_rows, color_rows = [], []
    for b, claim in enumerate(claims):
        for kind, rows in zip(fallbacks(claim), (shape_rows, color_rows)):
            rows.append([2 * B + len(texts) + i for i in range(len(kind))])
            texts += [claim_caption(c) for c in kind]
            owner += [b] * len(kind)
    ids = torch.cat([tokenizer.encode_batch(list(captions)), model.empty_text(B).cpu(),
                     tokenizer.encode_batch(texts, on_overflow="warn")])
    return _Rows(ids, torch.tensor(list(range(B)) * 2 + owner), _padded(shape_rows), _padded(color_rows))


def _mean_rows(logp: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per caption b, the mean of logp over the rows index[b] (skipping -1 padding): [B, V]."""
    valid = (index >= 0).unsqueeze(-1).to(logp.dtype)
    return (logp[index.clamp(min=0)] * valid).sum(1) / valid.sum(1)


def composed_logits(cond: torch.Tensor, uncond: torch.Tensor, canonical: torch.Tensor, other_shapes: torch.Tensor,
                    other_colors: torch.Tensor, guidance_scale: float, shape_weight: float, color_weight: float,
                    plausibility: float = 0.0, color_expert: float = 0.0, shape_expert: float = 0.0) -> torch.Tensor:
    """Guided log-probabilities pushed away from the fallback captions' (each push is a log-ratio of
    two distributions); with `plausibility` p > 0, tokens whose probability under the caption is below
    p x the best token's are excluded. All inputs are log-probabilities [B, V].

    `color_expert` / `shape_expert`: product-of-experts terms from partial conditions the model has
    seen: the caption's color on any other shape (the mean of `other_shapes`, "something blue") and its
    shape in any other color (`other_colors`, "a square"), each as guidance against the empty caption."""
    out = guided_logits(cond, uncond, guidance_scale)
    out = out + shape_weight * (canonical - other_shapes) + color_weight * (canonical - other_colors)
    if color_expert or shape_expert:
        out = out + color_expert * (other_shapes - uncond) + shape_expert * (other_colors - uncond)
    if plausibility > 0:
        floor = cond.max(-1, keepdim=True).values + torch.log(torch.tensor(plausibility))
        out = out.masked_fill(cond < floor, float("-inf"))
    return out


@torch.no_grad()
def generate_composed(model, tokenizer, captions: Sequence[str], *, shape_weight: float = 0.0,
                      color_weight: float = 0.0, plausibility: float = 0.0, color_expert: float = 0.0,
                      shape_expert: float = 0.0, particles: int = 1, resample_every: int = 8, sharpness: float = 1.0,
                      temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                      guidance_scale: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Image tokens [B, N] for B captions, sampled with the fallback captions in the batch.

    The weights steer each token (see `composed_logits`). With `particles` P > 1, each image is drawn
    as P particles: every `resample_every` tokens the particles of a caption are resampled in
    proportion to posterior ** sharpness, where posterior = p(caption | partial image) among the caption
    and its fallbacks (Bayes' rule on the model's own likelihoods of the tokens drawn so far), and the
    image returned is the particle with the highest final posterior. resample_every=0: no resampling,
    the best of P independent samples by that posterior."""
    check_sampling(temperature, top_k, top_p, guidance_scale)
    if not isinstance(particles, int) or particles < 1:
        raise ValueError(f"particles must be an int >= 1, got {particles!r}")
    repeated = [c for c in captions for _ in range(particles)]
    tokens, posterior = _sample(model, tokenizer, repeated, particles, resample_every, sharpness, generator,
                                dict(temperature=temperature, top_k=top_k, top_p=top_p),
                                dict(guidance_scale=guidance_scale, shape_weight=shape_weight,
                                     color_weight=color_weight, plausibility=plausibility,
                                     color_expert=color_expert, shape_expert=shape_expert))
    if particles == 1:
        return tokens
    best = posterior.view(len(captions), particles).argmax(1)
    return tokens[best + torch.arange(len(captions), device=best.device) * particles]


def _posterior(cum: torch.Tensor, canonical: torch.Tensor, rivals: torch.Tensor) -> torch.Tensor:
    """log p(caption | tokens so far) per caption row, against its fallbacks (uniform prior): [B]."""
    hypotheses = torch.cat([canonical[:, None], rivals], dim=1)
    log_lik = cum[hypotheses.clamp(min=0)].masked_fill(hypotheses < 0, float("-inf"))
    return log_lik[:, 0] - log_lik.logsumexp(1)


def _resample(posterior: torch.Tensor, particles: int, sharpness: float,
              generator: torch.Generator | None) -> torch.Tensor:
    """For each caption row, the row it continues from: drawn within its group of particles with
    probability proportional to posterior ** sharpness. [B] indices."""
    weights = (sharpness * posterior.view(-1, particles)).softmax(1)
    device = generator.device if generator is not None else weights.device
    drawn = torch.multinomial(weights.to(device), particles, replacement=True, generator=generator).to(weights.device)
    return (drawn + torch.arange(weights.shape[0], device=weights.device)[:, None] * particles).reshape(-1)


def _row_sources(rows: _Rows, source: torch.Tensor) -> torch.Tensor:
    """Extend a caption-row resampling `source` [B] to every row of the big batch [R]: each row takes
    the same kind of row (caption, empty, canonical, k-th fallback) of its new caption row."""
    B = source.shape[0]
    R = rows.owner.shape[0]
    r = torch.arange(R, device=source.device)
    owner = rows.owner.to(source.device)
    first_fallback = rows.shape_rows[:, 0].to(source.device)  # each caption's fallbacks are contiguous
    head = (r // B) * B + source[r % B]
    tail = first_fallback[source[owner]] + (r - first_fallback[owner])
    return torch.where(r < 3 * B, head, tail)


def _sample(model, tokenizer, captions: Sequence[str], particles: int, resample_every: int, sharpness: float,
            generator: torch.Generator | None, filters: dict, weights: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampling loop: all rows share one batched KV-cache pass; returns (tokens [B, N], the
    final posterior [B])."""
    rows = _rows(tokenizer, model, captions)
    B, N = len(captions), model.config.image_seq_len
    device = model.image_head.weight.device
    owner, shape_rows, color_rows = rows.owner.to(device), rows.shape_rows.to(device), rows.color_rows.to(device)
    canonical = torch.arange(2 * B, 3 * B, device=device)
    rivals = torch.cat([shape_rows, color_rows], dim=1)
    tokens = torch.zeros(B, N, dtype=torch.long, device=device)
    cum = torch.zeros(owner.shape[0], device=device)  # log p(tokens so far | row's caption)
    was_training = model.training
    model.eval()
    try:
        logits, cache = model.prefill(rows.text.to(device))
        for i in range(N):
            if i:
                logits = model.step(tokens[owner, i - 1], cache)
            logp = logits.float().log_softmax(-1)
            combined = composed_logits(logp[:B], logp[B:2 * B], logp[2 * B:3 * B], _mean_rows(logp, shape_rows),
                                       _mean_rows(logp, color_rows), **weights)
            tokens[:, i] = _pick(combined, generator=generator, **filters)
            cum += logp.gather(1, tokens[owner, i][:, None]).squeeze(1)
            if particles > 1 and resample_every > 0 and (i + 1) % resample_every == 0 and i + 1 < N:
                source = _resample(_posterior(cum, canonical, rivals), particles, sharpness, generator)
                row_source = _row_sources(rows, source)
                tokens, cum = tokens[source], cum[row_source]
                cache.reorder(row_source)
    finally:
        model.train(was_training)
    return tokens, _posterior(cum, canonical, rivals)


# ----------------------------------------------------------------------------- diagnosis

def _pair_scenes(color: str, shape: str, n: int, seed: int = 0) -> list:
    """n one-object scenes of one color-shape pair, with random size, cell and background."""
    import random

    from .shapes import BACKGROUNDS, SIZES, Scene, ShapeObject
    rng = random.Random(f"composition/{color}/{shape}/{seed}")
    return [Scene((ShapeObject(shape, color, rng.choice(SIZES), rng.randrange(3), rng.randrange(3)),),
                  rng.choice(tuple(BACKGROUNDS))) for _ in range(n)]


def _scene_claim(scene) -> Claim:
    o = scene.objects[0]
    return Claim((ObjectClaim(o.shape, o.color, o.size, o.row, o.col),))


@torch.no_grad()
def image_nll(model, tokenizer, captions: Sequence[str], image_ids: torch.Tensor) -> torch.Tensor:
    """Teacher-forced negative log-likelihood (nats, summed over the image tokens) of image_ids[k]
    under captions[k]: [K]."""
    text = tokenizer.encode_batch(list(captions), on_overflow="warn").to(image_ids.device)
    logits = model(text, image_ids).image_logits.float()
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), image_ids, reduction="none").sum(1)


def _object_tokens(scene, image_size: int, grid: int) -> torch.Tensor:
    """[grid * grid] bool: the token cells whose patch holds any pixel of the object."""
    import numpy as np

    from .shapes import BACKGROUNDS, render
    pixels = np.asarray(render(scene, image_size)).astype(int)
    mask = np.abs(pixels - np.array(BACKGROUNDS[scene.background])).sum(-1) > 30
    patch = image_size // grid
    return torch.from_numpy(mask.reshape(grid, patch, grid, patch).any(axis=(1, 3)).reshape(-1))


@torch.no_grad()
def diagnose(pipe, per_pair: int = 32, seed: int = 0) -> list[dict]:
    """Per held-out pair, on `per_pair` rendered images of it:

    - `prefers_true`: % of images whose caption (color, shape, size, position) is more likely than every
      fallback caption (one shape or one color changed); `margin`: mean NLL of the best fallback minus
      the true caption's (nats; > 0 means the model prefers the truth); `runner_up`: the fallback pair
      most often the most likely wrong one.
    - `round_trip`: % of dVAE reconstructions the judge reads back exactly (scene_exact), and the same
      for the pair's seen neighbours (same color, other shapes) as a control.
    - codes: of the tokens that cover the object, the % whose code also appears on seen objects of the
      same color (any shape), of the same shape (other colors), or on neither (`novel_codes`).
    """
    from .evaluate import _scene_exact
    from .shapes import heldout_pairs, to_tensor, render
    size, grid = pipe.native_size, pipe.grid
    encode = lambda scenes: pipe.dvae.encode(torch.stack([to_tensor(render(s, size)) for s in scenes]).to(pipe.device)).flatten(1)
    held = sorted(heldout_pairs())
    seen_codes: dict[tuple[str, str], set] = defaultdict(set)
    for color in COLORS:
        for shape in SHAPES:
            if (color, shape) in held:
                continue
            scenes = _pair_scenes(color, shape, per_pair, seed)
            ids = encode(scenes).cpu()
            for scene, row in zip(scenes, ids):
                seen_codes[(color, shape)].update(row[_object_tokens(scene, size, grid)].tolist())
    out = []
    for color, shape in held:
        scenes = _pair_scenes(color, shape, per_pair, seed)
        ids = encode(scenes)
        claims = [_scene_claim(s) for s in scenes]
        other_shapes, other_colors = zip(*(fallbacks(c) for c in claims))
        alternatives = [list(a) + list(b) for a, b in zip(other_shapes, other_colors)]
        K = len(alternatives[0])
        captions = [claim_caption(c) for c in claims] + [claim_caption(a) for alts in alternatives for a in alts]
        images = torch.cat([ids, ids.repeat_interleave(K, dim=0)])
        nll = torch.cat([image_nll(pipe.transformer, pipe.tokenizer, captions[i:i + 128], images[i:i + 128])
                         for i in range(0, len(captions), 128)]).cpu()
        true, wrong = nll[:per_pair], nll[per_pair:].view(per_pair, K)
        best_wrong, which = wrong.min(1)
        runner = Counter(f"{a[w].objects[0].color} {a[w].objects[0].shape}" for a, w in zip(alternatives, which.tolist()))
        recon = (pipe.dvae.decode(ids.view(-1, grid, grid)).float().cpu() * 255).round() / 255
        exact = sum(_scene_exact(judge.read_image(r), s) for r, s in zip(recon, scenes))
        neighbours = [(color, s) for s in SHAPES if (color, s) not in held]
        control_scenes = [sc for pair in neighbours for sc in _pair_scenes(*pair, per_pair // len(neighbours) + 1, seed)]
        control_recon = (pipe.dvae.decode(encode(control_scenes).view(-1, grid, grid)).float().cpu() * 255).round() / 255
        control = sum(_scene_exact(judge.read_image(r), s) for r, s in zip(control_recon, control_scenes))
        same_color = set().union(*(seen_codes[(color, s)] for s in SHAPES if (color, s) in seen_codes))
        same_shape = set().union(*(seen_codes[(c, shape)] for c in COLORS if (c, shape) in seen_codes))
        codes = [code for scene, row in zip(scenes, ids.cpu()) for code in row[_object_tokens(scene, size, grid)].tolist()]
        pct = lambda hits, total: 100 * hits / max(total, 1)
        out.append({"pair": f"{color} {shape}", "images": per_pair,
                    "prefers_true": pct(int((true < best_wrong).sum()), per_pair),
                    "margin": float((best_wrong - true).mean()), "runner_up": runner.most_common(1)[0][0],
                    "round_trip": pct(exact, per_pair), "round_trip_seen_neighbours": pct(control, len(control_scenes)),
                    "codes_same_color": pct(sum(c in same_color for c in codes), len(codes)),
                    "codes_same_shape": pct(sum(c in same_shape for c in codes), len(codes)),
                    "novel_codes": pct(sum(c not in same_color and c not in same_shape for c in codes), len(codes))})
    return out
