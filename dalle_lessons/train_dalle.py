"""Training the DALL·E transformer on (caption, image tokens) pairs.

    python -m dalle_lessons train dalle --preset cpu --seed 0     # writes data/dalle-cpu.safetensors
    python -m dalle_lessons train dalle --preset tiny --steps 100 --out /tmp/run
    python -m dalle_lessons train dalle --preset cpu --resume      # continue an interrupted run
    torchrun --nproc_per_node 2 -m dalle_lessons train dalle --preset tiny --out /tmp/run   # 2 processes (DDP)

The images are turned into tokens once, by the shipped dVAE, and cached in data/cache/ with the
tokenized captions: the dVAE is frozen while the transformer trains (the paper's stage 2), so there
is no reason to run its encoder again every epoch. AdamW with a linear warm-up and a cosine decay;
validation reports the text and image losses separately and the teacher-forced accuracy of the
image tokens. Every random draw goes through a seeded generator and the training state is saved
periodically (and on Ctrl-C), so `--resume` continues exactly as an uninterrupted run would.

Precision: fp32, bf16 autocast, or fp16 autocast with a gradient scaler (`--precision`). Under torchrun,
every process draws the same global batch and trains on its slice of it (see `distributed`); only
rank 0 validates, prints and writes the state and the checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoints, distributed
from .config import TransformerConfig, get_preset
from .environment import bf16_is_fast, resolve_device
from .manifest import update_entries
from .paths import cache_dir, data_dir
from .shapes import ShapesDataset, caption_scene
from .train import check_run, lr_at
from .training_loop import (RunProgress, check_train_config, check_world_size, make_optimizer, remove_state,
                            restore_run_state, run_record, run_steps, run_summary, save_run_state, saved_world_size)
from .transformer import DalleTransformer, drop_captions

#: --precision: "auto" picks one of the others per device (`precision_used`)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: the autocast dtype of each precision (None: no autocast)
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class DalleTrainConfig:
    """How the transformer is trained. `lr` follows a warm-up then a cosine decay to lr * lr_final."""

    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    lr_warmup: int = 100
    lr_final: float = 0.1
    weight_decay: float = 0.05  # AdamW, on matrices only (not on embeddings, biases or LayerNorms)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    # "bf16": forward pass under bfloat16 autocast (weights, optimizer and loss stay fp32); on a CPU
    # with bf16 matrix units it is ~1.8x faster per step here, on one without them ~37x slower (emulated).
    # "fp16": float16 autocast with a gradient scaler (fp16's 5 exponent bits underflow small gradients
    # without one): for GPUs with fp16 but no bf16 units (T4, V100); it runs on a CPU too, emulated and slow.
    # "fp32": plain float32. "auto": `precision_used` (bf16 where it is fast, fp16 on other CUDA GPUs, else fp32).
    precision: str = "auto"
    train_items: int = 60_000  # training scenes (one- and two-object mixed)
    captions_per_item: int = 2  # independent captions per scene: more ways of saying the same thing
    val_items: int = 1000
    eval_every: int = 500  # validation (1,000 pairs) costs ~10 steps' time: every 500 steps, not 250
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        check_train_config(self, ("batch_size", "train_items", "captions_per_item", "val_items", "eval_every",
                                  "checkpoint_every"), {"batch_size": "--batch-size", "train_items": "--train-images"})
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: choose 'auto', 'fp32', 'bf16' or 'fp16'")


def precision_used(precision: str, device: str) -> str:
    """What `precision` trains with on `device`: 'auto' is bf16 where the hardware has bf16 units
    (`environment.bf16_is_fast`), fp16 with a gradient scaler on a CUDA GPU without them (T4, V100), else fp32."""
    if precision != "auto":
        return precision
    if bf16_is_fast(device):
        return "bf16"
    return "fp16" if torch.device(device).type == "cuda" else "fp32"


@dataclass
class TokenData:
    """A tokenized split: captions [n, T] and image tokens [n, N], both int64."""

    text: torch.Tensor
    image: torch.Tensor

    def __len__(self) -> int:
        return len(self.text)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def token_data(split: str, n_items: int, preset: str = "cpu", captions_per_item: int = 1, seed: int = 0,
               dvae_path: str | Path | None = None, tokenizer_path: str | Path | None = None,
               cache: bool = True) -> TokenData:
    """The first `n_items` scenes of a split as (caption ids, image token ids), cached in data/cache/.

    Each scene appears `captions_per_item` times, with independently drawn captions (the first is
    the dataset's own caption). The cache file name carries digests of the dVAE and tokenizer
    files, so retraining either one can never silently reuse stale tokens.
    """
    from .tokenizer import CaptionTokenizer

    preset = get_preset(preset).name
    dvae_path = Path(dvae_path) if dvae_path is not None else data_dir() / f"dvae-{preset}.safetensors"
    tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else data_dir() / "tokenizer.json"
    for path, how in ((dvae_path, f"python -m dalle_lessons train dvae --preset {preset}"),
                      (tokenizer_path, f"python -m dalle_lessons train tokenizer --preset {preset}")):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: restore it from git or rebuild it with `{how}`")
    key = (f"dalle-tokens-{split}-{n_items}x{captions_per_item}-{preset}-seed{seed}-"
           f"dvae{_file_digest(dvae_path)}-tok{_file_digest(tokenizer_path)}.npz")
    path = cache_dir() / key if cache else None
    if path is not None and path.exists():
        arrays = np.load(path)
        return TokenData(torch.from_numpy(arrays["text"]).long(), torch.from_numpy(arrays["image"]).long())

    dataset = ShapesDataset(split, n_items, preset=preset, seed=seed, cache=cache)
    dvae = checkpoints.load(dvae_path)
    images = dataset.images_uint8()
    with torch.no_grad():
        ids = torch.cat([dvae.encode(images[i:i + 500].float() / 255) for i in range(0, len(images), 500)])
    ids = ids.flatten(1)
    tokenizer = CaptionTokenizer.load(tokenizer_path).with_text_seq_len(get_preset(preset).transformer.text_seq_len)
    texts, rows = [], []
    for k in range(captions_per_item):
        for i in range(n_items):
            if k == 0:
                texts.append(dataset.item_caption(i))
            else:
                rng = random.Random(f"caption/{seed}/{split}/{i}/{k}")
                texts.append(caption_scene(dataset.scenes[i], rng)[0])
            rows.append(i)
    text = tokenizer.encode_batch(texts, on_overflow="warn")  # only `tiny` (16 positions) ever truncates
    data = TokenData(text.long(), ids[torch.tensor(rows)].long())
    if path is not None:
        tmp = path.with_suffix(".tmp.npz")
        with open(tmp, "wb") as f:
            np.savez(f, text=data.text.to(torch.int16).numpy(), image=data.image.to(torch.int16).numpy())
        tmp.replace(path)
    return data


@torch.no_grad()
def validate(model: DalleTransformer, data: TokenData, batch_size: int = 250, bf16: bool = False,
             precision: str | None = None) -> dict[str, float]:
    """Teacher-forced figures on held-out pairs: text and image cross-entropy, image-token accuracy.

    `bf16` (or `precision` 'bf16' / 'fp16'): run the forward pass under that autocast, as such training
    does (bf16: about 2x faster on a CPU with bf16 units; the losses agree with float32 to about 1e-4).
    """
    dtype = AUTOCAST_DTYPES[precision or ("bf16" if bf16 else "fp32")]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    text_loss = image_loss = correct = 0.0
    for start in range(0, len(data), batch_size):
        text = data.text[start:start + batch_size].to(device)
        image = data.image[start:start + batch_size].to(device)
        with torch.autocast(torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = model(text, image)
        text_loss += out.text_loss.item() * len(text)
        image_loss += out.image_loss.item() * len(text)
        correct += (out.image_logits.argmax(-1) == image).float().mean().item() * len(text)
    model.train(was_training)
    n = len(data)
    return {"val_text_loss": text_loss / n, "val_image_loss": image_loss / n, "val_image_accuracy": correct / n}


def cli_command(preset: str, seed: int, train_config: DalleTrainConfig, world_size: int = 1) -> str:
    """The command that reproduces a run, when flags can express its settings (torchrun's for several processes)."""
    launcher = "python -m" if world_size == 1 else f"torchrun --nproc_per_node {world_size} -m"
    command = f"{launcher} dalle_lessons train dalle --preset {preset} --seed {seed}"
    default = DalleTrainConfig()
    flags = {"steps": "--steps", "batch_size": "--batch-size", "precision": "--precision",
             "train_items": "--train-images"}
    for field, flag in flags.items():
        if getattr(train_config, field) != getattr(default, field):
            command += f" {flag} {getattr(train_config, field)}"
    if dataclasses.replace(train_config, **{field: getattr(default, field) for field in flags}) != default:
        return (f"dalle_lessons.train_dalle.train_dalle(preset={preset!r}, seed={seed}, ...) with the "
                "train_config recorded in this file" + (f", in {world_size} processes" if world_size > 1 else ""))
    return command


def train_dalle(preset: str = "cpu", seed: int = 0, out: str | Path | None = None,
                train_config: DalleTrainConfig | None = None, model_config: TransformerConfig | None = None,
                resume: bool = False, stop_at: int | None = None, progress: bool = True,
                name: str | None = None, log: Callable[[str], None] | None = None,
                device: str | None = None, dvae_path: str | Path | None = None,
                overwrite_shipped: bool = False) -> dict:
    """Train the transformer on Shapes tokens; save `<out>/<name>.safetensors` (+ .json). Returns a summary.

    `out` defaults to data/ and `name` to dalle-PRESET; a file listed in data/MANIFEST.json (the shipped
    dalle-cpu) is replaced only with `overwrite_shipped=True`, which also updates its manifest entry.
    The state is saved every `checkpoint_every`
    steps and on Ctrl-C to `<name>.state.safetensors`; `resume=True` continues from it; `stop_at`
    ends early at that step and keeps the state. Launched by torchrun (WORLD_SIZE > 1), it trains with
    DistributedDataParallel: each process takes its slice of every global batch of `batch_size`.
    """
    preset_name = get_preset(preset).name
    model_config = model_config or get_preset(preset).transformer
    train_config = train_config or DalleTrainConfig()
    out = Path(out) if out is not None else data_dir()
    name = name or f"dalle-{preset_name}"
    final_path, state_path = out / f"{name}.safetensors", out / f"{name}.state.safetensors"
    check_run(preset_name, seed, train_config.steps, [final_path, checkpoints.json_path(final_path)],
              overwrite_shipped)
    device = resolve_device(device)
    world_size = distributed.world_from_env()[2]
    distributed.check_batch(train_config.batch_size, world_size)
    if resume:  # before any process group forms, so every rank stops at once
        check_world_size(state_path, saved_world_size(state_path), world_size)
    used = precision_used(train_config.precision, device)
    out.mkdir(parents=True, exist_ok=True)
    ctx = distributed.setup(device)
    try:
        return _train(ctx, preset_name, seed, final_path, state_path, name, train_config, model_config, used,
                      resume, stop_at, progress, log, dvae_path, overwrite_shipped)
    finally:
        distributed.cleanup(ctx)


def _train(ctx: distributed.Context, preset_name: str, seed: int, final_path: Path, state_path: Path, name: str,
           train_config: DalleTrainConfig, model_config: TransformerConfig, used: str, resume: bool,
           stop_at: int | None, progress: bool, log: Callable[[str], None] | None, dvae_path: str | Path | None,
           overwrite_shipped: bool) -> dict:
    """`train_dalle` once the settings are checked and this process has joined its group (if any)."""
    device, device_type = ctx.device, torch.device(ctx.device).type
    write = (log or tqdm.write) if ctx.is_main else (lambda _: None)
    if used == "fp16" and device_type == "cpu" and ctx.is_main:
        warnings.warn("precision fp16 on a CPU is emulated (about 6x slower than fp32 for `tiny` here): it checks "
                      "the GPU recipe; train with fp32, or bf16 where the CPU has bf16 units")

    def load_tokens() -> tuple[TokenData, TokenData]:
        return (token_data("train", train_config.train_items, preset_name, train_config.captions_per_item,
                           dvae_path=dvae_path),
                token_data("val", train_config.val_items, preset_name, 1, dvae_path=dvae_path))
    train, val = distributed.main_first(ctx, load_tokens)  # rank 0 fills the cache, the others read it

    model = DalleTransformer(model_config, generator=torch.Generator().manual_seed(seed)).to(device)
    optimizer = make_optimizer(model, train_config)
    scaler = torch.amp.GradScaler(device_type, enabled=used == "fp16")
    batch_rng = torch.Generator().manual_seed(seed + 1)  # which pairs go in each batch (the same on every rank)
    dropout_rng = torch.Generator(device=device).manual_seed(seed + 2)  # caption dropout, of the global batch
    generators = {"batch_rng": batch_rng, "dropout_rng": dropout_rng}
    run = RunProgress()
    if resume:
        run = restore_run_state(state_path, seed, model, optimizer, generators, train_config, model_config,
                                lambda saved: DalleTrainConfig(**{**saved, "betas": tuple(saved["betas"])}),
                                scaler=scaler, world_size=ctx.world_size)
        write(f"resumed {state_path} at step {run.step}")
    trained = distributed.wrap(model, ctx)  # DistributedDataParallel when there are several processes

    def save_state(wait: bool = True) -> None:
        if ctx.is_main:
            save_run_state(state_path, run, seed, model, optimizer, generators, train_config, model_config,
                           scaler=scaler, world_size=ctx.world_size)
        if wait:  # the others wait for the file (on Ctrl-C they may be gone already: no waiting then)
            distributed.barrier(ctx)

    dtype = AUTOCAST_DTYPES[used]
    mine = distributed.shard(ctx, train_config.batch_size)  # this rank's slice of each global batch

    def one_step() -> torch.Tensor:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(run.step, train_config)
        index = torch.randint(len(train), (train_config.batch_size,), generator=batch_rng)
        text = train.text[index].to(device)
        if model_config.caption_dropout > 0:  # drawn for the whole global batch, so any split sees the same
            text = drop_captions(text, model_config.caption_dropout, model_config.pad_id, dropout_rng)
        with torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            output = trained(text[mine], train.image[index[mine]].to(device), caption_dropout=False)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(output.loss).backward()  # DDP averages the gradients over the processes here
        if train_config.grad_clip:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
        scaler.step(optimizer)  # skips the step (and lowers the scale) if fp16 gradients overflowed
        scaler.update()
        return output.loss

    def validation_row(loss: torch.Tensor) -> dict:
        row = {"loss": distributed.average(ctx, loss).item(), "lr": lr_at(run.step - 1, train_config)}
        if ctx.is_main:  # every rank holds the same weights: one validates
            row.update(validate(model, val, precision=used))
            write(f"step {run.step:6d}  loss {row['loss']:.3f}  val text {row['val_text_loss']:.3f}  "
                  f"val image {row['val_image_loss']:.3f}  image acc {row['val_image_accuracy']:.3f}")
        return row

    model.train()
    run_steps(run, train_config.steps, one_step, validation_row, save_state,
              eval_every=train_config.eval_every, checkpoint_every=train_config.checkpoint_every,
              state_path=state_path, stop_at=stop_at, name=name, show_progress=progress and ctx.is_main,
              write=write, postfix=lambda loss: {"loss": f"{loss.item():.3f}"},
              save_on_interrupt=lambda: save_state(wait=False))
    summary = run_summary(name, run, train_config.steps, final_path, state_path)
    if not summary["finished"]:
        save_state()
        return summary
    if ctx.is_main:
        extra = {"command": cli_command(preset_name, seed, train_config, ctx.world_size), "preset": preset_name,
                 "dvae": str(Path(dvae_path).name if dvae_path else f"dvae-{preset_name}.safetensors"),
                 "precision_used": used, "world_size": ctx.world_size,
                 **run_record(run, seed, device, train_config)}
        # int8 storage (per-row scales): 8 MB instead of 32 MB for `cpu`, with the same generation fidelity as
        # float16 (measured); loading copies the weights back into float32
        checkpoints.save(model.cpu(), model_config, final_path, extra=extra, dtype=torch.int8)
        if overwrite_shipped:
            update_entries([final_path, checkpoints.json_path(final_path)])
        remove_state(state_path)
    distributed.barrier(ctx)
    return summary
