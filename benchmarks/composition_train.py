"""Composition, the training side (issue 11): train the shipped transformer further and watch set b per pair.

    python benchmarks/composition_train.py --variant continue [--steps 1500] [--json PATH]
    python benchmarks/composition_train.py --variant aux [--aux-weight 0.1] ...

Both variants start from the shipped `cpu` transformer and train on the same 60,000 x 2 training pairs
as `train dalle` (held-out pairs never appear). `continue`: more optimisation of the same loss (Okawa et
al. 2023 saw composition of rare combinations emerge late and suddenly). `aux`: the same, plus an
auxiliary loss: from the hidden state that predicts image token j, two linear heads predict the color
and the shape of the object that will cover token j's patch (or "none"). It rewards a state that knows,
cell by cell, which color and which shape the caption asked for, separately — the binding that a
held-out pair needs. Every `--eval-every` steps: all-correct % of set b (and per held-out pair), with
the shipped sampling defaults; at the end also sets a and c. Nothing is saved to data/.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_summary  # noqa: E402

from dalle_lessons.config import get_preset  # noqa: E402
from dalle_lessons.environment import bf16_is_fast  # noqa: E402
from dalle_lessons.evaluate import _evaluate_prepared, _prepare, generation_settings  # noqa: E402
from dalle_lessons.pipeline import TextToImage  # noqa: E402
from dalle_lessons.shapes import COLORS, SHAPES, SIZE_FRACTION, ShapesDataset, cell_center  # noqa: E402
from dalle_lessons.train import lr_at  # noqa: E402
from dalle_lessons.train_dalle import DalleTrainConfig, token_data  # noqa: E402
from dalle_lessons.training_loop import make_optimizer  # noqa: E402


def cell_labels(scenes, image_size: int = 32, grid: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per scene and token patch: the index of the covering object's color (len(COLORS) = none) and
    shape (len(SHAPES) = none), from the objects' bounding boxes. [n, grid * grid] each."""
    colors = torch.full((len(scenes), grid * grid), len(COLORS), dtype=torch.long)
    shapes = torch.full((len(scenes), grid * grid), len(SHAPES), dtype=torch.long)
    patch = image_size / grid
    color_index, shape_index = {c: i for i, c in enumerate(COLORS)}, {s: i for i, s in enumerate(SHAPES)}
    for n, scene in enumerate(scenes):
        for obj in scene.objects:
            cx, cy = cell_center(obj.row, obj.col, image_size)
            half = SIZE_FRACTION[obj.size] * image_size / 2
            for r in range(grid):
                for c in range(grid):
                    if c * patch < cx + half and (c + 1) * patch > cx - half and \
                            r * patch < cy + half and (r + 1) * patch > cy - half:
                        colors[n, r * grid + c] = color_index[obj.color]
                        shapes[n, r * grid + c] = shape_index[obj.shape]
    return colors, shapes


def evaluate(pipe, prepared, sets: str, samples: int) -> dict:
    chosen = dataclasses.replace(prepared, sets={k: v for k, v in prepared.sets.items() if k in sets})
    rows = _evaluate_prepared(pipe, chosen, samples, 0, generation_settings({}), 64)
    out = {r["set"]: r["all_correct"] for r in rows}
    for r in rows:
        if "pairs" in r:
            out["pairs"] = {name: p["all_correct"] for name, p in r["pairs"].items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=["continue", "aux"], default="continue")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (cosine to 10 %% of it)")
    parser.add_argument("--aux-weight", type=float, default=0.1)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--captions", type=int, default=48)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    print(f"# composition training: {args.variant}, {args.steps} steps at lr {args.lr:g} — {machine_summary()}",
          flush=True)
    pipe = TextToImage.from_pretrained()
    model = pipe.transformer
    config = DalleTrainConfig(steps=args.steps, lr=args.lr, lr_warmup=50)
    train = token_data("train", config.train_items, "cpu", config.captions_per_item)
    heads = None
    if args.variant == "aux":
        scenes = ShapesDataset("train", config.train_items, render_images=False).scenes
        color_labels, shape_labels = cell_labels(scenes, get_preset("cpu").image_size, pipe.grid)
        d = model.config.d_model
        heads = torch.nn.ModuleDict({"color": torch.nn.Linear(d, len(COLORS) + 1),
                                     "shape": torch.nn.Linear(d, len(SHAPES) + 1)})
        hidden = {}
        model.ln_f.register_forward_hook(lambda module, inputs, output: hidden.__setitem__("h", output))
    optimizer = make_optimizer(model, config)
    if heads is not None:
        optimizer.add_param_group({"params": list(heads.parameters()), "weight_decay": 0.0})
    batch_rng = torch.Generator().manual_seed(args.seed + 1)
    dropout_rng = torch.Generator().manual_seed(args.seed + 2)
    prepared = _prepare(pipe, args.captions)
    history = [{"step": 0, **evaluate(pipe, prepared, "b", args.samples)}]
    print(json.dumps(history[-1]), flush=True)
    start = time.perf_counter()
    T = model.config.text_seq_len
    use_bf16 = bf16_is_fast("cpu")  # emulated bf16 (AVX2 CPUs) is ~37x slower than fp32
    for step in range(args.steps):
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        index = torch.randint(len(train), (config.batch_size,), generator=batch_rng)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            output = model(train.text[index], train.image[index], generator=dropout_rng)
            loss = output.loss
            if heads is not None:
                h = hidden["h"][:, T:].float()  # the states that predict image tokens 0 .. N-1
                items = index % config.train_items
                aux = F.cross_entropy(heads["color"](h).flatten(0, 1), color_labels[items].flatten()) + \
                    F.cross_entropy(heads["shape"](h).flatten(0, 1), shape_labels[items].flatten())
                loss = loss + args.aux_weight * aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if (step + 1) % 100 == 0:
            print(f"step {step + 1} loss {output.loss.item():.4f}" +
                  (f" aux {aux.item():.3f}" if heads is not None else "") +
                  f" ({time.perf_counter() - start:.0f} s)", flush=True)
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            sets = "abc" if step + 1 == args.steps else "b"
            history.append({"step": step + 1, "seconds": time.perf_counter() - start,
                            **evaluate(pipe, prepared, sets, args.samples)})
            print(json.dumps(history[-1]), flush=True)
            if args.json:
                args.json.write_text(json.dumps({"machine": machine_summary(), "args": vars(args) | {"json": str(args.json)},
                                                 "history": history}, indent=1))


if __name__ == "__main__":
    main()
