"""Self-checks for lesson 12 (scaling up).

Each exercise asks for something the package does not compute: nothing in it picks a loss scale (PyTorch's
GradScaler searches for one while training), `scale.activation_bytes` checkpoints every block only, and nothing
counts the layers that fit a GPU. Each check runs the learner's function on small cases, compares it with a
private reference and, when it differs, tries the usual mistakes, so that the feedback names the one that was
made (a mistake is named only if it explains every case). All three are arithmetic: a fraction of a second.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable

import torch

from dalle_lessons import scale
from dalle_lessons.config import TransformerConfig, get_preset
from dalle_lessons.exercises import Feedback, call_learner, report

FP16 = torch.finfo(torch.float16)
BF16 = torch.finfo(torch.bfloat16)


def _number(value, what: str, allow_none: bool = False) -> float | None:
    """The learner's result as a Python number (a 0-d tensor or NumPy scalar is fine), or feedback."""
    if value is None and allow_none:
        return None
    if isinstance(value, torch.Tensor) or (hasattr(value, "item") and hasattr(value, "shape")):  # torch, NumPy
        if math.prod(value.shape) != 1:
            raise Feedback(f"{what} is an array of shape {tuple(value.shape)}; return one number.")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        shown = f" {value!r}" if isinstance(value, (list, tuple, str)) else ""
        raise Feedback(f"{what} should be a number{' (or None)' if allow_none else ''}, but it is "
                       f"{type(value).__name__}{shown}.")
    if not math.isfinite(value):
        raise Feedback(f"{what} is {value}: return a finite number.")
    return float(value)


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


# --- exercise 1: the smallest loss scale ---------------------------------------------------------------

def _smallest_exponent(small: float, floor: float, strict: bool = False) -> int:
    """The smallest integer k with small * 2**k >= floor (> if strict), exactly."""
    k = math.ceil(math.log2(floor / small))
    ok = (lambda j: small * 2.0**j > floor) if strict else (lambda j: small * 2.0**j >= floor)
    while not ok(k):
        k += 1
    while ok(k - 1):
        k -= 1
    return k


def _scale_variant(grads: torch.Tensor, mistake: str = "reference") -> float | int | None:
    """The loss scale for `grads` as the reference computes it, or as a common mistake does (for feedback)."""
    values = grads.detach().double().flatten()
    magnitudes = values.abs()[values != 0]
    small, large = magnitudes.min().item(), magnitudes.max().item()
    floor, ceiling = FP16.tiny, FP16.max
    if mistake == "fixed":
        return 2.0**16
    if mistake == "subnormal":
        floor = FP16.tiny * FP16.eps
    if mistake == "bf16":
        floor, ceiling = BF16.tiny, BF16.max
    if mistake == "uses_largest":
        small = large
    if mistake == "largest_safe":  # as large as possible without overflow, whatever the smallest gradient
        if large > ceiling:
            return None
        k = 0
        while large * 2.0 ** (k + 1) <= ceiling:
            k += 1
        return 2.0**k
    k = _smallest_exponent(small, floor, strict=mistake == "strict_floor")
    if mistake != "negative_k":
        k = max(k, 0)
    if mistake == "exact_ratio":
        value = max(1.0, floor / small)
        return value if large * value <= ceiling else None
    scale_ = 2.0**k
    if mistake == "no_overflow_check":
        return scale_
    overflow = large * scale_ >= ceiling if mistake == "strict_ceiling" else large * scale_ > ceiling
    if overflow:
        return None
    return k if mistake == "exponent" else scale_


