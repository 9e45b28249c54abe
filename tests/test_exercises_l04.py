"""Lesson 04's self-checks: right answers pass, wrong answers and shortcuts fail with a useful message."""
import itertools
import math

import pytest
import torch

from dalle_lessons.dvae import code_usage, gumbel_softmax, logit_laplace_nll
from dalle_lessons.exercises.l04_dvae import check_perplexity_by_cell, check_pixel_nll, check_sample_codes
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: sampling codes at a temperature --------------------------------------------------

_FRESH_SEEDS = itertools.count(1000)  # a sampler that ignores its generator: a new seed every call


def _gumbel(shape, generator):
    return -torch.log(-torch.log(torch.rand(shape, generator=generator).clamp(min=1e-10)))


def sample_codes(logits, temperature, generator):
    return (logits / temperature + _gumbel(logits.shape, generator)).argmax(-1)


def sample_codes_multinomial(logits, temperature, generator):
    """Drawn another way (torch.multinomial): passes on reproducibility and statistics."""
    probs = (logits / temperature).softmax(-1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])


@pytest.mark.parametrize("right", [sample_codes, sample_codes_multinomial])
def test_sample_codes_right_answers(capsys, right):
    assert_passes(check_sample_codes, right, capsys)


def test_sample_codes_not_attempted(capsys):
    assert_fails(check_sample_codes, not_attempted, capsys, "not attempted")


@pytest.mark.parametrize("wrong, phrase", [
    (lambda l, t, g: (l * t + _gumbel(l.shape, g)).argmax(-1), "multiplied the logits by the temperature"),
    (lambda l, t, g: l.argmax(-1), "that is what encode does"),
    (lambda l, t, g: (l / t - _gumbel(l.shape, g)).argmax(-1), "wrong sign"),
    (lambda l, t, g: (l / t - torch.log(torch.rand(l.shape, generator=g).clamp(min=1e-10))).argmax(-1),
     "exponential noise"),
    (lambda l, t, g: torch.nn.functional.one_hot(sample_codes(l, t, g), l.shape[-1]), "one vector per cell"),
    (lambda l, t, g: sample_codes(l, t, g).float(), "code ids are integers"),
    (lambda l, t, g: sample_codes(l, t, g)[..., None], "one code id per cell"),
    (lambda l, t, g: sample_codes(l, t, torch.Generator().manual_seed(next(_FRESH_SEEDS))),
     "generators seeded alike gave different codes"),
    (lambda l, t, g: torch.multinomial(l.softmax(-1).reshape(-1, l.shape[-1]), 1, generator=g).reshape(l.shape[:-1]),
     "softmax(logits / τ) gives it"),
])
def test_sample_codes_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_sample_codes, wrong, capsys, phrase)


@pytest.mark.parametrize("shortcut", [
    lambda l, t, g: gumbel_softmax(l, t, hard=True, generator=g).argmax(-1),  # the library's relaxed sample
    lambda l, t, g: ((l + _gumbel(l.shape, g)) / t).softmax(-1).argmax(-1),  # section 3's my_gumbel_softmax
])
def test_sample_codes_rejects_the_gumbel_softmax(capsys, shortcut):
    assert_fails(check_sample_codes, shortcut, capsys, "divided the noisy logits by the temperature")


# --- exercise 2: the likelihood of the pixel ------------------------------------------------------

def pixel_nll(mu, log_b, target, eps=0.1):
    y = (1 - 2 * eps) * target + eps
    logit = torch.log(y / (1 - y))
    nll_y = (logit - mu).abs() / log_b.exp() + log_b + math.log(2) + torch.log(y) + torch.log(1 - y)
    return nll_y - math.log(1 - 2 * eps)


def pixel_nll_from_density(mu, log_b, target, eps=0.1):
    """-log of p(x) = p(y) |dy/dx| written out, in float64."""
    y = (1 - 2 * eps) * target.double() + eps
    b = log_b.double().exp()
    density_y = torch.exp(-(torch.logit(y) - mu.double()).abs() / b) / (2 * b * y * (1 - y))
    return -(density_y * (1 - 2 * eps)).log()


def pixel_nll_from_library(mu, log_b, target, eps=0.1):
    return logit_laplace_nll(mu, log_b, target, eps) - math.log(1 - 2 * eps)


@pytest.mark.parametrize("right", [pixel_nll, pixel_nll_from_density, pixel_nll_from_library])
def test_pixel_nll_right_answers(capsys, right):
    assert_passes(check_pixel_nll, right, capsys)


def test_pixel_nll_not_attempted(capsys):
    assert_fails(check_pixel_nll, not_attempted, capsys, "not attempted")


def _nll(mu, log_b, y, eps=0.1, scale=None, jacobian=1, log2=True, use_log_b=True, map_term=-1):
    distance = (torch.log(y) - torch.log1p(-y) - mu).abs()
    scaled = distance * torch.exp(-log_b) if scale is None else scale(distance, log_b)
    return (scaled + use_log_b * log_b + log2 * math.log(2) + jacobian * torch.log(y * (1 - y))
            + map_term * math.log(1 - 2 * eps))


def _mapped(target, eps=0.1):
    return (1 - 2 * eps) * target + eps


