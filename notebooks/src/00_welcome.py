# %% [markdown]
# # 00 · Welcome: Build DALL·E from Scratch
#
# In 2021 OpenAI's DALL·E turned a sentence into a picture: *"an armchair in the shape of an
# avocado"*. This course builds a small but **real** DALL·E, the same two-stage design as the paper
# (Ramesh et al., 2021, *Zero-Shot Text-to-Image Generation*), one idea per notebook, small enough
# that every lesson runs on a laptop CPU in a couple of minutes.
#
# **In this notebook** you will
#
# 1. check that your environment is ready (and learn how to fix it if not),
# 2. meet the *Shapes* world, the dataset the whole course learns from,
# 3. run the finished pipeline, caption in and pictures out, in ten lines,
# 4. see the road map: what each lesson builds and where it sits in the pipeline.

# %% [markdown]
# ## 1. Is your environment ready?
#
# The check below imports everything the course needs and finds the course's `data/` folder. Each
# line says `ok` or `FIX`, and every `FIX` comes with the command that fixes it. On Colab, the cell
# above this one installs the course first.
#
# If you opened the course with `python3 course.py`, you are working in `workspace/`, your own copy of
# the lessons that git ignores: edit and run freely. `python3 course.py reset 03` brings back the
# original of lesson 03 (your version is kept in `workspace/backups/`).

# %%
# NBVAL_IGNORE_OUTPUT
# (versions and the device differ from machine to machine, so this cell's output is not compared)
from dalle_lessons.environment import check_environment, format_report, pick_device

results = check_environment()
print(format_report(results))
device = pick_device()
print("device for this course:", device)

# %%
# The check must pass for the rest of the course to work: stop here and apply the fixes if it fails.
assert all(r.ok for r in results), "apply the FIX lines above, restart the kernel, and run again"
print("environment ready")

# %% [markdown]
# ## 2. The pipeline you will build
#
# DALL·E does not paint pixels directly. It works in **two stages**:
#
# ```
# caption ──tokenizer──▶ text ids ─┐
#                                  ├─▶ [text | image] sequence ──transformer──▶ next-token logits
# image ──dVAE encoder──▶ image ids┘                                              │
#                                                         sampling (top-k, KV cache, guidance)
#                                                                                  ▼
#                                      image ids ──dVAE decoder──▶ pixels ──judge/reranker──▶ best images
# ```
#
# * **Stage 1, the discrete VAE (dVAE)**, compresses each image into a small grid of integer
#   *image tokens* and can turn such a grid back into pixels. The paper compresses 256×256×3 pixels
#   into 32×32 = 1,024 tokens from a codebook of 8,192.
# * **Stage 2, a decoder-only transformer**, reads the caption's text tokens followed by the image
#   tokens as **one stream** and learns to predict the next token, exactly like a language model.
#   To draw, it is given a caption and writes the image tokens one by one; the dVAE decodes them.
#
# That is all of DALL·E: no adversarial loss, no contrastive loss in training. (A third model, CLIP,
# is used *after* sampling to pick the best of many images; we build a small one in
# [lesson 08](08_reranking_with_clip.ipynb).)

# %% [markdown]
# ## 3. The Shapes world
#
# Real photos would need days of GPU time. Instead the course uses a small procedural world: one
# or two colored shapes on a 3×3 grid, with captions in several phrasings. It is generated from a
# seed (nothing is downloaded), it is small enough for a CPU, and, crucially, a picture of it can be
# **checked**: a *judge* reads the shapes back from the pixels, so "does the image follow the
# caption?" becomes a number instead of an impression.

# %%
import matplotlib.pyplot as plt
import torch

from dalle_lessons import get_preset, shapes
from dalle_lessons.viz import show_images

preset = get_preset("cpu")
print(f"preset {preset.name!r}: {preset.description}")
print("shapes:     ", ", ".join(shapes.SHAPES))
print("colors:     ", ", ".join(shapes.COLORS))
print("sizes:      ", ", ".join(shapes.SIZES))
print("positions:  ", ", ".join(shapes.POSITION_NAMES.values()))
print("backgrounds:", ", ".join(shapes.BACKGROUNDS))
print("relations:  ", ", ".join(shapes.RELATIONS))

# %%
train = shapes.ShapesDataset("train", size=12, preset="cpu", seed=0)
images, captions, scenes = zip(*[train[i] for i in range(len(train))])
print("one image tensor:", tuple(images[0].shape), images[0].dtype)
for caption in captions[:6]:
    print(" ·", caption)
show_images(images, captions, ncols=6, width=9)
plt.show()

# %% [markdown]
# Each image is only **32×32 pixels** (the `cpu` preset), yet the smallest shape is about 7 pixels
# across, big enough for you, the dVAE and the judge to tell a diamond from a circle.
#
# Some **color–shape pairs never appear in training**. After training, we will ask the model for
# exactly those pairs, an honest, small-scale test of DALL·E's headline claim that it composes
# concepts it never saw together:

# %%
pairs = sorted(shapes.heldout_pairs())
print("held out of training:", ", ".join(f"{color} {shape}" for color, shape in pairs))
heldout = shapes.ShapesDataset("heldout", size=6, preset="cpu", seed=0, n_objects=1)
show_images([heldout[i][0] for i in range(6)], [heldout[i][1] for i in range(6)], ncols=6, width=9)
plt.show()

