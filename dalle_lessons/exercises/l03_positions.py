"""Self-checks for lesson 03 (embeddings and positional encoding).

Each check calls the learner's function on small inputs, compares it with `dalle_lessons.positional`
and, when it differs, tries the usual mistakes so that the feedback can name the one that was made.
"""
from __future__ import annotations

from typing import Callable

import torch

from dalle_lessons.exercises import Feedback, report
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


# --- exercise 1: the sinusoidal table -------------------------------------------------------------

def _table_variant(n: int, dim: int, mistake: str) -> torch.Tensor:
    """The table as a common mistake would build it (for feedback only)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    half = torch.arange(dim // 2, dtype=torch.float64)
    exponent = {"i_over_dim": half / dim}.get(mistake, 2 * half / dim)
    angle = pos / 10000.0 ** exponent
    if mistake == "concatenated":
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
    table = torch.empty(n, dim, dtype=torch.float64)
    first, second = (torch.cos, torch.sin) if mistake == "swapped" else (torch.sin, torch.cos)
    table[:, 0::2], table[:, 1::2] = first(angle), second(angle)
    if mistake == "own_frequency":  # column j uses exponent j/dim, so cos columns get another speed
        cols = torch.arange(dim, dtype=torch.float64)
        own = pos / 10000.0 ** (cols / dim)
        table[:, 1::2] = torch.cos(own[:, 1::2])
    return table


_TABLE_MISTAKES = {
    "swapped": "Sin and cos are swapped: sin goes in the even columns (0, 2, 4, ...) and cos in the odd "
               "ones, so that position 0 is [0, 1, 0, 1, ...].",
    "concatenated": "You put all the sines first and then all the cosines. The paper interleaves them: "
                    "column 2i holds sin and column 2i+1 holds cos of the same angle "
                    "(fill table[:, 0::2] and table[:, 1::2]).",
    "i_over_dim": "The frequencies are off: the exponent is 2i/dim, where 2i is the even column index "
                  "(0, 2, 4, ...), not i/dim with i = 0, 1, 2, ...",
    "own_frequency": "The cos columns use their own frequency: a (sin, cos) pair shares one angle, "
                     "so column 2i+1 uses the same exponent 2i/dim as column 2i.",
}


def check_sinusoidal_table(fn: Callable[[int, int], torch.Tensor]) -> bool:
    """Exercise 1: `fn(n_positions, dim)` builds the [n_positions, dim] sinusoidal table."""

    def check() -> None:
        for n, dim in [(16, 8), (50, 32)]:
            got = _as_tensor(fn(n, dim), f"sinusoidal_table({n}, {dim})")
            want = sinusoidal_table(n, dim).double()
            if got.shape == (dim, n) and n != dim:
                raise Feedback(f"The shape is transposed: expected ({n}, {dim}) — one row per position, "
                               f"one column per dimension — but got {tuple(got.shape)}.")
            if got.shape != want.shape:
                raise Feedback(f"Expected shape ({n}, {dim}) (one row per position), got {tuple(got.shape)}.")
            if _close(got, want):
                continue
            for mistake, message in _TABLE_MISTAKES.items():
                if _close(got, _table_variant(n, dim, mistake)):
                    raise Feedback(message)
            if not _close(got[0], want[0]):
                raise Feedback("Position 0 should be [0, 1, 0, 1, ...] (sin 0 = 0 and cos 0 = 1), "
                               f"but it starts {[round(v, 3) for v in got[0, :4].tolist()]}.")
            raise Feedback(f"For n_positions={n}, dim={dim}, " + _first_difference(got, want, "position", "column")
                           + " Recall PE[pos, 2i] = sin(pos / 10000^(2i/dim)) and PE[pos, 2i+1] = cos(same angle).")

    return report("Exercise 1 (sinusoidal table)", check)


# --- exercise 2: row + column positions in raster order -------------------------------------------

def check_raster_positions(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Exercise 2: `fn(row_table, col_table)` gives token t the vector row[t // g] + col[t % g]."""

    def check() -> None:
        gen = torch.Generator().manual_seed(3)
        for g, dim in [(3, 4), (5, 6)]:
            row, col = torch.randn(g, dim, generator=gen), torch.randn(g, dim, generator=gen)
            got = _as_tensor(fn(row.clone(), col.clone()), f"Your function (for a {g}x{g} grid)")
            t = torch.arange(g * g)
            want = (row[t // g] + col[t % g]).double()
            if got.shape == (g, g, dim):
                raise Feedback(f"You returned the grid as ({g}, {g}, {dim}); flatten it to ({g * g}, {dim}) "
                               "in raster order (row by row), e.g. with .reshape(g * g, dim).")
            if got.shape == (g * g, 2 * dim):
                raise Feedback("The row and column vectors should be added, not concatenated: the result "
                               "has the model's width dim, so it can be added to the token embeddings.")
            if got.shape != want.shape:
                raise Feedback(f"For a {g}x{g} grid with dim={dim}, expected shape ({g * g}, {dim}) "
                               f"(one row per image token), got {tuple(got.shape)}.")
            if _close(got, want):
                continue
            if _close(got, row[t % g] + col[t // g]):
                raise Feedback("You walked the grid column by column. Raster order is row-major: token t "
                               "sits at row t // g and column t % g.")
            if _close(got, row[t // g]) or _close(got, col[t % g]) or _close(got, col[t // g]) or _close(got, row[t % g]):
                raise Feedback("Each token needs both vectors: its row's plus its column's.")
            raise Feedback(f"For a {g}x{g} grid, " + _first_difference(got, want, "token", "dimension")
                           + " Token t should get row_table[t // g] + col_table[t % g].")

    return report("Exercise 2 (row + column positions)", check)


# --- exercise 3: the relative-position rotation ---------------------------------------------------

def check_shift_matrix(fn: Callable[[int, int], torch.Tensor]) -> bool:
    """Exercise 3: `fn(k, dim)` is the [dim, dim] matrix M with M @ PE[pos] = PE[pos + k] for every pos."""

    def check() -> None:
        n = 40
        for k, dim in [(1, 8), (3, 16), (7, 16)]:
            matrix = _as_tensor(fn(k, dim), f"shift_matrix({k}, {dim})")
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

    return report("Exercise 3 (shift matrix)", check)
