# %% [markdown]
# # 01 · The Shapes dataset: solutions to the exercises
#
# One way to solve each exercise of lesson 01, checked by the same functions the lesson uses, then the
# measurements each exercise leads to, and the answers to "Check your understanding". Try the exercises
# yourself first: the checks' feedback is designed to guide you there.

# %%
import itertools
import random
from collections import Counter
from dataclasses import replace

import numpy as np

from dalle_lessons import evaluate, judge, shapes
from dalle_lessons.exercises.l01_shapes import check_count_scenes, check_leak_rate, check_near_miss

# %% [markdown]
# ## Exercise 1: how many pictures does a caption allow?
#
# Multiply the choices the caption leaves open. One object: 2 sizes unless one is stated, 9 cells unless a
# place is stated, 2 backgrounds unless one is named; a one-object caption allows no second object. Two
# objects: none at all if they share a color (the world forbids it); otherwise count the ordered pairs of
# cells (the red circle's cell, the blue square's cell) that the relation allows, then multiply by the
# sizes and backgrounds left open. The two objects have different colors, so each choice is one scene:
# there is no order to divide out.

# %%
CELLS = list(itertools.product(range(3), range(3)))


def count_scenes(caption: str) -> int:
    """How many distinct scenes of the world the caption is true of."""
    claim = shapes.parse_caption(caption)
    backgrounds = 1 if claim.background else len(shapes.BACKGROUNDS)
    sizes = [1 if o.size else len(shapes.SIZES) for o in claim.objects]
    if len(claim.objects) == 1:
        cells = 1 if claim.objects[0].row is not None else len(CELLS)
        return sizes[0] * cells * backgrounds
    a, b = claim.objects
    if a.color == b.color:
        return 0
    pairs = sum(claim.relation is None or shapes.relation_holds(cell_a, claim.relation, cell_b)
                for cell_a, cell_b in itertools.permutations(CELLS, 2))
    return pairs * sizes[0] * sizes[1] * backgrounds


assert check_count_scenes(count_scenes)
for caption in ["a red circle", "a red circle to the left of a blue square", "a blue diamond and a purple circle"]:
    print(f"{count_scenes(caption):4d}  {caption}")

# %% [markdown]
# "Left of" allows 27 of the 72 ordered cell pairs: 3 pairs of columns (0–1, 0–2, 1–2) times 9 pairs of
# rows. The lesson's measurement on 2,000 training captions:

# %%
open_by_objects = {1: [], 2: []}
for text in shapes.caption_corpus(2000):
    open_by_objects[len(shapes.parse_caption(text).objects)].append(count_scenes(text))
for k, counts in open_by_objects.items():
    exact = sum(n == 1 for n in counts) / len(counts)
    print(f"{k}-object captions: {len(counts)}, median {np.median(counts):.0f} scenes allowed "
          f"(from {min(counts)} to {max(counts)}); {exact:.0%} pin down exactly one scene")

# %% [markdown]
# A typical one-object caption still leaves a couple of pictures open (usually just the background), but a
# two-object caption never pins down a scene: it states a relation, not places, so at least 27 layouts
# fit. The transformer is not learning a function from captions to pictures but a *distribution* over the
# pictures a caption allows, and sampling (lesson 07) draws one of them. A judge that scored unstated
# attributes would punish the model for a free choice.
#
# ## Exercise 2: a near miss, one change away
#
# Change the first object (or the first one with a stated size), to the first color the claim does not use,
# or the first other shape; flip the stated size; move a lone object down one row (wrapping around); and
# replace the relation by its **opposite**, the only relation false of every picture the caption fits (a
# diagonal pair is both "left of" and "above"). What the claim does not state gives `None`.

# %%
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def near_miss(claim: shapes.Claim, kind: str) -> shapes.Claim | None:
    """`claim` with one thing of this kind changed, so that no picture fits both; None if it states none."""
    objects = list(claim.objects)
    if kind == "relation":
        return replace(claim, relation=OPPOSITE[claim.relation]) if claim.relation else None
    if kind == "color":
        used = {o.color for o in objects}
        objects[0] = replace(objects[0], color=next(c for c in shapes.COLORS if c not in used))
    elif kind == "shape":
        objects[0] = replace(objects[0], shape=next(s for s in shapes.SHAPES if s != objects[0].shape))
    elif kind == "size":
        k = next((k for k, o in enumerate(objects) if o.size is not None), None)
        if k is None:
            return None
        objects[k] = replace(objects[k], size="large" if objects[k].size == "small" else "small")
    elif kind == "position":
        if len(objects) != 1 or objects[0].row is None:
            return None
        objects[0] = replace(objects[0], row=(objects[0].row + 1) % 3)
    return replace(claim, objects=tuple(objects))


assert check_near_miss(near_miss)

# %% [markdown]
# The five near misses of one caption:

# %%
def say(claim: shapes.Claim | None) -> str:
    """A claim in words (sizes, colors, shapes and the relation it states)."""
    if claim is None:
        return "None (nothing of this kind is stated)"
    nouns = [" ".join(w for w in (o.size, o.color, o.shape) if w) for o in claim.objects]
    return f" {claim.relation} ".join(nouns) if claim.relation else " and ".join(nouns)


claim = shapes.parse_caption("a small yellow diamond above a large cyan cross")
print(f"{'caption':8}: {say(claim)}")
for kind in ("color", "shape", "size", "position", "relation"):
    print(f"{kind:8}: {say(near_miss(claim, kind))}")

