"""Self-checks for lesson 01 (the Shapes dataset and its judge).

Each exercise asks for something the lesson does not show and the package does not provide: how many
scenes of the world a caption allows, a near-miss claim one change away from a caption (a sharper
negative control for the judge than another scene's caption), and how much of a test set a training set
already holds. Each check compares the learner's function with a reference written here and, when they
differ, tries the usual mistakes so that the feedback can name the one that was made.
"""
from __future__ import annotations

import numbers
import random
from dataclasses import replace
from typing import Callable

from dalle_lessons.exercises import Feedback, call_learner, report
from dalle_lessons.shapes import (BACKGROUNDS, COLORS, POSITION_NAMES, RELATIONS, SHAPES, SIZES, Claim,
                                  ObjectClaim, Scene, ShapeObject, parse_caption, random_scene, relation_holds)

CELLS = [(r, c) for r in range(3) for c in range(3)]
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


# --- the world a claim allows (shared by exercises 1 and 2) -----------------------------------------

def _cells(o: ObjectClaim) -> list[tuple[int, int]]:
    if o.row is None and o.col is None:
        return CELLS
    return [(o.row, o.col)] if (o.row, o.col) in POSITION_NAMES else []


def _sizes(o: ObjectClaim) -> list[str]:
    if o.size is None:
        return list(SIZES)
    return [o.size] if o.size in SIZES else []


def scenes_satisfying(claim: Claim, strict: bool = True, colors_differ: bool = True) -> list[Scene]:
    """Every scene of the world that `claim` is true of: exactly its objects, every stated attribute.

    `strict=False` and `colors_differ=False` give the worlds of two usual mistakes (relations read with
    <= instead of <, two objects allowed to share a color), for feedback only.
    """
    objects = claim.objects
    if not 1 <= len(objects) <= 2 or any(o.shape not in SHAPES or o.color not in COLORS for o in objects):
        return []
    if claim.background is not None and claim.background not in BACKGROUNDS:
        return []
    backgrounds = [claim.background] if claim.background is not None else list(BACKGROUNDS)
    if len(objects) == 1:
        if claim.relation is not None:
            return []  # a relation needs two objects
        (o,) = objects
        return [Scene((ShapeObject(o.shape, o.color, size, r, c),), bg)
                for size in _sizes(o) for r, c in _cells(o) for bg in backgrounds]
    a, b = objects
    if a.color == b.color and colors_differ:
        return []
    out = []
    for cell_a in _cells(a):
        for cell_b in _cells(b):
            if cell_a == cell_b:
                continue
            if claim.relation is not None:
                if claim.relation not in RELATIONS:
                    return []
                holds = relation_holds(cell_a, claim.relation, cell_b)
                if not strict:  # the mistake: "left of" also when the columns are equal
                    axis = 1 if claim.relation in ("left of", "right of") else 0
                    holds = holds or cell_a[axis] == cell_b[axis]
                if not holds:
                    continue
            for size_a in _sizes(a):
                for size_b in _sizes(b):
                    for bg in backgrounds:
                        out.append((a.shape, a.color, size_a, cell_a, b.shape, b.color, size_b, cell_b, bg))
    if not colors_differ:  # Scene refuses two objects of one color: count tuples instead
        return out
    return [Scene((ShapeObject(s1, c1, z1, *p1), ShapeObject(s2, c2, z2, *p2)), bg)
            for s1, c1, z1, p1, s2, c2, z2, p2, bg in out]


# --- exercise 1: how many scenes does a caption allow? ---------------------------------------------

COUNT_CAPTIONS = [
    "a red circle",
    "a large red circle at the top left",
    "a small green triangle on a white background",
    "a purple cross at the center on a black background",
    "a red circle to the left of a blue square",
    "a small yellow diamond above a large cyan cross",
    "a large orange square below a green square on a black background",
    "a blue diamond and a purple circle",
    "a red circle to the left of a red square",
]

OTHER_OBJECTS = len(SHAPES) * (len(COLORS) - 1) * len(SIZES) * (len(CELLS) - 1)  # a second object: 480 ways


def count_scenes_reference(caption: str) -> int:
    """The number of distinct scenes of the world that the caption is true of."""
    return len(scenes_satisfying(parse_caption(caption)))


def _count_variant(caption: str, mistake: str) -> int:
    claim = parse_caption(caption)
    n = len(scenes_satisfying(claim))
    two = len(claim.objects) == 2
    if mistake == "one_background":
        return n // 2 if claim.background is None else n
    if mistake == "extra_objects":
        return n if two else n + n * OTHER_OBJECTS
    if mistake == "relation_ignored":
        return len(scenes_satisfying(replace(claim, relation=None))) if two else n
    if mistake == "not_strict":
        return len(scenes_satisfying(claim, strict=False)) if two else n
    if mistake == "same_color":
        return len(scenes_satisfying(claim, colors_differ=False))
    if mistake == "unsaid_fixed":  # an unsaid size or place counted as one option
        fixed = replace(claim, objects=tuple(replace(o, size=o.size or "small") for o in claim.objects))
        if not two and fixed.objects[0].row is None:
            fixed = replace(fixed, objects=(replace(fixed.objects[0], row=1, col=1),))
        return len(scenes_satisfying(fixed))
    if mistake == "both_orders":
        return 2 * n if two else n
    raise ValueError(mistake)


