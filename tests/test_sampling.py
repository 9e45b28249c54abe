"""Generation of image tokens: KV cache against the reference path, seeds, guidance, completion.

The filters themselves (top-k, top-p, temperature) are tested in test_sampling_filters.py.
"""
import dataclasses

import pytest
import torch

from dalle_lessons.config import get_preset
from dalle_lessons.sampling import (filter_logits, generate_image_tokens, guided_logits, iter_image_tokens,
                                    sample_from_logits)
from dalle_lessons.transformer import DalleTransformer

TINY = get_preset("tiny").transformer  # 16 text tokens, 4 x 4 = 16 image tokens, 64 codes


def make_model(pattern: str = "full", seed: int = 0) -> DalleTransformer:
    """A random tiny model with the peaked logits of a trained one, so every token depends on its context.

    At init the logits are nearly flat and the caption barely matters: any small error in what the
    model reads would hardly change a sample. Larger caption embeddings and output weights fix that.
    """
    config = dataclasses.replace(TINY, attention_pattern=pattern)
    model = DalleTransformer(config, generator=torch.Generator().manual_seed(seed)).eval()
    with torch.no_grad():
        model.text_emb.weight.mul_(100)
        model.image_emb.weight.mul_(30)
        model.image_head.weight.mul_(30)
    return model


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def text():
    ids = torch.randint(1, TINY.text_vocab_size, (3, TINY.text_seq_len), generator=torch.Generator().manual_seed(1))
    ids[:, 5:] = TINY.pad_id  # short captions, then pads, like the tokenizer's
    return ids


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def manual_conditional_sampling(model, text, temperature=1.0, top_k=None, top_p=None, seed=0):
    """Plain conditional sampling written out with prefill/step: what guidance_scale=1 must equal."""
    generator, tokens = seeded(seed), []
    logits, cache = model.prefill(text)
    for i in range(model.config.image_seq_len):
        if i:
            logits = model.step(tokens[-1], cache)
        tokens.append(sample_from_logits(filter_logits(logits, temperature, top_k, top_p), generator))
    return torch.stack(tokens, dim=1)


SETTINGS = [dict(), dict(top_k=5), dict(top_p=0.8, temperature=0.7), dict(temperature=0),
            dict(guidance_scale=3.0, top_k=10), dict(guidance_scale=2.0, top_p=0.9, prefix=6)]


@pytest.mark.parametrize("pattern", ["full", "paper"])
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "plain")
def test_cached_and_uncached_generation_give_identical_tokens(pattern, settings, text):
    model = make_model(pattern)
    settings = dict(settings)
    if "prefix" in settings:
        settings["prefix"] = torch.randint(0, TINY.image_vocab_size, (len(text), settings["prefix"]),
                                           generator=seeded(5))
    cached = generate_image_tokens(model, text, generator=seeded(3), **settings)
    reference = generate_image_tokens(model, text, generator=seeded(3), use_cache=False, **settings)
    assert cached.shape == (len(text), TINY.image_seq_len) and cached.dtype == torch.long
    assert torch.equal(cached, reference)


