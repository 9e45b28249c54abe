"""Self-checks for lesson 11 (DALL·E from Python).

Exercise 1 judges a mask by the server's own rule (the function behind its 400 for a bad mask) and by a
private reference: the smallest edit that redraws everything the user painted. Exercise 2 drives the
learner's function with a fake client that records what was sent and how many requests were in flight
at once, so it runs in a fraction of a second without a server (the lesson's server measures the gain).
The library implements neither: `server.edit_mask` takes a row count, not a painted mask, and nothing in
the package sends requests.
"""
from __future__ import annotations

import base64
import io
import threading
import time
from typing import Callable

import numpy as np
from PIL import Image

from dalle_lessons.exercises import Feedback, call_learner, report


# --- exercise 1: from a painted mask to one the model can honour ------------------------------------

def _painted(side: int, where: np.ndarray, alpha_elsewhere: int = 255) -> Image.Image:
    """An RGBA mask as an editor paints it: alpha 0 where the user painted, `alpha_elsewhere` around it."""
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[..., :3] = (200, 120, 40)  # the brush colour: only alpha means anything
    rgba[..., 3] = alpha_elsewhere
    rgba[..., 3][where] = 0
    return Image.fromarray(rgba, "RGBA")


def _mask_cases() -> list[tuple[str, Image.Image, int]]:
    """(description, painted mask, grid): holes, strokes, bands, sides that are and are not multiples of grid."""
    cases = []
    yy, xx = np.mgrid[:256, :256]
    cases.append(("a 256x256 mask with a round hole painted in the middle (grid 8)",
                  _painted(256, (yy - 128) ** 2 + (xx - 128) ** 2 < 40 ** 2), 8))
    band = np.zeros((32, 32), bool)
    band[24:] = True
    cases.append(("a 32x32 mask painted over its bottom quarter (already a valid band; grid 8)", _painted(32, band), 8))
    stroke = np.zeros((100, 100), bool)
    stroke[37:61, 50:] = True
    cases.append(("a 100x100 mask (not a multiple of 8) with a stroke from pixel row 37 down to row 60 (grid 8)",
                  _painted(100, stroke), 8))
    dot = np.zeros((64, 64), bool)
    dot[0, 0] = True
    cases.append(("a 64x64 mask with one painted pixel at the top left (grid 8)", _painted(64, dot), 8))
    cases.append(("a 48x48 mask with nothing painted (grid 8)", _painted(48, np.zeros((48, 48), bool)), 8))
    last = np.zeros((1024, 1024), bool)
    last[1023, 300:700] = True
    cases.append(("a 1024x1024 mask with a stroke along its last pixel row (grid 8)", _painted(1024, last), 8))
    soft = np.zeros((32, 32), bool)
    soft[20:26, 4:28] = True
    cases.append(("a 32x32 mask, half transparent (alpha 128) where not painted, painted from pixel row 20 (grid 8)",
                  _painted(32, soft, alpha_elsewhere=128), 8))
    small = np.zeros((16, 16), bool)
    small[6:8, :5] = True
    cases.append(("a 16x16 mask painted at pixel rows 6 and 7 (grid 4, the tiny model)", _painted(16, small), 4))
    return cases


def _token_rows(side: int, grid: int) -> np.ndarray:
    """The token row of each pixel row: the server's rule, `y * grid // side`."""
    return np.arange(side) * grid // side


def _keep_alpha(side: int, keep_pixel_rows: np.ndarray) -> np.ndarray:
    alpha = np.zeros((side, side), np.uint8)
    alpha[keep_pixel_rows] = 255
    return alpha


def _reference_keep(painted: Image.Image, grid: int) -> int:
    """Token rows kept: all those above the first token row with a painted (alpha 0) pixel; all when none."""
    alpha = np.asarray(painted)[..., 3]
    rows = _token_rows(alpha.shape[0], grid)[(alpha == 0).any(axis=1)]
    return int(rows.min()) if rows.size else grid


