"""A small CLIP: a text encoder and an image encoder trained so that matching pairs point the same way.

DALL·E drew 512 samples per caption and let CLIP (Radford et al. 2021) keep the best. CLIP is a
separate model: it scores how well an image fits a caption; it never generates anything. Its loss is
contrastive: in a batch of B pairs, each image must pick out its own caption among the B captions
and each caption its own image (a symmetric cross-entropy over the B x B similarity matrix).

    model = ClipModel(ClipConfig())
    sims = model(images, text_ids)                 # [B_text, B_image] scaled cosine similarities
    loss = contrastive_loss(sims)                  # CLIP's loss, one-hot targets
    loss = contrastive_loss(sims, matches)         # soft targets: equivalent pairs are not negatives

Text: a small causal transformer over `CaptionTokenizer` ids, pooled at the last real token (the
tokenizer has no end-of-text token; under causal attention the last real token is the one that has
read the whole caption in order, which is CLIP's own choice). Images: a small CNN whose last feature
map is flattened, not averaged, so that *where* things are survives into the embedding.
"""
from __future__ import annotations

import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import CausalSelfAttention
from .config import ClipConfig
from .transformer import MLP

LOGIT_SCALE_INIT = math.log(1 / 0.07)  # CLIP's initial temperature, 0.07
LOGIT_SCALE_MAX = math.log(100.0)  # CLIP clamps the learned scale at 100 so training stays stable


class TextEncoder(nn.Module):
    """Caption ids [B, T] -> one vector per caption [B, embed_dim] (not yet normalised)."""

    def __init__(self, config: ClipConfig):
        super().__init__()
        self.config = config
        d = config.text_width
        self.token_emb = nn.Embedding(config.text_vocab_size, d)
        self.pos_emb = nn.Parameter(torch.zeros(config.text_seq_len, d))
        self.blocks = nn.ModuleList(_TextBlock(d, config.text_heads, i) for i in range(config.text_layers))
        self.ln_f = nn.LayerNorm(d)
        self.proj = nn.Linear(d, config.embed_dim, bias=False)

    def forward(self, text_ids: torch.Tensor) -> torch.Tensor:
        real = text_ids != self.config.pad_id  # [B, T]; padding sits on the right
        length = max(1, int(real.sum(1).max()))  # drop the columns that are padding in every row:
        text_ids, real = text_ids[:, :length], real[:, :length]  # under causal attention, nothing changes
        x = self.token_emb(text_ids) + self.pos_emb[: text_ids.shape[1]]
        for block in self.blocks:
            x = block(x)  # causal: a real token never sees the padding to its right
        x = self.ln_f(x)
        if self.config.pooling == "last":
            last = (real.sum(1) - 1).clamp(min=0)  # index of the last real token
            pooled = x[torch.arange(len(x), device=x.device), last]
        else:
            weights = real.float().unsqueeze(-1)
            pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.proj(pooled)


