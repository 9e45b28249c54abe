"""The images API (`python -m dalle_lessons serve`) on a `tiny` pipeline with random weights.

Every test talks HTTP to a real uvicorn server on 127.0.0.1 and a free port, mostly through the official
`openai` client, unchanged but for base_url and api_key. What is checked: images equal the pipeline's own
(same seed, batched or not), every field the server accepts, ignores or rejects, errors in OpenAI's
shape with the right status and param, the image store's bounds and names, the queue under load,
clients that leave, shutdown, the CLI, and the pre-1.0 client of the seed where it is installed.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import OpenAI
from PIL import Image

from dalle_lessons import server as server_module
from dalle_lessons.clip_eval import tokenizer_fingerprint
from dalle_lessons.image_store import ImageStore
from dalle_lessons.server import (FIELDS, BackgroundServer, ImagesService, check_bind, create_app, edit_mask,
                                  validation_to_api_error)
from test_evaluate_generation import tiny_pipeline
from test_rerank import tiny_clip

KEY = "test-key-123"
MODEL = "dalle-lessons-tiny"
PROMPT = "a small red circle above a blue square"
LEGACY_PYTHON = Path(os.environ.get("DALLE_LESSONS_LEGACY_PYTHON", "/tmp/legacy/bin/python"))


@pytest.fixture(scope="module")
def pipe():
    pipe = tiny_pipeline()
    return pipe.set_reranker(tiny_clip(), tokenizer_fingerprint(pipe.tokenizer))


@pytest.fixture(scope="module")
def served(pipe):
    service = ImagesService(pipe, MODEL, api_key=KEY)
    with BackgroundServer(create_app(service)) as running:
        yield running


@pytest.fixture
def client(served):
    return OpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=0)


def start(pipe, **options) -> BackgroundServer:
    """A server of its own (for tests that block, fill or stop it)."""
    return BackgroundServer(create_app(ImagesService(pipe, MODEL, **options))).start()


def pictures(response) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(item.b64_json))).convert("RGB")) for item in response.data]


def arrays(images) -> list[np.ndarray]:
    return [np.asarray(image) for image in images]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class Gate:
    """Holds every batch of a server's worker until `open()`: requests pile up in the queue meanwhile."""

    def __init__(self, running: BackgroundServer):
        self.batcher = running.app.state.service.batcher
        self.entered, self.released, self.batches = threading.Event(), threading.Event(), []
        original = self.batcher.run_batch

        def gated(jobs):
            self.batches.append(len(jobs))
            self.entered.set()
            self.released.wait(60)
            return original(jobs)
        self.batcher.run_batch = gated

    def open(self) -> None:
        self.released.set()

    def wait_for(self, condition, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.batcher.stats()):
            assert time.monotonic() < deadline, f"timed out; stats {self.batcher.stats()}"
            time.sleep(0.02)


# --- the official client, unchanged -----------------------------------------------------------------

def test_generate_b64_images_are_the_pipelines_own(client, pipe):
    response = client.images.generate(model=MODEL, prompt=PROMPT, n=3, size="256x256", response_format="b64_json",
                                      extra_body={"seed": 7})
    assert isinstance(response.created, int) and len(response.data) == 3
    assert all(item.url is None and item.revised_prompt is None for item in response.data)
    assert response.model_extra["seed"] == 7 and response.size == "256x256" and response.output_format == "png"
    assert same(pictures(response), arrays(pipe.generate(PROMPT, n=3, seed=7, size="256x256")))


