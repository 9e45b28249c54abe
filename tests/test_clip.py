"""The small CLIP: its loss, what counts as a true pair, hard negatives, the probe, training and resume."""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch
import torch.nn.functional as F

from dalle_lessons import checkpoints
from dalle_lessons.clip import LOGIT_SCALE_INIT, LOGIT_SCALE_MAX, ClipModel, contrastive_loss
from dalle_lessons.clip_data import (claim_holds, encode_claims, encode_scenes, hard_negative, match_matrix,
                                     match_tensor, probe_variants)
from dalle_lessons.clip_eval import binding_probe, retrieval, tokenizer_fingerprint
from dalle_lessons.config import get_preset
from dalle_lessons.shapes import (Scene, ShapeObject, ShapesDataset, caption_scene, heldout_pairs, parse_caption,
                                  sample_scene)
from dalle_lessons.train_clip import ClipTrainConfig, batch_captions, clip_tokenizer, cli_command, train_clip

TINY = get_preset("tiny").clip
TINY_TRAIN = ClipTrainConfig(steps=12, batch_size=16, lr=3e-3, lr_warmup=2, train_items=64, val_items=32,
                             probe_items=8, eval_every=6, checkpoint_every=6)


def scenes(n: int, split: str = "train") -> list[Scene]:
    return [sample_scene(split, i) for i in range(n)]


# --- the loss -------------------------------------------------------------------------------------------

def test_contrastive_loss_is_the_symmetric_cross_entropy():
    sims = torch.randn(5, 5, generator=torch.Generator().manual_seed(0)) * 3
    by_hand = (F.cross_entropy(sims, torch.arange(5)) + F.cross_entropy(sims.T, torch.arange(5))) / 2
    assert torch.allclose(contrastive_loss(sims), by_hand)
    assert torch.allclose(contrastive_loss(sims, torch.eye(5, dtype=torch.bool)), by_hand)  # identity matches


def test_soft_targets_do_not_punish_equivalent_captions():
    # captions 0 and 1 both describe images 0 and 1 ("a red circle" twice): scoring them equally high is
    # right, and soft targets leave it alone, while one-hot targets push the true pair (0, 1) apart
    matches = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    grads = {}
    for name, target in (("one-hot", None), ("soft", matches)):
        sims = torch.tensor([[5.0, 5.0, -5.0], [5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]], requires_grad=True)
        contrastive_loss(sims, target).backward()
        grads[name] = sims.grad[0, 1].item()
    assert grads["one-hot"] > 0.1  # gradient descent lowers the score of a true pair
    assert abs(grads["soft"]) < 1e-3


def test_extra_caption_rows_act_only_as_competitors():
    sims = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    matches = torch.tensor([[1, 0], [0, 1], [0, 0], [0, 0]], dtype=torch.bool)  # two hard negatives
    loss = contrastive_loss(sims, matches)
    text_to_image = F.cross_entropy(sims[:2], torch.arange(2))
    image_to_text = F.cross_entropy(sims.T, torch.arange(2))
    assert torch.allclose(loss, (text_to_image + image_to_text) / 2)
    with pytest.raises(ValueError, match="square"):
        contrastive_loss(sims)


def test_logit_scale_starts_at_clips_value_and_is_clamped():
    model = ClipModel(TINY)
    assert model.logit_scale.item() == pytest.approx(LOGIT_SCALE_INIT)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == pytest.approx(torch.tensor(LOGIT_SCALE_MAX).exp().item())


# --- the model ------------------------------------------------------------------------------------------

