import json
import random

import numpy as np
import pytest
import torch

from dalle_lessons import shapes
from dalle_lessons.paths import data_dir
from dalle_lessons.shapes import (COLORS, SHAPES, Claim, ObjectClaim, Scene, ShapeObject, ShapesDataset,
                                  caption_scene, parse_caption, render)


def scene(*objects, background="black"):
    return Scene(tuple(ShapeObject(*o) for o in objects), background)


def test_world_has_the_required_variety():
    assert len(shapes.SHAPES) >= 5 and len(shapes.COLORS) >= 7 and len(shapes.SIZES) == 2
    assert len(shapes.POSITION_NAMES) == 9 and len(shapes.BACKGROUNDS) >= 2


def test_colors_are_distinct_from_each_other_and_every_background():
    palette = {**{f"color {k}": v for k, v in COLORS.items()}, **{f"bg {k}": v for k, v in shapes.BACKGROUNDS.items()}}
    values = np.array(list(palette.values()), dtype=float)
    distances = np.sqrt(((values[:, None] - values[None]) ** 2).sum(-1))
    np.fill_diagonal(distances, np.inf)
    assert distances.min() > 75  # out of 441 for black vs white


def test_smallest_object_is_at_least_six_pixels_across_at_32px():
    assert shapes.SIZE_FRACTION["small"] * 32 >= 6
    image = np.asarray(render(scene(("diamond", "red", "small", 1, 1)), 32)).astype(int)
    columns = np.nonzero((np.abs(image - 15).sum(-1) > 200).any(0))[0]
    assert columns.max() - columns.min() + 1 >= 6


def test_render_is_deterministic_and_sized_by_preset():
    s = scene(("circle", "red", "large", 0, 0), ("cross", "blue", "small", 2, 2), background="white")
    a, b = np.asarray(render(s, 32)), np.asarray(render(s, 32))
    assert a.shape == (32, 32, 3) and (a == b).all()
    assert np.asarray(render(s, 64)).shape == (64, 64, 3)


def test_object_is_drawn_in_its_cell():
    image = np.asarray(render(scene(("square", "green", "large", 2, 0)), 32)).astype(int)
    ys, xs = np.nonzero(np.abs(image - np.array(COLORS["green"])).sum(-1) < 30)
    assert ys.min() >= 21 and xs.max() <= 11


@pytest.mark.parametrize("bad, message", [
    (lambda: ShapeObject("hexagon", "red", "small", 0, 0), r"unknown shape 'hexagon': valid shapes are circle"),
    (lambda: ShapeObject("circle", "pink", "small", 0, 0), r"unknown color 'pink': valid colors are red"),
    (lambda: ShapeObject("circle", "red", "medium", 0, 0), r"unknown size 'medium'"),
    (lambda: ShapeObject("circle", "red", "small", 3, 0), r"off the grid"),
    (lambda: scene(("circle", "red", "small", 0, 0), background="grey"), r"unknown background 'grey'"),
    (lambda: scene(("circle", "red", "small", 0, 0), ("square", "blue", "small", 0, 0)), r"share a cell"),
    (lambda: scene(("circle", "red", "small", 0, 0), ("square", "red", "small", 0, 1)), r"different colors"),
    (lambda: render(scene(("circle", "red", "small", 0, 0)), 8), r"too small"),
    (lambda: ShapesDataset("training", 5), r"unknown split 'training': valid splits are train, val, test, heldout"),
    (lambda: parse_caption("   "), r"caption is empty"),
    (lambda: parse_caption("a lovely afternoon"), r"no object found"),
    (lambda: shapes.to_image(torch.zeros(1, 32, 32)), r"shape \[3, H, W\]"),
])
def test_bad_input_names_the_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        bad()


def test_captions_use_several_phrasings_and_synonyms():
    s = scene(("circle", "red", "large", 0, 0))
    captions = {caption_scene(s, seed)[0] for seed in range(200)}
    assert len(captions) > 40
    assert any(c.startswith("top") or c.startswith("upper") for c in captions)
    assert any("crimson" in c or "scarlet" in c for c in captions)


def test_parse_caption_recovers_every_generated_claim():
    rng = random.Random(0)
    for _ in range(3000):
        s = shapes.random_scene(rng)
        text, claim = caption_scene(s, rng)
        assert parse_caption(text) == claim, text


