"""Lesson 05's self-checks: right answers pass, wrong or unfinished ones fail with a useful message."""
import math

import pytest
import torch

from dalle_lessons.attention import conv_mask
from dalle_lessons.exercises.l05_attention import check_attention, check_column_mask, check_conv_mask_2d
from exercise_helpers import assert_fails, not_attempted




def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: attention from scratch -----------------------------------------------------------

def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


def attention_einsum_float64(q, k, v, mask=None):
    scores = torch.einsum("bhqd,bhkd->bhqk", q.double(), k.double()) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=torch.float64))
    return torch.einsum("bhqk,bhkd->bhqd", torch.softmax(scores, -1), v.double()).float()


def attention_renormalised_after_softmax(q, k, v, mask=None):
    """Mask after the softmax, then renormalise each row: the same function, computed another way."""
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    if mask is not None:
        weights = weights * mask
        weights = weights / weights.sum(-1, keepdim=True)
    return weights @ v


@pytest.mark.parametrize("right", [attention, attention_einsum_float64, attention_renormalised_after_softmax])
def test_attention_right_answers(capsys, right):
    assert_passes(check_attention, right, capsys)


def test_attention_not_attempted(capsys):
    assert_fails(check_attention, not_attempted, capsys, "not attempted")


def _masked_scores(q, k, mask, scale, fill=float("-inf")):
    scores = q @ k.transpose(-2, -1) * scale
    return scores if mask is None else scores.masked_fill(~mask, fill)


@pytest.mark.parametrize("wrong, phrase", [
    (lambda q, k, v, mask=None: _masked_scores(q, k, mask, 1.0).softmax(-1) @ v, "forgot to divide the scores by √d"),
    (lambda q, k, v, mask=None: _masked_scores(q, k, mask, 1 / q.shape[-1]).softmax(-1) @ v, "divided the scores by d"),
    (lambda q, k, v, mask=None: _masked_scores(q, k, mask, q.shape[-1] ** -0.5).softmax(-2) @ v, "wrong axis"),
    (lambda q, k, v, mask=None: (_masked_scores(q, k, None, q.shape[-1] ** -0.5).softmax(-1)
                                 * (1 if mask is None else mask)) @ v, "after the softmax"),
    (lambda q, k, v, mask=None: _masked_scores(q, k, mask, q.shape[-1] ** -0.5, 0.0).softmax(-1) @ v, "exp(0) = 1"),
    (lambda q, k, v, mask=None: (_masked_scores(q, k, None, q.shape[-1] ** -0.5)
                                 + (0 if mask is None else mask)).softmax(-1) @ v, "not a number to add"),
    (lambda q, k, v, mask=None: attention(q, k, v), "ignores the mask"),
    (lambda q, k, v, mask=None: attention(q, k, v, None if mask is None else ~mask), "NaN"),
    (lambda q, k, v, mask=None: _masked_scores(q, k, mask, q.shape[-1] ** -0.5).softmax(-1), "attention weights"),
    (lambda q, k, v, mask=None: _masked_scores(q, k, mask, q.shape[-2] ** -0.5).softmax(-1) @ v,
     "√(the number of queries)"),
    (lambda q, k, v, mask=None: attention(q, k, v)[..., 0, :], "the output should be"),
    (lambda q, k, v, mask=None: (q @ k / 4).softmax(-1) @ v, "raised RuntimeError"),
    (lambda q, k, v, mask=None: attention(q, k, v, ~~mask), "mask may be None"),
    (lambda q, k, v, mask=None: attention(q, k, v, mask).tolist(), "should return a torch.Tensor"),
    (lambda q, k, v, mask=None: attention(q, k, v, mask) + 0.01, "differs from scaled_dot_product_attention"),
])
def test_attention_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_attention, wrong, capsys, phrase)


def test_attention_feedback_names_the_case(capsys):
    out = assert_fails(check_attention, lambda q, k, v, mask=None: attention(q, k, v), capsys)
    assert "With a causal mask" in out


# --- exercise 2: the column mask ------------------------------------------------------------------

def column(g):
    i = torch.arange(g * g)
    rows, cols = i // g, i % g
    return (cols[:, None] == cols[None, :]) & (rows[:, None] >= rows[None, :])


def column_loops(g):
    mask = torch.zeros(g * g, g * g, dtype=torch.bool)
    for query in range(g * g):
        for key in range(query % g, query + 1, g):  # the query's column, from the top row down to it
            mask[query, key] = True
    return mask


def column_offsets(g):
    i = torch.arange(g * g)
    back = i[:, None] - i[None, :]
    return (back >= 0) & (back % g == 0)


@pytest.mark.parametrize("right", [column, column_loops, column_offsets])
def test_column_mask_right_answers(capsys, right):
    assert_passes(check_column_mask, right, capsys)


def test_column_mask_not_attempted(capsys):
    assert_fails(check_column_mask, not_attempted, capsys, "not attempted")


def _same_col(g):
    i = torch.arange(g * g)
    return (i[:, None] % g) == (i[None, :] % g)


