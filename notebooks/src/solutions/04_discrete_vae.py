# %% [markdown]
# # 04 · The discrete VAE: solutions
#
# Worked solutions to the exercises of lesson 04 (`notebooks/04_discrete_vae.ipynb`).
# Try them yourself first: each check tells you what is wrong in plain words. Every solution below
# is followed by its check, asserted, so the tests fail if a solution ever stops passing.

# %%
import math

import torch

from dalle_lessons.dvae import code_usage, gumbel_softmax, load_pretrained, logit_laplace_nll
from dalle_lessons.exercises.l04_dvae import check_code_usage, check_gumbel_softmax, check_logit_laplace
from dalle_lessons.shapes import ShapesDataset

torch.set_printoptions(precision=4, sci_mode=False)

# %% [markdown]
# ### Exercise 1: the Gumbel-softmax
#
# Three steps, all elementwise except the last:
#
# 1. a uniform draw `U` from the generator, clamped away from 0 (`torch.rand` can return exactly 0, and
#    `log 0 = −∞`);
# 2. Gumbel noise `g = −log(−log U)`: `log U` is negative, so `−log U` is positive and can be logged again;
# 3. add the noise to the **logits**, divide by the temperature, and take the softmax over the codes (the
#    last axis).
#
# Dividing by the temperature *after* adding the noise matters: the noise must be on the same scale as the
# logits for the argmax to follow `softmax(logits)`. The temperature only sharpens the result.

# %%
def gumbel_softmax_sample(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    uniform = torch.rand(logits.shape, generator=generator).clamp(min=1e-10)
    gumbel = -torch.log(-torch.log(uniform))
    return ((logits + gumbel) / temperature).softmax(dim=-1)


assert check_gumbel_softmax(gumbel_softmax_sample)

# %% [markdown]
# At a low temperature the sample is close to the one-hot vector of its argmax, and the argmax is the
# library's hard sample from the same seed:

# %%
logits = torch.tensor([[1.0, 2.0, 0.5, -1.0]])
soft = gumbel_softmax_sample(logits, 1 / 16, torch.Generator().manual_seed(0))
hard = gumbel_softmax(logits, 1 / 16, hard=True, generator=torch.Generator().manual_seed(0))
print("soft at τ = 1/16:", soft)
print("library, hard   :", hard)
assert torch.equal(soft.argmax(-1), hard.argmax(-1))

# %% [markdown]
# ### Exercise 2: the logit-Laplace likelihood
#
# Take `−log` of the density `exp(−|logit(y) − μ| / b) / (2 b y (1 − y))` term by term:
#
# $$-\log p = \frac{|\operatorname{logit}(y) - \mu|}{b} + \log b + \log 2 + \log y + \log(1 - y)$$
#
# with `y = (1 − 2ε) x + ε` and `b = exp(log_b)`. The decoder predicts `log b` rather than `b` so that `b`
# is always positive; dividing by `b` is multiplying by `exp(−log_b)`.

# %%
def laplace_nll(mu: torch.Tensor, log_b: torch.Tensor, target: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    y = (1 - 2 * eps) * target + eps  # inside [eps, 1 - eps]: logit(y) is finite
    logit_y = torch.log(y) - torch.log(1 - y)
    return (logit_y - mu).abs() * torch.exp(-log_b) + log_b + math.log(2) + torch.log(y * (1 - y))


assert check_logit_laplace(laplace_nll)

# %% [markdown]
# For a fixed scale, the NLL is smallest where `μ` equals `logit(y)`: the decoder's `μ` predicts the
# mapped pixel in logit space, and `sigmoid(μ)`, unmapped, is the reconstructed pixel.

# %%
target = torch.tensor(0.25)
mus = torch.linspace(-3, 3, 601)
nll = laplace_nll(mus, torch.tensor(-1.0), target)
best = mus[nll.argmin()]
print(f"target 0.25 -> y = {0.8 * 0.25 + 0.1:.2f}, logit(y) = {math.log(0.3 / 0.7):.3f}; "
      f"the NLL is lowest at μ = {best:.2f}")
assert torch.allclose(nll, logit_laplace_nll(mus, torch.tensor(-1.0), target), atol=1e-5)

# %% [markdown]
# ### Exercise 3: codebook usage and perplexity
#
# `torch.bincount` counts how often each code appears (`minlength` keeps unused codes as zeros). The codes
# used are the nonzero counts. The frequencies `p` of the used codes give the entropy `−Σ p log p`; codes
# with `p = 0` are left out, because `0 · log 0` is `NaN` in floating point (its limit is 0).

# %%
def usage(ids: torch.Tensor, codebook_size: int) -> tuple[int, float]:
    counts = torch.bincount(ids.flatten(), minlength=codebook_size).double()
    p = counts[counts > 0] / counts.sum()
    entropy = -(p * p.log()).sum().item()
    return int((counts > 0).sum()), math.exp(entropy)


assert check_code_usage(usage)

# %% [markdown]
# On the pretrained dVAE's codes for 200 test images:

# %%
dvae = load_pretrained("dvae-cpu")
images = ShapesDataset("test", 200, seed=0).images_uint8().float() / 255
ids = dvae.encode(images)
used, perplexity = usage(ids, 512)
print(f"{ids.numel():,} tokens: {used} codes used, perplexity {perplexity:.1f}")
library_used, library_perplexity = code_usage(ids, 512)
assert used == library_used and math.isclose(perplexity, library_perplexity, rel_tol=1e-5)
