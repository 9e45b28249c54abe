"""Which transformer recipe draws what the caption says? Train variants side by side, judge each.

    python benchmarks/fidelity_sweep.py OUT_DIR                       # every variant, on a GPU
    python benchmarks/fidelity_sweep.py OUT_DIR --only L4d384-3k,L4-3k  # some of them
    python benchmarks/fidelity_sweep.py OUT_DIR --table                 # print OUT_DIR's results again

Each variant is the `cpu` preset's transformer with a few settings changed, trained by `train_dalle`
on the same cached tokens, then scored by `evaluate_generation` (100 captions per set x 4 samples,
default sampling). Variants run as parallel processes, one thread each: on one H100 the whole sweep
takes about 6 minutes; on a 2-core CPU each variant takes 15-90 minutes, so name one with --only.
Results are appended to OUT_DIR/results.jsonl (one JSON object per variant) and printed as a table.
This is how the `cpu` preset's size was chosen (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

#: name: (transformer config changes, training config changes, partial-caption probability)
VARIANTS: dict[str, tuple[dict, dict, float]] = {
    # the old 8-layer preset, its 4-layer half, and longer training of both
    "L4-3k": ({"d_model": 256, "n_layers": 4}, {"steps": 3000}, 0.0),
    "L4-12k": ({"d_model": 256, "n_layers": 4}, {"steps": 12000}, 0.0),
    "L8-12k": ({"d_model": 256, "n_layers": 8}, {"steps": 12000}, 0.0),
    # regularization and learning rate
    "L4-3k-wd.3": ({"d_model": 256, "n_layers": 4}, {"steps": 3000, "weight_decay": 0.3}, 0.0),
    "L4-3k-drop.1": ({"d_model": 256, "n_layers": 4, "dropout": 0.1}, {"steps": 3000}, 0.0),
    "L4-3k-lr2e-3": ({"d_model": 256, "n_layers": 4}, {"steps": 3000, "lr": 2e-3}, 0.0),
    # captions that leave out the color or the shape, to pull the two words apart
    "L4-3k-partial.5": ({"d_model": 256, "n_layers": 4}, {"steps": 3000}, 0.5),
    "L4-3k-partial1": ({"d_model": 256, "n_layers": 4}, {"steps": 3000}, 1.0),
    "L4-12k-partial.5": ({"d_model": 256, "n_layers": 4}, {"steps": 12000}, 0.5),
    # width and depth at about the same CPU time (~20 min on 2 cores)
    "L4d384-3k": ({"d_model": 384, "n_layers": 4}, {"steps": 3000}, 0.0),
    "L4d384-3k-s1": ({"d_model": 384, "n_layers": 4}, {"steps": 3000}, 0.0),
    "L4d384-1500": ({"d_model": 384, "n_layers": 4}, {"steps": 1500}, 0.0),
    "L4d384-1500-lr2e-3": ({"d_model": 384, "n_layers": 4}, {"steps": 1500, "lr": 2e-3}, 0.0),
    "L4d320-2200": ({"d_model": 320, "n_layers": 4}, {"steps": 2200}, 0.0),
    "L3d384-2000": ({"d_model": 384, "n_layers": 3}, {"steps": 2000}, 0.0),
    "L3d448-1500": ({"d_model": 448, "n_layers": 3}, {"steps": 1500}, 0.0),
    "L2-6k": ({"d_model": 256, "n_layers": 2}, {"steps": 6000}, 0.0),
    "L2d384-3000": ({"d_model": 384, "n_layers": 2}, {"steps": 3000}, 0.0),
    "L2d512-1700": ({"d_model": 512, "n_layers": 2}, {"steps": 1700}, 0.0),
    # smaller batches for more steps in the same time
    "L4d384-b48-2k": ({"d_model": 384, "n_layers": 4}, {"steps": 2000, "batch_size": 48}, 0.0),
    "L4d384-b32-3k": ({"d_model": 384, "n_layers": 4}, {"steps": 3000, "batch_size": 32}, 0.0),
    "L4d384-b32-3k-s1": ({"d_model": 384, "n_layers": 4}, {"steps": 3000, "batch_size": 32}, 0.0),
    "L4d384-b32-4k": ({"d_model": 384, "n_layers": 4}, {"steps": 4000, "batch_size": 32}, 0.0),
    "L4d384-b16-6k": ({"d_model": 384, "n_layers": 4}, {"steps": 6000, "batch_size": 16, "lr": 7e-4}, 0.0),
}
GENERIC_SHAPE_WORDS = ("shape", "object")  # what a partial caption says instead of the shape


def seed_of(name: str) -> int:
    return 1 if name.endswith("-s1") else 0


def use_partial_captions(p: float) -> None:
    """Make `token_data` redraw each scene's second caption so that, with probability p per object,
    it leaves out the color ("a small square") or the shape ("a small blue shape")."""
    import dalle_lessons.shapes as shapes
    import dalle_lessons.train_dalle as train_dalle
    from dalle_lessons.paths import data_dir
    from dalle_lessons.tokenizer import CaptionTokenizer

    full_noun_phrase, full_token_data = shapes._noun_phrase, train_dalle.token_data

    def partial_noun_phrase(rng, obj, say_size):
        if rng.random() >= p:
            return full_noun_phrase(rng, obj, say_size)
        words = [rng.choice(shapes.SIZE_WORDS[obj.size])] if say_size else []
        if rng.random() < 0.5:
            return " ".join(words + [rng.choice(shapes.SHAPE_WORDS[obj.shape])])
        return " ".join(words + [rng.choice(shapes.COLOR_WORDS[obj.color]), rng.choice(GENERIC_SHAPE_WORDS)])

    def token_data(split, n_items, preset="cpu", captions_per_item=1, seed=0, **kwargs):
        data = full_token_data(split, n_items, preset, captions_per_item, seed, **kwargs)
        if split != "train" or captions_per_item < 2:
            return data
        scenes = shapes.ShapesDataset(split, n_items, preset=preset, seed=seed, render_images=False).scenes
        shapes._noun_phrase = partial_noun_phrase
        try:
            texts = [shapes.caption_scene(scenes[i], random.Random(f"caption/{seed}/{split}/{i}/1"))[0]
                     for i in range(n_items)]
        finally:
            shapes._noun_phrase = full_noun_phrase
        tokenizer = CaptionTokenizer.load(data_dir() / "tokenizer.json").with_text_seq_len(data.text.shape[1])
        data.text[n_items:2 * n_items] = tokenizer.encode_batch(texts, on_overflow="warn").long()
        return data

    train_dalle.token_data = token_data


def run_variant(name: str, out: Path, device: str) -> dict:
    import torch

    import dalle_lessons.train_dalle as train_dalle
    from dalle_lessons import checkpoints
    from dalle_lessons.config import get_preset
    from dalle_lessons.evaluate import evaluate_generation
    from dalle_lessons.pipeline import TextToImage

    torch.set_num_threads(1)  # the variants run side by side
    model_changes, train_changes, partial = VARIANTS[name]
    if partial:
        use_partial_captions(partial)
    model_config = replace(get_preset("cpu").transformer, **model_changes)
    train_config = train_dalle.DalleTrainConfig(**{"eval_every": 1000, "checkpoint_every": 10**9, **train_changes})
    start = time.perf_counter()
    summary = train_dalle.train_dalle("cpu", seed=seed_of(name), out=out, name=name, device=device,
                                      progress=False, train_config=train_config, model_config=model_config,
                                      log=lambda line: print(name, line, flush=True))
    train_seconds = time.perf_counter() - start
    pipe = TextToImage.from_pretrained(None, device=device)
    pipe.transformer = checkpoints.load(summary["path"]).to(device).eval()
    report = evaluate_generation(pipe)
    keys = ("all_correct", "count", "shape", "color", "size", "position", "relation", "distinct_readings")
    result = {"name": name, "device": device, "seed": seed_of(name),
              "params": sum(p.numel() for p in pipe.transformer.parameters()),
              "train_seconds": round(train_seconds, 1), "final": summary["history"][-1],
              "rows": {row["set"]: {k: row[k] for k in keys if k in row} for row in report["rows"]}}
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    return result


def print_table(out: Path) -> None:
    print(f"{'variant':20s} {'params':>7s} {'val image':>9s}   a all   b all   c all   b shape")
    for line in (out / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows = r["rows"]
        print(f"{r['name']:20s} {r['params'] / 1e6:6.1f}M {r['final']['val_image_loss']:9.3f}   "
              f"{rows['a']['all_correct']:5.1f}   {rows['b']['all_correct']:5.1f}   {rows['c']['all_correct']:5.1f}   "
              f"{rows['b']['shape']:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for checkpoints, logs.txt and results.jsonl")
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    parser.add_argument("--device", help="default: cuda when there is a GPU, else cpu")
    parser.add_argument("--table", action="store_true", help="only print the table of OUT's results")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one worker process
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from dalle_lessons.environment import machine_summary, pick_device

    args.out.mkdir(parents=True, exist_ok=True)
    device = args.device or pick_device()
    if args.variant:
        run_variant(args.variant, args.out, device)
        return
    if not args.table:
        names = args.only.split(",") if args.only else list(VARIANTS)
        unknown = [n for n in names if n not in VARIANTS]
        if unknown:
            sys.exit(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")
        print(f"## fidelity sweep\nmachine: {machine_summary()}, device {device}", flush=True)
        with open(args.out / "logs.txt", "a") as log:
            workers = [subprocess.Popen([sys.executable, __file__, str(args.out), "--variant", n, "--device", device],
                                        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
                       for n in names]
            failed = [n for n, w in zip(names, workers) if w.wait() != 0]
        if failed:
            print(f"failed: {', '.join(failed)} (see {args.out / 'logs.txt'})")
    print_table(args.out)


if __name__ == "__main__":
    main()
