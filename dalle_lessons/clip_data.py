"""What CLIP trains and is tested on: captions, which images they truly describe, and near-miss captions.

Three ideas, all read from the data generator's own records (the `Scene` and the `Claim` of each
caption), never from the judge: the judge reads pixels and stays the course's independent referee.

- `claim_holds(claim, scene)`: whether a caption is true of a scene. "a red circle" is true of every
  scene with exactly one object, a red circle, wherever it is; CLIP's loss must not treat such
  equivalent pairs in a batch as negatives.
- `hard_negative(scene, key)`: a caption of a *slightly different* scene (one attribute changed, or
  two objects' colors or places exchanged) that is false of this one. A contrastive model that reads
  captions as a bag of words cannot tell "a red circle left of a blue square" from "a blue circle
  left of a red square"; training against such near misses teaches it to bind words together.
- `probe_variants(scene)`: for testing, one canonical caption and every caption that differs from it
  in exactly one thing (the binding probe of `evaluate clip`).
"""
from __future__ import annotations

import random

import torch
from dataclasses import replace

from .shapes import (COLORS, POSITION_NAMES, SHAPES, SIZES, Claim, Scene, ShapeObject, caption_scene,
                     heldout_pairs, relation_holds)

#: The kinds of near miss the probe tests, and whether they need one or two objects.
PROBE_KINDS = {"color": (1, 2), "shape": (1, 2), "size": (1, 2), "position": (1,), "relation": (2,),
               "swap": (2,)}
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
CANONICAL_RELATION = {"left of": "to the left of", "right of": "to the right of", "above": "above",
                      "below": "below"}


def claim_holds(claim: Claim, scene: Scene) -> bool:
    """Whether everything `claim` states is true of `scene`, and it has exactly the stated objects."""
    if len(claim.objects) != len(scene.objects):
        return False
    if claim.background is not None and claim.background != scene.background:
        return False
    matched = []
    for said in claim.objects:
        obj = next((o for o in scene.objects if o.color == said.color), None)  # a scene's colors differ
        if obj is None or obj in matched or obj.shape != said.shape:
            return False
        if said.size is not None and said.size != obj.size:
            return False
        if said.row is not None and (said.row, said.col) != (obj.row, obj.col):
            return False
        matched.append(obj)
    if claim.relation is not None:
        a, b = matched
        return relation_holds((a.row, a.col), claim.relation, (b.row, b.col))
    return True


def match_matrix(claims: list[Claim], scenes: list[Scene]) -> list[list[bool]]:
    """[caption][image]: whether caption i is true of scene j."""
    return [[claim_holds(c, s) for s in scenes] for c in claims]


# ----------------------------------------------------------------------------- hard negatives

def _has_heldout_pair(scene: Scene) -> bool:
    return any((o.color, o.shape) in heldout_pairs() for o in scene.objects)


def _changed_scenes(scene: Scene, claim: Claim, rng: random.Random) -> list[Scene]:
    """Scenes that differ from `scene` in one thing the caption states, in random order.

    With two objects, two times in three a *structural* change comes first: the objects' places
    exchanged (which flips the relation), or their colors or shapes exchanged (which flips the
    binding), every word staying the same. These are the near misses a bag-of-words reading cannot
    see, and drawn uniformly with the attribute changes they would come up too rarely to be learnt.
    """
    objs = list(scene.objects)
    attribute, structural = [], []
    used_colors = {o.color for o in objs}
    used_cells = {(o.row, o.col) for o in objs}
    stated = {said.color: said for said in claim.objects}
    for k, obj in enumerate(objs):
        said = stated.get(obj.color)
        if said is None:
            continue

        def with_obj(new: ShapeObject) -> Scene:
            return Scene(tuple(new if i == k else o for i, o in enumerate(objs)), scene.background)

        attribute.append(with_obj(replace(obj, color=rng.choice([c for c in COLORS if c not in used_colors]))))
        attribute.append(with_obj(replace(obj, shape=rng.choice([s for s in SHAPES if s != obj.shape]))))
        if said.size is not None:
            attribute.append(with_obj(replace(obj, size=[s for s in SIZES if s != obj.size][0])))
        if said.row is not None:
            row, col = rng.choice([c for c in POSITION_NAMES if c not in used_cells])
            attribute.append(with_obj(replace(obj, row=row, col=col)))
    rng.shuffle(attribute)
    if len(objs) != 2:
        return attribute
    a, b = objs
    places = Scene((replace(a, row=b.row, col=b.col), replace(b, row=a.row, col=a.col)), scene.background)
    swaps = [Scene((replace(a, color=b.color), replace(b, color=a.color)), scene.background)]
    if a.shape != b.shape:
        swaps.append(Scene((replace(a, shape=b.shape), replace(b, shape=a.shape)), scene.background))
    rng.shuffle(swaps)
    first = rng.randrange(3)  # 0: the relation flipped, 1: a binding swapped, 2: an attribute changed
    if first == 0:
        return [places] + swaps + attribute
    if first == 1:
        return swaps + [places] + attribute
    return attribute + [places] + swaps