_COUNT_MISTAKES = {
    "one_background": "Your counts are half of the right ones whenever the caption does not name the background: "
                      "an unsaid background is free too, so every picture exists once on black and once on white.",
    "extra_objects": "For a one-object caption you also counted the scenes with a second object. A caption that "
                     "names one object promises a picture with exactly one: the judge scores the count, always.",
    "relation_ignored": "For two objects you counted every pair of distinct cells, as if the relation were unsaid. "
                        "The relation pins the pair down: 'a left of b' allows only the cell pairs where a's column "
                        "is smaller than b's (3 column pairs x 9 row pairs = 27).",
    "not_strict": "You counted two objects in the same column as 'left of' (or in the same row as 'above'). "
                  "Relations are strict: use shapes.relation_holds, or < and >, not <= and >=.",
    "same_color": "'a red circle to the left of a red square' allows no scene at all: two objects never share a "
                  "color in this world, so the count is 0.",
    "unsaid_fixed": "You counted an unsaid size (or a lone object's unsaid place) as one option. What a caption "
                    "leaves unsaid is free: each object may be small or large, a lone object may sit in any of the "
                    "9 cells.",
    "both_orders": "Your two-object counts are twice the right ones: you counted each scene once per order of "
                   "its objects. The two objects have different colors, so each choice of cells, sizes and "
                   "background is one scene.",
}


def _as_count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise Feedback(f"{what} should return a number of scenes (an int), but it returned {value!r}.")
    if value != int(value) or value < 0:
        raise Feedback(f"{what} returned {value!r}: a number of scenes is a whole number, 0 or more.")
    return int(value)


def check_count_scenes(fn: Callable[[str], int]) -> bool:
    """Exercise 1: `fn(caption)` is how many distinct scenes of the world the caption is true of."""

    def check() -> None:
        got = {}
        for caption in COUNT_CAPTIONS:
            what = f"count_scenes({caption!r})"
            got[caption] = _as_count(call_learner(fn, what, caption), what)
        want = {c: count_scenes_reference(c) for c in COUNT_CAPTIONS}
        if got == want:
            return
        for mistake, message in _COUNT_MISTAKES.items():
            if all(got[c] == _count_variant(c, mistake) for c in COUNT_CAPTIONS):
                caption = next(c for c in COUNT_CAPTIONS if got[c] != want[c])
                raise Feedback(f"count_scenes({caption!r}) returned {got[caption]:,}, expected {want[caption]:,}. "
                               + message)
        caption = next(c for c in COUNT_CAPTIONS if got[c] != want[c])
        claim = parse_caption(caption)
        hint = ("One object: multiply the choices left open, sizes x cells x backgrounds, each 1 when the "
                "caption states it." if len(claim.objects) == 1 else
                "Two objects: count the ordered cell pairs (a's cell, b's cell) the relation allows, times the "
                "sizes left open, times the backgrounds left open; 0 if the two share a color.")
        raise Feedback(f"count_scenes({caption!r}) returned {got[caption]:,}, expected {want[caption]:,}. "
                       f"The caption reads as: {_say(claim)} (nothing else is stated). {hint}")

    return report("Exercise 1 (how many scenes a caption allows)", check)


# --- exercise 2: a near miss, one change away ------------------------------------------------------

NEAR_MISS_KINDS = ("color", "shape", "size", "position", "relation")

NEAR_MISS_CAPTIONS = [
    "a small red circle at the top left",
    "a green triangle",
    "a large purple cross at the center on a black background",
    "a red circle to the left of a blue square",
    "a small yellow diamond above a large cyan cross",
    "an orange square below a green square on a white background",
]


def _stated(claim: Claim, kind: str) -> bool:
    """Whether a claim states something of this kind, so that a near miss can change it."""
    if kind in ("color", "shape"):
        return True
    if kind == "size":
        return any(o.size is not None for o in claim.objects)
    if kind == "position":
        return len(claim.objects) == 1 and claim.objects[0].row is not None
    return claim.relation is not None


def _fields(o: ObjectClaim) -> dict[str, object]:
    return {"shape": o.shape, "color": o.color, "size": o.size, "position": (o.row, o.col)}


