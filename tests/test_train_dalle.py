"""Training the transformer: tokens cached once, loss falls, checkpoints round-trip, resume is exact."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from dalle_lessons import checkpoints
from dalle_lessons.config import get_preset
from dalle_lessons.environment import bf16_is_fast
from dalle_lessons.train_dalle import DalleTrainConfig, cli_command, make_optimizer, token_data, train_dalle
from dalle_lessons.transformer import DalleTransformer

TINY = DalleTrainConfig(steps=40, batch_size=16, lr=3e-3, lr_warmup=5, train_items=48, captions_per_item=2,
                        val_items=16, eval_every=20, checkpoint_every=20)



def test_token_data_shapes_captions_and_cache(tiny_dvae):
    config = get_preset("tiny").transformer
    data = token_data("train", 12, "tiny", captions_per_item=2, dvae_path=tiny_dvae)
    assert data.text.shape == (24, config.text_seq_len) and data.image.shape == (24, config.image_seq_len)
    assert data.text.dtype == data.image.dtype == torch.long
    assert torch.equal(data.image[:12], data.image[12:])  # the second caption of each scene: same image
    assert not torch.equal(data.text[:12], data.text[12:])  # ...said another way
    assert int(data.image.max()) < config.image_vocab_size
    again = token_data("train", 12, "tiny", captions_per_item=2, dvae_path=tiny_dvae)  # from the cache
    assert torch.equal(again.text, data.text) and torch.equal(again.image, data.image)
    fresh = token_data("train", 12, "tiny", captions_per_item=2, dvae_path=tiny_dvae, cache=False)
    assert torch.equal(fresh.image, data.image)


def test_token_data_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train dvae --preset tiny"):
        token_data("train", 4, "tiny", dvae_path=tmp_path / "nope.safetensors")


def test_tiny_model_learns_and_checkpoint_round_trips(tiny_dvae, tmp_path):
    summary = train_dalle("tiny", seed=0, out=tmp_path, train_config=TINY, progress=False,
                          log=lambda _: None, device="cpu", dvae_path=tiny_dvae)
    assert summary["finished"] and summary["step"] == TINY.steps
    first, last = summary["history"][0], summary["history"][-1]
    assert last["val_text_loss"] < first["val_text_loss"]
    path = tmp_path / "dalle-tiny.safetensors"
    model = checkpoints.load(path)
    assert isinstance(model, DalleTransformer) and model.config == get_preset("tiny").transformer
    meta = checkpoints.read_metadata(path)
    assert meta["extra"]["steps"] == TINY.steps and meta["extra"]["seed"] == 0
    assert meta["extra"]["final"]["val_image_loss"] == pytest.approx(last["val_image_loss"])
    assert not (tmp_path / "dalle-tiny.state.safetensors").exists()  # the finished run cleans up
    assert TINY.precision == "auto"  # the default: bf16 only where the hardware makes it fast
    assert meta["extra"]["precision_used"] == ("bf16" if bf16_is_fast("cpu") else "fp32")


def test_bf16_is_fast_only_with_bf16_units(monkeypatch):
    import dalle_lessons.environment as environment
    flags = {"avx2": False, "avx2 avx512f avx512_bf16": True, "amx_bf16 avx2": True}
    for line, fast in flags.items():
        monkeypatch.setattr(environment.Path, "read_text", lambda self, **kw: f"flags\t: fpu {line}\n")
        assert environment.bf16_is_fast("cpu") is fast
    assert environment.bf16_is_fast("mps") is False
    with pytest.raises(ValueError, match="choose 'auto', 'fp32', 'bf16' or 'fp16'"):
        dataclasses.replace(TINY, precision="fp8")


def test_a_tiny_model_overfits_a_handful_of_pairs(tiny_dvae, tmp_path):
    config = dataclasses.replace(TINY, steps=150, train_items=8, captions_per_item=1, val_items=8, eval_every=150)
    summary = train_dalle("tiny", seed=1, out=tmp_path, train_config=config, progress=False,
                          log=lambda _: None, device="cpu", dvae_path=tiny_dvae)
    assert summary["history"][-1]["loss"] < 1.0  # from ln(64) ~ 4.2 for the image tokens


def test_resume_continues_exactly(tiny_dvae, tmp_path):
    straight = train_dalle("tiny", seed=0, out=tmp_path / "a", train_config=TINY, progress=False,
                           log=lambda _: None, device="cpu", dvae_path=tiny_dvae)
    partial = train_dalle("tiny", seed=0, out=tmp_path / "b", train_config=TINY, progress=False,
                          log=lambda _: None, device="cpu", dvae_path=tiny_dvae, stop_at=20)
    assert not partial["finished"]
    resumed = train_dalle("tiny", seed=0, out=tmp_path / "b", train_config=TINY, progress=False,
                          log=lambda _: None, device="cpu", dvae_path=tiny_dvae, resume=True)
    assert resumed["finished"]
    a = checkpoints.load(tmp_path / "a" / "dalle-tiny.safetensors").state_dict()
    b = checkpoints.load(tmp_path / "b" / "dalle-tiny.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight["history"][-1]["val_image_loss"] == resumed["history"][-1]["val_image_loss"]


def test_resume_with_other_settings_is_refused(tiny_dvae, tmp_path):
    train_dalle("tiny", seed=0, out=tmp_path, train_config=TINY, progress=False, log=lambda _: None,
                device="cpu", dvae_path=tiny_dvae, stop_at=20)
    with pytest.raises(ValueError, match="cannot resume.*steps"):
        train_dalle("tiny", seed=0, out=tmp_path, train_config=dataclasses.replace(TINY, steps=80),
                    progress=False, log=lambda _: None, device="cpu", dvae_path=tiny_dvae, resume=True)
    bigger = dataclasses.replace(get_preset("tiny").transformer, d_model=128)
    with pytest.raises(ValueError, match="model config differs"):
        train_dalle("tiny", seed=0, out=tmp_path, train_config=TINY, model_config=bigger, progress=False,
                    log=lambda _: None, device="cpu", dvae_path=tiny_dvae, resume=True)


def test_weight_decay_only_on_matrices():
    model = DalleTransformer(get_preset("tiny").transformer)
    decayed, kept = make_optimizer(model, DalleTrainConfig()).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.dim() == 2 for p in decayed["params"]) and decayed["weight_decay"] > 0
    assert kept["weight_decay"] == 0
    assert {"text_emb.weight", "image_emb.weight", "bos"} <= {names[id(p)] for p in kept["params"]}
    assert len(decayed["params"]) + len(kept["params"]) == len(list(model.parameters()))


def test_recorded_command_reproduces_the_run():
    assert cli_command("cpu", 0, DalleTrainConfig()) == "python -m dalle_lessons train dalle --preset cpu --seed 0"
    assert cli_command("cpu", 3, DalleTrainConfig(steps=10)).endswith("--seed 3 --steps 10")
    assert "not" in cli_command("cpu", 0, DalleTrainConfig(lr=1.0)) or "train_config" in cli_command(
        "cpu", 0, DalleTrainConfig(lr=1.0))


def test_bf16_validation_agrees_with_float32_and_leaves_the_model_as_it_was(tiny_dvae):
    from dalle_lessons.train_dalle import validate
    model = DalleTransformer(get_preset("tiny").transformer, generator=torch.Generator().manual_seed(0)).train()
    data = token_data("val", 16, "tiny", dvae_path=tiny_dvae)
    full, fast = validate(model, data), validate(model, data, bf16=True)
    assert model.training  # validation switches to eval mode and back
    for key in ("val_text_loss", "val_image_loss"):
        assert fast[key] == pytest.approx(full[key], abs=0.05)
    assert abs(fast["val_image_accuracy"] - full["val_image_accuracy"]) <= 0.1
