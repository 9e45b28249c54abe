"""OpenAI's released DALL·E dVAE, weight-compatible: the same modules and parameter names (lesson 12).

OpenAI published the weights of DALL·E's stage 1 (not of its transformer) with the `dall-e` package.
This file re-implements that encoder and decoder so the published weights load into it unchanged:
every parameter has the official name (`blocks.group_1.block_1.res_path.conv_1.w`, ...), and the
outputs equal `dall_e`'s own modules on the same weights (tests/test_openai_dvae.py).

The architecture (`dall_e/encoder.py`, `decoder.py`, `utils.py`):
- Encoder: a 7x7 convolution to n_hid channels, then 4 groups of `n_blk_per_group` residual blocks;
  a 2x2 max-pool after each of the first 3 groups (256 -> 32 pixels per side), channels n_hid, 2, 4, 8
  x n_hid; then ReLU and a 1x1 convolution to `vocab_size` logits per cell. The image tokens are the
  argmax of those logits: 256 x 256 pixels -> 32 x 32 ids out of 8192.
- Decoder: the mirror image. A 1x1 convolution of the one-hot ids to n_init channels, 4 groups with
  nearest-neighbour 2x upsampling after the first 3 (channels 8, 4, 2, 1 x n_hid), ReLU, and a 1x1
  convolution to 6 channels: a logit-Laplace location (3) and log-scale (3) per pixel.
- Each residual block is `id_path(x) + post_gain * res_path(x)`: id_path is the identity or a 1x1
  convolution when the width changes; res_path is 4 (ReLU, conv) pairs through a bottleneck of
  n_out / 4 channels (encoder kernels 3, 3, 3, 1; decoder 1, 3, 3, 3). post_gain = 1 / (number of
  blocks)² damps each residual branch at initialisation, as GPT-2's scaled init does.
- Pixels are squeezed into [eps, 1 - eps] (eps = 0.1) before encoding, `map_pixels`, because the
  logit-Laplace likelihood lives on the open interval (0, 1); `unmap_pixels` undoes it after decoding.

OpenAI's files are pickles of whole modules, which run code when opened; `convert` turns them once,
with the user's explicit consent, into safetensors + JSON (`checkpoints.py`), and `load` reads those.
Nothing here downloads anything. Differences from `dall_e`, on purpose: `decode` reads ids through a
table lookup (a 1x1 convolution of a one-hot vector *is* a lookup of the weight's column), and the
convolutions compute in the parameters' dtype (OpenAI's switch to fp16 on CUDA by themselves: use
`.half()` or autocast for that).
"""
from __future__ import annotations

import math
import pickle
import types
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .manifest import file_sha256

LOGIT_LAPLACE_EPS = 0.1
CONSENT_FLAG = "--i-understand-pickle"
OPENAI_FILES = "https://cdn.openai.com/dall-e/encoder.pkl and decoder.pkl"


@dataclass(frozen=True)
class OpenAIDVAEConfig:
    """The sizes of OpenAI's dVAE; the defaults are the published model's (8192 codes, 256 x 256 -> 32 x 32)."""

    vocab_size: int = 8192  # codebook size: logits per cell (encoder), one-hot channels (decoder)
    n_hid: int = 256  # width of the first group; the groups are 1, 2, 4, 8 x n_hid wide
    n_blk_per_group: int = 2
    n_init: int = 128  # decoder: channels of its first (1x1) convolution
    channels: int = 3  # image channels in (encoder) and out (decoder: 2 x channels statistics)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_hid", "n_blk_per_group", "n_init", "channels"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.n_hid % 4:
            raise ValueError(f"n_hid must be a multiple of 4 (each block's bottleneck is a quarter), got {self.n_hid}")


GROUP_COUNT = 4


def map_pixels(x: torch.Tensor, eps: float = LOGIT_LAPLACE_EPS) -> torch.Tensor:
    """Pixels in [0, 1] -> [eps, 1 - eps], where the logit-Laplace likelihood is defined."""
    return (1 - 2 * eps) * x + eps


