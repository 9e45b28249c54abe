# %% [markdown]
# # 03 · Embeddings and positional encoding
#
# *Build DALL·E from Scratch, lesson 03.* Lesson 02 turned a caption into a list of integer ids.
# A transformer cannot compute with ids; it needs vectors. And it needs to know **where** each
# vector sits, because attention, left to itself, cannot tell a sentence from its anagram.

# %% [markdown]
# ## What you will build
#
# Every token that enters DALL·E's transformer becomes *token embedding + position embedding*:
#
# ```
# caption ──tokenizer──▶ text ids ─┐
#                                  ├─▶ [text | image] sequence ──transformer──▶ next-token logits
# image ──dVAE encoder──▶ image ids┘            ▲
#                                     this lesson: ids → vectors, plus "where am I?"
# ```
#
# By the end of this lesson you will have:
#
# 1. seen that a **token embedding** is a lookup table, and that a lookup is a one-hot vector times a matrix;
# 2. seen why attention must be **told** the order of its inputs: without positions,
#    *"a red circle left of a blue square"* and *"a blue square left of a red circle"* look the same;
# 3. built the **sinusoidal** positional encoding of *Attention Is All You Need* from scratch, and looked at it;
# 4. met **learned** positions, which GPT and DALL·E use;
# 5. built **row + column** embeddings for the image grid, DALL·E's way of telling the transformer where
#    an image token sits in the picture;
# 6. checked all of it against `dalle_lessons.positional`, which lesson 06 uses to build the transformer;
# 7. looked at what training did to the row and column vectors of the course's shipped transformer.
#
# Nothing is trained here: the cells run in seconds.

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from dalle_lessons.config import get_preset
from dalle_lessons.positional import (LearnedPositionalEmbedding, RowColumnPositionalEmbedding,
                                      SinusoidalPositionalEmbedding, sinusoidal_table)
from dalle_lessons.tokenizer import CaptionTokenizer

torch.manual_seed(0)
torch.set_grad_enabled(False)  # nothing is trained in this lesson: no gradients to track
torch.set_printoptions(precision=4, sci_mode=False)
plt.rcParams.update({"figure.dpi": 80})

preset = get_preset("cpu")  # the course default
cfg = preset.transformer
print(f"preset {preset.name!r}: {cfg.text_seq_len} text positions, "
      f"{cfg.image_grid}x{cfg.image_grid} = {cfg.image_seq_len} image positions, d_model = {cfg.d_model}")

# %% [markdown]
# ## 1. Token embeddings are a lookup table
#
# The tokenizer from lesson 02 gives each caption a fixed-length list of ids, padded with the pad id
# (`Ġ` marks the space in front of a word).

# %%
tok = CaptionTokenizer.load()
caption = "a red circle left of a blue square"
ids = tok.encode(caption)
print("tokens:", tok.tokens(caption))
print("ids:   ", ids)
print(f"vocabulary: {tok.vocab_size} tokens; every caption becomes {tok.text_seq_len} ids "
      f"(pad id {tok.pad_id} fills the rest)")

# %% [markdown]
# An **embedding** gives every id in the vocabulary its own vector of `d` numbers, stored as the rows
# of a `[vocab_size, d]` matrix. Embedding a sequence means picking out one row per id. Those rows start
# random; training moves them so that tokens used alike end up with similar vectors.
#
# Mathematically, picking row `i` is the same as multiplying a **one-hot** vector (all zeros, a 1 at
# position `i`) by the matrix. `nn.Embedding` does the lookup because it is far cheaper: it reads `d`
# numbers per token instead of multiplying `vocab_size × d` of them. We use a small width `d = 16` so
# that we can print and plot; the course model uses `d_model = 384`.

# %%
d = 16
torch.manual_seed(0)
token_emb = nn.Embedding(tok.vocab_size, d)  # a seeded table of vocab_size random vectors

x = torch.tensor(ids)  # [T]
one_hot = F.one_hot(x, tok.vocab_size).float()  # [T, vocab_size]
via_matmul = one_hot @ token_emb.weight  # [T, vocab_size] @ [vocab_size, d] -> [T, d]
via_lookup = token_emb(x)  # row lookup -> [T, d]
assert torch.allclose(via_matmul, via_lookup)

