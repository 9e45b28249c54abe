"""Training the small CLIP on Shapes captions: the reranker of lesson 08.

    python -m dalle_lessons train clip --preset cpu --seed 0     # writes data/clip-cpu.safetensors
    python -m dalle_lessons train clip --preset tiny --steps 50 --out /tmp/run
    python -m dalle_lessons train clip --preset cpu --resume      # continue an interrupted run

Every step draws a fresh caption for each scene of the batch (phrasings and synonyms vary), and, by
default, one hard negative per scene: a caption of a scene one change away. The loss is CLIP's
symmetric cross-entropy with soft targets built from which captions truly describe which images,
so that two "a red circle" pairs in one batch are not pushed apart. The training split never holds
a held-out color-shape pair, and the judge is never consulted. Shares the trainers' loop: progress
bar, validation, atomic state, exact resume.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoints
from .distributed import refuse_multi_process
from .clip import ClipModel, contrastive_loss
from .clip_data import encode_claims, encode_scenes, hard_negative_scene, match_tensor
from .clip_eval import binding_probe, probe_summary, retrieval, tokenizer_fingerprint
from .config import ClipConfig, get_preset
from .environment import resolve_device
from .paths import data_dir
from .shapes import ShapesDataset, caption_scene, render
from .tokenizer import CaptionTokenizer
from .manifest import update_entries
from .train import check_run, lr_at
from .training_loop import (RunProgress, check_train_config, make_optimizer, remove_state, restore_run_state,
                            run_record, run_steps, run_summary, save_run_state)


@dataclass(frozen=True)
class ClipTrainConfig:
    """How CLIP is trained. `lr` follows a warm-up then a cosine decay to lr * lr_final."""

    steps: int = 1000  # about 5 minutes on a quiet 2-core CPU (measured: see data/README.md)
    batch_size: int = 128
    lr: float = 2e-3
    lr_warmup: int = 100
    lr_final: float = 0.05
    weight_decay: float = 0.05  # AdamW, on matrices only
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    # "fp32": plain float32. "bf16" autocast, which speeds up `train dalle`, makes these small convolutions,
    # GroupNorms and the short text encoder about 15x slower on the course's CPU (measured): not the default
    precision: str = "fp32"
    train_items: int = 60_000
    val_items: int = 1000
    probe_items: int = 200  # validation scenes for the binding probe
    false_negatives: str = "soft"  # "soft": targets spread over every true pair; "ignore": CLIP's one-hot targets
    hard_negatives: bool = True  # one near-miss caption per scene, as an extra competitor for its image
    # the near-miss caption's own scene, rendered, as an extra competitor for the true caption: each pair
    # of (caption, near miss) x (image, near-miss image) is a 2 x 2 contrast of the binding alone
    negative_images: bool = True
    eval_every: int = 250
    checkpoint_every: int = 250

    def __post_init__(self) -> None:
        if self.false_negatives not in ("soft", "ignore"):
            raise ValueError(f"unknown false_negatives {self.false_negatives!r}: choose 'soft' or 'ignore'")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"unknown precision {self.precision!r}: choose 'bf16' or 'fp32'")
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(f"steps must be >= 1 and batch_size >= 2, got {self.steps} and {self.batch_size}")
        check_train_config(self, ("val_items", "probe_items", "eval_every", "checkpoint_every"))
        if isinstance(self.train_items, bool) or not isinstance(self.train_items, int) or self.train_items < 2:
            raise ValueError(f"ClipTrainConfig: train_items={self.train_items!r} (--train-images {self.train_items}) "
                             "must be an int of at least 2: a contrastive batch needs two different images")


def clip_tokenizer(preset: str, path: str | Path | None = None) -> CaptionTokenizer:
    """The course tokenizer, padding to the preset's text length (CLIP reads what the transformer reads)."""
    tokenizer = CaptionTokenizer.load(path)
    return tokenizer.with_text_seq_len(get_preset(preset).clip.text_seq_len)


@dataclass
class ClipBatch:
    """One step's captions (true ones first, then hard negatives) and the extra scenes to render."""

    texts: list[str]
    claims: list
    negative_scenes: list  # the scene each hard negative caption is true of, in the same order


