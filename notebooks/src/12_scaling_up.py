# %% [markdown]
# # 12 · Scaling up: from a laptop to 1,024 GPUs
#
# *Build DALL·E from Scratch, lesson 12.* Every lesson so far ran on a laptop CPU in a couple of minutes, and
# the transformer it trained has 7.9 million parameters. The model it imitates has 12.3 billion, reads
# sequences 15 times longer, and was trained on 1,024 GPUs. This lesson does the arithmetic that separates the
# two (parameters, FLOPs, memory and time), checks every formula against a real model, and then uses, in
# miniature, the tools that scale needs: 16-bit arithmetic, several processes training one model, and the
# dVAE that OpenAI released.
#
# The course's seed text says that DALL·E trains "with relatively little computational overhead", and names
# specialised hardware, TPUs and IPUs, as a remedy for its limits (lesson 09 sent that remedy here). By the end
# of this lesson you can check both claims with numbers.

# %% [markdown]
# ## What you will build
#
# This lesson adds no box to the pipeline: it prices each box at the paper's size.
#
# ```
# caption ──tokenizer──▶ text ids ─┐
#                                  ├─▶ [text | image] sequence ──transformer──▶ next-token logits
# image ──dVAE encoder──▶ image ids┘                                              │
#                                                         sampling (top-k, KV cache, guidance)
#                                                                                  ▼
#                                      image ids ──dVAE decoder──▶ pixels ──judge/reranker──▶ best images
#
#   transformer at the paper's size: 12.3 B parameters, 94 TFLOP per training image   (sections 1 to 4)
#   dVAE encoder and decoder: OpenAI's released weights, 53.8 M + 43.8 M parameters    (section 5)
# ```
#
# By the end of this lesson you will have:
#
# 1. counted the transformer's **parameters**, **FLOPs** and **training memory** by hand, checked each count
#    against a real model (and against PyTorch's FLOP counter), and drawn them from `tiny` to `paper`;
# 2. priced the paper's **training run** from its published budget, on its own V100s and on today's
#    accelerators, TPUs and IPUs included;
# 3. seen why 16-bit training needs a **loss scale**, stepped a `GradScaler`, and trained the same model a few
#    steps in fp32, bf16 and fp16;
# 4. trained one model in **two processes** with DistributedDataParallel, launched from this notebook;
# 5. measured the **throughput** of the course's presets on this machine;
# 6. run **OpenAI's released dVAE** (random weights here, real photographs on Colab) and seen why its
#    converter asks for your consent.
#
# The notebook runs in about a minute on a 2-core CPU.

# %%
import dataclasses
import logging
import math
import pickle
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib.cbook as cbook
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dalle_lessons import checkpoints, distributed, openai_dvae, scale
from dalle_lessons.attention import dalle_mask
from dalle_lessons.config import PRESETS, get_preset
from dalle_lessons.dvae import DiscreteVAE
from dalle_lessons.environment import describe_device, pick_device
from dalle_lessons.paths import data_dir
from dalle_lessons.train import lr_at
from dalle_lessons.train_dalle import DalleTrainConfig, token_data, train_dalle
from dalle_lessons.training_loop import make_optimizer
from dalle_lessons.transformer import DalleTransformer, drop_captions, layer_kinds

# %% [markdown]
# A few settings, and the course's four presets, the sizes this lesson compares:

# %%
plt.rcParams.update({"figure.dpi": 80})
warnings.filterwarnings("ignore", message=".*captions have more than")  # `tiny` has 16 text slots: long ones are cut
device = pick_device()  # "cuda" on a GPU (Colab), else "cpu": only section 4 uses it

configs = {name: preset.transformer for name, preset in PRESETS.items()}  # tiny, cpu, colab, paper
print(f"{'preset':7} {'layers':>6} {'d_model':>7} {'heads':>5} {'text':>5} {'image':>6} {'text vocab':>10} "
      f"{'image vocab':>11}")
for name, c in configs.items():
    print(f"{name:7} {c.n_layers:6} {c.d_model:7} {c.n_heads:5} {c.text_seq_len:5} {c.image_seq_len:6} "
          f"{c.text_vocab_size:10} {c.image_vocab_size:11}")

# %% [markdown]
# Four presets of one design. `tiny` trains in seconds (the tests use it), `cpu` is the course's model, `colab`
# is the GPU-sized one (64×64 images, 256 image tokens), and `paper` is the published configuration: 64 layers
# of width 3968, 256 text tokens and 1024 image tokens per sequence. (The paper's shape comes from its appendix
# as summarised by others; its training budget, below, was read in its own words. `scale.PAPER_FACTS` records
# how far each figure was checked.)
#
# ## 1. The arithmetic of scale
#
# ### 1.1 Parameters, counted by hand
#
# Almost all of a transformer lives in its blocks. One pre-LayerNorm block of width `d` holds:
#
# | part | weights | biases |
# |---|---|---|
# | two LayerNorms | `2 · d` (scales) | `2 · d` (shifts) |
# | attention: query, key and value projections | `3 · d²` | `3 · d` |
# | attention: output projection | `d²` | `d` |
# | MLP: expand to `4d`, then project back | `4 · d² + 4 · d²` | `4 · d + d` |
#
# `12 · d² + 13 · d` in all. The number of heads does not appear: splitting `d` into heads of `d / heads`
# reshapes the same matrices. Around the blocks sit the embeddings (lesson 06: a token table per vocabulary, a
# pad vector per text position, positions for the start vector and the text, rows and columns for the image),
# a final LayerNorm and the two output heads, one per vocabulary.

# %%
def block_parameters(d: int) -> int:
    """One pre-LayerNorm block of width d, counted by hand."""
    layer_norms = 2 * (d + d)  # two LayerNorms, each a scale and a shift
    attention = (3 * d * d + 3 * d) + (d * d + d)  # q, k, v projections, then the output projection
    mlp = (d * 4 * d + 4 * d) + (4 * d * d + d)  # expand to 4d, project back
    return layer_norms + attention + mlp  # = 12 d² + 13 d


def my_parameters(c) -> int:
    """The whole DALL·E transformer of config c."""
    d, T, g = c.d_model, c.text_seq_len, c.image_grid
    text = (c.text_vocab_size + T + (T + 1) + 1) * d  # token table, a pad per slot, positions (start + T), start
    image = (c.image_vocab_size + 2 * g) * d  # token table, row and column embeddings
    heads = d * (c.text_vocab_size + c.image_vocab_size)  # the two output heads (no biases)
    return text + image + c.n_layers * block_parameters(d) + 2 * d + heads  # 2d: the final LayerNorm


models = {name: DalleTransformer(configs[name], generator=torch.Generator().manual_seed(0))
          for name in ("tiny", "cpu", "colab")}  # real models, real weights
with torch.device("meta"):  # shapes without storage: 12 billion parameters cost no memory
    models["paper"] = DalleTransformer(configs["paper"])
print(f"{'preset':7} {'by hand':>15} {'sum(p.numel())':>15} {'in the blocks':>13}")
for name, model in models.items():
    counted = sum(p.numel() for p in model.parameters())
    mine = my_parameters(configs[name])
    assert mine == counted == sum(scale.transformer_parameters(configs[name]).values())
    assert sum(p.numel() for p in model.blocks[0].parameters()) == block_parameters(configs[name].d_model)
    blocks = configs[name].n_layers * block_parameters(configs[name].d_model)
    print(f"{name:7} {mine:15,} {counted:15,} {100 * blocks / mine:12.1f}%")

# %% [markdown]
# The count by hand equals the real models' `sum(p.numel())`, and `scale.transformer_parameters`, to the last
# parameter, for all four presets. At the course's sizes the embeddings and heads are a visible share (the
# `tiny` model spends a fifth of itself on its 512-word text table); at the paper's, 98.4 % of the 12.3 billion
# are the 64 blocks' matrices, about `12 · d²` = 189 million each. That is why "N parameters" is, to a good
# approximation, "N weights that every token multiplies".
#
# ### 1.2 FLOPs per token, and why training costs three forward passes
#
# A matrix product `[m, k] @ [k, n]` costs `m · k · n` multiply-adds, which we count as **2 FLOPs** each. A
# linear layer with `P` weights therefore costs `2 · P` FLOPs for every token it reads, and one block's
# matrices cost `2 · 12 · d²` per token. Attention adds a term that grows with the context: for each
# (query, key) pair the mask allows, the score `q · k` and the weighted sum of `v` cost `2 · d` FLOPs each,
# `4 · d` per pair. The output heads cost `2 · d · V` at each position of their vocabulary. Embedding lookups
# are free, and the elementwise work (LayerNorm, softmax, GELU) is a few per cent that we leave out.
#
# The **backward** pass computes two products for every product of the forward: the gradient with respect to
# the layer's input, and the one with respect to its weights. So a training step costs about **3 forward
# passes**: `6 · N` FLOPs per token for a model of `N` weights (Kaplan et al., 2020), the "6·N·D" rule for `D`
# training tokens.

# %%
def allowed_pairs(c, kind: str) -> int:
    """(query, key) pairs one layer's mask allows over the T + N stream positions (lesson 05's masks)."""
    L = c.text_seq_len + c.image_seq_len
    if kind == "full":
        return L * (L + 1) // 2  # causal: position p reads p + 1 keys
    return int(dalle_mask(c.text_seq_len + 1, c.image_grid, kind, c.conv_kernel)[:L, :L].sum())


