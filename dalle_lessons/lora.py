"""LoRA, written from scratch: low-rank adapters on the transformer's attention and MLP matrices.

A frozen weight W (out x in) gets a trainable low-rank update (Hu et al. 2021, "LoRA"):

    y = W x + b + (alpha / r) * B A x         A: r x in (random), B: out x r (zeros)

B starts at zero, so a freshly adapted model computes exactly what the pretrained one did; training
moves only A and B: r * (in + out) numbers per matrix instead of in * out. `merge` folds the update
into W (W + (alpha/r) B A: no extra cost at inference), `unmerge` takes it out again.

    add_lora(transformer, rank=4, alpha=4)      # wraps attn.qkv, attn.proj, mlp.fc, mlp.proj of every block
    mark_only_lora_trainable(transformer)        # everything else frozen
    save_adapter(transformer, "out/adapter.safetensors")   # A and B only (+ .json: rank, alpha, base identity)
    load_adapter(other_base, "out/adapter.safetensors", merge=True)

An adapter only makes sense on the exact weights it was trained against: its JSON records the base
transformer's config and a fingerprint (SHA-256 over its weights), and loading onto anything else is refused.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from . import checkpoints
from .manifest import file_sha256

FORMAT = "dalle_lessons-lora-adapter-v1"
#: What LoRA can adapt in a DalleTransformer block: module name suffixes (see transformer.Block and attention).
TARGETS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")


def check_rank(rank) -> int:
    """A LoRA rank: an int >= 1."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank {rank!r} is not valid: the rank of the update B·A must be an int of at "
                         "least 1 (e.g. --rank 4)")
    return rank


def check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"LoRA alpha {alpha!r} is not valid: give a finite number > 0 (the update is scaled by "
                         "alpha / rank; alpha = rank scales it by 1)")
    return float(alpha)


class LoRALinear(nn.Module):
    """An nn.Linear with a low-rank update: y = x W^T + b + (alpha / r) x A^T B^T.

    It holds the base layer's own `weight` and `bias` Parameters (so a state dict keeps their names)
    plus `lora_A` [r, in] and `lora_B` [out, r]. A is drawn like nn.Linear's weights (uniform in
    ±1/sqrt(in), Kaiming's rule with a = sqrt(5), as peft does) and B is zero.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRA wraps an nn.Linear, got {type(base).__name__}")
        self.rank = check_rank(rank)
        self.alpha = check_alpha(rank if alpha is None else alpha)
        self.scale = self.alpha / self.rank
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # the same Parameters as the base layer
        self.bias = base.bias
        w = base.weight
        bound = 1 / math.sqrt(self.in_features)
        a = torch.empty(self.rank, self.in_features, dtype=w.dtype)
        a.uniform_(-bound, bound, generator=generator)
        self.lora_A = nn.Parameter(a.to(w.device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, self.rank, dtype=w.dtype, device=w.device))
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The update the adapter adds to W: (alpha / r) * B @ A, [out, in]."""
        return self.scale * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.merged:
            return y
        return y + self.scale * F.linear(F.linear(x, self.lora_A), self.lora_B)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into W: one matrix multiply per forward again, same outputs (to rounding)."""
        if not self.merged:
            self.weight.add_(self.delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of W (W is restored up to float32 rounding, ~1e-7 relative)."""
        if self.merged:
            self.weight.sub_(self.delta_weight())
            self.merged = False

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear with this layer's current W (merged or not) and b."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        linear.weight = self.weight
        if self.bias is not None:
            linear.bias = self.bias
        return linear

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"alpha={self.alpha:g}, merged={self.merged}")


def check_targets(targets) -> tuple[str, ...]:
    targets = tuple(targets)
    unknown = [t for t in targets if t not in TARGETS]
    if not targets or unknown:
        raise ValueError(f"unknown LoRA target(s) {', '.join(map(repr, unknown)) or '(none given)'}: choose "
                         f"from {', '.join(TARGETS)}")
    return targets


