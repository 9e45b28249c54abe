"""Self-checks for lesson 08 (reranking with a small CLIP).

Each check runs the learner's function on small seeded inputs, compares it with a private reference
(the library implements none of the three: its loss uses soft targets, its probe swaps colors, its
reranker uses the plain cosine), and, when it differs, tries the usual mistakes so that the feedback
can name the one that was made. The contrast-score check runs on a small randomly initialised `tiny`
CLIP, so every check takes a fraction of a second and needs no checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F

from dalle_lessons.clip import ClipModel, contrastive_loss
from dalle_lessons.config import get_preset
from dalle_lessons.exercises import Feedback, call_learner, report
from dalle_lessons.shapes import Scene, ShapeObject, ShapesDataset


# --- exercise 1: the deduplicated contrastive loss --------------------------------------------------

def _dedup_reference(sims: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
    """One-hot targets on the diagonal; every other true pair removed from the softmax, both ways."""
    others = matches & ~torch.eye(len(sims), dtype=torch.bool)
    masked = sims.masked_fill(others, float("-inf"))
    target = torch.arange(len(sims))
    return (F.cross_entropy(masked, target) + F.cross_entropy(masked.T, target)) / 2


def _dedup_variant(sims: torch.Tensor, matches: torch.Tensor, mistake: str) -> torch.Tensor:
    target = torch.arange(len(sims))
    others = matches & ~torch.eye(len(sims), dtype=torch.bool)
    masked = sims.masked_fill(others, float("-inf"))
    if mistake == "one_hot":
        return contrastive_loss(sims)
    if mistake == "soft":
        return contrastive_loss(sims, matches)
    if mistake == "rows_only":
        return (F.cross_entropy(masked, target) + F.cross_entropy(sims.T, target)) / 2
    if mistake == "mask_not_transposed":
        return (F.cross_entropy(masked, target) + F.cross_entropy(sims.T.masked_fill(others, float("-inf")), target)) / 2
    if mistake == "one_direction":
        return F.cross_entropy(masked, target)
    if mistake == "summed":
        return F.cross_entropy(masked, target) + F.cross_entropy(masked.T, target)
    if mistake == "zero_fill":
        zeroed = sims.masked_fill(others, 0.0)
        return (F.cross_entropy(zeroed, target) + F.cross_entropy(zeroed.T, target)) / 2
    raise ValueError(mistake)


_DEDUP_MISTAKES = {
    "one_hot": "You ignored `matches`: that is CLIP's plain one-hot loss, which still counts the other true "
               "pairs as negatives. In each row, set the logits of the other images the caption is true of "
               "(matches[i, j] with j != i) to float('-inf') before the softmax.",
    "soft": "That is the soft-target loss of section 1 (the library's contrastive_loss(sims, matches)): it "
            "spreads the target over the true pairs. This exercise keeps the one-hot target on the diagonal "
            "and removes the other true pairs from the softmax instead (logits set to float('-inf')).",
    "rows_only": "Your caption -> image direction is right, but the image -> caption direction still counts "
                 "the other true captions as negatives. Mask the columns too: the same logits, read down "
                 "each column (e.g. the masked matrix's transpose).",
    "mask_not_transposed": "In the image -> caption direction your mask is not transposed: for image j the "
                           "captions to remove are those with matches[i, j], column j of `matches`. Mask the "
                           "matrix once and take the transpose of the masked matrix (or transpose the mask "
                           "together with sims).",
    "one_direction": "You computed only the caption -> image direction. CLIP's loss is symmetric: also take "
                     "the cross-entropy down the columns (image -> caption) and average the two.",
    "summed": "You added the two directions; CLIP averages them: (caption -> image + image -> caption) / 2.",
    "zero_fill": "You set the other true pairs' logits to 0, but a logit of 0 still takes part in the softmax "
                 "(exp(0) = 1). Use float('-inf'), whose probability is exactly 0.",
}


def _dedup_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(description, sims, matches): hand-made, asymmetric, random and real Shapes batches."""
    from dalle_lessons.clip_data import encode_claims, encode_scenes, match_tensor
    from dalle_lessons.train_clip import batch_captions

    gen = torch.Generator().manual_seed(8)
    cases = []
    m = torch.eye(4, dtype=torch.bool)
    m[0, 2] = m[2, 0] = True  # captions 0 and 2 say the same thing
    cases.append(("4 pairs in which captions 0 and 2 are true of both images 0 and 2", 5 * torch.randn(4, 4, generator=gen), m))
    m = torch.eye(5, dtype=torch.bool)
    m[1, 3] = True  # caption 1 ("a red circle") is also true of image 3; caption 3 (more precise) not of image 1
    cases.append(("5 pairs in which caption 1 is also true of image 3, but caption 3 not of image 1",
                  5 * torch.randn(5, 5, generator=gen), m))
    cases.append(("8 pairs with no other true pair (then it is CLIP's one-hot loss)",
                  5 * torch.randn(8, 8, generator=gen), torch.eye(8, dtype=torch.bool)))
    m = (torch.rand(16, 16, generator=gen) < 0.15) | torch.eye(16, dtype=torch.bool)
    cases.append(("16 pairs with random extra true pairs", 8 * torch.randn(16, 16, generator=gen), m))
    data = ShapesDataset("train", 48, seed=3, render_images=False)
    _, claims = batch_captions(data, list(range(48)), "l08-check", hard_negatives=False)
    m = match_tensor(encode_claims(claims), encode_scenes(data.scenes))
    cases.append(("a batch of 48 Shapes captions and scenes", 10 * torch.randn(48, 48, generator=gen), m))
    return cases


