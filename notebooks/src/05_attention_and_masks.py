# %% [markdown]
# # 05 · Attention and DALL·E's sparse masks
#
# *Build DALL·E from Scratch, lesson 05.* Lesson 03 turned every token into a vector that knows
# where it sits. This lesson builds the operation that lets those vectors read each other:
# **attention**. Then it builds the part that makes DALL·E's transformer DALL·E's: the **masks**
# that decide which tokens each token may read.

# %% [markdown]
# ## What you will build
#
# Attention is the step inside the transformer where tokens exchange information:
#
# ```
# caption ──tokenizer──▶ text ids ─┐
#                                  ├─▶ [text | image] sequence ──transformer──▶ next-token logits
# image ──dVAE encoder──▶ image ids┘                                ▲
#                                     this lesson: how each token reads the others,
#                                     and which ones it is allowed to read
# ```
#
# By the end of this lesson you will have:
#
# 1. built **attention** from scratch: queries, keys and values, scores `QKᵀ/√d`, a softmax and a
#    weighted sum; seen **why the √d** is there; and built **multi-head** attention as a reshape;
# 2. checked it against `dalle_lessons.attention.CausalSelfAttention` and PyTorch's
#    `scaled_dot_product_attention` (same weights, same outputs);
# 3. seen why a generator needs a **causal mask**, and met the **KV cache** that makes generation fast;
# 4. built DALL·E's four attention masks over the `[text | image]` stream (causal text, image sees all
#    text, and image-to-image **row**, **column** and **convolutional** patterns), drawn them, and
#    checked them against the library;
# 5. looked inside the **trained** transformer: where its heads, free to attend anywhere, actually look;
# 6. counted what each mask **costs**, at our scale and at the paper's 1,280 tokens.
#
# Nothing is trained here: the whole notebook runs in seconds.

# %%
from collections import Counter
from dataclasses import replace

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from dalle_lessons.attention import (IMAGE_ATTENTION_KINDS, CausalSelfAttention, KVCache, causal_mask,
                                     column_mask, dalle_mask, image_mask, row_mask)
from dalle_lessons.config import get_preset
from dalle_lessons.transformer import DalleTransformer, layer_kinds

torch.manual_seed(0)
torch.set_grad_enabled(False)  # nothing is trained in this lesson: no gradients to track
torch.set_printoptions(precision=4, sci_mode=False)
plt.rcParams.update({"figure.dpi": 80})

cfg = get_preset("cpu").transformer  # the course default
paper = get_preset("paper").transformer  # the published 12B model, for the numbers
print(f"course: {cfg.text_seq_len} text tokens + {cfg.image_grid}x{cfg.image_grid} = {cfg.image_seq_len} image "
      f"tokens, {cfg.n_layers} layers of {cfg.n_heads} heads")
print(f"paper:  {paper.text_seq_len} text tokens + {paper.image_grid}x{paper.image_grid} = {paper.image_seq_len} "
      f"image tokens, {paper.n_layers} layers of {paper.n_heads} heads")

# %% [markdown]
# ## 1. Attention from scratch
#
# ### Queries, keys and values
#
# Each token's vector is turned, by three learned matrices, into three vectors with three jobs:
#
# - a **query** `q`: what this token is looking for;
# - a **key** `k`: what this token offers, to be matched against queries;
# - a **value** `v`: what this token passes on to whoever attends to it.
#
# Token `i` scores every token `j` by the dot product `q_i · k_j`, turns its row of scores into weights
# that are positive and sum to 1 (a **softmax**), and outputs the weighted average of the values:
#
# $$\text{attention}(Q, K, V) = \text{softmax}\!\left(\frac{QK^\top}{\sqrt{d}}\right) V$$
#
# where `d` is the size of one query (and key) vector. Here it is on 6 tokens of width 8, one matrix
# operation at a time.

# %%
gen = torch.Generator().manual_seed(0)
n, d = 6, 8
x = torch.randn(n, d, generator=gen)  # 6 token vectors (in the model: embeddings, or a layer's output)
W_q, W_k, W_v = (torch.randn(d, d, generator=gen) / d**0.5 for _ in range(3))  # learned, in a real model

q, k, v = x @ W_q, x @ W_k, x @ W_v  # [6, 8] each: one query, key and value per token
scores = q @ k.T / d**0.5  # [6, 6]: scores[i, j] = how well query i matches key j
weights = scores.softmax(dim=-1)  # each row: a probability distribution over the keys
out = weights @ v  # [6, 8]: row i = sum_j weights[i, j] * v[j]

print("attention weights (row = query token, column = key token):")
print(weights)
print("each row sums to 1:", torch.allclose(weights.sum(-1), torch.ones(n)))
print("output:", tuple(out.shape), "= one new vector per token")
assert torch.allclose(out[2], (weights[2, :, None] * v).sum(0), atol=1e-6)  # a weighted average of the values

# %% [markdown]
# The output has the same shape as the input, so attention layers stack. Nothing in it is specific to
# text or images: a token just asks "which of the others are relevant to me?" and takes a blend of
# their values. The matrices `W_q`, `W_k`, `W_v` are what training learns.
#
# ### Why divide by √d?
#
# Take `q` and `k` with independent entries of mean 0 and variance 1 (roughly what a well-initialised
# network produces). Their dot product is a sum of `d` such products, so its **variance is `d`**: the
# wider the heads, the more spread out the scores. Fed to a softmax, widely spread scores give almost
# all the weight to the single largest one: the softmax *saturates*, its gradient for every other key
# is nearly 0, and the layer stops learning which keys matter. Dividing by √d brings the variance back
# to 1 whatever the width.

# %%
gen = torch.Generator().manual_seed(1)
print(f"{'d':>5} {'var(q·k)':>9} {'var(q·k/√d)':>12} {'top weight, raw':>16} {'top weight, /√d':>16}")
rows = []
for width in (4, 16, 64, 256, 1024):
    qs = torch.randn(1000, 1, width, generator=gen)  # 1000 queries
    ks = torch.randn(1000, 16, width, generator=gen)  # ... each scoring its own 16 keys
    raw = (qs * ks).sum(-1)  # [1000, 16] dot products
    scaled = raw / width**0.5
    top_raw, top_scaled = raw.softmax(-1).amax(-1).mean(), scaled.softmax(-1).amax(-1).mean()
    rows.append((width, raw.var().item(), scaled.var().item()))
    print(f"{width:5d} {raw.var():9.1f} {scaled.var():12.2f} {top_raw:16.3f} {top_scaled:16.3f}")
    assert 0.9 < raw.var() / width < 1.1 and 0.9 < scaled.var() < 1.1

