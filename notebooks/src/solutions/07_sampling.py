# %% [markdown]
# # 07 · Sampling: solutions
#
# Worked solutions to the exercises of lesson 07 (`notebooks/07_sampling.ipynb`). Try them yourself
# first: each check tells you what is wrong in plain words. Every solution below is followed by its check,
# asserted, so the tests fail if a solution ever stops passing.

# %%
import torch

from dalle_lessons.exercises.l07_sampling import check_completion, check_guidance, check_top_p
from dalle_lessons.pipeline import TextToImage
from dalle_lessons.sampling import generate_image_tokens, guided_logits, sample_from_logits, top_p_filter
from dalle_lessons.shapes import ShapesDataset

torch.set_grad_enabled(False)
torch.set_printoptions(precision=3, sci_mode=False)

# %% [markdown]
# ### Exercise 1: the top-p filter
#
# Four steps, all along the last axis so that any batch axes come along for free:
#
# 1. sort each row's logits in **descending** order, remembering where each came from (`order`);
# 2. turn the sorted logits into probabilities and subtract each token's own probability from the running
#    total: `before[j]` is the mass of the tokens more likely than token `j`;
# 3. keep token `j` when `before[j] < p`. The most likely token has `before = 0`, so it is always kept, and
#    the token that takes the total to `p` or past it is kept too: that is the *smallest* set with mass
#    `≥ p`. (Keeping tokens while the total itself is below `p` drops that last token, a common slip.)
# 4. the kept flags are in sorted order: `scatter` them back to the tokens' own positions, then fill the
#    others with `-inf`, leaving the kept logits unchanged.

# %%
def my_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs  # the mass of the more likely tokens
    keep = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before < p)  # back to token order
    return logits.masked_fill(~keep, float("-inf"))


assert check_top_p(my_top_p)

# %% [markdown]
# On the model's first-token logits, the nucleus grows with `p`, and more slowly than the mass: the last
# tenth of the probability is spread over many unlikely tokens, the tail that top-p cuts away.

# %%
pipe = TextToImage.from_pretrained(device="cpu")  # the shipped model, on the CPU as in the lesson
model = pipe.transformer
logits, _ = model.prefill(pipe.encode_prompts("a large red circle at the top left"))
for p in (0.5, 0.8, 0.9, 0.95, 0.99):
    kept = int(torch.isfinite(my_top_p(logits, p)).sum())
    assert torch.equal(my_top_p(logits, p), top_p_filter(logits, p))
    print(f"p = {p:4}: {kept:3d} of {logits.shape[-1]} tokens kept")

# %% [markdown]
# ### Exercise 2: mixing guided logits
#
# One line. Starting from the unconditional logits and stepping `scale` times along `cond − uncond` makes
# the two ends come out right: scale 0 returns `uncond` (the caption ignored) and scale 1 returns `cond`
# (plain conditional sampling). The same formula reads `scale · cond + (1 − scale) · uncond`: for
# `scale > 1` a weighted mix with a *negative* weight on the unconditional logits. Mix logits (or
# log-probabilities, the same up to a constant per row), never probabilities: a probability mix with a
# negative weight can go below 0.

# %%
def my_guided_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return uncond + scale * (cond - uncond)


assert check_guidance(my_guided_logits)

# %% [markdown]
# With the model: the first token's logits under the caption and under the empty caption, mixed by our
# function and by the library's, give the same distribution.

# %%
cond, _ = model.prefill(pipe.encode_prompts("a large green triangle at the bottom right"))
uncond, _ = model.prefill(model.empty_text(1))
for scale in (0.0, 1.0, 3.0):
    ours = my_guided_logits(cond, uncond, scale).softmax(-1)
    assert torch.allclose(ours, guided_logits(cond, uncond, scale).softmax(-1), atol=1e-6)
print("my_guided_logits == guided_logits on the model's first-token logits, scales 0, 1, 3 ✓")

# %% [markdown]
# ### Exercise 3: image completion with the KV cache
#
# `model.prefill(text_ids, prefix)` puts the caption *and* the given tokens into the cache and returns the
# logits for token `n`, the first one to draw. From there it is the sampling loop of the lesson: draw token
# `i` for all rows at once, then feed exactly that column back with `model.step` to get the logits for
# token `i + 1`. The last token is drawn but never fed (there is nothing after it to predict), and the
# prefix is copied into the output unchanged.

# %%
def my_complete(model, text_ids: torch.Tensor, prefix: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    B, n, N = text_ids.shape[0], prefix.shape[1], model.config.image_seq_len
    tokens = torch.zeros(B, N, dtype=torch.long)
    tokens[:, :n] = prefix
    logits, cache = model.prefill(text_ids, prefix)  # caption + prefix, read once
    for i in range(n, N):
        tokens[:, i] = sample_from_logits(logits, generator)
        if i < N - 1:
            logits = model.step(tokens[:, i], cache)  # one new position per token
    return tokens


assert check_completion(my_complete)

# %% [markdown]
# And on the course model, completing the top half of a real test image: the same tokens as the library.

# %%
image = ShapesDataset("test", size=1, seed=0, n_objects=2, render_images=False).image(0)
prefix = pipe.encode_image(image)[None, :32].repeat(4, 1)  # the top 4 of 8 token rows, for 4 samples
text_ids = pipe.encode_prompts("a red circle above a blue triangle").repeat(4, 1)
ours = my_complete(model, text_ids, prefix, torch.Generator().manual_seed(0))
theirs = generate_image_tokens(model, text_ids, prefix=prefix, generator=torch.Generator().manual_seed(0))
assert torch.equal(ours, theirs)
print(f"my_complete == generate_image_tokens(prefix=...) on the course model: {tuple(ours.shape)} tokens, "
      f"the first {prefix.shape[1]} of each row given")
