"""`evaluate quality` (lesson 09): the Fréchet table's rows, determinism, its floor, and bad input.

Everything runs on `tiny` parts with random weights (16-pixel images, a random CLIP), so the numbers mean
nothing; what is tested is the table's shape and behaviour. The shipped CLIP's sensitivity to blur and
noise is tested in test_metrics.py.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from dalle_lessons.__main__ import main
from dalle_lessons.evaluate import degrade
from dalle_lessons.metrics import clip_frechet
from dalle_lessons.clip_data import claim_holds
from dalle_lessons.quality import QUALITY_SETTINGS, evaluate_quality, reference_sets, same_caption_scenes
from dalle_lessons.shapes import split_of
from dalle_lessons.rerank import MAX_RERANK
from test_evaluate_generation import tiny_pipeline
from test_rerank import tiny_clip

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)

N, SAMPLES = 24, 2
ONE_ROW = {"default": {}}  # a faster report where the grid of settings does not matter


def with_clip(pipe):
    from dalle_lessons.clip_eval import tokenizer_fingerprint
    return pipe.set_reranker(tiny_clip(), tokenizer_fingerprint(pipe.tokenizer))


@pytest.fixture(scope="module")
def pipe():
    return with_clip(tiny_pipeline())


@pytest.fixture(scope="module")
def report(pipe):
    return evaluate_quality(pipe, n=N, samples=SAMPLES, seed=0, batch_size=16)


def numbers(report: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in report["rows"]]


def test_report_has_every_row_and_survives_a_json_round_trip(report):
    names = [row["setting"] for row in report["rows"]]
    assert names == ["real (floor)", "real, blurred 1 px", "dVAE reconstructions", "real, same captions",
                     *QUALITY_SETTINGS, "rerank 4", "rerank 8"]
    assert json.loads(json.dumps(report)) == report
    assert report["captions"] == N // SAMPLES and report["n"] == N and report["seconds"] > 0
    for row in report["rows"]:
        assert math.isfinite(row["frechet"]) and row["frechet"] > 0
        assert 0 <= row["all_correct"] <= 100
        if row["kind"] == "generated" or row["setting"] == "real, same captions":
            assert row["images"] == N // SAMPLES * SAMPLES
            assert 1 <= row["distinct_readings"] <= SAMPLES and 1 <= row["distinct_images"] <= SAMPLES
        if row["kind"] == "generated":
            assert row["sampling"] == report["settings"].get(row["setting"], report["default_sampling"])
        elif row["setting"] != "real, same captions":
            assert row["images"] == N and row["distinct_images"] is None and row["temperature"] is None
    rows = {row["setting"]: row for row in report["rows"]}
    assert rows["temperature 1.3"]["temperature"] == 1.3 and rows["guidance 5.0"]["guidance"] == 5.0
    assert rows["rerank 8"]["rerank"] == 8 and rows["default"]["rerank"] == 1
    assert rows["dVAE reconstructions"]["kind"] == "reconstruction"
    assert rows["real (floor)"]["all_correct"] > 90  # the judge reads real renders
    assert rows["real, same captions"]["all_correct"] == 100.0  # every scene fits its caption (16-px renders)


def test_same_seed_same_numbers_and_another_seed_changes_only_the_generated_rows(pipe, report):
    again = evaluate_quality(pipe, n=N, samples=SAMPLES, seed=0, batch_size=16)
    assert numbers(again) == numbers(report)
    other = evaluate_quality(pipe, n=N, samples=SAMPLES, seed=1, batch_size=16, settings=ONE_ROW, rerank=())
    assert numbers(other)[:4] == numbers(report)[:4]  # the real sets do not depend on the sampling seed
    assert numbers(other)[4] != numbers(report)[4]


def test_the_floor_is_below_noise_and_heavy_blur(pipe, report):
    reference, real, captions, shared = reference_sets(N, pipe.native_size)
    assert len(reference) == len(real) == len(captions.captions) == N and 0 <= shared <= N
    floor = report["rows"][0]["frechet"]
    assert floor == pytest.approx(clip_frechet(pipe.reranker, reference, real))
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(0))
    assert floor < clip_frechet(pipe.reranker, reference, noise)
    assert floor < clip_frechet(pipe.reranker, reference, degrade(real, blur=3.0))
    assert floor < report["rows"][1]["frechet"]  # the 1-pixel blur of the same images


def test_same_caption_scenes_fit_their_caption_vary_where_it_is_silent_and_repeat():
    _, _, captions, _ = reference_sets(40)
    scenes = same_caption_scenes(captions.claims, 8)
    assert scenes == same_caption_scenes(captions.claims, 8)
    for p, claim in enumerate(captions.claims):
        drawn = scenes[p * 8:(p + 1) * 8]
        assert all(claim_holds(claim, s) and split_of(s) == "test" for s in drawn)
        if claim.relation is not None:  # two objects, cells left open: never all eight alike
            assert len({s.key() for s in drawn}) > 1


def test_a_pipeline_without_clip_says_how_to_give_it_one():
    with pytest.raises(FileNotFoundError, match="set_reranker"):
        evaluate_quality(tiny_pipeline(), n=4, samples=2, settings=ONE_ROW, rerank=())


@pytest.mark.parametrize("options, error, message", [
    (dict(n=1), ValueError, "n=1: each of the two real sets needs at least 2 images"),
    (dict(n=2.5), ValueError, "n=2.5"),
    (dict(n=True), ValueError, "n=True"),
    (dict(samples=0), ValueError, "samples=0: draw at least 1 image"),
    (dict(n=4, samples=5), ValueError, "samples=5 is more than n=4"),
    (dict(batch_size=0), ValueError, "batch_size must be at least 1"),
    (dict(seed=-1), ValueError, "seed must be an int >= 0"),
    (dict(rerank=4), TypeError, "rerank must be a tuple of candidate counts"),
    (dict(rerank=(1,)), ValueError, "rerank N=1 is the default row"),
    (dict(rerank=(0,)), ValueError, "rerank=0"),
    (dict(rerank=(4, 4)), ValueError, "names an N twice"),
    (dict(rerank=(MAX_RERANK + 1,)), ValueError, f"limit of {MAX_RERANK}"),
    (dict(settings={"hot": {"temp": 2.0}}), ValueError, "settings['hot']: unknown sampling setting(s) temp"),
    (dict(settings={"hot": {"temperature": -1}}), ValueError, "settings['hot']: temperature must be"),
    (dict(settings={"hot": 2.0}), TypeError, "settings['hot'] must be a dict"),
    (dict(settings=[("hot", {})]), TypeError, "settings must be a dict"),
])
def test_bad_input_is_one_line_before_any_model_loads(options, error, message, tmp_path):
    with pytest.raises(error) as caught:  # the pipeline path does not exist: checking after loading would say so
        evaluate_quality(str(tmp_path / "nowhere"), **options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("argv, message", [
    (["--n", "1"], "n=1: each of the two real sets"),
    (["--samples", "0"], "samples=0"),
    (["--samples", "600"], "samples=600 is more than n=500"),
    (["--batch-size", "0"], "batch_size must be at least 1"),
    (["--seed", "-1"], "seed must be an int >= 0"),
    (["--rerank", "8"], "--rerank would be ignored"),
    (["--temperature", "1.0"], "sampling flags would be ignored"),
    (["--captions", "5", "--sweep"], "--captions, --sweep would be ignored"),
])
def test_cli_refuses_bad_values_in_one_line_before_loading(argv, message, tmp_path, capsys):
    assert main(["evaluate", "quality", *argv, "--checkpoint", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "no pipeline" not in err


def test_cli_prints_the_table_or_the_report(pipe, tmp_path, capsys):
    folder = str(pipe.save_pretrained(tmp_path / "tiny"))
    argv = ["evaluate", "quality", "--checkpoint", folder, "--n", "8", "--samples", "2", "--batch-size", "16"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "not an FID" in out and "real (floor)" in out and "lower is closer to real" in out
    assert "rerank 8" in out and "same captions" in out and "distinct_readings" in out and "device cpu" in out
    assert main(argv + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["what"] == "quality" and report["n"] == 8 and "machine" in report and len(report["rows"]) == 14
