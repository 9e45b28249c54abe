"""The images API under load: many concurrent clients against one-at-a-time pipeline calls.

    python benchmarks/bench_server.py                           # 100 concurrent requests, the shipped cpu model
    python benchmarks/bench_server.py --requests 20 --baseline 2   # a quick check

Starts `python -m dalle_lessons serve --port 0` as its own process, fires `--requests` requests at once
from `AsyncOpenAI` (each its own caption and seed; a 429 is retried after its retry-after), and checks
that every request is answered exactly once with its own images: each answer's seed must be the one asked
for, and the first `--baseline` answers must equal, pixel for pixel, what `TextToImage.generate` draws
for the same caption and seed in this process. That same loop of one-at-a-time calls is the peer the
batching gain is measured against (pipeline calls only: no HTTP, no PNG, the baseline's best case).
Peak memory is the server process's peak resident set (VmHWM).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import openai  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header  # noqa: E402
from dalle_lessons.pipeline import TextToImage  # noqa: E402

CAPTIONS = ["a small red circle", "a big blue square to the left of a green triangle", "a yellow triangle",
            "a small purple square above a red circle", "a large green circle", "an orange square below a blue circle"]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "dalle_lessons", "serve", "--port", "0", "--device", "cpu",
               "--max-queue", str(args.max_queue), "--max-batch", str(args.max_batch)]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    found = re.search(r"(http://\S+/v1)", line)
    if not found:
        server.kill()
        raise SystemExit(f"the server did not start: {line.strip() or 'no output'}")
    return server, found[1]


def memory_mb(pid: int, field: str) -> float | None:
    """VmRSS (now) or VmHWM (peak) of a process, in MB (Linux; None elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def one_request(client: openai.AsyncOpenAI, i: int, args: argparse.Namespace) -> dict:
    """Request i until it is answered: 429s wait their retry-after and try again."""
    start, retries = time.perf_counter(), 0
    while True:
        try:
            response = await client.images.generate(prompt=CAPTIONS[i % len(CAPTIONS)], n=args.n, size=args.size,
                                                    response_format="b64_json", extra_body={"seed": i})
        except openai.RateLimitError as error:
            retries += 1
            await asyncio.sleep(float(error.response.headers.get("retry-after", "1")))
            continue
        except openai.APIError as error:
            return {"i": i, "ok": False, "error": f"{type(error).__name__}: {error}", "retries": retries}
        return {"i": i, "ok": True, "seconds": time.perf_counter() - start, "retries": retries,
                "seed": response.model_extra.get("seed"), "images": [item.b64_json for item in response.data]}


async def load(url: str, args: argparse.Namespace) -> tuple[list[dict], float]:
    async with openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=3600) as client:
        await one_request(client, 10**6, argparse.Namespace(n=1, size=args.size))  # warm-up, not counted
        start = time.perf_counter()
        results = await asyncio.gather(*(one_request(client, i, args) for i in range(args.requests)))
        return results, time.perf_counter() - start


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="concurrent requests (default 100)")
    parser.add_argument("--n", type=int, default=1, help="images per request (default 1)")
    parser.add_argument("--size", default="256x256", help="image size (default 256x256)")
    parser.add_argument("--baseline", type=int, default=5,
                        help="one-at-a-time pipeline calls to time and compare against (default 5)")
    parser.add_argument("--max-queue", type=int, default=64, help="the server's queue (default 64: some 429s)")
    parser.add_argument("--max-batch", type=int, default=64, help="the server's batch cap (default 64)")
    parser.add_argument("--checkpoint", default=None, help="a saved pipeline folder (default: the shipped model)")
    args = parser.parse_args()
    if args.requests < 1 or not 0 <= args.baseline <= args.requests:
        raise SystemExit("--requests must be >= 1 and --baseline between 0 and --requests")

    server, url = start_server(args)
    try:
        idle = memory_mb(server.pid, "VmRSS")
        results, wall = asyncio.run(load(url, args))
        peak = memory_mb(server.pid, "VmHWM")
        health = httpx.get(url.removesuffix("/v1") + "/health").json()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()

    answered = [r for r in results if r["ok"]]
    ids = [r["i"] for r in answered]
    wrong = [r["i"] for r in answered if r["seed"] != r["i"] or len(r["images"]) != args.n]
    latencies = sorted(r["seconds"] for r in answered)
    images = sum(len(r["images"]) for r in answered)

    pipe = TextToImage.from_pretrained(args.checkpoint, device="cpu")
    pipe.generate(CAPTIONS[0], n=1, seed=0)  # warm-up
    start, mismatched = time.perf_counter(), []
    for i in range(args.baseline):
        expected = pipe.generate(CAPTIONS[i % len(CAPTIONS)], n=args.n, seed=i, size=args.size)
        got = next((r for r in answered if r["i"] == i), None)
        if got is None or any(not np.array_equal(np.asarray(e), decode(g)) for e, g in zip(expected, got["images"])):
            mismatched.append(i)
    single = time.perf_counter() - start

    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
    rate, single_rate = images / wall, (args.baseline * args.n / single if args.baseline else float("nan"))
    print(header(f"Images API under load: {args.requests} concurrent requests x n={args.n} at {args.size}"))
    print(f"server: {url} ({args.checkpoint or 'the shipped cpu model'}), max batch {args.max_batch}, "
          f"max queue {args.max_queue}; clients: AsyncOpenAI, a 429 waits retry-after and retries\n")
    print(f"{'':28} {'images':>7} {'seconds':>8} {'images/s':>9} {'p50 s':>7} {'p95 s':>7}")
    print(f"{'server, concurrent clients':28} {images:7d} {wall:8.1f} {rate:9.2f} {p(0.5):7.1f} {p(0.95):7.1f}")
    if args.baseline:
        print(f"{'pipeline, one call at a time':28} {args.baseline * args.n:7d} {single:8.1f} {single_rate:9.2f} "
              f"{single / args.baseline:7.1f} {'':>7}")
        print(f"\nbatching gain: {rate / single_rate:.1f}x images/s")
    print(f"answered {len(answered)} of {args.requests} (lost {args.requests - len(set(ids))}, duplicated "
          f"{len(ids) - len(set(ids))}, wrong seed or count {len(wrong)}); 429s retried: "
          f"{sum(r['retries'] for r in results)}; failed: {len(results) - len(answered)}")
    print(f"pixel-exact against the one-at-a-time calls: {args.baseline - len(mismatched)} of {args.baseline}")
    memory = f"{idle:.0f} MB idle, {peak:.0f} MB peak (VmHWM)" if idle and peak else "not measured (Linux only)"
    print(f"server batches: {health['batches']} (the warm-up included), largest {health['largest_batch']} requests; "
          f"server memory: {memory}")
    if len(answered) != args.requests or wrong or mismatched or len(ids) != len(set(ids)):
        print(f"FAILED: errors {[r['error'] for r in results if not r['ok']][:3]}, wrong {wrong[:5]}, "
              f"mismatched {mismatched[:5]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
