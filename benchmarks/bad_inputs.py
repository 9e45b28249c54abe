"""Issue 17's bad-input table, re-measured: every kind of bad or unusual input, through the CLI and the API.

    python benchmarks/bad_inputs.py [--json benchmarks/results/bad_inputs.json] [--only TEXT] [--surface cli|api]

Each case is one kind of input, replayed either through the command line (`python -m dalle_lessons ...` as a
subprocess, 60 s timeout) or through the Python API (in this process, the shipped `cpu` pipeline), and declares
what it expects: `error` (it must be refused) or `ok` (it must work: an accented short prompt, a 100 kB prompt
that is truncated with a warning, top-p 1e-300, ...). Everything runs on copies of data/ in a temporary folder
(DALLE_LESSONS_DATA points there, for this process and every subprocess): nothing under data/ is touched.

Outcomes, as issue 17's table counts them:
- clear error: refused with one line (CLI: exit != 0, no traceback, the `error:` line; argparse's own refusals
  count by their `error:` line, the usage lines above it are argparse's reminder) of at most 300 characters that
  names the value, flag or file (each case lists what counts as naming it) and says what to do (a fix word:
  choose, give, must be, at least, restore, ...). API: a ValueError / TypeError / FileNotFoundError (or a
  subclass) with such a message; an OSError subclass with such a message (PermissionError for an unwritable
  folder) counts too.
- unclear error: refused, but the message is a raw library / OS one, several lines, too long, or names neither
  the value nor a fix; also a valid input that was refused (expected `ok`).
- traceback: CLI: a Python traceback, or the CLI's catch-all `error: unexpected X ... (a bug ...)` line (exit 3);
  API: any other exception type (RuntimeError, KeyError, IndexError, OverflowError, safetensors' errors ...).
- silent wrong result: expected `error` but it ran (exit 0 / returned), or a post-condition failed (a shipped
  file changed); expected `ok` but the output is missing, has the wrong size or count, or non-finite pixels.
- hang: no answer within the timeout (60 s).
- ok: expected `ok` and it worked.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")  # a shared 2-core machine: one thread here and in every subprocess
ROOT = Path(__file__).resolve().parent.parent
SOURCE_DATA = ROOT / "data"
WORK = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
DATA = WORK / "data"  # the copy of data/ every case uses (API and CLI), set before the package is imported
os.environ["DALLE_LESSONS_DATA"] = str(DATA)
os.environ.pop("DALLE_LESSONS_TRACEBACK", None)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header  # noqa: E402

OUTCOMES = ["clear error", "unclear error", "traceback", "silent wrong result", "hang", "ok"]
TIMEOUT = 60
MAX_CHARS = 300
PROMPT = "a small red circle above a blue square"
FIX = re.compile(
    r"\b(choose|give|use|run|pass|must|should|at least|at most|restore|remove|shorten|drop|install|set|save|"
    r"train|retrain|call|describe|split|resize|divide|ask|leave|delete|rerun|update|load|expects?|expected|"
    r"is not|not a|an int|a number|a str|one of|from \d|in \(|instead|only|needs?|try|check|measure|keep|"
    r"start|re-create|invalid|unrecognized|required|fix|allowed|make|end the name|pick|lower|raise|add|put|move|"
    r"download)\b",
    re.IGNORECASE)
SHIPPED_PARTS = ("tokenizer.json", "dvae-cpu.safetensors", "dvae-cpu.json", "dalle-cpu.safetensors",
                 "dalle-cpu.json", "clip-cpu.safetensors", "clip-cpu.json", "splits.json", "MANIFEST.json")


@dataclasses.dataclass
class Case:
    name: str
    surface: str  # "cli" or "api"
    category: str
    expect: str  # "error" or "ok"
    run: Any  # cli: argv (list, "{tmp}" replaced by the case's folder) or fn(tmp) -> argv; api: fn(tmp) -> result
    names: tuple = ()  # a clear message names one of these (case-insensitive); "{tmp}" replaced too
    check: Callable | None = None  # ok: fn(tmp, result) -> problem or None; error: post-condition, same form
    setup: Callable | None = None  # fn(tmp) -> {"env": {...}, "subs": {...}} or None, before the run
    issue: int | None = None  # the item of issue 17's numbered list the case replays
    timeout: int = TIMEOUT


@dataclasses.dataclass
class CliResult:
    rc: int
    stdout: str
    stderr: str


CASES: list[Case] = []


def cli(name, category, expect, argv, names=(), **kw):
    CASES.append(Case(name, "cli", category, expect, argv, tuple(names), **kw))


def api(name, category, expect, fn, names=(), **kw):
    CASES.append(Case(name, "api", category, expect, fn, tuple(names), **kw))


# ------------------------------------------------------------------------------------------------ fixtures

def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_data(folder: Path, cache: bool = False) -> Path:
    """A copy of data/'s shipped files (and, with `cache`, its small cache files; big ones as symlinks,
    read only) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED_PARTS:
        shutil.copy2(SOURCE_DATA / name, folder / name)
    if cache and (SOURCE_DATA / "cache").is_dir():
        (folder / "cache").mkdir(exist_ok=True)
        for file in (SOURCE_DATA / "cache").iterdir():
            if file.stat().st_size <= 16_000_000:
                shutil.copy2(file, folder / "cache" / file.name)
            else:
                (folder / "cache" / file.name).symlink_to(file)
    return folder


def damage(path: Path, kind: str) -> Path:
    """Turn the good file at `path` into the damaged `kind` (same kinds as tests/test_reliability.py)."""
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "lfs-pointer":
        path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 8002588\n")
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    elif kind == "torch.save":
        torch.save({"weight": torch.zeros(2)}, path)
    elif kind == "same-size":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 4096]) + data[middle + 4096:])
    elif kind == "trailing-garbage":
        path.write_bytes(data + b"\0" * 100)
    elif kind == "garbage-header":
        path.write_bytes((16).to_bytes(8, "little") + b"{not json at all" + data[24:])
    elif kind == "not-json":
        path.write_text("{ this is not json")
    elif kind == "json-list":
        path.write_text("[1, 2, 3]")
    elif kind == "tokenizer-shaped":
        path.write_text('{"model": 3}')
    elif kind == "binary-garbage":
        path.write_bytes(bytes(range(256)) * 10)
    else:
        raise AssertionError(kind)
    return path


def edit_json(path: Path, change: Callable[[dict], None]) -> Path:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return path


class Fixtures:
    """Built once: the shipped pipeline (from the copy), a saved pipeline folder, a tiny dVAE, a training state."""

    def __init__(self) -> None:
        from dalle_lessons.pipeline import TextToImage
        copy_data(DATA, cache=True)
        self.pipe = TextToImage.from_pretrained(device="cpu")
        self.folder = self.pipe.save_pretrained(WORK / "pipe")  # tokenizer, dvae, transformer, clip
        self.cwd = WORK / "cwd"
        self.cwd.mkdir()
        self.shipped_sha = {name: sha(DATA / name) for name in SHIPPED_PARTS}
        self._tiny_dvae = None

    def pipe_folder(self, tmp: Path) -> Path:
        return Path(shutil.copytree(self.folder, tmp / "pipe"))

    def tiny_dvae(self) -> Path:
        """A 1-step tiny dVAE (dvae-tiny.safetensors) in the data copy, trained once."""
        if self._tiny_dvae is None:
            from dalle_lessons.train import DVAETrainConfig, train_dvae
            summary = train_dvae("tiny", out=DATA, progress=False, log=lambda s: None,
                                 train_config=DVAETrainConfig(steps=1, train_images=64, val_images=16))
            self._tiny_dvae = Path(summary["path"])
        return self._tiny_dvae

    def restore(self) -> None:
        for name, digest in self.shipped_sha.items():
            if not (DATA / name).exists() or sha(DATA / name) != digest:
                shutil.copy2(SOURCE_DATA / name, DATA / name)

    def unchanged(self, *names: str) -> str | None:
        changed = [n for n in names if not (DATA / n).exists() or sha(DATA / n) != self.shipped_sha[n]]
        return f"shipped file(s) changed: {', '.join(changed)}" if changed else None


FX: Fixtures  # set in main()


def light_data(tmp: Path, file: str | None = None, kind: str | None = None) -> dict:
    """A copy of the shipped files in tmp/data, one of them damaged, as DALLE_LESSONS_DATA."""
    folder = copy_data(tmp / "data")
    if file and kind == "missing":
        (folder / file).unlink()
    elif file:
        damage(folder / file, kind)
    return {"env": {"DALLE_LESSONS_DATA": str(folder)}}


def png_ok(path: Path, width: int | None = None, count: int = 1):
    """A problem with the written image(s) at `path` (a file or a folder of PNGs), or None."""
    files = sorted(path.glob("*.png")) if path.is_dir() else [path]
    if len(files) != count or not all(f.is_file() for f in files):
        return f"expected {count} image file(s) at {path}, found {len(files)}"
    for f in files:
        with Image.open(f) as image:
            image.load()
            if width is not None and image.width != width:
                return f"{f.name} is {image.width} px wide, expected {width}"
    return None


def grid_ok(width: int | None = None):
    return lambda tmp, res: png_ok(tmp / "g.png", width)


def warned_briefly(tmp, res: CliResult):
    """ok with a warning: the image is there, and each warning line is short (no 100 kB echo)."""
    lines = [l for l in res.stderr.splitlines() if l.startswith("warning:")]
    if not lines:
        return "no warning about the truncated prompt"
    if max(map(len, lines)) > MAX_CHARS:
        return ("unclear error", f"warning line of {max(map(len, lines)):,} characters: {lines[0][:200]}...")
    return png_ok(tmp / "g.png")


def no_truncation_cli(tmp, res: CliResult):
    if "too long" in res.stderr:
        return f"a short prompt was truncated: {res.stderr.strip()[:200]}"
    return png_ok(tmp / "g.png")


# ------------------------------------------------------------------------------------------------ CLI cases

def gen(*extra, prompts=(PROMPT,)):
    """`generate PROMPT -n 1 --out {tmp}/g.png` plus `extra` (a later flag overrides an earlier one)."""
    return ["generate", *prompts, "-n", "1", "--out", "{tmp}/g.png", *extra]


