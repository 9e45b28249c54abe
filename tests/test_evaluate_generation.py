"""`evaluate_generation` and `generation_sweep` on a `tiny` pipeline with random weights.

The numbers of a random model mean nothing; what is tested is the caption sets (fixed, and split by
color-shape pair as the report claims), the structure of the report and that its numbers are
percentages and counts in range. The shipped transformer is never needed.
"""
import pytest
import torch
from tokenizers import Tokenizer

from dalle_lessons.config import get_preset
from dalle_lessons.dvae import DiscreteVAE
from dalle_lessons.evaluate import (ATTRIBUTES, GENERATION_SETS, evaluate_generation, generation_caption_sets,
                                    generation_sweep)
from dalle_lessons.pipeline import DEFAULT_SAMPLING, TextToImage
from dalle_lessons.shapes import heldout_pairs
from dalle_lessons.tokenizer import CaptionTokenizer, default_path
from dalle_lessons.transformer import DalleTransformer


def tiny_pipeline(seed: int = 0) -> TextToImage:
    """The `tiny` preset's parts with random weights, and the course's BPE padded to 16 tokens."""
    tiny = get_preset("tiny")
    tokenizer = CaptionTokenizer(Tokenizer.from_file(str(default_path())), text_seq_len=tiny.transformer.text_seq_len)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        dvae = DiscreteVAE(tiny.dvae)
    transformer = DalleTransformer(tiny.transformer, generator=torch.Generator().manual_seed(seed))
    return TextToImage(tokenizer, dvae.to("cpu"), transformer.to("cpu"))


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def pairs(claim):
    return {(o.color, o.shape) for o in claim.objects}


def test_caption_sets_are_fixed_and_split_by_color_shape_pair():
    sets = generation_caption_sets(40)
    assert sets == generation_caption_sets(40)  # the same captions on every call
    assert list(sets) == list(GENERATION_SETS) == ["a", "b", "c"]
    assert generation_caption_sets(5)["c"].captions == sets["c"].captions[:5]  # fewer = a prefix
    held = heldout_pairs()
    assert all(len(c.objects) == 1 and not pairs(c) & held for c in sets["a"].claims)
    assert all(len(c.objects) == 1 and pairs(c) <= held for c in sets["b"].claims)
    assert len({p for c in sets["b"].claims for p in pairs(c)}) == len(held)  # every held-out pair is asked for
    assert all(len(c.objects) == 2 and c.relation and not pairs(c) & held for c in sets["c"].claims)
    assert all(len(s.captions) == len(s.claims) == 40 for s in sets.values())


def test_evaluate_generation_reports_percentages_per_set(pipe):
    report = evaluate_generation(pipe, n_captions=3, samples=2, seed=0, sampling={"top_k": 8})
    assert report["sampling"] == {**DEFAULT_SAMPLING, "top_k": 8}
    assert [row["set"] for row in report["rows"]] == ["a", "b", "c"]
    for row in report["rows"]:
        assert row["captions"] == 3 and row["images"] == 6
        assert 0 <= row["all_correct"] <= 100
        for name in ATTRIBUTES:
            assert row[name] is None or 0 <= row[name] <= 100
        assert row["count"] is not None and row["shape"] is not None and row["color"] is not None
        assert 1 <= row["distinct_readings"] <= row["distinct_images"] <= 2
    assert report["rows"][0]["relation"] is None and report["rows"][2]["relation"] is not None
    assert evaluate_generation(pipe, n_captions=3, samples=2, seed=0, sampling={"top_k": 8}) == report


def test_greedy_samples_are_identical(pipe):
    report = evaluate_generation(pipe, n_captions=2, samples=3, sampling={"temperature": 0.0})
    assert all(row["distinct_images"] == 1 for row in report["rows"])


