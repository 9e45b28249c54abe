"""`composition`: fallback captions, contrastive guidance and the model's own caption posterior.

Run on the `tiny` preset with random weights: what is tested is the arithmetic (the combined logits,
the masks, the row bookkeeping of the big batch, Bayes' rule over rival captions), not the numbers a
trained model reaches (those are measured by benchmarks/composition.py).
"""
import random

import pytest
import torch

from dalle_lessons.composition import (_object_tokens, _row_sources, _rows, _sample,
                                       claim_caption, composed_logits, fallbacks, generate_composed, image_nll)
from dalle_lessons.sampling import generate_image_tokens, guided_logits
from dalle_lessons.shapes import (COLORS, SHAPES, Scene, ShapeObject, ShapesDataset, caption_scene,
                                  parse_caption)

from test_evaluate_generation import tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def dataset_claims(n_objects: int, n: int = 60):
    data = ShapesDataset("train", n, n_objects=n_objects, render_images=False)
    return [data.item_claim(i) for i in range(n)]


@pytest.mark.parametrize("n_objects", [1, 2])
def test_claim_caption_states_exactly_the_claim(n_objects):
    for caption, claim in dataset_claims(n_objects):
        assert parse_caption(claim_caption(claim)) == claim, caption


def test_fallbacks_change_one_shape_or_one_color_of_one_object():
    _, one = dataset_claims(1, 1)[0]
    shapes, colors = fallbacks(one)
    assert len(shapes) == len(SHAPES) - 1 and len(colors) == len(COLORS) - 1
    assert {c.objects[0].shape for c in shapes} == set(SHAPES) - {one.objects[0].shape}
    assert all(c.objects[0].color == one.objects[0].color for c in shapes)
    assert {c.objects[0].color for c in colors} == set(COLORS) - {one.objects[0].color}
    _, two = dataset_claims(2, 1)[0]
    shapes, colors = fallbacks(two)
    assert len(shapes) == 2 * (len(SHAPES) - 1) and len(colors) == 2 * (len(COLORS) - 1)
    for claim in shapes + colors:  # exactly one attribute of one object differs
        changes = sum(a.shape != b.shape or a.color != b.color for a, b in zip(claim.objects, two.objects))
        assert changes == 1 and claim.relation == two.relation


def test_rows_of_the_big_batch_point_at_their_captions(pipe):
    captions = ["a red circle", "a blue square above a green cross"]
    rows = _rows(pipe.tokenizer, pipe.transformer, captions)
    decoded = [pipe.tokenizer.decode(t) for t in rows.text]
    assert decoded[:2] == captions and decoded[2:4] == ["", ""]
    assert decoded[4:6] == ["a red circle", "a blue square above a green cross"]
    for b, claim in enumerate(parse_caption(c) for c in captions):
        shapes, colors = fallbacks(claim)
        for index, expected in ((rows.shape_rows[b], shapes), (rows.color_rows[b], colors)):
            real = [int(i) for i in index if i >= 0]
            assert [decoded[i] for i in real] == [claim_caption(c) for c in expected]
            assert all(int(rows.owner[i]) == b for i in real)
    assert rows.owner[:4].tolist() == [0, 1, 0, 1]


def test_composed_logits_without_weights_is_classifier_free_guidance():
    g = torch.Generator().manual_seed(0)
    cond, uncond, canon, s, c = (torch.randn(3, 10, generator=g).log_softmax(-1) for _ in range(5))
    assert torch.equal(composed_logits(cond, uncond, canon, s, c, 1.7, 0.0, 0.0), guided_logits(cond, uncond, 1.7))
    pushed = composed_logits(cond, uncond, canon, s, c, 1.0, 2.0, 0.5)
    assert torch.allclose(pushed, cond + 2.0 * (canon - s) + 0.5 * (canon - c))


def test_plausibility_mask_keeps_tokens_near_the_best_under_the_caption():
    cond = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    zeros = torch.zeros_like(cond)
    out = composed_logits(cond, cond, zeros, zeros, zeros, 1.0, 1.0, 1.0, plausibility=0.4)
    assert torch.isfinite(out[0, :2]).all() and torch.isinf(out[0, 2:]).all()  # 0.15 < 0.4 x 0.5
    assert torch.isfinite(composed_logits(cond, cond, zeros, zeros, zeros, 1.0, 1.0, 1.0)).all()


