# %% [markdown]
# # 03 · Embeddings and positional encoding: solutions
#
# Worked solutions to the exercises of lesson 03 (`notebooks/03_embeddings_and_positions.ipynb`).
# Try them yourself first: each check tells you what is wrong in plain words. Every solution below
# is followed by its check, asserted, so the tests fail if a solution ever stops passing.

# %%
import math

import torch

from dalle_lessons.exercises.l03_positions import (check_raster_positions, check_shift_matrix,
                                                   check_sinusoidal_table)
from dalle_lessons.positional import RowColumnPositionalEmbedding, sinusoidal_table

torch.set_printoptions(precision=4, sci_mode=False)

# %% [markdown]
# ### Exercise 1: the sinusoidal table
#
# One angle per (position, pair): `pos · ω_i` with `ω_i = 1 / 10000^(2i/dim)`. The angles form a
# `[n_positions, dim/2]` grid by broadcasting a column of positions against a row of speeds; sines fill
# the even columns and cosines of the same angles the odd ones. Working in float64 keeps large positions
# accurate; the result is returned as float32, the dtype of the model.

# %%
def my_sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # [n, 1]
    omega = 1.0 / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # [dim/2]
    angle = pos * omega  # [n, dim/2]
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table.float()


assert check_sinusoidal_table(my_sinusoidal_table)
print("position 1:", my_sinusoidal_table(4, 8)[1])

# %% [markdown]
# ### Exercise 2: row + column positions in raster order
#
# Broadcasting does the bookkeeping: `row_table[:, None]` is `[g, 1, dim]` and `col_table[None]` is
# `[1, g, dim]`, so their sum is the `[g, g, dim]` grid whose entry `(r, c)` is `row[r] + col[c]`.
# Reshaping a row-major tensor to `[g*g, dim]` walks it row by row: exactly raster order. (Indexing with
# `t = torch.arange(g * g)` as `row_table[t // g] + col_table[t % g]` gives the same result.)

# %%
def my_raster_positions(row_table: torch.Tensor, col_table: torch.Tensor) -> torch.Tensor:
    g, dim = row_table.shape
    grid = row_table[:, None, :] + col_table[None, :, :]  # [g, g, dim]
    return grid.reshape(g * g, dim)


assert check_raster_positions(my_raster_positions)

module = RowColumnPositionalEmbedding(8, 16, generator=torch.Generator().manual_seed(0))
assert torch.equal(my_raster_positions(module.row.weight, module.col.weight), module())
print("matches RowColumnPositionalEmbedding on an 8x8 grid:", tuple(module().shape))

# %% [markdown]
# ### Exercise 3: moving by k positions is a rotation
#
# With `a = pos·ω_i` and `b = k·ω_i`, the pair `(sin a, cos a)` must become `(sin(a+b), cos(a+b))`:
#
# - `sin(a + b) =  cos b · sin a + sin b · cos a`
# - `cos(a + b) = −sin b · sin a + cos b · cos a`
#
# so the 2×2 block for pair `i` is `[[cos b, sin b], [−sin b, cos b]]`, a rotation by `b`. It does not
# depend on `pos`: that is the relative-position property. The table stores positions as rows, so
# `M @ PE[pos]` for all positions at once is `table @ M.T`.

# %%
def my_shift_matrix(k: int, dim: int) -> torch.Tensor:
    matrix = torch.zeros(dim, dim)
    for i in range(dim // 2):
        b = k / 10000 ** (2 * i / dim)
        matrix[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = torch.tensor([[math.cos(b), math.sin(b)],
                                                                   [-math.sin(b), math.cos(b)]])
    return matrix


assert check_shift_matrix(my_shift_matrix)

table = sinusoidal_table(20, 8)
shifted = table[:-3] @ my_shift_matrix(3, 8).T  # every PE[pos] moved 3 steps ahead
assert torch.allclose(shifted, table[3:], atol=1e-5)
assert torch.allclose(my_shift_matrix(3, 8) @ my_shift_matrix(3, 8).T, torch.eye(8), atol=1e-6)  # a rotation
print(f"M @ PE[pos] == PE[pos + 3] for all {len(shifted)} positions:", torch.allclose(shifted, table[3:], atol=1e-5))
