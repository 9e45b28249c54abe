"""Stage 1 of DALL·E: the discrete VAE that turns an image into a grid of codebook ids and back.

The encoder maps an image to logits over a codebook at every cell of a small grid; training
samples a *relaxed* one-hot code with the Gumbel-softmax (temperature annealed from 1 to 1/16),
the decoder turns the code embeddings back into pixels, and the loss is an ELBO: a reconstruction
likelihood plus a KL term to a uniform prior whose weight is warmed up. `encode` takes the argmax
(no noise), as in the paper; `decode` maps ids to pixels.

Both of the paper's pieces are here (`logit_laplace_nll`, `kl_to_uniform`), plus what made a small
dVAE train well in minutes on a CPU (see the config's fields): bounded cosine logits, restarts of
dead codes, pixel weights toward objects, MSE, and a last phase on the exact argmax codes.
A VQ-VAE quantizer (nearest codebook vector, straight-through gradient, commitment loss, EMA
codebook) is a config option, so the two ways of making a latent discrete can be compared.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import DVAEConfig

# ----------------------------------------------------------------------------- schedules

def cosine_ramp(step: int, start_step: int, end_step: int, start: float, end: float) -> float:
    """Cosine interpolation from `start` (at or before `start_step`) to `end` (at or after `end_step`)."""
    if step <= start_step:
        return start
    if step >= end_step:
        return end
    progress = (step - start_step) / (end_step - start_step)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def temperature_at(step: int, anneal_steps: int, start: float = 1.0, end: float = 1 / 16) -> float:
    """Gumbel-softmax temperature: 1 at step 0, annealed on a cosine to 1/16 at `anneal_steps`."""
    return cosine_ramp(step, 0, anneal_steps, start, end)


def kl_weight_at(step: int, warmup_start: int, warmup_end: int, max_weight: float) -> float:
    """Weight of the KL-to-uniform term: 0 until `warmup_start`, then a cosine rise to `max_weight`.

    Starting late lets the encoder learn informative codes before the prior pulls them to uniform.
    """
    return cosine_ramp(step, warmup_start, warmup_end, 0.0, max_weight)


# ----------------------------------------------------------------------------- the relaxation

def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard Gumbel noise -log(-log U), U uniform: adding it to logits and taking the argmax
    samples from their softmax (the "Gumbel-max trick")."""
    uniform = torch.rand(shape, generator=generator, device=device).clamp_(min=1e-10)  # rand may return 0
    return uniform.log_().neg_().log_().neg_()


def gumbel_softmax(logits: torch.Tensor, temperature: float, hard: bool = False, dim: int = -1,
                   generator: torch.Generator | None = None, noise: bool = True) -> torch.Tensor:
    """A relaxed one-hot sample: softmax((logits + Gumbel noise) / temperature) along `dim`.

    As the temperature falls the samples approach one-hot vectors. With `hard=True` the forward pass
    is the exact one-hot sample while the gradient is the relaxed one's (straight-through).
    `noise=False` drops the noise: with `hard=True` that is the argmax code, as `encode` picks it.
    """
    if noise:
        logits = logits + gumbel_noise(logits.shape, generator, logits.device).to(logits.dtype)
    soft = F.softmax(logits / temperature, dim=dim)
    if not hard:
        return soft
    one_hot = torch.zeros_like(soft).scatter_(dim, soft.argmax(dim, keepdim=True), 1.0)
    return one_hot + (soft - soft.detach())  # exactly one_hot forward; the soft gradient backward


