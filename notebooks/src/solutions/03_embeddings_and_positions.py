# %% [markdown]
# # 03 · Embeddings and positional encoding: solutions
#
# Worked solutions to the exercises of lesson 03 (`notebooks/03_embeddings_and_positions.ipynb`).
# Try them yourself first: each check tells you what is wrong in plain words. Every solution below
# is followed by its check, asserted, so the tests fail if a solution ever stops passing.

# %%
import math

import torch

from dalle_lessons import checkpoints
from dalle_lessons.config import get_preset
from dalle_lessons.exercises.l03_positions import (check_shift_matrix, check_similarity_by_offset,
                                                   check_sincos_grid)
from dalle_lessons.paths import data_dir
from dalle_lessons.positional import sinusoidal_table
from dalle_lessons.transformer import DalleTransformer

torch.set_printoptions(precision=4, sci_mode=False)

# %% [markdown]
# ### Exercise 1: fixed positions for an image grid
#
# Token `t` sits at row `t // width` and column `t % width` (a row holds `width` tokens). Each half
# is a 1-D sinusoidal table of width `dim/2`, indexed by the row or by the column, and the two halves
# are concatenated.
#
# Why not add two full-width tables? With the *same* fixed formula for rows and columns, the sum is
# symmetric: `PE(r) + PE(c) = PE(c) + PE(r)`, so token `(r, c)` and token `(c, r)` would get the same
# vector, and the model could not tell top-right from bottom-left. DALL·E can add because its row and
# column tables are two *different* learned tables.

