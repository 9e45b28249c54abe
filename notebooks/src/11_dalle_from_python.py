# %% [markdown]
# # 11 · DALL·E from Python: an API and a playground
#
# *Build DALL·E from Scratch, lesson 11.* Lessons 01–08 built a text-to-image model and a reranker, and
# called them as Python objects. Most people meet DALL·E differently: from a program, through OpenAI's
# **images API** — a prompt goes out over HTTP, pictures come back. Many DALL·E tutorials end with a
# snippet like `openai.Image.create(prompt=..., n=3, size="1024x1024")`. This lesson makes the course's
# own model answer that API, so that the **official `openai` client** works against it unchanged but for
# its address and key, and then builds small applications on top: game sprites, an image search engine,
# an image editor, and an interactive playground.

# %% [markdown]
# ## What you will build
#
# Everything of lessons 01–08 now sits behind a web server. Your program talks HTTP to it through the
# official client; the server checks each request, queues it, **batches** concurrent requests into one
# sampling call, and answers in OpenAI's format.
#
# ```
# your program ──openai client──▶ POST /v1/images/generations ──▶ server: check, queue ──▶ batcher
#      ▲                           POST /v1/images/edits                                     │
#      │                                                                                     ▼
#      └──── PNG pictures (b64_json, or a URL to fetch) ◀──── caption ─▶ DALL·E pipeline ─▶ CLIP rerank
#                                                              (tokenizer, transformer, sampling, dVAE)
# ```
#
# By the end of this lesson you will have:
#
# 1. started the server as a **separate process** from the notebook, with its **API key in the
#    environment**, waited for it to be healthy, and made sure it stops;
# 2. called it with the **official client** (`images.generate`, base64 and URL answers) and checked that
#    its pictures are the pipeline's own, pixel for pixel;
# 3. put the tutorials' **pre-1.0 call** beside today's, and seen why the old one no longer runs;
# 4. used the course's **extensions** (`seed`, sampling settings, `rerank`) and read **errors** as the
#    client raises them;
# 5. built three **applications** through the API: a sprite sheet, an image search engine with CLIP, and an
#    image editor — and met the one edit an autoregressive model cannot make;
# 6. opened the **playground**, and seen what today's hosted API is (not the 2021 model).
#
# The notebook runs in about two minutes on a laptop CPU.
#
# First the standard library: processes, sockets, temporary files, and the encoding of pictures in answers.

# %%
import atexit
import base64
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# %% [markdown]
# Then one setting that must be made before PyTorch loads, because two processes will share the cores, and
# the libraries: the official `openai` client and `httpx` (the HTTP library it is built on) to talk to the
# server, and the course's own pieces to check what it answers — the pipeline, the judge, CLIP, and two
# helpers of the server.

# %%
# Two processes share this machine's cores in this lesson: the notebook and the server. Threads that wait
# for work passively leave the cores to the other process instead of spinning on them (set before torch loads;
# the server inherits it). On a busy 2-core machine this made the notebook's own sampling ten times faster.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx
import matplotlib.pyplot as plt
import numpy as np
import openai
import torch
from openai import OpenAI
from PIL import Image

from dalle_lessons import judge
from dalle_lessons.clip_eval import embed_images, embed_texts
from dalle_lessons.pipeline import TextToImage
from dalle_lessons.playground import describe_reading
from dalle_lessons.server import API_KEY_ENV, edit_mask
from dalle_lessons.train_clip import clip_tokenizer

torch.set_grad_enabled(False)
plt.rcParams.update({"figure.dpi": 80})
print("the server reads its API key from the environment variable", API_KEY_ENV)

# %% [markdown]
# ## 1. Start the server
#
# The server is `python -m dalle_lessons serve` (the course's `api` extra installs FastAPI and uvicorn for
# it). You would normally start it in a terminal and leave it running. Here the notebook starts it as a
# **subprocess**: a separate Python process with its own copy of the model, exactly as a real deployment
# runs apart from its clients.
#
# ### The API key belongs in the environment
#
# The tutorials' snippet begins with `openai.api_key = "sk-..."`: the secret key typed into the code. Don't.
# Code is committed, shared, pasted into questions and printed in notebooks saved with their outputs, and a
# key pushed to a public repository can be found by the automated scanners that look for exactly that, soon
# after it is pushed. A key written into code can only be changed by changing the code. **Environment
# variables** keep the secret out of every file: you set it once in your shell (or a secrets manager, or
# Colab's secrets panel), and the program reads it. The official client does this by itself — `OpenAI()`
# reads `OPENAI_API_KEY`. It also does not belong on a **command line** (`--api-key KEY`), which other users
# of a shared machine can read in the process list; `serve` reads `DALLE_LESSONS_API_KEY` from its
# environment instead.
#
# For this notebook we make a throwaway key, put it in the notebook's own environment (as if you had
# exported it in your shell), and hand that environment to the child process. The key is never printed.
#
# ### A free port, a log file, and a way to stop
#
# The server needs a port no other program uses. We ask the operating system for a free one (bind to port 0,
# read the number, let it go) and pass it on. The server's log goes to a file, not to a pipe nobody reads (a
# full pipe would block the server). And before anything can go wrong, we register `stop_server` with
# `atexit`, so that even if a later cell fails and you shut the notebook down, the server stops with the
# kernel. (Nothing can run when a kernel is killed outright; then stop the process by hand.)
#
# The key and the port first:

# %%
os.environ.setdefault(API_KEY_ENV, secrets.token_urlsafe(24))  # yours, if you exported one; else a throwaway

with socket.socket() as probe:  # a free port on this machine only
    probe.bind(("127.0.0.1", 0))
    PORT = probe.getsockname()[1]
BASE = f"http://127.0.0.1:{PORT}"

# %% [markdown]
# Then the way to stop it, written before the start: a Ctrl-C (SIGINT), as you would press in the server's
# terminal, and a kill if the server has not exited within 30 seconds.

# %%
def stop_server() -> int | None:
    """Stop the server as Ctrl-C would (a kill if it hangs); safe to call more than once."""
    if server.poll() is None:
        if os.name == "posix":
            server.send_signal(signal.SIGINT)
        else:  # Windows has no SIGINT for another process
            server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    log_file.close()
    return server.returncode

# %% [markdown]
# And the start: the child process gets the notebook's environment (with the key), writes its log to a file,
# and `stop_server` is registered with `atexit` in the same cell, as soon as there is a server to stop.

# %%
if "server" in globals():  # this cell ran before: stop that server first
    stop_server()

LOG = Path(tempfile.mkdtemp(prefix="dalle-lessons-11-")) / "server.log"
log_file = LOG.open("w")
server = subprocess.Popen(
    [sys.executable, "-m", "dalle_lessons", "serve", "--host", "127.0.0.1", "--port", str(PORT), "--device", "cpu"],
    env={**os.environ, API_KEY_ENV: os.environ[API_KEY_ENV]},  # the child's environment carries the key
    stdout=log_file, stderr=subprocess.STDOUT)
atexit.register(stop_server)  # runs when the kernel shuts down, whatever happened in between
print("started: python -m dalle_lessons serve --host 127.0.0.1 --port <free port> --device cpu")

# %% [markdown]
# While the server loads its model, the notebook loads its own copy of the pipeline and the shipped CLIP:
# we will use them to check the server's answers and to build the search engine.

# %%
pipe = TextToImage.from_pretrained(device="cpu")
clip = pipe.reranker
clip_tok = clip_tokenizer("cpu")
print(f"the notebook's own pipeline: {pipe.native_size}x{pipe.native_size} pictures, {pipe.grid}x{pipe.grid} tokens")

# %% [markdown]
# Now wait for the server's `/health` endpoint, with a deadline, and stop early if the process dies (then
# its log says why). A server is ready when it answers, not when its process exists: loading the model
# takes a few seconds.

# %%
deadline = time.monotonic() + 180
while True:
    if server.poll() is not None:
        raise RuntimeError(f"the server exited with code {server.returncode}:\n{LOG.read_text()[-2000:]}")
    try:
        health = httpx.get(BASE + "/health", timeout=2).json()
        break
    except httpx.TransportError:  # not listening yet
        if time.monotonic() > deadline:
            stop_server()
            raise TimeoutError(f"no answer from the server within 180 s; its log:\n{LOG.read_text()[-2000:]}")
        time.sleep(0.25)
print(f"server ready: {health['model']}, status {health['status']}; batches of up to {health['max_batch']} "
      f"images, {health['max_queue']} requests may wait")

# %% [markdown]
# ## 2. The official client
#
# The official client needs two things to talk to another server: `base_url`, where the API lives, and
# `api_key`, read from the environment. Everything else is OpenAI's own interface. `models.list()` asks the
# server which models it serves:

# %%
client = OpenAI(base_url=BASE + "/v1", api_key=os.environ[API_KEY_ENV])
print("models:", [model.id for model in client.models.list()])

# %% [markdown]
# And the call itself: three pictures of a prompt, 256×256, returned inside the answer as base64
# (`response_format="b64_json"`). No seed is given, so the server draws one, and each run of this cell
# gives other pictures.

# %%
PROMPT = "a small red circle above a blue square"
response = client.images.generate(model="dalle-lessons-cpu", prompt=PROMPT, n=3, size="256x256",
                                  response_format="b64_json")

# %% [markdown]
# The pictures come back as base64 text inside the answer. Two helpers for the rest of the lesson: `pictures`
# decodes an answer into PIL images, and `show` draws a row of them.