def test_url_images_can_be_fetched_and_match_b64(client, served):
    by_url = client.images.generate(prompt=PROMPT, n=2, size="64x64", extra_body={"seed": 3})  # url: the default
    by_b64 = client.images.generate(prompt=PROMPT, n=2, size="64x64", response_format="b64_json", extra_body={"seed": 3})
    fetched = []
    for item in by_url.data:
        assert item.b64_json is None and re.fullmatch(re.escape(served.url) + r"/v1/files/images/[\w-]{32}\.png", item.url)
        answer = httpx.get(item.url)  # no key needed: the unguessable name is the capability
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        fetched.append(np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB")))
    assert same(fetched, pictures(by_b64))


def test_default_size_is_1024_and_sizes_are_upsampled_blocks(client, pipe):
    response = client.images.generate(prompt=PROMPT, response_format="b64_json", extra_body={"seed": 1})
    (big,) = pictures(response)
    assert response.size == "1024x1024" and big.shape == (1024, 1024, 3)
    native = arrays(pipe.generate(PROMPT, n=1, seed=1))[0]  # 16x16: each pixel became a 64x64 block
    assert np.array_equal(big[::64, ::64], native)
    auto = client.images.generate(prompt=PROMPT, size="auto", response_format="b64_json", extra_body={"seed": 1})
    assert same(pictures(auto), [big])


def test_sampling_extensions_seed_and_rerank_reach_the_pipeline(client, pipe):
    settings = {"temperature": 0.5, "top_k": 20, "top_p": None, "guidance_scale": 1.0}
    response = client.images.generate(prompt=PROMPT, n=2, size="16x16", response_format="b64_json",
                                      extra_body={"seed": 11, **settings})
    assert same(pictures(response), arrays(pipe.generate(PROMPT, n=2, seed=11, **settings)))
    ranked = client.images.generate(prompt=PROMPT, n=2, size="16x16", response_format="b64_json",
                                    extra_body={"seed": 5, "rerank": 3})
    assert same(pictures(ranked), arrays(pipe.generate(PROMPT, n=2, seed=5, rerank=3)))
    fresh = [client.images.generate(prompt=PROMPT, size="16x16", response_format="b64_json") for _ in range(2)]
    assert fresh[0].model_extra["seed"] != fresh[1].model_extra["seed"]  # no seed: a fresh one, returned
    again = client.images.generate(prompt=PROMPT, size="16x16", response_format="b64_json",
                                   extra_body={"seed": fresh[0].model_extra["seed"]})
    assert same(pictures(again), pictures(fresh[0]))


def test_output_formats_jpeg_and_webp(client):
    for output_format, pil_format in (("jpeg", "JPEG"), ("webp", "WEBP")):
        response = client.images.generate(prompt=PROMPT, size="64x64", response_format="b64_json",
                                          output_format=output_format, output_compression=80)
        image = Image.open(io.BytesIO(base64.b64decode(response.data[0].b64_json)))
        assert image.format == pil_format and image.size == (64, 64) and response.output_format == output_format
        url = client.images.generate(prompt=PROMPT, size="16x16", output_format=output_format).data[0].url
        assert url.endswith("." + output_format) and httpx.get(url).headers["content-type"] == f"image/{output_format}"


def test_a_long_prompt_is_cut_and_revised_prompt_says_what_was_read(client, pipe):
    long = " and ".join(["a small red circle above a blue square"] * 6)
    response = client.images.generate(prompt=long, size="16x16", response_format="b64_json", extra_body={"seed": 2})
    revised = response.data[0].revised_prompt
    assert revised and long.startswith(revised) and len(revised) < len(long)
    assert pipe.tokenizer.count_tokens(revised) <= pipe.tokenizer.text_seq_len


def test_models_are_listed_and_others_refused(client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).owned_by == "dalle-lessons"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("dall-e-3")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(model="dall-e-2", prompt=PROMPT)
    assert refused.value.param == "model" and MODEL in refused.value.message


# --- fields: accepted and ignored, or rejected with a 400 naming them ----------------------------

def test_ignored_fields_are_accepted_and_change_nothing(client):
    plain = client.images.generate(prompt=PROMPT, size="16x16", response_format="b64_json", extra_body={"seed": 4})
    decorated = client.images.generate(prompt=PROMPT, size="16x16", response_format="b64_json", quality="hd",
                                       style="natural", moderation="low", user="learner-1", safety_identifier="abc",
                                       background="opaque", stream=False, partial_images=0, complexity="high",
                                       output_compression=50, extra_body={"seed": 4})
    assert same(pictures(plain), pictures(decorated))


REJECTED = [  # (fields, param, code)
    ({"n": 0}, "n", "invalid_value"), ({"n": 11}, "n", "invalid_value"), ({"n": 2.0}, "n", "invalid_value"),
    ({"n": "3"}, "n", "invalid_value"), ({"n": True}, "n", "invalid_value"),
    ({"size": "1792x1024"}, "size", "invalid_value"), ({"size": "100x100"}, "size", "invalid_value"),
    ({"size": 256}, "size", "invalid_value"),
    ({"response_format": "png"}, "response_format", "invalid_value"),
    ({"model": "gpt-image-1"}, "model", "model_not_found"), ({"model": 3}, "model", "invalid_value"),
    ({"quality": "ultra"}, "quality", "invalid_value"), ({"style": "cubist"}, "style", "invalid_value"),
    ({"moderation": "none"}, "moderation", "invalid_value"), ({"complexity": "extreme"}, "complexity", "invalid_value"),
    ({"user": 5}, "user", "invalid_value"), ({"safety_identifier": ["x"]}, "safety_identifier", "invalid_value"),
    ({"background": "transparent"}, "background", "unsupported_value"), ({"background": "red"}, "background", "invalid_value"),
    ({"output_format": "gif"}, "output_format", "unsupported_value"),
    ({"output_format": "svg"}, "output_format", "unsupported_value"), ({"output_format": "bmp"}, "output_format", "invalid_value"),
    ({"output_compression": 101}, "output_compression", "invalid_value"),
    ({"stream": True}, "stream", "unsupported_value"), ({"partial_images": 2}, "partial_images", "unsupported_value"),
    ({"frame_count": 4}, "frame_count", "unsupported_value"), ({"frame_duration_ms": 100}, "frame_duration_ms", "unsupported_value"),
    ({"svg": {"model": "x"}}, "svg", "unsupported_value"),
    ({"input_fidelity": "high"}, "input_fidelity", "unknown_parameter"),  # an edits field
    ({"seed": -1}, "seed", "invalid_value"), ({"seed": 2**64}, "seed", "invalid_value"), ({"seed": "7"}, "seed", "invalid_value"),
    ({"temperature": -1}, "temperature", "invalid_value"), ({"temperature": 1e-45}, "temperature", "invalid_value"),
    ({"temperature": None}, "temperature", "invalid_value"), ({"top_k": 0}, "top_k", "invalid_value"),
    ({"top_k": 2.5}, "top_k", "invalid_value"), ({"top_p": 1.5}, "top_p", "invalid_value"),
    ({"top_p": 0}, "top_p", "invalid_value"), ({"guidance_scale": 1e38}, "guidance_scale", "invalid_value"),
    ({"guidance_scale": -1}, "guidance_scale", "invalid_value"),
    ({"rerank": 0}, "rerank", "invalid_value"), ({"rerank": 129}, "rerank", "invalid_value"),
    ({"n": 10, "rerank": 128}, "rerank", "invalid_value"), ({"rerank": 1.5}, "rerank", "invalid_value"),
    ({"prompt": ""}, "prompt", "invalid_value"), ({"prompt": "   "}, "prompt", "invalid_value"),
    ({"prompt": "a red\x00circle"}, "prompt", "invalid_value"), ({"prompt": ["a", "b"]}, "prompt", "invalid_value"),
    ({"prompt": "x" * 32_001}, "prompt", "invalid_value"), ({"prompt": None}, "prompt", "missing_required_parameter"),
    ({"response": "url"}, "response", "unknown_parameter"),
]


@pytest.mark.parametrize("fields, param, code", REJECTED, ids=[f"{p}={str(f.get(p, f))[:20]}" for f, p, _ in REJECTED])
def test_every_rejected_field_is_a_400_naming_it(client, fields, param, code):
    body = {"prompt": PROMPT, **fields}
    prompt = body.pop("prompt")
    with pytest.raises(openai.BadRequestError) as error:
        client.images.generate(prompt=prompt, extra_body=body)
    assert error.value.param == param and error.value.code == code and error.value.type == "invalid_request_error"
    message = error.value.body["message"]
    assert "\n" not in message and "Traceback" not in message and len(message) < 700


def test_raw_bodies_that_are_not_requests_are_400s(served):
    url, headers = served.url + "/v1/images/generations", {"authorization": f"Bearer {KEY}"}
    cases = [b"", b"not json", b"[1, 2]", b'"a prompt"', b"[" * 100_000 + b"]" * 100_000,
             json.dumps({"prompt": PROMPT, "temperature": float("nan")}).encode(),
             json.dumps({"prompt": PROMPT, "top_p": float("inf")}).encode(), b'{"prompt": "\xff\xfe"}',
             json.dumps({"prompt": PROMPT, "pad": "x" * 300_000}).encode()]
    for body in cases:
        answer = httpx.post(url, content=body, headers={**headers, "content-type": "application/json"})
        error = answer.json()["error"]
        assert answer.status_code == 400, (body[:40], answer.text[:200])
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    form = httpx.post(url, data={"prompt": PROMPT}, headers=headers)  # a form, not JSON
    assert form.status_code == 400 and "JSON" in form.json()["error"]["message"]


def test_unknown_paths_and_methods_answer_in_openais_shape(served):
    for method, path, status in (("GET", "/v1/nothing", 404), ("GET", "/", 404), ("DELETE", "/v1/models", 405),
                                 ("GET", "/v1/images/generations", 405)):
        answer = httpx.request(method, served.url + path, headers={"authorization": f"Bearer {KEY}"})
        assert answer.status_code == status and set(answer.json()["error"]) == {"message", "type", "param", "code"}


def test_fastapi_validation_errors_are_reshaped_to_400_naming_the_field():
    error = validation_to_api_error([{"loc": ("body", "n"), "msg": "Input should be a valid integer", "input": "x"}])
    assert error.status == 400 and error.param == "n" and error.body()["error"]["message"].startswith("n: Input")


def test_every_field_is_in_the_documented_table():
    doc = server_module.__doc__
    missing = [name for name in FIELDS if not re.search(rf"\b{name}\b", doc)]
    assert not missing, f"fields missing from the module docstring's table: {missing}"


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 12), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from(["url", "b64_json", "png", "jpeg", "webp", "auto", "16x16", "32x32", "hd", "vivid", "opaque",
                     "transparent", MODEL, "low"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
GENERATION_FIELDS = sorted(name for name, (where, _) in FIELDS.items() if "G" in where)
EDIT_FIELDS = sorted(name for name, (where, _) in FIELDS.items() if "E" in where and name not in ("image", "mask"))


def assert_answer_or_400(answer: httpx.Response, sent: dict) -> None:
    assert answer.status_code in (200, 400), answer.text[:300]
    if answer.status_code == 200:
        assert answer.json()["data"]
        return
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and "Traceback" not in error["message"]
    assert error["param"] is None or error["param"] in sent or error["param"] in ("prompt", "mask"), (error, sorted(sent))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.dictionaries(st.sampled_from(GENERATION_FIELDS + ["extra", "Prompt"]), VALUES, max_size=5),
       prompt=st.one_of(st.just(PROMPT), st.text(max_size=40), VALUES))
def test_any_json_body_gets_images_or_a_400_naming_a_field(served, fields, prompt):
    body = {"prompt": prompt, "size": "16x16", **fields}
    answer = httpx.post(served.url + "/v1/images/generations", headers={"authorization": f"Bearer {KEY}"},
                        content=json.dumps(body).encode(), timeout=60)  # NaN and Infinity included
    assert_answer_or_400(answer, body)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.dictionaries(st.sampled_from(EDIT_FIELDS + ["extra"]), st.one_of(
           st.text(max_size=10), st.sampled_from(["1", "2", "0", "16x16", "b64_json", "null", "true", "false", "nan"])),
           max_size=4),
       image=st.sampled_from(["picture", "garbage", "opaque"]), keep=st.sampled_from([None, 0, 2, 4, "bad"]))
