"""Lesson 04's self-checks: right answers pass, wrong or unfinished ones fail with a useful message."""
import math

import pytest
import torch

from dalle_lessons.exercises.l04_dvae import check_code_usage, check_gumbel_softmax, check_logit_laplace
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: the Gumbel-softmax ----------------------------------------------------------------

def gumbel_softmax(logits, temperature, generator):
    u = torch.rand(logits.shape, generator=generator).clamp(min=1e-10)
    return ((logits - torch.log(-torch.log(u))) / temperature).softmax(dim=-1)


def gumbel_softmax_uniform_(logits, temperature, generator):
    """The same draw through Tensor.uniform_, scaled by 1 / temperature instead of divided."""
    u = torch.empty_like(logits).uniform_(generator=generator)
    g = -torch.log(-torch.log(u.clamp(min=1e-10)))
    return torch.softmax((logits + g) * (1 / temperature), dim=-1)


def gumbel_softmax_exponential(logits, temperature, generator):
    """A valid sample drawn another way (as PyTorch's F.gumbel_softmax does): g = -log(Exponential(1))."""
    g = -torch.empty_like(logits).exponential_(generator=generator).log()
    return ((logits + g) / temperature).softmax(-1)


@pytest.mark.parametrize("right", [gumbel_softmax, gumbel_softmax_uniform_])
def test_gumbel_right_answers(capsys, right):
    assert_passes(check_gumbel_softmax, right, capsys)


def test_gumbel_drawn_another_way_passes_on_its_statistics(capsys):
    assert check_gumbel_softmax(gumbel_softmax_exponential) is True
    out = capsys.readouterr().out
    assert "statistics are right" in out and "correct ✓" in out


def test_gumbel_not_attempted(capsys):
    assert_fails(check_gumbel_softmax, not_attempted, capsys, "not attempted")


def _uniform(logits, generator):
    return torch.rand(logits.shape, generator=generator).clamp(min=1e-10)


def _gumbel(logits, generator):
    return -torch.log(-torch.log(_uniform(logits, generator)))


@pytest.mark.parametrize("wrong, phrase", [
    (lambda logits, t, gen: (logits / t).softmax(-1), "has no noise"),
    (lambda logits, t, gen: (logits / t + _gumbel(logits, gen)).softmax(-1), "after dividing by the temperature"),
    (lambda logits, t, gen: ((logits + _gumbel(logits, gen)) * t).softmax(-1), "multiplied by the temperature"),
    (lambda logits, t, gen: ((logits - _gumbel(logits, gen)) / t).softmax(-1), "wrong sign"),
    (lambda logits, t, gen: ((logits - _uniform(logits, gen).log()) / t).softmax(-1), "exponential noise"),
    (lambda logits, t, gen: ((logits + _uniform(logits, gen)) / t).softmax(-1), "uniform draw U itself"),
    (lambda logits, t, gen: torch.nn.functional.one_hot(((logits + _gumbel(logits, gen)) / t).argmax(-1),
                                                        logits.shape[-1]).float(), "one-hot argmax"),
    (lambda logits, t, gen: ((logits + _gumbel(logits, gen)) / t).softmax(0), "along the last axis"),
    (lambda logits, t, gen: ((logits + _gumbel(logits, gen)) / t).log_softmax(-1), "along the last axis"),
    (lambda logits, t, gen: ((logits + _gumbel(logits, gen)) / t).exp(), "Take the softmax"),
    (lambda logits, t, gen: gumbel_softmax(logits, t, gen) + 0 * torch.log(torch.zeros(())), "NaN or inf"),
    (lambda logits, t, gen: gumbel_softmax(logits, t, torch.Generator().manual_seed(torch.seed() % 2**32)),
     "generators seeded alike gave different samples"),
    (lambda logits, t, gen: ((logits + torch.randn(logits.shape, generator=gen)) / t).softmax(-1),
     "The Gumbel-max trick needs Gumbel noise"),
    (lambda logits, t, gen: gumbel_softmax_exponential(logits, 1.0, gen), "nearly one-hot"),
    (lambda logits, t, gen: gumbel_softmax(logits, t, gen).sum(-1), "should keep the input's shape"),
    (lambda logits, t, gen: gumbel_softmax(logits, t, gen).tolist(), "should return a torch.Tensor"),
    (lambda logits, t, gen: torch.rand(logits.shape, gen), "raised TypeError"),
])
def test_gumbel_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_gumbel_softmax, wrong, capsys, phrase)