def _say(claim: Claim) -> str:
    """A claim as words, e.g. 'small red circle at the top left' or 'red circle left of blue square'."""
    def one(o: ObjectClaim) -> str:
        words = " ".join(str(w) for w in (o.size, o.color, o.shape) if w)
        if o.row is not None or o.col is not None:
            words += f" at the {POSITION_NAMES.get((o.row, o.col), f'cell ({o.row}, {o.col})')}"
        return words

    text = f" {claim.relation} ".join(one(o) for o in claim.objects) if claim.relation else \
        " and ".join(one(o) for o in claim.objects)
    return text + (f" on {claim.background}" if claim.background else "")


def _say_scene(scene: Scene) -> str:
    objects = " and ".join(f"a {o.size} {o.color} {o.shape} at the {o.position}" for o in scene.objects)
    return f"{objects}, on {scene.background}"


def _check_near_miss(caption: str, kind: str, got) -> None:
    claim = parse_caption(caption)
    head = f"For {caption!r} (it reads as: {_say(claim)}) and kind {kind!r}"
    if not _stated(claim, kind):
        if got is None:
            return
        where = "a lone object's place" if kind == "position" else f"a {kind}"
        why = (" (a two-object caption states a relation, not places)"
               if kind == "position" and len(claim.objects) == 2 else "")
        raise Feedback(f"{head}, the caption states no {kind}{why}, so there is nothing to change: return None. "
                       f"You returned {_say_as(got)}; "
                       f"adding {where} the caption left unsaid gives a caption that some pictures of the "
                       "original still follow.")
    if got is None:
        raise Feedback(f"{head}, you returned None, but the caption states a {kind}: return the claim with it "
                       "changed.")
    if not isinstance(got, Claim):
        raise Feedback(f"{head}, near_miss should return a shapes.Claim (use dataclasses.replace on the claim and "
                       f"its objects), but it returned {type(got).__name__} {got!r}.")
    if got == claim:
        raise Feedback(f"{head}, your near miss is the caption's own claim, unchanged: change one {kind}.")
    if len(got.objects) != len(claim.objects):
        raise Feedback(f"{head}, your near miss names {len(got.objects)} object(s), the caption "
                       f"{len(claim.objects)}. Keep the objects and change one {kind}.")
    changed = set()
    changed_objects = 0
    for old, new in zip(claim.objects, got.objects):
        diff = {name for name, value in _fields(old).items() if _fields(new)[name] != value}
        changed |= diff
        changed_objects += bool(diff)
    if got.relation != claim.relation:
        changed.add("relation")
    if got.background != claim.background:
        changed.add("background")
    if changed - {kind}:
        raise Feedback(f"{head}, your near miss ({_say(got)}) changes {', '.join(sorted(changed))}. A near miss "
                       f"changes exactly one thing, here the {kind}, and keeps everything else as the caption "
                       "says it (what it leaves unsaid stays unsaid).")
    if changed_objects > 1:
        raise Feedback(f"{head}, your near miss ({_say(got)}) changes the {kind} of both objects. Change one "
                       "object only: a near miss differs in exactly one thing.")
    for o in got.objects:
        for name, value, valid in (("color", o.color, COLORS), ("shape", o.shape, SHAPES)):
            if value not in valid:
                raise Feedback(f"{head}, your near miss has the {name} {value!r}, which this world does not have "
                               f"(valid: {', '.join(valid)}).")
    possible = scenes_satisfying(got)
    if not possible:
        reason = ("two objects never share a color, so no picture can follow it: it is false for a trivial "
                  "reason, and a judge that rejects it has shown nothing. Pick a color the other object does "
                  "not have." if len(got.objects) == 2 and got.objects[0].color == got.objects[1].color else
                  "no picture of this world can follow it. A useful negative is one a picture could follow.")
        raise Feedback(f"{head}, your near miss ({_say(got)}) is impossible: {reason}")
    possible_keys = {s.key() for s in possible}
    for scene in scenes_satisfying(claim):
        if scene.key() in possible_keys:
            hint = (" A diagonal pair is both left of and above one another: only the opposite relation is "
                    "false of every picture the caption fits." if kind == "relation" else "")
            raise Feedback(f"{head}, your near miss ({_say(got)}) is still true of a picture the caption fits "
                           f"({_say_scene(scene)}), so a judge would be right to accept it.{hint}")


def _say_as(value) -> str:
    return _say(value) if isinstance(value, Claim) else repr(value)


def check_near_miss(fn: Callable[[Claim, str], Claim | None]) -> bool:
    """Exercise 2: `fn(claim, kind)` is a claim one change of that kind away, false of every picture the claim
    is true of yet possible; None when the claim states nothing of that kind."""

    def check() -> None:
        for caption in NEAR_MISS_CAPTIONS:
            for kind in NEAR_MISS_KINDS:
                claim = parse_caption(caption)
                got = call_learner(fn, f"near_miss(parse_caption({caption!r}), {kind!r})", claim, kind)
                _check_near_miss(caption, kind, got)

    return report("Exercise 2 (a near miss, one change away)", check)


