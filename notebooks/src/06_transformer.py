# %% [markdown]
# # 06 · The transformer: training DALL·E
#
# *Build DALL·E from Scratch, lesson 06.* Lessons 02 to 05 built the parts: caption ids, image ids,
# embeddings that know where each token sits, and attention with DALL·E's masks. This lesson stacks
# them into **DALL·E's transformer**, the model that learns how captions and pictures go together, and
# trains it.

# %% [markdown]
# ## What you will build
#
# The transformer is stage 2 of DALL·E. It never sees a pixel: it reads a caption's tokens and an
# image's tokens as **one stream** and learns to predict each token from the ones before it.
#
# ```
# caption ──tokenizer──▶ text ids ─┐
#                                  ├─▶ [text | image] sequence ──transformer──▶ next-token logits
# image ──dVAE encoder──▶ image ids┘         ▲                         ▲
#                                      this lesson: one stream,   the model and its loss,
#                                      who predicts what           trained by maximum likelihood
# ```
#
# By the end of this lesson you will have:
#
# 1. turned a (caption, image) pair into **one token stream**, seen which position predicts which token,
#    and why a fixed text length makes the paper's start-of-image token unnecessary here;
# 2. built the **embeddings** (text with one learned pad vector per position, the paper's trick; image
#    with row and column positions), a **transformer block** and the **whole forward pass** from
#    scratch, and checked them against `dalle_lessons.transformer.DalleTransformer` with the same weights;
# 3. built the **loss**: two output heads, one per vocabulary, and cross-entropy weighted **1/8 text,
#    7/8 image**, and seen why;
# 4. **trained** a small transformer for a few seconds and watched its loss fall;
# 5. loaded the **pretrained** course model and measured it: validation losses, **where in the picture
#    the caption matters** (the first cell of each object), and which heads read the colour word of the
#    object being drawn;
# 6. counted the paper's **12 billion** parameters;
# 7. in the exercises, built the stream a start-of-image token needs, and tested two of the model's
#    habits by experiment: does it use its per-position pads, and does it read word order?
#
# The whole notebook runs in about two minutes on a laptop CPU, most of it the short training run.

# %%
import math
from dataclasses import replace

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from tqdm.auto import tqdm

from dalle_lessons import checkpoints
from dalle_lessons.attention import dalle_mask
from dalle_lessons.config import get_preset
from dalle_lessons.dvae import load_pretrained
from dalle_lessons.environment import pick_device
from dalle_lessons.paths import data_dir
from dalle_lessons.shapes import BACKGROUNDS, COLOR_WORDS, Scene, ShapesDataset, render, to_tensor
from dalle_lessons.tokenizer import CaptionTokenizer
from dalle_lessons.train import lr_at
from dalle_lessons.train_dalle import DalleTrainConfig, TokenData, make_optimizer, token_data, validate
from dalle_lessons.transformer import DalleTransformer, drop_captions

# %% [markdown]
# The course model's sizes come from the `cpu` preset; the tokenizer (lesson 02) and the dVAE (lesson 04)
# are the shipped ones.

# %%
torch.manual_seed(0)
torch.set_grad_enabled(False)  # only the training demo (section 6) needs gradients; it turns them on there
torch.set_printoptions(precision=4, sci_mode=False)
plt.rcParams.update({"figure.dpi": 80})

cfg = get_preset("cpu").transformer  # the course model
T, N, g = cfg.text_seq_len, cfg.image_seq_len, cfg.image_grid
tokenizer = CaptionTokenizer.load()  # lesson 02
dvae = load_pretrained("dvae-cpu")  # lesson 04: images -> 8x8 grids of ids
print(f"course transformer: {cfg.text_seq_len} text + {g}x{g} = {N} image tokens, vocabularies "
      f"{cfg.text_vocab_size} (text) and {cfg.image_vocab_size} (image), d_model {cfg.d_model}, "
      f"{cfg.n_layers} layers of {cfg.n_heads} heads")

# %% [markdown]
# ## 1. From (caption, image) to one token stream
#
# Take one pair from the validation split. The tokenizer of lesson 02 turns the caption into exactly
# `T = 24` ids, padded with the pad id 0; the dVAE of lesson 04 turns the 32×32 picture into an 8×8 grid
# of codebook ids, read in **raster order** (row by row, left to right) as 64 image tokens.

# %%
val_set = ShapesDataset("val", 16)
EXAMPLE = 8
image, caption, scene = val_set[EXAMPLE]
text_ids = torch.tensor([tokenizer.encode(caption)])  # [1, 24]
image_ids = dvae.encode(image[None]).flatten(1)  # [1, 8, 8] -> [1, 64], raster order
n_words = int((text_ids != cfg.pad_id).sum())

print(f"caption: {caption!r}")
print(f"  {n_words} tokens:", tokenizer.tokens(caption))
print("  text ids: ", text_ids[0].tolist())
print("image ids (8x8 grid, raster order):")
print(image_ids.view(g, g))

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.4))
left.imshow(image.permute(1, 2, 0), interpolation="nearest")
left.set_title("the picture (32x32)", fontsize=9)
right.imshow(dvae.decode(image_ids.view(1, g, g))[0].permute(1, 2, 0).clamp(0, 1), interpolation="nearest",
             extent=(-0.5, g - 0.5, g - 0.5, -0.5))
for cell, token in enumerate(image_ids[0].tolist()):
    right.text(cell % g, cell // g, str(token), ha="center", va="center", fontsize=7, color="white",
               bbox={"boxstyle": "round,pad=0.1", "facecolor": "black", "alpha": 0.45, "linewidth": 0})
right.set_title("its 64 image tokens (drawn over their decoding)", fontsize=9)
for ax in (left, right):
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# The background is drawn with a handful of ids (its edges and corners get ids of their own); the other
# ids are where the shapes are.
#
# ### One stream, each position predicting the next token
#
# DALL·E models the caption and the picture **jointly**, as one sequence: first the text, then the image.
# In front of the caption goes a **start** token, so that even the first word is predicted from
# something. The stream of our pair is
#
# `[start, t₁ … t₂₄, i₁ … i₆₄]`: 1 + 24 + 64 = 89 tokens.
#
# Training is the language-model game of lesson 05: **position `p` reads stream token `p` (and, through
# causal attention, everything before it) and predicts stream token `p + 1`.** So the model reads the
# first 88 tokens and predicts the last 88: the 24 text positions predict the caption (the start token
# predicts the first word), and the 64 image positions predict the 64 image tokens. The last image token
# is predicted, never read. Note the seam: position 24 **reads the last text token and predicts the first
# image token**.

# %%
def describe(p: int) -> tuple[str, str]:
    """What stream position p reads and what it predicts, in words."""
    def token(s: int) -> str:  # stream index s: 0 = start, 1..T = caption, T+1.. = image
        if s == 0:
            return "<start>"
        if s <= T:
            piece = tokenizer.tokens(caption)[s - 1] if s <= n_words else "<pad>"
            return f"text {s - 1:2d}  {piece!r:12}"
        cell = s - T - 1
        return f"image {cell:2d} (row {cell // g}, col {cell % g})"
    return token(p), token(p + 1)


print(f"{'position':>8}  {'reads':32} predicts")
for p in [0, 1, 2, n_words - 1, n_words, n_words + 1, T - 1, T, T + 1, T + 2, T + N - 1]:
    reads, predicts = describe(p)
    print(f"{p:8d}  {reads:32} {predicts}")
print(f"{T + N} positions: {T} predict text, {N} predict image")

