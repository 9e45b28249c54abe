"""Mixed precision in `train dalle`: bf16 autocast, fp16 autocast with a gradient scaler, and what each
changes in the loss against fp32 over a few steps of the `tiny` preset.

Measured here (AVX2 CPU, torch 2.13, seed 0, batch 16, 5 steps): the per-step training loss differs
from fp32 by at most 1.9e-4 with bf16 (8 bits of mantissa) and 4.6e-5 with fp16 (11 bits); over 20 steps
5.9e-4 and 5.4e-5. The tolerances below are about ten times those figures.
"""
from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from dalle_lessons import checkpoints
from dalle_lessons.config import get_preset
from dalle_lessons.train_dalle import DalleTrainConfig, precision_used, train_dalle
from dalle_lessons.training_loop import RunProgress, restore_run_state, save_run_state
from dalle_lessons.transformer import DalleTransformer

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS5 = DalleTrainConfig(steps=5, batch_size=16, lr=3e-3, lr_warmup=2, train_items=48, captions_per_item=2,
                          val_items=8, eval_every=1, checkpoint_every=100, precision="fp32")
TOLERANCE = {"bf16": 2e-3, "fp16": 5e-4}  # largest per-step loss difference from fp32 allowed over 5 steps



def _run(tiny_dvae, out, precision: str, **kwargs) -> dict:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="precision fp16 on a CPU")
        warnings.filterwarnings("ignore", message=".*captions have more than")
        return train_dalle("tiny", seed=0, out=out, train_config=dataclasses.replace(STEPS5, precision=precision),
                           progress=False, log=lambda _: None, device="cpu", dvae_path=tiny_dvae, **kwargs)


@pytest.fixture(scope="module")
def fp32_run(tiny_dvae, tmp_path_factory) -> dict:
    return _run(tiny_dvae, tmp_path_factory.mktemp("fp32"), "fp32")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_losses_match_fp32_over_five_steps(precision, fp32_run, tiny_dvae, tmp_path):
    run = _run(tiny_dvae, tmp_path, precision)
    ours, reference = [r["loss"] for r in run["history"]], [r["loss"] for r in fp32_run["history"]]
    assert len(ours) == len(reference) == 5
    worst = max(abs(a - b) for a, b in zip(ours, reference))
    assert worst < TOLERANCE[precision], f"{precision}: per-step loss differs from fp32 by {worst:.2e}"
    assert reference[-1] < reference[0] - 0.5  # the comparison is over steps that learn something
    meta = checkpoints.read_metadata(tmp_path / "dalle-tiny.safetensors")
    assert meta["extra"]["precision_used"] == precision  # the checkpoint says how it was trained
    assert meta["extra"]["command"].endswith(f"--precision {precision}") or "train_config" in meta["extra"]["command"]


def test_fp16_resume_restores_the_loss_scale_and_continues_exactly(tiny_dvae, tmp_path):
    straight = _run(tiny_dvae, tmp_path / "a", "fp16")
    partial = _run(tiny_dvae, tmp_path / "b", "fp16", stop_at=2)
    state = checkpoints.load_state(tmp_path / "b" / "dalle-tiny.state.safetensors")
    assert state["scaler"]["scale"] == 2.0**16 and state["world_size"] == 1  # GradScaler's initial scale
    assert not partial["finished"]
    resumed = _run(tiny_dvae, tmp_path / "b", "fp16", resume=True)
    assert [r["loss"] for r in resumed["history"]] == [r["loss"] for r in straight["history"]]
    a = checkpoints.load(tmp_path / "a" / "dalle-tiny.safetensors").state_dict()
    b = checkpoints.load(tmp_path / "b" / "dalle-tiny.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_saved_loss_scale_comes_back(tmp_path):
    """The scale moves during a run (halved at each overflow, doubled after 2,000 clean steps): a resumed
    run must start from the saved one, not from 65,536 again."""
    config = get_preset("tiny").transformer
    model = DalleTransformer(config)
    optimizer = torch.optim.AdamW(model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    generators = {"rng": torch.Generator().manual_seed(0)}
    save_run_state(tmp_path / "s.safetensors", RunProgress(3), 0, model, optimizer, generators, STEPS5, config,
                   scaler=scaler)
    fresh = torch.amp.GradScaler("cpu")
    restore_run_state(tmp_path / "s.safetensors", 0, model, optimizer, generators, STEPS5, config,
                      lambda saved: DalleTrainConfig(**{**saved, "betas": tuple(saved["betas"])}), scaler=fresh)
    assert fresh.get_scale() == 1024.0


def test_auto_precision_per_device(monkeypatch):
    import dalle_lessons.train_dalle as module
    for fast, device, expected in [(True, "cpu", "bf16"), (False, "cpu", "fp32"), (True, "cuda", "bf16"),
                                   (False, "cuda", "fp16"), (False, "cuda:1", "fp16")]:
        monkeypatch.setattr(module, "bf16_is_fast", lambda d, fast=fast: fast)
        assert precision_used("auto", device) == expected, (fast, device)
    for explicit in ("fp32", "bf16", "fp16"):
        assert precision_used(explicit, "cpu") == explicit
    with pytest.raises(ValueError, match="choose 'auto', 'fp32', 'bf16' or 'fp16'"):
        DalleTrainConfig(precision="fp8")


def test_fp16_without_a_scale_loses_small_gradients_and_a_scale_keeps_them():
    """Why fp16 needs a loss scale (and why the paper needed one per resblock): fp16's smallest positive
    number is about 6e-8, so a gradient below it becomes 0; multiplying the loss by 2**16 first lifts it into
    range, and dividing the fp32 gradient afterwards gives it back. bf16 has fp32's exponent range."""
    tiny = torch.tensor(1e-9)
    assert tiny.half().item() == 0.0  # underflow
    assert (tiny * 2**16).half().float().item() / 2**16 == pytest.approx(1e-9, rel=1e-3)
    assert tiny.bfloat16().item() == pytest.approx(1e-9, rel=1e-2)