def test_any_edit_form_gets_images_or_a_400_naming_a_field(served, picture, fields, image, keep):
    data = {"prompt": PROMPT, "size": "16x16", **fields}
    files = {"image": ("in.png", {"picture": png(picture), "garbage": b"\x89PNG junk",
                                  "opaque": png(Image.new("RGB", (32, 32)))}[image], "image/png")}
    if keep is not None:
        mask = mask_with(slice(4, 8)) if keep == "bad" else edit_mask(16, 4, keep)
        files["mask"] = ("mask.png", png(mask if image != "opaque" else mask.resize((32, 32))), "image/png")
    answer = httpx.post(served.url + "/v1/images/edits", headers={"authorization": f"Bearer {KEY}"}, data=data,
                        files=files, timeout=60)
    assert_answer_or_400(answer, {**data, **files})


# --- keys ------------------------------------------------------------------------------------------

def test_a_missing_or_wrong_key_is_a_401(served):
    for key in ("wrong", ""):
        with pytest.raises(openai.AuthenticationError) as error:
            OpenAI(base_url=served.url + "/v1", api_key=key or "x", max_retries=0,
                   default_headers={} if key else {"authorization": ""}).images.generate(prompt=PROMPT)
        assert error.value.code == "invalid_api_key" and KEY not in error.value.message
    bare = httpx.post(served.url + "/v1/images/generations", json={"prompt": PROMPT})
    assert bare.status_code == 401 and "no API key" in bare.json()["error"]["message"]
    assert httpx.get(served.url + "/v1/models").status_code == 401
    assert httpx.get(served.url + "/health").status_code == 200  # no key needed to see it is up


