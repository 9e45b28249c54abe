"""Self-checks for lesson 07 (sampling).

Each check calls the learner's function on small seeded inputs, compares the result with
`dalle_lessons.sampling` and, when it differs, tries the usual mistakes so that the feedback can name
the one that was made. The completion check runs on a small randomly initialised `tiny` transformer,
so it takes a fraction of a second and needs no checkpoint.
"""
from __future__ import annotations

from typing import Callable

import torch

from dalle_lessons.config import get_preset
from dalle_lessons.exercises import Feedback, call_learner, report
from dalle_lessons.sampling import generate_image_tokens, guided_logits, top_p_filter
from dalle_lessons.transformer import DalleTransformer


def _check_tensor(got, want: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise Feedback(f"{what} should return a torch.Tensor, but it returned {type(got).__name__}.")
    if got.shape != want.shape:
        raise Feedback(f"{what} returned shape {tuple(got.shape)}; it should keep the input's shape "
                       f"{tuple(want.shape)} (one logit per token, for every row).")
    return got


# --- exercise 1: the top-p (nucleus) filter ---------------------------------------------------------

def _top_p_cases() -> list[tuple[str, torch.Tensor, float]]:
    """(description, logits, p): a hand-made case, a shuffled one, batches, and the extremes of p."""
    gen = torch.Generator().manual_seed(7)
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    shuffled = torch.tensor([0.05, 0.3, 0.5, 0.15])
    return [
        ("probabilities [0.5, 0.3, 0.15, 0.05] and p = 0.7", probs.log(), 0.7),
        ("probabilities [0.5, 0.3, 0.15, 0.05] and p = 0.85", probs.log(), 0.85),
        ("probabilities [0.05, 0.3, 0.5, 0.15] (not sorted) and p = 0.7", shuffled.log(), 0.7),
        ("a batch of 4 rows of 50 random logits and p = 0.9", 2 * torch.randn(4, 50, generator=gen), 0.9),
        ("logits of shape [2, 3, 20] and p = 0.5", 3 * torch.randn(2, 3, 20, generator=gen), 0.5),
        ("a batch of 3 rows and p = 0.01 (only the most likely token survives)",
         torch.randn(3, 30, generator=gen), 0.01),
        ("a batch of 3 rows and p = 1.0 (every token survives)", torch.randn(3, 30, generator=gen), 1.0),
    ]


def _keep_smallest(logits: torch.Tensor, p: float, mistake: str) -> torch.Tensor:
    """The kept set as a common mistake computes it (bool, same shape as logits)."""
    descending = mistake != "ascending"
    sorted_logits, order = logits.sort(dim=-1, descending=descending)
    probs = sorted_logits.softmax(-1)
    cumulative = probs.cumsum(-1)
    keep_sorted = cumulative < p if mistake == "drops_crossing" else (cumulative - probs) < p
    if mistake == "not_unsorted":
        return keep_sorted
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


_TOP_P_MISTAKES = {
    "drops_crossing": "You keep tokens only while the running total stays below p, so you drop the token "
                      "that takes the mass to p or past it. Top-p keeps the smallest set whose mass is at "
                      "least p: a token is kept when the mass of the tokens before it is still below p "
                      "(so the most likely token is always kept).",
    "not_unsorted": "Your kept set is right in sorted order, but you applied it to the tokens in their "
                    "original order. The mask you built is indexed by rank: put it back in token order "
                    "(e.g. mask.scatter(-1, order, sorted_mask), with `order` from logits.sort), then fill.",
    "ascending": "You kept the least likely tokens: sort the logits in descending order "
                 "(logits.sort(dim=-1, descending=True)) so the running total starts from the most likely.",
}


def check_top_p(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> bool:
    """Exercise 1: `fn(logits, p)` keeps the smallest set of most likely tokens with mass >= p (others -inf)."""

    def kept_set(name: str, logits: torch.Tensor, p: float) -> torch.Tensor:
        """The learner's kept tokens for one case, after the checks that do not depend on which are kept."""
        original = logits.clone()
        got = call_learner(fn, f"Your filter (with {name})", logits, p,
                    hint=" Hint: logits.sort(dim=-1, descending=True) gives the sorted logits and their "
                         "order; .softmax(-1).cumsum(-1) the running total of probability.")
        if not torch.equal(logits, original):
            raise Feedback("Your filter changed its input tensor in place. Return a new tensor instead "
                           "(logits.masked_fill(...), not logits.masked_fill_(...)): the caller may still "
                           "need the unfiltered logits.")
        want = top_p_filter(logits, p)
        got = _check_tensor(got, want, "Your filter")
        if got.dtype != want.dtype:
            raise Feedback(f"Your filter returned dtype {got.dtype}; return logits of the input's dtype "
                           f"{want.dtype}.")
        if torch.isnan(got).any():
            raise Feedback(f"With {name} your output has NaN: fill the dropped tokens with float('-inf').")
        finite = torch.isfinite(got)
        if not (torch.isneginf(got) | finite).all():
            raise Feedback("Your filter returned +inf somewhere: the dropped tokens must be float('-inf').")
        if finite.all() and not torch.isfinite(want).all():
            if torch.allclose(got.sum(-1), torch.ones_like(got.sum(-1)), atol=1e-4) and (got >= 0).all():
                raise Feedback("You returned probabilities. Return logits: the input's values for the kept "
                               "tokens and float('-inf') for the others, so that a later softmax (or a "
                               "further filter) still works.")
            if (got == 0).any():
                raise Feedback("You set the dropped tokens to 0, but a logit of 0 is still a likely "
                               "token (exp(0) = 1). Use float('-inf'), whose probability is exactly 0.")
        if not torch.allclose(got[finite], logits[finite], atol=1e-5, rtol=0):
            raise Feedback(f"With {name} you changed the values of the tokens you kept. Leave the kept logits "
                           "as they are (no renormalising, no softmax): the sampler renormalises when it "
                           "takes the softmax.")
        return finite

    def check() -> None:
        cases = _top_p_cases()
        kept = [kept_set(name, logits, p) for name, logits, p in cases]
        wrong = [k for k, (_, logits, p) in enumerate(cases) if not torch.equal(kept[k], torch.isfinite(
            top_p_filter(logits, p)))]
        if not wrong:
            return
        for mistake, message in _TOP_P_MISTAKES.items():  # a mistake is named only if it explains every case
            if all(torch.equal(kept[k], _keep_smallest(logits, p, mistake)) for k, (_, logits, p) in enumerate(cases)):
                raise Feedback(message)
        name, logits, p = cases[wrong[0]]
        got = kept[wrong[0]]
        if got.all():
            raise Feedback(f"With {name} your filter dropped nothing; the tokens outside the nucleus "
                           "must become float('-inf').")
        n_got = got.sum(-1).flatten()
        n_want = torch.isfinite(top_p_filter(logits, p)).sum(-1).flatten()
        if (n_got > n_want).any():
            raise Feedback(f"With {name} you kept {n_got.tolist()} tokens per row, but the smallest set with "
                           f"mass >= p has {n_want.tolist()}. Keep a token only while the mass of the "
                           "tokens before it (in descending order) is still below p.")
        raise Feedback(f"With {name} you kept {n_got.tolist()} tokens per row; top-p keeps {n_want.tolist()}: "
                       "the most likely tokens, in order, until their total probability reaches p.")

    return report("Exercise 1 (top-p filter)", check)


# --- exercise 2: classifier-free guidance ---------------------------------------------------------

def _guidance_variant(cond: torch.Tensor, uncond: torch.Tensor, scale: float, mistake: str) -> torch.Tensor:
    if mistake == "from_cond":
        return cond + scale * (cond - uncond)
    if mistake == "reversed":
        return uncond + scale * (uncond - cond)
    if mistake == "no_base":
        return scale * (cond - uncond)
    if mistake == "swapped_weights":
        return (1 - scale) * cond + scale * uncond
    if mistake == "probabilities":
        return uncond.softmax(-1) + scale * (cond.softmax(-1) - uncond.softmax(-1))
    raise ValueError(mistake)


_GUIDANCE_MISTAKES = {
    "from_cond": "You started from the conditional logits: cond + scale * (cond - uncond). Start from the "
                 "unconditional ones, uncond + scale * (cond - uncond), so that scale 1 gives cond back "
                 "(plain conditional sampling) and scale 0 gives uncond (the caption ignored).",
    "reversed": "Your step points the wrong way: uncond + scale * (uncond - cond) moves *away* from the "
                "caption. The direction that adds the caption is cond - uncond.",
    "no_base": "You returned only the scaled difference, scale * (cond - uncond). Add it to the "
               "unconditional logits: uncond + scale * (cond - uncond).",
    "swapped_weights": "The weights are swapped: with scale 0 your mix gives the conditional logits and with "
                       "scale 1 the unconditional ones. It should be the other way round: "
                       "uncond + scale * (cond - uncond), i.e. scale * cond + (1 - scale) * uncond.",
    "probabilities": "You mixed probabilities (after a softmax). Guidance mixes logits (or log-probabilities): "
                     "a mix of probabilities with scale > 1 can go negative, which no distribution can be.",
}


def check_guidance(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> bool:
    """Exercise 2: `fn(cond, uncond, scale)` is uncond + scale * (cond - uncond)."""

    def check() -> None:
        gen = torch.Generator().manual_seed(11)
        cond, uncond = 2 * torch.randn(3, 40, generator=gen), 2 * torch.randn(3, 40, generator=gen)
        results = {}
        for scale in (1.0, 0.0, 3.0, 1.5, 7.5):
            c, u = cond.clone(), uncond.clone()
            got = call_learner(fn, f"Your guidance (scale {scale})", c, u, scale)
            if not (torch.equal(c, cond) and torch.equal(u, uncond)):
                raise Feedback("Your function changed cond or uncond in place; return a new tensor instead.")
            results[scale] = _check_tensor(got, guided_logits(cond, uncond, scale), "Your guidance")

        def same(a: torch.Tensor, b: torch.Tensor) -> bool:  # equal up to a constant per row: one distribution
            return torch.allclose(a.log_softmax(-1), b.log_softmax(-1), atol=1e-4, rtol=1e-5)

        wrong = [scale for scale, got in results.items() if not same(got, guided_logits(cond, uncond, scale))]
        if not wrong:
            return
        for mistake, message in _GUIDANCE_MISTAKES.items():  # named only if it explains every scale
            if all(torch.allclose(got, _guidance_variant(cond, uncond, scale, mistake), atol=1e-4)
                   for scale, got in results.items()):
                raise Feedback(message)
        scale = wrong[0]
        difference = (results[scale] - guided_logits(cond, uncond, scale)).abs().max()
        raise Feedback(f"At scale {scale} your result differs from uncond + scale * (cond - uncond) (largest "
                       f"difference {difference:.3g}). Check: scale 1 must return cond, scale 0 must return "
                       "uncond.")

    return report("Exercise 2 (classifier-free guidance)", check)


# --- exercise 3: image completion with the KV cache -----------------------------------------------

def _tiny_model() -> DalleTransformer:
    """A small, randomly initialised transformer: its samples are seeded, varied, and cheap."""
    return DalleTransformer(get_preset("tiny").transformer, generator=torch.Generator().manual_seed(0)).eval()


class _CallCounter:
    """Counts the model's forward, prefill and step calls by wrapping them on the instance."""

    def __init__(self, model: DalleTransformer):
        self.counts = {"forward": 0, "prefill": 0, "step": 0}
        for name in self.counts:
            setattr(model, name, self._wrap(name, getattr(model, name)))

    def _wrap(self, name: str, method: Callable) -> Callable:
        def counted(*args, **kwargs):
            self.counts[name] += 1
            return method(*args, **kwargs)
        return counted


def check_completion(fn: Callable[..., torch.Tensor]) -> bool:
    """Exercise 3: `fn(model, text_ids, prefix, generator)` keeps `prefix` and samples the rest with the cache,
    drawing the same tokens as `generate_image_tokens(model, text_ids, prefix=prefix, generator=...)`."""

    def check() -> None:
        model = _tiny_model()
        config = model.config
        N, g = config.image_seq_len, config.image_grid
        data = torch.Generator().manual_seed(3)
        text = torch.randint(1, config.text_vocab_size, (3, config.text_seq_len), generator=data)
        image = torch.randint(0, config.image_vocab_size, (3, N), generator=data)
        for n in (g, 0, 2 * g + 1, N - 1):
            prefix = image[:, :n]
            want = generate_image_tokens(model, text, prefix=prefix, generator=torch.Generator().manual_seed(n))
            counter = _CallCounter(model)
            what = f"Your completion (a prefix of {n} of the {N} tokens)"
            got = call_learner(fn, what, model, text.clone(), prefix.clone(), torch.Generator().manual_seed(n),
                        hint=" Hint: logits, cache = model.prefill(text_ids, prefix) reads the caption and the "
                             "prefix; then draw token i with sample_from_logits(logits, generator) and feed it "
                             "with logits = model.step(tokens[:, i], cache), except after the last token.")
            for name in counter.counts:  # back to the plain methods
                delattr(model, name)
            if not isinstance(got, torch.Tensor):
                raise Feedback(f"{what} should return a torch.Tensor, but it returned {type(got).__name__}.")
            if got.shape != want.shape:
                if got.shape == (3, N - n):
                    raise Feedback(f"{what} returned only the {N - n} new tokens. Return the whole image, "
                                   f"[batch, {N}]: the prefix first, then the tokens you sampled.")
                raise Feedback(f"{what} returned shape {tuple(got.shape)}; it should be {tuple(want.shape)}: "
                               f"every one of the {N} image tokens of each of the 3 captions.")
            if got.dtype.is_floating_point:
                raise Feedback("Return integer token ids (torch.long), not floats.")
            if counter.counts["forward"]:
                raise Feedback(f"{what} called the model's full forward pass {counter.counts['forward']} times, "
                               "which re-reads the whole prefix for every token. Read the caption and prefix "
                               "once with model.prefill(text_ids, prefix), then one token per step with "
                               "model.step(token, cache).")
            if counter.counts["prefill"] > 1:
                raise Feedback(f"{what} called model.prefill {counter.counts['prefill']} times. Call it once, for "
                               "all the rows together: the cache it returns already holds the caption and the prefix; model.step adds one "
                               "token at a time.")
            if not torch.equal(got[:, :n], prefix):
                raise Feedback(f"{what} did not keep the prefix: the first {n} tokens of each row must be the "
                               "given ones, unchanged. Sample only the tokens after them.")
            if torch.equal(got, want):
                continue
            greedy = generate_image_tokens(model, text, prefix=prefix, temperature=0)
            if torch.equal(got, greedy):
                raise Feedback(f"{what} took the most likely token every time (greedy). Draw it instead: "
                               "sample_from_logits(logits, generator), with the generator you were given.")
            row, col = (got != want).nonzero()[0].tolist()
            raise Feedback(f"{what}: token {col} of row {row} differs from generate_image_tokens with the same "
                           f"seed. Draw one token per step for all rows at once, "
                           "tokens[:, i] = sample_from_logits(logits, generator), then feed exactly that "
                           "column back with model.step(tokens[:, i], cache) to get the next logits.")

    return report("Exercise 3 (image completion with the KV cache)", check)