@pytest.mark.parametrize("wrong, phrase", [
    (lambda mu, lb, x, eps=0.1: _nll(mu, lb, _mapped(x, eps), eps, map_term=1), "the map's term has the wrong sign"),
    (lambda mu, lb, x, eps=0.1: -pixel_nll(mu, lb, x, eps), "flip the sign"),
    (lambda mu, lb, x, eps=0.1: _nll(mu, lb, _mapped(x, eps), eps, jacobian=0), "log(y (1 - y)) is missing"),
    (lambda mu, lb, x, eps=0.1: _nll(mu, lb, _mapped(x, eps), eps, jacobian=-1), "log(y (1 - y)) has the wrong sign"),
    (lambda mu, lb, x, eps=0.1: _nll(mu, lb, _mapped(x, eps), eps, scale=lambda d, b: d / b), "divided by log_b"),
    (lambda mu, lb, x, eps=0.1: _nll(mu, lb, _mapped(x, eps), eps, scale=lambda d, b: d**2 * torch.exp(-b)),
     "a Gaussian in logit space"),
    (lambda mu, lb, x, eps=0.1: _nll(mu, lb, _mapped(x, eps), eps, use_log_b=False), "the + log_b term is missing"),
    (lambda mu, lb, x, eps=0.1: _nll(mu, lb, _mapped(x, eps), eps, log2=False), "the + log 2 term is missing"),
    (lambda mu, lb, x, eps=0.1: _nll(mu, lb, (1 - eps) * x + eps, eps), "white pixels (1) only"),
    (lambda mu, lb, x, eps=0.1: pixel_nll(mu, lb, x, 0.1), "whatever the eps argument"),
    (lambda mu, lb, x, eps=0.1: _nll(mu, lb, x, eps), "Map the pixels first"),
    (lambda mu, lb, x, eps=0.1: pixel_nll(mu, lb, x, eps).mean(), "returned one number"),
    (lambda mu, lb, x, eps=0.1: pixel_nll(mu, lb, x, eps).sum(1), "should keep the input's shape"),
    (lambda mu, lb, x, eps=0.1: pixel_nll(mu, lb, x, eps) + 0.01, "differs from the expected one by up to"),
    (lambda mu, lb, x: pixel_nll(mu, lb, x), "raised TypeError"),
])
def test_pixel_nll_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_pixel_nll, wrong, capsys, phrase)


def test_pixel_nll_rejects_the_librarys_nll_of_y(capsys):
    assert_fails(check_pixel_nll, logit_laplace_nll, capsys, "that is the NLL of y, the mapped value")


# --- exercise 3: perplexity at each cell ----------------------------------------------------------

def perplexity_by_cell(ids, codebook_size):
    B, rows, cols = ids.shape
    out = torch.empty(rows, cols)
    for r in range(rows):
        for c in range(cols):
            p = torch.bincount(ids[:, r, c], minlength=codebook_size).double() / B
            p = p[p > 0]
            out[r, c] = torch.exp(-(p * p.log()).sum())
    return out


def perplexity_by_cell_one_hot(ids, codebook_size):
    p = torch.nn.functional.one_hot(ids, codebook_size).double().mean(0)  # [rows, cols, K]
    return torch.exp(-torch.special.xlogy(p, p).sum(-1))


@pytest.mark.parametrize("right", [perplexity_by_cell, perplexity_by_cell_one_hot])
def test_perplexity_by_cell_right_answers(capsys, right):
    assert_passes(check_perplexity_by_cell, right, capsys)


def test_perplexity_by_cell_not_attempted(capsys):
    assert_fails(check_perplexity_by_cell, not_attempted, capsys, "not attempted")


def _distinct(ids, K):
    return torch.tensor([[float(len(torch.unique(ids[:, r, c]))) for c in range(ids.shape[2])]
                         for r in range(ids.shape[1])])


@pytest.mark.parametrize("wrong, phrase", [
    (lambda ids, K: perplexity_by_cell(ids, K).log(), "your values are the entropies"),
    (_distinct, "counted the distinct codes"),
    (lambda ids, K: 1 / perplexity_by_cell(ids, K), "sign is flipped"),
    (lambda ids, K: torch.full(ids.shape[1:], code_usage(ids, K)[1]), "the whole batch's perplexity"),
    (lambda ids, K: perplexity_by_cell(ids, K).T, "transposed"),
    (lambda ids, K: perplexity_by_cell(ids, K)[None], "one value per cell"),
    (lambda ids, K: torch.exp(-(lambda p: (p * p.log()).sum(-1))(
        torch.nn.functional.one_hot(ids, K).double().mean(0))), "NaN"),
    (lambda ids, K: perplexity_by_cell(ids, K) + 0.5, "should have perplexity"),
])
def test_perplexity_by_cell_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_perplexity_by_cell, wrong, capsys, phrase)


def test_perplexity_by_cell_rejects_code_usage(capsys):
    assert_fails(check_perplexity_by_cell, code_usage, capsys, "like code_usage's (used, perplexity) pair")
    assert_fails(check_perplexity_by_cell, lambda ids, K: torch.tensor(code_usage(ids, K)[1]), capsys,
                 "the perplexity of the whole batch")
