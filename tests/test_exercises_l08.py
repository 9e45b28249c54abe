"""Lesson 08's self-checks: right answers pass, wrong or unfinished ones fail with a useful message, and
neither the library's functions nor the ones the lesson shows pass them."""
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from dalle_lessons.clip import ClipModel, contrastive_loss
from dalle_lessons.clip_data import probe_variants
from dalle_lessons.exercises.l08_clip import check_contrast_scores, check_dedup_loss, check_swap_shapes
from dalle_lessons.shapes import Scene
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: the deduplicated contrastive loss ------------------------------------------------

def dedup(sims, matches):
    others = matches & ~torch.eye(len(sims), dtype=torch.bool)
    masked = sims.masked_fill(others, float("-inf"))
    target = torch.arange(len(sims))
    return (F.cross_entropy(masked, target) + F.cross_entropy(masked.T, target)) / 2


def dedup_log_softmax(sims, matches):
    """Written out with log_softmax, rows and columns masked separately."""
    others = matches & ~torch.eye(len(sims), dtype=torch.bool)
    rows = sims.masked_fill(others, float("-inf")).log_softmax(1).diagonal()
    cols = sims.masked_fill(others, float("-inf")).log_softmax(0).diagonal()
    return -(rows.mean() + cols.mean()) / 2


def dedup_loops(sims, matches):
    B = len(sims)
    total = 0
    for i in range(B):
        keep = [j for j in range(B) if j == i or not matches[i, j]]
        total = total - sims[i, keep].log_softmax(0)[keep.index(i)]
        keep = [j for j in range(B) if j == i or not matches[j, i]]
        total = total - sims[keep, i].log_softmax(0)[keep.index(i)]
    return total / (2 * B)


def my_soft_contrastive_loss(sims, matches):
    """Lesson 08's section 1 (soft targets), which the check must not accept."""
    m = matches.float()
    rows, cols = m.sum(1) > 0, m.sum(0) > 0
    row_target = m[rows] / m[rows].sum(1, keepdim=True)
    col_target = m[:, cols] / m[:, cols].sum(0, keepdim=True)
    return (-(row_target * sims.log_softmax(dim=1)[rows]).sum(1).mean()
            - (col_target * sims.log_softmax(dim=0)[:, cols]).sum(0).mean()) / 2


def my_contrastive_loss(sims, matches):
    """Lesson 08's one-hot loss from scratch, which ignores matches."""
    return -(sims.log_softmax(dim=1).diagonal().mean() + sims.log_softmax(dim=0).diagonal().mean()) / 2


@pytest.mark.parametrize("right", [dedup, dedup_log_softmax, dedup_loops])
def test_dedup_right_answers(capsys, right):
    assert_passes(check_dedup_loss, right, capsys)


def test_dedup_not_attempted(capsys):
    assert_fails(check_dedup_loss, not_attempted, capsys, "not attempted")


@pytest.mark.parametrize("shortcut, phrase", [
    (lambda sims, matches: contrastive_loss(sims, matches), "soft-target loss"),
    (lambda sims, matches: contrastive_loss(sims), "one-hot loss"),
    (my_soft_contrastive_loss, "soft-target loss"),
    (my_contrastive_loss, "one-hot loss"),
])
def test_dedup_rejects_the_library_and_the_lesson(capsys, shortcut, phrase):
    assert_fails(check_dedup_loss, shortcut, capsys, phrase)


def rows_only(sims, matches):
    others = matches & ~torch.eye(len(sims), dtype=torch.bool)
    target = torch.arange(len(sims))
    return (F.cross_entropy(sims.masked_fill(others, float("-inf")), target) + F.cross_entropy(sims.T, target)) / 2


def mask_not_transposed(sims, matches):
    others = matches & ~torch.eye(len(sims), dtype=torch.bool)
    target = torch.arange(len(sims))
    return (F.cross_entropy(sims.masked_fill(others, float("-inf")), target)
            + F.cross_entropy(sims.T.masked_fill(others, float("-inf")), target)) / 2


