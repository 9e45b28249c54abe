"""Attention: multi-head causal self-attention with a KV cache, and DALL·E's attention masks.

DALL·E is one decoder-only transformer over a single stream `[text | image]`. What each token may
look at is a boolean mask, `mask[query, key] = True` meaning "the query may attend to the key"
(the convention of `torch.nn.functional.scaled_dot_product_attention`). The masks are built here
by small functions, so that a lesson can draw them:

- text tokens attend causally to the text before them (and never to the image, which comes later);
- every image token attends to *all* the text;
- image-to-image attention is one of four patterns (Ramesh et al. 2021, appendix B.1 and Fig. 11):

  ``full``    every earlier image token (dense causal attention);
  ``row``     the previous ``grid + 1`` tokens in raster order, itself included. On a g x g grid that
              is the rest of the row above (from the token's own column on) plus its own row up to
              itself, so the farthest token attended to is the one directly above. The window slides
              along the raster order and wraps from one row into the next: the paper's Fig. 11(a)
              ("each image token attends to the previous 5 image tokens" on a 4 x 4 grid, "so that
              the last token being attended to is the one in the same column of the previous row").
  ``column``  the tokens in the same column, above it, itself included (Fig. 11(b)). For GPU
              speed the paper transposes the image states first, so that this same set of tokens
              lies contiguous in column-major order and uses its mask 11(c) instead.
  ``conv``    a causal k x k neighbourhood centred on the token: the k//2 rows above it, k//2
              columns either side, plus the k//2 tokens to its left in its own row and itself. Like
              the row mask it wraps around: the window is a fixed set of raster offsets, so at the
              left and right edges it continues into the neighbouring row (Fig. 11(d), "a causal
              convolutional attention pattern with wraparound behavior (similar to the row
              attention)"; the paper uses k = 11 in its last layer). The paper defines it only by
              that picture; a fixed set of raster offsets is the reading that makes it behave like
              the row mask.

``wraparound=False`` gives the strictly 2-D variants of ``row`` (own row only) and ``conv`` (no
crossing the left/right edge), the readings one might guess from the names; a lesson can draw both.
All masks are over content positions: position p *holds* token p (text first, then image cells in
raster order); the transformer decides what each position predicts.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGE_ATTENTION_KINDS = ("full", "row", "column", "conv")


# --- masks ----------------------------------------------------------------------------------------

def causal_mask(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """[n, n] lower-triangular: position i may attend to positions 0..i (GPT's mask)."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def _raster_offsets(grid: int, device) -> torch.Tensor:
    """[N, N] with entry (i, j) = i - j: how many raster steps key j lies behind query i."""
    index = torch.arange(grid * grid, device=device)
    return index[:, None] - index[None, :]


def row_mask(grid: int, wraparound: bool = True, device=None) -> torch.Tensor:
    """[N, N] image-to-image row attention over a grid x grid raster (N = grid**2).

    wraparound=True (the paper): each token sees the previous `grid` tokens and itself, a sliding
    window that reaches back to the token directly above. wraparound=False: only its own row, up to
    itself.
    """
    offset = _raster_offsets(grid, device)
    if wraparound:
        return (offset >= 0) & (offset <= grid)
    index = torch.arange(grid * grid, device=device)
    same_row = (index[:, None] // grid) == (index[None, :] // grid)
    return same_row & (offset >= 0)


def column_mask(grid: int, device=None) -> torch.Tensor:
    """[N, N] image-to-image column attention: the same column, rows above and itself."""
    offset = _raster_offsets(grid, device)
    return (offset >= 0) & (offset % grid == 0)


def conv_mask(grid: int, kernel: int = 11, wraparound: bool = True, device=None) -> torch.Tensor:
    """[N, N] causal `kernel` x `kernel` convolutional attention, centred on the query token.

    With h = kernel // 2, query (r, c) sees (r - dr, c + dc) for dr in 1..h and |dc| <= h, and
    (r, c - dc) for dc in 0..h. wraparound=True (the paper) measures these as raster offsets
    dr * grid - dc, so columns past an edge continue into the neighbouring row; wraparound=False
    drops them.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be a positive odd number (the window is centred), got {kernel}")
    h = kernel // 2
    offset = _raster_offsets(grid, device)
    if wraparound:
        allowed = torch.zeros_like(offset, dtype=torch.bool)
        for dr in range(h + 1):  # rows back; within a row the offset may be off by at most h
            allowed |= (offset - dr * grid).abs() <= h
        return allowed & (offset >= 0)
    index = torch.arange(grid * grid, device=device)
    rows, cols = index // grid, index % grid
    rows_back = rows[:, None] - rows[None, :]
    cols_apart = (cols[:, None] - cols[None, :]).abs()
    return (rows_back >= 0) & (rows_back <= h) & (cols_apart <= h) & (offset >= 0)


def image_mask(kind: str, grid: int, kernel: int = 11, wraparound: bool = True, device=None) -> torch.Tensor:
    """[N, N] image-to-image mask of one kind: 'full', 'row', 'column' or 'conv'."""
    if kind == "full":
        return causal_mask(grid * grid, device)
    if kind == "row":
        return row_mask(grid, wraparound, device)
    if kind == "column":
        return column_mask(grid, device)
    if kind == "conv":
        return conv_mask(grid, kernel, wraparound, device)
    raise ValueError(f"unknown attention kind {kind!r}: choose one of {', '.join(map(repr, IMAGE_ATTENTION_KINDS))}")


def dalle_mask(text_len: int, grid: int, kind: str = "full", kernel: int = 11, wraparound: bool = True,
               device=None) -> torch.Tensor:
    """[text_len + grid**2, same] mask over the stream [text | image] for one attention kind.

    Top-left: causal text-to-text. Bottom-left: every image token sees all the text. Bottom-right:
    the image-to-image pattern `kind`. Top-right stays False: text never sees the image after it.
    """
    n_image = grid * grid
    mask = torch.zeros(text_len + n_image, text_len + n_image, dtype=torch.bool, device=device)
    mask[:text_len, :text_len] = causal_mask(text_len, device)
    mask[text_len:, :text_len] = True
    mask[text_len:, text_len:] = image_mask(kind, grid, kernel, wraparound, device)
    return mask


# --- KV cache -------------------------------------------------------------------------------------

class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to `max_len`.

    Incremental decoding feeds one new token per step; its query attends to the cached keys and
    values of all earlier tokens, so nothing about the prefix is ever recomputed. The model calls
    `advance(n)` once all its layers have stored the n new tokens.
    """

    def __init__(self, n_layers: int, batch_size: int, n_heads: int, max_len: int, head_dim: int,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        shape = (n_layers, batch_size, n_heads, max_len, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0  # tokens stored so far (in every layer)

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values [B, H, n, hd]; return all of them so far [B, H, length+n, hd]."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache is full: {end} tokens asked for, room for {self.max_len}")
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the sequences `index` [B'] (repeats allowed): resampling particles, as beam search does."""
        self.keys, self.values = self.keys[:, index], self.values[:, index]


# --- attention ------------------------------------------------------------------------------------

def attention_written_out(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                          is_causal: bool = False, dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim), masked) v as plain operations; q [B, H, n, hd], k, v [B, H, S, hd].

    What `scaled_dot_product_attention` computes. The model uses it for bf16/fp16 on a CPU, where
    torch's fused kernel is several times slower (its backward above all) than these two matmuls
    on the CPU's bf16 units.
    """
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    if is_causal:
        n, S = q.shape[-2], k.shape[-2]
        mask = torch.ones(n, S, dtype=torch.bool, device=q.device).tril(S - n)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = F.dropout(scores.softmax(dim=-1), dropout_p) if dropout_p > 0 else scores.softmax(dim=-1)
    return weights @ v


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention on `scaled_dot_product_attention` (a fused kernel on CPU and GPU).

    One linear layer makes queries, keys and values for all heads at once; each head attends in its
    own head_dim-sized subspace; a last linear layer mixes the heads back into d_model.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, layer_index: int = 0):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.layer_index = layer_index  # which slot of a KVCache this layer uses
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)  # the residual projection (GPT-2 scales its init)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """x [B, n, d_model] -> [B, n, d_model].

        `mask` [n, n_keys] (True = may attend) covers the n new queries against every key so far
        (cached ones first). None means plain causal attention, the fast path.
        """
        B, n, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, n, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(self.layer_index, k, v)
        n_keys = k.shape[2]
        is_causal = False
        if mask is None:
            if n == n_keys:
                is_causal = True  # no prefix: the kernel applies the causal mask itself
            elif n > 1:  # several new queries after a cached prefix: causal, aligned bottom-right
                mask = torch.ones(n, n_keys, dtype=torch.bool, device=x.device).tril(n_keys - n)
            # n == 1: the one new token may see every cached key, so no mask at all
        dropout_p = self.dropout if self.training else 0.0
        if x.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
            y = attention_written_out(q, k, v, mask, is_causal, dropout_p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(B, n, C)
        return self.resid_dropout(self.proj(y))

    def extra_repr(self) -> str:
        return f"n_heads={self.n_heads}, head_dim={self.head_dim}"
