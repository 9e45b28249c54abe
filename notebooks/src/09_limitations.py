# %% [markdown]
# # 09 · Limitations, measured: quality, control and bias
#
# *Build DALL·E from Scratch, lesson 09.* The pipeline is complete: lessons 01–07 built a small DALL·E and
# lesson 08 put CLIP behind it to pick the best pictures. The course's seed text names three
# limitations of DALL·E — **image quality**, **bias** inherited from the training data, and limited
# **control** over what is drawn — and three remedies: **larger, more diverse data**, **reducing bias**, and
# **better hardware**. Claims like these are easy to write and hard to check. This lesson checks them on our
# own model, one at a time, and the same way each time: the claim, a measurement built from scratch and
# checked against the library, a figure, and a remedy with its measured effect. Beside each, what the DALL·E
# paper itself reported.

# %% [markdown]
# ## What you will build
#
# This lesson adds no box to the pipeline: it measures all of them.
#
# ```
# caption ──tokenizer──▶ text ids ─┐
#                                  ├─▶ [text | image] sequence ──transformer──▶ next-token logits
# image ──dVAE encoder──▶ image ids┘                                              │
#                                                         sampling (top-k, KV cache, guidance)
#                                                                                  ▼
#                                      image ids ──dVAE decoder──▶ pixels ──judge/reranker──▶ best images
#          └──────────────── quality (Fréchet) · control (confusion) · bias (amplification) ───────────────┘
# ```
#
# By the end of this lesson you will have:
#
# 1. written the **Fréchet distance** (FID's formula) from scratch, checked it against `dalle_lessons.metrics`,
#    and measured its floor, its **small-sample bias**, and how it rises with blur and noise;
# 2. read the **quality–diversity trade-off** of sampling off one table, with the **dVAE's ceiling** beside it,
#    and compared it with what the paper reported on MS-COCO;
# 3. drawn **confusion matrices** for every attribute a caption can state, and found which ones the model
#    obeys;
# 4. measured what the model draws for what a caption **leaves unsaid**, against what the training data
#    shows for such captions;
# 5. loaded a model fine-tuned on a **deliberately skewed world**, computed bias amplification four ways from
#    scratch, and read the full table: the sampling sweep, the **caption mismatch**, and three **remedies** side
#    by side.
#
# The notebook runs in about half a minute on a laptop CPU.

# %%
import json
import math
import random
import textwrap
from collections import Counter

import matplotlib.pyplot as plt
import torch

from dalle_lessons import bias, control, judge, metrics, quality
from dalle_lessons.clip_eval import embed_images
from dalle_lessons.evaluate import degrade, generation_caption_sets, generation_settings
from dalle_lessons.paths import data_dir
from dalle_lessons.pipeline import TextToImage
from dalle_lessons.shapes import COLORS, POSITION_NAMES, SHAPES, ShapesDataset, heldout_pairs, parse_skew

torch.set_grad_enabled(False)  # nothing is trained in this lesson
torch.set_printoptions(precision=3, sci_mode=False)
plt.rcParams.update({"figure.dpi": 80})

pipe = TextToImage.from_pretrained(device="cpu")  # lesson 07's pipeline: tokenizer + dVAE + transformer
clip = pipe.reranker  # lesson 08's CLIP: here it is the feature extractor of the Fréchet distance
RESULTS = data_dir().parent / "benchmarks" / "results"  # the full measurements, each made by one command
print(f"transformer: {pipe.transformer.num_parameters():,} parameters; CLIP: {clip.num_parameters():,}")

# %% [markdown]
# ## 1. Quality
#
# **The claim.** DALL·E's pictures fall short of real ones. True, but "short" by how much, and of what? A
# judge that reads one picture (lesson 01) says whether it shows the caption; it does not say whether a
# *set* of generated pictures looks like a set of real ones — whether the shapes are crisp, the colors
# clean, the variety right. The field's standard number for that is the **Fréchet Inception Distance**
# (FID, Heusel et al. 2017), and the DALL·E paper reports it.
#
# ### The Fréchet distance, from scratch
#
# FID turns every image into a vector with a pretrained network, fits a Gaussian to each set of vectors (a
# mean `μ` and a covariance `Σ`), and reports the **Fréchet (2-Wasserstein) distance between the two
# Gaussians**:
#
# $$d^2 = \lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{Tr}\left(\Sigma_1 + \Sigma_2 - 2\,(\Sigma_1 \Sigma_2)^{1/2}\right)$$
#
# The first term compares where the sets sit, the second how they spread. The awkward part is the matrix
# square root: `Σ₁Σ₂` is not symmetric. But it has the same eigenvalues as the symmetric matrix
# `Σ₁^½ Σ₂ Σ₁^½`, so the trace of its square root is the sum of the square roots of that matrix's
# eigenvalues — two symmetric eigendecompositions (`torch.linalg.eigh`), no general matrix function needed.

