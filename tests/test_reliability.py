"""Issue 17: every bad input a clear one-line error, no silent wrong result, nothing shipped overwritten.

A table of damaged and mismatched model files (each must name the file and the fix), the training guards
that protect data/, prompts, pixels, seeds and per-image random streams, and CLI errors found before work.
"""
import json
import pickle
import shutil

import pytest
import torch
from PIL import Image

from dalle_lessons import checkpoints
from dalle_lessons.__main__ import main
from dalle_lessons.config import get_preset
from dalle_lessons.manifest import MANIFEST, write_manifest
from dalle_lessons.paths import data_dir
from dalle_lessons.pipeline import MAX_IMAGES_PER_CALL, TextToImage
from dalle_lessons.sampling import (MAX_SEED, SAMPLING_RANGES, check_sampling,
                                    generate_image_tokens, row_generators, top_p_filter)
from dalle_lessons.train import DVAETrainConfig, train_dvae
from dalle_lessons.train_dalle import DalleTrainConfig, train_dalle
from dalle_lessons.transformer import DalleTransformer
from test_pipeline import PROMPTS, TINY, random_dvae, random_transformer, shipped_tokenizer


@pytest.fixture(scope="module")
def pipe():
    return TextToImage(shipped_tokenizer(TINY.transformer.text_seq_len), random_dvae(), random_transformer())


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and len(text) < 600, text
    return text


# --- damaged and mismatched model files -----------------------------------------------------------------

def _damage(kind: str, path, folder):
    """Turn the good tiny checkpoint at `path` into the damaged `kind`; returns the path to load."""
    data = path.read_bytes()
    meta_file = checkpoints.json_path(path)
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "lfs-pointer":
        path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    elif kind == "torch.save":
        torch.save({"weight": torch.zeros(2)}, path)
    elif kind == "trailing-garbage":
        path.write_bytes(data + b"\0" * 100)
    elif kind == "garbage-header":
        path.write_bytes((16).to_bytes(8, "little") + b"{not json at all" + data[24:])
    elif kind == "json-not-json":
        meta_file.write_text("{ this is not json")
    elif kind == "json-lfs-pointer":
        meta_file.write_text("version https://git-lfs.github.com/spec/v1\n")
    elif kind == "config-wrong-type":
        meta = json.loads(meta_file.read_text())
        meta["config"]["n_layers"] = "four"
        meta_file.write_text(json.dumps(meta))
    elif kind == "config-other-shape":
        meta = json.loads(meta_file.read_text())
        meta["config"]["d_model"] = 2 * meta["config"]["d_model"]
        meta_file.write_text(json.dumps(meta))
    elif kind == "training-state":
        state = folder / "run.state.safetensors"
        checkpoints.save_state(state, {"step": 3, "w": torch.zeros(2)})
        return state
    else:
        raise AssertionError(kind)
    return path


DAMAGE = ["truncated", "zero-byte", "lfs-pointer", "pickle", "torch.save", "trailing-garbage", "garbage-header",
          "json-not-json", "json-lfs-pointer", "config-wrong-type", "config-other-shape", "training-state"]
EXPECTED = {"truncated": "truncated", "zero-byte": "empty", "lfs-pointer": "git lfs pull", "pickle": "pickle",
            "torch.save": "pickle", "trailing-garbage": "trailing garbage", "garbage-header": "not a safetensors",
            "json-not-json": "not valid JSON", "json-lfs-pointer": "git lfs pull",
            "config-wrong-type": "does not describe a model", "config-other-shape": "does not fit",
            "training-state": "training state"}


@pytest.mark.parametrize("kind", DAMAGE)
def test_every_damaged_checkpoint_is_a_one_line_error_naming_the_file(kind, tmp_path):
    model = random_transformer()
    path = checkpoints.save(model, model.config, tmp_path / "m.safetensors")
    target = _damage(kind, path, tmp_path)
    with pytest.raises(checkpoints.CheckpointError) as caught:
        checkpoints.load(target)
    message = one_line(caught.value)
    assert str(tmp_path) in message and EXPECTED[kind] in message


def test_a_checkpoint_of_another_kind_is_named_in_the_pipeline(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "p")
    shutil.copy(folder / "dvae.safetensors", folder / "transformer.safetensors")
    shutil.copy(folder / "dvae.json", folder / "transformer.json")
    with pytest.raises(ValueError, match="holds a DiscreteVAE, not a DalleTransformer"):
        TextToImage.from_pretrained(folder, device="cpu")
    model = random_transformer()
    with pytest.raises(ValueError, match="does not fit DalleTransformer|different config"):
        checkpoints.load(folder / "dvae.safetensors", model)