def my_forward_flops(c, dense: bool = False) -> int:
    """FLOPs of one teacher-forced forward pass over one (caption, image) sequence."""
    d, L = c.d_model, c.text_seq_len + c.image_seq_len
    matmuls = 2 * 12 * d * d * L * c.n_layers  # every block's 12 d² weights, once per position
    heads = 2 * d * (c.text_seq_len * c.text_vocab_size + c.image_seq_len * c.image_vocab_size)
    pairs = [L * L if dense else allowed_pairs(c, kind) for kind in layer_kinds(c.n_layers, c.attention_pattern)]
    return matmuls + heads + 4 * d * sum(pairs)


for name, c in configs.items():
    assert my_forward_flops(c) == scale.forward_flops(c).total
    assert my_forward_flops(c, dense=True) == scale.forward_flops(c).total_dense
print("my_forward_flops == scale.forward_flops for every preset ✓")

# %% [markdown]
# Now the check against the machine itself. PyTorch's `FlopCounterMode` counts the FLOPs of every matrix
# product that really runs. With the plain ("math") attention kernel, attention is two batched products over
# **all** `L²` pairs: a dense kernel computes the masked-out scores too, and throws them away. So the counter
# should see our `dense=True` figure for the forward pass, and three times that for forward + backward:

# %%
tiny_cfg = configs["tiny"]
g = torch.Generator().manual_seed(0)
text = torch.randint(1, tiny_cfg.text_vocab_size, (2, tiny_cfg.text_seq_len), generator=g)
image = torch.randint(0, tiny_cfg.image_vocab_size, (2, tiny_cfg.image_seq_len), generator=g)
with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as forward:
    models["tiny"](text, image)
with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as step:
    models["tiny"](text, image).loss.backward()
models["tiny"].zero_grad(set_to_none=True)
print(f"tiny, batch of 2: counted forward {forward.get_total_flops():,}  "
      f"by hand {2 * my_forward_flops(tiny_cfg, dense=True):,}")
print(f"                  counted forward + backward {step.get_total_flops():,} = "
      f"{step.get_total_flops() / forward.get_total_flops():.1f} x the forward")
assert forward.get_total_flops() == 2 * my_forward_flops(tiny_cfg, dense=True)
assert step.get_total_flops() == 3 * forward.get_total_flops()

# %% [markdown]
# Exactly. Per preset, the training cost of one image (3 forward passes over its `T + N` tokens, with the
# masks' allowed pairs), next to the `6 · N · (T + N)` rule of thumb:

# %%
print(f"{'preset':7} {'forward / token':>15} {'training / image':>16} {'6·N·(T+N)':>10} {'attention share':>15}")
for name, c in configs.items():
    flops = scale.forward_flops(c)
    six_n = 6 * my_parameters(c) * flops.positions
    print(f"{name:7} {flops.per_token / 1e6:11.2f} MFLOP {3 * flops.total / 1e9:12.3f} GFLOP "
          f"{six_n / (3 * flops.total):9.2f}x {100 * flops.attention_allowed / flops.total:14.1f}%")
    assert 3 * flops.total == scale.training_flops_per_image(c)

# %% [markdown]
# The rule of thumb overestimates the small models (their embedding tables count as parameters but cost no
# FLOPs: `tiny`'s 1.46x), slightly underestimates `colab` (its 288-token sequences make attention 6 % of the
# work, which the rule leaves out), and is within 0.2 % for the paper's: at 12 billion parameters, a model *is*
# its matrices. 94 TFLOP to train on one image, 24.5 GFLOP per token forward.
#
# ### 1.3 Sparse attention: predict, then compute
#
# Lesson 05 built DALL·E's masks: image tokens see all the text, and among the image tokens a layer sees only
# a row, a column, or a small convolutional window. **Predict before you run the next cell:** what share of
# the causal (query, key) pairs do the paper's masks keep, and how much of the forward pass's FLOPs does that
# save?

# %%
paper = configs["paper"]
L = paper.text_seq_len + paper.image_seq_len
kinds = layer_kinds(paper.n_layers, paper.attention_pattern)
causal = allowed_pairs(paper, "full")
print(f"paper: {L} positions, {causal:,} causal pairs per layer ({L * L:,} for a dense kernel)")
for kind in ("row", "column", "conv"):
    pairs = allowed_pairs(paper, kind)
    print(f"  {kind:6} layers ({kinds.count(kind):2}): {pairs:9,} pairs, {100 * pairs / causal:4.1f}% of causal")
flops = scale.forward_flops(paper)
print(f"attention, share of the forward FLOPs: {100 * flops.attention_dense / flops.total_dense:.1f}% with a dense "
      f"kernel, {100 * flops.attention_allowed / flops.total:.1f}% computing only the allowed pairs")
print(f"FLOPs saved by computing only the allowed pairs: {100 * (1 - flops.total / flops.total_dense):.1f}% of the forward")
mean_pairs = sum(allowed_pairs(paper, kind) for kind in kinds) / len(kinds)
per_token = 16 * L * paper.d_model  # the other activations a block keeps (section 1.4), per sequence
print(f"attention probabilities kept per layer: {paper.n_heads * L * L / 1e6:.1f} M values dense, "
      f"{paper.n_heads * mean_pairs / 1e6:.1f} M allowed; the rest of a block keeps {per_token / 1e6:.1f} M")

# %% [markdown]
# The masks keep about 40 % of the causal pairs (a fifth of a dense kernel's), yet they save only 4 % of the
# FLOPs: at width 3968 the matrices dominate, and attention is 5 % of the work even when computed densely.
# What the masks do save is **memory**: a dense kernel keeps `heads × L²` attention probabilities per layer,
# 102 million values, more than all the rest of the block's activations; a block-sparse kernel (the paper
# wrote its own) keeps a fifth of that. At the course's sizes the story is the same: our `paper`-pattern
# benchmark runs no faster than dense attention (benchmarks/README.md), because PyTorch's fused kernel takes
# a mask but still computes every pair.
#
# ### 1.4 Memory: 16 bytes per parameter, and then the activations
#
# Training with Adam keeps, for every parameter:
#
# | | fp32 training | mixed precision (fp16 or bf16) |
# |---|---|---|
# | weights | 4 bytes | 2 bytes (16-bit copy used by the forward and backward) |
# | gradients | 4 bytes | 2 bytes |
# | fp32 master copy of the weights | — | 4 bytes (what the optimizer updates) |
# | Adam's two moments | 8 bytes | 8 bytes |
# | **model state** | **16 bytes** | **16 bytes** |
#
# Mixed precision (Micikevicius et al., 2018) does not shrink the model state: small updates to a weight would
# be lost in 16-bit, so the optimizer keeps an fp32 master copy. What it halves is the **activations**, the
# values the forward pass keeps for the backward. A pre-LayerNorm block keeps about `16 · d` values per token
# (the two LayerNorms' inputs and outputs, q, k, v, the attention output, the MLP's `4d` input and output of
# GELU; Korthikanti et al., 2022) plus the attention probabilities, `heads × L²` per sequence with a dense
# kernel. The logits are kept in fp32 for the loss, with their log-softmax.
#
# Two remedies at scale. **Activation checkpointing** keeps only each block's input (`d` values per token)
# and recomputes the block during the backward: one more forward pass (4 instead of 3) for far less memory.
# **Sharding** (ZeRO stage 3, Rajbhandari et al., 2020; PyTorch's FSDP) splits the weights, gradients and
# optimizer state evenly over `n` GPUs, so each holds `1/n` of the model state; each GPU still keeps its own
# micro-batch's activations.

# %%
def my_training_memory(c, precision: str = "fp16", checkpointing: bool = False, shards: int = 1) -> dict:
    """Bytes per GPU to train config c on one sequence with Adam: mixed `fp16` or plain `fp32`."""
    n, width = my_parameters(c), (4 if precision == "fp32" else 2)
    state = {"weights": width * n, "gradients": width * n, "master_weights": 0 if precision == "fp32" else 4 * n,
             "adam": 8 * n}
    d, L = c.d_model, c.text_seq_len + c.image_seq_len
    block = width * (16 * L * d + c.n_heads * L * L)  # what one block keeps for its backward
    logits = 4 * 2 * (c.text_seq_len * c.text_vocab_size + c.image_seq_len * c.image_vocab_size)  # fp32, + log-softmax
    kept = c.n_layers * width * L * d + block if checkpointing else c.n_layers * block  # ckpt: inputs + 1 block redone
    return {**{k: v / shards for k, v in state.items()}, "activations": kept + logits}


for name, c in configs.items():
    for label, precision, ckpt, shards in scale.MEMORY_SETUPS:
        mine = my_training_memory(c, precision, ckpt, shards)
        assert all(mine[k] == getattr(scale.training_memory(c, precision, ckpt, shards), k) for k in mine), (name, label)
print("my_training_memory == scale.training_memory for every preset and setup ✓\n")
GB = 1e9
parts = ("weights", "gradients", "master_weights", "adam", "activations")
print(f"the paper's model, GB per GPU {'':<4}" + "".join(f"{k.replace('_', ' '):>15}" for k in parts) + f"{'total':>9}")
for label, precision, ckpt, shards in scale.MEMORY_SETUPS:
    m = my_training_memory(paper, precision, ckpt, shards)
    print(f"{label:33}" + "".join(f"{m[k] / GB:15.2f}" for k in parts) + f"{sum(m.values()) / GB:9.2f}")

