import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from dalle_lessons import judge, shapes
from dalle_lessons.evaluate import Accuracy, degrade, format_table
from dalle_lessons.shapes import Scene, ShapeObject, render, to_tensor


def scene(*objects, background="black"):
    return Scene(tuple(ShapeObject(*o) for o in objects), background)


RED_CIRCLE = scene(("circle", "red", "large", 0, 0))


def test_reads_every_attribute_of_random_scenes_at_both_course_sizes():
    rng = random.Random(0)
    for image_size in (32, 64):
        for _ in range(60):
            s = shapes.random_scene(rng)
            assert judge.scene_matches(judge.read_image(render(s, image_size)), s), s


def test_accepts_pil_tensor_and_channels_last():
    image = render(RED_CIRCLE, 32)
    tensor = to_tensor(image)
    readings = {judge.read_image(x) for x in (image, tensor, tensor.permute(1, 2, 0))}
    assert len(readings) == 1


def test_scores_right_caption_and_rejects_wrong_ones():
    s = scene(("triangle", "blue", "small", 0, 2), ("square", "yellow", "large", 2, 0), background="white")
    image = render(s, 32)
    assert judge.score(image, "a small blue triangle above a big yellow square").all_correct
    assert judge.score(image, "a blue triangle to the right of a yellow box on a light background").all_correct
    for wrong, attribute in [
        ("a small blue circle above a big yellow square", "shape"),
        ("a small green triangle above a big yellow square", "color"),
        ("a large blue triangle above a big yellow square", "size"),
        ("a small blue triangle below a big yellow square", "relation"),
        ("a blue triangle on a dark background", "count"),
        ("a blue triangle left of a yellow square on a dark background", "background"),
    ]:
        result = judge.score(image, wrong)
        assert not result.all_correct and not result.attributes[attribute], (wrong, result.attributes)


def test_extra_object_is_wrong_even_when_the_stated_one_is_right():
    two = render(scene(("circle", "red", "large", 0, 0), ("cross", "green", "small", 2, 2)), 32)
    result = judge.score(two, "a large red circle at the top left")
    assert not result.all_correct and not result.attributes["count"]
    assert result.attributes["shape"] and result.attributes["position"]


def test_empty_image_fails_every_caption():
    blank = Image.new("RGB", (32, 32), shapes.BACKGROUNDS["white"])
    result = judge.score(blank, "a red circle")
    assert not result.all_correct and result.reading.objects == ()


def test_blob_that_is_no_shape_reads_as_unknown():
    image = Image.new("RGB", (32, 32), shapes.BACKGROUNDS["black"])
    ImageDraw.Draw(image).rectangle([4, 12, 27, 14], fill=shapes.COLORS["red"])  # a long thin bar
    (obj,) = judge.read_image(image).objects
    assert obj.shape is None
    assert not judge.score(image, "a red square").all_correct


def test_specks_are_ignored():
    image = np.asarray(render(RED_CIRCLE, 32)).copy()
    image[30, 30] = shapes.COLORS["blue"]
    assert len(judge.read_image(Image.fromarray(image)).objects) == 1


def test_robust_to_noise_and_blur():
    rng = random.Random(1)
    scenes = [shapes.random_scene(rng) for _ in range(40)]
    images = torch.stack([to_tensor(render(s, 32)) for s in scenes])
    for condition in (dict(noise=0.05), dict(blur=0.7), dict(noise=0.05, blur=0.7)):
        degraded = degrade(images, seed=3, **condition)
        hits = sum(judge.scene_matches(judge.read_image(x), s) for x, s in zip(degraded, scenes))
        assert hits >= 39, condition


def test_shifted_object_still_reads_as_its_shape():
    """A generator will not put shapes exactly on the cell centers: the judge must not depend on it."""
    for shape in shapes.SHAPES:
        image = Image.new("RGB", (128, 128), shapes.BACKGROUNDS["white"])
        shapes.draw_shape(ImageDraw.Draw(image), shape, 64 + 7, 64 - 5, 0.32 * 128, shapes.COLORS["purple"])
        (obj,) = judge.read_image(image.resize((32, 32), Image.Resampling.BOX)).objects
        assert (obj.shape, obj.size, obj.row, obj.col) == (shape, "large", 1, 1)


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(3, 32, 31), "square RGB images"),
    (torch.zeros(1, 32, 32), "square RGB images"),
    (torch.zeros(3, 8, 8), "at least 16x16"),
])
def test_wrong_image_sizes_are_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        judge.read_image(bad)


def test_accuracy_table_rows():
    accuracy = Accuracy()
    s = scene(("circle", "red", "large", 0, 0))
    accuracy.add(judge.score(render(s, 32), "a red circle at the top left"))
    accuracy.add(judge.score(render(s, 32), "a red square"))
    row = accuracy.row()
    assert row["n"] == 2 and row["all_correct"] == 50.0 and row["shape"] == 50.0 and row["position"] == 100.0
    assert row["relation"] is None
    assert "all_correct" in format_table([row])