# %%
def pictures(response) -> list[Image.Image]:
    """The PIL images of a b64_json answer."""
    return [Image.open(io.BytesIO(base64.b64decode(item.b64_json))).convert("RGB") for item in response.data]


def show(images, titles=None, side=1.7, title=None):
    """A row of pictures, drawn pixel-sharp."""
    fig, axes = plt.subplots(1, len(images), figsize=(side * len(images), side + 0.4), squeeze=False)
    for ax, image, label in zip(axes[0], images, titles or [""] * len(images)):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# The three pictures, and the fields of the answer:

# %%
images = pictures(response)
show(images, [f"image {k}" for k in range(3)], title=repr(PROMPT))
print("answer fields:", sorted(response.model_dump(exclude_none=True)))
print(len(images), "pictures,", images[0].size, images[0].mode)

# %% [markdown]
# `created` and `data` are OpenAI's fields; `size`, `output_format` and `seed` are extra fields of this
# server (today's OpenAI API also returns `size` and `output_format`; `seed` is the course's, see section 4).
#
# The default answer is a **URL** instead (`response_format="url"`): the server keeps the picture and sends
# an address. Anything that speaks HTTP can fetch it — here `httpx`, the library the official client is
# built on. The image's name is a random 192-bit string; knowing it is the permission to read it (no key
# needed), and the server keeps images an hour at most.

# %%
response = client.images.generate(model="dalle-lessons-cpu", prompt=PROMPT, n=1, size="256x256",
                                  extra_body={"seed": 0})
url = response.data[0].url
assert url.startswith(BASE + "/v1/files/images/")
fetched = httpx.get(url)
picture = Image.open(io.BytesIO(fetched.content))
print("url: <server>/v1/files/images/<name>, the name", len(url.rsplit("/", 1)[1]), "random characters")
print("fetched:", fetched.status_code, fetched.headers["content-type"], picture.size)

# %% [markdown]
# ### Check it against the library
#
# The server is a wrapper, not a second model: with the same prompt and seed, its pictures must be exactly
# those of `pipe.generate` in this notebook, and a larger `size` must be the same picture blown up (each model
# pixel becomes a block, nearest-neighbour). Asked at the model's own size, 32×32:

# %%
ours = pipe.generate(PROMPT, n=3, seed=7)  # in this process, native 32x32
theirs = pictures(client.images.generate(model="dalle-lessons-cpu", prompt=PROMPT, n=3, size="32x32",
                                         response_format="b64_json", extra_body={"seed": 7}))
big = pictures(client.images.generate(model="dalle-lessons-cpu", prompt=PROMPT, n=3, size="256x256",
                                      response_format="b64_json", extra_body={"seed": 7}))
assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(ours, theirs))
assert all(np.array_equal(np.asarray(b.resize((32, 32), Image.Resampling.NEAREST)), np.asarray(a))
           for a, b in zip(ours, big))
print("the API's 3 pictures (seed 7) are pipe.generate's, pixel for pixel ✓")
print("at 256x256 each model pixel is an 8x8 block ✓")

# %% [markdown]
# ## 3. Then and now: the pre-1.0 call
#
# The tutorials' call belongs to the `openai` package **before version 1.0** (it worked up to 0.28). Version
# 1.0, released in November 2023, replaced the module-level functions with a client object. Side by side:
#
# ```python
# # openai 0.28 and earlier (the tutorials' snippet)      # openai 1.0 and later (today)
# import openai                                           from openai import OpenAI
# openai.api_key = "sk-..."        # a secret in code      client = OpenAI()  # reads OPENAI_API_KEY
# response = openai.Image.create(                         response = client.images.generate(
#     prompt="an armchair in the shape of an avocado",        model="dall-e-2",
#     n=3, size="1024x1024")                                  prompt="an armchair in the shape of an avocado",
# urls = [d["url"] for d in response["data"]]                 n=3, size="1024x1024")
#                                                         urls = [d.url for d in response.data]
# ```
#
# Three differences: a **client object** holds the address, key and retry settings (so one program can talk
# to two servers); the answer is a typed object (`response.data[0].url`) instead of a dictionary; and the
# model is named. What happens if you run the old call with today's package:

# %%
try:
    openai.Image.create(prompt="an armchair in the shape of an avocado", n=3, size="1024x1024")
except Exception as error:  # noqa: BLE001 - we show whatever the installed client says
    print(f"{type(error).__name__}: {str(error).strip().splitlines()[0]}")

# %% [markdown]
# The server speaks both dialects: with openai 0.28 (in its own environment) and `openai.api_base` pointing
# at it, the old snippet gets the same answer — `tests/test_server.py` runs it where that package installs.
# And the snippet's `size="1024x1024"` works here too: the 32×32 picture blown up 32 times.

