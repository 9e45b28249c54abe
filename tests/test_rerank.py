"""Reranking with CLIP in the pipeline, the CLI and the evaluation, on `tiny` parts with random weights."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from dalle_lessons import checkpoints
from dalle_lessons.__main__ import main
from dalle_lessons.clip import ClipModel
from dalle_lessons.clip_eval import tokenizer_fingerprint
from dalle_lessons.config import get_preset
from dalle_lessons.evaluate import evaluate_generation
from dalle_lessons.pipeline import TextToImage
from dalle_lessons.rerank import MAX_CANDIDATES, MAX_RERANK, Ranked, check_rerank, rerank_candidates
from dalle_lessons.rerank_eval import curve_points, rerank_curve
from test_evaluate_generation import tiny_pipeline

TINY_CLIP = get_preset("tiny").clip


def tiny_clip(seed: int = 0) -> ClipModel:
    return ClipModel(TINY_CLIP, generator=torch.Generator().manual_seed(seed)).eval()


@pytest.fixture(scope="module")
def pipe():
    pipe = tiny_pipeline()
    return pipe.set_reranker(tiny_clip(), tokenizer_fingerprint(pipe.tokenizer))


@pytest.mark.parametrize("value, error, message", [
    (0, ValueError, "at least 1"), (-3, ValueError, "at least 1"), (2.5, TypeError, "must be an int"),
    ("4", TypeError, "must be an int"), (True, TypeError, "must be an int"),
    (MAX_RERANK + 1, ValueError, f"limit of {MAX_RERANK}"),
])
def test_bad_rerank_values_are_clear_errors(value, error, message):
    with pytest.raises(error, match=message):
        check_rerank(value)


def test_total_candidates_are_bounded():
    assert check_rerank(MAX_RERANK, MAX_CANDIDATES // MAX_RERANK) == MAX_RERANK
    with pytest.raises(ValueError, match="candidates in one call"):
        check_rerank(64, MAX_CANDIDATES // 64 + 1)


def test_ranked_picks_the_highest_score_of_each_group_first_on_ties():
    scores = torch.tensor([[0.1, 0.9, 0.3], [0.5, 0.5, 0.2]])
    ranked = Ranked(scores, scores.argmax(1))
    assert ranked.best.tolist() == [1, 0]
    assert ranked.chosen(torch.arange(6)).tolist() == [1, 3]
    assert ranked.best_scores.tolist() == pytest.approx([0.9, 0.5])


def test_rerank_candidates_scores_every_candidate_against_its_caption():
    clip = tiny_clip()
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    text = torch.randint(1, 400, (6, 16), generator=torch.Generator().manual_seed(1))
    ranked = rerank_candidates(clip, images, text, per_group=3)
    assert torch.allclose(ranked.scores.flatten(), clip.score(images, text))
    with pytest.raises(ValueError, match="whole number of groups"):
        rerank_candidates(clip, images[:5], text[:5], per_group=3)


def test_generate_ranked_returns_clips_best_with_every_score(pipe):
    ranked = pipe.generate_ranked(["a red circle", "a blue square"], n=2, rerank=4, seed=0)
    assert ranked.ids.shape == (4, 16) and ranked.candidate_scores.shape == (4, 4)
    assert ranked.candidates.shape == (16, 16)
    assert torch.equal(ranked.scores, ranked.candidate_scores.max(1).values)
    assert torch.equal(ranked.ids, ranked.candidates.view(4, 4, 16)[torch.arange(4), ranked.chosen])
    again = pipe.generate_ranked(["a red circle", "a blue square"], n=2, rerank=4, seed=0)
    assert torch.equal(again.ids, ranked.ids)  # same seed, same choice
    plain = pipe.generate_tokens("a blue square", n=8, seed=0)  # the candidates are generate's own images
    assert torch.equal(ranked.candidates[8:], plain)
    images = pipe.generate(["a red circle", "a blue square"], n=2, rerank=4, seed=0)
    decoded = pipe.to_pil(pipe.decode(ranked.ids))
    assert [i.tobytes() for i in images] == [i.tobytes() for i in decoded]


def test_generate_checks_rerank_before_sampling(pipe):
    with pytest.raises(ValueError, match="at least 1"):
        pipe.generate("a red circle", rerank=0)
    with pytest.raises(TypeError, match="must be an int"):
        pipe.generate("a red circle", rerank=1.5)


def test_a_clip_that_does_not_fit_is_refused():
    pipe = tiny_pipeline()
    wrong_size = ClipModel(dataclasses.replace(TINY_CLIP, image_size=32))
    with pytest.raises(ValueError, match="CLIP reads 32x32 images but the pipeline draws 16x16"):
        pipe.set_reranker(wrong_size)
    wrong_length = ClipModel(dataclasses.replace(TINY_CLIP, text_seq_len=24))
    with pytest.raises(ValueError, match="24 text positions"):
        pipe.set_reranker(wrong_length)
    with pytest.raises(ValueError, match="another tokenizer"):
        pipe.set_reranker(tiny_clip(), tokenizer_fingerprint="0123456789abcdef")
    with pytest.raises(TypeError, match="ClipModel"):
        pipe.set_reranker(object())


def test_a_pipeline_without_clip_says_how_to_get_one():
    with pytest.raises(FileNotFoundError, match="set_reranker"):
        tiny_pipeline().generate("a red circle", rerank=2)


def test_save_and_load_keep_the_reranker(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "with-clip")
    assert json.loads((folder / "pipeline.json").read_text())["clip"] == "clip.safetensors"
    loaded = TextToImage.from_pretrained(folder, device="cpu")
    a = pipe.generate_ranked("a red circle", n=1, rerank=3, seed=1)
    b = loaded.generate_ranked("a red circle", n=1, rerank=3, seed=1)
    assert torch.equal(a.ids, b.ids) and torch.allclose(a.candidate_scores, b.candidate_scores, atol=2e-3)


def test_evaluate_generation_reranks(pipe):
    plain = evaluate_generation(pipe, n_captions=2, samples=2, seed=0)
    ranked = evaluate_generation(pipe, n_captions=2, samples=2, seed=0, rerank=3)
    assert plain["rerank"] == 1 and ranked["rerank"] == 3
    assert [r["set"] for r in ranked["rows"]] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="at least 1"):
        evaluate_generation(pipe, n_captions=2, samples=2, rerank=0)


def test_rerank_curve_is_nested_and_the_oracle_bounds_clip(pipe):
    assert curve_points(64) == [1, 2, 4, 8, 16, 32, 64] and curve_points(6) == [1, 2, 4, 6]
    report = rerank_curve(pipe, n_captions=3, max_n=4, timed=(2,))
    assert [row["N"] for row in report["rows"]] == [1, 2, 4]
    for name in "abc":
        oracle = [row[f"{name} oracle"] for row in report["rows"]]
        assert oracle == sorted(oracle)  # more samples never hurt the oracle
        assert all(row[f"{name} clip"] <= row[f"{name} oracle"] for row in report["rows"])
        assert report["rows"][0][f"{name} clip"] == report["rows"][0][f"{name} oracle"]  # N = 1: no choice
    assert set(report["seconds_per_caption"]) == {2}


def test_cli_generate_rerank_errors_are_one_line(capsys, tmp_path):
    assert main(["generate", "a red circle", "--rerank", "0", "--out", str(tmp_path / "x.png")]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["generate", "a red circle", "--rerank", "500", "--out", str(tmp_path / "x.png")]) == 2
    assert f"limit of {MAX_RERANK}" in capsys.readouterr().err


def test_cli_train_clip_writes_a_checkpoint(tmp_path, capsys):
    assert main(["train", "clip", "--preset", "tiny", "--steps", "2", "--train-images", "64",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "clip-tiny.safetensors after 2 steps" in out and "binding probe" in out
    model = checkpoints.load(tmp_path / "clip-tiny.safetensors")
    assert isinstance(model, ClipModel)
    assert main(["evaluate", "clip", "--checkpoint", str(tmp_path / "clip-tiny.safetensors"), "--preset", "tiny",
                 "--n", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["what"] == "clip" and set(report["probe"]) == {"seen", "heldout"}
    assert set(report["probe"]["seen"]) == {"color", "shape", "size", "position", "relation", "swap"}
    assert main(["evaluate", "clip", "--checkpoint", str(tmp_path / "nothing.safetensors")]) == 2
    assert "train clip" in capsys.readouterr().err