@pytest.mark.parametrize("wrong, phrase", [
    (lambda g: column(g).T, "Rows and columns are swapped"),
    (_same_col, "including the cells below it"),
    (lambda g: column(g) & ~torch.eye(g * g, dtype=torch.bool), "attend to itself"),
    (lambda g: column(g).float(), "adds* a float mask"),
    (lambda g: column(g).long() * 2, "bool tensor"),
    (lambda g: torch.ones(g, g, dtype=torch.bool), "the shape of the image"),
    (lambda g: column(g)[:-1], "should be"),
    (lambda g: column(g).tolist(), "should return a torch.Tensor"),
    (lambda g: torch.arange(g * g)[:, None] // g == torch.arange(g * g)[None, :] // g, "That is a row mask"),
    (lambda g: torch.eye(g * g, dtype=torch.bool), "should attend to (row 0, col 0), but your mask says no"),
    (lambda g: column(g) & (_back(g) <= g), "should attend to"),
    (lambda g: [][g], "raised IndexError"),
])
def test_column_mask_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_column_mask, wrong, capsys, phrase)


def _back(g):
    """[g*g, g*g]: how many raster steps key j lies behind query i."""
    i = torch.arange(g * g)
    return i[:, None] - i[None, :]


def _rows_up(g):
    """[g*g, g*g]: how many rows key j lies above query i."""
    rows = torch.arange(g * g) // g
    return rows[:, None] - rows[None, :]


def test_column_mask_feedback_names_the_wrong_cell(capsys):
    out = assert_fails(check_column_mask, lambda g: column(g) & (_back(g) <= g), capsys)  # only one row up
    assert "token (row 2, col 0) should attend to (row 0, col 0), but your mask says no" in out

    def one_cell_left(g):
        mask = column(g)
        mask[1, 0] = True
        return mask

    out = assert_fails(check_column_mask, one_cell_left, capsys)
    assert "token (row 0, col 1) should not attend to (row 0, col 0) (it is in another column)" in out


# --- exercise 3: the strictly 2-D convolutional mask ----------------------------------------------

def conv_2d(g, kernel):
    h = kernel // 2
    i = torch.arange(g * g)
    rows, cols = i // g, i % g
    rows_back = rows[:, None] - rows[None, :]
    cols_apart = (cols[:, None] - cols[None, :]).abs()
    return (rows_back >= 0) & (rows_back <= h) & (cols_apart <= h) & (i[:, None] >= i[None, :])


def conv_2d_loops(g, kernel):
    h, mask = kernel // 2, torch.zeros(g * g, g * g, dtype=torch.bool)
    for r in range(g):
        for c in range(g):
            for dr in range(h + 1):
                for dc in range(-h, h + 1):
                    if (dr == 0 and dc > 0) or not (0 <= r - dr and 0 <= c + dc < g):
                        continue
                    mask[r * g + c, (r - dr) * g + c + dc] = True
    return mask


@pytest.mark.parametrize("right", [conv_2d, conv_2d_loops])
def test_conv_mask_right_answers(capsys, right):
    assert_passes(check_conv_mask_2d, right, capsys)


def test_conv_mask_not_attempted(capsys):
    assert_fails(check_conv_mask_2d, not_attempted, capsys, "not attempted")


def _window(g, kernel, causal_rows=True, causal_in_row=True, h=None):
    h = kernel // 2 if h is None else h
    i = torch.arange(g * g)
    rows, cols = i // g, i % g
    rows_back = rows[:, None] - rows[None, :]
    mask = (rows_back.abs() <= h) & ((cols[:, None] - cols[None, :]).abs() <= h)
    if causal_rows:
        mask &= rows_back >= 0
    if causal_in_row:
        mask &= i[:, None] >= i[None, :]
    return mask


@pytest.mark.parametrize("wrong, phrase", [
    (lambda g, kernel: conv_mask(g, kernel), "wraps around"),
    (lambda g, kernel: _window(g, kernel, causal_rows=False, causal_in_row=False), "whole k x k square"),
    (lambda g, kernel: _window(g, kernel, causal_in_row=False), "cells to its right"),
    (lambda g, kernel: conv_2d(g, kernel) & ((_rows_up(g) > 0) | torch.eye(g * g, dtype=torch.bool)),
     "left out the cells to the query's left"),
    (lambda g, kernel: _window(g, kernel, h=kernel), "reaches kernel // 2 each way"),
    (lambda g, kernel: conv_2d(g, kernel) & ~torch.eye(g * g, dtype=torch.bool), "attend to itself"),
    (lambda g, kernel: conv_2d(g, kernel).int(), "adds* a float mask"),
    (lambda g, kernel: conv_2d(g, kernel + 2), "more than kernel // 2"),
    (lambda g, kernel: conv_2d(g, kernel) & ~torch.eye(g * g, dtype=torch.bool).roll(-g, 1), "should attend to"),
])
def test_conv_mask_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_conv_mask_2d, wrong, capsys, phrase)


def test_conv_mask_feedback_names_the_wrong_cell(capsys):
    out = assert_fails(check_conv_mask_2d, lambda g, kernel: conv_2d(g, kernel + 2), capsys)
    assert "With g=4, kernel=3, token (row 0, col 2) should not attend to (row 0, col 0)" in out
