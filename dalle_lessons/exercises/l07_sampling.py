"""Self-checks for lesson 07 (sampling).

Each exercise asks for something the library does not implement: a min-p filter (the library has
top-k and top-p), guidance composed from several captions with signed weights (the library's
`guided_logits` takes one caption and one scale), and the per-attribute rates behind the experiment
on guidance (the lesson counts only whole images the judge accepts). Each check compares the
learner's function with a reference written here and, when they differ, tries the usual mistakes
and shortcuts (the library's filters, the lesson's own functions) so that the feedback can name the
one that was made. Every check takes a fraction of a second and needs no checkpoint.
"""
from __future__ import annotations

import numbers
from typing import Callable, Sequence

import torch

from dalle_lessons import judge
from dalle_lessons.exercises import Feedback, call_learner, report
from dalle_lessons.sampling import guided_logits, top_k_filter, top_p_filter
from dalle_lessons.shapes import Scene, ShapeObject, render, to_tensor


def _check_logits(got, want: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise Feedback(f"{what} should return a torch.Tensor, but it returned {type(got).__name__}.")
    if got.shape != want.shape:
        raise Feedback(f"{what} returned shape {tuple(got.shape)}; it should keep the input's shape "
                       f"{tuple(want.shape)} (one logit per token, for every row).")
    return got


# --- exercise 1: the min-p filter -------------------------------------------------------------------

def min_p_reference(logits: torch.Tensor, p_min: float) -> torch.Tensor:
    """Keep the tokens whose probability is at least p_min times the row's top probability."""
    probs = logits.softmax(-1)
    return logits.masked_fill(probs < p_min * probs.amax(-1, keepdim=True), float("-inf"))


def min_p_cases() -> list[tuple[str, torch.Tensor, float]]:
    """(description, logits, p_min): hand-made rows, a sure and an unsure row, random batches."""
    gen = torch.Generator().manual_seed(7)
    probs = torch.tensor([0.55, 0.25, 0.12, 0.08])
    return [
        ("probabilities [0.55, 0.25, 0.12, 0.08] and p_min = 0.2", probs.log(), 0.2),
        ("probabilities [0.08, 0.25, 0.55, 0.12] (not sorted) and p_min = 0.4",
         probs[[3, 1, 0, 2]].log(), 0.4),
        ("a sure row [0.9, 0.05, 0.03, 0.02] and an unsure row [0.3, 0.28, 0.22, 0.2], p_min = 0.5",
         torch.tensor([[0.9, 0.05, 0.03, 0.02], [0.3, 0.28, 0.22, 0.2]]).log(), 0.5),
        ("a batch of 4 rows of 50 random logits and p_min = 0.1", 2 * torch.randn(4, 50, generator=gen), 0.1),
        ("logits of shape [2, 3, 20] and p_min = 0.05", 3 * torch.randn(2, 3, 20, generator=gen), 0.05),
        ("a batch of 3 rows and p_min = 1.0 (only the most likely token survives)",
         torch.randn(3, 30, generator=gen), 1.0),
    ]


def _min_p_variant(logits: torch.Tensor, p_min: float, mistake: str) -> torch.Tensor:
    """The kept set (bool) as a common mistake or shortcut computes it."""
    probs = logits.softmax(-1)
    if mistake == "absolute":
        return probs >= p_min
    if mistake == "scaled_logits":
        return logits >= p_min * logits.amax(-1, keepdim=True)
    if mistake == "inverted":
        return probs < p_min * probs.amax(-1, keepdim=True)
    if mistake == "global_max":
        return probs >= p_min * probs.max()
    if mistake == "top_p":
        return torch.isfinite(top_p_filter(logits, p_min))
    if mistake == "top_p_complement":
        return torch.isfinite(top_p_filter(logits, max(1.0 - p_min, 1e-9)))
    raise ValueError(mistake)


_MIN_P_MISTAKES = {
    "absolute": "You compared each probability with p_min itself. Min-p's threshold moves with the model's "
                "confidence: keep a token when its probability is at least p_min times the most likely "
                "token's probability in the same row.",
    "scaled_logits": "You multiplied the largest *logit* by p_min. Min-p compares probabilities: "
                     "p >= p_min * p_max (in logits, logit >= max logit + log(p_min)). A logit can be "
                     "negative, so scaling it says nothing about the probability.",
    "inverted": "You kept the tokens *below* the threshold, the unlikely tail. Keep those at or above it: "
                "probs >= p_min * p_max.",
    "global_max": "You took the largest probability of the whole tensor. The threshold is per row: "
                  "probs.amax(-1, keepdim=True) (each row is its own distribution, and a sure row must not "
                  "set the threshold of an unsure one).",
    "top_p": "That is top-p with p = p_min: a fixed amount of probability mass, the library's top_p_filter. "
             "Min-p keeps a token by comparing its own probability with the top token's: "
             "probs >= p_min * probs.amax(-1, keepdim=True).",
    "top_p_complement": "That is top-p with p = 1 - p_min: a fixed amount of probability mass. Min-p keeps a "
                        "token by comparing its own probability with the top token's: "
                        "probs >= p_min * probs.amax(-1, keepdim=True).",
}


def check_min_p(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> bool:
    """Exercise 1: `fn(logits, p_min)` keeps tokens with p >= p_min * p_max (others -inf), values unchanged."""

    def kept_set(name: str, logits: torch.Tensor, p_min: float) -> torch.Tensor:
        original = logits.clone()
        got = call_learner(fn, f"Your filter (with {name})", logits, p_min,
                           hint=" Hint: probs = logits.softmax(-1); probs.amax(-1, keepdim=True) is each row's "
                                "top probability.")
        if not torch.equal(logits, original):
            raise Feedback("Your filter changed its input tensor in place. Return a new tensor instead "
                           "(logits.masked_fill(...), not logits.masked_fill_(...)): the caller may still "
                           "need the unfiltered logits.")
        want = min_p_reference(logits, p_min)
        got = _check_logits(got, want, "Your filter")
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
        if fn is top_p_filter or fn is top_k_filter:
            raise Feedback(f"That is the library's {fn.__name__}, not min-p: write the filter yourself. Min-p "
                           "keeps a token when its probability is at least p_min times the top token's.")
        cases = min_p_cases()
        kept = [kept_set(name, logits, p_min) for name, logits, p_min in cases]
        wrong = [k for k, (_, logits, p_min) in enumerate(cases)
                 if not torch.equal(kept[k], torch.isfinite(min_p_reference(logits, p_min)))]
        if not wrong:
            return
        for mistake, message in _MIN_P_MISTAKES.items():  # a mistake is named only if it explains every case
            if all(torch.equal(kept[k], _min_p_variant(logits, p_min, mistake))
                   for k, (_, logits, p_min) in enumerate(cases)):
                raise Feedback(message)
        name, logits, p_min = cases[wrong[0]]
        got = kept[wrong[0]]
        if not got.any(-1).all():
            raise Feedback(f"With {name} a row lost every token. The most likely token always passes "
                           "(p_max >= p_min * p_max whenever p_min <= 1): compare with each row's own top "
                           "probability.")
        if got.all():
            raise Feedback(f"With {name} your filter dropped nothing; the tokens below p_min times the top "
                           "probability must become float('-inf').")
        n_got = got.sum(-1).flatten().tolist()
        n_want = torch.isfinite(min_p_reference(logits, p_min)).sum(-1).flatten().tolist()
        raise Feedback(f"With {name} you kept {n_got} tokens per row; min-p keeps {n_want}: every token whose "
                       "probability is at least p_min times the row's top probability.")

    return report("Exercise 1 (min-p filter)", check)


# --- exercise 2: composed guidance, with negation ---------------------------------------------------

def composed_reference(uncond: torch.Tensor, conds: Sequence[torch.Tensor], weights: Sequence[float]
                       ) -> torch.Tensor:
    """uncond + sum_i weights[i] * (conds[i] - uncond)."""
    out = uncond.clone()
    for cond, weight in zip(conds, weights):
        out = out + weight * (cond - uncond)
    return out


def composed_cases() -> list[tuple[str, torch.Tensor, list[torch.Tensor], list[float]]]:
    """(description, uncond, conds, weights): one caption (plain guidance), AND, NOT, three captions."""
    gen = torch.Generator().manual_seed(11)

    def logits(*shape: int) -> torch.Tensor:
        return 2 * torch.randn(*shape, generator=gen)

    return [
        ("one caption with weight 1 (plain conditional sampling)", logits(3, 40), [logits(3, 40)], [1.0]),
        ("one caption with weight 3 (classifier-free guidance at scale 3)", logits(3, 40), [logits(3, 40)], [3.0]),
        ("two captions with weights [1.5, 1.5] (both at once)", logits(3, 40), [logits(3, 40), logits(3, 40)],
         [1.5, 1.5]),
        ("two captions with weights [2, -1] (the first, and not the second)", logits(3, 40),
         [logits(3, 40), logits(3, 40)], [2.0, -1.0]),
        ("three captions with weights [1, 2, -0.5], logits of shape [2, 3, 30]", logits(2, 3, 30),
         [logits(2, 3, 30), logits(2, 3, 30), logits(2, 3, 30)], [1.0, 2.0, -0.5]),
        ("two captions with weights [0, 0] (every caption ignored)", logits(3, 40), [logits(3, 40), logits(3, 40)],
         [0.0, 0.0]),
    ]


def _composed_variant(uncond: torch.Tensor, conds: list[torch.Tensor], weights: list[float], mistake: str
                      ) -> torch.Tensor:
    steps = [w * (c - uncond) for c, w in zip(conds, weights)]
    if mistake == "first_only":
        return uncond + steps[0]
    if mistake == "uncond_per_caption":
        return sum(uncond + s for s in steps)
    if mistake == "no_base":
        return sum(steps)
    if mistake == "from_first":
        return conds[0] + sum(steps)
    if mistake == "signs_dropped":
        return uncond + sum(abs(w) * (c - uncond) for c, w in zip(conds, weights))
    if mistake == "averaged":
        return uncond + sum(steps) / len(steps)
    if mistake == "no_subtraction":
        return uncond + sum(w * c for c, w in zip(conds, weights))
    if mistake == "reversed":
        return uncond - sum(steps)
    if mistake == "probabilities":
        return uncond.softmax(-1) + sum(w * (c.softmax(-1) - uncond.softmax(-1)) for c, w in zip(conds, weights))
    raise ValueError(mistake)


_COMPOSED_MISTAKES = {
    "first_only": "You used only the first caption. Every caption adds its own step: "
                  "uncond + sum over i of weights[i] * (conds[i] - uncond).",
    "uncond_per_caption": "You added the unconditional logits once per caption (e.g. a sum of guided_logits, one "
                          "per caption). Start from uncond once, then add each caption's step "
                          "weights[i] * (conds[i] - uncond).",
    "no_base": "You returned only the sum of the steps. Add it to the unconditional logits: "
               "uncond + sum of weights[i] * (conds[i] - uncond).",
    "from_first": "You started from the first caption's logits. Start from the unconditional ones, so that "
                  "weights [1] give conds[0] back and weights of 0 give uncond.",
    "signs_dropped": "Your negative weights push *towards* their caption: you dropped the sign (abs, or a "
                     "squared weight). A weight of -1 must step away from that caption: "
                     "-1 * (conds[i] - uncond).",
    "averaged": "You averaged the steps. Composition adds them: each caption pulls with its own weight, "
                "uncond + sum of weights[i] * (conds[i] - uncond); with one caption and weight s, that is "
                "classifier-free guidance at scale s.",
    "no_subtraction": "You added weights[i] * conds[i] without subtracting uncond. The step of caption i is "
                      "the *difference* it makes, conds[i] - uncond.",
    "reversed": "Your steps point the wrong way: uncond - sum of weights[i] * (conds[i] - uncond) moves away "
                "from every caption with a positive weight.",
    "probabilities": "You mixed probabilities (after a softmax). Guidance mixes logits (or log-probabilities): "
                     "a mix of probabilities with a weight above 1, or a negative one, can go below 0.",
}


def check_composed_guidance(fn: Callable[[torch.Tensor, list[torch.Tensor], list[float]], torch.Tensor]) -> bool:
    """Exercise 2: `fn(uncond, conds, weights)` is uncond + sum_i weights[i] * (conds[i] - uncond)."""

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:  # equal up to a constant per row: one distribution
        return bool(torch.allclose(a.log_softmax(-1), b.log_softmax(-1), atol=1e-4, rtol=1e-5))

    def check() -> None:
        if fn is guided_logits:
            raise Feedback("That is the library's guided_logits, which mixes one caption with one scale. Write "
                           "the composition yourself: start from uncond and add, for every caption i, "
                           "weights[i] * (conds[i] - uncond).")
        cases = composed_cases()
        results = []
        for name, uncond, conds, weights in cases:
            u, cs = uncond.clone(), [c.clone() for c in conds]
            got = call_learner(fn, f"Your composition (with {name})", u, cs, list(weights),
                               hint=" Hint: conds is a list of tensors shaped like uncond, weights a list of "
                                    "numbers; loop over zip(conds, weights).")
            if not (torch.equal(u, uncond) and all(torch.equal(a, b) for a, b in zip(cs, conds))):
                raise Feedback("Your function changed uncond or one of conds in place; build a new tensor "
                               "instead (out = uncond + ..., not uncond += ...).")
            got = _check_logits(got, uncond, "Your composition")
            if not torch.isfinite(got).all():
                raise Feedback(f"With {name} your logits are not all finite; nothing here should give "
                               "inf or NaN.")
            results.append(got)
        wrong = [k for k, (_, u, cs, ws) in enumerate(cases) if not same(results[k], composed_reference(u, cs, ws))]
        if not wrong:
            return
        for mistake, message in _COMPOSED_MISTAKES.items():  # named only if it explains every case
            if all(same(results[k], _composed_variant(u, cs, ws, mistake)) for k, (_, u, cs, ws) in enumerate(cases)):
                raise Feedback(message)
        name, uncond, conds, weights = cases[wrong[0]]
        if same(results[wrong[0]], uncond) and any(weights):
            raise Feedback(f"With {name} you returned the unconditional logits: the captions' steps are missing.")
        raise Feedback(f"With {name} your logits give another distribution than uncond + sum of "
                       "weights[i] * (conds[i] - uncond). One weight of 1 must give that caption's logits, "
                       "weights of 0 the unconditional ones, and a negative weight must step away from its caption.")

    return report("Exercise 2 (composed guidance)", check)


# --- exercise 3 (experiment): what guidance fixes and what it breaks ---------------------------------

def attribute_rates_reference(images: torch.Tensor, caption: str) -> dict[str, float]:
    """For each attribute the judge checks for this caption (and 'all'), the fraction of images right."""
    scores = [judge.score(image, caption) for image in images]
    rates = {name: sum(s.attributes[name] for s in scores) / len(scores) for name in scores[0].attributes}
    rates["all"] = sum(s.all_correct for s in scores) / len(scores)
    return rates


def _images(*scenes: Scene) -> torch.Tensor:
    return torch.stack([to_tensor(render(scene, 32)) for scene in scenes])


def rate_cases() -> list[tuple[str, torch.Tensor, str]]:
    """(description, images [B, 3, 32, 32], caption): rendered scenes, each set partly matching its caption."""
    O = ShapeObject
    red_circle, blue_triangle = O("circle", "red", "large", 0, 0), O("triangle", "blue", "small", 2, 0)
    one = _images(Scene((red_circle,), "black"),                                      # right
                  Scene((O("circle", "red", "small", 0, 0),), "black"),               # size
                  Scene((O("circle", "red", "large", 1, 2),), "black"),               # position
                  Scene((O("square", "red", "large", 0, 0),), "black"),               # shape
                  Scene((O("circle", "green", "small", 2, 1),), "white"),             # color, size, position
                  Scene((red_circle, O("cross", "yellow", "small", 2, 2)), "black"))  # count
    two = _images(Scene((red_circle, blue_triangle), "black"),                                      # right
                  Scene((O("circle", "red", "large", 2, 0), O("triangle", "blue", "small", 0, 0)), "black"),  # relation
                  Scene((O("circle", "blue", "large", 0, 1), O("triangle", "red", "small", 2, 1)), "white"),  # colors
                  Scene((O("circle", "red", "large", 0, 2), O("square", "blue", "small", 1, 2)), "black"),    # shape
                  Scene((red_circle,), "white"),                                                  # count
                  Scene((O("triangle", "red", "large", 0, 0), O("circle", "blue", "small", 2, 0)), "black"))  # shapes swapped
    background = _images(Scene((O("cross", "purple", "small", 1, 1),), "white"),
                         Scene((O("cross", "purple", "large", 0, 2),), "black"),
                         Scene((O("cross", "cyan", "small", 2, 0),), "white"),
                         Scene((O("diamond", "purple", "small", 1, 0),), "white"))
    return [
        ("6 images and the caption 'a large red circle at the top left'", one, "a large red circle at the top left"),
        ("6 images and the caption 'a red circle above a blue triangle'", two, "a red circle above a blue triangle"),
        ("4 images and the caption 'a purple cross on a white background'", background,
         "a purple cross on a white background"),
    ]


def _describe_rates(rates: dict) -> str:
    return "{" + ", ".join(f"'{k}': {v:.3g}" if isinstance(v, numbers.Real) else f"'{k}': {v!r}"
                           for k, v in rates.items()) + "}"


def check_attribute_rates(fn: Callable[[torch.Tensor, str], dict[str, float]]) -> bool:
    """Exercise 3: `fn(images, caption)` -> {attribute: fraction of images right, ..., 'all': fraction all right}."""

    def check() -> None:
        if fn is judge.score:
            raise Feedback("That is the library's judge.score, which scores one image. Write a function that "
                           "scores every image of the batch with it and returns the fraction right per attribute.")
        for name, images, caption in rate_cases():
            want = attribute_rates_reference(images, caption)
            what = f"Your function (with {name})"
            copy = images.clone()
            got = call_learner(fn, what, copy, caption,
                               hint=" Hint: judge.score(image, caption) has .attributes (a dict of booleans) and "
                                    ".all_correct; score each image of the batch.")
            if not torch.equal(copy, images):
                raise Feedback("Your function changed the images in place; leave them as they are.")
            if isinstance(got, numbers.Real) and not isinstance(got, bool):
                if got == want["all"] * len(images):
                    raise Feedback(f"{what} returned {got}, the number of images the judge accepts: that is "
                                   "section 1's judge_row. Return a dict instead: for each attribute the judge "
                                   "checks, the fraction of images that got it right, and 'all' for the images "
                                   "right in every attribute.")
                raise Feedback(f"{what} returned the number {got}; return a dict of fractions, one per attribute "
                               "plus 'all'.")
            if not isinstance(got, dict):
                raise Feedback(f"{what} should return a dict (attribute name -> fraction of images), but it "
                               f"returned {type(got).__name__}.")
            if "all" not in got:
                raise Feedback(f"{what}: your dict has no 'all' entry. Add it: the fraction of images right in "
                               "every attribute at once (judge.score(...).all_correct).")
            missing = [k for k in want if k not in got]
            extra = [k for k in got if k not in want]
            if missing:
                raise Feedback(f"{what}: your dict lacks {missing}. Report every attribute that "
                               "judge.score(image, caption).attributes holds for this caption (the count "
                               "included), plus 'all'.")
            if extra:
                raise Feedback(f"{what}: your dict has {extra}, which the judge does not check for this caption "
                               f"(it checks {list(want)[:-1]}). Report exactly the keys of "
                               "judge.score(image, caption).attributes, plus 'all'.")
            values = {}
            for key, value in got.items():
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    value = value.item()
                if not isinstance(value, numbers.Real):
                    raise Feedback(f"{what}: the value for {key!r} is a {type(value).__name__}; make every value "
                                   "a number, the fraction of images (from 0 to 1).")
                values[key] = float(value)
            if all(abs(values[k] - want[k]) < 1e-6 for k in want):
                continue
            n = len(images)
            if all(abs(values[k] - n * want[k]) < 1e-6 for k in want):
                raise Feedback(f"{what}: you returned counts of images. Return fractions: divide by the "
                               f"number of images ({n}).")
            if all(abs(values[k] - 100 * want[k]) < 1e-4 for k in want):
                raise Feedback(f"{what}: you returned percentages. Return fractions from 0 to 1.")
            attributes = [k for k in want if k != "all"]
            if all(abs(values[k] - want[k]) < 1e-6 for k in attributes):
                mean = sum(want[k] for k in attributes) / len(attributes)
                product = 1.0
                for k in attributes:
                    product *= want[k]
                if abs(values["all"] - mean) < 1e-6:
                    raise Feedback(f"{what}: your 'all' is the mean of the attribute rates ({mean:.3g}); it should "
                                   f"be the fraction of images right in every attribute at once ({want['all']:.3g}). "
                                   "Count the images whose judge.score(...).all_correct is True.")
                if abs(values["all"] - product) < 1e-6:
                    raise Feedback(f"{what}: your 'all' is the product of the attribute rates ({product:.3g}), "
                                   "which assumes the attributes fail independently. They do not: count the "
                                   "images right in every attribute at once (judge.score(...).all_correct), "
                                   f"{want['all']:.3g} here.")
                raise Feedback(f"{what}: your attribute rates are right, but 'all' is {values['all']:.3g}; the "
                               f"fraction of images right in every attribute at once is {want['all']:.3g}.")
            raise Feedback(f"{what}: you returned {_describe_rates(values)}; the judge's readings give "
                           f"{_describe_rates(want)}. For each key of judge.score(image, caption).attributes, "
                           "the fraction of the images whose value is True.")

    return report("Exercise 3 (what guidance fixes and what it breaks)", check)
