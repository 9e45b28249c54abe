"""Checkpoints: weights as safetensors plus a JSON file with the config, never pickle.

`save(model, config, "dir/name.safetensors", extra={...})` writes `name.safetensors` (tensors only,
safe to load from anyone) and `name.json` (the model's class, its config and free-form metadata
such as the command that trained it). Both are written atomically: a temporary file, then
`os.replace`, so an interrupted write never leaves a half-written checkpoint behind.

`load(path)` rebuilds the model from the JSON config; `load(path, model)` loads into an existing
model and explains, field by field, when its config does not match the checkpoint's.
Training state (optimizer, step, random generators) goes through `save_state` / `load_state`.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .manifest import file_sha256, sniff, verify_shipped

FORMAT = "dalle_lessons-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as it is: damaged, another format, another kind, or not the shipped one.

    A ValueError, so callers that catch bad input keep working; its message is one line naming the file and the fix.
    """
INT8_SCALE = ".int8_scale"  # suffix of the per-row scales stored beside an int8 weight matrix


def json_path(path: str | Path) -> Path:
    """The JSON file that goes with a `.safetensors` file."""
    return Path(path).with_suffix(".json")


def _atomic_write(path: Path, write) -> None:
    """Call `write(temporary_path)`, then move the result over `path` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_pair(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write the tensors, then the JSON (the JSON is written last: its presence marks a complete checkpoint).

    The JSON records the tensor file's SHA-256, so that a later corruption of the same size (a flipped block,
    which would otherwise load silently) is found when the file is read."""
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}  # clone: no shared storage
    _atomic_write(path, lambda tmp: save_file(tensors, tmp))
    meta = {**meta, "sha256": _sha256(path)}
    _atomic_write(json_path(path), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1) + "\n"))
    return path


_hashed: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> SHA-256: a file is hashed once


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashed:
        _hashed[key] = file_sha256(path)
    return _hashed[key]


def _qualified_name(obj: type) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _import(name: str) -> type:
    """Import a class of this package by its qualified name (never anything outside the package)."""
    module, _, attribute = name.rpartition(".")
    if not module.startswith("dalle_lessons."):
        raise ValueError(f"refusing to import {name!r} from a checkpoint: only dalle_lessons classes are loaded")
    return getattr(importlib.import_module(module), attribute)


def config_dict(config: Any) -> dict:
    """A dataclass config as a plain dict (what goes into the JSON)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    return dataclasses.asdict(config)


def quantize_int8(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weight matrices as int8 with one float32 scale per row (absmax / 127); other floats as float16.

    A quarter of float32's bytes for the matrices. Each row keeps its own scale, so one large row does
    not crush the precision of the others; the rounding error is at most half a step, 1/254 of the
    row's largest weight. Values are rounded to float16 first (a far finer step), so a float16
    checkpoint converts to exactly the file that saving the float32 model would give.
    """
    out = {}
    for name, value in tensors.items():
        if value.is_floating_point() and value.dim() >= 2:
            rows = value.half().float().flatten(1)
            scale = rows.abs().amax(dim=1).clamp(min=1e-12) / 127
            out[name] = (rows / scale[:, None]).round().clamp(-127, 127).to(torch.int8).view(value.shape)
            out[name + INT8_SCALE] = scale
        else:
            out[name] = value.half() if value.is_floating_point() else value
    return out


