"""Self-checks for lesson 04 (the discrete VAE).

Each exercise is a variation the library does not implement (codes sampled at a temperature, the
density of the pixel rather than of the mapped value, code perplexity per grid cell), so the library's
own function gives a different answer. Each check compares the learner's function with a reference
written here and, when they differ, tries the usual mistakes and shortcuts so that the feedback can
name the one that was made.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from dalle_lessons.dvae import code_usage, logit_laplace_nll
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


# --- exercise 1: sampling codes from the encoder at a temperature ----------------------------------

def _sample_cases() -> list[tuple[str, torch.Tensor, float, int]]:
    """(name, logits, temperature, seed): rows of logits at three temperatures, and a grid of cells."""
    gen = torch.Generator().manual_seed(4)
    rows = 2 * torch.randn(6, 10, generator=gen)
    grid = 2 * torch.randn(2, 3, 3, 16, generator=gen)  # [B, g, g, K], like the dVAE's logits
    return [("logits [6, 10] at temperature 0.5", rows, 0.5, 12),
            ("logits [6, 10] at temperature 2", rows, 2.0, 13),
            ("logits [2, 3, 3, 16] (a 3x3 grid of cells) at temperature 0.25", grid, 0.25, 14),
            ("logits [6, 10] at temperature 1", rows, 1.0, 11)]


def sample_codes_reference(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """Code ids drawn from softmax(logits / temperature) by the Gumbel-max trick."""
    u = torch.rand(logits.shape, generator=generator).clamp(min=1e-10)
    return (logits / temperature - torch.log(-torch.log(u))).argmax(-1)


def _sample_variant(logits: torch.Tensor, temperature: float, seed: int, mistake: str) -> torch.Tensor:
    u = torch.rand(logits.shape, generator=torch.Generator().manual_seed(seed)).clamp(min=1e-10)
    g = -torch.log(-torch.log(u))
    return {
        "right": logits / temperature + g,
        "noise_divided_too": (logits + g) / temperature,
        "times_temperature": logits * temperature + g,
        "no_noise": logits,
        "noise_sign": logits / temperature - g,
        "one_log": logits / temperature - torch.log(u),
    }[mistake].argmax(-1)


_SAMPLE_MISTAKES = {
    "noise_divided_too": "you divided the noisy logits by the temperature, (logits + g) / τ, as the Gumbel-softmax "
                         "does. Dividing everything by τ never changes which code is largest, so your codes are "
                         "samples from softmax(logits) whatever τ is (section 3 saw it: the temperature changes how "
                         "sharp a relaxed sample is, not which code wins). To sample from softmax(logits / τ), "
                         "divide the logits first and then add the noise: argmax(logits / τ + g).",
    "times_temperature": "you multiplied the logits by the temperature; divide by it: argmax(logits / τ + g). A "
                         "temperature below 1 must sharpen the distribution, not flatten it.",
    "no_noise": "your codes are the argmax of the logits, the same every time: that is what encode does. Add "
                "Gumbel noise g = -log(-log(U)), U = torch.rand(logits.shape, generator=generator), to draw a sample.",
    "noise_sign": "the noise has the wrong sign: Gumbel noise is g = -log(-log(U)) (two minus signs), added to "
                  "the tempered logits.",
    "one_log": "you used -log(U), which is exponential noise. Gumbel noise takes the log twice: g = -log(-log(U)).",
}


def _sample_statistics(fn: Callable) -> None:
    """For a sampler that draws its randomness another way: frequencies must follow softmax(logits / τ)."""
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5]).expand(20_000, 5).contiguous()
    for temperature, seed in ((0.5, 7), (2.0, 8)):
        what = f"Your sampler (20,000 draws at temperature {temperature})"
        ids = call_learner(fn, what, logits.clone(), temperature, torch.Generator().manual_seed(seed))
        ids = torch.as_tensor(ids).long().flatten()
        probs = (logits[0] / temperature).softmax(-1)
        frequencies = torch.bincount(ids, minlength=5).double()[:5] / len(ids)
        worst = int((frequencies - probs).abs().argmax())
        if (frequencies - probs).abs().max() > 0.02:
            raise Feedback(f"Over 20,000 draws at temperature {temperature}, your sampler picks code {worst} "
                           f"{100 * frequencies[worst]:.1f} % of the time, but softmax(logits / τ) gives it "
                           f"{100 * probs[worst]:.1f} %. Add Gumbel noise g = -log(-log(U)) to logits / τ "
                           "and take the argmax.")


def check_sample_codes(fn: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]) -> bool:
    """Exercise 1: `fn(logits, temperature, generator)` -> ids drawn from softmax(logits / temperature)."""

    def check() -> None:
        exact, ambiguous = True, None
        for name, logits, temperature, seed in _sample_cases():
            what = f"Your sampler (with {name})"
            got = call_learner(fn, what, logits.clone(), temperature, torch.Generator().manual_seed(seed))
            if not isinstance(got, torch.Tensor):
                raise Feedback(f"{what} should return a torch.Tensor of code ids, but it returned {type(got).__name__}.")
            if got.shape == logits.shape:
                raise Feedback(f"{what} returned one vector per cell, shape {tuple(got.shape)}. Return the code ids: "
                               f"the argmax over the codes, shape {tuple(logits.shape[:-1])}.")
            if got.shape != logits.shape[:-1]:
                raise Feedback(f"{what} should return one code id per cell, shape {tuple(logits.shape[:-1])}, "
                               f"but it returned shape {tuple(got.shape)}.")
            if got.is_floating_point():
                raise Feedback(f"{what} returned {got.dtype} values; code ids are integers (argmax gives int64).")
            if torch.equal(got, _sample_variant(logits, temperature, seed, "right")):
                continue
            # At a low temperature a sample is often the plain argmax, whatever the noise: a variant that
            # equals the argmax here says nothing, and "no noise" is judged only at temperatures >= 1.
            plain = logits.argmax(-1)
            matches = []
            for mistake in _SAMPLE_MISTAKES:
                variant = _sample_variant(logits, temperature, seed, mistake)
                telling = temperature >= 1 if mistake == "no_noise" else not torch.equal(variant, plain)
                if telling and torch.equal(got, variant):
                    matches.append(mistake)
            if len(matches) == 1:
                raise Feedback(f"With {name}: {_SAMPLE_MISTAKES[matches[0]]}")
            if matches:  # two mistakes give the same codes on these logits: a later case tells them apart
                ambiguous = ambiguous or (name, matches[0])
            exact = False
        if ambiguous:
            raise Feedback(f"With {ambiguous[0]}: {_SAMPLE_MISTAKES[ambiguous[1]]}")
        if exact:
            return
        logits = _sample_cases()[0][1]
        first, second = (call_learner(fn, "Your sampler", logits.clone(), 0.5, torch.Generator().manual_seed(3))
                         for _ in range(2))
        if not torch.equal(first, second):
            raise Feedback("Two calls with generators seeded alike gave different codes. Draw the noise with the "
                           "generator you are given, torch.rand(logits.shape, generator=generator), so that the "
                           "same seed always gives the same sample.")
        _sample_statistics(fn)
        print("(Your noise is drawn differently from torch.rand(logits.shape, generator=generator), but the "
              "codes follow softmax(logits / τ).)")

    return report("Exercise 1 (sampling codes at a temperature)", check)


# --- exercise 2: the likelihood of the pixel itself ------------------------------------------------

def _laplace_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """(name, mu, log_b, target, eps): decoder outputs and pixel targets, pure 0 and 1 pixels included."""
    gen = torch.Generator().manual_seed(6)
    mu, log_b = 2 * torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 3, 4, 4, generator=gen) - 1
    target = torch.rand(2, 3, 4, 4, generator=gen)
    target[0, 0, 0] = 0.0  # black and white pixels: where an unmapped logit is infinite
    target[1, 2, 3] = 1.0
    return [("eps = 0.1", mu, log_b, target, 0.1), ("eps = 0.05", mu.flip(0), log_b.flip(0), target, 0.05)]


def pixel_nll_reference(mu, log_b, target, eps: float = 0.1) -> torch.Tensor:
    """-log p(x) for the pixel x, when y = (1 - 2 eps) x + eps is logit-Laplace: the NLL of y minus log(1 - 2 eps)."""
    return logit_laplace_nll(mu, log_b, target, eps) - math.log(1 - 2 * eps)


def _laplace_variant(mu, log_b, target, eps, mistake: str) -> torch.Tensor:
    """The pixel NLL as a common mistake computes it (for feedback only); float64."""
    mu, log_b, target = mu.double(), log_b.double(), target.double()
    map_jacobian = {"density_of_y": 0.0, "map_jacobian_sign": math.log(1 - 2 * eps)}.get(
        mistake, -math.log(1 - 2 * eps))
    if mistake == "eps_fixed":
        eps = 0.1
        map_jacobian = -math.log(0.8)
    y = (1 - 2 * eps) * target + eps
    logit = torch.log(y) - torch.log1p(-y)
    distance = (logit - mu).abs()
    scaled = {"divide_log_b": distance / log_b, "squared": (logit - mu) ** 2 * torch.exp(-log_b)}.get(
        mistake, distance * torch.exp(-log_b))
    jacobian = {"no_jacobian": 0.0, "jacobian_sign": -torch.log(y * (1 - y))}.get(mistake, torch.log(y * (1 - y)))
    nll = (scaled + (0.0 if mistake == "no_log_b" else log_b) + (0.0 if mistake == "no_log2" else math.log(2))
           + jacobian + map_jacobian)
    return -nll if mistake == "log_likelihood" else nll


_LAPLACE_MISTAKES = {
    "density_of_y": "that is the NLL of y, the mapped value (what dvae.logit_laplace_nll returns), not of the "
                    "pixel x. Changing variables from y to x multiplies the density by |dy/dx| = 1 - 2 eps, so the "
                    "NLL of x is the NLL of y minus log(1 - 2 eps).",
    "map_jacobian_sign": "the map's term has the wrong sign. p(x) = p(y) |dy/dx| = p(y) (1 - 2 eps), so "
                         "-log p(x) = -log p(y) - log(1 - 2 eps): subtract log(1 - 2 eps) (it is negative, so the "
                         "NLL of x is larger than that of y).",
    "log_likelihood": "you returned the log-likelihood. The loss is its negative, the NLL: flip the sign.",
    "no_jacobian": "the term log(y (1 - y)) is missing. The density of y on (0, 1) is "
                   "exp(-|logit(y) - mu| / b) / (2 b y (1 - y)); the 1 / (y (1 - y)) comes from changing variables "
                   "from logit space to (0, 1), and -log of it adds +log(y (1 - y)) to the NLL.",
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


def check_pixel_nll(fn: Callable[..., torch.Tensor]) -> bool:
    """Exercise 2: `fn(mu, log_b, target, eps)` is -log p(x) per subpixel, the density of the pixel x itself."""

    def check() -> None:
        for name, mu, log_b, target, eps in _laplace_cases():
            what = f"Your pixel_nll (with {name})"
            got = call_learner(fn, what, mu.clone(), log_b.clone(), target.clone(), eps)
            if isinstance(got, torch.Tensor) and got.ndim == 0:
                raise Feedback(f"{what} returned one number. Return the NLL of every subpixel (the same shape as "
                               "target); a loss averages it afterwards.")
            got = _as_tensor(got, what, target.shape)
            want = pixel_nll_reference(mu.double(), log_b.double(), target.double(), eps)
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
            raise Feedback(f"With {name}, your NLL differs from the expected one by up to {error.max():.3f}. Recall: "
                           "y = (1 - 2 eps) x + eps; -log p(y) = |logit(y) - mu| exp(-log_b) + log_b + log 2 "
                           "+ log(y (1 - y)); and -log p(x) = -log p(y) - log(1 - 2 eps).")

    return report("Exercise 2 (the likelihood of the pixel)", check)


# --- exercise 3: code perplexity at each cell of the grid -------------------------------------------

def perplexity_by_cell_reference(ids: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """ids [B, rows, cols] -> [rows, cols]: exp(entropy) of the codes found at each cell across the batch (float64)."""
    B, rows, cols = ids.shape
    out = torch.empty(rows, cols, dtype=torch.float64)
    for r in range(rows):
        for c in range(cols):
            p = torch.bincount(ids[:, r, c], minlength=codebook_size).double() / B
            nz = p[p > 0]
            out[r, c] = torch.exp(-(nz * nz.log()).sum())
    return out


def _usage_cases() -> list[tuple[str, torch.Tensor, int]]:
    gen = torch.Generator().manual_seed(9)
    weights = torch.tensor([40.0, 20, 10, 5, 5, 2, 1, 1] + [0.0] * 8)
    skewed = torch.multinomial(weights, 50 * 3 * 4, replacement=True, generator=gen).view(50, 3, 4)
    skewed[:, 0, 0] = 3  # one cell always holds the same code: perplexity 1
    skewed[:, 2, 3] = torch.arange(50) % 5  # one cell uses 5 codes equally: perplexity 5
    corner = torch.randint(0, 64, (30, 4, 4), generator=gen)
    corner[:, 0] = 7  # the whole top row: one code (a background)
    return [("50 grids of 3x4 cells, codebook 16", skewed, 16), ("30 grids of 4x4 cells, codebook 64", corner, 64)]


def _cell_entropy(ids: torch.Tensor, K: int) -> torch.Tensor:
    return perplexity_by_cell_reference(ids, K).log()


def check_perplexity_by_cell(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """Exercise 3: `fn(ids, codebook_size)` -> [g, g] perplexity of the codes used at each cell over the batch."""

    def check() -> None:
        for name, ids, K in _usage_cases():
            B, rows, cols = ids.shape
            what = f"Your perplexity_by_cell (with {name})"
            got = call_learner(fn, what, ids.clone(), K, hint=" Hint: ids[:, r, c] holds the B codes found at cell (r, c).")
            if isinstance(got, (tuple, list)):
                raise Feedback(f"{what} returned a {type(got).__name__}, like code_usage's (used, perplexity) pair for "
                               f"the whole batch. Return one perplexity per cell: a ({rows}, {cols}) tensor.")
            if not isinstance(got, torch.Tensor):
                raise Feedback(f"{what} should return a torch.Tensor, but it returned {type(got).__name__}.")
            want = perplexity_by_cell_reference(ids, K)
            if got.numel() == 1:
                raise Feedback(f"{what} returned one number: the perplexity of the whole batch (what code_usage "
                               f"gives). Compute it cell by cell: a ({rows}, {cols}) tensor.")
            if got.shape == (cols, rows) and rows != cols:
                raise Feedback(f"The result is transposed: expected ({rows}, {cols}), one value per (row, column) "
                               "of the grid.")
            if got.shape != want.shape:
                raise Feedback(f"{what} should return a ({rows}, {cols}) tensor (one value per cell), got "
                               f"{tuple(got.shape)}.")
            got = got.double()
            if torch.isnan(got).any():
                raise Feedback(f"With {name} some perplexities are NaN. A code that never appears at a cell has "
                               "p = 0, and 0 * log(0) is NaN in floating point: sum only over the codes with p > 0.")
            if torch.allclose(got, want, rtol=1e-4, atol=1e-6):
                continue
            entropy = _cell_entropy(ids, K)
            distinct = torch.tensor([[len(torch.unique(ids[:, r, c])) for c in range(cols)] for r in range(rows)])
            if torch.allclose(got, entropy, rtol=1e-4, atol=1e-6):
                raise Feedback(f"With {name}: your values are the entropies. Perplexity is exp(entropy), the number of "
                               "equally used codes that would have the same entropy (a cell that always holds "
                               "one code has perplexity 1).")
            if torch.allclose(got, distinct.double()):
                raise Feedback(f"With {name}: you counted the distinct codes at each cell. That equals the perplexity "
                               "only when they are used equally often: use the frequencies, exp(-Σ p log p).")
            if torch.allclose(got, torch.exp(-entropy), rtol=1e-4, atol=1e-6):
                raise Feedback(f"With {name}: the entropy's sign is flipped: entropy = -Σ p log p, and the "
                               "perplexity exp(entropy) is at least 1.")
            if torch.allclose(got, torch.full_like(want, float(code_usage(ids, K)[1])), rtol=1e-4):
                raise Feedback(f"With {name}: every cell got the whole batch's perplexity (code_usage). Count the "
                               "codes of each cell separately, over the batch.")
            r, c = divmod(int((got - want).abs().argmax()), cols)
            raise Feedback(f"With {name}, cell ({r}, {c}) should have perplexity {want[r, c]:.3f}, got "
                           f"{got[r, c]:.3f}. For each cell: p = counts of ids[:, r, c] / B; perplexity = "
                           "exp(-Σ p log p) over the codes with p > 0.")

    return report("Exercise 3 (perplexity at each cell)", check)
