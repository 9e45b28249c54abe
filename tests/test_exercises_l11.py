"""Lesson 11's self-checks: right answers pass, wrong or unfinished ones fail with a useful message, and
neither the library's functions nor the ones the lesson shows pass them."""
import asyncio
import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from dalle_lessons.exercises.l11_api import check_generate_concurrently, check_redraw_mask
from dalle_lessons.server import edit_mask
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: a mask the model can honour ----------------------------------------------------------

def redraw_mask(painted, grid):
    alpha = np.asarray(painted.convert("RGBA"))[..., 3]
    side = alpha.shape[0]
    token_row = np.arange(side) * grid // side
    touched = token_row[(alpha == 0).any(axis=1)]
    keep = touched.min() if touched.size else grid
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[token_row < keep, :, 3] = 255
    return Image.fromarray(rgba, "RGBA")


def redraw_mask_loops(painted, grid):
    """Row by row with PIL, an LA image back."""
    side = painted.width
    alpha = painted.getchannel("A")
    keep = grid
    for y in range(side):
        if alpha.crop((0, y, side, y + 1)).getextrema()[0] == 0:
            keep = y * grid // side
            break
    out = Image.new("LA", (side, side), (0, 0))
    kept = sum(1 for y in range(side) if y * grid // side < keep)
    out.paste((0, 255), (0, 0, side, kept))
    return out


def redraw_mask_via_edit_mask(painted, grid):
    """The library's edit_mask as a building block, given the right row count: a fair use."""
    alpha = np.asarray(painted)[..., 3]
    rows = np.flatnonzero((alpha == 0).any(axis=1))
    keep = rows[0] * grid // painted.width if rows.size else grid
    return edit_mask(painted.width, grid, int(keep))


@pytest.mark.parametrize("right", [redraw_mask, redraw_mask_loops, redraw_mask_via_edit_mask])
def test_redraw_mask_right_answers(capsys, right):
    assert_passes(check_redraw_mask, right, capsys)


def test_redraw_mask_not_attempted(capsys):
    assert_fails(check_redraw_mask, not_attempted, capsys, "not attempted")


@pytest.mark.parametrize("shortcut, phrase", [
    (edit_mask, "raised"),  # the library's function: a row count, not a painted mask
    # the lesson's editor: the top half
    (lambda painted, grid: edit_mask(painted.width, grid, grid // 2), "always keep the top half"),
    (lambda painted, grid: painted, "as it is"),  # send what the user painted
])
def test_redraw_mask_rejects_the_library_and_the_lesson(capsys, shortcut, phrase):
    assert_fails(check_redraw_mask, shortcut, capsys, phrase)


def inverted(painted, grid):
    return Image.fromarray(255 - np.asarray(redraw_mask(painted, grid)), "RGBA")


def not_opaque_is_painted(painted, grid):
    alpha = np.asarray(painted)[..., 3]
    side = alpha.shape[0]
    token_row = np.arange(side) * grid // side
    touched = token_row[(alpha < 255).any(axis=1)]
    keep = touched.min() if touched.size else grid
    return edit_mask(side, grid, int(keep))


def pixel_height(painted, grid):
    alpha = np.asarray(painted)[..., 3]
    side, height = alpha.shape[0], alpha.shape[0] // grid
    rows = np.flatnonzero((alpha == 0).any(axis=1))
    keep_px = (rows[0] // height) * height if rows.size else side
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[:keep_px, :, 3] = 255
    return Image.fromarray(rgba, "RGBA")


def keeps_first_painted_row(painted, grid):
    """Rounds up: keeps every token row that starts above the first painted pixel row."""
    alpha = np.asarray(painted)[..., 3]
    side = alpha.shape[0]
    rows = np.flatnonzero((alpha == 0).any(axis=1))
    if not rows.size:
        return edit_mask(side, grid, grid)
    token_row = np.arange(side) * grid // side
    starts = [int(np.flatnonzero(token_row == j)[0]) for j in range(grid)]
    return edit_mask(side, grid, int(sum(start < rows[0] for start in starts)))


@pytest.mark.parametrize("wrong, phrase", [
    (inverted, "inside out"),
    (not_opaque_is_painted, "alpha exactly 0"),
    (pixel_height, "y * grid // side"),
    (keeps_first_painted_row, "holds the first painted pixel"),
    (lambda painted, grid: np.asarray(redraw_mask(painted, grid)), "Return a PIL image"),
    (lambda painted, grid: redraw_mask(painted, grid).convert("RGB"), "no alpha channel"),
    (lambda painted, grid: redraw_mask(painted, grid).resize((32, 32)), "the image's size"),
])
def test_redraw_mask_names_the_mistake(capsys, wrong, phrase):
    assert_fails(check_redraw_mask, wrong, capsys, phrase)


def test_redraw_mask_refused_by_the_server_quotes_the_server(capsys):
    def partial_row(painted, grid):  # right everywhere but one case, where half a token row is transparent
        out = np.asarray(redraw_mask(painted, grid)).copy()
        if painted.width == 100:
            out[5:8, :, 3] = 0  # inside token row 1 of 8 (pixel rows 0 to 12)
        return Image.fromarray(out, "RGBA")
    assert_fails(check_redraw_mask, partial_row, capsys, "the server would refuse your mask", "partly transparent")


def test_redraw_mask_too_much_and_too_little(capsys):
    def one_row_too_many(painted, grid):
        out = np.asarray(redraw_mask(painted, grid)).copy()
        if painted.width == 256:
            out[:, :, 3] = 0  # redraws everything
        return Image.fromarray(out, "RGBA")
    assert_fails(check_redraw_mask, one_row_too_many, capsys, "nothing is painted above row 3")

    def keeps_everything(painted, grid):
        return edit_mask(painted.width, grid, grid)
    assert_fails(check_redraw_mask, keeps_everything, capsys, "has painted pixels")


def test_redraw_mask_must_not_change_its_input(capsys):
    def scribbles(painted, grid):
        out = redraw_mask(painted, grid)
        painted.putpixel((0, 0), (0, 0, 0, 0))
        return out
    assert_fails(check_redraw_mask, scribbles, capsys, "in place")


# --- exercise 2: many requests at once ---------------------------------------------------------------

def picture(item) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item.b64_json)))


def one(client, prompt, seed):
    response = client.images.generate(prompt=prompt, n=1, size="32x32", response_format="b64_json",
                                      extra_body={"seed": seed})
    return picture(response.data[0])


def with_threads(client, prompts, seed):
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        return list(pool.map(lambda prompt: one(client, prompt, seed), prompts))


def with_asyncio_threads(client, prompts, seed):
    """asyncio.to_thread in a fresh loop (run from a worker thread so it also works inside Jupyter's loop)."""
    async def everything():
        return await asyncio.gather(*(asyncio.to_thread(one, client, prompt, seed) for prompt in prompts))
    with ThreadPoolExecutor(1) as runner:
        return runner.submit(asyncio.run, everything()).result()


def with_futures_in_a_dict(client, prompts, seed):
    with ThreadPoolExecutor() as pool:
        futures = {prompt: pool.submit(one, client, prompt, seed) for prompt in prompts}
        return [futures[prompt].result() for prompt in prompts]


@pytest.mark.parametrize("right", [with_threads, with_asyncio_threads, with_futures_in_a_dict])
def test_generate_concurrently_right_answers(capsys, right):
    assert_passes(check_generate_concurrently, right, capsys)


def test_generate_concurrently_not_attempted(capsys):
    assert_fails(check_generate_concurrently, not_attempted, capsys, "not attempted")


def one_at_a_time(client, prompts, seed):
    """The lesson's sprite loop: a request, its answer, the next request."""
    return [one(client, prompt, seed) for prompt in prompts]


def two_at_a_time(client, prompts, seed):
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda prompt: one(client, prompt, seed), prompts))