def test_gumbel_feedback_names_the_case(capsys):
    out = assert_fails(check_gumbel_softmax, lambda logits, t, gen: (logits / t).softmax(-1), capsys)
    assert "With logits [6, 10] at temperature 1:" in out


# --- exercise 2: the logit-Laplace likelihood ------------------------------------------------------

def logit_laplace(mu, log_b, target, eps=0.1):
    y = (1 - 2 * eps) * target + eps
    logit = torch.log(y / (1 - y))
    return (logit - mu).abs() / log_b.exp() + log_b + math.log(2) + torch.log(y) + torch.log(1 - y)


def logit_laplace_from_density(mu, log_b, target, eps=0.1):
    """-log of the density written out, in float64."""
    y = (1 - 2 * eps) * target.double() + eps
    b = log_b.double().exp()
    density = torch.exp(-(torch.logit(y) - mu.double()).abs() / b) / (2 * b * y * (1 - y))
    return -density.log()


@pytest.mark.parametrize("right", [logit_laplace, logit_laplace_from_density])
def test_logit_laplace_right_answers(capsys, right):
    assert_passes(check_logit_laplace, right, capsys)


def test_logit_laplace_not_attempted(capsys):
    assert_fails(check_logit_laplace, not_attempted, capsys, "not attempted")


def _nll(mu, log_b, y, scale=None, jacobian=1, log2=True, use_log_b=True):
    distance = (torch.log(y) - torch.log1p(-y) - mu).abs()
    scaled = distance * torch.exp(-log_b) if scale is None else scale(distance, log_b)
    return scaled + use_log_b * log_b + log2 * math.log(2) + jacobian * torch.log(y * (1 - y))


def _mapped(target, eps=0.1):
    return (1 - 2 * eps) * target + eps


@pytest.mark.parametrize("wrong, phrase", [
    (lambda mu, log_b, x, eps=0.1: -logit_laplace(mu, log_b, x, eps), "flip the sign"),
    (lambda mu, log_b, x, eps=0.1: _nll(mu, log_b, _mapped(x, eps), jacobian=0), "log(y (1 - y)) is missing"),
    (lambda mu, log_b, x, eps=0.1: _nll(mu, log_b, _mapped(x, eps), jacobian=-1), "wrong sign"),
    (lambda mu, log_b, x, eps=0.1: _nll(mu, log_b, _mapped(x, eps), scale=lambda d, lb: d / lb), "divided by log_b"),
    (lambda mu, log_b, x, eps=0.1: _nll(mu, log_b, _mapped(x, eps), scale=lambda d, lb: d**2 * torch.exp(-lb)),
     "a Gaussian in logit space"),
    (lambda mu, log_b, x, eps=0.1: _nll(mu, log_b, _mapped(x, eps), use_log_b=False), "the + log_b term is missing"),
    (lambda mu, log_b, x, eps=0.1: _nll(mu, log_b, _mapped(x, eps), log2=False), "the + log 2 term is missing"),
    (lambda mu, log_b, x, eps=0.1: _nll(mu, log_b, (1 - eps) * x + eps), "white pixels (1) only"),
    (lambda mu, log_b, x, eps=0.1: logit_laplace(mu, log_b, x, 0.1), "whatever the eps argument"),
    (lambda mu, log_b, x, eps=0.1: _nll(mu, log_b, x), "Map the pixels first"),
    (lambda mu, log_b, x, eps=0.1: logit_laplace(mu, log_b, x, eps).mean(), "returned one number"),
    (lambda mu, log_b, x, eps=0.1: logit_laplace(mu, log_b, x, eps).sum(1), "should keep the input's shape"),
    (lambda mu, log_b, x, eps=0.1: logit_laplace(mu, log_b, x, eps) + 0.01, "differs from the library's by up to"),
    (lambda mu, log_b, x: logit_laplace(mu, log_b, x), "raised TypeError"),
])
def test_logit_laplace_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_logit_laplace, wrong, capsys, phrase)


