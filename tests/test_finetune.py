"""Fine-tuning (issue 13): data folders and built-in sets, every bad input, the three methods, exact resume.

Everything runs on a `tiny` pipeline with random weights, saved to a temporary folder and given as the base
(`base=` / `--from`), so each test takes a second or two.
"""
from __future__ import annotations

import json
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from dalle_lessons import finetune as ft
from dalle_lessons import lora
from dalle_lessons.config import get_preset
from dalle_lessons.pipeline import TextToImage
from dalle_lessons.train_dalle import TokenData, validate

from test_evaluate_generation import tiny_pipeline

TINY = get_preset("tiny")
SIDE = TINY.image_size  # 16
FAST = dict(steps=12, batch_size=8, eval_every=6, checkpoint_every=6, lr_warmup=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny pipeline folder, the base every test fine-tunes."""
    return tiny_pipeline().save_pretrained(tmp_path_factory.mktemp("base") / "tiny")


def run(data, out, base, progress=False, **config):
    settings = {**FAST, **config}
    return ft.finetune(data, out, ft.FinetuneConfig(**settings), base=base, examples=16 if "heldout:" in str(data)
                       else None, progress=progress, log=lambda _: None, device="cpu")


def make_folder(folder, n: int = 10, captions: str = "jsonl", extra_rows=(), skip_caption=()):
    """n images of assorted sizes and modes, with captions.jsonl (or .csv)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "RGBA", "P", "RGB"]
    rows = []
    for i in range(n):
        size = (SIDE, SIDE) if i % 3 == 0 else (40 + 3 * i, 24 + i)  # some native, some larger and not square
        array = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(array, "RGB")
        mode = modes[i % len(modes)]
        image = image.convert(mode) if mode != "P" else image.quantize(8)
        name = f"img{i}.png" if i % 2 else f"img{i}.jpg"
        if name.endswith(".jpg") and mode in ("RGBA", "P"):
            name = name.replace(".jpg", ".png")
        image.save(folder / name)
        if i not in skip_caption:
            rows.append({"file": name, "caption": f"a picture number {i}"})
    rows += list(extra_rows)
    if captions == "jsonl":
        (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif captions == "csv":
        (folder / "captions.csv").write_text("file,caption\n" + "".join(f"{r['file']},{r['caption']}\n" for r in rows))
    return folder


# --- data ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("captions", ["jsonl", "csv"])
def test_a_folder_loads_as_rgb_at_the_models_size_with_notes(tmp_path, captions):
    data = ft.load_folder(make_folder(tmp_path / "pics", captions=captions), SIDE)
    assert data.images.shape == (10, 3, SIDE, SIDE) and data.images.dtype == torch.uint8
    assert data.captions[3] == "a picture number 3" and data.sources[3] == "img3.png"
    notes = " ".join(data.notes)
    assert "converted to RGB" in notes and "grayscale" in notes and "RGBA (composited on white)" in notes
    assert "palette" in notes
    assert f"resized 6 of 10 image(s) to {SIDE}x{SIDE}" in notes and "center-cropped" in notes


def test_the_built_in_set_renders_the_held_out_pair(tmp_path):
    data = ft.load_builtin("heldout:blue square", SIDE, examples=12)
    assert len(data) == 12 and data.images.shape == (12, 3, SIDE, SIDE)
    from dalle_lessons.shapes import parse_caption
    claims = [parse_caption(c).objects for c in data.captions]  # synonyms ('navy box') read back to the pair
    assert all(len(o) == 1 and (o[0].color, o[0].shape) == ("blue", "square") for o in claims), data.captions
    again = ft.load_builtin("heldout:blue square", SIDE, examples=12)
    assert data.captions == again.captions and torch.equal(data.images, again.images)  # same seed, same scenes
    train, val = ft.split_indices(len(data))
    assert len(val) == 1 and sorted(train + val) == list(range(12))
    assert ft.split_indices(64)[1] == ft.split_indices(64)[1] and len(ft.split_indices(64)[1]) == 8


def test_words_the_tokenizer_never_saw_are_spelled_in_pieces():
    pipe = tiny_pipeline()
    notes = ft.caption_notes(pipe.tokenizer, ["a pink star", "a red circle"])
    assert len(notes) == 1 and "'pink' -> " in notes[0] and "no retraining" in notes[0]


def _rewrite_captions(folder, change):
    rows = [json.loads(line) for line in (folder / "captions.jsonl").read_text().splitlines()]
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in change(rows)))