# %% [markdown]
# Read the table from top to bottom:
#
# - **The 16-bit weights alone are 24.6 GB**, more than a 16 GB V100 can hold. The paper says the same
#   ("about 24 GB of memory when stored in 16-bit precision, which exceeds the memory of a 16 GB NVIDIA V100
#   GPU"): the model could not even sit on one of its own GPUs.
# - The model state is **197 GB** in either precision; mixed precision halves the activations only.
# - Checkpointing every block brings one sequence's activations from 23.5 GB to 1.1 GB.
# - Sharding over the 8 GPUs of one machine still leaves 24.6 GB of model state per GPU; over all 1,024, 1.3 GB
#   in all. At 16 bytes per parameter, a 12-billion-parameter model must be spread over many GPUs just to be
#   trained.
#
# (The paper's own scheme differed in its details: it sharded parameters within each machine and compressed
# gradients between machines. How far each of those accounts was checked is in `scale.PAPER_FACTS`, printed in
# section 1.6.)
#
# ### 1.5 Against model size, from `tiny` to `paper`
#
# Parameters, FLOPs and memory grow together. On log scales, the four presets and the time each would need to
# see the paper's 440 million training images on one V100 at 30 % of its peak:

# %%
NAMES = list(configs)
sizes = [my_parameters(configs[n]) for n in NAMES]
v100 = scale.HARDWARE[0]  # the paper's GPU: 125 TFLOP/s peak in fp16
images_seen = scale.PAPER_BATCH * scale.PAPER_UPDATES  # the paper's budget: 1024 pairs x 430,000 updates
train_flops = [scale.training_flops_per_image(configs[n]) for n in NAMES]
days = [scale.train_seconds(f * images_seen, v100, 1, 0.3) / 86400 for f in train_flops]
print(f"one V100 at 30%: {days[-1] / 365.25:,.0f} years for the paper's model, {24 * days[1]:,.0f} hours for cpu's")

# %% [markdown]
# Drawn, with the memory of the paper's GPU and of today's largest ones for scale:

# %%
panels = {
    "FLOPs per image": {"training": train_flops,
                        "sampling, KV cache": [scale.sampling_flops_per_image(configs[n]) for n in NAMES]},
    "training memory per GPU, bytes": {
        "fp32": [scale.training_memory(configs[n], "fp32").total for n in NAMES],
        "fp16 + checkpointing": [scale.training_memory(configs[n], "fp16", True).total for n in NAMES],
        "+ sharded over 1024": [scale.training_memory(configs[n], "fp16", True, 1024).total for n in NAMES]},
    "days to see 440 M images on one V100 at 30%": {"": days},
}
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
for ax, (title, lines) in zip(axes, panels.items()):
    for label, values in lines.items():
        ax.plot(sizes, values, marker="o", label=label)
    for n, x, y in zip(NAMES, sizes, next(iter(lines.values()))):
        ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="parameters")
    ax.margins(0.12)
    ax.set_title(title, fontsize=9)
for gb, label in ((16, "V100, 16 GB"), (80, "A100 / H100, 80 GB")):
    axes[1].axhline(gb * GB, color="grey", lw=0.8, ls="--")
    axes[1].text(sizes[0], gb * GB * 1.3, label, fontsize=7, color="grey")
axes[0].legend(fontsize=7)
axes[1].legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# Every line is nearly straight on these axes: each quantity grows roughly as a power of the model's size. A
# thousand times the parameters (`cpu` to `paper`: 1,550 times) costs a good deal more than a thousand times
# the FLOPs per image, since the paper's sequences are also 15 times longer. Memory crosses the 16 GB of the
# paper's GPUs somewhere between `colab` and `paper`, even with checkpointing; only sharding brings it back
# under. And the time axis goes from minutes to decades.
#
# ### 1.6 The paper's budget, and the time to train it
#
# The paper gives its budget in one sentence: "We trained the model using 1024, 16 GB NVIDIA V100 GPUs and a
# total batch size of 1024, for a total of 430,000 updates." Here is every figure of the paper this lesson
# uses, with how far it was checked: **verified** (the paper's own words were read), **secondary** (a
# summary of the paper says so) or **unverified**. The budget rests on verified figures only.

# %%
for fact in scale.PAPER_FACTS:
    print(f"[{fact.status:10}] {fact.what:20} {fact.value}")
budget_facts = ("transformer GPUs", "batch size", "updates", "sequence")
assert all(f.status == "verified" for f in scale.PAPER_FACTS if f.what in budget_facts)

per_image = scale.training_flops_per_image(paper)
budget = per_image * images_seen
assert budget == scale.paper_budget_flops(paper)
print(f"\n{scale.PAPER_BATCH} pairs x {scale.PAPER_UPDATES:,} updates = {images_seen:,} images "
      f"({images_seen / 250e6:.2f} passes over the 250 M pairs)")
print(f"x {per_image / 1e12:.1f} TFLOP per image (3 forward passes) = {budget:.3g} FLOP "
      f"({scale.paper_budget_flops(paper, checkpointing=True):.3g} with activation checkpointing's extra forward)")

# %% [markdown]
# About 4 × 10²² FLOPs. How long that takes depends on how many accelerators, how fast each is at its peak
# (the vendors' dense 16-bit figures, `scale.HARDWARE`), and what share of that peak a real run sustains: its
# **model FLOPs utilisation** (MFU). The paper does not publish its own; 30 % and 50 % bracket what
# well-tuned large runs reach, and 16-bit on V100s with sharded weights and compressed communication makes
# the low end likelier.
#
# The seed names **TPUs and IPUs** as remedies, so they join the table, from their makers' figures: Google's
# Cloud TPU documentation gives 123 TFLOP/s (bf16) and 32 GiB of HBM per TPU v3 chip, 1,024 chips per v3 pod,
# and 275 TFLOP/s per TPU v4 chip; Graphcore announced its GC200 IPU (2020) at about 250 TFLOP/s of 16-bit
# "AI compute" with 900 MB of memory on the chip (plus off-chip "streaming memory"). The IPU's figure is a
# marketing peak, so treat its row as approximate.

# %%
SPECIALISED = (
    scale.Hardware("TPU v3 chip (Google)", 123.0, "bf16", 34.4, "Cloud TPU docs, 'TPU v3': 123 TFLOPS, 32 GiB HBM"),
    scale.Hardware("TPU v4 chip (Google)", 275.0, "bf16", 34.4, "Cloud TPU docs, 'TPU v4': 275 TFLOPS, 32 GiB HBM"),
    scale.Hardware("IPU GC200 (Graphcore) ~", 250.0, "16-bit, approximate", 0.9,
                   "Graphcore's 2020 launch figures: ~250 TFLOPS 'AI compute', 900 MB on-chip SRAM"),
)
accelerators = scale.HARDWARE[:-1] + SPECIALISED + scale.HARDWARE[-1:]  # the course's CPU last
print(f"{'accelerator':30} {'peak TFLOP/s':>12} {'memory':>8} {'days on 1024 @30%':>18} {'@50%':>10} "
      f"{'device-years @30%':>17}")
days_at = {}
for hw in accelerators:
    days_at[hw.name] = scale.train_seconds(budget, hw, scale.PAPER_GPUS, 0.3) / 86400
    years = scale.train_seconds(budget, hw, 1, 0.3) / (365.25 * 86400)
    print(f"{hw.name:30} {hw.peak_tflops:12g} {hw.memory_gb:6g} GB {days_at[hw.name]:18,.1f} "
          f"{scale.train_seconds(budget, hw, scale.PAPER_GPUS, 0.5) / 86400:10,.1f} {years:17,.0f}")

fig, ax = plt.subplots(figsize=(8, 3.2))
ax.barh(list(days_at), list(days_at.values()), color=["C0"] * 5 + ["C1"] * 3 + ["C7"])
ax.set(xscale="log", xlabel="days to train the paper's model on 1,024 of them at 30 % utilisation")
ax.axvline(days_at[v100.name], color="grey", lw=0.8, ls="--")
ax.invert_yaxis()
plt.tight_layout()
plt.show()

# %% [markdown]
# **"Relatively little computational overhead"?** Put the paper's run in units we can feel:

# %%
steps, batch = scale.course_recipe()
course_run = scale.training_flops_per_image(configs["cpu"]) * steps * batch  # this course's cpu transformer
cpu = scale.HARDWARE[-1]
per_caption = 512 * scale.sampling_flops_per_image(paper)  # the paper drew 512 samples per caption for CLIP
print(f"the paper's run: {days_at[v100.name]:.1f} days on its 1,024 V100s at 30 %, "
      f"{scale.train_seconds(budget, v100, 1, 0.3) / (365.25 * 86400):.0f} V100-years")
print(f"the course's whole cpu-preset run: {course_run / 1e12:,.0f} TFLOP, the paper's is "
      f"{budget / course_run / 1e6:.1f} million times that; this CPU would need "
      f"{scale.train_seconds(budget, cpu, 1, 0.5) / (365.25 * 86400):,.0f} years at half its peak")
