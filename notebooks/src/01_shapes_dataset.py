# %% [markdown]
# # 01 · The Shapes dataset, and the judge that reads it
#
# *Build DALL·E from Scratch, lesson 01.* DALL·E learns from (caption, image) pairs, and every model in this
# course learns from one small world of colored shapes. This lesson asks the questions DALL·E's data raises:
# what does a caption pin down, which pictures must never reach training, how is the data split, and how
# will we know whether a generated picture follows its caption? Nothing is trained here.
#
# The world's plumbing, anti-aliased rendering and how the judge reads pixels, is in two optional
# appendices at the end. Skip them on a first reading.

# %% [markdown]
# ## What you will build
#
# Both of DALL·E's stages learn from the same pairs: the discrete VAE (lesson 04) learns to compress the
# images into tokens, and the transformer (lesson 06) learns to continue a caption's tokens with image
# tokens. At the other end of the pipeline, something has to tell a good picture from a bad one. This
# lesson builds both ends:
#
# ```
# training:   scene ─┬─ render ──▶ image ──dVAE encoder──▶ image ids ─┐
#                    └─ caption ─▶ text ───tokenizer─────▶ text ids ──┴─▶ transformer
#             └──── lesson 01: the data ────┘
#
# generating: prompt ──▶ text ids ──transformer + sampling──▶ image ids ──dVAE decoder──▶ pixels ──judge──▶ score
#                                                                                                └─ lesson 01
# ```
#
# **Why a small procedural world instead of photos?**
#
# - *It runs on a laptop.* A 32×32 picture of one or two shapes is enough to show every idea in DALL·E, and
#   it is generated in microseconds from a seed: nothing is downloaded, every machine sees the same data.
# - *It can be measured.* With photos, "does this picture show an armchair in the shape of an avocado?" is
#   a matter of opinion. Here every picture comes from a scene we know exactly, so a program can read a
#   generated picture back and check each thing its caption claims.
# - *It keeps what makes the problem hard:* captions combine color, shape, size, position and relations, in
#   many phrasings; and some color–shape combinations are never shown in training, to test whether a model
#   can compose ideas it has only seen apart.
#
# By the end you will have:
#
# 1. met the world: its scenes, and what they look like at 32×32;
# 2. read captions back into `Claim`s, and seen what a caption leaves open;
# 3. split scenes into train / val / test / held-out by hashing, written from scratch and checked against
#    `shapes.split_of`;
# 4. loaded reproducible batches with `ShapesDataset`;
# 5. used the **judge**, and measured how far it can be trusted;
# 6. counted the pictures a caption allows, built near-miss captions, and measured a leaky split (exercises).

# %%
import hashlib
import random
import textwrap
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image, ImageDraw

from dalle_lessons import evaluate, judge, shapes

torch.set_printoptions(precision=4)
np.set_printoptions(precision=3, suppress=True)
plt.rcParams.update({"figure.dpi": 80, "font.size": 8})

# %% [markdown]
# ## 1. The world
#
# A **scene** is one or two objects on a plain background. Each object has a shape, a color, a size and a
# cell on a 3×3 grid. That is the whole world:

# %%
print("shapes     :", ", ".join(shapes.SHAPES))
print("colors     :", ", ".join(f"{name} {rgb}" for name, rgb in shapes.COLORS.items()))
print("sizes      :", ", ".join(f"{size} ({shapes.SIZE_FRACTION[size] * 32:.1f} px wide at 32x32)"
                                for size in shapes.SIZES))
print("backgrounds:", ", ".join(f"{name} {rgb}" for name, rgb in shapes.BACKGROUNDS.items()))
print("relations  :", ", ".join(shapes.RELATIONS))
print("positions  :")
for row in range(3):
    print("   " + " | ".join(f"{shapes.POSITION_NAMES[row, col]:^12}" for col in range(3)))

# %% [markdown]
# Two rules keep every scene readable: two objects never share a cell, and never share a color. How many
# distinct scenes does that allow?

# %%
one_object = len(shapes.SHAPES) * len(shapes.COLORS) * len(shapes.SIZES) * 9  # per background
# a second object: any shape and size, one of the 6 other colors, one of the 8 other cells;
# divided by 2 because the order in which we list the two objects does not matter
two_objects = one_object * (len(shapes.SHAPES) * (len(shapes.COLORS) - 1) * len(shapes.SIZES) * 8) // 2
n_backgrounds = len(shapes.BACKGROUNDS)
print(f"one-object scenes: {one_object * n_backgrounds:,}")
print(f"two-object scenes: {two_objects * n_backgrounds:,}")
print(f"all scenes       : {(one_object + two_objects) * n_backgrounds:,}")

# %% [markdown]
# About 300 thousand scenes: small enough to describe in a few lines, big enough that a model trained on
# ten thousand of them cannot just memorize the answers. Notice the imbalance, though: only 1,260 scenes
# have one object. We will meet it again in exercise 3.
#
# In code, a scene is a frozen dataclass. It checks its own rules, and it lists the spatial relations that
# hold between its objects, read as "object *i* RELATION object *j*":

