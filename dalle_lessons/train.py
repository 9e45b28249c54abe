"""Training the dVAE: seeded, with a progress bar, periodic validation, atomic checkpoints and resume.

    python -m dalle_lessons train dvae --preset cpu --seed 0          # writes data/dvae-cpu.safetensors
    python -m dalle_lessons train dvae --preset tiny --steps 200 --out /tmp/run
    python -m dalle_lessons train dvae --preset cpu --resume          # continue an interrupted run

Every random draw goes through a seeded `torch.Generator` (one for batches, one for Gumbel noise
and codebook restarts); the training state (model, optimizer, step, generators) is saved
periodically and on Ctrl-C (by `training_loop.run_steps`, shared with the transformer's trainer), so a
resumed run continues exactly as if it had never stopped.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from . import checkpoints
from .distributed import refuse_multi_process
from .config import DVAEConfig, get_preset
from .dvae import DiscreteVAE, DVAEOutput, code_usage, dvae_loss, kl_weight_at, psnr, temperature_at
from .environment import resolve_device
from .manifest import update_entries
from .paths import check_output_dir, data_dir
from .shapes import ShapesDataset
from .training_loop import (RunProgress, check_train_config, remove_state, restore_run_state, run_record, run_steps,
                            run_summary, save_run_state)


@dataclass(frozen=True)
class DVAETrainConfig:
    """How the dVAE is trained. Schedule points are fractions of `steps`, so a short run keeps its shape."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3  # Adam, after a linear warm-up, then a cosine decay to lr * lr_final
    lr_warmup: int = 100
    lr_final: float = 0.05
    temperature_start: float = 1.0
    temperature_end: float = 1 / 16
    temperature_anneal: float = 0.7  # the temperature reaches its end value at this fraction of training
    kl_weight: float = 0.02  # the KL-to-uniform weight (beta) after its warm-up, relative to the MSE per subpixel
    kl_warmup_start: float = 0.3
    kl_warmup_end: float = 0.7
    hard_from: float = 1.0  # straight-through hard one-hot samples from this fraction on (1.0: never)
    noise_until: float = 0.8  # Gumbel noise until this fraction; after it, the argmax code (as encode)
    grad_clip: float = 1.0
    train_images: int = 20_000  # train split, one- and two-object scenes mixed
    val_images: int = 500
    eval_every: int = 250
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        check_train_config(self, ("batch_size", "train_images", "val_images", "eval_every", "checkpoint_every"),
                           {"train_images": "--train-images"})


def lr_at(step: int, config: DVAETrainConfig) -> float:
    """Learning rate: linear warm-up over `lr_warmup` steps, then a cosine decay to `lr * lr_final`."""
    if step < config.lr_warmup:
        return config.lr * (step + 1) / config.lr_warmup
    progress = min(1.0, (step - config.lr_warmup) / max(1, config.steps - config.lr_warmup))
    return config.lr * (config.lr_final + (1 - config.lr_final) * 0.5 * (1 + math.cos(math.pi * progress)))


def schedules_at(step: int, config: DVAETrainConfig) -> dict[str, float]:
    """Every scheduled value at `step`: learning rate, temperature, KL weight, and whether samples are hard."""
    n = config.steps
    return {
        "lr": lr_at(step, config),
        "temperature": temperature_at(step, round(config.temperature_anneal * n),
                                      config.temperature_start, config.temperature_end),
        "kl_weight": kl_weight_at(step, round(config.kl_warmup_start * n), round(config.kl_warmup_end * n),
                                  config.kl_weight),
        "hard": step >= config.hard_from * n,
        "noise": step < config.noise_until * n,
    }


def load_images(split: str, n: int, preset: str, n_objects: int | None = None) -> torch.Tensor:
    """The first `n` images of a Shapes split as uint8 [n, 3, H, W] (rendered once, then cached)."""
    return ShapesDataset(split, n, preset=preset, seed=0, n_objects=n_objects, cache=True).images_uint8()