def test_embeddings_are_unit_vectors_and_scores_do_not_depend_on_the_batch():
    model = ClipModel(TINY, generator=torch.Generator().manual_seed(0)).eval()
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    text = torch.randint(1, 400, (6, TINY.text_seq_len), generator=torch.Generator().manual_seed(3))
    text[:, 9:] = 0  # padding on the right
    assert torch.allclose(model.encode_image(images).norm(dim=-1), torch.ones(6), atol=1e-5)
    together = model.score(images, text)
    alone = torch.stack([model.score(images[i:i + 1], text[i:i + 1])[0] for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_trailing_padding_never_changes_a_caption_embedding():
    model = ClipModel(TINY, generator=torch.Generator().manual_seed(0)).eval()
    text = torch.zeros(2, TINY.text_seq_len, dtype=torch.long)
    text[0, :5], text[1, :12] = torch.arange(10, 15), torch.arange(20, 32)
    both = model.encode_text(text)
    short = model.encode_text(text[:1])  # trimmed to 5 columns inside, against 12 in the batch
    assert torch.allclose(both[0], short[0], atol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_word_order_changes_the_embedding(pooling):
    model = ClipModel(dataclasses.replace(TINY, pooling=pooling), generator=torch.Generator().manual_seed(0)).eval()
    text = torch.tensor([[11, 12, 13] + [0] * (TINY.text_seq_len - 3), [13, 12, 11] + [0] * (TINY.text_seq_len - 3)])
    a, b = model.encode_text(text)
    assert not torch.allclose(a, b, atol=1e-4)


def test_bad_inputs_name_the_fix():
    model = ClipModel(TINY)
    with pytest.raises(ValueError, match="resize them to 16x16"):
        model.encode_image(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="text_seq_len is 16"):
        model.encode_text(torch.zeros(2, 24, dtype=torch.long))
    with pytest.raises(ValueError, match="another tokenizer"):
        model.encode_text(torch.full((1, 16), 9999))
    with pytest.raises(ValueError, match="pooling"):
        dataclasses.replace(TINY, pooling="max")


# --- what is true of what ---------------------------------------------------------------------------------

def test_a_caption_is_true_of_its_own_scene_and_the_batched_test_agrees():
    world = scenes(120)
    claims = [caption_scene(s, random.Random(i))[1] for i, s in enumerate(world)]
    claims += [hard_negative(s, f"t{i}")[1] for i, s in enumerate(world)]
    assert all(claim_holds(c, s) for c, s in zip(claims, world))
    reference = torch.tensor(match_matrix(claims, world))
    assert torch.equal(match_tensor(encode_claims(claims), encode_scenes(world)), reference)
    assert reference[len(world):].diagonal(0).sum() == 0  # no hard negative is true of its own scene
    assert reference.sum() > len(world) + 20  # and some captions are true of other scenes too


def test_claims_leave_unsaid_attributes_free():
    red = ShapeObject("circle", "red", "small", 0, 0)
    scene = Scene((red,), "black")
    assert claim_holds(parse_caption("a red circle"), scene)
    assert claim_holds(parse_caption("a tiny red circle at the top left"), scene)
    assert not claim_holds(parse_caption("a big red circle"), scene)
    assert not claim_holds(parse_caption("a red circle on a white background"), scene)
    two = Scene((red, ShapeObject("square", "blue", "large", 2, 2)), "white")
    assert not claim_holds(parse_caption("a red circle"), two)  # exactly the stated objects
    assert claim_holds(parse_caption("a red circle above a blue square"), two)
    assert not claim_holds(parse_caption("a red circle below a blue square"), two)
    assert not claim_holds(parse_caption("a blue circle above a red square"), two)


def test_hard_negatives_are_false_deterministic_and_never_name_a_heldout_pair():
    held = heldout_pairs()
    for i, scene in enumerate(scenes(300)):
        text, claim = hard_negative(scene, f"k{i}")
        assert not claim_holds(claim, scene)
        assert not any((o.color, o.shape) in held for o in claim.objects)
        assert hard_negative(scene, f"k{i}") == (text, claim)


def test_batch_captions_follow_the_key():
    data = ShapesDataset("train", 16, preset="tiny", render_images=False)
    first = batch_captions(data, [0, 3, 5], "clip/0/7", True)
    assert first == batch_captions(data, [0, 3, 5], "clip/0/7", True)
    assert len(first[0]) == 6 and first[0][:3] != batch_captions(data, [0, 3, 5], "clip/0/8", True)[0][:3]


def test_probe_variants_differ_in_exactly_one_thing_and_are_all_false():
    for scene in scenes(40, "test") + scenes(10, "heldout"):
        true, variants = probe_variants(scene)
        assert claim_holds(parse_caption(true), scene)
        kinds = set(variants)
        assert kinds == ({"color", "shape", "size", "position"} if len(scene.objects) == 1
                         else {"color", "shape", "size", "relation", "swap"})
        for kind, texts in variants.items():
            for text in texts:
                assert not claim_holds(parse_caption(text), scene), (kind, text)
                assert text != true
                if kind in ("color", "shape", "size", "swap"):  # the same words, one or two exchanged
                    assert len(text.split()) == len(true.split())
                    assert 1 <= sum(a != b for a, b in zip(true.split(), text.split())) <= 2


# --- evaluation and training --------------------------------------------------------------------------------

def test_retrieval_and_probe_of_an_untrained_model_are_near_chance():
    model = ClipModel(TINY, generator=torch.Generator().manual_seed(0)).eval()
    data = ShapesDataset("test", 40, preset="tiny")
    claims = [data.item_claim(i) for i in range(40)]
    tokenizer = clip_tokenizer("tiny")
    found = retrieval(model, tokenizer, data.images_uint8(), [c for c, _ in claims], [c for _, c in claims],
                      data.scenes)
    assert 0 <= found["image_to_text_r1_pair"] <= found["image_to_text_r5_pair"] <= 100
    assert found["image_to_text_r1_pair"] <= found["image_to_text_r1_true"]
    probe = binding_probe(model, tokenizer, data.images_uint8(), data.scenes)
    assert set(probe) == {"color", "shape", "size", "position", "relation", "swap"}
    assert all(0 <= r["accuracy"] <= 100 and r["pairs"] > 0 for r in probe.values())


def test_the_model_learns_a_fixed_batch():
    data = ShapesDataset("train", 8, preset="tiny")
    captions = [data.item_caption(i) for i in range(8)]
    text = clip_tokenizer("tiny").encode_batch(captions)
    images = data.images_uint8().float() / 255
    model = ClipModel(TINY, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = contrastive_loss(model(images, text))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 1.5 and losses[-1] < 0.3 * losses[0]


def test_training_runs_and_resume_is_exact(tmp_path):
    common = dict(preset="tiny", seed=0, train_config=TINY_TRAIN, progress=False, log=lambda _: None, device="cpu")
    whole = train_clip(out=tmp_path / "whole", **common)
    assert whole["finished"] and whole["history"][-1]["step"] == TINY_TRAIN.steps
    half = train_clip(out=tmp_path / "split", stop_at=6, **common)
    assert not half["finished"] and half["step"] == 6
    train_clip(out=tmp_path / "split", resume=True, **common)
    a = checkpoints.load(tmp_path / "whole" / "clip-tiny.safetensors")
    b = checkpoints.load(tmp_path / "split" / "clip-tiny.safetensors")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    meta = checkpoints.read_metadata(tmp_path / "whole" / "clip-tiny.safetensors")
    assert meta["extra"]["tokenizer"] == tokenizer_fingerprint(clip_tokenizer("tiny"))
    assert meta["extra"]["command"].startswith("dalle_lessons.train_clip.train_clip(preset='tiny', seed=0")
    assert all(0 <= row["val_probe"] <= 100 for row in whole["history"])


def test_resume_refuses_other_settings(tmp_path):
    common = dict(preset="tiny", seed=0, progress=False, log=lambda _: None, device="cpu", out=tmp_path)
    train_clip(train_config=TINY_TRAIN, stop_at=6, **common)
    with pytest.raises(ValueError, match="hard_negatives"):
        train_clip(train_config=dataclasses.replace(TINY_TRAIN, hard_negatives=False), resume=True, **common)


def test_train_config_and_command():
    assert cli_command("cpu", 0, ClipTrainConfig()) == "python -m dalle_lessons train clip --preset cpu --seed 0"
    assert cli_command("cpu", 1, ClipTrainConfig(hard_negatives=False, false_negatives="ignore")).endswith(
        "--seed 1 --no-hard-negatives --false-negatives ignore")
    with pytest.raises(ValueError, match="false_negatives"):
        ClipTrainConfig(false_negatives="drop")
    with pytest.raises(ValueError, match="steps"):
        ClipTrainConfig(steps=0)
