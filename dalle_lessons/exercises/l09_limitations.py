"""Self-checks for lesson 09 (limitations, measured: quality, control, bias).

Each exercise asks for something the library does not implement: the kernel (KID) estimator of the
distance between two image sets (the library and the lesson compute the Fréchet distance), a bootstrap
interval that resamples whole prompts for any statistic (the library's `bias.bootstrap` computes the bias
table's figures only), and the "sample what the caption leaves unsaid" remedy for *position* (the library's
`bias.sample_unsaid_color` states a color). Each check compares the learner's function with a reference
written here and, when they differ, tries the usual mistakes and shortcuts (the library's functions, the
lesson's own) so that the feedback can name the one that was made. Every check runs in well under a second
and needs no checkpoint.
"""
from __future__ import annotations

import functools
import math
import numbers
import random
import statistics
from collections import Counter
from typing import Callable, Sequence

import torch

from dalle_lessons.exercises import Feedback, call_learner, report
from dalle_lessons.metrics import feature_frechet
from dalle_lessons.shapes import POSITION_NAMES, parse_caption


def _as_number(value, what: str) -> float:
    """A learner's scalar (float, int, 0-d or 1-element tensor) as a float, or feedback."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise Feedback(f"{what} returned a tensor of shape {tuple(value.shape)}; return one number for the "
                           "pair of sets (a float, or a tensor holding one value).")
        return float(value.detach().reshape(()).item())
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise Feedback(f"{what} should return one number, but it returned {type(value).__name__}.")


# --- exercise 1: the kernel distance (KID's estimator) ------------------------------------------------

def _kernel(a: torch.Tensor, b: torch.Tensor, degree: int = 3, scale: bool = True, one: bool = True) -> torch.Tensor:
    d = a.shape[1]
    dots = a @ b.T / (d if scale else 1)
    return (dots + (1 if one else 0)) ** degree


def _kid_variant(x: torch.Tensor, y: torch.Tensor, mistake: str = "reference") -> float:
    """Unbiased MMD^2 with KID's cubic kernel (x.y / d + 1)^3, or a common mistake of it."""
    x, y = x.double(), y.double()
    n, m = len(x), len(y)
    kw = {"no_d": {"scale": False}, "degree2": {"degree": 2}, "no_one": {"one": False},
          "linear": {"degree": 1, "scale": False, "one": False}}.get(mistake, {})
    kxx, kyy, kxy = _kernel(x, x, **kw), _kernel(y, y, **kw), _kernel(x, y, **kw)
    off_xx, off_yy = kxx.sum() - kxx.diagonal().sum(), kyy.sum() - kyy.diagonal().sum()
    if mistake == "biased":
        return float(kxx.mean() + kyy.mean() - 2 * kxy.mean())
    if mistake == "diagonal_kept":
        return float(kxx.sum() / (n * (n - 1)) + kyy.sum() / (m * (m - 1)) - 2 * kxy.mean())
    if mistake == "sizes_swapped":
        return float(off_xx / (m * (m - 1)) + off_yy / (n * (n - 1)) - 2 * kxy.mean())
    within = off_xx / (n * (n - 1)) + off_yy / (m * (m - 1))
    if mistake == "cross_once":
        return float(within - kxy.mean())
    if mistake == "frechet":
        return feature_frechet(x, y)
    if mistake == "frechet_x100":
        return 100 * feature_frechet(x, y)
    if mistake == "sqrt":
        return math.sqrt(max(float(within - 2 * kxy.mean()), 0.0))
    return float(within - 2 * kxy.mean())