def test_without_a_key_the_server_takes_any_and_without_clip_rerank_is_refused():
    with BackgroundServer(create_app(ImagesService(tiny_pipeline(), MODEL))) as running:  # a pipeline without CLIP
        client = OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
        assert len(client.images.generate(prompt=PROMPT, size="16x16").data) == 1
        with pytest.raises(openai.BadRequestError) as error:
            client.images.generate(prompt=PROMPT, size="16x16", extra_body={"rerank": 4})
        assert error.value.param == "rerank" and "set_reranker" in error.value.message


# --- the image store ------------------------------------------------------------------------------

def test_store_is_bounded_in_count_bytes_and_age():
    now = [0.0]
    store = ImageStore(max_images=3, max_bytes=100, max_age=60, clock=lambda: now[0])
    names = [store.put(bytes(10)) for _ in range(4)]
    assert len(store) == 3 and store.get(names[0]) is None and store.get(names[3]).data == bytes(10)
    big = store.put(bytes(90))  # 30 + 90 bytes > 100: the oldest go until it fits
    assert store.nbytes <= 100 and store.get(big) is not None and store.get(names[1]) is None
    now[0] = 61.0
    assert store.get(big) is None and len(store) == 0  # older than max_age: gone
    with pytest.raises(ValueError, match="max_bytes"):
        store.put(bytes(101))
    with pytest.raises(ValueError, match="max_images"):
        ImageStore(max_images=0)