def _empty_folder(folder):
    for p in folder.iterdir():
        p.unlink()


def _five_examples(folder):
    _empty_folder(folder)
    make_folder(folder, n=5)


def _bad_json(folder):
    with open(folder / "captions.jsonl", "a") as f:
        f.write("{not json\n")


BAD_FOLDERS = {  # what is wrong -> (how to make it so, the error expected)
    "empty folder": (_empty_folder, "holds no images and no captions"),
    "no captions file": (lambda f: (f / "captions.jsonl").unlink(), "no captions.jsonl or captions.csv"),
    "image without caption": (lambda f: make_folder(f, skip_caption=(4,)), r"have no caption.*img4"),
    "caption without image": (lambda f: (f / "img5.png").unlink(), r"names 1 image\(s\) not in.*img5.png"),
    "zero-byte image": (lambda f: (f / "img1.png").write_bytes(b""), r"img1.png is empty \(0 bytes\)"),
    "unreadable image": (lambda f: (f / "img1.png").write_bytes(b"not a png"), "img1.png cannot be read as an image"),
    "empty caption": (lambda f: _rewrite_captions(f, lambda rows: rows[:2] + [{**rows[2], "caption": "  "}] + rows[3:]),
                      r"captions.jsonl line 3: the caption of 'img2.png' is empty"),
    "bad JSON line": (_bad_json, "line 11 is not JSON"),
    "two captions files": (lambda f: (f / "captions.csv").write_text("file,caption\n"),
                           "both captions.jsonl and captions.csv"),
    "fewer than 8": (_five_examples, r"only 5 captioned example\(s\): fine-tuning needs at least 8"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_bad_folders_are_one_line_errors_naming_the_file_and_fix(tmp_path, case):
    folder = make_folder(tmp_path / "pics")
    damage, pattern = BAD_FOLDERS[case]
    damage(folder)
    with pytest.raises(ValueError, match=pattern) as error:
        ft.load_folder(folder, SIDE)
    assert "\n" not in str(error.value)


def test_a_missing_folder_or_a_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder .*heldout:<color> <shape>"):
        ft.load_data(tmp_path / "nowhere", SIDE)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        ft.load_data(tmp_path / "f.txt", SIDE)
    with pytest.raises(ValueError, match="--examples applies to a built-in set"):
        ft.load_data(make_folder(tmp_path / "pics"), SIDE, examples=16)


@pytest.mark.parametrize("name, pattern", [
    ("heldout:red circle", "not a held-out pair"),
    ("heldout:blue", "is not 'heldout:<color> <shape>'"),
    ("heldout:mauve square", "is not 'heldout:<color> <shape>'"),
])
def test_bad_built_in_names_are_clear_errors(name, pattern):
    with pytest.raises(ValueError, match=pattern) as error:
        ft.load_data(name, SIDE)
    assert "'heldout:blue square'" in str(error.value)  # the valid choices are listed


def test_too_few_built_in_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="--examples 4: fine-tuning needs at least 8"):
        ft.load_builtin("heldout:blue square", SIDE, examples=4)


@pytest.mark.parametrize("changes, pattern", [
    ({"method": "everything"}, "unknown method 'everything': choose one of full, last-layers, lora"),
    ({"rank": 0}, "LoRA rank 0 is not valid"),
    ({"rank": -3}, "LoRA rank -3 is not valid"),
    ({"steps": 0}, "--steps 0: fine-tuning needs at least 1 step"),
    ({"lr": 0.0}, "--lr 0.0: the learning rate must be a finite number > 0"),
    ({"lr": float("nan")}, "--lr nan"),
    ({"method": "last-layers", "last_layers": 0}, "--layers 0"),
])
def test_bad_settings_are_clear_errors(changes, pattern):
    with pytest.raises(ValueError, match=pattern):
        ft.FinetuneConfig(**changes)


def test_out_inside_data_or_on_the_base_is_refused(tmp_path, base):
    from dalle_lessons.paths import data_dir
    with pytest.raises(ValueError, match="inside the course's data/ folder"):
        ft.check_out(data_dir() / "mine", None)
    with pytest.raises(ValueError, match="base pipeline's own folder"):
        ft.check_out(base, base)
    with pytest.raises(ValueError, match="--out DIR is required"):
        ft.check_out(None, None)


# --- training ----------------------------------------------------------------------------------------------

def train_loss(pipe_or_model, data: ft.FinetuneData, pipe: TextToImage) -> float:
    tokens, _ = ft.encode_examples(pipe, data)
    train, _ = ft.split_indices(len(data))
    return validate(pipe_or_model, TokenData(tokens.text[train], tokens.image[train]))["val_image_loss"]


def test_a_few_lora_steps_lower_the_training_loss_on_the_built_in_set(tmp_path, base):
    summary = run("heldout:blue square", tmp_path / "out", base, steps=20, lr=1e-2)
    assert summary["finished"] and summary["method"] == "lora"
    adapter = tmp_path / "out" / "adapter.safetensors"
    assert summary["path"] == str(adapter) and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "adapter.json", "adapter.safetensors"]  # no state left behind
    meta = json.loads((tmp_path / "out" / "adapter.json").read_text())
    assert meta["extra"]["method"] == "lora" and meta["extra"]["examples"] == {"train": 14, "val": 2}
    assert "--data \"heldout:blue square\"" in meta["extra"]["command"]
    assert summary["trainable_parameters"] < 0.2 * summary["total_parameters"]
    before = TextToImage.from_pretrained(base, device="cpu")
    data = ft.load_builtin("heldout:blue square", SIDE, examples=16)
    loss_before = train_loss(before.transformer, data, before)
    after = TextToImage.from_pretrained(base, device="cpu", adapter=adapter)
    loss_after = train_loss(after.transformer, data, after)
    assert loss_after < loss_before - 0.05, (loss_before, loss_after)