def add_cli_cases() -> None:
    # counts
    cli("generate -n 0", "counts", "error", gen("-n", "0"), ["-n 0", "n=0"])
    cli("generate -n -1", "counts", "error", gen("-n", "-1"), ["-n -1", "n=-1"])
    cli("generate -n 1000000", "counts", "error", gen("-n", "1000000"), ["1000000", "1,000,000"], issue=7)
    cli("generate -n 65 (over the per-prompt cap)", "counts", "error", gen("-n", "65"), ["65"], issue=7)
    cli("generate -n 2.5", "counts", "error", gen("-n", "2.5"), ["2.5"])
    cli("generate -n three", "counts", "error", gen("-n", "three"), ["three"])
    cli("generate 5 prompts x -n 64 (over the per-call cap)", "counts", "error",
        gen("-n", "64", prompts=[PROMPT] * 5), ["320", "64"], issue=7)
    cli("generate 200 prompts x -n 64 (issue item 7)", "counts", "error", gen("-n", "64", prompts=[PROMPT] * 200),
        ["12800", "12,800", "200"], issue=7)
    cli("generate 300 prompts x -n 1", "counts", "error", gen(prompts=["a red circle"] * 300), ["300"], issue=7)
    cli("generate --columns 0", "counts", "error", gen("--columns", "0"), ["--columns 0"])
    cli("generate --columns -3", "counts", "error", gen("--columns", "-3"), ["--columns -3"])
    cli("generate -n 3 --columns 100", "counts", "ok", gen("-n", "3", "--columns", "100"), check=grid_ok())
    cli("generate --rerank 0", "counts", "error", gen("--rerank", "0"), ["rerank=0", "--rerank 0"])
    cli("generate --rerank -1", "counts", "error", gen("--rerank", "-1"), ["rerank=-1", "--rerank -1"])
    cli("generate --rerank 129", "counts", "error", gen("--rerank", "129"), ["129"])
    cli("generate --rerank 2", "counts", "ok", gen("--rerank", "2"), check=grid_ok())
    # sizes
    for size in ("0x0", "33x33", "128x64", "big", "-32x-32", "1000000000x1000000000", "", "1024x1024"):
        cli(f"generate --size={size}", "sizes", "error", gen(f"--size={size}"), [repr(size), size or "''"])
    cli("generate --size 32x32 (native)", "sizes", "ok", gen("--size", "32x32"), check=grid_ok())
    cli("generate --size 512x512", "sizes", "ok", gen("--size", "512x512"), check=grid_ok())
    # seeds
    cli("generate --seed -1", "seeds", "error", gen("--seed", "-1"), ["-1"])
    cli("generate --seed 2**63", "seeds", "error", gen("--seed", str(2**63)), [str(2**63)], issue=8)
    cli("generate --seed 2**64 + 5", "seeds", "error", gen("--seed", str(2**64 + 5)), [str(2**64 + 5)], issue=8)
    cli("generate --seed 10**400", "seeds", "error", gen("--seed", "1" + "0" * 400), ["401 characters", "10000"])
    cli("generate --seed 1.5", "seeds", "error", gen("--seed", "1.5"), ["1.5"])
    cli("generate --seed abc", "seeds", "error", gen("--seed", "abc"), ["abc"])
    cli("generate --seed 2**63 - 1", "seeds", "ok", gen("--seed", str(2**63 - 1)), check=grid_ok())
    # sampling values
    bad = {"--temperature": ["-1", "nan", "inf", "-inf", "1e-45", "1e38", "0.001", "1e300", "hot"],
           "--top-p": ["0", "-0.5", "nan", "inf", "1.5", "1e400"],
           "--top-k": ["-1", "2.5", "many"],
           "--guidance-scale": ["-1", "nan", "inf", "1e38", "1e30", "10.5", "-1e-45"]}
    for flag, values in bad.items():
        for value in values:
            shown = {"1e400": "inf", "1e300": "1e+300", "1e38": "1e+38", "1e30": "1e+30"}.get(value, value)
            cli(f"generate {flag}={value}", "sampling", "error", gen(f"{flag}={value}"),
                [shown, value], issue=3 if value in ("1e-45", "1e38", "1e30", "1.5", "-1") else None)
    good = {"--temperature": ["0", "100", "0.01"], "--top-p": ["1e-300", "1", "5e-324"],
            "--top-k": ["0", "1", "100000000000000000000"], "--guidance-scale": ["0", "10", "1e-45"]}
    for flag, values in good.items():
        for value in values:
            cli(f"generate {flag}={value}", "sampling", "ok", gen(f"{flag}={value}"), check=grid_ok(), issue=3)
    cli("generate --temperature -inf (argparse reads '-inf' as a flag)", "sampling", "error",
        gen("--temperature", "-inf"), ["--temperature"])
    # prompts
    for label, prompt in [("empty", ""), ("spaces", "   "), ("tab and newline", "\t\n")]:
        cli(f"generate prompt {label}", "prompts", "error", gen(prompts=[prompt]), ["empty"])
    cli("generate prompt of invalid UTF-8 bytes", "prompts", "error", gen(prompts=["\udcff\udcfe red circle"]),
        ["prompt", "UTF-8", "\\udcff", "\\xff"])
    cli("generate prompt '-x' (looks like a flag)", "prompts", "error", ["generate", "-x", "-n", "1"],
        ["-x", "begins with '-'"])
    cli("generate -- '-a red circle'", "prompts", "ok", ["generate", "-n", "1", "--out", "{tmp}/g.png", "--",
                                                         "-a red circle"], check=grid_ok())
    huge = ("a small red circle above a blue square " * 2600)[:100_000]
    cli("generate 100 kB prompt (warn + truncate)", "prompts", "ok", gen(prompts=[huge]), check=warned_briefly,
        issue=5)
    cli("generate 100 kB prompt --on-overflow error", "prompts", "error", gen("--on-overflow", "error",
                                                                             prompts=[huge]),
        ["100,000 characters", "too long"], issue=5)
    cli("generate over-long prompt (10 x caption)", "prompts", "ok", gen(prompts=[PROMPT * 10]),
        check=warned_briefly, issue=5)
    cli("generate --on-overflow truncate", "prompts", "error", gen("--on-overflow", "truncate"), ["truncate"])
    for label, prompt in [("accented, 20 chars", "un carré bleu à côté"), ("Cyrillic, 12 chars", "красный круг"),
                          ("CJK", "赤い円"), ("emoji", "🔴 above 🟦"),
                          ("control characters", "a red\x07 circle\x1b[31m"), ("RTL override", "\u202ea red circle"),
                          ("'<pad>'", "<pad> red circle")]:
        cli(f"generate prompt {label}", "prompts", "ok", gen(prompts=[prompt]), check=no_truncation_cli, issue=5)
    # outputs
    def file_in(tmp):
        (tmp / "file.png").write_bytes(b"not a folder")
    cli("generate --out an existing folder", "outputs", "error", gen("--out", "{tmp}"), ["{tmp}"], issue=4)
    cli("generate --out DIR/ (trailing slash)", "outputs", "error", gen("--out", "{tmp}/new/"), ["{tmp}/new"],
        issue=4)
    cli("generate --out x.unknown", "outputs", "error", gen("--out", "{tmp}/grid.unknown"), ["grid.unknown"],
        issue=4)
    cli("generate --out without extension", "outputs", "error", gen("--out", "{tmp}/grid"), ["{tmp}/grid"], issue=4)
    cli("generate --out ''", "outputs", "error", gen("--out", ""), ["''", "empty"])
    cli("generate --out under a file", "outputs", "error", gen("--out", "{tmp}/file.png/grid.png"),
        ["{tmp}/file.png"], setup=file_in, issue=4)
    cli("generate --out /proc/grid.png", "outputs", "error", gen("--out", "/proc/grid.png"), ["/proc"], issue=4)
    cli("generate --out /sys/grid.png (read-only for root too)", "outputs", "error", gen("--out", "/sys/grid.png"),
        ["/sys"], issue=4)
    cli("generate --out with a 300-character file name", "outputs", "error", gen("--out", "{tmp}/" + "x" * 300 + ".png"),
        ["xxxxxxxx"])
    cli("generate --out-dir a file", "outputs", "error", gen("--out-dir", "{tmp}/file.png"), ["{tmp}/file.png"],
        setup=file_in, issue=4)
    cli("generate --out-dir /proc/images", "outputs", "error", gen("--out-dir", "/proc/images"), ["/proc"], issue=4)
    cli("generate --out-dir under a file", "outputs", "error", gen("--out-dir", "{tmp}/file.png/images"),
        ["{tmp}/file.png"], setup=file_in, issue=4)
    cli("generate --out nested new folders", "outputs", "ok", gen("--out", "{tmp}/a/b/c/g.png"),
        check=lambda tmp, res: png_ok(tmp / "a/b/c/g.png"))
    cli("generate --out-dir new folder -n 2", "outputs", "ok", gen("-n", "2", "--out-dir", "{tmp}/imgs"),
        check=lambda tmp, res: png_ok(tmp / "imgs", count=2))
    cli("generate --out G.PNG (upper-case suffix)", "outputs", "ok", gen("--out", "{tmp}/G.PNG"),
        check=lambda tmp, res: png_ok(tmp / "G.PNG"))
    if os.geteuid() != 0:
        def read_only(tmp):
            (tmp / "ro").mkdir()
            (tmp / "ro").chmod(0o555)
        cli("generate --out in a read-only folder", "outputs", "error", gen("--out", "{tmp}/ro/g.png"), ["{tmp}/ro"],
            setup=read_only, issue=4)
    # devices
    for device, names in [("cuda", ["cuda"]), ("foo", ["foo"]), ("cuda:99", ["cuda:99"]), ("", ["''", "device"]),
                          ("mps", ["mps"]), ("cuda:x", ["cuda:x"])]:
        if device.startswith("cuda") and torch.cuda.is_available():
            continue
        cli(f"generate --device {device!r}", "devices", "error", gen("--device", device), names, issue=4)
    cli("generate --device CPU (upper case)", "devices", "ok", gen("--device", "CPU"), check=grid_ok())
    # damaged and mismatched pipeline folders (generate --checkpoint)
    def folder_case(label, part, kind, names=("{tmp}/pipe",), issue=2):
        def setup(tmp):
            folder = FX.pipe_folder(tmp)
            if kind == "missing":
                (folder / part).unlink()
            elif callable(kind):
                kind(folder)
            else:
                damage(folder / part, kind)
        cli(f"generate --checkpoint: {label}", "files", "error", gen("--checkpoint", "{tmp}/pipe"), names,
            setup=setup, issue=issue)
    for kind in ("truncated", "zero-byte", "lfs-pointer", "pickle", "torch.save", "trailing-garbage", "garbage-header",
                 "same-size"):
        folder_case(f"transformer.safetensors {kind}", "transformer.safetensors", kind)
    folder_case("dvae.safetensors truncated", "dvae.safetensors", "truncated")
    folder_case("dvae.json not JSON", "dvae.json", "not-json")
    folder_case("transformer.json a Git LFS pointer", "transformer.json", "lfs-pointer")
    folder_case("dvae.json missing", "dvae.json", "missing")
    folder_case("config field of the wrong type", None,
                lambda f: edit_json(f / "transformer.json", lambda m: m["config"].update(n_layers="four")), issue=4)
    folder_case("config field of another shape", None,
                lambda f: edit_json(f / "transformer.json", lambda m: m["config"].update(
                    d_model=2 * m["config"]["d_model"])))
    folder_case("tokenizer.json garbage bytes", "tokenizer.json", "binary-garbage", issue=4)
    folder_case("tokenizer.json not a tokenizer", "tokenizer.json", "tokenizer-shaped", issue=4)
    folder_case("tokenizer.json empty", "tokenizer.json", "zero-byte", issue=4)
    folder_case("pipeline.json not JSON", "pipeline.json", "not-json", names=("pipeline.json",))
    folder_case("pipeline.json a JSON list", "pipeline.json", "json-list", names=("pipeline.json",))
    folder_case("pipeline.json empty", "pipeline.json", "zero-byte", names=("pipeline.json",))
    folder_case("pipeline.json missing", "pipeline.json", "missing", names=("pipeline.json", "{tmp}/pipe"))
    folder_case("pipeline.json names a file outside the folder", None,
                lambda f: edit_json(f / "pipeline.json", lambda m: m.update(dvae="../../../etc/passwd")),
                names=("passwd",))

    def swap(f):
        shutil.copy(f / "dvae.safetensors", f / "transformer.safetensors")
        shutil.copy(f / "dvae.json", f / "transformer.json")
    folder_case("dvae and transformer swapped (wrong kind)", None, swap)

    def tiny_dvae(f):
        shutil.copy(FX.tiny_dvae(), f / "dvae.safetensors")
        shutil.copy(FX.tiny_dvae().with_suffix(".json"), f / "dvae.json")
    folder_case("dVAE of another preset (tiny)", None, tiny_dvae, names=("dvae", "image", "preset", "16"))
    cli("generate --checkpoint nowhere", "files", "error", gen("--checkpoint", "{tmp}/nowhere"), ["{tmp}/nowhere"])
    cli("generate --checkpoint a file", "files", "error", gen("--checkpoint", "{tmp}/file.png"), ["{tmp}/file.png"],
        setup=file_in)
    cli("generate --checkpoint an empty folder", "files", "error", gen("--checkpoint", "{tmp}"), ["{tmp}"])
    # damaged shipped files, found through DALLE_LESSONS_DATA
    for file, kind in [("dalle-cpu.safetensors", "truncated"), ("dalle-cpu.safetensors", "zero-byte"),
                       ("dalle-cpu.safetensors", "lfs-pointer"), ("dalle-cpu.safetensors", "pickle"),
                       ("dalle-cpu.safetensors", "same-size"), ("dvae-cpu.safetensors", "same-size"),
                       ("dalle-cpu.json", "same-size"), ("tokenizer.json", "not-json"),
                       ("dalle-cpu.safetensors", "missing"), ("MANIFEST.json", "not-json")]:
        cli(f"generate, shipped {file} {kind}", "data dir", "error", gen(), [file],
            setup=lambda tmp, file=file, kind=kind: light_data(tmp, file, kind), issue=2)
    cli("generate, DALLE_LESSONS_DATA a missing folder", "data dir", "error", gen(), ["{tmp}/nothing"],
        setup=lambda tmp: {"env": {"DALLE_LESSONS_DATA": str(tmp / "nothing")}}, issue=9)
    cli("generate, DALLE_LESSONS_DATA a file", "data dir", "error", gen(), ["{tmp}/file.png"],
        setup=lambda tmp: (file_in(tmp), {"env": {"DALLE_LESSONS_DATA": str(tmp / "file.png")}})[1], issue=9)
    cli("--help names DALLE_LESSONS_DATA", "data dir", "ok", ["--help"], issue=9,
        check=lambda tmp, res: None if "DALLE_LESSONS_DATA" in res.stdout else "--help does not name it")
    # training guards (on the copy of data/: the shipped files there must not change)
    def unchanged(*names):
        return lambda tmp, res: FX.unchanged(*names)
    cli("train dvae --preset cpu --steps 0 (issue item 1)", "training", "error",
        ["train", "dvae", "--preset", "cpu", "--steps", "0"], ["--steps 0"],
        check=unchanged("dvae-cpu.safetensors", "dvae-cpu.json"), issue=1)
    cli("train dvae --preset cpu --steps -1", "training", "error", ["train", "dvae", "--preset", "cpu", "--steps", "-1"],
        ["--steps -1"], check=unchanged("dvae-cpu.safetensors"), issue=1)
    cli("train dvae --preset cpu (would replace data/)", "training", "error", ["train", "dvae", "--preset", "cpu"],
        ["dvae-cpu"], check=unchanged("dvae-cpu.safetensors", "dvae-cpu.json"), issue=1)
    cli("train dalle --preset cpu --steps 1 (would replace data/)", "training", "error",
        ["train", "dalle", "--preset", "cpu", "--steps", "1"], ["dalle-cpu"],
        check=unchanged("dalle-cpu.safetensors", "dalle-cpu.json"), issue=1)
    cli("train clip --preset cpu --steps 1 (would replace data/)", "training", "error",
        ["train", "clip", "--preset", "cpu", "--steps", "1"], ["clip-cpu"],
        check=unchanged("clip-cpu.safetensors", "clip-cpu.json"), issue=1)
    cli("train tokenizer --preset cpu (would replace data/)", "training", "error",
        ["train", "tokenizer", "--preset", "cpu"], ["tokenizer.json"], check=unchanged("tokenizer.json"), issue=1)
    for what in ("dvae", "dalle", "clip"):
        cli(f"train {what} --preset paper (issue item 6)", "training", "error",
            ["train", what, "--preset", "paper", "--out", "{tmp}"], ["paper"], issue=6, timeout=30)
    cli("train dvae --preset foo", "training", "error", ["train", "dvae", "--preset", "foo", "--out", "{tmp}"], ["foo"])
    cli("train dvae --steps 1.5", "training", "error", ["train", "dvae", "--preset", "tiny", "--steps", "1.5"],
        ["1.5"])
    cli("train dvae --seed -1", "training", "error",
        ["train", "dvae", "--preset", "tiny", "--steps", "1", "--seed", "-1", "--out", "{tmp}"], ["-1"])
    cli("train dalle --seed 2**63", "training", "error",
        ["train", "dalle", "--preset", "tiny", "--steps", "1", "--seed", str(2**63), "--out", "{tmp}"], [str(2**63)])
    cli("train dvae --out a file", "training", "error",
        ["train", "dvae", "--preset", "tiny", "--steps", "1", "--out", "{tmp}/file.png"], ["{tmp}/file.png"],
        setup=file_in)
    cli("train dvae --out /proc/run", "training", "error",
        ["train", "dvae", "--preset", "tiny", "--steps", "1", "--out", "/proc/run"], ["/proc"])
    cli("train tokenizer --out a file", "training", "error",
        ["train", "tokenizer", "--preset", "tiny", "--out", "{tmp}/file.png"], ["{tmp}/file.png"], setup=file_in)
    cli("train dvae --train-images 0", "training", "error",
        ["train", "dvae", "--preset", "tiny", "--steps", "1", "--train-images", "0", "--out", "{tmp}"],
        ["--train-images 0", "train_images"])
    cli("train dvae --train-images -5", "training", "error",
        ["train", "dvae", "--preset", "tiny", "--steps", "1", "--train-images", "-5", "--out", "{tmp}"],
        ["-5"])
    cli("train clip --train-images 1", "training", "error",
        ["train", "clip", "--preset", "tiny", "--steps", "1", "--train-images", "1", "--out", "{tmp}"],
        ["--train-images 1", "train_items", "train_images"])
    cli("train dalle --preset tiny without a tiny dVAE", "training", "error",
        ["train", "dalle", "--preset", "tiny", "--steps", "1", "--out", "{tmp}"], ["dvae-tiny"],
        setup=lambda tmp: light_data(tmp))
    cli("train dvae --quantizer foo", "training", "error", ["train", "dvae", "--quantizer", "foo"], ["foo"])
    cli("train dvae --preset tiny --steps 1 --out DIR", "training", "ok",
        ["train", "dvae", "--preset", "tiny", "--steps", "1", "--train-images", "64", "--out", "{tmp}"],
        check=lambda tmp, res: None if (tmp / "dvae-tiny.safetensors").is_file() else "no checkpoint written")
    # resume states
    def state(tmp, kind=None, seed=0):
        from dalle_lessons.train import DVAETrainConfig, train_dvae
        train_dvae("tiny", seed=seed, out=tmp, progress=False, log=lambda s: None, stop_at=1,
                   train_config=DVAETrainConfig(steps=2, train_images=64))
        path = tmp / "dvae-tiny.state.safetensors"
        if kind == "json missing":
            path.with_suffix(".json").unlink()
        elif kind == "json not JSON":
            damage(path.with_suffix(".json"), "not-json")
        elif kind == "json of another trainer":
            edit_json(path.with_suffix(".json"), lambda m: m["state"].update(__dict__=[
                kv for kv in m["state"]["__dict__"] if kv[0] != "train_config"] + [
                ["train_config", {"__dict__": [["precision", "bf16"], ["train_items", 5]]}]]))
        elif kind == "json without train_config":
            edit_json(path.with_suffix(".json"), lambda m: m["state"].update(
                __dict__=[kv for kv in m["state"]["__dict__"] if kv[0] != "train_config"]))
        elif kind == "a model, not a state":
            shutil.copy(tmp / "dvae-tiny.safetensors" if (tmp / "dvae-tiny.safetensors").exists()
                        else FX.tiny_dvae(), path)
            shutil.copy(FX.tiny_dvae().with_suffix(".json"), path.with_suffix(".json"))
        elif kind:
            damage(path, kind)
    resume = ["train", "dvae", "--preset", "tiny", "--steps", "2", "--train-images", "64", "--out", "{tmp}",
              "--resume"]
    for kind in ("truncated", "zero-byte", "lfs-pointer", "same-size", "json missing", "json not JSON",
                 "json of another trainer", "json without train_config", "a model, not a state"):
        cli(f"train --resume, state {kind}", "resume", "error", resume, ["{tmp}/dvae-tiny.state", "--resume"],
            setup=lambda tmp, kind=kind: state(tmp, kind), issue=4)
    cli("train --resume without a state", "resume", "error", resume, ["{tmp}/dvae-tiny.state", "--resume"], issue=4)
    cli("train --resume with another seed", "resume", "error", [*resume, "--seed", "1"], ["seed"],
        setup=lambda tmp: state(tmp))
    cli("train --resume with other --steps... (--train-images 32)", "resume", "error",
        [*resume[:-3], "--train-images", "32", "--out", "{tmp}", "--resume"], ["train_images", "config"],
        setup=lambda tmp: state(tmp))
    cli("train --resume, intact state", "resume", "ok", resume, setup=lambda tmp: state(tmp),
        check=lambda tmp, res: None if "after 2 steps" in res.stdout else f"did not finish: {res.stdout[-200:]}")
    # evaluate
    def dvae_copy(tmp, kind=None, source="dvae-cpu"):
        for suffix in (".safetensors", ".json"):
            shutil.copy(SOURCE_DATA / f"{source}{suffix}", tmp / f"model{suffix}")
        if kind:
            damage(tmp / "model.safetensors", kind)
    ev = ["evaluate"]
    cli("evaluate judge --n 0", "evaluate", "error", [*ev, "judge", "--n", "0"], ["--n 0", "n=0"])
    cli("evaluate judge --n 1", "evaluate", "error", [*ev, "judge", "--n", "1"], ["--n 1", "n=1"])
    cli("evaluate judge --n -5", "evaluate", "error", [*ev, "judge", "--n", "-5"], ["-5"])
    cli("evaluate judge --preset foo", "evaluate", "error", [*ev, "judge", "--preset", "foo", "--n", "4"], ["foo"])
    cli("evaluate judge --preset paper --n 4 (256 px renders)", "evaluate", "ok",
        [*ev, "judge", "--preset", "paper", "--n", "4", "--json"],
        check=lambda tmp, res: None if json.loads(res.stdout)["rows"] else "no rows")
    cli("evaluate judge --n 4 --json", "evaluate", "ok", [*ev, "judge", "--n", "4", "--json"],
        check=lambda tmp, res: None if json.loads(res.stdout)["rows"] else "no rows")
    cli("evaluate dvae --n 0", "evaluate", "error", [*ev, "dvae", "--n", "0"], ["--n 0", "n=0"])
    cli("evaluate dvae --n -2", "evaluate", "error", [*ev, "dvae", "--n", "-2"], ["-2"])
    cli("evaluate dvae --checkpoint nowhere", "evaluate", "error", [*ev, "dvae", "--checkpoint", "{tmp}/no.safetensors"],
        ["{tmp}/no.safetensors"])
    cli("evaluate dvae --checkpoint a folder", "evaluate", "error", [*ev, "dvae", "--checkpoint", "{tmp}", "--n", "2"],
        ["{tmp}"])
    for kind in ("truncated", "lfs-pointer", "pickle", "zero-byte"):
        cli(f"evaluate dvae --checkpoint {kind}", "evaluate", "error",
            [*ev, "dvae", "--checkpoint", "{tmp}/model.safetensors", "--n", "2"], ["{tmp}/model.safetensors"],
            setup=lambda tmp, kind=kind: dvae_copy(tmp, kind), issue=4)
    cli("evaluate dvae --checkpoint a transformer (wrong kind)", "evaluate", "error",
        [*ev, "dvae", "--checkpoint", "{tmp}/model.safetensors", "--n", "2"], ["{tmp}/model.safetensors"],
        setup=lambda tmp: dvae_copy(tmp, source="dalle-cpu"), issue=4)
    cli("evaluate dvae --preset tiny on the 32 px dVAE", "evaluate", "error",
        [*ev, "dvae", "--checkpoint", "{tmp}/model.safetensors", "--preset", "tiny", "--n", "2"], ["tiny"],
        setup=lambda tmp: dvae_copy(tmp))
    cli("evaluate dvae --n 2 (control)", "evaluate", "ok", [*ev, "dvae", "--n", "2", "--json"],
        check=lambda tmp, res: None if json.loads(res.stdout)["rows"] else "no rows")
    cli("evaluate clip --n 5", "evaluate", "error", [*ev, "clip", "--n", "5"], ["--n 5"])
    cli("evaluate clip --checkpoint a dVAE (wrong kind)", "evaluate", "error",
        [*ev, "clip", "--checkpoint", "{tmp}/model.safetensors", "--n", "10"], ["{tmp}/model.safetensors"],
        setup=lambda tmp: dvae_copy(tmp))
    cli("evaluate clip --checkpoint truncated", "evaluate", "error",
        [*ev, "clip", "--checkpoint", "{tmp}/model.safetensors", "--n", "10"], ["{tmp}/model.safetensors"],
        setup=lambda tmp: dvae_copy(tmp, "truncated", source="clip-cpu"))
    for argv, names in [(["--captions", "0"], ["--captions 0"]), (["--captions", "-3"], ["-3"]),
                        (["--samples", "-1"], ["-1"]), (["--batch-size", "0"], ["batch_size", "batch-size"]),
                        (["--temperature", "nan"], ["nan"]), (["--top-p", "2"], ["2"]),
                        (["--seed", "-4"], ["-4"]), (["--checkpoint", "{tmp}/nowhere"], ["{tmp}/nowhere"]),
                        (["--checkpoint", "{tmp}/file.png"], ["{tmp}/file.png"]), (["--rerank", "0"], ["rerank"])]:
        cli(f"evaluate generation {' '.join(argv).replace('{tmp}/', '')}", "evaluate", "error",
            [*ev, "generation", "--captions", "1", "--samples", "1", *argv], names, setup=file_in)
    cli("evaluate rerank --max-rerank 1000", "evaluate", "error", [*ev, "rerank", "--max-rerank", "1000"], ["1000"])
    cli("evaluate rerank --captions 0", "evaluate", "error", [*ev, "rerank", "--captions", "0"], ["--captions 0"])
    cli("evaluate foo", "evaluate", "error", [*ev, "foo"], ["foo"])
    # serve
    def busy_port(tmp):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        return {"subs": {"{port}": str(sock.getsockname()[1])}, "keep": sock}
    for argv, names in [(["--port", "-1"], ["-1"]), (["--port", "70000"], ["70000"]), (["--port", "abc"], ["abc"]),
                        (["--max-queue", "0"], ["--max-queue 0"]), (["--max-batch", "0"], ["--max-batch 0"]),
                        (["--max-batch", "1000"], ["1000"]), (["--host", "0.0.0.0"], ["0.0.0.0"]),
                        (["--host", "no-such-host.invalid"], ["no-such-host.invalid"]),
                        (["--host", "0.0.0.0", "--api-key", ""], ["0.0.0.0", "api-key", "key"]),
                        (["--device", "foo"], ["foo"]), (["--checkpoint", "{tmp}/nowhere"], ["{tmp}/nowhere"])]:
        cli(f"serve {' '.join(argv).replace('{tmp}/', '')}", "serve", "error",
            ["serve", "--port", "0", *argv], names, timeout=30)
    cli("serve --port in use", "serve", "error", ["serve", "--port", "{port}"], ["{port}"], setup=busy_port,
        timeout=30)
    # the command line itself
    cli("no command", "misc", "error", [], ["command"])
    cli("unknown command", "misc", "error", ["paint"], ["paint"])
    cli("data foo", "misc", "error", ["data", "foo"], ["foo"])
    cli("train tokenizer --steps 3 (ignored flag)", "misc", "error", ["train", "tokenizer", "--steps", "3",
                                                                       "--out", "{tmp}"], ["--steps"])


