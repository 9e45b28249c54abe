import dataclasses
import math

import pytest
import torch

from dalle_lessons.config import get_preset
from dalle_lessons.dvae import (DiscreteVAE, code_usage, gumbel_softmax, kl_to_uniform, kl_weight_at,
                                logit_laplace_nll, map_pixels, object_weights, psnr, temperature_at,
                                unmap_pixels, usage_penalty)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def make(preset: str = "tiny", **changes) -> DiscreteVAE:
    torch.manual_seed(0)
    return DiscreteVAE(dataclasses.replace(get_preset(preset).dvae, **changes))


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("preset", ["tiny", "cpu"])
@pytest.mark.parametrize("quantizer", ["gumbel", "vq"])
def test_encode_and_decode_shapes_and_dtypes(preset, quantizer):
    model = make(preset, quantizer=quantizer).eval()
    config = model.config
    x = images(2, config.image_size)
    ids = model.encode(x)
    assert ids.shape == (2, config.grid_size, config.grid_size) and ids.dtype == torch.long
    assert 0 <= int(ids.min()) and int(ids.max()) < config.codebook_size
    out = model.decode(ids)
    assert out.shape == (2, 3, config.image_size, config.image_size) and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    train_out = model(x, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert train_out.recon.shape == x.shape and train_out.ids.shape == ids.shape
    assert all(t.ndim == 0 for t in (train_out.recon_loss, train_out.kl, train_out.usage, train_out.commit))


def test_grid_sizes_follow_the_presets():
    assert [(get_preset(p).dvae.image_size, get_preset(p).dvae.grid_size) for p in ("tiny", "cpu", "colab")] == [
        (16, 4), (32, 8), (64, 16)]
    model = make("colab").eval()
    assert model.encode(images(1, 64)).shape == (1, 16, 16)


def test_bad_inputs_are_clear_errors():
    model = make()
    with pytest.raises(ValueError, match=r"\[B, 3, 16, 16\].*matching preset"):
        model.encode(images(1, 32))
    with pytest.raises(ValueError, match="divide by 255"):
        model.encode(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"ids must be integers in \[0, 64\)"):
        model.decode(torch.full((1, 4, 4), 64))
    with pytest.raises(ValueError, match=r"\[B, 4, 4\]"):
        model.decode(torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown quantizer 'kmeans'"):
        make(quantizer="kmeans")


def test_schedules_end_points():
    assert temperature_at(0, 1000) == 1.0 and temperature_at(1000, 1000) == 1 / 16
    assert temperature_at(5000, 1000) == 1 / 16
    assert 1 / 16 < temperature_at(500, 1000) < 1.0
    assert temperature_at(500, 1000) == pytest.approx((1 + 1 / 16) / 2)  # a cosine is halfway at halfway
    assert kl_weight_at(0, 100, 300, 6.6) == 0.0 and kl_weight_at(100, 100, 300, 6.6) == 0.0
    assert kl_weight_at(300, 100, 300, 6.6) == 6.6 and kl_weight_at(10_000, 100, 300, 6.6) == 6.6
    values = [kl_weight_at(s, 100, 300, 6.6) for s in range(0, 400, 10)]
    assert values == sorted(values)  # monotone warm-up


def test_gumbel_softmax_soft_samples_sum_to_one_and_hard_samples_are_one_hot():
    logits = torch.randn(4, 3, 3, 10, generator=torch.Generator().manual_seed(0))
    soft = gumbel_softmax(logits, 0.7, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(soft.sum(-1), torch.ones(4, 3, 3)) and (soft > 0).all()
    logits.requires_grad_(True)
    hard = gumbel_softmax(logits, 0.7, hard=True, generator=torch.Generator().manual_seed(1))
    assert set(hard.detach().unique().tolist()) == {0.0, 1.0} and torch.equal(hard.sum(-1), torch.ones(4, 3, 3))
    assert torch.equal(hard.detach().argmax(-1), soft.argmax(-1))  # same noise, same sample
    (hard * torch.arange(10.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # straight-through gradient


def test_gumbel_max_samples_follow_the_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    samples = gumbel_softmax(logits.expand(40_000, 4), 1.0, generator=torch.Generator().manual_seed(0))
    frequency = torch.bincount(samples.argmax(-1), minlength=4).float() / 40_000
    assert torch.allclose(frequency, logits.softmax(0), atol=0.01)


def test_low_temperature_samples_approach_one_hot():
    logits = torch.randn(1000, 16, generator=torch.Generator().manual_seed(0))
    hot = gumbel_softmax(logits, 1 / 16, generator=torch.Generator().manual_seed(1)).max(-1).values
    warm = gumbel_softmax(logits, 1.0, generator=torch.Generator().manual_seed(1)).max(-1).values
    assert hot.mean() > 0.95 > warm.mean()


def test_encode_is_the_argmax_of_the_logits_without_noise():
    model = make().eval()
    x = images(3, 16)
    assert torch.equal(model.encode(x), model.logits(x).argmax(-1))
    assert torch.equal(model.encode(x), model.encode(x))  # deterministic
    out = model(x, noise=False)
    assert torch.equal(out.ids, model.encode(x))
    assert torch.allclose(out.recon, model.decode(model.encode(x)))


def test_kl_to_uniform_and_usage_penalty():
    assert torch.allclose(kl_to_uniform(torch.zeros(5, 8)), torch.zeros(5), atol=1e-6)
    peaked = torch.full((1, 8), -1e4)
    peaked[0, 3] = 0
    assert kl_to_uniform(peaked).item() == pytest.approx(math.log(8), abs=1e-4)
    one_code = torch.zeros(6, 8)
    one_code[:, 0] = 1
    assert usage_penalty(one_code).item() == pytest.approx(math.log(8), abs=1e-4)
    assert usage_penalty(torch.eye(8)).item() == pytest.approx(0.0, abs=1e-6)  # every code once


def test_logit_laplace_is_minimized_at_the_target_and_normalized():
    target = torch.tensor([0.0, 0.3, 1.0])
    best_mu = torch.logit(map_pixels(target))
    log_b = torch.zeros(3)
    for delta in (-0.5, -0.1, 0.1, 0.5):
        assert (logit_laplace_nll(best_mu + delta, log_b, target) > logit_laplace_nll(best_mu, log_b, target)).all()
    # exp(-NLL) is a density over the mapped pixel y in (0, 1): it integrates to one
    y = torch.linspace(1e-5, 1 - 1e-5, 200_001, dtype=torch.float64)
    density = torch.exp(-logit_laplace_nll(torch.tensor(0.4, dtype=torch.float64), torch.tensor(-1.0, dtype=torch.float64),
                                           (y - 0.1) / 0.8))
    assert torch.trapezoid(density, y).item() == pytest.approx(1.0, abs=1e-3)
    assert torch.allclose(unmap_pixels(map_pixels(target)), target)


def test_object_weights_mark_objects_and_their_rim():
    x = torch.zeros(1, 3, 16, 16)
    x[:, 0, 6:9, 6:9] = 1.0  # a red square on black
    w = object_weights(x, 4.0)
    assert w[0, 0, 0, 0] == 1 and w[0, 0, 7, 7] == 5 and w[0, 0, 5, 5] == 5 and w[0, 0, 3, 3] == 1


def test_vq_straight_through_gradient_reaches_the_encoder():
    model = make(quantizer="vq").train()
    out = model(images(4, 16))
    (out.recon_loss + out.commit).backward()
    encoder_grad = sum(p.grad.abs().sum() for p in model.encoder.parameters() if p.grad is not None)
    assert encoder_grad > 0
    assert out.kl == 0 and out.commit > 0


def test_vq_codebook_follows_its_features_and_restarts_dead_codes():
    model = make(quantizer="vq", ema_decay=0.0, dead_threshold=0.5).train()
    before = model.quantizer.codebook.clone()
    model(images(4, 16), generator=torch.Generator().manual_seed(0))
    assert not torch.equal(before, model.quantizer.codebook)
    assert (model.quantizer.ema_count >= 0.5).all()  # every unused code was restarted on a feature


def test_metrics():
    x = images(2, 16)
    assert psnr(x, x) == pytest.approx(100.0)
    assert psnr(torch.zeros_like(x), torch.full_like(x, 0.1)) == pytest.approx(20.0)
    used, perplexity = code_usage(torch.tensor([[0, 1], [2, 3]]), 8)
    assert used == 4 and perplexity == pytest.approx(4.0)


def test_gumbel_dead_codes_restart_as_splits_of_busy_codes():
    model = make(ema_decay=0.0, dead_threshold=0.5).train()
    x = images(2, 16)
    with torch.no_grad():
        features = model.encoder(x)
        used = model.quantizer.logits(features).argmax(-1).unique()
        old_embed = model.quantizer.embed.weight.clone()
    model(x, generator=torch.Generator().manual_seed(0))
    quantizer = model.quantizer
    assert (quantizer.ema_count >= 0.5).all()  # every unused code was restarted
    dead = torch.tensor([k for k in range(64) if k not in used.tolist()])
    flat = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    for k in dead.tolist():
        assert (quantizer.codebook[k] == flat).all(1).any()  # its vector is one of the batch's features
        assert (quantizer.embed.weight[k] == old_embed[used]).all(1).any()  # it decodes like a busy code


def test_tiny_dvae_overfits_a_few_shapes_images():
    """A few hundred seeded steps of the full recipe (schedules, Gumbel noise, hard phase) reconstruct 8 images."""
    from dalle_lessons.dvae import dvae_loss
    from dalle_lessons.shapes import ShapesDataset
    from dalle_lessons.train import DVAETrainConfig, schedules_at

    x = ShapesDataset("train", 8, preset="tiny", cache=True).images_uint8().float() / 255
    model = make("tiny").train()
    recipe = DVAETrainConfig(steps=300, lr=3e-3, lr_warmup=20)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    noise = torch.Generator().manual_seed(0)
    for step in range(recipe.steps):
        s = schedules_at(step, recipe)
        for group in optimizer.param_groups:
            group["lr"] = s["lr"]
        out = model(x, temperature=s["temperature"], hard=s["hard"], generator=noise, noise=s["noise"])
        loss = dvae_loss(out, model.config, s["kl_weight"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    before = psnr(make("tiny").eval().decode(make("tiny").encode(x)), x)
    after = psnr(model.decode(model.encode(x)), x)
    assert before < 12 and after > 20, (before, after)  # 7 dB (untrained) -> 22 dB
