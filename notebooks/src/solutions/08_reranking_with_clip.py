# %% [markdown]
# # 08 · Reranking with a small CLIP: solutions
#
# Worked solutions to the exercises of lesson 08 ([08_reranking_with_clip.ipynb](../08_reranking_with_clip.ipynb)),
# each followed by the experiment it asks for, and the answers to "check your understanding". Try the
# exercises yourself first: each check tells you what is wrong in plain words. Every solution below is
# followed by its check, asserted, so the tests fail if a solution ever stops passing.

# %%
from dataclasses import replace

import torch
import torch.nn.functional as F

from dalle_lessons import judge
from dalle_lessons.clip import ClipModel, contrastive_loss
from dalle_lessons.clip_data import encode_claims, encode_scenes, match_tensor, probe_variants
from dalle_lessons.exercises.l08_clip import check_contrast_scores, check_dedup_loss, check_swap_shapes
from dalle_lessons.pipeline import TextToImage
from dalle_lessons.shapes import Claim, ObjectClaim, Scene, ShapeObject, ShapesDataset
from dalle_lessons.train_clip import clip_tokenizer

torch.set_grad_enabled(False)
torch.set_printoptions(precision=3, sci_mode=False)

pipe = TextToImage.from_pretrained(device="cpu")
clip = pipe.reranker  # the shipped CLIP
tokenizer = clip_tokenizer("cpu")

# %% [markdown]
# ### Exercise 1: false negatives, the other cure
#
# Mask once, use twice. `others` marks the true pairs off the diagonal; their logits become `-inf`, so they
# vanish from every softmax they appear in, while each pair's own logit (the diagonal) stays. The rows of the
# masked matrix are the caption → image problems and its columns, read as the rows of its transpose, the
# image → caption problems; `F.cross_entropy` with targets `0 … B−1` does the rest. Two slips to avoid:
# masking the diagonal too (the loss becomes infinite) and masking the transposed similarities with the
# untransposed mask (a general caption such as "a red circle" is true of a precise caption's image, not the
# other way round, so `matches` is not symmetric).

