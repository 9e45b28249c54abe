"""Lesson 07's self-checks: right answers pass, wrong or unfinished ones fail with a useful message, and
neither the library's own functions nor the lesson's earlier ones pass for the learner's."""
import math

import pytest
import torch

from dalle_lessons import judge
from dalle_lessons.exercises.l07_sampling import (check_attribute_rates, check_composed_guidance, check_min_p,
                                                  min_p_cases, rate_cases)
from dalle_lessons.sampling import guided_logits, top_k_filter, top_p_filter
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: the min-p filter -------------------------------------------------------------------

def min_p(logits, p_min):
    probs = logits.softmax(-1)
    return logits.masked_fill(probs < p_min * probs.amax(-1, keepdim=True), float("-inf"))


def min_p_in_logits(logits, p_min):
    """The same test in log space: logit >= max logit + log(p_min)."""
    return logits.masked_fill(logits < logits.amax(-1, keepdim=True) + math.log(p_min), float("-inf"))


def min_p_loops(logits, p_min):
    out = torch.full_like(logits, float("-inf"))
    flat_in, flat_out = logits.reshape(-1, logits.shape[-1]), out.view(-1, logits.shape[-1])
    for r, row in enumerate(flat_in):
        probs = row.softmax(0)
        for token, p in enumerate(probs.tolist()):
            if p >= p_min * probs.max().item():
                flat_out[r, token] = row[token]
    return out


def my_top_k(logits, k):
    """Lesson 07's own top-k (section 1)."""
    kth_largest = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def my_top_p(logits, p):
    """Lesson 07's own top-p (section 1)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs
    keep = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before < p)
    return logits.masked_fill(~keep, float("-inf"))


def test_min_p_cases_keep_clear_of_the_threshold():
    """No token sits within 0.1 % of its threshold, so float rounding cannot decide a case."""
    for _, logits, p_min in min_p_cases():
        probs = logits.softmax(-1)
        top = probs.amax(-1, keepdim=True)
        others = probs[probs < top]
        assert ((others - p_min * top.expand_as(probs)[probs < top]).abs() > 1e-3 * others).all()


@pytest.mark.parametrize("right", [min_p, min_p_in_logits, min_p_loops])
def test_min_p_right_answers(capsys, right):
    assert_passes(check_min_p, right, capsys)


def test_min_p_not_attempted(capsys):
    assert_fails(check_min_p, not_attempted, capsys, "not attempted")


def _keep(logits, keep):
    return logits.masked_fill(~keep, float("-inf"))


@pytest.mark.parametrize("wrong, phrase", [
    (lambda l, p: _keep(l, l.softmax(-1) >= p), "compared each probability with p_min itself"),
    (lambda l, p: _keep(l, l >= p * l.amax(-1, keepdim=True)), "multiplied the largest *logit*"),
    (lambda l, p: _keep(l, l.softmax(-1) < p * l.softmax(-1).amax(-1, keepdim=True)), "kept the tokens *below*"),
    (lambda l, p: _keep(l, l.softmax(-1) >= p * l.softmax(-1).max()), "largest probability of the whole tensor"),
    (lambda l, p: _keep(l, l.softmax(-1) > p * l.softmax(-1).amax(-1, keepdim=True)), "a row lost every token"),
    (lambda l, p: min_p(l, p).softmax(-1), "You returned probabilities"),
    (lambda l, p: min_p(l, p).nan_to_num(neginf=0.0), "set the dropped tokens to 0"),
    (lambda l, p: min_p(l, p).log_softmax(-1), "changed the values"),
    (lambda l, p: min_p(l, p)[..., :-1], "keep the input's shape"),
    (lambda l, p: min_p(l, p).tolist(), "should return a torch.Tensor"),
    (lambda l, p: min_p(l, p).double(), "dtype"),
    (lambda l, p: l.clone(), "dropped nothing"),
    (lambda l, p: l.masked_fill(~torch.isfinite(min_p(l, p)), float("nan")), "NaN"),
    (lambda l, p: l.masked_fill_(~torch.isfinite(min_p(l, p)), float("-inf")), "in place"),
    (lambda l, p: my_top_k(l, 1), "min-p keeps"),
])
def test_min_p_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_min_p, wrong, capsys, phrase)


@pytest.mark.parametrize("shortcut, phrase", [
    (top_p_filter, "library's top_p_filter"),
    (top_k_filter, "library's top_k_filter"),
    (lambda l, p: top_p_filter(l, p), "That is top-p with p = p_min"),
    (lambda l, p: top_p_filter(l, max(1 - p, 1e-6)), "That is top-p with p = 1 - p_min"),
    (lambda l, p: top_p_filter(l, 1 - p), "raised ValueError"),  # p_min = 1 asks top-p for p = 0
    (my_top_k, "raised TypeError"),  # the lesson's top-k: p_min is no count of tokens
    (my_top_p, "That is top-p with p = p_min"),  # the lesson's top-p
])
def test_min_p_rejects_the_library_and_the_lesson(capsys, shortcut, phrase):
    assert_fails(check_min_p, shortcut, capsys, phrase)


# --- exercise 2: composed guidance --------------------------------------------------------------

def composed(uncond, conds, weights):
    out = uncond
    for cond, weight in zip(conds, weights):
        out = out + weight * (cond - uncond)
    return out


def composed_stacked(uncond, conds, weights):
    w = torch.tensor(weights, dtype=uncond.dtype).view(-1, *[1] * uncond.dim())
    return uncond + (w * (torch.stack(conds) - uncond)).sum(0)


def composed_as_a_mix(uncond, conds, weights):
    """(1 - sum w) * uncond + sum w_i * cond_i: the same logits, written as one weighted mix."""
    return (1 - sum(weights)) * uncond + sum(w * c for c, w in zip(conds, weights))


def composed_from_guided_logits(uncond, conds, weights):
    """Each caption's guided logits contribute their step; uncond is counted once."""
    return uncond + sum(guided_logits(c, uncond, w) - uncond for c, w in zip(conds, weights))


