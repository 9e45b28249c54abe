# %% [markdown]
# # 05 · Attention and DALL·E's sparse masks: solutions
#
# Worked solutions to the exercises of lesson 05 (`notebooks/05_attention_and_masks.ipynb`).
# Try them yourself first: each check tells you what is wrong in plain words. Every solution below
# is followed by its check, asserted, so the tests fail if a solution ever stops passing.

# %%
import torch

from dalle_lessons.attention import causal_mask, column_mask, conv_mask, dalle_mask, row_mask
from dalle_lessons.exercises.l05_attention import (check_alibi_attention, check_layers_to_connect,
                                                   check_pad_mask)

torch.set_grad_enabled(False)
torch.set_printoptions(precision=4, sci_mode=False)

# %% [markdown]
# ### Exercise 1: attention that prefers nearby keys
#
# The penalty is one `[H, n, n]` tensor: the distances `i − j` (a `[n, n]` table from broadcasting a
# column of query indices against a row of key indices) times each head's slope,
# `slopes[:, None, None]`. It is added **after** the `1/√d` scaling, so that the slope means "score
# points per step back" whatever the head width. The causal mask stays: the penalty makes far keys
# less attractive, but a future key at distance `−1` would get a *bonus*, and it must not be seen at all.

# %%
def my_alibi_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    n = q.shape[-2]
    index = torch.arange(n)
    distance = (index[:, None] - index[None, :]).to(q.dtype)  # [n, n]: i - j
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5 - slopes[:, None, None] * distance  # [B, H, n, n]
    scores = scores.masked_fill(~causal_mask(n), float("-inf"))
    return scores.softmax(dim=-1) @ v


assert check_alibi_attention(my_alibi_attention)

# %% [markdown]
# What the slopes do: with queries and keys all zero, the scores are the penalty alone, and each head's
# weights over the keys decay geometrically with the distance, faster for a steeper slope.

# %%
n, slopes = 6, torch.tensor([2.0, 0.5, 0.0])
zeros, values = torch.zeros(1, 3, n, 4), torch.eye(n)[None, None].expand(1, 3, n, n)
weights = my_alibi_attention(zeros, zeros, values, slopes)[0, :, -1]  # the last query's weights, per head
for slope, row in zip(slopes.tolist(), weights):
    print(f"slope {slope:.1f}: last token's weights on keys 0..5 = {row}")
assert weights[0, -1] > 0.8 and torch.allclose(weights[2], torch.full((n,), 1 / n))

# %% [markdown]
# ### Exercise 2: masking the pads, the road DALL·E did not take
#
# A pad is a **key** nobody may read: a column of the mask, `mask[b, :, j] = False` where
# `text_ids[b, j]` is a pad. Broadcasting does it for the whole batch at once: `is_pad[:, None, :]` is
# `[B, 1, n]`, one row of key flags per caption. The diagonal has to survive: in an empty caption the
# first text query may attend only to keys `≤ 0`, all pads, and a row with no allowed key turns into NaN
# after the softmax.

# %%
def my_pad_mask(text_ids: torch.Tensor, g: int, pad_id: int) -> torch.Tensor:
    B, T = text_ids.shape
    n = T + g * g
    is_pad = torch.zeros(B, n, dtype=torch.bool)
    is_pad[:, :T] = text_ids == pad_id  # image tokens are never pads
    itself = torch.eye(n, dtype=torch.bool)
    return dalle_mask(T, g, "full") & (~is_pad[:, None, :] | itself)  # [B, n, n]


assert check_pad_mask(my_pad_mask)

ids = torch.tensor([[5, 9, 3, 0], [0, 0, 0, 0]])  # a caption of 3 tokens, and the empty caption
mask = my_pad_mask(ids, 2, pad_id=0)
print("image token 0 sees text keys:", mask[0, 4, :4].int().tolist(), "(caption)",
      mask[1, 4, :4].int().tolist(), "(empty caption)")

# %% [markdown]
# With the empty caption the image tokens see no text at all: the model is unconditional, which is what
# guidance wants. DALL·E's per-position pad embeddings give the same situation a different form: the
# pads are visible, but they are learned vectors that say "no word here, at position t".
#
# ### Exercise 3 (experiment): how deep before every token has heard from every other?
#
# Start from the identity (zero layers: every token has heard only itself), apply one mask per layer
# with section 5's boolean product, and compare the whole reach matrix with the causal triangle (never
# with an all-True matrix: nobody hears from the future).