def test_store_names_are_unguessable_and_nothing_else_is_looked_up():
    store = ImageStore()
    names = {store.put(b"x") for _ in range(200)}
    assert len(names) == 200 and all(re.fullmatch(r"[\w-]{32}\.png", n) for n in names)
    for name in ("../../pyproject.toml", "..%2F..%2Fpyproject.toml", "/etc/passwd", "", "x.png", None,
                 next(iter(names)) + "/..", next(iter(names))[:-4] + ".txt"):
        assert store.get(name) is None


def test_evicted_urls_are_404(pipe):
    running = BackgroundServer(create_app(ImagesService(pipe, MODEL, store=ImageStore(max_images=2)))).start()
    try:
        client = OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
        urls = [client.images.generate(prompt=PROMPT, size="16x16").data[0].url for _ in range(3)]
        assert [httpx.get(u).status_code for u in urls] == [404, 200, 200]
        gone = httpx.get(urls[0]).json()["error"]
        assert gone["code"] == "not_found" and "expired" in gone["message"]
    finally:
        running.stop()


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (no client-side normalisation of '..' or %2F)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


@pytest.mark.parametrize("path", [
    "/v1/files/images/../../../pyproject.toml", "/v1/files/images/..%2F..%2F..%2Fpyproject.toml",
    "/v1/files/images/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/v1/files/images/....//....//etc/passwd",
    "/v1/files/images/%2Fetc%2Fpasswd", "/v1/files/images/..\\..\\pyproject.toml",
    "/v1/files/images/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.png", "/v1/files/images/x.png%00.txt",
    "/v1/files/../../pyproject.toml", "/v1/files/images/", "/v1/files/images/.",
])
def test_no_path_reaches_a_file(served, path):
    status, data = raw_get(served.url, path)
    assert status in (400, 404), data[:200]
    assert b"[project]" not in data and b"root:" not in data


# --- edits -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def picture(pipe) -> Image.Image:
    """A 256x256 PNG the server drew (each native pixel a 16x16 block), and its native original."""
    return pipe.generate("a big green triangle", n=1, seed=9)[0]


def test_edit_keeps_the_top_rows_as_complete_does(client, pipe, picture):
    big = picture.resize((256, 256), Image.Resampling.NEAREST)
    mask = edit_mask(256, pipe.grid, keep_rows=2)  # keep the top half, redraw the bottom half
    response = client.images.edit(model=MODEL, image=("in.png", png(big), "image/png"),
                                  mask=("mask.png", png(mask), "image/png"), prompt=PROMPT, n=2, size="64x64",
                                  response_format="b64_json", extra_body={"seed": 6})
    expected = pipe.complete(PROMPT, picture, rows=2, n=2, seed=6, size="64x64")
    assert same(pictures(response), arrays(expected))


def test_edit_reads_the_mask_from_the_images_own_transparency(client, pipe, picture):
    rgba = picture.convert("RGBA")
    alpha = np.asarray(edit_mask(16, pipe.grid, keep_rows=3))[..., 3]
    rgba.putalpha(Image.fromarray(alpha))
    response = client.images.edit(image=("in.png", png(rgba), "image/png"), prompt=PROMPT, n=1, size="16x16",
                                  response_format="b64_json", extra_body={"seed": 1})
    assert same(pictures(response), arrays(pipe.complete(PROMPT, picture, rows=3, n=1, seed=1)))
    whole = client.images.edit(image=("in.png", png(picture), "image/png"), mask=("m.png", png(edit_mask(16, 4, 4)), "image/png"),
                               prompt=PROMPT, size="16x16", response_format="b64_json")  # nothing to redraw
    assert same(pictures(whole), arrays(pipe.complete(PROMPT, picture, rows=4, n=1, seed=0)))


def mask_with(transparent_rows: slice, side: int = 16, columns: slice = slice(None)) -> Image.Image:
    mask = np.full((side, side, 4), 255, np.uint8)
    mask[transparent_rows, columns, 3] = 0
    return Image.fromarray(mask, "RGBA")


@pytest.mark.parametrize("image, mask, param, words", [
    ("picture", mask_with(slice(8, 16), columns=slice(0, 8)), "mask", "partly transparent"),  # bottom-left only
    ("picture", mask_with(slice(6, 16)), "mask", "partly transparent"),  # not on a token row's edge (4 px)
    ("picture", mask_with(slice(0, 8)), "mask", "one band at the bottom"),  # redraw the top, keep the bottom
    ("picture", mask_with(slice(4, 8)), "mask", "one band at the bottom"),  # a hole in the middle
    ("picture", edit_mask(32, 4, 2), "mask", "the image's size"),
    ("picture", Image.new("RGB", (16, 16)), "mask", "no alpha channel"),
    ("picture", None, "mask", "no transparent pixels"),
    (Image.new("RGB", (32, 16)), edit_mask(32, 4, 2), "image", "square"),
    (Image.new("RGB", (2, 2)), None, "image", "at least"),
    (b"not an image", None, "image", "not a readable"),
    (b"", None, "image", "empty"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), None, "image", "not a readable"),
])
def test_edits_the_model_cannot_do_are_400s_saying_why(client, picture, image, mask, param, words):
    image = picture if image == "picture" else image
    files = {"image": ("in.png", image if isinstance(image, bytes) else png(image), "image/png")}
    if mask is not None:
        files["mask"] = ("mask.png", png(mask), "image/png")
    with pytest.raises(openai.BadRequestError) as error:
        client.images.edit(prompt=PROMPT, **files)
    assert error.value.param == param and words in error.value.message, error.value.message


