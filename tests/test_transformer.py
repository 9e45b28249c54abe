"""The DALL·E transformer: cached generation = full pass, masks in place, logits, loss, dropout, sizes."""
import io
import math
from dataclasses import replace

import pytest
import torch

from dalle_lessons.attention import dalle_mask
from dalle_lessons.config import TransformerConfig, get_preset
from dalle_lessons.transformer import DalleTransformer, drop_captions, layer_kinds

TINY = get_preset("tiny").transformer  # text 16, 4 x 4 image, d 64, 2 layers, 4 heads


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def make(pattern: str = "full", seed: int = 0, **changes) -> DalleTransformer:
    """A tiny model; caption dropout off unless asked for, so train-mode passes are repeatable."""
    changes.setdefault("caption_dropout", 0.0)
    config = replace(TINY, attention_pattern=pattern, conv_kernel=3, **changes)
    return DalleTransformer(config, generator=torch.Generator().manual_seed(seed)).eval()


def batch(config: TransformerConfig = TINY, b: int = 3, seed: int = 0, n_pads: int = 5):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, config.text_vocab_size, (b, config.text_seq_len), generator=g)
    text[:, config.text_seq_len - n_pads:] = config.pad_id
    image = torch.randint(0, config.image_vocab_size, (b, config.image_seq_len), generator=g)
    return text, image


# --- layer pattern --------------------------------------------------------------------------------

def test_paper_layer_pattern():
    assert layer_kinds(8) == ["row", "column", "row", "row", "row", "column", "row", "conv"]
    kinds = layer_kinds(64)
    assert kinds[:4] == ["row", "column", "row", "row"] and kinds[-1] == "conv"
    assert [i + 1 for i, k in enumerate(kinds) if k == "column"] == list(range(2, 64, 4))
    assert layer_kinds(3, "full") == ["full"] * 3
    with pytest.raises(ValueError, match="unknown attention_pattern 'sparse'"):
        layer_kinds(4, "sparse")


# --- the KV cache ---------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["full", "paper"])
def test_cached_generation_matches_the_full_pass(pattern):
    model = make(pattern, n_layers=4)  # paper: row, column, row, conv
    text, image = batch()
    full = model(text, image).image_logits
    logits, cache = model.prefill(text)
    stepped = [logits]
    for m in range(TINY.image_seq_len - 1):
        stepped.append(model.step(image[:, m], cache))
    assert torch.allclose(torch.stack(stepped, dim=1), full, atol=1e-5, rtol=0)
    assert cache.length == model.max_len


@pytest.mark.parametrize("pattern", ["full", "paper"])
def test_prefill_with_the_top_of_an_image(pattern):
    """Image completion: the first n image tokens are given; the cache continues from there."""
    model = make(pattern, n_layers=4)
    text, image = batch()
    full = model(text, image).image_logits
    logits, cache = model.prefill(text, image[:, :6])
    assert torch.allclose(logits, full[:, 6], atol=1e-5, rtol=0)
    assert torch.allclose(model.step(image[:, 6], cache), full[:, 7], atol=1e-5, rtol=0)


def test_generation_misuse_is_explained():
    model = make()
    text, image = batch()
    logits, cache = model.prefill(text, image[:, :-1])
    with pytest.raises(ValueError, match="already predicted"):
        model.step(image[:, -1], cache)
    with pytest.raises(ValueError, match="prefill"):
        model.step(image[:, 0], model.new_cache(3))


# --- the masks inside the model -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["row", "column", "conv"])
def test_one_layer_sees_exactly_its_mask(kind):
    """Change one input token: in a one-layer model only the outputs whose mask row admits it move."""
    model = make("paper", n_layers=3)  # holds the row, column and conv masks
    model.blocks = model.blocks[:1]
    model.blocks[0].kind = kind
    T, N, V = TINY.text_seq_len, TINY.image_seq_len, TINY.image_vocab_size
    mask = dalle_mask(T + 1, TINY.image_grid, kind, kernel=3)  # [bos + text | image] content positions
    text, image = batch(b=1)
    base = model(text, image).image_logits[0]
    for cell in range(N - 1):  # the last cell is never read
        changed = image.clone()
        changed[0, cell] = (changed[0, cell] + 1) % V
        moved = (model(text, changed).image_logits[0] - base).abs().amax(-1) > 1e-6
        # image_logits[m] comes from stream position T + m; cell j sits at stream position T + 1 + j
        expected = mask[T + torch.arange(N), T + 1 + cell]
        assert torch.equal(moved, expected), (kind, cell)


