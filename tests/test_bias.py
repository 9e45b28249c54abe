"""The skewed world (shapes.Skew), the bias metrics and the remedies of lesson 09 (dalle_lessons/bias.py)."""
from __future__ import annotations

import re
from collections import Counter

import pytest

from dalle_lessons import bias, judge
from dalle_lessons.shapes import (COLOR_WORDS, COLORS, SHAPES, Claim, ObjectClaim, ShapesDataset, Skew,
                                  parse_caption, parse_skew, sample_scene)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_skew_reads_back_from_its_spec_and_defaults_to_the_lessons_world():
    skew = parse_skew(bias.DEFAULT_SKEW)
    assert skew == Skew("triangle", "red", 0.8, 0.5)
    assert parse_skew(skew.spec()) == skew
    mismatch = parse_skew("shape=triangle,color=red,rate=0.8,omit=0.3,omit_pair=0.7")
    assert parse_skew(mismatch.spec()) == mismatch


@pytest.mark.parametrize("spec, message", [
    ("", r"empty"),
    ("shape=triangle,hue=red", r"unknown skew setting 'hue=red'.*shape, color, rate, omit, omit_pair"),
    ("triangle", r"unknown skew setting 'triangle'.*name=value"),
    ("shape=hexagon", r"unknown skew shape 'hexagon': choose one of circle"),
    ("color=pink", r"unknown skew color 'pink': choose one of red"),
    ("rate=1.5", r"rate=1.5: a probability must be a number from 0 to 1"),
    ("omit=-0.1", r"omit=-0.1: a probability"),
    ("omit_pair=2", r"omit_pair=2.0: a probability"),
    ("rate=lots", r"rate='lots' is not a number"),
    ("rate=0.5,rate=0.6", r"given twice"),
    ("shape=triangle,color=orange", r"'orange triangle' is a held-out pair.*another color"),
])
def test_bad_skew_specs_are_one_line_errors(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_skew(spec)
    assert "\n" not in str(info.value)


def test_the_default_world_is_unchanged_by_the_skew_option():
    """No skew: the same scenes and captions as always (the shipped models were trained on them)."""
    plain = ShapesDataset("train", 50, render_images=False)
    assert [plain.item_claim(i) for i in range(50)] == [ShapesDataset("train", 50, render_images=False).item_claim(i)
                                                        for i in range(50)]
    assert all(o.color is not None for i in range(50) for o in plain.item_claim(i)[1].objects)


def test_a_skewed_world_draws_the_skewed_color_at_its_rate_and_omits_colors_at_its_chance():
    data = ShapesDataset("train", 3000, n_objects=1, render_images=False, skew=parse_skew(bias.DEFAULT_SKEW))
    triangles = [s.objects[0].color for s in data.scenes if s.objects[0].shape == "triangle"]
    circles = Counter(s.objects[0].color for s in data.scenes if s.objects[0].shape == "circle")
    # 0.8 of triangles are red, the rest spread over six colors, one of them (orange) held out: 0.8 / 0.967
    assert 0.79 < triangles.count("red") / len(triangles) < 0.87
    assert max(circles.values()) / sum(circles.values()) < 0.22  # other shapes stay balanced (1/7 each)
    unsaid = [data.item_claim(i)[1].objects[0].color is None for i in range(len(data))]
    assert 0.45 < sum(unsaid) / len(unsaid) < 0.55
    for i in range(40):  # a colorless caption names no color, and the judge's parser reads it back
        text, claim = data.item_claim(i)
        if claim.objects[0].color is None:
            assert not any(re.search(rf"\b{w}\b", text) for words in COLOR_WORDS.values() for w in words), text
            assert parse_caption(text, require_color=False) == claim, text


def test_the_mismatch_variant_omits_the_skewed_pairs_color_more_often():
    pairs = bias.world_pairs(bias.WORLDS["mismatch"])
    unsaid = bias.color_rates(pairs["color_unsaid"])["triangle"]["red"]
    overall = bias.color_rates(pairs["all"])["triangle"]["red"]
    assert unsaid > overall + 0.05  # captions that omit the color are more skewed than the world


def test_a_split_the_skew_cannot_reach_is_a_clear_error(monkeypatch):
    from dalle_lessons import shapes
    monkeypatch.setattr(shapes, "MAX_DRAWS", 3)
    monkeypatch.setattr(shapes, "split_of", lambda scene: "train")
    with pytest.raises(ValueError, match=r"no scene of the test split in 3 draws of the skewed world.*lower its rate"):
        sample_scene("test", 0, skew=Skew())


def test_rebalancing_evens_out_each_shapes_colors():
    data = bias.skewed_scenes(parse_skew(bias.DEFAULT_SKEW), 4000)
    chosen = bias.rebalanced_indices(data, 4000)
    triangles = Counter(data.scenes[i].objects[0].color for i in chosen if data.scenes[i].objects[0].shape == "triangle")
    shares = [n / sum(triangles.values()) for n in triangles.values()]
    assert len(triangles) == 6 and max(shares) < 0.25 and min(shares) > 0.1  # 1/6 each (orange is held out)
    assert bias.rebalanced_indices(data, 100, seed=3) == bias.rebalanced_indices(data, 100, seed=3)


def test_the_built_in_worlds_load_as_fine_tuning_data():
    from dalle_lessons.finetune import load_data
    data = load_data("skewed:" + bias.DEFAULT_SKEW, 32, examples=16)
    assert tuple(data.images.shape) == (16, 3, 32, 32) and len(data.captions) == 16
    again = load_data("rebalanced:" + bias.DEFAULT_SKEW, 32, examples=16)
    assert again.digest() == load_data("rebalanced:" + bias.DEFAULT_SKEW, 32, examples=16).digest()
    with pytest.raises(ValueError, match="unknown skew setting"):
        load_data("skewed:shape=triangle,tint=red", 32, examples=16)


def test_the_judge_scores_a_colorless_claim_on_shape_alone():
    claim = Claim((ObjectClaim("triangle", None),))
    reading = judge.Reading("black", (judge.DetectedObject("triangle", "blue", "large", 1, 1, 50.0, 0.1),))
    score = judge.score_reading(reading, claim)
    assert score.all_correct and "color" not in score.attributes


def test_state_color_inserts_the_color_and_fixes_the_article():
    assert bias.state_color("a triangle at the top", "orange") == "an orange triangle at the top"
    assert bias.state_color("there is a big wedge", "red") == "there is a big red wedge"
    assert bias.state_color("top: a plus sign", "blue") == "top: a blue plus sign"
    with pytest.raises(ValueError, match="no shape word"):
        bias.state_color("something at the top", "red")
    for caption in bias.colorless_prompts("cross", 20):
        assert parse_caption(bias.state_color(caption, "green")).objects[0].color == "green", caption


def test_the_metrics_follow_their_papers_definitions():
    uniform = {c: 1 / 7 for c in COLORS}
    assert bias.mad_from_uniform(uniform) == pytest.approx(0)
    assert bias.mad_from_uniform({c: float(c == "red") for c in COLORS}) == pytest.approx(2 * 6 / 49)
    # Zhao et al.: only pairs biased in training count; generated 0.9 where training had 0.8 -> +0.1
    train = {"triangle": {c: (0.8 if c == "red" else 0.2 / 6) for c in COLORS}, "circle": uniform}
    generated = {"triangle": {c: (0.9 if c == "red" else 0.1 / 6) for c in COLORS}, "circle": uniform}
    assert bias.zhao_amplification(train, generated) == pytest.approx(0.1)
    # Wang & Russakovsky: copying the training distribution exactly amplifies nothing
    pairs = [("triangle", "red")] * 8 + [("triangle", "blue")] * 2 + [("circle", "red")] * 2 + [("circle", "blue")] * 8
    rates = bias.color_rates(pairs)
    assert bias.directional_amplification(pairs, rates) == pytest.approx(0)
    stronger = {**rates, "triangle": {c: float(c == "red") for c in COLORS}}
    assert bias.directional_amplification(pairs, stronger) > 0
    weaker = {**rates, "triangle": {c: {"red": 0.6, "blue": 0.4}.get(c, 0.0) for c in COLORS}}
    assert bias.directional_amplification(pairs, weaker) < 0


def test_bias_statistics_and_their_bootstrap_intervals():
    skew = parse_skew(bias.DEFAULT_SKEW)
    train = [("triangle", "red")] * 8 + [("triangle", "blue")] * 2 + [(s, c) for s in SHAPES if s != "triangle"
                                                                      for c in COLORS]
    groups = {s: [[c, c, None] for c in COLORS] for s in SHAPES if s != "triangle"}
    groups["triangle"] = [["red", "red", "red"]] * 9 + [["blue", "blue", "blue"]]
    leak = [["red", "blue"], ["blue", "blue"]]
    stats = bias.bias_statistics(groups, leak, skew, train)
    assert stats["generated_rate"] == pytest.approx(0.9) and stats["amplification"] == pytest.approx(0.1)
    assert stats["leakage"] == pytest.approx(0.25)
    intervals = bias.bootstrap(groups, leak, skew, train, resamples=200)
    low, high = intervals["generated_rate"]
    assert low <= 0.9 <= high and high - low > 0  # prompts resampled whole: a real interval
    assert intervals == bias.bootstrap(groups, leak, skew, train, resamples=200)


# --- measuring, on a tiny random pipeline, and the CLI ------------------------------------------------

def test_measure_bias_reports_every_figure_with_intervals_and_repeats():
    from test_evaluate_generation import tiny_pipeline
    skew = parse_skew(bias.DEFAULT_SKEW)
    pairs = bias.world_pairs(bias.WORLDS["skewed"], examples=64)["color_unsaid"]
    kwargs = dict(captions=2, samples=2, seeds=(0,), resamples=50)
    report = bias.measure_bias(tiny_pipeline(), skew, pairs, **kwargs)
    # colorless prompts of 5 shapes, and one leakage prompt per other color triangles take in training (not
    # red, the skewed one; not orange, held out)
    assert report["images"] == 5 * 2 * 2 + 5 * 1 * 2
    drawn = sum(sum(colors.values()) for colors in report["generated_colors"].values())
    assert drawn == round(report["readable"] / 100 * 20)
    assert report == bias.measure_bias(tiny_pipeline(), skew, pairs, **kwargs)  # seeded: the same numbers
    rewritten = bias.measure_bias(tiny_pipeline(), skew, pairs, **kwargs, rewrite=True)
    assert rewritten["sampling"] == report["sampling"]


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "somewhere"], "drop --checkpoint"),
    (["--temperature", "0.5"], "runs its own sampling sweep"),
    (["--captions", "0"], "--captions 0: measure at least 1"),
    (["--samples", "0"], "samples must be at least 1"),
    (["--seed", "-1"], "-1"),
])
def test_the_bias_cli_refuses_bad_options_in_one_line(argv, message, capsys):
    from dalle_lessons.__main__ import main
    assert main(["evaluate", "bias", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_a_missing_bias_adapter_is_named_with_the_command_that_rebuilds_it(tmp_path, monkeypatch, capsys):
    from dalle_lessons.__main__ import main
    monkeypatch.setattr(bias, "adapter_file", lambda world: tmp_path / f"bias-{world}.safetensors")
    assert main(["evaluate", "bias"]) == 2
    err = capsys.readouterr().err
    assert "bias-skewed.safetensors is missing" in err and "finetune --data \"skewed:" in err and err.count("\n") == 1