print(f"and after training: 512 samples for one caption = {per_caption / 1e15:.1f} PFLOP, "
      f"{scale.train_seconds(per_caption, v100, 1, 0.3) / 60:.0f} minutes of one V100 at 30 %, before CLIP reranks them")
assert days_at[v100.name] > 7 and budget / course_run > 1e7

# %% [markdown]
# Two weeks of a thousand GPUs, 35 GPU-years, fifty million times everything this course trains; a 16-bit
# model too large for any one of its GPUs; and then seven GPU-minutes for every caption it illustrates. The
# paper itself spends a section on the engineering this needed (16-bit training, sharding, gradient
# compression). "Relatively little computational overhead" does not survive the arithmetic.
#
# And the specialised hardware, in proportion:
#
# - **Per chip, a TPU v3 is a V100** (123 against 125 TFLOP/s), and a TPU v3 pod (1,024 chips) is the
#   paper's cluster again: the same two weeks. TPUs are a different way to buy the same arithmetic.
# - **An IPU's ~250 TFLOP/s is about two V100s**, and its hallmark, 900 MB of memory on the chip, holds 4 % of
#   the model's 16-bit weights, or 0.5 % of its training state: at this size an IPU too streams the model
#   from memory off the chip.
# - **The largest change since 2021 is a newer GPU**: an H100 is about 8 times a V100 at dense 16-bit, and
#   1,024 of them would need under two days.
#
# No chip changes the 4 × 10²² FLOPs: hardware changes the constant in front (days, money, energy). "Better
# hardware" as a remedy for DALL·E's limits means buying *more* of this arithmetic, for a bigger model on more
# data, which is what made DALL·E expensive in the first place.
#
# ## 2. Mixed precision, on a CPU
#
# Half of that hardware's speed comes from 16-bit arithmetic: a V100's tensor cores reach 125 TFLOP/s in fp16
# and about 16 in fp32. This section shows what 16 bits cost in range and precision, and the trick that makes
# fp16 training work.
#
# ### 2.1 Three number formats
#
# A floating-point number is a sign, an **exponent** (its range: how large and how small it can be) and a
# **mantissa** (its precision: how many significant bits). With `e` exponent bits and `m` mantissa bits, the
# largest value is `(2 − 2⁻ᵐ) · 2^(2^(e−1) − 1)`, the smallest *normal* one `2^(2 − 2^(e−1))`, the gap between
# 1 and the next number (eps) `2⁻ᵐ`; below the smallest normal number, *subnormals* reach `m` binades lower by
# giving up precision, one bit at a time. From the layouts alone, checked against `torch.finfo`:

# %%
FORMATS = {"float32": (torch.float32, 8, 23), "bfloat16": (torch.bfloat16, 8, 7), "float16": (torch.float16, 5, 10)}
print(f"{'format':9} {'exponent':>8} {'mantissa':>8} {'largest':>10} {'smallest normal':>15} "
      f"{'smallest subnormal':>18} {'eps':>9}")
for name, (dtype, e, m) in FORMATS.items():
    bias = 2 ** (e - 1) - 1
    largest, normal, eps = (2 - 2.0 ** -m) * 2.0 ** bias, 2.0 ** (1 - bias), 2.0 ** -m
    subnormal = normal * eps  # the last bit of the mantissa, at the lowest exponent
    info = torch.finfo(dtype)
    assert (largest, normal, eps) == (info.max, info.tiny, info.eps)
    assert torch.tensor(subnormal, dtype=torch.float64).to(dtype) > 0  # representable...
    assert torch.tensor(subnormal / 2, dtype=torch.float64).to(dtype) == 0  # ...and half of it is not
    print(f"{name:9} {e:8} {m:8} {largest:10.3g} {normal:15.3g} {subnormal:18.3g} {eps:9.3g}")

# %% [markdown]
# **bfloat16** keeps float32's 8 exponent bits and drops mantissa: the same range, 3 significant digits.
# **float16** keeps more mantissa (11 bits with the implicit one) but only 5 exponent bits: nothing above
# 65,504, nothing below 6 × 10⁻⁸. The paper trained on V100s, which compute in fp16, not bf16 (the paper: "On
# NVIDIA V100 GPUs, this exponent range is specified by five bits").
#
# ### 2.2 A gradient that vanishes in fp16
#
# Gradients are small numbers. A gradient of `10⁻⁸` does not exist in fp16; multiplied by `2¹⁶` first, it
# does, and dividing by `2¹⁶` afterwards, in fp32, brings it back:

# %%
g = torch.tensor(1e-8)
S = 2.0 ** 16
print(f"gradient {g.item():.3e}: as fp16 {g.half().item():.3e}, as bf16 {g.bfloat16().item():.3e}")
back = (g * S).half().float() / S  # unscaled in fp32
print(f"scaled by 2^16: as fp16 {(g * S).half().item():.3e}, divided back in fp32 {back.item():.4e}")
assert g.half() == 0 and (g * S).half() > 0

# %% [markdown]
# One number is an illustration; here are the real gradients of the course's trained transformer (the
# shipped `cpu` model, one batch of 32 validation pairs). Which of them would fp16 keep?

# %%
shipped = checkpoints.load(data_dir() / "dalle-cpu.safetensors").train()
val = token_data("val", 32, "cpu")  # 32 (caption, image tokens) pairs, encoded by the shipped dVAE
shipped(val.text, val.image, caption_dropout=False).loss.backward()
grads = torch.cat([p.grad.flatten() for p in shipped.parameters()])
magnitudes = grads[grads != 0].abs()
normal = torch.finfo(torch.float16).tiny
print(f"{grads.numel():,} gradient entries, {(grads == 0).sum().item():,} exactly 0 "
      "(embedding rows of tokens absent from the batch)")
for label, s in (("unscaled", 1.0), ("loss scaled by 2^16", 2.0 ** 16)):
    as_fp16 = (magnitudes * s).half()
    print(f"{label:20}: {100 * (as_fp16 == 0).float().mean():5.2f} % become 0 in fp16, "
          f"{100 * ((as_fp16 > 0) & (as_fp16 < normal)).float().mean():5.2f} % subnormal (fewer bits), "
          f"{100 * torch.isinf(as_fp16).float().mean():.2f} % overflow")
fig, ax = plt.subplots(figsize=(8, 2.6))
ax.hist(magnitudes.log2().numpy(), bins=120, color="C0")
for x, label in ((-24, "fp16: 0 below"), (-14, "fp16: subnormal below"), (16, "fp16: inf above")):
    ax.axvline(x, color="C3", lw=0.8, ls="--")
    ax.text(x + 0.3, ax.get_ylim()[1] * 0.85, label, fontsize=7, color="C3")
ax.set(xlabel="log2 |gradient|  (a loss scale of 2^16 shifts everything 16 to the right)", ylabel="entries")
plt.tight_layout()
plt.show()
assert (magnitudes * 2.0 ** 16).half().eq(0).float().mean() < (magnitudes.half() == 0).float().mean()

# %% [markdown]
# Unscaled, fp16 would erase 2 % of this model's gradient entries outright and keep most of the rest as
# subnormals, with only a few bits of precision left. Scaled by 2¹⁶, nearly every entry lands in fp16's normal
# range, and none overflows. (bfloat16 needs no scale: its range is float32's.)
#
# ### 2.3 The loss scale, and what `GradScaler` does
#
# Multiplying the **loss** by `S` before `backward()` multiplies every gradient by `S` (the chain rule is
# linear), so the whole backward pass runs lifted into fp16's range. Before the optimizer step, the gradients
# are divided by `S` again, in fp32. The only danger is the other end: too large an `S` overflows to `inf`.
# PyTorch's `torch.amp.GradScaler` therefore adapts `S`: when any gradient is `inf` or `nan` it **skips** the
# step and halves `S`; after 2,000 clean steps in a row it doubles `S`. The scale settles just below overflow.
# One ordinary step and one that overflows:

# %%
layer = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)  # "cuda" on a GPU; the same logic
x = torch.ones(1, 4)
for label, factor in (("an ordinary loss", 1e-6), ("a loss whose scaled gradients overflow", 1e35)):
    before = layer.weight.detach().clone()
    optimizer.zero_grad()
    scaler.scale(layer(x).sum() * factor).backward()  # every gradient is S x the true one
    scaled = layer.weight.grad[0, 0].item()
    scaler.unscale_(optimizer)  # divide by S (in fp32), and look for inf / nan
    scaler.step(optimizer)  # skipped if any gradient is inf or nan
    scaler.update()  # halve S after an overflow; double it after 2,000 clean steps
    taken = not torch.equal(before, layer.weight)
    print(f"{label}: scaled gradient {scaled:.4g}, unscaled {layer.weight.grad[0, 0].item():.4g}; "
          f"step {'taken' if taken else 'skipped'}; scale now {scaler.get_scale():,.0f}")

# %% [markdown]
# ### 2.4 The same training run in fp32, bf16 and fp16
#
# Now a real run: the `tiny` transformer for 6 steps, in each precision, from the same weights on the same
# batches. The data are Shapes captions and the image tokens of a small (random) dVAE, the same recipe the
# package's tests use. The loop below is `train dalle`'s own (its learning-rate schedule, AdamW groups, gradient
# clipping and caption dropout), with the precision switch written out: **autocast** runs the matrix products
# in 16 bits and keeps fp32 where precision matters (reductions, the loss), the weights and the optimizer stay
# fp32, and fp16 alone gets the scaler.