# %%
scene = shapes.Scene((shapes.ShapeObject("circle", "red", "large", row=0, col=0),
                      shapes.ShapeObject("triangle", "green", "small", row=1, col=2)), background="white")
print(scene)
print("key      :", scene.key())
print("relations:", scene.relations())

try:
    shapes.ShapeObject("hexagon", "red", "large", 0, 0)
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# Row 0 is the **top** row: image rows count downward, like a pixel's y coordinate, so the red circle
# (row 0, col 0) is both *left of* and *above* the green triangle (row 1, col 2).
#
# `shapes.render(scene)` turns a scene into a 32×32 picture. It draws each scene 4× larger and averages it
# down, so edges are soft, like a small photograph's, rather than jagged (**Appendix A** builds this
# renderer from scratch and checks it pixel for pixel). Here is what a model will see:

# %%
rng = random.Random(0)
scenes = [shapes.random_scene(rng) for _ in range(16)]
fig, axes = plt.subplots(2, 8, figsize=(8, 2.4), layout="constrained")
for ax, s in zip(axes.flat, scenes):
    ax.imshow(shapes.render(s))
    ax.axis("off")
fig.suptitle("16 random scenes at 32x32")
plt.show()

# %% [markdown]
# A small object is only 7 pixels across, about 2×2 of the tokens the dVAE of lesson 04 will cut the
# picture into, yet every shape keeps its own silhouette (Appendix A zooms in).
#
# ## 2. Captions: what a caption pins down
#
# A caption is drawn at random for a scene: synonyms for colors, shapes and sizes ("crimson", "disc",
# "tiny"), several sentence templates, and attributes that may be left unsaid. One scene, eight captions:

# %%
for seed in range(8):
    text, claim = shapes.caption_scene(scene, seed)
    print(f"seed {seed}: {text}")

# %% [markdown]
# Real captions are like this too: people say "crimson" or "red", and "above a box: a disc" names the second
# object first. The tokenizer (lesson 02) and the transformer have to learn that these phrasings describe
# the same picture, and that word order decides which object is on top.
#
# **What does a caption promise?** Only what it states. Alongside each caption, `caption_scene` returns a
# `Claim`: the objects the caption names, in caption order, with `None` for every attribute it leaves
# unsaid, plus the relation and the background if stated.

# %%
text, claim = shapes.caption_scene(scene, 3)
print(text)
print(claim)

# %% [markdown]
# This caption states no sizes, so a picture with a *small* red circle would follow it just as well:
# unstated attributes are the generator's free choice, and the judge will not score them. The number of
# objects is always scored, though: a caption that names one object promises a picture with exactly one. A
# two-object caption states a relation rather than absolute positions.
#
# So a caption does not name *one* picture; it names a set of them, and a text-to-image model must learn to
# draw from that set. How large is it? That is exercise 1, and the answer shapes everything the transformer
# has to learn.
#
# A generated picture comes with a prompt, not with a `Claim`, so the claim has to be read back from text.
# `shapes.parse_caption` does that for every phrasing the generator can produce (and for free-form prompts
# in the same words). Let us check it on a few thousand captions:

# %%
rng = random.Random(1)
n_checked = 3000
for _ in range(n_checked):
    text, claim = shapes.caption_scene(shapes.random_scene(rng), rng)
    assert shapes.parse_caption(text) == claim, (text, claim)
print(f"parse_caption(caption) == claim for all {n_checked} captions")

distinct = {shapes.caption_scene(scene, seed)[0] for seed in range(1000)}
print(f"the example scene alone has {len(distinct)} distinct captions among 1000 draws")

# %%
print(shapes.parse_caption("a big red circle above a small blue square"))
try:
    shapes.parse_caption("a dog on a sofa")
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# ## 3. Splits: hashing, and pairs the model never sees
#
# A model must be tested on scenes it was not trained on. The usual recipe, shuffling a list and cutting
# it, is fragile here: the split of a scene would depend on how many scenes were drawn and in which order,
# so generating a bigger dataset could move a test scene into training (exercise 3 measures a second,
# worse problem). Instead, a scene's split is a function of **the scene itself**: hash its canonical key
# (which lists the objects in sorted order, so the order in which they were drawn does not matter) to a
# number in [0, 1) and cut that number at 0.8 and 0.9. The same scene always lands in the same split, on
# every machine, however it was sampled or captioned. (SHA-256, not Python's `hash()`, which is salted
# differently in every process.)
#
# One rule comes first. DALL·E's headline claim is **compositional generalization**: it can draw "an
# armchair in the shape of an avocado", a combination presumably absent from its training data. With 250
# million web images nobody can check what the model did see. Here we can: four color–shape pairs are
# **held out**, and any scene containing one goes to a separate `heldout` split that training never
# touches. The pairs are committed in `data/splits.json`:

# %%
definition = shapes.load_split_definition()
HELDOUT = {tuple(pair) for pair in definition["heldout_pairs"]}
print("held-out color-shape pairs:", sorted(HELDOUT))
print("fractions of the rest     :", definition["fractions"])

# %% [markdown]
# Each held-out pair uses a different color and a different shape, so every color and every shape is still
# seen in training, just never *together* in those combinations. Later lessons ask the trained model for
# exactly these pictures:

# %%
fig, axes = plt.subplots(1, 4, figsize=(6, 2), layout="constrained")
for ax, (color, shape) in zip(axes, sorted(HELDOUT)):
    ax.imshow(shapes.render(shapes.Scene((shapes.ShapeObject(shape, color, "large", 1, 1),), "black")))
    ax.set_title(f"{color} {shape}")
    ax.axis("off")
fig.suptitle("never in the training set")
plt.show()

# %% [markdown]
# The whole rule fits in a few lines. We write it from scratch:

# %%
def unit_hash(text: str) -> float:
    """A number in [0, 1) that depends only on `text`, the same on every machine."""
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(scene: shapes.Scene) -> str:
    """'heldout' if the scene holds a held-out color-shape pair; otherwise its key's hash decides."""
    if any((obj.color, obj.shape) in HELDOUT for obj in scene.objects):
        return "heldout"
    u, fractions = unit_hash(scene.key()), definition["fractions"]
    if u < fractions["train"]:
        return "train"
    if u < fractions["train"] + fractions["val"]:
        return "val"
    return "test"

# %% [markdown]
# and check it against the library's `shapes.split_of` on 20,000 random scenes, measuring the split sizes
# as we go:

# %%
rng = random.Random(2)
sample = [shapes.random_scene(rng) for _ in range(20_000)]
counts = Counter()
for s in sample:
    assert split_of(s) == shapes.split_of(s)
    counts[split_of(s)] += 1
print("split_of agrees with shapes.split_of on all 20,000 scenes")
not_held = len(sample) - counts["heldout"]
for name in shapes.SPLITS:
    share = f"({counts[name] / not_held:.1%} of the rest)" if name != "heldout" else ""
    print(f"  {name:8}: {counts[name]:6,d} scenes  {counts[name] / len(sample):6.1%}  {share}")

# %% [markdown]
# About 1 scene in 6 contains a held-out pair (more among two-object scenes, which have two chances); the
# rest split 80 / 10 / 10. Reversing the order of a scene's objects changes nothing, and a training sample
# contains every color and every shape but none of the held-out pairs:

# %%
swapped = shapes.Scene(scene.objects[::-1], scene.background)
assert swapped.key() == scene.key() and shapes.split_of(swapped) == shapes.split_of(scene)

train_scenes = shapes.ShapesDataset("train", size=5000, render_images=False).scenes
pairs_seen = {(obj.color, obj.shape) for s in train_scenes for obj in s.objects}
assert not pairs_seen & HELDOUT
assert {c for c, _ in pairs_seen} == set(shapes.COLORS) and {s for _, s in pairs_seen} == set(shapes.SHAPES)
print(f"5,000 training scenes: {len(pairs_seen)} of 35 color-shape pairs seen, none of the 4 held out")

# %% [markdown]
# ## 4. A PyTorch `Dataset`
#
# `shapes.ShapesDataset(split, size, seed)` is a fixed, seeded list of scenes from one split. Item `i` is the
# rendered image as a float tensor `[3, H, W]` in [0, 1], its caption, and the scene (kept so that lessons
# can check what a model makes of it). The image size comes from the preset: `cpu` (the course default) is
# 32×32.

# %%
train = shapes.ShapesDataset("train", size=1000, seed=0)
image, caption, item_scene = train[0]
print("image  :", tuple(image.shape), image.dtype, f"values in [{image.min():.3f}, {image.max():.3f}]")
print("caption:", caption)
print("scene  :", item_scene.key())

# %% [markdown]
# A `DataLoader` stacks images into a batch. Captions and scenes are not tensors, so `shapes.collate` keeps
# them as lists:

# %%
loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True, collate_fn=shapes.collate,
                                     generator=torch.Generator().manual_seed(0))
images, captions, batch_scenes = next(iter(loader))
print("images  :", tuple(images.shape), images.dtype)
print("captions:", len(captions), "strings, e.g.", repr(captions[0]))

fig, axes = plt.subplots(1, 6, figsize=(8, 2.4))
for ax, img, cap in zip(axes, images, captions):
    ax.imshow(img.permute(1, 2, 0))
    ax.set_title(textwrap.fill(cap, 18), fontsize=6)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# Same seed, same data: building the dataset again gives the same tensors and captions, and the shuffled
# loader with the same generator seed gives the same batches. A different seed gives different scenes from
# the same split.

# %%
again = shapes.ShapesDataset("train", size=1000, seed=0)
assert all(torch.equal(train[i][0], again[i][0]) and train[i][1] == again[i][1] for i in range(100))
loader_again = torch.utils.data.DataLoader(again, batch_size=16, shuffle=True, collate_fn=shapes.collate,
                                           generator=torch.Generator().manual_seed(0))
images_again, captions_again, _ = next(iter(loader_again))
assert torch.equal(images, images_again) and captions == captions_again
other = shapes.ShapesDataset("train", size=1000, seed=1)
print("same seed: identical; seed 1 shares", sum(a == b for a, b in zip(train.scenes, other.scenes)),
      "of 1000 scenes with seed 0")

