# %% [markdown]
# # 09 · Limitations, measured: solutions
#
# Worked solutions to the exercises of lesson 09 ([09_limitations.ipynb](../09_limitations.ipynb)), each
# followed by the experiment it asks for, and the answers to "check your understanding". Try the exercises
# yourself first: each check tells you what is wrong in plain words. Every solution below is followed by its
# check, asserted, so the tests fail if a solution ever stops passing.

# %%
import random
from collections import Counter

import torch

from dalle_lessons import control, judge, metrics, quality
from dalle_lessons.clip_eval import embed_images
from dalle_lessons.evaluate import degrade, generation_caption_sets
from dalle_lessons.exercises.l09_limitations import check_kid, check_prompt_bootstrap, check_sample_unsaid_position
from dalle_lessons.pipeline import TextToImage
from dalle_lessons.shapes import POSITION_NAMES, parse_caption

torch.set_grad_enabled(False)
torch.set_printoptions(precision=3, sci_mode=False)

pipe = TextToImage.from_pretrained(device="cpu")
clip = pipe.reranker

# %% [markdown]
# ### Exercise 1: an unbiased distance (KID's estimator)
#
# Three kernel tables, `[n, n]`, `[m, m]` and `[n, m]`; the within-set sums without their diagonals; the
# averages as the formula says. Working in float64 keeps the small differences of large numbers exact
# enough. Two slips the check names: keeping the diagonal (the *biased* estimate, which never reaches 0) and
# forgetting the factor 2 on the cross term.

# %%
def my_kid(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double(), y.double()
    d, n, m = x.shape[1], len(x), len(y)
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2 * kxy.mean())


assert check_kid(my_kid)

# %% [markdown]
# **The experiment.** The prediction: the Fréchet floor falls as `n` grows (the lesson measured it), while
# KID, being unbiased, should scatter around 0 at every `n` — noisier for small `n`, but not shifted. Then the
# four degradations of the lesson, ranked by each distance. KID is printed ×1000, the usual scale.

# %%
real_a, real_b, _, _ = quality.reference_sets(300)
feats_a, feats_b = embed_images(clip, real_a), embed_images(clip, real_b)
print(f"{'n':>4} {'Fréchet x100':>13} {'KID x1000':>10}")
floors = {}
for n in (25, 50, 100, 200, 300):
    floors[n] = (100 * metrics.feature_frechet(feats_a[:n], feats_b[:n]), 1000 * my_kid(feats_a[:n], feats_b[:n]))
    print(f"{n:4d} {floors[n][0]:13.2f} {floors[n][1]:10.3f}")
assert floors[25][0] > 10 * floors[300][0]  # Fréchet: a large upward bias at small n
assert all(abs(kid) < 1 for _, kid in floors.values())  # KID: around 0 at every n

conditions = {"blur 1 px": degrade(real_b, blur=1.0), "blur 2 px": degrade(real_b, blur=2.0),
              "noise 0.1": degrade(real_b, noise=0.1, seed=1), "noise 0.2": degrade(real_b, noise=0.2, seed=1)}
scores = {}
for name, images in conditions.items():
    feats = embed_images(clip, images)
    scores[name] = (100 * metrics.feature_frechet(feats_a, feats), 1000 * my_kid(feats_a, feats))
print(f"\n{'B degraded, vs A':18} {'Fréchet x100':>13} {'KID x1000':>10}   (n = 300; floors {floors[300][0]:.2f} "
      f"and {floors[300][1]:.3f})")
for name, (fr, kid) in scores.items():
    print(f"{name:18} {fr:13.2f} {kid:10.3f}")
by_frechet = sorted(scores, key=lambda k: scores[k][0])
by_kid = sorted(scores, key=lambda k: scores[k][1])
print("ranked by Fréchet:", by_frechet)
print("ranked by KID:    ", by_kid)
assert by_frechet[-1] == by_kid[-1] == "noise 0.2"

# %% [markdown]
# Two lessons. First, the floor: the Fréchet distance between two real sets of 25 images is more than ten
# times its value at 300 — with fewer images than CLIP's 96 dimensions, the fitted covariances are not even
# full rank — while KID stays near 0 at every size, scattering more when `n` is small. That is what
# "unbiased" buys, and why KID was proposed for small sets. Second, the two distances need not agree on an
# order: both put strong noise last, but they weigh a blur against mild noise differently (KID barely tells a
# 1-pixel blur from real pictures). Each distance is a choice of what "different" means; report which one,
# with its floor.
#
# ### Exercise 2: intervals that respect prompts
#
# One generator made from the seed, `resamples` draws of `len(rows)` whole rows with replacement, the
# statistic of each, and two order statistics of the sorted values.

