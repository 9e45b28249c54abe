"""Lesson 12's self-checks: right answers pass, wrong or unfinished ones fail with a useful message, and
neither the library's functions nor the ones the lesson shows pass them."""
import dataclasses
import math

import pytest
import torch

from dalle_lessons import scale
from dalle_lessons.exercises.l12_scaling import check_checkpoint_every, check_loss_scale, check_max_layers
from exercise_helpers import assert_fails, not_attempted

FP16 = torch.finfo(torch.float16)


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: the smallest loss scale ---------------------------------------------------------------

def doubling(grads):
    magnitudes = grads[grads != 0].abs().double()
    small, large = magnitudes.min().item(), magnitudes.max().item()
    S = 1.0
    while small * S < FP16.tiny:
        S *= 2
    return S if large * S <= FP16.max else None


def closed_form(grads):
    """The exponent from a logarithm, corrected for its rounding, as an int power of two."""
    magnitudes = grads.abs()[grads != 0].double()
    small, large = magnitudes.min().item(), magnitudes.max().item()
    k = math.ceil(math.log2(FP16.tiny / small))
    while small * 2.0**k < FP16.tiny:
        k += 1
    while small * 2.0 ** (k - 1) >= FP16.tiny:
        k -= 1
    k = max(k, 0)
    return 2**k if large * 2**k <= FP16.max else None


def as_tensor(grads):
    scale_ = doubling(grads)
    return None if scale_ is None else torch.tensor(scale_)


@pytest.mark.parametrize("right", [doubling, closed_form, as_tensor])
def test_loss_scale_right_answers(capsys, right):
    assert_passes(check_loss_scale, right, capsys)


def test_loss_scale_not_attempted(capsys):
    assert_fails(check_loss_scale, not_attempted, capsys, "not attempted")


def test_loss_scale_rejects_the_scaler_and_the_lesson(capsys):
    """What the package and the lesson use, GradScaler and its starting 2**16, is not the answer."""
    assert_fails(check_loss_scale, lambda grads: torch.amp.GradScaler("cpu").get_scale(), capsys,
                 "GradScaler's starting scale")
    assert_fails(check_loss_scale, lambda grads: 2.0**16, capsys, "GradScaler's starting scale")


def floor_at(floor, grads, ceiling=FP16.max, strict=False, k_min=0):
    magnitudes = grads[grads != 0].abs().double()
    small, large = magnitudes.min().item(), magnitudes.max().item()
    k = k_min
    while small * 2.0**k < floor or (strict and small * 2.0**k == floor):
        k += 1
    while k > k_min and small * 2.0 ** (k - 1) >= floor and not (strict and small * 2.0 ** (k - 1) == floor):
        k -= 1
    return 2.0**k if large * 2.0**k <= ceiling else None


def largest_safe(grads):
    large = grads.abs().max().item()
    if large > FP16.max:
        return None
    S = 1.0
    while large * S * 2 <= FP16.max:
        S *= 2
    return S


def signed(grads):
    values = grads[grads != 0].double()
    return 2.0 ** math.ceil(math.log2(FP16.tiny / values.min().item()))


def with_zeros(grads):
    return 2.0 ** math.ceil(math.log2(FP16.tiny / grads.abs().min().item()))


def in_place(grads):
    grads.abs_()
    return doubling(grads)


@pytest.mark.parametrize("wrong, phrase", [
    (lambda g: floor_at(FP16.tiny * FP16.eps, g), "smallest subnormal"),
    (lambda g: floor_at(torch.finfo(torch.bfloat16).tiny, g, torch.finfo(torch.bfloat16).max), "bfloat16's limits"),
    (lambda g: floor_at(FP16.tiny, g.abs().max().reshape(1).expand(2).clone()), "*largest* gradient"),
    (largest_safe, "largest power of two that does not overflow"),
    (lambda g: floor_at(FP16.tiny, g, strict=True), "(>=, not >)"),
    (lambda g: floor_at(FP16.tiny, g, ceiling=FP16.max - 1e-3), "(<=, not <)"),
    (lambda g: floor_at(FP16.tiny, g, k_min=-60), "k >= 0"),
    (lambda g: (lambda r: None if doubling(g) is None else max(1.0, r))(FP16.tiny / g[g != 0].abs().min().item()),
     "not a power of two"),
    (lambda g: floor_at(FP16.tiny, g, ceiling=math.inf), "You never return None"),
    (lambda g: None if doubling(g) is None else int(math.log2(doubling(g))), "the exponent k"),
    (signed, "compare magnitudes"),
    (with_zeros, "leave the zeros out"),
    (in_place, "in place"),
    (lambda g: [doubling(g)], "should be a number"),
    (lambda g: torch.tensor([doubling(g) or 1.0] * 2), "array of shape (2,)"),
    (lambda g: None, "you returned None, but"),
    (lambda g: 2 * (doubling(g) or 1.0), "the smallest power of two 2**k (k >= 0)"),
    (lambda g: doubling(g) or 1.0, "no power of two works"),
])
def test_loss_scale_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_loss_scale, wrong, capsys, phrase)


