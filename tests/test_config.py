import pytest

from dalle_lessons.config import PRESETS, get_preset


def test_presets_exist_with_consistent_sizes():
    assert set(PRESETS) == {"tiny", "cpu", "colab", "paper"}
    for preset in PRESETS.values():
        assert preset.dvae.image_size == preset.image_size
        assert preset.transformer.image_grid == preset.dvae.grid_size
        assert preset.transformer.image_vocab_size == preset.dvae.codebook_size
        assert preset.transformer.d_model % preset.transformer.n_heads == 0


def test_course_presets_match_the_design():
    cpu, colab = get_preset("cpu"), get_preset("colab")
    assert (cpu.image_size, cpu.transformer.image_seq_len, cpu.dvae.codebook_size) == (32, 64, 512)
    assert (colab.image_size, colab.transformer.image_seq_len) == (64, 256)


def test_paper_preset_is_the_published_configuration():
    paper = get_preset("paper").transformer
    assert (paper.n_layers, paper.n_heads, paper.head_dim, paper.d_model) == (64, 62, 64, 3968)
    assert (paper.text_seq_len, paper.text_vocab_size, paper.image_seq_len, paper.image_vocab_size) == (256, 16384, 1024, 8192)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown preset 'gpu'.*'tiny', 'cpu', 'colab', 'paper'"):
        get_preset("gpu")


def test_get_preset_passes_a_preset_through():
    assert get_preset(PRESETS["cpu"]) is PRESETS["cpu"]
