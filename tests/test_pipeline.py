"""TextToImage on the `tiny` preset with random weights: saving and loading, seeds, sizes, every error.

Nothing here needs the shipped transformer (data/dalle-cpu.safetensors): the default loading path
is tested against a scratch data folder (DALLE_LESSONS_DATA).
"""
import dataclasses
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer

from dalle_lessons import checkpoints, pipeline
from dalle_lessons.config import get_preset
from dalle_lessons.dvae import DiscreteVAE
from dalle_lessons.pipeline import MAX_IMAGES_PER_PROMPT, TextToImage
from dalle_lessons.tokenizer import CaptionTokenizer, default_path
from dalle_lessons.transformer import DalleTransformer

TINY = get_preset("tiny")  # 16x16 images, 4x4 = 16 image tokens, 16 text tokens
PROMPTS = ["a small red circle", "a big blue square to the left of a green triangle"]


def shipped_tokenizer(text_seq_len: int) -> CaptionTokenizer:
    """The course's trained BPE, padding to `text_seq_len` (the shipped file pads to the cpu preset's 24)."""
    return CaptionTokenizer(Tokenizer.from_file(str(default_path())), text_seq_len=text_seq_len)


def random_dvae(config=TINY.dvae, seed: int = 0) -> DiscreteVAE:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return DiscreteVAE(config)


