"""Lesson 05's self-checks: right answers pass, wrong answers and shortcuts fail with a useful message."""
import math

import pytest
import torch
import torch.nn.functional as F

from dalle_lessons.attention import attention_written_out, causal_mask, dalle_mask
from dalle_lessons.exercises.l05_attention import (check_alibi_attention, check_layers_to_connect,
                                                   check_pad_mask, layers_to_connect_reference)
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: attention with a distance penalty ------------------------------------------------

def _distance(n):
    index = torch.arange(n)
    return (index[:, None] - index[None, :]).float()


def alibi(q, k, v, slopes):
    n = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) - slopes[:, None, None] * _distance(n)
    return scores.masked_fill(~causal_mask(n), float("-inf")).softmax(-1) @ v


def alibi_via_sdpa(q, k, v, slopes):
    """A float mask is added to the scores: the penalty plus -inf for the future."""
    n = q.shape[-2]
    bias = (-slopes[:, None, None] * _distance(n)).masked_fill(~causal_mask(n), float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


@pytest.mark.parametrize("right", [alibi, alibi_via_sdpa])
def test_alibi_right_answers(capsys, right):
    assert_passes(check_alibi_attention, right, capsys)


def test_alibi_not_attempted(capsys):
    assert_fails(check_alibi_attention, not_attempted, capsys, "not attempted")


def _scores(q, k, slopes, sign=-1.0, before_scale=False, slope_of=None, distance=None, mask=True):
    n, d = q.shape[-2], q.shape[-1]
    s = slopes if slope_of is None else slopes[slope_of].expand_as(slopes)
    bias = sign * s[:, None, None] * (_distance(n) if distance is None else distance)
    raw = q @ k.transpose(-2, -1)
    scores = (raw + bias) / math.sqrt(d) if before_scale else raw / math.sqrt(d) + bias
    return scores.masked_fill(~causal_mask(n), float("-inf")) if mask else scores


@pytest.mark.parametrize("wrong, phrase", [
    (lambda q, k, v, s: _scores(q, k, s, sign=1.0).softmax(-1) @ v, "wrong sign"),
    (lambda q, k, v, s: _scores(q, k, s, before_scale=True).softmax(-1) @ v, "before dividing by √d"),
    (lambda q, k, v, s: _scores(q, k, s, slope_of=0).softmax(-1) @ v, "first head's slope"),
    (lambda q, k, v, s: _scores(q, k, s, mask=False).softmax(-1) @ v, "sees the future"),
    (lambda q, k, v, s: _scores(q, k, s, distance=_distance(q.shape[-2]).abs(), mask=False).softmax(-1) @ v,
     "penalised |i - j|"),
    (lambda q, k, v, s: _scores(q, k, s).softmax(-1), "the output should be"),
    (lambda q, k, v, s: _scores(q, k, s).softmax(-1) @ v * 1.1, "differs from the expected one"),
])
def test_alibi_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_alibi_attention, wrong, capsys, phrase)


@pytest.mark.parametrize("shortcut", [
    lambda q, k, v, s: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    lambda q, k, v, s: attention_written_out(q, k, v, is_causal=True),
])
def test_alibi_rejects_plain_causal_attention(capsys, shortcut):
    """PyTorch's fused attention and the library's written-out one have no distance penalty."""
    assert_fails(check_alibi_attention, shortcut, capsys, "plain causal attention")


# --- exercise 2: masking the pads -----------------------------------------------------------------

def pad_mask(text_ids, g, pad_id):
    B, T = text_ids.shape
    n = T + g * g
    is_pad = torch.cat([text_ids == pad_id, torch.zeros(B, g * g, dtype=torch.bool)], dim=1)
    return dalle_mask(T, g, "full") & (~is_pad[:, None, :] | torch.eye(n, dtype=torch.bool))


def pad_mask_loop(text_ids, g, pad_id):
    B, T = text_ids.shape
    masks = []
    for ids in text_ids:
        mask = dalle_mask(T, g, "full").clone()
        for j in range(T):
            if ids[j] == pad_id:
                keep = mask[j, j].item()
                mask[:, j] = False
                mask[j, j] = keep
        masks.append(mask)
    return torch.stack(masks)


@pytest.mark.parametrize("right", [pad_mask, pad_mask_loop])
def test_pad_mask_right_answers(capsys, right):
    assert_passes(check_pad_mask, right, capsys)


def test_pad_mask_not_attempted(capsys):
    assert_fails(check_pad_mask, not_attempted, capsys, "not attempted")


def _is_pad(text_ids, g, pad_id):
    return torch.cat([text_ids == pad_id, torch.zeros(text_ids.shape[0], g * g, dtype=torch.bool)], dim=1)