# %%
def prompt_bootstrap(rows: list[list[float]], statistic, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    values = sorted(statistic(rng.choices(rows, k=len(rows))) for _ in range(resamples))
    return values[int(0.025 * (resamples - 1))], values[int(0.975 * (resamples - 1))]


assert check_prompt_bootstrap(prompt_bootstrap)

# %% [markdown]
# **The experiment.** Sixteen captions of set b (held-out color–shape pairs), 8 samples each, judged. The
# prediction: success on a held-out pair depends mostly on the pair and the caption, so the 8 samples of one
# caption tend to agree, and an interval that treats the 128 images as independent will be too narrow.

# %%
set_b = generation_caption_sets(16)["b"]
ids = pipe.generate_tokens(list(set_b.captions), n=8, seed=0)
images = (pipe.decode(ids) * 255).round() / 255
rows = [[float(judge.score(images[p * 8 + j], claim).all_correct) for j in range(8)]
        for p, claim in enumerate(set_b.claims)]


def pooled(rows):  # the share of right images over all images
    values = [v for row in rows for v in row]
    return sum(values) / len(values)


by_prompt = prompt_bootstrap(rows, pooled, resamples=2000)
by_image = prompt_bootstrap([[v] for row in rows for v in row], pooled, resamples=2000)  # each image its own "prompt"
print("right images per caption:", [int(sum(row)) for row in rows], f"-> {100 * pooled(rows):.1f} % of 128")
print(f"95 % interval, resampling prompts: [{100 * by_prompt[0]:.1f}, {100 * by_prompt[1]:.1f}] %")
print(f"95 % interval, resampling images:  [{100 * by_image[0]:.1f}, {100 * by_image[1]:.1f}] %")
print(f"the prompt-level interval is {(by_prompt[1] - by_prompt[0]) / (by_image[1] - by_image[0]):.1f} x wider")
assert by_prompt[1] - by_prompt[0] > by_image[1] - by_image[0]

# %% [markdown]
# Most captions of held-out pairs are never drawn right, and a few are drawn right often: the images of one
# caption agree, so 128 images carry much less information than 128 independent ones. The image-level
# interval is too narrow by the factor printed above; a table built on it would call differences
# "significant" that another 16 captions would erase. The bias table resamples prompts for this reason (and
# resamples within each shape, so each shape keeps its number of prompts).
#
# ### Exercise 3: the remedy for an unsaid position
#
# `parse_caption` says whether a caption has one object and states its place; where it does not, one draw
# from the target, written the way the world's captions write it ("... at the top left"; every one-object
# template the world uses reads well with it at the end, including "..., nothing else" and "... on a dark
# background").

# %%
def sample_unsaid_position(captions: list[str], target: dict[str, float], seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    cells, weights = list(target), list(target.values())
    out = []
    for caption in captions:
        claim = parse_caption(caption)
        if len(claim.objects) == 1 and claim.objects[0].row is None:
            caption = f"{caption} at the {rng.choices(cells, weights)[0]}"
        out.append(caption)
    return out


assert check_sample_unsaid_position(sample_unsaid_position)

# %% [markdown]
# **The experiment.** The lesson's under-specified prompts: every seen color–shape pair with nothing else
# ("a red circle"), 4 images each, once as they are and once with a place drawn evenly over the nine cells
# *for each image* (each caption is repeated 4 times before the remedy, so every image gets its own draw). For
# each, the drawn places (judge) and their total variation distance from even. Sampling noise alone keeps the
# distance above 0: the last line says how far a perfect model's places would land from even, on average.

# %%
family = control.underspecified_prompts()["color and shape only"]
even = {cell: 1 / 9 for cell in POSITION_NAMES.values()}
per_image = [caption for caption in family["captions"] for _ in range(4)]
remedied = sample_unsaid_position(per_image, even, seed=0)
print("e.g.", per_image[:2], "->", remedied[:2])
drawn, followed = {}, 0
for name, prompts in [("as asked (place unsaid)", per_image), ("place sampled and stated", remedied)]:
    pictures = (pipe.decode(pipe.generate_tokens(prompts, n=1, seed=0)) * 255).round() / 255
    readings = [judge.read_image(image) for image in pictures]
    places = [POSITION_NAMES[(r.objects[0].row, r.objects[0].col)] if len(r.objects) == 1 else None for r in readings]
    drawn[name] = Counter(p for p in places if p is not None)
    if name.startswith("place sampled"):
        followed = sum(p == POSITION_NAMES[(c.objects[0].row, c.objects[0].col)]
                       for p, c in zip(places, map(parse_caption, prompts))) / len(prompts)
n_images = len(per_image)
rng = random.Random(0)
noise = sum(control.total_variation({c: k / n_images for c, k in Counter(rng.choices(list(even), k=n_images)).items()},
                                    even) for _ in range(200)) / 200
tv = {}
for name, counts in drawn.items():
    shares = {cell: counts[cell] / sum(counts.values()) for cell in even}
    tv[name] = control.total_variation(shares, even)
    print(f"{name:26} TV from even {tv[name]:.3f}; most drawn: {counts.most_common(1)[0]}")
print(f"{'sampling noise alone':26} TV from even {noise:.3f} (mean of 200 draws of {n_images} even places)")
print(f"with the remedy, {100 * followed:.0f} % of the {n_images} images show the object in the stated cell")
assert followed > 0.8 and tv["as asked (place unsaid)"] > 2 * noise

# %% [markdown]
# The model follows a stated place every time here (position is among its most reliable attributes, the
# lesson's confusion matrices showed), so with the remedy the drawn places are exactly the drawn targets, and
# all that is left of the distance is the noise of drawing 124 places at random. Without it, the unsaid
# captions pile into a few cells, far above that noise. (To remove even the noise, the targets could be
# spread exactly instead of drawn: 124 places, 13 or 14 per cell.) The remedy works for the same reason as the
# color remedy of the lesson — it moves the choice out of the model — and has the same limit: someone has to
# choose the target, and the model's own tendency is left as it was.
#
# ## Check your understanding: answers
#
# 1. **The floor.** Each Gaussian is fitted to a finite sample. The sample covariance's trace is unbiased, but
#    the cross term `Tr((Σ₁Σ₂)^½)` is a concave function of noisy estimates and comes out too small on average,
#    and the means differ by sampling noise too; both push the distance up. The errors shrink roughly like
#    `1/n`, so the floor falls as the sets grow — and with fewer images than dimensions the covariances are not
#    even full rank. Hence: compare equal sizes, and quote the floor.
# 2. **The dVAE ceiling, and the right floor.** Every generated picture is the dVAE decoder's output for some
#    grid of tokens; the reconstructions are its output for the grid the encoder chose for each real image. A
#    perfect transformer would sample exactly such grids, and so reproduce the reconstruction row (up to
#    sampling noise); it cannot produce anything the decoder cannot draw. The generated rows, though, hold 4
#    pictures for each of 125 captions, fewer independent scenes than 500 real ones, and that alone raises a
#    distance: "real, same captions" (real scenes for the same captions, 4 each) is what a perfect generator
#    would score on that design, so that is the floor to read them against.
# 3. **Diversity and the distance.** The Fréchet distance compares distributions, so it cares about both the
#    mean and the spread. Low temperature makes each caption's samples alike: the generated set loses spread
#    (its covariance shrinks), and the trace terms punish that even when every picture is right. The judge's
#    all-correct rate looks at one picture at a time and cannot see it.
# 4. **90 % vs 80 %.** Not necessarily. A colorless prompt asks for the triangles *whose captions leave the color
#    unsaid*. If those are red 90 % of the time (people rarely name the expected color: the caption mismatch),
#    the model is faithful, not amplifying. You need the rate among training captions that omit the color —
#    and intervals on both numbers.
# 5. **The sampled unsaid color.** It replaces the colorless prompt with a prompt that states a color drawn from
#    a chosen distribution, and the model follows stated colors; so the drawn colors follow the chosen
#    distribution. The model itself is unchanged: ask it a colorless prompt directly and the skew is still
#    there, and the bias now lives in a choice someone made (which distribution, for which prompts), which has
#    to be justified and maintained.