# %% [markdown]
# Rendering is cheap, but training reads every image many times, so the training lessons pass `cache=True`:
# the dataset renders all its images once into `data/cache/` (a generated folder that is never committed)
# and loads them from there afterwards.
#
# ## 5. The judge: what it is for
#
# Later lessons generate pictures, and we will want to know, as a number, whether each one follows its
# caption. DALL·E reranked its samples with CLIP, a neural network trained to match pictures with text. A
# learned scorer is a fine tool but a poor **ruler**: it has blind spots of its own, and a generator can
# learn to please it. In the Shapes world we can do better, with a short, transparent program that reads a
# picture back into a scene: the background is the median color; every pixel is explained as a mix of the
# background and one palette color (which copes with soft and blurred edges); each blob of one color is an
# object, its center gives the cell, and comparing its outline with templates of every shape and size gives
# the rest. (**Appendix B** builds the core of it from scratch.) Here it reads a two-object picture:

# %%
two = shapes.Scene((shapes.ShapeObject("circle", "red", "large", 0, 0),
                    shapes.ShapeObject("square", "green", "small", 1, 2)), "black")
reading = judge.read_image(shapes.render(two))
print("background:", reading.background)
for obj in reading.objects:
    print(f"  {obj.size} {obj.color} {obj.shape} at row {obj.row}, col {obj.col}: "
          f"area {obj.area:.1f} px, template error {obj.match_error:.2f}")
assert judge.scene_matches(reading, two)

# %% [markdown]
# To **score** a picture against a caption, the judge parses the caption into a `Claim`, matches the claimed
# objects to the detected ones, and checks every stated attribute, plus the count. A picture follows a
# caption only if everything is right (`all_correct`). The last two captions below are true about the red
# circle, but the picture holds an extra object, so they are wrong:

# %%
tests = ["a large red circle to the left of a small green square",
         "a crimson disc above an emerald box",
         "a red circle to the right of a green square",
         "a red circle to the left of a green triangle",
         "a small red circle to the left of a small green square",
         "a green square below a red circle on a white background",
         "a red circle",
         "a large red circle at the top left"]
picture = shapes.render(two)
for caption in tests:
    result = judge.score(picture, caption)
    wrong = [name for name, ok in result.attributes.items() if not ok]
    print(f"{'yes' if result.all_correct else 'no ':3}  {caption:58}  wrong: {', '.join(wrong) or '-'}")

# %% [markdown]
# And the other way around: a caption that leaves size and position unsaid is satisfied by a picture
# whatever its size and position.

# %%
lone = shapes.render(shapes.Scene((shapes.ShapeObject("circle", "red", "small", 2, 2),), "white"))
for caption in ["a red circle", "a tiny scarlet dot in the lower right", "a large red circle"]:
    print(f"{str(judge.score(lone, caption).all_correct):5}  {caption}")

# %% [markdown]
# ### How much can we trust the judge?
#
# A ruler must be checked before it is used. `evaluate.evaluate_judge` renders test-split scenes (half with
# one object, half with two), scores each against its own caption, and reports the percentage judged
# all-correct and the accuracy on each stated attribute. It does so on clean pictures and on degraded ones
# (pixel noise, blur, both), because the pictures a dVAE decodes will be soft and slightly noisy.
# `scene_exact` is stricter still: every attribute of every object read back exactly, stated or not.
#
# A judge that said "yes" to everything would also score 100 % on matched pairs, so the last rows are a
# **negative control**: each picture is scored against the caption of a *different* scene. A trustworthy
# judge rejects nearly all of those (lower is better). Its per-attribute numbers there are roughly chance
# agreement, e.g. about 1 in 7 for color.
#
# We use 200 pictures here to keep the notebook fast; the course's quoted figure uses 2,000
# (`python -m dalle_lessons evaluate judge`).

# %%
rows = evaluate.evaluate_judge(n=200)
print(evaluate.format_table(rows, ["condition", "objects", "n", "all_correct", "shape", "color", "size",
                                   "position", "relation", "scene_exact"]))
clean = [r for r in rows if r["condition"] == "clean"]
control = [r for r in rows if r["condition"].startswith("mismatched")]
assert all(r["all_correct"] >= 95 for r in clean) and all(r["all_correct"] <= 5 for r in control)

# %% [markdown]
# The judge reads clean and mildly degraded pictures essentially perfectly and rejects mismatched captions.
# The rare mismatched caption it accepts is no mistake: another scene's caption can be true of this picture
# too ("a small yellow cross, nothing else" fits any lone small yellow cross, wherever it is). So from
# lesson 07 on, "the model drew what the caption said" is a measured number.
#
# That negative control is a weak one, though: another scene's caption is usually wrong in several ways at
# once, so a judge that checked only the colors would pass it too. Exercise 2 builds a sharper one.

# %% [markdown]
# ## 6. Exercises
#
# Each exercise is a function to write. Replace `raise NotImplementedError` with your code and run the cell:
# the check says what is right or, in plain words, what is not yet. None of them is shown above, and no
# function of the package does them for you.

# %%
from dalle_lessons.exercises.l01_shapes import check_count_scenes, check_leak_rate, check_near_miss

