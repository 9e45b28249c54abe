"""The loop both trainers share: resumable, interruptible, with a progress bar and periodic validation.

A trainer (`train.train_dvae`, `train_dalle.train_dalle`) brings what is its own: how to take one step,
what to validate, what its saved state holds. This module brings the rest, once: refusing to resume
with other settings, counting steps and seconds across resumes, validating every `eval_every` steps,
saving the state every `checkpoint_every` steps and on Ctrl-C (never in the middle of a step), and
the summary a trainer returns.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from . import checkpoints


class DeferInterrupt:
    """Hold a Ctrl-C until the current step ends, so the state saved on interruption is a step boundary.

    A second Ctrl-C interrupts at once. Only the main thread can catch signals; elsewhere this does nothing.
    """

    def __enter__(self) -> "DeferInterrupt":
        self.requested, self.previous = False, None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        """Raise the held KeyboardInterrupt, if there is one (call between steps)."""
        if self.requested:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def check_train_config(config, counts: tuple[str, ...], flags: dict[str, str] | None = None) -> None:
    """Refuse, when a training config is made, what would train on nothing or silently produce NaN weights:
    every field named in `counts` an int >= 1, `lr` a finite number > 0. `flags` names the CLI flag of a field."""
    flags = flags or {}
    for name in counts:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            flag = f" ({flags[name]} {value})" if name in flags else ""
            raise ValueError(f"{type(config).__name__}: {name}={value!r}{flag} must be an int of at least 1")
    lr = config.lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"{type(config).__name__}: lr={lr!r} must be a finite number > 0 (the learning rate)")


def check_resumable(state_path: Path, state: dict, saved_train_config, train_config, seed: int,
                    model_config) -> None:
    """Refuse to resume a run whose seed, training settings or model differ from this one's."""
    if saved_train_config != train_config or state["seed"] != seed:
        changed = [f.name for f in dataclasses.fields(saved_train_config)
                   if getattr(saved_train_config, f.name) != getattr(train_config, f.name)]
        raise ValueError(f"cannot resume {state_path}: it was started with seed {state['seed']} and "
                         f"different settings ({', '.join(changed) or 'seed'}); rerun with the same "
                         "--steps/--seed, or start afresh without --resume")
    problems = checkpoints.config_mismatches(state["model_config"], model_config)
    if problems:
        raise ValueError(f"cannot resume {state_path}: model config differs ({'; '.join(problems)})")


@dataclass
class RunProgress:
    """Where a run stands: steps done, seconds spent (across resumes) and the validation rows so far."""

    step: int = 0
    elapsed: float = 0.0
    history: list[dict] = field(default_factory=list)


def save_run_state(path: Path, run: RunProgress, seed: int, model: torch.nn.Module,
                   optimizer: torch.optim.Optimizer, generators: dict[str, torch.Generator],
                   train_config, model_config, *, scaler: "torch.amp.GradScaler | None" = None,
                   world_size: int = 1) -> None:
    """Everything a resumed run needs: weights, optimizer, each named random generator, progress, settings,
    the fp16 loss scale (`scaler`, when enabled) and how many processes trained (`world_size`)."""
    extra = {"scaler": scaler.state_dict()} if scaler is not None and scaler.is_enabled() else {}
    checkpoints.save_state(path, {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": run.step,
        **{name: generator.get_state() for name, generator in generators.items()}, "seed": seed,
        "elapsed": run.elapsed, "history": run.history, "world_size": world_size, **extra,
        "train_config": dataclasses.asdict(train_config), "model_config": dataclasses.asdict(model_config)})