# --- exercise 2: checkpointing every k blocks --------------------------------------------------------

def every_k(c, k, precision="fp16"):
    width = 4 if precision == "fp32" else 2
    L = c.text_seq_len + c.image_seq_len
    block = width * (16 * L * c.d_model + c.n_heads * L * L)
    logits = 4 * 2 * (c.text_seq_len * c.text_vocab_size + c.image_seq_len * c.image_vocab_size)
    return math.ceil(c.n_layers / k) * width * L * c.d_model + min(k, c.n_layers) * block + logits


def every_k_loop(c, k, precision="fp16"):
    """Block by block: which inputs are kept, and the longest segment the backward recomputes."""
    width = 4 if precision == "fp32" else 2
    L = c.text_seq_len + c.image_seq_len
    kept = sum(width * L * c.d_model for i in range(c.n_layers) if i % k == 0)
    longest = max(len(range(start, min(start + k, c.n_layers))) for start in range(0, c.n_layers, k))
    block = width * (16 * L * c.d_model + c.n_heads * L * L)
    return kept + longest * block + 8 * (c.text_seq_len * c.text_vocab_size + c.image_seq_len * c.image_vocab_size)


@pytest.mark.parametrize("right", [every_k, every_k_loop,
                                   lambda c, k, precision: float(every_k(c, k, precision))])
def test_checkpoint_every_right_answers(capsys, right):
    assert_passes(check_checkpoint_every, right, capsys)


def test_checkpoint_every_not_attempted(capsys):
    assert_fails(check_checkpoint_every, lambda c, k, precision: not_attempted(), capsys, "not attempted")


def my_training_memory(c, precision="fp16", checkpointing=False, shards=1):
    """Lesson 12's section 1.4, as the notebook shows it."""
    n = sum(scale.transformer_parameters(c).values())
    width = 4 if precision == "fp32" else 2
    state = {"weights": width * n, "gradients": width * n, "master_weights": 0 if precision == "fp32" else 4 * n,
             "adam": 8 * n}
    d, L = c.d_model, c.text_seq_len + c.image_seq_len
    block = width * (16 * L * d + c.n_heads * L * L)
    logits = 4 * 2 * (c.text_seq_len * c.text_vocab_size + c.image_seq_len * c.image_vocab_size)
    kept = c.n_layers * width * L * d + block if checkpointing else c.n_layers * block
    return {**{k: v / shards for k, v in state.items()}, "activations": kept + logits}


@pytest.mark.parametrize("shortcut, phrase", [
    (lambda c, k, precision: scale.activation_bytes(c, precision, checkpointing=True), "does not change with k"),
    (lambda c, k, precision: my_training_memory(c, precision, True)["activations"], "does not change with k"),
    (lambda c, k, precision: scale.activation_bytes(c, precision), "without checkpointing"),
    (lambda c, k, precision: my_training_memory(c, precision, False)["activations"], "without checkpointing"),
])
def test_checkpoint_every_rejects_the_library_and_the_lesson(capsys, shortcut, phrase):
    assert_fails(check_checkpoint_every, shortcut, capsys, phrase)


def variant(**changes):
    """every_k with one piece changed: the mistakes the check names."""
    def fn(c, k, precision="fp16"):
        width = changes.get("width", 4 if precision == "fp32" else 2)
        L = c.text_seq_len + c.image_seq_len
        probabilities = 0 if changes.get("no_probabilities") else c.n_heads * L * L
        block = width * (16 * L * c.d_model + probabilities)
        count = c.text_seq_len * c.text_vocab_size + c.image_seq_len * c.image_vocab_size
        logits = changes.get("logits", lambda w: 4 * 2 * count)(width)
        kept = changes.get("kept", lambda n, k: math.ceil(n / k))(c.n_layers, k)
        segment = changes.get("segment", lambda n, k: min(k, n))(c.n_layers, k)
        return kept * width * L * c.d_model + segment * block + logits
    return fn


