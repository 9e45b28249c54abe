"""Attention: DALL·E's masks against brute-force definitions, and attention with a KV cache."""
import math

import pytest
import torch

from dalle_lessons.attention import (IMAGE_ATTENTION_KINDS, CausalSelfAttention, KVCache, attention_written_out,
                                     causal_mask, column_mask, conv_mask, dalle_mask, image_mask, row_mask)


# --- brute force: one (query, key) pair at a time, from the grid coordinates ------------------------

def brute_image_mask(kind: str, grid: int, kernel: int = 3, wraparound: bool = True) -> torch.Tensor:
    """The definitions in attention.py's docstring, written as loops over cells and kernel offsets."""
    n = grid * grid
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        r, c = divmod(i, grid)
        if kind == "full":
            keys = range(i + 1)
        elif kind == "row" and wraparound:  # the previous `grid` tokens in raster order, and itself
            keys = range(max(0, i - grid), i + 1)
        elif kind == "row":
            keys = [r * grid + cc for cc in range(c + 1)]
        elif kind == "column":
            keys = [rr * grid + c for rr in range(r + 1)]
        elif kind == "conv":
            h, keys = kernel // 2, []
            for dr in range(h + 1):  # rows above (0 = own row)
                for dc in range(-h, h + 1):  # columns left (-) and right (+)
                    if dr == 0 and dc > 0:
                        continue  # right of the query in its own row: the future
                    if not wraparound and not 0 <= c + dc < grid:
                        continue
                    j = (r - dr) * grid + (c + dc)  # raster index; past an edge it wraps to the next row
                    if 0 <= j <= i:
                        keys.append(j)
        else:
            raise AssertionError(kind)
        for j in keys:
            mask[i, j] = True
    return mask


CASES = [("full", 3, True), ("row", 3, True), ("row", 3, False), ("column", 3, True), ("conv", 3, True),
         ("conv", 3, False), ("conv", 5, True), ("conv", 5, False), ("conv", 11, True)]


@pytest.mark.parametrize("grid", [1, 2, 4, 5, 7])
@pytest.mark.parametrize("kind, kernel, wraparound", CASES)
def test_image_masks_match_brute_force(kind, kernel, wraparound, grid):
    built = image_mask(kind, grid, kernel=kernel, wraparound=wraparound)
    assert built.dtype == torch.bool and built.shape == (grid * grid, grid * grid)
    assert torch.equal(built, brute_image_mask(kind, grid, kernel, wraparound))


@pytest.mark.parametrize("text_len", [1, 3, 6])
@pytest.mark.parametrize("kind", IMAGE_ATTENTION_KINDS)
def test_dalle_mask_properties(kind, text_len):
    grid = 4
    mask = dalle_mask(text_len, grid, kind, kernel=3)
    n = text_len + grid * grid
    assert mask.shape == (n, n) and mask.dtype == torch.bool
    assert not (mask & ~causal_mask(n)).any(), "no position may attend to a later one"
    assert mask.diagonal().all(), "every position attends to itself (so no softmax row is empty)"
    assert torch.equal(mask[:text_len, :text_len], causal_mask(text_len)), "text attends causally to text"
    assert mask[text_len:, :text_len].all(), "every image token sees all the text"
    assert not mask[:text_len, text_len:].any(), "text never sees the image"
    assert torch.equal(mask[text_len:, text_len:], image_mask(kind, grid, kernel=3))


def test_paper_figure_11_on_a_4x4_grid():
    """Ramesh et al. 2021, Fig. 11: 6 text tokens, a 4 x 4 image, 3 x 3 convolution."""
    row = row_mask(4)
    # "each image token attends to the previous 5 image tokens", the farthest directly above
    assert row.sum(1).tolist() == [1, 2, 3, 4] + [5] * 12
    for i in range(4, 16):
        assert row[i, i - 4] and not row[i, i - 5]
    # token (2, 0) = 8 sees (1, 0..3) and itself: the window wraps from the row above
    assert row[8].nonzero().flatten().tolist() == [4, 5, 6, 7, 8]
    # column: itself and the cells above it
    assert column_mask(4)[14].nonzero().flatten().tolist() == [2, 6, 10, 14]
    # conv 3 x 3 around interior token (2, 1) = 9: (1, 0), (1, 1), (1, 2), (2, 0) and itself
    assert conv_mask(4, 3)[9].nonzero().flatten().tolist() == [4, 5, 6, 8, 9]
    # at the left edge (2, 0) = 8 the window wraps: (0, 3) = 3 and (1, 3) = 7 stand in for the
    # missing left column; without wraparound they are dropped
    assert conv_mask(4, 3)[8].nonzero().flatten().tolist() == [3, 4, 5, 7, 8]
    assert conv_mask(4, 3, wraparound=False)[8].nonzero().flatten().tolist() == [4, 5, 8]
    assert dalle_mask(6, 4, "row").shape == (22, 22)