def check_dedup_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Exercise 1: `fn(sims, matches)` is CLIP's loss with the other true pairs removed from both softmaxes."""

    def check() -> None:
        cases = _dedup_cases()
        got = []
        with torch.enable_grad():  # the lesson turns gradients off; a loss must still carry them
            for name, sims, matches in cases:
                s, m = sims.clone().requires_grad_(), matches.clone()
                value = call_learner(fn, f"Your loss (with {name})", s, m,
                                     hint=" Hint: sims.masked_fill(mask, float('-inf')) removes logits; "
                                          "F.cross_entropy(logits, torch.arange(B)) is the one-hot loss of each row.")
                if not (torch.equal(s.detach(), sims) and torch.equal(m, matches)):
                    raise Feedback("Your function changed sims or matches in place; build new tensors instead "
                                   "(masked_fill, not masked_fill_).")
                if not isinstance(value, torch.Tensor):
                    raise Feedback(f"Your loss should return a torch.Tensor (one number), but it returned "
                                   f"{type(value).__name__}.")
                if value.numel() != 1:
                    raise Feedback(f"Your loss returned shape {tuple(value.shape)}; return one number for the batch "
                                   "(the mean over rows and over columns, then the average of the two).")
                if torch.isnan(value).any():
                    raise Feedback(f"With {name} your loss is NaN. Check the masking: a row must keep its own "
                                   "pair's logit (the diagonal) finite.")
                if torch.isinf(value).any():
                    raise Feedback("Your loss is infinite: you removed each pair's own similarity too. Keep the "
                                   "diagonal: mask only matches[i, j] with j != i (e.g. matches & ~torch.eye(B, "
                                   "dtype=torch.bool)).")
                if not value.requires_grad:
                    raise Feedback("Your loss carries no gradient: compute it with torch operations on `sims` "
                                   "(no .item(), .detach() or numpy), so that training can backpropagate it.")
                got.append(value.detach().reshape(()))
        wrong = [k for k, (_, sims, matches) in enumerate(cases)
                 if not torch.allclose(got[k], _dedup_reference(sims, matches), atol=1e-4, rtol=1e-5)]
        if not wrong:
            return
        for mistake, message in _DEDUP_MISTAKES.items():  # named only if it explains every case
            if all(torch.allclose(got[k], _dedup_variant(sims, matches, mistake), atol=1e-4, rtol=1e-5)
                   for k, (_, sims, matches) in enumerate(cases)):
                raise Feedback(message)
        name, sims, matches = cases[wrong[0]]
        raise Feedback(f"With {name} your loss is {got[wrong[0]].item():.4f}, but the deduplicated loss is "
                       f"{_dedup_reference(sims, matches).item():.4f}. Per row: logits of the other true images set "
                       "to -inf, cross-entropy with target i; the same per column; the mean of each direction, "
                       "then the average of the two.")

    return report("Exercise 1 (deduplicated contrastive loss)", check)


# --- exercise 2: a new probe kind, shapes exchanged ------------------------------------------------

def _swap_shapes_reference(scene: Scene) -> Scene | None:
    if len(scene.objects) != 2 or scene.objects[0].shape == scene.objects[1].shape:
        return None
    a, b = scene.objects
    return Scene((replace(a, shape=b.shape), replace(b, shape=a.shape)), scene.background)


def _exchange(scene: Scene, *fields: str) -> Scene | None:
    if len(scene.objects) != 2:
        return None
    a, b = scene.objects
    return Scene((replace(a, **{f: getattr(b, f) for f in fields}), replace(b, **{f: getattr(a, f) for f in fields})),
                 scene.background)


