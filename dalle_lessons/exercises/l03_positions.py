"""Self-checks for lesson 03 (embeddings and positional encoding).

Each check calls the learner's function on small inputs, compares it with `dalle_lessons.positional`
and, when it differs, tries the usual mistakes so that the feedback can name the one that was made.
"""
from __future__ import annotations

from typing import Callable

import torch

from dalle_lessons.exercises import Feedback, call_learner, report
from dalle_lessons.positional import sinusoidal_table

ATOL = 1e-4  # a float32 table from the learner's own arithmetic is accurate to ~1e-6 here


def _as_tensor(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise Feedback(f"{what} should return a torch.Tensor, but it returned {type(value).__name__}.")
    if not torch.isfinite(value.double()).all():
        raise Feedback(f"{what} returned NaN or inf values: check for a division by zero or a log of 0.")
    return value.double()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=ATOL, rtol=0)


def _first_difference(got: torch.Tensor, want: torch.Tensor, rows: str, cols: str) -> str:
    r, c = divmod(int((got - want).abs().argmax()), want.shape[1])
    return f"the largest difference is at {rows} {r}, {cols} {c}: expected {want[r, c]:.4f}, got {got[r, c]:.4f}."


# --- exercise 1: fixed 2-D sinusoidal positions for an image grid ----------------------------------