# %% [markdown]
# ### The judge reads pictures back
#
# The judge finds every object in an image, reads its shape, color, size and cell, and scores the
# image against a caption. It is strict: every attribute the caption states must be right, and an
# extra object is wrong.

# %%
from dalle_lessons import judge

image, caption, scene = train[1]
reading = judge.read_image(image)
print("caption:", caption)
print("judge reads:", [(o.size, o.color, o.shape, shapes.POSITION_NAMES[(o.row, o.col)]) for o in reading.objects])
for text in [caption, "a purple cross at the center"]:
    result = judge.score(image, text)
    print(f"{text!r:60} -> all correct: {result.all_correct}  {result.attributes}")

# %% [markdown]
# ## 4. The finished pipeline in ten lines
#
# Here is where the course ends up: the course's pretrained model (shipped in `data/`, trained on a
# laptop CPU by the package's own commands) reads a caption and draws pictures. Three captions, four
# pictures each; the third asks for a **blue square**, one of the held-out pairs above, which the model
# never saw in training. The seed makes the pictures the same on every run.

# %%
from dalle_lessons.pipeline import TextToImage

pipe = TextToImage.from_pretrained()  # tokenizer + dVAE + transformer, the shipped `cpu` model
captions = ["a large red circle at the top left",
            "a large purple square at the center",
            "a large blue square at the center"]  # blue square: held out of training
images = pipe.generate(captions, n=4, seed=0)  # 4 PIL images per caption, caption by caption
show_images(images, [c if k % 4 == 0 else "" for k, c in enumerate(c for c in captions for _ in range(4))],
            ncols=4, width=6)
plt.show()

# %% [markdown]
# The pictures are 32×32 pixels, small enough to sample on a CPU in a fraction of a second. The judge
# scores them against their captions:

# %%
assert ("blue", "square") in shapes.heldout_pairs()
verdicts = [judge.score(image, caption).all_correct for image, caption in
            zip(images, (c for c in captions for _ in range(4)))]
for k, caption in enumerate(captions):
    print(f"{caption!r:55} the judge accepts {sum(verdicts[4 * k:4 * k + 4])} of 4")
assert sum(verdicts) >= 4  # a good share of the 12 pictures follow their captions

# %% [markdown]
# The held-out blue square is the hard kind of caption: over many held-out color–shape pairs, the model
# gets the whole caption right only about one time in ten (nine in ten for pairs seen in training).
# Lesson 07 measures it, shows how it fails, and explains why a bigger model or longer training does not
# fix it. It also builds the sampling behind `generate`, and shows how its settings (temperature, top-k,
# top-p, guidance) change the pictures. From the command line the same model draws a grid into a file:
# `python -m dalle_lessons generate "a small red circle above a blue square" -n 8 --seed 0 --out grid.png`.
#
# ## 5. The road map
#
# | lesson | you build | in the pipeline | status |
# |---|---|---|---|
# | [01 the Shapes dataset](01_shapes_dataset.ipynb) | scenes, captions, splits, the judge | the data and the measuring stick | ready |
# | [02 tokenization](02_tokenization.ipynb) | byte-pair encoding from scratch, then the production tokenizer | caption → text ids | ready |
# | [03 embeddings and positions](03_embeddings_and_positions.ipynb) | token embeddings, sinusoidal, learned and row/column positions | ids → vectors | ready |
# | [04 the discrete VAE](04_discrete_vae.ipynb) | Gumbel-softmax, encoder, decoder, codebook | image ↔ image ids | ready |
# | [05 attention and masks](05_attention_and_masks.ipynb) | attention, causal and DALL·E's sparse masks | the transformer's core | ready |
# | [06 the transformer](06_transformer.ipynb) | training DALL·E on `[text, image]` streams | next-token logits | ready |
# | [07 sampling](07_sampling.ipynb) | temperature, top-k/p, KV cache, guidance, completion | image ids from a caption | ready |
# | [08 reranking with CLIP](08_reranking_with_clip.ipynb) | a small contrastive model | best images | ready |
# | [09 limitations, measured](09_limitations.ipynb) | a Fréchet distance, confusion matrices, bias amplification and its remedies | measuring it | ready |
# | 10 fine-tuning | new data, new words | customization | *coming* |
# | [11 DALL·E from Python](11_dalle_from_python.ipynb) | an API and an interactive playground | using it | ready |
# | [12 scaling up](12_scaling_up.ipynb) | the arithmetic of scale, mixed precision, several processes, OpenAI's dVAE | the real thing | ready |
#
# Lessons 01–07 build, piece by piece, the pipeline you ran in section 4, and lesson 08 picks the best of
# its pictures as the paper did. Lesson 09 measures what the result still gets wrong: quality, control and
# bias. Lesson 11 serves the model through OpenAI's images API and a playground, and lesson 12 prices the
# paper's 12-billion-parameter model and uses the tools of scale in miniature. Lesson 10 is not written yet:
# it will teach the model new things. The exercises of every lesson have worked solutions in the
# [solutions/](solutions/) folder next to this notebook.
#
# ## Takeaways
#
# * DALL·E is **two models trained separately**: a discrete VAE that turns images into tokens, and
#   a transformer that models text and image tokens as one sequence by maximum likelihood.
# * A small world with a judge lets us *measure* what the model learned, including combinations
#   it never saw.
# * Every lesson builds one idea from scratch, then checks it against the `dalle_lessons` package,
#   which assembles the complete model.
#
# **Next: [01 · the Shapes dataset](01_shapes_dataset.ipynb)**