# %% [markdown]
# Three things to notice.
#
# - Position `n_words` predicts the **first pad**: the text loss teaches the model where a caption
#   *ends*. After that, a pad always follows a pad, which the model learns quickly (those positions cost
#   almost nothing, which keeps the average text loss low).
# - The image starts at the **fixed** stream index 25 (predicted by position 24) whatever the caption's
#   length, because the caption is padded to 24 slots (the paper pads to 256). The next section says why
#   that makes a start-of-image token unnecessary.
# - Some implementations put both vocabularies into one, writing image id `v` as `text_vocab_size + v`
#   (exercise 1 builds a stream that way). `DalleTransformer` keeps two vocabularies and **two output
#   heads** instead (section 4), and its start token is a learned vector rather than an id.
#
# The same layout as a picture: every column is a position, the top row what it reads, the bottom row
# what it predicts.

# %%
KIND_COLOURS = {"start": "#7f7f7f", "word": "#3b75af", "pad": "#c6dbef", "image": "#e8702a"}


def kind_of(s: int) -> str:
    return "start" if s == 0 else "word" if s <= n_words else "pad" if s <= T else "image"


kinds = list(KIND_COLOURS)
layout = torch.tensor([[kinds.index(kind_of(p)) for p in range(T + N)],  # row 0: what position p reads
                       [kinds.index(kind_of(p + 1)) for p in range(T + N)]])  # row 1: what it predicts
fig, ax = plt.subplots(figsize=(9, 1.9))
ax.pcolormesh(layout, cmap=ListedColormap(list(KIND_COLOURS.values())), vmin=-0.5, vmax=len(kinds) - 0.5,
              edgecolors="white", linewidth=0.5)
ax.set(yticks=[0.5, 1.5], yticklabels=["reads", "predicts"], xlabel="stream position", ylim=(2, 0))
ticks = [0, n_words, T, T + N - 1]
ax.set_xticks([p + 0.5 for p in ticks], [str(p) for p in ticks])
ax.annotate("position 24 reads the last text token and predicts the first image token", xy=(T + 0.5, 0),
            xytext=(T + 4, -0.6), fontsize=8, annotation_clip=False, arrowprops={"arrowstyle": "->"})
