"""Turning next-token logits into tokens, and a whole image's tokens from a caption.

Each filter is a small pure function from logits [..., V] to logits with the excluded tokens set to
-inf, so they compose: `top_p_filter(top_k_filter(logits / temperature, k), p)`.

`generate_image_tokens` samples the N image tokens one at a time. With the KV cache (the default)
the model reads the caption once (`prefill`) and then only the one new token per step (`step`);
`use_cache=False` is the reference path that re-reads the whole prefix for every token. Both draw
the same random numbers in the same order, so for the same seed they give the same tokens.
Classifier-free guidance runs the caption and the empty caption as one batch of 2B rows that share
one cache; image completion starts from given top rows (`prefix`).

Randomness comes from one `generator` for the whole batch, or from `generators`, one per row
(`row_generators(seed, n)`): then row k draws the same tokens whatever else is in the batch, which is
how the pipeline makes image k of a seed independent of n. The accepted range of every setting is
stated once, in `SAMPLING_RANGES`, and checked by `check_sampling` (the API and the CLI alike).
"""
from __future__ import annotations

import hashlib
import numbers
from typing import TYPE_CHECKING, Iterator, Sequence

import torch

if TYPE_CHECKING:
    from .transformer import DalleTransformer


#: The accepted range of each sampling setting, stated once: the API, the CLI (its --help and its errors)
#: and any later front end read them from here. The bounds keep the arithmetic finite in float32:
#: logits / 1e-45 overflow to inf (and the softmax to NaN), a guidance of 1e30 does the same, and a
#: negative guidance pushes every image away from its caption.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0  # plus exactly 0, which means greedy
MAX_GUIDANCE = 10.0  # guidance_scale in [0, MAX_GUIDANCE]; 0 ignores the caption, 1 is no guidance
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer
SAMPLING_RANGES: dict[str, str] = {
    "temperature": f"0 (greedy) or a number from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}",
    "top_k": "an int >= 1 (or None: keep every token)",
    "top_p": "in (0, 1] (or None: keep every token)",
    "guidance_scale": f"a number from 0 to {MAX_GUIDANCE:g} (1: no guidance, 0: ignore the caption)",
}


def check_sampling(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   guidance_scale: float = 1.0) -> None:
    """Raise a one-line ValueError (TypeError for a wrong type) for any setting outside SAMPLING_RANGES."""
    def bad(name: str, value, error: type = ValueError) -> Exception:
        return error(f"{name} must be {SAMPLING_RANGES[name]}, got {value!r}")

    for name, value in (("temperature", temperature), ("top_p", top_p), ("guidance_scale", guidance_scale)):
        if value is None and name == "top_p":
            continue
        if not _is_number(value):
            raise bad(name, value, TypeError)
    if top_k is not None and not _is_number(top_k, numbers.Integral):
        raise bad("top_k", top_k, TypeError)
    if not (temperature == 0 or MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE):  # NaN fails both
        raise bad("temperature", temperature)
    if top_k is not None and top_k < 1:
        raise bad("top_k", top_k)
    if top_p is not None and not 0 < top_p <= 1:
        raise bad("top_p", top_p)
    if not 0 <= guidance_scale <= MAX_GUIDANCE:
        raise bad("guidance_scale", guidance_scale)


def check_seed(seed) -> int:
    """A seed as an int in [0, MAX_SEED]; anything else is a one-line ValueError."""
    if not _is_number(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        shown = repr(seed) if len(repr(seed)) <= 40 else f"a {type(seed).__name__} of {len(repr(seed))} characters"
        raise ValueError(f"seed must be an int >= 0 and at most 2**63 - 1 (or None for fresh randomness), "
                         f"got {shown}")
    return int(seed)


def row_seed(seed: int, k: int) -> int:
    """The seed of image k's own random stream: `seed` itself for k = 0 (so one image draws exactly what
    a single generator seeded with `seed` draws), a SHA-256 digest of (seed, k) for the others."""
    if k == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"dalle_lessons/{seed}/{k}".encode()).digest()[:8], "big") & MAX_SEED


def row_generators(seed: int, count: int, device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One generator per image k = 0 .. count - 1, seeded with `row_seed(seed, k)`: image k's draws do
    not depend on how many images are drawn with it."""
    seed = check_seed(seed)
    return [torch.Generator(device=device).manual_seed(row_seed(seed, k)) for k in range(count)]


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by `temperature`: below 1 sharpens the distribution, above 1 flattens it."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; for greedy decoding use top_k=1")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep exactly the `k` largest logits of each row (ties broken by index); None keeps all."""
    if k is None or k >= logits.shape[-1]:
        return logits
    if k < 1:
        raise ValueError(f"top_k must be at least 1 (or None to keep every token), got {k}")
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.topk(k, dim=-1).indices, True)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability mass is at least `p`."""
    if p is None or p >= 1.0:
        return logits
    if not 0.0 < p:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    # a token is kept when the mass *before* it is still short of p: the first token always is
    drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= p
    drop_sorted[..., 0] = False  # even a p below float32's resolution (1e-300 rounds to 0) keeps one token
    drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Temperature, then top-k, then top-p: the order every sampler in the course uses."""
    return top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)