_SCALE_MISTAKES = {
    "fixed": "You always return 65536 = 2**16, GradScaler's starting scale. The exercise asks for the scale these "
             "gradients need: the smallest power of two that lifts the smallest nonzero magnitude to "
             "torch.finfo(torch.float16).tiny or above.",
    "subnormal": "You lifted the gradients above fp16's smallest subnormal number (2**-24, about 6e-8). Subnormals "
                 "keep only a few bits of precision; the exercise asks for the smallest *normal* number, "
                 "torch.finfo(torch.float16).tiny = 2**-14, about 6.1e-5.",
    "bf16": "You used bfloat16's limits. bf16 has float32's range and needs no scale; the question is about fp16: "
            "torch.finfo(torch.float16).tiny and .max.",
    "uses_largest": "You lifted the *largest* gradient to fp16's smallest normal number. It is the smallest nonzero "
                    "magnitude that must reach torch.finfo(torch.float16).tiny; the largest must stay at or below "
                    "torch.finfo(torch.float16).max.",
    "largest_safe": "You returned the largest power of two that does not overflow (what GradScaler aims for while "
                    "training). The exercise asks for the smallest one that lifts every nonzero gradient to fp16's "
                    "smallest normal number, then checks that it does not overflow.",
    "strict_floor": "Your scale is twice too large when the smallest gradient lands exactly on fp16's smallest "
                    "normal number: reaching it is enough (>=, not >).",
    "strict_ceiling": "You returned None when the largest scaled gradient equals fp16's largest value exactly: "
                      "65504 itself is representable (<=, not <).",
    "negative_k": "You scaled down gradients that are already large enough. The exercise asks for S = 2**k with "
                  "k >= 0: when every nonzero gradient is already in fp16's normal range, the answer is 1.",
    "exact_ratio": "You returned the exact ratio tiny / smallest, which is not a power of two. Loss scales are "
                   "powers of two, so that scaling and unscaling change only the exponent and lose no bits: round "
                   "the exponent up, S = 2**ceil(log2(tiny / smallest)).",
    "no_overflow_check": "You never return None. When the largest gradient times your scale exceeds "
                         "torch.finfo(torch.float16).max (65504) it would overflow to inf: then no single scale works, "
                         "and the answer is None.",
    "exponent": "You returned the exponent k; return the scale itself, 2.0 ** k.",
}


def _scale_cases() -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(12)
    typical = torch.randn(200, generator=gen) * 1e-6
    typical[::17] = 0.0
    exact = (torch.rand(8, 8, generator=gen) * 0.5 + 0.5) * 2.0**-10 * torch.where(
        torch.rand(8, 8, generator=gen) < 0.5, -1.0, 1.0)
    exact[3, 4] = -(2.0**-20)
    in_range = torch.rand(50, generator=gen) * 0.99 + 0.01
    in_range[0] = 0.01
    wide = torch.cat([torch.tensor([1e-12, -0.1]), torch.randn(30, generator=gen) * 1e-4])
    tiny = (torch.rand(40, generator=gen) * 0.99 + 0.01) * 1e-18
    huge = torch.cat([torch.tensor([1e5]), torch.rand(20, generator=gen)])
    return [
        ("200 gradients of about 1e-6, some exactly 0", typical),
        ("an 8 x 8 gradient with negative entries whose smallest magnitude is exactly 2**-20", exact),
        ("gradients between 0.01 and 1, already in fp16's normal range", in_range),
        ("gradients from 1e-12 to 0.1 in magnitude", wide),
        ("gradients whose largest, scaled, lands exactly on fp16's largest value",
         torch.tensor([2.0**-20, 0.0, 65504 * 2.0**-6, -(2.0**-12)])),
        ("gradients of 1e-20 to 1e-18", tiny),
        ("a single gradient of 3e-5", torch.tensor([3e-5])),
        ("gradients up to 1e5, more than fp16 can hold", huge),
    ]


def check_loss_scale(fn: Callable[[torch.Tensor], float | None]) -> bool:
    """Exercise 1: `fn(grads)` is the smallest 2**k (k >= 0) lifting every nonzero |g| to fp16's normal range
    without overflow, or None."""

    def check() -> None:
        cases = _scale_cases()
        got = []
        for name, grads in cases:
            copy = grads.clone()
            value = call_learner(fn, f"Your function (with {name})", copy,
                                 hint=" Hint: leave the zeros out (grads[grads != 0]) and compare magnitudes "
                                      "(.abs()): gradients can be negative.")
            if not torch.equal(copy, grads):
                raise Feedback("Your function changed the gradients in place; read them without writing to them "
                               "(grads.abs() makes a new tensor, grads.abs_() does not).")
            got.append(_number(value, f"With {name}, your result", allow_none=True))
        wrong = [k for k, (_, grads) in enumerate(cases) if not _same(got[k], _scale_variant(grads))]
        if not wrong:
            return
        for mistake, message in _SCALE_MISTAKES.items():
            if all(_same(got[k], _scale_variant(grads, mistake)) for k, (_, grads) in enumerate(cases)):
                raise Feedback(message)
        name, grads = cases[wrong[0]]
        want = _scale_variant(grads)
        if want is None:
            raise Feedback(f"With {name}, you returned {got[wrong[0]]:g}, but no power of two works: the one that "
                           "lifts the smallest nonzero magnitude to fp16's smallest normal number makes the largest "
                           "overflow fp16's maximum (65504). Return None then.")
        if got[wrong[0]] is None:
            raise Feedback(f"With {name}, you returned None, but {want:g} works: every nonzero magnitude times it is "
                           "at least torch.finfo(torch.float16).tiny, and the largest stays at or below 65504.")
        raise Feedback(f"With {name}, you returned {got[wrong[0]]:g}; the smallest power of two 2**k (k >= 0) that "
                       f"lifts every nonzero magnitude to torch.finfo(torch.float16).tiny is {want:g}.")

    return report("Exercise 1 (the smallest loss scale)", check)


