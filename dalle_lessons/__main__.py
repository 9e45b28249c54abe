"""Command line: `python -m dalle_lessons COMMAND ...` (also installed as `dalle-lessons`).

    python -m dalle_lessons check                       # is this environment ready for the course?
    python -m dalle_lessons data splits                 # (re)write data/splits.json
    python -m dalle_lessons train tokenizer --preset cpu
    python -m dalle_lessons train dvae --preset cpu [--steps N] [--seed S] [--out DIR] [--resume] [--device auto]
    python -m dalle_lessons train dalle --preset cpu [--steps N] [--seed S] [--out DIR] [--resume] [--device auto]
                                        [--batch-size B] [--precision auto|fp32|bf16|fp16]
    torchrun --nproc_per_node 2 -m dalle_lessons train dalle --preset cpu --out DIR     # DDP, see distributed.py
    python -m dalle_lessons evaluate judge [--json]
    python -m dalle_lessons evaluate dvae [--checkpoint PATH] [--json]
    python -m dalle_lessons evaluate generation [--checkpoint DIR] [--captions N] [--samples K] [--rerank N] [--sweep] [--json]
    python -m dalle_lessons train clip --preset cpu [--steps N] [--seed S] [--out DIR] [--resume]
    python -m dalle_lessons evaluate clip [--checkpoint PATH] [--json]
    python -m dalle_lessons evaluate rerank [--captions N] [--max-rerank 64] [--json]
    python -m dalle_lessons evaluate control [--checkpoint DIR] [--captions N] [--samples K] [--json]
    python -m dalle_lessons evaluate bias [--captions N] [--samples K] [--seed S] [--json]
    python -m dalle_lessons evaluate quality [--n 500] [--samples 4] [--seed 0] [--json]
    python -m dalle_lessons generate "a small red circle above a blue square" -n 8 --seed 0 --out grid.png
    python -m dalle_lessons finetune --data DIR|"heldout:blue square" --out DIR [--method full|last-layers|lora]
                                     [--rank R] [--layers N] [--steps N] [--lr LR] [--seed S] [--examples K] [--resume]
    python -m dalle_lessons generate "a blue square" --adapter DIR/adapter.safetensors
    python -m dalle_lessons serve [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--checkpoint DIR]
    python -m dalle_lessons scale [--preset tiny|cpu|colab|paper|all] [--json]
    python -m dalle_lessons convert-openai-dvae --encoder encoder.pkl --decoder decoder.pkl --out DIR --i-understand-pickle
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")


def cmd_check(args: argparse.Namespace) -> int:
    from .environment import check_environment, format_report
    results = check_environment()
    print(format_report(results))
    return 0 if all(r.ok for r in results) else 1


def cmd_data(args: argparse.Namespace) -> int:
    if args.what == "manifest":
        from .manifest import write_manifest
        print(f"wrote {write_manifest()}")
        return 0
    from .shapes import write_split_definition
    path = write_split_definition()
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import get_preset
    get_preset(args.preset)  # fail early, with the list of presets, on a typo
    _refuse_flags_of_other_components(args)
    if args.what == "tokenizer":
        return _train_tokenizer(args)
    if args.what == "dvae":
        return _train_dvae(args)
    if args.what == "dalle":
        return _train_dalle(args)
    if args.what == "clip":
        return _train_clip(args)
    raise SystemExit(f"unknown training target {args.what!r}")


#: The `train` flags each component reads; any other flag given is refused rather than silently ignored.
TRAIN_FLAGS = {
    "steps": ("dvae", "dalle", "clip"), "resume": ("dvae", "dalle", "clip"), "device": ("dvae", "dalle", "clip"),
    "batch_size": ("dalle",), "precision": ("dalle",),
    "quantizer": ("dvae",), "likelihood": ("dvae",), "train_images": ("dvae", "dalle", "clip"),
    "no_hard_negatives": ("clip",), "no_negative_images": ("clip",), "false_negatives": ("clip",),
}


def _refuse_flags_of_other_components(args: argparse.Namespace) -> None:
    for flag, components in TRAIN_FLAGS.items():
        if getattr(args, flag) not in (None, False) and args.what not in components:
            raise ValueError(f"--{flag.replace('_', '-')} does not apply to `train {args.what}` (it is for "
                             f"{', '.join('train ' + c for c in components)}): drop it")


def _train_tokenizer(args: argparse.Namespace) -> int:
    from .manifest import shipped_entry, update_entries
    from .tokenizer import default_path, train_default
    path = Path(args.out) / "tokenizer.json" if args.out else default_path()
    if path.exists() and shipped_entry(path) is not None and not args.overwrite_shipped:
        raise ValueError(f"{path} is a shipped file (listed in data/MANIFEST.json) and training would replace it: "
                         "train into another folder with --out DIR, or pass --overwrite-shipped to replace it on "
                         "purpose (every shipped model was trained with it)")
    if not 0 <= args.seed <= 2**63 - 3:
        raise ValueError(f"--seed {args.seed}: a training seed is an int from 0 to 2**63 - 3")
    if args.out:
        from .paths import check_output_dir
        check_output_dir(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    path = train_default(preset=args.preset, seed=args.seed, path=path, overwrite_shipped=args.overwrite_shipped)
    if args.overwrite_shipped:
        update_entries([path])
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s")
    return 0


def _train_dvae(args: argparse.Namespace) -> int:
    import dataclasses
    from .config import get_preset
    from .train import DVAETrainConfig, train_dvae
    model_config = get_preset(args.preset).dvae
    if args.quantizer:
        model_config = dataclasses.replace(model_config, quantizer=args.quantizer)
    if args.likelihood:
        model_config = dataclasses.replace(model_config, likelihood=args.likelihood)
    changes = {"steps": args.steps, "train_images": args.train_images}
    train_config = DVAETrainConfig(**{k: v for k, v in changes.items() if v is not None})
    try:
        summary = train_dvae(args.preset, seed=args.seed, out=args.out, train_config=train_config,
                             model_config=model_config, resume=args.resume, overwrite_shipped=args.overwrite_shipped,
                             device=args.device)
    except KeyboardInterrupt:
        print("interrupted: run the same command with --resume to continue", file=sys.stderr)
        return 130
    final = summary["history"][-1] if summary["history"] else {}
    print(f"wrote {summary['path']} after {summary['step']} steps in {summary['seconds']:.0f} s"
          + (f" (val PSNR {final['psnr']:.2f} dB, {final['codes_used']} codes used)" if final else ""))
    return 0


def _train_dalle(args: argparse.Namespace) -> int:
    from .distributed import world_from_env
    from .train_dalle import DalleTrainConfig, train_dalle
    changes = {"steps": args.steps, "batch_size": args.batch_size, "precision": args.precision,
               "train_items": args.train_images}
    train_config = DalleTrainConfig(**{k: v for k, v in changes.items() if v is not None})
    try:
        summary = train_dalle(args.preset, seed=args.seed, out=args.out, train_config=train_config,
                              resume=args.resume, overwrite_shipped=args.overwrite_shipped, device=args.device)
    except KeyboardInterrupt:
        print("interrupted: run the same command with --resume to continue", file=sys.stderr)
        return 130
    if world_from_env()[0] != 0:  # under torchrun, rank 0 reports for all
        return 0
    final = summary["history"][-1] if summary["history"] else {}
    print(f"wrote {summary['path']} after {summary['step']} steps in {summary['seconds']:.0f} s"
          + (f" (val text loss {final['val_text_loss']:.3f}, image loss {final['val_image_loss']:.3f})"
             if final else ""))
    return 0


def _train_clip(args: argparse.Namespace) -> int:
    from .train_clip import ClipTrainConfig, train_clip
    changes = {"steps": args.steps, "false_negatives": args.false_negatives, "train_items": args.train_images}
    if args.no_hard_negatives:
        changes["hard_negatives"] = False
    if args.no_negative_images:
        changes["negative_images"] = False
    train_config = ClipTrainConfig(**{k: v for k, v in changes.items() if v is not None})
    try:
        summary = train_clip(args.preset, seed=args.seed, out=args.out, train_config=train_config, resume=args.resume,
                             overwrite_shipped=args.overwrite_shipped, device=args.device)
    except KeyboardInterrupt:
        print("interrupted: run the same command with --resume to continue", file=sys.stderr)
        return 130
    final = summary["history"][-1] if summary["history"] else {}
    print(f"wrote {summary['path']} after {summary['step']} steps in {summary['seconds']:.0f} s"
          + (f" (val R@1 image->text {final['val_i2t_r1']:.1f} %, binding probe {final['val_probe']:.1f} %)"
             if final else ""))
    return 0


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    """Sampling flags; each left out keeps the pipeline's default (pipeline.DEFAULT_SAMPLING)."""
    from .sampling import SAMPLING_RANGES as RANGE  # the ranges the API checks, stated once
    group = parser.add_argument_group("sampling (default: the pipeline's DEFAULT_SAMPLING)")
    group.add_argument("--temperature", type=float, default=None,
                       help=f"below 1 sharper, above 1 wilder; 0 greedy ({RANGE['temperature']})")
    group.add_argument("--top-k", type=int, default=None,
                       help="keep the k most likely tokens (an int >= 1; 0: keep all)")
    group.add_argument("--top-p", type=float, default=None,
                       help="keep the smallest set with mass >= p (in (0, 1]; 1: keep all)")
    group.add_argument("--guidance-scale", type=float, default=None,
                       help=f"classifier-free guidance, higher follows the caption harder ({RANGE['guidance_scale']})")


