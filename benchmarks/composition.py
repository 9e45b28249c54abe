"""Composition (issue 11): held-out color-shape pairs under sampling-side remedies, per pair.

    python benchmarks/composition.py [--sets b] [--captions 40] [--samples 4] [--only NAME ...] [--json PATH]

Each row is one sampling recipe on the shipped `cpu` model: all-correct % on sets a / b / c (the
judge, as `evaluate generation`), every held-out pair of set b on its own, and seconds per image.
Recipes: plain sampling at the shipped defaults, and contrastive guidance against the fallback
captions (`dalle_lessons.composition`) at several weights, with and without a plausibility mask.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_summary  # noqa: E402

from dalle_lessons.evaluate import (_evaluate_prepared, _load_pipeline, _prepare,  # noqa: E402
                                    generation_settings)

#: name -> (sampling changes, compose weights or None)
RECIPES = {
    "plain (shipped defaults)": ({}, None),
    "contrast 0.5/0.5": ({}, {"shape_weight": 0.5, "color_weight": 0.5}),
    "contrast 1/1": ({}, {"shape_weight": 1.0, "color_weight": 1.0}),
    "contrast 2/2 + mask 0.05": ({}, {"shape_weight": 2.0, "color_weight": 2.0, "plausibility": 0.05}),
    "contrast 4/4 + mask 0.1": ({}, {"shape_weight": 4.0, "color_weight": 4.0, "plausibility": 0.1}),
    "experts 1/1 (color, shape)": ({}, {"color_expert": 1.0, "shape_expert": 1.0}),
    "experts 2/2 + mask 0.05": ({}, {"color_expert": 2.0, "shape_expert": 2.0, "plausibility": 0.05}),
    "best of 8 by the model": ({}, {"particles": 8, "resample_every": 0}),
    "8 particles, resample every 8": ({}, {"particles": 8, "resample_every": 8}),
    "8 particles, resample every 4": ({}, {"particles": 8, "resample_every": 4}),
    "8 particles every 4 + contrast 2/2": ({}, {"particles": 8, "resample_every": 4, "shape_weight": 2.0,
                                                "color_weight": 2.0, "plausibility": 0.05}),
}


def run(recipes: dict, sets: str, n_captions: int, samples: int, seed: int, batch_size: int,
        json_path: Path | None = None) -> list[dict]:
    pipe, _ = _load_pipeline(None)
    prepared = _prepare(pipe, n_captions)
    prepared = dataclasses.replace(prepared, sets={k: v for k, v in prepared.sets.items() if k in sets})
    rows = []
    for name, (changes, compose) in recipes.items():
        start = time.perf_counter()
        result = _evaluate_prepared(pipe, prepared, samples, seed, generation_settings(changes), batch_size,
                                    compose=compose)
        seconds = time.perf_counter() - start
        images = sum(r["images"] for r in result)
        row = {"recipe": name, "sampling": changes, "compose": compose, "seconds_per_image": seconds / images}
        for r in result:
            row[r["set"]] = r["all_correct"]
            if "pairs" in r:
                row["pairs"] = r["pairs"]
        rows.append(row)
        print(_line(row, sets), flush=True)
        if json_path:  # after every row: a long run stopped halfway keeps what it measured
            json_path.write_text(json.dumps({"machine": machine_summary(), "captions": n_captions,
                                             "samples": samples, "seed": seed, "rows": rows}, indent=1))
    return rows


def _line(row: dict, sets: str) -> str:
    cells = [f"{row['recipe']:<28}"] + [f"{row[s]:5.1f}" for s in sets]
    cells += [f"{p['all_correct']:5.1f}" for p in row.get("pairs", {}).values()]
    return " | ".join(cells + [f"{row['seconds_per_image']:.3f}"])


def print_diagnosis(json_path: Path | None) -> None:
    from dalle_lessons.composition import diagnose
    from dalle_lessons.evaluate import format_table
    from dalle_lessons.pipeline import TextToImage
    start = time.perf_counter()
    rows = diagnose(TextToImage.from_pretrained(), per_pair=32)
    print(f"# held-out pairs, diagnosed on 32 rendered images each — {machine_summary()}")
    print(format_table(rows))
    print(f"# {time.perf_counter() - start:.0f} s")
    if json_path:
        json_path.write_text(json.dumps({"machine": machine_summary(), "rows": rows}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="abc", help="which caption sets (default abc)")
    parser.add_argument("--captions", type=int, default=100)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--only", nargs="*", help="run only these recipes (names as in RECIPES)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--diagnose", action="store_true",
                        help="print the per-pair diagnosis (likelihood preference, dVAE round trip, codes) instead")
    args = parser.parse_args()
    if args.diagnose:
        return print_diagnosis(args.json)
    recipes = {k: v for k, v in RECIPES.items() if not args.only or k in args.only}
    print(f"# composition recipes — {machine_summary()}")
    print(f"# {args.captions} captions x {args.samples} samples per set, seed {args.seed}")
    start = time.perf_counter()
    rows = run(recipes, args.sets, args.captions, args.samples, args.seed, args.batch_size, args.json)
    print(f"# {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
