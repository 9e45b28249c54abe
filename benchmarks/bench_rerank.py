"""Seconds per caption to rerank N samples with CLIP: batched (the package) against one sample at a time.

    python benchmarks/bench_rerank.py              # N = 16 and 64, the shipped cpu models, 2 threads

`TextToImage.generate_ranked(caption, n=1, rerank=N)` samples the N candidates in one batch (KV cache,
the default sampling), decodes them together and scores them in one CLIP pass. The naive way, which a
loop around `generate` gives, draws and scores one candidate at a time. Both pick from N candidates;
the table shows what batching buys, and what each N costs a user.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header  # noqa: E402
from dalle_lessons.pipeline import TextToImage  # noqa: E402

CAPTION = "a small red circle to the left of a large blue triangle"


def one_at_a_time(pipe: TextToImage, caption: str, rerank: int, seed: int) -> torch.Tensor:
    """N separate samples, each decoded and scored on its own; returns the best one's tokens."""
    text = pipe.encode_prompts(caption)
    best, best_score = None, -2.0
    for k in range(rerank):
        ids = pipe.generate_tokens(caption, n=1, seed=seed * 1000 + k)
        score = pipe.reranker.score(pipe.decode(ids), text).item()
        if score > best_score:
            best, best_score = ids, score
    return best


def timed(fn, repeats: int) -> float:
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipe = TextToImage.from_pretrained(device="cpu")
    pipe.reranker  # load CLIP before timing
    pipe.generate_ranked(CAPTION, n=1, rerank=2, seed=0)  # warm-up
    print(header("Reranking N samples of one caption with CLIP (seconds per caption, median)"))
    print(f"caption: {CAPTION!r}; default sampling; {args.repeats} repeats\n")
    print(f"{'N':>4} {'batched':>9} {'one at a time':>14} {'speed-up':>9} {'ms per candidate':>17}")
    for n in args.ns:
        batched = timed(lambda r: pipe.generate_ranked(CAPTION, n=1, rerank=n, seed=r), args.repeats)
        single = timed(lambda r: one_at_a_time(pipe, CAPTION, n, r), args.repeats)
        print(f"{n:4d} {batched:9.2f} {single:14.2f} {single / batched:8.1f}x {1000 * batched / n:17.1f}")


if __name__ == "__main__":
    main()