def _sampling_changes(args: argparse.Namespace) -> dict:
    """The sampling flags given on the command line, with 0 / 1 meaning 'no top-k' / 'no top-p'."""
    changes = {}
    if args.temperature is not None:
        changes["temperature"] = args.temperature
    if args.top_k is not None:
        changes["top_k"] = args.top_k or None
    if args.top_p is not None:
        changes["top_p"] = None if args.top_p == 1 else args.top_p  # above 1 is an error, as in the API
    if args.guidance_scale is not None:
        changes["guidance_scale"] = args.guidance_scale
    return changes


def _describe_sampling(settings: dict) -> str:
    return ", ".join(f"{k} {'off' if v is None else v}" for k, v in settings.items())


def _prompt_slug(prompt: str, words: int = 6) -> str:
    """A file-name-safe digest of a prompt: its first few words, lowercase, joined by dashes."""
    kept = ["".join(ch for ch in word if ch.isascii() and ch.isalnum()) for word in prompt.lower().split()]
    return "-".join([w for w in kept if w][:words])[:48].strip("-") or "image"


def cmd_generate(args: argparse.Namespace) -> int:

    from .evaluate import generation_settings
    from .pipeline import TextToImage
    from .viz import image_grid
    if args.n < 1:
        raise ValueError(f"-n {args.n}: ask for at least one image per prompt")
    if args.columns < 1:
        raise ValueError(f"--columns {args.columns}: a grid row holds at least one image")
    empty = [i for i, p in enumerate(args.prompts) if not p.strip()]
    if empty:
        raise ValueError(f"prompt {empty[0] + 1} is empty: describe one or two shapes, "
                         "e.g. 'a small red circle above a blue square'")
    from .tokenizer import check_text
    for prompt in args.prompts:
        check_text(prompt)  # undecodable bytes on the command line: refused before the model loads
    from .environment import resolve_device
    from .paths import check_output_dir, check_output_file
    from .sampling import check_sampling
    settings = generation_settings(_sampling_changes(args))
    check_sampling(**settings)
    # everything that can be refused is refused before the model loads and the images are drawn
    if args.out_dir is not None:
        check_output_dir(args.out_dir)
    if args.out is not None or args.out_dir is None:
        check_output_file("generated.png" if args.out is None else args.out)
    device = resolve_device(args.device)
    start = time.perf_counter()
    pipe = TextToImage.from_pretrained(args.checkpoint, device=device, adapter=args.adapter)
    loaded = time.perf_counter()
    images = pipe.generate(args.prompts, n=args.n, size=args.size, seed=args.seed, rerank=args.rerank,
                           on_overflow=args.on_overflow, **settings)
    generated = time.perf_counter()
    per_prompt = [images[p * args.n:(p + 1) * args.n] for p in range(len(args.prompts))]
    written = []
    if args.out_dir is not None:
        folder = Path(args.out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for p, (prompt, row) in enumerate(zip(args.prompts, per_prompt)):
            for i, image in enumerate(row):
                image.save(folder / f"{p:02d}-{i:02d}-{_prompt_slug(prompt)}.png")
        written.append(f"{len(images)} PNGs in {folder}/")
    if args.out is not None or args.out_dir is None:
        out = Path("generated.png" if args.out is None else args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = [row[k:k + args.columns] for row in per_prompt for k in range(0, len(row), args.columns)]
        grid = image_grid(rows)
        grid.save(out)
        written.append(f"{out} ({grid.width}x{grid.height} grid)")
    width, height = images[0].size
    print(f"wrote {' and '.join(written)}: {len(args.prompts)} prompt(s) x {args.n} image(s) of "
          f"{width}x{height}, seed {args.seed}")
    print(f"sampling: {_describe_sampling(settings)}")
    print(f"generated in {generated - loaded:.1f} s (model loaded in {loaded - start:.1f} s)")
    return 0


#: The `finetune` flags that apply to one method only; given with another method they are refused.
FINETUNE_FLAGS = {"rank": "lora", "alpha": "lora", "layers": "last-layers"}


def _check_finetune_flags(args: argparse.Namespace) -> None:
    from .finetune import METHODS
    if args.method not in METHODS:
        raise ValueError(f"--method {str(args.method)[:40]!r} is not a method: choose one of {', '.join(METHODS)}")
    for flag, method in FINETUNE_FLAGS.items():
        if getattr(args, flag) is not None and args.method != method:
            raise ValueError(f"--{flag} applies to --method {method}, not to --method {args.method}: drop it")
    if args.rank is not None and args.rank < 1:
        raise ValueError(f"--rank {args.rank}: the LoRA rank must be at least 1 (e.g. --rank 4)")
    if args.layers is not None and args.layers < 1:
        raise ValueError(f"--layers {args.layers}: train at least the last 1 block")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps {args.steps}: fine-tuning needs at least 1 step")
    if args.lr is not None and not (args.lr > 0 and args.lr != float("inf")):
        raise ValueError(f"--lr {args.lr}: the learning rate must be a finite number > 0 (e.g. --lr 0.002)")
    if args.examples is not None and args.examples < 8:
        raise ValueError(f"--examples {args.examples}: a built-in set needs at least 8 examples")
    if not str(args.data).strip():
        raise ValueError("--data is empty: give a folder of images with captions.jsonl, or 'heldout:<color> <shape>'")


def cmd_finetune(args: argparse.Namespace) -> int:
    from .finetune import FinetuneConfig, finetune
    _check_finetune_flags(args)
    changes = {"method": args.method, "steps": args.steps, "lr": args.lr, "rank": args.rank, "alpha": args.alpha,
               "last_layers": args.layers}
    config = FinetuneConfig(**{k: v for k, v in changes.items() if v is not None})
    try:
        summary = finetune(args.data, args.out, config, seed=args.seed, base=args.from_, examples=args.examples,
                           resume=args.resume, device=args.device, log=print)
    except KeyboardInterrupt:
        print("interrupted: run the same command with --resume to continue", file=sys.stderr)
        return 130
    final = summary["history"][-1] if summary["history"] else {}
    size = f", {summary['adapter_bytes'] / 1024:.0f} KB" if "adapter_bytes" in summary else ""
    print(f"wrote {summary['path']}{size} ({args.method}, {summary['trainable_parameters']:,} trainable parameters) "
          f"after {summary['step']} steps in {summary['seconds']:.0f} s"
          + (f" (val text loss {final['val_text_loss']:.3f}, image loss {final['val_image_loss']:.3f})" if final else ""))
    if args.method == "lora":
        print(f"use it: python -m dalle_lessons generate \"a blue square\" --adapter {summary['path']}"
              + (f" --checkpoint {args.from_}" if args.from_ else ""))
    else:
        print(f"use it: python -m dalle_lessons generate \"a blue square\" --checkpoint {summary['path']}")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from .scale import format_report, preset_names, report
    reports = [report(name) for name in preset_names(args.preset)]
    if args.json:
        print(json.dumps(reports if args.preset == "all" else reports[0], indent=1))
    else:
        print("\n\n".join(format_report(r) for r in reports))
    return 0


def cmd_convert_openai_dvae(args: argparse.Namespace) -> int:
    from .openai_dvae import convert
    written = convert(args.encoder, args.decoder, args.out, i_understand_pickle=args.i_understand_pickle)
    for kind in ("encoder", "decoder"):
        print(f"wrote {written[kind]} ({written['parameters'][kind]:,} parameters)")
    print(f"load it with dalle_lessons.openai_dvae.load({str(args.out)!r}); the .pkl files are no longer needed")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """OpenAI's images API on http://HOST:PORT/v1 (see dalle_lessons/server.py for the endpoints and fields)."""
    import os
    from .server import API_KEY_ENV, serve
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    return serve(checkpoint=args.checkpoint, host=args.host, port=args.port, api_key=api_key, device=args.device,
                 max_queue=args.max_queue, max_batch=args.max_batch)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .environment import resolve_device
    if args.device is not None:
        if args.what == "judge":
            raise ValueError("evaluate judge reads pixels with numpy on the CPU: drop --device")
        args.device = resolve_device(args.device)  # a device this machine lacks: one line, before any work
    if args.what == "quality":
        return _evaluate_quality(args)
    if args.captions is None:
        args.captions = 16 if args.what == "bias" else 100
    if args.n is None and args.what in ("judge", "dvae"):
        args.n = 2000
    if args.what in ("judge", "dvae") and args.n < 2:
        raise ValueError(f"--n {args.n}: evaluate {args.what} needs at least 2 test images (half one-object, half "
                         "two-object scenes); the default is 2000")
    from .evaluate import evaluate_judge, format_table
    from .environment import machine_summary
    if args.what == "dvae":
        return _evaluate_dvae(args)
    if args.what == "generation":
        return _evaluate_generation(args)
    if args.what == "clip":
        return _evaluate_clip(args)
    if args.what == "rerank":
        return _evaluate_rerank(args)
    if args.what == "control":
        return _evaluate_control(args)
    if args.what == "bias":
        return _evaluate_bias(args)
    start = time.perf_counter()
    rows = evaluate_judge(n=args.n, preset=args.preset, seed=args.seed)
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({"what": "judge", "preset": args.preset, "n": args.n, "seed": args.seed,
                          "machine": machine_summary(), "seconds": round(elapsed, 1), "rows": rows}, indent=1))
    else:
        print(f"Judge accuracy (%) on {args.n} test-split renders, preset {args.preset}, seed {args.seed}")
        print(format_table(rows))
        print(f"{machine_summary()}; {elapsed:.1f} s")
    return 0


def _evaluate_dvae(args: argparse.Namespace) -> int:
    from .config import get_preset
    from .environment import machine_summary
    from .evaluate import evaluate_dvae, format_table
    get_preset(args.preset)
    start = time.perf_counter()
    report = evaluate_dvae(args.checkpoint, n=args.n, preset=args.preset, seed=args.seed, device=args.device or "cpu")
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({"what": "dvae", "preset": args.preset, "n": args.n, "seed": args.seed,
                          "machine": machine_summary(), "seconds": round(elapsed, 1), **report}, indent=1))
    else:
        extra = report["extra"]
        print(f"dVAE reconstructions of {args.n} test-split images, preset {args.preset}, seed {args.seed}: "
              f"{report['checkpoint']}")
        print(f"(quantizer {report['config']['quantizer']}, likelihood {report['config']['likelihood']}, "
              f"{report['config']['codebook_size']} codes; trained by `{extra.get('command', '?')}`, "
              f"{extra.get('steps', '?')} steps in {extra.get('wall_seconds', '?')} s)")
        print(format_table(report["rows"]))
        print(f"{machine_summary()}; {elapsed:.1f} s")
    return 0


