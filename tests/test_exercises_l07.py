"""Lesson 07's self-checks: right answers pass, wrong or unfinished ones fail with a useful message."""
import pytest
import torch

from dalle_lessons.exercises.l07_sampling import check_completion, check_guidance, check_top_p
from dalle_lessons.sampling import sample_from_logits
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: the top-p filter -----------------------------------------------------------------

def top_p(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs  # the mass of the more likely tokens
    keep = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before < p)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_shift_style(logits, p):
    """The Hugging Face way: remove where the cumulative mass exceeds p, shifted right by one."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    remove = sorted_logits.softmax(-1).cumsum(-1) > p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def top_p_loops(logits, p):
    out = torch.full_like(logits, float("-inf"))
    flat_in, flat_out = logits.reshape(-1, logits.shape[-1]), out.view(-1, logits.shape[-1])
    for r, row in enumerate(flat_in):
        probs, mass = row.softmax(0), 0.0
        for token in probs.argsort(descending=True).tolist():
            flat_out[r, token] = row[token]
            mass += probs[token].item()
            if mass >= p:
                break
    return out


@pytest.mark.parametrize("right", [top_p, top_p_shift_style, top_p_loops])
def test_top_p_right_answers(capsys, right):
    assert_passes(check_top_p, right, capsys)


def test_top_p_not_attempted(capsys):
    assert_fails(check_top_p, not_attempted, capsys, "not attempted")


def _sorted_keep(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    return probs, order


def drops_crossing(logits, p):
    probs, order = _sorted_keep(logits, p)
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, probs.cumsum(-1) < p)
    return logits.masked_fill(~keep, float("-inf"))


def not_unsorted(logits, p):
    probs, _ = _sorted_keep(logits, p)
    return logits.masked_fill(~(probs.cumsum(-1) - probs < p), float("-inf"))


def ascending(logits, p):
    sorted_logits, order = logits.sort(dim=-1)
    probs = sorted_logits.softmax(-1)
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, probs.cumsum(-1) - probs < p)
    return logits.masked_fill(~keep, float("-inf"))


def in_place(logits, p):
    keep = torch.isfinite(top_p(logits, p))
    return logits.masked_fill_(~keep, float("-inf"))


def one_too_many(logits, p):
    probs, order = _sorted_keep(logits, p)
    before = probs.cumsum(-1) - probs
    keep = before < p
    keep[..., 1:] |= keep[..., :-1].clone()
    return logits.masked_fill(~keep.scatter(-1, order, keep), float("-inf"))


@pytest.mark.parametrize("wrong, phrase", [
    (drops_crossing, "you drop the token that takes the mass to p"),
    (not_unsorted, "put it back in token order"),
    (ascending, "sort the logits in descending order"),
    (in_place, "in place"),
    (lambda logits, p: top_p(logits, p).softmax(-1), "You returned probabilities"),
    (lambda logits, p: top_p(logits, p).nan_to_num(neginf=0.0), "set the dropped tokens to 0"),
    (lambda logits, p: top_p(logits, p).log_softmax(-1), "changed the values"),
    (lambda logits, p: top_p(logits, p)[..., :-1], "keep the input's shape"),
    (lambda logits, p: top_p(logits, p).tolist(), "should return a torch.Tensor"),
    (lambda logits, p: top_p(logits, p).double(), "dtype"),
    (lambda logits, p: logits, "dropped nothing"),
    (one_too_many, "smallest set with mass >= p has"),
    (lambda logits, p: logits.masked_fill(~torch.isfinite(top_p(logits, p)), float("nan")), "NaN"),
])
def test_top_p_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_top_p, wrong, capsys, phrase)


def test_top_p_crash_is_reported(capsys):
    def crashes(logits, p):
        return logits.softmax(dim=2)  # fails on the 1-D and 2-D cases

    assert_fails(check_top_p, crashes, capsys, "raised IndexError", "Hint")


# --- exercise 2: classifier-free guidance ---------------------------------------------------------

@pytest.mark.parametrize("right", [
    lambda cond, uncond, scale: uncond + scale * (cond - uncond),
    lambda cond, uncond, scale: scale * cond + (1 - scale) * uncond,
    lambda cond, uncond, scale: torch.lerp(uncond, cond, scale),
    lambda cond, uncond, scale: uncond.log_softmax(-1) + scale * (cond.log_softmax(-1) - uncond.log_softmax(-1)),
])
def test_guidance_right_answers(capsys, right):
    assert_passes(check_guidance, right, capsys)


def test_guidance_not_attempted(capsys):
    assert_fails(check_guidance, not_attempted, capsys, "not attempted")


@pytest.mark.parametrize("wrong, phrase", [
    (lambda cond, uncond, scale: cond + scale * (cond - uncond), "started from the conditional logits"),
    (lambda cond, uncond, scale: uncond + scale * (uncond - cond), "wrong way"),
    (lambda cond, uncond, scale: scale * (cond - uncond), "only the scaled difference"),
    (lambda cond, uncond, scale: (1 - scale) * cond + scale * uncond, "weights are swapped"),
    (lambda cond, uncond, scale: uncond.softmax(-1) + scale * (cond.softmax(-1) - uncond.softmax(-1)),
     "mixed probabilities"),
    (lambda cond, uncond, scale: cond.add_(scale * (cond - uncond)), "in place"),
    (lambda cond, uncond, scale: cond * scale, "scale 0 must return uncond"),
    (lambda cond, uncond, scale: (uncond + scale * (cond - uncond))[0], "keep the input's shape"),
    (lambda cond, uncond, scale: None, "returned NoneType"),
])
def test_guidance_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_guidance, wrong, capsys, phrase)


# --- exercise 3: image completion with the KV cache -----------------------------------------------

def complete(model, text_ids, prefix, generator):
    N, n = model.config.image_seq_len, prefix.shape[1]
    tokens = torch.zeros(len(text_ids), N, dtype=torch.long)
    tokens[:, :n] = prefix
    logits, cache = model.prefill(text_ids, prefix)
    for i in range(n, N):
        tokens[:, i] = sample_from_logits(logits, generator)
        if i < N - 1:
            logits = model.step(tokens[:, i], cache)
    return tokens


def complete_feeding_the_prefix(model, text_ids, prefix, generator):
    """Prefill the caption only, then step through the prefix tokens: slower, the same tokens."""
    N, n = model.config.image_seq_len, prefix.shape[1]
    logits, cache = model.prefill(text_ids)
    for i in range(n):
        logits = model.step(prefix[:, i], cache)
    new = []
    for i in range(n, N):
        new.append(sample_from_logits(logits, generator))
        if i < N - 1:
            logits = model.step(new[-1], cache)
    return torch.cat([prefix, torch.stack(new, dim=1)], dim=1)


@pytest.mark.parametrize("right", [complete, complete_feeding_the_prefix])
def test_completion_right_answers(capsys, right):
    assert_passes(check_completion, right, capsys)


def test_completion_not_attempted(capsys):
    assert_fails(check_completion, lambda model, text_ids, prefix, generator: not_attempted(), capsys,
                 "not attempted")


def uncached(model, text_ids, prefix, generator):
    N, n = model.config.image_seq_len, prefix.shape[1]
    tokens = torch.zeros(len(text_ids), N, dtype=torch.long)
    tokens[:, :n] = prefix
    for i in range(n, N):
        known = torch.cat([tokens[:, :i], tokens[:, :1]], dim=1)
        tokens[:, i] = sample_from_logits(model(text_ids, known).image_logits[:, -1], generator)
    return tokens


def steps_after_the_last(model, text_ids, prefix, generator):
    N, n = model.config.image_seq_len, prefix.shape[1]
    tokens = torch.zeros(len(text_ids), N, dtype=torch.long)
    tokens[:, :n] = prefix
    logits, cache = model.prefill(text_ids, prefix)
    for i in range(n, N):
        tokens[:, i] = sample_from_logits(logits, generator)
        logits = model.step(tokens[:, i], cache)
    return tokens


def greedy(model, text_ids, prefix, generator):
    N, n = model.config.image_seq_len, prefix.shape[1]
    tokens = torch.zeros(len(text_ids), N, dtype=torch.long)
    tokens[:, :n] = prefix
    logits, cache = model.prefill(text_ids, prefix)
    for i in range(n, N):
        tokens[:, i] = logits.argmax(-1)
        if i < N - 1:
            logits = model.step(tokens[:, i], cache)
    return tokens


def prefill_every_token(model, text_ids, prefix, generator):
    N, n = model.config.image_seq_len, prefix.shape[1]
    tokens = torch.zeros(len(text_ids), N, dtype=torch.long)
    tokens[:, :n] = prefix
    for i in range(n, N):
        logits, _ = model.prefill(text_ids, tokens[:, :i])
        tokens[:, i] = sample_from_logits(logits, generator)
    return tokens


def prefix_overwritten(model, text_ids, prefix, generator):
    tokens = complete(model, text_ids, prefix, generator)
    tokens[:, : prefix.shape[1]] = 0
    return tokens


def one_row_at_a_time(model, text_ids, prefix, generator):
    return torch.cat([complete(model, text_ids[b:b + 1], prefix[b:b + 1], generator) for b in range(len(text_ids))])


def feeds_the_wrong_token(model, text_ids, prefix, generator):
    N, n = model.config.image_seq_len, prefix.shape[1]
    tokens = torch.zeros(len(text_ids), N, dtype=torch.long)
    tokens[:, :n] = prefix
    logits, cache = model.prefill(text_ids, prefix)
    for i in range(n, N):
        tokens[:, i] = sample_from_logits(logits, generator)
        if i < N - 1:
            logits = model.step(tokens[:, max(i - 1, 0)], cache)
    return tokens


@pytest.mark.parametrize("wrong, phrase", [
    (uncached, "full forward pass"),
    (steps_after_the_last, "already predicted"),
    (greedy, "greedy"),
    (prefill_every_token, "called model.prefill"),
    (prefix_overwritten, "did not keep the prefix"),
    (one_row_at_a_time, "for all the rows together"),
    (feeds_the_wrong_token, "feed exactly that column back"),
    (lambda model, text_ids, prefix, generator: complete(model, text_ids, prefix, generator)[:, prefix.shape[1]:],
     "only the"),
    (lambda model, text_ids, prefix, generator: complete(model, text_ids, prefix, generator).float(), "integer"),
    (lambda model, text_ids, prefix, generator: complete(model, text_ids, prefix, generator).tolist(),
     "should return a torch.Tensor"),
])
def test_completion_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_completion, wrong, capsys, phrase)