NO_WEIGHTS = dict(guidance_scale=1.5, shape_weight=0.0, color_weight=0.0, plausibility=0.0)
FILTERS = dict(temperature=1.0, top_k=None, top_p=None)
CAPTIONS = ["a red circle", "a small blue square at the top left", "a green cross left of a cyan disc"]


def test_sampling_loop_without_weights_samples_what_plain_sampling_samples(pipe):
    """The bookkeeping check: zero weights through the big batch = the ordinary sampler."""
    plain = generate_image_tokens(pipe.transformer, pipe.tokenizer.encode_batch(CAPTIONS), guidance_scale=1.5,
                                  generator=torch.Generator().manual_seed(3), **FILTERS)
    looped, _ = _sample(pipe.transformer, pipe.tokenizer, CAPTIONS, 1, 0, 1.0, torch.Generator().manual_seed(3),
                        FILTERS, NO_WEIGHTS)
    assert torch.equal(plain, looped)


def test_the_loop_posterior_is_bayes_rule_on_teacher_forced_likelihoods(pipe):
    """What the loop accumulates token by token = the whole image's likelihood under each caption."""
    tokens, posterior = _sample(pipe.transformer, pipe.tokenizer, CAPTIONS, 1, 0, 1.0,
                                torch.Generator().manual_seed(4), FILTERS, NO_WEIGHTS)
    for b, caption in enumerate(CAPTIONS):
        claim = parse_caption(caption)
        shapes, colors = fallbacks(claim)
        hypotheses = [claim_caption(c) for c in [claim] + shapes + colors]
        log_lik = -image_nll(pipe.transformer, pipe.tokenizer, hypotheses, tokens[b:b + 1].expand(len(hypotheses), -1))
        assert torch.allclose(posterior[b], log_lik[0] - log_lik.logsumexp(0), atol=1e-3)


def test_row_sources_move_every_row_with_its_caption_row(pipe):
    captions = ["a red circle"] * 2 + ["a blue square above a green cross"] * 2
    rows = _rows(pipe.tokenizer, pipe.transformer, captions)
    source = torch.tensor([1, 1, 3, 2])
    moved = _row_sources(rows, source)
    B = len(captions)
    assert moved[:3 * B].tolist() == [k * B + s for k in range(3) for s in source.tolist()]
    for b in range(B):
        real = torch.cat([rows.shape_rows[b], rows.color_rows[b]])
        real = real[real >= 0]
        src = torch.cat([rows.shape_rows[int(source[b])], rows.color_rows[int(source[b])]])
        assert moved[real].tolist() == src[src >= 0].tolist()


def test_generate_composed_is_seeded_and_shaped(pipe):
    captions = ["a red circle", "a blue square above a green cross"]
    make = lambda seed, **kw: generate_composed(pipe.transformer, pipe.tokenizer, captions, temperature=0.7,
                                                top_p=0.9, guidance_scale=1.5,
                                                generator=torch.Generator().manual_seed(seed), **kw)
    for settings in (dict(shape_weight=1.0, color_weight=1.0), dict(shape_weight=1.0, particles=3, resample_every=4)):
        first = make(0, **settings)
        assert first.shape == (2, pipe.transformer.config.image_seq_len) and first.dtype == torch.long
        assert torch.equal(first, make(0, **settings))
        assert not torch.equal(first, make(1, **settings))
        assert int(first.min()) >= 0 and int(first.max()) < pipe.transformer.config.image_vocab_size


def test_particles_without_resampling_return_the_most_probable_sample(pipe):
    captions = ["a red circle", "a blue square above a green cross"]
    chosen = generate_composed(pipe.transformer, pipe.tokenizer, captions, particles=3, resample_every=0,
                               generator=torch.Generator().manual_seed(5))
    pool, posterior = _sample(pipe.transformer, pipe.tokenizer, [c for c in captions for _ in range(3)], 3, 0, 1.0,
                              torch.Generator().manual_seed(5), FILTERS, {**NO_WEIGHTS, "guidance_scale": 1.0})
    for b in range(2):
        assert torch.equal(chosen[b], pool[3 * b + int(posterior[3 * b:3 * b + 3].argmax())])


def test_object_tokens_cover_the_object_and_nothing_far_from_it():
    scene = Scene((ShapeObject("square", "red", "small", 0, 0),), "black")
    mask = _object_tokens(scene, 32, 8).view(8, 8)
    assert mask[:3, :3].any() and not mask[5:, :].any() and not mask[:, 5:].any()