def unmap_pixels(x: torch.Tensor, eps: float = LOGIT_LAPLACE_EPS) -> torch.Tensor:
    """The inverse of `map_pixels`, clamped to [0, 1]."""
    return torch.clamp((x - eps) / (1 - 2 * eps), 0, 1)


class Conv2d(nn.Module):
    """A 'same'-padded convolution whose parameters are called `w` and `b`, as in OpenAI's checkpoints."""

    def __init__(self, n_in: int, n_out: int, kw: int):
        super().__init__()
        if kw % 2 != 1:
            raise ValueError(f"kernel width must be odd, got {kw}")
        self.kw = kw
        self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / math.sqrt(n_in * kw * kw))  # OpenAI's init
        self.b = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.w, self.b, padding=(self.kw - 1) // 2)

    def extra_repr(self) -> str:
        return f"{self.w.shape[1]}, {self.w.shape[0]}, kw={self.kw}"


class ResBlock(nn.Module):
    """id_path(x) + post_gain * res_path(x), with res_path four (ReLU, conv) pairs through n_out / 4 channels."""

    def __init__(self, n_in: int, n_out: int, n_layers: int, kernels: tuple[int, int, int, int]):
        super().__init__()
        n_hid = n_out // 4
        self.post_gain = 1 / n_layers**2
        self.id_path = Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        widths = [n_in, n_hid, n_hid, n_hid, n_out]
        layers = OrderedDict()
        for i, kw in enumerate(kernels):
            layers[f"relu_{i + 1}"] = nn.ReLU()
            layers[f"conv_{i + 1}"] = Conv2d(widths[i], widths[i + 1], kw)
        self.res_path = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.id_path(x) + self.post_gain * self.res_path(x)


def _group(blocks: list[nn.Module], resample: tuple[str, nn.Module] | None) -> nn.Sequential:
    layers = OrderedDict((f"block_{i + 1}", block) for i, block in enumerate(blocks))
    if resample is not None:
        layers[resample[0]] = resample[1]
    return nn.Sequential(layers)