def _hide_first_text_key_from_last_token(mask):
    mask = mask.clone()
    mask[:, -1, 0] = False
    return mask


@pytest.mark.parametrize("wrong, phrase", [
    (lambda ids, g, p: dalle_mask(ids.shape[1], g, "full") & ~_is_pad(ids, g, p)[:, :, None]
     | torch.eye(ids.shape[1] + g * g, dtype=torch.bool) & dalle_mask(ids.shape[1], g, "full"), "pads' rows"),
    (lambda ids, g, p: dalle_mask(ids.shape[1], g, "full") & ~_is_pad(ids, g, p)[:, None, :], "all False"),
    (lambda ids, g, p: pad_mask(ids[:1].expand_as(ids), g, p), "first caption's pads"),
    (lambda ids, g, p: ~_is_pad(ids, g, p)[:, None, :] | torch.eye(ids.shape[1] + g * g, dtype=torch.bool),
     "see the future"),
    (lambda ids, g, p: pad_mask(ids, g, p)[0], "one mask per caption"),
    (lambda ids, g, p: pad_mask(ids, g, p).int(), "bool tensor"),
    (lambda ids, g, p: _hide_first_text_key_from_last_token(pad_mask(ids, g, p)), "may attend to key 0"),
])
def test_pad_mask_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_pad_mask, wrong, capsys, phrase)


def test_pad_mask_rejects_the_librarys_mask(capsys):
    shortcut = lambda ids, g, p: dalle_mask(ids.shape[1], g, "full").expand(ids.shape[0], -1, -1)  # noqa: E731
    assert_fails(check_pad_mask, shortcut, capsys, "pads are still visible")
    assert_fails(check_pad_mask, lambda ids, g, p: dalle_mask(ids.shape[1], g, "full"), capsys,
                 "one mask per caption")


# --- exercise 3: layers to connect ----------------------------------------------------------------

def layers_to_connect(masks, max_layers=30):
    n = masks[0].shape[0]
    reached = torch.eye(n, dtype=torch.bool)
    for depth in range(1, max_layers + 1):
        reached = (masks[(depth - 1) % len(masks)].int() @ reached.int()) > 0
        if torch.equal(reached, causal_mask(n)):
            return depth
    return None


def layers_to_connect_float(masks, max_layers=30):
    """Composes on the right instead (reach @ mask): the same depths, for these masks."""
    n = masks[0].shape[0]
    reached = torch.eye(n)
    for depth in range(1, max_layers + 1):
        reached = ((reached @ masks[(depth - 1) % len(masks)].float()) > 0).float()
        if torch.equal(reached.bool(), causal_mask(n)):
            return depth
    return None


@pytest.mark.parametrize("right", [layers_to_connect, layers_to_connect_float, layers_to_connect_reference])
def test_layers_to_connect_right_answers(capsys, right):
    assert_passes(check_layers_to_connect, right, capsys)


def test_layers_to_connect_not_attempted(capsys):
    assert_fails(check_layers_to_connect, not_attempted, capsys, "not attempted")


def _off_by_one(masks, max_layers=30):
    depth = layers_to_connect(masks, max_layers)
    return None if depth is None else depth - 1


def _last_token_only(masks, max_layers=30):
    n = masks[0].shape[0]
    reached = torch.eye(n, dtype=torch.bool)
    for depth in range(1, max_layers + 1):
        reached = (masks[(depth - 1) % len(masks)].int() @ reached.int()) > 0
        if reached[-1].all():
            return depth
    return None


def _compares_with_all_true(masks, max_layers=30):
    n = masks[0].shape[0]
    reached = torch.eye(n, dtype=torch.bool)
    for depth in range(1, max_layers + 1):
        reached = (masks[(depth - 1) % len(masks)].int() @ reached.int()) > 0
        if reached.all():
            return depth
    return None


@pytest.mark.parametrize("wrong, phrase", [
    (_off_by_one, "off by one"),
    (_last_token_only, "the *last* token"),
    (_compares_with_all_true, "you returned None"),
    (lambda masks, max_layers=30: layers_to_connect(masks[:1], max_layers), "stacked only the first mask"),
    (lambda masks, max_layers=30: 1 / 0, "raised ZeroDivisionError"),
])
def test_layers_to_connect_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_layers_to_connect, wrong, capsys, phrase)


def test_layers_to_connect_rejects_the_lessons_numbers(capsys):
    """Section 5 showed row-then-column connecting in 2 layers; that number is not the answer for every stack."""
    assert_fails(check_layers_to_connect, lambda masks, max_layers=30: 2, capsys, "not yet")
