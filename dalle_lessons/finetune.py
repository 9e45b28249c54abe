"""Fine-tuning the pretrained transformer on a few new examples: full, last layers only, or LoRA.

    python -m dalle_lessons finetune --data "heldout:blue square" --out runs/blue-square --method lora --rank 4
    python -m dalle_lessons finetune --data my_pictures/ --out runs/mine --method last-layers --steps 300
    python -m dalle_lessons generate "a blue square" --adapter runs/blue-square/adapter.safetensors

Data is either a folder of PNG/JPEG images with `captions.jsonl` (one {"file": ..., "caption": ...} per
line) or `captions.csv` (columns file, caption), or a named built-in set: `heldout:<color> <shape>`, k
rendered one-object scenes of a held-out color-shape pair (`--examples k`). Images of any size and mode
are converted to RGB and center-cropped and resized to the model's size, with a note that says so. One
example in eight is held out for validation (at least one; chosen by a fixed seed, the same whatever the
training seed). The dVAE stays frozen: the images are encoded to tokens once, and the round trip's PSNR
is reported (a low one says the dVAE, not the transformer, is what cannot draw these pictures).

Methods: `full` trains every weight; `last-layers` only the last N blocks, the final LayerNorm and the
two heads; `lora` adds rank-R adapters (`lora.py`) to every block's attention and MLP matrices and trains
those alone. The training loop is the package's own (`training_loop.run_steps`): progress bar, periodic
validation, state saved every `checkpoint_every` steps and on Ctrl-C, `--resume` continuing exactly.
Outputs go to `--out DIR`: `adapter.safetensors` + `adapter.json` for lora, a pipeline folder
(`TextToImage.save_pretrained`) for the others.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import math
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from . import bias, lora
from .environment import resolve_device
from .paths import check_output_dir, data_dir
from .train import lr_at
from .train_dalle import TokenData, validate
from .training_loop import RunProgress, remove_state, restore_run_state, run_steps, run_summary, save_run_state

METHODS = ("full", "last-layers", "lora")
DEFAULT_LR = {"full": 1e-4, "last-layers": 3e-4, "lora": 2e-3}
MIN_EXAMPLES = 8
VAL_EVERY = 8  # one example in VAL_EVERY is held out for validation (at least one)
SPLIT_SEED = 0  # which examples are held out: fixed, so every training seed validates on the same ones
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CAPTION_FILES = ("captions.jsonl", "captions.csv")
BUILTIN = {"heldout": "heldout:<color> <shape>: k rendered one-object scenes of a held-out color-shape pair",
           **bias.BUILTIN_SETS}
BUILTIN_FORMS = "heldout:<color> <shape>, skewed:<skew spec> or rebalanced:<skew spec>"  # for one-line errors
DEFAULT_EXAMPLES = 128
STATE_NAME = "finetune.state.safetensors"
ADAPTER_NAME = "adapter.safetensors"


# ----------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class FinetuneConfig:
    """How the pretrained transformer is fine-tuned. `lr` None: the method's default (DEFAULT_LR).

    `rank`, `alpha` and `targets` apply to lora only, `last_layers` to last-layers only: None means the
    method's default (rank 4, alpha = rank, every target; 1 layer), and a value given for another method is
    refused (it would be ignored). They stay None in the config of a method they do not apply to.
    """

    method: str = "lora"
    steps: int = 200
    lr: float | None = None
    rank: int | None = None  # lora: rank of each update B·A (None: 4)
    alpha: float | None = None  # lora: the update is scaled by alpha / rank (None: alpha = rank)
    targets: tuple[str, ...] | None = None  # lora: which matrices of each block get an adapter (None: all)
    last_layers: int | None = None  # last-layers: how many of the last blocks train, with ln_f and the heads (None: 1)
    batch_size: int = 16
    lr_warmup: int = 10
    lr_final: float = 0.1
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 50
    checkpoint_every: int = 100
    # filled in by `finetune`, so that a resumed run refuses other data or another base model
    data: str = ""
    base: str = ""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {str(self.method)[:40]!r}: choose one of {', '.join(METHODS)} "
                             "(--method)")
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.method])
        for name, method, default in (("rank", "lora", 4), ("alpha", "lora", None), ("targets", "lora", lora.TARGETS),
                                      ("last_layers", "last-layers", 1)):
            value = getattr(self, name)
            if self.method != method and value is not None:
                raise ValueError(f"{name}={str(value)[:40]} applies to method {method!r}, not to {self.method!r}: "
                                 "leave it out (None)")
            if self.method == method and value is None:
                object.__setattr__(self, name, default)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"--steps {self.steps!r}: fine-tuning needs at least 1 step")
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"--lr {lr!r}: the learning rate must be a finite number > 0 (e.g. --lr "
                             f"{DEFAULT_LR[self.method]:g}, the default for {self.method})")
        if self.method == "lora":
            lora.check_rank(self.rank)
            if self.alpha is not None:
                lora.check_alpha(self.alpha)
            object.__setattr__(self, "targets", lora.check_targets(self.targets))
        for name in ("last_layers", "batch_size", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if name == "last_layers" and self.method != "last-layers":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                flag = {"last_layers": "--layers"}.get(name, name)
                raise ValueError(f"{flag} {value!r}: must be an int of at least 1")
        if isinstance(self.lr_warmup, bool) or not isinstance(self.lr_warmup, int) or self.lr_warmup < 0:
            raise ValueError(f"lr_warmup {self.lr_warmup!r}: must be an int of at least 0")


def read_config(saved: dict) -> FinetuneConfig:
    targets = saved.get("targets")
    return FinetuneConfig(**{**saved, "betas": tuple(saved["betas"]),
                             "targets": None if targets is None else tuple(targets)})


# ----------------------------------------------------------------------------- data

@dataclass
class FinetuneData:
    """Examples to fine-tune on: RGB images at the model's size and one caption each."""

    images: torch.Tensor  # uint8 [n, 3, S, S]
    captions: list[str]
    sources: list[str]  # where each example came from (a file name, or the built-in set and index)
    description: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)

    def digest(self) -> str:
        """SHA-256 over the captions and pixels: the identity of this data, checked on --resume."""
        h = hashlib.sha256()
        for caption in self.captions:
            h.update(caption.encode("utf-8", "surrogateescape") + b"\0")
        h.update(self.images.contiguous().numpy().tobytes())
        return h.hexdigest()