# ------------------------------------------------------------------------------------------------ API cases

def pil_ok(count: int, side: int = 32):
    def check(tmp, result):
        if not isinstance(result, list) or len(result) != count:
            return f"expected a list of {count} images, got {type(result).__name__} of {len(result) if isinstance(result, list) else '?'}"
        for image in result:
            if not isinstance(image, Image.Image) or image.size != (side, side):
                return f"expected {side}x{side} PIL images, got {getattr(image, 'size', type(image).__name__)}"
        return None
    return check


def tensor_ok(shape: tuple):
    def check(tmp, result):
        if not isinstance(result, torch.Tensor) or tuple(result.shape) != shape:
            return f"expected a tensor {shape}, got {getattr(result, 'shape', type(result).__name__)}"
        if result.is_floating_point() and not torch.isfinite(result).all():
            return f"{int((~torch.isfinite(result)).sum())} non-finite values"
        return None
    return check


def no_truncation(count: int = 1):
    inner = pil_ok(count)

    def check(tmp, result):
        result, caught = result
        long = [w for w in caught if "too long" in str(w.message)]
        if long:
            return f"a short prompt was truncated: {str(long[0].message)[:160]}"
        return inner(tmp, result)
    return check


def warned(tmp, result):
    result, caught = result
    messages = [str(w.message) for w in caught if "too long" in str(w.message)]
    if not messages:
        return "no warning about the truncated prompt"
    if max(map(len, messages)) > MAX_CHARS:
        return ("unclear error", f"warning of {max(map(len, messages)):,} characters: {messages[0][:200]}...")
    return pil_ok(1)(tmp, result)


def with_warnings(fn):
    def run():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fn()
        return result, caught
    return run