# %% [markdown]
# ### Exercise 1: how many pictures does a caption allow?
#
# Write `count_scenes(caption)`: the number of distinct scenes of the world that the caption is true of,
# in the judge's sense (exactly the objects it names, every stated attribute right, unstated ones free).
# Start from `shapes.parse_caption(caption)`. Some cases to reason out: "a red circle"; "a large red circle
# at the top left"; "a red circle to the left of a blue square"; "a red circle to the left of a red square".
# You may count with multiplication, or enumerate the candidate scenes and test each one: both are fine.
# `shapes.relation_holds(cell_a, relation, cell_b)` tells whether a relation holds between two cells.
#
# *Predict first:* how many scenes does a typical one-object training caption allow? A two-object one?

# %%
def count_scenes(caption: str) -> int:
    """How many distinct scenes of the world the caption is true of."""
    raise NotImplementedError


ok = check_count_scenes(count_scenes)

# %% [markdown]
# Once your count passes, this cell measures what 2,000 training captions leave open:

# %%
if ok:
    open_by_objects = {1: [], 2: []}
    for text in shapes.caption_corpus(2000):
        open_by_objects[len(shapes.parse_caption(text).objects)].append(count_scenes(text))
    for k, counts in open_by_objects.items():
        exact = sum(n == 1 for n in counts) / len(counts)
        print(f"{k}-object captions: {len(counts)}, median {np.median(counts):.0f} scenes allowed "
              f"(from {min(counts)} to {max(counts)}); {exact:.0%} pin down exactly one scene")

# %% [markdown]
# ### Exercise 2: a near miss, one change away
#
# Write `near_miss(claim, kind)`: a `Claim` that differs from `claim` in exactly one thing of the given
# `kind`, and is therefore false of every picture the claim is true of, while some other picture could
# follow it. The kinds: `"color"` or `"shape"` (of one object), `"size"` (one object's *stated* size),
# `"position"` (a lone object's *stated* place) and `"relation"`. Keep everything else, and leave unsaid what
# the claim leaves unsaid. When the claim states nothing of that kind, there is nothing to change: return
# `None`. Claims are frozen dataclasses: `dataclasses.replace(claim.objects[0], color="blue")` builds a
# changed object, `dataclasses.replace(claim, objects=...)` a changed claim. Two traps: a color the other
# object already has, and a relation that can still be true (think of a diagonal pair).

# %%
def near_miss(claim: shapes.Claim, kind: str) -> shapes.Claim | None:
    """`claim` with one thing of this kind changed, so that no picture fits both; None if it states none."""
    raise NotImplementedError


ok = check_near_miss(near_miss)

# %% [markdown]
# *Predict, then measure:* on blurred, noisy pictures (blur 1 px, noise 0.05), how often will the judge accept
# a near miss of each kind? Once your function passes, this cell measures it on 200 test scenes, next to
# the true captions:

# %%
if ok:
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

# %% [markdown]
# ### Exercise 3: how much of a test set is already in training?
#
# Section 3 hashed each scene to its split. The naive alternative draws a list of scenes, shuffles it and
# cuts it. Write `leak_rate(train, test)`: the fraction of the test *items* (a list of `Scene`s, repeats
# counted) whose scene also appears among the training items, in any object order (hint: `scene.key()`).
#
# *Predict first:* draw 5,000 random scenes, shuffle, keep 4,000 for training and 500 for testing. What
# fraction of the test items will training already contain? (Section 1's count of one-object scenes is the
# clue.)

# %%
def leak_rate(train: list[shapes.Scene], test: list[shapes.Scene]) -> float:
    """The fraction of test items whose scene is also among the training items."""
    raise NotImplementedError


ok = check_leak_rate(leak_rate)

# %% [markdown]
# Once it passes, this cell measures the naive split against section 3's hashed one:

# %%
if ok:
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

# %% [markdown]
# The solutions are in [solutions/01_shapes_dataset.ipynb](solutions/01_shapes_dataset.ipynb), with the
# numbers these cells print and what they mean.
#
# ## Takeaways
#
# - **Data first, and measurable.** Both of DALL·E's stages learn from the same (caption, image) pairs. Ours
#   come from a procedural world that is small enough for a laptop, identical on every machine, and exactly
#   known, so that quality can be measured rather than eyeballed.
# - **A caption names a set of pictures, not one.** A `Claim` records exactly what the caption states;
#   unstated attributes are free, the count of objects is not. A text-to-image model must learn to draw from
#   that set.
# - **Splits by hash, not by shuffle.** A scene's split depends only on the scene, so nothing leaks between
#   train and test however the data is regenerated; held-out color–shape pairs, which provably never reach
#   training, give an honest test of composition.
# - **A ruler you can check.** The judge is validated on clean and degraded pictures, and negative controls
#   (other scenes' captions, and near misses one change away) show that it rejects wrong captions.
# - **Getting DALL·E right.** DALL·E was trained on 250 million text–image pairs collected from the internet
#   (the paper, section 2.3), not on a labelled dataset like this one; the avocado armchair comes from a
#   gallery of samples, and the paper's numbers are FID and Inception Score on MS-COCO and CUB and human
#   preference against an earlier model. What such a training set contained cannot be listed, so its
#   compositional claims are hard to verify; a held-out split and a checked judge are how this course
#   measures them. DALL·E ranks its samples with CLIP, a contrastive model: the contrastive loss is CLIP's,
#   not the transformer's ([lesson 08](08_reranking_with_clip.ipynb) builds a small CLIP).
#
# ## Check your understanding
#
# 1. Which of these pictures follow "a red circle": a small red circle at the bottom right; a large red
#    circle beside a blue square; a large red circle on a white background? Why does the judge score the
#    number of objects, which the caption never mentions?
# 2. A scene's split is a hash of `scene.key()`. What would go wrong if we hashed the caption instead, or
#    the scene's position in the list of drawn scenes?
# 3. The four held-out pairs use four different colors and four different shapes. Why does that matter?
#    What would a test on "blue square" measure if no blue object ever appeared in training?
# 4. The judge accepts 100 % of matched captions on clean pictures. Why is that, on its own, no evidence that
#    the judge works, and which two controls in this lesson supply the evidence?
# 5. DALL·E used a learned model, CLIP, to score its samples. Why does this course measure quality with a
#    hand-written judge instead, and why could DALL·E not do the same?
#
# The answers are in the [solutions notebook](solutions/01_shapes_dataset.ipynb).
#
# **Next: [02 · tokenization](02_tokenization.ipynb)**, which turns these captions into the integer ids a
# transformer reads.

