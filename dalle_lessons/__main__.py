"""Command line: `python -m dalle_lessons COMMAND ...` (also installed as `dalle-lessons`).

    python -m dalle_lessons check                       # is this environment ready for the course?
    python -m dalle_lessons data splits                 # (re)write data/splits.json
    python -m dalle_lessons train tokenizer --preset cpu
    python -m dalle_lessons train dvae --preset cpu [--steps N] [--seed S] [--out DIR] [--resume]
    python -m dalle_lessons train dalle --preset cpu [--steps N] [--seed S] [--out DIR] [--resume]
    python -m dalle_lessons evaluate judge [--json]
    python -m dalle_lessons evaluate dvae [--checkpoint PATH] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")


def cmd_check(args: argparse.Namespace) -> int:
    from .environment import check_environment, format_report
    results = check_environment()
    print(format_report(results))
    return 0 if all(r.ok for r in results) else 1


def cmd_data(args: argparse.Namespace) -> int:
    from .shapes import write_split_definition
    path = write_split_definition()
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import get_preset
    get_preset(args.preset)  # fail early, with the list of presets, on a typo
    if args.what == "tokenizer":
        from .tokenizer import train_default
        start = time.perf_counter()
        path = train_default(preset=args.preset, seed=args.seed)
        print(f"wrote {path} in {time.perf_counter() - start:.1f} s")
        return 0
    if args.what == "dvae":
        return _train_dvae(args)
    if args.what == "dalle":
        return _train_dalle(args)
    raise SystemExit(f"unknown training target {args.what!r}")


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
                             model_config=model_config, resume=args.resume)
    except KeyboardInterrupt:
        print("interrupted: run the same command with --resume to continue", file=sys.stderr)
        return 130
    final = summary["history"][-1] if summary["history"] else {}
    print(f"wrote {summary['path']} after {summary['step']} steps in {summary['seconds']:.0f} s"
          + (f" (val PSNR {final['psnr']:.2f} dB, {final['codes_used']} codes used)" if final else ""))
    return 0


def _train_dalle(args: argparse.Namespace) -> int:
    from .train_dalle import DalleTrainConfig, train_dalle
    changes = {"steps": args.steps}
    train_config = DalleTrainConfig(**{k: v for k, v in changes.items() if v is not None})
    try:
        summary = train_dalle(args.preset, seed=args.seed, out=args.out, train_config=train_config,
                              resume=args.resume)
    except KeyboardInterrupt:
        print("interrupted: run the same command with --resume to continue", file=sys.stderr)
        return 130
    final = summary["history"][-1] if summary["history"] else {}
    print(f"wrote {summary['path']} after {summary['step']} steps in {summary['seconds']:.0f} s"
          + (f" (val text loss {final['val_text_loss']:.3f}, image loss {final['val_image_loss']:.3f})"
             if final else ""))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_judge, format_table
    from .environment import machine_summary
    if args.what == "dvae":
        return _evaluate_dvae(args)
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
    report = evaluate_dvae(args.checkpoint, n=args.n, preset=args.preset, seed=args.seed)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dalle_lessons",
                                     description="Build DALL·E from Scratch: train, evaluate and check.")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="check that this environment can run the course")
    check.set_defaults(func=cmd_check)

    data = sub.add_parser("data", help="write the committed data definitions")
    data.add_argument("what", choices=["splits"])
    data.set_defaults(func=cmd_data)

    train = sub.add_parser("train", help="train a component and save it in data/")
    train.add_argument("what", choices=["tokenizer", "dvae", "dalle"])
    train.add_argument("--preset", default="cpu")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--steps", type=int, default=None, help="dvae, dalle: training steps (default: the recipe's)")
    train.add_argument("--out", default=None, help="dvae, dalle: output folder (default: the course's data/)")
    train.add_argument("--resume", action="store_true", help="dvae, dalle: continue an interrupted run in --out")
    train.add_argument("--quantizer", choices=["gumbel", "vq"], default=None,
                       help="dvae: 'gumbel' (DALL·E, default) or 'vq' (VQ-VAE); vq saves as dvae-PRESET-vq")
    train.add_argument("--likelihood", choices=["logit_laplace", "mse"], default=None,
                       help="dvae: reconstruction loss (default: the preset's)")
    train.add_argument("--train-images", type=int, default=None, help="dvae: size of the training set")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="print a table of measured figures")
    evaluate.add_argument("what", choices=["judge", "dvae"])
    evaluate.add_argument("--n", type=int, default=2000, help="number of test images")
    evaluate.add_argument("--checkpoint", default=None,
                          help="dvae: a .safetensors checkpoint (default: data/dvae-PRESET.safetensors)")
    evaluate.add_argument("--preset", default="cpu")
    evaluate.add_argument("--seed", type=int, default=0)
    _add_json(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
