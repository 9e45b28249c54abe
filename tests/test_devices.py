"""--device cpu|cuda|auto on every command that runs a model: the same code on both, and a one-line refusal of
cuda where there is no GPU. A few training steps of the `tiny` preset and of the full `colab` preset (64x64 images,
16 x 16 = 256 image tokens: about 9 s on one CPU thread)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from dalle_lessons import checkpoints
from dalle_lessons.__main__ import main
from dalle_lessons.config import get_preset
from dalle_lessons.dvae import DiscreteVAE
from dalle_lessons.environment import pick_device, resolve_device
from dalle_lessons.train import DVAETrainConfig, train_dvae
from dalle_lessons.train_clip import ClipTrainConfig, train_clip
from dalle_lessons.train_dalle import DalleTrainConfig, train_dalle

pytestmark = pytest.mark.usefixtures("one_thread")
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: cuda is not refused")
QUIET = dict(progress=False, log=lambda _: None)


def test_auto_is_the_gpu_when_there_is_one_else_the_cpu():
    assert resolve_device("auto") == resolve_device(" AUTO ") == resolve_device(None) == pick_device()
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="choose 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"):
        resolve_device("gpu")


@NO_GPU
def test_cuda_without_a_gpu_is_one_line_with_the_fix():
    with pytest.raises(ValueError, match="no CUDA device here: use --device cpu or auto"):
        resolve_device("cuda")


@NO_GPU
@pytest.mark.parametrize("argv", [
    ["train", "dvae", "--preset", "tiny"], ["train", "dalle", "--preset", "tiny"], ["train", "clip", "--preset", "tiny"],
    ["generate", "a red circle", "-n", "1"], ["evaluate", "generation", "--captions", "1"],
    ["evaluate", "rerank", "--captions", "1"], ["evaluate", "dvae", "--n", "2"], ["evaluate", "clip"],
    ["evaluate", "control", "--captions", "1"], ["evaluate", "bias", "--captions", "1"], ["evaluate", "quality"],
    ["finetune", "--data", "heldout:blue square", "--out", "{tmp}/ft"]])
def test_every_command_refuses_cuda_without_a_gpu_before_any_work(argv, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "run")]
    assert main(argv + ["--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA device here: use --device cpu or auto" in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())  # nothing written


def test_train_device_reaches_the_trainer_and_is_refused_where_it_does_not_apply(monkeypatch, tmp_path, capsys):
    import dalle_lessons.train as train_module
    import dalle_lessons.train_clip as clip_module
    import dalle_lessons.train_dalle as dalle_module
    seen = {}

    def fake(what):
        def trainer(*args, **kwargs):
            seen[what] = kwargs
            return {"path": "x", "step": 1, "seconds": 0.0, "history": []}
        return trainer
    monkeypatch.setattr(train_module, "train_dvae", fake("dvae"))
    monkeypatch.setattr(dalle_module, "train_dalle", fake("dalle"))
    monkeypatch.setattr(clip_module, "train_clip", fake("clip"))
    for what in ("dvae", "dalle", "clip"):
        assert main(["train", what, "--preset", "tiny", "--out", str(tmp_path), "--device", "cpu"]) == 0
        assert seen[what]["device"] == "cpu"
    assert main(["train", "dalle", "--preset", "tiny", "--out", str(tmp_path), "--batch-size", "8",
                 "--precision", "fp16", "--train-images", "32"]) == 0
    config = seen["dalle"]["train_config"]
    assert (config.batch_size, config.precision, config.train_items) == (8, "fp16", 32)
    assert seen["dalle"]["device"] is None  # auto, decided by the trainer
    capsys.readouterr()
    assert main(["train", "tokenizer", "--device", "cpu"]) == 2
    assert "--device does not apply to `train tokenizer`" in capsys.readouterr().err
    assert main(["train", "dvae", "--preset", "tiny", "--precision", "bf16"]) == 2
    assert "--precision does not apply to `train dvae`" in capsys.readouterr().err


def test_evaluate_generation_and_rerank_load_the_pipeline_on_the_device(monkeypatch, capsys):
    from dalle_lessons.pipeline import TextToImage
    asked = []

    def from_pretrained(checkpoint=None, device=None, **kwargs):
        asked.append(device)
        raise RuntimeError("stop here")
    monkeypatch.setattr(TextToImage, "from_pretrained", staticmethod(from_pretrained))
    for what in ("generation", "rerank"):
        assert main(["evaluate", what, "--captions", "1", "--device", "cpu"]) == 2
    assert asked == ["cpu", "cpu"]
    for what in ("control", "quality", "bias"):  # lesson 09's tables load through the same door
        assert main(["evaluate", what, "--device", "cpu"]) == 2
    assert asked == ["cpu"] * 5


def test_evaluate_judge_runs_on_the_cpu_only(capsys):
    assert main(["evaluate", "judge", "--device", "cpu"]) == 2
    assert "evaluate judge reads pixels with numpy on the CPU: drop --device" in capsys.readouterr().err


def _tiny_and_colab_geometry() -> dict:
    """`tiny`, and the full `colab` preset: 64x64 images, 16 x 16 = 256 image tokens."""
    return {"tiny": get_preset("tiny"), "colab": get_preset("colab")}


@pytest.fixture(scope="module")
def dvaes(tmp_path_factory) -> dict[str, str]:
    """A seeded, untrained dVAE per preset: arbitrary but deterministic image tokens for `train dalle`."""
    folder = tmp_path_factory.mktemp("dvaes")
    paths = {}
    for name, preset in _tiny_and_colab_geometry().items():
        torch.manual_seed(0)
        paths[name] = str(folder / f"dvae-{name}.safetensors")
        checkpoints.save(DiscreteVAE(preset.dvae), preset.dvae, paths[name])
    return paths


@pytest.mark.parametrize("preset, device", [("tiny", "cpu"), ("colab", "auto")])
def test_a_few_steps_of_each_trainer_on_the_device(preset, device, dvaes, tmp_path):
    config = _tiny_and_colab_geometry()[preset]
    side, grid = config.image_size, config.transformer.image_grid
    expected = pick_device()
    dvae = train_dvae(preset, out=tmp_path, model_config=config.dvae, device=device, **QUIET,
                      train_config=DVAETrainConfig(steps=2, batch_size=4, train_images=8, val_images=4, eval_every=2,
                                                   checkpoint_every=2))
    model = checkpoints.load(dvae["path"])
    assert dvae["finished"] and model.encode(torch.rand(1, 3, side, side)).shape == (1, grid, grid)
    assert checkpoints.read_metadata(dvae["path"])["extra"]["machine"].endswith(f"device {expected}")

    dalle = train_dalle(preset, out=tmp_path, model_config=config.transformer, dvae_path=dvaes[preset],
                        device=device, **QUIET,
                        train_config=DalleTrainConfig(steps=2, batch_size=2, train_items=4, captions_per_item=1,
                                                      val_items=2, eval_every=2, checkpoint_every=2))
    meta = checkpoints.read_metadata(dalle["path"])
    assert dalle["finished"] and meta["config"]["image_grid"] == grid and meta["extra"]["world_size"] == 1
    assert meta["extra"]["machine"].endswith(f"device {expected}")

    clip = train_clip(preset, out=tmp_path, device=device, **QUIET,
                      train_config=ClipTrainConfig(steps=2, batch_size=4, train_items=8, val_items=4, probe_items=4,
                                                   eval_every=2, checkpoint_every=2))
    assert clip["finished"] and checkpoints.read_metadata(clip["path"])["config"]["image_size"] == side