_SWAP_MISTAKES = {  # (fields exchanged, message)
    "colors": (("color",), "You exchanged the two objects' colors: that is the probe's existing swap kind "
                           "(probe_variants' 'swap'). Exchange their shapes instead, and keep each color where "
                           "it is."),
    "places": (("row", "col"), "You exchanged the two objects' places: in a caption that reads like flipping "
                               "the relation (the probe's 'relation' kind). Keep the places and exchange the "
                               "shapes."),
    "sizes": (("size",), "You exchanged the two objects' sizes. Exchange their shapes, and keep each size."),
    "shape_and_size": (("shape", "size"), "You exchanged the sizes along with the shapes. Only the shapes "
                                          "change: colors, sizes and places stay with each object."),
}


def _swap_cases() -> list[Scene]:
    two = ShapesDataset("test", 40, seed=4, n_objects=2, render_images=False).scenes
    one = ShapesDataset("test", 4, seed=4, n_objects=1, render_images=False).scenes
    same = [Scene((ShapeObject("circle", "red", "small", 0, 0), ShapeObject("circle", "blue", "large", 2, 2)), "black"),
            Scene((ShapeObject("cross", "green", "large", 1, 0), ShapeObject("cross", "yellow", "large", 1, 2)),
                  "white")]
    return list(two) + list(one) + same


def _describe(scene: Scene) -> str:
    return " and ".join(f"a {o.size} {o.color} {o.shape} at ({o.row}, {o.col})" for o in scene.objects)


def check_swap_shapes(fn: Callable[[Scene], Scene | None]) -> bool:
    """Exercise 2: `fn(scene)` exchanges the two objects' shapes (None for one object or equal shapes)."""

    def check() -> None:
        cases = _swap_cases()
        got = []
        for scene in cases:
            kind = "one object" if len(scene.objects) == 1 else "two objects"
            value = call_learner(fn, f"Your swap_shapes (on a scene with {kind}: {_describe(scene)})", scene,
                                 hint=" Hint: return None when len(scene.objects) != 2 or the two shapes are "
                                      "equal; otherwise a, b = scene.objects and dataclasses.replace(a, shape=b.shape).")
            if isinstance(value, str):
                raise Feedback("You returned a caption; return the changed Scene itself (the lesson captions it "
                               "with probe_variants(scene)[0]).")
            if value is not None and not isinstance(value, Scene):
                raise Feedback(f"Return a Scene (or None), not a {type(value).__name__}.")
            got.append(value)
        for scene, value in zip(cases, got):
            want = _swap_shapes_reference(scene)
            if want is None and value is not None:
                if len(scene.objects) == 1:
                    raise Feedback("A scene with one object has nothing to exchange: return None for it.")
                raise Feedback(f"Both objects of '{_describe(scene)}' have the same shape, so exchanging them "
                               "changes nothing and the 'variant' would be a true caption. Return None then.")
            if want is not None and value is None:
                raise Feedback(f"You returned None for '{_describe(scene)}', whose shapes differ: return the "
                               "scene with the shapes exchanged.")
        pairs = [(s, v) for s, v in zip(cases, got) if v is not None]
        if all(v.key() == _swap_shapes_reference(s).key() and v.background == s.background for s, v in pairs):
            return
        for fields, message in _SWAP_MISTAKES.values():  # named only if it explains every scene
            if all(v.key() == _exchange(s, *fields).key() for s, v in pairs):
                raise Feedback(message)
        if all(v.key() == s.key() for s, v in pairs):
            raise Feedback("You returned the scene unchanged: exchange the two objects' shapes.")
        scene, value = next((s, v) for s, v in pairs if v.key() != _swap_shapes_reference(s).key()
                            or v.background != s.background)
        if value.background != scene.background:
            raise Feedback("Keep the scene's background: Scene(new_objects, scene.background).")
        raise Feedback(f"For '{_describe(scene)}' you returned '{_describe(value)}'; exchanging the shapes gives "
                       f"'{_describe(_swap_shapes_reference(scene))}'.")

    return report("Exercise 2 (a probe kind: shapes exchanged)", check)


# --- exercise 3: contrast scores ------------------------------------------------------------------

def _tiny_clip() -> ClipModel:
    """A small random CLIP whose scale (20) is far from 1, so that forgetting it shows."""
    model = ClipModel(get_preset("tiny").clip, generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(20.0))
    return model