# %% [markdown]
# The lesson's measurement: the judge on 200 blurred, noisy test pictures, against their true captions and
# against each kind of near miss.

# %%
test_set = shapes.ShapesDataset("test", 200, seed=0)
blurred = evaluate.degrade(test_set.images_uint8().float() / 255, noise=0.05, blur=1.0)
tried, accepted = Counter(), Counter()
for i in range(len(test_set)):
    _, claim = test_set.item_claim(i)
    reading = judge.read_image(blurred[i])
    for kind in ("true caption", "color", "shape", "size", "position", "relation"):
        said = claim if kind == "true caption" else near_miss(claim, kind)
        if said is not None:
            tried[kind] += 1
            accepted[kind] += judge.score_reading(reading, said).all_correct
for kind in tried:
    print(f"{kind:12}: judge accepts {accepted[kind]:3d} of {tried[kind]:3d}")
assert accepted["true caption"] >= 0.95 * tried["true caption"]
assert sum(accepted[k] for k in tried if k != "true caption") == 0

# %% [markdown]
# Even on pictures blurred by a pixel and sprinkled with noise, the judge accepts nearly every true caption
# and not a single near miss, of any kind. That is stronger evidence than the lesson's mismatched captions:
# each near miss is wrong in exactly one attribute, so rejecting all of them shows that the judge really
# checks each attribute (a judge that looked only at colors would accept every shape, size, position and
# relation near miss). Lesson 08 uses the same idea, near misses as hard negatives, to teach CLIP to bind
# words together.
#
# ## Exercise 3: how much of a test set is already in training?
#
# Put the training scenes' keys in a set, and count the test items whose key is in it. `scene.key()` sorts
# the objects, so a scene matches itself whatever order its objects were drawn in.

# %%
def leak_rate(train: list[shapes.Scene], test: list[shapes.Scene]) -> float:
    """The fraction of test items whose scene is also among the training items."""
    seen = {s.key() for s in train}
    return sum(s.key() in seen for s in test) / len(test)


assert check_leak_rate(leak_rate)

# %%
rng = random.Random(0)
drawn = [shapes.random_scene(rng) for _ in range(5000)]
random.Random(1).shuffle(drawn)
splits = {"shuffled and cut": (drawn[:4000], drawn[4500:]),
          "hashed (section 3)": (shapes.ShapesDataset("train", 4000, render_images=False).scenes,
                                 shapes.ShapesDataset("test", 500, render_images=False).scenes)}
for name, (train_part, test_part) in splits.items():
    by_objects = {k: [s for s in test_part if len(s.objects) == k] for k in (1, 2)}
    print(f"{name:18}: {leak_rate(train_part, test_part):6.1%} of test items already in training "
          f"(one object: {leak_rate(train_part, by_objects[1]):5.1%}, "
          f"two objects: {leak_rate(train_part, by_objects[2]):5.1%})")
assert leak_rate(*splits["hashed (section 3)"]) == 0 and leak_rate(*splits["shuffled and cut"]) > 0.3

# %% [markdown]
# Shuffling and cutting leaks about two in five test items into training: random scenes are one-object
# half the time, and there are only 1,260 one-object scenes, so 5,000 draws repeat each of them about
# twice, and a repeat that lands on both sides of the cut is a test picture the model has trained on
# (three in four one-object test items). Two-object scenes almost never repeat, so they hardly leak. A model
# that memorized would score well on such a test and tell us nothing. Hashing the scene puts every copy of
# a scene on the same side: nothing leaks, by construction. Web-scale datasets face the same problem with
# near-duplicate images, which are much harder to detect than a repeated `scene.key()`.
#
# ## Check your understanding: answers
#
# 1. **What "a red circle" allows.** The small red circle at the bottom right follows it (size and place are
#    unsaid, so free); the large red circle on white follows it too (the background is unsaid). The red
#    circle beside a blue square does not: a caption that names one object promises a picture with exactly
#    one, so the judge always scores the count. Otherwise "a red circle" would be satisfied by any picture
#    that contains one, and a generator could add anything it liked.
# 2. **What the hash is of.** A scene has many captions, so hashing the caption would send the same picture
#    to train under one caption and to test under another: the test would show the model pictures it has
#    trained on. Hashing the position in a list makes the split depend on how many scenes were drawn and in
#    which order: regenerating the data, or drawing more, moves scenes between splits, and repeats of one
#    scene land on both sides (exercise 3 measured 42 % of test items leaking that way).
# 3. **Why four colors and four shapes.** Every color and every shape still appears in training, with other
#    partners, so a held-out pair tests *composition*: putting together two things the model knows. If no
#    blue object ever appeared in training, "blue square" would test whether the model can draw a color it
#    has never seen, which no model can learn from this data; its failure would say nothing about
#    composition.
# 4. **Why 100 % on matched captions is not enough.** A judge that said "yes" to everything would score
#    100 % too. The evidence is that it also says "no" when it should: the mismatched-caption control (another
#    scene's caption, rejected about 99 % of the time) and, sharper, the near misses of exercise 2 (one
#    attribute wrong, all rejected even on blurred, noisy pictures).
# 5. **Judge versus CLIP.** A learned scorer has blind spots of its own, and a generator can learn to please
#    it; a ruler must be independent and checkable. The judge is a few hundred lines of transparent rules,
#    checked against scenes whose truth we know. DALL·E could not do the same because photographs and free
#    captions have no known scene behind them and no finite list of attributes to check, so a learned
#    scorer was the only option; the course uses one too, CLIP in lesson 08, but as a reranker, and
#    measures it with the judge.