def hard_negative(scene: Scene, key: str) -> tuple[str, Claim] | None:
    """A caption that is false of `scene` but true of a scene one change away (None if none is found).

    `key` seeds both the true caption's phrasing (`caption_scene(scene, Random(key))`) and the choice
    of change; the negative is captioned with the same seed, so it tends to share the phrasing. A
    change that would create a held-out color-shape pair is skipped: CLIP never reads those pairs.
    """
    found = hard_negative_scene(scene, key)
    return None if found is None else found[:2]


def hard_negative_scene(scene: Scene, key: str) -> tuple[str, Claim, Scene] | None:
    """`hard_negative`, and the scene one change away that the negative caption is true of.

    Rendered, that scene is a hard negative *image* for the true caption: the two captions and the two
    pictures make a 2 x 2 contrast in which only the binding (or one attribute) tells the pairs apart.
    """
    _, claim = caption_scene(scene, random.Random(key))
    rng = random.Random(f"{key}/negative")
    for changed in _changed_scenes(scene, claim, rng):
        if _has_heldout_pair(changed):
            continue
        text, negative = caption_scene(changed, random.Random(key))
        if not claim_holds(negative, scene):
            return text, negative, changed
    return None


# ----------------------------------------------------------------------------- the binding probe

def canonical_caption(objects: tuple[ShapeObject, ...], relation: str | None = None) -> str:
    """One fixed phrasing that states every attribute: '<size> <color> <shape> at the <place>' for one
    object, '<object> <relation> <object>' for two (positions then follow from the relation)."""
    def noun(o: ShapeObject) -> str:
        return f"a {o.size} {o.color} {o.shape}"
    if len(objects) == 1:
        o = objects[0]
        return f"{noun(o)} at the {POSITION_NAMES[(o.row, o.col)]}"
    a, b = objects
    return f"{noun(a)} {CANONICAL_RELATION[relation]} {noun(b)}"


def probe_variants(scene: Scene) -> tuple[str, dict[str, list[str]]]:
    """The canonical true caption of `scene` and, per probe kind, the captions one change away.

    Every variant is false of the scene: another color or shape for one object (colors already in
    the scene excluded), the other size, another cell (one object), the opposite relation, or the
    two objects' colors exchanged.
    """
    objs = scene.objects
    relation = scene.relations()[0][1] if len(objs) == 2 else None
    if len(objs) == 2 and scene.relations()[0][0] == 1:
        objs = (objs[1], objs[0])  # the first true relation reads "objects[1] RELATION objects[0]"
    true = canonical_caption(objs, relation)
    used = {o.color for o in objs}
    variants: dict[str, list[str]] = {kind: [] for kind, counts in PROBE_KINDS.items() if len(objs) in counts}

    def swap_in(k: int, new: ShapeObject) -> tuple[ShapeObject, ...]:
        return tuple(new if i == k else o for i, o in enumerate(objs))

    for k, o in enumerate(objs):
        variants["color"] += [canonical_caption(swap_in(k, replace(o, color=c)), relation)
                              for c in COLORS if c not in used]
        variants["shape"] += [canonical_caption(swap_in(k, replace(o, shape=s)), relation)
                              for s in SHAPES if s != o.shape]
        variants["size"].append(canonical_caption(swap_in(k, replace(o, size=[s for s in SIZES if s != o.size][0])),
                                                  relation))
    if len(objs) == 1:
        o = objs[0]
        variants["position"] = [canonical_caption((replace(o, row=r, col=c),))
                                for (r, c) in POSITION_NAMES if (r, c) != (o.row, o.col)]
    else:
        a, b = objs
        variants["relation"] = [canonical_caption(objs, OPPOSITE[relation])]
        variants["swap"] = [canonical_caption((replace(a, color=b.color), replace(b, color=a.color)), relation)]
    return true, variants