def one_direction(sims, matches):
    others = matches & ~torch.eye(len(sims), dtype=torch.bool)
    return F.cross_entropy(sims.masked_fill(others, float("-inf")), torch.arange(len(sims)))


def zero_fill(sims, matches):
    others = matches & ~torch.eye(len(sims), dtype=torch.bool)
    masked = sims.masked_fill(others, 0.0)
    target = torch.arange(len(sims))
    return (F.cross_entropy(masked, target) + F.cross_entropy(masked.T, target)) / 2


def masks_diagonal(sims, matches):
    masked = sims.masked_fill(matches, float("-inf"))
    target = torch.arange(len(sims))
    return (F.cross_entropy(masked, target) + F.cross_entropy(masked.T, target)) / 2


def in_place(sims, matches):
    others = matches & ~torch.eye(len(sims), dtype=torch.bool)
    masked = sims.detach().masked_fill_(others, float("-inf"))
    return dedup(sims, matches) + 0 * masked.sum()


@pytest.mark.parametrize("wrong, phrase", [
    (rows_only, "image -> caption direction still counts"),
    (mask_not_transposed, "not transposed"),
    (one_direction, "only the caption -> image direction"),
    (lambda sims, matches: 2 * dedup(sims, matches), "added the two directions"),
    (zero_fill, "logit of 0"),
    (masks_diagonal, "infinite"),
    (in_place, "in place"),
    (lambda sims, matches: dedup(sims, matches).item(), "should return a torch.Tensor"),
    (lambda sims, matches: dedup(sims, matches).detach(), "no gradient"),
    (lambda sims, matches: torch.stack([dedup(sims, matches)] * 2), "one number"),
    (lambda sims, matches: dedup(sims, matches) + 0.5, "deduplicated loss is"),
    (lambda sims, matches: sims[:, 10], "raised IndexError"),
])
def test_dedup_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_dedup_loss, wrong, capsys, phrase)


# --- exercise 2: shapes exchanged -----------------------------------------------------------------

def swap_shapes(scene):
    if len(scene.objects) != 2 or scene.objects[0].shape == scene.objects[1].shape:
        return None
    a, b = scene.objects
    return Scene((replace(a, shape=b.shape), replace(b, shape=a.shape)), scene.background)


def swap_shapes_reordered(scene):
    """The objects listed the other way round: the same scene."""
    swapped = swap_shapes(scene)
    return None if swapped is None else Scene(swapped.objects[::-1], swapped.background)


@pytest.mark.parametrize("right", [swap_shapes, swap_shapes_reordered])
def test_swap_shapes_right_answers(capsys, right):
    assert_passes(check_swap_shapes, right, capsys)


def test_swap_shapes_not_attempted(capsys):
    assert_fails(check_swap_shapes, not_attempted, capsys, "not attempted")


def exchange(*fields, check_same_shape=True):
    def fn(scene):
        if len(scene.objects) != 2 or (check_same_shape and scene.objects[0].shape == scene.objects[1].shape):
            return None
        a, b = scene.objects
        return Scene((replace(a, **{f: getattr(b, f) for f in fields}), replace(b, **{f: getattr(a, f) for f in fields})),
                     scene.background)
    return fn


def library_color_swap(scene):
    """The probe's existing swap kind, as a scene: what the library already does."""
    return exchange("color")(scene)


def unchanged_when_equal(scene):
    if len(scene.objects) != 2:
        return None
    a, b = scene.objects
    return Scene((replace(a, shape=b.shape), replace(b, shape=a.shape)), scene.background)


def one_object_too(scene):
    return swap_shapes(scene) if len(scene.objects) == 2 else scene


def unpacks_two(scene):
    a, b = scene.objects
    return None if a.shape == b.shape else Scene((replace(a, shape=b.shape), replace(b, shape=a.shape)), scene.background)


def other_background(scene):
    swapped = swap_shapes(scene)
    if swapped is None:
        return None
    return Scene(swapped.objects, "white" if scene.background == "black" else "black")


def both_first_shape(scene):
    swapped = swap_shapes(scene)
    if swapped is None:
        return None
    a, b = scene.objects
    return Scene((a, replace(b, shape=a.shape)), scene.background)