# %% [markdown]
# ---
#
# ## Appendix A (optional): drawing a scene from scratch, and why its edges are soft
#
# *The main lesson does not need this section. It builds `shapes.render` from scratch and shows why the
# course's pictures are anti-aliased.*
#
# Each cell is a third of the image; an object sits at the center of its cell, and its bounding box is 22 %
# (small) or 32 % (large) of the image side. Every shape except the circle is a polygon, so a shape is just
# a list of corners around its center:

# %%
def shape_outline(shape: str, cx: float, cy: float, half: float) -> list[tuple[float, float]] | None:
    """Corners of a shape whose bounding box is 2*half wide, centered at (cx, cy); None for a circle."""
    left, right, top, bottom = cx - half, cx + half, cy - half, cy + half
    if shape == "square":
        return [(left, top), (right, top), (right, bottom), (left, bottom)]
    if shape == "triangle":  # pointing up
        return [(cx, top), (right, bottom), (left, bottom)]
    if shape == "diamond":
        return [(cx, top), (right, cy), (cx, bottom), (left, cy)]
    if shape == "cross":  # a plus sign whose arms are a third of the box wide
        t = half / 3
        return [(cx - t, top), (cx + t, top), (cx + t, cy - t), (right, cy - t), (right, cy + t),
                (cx + t, cy + t), (cx + t, bottom), (cx - t, bottom), (cx - t, cy + t), (left, cy + t),
                (left, cy - t), (cx - t, cy - t)]
    return None  # the circle is drawn as an ellipse in the same box

# %% [markdown]
# Pillow's `polygon` decides for each pixel whether it is inside the shape or not. At 32×32 that gives
# staircase edges and only two colors per object. A camera does something else: each sensor pixel
# *averages* the light over its area, so a pixel half covered by a red edge comes out half red. We get the
# same effect by **supersampling**: draw the scene 4× larger, then average every 4×4 block of pixels into
# one (`Image.Resampling.BOX`).

# %%
def render_scene(scene: shapes.Scene, image_size: int = 32, supersample: int = 4) -> Image.Image:
    """Draw a scene at `supersample` times the size, then average it down to image_size x image_size."""
    big = image_size * supersample
    image = Image.new("RGB", (big, big), shapes.BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    cell = big / 3
    for obj in scene.objects:
        cx, cy = (obj.col + 0.5) * cell, (obj.row + 0.5) * cell
        half = shapes.SIZE_FRACTION[obj.size] * big / 2
        color = shapes.COLORS[obj.color]
        corners = shape_outline(obj.shape, cx, cy, half)
        if corners is None:
            draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=color)
        else:
            draw.polygon(corners, fill=color)
    return image.resize((image_size, image_size), Image.Resampling.BOX)

# %% [markdown]
# Our from-scratch version must agree with the package's `shapes.render` exactly, on every pixel, at the
# course's 32×32 and at Colab's 64×64:

# %%
rng = random.Random(0)
for s in [shapes.random_scene(rng) for _ in range(200)]:
    for size in (32, 64):
        assert np.array_equal(np.asarray(render_scene(s, size)), np.asarray(shapes.render(s, size)))
print("200 random scenes at 32x32 and 64x64: identical to shapes.render, pixel for pixel")

# %% [markdown]
# Here is the difference supersampling makes, zoomed in. Counting the distinct colors in each picture shows
# what the averaging added: in-between shades along every edge, in proportion to how much of the pixel the
# shape covers.

# %%
demo = shapes.Scene((shapes.ShapeObject("circle", "red", "large", 0, 0),
                     shapes.ShapeObject("triangle", "blue", "large", 1, 1)), "white")
sharp, smooth = np.asarray(render_scene(demo, supersample=1)), np.asarray(render_scene(demo))
for name, pixels in [("drawn at 32x32", sharp), ("drawn at 128x128, averaged", smooth)]:
    print(f"{name:27}: {len(np.unique(pixels.reshape(-1, 3), axis=0)):3d} distinct colors")