def _evaluate_clip(args: argparse.Namespace) -> int:
    from .clip_eval import evaluate_clip, load_clip
    from .config import get_preset
    from .environment import machine_summary
    from .evaluate import format_table
    from .train_clip import clip_tokenizer
    get_preset(args.preset)
    start = time.perf_counter()
    model, meta = load_clip(args.checkpoint, preset=args.preset, device=args.device or "cpu")
    n = args.n or 1000
    if n < 10:
        raise ValueError(f"--n {n}: evaluate clip needs at least 10 test pairs (the default is 1000)")
    report = evaluate_clip(model, clip_tokenizer(args.preset), n=n, probe_n=n, preset=args.preset, seed=args.seed)
    elapsed = time.perf_counter() - start
    shown = args.checkpoint or f"data/clip-{args.preset}.safetensors"
    if args.json:
        print(json.dumps({"what": "clip", "checkpoint": shown, "preset": args.preset, "n": n, "seed": args.seed,
                          "machine": machine_summary(), "seconds": round(elapsed, 1), **report}, indent=1))
        return 0
    extra = meta.get("extra", {})
    print(f"CLIP {shown}: trained by `{extra.get('command', '?')}`, {extra.get('steps', '?')} steps in "
          f"{extra.get('wall_seconds', '?')} s; {model.num_parameters():,} parameters")
    r = report["retrieval"]
    rows = [{"direction": d.replace("_", " "), "R@1 pair": r[f"{d}_r1_pair"], "R@5 pair": r[f"{d}_r5_pair"],
             "R@1 true": r[f"{d}_r1_true"], "R@5 true": r[f"{d}_r5_true"]} for d in ("image_to_text", "text_to_image")]
    print(f"\nRetrieval among {n} test pairs (%): 'pair' = the item's own partner; 'true' = any item the "
          "caption truly describes")
    print(format_table(rows))
    print("\nBinding probe (%): the true caption scores above a caption that differs in exactly one thing")
    kinds = list(report["probe"]["seen"])
    rows = [{"kind": k, "seen pairs": report["probe"]["seen"][k]["accuracy"],
             "held-out pairs": report["probe"]["heldout"][k]["accuracy"],
             "comparisons": report["probe"]["seen"][k]["pairs"]} for k in kinds]
    print(format_table(rows))
    print(f"{machine_summary()}; {elapsed:.1f} s")
    return 0


