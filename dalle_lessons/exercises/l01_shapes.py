"""Self-checks for lesson 01 (the Shapes dataset and its judge).

Each check calls the learner's function on fixed inputs, compares it with the rules of
`dalle_lessons.shapes` and `dalle_lessons.judge`, and when it differs names the case and, where it
can tell, the usual mistake behind it.
"""
from __future__ import annotations

from typing import Callable

from dalle_lessons import judge
from dalle_lessons.exercises import Feedback, report
from dalle_lessons.shapes import (POSITION_NAMES, RELATIONS, Claim, ObjectClaim, Scene, ShapeObject,
                                  parse_caption, relation_holds)

CELLS = [(r, c) for r in range(3) for c in range(3)]


def _call(fn: Callable, what: str, *args):
    """Call the learner's function; turn a crash (other than NotImplementedError) into feedback."""
    try:
        return fn(*args)
    except (NotImplementedError, Feedback):
        raise
    except Exception as error:  # the learner's code, so any error is possible
        raise Feedback(f"{what} raised {type(error).__name__}: {error}.") from None


# --- exercise 1: relations between two objects ----------------------------------------------------

_OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _true_relations(a: tuple[int, int], b: tuple[int, int]) -> list[str]:
    return [r for r in RELATIONS if relation_holds(a, r, b)]