class OpenAIEncoder(nn.Module):
    """Images -> logits over the codebook per cell: [B, 3, H, W] (mapped pixels) -> [B, vocab, H/8, W/8]."""

    def __init__(self, config: OpenAIDVAEConfig = OpenAIDVAEConfig()):
        super().__init__()
        self.config = config
        c, n = config, config.n_blk_per_group
        widths = [c.n_hid, 1 * c.n_hid, 2 * c.n_hid, 4 * c.n_hid, 8 * c.n_hid]  # in, then each group's width
        block = lambda n_in, n_out: ResBlock(n_in, n_out, GROUP_COUNT * n, kernels=(3, 3, 3, 1))
        layers = OrderedDict(input=Conv2d(c.channels, c.n_hid, 7))
        for g in range(GROUP_COUNT):
            blocks = [block(widths[g] if i == 0 else widths[g + 1], widths[g + 1]) for i in range(n)]
            layers[f"group_{g + 1}"] = _group(blocks, ("pool", nn.MaxPool2d(2)) if g < GROUP_COUNT - 1 else None)
        layers["output"] = nn.Sequential(OrderedDict(relu=nn.ReLU(), conv=Conv2d(8 * c.n_hid, c.vocab_size, 1)))
        self.blocks = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] (H, W multiples of 8) -> token ids [B, H/8, W/8]."""
        _check_images(images, self.config)
        return self(map_pixels(images.to(self.blocks.input.w.dtype))).argmax(dim=1)


class OpenAIDecoder(nn.Module):
    """One-hot ids -> logit-Laplace statistics per pixel: [B, vocab, h, w] -> [B, 6, 8h, 8w]."""

    def __init__(self, config: OpenAIDVAEConfig = OpenAIDVAEConfig()):
        super().__init__()
        self.config = config
        c, n = config, config.n_blk_per_group
        widths = [c.n_init, 8 * c.n_hid, 4 * c.n_hid, 2 * c.n_hid, 1 * c.n_hid]
        block = lambda n_in, n_out: ResBlock(n_in, n_out, GROUP_COUNT * n, kernels=(1, 3, 3, 3))
        layers = OrderedDict(input=Conv2d(c.vocab_size, c.n_init, 1))
        for g in range(GROUP_COUNT):
            blocks = [block(widths[g] if i == 0 else widths[g + 1], widths[g + 1]) for i in range(n)]
            up = ("upsample", nn.Upsample(scale_factor=2, mode="nearest")) if g < GROUP_COUNT - 1 else None
            layers[f"group_{g + 1}"] = _group(blocks, up)
        layers["output"] = nn.Sequential(OrderedDict(relu=nn.ReLU(), conv=Conv2d(c.n_hid, 2 * c.channels, 1)))
        self.blocks = nn.Sequential(layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(z)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The input convolution applied to one-hot(ids), as a table lookup: [B, h, w] -> [B, n_init, h, w].

        A 1x1 convolution of a one-hot vector picks one column of its weight: 8192 x fewer multiplies.
        """
        table = self.blocks.input.w.flatten(1).t()  # [vocab, n_init]
        return (F.embedding(ids, table) + self.blocks.input.b).permute(0, 3, 1, 2)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [B, h, w] -> images [B, 3, 8h, 8w] in [0, 1] (the location of the logit-Laplace)."""
        _check_ids(ids, self.config)
        h = self.embed(ids)
        for name, module in self.blocks.named_children():
            if name != "input":
                h = module(h)
        return unmap_pixels(torch.sigmoid(h[:, : self.config.channels].float()))


class OpenAIDVAE(nn.Module):
    """OpenAI's encoder and decoder together: `encode(images) -> ids [B, 32, 32]`, `decode(ids) -> images`."""

    def __init__(self, encoder: OpenAIEncoder, decoder: OpenAIDecoder):
        super().__init__()
        if encoder.config.vocab_size != decoder.config.vocab_size:
            raise ValueError(f"the encoder has {encoder.config.vocab_size} codes and the decoder "
                             f"{decoder.config.vocab_size}: they are not one dVAE")
        self.encoder, self.decoder = encoder, decoder

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode(images)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.decode(ids)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Images through the 32 x 32 token bottleneck and back."""
        return self.decode(self.encode(images))


def _check_images(images: torch.Tensor, config: OpenAIDVAEConfig) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != config.channels:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected images [B, {config.channels}, H, W] as a float tensor in [0, 1], got {shape}")
    if images.shape[2] % 8 or images.shape[3] % 8 or images.shape[2] < 8:
        raise ValueError(f"image sides must be multiples of 8 (three 2x poolings), got {tuple(images.shape[2:])}: "
                         "resize to 256 x 256, the published model's size")
    if not images.is_floating_point():
        raise ValueError(f"images must be floats in [0, 1], got {images.dtype}: divide uint8 pixels by 255")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must lie in [0, 1], got [{float(images.min()):.3g}, {float(images.max()):.3g}]")


def _check_ids(ids: torch.Tensor, config: OpenAIDVAEConfig) -> None:
    if not isinstance(ids, torch.Tensor) or ids.ndim != 3 or ids.is_floating_point():
        shape = (tuple(ids.shape), ids.dtype) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"expected token ids [B, h, w] as integers, got {shape}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= config.vocab_size):
        raise ValueError(f"token ids must lie in [0, {config.vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")


# ----------------------------------------------------------------------------- converting OpenAI's pickles

class _Stub(nn.Module):
    """Stands in for a `dall_e` class while unpickling: nn.Module's own state (parameters, submodules) is
    all the pickle holds, so OpenAI's files open without the `dall_e` package and none of its code runs."""

    def forward(self, *args, **kwargs):  # pragma: no cover - never called
        raise RuntimeError("a stand-in for a dall_e module, only for reading its weights")


_STUBS = {(f"dall_e.{module}", name): type(name, (_Stub,), {"__module__": __name__})
          for module, name in (("encoder", "Encoder"), ("encoder", "EncoderBlock"), ("decoder", "Decoder"),
                               ("decoder", "DecoderBlock"), ("utils", "Conv2d"))}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _STUBS:
            return _STUBS[module, name]
        return super().find_class(module, name)


_pickle_module = types.ModuleType("openai_dvae_pickle")
_pickle_module.__dict__.update({k: v for k, v in vars(pickle).items() if not k.startswith("__")})
_pickle_module.Unpickler = _Unpickler


