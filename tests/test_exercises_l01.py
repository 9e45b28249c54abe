"""Lesson 01's self-checks: right answers pass, wrong answers and shortcuts fail with a useful message."""
import itertools
import random
from dataclasses import replace

import pytest

from dalle_lessons import shapes
from dalle_lessons.clip_data import claim_holds, hard_negative, probe_variants
from dalle_lessons.exercises.l01_shapes import (COUNT_CAPTIONS, NEAR_MISS_CAPTIONS, check_count_scenes,
                                                check_leak_rate, check_near_miss, scenes_satisfying)
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: how many scenes a caption allows ---------------------------------------------------

def count_scenes(caption, strict=True, colors_differ=True, ignore_relation=False, fixed=False, orders=1):
    """The solution by reasoning (with switches that make the usual mistakes)."""
    claim = shapes.parse_caption(caption)
    backgrounds = 1 if claim.background else 2
    sizes = [1 if (o.size or fixed) else 2 for o in claim.objects]
    if len(claim.objects) == 1:
        cells = 1 if (claim.objects[0].row is not None or fixed) else 9
        return sizes[0] * cells * backgrounds
    a, b = claim.objects
    if a.color == b.color and colors_differ:
        return 0
    pairs = 0
    for cell_a, cell_b in itertools.permutations(itertools.product(range(3), range(3)), 2):
        if claim.relation is None or ignore_relation:
            pairs += 1
        elif shapes.relation_holds(cell_a, claim.relation, cell_b):
            pairs += 1
        elif not strict:
            axis = 1 if claim.relation in ("left of", "right of") else 0
            pairs += cell_a[axis] == cell_b[axis]
    return orders * pairs * sizes[0] * sizes[1] * backgrounds


def count_by_enumeration(caption):
    """Another right answer: build every scene of the named objects and test the claim on each."""
    claim = shapes.parse_caption(caption)
    cells = list(itertools.product(range(3), range(3)))
    if claim.objects[0].color == claim.objects[-1].color and len(claim.objects) == 2:
        return 0
    total = 0
    for bg in shapes.BACKGROUNDS:
        choices = [[(size, cell) for size in shapes.SIZES for cell in cells] for _ in claim.objects]
        for picks in itertools.product(*choices):
            if len({cell for _, cell in picks}) < len(picks):
                continue
            scene = shapes.Scene(tuple(shapes.ShapeObject(o.shape, o.color, size, *cell)
                                       for o, (size, cell) in zip(claim.objects, picks)), bg)
            total += claim_holds(claim, scene)
    return total


@pytest.mark.parametrize("right", [count_scenes, count_by_enumeration,
                                   lambda c: float(count_scenes(c))])
def test_count_scenes_right_answers(capsys, right):
    assert_passes(check_count_scenes, right, capsys)


def test_count_reference_is_the_world_claim_holds_describes():
    rng = random.Random(0)
    world = [shapes.random_scene(rng) for _ in range(5000)]
    for caption in COUNT_CAPTIONS + NEAR_MISS_CAPTIONS:
        claim = shapes.parse_caption(caption)
        keys = {s.key() for s in scenes_satisfying(claim)}
        assert len(keys) == len(scenes_satisfying(claim)) == count_scenes(caption)
        assert all((s.key() in keys) == claim_holds(claim, s) for s in world)


def test_count_scenes_not_attempted(capsys):
    assert_fails(check_count_scenes, not_attempted, capsys, "not attempted")


def _one_object(caption):
    return len(shapes.parse_caption(caption).objects) == 1


@pytest.mark.parametrize("wrong, phrase", [
    (lambda c: count_scenes(c) // (1 if shapes.parse_caption(c).background else 2), "unsaid background is free"),
    (lambda c: count_scenes(c) * (481 if _one_object(c) else 1), "promises a picture with exactly one"),
    (lambda c: count_scenes(c, ignore_relation=True), "The relation pins the pair down"),
    (lambda c: count_scenes(c, strict=False), "Relations are strict"),
    (lambda c: count_scenes(c, colors_differ=False), "two objects never share a color"),
    (lambda c: count_scenes(c, fixed=True), "What a caption leaves unsaid is free"),
    (lambda c: count_scenes(c, orders=2), "once per order"),
    (lambda c: count_scenes(c) + (1 if "purple" in c else 0), "expected 2. The caption reads as"),
    (lambda c: str(count_scenes(c)), "should return a number of scenes"),
    (lambda c: count_scenes(c) / 7, "whole number"),
    (lambda c: 1 / 0, "raised ZeroDivisionError"),
])
def test_count_scenes_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_count_scenes, wrong, capsys, phrase)