def test_claims_are_true_of_their_scene():
    rng = random.Random(1)
    for _ in range(500):
        s = shapes.random_scene(rng, 2)
        _, claim = caption_scene(s, rng)
        a = next(o for o in s.objects if o.color == claim.objects[0].color)
        b = next(o for o in s.objects if o.color == claim.objects[1].color)
        assert shapes.relation_holds((a.row, a.col), claim.relation, (b.row, b.col))


def test_parse_free_form_prompts():
    assert parse_caption("A big RED circle above a small blue square") == Claim(
        (ObjectClaim("circle", "red", "large"), ObjectClaim("square", "blue", "small")), "above")
    assert parse_caption("top left corner: a tiny lime dot") == Claim(
        (ObjectClaim("circle", "green", "small", 0, 0),))
    for text in ("a large red circle at the top-left", "top-left: a large red circle",
                 "a large red circle in the top-left corner"):
        assert parse_caption(text) == Claim((ObjectClaim("circle", "red", "large", 0, 0),)), text


def test_split_definition_is_committed_and_reproducible():
    committed = json.loads((data_dir() / "splits.json").read_text())
    assert committed == shapes.make_split_definition(committed["seed"])
    pairs = {tuple(p) for p in committed["heldout_pairs"]}
    assert 3 <= len(pairs) <= 4  # about 10 % of the 35 color-shape pairs
    assert len({c for c, _ in pairs}) == len(pairs) and len({s for _, s in pairs}) == len(pairs)


def test_splits_are_disjoint_and_train_never_sees_heldout_pairs():
    heldout = shapes.heldout_pairs()
    rng = random.Random(2)
    counts = {name: 0 for name in shapes.SPLITS}
    for _ in range(4000):
        s = shapes.random_scene(rng)
        counts[shapes.split_of(s)] += 1
    assert counts["train"] > 6 * counts["val"] and counts["val"] > 0 and counts["test"] > 0 and counts["heldout"] > 0
    train = ShapesDataset("train", 400, render_images=False)
    assert not any((o.color, o.shape) in heldout for s in train.scenes for o in s.objects)
    test = ShapesDataset("test", 200, render_images=False)
    assert not {s.key() for s in train.scenes} & {s.key() for s in test.scenes}
    assert all(any((o.color, o.shape) in heldout for o in s.objects)
               for s in ShapesDataset("heldout", 50, render_images=False).scenes)


def test_dataset_items_are_deterministic_tensors():
    a, b = ShapesDataset("val", 8, seed=3), ShapesDataset("val", 8, seed=3)
    image, caption, s = a[5]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert torch.equal(image, b[5][0]) and caption == b[5][1] and s == b[5][2]
    assert ShapesDataset("val", 8, seed=4).scenes != a.scenes
    with pytest.raises(IndexError):
        a[8]


def test_dataset_cache_matches_fresh_render(tmp_path, monkeypatch):
    monkeypatch.setattr(shapes, "cache_dir", lambda: tmp_path)
    cached = ShapesDataset("test", 6, preset="tiny", n_objects=2, cache=True)
    assert list(tmp_path.glob("*.npy"))
    again = ShapesDataset("test", 6, preset="tiny", n_objects=2, cache=True)
    fresh = ShapesDataset("test", 6, preset="tiny", n_objects=2)
    for i in range(6):
        assert torch.equal(cached[i][0], fresh[i][0]) and torch.equal(again[i][0], fresh[i][0])


def test_collate_batches_images_and_keeps_captions():
    data = ShapesDataset("train", 4)
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=shapes.collate)
    images, captions, scenes = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and len(captions) == 4 and len(scenes) == 4


def test_caption_corpus_is_deterministic():
    assert shapes.caption_corpus(50) == shapes.caption_corpus(50)
    assert len(set(shapes.caption_corpus(200))) > 150


def test_rendered_and_cached_images_have_the_same_layout(tmp_path, monkeypatch):
    """Same bytes *and* same memory layout, or a model trained on either would round differently."""
    monkeypatch.setattr(shapes, "cache_dir", lambda: tmp_path)
    rendered = ShapesDataset("train", 5, preset="tiny", cache=True).images_uint8()
    loaded = ShapesDataset("train", 5, preset="tiny", cache=True).images_uint8()
    assert torch.equal(rendered, loaded) and rendered.is_contiguous() and loaded.is_contiguous()
