"""Lesson 09's self-checks: right answers pass, wrong or unfinished ones fail with a useful message, and
neither the library's functions nor the ones the lesson shows pass them."""
import random
import statistics

import numpy as np
import pytest
import torch

from dalle_lessons import bias, metrics
from dalle_lessons.exercises.l09_limitations import check_kid, check_prompt_bootstrap, check_sample_unsaid_position
from dalle_lessons.shapes import Skew, parse_caption
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: KID's estimator ----------------------------------------------------------------------

def kid(x, y):
    x, y = x.double(), y.double()
    d, n, m = x.shape[1], len(x), len(y)
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    return float((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
                 - 2 * kxy.mean())


def kid_float32_tensor(x, y):
    """In float32, returning a 0-d tensor."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy = k(x, x), k(y, y)
    eye_x, eye_y = torch.eye(len(x), dtype=torch.bool), torch.eye(len(y), dtype=torch.bool)
    return kxx[~eye_x].mean() + kyy[~eye_y].mean() - 2 * k(x, y).mean()


def kid_loops(x, y):
    d = x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1) ** 3  # noqa: E731
    xs, ys = x.double(), y.double()
    within_x = sum(k(xs[i], xs[j]) for i in range(len(xs)) for j in range(len(xs)) if i != j) / (len(xs) * (len(xs) - 1))
    within_y = sum(k(ys[i], ys[j]) for i in range(len(ys)) for j in range(len(ys)) if i != j) / (len(ys) * (len(ys) - 1))
    across = sum(k(a, b) for a in xs for b in ys) / (len(xs) * len(ys))
    return within_x + within_y - 2 * across


@pytest.mark.parametrize("right", [kid, kid_float32_tensor, kid_loops])
def test_kid_right_answers(capsys, right):
    assert_passes(check_kid, right, capsys)


def test_kid_not_attempted(capsys):
    assert_fails(check_kid, not_attempted, capsys, "not attempted")


def my_frechet(features_a, features_b):
    """The lesson's from-scratch Fréchet distance (section 1), which the check must not accept."""
    def stats(f):
        x = f.double()
        mu = x.mean(0)
        c = x - mu
        return mu, c.T @ c / (len(x) - 1)

    def sqrt_psd(matrix):
        values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
        return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T

    (mu1, s1), (mu2, s2) = stats(features_a), stats(features_b)
    root1 = sqrt_psd(s1)
    return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * sqrt_psd(root1 @ s2 @ root1).trace())


@pytest.mark.parametrize("shortcut, phrase", [
    (metrics.feature_frechet, "Fréchet distance"),
    (my_frechet, "Fréchet distance"),
    (lambda x, y: 100 * metrics.feature_frechet(x, y), "Fréchet distance x100"),
])
def test_kid_rejects_the_library_and_the_lesson(capsys, shortcut, phrase):
    assert_fails(check_kid, shortcut, capsys, phrase)


def kernel(a, b, degree=3, scale=True, one=True):
    return (a.double() @ b.double().T / (a.shape[1] if scale else 1) + (1 if one else 0)) ** degree


def unbiased(x, y, **kw):
    n, m = len(x), len(y)
    kxx, kyy = kernel(x, x, **kw), kernel(y, y, **kw)
    return float((kxx.sum() - kxx.trace()) / (n * (n - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1))
                 - 2 * kernel(x, y, **kw).mean())


def biased(x, y):
    return float(kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean())


@pytest.mark.parametrize("wrong, phrase", [
    (biased, "biased estimate"),
    (lambda x, y: float(kernel(x, x).sum() / (len(x) * (len(x) - 1)) + kernel(y, y).sum() / (len(y) * (len(y) - 1))
                        - 2 * kernel(x, y).mean()), "still summed the diagonal"),
    (lambda x, y: kid(x, y) + float(kernel(x, y).mean()), "counts twice"),
    (lambda x, y: unbiased(x, y, scale=False), "divide the dot product by the feature dimension"),
    (lambda x, y: unbiased(x, y, degree=2), "cubic"),
    (lambda x, y: unbiased(x, y, one=False), "adds 1 before the cube"),
    (lambda x, y: unbiased(x, y, degree=1, scale=False, one=False), "plain dot product"),
    (lambda x, y: max(kid(x, y), 0) ** 0.5, "square root"),
    (lambda x, y: torch.tensor([kid(x, y), kid(y, x)]), "one number"),
    (lambda x, y: [kid(x, y)], "should return one number"),
    (lambda x, y: float("nan"), "NaN"),
    (lambda x, y: kid(x.mul_(2.0), y), "in place"),
    (lambda x, y: kid(x, y) * 1.5, "unbiased MMD^2"),
    (lambda x, y: x[: len(y)] @ y, "raised RuntimeError"),
])
def test_kid_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_kid, wrong, capsys, phrase)