def _as_relations(value, what: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise Feedback(f"{what} should return a list of relation names such as ['left of', 'above'], "
                       f"but it returned {value!r}.")
    for item in value:
        if item not in RELATIONS:
            raise Feedback(f"{what} returned {item!r}, which is not a relation: use the names in "
                           f"shapes.RELATIONS ({', '.join(repr(r) for r in RELATIONS)}).")
    if len(set(value)) != len(value):
        raise Feedback(f"{what} returned {list(value)!r}, which lists a relation twice: list each one once.")
    return sorted(value, key=RELATIONS.index)


def check_relation_of(fn: Callable[[ShapeObject, ShapeObject], list[str]]) -> bool:
    """Exercise 1: `fn(a, b)` lists every relation R (from shapes.RELATIONS) for which "a R b" holds."""

    def check() -> None:
        got_all, want_all = {}, {}
        for cell_a in CELLS:
            for cell_b in CELLS:
                if cell_a == cell_b:
                    continue
                a = ShapeObject("circle", "red", "small", *cell_a)
                b = ShapeObject("square", "blue", "large", *cell_b)
                what = (f"relation_of(a, b) with a at row {cell_a[0]}, col {cell_a[1]} and b at row {cell_b[0]}, "
                        f"col {cell_b[1]}")
                got_all[cell_a, cell_b] = _as_relations(_call(fn, what, a, b), what)
                want_all[cell_a, cell_b] = _true_relations(cell_a, cell_b)
        if got_all == want_all:
            return
        if all(got_all[a, b] == want_all[b, a] for a, b in got_all):
            raise Feedback("You described b relative to a. relation_of(a, b) reads as a sentence: "
                           "'a RELATION b', e.g. 'left of' when a is in a column left of b's.")
        for (cell_a, cell_b), got in got_all.items():
            want = want_all[cell_a, cell_b]
            if got == want:
                continue
            case = (f"For object a at row {cell_a[0]}, col {cell_a[1]} and object b at row {cell_b[0]}, "
                    f"col {cell_b[1]} "
                    f"you said {got}, but the true relations are {want}")
            missing = [r for r in want if r not in got]
            extra = [r for r in got if r not in want]
            swapped = [r for r in missing if _OPPOSITE[r] in extra]
            if any(r in ("left of", "right of") for r in swapped):
                raise Feedback(case + ". Left and right are swapped: col 0 is the left column, so an object "
                               "in a smaller column is left of one in a larger column.")
            if swapped:
                raise Feedback(case + ". Above and below are swapped: row 0 is the top row (image rows count "
                               "downward, like a pixel's y), so an object in a smaller row is above.")
            if extra and any((r in ("left of", "right of") and cell_a[1] == cell_b[1])
                             or (r in ("above", "below") and cell_a[0] == cell_b[0]) for r in extra):
                raise Feedback(case + ". Objects in the same column are neither left nor right of each "
                               "other, and objects in the same row are neither above nor below: use strict "
                               "comparisons (<, >).")
            if missing and not extra:
                raise Feedback(case + ". List every relation that holds: an object up and to the left of "
                                      "another is both 'left of' and 'above' it.")
            raise Feedback(case + ". Compare the columns for 'left of' / 'right of' and the rows for "
                                  "'above' / 'below'.")

    return report("Exercise 1 (relations)", check)


# --- exercise 2: from a point to its grid cell ----------------------------------------------------

def reference_cell_of(x: float, y: float, image_size: int) -> tuple[int, int]:
    """The (row, col) of the 3x3 cell holding point (x, y): the judge's own rule."""
    return judge.cell_of(x, y, image_size)


def _cell_points(image_size: int) -> list[tuple[float, float]]:
    side = image_size / 3
    along = [0.0, 0.5, side / 2, side - 0.01, side + 0.01, 1.5 * side, 2 * side - 0.01, 2 * side + 0.01,
             2.5 * side, image_size - 0.5, float(image_size)]
    return [(x, y) for y in along for x in along]


def _as_cell(value, what: str) -> tuple[int, int]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise Feedback(f"{what} should return a pair (row, col), but it returned {value!r}.")
    out = []
    for v in value:
        try:
            as_int = int(v)
        except (TypeError, ValueError):
            raise Feedback(f"{what} returned {value!r}: row and col should be whole numbers 0, 1 or 2.") from None
        if as_int != v:
            raise Feedback(f"{what} returned {value!r}: row and col should be whole numbers 0, 1 or 2 "
                           "(round down with // or int()).")
        out.append(as_int)
    return out[0], out[1]


def _cell_variant(x: float, y: float, n: int, mistake: str) -> tuple[int, int]:
    """The cell as a common mistake would compute it (for feedback only)."""
    side = n // 3 if mistake.startswith("integer") else n / 3

    def index(v: float) -> int:
        cell = round(v / side) if mistake == "rounded" else int(v // side)
        return cell if mistake.endswith("unclamped") else min(2, cell)

    return index(y), index(x)


_CELL_MISTAKES = {
    "unclamped": "A point on the far edge (x or y = {n}) lands in a fourth cell, off the 3x3 grid. It belongs "
                 "to the last cell: clamp with min(2, ...).",
    "integer": "The cells are {n} / 3 = {side:.2f} pixels wide, a fraction, but you used {n} // 3 = {floor}, "
               "which rounds it down and moves every boundary. Divide with /, not //.",
    "integer unclamped": "The cells are {n} / 3 = {side:.2f} pixels wide, a fraction, but you used {n} // 3 = "
                         "{floor}, which rounds it down so the last pixels spill into a fourth cell, off the "
                         "grid. Divide with /, then round the result down (and clamp the far edge to 2).",
    "rounded": "You rounded to the nearest whole number, so a point past the middle of a cell lands in the next "
               "one. A point belongs to the cell it lies in: round down, with // or int().",
}


def check_cell_of(fn: Callable[[float, float, int], tuple[int, int]]) -> bool:
    """Exercise 2: `fn(x, y, image_size)` is the (row, col) of the grid cell holding point (x, y)."""

    def check() -> None:
        for n in (32, 48, 64, 100):
            results = []
            for x, y in _cell_points(n):
                what = f"cell_of({x:g}, {y:g}, {n})"
                results.append(((x, y), _as_cell(_call(fn, what, x, y, n), what), reference_cell_of(x, y, n)))
            if all(got == want for _, got, want in results):
                continue
            if all(got == want[::-1] for _, got, want in results):
                raise Feedback("You returned (col, row). Return (row, col): the row comes from y (downward) "
                               "and the column from x (across).")
            for mistake, message in _CELL_MISTAKES.items():
                if all(got == _cell_variant(x, y, n, mistake) for (x, y), got, _ in results):
                    raise Feedback(message.format(n=n, side=n / 3, floor=n // 3))
            for (x, y), got, want in results:
                if got != want:
                    raise Feedback(
                        f"For the point x={x:g}, y={y:g} in a {n}-pixel image you returned (row, col) = {got}, "
                        f"expected {want}. The cell boundaries are at {n} / 3 = {n / 3:.2f} and 2 * {n} / 3 = "
                        f"{2 * n / 3:.2f} pixels, and a point on the far edge (x or y = {n}) belongs to the "
                        "last cell.")

    return report("Exercise 2 (pixel to grid cell)", check)


# --- exercise 3: a caption the judge accepts ------------------------------------------------------

def _scenes_for_captions() -> list[Scene]:
    """Scenes that exercise every position and every kind of relation (row, column, diagonal)."""
    shapes_, colors = ("circle", "square", "triangle", "diamond", "cross"), ("red", "green", "purple")
    one = [Scene((ShapeObject(shapes_[k % 5], colors[k % 3], ("small", "large")[k % 2], r, c),),
                 ("black", "white")[k % 2]) for k, (r, c) in enumerate(CELLS)]
    pairs = [((0, 0), (0, 2)), ((2, 1), (0, 1)), ((1, 2), (2, 0)), ((0, 1), (1, 0)), ((2, 2), (1, 1)),
             ((1, 0), (1, 1))]
    two = [Scene((ShapeObject(shapes_[k % 5], "orange", ("large", "small")[k % 2], *a),
                  ShapeObject(shapes_[(k + 2) % 5], "cyan", ("small", "large")[k % 2], *b)),
                 ("white", "black")[k % 2]) for k, (a, b) in enumerate(pairs)]
    return one + two


def _describe(obj: ShapeObject) -> str:
    return f"the {obj.size} {obj.color} {obj.shape} at row {obj.row}, col {obj.col}"


def _describe_claim(claim: Claim) -> str:
    def one(o: ObjectClaim) -> str:
        words = " ".join(w for w in (o.size, o.color, o.shape) if w)
        return words + (f" at {POSITION_NAMES[(o.row, o.col)]}" if o.row is not None else "")

    text = " / ".join(one(o) for o in claim.objects)
    if claim.relation:
        text = f"{one(claim.objects[0])} {claim.relation} {one(claim.objects[1])}"
    return text


def _true_reading(scene: Scene) -> judge.Reading:
    """What a perfect reader sees in a scene's picture (so only the caption is being checked)."""
    objects = tuple(judge.DetectedObject(o.shape, o.color, o.size, o.row, o.col, 0.0, 0.0) for o in scene.objects)
    return judge.Reading(scene.background, objects)


def check_caption_for(fn: Callable[[Scene], str]) -> bool:
    """Exercise 3: `fn(scene)` is a caption stating every object's size, color and shape, plus the
    position of a lone object or a true relation between two, which the judge accepts for that scene."""

    def check() -> None:
        for scene in _scenes_for_captions():
            objects = " and ".join(_describe(o) for o in scene.objects)
            what = f"caption_for(scene) for a scene with {objects}"
            text = _call(fn, what, scene)
            if not isinstance(text, str) or not text.strip():
                raise Feedback(f"{what} should return the caption as a non-empty string, got {text!r}.")
            try:
                claim = parse_caption(text)
            except ValueError as error:
                raise Feedback(f"Your caption {text!r} cannot be read: {error}.") from None
            read_as = f"Your caption {text!r} reads as: {_describe_claim(claim)}."
            if len(claim.objects) != len(scene.objects):
                raise Feedback(f"{read_as} It names {len(claim.objects)} object(s), but the scene with "
                               f"{objects} has {len(scene.objects)}: name each object by its color and shape.")
            for o in claim.objects:
                if o.size is None:
                    raise Feedback(f"{read_as} It leaves the size of the {o.color} {o.shape} unsaid: "
                                   "say 'small' or 'large' before the color.")
            if len(scene.objects) == 1 and claim.objects[0].row is None:
                raise Feedback(f"{read_as} It does not say where the object is: end with e.g. 'at the "
                               f"{POSITION_NAMES[(scene.objects[0].row, scene.objects[0].col)]}' "
                               "(the names are in shapes.POSITION_NAMES).")
            if len(scene.objects) == 2 and claim.relation is None:
                raise Feedback(f"{read_as} It names both objects but not how they are placed: join them "
                               "with a relation, e.g. '... to the left of ...' (scene.relations() lists the "
                               "true ones).")
            result = judge.score_reading(_true_reading(scene), claim)
            if result.all_correct:
                continue
            wrong = [name for name, ok in result.attributes.items() if not ok]
            names = [f"{o.color} {o.shape}" for o in scene.objects]
            true_relations = "; ".join(f"the {names[i]} is {r} the {names[j]}" for i, r, j in scene.relations())
            hint = {
                "relation": f"In this scene {true_relations} (rows count downward, so row 0 is the top).",
                "position": "The object is at the "
                            f"{POSITION_NAMES[(scene.objects[0].row, scene.objects[0].col)]}.",
            }
            details = " ".join(hint.get(name, "") for name in wrong).strip()
            raise Feedback(f"{read_as} Checked against the scene ({objects}), the judge finds it wrong about "
                           f"{', '.join(wrong)}. {details}".rstrip())

    return report("Exercise 3 (a caption the judge accepts)", check)
