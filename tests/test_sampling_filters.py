import pytest
import torch

from dalle_lessons.sampling import (apply_temperature, filter_logits, sample_from_logits, top_k_filter,
                                    top_p_filter)


def test_top_k_keeps_exactly_k_even_with_ties():
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    kept = torch.isfinite(top_k_filter(logits, 2))
    assert kept.sum(-1).tolist() == [2, 2]
    assert kept[1].tolist() == [True, True, False, False, False]
    assert torch.equal(top_k_filter(logits, None), logits) and torch.equal(top_k_filter(logits, 99), logits)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()[None]
    for p, expected in [(0.4, 1), (0.5, 1), (0.6, 2), (0.8, 2), (0.81, 3), (0.95, 3), (0.96, 4), (1.0, 4)]:
        kept = torch.isfinite(top_p_filter(logits, p))[0]
        assert kept.sum().item() == expected, p
        assert probs[kept].sum() >= p - 1e-6  # reaches p ...
        assert kept[: expected].all()  # ... with the most likely tokens


def test_top_p_works_on_unsorted_rows():
    logits = torch.tensor([[0.0, 2.0, 1.0]])
    assert torch.isfinite(top_p_filter(logits, 0.5)).tolist() == [[False, True, False]]


def test_temperature_scales_and_rejects_zero():
    logits = torch.tensor([1.0, 2.0])
    assert torch.allclose(apply_temperature(logits, 0.5), logits * 2)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        apply_temperature(logits, 0.0)


@pytest.mark.parametrize("kwargs, message", [(dict(top_k=0), "top_k must be at least 1"),
                                             (dict(top_p=0.0), "top_p must be in")])
def test_bad_filter_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        filter_logits(torch.zeros(1, 4), **kwargs)


def test_sampling_is_seeded_and_respects_filters():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    a = sample_from_logits(top_k_filter(logits, 3), torch.Generator().manual_seed(1))
    b = sample_from_logits(top_k_filter(logits, 3), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (64,)
    allowed = logits.topk(3, dim=-1).indices
    assert (allowed == a[:, None]).any(-1).all()
