"""The arithmetic of scale (scale.py) checked against the real models and a FLOP counter."""
import json
from dataclasses import replace

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dalle_lessons import scale
from dalle_lessons.__main__ import main
from dalle_lessons.clip import ClipModel
from dalle_lessons.config import get_preset
from dalle_lessons.dvae import DiscreteVAE
from dalle_lessons.transformer import DalleTransformer

pytestmark = pytest.mark.usefixtures("one_thread")

COMPONENTS = {  # parameter-name prefix -> the component scale.transformer_parameters files it under
    "bos": "text embeddings", "text_emb": "text embeddings", "pad_emb": "text embeddings", "text_pos": "text embeddings",
    "image_emb": "image embeddings", "image_pos": "image embeddings", "text_head": "text head",
    "image_head": "image head", "ln_f": "LayerNorms",
}


def _component(name: str) -> str:
    if name.startswith("blocks."):
        part = name.split(".")[2]
        return {"attn": "attention", "mlp": "MLP"}.get(part, "LayerNorms")
    return COMPONENTS[name.split(".")[0]]


@pytest.mark.parametrize("name", ["tiny", "cpu"])
def test_parameters_by_component_equal_the_real_models(name):
    preset = get_preset(name)
    model = DalleTransformer(preset.transformer)
    counted: dict[str, int] = {}
    for pname, p in model.named_parameters():
        counted[_component(pname)] = counted.get(_component(pname), 0) + p.numel()
    closed = {k.split(" (")[0]: v for k, v in scale.transformer_parameters(preset.transformer).items()}
    assert closed == counted
    assert sum(closed.values()) == sum(p.numel() for p in model.parameters())
    others = scale.other_stage_parameters(preset)
    assert others["dVAE (this package's)"] == sum(p.numel() for p in DiscreteVAE(preset.dvae).parameters())
    assert others["CLIP reranker"] == sum(p.numel() for p in ClipModel(preset.clip).parameters())


def test_paper_parameters_equal_the_meta_device_model():
    config = get_preset("paper").transformer
    with torch.device("meta"):
        model = DalleTransformer(config)
    total = sum(scale.transformer_parameters(config).values())
    assert total == sum(p.numel() for p in model.parameters()) == 12_292_816_384
    assert scale.other_stage_parameters(get_preset("paper")) == {  # stage 1: OpenAI's published dVAE
        "dVAE encoder (OpenAI's)": 53_786_240, "dVAE decoder (OpenAI's)": 43_829_766}
    # the paper: "about 24 GB of memory when stored in 16-bit precision"
    assert 24e9 < scale.training_memory(config, "fp16").weights < 25e9


def _tiny_batch(config, batch=2):
    g = torch.Generator().manual_seed(0)
    text = torch.randint(1, config.text_vocab_size, (batch, config.text_seq_len), generator=g)
    image = torch.randint(0, config.image_vocab_size, (batch, config.image_seq_len), generator=g)
    return text, image


def test_forward_and_training_flops_match_a_flop_counter():
    """FlopCounterMode counts every matmul (the MATH attention backend writes attention as two batched
    matmuls over all L^2 pairs, as a dense masked kernel computes it): the closed form is exact."""
    config = get_preset("tiny").transformer
    model = DalleTransformer(config)
    text, image = _tiny_batch(config)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as forward:
        out = model(text, image)
    flops = scale.forward_flops(config)
    assert forward.get_total_flops() == 2 * flops.total_dense
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as step:
        model(text, image).loss.backward()
    assert step.get_total_flops() == 2 * 3 * flops.total_dense  # backward = 2 x forward
    assert out.loss.isfinite()