_KID_MISTAKES = {
    "frechet": "That is the Fréchet distance (metrics.feature_frechet, the lesson's my_frechet): it fits a "
               "Gaussian to each set. This exercise asks for the kernel estimate instead: averages of "
               "k(a, b) = (a.b / d + 1)^3 within x, within y and across.",
    "frechet_x100": "That is the Fréchet distance x100 (metrics.clip_frechet's scale, the lesson's numbers). This "
                    "exercise asks for the kernel estimate: averages of k(a, b) = (a.b / d + 1)^3 within x, within "
                    "y and across.",
    "biased": "You averaged k over all n x n pairs of x (and of y), the diagonal k(x_i, x_i) included: that is the "
              "biased estimate, which sits above 0 even for two samples of the same distribution. Leave out "
              "i = j and divide the within-set sums by n (n - 1) and m (m - 1).",
    "diagonal_kept": "You divided by n (n - 1) but still summed the diagonal k(x_i, x_i) (and k(y_j, y_j)). "
                     "Subtract the diagonal from each within-set sum first.",
    "sizes_swapped": "Your within-set averages use the other set's size: divide the x-x sum by n (n - 1) with n = "
                     "len(x), and the y-y sum by m (m - 1) with m = len(y).",
    "cross_once": "The cross term counts twice: MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y).",
    "no_d": "Your kernel is (a.b + 1)^3: divide the dot product by the feature dimension d first, "
            "(a.b / d + 1)^3, as KID does.",
    "degree2": "Your kernel is squared; KID's is cubic: (a.b / d + 1) ** 3.",
    "no_one": "Your kernel is (a.b / d)^3; KID's adds 1 before the cube: (a.b / d + 1) ** 3.",
    "linear": "You used the plain dot product a.b as the kernel; KID's kernel is the cubic polynomial "
              "(a.b / d + 1)^3, which also compares the spread of the sets, not only their means.",
    "sqrt": "You returned the square root. KID is the squared MMD itself (and it can be slightly negative, "
            "which a square root cannot show).",
}


def _kid_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(9)
    cases = []
    x = torch.randn(40, 8, generator=gen)
    cases.append(("40 and 60 vectors of 8 numbers, the second set shifted and wider",
                  x, 1.3 * torch.randn(60, 8, generator=gen) + 0.4))
    cases.append(("30 and 30 vectors of 16 numbers, the second set scaled by 0.6",
                  torch.randn(30, 16, generator=gen), 0.6 * torch.randn(30, 16, generator=gen)))
    a = torch.nn.functional.normalize(torch.randn(50, 32, generator=gen) + 1.5, dim=1)  # like CLIP's unit embeddings
    b = torch.nn.functional.normalize(torch.randn(25, 32, generator=gen) + 0.5, dim=1)
    cases.append(("50 and 25 unit vectors of 32 numbers (like CLIP's embeddings)", 4 * a, 4 * b))
    cases.append(("12 and 20 vectors of 4 numbers", 2 * torch.randn(12, 4, generator=gen),
                  torch.randn(20, 4, generator=gen) - 1))
    return cases


