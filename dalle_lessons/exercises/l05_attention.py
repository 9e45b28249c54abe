"""Self-checks for lesson 05 (attention and DALL·E's sparse masks).

Each check calls the learner's function on small seeded inputs, compares the result with PyTorch's
`scaled_dot_product_attention` or with the masks of `dalle_lessons.attention` and, when it differs,
tries the usual mistakes so that the feedback can name the one that was made.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from dalle_lessons.attention import causal_mask, column_mask, conv_mask, dalle_mask, row_mask
from dalle_lessons.exercises import Feedback, call_learner, report

ATOL = 1e-4  # float32 attention from the learner's own arithmetic agrees with SDPA to ~1e-6 here


def _cell(index: int, grid: int) -> str:
    row, col = divmod(index, grid)
    return f"(row {row}, col {col})"


# --- exercise 1: attention from scratch -----------------------------------------------------------

def _attention_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """(name, q, k, v, mask): no mask, causal, a DALL·E row mask, and 3 new queries after a cached prefix."""
    gen = torch.Generator().manual_seed(5)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    return [
        ("no mask", randn(2, 3, 5, 16), randn(2, 3, 5, 16), randn(2, 3, 5, 16), None),
        ("a causal mask", randn(2, 3, 5, 16), randn(2, 3, 5, 16), randn(2, 3, 5, 16), causal_mask(5)),
        ("a DALL·E row mask (2 text tokens, a 2x2 image)", randn(1, 2, 6, 8), randn(1, 2, 6, 8),
         randn(1, 2, 6, 8), dalle_mask(2, 2, "row")),
        ("3 new queries against 7 keys, values of size 6", randn(1, 2, 3, 16), randn(1, 2, 7, 16),
         randn(1, 2, 7, 6), torch.ones(3, 7, dtype=torch.bool).tril(4)),
    ]


def _attention_variant(q, k, v, mask, mistake: str) -> torch.Tensor:
    """Attention as a common mistake computes it (for feedback only); float64."""
    q, k, v = q.double(), k.double(), v.double()
    d = q.shape[-1]
    scores = q @ k.transpose(-2, -1)
    scale = {"no_scale": 1.0, "scale_d": 1.0 / d}.get(mistake, d ** -0.5)
    scores = scores * scale
    if mask is not None:
        if mistake == "mask_zero":
            scores = scores.masked_fill(~mask, 0.0)
        elif mistake == "mask_added":
            scores = scores + mask.double()
        elif mistake not in ("mask_ignored", "mask_after_softmax"):
            scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-2 if mistake == "softmax_dim" else -1)
    if mistake == "mask_after_softmax" and mask is not None:
        weights = weights * mask
    return weights @ v


_ATTENTION_MISTAKES = {
    "no_scale": "You forgot to divide the scores by √d (d = q.shape[-1], the size of one query vector). "
                "Without it the scores grow with d and the softmax saturates: one key takes all the weight.",
    "scale_d": "You divided the scores by d; divide by √d (d ** 0.5). The dot product of two random "
               "vectors has variance d, so √d brings its spread back to about 1.",
    "softmax_dim": "The softmax runs over the wrong axis. Each query's weights over the keys must sum to 1, "
                   "so take the softmax over the last axis (the keys): scores.softmax(dim=-1).",
    "mask_after_softmax": "You applied the mask after the softmax, so each query's weights no longer sum to 1 "
                          "(the masked keys took their share and it was thrown away). Mask the scores "
                          "first, with -inf where the mask is False, then take the softmax.",
    "mask_zero": "You set the masked scores to 0, but a score of 0 still gets weight exp(0) = 1 in the "
                 "softmax. Use float('-inf'), whose weight exp(-inf) is exactly 0.",
    "mask_added": "You added the boolean mask to the scores. A boolean mask decides which scores become "
                  "-inf (scores.masked_fill(~mask, float('-inf'))); it is not a number to add.",
    "mask_ignored": "Your function ignores the mask: every query still sees every key, the future included. "
                    "Fill the scores with -inf where the mask is False, before the softmax.",
}


def check_attention(fn: Callable[..., torch.Tensor]) -> bool:
    """Exercise 1: `fn(q, k, v, mask)` is softmax(q kᵀ / √d, -inf where mask is False) v."""

    def check() -> None:
        for name, q, k, v, mask in _attention_cases():
            given_mask = None if mask is None else mask.clone()
            got = call_learner(fn, f"Your attention (with {name})", q.clone(), k.clone(), v.clone(), given_mask,
                        hint=" Hint: q @ k.transpose(-2, -1) gives the [..., queries, keys] scores; mask "
                             "may be None, which means no mask." if mask is None else
                             " Hint: q @ k.transpose(-2, -1) gives the [..., queries, keys] scores.")
            if not isinstance(got, torch.Tensor):
                raise Feedback(f"Your attention should return a torch.Tensor, but it returned {type(got).__name__}.")
            want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).double()
            n_queries, n_keys = q.shape[-2], k.shape[-2]
            if got.shape == want.shape[:-1] + (n_keys,) and got.shape != want.shape:
                raise Feedback(f"With {name} you returned shape {tuple(got.shape)}: those are the attention "
                               "weights, one per (query, key). Multiply them by v to get each query's "
                               "weighted average of the values.")
            if got.shape != want.shape:
                raise Feedback(f"With {name}: q is {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, so "
                               f"the output should be {tuple(want.shape)} (one value-sized vector per query), "
                               f"but you returned {tuple(got.shape)}.")
            got = got.double()
            if torch.isnan(got).any():
                raise Feedback(f"With {name} your output has NaN. A query whose keys are all masked out takes "
                               "the softmax of only -inf scores. The mask means True = 'may attend': fill -inf "
                               "where it is False, scores.masked_fill(~mask, float('-inf')), not where it is True.")
            if torch.allclose(got, want, atol=ATOL, rtol=0):
                continue
            for mistake, message in _ATTENTION_MISTAKES.items():
                if mask is None and mistake.startswith("mask"):
                    continue
                if torch.allclose(got, _attention_variant(q, k, v, mask, mistake), atol=ATOL, rtol=0):
                    raise Feedback(f"With {name}: {message[0].lower()}{message[1:]}")
            for label, size in (("the number of queries", n_queries), ("the number of keys", n_keys),
                                ("the batch size", q.shape[0]), ("the number of heads", q.shape[1])):
                scaled = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=size ** -0.5).double()
                if size != q.shape[-1] and torch.allclose(got, scaled, atol=ATOL, rtol=0):
                    raise Feedback(f"With {name} you divided the scores by √({label}) = √{size}. Divide by √d, "
                                   "where d = q.shape[-1] is the size of one query (and key) vector.")
            error = (got - want).abs()
            query = int(error.amax(dim=(0, 1, 3)).argmax())
            raise Feedback(f"With {name}, your output differs from scaled_dot_product_attention by up to "
                           f"{error.max():.3f} (worst at query {query}). Recall: scores = q @ kᵀ / √d; -inf "
                           "where the mask is False; softmax over the keys (the last axis); then @ v.")

    return report("Exercise 1 (attention from scratch)", check)


# --- the two mask exercises: shared checks --------------------------------------------------------

def _as_mask(value, what: str, grid: int, want: torch.Tensor) -> torch.Tensor:
    n = grid * grid
    if not isinstance(value, torch.Tensor):
        raise Feedback(f"{what} should return a torch.Tensor, but it returned {type(value).__name__}.")
    if value.shape == (grid, grid) and grid > 1:
        raise Feedback(f"{what} returned a ({grid}, {grid}) tensor, the shape of the image. The mask has one row "
                       f"per query token and one column per key token: ({n}, {n}) for the {n} tokens of a "
                       f"{grid}x{grid} grid.")
    if value.shape != (n, n):
        raise Feedback(f"{what} should be ({n}, {n}), one row per query and one column per key, but it is "
                       f"{tuple(value.shape)}.")
    if value.dtype != torch.bool:
        if ((value == 0) | (value == 1)).all() and torch.equal(value.bool(), want):
            raise Feedback(f"The pattern is right, but the dtype is {value.dtype}. Return a bool tensor "
                           "(mask.bool(), or build it from comparisons): scaled_dot_product_attention *adds* "
                           "a float mask to the scores instead of masking with it.")
        raise Feedback(f"Return a bool tensor (True = may attend), not {value.dtype}.")
    return value


def _first_wrong_cell(got: torch.Tensor, want: torch.Tensor, grid: int, why_not: Callable[[int, int], str]) -> str:
    """Plain words for the first (query, key) pair, in raster order, where the masks disagree."""
    query, key = (int(i) for i in (got != want).nonzero()[0])
    if want[query, key]:
        return (f"token {_cell(query, grid)} should attend to {_cell(key, grid)}, but your mask says no "
                f"(mask[{query}, {key}] is False).")
    return (f"token {_cell(query, grid)} should not attend to {_cell(key, grid)} ({why_not(query, key)}), "
            f"but your mask says yes (mask[{query}, {key}] is True).")


def _rows_cols(grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.arange(grid * grid)
    return index // grid, index % grid


# --- exercise 2: the column mask ------------------------------------------------------------------

def check_column_mask(fn: Callable[[int], torch.Tensor]) -> bool:
    """Exercise 2: `fn(g)` is the [g*g, g*g] column mask of a g x g grid, like `attention.column_mask`."""

    def why_not(query: int, key: int) -> str:
        if key > query:
            return "it comes later in raster order: the future"
        return "it is in another column"

    def check() -> None:
        for g in (3, 4, 6):
            want = column_mask(g)
            got = _as_mask(call_learner(fn, f"my_column_mask({g})", g), f"my_column_mask({g})", g, want)
            if torch.equal(got, want):
                continue
            rows, cols = _rows_cols(g)
            same_col = cols[:, None] == cols[None, :]
            eye = torch.eye(g * g, dtype=torch.bool)
            if torch.equal(got, want.T):
                raise Feedback("Rows and columns are swapped: mask[query, key] has one row per query. As it "
                               "is, each token attends to the cells *below* it, which come later in raster order.")
            if torch.equal(got, same_col):
                raise Feedback("Your mask lets a token see its whole column, including the cells below it. "
                               "Those come later in raster order (the future): keep only rows at or above the "
                               f"query's. For example token {_cell(g, g)} must not see {_cell(2 * g, g)}.")
            if torch.equal(got, want & ~eye):
                raise Feedback("Every token should attend to itself too (the diagonal is True): otherwise the "
                               "first row's tokens, with nothing above them, would have no key to attend to.")
            same_row = rows[:, None] == rows[None, :]
            if any(torch.equal(got, m) for m in (same_row, same_row.tril(), row_mask(g))):
                raise Feedback("That is a row mask (tokens in the same row). Token i sits at row i // g and "
                               "column i % g; the column mask keeps the keys with the same column, i % g.")
            raise Feedback(f"On a {g}x{g} grid, " + _first_wrong_cell(got, want, g, why_not)
                           + " Token i sits at (row i // g, col i % g); it attends to key j when they share a "
                             "column and j's row is at or above i's.")

    return report("Exercise 2 (column mask)", check)


# --- exercise 3: the strictly 2-D convolutional mask ----------------------------------------------

def _conv_variant(grid: int, kernel: int, mistake: str) -> torch.Tensor:
    """The 2-D causal window as a common mistake builds it (for feedback only)."""
    h = kernel if mistake == "half_is_kernel" else kernel // 2
    rows, cols = _rows_cols(grid)
    rows_back = rows[:, None] - rows[None, :]
    cols_apart = (cols[:, None] - cols[None, :]).abs()
    index = torch.arange(grid * grid)
    earlier = index[:, None] >= index[None, :]
    window = (rows_back.abs() <= h) & (cols_apart <= h)
    if mistake == "full_square":  # the whole k x k square, below and right included
        return window
    window = window & (rows_back >= 0)
    if mistake == "right_in_own_row":  # rows above, and the whole own row of the window
        return window
    if mistake == "rows_above_only":  # forgot the cells to the left in the query's own row
        return window & ((rows_back > 0) | (index[:, None] == index[None, :]))
    return window & earlier  # "half_is_kernel" and the right answer


def check_conv_mask_2d(fn: Callable[[int, int], torch.Tensor]) -> bool:
    """Exercise 3: `fn(g, kernel)` is the strictly 2-D causal conv mask, `conv_mask(g, kernel, wraparound=False)`."""

    def check() -> None:
        for g, kernel in [(4, 3), (6, 5), (8, 3), (8, 5), (3, 5)]:
            want = conv_mask(g, kernel, wraparound=False)
            what = f"my_conv_mask_2d({g}, {kernel})"
            got = _as_mask(call_learner(fn, what, g, kernel), what, g, want)
            if torch.equal(got, want):
                continue
            h = kernel // 2
            rows, cols = _rows_cols(g)

            def why_not(query: int, key: int) -> str:
                if key > query:
                    return "it comes later in raster order: the future"
                if abs(int(cols[query]) - int(cols[key])) > h:
                    return (f"it is {abs(int(cols[query]) - int(cols[key]))} columns away, more than "
                            f"kernel // 2 = {h}")
                return f"it is {int(rows[query]) - int(rows[key])} rows up, more than kernel // 2 = {h}"

            if torch.equal(got, conv_mask(g, kernel, wraparound=True)):
                raise Feedback(f"With g={g}, kernel={kernel}: your window wraps around the left and right edges "
                               "into the neighbouring row, like the paper's mask. This exercise asks for the "
                               "strictly 2-D window: drop the keys whose column is more than kernel // 2 away "
                               "from the query's column.")
            if torch.equal(got, _conv_variant(g, kernel, "full_square")):
                raise Feedback(f"With g={g}, kernel={kernel}: your window is the whole k x k square, so a token "
                               "also sees the rows below it, which come later in raster order. Keep only the "
                               "rows at or above the query, and in its own row only the cells up to itself.")
            if torch.equal(got, _conv_variant(g, kernel, "right_in_own_row")):
                raise Feedback(f"With g={g}, kernel={kernel}: in the query's own row your window also covers the "
                               "cells to its right. Those come later in raster order (the future): in its own "
                               "row a token sees only the cells to its left, and itself.")
            if torch.equal(got, _conv_variant(g, kernel, "rows_above_only")):
                raise Feedback(f"With g={g}, kernel={kernel}: you left out the cells to the query's left in its "
                               "own row. They come earlier in raster order, so the causal window includes "
                               "them (up to kernel // 2 of them).")
            if torch.equal(got, _conv_variant(g, kernel, "half_is_kernel")):
                raise Feedback(f"With g={g}, kernel={kernel}: your window reaches `kernel` cells each way. A "
                               "kernel x kernel window centred on the query reaches kernel // 2 each way.")
            if torch.equal(got, want & ~torch.eye(g * g, dtype=torch.bool)):
                raise Feedback("Every token should attend to itself too (the diagonal is True).")
            raise Feedback(f"With g={g}, kernel={kernel}, " + _first_wrong_cell(got, want, g, why_not)
                           + f" Query (r, c) sees key (r', c') when 0 <= r - r' <= {h} (= kernel // 2), "
                             f"|c - c'| <= {h}, and the key is not later in raster order.")

    return report("Exercise 3 (2-D convolutional mask)", check)