def test_text_predictions_are_causal_and_blind_to_the_image():
    model = make("paper", n_layers=4)
    text, image = batch(n_pads=0)
    base = model(text, image).text_logits
    other_image = model(text, (image + 1) % TINY.image_vocab_size).text_logits
    assert torch.equal(base, other_image)
    changed = text.clone()
    changed[:, 5] = (changed[:, 5] % (TINY.text_vocab_size - 1)) + 1
    moved = (model(changed, image).text_logits - base).abs().amax((0, 2)) > 1e-6
    # text_logits[t] predicts caption token t from bos and tokens < t: token 5 reaches positions 6..
    assert moved.tolist() == [False] * 6 + [True] * (TINY.text_seq_len - 6)


def test_each_text_position_has_its_own_pad_embedding():
    model = make()
    text, image = batch(n_pads=6)  # caption tokens 10..15 are pads
    base = model(text, image).text_logits
    nudge = torch.randn(TINY.d_model, generator=torch.Generator().manual_seed(0))  # not constant: LN removes those
    with torch.no_grad():
        model.pad_emb.weight[12] += nudge  # the pad embedding of caption position 12 only
    moved = (model(text, image).text_logits - base).abs().amax((0, 2)) > 1e-6
    assert moved.tolist() == [False] * 13 + [True] * 3  # seen from stream position 13 on
    no_pads = batch(n_pads=0)
    with torch.no_grad():
        before = model(*no_pads).loss
        model.pad_emb.weight[12] += nudge
        assert torch.equal(model(*no_pads).loss, before)


# --- logits and loss ------------------------------------------------------------------------------

def test_logits_are_restricted_to_their_vocabulary():
    model = make(text_vocab_size=100, image_vocab_size=40)
    text, image = batch(model.config)
    out = model(text, image)
    assert out.text_logits.shape == (3, TINY.text_seq_len, 100)
    assert out.image_logits.shape == (3, TINY.image_seq_len, 40)
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(out.text_loss, ce(out.text_logits.transpose(1, 2), text))
    assert torch.allclose(out.image_loss, ce(out.image_logits.transpose(1, 2), image))
    assert torch.allclose(out.loss, out.text_loss / 8 + 7 * out.image_loss / 8)


def test_loss_weights():
    text, image = batch()
    text_only = make(image_loss_weight=0.0).train()
    out = text_only(text, image)
    assert torch.equal(out.loss, out.text_loss / 8)
    out.loss.backward()
    assert text_only.image_head.weight.grad.abs().max() == 0, "a zero image weight ignores the image logits"
    assert torch.equal(text_only(text, (image + 1) % TINY.image_vocab_size).loss, out.loss)
    image_only = make(text_loss_weight=0.0, image_loss_weight=1.0)
    out = image_only(text, image)
    assert torch.equal(out.loss, out.image_loss)


def test_bf16_autocast_trains_close_to_fp32():
    model = make("paper", n_layers=4).train()
    text, image = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(text, image)
    low.loss.backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None
    assert abs(low.loss.item() - model(text, image).loss.item()) < 0.02


def test_partial_images_and_bad_inputs():
    model = make()
    text, image = batch()
    assert model(text, image[:, :5]).image_logits.shape[1] == 5
    with pytest.raises(ValueError, match="text_seq_len=16"):
        model(text[:, :10], image)
    with pytest.raises(ValueError, match="image_ids must be"):
        model(text, torch.cat([image, image], dim=1))
    with pytest.raises(ValueError, match="text ids must lie in"):
        model(text + TINY.text_vocab_size, image)
    with pytest.raises(ValueError, match="image ids must lie in"):
        model(text, image - 1 - image.max())


# --- caption dropout ------------------------------------------------------------------------------