EXPECTED = {"encoder": "blocks.output.conv.w", "decoder": "blocks.input.w"}


def _kind(tensors: dict[str, torch.Tensor]) -> str | None:
    """'encoder' or 'decoder' by the shape of the official parameters; None if neither."""
    needed = {"blocks.input.w", "blocks.output.conv.w"}
    if not needed <= set(tensors) or any(tensors[k].ndim != 4 for k in needed):
        return None
    into, out = tensors["blocks.input.w"].shape, tensors["blocks.output.conv.w"].shape
    if into[2] == 7 and out[0] >= 512:  # 7x7 convolution of the pixels in; logits over the codebook out
        return "encoder"
    if into[2] == 1 and into[1] >= 512:  # 1x1 convolution of the one-hot codes in; pixel statistics out
        return "decoder"
    return None


def _config_from(tensors: dict[str, torch.Tensor], kind: str) -> OpenAIDVAEConfig:
    """The sizes, read back from the parameters' shapes (the published files hold 8192 / 256 / 2 / 128)."""
    blocks = {k.split(".")[2] for k in tensors if k.startswith("blocks.group_1.block_")}
    if kind == "encoder":
        n_hid, channels = tensors["blocks.input.w"].shape[:2]
        return OpenAIDVAEConfig(vocab_size=tensors["blocks.output.conv.w"].shape[0], n_hid=n_hid,
                                n_blk_per_group=len(blocks), channels=channels)
    n_init, vocab = tensors["blocks.input.w"].shape[:2]
    out, n_hid = tensors["blocks.output.conv.w"].shape[:2]
    return OpenAIDVAEConfig(vocab_size=vocab, n_hid=n_hid, n_blk_per_group=len(blocks), n_init=n_init,
                            channels=out // 2)


def _refuse(path: Path) -> None:
    # the why at length is in the module docstring and the CLI help; the error stays one short line
    raise PermissionError(f"refusing to open {path} without {CONSENT_FLAG}: it is a pickle, and opening one runs "
                          f"the code it names. Pass {CONSENT_FLAG} (API: i_understand_pickle=True) only for files you "
                          "downloaded from OpenAI yourself")


def read_openai_pickle(path: str | Path, kind: str, i_understand_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The weights in one of OpenAI's files (`kind` 'encoder' or 'decoder'), as a state dict.

    The file is a pickle: opening it runs whatever code it names. It is opened only with
    `i_understand_pickle=True`, with torch.load(weights_only=False); `dall_e`'s classes are replaced by
    stand-ins (`_Stub`), so the package need not be installed.
    """
    path = Path(path)
    other = "decoder" if kind == "encoder" else "encoder"
    if not path.exists():
        raise FileNotFoundError(f"no {kind} file at {path}: give the path of OpenAI's {kind}.pkl ({OPENAI_FILES})")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: give the path of OpenAI's {kind}.pkl")
    if not i_understand_pickle:
        _refuse(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise ValueError(f"{path} is empty (0 bytes: an interrupted download?): download OpenAI's {kind}.pkl again")
    if head[:1] != b"\x80" and not head.startswith(b"PK\x03\x04"):  # a pickle, or torch.save's zip of one
        what = "a safetensors file (already converted?)" if _looks_like_safetensors(path) else "not a PyTorch pickle"
        raise ValueError(f"{path} is {what}: give OpenAI's {kind}.pkl ({OPENAI_FILES})")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_pickle_module)
    except Exception as error:  # a damaged or foreign pickle: many exception types are possible
        first = str(error).splitlines()[0][:100] if str(error) else type(error).__name__
        raise ValueError(f"{path} cannot be read as a PyTorch pickle ({first}): give OpenAI's {kind}.pkl "
                         f"({OPENAI_FILES}), downloaded again if it was cut short") from None
    if isinstance(obj, nn.Module):
        tensors = obj.state_dict()
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        tensors = dict(obj)
    else:
        raise ValueError(f"{path} holds a {type(obj).__name__}, not OpenAI's dVAE {kind}: give {kind}.pkl "
                         f"({OPENAI_FILES})")
    found = _kind(tensors)
    if found == other:
        raise ValueError(f"{path} holds OpenAI's dVAE {other}, given as the {kind}: swap the two files "
                         f"(--encoder encoder.pkl --decoder decoder.pkl)")
    if found != kind:
        raise ValueError(f"{path} holds a {type(obj).__name__} without the parameters of OpenAI's dVAE {kind} "
                         f"(such as {EXPECTED[kind]}): give {kind}.pkl ({OPENAI_FILES})")
    return {k: v.detach().float().contiguous() for k, v in tensors.items()}


def _looks_like_safetensors(path: Path) -> bool:
    from .checkpoints import diagnose
    return diagnose(path) is None


def _build(kind: str, tensors: dict[str, torch.Tensor], path: Path) -> nn.Module:
    try:
        config = _config_from(tensors, kind)
        model = (OpenAIEncoder if kind == "encoder" else OpenAIDecoder)(config)
        model.load_state_dict(tensors)
    except (RuntimeError, ValueError, KeyError) as error:
        raise ValueError(f"{path} has the parameter names of OpenAI's dVAE {kind} but not its layout "
                         f"({str(error).splitlines()[0][:120]}): give the published {kind}.pkl") from None
    return model


def convert(encoder: str | Path, decoder: str | Path, out: str | Path, i_understand_pickle: bool = False) -> dict:
    """OpenAI's encoder.pkl and decoder.pkl -> `out`/openai-dvae-encoder.safetensors (+ .json) and
    openai-dvae-decoder.safetensors (+ .json), atomically. Run once; afterwards `load(out)` needs no pickle.

    Returns {"encoder": path, "decoder": path, "parameters": {...}}.
    """
    from .checkpoints import save
    from .paths import check_output_dir
    paths = {"encoder": Path(encoder), "decoder": Path(decoder)}
    for kind, path in paths.items():  # name a missing file before asking for consent or opening anything
        if not path.exists():
            raise FileNotFoundError(f"no {kind} file at {path}: give the path of OpenAI's {kind}.pkl ({OPENAI_FILES})")
    if paths["encoder"].resolve() == paths["decoder"].resolve():
        raise ValueError(f"--encoder and --decoder are the same file ({paths['encoder']}): give encoder.pkl and "
                         "decoder.pkl")
    if not i_understand_pickle:
        _refuse(paths["encoder"])
    check_output_dir(out)
    models = {}
    for kind, path in paths.items():
        models[kind] = _build(kind, read_openai_pickle(path, kind, i_understand_pickle), path)
    if models["encoder"].config.vocab_size != models["decoder"].config.vocab_size:
        raise ValueError(f"the encoder has {models['encoder'].config.vocab_size} codes and the decoder "
                         f"{models['decoder'].config.vocab_size}: give the two halves of one dVAE")
    written = {}
    for kind, model in models.items():
        source = paths[kind]
        written[kind] = save(model, model.config, Path(out) / f"openai-dvae-{kind}.safetensors",
                             extra={"converted_from": source.name, "source_sha256": file_sha256(source),
                                    "command": f"python -m dalle_lessons convert-openai-dvae {CONSENT_FLAG}"})
    return {**written, "parameters": {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}}


def load(folder: str | Path, device: str | torch.device = "cpu") -> OpenAIDVAE:
    """The dVAE written by `convert` (safetensors only, no pickle), in eval mode."""
    from .checkpoints import load as load_checkpoint
    folder = Path(folder)
    halves = {}
    for kind, cls in (("encoder", OpenAIEncoder), ("decoder", OpenAIDecoder)):
        path = folder / f"openai-dvae-{kind}.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"no {path.name} in {folder}: convert OpenAI's files once with `python -m "
                                    f"dalle_lessons convert-openai-dvae --encoder encoder.pkl --decoder decoder.pkl "
                                    f"--out {folder} {CONSENT_FLAG}`")
        model = load_checkpoint(path, map_location=device)
        if not isinstance(model, cls):
            raise ValueError(f"{path} holds a {type(model).__name__}, not an {cls.__name__}: convert again")
        halves[kind] = model
    return OpenAIDVAE(halves["encoder"], halves["decoder"]).to(device).eval()