def check_kid(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> bool:
    """Exercise 1: `fn(x, y)` is the unbiased MMD^2 of feature sets [n, d] and [m, d] with KID's cubic kernel."""

    def check() -> None:
        cases = _kid_cases()
        got = []
        for name, x, y in cases:
            xc, yc = x.clone(), y.clone()
            value = call_learner(fn, f"Your my_kid (with {name})", xc, yc,
                                 hint=" Hint: (x @ y.T / d + 1) ** 3 is the [n, m] table of kernel values.")
            if not (torch.equal(xc, x) and torch.equal(yc, y)):
                raise Feedback("Your function changed x or y in place; compute with new tensors instead.")
            number = _as_number(value, "Your my_kid")
            if math.isnan(number):
                raise Feedback(f"With {name} your my_kid returned NaN.")
            got.append(number)
        close = lambda a, b: abs(a - b) <= 1e-4 * max(1.0, abs(b))  # noqa: E731
        if all(close(g, _kid_variant(x, y)) for g, (_, x, y) in zip(got, cases)):
            if abs(_as_number(call_learner(fn, "Your my_kid", cases[0][2], cases[0][1]), "Your my_kid") - got[0]) \
                    > 1e-4 * max(1.0, abs(got[0])):
                raise Feedback("my_kid(x, y) and my_kid(y, x) differ; the distance is symmetric.")
            return
        for mistake, message in _KID_MISTAKES.items():  # named only if it explains every case
            if all(close(g, _kid_variant(x, y, mistake)) for g, (_, x, y) in zip(got, cases)):
                raise Feedback(message)
        k = next(k for k, (g, (_, x, y)) in enumerate(zip(got, cases)) if not close(g, _kid_variant(x, y)))
        name, x, y = cases[k]
        raise Feedback(f"With {name} your my_kid is {got[k]:.6g}, but the unbiased MMD^2 with the kernel "
                       f"(a.b / d + 1)^3 is {_kid_variant(x, y):.6g}: the mean of k over pairs i != j within x, "
                       "plus the same within y, minus twice the mean of k over all (x, y) pairs.")

    return report("Exercise 1 (the kernel distance, KID's estimator)", check)


# --- exercise 2: a bootstrap interval that resamples prompts ------------------------------------------

def _percentiles(values: list[float], low: float = 0.025, high: float = 0.975) -> tuple[float, float]:
    values = sorted(values)
    return values[int(low * (len(values) - 1))], values[int(high * (len(values) - 1))]


def _bootstrap_reference(rows, statistic, resamples: int = 4000, seed: str = "l09-reference", level: str = "prompts",
                         low: float = 0.025, high: float = 0.975) -> tuple[float, float]:
    """The percentile interval of `statistic` over resamples of whole rows (or, as a mistake, of single images)."""
    rng = random.Random(seed)
    if level == "images":
        images = [[v] for row in rows for v in row]
        draws = [statistic(rng.choices(images, k=len(images))) for _ in range(resamples)]
    else:
        draws = [statistic(rng.choices(rows, k=len(rows))) for _ in range(resamples)]
    return _percentiles(draws, low, high)


def _pooled_mean(rows) -> float:
    values = [v for row in rows for v in row]
    return sum(values) / len(values)


def _mean_of_means(rows) -> float:
    return sum(sum(row) / len(row) for row in rows) / len(rows)


def _pooled_median(rows) -> float:
    return statistics.median(v for row in rows for v in row)


def _bootstrap_cases() -> list[tuple[str, list[list[float]], Callable, float]]:
    """(description, rows, statistic, the statistic's smallest step): clustered rows, where prompts matter."""
    rng = random.Random("l09-bootstrap-cases")
    same = [[1.0] * 16 for _ in range(8)] + [[0.0] * 16 for _ in range(12)]  # every image of a prompt agrees
    rng.shuffle(same)
    mixed = []
    for _ in range(30):
        p = rng.choice([0.1, 0.5, 0.9])  # some prompts are easy, some hard
        mixed.append([float(rng.random() < p) for _ in range(rng.randint(3, 9))])
    real = [[mu + rng.gauss(0, 0.2) for _ in range(6)] for mu in (rng.gauss(0, 1) for _ in range(24))]
    return [("20 prompts whose 16 images all agree (0 or 1), the statistic the share of 1s over all images",
             same, _pooled_mean, 1 / 20),
            ("30 prompts of 3 to 9 images, the statistic the mean of the prompts' own rates", mixed, _mean_of_means, 0.0),
            ("24 prompts of 6 real numbers, the statistic the median of all values", real, _pooled_median, 0.0)]


@functools.lru_cache(maxsize=None)
def _reference(case: int, level: str = "prompts", low: float = 0.025, high: float = 0.975,
               statistic: str | None = None) -> tuple[float, float]:
    """The reference interval of one case (cached: the cases never change)."""
    _, rows, stat, _ = _bootstrap_cases()[case]
    return _bootstrap_reference(rows, _pooled_mean if statistic == "pooled mean" else stat, level=level,
                                low=low, high=high)


def check_prompt_bootstrap(fn: Callable[..., tuple[float, float]]) -> bool:
    """Exercise 2: `fn(rows, statistic, resamples, seed)` is the 95 % percentile interval over resampled prompts."""

    def check() -> None:
        cases = _bootstrap_cases()
        got = []
        for name, rows, statistic, _ in cases:
            copy = [list(row) for row in rows]
            value = call_learner(fn, f"Your prompt_bootstrap (with {name})", copy, statistic, 2000, 0,
                                 hint=" Hint: rng = random.Random(seed); rng.choices(rows, k=len(rows)) draws one "
                                      "resample of whole prompts.")
            if copy != rows:
                raise Feedback("Your function changed `rows` in place (e.g. sorted or shuffled them); draw new lists "
                               "instead.")
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise Feedback(f"Return the interval as a pair (low, high), not {type(value).__name__}"
                               f"{'' if not isinstance(value, (tuple, list)) else f' of {len(value)} items'}.")
            low, high = (_as_number(v, "Your prompt_bootstrap") for v in value)
            if low > high:
                raise Feedback(f"Your interval is ({low:.3f}, {high:.3f}): return the low end first.")
            again = call_learner(fn, "Your prompt_bootstrap", copy, statistic, 2000, 0)
            if [_as_number(v, "Your prompt_bootstrap") for v in again] != [low, high]:
                raise Feedback("Two calls with the same seed gave different intervals: draw every resample from "
                               "one generator made from the seed (random.Random(seed)), not from the global one.")
            got.append((low, high))

        def near(interval, want, step) -> bool:
            tolerance = 0.08 * (want[1] - want[0]) + step + 1e-9  # a different random stream moves the ends a little
            return abs(interval[0] - want[0]) <= tolerance and abs(interval[1] - want[1]) <= tolerance

        want = [_reference(k) for k in range(len(cases))]
        if all(near(g, w, step) for g, w, (_, _, _, step) in zip(got, want, cases)):
            return
        if all(g[1] - g[0] <= 1e-9 * max(1.0, abs(g[0])) for g in got):
            raise Feedback("Your interval has zero width: every resample gave the same value. Draw each resample "
                           "with replacement (rng.choices, not rng.sample or a shuffle, which only reorder the "
                           "prompts), and make the generator once, before the loop.")
        if all(near(g, _reference(k, level="images"), case[3]) for k, (g, case) in enumerate(zip(got, cases))):
            raise Feedback("You resampled single images. The images of one prompt are not independent (same caption, "
                           "often the same result), so the interval comes out too narrow: resample whole prompts "
                           "(rows) with replacement and keep each prompt's images together.")
        if all(near(g, _reference(k, low=0.05, high=0.95), case[3]) for k, (g, case) in enumerate(zip(got, cases))):
            raise Feedback("That is a 90 % interval (5th and 95th percentiles); a 95 % interval takes the 2.5th and "
                           "97.5th.")
        if near(got[0], want[0], cases[0][3]) and not near(got[2], want[2], 0.0) and \
                near(got[2], _reference(2, statistic="pooled mean"), 0.0):
            raise Feedback("Your interval ignores `statistic`: call statistic(resample) on each resample (the "
                           "statistic of the third case is a median, not a mean).")
        k = next(k for k, (g, w, case) in enumerate(zip(got, want, cases)) if not near(g, w, case[3]))
        raise Feedback(f"With {cases[k][0]} your interval is ({got[k][0]:.3f}, {got[k][1]:.3f}), but resampling "
                       f"whole prompts gives about ({want[k][0]:.3f}, {want[k][1]:.3f}). Each resample: len(rows) "
                       "rows drawn with replacement; compute statistic(resample) on it; the interval: the 2.5th and "
                       "97.5th percentiles of those values.")

    return report("Exercise 2 (a bootstrap interval over prompts)", check)


# --- exercise 3: the remedy for an unsaid position ----------------------------------------------------

_UNSAID = ["a red circle", "there is a big blue square", "a green cross, nothing else on a dark background",
           "a small yellow diamond", "there is an orange triangle on a light background", "a huge purple disk"]
_STATED = ["a red circle at the top left", "bottom: a small yellow diamond",
           "in the center, a cyan square on a black background"]
_TWO = ["a red circle above a blue square", "there is a small green cross to the left of a large orange triangle"]
_TARGET = {"top left": 0.5, "center": 0.3, "bottom right": 0.2}


def _position_of(caption: str) -> str | None:
    claim = parse_caption(caption)
    obj = claim.objects[0]
    return None if obj.row is None else POSITION_NAMES[(obj.row, obj.col)]


def _without_position(caption: str):
    claim = parse_caption(caption)
    obj = claim.objects[0]
    return [(o.shape, o.color, o.size) for o in claim.objects], claim.background, claim.relation, obj


def _tv(p: dict, q: dict) -> float:
    return sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q)) / 2