# %%
def my_dedup_loss(sims: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
    others = matches & ~torch.eye(len(sims), dtype=torch.bool)  # true pairs that are not the pair itself
    masked = sims.masked_fill(others, float("-inf"))
    target = torch.arange(len(sims))
    return (F.cross_entropy(masked, target) + F.cross_entropy(masked.T, target)) / 2


assert check_dedup_loss(my_dedup_loss)

# %% [markdown]
# **The experiment.** A batch in which many captions repeat: 48 one-object training scenes, each captioned
# with color and shape only ("a red circle"), so every caption is true of every image with that color and
# shape. Which loss is lowest for the trained CLIP?

# %%
data = ShapesDataset("train", 48, seed=0, n_objects=1)
claims = [Claim((ObjectClaim(o.shape, o.color),)) for o in (s.objects[0] for s in data.scenes)]
texts = [f"a {c.objects[0].color} {c.objects[0].shape}" for c in claims]
matches = match_tensor(encode_claims(claims), encode_scenes(data.scenes))
sims = clip(data.images_uint8().float() / 255, tokenizer.encode_batch(texts))
target = matches.float() / matches.float().sum(1, keepdim=True)
soft_floor = -(target * target.clamp(min=1e-12).log()).sum(1).mean()  # the entropy of the row targets
print(f"{int(matches.sum()) - 48} true pairs off the diagonal; captions fit up to {int(matches.sum(1).max())} images")
print(f"one-hot loss      {contrastive_loss(sims):.3f}")
print(f"soft-target loss  {contrastive_loss(sims, matches):.3f}  (its rows can go no lower than {soft_floor:.3f})")
print(f"deduplicated loss {my_dedup_loss(sims, matches):.3f}")
assert my_dedup_loss(sims, matches) < min(contrastive_loss(sims), contrastive_loss(sims, matches))

# %% [markdown]
# The deduplicated loss is by far the lowest: once the equivalent images are out of the softmax, a caption only
# has to beat the images it is *not* true of, which the trained CLIP does. The one-hot and soft losses come out
# close together, and well above it: the trained CLIP spreads each caption's probability over the images it
# fits, and a caption that fits `k` images then costs about `ln k` under either target. What differs is what
# each asks for next (the gradients of section 1): the one-hot target still wants the caption's own image above
# images that look exactly the same to the caption, an impossible demand that pushes true pairs apart; the soft
# target is content. The soft loss can never reach 0: a cross-entropy against a target spread over `k` images is
# at least that target's entropy, `ln k`, reached when the model spreads its probability the same way. That floor
# is harmless, because the gradient is zero there. Both cures stop the damage; the library uses soft targets,
# which also give each image a target when several captions fit it.
#
# ### Exercise 2: a new probe kind, shapes exchanged
#
# Exchange the two shapes, keep everything else; `None` where there is nothing to exchange.

# %%
def swap_shapes(scene: Scene) -> Scene | None:
    if len(scene.objects) != 2:
        return None
    a, b = scene.objects
    if a.shape == b.shape:
        return None  # exchanging equal shapes changes nothing: the "variant" would be true
    return Scene((replace(a, shape=b.shape), replace(b, shape=a.shape)), scene.background)


assert check_swap_shapes(swap_shapes)

# %% [markdown]
# **The experiment.** The prediction: a bag of words ties on every one of these variants, exactly as on the
# color swap, because the variant uses the very same words ("a small red circle ... a large blue square" →
# "a small red square ... a large blue circle"). CLIP trained with hard negatives (which include exchanged
# shapes) should get most of them right. Measured on 300 two-object test scenes whose shapes differ:

# %%
two = ShapesDataset("test", 300, seed=0, n_objects=2, cache=True)
keep = [k for k, s in enumerate(two.scenes) if swap_shapes(s) is not None]  # scenes whose shapes differ
scenes = [two.scenes[k] for k in keep]
images = two.images_uint8()[keep].float() / 255
true = [probe_variants(s)[0] for s in scenes]
shape_swapped = [probe_variants(swap_shapes(s))[0] for s in scenes]
color_swapped = [probe_variants(s)[1]["swap"][0] for s in scenes]
same_bag = sum(sorted(tokenizer.encode(t)) == sorted(tokenizer.encode(v)) for t, v in zip(true, shape_swapped))
true_score = clip.score(images, tokenizer.encode_batch(true))
for name, variants in [("shapes exchanged", shape_swapped), ("colors exchanged", color_swapped)]:
    accuracy = (clip.score(images, tokenizer.encode_batch(variants)) < true_score).float().mean().item()
    print(f"{name}: CLIP prefers the true caption for {100 * accuracy:.1f} % of {len(scenes)} scenes")
print(f"the variant has exactly the true caption's tokens (a bag of words ties) in {same_bag} of {len(scenes)}")
print("e.g.", repr(true[0]), "->", repr(shape_swapped[0]))
assert same_bag == len(scenes)

# %% [markdown]
# Every shape-exchanged caption has exactly the tokens of the true one, so an order-blind encoder scores them
# the same every time. CLIP separates most of them, about as well as the color swaps: binding a word to the
# right object is what the hard negatives taught it.
#
# ### Exercise 3: rerank by contrast
#
# Encode the image once and the `K + 1` captions once; their products are cosines `[n, K + 1]`; scale them and
# take the softmax along the captions (`dim=-1`), then keep the caption's column.

# %%
def contrast_scores(model: ClipModel, images: torch.Tensor, caption_ids: torch.Tensor,
                    variant_ids: torch.Tensor) -> torch.Tensor:
    image = model.encode_image(images)  # [n, d] unit vectors
    text = model.encode_text(torch.cat([caption_ids, variant_ids]))  # [K + 1, d], the caption first
    return (model.scale() * image @ text.T).softmax(dim=-1)[:, 0]


assert check_contrast_scores(contrast_scores)

# %% [markdown]
# **The experiment.** Eight one-object scenes with **held-out** color–shape pairs (where the generator often
# draws a near miss), their canonical captions, 16 samples each; each caption's variants come from
# `probe_variants`. For each caption, CLIP's plain pick and the contrast pick, judged. The
# prediction is open: contrast should help where a sample fits the caption and a near miss equally well, and
# it can hurt when a sample fits neither (a low cosine can still win a softmax among bad captions).

# %%
picks = ShapesDataset("heldout", 8, seed=11, n_objects=1, render_images=False).scenes
captions = [probe_variants(s)[0] for s in picks]
ranked = pipe.generate_ranked(captions, n=1, rerank=16, seed=2)
pixels = pipe.decode(ranked.candidates)
plain_right = contrast_right = any_right = 0
for p, (scene, caption) in enumerate(zip(picks, captions)):
    candidates = pixels[p * 16:(p + 1) * 16]
    variants = [v for vs in probe_variants(scene)[1].values() for v in vs]
    contrast = contrast_scores(clip, candidates, tokenizer.encode_batch([caption]), tokenizer.encode_batch(variants))
    right = [judge.score(image, caption).all_correct for image in candidates]
    plain_right += right[int(ranked.chosen[p])]
    contrast_right += right[int(contrast.argmax())]
    any_right += any(right)
print(f"right picks among {len(captions)} captions: CLIP score {plain_right}, contrast {contrast_right}, "
      f"oracle {any_right}")
assert max(plain_right, contrast_right) <= any_right

# %% [markdown]
# On this handful the two choosers land close together (run more captions before believing a difference). The
# lesson of the experiment is what the contrast score needs: a list of near misses for every caption. Here the
# data generator writes them; for free text a reranker would need another model to write them, which is one
# reason DALL·E kept the plain CLIP score.
#
# ## Check your understanding: answers
#
# 1. **Two directions.** Rows teach each caption to pick its image among the batch's images; columns teach each
#    image to pick its caption among the batch's captions. With rows alone, nothing stops the model from
#    mapping many images to nearly the same point, as long as each caption can still find its own one; columns
#    make every image stand apart from the other captions too. Retrieval and reranking use both directions
#    (reranking compares images for one caption, a row).
# 2. **The soft floor.** With the target spread over `k` true images, the cross-entropy is at least the target's
#    entropy, `ln k`, reached when the model spreads its probability the same way. Since the gradient is zero
#    there, the floor pushes nothing apart: it is a constant, not a penalty.
# 3. **Exact tie, near coin toss.** The swap variant uses exactly the same tokens as the true caption, so any
#    order-blind encoder gives it the same vector: a tie, every time. The relation variant changes one word
#    ("left" for "right"), so the vectors differ, but which one fits depends on the order of the two objects in
#    the caption, which the bag cannot see; whatever it learns is right for one order and wrong for the other.
# 4. **The oracle's ceiling.** The oracle is right whenever any of the N samples is right; CLIP picks one of the
#    same N, so it can be right only when the oracle is. The oracle is the judge, which reads our toy world's
#    pixels with hand-written rules and a known list of attributes; for photographs and free captions no such
#    referee exists, which is why DALL·E needed a learned one, CLIP.
# 5. **Keeping the judge independent.** The judge is how the course measures everything, reranking included. A
#    CLIP trained on the judge's readings would learn the judge's mistakes as well as its rights, and the curve
#    of section 6 would measure how well CLIP imitates its teacher instead of how well it reads captions.