def _check_generation_args(args: argparse.Namespace) -> None:
    """Refuse what `evaluate generation` / `evaluate rerank` cannot run before any model loads."""
    from .evaluate import _check_counts, generation_settings
    from .rerank import check_rerank
    from .sampling import check_sampling, check_seed
    check_seed(args.seed)
    if args.captions < 1:
        raise ValueError(f"--captions {args.captions}: measure at least 1 caption per set (the default is 100)")
    _check_counts(args.samples, args.batch_size)
    check_sampling(**generation_settings(_sampling_changes(args)))
    if args.what == "rerank":
        check_rerank(args.max_rerank)
        return
    check_rerank(args.rerank)
    if args.sweep and args.rerank != 1:
        raise ValueError(f"--sweep with --rerank {args.rerank}: the sweep measures sampling settings without "
                         "reranking; run them separately")


def _evaluate_rerank(args: argparse.Namespace) -> int:
    from .environment import machine_summary
    from .evaluate import format_table
    from .pipeline import TextToImage
    from .rerank_eval import rerank_curve
    _check_generation_args(args)
    start = time.perf_counter()
    pipe = TextToImage.from_pretrained(args.checkpoint, device=args.device)
    report = rerank_curve(pipe, n_captions=args.captions, max_n=args.max_rerank, seed=args.seed,
                          sampling=_sampling_changes(args), batch_size=args.batch_size)
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({"what": "rerank", "machine": machine_summary(), "seconds": round(elapsed, 1), **report},
                         indent=1))
        return 0
    print(f"Reranking: all-correct (%) of the chosen image, best of N samples per caption; {args.captions} captions "
          f"per set, seed {args.seed}; sampling: {_describe_sampling(report['sampling'])}")
    print("random: a random sample's chance (the N = 1 baseline); clip: the sample CLIP scores highest; "
          "oracle: the judge itself picks (a perfect reranker)")
    print(format_table(report["rows"]))
    print("\n".join(f"seconds per caption at N = {k}: {v:.2f}" for k, v in report["seconds_per_caption"].items()))
    print(f"{machine_summary()}; {elapsed:.1f} s")
    return 0