def make_batch(data: ShapesDataset, index: list[int], key: str, hard_negatives: bool) -> ClipBatch:
    """A fresh caption for each scene (seeded by `key` and the slot), then one hard negative each."""
    texts, claims, scenes = [], [], []
    for slot, i in enumerate(index):
        text, claim = caption_scene(data.scenes[i], random.Random(f"{key}/{slot}"))
        texts.append(text), claims.append(claim)
    if hard_negatives:
        for slot, i in enumerate(index):
            negative = hard_negative_scene(data.scenes[i], f"{key}/{slot}")
            if negative is not None:
                texts.append(negative[0]), claims.append(negative[1]), scenes.append(negative[2])
    return ClipBatch(texts, claims, scenes)


def batch_captions(data: ShapesDataset, index: list[int], key: str, hard_negatives: bool) -> tuple[list[str], list]:
    """The captions of `make_batch` and what each one states."""
    batch = make_batch(data, index, key, hard_negatives)
    return batch.texts, batch.claims


def render_uint8(scenes: list, image_size: int) -> torch.Tensor:
    """Scenes as uint8 images [n, 3, H, W], as the dataset cache stores them."""
    if not scenes:
        return torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8)
    return torch.from_numpy(np.stack([np.asarray(render(s, image_size)).transpose(2, 0, 1) for s in scenes]))


def cli_command(preset: str, seed: int, train_config: ClipTrainConfig) -> str:
    default = ClipTrainConfig()
    command = f"python -m dalle_lessons train clip --preset {preset} --seed {seed}"
    if train_config.steps != default.steps:
        command += f" --steps {train_config.steps}"
    if not train_config.hard_negatives:
        command += " --no-hard-negatives"
    elif not train_config.negative_images:
        command += " --no-negative-images"
    if train_config.false_negatives != default.false_negatives:
        command += f" --false-negatives {train_config.false_negatives}"
    rest = dataclasses.replace(train_config, steps=default.steps, hard_negatives=default.hard_negatives,
                               false_negatives=default.false_negatives, negative_images=default.negative_images)
    if rest != default:
        return (f"dalle_lessons.train_clip.train_clip(preset={preset!r}, seed={seed}, ...) with the "
                "train_config recorded in this file")
    return command


def validate(model: ClipModel, tokenizer: CaptionTokenizer, val: ShapesDataset, probe: ShapesDataset) -> dict:
    """Retrieval among the validation pairs (R@1, 'true' hits both ways) and the mean binding-probe accuracy."""
    was_training = model.training
    model.eval()
    claims = [val.item_claim(i) for i in range(len(val))]
    found = retrieval(model, tokenizer, val.images_uint8(), [c for c, _ in claims], [c for _, c in claims],
                      val.scenes, ks=(1,))
    kinds = binding_probe(model, tokenizer, probe.images_uint8(), probe.scenes)
    model.train(was_training)
    return {"val_i2t_r1": found["image_to_text_r1_true"], "val_t2i_r1": found["text_to_image_r1_true"],
            "val_probe": probe_summary(kinds), **{f"val_probe_{k}": r["accuracy"] for k, r in kinds.items()}}