def _fit_image(image: Image.Image, side: int) -> tuple[Image.Image, bool, bool]:
    """Center-crop to a square, resize to side x side. Returns (image, resized?, cropped?)."""
    w, h = image.size
    cropped = w != h
    if cropped:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        image = image.crop((left, top, left + s, top + s))
    resized = image.size != (side, side)
    if resized:
        image = image.resize((side, side), Image.Resampling.LANCZOS if image.width > side else Image.Resampling.BICUBIC)
    return image, resized, cropped


def _to_rgb(image: Image.Image) -> tuple[Image.Image, str | None]:
    """An image as RGB; the kind of conversion made (None when it was RGB already)."""
    if image.mode == "RGB":
        return image, None
    if image.mode == "P":
        kind = "palette"
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        if image.mode == "RGB":
            return image, kind
    elif image.mode in ("1", "L", "I", "I;16", "F"):
        return image.convert("L").convert("RGB") if image.mode != "L" else image.convert("RGB"), "grayscale"
    else:
        kind = {"LA": "grayscale with alpha", "RGBA": "RGBA", "PA": "palette"}.get(image.mode, image.mode)
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), kind + " (composited on white)"
    return image.convert("RGB"), kind


def _read_captions(folder: Path) -> tuple[Path, list[tuple[str, str, str]]]:
    """(captions file, [(file, caption, where)]) from captions.jsonl or captions.csv; `where` names the line."""
    found = [folder / name for name in CAPTION_FILES if (folder / name).is_file()]
    if len(found) > 1:
        raise ValueError(f"{folder} has both captions.jsonl and captions.csv: keep one of them")
    if not found:
        images = [p.name for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise ValueError(f"{folder} holds no images and no captions: put PNG/JPEG images in it and a "
                             'captions.jsonl with one {"file": "cat.png", "caption": "a black cat"} per line')
        raise ValueError(f"{folder} has {len(images)} image(s) but no captions.jsonl or captions.csv: add "
                         'captions.jsonl with one {"file": "' + images[0] + '", "caption": "..."} per image')
    path = found[0]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start}): save it as UTF-8") from None
    rows = []
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                row = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{path} line {number} is not JSON ({str(error)[:60]}): write one "
                                 '{"file": "cat.png", "caption": "a black cat"} per line') from None
            if not isinstance(row, dict) or not isinstance(row.get("file"), str) or "caption" not in row:
                raise ValueError(f'{path} line {number} is not {{"file": "...", "caption": "..."}}: '
                                 f"got {line.strip()[:60]!r}")
            rows.append((row["file"], row["caption"], where))
    else:
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or not {"file", "caption"} <= {f.strip() for f in reader.fieldnames}:
            raise ValueError(f"{path} needs a header line 'file,caption' (got {reader.fieldnames}): add it as the "
                             "first line")
        for number, row in enumerate(reader, 2):
            row = {(k or "").strip(): v for k, v in row.items()}
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            rows.append(((row.get("file") or "").strip(), row.get("caption"), f"{path} line {number}"))
    for file, caption, where in rows:
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"{where}: the caption of {file!r} is empty: write what the "
                             "picture shows (e.g. 'a red circle'), or remove the line")
    if not rows:
        raise ValueError(f"{path} holds no captions: write one line per image")
    return path, rows