# %% [markdown]
# The variance of the raw scores tracks `d`, and without the scale one key takes nearly all the weight
# once `d` is in the hundreds (DALL·E's heads have `d = 64`, ours 48). With the scale, a query spreads
# its attention the same way at every width. The same numbers as pictures: the variance (left), and one
# query's 16 softmax weights at `d = 256` (right).

# %%
widths, var_raw, var_scaled = zip(*rows)
fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
left.loglog(widths, var_raw, "o-", label="q·k")
left.loglog(widths, var_scaled, "o-", label="q·k / √d")
left.set(xlabel="d (head width)", ylabel="variance of the scores", title="scores spread out as d grows")
left.legend(fontsize=8)
one_query, keys = torch.randn(256, generator=gen), torch.randn(16, 256, generator=gen)
raw = keys @ one_query  # d = 256: scores with a spread of about 16
right.bar(torch.arange(16) - 0.2, raw.softmax(-1), width=0.4, label="raw, d = 256")
right.bar(torch.arange(16) + 0.2, (raw / 256**0.5).softmax(-1), width=0.4, label="/ √d")
right.set(xlabel="key", ylabel="softmax weight", title="one query, 16 keys")
right.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Multi-head attention is a reshape
#
# One softmax gives each token one blend of the others. A token often wants several at once: the
# caption's colour word *and* the cell above it. **Multi-head** attention splits the width `d_model`
# into `H` heads of `head_dim = d_model / H` numbers each, and runs attention in every head
# independently, with its own slice of the queries, keys and values. The heads' outputs are concatenated
# back to `d_model` and mixed by one more matrix, `W_o`.
#
# No loop over heads is needed: reshaping `[B, n, d_model]` to `[B, n, H, head_dim]` and moving the
# heads next to the batch, `[B, H, n, head_dim]`, turns "H separate attentions" into a batch of them.

# %%
d_model, H = 16, 4
head_dim = d_model // H
gen = torch.Generator().manual_seed(2)
W_q, W_k, W_v, W_o = (torch.randn(d_model, d_model, generator=gen) / d_model**0.5 for _ in range(4))
b_q, b_k, b_v, b_o = (0.1 * torch.randn(d_model, generator=gen) for _ in range(4))


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q kᵀ / √d) over the keys; where mask is False the weight is exactly 0."""
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # [..., n_queries, n_keys]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: no weight at all
    return scores.softmax(dim=-1)


def split_heads(t: torch.Tensor) -> torch.Tensor:
    """[B, n, d_model] -> [B, H, n, head_dim]: each head gets its own slice of every vector."""
    B, n, _ = t.shape
    return t.view(B, n, H, head_dim).transpose(1, 2)


def multi_head_attention(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, n, d_model] -> [B, n, d_model]: H heads of attention in parallel, then mixed by W_o."""
    B, n, _ = x.shape
    q, k, v = (split_heads(x @ W + b) for W, b in ((W_q, b_q), (W_k, b_k), (W_v, b_v)))
    heads = attention_weights(q, k, mask) @ v  # [B, H, n, head_dim]: every head at once
    return heads.transpose(1, 2).reshape(B, n, d_model) @ W_o + b_o  # concatenate the heads, mix them

# %% [markdown]
# On a batch of 2 sequences of 6 tokens, and checked against a plain loop over the heads, each reading its
# own slice of the columns:

# %%
x = torch.randn(2, 6, d_model, generator=gen)  # a batch of 2 sequences of 6 tokens
print("x:", tuple(x.shape), "-> queries per head:", tuple(split_heads(x @ W_q).shape), "(B, H, n, head_dim)")
y = multi_head_attention(x)
print("output:", tuple(y.shape))

q, k, v = x @ W_q + b_q, x @ W_k + b_k, x @ W_v + b_v
per_head = []
for h in range(H):
    part = slice(h * head_dim, (h + 1) * head_dim)
    per_head.append(attention_weights(q[..., part], k[..., part]) @ v[..., part])
assert torch.allclose(torch.cat(per_head, dim=-1) @ W_o + b_o, y, atol=1e-6)
print(f"reshape == loop over {H} heads: True")

# %% [markdown]
# Splitting into heads costs nothing extra: the same number of multiplications as one head of width
# `d_model`, arranged as `H` smaller ones. DALL·E has 62 heads of 64 numbers (`d_model = 3968`); the
# course model 8 heads of 48.
#
# ## 2. Check it against the library
#
# `dalle_lessons.attention.CausalSelfAttention` is the layer the course's transformer uses. It makes the
# queries, keys and values of all heads with **one** linear layer `qkv` (output width `3 · d_model`,
# split into three), calls PyTorch's fused `scaled_dot_product_attention` and mixes the heads with
# `proj`. A linear layer computes `x @ weight.T + bias`, so our `[in, out]` matrices go in transposed,
# stacked as queries, keys, values. Same weights in, same outputs out:

# %%
layer = CausalSelfAttention(d_model, H).eval()
layer.qkv.weight.copy_(torch.cat([W_q, W_k, W_v], dim=1).T)
layer.qkv.bias.copy_(torch.cat([b_q, b_k, b_v]))
layer.proj.weight.copy_(W_o.T)
layer.proj.bias.copy_(b_o)
print(layer)

ours, theirs = multi_head_attention(x, causal_mask(6)), layer(x)  # with no mask, the layer is causal
assert torch.allclose(ours, theirs, atol=1e-5)
print("from scratch == CausalSelfAttention (causal):", torch.allclose(ours, theirs, atol=1e-5))

sparse = dalle_mask(2, 2, "row")  # a DALL·E mask (section 5) over 2 text tokens + a 2x2 image: 6 tokens
assert torch.allclose(multi_head_attention(x, sparse), layer(x, sparse), atol=1e-5)
print("from scratch == CausalSelfAttention (a DALL·E mask):", True)

qh, kh, vh = (split_heads(x @ W + b) for W, b in ((W_q, b_q), (W_k, b_k), (W_v, b_v)))
fused = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True)
assert torch.allclose(attention_weights(qh, kh, causal_mask(6)) @ vh, fused, atol=1e-5)
print("attention_weights(q, k, mask) @ v == F.scaled_dot_product_attention:", True)