# %%
tiny = get_preset("tiny")
work_dir = tempfile.TemporaryDirectory(prefix="lesson12-")  # removed when the kernel stops
work = Path(work_dir.name)  # this lesson's files (22 MB); nothing is written to data/
torch.manual_seed(0)
dvae_path = work / "dvae-tiny.safetensors"
checkpoints.save(DiscreteVAE(tiny.dvae), tiny.dvae, dvae_path)  # a random tiny dVAE: its tokens are data enough
recipe = DalleTrainConfig(steps=6, batch_size=16, lr=3e-3, lr_warmup=2, train_items=48, captions_per_item=2,
                          val_items=8, eval_every=1, checkpoint_every=100, precision="fp32")
train = token_data("train", recipe.train_items, "tiny", recipe.captions_per_item, dvae_path=dvae_path)
print(f"{len(train)} training pairs: text {tuple(train.text.shape)}, image tokens {tuple(train.image.shape)}")
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # the dtype autocast computes in

# %% [markdown]
# The loop. Only three lines know about precision: the scaler (enabled for fp16 alone), the autocast context,
# and `unscale_` before clipping, so that the clip sees the true gradients.

# %%
def my_train(precision: str) -> list[float]:
    """`train dalle`'s loop for the tiny preset; returns the training loss of each step."""
    model = DalleTransformer(tiny.transformer, generator=torch.Generator().manual_seed(0)).train()
    optimizer = make_optimizer(model, recipe)  # AdamW, weight decay on matrices only
    scaler = torch.amp.GradScaler("cpu", enabled=precision == "fp16")  # a no-op unless fp16
    batch_rng, dropout_rng = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    losses = []
    for step in range(recipe.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, recipe)  # warm-up, then cosine
        index = torch.randint(len(train), (recipe.batch_size,), generator=batch_rng)
        text = drop_captions(train.text[index], tiny.transformer.caption_dropout, tiny.transformer.pad_id, dropout_rng)
        with torch.autocast("cpu", dtype=AUTOCAST[precision] or torch.bfloat16, enabled=precision != "fp32"):
            loss = model(text, train.image[index], caption_dropout=False).loss
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    return losses

# %% [markdown]
# Run it in the three precisions, and check each against the package's `train_dalle` with `precision=` set
# (the `--precision` flag of `python -m dalle_lessons train dalle`): the losses must be the same numbers.

# %%
warnings.filterwarnings("ignore", message="precision fp16 on a CPU")  # emulated here: fine for 6 tiny steps
mine, library = {}, {}
for precision in AUTOCAST:
    mine[precision] = my_train(precision)
    library[precision] = train_dalle("tiny", seed=0, out=work / precision, progress=False, log=lambda _: None,
                                     train_config=dataclasses.replace(recipe, precision=precision),
                                     device="cpu", dvae_path=dvae_path)
    assert mine[precision] == [row["loss"] for row in library[precision]["history"]], precision
print("my_train == train_dalle in fp32, bf16 and fp16 ✓")
print("step " + "".join(f"{p:>9}" for p in AUTOCAST))
for step in range(recipe.steps):
    print(f"{step + 1:4} " + "".join(f"{mine[p][step]:9.3f}" for p in AUTOCAST))
gap = {p: max(abs(a - b) for a, b in zip(mine[p], mine["fp32"])) for p in ("bf16", "fp16")}
assert mine["fp32"][-1] < mine["fp32"][0] - 0.5 and gap["bf16"] < 2e-3 and gap["fp16"] < 5e-4

# %%
# NBVAL_IGNORE_OUTPUT
# The last digits of a float32 sum depend on the CPU's kernels: printed here, bounded by the assert above
print("largest per-step difference from fp32:", {p: f"{v:.1e}" for p, v in gap.items()})

# %% [markdown]
# All three runs learn the same thing: their losses differ in the fourth decimal at most (about 2 × 10⁻⁴
# for bf16, 5 × 10⁻⁵ for fp16). bf16 strays further because it keeps 8 bits of precision where fp16 keeps
# 11; what fp16 lacks is range, which the scaler supplies. On a CPU without 16-bit units (such as the AVX2
# machine these notes were written on) both are emulated and several times *slower* than fp32; on a GPU's
# tensor cores, and on CPUs with bf16 units, they are what make training fast.
# `--precision auto` picks bf16 where the hardware has it (A100, L4, H100, recent CPUs), fp16 with the scaler
# where it does not (T4, V100), and fp32 elsewhere.
#
# ### 2.5 The paper's trouble with fp16: one scale per resblock
#
# DALL·E was trained in 16-bit on V100s, hence in fp16 (secondary: the paper's appendix on mixed precision, as
# summarised by others; `scale.PAPER_FACTS`). Its account: getting past about a billion parameters without
# divergence was the hardest part of the project, because the gradients of the later resblocks were smaller
# than those of the earlier ones, and the gap grew with the model. A loss scale is one number for the whole
# model: large enough for the smallest gradients, it overflows the largest; small enough for the largest,
# the smallest fall under fp16's floor. fp16's normal range spans 30 powers of two; once a model's gradients
# span more, no single scale serves them all. The paper's remedy gave every resblock its own gradient scale.
# The course's models are small enough for PyTorch's single scale; exercise 1 measures where one stops being
# enough.
#
# ## 3. Data parallelism: one model, several processes
#
# ### 3.1 Why averaging gradients is exact
#
# Data parallelism gives every process (every GPU) a full copy of the model and a different slice of each
# batch. Each computes the gradient of the loss on its slice; an **all-reduce** averages the gradients across
# processes; every copy takes the same optimizer step and stays identical. Because the loss is a mean over the
# batch, the mean of the slices' gradients (equal slices) *is* the gradient on the whole batch:

# %%
model = DalleTransformer(tiny.transformer, generator=torch.Generator().manual_seed(0))
index = torch.randint(len(train), (16,), generator=torch.Generator().manual_seed(3))
text, image = train.text[index], train.image[index]


def gradient(rows: slice) -> torch.Tensor:
    model.zero_grad()
    model(text[rows], image[rows], caption_dropout=False).loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


whole = gradient(slice(0, 16))  # one process, batch 16
halves = (gradient(slice(0, 8)) + gradient(slice(8, 16))) / 2  # two processes, 8 each, averaged
assert torch.allclose(whole, halves, atol=1e-6)
print(f"all {whole.numel():,} entries: the mean of the two halves' gradients == the whole batch's, within 1e-6 ✓")

# %% [markdown]
# The same numbers, up to float32 rounding (the sums run in another order). PyTorch's
# **DistributedDataParallel** (DDP) does this all-reduce during `backward()`, overlapping the communication
# with the computation of the remaining gradients.
#
# ### 3.2 Two processes, launched from this notebook
#
# `torchrun --nproc_per_node 2 -m dalle_lessons train dalle ...` starts two processes and tells each its rank;
# `dalle_lessons.distributed.launch(fn, 2, ...)` does the same from Python. Each process joins a **gloo**
# process group (on GPUs it would be **nccl**), draws the same global batch of 16 from the same seeded
# generator, trains on its half (`distributed.shard`), and DDP averages the gradients. Only rank 0 validates
# and writes the checkpoint. Starting two fresh Python processes and importing PyTorch in each takes most of
# the 10–20 seconds this cell needs; the training itself is the 6 `tiny` steps of section 2.4.

# %%
started = time.perf_counter()
two = distributed.launch(train_dalle, 2, preset="tiny", seed=0, out=str(work / "ddp"), progress=False,
                         train_config=recipe, device="cpu", dvae_path=str(dvae_path),
                         log=logging.debug)  # 1 thread each; rank 0's progress lines go to a silent logger
ddp_seconds = time.perf_counter() - started
one_process = [row["loss"] for row in library["fp32"]["history"]]  # section 2.4: 1 process, batch 16
two_processes = [row["loss"] for row in two[0]["history"]]  # rank 0's log: the mean over both halves
print(f"step {'1 x batch 16':>13} {'2 x batch 8':>12}")
for step, (a, b) in enumerate(zip(one_process, two_processes), 1):
    print(f"{step:4} {a:13.3f} {b:12.3f}")
worst = max(abs(a - b) for a, b in zip(one_process, two_processes))
meta = checkpoints.read_metadata(work / "ddp" / "dalle-tiny.safetensors")
print(f"checkpoint written by rank 0, trained by {meta['extra']['world_size']} processes")
assert worst < 1e-4 and two[1]["history"][-1]["loss"] == two_processes[-1]

# %%
# NBVAL_IGNORE_OUTPUT
print(f"2 processes: {ddp_seconds:.1f} s in all; largest per-step loss difference from 1 process: {worst:.1e}")