def add_api_cases() -> None:
    P = lambda: FX.pipe  # noqa: E731  (the pipeline exists only once the fixtures are built)
    g = lambda **kw: (lambda tmp: P().generate(kw.pop("prompt", PROMPT), **{"n": 1, "seed": 0, **kw}))  # noqa: E731
    # counts
    for n, names in [(0, ["n=0"]), (-1, ["n=-1"]), (10**9, ["1000000000"]), (65, ["65"]), (2.5, ["float", "2.5"]),
                     ("3", ["str", "'3'"]), (None, ["NoneType", "None"])]:
        api(f"generate(n={n!r})", "counts", "error", g(n=n), names, issue=7 if n == 10**9 else None)
    api("generate(n=np.int64(2))", "counts", "ok", g(n=np.int64(2)), check=pil_ok(2))
    api("generate(5 prompts, n=64)", "counts", "error", g(prompt=[PROMPT] * 5, n=64), ["320"], issue=7)
    api("generate(200 prompts, n=64) (issue item 7)", "counts", "error", g(prompt=[PROMPT] * 200, n=64),
        ["12800", "12,800", "200"], issue=7)
    api("generate(300 prompts)", "counts", "error", g(prompt=["a red circle"] * 300), ["300"], issue=7)
    for rerank, names in [(0, ["rerank=0"]), (-1, ["rerank=-1"]), (129, ["129"]), (2.5, ["float", "2.5"])]:
        api(f"generate(rerank={rerank!r})", "counts", "error", g(rerank=rerank), names)
    api("generate(rerank=2)", "counts", "ok", g(rerank=2), check=pil_ok(1))
    api("generate(n=2) (control)", "counts", "ok", g(n=2), check=pil_ok(2))
    # sizes
    for size in ("0x0", "33x33", "128x64", "big", "1024x1024", 128, "", "-32x-32"):
        api(f"generate(size={size!r})", "sizes", "error", g(size=size), [repr(size)])
    api("generate(size='128x128')", "sizes", "ok", g(size="128x128"), check=pil_ok(1, 128))
    api("generate(size=None)", "sizes", "ok", g(size=None), check=pil_ok(1))
    api("generate(resample='foo')", "sizes", "error", g(resample="foo"), ["foo"])
    api("generate(size='64x64', resample='bilinear')", "sizes", "ok", g(size="64x64", resample="bilinear"),
        check=pil_ok(1, 64))
    # seeds
    for seed, names in [(-1, ["-1"]), (2**63, [str(2**63)]), (2**64, [str(2**64)]), (10**400, ["401 characters"]),
                        (1.5, ["1.5"]), ("0", ["'0'"]), (float("nan"), ["nan"])]:
        api(f"generate(seed={str(seed)[:24]})", "seeds", "error", g(seed=seed), names,
            issue=8 if isinstance(seed, int) and seed >= 2**63 else None)
    for seed in (2**63 - 1, None, np.int64(3)):
        api(f"generate(seed={seed!r})", "seeds", "ok", g(seed=seed), check=pil_ok(1))
    # sampling values
    bad = {"temperature": [-1.0, float("nan"), float("inf"), 1e-45, 1e38, 1e-3, "hot", None],
           "top_p": [0, -0.5, float("nan"), float("inf"), 1.5, "0.9"],
           "top_k": [0, -1, 2.5, "5"],
           "guidance_scale": [-1.0, float("nan"), float("inf"), 1e38, 1e30, 10.5, None]}
    for name, values in bad.items():
        for value in values:
            api(f"generate({name}={value!r})", "sampling", "error", g(**{name: value}), [repr(value), str(value)],
                issue=3 if value in (1e-45, 1e38, 1e30, 1.5, -1.0) else None)
    good = {"temperature": [0, 100, 0.01, np.float32(0.7)], "top_p": [1e-300, 1, None, 5e-324],
            "top_k": [1, None, 10**20], "guidance_scale": [0, 10, 1e-45]}
    for name, values in good.items():
        for value in values:
            api(f"generate({name}={value!r})", "sampling", "ok", g(**{name: value}), check=pil_ok(1), issue=3)
    api("generate(foo=1) (unknown setting)", "sampling", "error", g(foo=1), ["foo"])
    # prompts
    for prompt, names in [("", ["''", "empty"]), ("   ", ["empty"]), ("\n\t", ["empty"]), (None, ["NoneType"]),
                          (5, ["int"]), (b"a red circle", ["bytes"]), ({"a": 1}, ["dict"]),
                          ([PROMPT, 7], ["int"]), ([], ["no prompt", "list"]), ("a red\x00circle", ["NUL", "\\x00"]),
                          ("\ud800 red circle", ["\\ud800", "surrogate", "prompt"])]:
        api(f"generate({str(prompt)[:20]!r})", "prompts", "error", g(prompt=prompt), names, issue=5)
    huge = ("a small red circle above a blue square " * 2600)[:100_000]
    api("generate(100 kB prompt) (warn + truncate)", "prompts", "ok", lambda tmp: with_warnings(
        lambda: P().generate(huge, seed=0))(), check=warned, issue=5)
    api("generate_tokens(100 kB, on_overflow='error')", "prompts", "error",
        lambda tmp: P().generate_tokens(huge, on_overflow="error"), ["100,000 characters"], issue=5)
    api("generate_tokens(on_overflow='truncate')", "prompts", "error",
        lambda tmp: P().generate_tokens(PROMPT, on_overflow="truncate"), ["truncate"])
    api("generate_tokens(on_overflow=None)", "prompts", "error",
        lambda tmp: P().generate_tokens(PROMPT, on_overflow=None), ["None"])
    for label, prompt in [("accented, 20 chars", "un carré bleu à côté"), ("Cyrillic, 12 chars", "красный круг"),
                          ("CJK", "赤い円"), ("emoji", "🔴 above 🟦"), ("control characters", "a red\x07 circle\x1b[31m"),
                          ("RTL override", "\u202ea red circle"), ("tuple of prompts", (PROMPT, "a blue square"))]:
        count = len(prompt) if isinstance(prompt, tuple) else 1
        api(f"generate({label})", "prompts", "ok",
            lambda tmp, prompt=prompt: with_warnings(lambda: P().generate(prompt, seed=0))(),
            check=no_truncation(count), issue=5)
    api("progressive(list of prompts)", "prompts", "error", lambda tmp: list(P().progressive([PROMPT, PROMPT])),
        ["list", "one prompt"])
    api("progressive(every=0)", "prompts", "error", lambda tmp: list(P().progressive(PROMPT, every=0)), ["every"])
    api("progressive(every=16) (control)", "prompts", "ok",
        lambda tmp: list(P().progressive(PROMPT, seed=0, every=16))[-1], check=tensor_ok((1, 3, 32, 32)))
    # pixels (issue item 8)
    def image(fill=0.5, **where):
        x = torch.full((3, 32, 32), fill)
        for value in where.values():
            x[0, 3, 3] = value
        return x
    for label, fn, names in [
            ("encode_image(NaN pixel)", lambda tmp: P().encode_image(image(v=float("nan"))), ["NaN"]),
            ("encode_image(inf pixel)", lambda tmp: P().encode_image(image(v=float("inf"))), ["infinite"]),
            ("encode_image(0..255 values)", lambda tmp: P().encode_image(image(200.0)), ["255", "[0, 1]"]),
            ("encode_image([1, 32, 32])", lambda tmp: P().encode_image(torch.zeros(1, 32, 32)), ["(1, 32, 32)"]),
            ("encode_image(PIL 64x64)", lambda tmp: P().encode_image(Image.new("RGB", (64, 64))), ["64x64"]),
            ("encode_image(numpy array)", lambda tmp: P().encode_image(np.zeros((3, 32, 32))), ["ndarray"]),
            ("complete(NaN image)", lambda tmp: P().complete(PROMPT, image(v=float("nan")), rows=2), ["NaN"]),
            ("complete(rows=-1)", lambda tmp: P().complete(PROMPT, image(), rows=-1), ["rows", "-1"]),
            ("complete(rows=9)", lambda tmp: P().complete(PROMPT, image(), rows=9), ["rows", "9"]),
            ("complete(rows=2.5)", lambda tmp: P().complete(PROMPT, image(), rows=2.5), ["rows", "2.5"]),
            ("complete([two prompts])", lambda tmp: P().complete([PROMPT, PROMPT], image(), rows=2), ["one prompt"]),
            ("to_pil(NaN images)", lambda tmp: P().to_pil(image(v=float("nan"))[None]), ["NaN"]),
            ("to_pil([3, 32, 32])", lambda tmp: P().to_pil(image()), ["(3, 32, 32)"]),
            ("decode(ids [1, 10])", lambda tmp: P().decode(torch.zeros(1, 10, dtype=torch.long)), ["(1, 10)"]),
            ("decode(ids out of range, 10**6)", lambda tmp: P().decode(torch.full((1, 64), 10**6)),
             ["1000000", "ids", "range"]),
            ("decode(negative ids)", lambda tmp: P().decode(torch.full((1, 64), -1)), ["-1", "ids", "range"]),
            ("decode(float ids)", lambda tmp: P().decode(torch.full((1, 64), 0.5)), ["float", "ids"])]:
        api(label, "pixels", "error", fn, names, issue=8)
    api("encode_image(PIL grayscale 32x32)", "pixels", "ok", lambda tmp: P().encode_image(Image.new("L", (32, 32))),
        check=tensor_ok((64,)))
    api("complete(rows=2) (control)", "pixels", "ok", lambda tmp: P().complete(PROMPT, image(), rows=2, seed=0),
        check=pil_ok(1))
    api("complete(rows=0) and rows=8", "pixels", "ok",
        lambda tmp: P().complete(PROMPT, image(), rows=0, seed=0) + P().complete(PROMPT, image(), rows=8, seed=0),
        check=pil_ok(2))
    # damaged and mismatched files
    from dalle_lessons import checkpoints
    from dalle_lessons.pipeline import TextToImage
    from dalle_lessons.tokenizer import CaptionTokenizer

    def load_damaged(part, kind):
        def run(tmp):
            folder = FX.pipe_folder(tmp)
            if callable(kind):
                kind(folder)
            elif kind == "missing":
                (folder / part).unlink()
            else:
                damage(folder / part, kind)
            return TextToImage.from_pretrained(folder, device="cpu")
        return run
    for part, kind in [("transformer.safetensors", k) for k in ("truncated", "zero-byte", "lfs-pointer", "pickle",
                                                                 "torch.save", "trailing-garbage", "garbage-header",
                                                                 "same-size")] + [
            ("dvae.json", "not-json"), ("dvae.json", "missing"), ("transformer.json", "json-list"),
            ("tokenizer.json", "binary-garbage"), ("tokenizer.json", "tokenizer-shaped"),
            ("pipeline.json", "not-json"), ("pipeline.json", "json-list"), ("pipeline.json", "zero-byte")]:
        api(f"from_pretrained: {part} {kind}", "files", "error", load_damaged(part, kind), [part, "{tmp}/pipe"],
            issue=2)
    api("from_pretrained: config field of the wrong type", "files", "error", load_damaged(None, lambda f: edit_json(
        f / "transformer.json", lambda m: m["config"].update(n_layers="four"))), ["transformer.json"], issue=4)
    api("from_pretrained: config field of another shape", "files", "error", load_damaged(None, lambda f: edit_json(
        f / "transformer.json", lambda m: m["config"].update(d_model=768))), ["transformer"], issue=2)

    def tiny_dvae(f):
        shutil.copy(FX.tiny_dvae(), f / "dvae.safetensors")
        shutil.copy(FX.tiny_dvae().with_suffix(".json"), f / "dvae.json")
    api("from_pretrained: dVAE of another preset (tiny)", "files", "error", load_damaged(None, tiny_dvae),
        ["dvae", "image", "16"])

    def swapped(f):
        shutil.copy(f / "dvae.safetensors", f / "transformer.safetensors")
        shutil.copy(f / "dvae.json", f / "transformer.json")
    api("from_pretrained: dvae in place of the transformer", "files", "error", load_damaged(None, swapped),
        ["transformer.safetensors"], issue=2)
    api("from_pretrained(nowhere)", "files", "error", lambda tmp: TextToImage.from_pretrained(tmp / "nowhere"),
        ["{tmp}/nowhere"])
    api("from_pretrained(path=123)", "files", "error", lambda tmp: TextToImage.from_pretrained(123),
        ["123", "from_pretrained"])
    api("from_pretrained(a file)", "files", "error",
        lambda tmp: (tmp.joinpath("f.png").write_bytes(b"x"), TextToImage.from_pretrained(tmp / "f.png"))[1],
        ["{tmp}/f.png"])
    for kind in ("truncated", "lfs-pointer", "pickle", "trailing-garbage", "zero-byte"):
        def run(tmp, kind=kind):
            for suffix in (".safetensors", ".json"):
                shutil.copy(SOURCE_DATA / f"dvae-cpu{suffix}", tmp / f"m{suffix}")
            damage(tmp / "m.safetensors", kind)
            return checkpoints.load(tmp / "m.safetensors")
        api(f"checkpoints.load({kind})", "files", "error", run, ["{tmp}/m.safetensors"], issue=2)
    api("checkpoints.load(training state)", "files", "error",
        lambda tmp: checkpoints.load(checkpoints.save_state(tmp / "s.safetensors", {"step": 1, "w": torch.zeros(2)})),
        ["{tmp}/s.safetensors"])
    api("checkpoints.load(a .json path)", "files", "error",
        lambda tmp: checkpoints.load(DATA / "dvae-cpu.json"), ["dvae-cpu.json"])
    api("CaptionTokenizer.load(garbage JSON)", "files", "error",
        lambda tmp: CaptionTokenizer.load(damage(shutil.copy(DATA / "tokenizer.json", tmp / "t.json") and
                                                 tmp / "t.json", "tokenizer-shaped")), ["{tmp}/t.json"], issue=4)
    api("CaptionTokenizer.load(a folder)", "files", "error", lambda tmp: CaptionTokenizer.load(tmp), ["{tmp}"])
    # shipped files through DALLE_LESSONS_DATA
    def shipped(file, kind):
        def run(tmp):
            env = light_data(tmp, file, kind)["env"]
            old = os.environ["DALLE_LESSONS_DATA"]
            os.environ["DALLE_LESSONS_DATA"] = env["DALLE_LESSONS_DATA"]
            try:
                return TextToImage.from_pretrained(device="cpu")
            finally:
                os.environ["DALLE_LESSONS_DATA"] = old
        return run
    for file, kind in [("dalle-cpu.safetensors", "same-size"), ("dvae-cpu.safetensors", "truncated"),
                       ("dalle-cpu.safetensors", "lfs-pointer"), ("tokenizer.json", "same-size"),
                       ("dvae-cpu.json", "not-json"), ("dalle-cpu.safetensors", "missing")]:
        api(f"from_pretrained(), shipped {file} {kind}", "data dir", "error", shipped(file, kind), [file], issue=2)
    # unwritable outputs
    def file_at(tmp):
        (tmp / "file.png").write_bytes(b"x")
        return tmp / "file.png"
    api("save_pretrained(a file)", "outputs", "error", lambda tmp: P().save_pretrained(file_at(tmp)), ["{tmp}/file.png"])
    api("save_pretrained(under a file)", "outputs", "error", lambda tmp: P().save_pretrained(file_at(tmp) / "p"),
        ["{tmp}/file.png"], issue=4)
    api("save_pretrained(/proc/pipe)", "outputs", "error", lambda tmp: P().save_pretrained("/proc/pipe"), ["/proc"],
        issue=4)
    api("save_pretrained(/sys/pipe)", "outputs", "error", lambda tmp: P().save_pretrained("/sys/pipe"), ["/sys"],
        issue=4)
    api("CaptionTokenizer.save(/proc/t.json)", "outputs", "error", lambda tmp: P().tokenizer.save("/proc/t.json"),
        ["/proc"])
    api("save_pretrained(new folder) (control)", "outputs", "ok", lambda tmp: P().save_pretrained(tmp / "p"),
        check=lambda tmp, result: None if (tmp / "p" / "pipeline.json").is_file() else "no pipeline.json")
    # devices
    for device, names in [("cuda", ["cuda"]), ("foo", ["foo"]), ("cuda:99", ["cuda:99"]), (3, ["int"]),
                          ("mps", ["mps"])]:
        if isinstance(device, str) and device.startswith("cuda") and torch.cuda.is_available():
            continue
        api(f"from_pretrained(device={device!r})", "devices", "error",
            lambda tmp, device=device: TextToImage.from_pretrained(device=device), names, issue=4)
    api("pipe.to('foo')", "devices", "error", lambda tmp: P().to("foo"), ["foo"])
    # training guards
    from dalle_lessons.train import DVAETrainConfig, train_dvae
    from dalle_lessons.train_clip import ClipTrainConfig, train_clip
    from dalle_lessons.train_dalle import DalleTrainConfig, train_dalle
    quiet = dict(progress=False, log=lambda s: None)
    unchanged = lambda *names: (lambda tmp, result: FX.unchanged(*names))  # noqa: E731
    api("train_dvae('cpu') into data/", "training", "error", lambda tmp: train_dvae("cpu", **quiet), ["dvae-cpu"],
        check=unchanged("dvae-cpu.safetensors", "dvae-cpu.json"), issue=1)
    api("train_dalle('cpu', steps=5) into data/", "training", "error",
        lambda tmp: train_dalle("cpu", train_config=DalleTrainConfig(steps=5), **quiet), ["dalle-cpu"],
        check=unchanged("dalle-cpu.safetensors"), issue=1)
    api("train_clip('cpu', steps=5) into data/", "training", "error",
        lambda tmp: train_clip("cpu", train_config=ClipTrainConfig(steps=5), **quiet), ["clip-cpu"],
        check=unchanged("clip-cpu.safetensors"), issue=1)
    api("tokenizer.train_default() into data/", "training", "error",
        lambda tmp: __import__("dalle_lessons.tokenizer", fromlist=["x"]).train_default(preset="tiny", n_captions=200),
        ["tokenizer.json"], check=unchanged("tokenizer.json"), issue=1)
    for steps in (0, -3):
        api(f"train_dvae(steps={steps})", "training", "error",
            lambda tmp, steps=steps: train_dvae("tiny", out=tmp, train_config=DVAETrainConfig(steps=steps), **quiet),
            [f"--steps {steps}", f"steps={steps}"], issue=1)
    api("train_dvae(steps=1.5)", "training", "error",
        lambda tmp: train_dvae("tiny", out=tmp, train_config=DVAETrainConfig(steps=1.5), **quiet), ["1.5"])
    api("train_dvae('paper')", "training", "error", lambda tmp: train_dvae("paper", out=tmp, **quiet), ["paper"],
        issue=6, timeout=30)
    api("train_dalle('paper')", "training", "error", lambda tmp: train_dalle("paper", out=tmp, **quiet), ["paper"],
        issue=6, timeout=30)
    api("train_clip('paper')", "training", "error", lambda tmp: train_clip("paper", out=tmp, **quiet), ["paper"],
        issue=6, timeout=30)
    api("train_dvae('foo')", "training", "error", lambda tmp: train_dvae("foo", out=tmp, **quiet), ["foo"])
    api("train_dvae(seed=-1)", "training", "error",
        lambda tmp: train_dvae("tiny", seed=-1, out=tmp, train_config=DVAETrainConfig(steps=1), **quiet), ["-1"])
    api("train_dalle(seed=2**63)", "training", "error",
        lambda tmp: train_dalle("tiny", seed=2**63, out=tmp, train_config=DalleTrainConfig(steps=1), **quiet),
        [str(2**63)])
    api("train_dvae(train_images=0)", "training", "error",
        lambda tmp: train_dvae("tiny", out=tmp, train_config=DVAETrainConfig(steps=1, train_images=0), **quiet),
        ["train_images"])
    api("train_dvae(batch_size=0)", "training", "error",
        lambda tmp: train_dvae("tiny", out=tmp, train_config=DVAETrainConfig(steps=1, train_images=64, batch_size=0),
                               **quiet), ["batch_size"])
    api("train_dvae(lr=nan)", "training", "error",
        lambda tmp: train_dvae("tiny", out=tmp, train_config=DVAETrainConfig(steps=1, train_images=64,
                                                                            lr=float("nan")), **quiet), ["lr", "nan"])
    api("train_dalle(train_items=0)", "training", "error",
        lambda tmp: (FX.tiny_dvae(), train_dalle("tiny", out=tmp, train_config=DalleTrainConfig(
            steps=1, train_items=0, val_items=8), **quiet))[1], ["train_items"])
    api("train_dvae(out=a file)", "training", "error",
        lambda tmp: train_dvae("tiny", out=file_at(tmp), train_config=DVAETrainConfig(steps=1), **quiet),
        ["{tmp}/file.png"])
    api("train_dvae(resume=True) without a state", "resume", "error",
        lambda tmp: train_dvae("tiny", out=tmp, resume=True, train_config=DVAETrainConfig(steps=2, train_images=64),
                               **quiet), ["{tmp}/dvae-tiny.state"], issue=4)

    def truncated_state(tmp, kind="truncated"):
        config = DVAETrainConfig(steps=2, train_images=64)
        train_dvae("tiny", out=tmp, stop_at=1, train_config=config, **quiet)
        damage(tmp / "dvae-tiny.state.safetensors", kind)
        return train_dvae("tiny", out=tmp, resume=True, train_config=config, **quiet)
    for kind in ("truncated", "zero-byte"):
        api(f"train_dvae(resume=True), state {kind}", "resume", "error",
            lambda tmp, kind=kind: truncated_state(tmp, kind), ["{tmp}/dvae-tiny.state"], issue=4)
    api("train_dvae('tiny', steps=1) (control)", "training", "ok",
        lambda tmp: train_dvae("tiny", out=tmp, train_config=DVAETrainConfig(steps=1, train_images=64), **quiet),
        check=lambda tmp, result: None if Path(result["path"]).is_file() else "no checkpoint")
    api("train_dalle('tiny', steps=1) (control)", "training", "ok",
        lambda tmp: (FX.tiny_dvae(), train_dalle("tiny", out=tmp, train_config=DalleTrainConfig(
            steps=1, train_items=8, val_items=8), **quiet))[1],
        check=lambda tmp, result: None if Path(result["path"]).is_file() else "no checkpoint")
    # evaluate
    from dalle_lessons.evaluate import evaluate_dvae, evaluate_generation, evaluate_judge
    for n in (0, 1, -5):
        api(f"evaluate_judge(n={n})", "evaluate", "error", lambda tmp, n=n: evaluate_judge(n=n), [f"n={n}", f"n {n}"])
    api("evaluate_judge(preset='foo')", "evaluate", "error", lambda tmp: evaluate_judge(n=4, preset="foo"), ["foo"])
    api("evaluate_dvae(n=0)", "evaluate", "error", lambda tmp: evaluate_dvae(n=0), ["n=0", "n 0"])
    api("evaluate_dvae(truncated checkpoint)", "evaluate", "error", lambda tmp: evaluate_dvae(
        str(damage(Path(shutil.copy(DATA / "dvae-cpu.safetensors", tmp / "d.safetensors")), "truncated")
            if shutil.copy(DATA / "dvae-cpu.json", tmp / "d.json") else None), n=2), ["{tmp}/d.safetensors"])
    api("evaluate_generation(n_captions=0)", "evaluate", "error", lambda tmp: evaluate_generation(P(), n_captions=0),
        ["n_captions"])
    api("evaluate_generation(samples=0)", "evaluate", "error",
        lambda tmp: evaluate_generation(P(), n_captions=1, samples=0), ["samples"])
    api("evaluate_generation(sampling={'temperature': nan})", "evaluate", "error",
        lambda tmp: evaluate_generation(P(), n_captions=1, samples=1, sampling={"temperature": float("nan")}),
        ["nan"])
    api("evaluate_generation(sampling={'foo': 1})", "evaluate", "error",
        lambda tmp: evaluate_generation(P(), n_captions=1, samples=1, sampling={"foo": 1}), ["foo"])
    api("evaluate_generation(n_captions=1, samples=1) (control)", "evaluate", "ok",
        lambda tmp: evaluate_generation(P(), n_captions=1, samples=1),
        check=lambda tmp, result: None if result.get("rows") else "no rows")
    # reranker
    from dalle_lessons.clip import ClipModel
    api("set_reranker('clip')", "files", "error", lambda tmp: P().set_reranker("clip"), ["str"])
    api("set_reranker(a CLIP for 16 px images)", "files", "error", lambda tmp: TextToImage.from_pretrained(
        device="cpu").set_reranker(ClipModel(__import__("dalle_lessons.config", fromlist=["x"]).get_preset(
            "tiny").clip)), ["CLIP", "16"])
    api("generate_ranked(rerank=2) (control)", "counts", "ok",
        lambda tmp: P().generate_ranked(PROMPT, n=1, rerank=2, seed=0).ids, check=tensor_ok((1, 64)))


