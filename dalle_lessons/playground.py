"""The playground (lesson 11): a prompt and the sampling settings in, pictures out, drawn token row by row.

    from dalle_lessons.playground import PlaygroundWidget
    PlaygroundWidget()                    # in JupyterLab: the shipped `cpu` model, loaded on first use

Two layers. `Playground` holds all the logic in plain Python (settings, validation, progressive
sampling, reranking, the judge's reading, the CLIP score, the one-line error), so pytest drives it
without a browser: set values, call `generate()`, look at `pictures`, `progress` and `error`.
`PlaygroundWidget` is a thin ipywidgets view of it: it copies the widgets' values into the settings,
calls `generate()` on a click, and redraws whenever the state changes.

The pictures are exactly `pipe.generate(prompt, n=n, seed=seed, rerank=rerank, **sampling)`: the same
seed and settings give the same pictures here as from `pipe.generate` (and the CLI's `generate`).
"""
from __future__ import annotations

import html
import io
import numbers
import time
import warnings
from dataclasses import dataclass, fields
from typing import Callable

from PIL import Image

from . import judge
from .pipeline import DEFAULT_SAMPLING, MAX_IMAGES_PER_PROMPT, TextToImage
from .rerank import check_rerank, rerank_candidates
from .sampling import SAMPLING_RANGES, check_sampling, check_seed
from .shapes import POSITION_NAMES, parse_caption

#: Pictures per click: one row of them. More is a loop of clicks with other seeds.
MAX_N = 8
#: Candidates sampled together (n x rerank): one progressive batch of the pipeline.
MAX_CANDIDATES = MAX_IMAGES_PER_PROMPT
#: Pixels per side on screen: the model's 32x32 pictures blown up with nearest-neighbour (no blur).
DISPLAY_SIDE = 128
MESSAGE_LIMIT = 300  # characters of an error shown in the app's one line
CAPTION_STYLE = "line-height: 1.35; font-size: 11px; margin-top: 2px"  # ipywidgets' HTML lines are 28 px tall
TEXT_PLAIN = "DALL·E playground (an ipywidgets app: open this notebook in JupyterLab or Colab to use it)"
NONE_WORDS = ("", "none", "off")  # what an empty top-k / top-p box may say to mean "keep every token"


@dataclass
class Settings:
    """What the learner sets: the prompt, how many pictures, the seed, the sampling and reranking."""

    prompt: str = "a small red circle above a blue square"
    n: int = 4
    seed: int = 0
    temperature: float = DEFAULT_SAMPLING["temperature"]
    top_k: int | None = DEFAULT_SAMPLING["top_k"]
    top_p: float | None = DEFAULT_SAMPLING["top_p"]
    guidance_scale: float = DEFAULT_SAMPLING["guidance_scale"]
    rerank: int = 1

    def sampling(self) -> dict:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p,
                "guidance_scale": self.guidance_scale}


@dataclass
class Picture:
    """One finished picture and what the judge and CLIP say about it."""

    image: Image.Image  # native size (32x32 for the `cpu` model)
    reading: judge.Reading
    described: str  # the reading in words: "black background: small red circle at the top left"
    follows_prompt: bool | None  # the judge's verdict; None when the prompt is not a Shapes caption
    wrong: tuple[str, ...]  # the attributes the judge found wrong (count, color, shape, ...)
    clip_score: float | None  # cosine similarity to the prompt; None without a reranker
    candidates: int  # how many were sampled for it (rerank)

    @property
    def caption(self) -> str:
        """The text under the picture."""
        if self.follows_prompt is None:
            verdict = "judge: the prompt is not a Shapes caption"
        elif self.follows_prompt:
            verdict = "judge: ✓ follows the prompt"
        else:
            verdict = "judge: ✗ wrong " + ", ".join(self.wrong)
        clip = "CLIP: no reranker" if self.clip_score is None else f"CLIP score {self.clip_score:.3f}"
        best = f" (best of {self.candidates})" if self.candidates > 1 else ""
        return f"{self.described}\n{verdict}\n{clip}{best}"


def describe_reading(reading: judge.Reading) -> str:
    """The judge's reading in words, one clause per object."""
    if not reading.objects:
        return f"{reading.background} background, no object found"
    parts = []
    for o in reading.objects:
        what = f"{o.size} {o.color} {o.shape}" if o.shape and o.size else f"{o.color} blob of no known shape"
        parts.append(f"{what} at the {POSITION_NAMES[(o.row, o.col)]}")
    return f"{reading.background} background: " + "; ".join(parts)