# %% [markdown]
# The two runs agree step by step (the tests measure the largest difference at 4.8 × 10⁻⁷, the last bit of a
# float32 near 4: gloo adds the two halves' gradients in another order than one backward pass does). The
# checkpoint's JSON records that two processes trained it, and `--resume` refuses to continue it with another
# number, which would split each batch differently.
#
# ### 3.3 From two processes to many machines
#
# On one machine with 8 GPUs the command is the same with `--nproc_per_node 8 --device cuda`. On several
# machines, torchrun runs on each of them and finds the others through a **rendezvous**:
#
# ```
# # on each of 2 machines (2 x 8 = 16 processes; the batch must divide by 16):
# torchrun --nnodes 2 --nproc_per_node 8 --rdzv_id dalle-run-1 --rdzv_backend c10d \
#          --rdzv_endpoint node0.example.org:29500 \
#          -m dalle_lessons train dalle --preset colab --device cuda --batch-size 256 --out /shared/runs
# ```
#
# What changes: the world size is machines × processes per machine; `--out` must be on a filesystem every
# machine sees (rank 0 writes the state, every rank reads it on `--resume`); and the gradients' all-reduce now
# crosses the network, a far slower link than the one between the GPUs of one machine. The paper compressed
# the gradients it sent between machines for that reason (PowerSGD, by the course brief's account; the
# paper's own section was not reached, so `scale.PAPER_FACTS` marks it unverified).
#
# **Where DDP stops.** DDP keeps a whole copy of the weights, the gradients and Adam's state on every GPU:
# section 1.4's 197 GB for the paper's model, against a V100's 16 GB. Past that point the model state itself
# has to be split: PyTorch's **FullyShardedDataParallel** (FSDP) or DeepSpeed's **ZeRO** stage 3 keep `1/n` of
# the weights, gradients and optimizer state on each of `n` GPUs, and gather each layer's weights just before
# it runs (stages 1 and 2 shard only the optimizer state, then the gradients too). Add activation checkpointing
# (a fourth forward pass for a twentieth of the activations) and the paper's model fits: 1.3 GB per GPU over
# 1,024. The paper did its own version of this: parameters sharded over the GPUs of each machine (secondary),
# 16-bit with per-resblock scales (secondary) and compressed gradients between machines (unverified). At the
# `colab` size (22.5 M parameters, 0.36 GB of model state) plain DDP is the right tool.
#
# ## 4. Throughput on this machine
#
# Arithmetic says what a step *must* cost; a clock says what it *does*. A few timed training steps and
# sampling steps (one new image token per step, with the KV cache, for 8 images at once) for each preset that
# fits a laptop, on this notebook's device (on Colab, the GPU). The FLOPs come from section 1, so FLOPs divided
# by seconds says how well each size uses the machine.

# %%
def seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate memory and pick kernels
    best = math.inf
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def train_step(model, optimizer, text, image):
    loss = model(text, image, caption_dropout=False).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@torch.no_grad()
def sampling_steps(model, text, n):
    logits, cache = model.prefill(text)  # the caption, once
    for _ in range(n):
        logits = model.step(logits.argmax(-1), cache)  # one new image token for each of the 8 images

# %% [markdown]
# The measurement. Batches are small so that the whole cell stays within seconds on a CPU (tiny 32, cpu 8,
# colab 2 sequences per step); each figure is the best of two or three runs after a warm-up.

# %%
# NBVAL_IGNORE_OUTPUT
throughput = {}
for name, rows, repeats in (("tiny", 32, 3), ("cpu", 8, 2), ("colab", 2, 1)):
    c, model = configs[name], models[name].to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    text = torch.randint(1, c.text_vocab_size, (rows, c.text_seq_len), generator=g).to(device)
    image = torch.randint(0, c.image_vocab_size, (rows, c.image_seq_len), generator=g).to(device)
    step = seconds(lambda: train_step(model, optimizer, text, image), repeats)
    model.eval()
    n = min(16, c.image_seq_len - 1)
    prompt = text[:1].expand(8, -1).contiguous()
    per_token = (seconds(lambda: sampling_steps(model, prompt, n), repeats)
                 - seconds(lambda: sampling_steps(model, prompt, 1), repeats)) / (n - 1)
    throughput[name] = {"batch": rows, "step": step, "per_token": per_token,
                        "flops_per_s": scale.training_flops_per_image(c) * rows / step}
print(f"device: {describe_device()}, torch {torch.__version__}")
print(f"{'preset':7} {'batch':>5} {'ms / step':>9} {'images / s':>10} {'GFLOP/s':>8} {'ms / token (8 images)':>21} "
      f"{'course recipe':>13}")
for name, t in throughput.items():
    hours = steps * batch * scale.training_flops_per_image(configs[name]) / t["flops_per_s"] / 3600
    print(f"{name:7} {t['batch']:5} {1000 * t['step']:9.0f} {t['batch'] / t['step']:10.1f} "
          f"{t['flops_per_s'] / 1e9:8.1f} {1000 * t['per_token']:21.1f} {hours:11.1f} h")
assert all(t["step"] > 0 and t["flops_per_s"] > 0 for t in throughput.values())

# %% [markdown]
# Read the GFLOP/s column first: the bigger the model, the better it uses the machine, because a bigger matrix
# product does more arithmetic per number it reads and per Python call it makes. `tiny` is overhead: its step
# is a few hundred small operations. The last column is the course's recipe (3,000 steps of 64 pairs) at the
# measured speed. The shipped `cpu` transformer was trained with that recipe in 20 minutes, on a 2-core CPU
# that has bf16 units (printed below); a CPU without them, in fp32, needs hours, which is why the course ships
# trained checkpoints. Sampling is the opposite case: a cached step computes one token per image, so it is
# bound by per-operation overhead and memory reads, not by FLOPs (`benchmarks/bench_sampling.py`).
#
# **What the course has measured** (benchmarks/README.md, all on this 2-core CPU):
#
# | what | measured |
# |---|---|
# | one training step, batch 32, 4 layers × 256 (`bench_transformer.py`) | 271 ms fp32 (56 % of the CPU's measured fp32 peak), 171 ms bf16 on a CPU with bf16 units |
# | 8 images of 64 tokens, `cpu` preset (`bench_sampling.py`) | 514 ms with the KV cache, 2,341 ms without |
# | 8 images of 256 tokens, `colab` preset | 12.0 s with the KV cache, 228 s without (a busy machine) |
# | the `colab` preset on a GPU | **not measured yet**: no GPU figure exists in the course |
#
# There is no `FULL_TRAINING` path for the `colab` preset yet: the shipped models are the `cpu` preset's. On
# Colab, run the cell above to measure your GPU. By section 1's arithmetic alone, the `colab` transformer's
# recipe (7.6 PFLOP) would take minutes on Colab's GPUs at 30 % of their peak: an estimate, not a
# measurement. And the one full run the course did measure, the shipped `cpu` transformer's:

# %%
shipped_run = checkpoints.read_metadata(data_dir() / "dalle-cpu.safetensors")["extra"]
print(f"the shipped cpu transformer: {course_run / 1e12:,.0f} TFLOP in {shipped_run['wall_seconds']:,.0f} s = "
      f"{course_run / shipped_run['wall_seconds'] / 1e9:.0f} GFLOP/s, precision {shipped_run['train_config']['precision']}, "
      f"on {shipped_run['machine']}")
colab_flops = scale.training_flops_per_image(configs["colab"]) * steps * batch
for hw in scale.HARDWARE[1:3]:  # the T4 and the L4, Colab's GPUs
    print(f"colab preset's transformer recipe on one {hw.name}: {colab_flops / 1e15:.1f} PFLOP, "
          f"{scale.train_seconds(colab_flops, hw, 1, 0.3) / 60:.0f} minutes at 30 % (estimated, not measured)")

# %% [markdown]
# ## 5. OpenAI's released dVAE
#
# In February 2021 OpenAI published the weights of DALL·E's **stage 1**, the discrete VAE, as two files
# (`encoder.pkl` and `decoder.pkl`) with a small package, `dall-e`. They never published the transformer.
# `dalle_lessons.openai_dvae` re-implements that encoder and decoder so that the published weights load into it
# unchanged: every parameter has the official name, and its outputs are bitwise equal to `dall_e`'s on the same
# weights (`tests/test_openai_dvae.py`).
#
# The architecture is a plain convolutional network, much like lesson 04's dVAE, only wider and deeper:
#
# - **Encoder**: a 7×7 convolution to 256 channels, then 4 groups of 2 residual blocks, with a 2×2 max-pool after
#   each of the first three (256 → 32 pixels per side) and widths 256, 512, 1024, 2048; then ReLU and a 1×1
#   convolution to **8192 logits per cell**. The argmax of each cell is its token: 256×256 pixels become 32×32
#   ids.
# - **Decoder**: the mirror image. A 1×1 convolution of the one-hot ids to 128 channels, 4 groups with
#   nearest-neighbour upsampling (widths 2048, 1024, 512, 256), and a 1×1 convolution to 6 channels per pixel:
#   the location and log-scale of a **logit-Laplace** distribution for each colour (lesson 04).
# - Each **residual block** is `id_path(x) + post_gain · res_path(x)`: the identity (or a 1×1 convolution where
#   the width changes) plus four (ReLU, convolution) pairs through a bottleneck of a quarter of the width
#   (kernels 3, 3, 3, 1 in the encoder; 1, 3, 3, 3 in the decoder), damped by a constant
#   `post_gain = 1 / 8²`, one over the square of the number of blocks, so that the deep stack starts close to
#   the identity (GPT-2's scaled initialisation plays a similar part).
#
# Counted by hand, and checked against the published counts and the modules themselves (on the meta device):

