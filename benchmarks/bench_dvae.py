"""How fast the dVAE trains and runs: one training step, encoding and decoding, per quantizer.

    python benchmarks/bench_dvae.py
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, median_seconds  # noqa: E402

from dalle_lessons.config import get_preset  # noqa: E402
from dalle_lessons.dvae import DiscreteVAE, dvae_loss  # noqa: E402
from dalle_lessons.evaluate import format_table  # noqa: E402

BATCH = 64


def main() -> None:
    rows = []
    for quantizer in ("gumbel", "vq"):
        config = dataclasses.replace(get_preset("cpu").dvae, quantizer=quantizer)
        torch.manual_seed(0)
        model = DiscreteVAE(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        images = torch.rand(BATCH, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(0))
        noise = torch.Generator().manual_seed(1)

        def step() -> None:
            loss = dvae_loss(model(images, temperature=0.5, generator=noise), config, 1.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        seconds = median_seconds(step, repeats=5, warmup=2)
        params = sum(p.numel() for p in model.parameters())
        rows.append({"what": f"{quantizer}: train step", "params": params, "batch": BATCH, "ms": 1e3 * seconds,
                     "images_per_s": BATCH / seconds})
        model.eval()
        ids = model.encode(images)
        for name, fn in (("encode", lambda: model.encode(images)), ("decode", lambda: model.decode(ids))):
            seconds = median_seconds(fn, repeats=5)
            rows.append({"what": f"{quantizer}: {name}", "params": params, "batch": BATCH, "ms": 1e3 * seconds,
                         "images_per_s": BATCH / seconds})
    print(header("dVAE speed, preset cpu (a training step is forward + backward + Adam)"))
    print(format_table(rows))


if __name__ == "__main__":
    main()
