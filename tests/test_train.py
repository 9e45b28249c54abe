import json

import pytest
import torch
from safetensors.torch import load_file

from dalle_lessons import checkpoints
from dalle_lessons.__main__ import main
from dalle_lessons.train import DVAETrainConfig, lr_at, schedules_at, train_dvae

QUICK = DVAETrainConfig(steps=24, batch_size=8, train_images=64, val_images=16, eval_every=8, checkpoint_every=8)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def run(out, **kwargs) -> dict:
    return train_dvae("tiny", seed=1, out=out, train_config=kwargs.pop("train_config", QUICK), progress=False,
                      log=kwargs.pop("log", lambda _: None), **kwargs)


def weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_weights(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_resume_after_stopping_equals_uninterrupted_training(tmp_path):
    full = run(tmp_path / "full")
    assert full["finished"] and full["step"] == 24
    part = run(tmp_path / "split", stop_at=12)
    assert not part["finished"] and part["step"] == 12 and part["path"].endswith("dvae-tiny.state.safetensors")
    rest = run(tmp_path / "split", resume=True)
    assert rest["finished"] and rest["step"] == 24
    assert_same_weights(full["path"], rest["path"])
    assert [r["step"] for r in rest["history"]] == [8, 16, 24]
    assert not (tmp_path / "split" / "dvae-tiny.state.safetensors").exists()  # cleaned up when done


def test_ctrl_c_saves_the_state_and_resume_continues_exactly(tmp_path):
    full = run(tmp_path / "full")

    def interrupt(_: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "split", log=interrupt)  # interrupted at the first validation, step 8
    state = checkpoints.load_state(tmp_path / "split" / "dvae-tiny.state.safetensors")
    assert state["step"] == 8
    rest = run(tmp_path / "split", resume=True)
    assert_same_weights(full["path"], rest["path"])



def test_ctrl_c_in_the_middle_of_a_step_stops_at_the_step_boundary(tmp_path, monkeypatch):
    import os
    import signal

    from dalle_lessons import train
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs in a background job (`cmd &`)
    full = run(tmp_path / "full")
    calls = {"n": 0}
    real_sample_batch = train.sample_batch

    def sample_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGINT)  # arrives while step 5 is under way
        return real_sample_batch(*args, **kwargs)

    monkeypatch.setattr(train, "sample_batch", sample_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "split")
    assert checkpoints.load_state(tmp_path / "split" / "dvae-tiny.state.safetensors")["step"] == 5
    monkeypatch.setattr(train, "sample_batch", real_sample_batch)
    rest = run(tmp_path / "split", resume=True)
    assert_same_weights(full["path"], rest["path"])
    assert signal.getsignal(signal.SIGINT) == before  # the caller's handler was put back

def test_vq_resume_is_exact_too(tmp_path):
    from dalle_lessons.config import get_preset
    import dataclasses
    vq = dataclasses.replace(get_preset("tiny").dvae, quantizer="vq")
    full = run(tmp_path / "full", model_config=vq)
    run(tmp_path / "split", model_config=vq, stop_at=10)
    rest = run(tmp_path / "split", model_config=vq, resume=True)
    assert rest["path"].endswith("dvae-tiny-vq.safetensors")
    assert_same_weights(full["path"], rest["path"])


def test_resume_with_other_settings_is_a_clear_error(tmp_path):
    run(tmp_path, stop_at=8)
    with pytest.raises(ValueError, match=r"different settings \(steps\)"):
        run(tmp_path, resume=True, train_config=DVAETrainConfig(**{**QUICK.__dict__, "steps": 48}))
    with pytest.raises(FileNotFoundError, match="no training state"):
        run(tmp_path / "elsewhere", resume=True)


def test_same_seed_same_model(tmp_path):
    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert_same_weights(a["path"], b["path"])


def test_schedules_follow_the_recipe():
    config = DVAETrainConfig(steps=1000, lr=1e-3, lr_warmup=100, temperature_anneal=0.5,
                             kl_weight=6.6, kl_warmup_start=0.2, kl_warmup_end=0.6, hard_from=0.9)
    assert lr_at(0, config) == pytest.approx(1e-5) and lr_at(99, config) == pytest.approx(1e-3)
    assert lr_at(1000, config) == pytest.approx(1e-3 * config.lr_final)
    start, middle, end = schedules_at(0, config), schedules_at(500, config), schedules_at(1000, config)
    assert start["temperature"] == 1.0 and middle["temperature"] == 1 / 16 == end["temperature"]
    assert start["kl_weight"] == 0.0 and schedules_at(200, config)["kl_weight"] == 0.0
    assert schedules_at(600, config)["kl_weight"] == 6.6
    assert not schedules_at(899, config)["hard"] and schedules_at(900, config)["hard"]


def test_cli_trains_and_evaluates_a_tiny_dvae(tmp_path, capsys):
    assert main(["train", "dvae", "--preset", "tiny", "--steps", "12", "--train-images", "64",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dvae-tiny.safetensors after 12 steps" in out
    meta = checkpoints.read_metadata(tmp_path / "dvae-tiny.safetensors")
    assert meta["extra"]["command"] == ("python -m dalle_lessons train dvae --preset tiny --seed 0 --steps 12 "
                                        "--train-images 64")
    assert meta["extra"]["steps"] == 12 and meta["extra"]["seed"] == 0 and meta["extra"]["wall_seconds"] > 0
    assert main(["evaluate", "dvae", "--preset", "tiny", "--n", "6", "--json",
                 "--checkpoint", str(tmp_path / "dvae-tiny.safetensors")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["what"] == "dvae" and [r["objects"] for r in report["rows"]] == ["1", "2", "all"]
    assert {"psnr_db", "codes_used", "perplexity", "scene_exact", "caption_correct"} <= set(report["rows"][-1])
    assert main(["evaluate", "dvae", "--preset", "tiny", "--n", "6",
                 "--checkpoint", str(tmp_path / "dvae-tiny.safetensors")]) == 0
    assert "psnr_db" in capsys.readouterr().out


def test_cli_resume_without_state_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "dvae", "--preset", "tiny", "--steps", "4", "--out", str(tmp_path), "--resume"]) == 2
    assert "no training state" in capsys.readouterr().err


def test_cli_evaluate_without_a_checkpoint_says_how_to_train_one(tmp_path, capsys):
    assert main(["evaluate", "dvae", "--preset", "tiny", "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "python -m dalle_lessons train dvae --preset tiny" in capsys.readouterr().err


def test_recorded_command_reproduces_the_run_or_says_it_cannot():
    import dataclasses
    from dalle_lessons.config import get_preset
    from dalle_lessons.train import cli_command
    cpu = get_preset("cpu").dvae
    assert cli_command("cpu", 0, cpu, DVAETrainConfig()) == "python -m dalle_lessons train dvae --preset cpu --seed 0"
    vq = dataclasses.replace(cpu, quantizer="vq")
    assert cli_command("cpu", 3, vq, DVAETrainConfig(steps=10)) == (
        "python -m dalle_lessons train dvae --preset cpu --seed 3 --steps 10 --quantizer vq")
    custom = cli_command("cpu", 0, dataclasses.replace(cpu, logit_scale=10.0), DVAETrainConfig())
    assert custom.startswith("dalle_lessons.train.train_dvae(") and "not expressible" in custom
