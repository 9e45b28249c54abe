# %% [markdown]
# # 12 · Scaling up: solutions
#
# Worked solutions to the exercises of lesson 12 ([12_scaling_up.ipynb](../12_scaling_up.ipynb)), each followed by
# the experiment it asks for, and the answers to "check your understanding". Try the exercises yourself first:
# each check tells you what is wrong in plain words. Every solution below is followed by its check, asserted, so
# the tests fail if a solution ever stops passing.

# %%
import dataclasses
import math

import matplotlib.pyplot as plt
import torch

from dalle_lessons import checkpoints, scale
from dalle_lessons.config import get_preset
from dalle_lessons.exercises.l12_scaling import check_checkpoint_every, check_loss_scale, check_max_layers
from dalle_lessons.paths import data_dir
from dalle_lessons.train_dalle import token_data

plt.rcParams.update({"figure.dpi": 80})
paper = get_preset("paper").transformer
FP16 = torch.finfo(torch.float16)

# %% [markdown]
# ### Exercise 1: the loss scale a set of gradients needs
#
# Keep the nonzero magnitudes; double `S` from 1 until the smallest one, times `S`, reaches fp16's smallest
# normal number; then check the largest against fp16's maximum. Doubling keeps `S` a power of two, so scaling and
# unscaling only move exponents and lose no bits. The computation runs in float64, where every product here is
# exact. The slips the check names: the subnormal floor (2⁻²⁴) instead of the normal one (2⁻¹⁴), forgetting
# `abs()` or the zeros, no overflow check, or GradScaler's fixed 2¹⁶.

# %%
def smallest_loss_scale(grads: torch.Tensor) -> float | None:
    magnitudes = grads[grads != 0].abs().double()
    small, large = magnitudes.min().item(), magnitudes.max().item()
    S = 1.0
    while small * S < FP16.tiny:
        S *= 2
    return S if large * S <= FP16.max else None


assert check_loss_scale(smallest_loss_scale)

# %% [markdown]
# **The experiment, on a real model first.** The course's trained `cpu` transformer, one batch: for each of its 4
# blocks, the typical (median) gradient magnitude, which must keep its precision, and the largest, which must not
# overflow. (Each block's very smallest entries are no guide: a third of the key biases' gradients are about
# 2⁻⁴⁰, because softmax ignores any shift that a key bias adds to every score of a query, so their true gradient
# is exactly 0 and what remains is rounding.)

# %%
model = checkpoints.load(data_dir() / "dalle-cpu.safetensors").train()
val = token_data("val", 32, "cpu")
model(val.text, val.image, caption_dropout=False).loss.backward()
blocks = []
for i, block in enumerate(model.blocks):
    g = torch.cat([p.grad.flatten() for p in block.parameters()])
    g = g[g != 0].abs()
    blocks.append(torch.stack([g.median(), g.max()]))
    print(f"block {i}: median |gradient| 2^{g.median().log2().item():6.1f}, largest 2^{g.max().log2().item():5.1f}")
print("one scale for all 4 blocks:", smallest_loss_scale(torch.cat(blocks)))
assert smallest_loss_scale(torch.cat(blocks)) is not None

# %% [markdown]
# One small scale serves the whole model. But look at the medians: each block's gradients are smaller than the
# one before it, by about half a power of two per block, the trend the paper describes for its resblocks. Now
# the prediction: a 64-block model in which that trend goes on (the typical gradient halves every two blocks, the
# largest sits about 7 powers of two above it, as in our block 0). Can one scale serve all 64 blocks?

# %%
m0, top0 = blocks[0].log2().tolist()  # our block 0, in powers of two
deep = [torch.tensor([2.0 ** (m0 - b / 2), 2.0 ** (top0 - b / 2)]) for b in range(64)]
print("one scale for all 64 blocks:", smallest_loss_scale(torch.cat(deep)))
per_block = [smallest_loss_scale(g) for g in deep]
print(f"one scale per block: from 2^{math.log2(per_block[0]):.0f} (block 0) to 2^{math.log2(per_block[-1]):.0f} (block 63)")
groups, start = [], 0  # the fewest runs of consecutive blocks that can share one scale
while start < 64:
    end = start + 1
    while end < 64 and smallest_loss_scale(torch.cat(deep[start:end + 1])) is not None:
        end += 1
    groups.append((start, end - 1))
    start = end