WORLD_TOTAL = 303_660  # section 1's count of every scene, the only count the lesson shows


def count_by_sampling(caption, n=20_000):
    """Counting the distinct scenes drawn by random_scene that the caption is true of: misses most of them."""
    claim, rng = shapes.parse_caption(caption), random.Random(0)
    return len({s.key() for s in (shapes.random_scene(rng) for _ in range(n)) if claim_holds(claim, s)})


@pytest.mark.parametrize("shortcut", [lambda c: WORLD_TOTAL, count_by_sampling])
def test_count_scenes_rejects_the_shortcuts(capsys, shortcut):
    assert_fails(check_count_scenes, shortcut, capsys, "returned", "expected")


# --- exercise 2: a near miss ------------------------------------------------------------------------

OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def near_miss(claim, kind):
    first = claim.objects[0]
    if kind == "color":
        used = {o.color for o in claim.objects}
        new = next(c for c in shapes.COLORS if c not in used)
        return replace(claim, objects=(replace(first, color=new),) + claim.objects[1:])
    if kind == "shape":
        new = next(s for s in shapes.SHAPES if s != first.shape)
        return replace(claim, objects=(replace(first, shape=new),) + claim.objects[1:])
    if kind == "size":
        k = next((k for k, o in enumerate(claim.objects) if o.size), None)
        if k is None:
            return None
        objects = list(claim.objects)
        objects[k] = replace(objects[k], size="large" if objects[k].size == "small" else "small")
        return replace(claim, objects=tuple(objects))
    if kind == "position":
        if len(claim.objects) != 1 or first.row is None:
            return None
        return replace(claim, objects=(replace(first, row=(first.row + 1) % 3),))
    if kind == "relation":
        return replace(claim, relation=OPPOSITE[claim.relation]) if claim.relation else None
    raise ValueError(kind)


def near_miss_last_object(claim, kind):
    """Another right answer: change the last object, to the last color or shape that fits."""
    if kind not in ("color", "shape"):
        return near_miss(claim, kind)
    last = claim.objects[-1]
    if kind == "color":
        new = [c for c in shapes.COLORS if c not in {o.color for o in claim.objects}][-1]
        return replace(claim, objects=claim.objects[:-1] + (replace(last, color=new),))
    return replace(claim, objects=claim.objects[:-1] + (replace(last, shape=shapes.SHAPES[-1] if last.shape !=
                                                                        shapes.SHAPES[-1] else shapes.SHAPES[0]),))


@pytest.mark.parametrize("right", [near_miss, near_miss_last_object])
def test_near_miss_right_answers(capsys, right):
    assert_passes(check_near_miss, right, capsys)


def test_the_solution_is_false_of_every_picture_the_caption_fits():
    for caption in NEAR_MISS_CAPTIONS:
        claim = shapes.parse_caption(caption)
        for kind in ("color", "shape", "size", "position", "relation"):
            miss = near_miss(claim, kind)
            if miss is not None:
                assert not any(claim_holds(miss, s) for s in scenes_satisfying(claim))
                assert scenes_satisfying(miss)


def test_near_miss_not_attempted(capsys):
    assert_fails(check_near_miss, not_attempted, capsys, "not attempted")


def _other_relation(claim, kind):
    if kind == "relation" and claim.relation:
        return replace(claim, relation=shapes.RELATIONS[(shapes.RELATIONS.index(claim.relation) + 2) % 4])
    return near_miss(claim, kind)


def _color_of_the_other(claim, kind):
    if kind == "color" and len(claim.objects) == 2:
        return replace(claim, objects=(replace(claim.objects[0], color=claim.objects[1].color), claim.objects[1]))
    return near_miss(claim, kind)


def _both_objects(claim, kind):
    if kind == "shape" and len(claim.objects) == 2:
        return replace(claim, objects=tuple(replace(o, shape="cross" if o.shape != "cross" else "circle")
                                            for o in claim.objects))
    return near_miss(claim, kind)


def _adds_a_size(claim, kind):
    if kind == "size":
        return replace(claim, objects=tuple(replace(o, size="large" if o.size == "small" else "small")
                                            for o in claim.objects[:1]) + claim.objects[1:])
    return near_miss(claim, kind)


def _drops_the_size(claim, kind):
    if kind == "color":
        miss = near_miss(claim, kind)
        return replace(miss, objects=tuple(replace(o, size=None) for o in miss.objects))
    return near_miss(claim, kind)