ax.legend(handles=[Patch(color=c, label=k) for k, c in KIND_COLOURS.items()], fontsize=8,
          loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### The paper's start-of-image token, and why the course places the boundary by position
#
# The paper mentions a **start-of-image token** that marks where the image begins. The course leaves it
# out: it places the boundary **by position**, and with a fixed text length that is equivalent.
#
# Every caption is padded to exactly `T = 24` slots, one learned pad per empty slot (the paper pads to 256
# the same way). So in every stream the first image token sits at index `T + 1 = 25`, and position `T = 24`
# predicts it, however many words the caption has. In `DalleTransformer` (`dalle_lessons/transformer.py`)
# the boundary is this one index, written once: the outputs of positions `0 … T − 1` go to the text head
# (`h[:, :T]`), those of positions `T … T + N − 1` to the image head (`h[:, T:]`), and position 24 knows
# where it is from its own learned position embedding, `text_pos[24]`.
#
# A start-of-image token in this padded layout, `[start, t₁ … t₂₄, <soi>, i₁ … i₆₄]`, would be the same id
# at the same index in every stream: position 24 would have to predict `<soi>`, which is always right and
# teaches nothing, and position 25 would read it and predict `i₁`. One position longer, and no information
# that the fixed index does not already give. The marker becomes necessary only when the boundary
# **moves**: in a *packed* layout, with the pads dropped, the image begins right after the last word, at a
# different index for every caption. Exercise 1 builds that layout and shows how far the boundary moves.

# %% [markdown]
# ## 2. Embeddings: what each position reads
#
# Lesson 03 built the pieces; here they are put together as `DalleTransformer` does. Every stream
# position becomes a `d_model`-sized vector:
#
# - **start**: one learned vector, plus position embedding 0;
# - **caption token** at text position `t`: its token embedding plus the learned position embedding
#   `t + 1`;
# - **pad** at text position `t`: *its own* learned pad vector `pad[t]` (one per text position) instead of
#   a token embedding, plus the same position embedding;
# - **image token** in cell `(r, c)`: its image-token embedding plus a **row** vector and a **column**
#   vector (lesson 03's row/column embedding). Text and image ids have separate tables, so text id 5 and
#   image id 5 are different tokens.
#
# **Why one pad per position?** The usual way to handle padding is to hide the pads from attention
# (their scores set to −∞). The paper (section 2.2) instead learns "a special padding token separately
# for each of the 256 text positions", used only where there is no text token. In its preliminary
# experiments this gave a *higher* validation loss but *better* results on out-of-distribution captions.
# The pads stay visible: an image token can read "no word at position 17" as a signal of its own, and
# each of those slots learns a vector that is useful to read. With one shared pad vector, every empty slot
# would say the same thing.
#
# Here is the embedding from scratch, reading the weights of a freshly initialised `DalleTransformer`.

# %%
model = DalleTransformer(cfg, generator=torch.Generator().manual_seed(0)).eval()


def embed_text(net: DalleTransformer, text_ids: torch.Tensor) -> torch.Tensor:
    """[B, T] caption ids -> [B, T + 1, d]: the start vector, then each token (or its slot's pad vector)."""
    B = text_ids.shape[0]
    tokens = net.text_emb.weight[text_ids]  # [B, T, d]: a lookup, as in lesson 03
    is_pad = (text_ids == cfg.pad_id)[..., None]
    tokens = torch.where(is_pad, net.pad_emb.weight[:T], tokens)  # a pad at position t gets pad[t]
    start = net.bos.expand(B, 1, cfg.d_model)
    return torch.cat([start, tokens], dim=1) + net.text_pos.embedding.weight[:T + 1]


print("start + caption:", tuple(embed_text(model, text_ids).shape), f"= 1 start + {T} text slots, d_model {cfg.d_model}")

# %% [markdown]
# The image tokens add a row vector and a column vector to each token's embedding, and the stream is the two
# parts joined. The last image token is left out: it is predicted, never read.

# %%
def embed_image(net: DalleTransformer, image_ids: torch.Tensor) -> torch.Tensor:
    """[B, n] image ids (raster order) -> [B, n, d]: token + row + column."""
    cells = torch.arange(image_ids.shape[1])
    rows, cols = cells // g, cells % g
    return net.image_emb.weight[image_ids] + net.image_pos.row.weight[rows] + net.image_pos.col.weight[cols]


def embed_stream(net: DalleTransformer, text_ids: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
    """What the model reads: [start | caption | all image tokens but the last] -> [B, T + N, d]."""
    return torch.cat([embed_text(net, text_ids), embed_image(net, image_ids[:, :-1])], dim=1)


x = embed_stream(model, text_ids, image_ids)
print("stream read by the model:", tuple(x.shape), f"= 1 start + {T} text + {N - 1} image positions")

# %% [markdown]
# To compare with the library, we need the vectors it feeds its first block. A **forward pre-hook** is
# PyTorch's way to look inside a model without changing it: a function called with a module's inputs
# each time the module runs. (Section 7 uses the same trick to read attention weights.)

# %%
val_batch = TokenData(text=tokenizer.encode_batch([val_set.item_caption(i) for i in range(8)]),
                      image=dvae.encode(torch.stack([val_set.image(i) for i in range(8)])).flatten(1))
captured = {}
hook = model.blocks[0].register_forward_pre_hook(lambda module, args: captured.update(x=args[0]))
out = model(val_batch.text, val_batch.image)
hook.remove()

ours = embed_stream(model, val_batch.text, val_batch.image)
assert torch.allclose(ours, captured["x"], atol=1e-6)
print(f"embed_stream == what DalleTransformer feeds its first block ({len(val_batch)} pairs):", True)
pads = val_batch.text == cfg.pad_id
print(f"pads in this batch: {int(pads.sum())} of {pads.numel()} text slots, in "
      f"{int(pads.any(0).sum())} different positions, so {int(pads.any(0).sum())} different pad vectors")

# %% [markdown]
# ## 3. The transformer from scratch
#
# DALL·E's transformer is a GPT-style **decoder-only** stack of identical blocks. Each block is
# **pre-LayerNorm**: it normalises its input, lets the tokens read each other (attention, lesson 05),
# adds the result back (a *residual* connection), then does the same with a small two-layer network
# applied to each position on its own (the *MLP*):
#
# ```
# x = x + attention(LayerNorm(x))      tokens exchange information
# x = x + MLP(LayerNorm(x))            each position computes on its own: d -> 4d -> GELU -> d
# ```
#
# After the last block, one more LayerNorm and the output heads. Below, every piece is written out from
# the model's own weights (`x @ W.T + b` is what a linear layer computes).

# %%
def layer_norm(x: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
    """Each vector rescaled to mean 0 and variance 1, then a learned scale and shift."""
    mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def attention(x: torch.Tensor, attn, mask: torch.Tensor) -> torch.Tensor:
    """Lesson 05's multi-head attention with this layer's weights; mask[i, j] True = i may read j."""
    B, n, d = x.shape
    H = attn.n_heads
    q, k, v = (x @ attn.qkv.weight.T + attn.qkv.bias).split(d, dim=-1)
    q, k, v = (t.view(B, n, H, d // H).transpose(1, 2) for t in (q, k, v))  # [B, H, n, head_dim]
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // H)
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    heads = (weights @ v).transpose(1, 2).reshape(B, n, d)  # concatenate the heads
    return heads @ attn.proj.weight.T + attn.proj.bias


# %% [markdown]
# The MLP and the block put these together exactly as in the two lines above:

# %%
def mlp(x: torch.Tensor, m) -> torch.Tensor:
    return F.gelu(x @ m.fc.weight.T + m.fc.bias) @ m.proj.weight.T + m.proj.bias


def block_forward(x: torch.Tensor, block, mask: torch.Tensor) -> torch.Tensor:
    x = x + attention(layer_norm(x, block.ln_1), block.attn, mask)
    return x + mlp(layer_norm(x, block.ln_2), block.mlp)


# %% [markdown]
# The whole model: embed, run the blocks (each with its attention mask), normalise, and send the first `T`
# positions to the text head and the other `N` to the image head. Then compare with the library on the
# batch of section 2.

# %%
def forward(net: DalleTransformer, text_ids: torch.Tensor, image_ids: torch.Tensor, masks: list[torch.Tensor]):
    """The whole model: embeddings, blocks, final LayerNorm, and one head per vocabulary."""
    h = embed_stream(net, text_ids, image_ids)
    for block, mask in zip(net.blocks, masks):
        h = block_forward(h, block, mask)
    h = layer_norm(h, net.ln_f)
    return h[:, :T] @ net.text_head.weight.T, h[:, T:] @ net.image_head.weight.T


causal = torch.ones(T + N, T + N, dtype=torch.bool).tril()  # the course model: dense causal attention
text_logits, image_logits = forward(model, val_batch.text, val_batch.image, [causal] * cfg.n_layers)
print("text logits: ", tuple(text_logits.shape), "(pairs, text positions, text vocabulary)")
print("image logits:", tuple(image_logits.shape), "(pairs, image positions, image vocabulary)")
assert torch.allclose(text_logits, out.text_logits, atol=1e-4)
assert torch.allclose(image_logits, out.image_logits, atol=1e-4)
print("from scratch == DalleTransformer (same weights): text and image logits agree")

# %% [markdown]
# The course model uses dense causal attention in every layer (88 tokens are cheap). With
# `attention_pattern="paper"`, each block uses one of DALL·E's sparse masks from lesson 05 (row, column,
# and convolutional in the last layer), cropped to the `T + N` positions the model reads. The same
# from-scratch code, handed those masks, still agrees:

# %%
sparse = DalleTransformer(replace(cfg, attention_pattern="paper"), generator=torch.Generator().manual_seed(1)).eval()
masks = [dalle_mask(T + 1, g, block.kind, cfg.conv_kernel)[:T + N, :T + N] for block in sparse.blocks]
print("layers:", [block.kind for block in sparse.blocks])
text_logits_s, image_logits_s = forward(sparse, val_batch.text, val_batch.image, masks)
out_sparse = sparse(val_batch.text, val_batch.image)
assert torch.allclose(text_logits_s, out_sparse.text_logits, atol=1e-4)
assert torch.allclose(image_logits_s, out_sparse.image_logits, atol=1e-4)
print("from scratch == DalleTransformer with the paper's sparse layers: True")

# %% [markdown]
# ## 4. The loss
#
# ### Two heads: text positions guess text, image positions guess image
#
# The first 24 positions predict caption tokens, the last 64 predict image tokens. So the model has two
# output layers: the **text head** scores the 512 text tokens at text positions, the **image head** the
# 512 image tokens at image positions. An image position can never predict a word, and a text position
# never an image token.
#
# This is the same as one head over the joined vocabulary with the wrong half **masked out** (logits set
# to −∞, so their probability is exactly 0), but cheaper: the masked logits are never computed. Check
# both claims:

# %%
h_final = {}
hook = model.ln_f.register_forward_hook(lambda module, args, output: h_final.update(h=output))
out = model(val_batch.text, val_batch.image)
hook.remove()

V_text, V_image = cfg.text_vocab_size, cfg.image_vocab_size
joint_head = torch.cat([model.text_head.weight, model.image_head.weight])  # [V_text + V_image, d]
joint_logits = h_final["h"] @ joint_head.T  # every position scores both vocabularies
joint_logits[:, :T, V_text:] = float("-inf")  # text positions: no image tokens
joint_logits[:, T:, :V_text] = float("-inf")  # image positions: no text tokens
joint_targets = torch.cat([val_batch.text, val_batch.image + V_text], dim=1)  # one shared vocabulary
joint_text = F.cross_entropy(joint_logits[:, :T].flatten(0, 1), joint_targets[:, :T].flatten())
joint_image = F.cross_entropy(joint_logits[:, T:].flatten(0, 1), joint_targets[:, T:].flatten())
assert torch.allclose(joint_text, out.text_loss, atol=1e-5) and torch.allclose(joint_image, out.image_loss, atol=1e-5)
print("one masked head == two heads: same text loss and same image loss")

# %% [markdown]
# And the cost: the joint head computes a score for every token of both vocabularies at every position,
# much of which the mask then throws away.

# %%
def logits_per_pair(text_len: int, n_image: int, v_text: int, v_image: int) -> tuple[int, int]:
    """Logits computed for one pair: one joint head everywhere vs one head per vocabulary."""
    return (text_len + n_image) * (v_text + v_image), text_len * v_text + n_image * v_image


paper = get_preset("paper").transformer
for name, c in (("course", cfg), ("paper", paper)):
    joint, split = logits_per_pair(c.text_seq_len, c.image_seq_len, c.text_vocab_size, c.image_vocab_size)
    print(f"{name:>6}: one joint head computes {joint:>10,} logits per pair, two heads {split:>10,} "
          f"({split / joint:.0%})")

# %% [markdown]
# ### Cross-entropy, weighted 1/8 text and 7/8 image
#
# At each position the model gives a probability to every possible next token; the loss is
# **cross-entropy**, `−log p(the token that really comes next)`, averaged. It is computed separately for
# the two kinds of position, each averaged over its own tokens, and combined:
#
# $$\mathcal{L} = \tfrac{1}{8}\,\mathcal{L}_\text{text} + \tfrac{7}{8}\,\mathcal{L}_\text{image}$$
#
# Before training, every token is about equally likely, so both terms start near `ln 512 ≈ 6.24` (a little
# above it: the random initial logits are small but not all equal, and any spread costs a bit).

# %%
text_targets, image_targets = val_batch.text, val_batch.image  # position p's target: stream token p + 1
by_hand_text = -text_logits.log_softmax(-1).gather(-1, text_targets[..., None]).mean()
by_hand_image = -image_logits.log_softmax(-1).gather(-1, image_targets[..., None]).mean()
by_hand = cfg.text_loss_weight * by_hand_text + cfg.image_loss_weight * by_hand_image
print(f"text loss {by_hand_text:.3f}, image loss {by_hand_image:.3f}, weighted {by_hand:.3f}   "
      f"(ln {V_image} = {math.log(V_image):.3f})")
assert torch.allclose(by_hand, out.loss, atol=1e-5) and 0 < by_hand_image - math.log(V_image) < 0.5
print("== DalleTransformer's loss:", True)

# %% [markdown]
# **Why 7/8 for the image?** The paper says it plainly: "since we are primarily interested in image
# modeling", the text cross-entropy is multiplied by 1/8 and the image cross-entropy by 7/8. The image
# is the point: at sampling time the caption is *given*, and only the image tokens are generated. There
# are also far more of them, and each carries part of the picture, while most of the caption's positions
# are easy (pads, "a", "of").
#
# **Why keep the text term at all?** Predicting the caption is a language-modelling task, and it makes
# the model learn what the words mean and how they combine ("a red circle *left of* a blue square" is not
# "a blue square left of a red circle"), in the same representations that the image positions read. It
# is cheap at 1/8.
#
# Because each term is a **mean over its own tokens**, the split does not depend on how long the caption
# is or how many image tokens there are. One mean over all the tokens would give the modalities weights
# proportional to their token counts instead. Per token, the two choices compare like this:

# %%
print(f"{'':6} {'text':>6} {'image':>6}   {'share of the loss, text / image':^31}   {'weight of an image token':>24}")
print(f"{'':6} {'tokens':>6} {'tokens':>6}   {'one mean':>13} {'1/8 and 7/8':>17}   {'/ a text token (1/8, 7/8)':>24}")
for name, c in (("course", cfg), ("paper", paper)):
    t_len, n_img = c.text_seq_len, c.image_seq_len
    one_mean = f"{t_len / (t_len + n_img):.0%} / {n_img / (t_len + n_img):.0%}"
    weighted = f"{c.text_loss_weight:.1%} / {c.image_loss_weight:.1%}"
    per_token = (c.image_loss_weight / n_img) / (c.text_loss_weight / t_len)
    print(f"{name:>6} {t_len:6d} {n_img:6d}   {one_mean:>13} {weighted:>17}   {per_token:24.2f}")

# %% [markdown]
# With one mean over all tokens, every token weighs the same and the paper's text would get 20% of the
# loss. With 1/8 it gets 12.5%, and each image token weighs 1.75 times as much as a text token (2.6 times
# in the course, whose captions are relatively longer).
#
# **Getting DALL·E right: maximum likelihood, not a contrastive loss.** A common account says DALL·E's
# transformer is trained with a *contrastive* loss that pulls matching captions and images together. It is
# not. The loss above is all there is: next-token cross-entropy on the stream, which is **maximum
# likelihood** of `p(text, image) = Πₜ p(tokenₜ | tokens before it)` (its text and image parts weighted 1/8
# and 7/8). No negative pairs, no similarity scores. Contrastive learning belongs to **CLIP**, a separate model trained afterwards to score how well an
# image matches a caption, which DALL·E uses to **rerank** its samples (the paper draws 512 per caption and
# keeps the best; [lesson 08](08_reranking_with_clip.ipynb)).
#
# ## 5. Caption dropout: learning p(image) as well as p(image | caption)
#
# `DalleTransformer` has one more training option, `caption_dropout` (0.1 in the course): each caption
# is replaced, with that probability, by the **empty caption** (all pads), and the model must predict the
# image without it. The model then knows both `p(image | caption)` and `p(image)`, which **classifier-free
# guidance** (lesson 07) combines to make samples follow their caption more closely.
#
# This is **not** in the 2021 paper: guidance came later (Ho & Salimans, 2021) and was carried over to
# autoregressive text-to-image models such as Make-A-Scene and Parti (2022). The course adds it because it
# costs one line and makes lesson 07 possible. It draws one coin per caption from a seeded generator:

# %%
many = val_batch.text.repeat(125, 1)  # 1000 captions
dropped = drop_captions(many, p=cfg.caption_dropout, pad_id=cfg.pad_id, generator=torch.Generator().manual_seed(0))
emptied = (dropped == cfg.pad_id).all(1)
print(f"caption_dropout = {cfg.caption_dropout}: {int(emptied.sum())} of {len(many)} captions emptied; the "
      "rest untouched:", torch.equal(dropped[~emptied], many[~emptied]))
assert 70 < emptied.sum() < 130 and torch.equal(dropped[~emptied], many[~emptied])

# %% [markdown]
# The model applies it inside `forward`, in training mode only. An emptied caption is also the text
# target, so those pairs teach the text head nothing but "pads follow the start".
#
# ## 6. Train briefly
#
# Training needs pairs of (caption ids, image ids). The dVAE is frozen while the transformer trains (the
# paper's stage 2), so the images are encoded **once** and the tokens cached:
# `dalle_lessons.train_dalle.token_data` does it and stores the result in `data/cache/`. For the demo we take
# 2,000 training scenes and train a small transformer (2 layers, `d_model` 128) for 150 steps of 32 pairs,
# with the library's optimiser: AdamW, weight decay on the weight matrices only, a short warm-up and a
# cosine decay of the learning rate.
#
# The dashed line marks a useful reference: the image loss of a model that ignores everything and always
# predicts how frequent each image token is overall (the entropy of the token frequencies).

# %%
FULL_TRAINING = False  # True: retrain the shipped transformer (about 20 minutes on a 2-core CPU, a few on a GPU)
device = pick_device()

train_pairs = token_data("train", 2000)  # computed once (a few seconds), then loaded from data/cache/
val_pairs = token_data("val", 1000)
frequency = torch.bincount(train_pairs.image.flatten(), minlength=V_image).float()
frequency /= frequency.sum()
unigram_loss = float(-(frequency[frequency > 0] * frequency[frequency > 0].log()).sum())
print(f"train pairs: {len(train_pairs)}, text {tuple(train_pairs.text.shape)}, image {tuple(train_pairs.image.shape)}")
print(f"image-token frequency baseline: {unigram_loss:.2f} nats (uniform guessing: ln {V_image} = "
      f"{math.log(V_image):.2f})")

# %% [markdown]
# The model, its optimiser, and two seeded generators: one picks the pairs of each batch, the other draws
# the caption-dropout coins. 200 validation pairs measure the model before and after.

# %%
demo_cfg = replace(cfg, d_model=128, n_layers=2, n_heads=4)
demo_train = DalleTrainConfig(steps=150, batch_size=32, lr=2e-3, lr_warmup=15)
demo = DalleTransformer(demo_cfg, generator=torch.Generator().manual_seed(0)).to(device)
optimizer = make_optimizer(demo, demo_train)
batch_rng = torch.Generator().manual_seed(1)  # which pairs go in each batch
dropout_rng = torch.Generator(device=device).manual_seed(2)  # caption dropout
val_few = TokenData(val_pairs.text[:200], val_pairs.image[:200])
before = validate(demo, val_few)
print(f"demo model: {demo.num_parameters():,} parameters; before training: val text loss "
      f"{before['val_text_loss']:.2f}, val image loss {before['val_image_loss']:.2f}")

# %% [markdown]
# Each step: set the learning rate of the schedule, draw a batch, run the model (its loss is the weighted
# cross-entropy of section 4), backpropagate, clip the gradient norm, and update.

# %%
# NBVAL_IGNORE_OUTPUT
# (a progress bar, and losses whose last digits depend on the machine's arithmetic)
history = []
demo.train()
with torch.enable_grad():
    for step in tqdm(range(demo_train.steps), desc="demo"):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, demo_train)
        index = torch.randint(len(train_pairs), (demo_train.batch_size,), generator=batch_rng)
        output = demo(train_pairs.text[index].to(device), train_pairs.image[index].to(device), generator=dropout_rng)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(demo.parameters(), demo_train.grad_clip)
        optimizer.step()
        history.append((output.loss.item(), output.text_loss.item(), output.image_loss.item()))
after = validate(demo, val_few)
for name, row in (("before", before), ("after", after)):
    print(f"{name:>6}: val text loss {row['val_text_loss']:.2f}, val image loss {row['val_image_loss']:.2f}, "
          f"image accuracy {row['val_image_accuracy']:.1%}")

# %%
losses = torch.tensor(history)
fig, ax = plt.subplots(figsize=(6, 3))
for column, label in enumerate(("weighted loss", "text loss", "image loss")):
    ax.plot(losses[:, column], label=label, linewidth=1)
ax.axhline(unigram_loss, color="gray", linestyle="--", linewidth=1, label="image-token frequencies")
ax.set(xlabel="step", ylabel="cross-entropy (nats)", title="a 2-layer transformer, 150 steps", ylim=(0, 7))
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

first, last = losses[:10, 0].mean().item(), losses[-10:, 0].mean().item()
assert last < 0.6 * first, (first, last)
assert after["val_image_loss"] < before["val_image_loss"] - 2.0 and after["val_text_loss"] < before["val_text_loss"] - 2.0
print("the training loss fell by more than 40%:", last < 0.6 * first)
print("validation losses fell by more than 2 nats (text and image):", True)

# %% [markdown]
# Both losses fall fast, far below the dashed line: even two layers quickly learn that a background goes on
# where it started and what captions look like. Drawing the *shapes* the caption asks for is the hard part,
# and it takes the full model (twice the layers, three times the width), all the training scenes and many
# more steps. The shipped course model was trained by the package's own command,
#
# ```
# python -m dalle_lessons train dalle --preset cpu --seed 0
# ```
#
# (section 7 prints the exact command and settings, recorded in the checkpoint). `FULL_TRAINING = True`
# retrains it here with the same seed and settings, into `runs/`.

# %%
# NBVAL_SKIP
if FULL_TRAINING:  # the shipped model's recipe, read from its JSON: same seed, same settings
    from dalle_lessons.train_dalle import train_dalle
    shipped = checkpoints.read_metadata(data_dir() / "dalle-cpu.safetensors")["extra"]
    recipe = DalleTrainConfig(**{**shipped["train_config"], "betas": tuple(shipped["train_config"]["betas"])})
    summary = train_dalle("cpu", seed=shipped["seed"], out=data_dir().parent / "runs", train_config=recipe,
                          device=device)
    print(f"trained in {summary['seconds'] / 60:.1f} minutes: {summary['path']}")

# %% [markdown]
# ## 7. The pretrained model
#
# `checkpoints.load` rebuilds the model from its JSON config and loads the weights from the safetensors
# file; the JSON also records how it was trained.

# %%
checkpoint = (data_dir().parent / "runs" if FULL_TRAINING else data_dir()) / "dalle-cpu.safetensors"
dalle = checkpoints.load(checkpoint).eval()
meta = checkpoints.read_metadata(checkpoint)["extra"]
recipe = meta["train_config"]
print(f"{type(dalle).__name__}: {dalle.num_parameters():,} parameters")
print(f"trained with `{meta['command']}`")
print(f"  {meta['steps']:,} steps of {recipe['batch_size']} pairs from {recipe['train_items']:,} scenes x "
      f"{recipe['captions_per_item']} captions, in {meta['wall_seconds'] / 60:.0f} minutes ({meta['machine']})")

# %% [markdown]
# ### Validation losses and next-token accuracy
#
# On held-out pairs, with **teacher forcing** (every position reads the true tokens before it, as in
# training): the two losses, and how often the most likely image token is the right one.

# %%
VAL = 128
val_text, val_image = val_pairs.text[:VAL], val_pairs.image[:VAL]
result = dalle(val_text, val_image)
correct = result.image_logits.argmax(-1) == val_image  # [VAL, 64]
accuracy = correct.float().mean().item()

print(f"{VAL} validation pairs   {'text loss':>9} {'image loss':>10} {'image accuracy':>15}")
print(f"{'pretrained model':20} {result.text_loss:9.2f} {result.image_loss:10.2f} {accuracy:15.1%}")
print(f"{'token frequencies':20} {'':9} {unigram_loss:10.2f}")
assert result.image_loss < 0.3 * unigram_loss and result.text_loss < 1.0 and accuracy > 0.7
demo_result = validate(demo.cpu(), TokenData(val_text, val_image))  # the library's validation function
assert result.image_loss < demo_result["val_image_loss"] - 0.2  # far better than the demo model

# %% [markdown]
# ### Where in the picture does the caption matter?
#
# An average hides where the work is. Most of the 64 cells are background, which the first few tokens
# give away. The interesting cells hold the shapes, and among them one kind stands out: **the first cell
# of each object** in raster order. When the model predicts it, every cell read so far (the rows above, the
# cells to the left) is background; nothing but the caption says that an object starts here, and which.
#
# The scenes themselves say which cells each object covers: render the object alone on its background,
# and a cell belongs to it when any of its 4×4 pixels differs from the background.

# %%
def cells_covered(obj, background: str) -> torch.Tensor:
    """[64] bool: the image cells that one object covers, found by rendering it alone."""
    alone = to_tensor(render(Scene((obj,), background), 32))
    differs = (alone - torch.tensor(BACKGROUNDS[background])[:, None, None] / 255).abs().amax(0) > 0.1
    return differs.view(g, 4, g, 4).any(3).any(1).flatten()


val_scenes = ShapesDataset("val", VAL)  # the same scenes as val_pairs, in the same order
assert torch.equal(tokenizer.encode_batch([val_scenes.item_caption(i) for i in range(VAL)]), val_text)
covered = [[cells_covered(obj, s.background) for obj in s.objects] for s in val_scenes.scenes]
object_cells = torch.stack([torch.stack(masks).any(0) for masks in covered])  # [VAL, 64]
first_cells = torch.zeros(VAL, N, dtype=torch.bool)  # the first cell of each object, in raster order
for i, masks in enumerate(covered):
    for mask in masks:
        first_cells[i, mask.nonzero()[0]] = True
later_cells = object_cells & ~first_cells
print(f"of {VAL * N} cells: {int((~object_cells).sum())} background, {int(first_cells.sum())} first cells of "
      f"an object, {int(later_cells.sum())} other object cells")

# %% [markdown]
# Now score every image token with three captions: the pair's **own**, the **empty caption** (which caption
# dropout trained the model for), and **another pair's caption** (each image paired with its neighbour's).
# A model that modelled pictures alone and ignored the words would score all three alike.

# %%
def image_token_losses(image_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every image token, [VAL, 64] (no mean)."""
    return F.cross_entropy(image_logits.transpose(1, 2), val_image, reduction="none")


losses_with = {"its own caption": image_token_losses(result.image_logits),
               "the empty caption": image_token_losses(dalle(dalle.empty_text(VAL), val_image).image_logits),
               "another pair's caption": image_token_losses(dalle(val_text.roll(1, dims=0), val_image).image_logits)}
cell_kinds = {"background": ~object_cells, "first cell of an object": first_cells, "other object cells": later_cells}
print(f"{'image loss (nats), read with:':28} {'own':>6} {'empty':>6} {'another':>8}   top guess right (own)")
for kind, cells in cell_kinds.items():
    own_, empty_, wrong_ = (losses_with[name][cells].mean() for name in losses_with)
    print(f"{kind:28} {own_:6.2f} {empty_:6.2f} {wrong_:8.2f}   {correct[cells].float().mean():21.0%}")
own, empty, wrong = (losses_with[name][first_cells].mean() for name in losses_with)
assert own < empty - 0.5 and empty < wrong - 1.0  # the caption decides the first cells
assert own > 3 * losses_with["its own caption"][later_cells].mean()  # and they are the hard ones

# %%
fig, ax = plt.subplots(figsize=(7, 3))
for k, (name, ce) in enumerate(losses_with.items()):
    heights = [ce[cells].mean().item() for cells in cell_kinds.values()]
    bars = ax.bar([x + 0.27 * (k - 1) for x in range(len(cell_kinds))], heights, 0.27, label=name)
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
ax.set_xticks(range(len(cell_kinds)), list(cell_kinds))
ax.set(ylabel="image loss (nats per token)", title="the pretrained model, 128 validation pairs")
ax.legend(fontsize=8, title="read with", title_fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The first cell of each object is where the model is least sure (its top guess is right far less often) and
# where the caption matters most: without one, the model can only guess whether and which object starts
# here; with a wrong one, it confidently expects something else, which costs more than guessing. Once an
# object has begun, the cells already drawn give much of the rest away (teacher forcing shows them the
# true tokens), so the other object cells are cheaper and lean on the caption less. The background barely
# cares. This is also why sampling (lesson 07) can go wrong where an object begins: a sampled first cell
# is drawn without the true one to lean on.
#
# ### How training went
#
# The training command measured the model on 1,000 validation pairs every few hundred steps and recorded
# the figures in the checkpoint's JSON:

# %%
recorded = meta["history"]
steps = [row["step"] for row in recorded]
fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
left.plot(steps, [row["loss"] for row in recorded], "o-", label="training loss (weighted, one batch)")
left.plot(steps, [row["val_text_loss"] for row in recorded], "o-", label="validation text loss")
left.plot(steps, [row["val_image_loss"] for row in recorded], "o-", label="validation image loss")
left.set(xlabel="step", ylabel="cross-entropy (nats)", ylim=(0, None))
left.legend(fontsize=7)
right.plot(steps, [row["val_image_accuracy"] for row in recorded], "o-", color="#e8702a")
right.set(xlabel="step", ylabel="image-token accuracy", ylim=(None, 1))
fig.suptitle("the shipped course transformer, measured during training", fontsize=10)
plt.tight_layout()
plt.show()
final = recorded[-1]
print(f"final (step {final['step']}): val text loss {final['val_text_loss']:.2f}, val image loss "
      f"{final['val_image_loss']:.2f}, image accuracy {final['val_image_accuracy']:.1%}")
assert final["val_image_loss"] < recorded[0]["val_image_loss"]

# %% [markdown]
# The image loss keeps falling; the text loss flattens early. That is the data, not the model: the Shapes
# captions are drawn at random from several phrasings and many synonyms ("a crimson box", "there is a red
# square ..."), so most of the uncertainty about the next word cannot be removed, only learned.

# %% [markdown]
# ### Which caption words do the image tokens read?
#
# Attention weights are computed inside `CausalSelfAttention` and thrown away. A **forward hook** on each
# layer's attention module gets the module's input (the LayerNormed stream) and output each time it runs,
# so we can recompute the weights from the layer's own query and key projections, exactly as in section 3.
# To be sure the recomputation is right, it must also reproduce the module's output. The hook keeps the
# rows of the image-predicting positions and the columns of the start vector and the caption.

# %%
captured = {}


def capture_attention(layer: int):
    def hook(module, inputs, output):
        x = inputs[0]
        B, n, d = x.shape
        H, hd = module.n_heads, module.head_dim
        q, k, v = (t.view(B, n, H, hd).transpose(1, 2) for t in module.qkv(x).split(d, dim=-1))
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        weights = (q @ k.transpose(-2, -1) / math.sqrt(hd)).masked_fill(~causal, float("-inf")).softmax(-1)
        recomputed = module.proj((weights @ v).transpose(1, 2).reshape(B, n, d))
        assert torch.allclose(recomputed, output, atol=1e-4), "the recomputed weights do not give the layer's output"
        captured[layer] = weights[:, :, T:, :T + 1]  # image-predicting queries -> start + caption: [B, H, N, T + 1]
    return hook

# %% [markdown]
# Attach one hook per layer, run the model once on 100 validation pairs, and take the hooks off again.

# %%
hooks = [block.attn.register_forward_hook(capture_attention(i)) for i, block in enumerate(dalle.blocks)]
PAIRS = 100
dalle(val_text[:PAIRS], val_image[:PAIRS])
for hook in hooks:
    hook.remove()
print(f"captured {len(captured)} layers x {cfg.n_heads} heads of attention weights from the {N} image positions "
      f"of {PAIRS} pairs; each layer's output reproduced: True")

# %% [markdown]
# First, where does an image position's attention go, layer by layer: to the start vector, to caption
# words, to the pads, or to the image tokens before it? Each softmax row sums to 1, so what the start and
# the caption slots do not get goes to earlier image tokens.

# %%
is_word = (val_text[:PAIRS] != cfg.pad_id)  # [PAIRS, T]
split = []
for layer in range(cfg.n_layers):
    w = captured[layer].mean(1)  # [PAIRS, N, keys], averaged over heads
    start, text_part = w[..., 0], w[..., 1:]
    words = (text_part * is_word[:, None, :]).sum(-1)
    pad_mass = (text_part * ~is_word[:, None, :]).sum(-1)
    image_mass = 1 - w.sum(-1)  # the rest of each softmax row: earlier image tokens
    split.append([start.mean().item(), words.mean().item(), pad_mass.mean().item(), image_mass.mean().item()])
split = torch.tensor(split)
assert torch.allclose(split.sum(1), torch.ones(cfg.n_layers), atol=1e-4)
print(f"on average, image positions give {split[:, 1].mean():.0%} of their attention to caption words, "
      f"{split[:, 2].mean():.0%} to pads and {split[:, 3].mean():.0%} to earlier image tokens")
assert split[:, 1].mean() > 0.05  # the caption is read, in every model worth shipping

# %%
fig, ax = plt.subplots(figsize=(6, 2.8))
bottom = torch.zeros(cfg.n_layers)
for column, (label, colour) in enumerate(zip(("start", "caption words", "pads", "image tokens"),
                                             KIND_COLOURS.values())):
    ax.bar(range(1, cfg.n_layers + 1), split[:, column], bottom=bottom, color=colour, label=label)
    bottom += split[:, column]
ax.set(xlabel="layer", ylabel="share of attention", title="where image positions look (mean over heads)",
       xticks=range(1, cfg.n_layers + 1))
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
plt.tight_layout()
plt.show()

# %% [markdown]
# The caption words get a real share, and so do the pads: the learned pad slots of section 2 are read too.
# (Read, but are they *used*? Exercise 2 finds out by experiment.)
#
# Now single heads. A scene with two objects is a good test of whether a head *looks up* what it needs:
# while the model draws the cells of the first object, does it read that object's colour word, and while it
# draws the second, the other one? For every two-object pair among the 100, take the cells only one of the
# objects covers (from `covered` above), find each object's colour word in the caption, and measure for
# each head the attention from an object's cells to **its own** colour word and to **the other** one.

# %%
colour_of_token = {tokenizer.vocab()["Ġ" + word]: colour for colour, words in COLOR_WORDS.items() for word in words}


def colour_word_keys(text: torch.Tensor, scene) -> list[int] | None:
    """For each object, the stream position (key) of its colour word; None unless each is said exactly once."""
    keys = []
    for obj in scene.objects:
        found = [t + 1 for t, token in enumerate(text.tolist()) if colour_of_token.get(token) == obj.color]
        if len(found) != 1:
            return None
        keys.append(found[0])  # + 1: key 0 is the start vector
    return keys


two_object = []  # (pair, [colour key of each object], [cells only that object covers])
for i in range(PAIRS):
    keys = colour_word_keys(val_text[i], val_scenes.scenes[i]) if len(covered[i]) == 2 else None
    if keys is not None:
        a, b = covered[i]
        if (a & ~b).any() and (b & ~a).any():
            two_object.append((i, keys, [a & ~b, b & ~a]))
print(f"{len(two_object)} two-object pairs whose colour words are said once each")

# %% [markdown]
# For one head, average over those pairs and over both objects: the attention an object's cells give to its
# own colour word, and to the other object's.

# %%
def own_and_other(layer: int, head: int) -> tuple[float, float]:
    """Mean attention from an object's cells to its own colour word, and to the other object's."""
    own = other = 0.0
    for i, keys, cells in two_object:
        w = captured[layer][i, head]  # [N, T + 1]: image positions -> start + caption
        for k in (0, 1):
            own += w[cells[k], keys[k]].mean().item() / (2 * len(two_object))
            other += w[cells[k], keys[1 - k]].mean().item() / (2 * len(two_object))
    return own, other


scores = {(layer, head): own_and_other(layer, head) for layer in range(cfg.n_layers) for head in range(cfg.n_heads)}
binding = torch.tensor([[scores[layer, head][0] - scores[layer, head][1] for head in range(cfg.n_heads)]
                        for layer in range(cfg.n_layers)])  # [layers, heads]: own minus other
heads = sorted(scores, key=lambda lh: scores[lh][1] - scores[lh][0])[:3]  # biggest own - other first
print(f"{'':16} {'its own':>8} {'the other':>10}   colour word, attention from an object's cells")
for layer, head in heads:
    own, other = scores[layer, head]
    print(f"layer {layer + 1}, head {head} {own:8.1%} {other:10.1%}")
print(f"median head: own minus other = {binding.median():+.1%}")
best_own, best_other = scores[heads[0]]
assert best_own > 1.5 * best_other and best_own - best_other > 0.03

# %%
fig, ax = plt.subplots(figsize=(5.5, 2.6))
limit = binding.abs().max().item()
shown = ax.imshow(100 * binding, cmap="RdBu_r", vmin=-100 * limit, vmax=100 * limit)
for layer, head in heads:
    ax.text(head, layer, f"{100 * binding[layer, head]:+.0f}", ha="center", va="center", fontsize=8,
            color="white" if binding[layer, head] > 0.6 * limit else "black")
ax.set(xlabel="head", ylabel="layer", xticks=range(cfg.n_heads), yticks=range(cfg.n_layers),
       yticklabels=range(1, cfg.n_layers + 1), title="own colour word minus the other's (percentage points)")
ax.title.set_fontsize(9)
fig.colorbar(shown, ax=ax, fraction=0.04)
plt.tight_layout()
plt.show()

# %% [markdown]
# Most heads do not care which colour word they read (the white squares), but a few heads, all in one layer,
# do: from the cells of an object they read that object's colour far more than the other one. Binding each
# colour word to the right object is exactly what two-object captions and the held-out colour–shape pairs
# put to the test, and lesson 07 measures how often the small model manages it when it draws.
#
# Attention maps are a hint about what a model does, not a proof: a head can attend to a word and make
# little use of it. The stronger evidence is an intervention that changes the input and measures the loss,
# like the wrong caption above. The exercises run two more: one on the pads, one on word order.
#
# ## 8. At the paper's scale
#
# The paper's transformer is the same design, far bigger. We can build it without allocating a single
# weight: on PyTorch's **meta** device, tensors have shapes but no storage, so the 12-billion-parameter
# model is built in a fraction of a second and its parameters counted.

# %%
with torch.device("meta"):
    big = DalleTransformer(paper)
print(f"{'':22} {'course':>10} {'paper':>14}")
for label, ours_, theirs in (("layers", cfg.n_layers, paper.n_layers), ("heads", cfg.n_heads, paper.n_heads),
                             ("head width", cfg.head_dim, paper.head_dim), ("d_model", cfg.d_model, paper.d_model),
                             ("text tokens", T, paper.text_seq_len), ("text vocabulary", V_text, paper.text_vocab_size),
                             ("image tokens", N, paper.image_seq_len),
                             ("image vocabulary", V_image, paper.image_vocab_size)):
    print(f"{label:22} {ours_:10,} {theirs:14,}")
print(f"{'parameters':22} {dalle.num_parameters():10,} {big.num_parameters():14,}   (the paper: 12 billion)")
short = {"row": "R", "column": "C", "conv": "conv"}
print("paper's attention layers:", " ".join(short[kind] for kind in big.kinds[:8]), "...",
      " ".join(short[kind] for kind in big.kinds[-3:]), "  (lesson 05: R = row, C = column)")
assert 11.5e9 < big.num_parameters() < 12.5e9

# %% [markdown]
# About 12.3 billion, the paper's "12 billion". Nearly all of them are in the 64 blocks (each about
# `12 · d_model²` = 189 million); the embeddings and the two heads are under 2%. The course model has
# 1,550 times fewer parameters, 4 layers of dense attention instead of 64 sparse ones, and reads 88
# positions instead of 1,280.
#
# ## 9. Exercises
#
# Each exercise asks for something this lesson has not shown: a variation, a new piece, or an experiment.
# Replace `raise NotImplementedError` with your code and run the cell below it; the check says, in plain
# words, what is wrong. Solutions are in [solutions/06_transformer.ipynb](solutions/06_transformer.ipynb).

# %%
from dalle_lessons.exercises.l06_transformer import check_one_pad_losses, check_packed_stream, check_shuffle_words

# %% [markdown]
# ### Exercise 1: a stream with a start-of-image token
#
# Section 1 placed the text/image boundary by position, which works because every caption is padded to `T`
# slots. Many implementations instead **pack** the stream: no pads, one shared vocabulary (image id `v`
# written as `text_vocab_size + v`), and a start-of-image token that says where the image begins.
#
# Write `packed_stream(text_ids, image_ids, text_vocab_size, pad_id, bos_id, soi_id)`: `text_ids` is `[B, T]`
# (captions padded with `pad_id`), `image_ids` is `[B, N]`. Return a list of `B` 1-D tensors, one stream per
# pair: `[bos_id, the caption's words (its pads dropped), soi_id, image ids + text_vocab_size]`.
# *Predict first:* for the 8 validation pairs of section 2, at which indices will the first image token
# sit? (In the course's layout: always 25.)

# %%
def packed_stream(text_ids: torch.Tensor, image_ids: torch.Tensor, text_vocab_size: int, pad_id: int,
                  bos_id: int, soi_id: int) -> list[torch.Tensor]:
    # Your code here.
    raise NotImplementedError


ok = check_packed_stream(packed_stream)

# %%
if not ok:
    print("Finish exercise 1 first, then run this cell.")
else:
    bos_id, soi_id = V_text + V_image, V_text + V_image + 1  # two new ids after both vocabularies
    streams = packed_stream(val_batch.text, val_batch.image, V_text, cfg.pad_id, bos_id, soi_id)
    starts = [int((stream == soi_id).nonzero()[0]) + 1 for stream in streams]
    print("first image token at index:", starts, f"  (course layout: always {T + 1})")
    print("stream lengths:            ", [len(stream) for stream in streams], f"  (course layout: always {1 + T + N})")

# %% [markdown]
# ### Exercise 2 (experiment): one pad vector for every position
#
# Section 2 gave each of the 24 text slots its own learned pad vector, the paper's choice, and section 7
# found that image positions give a fifth of their attention to the pads. But does the model *use* which
# slot a pad is in? Test it: replace every pad vector by **one shared vector, the mean of the 24**, and
# measure the losses again.
#
# Write `one_pad_losses(model, text_ids, image_ids)`: the `(text_loss, image_loss)` that `model` gets on
# these pairs when every row of its pad table (`model.pad_emb.weight`) is replaced by their mean. Leave
# `model` itself unchanged: the rest of the notebook still uses it. *Predict first:* the pretrained model's
# image loss is 0.15 nats on the 128 validation pairs. With one shared pad, will it stay, rise a little
# (0.2?), or rise toward the empty caption's 0.29? And on empty captions, where all 24 slots are pads?

# %%
def one_pad_losses(model: DalleTransformer, text_ids: torch.Tensor, image_ids: torch.Tensor) -> tuple[float, float]:
    # Your code here.
    raise NotImplementedError


ok = check_one_pad_losses(one_pad_losses)

# %%
if not ok:
    print("Finish exercise 2 first, then run this cell.")
else:
    shared_text, shared_image = one_pad_losses(dalle, val_text, val_image)
    empty_shared = one_pad_losses(dalle, dalle.empty_text(VAL), val_image)[1]
    print(f"{VAL} validation pairs{'':14} {'text loss':>9} {'image loss':>10}")
    print(f"{'own captions, 24 pad vectors':32} {result.text_loss:9.3f} {result.image_loss:10.3f}")
    print(f"{'own captions, one shared pad':32} {shared_text:9.3f} {shared_image:10.3f}")
    print(f"{'empty captions, 24 pad vectors':32} {'':9} {losses_with['the empty caption'].mean():10.3f}")
    print(f"{'empty captions, one shared pad':32} {'':9} {empty_shared:10.3f}")

# %% [markdown]
# ### Exercise 3 (experiment): does the model read word order?
#
# "a red circle left of a blue square" and "a blue circle left of a red square" have the same words. A model
# that read captions as a bag of words could not tell them apart. Write `shuffle_words(text_ids, pad_id,
# generator)`: a copy of `text_ids` in which each caption's words are put in a random order, one permutation
# per caption drawn with `torch.randperm(n, generator=generator)`, and every pad stays where it is.
# (Strictly you shuffle tokens, but nearly every Shapes word is a single token.)
#
# The cell after the check measures the image loss on the object cells with shuffled captions, next to the
# own and the empty captions of section 7, for one-object and two-object scenes apart. *Predict first:* will
# shuffling cost nearly nothing (the model reads a bag of words), as much as no caption at all (it reads only
# sentences it knows), or something in between? And will one- and two-object scenes differ?

# %%
def shuffle_words(text_ids: torch.Tensor, pad_id: int, generator: torch.Generator) -> torch.Tensor:
    # Your code here.
    raise NotImplementedError


ok = check_shuffle_words(shuffle_words)

# %%
if not ok:
    print("Finish exercise 3 first, then run this cell.")
else:
    shuffled = shuffle_words(val_text, cfg.pad_id, torch.Generator().manual_seed(0))
    losses_with["shuffled words"] = image_token_losses(dalle(shuffled, val_image).image_logits)
    two = torch.tensor([len(s.objects) == 2 for s in val_scenes.scenes])[:, None]
    print(f"image loss on object cells with   {'one object':>10} {'two objects':>12}")
    for name in ("its own caption", "shuffled words", "the empty caption"):
        ce = losses_with[name]
        print(f"{name:33} {ce[object_cells & ~two].mean():10.2f} {ce[object_cells & two].mean():12.2f}")

# %% [markdown]
# ## Takeaways
#
# - DALL·E's transformer reads a caption and an image as **one stream**, `[start | text | image]`, and every
#   position predicts the next token. With the text padded to a fixed length, the boundary is a fixed index
#   (position 24 predicts the first image token), so a start-of-image token would add nothing here.
# - Each position reads a **token embedding plus its position**: text slots have learned positions and, where
#   the caption has ended, **one learned pad vector per slot** (the paper's choice over masking pads); image
#   tokens get **row + column** embeddings.
# - The model is a stack of **pre-LayerNorm blocks** and **two heads**, one per vocabulary: a masked joint
#   head without the wasted logits. The paper's is 12 billion parameters: 64 layers of 62 heads, `d_model`
#   3968, 256 text then 1,024 image tokens.
# - The loss is **maximum likelihood**: cross-entropy weighted **1/8 text + 7/8 image**, each a mean over its
#   own tokens. There is no contrastive loss in DALL·E's transformer; contrastive learning is CLIP's, used
#   to rerank samples ([lesson 08](08_reranking_with_clip.ipynb)).
# - Measured on the pretrained model: the caption matters most at **the first cell of each object** (1.0 nats
#   with its own caption, 2.5 with none, 5.4 with a wrong one), and a few heads read the colour word of the
#   object being drawn. Attention shows where a model looks; interventions show what it uses.
#
# ## Check your understanding
#
# 1. Position 24 reads the last text slot and predicts the first image token. Why does the course's layout
#    need no start-of-image token, and in which layout would one be needed?
# 2. Each loss term is a mean over its own tokens. What share of the paper's loss would the text get with one
#    mean over all 1,280 tokens instead, and why did the paper not want that?
# 3. A joint head over both vocabularies, with the wrong half masked to −∞, gives exactly the same losses as
#    two heads. Why exactly the same, and what do two heads save?
# 4. With teacher forcing, the first cell of each object costs about five times more than its other cells.
#    Why, and what does that suggest about where sampling (lesson 07) goes wrong?
# 5. Image positions give about a fifth of their attention to pads. Does that show the model relies on its
#    per-position pad vectors? What measurement would?
#
# The answers are in the [solutions notebook](solutions/06_transformer.ipynb).
#
# **Next: [07 · sampling](07_sampling.ipynb)**, which makes the model draw: it samples image tokens one at a
# time, with a KV cache, top-k and guidance, and the dVAE turns them into pictures.