@pytest.mark.parametrize("wrong, phrase", [
    (variant(segment=lambda n, k: 0), "not the segment the backward recomputes"),
    (variant(segment=lambda n, k: 1), "not one block's"),
    (variant(kept=lambda n, k: n), "kept every block's input"),
    (variant(kept=lambda n, k: n // k), "rounds down"),
    (variant(kept=lambda n, k: n / k), "not a whole number"),
    (variant(logits=lambda w: 0), "left out the logits"),
    (variant(no_probabilities=True), "attention probabilities"),
    (variant(width=4), "2 bytes each, not 4"),
    (lambda c, k, precision: every_k(c, k, precision) + 1, "needs"),
    (lambda c, k, precision: str(every_k(c, k, precision)), "should be a number"),
    (lambda c, k, precision: -every_k(c, k, precision), "positive"),
    (lambda c, k, precision: c.vocab_size, "raised AttributeError"),
])
def test_checkpoint_every_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_checkpoint_every, wrong, capsys, phrase)


def test_checkpoint_every_names_the_logits_width(capsys):
    count = lambda c: c.text_seq_len * c.text_vocab_size + c.image_seq_len * c.image_vocab_size
    width = lambda precision: 4 if precision == "fp32" else 2
    in_width = lambda c, k, precision: every_k(c, k, precision) - 8 * count(c) + width(precision) * 2 * count(c)
    once = lambda c, k, precision: every_k(c, k, precision) - 4 * count(c)
    assert_fails(check_checkpoint_every, in_width, capsys, "kept in fp32 (4 bytes each)")
    assert_fails(check_checkpoint_every, once, capsys, "two values per logit")


# --- exercise 3: the deepest model that fits ------------------------------------------------------

def counting(c, memory_gb, precision="fp16", checkpointing=True, shards=1):
    n = 0
    while scale.training_memory(dataclasses.replace(c, n_layers=n + 1), precision, checkpointing,
                                shards).total <= memory_gb * 1e9:
        n += 1
    return n


def bisection(c, memory_gb, precision="fp16", checkpointing=True, shards=1):
    fits = lambda n: scale.training_memory(dataclasses.replace(c, n_layers=n), precision, checkpointing,
                                           shards).total <= memory_gb * 1e9
    if not fits(1):
        return 0
    low, high = 1, 2
    while fits(high):
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


@pytest.mark.parametrize("right", [counting, bisection,
                                   lambda c, gb, p, ck, sh: float(counting(c, gb, p, ck, sh))])
def test_max_layers_right_answers(capsys, right):
    assert_passes(check_max_layers, right, capsys)


def test_max_layers_not_attempted(capsys):
    assert_fails(check_max_layers, lambda *args: not_attempted(), capsys, "not attempted")


@pytest.mark.parametrize("shortcut", [
    lambda c, gb, p, ck, sh: scale.training_memory(c, p, ck, sh).total,
    lambda c, gb, p, ck, sh: sum(my_training_memory(c, p, ck, sh).values()),
])
def test_max_layers_rejects_the_library_and_the_lesson(capsys, shortcut):
    """The library and the lesson give bytes for a given depth; the exercise asks for the depth."""
    assert_fails(check_max_layers, shortcut, capsys, "number of bytes")


def counting_with(what="total", gb_bytes=1e9, **forced):
    def fn(c, memory_gb, precision="fp16", checkpointing=True, shards=1):
        settings = {"precision": precision, "checkpointing": checkpointing, "shards": shards, **forced}
        n = 0
        while getattr(scale.training_memory(dataclasses.replace(c, n_layers=n + 1), settings["precision"],
                                            settings["checkpointing"], settings["shards"]),
                      what) <= memory_gb * gb_bytes:
            n += 1
        return n
    return fn


@pytest.mark.parametrize("wrong, phrase", [
    (lambda *args: counting(*args) + 1, "one too many"),
    (counting_with(gb_bytes=2**30), "gibibyte"),
    (counting_with(precision="fp16"), "do not change with the precision"),
    (counting_with(checkpointing=True), "ignore checkpointing=False"),
    (counting_with(checkpointing=False), "ignore checkpointing=True"),
    (counting_with(shards=1), "number of shards"),
    (counting_with(what="model_state"), "only the model state"),
    (counting_with(what="weights"), "only the weights"),
    (lambda c, *args: sum(scale.transformer_parameters(dataclasses.replace(c, n_layers=max(counting(c, *args), 1)))
                          .values()) if counting(c, *args) else 0, "number of parameters"),
    (lambda *args: max(counting(*args), 1), "the answer is 0, not 1"),
    (lambda *args: counting(*args) + 0.5, "whole number of layers"),
    (lambda *args: -1, "whole number of layers"),
    (lambda *args: str(counting(*args)), "should be a number"),
    (lambda *args: counting(*args) + (3 if args[1] == 80 else 0), "fit ("),
])
def test_max_layers_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_max_layers, wrong, capsys, phrase)