# %%
def my_sincos_grid(height: int, width: int, dim: int) -> torch.Tensor:
    t = torch.arange(height * width)
    rows, cols = t // width, t % width
    row_part = sinusoidal_table(height, dim // 2)[rows]  # [h*w, dim/2]
    col_part = sinusoidal_table(width, dim // 2)[cols]  # [h*w, dim/2]
    return torch.cat([row_part, col_part], dim=1)


assert check_sincos_grid(my_sincos_grid)

grid = my_sincos_grid(8, 8, 16)
added = sinusoidal_table(8, 16)[torch.arange(64) // 8] + sinusoidal_table(8, 16)[torch.arange(64) % 8]
print("concatenated: token (1, 6) == token (6, 1)?", torch.equal(grid[1 * 8 + 6], grid[6 * 8 + 1]))
print("added:        token (1, 6) == token (6, 1)?", torch.equal(added[1 * 8 + 6], added[6 * 8 + 1]))

# %% [markdown]
# ### Exercise 2: moving by k positions is a rotation
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

# %% [markdown]
# ### Exercise 3 (experiment): what did training teach the positions?
#
# The mean over every start `p` is the mean of the `k`-th diagonal of the cosine-similarity matrix.
# Reading row 0 alone, as section 3 did, is exact only when the similarity depends on the offset
# alone, which a learned table does not promise.

# %%
def my_similarity_by_offset(table: torch.Tensor, max_offset: int) -> torch.Tensor:
    unit = torch.nn.functional.normalize(table.detach().double(), dim=-1)
    similarity = unit @ unit.T
    return torch.stack([similarity.diagonal(k).mean() for k in range(1, max_offset + 1)])


assert check_similarity_by_offset(my_similarity_by_offset)

# %%
torch.manual_seed(0)
cfg = get_preset("cpu").transformer
trained, untrained = checkpoints.load(data_dir() / "dalle-cpu.safetensors"), DalleTransformer(cfg)
measured = {}
for name, model in (("untrained", untrained), ("trained", trained)):
    text = my_similarity_by_offset(model.text_pos.embedding.weight[1:], 6)  # row 0 is the start vector's
    rows = my_similarity_by_offset(model.image_pos.row.weight, 6)
    measured[name] = text, rows
    print(f"{name:>9}  text offsets 1..6: {' '.join(f'{v:+.3f}' for v in text.tolist())}")
    print(f"{'':>9}  rows offsets 1..6: {' '.join(f'{v:+.3f}' for v in rows.tolist())}")

text = measured["trained"][0]
assert text[0] > 0.05 and text[0] > text[2] > text[4]  # trained text: neighbours more alike, fading
assert measured["untrained"][0].abs().max() < 0.05  # untrained: no notion of "nearby"
rows = measured["trained"][1]
assert rows[0].abs() < 0.05 and rows[3:].max() < -0.05  # rows: neighbours not alike, far rows apart

# %% [markdown]
# What the measurement says: before training, every offset is ≈ 0 (random vectors are nearly
# orthogonal). After training, neighbouring **text** positions became more alike than distant ones,
# with a similarity that fades with the offset and turns slightly negative: a weak, learned version of
# the sinusoids' locality, which nobody asked for. The **row** vectors did not learn that neighbours
# are alike (offset 1 stays near 0); what they did learn is that rows far apart differ (clearly
# negative from offset 4 on). The grid's fine geometry reaches the model another way: row and
# column vectors that are *distinct*, combined by attention. Small models learn only what the loss
# rewards, and a trained table need not look like the formula we might have guessed.

# %% [markdown]
# ## Check your understanding: answers
#
# 1. **Sum versus attention.** Addition is commutative: the sum over a caption is (sum of tokens) + (sum of
#    positions), and the second term is the same for any order, so the pairing of each token with its
#    position is lost. Attention compares the vectors *before* anything is summed: its dot products see
#    `red + position 1` against `circle + position 2`, and its softmax weights depend on those pairs
#    non-linearly, so moving a word to another position changes the result.
# 2. **Counting is not enough.** A causal token can infer its position only indirectly, for example from how
#    much weight it can give the first token (about `1/(t + 1)` of a uniform average), a signal that fades
#    as the sequence grows and that every layer would have to learn to decode. An explicit position vector
#    hands the model the same fact, exactly, at the cost of one addition; and a model without a causal mask
#    (a bidirectional encoder such as BERT) has nothing to count with at all.
# 3. **Flat or row + column.** The row + column table starts out knowing which tokens share a row or a
#    column (section 5's cross), and it needs only `2g` vectors, each trained by `g` tokens. The flat table
#    knows nothing until training, and each of its `g²` vectors is trained only by its own cell. What the
#    flat table can express that the sum cannot: a vector for a cell that is not "row part + column part",
#    for instance something special about one corner alone. The layers after the embedding can still
#    combine row and column non-additively, so the sum is less of a restriction than it looks.
# 4. **Why the column wins.** For two positions `p = r₁ + c` and `p' = r₂ + c`, with the row vectors nearly
#    orthogonal to each other and to `c`, `p · p' ≈ |c|²` and `|p| |p'| ≈ |r|² + |c|²`, so the cosine is about
#    `|c|² / (|r|² + |c|²)`; two positions sharing only a row give `|r|² / (|r|² + |c|²)`. The column vectors
#    grew longer than the row vectors, so the column's share is the larger. The last cell of this
#    notebook puts in the lengths of row 2 and column 5 (token 21 of the lesson) and compares with the
#    trained map.
#
# 5. **No longer sequences.** DALL·E's stream has a fixed length: at most 256 text tokens (padded to 256)
#    and exactly 1,024 image tokens. It never meets a position past the end, so extrapolation buys nothing,
#    and a learned table can fit whatever layout helps. An extra learned row would be whatever its
#    initialization drew (normal noise, std 0.02), a vector the trained layers have never seen; the model's
#    output there would be unpredictable, which is why the library raises an error instead.

# %%
g = cfg.image_grid
row_2, column_5 = trained.image_pos.row.weight[2].norm().item(), trained.image_pos.col.weight[5].norm().item()
predicted_column = column_5**2 / (row_2**2 + column_5**2)
predicted_row = row_2**2 / (row_2**2 + column_5**2)
unit = torch.nn.functional.normalize(trained.image_pos().detach().double(), dim=-1)
similarity = (unit @ unit[2 * g + 5]).view(g, g)
measured_column = torch.cat([similarity[:2, 5], similarity[3:, 5]]).mean().item()
measured_row = torch.cat([similarity[2, :5], similarity[2, 6:]]).mean().item()
print(f"|row 2| = {row_2:.2f}, |column 5| = {column_5:.2f}")
print(f"shared column: predicted {predicted_column:.2f}, measured {measured_column:.2f}")
print(f"shared row:    predicted {predicted_row:.2f}, measured {measured_row:.2f}")
assert abs(predicted_column - measured_column) < 0.1 and abs(predicted_row - measured_row) < 0.1