def test_paper_sizes():
    """The paper's 32 x 32 grid: row sees 33 tokens, column up to 32, an 11 x 11 conv 61."""
    assert row_mask(32).sum(1).max() == 33
    assert column_mask(32).sum(1).max() == 32
    assert conv_mask(32, 11)[20 * 32 + 16].sum() == 5 * 11 + 6


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown attention kind 'diagonal'"):
        image_mask("diagonal", 4)
    with pytest.raises(ValueError, match="odd"):
        conv_mask(4, kernel=4)


# --- attention and the KV cache -------------------------------------------------------------------

def reference_attention(layer: CausalSelfAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention written out: softmax(q k^T / sqrt(d) with -inf where masked) v, head by head."""
    B, n, C = x.shape
    H, hd = layer.n_heads, layer.head_dim
    q, k, v = layer.qkv(x).split(C, dim=2)
    q, k, v = (t.view(B, n, H, hd).transpose(1, 2) for t in (q, k, v))
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    return layer.proj((weights @ v).transpose(1, 2).reshape(B, n, C))


@pytest.mark.parametrize("kind", IMAGE_ATTENTION_KINDS)
def test_attention_matches_reference(kind):
    torch.manual_seed(0)
    layer = CausalSelfAttention(32, 4).eval()
    mask = dalle_mask(3, 3, kind, kernel=3)
    x = torch.randn(2, mask.shape[0], 32)
    expected = reference_attention(layer, x, mask)
    given_mask = None if kind == "full" else mask  # full: the kernel's own causal path
    assert torch.allclose(layer(x, given_mask), expected, atol=1e-5)


def test_written_out_attention_is_the_fused_kernel():
    """The bf16-on-CPU path computes what scaled_dot_product_attention computes."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g) for _ in range(3))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    mask = dalle_mask(3, 2, "row")
    assert torch.allclose(attention_written_out(q, k, v, mask), sdpa(q, k, v, attn_mask=mask), atol=1e-6)
    assert torch.allclose(attention_written_out(q, k, v, is_causal=True), sdpa(q, k, v, is_causal=True), atol=1e-6)
    last = attention_written_out(q[:, :, -2:], k, v, is_causal=True)  # 2 new queries after a prefix of 5
    assert torch.allclose(last, sdpa(q, k, v, is_causal=True)[:, :, -2:], atol=1e-6)


def test_bf16_autocast_on_cpu_stays_close_to_fp32():
    torch.manual_seed(0)
    layer = CausalSelfAttention(32, 4).eval()
    x = torch.randn(2, 10, 32)
    mask = dalle_mask(2, 3, "conv", kernel=3)[:10, :10]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer(x, mask)
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), layer(x, mask), atol=2e-2)


@pytest.mark.parametrize("kind", ["full", "row", "conv"])
def test_kv_cache_gives_the_full_pass_in_pieces(kind):
    """Prefix, then one token at a time, then a chunk: each piece sees the cached keys, nothing recomputed."""
    torch.manual_seed(0)
    layer = CausalSelfAttention(32, 4).eval()
    mask = dalle_mask(3, 3, kind, kernel=3)
    n = mask.shape[0]
    x = torch.randn(2, n, 32)
    full = layer(x, None if kind == "full" else mask)
    cache = KVCache(n_layers=1, batch_size=2, n_heads=4, max_len=n, head_dim=8)
    outputs = []
    for start, end in [(0, 4), (4, 5), (5, 6), (6, n)]:
        piece_mask = None if kind == "full" else mask[start:end, :end]
        outputs.append(layer(x[:, start:end], piece_mask, cache))
        cache.advance(end - start)
    assert cache.length == n
    assert torch.allclose(torch.cat(outputs, dim=1), full, atol=1e-5)


def test_kv_cache_refuses_to_overflow():
    cache = KVCache(n_layers=1, batch_size=1, n_heads=1, max_len=3, head_dim=2)
    cache.update(0, torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))
    cache.advance(3)
    with pytest.raises(ValueError, match="KV cache is full"):
        cache.update(0, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))


def test_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="divisible"):
        CausalSelfAttention(30, 4)
