"""An OpenAI-compatible images API for the course's model (lesson 11): `python -m dalle_lessons serve`.

    python -m dalle_lessons serve                     # http://127.0.0.1:8000/v1, the shipped cpu model
    python -m dalle_lessons serve --host 0.0.0.0 --api-key "$KEY"     # other machines: a key is required

    from openai import OpenAI                          # the official client, unchanged but for these two
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=os.environ["DALLE_LESSONS_API_KEY"])
    client.images.generate(model="dalle-lessons-cpu", prompt="a small red circle", n=3, size="256x256")

The pre-1.0 call of the seed, `openai.Image.create(prompt=..., n=3, size="1024x1024")` (openai 0.28, with
`openai.api_base` set), gets the same answer. Needs `pip install -e ".[api]"` (FastAPI, uvicorn,
python-multipart), imported only when a server is made.

Endpoints
    POST /v1/images/generations   JSON body; the fields below
    POST /v1/images/edits         multipart form: image, optional mask, and the fields below
    GET  /v1/models               the served model: `dalle-lessons-cpu` (the shipped model), or
                                  `dalle-lessons-<folder>` for `--checkpoint <folder>`
    GET  /v1/models/{model}
    GET  /v1/files/images/{name}  the images behind `url`s; no key needed: the random name (192 bits)
                                  is the capability, as with OpenAI's signed URLs; in memory, an hour at
                                  most, the newest 1,000 images and 256 MB (image_store.ImageStore)
    GET  /health                  status and counters (queue, batches, store), no key needed

Request fields (G: generations, E: edits) and what the server does with each (FIELDS holds the same):

    field                 | G E | what happens
    ----------------------|-----|---------------------------------------------------------------------
    prompt                | G E | required, 1 to 32,000 characters; the model reads its first T tokens
                          |     | (24 for cpu): a longer prompt is cut and `revised_prompt` says what was read
    model                 | G E | a name from GET /v1/models; omitted: the served model; others (dall-e-2,
                          |     | gpt-image-1, ...) are 400: this server does not serve OpenAI's models
    n                     | G E | 1 to 10 (default 1)
    size                  | G E | square only: the native size (32x32 for cpu) and each doubling up to
                          |     | 1024x1024, upsampled nearest-neighbour (a model pixel becomes a block);
                          |     | `auto` or omitted: 1024x1024, OpenAI's default; other sizes: 400
    response_format       | G E | `url` (default) or `b64_json`
    output_format         | G E | `png` (default), `jpeg`, `webp`; `gif`, `svg`: 400
    output_compression    | G E | 0-100, the jpeg/webp quality (default 100); no effect on png
    user, safety_identifier | G E | a string; accepted and ignored (nothing is logged per user)
    quality               | G E | OpenAI's values; accepted and ignored: the model has one quality
    style                 | G   | vivid / natural; accepted and ignored
    moderation            | G   | auto / low; accepted and ignored: the model draws coloured shapes only
    complexity            | G E | low / medium / high; accepted and ignored
    input_fidelity        |   E | high / low; accepted and ignored
    background            | G E | auto / opaque; `transparent`: 400 (every picture is opaque)
    stream                | G E | false; true: 400 (no streaming; the playground shows rows as they come)
    partial_images        | G E | 0; more: 400 (they need streaming)
    frame_count, frame_duration_ms, svg | G E | null only: 400 otherwise (no GIF or SVG output)
    image                 |   E | required: one square PNG, JPEG or WebP, at most 4 MB and 4096 px a
                          |     | side, resized to the native size (area average)
    mask                  |   E | optional PNG/WebP with alpha, the image's size; alpha 0 = redraw. Without
                          |     | it, the image's own transparent pixels. See "Edits" below
    markup                |   E | 400: use mask
    seed                  | G E | extension: an int 0 to 2**63 - 1; image k of seed s is the same for any n
                          |     | and whoever shares its batch; omitted: drawn at random; the response's
                          |     | `seed` says which
    temperature, top_k,   | G E | extensions, with the ranges of sampling.SAMPLING_RANGES (shared with the
    top_p, guidance_scale |     | CLI and the Python API); omitted: pipeline.DEFAULT_SAMPLING; null top_k or
                          |     | top_p turns that filter off
    rerank                | G   | extension: 1 to 128 candidates per image, CLIP keeps the best; n x rerank
                          |     | <= 1024. Edits: 1 only
    anything else         | G E | 400 unknown_parameter, naming it

    Response: {"created": ..., "data": [{"url" | "b64_json": ..., "revised_prompt"?: ...}], "size": ...,
    "output_format": ..., "seed": ...} (`revised_prompt` only when the prompt was cut).

Edits. DALL·E draws image tokens in raster order, top row first, each token conditioned on every token
above and to its left. Given the top rows, it can draw the rest (`TextToImage.complete`); it cannot
keep the bottom and redraw the top, nor redraw a hole in the middle, because nothing it was trained on
conditions a token on tokens that come after it. So the transparent (redraw) part of the mask must be a
band at the bottom made of whole token rows (4 px rows of the native 32 px image, 128 px rows of a
1024 px image), or nothing (the image comes back through the dVAE). Any other mask is a 400 naming
`mask` that says which row breaks the rule. `edit_mask(side, grid, keep_rows)` makes a valid one.

Errors come in OpenAI's shape, {"error": {"message", "type", "param", "code"}}: 400 for any invalid
input, naming the field (never a 500 for bad input); 401 when the server has a key and the request's
`Authorization: Bearer` is missing or wrong; 404 for an unknown path, model or image; 429 with
`retry-after` when the queue is full; 503 for requests waiting when the server stops.

Concurrency: requests are checked on the event loop and queued (`batcher.Batcher`, bounded); one worker
thread samples them, batching requests with the same sampling settings into one call; PNG encoding
runs in threads too. A client that leaves mid-request frees its place; on shutdown the running batch
is answered and the waiting requests get 503 at once.
"""
import asyncio
import base64
import errno
import hmac
import io
import ipaddress
import json
import logging
import re
import secrets
import socket
import threading
import time
import warnings
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .batcher import Batcher, Job, QueueFull, ShuttingDown
from .image_store import ImageStore
from .pipeline import DEFAULT_SAMPLING, MAX_BATCH, TextToImage
from .rerank import check_rerank
from .sampling import MAX_SEED, check_sampling, check_seed

