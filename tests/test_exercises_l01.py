"""Lesson 01's self-checks: right answers pass, wrong or unfinished ones fail with a useful message."""
import pytest

from dalle_lessons import shapes
from dalle_lessons.exercises.l01_shapes import (_scenes_for_captions, check_caption_for, check_cell_of,
                                                check_relation_of, reference_cell_of)
from exercise_helpers import assert_fails, not_attempted




# --- exercise 1: relations ------------------------------------------------------------------------

def relation_of(a, b):
    out = []
    if a.col < b.col:
        out.append("left of")
    if a.col > b.col:
        out.append("right of")
    if a.row < b.row:
        out.append("above")
    if a.row > b.row:
        out.append("below")
    return out


def test_relation_of_right_answers(capsys):
    assert check_relation_of(relation_of)
    assert check_relation_of(lambda a, b: set(relation_of(a, b)))  # any container, any order
    assert check_relation_of(lambda a, b: tuple(reversed(relation_of(a, b))))
    assert "correct" in capsys.readouterr().out


def test_relation_of_matches_scene_relations():
    for cell_a in [(0, 0), (1, 2), (2, 1)]:
        for cell_b in [(2, 2), (0, 1), (1, 0)]:
            a, b = shapes.ShapeObject("circle", "red", "small", *cell_a), shapes.ShapeObject("cross", "blue", "large", *cell_b)
            scene = shapes.Scene((a, b), "black")
            assert relation_of(a, b) == [r for i, r, j in scene.relations() if (i, j) == (0, 1)]


def test_relation_of_not_attempted(capsys):
    assert_fails(check_relation_of, not_attempted, capsys, "not attempted")


@pytest.mark.parametrize("wrong, phrase", [
    (lambda a, b: [{"left of": "right of", "right of": "left of"}.get(r, r) for r in relation_of(a, b)],
     "Left and right are swapped"),
    (lambda a, b: [{"above": "below", "below": "above"}.get(r, r) for r in relation_of(a, b)],
     "Above and below are swapped"),
    (lambda a, b: relation_of(b, a), "You described b relative to a"),
    (lambda a, b: relation_of(a, b)[:1], "List every relation that holds"),
    (lambda a, b: relation_of(a, b) + (["left of"] if a.col == b.col else []), "same column"),
    (lambda a, b: "left of", "should return a list"),
    (lambda a, b: ["to the left of"], "not a relation"),
    (lambda a, b: relation_of(a, b) * 2, "twice"),
    (lambda a, b: 1 / 0, "raised ZeroDivisionError"),
])
def test_relation_of_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_relation_of, wrong, capsys, phrase)


def test_relation_of_feedback_names_the_case(capsys):
    out = assert_fails(check_relation_of, lambda a, b: relation_of(a, b)[:1], capsys)
    assert "For object a at row 0, col 0 and object b at row 1, col 1 you said ['left of']" in out


# --- exercise 2: pixel to cell --------------------------------------------------------------------

def cell_of(x, y, image_size):
    side = image_size / 3
    return min(2, int(y // side)), min(2, int(x // side))


def test_cell_of_right_answers(capsys):
    assert check_cell_of(cell_of)
    assert check_cell_of(lambda x, y, n: [min(2, int(3 * y / n)), min(2, int(3 * x / n))])
    assert "correct" in capsys.readouterr().out


def test_reference_cell_of_agrees_with_shapes():
    for n in (32, 64, 100):
        for r in range(3):
            for c in range(3):
                assert reference_cell_of(*shapes.cell_center(r, c, n), n) == (r, c)
        assert reference_cell_of(n, n, n) == (2, 2) and reference_cell_of(0, 0, n) == (0, 0)


def test_cell_of_not_attempted(capsys):
    assert_fails(check_cell_of, not_attempted, capsys, "not attempted")


@pytest.mark.parametrize("wrong, phrase", [
    (lambda x, y, n: cell_of(x, y, n)[::-1], "You returned (col, row)"),
    (lambda x, y, n: (int(y // (n / 3)), int(x // (n / 3))), "clamp with min(2, ...)"),
    (lambda x, y, n: (min(2, int(y // (n // 3))), min(2, int(x // (n // 3)))), "Divide with /, not //"),
    (lambda x, y, n: (int(y // (n // 3)), int(x // (n // 3))), "32 // 3 = 10, which rounds it down so the last"),
    (lambda x, y, n: (min(2, round(y / (n / 3))), min(2, round(x / (n / 3)))), "round down"),
    (lambda x, y, n: (0, 0) if x < 5 else cell_of(x, y, n), "For the point x=0, y=10.6767 in a 32-pixel image"),
    (lambda x, y, n: (y / (n / 3), x / (n / 3)), "whole numbers"),
    (lambda x, y, n: 4, "should return a pair"),
])
def test_cell_of_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_cell_of, wrong, capsys, phrase)


# --- exercise 3: captions -------------------------------------------------------------------------

def caption_for(scene):
    def noun(o):
        return f"{o.size} {o.color} {o.shape}"
    if len(scene.objects) == 1:
        o = scene.objects[0]
        return f"a {noun(o)} at the {shapes.POSITION_NAMES[(o.row, o.col)]}"
    i, relation, j = scene.relations()[0]
    return f"a {noun(scene.objects[i])} {relation} a {noun(scene.objects[j])}"


def test_caption_scenes_are_read_exactly_by_the_judge():
    from dalle_lessons import judge
    for scene in _scenes_for_captions():
        assert judge.scene_matches(judge.read_image(shapes.render(scene)), scene)


def test_caption_for_right_answers(capsys):
    assert check_caption_for(caption_for)

    def library_style(scene):  # the library's own captions, kept only when they state everything
        for seed in range(200):
            text, claim = shapes.caption_scene(scene, seed)
            if all(o.size for o in claim.objects) and (claim.relation or claim.objects[0].row is not None):
                return text
        raise AssertionError("no complete caption found")

    assert check_caption_for(library_style)
    assert "correct" in capsys.readouterr().out


def test_caption_for_not_attempted(capsys):
    assert_fails(check_caption_for, not_attempted, capsys, "not attempted")


def _reversed_relation(scene):
    text = caption_for(scene)
    if len(scene.objects) == 2:
        i, relation, j = scene.relations()[0]
        text = text.replace(f" {relation} ", f" {shapes.RELATIONS[shapes.RELATIONS.index(relation) ^ 1]} ")
    return text


@pytest.mark.parametrize("wrong, phrase", [
    (lambda s: caption_for(s) if len(s.objects) == 1 else
     " and ".join(f"a {o.size} {o.color} {o.shape}" for o in s.objects), "not how they are placed"),
    (lambda s: caption_for(s).replace("small ", "").replace("large ", ""), "size of the"),
    (lambda s: f"a {s.objects[0].size} {s.objects[0].color} {s.objects[0].shape}", "does not say where"),
    (lambda s: caption_for(s).replace("at the ", "at the top left corner, not the "), "wrong about position"),
    (_reversed_relation, "wrong about relation"),
    (lambda s: "a picture of some shapes", "cannot be read"),
    (lambda s: shapes.caption_scene(s, 0)[1], "non-empty string"),
])
def test_caption_for_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_caption_for, wrong, capsys, phrase)


def test_caption_for_feedback_shows_how_the_caption_was_read(capsys):
    out = assert_fails(check_caption_for, _reversed_relation, capsys)
    assert "reads as:" in out and "In this scene the orange circle is left of the cyan triangle" in out
