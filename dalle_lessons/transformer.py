"""The DALL·E transformer: one decoder-only model over the stream [text | image].

The stream the model reads is `[bos, t_1 .. t_T, i_1 .. i_{N-1}]` (T = text_seq_len, N = image
tokens): a learned start vector, the caption, then the image cells in raster order. Position p
predicts stream token p + 1, so the first T positions predict the caption and the last N predict
the image, `i_1 .. i_N`: T + N positions in all (1280 for the paper: 256 + 1024). The paper speaks
of a start-of-image token after the text; with a fixed text length the boundary is a known
position, so here the last text position predicts the first image token, and the start vector in
front lets the model predict the first caption token as well.

Embeddings (Ramesh et al. 2021, section 2.2 and appendix B.1):
- text: a token embedding plus a learned position embedding; a pad token gets instead a learned pad
  embedding *of its position* (one per text position), not a single shared one. The paper chose
  this over masking the pads out of attention: higher validation loss, but better results on
  out-of-distribution captions.
- image: a token embedding plus a row embedding plus a column embedding (`RowColumnPositionalEmbedding`).

Blocks are pre-LayerNorm GPT-2 blocks. Each block's attention is 'full', 'row', 'column' or 'conv'
(see `attention.py` for the exact masks); `layer_kinds` gives the paper's pattern. Two output heads,
one per vocabulary: text positions only ever score text tokens and image positions image tokens. A
single head over both vocabularies with the wrong half masked to -inf is the same function, but
computes logits that are thrown away (16384 text logits at each of 1024 image positions, for the
paper). Loss = text_loss_weight * text CE + image_loss_weight * image CE (1/8 and 7/8), each a mean
over its own tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import CausalSelfAttention, KVCache, dalle_mask
from .config import TransformerConfig
from .positional import LearnedPositionalEmbedding, RowColumnPositionalEmbedding

ATTENTION_PATTERNS = ("full", "paper")


def layer_kinds(n_layers: int, pattern: str = "paper") -> list[str]:
    """The attention kind of each layer, first to last.

    'paper' (Ramesh et al. 2021, appendix B.1): the last layer is convolutional; layer i (counting
    from 1) is 'column' when (i - 2) % 4 == 0 and 'row' otherwise, so the layers go row, column,
    row, row, row, column, row, row, ..., conv. 'full': dense causal attention everywhere.
    """
    if pattern == "full":
        return ["full"] * n_layers
    if pattern == "paper":
        kinds = ["column" if (i - 2) % 4 == 0 else "row" for i in range(1, n_layers)]
        return kinds + ["conv"] if n_layers > 0 else []
    raise ValueError(f"unknown attention_pattern {pattern!r}: choose one of {', '.join(map(repr, ATTENTION_PATTERNS))}")


class MLP(nn.Module):
    """The position-wise feed-forward network: expand 4x, GELU, project back."""

    def __init__(self, d_model: int, dropout: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.proj = nn.Linear(4 * d_model, d_model)  # the residual projection (GPT-2 scales its init)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))  # exact GELU: on CPU faster than tanh's


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: TransformerConfig, kind: str, layer_index: int):
        super().__init__()
        self.kind = kind  # which mask this block's attention uses
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config.d_model, config.n_heads, config.dropout, layer_index)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config.d_model, config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask, cache)
        return x + self.mlp(self.ln_2(x))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


@dataclass
class TransformerOutput:
    """What one training forward pass returns: logits per vocabulary and the weighted loss."""

    text_logits: torch.Tensor  # [B, T, text_vocab]: position t scores text token t (0-based)
    image_logits: torch.Tensor  # [B, n, image_vocab]: position m scores image token m (raster order)
    text_loss: torch.Tensor  # mean cross-entropy over the T caption tokens (pads included)
    image_loss: torch.Tensor  # mean cross-entropy over the n image tokens
    loss: torch.Tensor  # text_loss_weight * text_loss + image_loss_weight * image_loss


def drop_captions(text_ids: torch.Tensor, p: float, pad_id: int = 0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each caption, with probability p, by the empty caption (all pads).

    Training on some empty captions teaches the model p(image) as well as p(image | text), which
    classifier-free guidance needs at sampling time. One uniform draw per caption from `generator`.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"caption dropout must be a probability in [0, 1], got {p}")
    if p == 0.0:
        return text_ids
    device = generator.device if generator is not None else text_ids.device
    draws = torch.rand(text_ids.shape[0], generator=generator, device=device).to(text_ids.device)
    return text_ids.masked_fill((draws < p)[:, None], pad_id)


class DalleTransformer(nn.Module):
    """DALL·E's stage 2: models p(text, image tokens) autoregressively over [text | image].

    Training: `model(text_ids, image_ids)` -> `TransformerOutput`. Generation: `prefill(text_ids)`
    then `step(image_id, cache)` once per new image token; both return next-image-token logits.
    """

    def __init__(self, config: TransformerConfig, generator: torch.Generator | None = None):
        super().__init__()
        if config.d_model % config.n_heads != 0:
            raise ValueError(f"d_model={config.d_model} must be divisible by n_heads={config.n_heads}")
        if not 0 <= config.pad_id < config.text_vocab_size:
            raise ValueError(f"pad_id={config.pad_id} must be a text id below text_vocab_size={config.text_vocab_size}")
        self.config = config
        T, d = config.text_seq_len, config.d_model
        self.kinds = layer_kinds(config.n_layers, config.attention_pattern)

        self.bos = nn.Parameter(torch.zeros(d))  # the start vector: lets position 0 predict t_1
        self.text_emb = nn.Embedding(config.text_vocab_size, d)
        self.pad_emb = nn.Embedding(T, d)  # one learned pad embedding per text position
        self.text_pos = LearnedPositionalEmbedding(T + 1, d)  # bos + T caption positions
        self.image_emb = nn.Embedding(config.image_vocab_size, d)
        self.image_pos = RowColumnPositionalEmbedding(config.image_grid, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, kind, i) for i, kind in enumerate(self.kinds))
        self.ln_f = nn.LayerNorm(d)
        self.text_head = nn.Linear(d, config.text_vocab_size, bias=False)
        self.image_head = nn.Linear(d, config.image_vocab_size, bias=False)

        # One mask per sparse kind, over the T + N stream positions. The stream's text part is
        # bos + caption (T + 1 tokens) and its image part the first N - 1 cells, so the mask over
        # [T + 1 text | N image] cropped to T + N rows/columns is exactly right.
        for kind in sorted(set(self.kinds) - {"full"}):
            mask = dalle_mask(T + 1, config.image_grid, kind, config.conv_kernel)[: self.max_len, : self.max_len]
            self.register_buffer(f"mask_{kind}", mask, persistent=False)
        self._init_weights(generator)

    @property
    def max_len(self) -> int:
        """Stream positions: bos + T text + N - 1 image tokens (the last image token is never read)."""
        return self.config.text_seq_len + self.config.image_seq_len

    # --- initialisation --------------------------------------------------------------------------

    @torch.no_grad()
    def _init_weights(self, generator: torch.Generator | None) -> None:
        """GPT-2's init: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2 L).

        Each block adds two residual branches; scaling their last layers keeps the variance of the
        residual stream from growing with depth at initialisation.
        """
        std = 0.02
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                scale = 1 / math.sqrt(2 * self.config.n_layers) if name.endswith(".proj") else 1.0
                module.weight.normal_(0.0, std * scale, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, std, generator=generator)
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        self.bos.normal_(0.0, std, generator=generator)

    # --- embeddings and the stack ----------------------------------------------------------------

    def _embed_text(self, text_ids: torch.Tensor) -> torch.Tensor:
        """[B, T] ids -> [B, T + 1, d]: bos, then the caption; pads get their position's pad vector."""
        B, T = text_ids.shape
        tokens = self.text_emb(text_ids)
        is_pad = (text_ids == self.config.pad_id)[..., None]
        tokens = torch.where(is_pad, self.pad_emb.weight[:T], tokens)
        x = torch.cat([self.bos.expand(B, 1, -1), tokens], dim=1)
        return x + self.text_pos(T + 1)

    def _embed_image(self, image_ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """[B, n] ids of raster cells start..start+n-1 -> [B, n, d] (token + row + column)."""
        n = image_ids.shape[1]
        return self.image_emb(image_ids) + self.image_pos(start + n)[start:]

    def _mask(self, kind: str, start: int, n: int) -> torch.Tensor | None:
        """Rows start..start+n-1 of a layer's mask, against keys 0..start+n-1 (None: plain causal)."""
        if kind == "full":
            return None
        return getattr(self, f"mask_{kind}")[start:start + n, :start + n]

    def _run(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The blocks and the final LayerNorm over stream positions start..start+n-1."""
        start, n = (cache.length if cache is not None else 0), x.shape[1]
        if start + n > self.max_len:
            raise ValueError(f"the stream holds at most {self.max_len} positions, asked for {start + n}")
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, self._mask(block.kind, start, n), cache)
        if cache is not None:
            cache.advance(n)
        return self.ln_f(x)

    # --- training --------------------------------------------------------------------------------

    def forward(self, text_ids: torch.Tensor, image_ids: torch.Tensor,
                generator: torch.Generator | None = None, caption_dropout: bool = True) -> TransformerOutput:
        """Teacher-forced pass: text_ids [B, T] (padded with pad_id), image_ids [B, n], 1 <= n <= N.

        In training mode, config.caption_dropout empties captions (draws from `generator`); the
        emptied caption is then also the text target, as for any caption. `caption_dropout=False`: the
        caller already did (a distributed trainer drops them once for the whole global batch).
        """
        self._check_text(text_ids)
        n = self._check_image(image_ids, low=1)
        if self.training and self.config.caption_dropout > 0 and caption_dropout:
            text_ids = drop_captions(text_ids, self.config.caption_dropout, self.config.pad_id, generator)
        T = self.config.text_seq_len
        x = torch.cat([self._embed_text(text_ids), self._embed_image(image_ids[:, :-1])], dim=1)
        h = self._run(x)
        text_logits = self.text_head(h[:, :T])
        image_logits = self.image_head(h[:, T:])
        text_loss = F.cross_entropy(text_logits.flatten(0, 1), text_ids.flatten())
        image_loss = F.cross_entropy(image_logits.flatten(0, 1), image_ids[:, :n].flatten())
        loss = self.config.text_loss_weight * text_loss + self.config.image_loss_weight * image_loss
        return TransformerOutput(text_logits, image_logits, text_loss, image_loss, loss)

    # --- generation ------------------------------------------------------------------------------

    def new_cache(self, batch_size: int) -> KVCache:
        """An empty KV cache with room for the whole stream, on this model's device and dtype."""
        ref = self.text_head.weight
        return KVCache(self.config.n_layers, batch_size, self.config.n_heads, self.max_len,
                       self.config.head_dim, device=ref.device, dtype=ref.dtype)

    def empty_text(self, batch_size: int) -> torch.Tensor:
        """[batch_size, T] empty captions (all pads): the unconditional input for guidance."""
        return torch.full((batch_size, self.config.text_seq_len), self.config.pad_id,
                          dtype=torch.long, device=self.text_head.weight.device)

    @torch.no_grad()
    def prefill(self, text_ids: torch.Tensor, image_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, KVCache]:
        """Read the caption (and optionally the first n < N image tokens) into a fresh KV cache.

        Returns (logits [B, image_vocab] for image token n, the cache). Pass image_ids to complete
        an image whose top rows are given.
        """
        self._check_text(text_ids)
        x = self._embed_text(text_ids)
        if image_ids is not None and image_ids.shape[1] > 0:
            self._check_image(image_ids, high=self.config.image_seq_len - 1)
            x = torch.cat([x, self._embed_image(image_ids)], dim=1)
        cache = self.new_cache(text_ids.shape[0])
        h = self._run(x, cache)
        return self.image_head(h[:, -1]), cache

    @torch.no_grad()
    def step(self, image_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feed one image token per sequence, image_ids [B]; return logits [B, image_vocab] for the next.

        Only the new token is computed: its keys and values join the cache, its query reads the
        cached ones.
        """
        cell = cache.length - (self.config.text_seq_len + 1)  # raster index of the token fed now
        if cell < 0:
            raise ValueError("step() needs a cache filled by prefill() first")
        if cell >= self.config.image_seq_len - 1:
            raise ValueError(f"all {self.config.image_seq_len} image tokens are already predicted: "
                             f"the last one is sampled, never fed back")
        x = self._embed_image(image_ids.view(-1, 1), start=cell)
        return self.image_head(self._run(x, cache)[:, -1])

    # --- checks and counts -----------------------------------------------------------------------

    def _check_text(self, text_ids: torch.Tensor) -> None:
        T, V = self.config.text_seq_len, self.config.text_vocab_size
        if text_ids.dim() != 2 or text_ids.shape[1] != T:
            raise ValueError(f"text_ids must be [batch, {T}] (pad or truncate captions to text_seq_len={T}; "
                             f"the tokenizer does this), got shape {tuple(text_ids.shape)}")
        if text_ids.numel() and not text_ids.is_meta and (text_ids.min() < 0 or text_ids.max() >= V):
            raise ValueError(f"text ids must lie in [0, {V}), got [{int(text_ids.min())}, {int(text_ids.max())}]")

    def _check_image(self, image_ids: torch.Tensor, low: int = 0, high: int | None = None) -> int:
        N, V = self.config.image_seq_len, self.config.image_vocab_size
        high = N if high is None else high
        if image_ids.dim() != 2 or not low <= image_ids.shape[1] <= high:
            raise ValueError(f"image_ids must be [batch, n] with {low} <= n <= {high} (the image has "
                             f"{N} tokens), got shape {tuple(image_ids.shape)}")
        if image_ids.numel() and not image_ids.is_meta and (image_ids.min() < 0 or image_ids.max() >= V):
            raise ValueError(f"image ids must lie in [0, {V}), got [{int(image_ids.min())}, {int(image_ids.max())}]")
        return image_ids.shape[1]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