def _evaluate_control(args: argparse.Namespace) -> int:
    from .control import evaluate_control
    from .environment import machine_summary
    from .evaluate import format_table
    _check_generation_args(args)
    if args.rerank != 1 or args.sweep:
        raise ValueError("evaluate control measures plain sampling: drop --rerank / --sweep (they belong to "
                         "evaluate generation)")
    start = time.perf_counter()
    report = evaluate_control(args.checkpoint, n_captions=args.captions, samples=args.samples, seed=args.seed,
                              sampling=_sampling_changes(args), batch_size=args.batch_size, device=args.device)
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({"what": "control", "machine": machine_summary(), "seconds": round(elapsed, 1), **report},
                         indent=1))
        return 0
    print(f"Control: how often the drawn attribute is the asked one; {report['checkpoint']}, {args.captions} captions "
          f"per set x {args.samples} samples, seed {args.seed}; sampling: {_describe_sampling(report['sampling'])}")
    print("(sets: a one object, seen pair; b one object, held-out pair; c two objects and a relation. color, shape, "
          "size, position are read off images holding exactly one object: the others count as 'not one object')")
    rows = [{"attribute": name, "images": h["images"], "accuracy": h["accuracy"],
             "most common mistake": (f"{h['top_confusion'][0]} -> {h['top_confusion'][1]} "
                                     f"({h['top_confusion'][2]:.0f} %)" if h["top_confusion"] else "-")}
            for name, h in report["headline"].items()]
    print(format_table(rows))
    print("\nUnder-specified captions: what is drawn for what a caption leaves unsaid. tv: total variation from "
          "the training distribution for captions that leave it unsaid, in % (0 = the same; '-': training never leaves it "
          "unsaid); mode: the value drawn most often")
    table = []
    for row in report["underspecified"]:
        for attribute in ("color", "shape", "size", "position", "background"):
            if attribute in row:
                cell = row[attribute]
                table.append({"prompts": row["prompts"], "images": row["images"], "stated drawn": row["stated_drawn"],
                              "unsaid": attribute, "tv %": None if cell["tv"] is None else 100 * cell["tv"],
                              "mode": cell["mode"],
                              "mode share": 100 * cell["drawn"][cell["mode"]] if cell["mode"] else None})
    print(format_table(table))
    print(f"{machine_summary()}; {elapsed:.1f} s")
    return 0


def _evaluate_bias(args: argparse.Namespace) -> int:
    from .bias import SWEEP, WORLDS, adapter_file, evaluate_bias
    from .environment import machine_summary
    from .evaluate import _check_counts, format_table
    from .lora import read_adapter_metadata
    from .sampling import MAX_SEED, check_seed
    check_seed(args.seed)
    if args.seed > MAX_SEED - 2:
        raise ValueError(f"--seed {args.seed}: evaluate bias samples with seeds S, S+1 and S+2, so S must be at most "
                         f"{MAX_SEED - 2}")
    _check_counts(args.samples, args.batch_size)
    if args.captions < 1:
        raise ValueError(f"--captions {args.captions}: measure at least 1 colorless caption per shape (default 16)")
    if args.checkpoint is not None:
        raise ValueError("evaluate bias measures the bias adapters in data/ on the shipped model: drop --checkpoint")
    given = [f"--{name.replace('_', '-')} {value}" for name, value in _sampling_changes(args).items()]
    given += [f"--rerank {args.rerank}"] * (args.rerank != 1) + ["--sweep"] * args.sweep
    if given:
        raise ValueError(f"evaluate bias runs its own sampling sweep (bias.SWEEP): drop {', '.join(given)}")
    for world, data in WORLDS.items():
        if adapter_file(world).exists():
            read_adapter_metadata(adapter_file(world))  # a damaged or foreign adapter fails before any measuring
        else:
            raise FileNotFoundError(
                f"{adapter_file(world)} is missing: restore it from git (git checkout -- data/bias-{world}.*), or "
                f"retrain it: finetune --data \"{data}\" --examples 1024 --steps 300 (data/README.md)")
    start = time.perf_counter()
    seeds = (args.seed, args.seed + 1, args.seed + 2)
    report = evaluate_bias(captions=args.captions, samples=args.samples, seeds=seeds, batch_size=args.batch_size,
                           device=args.device)
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({"what": "bias", "machine": machine_summary(), "seconds": round(elapsed, 1), **report},
                         indent=1))
        return 0
    print(f"Bias: a world where {report['skew']} (80 % of triangles red, half the colors unsaid); LoRA adapters in "
          f"data/; {args.captions} colorless captions per shape x {args.samples} samples x seeds {list(seeds)}")
    print("train: P(red | triangle) in the adapter's training data, overall / among captions that leave the color "
          "unsaid; gen: P(red | a colorless triangle caption) drawn; amp: gen - train (unsaid); zhao: Zhao et al. "
          "2017; dir: Wang & Russakovsky 2021 (shape -> color); mad: DALL-Eval's deviation from uniform over the "
          "7 colors for triangles; leak: red drawn for another stated color. [95 % bootstrap interval over prompts]")
    print(format_table([_bias_row(row) for row in report["rows"]]))
    described = ", ".join(f"{name}: {_describe_changes(changes)}" for name, changes in SWEEP.items())
    print(f"skewed model's sampling sweep: {described}; other rows at the defaults")
    print(f"{machine_summary()}; {elapsed:.1f} s")
    return 0


def _describe_changes(changes: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in changes.items()) or "the defaults"


def _bias_row(row: dict) -> dict:
    """One printed row of the bias table: percentages with their intervals."""
    def pct(name: str) -> str:
        value, interval = row.get(name), row["intervals"].get(name)
        if value is None:
            return "-"
        return f"{100 * value:.1f}" + (f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else "")
    unsaid = row["train_rate_unsaid"]
    return {"model": row["model"], "setting": row["setting"],
            "train": f"{100 * row['train_rate_overall']:.0f} / " + (f"{100 * unsaid:.0f}" if unsaid is not None else "-"),
            "gen": pct("generated_rate"), "amp": pct("amplification"), "zhao": pct("zhao"), "dir": pct("directional"),
            "mad": pct("mad"), "leak": pct("leakage"), "readable": f"{row['readable']:.0f}"}