def _target_names(model: nn.Module, targets: tuple[str, ...]) -> list[str]:
    return [name for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, LoRALinear)) and name.startswith("blocks.")
            and any(name.endswith("." + t) for t in targets)]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """The model's LoRA layers by name, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


@torch.no_grad()
def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the names, shapes, dtypes and values of a model's weights (LoRA's A and B left out).

    The identity of a base model: an adapter records it and refuses to load onto other weights.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.endswith((".lora_A", ".lora_B")):
            continue
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def add_lora(model: nn.Module, rank: int = 4, alpha: float | None = None, targets=TARGETS,
             generator: torch.Generator | None = None) -> dict[str, LoRALinear]:
    """Wrap every targeted nn.Linear of the model's blocks in a LoRALinear; returns them by name.

    `alpha` defaults to `rank` (scale 1). The base model's fingerprint is remembered on the model
    (`model.lora_base`), for `save_adapter`.
    """
    check_rank(rank)
    alpha = check_alpha(rank if alpha is None else alpha)
    targets = check_targets(targets)
    if lora_modules(model):
        raise ValueError("this model already has LoRA adapters: remove them first (remove_lora) or train those")
    names = _target_names(model, targets)
    if not names:
        raise ValueError(f"{type(model).__name__} has no linear layer named blocks.*.{{{','.join(targets)}}} to adapt")
    base = {"fingerprint": model_fingerprint(model),
            "config": checkpoints.config_dict(model.config) if hasattr(model, "config") else None}
    wrapped = {}
    for name in names:
        wrapped[name] = LoRALinear(model.get_submodule(name), rank, alpha, generator)
        _set_module(model, name, wrapped[name])
    model.lora_base = base
    model.lora_settings = {"rank": rank, "alpha": alpha, "targets": list(targets)}
    return wrapped


def remove_lora(model: nn.Module, merge: bool = True) -> nn.Module:
    """Replace every LoRALinear by a plain nn.Linear: with the update folded in (merge=True) or dropped."""
    for name, module in lora_modules(model).items():
        if merge:
            module.merge()
        else:
            module.unmerge()
        _set_module(model, name, module.to_linear())
    for attribute in ("lora_base", "lora_settings"):
        if hasattr(model, attribute):
            delattr(model, attribute)
    return model


def merge_lora(model: nn.Module) -> None:
    for module in lora_modules(model).values():
        module.merge()


def unmerge_lora(model: nn.Module) -> None:
    for module in lora_modules(model).values():
        module.unmerge()


def mark_only_lora_trainable(model: nn.Module) -> None:
    """Freeze every parameter except the LoRA matrices A and B."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith((".lora_A", ".lora_B")))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors alone: '<layer>.lora_A' and '<layer>.lora_B' for every LoRA layer."""
    return {f"{name}.{part}": getattr(m, part) for name, m in lora_modules(model).items()
            for part in ("lora_A", "lora_B")}


def save_adapter(model: nn.Module, path: str | Path, extra: dict | None = None) -> Path:
    """Write the adapter alone: `path` (.safetensors: A and B of every layer) and its .json (format, rank,
    alpha, targets, layers, the base model's config and fingerprint, `extra`). Atomic, as every checkpoint."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"adapter path {str(path)!r} must end in .safetensors")
    layers = lora_modules(model)
    if not layers or not hasattr(model, "lora_base"):
        raise ValueError("this model has no LoRA adapters to save: add them with add_lora first")
    if any(m.merged for m in layers.values()):
        raise ValueError("the adapters are merged into the weights: unmerge_lora(model) before saving them")
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in adapter_state(model).items()}
    meta = {"format": FORMAT, **model.lora_settings, "layers": list(layers), "base": model.lora_base,
            "trainable_parameters": sum(t.numel() for t in tensors.values()), "extra": extra or {}}
    checkpoints._atomic_write(path, lambda tmp: save_file(tensors, tmp))
    meta["sha256"] = file_sha256(path)
    checkpoints._atomic_write(checkpoints.json_path(path),
                              lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1) + "\n"))
    return path


def adapter_path(path: str | Path) -> Path:
    """An adapter file, or a folder holding exactly one (`adapter.safetensors` preferred)."""
    if not isinstance(path, (str, os.PathLike)):
        shown = repr(path) if len(repr(path)) <= 40 else f"a {type(path).__name__}"
        raise TypeError(f"adapter={shown} is not a path: give the adapter.safetensors written by `finetune "
                        "--method lora` (a str or path), or its folder")
    if not str(path).strip():
        raise ValueError("the adapter path is empty (''): give the adapter.safetensors written by `finetune "
                         "--method lora`, or its folder")
    path = Path(path)
    if path.is_dir():
        if (path / "adapter.safetensors").is_file():
            return path / "adapter.safetensors"
        found = sorted(p for p in path.glob("*.safetensors") if not p.name.endswith(".state.safetensors"))
        if len(found) != 1:
            raise FileNotFoundError(f"{path} holds no adapter.safetensors ({len(found) or 'no'} other .safetensors "
                                    "file(s)): give the adapter file written by `finetune --method lora`")
        return found[0]
    if not path.exists():
        raise FileNotFoundError(f"no adapter at {path}: give the adapter.safetensors written by "
                                "`python -m dalle_lessons finetune --method lora --out DIR`")
    return path


def read_adapter_metadata(path: str | Path) -> dict:
    """An adapter's JSON, checked: format, rank, alpha, targets and base."""
    path = adapter_path(path)
    meta_file = checkpoints.json_path(path)
    if not meta_file.exists():
        raise FileNotFoundError(f"{meta_file} is missing: an adapter is a .safetensors file plus its .json; "
                                "restore the .json beside it, or save the adapter again")
    meta = checkpoints._read_json(meta_file)
    if meta.get("format") != FORMAT:
        raise checkpoints.CheckpointError(f"{meta_file} is not a LoRA adapter ({FORMAT}; format "
                                          f"{str(meta.get('format'))[:40]!r}): give the adapter.safetensors "
                                          "written by `finetune --method lora`")
    missing = [k for k in ("rank", "alpha", "targets", "layers", "base") if k not in meta]
    if missing or not isinstance(meta.get("base"), dict):
        raise checkpoints.CheckpointError(f"{meta_file} lacks {', '.join(missing) or 'a base dict'}: save the "
                                          "adapter again")
    return meta