def test_caption_dropout_rate_and_determinism():
    text = torch.randint(1, 100, (4000, 8), generator=torch.Generator().manual_seed(0))
    dropped = drop_captions(text, 0.3, pad_id=0, generator=torch.Generator().manual_seed(1))
    empty = (dropped == 0).all(1)
    assert abs(empty.float().mean().item() - 0.3) < 0.03
    assert torch.equal(dropped[~empty], text[~empty]), "kept captions are untouched"
    again = drop_captions(text, 0.3, pad_id=0, generator=torch.Generator().manual_seed(1))
    other = drop_captions(text, 0.3, pad_id=0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(dropped, again) and not torch.equal(dropped, other)
    assert drop_captions(text, 0.0) is text
    assert (drop_captions(text, 1.0) == 0).all()
    with pytest.raises(ValueError, match="probability"):
        drop_captions(text, 1.5)


def test_caption_dropout_in_the_model_only_when_training():
    model = make(caption_dropout=1.0)
    text, image = batch()
    empty = model.empty_text(3)
    assert torch.equal(model(text, image).loss, make()(text, image).loss), "eval: captions kept"
    model.train()
    assert torch.allclose(model(text, image).loss, model.eval()(empty, image).loss)


# --- training, checkpoints, sizes -----------------------------------------------------------------

def test_tiny_model_memorises_a_few_sequences():
    torch.manual_seed(0)
    model = make(seed=1).train()
    text, image = batch(b=4, seed=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(300):
        out = model(text, image)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
    model.eval()
    out = model(text, image)
    # bos alone cannot tell which of the 4 captions follows: its first token costs ln 4, the rest ~0
    floor = math.log(4) / TINY.text_seq_len
    assert out.image_loss < 0.05 and out.text_loss < floor + 0.02, (out.text_loss.item(), out.image_loss.item())
    assert torch.equal(out.image_logits.argmax(-1), image)
    # and sampling greedily through the cache reproduces the memorised images
    logits, cache = model.prefill(text)
    greedy = [logits.argmax(-1)]
    for _ in range(TINY.image_seq_len - 1):
        greedy.append(model.step(greedy[-1], cache).argmax(-1))
    assert torch.equal(torch.stack(greedy, dim=1), image)


def test_state_dict_round_trip():
    from safetensors.torch import load, save

    model = make("paper", n_layers=4, seed=0)
    state = model.state_dict()
    assert not any(key.startswith("mask_") for key in state), "masks are rebuilt, not saved"
    restored = make("paper", n_layers=4, seed=99)
    restored.load_state_dict(load(save(state)))  # safetensors: no shared or non-contiguous tensors
    text, image = batch()
    assert torch.equal(restored(text, image).loss, model(text, image).loss)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(restored(text, image).image_logits, model(text, image).image_logits)


def test_package_checkpoint_round_trip(tmp_path):
    from dalle_lessons import checkpoints

    model = make("paper", n_layers=4)
    path = checkpoints.save(model, model.config, tmp_path / "transformer.safetensors")
    restored = checkpoints.load(path)  # rebuilt from the JSON config alone
    assert isinstance(restored, DalleTransformer) and restored.config == model.config
    text, image = batch()
    assert torch.equal(restored(text, image).loss, model(text, image).loss)


def test_same_generator_same_weights_and_gpt2_init():
    a, b = make(seed=5), make(seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.text_emb.weight, make(seed=6).text_emb.weight)
    big = DalleTransformer(get_preset("cpu").transformer, generator=torch.Generator().manual_seed(0))
    assert abs(big.blocks[0].attn.qkv.weight.std().item() - 0.02) < 0.001
    scaled = 0.02 / (2 * big.config.n_layers) ** 0.5
    assert abs(big.blocks[0].mlp.proj.weight.std().item() - scaled) < 0.0005


def test_cpu_preset_size():
    n = DalleTransformer(get_preset("cpu").transformer).num_parameters()
    assert 4e6 <= n <= 8e6, n


def test_paper_preset_counts_twelve_billion_parameters_on_meta():
    config = get_preset("paper").transformer
    with torch.device("meta"):
        model = DalleTransformer(replace(config, attention_pattern="paper"))
    assert next(model.parameters()).is_meta
    d, L = config.d_model, config.n_layers
    per_block = 12 * d * d + 13 * d  # qkv + proj + 2 MLP layers, their biases, two LayerNorms
    embeddings = (config.text_vocab_size + config.text_seq_len + config.text_seq_len + 1
                  + config.image_vocab_size + 2 * config.image_grid + 1) * d
    heads = (config.text_vocab_size + config.image_vocab_size) * d
    assert model.num_parameters() == L * per_block + embeddings + heads + 2 * d
    assert 12.0e9 < model.num_parameters() < 12.5e9  # the paper: "12 billion"