# ------------------------------------------------------------------------------------------------ fine-tuning

FT_SIDE = 32  # the shipped cpu model's image size


def ft_folder(tmp: Path, n: int = 8, mode: str = "RGB", size: tuple = (FT_SIDE, FT_SIDE), captions: str = "jsonl",
              name: str = "pics") -> Path:
    """n small random images (PNG, `mode`) with one caption each: the smallest folder `finetune` accepts."""
    folder = tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")
        image = image.quantize(8) if mode == "P" else image.convert(mode)
        image.save(folder / f"img{i}.png")
        rows.append((f"img{i}.png", f"a red circle number {i}"))
    if captions == "jsonl":
        (folder / "captions.jsonl").write_text("".join(json.dumps({"file": f, "caption": c}) + "\n" for f, c in rows))
    elif captions == "csv":
        (folder / "captions.csv").write_text("file,caption\n" + "".join(f"{f},{c}\n" for f, c in rows))
    return folder


def ft_captions(folder: Path, change: Callable[[list], list]) -> None:
    rows = [json.loads(line) for line in (folder / "captions.jsonl").read_text().splitlines()]
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in change(rows)))


def ft_damaged(kind: str) -> Callable[[Path], None]:
    """A setup: the smallest folder in tmp/pics, made bad in the way `kind` says."""
    def setup(tmp: Path) -> None:
        if kind == "empty folder":
            (tmp / "pics").mkdir()
            return
        folder = ft_folder(tmp)
        if kind == "images without captions":
            (folder / "captions.jsonl").unlink()
        elif kind == "an image without a caption line":
            ft_captions(folder, lambda rows: rows[:-1])
        elif kind == "captions without images":
            for image in folder.glob("*.png"):
                image.unlink()
        elif kind == "a caption whose image is missing":
            (folder / "img3.png").unlink()
        elif kind == "an unreadable image":
            (folder / "img2.png").write_bytes(b"this is not a PNG at all")
        elif kind == "a zero-byte image":
            (folder / "img2.png").write_bytes(b"")
        elif kind == "an empty caption":
            ft_captions(folder, lambda rows: rows[:2] + [{**rows[2], "caption": "   "}] + rows[3:])
        elif kind == "a caption line not JSON":
            with open(folder / "captions.jsonl", "a") as f:
                f.write("{not json\n")
        elif kind == "a caption naming a .gif":
            ft_captions(folder, lambda rows: rows + [{"file": "anim.gif", "caption": "a blue square"}])
            (folder / "anim.gif").write_bytes(b"GIF89a")
        elif kind == "captions.csv without a header":
            (folder / "captions.jsonl").unlink()
            (folder / "captions.csv").write_text("".join(f"img{i}.png,a red circle\n" for i in range(8)))
        elif kind == "both captions.jsonl and captions.csv":
            (folder / "captions.csv").write_text("file,caption\n")
        elif kind == "5 examples (fewer than 8)":
            shutil.rmtree(folder)
            ft_folder(tmp, n=5)
        else:
            raise AssertionError(kind)
    return setup