def test_same_seed_same_tokens_other_seed_other_tokens(model, text):
    a = generate_image_tokens(model, text, generator=seeded(7))
    b = generate_image_tokens(model, text, generator=seeded(7))
    c = generate_image_tokens(model, text, generator=seeded(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_guidance_at_scale_one_is_conditional_sampling(model, text):
    expected = manual_conditional_sampling(model, text, top_k=10, seed=4)
    for use_cache in (True, False):
        got = generate_image_tokens(model, text, guidance_scale=1.0, top_k=10, generator=seeded(4), use_cache=use_cache)
        assert torch.equal(got, expected)
    cond, uncond = torch.randn(2, 4, 64, generator=seeded(0))
    assert guided_logits(cond, uncond, 1.0) is cond  # exactly, not up to rounding
    assert torch.allclose(guided_logits(cond, uncond, 3.0), uncond + 3 * (cond - uncond))


def test_guidance_at_scale_zero_ignores_the_caption(text):
    """Scale 0 keeps only the empty-caption rows of the 2B batch: the same as sampling with no caption."""
    model = make_model()
    unguided = generate_image_tokens(model, model.empty_text(len(text)), generator=seeded(2))
    assert torch.equal(generate_image_tokens(model, text, guidance_scale=0.0, generator=seeded(2)), unguided)
    assert not torch.equal(generate_image_tokens(model, text, guidance_scale=3.0, generator=seeded(2)), unguided)


def test_temperature_zero_is_greedy_and_draws_nothing(model, text):
    generator = seeded(0)
    state = generator.get_state()
    greedy = generate_image_tokens(model, text, temperature=0, generator=generator)
    assert torch.equal(generator.get_state(), state)
    logits, cache = model.prefill(text)
    expected = [logits.argmax(-1)]
    for _ in range(TINY.image_seq_len - 1):
        expected.append(model.step(expected[-1], cache).argmax(-1))
    assert torch.equal(greedy, torch.stack(expected, dim=1))
    assert torch.equal(generate_image_tokens(model, text, top_k=1, generator=seeded(9)), greedy)  # top-1 = greedy


@pytest.mark.parametrize("n", [0, 1, 7, TINY.image_seq_len - 1, TINY.image_seq_len])
def test_completion_keeps_the_given_prefix(model, text, n):
    prefix = torch.randint(0, TINY.image_vocab_size, (len(text), n), generator=seeded(1))
    for use_cache in (True, False):
        tokens = generate_image_tokens(model, text, prefix=prefix, generator=seeded(0), use_cache=use_cache)
        assert tokens.shape == (len(text), TINY.image_seq_len)
        assert torch.equal(tokens[:, :n], prefix)


def test_iter_image_tokens_grows_one_token_at_a_time_to_the_full_image(model, text):
    prefix = torch.randint(0, TINY.image_vocab_size, (len(text), 4), generator=seeded(1))
    steps = list(iter_image_tokens(model, text, prefix=prefix, top_p=0.9, generator=seeded(5)))
    assert [s.shape[1] for s in steps] == list(range(5, TINY.image_seq_len + 1))
    for shorter, longer in zip(steps, steps[1:]):
        assert torch.equal(longer[:, :-1], shorter)
    assert torch.equal(steps[-1], generate_image_tokens(model, text, prefix=prefix, top_p=0.9, generator=seeded(5)))
    full = torch.zeros(len(text), TINY.image_seq_len, dtype=torch.long)
    assert [s.shape[1] for s in iter_image_tokens(model, text, prefix=full)] == [TINY.image_seq_len]


def test_generation_runs_in_eval_mode_and_restores_the_mode(text):
    """Caption dropout and dropout are training-only: a model left in train mode still samples right."""
    model = make_model().train()
    cached = generate_image_tokens(model, text, generator=seeded(1))
    assert model.training
    assert torch.equal(cached, generate_image_tokens(model, text, generator=seeded(1), use_cache=False))


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-1.0), r"temperature must be 0 \(greedy\) or a number from"),
    (dict(temperature=float("inf")), r"temperature must be 0 \(greedy\) or a number from"),
    (dict(top_k=0), "top_k must be an int >= 1"),
    (dict(top_k=2.5), "top_k must be an int >= 1"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(guidance_scale=float("nan")), "guidance_scale must be a number from 0 to 10"),
    (dict(prefix=torch.zeros(2, 3, dtype=torch.long)), r"prefix must be a tensor \[batch=3, n\]"),
    (dict(prefix=torch.zeros(3, TINY.image_seq_len + 1, dtype=torch.long)), "n <= 16"),
    (dict(prefix=torch.zeros(3, 2)), "integer image token ids"),
    (dict(prefix=torch.full((3, 2), TINY.image_vocab_size)), r"prefix ids must lie in \[0, 64\)"),
])
def test_bad_settings_are_clear_errors(model, text, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_image_tokens(model, text, **kwargs)
    with pytest.raises(ValueError, match=message):  # at the call, not at the first token
        iter_image_tokens(model, text, **kwargs)


def test_bad_captions_are_clear_errors(model):
    with pytest.raises(ValueError, match="batch >= 1"):
        generate_image_tokens(model, torch.zeros(0, TINY.text_seq_len, dtype=torch.long))
    with pytest.raises(ValueError, match="text_ids must be"):
        generate_image_tokens(model, torch.zeros(2, TINY.text_seq_len + 1, dtype=torch.long))