# %% [markdown]
# `scaled_dot_product_attention` computes exactly our formula, but fused: on a GPU its FlashAttention
# kernel never writes the `[n, n]` weight matrix to memory at all, which is why the library calls it
# instead of spelling the formula out.
#
# ## 3. Causal masking: a generator must not see the future
#
# DALL·E's transformer is trained like a language model, by **maximum likelihood** over one stream
# `s = [text | image]`: at every position `t` it predicts the next token, and the loss is
# `−Σ_t log p(s_{t+1} | s_1 … s_t)`. All positions are trained **at once**, in one forward pass over the
# whole stream, but the answer for position `t` — token `t + 1` — is sitting right there in the input.
# If position `t` could attend to it, the model would learn to copy it, and would have nothing to copy
# when it generates.
#
# The **causal mask** forbids it: query `i` may attend to key `j` only when `j ≤ i`. In the library's
# convention (PyTorch's too) `mask[i, j] = True` means *may attend*; a blocked score becomes `-inf`,
# whose softmax weight is exactly 0.

# %%
print(causal_mask(6).int())

torch.manual_seed(3)
x = torch.randn(1, 8, d_model)
changed = x.clone()
changed[0, 5] += 1.0  # edit token 5 only

with_mask = (multi_head_attention(changed, causal_mask(8)) - multi_head_attention(x, causal_mask(8))).abs()
no_mask = (multi_head_attention(changed) - multi_head_attention(x)).abs()
print("did editing token 5 change the outputs at positions 0-4?")
print(f"  causal mask: {bool(with_mask[0, :5].max() > 0)}     no mask: {bool(no_mask[0, :5].max() > 0)}")
assert with_mask[0, :5].max() == 0 and no_mask[0, :5].min() > 0

# %% [markdown]
# With the mask, the output at position `t` is a function of tokens `0 … t` only. So **one** masked pass
# over the whole stream gives exactly what `n` separate passes over the prefixes would give: it trains
# all `n` next-token predictions at the cost of one pass.

# %%
full_pass = multi_head_attention(x, causal_mask(8))
for t in range(8):
    prefix_only = multi_head_attention(x[:, : t + 1], causal_mask(t + 1))[:, -1]
    assert torch.allclose(full_pass[:, t], prefix_only, atol=1e-6)
print("one masked pass == 8 passes over the prefixes: True")

# %% [markdown]
# The mask and the weights it produces (head 0 of our layer): every row is a distribution over the
# tokens up to the diagonal, and exactly 0 beyond it.

# %%
q0, k0 = split_heads(x @ W_q + b_q), split_heads(x @ W_k + b_k)
w = attention_weights(q0, k0, causal_mask(8))[0, 0]  # batch 0, head 0: [8, 8]
assert (w.triu(1) == 0).all() and torch.allclose(w.sum(-1), torch.ones(8))

fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3))
left.imshow(causal_mask(8), cmap=ListedColormap(["white", "#3b75af"]))
left.set(title="causal mask (blue = may attend)", xlabel="key j", ylabel="query i")
image = right.imshow(w, cmap="viridis", vmin=0, vmax=1)
right.set(title="attention weights, head 0", xlabel="key j", ylabel="query i")
for i in range(8):
    for j in range(i + 1, 8):
        right.text(j, i, "0", ha="center", va="center", color="white", fontsize=7)
fig.colorbar(image, ax=right)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. The KV cache, in brief
#
# Generating is the other side of the same coin: the model writes one token, appends it, and runs again.
# Naively, step `t` recomputes queries, keys and values for all `t` tokens so far. But with a causal mask
# an earlier token never attends to a later one, so its keys and values **never change** once computed.
# Keep them: a **KV cache**. Each step then computes `q`, `k`, `v` for the one new token only, appends
# its `k` and `v` to the cache, and lets its query attend to everything cached.
#
# The library's `KVCache` preallocates room for every layer's keys and values; `CausalSelfAttention`
# takes it as `cache=`, and the caller moves it on with `advance(n)` after each step (the transformer
# does this once all its layers have stored the new token). Token by token must give exactly the full
# pass, also under a DALL·E mask, where each new query uses its own row of the mask.

# %%
torch.manual_seed(4)
x = torch.randn(2, 12, d_model)
full_pass = layer(x)  # all 12 tokens at once, causal

cache = KVCache(n_layers=1, batch_size=2, n_heads=H, max_len=12, head_dim=head_dim)
steps = []
for t in range(12):
    steps.append(layer(x[:, t : t + 1], cache=cache))  # one new token: its query reads the cache
    cache.advance(1)
assert torch.allclose(torch.cat(steps, dim=1), full_pass, atol=1e-5)
print(f"12 cached steps == one full pass: True   (cache holds keys {tuple(cache.keys.shape)} = "
      "[layers, batch, heads, max_len, head_dim])")

mask = dalle_mask(3, 3, "conv", kernel=3)  # 3 text tokens + a 3x3 image: 12 tokens
cache = KVCache(n_layers=1, batch_size=2, n_heads=H, max_len=12, head_dim=head_dim)
steps = []
for t in range(12):
    steps.append(layer(x[:, t : t + 1], mask[t : t + 1, : t + 1], cache))  # row t of the mask, keys 0..t
    cache.advance(1)
assert torch.allclose(torch.cat(steps, dim=1), layer(x, mask), atol=1e-5)
print("the same under a DALL·E conv mask: True")
print(f"keys and values computed for 12 tokens: {sum(range(1, 13))} without a cache, 12 with one")

# %% [markdown]
# That is the whole idea. Lesson 07 builds the sampler on it (`DalleTransformer.prefill` and `.step`)
# and times it: with the cache, each new token costs work proportional to the tokens before it, instead
# of a recomputation of the whole prefix, which adds up over DALL·E's 1,024 image tokens per picture.
#
# ## 5. DALL·E's four masks on the `[text | image]` stream
#
# DALL·E attends over one stream: the caption's text tokens, then the image tokens in raster order (row
# by row). The paper (Ramesh et al. 2021, section 2.2 and appendix B.1) fixes what each token may see:
#
# | queries ↓ keys → | text | image |
# |---|---|---|
# | **text** | causal: the text up to itself | nothing: the image comes later |
# | **image** | **all** the text | one of four patterns (below), always causal |
#
# The image-to-image patterns, on a `g × g` grid of image tokens:
#
# - **full**: every earlier image token (dense causal attention, the baseline);
# - **row**: a sliding window of the previous `g` tokens in raster order, and itself. That is the rest
#   of the row above (from its own column on) plus its own row up to itself: it reaches back exactly
#   to the token directly above;
# - **column**: the tokens in its own column, above it, and itself;
# - **convolutional**: a causal `k × k` neighbourhood centred on the token: `k // 2` rows above and
#   `k // 2` columns either side, plus the `k // 2` tokens to its left (the paper: `k = 11`, last layer).
#
# ### From scratch
#
# Each image-to-image pattern is a small rule: may image token `i` (raster index) attend to image token
# `j`? All four can be written with one number, `back = i − j`, how many raster steps `j` lies behind
# `i`. One row up is `g` steps back; one row up and one column right is `g − 1`.