FT_BAD_FOLDERS = {  # kind -> what a clear message names
    "empty folder": ["{tmp}/pics"], "images without captions": ["{tmp}/pics"],
    "an image without a caption line": ["img7.png"], "captions without images": ["img0.png", "{tmp}/pics"],
    "a caption whose image is missing": ["img3.png"], "an unreadable image": ["img2.png"],
    "a zero-byte image": ["img2.png"], "an empty caption": ["img2.png", "line 3"],
    "a caption line not JSON": ["line 9"], "a caption naming a .gif": ["anim.gif"],
    "captions.csv without a header": ["captions.csv"], "both captions.jsonl and captions.csv": ["captions.csv"],
    "5 examples (fewer than 8)": ["5"],
}
FT_MODES = {"grayscale": ("L", "grayscale"), "RGBA": ("RGBA", "RGBA"), "palette": ("P", "palette")}


class AdapterFixtures:
    """Built on first use, once: an adapter trained on the shipped model, one trained on a tiny random pipeline
    (another config), a last-layers fine-tune of the shipped model (same config, other weights), a state."""

    def __init__(self) -> None:
        self._made: dict[str, Path] = {}

    def _quiet(self) -> dict:
        return dict(progress=False, log=lambda s: None, device="cpu")

    def shipped(self) -> Path:
        if "shipped" not in self._made:
            from dalle_lessons.finetune import FinetuneConfig, finetune
            summary = finetune("heldout:blue square", WORK / "adapter", FinetuneConfig(steps=1), examples=8,
                               **self._quiet())
            self._made["shipped"] = Path(summary["path"])
        return self._made["shipped"]

    def tiny(self) -> Path:
        if "tiny" not in self._made:
            from tokenizers import Tokenizer

            from dalle_lessons.config import get_preset
            from dalle_lessons.dvae import DiscreteVAE
            from dalle_lessons.finetune import FinetuneConfig, finetune
            from dalle_lessons.pipeline import TextToImage
            from dalle_lessons.tokenizer import CaptionTokenizer, default_path
            from dalle_lessons.transformer import DalleTransformer
            tiny = get_preset("tiny")
            tokenizer = CaptionTokenizer(Tokenizer.from_file(str(default_path())),
                                         text_seq_len=tiny.transformer.text_seq_len)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                dvae = DiscreteVAE(tiny.dvae)
            transformer = DalleTransformer(tiny.transformer, generator=torch.Generator().manual_seed(0))
            base = TextToImage(tokenizer, dvae, transformer).save_pretrained(WORK / "tiny-pipe")
            summary = finetune("heldout:blue square", WORK / "tiny-adapter", FinetuneConfig(steps=1), base=base,
                               examples=8, **self._quiet())
            self._made["tiny"] = Path(summary["path"])
        return self._made["tiny"]

    def other_weights(self) -> Path:
        if "other" not in self._made:
            from dalle_lessons.finetune import FinetuneConfig, finetune
            summary = finetune("heldout:blue square", WORK / "last-layers", FinetuneConfig(method="last-layers",
                               steps=1), examples=8, **self._quiet())
            self._made["other"] = Path(summary["path"])
        return self._made["other"]


ADAPTERS = AdapterFixtures()


def adapter_copy(tmp: Path, which: str = "shipped", damage_kind: str | None = None) -> Path:
    """The adapter `which` (and its .json) copied into tmp/a/, its .safetensors damaged as `damage_kind` says."""
    source = getattr(ADAPTERS, which)()
    folder = tmp / "a"
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(source.with_suffix(suffix), folder / f"adapter{suffix}")
    path = folder / "adapter.safetensors"
    if damage_kind == "json missing":
        path.with_suffix(".json").unlink()
    elif damage_kind == "json not JSON":
        damage(path.with_suffix(".json"), "not-json")
    elif damage_kind:
        damage(path, damage_kind)
    return path


def ft_state(tmp: Path, kind: str | None = None) -> None:
    """An interrupted lora run (1 of 2 steps) in tmp/run: its state file, damaged as `kind` says."""
    from dalle_lessons.finetune import STATE_NAME, FinetuneConfig, finetune
    finetune("heldout:blue square", tmp / "run", FinetuneConfig(steps=2), examples=8, stop_at=1,
             **ADAPTERS._quiet())
    if kind:
        damage(tmp / "run" / STATE_NAME, kind)


def noted(word: str, surface: str):
    """ok with a note: the run finished, wrote its adapter, and its notes say `word` (a conversion made)."""
    def check(tmp, result):
        notes = result.stdout if surface == "cli" else " ".join((result or {}).get("notes", []))
        adapter = tmp / "run" / "adapter.safetensors"
        if not adapter.is_file():
            return f"no adapter written at {adapter}"
        if word.lower() not in notes.lower():
            return f"no note that says {word!r}: {notes.strip()[:200]}"
        return None
    return check


def adapter_written(tmp, result):
    return None if (tmp / "run" / "adapter.safetensors").is_file() else "no adapter written"


def ft(*extra, data="{tmp}/pics"):
    """`finetune --data DATA --out {tmp}/run --steps 1` plus `extra` (the built-in set: 8 examples)."""
    examples = ["--examples", "8"] if data.startswith("heldout:") else []
    return ["finetune", "--data", data, *examples, "--out", "{tmp}/run", "--steps", "1", *extra]


HELDOUT = "heldout:blue square"


