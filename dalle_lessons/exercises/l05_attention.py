"""Self-checks for lesson 05 (attention and DALL·E's sparse masks).

Each exercise asks for something the lesson has not shown (attention with a distance penalty, the
padding mask the paper chose not to use, and an experiment on how far information travels through
stacked sparse layers). Each check compares the learner's function with a reference written here and,
when they differ, tries the usual mistakes and the shortcuts (PyTorch's or the library's own function)
so that the feedback can name the one that was made.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from dalle_lessons.attention import causal_mask, column_mask, conv_mask, dalle_mask, row_mask
from dalle_lessons.exercises import Feedback, call_learner, report

ATOL = 1e-4  # float32 attention from the learner's own arithmetic agrees with float64 to ~1e-6 here


# --- exercise 1: attention with a distance penalty (ALiBi) -----------------------------------------

def _alibi_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    return [
        ("3 heads, 5 tokens", randn(2, 3, 5, 8), randn(2, 3, 5, 8), randn(2, 3, 5, 8),
         torch.tensor([0.5, 0.25, 0.125])),
        ("2 heads, 7 tokens, values of size 4", randn(1, 2, 7, 16), randn(1, 2, 7, 16), randn(1, 2, 7, 4),
         torch.tensor([1.0, 0.0625])),
    ]


def _alibi_variant(q, k, v, slopes, mistake: str) -> torch.Tensor:
    """ALiBi attention as a common mistake computes it (for feedback only); float64."""
    q, k, v, slopes = q.double(), k.double(), v.double(), slopes.double()
    n, d = q.shape[-2], q.shape[-1]
    index = torch.arange(n)
    distance = (index[:, None] - index[None, :]).double()  # i - j: how far back key j is
    if mistake == "abs_distance_no_mask":
        distance = distance.abs()
    if mistake == "one_slope":
        slopes = slopes[:1].expand_as(slopes)
    bias = -slopes[:, None, None] * distance  # [H, n, n]
    if mistake == "sign":
        bias = -bias
    if mistake == "no_bias":
        bias = torch.zeros_like(bias)
    scores = q @ k.transpose(-2, -1)
    scores = (scores + bias) * d ** -0.5 if mistake == "bias_before_scale" else scores * d ** -0.5 + bias
    if mistake not in ("no_mask", "abs_distance_no_mask"):
        scores = scores.masked_fill(~causal_mask(n), float("-inf"))
    return scores.softmax(dim=-1) @ v


_ALIBI_MISTAKES = {
    "no_bias": "Your output is plain causal attention (what scaled_dot_product_attention(..., is_causal=True) "
               "and section 1's attention_weights give): the distance penalty is missing. Subtract "
               "slopes[h] * (i - j) from head h's score of query i for key j.",
    "sign": "The penalty has the wrong sign: distant keys got a bonus. Subtract slopes[h] * (i - j), so that "
            "the further back a key is, the lower its score.",
    "bias_before_scale": "You added the penalty before dividing by √d, which shrinks it by √d. Scale q @ kᵀ "
                         "by 1/√d first, then subtract slopes[h] * (i - j).",
    "one_slope": "Every head used the first head's slope. Each head has its own: broadcast slopes[h] over "
                 "the head axis, e.g. slopes[:, None, None] * distance for a [H, n, n] penalty.",
    "no_mask": "Your attention sees the future: the penalty does not replace the causal mask. Set the "
               "scores of keys j > i to -inf before the softmax.",
    "abs_distance_no_mask": "You penalised |i - j| and left out the causal mask, so queries still read "
                            "later keys. Keep the causal mask (-inf for j > i); the distance is i - j.",
}


def check_alibi_attention(fn: Callable[..., torch.Tensor]) -> bool:
    """Exercise 1: `fn(q, k, v, slopes)`: causal softmax(q kᵀ/√d − slopes[h]·(i − j)) v, q [B, H, n, d]."""

    def check() -> None:
        for name, q, k, v, slopes in _alibi_cases():
            what = f"Your attention ({name})"
            got = call_learner(fn, what, q.clone(), k.clone(), v.clone(), slopes.clone(),
                               hint=" Hint: the penalty is a [H, n, n] tensor, slopes[:, None, None] * (i - j).")
            if not isinstance(got, torch.Tensor):
                raise Feedback(f"Your attention should return a torch.Tensor, but it returned {type(got).__name__}.")
            want = _alibi_variant(q, k, v, slopes, "right")
            if got.shape != want.shape:
                raise Feedback(f"With {name}: q is {tuple(q.shape)} and v {tuple(v.shape)}, so the output "
                               f"should be {tuple(want.shape)} (one value-sized vector per query), but you "
                               f"returned {tuple(got.shape)}.")
            got = got.double()
            if torch.isnan(got).any():
                raise Feedback(f"With {name} your output has NaN: some query has every key masked. The causal "
                               "mask keeps keys j <= i (itself included).")
            if torch.allclose(got, want, atol=ATOL, rtol=0):
                continue
            for mistake, message in _ALIBI_MISTAKES.items():
                if torch.allclose(got, _alibi_variant(q, k, v, slopes, mistake), atol=ATOL, rtol=0):
                    raise Feedback(f"With {name}: {message[0].lower()}{message[1:]}")
            error = (got - want).abs()
            raise Feedback(f"With {name}, your output differs from the expected one by up to {error.max():.3f}. "
                           "Recall: scores = q @ kᵀ / √d − slopes[h] · (i − j); -inf where j > i; softmax over "
                           "the keys; then @ v.")

    return report("Exercise 1 (attention with a distance penalty)", check)


# --- exercise 2: masking the pads out (the road DALL·E did not take) -------------------------------

def _pad_cases() -> list[tuple[torch.Tensor, int, int]]:
    """(text_ids, grid, pad_id): pads at the end, an empty caption, and a pad id that is not 0."""
    return [
        (torch.tensor([[5, 9, 3, 0, 0], [7, 0, 0, 0, 0], [0, 0, 0, 0, 0]]), 2, 0),
        (torch.tensor([[4, 4, 1, 1], [2, 8, 6, 1]]), 3, 1),
    ]


def _pad_variant(text_ids: torch.Tensor, grid: int, pad_id: int, mistake: str) -> torch.Tensor:
    B, T = text_ids.shape
    n = T + grid * grid
    base = dalle_mask(T, grid, "full").expand(B, n, n)
    is_pad = torch.zeros(B, n, dtype=torch.bool)
    is_pad[:, :T] = text_ids == pad_id
    if mistake == "first_caption_for_all":
        is_pad = is_pad[:1].expand(B, n)
    eye = torch.eye(n, dtype=torch.bool)
    if mistake == "library":
        return base.clone()
    if mistake == "rows":  # hid what a pad may see, instead of who may see a pad
        return base & (~is_pad[:, :, None] | eye)
    if mistake == "no_diagonal":
        return base & ~is_pad[:, None, :]
    if mistake == "not_causal":
        return (dalle_mask(T, grid, "full") | torch.ones(n, n, dtype=torch.bool).triu()).expand(B, n, n) & (
            ~is_pad[:, None, :] | eye)
    return base & (~is_pad[:, None, :] | eye)  # right, and first_caption_for_all


_PAD_MISTAKES = {
    "library": "Your mask is dalle_mask's, the same for every caption: the pads are still visible. Hide the "
               "key columns of the pad positions, caption by caption.",
    "rows": "You hid the pads' rows (what a pad may look at) instead of their columns (who may look at a pad). "
            "mask[b, i, j] is about query i and key j: set mask[b, :, j] to False where text_ids[b, j] is a pad.",
    "no_diagonal": "Some rows of your mask are all False: a caption made only of pads (the empty caption that "
                   "guidance uses) leaves its first query with no key at all, and the softmax gives NaN. Let "
                   "every token still attend to itself.",
    "first_caption_for_all": "Every caption got the first caption's pads. Each caption has its own: compute "
                             "text_ids == pad_id for the whole batch.",
    "not_causal": "The pads are hidden, but your mask lets tokens see the future. Start from the DALL·E mask "
                  "(dalle_mask(T, g, 'full')) and only remove the pad keys from it.",
}


def check_pad_mask(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> bool:
    """Exercise 2: `fn(text_ids, g, pad_id)` -> [B, T+g², T+g²]: dalle_mask 'full' with pad keys hidden (self kept)."""

    def check() -> None:
        for text_ids, grid, pad_id in _pad_cases():
            B, T = text_ids.shape
            n = T + grid * grid
            what = f"my_pad_mask(<{B} captions of {T} ids>, g={grid}, pad_id={pad_id})"
            got = call_learner(fn, what, text_ids.clone(), grid, pad_id)
            if not isinstance(got, torch.Tensor):
                raise Feedback(f"{what} should return a torch.Tensor, but it returned {type(got).__name__}.")
            want = _pad_variant(text_ids, grid, pad_id, "right")
            if got.shape == (n, n):
                raise Feedback(f"{what} returned one ({n}, {n}) mask. Each caption has its own pads, so return "
                               f"one mask per caption: ({B}, {n}, {n}).")
            if got.shape != want.shape:
                raise Feedback(f"{what} should be ({B}, {n}, {n}): one [query, key] mask over the {T} text and "
                               f"{grid * grid} image tokens per caption; got {tuple(got.shape)}.")
            if got.dtype != torch.bool:
                raise Feedback(f"Return a bool tensor (True = may attend), not {got.dtype}.")
            if torch.equal(got, want):
                continue
            for mistake, message in _PAD_MISTAKES.items():
                if torch.equal(got, _pad_variant(text_ids, grid, pad_id, mistake)):
                    raise Feedback(message)
            b, i, j = (int(x) for x in (got != want).nonzero()[0])
            should = "may" if want[b, i, j] else "may not"
            raise Feedback(f"For caption {b} ({text_ids[b].tolist()}), query {i} {should} attend to key {j}, "
                           f"but your mask says the opposite. Start from dalle_mask(T, g, 'full'); hide every "
                           "key that is a pad; keep each token's own diagonal entry.")

    return report("Exercise 2 (masking the pads)", check)


# --- exercise 3 (experiment): how many sparse layers until every token has heard from every other? --

def layers_to_connect_reference(masks: Sequence[torch.Tensor], max_layers: int = 30) -> int | None:
    """Stack layers cycling through `masks`; the first depth whose reach is the whole causal triangle."""
    n = masks[0].shape[0]
    dense, reached = causal_mask(n), torch.eye(n, dtype=torch.bool)
    for depth in range(1, max_layers + 1):
        reached = (masks[(depth - 1) % len(masks)].int() @ reached.int()) > 0
        if torch.equal(reached, dense):
            return depth
    return None


def _last_token_only(masks: Sequence[torch.Tensor], max_layers: int = 30) -> int | None:
    n = masks[0].shape[0]
    reached = torch.eye(n, dtype=torch.bool)
    for depth in range(1, max_layers + 1):
        reached = (masks[(depth - 1) % len(masks)].int() @ reached.int()) > 0
        if reached[-1].all():
            return depth
    return None


def _connect_cases() -> list[tuple[str, list[torch.Tensor]]]:
    return [
        ("row (paper) only, 4x4", [row_mask(4)]),
        ("conv k=3 (paper) only, 5x5", [conv_mask(5, 3)]),
        ("own-row rows and columns, 4x4", [row_mask(4, wraparound=False), column_mask(4)]),
        ("column only, 3x3", [column_mask(3)]),
        ("column, own-row row, conv k=3, 5x5", [column_mask(5), row_mask(5, wraparound=False), conv_mask(5, 3)]),
        ("row (paper), column, 6x6", [row_mask(6), column_mask(6)]),
    ]


def check_layers_to_connect(fn: Callable[..., int | None]) -> bool:
    """Exercise 3: `fn(masks, max_layers)` -> the fewest stacked layers connecting every causal pair, or None."""

    def check() -> None:
        for name, masks in _connect_cases():
            what = f"Your function ({name})"
            got = call_learner(fn, what, [m.clone() for m in masks], 30)
            want = layers_to_connect_reference(masks, 30)
            if got == want and (got is None or isinstance(got, int)):
                continue
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = int(got)
                if got == want:
                    continue
            if want is None:
                if got == _last_token_only(masks, 30):
                    raise Feedback(f"With {name}: you stopped when the *last* token had heard from everything; "
                                   "every token must have heard from every earlier token (compare the whole "
                                   "reach matrix with the causal mask).")
                raise Feedback(f"With {name}: these layers never connect every pair, however many you stack, so "
                               f"the answer is None; you returned {got!r}.")
            if len(masks) > 1 and got == layers_to_connect_reference(masks[:1], 30):
                raise Feedback(f"With {name}: you stacked only the first mask. Layer l uses "
                               "masks[(l - 1) % len(masks)]: cycle through them.")
            if got is None:
                raise Feedback(f"With {name}: you returned None, but {want} layers connect every pair. Compare "
                               "the reach matrix with the causal mask (a token never hears from the future, so "
                               "an all-True matrix is never reached), and cycle through the masks.")
            if got == want - 1:
                raise Feedback(f"With {name}: off by one. Start from the identity (zero layers: each token has "
                               "heard only itself) and count every mask you apply, the first one included.")
            if got == _last_token_only(masks, 30):
                raise Feedback(f"With {name}: you stopped when the *last* token had heard from everything; "
                               "every token must have heard from every earlier token.")
            raise Feedback(f"With {name}: expected {want} layers, got {got!r}. After each layer, "
                           "reach = (mask.int() @ reach.int()) > 0; stop when reach equals the causal mask.")

    return report("Exercise 3 (how many layers connect everything)", check)