def saved_world_size(path: Path) -> int | None:
    """How many processes trained the state at `path` (1 for states from before distributed training),
    read from its JSON alone, so a mismatch is refused before any process group forms; None without a state."""
    import json
    try:
        tree = json.loads(checkpoints.json_path(path).read_text())["state"]["__dict__"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: load_state names the problem later
    return next((value for key, value in tree if key == "world_size" and isinstance(value, int)), 1)


def check_world_size(path: Path, saved: int | None, world_size: int) -> None:
    """Refuse to resume a state trained by another number of processes, with the command that resumes it."""
    if saved is None or saved == world_size:
        return
    how = ("without torchrun (one process)" if saved == 1 else
           f"under torchrun with {saved} processes in all (--nproc_per_node times --nnodes = {saved})")
    raise ValueError(f"cannot resume {path}: it was trained by {saved} process(es) and this run has {world_size}; "
                     f"resume it {how}, or start afresh without --resume (another process count splits each "
                     "batch differently, so the run would not continue exactly)")


def restore_run_state(path: Path, seed: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      generators: dict[str, torch.Generator], train_config, model_config,
                      read_train_config: Callable[[dict], Any], *, scaler: "torch.amp.GradScaler | None" = None,
                      world_size: int = 1) -> RunProgress:
    """Load what `save_run_state` wrote into `model`, `optimizer`, `generators` (and `scaler`), after refusing
    a run with other settings or another number of processes (`read_train_config` turns the saved dict back
    into the trainer's config)."""
    state = checkpoints.load_state(path)
    try:
        saved = read_train_config(state["train_config"])
        check_resumable(path, state, saved, train_config, seed, model_config)
        check_world_size(path, state.get("world_size", 1), world_size)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for name, generator in generators.items():
            generator.set_state(state[name])
        if scaler is not None and scaler.is_enabled() and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        return RunProgress(state["step"], state["elapsed"], state["history"])
    except (KeyError, TypeError, AttributeError, RuntimeError) as error:  # another trainer's state, or edited
        what = f"no {error}" if isinstance(error, KeyError) else str(error).splitlines()[0][:80]
        raise checkpoints.CheckpointError(f"{path} is not a training state of this run ({type(error).__name__}: "
                                          f"{what}): start afresh without --resume") from None


def run_steps(progress: RunProgress, total: int, one_step: Callable[[], Any],
              validate: Callable[[Any], dict], save_state: Callable[[], None], *,
              eval_every: int, checkpoint_every: int, state_path: Path, stop_at: int | None = None,
              name: str = "train", show_progress: bool = True, postfix: Callable[[Any], dict] | None = None,
              write: Callable[[str], None] | None = None,
              save_on_interrupt: Callable[[], None] | None = None) -> None:
    """Take steps until `total` (or `stop_at`), updating `progress` in place.

    `one_step()` trains one step and returns whatever `validate` and `postfix` need (a loss, say).
    Every `eval_every` steps and at the last one, `validate(result)` returns a row for the history
    (this loop adds "step" and "seconds" in front). `save_state()` runs every `checkpoint_every`
    steps and on Ctrl-C; a Ctrl-C waits for the step under way to finish, so a saved state always
    sits on a step boundary and a resumed run continues exactly as if it had never stopped.
    `save_on_interrupt` replaces `save_state` on Ctrl-C (a distributed run saves without waiting for
    the other processes there, which may already be gone).
    """
    write = write or tqdm.write
    last = min(total, stop_at if stop_at is not None else total)
    bar = tqdm(total=total, initial=progress.step, desc=name, disable=not show_progress, mininterval=1.0)
    started = time.perf_counter() - progress.elapsed
    at_boundary = True  # False while a step is half done: its state must not be saved
    try:
        with DeferInterrupt() as guard:
            while progress.step < last:
                at_boundary = False
                result = one_step()
                progress.step += 1
                at_boundary = True
                progress.elapsed = time.perf_counter() - started
                bar.update(1)
                if postfix is not None and progress.step % 25 == 0:
                    bar.set_postfix(postfix(result), refresh=False)
                if progress.step % eval_every == 0 or progress.step == total:
                    progress.history.append({"step": progress.step, "seconds": round(progress.elapsed, 1),
                                             **validate(result)})
                if progress.step % checkpoint_every == 0 and progress.step < total:
                    save_state()
                guard.check()
    except KeyboardInterrupt:
        bar.close()
        if at_boundary:
            (save_on_interrupt or save_state)()
            write(f"interrupted at step {progress.step}: state saved to {state_path}; continue with --resume")
        else:
            write(f"interrupted in the middle of a step: {state_path} keeps the last periodic state")
        raise
    bar.close()


def make_optimizer(model: torch.nn.Module, config) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and convolution kernels only (not on embeddings, position
    tables, biases or norms): the usual GPT recipe, shared by the transformer's and CLIP's trainers."""
    def decays(name: str, p: torch.Tensor) -> bool:
        return p.dim() >= 2 and "emb" not in name and "pos" not in name
    decay = [p for n, p in model.named_parameters() if decays(n, p)]
    keep = [p for n, p in model.named_parameters() if not decays(n, p)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": keep, "weight_decay": 0.0}], lr=config.lr, betas=config.betas)


def run_summary(name: str, progress: RunProgress, total: int, final_path: Path, state_path: Path) -> dict:
    """What a trainer returns: where the result is (the final checkpoint, or the state if unfinished)."""
    finished = progress.step >= total
    return {"name": name, "path": str(final_path if finished else state_path), "step": progress.step,
            "seconds": round(progress.elapsed, 1), "finished": finished, "history": progress.history}


def run_record(run: RunProgress, seed: int, device: str, train_config) -> dict:
    """What a finished checkpoint's JSON records about its run (besides the trainer's own command)."""
    return {"seed": seed, "steps": run.step, "wall_seconds": round(run.elapsed, 1),
            "machine": machine_description(device), "load_average_at_end": load_average(),
            "train_config": dataclasses.asdict(train_config),
            "final": run.history[-1] if run.history else {}, "history": run.history}


def remove_state(state_path: Path) -> None:
    """Delete a finished run's state file and its JSON."""
    for leftover in (state_path, checkpoints.json_path(state_path)):
        leftover.unlink(missing_ok=True)


def machine_description(device: str) -> str:
    """The machine a checkpoint was trained on, for its JSON."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), device {device}")


def load_average() -> str:
    """The 1/5/15-minute load averages: a busy machine explains a slow run."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"