# %%
def conv_parameters(n_in: int, n_out: int, k: int) -> int:
    return n_in * n_out * k * k + n_out  # weights + biases


def resblock_parameters(n_in: int, n_out: int, kernels: tuple) -> int:
    widths = [n_in] + [n_out // 4] * 3 + [n_out]  # in, bottleneck x 3, out
    path = sum(conv_parameters(widths[i], widths[i + 1], k) for i, k in enumerate(kernels))
    return path + (conv_parameters(n_in, n_out, 1) if n_in != n_out else 0)  # a 1x1 id_path where the width changes


def my_dvae_parameters(half: str, vocab=8192, n_hid=256, blocks=2, n_init=128) -> int:
    if half == "encoder":
        widths, kernels = [n_hid, n_hid, 2 * n_hid, 4 * n_hid, 8 * n_hid], (3, 3, 3, 1)
        total = conv_parameters(3, n_hid, 7) + conv_parameters(8 * n_hid, vocab, 1)  # pixels in, logits out
    else:
        widths, kernels = [n_init, 8 * n_hid, 4 * n_hid, 2 * n_hid, n_hid], (1, 3, 3, 3)
        total = conv_parameters(vocab, n_init, 1) + conv_parameters(n_hid, 6, 1)  # one-hot codes in, statistics out
    for g in range(4):
        total += sum(resblock_parameters(widths[g] if i == 0 else widths[g + 1], widths[g + 1], kernels)
                     for i in range(blocks))
    return total


with torch.device("meta"):
    halves = {"encoder": openai_dvae.OpenAIEncoder(), "decoder": openai_dvae.OpenAIDecoder()}
for half, published in (("encoder", 53_786_240), ("decoder", 43_829_766)):
    counted = sum(p.numel() for p in halves[half].parameters())
    assert my_dvae_parameters(half) == counted == published
    print(f"{half}: {my_dvae_parameters(half):,} parameters by hand = {counted:,} in the module = the published count")
print("a few official names:", [name for name, _ in halves["encoder"].named_parameters()][:3])

# %% [markdown]
# 97.6 million parameters: 1/126 of the transformer, yet far from small (the `cpu` preset's dVAE has 1.1
# million). The architecture does not depend on the image size, only on sides that divide by 8. A full 256×256
# round trip costs about 20 seconds on this CPU, so here it runs on a **64×64** photograph (matplotlib ships
# one: Grace Hopper, public domain) with **random** weights, seeded: the published weights live on OpenAI's
# servers, and this notebook downloads nothing. The check against the library: `decode` reads the decoder's
# first layer as a table lookup (a 1×1 convolution of a one-hot vector picks one column of its weights), so a
# one-hot input through the full decoder, written out, must give the same pixels. A FLOP counter watches both
# halves.

# %%
with cbook.get_sample_data("grace_hopper.jpg") as f:
    full = Image.open(f).convert("RGB")
side = min(full.size)
square = full.crop(((full.width - side) // 2, 0, (full.width + side) // 2, side))
photo = torch.tensor(np.array(square.resize((64, 64), Image.LANCZOS))).permute(2, 0, 1)[None].float() / 255

torch.manual_seed(0)  # OpenAI's initialisation draws from the global generator
dvae = openai_dvae.OpenAIDVAE(openai_dvae.OpenAIEncoder(), openai_dvae.OpenAIDecoder()).eval()
with torch.no_grad(), FlopCounterMode(display=False) as encoder_flops:
    ids = dvae.encode(photo)  # [1, 8, 8] ids out of 8192
one_hot = F.one_hot(ids, 8192).permute(0, 3, 1, 2).float()  # [1, 8192, 8, 8]
with torch.no_grad(), FlopCounterMode(display=False) as decoder_flops:
    statistics = dvae.decoder(one_hot)  # [1, 6, 64, 64]: logit-Laplace location and log-scale per colour
mine = openai_dvae.unmap_pixels(torch.sigmoid(statistics[:, :3]))
assert torch.allclose(mine, dvae.decode(ids), atol=1e-5)
print(f"photo {tuple(photo.shape)} -> ids {tuple(ids.shape)} (values in 0..8191) -> statistics "
      f"{tuple(statistics.shape)} -> pixels {tuple(mine.shape)}")
print("decode(ids), a table lookup == the one-hot convolution written out ✓")
fig, axes = plt.subplots(1, 3, figsize=(7, 2.6))
for ax, picture, title in zip(axes, (square.resize((256, 256)), photo[0].permute(1, 2, 0), mine[0].permute(1, 2, 0)),
                              ("the photograph", "64 x 64, as encoded", "decoded, random weights")):
    ax.imshow(picture, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# Random weights decode every token to the same flat grey: each residual branch is damped by `1/64` and
# nothing has been learned. With the real weights (the next cell, on Colab) the same 8×8 ids, or 32×32 of them
# at 256×256, come back as the photograph, blurred: each token stands for 192 pixel values (256 · 256 · 3 /
# 1024), and that loss of detail is the price.
#
# The FLOP counter also prices the dVAE's own training run. Convolutions cost in proportion to the pixels, so
# a 256×256 image costs 16 times what the 64×64 one did; training is again 3 forward passes (encoder and
# decoder), and the paper trained it on 64 V100s with a batch of 512 for 3,000,000 updates (verified):

# %%
per_256 = 16 * (encoder_flops.get_total_flops() + decoder_flops.get_total_flops())  # one 256 x 256 image, forward
dvae_run = 3 * per_256 * 512 * 3_000_000
print(f"dVAE forward, one 256 x 256 image: {per_256 / 1e9:.0f} GFLOP "
      f"(the transformer: {my_forward_flops(paper) / 1e12:.1f} TFLOP)")
print(f"dVAE training: {dvae_run:.2g} FLOP, {100 * dvae_run / budget:.1f} % of the transformer's; on its 64 V100s at 30 %: "
      f"{scale.train_seconds(dvae_run, v100, 64, 0.3) / 86400:.0f} days")
assert 0.01 < dvae_run / budget < 0.2

# %% [markdown]
# A run of its own: a few per cent of the transformer's FLOPs, yet on 64 GPUs about as many days. It happened
# **before** the transformer's: stage 1 trained the dVAE, stage 2 trained the transformer on the tokens of the
# frozen dVAE (this course does the same in lessons 04 and 06).
#
# ### On Colab: the real weights, on a real photograph
#
# This cell does not run here (no internet; the tests skip it). On Colab, set both flags yourself: the first
# downloads OpenAI's two files (their published addresses are in the cell, a few hundred MB), the second is
# your consent to open them, once, to convert them to safetensors (why consent: the cell after this one).

# %%
# NBVAL_SKIP
USE_OPENAI_WEIGHTS = False  # True: download OpenAI's encoder.pkl and decoder.pkl (a few hundred MB)
I_UNDERSTAND_PICKLE = False  # True: you consent to open those two pickles once, to convert them
if USE_OPENAI_WEIGHTS:
    import urllib.request
    folder = Path("openai-dvae")
    folder.mkdir(exist_ok=True)
    for half in ("encoder", "decoder"):
        if not (folder / f"{half}.pkl").exists():
            urllib.request.urlretrieve(f"https://cdn.openai.com/dall-e/{half}.pkl", folder / f"{half}.pkl")
    if not (folder / "openai-dvae-decoder.safetensors").exists():  # convert once; later runs read safetensors
        openai_dvae.convert(folder / "encoder.pkl", folder / "decoder.pkl", folder, i_understand_pickle=I_UNDERSTAND_PICKLE)
    real = openai_dvae.load(folder, device=device)
    big = torch.tensor(np.array(square.resize((256, 256), Image.LANCZOS))).permute(2, 0, 1)[None].float() / 255
    real_ids = real.encode(big.to(device))  # [1, 32, 32]: the photograph as 1,024 tokens
    back = real.decode(real_ids).cpu()
    psnr = -10 * torch.log10(((back - big) ** 2).mean())
    print(f"{real_ids.unique().numel()} distinct codes among 1,024; reconstruction PSNR {psnr:.1f} dB")
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    for ax, picture, title in zip(axes, (big[0], back[0]), ("photograph, 256 x 256", "through 32 x 32 tokens")):
        ax.imshow(picture.permute(1, 2, 0))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    plt.show()

# %% [markdown]
# ### Why the converter asks for consent
#
# OpenAI's files are **pickles** of whole PyTorch modules. A pickle is not data: it is a small program that
# Python runs to rebuild the objects, and it may name *any* function to call. Opening one runs whatever it
# says. A pickle of three lines shows it:

# %%
class NotJustWeights:
    def __reduce__(self):  # what pickle records: "to rebuild me, call print(...)"
        return (print, ("this line was printed by pickle.loads: opening a pickle runs the code it names",))


payload = pickle.dumps(NotJustWeights())
pickle.loads(payload)  # in a malicious file, os.system instead of print

# %% [markdown]
# So neither PyTorch nor this package opens such a file by default. Since PyTorch 2.6, `torch.load` reads only
# tensors and plain containers (`weights_only=True`) and refuses whole pickled modules; opening them needs
# `weights_only=False`, the step that runs code. The package's converter opens OpenAI's files once, only with
# your explicit consent (`--i-understand-pickle` on the command line, `i_understand_pickle=True` from Python),
# standing in its own empty classes for `dall_e`'s so that no code of that package runs either, and writes
# safetensors, which hold numbers and nothing else. Here it is on two small pickles made the way OpenAI's were
# (`torch.save` of whole modules):

# %%
small = openai_dvae.OpenAIDVAEConfig(vocab_size=512, n_hid=64, n_blk_per_group=1, n_init=16)
torch.manual_seed(1)
originals = openai_dvae.OpenAIDVAE(openai_dvae.OpenAIEncoder(small), openai_dvae.OpenAIDecoder(small)).eval()
torch.save(originals.encoder, work / "encoder.pkl")  # whole modules, pickled
torch.save(originals.decoder, work / "decoder.pkl")
hide = lambda error: str(error).replace(str(work) + "/", "").split(". ")[0]  # its first sentence; file names only
for attempt in ("torch.load", "convert without consent"):
    try:
        if attempt == "torch.load":
            torch.load(work / "encoder.pkl")
        else:
            openai_dvae.convert(work / "encoder.pkl", work / "decoder.pkl", work / "converted")
    except Exception as error:
        print(f"{attempt}: {type(error).__name__}: {hide(error)}")
written = openai_dvae.convert(work / "encoder.pkl", work / "decoder.pkl", work / "converted", i_understand_pickle=True)
converted = openai_dvae.load(work / "converted")  # safetensors only, from now on
images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
assert torch.equal(converted.encode(images), originals.encode(images))
assert torch.equal(converted.decode(originals.encode(images)), originals.decode(originals.encode(images)))
print(f"with consent: {written['parameters']['encoder']:,} + {written['parameters']['decoder']:,} parameters written as",
      sorted(p.name for p in (work / "converted").iterdir()), "; same outputs ✓")
work_dir.cleanup()  # the lesson's temporary files are no longer needed

# %% [markdown]
# ## 6. Getting DALL·E right
#
# - **"DALL·E trains with relatively little computational overhead."** It does not: about 4 × 10²² FLOPs, two
#   weeks of 1,024 V100s at a plausible 30 % utilisation (35 GPU-years), fifty million times this course's whole
#   training run, on a model whose 16-bit weights do not fit one of its GPUs. The paper itself spends pages on
#   the engineering this took.
# - **"Specialised hardware (TPUs, IPUs) is the remedy."** Per chip, a TPU v3 matches a V100 and an IPU is about
#   two; neither changes the arithmetic. Faster chips shorten the two weeks; they do not make the model cheap,
#   and "more hardware" as a remedy means more of the same expense.
# - **"The dVAE was trained together with the transformer."** No: in two stages. The paper frames both as
#   maximising one evidence lower bound, but optimises them one after the other: first the dVAE (its own run on
#   64 V100s, 3 million updates), then the transformer on the frozen dVAE's tokens. Nothing flows back into the
#   dVAE while the transformer trains.
# - **"OpenAI released DALL·E."** It released the dVAE's weights (section 5), not the 12-billion-parameter
#   transformer; the models people ran at home in 2021 were reimplementations and smaller relatives.
# - **"Mixed precision halves the memory."** It halves the activations. With Adam, the model state stays at 16
#   bytes per parameter, because the optimizer keeps fp32 master weights.
# - **"Sparse attention made DALL·E cheap."** The masks save about 4 % of the FLOPs at the paper's width; their
#   real saving is the memory of the attention probabilities, and only with a kernel that skips the masked
#   pairs.
#
# ## 7. Exercises
#
# Each exercise is an experiment: a small function for you to write, a check that says in plain words what is
# wrong, and a question to answer *before* you measure. Replace `raise NotImplementedError` with your code and
# run the cell below it. Solutions, with the measurements, are in
# [solutions/12_scaling_up.ipynb](solutions/12_scaling_up.ipynb).

# %%
from dalle_lessons.exercises.l12_scaling import check_checkpoint_every, check_loss_scale, check_max_layers

# %% [markdown]
# ### Exercise 1: the loss scale a set of gradients needs
#
# Write `smallest_loss_scale(grads)`: `grads` is a float32 tensor of gradient values (any shape; some may be
# 0, some negative). Return the smallest power of two `S = 2**k` with `k ≥ 0` such that every **nonzero**
# gradient, multiplied by `S`, is at least fp16's smallest *normal* number (`torch.finfo(torch.float16).tiny`,
# so that it keeps full precision), and none exceeds fp16's largest (`torch.finfo(torch.float16).max`). Return
# `None` when no such power of two exists. Then **predict**: can one scale serve every resblock of a model whose
# gradients shrink by half every two blocks over 64 blocks? Measure it with your function, block by block and
# all together.

# %%
def smallest_loss_scale(grads: torch.Tensor) -> float | None:
    # Your code here.
    raise NotImplementedError


ok = check_loss_scale(smallest_loss_scale)

# %% [markdown]
# ### Exercise 2: checkpointing every k blocks
#
# Section 1.4 checkpointed every block. Checkpointing every `k` blocks keeps the input of blocks `0, k, 2k, …`
# (`ceil(n_layers / k)` inputs of `d` values per token) and, during the backward, recomputes one segment of up to
# `k` blocks at a time, which then holds those blocks' full activations. Write
# `checkpointed_activation_bytes(c, k, precision)`: the activation bytes one sequence needs at the peak, with
# section 1.4's conventions (16-bit values for `"fp16"`, 32-bit for `"fp32"`; a block keeps `16 · d` values per
# token plus `heads × L²` attention probabilities; the logits and their log-softmax always in fp32). With `k = 1`
# it must equal `scale.activation_bytes(c, precision, checkpointing=True)`. Then **predict**: which `k` needs
# the least memory for the paper's 64 layers? (The classic answer for a chain of `n` layers is `√n`.)

# %%
def checkpointed_activation_bytes(c, k: int, precision: str = "fp16") -> int:
    # Your code here.
    raise NotImplementedError


ok = check_checkpoint_every(checkpointed_activation_bytes)

# %% [markdown]
# ### Exercise 3: the deepest model that fits a GPU
#
# Write `max_layers(c, memory_gb, precision, checkpointing, shards)`: the largest number of layers `n ≥ 1` such
# that training config `c` with `n` layers (everything else unchanged: `dataclasses.replace(c, n_layers=n)`)
# needs at most `memory_gb` gigabytes (10⁹ bytes) per GPU by `scale.training_memory` (one sequence per GPU,
# Adam), or 0 if even one layer does not fit. Then **predict**: how many of the paper's 3968-wide layers fit
# one 16 GB V100 in mixed precision with checkpointing? One 80 GB H100? Eight H100s, sharded?

# %%
def max_layers(c, memory_gb: float, precision: str = "fp16", checkpointing: bool = True, shards: int = 1) -> int:
    # Your code here.
    raise NotImplementedError


ok = check_max_layers(max_layers)

# %% [markdown]
# ## Takeaways
#
# - A transformer's cost is arithmetic you can do by hand: `12 · d²` parameters per block, `2` FLOPs per weight
#   per token forward and `6` to train, `4 · d` per attention pair, 16 bytes per parameter to train with Adam.
#   Each formula here equals the real model's count, PyTorch's FLOP counter, and `dalle_lessons.scale`.
# - DALL·E's transformer: 12.3 billion parameters, 94 TFLOP per training image, 197 GB of model state, 4 × 10²²
#   FLOPs for its published run: two weeks of 1,024 V100s. "Relatively little computational overhead" is wrong
#   by many orders of magnitude; TPUs and IPUs change the constant, not the arithmetic.
# - **Mixed precision** buys speed on 16-bit hardware and halves the activations, not the model state. bf16 has
#   float32's range; fp16 needs a **loss scale**, and when a model's gradients span more than fp16's range, one
#   scale is not enough: the paper scaled each resblock separately.
# - **Data parallelism** is exact: the mean of equal slices' gradients is the batch's gradient, so `2 × B/2`
#   follows `1 × B` to the last bit or two. Past one GPU's memory, the model state itself must be sharded (FSDP,
#   ZeRO), and activation checkpointing trades one more forward pass for most of the activations.
# - OpenAI released **the dVAE only**: 53.8 M + 43.8 M parameters, trained in its own run before the
#   transformer. Its files are pickles, and opening a pickle runs code: convert once, with consent, to
#   safetensors.
#
# ## Check your understanding
#
# 1. Why does the number of attention heads not appear in a block's parameter count, and where does it appear
#    in the memory?
# 2. The `6 · N · D` rule overestimates `tiny`'s training FLOPs by 46 % but is within 0.2 % for the paper's
#    model. What does the rule count that costs no FLOPs, and why does it matter less as models grow?
# 3. Mixed precision keeps a 16-bit copy *and* a 32-bit copy of every weight. Why not only the 16-bit one?
# 4. Two processes with batch 8 each follow one process with batch 16. What would break that equality if the
#    loss were a *sum* over the batch instead of a mean, or if the two slices had different sizes?
# 5. Why does a dense attention kernel compute the masked-out pairs at all, and what must a kernel do to turn
#    the masks' 80 % fewer pairs into saved time?
#
# The answers are in the [solutions notebook](solutions/12_scaling_up.ipynb).
#
# **This is the course's last lesson.** The road map in [00 · welcome](00_welcome.ipynb) lists every lesson.