def _describe_files(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_folder(folder: str | Path, image_size: int) -> FinetuneData:
    """A folder of images + captions.jsonl/captions.csv as FinetuneData at `image_size` (checked, one-line errors)."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"no folder {folder}: give a folder of images with captions.jsonl, or a built-in "
                                f"set ({BUILTIN_FORMS})")
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file: give --data a folder of images with captions.jsonl (or captions.csv)")
    captions_file, rows = _read_captions(folder)
    images_on_disk = {p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    named = [file for file, _, _ in rows]
    missing = [f"{file!r} ({where.removeprefix(f'{captions_file} ')})" for file, _, where in rows
               if not (folder / file).is_file()]
    if missing:
        raise ValueError(f"{captions_file} names {len(missing)} image(s) not in {folder}: {_describe_files(missing)}; "
                         "add the images, or remove their lines")
    not_images = sorted({f for f in named if Path(f).suffix.lower() not in IMAGE_SUFFIXES})
    if not_images:
        raise ValueError(f"{captions_file} names {_describe_files(not_images)}, which is not a .png/.jpg/.jpeg image: "
                         "convert it to PNG, or remove its line")
    uncaptioned = sorted(images_on_disk - {Path(f).name for f in named if (folder / f).parent == folder})
    if uncaptioned:
        raise ValueError(f"{len(uncaptioned)} image(s) in {folder} have no caption in {captions_file.name}: "
                         f"{_describe_files(uncaptioned)}; add a line for each, or move them out of the folder")
    if len(rows) < MIN_EXAMPLES:
        raise ValueError(f"{captions_file} has only {len(rows)} captioned example(s): fine-tuning needs at least "
                         f"{MIN_EXAMPLES} (one in {VAL_EVERY} is held out for validation); add more images")
    loaded: dict[str, torch.Tensor] = {}
    converted: dict[str, list[str]] = {}
    resized = cropped = 0
    for file in dict.fromkeys(named):
        path = folder / file
        if path.stat().st_size == 0:
            raise ValueError(f"{path} is empty (0 bytes): replace it with the real image, or remove it and its caption")
        try:
            with Image.open(path) as image:
                image.load()
                rgb, kind = _to_rgb(image)
        except Exception as error:  # PIL raises many kinds: UnidentifiedImageError, OSError, DecompressionBombError
            raise ValueError(f"{path} cannot be read as an image ({type(error).__name__}: "
                             f"{str(error).splitlines()[0][:80] if str(error) else ''}): replace it with a PNG or "
                             "JPEG, or remove it and its caption") from None
        if kind:
            converted.setdefault(kind, []).append(file)
        rgb, was_resized, was_cropped = _fit_image(rgb, image_size)
        resized += was_resized
        cropped += was_cropped
        loaded[file] = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    notes = []
    if converted:
        notes.append("converted to RGB: " + "; ".join(f"{len(files)} {kind} ({_describe_files(files)})"
                                                      for kind, files in converted.items()))
    if resized:
        notes.append(f"resized {resized} of {len(loaded)} image(s) to {image_size}x{image_size}, the model's size"
                     + (f" ({cropped} non-square one(s) center-cropped to a square first)" if cropped else ""))
    return FinetuneData(torch.stack([loaded[f] for f in named]), [c.strip() for _, c, _ in rows],
                        [f for f in named], f"{folder} ({len(rows)} examples from {captions_file.name})", notes)


def parse_builtin(name: str) -> tuple[str, str]:
    """'heldout:<color> <shape>' -> (color, shape), a held-out pair; anything else is a one-line error."""
    from .shapes import COLORS, SHAPES, heldout_pairs
    kind, _, rest = name.partition(":")
    pairs = sorted(heldout_pairs())
    choices = ", ".join(f"'heldout:{c} {s}'" for c, s in pairs)
    if kind != "heldout":
        raise ValueError(f"unknown built-in set {name[:40]!r}: choose one of {choices}, or give a folder of images")
    words = rest.split()
    if len(words) != 2 or words[0] not in COLORS or words[1] not in SHAPES:
        raise ValueError(f"{name[:40]!r} is not 'heldout:<color> <shape>': choose one of {choices}")
    if (words[0], words[1]) not in heldout_pairs():
        raise ValueError(f"'{words[0]} {words[1]}' is not a held-out pair (the model has seen it): choose one of "
                         f"{choices}")
    return words[0], words[1]


def load_builtin(name: str, image_size: int, examples: int = DEFAULT_EXAMPLES, seed: int = 0) -> FinetuneData:
    """`heldout:<color> <shape>`: `examples` one-object scenes of that pair, each with a random size, cell
    and background and a caption drawn by `shapes.caption_scene` (the same scenes for the same `seed`).
    `skewed:<spec>` / `rebalanced:<spec>`: a skewed world and its rebalanced twin (`bias.load_builtin`)."""
    from .shapes import BACKGROUNDS, SIZES, Scene, ShapeObject, caption_scene, render, to_tensor
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < MIN_EXAMPLES:
        raise ValueError(f"--examples {examples!r}: fine-tuning needs at least {MIN_EXAMPLES} examples "
                         f"(one in {VAL_EVERY} is held out for validation)")
    if name.partition(":")[0] in bias.BUILTIN_SETS:  # a skewed world and its rebalanced twin (lesson 09)
        return bias.load_builtin(name, image_size, examples, seed)
    color, shape = parse_builtin(name)
    images, captions, sources = [], [], []
    for i in range(examples):
        rng = random.Random(f"finetune/{name}/{seed}/{i}")
        scene = Scene((ShapeObject(shape, color, rng.choice(SIZES), rng.randrange(3), rng.randrange(3)),),
                      rng.choice(tuple(BACKGROUNDS)))
        images.append((to_tensor(render(scene, image_size)) * 255).round().to(torch.uint8))
        captions.append(caption_scene(scene, rng)[0])
        sources.append(f"{name} #{i}")
    return FinetuneData(torch.stack(images), captions, sources, f"{name} ({examples} rendered scenes, seed {seed})")


def load_data(data: str | Path | FinetuneData, image_size: int, examples: int | None = None) -> FinetuneData:
    """A folder, a built-in set's name, or FinetuneData as it is (its images must be `image_size`)."""
    if isinstance(data, FinetuneData):
        if tuple(data.images.shape[1:]) != (3, image_size, image_size):
            raise ValueError(f"the data's images are {tuple(data.images.shape[1:])}, the model needs "
                             f"(3, {image_size}, {image_size})")
        return data
    text = str(data)
    if text.partition(":")[0] in BUILTIN and not Path(text).exists():
        return load_builtin(text, image_size, DEFAULT_EXAMPLES if examples is None else examples)
    if examples is not None:
        raise ValueError(f"--examples applies to a built-in set ({BUILTIN_FORMS}), not to the "
                         f"folder {text[:60]}: drop it (every captioned image of a folder is used)")
    return load_folder(text, image_size)


def split_indices(n: int) -> tuple[list[int], list[int]]:
    """(train, val) indices: one example in VAL_EVERY (at least one) held out, by a fixed seed."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    n_val = max(1, n // VAL_EVERY)
    return sorted(order[n_val:]), sorted(order[:n_val])


def caption_notes(tokenizer, captions: list[str]) -> list[str]:
    """What the tokenizer does with these captions: words it never saw as one token, captions it cuts."""
    from .tokenizer import check_text
    notes = []
    pieces: dict[str, list[str]] = {}
    for caption in captions:
        for word in re.findall(r"[^\W_]+", caption.lower()):  # letters and digits: punctuation is its own token
            if word not in pieces:
                pieces[word] = tokenizer.tokens(" " + word)
    new = {w: p for w, p in pieces.items() if len(p) > 1}
    if new:
        shown = "; ".join(f"{w!r} -> {' · '.join(p).replace('Ġ', '')}" for w, p in list(new.items())[:3])
        notes.append(f"{len(new)} word(s) are not in the tokenizer's vocabulary and are spelled with BPE pieces "
                     f"(no retraining needed): {shown}")
    long = [(c, n) for c in captions if (n := tokenizer.count_tokens(check_text(c))) > tokenizer.text_seq_len]
    if long:
        caption, n = max(long, key=lambda item: item[1])
        notes.append(f"{len(long)} caption(s) have more than the model's {tokenizer.text_seq_len} text tokens and "
                     f"are cut (the longest, {caption[:40]!r}, has {n}): shorter captions keep every word")
    return notes


@torch.no_grad()
def encode_examples(pipe, data: FinetuneData) -> tuple[TokenData, float]:
    """Caption ids and dVAE image tokens of every example, and the dVAE round trip's PSNR (dB) on them."""
    from .tokenizer import check_text
    for caption, source in zip(data.captions, data.sources):
        try:
            check_text(caption)
        except ValueError as error:
            raise ValueError(f"the caption of {source}: {error}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # long captions are reported once, in caption_notes
        text = pipe.tokenizer.encode_batch(data.captions, on_overflow="warn")
    ids, squared = [], 0.0
    for start in range(0, len(data), 256):
        images = data.images[start:start + 256].float().div(255).to(pipe.device)
        codes = pipe.dvae.encode(images)
        recon = pipe.dvae.decode(codes).clamp(0, 1)
        squared += float(((recon - images) ** 2).sum())
        ids.append(codes.flatten(1).cpu())
    mse = squared / data.images.numel()
    return TokenData(text.long(), torch.cat(ids).long()), 10 * math.log10(1 / max(mse, 1e-12))


# ----------------------------------------------------------------------------- the run

def _load_base(base, device: str):
    """(pipeline, description): a TextToImage (its transformer copied), a pipeline folder, or None (shipped)."""
    from .pipeline import TextToImage
    if isinstance(base, TextToImage):
        pipe = TextToImage(base.tokenizer, base.dvae, copy.deepcopy(base.transformer), dict(base.provenance))
        return pipe.to(device), "a TextToImage given in memory"
    pipe = TextToImage.from_pretrained(base, device=device)
    return pipe, ("the shipped cpu model (data/dalle-cpu.safetensors)" if base is None else f"the pipeline in {base}")


def _base_image_size(base) -> int | None:
    """The base pipeline's image size, read from its JSON without loading it (None when unknown)."""
    from . import checkpoints
    from .pipeline import SHIPPED, TextToImage
    try:
        if isinstance(base, TextToImage):
            return base.native_size
        if base is None:
            return int(checkpoints.read_metadata(data_dir() / SHIPPED["dvae"][0])["config"]["image_size"])
        return int(json.loads((Path(base) / "pipeline.json").read_text())["image_size"])
    except Exception:  # a damaged or missing base: loading it says what is wrong, in its own words
        return None


def prepare_model(model, config: FinetuneConfig, seed: int) -> None:
    """Make the right weights trainable for the method (and add the LoRA adapters)."""
    if config.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif config.method == "last-layers":
        n = len(model.blocks)
        if config.last_layers > n:
            raise ValueError(f"--layers {config.last_layers}: the transformer has only {n} blocks")
        for p in model.parameters():
            p.requires_grad_(False)
        for module in [*model.blocks[n - config.last_layers:], model.ln_f, model.text_head, model.image_head]:
            for p in module.parameters():
                p.requires_grad_(True)
    else:
        lora.add_lora(model, config.rank, config.alpha, config.targets,
                      generator=torch.Generator().manual_seed(seed + 3))
        lora.mark_only_lora_trainable(model)


def make_optimizer(model, config: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters only; weight decay on matrices (not embeddings, norms, biases)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decays = lambda n, p: p.dim() >= 2 and "emb" not in n and "pos" not in n
    return torch.optim.AdamW([{"params": [p for n, p in named if decays(n, p)], "weight_decay": config.weight_decay},
                              {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0}],
                             lr=config.lr, betas=config.betas)


def check_out(out: str | Path | None, base) -> Path:
    """The output folder: given, writable, not inside data/ and not the base pipeline's own folder."""
    if out is None or not str(out).strip():
        raise ValueError("--out DIR is required: the folder the fine-tuned adapter or pipeline is written to")
    out = Path(out).expanduser()
    try:
        inside_data = out.resolve().is_relative_to(data_dir().resolve())
    except (FileNotFoundError, OSError):
        inside_data = False
    if inside_data:
        raise ValueError(f"--out {out} is inside the course's data/ folder, which holds the shipped models: give "
                         "another folder for fine-tuned ones (e.g. --out runs/finetune)")
    if isinstance(base, (str, Path)) and Path(base).expanduser().resolve() == out.resolve():
        raise ValueError(f"--out {out} is the base pipeline's own folder (--from): choose another folder")
    check_output_dir(out)
    return out


def cli_command(data: str, config: FinetuneConfig, seed: int, base, examples: int | None) -> str:
    command = f"python -m dalle_lessons finetune --data {json.dumps(str(data))} --out OUT --method {config.method}"
    if config.method == "lora":
        command += f" --rank {config.rank}"
    if config.method == "last-layers":
        command += f" --layers {config.last_layers}"
    command += f" --steps {config.steps} --lr {config.lr:g} --seed {seed}"
    if examples is not None:
        command += f" --examples {examples}"
    if isinstance(base, (str, Path)):
        command += f" --from {base}"
    return command


def finetune(data: str | Path | FinetuneData, out: str | Path, config: FinetuneConfig | None = None, seed: int = 0,
             base=None, examples: int | None = None, resume: bool = False, stop_at: int | None = None,
             progress: bool = True, log: Callable[[str], None] | None = None, device: str | None = None) -> dict:
    """Fine-tune a pretrained pipeline's transformer on `data`; write the result into `out`. Returns a summary.

    `base`: a pipeline folder (save_pretrained), a TextToImage, or None for the shipped cpu model.
    `examples`: how many scenes a built-in set renders (default 128). The summary holds `path` (the adapter
    file or the pipeline folder; the state file while unfinished), `history` (validation rows), `notes`
    (what was done to the data), `dvae_psnr`, `trainable_parameters` and `examples` (train / val counts).
    """
    from .sampling import MAX_SEED
    config = FinetuneConfig() if config is None else config
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config={str(config)[:40]!r} is a {type(config).__name__}: pass a FinetuneConfig "
                        "(e.g. FinetuneConfig(method='lora', rank=4)), or None for the defaults")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED - 4:
        raise ValueError(f"--seed {str(seed)[:30]}: a training seed is an int from 0 to 2**63 - 5")
    out = check_out(out, base)
    if resume and not (out / STATE_NAME).exists():
        raise FileNotFoundError(f"no training state at {out / STATE_NAME}: nothing to resume; start afresh without "
                                "--resume (a run saves its state as it goes and when interrupted)")
    write = log or tqdm.write
    device = resolve_device(device)
    size = _base_image_size(base)  # bad data is refused before the model loads, when the size is known
    examples_data = load_data(data, size, examples) if size else None
    pipe, base_description = _load_base(base, device)
    if examples_data is None or pipe.native_size != size:
        examples_data = load_data(data, pipe.native_size, examples)
    if len(examples_data) < MIN_EXAMPLES:
        raise ValueError(f"only {len(examples_data)} example(s): fine-tuning needs at least {MIN_EXAMPLES}")
    notes = examples_data.notes + caption_notes(pipe.tokenizer, examples_data.captions)
    tokens, psnr = encode_examples(pipe, examples_data)
    train_index, val_index = split_indices(len(examples_data))
    train = TokenData(tokens.text[train_index], tokens.image[train_index])
    val = TokenData(tokens.text[val_index], tokens.image[val_index])
    notes.append(f"{len(train)} training and {len(val)} validation examples; dVAE round trip on them: {psnr:.1f} dB "
                 "PSNR" + (" (low: the dVAE itself draws these pictures badly)" if psnr < 20 else ""))
    for note in notes:
        write(f"note: {note}")

    model = pipe.transformer
    base_fingerprint = lora.model_fingerprint(model)
    config = dataclasses.replace(config, data=examples_data.digest(), base=base_fingerprint)
    prepare_model(model, config, seed)
    trainable, total = lora.count_parameters(model)
    optimizer = make_optimizer(model, config)
    batch_rng = torch.Generator().manual_seed(seed + 1)
    dropout_rng = torch.Generator(device=device).manual_seed(seed + 2)
    generators = {"batch_rng": batch_rng, "dropout_rng": dropout_rng}
    state_path = out / STATE_NAME
    final_path = out / ADAPTER_NAME if config.method == "lora" else out
    run = RunProgress()
    if resume:
        run = restore_run_state(state_path, seed, model, optimizer, generators, config, model.config, read_config)
        write(f"resumed {state_path} at step {run.step}")
    else:
        write(f"fine-tuning {trainable:,} of {total:,} parameters ({config.method}) on {examples_data.description}")

    def save_state() -> None:
        save_run_state(state_path, run, seed, model, optimizer, generators, config, model.config)

    trained = [p for p in model.parameters() if p.requires_grad]

    def one_step() -> torch.Tensor:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(run.step, config)
        index = torch.randint(len(train), (config.batch_size,), generator=batch_rng)
        output = model(train.text[index].to(device), train.image[index].to(device), generator=dropout_rng)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(trained, config.grad_clip)
        optimizer.step()
        return output.loss.detach()

    def validation_row(loss: torch.Tensor) -> dict:
        row = {"loss": loss.item(), "lr": lr_at(run.step - 1, config), **validate(model, val)}
        write(f"step {run.step:5d}  loss {row['loss']:.3f}  val text {row['val_text_loss']:.3f}  "
              f"val image {row['val_image_loss']:.3f}")
        return row

    model.train()
    out.mkdir(parents=True, exist_ok=True)
    run_steps(run, config.steps, one_step, validation_row, save_state, eval_every=config.eval_every,
              checkpoint_every=config.checkpoint_every, state_path=state_path, stop_at=stop_at,
              name=f"finetune {config.method}", show_progress=progress, write=write,
              postfix=lambda loss: {"loss": f"{loss.item():.3f}"})
    model.eval()
    summary = run_summary(f"finetune-{config.method}", run, config.steps, final_path, state_path)
    summary.update(notes=notes, dvae_psnr=round(psnr, 2), trainable_parameters=trainable, total_parameters=total,
                   examples={"train": len(train), "val": len(val)}, method=config.method)
    if not summary["finished"]:
        save_state()
        return summary
    record = {"command": cli_command(str(data) if not isinstance(data, FinetuneData) else data.description,
                                     config, seed, base, examples),
              "method": config.method, "data": examples_data.description, "data_sha256": config.data,
              "base_model": base_description, "seed": seed, "steps": run.step, "wall_seconds": round(run.elapsed, 1),
              "examples": summary["examples"], "trainable_parameters": trainable, "notes": notes,
              "dvae_psnr": round(psnr, 2), "train_config": dataclasses.asdict(config),
              "final": run.history[-1] if run.history else {}, "history": run.history}
    if config.method == "lora":
        lora.save_adapter(model.cpu(), final_path, extra=record)
        summary["adapter_bytes"] = final_path.stat().st_size
    else:
        pipe.provenance = {**pipe.provenance,
                           "transformer": {**pipe.provenance.get("transformer", {}), "finetune": record}}
        pipe.save_pretrained(out)
    remove_state(state_path)
    return summary