def train_clip(preset: str = "cpu", seed: int = 0, out: str | Path | None = None,
               train_config: ClipTrainConfig | None = None, model_config: ClipConfig | None = None,
               resume: bool = False, stop_at: int | None = None, progress: bool = True,
               name: str | None = None, log: Callable[[str], None] | None = None,
               device: str | None = None, overwrite_shipped: bool = False) -> dict:
    """Train CLIP on Shapes; save `<out>/<name>.safetensors` (+ .json). Returns a summary.

    `out` defaults to data/ and `name` to clip-PRESET; a file listed in data/MANIFEST.json (the shipped
    clip-cpu) is replaced only with `overwrite_shipped=True`, which also updates its manifest entry.
    The state is saved every `checkpoint_every` steps and on Ctrl-C; `resume=True` continues from it
    exactly; `stop_at` ends early at that step. `device`: 'cpu', 'cuda' or 'auto' (None: the GPU if any).
    """
    preset_name = get_preset(preset).name
    model_config = model_config or get_preset(preset).clip
    train_config = train_config or ClipTrainConfig()
    out = Path(out) if out is not None else data_dir()
    out.mkdir(parents=True, exist_ok=True)
    name = name or f"clip-{preset_name}"
    final_path, state_path = out / f"{name}.safetensors", out / f"{name}.state.safetensors"
    check_run(preset_name, seed, train_config.steps, [final_path, checkpoints.json_path(final_path)],
              overwrite_shipped)
    write = log or tqdm.write
    device = resolve_device(device)  # cuda without a GPU: one line, before any data is made
    refuse_multi_process("train clip", "its contrastive loss compares every caption with every image of the "
                         "batch, so a split batch would need the embeddings all-gathered first")

    tokenizer = clip_tokenizer(preset_name)
    if tokenizer.vocab_size > model_config.text_vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but CLIP's text_vocab_size is "
                         f"{model_config.text_vocab_size}: use a config with a larger vocabulary")
    train = ShapesDataset("train", train_config.train_items, preset=preset_name, seed=seed, cache=True)
    images = train.images_uint8()
    scene_table = encode_scenes(train.scenes)
    val = ShapesDataset("val", train_config.val_items, preset=preset_name, seed=seed, cache=True)
    probe = ShapesDataset("val", train_config.probe_items, preset=preset_name, seed=seed + 1, cache=True)

    model = ClipModel(model_config, generator=torch.Generator().manual_seed(seed)).to(device)
    optimizer = make_optimizer(model, train_config)
    batch_rng = torch.Generator().manual_seed(seed + 1)
    generators = {"batch_rng": batch_rng}
    run = RunProgress()
    if resume:
        run = restore_run_state(state_path, seed, model, optimizer, generators, train_config, model_config,
                                lambda saved: ClipTrainConfig(**{**saved, "betas": tuple(saved["betas"])}))
        write(f"resumed {state_path} at step {run.step}")

    def save_state() -> None:
        save_run_state(state_path, run, seed, model, optimizer, generators, train_config, model_config)

    use_bf16 = train_config.precision == "bf16"

    def one_step() -> torch.Tensor:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(run.step, train_config)
        index = torch.randint(len(train), (train_config.batch_size,), generator=batch_rng)
        batch = make_batch(train, index.tolist(), f"clip/{seed}/{run.step}", train_config.hard_negatives)
        text_ids = tokenizer.encode_batch(batch.texts, on_overflow="warn").to(device)
        extra = batch.negative_scenes if train_config.negative_images else []
        batch_images = torch.cat([images[index], render_uint8(extra, model_config.image_size)]).float().div(255).to(device)
        if train_config.false_negatives == "soft":
            scenes = {k: v[index] for k, v in scene_table.items()}
            if extra:
                scenes = {k: torch.cat([v, encode_scenes(extra)[k]]) for k, v in scenes.items()}
            matches = match_tensor(encode_claims(batch.claims), scenes)
        else:  # CLIP's own recipe: caption i belongs to image i (negatives: to their own image), to no other
            matches = torch.eye(len(batch.texts), len(batch_images), dtype=torch.bool)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=use_bf16):
            sims = model(batch_images, text_ids)
        loss = contrastive_loss(sims.float(), matches)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train_config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
        optimizer.step()
        return loss

    def validation_row(loss: torch.Tensor) -> dict:
        row = {"loss": loss.item(), "lr": lr_at(run.step - 1, train_config), "scale": model.scale().item(),
               **validate(model, tokenizer, val, probe)}
        write(f"step {run.step:6d}  loss {row['loss']:.3f}  scale {row['scale']:.1f}  "
              f"R@1 image->text {row['val_i2t_r1']:.1f}  text->image {row['val_t2i_r1']:.1f}  "
              f"probe {row['val_probe']:.1f} ("
              + " ".join(f"{k.removeprefix('val_probe_')} {v:.0f}" for k, v in row.items()
                         if k.startswith("val_probe_")) + ")")
        return row

    model.train()
    run_steps(run, train_config.steps, one_step, validation_row, save_state,
              eval_every=train_config.eval_every, checkpoint_every=train_config.checkpoint_every,
              state_path=state_path, stop_at=stop_at, name=name, show_progress=progress, write=write,
              postfix=lambda loss: {"loss": f"{loss.item():.3f}"})
    summary = run_summary(name, run, train_config.steps, final_path, state_path)
    if not summary["finished"]:
        save_state()
        return summary
    extra = {"command": cli_command(preset_name, seed, train_config), "preset": preset_name,
             "tokenizer": tokenizer_fingerprint(tokenizer), **run_record(run, seed, device, train_config)}
    checkpoints.save(model.cpu(), model_config, final_path, extra=extra, dtype=torch.float16)
    if overwrite_shipped:
        update_entries([final_path, checkpoints.json_path(final_path)])
    remove_state(state_path)
    return summary