@pytest.mark.parametrize("wrong, phrase", [
    (library_color_swap, "existing swap kind"),
    (exchange("row", "col"), "exchanged the two objects' places"),
    (exchange("size"), "exchanged the two objects' sizes"),
    (exchange("shape", "size"), "sizes along with the shapes"),
    (unchanged_when_equal, "same shape"),
    (one_object_too, "one object has nothing to exchange"),
    (unpacks_two, "raised ValueError"),
    (lambda scene: None, "whose shapes differ"),
    (lambda scene: scene if len(scene.objects) == 2 and scene.objects[0].shape != scene.objects[1].shape else None,
     "unchanged"),
    (lambda scene: None if swap_shapes(scene) is None else probe_variants(swap_shapes(scene))[0], "caption"),
    (lambda scene: None if swap_shapes(scene) is None else swap_shapes(scene).objects, "not a tuple"),
    (other_background, "background"),
    (both_first_shape, "exchanging the shapes gives"),
])
def test_swap_shapes_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_swap_shapes, wrong, capsys, phrase)


# --- exercise 3: contrast scores --------------------------------------------------------------------

def contrast(model, images, caption_ids, variant_ids):
    image = model.encode_image(images)
    text = model.encode_text(torch.cat([caption_ids, variant_ids]))
    return (model.scale() * image @ text.T).softmax(-1)[:, 0]


def contrast_with_forward(model, images, caption_ids, variant_ids):
    """model(images, ids) is [K + 1 captions, n images], already scaled: softmax down the columns."""
    return model(images, torch.cat([caption_ids, variant_ids])).softmax(0)[0]


def contrast_variants_first(model, images, caption_ids, variant_ids):
    logits = model(images, torch.cat([variant_ids, caption_ids])).T
    return logits.softmax(-1)[:, -1]


@pytest.mark.parametrize("right", [contrast, contrast_with_forward, contrast_variants_first])
def test_contrast_right_answers(capsys, right):
    assert_passes(check_contrast_scores, right, capsys)


def test_contrast_not_attempted(capsys):
    assert_fails(check_contrast_scores, lambda *args: not_attempted(), capsys, "not attempted")


def cosines(model, images, caption_ids, variant_ids):
    return model.encode_image(images) @ model.encode_text(torch.cat([caption_ids, variant_ids])).T


@pytest.mark.parametrize("wrong, phrase", [
    (lambda model, images, c, v: model.score(images, c.expand(len(images), -1)), "plain cosine"),
    (lambda model, images, c, v: cosines(model, images, c, v).softmax(-1)[:, 0], "raw cosines"),
    (lambda model, images, c, v: (model.scale() * cosines(model, images, c, v)).softmax(0)[:, 0], "runs over the images"),
    (lambda model, images, c, v: (model.scale() * cosines(model, images, c, v)).log_softmax(-1)[:, 0], "log-probabilities"),
    (lambda model, images, c, v: 1 - contrast(model, images, c, v), "variants' share"),
    (lambda model, images, c, v: cosines(model, images, c, v)[:, 0] - cosines(model, images, c, v)[:, 1:].max(1).values,
     "margin"),
    (lambda model, images, c, v: (model.scale() * cosines(model, images, c, v)).softmax(-1), "whole [n, K + 1] table"),
    (lambda model, images, c, v: contrast(model, images, c, v)[:, None], "one score per image"),
    (lambda model, images, c, v: contrast(model, images, c, v).tolist(), "Return a torch.Tensor"),
    (lambda model, images, c, v: contrast(model, images, c, v) ** 2, "the caption's probability is"),
    (lambda model, images, c, v: model.encode_text(v[:, :3]), "raised ValueError"),
])
def test_contrast_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_contrast_scores, wrong, capsys, phrase)


def test_the_library_reranker_score_is_rejected(capsys):
    """What rerank_candidates ranks by (clip.score, the plain cosine) does not pass exercise 3."""
    def reranker_score(model: ClipModel, images, caption_ids, variant_ids):
        return model.score(images, caption_ids.expand(len(images), -1))
    assert_fails(check_contrast_scores, reranker_score, capsys, "clip.score")
