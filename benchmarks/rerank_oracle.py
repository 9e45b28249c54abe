"""How much could reranking help? The judge as a perfect reranker, over k samples per caption.

    python benchmarks/rerank_oracle.py              # --samples 16 --captions 100

For the captions of `evaluate generation` (sets a, b, c), draws `--samples` images per caption with the
default sampling and reports, per set, the share of captions for which at least one of the first k
images is all-correct (k = 1, 4, ..., samples). DALL·E reranked 512 samples with CLIP (lesson 08); a real
reranker can only do worse than this oracle, so it bounds what reranking can buy. About 2 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header  # noqa: E402
from dalle_lessons import judge  # noqa: E402
from dalle_lessons.evaluate import _generate, _load_pipeline, _prepare, generation_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--captions", type=int, default=100)
    args = parser.parse_args()
    pipe, _ = _load_pipeline(None)
    prepared = _prepare(pipe, args.captions)
    settings = generation_settings()
    ks = [k for k in (1, 4, 16, 64, 256) if k <= args.samples]
    print(header("Best of k: the judge as a perfect reranker"))
    print(f"sampling: {settings}; {args.captions} captions per set, {args.samples} samples each, seed 0\n")
    print(f"{'set':4} {'mean all-correct':>16} " + " ".join(f"{'best of ' + str(k):>11}" for k in ks))
    for name, caption_set in prepared.sets.items():
        n = args.samples
        ids = _generate(pipe, prepared.text_ids[name], n, 0, name, settings, 128)
        images = torch.cat([pipe.decode(ids[i:i + 256]).float().cpu() for i in range(0, len(ids), 256)])
        right = torch.tensor([[judge.score_reading(judge.read_image(images[p * n + j]), claim).all_correct
                               for j in range(n)] for p, claim in enumerate(caption_set.claims)])
        print(f"{name:4} {100 * right.float().mean():16.1f} "
              + " ".join(f"{100 * right[:, :k].any(1).float().mean():11.1f}" for k in ks))


if __name__ == "__main__":
    main()