print(f"one-hot {tuple(one_hot.shape)} @ table {tuple(token_emb.weight.shape)} = {tuple(via_matmul.shape)}")
print(f"lookup of {len(ids)} ids:                   {tuple(via_lookup.shape)}  (the same numbers)")
print("embedding of the first token:", via_lookup[0])

# %% [markdown]
# ## 2. Attention cannot see order
#
# Lesson 05 builds attention properly. All we need here is its core: every token scores every other
# token with a dot product, and takes a weighted average of their values. Nothing in that recipe
# mentions **where** a token is. Shuffle the input tokens and the output rows come out shuffled the
# same way, with the same values: attention is *permutation-equivariant*.

# %%
gen = torch.Generator().manual_seed(0)
w_q, w_k, w_v = (torch.randn(d, d, generator=gen) / d**0.5 for _ in range(3))


def attention(x: torch.Tensor) -> torch.Tensor:
    """One head of self-attention without a mask: [T, d] -> [T, d]."""
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    weights = torch.softmax(q @ k.T / d**0.5, dim=-1)  # [T, T]: how much token i looks at token j
    return weights @ v


emb = token_emb(x)
perm = torch.randperm(len(ids), generator=gen)
out, out_of_shuffled = attention(emb), attention(emb[perm])
equivariant = torch.allclose(out[perm], out_of_shuffled, atol=1e-5)  # equal up to float rounding
assert equivariant
print("shuffle:", perm.tolist())
print("attention(shuffled tokens) == shuffled attention(tokens):", equivariant)

# %% [markdown]
# (DALL·E's transformer uses a *causal* mask, which breaks this symmetry a little: a token can count
# how many tokens it is allowed to see. Real models do not rely on that; they are given positions.)
#
# ### Two captions, one bag of vectors
#
# Here is why that matters for DALL·E. These two captions ask for different pictures, yet they use
# exactly the same tokens, the same number of times:

# %%
caption_a = "a red circle left of a blue square"
caption_b = "a blue square left of a red circle"
ids_a, ids_b = torch.tensor(tok.encode(caption_a)), torch.tensor(tok.encode(caption_b))
print("A:", tok.tokens(caption_a))
print("B:", tok.tokens(caption_b))
assert not torch.equal(ids_a, ids_b)  # different sequences ...
assert torch.equal(ids_a.sort().values, ids_b.sort().values)  # ... of the same tokens


def same_bag(u: torch.Tensor, v: torch.Tensor) -> bool:
    """Do the rows of u and v hold the same vectors, as often, in any order?"""
    rows_u, counts_u = torch.unique(u, dim=0, return_counts=True)  # unique sorts the rows
    rows_v, counts_v = torch.unique(v, dim=0, return_counts=True)
    return rows_u.shape == rows_v.shape and torch.equal(rows_u, rows_v) and torch.equal(counts_u, counts_v)


emb_a, emb_b = token_emb(ids_a), token_emb(ids_b)
assert same_bag(emb_a, emb_b)
assert torch.allclose(emb_a.sum(0), emb_b.sum(0), atol=1e-6)
print(f"same bag of token vectors: {same_bag(emb_a, emb_b)}")
blind = torch.allclose(attention(emb_a).mean(0), attention(emb_b).mean(0), atol=1e-5)
assert blind
print(f"attention, averaged over tokens, gives the same result for both: {blind}")

# %% [markdown]
# Without positions the transformer receives the same **set** of vectors for both captions, so
# whatever it computes, it computes the same picture for both (up to shuffling its outputs). "Which
# object is on the left?" is simply not in its input.
#
# The fix is to **add** a vector that depends on the position to each token's vector. Any table of
# distinct position vectors will do for now (here a random one); the rest of the lesson is about
# which table to use.

# %%
torch.manual_seed(1)
pos_emb = nn.Embedding(len(ids), d)  # one vector per position 0..T-1
positions = pos_emb.weight  # [T, d]

