"""Property-based (hypothesis): random prompts and sampling values give images or a clear error, never a
traceback, a raw library exception or a non-finite pixel, through the API and the CLI (in-process).

A `tiny`-preset pipeline with random weights keeps each example to milliseconds.
"""
import contextlib
import io
import math
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

import torch
from hypothesis import HealthCheck, event, given, settings, strategies as st

from dalle_lessons.__main__ import main
from dalle_lessons.pipeline import TextToImage
from test_pipeline import TINY, random_dvae, random_transformer, shipped_tokenizer

CLEAR = (ValueError, TypeError)  # what the API may raise for bad input (FileNotFoundError is an OSError)


@lru_cache(maxsize=1)
def tiny_pipe() -> TextToImage:
    return TextToImage(shipped_tokenizer(TINY.transformer.text_seq_len), random_dvae(), random_transformer())


@lru_cache(maxsize=1)
def tiny_folder() -> str:
    return str(tiny_pipe().save_pretrained(Path(tempfile.mkdtemp(prefix="reliability-")) / "tiny"))


words = st.sampled_from(["a", "small", "red", "circle", "above", "blue", "square", "é", "三角形", "\n", "\t",
                         "\x00", "\x1b[31m", "<pad>", "  ", "🙂", "\u202e", "ℌ"])
prompts = st.one_of(
    st.text(max_size=40),  # any unicode, control characters included, and the empty string
    st.lists(words, max_size=60).map(" ".join),  # caption-like, up to very long
    st.text(alphabet="ab ", min_size=2000, max_size=3000),
)
wild = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10),
                 st.sampled_from([0, 1, 1e-45, 1e-300, 1e38, 1e30, 1.5, -1.0, 0.5]))
edges = st.sampled_from([0.0, 0.01, 0.5, 1.0, 3.0, 10.0, 100.0, 1e-300, 1e-6])  # in range for some setting
sampling = st.fixed_dictionaries({}, optional={
    "temperature": st.one_of(edges, wild), "top_p": st.one_of(st.none(), edges, wild),
    "top_k": st.one_of(st.none(), st.integers(-3, 100), st.just(2**70)), "guidance_scale": st.one_of(edges, wild),
})


def _assert_clear(error: BaseException) -> None:
    assert isinstance(error, CLEAR), f"raw {type(error).__name__}: {error}"
    text = str(error)
    assert text and "\n" not in text and len(text) < 600, text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=st.one_of(prompts, prompts, prompts, st.lists(prompts, min_size=0, max_size=3),
                        st.one_of(st.none(), st.integers(), st.binary())),
       n=st.one_of(st.integers(1, 3), st.integers(-1, 0), st.just(2.0)),
       seed=st.one_of(st.none(), st.integers(0, 9), st.integers(-2, 2**64)),
       options=sampling)
def test_api_gives_finite_images_or_a_clear_error(prompt, n, seed, options):
    pipe = tiny_pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # over-long prompts warn, and are then truncated
        try:
            ids = pipe.generate_tokens(prompt, n=n, seed=seed, **options)
        except Exception as error:  # noqa: BLE001 - the property is about which exceptions escape
            _assert_clear(error)
            event(f"error: {type(error).__name__}")
            return
    event("images")
    pixels = pipe.decode(ids)
    assert torch.isfinite(pixels).all() and 0 <= pixels.min() and pixels.max() <= 1
    assert len(pipe.to_pil(pixels)) == ids.shape[0]


def _flag(value) -> str:
    return repr(value) if isinstance(value, float) and not math.isfinite(value) else str(value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=prompts, options=sampling, n=st.integers(-1, 2), seed=st.one_of(st.integers(0, 9), st.integers(-1, 2**64)))
def test_cli_prints_images_or_one_error_line_never_a_traceback(prompt, options, n, seed):
    out = Path(tiny_folder()).parent / "grid.png"
    argv = ["generate", prompt, "-n", str(n), "--seed", str(seed), "--checkpoint", tiny_folder(),
            "--out", str(out), "--size", "16x16", "--device", "cpu"]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", _flag(value if value is not None else 0)]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse: a flag value it cannot parse (usage line + one error line)
            code = exit.code
    err = stderr.getvalue()
    assert "Traceback" not in err
    assert code in (0, 2), (code, err)
    event(f"exit {code}")
    if code == 0:
        assert stdout.getvalue().startswith("wrote ")
    else:
        assert [line for line in err.splitlines() if line.startswith("error: ") or ": error: " in line], err