class _TextBlock(nn.Module):
    """Pre-LayerNorm block with causal self-attention (the same parts as the DALL·E transformer's)."""

    def __init__(self, d: int, n_heads: int, index: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, n_heads, layer_index=index)
        self.mlp = MLP(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def _conv_stage(c_in: int, c_out: int) -> nn.Sequential:
    """Halve the side (stride-2 conv), then one more 3x3 conv; GroupNorm keeps scores batch-independent."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.ReLU())


class ImageEncoder(nn.Module):
    """Images [B, 3, H, W] in [0, 1] -> one vector per image [B, embed_dim] (not yet normalised)."""

    def __init__(self, config: ClipConfig):
        super().__init__()
        self.config = config
        w = config.image_width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.GroupNorm(8, w), nn.ReLU())
        self.stages = nn.Sequential(_conv_stage(w, w), _conv_stage(w, 2 * w), _conv_stage(2 * w, 4 * w))
        side = config.image_size // 8
        # flatten, not average: a global average would forget where each shape is
        self.proj = nn.Linear(4 * w * side * side, config.embed_dim, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(2 * images - 1))  # centre the pixels around 0
        return self.proj(x.flatten(1))


class ClipModel(nn.Module):
    """Two encoders into one space, and a learned temperature for their cosine similarities."""

    def __init__(self, config: ClipConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        self.text = TextEncoder(config)
        self.image = ImageEncoder(config)
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))
        if generator is not None:  # a seeded initialisation (training); otherwise torch's defaults
            self._init_weights(generator)

    def _init_weights(self, generator: torch.Generator) -> None:
        for name, p in self.named_parameters():
            if name == "logit_scale":
                continue
            if p.dim() >= 2:
                fan_in = p[0].numel()
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=generator) * (1 / math.sqrt(fan_in)))
            elif name.endswith("pos_emb"):
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
        for module in self.modules():  # biases zero, norms identity
            if isinstance(module, (nn.Linear, nn.Conv2d)) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
                nn.init.ones_(module.weight), nn.init.zeros_(module.bias)
        with torch.no_grad():  # token embeddings: small, like GPT-2's
            self.text.token_emb.weight.copy_(torch.randn(self.text.token_emb.weight.shape, generator=generator) * 0.02)

    def encode_text(self, text_ids: torch.Tensor) -> torch.Tensor:
        """Caption ids [B, T] -> unit vectors [B, embed_dim]."""
        self._check_text(text_ids)
        return F.normalize(self.text(text_ids).float(), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> unit vectors [B, embed_dim]."""
        self._check_images(images)
        return F.normalize(self.image(images).float(), dim=-1)

    def scale(self) -> torch.Tensor:
        """The multiplier of the cosine similarities: exp(logit_scale), at most 100."""
        return self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()

    def forward(self, images: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """Scaled similarities [B_text, B_image]: row i says how well caption i fits each image."""
        return self.scale() * self.encode_text(text_ids) @ self.encode_image(images).T

    @torch.no_grad()
    def score(self, images: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """One caption per image ([B, T] and [B, 3, H, W]) -> the cosine similarity of each pair [B], in [-1, 1]."""
        if len(images) != len(text_ids):
            raise ValueError(f"score pairs captions with images one to one: got {len(text_ids)} captions "
                             f"and {len(images)} images")
        return (self.encode_text(text_ids) * self.encode_image(images)).sum(-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_text(self, text_ids: torch.Tensor) -> None:
        T, V = self.config.text_seq_len, self.config.text_vocab_size
        if text_ids.dim() != 2 or text_ids.shape[1] != T:
            raise ValueError(f"CLIP reads caption ids [batch, {T}], got {tuple(text_ids.shape)}: encode captions "
                             f"with a tokenizer whose text_seq_len is {T}")
        if len(text_ids) and (int(text_ids.min()) < 0 or int(text_ids.max()) >= V):
            raise ValueError(f"caption ids must lie in [0, {V}), got [{int(text_ids.min())}, {int(text_ids.max())}]: "
                             "was the text encoded with another tokenizer?")

    def _check_images(self, images: torch.Tensor) -> None:
        s = self.config.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise ValueError(f"CLIP reads images [batch, 3, {s}, {s}], got {tuple(images.shape)}: "
                             f"resize them to {s}x{s}")


def contrastive_loss(similarities: torch.Tensor, matches: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's symmetric cross-entropy over a [B_text, B_image] matrix of scaled similarities.

    Without `matches`, caption i belongs to image i (one-hot targets; the matrix must be square).
    `matches` [B_text, B_image] (bool) marks every caption that truly describes an image: a toy world
    repeats captions ("a red circle" fits many images), and a one-hot target would push such true
    pairs apart as if they were negatives. With it, each row's (and column's) target spreads evenly
    over its matches. Rows of extra captions that describe no image in the batch (hard negatives)
    only act as competitors for the images.
    """
    if matches is None:
        if similarities.shape[0] != similarities.shape[1]:
            raise ValueError(f"without `matches` the similarity matrix must be square, got {tuple(similarities.shape)}")
        target = torch.arange(len(similarities), device=similarities.device)
        return (F.cross_entropy(similarities, target) + F.cross_entropy(similarities.T, target)) / 2
    if matches.shape != similarities.shape:
        raise ValueError(f"matches {tuple(matches.shape)} must have the similarities' shape {tuple(similarities.shape)}")
    matches = matches.to(similarities.device).float()
    text_rows = matches.sum(1) > 0  # captions with at least one image in the batch
    image_cols = matches.sum(0) > 0
    text_to_image = _soft_cross_entropy(similarities[text_rows], matches[text_rows])
    image_to_text = _soft_cross_entropy(similarities.T[image_cols], matches.T[image_cols])
    return (text_to_image + image_to_text) / 2


def _soft_cross_entropy(logits: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against targets spread evenly over each row's matches."""
    target = matches / matches.sum(1, keepdim=True)
    return -(target * logits.log_softmax(-1)).sum(-1).mean()
