# %% [markdown]
# # 05 · Attention and DALL·E's sparse masks: solutions
#
# Worked solutions to the exercises of lesson 05 (`notebooks/05_attention_and_masks.ipynb`).
# Try them yourself first: each check tells you what is wrong in plain words. Every solution below
# is followed by its check, asserted, so the tests fail if a solution ever stops passing.

# %%
import torch

from dalle_lessons.attention import CausalSelfAttention, conv_mask, dalle_mask
from dalle_lessons.exercises.l05_attention import check_attention, check_column_mask, check_conv_mask_2d

torch.set_grad_enabled(False)
torch.set_printoptions(precision=4, sci_mode=False)

# %% [markdown]
# ### Exercise 1: attention from scratch
#
# Four steps, each on the last two axes so that any leading batch and head axes come along for free:
#
# 1. scores `q @ kᵀ`: `k.transpose(-2, -1)` swaps only the token and feature axes of `k`, giving one
#    score per (query, key), `[..., n_queries, n_keys]`;
# 2. divide by `√d`, with `d = q.shape[-1]` (the size of one query vector, not the number of tokens);
# 3. where the mask is False, set the score to `-inf` **before** the softmax, so that its weight is
#    exactly 0 and the remaining weights still sum to 1;
# 4. softmax over the keys (the last axis), then the weighted sum of the values, `@ v`.

# %%
def my_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # [..., n_queries, n_keys]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # True = may attend
    return scores.softmax(dim=-1) @ v


assert check_attention(my_attention)

# %% [markdown]
# It is also the core of the library's layer: put it between `CausalSelfAttention`'s own projections
# and the layer's output comes back.

# %%
torch.manual_seed(0)
layer = CausalSelfAttention(16, 4).eval()
x = torch.randn(2, 10, 16)
mask = dalle_mask(2, 3, "column")[:10, :10]  # 2 text tokens, the first 8 cells of a 3x3 image
q, k, v = (t.view(2, 10, 4, 4).transpose(1, 2) for t in layer.qkv(x).split(16, dim=2))
ours = layer.proj(my_attention(q, k, v, mask).transpose(1, 2).reshape(2, 10, 16))
assert torch.allclose(ours, layer(x, mask), atol=1e-5)
print("my_attention inside CausalSelfAttention's projections == the layer:", True)

# %% [markdown]
# ### Exercise 2: the column mask
#
# Every image token's row and column come from its raster index: `row = i // g`, `col = i % g`.
# Broadcasting a column of query values against a row of key values, `rows[:, None]` against
# `rows[None, :]`, gives the `[g*g, g*g]` table of every (query, key) comparison at once. The column
# mask is "same column" and "key's row at or above the query's". The comparisons give a bool tensor
# directly, which is what `scaled_dot_product_attention` needs (a float mask would be *added* to the
# scores).

# %%
def my_column_mask(g: int) -> torch.Tensor:
    index = torch.arange(g * g)
    rows, cols = index // g, index % g
    same_column = cols[:, None] == cols[None, :]  # [query, key]
    at_or_above = rows[None, :] <= rows[:, None]  # the key's row <= the query's row
    return same_column & at_or_above


assert check_column_mask(my_column_mask)
print(my_column_mask(3).int())

# %% [markdown]
# On a 3×3 grid each token sees itself and the cells above it: token 8 (row 2, col 2) sees tokens 2, 5
# and 8. In raster steps that is `back = i − j` a multiple of `g`, the form the lesson used.
#
# ### Exercise 3: a convolutional mask without wraparound
#
# The same broadcasting, with three conditions: the key at most `h` rows up (and not below), at most
# `h` columns to either side, and not later in raster order. The last condition matters only in the
# query's own row, where it removes the cells to the right. Because the columns are compared directly,
# `|c − c'| ≤ h`, a window near an edge is simply cut off instead of wrapping into the next row.

# %%
def my_conv_mask_2d(g: int, kernel: int) -> torch.Tensor:
    h = kernel // 2
    index = torch.arange(g * g)
    rows, cols = index // g, index % g
    rows_up = rows[:, None] - rows[None, :]  # how many rows the key lies above the query
    cols_apart = (cols[:, None] - cols[None, :]).abs()
    not_later = index[None, :] <= index[:, None]
    return (rows_up >= 0) & (rows_up <= h) & (cols_apart <= h) & not_later


assert check_conv_mask_2d(my_conv_mask_2d)

query = 4 * 8 + 0  # row 4, column 0 of an 8x8 grid: at the left edge
ours, paper = my_conv_mask_2d(8, 5)[query], conv_mask(8, 5)[query]
print(f"token (row 4, col 0), 5x5 window: {int(ours.sum())} keys strictly 2-D, {int(paper.sum())} with the "
      "paper's wraparound")
print("  2-D:  ", ours.nonzero().flatten().tolist())
print("  wraps:", paper.nonzero().flatten().tolist())