def test_damaged_resume_state_is_a_one_line_error(tmp_path):
    state = checkpoints.save_state(tmp_path / "run.state.safetensors", {"step": 3, "w": torch.zeros(100)})
    state.write_bytes(state.read_bytes()[:40])
    with pytest.raises(checkpoints.CheckpointError, match="truncated.*without --resume"):
        checkpoints.load_state(state)


@pytest.fixture
def scratch_data(tmp_path, monkeypatch):
    """A copy of data/'s tokenizer and dVAE with their own manifest, as DALLE_LESSONS_DATA."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("tokenizer.json", "dvae-cpu.safetensors", "dvae-cpu.json"):
        shutil.copy(data_dir() / name, folder / name)
    write_manifest(folder)
    monkeypatch.setenv("DALLE_LESSONS_DATA", str(folder))
    return folder


def test_same_size_corruption_of_a_shipped_file_is_caught_by_its_sha256(scratch_data):
    path = scratch_data / "dvae-cpu.safetensors"
    assert checkpoints.load(path) is not None
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte deep inside a weight: it would load silently
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="differs from the one in the manifest.*git checkout") as caught:
        checkpoints.load(path)
    one_line(caught.value)
    (scratch_data / "tokenizer.json").write_text((scratch_data / "tokenizer.json").read_text().replace("a", "b", 1))
    from dalle_lessons.tokenizer import CaptionTokenizer
    with pytest.raises(ValueError, match="tokenizer.json differs"):
        CaptionTokenizer.load(scratch_data / "tokenizer.json")


def test_a_garbage_tokenizer_file_is_a_one_line_error(tmp_path):
    from dalle_lessons.tokenizer import CaptionTokenizer
    (tmp_path / "t.json").write_text('{"model": 3}')
    with pytest.raises(ValueError, match="is not a tokenizer file") as caught:
        CaptionTokenizer.load(tmp_path / "t.json")
    one_line(caught.value)


# --- training never replaces shipped files, and refuses at once ----------------------------------------

def test_training_refuses_to_replace_shipped_files_and_nonsense_runs_before_any_work(tmp_path):
    before = (data_dir() / "dvae-cpu.safetensors").stat().st_mtime_ns
    with pytest.raises(ValueError, match="shipped file.*--overwrite-shipped"):
        train_dvae("cpu", progress=False)
    with pytest.raises(ValueError, match="shipped file.*--out DIR"):
        train_dalle("cpu", train_config=DalleTrainConfig(steps=5), progress=False)
    for steps in (0, -3):
        with pytest.raises(ValueError, match="at least 1 training step"):
            train_dvae("tiny", out=tmp_path, train_config=DVAETrainConfig(steps=steps), progress=False)
    with pytest.raises(ValueError, match="'paper'.*meta device only"):
        train_dvae("paper", out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="2\\*\\*63 - 3"):
        train_dalle("tiny", seed=2**63, out=tmp_path, progress=False)
    assert (data_dir() / "dvae-cpu.safetensors").stat().st_mtime_ns == before
    assert main(["train", "dvae", "--preset", "cpu", "--steps", "0"]) == 2
    assert main(["train", "dalle", "--preset", "cpu", "--steps", "3"]) == 2
    assert (data_dir() / "dvae-cpu.safetensors").stat().st_mtime_ns == before


# --- prompts, pixels, seeds, caps ----------------------------------------------------------------------

def test_over_long_prompts_warn_and_truncate_or_refuse_quoting_at_most_80_characters(pipe):
    long = "a small red circle above a blue square " * 3000  # ~117 kB
    with pytest.warns(UserWarning, match="too long.*keeping the first 16 tokens") as caught:
        ids = pipe.encode_prompts(long)
    assert ids.shape == (1, 16) and len(str(caught[0].message)) < 400
    with pytest.raises(ValueError, match=r"characters\) is too long") as error:
        pipe.generate_tokens(long, on_overflow="error")
    assert len(one_line(error.value)) < 400
    with pytest.raises(ValueError, match="on_overflow"):
        pipe.encode_prompts("a red circle", on_overflow="truncate")
    with pytest.raises(ValueError, match="empty prompt") as error:
        pipe.encode_prompts(" " * 100_000)
    assert len(str(error.value)) < 400


@pytest.mark.parametrize("prompt, name", [(None, "NoneType"), (5, "int"), (b"a red circle", "bytes"),
                                          ({"a": 1}, "dict"), (["a red circle", 7], "int")])
def test_prompts_of_the_wrong_type_name_the_type(pipe, prompt, name):
    with pytest.raises(TypeError, match=f"must be a str.*got {name}"):
        pipe.generate(prompt)


def test_nan_pixels_seeds_and_the_per_call_cap_are_clear_errors(pipe):
    image = torch.full((3, 16, 16), 0.5)
    image[0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        pipe.encode_image(image)
    with pytest.raises(ValueError, match="NaN or infinite"):
        pipe.complete(PROMPTS[0], image, rows=1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        pipe.to_pil(image[None])
    for seed in (2**63, 2**200):
        with pytest.raises(ValueError, match=r"at most 2\*\*63 - 1"):
            pipe.generate(PROMPTS[0], seed=seed)
    assert pipe.generate_tokens(PROMPTS[0], seed=MAX_SEED).shape == (1, 16)
    with pytest.raises(ValueError, match=f"too many: the most is {MAX_IMAGES_PER_CALL}"):
        pipe.generate_tokens(PROMPTS * 5, n=64)


def test_image_k_of_a_seed_does_not_depend_on_n_or_on_the_other_prompts(pipe):
    settings = dict(temperature=1.0, top_p=None, guidance_scale=1.5)
    eight = pipe.generate_tokens(PROMPTS[1], n=8, seed=7, **settings)
    three = pipe.generate_tokens(PROMPTS[1], n=3, seed=7, **settings)
    assert torch.equal(eight[:3], three)
    assert len({tuple(row.tolist()) for row in eight}) > 1  # the streams differ from image to image
    both = pipe.generate_tokens(PROMPTS, n=3, seed=7, **settings)
    assert torch.equal(both[3:], three)
    # one image draws exactly what one generator seeded with the seed draws (the pre-issue-17 stream)
    text = pipe.encode_prompts(PROMPTS[1])
    single = generate_image_tokens(pipe.transformer, text, generator=torch.Generator().manual_seed(7), **settings)
    assert torch.equal(single[0], eight[0])
    # progressive and complete use the same streams
    frames = list(pipe.progressive(PROMPTS[1], n=3, seed=7, every=16, **settings))
    assert torch.equal(frames[-1], pipe.decode(three))
    rows = generate_image_tokens(pipe.transformer, text.repeat(3, 1), generators=row_generators(7, 3), **settings)
    assert torch.equal(rows, three)
    with pytest.raises(ValueError, match="either generator.*or generators"):
        generate_image_tokens(pipe.transformer, text, generator=torch.Generator(), generators=row_generators(0, 1))
    with pytest.raises(ValueError, match="list of 2 torch.Generator"):
        generate_image_tokens(pipe.transformer, text.repeat(2, 1), generators=row_generators(0, 3))


def test_sampling_ranges_hold_in_float32():
    logits = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(top_p_filter(logits, 1e-300)).sum(-1).tolist() == [1, 1, 1, 1]
    for bad in (dict(temperature=1e-45), dict(temperature=float("nan")), dict(temperature=1e300),
                dict(top_p=1.5), dict(top_p=float("nan")), dict(guidance_scale=-1.0), dict(guidance_scale=1e30),
                dict(top_k=0)):
        with pytest.raises(ValueError) as caught:
            check_sampling(**bad)
        name = next(iter(bad))
        assert SAMPLING_RANGES[name] in one_line(caught.value)
    with pytest.raises(TypeError, match="temperature must be"):
        check_sampling(temperature="hot")


# --- the CLI: one line, before any work ----------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--top-p", "1.5"], "top_p must be in (0, 1]"),
    (["--temperature", "1e-45"], "temperature must be 0 (greedy)"),
    (["--guidance-scale", "1e30"], "guidance_scale must be a number from 0 to 10"),
    (["--out", "{tmp}"], "is a folder: give a file name"),
    (["--out", "{tmp}/grid.unknown"], "cannot tell the file type"),
    (["--out", "{tmp}/file.png/grid.png"], "is a file, not a folder"),
    (["--out", "/proc/grid.png"], "cannot write /proc/grid.png"),
    (["--out-dir", "{tmp}/file.png"], "is a file, not a folder"),
    (["--device", "foo"], "unknown device 'foo'"),
    (["--device", "cuda:99"], "cuda:99"),
    (["--checkpoint", "{tmp}/nowhere"], "no pipeline at"),
])
def test_cli_refuses_bad_options_in_one_line_before_loading_anything(argv, message, tmp_path, capsys):
    (tmp_path / "file.png").write_bytes(b"not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["generate", "a small red circle", "-n", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err and "Traceback" not in err


def test_cli_reads_a_damaged_checkpoint_in_one_line(tmp_path, capsys):
    path = tmp_path / "dvae.safetensors"
    shutil.copy(data_dir() / "dvae-cpu.json", tmp_path / "dvae.json")
    path.write_bytes((data_dir() / "dvae-cpu.safetensors").read_bytes()[:1000])
    assert main(["evaluate", "dvae", "--checkpoint", str(path), "--n", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err and str(path) in err


def test_data_folder_override_is_documented():
    from dalle_lessons.__main__ import build_parser
    assert "DALLE_LESSONS_DATA" in build_parser().format_help()
    readme = (data_dir().parent / "README.md").read_text()
    assert "DALLE_LESSONS_DATA" in readme and "--overwrite-shipped" in readme


def test_evaluate_dvae_names_a_checkpoint_of_another_kind(tmp_path, capsys):
    model = random_transformer()
    path = checkpoints.save(model, model.config, tmp_path / "dalle.safetensors")
    assert main(["evaluate", "dvae", "--checkpoint", str(path), "--n", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a DalleTransformer, not a dVAE" in err


def test_training_the_tokenizer_never_replaces_the_shipped_one_unasked(tmp_path, capsys):
    shipped = data_dir() / "tokenizer.json"
    before = shipped.read_bytes()
    assert main(["train", "tokenizer", "--preset", "tiny"]) == 2
    assert "shipped file" in capsys.readouterr().err and shipped.read_bytes() == before
    assert main(["train", "tokenizer", "--preset", "tiny", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "tokenizer.json").exists() and shipped.read_bytes() == before


@pytest.mark.parametrize("argv, message", [
    (["tokenizer", "--steps", "3"], "--steps does not apply to `train tokenizer`"),
    (["tokenizer", "--resume"], "--resume does not apply to `train tokenizer`"),
    (["dvae", "--no-hard-negatives"], "--no-hard-negatives does not apply to `train dvae` (it is for train clip)"),
    (["dalle", "--false-negatives", "ignore"], "--false-negatives does not apply to `train dalle`"),
    (["clip", "--quantizer", "vq"], "--quantizer does not apply to `train clip` (it is for train dvae)"),
    (["tokenizer", "--device", "cpu"], "--device does not apply to `train tokenizer`"),
    (["clip", "--batch-size", "8"], "--batch-size does not apply to `train clip` (it is for train dalle)"),
    (["dvae", "--precision", "bf16"], "--precision does not apply to `train dvae` (it is for train dalle)"),
])
def test_train_refuses_a_flag_its_component_would_ignore(argv, message, tmp_path, capsys):
    assert main(["train", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv, message", [
    (["generation", "--captions", "0"], "--captions 0: measure at least 1 caption"),
    (["generation", "--samples", "0"], "samples must be at least 1"),
    (["generation", "--batch-size", "0"], "batch_size must be at least 1"),
    (["generation", "--rerank", "0"], "rerank=0"),
    (["generation", "--rerank", "1000"], "more than the limit"),
    (["generation", "--seed", "-1"], "seed must be an int >= 0"),
    (["generation", "--top-p", "2"], "top_p must be in (0, 1]"),
    (["generation", "--sweep", "--rerank", "4"], "--sweep with --rerank 4"),
    (["rerank", "--max-rerank", "0"], "rerank=0"),
    (["rerank", "--temperature", "1e-45"], "temperature must be 0 (greedy)"),
])
def test_evaluate_generation_and_rerank_refuse_bad_options_before_loading(argv, message, tmp_path, capsys):
    # the checkpoint does not exist: an error about it would mean the options were checked too late
    assert main(["evaluate", *argv, "--checkpoint", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "no pipeline" not in err


# --- found by benchmarks/bad_inputs.py (the re-measured table) ------------------------------------------

def test_a_prompt_that_is_not_valid_unicode_is_a_one_line_error(pipe, capsys):
    with pytest.raises(ValueError, match="not valid Unicode") as caught:
        pipe.generate("\ud800 a red circle")
    one_line(caught.value)
    # undecodable bytes on a command line reach Python as lone surrogates (surrogateescape)
    assert main(["generate", "\udcff\udcfe red circle", "-n", "1", "--checkpoint", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid Unicode" in err and "\\udcff" in err


def test_training_the_tokenizer_from_python_never_replaces_the_shipped_one_unasked(scratch_data, tmp_path):
    from dalle_lessons.tokenizer import train_default
    shipped = scratch_data / "tokenizer.json"
    before = shipped.read_bytes()
    with pytest.raises(ValueError, match="shipped file.*overwrite_shipped=True"):
        train_default("tiny", n_captions=100)
    assert shipped.read_bytes() == before
    assert train_default("tiny", n_captions=100, path=tmp_path / "t.json").is_file()


@pytest.mark.parametrize("make_path, message", [
    (lambda tmp: tmp / ("x" * 300 + ".png"), "longer than this file system's limit"),
    (lambda tmp: "", "the output file name is empty"),
    (lambda tmp: "/proc/grid.png", "cannot write /proc/grid.png"),
])
def test_output_files_that_cannot_be_written_are_refused_in_one_short_line(make_path, message, tmp_path):
    from dalle_lessons.paths import check_output_file
    with pytest.raises((ValueError, PermissionError), match=message) as caught:
        check_output_file(make_path(tmp_path))
    assert len(one_line(caught.value)) < 300
    from dalle_lessons.tokenizer import CaptionTokenizer
    with pytest.raises(PermissionError, match="cannot write /proc/t.json"):
        CaptionTokenizer.load().save("/proc/t.json")


def test_cli_out_empty_is_refused_not_the_default_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "a red circle", "-n", "1", "--out", ""]) == 2
    assert "the output file name is empty" in capsys.readouterr().err
    assert not (tmp_path / "generated.png").exists()


def test_a_damaged_manifest_stops_loading_instead_of_skipping_the_check(scratch_data):
    (scratch_data / MANIFEST).write_text("{ not json")
    with pytest.raises(ValueError, match="MANIFEST.json is not valid JSON.*data manifest") as caught:
        checkpoints.load(scratch_data / "dvae-cpu.safetensors")
    one_line(caught.value)
    (scratch_data / MANIFEST).write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds a JSON list, not a manifest"):
        checkpoints.load(scratch_data / "dvae-cpu.safetensors")


def test_a_shipped_file_replaced_by_an_lfs_pointer_or_pickle_says_so_in_a_short_line(scratch_data):
    path = scratch_data / "dvae-cpu.safetensors"
    for content, message in [(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n", "git lfs pull"),
                             (pickle.dumps({"w": 1}), "is a pickle"), (b"", "is empty")]:
        path.write_bytes(content)
        with pytest.raises(ValueError, match="the manifest says 4,359,684: it ") as caught:
            checkpoints.load(path)
        text = one_line(caught.value)
        assert message in text and len(text) - len(str(path)) < 250


def test_same_size_corruption_of_any_saved_checkpoint_or_training_state_is_caught(tmp_path):
    model = random_transformer()
    path = checkpoints.save(model, model.config, tmp_path / "m.safetensors")
    assert len(json.loads(checkpoints.json_path(path).read_text())["sha256"]) == 64
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a weight's byte: the structure is intact, the file size the same
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError, match="not the file its m.json was saved with") as caught:
        checkpoints.load(path)
    one_line(caught.value)
    state = checkpoints.save_state(tmp_path / "s.state.safetensors", {"step": 3, "w": torch.ones(1000)})
    data = bytearray(state.read_bytes())
    data[-10] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError, match="not the file.*without --resume"):
        checkpoints.load_state(state)
    (tmp_path / "m.json").unlink()
    with pytest.raises(FileNotFoundError, match="m.json is missing.*restore the .json beside it"):
        checkpoints.load(path)


@pytest.fixture
def stopped_run(tmp_path):
    """A tiny dVAE run stopped after 1 of 2 steps: its state file is in tmp_path."""
    config = DVAETrainConfig(steps=2, train_images=64, val_images=16)
    train_dvae("tiny", out=tmp_path, stop_at=1, train_config=config, progress=False, log=lambda s: None)
    return tmp_path / "dvae-tiny.state.json", config


@pytest.mark.parametrize("edit", ["drop train_config", "another trainer's config"])
def test_resuming_from_a_state_of_another_kind_is_a_one_line_error(stopped_run, edit, capsys):
    meta_file, config = stopped_run
    meta = json.loads(meta_file.read_text())
    entries = [kv for kv in meta["state"]["__dict__"] if kv[0] != "train_config"]
    if edit == "another trainer's config":
        entries.append(["train_config", {"__dict__": [["precision", "bf16"], ["train_items", 5]]}])
    meta["state"]["__dict__"] = entries
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(checkpoints.CheckpointError, match="is not a training state of this run.*without --resume") as e:
        train_dvae("tiny", out=meta_file.parent, resume=True, train_config=config, progress=False)
    one_line(e.value)
    assert main(["train", "dvae", "--preset", "tiny", "--steps", "2", "--train-images", "64",
                 "--out", str(meta_file.parent), "--resume"]) == 2
    assert "not a training state of this run" in capsys.readouterr().err


@pytest.mark.parametrize("make, message", [
    (lambda: DVAETrainConfig(batch_size=0), "batch_size=0"),
    (lambda: DVAETrainConfig(train_images=0), r"train_images=0 \(--train-images 0\)"),
    (lambda: DVAETrainConfig(lr=float("nan")), "lr=nan must be a finite number"),
    (lambda: DalleTrainConfig(train_items=0), "train_items=0"),
    (lambda: DalleTrainConfig(lr=-1.0), "lr=-1.0"),
    (lambda: __import__("dalle_lessons.train_clip", fromlist=["x"]).ClipTrainConfig(train_items=1),
     "train_items=1 .*two different images"),
])
def test_training_configs_refuse_what_would_train_on_nothing(make, message):
    with pytest.raises(ValueError, match=message) as caught:
        make()
    one_line(caught.value)


def test_training_into_a_file_or_an_unwritable_folder_stops_before_any_work(tmp_path, capsys):
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="file.png is a file, not a folder"):
        train_dvae("tiny", out=tmp_path / "file.png", train_config=DVAETrainConfig(steps=1), progress=False)
    assert main(["train", "dvae", "--preset", "tiny", "--steps", "1", "--out", "/proc/run"]) == 2
    assert "cannot write into /proc/run" in capsys.readouterr().err


def test_cli_evaluate_judge_and_dvae_need_two_images_and_every_error_is_one_line(capsys):
    from dalle_lessons.__main__ import _one_line
    for what in ("judge", "dvae"):
        assert main(["evaluate", what, "--n", "1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--n 1: evaluate {what} needs at least 2" in err
    text = _one_line(ValueError("the parts do not fit:\n  - a\n  - b\nFix: c"))
    assert text == "the parts do not fit: - a - b Fix: c"


def test_cli_hint_for_a_prompt_that_looks_like_a_flag(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "-x"])
    assert "goes after --" in capsys.readouterr().err


@pytest.mark.parametrize("index", ["{ not json", "", "[1, 2]", "version https://git-lfs.github.com/spec/v1\n"])
def test_a_damaged_pipeline_index_is_a_one_line_error(pipe, tmp_path, index):
    pipe.save_pretrained(tmp_path / "saved")
    (tmp_path / "saved" / "pipeline.json").write_text(index)
    with pytest.raises(ValueError) as caught:
        TextToImage.from_pretrained(tmp_path / "saved", device="cpu")
    assert "pipeline.json" in one_line(caught.value)


def test_pipeline_paths_and_devices_of_the_wrong_kind_are_one_line_errors(pipe, tmp_path):
    with pytest.raises(TypeError, match="save_pretrained .*got 123"):
        TextToImage.from_pretrained(123)
    (tmp_path / "a-file").write_text("x")
    for target in (tmp_path / "a-file" / "below", "/proc/dalle-lessons-test"):
        with pytest.raises((ValueError, PermissionError)) as caught:
            pipe.save_pretrained(target)
        one_line(caught.value)
    with pytest.raises(ValueError) as caught:
        pipe.to("foo")
    assert "foo" in one_line(caught.value)
    assert pipe.device.type == "cpu"  # nothing moved


def test_evaluations_refuse_fewer_than_two_images_by_the_name_n():
    from dalle_lessons.evaluate import evaluate_dvae, evaluate_judge, generation_settings
    for n in (0, 1, -5, 2.5):
        with pytest.raises(ValueError, match=r"n=.*at least 2 test images"):
            evaluate_judge(n=n)
    with pytest.raises(ValueError, match=r"n=0"):
        evaluate_dvae(n=0)
    with pytest.raises(ValueError, match="choose from temperature"):
        generation_settings({"foo": 1})