# --- exercise 3: how much of a test set is already in training? ------------------------------------

def leak_rate_reference(train: list[Scene], test: list[Scene]) -> float:
    """The fraction of test items whose scene (in any object order) is also among the training items."""
    seen = {s.key() for s in train}
    return sum(s.key() in seen for s in test) / len(test)


def _leak_cases() -> list[tuple[str, list[Scene], list[Scene]]]:
    """(name, train, test): a small hand-made case, then random draws full of repeated one-object scenes."""
    a = ShapeObject("circle", "red", "small", 0, 0)
    b = ShapeObject("square", "blue", "large", 2, 2)
    c = ShapeObject("cross", "green", "large", 1, 1)
    d = ShapeObject("diamond", "purple", "small", 0, 2)
    train = [Scene((a, b), "black"), Scene((c,), "white"), Scene((c,), "white"), Scene((d,), "black"),
             Scene((a,), "black")]
    test = [Scene((b, a), "black"),  # the first training scene, its objects listed the other way round
            Scene((c,), "white"), Scene((c,), "white"),  # a scene drawn twice, seen in training
            Scene((c,), "black"),  # the same object on the other background: another scene
            Scene((a, d), "black"), Scene((d,), "white")]
    rng = random.Random(11)
    drawn = [random_scene(rng) for _ in range(1500)]
    return [("a small hand-made train/test pair (6 test items)", train, test),
            ("1,200 random training scenes and 300 random test scenes", drawn[:1200], drawn[1200:])]


def _leak_variant(train: list[Scene], test: list[Scene], mistake: str) -> float:
    keys = {s.key() for s in train}
    if mistake == "equality":
        seen = set(train)
        return sum(s in seen for s in test) / len(test)
    if mistake == "distinct":
        distinct = {s.key() for s in test}
        return len(distinct & keys) / len(distinct)
    if mistake == "train_side":
        test_keys = {s.key() for s in test}
        return sum(s.key() in test_keys for s in train) / len(train)
    if mistake == "by_train_size":
        return sum(s.key() in keys for s in test) / len(train)
    if mistake == "count":
        return float(sum(s.key() in keys for s in test))
    if mistake == "percent":
        return 100 * leak_rate_reference(train, test)
    if mistake == "objects_only":  # the background forgotten
        objects = {s.key().split("|", 1)[1] for s in train}
        return sum(s.key().split("|", 1)[1] in objects for s in test) / len(test)
    raise ValueError(mistake)


_LEAK_MISTAKES = {
    "equality": "You compared scenes with == (or put them in a set), but a Scene lists its objects in the order "
                "they were drawn: Scene((a, b)) and Scene((b, a)) are the same picture yet compare unequal. "
                "Compare scene.key(), which sorts the objects.",
    "distinct": "You counted distinct test scenes. Count test items: a scene drawn twice in the test set is "
                "tested twice, and repeats are exactly where a leak hides.",
    "train_side": "You measured the share of *training* items that appear in the test set. Measure the test "
                  "side: the share of test items whose scene training already holds.",
    "by_train_size": "You divided by the number of training items; divide by the number of test items.",
    "count": "You returned how many test items leak; return the fraction, that count divided by len(test).",
    "percent": "You returned a percentage; return a fraction between 0 and 1.",
    "objects_only": "You compared the objects but not the background: the same objects on white and on black "
                    "are two different pictures, two different scenes. Compare the whole scene.key().",
}


def check_leak_rate(fn: Callable[[list[Scene], list[Scene]], float]) -> bool:
    """Exercise 3: `fn(train, test)` is the fraction of test items whose scene also appears in `train`."""

    def check() -> None:
        results = []
        for name, train, test in _leak_cases():
            what = f"leak_rate(train, test) with {name}"
            got = call_learner(fn, what, list(train), list(test))
            if isinstance(got, bool) or not isinstance(got, numbers.Real):
                raise Feedback(f"{what} should return a fraction (a float), but it returned {got!r}.")
            results.append((name, train, test, float(got)))
        if all(abs(got - leak_rate_reference(train, test)) < 1e-9 for _, train, test, got in results):
            return
        for mistake, message in _LEAK_MISTAKES.items():
            if all(abs(got - _leak_variant(train, test, mistake)) < 1e-9 for _, train, test, got in results):
                raise Feedback(message)
        for name, train, test, got in results:
            want = leak_rate_reference(train, test)
            if abs(got - want) >= 1e-9:
                raise Feedback(f"With {name} you returned {got:.4f}, expected {want:.4f}: the share of test items "
                               "whose scene.key() is among the training scenes' keys.")

    return report("Exercise 3 (how much of a test set leaks)", check)