# --- exercise 2: activation checkpointing every k blocks -----------------------------------------------

def _activation_variant(c: TransformerConfig, k: int, precision: str, mistake: str = "reference") -> float:
    """Activation bytes of one sequence, checkpointing every k blocks, as the reference or a mistake counts them."""
    width = 4 if precision == "fp32" or mistake == "fp32_always" else 2
    d, n, L = c.d_model, c.n_layers, c.text_seq_len + c.image_seq_len
    per_input = width * L * d
    probabilities = 0 if mistake == "no_probabilities" else c.n_heads * L * L
    block = width * (16 * L * d + probabilities)
    logit_count = c.text_seq_len * c.text_vocab_size + c.image_seq_len * c.image_vocab_size
    logits = {"no_logits": 0, "logits_width": width * 2 * logit_count, "logits_once": 4 * logit_count}.get(
        mistake, 4 * 2 * logit_count)
    kept = {"floor": n // k, "true_division": n / k, "all_inputs": n}.get(mistake, math.ceil(n / k))
    segment = {"no_segment": 0, "one_block": 1}.get(mistake, min(k, n))
    if mistake == "library_every_layer":
        return scale.activation_bytes(c, precision, checkpointing=True)
    if mistake == "no_checkpointing":
        return scale.activation_bytes(c, precision, checkpointing=False)
    return kept * per_input + segment * block + logits


_ACTIVATION_MISTAKES = {
    "library_every_layer": "Your answer does not change with k: it is checkpointing every block (k = 1), the "
                           "library's scale.activation_bytes(c, precision, checkpointing=True). With segments of k "
                           "blocks, only ceil(n_layers / k) inputs are kept, and the segment being recomputed holds "
                           "min(k, n_layers) blocks' activations.",
    "no_checkpointing": "That is the memory without checkpointing (every block keeps its activations), whatever k "
                        "is. Keep only the input of every k-th block, plus one recomputed segment of k blocks.",
    "no_segment": "You counted the kept inputs and the logits, but not the segment the backward recomputes: while "
                  "it runs, up to k blocks hold their full activations (16 · d values per token plus heads × L² "
                  "attention probabilities each).",
    "one_block": "The recomputed segment holds up to k blocks' activations at once, not one block's: "
                 "min(k, n_layers) × (16 · L · d + heads · L²) values.",
    "all_inputs": "You kept every block's input, as with k = 1. Checkpointing every k blocks keeps the inputs of "
                  "blocks 0, k, 2k, ...: ceil(n_layers / k) of them.",
    "floor": "n_layers // k rounds down: with 10 layers and k = 4 the kept inputs are those of blocks 0, 4 and 8, "
             "three of them. Round up: math.ceil(n_layers / k).",
    "true_division": "n_layers / k is not a whole number of kept inputs: with 10 layers and k = 4 they are the inputs "
                     "of blocks 0, 4 and 8, three of them. Use math.ceil(n_layers / k).",
    "no_logits": "You left out the logits: the loss keeps them and their log-softmax in fp32, 4 × 2 × "
                 "(text_seq_len × text_vocab_size + image_seq_len × image_vocab_size) bytes, whatever k is.",
    "logits_width": "The logits are kept in fp32 (4 bytes each) whatever the precision of the blocks: only the "
                    "blocks' activations take 2 bytes in 'fp16'.",
    "logits_once": "The loss keeps two values per logit: the logits and their log-softmax (4 × 2 bytes each).",
    "fp32_always": "With precision 'fp16' the blocks' activations take 2 bytes each, not 4 (the logits alone stay "
                   "fp32).",
    "no_probabilities": "A block also keeps its attention probabilities for the backward: heads × L² values per "
                        "sequence (a dense kernel), on top of its 16 · d values per token.",
}


def _activation_cases() -> list[tuple[str, TransformerConfig, int, str]]:
    cpu10 = dataclasses.replace(get_preset("cpu").transformer, n_layers=10)
    return [
        ("tiny, k = 1, fp16", get_preset("tiny").transformer, 1, "fp16"),
        ("tiny, k = 2, fp32", get_preset("tiny").transformer, 2, "fp32"),
        ("cpu, k = 3, fp16", get_preset("cpu").transformer, 3, "fp16"),
        ("cpu with 10 layers, k = 4, fp16", cpu10, 4, "fp16"),
        ("colab, k = 5, fp16", get_preset("colab").transformer, 5, "fp16"),
        ("colab, k = 12, fp32", get_preset("colab").transformer, 12, "fp32"),
        ("paper, k = 1, fp16", get_preset("paper").transformer, 1, "fp16"),
        ("paper, k = 8, fp16", get_preset("paper").transformer, 8, "fp16"),
    ]


def check_checkpoint_every(fn: Callable[[TransformerConfig, int, str], float]) -> bool:
    """Exercise 2: `fn(c, k, precision)` is one sequence's peak activation bytes when every k-th block's input is
    checkpointed and one segment of up to k blocks is recomputed at a time."""

    def check() -> None:
        cases = _activation_cases()
        got = []
        for name, c, k, precision in cases:
            value = call_learner(fn, f"Your function (with {name})", c, k, precision,
                                 hint=" Hint: c.d_model, c.n_layers, c.n_heads, c.text_seq_len + c.image_seq_len "
                                      "(L) and the two vocabulary sizes are all it needs.")
            value = _number(value, f"With {name}, your result")
            if value <= 0:
                raise Feedback(f"With {name}, you returned {value:g} bytes; memory is a positive number.")
            got.append(value)
        wrong = [j for j, (_, c, k, p) in enumerate(cases) if not _same(got[j], _activation_variant(c, k, p))]
        if not wrong:
            return
        for mistake, message in _ACTIVATION_MISTAKES.items():
            if all(_same(got[j], _activation_variant(c, k, p, mistake)) for j, (_, c, k, p) in enumerate(cases)):
                raise Feedback(message)
        name, c, k, precision = cases[wrong[0]]
        blocks = f"{k} block{'s' if k > 1 else ''}"
        raise Feedback(f"With {name}, you returned {got[wrong[0]]:,.0f} bytes, but checkpointing every {blocks} "
                       f"needs {_activation_variant(c, k, precision):,.0f}: ceil(n_layers / k) kept inputs of L · d "
                       "values, min(k, n_layers) blocks of 16 · L · d + heads · L² values, and the fp32 logits with "
                       "their log-softmax.")

    return report("Exercise 2 (checkpointing every k blocks)", check)


# --- exercise 3: the deepest model that fits --------------------------------------------------------

def _memory(c: TransformerConfig, n: int, precision: str, checkpointing: bool, shards: int, what: str) -> float:
    m = scale.training_memory(dataclasses.replace(c, n_layers=n), precision, checkpointing, shards)
    if what == "model_state":
        return m.model_state
    if what == "weights":
        return m.weights
    return m.total


def _max_layers_variant(c: TransformerConfig, memory_gb: float, precision: str, checkpointing: bool, shards: int,
                        mistake: str = "reference") -> int:
    """The largest n >= 1 that fits (0 if none), as the reference or a common mistake computes it."""
    capacity = memory_gb * (2**30 if mistake == "gib" else 1e9)
    precision = "fp16" if mistake == "ignores_precision" else precision
    checkpointing = {"always_checkpointing": True, "never_checkpointing": False}.get(mistake, checkpointing)
    shards = 1 if mistake == "ignores_shards" else shards
    what = {"no_activations": "model_state", "weights_only": "weights"}.get(mistake, "total")
    memory = lambda n: _memory(c, n, precision, checkpointing, shards, what)
    fits = lambda n: memory(n) <= capacity
    if mistake == "bytes":
        return scale.training_memory(c, precision, checkpointing, shards).total
    if not fits(1):
        return 1 if mistake in ("at_least_one", "first_too_many") else 0
    n = max(1, int((capacity - memory(1)) // (memory(2) - memory(1))) + 1)
    while not fits(n):  # memory grows by the same amount per layer: the estimate is off by one at most
        n -= 1
    while fits(n + 1):
        n += 1
    if mistake == "parameters":
        return sum(scale.transformer_parameters(dataclasses.replace(c, n_layers=n)).values())
    return n + 1 if mistake == "first_too_many" else n


_LAYERS_MISTAKES = {
    "first_too_many": "Your answers are one too many: that is the first number of layers that does *not* fit. "
                      "Return the last one that does.",
    "gib": "You counted a gigabyte as 2**30 bytes (a gibibyte, GiB). The exercise, like GPU datasheets, uses "
           "10**9 bytes per GB.",
    "ignores_precision": "Your answers do not change with the precision: pass it on to scale.training_memory "
                         "('fp32' keeps 4-byte weights, gradients and activations).",
    "always_checkpointing": "Your answers ignore checkpointing=False: without checkpointing every block keeps its "
                            "activations, and fewer layers fit. Pass the flag on to scale.training_memory.",
    "never_checkpointing": "Your answers ignore checkpointing=True: with checkpointing, each block keeps only its "
                           "input, and more layers fit. Pass the flag on to scale.training_memory.",
    "ignores_shards": "Your answers do not change with the number of shards: sharding over n GPUs divides the "
                      "weights, gradients and optimizer state by n (pass shards on to scale.training_memory).",
    "no_activations": "You compared only the model state (weights, gradients, master copy, Adam) with the GPU's "
                      "memory. The activations of the sequence being trained need room too: use .total.",
    "weights_only": "You compared only the weights with the GPU's memory. Training also keeps gradients, an fp32 "
                    "master copy, Adam's moments and the activations: 16 bytes per parameter and more. Use .total.",
    "parameters": "You returned the number of parameters of the deepest model that fits; return its number of "
                  "layers.",
    "bytes": "You returned a number of bytes; return a number of layers (an int): the largest n for which "
             "dataclasses.replace(c, n_layers=n) still fits.",
    "at_least_one": "When not even one layer fits, the answer is 0, not 1.",
}


def _layers_cases() -> list[tuple[str, TransformerConfig, float, str, bool, int]]:
    paper, cpu, colab = (get_preset(name).transformer for name in ("paper", "cpu", "colab"))
    return [
        ("the paper's width on a 16 GB GPU, fp16, checkpointing", paper, 16, "fp16", True, 1),
        ("the paper's width on an 80 GB GPU, fp16, checkpointing", paper, 80, "fp16", True, 1),
        ("the paper's width on an 80 GB GPU, fp16, no checkpointing", paper, 80, "fp16", False, 1),
        ("the paper's width on 8 GPUs of 80 GB, sharded, fp16, checkpointing", paper, 80, "fp16", True, 8),
        ("the paper's width on a 4 GB GPU, fp32, no checkpointing", paper, 4, "fp32", False, 1),
        ("the cpu preset's width in 0.5 GB, fp32, no checkpointing", cpu, 0.5, "fp32", False, 1),
        ("the colab preset's width in 1 GB, fp32, checkpointing, 4 shards", colab, 1, "fp32", True, 4),
        ("the cpu preset's width in 0.3 GB, fp16, checkpointing", cpu, 0.3, "fp16", True, 1),
    ]


def check_max_layers(fn: Callable[..., int]) -> bool:
    """Exercise 3: `fn(c, memory_gb, precision, checkpointing, shards)` is the largest n_layers (>= 1, else 0) whose
    training memory per GPU, by scale.training_memory, is at most memory_gb * 1e9 bytes."""

    def check() -> None:
        cases = _layers_cases()
        got = []
        for name, c, gb, precision, ckpt, shards in cases:
            value = call_learner(fn, f"Your function (with {name})", c, gb, precision, ckpt, shards,
                                 hint=" Hint: scale.training_memory(dataclasses.replace(c, n_layers=n), precision, "
                                      "checkpointing, shards).total is the memory of n layers.")
            value = _number(value, f"With {name}, your result")
            if not float(value).is_integer() or value < 0:
                raise Feedback(f"With {name}, you returned {value:g}; return a whole number of layers (0 or more).")
            got.append(value)
        wrong = [j for j, case in enumerate(cases) if got[j] != _max_layers_variant(*case[1:])]
        if not wrong:
            return
        for mistake, message in _LAYERS_MISTAKES.items():
            if all(_same(got[j], _max_layers_variant(*case[1:], mistake)) for j, case in enumerate(cases)):
                raise Feedback(message)
        name, c, gb, precision, ckpt, shards = cases[wrong[0]]
        want = _max_layers_variant(c, gb, precision, ckpt, shards)
        need = scale.training_memory(dataclasses.replace(c, n_layers=max(want, 1)), precision, ckpt, shards).total
        raise Feedback(f"With {name}, you returned {got[wrong[0]]:g} layers; {want} fit"
                       + (f" ({need / 1e9:.2f} GB), and {want + 1} would not." if want else
                          f": even one layer needs {need / 1e9:.2f} GB."))

    return report("Exercise 3 (the deepest model that fits)", check)