def composed_log_probs(uncond, conds, weights):
    return composed(uncond.log_softmax(-1), [c.log_softmax(-1) for c in conds], weights)


@pytest.mark.parametrize("right", [composed, composed_stacked, composed_as_a_mix, composed_from_guided_logits,
                                   composed_log_probs])
def test_composed_right_answers(capsys, right):
    assert_passes(check_composed_guidance, right, capsys)


def test_composed_not_attempted(capsys):
    assert_fails(check_composed_guidance, not_attempted, capsys, "not attempted")


def _steps(u, cs, ws):
    return [w * (c - u) for c, w in zip(cs, ws)]


@pytest.mark.parametrize("wrong, phrase", [
    (lambda u, cs, ws: u + _steps(u, cs, ws)[0], "used only the first caption"),
    (lambda u, cs, ws: sum(guided_logits(c, u, w) for c, w in zip(cs, ws)), "once per caption"),
    (lambda u, cs, ws: sum(_steps(u, cs, ws)), "only the sum of the steps"),
    (lambda u, cs, ws: cs[0] + sum(_steps(u, cs, ws)), "started from the first caption's logits"),
    (lambda u, cs, ws: u + sum(abs(w) * (c - u) for c, w in zip(cs, ws)), "dropped the sign"),
    (lambda u, cs, ws: u + sum(_steps(u, cs, ws)) / len(cs), "averaged the steps"),
    (lambda u, cs, ws: u + sum(w * c for c, w in zip(cs, ws)), "without subtracting uncond"),
    (lambda u, cs, ws: u - sum(_steps(u, cs, ws)), "point the wrong way"),
    (lambda u, cs, ws: u.softmax(-1) + sum(w * (c.softmax(-1) - u.softmax(-1)) for c, w in zip(cs, ws)),
     "mixed probabilities"),
    (lambda u, cs, ws: u.add_(sum(_steps(u, cs, ws))), "in place"),
    (lambda u, cs, ws: composed(u, cs, ws)[0], "keep the input's shape"),
    (lambda u, cs, ws: None, "returned NoneType"),
    (lambda u, cs, ws: composed(u, cs, ws) / 0 * 0, "not all finite"),
    (lambda u, cs, ws: u.clone(), "the captions' steps are missing"),
    (lambda u, cs, ws: u + sum(w * w * (c - u) for c, w in zip(cs, ws)), "another distribution"),
])
def test_composed_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_composed_guidance, wrong, capsys, phrase)