def test_kid_sizes_swapped_is_named(capsys):
    def swapped(x, y):
        n, m = len(x), len(y)
        kxx, kyy = kernel(x, x), kernel(y, y)
        return float((kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (n * (n - 1))
                     - 2 * kernel(x, y).mean())
    assert_fails(check_kid, swapped, capsys, "other set's size")


# --- exercise 2: a bootstrap over prompts -------------------------------------------------------------

def bootstrap(rows, statistic, resamples=1000, seed=0):
    rng = random.Random(seed)
    values = sorted(statistic(rng.choices(rows, k=len(rows))) for _ in range(resamples))
    return values[int(0.025 * (resamples - 1))], values[int(0.975 * (resamples - 1))]


def bootstrap_numpy(rows, statistic, resamples=1000, seed=0):
    """Another generator and another percentile convention: still right."""
    rng = np.random.default_rng(seed)
    values = [statistic([rows[i] for i in rng.integers(0, len(rows), len(rows))]) for _ in range(resamples)]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_statistics(rows, statistic, resamples=1000, seed=0):
    rng = random.Random(seed)
    values = [statistic([rng.choice(rows) for _ in rows]) for _ in range(resamples)]
    cuts = statistics.quantiles(values, n=40)
    return cuts[0], cuts[-1]


@pytest.mark.parametrize("right", [bootstrap, bootstrap_numpy, bootstrap_statistics])
def test_bootstrap_right_answers(capsys, right):
    assert_passes(check_prompt_bootstrap, right, capsys)


def test_bootstrap_not_attempted(capsys):
    assert_fails(check_prompt_bootstrap, lambda *args: not_attempted(), capsys, "not attempted")


def library_bootstrap(rows, statistic, resamples=1000, seed=0):
    """bias.bootstrap (the bias table's intervals), fed the rows as one shape's drawn colors."""
    groups = {"triangle": [["red" if v > 0.5 else "blue" for v in row] for row in rows]}
    pairs = [("triangle", "red"), ("triangle", "blue")]
    return tuple(bias.bootstrap(groups, [], Skew(), pairs, resamples, seed)["generated_rate"])


def test_bootstrap_rejects_the_library(capsys):
    assert_fails(check_prompt_bootstrap, library_bootstrap, capsys, "statistic")


def images_resampled(rows, statistic, resamples=1000, seed=0):
    rng = random.Random(seed)
    images = [[v] for row in rows for v in row]
    values = sorted(statistic(rng.choices(images, k=len(images))) for _ in range(resamples))
    return values[int(0.025 * (resamples - 1))], values[int(0.975 * (resamples - 1))]


def without_replacement(rows, statistic, resamples=1000, seed=0):
    rng = random.Random(seed)
    values = sorted(statistic(rng.sample(rows, len(rows))) for _ in range(resamples))
    return values[int(0.025 * (resamples - 1))], values[int(0.975 * (resamples - 1))]


def ninety(rows, statistic, resamples=1000, seed=0):
    rng = random.Random(seed)
    values = sorted(statistic(rng.choices(rows, k=len(rows))) for _ in range(resamples))
    return values[int(0.05 * (resamples - 1))], values[int(0.95 * (resamples - 1))]


def pooled_mean_always(rows, statistic, resamples=1000, seed=0):
    pooled = lambda rs: sum(v for r in rs for v in r) / sum(len(r) for r in rs)  # noqa: E731
    return bootstrap(rows, pooled, resamples, seed)


def global_random(rows, statistic, resamples=1000, seed=0):
    values = sorted(statistic(random.choices(rows, k=len(rows))) for _ in range(resamples))
    return values[int(0.025 * (resamples - 1))], values[int(0.975 * (resamples - 1))]


def sorts_rows(rows, statistic, resamples=1000, seed=0):
    rows.sort()
    return bootstrap(rows, statistic, resamples, seed)


@pytest.mark.parametrize("wrong, phrase", [
    (images_resampled, "resampled single images"),
    (without_replacement, "zero width"),
    (ninety, "90 %"),
    (pooled_mean_always, "ignores `statistic`"),
    (global_random, "same seed gave different intervals"),
    (sorts_rows, "in place"),
    (lambda rows, statistic, resamples=1000, seed=0: bootstrap(rows, statistic, resamples, seed)[::-1], "low end first"),
    (lambda rows, statistic, resamples=1000, seed=0: list(bootstrap(rows, statistic, resamples, seed)) + [0.0],
     "of 3 items"),
    (lambda rows, statistic, resamples=1000, seed=0: statistic(rows), "pair (low, high)"),
    (lambda rows, statistic, resamples=1000, seed=0: (statistic(rows) - 0.3, statistic(rows) + 0.3),
     "resampling whole prompts gives about"),
    (lambda rows, statistic, resamples=1000, seed=0: rows[100], "raised IndexError"),
])
def test_bootstrap_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_prompt_bootstrap, wrong, capsys, phrase)


