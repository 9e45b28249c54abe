"""Reranking: draw N samples per image, let CLIP score each against the caption, keep the best.

This is how DALL·E chose what to show: 512 samples per caption, reranked by CLIP. Here it is batched:
the N candidates are sampled together, decoded together and scored in one CLIP forward pass.

    ranked = rerank_candidates(clip, images, text_ids, per_group=16)
    ranked.best          # index of the chosen candidate in each group of 16
    ranked.scores        # [groups, 16] cosine similarities, for the caller to inspect
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from .clip import ClipModel

#: The most candidates per image. The paper reranked 512; at tens of milliseconds per sample on a
#: CPU, 128 already takes seconds per image, and lesson 08's curve flattens well before it.
MAX_RERANK = 128
#: The most candidates one call may sample in all (images x rerank), so a call stays seconds, not hours.
MAX_CANDIDATES = 1024


def check_rerank(rerank, n_images: int = 1) -> int:
    """`rerank` as an int in [1, MAX_RERANK], with n_images * rerank <= MAX_CANDIDATES; else a clear error."""
    if not isinstance(rerank, numbers.Integral) or isinstance(rerank, bool):
        raise TypeError(f"rerank must be an int (candidates sampled per image), got {type(rerank).__name__} "
                        f"{rerank!r}")
    if rerank < 1:
        raise ValueError(f"rerank={rerank}: it is the number of candidates per image, at least 1 (1: no reranking)")
    if rerank > MAX_RERANK:
        raise ValueError(f"rerank={rerank} is more than the limit of {MAX_RERANK} candidates per image: "
                         f"ask for {MAX_RERANK} or fewer")
    if n_images * rerank > MAX_CANDIDATES:
        raise ValueError(f"{n_images} images x rerank {rerank} = {n_images * rerank} candidates in one call, more "
                         f"than the limit of {MAX_CANDIDATES}: ask for fewer images or a smaller rerank")
    return int(rerank)


def clip_mismatches(clip: ClipModel, clip_tokenizer: str | None, tokenizer_fingerprint: str,
                    text_seq_len: int, image_size: int) -> list[str]:
    """What keeps a CLIP checkpoint from scoring a pipeline's images and captions (empty when it fits)."""
    c = clip.config
    problems = []
    if c.image_size != image_size:
        problems.append(f"CLIP reads {c.image_size}x{c.image_size} images but the pipeline draws "
                        f"{image_size}x{image_size}")
    if c.text_seq_len != text_seq_len:
        problems.append(f"CLIP reads {c.text_seq_len} text positions but the pipeline's tokenizer pads to {text_seq_len}")
    if clip_tokenizer is not None and clip_tokenizer != tokenizer_fingerprint:
        problems.append(f"CLIP was trained with another tokenizer (fingerprint {clip_tokenizer}, the pipeline's "
                        f"is {tokenizer_fingerprint}): its ids would mean other words")
    return problems


@dataclass
class Ranked:
    """The candidates' CLIP scores, grouped, and which one of each group wins."""

    scores: torch.Tensor  # [groups, per_group] cosine similarity of each candidate to its caption
    best: torch.Tensor  # [groups] index of the highest-scoring candidate

    def chosen(self, candidates: torch.Tensor) -> torch.Tensor:
        """Pick the winners out of `candidates` [groups * per_group, ...] (group-major)."""
        groups, per_group = self.scores.shape
        grouped = candidates.view(groups, per_group, *candidates.shape[1:])
        return grouped[torch.arange(groups, device=grouped.device), self.best.to(grouped.device)]

    @property
    def best_scores(self) -> torch.Tensor:
        return self.scores.gather(1, self.best[:, None])[:, 0]


@torch.no_grad()
def rerank_candidates(clip: ClipModel, images: torch.Tensor, text_ids: torch.Tensor, per_group: int,
                      batch_size: int = 512) -> Ranked:
    """Score `images` [G * per_group, 3, H, W] against their caption ids (same rows) and pick each group's best.

    Ties go to the earliest candidate, so the choice is deterministic.
    """
    if len(images) != len(text_ids) or len(images) % per_group:
        raise ValueError(f"rerank_candidates needs one caption per image and a whole number of groups of "
                         f"{per_group}: got {len(images)} images and {len(text_ids)} captions")
    device = next(clip.parameters()).device
    scores = torch.cat([clip.score(images[i:i + batch_size].to(device).float(), text_ids[i:i + batch_size].to(device))
                        for i in range(0, len(images), batch_size)]).cpu()
    scores = scores.view(-1, per_group)
    return Ranked(scores, scores.argmax(1))