def check_sample_unsaid_position(fn: Callable[[list[str], dict, int], list[str]]) -> bool:
    """Exercise 3: `fn(captions, target, seed)` states a position drawn from `target` in every one-object caption
    that leaves it unsaid, and leaves every other caption as it is."""

    def call(captions: list[str], target: dict, seed: int) -> list[str]:
        copy = list(captions)
        out = call_learner(fn, "Your sample_unsaid_position", copy, dict(target), seed,
                           hint=" Hint: shapes.parse_caption(caption) says what a caption states; a position "
                                "can be added as ' at the top left' at the end, or 'top left: ' in front.")
        if copy != list(captions):
            raise Feedback("Your function changed the list of captions in place; return a new list.")
        if not isinstance(out, (list, tuple)) or not all(isinstance(c, str) for c in out):
            raise Feedback(f"Return a list of captions (strings), not {type(out).__name__}.")
        if len(out) != len(captions):
            raise Feedback(f"You returned {len(out)} captions for {len(captions)}: return one caption for each.")
        return list(out)

    def check() -> None:
        from dalle_lessons.bias import sample_unsaid_color
        captions = _UNSAID + _STATED + _TWO
        out = call(captions, _TARGET, 0)
        if out == sample_unsaid_color(captions, _TARGET, seed=0):
            raise Feedback("That is bias.sample_unsaid_color: it puts the drawn word where a color goes "
                           "('a red top left circle'), which no caption of this world says and which states no "
                           "position. State the position as the world's captions do, e.g. '... at the top left', "
                           "and only where the caption leaves it unsaid.")
        for before, after in zip(_STATED + _TWO, out[len(_UNSAID):]):
            if after != before:
                what = "states its position already" if before in _STATED else \
                    "has two objects (placed by a relation, not by cells)"
                raise Feedback(f"{before!r} {what}: return it unchanged, but you returned {after!r}.")
        for before, after in zip(_UNSAID, out):
            try:
                position = _position_of(after)
            except ValueError as error:
                raise Feedback(f"{before!r} became {after!r}, which is no longer a caption of this world ({error}).")
            if position is None:
                raise Feedback(f"{before!r} became {after!r}, which still states no position (shapes.parse_caption "
                               "reads none). Use the world's phrasing: '... at the top left' or 'top left: ...'.")
            kept = _without_position(before)[:3]
            if _without_position(after)[:3] != kept:
                raise Feedback(f"{before!r} became {after!r}, which changes what the caption says besides the "
                               "position (shape, color, size or background). Only add a position.")
            if position not in _TARGET:
                raise Feedback(f"{before!r} became {after!r}: '{position}' has no weight in the target "
                               f"{_TARGET}. Draw from the target's cells with its weights, not from all nine cells.")
        many = _UNSAID * 500
        drawn = [_position_of(c) for c in call(many, _TARGET, 1)]
        shares = {k: v / len(drawn) for k, v in Counter(drawn).items()}
        if len(shares) == 1:
            only = next(iter(shares))
            others = {_position_of(c) for seed in (2, 3, 4) for c in call(_UNSAID, _TARGET, seed)}
            if others != {only}:
                raise Feedback(f"Every caption of one call got the same position ('{only}' with seed 1): you drew "
                               "one position for the whole list. Draw a new position for each caption.")
            if only == max(_TARGET, key=_TARGET.get):
                raise Feedback(f"Every caption got '{only}', the target's most likely position: that is the mode, "
                               "not a sample. Draw each caption's position at random with the target's weights "
                               "(e.g. rng.choices(positions, weights)[0]).")
            raise Feedback(f"Every caption got the same position, '{only}': draw a new position for each caption.")
        if _tv(shares, {k: 1 / 9 for k in POSITION_NAMES.values()}) < 0.05:
            raise Feedback("Your positions spread evenly over all nine cells: draw them from `target` (its keys, "
                           "with its weights) instead.")
        if _tv(shares, {k: 1 / len(_TARGET) for k in _TARGET}) < 0.05:
            raise Feedback(f"Your positions spread evenly over the target's cells, ignoring its weights {_TARGET}: "
                           "pass the weights to the draw (rng.choices(positions, weights=...)).")
        if _tv(shares, _TARGET) > 0.05:
            raise Feedback(f"Over {len(drawn)} captions your positions came out {({k: round(v, 3) for k, v in sorted(shares.items())})}, "
                           f"but the target is {_TARGET}: draw each position with the target's weights.")
        if call(_UNSAID * 4, _TARGET, 2) != call(_UNSAID * 4, _TARGET, 2):
            raise Feedback("Two calls with the same seed gave different captions: make a generator from the seed "
                           "(random.Random(seed)) and draw from it, not from the global random module.")
        if call(_UNSAID * 4, _TARGET, 2) == call(_UNSAID * 4, _TARGET, 3):
            raise Feedback("Different seeds gave the same captions: draw the positions from a generator made from "
                           "`seed`.")

    return report("Exercise 3 (the remedy for an unsaid position)", check)
