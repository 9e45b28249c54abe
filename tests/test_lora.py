"""LoRA from scratch: starts as the base model, merges and unmerges exactly, matches the closed form and peft,
saves alone and refuses a base it was not trained on."""
import json

import pytest
import torch
import torch.nn as nn

from dalle_lessons import lora
from dalle_lessons.config import get_preset
from dalle_lessons.transformer import DalleTransformer

TINY = get_preset("tiny").transformer


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def tiny_transformer(seed: int = 0) -> DalleTransformer:
    return DalleTransformer(TINY, generator=torch.Generator().manual_seed(seed)).eval()


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, TINY.text_vocab_size, (3, TINY.text_seq_len), generator=g)
    image = torch.randint(0, TINY.image_vocab_size, (3, TINY.image_seq_len), generator=g)
    return text, image


def randomize_b(model, seed: int = 1) -> None:
    """A trained adapter's B is not zero: give every B random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora.lora_modules(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.05)


def test_zero_initialised_b_gives_exactly_the_base_models_output():
    model = tiny_transformer()
    text, image = batch()
    before = model(text, image)
    layers = lora.add_lora(model, rank=4, alpha=8, generator=torch.Generator().manual_seed(0))
    assert sorted({name.split(".", 2)[2] for name in layers}) == sorted(lora.TARGETS)
    assert len(layers) == 4 * TINY.n_layers
    after = model(text, image)
    assert torch.equal(before.image_logits, after.image_logits)  # bit for bit: B = 0 adds exact zeros
    assert torch.equal(before.loss, after.loss)
    assert all(torch.count_nonzero(layer.lora_A) > 0 for layer in layers.values())


def test_only_the_adapters_train_and_they_are_few():
    model = tiny_transformer()
    _, total = lora.count_parameters(model)
    layers = lora.add_lora(model, rank=2)
    lora.mark_only_lora_trainable(model)
    trainable, total_with = lora.count_parameters(model)
    expected = sum(2 * (m.in_features + m.out_features) for m in layers.values())
    assert trainable == expected and total_with == total + expected
    assert trainable < 0.1 * total
    text, image = batch()
    model.train()
    model(text, image).loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)
    assert all(layer.lora_A.grad is not None for layer in layers.values())


def test_the_update_is_the_closed_form_w_plus_scaled_b_a():
    torch.manual_seed(0)
    linear = nn.Linear(12, 7)
    w, b = linear.weight.detach().clone(), linear.bias.detach().clone()
    layer = lora.LoRALinear(linear, rank=3, alpha=6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(5, 12)
    closed = x @ (w + (6 / 3) * layer.lora_B @ layer.lora_A).T + b
    torch.testing.assert_close(layer(x), closed, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.delta_weight(), 2.0 * layer.lora_B @ layer.lora_A)


def test_merge_equals_the_unmerged_forward_and_unmerge_restores_the_weights():
    model = tiny_transformer()
    base_weights = {k: v.clone() for k, v in model.state_dict().items()}
    text, image = batch()
    lora.add_lora(model, rank=4, alpha=4)
    randomize_b(model)
    unmerged = model(text, image).image_logits
    assert not torch.allclose(unmerged, tiny_transformer()(text, image).image_logits)  # the adapter does something
    lora.merge_lora(model)
    merged = model(text, image).image_logits
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)  # float32 rounding only
    lora.unmerge_lora(model)
    for name, value in model.state_dict().items():
        if "lora_" not in name:  # W + D - D: back to W up to one float32 rounding of D's size
            torch.testing.assert_close(value, base_weights[name], rtol=0, atol=1e-6)
    torch.testing.assert_close(model(text, image).image_logits, unmerged, rtol=1e-5, atol=1e-5)


def test_remove_lora_leaves_plain_linear_layers_with_the_merged_weights():
    model = tiny_transformer()
    text, image = batch()
    lora.add_lora(model, rank=4)
    randomize_b(model)
    adapted = model(text, image).image_logits
    lora.remove_lora(model, merge=True)
    assert not lora.lora_modules(model) and type(model.blocks[0].attn.qkv) is nn.Linear
    assert sorted(model.state_dict()) == sorted(tiny_transformer().state_dict())
    torch.testing.assert_close(model(text, image).image_logits, adapted, rtol=1e-5, atol=1e-5)


def test_an_equivalent_peft_lora_gives_the_same_output():
    peft = pytest.importorskip("peft", reason="peft is not installed (pip install peft); the closed-form test "
                                              "checks the same equation")

    class One(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 10)

        def forward(self, x):
            return self.lin(x)

    torch.manual_seed(0)
    ours_base = One()
    theirs = One()
    theirs.load_state_dict(ours_base.state_dict())
    ours = lora.LoRALinear(ours_base.lin, rank=4, alpha=8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours.lora_B.normal_()
    theirs = peft.get_peft_model(theirs, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["lin"]))
    layer = theirs.base_model.model.lin
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(ours.lora_A)
        layer.lora_B["default"].weight.copy_(ours.lora_B)
    assert layer.scaling["default"] == ours.scale == 2.0
    x = torch.randn(6, 16)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)


def test_adapter_round_trip_saves_only_the_adapter(tmp_path):
    model = tiny_transformer()
    lora.add_lora(model, rank=4, alpha=8, targets=("attn.qkv", "mlp.fc"))
    randomize_b(model)
    text, image = batch()
    expected = model(text, image).image_logits
    path = lora.save_adapter(model, tmp_path / "adapter.safetensors", extra={"base_model": "tiny seed 0"})
    meta = json.loads((tmp_path / "adapter.json").read_text())
    assert meta["format"] == lora.FORMAT and meta["rank"] == 4 and meta["alpha"] == 8
    assert meta["targets"] == ["attn.qkv", "mlp.fc"] and len(meta["layers"]) == 2 * TINY.n_layers
    assert meta["base"]["fingerprint"] == lora.model_fingerprint(tiny_transformer())
    assert meta["base"]["config"]["d_model"] == TINY.d_model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter.json", "adapter.safetensors"]  # no temp files
    assert path.stat().st_size < 0.2 * sum(v.numel() * 4 for v in tiny_transformer().state_dict().values())

    merged = lora.load_adapter(tiny_transformer(), path, merge=True)
    assert not lora.lora_modules(merged)
    torch.testing.assert_close(merged(text, image).image_logits, expected, rtol=1e-5, atol=1e-5)
    modules = lora.load_adapter(tiny_transformer(), tmp_path, merge=False)  # a folder with one adapter works too
    assert len(lora.lora_modules(modules)) == 2 * TINY.n_layers
    assert torch.equal(modules(text, image).image_logits, expected)


def test_an_adapter_for_another_base_is_a_one_line_error_naming_both(tmp_path):
    model = tiny_transformer(seed=0)
    lora.add_lora(model, rank=2)
    path = lora.save_adapter(model, tmp_path / "adapter.safetensors")
    other = tiny_transformer(seed=1)
    with pytest.raises(ValueError) as error:
        lora.load_adapter(other, path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert lora.model_fingerprint(tiny_transformer(0))[:12] in message
    assert lora.model_fingerprint(other)[:12] in message
    assert not lora.lora_modules(other)  # nothing was attached
    import dataclasses
    wider = DalleTransformer(dataclasses.replace(TINY, d_model=32))
    with pytest.raises(ValueError, match=r"another config.*d_model: checkpoint 64, model 32"):
        lora.load_adapter(wider, path)


@pytest.mark.parametrize("rank", [0, -1, 2.5, True, "4"])
def test_a_rank_below_one_is_a_clear_error(rank):
    with pytest.raises(ValueError, match="rank .* must be an int of at least 1"):
        lora.add_lora(tiny_transformer(), rank=rank)
    with pytest.raises(ValueError, match="rank"):
        lora.LoRALinear(nn.Linear(4, 4), rank=rank)


def test_other_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="alpha"):
        lora.add_lora(tiny_transformer(), rank=2, alpha=0)
    with pytest.raises(ValueError, match="unknown LoRA target.*'mlp.gate'.*choose from"):
        lora.add_lora(tiny_transformer(), rank=2, targets=("mlp.gate",))
    model = tiny_transformer()
    with pytest.raises(ValueError, match="no LoRA adapters to save"):
        lora.save_adapter(model, tmp_path / "a.safetensors")
    lora.add_lora(model, rank=2)
    with pytest.raises(ValueError, match="already has LoRA"):
        lora.add_lora(model, rank=2)
    with pytest.raises(FileNotFoundError, match="no adapter at"):
        lora.load_adapter(tiny_transformer(), tmp_path / "missing.safetensors")
    path = lora.save_adapter(model, tmp_path / "a.safetensors")
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    with pytest.raises(ValueError, match="truncated"):
        lora.load_adapter(tiny_transformer(), path)