def _mask_variant(painted: Image.Image, grid: int, mistake: str) -> np.ndarray:
    """The alpha channel a known mistake returns."""
    alpha = np.asarray(painted)[..., 3]
    side = alpha.shape[0]
    token_row = _token_rows(side, grid)
    if mistake == "unchanged":
        return alpha.copy()
    if mistake == "inverted":
        return 255 - _keep_alpha(side, token_row < _reference_keep(painted, grid))
    if mistake == "not_opaque_is_painted":
        rows = token_row[(alpha < 255).any(axis=1)]
        return _keep_alpha(side, token_row < (int(rows.min()) if rows.size else grid))
    if mistake == "pixel_height":  # rows of side // grid pixels, counted from the top
        height = side // grid
        painted_rows = np.flatnonzero((alpha == 0).any(axis=1))
        first = int(painted_rows[0]) if painted_rows.size else side
        return _keep_alpha(side, np.arange(side) < (first // height) * height)
    if mistake == "keeps_first_painted_row":  # the row holding the first painted pixel survives, unless it starts there
        painted_rows = np.flatnonzero((alpha == 0).any(axis=1))
        if not painted_rows.size:
            return _keep_alpha(side, np.ones(side, bool))
        first = int(painted_rows[0])
        keep = int(token_row[first]) + (0 if first == 0 or token_row[first - 1] != token_row[first] else 1)
        return _keep_alpha(side, token_row < keep)
    if mistake == "top_half":  # the lesson's editor: always keep the top half
        return _keep_alpha(side, token_row < grid // 2)
    raise ValueError(mistake)


_MASK_MISTAKES = {
    "unchanged": "You returned the painted mask as it is. The server refuses most painted masks (a hole in the "
                 "middle, a stroke that starts inside a token row): the model redraws whole token rows, from the "
                 "first one the user touched down to the bottom. Build a new mask: opaque above that row, "
                 "transparent from it on.",
    "inverted": "Your mask is inside out: in OpenAI's convention (and the server's) alpha 0, transparent, means "
                "'redraw' and alpha 255 means 'keep'. Make the kept rows at the top opaque.",
    "not_opaque_is_painted": "You count every pixel that is not fully opaque as painted. The rule is alpha exactly 0 "
                             "(the server's `alpha == 0`): a half-transparent pixel (alpha 128) is kept, so it "
                             "must not push the edit further up.",
    "pixel_height": "Your token rows are `side // grid` pixels tall, counted from the top. That is right only when "
                    "the side is a multiple of grid; in general pixel row y belongs to token row y * grid // side "
                    "(the server's rule), so for a 100 px mask and grid 8 the rows are 12 or 13 pixels tall.",
    "keeps_first_painted_row": "You keep the token row that holds the first painted pixel (unless the stroke "
                               "starts exactly on its first pixel row). That row has painted pixels, and the user "
                               "asked for them to be redrawn: redraw it too, and everything below it.",
    "top_half": "You always keep the top half (the editor's mask in section 6). Where the edit starts depends on "
                "where the user painted: keep only the token rows above the first painted one.",
}


def _alpha_of(mask) -> np.ndarray | None:
    """The mask's alpha channel as the server reads it, or None without one."""
    from dalle_lessons.server import _alpha
    return _alpha(mask)


def check_redraw_mask(fn: Callable[[Image.Image, int], Image.Image]) -> bool:
    """Exercise 1: `fn(painted, grid)` is the smallest mask the server accepts that redraws every painted pixel."""
    from dalle_lessons.server import APIError, _rows_to_keep

    def check() -> None:
        cases = _mask_cases()
        got = []
        for name, painted, grid in cases:
            before = painted.tobytes()
            out = call_learner(fn, f"Your function (with {name})", painted, grid,
                               hint=" Hint: np.asarray(painted)[..., 3] is the alpha channel; pixel row y is in "
                                    "token row y * grid // side.")
            if painted.tobytes() != before:
                raise Feedback("Your function changed the painted mask in place; build a new image instead.")
            if not isinstance(out, Image.Image):
                raise Feedback(f"Return a PIL image (e.g. Image.fromarray(rgba, 'RGBA') from a uint8 array "
                               f"[side, side, 4]), not a {type(out).__name__}.")
            if out.size != painted.size:
                raise Feedback(f"With {name} your mask is {out.width}x{out.height}; the server wants a mask of the "
                               f"image's size, {painted.width}x{painted.height}.")
            alpha = _alpha_of(out)
            if alpha is None:
                raise Feedback(f"Your mask (mode {out.mode}) has no alpha channel, and the server reads only alpha: "
                               "return an RGBA image whose alpha is 255 where the picture is kept, 0 where it "
                               "is redrawn.")
            got.append(alpha)
        expected = [_keep_alpha(p.width, _token_rows(p.width, g) < _reference_keep(p, g)) for _, p, g in cases]
        wrong = [k for k in range(len(cases)) if not np.array_equal((got[k] == 0), (expected[k] == 0))]
        if not wrong:
            return
        for mistake, message in _MASK_MISTAKES.items():  # named only if it explains every case
            if all(np.array_equal(got[k] == 0, _mask_variant(p, g, mistake) == 0) for k, (_, p, g) in enumerate(cases)):
                raise Feedback(message)
        k = wrong[0]
        name, painted, grid = cases[k]
        try:
            keep = _rows_to_keep(got[k] == 0, grid)
        except APIError as refused:
            raise Feedback(f"With {name} the server would refuse your mask (400, param 'mask'): {refused.message}.")
        best = _reference_keep(painted, grid)
        if keep > best:
            raise Feedback(f"With {name} your mask keeps {keep} token rows, but row {best + 1} of {grid} has painted "
                           f"pixels: they would survive the edit. Keep only the {best} row(s) above the first "
                           "painted one.")
        raise Feedback(f"With {name} your mask keeps {keep} token rows, but nothing is painted above row {best + 1} "
                       f"of {grid}: keep those {best} rows (the smallest edit redraws only what it must).")

    return report("Exercise 1 (a mask the model can honour)", check)


# --- exercise 2: many requests at once ----------------------------------------------------------------

def _colour(index: int, seed: int) -> tuple[int, int, int]:
    """A colour that names (prompt index, seed), so a picture says which request it answers."""
    return (17 * index + 3) % 256, (29 * seed + 11) % 256, 200


def _b64_png(colour: tuple[int, int, int], side: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class _FakeImages:
    """Stands in for `client.images`: answers generate() after a delay, later prompts sooner, and records
    every call and the most calls in flight at once."""

    def __init__(self, prompts: list[str]):
        self.prompts, self.calls, self.in_flight, self.peak = prompts, [], 0, 0
        self.lock = threading.Lock()

    def generate(self, *, prompt, **fields):
        from openai.types import Image as ImageData, ImagesResponse
        with self.lock:
            self.calls.append({"prompt": prompt, **fields})
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            index = self.prompts.index(prompt) if prompt in self.prompts else len(self.prompts)
            time.sleep(0.04 + 0.025 * (len(self.prompts) - index))  # the first prompt finishes last
            seed = (fields.get("extra_body") or {}).get("seed", 0)
            side = int(str(fields.get("size", "32x32")).split("x")[0]) if str(fields.get("size", "")).count("x") == 1 \
                else 32
            n = fields.get("n", 1) if isinstance(fields.get("n", 1), int) else 1
            data = [ImageData(b64_json=_b64_png(_colour(index, seed if isinstance(seed, int) else 0), min(side, 64)))
                    for _ in range(max(1, min(n, 4)))]
            return ImagesResponse(created=0, data=data)
        finally:
            with self.lock:
                self.in_flight -= 1


class _FakeClient:
    def __init__(self, prompts: list[str]):
        self.images = _FakeImages(prompts)


def check_generate_concurrently(fn: Callable) -> bool:
    """Exercise 2: `fn(client, prompts, seed)` sends one request per prompt, all at once, and returns the
    pictures in the order of `prompts`."""
    runs = [(["a small red circle", "a large blue square", "a small green triangle", "a large yellow diamond",
              "a small purple cross", "a large cyan circle"], 3),
            (["a small orange square", "a large red diamond", "a small blue circle", "a large green cross"], 0),
            (["a small yellow triangle"], 11)]

    def check() -> None:
        for prompts, seed in runs:
            client = _FakeClient(list(prompts))
            out = call_learner(fn, f"Your function (with {len(prompts)} prompts)", client, list(prompts), seed,
                               hint=" Hint: concurrent.futures.ThreadPoolExecutor().map(one_request, prompts) keeps "
                                    "the order of prompts.")
            calls = client.images.calls
            if not calls:
                raise Feedback("Your function never called client.images.generate: send the requests through the "
                               "client it is given.")
            for prompt in prompts:
                count = sum(call["prompt"] == prompt for call in calls)
                if count != 1:
                    raise Feedback(f"The prompt {prompt!r} was requested {count} times: send exactly one request "
                                   "per prompt.")
            for call in calls:
                extra = call.get("extra_body") or {}
                if extra.get("seed") != seed:
                    raise Feedback(f"A request carried extra_body={call.get('extra_body')!r}: every request must ask "
                                   f"for the seed it is given, extra_body={{'seed': {seed}}}, so the pictures can "
                                   "be compared with one-at-a-time calls.")
                if call.get("n", 1) != 1:
                    raise Feedback(f"A request asked for n={call.get('n')!r}: ask for one picture per prompt (n=1).")
                if call.get("response_format") != "b64_json":
                    raise Feedback(f"A request asked for response_format={call.get('response_format')!r}: ask for "
                                   "'b64_json', so the pictures come in the answer and nothing more is fetched.")
                if call.get("size") != "32x32":
                    raise Feedback(f"A request asked for size={call.get('size')!r}: ask for '32x32', the model's "
                                   "own size (the smallest answer to send).")
            if not isinstance(out, (list, tuple)) or len(out) != len(prompts):
                raise Feedback(f"Return a list of {len(prompts)} pictures, one per prompt, got "
                               f"{len(out) if isinstance(out, (list, tuple)) else type(out).__name__}.")
            for k, picture in enumerate(out):
                if not isinstance(picture, Image.Image):
                    raise Feedback(f"Item {k} of your list is a {type(picture).__name__}: decode each answer into a "
                                   "PIL image, Image.open(io.BytesIO(base64.b64decode(item.b64_json))).")
                r, g, _ = picture.convert("RGB").getpixel((0, 0))
                index = [k2 for k2 in range(len(prompts)) if _colour(k2, seed)[:2] == (r, g)]
                if index != [k]:
                    which = f"the picture of prompt {index[0]}" if index else "not the picture of any prompt"
                    raise Feedback(f"Item {k} of your list is {which}: return the pictures in the order of "
                                   "`prompts`, not in the order the answers arrived (the later prompts came back "
                                   "first here).")
            needed = min(len(prompts), 4)
            if client.images.peak < needed:
                if client.images.peak == 1:
                    raise Feedback(f"Your {len(prompts)} requests went one at a time: each waited for the one before "
                                   "it, so the server never had two to batch. Send them all at once, e.g. one "
                                   "thread per request (concurrent.futures.ThreadPoolExecutor).")
                raise Feedback(f"At most {client.images.peak} of your {len(prompts)} requests were in flight at once; "
                               f"send them all together (at least {needed} at once) so the server can batch them.")

    return report("Exercise 2 (many requests at once)", check)