fig, axes = plt.subplots(1, 2, figsize=(6, 3))
titles = ("no supersampling: jagged", "4x supersampling: anti-aliased")
for ax, pixels, title in zip(axes, (sharp, smooth), titles):
    ax.imshow(pixels[:22, :22], interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# Anti-aliasing matters three times over. The pictures look like small photographs rather than binary
# masks, so the dVAE must learn to reproduce smooth edges. Sizes and positions are not rounded to whole
# pixels. And the judge must cope with mixed pixels, which prepares it for the soft, blurry pictures a
# generator produces.
#
# **Is a small shape still a shape at 32×32?** A small object is only 7 pixels across. If a small triangle
# and a small diamond looked alike at this resolution, no model could learn to draw the difference and no
# judge could score it. The dashed lines mark the 4×4-pixel patches that each become **one token** of the
# dVAE in lesson 04 (a 32×32 image becomes an 8×8 grid of tokens):

# %%
fig, axes = plt.subplots(2, 5, figsize=(7, 3.6), layout="constrained")
for col, shape in enumerate(shapes.SHAPES):
    for row, size in enumerate(shapes.SIZES):
        one = shapes.Scene((shapes.ShapeObject(shape, "purple", size, 1, 1),), "white")
        ax = axes[row, col]
        ax.imshow(np.asarray(shapes.render(one))[8:24, 8:24], interpolation="nearest", extent=(8, 24, 24, 8))
        for line in (12, 16, 20):  # the dVAE's 4x4-pixel token boundaries
            ax.axhline(line, color="gray", lw=0.6, ls="--")
            ax.axvline(line, color="gray", lw=0.6, ls="--")
        ax.set_title(f"{size} {shape}")
        ax.set_xticks([])
        ax.set_yticks([])
fig.suptitle("the center cell, zoomed: every shape stays distinct at 32x32")
plt.show()

# %% [markdown]
# Every shape keeps its own silhouette, even when small: the triangle has a flat base, the diamond four
# points, the cross its arms. A small shape spans about 2×2 tokens, so the dVAE has just a handful of codes
# in which to keep its outline.
#
# ## Appendix B (optional): inside the judge
#
# *The main lesson uses the judge as a tool. This section builds the core of it from scratch for a
# one-object picture, and checks it against `judge.read_image`.*
#
# **Step 1: the background.** An object covers at most about a tenth of the picture (a large square is ~110
# of 1,024 pixels), so the **median** color is the background, even with noise.
#
# **Step 2: unmixing.** Thanks to anti-aliasing (and, later, blur), an edge pixel is a mix of the background
# color $b$ and an object color $c$: $p \approx b + \alpha\,(c - b)$. For each palette color, the best
# $\alpha$ is a least-squares projection, $\alpha = \langle p - b,\ c - b\rangle / \lVert c - b \rVert^2$,
# clipped to [0, 1]. The color whose mix leaves the smallest residual explains the pixel. This works because
# every palette color lies far from the others and from both backgrounds.

# %%
PALETTE = np.array(list(shapes.COLORS.values()), dtype=np.float32) / 255  # [7, 3]
COLOR_NAMES = list(shapes.COLORS)
BACKGROUND_RGB = {name: np.array(rgb, dtype=np.float32) / 255 for name, rgb in shapes.BACKGROUNDS.items()}


def find_background(pixels: np.ndarray) -> tuple[str, np.ndarray]:
    """The median color of an [H, W, 3] image, and the name of the nearest background."""
    median = np.median(pixels.reshape(-1, 3), axis=0)
    name = min(BACKGROUND_RGB, key=lambda n: ((BACKGROUND_RGB[n] - median) ** 2).sum())
    return name, median


def unmix(pixels: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """alpha [H, W, 7]: each palette color's share of each pixel; best [H, W]: the color that explains it."""
    offset = pixels - background  # [H, W, 3]
    directions = PALETTE - background  # [7, 3]
    alpha = np.clip(offset @ directions.T / (directions**2).sum(1), 0.0, 1.0)  # [H, W, 7]
    residual = ((offset[:, :, None, :] - alpha[..., None] * directions) ** 2).sum(-1)  # [H, W, 7]
    return alpha, residual.argmin(-1)

# %% [markdown]
# **Step 3: the object.** Pixels at least half object color (α ≥ 0.5) are the object; their majority color
# is its color, and that color's α over the whole picture is a *soft mask* of it.
#
# **Step 4: the cell.** The α-weighted center of mass of the soft mask lies in the object's cell. (A
# triangle's center of mass sits a sixth of its width below its box center, under 2 pixels, while a cell
# is 10.7 pixels tall, so it never changes cells.)
#
# **Step 5: the size.** The obvious measure is the area, the sum of α. But area depends on the shape as much
# as on the size. Look:

# %%
print("area (sum of alpha, in pixels) of each shape in the center cell at 32x32:")
for shape in shapes.SHAPES:
    areas = []
    for size in shapes.SIZES:
        pixels = np.asarray(shapes.render(shapes.Scene((shapes.ShapeObject(shape, "red", size, 1, 1),),
                                                       "black")), dtype=np.float32) / 255
        alpha, _ = unmix(pixels, find_background(pixels)[1])
        areas.append(alpha[..., COLOR_NAMES.index("red")].sum())
    print(f"  {shape:8}: small {areas[0]:5.1f}   large {areas[1]:5.1f}")

# %% [markdown]
# A *small* square covers as many pixels as a *large* diamond, so no area threshold can read the size. The
# **width** can: every shape's bounding box is exactly 22 % or 32 % of the image wide. We measure it softly:
# for each column, the most the object fills any pixel in it; summed over the columns (and likewise for the
# rows, keeping the larger) that is the width in pixels. A threshold halfway between the two sizes, 27 % of
# the image, separates them.

# %%
def mini_judge(image: Image.Image) -> dict:
    """Read the background, color, size and cell of the single object in a picture."""
    pixels = np.asarray(image, dtype=np.float32) / 255
    n = pixels.shape[0]
    background, background_rgb = find_background(pixels)
    alpha, best = unmix(pixels, background_rgb)
    own_alpha = np.take_along_axis(alpha, best[..., None], axis=-1)[..., 0]
    solid = own_alpha >= 0.5
    color = int(np.bincount(best[solid], minlength=len(COLOR_NAMES)).argmax())
    soft = alpha[..., color]  # [H, W], the object's soft mask
    ys, xs = np.mgrid[0:n, 0:n] + 0.5  # pixel centers
    cy, cx = (soft * ys).sum() / soft.sum(), (soft * xs).sum() / soft.sum()
    width = max(soft.max(axis=0).sum(), soft.max(axis=1).sum())
    return {"background": background, "color": COLOR_NAMES[color],
            "size": "large" if width > 0.27 * n else "small",
            "row": min(2, int(cy // (n / 3))), "col": min(2, int(cx // (n / 3))),
            "alpha": soft, "solid": solid}

# %% [markdown]
# Now compare it with the library's `judge.read_image` on a few hundred one-object pictures:

# %%
rng = random.Random(3)
n_total = 300
for _ in range(n_total):
    s = shapes.random_scene(rng, n_objects=1)
    picture = shapes.render(s)
    ours, library = mini_judge(picture), judge.read_image(picture)
    (theirs,) = library.objects
    ours_tuple = (ours["background"], ours["color"], ours["size"], ours["row"], ours["col"])
    theirs_tuple = (library.background, theirs.color, theirs.size, theirs.row, theirs.col)
    truth = (s.background, s.objects[0].color, s.objects[0].size, s.objects[0].row, s.objects[0].col)
    assert ours_tuple == theirs_tuple == truth, (ours_tuple, theirs_tuple, truth)
print(f"mini judge == judge.read_image == the true scene on all {n_total} one-object pictures "
      "(background, color, size, row, col)")

# The unmixing step itself is the library's too: same α for every color, same best color per pixel.
pixels = np.asarray(picture, dtype=np.float32) / 255
background_rgb = find_background(pixels)[1]
our_alpha, our_best = unmix(pixels, background_rgb)
library_best, library_alpha = judge.unmix(pixels, background_rgb)
assert (our_best == library_best).all() and np.allclose(our_alpha, library_alpha.transpose(1, 2, 0), atol=1e-6)
print("unmix == judge.unmix on the last picture:", tuple(our_alpha.shape))

# %% [markdown]
# Here is what the unmixing sees. The α map is 1 inside the object and falls off smoothly across its
# anti-aliased edge; thresholding it at 0.5 gives the object's pixels. On a blurred copy the edge is wider,
# but the same α still finds the object, because it explains mixed pixels instead of asking for exact
# colors.

# %%
example = shapes.Scene((shapes.ShapeObject("cross", "orange", "large", 0, 1),), "white")
sharp_image = shapes.render(example)
blurred_image = shapes.to_image(evaluate.degrade(shapes.to_tensor(sharp_image)[None], blur=0.7)[0])
fig, axes = plt.subplots(2, 3, figsize=(6, 4.2))
for row, picture in enumerate((sharp_image, blurred_image)):
    reading = mini_judge(picture)
    titles = ("picture" + (" (blur 0.7 px)" if row else ""), "alpha of orange", "alpha >= 0.5")
    axes[row, 0].imshow(picture, interpolation="nearest")
    axes[row, 1].imshow(reading["alpha"], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[row, 2].imshow(reading["solid"], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    for ax, title in zip(axes[row], titles):
        ax.set_title(title)
        ax.axis("off")
    print(f"{titles[0]:22}: {reading['size']} {reading['color']} at row {reading['row']}, col {reading['col']}")
plt.tight_layout()
plt.show()

# %% [markdown]
# Our mini judge reads one object and never names its shape. The library's judge goes further: it splits the
# α ≥ 0.5 pixels into connected components (one per object, ignoring specks), then compares each object's
# soft mask with a template of every (shape, size), sharp and blurred, aligned on its center of mass, and
# keeps the closest. The shape and the size come from that match (the `template error` that section 5
# printed), and a mask that matches no template well is read as an unknown shape, so a smudge never passes
# for a circle. The full pipeline is in `dalle_lessons/judge.py`, about 260 lines.