def test_edit_field_errors_name_the_field(client, served, picture):
    image = ("in.png", png(picture), "image/png")
    mask = ("m.png", png(edit_mask(16, 4, 2)), "image/png")
    for fields, param in (({"n": 0}, "n"), ({"size": "1x1"}, "size"), ({"extra_body": {"rerank": 2}}, "rerank"),
                          ({"extra_body": {"temperature": "hot"}}, "temperature"), ({"background": "transparent"}, "background"),
                          ({"extra_body": {"style": "vivid"}}, "style"), ({"extra_body": {"seed": "x"}}, "seed"),
                          ({"prompt": ""}, "prompt")):
        with pytest.raises(openai.BadRequestError) as error:
            client.images.edit(**{"image": image, "mask": mask, "prompt": PROMPT, **fields})
        assert error.value.param == param, (fields, error.value.message)
    with pytest.raises(openai.BadRequestError) as error:
        client.images.edit(image=[image, image], prompt=PROMPT)
    assert error.value.param == "image" and "more than once" in error.value.message
    big = httpx.post(served.url + "/v1/images/edits", headers={"authorization": f"Bearer {KEY}"},
                     files={"image": ("big.png", bytes(5 * 2**20), "image/png")}, data={"prompt": PROMPT})
    assert big.status_code == 400 and big.json()["error"]["param"] == "image"
    as_json = httpx.post(served.url + "/v1/images/edits", headers={"authorization": f"Bearer {KEY}"},
                         json={"prompt": PROMPT})
    assert as_json.status_code == 400 and "multipart" in as_json.json()["error"]["message"]


def test_edit_mask_helper_keeps_whole_token_rows():
    alpha = np.asarray(edit_mask(1024, 8, keep_rows=5))[..., 3]
    assert (alpha[:640] == 255).all() and (alpha[640:] == 0).all()
    with pytest.raises(ValueError, match="keep_rows"):
        edit_mask(16, 4, keep_rows=5)


# --- the queue: batching, 429, clients that leave, shutdown ---------------------------------------

def test_concurrent_requests_are_batched_and_give_the_unbatched_images(pipe):
    running = start(pipe)
    gate = Gate(running)
    client = OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
    asks = [("a small red circle", 1, 101), (PROMPT, 3, 5), ("a big blue square", 2, 0), (PROMPT, 1, 5),
            ("a green triangle to the left of a red circle", 4, 2**40)]
    try:
        with ThreadPoolExecutor(len(asks) + 1) as pool:
            first = pool.submit(client.images.generate, prompt=PROMPT, size="16x16")  # holds the worker
            gate.entered.wait(20)
            replies = [pool.submit(client.images.generate, prompt=p, n=n, size="32x32", response_format="b64_json",
                                   extra_body={"seed": s}) for p, n, s in asks]
            gate.wait_for(lambda stats: stats["queued"] == len(asks))
            gate.open()
            assert len(first.result(60).data) == 1
            for (prompt, n, seed), reply in zip(asks, replies):
                assert same(pictures(reply.result(60)), arrays(pipe.generate(prompt, n=n, seed=seed, size="32x32")))
        assert gate.batches == [1, len(asks)]  # the five waiting requests: one sampling call
    finally:
        gate.open()
        running.stop()


def test_requests_with_other_settings_wait_for_their_own_batch(pipe):
    running = start(pipe)
    gate = Gate(running)
    client = OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
    try:
        with ThreadPoolExecutor(5) as pool:
            pool.submit(client.images.generate, prompt=PROMPT, size="16x16")
            gate.entered.wait(20)
            hot = [pool.submit(client.images.generate, prompt=PROMPT, size="16x16", response_format="b64_json",
                               extra_body={"seed": s, "temperature": 1.3}) for s in (1, 2)]
            cold = [pool.submit(client.images.generate, prompt=PROMPT, size="16x16", response_format="b64_json",
                                extra_body={"seed": s, "temperature": 0}) for s in (1, 2)]
            gate.wait_for(lambda stats: stats["queued"] == 4)
            gate.open()
            for reply, seed in zip(hot, (1, 2)):
                assert same(pictures(reply.result(60)), arrays(pipe.generate(PROMPT, seed=seed, temperature=1.3)))
            for reply, seed in zip(cold, (1, 2)):
                assert same(pictures(reply.result(60)), arrays(pipe.generate(PROMPT, seed=seed, temperature=0)))
        assert sorted(gate.batches) == [1, 2, 2]
    finally:
        gate.open()
        running.stop()