@pytest.mark.parametrize("shortcut, phrase", [
    (guided_logits, "library's guided_logits"),
    (lambda u, cs, ws: guided_logits(cs, u, ws), "raised TypeError"),
    (lambda u, cs, ws: guided_logits(cs[0], u, ws[0]), "used only the first caption"),
])
def test_composed_rejects_the_library(capsys, shortcut, phrase):
    assert_fails(check_composed_guidance, shortcut, capsys, phrase)


# --- exercise 3: the rates behind the guidance experiment -------------------------------------------

def rates(images, caption):
    scores = [judge.score(image, caption) for image in images]
    out = {name: sum(s.attributes[name] for s in scores) / len(scores) for name in scores[0].attributes}
    out["all"] = sum(s.all_correct for s in scores) / len(scores)
    return out


def rates_as_tensors(images, caption):
    """From the readings, with tensor values: torch.tensor(bools).float().mean()."""
    scores = [judge.score_reading(judge.read_image(image), judge.parse_caption(caption)) for image in images]
    out = {k: torch.tensor([s.attributes[k] for s in scores]).float().mean() for k in scores[0].attributes}
    out["all"] = torch.tensor([s.all_correct for s in scores]).float().mean()
    return out


@pytest.mark.parametrize("right", [rates, rates_as_tensors])
def test_rates_right_answers(capsys, right):
    assert_passes(check_attribute_rates, right, capsys)


def test_rates_not_attempted(capsys):
    assert_fails(check_attribute_rates, not_attempted, capsys, "not attempted")


def judge_row(images, caption):
    """Lesson 07's own counter (section 1): how many images the judge accepts."""
    return sum(judge.score(image, caption).all_correct for image in images)


def _with(caption_rates, **changes):
    return {**caption_rates, **changes}


def _all_as(images, caption, how):
    out = rates(images, caption)
    attributes = [v for k, v in out.items() if k != "all"]
    out["all"] = how(attributes)
    return out


FIXED = {"count": 0.75, "shape": 0.78, "color": 0.94, "relation": 0.97, "all": 0.66}  # a plausible sweep row


@pytest.mark.parametrize("wrong, phrase", [
    (judge_row, "that is section 1's judge_row"),
    (lambda images, caption: 0.5, "returned the number 0.5"),
    (lambda images, caption: {k: len(images) * v for k, v in rates(images, caption).items()}, "returned counts"),
    (lambda images, caption: {k: 100 * v for k, v in rates(images, caption).items()}, "percentages"),
    (lambda images, caption: _all_as(images, caption, lambda v: sum(v) / len(v)), "mean of the attribute rates"),
    (lambda images, caption: _all_as(images, caption, math.prod), "product of the attribute rates"),
    (lambda images, caption: _all_as(images, caption, min), "but 'all' is"),
    (lambda images, caption: {k: v for k, v in rates(images, caption).items() if k != "all"}, "no 'all' entry"),
    (lambda images, caption: {k: v for k, v in rates(images, caption).items() if k != "count"}, "lacks ['count']"),
    (lambda images, caption: _with(rates(images, caption), size=1.0, position=1.0, relation=1.0), "does not check"),
    (lambda images, caption: {k: 1 - v for k, v in rates(images, caption).items()}, "the judge's readings give"),
    (lambda images, caption: {k: str(v) for k, v in rates(images, caption).items()}, "is a str"),
    (lambda images, caption: list(rates(images, caption).values()), "should return a dict"),
    (lambda images, caption: FIXED, "lacks ['size', 'position']"),  # a hard-coded result
    (lambda images, caption: rates(images.clamp_(0.2, 0.8), caption), "in place"),
])
def test_rates_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_attribute_rates, wrong, capsys, phrase)


@pytest.mark.parametrize("shortcut, phrase", [
    (judge.score, "library's judge.score"),
    (lambda images, caption: judge.score(images, caption), "raised"),
])
def test_rates_rejects_the_library(capsys, shortcut, phrase):
    assert_fails(check_attribute_rates, shortcut, capsys, phrase)


def test_rate_cases_vary():
    """Each case has images right and wrong in several attributes, so no shortcut formula fits them all."""
    for _, images, caption in rate_cases():
        r = rates(images, caption)
        assert 0 < r["all"] < min(v for k, v in r.items() if k != "all")
        assert len({v for k, v in r.items() if k != "all"}) >= 2