with_pos_a, with_pos_b = emb_a + positions, emb_b + positions
assert not same_bag(with_pos_a, with_pos_b)
gap = (attention(with_pos_a).mean(0) - attention(with_pos_b).mean(0)).abs().max()
assert gap > 1e-3
print(f"same bag once positions are added: {same_bag(with_pos_a, with_pos_b)}")
print(f"attention, averaged over tokens, now differs by up to {gap:.2f}")
print(f"...but the plain sums still agree: {torch.allclose(with_pos_a.sum(0), with_pos_b.sum(0), atol=1e-5)}")

# %% [markdown]
# The last line is worth a second look. Summing `token + position` over a caption gives
# *(sum of tokens) + (sum of positions)*: still order-blind, because addition forgets which position
# went with which token. Positions help only because they are added **before** a layer that mixes
# vectors non-linearly: attention's dot products compare `red + position 1` with `circle + position 2`,
# so "red at position 1" and "red at position 5" now behave differently.
#
# ## 3. Sinusoidal positions, from scratch
#
# *Attention Is All You Need* (Vaswani et al., 2017) used a fixed formula rather than a learned table.
# For position `pos` and dimension pair `i = 0, 1, ..., dim/2 - 1`:
#
# $$PE[pos, 2i] = \sin\!\left(\frac{pos}{10000^{2i/dim}}\right), \qquad
#   PE[pos, 2i+1] = \cos\!\left(\frac{pos}{10000^{2i/dim}}\right)$$
#
# Read it as a row of clocks. Pair `i` is a hand turning at `ω_i = 1/10000^{2i/dim}` radians per position:
# the first pair turns a full radian each step, the last barely moves over thousands of positions.
# Together, their readings give every position a distinct fingerprint, like the digits of a number
# written in many bases at once.

# %%
n_positions, dim = 64, 32
pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # [64, 1]
two_i = torch.arange(0, dim, 2, dtype=torch.float64)  # [16]: 0, 2, 4, ..., 30
omega = 1.0 / 10000 ** (two_i / dim)  # radians per position, one speed per pair
angle = pos * omega  # [64, 16]

pe = torch.zeros(n_positions, dim, dtype=torch.float64)
pe[:, 0::2] = torch.sin(angle)  # even columns: sines
pe[:, 1::2] = torch.cos(angle)  # odd columns: cosines of the same angles

print("table:", tuple(pe.shape))
print("position 0:", pe[0, :8].float(), "...")
print("position 1:", pe[1, :8].float(), "...")
print(f"wavelengths: {2 * torch.pi / omega[0]:.1f} positions (pair 0) up to {2 * torch.pi / omega[-1]:,.0f} (pair {dim // 2 - 1})")

# %% [markdown]
# Position 0 is `[0, 1, 0, 1, ...]` (sin 0 = 0, cos 0 = 1), and every value lies in [-1, 1], so the
# positions never swamp the token vectors they are added to.
#
# **Check it against the library.** `sinusoidal_table` is the same formula; `SinusoidalPositionalEmbedding`
# wraps it in a module. Like every position module in the package, calling it with `n_tokens` returns the
# `[n_tokens, dim]` table for positions `0 .. n_tokens-1`, ready to be added to `[batch, n_tokens, dim]`
# token embeddings. The table is a *non-persistent buffer*: it moves with `.to(device)` but is not saved
# in checkpoints, because a formula is not a weight.

# %%
assert torch.allclose(pe.float(), sinusoidal_table(n_positions, dim), atol=1e-6)

sinusoidal = SinusoidalPositionalEmbedding(n_positions, dim)
assert torch.allclose(pe.float(), sinusoidal(), atol=1e-6)
assert torch.equal(sinusoidal(10), sinusoidal()[:10])
print(sinusoidal)
print(f"parameters: {sum(p.numel() for p in sinusoidal.parameters())}, "
      f"saved tensors: {list(sinusoidal.state_dict())}")

batch = torch.zeros(2, 10, dim)  # a [batch, T, dim] stand-in for token embeddings
print("token embeddings + positions:", tuple((batch + sinusoidal(batch.shape[1])).shape))

# %% [markdown]
# Here are a few of the clocks. Low dimensions oscillate fast; high ones change slowly. (Dimension 0
# turns a whole radian per step, so sampled at whole positions it looks jagged.)