def test_a_full_queue_is_a_429_with_retry_after(pipe):
    running = start(pipe, max_queue=1)
    gate = Gate(running)
    client = OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
    try:
        with ThreadPoolExecutor(3) as pool:
            held = pool.submit(client.images.generate, prompt=PROMPT, size="16x16")
            gate.entered.wait(20)
            waiting = pool.submit(client.images.generate, prompt=PROMPT, size="16x16")
            gate.wait_for(lambda stats: stats["queued"] == 1)
            with pytest.raises(openai.RateLimitError) as error:
                client.images.generate(prompt=PROMPT, size="16x16")
            assert int(error.value.response.headers["retry-after"]) >= 1
            assert error.value.code == "rate_limit_exceeded" and "queue is full" in error.value.message
            gate.open()
            assert held.result(60).data and waiting.result(60).data
        assert client.images.generate(prompt=PROMPT, size="16x16").data  # room again
        assert running.app.state.service.batcher.stats()["rejected"] == 1
    finally:
        gate.open()
        running.stop()


def test_the_default_client_retries_a_429_after_retry_after(pipe):
    running = start(pipe, max_queue=1)
    gate = Gate(running)
    patient = OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=3)
    try:
        with ThreadPoolExecutor(3) as pool:
            pool.submit(patient.images.generate, prompt=PROMPT, size="16x16")
            gate.entered.wait(20)
            pool.submit(patient.images.generate, prompt=PROMPT, size="16x16")
            gate.wait_for(lambda stats: stats["queued"] == 1)
            third = pool.submit(patient.images.generate, prompt=PROMPT, size="16x16")
            gate.wait_for(lambda stats: stats["rejected"] >= 1)
            gate.open()
            assert third.result(60).data  # answered after the client waited retry-after and tried again
    finally:
        gate.open()
        running.stop()


def test_clients_that_leave_do_not_wedge_the_queue(pipe):
    running = start(pipe)
    gate = Gate(running)
    url = running.url + "/v1/images/generations"
    client = OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
    stats = running.app.state.service.batcher.stats
    try:
        with ThreadPoolExecutor(3) as pool:
            held = pool.submit(client.images.generate, prompt=PROMPT, size="16x16")  # running, held by the gate
            gate.entered.wait(20)
            with pytest.raises(httpx.ReadTimeout):  # waits in the queue, then its client gives up
                httpx.post(url, json={"prompt": PROMPT, "temperature": 0.5}, timeout=0.5)
            gate.wait_for(lambda s: s["abandoned"] == 1 and s["queued"] == 0)
            gate.open()
            assert held.result(60).data
        assert client.images.generate(prompt=PROMPT, size="16x16").data
        assert gate.batches == [1, 1]  # the abandoned request never ran

        gate.released.clear()
        before = stats()["batches"]
        with pytest.raises(httpx.ReadTimeout):  # its batch is running when the client gives up
            httpx.post(url, json={"prompt": PROMPT}, timeout=0.5)
        gate.wait_for(lambda s: s["abandoned"] == 2)
        gate.open()
        gate.wait_for(lambda s: s["batches"] == before + 1 and s["running"] == 0)
        assert client.images.generate(prompt=PROMPT, size="16x16").data
        assert stats()["queued"] == 0 and stats()["failed"] == 0
    finally:
        gate.open()
        running.stop()


def test_shutdown_answers_the_running_batch_and_rejects_the_waiting(pipe):
    running = start(pipe)
    gate = Gate(running)
    client = OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
    with ThreadPoolExecutor(4) as pool:
        held = pool.submit(client.images.generate, prompt=PROMPT, size="16x16", response_format="b64_json",
                           extra_body={"seed": 3})
        gate.entered.wait(20)
        waiting = [pool.submit(client.images.generate, prompt=PROMPT, size="16x16", extra_body={"temperature": t})
                   for t in (0.5, 0.6)]
        gate.wait_for(lambda stats: stats["queued"] == 2)
        stopping = pool.submit(running.stop)
        for reply in waiting:  # answered at once, while the running batch is still held
            with pytest.raises(openai.InternalServerError) as error:
                reply.result(20)
            assert error.value.status_code == 503 and error.value.code == "shutting_down"
        gate.open()
        assert same(pictures(held.result(60)), arrays(pipe.generate(PROMPT, seed=3)))
        stopping.result(60)
    assert not running.thread.is_alive()
    assert running.app.state.service.batcher.join(5)  # the worker thread has ended too
    with pytest.raises(openai.APIConnectionError):
        client.images.generate(prompt=PROMPT)


# --- the command line ------------------------------------------------------------------------------

