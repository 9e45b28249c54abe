"""How fast this package generates images, with and without its KV cache, against `dalle-pytorch` 1.6.6.

    python benchmarks/bench_sampling.py [--rounds 2] [--repeats 3] [--long-repeats 1] [--quick] [--peer-python PATH]

What is timed, on both sides: random caption ids [8, T] in, 8 x N image token ids out; no decoding
to pixels (dalle-pytorch's `generate_images` ends with `vae.decode`, which the peer's worker replaces
by the identity, so its timing covers the same token sampling loop). Random weights, seeded; fp32; 2
threads; temperature 1 over the 256 most likely image tokens (top-k) on both sides.

- 64 image tokens, the `cpu` preset's transformer shapes: this package with its KV cache
  (`generate_image_tokens(use_cache=True)`), without it (`use_cache=False`, the reference path that
  re-reads the whole prefix for every token), and dalle-pytorch's `DALLE.generate_images` at the same
  configuration (its defaults: no cache). A second pair adds classifier-free guidance (scale 3), the
  only setting in which dalle-pytorch 1.6.6's own `use_cache=True` takes effect.
- 256 image tokens, the `colab` preset's shapes: this package, cached against uncached (`--quick`
  skips it; the uncached path alone takes a minute or two per batch on a 2-core CPU).

The peer runs in its own virtual environment (benchmarks/README.md), in a subprocess of this script:
`--peer-python`, else $DALLE_PEER_PYTHON, else /tmp/peer/bin/python. Each row is the median of
`--repeats` generations after one warm-up (256 tokens: `--long-repeats`, and no warm-up for the
uncached row, whose first step warms it up); the rows take turns for `--rounds` rounds and each keeps
its quietest round, so a neighbour's burst of work on a shared CPU does not land on one side only.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Spin-waiting OpenMP threads crawl when another process holds a core (README.md); this must be set
# before torch loads its OpenMP runtime, and the peer's subprocess inherits it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

THREADS = 2
BATCH = 8  # images per generation
TOP_K = 256  # both sides sample at temperature 1 from the TOP_K most likely image tokens
GUIDANCE = 3.0  # the guidance scale of the guided pair of rows
CAPTION_TOKENS = 10  # random caption length; the rest of the text positions are pads (id 0 on both sides)
DEFAULT_PEER_PYTHON = "/tmp/peer/bin/python"


# --- shared by both processes (the peer's venv has torch, not this package) ------------------------

def timed_median(generate, repeats: int, warmup: int = 1) -> tuple[float, torch.Tensor]:
    """Median wall time of `generate()` over `repeats` calls after `warmup` untimed ones, and the
    last call's output (the protocol of common.median_seconds, here so the peer's process can use it)."""
    for _ in range(warmup):
        generate()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = generate()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def caption_ids(text_seq_len: int, text_vocab: int, seed: int = 0) -> torch.Tensor:
    """The same random captions for both models: CAPTION_TOKENS ids, then pads (id 0)."""
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, text_vocab, (BATCH, text_seq_len), generator=g)
    text[:, CAPTION_TOKENS:] = 0
    return text


# --- the peer, run inside its own venv -------------------------------------------------------------

def peer_worker(shapes: dict, repeats: int, variant: str, guidance: float) -> dict:
    """Time dalle-pytorch's DALLE.generate_images (imports only torch and dalle_pytorch)."""
    import warnings
    warnings.filterwarnings("ignore")
    from dalle_pytorch import DALLE, DiscreteVAE
    from dalle_pytorch.version import __version__

    torch.manual_seed(0)
    grid = shapes["image_grid"]
    # Only the VAE's sizes matter: 4 * grid pixels halved twice = a grid x grid map of the codebook.
    vae = DiscreteVAE(image_size=4 * grid, num_layers=2, num_tokens=shapes["image_vocab_size"],
                      codebook_dim=64, hidden_dim=16)
    vae.decode = lambda ids: ids  # generate_images ends with vae.decode: time the token loop only
    options = {"defaults": dict(rotary_emb=True, shift_tokens=True),
               "plain": dict(rotary_emb=False, shift_tokens=False)}[variant]
    d, heads = shapes["d_model"], shapes["n_heads"]
    model = DALLE(dim=d, vae=vae, num_text_tokens=shapes["text_vocab_size"], text_seq_len=shapes["text_seq_len"],
                  depth=shapes["n_layers"], heads=heads, dim_head=d // heads, attn_types=("full",), **options)
    text = caption_ids(shapes["text_seq_len"], shapes["text_vocab_size"])
    # its top_k keeps int((1 - thres) * logits) of the text + image logits; text ones are masked to -max
    thres = 1 - (TOP_K + 0.5) / model.total_tokens
    # use_cache is only read when cond_scale != 1 (forward_with_cond_scale drops it otherwise)
    generate = lambda: model.generate_images(text.clone(), filter_thres=thres, temperature=1.0,  # noqa: E731
                                             cond_scale=guidance, use_cache=guidance != 1)
    seconds, ids = timed_median(generate, repeats)
    assert ids.shape == (BATCH, grid * grid), ids.shape
    return {"seconds": seconds, "params": sum(p.numel() for n, p in model.named_parameters()
                                               if not n.startswith("vae.")), "version": __version__}


def run_peer(python: str, shapes: dict, repeats: int, variant: str, guidance: float) -> dict | str:
    """The peer's result from a subprocess, or a line saying why there is none."""
    command = [python, str(Path(__file__).resolve()), "--peer-worker", variant, "--repeats", str(repeats),
               "--shapes", json.dumps(shapes), "--guidance", str(guidance)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return f"peer failed ({python}): {lines[-1] if lines else done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- this package ----------------------------------------------------------------------------------

def build_model(preset: str):
    """A DalleTransformer at `preset`'s shapes with seeded random weights, in eval mode."""
    from dalle_lessons.config import get_preset
    from dalle_lessons.transformer import DalleTransformer

    config = get_preset(preset).transformer
    return DalleTransformer(config, generator=torch.Generator().manual_seed(0)).eval()


def ours(model, repeats: int, use_cache: bool, guidance: float = 1.0, warmup: int = 1) -> dict:
    """Time generate_image_tokens on BATCH random captions; every call draws from the same seed."""
    try:
        from dalle_lessons.sampling import generate_image_tokens
    except ImportError as error:
        raise SystemExit(f"{error}: this benchmark needs dalle_lessons.sampling.generate_image_tokens "
                         f"(issue 5); update the package") from None
    c = model.config
    text = caption_ids(c.text_seq_len, c.text_vocab_size)
    generate = lambda: generate_image_tokens(  # noqa: E731
        model, text, temperature=1.0, top_k=TOP_K, guidance_scale=guidance,
        generator=torch.Generator().manual_seed(0), use_cache=use_cache)
    seconds, ids = timed_median(generate, repeats, warmup)
    return {"seconds": seconds, "params": model.num_parameters(), "ids": ids}


def shapes_of(model) -> dict:
    c = model.config
    return {k: getattr(c, k) for k in ("text_seq_len", "text_vocab_size", "image_vocab_size", "image_grid",
                                       "d_model", "n_layers", "n_heads")}


def describe(shapes: dict) -> str:
    return (f"text {shapes['text_seq_len']} + image {shapes['image_grid'] ** 2} tokens, d {shapes['d_model']}, "
            f"{shapes['n_layers']} layers, {shapes['n_heads']} heads of {shapes['d_model'] // shapes['n_heads']}, "
            f"vocabularies {shapes['text_vocab_size']} text + {shapes['image_vocab_size']} image")


def row(case: str, model: str, path: str, run, reference: bool = False) -> dict:
    """One table row: its labels, and `run` returning a result dict or a line saying why there is none.
    The `reference` row of a case (this package's KV cache) is what the others are compared with."""
    return {"case": case, "model": model, "path": path, "run": run, "reference": reference}


def rows_64(args) -> tuple[list[dict], dict]:
    """The `cpu` preset's shapes: ours cached and uncached, and the peer, without and with guidance."""
    model = build_model("cpu")
    shapes, n, python = shapes_of(model), args.repeats, args.peer_python
    peer = Path(python).exists()
    case, guided = "64 tokens (cpu)", f"64 tokens (cpu), guidance {GUIDANCE:g}"
    rows = [row(case, "this package", "KV cache", lambda: ours(model, n, True), reference=True),
            row(case, "this package", "no cache (reference)", lambda: ours(model, n, False))]
    if peer:
        rows += [row(case, "dalle-pytorch", "generate_images, plain (axial + learned positions)",
                     lambda: run_peer(python, shapes, n, "plain", 1.0)),
                 row(case, "dalle-pytorch", "generate_images, defaults (rotary + token shift)",
                     lambda: run_peer(python, shapes, n, "defaults", 1.0))]
    rows += [row(guided, "this package", "KV cache, one 2B batch", lambda: ours(model, n, True, GUIDANCE),
                 reference=True)]
    if peer:
        rows += [row(guided, "dalle-pytorch", "generate_images(use_cache=True), plain",
                     lambda: run_peer(python, shapes, n, "plain", GUIDANCE))]
    return rows, shapes


def rows_256(args) -> tuple[list[dict], dict]:
    """The `colab` preset's shapes: ours cached against uncached."""
    model = build_model("colab")
    case, n = "256 tokens (colab)", args.long_repeats
    # no warm-up generation for the uncached row: its first of 256 full passes warms it up, and a
    # whole generation costs a minute or more
    rows = [row(case, "this package", "KV cache", lambda: ours(model, n, True), reference=True),
            row(case, "this package", "no cache (reference)", lambda: ours(model, n, False, warmup=0))]
    return rows, shapes_of(model)


def measure(rows: list[dict], rounds: int) -> tuple[dict[int, dict], list[str]]:
    """Rows take turns for `rounds` rounds; each keeps its quickest round."""
    best: dict[int, dict] = {}
    notes = []
    for round_ in range(rounds):
        for i, r in enumerate(rows):
            result = r["run"]()
            seconds = f"{result['seconds']:.2f} s" if isinstance(result, dict) else "no result"
            print(f"round {round_ + 1}/{rounds}: {r['case']}, {r['model']}, {r['path']}: {seconds}",
                  file=sys.stderr, flush=True)  # progress: the table comes at the end
            if isinstance(result, str):
                notes.append(f"{r['model']} ({r['path']}): {result}")
            elif i not in best or result["seconds"] < best[i]["seconds"]:
                best[i] = result
    return best, notes


def table_rows(rows: list[dict], best: dict[int, dict]) -> list[dict]:
    table = []
    for i, r in enumerate(rows):
        if i not in best:
            continue
        b = best[i]
        reference = next(best[j] for j, s in enumerate(rows) if s["case"] == r["case"] and s["reference"])
        tokens = b["ids"].shape[1] if "ids" in b else reference["ids"].shape[1]
        table.append({"case": r["case"], "model": r["model"] + (f" {b['version']}" if "version" in b else ""),
                      "path": r["path"], "params_M": b["params"] / 1e6, "ms_per_8_images": 1000 * b["seconds"],
                      "ms_per_token": 1000 * b["seconds"] / tokens, "tokens_per_s": BATCH * tokens / b["seconds"],
                      "ours_cached_speedup": b["seconds"] / reference["seconds"]})
    return table


def identical(rows: list[dict], best: dict[int, dict]) -> list[str]:
    """Cached and uncached rows of a case drew from the same seed: their tokens must be the same."""
    lines = []
    for case in dict.fromkeys(r["case"] for r in rows):
        ids = [best[i]["ids"] for i, r in enumerate(rows) if r["case"] == case and i in best and "ids" in best[i]]
        if len(ids) == 2:
            lines.append(f"{case}: cached and uncached tokens {'identical' if torch.equal(*ids) else 'DIFFER'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peer-python", default=os.environ.get("DALLE_PEER_PYTHON", DEFAULT_PEER_PYTHON),
                        help=f"python of the venv holding dalle-pytorch 1.6.6 (default: $DALLE_PEER_PYTHON or "
                             f"{DEFAULT_PEER_PYTHON})")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed generations per 64-token row and round (their median counts)")
    parser.add_argument("--long-repeats", type=int, default=1,
                        help="timed generations per 256-token row and round")
    parser.add_argument("--rounds", type=int, default=2, help="rows take turns this often; each keeps its best round")
    parser.add_argument("--cases", nargs="+", choices=["64", "256"], default=["64", "256"],
                        help="which image lengths to time (default: both)")
    parser.add_argument("--quick", action="store_true", help="the 64-token rows only (= --cases 64)")
    parser.add_argument("--peer-worker", choices=["defaults", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--shapes", help=argparse.SUPPRESS)
    parser.add_argument("--guidance", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    if args.peer_worker:
        print(json.dumps(peer_worker(json.loads(args.shapes), args.repeats, args.peer_worker, args.guidance)))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import header

    from bench_transformer import PEER_INSTALL, cpu_name
    from dalle_lessons.evaluate import format_table

    cases = ["64"] if args.quick else args.cases
    rows, shapes = [], {}
    for name, build in (("64", rows_64), ("256", rows_256)):
        if name in cases:
            case_rows, shapes[name] = build(args)
            rows += case_rows
    peer = Path(args.peer_python).exists()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    best, notes = measure(rows, args.rounds)
    minutes = (time.perf_counter() - start) / 60
    load_after = os.getloadavg()[0]
    if not peer and "64" in cases:
        notes.append(f"peer not installed ({args.peer_python} not found); to install it:{PEER_INSTALL}")

    print(header(f"DALL·E generation: {BATCH} images, token ids from random captions (no decoding), "
                 f"random seeded weights, fp32, {THREADS} threads"))
    medians = {"64": f"64 tokens: median of {args.repeats}", "256": f"256 tokens: median of {args.long_repeats}"}
    print(f"cpu: {cpu_name()}; 1-min load average {load_before:.2f} before, {load_after:.2f} after; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; best of {args.rounds} round(s) "
          f"({', '.join(medians[c] for c in shapes)} generations); {minutes:.1f} min")
    for name, preset in (("64", "cpu"), ("256", "colab")):
        if name in shapes:
            print(f"{preset} preset shapes: {describe(shapes[name])}")
    guided = f"; guided rows: scale {GUIDANCE:g}" if "64" in shapes else ""
    print(f"sampling: temperature 1, top-k {TOP_K}{guided}\n")
    print(format_table(table_rows(rows, best)))
    print("ours_cached_speedup: that row's time / this package's KV-cache time in the same case (the target:\n"
          ">= 10 against dalle-pytorch at 64 tokens; the uncached row >= 3 at 256 tokens).\n"
          "ms_per_token: time per generation step for the whole batch; tokens_per_s: image tokens per second.")
    for line in identical(rows, best) + notes:
        print(line)


if __name__ == "__main__":
    main()
