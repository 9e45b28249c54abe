"""Lesson 03's self-checks: right answers pass, wrong answers and shortcuts fail with a useful message."""
import math

import pytest
import torch
import torch.nn.functional as F

from dalle_lessons.exercises.l03_positions import (check_shift_matrix, check_similarity_by_offset,
                                                   check_sincos_grid)
from dalle_lessons.positional import RowColumnPositionalEmbedding, sinusoidal_table
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: fixed 2-D sinusoidal grid --------------------------------------------------------

def sincos_grid(height, width, dim):
    t = torch.arange(height * width)
    return torch.cat([sinusoidal_table(height, dim // 2)[t // width],
                      sinusoidal_table(width, dim // 2)[t % width]], dim=1)


def sincos_grid_broadcast(height, width, dim):
    rows = sinusoidal_table(height, dim // 2)[:, None, :].expand(height, width, dim // 2)
    cols = sinusoidal_table(width, dim // 2)[None, :, :].expand(height, width, dim // 2)
    return torch.cat([rows, cols], dim=-1).reshape(height * width, dim)


@pytest.mark.parametrize("right", [sincos_grid, sincos_grid_broadcast])
def test_sincos_grid_right_answers(capsys, right):
    assert_passes(check_sincos_grid, right, capsys)


def test_sincos_grid_not_attempted(capsys):
    assert_fails(check_sincos_grid, not_attempted, capsys, "not attempted")


def _added(height, width, dim):
    t = torch.arange(height * width)
    return sinusoidal_table(height, dim)[t // width] + sinusoidal_table(width, dim)[t % width]


def _divided_by_height(height, width, dim):
    t = torch.arange(height * width)
    n = max(height, width)
    return torch.cat([sinusoidal_table(n, dim // 2)[t // height], sinusoidal_table(n, dim // 2)[t % height]], 1)


def _column_major(height, width, dim):
    t = torch.arange(height * width)
    n = max(height, width)
    return torch.cat([sinusoidal_table(n, dim // 2)[t % height], sinusoidal_table(n, dim // 2)[t // height]], 1)


def _column_first(height, width, dim):
    t = torch.arange(height * width)
    return torch.cat([sinusoidal_table(width, dim // 2)[t % width], sinusoidal_table(height, dim // 2)[t // width]], 1)


@pytest.mark.parametrize("wrong, phrase", [
    (_added, "(c, r) then get the same vector"),
    (_divided_by_height, "not t // height"),
    (_column_major, "column by column"),
    (_column_first, "halves are swapped"),
    (lambda h, w, dim: sincos_grid(h, w, dim).reshape(h, w, dim), "flatten it"),
    (lambda h, w, dim: torch.cat([sincos_grid(h, w, dim)] * 2, 1), "twice too wide"),
    (lambda h, w, dim: sincos_grid(h, w, dim) * 2, "the largest difference is at token"),
    (lambda h, w, dim: 1 / 0, "raised ZeroDivisionError"),
])
def test_sincos_grid_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_sincos_grid, wrong, capsys, phrase)


def test_sincos_grid_rejects_the_library_shortcuts(capsys):
    """Section 3's 1-D table over h*w positions, and the library's learned row + column module."""
    assert_fails(check_sincos_grid, lambda h, w, dim: sinusoidal_table(h * w, dim), capsys, "1-D table of section 3")
    assert_fails(check_sincos_grid, lambda h, w, dim: RowColumnPositionalEmbedding(h, dim)()[: h * w].detach(),
                 capsys, "not yet")


# --- exercise 2: the shift matrix -----------------------------------------------------------------

def shift_matrix(k, dim):
    matrix = torch.zeros(dim, dim)
    for i in range(dim // 2):
        b = k / 10000 ** (2 * i / dim)
        matrix[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[math.cos(b), math.sin(b)],
                                                                 [-math.sin(b), math.cos(b)]])
    return matrix


def test_shift_matrix_right_answer(capsys):
    assert_passes(check_shift_matrix, shift_matrix, capsys)


def test_shift_matrix_not_attempted(capsys):
    assert_fails(check_shift_matrix, not_attempted, capsys, "not attempted")


@pytest.mark.parametrize("wrong, phrase", [
    (lambda k, dim: shift_matrix(k, dim).T, "You built the transpose"),
    (lambda k, dim: torch.zeros(dim, dim), "all zeros"),
    (lambda k, dim: torch.eye(dim), "misses PE[pos + k]"),
    (lambda k, dim: shift_matrix(1, dim), "misses PE[pos + k]"),
])
def test_shift_matrix_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_shift_matrix, wrong, capsys, phrase)


def test_shift_matrix_rejects_the_library_table(capsys):
    assert_fails(check_shift_matrix, sinusoidal_table, capsys, "square")


# --- exercise 3: similarity by offset -------------------------------------------------------------

def similarity_by_offset(table, max_offset):
    unit = F.normalize(table.double(), dim=-1)
    sims = unit @ unit.T
    return torch.stack([sims.diagonal(k).mean() for k in range(1, max_offset + 1)])


def similarity_by_offset_loop(table, max_offset):
    out = []
    for k in range(1, max_offset + 1):
        out.append(F.cosine_similarity(table[:-k], table[k:], dim=-1).mean())
    return torch.stack(out)


@pytest.mark.parametrize("right", [similarity_by_offset, similarity_by_offset_loop])
def test_similarity_by_offset_right_answers(capsys, right):
    assert_passes(check_similarity_by_offset, right, capsys)


def test_similarity_by_offset_not_attempted(capsys):
    assert_fails(check_similarity_by_offset, not_attempted, capsys, "not attempted")


def _cosine(table):
    unit = F.normalize(table.double(), dim=-1)
    return unit @ unit.T


@pytest.mark.parametrize("wrong, phrase", [
    (lambda t, m: torch.stack([(t.double() @ t.double().T).diagonal(k).mean() for k in range(1, m + 1)]),
     "averaged raw dot products"),
    (lambda t, m: torch.stack([_cosine(t).diagonal(k).sum() for k in range(1, m + 1)]), "summed the diagonal"),
    (lambda t, m: torch.stack([_cosine(t).diagonal(k).mean() for k in range(0, m + 1)]), "included offset 0"),
    (lambda t, m: torch.stack([_cosine(t).diagonal(k).mean() for k in range(1, m)]), "should return"),
    (lambda t, m: torch.stack([_cosine(t).diagonal(k).mean() for k in range(2, m + 2)]), "at offset 1 expected"),
])
def test_similarity_by_offset_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_similarity_by_offset, wrong, capsys, phrase)


def test_similarity_by_offset_rejects_the_notebooks_row_zero(capsys):
    """Section 3 read the similarity off row 0: right for sinusoids, wrong for a learned table."""
    assert_fails(check_similarity_by_offset, lambda t, m: _cosine(t)[0, 1:m + 1], capsys, "position 0 only")