print(f"consecutive blocks that can share a scale: {groups}")
assert smallest_loss_scale(torch.cat(deep)) is None and all(s is not None for s in per_block)

# %% [markdown]
# No single scale: the typical gradient of block 63 sits 31 powers of two below block 0's, and with the largest
# gradients 7 powers higher still, the span exceeds fp16's normal range (2⁻¹⁴ to 65,504, 30 powers of two). Every
# block alone is easy, with scales from 1 to 2³¹, and two groups of blocks would do here, but the gap grows with
# depth and width, which is why the paper gave each resblock its own scale rather than hunting for groups.
#
# ### Exercise 2: checkpointing every k blocks
#
# Kept: the inputs of blocks `0, k, 2k, …`, `ceil(n / k)` of them, `L · d` values each. Recomputed during the
# backward: one segment at a time, at most `min(k, n)` blocks, each keeping section 1.4's `16 · L · d + heads · L²`
# values while its backward runs. Plus the fp32 logits and their log-softmax, whatever `k` is.

# %%
def checkpointed_activation_bytes(c, k: int, precision: str = "fp16") -> int:
    width = 4 if precision == "fp32" else 2
    L = c.text_seq_len + c.image_seq_len
    block = width * (16 * L * c.d_model + c.n_heads * L * L)
    logits = 4 * 2 * (c.text_seq_len * c.text_vocab_size + c.image_seq_len * c.image_vocab_size)
    return math.ceil(c.n_layers / k) * width * L * c.d_model + min(k, c.n_layers) * block + logits


assert check_checkpoint_every(checkpointed_activation_bytes)
assert checkpointed_activation_bytes(paper, 1) == scale.activation_bytes(paper, "fp16", checkpointing=True)

# %% [markdown]
# **The experiment.** The classic answer for a chain of `n` layers is to checkpoint every `√n`: `n / k` kept
# inputs plus `k` recomputed layers is smallest at `k = √n`, 8 for the paper's 64 blocks. Measured:

# %%
ks = range(1, 65)
memory = [checkpointed_activation_bytes(paper, k) / 1e9 for k in ks]
best = min(ks, key=lambda k: memory[k - 1])
L = paper.text_seq_len + paper.image_seq_len
ratio = (16 * L * paper.d_model + paper.n_heads * L * L) / (L * paper.d_model)
print(f"best k = {best}: {memory[best - 1]:.2f} GB; k = 8 (the sqrt rule): {memory[7]:.2f} GB; "
      f"no checkpointing: {scale.activation_bytes(paper, 'fp16') / 1e9:.1f} GB")
print(f"a block keeps {ratio:.0f} times what its input holds")
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.plot(list(ks), memory, marker=".")
ax.set(xscale="log", yscale="log", xlabel="checkpoint every k blocks", ylabel="activations, GB (1 sequence)",
       title="the paper's model, fp16")
ax.title.set_fontsize(9)
plt.tight_layout()
plt.show()
assert best == 1

# %% [markdown]
# Every block is best, not every eighth. The `√n` rule assumes a layer's internals are about as large as its
# input; a transformer block keeps 36 times its input (16 values per token and dimension, plus the attention
# probabilities), so keeping inputs is cheap and recomputing blocks is what costs memory. Minimising
# `(n / k) · a + k · b` gives `k = √(n · a / b)`, here `√(64 / 36) ≈ 1.3`. And the compute does not depend on `k`:
# each block is recomputed once whatever the segment length, one extra forward pass in all. (Kernels that keep
# no attention probabilities, such as FlashAttention, lower the ratio to 16, and the optimum moves to
# `k = √(64 / 16) = 2`.)
#
# ### Exercise 3: the deepest model that fits a GPU
#
# Count up from one layer while the next still fits. Memory grows by the same amount with every layer, so a
# closed form exists, but the loop is clearer and fast enough. The slips the check names: returning the first
# depth that does not fit, gigabytes of 2³⁰ bytes, forgetting the activations, and flags that are not passed on.