def test_sampling_flops_match_a_flop_counter():
    config = get_preset("tiny").transformer
    model = DalleTransformer(config).eval().requires_grad_(False)  # FlopCounterMode's module hooks want no grads
    text, _ = _tiny_batch(config, batch=1)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits, cache = model.prefill(text)
        for _ in range(config.image_seq_len - 1):
            logits = model.step(logits.argmax(-1), cache)
    assert counter.get_total_flops() == scale.sampling_flops_per_image(config, kv_cache=True)
    assert scale.sampling_flops_per_image(config, kv_cache=False) > 5 * scale.sampling_flops_per_image(config)


def test_sparse_masks_allow_fewer_pairs_than_causal_attention():
    config = replace(get_preset("cpu").transformer, attention_pattern="paper")
    L = config.text_seq_len + config.image_seq_len
    pairs = scale.attention_pairs(config)
    full = scale.attention_pairs(replace(config, attention_pattern="full"))
    assert full == [L * (L + 1) // 2] * config.n_layers
    assert all(p < L * (L + 1) // 2 for p in pairs)
    text_pairs = (config.text_seq_len + 1) * (config.text_seq_len + 2) // 2  # text (with the start) sees all text
    assert all(p > text_pairs for p in pairs)
    paper = scale.forward_flops(get_preset("paper").transformer)
    assert paper.attention_allowed < paper.attention_dense / 4  # the paper's masks cut attention's cost


def test_memory_scales_as_expected():
    config = get_preset("cpu").transformer
    n = sum(scale.transformer_parameters(config).values())
    fp32, fp16 = scale.training_memory(config, "fp32"), scale.training_memory(config, "fp16")
    assert fp16.weights == fp32.weights / 2 == 2 * n and fp16.gradients == fp32.gradients / 2
    assert fp32.model_state == fp16.model_state == 16 * n  # mixed precision saves no optimizer-state memory
    assert fp16.master_weights == 4 * n and fp32.master_weights == 0 and fp16.adam == fp32.adam == 8 * n
    assert fp16.activations == pytest.approx(fp32.activations / 2, rel=0.2)  # fp32 logits stay fp32
    sharded = scale.training_memory(config, "fp16", shards=8)
    assert sharded.model_state == fp16.model_state / 8 and sharded.activations == fp16.activations
    ckpt = scale.training_memory(config, "fp16", checkpointing=True)
    assert ckpt.activations < fp16.activations and ckpt.model_state == fp16.model_state
    two = scale.training_memory(config, "fp16", micro_batch=2)
    assert two.activations == 2 * fp16.activations
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        scale.training_memory(config, "int4")


def test_paper_budget_agrees_with_six_n_d_and_the_hardware_arithmetic():
    config = get_preset("paper").transformer
    total = scale.paper_budget_flops(config)
    n = sum(scale.transformer_parameters(config).values())
    six_n_d = 6 * n * 1280 * 1024 * 430_000
    assert total == pytest.approx(six_n_d, rel=0.01)
    v100 = scale.HARDWARE[0]
    days = scale.train_seconds(total, v100, 1024, 0.3) / 86400
    assert days == pytest.approx(total / (1024 * 125e12 * 0.3) / 86400)
    assert 10 < days < 15  # about two weeks on the paper's own GPUs at 30 %
    with pytest.raises(ValueError, match="utilisation"):
        scale.train_seconds(total, v100, 1024, 1.5)


def test_cli_prints_every_preset_and_json(capsys):
    assert main(["scale", "--preset", "paper"]) == 0
    out = capsys.readouterr().out
    assert "12,292,816,384" in out and "V100" in out and "H100" in out and "[unverified]" in out
    assert main(["scale", "--preset", "all", "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["preset"] for r in reports] == ["tiny", "cpu", "colab", "paper"]
    assert reports[3]["paper_budget"]["updates"] == 430_000 and "paper_budget" not in reports[1]


def test_cli_refuses_an_unknown_preset_in_one_line(capsys):
    assert main(["scale", "--preset", "huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown preset 'huge': choose one of 'tiny', 'cpu', 'colab', 'paper' or 'all'"