# %%
seed_size = pictures(client.images.generate(prompt="an armchair in the shape of an avocado", size="1024x1024",
                                            response_format="b64_json", extra_body={"seed": 0}))[0]
block = np.asarray(seed_size)[:32, :32].reshape(-1, 3)
print("1024x1024 answer:", seed_size.size, "- its top-left 32x32 block is one colour:",
      len(np.unique(block, axis=0)) == 1)
small = seed_size.resize((32, 32), Image.Resampling.NEAREST)  # back to the model's own pixels
print("what the judge sees in it:", describe_reading(judge.read_image(small)))

# %% [markdown]
# An armchair in the shape of an avocado was DALL·E's most famous picture. Our model has only ever seen
# coloured shapes, so the prompt's words mean nothing to it (the tokenizer spells the unknown words letter by
# letter), and it draws whatever its training makes likely. A model can only draw the world it was
# trained on — the paper's model was trained on 250 million image–text pairs from the internet.
#
# ## 4. The course's extensions: seed, sampling, rerank
#
# OpenAI's images API has no seed and no sampling settings. This server accepts them as **extensions**, in
# the same JSON body. The official client sends extra fields with `extra_body`, without any change to the
# client:
#
# | field | what it does | lesson |
# |---|---|---|
# | `seed` | image *k* of seed *s* is the same for any `n`, alone or batched with other people's requests | 07 |
# | `temperature`, `top_k`, `top_p` | how the next token is drawn | 07 |
# | `guidance_scale` | classifier-free guidance: how much more the caption counts | 07 |
# | `rerank` | sample this many candidates per picture, keep CLIP's favourite | 08 |
#
# What **same seed** means here: each picture has its own random stream, seeded from (seed, *k*). So image 0
# of `n=3, seed=7` is image 0 of `n=1, seed=7`; the other pictures of a request do not change it, and neither
# do the strangers' requests that the server batches with it: it draws the same tokens in any batch. (In a
# batch of another size, the decoder's floating-point rounding can move a rare pixel by one level of 255.)

# %%
one = pictures(client.images.generate(prompt=PROMPT, n=1, size="32x32", response_format="b64_json",
                                      extra_body={"seed": 7}))[0]
assert np.abs(np.asarray(one, int) - np.asarray(theirs[0], int)).max() <= 1  # see the note on rounding above
print("image 0 of (n=1, seed 7) == image 0 of (n=3, seed 7) ✓")

# %% [markdown]
# A small experiment through the API: eight pictures of a two-object caption under three settings, each
# read by the judge of lesson 01. The defaults of `pipe.generate`; plain sampling at temperature 1 (the paper
# sampled at temperature 1 and relied on reranking); and the defaults with `rerank=4`, CLIP's choice of four
# candidates per picture. Eight pictures make a coarse measurement (one picture is 12.5 %): read the
# direction, not the digits.

# %%
HARD = "a small green square above a large red triangle"
settings = {"defaults (t 0.7, top-p 0.9, guidance 1.5)": {},
            "plain: temperature 1, no top-p, no guidance": {"temperature": 1.0, "top_p": None, "guidance_scale": 1.0},
            "defaults + rerank 4": {"rerank": 4}}
accepted = {}
for name, extra in settings.items():
    drawn = pictures(client.images.generate(prompt=HARD, n=8, size="32x32", response_format="b64_json",
                                            extra_body={"seed": 0, **extra}))
    verdicts = [judge.score(p, HARD).all_correct for p in drawn]
    accepted[name] = sum(verdicts)
    print(f"{name:45s} {''.join('✓' if v else '✗' for v in verdicts)}  {sum(verdicts)}/8")
assert accepted["defaults + rerank 4"] >= accepted["defaults (t 0.7, top-p 0.9, guidance 1.5)"]

# %% [markdown]
# On these eight pictures reranking helps most, as lesson 08 measured on many more captions; the two
# sampling settings are within a picture or two of each other, which eight pictures cannot tell apart.
# All three runs are one `images.generate` call each: the settings travel with the request, so two programs
# can use different settings against the same server.

# %% [markdown]
# ## 5. Errors as the client sees them
#
# The server answers bad input with OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`,
# and the status OpenAI would use. The client turns each status into an exception class —
# `BadRequestError` (400), `AuthenticationError` (401), `NotFoundError` (404), `RateLimitError` (429) — with
# the fields as attributes, so a program can react to *which* field was wrong:

# %%
attempts = {
    "a size it does not draw": dict(prompt=PROMPT, size="300x300"),
    "OpenAI's model name": dict(prompt=PROMPT, model="dall-e-3"),
    "a typo in an extension": dict(prompt=PROMPT, extra_body={"sed": 7}),
}
for what, fields in attempts.items():
    try:
        client.images.generate(**fields)
    except openai.BadRequestError as error:
        print(f"{what}: {type(error).__name__} {error.status_code}, param={error.param!r}, code={error.code!r}")
        print("   ", error.body["message"][:150])