# --- exercise 3: codebook usage and perplexity -----------------------------------------------------

def code_usage(ids, codebook_size):
    counts = torch.bincount(ids.flatten(), minlength=codebook_size).float()
    p = counts[counts > 0] / counts.sum()
    return int((counts > 0).sum()), math.exp(-(p * p.log()).sum().item())


def code_usage_python(ids, codebook_size):
    from collections import Counter
    counts = Counter(ids.flatten().tolist())
    n = sum(counts.values())
    return len(counts), 2 ** -sum(c / n * math.log2(c / n) for c in counts.values())


def code_usage_tensors(ids, codebook_size):
    counts = torch.bincount(ids.flatten(), minlength=codebook_size)
    p = counts / counts.sum()
    return (counts > 0).sum(), torch.exp(-torch.xlogy(p, p).sum())


@pytest.mark.parametrize("right", [code_usage, code_usage_python, code_usage_tensors])
def test_code_usage_right_answers(capsys, right):
    assert_passes(check_code_usage, right, capsys)


def test_code_usage_not_attempted(capsys):
    assert_fails(check_code_usage, not_attempted, capsys, "not attempted")


def _entropy(ids, K):
    counts = torch.bincount(ids.flatten(), minlength=K).double()
    p = counts[counts > 0] / counts.sum()
    return -(p * p.log()).sum().item()


@pytest.mark.parametrize("wrong, phrase", [
    (lambda ids, K: (code_usage(ids, K)[0], _entropy(ids, K)), "is the entropy itself"),
    (lambda ids, K: (code_usage(ids, K)[0], math.exp(_entropy(ids, K) / math.log(2))), "in bits"),
    (lambda ids, K: (code_usage(ids, K)[0], math.exp(-_entropy(ids, K))), "sign is flipped"),
    (lambda ids, K: (code_usage(ids, K)[0], float(code_usage(ids, K)[0])), "the number of codes used"),
    (lambda ids, K: (K, code_usage(ids, K)[1]), "counted every code of the codebook"),
    (lambda ids, K: (ids.numel(), code_usage(ids, K)[1]), "counted tokens"),
    (lambda ids, K: (code_usage(ids, K)[0], math.nan), "0 * log(0)"),
    (lambda ids, K: (code_usage(ids, K)[0] + 1, code_usage(ids, K)[1]), "codes used; you returned"),
    (lambda ids, K: (code_usage(ids, K)[0], code_usage(ids, K)[1] + 0.5), "the perplexity is"),
    (lambda ids, K: code_usage(ids, K)[1], "should return a pair"),
    (lambda ids, K: ("many", "high"), "should return two numbers"),
    (lambda ids, K: torch.bincount(ids.flatten()), "should return a pair"),
    (lambda ids, K: ids.unique(K), "raised TypeError"),
    (lambda ids, K: (torch.bincount(ids).numel(), 1.0),
     "raised RuntimeError: bincount only supports 1-d non-negative integral inputs. Hint: ids is a [B, g, g] grid"),
])
def test_code_usage_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_code_usage, wrong, capsys, phrase)


def test_code_usage_nan_from_zero_counts(capsys):
    def with_nan(ids, K):
        counts = torch.bincount(ids.flatten(), minlength=K).double()
        p = counts / counts.sum()
        return int((counts > 0).sum()), math.exp(-(p * p.log()).sum().item())

    assert_fails(check_code_usage, with_nan, capsys, "0 * log(0)")