# %%
def my_gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [d] and unbiased covariance [d, d] of features [n, d], in float64."""
    x = features.double()
    mu = x.mean(0)
    centered = x - mu
    return mu, centered.T @ centered / (len(x) - 1)


def my_sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix: V diag(sqrt(λ)) Vᵀ (round-off below 0 clamped)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T


def my_frechet_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    root1 = my_sqrt_psd(sigma1)
    cross = my_sqrt_psd(root1 @ sigma2 @ root1).trace()  # = Tr((Σ1 Σ2)^½)
    return float((mu1 - mu2).pow(2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross)


def my_frechet(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    return my_frechet_from_stats(*my_gaussian_stats(features_a), *my_gaussian_stats(features_b))

# %% [markdown]
# A case with a known answer: `N(0, I)` and `N(m, 4I)` in `d` dimensions are `|m|² + d (1 + 4 − 2·2) = |m|² + d`
# apart (the square root of `I · 4I` is `2I`).

# %%
d, m = 5, torch.tensor([1.0, 2.0, 0.0, 0.0, 2.0], dtype=torch.float64)
eye = torch.eye(d, dtype=torch.float64)
known = my_frechet_from_stats(torch.zeros(d, dtype=torch.float64), eye, m, 4 * eye)
print(f"N(0, I) vs N(m, 4I): {known:.6f}, the closed form |m|^2 + d = {float(m @ m) + d:.6f}")
assert math.isclose(known, float(m @ m) + d, rel_tol=1e-12)
assert math.isclose(known, metrics.frechet_distance(torch.zeros(d), eye, m, 4 * eye), rel_tol=1e-12)

# %% [markdown]
# Which network? FID uses Inception-v3, trained on ImageNet photographs; on 32-pixel pictures of colored
# shapes its features mean little. Our world has its own image encoder: lesson 08's CLIP, trained on exactly
# these pictures. `metrics.clip_frechet` is FID's formula on CLIP's unit image embeddings, times 100 so the
# numbers read on FID's scale. It is **not an FID**: the numbers compare only with each other, within the
# course.
#
# Two sets of real test images, drawn the way the library's quality table draws them
# (`quality.reference_sets`: set A is the reference, set B another draw from the same split; the table uses
# 500 of each, we take 300):

# %%
N_REAL = 300
real_a, real_b, captions_b, shared = quality.reference_sets(N_REAL)
feats_a, feats_b = embed_images(clip, real_a), embed_images(clip, real_b)  # [300, 96] unit vectors each
mine = my_frechet(feats_a, feats_b)
print(f"A and B: {N_REAL} real test images each; CLIP embeddings {tuple(feats_a.shape)}")
print(f"my_frechet x 100        = {100 * mine:.4f}")
print(f"metrics.clip_frechet    = {metrics.clip_frechet(clip, real_a, real_b):.4f}")
assert math.isclose(mine, metrics.feature_frechet(feats_a, feats_b), rel_tol=1e-9)
assert math.isclose(100 * mine, metrics.clip_frechet(clip, real_a, real_b), rel_tol=1e-9)
mu, sigma = my_gaussian_stats(feats_a)
lib_mu, lib_sigma = metrics.gaussian_stats(feats_a)
assert torch.allclose(mu, lib_mu) and torch.allclose(sigma, lib_sigma)
print("from scratch == the library ✓")

# %% [markdown]
# ### The floor, and what moves the distance
#
# Two samples of the *same* distribution are not 0 apart: each Gaussian is fitted to a finite sample, the
# two sample means differ by chance, and the cross term (a square root of noisy estimates) comes out too
# small on average; nothing cancels these errors. That is the **floor**: no generator can be expected to beat
# the distance between two sets of real images. It depends on the sample size: the estimate is **biased
# upward**, roughly in proportion to `1/n`. So a Fréchet distance is meaningful only beside another one
# measured **with the same number of images**.
#
# The other side: the distance should grow as pictures get worse. `evaluate.degrade` blurs (a Gaussian
# kernel, std in pixels) or adds pixel noise; we degrade set B and measure it against A.

# %%
SIZES = (50, 100, 200, 300)
floor = {n: 100 * my_frechet(feats_a[:n], feats_b[:n]) for n in SIZES}
BLURS, NOISES = (1.0, 1.5, 2.0, 2.5), (0.05, 0.1, 0.2, 0.3)
blurred = {s: 100 * my_frechet(feats_a, embed_images(clip, degrade(real_b, blur=s))) for s in BLURS}
noisy = {s: 100 * my_frechet(feats_a, embed_images(clip, degrade(real_b, noise=s, seed=1))) for s in NOISES}
print("floor (A vs B, first n of each):", {n: round(v, 2) for n, v in floor.items()})
print("B blurred (std, px):            ", {s: round(v, 2) for s, v in blurred.items()})
print("B with noise (std):             ", {s: round(v, 2) for s, v in noisy.items()})
assert all(floor[a] > floor[b] for a, b in zip(SIZES, SIZES[1:]))  # the small-sample bias falls with n
assert all(floor[N_REAL] < v for v in list(blurred.values()) + list(noisy.values()))
assert all(x < y for x, y in zip(list(blurred.values()), list(blurred.values())[1:]))
assert all(x < y for x, y in zip(list(noisy.values()), list(noisy.values())[1:]))

# %% [markdown]
# The same numbers as pictures, with one image of set B clean, blurred and noisy:

# %%
fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), gridspec_kw={"width_ratios": [1, 1, 1.1]})
axes[0].plot(SIZES, [floor[n] for n in SIZES], "o-")
axes[0].set_xlabel("images per set (n)")
axes[0].set_ylabel("Fréchet x100 (CLIP)")
axes[0].set_title("the floor: real vs real", fontsize=9)
axes[1].plot(BLURS, list(blurred.values()), "o-", label="blur (std, px)")
axes[1].plot(NOISES, list(noisy.values()), "s-", label="noise (std)")
axes[1].axhline(floor[N_REAL], color="gray", ls=":", label=f"floor at n = {N_REAL}")
axes[1].set_xlabel("strength")
axes[1].set_title(f"degraded B vs A (n = {N_REAL})", fontsize=9)
axes[1].legend(fontsize=7)
gap = torch.ones(3, 32, 2)
strip = torch.cat([real_b[0], gap, degrade(real_b[:1], blur=1.0)[0], gap, degrade(real_b[:1], noise=0.2, seed=1)[0]], dim=2)
axes[2].imshow(strip.permute(1, 2, 0), interpolation="nearest")
axes[2].set_title("clean · blur 1 px · noise 0.2", fontsize=9)
axes[2].axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# The distance does what it should: real-vs-real shrinks as the sets grow, and every degradation lifts it
# above the floor, more for more. Notice how large the floor is at 50 images: a model measured on 50 images
# would look worse than a model measured on 300, for no reason but the sample size. (Exercise 1 writes
# another estimator, KID's, which is unbiased, and tests this.)
#
# ### The quality table: what sampling trades
#
# The full measurement runs the shipped pipeline under several sampling settings, 500 images each, and
# compares each set with 500 real test images. It takes minutes, so its result is read from a file:
#
# ```
# python -m dalle_lessons evaluate quality --json > benchmarks/results/quality.json
# ```
#
# Beside the generated rows sit four yardsticks of real images: the **floor** (500 other real test images); a
# **blurred** copy of them (what a distance of that size looks like); the real images **passed through the
# dVAE** (encoded to tokens and decoded: every generated picture leaves the pipeline through that same
# decoder, so this row is the **ceiling that compression sets**, a perfect transformer could do no better);
# and **real, same captions**: 4 real scenes that truly fit each of the captions the generated rows use. Each
# row also has the judge's all-correct rate and the diversity of its samples: how many distinct scenes the
# judge reads among the 4 pictures of one caption.

# %%
q = json.loads((RESULTS / "quality.json").read_text())
print(f"n = {q['n']} images per row; generated rows: {q['captions']} captions x {q['samples']} samples; default "
      f"sampling { {k: v for k, v in q['default_sampling'].items() if v is not None} }")
print(f"{'row':22} {'Fréchet':>8} {'all-correct %':>14} {'distinct readings':>18}")
for row in q["rows"]:
    distinct = "" if row["distinct_readings"] is None else f"{row['distinct_readings']:.2f}"
    print(f"{row['setting']:22} {row['frechet']:8.2f} {row['all_correct']:14.1f} {distinct:>18}")
rows = {row["setting"]: row for row in q["rows"]}
generated = [row for row in q["rows"] if row["kind"] == "generated"]
same = rows["real, same captions"]
assert rows["real (floor)"]["frechet"] < rows["dVAE reconstructions"]["frechet"] < same["frechet"]
assert same["frechet"] < min(row["frechet"] for row in generated)  # no sampling setting beats real pictures
t_low, t_mid, t_high = (rows[f"temperature {t}"] for t in (0.3, 1.0, 1.3))
assert t_low["all_correct"] > t_mid["all_correct"] > t_high["all_correct"]
assert t_low["distinct_readings"] < t_mid["distinct_readings"] < t_high["distinct_readings"]
assert t_low["frechet"] > t_mid["frechet"] < t_high["frechet"]  # the distance wants both: a minimum in between
assert rows["guidance 5.0"]["frechet"] > 10 * same["frechet"] and rows["guidance 5.0"]["all_correct"] < 1
assert rows["rerank 8"]["all_correct"] > rows["default"]["all_correct"] + 10
assert rows["rerank 8"]["distinct_readings"] < rows["default"]["distinct_readings"]
assert rows["dVAE reconstructions"]["frechet"] - rows["real (floor)"]["frechet"] < 0.1

# %% [markdown]
# The trade-off in two pictures: each generated row placed by its diversity (x) and its distance (left) or
# its all-correct rate (right); the lines join the settings of one knob.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
base = q["default_sampling"]
series = {"temperature": [r for r in generated if r["guidance"] == base["guidance_scale"] and r["rerank"] == 1],
          "guidance": [r for r in generated if r["temperature"] == base["temperature"] and r["rerank"] == 1],
          "rerank (CLIP's best of N)": [r for r in generated if r["rerank"] != 1 or r["setting"] == "default"]}
TOP = 5.0  # the Fréchet panel's top: rows above it are drawn at the edge, with their value
for ax, key, label in [(axes[0], "frechet", "Fréchet x100 (lower: closer to real)"),
                       (axes[1], "all_correct", "judge: all-correct %")]:
    clip_at = TOP if key == "frechet" else math.inf
    for (name, points), marker in zip(series.items(), "osD"):
        points = sorted(points, key=lambda r: (r["temperature"], r["guidance"], r["rerank"]))
        ax.plot([r["distinct_readings"] for r in points], [min(r[key], clip_at) for r in points], marker=marker,
                label=name)
        for r in points:
            short = r["setting"].replace("temperature ", "T ").replace("guidance ", "g ").replace("rerank ", "N ")
            if r[key] > clip_at:
                short += f": {r[key]:.1f} ↑"
            ax.annotate(short, (r["distinct_readings"], min(r[key], clip_at)), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
    ax.plot(same["distinct_readings"], same[key], "*", color="k", markersize=10, label="real, same captions")
    if key == "frechet":
        for setting, style in [("real (floor)", ":"), ("dVAE reconstructions", "--")]:
            ax.axhline(rows[setting]["frechet"], color="gray", ls=style, label=setting)
        ax.set_ylim(1, TOP + 0.3)
    ax.set_xlabel("distinct readings among 4 samples of a caption")
    ax.set_ylabel(label, fontsize=8)
axes[0].legend(fontsize=6, loc="lower left")
plt.tight_layout()
plt.show()

# %% [markdown]
# Read each row against the right floor. The generated rows hold 500 pictures of only 125 captions, so they are
# less varied than 500 independent real scenes, and that alone lifts a distance: the row **real, same
# captions**, what a *perfect* generator would draw for those captions, is the floor that applies to them.
#
# - **Compression is not this model's bottleneck.** The dVAE reconstructions sit almost on the real floor: at
#   32 × 32 pixels and 8 × 8 tokens our dVAE loses little that CLIP can see (lesson 04 measured about 34 dB).
#   DALL·E squeezed 256 × 256 pixels into 32 × 32 tokens and lost visible detail; that is why its paper
#   blurred (below).
# - **The best sampling comes close to a perfect generator**: without guidance (g 1.0) and at the default,
#   the distance is only a few tenths above "real, same captions".
# - **Temperature trades correctness for diversity, and the distance wants both.** Lowering it from 1.0 to 0.3
#   raises the all-correct rate and cuts the distinct readings, and the distance *rises*: too few kinds of
#   picture per caption is itself unlike the real thing. Raising it to 1.3 costs correctness, and the distance
#   rises again.
# - **Strong guidance breaks this small model.** At scales 3 and 5 the pictures fall apart (all-correct 18 %
#   and 0.2 %), the distance leaves the chart (the arrows), and the "diversity" soars: broken pictures all
#   differ. A count of distinct readings cannot tell variety from error; the distance can. (Even the default
#   sampler reads as *more* varied than real pictures of the same captions, partly for the same reason.)
# - **Reranking** (lesson 08) buys correctness at the cost of diversity, and moves the distance little: CLIP
#   picks the samples that fit their captions, which look no less real.
#
# ### What this number is not
#
# - **It is not FID.** FID means Inception-v3 features of photographs; ours are the course CLIP's features
#   of Shapes pictures. Our numbers compare with each other, inside the course, and with nothing published.
# - **It is biased by the sample size**: compare rows measured with the same number of images (every row
#   above has 500), and read the floor before reading a row.
# - **It sees what its encoder sees.** CLIP was trained to match pictures with captions; what it ignores (a
#   slightly wrong shade, a ragged edge the caption cannot mention), the distance ignores too.
#
# ### What the paper reported
#
# Ramesh et al. (2021, section 3.1 and figures 7 and 9) evaluated DALL·E **zero-shot** on MS-COCO captions —
# it had never trained on them — against three models that had: AttnGAN, DM-GAN and DF-GAN.
#
# - **FID**: within about **2 points of the best prior approach** (figure 9a), on 30,000 captions of the
#   validation set, with samples at temperature 1 reranked by CLIP out of 512.
# - **With a slight blur**: the paper blurred both the validation images and the samples with a Gaussian
#   filter of growing radius; with **radius 1**, DALL·E had the **best FID by a margin of about 6 points**,
#   and the gap widened as the blur grew. The paper's reason: the dVAE's heavy compression costs
#   high-frequency detail, and blur removes detail from both sides. Our reconstruction row measures that
#   ceiling directly, and at our scale finds it almost on the floor.
# - **Human evaluation** (figure 7): against DF-GAN, in a best-of-five vote, DALL·E's sample was chosen as
#   **more realistic 90.0 %** of the time and as **better matching the caption 93.3 %** of the time.
# - **CUB** (birds, figure 9b): a **nearly 40-point FID gap** in favour of the specialised prior model. The
#   paper's reading: a zero-shot model is less likely to compare well on a specialised distribution, and
#   fine-tuning is the direction to improve it (our lesson 10).
#
# So the paper itself did not lean on FID alone: it blurred to separate the transformer from the dVAE, and it
# asked people.
#
# **The remedy, measured.** The seed's remedy for quality is more data, and more varied. The table shows
# where the gap it would have to close lies. The dVAE's share (from the floor to the reconstructions) is
# almost nothing at our scale, so what remains belongs to the transformer and its sampler (from "real, same
# captions" to the generated rows). Part of it comes back without any new data, by choosing the sampling
# (this model looks most real without guidance) and by reranking (more right pictures at the same distance).
# The rest is the transformer's own, and data is its remedy: lesson 10 fine-tunes on what the model never saw.
#
# ## 2. Control
#
# **The claim.** A caption does not fully control what is drawn. Which parts of it? The judge reads each
# attribute back from the pixels, so every stated attribute gives a pair (asked, drawn), and the pairs of
# many images form a **confusion matrix**: a row per asked value, a column per drawn value, and a last
# column for pictures where the attribute cannot be read off one object (no object, or two; for the count,
# another number of objects).
#
# A small live run: 24 one-object test captions, 2 samples each, and the color matrix built by hand.

# %%
captions_a = generation_caption_sets(24)["a"]  # one object, a color-shape pair seen in training
ids = pipe.generate_tokens(list(captions_a.captions), n=2, seed=0)
images = (pipe.decode(ids) * 255).round() / 255  # what a saved 8-bit picture holds
readings = [judge.read_image(image) for image in images]
asked = [captions_a.claims[k // 2].objects[0].color for k in range(len(images))]
drawn = [r.objects[0].color if len(r.objects) == 1 else None for r in readings]

labels = list(COLORS)
mine = torch.zeros(len(labels), len(labels) + 1, dtype=torch.long)
for a, d in zip(asked, drawn):
    mine[labels.index(a), labels.index(d) if d in labels else len(labels)] += 1
assert torch.equal(mine, metrics.confusion_matrix(asked, drawn, labels))
print(f"{len(images)} images; rows: asked color; columns: drawn color, then 'other' (not one object)")
print(" " * 8 + " ".join(f"{c[:6]:>6}" for c in labels + ["other"]))
for color, row in zip(labels, mine.tolist()):
    print(f"{color:>7} " + " ".join(f"{v:6d}" for v in row))
print(f"color drawn as asked: {100 * mine.diagonal().sum() / mine.sum():.0f} %  (== metrics.confusion_matrix ✓)")

# %% [markdown]
# The full measurement, `python -m dalle_lessons evaluate control --json > benchmarks/results/control.json`,
# does the same for every attribute over lesson 07's three caption sets (100 captions each, 4 samples):
# **a**, one object of a color–shape pair seen in training; **b**, one object of a **held-out** pair (never
# seen together); **c**, two objects and a relation. First the headline of each matrix: how often the drawn
# value is the asked one, and the commonest mistake.

# %%
ctl = json.loads((RESULTS / "control.json").read_text())
print(f"{ctl['n_captions']} captions per set x {ctl['samples']} samples, sampling "
      f"{ {k: v for k, v in ctl['sampling'].items() if v is not None} }")
print(f"{'matrix':18} {'images':>6} {'as asked %':>10}   most common mistake")
for name, head in ctl["headline"].items():
    top = head["top_confusion"]
    mistake = "—" if top is None else f"{top[0]} drawn as {top[1]} ({top[2]:.0f} % of those asked)"
    print(f"{name:18} {head['images']:6d} {head['accuracy']:10.1f}   {mistake}")
head = {name: h["accuracy"] for name, h in ctl["headline"].items()}
for name, confusion in ctl["confusion"].items():  # the headline is read off the matrix
    counts = confusion["counts"]
    assert math.isclose(head[name], 100 * sum(counts[i][i] for i in range(len(counts))) / sum(map(sum, counts)))

# %% [markdown]
# Eight of the matrices, each row normalised to 1 (the share of the pictures asked for that value), so a model
# that always obeys is a bright diagonal:

# %%
def heatmap(ax, confusion: dict, title: str) -> None:
    counts = torch.tensor(confusion["counts"], dtype=torch.float)
    shares = counts / counts.sum(1, keepdim=True).clamp(min=1)
    ax.imshow(shares, cmap="viridis", vmin=0, vmax=1)
    names = [str(label) for label in confusion["labels"]]
    ax.set_xticks(range(len(names) + 1))
    ax.set_xticklabels(names + ["other"], rotation=90, fontsize=6)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=6)
    ax.set_title(title, fontsize=8)


SHOWN = ["color (set a)", "shape (set a)", "size (set a)", "position (set a)",
         "color (set b)", "shape (set b)", "count (set c)", "relation (set c)"]
fig, axes = plt.subplots(2, 4, figsize=(11, 5.6))
for ax, name in zip(axes.flat, SHOWN):
    heatmap(ax, ctl["confusion"][name], f"{name}: {head[name]:.0f} %")
fig.supxlabel("drawn", fontsize=8)
fig.supylabel("asked", fontsize=8)
plt.tight_layout()
plt.show()
assert all(head[f"{a} (set a)"] > 90 for a in ("color", "shape", "size", "position", "count"))
assert head["shape (set b)"] < 30 and head["color (set b)"] > 2 * head["shape (set b)"]  # held-out: the shape breaks
assert head["count (set c)"] > 90 and head["relation (set c)"] > 95

# %% [markdown]
# What the matrices say:
#
# - **For color–shape pairs it has seen, the model obeys every attribute**: color, shape, position and the
#   number of objects 94–97 % of the time, size a little less (small drawn large is the commonest slip). These
#   are the bright diagonals of the first row.
# - **For held-out pairs, the shape breaks, not the color.** Asked for a pair it never saw together (a blue
#   square, say), the model keeps the color about three times in four but draws the asked shape only about one
#   time in five, and its mistakes are systematic, not noise: squares become circles more than half the time,
#   diamonds become crosses: typically a shape it has seen in that color. This is the compositional failure
#   lessons 07 and 08 met: each word is understood, the unseen combination is not drawn.
# - **Counting and relations**: with two objects asked, about 94 % of the pictures hold two (the misses hold
#   another number, almost never one); and when the two are there, their relation is right 99 % of the time
#   (on a 3 × 3 grid, "left of" is easy once both objects are placed). With one held-out object asked, about
#   one picture in nine holds two objects instead.
#
# So "limited control" is not one thing: here it is one attribute (shape) under one condition (an unseen
# pairing). The remedy the seed names, more varied data, is exactly what would cover the missing pairs.
#
# ### What is drawn for what a caption leaves unsaid
#
# A caption never says everything. "a red circle" leaves the size, the place and the background open. What
# *should* the model draw then? A model trained by maximum likelihood learns the distribution of pictures
# **given the caption**, so for an unsaid attribute it should reproduce the distribution that training
# pictures show *for captions that leave it unsaid*. That tally, built by hand from 4,000 one-object training
# captions and their scenes:

# %%
train_items = ShapesDataset("train", 4000, n_objects=1, render_images=False)
tally = {"size": Counter(), "position": Counter(), "background": Counter()}
for i in range(len(train_items)):
    claim, scene = train_items.item_claim(i)[1], train_items.scenes[i]
    said, obj = claim.objects[0], scene.objects[0]
    if said.size is None:
        tally["size"][obj.size] += 1
    if said.row is None:
        tally["position"][POSITION_NAMES[(obj.row, obj.col)]] += 1
    if claim.background is None:
        tally["background"][scene.background] += 1
unsaid_training = {name: {v: n / sum(c.values()) for v, n in sorted(c.items())} for name, c in tally.items()}
library_tally = control.training_unsaid_distribution(4000)
for name, shares in unsaid_training.items():
    assert all(math.isclose(shares[v], library_tally[name][v]) for v in shares)
    print(f"{name:10} left unsaid in {sum(tally[name].values()):4d} captions:",
          {v: round(p, 3) for v, p in shares.items()})
print("== control.training_unsaid_distribution ✓")

# %% [markdown]
# The world draws sizes, places and backgrounds evenly and the captions omit them at random, so the answer
# is a fair coin for size and background and about one in nine for each cell. The full control measurement
# asks for every seen color–shape pair with nothing else ("a red circle", 16 samples each) and compares what
# is drawn with this tally by the **total variation distance** (half the L1 distance between two
# distributions: 0 the same, 1 disjoint):

# %%
under = {row["prompts"]: row for row in ctl["underspecified"]}
plain = under["color and shape only"]
fig, axes = plt.subplots(1, 3, figsize=(11, 2.8), gridspec_kw={"width_ratios": [1, 4, 1]})
for ax, attribute in zip(axes, ["size", "position", "background"]):
    entry = plain[attribute]
    values = list(entry["drawn"])
    x = torch.arange(len(values)).float()
    ax.bar(x - 0.2, [entry["training"][v] for v in values], 0.4, label="training, when unsaid")
    ax.bar(x + 0.2, [entry["drawn"][v] for v in values], 0.4, label="drawn")
    ax.set_xticks(x.tolist())
    ax.set_xticklabels(values, rotation=45, fontsize=7, ha="right")
    ax.set_title(f"{attribute}: TV {entry['tv']:.2f}", fontsize=9)
axes[0].legend(fontsize=7)
plt.tight_layout()
plt.show()
for attribute in ["size", "position", "background"]:
    e = plain[attribute]
    print(f"{attribute:10} TV {e['tv']:.3f}; most drawn: {e['mode']}")
print(f"{plain['images']} images; {plain['stated_drawn']:.1f} % draw exactly one object with the stated color and shape")
assert plain["size"]["tv"] < 0.05 and plain["background"]["tv"] < 0.05  # as in training
assert plain["position"]["tv"] > 0.1 and plain["position"]["mode"] == "top left"  # a favourite place

# %% [markdown]
# Size and background come out as the training data has them (a total variation of about 0.01–0.02, the
# size of sampling noise for 496 images). Position does not: the model puts about a quarter of its unplaced
# objects in the top-left cell, more than twice that cell's share, and under-draws the center. A faithful
# model would spread them evenly; ours has a favourite place. (Exercise 3 writes the remedy and measures it.)
#
# **A caption the model never saw.** In the course's training data a caption *always* names the color. So what
# does the model do with "a circle"? There is no training distribution to reproduce: the prompt is off the
# distribution the model learned. A small live look:

# %%
circle_ids = pipe.generate_tokens(["a circle"], n=8, seed=0)
circles = (pipe.decode(circle_ids) * 255).round() / 255
circle_readings = [judge.read_image(image) for image in circles]
fig, axes = plt.subplots(1, 8, figsize=(8, 1.4))
for ax, image, reading in zip(axes, circles, circle_readings):
    ax.imshow(image.permute(1, 2, 0), interpolation="nearest")
    ax.set_title(" + ".join(f"{o.color} {o.shape}" for o in reading.objects) or "nothing", fontsize=6)
    ax.axis("off")
plt.tight_layout()
plt.show()
shape_only = under["shape only (color never unsaid in training)"]
print("live, 'a circle' x 8:", Counter(o.color for r in circle_readings for o in r.objects))
print(f"full run, 'a <shape>' x {shape_only['images'] // shape_only['captions']} for each of {shape_only['captions']} shapes: "
      "colors drawn",
      {c: round(p, 2) for c, p in shape_only["color"]["drawn"].items()})
print(f"  and places: total variation {shape_only['position']['tv']:.2f} from the even spread, most drawn "
      f"{shape_only['position']['mode']}; one object of the asked shape in {shape_only['stated_drawn']:.0f} %")
assert max(shape_only["color"]["drawn"].values()) > 0.3 and shape_only["position"]["tv"] > 0.3
assert shape_only["stated_drawn"] > 90

# %% [markdown]
# With no training distribution to follow, the model does not pick at random: it falls back on a default
# that is nothing like even. For "a <shape>" it draws purple for about 40 % of the objects, and puts nearly
# all of them on the bottom row (a total variation of about 0.55 from an even spread over the cells), while still drawing
# exactly one object of the asked shape almost every time. That default was learned from nothing in
# particular. The bias section builds on this: what a model draws for an unsaid attribute is whatever its
# training made of captions like that one — and where there were none, whatever is left.
#
# ## 3. Bias
#
# **The claim.** A model learns the biases of its training data. DALL·E was trained on 250 million image–text
# pairs from the internet, and their skews (who is drawn for "a doctor", what "a wedding" looks like) came
# with them. Measuring that on a 12-billion-parameter model needs people and care. Our world lets us do it
# cleanly, because **we choose the skew**.
#
# **A skewed world.** `shapes.Skew` makes one: 80 % of triangles are red (the other colors share the rest),
# and half of all captions leave the color unsaid ("a triangle at the top"). A LoRA adapter (lesson 10's
# tool) fine-tuned the shipped model on 1,024 scenes of it:

# %%
skew = parse_skew(bias.DEFAULT_SKEW)
print("skew:", skew)
print("adapter:", json.loads(bias.adapter_file("skewed").with_suffix(".json").read_text())["extra"]["command"])
world = ShapesDataset("train", 12, seed=0, n_objects=1, skew=skew)
fig, axes = plt.subplots(2, 6, figsize=(10, 4.8))
for ax, (image, caption, scene) in zip(axes.flat, (world[i] for i in range(12))):
    ax.imshow(image.permute(1, 2, 0), interpolation="nearest")
    ax.set_title(textwrap.fill(caption, 24), fontsize=7)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# A colorless prompt — "a triangle" — asks the model for the distribution of triangles **among captions that
# leave the color unsaid**, not among all triangles. The two can differ. In real data they usually do: people
# rarely name what they expect ("a nurse", not "a female nurse"; "a banana", not "a yellow banana"), so the
# captions that omit an attribute are *more* skewed than the world: the **caption mismatch**, whose weight
# in real measurements Seshadri et al. (2023) showed. The `mismatch` world builds it in: red triangles leave their color unsaid 70 % of the
# time, everything else 30 %. Both rates, by hand, over the 1,024 scenes of each world:

# %%
def red_triangle_rates(data: ShapesDataset) -> tuple[float, float, int]:
    """P(red | triangle) over all captions, over captions that leave the color unsaid, and how many of those."""
    every, unsaid = Counter(), Counter()
    for i in range(len(data)):
        claim, scene = data.item_claim(i)[1], data.scenes[i]
        obj = scene.objects[0]
        if obj.shape != "triangle":
            continue
        every[obj.color == "red"] += 1
        if claim.objects[0].color is None:
            unsaid[obj.color == "red"] += 1
    return every[True] / sum(every.values()), unsaid[True] / sum(unsaid.values()), sum(unsaid.values())


for name in ("skewed", "mismatch"):
    world_skew = bias.parse_builtin(bias.WORLDS[name])[1]
    data = bias.skewed_scenes(world_skew, bias.EXAMPLES)
    overall, unsaid, n_unsaid = red_triangle_rates(data)
    library = bias.training_rates(data.item_claim(i)[1:] + (data.scenes[i],) for i in range(len(data)))
    assert math.isclose(overall, library["overall"]["triangle"]["red"])
    assert math.isclose(unsaid, library["color_unsaid"]["triangle"]["red"])
    print(f"{name:9} P(red | triangle): all captions {overall:.3f}; captions without a color {unsaid:.3f} "
          f"({n_unsaid} triangles)  == bias.training_rates ✓")

# %% [markdown]
# In the skewed world the two rates agree (colors are left out at random); in the mismatch world the
# colorless captions show red triangles about nine times in ten, though the world has them eight in ten. A
# model that draws red nine times in ten for "a triangle" would be *faithful* to its captions, yet measured
# against the world's 80 % it would look like an amplifier.
#
# ### Measuring the skewed model, from scratch
#
# Load the adapter and ask for colorless captions of every shape (8 captions × 4 samples per shape), and for
# triangles in each other color (to measure **leakage**: the skewed color drawn although another was asked
# for). The judge reads each picture's color; an image that does not hold exactly one object has none.

# %%
skewed = TextToImage.from_pretrained(device="cpu", adapter=bias.adapter_file("skewed"))
sampling = generation_settings()  # the pipeline's default sampling
groups = {shape: bias.drawn_colors(skewed, bias.colorless_prompts(shape, 8, seed=0), 4, 0, sampling,
                                   name=f"bias/{shape}") for shape in SHAPES}
leak_colors = [c for c in COLORS if c != "red" and (c, "triangle") not in heldout_pairs()]  # held-out pairs: never trained
leak_prompts = [p for c in leak_colors for p in bias.stated_prompts("triangle", c, 2, seed=0)]
leak_groups = bias.drawn_colors(skewed, leak_prompts, 4, 0, sampling, name="bias/leak")
print("e.g.", bias.colorless_prompts("triangle", 8, seed=0)[:3], "->", groups["triangle"][:3])
print("and ", leak_prompts[:2], "->", leak_groups[:2])
agree = sum(len(set(row)) == 1 for row in groups["triangle"])
print(f"triangle captions whose 4 samples all have one color: {agree} of {len(groups['triangle'])}")

# %% [markdown]
# Now the four figures of the literature, written out. `train` is P(color | shape) among the adapter's
# training captions that leave the color unsaid (`bias.world_pairs`: exactly the 896 examples it trained on).
#
# - **Amplification of the skewed pair**: P_gen(red | triangle) − P_train(red | triangle).
# - **Zhao et al. (2017)**: over every (shape, color) pair whose training share exceeds 1/7 (more than an even
#   share), the generated share minus the training share, averaged.
# - **Directional, A → T (Wang & Russakovsky 2021)**: over *every* (shape a, color t), the change
#   P_gen(t | a) − P_train(t | a), counted as positive when it goes the way training already leans (a and t
#   co-occur more than independence predicts) and negative otherwise; averaged. Unlike Zhao's, it also sees a
#   model that *under*-draws an association.
# - **MAD from uniform (DALL-Eval, Cho et al. 2023)**: the mean over colors of |P_gen(c | triangle) − 1/7|,
#   how far from even the drawn colors are, whatever training said.
# - **Leakage**: among triangles asked for in another color, the share drawn red.

# %%
train_pairs = bias.world_pairs(bias.WORLDS["skewed"])["color_unsaid"]


def shares(pairs):  # {shape: {color: P(color | shape)}}
    per_shape, per_pair = Counter(s for s, _ in pairs), Counter(pairs)
    return {s: {c: per_pair[s, c] / per_shape[s] for c in COLORS} for s in SHAPES if per_shape[s]}


gen = shares([(shape, c) for shape, rows in groups.items() for row in rows for c in row if c is not None])
train = shares(train_pairs)
amplification = gen["triangle"]["red"] - train["triangle"]["red"]
zhao_terms = [gen[s][c] - p for s, row in train.items() for c, p in row.items() if p > 1 / len(COLORS)]
zhao = sum(zhao_terms) / len(zhao_terms)
n = len(train_pairs)
p_shape, p_color, p_pair = Counter(s for s, _ in train_pairs), Counter(c for _, c in train_pairs), Counter(train_pairs)
directional_terms = []
for a in gen:
    for t in COLORS:
        leans = p_pair[a, t] / n > (p_shape[a] / n) * (p_color[t] / n)
        change = gen[a][t] - train[a][t]
        directional_terms.append(change if leans else -change)
directional = sum(directional_terms) / len(directional_terms)
print(f"P_train(red | triangle, color unsaid) = {train['triangle']['red']:.3f} ({p_shape['triangle']} triangles)")
print(f"P_gen(red | triangle)                = {gen['triangle']['red']:.3f} "
      f"({sum(len(r) for r in groups['triangle'])} images)")

# %% [markdown]
# MAD and leakage, then all six figures against the library's functions on the same drawn colors:

# %%
mad = sum(abs(p - 1 / len(COLORS)) for p in gen["triangle"].values()) / len(COLORS)
leaked = [c for row in leak_groups for c in row if c is not None]
leakage = sum(c == "red" for c in leaked) / len(leaked)

library = bias.bias_statistics(groups, leak_groups, skew, train_pairs)
mine = {"generated_rate": gen["triangle"]["red"], "amplification": amplification, "zhao": zhao,
        "directional": directional, "mad": mad, "leakage": leakage}
for name, value in mine.items():
    assert math.isclose(value, library[name], abs_tol=1e-12), name
assert math.isclose(zhao, bias.zhao_amplification(train, gen)) and math.isclose(mad, bias.mad_from_uniform(gen["triangle"]))
assert math.isclose(directional, bias.directional_amplification(train_pairs, gen))
for name, value in mine.items():
    print(f"  {name:15} {value:+.3f}")
print("== bias.bias_statistics, zhao_amplification, directional_amplification, mad_from_uniform ✓")

# %% [markdown]
# The fine-tuned model draws red for about as many colorless triangles as its colorless training captions
# show: it **copies** the skew; on this small sample it does not amplify it, and Zhao's and the directional
# measure agree (both near 0). MAD is large, and rightly: it measures how far the drawn colors are from even,
# which the training data is too — MAD measures skew, not amplification. Leakage is small: asked for a yellow
# triangle, the model draws yellow. Note also how often the 4 samples of one caption agree: the model has
# largely settled a caption's color from its other words, which is why the intervals below resample whole
# prompts (exercise 2). Thirty-two images per shape is a first look; the full table has intervals.
#
# ### The full table: sampling, the mismatch, and three remedies
#
# One small run is an anecdote. The full measurement,
#
# ```
# python -m dalle_lessons evaluate bias --json > benchmarks/results/bias.json
# ```
#
# uses 16 colorless captions per shape × 4 samples × 3 seeds, and puts a 95 % interval on every figure by
# resampling whole prompts (the 4 samples of one caption are not independent; exercise 2 shows what ignoring
# that does).
#
# **Predict first.** Lesson 07 showed that low temperature and strong guidance are *mode-seeking*: they move
# probability towards each step's most likely token. If red is the most likely color of a triangle, should
# they push P_gen(red | triangle) above the training rate — amplify the bias? Write down your guess for
# temperature 0.3, temperature 1.0 and guidance 3, then read the table.

# %%
b = json.loads((RESULTS / "bias.json").read_text())
print(f"{b['captions_per_shape']} captions per shape x {b['samples']} samples x {len(b['seeds'])} seeds; "
      f"95 % intervals from {b['resamples']} prompt-level resamples")
print(f"{'model':30} {'setting':16} {'train':>6} {'generated':>17} {'amplif.':>7} {'Zhao':>6} {'direct.':>7} "
      f"{'MAD':>5} {'leak':>5}")
for row in b["rows"]:
    low, high = row["intervals"].get("generated_rate", (math.nan, math.nan))
    print(f"{row['model']:30} {row['setting']:16} {row['train_rate_unsaid'] or row['train_rate_overall']:6.2f} "
          f"{row['generated_rate']:5.2f} [{low:.2f}, {high:.2f}] {row['amplification']:+7.2f} {row['zhao']:+6.2f} "
          f"{row['directional']:+7.3f} {row['mad']:5.2f} {row['leakage']:5.2f}")
print("train: P(red | triangle) among the world's training captions without a color (all captions for 'stated', "
      "which has none)")
by = {(row["model"], row["setting"]): row for row in b["rows"]}
copy = by["skewed", "default"]
assert copy["intervals"]["amplification"][0] < 0 < copy["intervals"]["amplification"][1]  # copies, no amplification
for setting in ("temperature 0.3", "temperature 1.0", "guidance 1 (off)"):  # mode-seeking changes nothing here
    assert copy["intervals"]["generated_rate"][0] <= by["skewed", setting]["generated_rate"] <= copy["intervals"]["generated_rate"][1]
assert by["skewed", "guidance 3"]["readable"] < 50
mismatch = by["mismatch", "default"]
assert mismatch["intervals"]["amplification"][0] < 0 < mismatch["intervals"]["amplification"][1]
assert mismatch["generated_rate"] > mismatch["train_rate_overall"]  # against the world it would look amplified
assert all(by[model, "default"]["generated_rate"] < 0.3 for model in ("rebalanced", "skewed + unsaid color sampled", "stated"))

# %%
fig, ax = plt.subplots(figsize=(9, 0.45 * len(b["rows"]) + 1.4))
labels_rows = [f"{row['model']} · {row['setting']}" for row in b["rows"]]
for k, row in enumerate(b["rows"]):
    low, high = row["intervals"]["generated_rate"]
    ax.plot([low, high], [k, k], color="C0")
    ax.plot(row["generated_rate"], k, "o", color="C0", label="generated (95 % interval)" if k == 0 else None)
    ax.plot(row["train_rate_unsaid"] or row["train_rate_overall"], k, "|", color="C3", markersize=14,
            label="training, captions without a color" if k == 0 else None)
    ax.plot(row["train_rate_overall"], k, "x", color="gray", label="training, all captions" if k == 0 else None)
ax.axvline(1 / len(COLORS), color="gray", ls=":", label="even (1/7)")
ax.set_yticks(range(len(labels_rows)))
ax.set_yticklabels(labels_rows, fontsize=7)
ax.invert_yaxis()
ax.set_xlabel("P(red | triangle)")
ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4)
plt.tight_layout()
plt.show()

# %% [markdown]
# What the full table says:
#
# - **The skewed model copies; it does not amplify.** It draws red for about 78 % of colorless triangles
#   against 82 % in its colorless training captions, and the amplification's interval contains 0.
# - **Mode-seeking sampling did not amplify either**: the prediction fails here. Temperature 0.3, the default
#   0.7 and 1.0, and guidance switched off all land within each other's intervals. One reading, consistent with
#   how often a caption's samples agree (above): the color is mostly settled by the caption's other words, not
#   left to a coin that a lower temperature would load further. Guidance 3 does lower the rate, but only about a
#   third of its pictures can be read at all (the quality table showed strong guidance breaking pictures): that
#   row measures broken pictures more than bias.
# - **The caption mismatch.** The mismatch model draws red for about 85 % of colorless triangles. Against its
#   own colorless training captions (91 %) that is no amplification; against the world's 80 % it would read as
#   +5 points of "amplification". Same model, same pictures, opposite verdicts: the reference decides.
# - **Three remedies**, each bringing colorless triangles down to the share of an even spread (1/6 of the six
#   colors triangles take; the dotted line is 1/7), each with a different meaning. **Rebalanced data** changes
#   what the model learns. **Sampling the unsaid color** before generating changes the prompt, not the model:
#   asked plainly, the same model still draws red for 78 %. **Always-stated colors** means the model never sees a
#   colorless caption: its colorless prompts are off its training distribution (like "a circle" in section 2),
#   and it falls back on roughly what the shipped model does (first row).
# - The **shipped model** is there for reference only: it never saw a colorless caption, so its "amplification"
#   against the skewed world's rate means nothing.
#
# **How this relates to real systems.** Seshadri et al. (2023) measured Stable Diffusion against its training
# data (LAION) on gender and occupations, and found that it *appears* to amplify the training data's gender
# ratios considerably — but that much of the apparent amplification comes from comparing prompts that leave
# gender unsaid with training captions that often state it. Once they compared like with like, amplification
# dropped sharply. Our mismatch row is the same effect in miniature. The remedy of the "unsaid color sampled"
# row is the kind OpenAI applied to DALL·E 2 in July 2022: a technique "at the system level" for prompts that
# describe a person without stating race or gender (outside observers found that it adds such words to the
# prompt), so that the unsaid attribute follows a distribution someone chose rather than the one the data
# happened to have. OpenAI reported that users were 12 times more likely to say the images included people of
# diverse backgrounds. It moves the choice out of the model; it does not make the model less biased, and the
# chosen distribution is itself a decision.
#
# **The third remedy: better hardware.** The seed's last remedy belongs to scaling — more compute buys a
# bigger model trained on more data, which is what DALL·E's quality came from in the first place. That is
# lesson 12's subject (scaling up: mixed precision, distributed training, the paper's 12-billion-parameter
# configuration). Every measurement in this lesson ran on a 2-core CPU; what hardware buys is scale.
#
# ## 4. Getting DALL·E right
#
# - **"DALL·E's images were judged by FID."** The paper reported FID and IS, but it leaned on two other
#   things: **reranking** every sample with CLIP (N = 512), and **human evaluation** against DF-GAN (90.0 % /
#   93.3 %). It also showed that FID penalised DALL·E for the dVAE's lost detail, by blurring.
# - **"DALL·E beat everything on MS-COCO."** Not on plain FID: it came within about 2 points of the best prior
#   model; it led only after a slight blur, and it trailed by nearly 40 points on CUB.
# - **"The model is biased" is not one measurement.** Bias amplification depends on what it is compared with:
#   the world, or the captions that leave the attribute unsaid. Our mismatch world shows both readings on one
#   model.
#
# ## 5. Exercises
#
# Each exercise is a function for you to fill in: replace `raise NotImplementedError` with your code and run
# the cell below it. The check says, in plain words, what is wrong. Then run the experiment it asks for:
# **write your prediction down first**. Solutions are in
# [solutions/09_limitations.ipynb](solutions/09_limitations.ipynb).

# %%
from dalle_lessons.exercises.l09_limitations import check_kid, check_prompt_bootstrap, check_sample_unsaid_position

# %% [markdown]
# ### Exercise 1: an unbiased distance (KID's estimator)
#
# The Fréchet distance is biased upward for small sets (section 1). The **Kernel Inception Distance** (KID,
# Bińkowski et al. 2018) replaces the two Gaussians with a kernel and uses an **unbiased** estimator of the
# squared maximum mean discrepancy. Write `my_kid(x, y)` for feature sets `x` `[n, d]` and `y` `[m, d]`, with
# KID's kernel `k(a, b) = (a·b / d + 1)³`:
#
# $$\mathrm{MMD}^2 = \frac{1}{n(n-1)}\sum_{i \ne j} k(x_i, x_j) + \frac{1}{m(m-1)}\sum_{i \ne j} k(y_i, y_j) - \frac{2}{nm}\sum_{i, j} k(x_i, y_j)$$
#
# and return it as one number. Then predict, before measuring: how does KID on real-vs-real move with `n`
# (25 … 300), compared with the Fréchet floor? And do the two distances rank four degraded copies of set B
# (blurred 1 and 2 px, noise 0.1 and 0.2) in the same order?

# %%
def my_kid(x: torch.Tensor, y: torch.Tensor) -> float:
    # Your code here.
    raise NotImplementedError


ok = check_kid(my_kid)

# %% [markdown]
# ### Exercise 2: intervals that respect prompts
#
# The bias table's intervals resample **prompts**, not images. Write `prompt_bootstrap(rows, statistic,
# resamples=1000, seed=0)`: `rows` holds one list per prompt (that prompt's per-image values, e.g. 1.0 when the
# image is right and 0.0 when not), and `statistic(rows)` turns such a list of lists into one number. Draw
# `resamples` resamples, each `len(rows)` prompts drawn **with replacement** from `random.Random(seed)`;
# compute the statistic of each; return the 95 % percentile interval `(low, high)` (the 2.5th and 97.5th
# percentiles). Then predict: for the held-out pairs of set b, whose success depends a lot on the caption, how
# much wider is the prompt-level interval than one that resamples single images?

# %%
def prompt_bootstrap(rows: list[list[float]], statistic, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    # Your code here.
    raise NotImplementedError


ok = check_prompt_bootstrap(prompt_bootstrap)

# %% [markdown]
# ### Exercise 3: the remedy for an unsaid position
#
# Section 2 showed how the model spreads objects over the nine cells when the caption leaves the place unsaid.
# Write the remedy of section 3 for **position**: `sample_unsaid_position(captions, target, seed)` returns the
# captions with a position added to every **one-object caption that leaves it unsaid**, drawn from `target`
# (`{cell name: weight}`, cell names as in `shapes.POSITION_NAMES`, e.g. `"top left"`), one draw per caption
# from `random.Random(seed)`. Captions that already state a position, and two-object captions, stay as they
# are. Use the world's own phrasing so that the model and the judge understand it ("a red circle at the top
# left", or "top left: a red circle"); `shapes.parse_caption` tells you what a caption states. Then predict: with
# an even target over the nine cells, how close does the drawn distribution of places come to even, compared
# with the unsaid captions of section 2?

# %%
def sample_unsaid_position(captions: list[str], target: dict[str, float], seed: int = 0) -> list[str]:
    # Your code here.
    raise NotImplementedError


ok = check_sample_unsaid_position(sample_unsaid_position)

# %% [markdown]
# ## Takeaways
#
# - **Quality** of a set of pictures is a distance between distributions. The Fréchet distance fits a Gaussian
#   to each set's features; it has a **floor** (two real sets), a **small-sample bias** (compare equal sizes),
#   and it sees only what its feature network sees. Ours uses the course's CLIP: FID's formula, not an FID.
# - The **dVAE sets a ceiling**: generated pictures leave through its decoder, so no transformer can beat the
#   reconstructions. The paper's blur experiment found that limit in DALL·E; ours sits almost on the floor.
# - Sampling **trades** faithfulness for diversity, and the distance wants both: it rises when either is lost.
#   Strong guidance breaks this small model; reranking buys correctness and spends variety.
# - **Control** is a confusion matrix per attribute: where the model obeys, where it confuses, and where the
#   world's unseen combinations (held-out pairs) break it.
# - For what a caption **leaves unsaid**, a faithful model reproduces the training distribution *for captions
#   that leave it unsaid*; a caption form never seen in training has no such target at all.
# - **Bias amplification** must be measured against the right reference. Against the world, a model faithful
#   to mismatched captions looks like an amplifier. Rebalanced data, always-stated attributes and a sampled
#   unsaid attribute each fix a different link of the chain, with measured effects; the hardware remedy is
#   lesson 12's. Our skewed model copied its skew without amplifying it, and mode-seeking sampling did not
#   change that: a prediction worth making, and worth seeing fail.
# - The paper reported FID within about 2 points of the best prior model zero-shot, the best FID after a
#   slight blur, a nearly 40-point gap on CUB, and human preference over DF-GAN of 90.0 % (realism) and 93.3 %
#   (caption match): FID was one measurement among several, not the verdict.
#
# ## Check your understanding
#
# 1. Why is the Fréchet distance between two samples of the same distribution not 0, and why does it fall
#    as the samples grow?
# 2. Why is the dVAE-reconstruction row a ceiling for every generated row, however good the transformer? And
#    why must a generated row be read against "real, same captions" rather than against the real floor?
# 3. Low temperature raises the all-correct rate and lowers diversity. Which of the two does the Fréchet
#    distance care about, and why?
# 4. A model draws red for 90 % of colorless triangle prompts; 80 % of the world's triangles are red. Is it
#    amplifying? What else do you need to know?
# 5. Why does the sampled-unsaid-color remedy make the bias figures look good without changing the model at
#    all? What does it leave unsolved?
#
# The answers are in the [solutions notebook](solutions/09_limitations.ipynb).
#
# **Next: 10 · fine-tuning** (coming soon), which teaches the model new things with the LoRA adapters this
# lesson only loaded.