def test_generation_sweep_has_one_row_per_setting(pipe):
    sweep = generation_sweep(pipe, n_captions=2, samples=1, guidance_scales=(1, 3),
                             variations={"top_k 4": {"top_k": 4}, "defaults": {}})
    assert [row["guidance_scale"] for row in sweep["guidance"]] == [1.0, 3.0]
    assert [row["variation"] for row in sweep["sampling"]] == ["top_k 4", "defaults"]
    assert sweep["sampling"][0]["top_k"] == 4 and sweep["sampling"][1]["default"]
    for row in sweep["guidance"] + sweep["sampling"]:
        assert all(0 <= row[name] <= 100 for name in "abc")


def test_sweep_rows_match_evaluate_generation_and_reuse_a_baseline(pipe):
    options = dict(n_captions=2, samples=2, seed=1, sampling={"top_k": 8})
    report = evaluate_generation(pipe, **options)
    expected = {row["set"]: row["all_correct"] for row in report["rows"]}
    for baseline in (None, report):
        sweep = generation_sweep(pipe, **options, guidance_scales=(1,), variations={}, baseline=baseline)
        assert {name: sweep["guidance"][0][name] for name in "abc"} == expected
    with pytest.raises(ValueError, match="baseline"):
        generation_sweep(pipe, **{**options, "seed": 2}, guidance_scales=(1,), variations={}, baseline=report)


def test_bad_settings_are_clear_errors(pipe):
    with pytest.raises(ValueError, match="unknown sampling setting"):
        evaluate_generation(pipe, n_captions=1, samples=1, sampling={"temprature": 0.5})
    with pytest.raises(ValueError, match="samples must be at least 1"):
        evaluate_generation(pipe, n_captions=1, samples=0)
    with pytest.raises(ValueError, match="n_captions must be at least 1"):
        evaluate_generation(pipe, n_captions=0)


def test_set_b_is_broken_down_per_held_out_pair(pipe):
    report = evaluate_generation(pipe, n_captions=8, samples=2, seed=0)
    rows = {row["set"]: row for row in report["rows"]}
    assert "pairs" not in rows["a"] and "pairs" not in rows["c"]
    pairs = rows["b"]["pairs"]
    asked = {(c.objects[0].color, c.objects[0].shape) for c in generation_caption_sets(8)["b"].claims}
    assert set(pairs) == {f"{color} {shape}" for color, shape in asked}
    assert sum(p["images"] for p in pairs.values()) == rows["b"]["images"]
    for pair in pairs.values():
        assert sum(pair["drawn"].values()) == pair["images"] and 0 <= pair["all_correct"] <= 100
    overall = sum(p["all_correct"] * p["images"] for p in pairs.values()) / rows["b"]["images"]
    assert abs(overall - rows["b"]["all_correct"]) < 1e-9


def test_confusion_matrices_count_every_image_once_per_attribute(pipe):
    report = evaluate_generation(pipe, n_captions=6, samples=2, seed=0)
    for row in report["rows"]:
        confusion = row["confusion"]
        assert sum(map(sum, confusion["count"]["counts"])) == row["images"]  # every image, once
        if row["set"] in "ab":  # one-object captions: color and shape for every image
            for name in ("color", "shape"):
                counts = confusion[name]["counts"]
                assert len(counts) == len(confusion[name]["labels"]) and all(len(r) == len(counts) + 1 for r in counts)
                assert sum(map(sum, counts)) == row["images"]
        else:  # two objects and a relation: the relation drawn between the two stated objects, every image once
            assert set(confusion) == {"count", "relation"}
            assert sum(map(sum, confusion["relation"]["counts"])) == row["images"]
            relation_hits = sum(confusion["relation"]["counts"][i][i] for i in range(4))
            assert relation_hits == round(row["relation"] * row["images"] / 100)  # agrees with relation accuracy
        diagonal = sum(confusion["count"]["counts"][i][i] for i in range(2))
        assert diagonal == round(row["count"] * row["images"] / 100)  # agrees with the count accuracy
