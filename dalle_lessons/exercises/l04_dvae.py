"""Self-checks for lesson 04 (the discrete VAE).

Each check calls the learner's function on small seeded inputs, compares the result with the
library's own (`dalle_lessons.dvae`) and, when they differ, tries the usual mistakes so that the
feedback can name the one that was made.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from dalle_lessons.dvae import code_usage, gumbel_softmax, logit_laplace_nll
from dalle_lessons.exercises import Feedback, call_learner, report


def _as_tensor(value, what: str, shape: torch.Size) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise Feedback(f"{what} should return a torch.Tensor, but it returned {type(value).__name__}.")
    if value.shape != shape:
        raise Feedback(f"{what} returned shape {tuple(value.shape)}; it should keep the input's shape "
                       f"{tuple(shape)} (one value per input value, nothing summed or averaged).")
    return value.double()


def _close(a: torch.Tensor, b: torch.Tensor, atol: float) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=1e-4))


# --- exercise 1: the Gumbel-softmax ----------------------------------------------------------------

def _gumbel_cases() -> list[tuple[str, torch.Tensor, float, int]]:
    """(name, logits, temperature, seed): a batch of rows, three temperatures, and a grid of cells."""
    gen = torch.Generator().manual_seed(4)
    rows = 2 * torch.randn(6, 10, generator=gen)
    grid = 2 * torch.randn(2, 3, 3, 16, generator=gen)  # [B, g, g, K], like the dVAE's logits
    return [("logits [6, 10] at temperature 1", rows, 1.0, 11),
            ("logits [6, 10] at temperature 0.5", rows, 0.5, 12),
            ("logits [6, 10] at temperature 1/16", rows, 1 / 16, 13),
            ("logits [2, 3, 3, 16] (a 3x3 grid of cells) at temperature 1", grid, 1.0, 14)]


def _gumbel_variant(logits: torch.Tensor, temperature: float, seed: int, mistake: str) -> torch.Tensor:
    """The relaxed sample as a common mistake computes it, from the same uniform draw (feedback only)."""
    u = torch.rand(logits.shape, generator=torch.Generator().manual_seed(seed)).clamp(min=1e-10)
    gumbel = -torch.log(-torch.log(u))
    if mistake == "no_noise":
        return (logits / temperature).softmax(-1)
    if mistake == "noise_after_temperature":
        return (logits / temperature + gumbel).softmax(-1)
    if mistake == "times_temperature":
        return ((logits + gumbel) * temperature).softmax(-1)
    if mistake == "noise_sign":
        return ((logits - gumbel) / temperature).softmax(-1)
    if mistake == "one_log":
        return ((logits - torch.log(u)) / temperature).softmax(-1)
    if mistake == "uniform_noise":
        return ((logits + u) / temperature).softmax(-1)
    if mistake == "hard":
        soft = ((logits + gumbel) / temperature).softmax(-1)
        return torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    raise ValueError(mistake)


_GUMBEL_MISTAKES = {
    "no_noise": "your sample has no noise in it: it is softmax(logits / temperature), the same every time. "
                "Add Gumbel noise g = -log(-log(U)), U = torch.rand(logits.shape, generator=generator), to "
                "the logits first: that is what makes it a random sample.",
    "noise_after_temperature": "you added the noise after dividing by the temperature. The noise belongs to "
                               "the logits: softmax((logits + g) / temperature). Dividing only the logits changes "
                               "the balance between logits and noise, so the samples no longer follow "
                               "softmax(logits): at a low temperature they almost always pick the largest logit.",
    "times_temperature": "you multiplied by the temperature; divide by it: softmax((logits + g) / temperature). "
                         "A low temperature must sharpen the samples toward one-hot, not flatten them.",
    "noise_sign": "the noise has the wrong sign: a Gumbel sample is g = -log(-log(U)) (two minus signs). "
                  "With +log(-log(U)) the argmax no longer follows the softmax of the logits.",
    "one_log": "you used -log(U), which is exponential noise. Gumbel noise takes the log twice: "
               "g = -log(-log(U)).",
    "uniform_noise": "you added the uniform draw U itself. Turn it into Gumbel noise first: g = -log(-log(U)).",
    "hard": "you returned the one-hot argmax. This exercise asks for the soft (relaxed) sample, "
            "softmax((logits + g) / temperature): its gradient is what trains the encoder.",
}


def _gumbel_statistics(fn: Callable) -> None:
    """For a valid sample drawn another way: soft rows, argmax frequencies = softmax, sharp at low temperature."""
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5]).expand(20_000, 5).contiguous()
    probs = logits[0].softmax(-1)
    warm = _as_tensor(call_learner(fn, "Your function", logits.clone(), 1.0, torch.Generator().manual_seed(7)),
                      "Your function", logits.shape)
    frequencies = torch.bincount(warm.argmax(-1), minlength=5).double() / len(warm)
    worst = int((frequencies - probs).abs().argmax())
    if (frequencies - probs).abs().max() > 0.02:
        raise Feedback(f"Over 20,000 samples from the same logits, the argmax of your samples picks code {worst} "
                       f"{100 * frequencies[worst]:.1f} % of the time, but softmax(logits) gives it "
                       f"{100 * probs[worst]:.1f} %. The Gumbel-max trick needs Gumbel noise, g = -log(-log(U)) "
                       "with U uniform in (0, 1), added to the logits.")
    cold = _as_tensor(call_learner(fn, "Your function", logits.clone(), 1 / 16, torch.Generator().manual_seed(8)),
                      "Your function", logits.shape)
    if cold.amax(-1).mean() < 0.9:
        raise Feedback("At temperature 1/16 your samples should be nearly one-hot (largest entry close to 1), "
                       f"but their largest entry averages {cold.amax(-1).mean():.2f}. Divide (logits + g) by "
                       "the temperature before the softmax.")


def check_gumbel_softmax(fn: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]) -> bool:
    """Exercise 1: `fn(logits, temperature, generator)` is the relaxed sample softmax((logits + g) / temperature)."""

    def check() -> None:
        exact = True
        for name, logits, temperature, seed in _gumbel_cases():
            what = f"Your gumbel_softmax (with {name})"
            got = _as_tensor(call_learner(fn, what, logits.clone(), temperature, torch.Generator().manual_seed(seed)),
                             what, logits.shape)
            if torch.isnan(got).any() or torch.isinf(got).any():
                raise Feedback(f"With {name} your sample contains NaN or inf. log(0) is -inf: U = torch.rand(...) "
                               "can be exactly 0, so clamp it first (U.clamp(min=1e-10)), and take the softmax, "
                               "not exp() of large numbers.")
            if not torch.allclose(got.sum(-1), torch.ones(()).double(), atol=1e-4):
                raise Feedback(f"With {name}: each sample should be a probability vector over the codes, summing "
                               "to 1 along the last axis (dim=-1), but yours sums to "
                               f"{got.sum(-1).flatten()[0]:.3f}. Take the softmax over dim=-1.")
            if (got < 0).any():
                raise Feedback(f"With {name} your sample has negative entries: return the softmax itself, "
                               "not its logarithm.")
            want = gumbel_softmax(logits, temperature, generator=torch.Generator().manual_seed(seed))
            if _close(got, want, 1e-4):
                continue
            for mistake, message in _GUMBEL_MISTAKES.items():
                if _close(got, _gumbel_variant(logits, temperature, seed, mistake), 1e-4):
                    raise Feedback(f"With {name}: {message}")
            exact = False
        if exact:
            return
        # Not the library's draw: a correct sample drawn another way must still be reproducible and right.
        logits = _gumbel_cases()[0][1]
        first, second = (call_learner(fn, "Your gumbel_softmax", logits.clone(), 1.0, torch.Generator().manual_seed(3))
                         for _ in range(2))
        if not torch.equal(first, second):
            raise Feedback("Two calls with generators seeded alike gave different samples. Draw the noise with "
                           "the generator you are given: torch.rand(logits.shape, generator=generator), so that "
                           "the same seed always gives the same sample.")
        _gumbel_statistics(fn)
        print("(Your noise is drawn differently from the library's torch.rand(logits.shape, generator=generator), "
              "but its statistics are right.)")

    return report("Exercise 1 (Gumbel-softmax)", check)


# --- exercise 2: the logit-Laplace likelihood -----------------------------------------------------

def _laplace_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """(name, mu, log_b, target, eps): decoder outputs and pixel targets, pure 0 and 1 pixels included."""
    gen = torch.Generator().manual_seed(6)
    mu, log_b = 2 * torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 3, 4, 4, generator=gen) - 1
    target = torch.rand(2, 3, 4, 4, generator=gen)
    target[0, 0, 0] = 0.0  # black and white pixels: where an unmapped logit is infinite
    target[1, 2, 3] = 1.0
    return [("eps = 0.1", mu, log_b, target, 0.1), ("eps = 0.05", mu.flip(0), log_b.flip(0), target, 0.05)]


def _laplace_variant(mu, log_b, target, eps, mistake: str) -> torch.Tensor:
    """The NLL as a common mistake computes it (for feedback only); float64."""
    mu, log_b, target = mu.double(), log_b.double(), target.double()
    if mistake == "eps_fixed":
        eps = 0.1
    y = (1 - 2 * eps) * target + eps
    logit = torch.log(y) - torch.log1p(-y)
    distance = (logit - mu).abs()
    scaled = {"divide_log_b": distance / log_b, "squared": (logit - mu) ** 2 * torch.exp(-log_b)}.get(
        mistake, distance * torch.exp(-log_b))
    jacobian = {"no_jacobian": 0.0, "jacobian_sign": -torch.log(y * (1 - y))}.get(mistake, torch.log(y * (1 - y)))
    nll = scaled + (0.0 if mistake == "no_log_b" else log_b) + (0.0 if mistake == "no_log2" else math.log(2)) + jacobian
    return -nll if mistake == "log_likelihood" else nll


_LAPLACE_MISTAKES = {
    "log_likelihood": "you returned the log-likelihood. The loss is its negative, the NLL: flip the sign.",
    "no_jacobian": "the term log(y (1 - y)) is missing. The density on (0, 1) is "
                   "exp(-|logit(y) - mu| / b) / (2 b y (1 - y)); the 1 / (y (1 - y)) comes from changing variables "
                   "from logit space to pixel space, and -log of it adds +log(y (1 - y)) to the NLL.",
    "jacobian_sign": "log(y (1 - y)) has the wrong sign. The density divides by y (1 - y), so the negative "
                     "log-density *adds* +log(y (1 - y)).",
    "divide_log_b": "you divided by log_b. The scale is b = exp(log_b): multiply the distance by exp(-log_b).",
    "squared": "you squared the distance: that is a Gaussian in logit space. The Laplace distribution uses the "
               "absolute value, |logit(y) - mu|.",
    "no_log_b": "the + log_b term is missing: the density's 1 / (2 b) normalizer contributes log(2 b) = "
                "log 2 + log_b to the NLL.",
    "no_log2": "the + log 2 term is missing: the density's 1 / (2 b) normalizer contributes log(2 b) = "
               "log 2 + log_b to the NLL.",
    "eps_fixed": "you used eps = 0.1 whatever the eps argument: use the eps you are given.",
}


def check_logit_laplace(fn: Callable[..., torch.Tensor]) -> bool:
    """Exercise 2: `fn(mu, log_b, target, eps)` is the per-subpixel logit-Laplace NLL with the eps mapping."""

    def check() -> None:
        for name, mu, log_b, target, eps in _laplace_cases():
            what = f"Your logit_laplace_nll (with {name})"
            got = call_learner(fn, what, mu.clone(), log_b.clone(), target.clone(), eps)
            if isinstance(got, torch.Tensor) and got.ndim == 0:
                raise Feedback(f"{what} returned one number. Return the NLL of every subpixel (the same shape as "
                               "target); the loss averages it afterwards, with the object weights.")
            got = _as_tensor(got, what, target.shape)
            want = logit_laplace_nll(mu.double(), log_b.double(), target.double(), eps)
            bad = torch.isinf(got) | torch.isnan(got)
            if bad.any():
                if bad[target == 1].any() and not bad[target == 0].any():
                    raise Feedback(f"With {name} your NLL is infinite or NaN at white pixels (1) only: your "
                                   "mapping sends 1 to 1, where logit(1) = +inf. The mapping y = (1 - 2 eps) x + eps "
                                   "keeps both ends inside (eps, 1 - eps).")
                where = "black or white pixels (0 or 1)" if bad[(target == 0) | (target == 1)].any() else "some pixels"
                raise Feedback(f"With {name} your NLL is infinite or NaN at {where}: logit(0) = -inf and "
                               "logit(1) = +inf. Map the pixels first, y = (1 - 2 eps) x + eps, so that they stay "
                               "inside (eps, 1 - eps).")
            if _close(got, want, 1e-4):
                continue
            for mistake, message in _LAPLACE_MISTAKES.items():
                if _close(got, _laplace_variant(mu, log_b, target, eps, mistake), 1e-4):
                    raise Feedback(f"With {name}: {message}")
            error = (got - want).abs()
            raise Feedback(f"With {name}, your NLL differs from the library's by up to {error.max():.3f}. Recall: "
                           "y = (1 - 2 eps) x + eps; NLL = |logit(y) - mu| exp(-log_b) + log_b + log 2 "
                           "+ log(y (1 - y)), with logit(y) = log(y) - log(1 - y).")

    return report("Exercise 2 (logit-Laplace likelihood)", check)


# --- exercise 3: codebook usage and perplexity ------------------------------------------------------

def _usage_cases() -> list[tuple[str, torch.Tensor, int]]:
    """(name, ids, codebook_size): skewed use with unused codes, one code everywhere, every code equally."""
    gen = torch.Generator().manual_seed(9)
    weights = torch.tensor([40.0, 20, 10, 5, 5, 2, 1, 1] + [0.0] * 8)
    skewed = torch.multinomial(weights, 4 * 8 * 8, replacement=True, generator=gen).view(4, 8, 8)
    return [("a batch of 4 grids using 8 of 16 codes, unevenly", skewed, 16),
            ("a grid where every cell holds code 3", torch.full((2, 8, 8), 3), 16),
            ("a grid using all 64 codes once each", torch.randperm(64, generator=gen).view(1, 8, 8), 64)]


def _usage_variants(ids: torch.Tensor, K: int) -> dict[str, tuple[float, float]]:
    """(used, perplexity) as common mistakes compute them (for feedback only)."""
    counts = torch.bincount(ids.flatten(), minlength=K).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    used = float((counts > 0).sum())
    return {
        "entropy": (used, entropy),
        "bits_exp": (used, math.exp(entropy / math.log(2))),
        "no_minus": (used, math.exp(-entropy)),
        "used_as_perplexity": (used, used),
        "codebook_as_used": (float(K), math.exp(entropy)),
        "tokens_as_used": (float(ids.numel()), math.exp(entropy)),
    }


_USAGE_MISTAKES = {
    "entropy": "your perplexity is the entropy itself. Perplexity is exp(entropy): the number of equally used "
               "codes that would have the same entropy.",
    "bits_exp": "you took the entropy in bits (log2) and then exp(). Use the natural log with exp(), or "
                "log2 with 2 ** entropy: both give the same perplexity.",
    "no_minus": "the entropy's sign is flipped: entropy = -sum p log p (the minus makes it positive, since "
                "log p <= 0), and the perplexity exp(entropy) is at least 1.",
    "used_as_perplexity": "your perplexity is the number of codes used. They agree only when every used code is "
                          "used equally often: compute the frequencies p = counts / counts.sum(), then "
                          "exp(-sum p log p).",
    "codebook_as_used": "you counted every code of the codebook. Count only the codes that appear at least "
                        "once: (counts > 0).sum(), with counts = torch.bincount(ids.flatten(), minlength=K).",
    "tokens_as_used": "you counted tokens (grid cells), not distinct codes. Count the codes that appear at "
                      "least once: (counts > 0).sum().",
}


def check_code_usage(fn: Callable[[torch.Tensor, int], tuple[int, float]]) -> bool:
    """Exercise 3: `fn(ids, codebook_size)` is (number of distinct codes used, perplexity of their frequencies)."""

    def check() -> None:
        for name, ids, K in _usage_cases():
            what = f"Your code_usage (with {name})"
            got = call_learner(fn, what, ids.clone(), K, hint=" Hint: ids is a [B, g, g] grid; ids.flatten() "
                        "gives the list of every token's code.")
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                length = f" of length {len(got)}" if hasattr(got, "__len__") else ""
                raise Feedback(f"{what} should return a pair (codes used, perplexity), but it returned "
                               f"{type(got).__name__}{length}.")
            try:
                used, perplexity = float(got[0]), float(got[1])
            except (TypeError, ValueError, RuntimeError):
                raise Feedback(f"{what} should return two numbers (an int and a float, or one-element tensors), "
                               f"but it returned {got!r}.") from None
            want_used, want_perplexity = code_usage(ids, K)
            if math.isnan(perplexity):
                raise Feedback(f"With {name} your perplexity is NaN. A code that is never used has p = 0, and "
                               "0 * log(0) is 0 * -inf = NaN in floating point: sum only over the codes with p > 0.")
            if used == want_used and abs(perplexity - want_perplexity) < 1e-3 * max(1.0, want_perplexity):
                continue
            for mistake, message in _USAGE_MISTAKES.items():
                v_used, v_perplexity = _usage_variants(ids, K)[mistake]
                if (abs(used - v_used) < 1e-6 and abs(perplexity - v_perplexity) < 1e-3 * max(1.0, v_perplexity)
                        and (v_used, v_perplexity) != (want_used, want_perplexity)):
                    raise Feedback(f"With {name}: {message}")
            if used != want_used:
                raise Feedback(f"With {name} the answer is {want_used} codes used; you returned {got[0]}. Count "
                               "the codes that appear at least once.")
            raise Feedback(f"With {name} the perplexity is {want_perplexity:.3f}; you returned {perplexity:.3f}. "
                           "Recall: p = counts / counts.sum() over the codes, entropy = -sum p log p over the "
                           "codes with p > 0, perplexity = exp(entropy).")

    return report("Exercise 3 (codebook usage and perplexity)", check)