try:
    OpenAI(base_url=BASE + "/v1", api_key="not-the-key").images.generate(prompt=PROMPT)
except openai.AuthenticationError as error:
    print(f"a wrong key: {type(error).__name__} {error.status_code}, code={error.code!r}")

# %% [markdown]
# Two details worth knowing. The client **retries** some failures by itself: a 429 (the server's queue is
# full), a 5xx or a dropped connection, twice by default (`max_retries`), waiting as long as the
# server's `retry-after` header says. A 400 is never retried — sending the same bad request again cannot
# help. And a typo in an extension is an error, not silently ignored: a server that ignored `sed` would
# hand you random pictures while you believed you had fixed the seed.
#
# ### Many clients at once: batching
#
# Why run a server at all, instead of calling `pipe.generate` in each program? Because a server sees many
# requests at once and can **batch** them. Sampling costs one transformer step per token for every picture
# in the batch together, and on a CPU a step for 64 pictures costs far less than 64 steps for one (the
# fixed costs of a step are paid once, and the arithmetic runs on larger, more efficient matrix products). So the
# server's worker takes the oldest waiting request, waits a few milliseconds for others with the same
# sampling settings, and samples all their pictures in one call — without changing what any of them draws
# (each keeps its own random stream). Measured with
#
# ```
# python benchmarks/bench_server.py      # 100 concurrent AsyncOpenAI requests against `serve`
# ```
#
# all 100 requests were answered (35 after a 429 and a retry), none lost or duplicated, at 4.5 images/s
# against 0.69 for one-at-a-time pipeline calls: **6.6× from batching** (on a busy 2-core machine; read the
# absolute figures as rough). Exercise 2 lets you measure it yourself.
#
# ## 6. Applications
#
# Three small programs, each a real use of the API through the official client.
#
# ### Game assets: a sprite sheet
#
# A game needs many small pictures in one file (a **sprite sheet**) plus an index of where each sits (an
# **atlas**). Each sprite is asked for at the centre on a black background, so that the sheet is uniform and
# the background can become transparent. An asset pipeline checks what it makes: each sprite is read by the
# judge, and a rejected one is asked for again with the next seed (at most three tries).

# %%
SPRITES = {"coin": "a small yellow circle", "ruby": "a small red diamond", "spike": "a large blue triangle",
           "medkit": "a small green cross", "orb": "a large purple circle", "crate": "a small orange square",
           "shield": "a large cyan diamond", "heart": "a small red cross"}
