"""Position embeddings: the sinusoidal closed form, learned and row/column tables."""
import math

import pytest
import torch

from dalle_lessons.positional import (LearnedPositionalEmbedding, RowColumnPositionalEmbedding,
                                      SinusoidalPositionalEmbedding, sinusoidal_table)


def closed_form(n_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """PE written out one entry at a time, straight from the paper, in float64."""
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    for pos in range(n_positions):
        for i in range(dim // 2):
            angle = pos / base ** (2 * i / dim)
            table[pos, 2 * i] = math.sin(angle)
            table[pos, 2 * i + 1] = math.cos(angle)
    return table


# --- sinusoidal -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n_positions, dim, base", [(1, 2, 10000.0), (64, 16, 10000.0), (300, 32, 10000.0),
                                                    (50, 10, 100.0)])
def test_sinusoidal_matches_closed_form(n_positions, dim, base):
    table = sinusoidal_table(n_positions, dim, base)
    assert table.shape == (n_positions, dim) and table.dtype == torch.float32
    assert torch.allclose(table.double(), closed_form(n_positions, dim, base), atol=1e-6, rtol=0)


def test_sinusoidal_properties():
    table = sinusoidal_table(200, 32).double()
    assert table.abs().max() <= 1.0
    assert torch.equal(table[0], torch.tensor([0.0, 1.0] * 16, dtype=torch.float64))
    # every (sin, cos) pair lies on the unit circle
    assert torch.allclose(table[:, 0::2] ** 2 + table[:, 1::2] ** 2, torch.ones(200, 16, dtype=torch.float64))
    # distinct positions get distinct codes
    assert torch.cdist(table, table).add(torch.eye(200, dtype=torch.float64)).min() > 1e-3


@pytest.mark.parametrize("k", [1, 5, 37])
def test_sinusoidal_relative_position_is_a_rotation(k):
    """PE[pos + k] is the same linear map of PE[pos] for every pos: a rotation per (sin, cos) pair."""
    n, dim = 120, 16
    table = sinusoidal_table(n, dim).double()
    shift = torch.zeros(dim, dim, dtype=torch.float64)
    for i in range(dim // 2):
        b = k / 10000.0 ** (2 * i / dim)
        shift[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = torch.tensor([[math.cos(b), math.sin(b)],
                                                                  [-math.sin(b), math.cos(b)]])
    assert torch.allclose(shift @ shift.T, torch.eye(dim, dtype=torch.float64))  # a rotation
    assert torch.allclose(table[:-k] @ shift.T, table[k:], atol=1e-6)


@pytest.mark.parametrize("dim", [0, 3, 7, -2])
def test_sinusoidal_rejects_odd_dim(dim):
    with pytest.raises(ValueError, match="even"):
        sinusoidal_table(10, dim)
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositionalEmbedding(10, dim)


def test_sinusoidal_module_is_a_fixed_buffer():
    module = SinusoidalPositionalEmbedding(32, 8)
    assert list(module.parameters()) == []
    assert module.state_dict() == {}  # non-persistent: a formula, not a weight
    assert torch.equal(module(), sinusoidal_table(32, 8))
    assert torch.equal(module(5), sinusoidal_table(5, 8))
    x = torch.zeros(2, 5, 8)
    assert torch.equal(x + module(x.shape[1]), sinusoidal_table(5, 8).expand(2, 5, 8))


# --- learned --------------------------------------------------------------------------------------

def test_learned_shapes_init_and_gradients():
    module = LearnedPositionalEmbedding(1000, 64, generator=torch.Generator().manual_seed(0))
    assert module().shape == (1000, 64) and module(7).shape == (7, 64)
    assert sum(p.numel() for p in module.parameters()) == 1000 * 64
    assert abs(module().std().item() - 0.02) < 0.001 and abs(module().mean().item()) < 0.001
    assert torch.equal(module(7), module.embedding(torch.arange(7)))  # slicing is a lookup of 0..6
    module(3).sum().backward()
    grad = module.embedding.weight.grad
    assert grad[:3].eq(1).all() and grad[3:].eq(0).all()


def test_learned_is_reproducible_with_a_generator():
    a = LearnedPositionalEmbedding(10, 4, generator=torch.Generator().manual_seed(1))
    b = LearnedPositionalEmbedding(10, 4, generator=torch.Generator().manual_seed(1))
    c = LearnedPositionalEmbedding(10, 4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a(), b()) and not torch.equal(a(), c())


# --- row / column ---------------------------------------------------------------------------------

@pytest.mark.parametrize("grid, dim", [(1, 4), (4, 6), (8, 16)])
def test_row_column_raster_order(grid, dim):
    module = RowColumnPositionalEmbedding(grid, dim, generator=torch.Generator().manual_seed(0))
    table = module()
    assert table.shape == (grid * grid, dim) and module.n_positions == grid * grid
    for t in range(grid * grid):
        assert torch.equal(table[t], module.row.weight[t // grid] + module.col.weight[t % grid])
    assert torch.equal(module(grid), table[:grid])  # a prefix: the image tokens generated so far


def test_row_column_parameters_and_structure():
    module = RowColumnPositionalEmbedding(8, 16, generator=torch.Generator().manual_seed(0))
    assert sum(p.numel() for p in module.parameters()) == 2 * 8 * 16  # 16 vectors for 64 positions
    grid = module().reshape(8, 8, 16)
    # moving one column right changes every row by the same vector: col[1] - col[0]
    step = grid[:, 1] - grid[:, 0]
    assert torch.allclose(step, (module.col.weight[1] - module.col.weight[0]).expand(8, 16))
    module().pow(2).sum().backward()
    assert module.row.weight.grad is not None and module.col.weight.grad is not None


def test_row_column_tables_reject_bad_sizes():
    with pytest.raises(ValueError, match="grid_size"):
        RowColumnPositionalEmbedding(0, 4)


@pytest.mark.parametrize("make, built", [
    (lambda: SinusoidalPositionalEmbedding(24, 8), 24),
    (lambda: LearnedPositionalEmbedding(24, 8), 24),
    (lambda: RowColumnPositionalEmbedding(8, 8), 64),
])
def test_too_many_positions_names_both_numbers(make, built):
    module = make()
    assert module(built).shape == (built, 8)
    with pytest.raises(ValueError, match=rf"asked for {built + 1} positions but was built for {built}"):
        module(built + 1)

# Lesson 03's exercise checks are tested in tests/test_exercises_l03.py.