def dequantize_int8(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undo `quantize_int8`: each int8 matrix times its row scales, as float32 (other tensors unchanged)."""
    out = {name: value for name, value in tensors.items() if not name.endswith(INT8_SCALE)}
    for name in out:
        if name + INT8_SCALE in tensors:
            scale = tensors[name + INT8_SCALE].float()
            out[name] = (out[name].float().flatten(1) * scale[:, None]).view(out[name].shape)
    return out


def save(model: nn.Module, config: Any, path: str | Path, extra: dict | None = None,
         dtype: torch.dtype | None = None) -> Path:
    """Save `model`'s weights to `path` (.safetensors) and its class, config and `extra` to the .json beside it.

    `dtype` torch.float16 stores floating-point weights in half precision: half the file for a
    float32 model. torch.int8 stores weight matrices as int8 with per-row scales (`quantize_int8`):
    about a quarter. `load` copies either back into the model's own (float32) parameters.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path {str(path)!r} must end in .safetensors")
    meta = {"format": FORMAT, "model_class": _qualified_name(type(model)),
            "config_class": _qualified_name(type(config)), "config": config_dict(config),
            "extra": extra or {}}
    tensors = model.state_dict()
    if dtype == torch.int8:
        tensors = quantize_int8(tensors)
        meta["stored_dtype"] = "int8 (weight matrices, one float32 scale per row; other tensors float16)"
    elif dtype is not None:
        if not dtype.is_floating_point:
            raise ValueError(f"cannot store weights as {dtype}: choose torch.float16, torch.bfloat16 or torch.int8")
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        meta["stored_dtype"] = str(dtype).removeprefix("torch.")
    return _write_pair(path, tensors, meta)


REFIT = "restore it (git checkout -- data/ for the shipped files) or save it again"


def _read_json(meta_file: Path) -> dict:
    """A checkpoint's JSON, or a one-line CheckpointError naming the file (LFS pointer, empty, not JSON)."""
    verify_shipped(meta_file)
    what = sniff(meta_file)
    if what:
        raise CheckpointError(f"{meta_file} {what}")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{meta_file} is not valid JSON ({str(error)[:80]}): {REFIT}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_file} holds a JSON {type(meta).__name__}, not a checkpoint's metadata: {REFIT}")
    return meta


def read_metadata(path: str | Path) -> dict:
    """The JSON that goes with a checkpoint: model_class, config_class, config and extra."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a .safetensors checkpoint file")
    meta_file = json_path(path)
    if not meta_file.exists():
        raise FileNotFoundError(f"{meta_file} is missing: a checkpoint is a .safetensors file plus its .json config; "
                                "restore the .json beside it, or save the model again")
    meta = _read_json(meta_file)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_file} is not a {FORMAT} file (format {str(meta.get('format'))[:40]!r})")
    if "state" in meta:
        raise CheckpointError(f"{path} is a training state (written to resume a run), not a model: load the "
                              "finished checkpoint beside it, or finish the run with --resume")
    missing = [key for key in ("model_class", "config_class", "config") if key not in meta]
    if missing or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{meta_file} lacks {', '.join(missing) or 'a config dict'}: {REFIT}")
    return meta


def diagnose(path: str | Path) -> str | None:
    """Why `path` cannot be a complete safetensors file, in one sentence with the fix; None if it looks whole.

    Reads the 8-byte header length and the JSON header only: an empty file, a Git LFS pointer, a pickle
    renamed .safetensors, a truncated file and trailing garbage are each named without loading any tensor.
    """
    path = Path(path)
    what = sniff(path)
    if what:
        return f"{path} {what}"
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path} is truncated ({size} bytes, shorter than a safetensors header): {REFIT}"
        n = int.from_bytes(head, "little")
        if n > size - 8:
            return (f"{path} is truncated or not safetensors ({size:,} bytes, but its header announces "
                    f"{n:,}): {REFIT}")
        try:
            header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError, AttributeError):
            return f"{path} is not a safetensors file (its header is not safetensors JSON): {REFIT}"
    if 8 + n + end > size:
        return f"{path} is truncated: {size:,} bytes of the {8 + n + end:,} its header describes: {REFIT}"
    if 8 + n + end < size:
        return f"{path} has {size - 8 - n - end:,} bytes of trailing garbage after its tensors: {REFIT}"
    return None


def read_tensors(path: str | Path, device: str | torch.device = "cpu",
                 sha256: str | None = None) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; a damaged or foreign file is a one-line CheckpointError.

    `sha256`: the digest its JSON recorded when it was saved (files saved before digests were recorded
    have none): a file of the right size and structure but other bytes is refused too."""
    path = Path(path)
    verify_shipped(path)  # a shipped file: its size and SHA-256 must be the manifest's
    problem = diagnose(path)
    if problem:
        raise CheckpointError(problem)
    if isinstance(sha256, str) and _sha256(path) != sha256:
        raise CheckpointError(f"{path} is not the file its {json_path(path).name} was saved with (other SHA-256: "
                              f"corrupted or replaced): {REFIT}")
    try:
        return load_file(str(path), device=str(device))
    except Exception as error:  # SafetensorError and friends are no subclass of anything specific
        raise CheckpointError(f"{path} cannot be read as safetensors ({str(error).splitlines()[0][:100]}): "
                              f"{REFIT}") from None