@pytest.mark.parametrize("host, key, words", [
    ("0.0.0.0", None, "would answer other machines"), ("192.168.1.5", None, "--api-key"),
    ("example.org", None, "--api-key"), ("127.0.0.1", " ", "empty"),
])
def test_serve_refuses_other_interfaces_without_a_key(host, key, words):
    with pytest.raises(ValueError, match=words):
        check_bind(host, 8000, key)
    check_bind("0.0.0.0", 8000, "a-key")
    check_bind("::1", 0, None)
    check_bind("localhost", 8000, None)


def test_cli_serve_errors_are_one_line(capsys, monkeypatch):
    from dalle_lessons.__main__ import main
    monkeypatch.delenv(server_module.API_KEY_ENV, raising=False)
    for argv, words in ((["serve", "--host", "0.0.0.0"], "--api-key"), (["serve", "--port", "70000"], "--port 70000"),
                        (["serve", "--max-queue", "0"], "--max-queue 0"), (["serve", "--api-key", ""], "empty")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and err.count("\n") == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 2
        assert "another server uses this port" in capsys.readouterr().err


def test_missing_api_packages_name_the_install_command(monkeypatch):
    import importlib.util
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real_find_spec(name, *a))
    with pytest.raises(RuntimeError, match=r'fastapi: pip install -e "\.\[api\]"'):
        server_module.require_api_packages()


def test_cli_serve_starts_answers_and_stops_on_ctrl_c(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "tiny")
    process = subprocess.Popen([sys.executable, "-m", "dalle_lessons", "serve", "--port", "0", "--checkpoint", str(folder),
                                "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("serving dalle-lessons-tiny on http://127.0.0.1:"), line
        base = re.search(r"(http://\S+)/v1", line)[1]
        reply = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0).images.generate(
            prompt=PROMPT, size="16x16", response_format="b64_json", extra_body={"seed": 2})
        assert same(pictures(reply), arrays(pipe.generate(PROMPT, seed=2)))
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0 and "server stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- the seed's pre-1.0 client (openai 0.28) --------------------------------------------------------

LEGACY_SCRIPT = """
import json, sys
import openai                                # openai 0.28: the seed's client, unchanged
openai.api_key = sys.argv[2]
openai.api_base = sys.argv[1] + "/v1"
out = {"version": openai.version.VERSION}
response = openai.Image.create(prompt="a small red circle", n=3, size="1024x1024")
out["urls"] = [item["url"] for item in response["data"]]
response = openai.Image.create(prompt="a small red circle", n=1, size="32x32", response_format="b64_json", seed=4)
out["b64"] = response["data"][0]["b64_json"]
edit = openai.Image.create_edit(image=open(sys.argv[3], "rb"), mask=open(sys.argv[4], "rb"), prompt="a small red circle",
                                n=1, size="16x16", response_format="b64_json", seed=4)
out["edit"] = edit["data"][0]["b64_json"]
try:
    openai.Image.create(prompt="a small red circle", n=11)
except openai.error.InvalidRequestError as error:
    out["error"] = [error.http_status, error.param if hasattr(error, "param") else None]
print(json.dumps(out))
"""


def legacy_client_missing() -> str | None:
    if not LEGACY_PYTHON.is_file():
        return (f"the pre-1.0 client needs its own environment: python3 -m venv /tmp/legacy && /tmp/legacy/bin/pip "
                f"install 'openai==0.28.1' (or set DALLE_LESSONS_LEGACY_PYTHON); {LEGACY_PYTHON} is missing")
    probe = subprocess.run([str(LEGACY_PYTHON), "-c", "import openai; print(openai.version.VERSION)"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.startswith("0."):
        return f"{LEGACY_PYTHON} has no pre-1.0 openai package (pip install 'openai==0.28.1' there)"
    return None


@pytest.mark.skipif(legacy_client_missing() is not None, reason=str(legacy_client_missing()))
def test_the_seeds_legacy_image_create_call_works_unchanged(served, pipe, picture, tmp_path):
    script, image, mask = tmp_path / "legacy.py", tmp_path / "in.png", tmp_path / "mask.png"
    script.write_text(LEGACY_SCRIPT)
    image.write_bytes(png(picture))
    mask.write_bytes(png(edit_mask(16, pipe.grid, 2)))
    run = subprocess.run([str(LEGACY_PYTHON), str(script), served.url, KEY, str(image), str(mask)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["version"].startswith("0.28") and len(out["urls"]) == 3
    assert all(Image.open(io.BytesIO(httpx.get(u).content)).size == (1024, 1024) for u in out["urls"])
    decode = lambda b64: np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))
    assert same([decode(out["b64"])], arrays(pipe.generate("a small red circle", seed=4, size="32x32")))
    assert same([decode(out["edit"])], arrays(pipe.complete("a small red circle", picture, rows=2, seed=4)))
    assert out["error"] == [400, "n"]