def add_finetune_cases() -> None:
    folder_setup = lambda tmp: (ft_folder(tmp), None)[1]  # noqa: E731
    nothing_in_data = lambda tmp, res: (  # noqa: E731
        f"{DATA / 'mine'} was created" if (DATA / "mine").exists() else FX.unchanged(*SHIPPED_PARTS))

    def file_in(tmp):
        (tmp / "file.png").write_bytes(b"not a folder")

    # --- CLI: finetune --data
    for kind, names in FT_BAD_FOLDERS.items():
        cli(f"finetune --data: {kind}", "finetune", "error", ft(), names, setup=ft_damaged(kind))
    for label, (mode, word) in FT_MODES.items():
        cli(f"finetune --data: {label} images (converted, with a note)", "finetune", "ok", ft(),
            setup=lambda tmp, mode=mode: (ft_folder(tmp, mode=mode), None)[1], check=noted(word, "cli"))
    cli("finetune --data: 48x40 images (cropped and resized, with a note)", "finetune", "ok", ft(),
        setup=lambda tmp: (ft_folder(tmp, size=(48, 40)), None)[1], check=noted("resized", "cli"))
    cli("finetune --data: captions.csv", "finetune", "ok", ft(),
        setup=lambda tmp: (ft_folder(tmp, captions="csv"), None)[1], check=adapter_written)
    cli("finetune --data a file", "finetune", "error", ft(data="{tmp}/file.png"), ["{tmp}/file.png"], setup=file_in)
    cli("finetune --data nowhere", "finetune", "error", ft(data="{tmp}/nowhere"), ["{tmp}/nowhere"])
    cli("finetune --data ''", "finetune", "error", ft(data=""), ["--data"])
    cli("finetune --data 'heldout:mauve square' (unknown pair)", "finetune", "error", ft(data="heldout:mauve square"),
        ["mauve"])
    cli("finetune --data 'heldout:red circle' (a seen pair)", "finetune", "error", ft(data="heldout:red circle"),
        ["red circle"])
    cli("finetune --data 'heldout:'", "finetune", "error", ft(data="heldout:"), ["heldout:"])
    cli("finetune --data heldout --examples 3", "finetune", "error", [*ft(data=HELDOUT), "--examples", "3"],
        ["--examples 3"])
    cli("finetune --data FOLDER --examples 16", "finetune", "error", [*ft(), "--examples", "16"], ["--examples"],
        setup=folder_setup)
    cli("finetune --data heldout:blue square --steps 1 (control)", "finetune", "ok", ft(data=HELDOUT),
        check=adapter_written)
    # --- CLI: finetune settings
    for argv, names in [(["--method", "foo"], ["foo"]), (["--method", ""], ["''", "--method"]),
                        (["--rank", "0"], ["--rank 0"]), (["--rank", "-1"], ["--rank -1"]),
                        (["--rank", "2.5"], ["2.5"]), (["--rank", "four"], ["four"]),
                        (["--steps", "0"], ["--steps 0"]), (["--steps", "-1"], ["--steps -1"]),
                        (["--steps", "1.5"], ["1.5"]), (["--lr", "nan"], ["nan"]), (["--lr=-1"], ["-1"]),
                        (["--lr", "0"], ["--lr 0"]), (["--lr", "inf"], ["inf"]), (["--lr", "fast"], ["fast"]),
                        (["--alpha", "0"], ["alpha"]), (["--alpha", "nan"], ["alpha", "nan"]),
                        (["--method", "full", "--rank", "4"], ["--rank"]),
                        (["--method", "full", "--alpha", "8"], ["--alpha"]),
                        (["--layers", "1"], ["--layers"]),
                        (["--method", "last-layers", "--rank", "2"], ["--rank"]),
                        (["--method", "last-layers", "--layers", "0"], ["--layers 0"]),
                        (["--method", "last-layers", "--layers", "99"], ["--layers 99", "99"]),
                        (["--seed", "-1"], ["-1"]), (["--seed", str(2**63)], [str(2**63)]),
                        (["--device", "foo"], ["foo"])]:
        cli(f"finetune {' '.join(argv)}", "finetune", "error", ft(*argv, data=HELDOUT), names)
    cli("finetune --method last-layers --layers 1 --steps 1 (control)", "finetune", "ok",
        ft("--method", "last-layers", "--layers", "1"), setup=folder_setup,
        check=lambda tmp, res: None if (tmp / "run" / "pipeline.json").is_file() else "no pipeline folder written")
    # --- CLI: finetune --out, --from, --resume
    cli("finetune --out inside data/", "finetune", "error",
        ["finetune", "--data", HELDOUT, "--examples", "8", "--out", str(DATA / "mine"), "--steps", "1"],
        ["data/"], check=nothing_in_data)
    cli("finetune --out data/ itself", "finetune", "error",
        ["finetune", "--data", HELDOUT, "--examples", "8", "--out", str(DATA), "--steps", "1"], ["data/"],
        check=lambda tmp, res: FX.unchanged(*SHIPPED_PARTS))
    cli("finetune --out /proc/run", "finetune", "error", [*ft(data=HELDOUT)[:-4], "--out", "/proc/run", "--steps",
                                                           "1"], ["/proc"])
    cli("finetune --out /sys/run", "finetune", "error", [*ft(data=HELDOUT)[:-4], "--out", "/sys/run", "--steps",
                                                          "1"], ["/sys"])
    cli("finetune --out under a file", "finetune", "error",
        [*ft(data=HELDOUT)[:-4], "--out", "{tmp}/file.png/run", "--steps", "1"], ["{tmp}/file.png"], setup=file_in)
    cli("finetune --out a file", "finetune", "error",
        [*ft(data=HELDOUT)[:-4], "--out", "{tmp}/file.png", "--steps", "1"], ["{tmp}/file.png"], setup=file_in)
    cli("finetune --out ''", "finetune", "error", [*ft(data=HELDOUT)[:-4], "--out", "", "--steps", "1"], ["--out"])
    cli("finetune --out the --from folder", "finetune", "error",
        [*ft(data=HELDOUT)[:-4], "--out", "{tmp}/pipe", "--from", "{tmp}/pipe", "--steps", "1"], ["{tmp}/pipe"],
        setup=lambda tmp: (FX.pipe_folder(tmp), None)[1])
    cli("finetune --from nowhere", "finetune", "error", ft("--from", "{tmp}/nowhere", data=HELDOUT),
        ["{tmp}/nowhere"])
    cli("finetune --from a pipeline with a truncated transformer", "finetune", "error",
        ft("--from", "{tmp}/pipe", data=HELDOUT), ["transformer.safetensors"],
        setup=lambda tmp: (damage(FX.pipe_folder(tmp) / "transformer.safetensors", "truncated"), None)[1])
    cli("finetune --resume with nothing to resume", "finetune", "error", ft("--resume", data=HELDOUT),
        ["{tmp}/run", "--resume"])
    resume = ["finetune", "--data", HELDOUT, "--examples", "8", "--out", "{tmp}/run", "--steps", "2", "--resume"]
    cli("finetune --resume, state truncated", "finetune", "error", resume, ["{tmp}/run/finetune.state"],
        setup=lambda tmp: ft_state(tmp, "truncated"))
    cli("finetune --resume, state zero-byte", "finetune", "error", resume, ["{tmp}/run/finetune.state"],
        setup=lambda tmp: ft_state(tmp, "zero-byte"))
    cli("finetune --resume with another --rank", "finetune", "error", [*resume, "--rank", "8"], ["rank"],
        setup=lambda tmp: ft_state(tmp))
    cli("finetune --resume with other data (--examples 16)", "finetune", "error",
        [*resume[:4], "16", *resume[5:]], ["data"], setup=lambda tmp: ft_state(tmp))
    cli("finetune --resume, intact state (control)", "finetune", "ok", resume, setup=lambda tmp: ft_state(tmp),
        check=lambda tmp, res: None if "after 2 steps" in res.stdout else f"did not finish: {res.stdout[-200:]}")
    # --- CLI: generate --adapter
    a = "{tmp}/a/adapter.safetensors"
    cli("generate --adapter nowhere", "adapters", "error", gen("--adapter", "{tmp}/nowhere.safetensors"),
        ["{tmp}/nowhere.safetensors"])
    cli("generate --adapter a zero-byte file (no .json)", "adapters", "error", gen("--adapter", "{tmp}/z.safetensors"),
        ["{tmp}/z.safetensors", "{tmp}/z.json"], setup=lambda tmp: (tmp / "z.safetensors").write_bytes(b"") and None)
    for kind in ("zero-byte", "truncated", "same-size", "lfs-pointer", "json missing", "json not JSON"):
        cli(f"generate --adapter: adapter {kind}", "adapters", "error", gen("--adapter", a),
            ["{tmp}/a/adapter"], setup=lambda tmp, kind=kind: (adapter_copy(tmp, damage_kind=kind), None)[1])
    cli("generate --adapter for another base model (tiny config)", "adapters", "error", gen("--adapter", a),
        ["{tmp}/a/adapter"], setup=lambda tmp: (adapter_copy(tmp, "tiny"), None)[1])
    cli("generate --adapter trained on other weights (--checkpoint a fine-tuned pipeline)", "adapters", "error",
        lambda tmp: gen("--adapter", a, "--checkpoint", str(ADAPTERS.other_weights())), ["{tmp}/a/adapter"],
        setup=lambda tmp: (adapter_copy(tmp), None)[1])

    def full_checkpoint(tmp):
        for suffix in (".safetensors", ".json"):
            shutil.copy(SOURCE_DATA / f"dalle-cpu{suffix}", tmp / f"dalle-cpu{suffix}")
    cli("generate --adapter a full checkpoint (dalle-cpu.safetensors)", "adapters", "error",
        gen("--adapter", "{tmp}/dalle-cpu.safetensors"), ["{tmp}/dalle-cpu"], setup=full_checkpoint)
    cli("generate --adapter a pipeline folder", "adapters", "error", gen("--adapter", "{tmp}/pipe"), ["{tmp}/pipe"],
        setup=lambda tmp: (FX.pipe_folder(tmp), None)[1])
    cli("generate --adapter an empty folder", "adapters", "error", gen("--adapter", "{tmp}/empty"), ["{tmp}/empty"],
        setup=lambda tmp: (tmp / "empty").mkdir())
    cli("generate --adapter ''", "adapters", "error", gen("--adapter", ""), ["--adapter", "''"])
    cli("generate --adapter FILE (control)", "adapters", "ok", gen("--adapter", a), check=grid_ok(),
        setup=lambda tmp: (adapter_copy(tmp), None)[1])
    cli("generate --adapter FOLDER (control)", "adapters", "ok", gen("--adapter", "{tmp}/a"), check=grid_ok(),
        setup=lambda tmp: (adapter_copy(tmp), None)[1])

    # --- API: finetune(...)
    from dalle_lessons import finetune as ftm
    from dalle_lessons.pipeline import TextToImage
    quiet = dict(progress=False, log=lambda s: None, device="cpu")
    one = lambda **kw: ftm.FinetuneConfig(**{"steps": 1, **kw})  # noqa: E731

    def tune(data="{tmp}/pics", out="{tmp}/run", config=None, setup=None, **kw):
        def run(tmp):
            if setup:
                setup(tmp)
            d = fill(data, tmp, {}) if isinstance(data, str) else data
            if isinstance(d, str) and d.startswith("heldout:"):
                kw.setdefault("examples", 8)
            extra = {k: fill(v, tmp, {}) for k, v in kw.items()}
            return ftm.finetune(d, fill(out, tmp, {}), one() if config is None else config(), **{**quiet, **extra})
        return run
    for kind, names in FT_BAD_FOLDERS.items():
        api(f"finetune(data=...): {kind}", "finetune", "error", tune(setup=ft_damaged(kind)), names)
    for label, (mode, word) in FT_MODES.items():
        api(f"finetune(data=...): {label} images (converted, with a note)", "finetune", "ok",
            tune(setup=lambda tmp, mode=mode: ft_folder(tmp, mode=mode)), check=noted(word, "api"))
    api("finetune(data='heldout:mauve square')", "finetune", "error", tune("heldout:mauve square"), ["mauve"])
    api("finetune(data='heldout:red circle') (a seen pair)", "finetune", "error", tune("heldout:red circle"),
        ["red circle"])
    api("finetune(heldout, examples=3)", "finetune", "error", tune(HELDOUT, examples=3), ["--examples 3", "3"])
    api("finetune(data=None)", "finetune", "error", tune(None), ["None", "data"])
    api("finetune(data=123)", "finetune", "error", tune(123), ["123", "data"])
    api("finetune(data=nowhere)", "finetune", "error", tune("{tmp}/nowhere"), ["{tmp}/nowhere"])
    api("finetune(out=inside data/)", "finetune", "error", tune(HELDOUT, str(DATA / "mine")), ["data/"],
        check=nothing_in_data)
    api("finetune(out='/proc/run')", "finetune", "error", tune(HELDOUT, "/proc/run"), ["/proc"])
    api("finetune(out=under a file)", "finetune", "error",
        tune(HELDOUT, "{tmp}/file.png/run", setup=file_in), ["{tmp}/file.png"])
    api("finetune(out=None)", "finetune", "error", tune(HELDOUT, None), ["--out", "out"])
    api("finetune(resume=True) with nothing to resume", "finetune", "error", tune(HELDOUT, resume=True),
        ["{tmp}/run", "resume"])
    api("finetune(seed=-1)", "finetune", "error", tune(HELDOUT, seed=-1), ["-1"])
    api("finetune(base=nowhere)", "finetune", "error", tune(HELDOUT, base="{tmp}/nowhere"), ["{tmp}/nowhere"])
    api("finetune(base=123)", "finetune", "error", tune(HELDOUT, base=123), ["123"])
    api("finetune(config='lora') (a str, not a FinetuneConfig)", "finetune", "error",
        tune(HELDOUT, config=lambda: "lora"), ["config", "FinetuneConfig", "'lora'"])
    api("finetune(heldout, steps=1) (control)", "finetune", "ok", tune(HELDOUT), check=adapter_written)
    for changes, names in [({"method": "foo"}, ["foo"]), ({"method": None}, ["None"]), ({"rank": 0}, ["rank 0"]),
                           ({"rank": -1}, ["rank -1"]), ({"rank": 2.5}, ["2.5"]), ({"rank": "4"}, ["'4'"]),
                           ({"steps": 0}, ["--steps 0", "steps 0"]), ({"steps": 1.5}, ["1.5"]),
                           ({"lr": float("nan")}, ["nan"]), ({"lr": -1.0}, ["-1"]), ({"lr": "0.1"}, ["'0.1'"]),
                           ({"alpha": 0}, ["alpha 0"]), ({"targets": ("attn.foo",)}, ["attn.foo"]),
                           ({"method": "last-layers", "last_layers": 0}, ["--layers 0", "last_layers"]),
                           ({"batch_size": 0}, ["batch_size"]),
                           ({"method": "full", "rank": 8}, ["rank"]),
                           ({"method": "lora", "last_layers": 2}, ["last_layers", "--layers"])]:
        shown = ", ".join(f"{k}={v!r}" for k, v in changes.items())
        api(f"FinetuneConfig({shown})", "finetune", "error", lambda tmp, changes=changes: one(**changes), names)
    # --- API: from_pretrained(adapter=...)
    api("from_pretrained(adapter=123)", "adapters", "error",
        lambda tmp: TextToImage.from_pretrained(device="cpu", adapter=123), ["123", "adapter"])
    api("from_pretrained(adapter=nowhere)", "adapters", "error",
        lambda tmp: TextToImage.from_pretrained(device="cpu", adapter=tmp / "nowhere.safetensors"),
        ["{tmp}/nowhere.safetensors"])
    for kind in ("zero-byte", "truncated", "same-size", "json missing"):
        api(f"from_pretrained(adapter=...): adapter {kind}", "adapters", "error",
            lambda tmp, kind=kind: TextToImage.from_pretrained(device="cpu", adapter=adapter_copy(tmp, damage_kind=kind)),
            ["{tmp}/a/adapter"])
    api("from_pretrained(adapter=...) for another base model (tiny config)", "adapters", "error",
        lambda tmp: TextToImage.from_pretrained(device="cpu", adapter=adapter_copy(tmp, "tiny")), ["{tmp}/a/adapter"])
    api("from_pretrained(fine-tuned pipeline, adapter=...) (other weights)", "adapters", "error",
        lambda tmp: TextToImage.from_pretrained(ADAPTERS.other_weights(), device="cpu", adapter=adapter_copy(tmp)),
        ["{tmp}/a/adapter"])
    api("from_pretrained(adapter=a full checkpoint)", "adapters", "error",
        lambda tmp: (full_checkpoint(tmp), TextToImage.from_pretrained(
            device="cpu", adapter=tmp / "dalle-cpu.safetensors"))[1], ["{tmp}/dalle-cpu"])
    api("from_pretrained(adapter=a pipeline folder)", "adapters", "error",
        lambda tmp: TextToImage.from_pretrained(device="cpu", adapter=FX.pipe_folder(tmp)), ["{tmp}/pipe"])
    api("from_pretrained(adapter=...) (control)", "adapters", "ok",
        lambda tmp: TextToImage.from_pretrained(device="cpu", adapter=adapter_copy(tmp)).generate(PROMPT, seed=0),
        check=pil_ok(1))


# ------------------------------------------------------------------------------------------------ running

def fill(value, tmp: Path, subs: dict):
    if isinstance(value, str):
        value = value.replace("{tmp}", str(tmp))
        for key, sub in subs.items():
            value = value.replace(key, sub)
    return value


def judge_message(text: str, names: tuple) -> list[str]:
    """Why `text` is not a clear one-line message (empty list: it is)."""
    reasons = []
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        reasons.append(f"{len(lines)} lines")
    if len(text.strip()) > MAX_CHARS:
        reasons.append(f"{len(text.strip()):,} characters")
    if names and not any(n.lower() in text.lower() for n in names):
        reasons.append("names neither the value nor the file")
    if not FIX.search(text):
        reasons.append("says no fix")
    return reasons


def message_of_cli(stderr: str) -> str:
    """The error as the user reads it: the `error:` line(s), argparse's usage lines and warnings left out."""
    lines = [l for l in stderr.replace("\r", "\n").splitlines() if l.strip()]
    if any(l.startswith("usage:") for l in lines):
        errors = [l for l in lines if ": error: " in l]
        return "\n".join(errors) if errors else "\n".join(lines)
    kept = [l for l in lines if not l.startswith("warning:") and "it/s]" not in l and "s/it]" not in l
            and "%|" not in l]
    start = next((i for i, l in enumerate(kept) if l.startswith("error:")), 0)
    return "\n".join(kept[start:])


def run_check(case, tmp, result):
    if case.check is None:
        return None
    problem = case.check(tmp, result)
    if problem is None:
        return None
    return problem if isinstance(problem, tuple) else ("silent wrong result", problem)


def run_cli_case(case: Case, tmp: Path, prepared: dict) -> tuple[str, str]:
    subs = prepared.get("subs", {})
    argv = case.run(tmp) if callable(case.run) else case.run
    argv = [fill(a, tmp, subs) for a in argv]
    env = {**os.environ, "DALLE_LESSONS_DATA": str(DATA), **prepared.get("env", {})}
    try:
        proc = subprocess.run([sys.executable, "-m", "dalle_lessons", *argv], cwd=FX.cwd, env=env, capture_output=True,
                              text=True, errors="backslashreplace", timeout=case.timeout)
    except subprocess.TimeoutExpired:
        return "hang", f"no answer in {case.timeout} s"
    res = CliResult(proc.returncode, proc.stdout, proc.stderr)
    names = tuple(fill(n, tmp, subs) for n in case.names)
    message = message_of_cli(proc.stderr)
    if "Traceback (most recent call last)" in proc.stderr:
        return "traceback", proc.stderr.strip().splitlines()[-1][:300]
    if proc.returncode != 0 and "error: unexpected " in proc.stderr:
        return "traceback", message[:300] + " [the CLI's catch-all, exit 3]"
    if case.expect == "ok":
        if proc.returncode != 0:
            return "unclear error", f"refused a valid input (exit {proc.returncode}): {message[:300]}"
        problem = run_check(case, tmp, res)
        return problem if problem else ("ok", (proc.stdout.strip().splitlines() or [""])[0][:200])
    if proc.returncode == 0:
        return "silent wrong result", f"exit 0: {proc.stdout.strip()[:200]}"
    problem = run_check(case, tmp, res)
    if problem:
        return problem[0], f"{problem[1]} (message: {message[:200]})"
    reasons = judge_message(message, names)
    return ("unclear error", f"{message[:300]} [{'; '.join(reasons)}]") if reasons else ("clear error", message)


class Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise Hang()