def random_transformer(config=TINY.transformer, seed: int = 0) -> DalleTransformer:
    model = DalleTransformer(config, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # peaked logits, as a trained model has: every token depends on what came before
        model.text_emb.weight.mul_(100)
        model.image_head.weight.mul_(30)
    return model


@pytest.fixture(scope="module")
def pipe():
    return TextToImage(shipped_tokenizer(TINY.transformer.text_seq_len), random_dvae(), random_transformer())


def as_arrays(images):
    return [np.asarray(image) for image in images]


# --- saving, loading, seeds ---------------------------------------------------------------------------

def test_save_and_load_give_identical_images(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["dvae.json", "dvae.safetensors", "pipeline.json",
                                                        "tokenizer.json", "transformer.json", "transformer.safetensors"]
    loaded = TextToImage.from_pretrained(folder, device="cpu")
    before = pipe.generate(PROMPTS, n=2, seed=3, top_k=20)
    after = loaded.generate(PROMPTS, n=2, seed=3, top_k=20)
    assert len(after) == 4 and all(image.size == (16, 16) and image.mode == "RGB" for image in after)
    for a, b in zip(as_arrays(before), as_arrays(after)):
        np.testing.assert_array_equal(a, b)


def test_same_seed_same_images_and_no_seed_fresh_ones(pipe):
    a = pipe.generate_tokens(PROMPTS[0], n=3, seed=11)
    assert torch.equal(a, pipe.generate_tokens(PROMPTS[0], n=3, seed=11))
    assert not torch.equal(a, pipe.generate_tokens(PROMPTS[0], n=3, seed=12))
    assert not torch.equal(pipe.generate_tokens(PROMPTS[0], n=3), pipe.generate_tokens(PROMPTS[0], n=3))
    first, again = (as_arrays(pipe.generate(PROMPTS[0], n=2, seed=5)) for _ in range(2))
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)


def test_images_come_prompt_major(pipe):
    greedy = pipe.generate_tokens(PROMPTS, n=2, temperature=0)
    assert greedy.shape == (4, TINY.transformer.image_seq_len)
    assert torch.equal(greedy[0], greedy[1]) and torch.equal(greedy[2], greedy[3])
    assert torch.equal(greedy[2:3], pipe.generate_tokens(PROMPTS[1], temperature=0))
    assert not torch.equal(greedy[0], greedy[2])


def test_batches_larger_than_max_batch_are_sampled_in_chunks(pipe, monkeypatch):
    monkeypatch.setattr(pipeline, "MAX_BATCH", 2)
    tokens = pipe.generate_tokens(PROMPTS, n=3, seed=0)
    assert tokens.shape == (6, TINY.transformer.image_seq_len)


def test_default_sampling_is_read_when_generating(pipe, monkeypatch):
    monkeypatch.setitem(pipeline.DEFAULT_SAMPLING, "temperature", 0)
    assert torch.equal(pipe.generate_tokens(PROMPTS[0], seed=1), pipe.generate_tokens(PROMPTS[0], seed=2))


# --- sizes and pixels ---------------------------------------------------------------------------------

def test_sizes_upsample_nearest_neighbour(pipe):
    assert pipe.sizes() == ["16x16", "32x32", "64x64", "128x128", "256x256", "512x512"]
    native = np.asarray(pipe.generate(PROMPTS[0], seed=0)[0])
    big = np.asarray(pipe.generate(PROMPTS[0], seed=0, size="64x64")[0])
    assert big.shape == (64, 64, 3)
    np.testing.assert_array_equal(big, native.repeat(4, axis=0).repeat(4, axis=1))
    smooth = pipe.generate(PROMPTS[0], seed=0, size="64x64", resample="bicubic")[0]
    assert smooth.size == (64, 64)


def test_decode_gives_floats_in_the_unit_range(pipe):
    pixels = pipe.decode(pipe.generate_tokens(PROMPTS, seed=0))
    assert pixels.shape == (2, 3, 16, 16) and pixels.dtype == torch.float32
    assert 0 <= pixels.min() and pixels.max() <= 1


# --- completion and progressive output ----------------------------------------------------------------

def test_completion_keeps_the_top_rows_of_the_image(pipe):
    image = pipe.to_pil(pipe.decode(pipe.generate_tokens(PROMPTS[1], seed=9)))[0]
    given = pipe.encode_image(image)
    g = TINY.dvae.grid_size
    for rows in (0, 1, 3):
        tokens = pipe.complete_tokens(PROMPTS[0], image, rows=rows, n=3, seed=0)
        assert tokens.shape == (3, g * g)
        assert torch.equal(tokens[:, :rows * g], given[:rows * g].expand(3, -1))
    assert torch.equal(pipe.complete_tokens(PROMPTS[0], image, rows=g, seed=0)[0], given)
    tensor_image = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    assert torch.equal(pipe.encode_image(tensor_image), given)
    pictures = pipe.complete(PROMPTS[0], image, rows=2, n=2, seed=0, size="32x32")
    assert [p.size for p in pictures] == [(32, 32), (32, 32)]


def test_progressive_ends_with_the_finished_images(pipe):
    frames = list(pipe.progressive(PROMPTS[0], n=2, seed=4, every=5, top_p=0.9))
    assert len(frames) == 4  # after tokens 5, 10, 15 and 16
    assert all(frame.shape == (2, 3, 16, 16) for frame in frames)
    finished = pipe.decode(pipe.generate_tokens(PROMPTS[0], n=2, seed=4, top_p=0.9))
    assert torch.equal(frames[-1], finished)
    # after 5 of 16 tokens (row 0 and one cell of row 1) the bottom two token rows are still grey
    assert (frames[0][:, :, 8:, :] == 0.5).all()
    assert len(list(pipe.progressive(PROMPTS[0], seed=4))) == 16


# --- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt, error, message", [
    ("", ValueError, "empty prompt"),
    ("   ", ValueError, "empty prompt"),
    ([], ValueError, "no prompt given"),
    (["a red circle", ""], ValueError, "empty prompt"),
    ([3], TypeError, "prompt 1 must be a str, got int"),
])  # over-long prompts warn and truncate by default: tests/test_reliability.py
def test_bad_prompts_are_clear_errors(pipe, prompt, error, message):
    with pytest.raises(error, match=message):
        pipe.generate(prompt, seed=0)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(n=0), ValueError, "at least 1 image"),
    (dict(n=MAX_IMAGES_PER_PROMPT + 1), ValueError, f"too many: the most is {MAX_IMAGES_PER_PROMPT}"),
    (dict(n=2.0), TypeError, "n must be an int"),
    (dict(size="100x100"), ValueError, "unknown size '100x100': choose one of 16x16, 32x32, .*512x512"),
    (dict(size="8x8"), ValueError, "unknown size"),
    (dict(resample="fancy"), ValueError, "unknown resample 'fancy': choose one of nearest"),
    (dict(seed=-1), ValueError, "seed must be an int >= 0"),
    (dict(seed="0"), ValueError, "seed must be an int >= 0"),
    (dict(topk=5), TypeError, "unknown sampling setting.*topk.*choose from temperature, top_k"),
    (dict(temperature=-1), ValueError, r"temperature must be 0 \(greedy\) or a number from"),
    (dict(top_p=2), ValueError, "top_p must be in"),
])
def test_bad_settings_are_clear_errors(pipe, kwargs, error, message):
    with pytest.raises(error, match=message):
        pipe.generate(PROMPTS[0], **kwargs)