log = logging.getLogger("dalle_lessons.server")

SHIPPED_MODEL = "dalle-lessons-cpu"
MAX_N = 10
MAX_PROMPT_CHARS = 32_000
MAX_SIDE = 1024  # the largest output size: the seed's 1024x1024
DEFAULT_SIZE = "1024x1024"  # OpenAI's default
MAX_UPLOAD_BYTES = 4 * 2**20  # per image file, as OpenAI's edits of DALL·E 2
MAX_UPLOAD_SIDE = 4096
MAX_JSON_BYTES = 256 * 2**10
LOCAL_HOSTS = ("localhost",)
API_KEY_ENV = "DALLE_LESSONS_API_KEY"
OUTPUT_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}

#: Every request field: (endpoints, how the server treats it). The module docstring's table says the same in words.
FIELDS: dict[str, tuple[str, str]] = {
    "prompt": ("GE", "supported"), "model": ("GE", "supported"), "n": ("GE", "supported"),
    "size": ("GE", "supported"), "response_format": ("GE", "supported"), "output_format": ("GE", "supported"),
    "output_compression": ("GE", "supported"), "image": ("E", "supported"), "mask": ("E", "supported"),
    "user": ("GE", "ignored"), "safety_identifier": ("GE", "ignored"), "quality": ("GE", "ignored"),
    "style": ("G", "ignored"), "moderation": ("G", "ignored"), "complexity": ("GE", "ignored"),
    "input_fidelity": ("E", "ignored"),
    "background": ("GE", "rejected unless auto or opaque"), "stream": ("GE", "rejected unless false"),
    "partial_images": ("GE", "rejected unless 0"), "frame_count": ("GE", "rejected unless null"),
    "frame_duration_ms": ("GE", "rejected unless null"), "svg": ("GE", "rejected unless null"),
    "markup": ("E", "rejected"),
    "seed": ("GE", "extension"), "temperature": ("GE", "extension"), "top_k": ("GE", "extension"),
    "top_p": ("GE", "extension"), "guidance_scale": ("GE", "extension"),
    "rerank": ("GE", "extension (edits: 1 only)"),
}
#: The values an ignored field may take (anything else is a 400: a typo should not pass silently).
IGNORED_VALUES = {
    "quality": ("auto", "standard", "hd", "low", "medium", "high", "xhigh", "max"),
    "style": ("vivid", "natural"), "moderation": ("auto", "low"), "complexity": ("low", "medium", "high"),
    "input_fidelity": ("high", "low"),
}
WHY_IGNORED = {"quality": "the model has one quality", "style": "the model has one style",
               "moderation": "no moderation runs: the model draws coloured shapes only",
               "complexity": "the model plans nothing before drawing", "input_fidelity": "the kept rows are kept exactly"}


class APIError(Exception):
    """An error the API answers in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers or {}
        self.kind = kind or ("invalid_request_error" if status < 429 else "rate_limit_error" if status == 429
                             else "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _bad(param: str | None, message: str, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param, code)


def _show(value: Any) -> str:
    """A value for a message: repr, at most 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__} of {len(text)} characters"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def output_sizes(native: int) -> list[str]:
    """The sizes offered: the native size and each doubling of it up to MAX_SIDE (1024)."""
    sides = [native]
    while sides[-1] * 2 <= MAX_SIDE:
        sides.append(sides[-1] * 2)
    return [f"{s}x{s}" for s in sides]