def run_api_case(case: Case, tmp: Path, prepared: dict) -> tuple[str, str]:
    subs = prepared.get("subs", {})
    names = tuple(fill(n, tmp, subs) for n in case.names)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(case.timeout)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the cases that expect a warning record their own
            result = case.run(tmp)
    except Hang:
        return "hang", f"no answer in {case.timeout} s"
    except Exception as error:  # noqa: BLE001 - classifying every exception is the point
        text = str(error)
        kind = type(error).__name__
        if case.expect == "ok":
            return ("unclear error" if isinstance(error, (ValueError, TypeError, OSError)) else "traceback",
                    f"refused a valid input: {kind}: {text[:300]}")
        problem = run_check(case, tmp, None)
        if problem:
            return problem[0], f"{problem[1]} (raised {kind}: {text[:200]})"
        if not isinstance(error, (ValueError, TypeError, OSError)):
            return "traceback", f"{kind}: {text[:300]}"
        reasons = judge_message(text, names)
        if isinstance(error, OSError) and not isinstance(error, FileNotFoundError) and error.errno is not None \
                and text.startswith("[Errno"):
            reasons.append("raw OS message")
        return ("unclear error", f"{kind}: {text[:300]} [{'; '.join(reasons)}]") if reasons else \
            ("clear error", f"{kind}: {text}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if case.expect == "error":
        problem = run_check(case, tmp, result)
        shown = type(result).__name__ if not isinstance(result, (list, tuple)) else f"{type(result).__name__} of {len(result)}"
        return "silent wrong result", f"returned {shown}" + (f"; {problem[1]}" if problem else "")
    problem = run_check(case, tmp, result)
    return problem if problem else ("ok", "")


def run_case(case: Case, index: int) -> dict:
    tmp = WORK / "c" / str(index)  # short, as a user's own paths are: messages that name a file stay readable
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    keep = None
    try:
        prepared = (case.setup(tmp) if case.setup else None) or {}
        keep = prepared.get("keep")
        runner = run_cli_case if case.surface == "cli" else run_api_case
        outcome, message = runner(case, tmp, prepared)
    except Exception as error:  # noqa: BLE001 - a broken case is reported, not fatal
        outcome, message = "case error", f"the case itself failed: {type(error).__name__}: {error}"
    finally:
        if keep is not None:
            keep.close()
        for path in tmp.rglob("*"):  # read-only folders made by a case
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(tmp, ignore_errors=True)
        FX.restore()  # a case that replaced a shipped file of the copy must not spoil the next ones
    seconds = time.perf_counter() - start
    return {"name": case.name, "surface": case.surface, "category": case.category, "expect": case.expect,
            "issue_item": case.issue, "outcome": outcome, "message": message.replace(str(WORK), "$WORK"),
            "seconds": round(seconds, 2)}


def tables(records: list[dict]) -> str:
    count = lambda outcome, surface: sum(r["outcome"] == outcome and r["surface"] == surface for r in records)  # noqa
    labels = {"clear error": "clear error", "unclear error": "unclear error (raw library/OS message, no file named, "
              "no fix)", "traceback": "**traceback** (CLI) / raw library exception (API)",
              "silent wrong result": "**silent wrong result**", "hang": "**hang**", "ok": "ok as expected"}
    out = ["| outcome | CLI | API |", "|---|---|---|"]
    for outcome in OUTCOMES + (["case error"] if any(r["outcome"] == "case error" for r in records) else []):
        out.append(f"| {labels.get(outcome, outcome)} | {count(outcome, 'cli')} | {count(outcome, 'api')} |")
    out.append(f"| **kinds in all** | {sum(r['surface'] == 'cli' for r in records)} | "
               f"{sum(r['surface'] == 'api' for r in records)} |")
    out += ["", "| category | kinds | " + " | ".join(OUTCOMES) + " |", "|---" * (len(OUTCOMES) + 2) + "|"]
    for category in dict.fromkeys(r["category"] for r in records):
        rows = [r for r in records if r["category"] == category]
        out.append(f"| {category} | {len(rows)} | " + " | ".join(
            str(sum(r["outcome"] == o for r in rows) or "") for o in OUTCOMES) + " |")
    return "\n".join(out)


SKEW = "shape=triangle,color=red,rate=0.8,omit=0.5"


def add_limitations_cases() -> None:
    """Lesson 09: skew specs in `finetune --data`, and `evaluate control` / `evaluate bias` options."""
    for spec, names in [("skewed:hue=red", ["hue=red"]), ("skewed:rate=1.5", ["rate=1.5"]),
                        ("skewed:omit=-0.2", ["omit=-0.2"]), ("skewed:omit_pair=2", ["omit_pair=2"]),
                        ("skewed:shape=hexagon", ["hexagon"]), ("skewed:color=pink", ["pink"]),
                        ("skewed:color=orange", ["orange triangle"]), ("skewed:", ["skewed:", "empty"]),
                        ("skewed:rate=lots", ["lots"]), ("skewed:rate=0.5,rate=0.6", ["rate"]),
                        ("skewed:triangle", ["triangle"]), ("rebalanced:rate=2", ["rate=2"]),
                        ("skewed:rate=nan", ["nan"]), ("skewed:rate=inf", ["inf"])]:
        cli(f"09: finetune --data '{spec}'", "limitations", "error", ft(data=spec), names)
    cli("09: finetune --data 'skewed:…' --examples 3", "limitations", "error",
        [*ft(data="skewed:" + SKEW), "--examples", "3"], ["--examples 3"])
    for kind in ("skewed", "rebalanced"):
        cli(f"09: finetune --data '{kind}:{SKEW}' --examples 8 --steps 1 (control)", "limitations", "ok",
            [*ft(data=f"{kind}:{SKEW}"), "--examples", "8"], check=adapter_written)
    for what, argv, names in [
            ("bias", ["--checkpoint", "{tmp}/pipe"], ["--checkpoint"]), ("bias", ["--temperature", "0.5"], ["--temperature"]),
            ("bias", ["--rerank", "4"], ["--rerank"]), ("bias", ["--sweep"], ["--sweep"]),
            ("bias", ["--captions", "0"], ["--captions 0"]), ("bias", ["--captions", "-3"], ["--captions -3"]),
            ("bias", ["--samples", "0"], ["samples", "0"]), ("bias", ["--batch-size", "0"], ["batch_size", "0"]),
            ("bias", ["--seed", "-1"], ["-1"]), ("bias", ["--seed", str(2**63 - 1)], [str(2**63 - 1)]),
            ("control", ["--captions", "0"], ["--captions 0"]), ("control", ["--samples", "0"], ["samples", "0"]),
            ("control", ["--rerank", "4"], ["--rerank"]), ("control", ["--sweep"], ["--sweep"]),
            ("control", ["--temperature", "-1"], ["temperature", "-1"]), ("control", ["--top-p", "2"], ["top_p", "2"]),
            ("control", ["--checkpoint", "{tmp}/nowhere"], ["{tmp}/nowhere"]), ("control", ["--seed", "-1"], ["-1"])]:
        cli(f"09: evaluate {what} {' '.join(argv)}", "limitations", "error", ["evaluate", what, *argv], names)
    cli("09: evaluate bias, its adapters missing from data/", "limitations", "error", ["evaluate", "bias"],
        ["bias-skewed.safetensors"], setup=lambda tmp: light_data(tmp))

    def damaged_adapter(kind):
        def setup(tmp):
            env = light_data(tmp)
            for name in ("bias-skewed", "bias-mismatch", "bias-rebalanced", "bias-stated"):
                for suffix in (".safetensors", ".json"):
                    shutil.copy2(SOURCE_DATA / (name + suffix), tmp / "data" / (name + suffix))
            (tmp / "data" / "bias-skewed.json").write_text("{ not json" if kind == "json" else "{}")
            return env
        return setup
    for kind in ("json", "empty"):
        cli(f"09: evaluate bias, bias-skewed.json {kind}", "limitations", "error", ["evaluate", "bias"],
            ["bias-skewed"], setup=damaged_adapter(kind))
    # the API
    from dalle_lessons import bias as bias_module
    from dalle_lessons.shapes import ShapesDataset, Skew, parse_skew
    for spec, names in [("hue=red", ["hue"]), ("rate=-1", ["rate=-1"]), ("", ["empty"]), (None, ["None"]),
                        (42, ["42"]), ("shape=triangle,color=orange", ["orange triangle"])]:
        api(f"09: parse_skew({spec!r})", "limitations", "error", lambda tmp, spec=spec: parse_skew(spec), names)
    for kwargs, names in [({"rate": 1.2}, ["rate=1.2"]), ({"rate": "0.8"}, ["rate=0.8"]), ({"omit": True}, ["omit=True"]),
                          ({"shape": "star"}, ["star"]), ({"color": "blue", "shape": "square"}, ["blue square"]),
                          ({"omit_pair": float("nan")}, ["nan"])]:
        api(f"09: Skew(**{kwargs})", "limitations", "error", lambda tmp, kwargs=kwargs: Skew(**kwargs), names)
    api("09: ShapesDataset(skew='triangle')", "limitations", "error",
        lambda tmp: ShapesDataset("train", 4, render_images=False, skew="triangle"), ["skew='triangle'", "Skew"])
    api("09: ShapesDataset(skew=Skew()) (control)", "limitations", "ok",
        lambda tmp: ShapesDataset("train", 4, render_images=False, skew=Skew()),
        check=lambda tmp, data: None if len(data) == 4 else "wrong size")
    api("09: bias.state_color('something at the top')", "limitations", "error",
        lambda tmp: bias_module.state_color("something at the top", "red"), ["something at the top"])
    api("09: bias.adapter_file('purple')", "limitations", "error", lambda tmp: bias_module.adapter_file("purple"),
        ["purple"])


def add_scaling_cases() -> None:
    """Lesson 12: `scale` presets, and `convert-openai-dvae` pointed at the wrong files or without consent."""
    for preset, names in [("huge", ["huge"]), ("", ["''", "preset"]), ("PAPER", ["PAPER"]), ("tiny,cpu", ["tiny,cpu"])]:
        cli(f"12: scale --preset {preset!r}", "scaling", "error", ["scale", "--preset", preset], names)
    for preset in ("tiny", "all"):
        cli(f"12: scale --preset {preset} (control)", "scaling", "ok", ["scale", "--preset", preset],
            check=lambda tmp, res: None if "parameters" in res.stdout.lower() else "no table printed")

    def files(tmp):
        (tmp / "text.pkl").write_text("not a pickle")
        (tmp / "empty.pkl").write_bytes(b"")
        shutil.copy2(SOURCE_DATA / "dvae-cpu.safetensors", tmp / "ours.safetensors")
        torch.save({"weights": torch.zeros(3)}, tmp / "dict.pkl")
        torch.save({"weights": torch.ones(3)}, tmp / "other.pkl")
    convert = lambda enc, dec, *extra: ["convert-openai-dvae", "--encoder", enc, "--decoder", dec,  # noqa: E731
                                        "--out", "{tmp}/out", *extra]
    consent = "--i-understand-pickle"
    for label, argv, names in [
            ("without --i-understand-pickle", convert("{tmp}/dict.pkl", "{tmp}/other.pkl"), ["--i-understand-pickle"]),
            ("the same file twice", convert("{tmp}/dict.pkl", "{tmp}/dict.pkl", consent), ["{tmp}/dict.pkl"]),
            ("a missing encoder", convert("{tmp}/nowhere.pkl", "{tmp}/dict.pkl", consent), ["{tmp}/nowhere.pkl"]),
            ("an empty file", convert("{tmp}/empty.pkl", "{tmp}/dict.pkl", consent), ["{tmp}/empty.pkl"]),
            ("a text file", convert("{tmp}/text.pkl", "{tmp}/dict.pkl", consent), ["{tmp}/text.pkl"]),
            ("a safetensors file", convert("{tmp}/ours.safetensors", "{tmp}/dict.pkl", consent),
             ["{tmp}/ours.safetensors"]),
            ("a pickle that is no dVAE", convert("{tmp}/dict.pkl", "{tmp}/other.pkl", consent), ["{tmp}/dict.pkl"]),
            ("a folder as the encoder", convert("{tmp}", "{tmp}/dict.pkl", consent), ["{tmp}"])]:
        cli(f"12: convert-openai-dvae, {label}", "scaling", "error", argv, names, setup=lambda tmp: (files(tmp), None)[1])


def main() -> int:
    global FX
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="also write every case as JSON here")
    parser.add_argument("--only", default=None, help="run only the cases whose name contains this text")
    parser.add_argument("--surface", choices=["cli", "api"], default=None)
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    args = parser.parse_args()
    add_cli_cases()
    add_api_cases()
    add_finetune_cases()
    add_limitations_cases()
    add_scaling_cases()
    cases = [c for c in CASES if (not args.only or args.only.lower() in c.name.lower())
             and (not args.surface or c.surface == args.surface)]
    if args.list:
        for c in cases:
            print(f"{c.surface}  {c.category:9s} {c.expect:5s}  {c.name}")
        print(f"{len(cases)} cases")
        return 0
    start = time.perf_counter()
    print(header("Bad and unusual inputs (issue 17)"))
    FX = Fixtures()
    records = []
    try:
        for i, case in enumerate(cases, 1):
            record = run_case(case, i)
            records.append(record)
            print(f"[{i}/{len(cases)}] {record['surface']} {record['outcome']:<19} {record['seconds']:6.1f} s  "
                  f"{case.name}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    elapsed = time.perf_counter() - start
    print(f"{len(records)} kinds of bad or unusual input ({sum(r['surface'] == 'cli' for r in records)} through "
          f"`python -m dalle_lessons`, {sum(r['surface'] == 'api' for r in records)} through the Python API); "
          f"wall time {elapsed:.0f} s\n")
    print(tables(records))
    items = sorted({r["issue_item"] for r in records if r["issue_item"]})
    print(f"\nissue 17's numbered items replayed: {', '.join(map(str, items))} "
          f"({sum(bool(r['issue_item']) for r in records)} cases)")
    bad = [r for r in records if r["outcome"] not in ("clear error", "ok")]
    print(f"\nNot clean ({len(bad)}):" if bad else "\nEvery case is a clear error or works as expected.")
    for r in bad:
        print(f"- [{r['surface']}] {r['name']} -> {r['outcome']}: {r['message']}")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "what": "bad inputs (issue 17)", "command": "python benchmarks/bad_inputs.py" + (
                f" --json {args.json}" if args.json else ""),
            "machine": header("").split("machine: ")[1].strip(), "seconds": round(elapsed, 1),
            "timeout_s": TIMEOUT, "max_chars": MAX_CHARS,
            "counts": {s: {o: sum(r["outcome"] == o and r["surface"] == s for r in records) for o in OUTCOMES}
                       for s in ("cli", "api")},
            "cases": records}, indent=1, ensure_ascii=False) + "\n")
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