def _grid_variant(height: int, width: int, dim: int, mistake: str) -> torch.Tensor:
    """The 2-D table as a common mistake (or a shortcut) would build it (for feedback only)."""
    t = torch.arange(height * width)
    rows, cols = t // width, t % width
    if mistake == "divided_by_height":
        rows, cols = t // height, t % height
    if mistake == "column_major":
        rows, cols = t % height, t // height
    if mistake == "one_d":
        return sinusoidal_table(height * width, dim).double()
    if mistake == "added":
        return (sinusoidal_table(height, dim)[rows.clamp(max=height - 1)]
                + sinusoidal_table(width, dim)[cols.clamp(max=width - 1)]).double()
    row_part = sinusoidal_table(max(height, width), dim // 2)[rows]
    col_part = sinusoidal_table(max(height, width), dim // 2)[cols]
    if mistake == "column_first":
        return torch.cat([col_part, row_part], dim=1).double()
    return torch.cat([row_part, col_part], dim=1).double()


_GRID_MISTAKES = {
    "one_d": "This is the 1-D table of section 3: it numbers the tokens 0 .. height*width-1 like words in a "
             "sentence, so token `width - 1` (end of the first row) and token `width` (start of the "
             "second) look like neighbours. Encode the row and the column separately.",
    "added": "You added a row table and a column table of full width. With the same formula for both, token "
             "(r, c) and token (c, r) then get the same vector: the model could not tell a shape at the top "
             "right from one at the bottom left. Concatenate instead: dim/2 columns for the row, dim/2 for "
             "the column.",
    "divided_by_height": "The grid is not square here: token t sits at row t // width and column t % width "
                         "(a row holds `width` tokens), not t // height.",
    "column_major": "You walked the grid column by column. Raster order is row-major: token t sits at row "
                    "t // width and column t % width.",
    "column_first": "The halves are swapped: the first dim/2 columns encode the row, the last dim/2 the column.",
}


def check_sincos_grid(fn: Callable[[int, int, int], torch.Tensor]) -> bool:
    """Exercise 1: `fn(height, width, dim)` gives token t = (r, c) the vector [PE_{dim/2}(r) | PE_{dim/2}(c)]."""

    def check() -> None:
        for height, width, dim in [(3, 5, 8), (4, 2, 16), (2, 7, 12)]:
            what = f"my_sincos_grid({height}, {width}, {dim})"
            got = _as_tensor(call_learner(fn, what, height, width, dim), what)
            want = _grid_variant(height, width, dim, "right")
            if got.shape == (height, width, dim):
                raise Feedback(f"You returned the grid as ({height}, {width}, {dim}); flatten it to "
                               f"({height * width}, {dim}) in raster order (row by row).")
            if got.shape == (height * width, 2 * dim):
                raise Feedback("The result is twice too wide: each half (row, column) should be a "
                               "sinusoidal table of width dim/2, so the whole vector has width dim.")
            if got.shape != want.shape:
                raise Feedback(f"For a {height}x{width} grid with dim={dim}, expected shape "
                               f"({height * width}, {dim}) (one row per image token), got {tuple(got.shape)}.")
            if _close(got, want):
                continue
            for mistake, message in _GRID_MISTAKES.items():
                if _close(got, _grid_variant(height, width, dim, mistake)):
                    raise Feedback(message)
            raise Feedback(f"For a {height}x{width} grid with dim={dim}, "
                           + _first_difference(got, want, "token", "column")
                           + " Token t = (r, c) with r = t // width, c = t % width gets "
                             "sinusoidal_table(·, dim // 2)[r] followed by sinusoidal_table(·, dim // 2)[c].")

    return report("Exercise 1 (2-D sinusoidal grid)", check)


# --- exercise 2: the relative-position rotation ---------------------------------------------------

def check_shift_matrix(fn: Callable[[int, int], torch.Tensor]) -> bool:
    """Exercise 2: `fn(k, dim)` is the [dim, dim] matrix M with M @ PE[pos] = PE[pos + k] for every pos."""

    def check() -> None:
        n = 40
        for k, dim in [(1, 8), (3, 16), (7, 16)]:
            what = f"my_shift_matrix({k}, {dim})"
            matrix = _as_tensor(call_learner(fn, what, k, dim), what)
            if matrix.shape != (dim, dim):
                raise Feedback(f"Expected a square ({dim}, {dim}) matrix for dim={dim}, got {tuple(matrix.shape)}.")
            table = sinusoidal_table(n, dim).double()
            want = table[k:]  # PE[pos + k] for pos = 0 .. n-k-1
            if _close(table[:-k] @ matrix.T, want):  # row-vector form of M @ PE[pos]
                continue
            if _close(table[:-k] @ matrix, want):
                raise Feedback("You built the transpose. sin(a + b) = sin a cos b + cos a sin b, so in each "
                               "2x2 block the sine's row is [cos b, sin b] and the cosine's row is [-sin b, cos b].")
            if torch.count_nonzero(matrix) == 0:
                raise Feedback("The matrix is all zeros: fill in one 2x2 rotation block per (sin, cos) pair.")
            err = (table[:-k] @ matrix.T - want).abs().max().item()
            raise Feedback(f"For k={k}, dim={dim}, M @ PE[pos] misses PE[pos + k] by up to {err:.3f}. Each 2x2 "
                           "block on the diagonal turns its pair by the angle k * w_i, with "
                           "w_i = 1 / 10000^(2i/dim); everything off those blocks is 0.")

    return report("Exercise 2 (shift matrix)", check)


# --- exercise 3: similarity by offset, averaged over starting positions ----------------------------

def similarity_by_offset_reference(table: torch.Tensor, max_offset: int) -> torch.Tensor:
    """Mean cosine similarity of PE[p] and PE[p + k] over every p, for k = 1 .. max_offset (float64)."""
    unit = torch.nn.functional.normalize(table.detach().double(), dim=-1)
    sims = unit @ unit.T
    return torch.stack([sims.diagonal(k).mean() for k in range(1, max_offset + 1)])


def check_similarity_by_offset(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """Exercise 3: `fn(table, max_offset)` -> [max_offset]: mean cosine similarity at offsets 1..max_offset."""

    def check() -> None:
        gen = torch.Generator().manual_seed(5)
        tables = [torch.randn(12, 6, generator=gen) * torch.rand(12, 1, generator=gen) * 3 + 0.3,
                  torch.randn(9, 16, generator=gen) + torch.linspace(0, 2, 9)[:, None]]
        for table, max_offset in zip(tables, (5, 8)):
            what = f"Your function (a {table.shape[0]}-position table, max_offset={max_offset})"
            got = _as_tensor(call_learner(fn, what, table.clone(), max_offset), what).flatten()
            want = similarity_by_offset_reference(table, max_offset)
            unit = torch.nn.functional.normalize(table.double(), dim=-1)
            sims, dots = unit @ unit.T, table.double() @ table.double().T
            if got.shape == (max_offset + 1,) and _close(got[1:], want):
                raise Feedback("You included offset 0 (every vector with itself, always 1): return offsets "
                               f"1 .. max_offset, {max_offset} values.")
            if got.shape != want.shape:
                raise Feedback(f"{what} should return {max_offset} values (offsets 1 .. {max_offset}), "
                               f"got shape {tuple(got.shape)}.")
            if _close(got, want):
                continue
            offsets = range(1, max_offset + 1)
            if _close(got, torch.stack([sims[0, k] for k in offsets])):
                raise Feedback("You read the similarities from position 0 only (row 0 of the matrix, as "
                               "section 3 did). That was enough for sinusoids, whose similarity depends only "
                               "on the offset; a learned table owes nothing to that rule. Average over every "
                               "start p: the k-th diagonal of the similarity matrix.")
            if _close(got, torch.stack([dots.diagonal(k).mean() for k in offsets])):
                raise Feedback("You averaged raw dot products. Use cosine similarity (normalise each row "
                               "first), so that a table whose vectors grow with the position is not "
                               "mistaken for one whose vectors point the same way.")
            if _close(got, torch.stack([sims.diagonal(k).sum() for k in offsets])):
                raise Feedback("You summed the diagonal instead of averaging it: offset k has only "
                               "n - k pairs, so sums shrink with k for no reason.")
            raise Feedback(f"{what}: " + f"at offset 1 expected {want[0]:.4f}, got {got[0]:.4f}. "
                           "Offset k's value is the mean, over p = 0 .. n-1-k, of cos(PE[p], PE[p + k]).")

    return report("Exercise 3 (similarity by offset)", check)