def in_finishing_order(client, prompts, seed):
    from concurrent.futures import as_completed
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        return [f.result() for f in as_completed([pool.submit(one, client, p, seed) for p in prompts])]


def without_seed(client, prompts, seed):
    def request(prompt):
        return picture(client.images.generate(prompt=prompt, n=1, size="32x32", response_format="b64_json").data[0])
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        return list(pool.map(request, prompts))


def as_responses(client, prompts, seed):
    def request(prompt):
        return client.images.generate(prompt=prompt, n=1, size="32x32", response_format="b64_json",
                                      extra_body={"seed": seed})
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        return list(pool.map(request, prompts))


def with_urls(client, prompts, seed):
    def request(prompt):
        return client.images.generate(prompt=prompt, n=1, size="32x32", extra_body={"seed": seed})
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        return list(pool.map(request, prompts))


def twice_each(client, prompts, seed):
    one_at_a_time(client, prompts[:1], seed)
    return with_threads(client, prompts, seed)


@pytest.mark.parametrize("wrong, phrase", [
    (one_at_a_time, "one at a time"),  # the lesson's loop
    (two_at_a_time, "At most 2"),
    (in_finishing_order, "in the order of `prompts`"),
    (without_seed, "extra_body={'seed': 3}"),
    (as_responses, "decode each answer"),
    (with_urls, "'b64_json'"),
    (twice_each, "requested 2 times"),
    (lambda client, prompts, seed: [], "never called"),
])
def test_generate_concurrently_names_the_mistake(capsys, wrong, phrase):
    assert_fails(check_generate_concurrently, wrong, capsys, phrase)