def edit_mask(side: int, grid: int, keep_rows: int) -> Image.Image:
    """A mask for /v1/images/edits: opaque over the top `keep_rows` of `grid` token rows (kept), transparent
    below (redrawn), `side` x `side` pixels (the size of the image it goes with)."""
    if not (_is_int(grid) and grid >= 1 and _is_int(keep_rows) and 0 <= keep_rows <= grid and _is_int(side)
            and side >= grid):
        raise ValueError(f"edit_mask needs side >= grid >= 1 and 0 <= keep_rows <= grid, got side={side!r}, "
                         f"grid={grid!r}, keep_rows={keep_rows!r}")
    alpha = np.zeros((side, side), np.uint8)
    alpha[(np.arange(side) * grid // side) < keep_rows] = 255
    mask = np.zeros((side, side, 4), np.uint8)
    mask[..., 3] = alpha
    return Image.fromarray(mask, "RGBA")


# --- reading a request ----------------------------------------------------------------------------

class _Fields:
    """A request's fields (a JSON object, or a multipart form whose values are strings), read by name."""

    def __init__(self, values: dict, form: bool):
        self.values, self.form = values, form

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def get(self, name: str, kind: type | None = None) -> Any:
        """The value (None when absent or null); form strings become `kind` (int, float, bool) when they parse."""
        value = self.values.get(name)
        if not self.form or not isinstance(value, str) or kind is None:
            return value
        text = value.strip()
        if kind is bool and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind in (int, float) and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if kind is float:
            try:
                return float(text)
            except ValueError:
                return value
        return value


@dataclass
class ImageRequest:
    """A checked request, ready to queue."""

    prompt: str
    text: Any  # caption ids [T]
    revised_prompt: str | None
    n: int
    size: str
    side: int
    response_format: str
    output_format: str
    compression: int
    seed: int
    settings: dict
    rerank: int = 1
    image: Image.Image | None = None
    keep_rows: int = 0


class ImagesService:
    """The API's state and logic, without the web framework: a pipeline, a Batcher, an ImageStore, a key."""

    def __init__(self, pipe: TextToImage, model: str = SHIPPED_MODEL, api_key: str | None = None,
                 max_queue: int = 64, max_batch: int = MAX_BATCH, batch_wait: float = 0.005,
                 store: ImageStore | None = None, public_url: str | None = None):
        if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
            raise ValueError("api_key is empty: give a non-empty key, or None to serve without one")
        if not isinstance(model, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", model):
            raise ValueError(f"model name {model!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
        self.pipe, self.model, self.api_key = pipe, model, api_key
        self.batcher = Batcher(pipe, max_queue=max_queue, max_batch=max_batch, wait=batch_wait)
        self.store = store if store is not None else ImageStore()
        self.public_url = public_url.rstrip("/") if public_url else None
        self.sizes = output_sizes(pipe.native_size)
        self.default_size = DEFAULT_SIZE if DEFAULT_SIZE in self.sizes else self.sizes[-1]
        self.created = int(time.time())
        try:  # loaded now, not on the event loop by the first request that reranks
            pipe.reranker
            self.no_rerank = None
        except (FileNotFoundError, ValueError, OSError) as error:
            self.no_rerank = _one_line(error)

    # --- access ----------------------------------------------------------------------------------

    def authorize(self, authorization: str | None) -> None:
        """401 unless the server has no key or `authorization` is 'Bearer <the key>'."""
        if self.api_key is None:
            return
        scheme, _, token = (authorization or "").strip().partition(" ")
        if not authorization or scheme.lower() != "bearer" or not token.strip():
            raise APIError(401, "no API key given: this server needs one, sent as the header 'Authorization: "
                                "Bearer KEY' (the OpenAI client sends its api_key that way)", code="invalid_api_key")
        if not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise APIError(401, "wrong API key: use the key the server was started with (--api-key or "
                                f"{API_KEY_ENV})", code="invalid_api_key")

    def models(self) -> dict:
        return {"object": "list", "data": [self.model_card()]}

    def model_card(self, name: str | None = None) -> dict:
        if name is not None and name != self.model:
            raise APIError(404, f"no model {name[:80]!r} here: this server serves {self.model}", "model",
                           "model_not_found")
        return {"id": self.model, "object": "model", "created": self.created, "owned_by": "dalle-lessons"}

    # --- checking a request -----------------------------------------------------------------------

    def parse(self, values: dict, endpoint: str) -> ImageRequest:
        """Check every field of a generations ("G") or edits ("E") request; a 400 naming the first bad one."""
        fields = _Fields(values, form=endpoint == "E")
        where = "/v1/images/generations" if endpoint == "G" else "/v1/images/edits"
        for name in values:
            if name not in FIELDS or endpoint not in FIELDS[name][0]:
                known = ", ".join(n for n, (e, _) in FIELDS.items() if endpoint in e)
                raise _bad(name, f"unknown parameter {name[:60]!r} for {where}: the fields are {known}",
                           "unknown_parameter")
        self._check_model(fields.get("model"))
        prompt, text, revised = self._prompt(fields)
        n = fields.get("n", int)
        n = 1 if n is None else n
        if not _is_int(n) or not 1 <= n <= MAX_N:
            raise _bad("n", f"n must be an int from 1 to {MAX_N} (images per request), got {_show(n)}")
        size, side = self._size(fields.get("size"))
        response_format = self._choice(fields, "response_format", ("url", "b64_json"), "url")
        output_format = fields.get("output_format")
        if output_format in ("gif", "svg"):
            raise _bad("output_format", f"output_format {output_format!r} is not offered (the model draws one still "
                                        "raster picture): choose png, jpeg or webp", "unsupported_value")
        output_format = self._choice(fields, "output_format", tuple(OUTPUT_FORMATS), "png")
        compression = fields.get("output_compression", int)
        compression = 100 if compression is None else compression
        if not _is_int(compression) or not 0 <= compression <= 100:
            raise _bad("output_compression", "output_compression must be an int from 0 to 100 (the jpeg/webp "
                                             f"quality), got {_show(compression)}")
        self._ignored_and_refused(fields, endpoint)
        seed = fields.get("seed", int)
        if seed is None:
            seed = secrets.randbits(63) & MAX_SEED
        try:
            seed = check_seed(seed)
        except (TypeError, ValueError) as error:
            raise _bad("seed", str(error)) from None
        settings = self._sampling(fields)
        rerank = fields.get("rerank", int)
        rerank = 1 if rerank is None else rerank
        if endpoint == "E" and rerank != 1:
            raise _bad("rerank", f"rerank is offered for generations only (edits keep rows of your image, which "
                                 f"CLIP reranking does not know about), got {_show(rerank)}", "unsupported_value")
        try:
            rerank = check_rerank(rerank, n)
        except (TypeError, ValueError) as error:
            raise _bad("rerank", str(error)) from None
        if rerank > 1 and self.no_rerank:
            raise _bad("rerank", f"rerank is not available on this server: {self.no_rerank}", "unsupported_value")
        return ImageRequest(prompt, text, revised, n, size, side, response_format, output_format, compression,
                            seed, settings, rerank)

    def _check_model(self, model: Any) -> None:
        if model is None or model == self.model:
            return
        if not isinstance(model, str):
            raise _bad("model", f"model must be a string, got {_show(model)}")
        raise APIError(400, f"unknown model {model[:80]!r}: this server serves {self.model} (GET /v1/models); "
                            "leave model out to use it", "model", "model_not_found")

    def _prompt(self, fields: _Fields) -> tuple[str, Any, str | None]:
        prompt = fields.raw("prompt")
        if prompt is None:
            raise _bad("prompt", "prompt is required: describe the picture, e.g. 'a small red circle above a "
                                 "blue square'", "missing_required_parameter")
        if not isinstance(prompt, str):
            raise _bad("prompt", f"prompt must be a string, got {type(prompt).__name__}")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise _bad("prompt", f"prompt is {len(prompt):,} characters, more than the limit of {MAX_PROMPT_CHARS:,} "
                                 f"(the model reads only its first {self.pipe.tokenizer.text_seq_len} tokens)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a long prompt is cut; revised_prompt says so
                text = self.pipe.encode_prompts(prompt, on_overflow="warn")[0]
        except (TypeError, ValueError) as error:
            raise _bad("prompt", str(error)) from None
        revised = None
        if self.pipe.tokenizer.count_tokens(prompt) > self.pipe.tokenizer.text_seq_len:
            revised = self.pipe.tokenizer.decode(text)
        return prompt, text, revised

    def _size(self, size: Any) -> tuple[str, int]:
        if size is None or size == "auto":
            size = self.default_size
        if size not in self.sizes:
            shape = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", size) if isinstance(size, str) else None
            why = " (the model draws square pictures)" if shape and shape[1] != shape[2] else ""
            raise _bad("size", f"size {_show(size)} is not offered{why}: choose one of {', '.join(self.sizes)} or "
                               f"auto ({self.default_size}); the model draws {self.sizes[0]}, larger sizes are "
                               "upsampled")
        return size, int(size.split("x")[0])

    @staticmethod
    def _choice(fields: _Fields, name: str, choices: tuple, default: str) -> str:
        value = fields.get(name)
        if value is None:
            return default
        if value not in choices:
            raise _bad(name, f"{name} must be one of {', '.join(choices)}, got {_show(value)}")
        return value

    @staticmethod
    def _ignored_and_refused(fields: _Fields, endpoint: str) -> None:
        for name, allowed in IGNORED_VALUES.items():
            value = fields.get(name)
            if value is not None and value not in allowed:
                raise _bad(name, f"{name} must be one of {', '.join(allowed)} (accepted and ignored: "
                                 f"{WHY_IGNORED[name]}), got {_show(value)}")
        for name in ("user", "safety_identifier"):
            value = fields.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > 1000):
                raise _bad(name, f"{name} must be a string of at most 1,000 characters, got {_show(value)}")
        background = fields.get("background")
        if background == "transparent":
            raise _bad("background", "background 'transparent' is not offered: the model draws opaque pictures "
                                     "(leave background out, or use 'opaque')", "unsupported_value")
        if background not in (None, "auto", "opaque"):
            raise _bad("background", f"background must be auto or opaque, got {_show(background)}")
        if fields.get("stream", bool) not in (None, False):
            raise _bad("stream", "streaming is not offered: leave stream out and the whole answer comes at once "
                                 "(the playground shows a picture row by row)", "unsupported_value")
        if fields.get("partial_images", int) not in (None, 0):
            raise _bad("partial_images", "partial_images needs streaming, which is not offered: leave it out",
                       "unsupported_value")
        for name in ("frame_count", "frame_duration_ms", "svg"):
            if fields.raw(name) is not None:
                raise _bad(name, f"{name} is for GIF or SVG output, which this server does not offer: leave it out",
                           "unsupported_value")
        if endpoint == "E" and fields.raw("markup") is not None:
            raise _bad("markup", "markup is not offered: mark the area to redraw with a mask (transparent = "
                                 "redraw)", "unsupported_value")

    @staticmethod
    def _sampling(fields: _Fields) -> dict:
        """DEFAULT_SAMPLING with the request's sampling fields, each checked against SAMPLING_RANGES."""
        settings = dict(DEFAULT_SAMPLING)
        for name in DEFAULT_SAMPLING:
            if name not in fields:
                continue
            value = fields.get(name, int if name == "top_k" else float)
            if fields.form and isinstance(value, str) and value.strip().lower() in ("", "null", "none"):
                value = None
            try:
                check_sampling(**{name: value})
            except (TypeError, ValueError) as error:
                raise _bad(name, str(error)) from None
            settings[name] = value
        return settings

    # --- edits: the image and the mask -------------------------------------------------------------

    def edit_inputs(self, image: bytes, mask: bytes | None) -> tuple[Image.Image, int]:
        """The picture at the native size and how many token rows to keep, from the uploaded files."""
        picture = _open_upload(image, "image", ("PNG", "JPEG", "WEBP"))
        side = picture.width
        if picture.height != side:
            raise _bad("image", f"the image is {picture.width}x{picture.height}: it must be square (the model draws "
                                "square pictures); crop it first")
        grid, native = self.pipe.grid, self.pipe.native_size
        if side < grid:
            raise _bad("image", f"the image is {side}x{side}: give at least {grid}x{grid} pixels "
                                f"(the model's native size is {native}x{native})")
        if mask is not None:
            overlay = _open_upload(mask, "mask", ("PNG", "WEBP"))
            if overlay.size != picture.size:
                raise _bad("mask", f"the mask is {overlay.width}x{overlay.height} but the image is {side}x{side}: "
                                   "give a mask of the image's size")
            alpha = _alpha(overlay)
            if alpha is None:
                raise _bad("mask", "the mask has no alpha channel: save it as an RGBA PNG whose transparent "
                                   "(alpha 0) pixels mark the area to redraw")
        else:
            alpha = _alpha(picture)
            if alpha is None or not (alpha == 0).any():
                raise _bad("mask", "no mask was given and the image has no transparent pixels: send a mask (an "
                                   "RGBA PNG of the image's size whose transparent pixels mark the rows to redraw, "
                                   "a band at the bottom, e.g. the bottom half)", "missing_required_parameter")
        keep_rows = _rows_to_keep(alpha == 0, grid)
        rgb = picture.convert("RGB")
        if side != native:
            rgb = rgb.resize((native, native), Image.Resampling.BOX)
        return rgb, keep_rows

    # --- answering --------------------------------------------------------------------------------

    async def answer(self, request: ImageRequest, disconnected, base_url: str) -> dict | None:
        """Queue the request, wait for its images (or for the client to leave: None), encode and return the body."""
        job = Job(request.text, request.n, request.seed, request.settings, request.rerank, request.image,
                  request.keep_rows)
        try:
            self.batcher.submit(job)
        except QueueFull as full:
            raise APIError(429, f"{full}: retry in about {full.retry_after} s (the retry-after header)",
                           code="rate_limit_exceeded", headers={"retry-after": str(full.retry_after)}) from None
        except ShuttingDown:
            raise _shutting_down() from None
        images = await self._wait(job, disconnected)
        if images is None:
            return None
        blobs = await asyncio.to_thread(encode_images, images, request.side, request.output_format,
                                        request.compression)
        data = []
        for blob in blobs:
            if request.response_format == "b64_json":
                item = {"b64_json": base64.b64encode(blob).decode("ascii")}
            else:
                name = self.store.put(blob, request.output_format)
                item = {"url": f"{self.public_url or base_url.rstrip('/')}/v1/files/images/{name}"}
            if request.revised_prompt is not None:
                item["revised_prompt"] = request.revised_prompt
            data.append(item)
        return {"created": int(time.time()), "data": data, "size": request.size,
                "output_format": request.output_format, "seed": request.seed}

    async def _wait(self, job: Job, disconnected) -> list | None:
        result = asyncio.wrap_future(job.future)
        gone = asyncio.ensure_future(disconnected())
        try:
            done, _ = await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self.batcher.abandon(job)
            result.cancel()
            raise
        finally:
            gone.cancel()
        if result not in done:
            self.batcher.abandon(job)
            result.cancel()
            return None
        try:
            return result.result()
        except ShuttingDown:
            raise _shutting_down() from None
        except Exception as error:
            raise APIError(500, f"the images could not be made: {_one_line(error)} (a bug or an exhausted "
                                "machine; the server's log has the details)", code="server_error") from None

    def health(self) -> dict:
        return {"status": "shutting_down" if self.batcher.closing else "ok", "model": self.model,
                **self.batcher.stats(), "stored_images": len(self.store), "stored_bytes": self.store.nbytes}


def _shutting_down() -> APIError:
    return APIError(503, "the server is shutting down and this request was not started: retry against a running "
                         "server", code="shutting_down", headers={"connection": "close"})


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]


def _open_upload(data: bytes, param: str, formats: tuple[str, ...]) -> Image.Image:
    """An uploaded image, checked for size and format before its pixels are decoded."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise _bad(param, f"the {param} is {len(data) / 2**20:.1f} MB: the most is {MAX_UPLOAD_BYTES // 2**20} MB")
    if not data:
        raise _bad(param, f"the {param} file is empty: send a {' or '.join(formats)} image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            picture = Image.open(io.BytesIO(data))
            if picture.format not in formats:
                raise _bad(param, f"the {param} is a {picture.format or 'unknown'} file: send a "
                                  f"{', '.join(formats)} image")
            if max(picture.size) > MAX_UPLOAD_SIDE:
                raise _bad(param, f"the {param} is {picture.width}x{picture.height}: at most "
                                  f"{MAX_UPLOAD_SIDE} pixels a side")
            picture.load()
    except APIError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        raise _bad(param, f"the {param} is not a readable {' or '.join(formats)} image ({_one_line(error)[:120]})") \
            from None
    return picture


def _alpha(picture: Image.Image) -> np.ndarray | None:
    """The alpha channel as an array, or None when the picture has none."""
    if picture.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in picture.info:
        return np.asarray(picture.convert("RGBA"))[..., 3]
    return None


def _rows_to_keep(transparent: np.ndarray, grid: int) -> int:
    """How many token rows of the top to keep, when the transparent pixels are a bottom band of whole token
    rows; otherwise a 400 naming `mask` that says which rows break the rule and why."""
    side = transparent.shape[0]
    token_row = np.arange(side) * grid // side  # the token row each pixel row falls in
    redraw = []
    for j in range(grid):
        band = transparent[token_row == j]
        if band.all():
            redraw.append(True)
        elif not band.any():
            redraw.append(False)
        else:
            rows = np.flatnonzero(token_row == j)
            raise _bad("mask", f"the mask's token row {j + 1} of {grid} (pixel rows {rows[0]} to {rows[-1]}) is partly "
                               f"transparent: the model redraws whole rows of tokens, so each band of {side / grid:g} "
                               "pixel rows must be all transparent (redraw) or all opaque (keep)")
    keep = redraw.index(True) if True in redraw else grid
    if not all(redraw[keep:]):
        kept_below = keep + redraw[keep:].index(False)
        raise _bad("mask", f"the mask's transparent area must be one band at the bottom: token row {keep + 1} of "
                           f"{grid} is transparent but row {kept_below + 1} below it is opaque. The model draws tokens "
                           "top to bottom, each conditioned on those above, so it can keep a top band and redraw "
                           "everything below it, never keep a part below a redrawn one")
    return keep


def encode_images(images: list[Image.Image], side: int, output_format: str = "png", compression: int = 100) -> list[bytes]:
    """Native-size pictures -> encoded files at `side` pixels (nearest-neighbour: each model pixel a block)."""
    blobs = []
    for picture in images:
        if picture.width != side:
            picture = picture.resize((side, side), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        if output_format == "png":
            picture.save(buffer, "PNG")
        elif output_format == "webp" and compression == 100:
            picture.save(buffer, "WEBP", lossless=True)
        else:
            picture.save(buffer, OUTPUT_FORMATS[output_format], quality=compression)
        blobs.append(buffer.getvalue())
    return blobs


# --- the web application ----------------------------------------------------------------------------

def require_api_packages() -> None:
    """A one-line RuntimeError naming the install command when FastAPI, uvicorn or python-multipart is missing."""
    import importlib.util
    missing = [package for package, modules in (("fastapi", ["fastapi"]), ("uvicorn", ["uvicorn"]),
                                                ("python-multipart", ["python_multipart", "multipart"]))
               if not any(importlib.util.find_spec(module) for module in modules)]
    if missing:
        raise RuntimeError(f"the images API needs {', '.join(missing)}: pip install -e \".[api]\" "
                           "(from the course folder)")


class _BodyTooLarge(Exception):
    pass


try:
    from starlette.requests import ClientDisconnect
except ImportError:  # the API packages are missing: require_api_packages says so when a server is made
    class ClientDisconnect(Exception):
        pass


def _capped(request, limit: int):
    """The same request, reading its body through a counter that stops past `limit` bytes."""
    from starlette.requests import Request
    seen = 0

    async def receive():
        nonlocal seen
        message = await request.receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge()
        return message
    return Request(request.scope, receive)


def _too_large(limit: int, param: str | None) -> APIError:
    return _bad(param, f"the request body is larger than {limit / 2**20:.2f} MB"
                       + (f" (images: {MAX_UPLOAD_BYTES // 2**20} MB each at most)" if param else ""),
                "request_too_large")


def _gone() -> APIError:
    return _bad(None, "the client went away before the request body was complete", "client_disconnected")


def _declared_length(request) -> int:
    try:
        return int(request.headers.get("content-length", "0"))
    except ValueError:
        return 0


async def _read_json(request) -> dict:
    if _declared_length(request) > MAX_JSON_BYTES:
        raise _too_large(MAX_JSON_BYTES, None)
    try:
        body = await _capped(request, MAX_JSON_BYTES).body()
    except _BodyTooLarge:
        raise _too_large(MAX_JSON_BYTES, None) from None
    except ClientDisconnect:
        raise _gone() from None
    example = 'e.g. {"prompt": "a small red circle", "n": 2}'
    if not body.strip():
        raise _bad(None, f"the request body is empty: send a JSON object, {example}", "invalid_json")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise _bad(None, f"the request body is not valid JSON ({_one_line(error)[:100]}): send a JSON object, "
                         f"{example}", "invalid_json") from None
    if not isinstance(value, dict):
        raise _bad(None, f"the request body must be a JSON object, got a {type(value).__name__}: {example}",
                   "invalid_json")
    return value


async def _read_form(request) -> tuple[dict, bytes, bytes | None]:
    """The edit's text fields, image bytes and mask bytes (or None)."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException
    limit = 2 * MAX_UPLOAD_BYTES + MAX_JSON_BYTES
    if _declared_length(request) > limit:
        raise _too_large(limit, "image")
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise _bad("image", "an edit is a multipart/form-data request (image, mask, prompt, ...): the OpenAI "
                            "client's images.edit sends one", "invalid_request")
    try:
        form = await _capped(request, limit).form(max_files=4, max_fields=64, max_part_size=MAX_JSON_BYTES)
    except _BodyTooLarge:
        raise _too_large(limit, "image") from None
    except MultiPartException as error:
        raise _bad(None, f"the multipart form could not be read: {_one_line(error)}", "invalid_request") from None
    except ClientDisconnect:
        raise _gone() from None
    values, files = {}, {}
    for key, value in form.multi_items():
        name = "image" if key == "image[]" else key
        if name in values or name in files:
            raise _bad(name, f"{name} is given more than once: an edit takes one {name}" +
                       (" (one image per request)" if name == "image" else ""))
        if isinstance(value, UploadFile):
            if name not in ("image", "mask", "markup"):
                raise _bad(name, f"{name} must be a text field, not a file")
            files[name] = await value.read()
        else:
            if name in ("image", "mask"):
                raise _bad(name, f"{name} must be a file (an uploaded image), not a text field")
            values[name] = value
    await form.close()
    if "markup" in files:
        values["markup"] = "file"
    if "image" not in files:
        raise _bad("image", "image is required: upload the picture to edit (a square PNG)",
                   "missing_required_parameter")
    return values, files["image"], files.get("mask")


def _disconnect_watcher(request):
    """A coroutine function that returns once the client has gone (after the body has been read)."""
    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    return disconnected


def create_app(service: ImagesService):
    """The FastAPI application answering the images API with `service`."""
    require_api_packages()
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    @asynccontextmanager
    async def lifespan(app):
        yield
        service.batcher.begin_close()
        await asyncio.to_thread(service.batcher.join, 60)

    app = FastAPI(title="dalle-lessons images API", version="1", lifespan=lifespan,
                  description="OpenAI-compatible images API for the course's DALL·E (see dalle_lessons/server.py).")
    app.state.service = service

    def error_response(error: APIError):
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(APIError)
    async def api_error(request, error: APIError):
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, error: RequestValidationError):
        return error_response(validation_to_api_error(error.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        if error.status_code == 404:
            return error_response(APIError(404, f"no such endpoint: {request.method} {request.url.path[:200]} "
                                                "(the images API is under /v1; /openapi.json lists it)", code="not_found"))
        if error.status_code == 405:
            return error_response(APIError(405, f"{request.method} is not allowed on {request.url.path[:200]}",
                                           code="method_not_allowed"))
        return error_response(APIError(error.status_code, str(error.detail), code="http_error"))

    @app.exception_handler(Exception)
    async def unexpected(request, error: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(APIError(500, f"unexpected {type(error).__name__}: {_one_line(error)} (a bug: the "
                                            "server's log has the traceback)", code="server_error"))

    @app.post("/v1/images/generations")
    async def generations(request: Request):
        service.authorize(request.headers.get("authorization"))
        parsed = service.parse(await _read_json(request), "G")
        return await respond(request, parsed)

    @app.post("/v1/images/edits")
    async def edits(request: Request):
        service.authorize(request.headers.get("authorization"))
        values, image, mask = await _read_form(request)
        parsed = service.parse(values, "E")
        parsed.image, parsed.keep_rows = await asyncio.to_thread(service.edit_inputs, image, mask)
        return await respond(request, parsed)

    async def respond(request: Request, parsed: ImageRequest):
        body = await service.answer(parsed, _disconnect_watcher(request), str(request.base_url))
        if body is None:  # the client has gone: nobody reads this
            return Response(status_code=499)
        return JSONResponse(body)

    @app.get("/v1/models")
    async def models(request: Request):
        service.authorize(request.headers.get("authorization"))
        return service.models()

    @app.get("/v1/models/{model}")
    async def model(request: Request, model: str):
        service.authorize(request.headers.get("authorization"))
        return service.model_card(model)

    @app.get("/v1/files/images/{name}")
    async def image_file(name: str):
        stored = service.store.get(name)
        if stored is None:
            raise APIError(404, "no such image: it never existed, or it expired (images are kept an hour at most, "
                                f"and the newest {service.store.max_images} only)", code="not_found")
        return Response(stored.data, media_type=stored.media_type,
                        headers={"cache-control": "private, max-age=3600", "x-content-type-options": "nosniff"})

    @app.get("/health")
    async def health():
        return service.health()

    return app


def validation_to_api_error(errors: list[dict]) -> APIError:
    """FastAPI's validation errors as one OpenAI-shaped 400 naming the first bad field."""
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header", "form")]
    param = location[0] if location else None
    message = first.get("msg", "invalid request")
    return _bad(param, f"{param or 'the request'}: {message}" + (f", got {_show(first['input'])}" if "input" in first
                                                                 and first["input"] is not None else ""))


# --- running it ------------------------------------------------------------------------------------

def _uvicorn_server(app, service: ImagesService, log_level: str = "info"):
    """A uvicorn Server that, when told to stop, first answers the waiting requests 503 (then the running
    batch finishes and is answered before the connections close)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            service.batcher.begin_close()
            await super().shutdown(sockets=sockets)

    config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=None)
    return Server(config)


def check_bind(host: str, port: int, api_key: str | None) -> None:
    """Refuse a port out of range, and any interface but the loopback one without an API key."""
    if not _is_int(port) or not 0 <= port <= 65535:
        raise ValueError(f"--port {port}: give a port from 1 to 65535 (0: any free port)")
    if api_key is not None and not api_key.strip():
        raise ValueError(f"--api-key is empty: give a key, or leave it (and {API_KEY_ENV}) out to serve "
                         "on 127.0.0.1 without one")
    if api_key is None and not _is_loopback(host):
        raise ValueError(f"--host {host} would answer other machines: give --api-key KEY (or set {API_KEY_ENV}), "
                         "or serve on 127.0.0.1")


def _is_loopback(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on (host, port); port 0 picks a free one."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        in_use = port and error.errno in (errno.EADDRINUSE,)
        raise OSError(f"cannot serve on {host}:{port}: {error.strerror or error}"
                      + (" (another server uses this port: choose another with --port)" if in_use else "")) from None
    return sock


def _url(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def model_name_for(checkpoint: str | None) -> str:
    """`dalle-lessons-cpu` for the shipped model, `dalle-lessons-<folder name>` for a saved pipeline."""
    if checkpoint is None:
        return SHIPPED_MODEL
    slug = re.sub(r"[^a-z0-9._-]+", "-", Path(checkpoint).resolve().name.lower()).strip("-.") or "custom"
    return f"dalle-lessons-{slug[:40]}"


def serve(checkpoint: str | None = None, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          device: str | None = None, max_queue: int = 64, max_batch: int = MAX_BATCH, log_level: str = "info") -> int:
    """`python -m dalle_lessons serve`: check everything, bind, load the model, then answer until Ctrl-C."""
    require_api_packages()
    check_bind(host, port, api_key)
    for name, value, high in (("--max-queue", max_queue, 100_000), ("--max-batch", max_batch, MAX_BATCH)):
        if not 1 <= value <= high:
            raise ValueError(f"{name} {value}: give an int from 1 to {high}")
    sock = bind_socket(host, port)
    try:
        pipe = TextToImage.from_pretrained(checkpoint, device=device)
        service = ImagesService(pipe, model_name_for(checkpoint), api_key, max_queue=max_queue, max_batch=max_batch)
        app = create_app(service)
        server = _uvicorn_server(app, service, log_level)
        actual = sock.getsockname()[1]
        print(f"serving {service.model} on {_url(host, actual)}/v1 ({'API key required' if api_key else 'no API key'}; "
              f"up to {max_batch} images per batch, {max_queue} requests queued); Ctrl-C stops", flush=True)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        print("server stopped", flush=True)
        return 0
    finally:
        sock.close()


class BackgroundServer:
    """An app served by uvicorn on 127.0.0.1 and a free port, in a thread (tests, benchmarks, notebooks).

        with BackgroundServer(create_app(service)) as server:
            OpenAI(base_url=server.url + "/v1", api_key="unused").images.generate(prompt="a red circle")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.app, self.host, self.port, self.log_level = app, host, port, log_level
        self.server, self.thread, self.sock = None, None, None

    @property
    def url(self) -> str:
        return _url(self.host, self.port)

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        self.sock = bind_socket(self.host, self.port)
        self.port = self.sock.getsockname()[1]
        self.server = _uvicorn_server(self.app, self.app.state.service, self.log_level)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="dalle-lessons-server", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start on {self.url} within {timeout:g} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)
        if self.sock is not None:
            self.sock.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