# %%
T, g = cfg.text_seq_len, cfg.image_grid  # 24 text tokens, an 8x8 image
N = g * g
KERNEL = 5  # conv window for our 8x8 grid (the paper's 11 is for 32x32; see below)


def full(i: int, j: int, g: int, kernel: int) -> bool:
    return i - j >= 0


def row(i: int, j: int, g: int, kernel: int) -> bool:
    return 0 <= i - j <= g  # the previous g tokens, and itself


def column(i: int, j: int, g: int, kernel: int) -> bool:
    return i - j >= 0 and (i - j) % g == 0  # 0, 1, 2, ... whole rows back


def conv(i: int, j: int, g: int, kernel: int) -> bool:
    h, back = kernel // 2, i - j
    # dr rows up and dc columns over is `dr * g - dc` steps back, for dr = 0..h and |dc| <= h;
    # back >= 0 keeps only the left half (and itself) of the query's own row
    return back >= 0 and any(abs(back - dr * g) <= h for dr in range(h + 1))


RULES = {"full": full, "row": row, "column": column, "conv": conv}

# %% [markdown]
# The whole mask puts the rule into the image-to-image block and fills the other three blocks by the table
# above: causal text, no image for text queries, all text for image queries.

# %%
def my_dalle_mask(T: int, g: int, rule, kernel: int = KERNEL) -> torch.Tensor:
    """[T + g*g, same] over [text | image]: causal text, image sees all text, `rule` image to image."""
    n = T + g * g
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            if i < T:  # a text query: the text up to itself, never the image
                mask[i, j] = j <= i
            elif j < T:  # an image query, a text key: always
                mask[i, j] = True
            else:  # image to image: the rule, on raster indices within the image
                mask[i, j] = rule(i - T, j - T, g, kernel)
    return mask

# %% [markdown]
# Each of the four, built from its rule, must equal the library's `dalle_mask` at our scale and on a
# smaller stream of 6 text tokens and a 4×4 image:

# %%
masks = {}
for kind, rule in RULES.items():
    masks[kind] = my_dalle_mask(T, g, rule)
    assert torch.equal(masks[kind], dalle_mask(T, g, kind, kernel=KERNEL))
    assert torch.equal(my_dalle_mask(6, 4, rule, kernel=3), dalle_mask(6, 4, kind, kernel=3))  # the paper's Fig. 11
    print(f"{kind:>6}: {tuple(masks[kind].shape)}, {int(masks[kind].sum()):,} allowed (query, key) pairs, "
          "== dalle_mask ✓")

# %% [markdown]
# All four match the library's `dalle_mask`, at our scale and on the paper's own illustration
# (Fig. 11: 6 text tokens, a 4×4 image, a 3×3 convolution). Here they are; blue means *may attend*.

# %%
BLUE = ListedColormap(["white", "#3b75af"])
fig, axes = plt.subplots(1, 4, figsize=(10, 3))
for ax, (kind, mask) in zip(axes, masks.items()):
    ax.imshow(mask, cmap=BLUE, interpolation="nearest")
    ax.axhline(T - 0.5, color="#e8702a", lw=1)  # the text | image boundary
    ax.axvline(T - 0.5, color="#e8702a", lw=1)
    ax.set_xticks([T / 2, T + N / 2], ["text", "image"])
    ax.set_yticks([T / 2, T + N / 2], ["text", "image"], rotation=90, va="center")
    ax.set_title(f"{kind if kind != 'conv' else f'conv (k = {KERNEL})'}\n{int(mask.sum()):,} pairs", fontsize=10)
    ax.set_xlabel("key", fontsize=9)