GENERATION_COLUMNS = ["set", "captions", "images", "all_correct", "count", "shape", "color", "size", "position",
                      "relation", "background", "distinct_images", "distinct_readings"]


def _print_pairs(rows: list[dict]) -> None:
    """Set b per held-out pair: how often it is drawn right, and the three readings drawn most often."""
    pairs = next((row["pairs"] for row in rows if "pairs" in row), None)
    if not pairs:
        return
    print("set b per held-out pair: all_correct (%), and what the judge reads most often (of the images)")
    for name, pair in pairs.items():
        drawn = ", ".join(f"{what} {count}" for what, count in list(pair["drawn"].items())[:3])
        print(f"  {name:<16} {pair['all_correct']:5.1f}  ({pair['images']} images: {drawn})")


def _evaluate_generation(args: argparse.Namespace) -> int:
    from .environment import machine_summary
    from .evaluate import GENERATION_SETS, evaluate_generation, format_table, generation_sweep
    from .pipeline import TextToImage
    _check_generation_args(args)
    start = time.perf_counter()
    pipe = TextToImage.from_pretrained(args.checkpoint, device=args.device)
    shown = args.checkpoint or "the shipped model in data/"
    options = dict(n_captions=args.captions, samples=args.samples, seed=args.seed,
                   sampling=_sampling_changes(args), batch_size=args.batch_size)
    report = {**evaluate_generation(pipe, **options, rerank=args.rerank), "checkpoint": shown}
    if args.sweep:
        sweep = generation_sweep(pipe, **options, baseline=report)
        report["sweep"] = {"guidance": sweep["guidance"], "sampling": sweep["sampling"]}
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({"what": "generation", "machine": machine_summary(), "seconds": round(elapsed, 1),
                          **report}, indent=1))
        return 0
    print(f"Generation fidelity (%), judged: {shown}, {args.captions} captions per set x {args.samples} "
          f"samples, seed {args.seed}")
    print(f"sampling: {_describe_sampling(report['sampling'])}"
          + (f"; each image CLIP's best of {report['rerank']} samples" if report["rerank"] > 1 else ""))
    for name, (description, split, _) in GENERATION_SETS.items():
        print(f"  set {name}: {description} ({split} split)")
    print(format_table(report["rows"], GENERATION_COLUMNS))
    print("all_correct: every stated attribute right and exactly the stated number of objects; an attribute's "
          "accuracy counts only captions that state it ('-': none does)")
    print(report["diversity"])
    _print_pairs(report["rows"])
    if report["truncated_captions"]:
        print(f"note: {report['truncated_captions']} caption(s) were longer than the model's text length "
              f"and were truncated")
    if args.sweep:
        columns = ["temperature", "top_k", "top_p", "guidance_scale", "a", "b", "c", "distinct_readings", "default"]
        marked = lambda rows: [{**r, "default": "*" if r["default"] else ""} for r in rows]
        print("\nGuidance sweep: all_correct (%) per set ('-': filter off; *: the default settings)")
        print(format_table(marked(report["sweep"]["guidance"]), columns))
        print("\nSampling sweep: one change to the defaults per row; all_correct (%) per set")
        print(format_table(marked(report["sweep"]["sampling"]), ["variation"] + columns))
    print(f"{machine_summary()}; {elapsed:.1f} s")
    return 0


QUALITY_COLUMNS = ["setting", "temperature", "guidance", "rerank", "frechet", "all_correct", "distinct_readings",
                   "distinct_images"]


