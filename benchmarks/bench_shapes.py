"""How fast the Shapes world is made and judged: scenes rendered per second, images judged per second.

    python benchmarks/bench_shapes.py
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, median_seconds  # noqa: E402

from dalle_lessons import judge, shapes  # noqa: E402
from dalle_lessons.evaluate import format_table  # noqa: E402

N = 500


def main() -> None:
    rng = random.Random(0)
    scenes = [shapes.random_scene(rng) for _ in range(N)]
    rows = []
    for size in (32, 64):
        seconds = median_seconds(lambda: [shapes.render(s, size) for s in scenes])
        rows.append({"step": f"render {size}x{size}", "items": N, "per_second": N / seconds, "us_each": 1e6 * seconds / N})
    seconds = median_seconds(lambda: shapes.ShapesDataset("train", N, render_images=False), repeats=3)
    rows.append({"step": "sample + split scenes", "items": N, "per_second": N / seconds, "us_each": 1e6 * seconds / N})
    data = shapes.ShapesDataset("train", N)
    seconds = median_seconds(lambda: [data[i] for i in range(N)], repeats=3)
    rows.append({"step": "dataset item (render + caption)", "items": N, "per_second": N / seconds, "us_each": 1e6 * seconds / N})
    cached = shapes.ShapesDataset("train", N, cache=True)
    seconds = median_seconds(lambda: [cached[i] for i in range(N)], repeats=3)
    rows.append({"step": "dataset item (from cache)", "items": N, "per_second": N / seconds, "us_each": 1e6 * seconds / N})
    images = [shapes.render(s, 32) for s in scenes[:200]]
    seconds = median_seconds(lambda: [judge.read_image(x) for x in images], repeats=3)
    rows.append({"step": "judge read 32x32", "items": 200, "per_second": 200 / seconds, "us_each": 1e6 * seconds / 200})
    print(header("Shapes world: generation and judging speed (single process)"))
    print(format_table(rows))


if __name__ == "__main__":
    main()