def kl_to_uniform(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """KL(q || uniform) in nats at every position: log K minus the entropy of q = softmax(logits)."""
    log_q = F.log_softmax(logits, dim=dim)
    return math.log(logits.shape[dim]) + (log_q.exp() * log_q).sum(dim)


def usage_penalty(probs: torch.Tensor) -> torch.Tensor:
    """log K minus the entropy of the code distribution [..., K] averaged over the batch and grid.

    Zero when every code is used equally often; unlike the per-position KL it does not blur codes.
    """
    mean = probs.reshape(-1, probs.shape[-1]).mean(0)
    return math.log(probs.shape[-1]) + (mean * torch.log(mean.clamp_min(1e-10))).sum()


# ----------------------------------------------------------------------------- likelihoods

def map_pixels(x: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """The paper's pixel mapping x -> (1 - 2 eps) x + eps: keeps targets off 0 and 1, where logit blows up."""
    return (1 - 2 * eps) * x + eps


def unmap_pixels(x: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """Inverse of `map_pixels`, clamped back to [0, 1]."""
    return ((x - eps) / (1 - 2 * eps)).clamp(0, 1)


def logit_laplace_nll(mu: torch.Tensor, log_b: torch.Tensor, target: torch.Tensor, eps: float = 0.1
                      ) -> torch.Tensor:
    """Negative log-likelihood, per subpixel, of `target` in [0, 1] under the logit-Laplace distribution.

    The density on (0, 1) is exp(-|logit(y) - mu| / b) / (2 b y (1 - y)) with y = map_pixels(target):
    a Laplace distribution in logit space, so bounded pixels get a properly normalized likelihood.
    """
    y = map_pixels(target, eps)
    logit_y = torch.log(y) - torch.log1p(-y)
    return (logit_y - mu).abs() * torch.exp(-log_b) + log_b + math.log(2) + torch.log(y * (1 - y))


def object_weights(images: torch.Tensor, weight: float, threshold: float = 0.1) -> torch.Tensor:
    """Per-pixel loss weights [B, 1, H, W]: 1 on the background, 1 + `weight` on and next to objects.

    The background (the per-image median color) covers most pixels; weighting the rest keeps small
    objects from washing out.
    """
    background = images.flatten(2).median(dim=2).values[:, :, None, None]
    mask = ((images - background).abs().amax(1, keepdim=True) > threshold).float()
    mask = F.max_pool2d(mask, 3, stride=1, padding=1)  # include the ring of pixels around each object
    return 1 + weight * mask


# ----------------------------------------------------------------------------- network

def init_conv(conv: nn.Conv2d | nn.ConvTranspose2d, gain: float = math.sqrt(2)) -> None:
    """He initialization: weights with std gain / sqrt(fan-in), zero bias.

    It keeps the activations' scale steady through ReLU layers; PyTorch's default init shrinks them
    layer after layer, and this net then barely learns (it sat at the mean image in our trials).
    """
    k = conv.kernel_size[0] * conv.kernel_size[1]
    if isinstance(conv, nn.ConvTranspose2d):  # each output pixel sees in_channels * k / stride^2 inputs
        fan_in = conv.in_channels * k // (conv.stride[0] * conv.stride[1])
    else:
        fan_in = conv.in_channels * k
    nn.init.normal_(conv.weight, 0.0, gain / math.sqrt(fan_in))
    nn.init.zeros_(conv.bias)


class ResBlock(nn.Module):
    """x + conv(relu(conv(relu(x)))); the last conv starts at zero, so each block starts as the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        init_conv(self.conv1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


def _n_downsamples(config: DVAEConfig) -> int:
    ratio = config.image_size // config.grid_size
    if config.image_size % config.grid_size or ratio & (ratio - 1) or ratio < 2:
        raise ValueError(f"image_size / grid_size must be a power of two >= 2, got "
                         f"{config.image_size} / {config.grid_size}")
    return int(math.log2(ratio))


def _channels(config: DVAEConfig, level: int) -> int:
    """Channels after `level` halvings of the resolution: `hidden`, doubled at every level below the first."""
    return config.hidden * 2 ** max(level - 1, 0)


class Encoder(nn.Module):
    """Image [B, 3, H, W] in [0, 1] -> features [B, embed_dim, g, g], halving the resolution with strided convs."""

    def __init__(self, config: DVAEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for level in range(1, _n_downsamples(config) + 1):
            out_channels = _channels(config, level)
            layers.append(nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1))
            layers += [ResBlock(out_channels) for _ in range(config.n_blocks)]
            in_channels = out_channels
        layers += [nn.ReLU(), nn.Conv2d(in_channels, config.embed_dim, 1)]
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                init_conv(layer, gain=1.0 if layer is layers[-1] else math.sqrt(2))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(2 * images - 1)


class Decoder(nn.Module):
    """Code embeddings [B, embed_dim, g, g] -> per-pixel outputs [B, out_channels, H, W], doubling with transposed convs."""

    def __init__(self, config: DVAEConfig, out_channels: int) -> None:
        super().__init__()
        levels = _n_downsamples(config)
        channels = _channels(config, levels)
        layers: list[nn.Module] = [nn.Conv2d(config.embed_dim, channels, 1)]
        for level in range(levels, 0, -1):
            layers += [ResBlock(channels) for _ in range(config.n_blocks)]
            next_channels = out_channels if level == 1 else _channels(config, level - 1)
            layers += [nn.ReLU(), nn.ConvTranspose2d(channels, next_channels, 4, stride=2, padding=1)]
            channels = next_channels
        init_conv(layers[0], gain=1.0)  # its input, a code embedding, is not a ReLU output
        for layer in layers[1:]:
            if isinstance(layer, nn.ConvTranspose2d):
                init_conv(layer, gain=0.1 if layer is layers[-1] else math.sqrt(2))  # outputs start small
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


# ----------------------------------------------------------------------------- quantizers

class GumbelQuantizer(nn.Module):
    """Features -> logits over the codebook -> (relaxed) one-hot codes -> code embeddings for the decoder.

    With `logits="cosine"` a logit is `logit_scale` times the cosine similarity between the feature
    and a code vector, so logits stay bounded and no single code can grow to win every position.
    """

    def __init__(self, config: DVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.codebook = nn.Parameter(torch.randn(config.codebook_size, config.embed_dim) / math.sqrt(config.embed_dim))
        self.bias = nn.Parameter(torch.zeros(config.codebook_size)) if config.logits == "linear" else None
        self.embed = nn.Embedding(config.codebook_size, config.embed_dim)
        self.register_buffer("ema_count", torch.ones(config.codebook_size))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Features [B, d, g, g] -> logits [B, g, g, K] (the codebook axis last, where softmax is fast)."""
        features = features.permute(0, 2, 3, 1)
        if self.config.logits == "cosine":
            return self.config.logit_scale * F.normalize(features, dim=-1) @ F.normalize(self.codebook, dim=-1).T
        return features @ self.codebook.T + self.bias

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(Relaxed) one-hot codes [B, g, g, K] -> embeddings [B, e, g, g]."""
        return (codes @ self.embed.weight).permute(0, 3, 1, 2)

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids).permute(0, 3, 1, 2)

    @torch.no_grad()
    def restart_dead_codes(self, features: torch.Tensor, ids: torch.Tensor,
                           generator: torch.Generator | None) -> None:
        """Track each code's use; a code unused for a while restarts as a copy of a busy one.

        The dead code's vector becomes a random feature of the batch (so it wins there) and it takes
        the decoder embedding of the code that feature had chosen: a split of a busy code, which then
        specializes, rather than a code that nothing ever selects.
        """
        K, threshold = self.config.codebook_size, self.config.dead_threshold
        counts = torch.bincount(ids.flatten(), minlength=K).float()
        self.ema_count.mul_(self.config.ema_decay).add_(counts, alpha=1 - self.config.ema_decay)
        dead = (self.ema_count < threshold).nonzero().flatten()
        if threshold <= 0 or len(dead) == 0:
            return
        flat = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
        pick = torch.randint(len(flat), (len(dead),), generator=generator,
                             device=generator.device if generator is not None else flat.device)
        self.codebook[dead] = flat[pick]
        self.embed.weight[dead] = self.embed.weight[ids.flatten()[pick]]
        if self.bias is not None:
            self.bias[dead] = self.bias[ids.flatten()[pick]]
        self.ema_count[dead] = 1.0


class VectorQuantizer(nn.Module):
    """VQ-VAE: each feature snaps to its nearest codebook vector; gradients pass straight through.

    The codebook follows an exponential moving average of the features assigned to each code, and
    codes unused for a while restart at a random feature of the batch (no dead codes).
    """

    def __init__(self, config: DVAEConfig) -> None:
        super().__init__()
        self.config = config
        K, d = config.codebook_size, config.embed_dim
        self.register_buffer("codebook", torch.randn(K, d) / math.sqrt(d))
        self.register_buffer("ema_count", torch.ones(K))
        self.register_buffer("ema_sum", self.codebook.clone())

    def nearest(self, features: torch.Tensor) -> torch.Tensor:
        """[B, d, g, g] -> ids [B, g, g] of the nearest codebook vectors (squared Euclidean distance)."""
        flat = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
        distance = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T
                    + self.codebook.pow(2).sum(1)[None])
        B, _, h, w = features.shape
        return distance.argmin(1).view(B, h, w)

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.codebook).permute(0, 3, 1, 2)

    @torch.no_grad()
    def update(self, features: torch.Tensor, ids: torch.Tensor, generator: torch.Generator | None) -> None:
        """EMA codebook step, then restart codes whose average use fell below `dead_threshold`."""
        decay, K = self.config.ema_decay, self.config.codebook_size
        flat = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
        one_hot = F.one_hot(ids.flatten(), K).type_as(flat)
        self.ema_count.mul_(decay).add_(one_hot.sum(0), alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(one_hot.T @ flat, alpha=1 - decay)
        count = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (count + K * 1e-5) * count  # Laplace smoothing
        self.codebook.copy_(self.ema_sum / smoothed[:, None])
        dead = self.ema_count < self.config.dead_threshold
        if self.config.dead_threshold > 0 and dead.any():
            n_dead = int(dead.sum())
            pick = torch.randint(len(flat), (n_dead,), generator=generator,
                                 device=generator.device if generator is not None else flat.device)
            self.codebook[dead] = flat[pick]
            self.ema_sum[dead] = flat[pick]
            self.ema_count[dead] = 1.0


# ----------------------------------------------------------------------------- the model

@dataclass
class DVAEOutput:
    """What one training forward pass returns: the reconstruction and the loss terms (scalars)."""

    recon: torch.Tensor  # [B, 3, H, W] in [0, 1]
    ids: torch.Tensor  # [B, g, g]: the code chosen at each cell (the sample's argmax)
    recon_loss: torch.Tensor  # mean (weighted) negative log-likelihood per subpixel, or MSE
    kl: torch.Tensor  # mean KL(q || uniform) per grid cell, nats (0 for VQ)
    usage: torch.Tensor  # log K - entropy of the batch's average code distribution (0 for VQ)
    commit: torch.Tensor  # VQ commitment loss (0 for Gumbel)
    logits: torch.Tensor | None = None  # [B, g, g, K] (Gumbel)


class DiscreteVAE(nn.Module):
    """The dVAE: `encode(images) -> ids [B, g, g]`, `decode(ids) -> images [B, 3, H, W]`, and a training `forward`."""

    def __init__(self, config: DVAEConfig) -> None:
        super().__init__()
        if config.quantizer not in ("gumbel", "vq"):
            raise ValueError(f"unknown quantizer {config.quantizer!r}: use 'gumbel' (DALL·E) or 'vq' (VQ-VAE)")
        if config.likelihood not in ("logit_laplace", "mse"):
            raise ValueError(f"unknown likelihood {config.likelihood!r}: use 'logit_laplace' (DALL·E) or 'mse'")
        if config.logits not in ("cosine", "linear"):
            raise ValueError(f"unknown logits {config.logits!r}: use 'cosine' or 'linear'")
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = GumbelQuantizer(config) if config.quantizer == "gumbel" else VectorQuantizer(config)
        self.decoder = Decoder(config, 6 if config.likelihood == "logit_laplace" else 3)
        if config.likelihood == "mse":
            nn.init.constant_(self.decoder.net[-1].bias, 0.5)  # start at mid-gray, not black

    def _check_images(self, images: torch.Tensor) -> None:
        size = self.config.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(f"expected images of shape [B, 3, {size}, {size}] in [0, 1], got "
                             f"{tuple(images.shape)}: resize them or use the matching preset")
        if images.dtype == torch.uint8:
            raise ValueError("expected float images in [0, 1], got uint8: divide by 255 first")

    def pixels(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output -> image in [0, 1] (logit-Laplace: the sigmoid of mu, unmapped; MSE: clamped)."""
        if self.config.likelihood == "logit_laplace":
            return unmap_pixels(torch.sigmoid(out[:, :3]), self.config.eps)
        return out.clamp(0, 1)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Gumbel quantizer only: logits over the codebook [B, g, g, K]."""
        self._check_images(images)
        if self.config.quantizer != "gumbel":
            raise ValueError("logits exist only for the Gumbel quantizer; a VQ model encodes by nearest neighbour")
        return self.quantizer.logits(self.encoder(images))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> code ids [B, g, g] (long): the argmax, no noise."""
        self._check_images(images)
        features = self.encoder(images)
        if self.config.quantizer == "gumbel":
            return self.quantizer.logits(features).argmax(-1)
        return self.quantizer.nearest(features)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Code ids [B, g, g] -> images [B, 3, H, W] in [0, 1]."""
        g, K = self.config.grid_size, self.config.codebook_size
        if ids.ndim != 3 or tuple(ids.shape[1:]) != (g, g):
            raise ValueError(f"expected ids of shape [B, {g}, {g}], got {tuple(ids.shape)}")
        if ids.dtype.is_floating_point or int(ids.min()) < 0 or int(ids.max()) >= K:
            raise ValueError(f"ids must be integers in [0, {K}), got dtype {ids.dtype}, "
                             f"range [{ids.min().item()}, {ids.max().item()}]")
        return self.pixels(self.decoder(self.quantizer.embed_ids(ids.long())))

    def reconstruction_loss(self, out: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Mean per-subpixel NLL (logit-Laplace) or squared error (MSE), weighted toward objects."""
        if self.config.likelihood == "logit_laplace":
            loss = logit_laplace_nll(out[:, :3], out[:, 3:].clamp(self.config.log_b_min, 8), images, self.config.eps)
        else:
            loss = (out - images) ** 2  # a linear output: a sigmoid here saturates and stalls training
        if self.config.object_weight > 0:
            weights = object_weights(images, self.config.object_weight)
            return (loss * weights).mean() / weights.mean()
        return loss.mean()

    def forward(self, images: torch.Tensor, temperature: float = 1.0, hard: bool = False,
                generator: torch.Generator | None = None, noise: bool = True) -> DVAEOutput:
        """A training pass: sample codes (Gumbel-softmax, or VQ), decode, and compute each loss term.

        With `noise=False` the Gumbel quantizer uses the argmax code, exactly as `encode` does
        (with a straight-through gradient).
        """
        self._check_images(images)
        features = self.encoder(images)
        zero = images.new_zeros(())
        if self.config.quantizer == "gumbel":
            if self.training and self.config.dead_threshold > 0:  # before the codebook enters the graph
                with torch.no_grad():
                    self.quantizer.restart_dead_codes(features, self.quantizer.logits(features).argmax(-1), generator)
            logits = self.quantizer.logits(features)
            codes = gumbel_softmax(logits, temperature, hard=hard or not noise, generator=generator, noise=noise)
            out = self.decoder(self.quantizer.embed_codes(codes))
            log_q = F.log_softmax(logits, dim=-1)
            q = log_q.exp()
            kl = (math.log(self.config.codebook_size) + (q * log_q).sum(-1)).mean()  # = kl_to_uniform(logits).mean()
            usage = usage_penalty(q)
            ids, commit = codes.argmax(-1), zero
        else:
            ids = self.quantizer.nearest(features)
            quantized = self.quantizer.embed_ids(ids)
            commit = self.config.vq_beta * F.mse_loss(features, quantized)
            if self.training:
                self.quantizer.update(features.detach(), ids, generator)
            out = self.decoder(features + (quantized - features).detach())  # straight-through
            logits, kl, usage = None, zero, zero
        return DVAEOutput(self.pixels(out), ids, self.reconstruction_loss(out, images), kl, usage, commit, logits)


def dvae_loss(output: DVAEOutput, config: DVAEConfig, kl_weight: float) -> torch.Tensor:
    """The training objective: reconstruction + KL weight x KL + code-usage term + commitment.

    The KL is per grid cell and the likelihood per subpixel, so the KL is scaled by
    cells / subpixels: with it the sum is the paper's (beta-weighted) ELBO per subpixel.
    """
    cells_per_subpixel = config.grid_size**2 / (3 * config.image_size**2)
    return (output.recon_loss + kl_weight * cells_per_subpixel * output.kl
            + config.usage_weight * output.usage + output.commit)


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (from the mean squared error over the batch)."""
    mse = F.mse_loss(reconstruction.clamp(0, 1), target).item()
    return 10 * math.log10(1 / max(mse, 1e-10))


def code_usage(ids: torch.Tensor, codebook_size: int) -> tuple[int, float]:
    """How many distinct codes appear in `ids`, and the perplexity (exp entropy) of their frequencies."""
    counts = torch.bincount(ids.flatten(), minlength=codebook_size).float()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return int((counts > 0).sum()), math.exp(entropy)


def load_pretrained(name: str = "dvae-cpu") -> DiscreteVAE:
    """The shipped dVAE from data/ (`dvae-cpu`, or `dvae-cpu-vq` for the VQ variant), in eval mode."""
    from . import checkpoints
    from .paths import data_dir

    path = data_dir() / f"{name}.safetensors"
    if not path.exists():
        preset, _, variant = name.removeprefix("dvae-").partition("-")
        flag = " --quantizer vq" if variant == "vq" else ""
        raise FileNotFoundError(f"{path} is missing: restore it from git, or train it with "
                                f"`python -m dalle_lessons train dvae --preset {preset}{flag}`")
    model = checkpoints.load(path)
    if not isinstance(model, DiscreteVAE):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a DiscreteVAE")
    return model