@pytest.mark.parametrize("wrong, phrase", [
    (_other_relation, "A diagonal pair is both left of and above"),
    (_color_of_the_other, "two objects never share a color"),
    (_both_objects, "changes the shape of both objects"),
    (_adds_a_size, "nothing to change: return None"),
    (_drops_the_size, "changes color, size"),
    (lambda claim, kind: None, "you returned None, but the caption states a color"),
    (lambda claim, kind: claim, "unchanged"),
    (lambda claim, kind: "a small blue circle at the top left", "should return a shapes.Claim"),
    (lambda claim, kind: replace(near_miss(claim, "color"), objects=(replace(claim.objects[0], color="pink"),)
                                 + claim.objects[1:]) if kind == "color" else near_miss(claim, kind),
     "which this world does not have"),
    (lambda claim, kind: 1 / 0, "raised ZeroDivisionError"),
])
def test_near_miss_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_near_miss, wrong, capsys, phrase)


def _fill_unsaid(claim):
    """A scene the claim is true of (what a learner needs before calling the library's scene-based helpers)."""
    return next(iter(scenes_satisfying(claim)))


def _negative_control(claim, kind):
    """Section 6's negative control: the caption of another scene."""
    other = shapes.sample_scene("test", 1, n_objects=len(claim.objects))
    return shapes.caption_scene(other, 3)[1]


def _probe_variant(claim, kind):
    """clip_data.probe_variants: near misses of a whole scene, in a phrasing that states everything."""
    found = probe_variants(_fill_unsaid(claim))[1].get(kind)
    return shapes.parse_caption(found[0]) if found else None


def _hard_negative(claim, kind):
    """clip_data.hard_negative: a near miss of a scene, its kind and phrasing drawn at random."""
    found = hard_negative(_fill_unsaid(claim), f"{kind}")
    return found[1] if found else None


@pytest.mark.parametrize("shortcut, phrase", [
    (_negative_control, "A near miss changes exactly one thing"),
    (_probe_variant, "what it leaves unsaid stays unsaid"),
    (_hard_negative, "For 'a small red circle at the top left'"),
])
def test_near_miss_rejects_the_library_and_the_lessons_negative_control(capsys, shortcut, phrase):
    assert_fails(check_near_miss, shortcut, capsys, phrase)


# --- exercise 3: how much of a test set leaks --------------------------------------------------------

def leak_rate(train, test):
    seen = {s.key() for s in train}
    return sum(s.key() in seen for s in test) / len(test)


def leak_rate_loop(train, test):
    keys = [s.key() for s in train]
    hits = 0
    for s in test:
        if s.key() in keys:
            hits += 1
    return hits / len(test)


@pytest.mark.parametrize("right", [leak_rate, leak_rate_loop])
def test_leak_rate_right_answers(capsys, right):
    assert_passes(check_leak_rate, right, capsys)


def test_leak_rate_not_attempted(capsys):
    assert_fails(check_leak_rate, not_attempted, capsys, "not attempted")


@pytest.mark.parametrize("wrong, phrase", [
    (lambda tr, te: sum(s in set(tr) for s in te) / len(te), "compared scenes with =="),
    (lambda tr, te: len({s.key() for s in te} & {s.key() for s in tr}) / len({s.key() for s in te}),
     "You counted distinct test scenes"),
    (lambda tr, te: leak_rate(te, tr), "share of *training* items"),
    (lambda tr, te: leak_rate(tr, te) * len(te) / len(tr), "divided by the number of training items"),
    (lambda tr, te: leak_rate(tr, te) * len(te), "return the fraction"),
    (lambda tr, te: 100 * leak_rate(tr, te), "percentage"),
    (lambda tr, te: sum(s.key().split("|", 1)[1] in {t.key().split("|", 1)[1] for t in tr} for s in te) / len(te),
     "but not the background"),
    (lambda tr, te: f"{leak_rate(tr, te):.0%}", "should return a fraction"),
    (lambda tr, te: 1 / 0, "raised ZeroDivisionError"),
])
def test_leak_rate_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_leak_rate, wrong, capsys, phrase)


@pytest.mark.parametrize("shortcut", [
    lambda tr, te: 0.0,  # what hashing promises for its own splits, returned whatever the split
    lambda tr, te: len(set(tr) & set(te)) / len(te),  # frozen dataclasses in sets: order-sensitive, distinct
])
def test_leak_rate_rejects_the_shortcuts(capsys, shortcut):
    assert_fails(check_leak_rate, shortcut, capsys, "expected")