def test_full_and_last_layers_write_a_pipeline_folder(tmp_path, base):
    start = TextToImage.from_pretrained(base, device="cpu").transformer.state_dict()
    for method in ("full", "last-layers"):
        summary = run(make_folder(tmp_path / "pics"), tmp_path / method, base, method=method, steps=4, lr=1e-2)
        assert summary["finished"] and summary["path"] == str(tmp_path / method)
        pipe = TextToImage.from_pretrained(tmp_path / method, device="cpu")
        assert pipe.provenance["transformer"]["finetune"]["method"] == method
        after = pipe.transformer.state_dict()
        changed = {k for k in start if not torch.equal(start[k], after[k])}
        last = f"blocks.{TINY.transformer.n_layers - 1}."
        if method == "full":
            assert any(k.startswith("blocks.0.") for k in changed)
        else:
            assert changed and all(k.startswith((last, "ln_f.", "text_head.", "image_head.")) for k in changed)
        assert not (tmp_path / method / ft.STATE_NAME).exists()


def test_resume_after_an_interruption_continues_identically(tmp_path, base):
    straight = run("heldout:blue square", tmp_path / "a", base)
    partial = ft.finetune(
        "heldout:blue square", tmp_path / "b", ft.FinetuneConfig(**FAST), base=base, examples=16, stop_at=6,
        progress=False, log=lambda _: None, device="cpu")
    assert not partial["finished"] and (tmp_path / "b" / ft.STATE_NAME).exists()
    resumed = ft.finetune("heldout:blue square", tmp_path / "b", ft.FinetuneConfig(**FAST), base=base, examples=16,
                          resume=True, progress=False, log=lambda _: None, device="cpu")
    assert resumed["finished"] and resumed["step"] == straight["step"] == 12
    from safetensors.torch import load_file
    a = load_file(tmp_path / "a" / "adapter.safetensors")
    b = load_file(tmp_path / "b" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight["history"][-1]["val_image_loss"] == resumed["history"][-1]["val_image_loss"]


def test_resume_with_other_settings_or_data_is_refused(tmp_path, base):
    ft.finetune("heldout:blue square", tmp_path, ft.FinetuneConfig(**FAST), base=base, examples=16, stop_at=6,
                progress=False, log=lambda _: None, device="cpu")
    with pytest.raises(ValueError, match="cannot resume.*rank"):
        ft.finetune("heldout:blue square", tmp_path, ft.FinetuneConfig(**{**FAST, "rank": 8}), base=base,
                    examples=16, resume=True, progress=False, log=lambda _: None, device="cpu")
    with pytest.raises(ValueError, match="cannot resume.*data"):
        ft.finetune("heldout:blue square", tmp_path, ft.FinetuneConfig(**FAST), base=base, examples=24,
                    resume=True, progress=False, log=lambda _: None, device="cpu")


def test_an_interrupted_run_leaves_its_state_and_no_half_written_output(tmp_path, base, monkeypatch):
    calls = {"n": 0}
    real = ft.validate

    def interrupt(*args, **kwargs):  # Ctrl-C at the first validation (a step boundary)
        calls["n"] += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(ft, "validate", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run("heldout:blue square", tmp_path, base)
    assert (tmp_path / ft.STATE_NAME).exists() and not (tmp_path / ft.ADAPTER_NAME).exists()
    monkeypatch.setattr(ft, "validate", real)
    resumed = ft.finetune("heldout:blue square", tmp_path, ft.FinetuneConfig(**FAST), base=base, examples=16,
                          resume=True, progress=False, log=lambda _: None, device="cpu")
    assert resumed["finished"] and (tmp_path / ft.ADAPTER_NAME).exists()


# --- loading adapters into a pipeline ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def adapter(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapter")
    ft.finetune("heldout:blue square", out, ft.FinetuneConfig(**{**FAST, "lr": 1e-2}), base=base, examples=16,
                progress=False, log=lambda _: None, device="cpu")
    return out / ft.ADAPTER_NAME


def test_an_adapter_loads_merged_or_as_modules_with_the_same_images(base, adapter):
    merged = TextToImage.from_pretrained(base, device="cpu", adapter=adapter)
    modules = TextToImage.from_pretrained(base, device="cpu", adapter=adapter.parent, merge_adapter=False)
    plain = TextToImage.from_pretrained(base, device="cpu")
    assert not lora.lora_modules(merged.transformer) and lora.lora_modules(modules.transformer)
    assert merged.provenance["adapter"] == str(adapter)
    text = merged.encode_prompts(["a blue square", "a small blue square on a white background"])
    image = torch.randint(0, TINY.transformer.image_vocab_size, (2, TINY.transformer.image_seq_len),
                          generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = merged.transformer(text, image).image_logits
        b = modules.transformer(text, image).image_logits
        c = plain.transformer(text, image).image_logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)  # the adapter changed the model
    for pipe in (merged, modules):  # sampling (prefill, KV-cached steps) runs through either form
        assert [image.size for image in pipe.generate("a blue square", n=2, seed=0)] == [(SIDE, SIDE)] * 2


def test_an_adapter_on_another_base_is_a_one_line_error_naming_both(tmp_path, adapter):
    other = tiny_pipeline(seed=1).save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError) as error:
        TextToImage.from_pretrained(other, device="cpu", adapter=adapter)
    message = str(error.value)
    theirs = json.loads(adapter.with_suffix(".json").read_text())["base"]["fingerprint"][:12]
    ours = lora.model_fingerprint(TextToImage.from_pretrained(other, device="cpu").transformer)[:12]
    assert "\n" not in message and str(adapter) in message and theirs in message and ours in message
    with pytest.raises(FileNotFoundError, match="no adapter at"):
        TextToImage.from_pretrained(other, device="cpu", adapter=tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="is not a LoRA adapter"):
        TextToImage.from_pretrained(other, device="cpu", adapter=other / "transformer.safetensors")


# --- the command line --------------------------------------------------------------------------------------

def cli(*args) -> list[str]:
    return ["finetune", "--data", "heldout:blue square", "--examples", "16", *args]


def test_cli_finetune_then_generate_with_the_adapter(base, tmp_path, capsys):
    from dalle_lessons.__main__ import main
    out = tmp_path / "run"
    assert main(cli("--out", str(out), "--from", str(base), "--steps", "4", "--rank", "2", "--seed", "1")) == 0
    printed = capsys.readouterr().out
    assert "adapter.safetensors" in printed and "after 4 steps" in printed and "--adapter" in printed
    assert json.loads((out / "adapter.json").read_text())["rank"] == 2
    assert main(["generate", "a blue square", "-n", "2", "--checkpoint", str(base), "--adapter", str(out),
                 "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").exists()
    assert main(cli("--out", str(tmp_path / "full"), "--from", str(base), "--steps", "2", "--method", "last-layers",
                    "--layers", "1")) == 0
    assert (tmp_path / "full" / "pipeline.json").exists()
    capsys.readouterr()
    assert main(["generate", "a blue square", "-n", "2", "--checkpoint", str(tmp_path / "full"),
                 "--adapter", str(out), "--out", str(tmp_path / "grid2.png")]) == 2  # trained on another base
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "was trained on base" in error and "this transformer's weights are" in error


@pytest.mark.parametrize("args, message", [
    (["--method", "everything"], "--method 'everything' is not a method: choose one of full, last-layers, lora"),
    (["--rank", "0"], "--rank 0: the LoRA rank must be at least 1"),
    (["--rank", "-2"], "--rank -2: the LoRA rank must be at least 1"),
    (["--method", "full", "--rank", "4"], "--rank applies to --method lora, not to --method full: drop it"),
    (["--layers", "2"], "--layers applies to --method last-layers, not to --method lora"),
    (["--method", "last-layers", "--layers", "0"], "--layers 0: train at least the last 1 block"),
    (["--steps", "0"], "--steps 0: fine-tuning needs at least 1 step"),
    (["--lr", "0"], "--lr 0.0: the learning rate must be a finite number > 0"),
    (["--lr", "nan"], "--lr nan"),
    (["--examples", "3"], "--examples 3: a built-in set needs at least 8 examples"),
    (["--seed", "-1"], "--seed -1: a training seed"),
    (["--method", "last-layers", "--layers", "9"], "--layers 9: the transformer has only 2 blocks"),
])
def test_cli_bad_flags_are_one_line_errors(base, tmp_path, capsys, args, message):
    from dalle_lessons.__main__ import main
    assert main(cli("--out", str(tmp_path / "run"), "--from", str(base), *args)) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and message in error, error
    assert not (tmp_path / "run" / "adapter.safetensors").exists()


@pytest.mark.parametrize("data, message", [
    ("heldout:red circle", "'red circle' is not a held-out pair"),
    ("nowhere/", "no folder nowhere"),
])
def test_cli_bad_data_is_a_one_line_error(base, tmp_path, capsys, data, message):
    from dalle_lessons.__main__ import main
    args = ["finetune", "--data", data, "--out", str(tmp_path / "run"), "--from", str(base)]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error, error


def test_cli_resume_without_a_state_and_a_missing_adapter_are_one_line_errors(base, tmp_path, capsys):
    from dalle_lessons.__main__ import main
    assert main(cli("--out", str(tmp_path / "run"), "--from", str(base), "--resume")) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["generate", "a blue square", "--checkpoint", str(base), "--adapter", str(tmp_path / "none"),
                 "--out", str(tmp_path / "g.png")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no adapter at" in error


def test_cli_finetune_runs_as_a_module(tmp_path):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "dalle_lessons", "finetune", "--data", str(tmp_path / "empty"),
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no folder" in out.stderr


# --- issue 17: the cases benchmarks/bad_inputs.py found ------------------------------------------------------

@pytest.mark.parametrize("changes, pattern", [
    ({"method": "full", "rank": 8}, "rank=8 applies to method 'lora', not to 'full': leave it out"),
    ({"method": "last-layers", "alpha": 2.0}, "alpha=2.0 applies to method 'lora'"),
    ({"method": "full", "targets": ("mlp.fc",)}, "targets=.* applies to method 'lora'"),
    ({"method": "lora", "last_layers": 2}, "last_layers=2 applies to method 'last-layers', not to 'lora'"),
])
def test_a_setting_of_another_method_is_refused_not_ignored(changes, pattern):
    with pytest.raises(ValueError, match=pattern):
        ft.FinetuneConfig(**changes)


def test_method_settings_default_per_method():
    assert (ft.FinetuneConfig().rank, ft.FinetuneConfig().targets) == (4, lora.TARGETS)
    assert ft.FinetuneConfig().last_layers is None
    assert ft.FinetuneConfig(method="last-layers").last_layers == 1
    assert ft.FinetuneConfig(method="last-layers").rank is None
    full = ft.FinetuneConfig(method="full")
    assert ft.read_config(dataclasses.asdict(full)) == full  # a saved state reads back (resume)


def test_a_config_that_is_not_a_finetune_config_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="config='lora' is a str: pass a FinetuneConfig"):
        ft.finetune("heldout:blue square", tmp_path, "lora", examples=8)


def test_data_that_is_a_file_and_many_missing_images_are_short_clear_errors(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file: give --data a folder"):
        ft.load_data(tmp_path / "f.txt", SIDE)
    folder = make_folder(tmp_path / "pics")
    for image in [*folder.glob("*.png"), *folder.glob("*.jpg")]:
        image.unlink()
    with pytest.raises(ValueError) as error:
        ft.load_folder(folder, SIDE)
    message = str(error.value)
    assert "names 10 image(s) not in" in message and "'img0.jpg' (line 1)" in message and "and 7 more" in message
    assert len(message.replace(str(folder), "DIR")) < 200


def test_adapter_of_the_wrong_type_or_empty_is_a_clear_error(base):
    with pytest.raises(TypeError, match="adapter=123 is not a path"):
        TextToImage.from_pretrained(base, device="cpu", adapter=123)
    with pytest.raises(ValueError, match=r"the adapter path is empty \(''\)"):
        TextToImage.from_pretrained(base, device="cpu", adapter="")


def test_a_pipeline_folder_as_adapter_says_it_holds_no_adapter(base):
    with pytest.raises(FileNotFoundError, match=r"holds no adapter.safetensors \(2 other .safetensors"):
        lora.adapter_path(base)


def test_an_adapter_for_another_config_is_one_short_line(tmp_path, adapter):
    from dalle_lessons.pipeline import TextToImage as T
    with pytest.raises(ValueError) as error:
        T.from_pretrained(device="cpu", adapter=adapter)  # the shipped cpu model: another config than tiny
    message = str(error.value)
    assert "\n" not in message and "another config" in message and "finetune --from" in message
    assert len(message.replace(str(adapter), "A").replace(str(adapter.parent.parent), "D")) < 250