def _squeeze(text: str) -> str:
    """Text on one line (its lines joined), cut to MESSAGE_LIMIT characters."""
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 3] + "..."


def one_line(error: BaseException) -> str:
    """An exception as the app's one-line message; an unexpected kind is named, still without a traceback."""
    text = str(error) or "(no message)"
    if not isinstance(error, (ValueError, TypeError, FileNotFoundError)):
        text = f"{type(error).__name__}: {text}"
    return _squeeze(text)


def _parse(name: str, value, kind: type, optional: bool = False):
    """A value typed into a box -> int or float (or None where allowed); other values pass unchanged
    to the package's own checks, which state the accepted range."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if optional and text.lower() in NONE_WORDS:
        return None
    try:
        return kind(text)
    except ValueError:
        rule = SAMPLING_RANGES.get(name, f"an {kind.__name__}")
        raise ValueError(f"{name} must be {rule}, got {value[:40]!r}") from None


def _check_n(n) -> int:
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or not 1 <= n <= MAX_N:
        raise ValueError(f"n must be an int from 1 to {MAX_N} (pictures per click), got {n!r}")
    return int(n)


class Playground:
    """The playground's state and logic, without widgets: set `settings`, call `generate()`, read the state.

    State: `pictures` (finished), `partial` (the pictures so far while sampling), `progress` (0 to 1),
    `status`, `error` (a one-line message or None), `notice` (a warning, e.g. a prompt cut to fit),
    `busy`. `listeners` are called with the playground after every change (the widget redraws).
    """

    def __init__(self, pipe: TextToImage | None = None, device: str | None = None):
        self._pipe, self._device = pipe, device
        self.settings = Settings()
        self.listeners: list[Callable[[Playground], None]] = []
        self.pictures: list[Picture] = []
        self.partial: list[Image.Image] = []
        self.progress = 0.0
        self.status, self.error, self.notice = "ready", None, None
        self.busy = False

    @property
    def pipe(self) -> TextToImage:
        """The pipeline: the one given, or the shipped `cpu` model, loaded on first use."""
        if self._pipe is None:
            self._pipe = TextToImage.from_pretrained(device=self._device)
        return self._pipe

    def set(self, **values) -> Playground:
        """Change settings by name (prompt, n, seed, temperature, top_k, top_p, guidance_scale, rerank)."""
        known = {f.name for f in fields(Settings)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"unknown setting(s) {', '.join(unknown)}: choose from {', '.join(sorted(known))}")
        for name, value in values.items():
            setattr(self.settings, name, value)
        return self

    def checked(self) -> tuple[str, int, int, int, dict]:
        """(prompt, n, seed, rerank, sampling) from the settings, or a ValueError/TypeError naming the problem."""
        s = self.settings
        if not isinstance(s.prompt, str) or not s.prompt.strip():
            raise ValueError("the prompt is empty: describe the picture, e.g. 'a small red circle above a blue square'")
        n = _check_n(_parse("n", s.n, int))
        seed = check_seed(_parse("seed", s.seed, int))
        sampling = {"temperature": _parse("temperature", s.temperature, float),
                    "top_k": _parse("top_k", s.top_k, int, optional=True),
                    "top_p": _parse("top_p", s.top_p, float, optional=True),
                    "guidance_scale": _parse("guidance_scale", s.guidance_scale, float)}
        check_sampling(**sampling)
        rerank = check_rerank(_parse("rerank", s.rerank, int), n)
        if n * rerank > MAX_CANDIDATES:
            raise ValueError(f"n={n} x rerank={rerank} = {n * rerank} candidates is more than the playground samples "
                             f"at once ({MAX_CANDIDATES}): lower n or rerank")
        return s.prompt, n, seed, rerank, sampling

    def generate(self) -> bool:
        """Draw the pictures for the current settings; True when they came. Never raises for bad input:
        the problem becomes `error`, a one-line message, and the previous pictures are cleared."""
        if self.busy:
            return False
        self.busy, self.error, self.notice = True, None, None
        self.pictures, self.partial, self.progress = [], [], 0.0
        self.status = "checking the settings"
        try:
            self._changed()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._draw(*self.checked())
            said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]  # not library deprecations
            if said:
                self.notice = _squeeze(said[0])
            return True
        except Exception as error:  # noqa: BLE001 - the app shows every problem as one line, never a traceback
            self.error, self.status, self.partial = one_line(error), "stopped", []
            return False
        finally:
            self.busy = False
            try:
                self._changed()
            except Exception as error:  # noqa: BLE001 - a view that fails to redraw must not raise out of a click
                self.error = one_line(error)

    # --- the work -----------------------------------------------------------------------------------

    def _draw(self, prompt: str, n: int, seed: int, rerank: int, sampling: dict) -> None:
        start = time.perf_counter()
        self.status = "loading the model"
        self._changed()
        pipe = self.pipe
        clip = self._reranker(required=rerank > 1)
        loaded, start = time.perf_counter() - start, time.perf_counter()
        grid, total = pipe.grid, n * rerank
        steps = grid + 1  # one per token row, then reading and scoring
        pixels = None
        for row, pixels in enumerate(pipe.progressive(prompt, n=total, seed=seed, every=grid, **sampling), 1):
            self.partial = pipe.to_pil(pixels[::rerank])  # the first candidate of each picture
            self.progress = row / steps
            self.status = f"drawing token row {row} of {grid}" + (f" ({total} candidates)" if rerank > 1 else "")
            self._changed()
        self.status = "reranking and reading" if rerank > 1 else "reading"
        self._changed()
        chosen, scores = pixels, [None] * n
        if clip is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an overlong prompt was warned about once, by progressive
                text = pipe.encode_prompts(prompt).repeat_interleave(total, dim=0)
            ranked = rerank_candidates(clip, pixels, text, per_group=rerank)
            chosen = ranked.chosen(pixels)
            scores = ranked.best_scores.tolist()
        try:
            claim = parse_caption(prompt)
        except ValueError:
            claim = None
        images = pipe.to_pil(chosen)
        self.pictures = [self._picture(image, claim, score, rerank) for image, score in zip(images, scores)]
        self.partial, self.progress = images, 1.0
        load = f", the model loaded in {loaded:.1f} s" if loaded >= 0.1 else ""
        self.status = f"{n} picture{'s' * (n > 1)} in {time.perf_counter() - start:.1f} s (seed {seed}{load})"

    def _picture(self, image: Image.Image, claim, score: float | None, rerank: int) -> Picture:
        reading = judge.read_image(image)
        follows, wrong = None, ()
        if claim is not None:
            verdict = judge.score_reading(reading, claim)
            follows, wrong = verdict.all_correct, tuple(k for k, ok in verdict.attributes.items() if not ok)
        return Picture(image, reading, describe_reading(reading), follows, wrong, score, rerank)

    def _reranker(self, required: bool):
        """The pipeline's CLIP, or None where it has none (then reranking is an error, a score is just absent)."""
        try:
            return self.pipe.reranker
        except FileNotFoundError:
            if required:
                raise
            return None

    def _changed(self) -> None:
        for listener in self.listeners:
            listener(self)