# %%
def my_layers_to_connect(masks: list[torch.Tensor], max_layers: int = 30) -> int | None:
    n = masks[0].shape[0]
    dense, reached = causal_mask(n), torch.eye(n, dtype=torch.bool)
    for depth in range(1, max_layers + 1):
        reached = (masks[(depth - 1) % len(masks)].int() @ reached.int()) > 0
        if torch.equal(reached, dense):
            return depth
    return None


assert check_layers_to_connect(my_layers_to_connect)

# %%
g = 8
stacks = {
    "row (paper)": [row_mask(g)],
    "column": [column_mask(g)],
    "conv k=3 (paper)": [conv_mask(g, 3)],
    "conv k=3, strictly 2-D": [conv_mask(g, 3, wraparound=False)],
    "row, column": [row_mask(g), column_mask(g)],
}
depths = {name: my_layers_to_connect(stack, 30) for name, stack in stacks.items()}
for name, depth in depths.items():
    print(f"{name:>24}: " + ("never" if depth is None else f"{depth} layers"))
assert depths == {"row (paper)": 8, "column": None, "conv k=3 (paper)": 7, "conv k=3, strictly 2-D": None,
                  "row, column": 2}

# %% [markdown]
# What the measurement says:
#
# - **Row alone** gets there, in `g = 8` layers: the paper's window wraps into the row above, so each
#   layer carries information one row further down (and along the row).
# - **Column alone** never does: no layer ever connects two columns.
# - **Conv `k = 3`, wrapping**, needs 7: each layer reaches one row up, and the wrap carries information
#   across the edges.
# - **Conv `k = 3`, strictly 2-D**, never does, which is the surprise. In its own row a token reads only
#   to its left; to get information from the upper right it must climb one row per column it moves
#   right, so a token 5 columns to the right and 1 row up is out of reach at any depth.
# - **Row, then column** needs 2, the fastest by far: that is why the paper alternates them.
#
# A stack that never connects is not useless (every token still sees all the text), but some pairs of
# image cells can then only be coordinated through the caption.

# %% [markdown]
# ## Check your understanding: answers
#
# 1. **The √d.** A dot product of two vectors of 64 independent entries of variance 1 has variance 64, a
#    spread of about 8. Fed to a softmax, scores that far apart give nearly all the weight to the largest
#    one: the softmax saturates, its gradient for every other key is close to 0, and the heads barely learn
#    which keys matter. Dividing by √d brings the variance back to 1 at any width, since the *standard
#    deviation* grows as √d. Dividing by `d` would shrink the variance to `1/d`: all scores near 0, nearly
#    uniform attention, and weights that must grow large before a head can be selective.
# 2. **One pass, all prefixes.** With the causal mask, the output at position `t` depends only on tokens
#    `0 … t` (every other operation acts on one position at a time), so it is exactly what a pass over that
#    prefix alone computes. For the same reason a token's keys and values, in every layer, depend only on the
#    tokens up to it: appending new tokens never changes them, so computing them once and keeping them (the
#    KV cache) gives exactly the full pass.
# 3. **Text first.** The stream is `[text | image]`, modelled one token at a time: the caption is predicted
#    before any image token exists. A text position that read image keys would read the future: in training
#    it could copy what it should predict, and when generating those tokens are not there yet. Every image
#    token comes after the whole caption, so all of the text is in its past, and reading it is exactly what
#    the picture needs in order to follow the caption.
# 4. **Sparse masks and compute.** Dense attention scores every pair, a number that grows with the square of
#    the sequence, while a row or column window grows only linearly; at 88 tokens the whole matrix is small,
#    at 1,280 it is not. And a mask saves work only if the kernel skips the masked pairs, as the Sparse
#    Transformer's block-sparse GPU kernels do. The library hands dense boolean masks to
#    `scaled_dot_product_attention`, which scores every pair and then discards the masked ones: the masks
#    change what each token sees, not the speed.
# 5. **The cell above.** Shapes scenes are flat backgrounds and solid shapes, so the cell above the one
#    being predicted usually shows the same thing (background above background, the same object's colour
#    inside an object), and the dVAE's code there says much about the code below; with the cell to the left
#    (the token the query position holds) it is the nearest context a raster-order model has. The dense model
#    still scores all 2,016 image-to-image pairs in every layer (63 positions, each against every earlier
#    one), while the paper's row window keeps at most `g + 1` keys per query; at 1,024 image tokens that is
#    the difference between about half a million pairs per layer and about 34,000.