def test_bad_completion_and_progressive_arguments_are_clear_errors(pipe):
    image = Image.new("RGB", (16, 16))
    with pytest.raises(ValueError, match="rows must be an int from 0 to 4"):
        pipe.complete(PROMPTS[0], image, rows=5)
    with pytest.raises(TypeError, match="one prompt"):
        pipe.complete(PROMPTS, image, rows=1)
    with pytest.raises(ValueError, match="the image is 32x32 but the model reads 16x16: resize it"):
        pipe.complete(PROMPTS[0], Image.new("RGB", (32, 32)), rows=1)
    with pytest.raises(ValueError, match=r"\[3, 16, 16\] tensor"):
        pipe.encode_image(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="divide 8-bit pixel values by 255"):
        pipe.encode_image(torch.full((3, 16, 16), 255.0))
    with pytest.raises(ValueError, match=r"decode expects image token ids \[batch, 16\]"):
        pipe.decode(torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        pipe.progressive(PROMPTS[0], every=0)


def test_loading_from_a_bad_folder_is_a_clear_error(pipe, tmp_path):
    with pytest.raises(FileNotFoundError, match="no pipeline at .*save_pretrained"):
        TextToImage.from_pretrained(tmp_path / "nowhere", device="cpu")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file; from_pretrained expects the folder"):
        TextToImage.from_pretrained(tmp_path / "file.txt", device="cpu")
    with pytest.raises(FileNotFoundError, match="pipeline.json is missing.*save the pipeline there again"):
        TextToImage.from_pretrained(tmp_path, device="cpu")
    folder = pipe.save_pretrained(tmp_path / "saved")
    (folder / "transformer.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="transformer.safetensors is missing .*incomplete"):
        TextToImage.from_pretrained(folder, device="cpu")


def test_parts_that_do_not_fit_are_a_clear_error():
    tokenizer = shipped_tokenizer(TINY.transformer.text_seq_len)
    other_codebook = dataclasses.replace(TINY.dvae, codebook_size=32)
    with pytest.raises(ValueError, match="do not fit together \\(.*dVAE has 32 codes but the transformer predicts 64.*"
                                         "\\): use a tokenizer, dVAE and transformer made for the same preset") as caught:
        TextToImage(tokenizer, random_dvae(other_codebook), random_transformer())
    assert "\n" not in str(caught.value)  # one line, however many problems
    with pytest.raises(ValueError, match="pads captions to 24 tokens but the transformer reads 16"):
        TextToImage(shipped_tokenizer(24), random_dvae(), random_transformer())
    with pytest.raises(ValueError, match="the dVAE's token grid is 8x8 but the transformer samples 4x4"):
        TextToImage(tokenizer, random_dvae(get_preset("cpu").dvae), random_transformer())
    small_vocab = dataclasses.replace(TINY.transformer, text_vocab_size=300)
    with pytest.raises(ValueError, match=r"the tokenizer has \d+ text tokens but the transformer reads only 300"):
        TextToImage(tokenizer, random_dvae(), random_transformer(small_vocab))


# --- the shipped default (data/), against a scratch copy of the folder --------------------------------

@pytest.fixture
def scratch_data(tmp_path, monkeypatch):
    """A data folder with the shipped tokenizer and dVAE, and no transformer yet."""
    real = default_path().parent
    for name in ("tokenizer.json", "dvae-cpu.safetensors", "dvae-cpu.json"):
        shutil.copy(real / name, tmp_path / name)
    monkeypatch.setenv("DALLE_LESSONS_DATA", str(tmp_path))
    return tmp_path


def test_default_pipeline_without_its_transformer_says_how_to_train_it(scratch_data):
    with pytest.raises(FileNotFoundError, match="dalle-cpu.safetensors is missing.*"
                                                "python -m dalle_lessons train dalle --preset cpu"):
        TextToImage.from_pretrained(device="cpu")


def test_default_pipeline_loads_the_cpu_parts_and_checks_they_fit(scratch_data):
    small = dataclasses.replace(get_preset("cpu").transformer, d_model=32, n_layers=1, n_heads=2)
    checkpoints.save(DalleTransformer(small), small, scratch_data / "dalle-cpu.safetensors", extra={"note": "test"})
    pipe = TextToImage.from_pretrained(device="cpu")
    assert pipe.native_size == 32 and pipe.grid == 8 and pipe.provenance["transformer"] == {"note": "test"}
    assert [image.size for image in pipe.generate("a red circle", n=2, seed=0, size="64x64")] == [(64, 64)] * 2
    checkpoints.save(random_transformer(), TINY.transformer, scratch_data / "dalle-cpu.safetensors")
    with pytest.raises(ValueError, match="do not fit together"):
        TextToImage.from_pretrained(device="cpu")