# --- the widgets ------------------------------------------------------------------------------------

def png_bytes(image: Image.Image, side: int = DISPLAY_SIDE) -> bytes:
    """A picture as PNG bytes, blown up to `side` pixels with nearest-neighbour (crisp token cells)."""
    buffer = io.BytesIO()
    image.resize((side, side), Image.Resampling.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


def _blank(side: int = DISPLAY_SIDE) -> bytes:
    return png_bytes(Image.new("RGB", (1, 1), (128, 128, 128)), side)


def _box_text(value) -> str:
    return "" if value is None else str(value)


class PlaygroundWidget:
    """The playground in JupyterLab: a thin ipywidgets view of a `Playground` (`.state`).

    Display it as a cell's last line; `.widget` is the VBox. CSS classes `dalle-playground-*` name the
    parts for the browser test.
    """

    def __init__(self, pipe: TextToImage | None = None, device: str | None = None,
                 state: Playground | None = None):
        import ipywidgets as w

        self.state = state or Playground(pipe, device)
        s = self.state.settings
        wide, short = w.Layout(width="100%"), w.Layout(width="180px")
        style = {"description_width": "90px"}
        self.prompt = w.Text(value=s.prompt, description="prompt", placeholder="a small red circle above a blue square",
                             layout=wide, style=style)
        self.n = w.IntText(value=s.n, description="n", layout=short, style=style)
        self.seed = w.IntText(value=s.seed, description="seed", layout=short, style=style)
        self.temperature = w.FloatText(value=s.temperature, description="temperature", layout=short, style=style)
        self.top_k = w.Text(value=_box_text(s.top_k), description="top-k", placeholder="off", layout=short,
                            style=style)
        self.top_p = w.Text(value=_box_text(s.top_p), description="top-p", placeholder="off", layout=short,
                            style=style)
        self.guidance = w.FloatText(value=s.guidance_scale, description="guidance", layout=short, style=style)
        self.rerank = w.IntText(value=s.rerank, description="rerank", layout=short, style=style)
        self.button = w.Button(description="Generate", button_style="primary", icon="paint-brush")
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="240px"))
        self.percent = w.Label("0 %")
        self.message = w.HTML()
        self.gallery = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self._slots: list[tuple] = []
        for name in ("prompt", "n", "seed", "temperature", "top_k", "top_p", "guidance", "rerank", "bar", "percent",
                     "message", "gallery"):
            getattr(self, name).add_class(f"dalle-playground-{name.replace('_', '-')}")
        self.button.add_class("dalle-playground-generate")
        self.button.on_click(lambda _: self.click())
        self.state.listeners.append(lambda _: self.render())
        self.widget = w.VBox([
            self.prompt,
            w.HBox([self.n, self.seed, self.rerank]),
            w.HBox([self.temperature, self.top_k, self.top_p, self.guidance]),
            w.HBox([self.button, self.bar, self.percent]),
            self.message,
            self.gallery,
        ])
        self.widget.add_class("dalle-playground")
        self.render()

    def click(self) -> None:
        """What the Generate button does: copy the boxes into the settings, then generate."""
        self.state.set(prompt=self.prompt.value, n=self.n.value, seed=self.seed.value,
                       temperature=self.temperature.value, top_k=self.top_k.value, top_p=self.top_p.value,
                       guidance_scale=self.guidance.value, rerank=self.rerank.value)
        self.state.generate()

    def render(self) -> None:
        """Bring the widgets in line with the state (called after every change)."""
        import ipywidgets as w

        st = self.state
        self.button.disabled = st.busy
        self.bar.value = st.progress
        self.bar.bar_style = "danger" if st.error else ("success" if st.progress >= 1 else "info")
        self.percent.value = f"{round(100 * st.progress)} %"
        if st.error:
            line = f"<span style='color:#b00020'>⚠ {html.escape(st.error)}</span>"
        elif st.notice:
            line = f"<span style='color:#8a6d00'>{html.escape(st.status)} · note: {html.escape(st.notice)}</span>"
        else:
            line = f"<span style='color:#555'>{html.escape(st.status)}</span>"
        self.message.value = line
        shown = st.partial
        if len(self._slots) != len(shown):  # new widgets only when the count changes: redraws stay cheap
            self._slots = [(w.Image(value=_blank(), format="png", width=DISPLAY_SIDE, height=DISPLAY_SIDE),
                            w.HTML()) for _ in shown]
            for image, caption in self._slots:
                image.add_class("dalle-playground-picture")
                caption.add_class("dalle-playground-caption")
            self.gallery.children = [w.VBox([image, caption], layout=w.Layout(width=f"{DISPLAY_SIDE + 60}px",
                                                                                 margin="4px"))
                                     for image, caption in self._slots]
        for k, (image, caption) in enumerate(self._slots):
            image.value = png_bytes(shown[k])
            text = st.pictures[k].caption if k < len(st.pictures) else ""
            lines = "<br>".join(html.escape(line) for line in text.splitlines())
            caption.value = f"<div style='{CAPTION_STYLE}'>{lines}</div>" if text else ""

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if "text/plain" in bundle:  # what a non-widget front end (and nbval) sees: one fixed line, not the tree
            bundle["text/plain"] = TEXT_PLAIN
        return bundle


def playground(pipe: TextToImage | None = None, device: str | None = None) -> PlaygroundWidget:
    """The playground for a notebook cell: `playground()` uses the shipped `cpu` model."""
    return PlaygroundWidget(pipe, device)
