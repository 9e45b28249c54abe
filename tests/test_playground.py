"""The playground without a browser: set values, click Generate, look at the state.

A `tiny` pipeline with random weights (16x16 pictures, 4x4 tokens) and a random tiny CLIP keep every
test to a fraction of a second; the real browser test is test_playground_browser.py.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dalle_lessons.clip_eval import tokenizer_fingerprint
from dalle_lessons.pipeline import DEFAULT_SAMPLING, TextToImage
from dalle_lessons.playground import (DISPLAY_SIDE, MAX_CANDIDATES, MAX_N, MESSAGE_LIMIT, TEXT_PLAIN,
                                      Playground, PlaygroundWidget, Settings, describe_reading, one_line)
from dalle_lessons.sampling import SAMPLING_RANGES
from test_pipeline import TINY, random_dvae, random_transformer, shipped_tokenizer
from test_rerank import tiny_clip

PROMPT = "a small red circle above a blue square"
GRID = TINY.dvae.grid_size  # 4 token rows


def tiny_pipe(with_clip: bool = True) -> TextToImage:
    pipe = TextToImage(shipped_tokenizer(TINY.transformer.text_seq_len), random_dvae(), random_transformer())
    return pipe.set_reranker(tiny_clip(), tokenizer_fingerprint(pipe.tokenizer)) if with_clip else pipe


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipe()


@pytest.fixture
def app(pipe):
    return Playground(pipe)


class Recorder:
    """A listener that keeps a copy of the state after every change."""

    def __init__(self, app: Playground):
        self.events = []
        app.listeners.append(self)

    def __call__(self, app: Playground) -> None:
        self.events.append({"progress": app.progress, "status": app.status, "busy": app.busy, "error": app.error,
                            "partial": [np.asarray(image).copy() for image in app.partial]})


def arrays(images):
    return [np.asarray(image) for image in images]


# --- drawing ------------------------------------------------------------------------------------------

def test_the_defaults_are_the_pipelines_sampling():
    s = Settings()
    assert s.sampling() == DEFAULT_SAMPLING and s.rerank == 1 and 1 <= s.n <= MAX_N


def test_generate_draws_n_pictures_each_with_the_judges_reading_and_a_clip_score(app):
    app.set(prompt=PROMPT, n=3, seed=1)
    assert app.generate() is True
    assert app.error is None and not app.busy and app.progress == 1.0
    assert len(app.pictures) == 3 and len(app.partial) == 3
    for picture in app.pictures:
        assert picture.image.size == (16, 16)
        assert picture.described == describe_reading(picture.reading) and "background" in picture.described
        assert isinstance(picture.clip_score, float) and -1 <= picture.clip_score <= 1
        assert isinstance(picture.follows_prompt, bool)  # the prompt is a Shapes caption
        assert f"CLIP score {picture.clip_score:.3f}" in picture.caption
        assert picture.described in picture.caption and "judge:" in picture.caption
    assert app.status.startswith("3 pictures in") and "seed 1" in app.status


def test_pictures_appear_token_row_by_row_and_progress_reaches_100_percent(app):
    recorder = Recorder(app)
    app.set(prompt=PROMPT, n=2, seed=4).generate()
    progress = [e["progress"] for e in recorder.events]
    assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 1.0
    assert recorder.events[0]["busy"] and not recorder.events[-1]["busy"]
    rows = [e for e in recorder.events if e["status"].startswith("drawing token row")]
    assert [e["status"] for e in rows] == [f"drawing token row {r} of {GRID}" for r in range(1, GRID + 1)]
    cell = 16 // GRID
    for row, event in enumerate(rows, 1):
        assert len(event["partial"]) == 2
        for picture in event["partial"]:
            assert (picture[row * cell:] == 128).all()  # rows not drawn yet are grey
    for drawn, final in zip(rows[-1]["partial"], arrays(app.pictures[k].image for k in range(2))):
        np.testing.assert_array_equal(drawn, final)  # the last row drawn is the finished picture


def test_the_pictures_are_the_pipelines_own_for_the_same_seed_and_settings(app, pipe):
    settings = dict(n=3, seed=7, temperature=1.0, top_k=20, top_p=0.95, guidance_scale=1.5)
    app.set(prompt=PROMPT, **settings).generate()
    sampling = {k: v for k, v in settings.items() if k not in ("n", "seed")}
    expected = pipe.generate(PROMPT, n=3, seed=7, **sampling)
    assert [a.tobytes() for a in arrays(p.image for p in app.pictures)] == [e.tobytes() for e in arrays(expected)]
    first = arrays(p.image for p in app.pictures)
    app.generate()  # same settings: the same pictures
    assert all((a == b).all() for a, b in zip(first, arrays(p.image for p in app.pictures)))
    app.set(seed=8).generate()
    assert any((a != b).any() for a, b in zip(first, arrays(p.image for p in app.pictures)))


def test_rerank_keeps_clips_best_candidate_as_generate_ranked_does(app, pipe):
    app.set(prompt=PROMPT, n=2, seed=3, rerank=4, top_k=None, temperature=1.0).generate()
    assert app.error is None and len(app.pictures) == 2
    ranked = pipe.generate_ranked(PROMPT, n=2, rerank=4, seed=3, temperature=1.0, top_k=None)
    expected = pipe.to_pil(pipe.decode(ranked.ids))
    assert [p.image.tobytes() for p in app.pictures] == [e.tobytes() for e in expected]
    assert [p.clip_score for p in app.pictures] == pytest.approx(ranked.scores.tolist(), abs=1e-6)
    assert all(p.candidates == 4 and "(best of 4)" in p.caption for p in app.pictures)
    assert "(8 candidates)" in statuses_of_a_run(app)


def statuses_of_a_run(app: Playground) -> str:
    recorder = Recorder(app)
    app.generate()
    return " | ".join(e["status"] for e in recorder.events)


def test_the_judge_says_nothing_about_a_prompt_that_is_not_a_shapes_caption(app):
    app.set(prompt="a photograph of an avocado armchair", n=1, seed=0).generate()
    assert app.error is None
    picture = app.pictures[0]
    assert picture.follows_prompt is None and picture.wrong == ()
    assert "not a Shapes caption" in picture.caption


def test_a_pipeline_without_clip_still_draws_and_says_so(pipe):
    app = Playground(tiny_pipe(with_clip=False))
    app.set(prompt=PROMPT, n=2, seed=0).generate()
    assert app.error is None and [p.clip_score for p in app.pictures] == [None, None]
    assert "CLIP: no reranker" in app.pictures[0].caption
    app.set(rerank=2).generate()
    assert app.pictures == [] and "set_reranker" in app.error


def test_an_overlong_prompt_draws_with_a_notice(app):
    app.set(prompt=" ".join(["a small red circle above a blue square"] * 6), n=1, seed=0).generate()
    assert app.error is None and len(app.pictures) == 1
    assert "too long" in app.notice and "keeping the first 16 tokens" in app.notice


def test_top_k_and_top_p_boxes_read_text(app):
    app.set(top_k="", top_p="off", prompt=PROMPT, n=1)
    assert app.checked()[4]["top_k"] is None and app.checked()[4]["top_p"] is None
    app.set(top_k=" 20 ", top_p="0.9", temperature="0.5", seed="12", n="2", rerank="1")
    assert app.checked() == (PROMPT, 2, 12, 1, {"temperature": 0.5, "top_k": 20, "top_p": 0.9,
                                                 "guidance_scale": DEFAULT_SAMPLING["guidance_scale"]})


# --- errors: one line in the app, never an exception --------------------------------------------------

BAD = [
    (dict(prompt=""), "the prompt is empty"),
    (dict(prompt="   \n"), "the prompt is empty"),
    (dict(prompt=None), "the prompt is empty"),
    (dict(prompt="a red\x00circle"), "NUL character"),
    (dict(n=0), f"n must be an int from 1 to {MAX_N}"),
    (dict(n=MAX_N + 1), f"n must be an int from 1 to {MAX_N}"),
    (dict(n=2.5), "n must be an int"),
    (dict(n="two"), "n must be an int"),
    (dict(n=True), "n must be an int"),
    (dict(seed=-1), "seed must be an int >= 0"),
    (dict(seed=2**64), "seed must be an int >= 0"),
    (dict(seed="lucky"), "seed must be an int"),
    (dict(temperature=-1.0), "temperature must be " + SAMPLING_RANGES["temperature"]),
    (dict(temperature=float("nan")), "temperature must be"),
    (dict(temperature="hot"), "temperature must be " + SAMPLING_RANGES["temperature"]),
    (dict(top_k="0"), "top_k must be " + SAMPLING_RANGES["top_k"]),
    (dict(top_k="ten"), "top_k must be " + SAMPLING_RANGES["top_k"]),
    (dict(top_k="2.5"), "top_k must be"),
    (dict(top_p="1.5"), "top_p must be " + SAMPLING_RANGES["top_p"]),
    (dict(top_p=0.0), "top_p must be"),
    (dict(guidance_scale=11.0), "guidance_scale must be " + SAMPLING_RANGES["guidance_scale"]),
    (dict(guidance_scale=-0.5), "guidance_scale must be"),
    (dict(rerank=0), "at least 1"),
    (dict(rerank=1000), "limit of"),
    (dict(rerank=1.5), "rerank must be an int"),
    (dict(n=MAX_N, rerank=MAX_CANDIDATES // MAX_N + 1), "lower n or rerank"),
]


@pytest.mark.parametrize("values, message", BAD,
                         ids=[", ".join(f"{k}={v!r}"[:30] for k, v in d.items()) for d, _ in BAD])
def test_bad_input_is_a_one_line_message_in_the_app(app, values, message):
    app.set(**{"prompt": PROMPT, "n": 1, "seed": 0, **values})
    app.pictures, app.partial, app.progress = ["from before"], ["from before"], 1.0  # a finished run ...
    assert app.generate() is False  # ... and no exception escapes
    assert message in app.error and "\n" not in app.error and len(app.error) <= MESSAGE_LIMIT
    assert "Traceback" not in app.error
    assert app.pictures == [] and app.partial == [] and app.progress == 0.0 and not app.busy
    assert app.status == "stopped"


def test_an_unexpected_failure_is_named_in_one_line_too(app, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the sampler fell over\nsecond line")

    monkeypatch.setattr(app.pipe, "progressive", broken)
    assert app.set(prompt=PROMPT, n=1).generate() is False
    assert app.error == "RuntimeError: the sampler fell over second line" and not app.busy


def test_a_view_that_fails_to_redraw_does_not_raise_out_of_the_click(app):
    def broken(_):
        raise KeyError("no such widget")

    app.listeners.append(broken)
    assert app.set(prompt=PROMPT, n=1).generate() is False
    assert app.error == "KeyError: 'no such widget'" and not app.busy


def test_a_missing_model_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("DALLE_LESSONS_DATA", str(tmp_path))  # an empty data folder
    app = Playground(device="cpu")
    assert app.generate() is False
    assert "tokenizer.json is missing" in app.error and "\n" not in app.error


def test_long_messages_are_cut():
    assert len(one_line(ValueError("x" * 5000))) == MESSAGE_LIMIT
    assert one_line(ValueError("a\n  b\n")) == "a b"


def test_unknown_setting_names_are_a_programming_error(app):
    with pytest.raises(TypeError, match="unknown setting"):
        app.set(temprature=1.0)


# --- the widget layer ---------------------------------------------------------------------------------

def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_the_widget_copies_the_boxes_and_draws_on_click(pipe):
    view = PlaygroundWidget(pipe)
    assert view.bar.value == 0 and view.gallery.children == ()
    view.prompt.value, view.n.value, view.seed.value = PROMPT, 3, 5
    view.top_k.value, view.top_p.value, view.rerank.value = "20", "", 2
    view.button.click()
    state = view.state
    assert state.error is None and (state.settings.top_k, state.settings.n) == ("20", 3)
    assert state.checked()[4]["top_k"] == 20 and state.checked()[4]["top_p"] is None
    assert view.bar.value == 1.0 and view.percent.value == "100 %" and view.bar.bar_style == "success"
    assert not view.button.disabled
    assert len(view.gallery.children) == 3
    for image, caption in view._slots:
        assert png_size(image.value) == (DISPLAY_SIDE, DISPLAY_SIDE)
        assert "CLIP score" in caption.value and "best of 2" in caption.value and "judge" in caption.value
    expected = pipe.generate(PROMPT, n=3, seed=5, rerank=2, top_k=20, top_p=None)
    shown = [np.asarray(Image.open(io.BytesIO(image.value)))[:: DISPLAY_SIDE // 16, :: DISPLAY_SIDE // 16]
             for image, _ in view._slots]
    for a, b in zip(shown, arrays(expected)):
        np.testing.assert_array_equal(a, b)  # what is on screen is the pipeline's picture, blown up


def test_the_widget_shows_a_bad_value_as_one_line_and_clears_the_pictures(pipe):
    view = PlaygroundWidget(pipe)
    view.prompt.value, view.n.value = PROMPT, 2
    view.button.click()
    assert len(view.gallery.children) == 2
    view.top_p.value = "2"
    view.button.click()  # must not raise
    assert "top_p must be" in view.message.value and "⚠" in view.message.value
    assert view.gallery.children == () and view.bar.value == 0 and view.bar.bar_style == "danger"
    assert not view.button.disabled
    view.top_p.value, view.prompt.value = "0.9", "<b>bold</b>\x00"
    view.button.click()
    assert "&lt;b&gt;" in view.message.value and "<b>" not in view.message.value  # escaped, not rendered


def test_the_widget_displays_as_its_vbox(pipe):
    view = PlaygroundWidget(pipe)
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == TEXT_PLAIN  # nbval compares text: one fixed line, not the widget tree
    assert "dalle-playground" in view.widget._dom_classes


def test_the_widget_redraws_while_drawing(pipe):
    view = PlaygroundWidget(pipe)
    seen = []
    view.state.listeners.append(lambda st: seen.append((view.bar.value, len(view._slots), view.button.disabled)))
    view.prompt.value, view.n.value = PROMPT, 2
    view.button.click()
    drawing = [s for s in seen if 0 < s[0] < 1]
    assert len(drawing) >= GRID and all(slots == 2 and disabled for _, slots, disabled in drawing)
    assert seen[-1] == (1.0, 2, False)
    torch.testing.assert_close(torch.tensor(sorted(b for b, _, _ in seen)), torch.tensor([b for b, _, _ in seen]))