# %%
def max_layers(c, memory_gb: float, precision: str = "fp16", checkpointing: bool = True, shards: int = 1) -> int:
    n = 0
    while scale.training_memory(dataclasses.replace(c, n_layers=n + 1), precision, checkpointing,
                                shards).total <= memory_gb * 1e9:
        n += 1
    return n


assert check_max_layers(max_layers)

# %% [markdown]
# **The experiment.** The paper's width (3968), its sequence and vocabularies, one sequence per GPU:

# %%
setups = [("one V100, 16 GB", 16, "fp16", True, 1), ("one A100 or H100, 80 GB", 80, "fp16", True, 1),
          ("one H100, 80 GB, fp32, no checkpointing", 80, "fp32", False, 1),
          ("8 H100s, sharded (one machine)", 80, "fp16", True, 8),
          ("8 V100s, sharded (one of the paper's machines)", 16, "fp16", True, 8),
          ("1,024 V100s, sharded (the paper's cluster)", 16, "fp16", True, 1024)]
for label, gb, precision, ckpt, shards in setups:
    n = max_layers(paper, gb, precision, ckpt, shards)
    print(f"{label:48} {n:6,} layers  ({'enough for' if n >= 64 else 'short of'} the paper's 64)")
assert max_layers(paper, 16, "fp16", True, 1) < 64 <= max_layers(paper, 16, "fp16", True, 1024)

# %% [markdown]
# One V100 holds 4 of the paper's 64 layers, one 80 GB GPU 25: no single GPU of any generation trains this
# model with Adam. One of the paper's own 8-GPU machines, sharded, holds 39 layers, still not enough, which is why
# the state has to spread across machines too (or be kept in fewer bytes). The whole cluster, sharded, could hold
# over a thousand layers: at that point memory no longer limits the model's depth; time does.
#
# ## Check your understanding: answers
#
# 1. **Heads.** Splitting `d` into `h` heads of `d / h` reshapes the same `d × d` query, key and value matrices,
#    so the parameters (and the attention FLOPs, `4 · d` per pair) do not depend on `h`. Heads appear in the
#    attention *probabilities*: each head has its own `L × L` matrix, so a dense kernel keeps `h · L²` values per
#    layer, 62 × 1280² for the paper's model, more than the rest of the block.
# 2. **`6 · N · D`.** The rule charges 6 FLOPs per token for *every* parameter, but embedding tables are read by
#    lookup, not multiplied: they cost no FLOPs. `tiny`'s text table alone is a fifth of its parameters. The
#    tables grow with `d` (vocabulary × `d`), the blocks with `d²` per layer, so in a big model the tables are a
#    sliver and the rule is nearly exact. (It also leaves out attention's `4 · d` per pair, which is why it
#    underestimates `colab`.)
# 3. **The fp32 master copy.** An optimizer step changes a weight by a tiny fraction of itself; fp16 resolves
#    relative changes only down to about 10⁻³ (eps = 2⁻¹⁰), so `w + update` would round back to `w` and training
#    would stall. The update is applied to an fp32 copy (eps about 10⁻⁷), and the 16-bit weights are re-made from
#    it after each step. Adam's moments are kept in fp32 for the same reason.
# 4. **Sums and uneven slices.** DDP *averages* gradients over the processes. With a mean loss over equal slices,
#    the average of the slices' gradients is the whole batch's gradient. With a summed loss, each process's
#    gradient is the sum over its slice, and averaging halves the total: the step would be half the one-process
#    step (as if the learning rate were halved). With slices of different sizes, a plain average of the slices'
#    means weighs the items of the smaller slice more heavily; it would need weighting by slice size.
# 5. **Dense kernels.** A dense kernel computes `Q Kᵀ` as one large, regular matrix product, which the hardware
#    runs near its peak, and then sets the masked scores to −∞; skipping single entries would cost more than
#    computing them. To turn the masks' savings into time, a kernel must skip whole *tiles* of the score matrix
#    (say 64 × 64) that the mask leaves empty, so the mask must be blocky, and the kernel must know its layout
#    in advance: block-sparse attention, as in the Sparse Transformer (Child et al., 2019) that the paper's masks
#    come from.
