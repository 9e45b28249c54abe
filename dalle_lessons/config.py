"""Configurations and named presets.

One preset fixes every size in the pipeline at once, so the dataset, the dVAE and the transformer
always agree: `tiny` (unit tests, seconds), `cpu` (the course default), `colab` (a GPU) and `paper`
(the published 12B DALL·E, built on the `meta` device only, to count its parameters).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class DVAEConfig:
    """Stage 1: the discrete VAE that turns an image into a grid of codebook ids."""

    image_size: int = 32  # pixels per side of the input image
    grid_size: int = 8  # tokens per side of the latent grid (image_size / grid_size = downsampling)
    codebook_size: int = 512  # number of distinct image tokens
    hidden: int = 64  # channels of the first convolution
    embed_dim: int = 64  # size of one code embedding fed to the decoder
    n_blocks: int = 1  # residual blocks at each resolution of the encoder and the decoder
    quantizer: str = "gumbel"  # "gumbel" (DALL·E's relaxation) or "vq" (VQ-VAE: nearest code, straight-through)
    likelihood: str = "mse"  # "mse" (learns fastest on Shapes) or "logit_laplace" (the paper's)
    eps: float = 0.1  # logit-Laplace pixel mapping x -> (1 - 2 eps) x + eps
    logits: str = "cosine"  # "cosine": bounded logit_scale * cos(feature, code); "linear": dot product
    logit_scale: float = 60.0  # the bound on cosine logits
    object_weight: float = 4.0  # extra reconstruction weight on and around object pixels (0: plain mean)
    usage_weight: float = 0.0  # weight of the batch code-usage (entropy) term
    vq_beta: float = 0.25  # VQ commitment weight
    log_b_min: float = -8.0  # logit-Laplace: floor on ln b, so confident pixels cannot take all the weight (-1.5 trains far better)
    ema_decay: float = 0.95  # decay of the moving averages of code use (and of the VQ codebook)
    dead_threshold: float = 0.01  # restart a code whose average use per batch falls below this (0: never)


@dataclass(frozen=True)
class TransformerConfig:
    """Stage 2: the decoder-only transformer over one stream of [text | image] tokens."""

    text_seq_len: int = 24  # text positions (padded with one learned pad embedding each)
    text_vocab_size: int = 512  # BPE vocabulary
    image_vocab_size: int = 512  # = the dVAE codebook
    image_grid: int = 8  # image tokens per side; image_grid**2 image positions
    d_model: int = 256
    n_layers: int = 8
    n_heads: int = 8
    dropout: float = 0.0
    # "full": dense causal attention in every layer; "paper": DALL·E's sparse layer pattern (row,
    # column, row, row, ... and a convolutional last layer; see transformer.layer_kinds)
    attention_pattern: str = "full"
    conv_kernel: int = 11  # side of the causal convolutional window (the paper: 11 on a 32 x 32 grid)
    pad_id: int = 0  # the text id that marks padding; each text position learns its own pad embedding
    caption_dropout: float = 0.0  # training only: chance a caption is replaced by the empty one
    text_loss_weight: float = 1 / 8  # the paper's weights: loss = 1/8 text CE + 7/8 image CE
    image_loss_weight: float = 7 / 8

    @property
    def image_seq_len(self) -> int:
        return self.image_grid**2

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass(frozen=True)
class ClipConfig:
    """The reranker (lesson 08): a small CLIP, a text encoder and an image encoder into one space."""

    text_seq_len: int = 24  # = the tokenizer's (and the DALL·E transformer's) text positions
    text_vocab_size: int = 512
    image_size: int = 32
    embed_dim: int = 96  # the shared space both encoders project into
    text_width: int = 96
    text_layers: int = 2
    text_heads: int = 4
    image_width: int = 16  # channels of the first stage; each of the 3 stages halves the side, doubles the channels
    pooling: str = "last"  # "last": the last real token (CLIP's); "mean": masked mean over real tokens
    pad_id: int = 0

    def __post_init__(self) -> None:
        if self.pooling not in ("last", "mean"):
            raise ValueError(f"unknown pooling {self.pooling!r}: choose 'last' or 'mean'")
        if self.image_size % 8:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 8 (three stride-2 stages)")
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width {self.text_width} must be divisible by text_heads {self.text_heads}")


@dataclass(frozen=True)
class Preset:
    """A named set of sizes for the whole pipeline."""

    name: str
    image_size: int
    dvae: DVAEConfig = field(default_factory=DVAEConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _preset(name: str, image_size: int, grid: int, codebook: int, text_len: int, text_vocab: int,
            d_model: int, n_layers: int, n_heads: int, hidden: int, description: str,
            attention_pattern: str = "full", caption_dropout: float = 0.1,
            clip_image_width: int = 16, clip_width: int = 96) -> Preset:
    return Preset(
        name=name,
        image_size=image_size,
        dvae=DVAEConfig(image_size=image_size, grid_size=grid, codebook_size=codebook,
                        hidden=hidden, embed_dim=hidden),
        transformer=TransformerConfig(text_seq_len=text_len, text_vocab_size=text_vocab,
                                      image_vocab_size=codebook, image_grid=grid, d_model=d_model,
                                      n_layers=n_layers, n_heads=n_heads,
                                      attention_pattern=attention_pattern, caption_dropout=caption_dropout),
        clip=ClipConfig(text_seq_len=text_len, text_vocab_size=text_vocab, image_size=image_size,
                        embed_dim=clip_width, text_width=clip_width, image_width=clip_image_width),
        description=description,
    )


PRESETS: dict[str, Preset] = {
    "tiny": _preset("tiny", 16, 4, 64, 16, 512, 64, 2, 4, 16,
                    "unit tests: 16x16 images, 4x4 = 16 image tokens; trains in seconds",
                    clip_width=32, clip_image_width=8),
    "cpu": _preset("cpu", 32, 8, 512, 24, 512, 384, 4, 8, 64,
                   "course default: 32x32 images, 8x8 = 64 image tokens; a laptop CPU"),
    "colab": _preset("colab", 64, 16, 1024, 32, 512, 384, 12, 8, 96,
                     "a GPU: 64x64 images, 16x16 = 256 image tokens"),
    "paper": _preset("paper", 256, 32, 8192, 256, 16384, 3968, 64, 62, 256,
                     "Ramesh et al. 2021: 256x256 images, 32x32 = 1024 tokens, 12B parameters; "
                     "meta device only", attention_pattern="paper", caption_dropout=0.0),
}


def get_preset(name: str | Preset) -> Preset:
    """Return the preset called `name`; an unknown name is an error that lists the valid ones."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in PRESETS)
        raise ValueError(f"unknown preset {name!r}: choose one of {valid}") from None


def with_overrides(preset: Preset, **changes) -> Preset:
    """A copy of `preset` with top-level fields replaced (for experiments and tests)."""
    return replace(preset, **changes)