def sample_from_logits(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from softmax(logits), drawn through an explicit generator for repeatability.

    A generator on another device than the logits (a CPU generator for a GPU model) still works:
    the draw happens on the generator's device, which costs a copy per call.
    """
    probs = logits.float().softmax(-1)
    flat = probs.reshape(-1, probs.shape[-1])
    if generator is not None and generator.device.type != flat.device.type:
        drawn = torch.multinomial(flat.to(generator.device), 1, generator=generator).to(flat.device)
    else:
        drawn = torch.multinomial(flat, 1, generator=generator)
    return drawn.reshape(probs.shape[:-1])


# --- classifier-free guidance ---------------------------------------------------------------------

def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + scale * (cond - uncond).

    Scale 1 is plain conditional sampling (returned as `cond` itself, bit for bit), 0 ignores the
    caption, and above 1 pushes the image further toward what the caption adds.
    """
    if scale == 1:
        return cond
    return uncond + scale * (cond - uncond)


# --- generating the image tokens ------------------------------------------------------------------

def _is_number(x, kind: type = numbers.Real) -> bool:
    return isinstance(x, kind) and not isinstance(x, bool)


def _check_settings(temperature: float, top_k: int | None, top_p: float | None, guidance_scale: float) -> None:
    """Fail before any work on settings the filters would only reject at the first token."""
    try:
        check_sampling(temperature, top_k, top_p, guidance_scale)
    except TypeError as error:  # a wrong type is as much a bad setting: one exception kind for callers
        raise ValueError(str(error)) from None


def _check_prefix(prefix: torch.Tensor | None, batch_size: int, n_tokens: int, vocab: int) -> int:
    """The number of given image tokens (0 without a prefix)."""
    if prefix is None:
        return 0
    if not isinstance(prefix, torch.Tensor) or prefix.dim() != 2 or prefix.shape[0] != batch_size \
            or prefix.shape[1] > n_tokens:
        shape = tuple(prefix.shape) if isinstance(prefix, torch.Tensor) else type(prefix).__name__
        raise ValueError(f"prefix must be a tensor [batch={batch_size}, n] of image token ids with n <= "
                         f"{n_tokens}, one row per caption (repeat a single row to the batch), got {shape}")
    if prefix.dtype.is_floating_point or prefix.dtype == torch.bool:
        raise ValueError(f"prefix must hold integer image token ids, got dtype {prefix.dtype}")
    if prefix.numel() and (int(prefix.min()) < 0 or int(prefix.max()) >= vocab):
        raise ValueError(f"prefix ids must lie in [0, {vocab}) (the dVAE's codebook), "
                         f"got [{int(prefix.min())}, {int(prefix.max())}]")
    return prefix.shape[1]


def _cached_logits(model: DalleTransformer, text: torch.Tensor, tokens: torch.Tensor, start: int,
                   rows: int) -> Iterator[torch.Tensor]:
    """Next-token logits for image tokens start, start + 1, ...: the caption (and the given prefix)
    is read once; each later step reads only token i - 1, which the caller has written by then."""
    prefix = tokens[:, :start].repeat(rows, 1) if start else None
    logits, cache = model.prefill(text, prefix)
    yield logits
    for i in range(start + 1, tokens.shape[1]):
        yield model.step(tokens[:, i - 1].repeat(rows), cache)


def _uncached_logits(model: DalleTransformer, text: torch.Tensor, tokens: torch.Tensor, start: int,
                     rows: int) -> Iterator[torch.Tensor]:
    """The reference: a full teacher-forced forward pass over caption + tokens[:, :i] for every token i.

    `forward` reads image tokens 0..n-2 to score tokens 0..n-1, so a placeholder after the i known
    tokens gets us the logits of token i (the placeholder itself is never read).
    """
    placeholder = torch.zeros_like(tokens[:, :1])
    for i in range(start, tokens.shape[1]):
        known = torch.cat([tokens[:, :i], placeholder], dim=1).repeat(rows, 1)
        yield model(text, known).image_logits[:, -1]


def _pick(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
          generator: torch.Generator | None, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """One token per row: argmax at temperature 0, otherwise a draw from the filtered distribution
    (from `generator`, or row b from `generators[b]`, one draw of the same shape as a single row's)."""
    if temperature == 0:
        return logits.argmax(-1)
    filtered = filter_logits(logits, temperature, top_k, top_p)
    if generators is None:
        return sample_from_logits(filtered, generator)
    return torch.cat([sample_from_logits(filtered[b:b + 1], g) for b, g in enumerate(generators)])


def _check_generators(generator: torch.Generator | None, generators: Sequence[torch.Generator] | None,
                      batch_size: int) -> None:
    if generators is None:
        return
    if generator is not None:
        raise ValueError("pass either generator (one stream for the batch) or generators (one per row), not both")
    if isinstance(generators, torch.Generator) or not hasattr(generators, "__len__") \
            or len(generators) != batch_size or not all(isinstance(g, torch.Generator) for g in generators):
        raise ValueError(f"generators must be a list of {batch_size} torch.Generator objects, one per caption "
                         f"row, got {type(generators).__name__}")


def _generation(model: DalleTransformer, text_ids: torch.Tensor, temperature: float, top_k: int | None,
                top_p: float | None, guidance_scale: float, prefix: torch.Tensor | None,
                generator: torch.Generator | None, use_cache: bool,
                generators: Sequence[torch.Generator] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Check everything now, then return the sampling loop (a generator of (n, tokens [B, N]))."""
    _check_settings(temperature, top_k, top_p, guidance_scale)
    config = model.config
    device = model.image_head.weight.device
    if not isinstance(text_ids, torch.Tensor) or text_ids.dim() != 2 or text_ids.shape[0] == 0:
        shape = tuple(text_ids.shape) if isinstance(text_ids, torch.Tensor) else type(text_ids).__name__
        raise ValueError(f"text_ids must be [batch >= 1, {config.text_seq_len}] caption ids "
                         f"(CaptionTokenizer.encode_batch makes them), got {shape}")
    model._check_text(text_ids)
    B, N = text_ids.shape[0], config.image_seq_len
    _check_generators(generator, generators, B)
    start = _check_prefix(prefix, B, N, config.image_vocab_size)
    tokens = torch.zeros(B, N, dtype=torch.long, device=device)
    if start:
        tokens[:, :start] = prefix.to(device)
    guided = guidance_scale != 1  # conditional rows first, then the same images under the empty caption
    text = text_ids.to(device=device, dtype=torch.long)
    if guided:
        text = torch.cat([text, model.empty_text(B)])
    return _sampling_loop(model, text, tokens, start, 2 if guided else 1,
                          lambda logits: _pick(logits, temperature, top_k, top_p, generator, generators),
                          guidance_scale, use_cache)


@torch.no_grad()
def _sampling_loop(model: DalleTransformer, text: torch.Tensor, tokens: torch.Tensor, start: int, rows: int,
                   pick, guidance_scale: float, use_cache: bool) -> Iterator[tuple[int, torch.Tensor]]:
    """Fill tokens[:, start:] in place, yielding (n, tokens) once token n - 1 is written.

    Token i of every row is drawn before token i + 1 of any row, with the same draws from the
    generator in both paths: that is what makes the cached and the reference paths agree.
    """
    N = tokens.shape[1]
    was_training = model.training
    model.eval()  # no dropout, no caption dropout: generation is inference
    try:
        if start == N:
            yield N, tokens
        source = (_cached_logits if use_cache else _uncached_logits)(model, text, tokens, start, rows)
        for i, logits in zip(range(start, N), source):  # zip stops before asking for logits past the last token
            if rows == 2:  # guided: the conditional rows, then the empty-caption ones
                logits = guided_logits(*logits.chunk(2), guidance_scale)
            tokens[:, i] = pick(logits)
            yield i + 1, tokens
    finally:
        model.train(was_training)


def generate_image_tokens(model: DalleTransformer, text_ids: torch.Tensor, *, temperature: float = 1.0,
                          top_k: int | None = None, top_p: float | None = None, guidance_scale: float = 1.0,
                          prefix: torch.Tensor | None = None, generator: torch.Generator | None = None,
                          use_cache: bool = True, generators: Sequence[torch.Generator] | None = None
                          ) -> torch.Tensor:
    """Sample all N image tokens for each caption: text_ids [B, T] -> image token ids [B, N] (long).

    temperature: 0 is greedy (the most likely token every time); otherwise logits / temperature,
      then `top_k` and `top_p` filtering (None: off), then one draw per row from `generator`.
    guidance_scale: classifier-free guidance; 1 is plain conditional sampling.
    prefix [B, n]: the first n tokens are given and kept (image completion from the top rows).
    use_cache: False runs the uncached reference path: the same tokens, many times slower.
    generators: one generator per row instead of `generator`: row b's draws then depend only on
      generators[b] (see `row_generators`), not on how many rows are sampled with it.
    """
    tokens = None
    for _, tokens in _generation(model, text_ids, temperature, top_k, top_p, guidance_scale, prefix,
                                 generator, use_cache, generators):
        pass
    return tokens


def iter_image_tokens(model: DalleTransformer, text_ids: torch.Tensor, *, temperature: float = 1.0,
                      top_k: int | None = None, top_p: float | None = None, guidance_scale: float = 1.0,
                      prefix: torch.Tensor | None = None, generator: torch.Generator | None = None,
                      use_cache: bool = True, generators: Sequence[torch.Generator] | None = None
                      ) -> Iterator[torch.Tensor]:
    """Like `generate_image_tokens`, but yield the tokens so far [B, n] (prefix included) after each
    new token, for progressive pictures; the last yield is the whole [B, N] image."""
    steps = _generation(model, text_ids, temperature, top_k, top_p, guidance_scale, prefix, generator, use_cache,
                        generators)
    return (tokens[:, :n].clone() for n, tokens in steps)