def config_mismatches(saved: dict, config: Any) -> list[str]:
    """Human-readable differences 'field: checkpoint X, model Y' between a saved config and `config`."""
    current = config_dict(config)
    return [f"{name}: checkpoint {saved.get(name, '(absent)')!r}, model {current.get(name, '(absent)')!r}"
            for name in sorted(set(saved) | set(current)) if saved.get(name) != current.get(name)]


def build_config(meta: dict) -> Any:
    """Rebuild the config dataclass recorded in a checkpoint's metadata."""
    try:
        config_class = _import(meta["config_class"])
    except (ImportError, AttributeError, TypeError):
        raise CheckpointError(f"the checkpoint names a config class {str(meta.get('config_class'))[:80]!r} that "
                              "this version of dalle_lessons does not have: update the package, or retrain") from None
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(meta["config"]) - known)
    if unknown:
        raise ValueError(f"the checkpoint's config has fields {unknown} that this version of "
                         f"{config_class.__name__} does not know: update the package, or retrain the checkpoint")
    return config_class(**meta["config"])


def _load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not fit {type(model).__name__}: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}. Was it saved from another kind of model?")


def load(path: str | Path, model: nn.Module | None = None, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a checkpoint: into `model` (whose `.config` must match), or into a new model built from its JSON.

    Returns the model in eval mode.
    """
    path = Path(path)
    meta = read_metadata(path)
    if model is None:
        try:
            config = build_config(meta)
            model = _import(meta["model_class"])(config)
        except ValueError as error:  # the package's own one-line messages (CheckpointError included)
            raise CheckpointError(f"{json_path(path)}: {error}") from None
        except (TypeError, AttributeError, ImportError, KeyError, RuntimeError) as error:
            raise CheckpointError(f"{json_path(path)} does not describe a model this package can build "
                                  f"({type(error).__name__}: {str(error).splitlines()[0][:100] if str(error) else ''}): "
                                  "was it edited by hand? Restore it or save the model again") from None
    else:
        config = getattr(model, "config", None)
        if config is None:
            raise ValueError(f"{type(model).__name__} has no .config to compare with the checkpoint's")
        problems = config_mismatches(meta["config"], config)
        if problems:
            raise ValueError(
                f"checkpoint {path} was saved with a different config than this model's:\n  "
                + "\n  ".join(problems)
                + f"\nFix: load it without a model (checkpoints.load(path)) to build one from the "
                  f"checkpoint's config, or create the model with the same {type(config).__name__} fields.")
    tensors = read_tensors(path, map_location, sha256=meta.get("sha256"))
    try:
        _load_weights(model, dequantize_int8(tensors), path)
    except RuntimeError as error:  # a tensor of the right name but the wrong shape
        raise CheckpointError(f"{path} does not fit {type(model).__name__} "
                              f"({str(error).splitlines()[-1].strip()[:70]}...): {REFIT}") from None
    return model.to(map_location).eval()


# ----------------------------------------------------------------------------- training state

def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by a reference, collecting the tensors by name."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"cannot save dict keys of type {set(type(k).__name__ for k in obj)} at {prefix!r}")
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save a {type(obj).__name__} at {prefix!r} without pickle")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_state(path: str | Path, state: dict) -> Path:
    """Save a nested dict of tensors and plain values (e.g. model + optimizer state, step, RNG states)."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, "state", tensors)
    return _write_pair(Path(path), tensors, {"format": FORMAT, "state": tree})


def load_state(path: str | Path) -> dict:
    """Load what `save_state` wrote, tensors on the CPU."""
    path = Path(path)
    meta_file = json_path(path)
    if not path.exists() or not meta_file.exists():
        raise FileNotFoundError(f"no training state at {path} (and {meta_file.name}): nothing to resume; start "
                                "afresh without --resume (a run saves its state as it goes and when interrupted)")
    meta = _read_json(meta_file)
    if "state" not in meta:
        raise CheckpointError(f"{path} is not a training state (no 'state' in {meta_file.name}): resume from the "
                              "*.state.safetensors file a run leaves, or start afresh without --resume")
    try:
        return _unflatten(meta["state"], read_tensors(path, sha256=meta.get("sha256")))
    except CheckpointError as error:
        raise CheckpointError(f"{error} (or start the run afresh without --resume)") from None
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{meta_file} does not match {path.name} ({type(error).__name__}): start the run "
                              "afresh without --resume") from None