def _evaluate_quality(args: argparse.Namespace) -> int:
    """Lesson 09's table: CLIP-embedding Fréchet distance to real test images, the judge, and diversity."""
    from .environment import machine_summary
    from .evaluate import format_table
    from .quality import CALIBRATION_BLUR, QUALITY_RERANK, evaluate_quality
    ignored = [flag for flag, given in (("--captions", args.captions is not None), ("--rerank", args.rerank != 1),
                                        ("--max-rerank", args.max_rerank != 64), ("--sweep", args.sweep),
                                        ("--preset", args.preset != "cpu"),
                                        ("sampling flags", bool(_sampling_changes(args)))) if given]
    if ignored:
        grid = f"the default, temperatures, guidance scales, rerank {' and '.join(map(str, QUALITY_RERANK))}"
        raise ValueError(f"evaluate quality measures a fixed grid of sampling settings ({grid}) at the checkpoint's "
                         f"own image size; {', '.join(ignored)} would be ignored: leave them out")
    n = 500 if args.n is None else args.n
    report = evaluate_quality(args.checkpoint, n=n, samples=args.samples, seed=args.seed,  # checks before loading
                              batch_size=args.batch_size, device=args.device)
    if args.json:
        print(json.dumps({"what": "quality", "machine": machine_summary(), **report}, indent=1))
        return 0
    print(f"Quality (lesson 09): {report['checkpoint']}; A = {n} real test images; generated rows: "
          f"{report['captions']} captions of other test images x {args.samples} samples, seed {args.seed}")
    print(f"frechet: CLIP-embedding Fréchet distance to A, x100 (the course's CLIP, not Inception: not an FID); "
          f"lower is closer to real. 'real (floor)': {n} other real test images, the lowest to expect; "
          f"'real, blurred {CALIBRATION_BLUR:g} px' for scale; 'dVAE reconstructions': the ceiling the "
          f"dVAE's compression sets; 'real, same captions': {args.samples} real scenes that fit each caption "
          "of the generated rows, what a perfect generator would draw (their floor)")
    print(f"default sampling: {_describe_sampling(report['default_sampling'])}; each row changes one setting; "
          "rerank N: CLIP's best of N samples per image")
    print(format_table(report["rows"], QUALITY_COLUMNS))
    print("all_correct (%): the judge, every stated attribute right (real rows: one image per caption); "
          + report["diversity"])
    print(f"{machine_summary()}; {report['seconds']:.1f} s")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a hint where its own message leaves a user guessing."""

    def error(self, message: str):
        if "required: PROMPT" in message:
            message += " (a prompt that begins with '-' goes after --, e.g. generate -n 4 -- '-a red circle')"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dalle_lessons",
                                     description="Build DALL·E from Scratch: train, evaluate and check.",
                                     epilog="The course's data/ folder (tokenizer, checkpoints, MANIFEST.json) is "
                                            "found beside the package; set DALLE_LESSONS_DATA=/path/to/data to "
                                            "use another one. DALLE_LESSONS_TRACEBACK=1 shows the Python "
                                            "traceback behind an error.")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="check that this environment can run the course")
    check.set_defaults(func=cmd_check)

    data = sub.add_parser("data", help="write the committed data definitions")
    data.add_argument("what", choices=["splits", "manifest"],
                      help="splits: data/splits.json; manifest: data/MANIFEST.json (sizes and SHA-256 of data/)")
    data.set_defaults(func=cmd_data)

    train = sub.add_parser("train", help="train a component and save it in data/")
    train.add_argument("what", choices=["tokenizer", "dvae", "dalle", "clip"])
    train.add_argument("--preset", default="cpu")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--steps", type=int, default=None, help="dvae, dalle, clip: training steps (default: the recipe's)")
    train.add_argument("--out", default=None, help="output folder (default: the course's data/)")
    train.add_argument("--resume", action="store_true", help="dvae, dalle, clip: continue an interrupted run in --out")
    train.add_argument("--overwrite-shipped", action="store_true",
                       help="dvae, dalle, clip: allow replacing a shipped file of data/ (listed in data/MANIFEST.json) "
                            "and record its new checksum; without it such a run stops at once")
    train.add_argument("--quantizer", choices=["gumbel", "vq"], default=None,
                       help="dvae: 'gumbel' (DALL·E, default) or 'vq' (VQ-VAE); vq saves as dvae-PRESET-vq")
    train.add_argument("--likelihood", choices=["logit_laplace", "mse"], default=None,
                       help="dvae: reconstruction loss (default: the preset's)")
    train.add_argument("--train-images", type=int, default=None, help="dvae, dalle, clip: size of the training set")
    train.add_argument("--device", default=None,
                       help="dvae, dalle, clip: cpu, cuda or auto (default auto: the GPU when there is one)")
    train.add_argument("--batch-size", type=int, default=None,
                       help="dalle: pairs per step, split evenly over torchrun's processes (default 64)")
    train.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=None,
                       help="dalle: fp32; bf16 autocast; fp16 autocast with a gradient scaler (GPUs without bf16); "
                            "auto (default): bf16 where the hardware has it, fp16 on other GPUs, else fp32")
    train.add_argument("--no-hard-negatives", action="store_true",
                       help="clip: train without near-miss captions (an ablation: the binding probe drops)")
    train.add_argument("--no-negative-images", action="store_true",
                       help="clip: hard-negative captions only, without rendering their scenes as extra images")
    train.add_argument("--false-negatives", choices=["soft", "ignore"], default=None,
                       help="clip: 'soft' (default) spreads targets over every true pair in a batch; "
                            "'ignore' is CLIP's one-hot recipe (an ablation)")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="print a table of measured figures")
    evaluate.add_argument("what", choices=["judge", "dvae", "generation", "clip", "rerank", "control", "bias", "quality"])
    evaluate.add_argument("--n", type=int, default=None,
                          help="judge, dvae: number of test images (default 2000); clip: test pairs for retrieval "
                               "and scenes per probe (default 1000); quality: images per set (default 500)")
    evaluate.add_argument("--checkpoint", default=None,
                          help="dvae: a .safetensors checkpoint (default: data/dvae-PRESET.safetensors); "
                               "generation, quality: a folder written by TextToImage.save_pretrained (default: the "
                               "shipped model)")
    evaluate.add_argument("--preset", default="cpu", help="judge, dvae: the preset whose images to use")
    evaluate.add_argument("--seed", type=int, default=0, help="the data seed; generation, quality: the sampling seed")
    evaluate.add_argument("--captions", type=int, default=None,
                          help="generation, rerank, control: captions per set a, b, c (default 100); "
                               "bias: colorless captions per shape (default 16)")
    evaluate.add_argument("--samples", type=int, default=4, help="generation, quality: images per caption")
    evaluate.add_argument("--batch-size", type=int, default=128, help="generation, quality: images generated at once")
    evaluate.add_argument("--rerank", type=int, default=1,
                          help="generation: each image is the best of this many samples by CLIP score (default 1: none)")
    evaluate.add_argument("--max-rerank", type=int, default=64,
                          help="rerank: the largest N of the curve N = 1, 2, 4, ... (default 64)")
    evaluate.add_argument("--sweep", action="store_true",
                          help="generation: add tables over guidance scales and sampling settings "
                               "(about ten times as long as the main table)")
    evaluate.add_argument("--device", default=None,
                          help="cpu, cuda or auto (default: dvae and clip on the cpu, the rest auto; judge: cpu only)")
    _add_sampling(evaluate)
    _add_json(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    generate = sub.add_parser("generate", help="draw images for one or more prompts")
    generate.add_argument("prompts", nargs="+", metavar="PROMPT", help="one caption per row of the grid")
    generate.add_argument("-n", type=int, default=8, help="images per prompt (default 8)")
    generate.add_argument("--seed", type=int, default=0, help="same seed, same images (default 0)")
    generate.add_argument("--size", default="128x128", help="size of each image, e.g. 32x32 (native), 256x256")
    generate.add_argument("--out", default=None, help="the grid image to write (default: generated.png, "
                                                       "unless --out-dir is given)")
    generate.add_argument("--out-dir", default=None, help="also write each image as PP-II-PROMPT.png in this folder")
    generate.add_argument("--columns", type=int, default=8, help="images per grid row at most (default 8)")
    generate.add_argument("--checkpoint", default=None,
                          help="a folder written by TextToImage.save_pretrained (default: the shipped model)")
    generate.add_argument("--device", default=None, help="cpu, cuda or auto (default auto: cuda when available)")
    generate.add_argument("--on-overflow", choices=["warn", "error"], default="warn",
                          help="a prompt longer than the model's text tokens: keep its start with a warning "
                               "(default) or stop with an error")
    generate.add_argument("--rerank", type=int, default=1,
                          help="sample this many candidates per image and keep the one CLIP scores highest "
                               "(default 1: no reranking; at most 128)")
    generate.add_argument("--adapter", default=None,
                          help="a LoRA adapter written by `finetune --method lora` (adapter.safetensors or its folder), "
                               "trained on the --checkpoint model (default: the shipped one)")
    _add_sampling(generate)
    generate.set_defaults(func=cmd_generate)

    tune = sub.add_parser("finetune", help="fine-tune the pretrained model on a folder of images or a built-in set",
                          description="Fine-tune the pretrained transformer on new images: a folder of PNG/JPEG "
                                      "images with captions.jsonl ({\"file\": ..., \"caption\": ...} per line) or "
                                      "captions.csv (file,caption), or a built-in set 'heldout:<color> <shape>'. "
                                      "One example in eight is held out for validation.")
    tune.add_argument("--data", required=True, help="a folder of images + captions.jsonl/csv, or 'heldout:blue square'")
    tune.add_argument("--out", required=True, help="output folder (not data/): the adapter (lora) or a pipeline folder")
    tune.add_argument("--from", dest="from_", default=None, metavar="DIR",
                      help="the base: a folder written by TextToImage.save_pretrained (default: the shipped model)")
    tune.add_argument("--method", default="lora", help="full, last-layers or lora (default lora)")
    tune.add_argument("--rank", type=int, default=None, help="lora: rank of each adapter (default 4)")
    tune.add_argument("--alpha", type=float, default=None, help="lora: scale alpha / rank (default alpha = rank)")
    tune.add_argument("--layers", type=int, default=None, help="last-layers: how many last blocks train (default 1)")
    tune.add_argument("--steps", type=int, default=None, help="training steps (default 200)")
    tune.add_argument("--lr", type=float, default=None,
                      help="learning rate (default: 2e-3 for lora, 3e-4 for last-layers, 1e-4 for full)")
    tune.add_argument("--seed", type=int, default=0, help="the training seed (default 0)")
    tune.add_argument("--examples", type=int, default=None, help="built-in sets: how many scenes (default 128)")
    tune.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    tune.add_argument("--device", default=None, help="cpu, cuda or auto (default auto: cuda when available)")
    tune.set_defaults(func=cmd_finetune)

    serve = sub.add_parser("serve", help="answer OpenAI's images API (images.generate, images.edit) with the model",
                           description="An OpenAI-compatible images API: POST /v1/images/generations and "
                                       "/v1/images/edits, GET /v1/models. The official client works with "
                                       "base_url='http://HOST:PORT/v1'. Needs pip install -e \".[api]\".")
    serve.add_argument("--host", default="127.0.0.1",
                       help="interface to listen on (default 127.0.0.1: this machine only; any other needs a key)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    serve.add_argument("--api-key", default=None,
                       help="require 'Authorization: Bearer KEY' on every API call (default: the environment "
                            "variable DALLE_LESSONS_API_KEY; none: no key, local only)")
    serve.add_argument("--checkpoint", default=None,
                       help="a folder written by TextToImage.save_pretrained (default: the shipped model)")
    serve.add_argument("--device", default=None, help="cpu, cuda or auto (default auto: cuda when available)")
    serve.add_argument("--max-queue", type=int, default=64,
                       help="requests waiting at most; more are answered 429 with retry-after (default 64)")
    serve.add_argument("--max-batch", type=int, default=64,
                       help="images sampled together at most (default 64, the pipeline's MAX_BATCH)")
    serve.set_defaults(func=cmd_serve)

    scale = sub.add_parser("scale", help="the arithmetic of scale: parameters, FLOPs, memory, time to train",
                           description="Parameters by component, FLOPs per token and per image, training memory "
                                       "(fp32 / mixed fp16, activation checkpointing, sharding) and, for the paper "
                                       "preset, the time to train at the paper's budget on its V100s and today's "
                                       "accelerators. Computed in closed form; nothing is trained or allocated.")
    scale.add_argument("--preset", default="paper", help="tiny, cpu, colab, paper or all (default paper)")
    _add_json(scale)
    scale.set_defaults(func=cmd_scale)

    convert = sub.add_parser("convert-openai-dvae",
                             help="convert OpenAI's published dVAE (encoder.pkl, decoder.pkl) to safetensors, once",
                             description="OpenAI's dVAE weights are Python pickles, which run code when opened. This "
                                         "opens them once, only with --i-understand-pickle, and writes safetensors + "
                                         "JSON that dalle_lessons.openai_dvae.load reads without pickle.")
    convert.add_argument("--encoder", required=True, help="OpenAI's encoder.pkl")
    convert.add_argument("--decoder", required=True, help="OpenAI's decoder.pkl")
    convert.add_argument("--out", required=True, help="folder for openai-dvae-{encoder,decoder}.safetensors + .json")
    convert.add_argument("--i-understand-pickle", action="store_true",
                         help="consent to open the pickles (they can run code): only for files you downloaded "
                              "from OpenAI yourself")
    convert.set_defaults(func=cmd_convert_openai_dvae)
    return parser


def _one_line(error: BaseException) -> str:
    """An exception as the CLI prints it: its message (OS errors with the file), at most 2,000 characters."""
    if isinstance(error, OSError) and error.filename is not None and str(error.filename) not in str(error):
        text = f"{error.strerror or error}: {error.filename}"
    elif isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{error.strerror}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    fixes = {PermissionError: "choose a path you may write to",
             IsADirectoryError: "give a file name, not a folder", NotADirectoryError: "a part of the path is a file",
             MemoryError: "ask for fewer images (-n) or a smaller --size"}
    fix = next((f for kind, f in fixes.items() if isinstance(error, kind)), None)
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())  # a list of problems, on one line
    text = text if not fix or "choose" in text or fix in text else f"{text} ({fix})"
    return text if len(text) <= 2000 else text[:2000] + "..."


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    import os
    import warnings
    args = build_parser().parse_args(argv)
    shown = warnings.showwarning
    warnings.showwarning = _warning_line  # one line per warning, not the source line that raised it
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError, MemoryError) as error:
        if os.environ.get("DALLE_LESSONS_TRACEBACK"):
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug of ours: still one line, with where to report it
        if os.environ.get("DALLE_LESSONS_TRACEBACK"):
            raise
        print(f"error: unexpected {type(error).__name__}: {_one_line(error)} (a bug: rerun with "
              "DALLE_LESSONS_TRACEBACK=1 and report the traceback)", file=sys.stderr)
        return 3
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