def adapter_mismatch(meta: dict, model: nn.Module, path: Path) -> str | None:
    """Why the adapter at `path` cannot go on `model` (one line naming both), or None when it fits."""
    base = meta["base"]
    saved_config, config = base.get("config"), getattr(model, "config", None)
    described = meta.get("extra", {}).get("base_model", "")
    described = str(described) if len(str(described)) <= 60 else ""  # one line stays short
    theirs = f"base {str(base.get('fingerprint'))[:12]}" + (f" ({described})" if described else "")
    if saved_config is not None and config is not None:
        problems = checkpoints.config_mismatches(saved_config, config)
        if problems:
            return (f"adapter {path} was trained on {theirs}, another config "
                    f"({problems[0]}{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}): load it onto the "
                    "model it was trained from (finetune --from)")
    ours = model_fingerprint(model)
    if base.get("fingerprint") != ours:
        return (f"adapter {path} was trained on {theirs} but this transformer's weights are base {ours[:12]}: "
                "load it onto the model it was trained from (finetune --from), or train one on this model")
    return None


def load_adapter(model: nn.Module, path: str | Path, merge: bool = True) -> nn.Module:
    """Put a saved adapter on `model` (which must be the base it was trained on, checked).

    merge=True folds it into the weights and leaves plain nn.Linear layers (no cost at inference);
    merge=False keeps LoRALinear modules (unmerged), to train further or switch off with remove_lora.
    """
    path = adapter_path(path)
    meta = read_adapter_metadata(path)
    if lora_modules(model):
        raise ValueError(f"this model already has LoRA adapters: load {path} onto a model without them "
                         "(remove_lora first)")
    problem = adapter_mismatch(meta, model, path)
    if problem:
        raise ValueError(problem)
    problem = checkpoints.diagnose(path)
    if problem:
        raise checkpoints.CheckpointError(problem)
    if isinstance(meta.get("sha256"), str) and file_sha256(path) != meta["sha256"]:
        raise checkpoints.CheckpointError(f"{path} is not the file its {checkpoints.json_path(path).name} was saved "
                                          "with (other SHA-256: corrupted or replaced): save the adapter again")
    tensors = checkpoints.read_tensors(path)
    try:
        rank, alpha, targets = check_rank(meta["rank"]), check_alpha(meta["alpha"]), check_targets(meta["targets"])
    except ValueError as error:
        raise checkpoints.CheckpointError(f"{checkpoints.json_path(path)}: {error}") from None
    layers = add_lora(model, rank, alpha, targets)
    expected = set(adapter_state(model))
    if set(tensors) != expected or list(layers) != list(meta["layers"]):
        remove_lora(model, merge=False)
        missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise checkpoints.CheckpointError(f"{path} does not fit this transformer's layers (missing {missing[:3]}, "
                                          f"unexpected {unexpected[:3]}): save the adapter again")
    with torch.no_grad():
        for name, layer in layers.items():
            for part in ("lora_A", "lora_B"):
                value = tensors[f"{name}.{part}"]
                if value.shape != getattr(layer, part).shape:
                    remove_lora(model, merge=False)
                    raise checkpoints.CheckpointError(f"{path}: {name}.{part} has shape {tuple(value.shape)}, this "
                                                      f"model needs {tuple(getattr(layer, part).shape)}")
                getattr(layer, part).copy_(value)
    if merge:
        remove_lora(model, merge=True)
    return model
