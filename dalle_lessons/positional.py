"""Position embeddings: how a transformer learns where each token sits.

Attention treats its input as a set: shuffle the tokens and the outputs shuffle with them. Word
order and image layout must therefore be added to the token embeddings. Three ways to do it:

- `SinusoidalPositionalEmbedding`: the fixed sines and cosines of "Attention Is All You Need".
- `LearnedPositionalEmbedding`: one trained vector per position (GPT, and DALL·E's text positions).
- `RowColumnPositionalEmbedding`: a trained row vector plus a trained column vector per image
  token, so a grid of g x g tokens needs 2g vectors instead of g*g (DALL·E's image positions).

One convention for all three: `forward(n_tokens)` returns the position table `[n_tokens, dim]` for
positions 0..n_tokens-1; the caller adds it to the token embeddings `[B, T, dim]`, and broadcasting
does the rest (as nanoGPT does): `x = tok_emb(idx) + pos_emb(idx.shape[1])`.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def sinusoidal_table(n_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed position table [n_positions, dim] of Vaswani et al. (2017).

    PE[pos, 2i] = sin(pos / base^(2i/dim)) and PE[pos, 2i+1] = cos(pos / base^(2i/dim)): each
    (sin, cos) pair is a clock turning at its own speed, from one radian per step (i = 0) down to
    almost still, so every position gets a distinct pattern and PE[pos + k] is a fixed rotation of
    PE[pos]. Computed in float64 and returned as float32, so large positions stay accurate.
    """
    if dim <= 0 or dim % 2 != 0:
        raise ValueError(f"dim must be a positive even number (sines and cosines come in pairs), got {dim}")
    if n_positions < 0:
        raise ValueError(f"n_positions must be >= 0, got {n_positions}")
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # [n, 1]
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)  # [dim/2]: the even column indices 2i
    angle = pos / base ** (two_i / dim)  # [n, dim/2]
    table = torch.empty(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table.float()


def _check_length(n_tokens: int | None, n_positions: int, name: str) -> int:
    """Resolve `n_tokens` (None means all positions); asking for more than were built is an error."""
    if n_tokens is None:
        return n_positions
    if not 0 <= n_tokens <= n_positions:
        raise ValueError(
            f"{name} was asked for {n_tokens} positions but was built for {n_positions}: "
            f"build it with at least {n_tokens} positions (or shorten the sequence)"
        )
    return n_tokens


def _init_normal_(weight: torch.Tensor, std: float, generator: torch.Generator | None) -> None:
    """N(0, std^2) init, as GPT-2 does for its embeddings; `generator` makes it reproducible."""
    with torch.no_grad():
        weight.normal_(0.0, std, generator=generator)


class SinusoidalPositionalEmbedding(nn.Module):
    """Fixed sinusoidal positions: nothing to learn, and no weights to save.

    The table lives in a non-persistent buffer: it follows `.to(device)` but stays out of the
    `state_dict`, because it is a formula, not a parameter.
    """

    def __init__(self, n_positions: int, dim: int, base: float = 10000.0):
        super().__init__()
        self.n_positions, self.dim = n_positions, dim
        self.register_buffer("table", sinusoidal_table(n_positions, dim, base), persistent=False)

    def forward(self, n_tokens: int | None = None) -> torch.Tensor:
        """Positions 0..n_tokens-1 as [n_tokens, dim] (all of them when n_tokens is None)."""
        n = _check_length(n_tokens, self.n_positions, type(self).__name__)
        return self.table[:n]

    def extra_repr(self) -> str:
        return f"n_positions={self.n_positions}, dim={self.dim}"


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position (GPT-2, GPT-3 and DALL·E's text positions).

    More flexible than sinusoids, but it knows nothing until trained and cannot go past
    `n_positions`.
    """

    def __init__(self, n_positions: int, dim: int, std: float = 0.02,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.n_positions, self.dim = n_positions, dim
        self.embedding = nn.Embedding(n_positions, dim)
        _init_normal_(self.embedding.weight, std, generator)

    def forward(self, n_tokens: int | None = None) -> torch.Tensor:
        """Positions 0..n_tokens-1 as [n_tokens, dim] (all of them when n_tokens is None)."""
        n = _check_length(n_tokens, self.n_positions, type(self).__name__)
        return self.embedding.weight[:n]  # the first n rows: a lookup of ids 0..n-1

    def extra_repr(self) -> str:
        return f"n_positions={self.n_positions}, dim={self.dim}"


class RowColumnPositionalEmbedding(nn.Module):
    """Image positions on a grid_size x grid_size token grid: a row vector plus a column vector.

    Image tokens are flattened in raster order (row by row, left to right), so token t sits at
    row t // grid_size and column t % grid_size, and gets row[t // grid_size] + col[t % grid_size].
    Tokens in the same row (or column) share a vector, so the model is told the 2-D layout
    directly, with 2 * grid_size trained vectors instead of grid_size**2. DALL·E embeds its
    32 x 32 image tokens this way.
    """

    def __init__(self, grid_size: int, dim: int, std: float = 0.02,
                 generator: torch.Generator | None = None):
        super().__init__()
        if grid_size <= 0:
            raise ValueError(f"grid_size must be positive, got {grid_size}")
        self.grid_size, self.dim = grid_size, dim
        self.n_positions = grid_size * grid_size
        self.row = nn.Embedding(grid_size, dim)
        self.col = nn.Embedding(grid_size, dim)
        _init_normal_(self.row.weight, std, generator)
        _init_normal_(self.col.weight, std, generator)

    def forward(self, n_tokens: int | None = None) -> torch.Tensor:
        """Image positions 0..n_tokens-1 in raster order as [n_tokens, dim] (all grid_size**2 when None).

        A prefix of the raster order is what generation needs: the first n image tokens so far.
        """
        n = _check_length(n_tokens, self.n_positions, type(self).__name__)
        grid = self.row.weight[:, None, :] + self.col.weight[None, :, :]  # [rows, cols, dim]
        return grid.reshape(self.n_positions, self.dim)[:n]  # row-major flatten = raster order

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, dim={self.dim}"