def _contrast_variant(model: ClipModel, images, caption_ids, variant_ids, mistake: str) -> torch.Tensor:
    image = model.encode_image(images)
    text = model.encode_text(torch.cat([caption_ids, variant_ids]))
    cos = image @ text.T  # [n, K + 1]
    if mistake == "reference":
        return (model.scale() * cos).softmax(-1)[:, 0]
    if mistake == "cosine":
        return cos[:, 0]
    if mistake == "no_scale":
        return cos.softmax(-1)[:, 0]
    if mistake == "over_images":
        return (model.scale() * cos).softmax(0)[:, 0]
    if mistake == "log":
        return (model.scale() * cos).log_softmax(-1)[:, 0]
    if mistake == "variants":
        return 1 - (model.scale() * cos).softmax(-1)[:, 0]
    if mistake == "margin":
        return cos[:, 0] - cos[:, 1:].max(1).values
    raise ValueError(mistake)


_CONTRAST_MISTAKES = {
    "cosine": "You returned the plain cosine of each image and the caption: CLIP's own score (clip.score, the "
              "reranker's). The contrast score compares it with the variants: a softmax over [caption, variants] "
              "of the scaled similarities, and the caption's share of it.",
    "no_scale": "You took the softmax of the raw cosines. Multiply them by model.scale() first: the learned scale "
                "is what makes CLIP's probabilities sharp (cosines between -1 and 1 give a nearly flat softmax).",
    "over_images": "Your softmax runs over the images (each caption's distribution over the n images). The "
                   "contrast score asks, for each image, which of the K + 1 captions fits it: softmax over the "
                   "captions.",
    "log": "You returned log-probabilities; return the probabilities themselves (exp of yours, or softmax "
           "instead of log_softmax).",
    "variants": "You returned the variants' share, 1 minus the caption's. Return the caption's own probability "
                "(the first column when the caption comes first).",
    "margin": "You returned a margin of cosines (caption minus the best variant). Turn the K + 1 scaled "
              "similarities into probabilities with a softmax over the captions and return the caption's.",
}


def check_contrast_scores(fn: Callable[..., torch.Tensor]) -> bool:
    """Exercise 3: `fn(model, images, caption_ids, variant_ids)` is softmax over [caption, variants] at column 0."""

    def check() -> None:
        model = _tiny_clip()
        c = model.config
        gen = torch.Generator().manual_seed(5)
        cases = []
        for n, k in ((5, 3), (1, 1), (7, 6)):
            images = torch.rand(n, 3, c.image_size, c.image_size, generator=gen)
            ids = torch.randint(1, c.text_vocab_size, (k + 1, c.text_seq_len), generator=gen)
            ids[:, 6:] = c.pad_id  # short captions, padded on the right
            cases.append((f"{n} images and {k} variants", images, ids[:1], ids[1:]))
        got = []
        with torch.no_grad():
            for name, images, caption_ids, variant_ids in cases:
                value = call_learner(fn, f"Your contrast_scores (with {name})", model, images.clone(),
                                     caption_ids.clone(), variant_ids.clone(),
                                     hint=" Hint: model.encode_image(images) and model.encode_text(torch.cat("
                                          "[caption_ids, variant_ids])) are unit vectors; their products are cosines.")
                want = _contrast_variant(model, images, caption_ids, variant_ids, "reference")
                if not isinstance(value, torch.Tensor):
                    raise Feedback(f"Return a torch.Tensor of {len(images)} scores, not a {type(value).__name__}.")
                if value.shape != want.shape:
                    if value.shape == (len(images), len(variant_ids) + 1):
                        raise Feedback(f"You returned the whole [n, K + 1] table {tuple(value.shape)}. Return one "
                                       "score per image: the caption's column.")
                    raise Feedback(f"With {name} you returned shape {tuple(value.shape)}; return one score per "
                                   f"image, shape {tuple(want.shape)}.")
                got.append(value.float())
        wrong = [k for k, case in enumerate(cases)
                 if not torch.allclose(got[k], _contrast_variant(model, *case[1:], "reference"), atol=1e-5)]
        if not wrong:
            return
        for mistake, message in _CONTRAST_MISTAKES.items():  # named only if it explains every case
            if all(torch.allclose(got[k], _contrast_variant(model, *case[1:], mistake), atol=1e-5)
                   for k, case in enumerate(cases)):
                raise Feedback(message)
        name, *inputs = cases[wrong[0]]
        raise Feedback(f"With {name} your scores are {[round(v, 4) for v in got[wrong[0]].tolist()]}; the caption's "
                       f"probability is {[round(v, 4) for v in _contrast_variant(model, *inputs, 'reference').tolist()]}. "
                       "Scaled cosines of each image with [caption, variants], softmax over those K + 1, first column.")

    return report("Exercise 3 (contrast scores)", check)