# --- exercise 3: the remedy for an unsaid position ----------------------------------------------------

def sample_position(captions, target, seed=0):
    rng = random.Random(seed)
    cells, weights = list(target), list(target.values())
    out = []
    for caption in captions:
        claim = parse_caption(caption)
        if len(claim.objects) == 1 and claim.objects[0].row is None:
            caption = f"{caption} at the {rng.choices(cells, weights)[0]}"
        out.append(caption)
    return out


def sample_position_prefix(captions, target, seed=0):
    """The place in front, in the world's 'top left: a red circle' form, drawn with numpy."""
    rng = np.random.default_rng(seed)
    cells = list(target)
    p = np.array(list(target.values()), dtype=float)
    out = []
    for caption in captions:
        claim = parse_caption(caption)
        if len(claim.objects) == 1 and claim.objects[0].row is None:
            caption = f"{cells[rng.choice(len(cells), p=p / p.sum())]}: {caption}"
        out.append(caption)
    return out


@pytest.mark.parametrize("right", [sample_position, sample_position_prefix])
def test_position_right_answers(capsys, right):
    assert_passes(check_sample_unsaid_position, right, capsys)


def test_position_not_attempted(capsys):
    assert_fails(check_sample_unsaid_position, lambda *args: not_attempted(), capsys, "not attempted")


def test_position_rejects_the_library_color_remedy(capsys):
    assert_fails(check_sample_unsaid_position, lambda c, t, s=0: bias.sample_unsaid_color(c, t, seed=s), capsys,
                 "bias.sample_unsaid_color")


def every_caption(captions, target, seed=0):
    rng = random.Random(seed)
    return [f"{c} at the {rng.choices(list(target), list(target.values()))[0]}" for c in captions]


def mode(captions, target, seed=0):
    best = max(target, key=target.get)
    return [c if (len(parse_caption(c).objects) != 1 or parse_caption(c).objects[0].row is not None)
            else f"{c} at the {best}" for c in captions]


def one_draw(captions, target, seed=0):
    cell = random.Random(seed).choices(list(target), list(target.values()))[0]
    return [c if (len(parse_caption(c).objects) != 1 or parse_caption(c).objects[0].row is not None)
            else f"{c} at the {cell}" for c in captions]


def even_over_nine(captions, target, seed=0):
    from dalle_lessons.shapes import POSITION_NAMES
    return sample_position(captions, {cell: 1.0 for cell in POSITION_NAMES.values()}, seed)


def even_over_target(captions, target, seed=0):
    return sample_position(captions, {cell: 1.0 for cell in target}, seed)


def global_rng(captions, target, seed=0):
    out = []
    for caption in captions:
        claim = parse_caption(caption)
        if len(claim.objects) == 1 and claim.objects[0].row is None:
            caption = f"{caption} at the {random.choices(list(target), list(target.values()))[0]}"
        out.append(caption)
    return out


def ignores_seed(captions, target, seed=0):
    return sample_position(captions, target, 0)


def changes_size(captions, target, seed=0):
    return [c.replace("big", "small") for c in sample_position(captions, target, seed)]


def unknown_words(captions, target, seed=0):
    return [o if o == c else o.replace(" at the ", " near the ")
            for c, o in zip(captions, sample_position(captions, target, seed))]


def sorts_in_place(captions, target, seed=0):
    out = sample_position(captions, target, seed)
    captions.reverse()
    return out


@pytest.mark.parametrize("wrong, phrase", [
    (every_caption, "states its position already"),
    (mode, "that is the mode"),
    (one_draw, "one position for the whole list"),
    (even_over_nine, "not from all nine cells"),
    (even_over_target, "ignoring its weights"),
    (global_rng, "same seed gave different captions"),
    (ignores_seed, "Different seeds gave the same captions"),
    (changes_size, "changes what the caption says"),
    (unknown_words, "still states no position"),
    (sorts_in_place, "in place"),
    (lambda captions, target, seed=0: captions, "still states no position"),
    (lambda captions, target, seed=0: sample_position(captions, target, seed)[:-1], "for 11"),
    (lambda captions, target, seed=0: " | ".join(captions), "Return a list of captions"),
    (lambda captions, target, seed=0: target["middle"], "raised KeyError"),
])
def test_position_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_sample_unsaid_position, wrong, capsys, phrase)
