"""More than one process: `train dalle` under DistributedDataParallel (gloo) with 2 CPU processes.

2 processes x batch B/2 see exactly the batches 1 process x batch B sees (each rank takes its slice of the
same global batch), so their loss trajectories agree up to float32 rounding: gloo sums the two halves'
gradients in another order than one process's backward does, and Adam carries the difference on.
Measured here (tiny, batch 16, 8 steps): the largest per-step loss difference is 4.8e-7 (float32's
resolution at a loss of 4 is 4.8e-7); the test allows 1e-4. A resumed 2-process run is bit-identical to an
uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import pytest
import torch

from dalle_lessons import checkpoints, distributed
from dalle_lessons.train_dalle import DalleTrainConfig, cli_command, train_dalle

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIG = DalleTrainConfig(steps=6, batch_size=16, lr=3e-3, lr_warmup=2, train_items=48, captions_per_item=2,
                          val_items=8, eval_every=1, checkpoint_every=100, precision="fp32")
TOLERANCE = 1e-4  # per-step loss, 2 x B/2 against 1 x B (measured: 4.8e-7)



def _kwargs(tiny_dvae, out, **changes) -> dict:
    return dict(preset="tiny", seed=0, out=str(out), train_config=dataclasses.replace(CONFIG, **changes),
                progress=False, device="cpu", dvae_path=tiny_dvae)


@pytest.fixture(scope="module")
def two_processes(tiny_dvae, tmp_path_factory) -> tuple[list[dict], str]:
    out = tmp_path_factory.mktemp("two")
    return distributed.launch(train_dalle, 2, **_kwargs(tiny_dvae, out)), str(out)


def losses(summary: dict) -> list[float]:
    return [row["loss"] for row in summary["history"]]


def test_two_processes_at_half_the_batch_follow_one_process_at_the_whole_batch(two_processes, tiny_dvae, tmp_path):
    one = train_dalle(**_kwargs(tiny_dvae, tmp_path), log=lambda _: None)
    (rank0, rank1), out = two_processes
    assert len(losses(rank0)) == len(losses(one)) == CONFIG.steps
    worst = max(abs(a - b) for a, b in zip(losses(rank0), losses(one)))
    assert worst < TOLERANCE, f"2 x B/2 differs from 1 x B by {worst:.2e} in a step's loss"
    assert losses(rank1) == losses(rank0)  # the loss logged is the mean over both processes' slices
    assert "val_image_loss" in rank0["history"][-1] and "val_image_loss" not in rank1["history"][-1]  # rank 0 validates
    meta = checkpoints.read_metadata(f"{out}/dalle-tiny.safetensors")  # written once, by rank 0
    assert meta["extra"]["world_size"] == 2 and meta["extra"]["command"].endswith("in 2 processes")
    assert cli_command("cpu", 0, DalleTrainConfig(batch_size=32), 2) == (
        "torchrun --nproc_per_node 2 -m dalle_lessons train dalle --preset cpu --seed 0 --batch-size 32")
    assert abs(meta["extra"]["final"]["val_image_loss"] - one["history"][-1]["val_image_loss"]) < TOLERANCE


def test_an_interrupted_two_process_run_resumes_exactly(two_processes, tiny_dvae, tmp_path):
    (straight, _), straight_out = two_processes
    partial = distributed.launch(train_dalle, 2, **_kwargs(tiny_dvae, tmp_path), stop_at=3)
    assert not partial[0]["finished"] and partial[0]["step"] == 3
    state = checkpoints.load_state(tmp_path / "dalle-tiny.state.safetensors")
    assert state["world_size"] == 2 and state["step"] == 3
    resumed = distributed.launch(train_dalle, 2, **_kwargs(tiny_dvae, tmp_path), resume=True)
    assert losses(resumed[0]) == losses(straight)  # bit for bit
    a = checkpoints.load(f"{straight_out}/dalle-tiny.safetensors").state_dict()
    b = checkpoints.load(tmp_path / "dalle-tiny.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "dalle-tiny.state.safetensors").exists()


def _as_rank(monkeypatch, rank: int, world: int) -> None:
    """This process looks like one torchrun started (the refusals come before any process group forms)."""
    for name, value in {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": world, "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": distributed.free_port()}.items():
        monkeypatch.setenv(name, str(value))


def test_a_batch_that_does_not_split_over_the_processes_is_refused_with_the_fix(monkeypatch, tiny_dvae, tmp_path):
    _as_rank(monkeypatch, 0, 3)
    with pytest.raises(ValueError, match=r"a batch of 16 does not split evenly over 3 processes: run torchrun with "
                                         r"--nproc_per_node .*dividing 16 \(1, 2, 4, 8, 16\), or choose --batch-size "
                                         r"a multiple of 3 \(e.g. --batch-size 15\)"):
        train_dalle(**_kwargs(tiny_dvae, tmp_path), log=lambda _: None)
    assert distributed.check_batch(16, 4) == 4


def test_resuming_with_another_number_of_processes_is_refused_with_the_fix(monkeypatch, tiny_dvae, tmp_path):
    train_dalle(**_kwargs(tiny_dvae, tmp_path), log=lambda _: None, stop_at=2)  # one process
    _as_rank(monkeypatch, 0, 2)
    with pytest.raises(ValueError, match="trained by 1 process.*this run has 2; resume it without torchrun"):
        train_dalle(**_kwargs(tiny_dvae, tmp_path), log=lambda _: None, resume=True)
    monkeypatch.delenv("WORLD_SIZE")
    state = checkpoints.load_state(tmp_path / "dalle-tiny.state.safetensors")
    checkpoints.save_state(tmp_path / "dalle-tiny.state.safetensors", {**state, "world_size": 4})
    with pytest.raises(ValueError, match=r"trained by 4 process.*this run has 1; resume it under torchrun with 4 "
                                         r"processes in all"):
        train_dalle(**_kwargs(tiny_dvae, tmp_path), log=lambda _: None, resume=True)


def test_torchrun_refusal_through_the_command_line(tmp_path):
    """The real launcher: `python -m torch.distributed.run --nproc_per_node 2 -m dalle_lessons train dalle`."""
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
         str(distributed.free_port()), "-m", "dalle_lessons", "train", "dalle", "--preset", "tiny", "--device", "cpu",
         "--batch-size", "5", "--steps", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0
    assert result.stderr.count("error: a batch of 5 does not split evenly over 2 processes") == 2  # each rank


def test_dvae_and_clip_training_stay_in_one_process(monkeypatch, tmp_path):
    from dalle_lessons.train import train_dvae
    from dalle_lessons.train_clip import train_clip
    _as_rank(monkeypatch, 1, 2)
    with pytest.raises(ValueError, match="train dvae runs in one process .*dead-code restarts.*without torchrun"):
        train_dvae("tiny", out=tmp_path, device="cpu", progress=False)
    with pytest.raises(ValueError, match="train clip runs in one process .*all-gathered.*without torchrun"):
        train_clip("tiny", out=tmp_path, device="cpu", progress=False)


def test_shards_cover_the_global_batch_once(monkeypatch):
    slices = [distributed.shard(distributed.Context(rank, 4), 16) for rank in range(4)]
    assert [list(range(16))[s] for s in slices] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="a rank runs from 0 to WORLD_SIZE - 1"):
        distributed.world_from_env()


def test_launch_names_a_process_that_died_without_answering_instead_of_waiting_out_the_timeout():
    """A rank that exits before it can answer (killed, or failed while starting, e.g. a script without the
    `if __name__ == "__main__"` guard that spawn needs) is reported at once with its exit code."""
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with code 3 without an answer"):
        distributed.launch(os._exit, 2, 3, timeout=300)  # each process calls os._exit(3): no answer, no traceback
    assert time.monotonic() - started < 120