CELL = 64
sheet = Image.new("RGBA", (CELL * 4, CELL * 2))
atlas = {}
for k, (name, thing) in enumerate(SPRITES.items()):
    prompt = f"{thing} in the center on a black background"
    for seed in range(3):
        sprite = pictures(client.images.generate(prompt=prompt, n=1, size=f"{CELL}x{CELL}",
                                                 response_format="b64_json", extra_body={"seed": seed}))[0]
        if judge.score(sprite, prompt).all_correct:
            break
    rgba = np.asarray(sprite.convert("RGBA")).copy()
    rgba[(np.abs(rgba[..., :3].astype(int) - 15) < 24).all(-1), 3] = 0  # the black background -> transparent
    x, y = CELL * (k % 4), CELL * (k // 4)
    sheet.paste(Image.fromarray(rgba, "RGBA"), (x, y))
    atlas[name] = {"x": x, "y": y, "w": CELL, "h": CELL, "prompt": prompt, "seed": seed}

# %% [markdown]
# The sheet is saved as a PNG beside its atlas, a JSON file, and shown here:

# %%
out = Path(tempfile.mkdtemp(prefix="dalle-lessons-sprites-"))
sheet.save(out / "sprites.png")
(out / "sprites.json").write_text(json.dumps(atlas, indent=1))
plt.figure(figsize=(6, 3.2))
plt.imshow(sheet, interpolation="nearest")
plt.title("sprites.png (transparent where the background was)", fontsize=9)
plt.axis("off")
plt.show()
print("saved sprites.png", Image.open(out / "sprites.png").size, "and sprites.json with", len(atlas), "entries")
print("seeds used:", {name: entry["seed"] for name, entry in atlas.items()})
print("atlas['coin'] =", atlas["coin"])

# %% [markdown]
# The sheet and its atlas are in the temporary folder `out` (its path differs on every machine, so it is not
# printed here: `print(out)` shows it). A game engine loads `sprites.png` once and draws each sprite from
# its rectangle in `sprites.json`.
#
# ### An image search engine
#
# CLIP (lesson 08) maps pictures and captions into one space, which is all a search engine needs. The
# **index** is one CLIP embedding per picture, computed once; a **query** is embedded and compared with all
# of them (a dot product of unit vectors, the cosine), and the best come first. The gallery here: twelve
# pictures from six prompts, generated through the API at the model's size.

# %%
GALLERY = ["a small red circle", "a large red triangle", "a small blue circle at the top left",
           "a large green square", "a yellow triangle to the left of a purple circle",
           "a small red square below a cyan diamond"]
gallery, origin = [], []
for k, prompt in enumerate(GALLERY):
    for image in pictures(client.images.generate(prompt=prompt, n=2, size="32x32", response_format="b64_json",
                                                 extra_body={"seed": 10 + k})):
        gallery.append(image)
        origin.append(prompt)
index = embed_images(clip, torch.stack([torch.from_numpy(np.array(p)).permute(2, 0, 1) for p in gallery]))
print("index:", tuple(index.shape), "(one unit vector per picture)")

# %% [markdown]
# A search embeds the query and takes one matrix product with the index: a cosine per picture, the best first.

# %%
def search(query: str, k: int = 3) -> list[tuple[int, float]]:
    """The k gallery pictures CLIP finds closest to the query: (position, cosine)."""
    scores = (embed_texts(clip, clip_tok, [query]) @ index.T)[0]
    best = scores.argsort(descending=True)[:k]
    return [(int(i), float(scores[i])) for i in best]

# %% [markdown]
# Four queries, each hit checked by the judge, and the four best pictures for the first one:

# %%
for query in ["a red circle", "a blue circle", "a large green square", "a purple circle"]:
    hits = search(query)
    print(f"{query!r}:")
    for rank, (i, cosine) in enumerate(hits, 1):
        verdict = "✓" if judge.score(gallery[i], query).all_correct else "✗"
        print(f"   {rank}. {cosine:.3f} {verdict} picture {i:2d}, made from {origin[i]!r}")
show([gallery[i] for i, _ in search("a red circle", 4)], [f"{c:.2f}" for _, c in search("a red circle", 4)],
     title="'a red circle': the four best, by cosine")

# %% [markdown]
# The judge (✓/✗) checks each hit against the query. Two things to notice. A search engine **ranks what it
# has**: nothing in the gallery is *only* a purple circle, so "a purple circle" still returns three pictures,
# and the judge rejects them all (its count of objects must match the caption's). The one picture that holds
# a purple circle, beside a yellow triangle, does come first, but with a middling score: CLIP compares the
# query with the whole picture. And the scores are only comparable within one query: a cosine of 0.6 means
# "close" for one query and "nothing better" for another. Real engines index millions of pictures the same
# way, with an approximate nearest-neighbour index instead of one matrix product.
#
# ### An image editor: keep the top, redraw the rest
#
# `images.edit` takes a picture, a **mask** and a prompt. In OpenAI's convention the mask's transparent
# pixels (alpha 0) mark what to redraw. Here: a red circle at the top; keep the top half, and redraw the
# bottom half from a new prompt that adds a second shape. `edit_mask(side, grid, keep_rows)` makes the
# mask: opaque over the top 4 of the 8 token rows.

# %%
def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


original = pictures(client.images.generate(prompt="a large red circle at the top", size="256x256",
                                           response_format="b64_json", extra_body={"seed": 0}))[0]
mask = edit_mask(256, pipe.grid, keep_rows=pipe.grid // 2)
NEW = "a large red circle above a green square"
edited = pictures(client.images.edit(image=("original.png", png(original), "image/png"),
                                     mask=("mask.png", png(mask), "image/png"), prompt=NEW, n=3, size="256x256",
                                     response_format="b64_json", extra_body={"seed": 0}))
mask_view = Image.fromarray(np.asarray(mask)[..., 3]).convert("RGB")  # the alpha channel, as grey
show([original, mask_view] + edited, ["original", "mask (white: keep)"] + [f"edit {k}" for k in range(3)],
     title=f"keep the top half, redraw the rest: {NEW!r}")
print("original follows its prompt:", judge.score(original, "a large red circle at the top").all_correct)
print("edits follow the new prompt:", [judge.score(e, NEW).all_correct for e in edited])
top = slice(0, 128)
print("top half kept: largest pixel change",
      max(int(np.abs(np.asarray(e, int)[top] - np.asarray(original, int)[top]).max()) for e in edited), "of 255")

# %% [markdown]
# The top half comes back through the dVAE (encoded to tokens and decoded again), so it is kept as tokens,
# nearly but not always exactly as pixels; the printed change says how close. Now the edit everyone tries
# first: a round hole in the middle, "redraw just this".

# %%
yy, xx = np.mgrid[:256, :256]
hole = np.full((256, 256, 4), 255, np.uint8)
hole[(yy - 128) ** 2 + (xx - 128) ** 2 < 40 ** 2, 3] = 0  # transparent disc: redraw here
try:
    client.images.edit(image=("original.png", png(original), "image/png"),
                       mask=("mask.png", png(Image.fromarray(hole, "RGBA")), "image/png"), prompt=NEW)
except openai.BadRequestError as error:
    print(f"{type(error).__name__} {error.status_code}, param={error.param!r}")
    print(error.body["message"])

# %% [markdown]
# **Why a 400.** DALL·E draws its image tokens in raster order, top row first, each one conditioned on the
# caption and on every token *before* it (lessons 06 and 07). Given the top rows, it can continue them: that is
# the image completion of lesson 07, and what the edit above did. It cannot keep the bottom and redraw the top,
# nor fill a hole in the middle: a token inside the hole would have to agree with tokens *after* it, and the
# model was never trained to condition on the future. So the server accepts one kind of mask, a band at the
# bottom made of whole token rows, and refuses the rest with a message that says which row breaks the rule,
# rather than quietly redrawing more than you asked. (Models that fill any hole exist — OpenAI's DALL·E 2
# edits took arbitrary masks — but they are built differently: a diffusion model denoises the whole picture
# at once, and can keep any pixels fixed while it does.) Exercise 1 turns a painted mask into the smallest
# edit this model can make.
#
# ## 7. The playground
#
# For trying prompts by hand, `playground()` opens an ipywidgets app in JupyterLab or Colab: prompt, `n`,
# seed, the sampling settings and `rerank`; a Generate button; the pictures drawn token row by row with a
# progress bar; and under each picture the judge's reading and CLIP's score. It runs the pipeline in the
# notebook's own process (no server needed); we hand it the pipeline we already loaded. Where widgets cannot
# be shown (a plain terminal, or the course's tests), it prints one fixed line instead.

# %%
from dalle_lessons.playground import playground

app = playground(pipe)
app.prompt.value, app.n.value, app.seed.value = PROMPT, 3, 7  # as if typed into the boxes
app.click()  # what the Generate button does
app

# %% [markdown]
# The playground draws with the same random streams as the API and `pipe.generate`, so seed 7 gives the same
# three pictures here as in section 2:

# %%
assert all(np.array_equal(np.asarray(p.image), np.asarray(t)) for p, t in zip(app.state.pictures, theirs))
print("the playground's 3 pictures (seed 7) == the API's ✓")
print("under picture 0:", app.state.pictures[0].caption.splitlines()[0])

# %% [markdown]
# ## 8. Today's hosted API, and getting DALL·E right
#
# The same client code talks to OpenAI's own service once `base_url` and the key change — and here they
# change by removing them: `OpenAI()` defaults to `https://api.openai.com/v1` and reads `OPENAI_API_KEY` from
# the environment. Shown, not run (this course never needs the network):
#
# ```python
# from openai import OpenAI
# client = OpenAI()                                          # api.openai.com, key from OPENAI_API_KEY
# result = client.images.generate(model="gpt-image-1", prompt="an armchair in the shape of an avocado",
#                                 size="1024x1024")          # GPT image models answer in base64
# picture = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
# ```
#
# The request has the same shape, but the model behind it is not the one this course builds:
#
# - **DALL·E (2021)**, the model of the paper and of this course — a dVAE and a 12-billion-parameter
#   transformer that writes image tokens after text tokens, reranked by CLIP — was never offered through the
#   API. OpenAI released its dVAE's weights, not the transformer.
# - **DALL·E 2** (Ramesh et al., 2022) generates a picture with a **diffusion** decoder from a CLIP image
#   embedding. **DALL·E 3** (Betker et al., 2023) is also a diffusion model, trained on better captions.
#   Both have been served through this same images API (`model="dall-e-2"`, `"dall-e-3"`).
# - The **GPT image models** (`gpt-image-1` and its successors, at the time of writing) bring the image
#   generation of ChatGPT to the API. OpenAI has published few details: its system card for GPT-4o's image
#   generation (March 2025) calls it an autoregressive model built into ChatGPT, unlike DALL·E's diffusion.
#   Whatever it is exactly, it is a much later and much larger model than the 2021 transformer.
#
# Models, sizes and fields change over time (`n` above 1 and `response_format="url"` are not available for
# every model, for instance); OpenAI's API reference is the authority on what a model accepts today. Two
# corrections of common accounts, then:
#
# - **`openai.Image.create` is the pre-1.0 client.** It was removed in openai 1.0 (November 2023); today's
#   call is `client.images.generate`, on a client object.
# - **Today's hosted image models are not the 2021 DALL·E.** Calling `model="dall-e-3"` or `"gpt-image-1"`
#   does not run the transformer of the paper; this course's server is one of the few places where a
#   DALL·E-style transformer answers that API.
# - And **API keys come from the environment**, never from code.
#
# ## 9. Exercises
#
# Each exercise is a function for you to fill in: replace `raise NotImplementedError` with your code and run
# the cell below it. The check says, in plain words, what is wrong. Solutions are in
# [solutions/11_dalle_from_python.ipynb](solutions/11_dalle_from_python.ipynb).

# %%
from dalle_lessons.exercises.l11_api import check_generate_concurrently, check_redraw_mask

# %% [markdown]
# ### Exercise 1: a mask the model can honour
#
# An editor lets the user **paint** what to redraw: a stroke, a blob, a hole anywhere. The server accepts only
# a band of whole token rows at the bottom. Write `redraw_mask(painted, grid)`: `painted` is an RGBA PIL image
# (square, any side, not necessarily a multiple of `grid`) whose pixels with alpha exactly 0 were painted;
# `grid` is the number of token rows (8 for the course's model). Return the **smallest** mask the server
# accepts that redraws every painted pixel: an RGBA image of the same size, opaque (alpha 255) over the token
# rows above the first token row that holds a painted pixel, transparent (alpha 0) from that row to the bottom;
# all opaque when nothing is painted. Pixel row `y` belongs to token row `y * grid // side` (the server's
# rule). Then predict, and try it on the hole of section 6: how much of the picture does a small hole in the
# middle cost you?

# %%
def redraw_mask(painted: Image.Image, grid: int) -> Image.Image:
    # Your code here.
    raise NotImplementedError


ok = check_redraw_mask(redraw_mask)

# %% [markdown]
# ### Exercise 2: many requests at once
#
# Section 5 quoted a 6.6× gain from batching. Measure it yourself. Write `generate_concurrently(client, prompts,
# seed)`: send one `client.images.generate` request per prompt (`n=1`, `size="32x32"`,
# `response_format="b64_json"`, `extra_body={"seed": seed}`), **all at once** — the official client is
# synchronous, so use threads, e.g. `concurrent.futures.ThreadPoolExecutor` — and return the pictures as PIL
# images, in the order of `prompts`. Then, against the server: predict the gain for six prompts, time a plain
# loop of the same six requests against your function, and check that both give the same pictures.

# %%
def generate_concurrently(client, prompts: list[str], seed: int) -> list[Image.Image]:
    # Your code here.
    raise NotImplementedError


ok = check_generate_concurrently(generate_concurrently)

# %% [markdown]
# ## 10. Stop the server
#
# The last cell stops what the first one started: a Ctrl-C, which lets the server answer what it is working
# on and refuse what is still waiting, then exit. (`atexit` would have done it when the kernel stops, but a
# program should tidy up when it is done, not when it dies.)

# %%
code = stop_server()
print("server stopped, exit code", code)
print("its log ends with:", LOG.read_text().strip().splitlines()[-1])
shutil.rmtree(LOG.parent, ignore_errors=True)  # the log's temporary folder

# %% [markdown]
# ## Takeaways
#
# - The course's model answers **OpenAI's images API**, so the official client works against it with two
#   changes, `base_url` and `api_key`; the same code reaches OpenAI's service by changing them back.
# - **Keys live in the environment**, never in code or on a command line. Servers started from a notebook get
#   a free port, a health check with a deadline, and a stop that runs even when a cell fails.
# - `openai.Image.create` is the **pre-1.0** client; today's call is `client.images.generate`. And the hosted
#   models behind that call today (DALL·E 2 and 3, the GPT image models) are **not the 2021 transformer**.
# - A server earns its keep by **batching**: concurrent requests share one sampling call (6.6× on two cores
#   for 100 requests), without changing what any picture draws, because each has its own random stream.
# - An autoregressive model can **continue a prefix** of token rows, so its editor can keep the top and redraw
#   the rest — and must refuse a hole in the middle, saying why.
#
# ## Check your understanding
#
# 1. Name three ways a key written into a notebook's code can leak. Why is passing it with `--api-key` on the
#    command line not much better?
# 2. The notebook stops the server in its last cell *and* registers `atexit`. When does each one run, and
#    which situation does neither cover?
# 3. Why does image 0 of `n=3, seed=7` equal image 0 of `n=1, seed=7`, even when the server batches your
#    request with someone else's? What would break if the server drew every picture of a batch from one
#    random stream?
# 4. The client retries a 429 but not a 400. Why is that the right choice for each?
# 5. Why can the course's model keep the top half of a picture and redraw the bottom, but not the reverse?
#    What kind of model could do both?
#
# The answers are in the [solutions notebook](solutions/11_dalle_from_python.ipynb).
#
# **Next: [12 · scaling up](12_scaling_up.ipynb)**: the arithmetic of the paper's 12B model, mixed precision, and
# training in several processes.