# %%
fig, ax = plt.subplots(figsize=(8, 3))
for column in (0, 2, 6, 10, 16):
    ax.plot(pe[:, column], label=f"dim {column}")
ax.set(xlabel="position", ylabel="PE[position, dim]", title="sinusoidal encoding: one sine per dimension pair")
ax.legend(loc="lower left", fontsize=8, ncol=5)
plt.tight_layout()
plt.show()

# %% [markdown]
# The whole table as a picture (left), and how similar each position's vector is to every other
# position's, measured by the dot product `PE[p] · PE[q]` (right).

# %%
similarity = pe @ pe.T  # [64, 64]

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
image = left.imshow(pe, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
left.set(xlabel="dimension", ylabel="position", title="the table PE")
fig.colorbar(image, ax=left)
image = right.imshow(similarity, cmap="viridis")
right.set(xlabel="position q", ylabel="position p", title="similarity PE[p] · PE[q]")
fig.colorbar(image, ax=right)
plt.tight_layout()
plt.show()

# %% [markdown]
# The bright band along the diagonal says **nearby positions have similar encodings**, and the
# similarity falls off (not perfectly smoothly) with distance. Better still, it depends *only* on the
# distance: `PE[p] · PE[p+k] = Σ_i cos(k·ω_i)` for every `p`, because each pair is a point on a circle
# and the dot product of two such points depends only on the angle between them. That is what the
# paper hoped would let the model attend "by relative position": moving `k` steps is the same rotation
# of every pair wherever you start (exercise 2 builds that rotation).

# %%
for k in (0, 1, 2, 4, 8, 16, 32):
    print(f"offset {k:2d}: PE[p] · PE[p+{k}] = {similarity[0, k]:6.3f}")

for k in (1, 5, 20):  # the same for every starting position p
    assert torch.allclose(similarity.diagonal(k), similarity[0, k].expand(n_positions - k))
assert similarity[0, 1] > similarity[0, 2] > similarity[0, 4] > similarity[0, 16]

# %% [markdown]
# ## 4. Learned positions
#
# The other option is to **learn** the table: one trainable vector per position, an `nn.Embedding` whose
# ids are `0, 1, 2, ...`. Vaswani et al. tried this too and reported nearly identical results; they kept
# sinusoids in the hope that they extrapolate to longer sequences. GPT-2, GPT-3 and **DALL·E learn
# their positions**: the sequence length is fixed anyway (256 text tokens and 1024 image tokens in the
# paper), and a learned table can discover whatever layout helps.
#
# A learned table starts as noise (normal, std 0.02, as GPT-2 does) and has no notion of "nearby"
# until training gives it one. Compare its similarity picture with the sinusoids' (both as cosine
# similarity, so the scales match):

# %%
learned = LearnedPositionalEmbedding(n_positions, dim, generator=torch.Generator().manual_seed(0))
print(learned)
print(f"parameters: {sum(p.numel() for p in learned.parameters()):,} = {n_positions} positions x {dim}")


def cosine_similarity(table: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(table.detach().double(), dim=-1)
    return unit @ unit.T


fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
for ax, table, title in zip(axes, (pe, learned()), ("sinusoidal", "learned, before training")):
    image = ax.imshow(cosine_similarity(table), cmap="viridis", vmin=-1, vmax=1)
    ax.set(xlabel="position q", ylabel="position p", title=title)
fig.colorbar(image, ax=axes)
plt.show()

off_diagonal = ~torch.eye(n_positions, dtype=torch.bool)
neighbours = cosine_similarity(learned()).diagonal(1).mean()
print(f"cosine similarity of neighbouring positions: sinusoidal {cosine_similarity(pe).diagonal(1).mean():.3f}, "
      f"learned (untrained) {neighbours:.3f}")
assert neighbours.abs() < 0.2

# %% [markdown]
# For DALL·E's text, a learned table has one row per text position: `text_seq_len` rows. Asking a
# table for more positions than it was built with is an error, not a silent wrap-around:

# %%
text_pos = LearnedPositionalEmbedding(cfg.text_seq_len, cfg.d_model, generator=torch.Generator().manual_seed(0))
print(f"text positions: {tuple(text_pos().shape)}, {sum(p.numel() for p in text_pos.parameters()):,} parameters")
try:
    text_pos(cfg.text_seq_len + 1)
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# ## 5. Positions on the image grid
#
# The dVAE of lesson 04 turns a 32×32 picture into an 8×8 grid of image tokens. The transformer reads them
# as one sequence in **raster order**: row by row, left to right, like text on a page. Token `t` sits at
# row `t // 8` and column `t % 8`.

# %%
g = cfg.image_grid
t = torch.arange(g * g)
rows, cols = t // g, t % g

fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
for ax, grid, title in zip(axes, (t, rows, cols), ("raster index t", "row = t // 8", "column = t % 8")):
    ax.imshow(grid.reshape(g, g), cmap="Blues", vmin=0, vmax=1.6 * int(grid.max()))
    for index in range(g * g):
        ax.text(index % g, index // g, int(grid[index]), ha="center", va="center", fontsize=7)
    ax.set(title=title, xticks=[], yticks=[])
plt.tight_layout()
plt.show()

# %% [markdown]
# A flat, 1-D position table treats this as a sentence, and that hides the picture's geometry:
#
# - token 7 (top-right corner) and token 8 (start of the second row) are **neighbours** in the
#   sequence but opposite ends of the image;
# - token 3 and token 11 touch in the image (one above the other) but are **8 apart** in the sequence.
#
# DALL·E instead gives each image token **a row embedding plus a column embedding**:
#
# $$P[t] = \text{row}[t \,//\, g] + \text{col}[t \,\%\, g]$$
#
# Every token in row 3 shares `row[3]`; every token in column 5 shares `col[5]`. The model is told
# directly which tokens line up, and needs `2g` vectors instead of `g²`: 16 instead of 64 here, 64
# instead of 1024 for the paper's 32×32 grid. Here it is from scratch, with two seeded `nn.Embedding`
# tables:

# %%
D = cfg.d_model
torch.manual_seed(0)
row_emb, col_emb = nn.Embedding(g, D), nn.Embedding(g, D)
nn.init.normal_(row_emb.weight, std=0.02)
nn.init.normal_(col_emb.weight, std=0.02)

image_positions = row_emb(rows) + col_emb(cols)  # [64, D]: token t gets row[t // g] + col[t % g]
print(f"{g}x{g} grid: {tuple(image_positions.shape)} position vectors from "
      f"{row_emb.weight.shape[0]} + {col_emb.weight.shape[0]} trained vectors")

# %% [markdown]
# **Check it against the library.** `RowColumnPositionalEmbedding` holds the two tables as `row` and
# `col`; load ours into it and it must produce the same 64 vectors, in the same raster order.

# %%
row_column = RowColumnPositionalEmbedding(g, D)
row_column.load_state_dict({"row.weight": row_emb.weight, "col.weight": col_emb.weight})
assert torch.equal(row_column(), image_positions)
assert torch.equal(row_column(10), image_positions[:10])  # the first tokens, as during generation
print(row_column)
print(f"parameters: {sum(p.numel() for p in row_column.parameters()):,} "
      f"(a flat table for {g * g} positions would need {g * g * D:,})")

# %% [markdown]
# Because tokens in the same row share a vector, the structure is there **before any training**. Pick
# the token at row 2, column 5, and colour every token of the grid by how similar its position vector is
# to that token's. A flat learned table (left) knows only "same token or not"; the row + column table
# (right) already draws a cross: same row or same column, half the vector in common.

# %%
flat = LearnedPositionalEmbedding(g * g, D, generator=torch.Generator().manual_seed(0))
query = 2 * g + 5  # row 2, column 5

fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
maps = {}
for ax, (name, table) in zip(axes, (("flat learned", flat()), ("row + column", row_column()))):
    maps[name] = cosine_similarity(table)[query].reshape(g, g)
    image = ax.imshow(maps[name], cmap="viridis", vmin=-0.2, vmax=1)
    ax.set(title=f"{name}: similarity to token {query}", xticks=range(g), yticks=range(g))
    ax.title.set_fontsize(9)
fig.colorbar(image, ax=axes)
plt.show()

cross = maps["row + column"]
in_line = torch.cat([cross[2, :5], cross[2, 6:], cross[:2, 5], cross[3:, 5]])  # same row or column
elsewhere = cross[torch.arange(g) != 2][:, torch.arange(g) != 5]
print(f"row + column: same row/column {in_line.mean():.2f}, elsewhere {elsewhere.mean():.2f}")
assert in_line.mean() > 0.35 and elsewhere.abs().mean() < 0.15

# %% [markdown]
# ### After training
#
# That is the structure at initialization. Does training keep it? The shipped transformer of lesson 06
# (`data/dalle-cpu.safetensors`, trained by `python -m dalle_lessons train dalle --preset cpu --seed 0`
# for 3,000 steps) has the same two tables, started from the same kind of noise (normal, std 0.02). Here
# is the same picture for its trained row + column vectors, beside our untrained ones:

# %%
from dalle_lessons import checkpoints
from dalle_lessons.paths import data_dir

shipped = checkpoints.load(data_dir() / "dalle-cpu.safetensors")  # lesson 06's trained transformer
trained_table = shipped.image_pos()  # [64, D]: row[t // g] + col[t % g] for every image token
assert trained_table.shape == image_positions.shape
maps["row + column, trained"] = cosine_similarity(trained_table)[query].reshape(g, g)

fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
for ax, name, label in zip(axes, ("row + column", "row + column, trained"), ("untrained", "trained")):
    image = ax.imshow(maps[name], cmap="viridis", vmin=-0.2, vmax=1)
    ax.set(title=f"row + column, {label}:\nsimilarity to token {query}", xticks=range(g), yticks=range(g))
    ax.title.set_fontsize(9)
fig.colorbar(image, ax=axes)
plt.show()

# %% [markdown]
# The cross survives training, sharper than before. Split by where a token sits relative to token 21, and
# with the lengths of the row and column vectors (both started at about `0.02 · √D ≈ 0.39`):

# %%
def same_row_column_elsewhere(similarity: torch.Tensor, r: int = 2, c: int = 5) -> list[float]:
    """Mean similarity to cell (r, c) of the cells in its row, in its column, and everywhere else."""
    same_row = torch.cat([similarity[r, :c], similarity[r, c + 1:]]).mean()
    same_column = torch.cat([similarity[:r, c], similarity[r + 1:, c]]).mean()
    elsewhere = similarity[torch.arange(g) != r][:, torch.arange(g) != c].mean()
    return [same_row.item(), same_column.item(), elsewhere.item()]


for name, rows_table, cols_table in (("untrained", row_emb.weight, col_emb.weight),
                                     ("trained", shipped.image_pos.row.weight, shipped.image_pos.col.weight)):
    key = "row + column" if name == "untrained" else "row + column, trained"
    same_row, same_column, rest = same_row_column_elsewhere(maps[key])
    print(f"{name:>9}: same row {same_row:5.2f}, same column {same_column:5.2f}, elsewhere {rest:5.2f}   "
          f"|row| {rows_table.norm(dim=-1).mean():.2f}, |column| {cols_table.norm(dim=-1).mean():.2f}")
trained_split = same_row_column_elsewhere(maps["row + column, trained"])
assert min(trained_split[:2]) > 0.2 and abs(trained_split[2]) < 0.15

# %% [markdown]
# Training kept the design: a token's position vector still says "row 2" and "column 5", and cells that
# share neither stay close to 0. It also made both kinds of vector longer, so positions weigh more
# against the token embeddings they are added to, and the column vectors grew longer than the row vectors,
# so a shared column now counts for more than a shared row. Whether training also made *neighbouring* rows
# or neighbouring text positions alike, as sinusoids are by construction, is exercise 3's experiment:
# predict it before you measure.

# %% [markdown]
# How much does this save? Position parameters for the image tokens, per preset:

# %%
for name in ("cpu", "colab", "paper"):
    c = get_preset(name).transformer
    print(f"{name:>5}: {c.image_grid:2d}x{c.image_grid:<2d} grid, d_model {c.d_model:4d}: "
          f"flat {c.image_seq_len * c.d_model:>9,}  row + column {2 * c.image_grid * c.d_model:>7,}")

# %% [markdown]
# The saving is real but small next to a 12-billion-parameter model. The better reason is the one in
# the picture: the model starts out knowing which tokens share a row or a column, which is exactly the
# structure DALL·E's row and column attention masks (lesson 05) are built around.
#
# ## 6. How DALL·E puts it together
#
# DALL·E's transformer reads one stream, `[text | image]`: 256 text tokens then 1024 image tokens in the
# paper, 24 + 64 here. Text and image get **separate** position tables:
#
# - **text**: a learned table with one vector per text position (section 4);
# - **image**: learned row and column embeddings (section 5), indexed by the image token's own place
#   in the grid. The first image token is "row 0, column 0", not "position 24".
#
# The two token vocabularies are separate too (text ids and image ids are different tables), which
# lesson 06 builds. Here are the position vectors of the whole stream:

# %%
stream_positions = torch.cat([text_pos(), row_column()])  # [24 + 64, D]
print(f"[text | image] positions: {tuple(text_pos().shape)} + {tuple(row_column().shape)} "
      f"= {tuple(stream_positions.shape)}")

# %% [markdown]
# One more DALL·E detail concerns **padding**. Our caption used only some of its 24 text positions; the
# rest are pad ids:

# %%
n_pad = ids.count(tok.pad_id)
print(f"{caption!r}: {len(ids) - n_pad} caption tokens, {n_pad} pads")

# %% [markdown]
# A usual transformer would embed every pad with one shared pad vector. DALL·E instead learns a
# **separate pad embedding for each text position**: pad at position 9 and pad at position 20 are
# different learned vectors, used only where the caption has no token. Lesson 06 builds it, together
# with the rest of the transformer, on top of `dalle_lessons.positional`.
#
# ## 7. Exercises
#
# Each exercise asks for something this lesson has not shown: a variation, a new piece, or an
# experiment. Replace `raise NotImplementedError` with your code and run the cell below it; the check
# says, in plain words, what is wrong. Solutions are in [solutions/03_embeddings_and_positions.ipynb](solutions/03_embeddings_and_positions.ipynb).

# %%
from dalle_lessons.exercises.l03_positions import (check_shift_matrix, check_similarity_by_offset,
                                                   check_sincos_grid)

# %% [markdown]
# ### Exercise 1: fixed positions for an image grid
#
# DALL·E learns its row and column vectors (section 5). Later image models (MAE, many ViTs) use a
# **fixed** 2-D version of section 3's sinusoids instead: for the token at row `r`, column `c` of a
# `height × width` grid, the first `dim/2` numbers are the 1-D sinusoidal encoding of `r` (a table of
# width `dim/2`) and the last `dim/2` the encoding of `c`. Write `my_sincos_grid(height, width, dim)`
# returning the `[height*width, dim]` table in raster order. Grids need not be square here, and `dim`
# is a multiple of 4. You may use `sinusoidal_table` for the 1-D parts.
#
# *Think first:* why concatenate the two halves rather than **add** a row table and a column table of
# full width, as DALL·E does with its learned ones? (The check tells you if you try.)

# %%
def my_sincos_grid(height: int, width: int, dim: int) -> torch.Tensor:
    # Your code here.
    raise NotImplementedError


ok = check_sincos_grid(my_sincos_grid)

# %% [markdown]
# ### Exercise 2: moving by k positions is a rotation
#
# Section 3 claimed that stepping `k` positions ahead is the same linear map wherever you start. Build
# it: return the `[dim, dim]` matrix `M` with `M @ PE[pos] = PE[pos + k]` for every `pos`.
# *Hint:* use `sin(a + b) = sin a cos b + cos a sin b` and `cos(a + b) = cos a cos b − sin a sin b`
# with `a = pos·ω_i` and `b = k·ω_i`. Each `(sin, cos)` pair only needs its own 2×2 block on the diagonal.

# %%
def my_shift_matrix(k: int, dim: int) -> torch.Tensor:
    # Your code here.
    raise NotImplementedError


ok = check_shift_matrix(my_shift_matrix)

# %% [markdown]
# ### Exercise 3 (experiment): what did training teach the positions?
#
# Section 4's learned table started as noise, with no notion of "nearby". The shipped model
# (`data/dalle-cpu.safetensors`, lesson 06) trained its text positions and its image row and column
# vectors for 3000 steps. **Predict before you measure:** after training, are neighbouring text
# positions more alike than distant ones, as with sinusoids? And neighbouring image rows?
#
# To measure it, write `my_similarity_by_offset(table, max_offset)`: for `k = 1 .. max_offset`, the
# **mean** cosine similarity of `table[p]` and `table[p + k]` over every starting position `p`. Section 3
# read these numbers off row 0 of the similarity matrix; that was enough for sinusoids, but is it for a
# learned table? Then run the cell after the check.

# %%
def my_similarity_by_offset(table: torch.Tensor, max_offset: int) -> torch.Tensor:
    # Your code here.
    raise NotImplementedError


ok = check_similarity_by_offset(my_similarity_by_offset)

# %%
from dalle_lessons import checkpoints
from dalle_lessons.paths import data_dir
from dalle_lessons.transformer import DalleTransformer

if not ok:
    print("Finish exercise 3 first, then run this cell.")
else:
    torch.manual_seed(0)
    trained, untrained = checkpoints.load(data_dir() / "dalle-cpu.safetensors"), DalleTransformer(cfg)
    for name, model in (("untrained", untrained), ("trained", trained)):
        text = my_similarity_by_offset(model.text_pos.embedding.weight[1:], 6)  # row 0 is the start vector's
        rows = my_similarity_by_offset(model.image_pos.row.weight, 6)
        print(f"{name:>9}  text offsets 1..6: {' '.join(f'{v:+.3f}' for v in text.tolist())}")
        print(f"{'':>9}  rows offsets 1..6: {' '.join(f'{v:+.3f}' for v in rows.tolist())}")

# %% [markdown]
# ## Takeaways
#
# - An embedding is a lookup table: one-hot times a matrix, done as a row lookup. Its rows are learned.
# - Attention is blind to order. Without positions, *"a red circle left of a blue square"* and
#   *"a blue square left of a red circle"* give the transformer the same set of vectors. Positions are
#   **added** to token embeddings before attention, whose non-linear mixing makes them count.
# - Sinusoidal positions are a fixed formula: values in [-1, 1], similarity depending only on distance, a
#   shift by `k` a rotation of each (sin, cos) pair. Learned positions are a trained table, noise until
#   training shapes them.
# - For an image grid, a row embedding plus a column embedding (`2g` vectors instead of `g²`) tells the
#   model which tokens share a row or a column before any training; the shipped model's trained tables
#   keep that cross, with the column counting for more than the row.
# - **Getting DALL·E right:** DALL·E does not use the sinusoids of the original Transformer. Like GPT-3 it
#   **learns** its positions, with **separate** tables for text and image (a learned **row** plus a learned
#   **column** embedding); and its padding is not one shared pad vector but one learned pad embedding per
#   text position.
#
# ## Check your understanding
#
# 1. Summing `token + position` over a caption is still blind to word order, yet attention over the same
#    vectors is not. Why the difference?
# 2. With a causal mask, a token "can count how many tokens it is allowed to see" (section 2). Why do
#    causal models still get explicit positions?
# 3. Compare a flat learned table of `g²` image positions with a row + column table of `2g` vectors. What
#    does each give the model from the start, and what can the flat table express that row + column cannot?
# 4. In the trained row + column map, a shared column makes two positions more alike than a shared row. If
#    different rows' and columns' vectors are nearly orthogonal, what is the cosine similarity of two
#    positions that share only a column, in terms of the vector lengths? Check it against the printed
#    numbers.
# 5. A sinusoidal table can be evaluated at any position; section 4's learned table refuses a position past
#    its end. Why did DALL·E not need the sinusoids' ability to go further, and what would a learned
#    table's extra row be if you simply added one?
#
# The answers are in the [solutions notebook](solutions/03_embeddings_and_positions.ipynb).
#
# **Next: [04 · the discrete VAE](04_discrete_vae.ipynb)**, which turns images into the grid of tokens
# these row and column embeddings describe.