axes[0].set_ylabel("query", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# Read each picture by blocks. Top left: the text's causal triangle, the same in every mask. Top right:
# empty, since text never sees the image that follows it. Bottom left: solid, every image token sees
# the whole caption. Only the bottom-right block changes: a full triangle, a band (row), a set of
# stripes `g` apart (column), and a few bands (conv).
#
# The big matrix is hard to read as a picture, because each image token's 64 keys are spread over one
# long row. Drawn on the 8×8 grid instead, for the token at row 4, column 3:

# %%
CELLS = ListedColormap(["white", "#dddddd", "#3b75af", "#e8702a"])  # future, earlier, attended, the query


def draw_on_grid(ax, allowed: torch.Tensor, query: int, g: int, title: str) -> None:
    """One image query's attended cells (blue) on the g x g grid; grey: earlier, not attended; white: later."""
    picture = torch.zeros(g * g)
    picture[:query] = 1
    picture[allowed] = 2
    picture[query] = 3
    ax.imshow(picture.reshape(g, g), cmap=CELLS, vmin=0, vmax=3)
    ax.set_xticks([c - 0.5 for c in range(g + 1)], minor=True)
    ax.set_yticks([r - 0.5 for r in range(g + 1)], minor=True)
    ax.grid(which="minor", color="#999999", lw=0.5)
    ax.tick_params(which="both", length=0, labelsize=7)
    ax.set_title(title, fontsize=9)


LEGEND = [Patch(color="#e8702a", label="the query token"), Patch(color="#3b75af", label="attended"),
          Patch(color="#dddddd", label="earlier, not attended"), Patch(facecolor="white", edgecolor="#999999",
                                                                      label="later (the future)")]

# %% [markdown]
# Each mask's row for that token, drawn on the grid:

# %%
query = 4 * g + 3  # row 4, column 3
fig, axes = plt.subplots(1, 4, figsize=(10, 3))
for ax, (kind, mask) in zip(axes, masks.items()):
    sees = mask[T + query, T:]  # this token's row of the mask, image keys only
    draw_on_grid(ax, sees, query, g, f"{kind}: {int(sees.sum())} image tokens")
fig.legend(handles=LEGEND, loc="lower center", ncol=4, fontsize=8, frameon=False)
fig.suptitle(f"what image token (row 4, col 3) attends to, on top of all {T} text tokens", fontsize=10)
plt.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()

for kind, mask in masks.items():
    cells = mask[T + query, T:].nonzero().flatten().tolist()
    print(f"{kind:>6}: " + (f"all {len(cells)} image cells up to itself" if kind == "full" else f"image cells {cells}"))
assert all(mask[T + query, :T].all() for mask in masks.values())  # and every text token, in all four

# %% [markdown]
# ### Wraparound: the row is a window, not a row
#
# The paper's row mask is *not* "the token's own row". It is the previous `g` tokens in raster order, a
# window that slides along the stream and wraps from one row into the next (its Fig. 11a: on a 4×4 grid
# "each image token attends to the previous 5 image tokens", itself included, "so that the last token
# being attended to is the one in the same column of the previous row"). The convolutional mask wraps
# the same way ("wraparound behavior (similar to the row attention)"). Both are a fixed set of raster
# offsets, the same for every query: bands parallel to the diagonal of the attention matrix, which are
# simple and fast to compute in blocks. The library's `wraparound=False` gives the strictly 2-D readings one
# might guess from the names. The difference shows at the edges, here for the token at row 4, column 0:

# %%
edge = 4 * g + 0  # row 4, column 0
variants = {
    "row (paper: wraps)": row_mask(g),
    "row, own row only": row_mask(g, wraparound=False),
    f"conv k={KERNEL} (paper: wraps)": image_mask("conv", g, kernel=KERNEL),
    f"conv k={KERNEL}, strictly 2-D": image_mask("conv", g, kernel=KERNEL, wraparound=False),
}
fig, axes = plt.subplots(1, 4, figsize=(10, 3))
for ax, (name, mask) in zip(axes, variants.items()):
    draw_on_grid(ax, mask[edge], edge, g, f"{name}\n{int(mask[edge].sum())} image tokens")
fig.legend(handles=LEGEND, loc="lower center", ncol=4, fontsize=8, frameon=False)
plt.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()

# %% [markdown]
# At the left edge, "own row only" leaves the token with nothing but itself, while the paper's window
# still sees the whole row above. The wrapped conv window, cut off on the left, continues at the right
# end of the row above instead.
#
# ### Why row, then column: two sparse layers see everything
#
# A sparse layer hides most of the image from each token, but layers stack. Information that reaches
# token `m` in one layer is passed on by `m` in the next. If layer 1 lets `i` read `m` (`row[i, m]`) and
# layer 2 lets `j` read `i` (`column[j, i]`), token `j` has heard from `m` after two layers: the boolean
# matrix product `column @ row`. For the paper's row window followed by a column, that is **every**
# earlier token, just as one dense causal layer gives; with the "own row only" reading it is not.

# %%
def reach(second: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """Which (query, key) pairs are connected after layer `first`, then layer `second`."""
    return (second.int() @ first.int()) > 0


dense = causal_mask(N)
paper_way = reach(column_mask(g), row_mask(g))
own_row_way = reach(column_mask(g), row_mask(g, wraparound=False))
assert torch.equal(paper_way, dense) and torch.equal(reach(row_mask(g), column_mask(g)), dense)
print(f"row (paper), then column: connects all {int(dense.sum())} causal pairs: {torch.equal(paper_way, dense)}")
print(f"own row only, then column: misses {int((dense & ~own_row_way).sum())} of them "
      f"(for example (row 4, col 3) never hears from (row 3, col 5): {not bool(own_row_way[4 * g + 3, 3 * g + 5])})")

# %% [markdown]
# ### The paper's layer pattern
#
# DALL·E's 64 layers alternate the sparse masks (appendix B.1): counting layers from 1, layer `i` uses
# **column** attention when `(i − 2) mod 4 = 0` and **row** attention otherwise, and the **last** layer
# uses the **convolutional** mask. So the stack reads row, column, row, row, row, column, row, row, …,
# conv. No layer of the paper is dense over the image. `dalle_lessons.transformer.layer_kinds` writes
# the pattern down:

# %%
kinds = layer_kinds(paper.n_layers)
short = {"row": "R", "column": "C", "conv": "conv"}
print("paper, 64 layers:", " ".join(short[kind] for kind in kinds[:12]), "...",
      " ".join(short[kind] for kind in kinds[-5:]))
print("  counts:", dict(sorted(Counter(kinds).items())))
print(f"course, {cfg.n_layers} layers:", layer_kinds(cfg.n_layers))
assert kinds[:4] == ["row", "column", "row", "row"] and kinds[-1] == "conv" and kinds.count("column") == 16

# %% [markdown]
# The course transformer (lesson 06) uses dense causal attention by default, since 88 tokens are cheap;
# `attention_pattern="paper"` switches on DALL·E's pattern. Each block then picks its mask by its kind.
# The model's stream has one extra text position in front, a learned start vector that lets it predict
# the first caption token, so its masks are `dalle_mask(T + 1, g, kind)`, cropped to the `T + N`
# positions the model reads (the last image token is predicted, never read):

# %%
model = DalleTransformer(replace(cfg, attention_pattern="paper"), generator=torch.Generator().manual_seed(0))
print("blocks:", [block.kind for block in model.blocks])
for kind in ("row", "column", "conv"):
    expected = dalle_mask(T + 1, g, kind, kernel=cfg.conv_kernel)[: T + N, : T + N]
    assert torch.equal(getattr(model, f"mask_{kind}"), expected)
print(f"the model's masks == dalle_mask({T} + 1, {g}, kind), cropped to {T + N} positions: True")

# %% [markdown]
# One thing to notice: the course preset keeps the paper's `conv_kernel = 11`. On an 8×8 grid an
# 11-wide window is wider than the picture, so that layer is nearly dense (the table below shows it).
# That is why the pictures use `k = 5`, which shows the shape.
#
# ### Why every image token still sees all the text
#
# The sparse masks thin out only image-to-image attention. Every image token, in every layer, reads the
# **whole** caption. The model learns `p(text, image)` one token at a time, and what the picture must
# follow is the caption: the colour of the shape in the bottom-right corner depends on the word "red",
# however far back in the stream it is. If the caption reached the lower rows only by being relayed from
# image token to image token, it would take many layers and could fade on the way. Dense image-to-text
# attention hands every image token the caption directly, in every layer, and text is the short part of
# the stream (256 of 1,280 positions). Section 6 counts the price.
#
# ### Real heads: what a trained model does with dense attention
#
# The masks hard-wire *where* an image token may look. The course's shipped transformer
# (`data/dalle-cpu.safetensors`, trained by `python -m dalle_lessons train dalle --preset cpu --seed 0`;
# lesson 06 trains it) has no such rule: it uses dense causal attention, 4 layers of 8 heads. What did its
# heads learn to look at? Attention weights are computed inside each layer and thrown away, so a **forward
# hook** recomputes them from the layer's own input, with section 1's `attention_weights` (lesson 06 does the
# same for the caption words). The recomputation must give the layer's output back exactly.
#
# One detail of the stream (lesson 06 builds it): the model reads `[start, caption, image cells 0 … 62]`,
# and the position holding image cell `m` **predicts cell `m + 1`**. Below, every map is drawn from the
# point of view of the cell being predicted.

# %%
from dalle_lessons.pipeline import TextToImage
from dalle_lessons.shapes import ShapesDataset


def captured_attention(model: DalleTransformer, text_ids: torch.Tensor, image_ids: torch.Tensor) -> list:
    """Every layer's weights from image positions to image positions: one [B, H, N - 1, N - 1] per layer."""
    weights, T1 = [], model.config.text_seq_len + 1  # stream: start + caption, then image cells 0 .. N - 2

    def hook(module, inputs, output):
        x = inputs[0]
        B, n, C = x.shape
        q, k, v = (t.view(B, n, module.n_heads, module.head_dim).transpose(1, 2) for t in module.qkv(x).split(C, 2))
        w = attention_weights(q, k, causal_mask(n))  # section 1's function, causal as the model is
        assert torch.allclose(module.proj((w @ v).transpose(1, 2).reshape(B, n, C)), output, atol=1e-4)
        weights.append(w[:, :, T1:, T1:])  # image cell m (predicting m + 1) -> image cells 0 .. m

    hooks = [block.attn.register_forward_hook(hook) for block in model.blocks]
    model(text_ids, image_ids)
    for handle in hooks:
        handle.remove()
    return weights

# %% [markdown]
# 32 validation pairs from the Shapes world, their captions tokenized and their pictures turned into tokens by
# the pipeline's own tokenizer and dVAE, go through the trained model and through an untrained one of the
# same shape:

# %%
pipe = TextToImage.from_pretrained(device="cpu")  # tokenizer + dVAE + the trained transformer
trained = pipe.transformer.eval()
untrained = DalleTransformer(trained.config, generator=torch.Generator().manual_seed(0)).eval()
val = ShapesDataset("val", 32)
text_ids = pipe.tokenizer.encode_batch([val.item_caption(i) for i in range(len(val))])
image_ids = pipe.dvae.encode(val.images_uint8().float() / 255).flatten(1)  # [32, 64]
attention = {"trained": captured_attention(trained, text_ids, image_ids),
             "untrained": captured_attention(untrained, text_ids, image_ids)}
print(f"{trained.config.n_layers} layers x {trained.config.n_heads} heads, weights {tuple(attention['trained'][0].shape)} "
      "per layer: [pairs, heads, image queries, image keys]; each layer's output reproduced: True")

# %% [markdown]
# Here is layer 1, every head, for the position that predicts the cell at row 4, column 3 (the query of the
# pictures above), averaged over the 32 pairs. Each map shows how that position's attention to the image is
# spread over the cells already written; the orange square is the cell being predicted.

# %%
target = 4 * g + 3  # the cell being predicted: row 4, column 3; the query holds cell target - 1
fig, axes = plt.subplots(2, 8, figsize=(10, 3.1))
for row_axes, name in zip(axes, ("trained", "untrained")):
    mean_map = attention[name][0][:, :, target - 1, :target].mean(0)  # layer 1: [heads, cells 0 .. target - 1]
    for head, ax in enumerate(row_axes):
        picture = torch.full((N,), float("nan"))
        picture[:target] = mean_map[head]
        ax.imshow(picture.view(g, g), cmap="viridis", vmin=0, vmax=0.2)
        ax.add_patch(plt.Rectangle((target % g - 0.5, target // g - 0.5), 1, 1, color="#e8702a"))
        ax.set(xticks=[], yticks=[])
        ax.set_title(f"head {head}", fontsize=8)
    row_axes[0].set_ylabel(name, fontsize=9)
fig.suptitle("layer 1: attention to earlier image cells (mean over 32 pairs)", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# The untrained heads spread their weight evenly (every earlier cell a faint, equal share). The trained
# ones look **near the cell they predict**, mostly at the row just above it: head 5 here at the cell directly
# above, head 2 at that cell and its right-hand neighbour. Measured over every image query from the second row on: the share of each head's image
# attention that falls inside the paper's row window and inside a causal 5×5 window, against what evenly
# spread attention would give.

# %%
M = N - 1  # image positions that are read (the last cell is only predicted)
windows = {"row window": row_mask(g)[:M, :M], f"conv k={KERNEL}": image_mask("conv", g, kernel=KERNEL)[:M, :M]}
visible = torch.arange(g + 1, M + 1)  # the position holding cell m (m = g .. M - 1) sees cells 0 .. m
even = {kind: (window[g:].sum(-1) / visible).mean().item() for kind, window in windows.items()}
print("share of image attention inside each window: mean over the 8 heads (best head)")
print(f"{'even spread':>19}:  " + "   ".join(f"{kind} {value:.2f}" for kind, value in even.items()))
results = {}
for name in ("untrained", "trained"):
    for layer, w in enumerate(attention[name]):
        shares = [((w * window).sum(-1) / w.sum(-1))[:, :, g:].mean((0, 2)) for window in windows.values()]
        results[name, layer] = shares
        print(f"{name:>9}, layer {layer + 1}:  " + "   ".join(
            f"{kind} {share.mean():.2f} ({share.max():.2f})" for kind, share in zip(windows, shares)))
assert all((results["untrained", layer][0] - even["row window"]).abs().max() < 0.05 for layer in range(4))
assert results["trained", 0][0].max() > even["row window"] + 0.2

# %% [markdown]
# And the single cell directly above the one being predicted (`g − 1` cells before the cell the position
# holds):

# %%
w = attention["trained"][0]  # layer 1: [pairs, heads, 63, 63]; query m holds cell m, predicts m + 1
on_above = w.diagonal(offset=-(g - 1), dim1=2, dim2=3)  # weight of query m on cell m - (g - 1), m >= g - 1
above = (on_above / w.sum(-1)[:, :, g - 1:]).mean((0, 2))  # as a share of each query's image attention
even_above = (1 / torch.arange(g, M + 1).double()).mean().item()  # the cell above is 1 of the m + 1 visible
best = int(above.argmax())
print("layer 1, share of image attention on the cell above, per head:", " ".join(f"{v:.2f}" for v in above.tolist()))
print(f"head {best}: {above[best]:.0%} of its image attention on that one cell; an even spread gives {even_above:.0%}")
assert above[best] > 5 * even_above

# %% [markdown]
# Dense attention let every head look anywhere, and the first layer's heads chose to look **close**: well
# above the even share inside the row window and the small convolutional window, and one head spends more
# than a third of its image attention on the single cell directly above the one it predicts, a cell that
# the paper's row window always includes. The later layers spread out more; one reading is that their
# inputs already carry each cell's neighbourhood, gathered by layer 1. This is the locality DALL·E's masks
# **hard-wire**, so that a 1,024-token image does not pay for every pair. Our small model found it on its
# own, but still scores all 2,016 image-to-image pairs in every layer. (An attention map is a hint about
# what a head does, not a proof: a head can look at a cell and make little use of it.)
#
# ## 6. What each mask costs
#
# Attention's work and memory grow with the number of (query, key) pairs it scores: `QKᵀ` computes one
# number per pair and the weights multiply `V` once per pair. Dense causal attention over `n` tokens has
# `n(n + 1)/2` pairs, quadratic in `n`. Here are the pairs each mask keeps, split by block, at our scale
# and at the paper's.

# %%
def cost_rows(T: int, g: int, kernel: int) -> dict[str, dict[str, int]]:
    """Allowed (query, key) pairs per mask kind, split into text→text, image→text and image→image."""
    rows = {}
    for kind in IMAGE_ATTENTION_KINDS:
        mask = dalle_mask(T, g, kind, kernel=kernel)
        rows[kind] = {"text→text": int(mask[:T, :T].sum()), "image→text": int(mask[T:, :T].sum()),
                      "image→image": int(mask[T:, T:].sum()), "total": int(mask.sum())}
    return rows

# %% [markdown]
# At three scales: our stream with the picture's `k = 5` window, our stream with the preset's `k = 11`,
# and the paper's 256 + 32×32 stream:

# %%
scales = {f"course: {T} + {g}x{g}, conv k = {KERNEL}": (T, g, KERNEL),
          f"course: {T} + {g}x{g}, conv k = {cfg.conv_kernel}": (T, g, cfg.conv_kernel),
          f"paper: {paper.text_seq_len} + {paper.image_grid}x{paper.image_grid}, conv k = {paper.conv_kernel}":
              (paper.text_seq_len, paper.image_grid, paper.conv_kernel)}
costs = {}
for title, (t_len, grid, kernel) in scales.items():
    costs[title] = table = cost_rows(t_len, grid, kernel)
    dense_total, dense_image = table["full"]["total"], table["full"]["image→image"]
    print(title)
    print(f"  {'mask':>6} {'text→text':>10} {'image→text':>11} {'image→image':>12} {'(of full)':>9} "
          f"{'total':>9} {'(of full)':>9}")
    for kind, counts in table.items():
        print(f"  {kind:>6} {counts['text→text']:10,} {counts['image→text']:11,} {counts['image→image']:12,} "
              f"{counts['image→image'] / dense_image:9.1%} {counts['total']:9,} {counts['total'] / dense_total:9.1%}")
    n_tokens = t_len + grid * grid
    assert dense_total == n_tokens * (n_tokens + 1) // 2

paper_costs = costs[list(scales)[-1]]
per_layer = sum(paper_costs[kind]["total"] for kind in kinds) / len(kinds)
print(f"\npaper, averaged over its 64-layer pattern: {per_layer:,.0f} pairs per layer, "
      f"{per_layer / paper_costs['full']['total']:.1%} of dense causal attention")

# %% [markdown]
# Three things stand out.
#
# - **At the paper's scale the image-to-image savings are large**: the row window keeps 6% of the dense
#   image-to-image pairs, the column 3%, the 11×11 window 11%. And they grow with the image: dense
#   attention is quadratic in the number of image tokens, a row window only linear.
# - **The total falls less, to about 40%**, because the dense image-to-text block is now the biggest
#   part of the bill. That is the price of letting every image token see the whole caption, and the
#   paper pays it.
# - **At our scale the savings are modest**, and the paper's 11×11 window on an 8×8 grid saves almost
#   nothing. Sparse attention is a tool for long sequences.
#
# The same table as bars, split by block:

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=True)
colours = {"text→text": "#9ecae1", "image→text": "#e8702a", "image→image": "#3b75af"}
for ax, title in zip(axes, (list(scales)[0], list(scales)[-1])):
    table = costs[title]
    bottom = torch.zeros(len(table))
    for block, colour in colours.items():
        share = torch.tensor([table[kind][block] / table["full"]["total"] for kind in table])
        ax.bar(list(table), share, bottom=bottom, color=colour, label=block)
        bottom += share
    ax.set_title(title.replace(", conv", "\nconv"), fontsize=9)
    ax.tick_params(labelsize=8)
axes[0].set_ylabel("pairs / dense causal pairs")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# A caveat on what these counts buy. A pair left out of the mask saves work only if the kernel skips it,
# as the block-sparse GPU kernels of the Sparse Transformer (Child et al., 2019) do: they compute only
# the blocks a mask keeps. The paper even transposes the image for its column layers, so that a column
# becomes a contiguous band (its Fig. 11c). The library's masks are dense boolean tensors handed to
# `scaled_dot_product_attention`, which scores every pair and then discards the masked ones. So in this
# course the masks change **what each token sees**, exactly as in the paper, but not the speed.
#
# ## 7. The library's masks keep their promises
#
# Whatever the kind, the scale or the wraparound, every DALL·E mask must keep the properties that make
# it a valid mask for a generator trained on one stream: nothing attends to the future, every token
# attends to itself (so no softmax row is empty), text reads text causally and never the image, and
# every image token reads all the text.

# %%
checked = 0
for t_len, grid, kernel in [(T, g, KERNEL), (T, g, cfg.conv_kernel), (6, 4, 3),
                            (paper.text_seq_len, paper.image_grid, paper.conv_kernel)]:
    n_tokens = t_len + grid * grid
    for kind in IMAGE_ATTENTION_KINDS:
        for wraparound in (True, False):
            mask = dalle_mask(t_len, grid, kind, kernel=kernel, wraparound=wraparound)
            assert mask.shape == (n_tokens, n_tokens) and mask.dtype == torch.bool
            assert not (mask & ~causal_mask(n_tokens)).any(), "no token attends to the future"
            assert mask.diagonal().all(), "every token attends to itself"
            assert torch.equal(mask[:t_len, :t_len], causal_mask(t_len)), "text attends causally to text"
            assert not mask[:t_len, t_len:].any(), "text never sees the image"
            assert mask[t_len:, :t_len].all(), "every image token sees all the text"
            checked += 1
print(f"{checked} masks checked (4 kinds x 2 wraparounds x 4 scales, up to the paper's 1280 x 1280): "
      "no future, self, causal text, text blind to the image, image sees all text")

# %% [markdown]
# ## 8. Exercises
#
# Each exercise asks for something this lesson has not shown: a variation, a new piece, or an
# experiment. Replace `raise NotImplementedError` with your code and run the cell below it; the check
# says, in plain words, what is wrong. Solutions are in [solutions/05_attention_and_masks.ipynb](solutions/05_attention_and_masks.ipynb).

# %%
from dalle_lessons.exercises.l05_attention import (check_alibi_attention, check_layers_to_connect,
                                                   check_pad_mask)

# %% [markdown]
# ### Exercise 1: attention that prefers nearby keys
#
# Lesson 03 *added* position vectors to the tokens. Another way to tell attention about order is to
# change the scores themselves. **ALiBi** (Press et al. 2022, "Train Short, Test Long") subtracts a
# penalty that grows with the distance: head `h` scores query `i` against key `j ≤ i` as
#
# $$\frac{q_i \cdot k_j}{\sqrt d} - m_h\,(i - j)$$
#
# with one slope `m_h` per head (a geometric series such as 1/2, 1/4, 1/8, …, so some heads look far
# and some look close). Write `my_alibi_attention(q, k, v, slopes)` for `q, k` `[B, H, n, d]`, `v`
# `[B, H, n, d_v]` and `slopes` `[H]`: causal attention with that penalty. Section 1's
# `attention_weights` and `scaled_dot_product_attention` have no penalty, so they will not pass as they
# are, but either can be a starting point. *Think first:* a distance penalty gives order, so why keep
# the causal mask?

# %%
def my_alibi_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    # Your code here.
    raise NotImplementedError


ok = check_alibi_attention(my_alibi_attention)

# %% [markdown]
# ### Exercise 2: masking the pads, the road DALL·E did not take
#
# A caption shorter than `T` tokens is padded. The usual fix is to **mask the pads out**: no query may
# attend to a pad key. DALL·E tried that and chose instead a learned pad embedding per text position
# (lesson 06): the paper reports a higher validation loss but better results on captions unlike the
# training ones. Build the mask it did not use: `my_pad_mask(text_ids, g, pad_id)` takes `[B, T]` ids
# and returns a `[B, T + g*g, T + g*g]` bool mask, `dalle_mask(T, g, "full")` for every caption, minus
# the keys that are pads in *that* caption. A token may always attend to itself. *Think first:* is a
# pad a row or a column of the mask? And what happens to an empty caption (all pads, which guidance in
# lesson 07 feeds the model)?

# %%
def my_pad_mask(text_ids: torch.Tensor, g: int, pad_id: int) -> torch.Tensor:
    # Your code here.
    raise NotImplementedError


ok = check_pad_mask(my_pad_mask)

# %% [markdown]
# ### Exercise 3 (experiment): how deep before every token has heard from every other?
#
# Section 5 showed that a row layer then a column layer connect every earlier image token. What about
# other stacks? **Predict first**, for an 8×8 grid: how many layers does each of these need before
# every image token has heard from every earlier one, or will it never happen?
#
# | stack (repeated) | your guess |
# |---|---|
# | row (the paper's window), again and again | |
# | column only | |
# | conv `k = 3` (the paper's, wrapping) | |
# | conv `k = 3`, strictly 2-D | |
# | row, column | |
#
# Then write `my_layers_to_connect(masks, max_layers)`: stack layers cycling through `masks` (layer
# `l = 1, 2, …` uses `masks[(l − 1) % len(masks)]`), keep track of which (query, key) pairs are
# connected with section 5's `reach`, and return the first depth at which every causal pair is
# connected, or `None` if that does not happen within `max_layers`. Run the cell after the check to
# measure your guesses.

# %%
def my_layers_to_connect(masks: list[torch.Tensor], max_layers: int = 30) -> int | None:
    # Your code here.
    raise NotImplementedError


ok = check_layers_to_connect(my_layers_to_connect)

# %%
stacks = {
    "row (paper)": [row_mask(g)],
    "column": [column_mask(g)],
    "conv k=3 (paper)": [image_mask("conv", g, kernel=3)],
    "conv k=3, strictly 2-D": [image_mask("conv", g, kernel=3, wraparound=False)],
    "row, column": [row_mask(g), column_mask(g)],
}
if not ok:
    print("Finish exercise 3 first, then run this cell.")
else:
    for name, stack in stacks.items():
        depth = my_layers_to_connect(stack, 30)
        print(f"{name:>24}: " + ("never" if depth is None else f"{depth} layers"))

# %% [markdown]
# ## Takeaways
#
# - Attention is `softmax(QKᵀ/√d) V`: each token takes a weighted average of the others' values, weighted
#   by how well its query matches their keys; the √d keeps the scores' spread at about 1, so the softmax
#   does not saturate. Multi-head attention is a reshape: `H` heads run as one batched attention, then one
#   matrix mixes them.
# - A **mask** says which keys each query may read (True = may attend; masked scores become `-inf`,
#   weight 0). The causal mask makes one pass over the stream train every next-token prediction at once
#   without letting any position see its answer. It is also what makes the **KV cache** exact.
# - DALL·E's masks: causal text, every image token sees **all** the text in every layer, and image-to-image
#   attention is **row** (a sliding window of the previous `g` tokens that wraps into the row above, not
#   "attend within your own row"), **column** or, in the last layer, a causal `11 × 11` **convolutional**
#   window. Row then column already connects every earlier token.
# - The sparse masks cut image-to-image pairs to a few percent at the paper's scale; the dense
#   image-to-text block then dominates. Our dense model found locality on its own: its first layer's heads
#   look at the row above the cell they predict, one of them mostly at the cell directly above.
# - **Getting DALL·E right:** the transformer is trained by **maximum likelihood** over one stream
#   `[text | image]` (text weighted 1/8, image 7/8): no contrastive and no adversarial loss. Contrastive
#   learning belongs to CLIP, used afterwards to rerank samples ([lesson 08](08_reranking_with_clip.ipynb)).
#   The sparse masks are a compute trick, not a different objective.
#
# ## Check your understanding
#
# 1. What would go wrong at the start of training if a model with 64-dimensional heads left out the √d?
#    And why √d, not `d`?
# 2. Why does one causally masked pass over the stream give the same outputs as `n` separate passes over
#    the prefixes, and why does the same fact make the KV cache exact?
# 3. Text queries never read image keys, yet every image query reads all the text. Why is the first
#    forbidden and the second allowed?
# 4. The course keeps the paper's 11 × 11 convolutional window on an 8 × 8 grid, where it is nearly dense.
#    Why are sparse masks a tool for long sequences, and why do the library's masks, even sparse ones, save
#    no computation?
# 5. One head of the trained model puts more than a third of its image attention on the cell directly above
#    the one it predicts. Why might that cell be so useful in the Shapes world, and what does the dense
#    model still pay for that the paper's masks would save?
#
# The answers are in the [solutions notebook](solutions/05_attention_and_masks.ipynb).
#
# **Next: [06 · the transformer](06_transformer.ipynb)**, which stacks these attention layers into DALL·E's
# transformer and trains it.