# ----------------------------------------------------------------------------- the same test, batched

_COLOR_INDEX = {c: i for i, c in enumerate(COLORS)}
_SHAPE_INDEX = {s: i for i, s in enumerate(SHAPES)}
_SIZE_INDEX = {s: i for i, s in enumerate(SIZES)}
_RELATION_INDEX = {"left of": 0, "right of": 1, "above": 2, "below": 3}
_BACKGROUND_INDEX = {"black": 0, "white": 1}


def encode_scenes(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    """Scenes as tensors indexed by color (a scene's colors differ): what `match_tensor` compares."""
    S, K = len(scenes), len(COLORS)
    table = {"n": torch.zeros(S, dtype=torch.long), "background": torch.zeros(S, dtype=torch.long),
             **{f: torch.full((S, K), -1, dtype=torch.long) for f in ("shape", "size", "row", "col")}}
    for i, scene in enumerate(scenes):
        table["n"][i], table["background"][i] = len(scene.objects), _BACKGROUND_INDEX[scene.background]
        for o in scene.objects:
            c = _COLOR_INDEX[o.color]
            table["shape"][i, c], table["size"][i, c] = _SHAPE_INDEX[o.shape], _SIZE_INDEX[o.size]
            table["row"][i, c], table["col"][i, c] = o.row, o.col
    return table


def encode_claims(claims: list[Claim]) -> dict[str, torch.Tensor]:
    """Claims as tensors, -1 where the caption leaves a value unsaid (or has no second object)."""
    C = len(claims)
    table = {f: torch.full((C,), -1, dtype=torch.long) for f in ("n", "background", "relation")}
    table.update({f"{f}{k}": torch.full((C,), -1, dtype=torch.long)
                  for f in ("color", "shape", "size", "row", "col") for k in (0, 1)})
    for i, claim in enumerate(claims):
        table["n"][i] = len(claim.objects)
        if claim.background is not None:
            table["background"][i] = _BACKGROUND_INDEX[claim.background]
        if claim.relation is not None:
            table["relation"][i] = _RELATION_INDEX[claim.relation]
        for k, said in enumerate(claim.objects):
            table[f"color{k}"][i], table[f"shape{k}"][i] = _COLOR_INDEX[said.color], _SHAPE_INDEX[said.shape]
            if said.size is not None:
                table[f"size{k}"][i] = _SIZE_INDEX[said.size]
            if said.row is not None:
                table[f"row{k}"][i], table[f"col{k}"][i] = said.row, said.col
    return table


def match_tensor(claims: dict[str, torch.Tensor], scenes: dict[str, torch.Tensor]) -> torch.Tensor:
    """[C, S] bool: `claim_holds` for every pair at once (equal to it, tested), from the encoded tables."""
    ok = claims["n"][:, None] == scenes["n"][None]
    ok &= (claims["background"][:, None] == -1) | (claims["background"][:, None] == scenes["background"][None])
    at = {}  # each claimed object's attributes in every scene, looked up by the claimed color: [C, S]
    for k in (0, 1):
        said = claims[f"color{k}"] >= 0
        color = claims[f"color{k}"].clamp(min=0)
        at[k] = {f: scenes[f][:, color].T for f in ("shape", "size", "row", "col")}
        fits = at[k]["shape"] == claims[f"shape{k}"][:, None]  # also false when the color is absent (-1)
        for f in ("size", "row", "col"):
            fits &= (claims[f"{f}{k}"][:, None] == -1) | (at[k][f] == claims[f"{f}{k}"][:, None])
        ok &= ~said[:, None] | fits
    ok &= ~((claims["color1"] >= 0) & (claims["color0"] == claims["color1"]))[:, None]
    ra, ca, rb, cb = at[0]["row"], at[0]["col"], at[1]["row"], at[1]["col"]
    holds = torch.stack([ca < cb, ca > cb, ra < rb, ra > rb])  # [4, C, S] in _RELATION_INDEX order
    relation = claims["relation"]
    chosen = holds.gather(0, relation.clamp(min=0)[None, :, None].expand(1, *ok.shape))[0]
    return ok & ((relation == -1)[:, None] | chosen)