def sample_batch(images: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """A random batch (with replacement) from a uint8 image tensor, as floats in [0, 1]."""
    index = torch.randint(len(images), (batch_size,), generator=generator)
    return images[index].float() / 255


@torch.no_grad()
def validate(model: DiscreteVAE, images: torch.Tensor, batch_size: int = 250) -> dict[str, float]:
    """Deterministic figures on held-out images (argmax codes, as at inference): loss, PSNR, code usage."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    losses, recons, all_ids = [], [], []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device).float() / 255
        out = model(batch, noise=False)
        losses.append(out.recon_loss.item() * len(batch))
        recons.append(out.recon.cpu())
        all_ids.append(out.ids.cpu())
    model.train(was_training)
    target = images.float() / 255
    used, perplexity = code_usage(torch.cat(all_ids), model.config.codebook_size)
    return {"val_loss": sum(losses) / len(images), "psnr": psnr(torch.cat(recons), target),
            "codes_used": used, "perplexity": perplexity}


def default_name(preset: str, config: DVAEConfig) -> str:
    """File name stem of a trained dVAE: dvae-cpu, or dvae-cpu-vq for the VQ variant."""
    return f"dvae-{preset}" + ("-vq" if config.quantizer == "vq" else "")


def cli_command(preset: str, seed: int, model_config: DVAEConfig, train_config: DVAETrainConfig) -> str:
    """The `python -m dalle_lessons train dvae ...` command that reproduces a run, when flags can express it."""
    command = f"python -m dalle_lessons train dvae --preset {preset} --seed {seed}"
    base_model, base_train = get_preset(preset).dvae, DVAETrainConfig()
    for flag, field in (("--steps", "steps"), ("--train-images", "train_images")):
        if getattr(train_config, field) != getattr(base_train, field):
            command += f" {flag} {getattr(train_config, field)}"
            base_train = dataclasses.replace(base_train, **{field: getattr(train_config, field)})
    for flag, field in (("--quantizer", "quantizer"), ("--likelihood", "likelihood")):
        if getattr(model_config, field) != getattr(base_model, field):
            command += f" {flag} {getattr(model_config, field)}"
            base_model = dataclasses.replace(base_model, **{field: getattr(model_config, field)})
    if base_model != model_config or base_train != train_config:
        return (f"dalle_lessons.train.train_dvae(preset={preset!r}, seed={seed}, ...) with the config and "
                "train_config recorded in this file (not expressible as CLI flags)")
    return command


def check_run(preset: str, seed: int, steps: int, files: list[Path], overwrite_shipped: bool) -> None:
    """Refuse at once, before any data or model is made, what a run could only get wrong later: the
    meta-only `paper` preset, fewer than one step, a seed torch cannot take, replacing a shipped
    file of data/ (one listed in data/MANIFEST.json) without `overwrite_shipped`, and an output folder
    that cannot be written (`files[0]`'s folder)."""
    from .manifest import shipped_entry
    from .sampling import MAX_SEED
    if get_preset(preset).name == "paper":
        raise ValueError("preset 'paper' (the published 12B model) exists on the meta device only, to count its "
                         "parameters; it cannot be trained here: choose 'tiny', 'cpu' or 'colab'")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"--steps {steps}: a run needs at least 1 training step")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED - 2:
        raise ValueError(f"--seed {str(seed)[:30]}: a training seed is an int from 0 to 2**63 - 3")
    shipped = [p for p in files if p.exists() and shipped_entry(p) is not None]
    if shipped and not overwrite_shipped:
        raise ValueError(f"{shipped[0]} is a shipped file (listed in data/MANIFEST.json) and training would replace "
                         "it: train into another folder with --out DIR (e.g. --out runs), or pass "
                         "--overwrite-shipped (overwrite_shipped=True) to replace it on purpose")
    check_output_dir(files[0].parent)  # --out a file, under a file, read-only or /proc: one line, before any work


def train_dvae(preset: str = "cpu", seed: int = 0, out: str | Path | None = None,
               train_config: DVAETrainConfig | None = None, model_config: DVAEConfig | None = None,
               resume: bool = False, stop_at: int | None = None, progress: bool = True,
               name: str | None = None, command: str | None = None,
               log: Callable[[str], None] | None = None, device: str | None = None,
               overwrite_shipped: bool = False) -> dict:
    """Train a dVAE on Shapes and save it as `<out>/<name>.safetensors` (+ .json); returns a summary.

    `out` defaults to the course's data/ folder, but a file listed in data/MANIFEST.json (the shipped
    dvae-cpu) is replaced only with `overwrite_shipped=True`, which also records its new size and
    SHA-256 in the manifest. The training state is saved every
    `checkpoint_every` steps (and on Ctrl-C) to `<name>.state.safetensors`; `resume=True` continues
    from it. `stop_at` ends the run early at that step, keeping the state (as an interruption would).
    `device` defaults to a GPU when there is one; results are reproducible per device.
    """
    preset_name = get_preset(preset).name
    model_config = model_config or get_preset(preset).dvae
    train_config = train_config or DVAETrainConfig()
    out = Path(out) if out is not None else data_dir()
    name = name or default_name(preset_name, model_config)
    final_path, state_path = out / f"{name}.safetensors", out / f"{name}.state.safetensors"
    check_run(preset_name, seed, train_config.steps, [final_path, checkpoints.json_path(final_path)],
              overwrite_shipped)
    write = log or tqdm.write

    device = resolve_device(device)
    refuse_multi_process("train dvae", "its dead-code restarts and code-usage averages follow each batch, so "
                         "processes on different slices would drift apart")
    torch.manual_seed(seed)  # the initial weights
    model = DiscreteVAE(model_config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr)
    batch_rng = torch.Generator().manual_seed(seed)  # on the CPU, where the images are
    noise_rng = torch.Generator(device=device).manual_seed(seed + 1)  # Gumbel noise and restarts
    generators = {"batch_rng": batch_rng, "noise_rng": noise_rng}
    run = RunProgress()
    if resume:
        run = restore_run_state(state_path, seed, model, optimizer, generators, train_config, model_config,
                                lambda saved: DVAETrainConfig(**saved))
        write(f"resumed {state_path} at step {run.step}")

    train_images = load_images("train", train_config.train_images, preset_name)
    val_images = load_images("val", train_config.val_images, preset_name)

    def save_state() -> None:
        save_run_state(state_path, run, seed, model, optimizer, generators, train_config, model_config)

    def one_step() -> tuple[torch.Tensor, DVAEOutput, dict]:
        s = schedules_at(run.step, train_config)
        for group in optimizer.param_groups:
            group["lr"] = s["lr"]
        images = sample_batch(train_images, train_config.batch_size, batch_rng).to(device)
        output = model(images, temperature=s["temperature"], hard=s["hard"], generator=noise_rng, noise=s["noise"])
        loss = dvae_loss(output, model_config, s["kl_weight"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train_config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
        optimizer.step()
        return loss, output, s

    def validation_row(result) -> dict:
        loss, output, s = result
        row = {"loss": loss.item(), "recon": output.recon_loss.item(), "kl": output.kl.item(),
               "temperature": s["temperature"], "kl_weight": s["kl_weight"], **validate(model, val_images)}
        write(f"step {run.step:6d}  loss {row['loss']:.4f}  kl {row['kl']:.3f}  "
              f"temp {row['temperature']:.3f}  val psnr {row['psnr']:.2f} dB  "
              f"codes {row['codes_used']}  perplexity {row['perplexity']:.0f}")
        return row

    model.train()
    run_steps(run, train_config.steps, one_step, validation_row, save_state,
              eval_every=train_config.eval_every, checkpoint_every=train_config.checkpoint_every,
              state_path=state_path, stop_at=stop_at, name=name, show_progress=progress, write=write,
              postfix=lambda r: {"loss": f"{r[0].item():.4f}", "temp": f"{r[2]['temperature']:.3f}"})
    summary = run_summary(name, run, train_config.steps, final_path, state_path)
    if not summary["finished"]:
        save_state()
        return summary
    extra = {"command": command or cli_command(preset_name, seed, model_config, train_config),
             "preset": preset_name, **run_record(run, seed, device, train_config)}
    checkpoints.save(model.cpu(), model_config, final_path, extra=extra)
    if overwrite_shipped:
        update_entries([final_path, checkpoints.json_path(final_path)])
    remove_state(state_path)
    return summary
